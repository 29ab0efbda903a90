#include "bantam/command_action.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <utility>

#include "bantam/action_queue.h"
#include "bantam/duration.h"
#include "bantam/py.h"
#include "bantam/tag_substitution.h"

namespace bantam {

namespace {

constexpr int kMaxTagReplacements = 25;  // fail2ban's MAX_TAG_REPLACE_COUNT

const char* const kOperationKeys[] = {"actionstart", "actionban",   "actionreban",
                                      "actionunban", "actioncheck", "actionrepair",
                                      "actionflush", "actionstop",  "actionreload"};

// Options whose values come from outside and are escaped when substituted
// (fail2ban's CommandAction._escapedTags).
const std::set<std::string>& EscapedTags() {
  static const std::set<std::string> kTags = {"matches", "ipmatches", "ipjailmatches"};
  return kTags;
}

// fail2ban's ESCAPE_CRE: \#&;`|*?~<>^()[]{}$'" newline CR.
bool IsShellSpecial(char c) {
  switch (c) {
    case '\\':
    case '#':
    case '&':
    case ';':
    case '`':
    case '|':
    case '*':
    case '?':
    case '~':
    case '<':
    case '>':
    case '^':
    case '(':
    case ')':
    case '[':
    case ']':
    case '{':
    case '}':
    case '$':
    case '\'':
    case '"':
    case '\n':
    case '\r':
      return true;
    default:
      return false;
  }
}

bool NeedsEscape(const std::string& v) {
  for (char c : v)
    if (IsShellSpecial(c)) return true;
  return false;
}

// fail2ban's TAG_CRE <([^ <>]+)> at `i` (s[i] == '<'): the name's end (the
// '>' position) or npos.
size_t TagEnd(const std::string& s, size_t i) {
  size_t j = i + 1;
  while (j < s.size() && s[j] != ' ' && s[j] != '<' && s[j] != '>') ++j;
  if (j > i + 1 && j < s.size() && s[j] == '>') return j;
  return std::string::npos;
}

// fail2ban's FCUSTAG_CRE <F-([A-Z0-9_\-]+)> at `i`: the name's end or npos.
size_t FTagEnd(const std::string& s, size_t i) {
  if (s.compare(i, 3, "<F-") != 0) return std::string::npos;
  size_t j = i + 3;
  while (j < s.size() &&
         (std::isupper(static_cast<unsigned char>(s[j])) ||
          std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '-'))
    ++j;
  if (j > i + 3 && j < s.size() && s[j] == '>') return j;
  return std::string::npos;
}

// Where a character of a shell script stands, as far as quoting goes. Only
// the top level of the script is tracked ("$(...)" nesting is not): a wrong
// guess makes a value arrive as the variable's name, never run it.
class QuoteState {
 public:
  enum Kind { kNone, kSingle, kDouble };
  Kind kind() const { return kind_; }
  void Feed(char c) {
    if (escaped_) {
      escaped_ = false;
      return;
    }
    switch (kind_) {
      case kNone:
        if (c == '\\')
          escaped_ = true;
        else if (c == '\'')
          kind_ = kSingle;
        else if (c == '"')
          kind_ = kDouble;
        break;
      case kSingle:
        if (c == '\'') kind_ = kNone;
        break;
      case kDouble:
        if (c == '\\')
          escaped_ = true;
        else if (c == '"')
          kind_ = kNone;
        break;
    }
  }
  void Feed(const std::string& s) {
    for (char c : s) Feed(c);
  }

