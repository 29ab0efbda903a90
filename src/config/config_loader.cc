#include "bantam/config_loader.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>

#include "bantam/layered_config.h"
#include "bantam/option_list.h"
#include "bantam/py.h"
#include "bantam/tag_substitution.h"
#include "bantam/utf8.h"

namespace bantam {

namespace {

using Severity = Diagnostic::Severity;

enum class OptType { kString, kInt, kBool };

struct OptSpec {
  OptType type;
  const char* name;
  Value fallback;  // null: no default (absent options stay absent)
};

// Option tables in fail2ban's order; the order decides command order.
const std::vector<OptSpec>& JailFirstOpts() {
  static const std::vector<OptSpec> kOpts = {
      {OptType::kBool, "enabled", false},
      {OptType::kString, "backend", "auto"},
      {OptType::kString, "filter", ""},
  };
  return kOpts;
}

const std::vector<OptSpec>& FilterOpts() {
  static const std::vector<OptSpec> kOpts = {
      {OptType::kString, "usedns", nullptr},    {OptType::kString, "prefregex", nullptr},
      {OptType::kString, "ignoreregex", nullptr}, {OptType::kString, "failregex", nullptr},
      {OptType::kInt, "maxlines", nullptr},     {OptType::kString, "datepattern", nullptr},
      {OptType::kString, "journalmatch", nullptr},
  };
  return kOpts;
}

const std::vector<OptSpec>& JailOpts() {
  static const std::vector<OptSpec> kOpts = [] {
    std::vector<OptSpec> v = {
        {OptType::kBool, "enabled", false},
        {OptType::kString, "backend", "auto"},
        {OptType::kInt, "maxretry", nullptr},
        {OptType::kInt, "maxmatches", nullptr},
        {OptType::kString, "findtime", nullptr},
        {OptType::kString, "bantime", nullptr},
        {OptType::kBool, "bantime.increment", nullptr},
        {OptType::kString, "bantime.factor", nullptr},
        {OptType::kString, "bantime.formula", nullptr},
        {OptType::kString, "bantime.multipliers", nullptr},
        {OptType::kString, "bantime.maxtime", nullptr},
        {OptType::kString, "bantime.rndtime", nullptr},
        {OptType::kBool, "bantime.overalljails", nullptr},
        {OptType::kString, "ignorecommand", nullptr},
        {OptType::kBool, "ignoreself", nullptr},
        {OptType::kString, "ignoreip", nullptr},
        {OptType::kString, "ignorecache", nullptr},
        {OptType::kString, "filter", ""},
        {OptType::kString, "logtimezone", nullptr},
        {OptType::kString, "logencoding", nullptr},
        {OptType::kString, "logpath", nullptr},
        {OptType::kString, "action", ""},
    };
    for (const OptSpec& f : FilterOpts()) v.push_back(f);
    return v;
  }();
  return kOpts;
}

const std::vector<OptSpec>& ActionOpts() {
  static const std::vector<OptSpec> kOpts = {
      {OptType::kString, "actionstart", nullptr},  {OptType::kBool, "actionstart_on_demand", nullptr},
      {OptType::kString, "actionstop", nullptr},   {OptType::kString, "actionflush", nullptr},
      {OptType::kString, "actionreload", nullptr}, {OptType::kString, "actioncheck", nullptr},
      {OptType::kString, "actionrepair", nullptr}, {OptType::kBool, "actionrepair_on_unban", nullptr},
      {OptType::kString, "actionban", nullptr},    {OptType::kString, "actionprolong", nullptr},
      {OptType::kString, "actionreban", nullptr},  {OptType::kString, "actionunban", nullptr},
      {OptType::kBool, "norestored", nullptr},
  };
  return kOpts;
}

const OptSpec* FindSpec(const std::vector<OptSpec>& specs, const std::string& name) {
  for (const OptSpec& s : specs)
    if (name == s.name) return &s;
  return nullptr;
}

// An integer option: Python's int(), limited to int64 (a larger value is
// "not an integer" here, where fail2ban would take it).
std::optional<int64_t> IntOption(std::string_view text) {
  bool overflow = false;
  const std::optional<int64_t> n = PyInt(text, &overflow);
  if (overflow) return std::nullopt;
  return n;
}

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

// Python's json.dumps for a flat string dict (ensure_ascii).
std::string PyJsonDumps(const OrderedMap<std::string>& m) {
  std::string out = "{";
  bool first = true;
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"' || c == '\\') {
        q.push_back('\\');
        q.push_back(static_cast<char>(c));
      } else if (c == '\n') {
        q += "\\n";
      } else if (c == '\r') {
        q += "\\r";
      } else if (c == '\t') {
        q += "\\t";
      } else if (c < 0x20 || c >= 0x80) {
        size_t next = i;
        uint32_t cp = NextCodePoint(s, &next);
        i = next - 1;
        auto hex = [&](uint32_t u) {
          char buf[16];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          q += buf;
        };
        if (cp >= 0x10000) {
          cp -= 0x10000;
          hex(0xd800 + (cp >> 10));
          hex(0xdc00 + (cp & 0x3ff));
        } else {
          hex(cp);
        }
      } else {
        q.push_back(static_cast<char>(c));
      }
    }
    return q + "\"";
  };
  for (const auto& [k, v] : m) {
    if (!first) out += ", ";
    first = false;
    out += quote(k) + ": " + quote(v);
  }
  return out + "}";
}


