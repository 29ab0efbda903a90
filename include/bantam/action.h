// Action: what a jail's bans are handed to. The daemon holds its jails'
// actions through this interface; CommandAction runs an action.d file's
// shell commands, NftAction speaks netlink to nf_tables for the stock
// nftables actions, MailAction composes the stock ban mails itself.
// CreateAction (action_factory.h) picks one from the action's options.
//
// Every method is called on the loop thread. Operations run elsewhere (a
// worker strand), or for NftAction's small turns on the loop thread inside
// EndTurn; their reports always come back on the loop thread.
#ifndef BANTAM_ACTION_H_
#define BANTAM_ACTION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bantam/spawner.h"
#include "bantam/status.h"
#include "bantam/worker_pool.h"

namespace bantam {

// Bans merged from the database for one address (fail2ban's getBansMerged).
struct MergedBans {
  int64_t failures = 0;
  std::vector<std::string> matches;
};

// Values of a ban that live outside its ticket: the database, the jail's
// counters, DNS. Implemented by the daemon (a fake in tests). Called from
// worker threads, concurrently, and only for the tags a command uses, so
// implementations are thread-safe and may block.
class BanContext {
 public:
  virtual ~BanContext() = default;
  // All bans of `ip` merged, in `jail` only or (jail empty) in every jail.
  // nullopt: unknown (then the ticket's own failures and matches are used).
  virtual std::optional<MergedBans> MergedBansOf(const std::string& ip,
                                                 const std::string& jail) = 0;
  // jail.banned, jail.banned_total, jail.found, jail.found_total; nullopt
  // leaves the tag as written.
  virtual std::optional<std::string> JailCounter(const std::string& jail,
                                                 const std::string& tag) = 0;
  // The DNS name of `ip` for <ip-host>; nullopt when it has none.
  virtual std::optional<std::string> HostName(const std::string& ip) = 0;
};

// What the caller knows of a ban: the dynamic tags of the command (fail2ban's
// ActionInfo). Copied into the queued operation; `context` is shared.
struct BanInfo {
  std::string jail;
  std::string ip;                    // <ip>: the address as text (or a raw id for non-IP tickets)
  std::string family;                // "inet4", "inet6", or "" for raw ids: picks [Init?family=...]
  std::string fid;                   // <fid>; empty means `ip`
  int64_t failures = 0;              // <failures>
  double time = 0;                   // <time>: ticket time, epoch seconds
  int64_t bantime = 0;               // <bantime>: seconds (-1 forever)
  int64_t bancount = 0;              // <bancount>
  std::vector<std::string> matches;  // <matches>, joined by "\n"
  bool restored = false;             // <restored>: re-banned from the database at start
  // Filter captures for <F-NAME>, keyed as fail2ban stores them: lower case,
  // "id" as "fid", "port" as "fport" (see TicketDataKey).
  std::map<std::string, std::string> captures;
  std::shared_ptr<BanContext> context;  // may be null: ticket values only
};

// A command ready for the Spawner: script plus the values it reads as
// positional parameters.
struct ShellCommand {
  std::string script;
  std::vector<std::string> args;
};

enum class ActionOp {
  kStart,    // actionstart (all families, or none when started on demand)
  kStop,     // actionstop for every started family
  kBan,      // actionban (starting the family first when on demand)
  kReban,    // actionreban, or actionban when that is empty
  kProlong,  // actionprolong
  kUnban,    // actionunban, only for families this action banned in
  kFlush,    // actionflush for families holding bans
  kReload,   // actionreload for started families
  kCheck,    // consistency check: actioncheck, repair when it fails
};
const char* ActionOpName(ActionOp op);  // "start", "ban", ...

// One command that ran, for the log.
struct CommandRun {
  std::string operation;  // "actionban", "actioncheck", ...
  std::string family;
  ShellCommand command;  // exactly what was executed
  double timeout_seconds = 0;
  SpawnResult result;
  // "returned 1" etc. with the command and its stderr: the log line(s).
  std::string Describe() const;
};

// The outcome of one operation, handed to the submitter.
struct ActionReport {
  ActionOp op = ActionOp::kBan;
  std::string jail, action, ip;
  // Error: the operation failed ("Error banning 1.2.3.4", "Error starting
  // action sshd/iptables: ..."). For bans the caller keeps the ban recorded
  // anyway, as fail2ban does.
  Status status;
  bool skipped = false;            // nothing to do (norestored, nothing banned here...)
  // Never ran: still queued when the daemon stopped (WorkerPool::
  // CancelQueued). The ban stays recorded and is applied at the next start.
  bool abandoned = false;
  std::vector<CommandRun> runs;    // every command, in execution order
  std::vector<std::string> notes;  // "Invariant check failed. Trying to restore..."
  // Problems that did not fail the operation (a slow whois, a mail not
  // sent): logged as warnings.
  std::vector<std::string> warnings;
  uint64_t ban_epoch = 0;          // bumped by each repair: bans before it need a reban
};

// Where an action runs its commands. Both outlive the action.
struct ActionEnv {
  Spawner* spawner = nullptr;  // required
  WorkerPool* pool = nullptr;  // required for Submit(); Run() works without
  // False: conditional ([Init?family=inet6]) actions know only inet4.
  bool ipv6_allowed = true;
  // Where slow, non-firewall work runs (whois and sendmail for ban mails),
  // so it never queues in front of a firewall action. Null: `pool`.
  WorkerPool* mail_pool = nullptr;
  // Native nftables actions call this on the loop thread for each netlink
  // transaction of set elements they made (the daemon's metrics): the
  // jail and action, how many elements it carried, how long it took, and
  // whether the kernel took it. May be empty.
  std::function<void(const std::string& jail, const std::string& action, size_t elements,
                     double seconds, bool ok)>
      on_nft_transaction = nullptr;
  // The jail bans networks (prefix4/prefix6/aggregate4/aggregate6 set):
  // native nftables sets are made with flags interval. Without it a network
  // id fails its operation in a native nftables action.
  bool network_bans = false;
};

class Action {
 public:
  virtual ~Action() = default;