 private:
  Kind kind_ = kNone;
  bool escaped_ = false;
};

// Collects the values passed as positional parameters.
class ShellVars {
 public:
  // The text standing for `value` of tag `tag` where `quote` says.
  std::string Reference(const std::string& tag, const std::string& value, QuoteState::Kind quote) {
    std::string base = "f2bV_";
    for (char c : tag) base += std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_';
    std::string name = base;
    for (int n = 2;; ++n) {
      auto it = vars_.find(name);
      if (it == vars_.end()) {
        vars_[name] = order_.size();
        order_.emplace_back(name, value);
        break;
      }
      if (order_[it->second].second == value) break;
      name = base + "_" + std::to_string(n);  // <a-b> and <a_b> must not share
    }
    switch (quote) {
      case QuoteState::kNone:
        return "\"${" + name + "}\"";
      case QuoteState::kDouble:
        return "${" + name + "}";
      case QuoteState::kSingle:
        return "'\"${" + name + "}\"'";
    }
    return "";
  }
  // fail2ban's buildShellCmd: "v1=$0 v2=$1 \n" before the command.
  ShellCommand Build(std::string script) const {
    ShellCommand cmd;
    if (order_.empty()) {
      cmd.script = std::move(script);
      return cmd;
    }
    std::string head;
    for (size_t i = 0; i < order_.size(); ++i) {
      head += order_[i].first + "=${" + std::to_string(i) + "} ";
      cmd.args.push_back(order_[i].second);
    }
    cmd.script = head + "\n" + script;
    return cmd;
  }

 private:
  std::map<std::string, size_t> vars_;
  std::vector<std::pair<std::string, std::string>> order_;
};

std::string DropNul(std::string v) {
  if (v.find('\0') != std::string::npos) std::erase(v, '\0');
  return v;
}

// fail2ban's ADD_REPL_TAGS fallbacks that need no lookup.
std::optional<std::string> PlainFallback(const std::string& tag) {
  if (tag == "br") return std::string("\n");
  if (tag == "sp") return std::string(" ");
  return std::nullopt;
}





// fail2ban's CONDITIONAL_FAM_RE ^(\w+)\?(family)=(.*)$: "blocktype?family=inet6".
bool IsCondKey(const std::string& key) {
  size_t q = key.find("?family=");
  if (q == std::string::npos || q == 0) return false;
  for (size_t i = 0; i < q; ++i)
    if (!std::isalnum(static_cast<unsigned char>(key[i])) && key[i] != '_') return false;
  return true;
}

}  // namespace

std::string HostName(bool fqdn) {
  static std::once_flag once;
  static std::string short_name, full_name;
  std::call_once(once, [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof(buf) - 1) != 0) buf[0] = 0;
    short_name = buf;
    full_name = short_name;
    addrinfo hints = {};
    hints.ai_flags = AI_CANONNAME;
    hints.ai_family = AF_UNSPEC;
    addrinfo* res = nullptr;
    if (!short_name.empty() && getaddrinfo(buf, nullptr, &hints, &res) == 0) {
      if (res && res->ai_canonname) full_name = res->ai_canonname;
      freeaddrinfo(res);
    }
  });
  return fqdn ? full_name : short_name;
}

// fail2ban's getPTR(''): "4.3.2.1." / nibbles reversed for IPv6; "" otherwise.
std::string ReversePointer(const std::string& ip) {
  unsigned char a[16];
  std::string out;
  if (inet_pton(AF_INET, ip.c_str(), a) == 1) {
    for (int i = 3; i >= 0; --i) out += std::to_string(a[i]) + ".";
  } else if (inet_pton(AF_INET6, ip.c_str(), a) == 1) {
    static const char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      out += kHex[a[i] & 0xf];
      out += '.';
      out += kHex[a[i] >> 4];
      out += '.';
    }
  }
  return out;
}

std::vector<std::string> SplitCommaList(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += '\n';
    out += v[i];
  }
  return out;
}

std::optional<std::string> TicketTags::Value(const std::string& tag) {
  if (tag == "family") return info_.family;
  if (tag == "ip") return info_.ip;
  if (tag == "fid") return info_.fid.empty() ? info_.ip : info_.fid;
  if (tag == "failures") return std::to_string(info_.failures);
  if (tag == "time") return FormatStr2Sec(TimeValue{false, 0, info_.time});
  if (tag == "bantime") return std::to_string(info_.bantime);
  if (tag == "bancount") return std::to_string(info_.bancount);
  if (tag == "matches") return Join(info_.matches);
  if (tag == "restored") return std::string(info_.restored ? "1" : "0");
  if (tag == "ip-rev") return ReversePointer(info_.ip);
  if (tag == "ip-host") {
    std::optional<std::string> h;
    if (info_.context) h = info_.context->HostName(info_.ip);
    return h ? *h : std::string("None");
  }
  if (tag == "ipmatches" || tag == "ipfailures" || tag == "ipjailmatches" ||
      tag == "ipjailfailures") {
    bool all = tag == "ipmatches" || tag == "ipfailures";
    const MergedBans* m = Merged(all);
    bool want_matches = tag == "ipmatches" || tag == "ipjailmatches";
    if (!m) return want_matches ? Join(info_.matches) : std::to_string(info_.failures);
    return want_matches ? Join(m->matches) : std::to_string(m->failures);
  }
  if (tag.rfind("jail.", 0) == 0 && info_.context)
    return info_.context->JailCounter(info_.jail, tag);
  if (tag == "fq-hostname" || tag == "sh-hostname") return HostName(tag == "fq-hostname");
  return std::nullopt;
}