class Loader;

// fail2ban's DefinitionInitConfigReader: a filter or action file whose
// [Definition] commands are completed by [Init] values and by options
// given in the jail (name[opt=value]).
class DefinitionInitReader {
 public:
  DefinitionInitReader(Loader* loader, std::string file, OrderedMap<std::string> init_opts,
                       const std::vector<OptSpec>* specs)
      : loader_(loader),
        file_(std::move(file)),
        init_opts_(std::move(init_opts)),
        specs_(specs) {}

  // Reads (or reuses) the layered files; false when none exists.
  Result<bool> Read();
  Status GetOptions(const OrderedMap<Value>& jail_opts, bool all);
  Result<OrderedMap<Value>> GetCombined(std::set<std::string> ignore);

  LayeredConfig* cfg() const { return cfg_; }
  OrderedMap<std::string>& init_opts() { return init_opts_; }

 private:
  Result<std::optional<std::string>> CombOption(const std::string& name);

  Loader* loader_;
  std::string file_;
  OrderedMap<std::string> init_opts_;
  const std::vector<OptSpec>* specs_;
  LayeredConfig* cfg_ = nullptr;
  OrderedMap<Value> opts_;
  Vars p_opts_;
  std::unordered_map<std::string, std::optional<std::string>> comb_cache_;
};

class Loader {
 public:
  explicit Loader(const LoadOptions& o) : options_(o), basedir_(o.basedir) {
    while (basedir_.size() > 1 && basedir_.back() == '/') basedir_.pop_back();
  }

  Result<LoadedConfig> Run();
  Result<LoadedFilter> RunFilter(const std::string& file, const OrderedMap<std::string>& options,
                                 const std::string& backend, const std::string& jail);

  // The shared, layered view of `name` ("filter.d/sshd"); null if absent.
  Result<LayeredConfig*> Config(const std::string& name) {
    auto it = configs_.find(name);
    if (it != configs_.end()) return it->second.get();
    auto cfg = std::make_unique<LayeredConfig>(basedir_, &cache_);
    bool found = false;
    Status s = cfg->Read(name, &found);
    for (const std::string& w : cfg->warnings()) Warn(w);
    if (!s.ok()) return s;
    LayeredConfig* raw = found ? cfg.get() : nullptr;
    if (found) configs_.emplace(name, std::move(cfg));
    return raw;
  }

  void Warn(std::string m) { out_.diagnostics.push_back({Severity::kWarning, std::move(m), ""}); }
  void Error(std::string m) { out_.diagnostics.push_back({Severity::kError, std::move(m), ""}); }

  // ConfigReader.getOptions: values of `specs` in `section`, skipping
  // names present in `skip`, looked up with `vars`.
  Status GetOptions(LayeredConfig* cfg, const std::string& section,
                    const std::vector<OptSpec>& specs, const Vars* vars,
                    const OrderedMap<std::string>* skip, bool convert, bool section_must_exist,
                    OrderedMap<Value>* out);

 private:
  struct Jail;
  Status ReadJail(LayeredConfig* jails, const std::string& name, Jail* jail);
  // bantam's prefix4/prefix6/aggregate4/aggregate6 of jail `name` into
  // out_.prefixes, each bad value an error diagnostic of the jail.
  void ReadPrefixOptions(const LayeredConfig& jails, const std::string& name);
  Status ConvertJail(Jail* jail, std::vector<Value>* stream);
  Status ReadServer(LayeredConfig* cfg);

  const LoadOptions& options_;
  std::string basedir_;
  ConfigFileCache cache_;
  std::unordered_map<std::string, std::unique_ptr<LayeredConfig>> configs_;
  LoadedConfig out_;
  std::vector<Value> server_stream_;
  std::set<std::pair<const LayeredConfig*, std::string>> missing_sections_;  // reported once
};

