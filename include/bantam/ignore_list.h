// IgnoreList: which failure ids a jail never counts - fail2ban 1.0.2's
// Filter.inIgnoreIPList with ignoreself, ignoreip, ignorecommand and
// ignorecache.
//
// An id is checked in fail2ban's order, first answer wins:
//   1. ignorecache: a remembered answer for the id's cache key;
//   2. ignoreself: the id is one of this host's own addresses (those of
//      "localhost", the host name and the fully qualified name, looked up
//      through HostAddresses at most every 5 minutes);
//   3. ignoreip: an address equal to the id, a network containing it, or a
//      host name resolving to it (through the Resolver, answers kept 5
//      minutes as fail2ban's DNS cache does). Entries are parsed as IpAddr,
//      so "[::1]", "10.0.0.0/255.0.0.0" and "1.2.3.4/24" work as in fail2ban.
//      Text that is not an address is a host name - including fail2ban 1.1's
//      "file:/path" form, which 1.0.2 does not know either (it never
//      resolves, so it ignores nothing; IsFileEntry() lets config warn);
//   4. ignorecommand: the command with <ip> (and <fid>, <F-NAME>) filled in
//      exits 0 to ignore, 1 not to; any other status, a signal or a failure
//      to run is an error and does not ignore.
// The cache remembers answers from steps 2-4, except an exact ignoreip
// address (fail2ban skips that one too; it is as fast as the cache).
//
// Tag values that a shell would interpret are not pasted into the command:
// like fail2ban they become $f2bV_<tag> and travel in the environment.
//
// Single-threaded, on the event loop. The Resolver, HostAddresses and
// CommandRunner may block; the daemon either passes ones that do not (cached
// or asynchronous) or uses the two-step Prepare()/Finish() below to run the
// command off the loop. `clock`, `resolver`, `self` and `runner` must
// outlive the IgnoreList; any of the last three may be null (then host names
// match nothing, ignoreself matches nothing, ignorecommand is an error).
#ifndef BANTAM_IGNORE_LIST_H_
#define BANTAM_IGNORE_LIST_H_

#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bantam/clock.h"
#include "bantam/filter.h"
#include "bantam/ip_address.h"
#include "bantam/status.h"

namespace bantam {

// Seam for ignorecommand.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs `command` with /bin/sh -c, with `env` added to its environment.
  // Returns the exit status; an error if it could not run, was killed or
  // timed out.
  virtual Result<int> Run(const std::string& command,
                          const std::vector<std::pair<std::string, std::string>>& env) = 0;
};

// Seam for ignoreself: this host's own addresses.
class HostAddresses {
 public:
  virtual ~HostAddresses() = default;
  virtual std::vector<IpAddr> SelfIps() = 0;
};

// fail2ban's DNSUtils.getSelfIPs: addresses of "localhost", gethostname()
// and the host's canonical name, resolved with `resolver` (which must
// outlive it). May block on DNS.
class SystemHostAddresses : public HostAddresses {
 public:
  explicit SystemHostAddresses(Resolver& resolver) : resolver_(resolver) {}
  std::vector<IpAddr> SelfIps() override;

 private:
  Resolver& resolver_;
};

// The ignorecache option: 'key="<ip>", max-count=100, max-time=5m'.
struct IgnoreCacheOptions {
  std::string key;  // template of the cache key
  size_t max_count = 100;
  double max_time = 300;  // seconds an answer is kept
};
// Parses the option as fail2ban does ("cache[" + value + "]" through
// extractOptions); an empty value means no cache (nullopt). Error:
// "ignorecache: <why>".
Result<std::optional<IgnoreCacheOptions>> ParseIgnoreCache(std::string_view value);

// Why an id was ignored (for "[jail] Ignore <ip> by <source>").
enum class IgnoreSource { kNone, kCache, kSelf, kIp, kDns, kCommand };
// "ignoreself rule", "ip", "dns", "command", "cache", "".
const char* IgnoreSourceName(IgnoreSource source);

struct IgnoreVerdict {
  bool ignored = false;
  IgnoreSource source = IgnoreSource::kNone;
  // Set when ignorecommand failed (the id is then not ignored).
  std::string error;
};

// An ignorecommand to run before the answer is known.
struct PendingIgnoreCommand {
  std::string command;
  std::vector<std::pair<std::string, std::string>> env;
  std::string cache_key;  // empty when there is no cache
  IpAddr id;
};