const MergedBans* TicketTags::Merged(bool all_jails) {
  std::optional<MergedBans>& slot = all_jails ? merged_all_ : merged_jail_;
  bool& asked = all_jails ? asked_all_ : asked_jail_;
  if (!asked) {
    asked = true;
    if (info_.context) slot = info_.context->MergedBansOf(info_.ip, all_jails ? "" : info_.jail);
  }
  return slot ? &*slot : nullptr;
}

std::string TicketDataKey(const std::string& tag) {
  std::string key;
  for (char c : tag) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (key == "id") return "fid";
  if (key == "port") return "fport";
  return key;
}

std::string EscapeTag(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (IsShellSpecial(c)) {
      out += '\\';
      out += c == '\n' ? 'n' : c == '\r' ? 'r' : c;
    } else {
      out += c;
    }
  }
  return out;
}

ShellCommand ReplaceDynamicTags(const std::string& command, const TagLookup& lookup,
                                const std::map<std::string, std::string>& captures) {
  ShellVars vars;
  // Pass 1: tags the lookup knows (never re-scanned: no recursion).
  std::string pass1;
  {
    QuoteState quote;
    size_t i = 0;
    while (i < command.size()) {
      size_t end = command[i] == '<' ? TagEnd(command, i) : std::string::npos;
      if (end == std::string::npos) {
        quote.Feed(command[i]);
        pass1 += command[i++];
        continue;
      }
      std::string tag = command.substr(i + 1, end - i - 1);
      std::optional<std::string> v = lookup ? lookup(tag) : std::nullopt;
      if (v) {
        std::string value = DropNul(std::move(*v));
        pass1 += NeedsEscape(value) ? vars.Reference(tag, value, quote.kind()) : value;
        i = end + 1;
        continue;
      }
      if (std::optional<std::string> f = PlainFallback(tag)) {
        pass1 += *f;  // blank characters: no effect on quoting
        i = end + 1;
        continue;
      }
      quote.Feed('<');  // left as written; go on after '<'
      pass1 += command[i++];
    }
  }
  // Pass 2: <F-NAME> from the filter's captures; unknown ones vanish.
  std::string pass2;
  if (pass1.find("<F-") == std::string::npos) {
    pass2 = std::move(pass1);
  } else {
    QuoteState quote;
    size_t i = 0;
    while (i < pass1.size()) {
      size_t end = pass1[i] == '<' ? FTagEnd(pass1, i) : std::string::npos;
      if (end == std::string::npos) {
        quote.Feed(pass1[i]);
        pass2 += pass1[i++];
        continue;
      }
      std::string key = TicketDataKey(pass1.substr(i + 3, end - i - 3));
      auto it = captures.find(key);
      if (it != captures.end()) {
        std::string value = DropNul(it->second);
        pass2 += NeedsEscape(value) ? vars.Reference("F_" + key, value, quote.kind()) : value;
      }
      i = end + 1;
    }
  }
  return vars.Build(std::move(pass2));
}

const char* ActionOpName(ActionOp op) {
  switch (op) {
    case ActionOp::kStart:
      return "start";
    case ActionOp::kStop:
      return "stop";
    case ActionOp::kBan:
      return "ban";
    case ActionOp::kReban:
      return "reban";
    case ActionOp::kProlong:
      return "prolong";
    case ActionOp::kUnban:
      return "unban";
    case ActionOp::kFlush:
      return "flush";
    case ActionOp::kReload:
      return "reload";
    case ActionOp::kCheck:
      return "check";
  }
  return "?";
}