Status Loader::GetOptions(LayeredConfig* cfg, const std::string& section,
                          const std::vector<OptSpec>& specs, const Vars* vars,
                          const OrderedMap<std::string>* skip, bool convert,
                          bool section_must_exist, OrderedMap<Value>* out) {
  for (const OptSpec& spec : specs) {
    if (skip && skip->Contains(spec.name)) continue;
    Lookup l = cfg->Get(section, spec.name, vars);
    switch (l.code) {
      case LookupCode::kError:
        return Status::Error(l.error);
      case LookupCode::kNoSection:
        if (section_must_exist) return Status::Error("section [" + section + "] not found");
        if (missing_sections_.emplace(cfg, section).second) {
          Error((cfg->files().empty() ? basedir_ : cfg->files().front()) + ": no [" + section +
                "] section");
        }
        out->Set(spec.name, spec.fallback);
        break;
      case LookupCode::kNoOption:
        if (!spec.fallback.is_null()) out->Set(spec.name, spec.fallback);
        break;
      case LookupCode::kOk: {
        if (!convert || spec.type == OptType::kString) {
          out->Set(spec.name, l.value);
        } else if (spec.type == OptType::kBool) {
          out->Set(spec.name, PyAsBool(l.value));
        } else if (std::optional<int64_t> i = IntOption(l.value)) {
          out->Set(spec.name, *i);
        } else {
          SourceLoc loc = cfg->Where(section, spec.name);
          Error((loc.file.empty() ? "" : loc.ToString() + ": ") + "[" + section + "] " +
                spec.name + " = " + PyRepr(l.value) + " is not an integer");
          out->Set(spec.name, spec.fallback);
        }
        break;
      }
    }
  }
  return Status::Ok();
}

Result<bool> DefinitionInitReader::Read() {
  Result<LayeredConfig*> cfg = loader_->Config(file_);
  if (!cfg.ok()) return cfg.status();
  cfg_ = *cfg;
  return cfg_ != nullptr;
}

Status DefinitionInitReader::GetOptions(const OrderedMap<Value>& jail_opts, bool all) {
  OrderedMap<std::string> merged;  // jail options overlaid by init options
  for (const auto& [k, v] : jail_opts)
    if (!v.is_null()) merged.Set(k, v.ToPyStr());
  for (const auto& [k, v] : init_opts_) merged.Set(k, v);
  Vars vars;
  for (const auto& [k, v] : merged) vars.Set(LowerAscii(k), v);
  opts_ = OrderedMap<Value>();
  Status s = loader_->GetOptions(cfg_, "Definition", *specs_, &vars, &merged, /*convert=*/false,
                                 false, &opts_);
  if (!s.ok()) return s;
  p_opts_ = std::move(vars);
  if (cfg_->HasSection("Init")) {
    for (const std::string& opt : cfg_->Options("Init")) {
      std::optional<std::string> v;
      auto get = [&]() -> Status {
        Lookup l = cfg_->Get("Init", opt);
        if (l.code == LookupCode::kError) return Status::Error(l.error);
        v = l.value;
        return Status::Ok();
      };
      if (!StartsWith(opt, "known/")) {
        if (Status g = get(); !g.ok()) return g;
        init_opts_.Set("known/" + opt, *v);
      }
      if (!init_opts_.Contains(opt)) {
        if (!v)
          if (Status g = get(); !g.ok()) return g;
        init_opts_.Set(opt, *v);
      }
    }
  }
  if (all && cfg_->HasSection("Definition")) {
    for (const std::string& opt : cfg_->Options("Definition")) {
      if (opts_.Contains(opt)) continue;
      Lookup l = cfg_->Get("Definition", opt);
      if (l.code == LookupCode::kError) return Status::Error(l.error);
      if (l.ok()) opts_.Set(opt, l.value);
    }
  }
  comb_cache_.clear();
  return Status::Ok();
}

Result<std::optional<std::string>> DefinitionInitReader::CombOption(const std::string& name) {
  auto it = comb_cache_.find(name);
  if (it != comb_cache_.end()) return it->second;
  Lookup l = cfg_->GetEx("Definition", name, &p_opts_);
  if (l.code == LookupCode::kError) return Status::Error(l.error);
  std::optional<std::string> v;
  if (l.ok()) v = l.value;
  comb_cache_.emplace(name, v);
  return v;
}

