#include "bantam/layered_config.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <functional>

#include "bantam/option_list.h"
#include "bantam/py.h"

namespace bantam {

namespace {

constexpr int kMaxInterpolationDepth = 10;
// fail2ban would hit Python's recursion limit; we stop well before the stack.
constexpr size_t kMaxIncludeDepth = 64;
constexpr size_t kMaxIncludedFiles = 4096;

bool PathExists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool IsRegularFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Sorted matches of a pattern such as "dir/*.conf" (hidden files excluded).
std::vector<std::string> SortedGlob(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(pattern.c_str(), GLOB_NOESCAPE, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

std::string DirName(const std::string& p) {
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (!name.empty() && name[0] == '/') return name;
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// os.path.splitext(p)[0] + ".local"
std::string LocalOverlay(const std::string& p) {
  size_t slash = p.rfind('/');
  size_t dot = p.rfind('.');
  size_t base = slash == std::string::npos ? 0 : slash + 1;
  // A leading dot (".hidden") is not an extension.
  while (base < p.size() && p[base] == '.') ++base;
  if (dot == std::string::npos || dot < base) return p + ".local";
  return p.substr(0, dot) + ".local";
}

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool IsMissingFileError(const Status& s, const std::string& path) {
  return s.message().rfind(path + ": ", 0) == 0;
}

}  // namespace

const Result<IniFile>& ConfigFileCache::Get(const std::string& path) {
  auto it = files_.find(path);
  if (it != files_.end()) return *it->second;
  auto res = std::make_unique<Result<IniFile>>(ReadIniFile(path));
  return *files_.emplace(path, std::move(res)).first->second;
}

Status LayeredConfig::ExpandWithLocal(const std::vector<std::string>& paths,
                                      const std::vector<std::string>& seen,
                                      std::vector<std::string>* out) {
  std::vector<std::string> expanded;
  for (const std::string& p : paths) {
    expanded.push_back(p);
    std::string local = LocalOverlay(p);
    if (std::find(paths.begin(), paths.end(), local) == paths.end() && IsRegularFile(local)) {
      expanded.push_back(local);
    }
  }
  for (const std::string& p : expanded) {
    Status s = CollectIncludes(p, seen, out);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status LayeredConfig::CollectIncludes(const std::string& path,
                                      const std::vector<std::string>& seen,
                                      std::vector<std::string>* out) {
  const Result<IniFile>& ini = cache_->Get(path);
  if (!ini.ok()) {
    // An unreadable file contributes nothing (as in fail2ban); a broken one
    // stops the load.
    if (IsMissingFileError(ini.status(), path)) {
      if (PathExists(path)) warnings_.push_back(ini.status().message());  // unreadable
      return Status::Ok();
    }
    return ini.status();
  }
  std::vector<std::string> before, after;
  if (const ConfSection* inc = ini->sections.Find("INCLUDES")) {
    if (seen.size() >= kMaxIncludeDepth || out->size() >= kMaxIncludedFiles) {
      return Status::Error(path + ": [INCLUDES] nest deeper than " +
                           std::to_string(kMaxIncludeDepth) + " files or pull in more than " +
                           std::to_string(kMaxIncludedFiles));
    }
    std::vector<std::string> child_seen = seen;
    child_seen.push_back(path);
    for (auto [key, list] : {std::pair{"before", &before}, std::pair{"after", &after}}) {
      const ConfValue* v = inc->Find(key);
      if (!v) v = ini->defaults.Find(key);
      if (!v) continue;
      for (std::string_view name : SplitNewlines(v->text)) {
        std::string target = JoinPath(DirName(path), std::string(name));
        if (std::find(seen.begin(), seen.end(), target) != seen.end()) continue;
        // A missing include is normal: stock files name optional .local
        // overlays (after = paths-overrides.local) that rarely exist.
        Status s = ExpandWithLocal({target}, child_seen, list);
        if (!s.ok()) return s;
      }
    }
  }
  out->insert(out->end(), before.begin(), before.end());
  out->push_back(path);
  out->insert(out->end(), after.begin(), after.end());
  return Status::Ok();
}

void LayeredConfig::MergeFile(const IniFile& ini) {
  for (const auto& [k, v] : ini.defaults) defaults_.Set(k, v);
  for (const auto& [raw_name, sect] : ini.sections) {
    std::string name = raw_name;
    ConfSection renamed;
    const ConfSection* src = &sect;
    // [Init?family=inet6] folds into [Init] as "opt?family=inet6".
    size_t q = raw_name.find('?');
    if (q != std::string::npos && q > 0 && q + 1 < raw_name.size() &&
        std::all_of(raw_name.begin(), raw_name.begin() + static_cast<std::ptrdiff_t>(q),
                    IsWordChar)) {
      name = raw_name.substr(0, q);
      std::string cond = raw_name.substr(q);
      for (const auto& [k, v] : sect) renamed.Set(k + cond, v);
      src = &renamed;
    }
    if (ConfSection* existing = sections_.Find(name)) {
      ConfSection known;
      for (const auto& [k, v] : *existing)
        if (src->Contains(k)) known.Set(k, v);
      ConfSection& known_sect = sections_["KNOWN/" + name];
      for (const auto& [k, v] : known) known_sect.Set(k, v);
      existing = sections_.Find(name);  // the map may have grown
      for (const auto& [k, v] : *src) existing->Set(k, v);
    } else {
      sections_.Set(name, *src);
    }
  }
}

Status LayeredConfig::Read(const std::string& name, bool* found) {
  std::string base = basedir_;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string stem = JoinPath(base, name);
  std::vector<std::string> candidates{stem + ".conf"};
  for (auto& p : SortedGlob(stem + ".d/*.conf")) candidates.push_back(p);
  candidates.push_back(stem + ".local");
  for (auto& p : SortedGlob(stem + ".d/*.local")) candidates.push_back(p);
  std::vector<std::string> present;
  for (auto& p : candidates)
    if (PathExists(p)) present.push_back(p);
  *found = !present.empty();
  if (present.empty()) return Status::Ok();
  std::vector<std::string> all;
  Status s = ExpandWithLocal(present, {}, &all);
  if (!s.ok()) return s;
  bool any = false;
  for (const std::string& p : all) {
    const Result<IniFile>& ini = cache_->Get(p);
    if (!ini.ok()) continue;  // unreadable: already warned
    MergeFile(*ini);
    files_.push_back(p);
    any = true;
  }
  *found = any;
  return Status::Ok();
}

bool LayeredConfig::HasSection(const std::string& section) const {
  return sections_.Contains(section);
}

bool LayeredConfig::HasOption(const std::string& section, const std::string& option,
                              bool with_default) const {
  std::string opt = LowerAscii(option);
  const ConfSection* s = sections_.Find(section);
  if (!s) return section == "DEFAULT" && defaults_.Contains(opt);
  return s->Contains(opt) || (with_default && defaults_.Contains(opt));
}

std::vector<std::string> LayeredConfig::Sections() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : sections_)
    if (k.rfind("KNOWN/", 0) != 0) out.push_back(k);
  return out;
}

std::vector<std::string> LayeredConfig::Options(const std::string& section) const {
  std::vector<std::string> out;
  if (const ConfSection* s = sections_.Find(section))
    for (const auto& [k, v] : *s) out.push_back(k);
  return out;
}

void LayeredConfig::MergeDefault(const std::string& option, const std::string& value) {
  defaults_.Set(option, ConfValue{value, {}});
}

void LayeredConfig::MergeSection(const std::string& section,
                                 const OrderedMap<std::string>& values,
                                 const std::string& prefix) {
  ConfSection& s = sections_[section];
  for (const auto& [k, v] : values) {
    if (prefix.empty()) {
      s.Set(k, ConfValue{v, {}});
    } else if (k.rfind(prefix, 0) != 0 && k != "__name__") {
      s.Set(prefix + k, ConfValue{v, {}});
    }
  }
}

SourceLoc LayeredConfig::Where(const std::string& section, const std::string& option) const {
  std::string opt = LowerAscii(option);
  if (const ConfSection* s = sections_.Find(section))
    if (const ConfValue* v = s->Find(opt)) return v->loc;
  if (const ConfValue* v = defaults_.Find(opt)) return v->loc;
  return {};
}

Lookup LayeredConfig::Get(const std::string& section, const std::string& option,
                          const Vars* vars, bool raw) const {
  const ConfSection* sect = sections_.Find(section);
  if (!sect && section != "DEFAULT") return Lookup{LookupCode::kNoSection, "", ""};
  const std::string opt = LowerAscii(option);
  const std::string* value = nullptr;
  if (vars) value = vars->Find(opt);
  if (!value && sect) {
    if (const ConfValue* v = sect->Find(opt)) value = &v->text;
  }
  if (!value) {
    if (const ConfValue* v = defaults_.Find(opt)) value = &v->text;
  }
  if (!value) return Lookup{LookupCode::kNoOption, "", ""};
  if (raw) return Lookup{LookupCode::kOk, *value, ""};
  Lookup out;
  Status s = Interpolate(section, opt, *value, vars, &out.value);
  if (!s.ok()) return Lookup{LookupCode::kError, "", s.message()};
  return out;
}

Status LayeredConfig::Interpolate(const std::string& section, const std::string& option,
                                  const std::string& raw, const Vars* vars,
                                  std::string* out) const {
  const ConfSection* sect = sections_.Find(section);
  // Values only this lookup sees: __name__ and resolved %(section/opt)s.
  OrderedMap<std::string> extra;
  extra.Set("__name__", section);
  auto find = [&](const std::string& key) -> const std::string* {
    if (const std::string* v = extra.Find(key)) return v;
    if (vars)
      if (const std::string* v = vars->Find(key)) return v;
    if (sect)
      if (const ConfValue* v = sect->Find(key)) return &v->text;
    if (const ConfValue* v = defaults_.Find(key)) return &v->text;
    return nullptr;
  };
  // fail2ban resolves the %(section/opt)s references of every value it
  // interpolates, at every nesting level, before looking names up.
  auto map_section_options = [&](const std::string& text) {
    for (size_t p = text.find("%("); p != std::string::npos; p = text.find("%(", p + 2)) {
      size_t i = p + 2, sec_end = i;
      while (sec_end < text.size() && (IsWordChar(text[sec_end]) || text[sec_end] == '-')) ++sec_end;
      if (sec_end == i || sec_end >= text.size() || text[sec_end] != '/') continue;
      size_t close = text.find(')', sec_end + 1);
      if (close == std::string::npos || close == sec_end + 1 || close + 1 >= text.size() ||
          text[close + 1] != 's')
        continue;
      std::string sopt = text.substr(i, close - i);
      std::string sec = text.substr(i, sec_end - i);
      std::string opt = text.substr(sec_end + 1, close - sec_end - 1);
      if (find(sopt)) continue;
      std::string secl = LowerAscii(sec);
      const ConfValue* v = nullptr;
      bool use_default = false;
      if (secl == "default") {
        use_default = true;
      } else if (secl == "known") {
        const ConfSection* known = sections_.Find("KNOWN/" + section);
        v = known ? known->Find(opt) : nullptr;
        use_default = !v;
      } else {
        const ConfSection* other = sections_.Find(sec);
        if (!other) continue;
        v = other->Find(opt);
        use_default = !v;
      }
      if (use_default) v = defaults_.Find(opt);
      if (!v) continue;
      extra.Set(sopt, v->text);
    }
  };

  SourceLoc loc = Where(section, option);
  const std::string where = loc.file.empty() ? std::string() : loc.ToString() + ": ";
  std::function<Status(const std::string&, int)> some = [&](const std::string& rest_in,
                                                           int depth) -> Status {
    if (depth > kMaxInterpolationDepth) {
      return Status::Error(where + "option '" + option + "' in [" + section +
                           "]: interpolation nested deeper than " +
                           std::to_string(kMaxInterpolationDepth) +
                           " levels (a %(...)s loop?)");
    }
    map_section_options(rest_in);
    std::string_view rest = rest_in;
    while (!rest.empty()) {
      size_t p = rest.find('%');
      if (p == std::string_view::npos) {
        out->append(rest);
        return Status::Ok();
      }
      out->append(rest.substr(0, p));
      rest.remove_prefix(p);
      char c = rest.size() > 1 ? rest[1] : '\0';
      if (c == '%') {
        out->push_back('%');
        rest.remove_prefix(2);
      } else if (c == '(') {
        size_t close = rest.find(')');
        if (close == std::string_view::npos || close == 2 || close + 1 >= rest.size() ||
            rest[close + 1] != 's') {
          return Status::Error(where + "option '" + option + "' in [" + section +
                               "]: bad interpolation reference '" +
                               std::string(rest.substr(0, 40)) + "'");
        }
        std::string var = LowerAscii(rest.substr(2, close - 2));
        rest.remove_prefix(close + 2);
        const std::string* v = find(var);
        if (!v) {
          return Status::Error(where + "option '" + option + "' in [" + section +
                               "] refers to %(" + var + ")s, which is not defined");
        }
        if (v->find('%') != std::string::npos) {
          std::string copy = *v;
          Status s = some(copy, depth + 1);
          if (!s.ok()) return s;
        } else {
          out->append(*v);
        }
      } else {
        return Status::Error(where + "option '" + option + "' in [" + section +
                             "]: '%' must be followed by '%' or '(' (write %% for a literal %)");
      }
    }
    return Status::Ok();
  };
  return some(raw, 1);
}

Lookup LayeredConfig::GetEx(const std::string& section, const std::string& option,
                            const Vars* vars) const {
  size_t slash = option.find('/');
  if (slash != std::string::npos && slash > 0) {
    std::string sec = option.substr(0, slash), opt = option.substr(slash + 1);
    bool sec_ok = std::all_of(sec.begin(), sec.end(),
                              [](char c) { return IsWordChar(c) || c == '-'; });
    bool opt_ok = !opt.empty() && std::none_of(opt.begin(), opt.end(), [](char c) {
      return IsPyAsciiSpace(c) || c == '>';
    });
    if (sec_ok && opt_ok) {
      std::string secl = LowerAscii(sec);
      std::vector<std::string> tries;
      if (secl == "known") {
        tries = {"KNOWN/" + section, section};
      } else {
        tries = {secl == "default" ? std::string("DEFAULT") : sec};
      }
      for (const std::string& t : tries) {
        Lookup l = Get(t, opt);
        if (l.code == LookupCode::kOk || l.code == LookupCode::kError) return l;
      }
    }
  }
  return Get(section, option, vars);
}

}  // namespace bantam