std::string CommandRun::Describe() const {
  std::string s = operation;
  if (!family.empty()) s += " (" + family + ")";
  s += " -- exec: " + command.script;
  for (const std::string& a : command.args) s += " [arg: " + a + "]";
  s += " -- " + result.Describe(timeout_seconds);
  auto add = [&](const char* what, const std::string& text) {
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      s += std::string("\n  ") + what + ": " + text.substr(start, nl - start);
      start = nl + 1;
    }
  };
  if (!result.ok()) {
    add("stdout", result.out);
    add("stderr", result.err);
  }
  return s;
}

// ------------------------------------------------------------- CommandAction

Result<std::unique_ptr<CommandAction>> CommandAction::Create(std::string jail, std::string name,
                                                             const Value& options, ActionEnv env) {
  OrderedMap<std::string> map;
  auto put = [&](const std::string& key, const Value& v) {
    map.Set(key, v.is_string() ? v.as_string() : v.ToPyStr());
  };
  if (options.is_dict()) {
    for (const auto& [k, v] : options.as_dict()) put(k, v);
  } else if (options.is_list()) {
    for (const Value& pair : options.as_list()) {
      if (!pair.is_list() || pair.as_list().size() != 2 || !pair.as_list()[0].is_string()) {
        return Status::Error("action " + jail + "/" + name +
                             ": options must be [name, value] pairs, got " + pair.ToJson());
      }
      put(pair.as_list()[0].as_string(), pair.as_list()[1]);
    }
  } else {
    return Status::Error("action " + jail + "/" + name + ": options must be a list, got " +
                         options.ToJson());
  }
  return Create(std::move(jail), std::move(name), std::move(map), env);
}

Result<std::unique_ptr<CommandAction>> CommandAction::Create(std::string jail, std::string name,
                                                             OrderedMap<std::string> options,
                                                             ActionEnv env) {
  // fail2ban ignores `bantime` set on an action (it is a ticket value) and
  // converts `timeout` with str2seconds; <timeout> then reads the seconds.
  options.Erase("bantime");
  double timeout = 60;
  if (const std::string* t = options.Find("timeout")) {
    Result<TimeValue> tv = ParseTimeValue(*t);
    if (!tv.ok()) {
      return Status::Error("action " + jail + "/" + name + ": timeout: " + tv.status().message());
    }
    timeout = tv->seconds();
    options.Set("timeout", FormatStr2Sec(*tv));
  } else {
    options.Set("timeout", "60");
  }
  for (const char* key : kOperationKeys)
    if (!options.Contains(key)) options.Set(key, "");
  std::unique_ptr<CommandAction> action(
      new CommandAction(std::move(jail), std::move(name), std::move(options), env));
  action->timeout_ = timeout;
  return action;
}

CommandAction::CommandAction(std::string jail, std::string name, OrderedMap<std::string> options,
                             ActionEnv env)
    : jail_(std::move(jail)), name_(std::move(name)), options_(std::move(options)), env_(env) {
  norestored_ = PyAsBool(Option("norestored"));
  if (const std::string* v = options_.Find("actionstart_on_demand")) {
    start_on_demand_ = PyAsBool(*v);
  } else {
    start_on_demand_ = HasCondSection();
  }
  if (env_.pool) strand_ = env_.pool->NewStrand();
}

CommandAction::~CommandAction() {
  if (env_.pool) env_.pool->WaitIdle(strand_);
}

std::optional<std::string> FindOptionLocked(std::mutex& mu, const OrderedMap<std::string>& options,
                                            const std::string& key) {
  std::lock_guard<std::mutex> lock(mu);
  const std::string* v = options.Find(key);
  if (v == nullptr) return std::nullopt;
  return *v;
}

std::string CommandAction::Option(const std::string& key) const {
  return GetProperty(key).value_or(std::string());
}

std::optional<std::string> CommandAction::GetProperty(const std::string& key) const {
  return FindOptionLocked(options_mu_, options_, key);
}