Result<OrderedMap<Value>> DefinitionInitReader::GetCombined(std::set<std::string> ignore) {
  OrderedMap<Value> combined = opts_;
  for (const auto& [k, v] : init_opts_) combined.Set(k, v);
  if (combined.empty()) return combined;
  OrderedMap<std::string> strings;
  for (const auto& [k, v] : combined) {
    // "x?family=inet6" variants keep <x> unresolved for run time.
    size_t q = k.find('?');
    if (q != std::string::npos && q > 0 && q + 1 < k.size()) ignore.insert(k.substr(0, q));
    if (!v.is_null()) strings.Set(k, v.ToPyStr());
  }
  Result<OrderedMap<std::string>> sub = SubstituteTags(
      strings, ignore, [this](const std::string& tag) { return CombOption(tag); });
  if (!sub.ok()) {
    return Status::Error(cfg_->files().empty() ? sub.status().message()
                                               : cfg_->files().front() + ": " +
                                                     sub.status().message());
  }
  OrderedMap<Value> out;
  for (const auto& [k, v] : combined) {
    const std::string* s = sub->Find(k);
    if (!s) {
      out.Set(k, v);  // null stays null
      continue;
    }
    const OptSpec* spec = FindSpec(*specs_, k);
    if (!spec || spec->type == OptType::kString) {
      out.Set(k, *s);
    } else if (spec->type == OptType::kBool) {
      out.Set(k, PyAsBool(*s));
    } else if (std::optional<int64_t> i = IntOption(*s)) {
      out.Set(k, *i);
    } else {
      SourceLoc loc = cfg_->Where("Definition", k);
      loader_->Error((loc.file.empty() ? file_ : loc.ToString()) + ": " + k + " = " +
                     PyRepr(*s) + " is not an integer");
      out.Set(k, spec->fallback);
    }
  }
  return out;
}

// fail2ban FilterReader._fillStream: filter-level commands of a jail.
Status FillFilterStream(std::vector<Value>* stream, const OrderedMap<Value>& opts,
                        const std::string& jail) {
  size_t prio = 0;
  for (const auto& [opt, value] : opts) {
    if (value.is_null()) continue;
    if (opt == "failregex" || opt == "ignoreregex") {
      Value::List multi;
      const std::string text = value.ToPyStr();
      for (std::string_view regex : SplitNewlines(text))
        if (!regex.empty()) multi.emplace_back(regex);
      if (multi.size() > 1) {
        stream->push_back(Value::List{"multi-set", jail, "add" + opt, Value(std::move(multi))});
      } else if (multi.size() == 1) {
        stream->push_back(Value::List{"set", jail, "add" + opt, multi[0]});
      }
    } else if (opt == "usedns" || opt == "maxlines" || opt == "prefregex") {
      size_t at = opt == "usedns" ? 0 : std::min(prio, stream->size());
      stream->insert(stream->begin() + static_cast<std::ptrdiff_t>(at),
                     Value(Value::List{"set", jail, opt, value}));
      ++prio;
    } else if (std::string_view("datepattern").find(opt) != std::string_view::npos) {
      // fail2ban tests `opt in ('datepattern')`, a substring test.
      stream->push_back(Value::List{"set", jail, opt, value});
    } else if (opt == "journalmatch") {
      const std::string text = value.ToPyStr();
      for (std::string_view line : SplitNewlines(text)) {
        if (line.empty()) continue;
        Result<std::vector<std::string>> words = ShlexSplit(line);
        if (!words.ok()) {
          return Status::Error("[" + jail + "] journalmatch " + PyRepr(line) + ": " +
                               words.status().message());
        }
        Value::List cmd{"set", jail, "addjournalmatch"};
        for (std::string& w : *words) cmd.emplace_back(std::move(w));
        stream->push_back(std::move(cmd));
      }
    }
  }
  return Status::Ok();
}

// Python's glob.glob() order (directory order), without dangling links.
std::vector<std::string> GlobLogPath(const std::string& pattern, Loader* loader) {
  glob_t g{};
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), GLOB_NOESCAPE | GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      struct stat st;
      if (::stat(g.gl_pathv[i], &st) != 0) {
        loader->Warn(std::string("File ") + g.gl_pathv[i] +
                     " is a dangling link, thus cannot be monitored");
        continue;
      }
      out.emplace_back(g.gl_pathv[i]);
    }
  }
  ::globfree(&g);
  return out;
}

struct Loader::Jail {
  std::string name;
  OrderedMap<Value> opts;
  std::unique_ptr<DefinitionInitReader> filter;
  // An action is either a reader or a ready command (Python actions).
  std::vector<std::pair<std::unique_ptr<DefinitionInitReader>, Value>> actions;
  std::optional<std::string> config_error;
  bool enabled = false;
};

void Loader::ReadPrefixOptions(const LayeredConfig& jails, const std::string& name) {
  PrefixOptions prefixes;
  bool set = false;
  for (const char* opt : kPrefixOptionNames) {
    Lookup l = jails.Get(name, opt);
    if (l.code == LookupCode::kError) {
      out_.diagnostics.push_back({Severity::kError, l.error, name});
      continue;
    }
    if (!l.ok()) continue;
    const SourceLoc loc = jails.Where(name, opt);
    const std::string where = loc.file.empty() ? "" : loc.ToString() + ": ";
    if (Status s = SetPrefixOption(&prefixes, opt, l.value); !s.ok()) {
      out_.diagnostics.push_back({Severity::kError, where + "jail '" + name + "': " + s.message(), name});
      continue;
    }
    out_.origins[{name, opt}] = loc;
    set = true;
  }
  if (!set) return;
  if (Status s = ValidatePrefixOptions(prefixes); !s.ok()) {
    const char* opt = s.message().rfind("aggregate4", 0) == 0 ? "aggregate4" : "aggregate6";
    const SourceLoc loc = jails.Where(name, opt);
    out_.diagnostics.push_back(
        {Severity::kError, (loc.file.empty() ? "" : loc.ToString() + ": ") + "jail '" + name + "': " + s.message(), name});
    return;
  }
  out_.prefixes[name] = prefixes;
}

