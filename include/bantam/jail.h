// Jail: one fail2ban jail at run time. Lines come in (from the log sources
// the server runs), the Filter finds failures, the IgnoreList drops trusted
// addresses, the FailManager counts them inside findtime, and at maxretry
// the id is banned (BanManager, with bantime.increment) and handed to the
// server's JailEvents, which runs the actions, records the ban and logs it.
// Expired bans come back through UnbanDue().
//
// Single-threaded: owned and driven by the server's event loop.
#ifndef BANTAM_JAIL_H_
#define BANTAM_JAIL_H_

#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantam/ban_manager.h"
#include "bantam/ban_time.h"
#include "bantam/clock.h"
#include "bantam/fail_manager.h"
#include "bantam/filter.h"
#include "bantam/ignore_list.h"
#include "bantam/prefix_options.h"
#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

// One action of a jail as the command stream gives it: its name and its
// resolved options (actionban, actionstart, <init tags>, ...).
struct JailActionConfig {
  std::string name;
  Value::Dict options;
};

// A jail's settings, collected from the command stream ("set JAIL ...").
struct JailConfig {
  std::string name;
  std::string backend = "auto";
  FilterSettings filter;
  std::vector<std::pair<std::string, bool>> logpaths;  // path, tail
  std::vector<std::vector<std::string>> journalmatch;
  int maxretry = 5;
  double findtime = 600;
  int maxmatches = 5;
  double bantime = 600;
  std::vector<std::string> ignoreip;
  bool ignoreself = true;
  std::string ignorecommand;
  BanTimeIncrementOptions increment;
  std::vector<JailActionConfig> actions;
  // bantam's counting and banning by prefix (not in the command stream:
  // the server takes it from LoadedConfig::prefixes).
  PrefixOptions prefixes;
};

// Collects every jail of a command stream (LoadConfig's), in order, with
// fail2ban's value parsing (time values such as "10m"). Unknown jail
// settings are ignored with a warning; a bad value is an error naming the
// jail and the setting.
Result<std::vector<JailConfig>> JailsFromCommands(const std::vector<Value>& commands,
                                                  std::vector<std::string>* warnings);

// What the jail reports; the server implements it.
class JailEvents {
 public:
  virtual ~JailEvents() = default;
  virtual void OnFound(const std::string& jail, const IpAddr& id, double time) = 0;
  virtual void OnIgnored(const std::string& jail, const IpAddr& id, const char* source) = 0;
  // A new ban: run the ban actions and record it. `ticket` has the final
  // bantime and ban count.
  virtual void OnBan(const std::string& jail, const Ticket& ticket) = 0;
  virtual void OnAlreadyBanned(const std::string& jail, const IpAddr& id) = 0;
  virtual void OnUnban(const std::string& jail, const Ticket& ticket) = 0;
  // A ban lifted because the prefix ban `by` now covers it (aggregate4/
  // aggregate6): reported before the ban of `by`. Its record is no longer
  // needed. By default an ordinary unban.
  virtual void OnCovered(const std::string& jail, const Ticket& ticket, const IpAddr& by) {
    (void)by;
    OnUnban(jail, ticket);
  }
  virtual void OnWarning(const std::string& jail, const std::string& message) = 0;
  // Runs a jail's ignorecommand off the event loop and calls `done` on the
  // loop thread with its exit status. Returns false when it cannot (the
  // jail then runs the command itself, blocking).
  virtual bool RunIgnoreCommand(const PendingIgnoreCommand& command,
                                std::function<void(Result<int>)> done) {
    (void)command;
    (void)done;
    return false;
  }
};

class Jail {
 public:
  // `clock`, `events`, `history`, `resolver`, `self`, `runner` must outlive
  // the jail; `resolver`/`self`/`runner` may be null (defaults/none).
  static Result<std::unique_ptr<Jail>> Create(JailConfig config, const Clock& clock,
                                              JailEvents* events, BanHistory* history,
                                              Resolver* resolver, HostAddresses* self,
                                              CommandRunner* runner);

  const std::string& name() const { return config_.name; }
  const JailConfig& config() const { return config_; }

  // One log line (UTF-8, no terminator). `in_operation` is false while a
  // log's backlog is read at start: lines older than findtime then count
  // for nothing, as in fail2ban.
  void ProcessLine(std::string_view line, bool in_operation = true);
  // The same at a given time (the clock's Now()): the server hands a line
  // to every jail reading it with one `now`, so that their filters can
  // share the line's date search.
  // `line_key`: the line's key (NewLineKey), the same for every jail, or 0.
  void ProcessLine(std::string_view line, bool in_operation, double now, uint64_t line_key = 0);
  // Failures of an address whose ignorecommand has not answered yet wait
  // here, in order, and are counted (or ignored) when it does; later
  // failures of that address queue behind them.
  size_t waiting_for_ignorecommand() const { return parked_.size(); }
  // A journal entry whose time is known, seen at `now` (as ProcessLine).
  void ProcessJournalLine(std::string_view line, double time, std::string_view date_text,
                          double now);