void CommandAction::SetProperty(const std::string& key, const std::string& value) {
  // The option changes on the strand, later: may_read_matches answers from
  // what was set meanwhile (and stays true even if it is set back).
  if (value.find("matches") != std::string::npos) set_mentions_matches_ = true;
  if (value.find("ipmatches") != std::string::npos) set_mentions_ipmatches_ = true;
  // On the strand, between operations: no command is half-built from the
  // old value, and the caches the strand owns are dropped there.
  auto apply = [this, key, value] {
    {
      std::lock_guard<std::mutex> lock(options_mu_);
      options_.Set(key, value);
    }
    if (key == "timeout") {
      Result<double> t = ParseDuration(value);
      if (t.ok() && *t > 0) timeout_ = *t;
    }
    static_cache_.clear();
    substituted_.clear();
  };
  if (env_.pool == nullptr) {
    apply();
    return;
  }
  env_.pool->Post(strand_, [apply]() -> WorkerPool::Completion {
    apply();
    return [] {};
  });
}

bool CommandAction::has_flush() const { return !Option("actionflush").empty(); }

bool CommandAction::may_read_matches(bool other_jails) const {
  if (other_jails ? set_mentions_ipmatches_ : set_mentions_matches_) return true;
  const std::string_view needle = other_jails ? "ipmatches" : "matches";
  std::lock_guard<std::mutex> lock(options_mu_);
  for (const auto& [key, value] : options_) {
    if (value.find(needle) != std::string::npos) return true;
  }
  return false;
}

bool CommandAction::has_prolong() const {
  std::string v = Option("actionprolong");
  for (char c : v)
    if (!std::isspace(static_cast<unsigned char>(c))) return true;
  return false;
}

uint64_t CommandAction::ban_epoch() const { return ban_epoch_.load(); }

bool CommandAction::HasCondSection() const {
  std::lock_guard<std::mutex> lock(options_mu_);
  for (const auto& [k, v] : options_)
    if (IsCondKey(k)) return true;
  return false;
}

std::vector<std::string> CommandAction::Families() const {
  const std::string families = Option("families");
  if (!families.empty()) return SplitCommaList(families);
  if (HasCondSection()) {
    if (env_.ipv6_allowed) return {"inet4", "inet6"};
    return {"inet4"};
  }
  return {""};
}

Result<std::string> CommandAction::StaticCommand(const std::string& op_tag,
                                                 const std::string& family) {
  const std::string conditional = family.empty() ? "" : "family=" + family;
  auto key = std::make_pair(op_tag, conditional);
  if (auto it = static_cache_.find(key); it != static_cache_.end()) return it->second;

  auto sub = substituted_.find(conditional);
  if (sub == substituted_.end()) {
    OrderedMap<std::string> options;
    {
      std::lock_guard<std::mutex> lock(options_mu_);
      options = options_;
    }
    Result<OrderedMap<std::string>> r =
        SubstituteTags(options, EscapedTags(), nullptr, conditional);
    if (!r.ok()) return r.status();
    sub = substituted_.emplace(conditional, std::move(*r)).first;
  }
  const OrderedMap<std::string>& props = sub->second;

  // fail2ban's replaceTag: substitute the query until it stops changing.
  std::string query = "<" + op_tag + ">";
  for (int count = kMaxTagReplacements + 1;;) {
    std::string value;
    size_t i = 0;
    while (i < query.size()) {
      size_t end = query[i] == '<' ? TagEnd(query, i) : std::string::npos;
      if (end == std::string::npos) {
        value += query[i++];
        continue;
      }
      std::string tag = query.substr(i + 1, end - i - 1);
      const std::string* v = conditional.empty() ? nullptr : props.Find(tag + "?" + conditional);
      if (!v) v = props.Find(tag);
      if (v) {
        value += EscapedTags().count(tag) ? EscapeTag(*v) : *v;
      } else if (std::optional<std::string> f = PlainFallback(tag)) {
        value += *f;
      } else if (tag == "fq-hostname" || tag == "sh-hostname") {
        value += HostName(tag == "fq-hostname");
      } else {
        value.append(query, i, end + 1 - i);
      }
      i = end + 1;
    }
    if (value == query || value.find('<') == std::string::npos) {
      query = std::move(value);
      break;
    }
    query = std::move(value);
    if (--count <= 0) {
      return Status::Error(
          "unexpected too long replacement interpolation, possible self "
          "referencing definitions in query: " +
          query);
    }
  }
  static_cache_[key] = query;
  return query;
}

// ------------------------------------------------------------------- OpRun

