#include "bantam/ignore_list.h"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "bantam/duration.h"

namespace bantam {
namespace {

// fail2ban's DNS and own-address caches keep answers this long.
constexpr double kDnsCacheSeconds = 300;
constexpr size_t kDnsCacheMax = 1000;

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Characters fail2ban (CommandAction.ESCAPE_CRE) will not paste into a shell
// command from foreign input.
bool NeedsEscape(std::string_view v) {
  return v.find_first_of("\\#&;`|*?~<>^()[]{}$'\"\n\r") != std::string_view::npos;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

// ---- ignorecache option -------------------------------------------------

Result<std::optional<IgnoreCacheOptions>> ParseIgnoreCache(std::string_view value) {
  if (Trim(value).empty()) return std::optional<IgnoreCacheOptions>();
  auto fail = [](const std::string& why) { return Status::Error("ignorecache: " + why); };
  std::vector<std::pair<std::string, std::string>> opts;
  size_t i = 0;
  const std::string_view s = value;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    const size_t name_start = i;
    while (i < s.size() && (IsWordChar(s[i]) || s[i] == '-' || s[i] == '.')) ++i;
    if (i == name_start || i >= s.size() || s[i] != '=') {
      return fail("expected option, wrong syntax at " + std::to_string(name_start) + ": " +
                  std::string(s.substr(name_start, 25)));
    }
    std::string name(s.substr(name_start, i - name_start));
    ++i;
    std::string_view v;
    if (i < s.size() && (s[i] == '"' || s[i] == '\'')) {
      const size_t close = s.find(s[i], i + 1);
      if (close == std::string_view::npos)
        return fail("unterminated quote in '" + std::string(s) + "'");
      v = s.substr(i + 1, close - i - 1);
      i = close + 1;
    } else {
      const size_t start = i;
      while (i < s.size() && s[i] != ',' && s[i] != ']') ++i;
      v = s.substr(start, i - start);
    }
    opts.emplace_back(name, std::string(Trim(v)));
    if (i < s.size()) {
      if (s[i] != ',') {
        return fail("unexpected syntax at " + std::to_string(i) + " after option '" + name +
                    "': " + std::string(s.substr(i, 25)));
      }
      ++i;
    }
  }
  IgnoreCacheOptions out;
  bool has_key = false;
  for (const auto& [name, v] : opts) {
    if (name == "key") {
      out.key = v;
      has_key = true;
    } else if (name == "max-count") {
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0) return fail("invalid max-count '" + v + "'");
      out.max_count = static_cast<size_t>(n);
    } else if (name == "max-time") {
      Result<double> t = ParseDuration(v);
      if (!t.ok()) return fail(t.status().message());
      out.max_time = *t;
    }
    // fail2ban ignores other options.
  }
  if (!has_key) return fail("missing 'key' option");
  return std::optional<IgnoreCacheOptions>(std::move(out));
}

const char* IgnoreSourceName(IgnoreSource source) {
  switch (source) {
    case IgnoreSource::kCache:
      return "cache";
    case IgnoreSource::kSelf:
      return "ignoreself rule";
    case IgnoreSource::kIp:
      return "ip";
    case IgnoreSource::kDns:
      return "dns";
    case IgnoreSource::kCommand:
      return "command";
    case IgnoreSource::kNone:
      break;
  }
  return "";
}

// ---- Own addresses ------------------------------------------------------

std::vector<IpAddr> SystemHostAddresses::SelfIps() {
  std::vector<std::string> names = {"localhost"};
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') {
    names.emplace_back(host);
    addrinfo hints = {};
    hints.ai_flags = AI_CANONNAME;
    addrinfo* list = nullptr;
    if (::getaddrinfo(host, nullptr, &hints, &list) == 0) {
      if (list != nullptr && list->ai_canonname != nullptr) names.emplace_back(list->ai_canonname);
      ::freeaddrinfo(list);
    }
  }
  std::vector<IpAddr> ips;
  for (const std::string& name : names) {
    for (IpAddr& ip : TextToIp(name, "yes", resolver_, nullptr)) {
      if (std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(std::move(ip));
    }
  }
  return ips;
}

// ---- IgnoreList ---------------------------------------------------------

std::vector<IpAddr> IgnoreList::CachedResolver::HostToIp(std::string_view host) {
  if (owner_.resolver_ == nullptr) return {};
  const double now = owner_.clock_.Now();
  std::string key(host);
  auto found = cache_.find(key);
  if (found != cache_.end() && found->second.expires > now) return found->second.ips;
  if (cache_.size() >= kDnsCacheMax) {
    std::erase_if(cache_, [now](const auto& kv) { return kv.second.expires <= now; });
    if (cache_.size() >= kDnsCacheMax) cache_.clear();
  }
  Entry& e = cache_[key];
  e.ips = owner_.resolver_->HostToIp(host);
  e.expires = now + kDnsCacheSeconds;
  return e.ips;
}

std::vector<std::string> IgnoreList::CachedResolver::IpToName(const IpAddr& ip) {
  return owner_.resolver_ == nullptr ? std::vector<std::string>() : owner_.resolver_->IpToName(ip);
}

bool IgnoreList::Add(std::string_view text) {
  if (text.empty()) return false;
  IpAddr ip = IpAddr::FromText(text);
  if (singles_.count(ip) != 0 || std::find(nets_.begin(), nets_.end(), ip) != nets_.end()) {
    return false;
  }
  ++generation_;
  if (ip.is_single()) {
    singles_.insert(std::move(ip));
  } else {
    nets_.push_back(std::move(ip));
  }
  return true;
}

bool IgnoreList::Remove(std::string_view text) {
  IpAddr ip = IpAddr::FromText(text);
  ++generation_;
  if (singles_.erase(ip) != 0) return true;
  auto it = std::find(nets_.begin(), nets_.end(), ip);
  if (it == nets_.end()) return false;
  nets_.erase(it);
  return true;
}

void IgnoreList::Clear() {
  ++generation_;
  singles_.clear();
  nets_.clear();
}

std::vector<IpAddr> IgnoreList::Entries() const {
  std::vector<IpAddr> out = nets_;
  out.insert(out.end(), singles_.begin(), singles_.end());
  return out;
}

void IgnoreList::set_ignorecache(std::optional<IgnoreCacheOptions> options) {
  cache_options_ = std::move(options);
  cache_order_.clear();
  cache_index_.clear();
}

std::string IgnoreList::Substitute(std::string_view tmpl, const IpAddr& id, const FailData* data,
                                   std::vector<std::pair<std::string, std::string>>* env) const {
  std::string out;
  out.reserve(tmpl.size() + 32);
  size_t i = 0;
  while (i < tmpl.size()) {
    const size_t open = tmpl.find('<', i);
    if (open == std::string_view::npos) break;
    const size_t close = tmpl.find('>', open + 1);
    if (close == std::string_view::npos) break;
    const std::string_view tag = tmpl.substr(open + 1, close - open - 1);
    std::optional<std::string> value;
    std::string var;
    if (tag == "ip") {
      // The ticket's "ip" data wins over the id, as getIP() does.
      std::optional<std::string_view> ip =
          data != nullptr && data->ip ? std::optional<std::string_view>(*data->ip) : std::nullopt;
      value = ip ? std::string(*ip) : id.ToString();
      var = "ip";
    } else if (tag == "fid") {
      value = id.ToString();
      var = "fid";
    } else if (tag.size() > 2 && tag.substr(0, 2) == "F-" &&
               std::all_of(tag.begin() + 2, tag.end(), [](char c) {
                 return std::isupper(static_cast<unsigned char>(c)) ||
                        std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-';
               })) {
      // Filter groups are stored by lower-case name; a missing one is empty.
      std::string name(tag.substr(2));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::optional<std::string_view> v = data != nullptr ? data->Get(name) : std::nullopt;
      value = v ? std::string(*v) : std::string();
      var = "F_" + name;
    }
    if (!value) {
      out.append(tmpl.substr(i, close + 1 - i));  // unknown tags stay
      i = close + 1;
      continue;
    }
    out.append(tmpl.substr(i, open - i));
    if (env != nullptr && NeedsEscape(*value)) {
      for (char& c : var) {
        if (!IsWordChar(c)) c = '_';
      }
      var = "f2bV_" + var;
      out += "$" + var;
      env->emplace_back(var, std::move(*value));
    } else {
      out += *value;
    }
    i = close + 1;
  }
  out.append(tmpl.substr(std::min(i, tmpl.size())));
  return out;
}

std::optional<bool> IgnoreList::CacheGet(const std::string& key) {
  auto found = cache_index_.find(key);
  if (found == cache_index_.end()) return std::nullopt;
  if (found->second->second.expires > clock_.Now()) return found->second->second.value;
  cache_order_.erase(found->second);
  cache_index_.erase(found);
  return std::nullopt;
}

void IgnoreList::CacheSet(const std::string& key, bool value) {
  const double now = clock_.Now();
  const IgnoreCacheOptions& o = *cache_options_;
  auto found = cache_index_.find(key);
  if (found == cache_index_.end() && cache_index_.size() >= o.max_count) {
    // fail2ban's Utils.Cache: drop from the oldest end, expired entries and
    // at least one more, until there is room.
    while (!cache_order_.empty()) {
      const bool live = cache_order_.front().second.expires > now;
      cache_index_.erase(cache_order_.front().first);
      cache_order_.pop_front();
      if (live && cache_index_.size() < o.max_count) break;
    }
    if (o.max_count == 0) return;
  }
  // Re-setting a key keeps its place, as an OrderedDict does.
  if (found != cache_index_.end()) {
    found->second->second = {value, now + o.max_time};
    return;
  }
  cache_order_.emplace_back(key, CacheEntry{value, now + o.max_time});
  cache_index_.emplace(key, std::prev(cache_order_.end()));
}

bool IgnoreList::IsSelf(const IpAddr& id) {
  if (self_ == nullptr) return false;
  const double now = clock_.Now();
  if (now >= self_expires_) {
    std::vector<IpAddr> fresh = self_->SelfIps();
    if (fresh != self_ips_) ++generation_;
    self_ips_ = std::move(fresh);
    self_expires_ = now + kDnsCacheSeconds;
  }
  return std::find(self_ips_.begin(), self_ips_.end(), id) != self_ips_.end();
}

std::string IgnoreList::EntryInside(const IpAddr& net) {
  if (!net.is_ip()) return "";
  if (ignoreself_ && self_ != nullptr) {
    IsSelf(net);  // refreshes self_ips_ when due
    for (const IpAddr& ip : self_ips_) {
      if (ip.Overlaps(net)) return "ignoreself " + ip.ToString();
    }
  }
  for (const IpAddr& ip : singles_) {
    if (ip.Overlaps(net)) return "ignoreip " + ip.ToString();
  }
  for (const IpAddr& entry : nets_) {
    if (entry.is_ip()) {
      if (entry.Overlaps(net)) return "ignoreip " + entry.ToString();
      continue;
    }
    if (entry.raw().empty()) continue;
    for (const IpAddr& ip : dns_.HostToIp(entry.raw())) {
      if (ip.Overlaps(net)) return "ignoreip " + std::string(entry.raw()) + " (" + ip.ToString() + ")";
    }
  }
  return "";
}

std::optional<IgnoreVerdict> IgnoreList::Prepare(const IpAddr& id, const FailData* data,
                                                 PendingIgnoreCommand* pending) {
  std::string key;
  if (cache_options_) {
    key = Substitute(cache_options_->key, id, data, nullptr);
    if (std::optional<bool> hit = CacheGet(key)) {
      return IgnoreVerdict{*hit, *hit ? IgnoreSource::kCache : IgnoreSource::kNone, {}};
    }
  }
  auto decided = [&](bool ignored, IgnoreSource source, bool cache) {
    if (cache && cache_options_) CacheSet(key, ignored);
    return IgnoreVerdict{ignored, ignored ? source : IgnoreSource::kNone, {}};
  };
  if (ignoreself_ && IsSelf(id)) return decided(true, IgnoreSource::kSelf, true);
  if (singles_.count(id) != 0) return decided(true, IgnoreSource::kIp, false);
  for (const IpAddr& net : nets_) {
    if (id.IsInNet(net, &dns_)) {
      return decided(true, net.is_valid() ? IgnoreSource::kIp : IgnoreSource::kDns, true);
    }
  }
  if (ignorecommand_.empty()) return decided(false, IgnoreSource::kNone, true);
  pending->env.clear();
  pending->command = Substitute(ignorecommand_, id, data, &pending->env);
  pending->cache_key = cache_options_ ? std::move(key) : std::string();
  pending->id = id;
  return std::nullopt;
}

IgnoreVerdict IgnoreList::Finish(const PendingIgnoreCommand& pending,
                                 const Result<int>& exit_status) {
  IgnoreVerdict v;
  if (!exit_status.ok()) {
    v.error = "ignorecommand '" + pending.command + "' failed: " + exit_status.status().message();
  } else if (*exit_status == 0) {
    v.ignored = true;
    v.source = IgnoreSource::kCommand;
  } else if (*exit_status != 1) {
    v.error = "ignorecommand '" + pending.command + "' exited with status " +
              std::to_string(*exit_status) + " (expected 0 or 1)";
  }
  if (cache_options_) CacheSet(pending.cache_key, v.ignored);
  return v;
}

IgnoreVerdict IgnoreList::Check(const IpAddr& id, const FailData* data) {
  PendingIgnoreCommand pending;
  if (std::optional<IgnoreVerdict> v = Prepare(id, data, &pending)) return *v;
  if (runner_ == nullptr) {
    return Finish(pending, Status::Error("no command runner"));
  }
  return Finish(pending, runner_->Run(pending.command, pending.env));
}

}  // namespace bantam