Status Loader::ReadJail(LayeredConfig* jails, const std::string& name, Jail* jail) {
  jail->name = name;
  Status s = GetOptions(jails, name, JailFirstOpts(), nullptr, nullptr, true, true, &jail->opts);
  if (!s.ok()) return s;
  const Value* en = jail->opts.Find("enabled");
  jail->enabled = en && en->is_bool() && en->as_bool();
  if (!jail->enabled) return Status::Ok();

  // A broken jail is skipped with a config-error command, as in fail2ban.
  auto def_error = [&](std::string msg, const char* option, const std::string& detail = "") {
    SourceLoc loc = jails->Where(name, option);
    Error((loc.file.empty() ? "" : loc.ToString() + ": ") + "jail '" + name + "': " + msg +
          detail);
    jail->config_error = std::move(msg);
    return Status::Ok();
  };

  const std::string flt = jail->opts.Find("filter")->ToPyStr();
  if (!flt.empty()) {
    Result<NamedOptions> parsed = ParseNamedOptions(flt);
    if (!parsed.ok()) {
      return def_error("Invalid filter definition " + PyRepr(flt) + ": " +
                           parsed.status().message(),
                       "filter");
    }
    jail->filter = std::make_unique<DefinitionInitReader>(
        this, "filter.d/" + parsed->name, parsed->options, &FilterOpts());
    Result<bool> found = jail->filter->Read();
    if (!found.ok()) return found.status();
    if (!*found) {
      return def_error("Unable to read the filter " + PyRepr(parsed->name), "filter",
                       " (no filter.d/" + parsed->name + ".conf or .local in " + basedir_ + ")");
    }
    // Journal or file log type, unless the filter or jail decided.
    const std::string backend = jail->opts.Find("backend")->ToPyStr();
    OrderedMap<std::string>& init = jail->filter->init_opts();
    const std::string* lt = init.Find("logtype");
    if ((!lt || lt->empty()) && !jail->filter->cfg()->HasOption("Definition", "logtype", false)) {
      init.Set("logtype", StartsWith(backend, "systemd") ? "journal" : "file");
    }
    s = jail->filter->GetOptions(jail->opts, /*all=*/true);
    if (!s.ok()) return s;
    Result<OrderedMap<Value>> combined = jail->filter->GetCombined({});
    if (!combined.ok()) return combined.status();
    OrderedMap<std::string> known;
    for (const auto& [k, v] : *combined) known.Set(k, v.ToPyStr());
    jails->MergeSection(name, known, "known/");
  } else {
    Warn("No filter set for jail " + name);
  }

  jail->opts = OrderedMap<Value>();
  s = GetOptions(jails, name, JailOpts(), nullptr, nullptr, true, false, &jail->opts);
  if (!s.ok()) return s;
  for (const OptSpec& spec : JailOpts()) {
    SourceLoc loc = jails->Where(name, spec.name);
    if (!loc.file.empty()) out_.origins[{name, spec.name}] = loc;
  }
  ReadPrefixOptions(*jails, name);
  if (jail->filter) {
    s = jail->filter->GetOptions(jail->opts, /*all=*/false);
    if (!s.ok()) return s;
    for (const OptSpec& spec : FilterOpts()) {
      if (out_.origins.count({name, spec.name})) continue;
      SourceLoc loc = jail->filter->cfg()->Where("Definition", spec.name);
      if (!loc.file.empty()) out_.origins[{name, spec.name}] = loc;
    }
  }

  const std::string actions = jail->opts.Find("action")->ToPyStr();
  for (std::string act : SplitNamedOptionsList(actions)) {
    act = std::string(PyStripAscii(act));
    if (act.empty()) continue;
    Result<NamedOptions> parsed = ParseNamedOptions(act);
    if (!parsed.ok()) {
      return def_error("Invalid action definition " + PyRepr(act) + ": " +
                           parsed.status().message(),
                       "action");
    }
    const std::string& act_name = parsed->name;
    if (act_name.size() > 3 && act_name.compare(act_name.size() - 3, 3, ".py") == 0) {
      OrderedMap<std::string> opts = parsed->options;
      std::string actname = act_name.substr(0, act_name.size() - 3);
      if (const std::string* a = opts.Find("actname")) {
        actname = *a;
        opts.Erase("actname");
      }
      jail->actions.emplace_back(
          nullptr, Value::List{"set", name, "addaction", actname,
                               basedir_ + "/action.d/" + act_name, PyJsonDumps(opts)});
      continue;
    }
    OrderedMap<std::string> init = parsed->options;
    std::string n;
    if (const std::string* given = init.Find("name")) {
      n = *given;
    } else {
      n = name;
      init.Set("name", n);
    }
    if (!init.Contains("actname")) {
      std::string actname = act_name;
      if (n != name) actname += StartsWith(n, name) ? n.substr(name.size()) : "-" + n;
      init.Set("actname", actname);
    }
    auto reader = std::make_unique<DefinitionInitReader>(this, "action.d/" + act_name,
                                                         std::move(init), &ActionOpts());
    Result<bool> found = reader->Read();
    if (!found.ok()) return found.status();
    if (!*found) {
      return def_error("Unable to read action " + PyRepr(act_name), "action",
                       " (no action.d/" + act_name + ".conf or .local in " + basedir_ + ")");
    }
    s = reader->GetOptions(jail->opts, false);
    if (!s.ok()) {
      return Status::Error(s.message() + " (in action " + PyRepr(act) + " of jail '" + name +
                           "')");
    }
    jail->actions.emplace_back(std::move(reader), Value());
  }
  if (jail->actions.empty()) Warn("No actions were defined for " + name);
  return Status::Ok();
}