// One operation in progress: fail2ban's CommandAction methods, with its
// exceptions turned into Status and its log lines into the report.
class CommandAction::OpRun {
 public:
  OpRun(CommandAction* a, const BanInfo& info, ActionReport* report)
      : a_(*a), info_(info), report_(*report) {}

  Status Start() { return StartFamily(std::nullopt, false); }

  Status Stop() {
    std::vector<std::string> fams;
    for (const auto& [f, v] : a_.started_)
      if (v) fams.push_back(f);
    if (fams.empty()) return Skip();
    a_.started_.clear();
    return ExecuteOperation("actionstop", "stopping", fams, [&](const std::string& f, bool ok) {
      if (ok) ForgetExecuted("actionstart", f);
    });
  }

  Status Ban(const std::string& op_tag) {
    const std::string& family = info_.family;
    if (info_.restored && a_.norestored_) return Skip();
    if (a_.start_on_demand_ && !Started(family)) {
      if (Status s = StartFamily(family, true); !s.ok()) return s;
    }
    Result<bool> ok = ProcessCmd(op_tag);
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status::Error("Error banning " + info_.ip);
    a_.started_[family] |= 3;
    return Status::Ok();
  }

  Status Prolong() {
    if (info_.restored && a_.norestored_) return Skip();
    if (!a_.has_prolong()) return Skip();
    Result<bool> ok = ProcessCmd("actionprolong");
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status::Error("Error prolonging " + info_.ip);
    return Status::Ok();
  }

  Status Unban() {
    auto it = a_.started_.find(info_.family);
    if (it == a_.started_.end() || !(it->second & 2)) return Skip();
    Result<bool> ok = ProcessCmd("actionunban");
    if (!ok.ok()) return ok.status();
    if (!*ok) return Status::Error("Error unbanning " + info_.ip);
    return Status::Ok();
  }

  Status Flush() {
    std::vector<std::string> fams;
    for (const auto& [f, v] : a_.started_)
      if ((v & 3) == 3) fams.push_back(f);
    if (fams.empty()) return Skip();
    return ExecuteOperation("actionflush", "flushing", fams, [&](const std::string& f, bool ok) {
      auto it = a_.started_.find(f);
      if (ok && it != a_.started_.end() && it->second) it->second &= ~2;
    });
  }

  Status Reload() { return ExecuteOperation("actionreload", "reloading", {}, nullptr); }

  // fail2ban's consistencyCheck (without a beforeRepair hook).
  Status Check() {
    if (a_.Option("actioncheck").empty()) return Skip();
    bool all = true;
    std::vector<std::pair<std::string, int>> snapshot(a_.started_.begin(), a_.started_.end());
    for (const auto& [family, started] : snapshot) {
      if (!started) continue;
      Result<int> r = InvariantCheck(family, nullptr, true);
      if (!r.ok()) return r.status();
      if (*r == 0) {
        a_.started_[family] = 0;
        ForgetExecuted("actionstart", family);
        all = false;
      }
    }
    return all ? Status::Ok()
               : Status::Error("consistency check of action " + a_.jail_ + "/" + a_.name_ +
                               " failed");
  }

 private:
  // fail2ban's __started.get(family): no entry is made by asking.
  int Started(const std::string& family) const {
    auto it = a_.started_.find(family);
    return it == a_.started_.end() ? 0 : it->second;
  }

  Status Skip() {
    report_.skipped = true;
    return Status::Ok();
  }

  // Runs one command; empty commands succeed without running.
  bool Exec(const std::string& operation, const std::string& family, ShellCommand cmd) {
    if (cmd.script.empty()) return true;
    CommandRun run;
    run.operation = operation;
    run.family = family;
    run.timeout_seconds = a_.timeout_;
    run.result = a_.env_.spawner->Run({cmd.script, cmd.args, a_.timeout_});
    run.command = std::move(cmd);
    bool ok = run.result.ok();
    report_.runs.push_back(std::move(run));
    return ok;
  }

  // fail2ban's _getOperation: options substituted, then <family>.
  Result<std::string> Operation(const std::string& op_tag, const std::string& family) {
    return a_.StaticCommand(op_tag, family);
  }