  virtual const std::string& jail() const = 0;
  virtual const std::string& name() const = 0;
  // How the action runs, for the log: "shell", "nftables netlink", "mail".
  virtual const char* kind() const = 0;
  // Started on the first ban of each address family, not at jail start.
  virtual bool start_on_demand() const = 0;
  // Lifts all bans at once (the jail then skips per-address unbans).
  virtual bool has_flush() const = 0;

  // fail2ban-client get/set JAIL action NAME PROP.
  virtual std::optional<std::string> GetProperty(const std::string& key) const = 0;
  virtual void SetProperty(const std::string& key, const std::string& value) = 0;

  // Queues `op`; `done` runs on the loop thread with its report. Operations
  // of one action run in submission order.
  virtual void Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) = 0;
  // Called once at the end of each loop turn: an action that gathers the
  // turn's operations into one unit of work (a netlink batch) sends it now.
  // It may also run it at once and call their `done` before returning
  // (NftAction, for a small turn while its strand is idle).
  virtual void EndTurn() {}
  // Whether the action reads BanInfo::context (tags such as <ipmatches> or
  // <jail.banned>); false lets the caller skip building it.
  virtual bool uses_ban_context() const { return true; }
  // Whether the action may read matched lines: the ban's own (<matches>,
  // <ipjailmatches>, <ipmatches>) or, with `other_jails`, those other jails
  // stored (<ipmatches>). true when unsure; false lets the jail keep none.
  virtual bool may_read_matches(bool other_jails) const {
    (void)other_jails;
    return true;
  }

  // Bumped each time the action repaired its environment: bans applied
  // before that may be gone and are applied again (kReban) by the daemon.
  virtual uint64_t ban_epoch() const = 0;
};

}  // namespace bantam

#endif  // BANTAM_ACTION_H_