Status Loader::ConvertJail(Jail* jail, std::vector<Value>* out) {
  const std::string& name = jail->name;
  if (jail->config_error) {
    out->push_back(Value::List{"config-error", "Jail '" + name +
                                                   "' skipped, because of wrong configuration: " +
                                                   *jail->config_error});
    return Status::Ok();
  }
  std::vector<Value> stream, logpaths;
  if (jail->filter) {
    Result<OrderedMap<Value>> opts = jail->filter->GetCombined({});
    if (!opts.ok()) return opts.status();
    if (!opts->empty()) {
      Status s = FillFilterStream(&stream, *opts, name);
      if (!s.ok()) return s;
    }
  }
  Status s = FillFilterStream(&stream, jail->opts, name);
  if (!s.ok()) return s;
  static const std::set<std::string> kHandledElsewhere = {
      "action",  "filter",   "enabled",     "usedns",      "prefregex",
      "ignoreregex", "failregex", "maxlines", "datepattern", "journalmatch"};
  std::string backend;
  for (const auto& [opt, value] : jail->opts) {
    if (opt == "logpath") {
      // The journal and AMI need no files (a logpath inherited from the
      // jail.conf section is ignored, as fail2ban does for the journal).
      const std::string be = jail->opts.Find("backend")->ToPyStr();
      if (StartsWith(be, "systemd") || be == "ami" || StartsWith(be, "ami[")) continue;
      int found = 0;
      const std::string text = value.ToPyStr();
      for (std::string_view entry : SplitNewlines(text)) {
        std::string path(entry), tail = "head";
        // "path tail": the last space-separated word is the start position.
        if (size_t sp = path.rfind(' '); sp != std::string::npos) {
          tail = path.substr(sp + 1);
          path = path.substr(0, sp);
        }
        std::vector<std::string> matches = options_.glob_logpath
                                               ? options_.glob_logpath(path)
                                               : GlobLogPath(path, this);
        if (matches.empty()) {
          // Not in the stream (fail2ban leaves it out), but the daemon
          // watches for the file to appear.
          out_.missing_logpaths.push_back(MissingLogPath{name, path, tail == "tail"});
          auto o = out_.origins.find({name, "logpath"});
          Warn((o == out_.origins.end() ? "" : o->second.ToString() + ": ") +
               "jail '" + name + "': no file matches logpath " + PyRepr(path));
        }
        for (const std::string& p : matches) {
          ++found;
          logpaths.push_back(Value::List{"set", name, "addlogpath", p, tail});
        }
      }
      if (!found) Warn("Have not found any log file for " + name + " jail");
    } else if (opt == "backend") {
      backend = value.ToPyStr();
    } else if (opt == "ignoreip") {
      Value::List cmd{"set", name, "addignoreip"};
      for (std::string& w : SplitWords(value.ToPyStr())) cmd.emplace_back(std::move(w));
      stream.push_back(std::move(cmd));
    } else if (!kHandledElsewhere.count(opt)) {
      stream.push_back(Value::List{"set", name, opt, value});
    }
  }
  for (Value& v : logpaths) stream.push_back(std::move(v));
  static const std::set<std::string> kRunTimeTags = {"matches", "ipmatches", "ipjailmatches",
                                                     "timeout", "bantime"};
  for (auto& [reader, cmd] : jail->actions) {
    if (!reader) {
      stream.push_back(cmd);  // a Python action: passed through as is
      continue;
    }
    Result<OrderedMap<Value>> opts = reader->GetCombined(kRunTimeTags);
    if (!opts.ok()) return opts.status();
    const std::string actname = *reader->init_opts().Find("actname");
    stream.push_back(Value::List{"set", name, "addaction", actname});
    Value::List multi;
    for (const auto& [opt, v] : *opts) {
      if (FindSpec(ActionOpts(), opt) && !StartsWith(opt, "known/"))
        multi.push_back(Value::List{opt, v});
    }
    for (const auto& [opt, v] : reader->init_opts()) {
      if (!FindSpec(ActionOpts(), opt) && !StartsWith(opt, "known/"))
        multi.push_back(Value::List{opt, v});
    }
    if (multi.size() > 1) {
      stream.push_back(Value::List{"multi-set", name, "action", actname, Value(std::move(multi))});
    } else if (multi.size() == 1) {
      Value::List single{"set", name, "action", actname};
      for (const Value& v : multi[0].as_list()) single.push_back(v);
      stream.push_back(std::move(single));
    }
  }
  stream.insert(stream.begin(), Value(Value::List{"add", name, backend}));
  for (Value& v : stream) out->push_back(std::move(v));
  return Status::Ok();
}