  // fail2ban's replaceDynamicTags with this ticket (ticket) or, for start,
  // stop, check and the like, with an empty ticket of `family`.
  ShellCommand Dynamic(const std::string& cmd, const std::string& family, bool ticket) {
    if (ticket) {
      return ReplaceDynamicTags(
          cmd, [&](const std::string& tag) { return tags_.Value(tag); }, info_.captures);
    }
    BanInfo empty;
    empty.family = family;
    empty.jail = info_.jail;
    empty.bantime = info_.bantime;
    empty.time = info_.time;
    if (empty.time == 0) {
      empty.time =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
    }
    empty.context = info_.context;
    TicketTags other(empty);
    return ReplaceDynamicTags(
        cmd, [&](const std::string& tag) { return other.Value(tag); }, empty.captures);
  }

  std::vector<std::string> ExecutedFor(const std::string& op_tag, const std::string& not_family) {
    std::vector<std::string> out;
    auto it = a_.executed_.find(op_tag);
    if (it == a_.executed_.end()) return out;
    for (const auto& [f, cmd] : it->second)
      if (f != not_family) out.push_back(cmd);
    return out;
  }

  void ForgetExecuted(const std::string& op_tag, const std::string& family) {
    auto it = a_.executed_.find(op_tag);
    if (it == a_.executed_.end()) return;
    auto f = it->second.find(family);
    if (f == it->second.end()) return;
    std::string cmd = f->second;
    it->second.erase(f);
    std::erase_if(it->second, [&](const auto& kv) { return kv.second == cmd; });
  }

  // fail2ban's _executeOperation: the operation for each family (all
  // started ones when `families` is empty), a command shared by two
  // families only once.
  Status ExecuteOperation(const std::string& op_tag, const std::string& verb,
                          std::vector<std::string> families,
                          const std::function<void(const std::string&, bool)>& after) {
    if (families.empty()) {
      for (const auto& [f, v] : a_.started_)
        if (v) families.push_back(f);
    }
    bool res = true;
    std::string err = "script error";
    for (const std::string& fam : families) {
      Result<std::string> cmd = Operation(op_tag, fam);
      if (!cmd.ok()) {
        res = false;
        err = cmd.status().message();
        continue;
      }
      bool ret = true;
      std::vector<std::string> others = ExecutedFor(op_tag, fam);
      if (!cmd->empty() && std::find(others.begin(), others.end(), *cmd) == others.end()) {
        ret = Exec(op_tag, fam, Dynamic(*cmd, fam, false));
        res = res && ret;
      }
      if (after) after(fam, ret);
      if (ret) {
        a_.executed_[op_tag][fam] = *cmd;
      } else {
        ForgetExecuted(op_tag, fam);
      }
    }
    if (!res) {
      return Status::Error("Error " + verb + " action " + a_.jail_ + "/" + a_.name_ + ": " + err);
    }
    return Status::Ok();
  }

  // fail2ban's _start.
  Status StartFamily(std::optional<std::string> family, bool force) {
    if (a_.start_on_demand_) {
      if (!force) return Skip();
    } else if (!force && family && Started(*family)) {
      return Status::Ok();
    }
    std::vector<std::string> fams = family ? std::vector<std::string>{*family} : a_.Families();
    return ExecuteOperation("actionstart", "starting", fams, [&](const std::string& f, bool ok) {
      if (ok) {
        ForgetExecuted("actionstop", f);
        a_.started_[f] = 1;
      }
    });
  }

  // fail2ban's _stop(family).
  Status StopFamily(const std::string& family) {
    auto it = a_.started_.find(family);
    if (it == a_.started_.end()) return Status::Ok();
    it->second = 0;
    return ExecuteOperation("actionstop", "stopping", {family}, [&](const std::string& f, bool ok) {
      if (ok) ForgetExecuted("actionstart", f);
    });
  }

