// CommandAction: one jail action made of shell commands (fail2ban's
// CommandAction): actionstart/stop/check/ban/unban/flush/reload/repair,
// <tag> substitution at run time, the check/repair/retry dance after a
// failed command, start on demand per address family.
//
// It is built from the option map the configuration stream carries for the
// action (["multi-set", JAIL, "action", NAME, [[key, value], ...]]).
//
// Operations block (they run shell commands through a Spawner), so the
// daemon never calls Run() on its event loop: Submit() queues the operation
// on the action's strand of a WorkerPool, where operations of one action run
// one at a time in submission order (actionstart always finishes before the
// ban submitted after it; ban and unban keep their order), while different
// actions run in parallel. The ActionReport comes back on the loop thread
// through the pool's completion fd.
//
// Tag values that come from outside (matches, <F-*> captures, <ip>...) never
// become shell code: a value holding a shell-special character is passed to
// `sh -c` as a positional argument and the command refers to it as a
// variable (fail2ban's replaceDynamicTags); see ReplaceDynamicTags.
#ifndef BANTAM_COMMAND_ACTION_H_
#define BANTAM_COMMAND_ACTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bantam/action.h"
#include "bantam/ordered_map.h"
#include "bantam/spawner.h"
#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

// fail2ban's mapTag2Opt: "USER" -> "user", "ID" -> "fid", "PORT" -> "fport".
std::string TicketDataKey(const std::string& tag);

// Tag values shared by the actions that fill fail2ban's tags themselves.
// <fq-hostname> (fqdn) / <sh-hostname>: looked up once per process.
std::string HostName(bool fqdn);
// <ip-rev>: fail2ban's getPTR(''): "4.3.2.1." / nibbles reversed for IPv6;
// "" for anything that is not an address.
std::string ReversePointer(const std::string& ip);
// <matches> and friends: the lines joined by "\n".
std::string Join(const std::vector<std::string>& v);
// Words separated by commas or white space, empty ones dropped: families,
// ports, protocols.
std::vector<std::string> SplitCommaList(const std::string& s);

// The dynamic tags of one ban (fail2ban's ActionInfo): <ip>, <fid>,
// <failures>, <time>, <bantime>, <bancount>, <matches>, <restored>,
// <ip-rev>, <ip-host>, <ip(jail)matches>, <ip(jail)failures>, <jail.*>,
// <fq-hostname>, <sh-hostname>, <family>. <F-NAME> captures are not among
// them (ReplaceDynamicTags fills those). The database is asked for merged
// bans at most once per scope. `info` must outlive this object.
class TicketTags {
 public:
  explicit TicketTags(const BanInfo& info) : info_(info) {}
  // nullopt: not a ticket tag (or a counter the context does not know).
  std::optional<std::string> Value(const std::string& tag);

 private:
  const MergedBans* Merged(bool all_jails);
  const BanInfo& info_;
  std::optional<MergedBans> merged_all_, merged_jail_;
  bool asked_all_ = false, asked_jail_ = false;
};

// fail2ban's escapeTag: a backslash before each of \#&;`|*?~<>^()[]{}$'"
// and newline/CR as \n, \r. Used for static options named matches,
// ipmatches or ipjailmatches (fail2ban's _escapedTags).
std::string EscapeTag(const std::string& value);

// fail2ban's replaceDynamicTags: one pass over `command` replacing <tag> by
// lookup(tag) (non-recursively), then <F-NAME> by captures[TicketDataKey]
// (empty when absent). A value holding any of \#&;`|*?~<>^()[]{}$'" or a
// newline/CR is not inserted: it becomes argument $N, assigned to the shell
// variable f2bV_<tag> in a line put before the command, and the tag becomes a
// reference to that variable, quoted for where it stands ("${f2bV_x}" outside
// quotes, ${f2bV_x} inside "...", '"${f2bV_x}"' inside '...'). NUL bytes are
// dropped (no exec argument can carry them). lookup returns nullopt for tags
// it does not know; <br> and <sp> then become newline and space, others stay.
using TagLookup = std::function<std::optional<std::string>(const std::string& tag)>;
ShellCommand ReplaceDynamicTags(const std::string& command, const TagLookup& lookup,
                                const std::map<std::string, std::string>& captures);

// An action option read under the mutex that guards the options (set from
// the loop thread, read by the action's worker strand); nullopt if unset.
// Shared by the actions that keep their options so.
std::optional<std::string> FindOptionLocked(std::mutex& mu, const OrderedMap<std::string>& options,
                                            const std::string& key);