  // Bans `id` now as if it had reached maxretry (fail2ban-client set JAIL
  // banip); false if it is already banned.
  bool BanNow(const IpAddr& id);
  // A ban read back from the database at start: re-applied unless expired.
  void Restore(Ticket ticket);
  // Unbans `id` (set JAIL unbanip); false if it was not banned. An address
  // (or network) inside a banned prefix lifts that prefix, which `*lifted`
  // (if given) then names; otherwise *lifted is id.
  bool Unban(const IpAddr& id, IpAddr* lifted = nullptr);
  // Takes over the bans and failures of `old` (the same jail before a
  // reload rebuilt it); `old` is left with none.
  void TakeStateFrom(Jail& old);
  // Lifts every ban (unban --all, reload --unban) and returns the tickets;
  // OnUnban is reported for each.
  std::vector<Ticket> UnbanAll();
  // Ends every ban whose time is over.
  void UnbanDue();
  // When the next ban ends (kMaxBanEnd if none).
  double NextUnbanTime() const { return bans_.NextUnbanTime(); }

  // Run-time changes (the control socket's `set JAIL ...`). Each keeps
  // config() in step, so `get` reads back what was set.
  void set_maxretry(int value);
  void set_maxmatches(int value);
  void set_bantime(double seconds);
  // Also the filter's findtime (lines older than it are skipped at start).
  void set_findtime(double seconds);
  // Rebuilds the filter from `settings` (regexes, datepattern, usedns,
  // maxlines...). The multi-line buffer starts afresh. On error (a regex
  // or datepattern that does not compile) the running filter stays.
  Status SetFilterSettings(FilterSettings settings);
  // Replaces the bantime.* options; on error nothing changes.
  Status SetIncrement(const BanTimeIncrementOptions& options);
  // fail2ban's idle jail: lines are dropped (fail2ban leaves them unread
  // until the jail wakes) and nothing is banned from logs; bans in force
  // still end on time.
  bool idle() const { return idle_; }
  void set_idle(bool value) { idle_ = value; }
  // fail2ban-client set JAIL attempt IP [MATCH...]: a failure of `id` now,
  // worth one retry per match (at least one); bans at maxretry.
  void AddAttempt(const IpAddr& id, std::vector<std::string> matches);
  IgnoreList& ignore_list() { return *ignore_; }
  const IgnoreList& ignore_list() const { return *ignore_; }
  const Filter& filter() const { return *filter_; }

  const FailManager& failures() const { return fails_; }
  const BanManager& bans() const { return bans_; }
  BanManager& mutable_bans() { return bans_; }
  // For the daemon's persistence of failure windows (restore at start,
  // change tracking).
  FailManager& mutable_failures() { return fails_; }
  Filter& filter() { return *filter_; }

 private:
  Jail(JailConfig config, const Clock& clock, JailEvents* events, BanHistory* history);
  // Counts the failures the filter just found, at `now` (the line's time).
  void HandleFailures(double now);
  // Counts (or ignores, per `verdict`) one failure of `id`.
  void CountFailure(const IpAddr& id, double time, FailData&& data, const IgnoreVerdict& verdict);
  void IgnoreCommandDone(const PendingIgnoreCommand& pending, const Result<int>& status);
  void TryBan(const IpAddr& id);
  // The id failures of `address` count under (prefix4/prefix6): its prefix,
  // unless that prefix holds an ignored address or network (then the
  // address, with a warning once per prefix).
  IpAddr CountingId(const IpAddr& address);
  // The ignore entry inside `net`, or empty; answers are cached per
  // network until the ignore list changes.
  std::string IgnoredInside(const IpAddr& net);
  // aggregate4/aggregate6 after `unit` was banned: bans its aggregate
  // prefix once enough units of it are banned.
  void MaybeAggregate(const IpAddr& unit);

  struct ParkedFailure {
    double time;
    FailData data;
  };

  JailConfig config_;
  const Clock& clock_;
  JailEvents* events_;
  BanHistory* history_;
  std::unique_ptr<Filter> filter_;
  std::unique_ptr<IgnoreList> ignore_;
  std::optional<BanTimeIncrement> increment_;
  Resolver* resolver_ = nullptr;
  bool idle_ = false;
  FailManager fails_;
  BanManager bans_;
  std::vector<Failure> failures_;
  std::unordered_map<IpAddr, std::vector<ParkedFailure>> parked_;
  // Completions of asynchronous ignorecommands hold a weak reference: a
  // jail rebuilt by a reload meanwhile is not touched.
  std::shared_ptr<Jail*> alive_ = std::make_shared<Jail*>(this);
  uint64_t seq_ = 0;
  // IgnoredInside's answers, by network, for ignore list generation
  // ignore_generation_; and the prefixes already warned about.
  std::unordered_map<IpAddr, std::string> ignored_inside_;
  uint64_t ignore_generation_ = 0;
  std::unordered_map<IpAddr, bool> warned_prefixes_;
};

}  // namespace bantam

#endif  // BANTAM_JAIL_H_