  // fail2ban's _invariantCheck: 1 sane (or restored), 0 broken, -1 broken
  // but not to be repaired (before_repair said no).
  Result<int> InvariantCheck(const std::string& family, const std::function<bool()>& before_repair,
                             bool force_start) {
    if (!force_start && !a_.started_.count(family)) return 1;
    Result<std::string> check = Operation("actioncheck", family);
    if (!check.ok()) return check.status();
    auto run_check = [&] { return Exec("actioncheck", family, Dynamic(*check, family, false)); };
    if (check->empty() || run_check()) return 1;
    if (before_repair && !before_repair()) return -1;
    report_.notes.push_back("Invariant check failed. Trying to restore a sane environment");
    report_.ban_epoch = ++a_.ban_epoch_;
    Result<std::string> repair = Operation("actionrepair", family);
    if (!repair.ok()) return repair.status();
    if (!repair->empty()) {
      if (!Exec("actionrepair", family, Dynamic(*repair, family, false))) {
        a_.started_[family] = 0;
        report_.notes.push_back("Unable to restore environment");
        return 0;
      }
      a_.started_[family] = 1;
    } else {
      // No repair command: restart the action for this family.
      (void)StopFamily(family);  // fail2ban ignores errors of this stop
      if (Status s = StartFamily(family, force_start || !a_.start_on_demand_); !s.ok()) return s;
    }
    if (Started(family) && !run_check()) {
      report_.notes.push_back("Unable to restore environment");
      return 0;
    }
    return 1;
  }

  // fail2ban's _processCmd: run the command; when it fails, check (and
  // repair) the environment and run it once more.
  Result<bool> ProcessCmd(const std::string& op_tag) {
    const std::string& family = info_.family;
    const bool has_check = !a_.Option("actioncheck").empty();
    for (int attempt = 0;; ++attempt) {
      if (attempt && has_check) {
        auto before_repair = [&] {
          if (op_tag == "actionunban" && !PyAsBool(a_.Option("actionrepair_on_unban"))) {
            report_.notes.push_back("Invariant check failed. Unban is impossible.");
            return false;
          }
          return true;
        };
        Result<int> r = InvariantCheck(family, before_repair, op_tag != "actionunban");
        if (!r.ok()) return r.status();
        if (*r != 1) return false;
      }
      Result<std::string> cmd = a_.StaticCommand(op_tag, family);
      if (!cmd.ok()) return cmd.status();
      bool ok = Exec(op_tag, family, Dynamic(*cmd, family, true));
      if (ok || attempt >= 1) return ok;
    }
  }

  CommandAction& a_;
  const BanInfo& info_;
  ActionReport& report_;
  TicketTags tags_{info_};
};

ActionReport CommandAction::Run(ActionOp op, const BanInfo& info) {
  ActionReport report;
  report.op = op;
  report.jail = jail_;
  report.action = name_;
  report.ip = info.ip;
  OpRun run(this, info, &report);
  switch (op) {
    case ActionOp::kStart:
      report.status = run.Start();
      break;
    case ActionOp::kStop:
      report.status = run.Stop();
      break;
    case ActionOp::kBan:
      report.status = run.Ban("actionban");
      break;
    case ActionOp::kReban:
      report.status = run.Ban(Option("actionreban").empty() ? "actionban" : "actionreban");
      break;
    case ActionOp::kProlong:
      report.status = run.Prolong();
      break;
    case ActionOp::kUnban:
      report.status = run.Unban();
      break;
    case ActionOp::kFlush:
      report.status = run.Flush();
      break;
    case ActionOp::kReload:
      report.status = run.Reload();
      break;
    case ActionOp::kCheck:
      report.status = run.Check();
      break;
  }
  report.ban_epoch = ban_epoch_.load();
  return report;
}

void CommandAction::Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) {
  // A ban or unban whose command is empty runs nothing (fail2ban returns
  // before executing an empty command): answered here, without a trip
  // through the worker pool. An action started on demand still needs its
  // strand, which starts it.
  if ((op == ActionOp::kBan || op == ActionOp::kUnban) && !start_on_demand_) {
    const std::string command = Option(op == ActionOp::kBan ? "actionban" : "actionunban");
    if (command.find_first_not_of(" \t\r\n") == std::string::npos) {
      ActionReport report;
      report.op = op;
      report.jail = jail_;
      report.action = name_;
      report.ip = info.ip;
      report.skipped = true;
      if (done) done(std::move(report));
      return;
    }
  }
  QueuedOperation q;
  q.op = op;
  q.jail = jail_;
  q.action = name_;
  q.ip = info.ip;
  q.run = [this, op, info = std::move(info)] { return Run(op, info); };
  q.done = std::move(done);
  PostOperation(*env_.pool, strand_, std::move(q));
}

}  // namespace bantam