bool ValidLogLevel(const std::string& level) {
  static const std::set<std::string> kNames = {
      "CRITICAL", "FATAL", "ERROR",      "WARNING",    "WARN", "NOTICE",
      "INFO",     "DEBUG", "TRACEDEBUG", "HEAVYDEBUG", "MSG",  "NOTSET"};
  if (!level.empty() && std::all_of(level.begin(), level.end(), ::isdigit)) return true;
  std::string up = level;
  for (char& c : up) c = static_cast<char>(::toupper(static_cast<unsigned char>(c)));
  return kNames.count(up) != 0;
}

Status Loader::ReadServer(LayeredConfig* cfg) {
  static const std::vector<OptSpec> kEarly = {
      {OptType::kString, "socket", "/var/run/fail2ban/fail2ban.sock"},
      {OptType::kString, "pidfile", "/var/run/fail2ban/fail2ban.pid"},
      {OptType::kString, "loglevel", "INFO"},
      {OptType::kString, "logtarget", "/var/log/fail2ban.log"},
      {OptType::kString, "syslogsocket", "auto"},
  };
  static const std::vector<OptSpec> kMain = {
      {OptType::kString, "loglevel", "INFO"},
      {OptType::kString, "logtarget", "STDERR"},
      {OptType::kString, "syslogsocket", "auto"},
      {OptType::kString, "allowipv6", "auto"},
      {OptType::kString, "dbfile", "/var/lib/fail2ban/fail2ban.sqlite3"},
      {OptType::kInt, "dbmaxmatches", nullptr},
      {OptType::kString, "dbpurgeage", "1d"},
  };
  OrderedMap<Value> early, main;
  if (cfg) {
    Status s = GetOptions(cfg, "Definition", kEarly, nullptr, nullptr, true, false, &early);
    if (!s.ok()) return s;
    s = GetOptions(cfg, "Definition", kMain, nullptr, nullptr, true, false, &main);
    if (!s.ok()) return s;
  } else {
    Error("no fail2ban.conf or fail2ban.local under " + basedir_);
    for (const OptSpec& o : kEarly) early.Set(o.name, o.fallback);
    for (const OptSpec& o : kMain)
      if (!o.fallback.is_null()) main.Set(o.name, o.fallback);
  }
  if (cfg) {
    for (const OptSpec& o : kMain) {
      SourceLoc loc = cfg->Where("Definition", o.name);
      if (!loc.file.empty()) out_.origins[{"", o.name}] = loc;
    }
  }
  if (cfg) {
    for (const char* name : {"metrics", "metrics_allow_remote"}) {
      Lookup l = cfg->Get("Definition", name);
      if (l.code == LookupCode::kError) return Status::Error(l.error);
      if (!l.ok()) continue;
      out_.extensions.Set(name, l.value);
      SourceLoc loc = cfg->Where("Definition", name);
      if (!loc.file.empty()) out_.origins[{"", name}] = loc;
    }
  }
  for (const auto& [k, v] : options_.overrides) early.Set(k, v);
  for (const auto& [k, v] : early) {
    out_.server.Set(k, v.ToPyStr());
    main.Set(k, v);
  }
  const std::string level = main.Find("loglevel")->ToPyStr();
  if (!ValidLogLevel(level)) {
    SourceLoc loc = cfg ? cfg->Where("Definition", "loglevel") : SourceLoc{};
    return Status::Error((loc.file.empty() ? "" : loc.ToString() + ": ") + "Invalid log level " +
                         PyRepr(level));
  }
  // [Thread] stacksize: meaningless for bantam, but part of the stream.
  if (cfg && cfg->HasSection("Thread")) {
    static const std::vector<OptSpec> kThread = {{OptType::kInt, "stacksize", nullptr}};
    OrderedMap<Value> thread;
    Status ts = GetOptions(cfg, "Thread", kThread, nullptr, nullptr, true, false, &thread);
    if (!ts.ok()) return ts;
    if (!thread.empty()) {
      Value::Dict d;
      for (const auto& [k, v] : thread) d.emplace_back(k, v);
      server_stream_.push_back(Value::List{"set", "thread", Value(std::move(d))});
      Warn(cfg->Where("Thread", "stacksize").ToString() +
           ": [Thread] stacksize has no meaning for bantam and is ignored");
    }
  }
  static const std::vector<std::pair<const char*, int>> kOrder = {
      {"syslogsocket", 11}, {"loglevel", 12},     {"logtarget", 13}, {"allowipv6", 14},
      {"dbfile", 50},       {"dbmaxmatches", 51}, {"dbpurgeage", 51}};
  for (const auto& [name, rank] : kOrder) {
    (void)rank;  // the table is already in fail2ban's sorted order
    if (const Value* v = main.Find(name)) server_stream_.push_back(Value::List{"set", name, *v});
  }
  return Status::Ok();
}