class CommandAction : public Action {
 public:
  // `options`: the action's [key, value] list (or dict) from the stream.
  // Error: options not a list of pairs, bad timeout.
  static Result<std::unique_ptr<CommandAction>> Create(std::string jail, std::string name,
                                                       const Value& options, ActionEnv env);
  static Result<std::unique_ptr<CommandAction>> Create(std::string jail, std::string name,
                                                       OrderedMap<std::string> options,
                                                       ActionEnv env);
  // Blocks until operations already submitted have run (their reports still
  // arrive through the pool). Destroy after the Stop report to not block.
  ~CommandAction();
  CommandAction(const CommandAction&) = delete;
  CommandAction& operator=(const CommandAction&) = delete;

  const std::string& jail() const override { return jail_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "shell"; }
  double timeout_seconds() const { return timeout_; }
  bool norestored() const { return norestored_; }
  bool start_on_demand() const override { return start_on_demand_; }
  // actionflush is set: the jail flushes with it instead of unbanning each.
  bool has_flush() const override;
  // Whether any option mentions "matches" ("ipmatches" with `other_jails`):
  // every tag a command can expand to is text in some option. Loop thread.
  bool may_read_matches(bool other_jails) const override;
  // actionprolong is set.
  bool has_prolong() const;

  // fail2ban-client get/set JAIL action NAME PROP: an option of the action
  // as configured (actionban, timeout, an [Init] tag...); nullopt if it has
  // none. A set takes effect for operations submitted after it.
  std::optional<std::string> GetProperty(const std::string& key) const override;
  void SetProperty(const std::string& key, const std::string& value) override;

  // The command of `op_tag` ("actionban") with the options substituted for
  // `family` ("inet4", "inet6", or "" for actions without [Init?family=]),
  // dynamic tags (<ip> ...) left as written. Only before the first Submit or
  // Run: it fills the caches the running operations own.
  Result<std::string> ExpandedCommand(const std::string& op_tag, const std::string& family) {
    return StaticCommand(op_tag, family);
  }
  // The address families the action serves: {"inet4", "inet6"} for actions
  // with [Init?family=...] sections ({"inet4"} without IPv6), else {""}.
  std::vector<std::string> Families() const;

  // Loop thread: queues `op` on this action's strand; `done` runs on the
  // loop thread (from WorkerPool::RunCompletions) with the report.
  void Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) override;

  // Runs `op` now on the calling thread, blocking. Not thread-safe: the
  // action's state (started families, caches) belongs to whoever runs it;
  // never call while submitted operations may be running. For tests and tools.
  ActionReport Run(ActionOp op, const BanInfo& info);

  // Loop thread reads; the strand writes. Tests and status.
  uint64_t ban_epoch() const override;

 private:
  CommandAction(std::string jail, std::string name, OrderedMap<std::string> options, ActionEnv env);
  class OpRun;  // one operation in progress (command_action.cc)
  friend class OpRun;

  std::string Option(const std::string& key) const;
  bool HasCondSection() const;
  // The operation's command with options substituted (fail2ban's replaceTag
  // over the properties, <family> filled), cached per family.
  Result<std::string> StaticCommand(const std::string& op_tag, const std::string& family);

  const std::string jail_, name_;
  // Read by the loop thread and the strand; written only by SetProperty's
  // job on the strand.
  mutable std::mutex options_mu_;
  OrderedMap<std::string> options_;
  const ActionEnv env_;
  double timeout_ = 60;
  bool norestored_ = false;
  // A SetProperty value mentioned "matches" / "ipmatches". Loop thread only.
  bool set_mentions_matches_ = false;
  bool set_mentions_ipmatches_ = false;
  bool start_on_demand_ = false;
  WorkerPool::StrandId strand_ = 0;

  // Owned by the thread running operations (the strand), never shared:
  // family -> bits (1 started, 2 holds bans).
  std::map<std::string, int> started_;
  // (operation tag, family) -> command that last ran successfully for it,
  // so one command shared by both families runs once.
  std::map<std::string, std::map<std::string, std::string>> executed_;
  std::map<std::string, OrderedMap<std::string>> substituted_;  // conditional -> options
  std::map<std::pair<std::string, std::string>, std::string> static_cache_;
  std::atomic<uint64_t> ban_epoch_{0};
};

}  // namespace bantam

#endif  // BANTAM_COMMAND_ACTION_H_