class IgnoreList {
 public:
  IgnoreList(const Clock& clock, Resolver* resolver, HostAddresses* self, CommandRunner* runner)
      : clock_(clock), resolver_(resolver), self_(self), runner_(runner), dns_(*this) {}
  IgnoreList(const IgnoreList&) = delete;
  IgnoreList& operator=(const IgnoreList&) = delete;

  // addIgnoreIP. False when `text` is empty or already listed (by value:
  // "10.0.0.1/8" duplicates "10.0.0.0/8").
  bool Add(std::string_view text);
  // delIgnoreIP. False if not listed.
  bool Remove(std::string_view text);
  void Clear();
  // getIgnoreIP, as fail2ban lists it: networks and names, then addresses.
  std::vector<IpAddr> Entries() const;
  static bool IsFileEntry(std::string_view text) { return text.substr(0, 5) == "file:"; }

  void set_ignoreself(bool value) {
    ignoreself_ = value;
    ++generation_;
  }
  bool ignoreself() const { return ignoreself_; }
  void set_ignorecommand(std::string command) { ignorecommand_ = std::move(command); }
  const std::string& ignorecommand() const { return ignorecommand_; }
  // Replaces the cache (and forgets its answers); nullopt: no cache.
  void set_ignorecache(std::optional<IgnoreCacheOptions> options);
  const std::optional<IgnoreCacheOptions>& ignorecache() const { return cache_options_; }

  // The whole check, running ignorecommand through the runner if needed.
  // `data` is the failure's groups for <F-*> tags and the "ip" override for
  // <ip>; may be null.
  IgnoreVerdict Check(const IpAddr& id, const FailData* data = nullptr);

  // The same in two steps: a verdict when no command needs to run,
  // otherwise nullopt with *pending filled; then Finish() with the
  // command's outcome gives the verdict and caches it.
  std::optional<IgnoreVerdict> Prepare(const IpAddr& id, const FailData* data,
                                       PendingIgnoreCommand* pending);
  IgnoreVerdict Finish(const PendingIgnoreCommand& pending, const Result<int>& exit_status);

  size_t cache_size() const { return cache_index_.size(); }

  // Prefix bans (prefix4/prefix6, aggregate4/aggregate6): the first entry
  // that shares an address with `net` - this host's own addresses (with
  // ignoreself), an ignoreip address or network, or an address a listed
  // host name resolves to - as "ignoreip 2001:db8::1", or empty. The
  // ignorecommand is not asked: it answers for addresses only.
  std::string EntryInside(const IpAddr& net);
  // Changes whenever an EntryInside() answer may have changed.
  uint64_t generation() const { return generation_; }

 private:
  // Host name answers kept for 5 minutes (fail2ban's CACHE_nameToIp).
  class CachedResolver : public Resolver {
   public:
    explicit CachedResolver(IgnoreList& owner) : owner_(owner) {}
    std::vector<IpAddr> HostToIp(std::string_view host) override;
    std::vector<std::string> IpToName(const IpAddr& ip) override;

   private:
    struct Entry {
      std::vector<IpAddr> ips;
      double expires = 0;
    };
    IgnoreList& owner_;
    std::unordered_map<std::string, Entry> cache_;
  };
  struct CacheEntry {
    bool value = false;
    double expires = 0;
  };
  using CacheOrder = std::list<std::pair<std::string, CacheEntry>>;  // insertion order

  // Fills <ip>, <fid> and <F-NAME>; shell-unsafe values go to *env when
  // env is non-null, else are pasted as they are.
  std::string Substitute(std::string_view tmpl, const IpAddr& id, const FailData* data,
                         std::vector<std::pair<std::string, std::string>>* env) const;
  std::optional<bool> CacheGet(const std::string& key);
  void CacheSet(const std::string& key, bool value);
  bool IsSelf(const IpAddr& id);

  const Clock& clock_;
  Resolver* resolver_;
  HostAddresses* self_;
  CommandRunner* runner_;
  CachedResolver dns_;

  bool ignoreself_ = true;
  std::string ignorecommand_;
  std::unordered_set<IpAddr> singles_;  // addresses (fail2ban's set)
  std::vector<IpAddr> nets_;            // networks and host names (fail2ban's list)

  uint64_t generation_ = 0;
  std::vector<IpAddr> self_ips_;
  double self_expires_ = -1e300;

  std::optional<IgnoreCacheOptions> cache_options_;
  CacheOrder cache_order_;
  std::unordered_map<std::string, CacheOrder::iterator> cache_index_;
};

}  // namespace bantam

#endif  // BANTAM_IGNORE_LIST_H_