Result<LoadedConfig> Loader::Run() {
  struct stat st;
  if (::stat(basedir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::Error("Base configuration directory " + basedir_ + " does not exist");
  }
  Result<LayeredConfig*> server = Config("fail2ban");
  if (!server.ok()) return server.status();
  Status s = ReadServer(*server);
  if (!s.ok()) return s;

  Result<LayeredConfig*> jails = Config("jail");
  if (!jails.ok()) return jails.status();
  if (!*jails) {
    Error("no jail.conf or jail.local under " + basedir_);
    out_.commands = std::move(server_stream_);
    return std::move(out_);
  }
  LayeredConfig* jcfg = *jails;
  jcfg->MergeDefault("fail2ban_version", kFail2banCompatVersion);
  jcfg->MergeDefault("fail2ban_confpath", basedir_);

  std::vector<std::string> sections;
  if (options_.jail) {
    sections.push_back(*options_.jail);
  } else {
    sections = jcfg->Sections();
  }
  std::vector<std::unique_ptr<Jail>> read;
  for (const std::string& sec : sections) {
    if (sec == "INCLUDES") continue;
    auto jail = std::make_unique<Jail>();
    s = ReadJail(jcfg, sec, jail.get());
    if (!s.ok()) return s;
    if (jail->enabled || jail->config_error) read.push_back(std::move(jail));
  }
  std::vector<Value> stream = std::move(server_stream_);
  for (auto& jail : read) {
    s = ConvertJail(jail.get(), &stream);
    if (!s.ok()) return s;
  }
  for (auto& jail : read)
    if (!jail->config_error) stream.push_back(Value::List{"start", jail->name});
  out_.commands = std::move(stream);
  return std::move(out_);
}

}  // namespace

Result<LoadedConfig> LoadConfig(const LoadOptions& options) {
  Loader loader(options);
  return loader.Run();
}

Result<LoadedFilter> Loader::RunFilter(const std::string& file,
                                       const OrderedMap<std::string>& options,
                                       const std::string& backend, const std::string& jail) {
  DefinitionInitReader reader(this, file, options, &FilterOpts());
  Result<bool> found = reader.Read();
  if (!found.ok()) return found.status();
  if (!*found) return Status::Error("no " + file + ".conf or .local in " + basedir_);
  OrderedMap<std::string>& init = reader.init_opts();
  const std::string* lt = init.Find("logtype");
  if ((!lt || lt->empty()) && !reader.cfg()->HasOption("Definition", "logtype", false)) {
    init.Set("logtype", StartsWith(backend, "systemd") ? "journal" : "file");
  }
  Status s = reader.GetOptions(OrderedMap<Value>(), /*all=*/false);
  if (!s.ok()) return s;
  Result<OrderedMap<Value>> combined = reader.GetCombined({});
  if (!combined.ok()) return combined.status();
  LoadedFilter out;
  s = FillFilterStream(&out.commands, *combined, jail);
  if (!s.ok()) return s;
  out.files = reader.cfg()->files();
  out.diagnostics = std::move(out_.diagnostics);
  for (const Diagnostic& d : out.diagnostics) {
    if (d.severity == Severity::kError) return Status::Error(d.message);
  }
  return out;
}

Result<LoadedFilter> LoadFilter(const std::string& basedir, const std::string& file,
                                const OrderedMap<std::string>& options,
                                const std::string& backend, const std::string& jail) {
  LoadOptions o;
  o.basedir = basedir;
  Loader loader(o);
  return loader.RunFilter(file, options, backend, jail);
}

}  // namespace bantam
