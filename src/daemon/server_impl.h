// ServerImpl: the state behind Server (server.h), shared by the files of
// src/daemon that implement it: server.cc (start, events, stop) and
// reload.cc (SIGHUP / `reload`). Everything here runs on the event-loop
// thread; worker threads see only what actions are handed (BanInfo and its
// BanContext).
#ifndef BANTAM_DAEMON_SERVER_IMPL_H_
#define BANTAM_DAEMON_SERVER_IMPL_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bantam/action.h"
#include "bantam/action_factory.h"
#include "bantam/ami_source.h"
#include "bantam/ban_store.h"
#include "bantam/clock.h"
#include "bantam/config_loader.h"
#include "bantam/control_server.h"
#include "bantam/event_loop.h"
#include "bantam/fleet.h"
#include "bantam/jail.h"
#include "bantam/journal_reader.h"
#include "bantam/line_source.h"
#include "bantam/log_tailer.h"
#include "bantam/logging.h"
#include "bantam/metrics_server.h"
#include "bantam/server.h"
#include "bantam/spawner.h"
#include "bantam/worker_pool.h"
#include "daemon_metrics.h"

namespace bantam {

// One running jail and what belongs to it. Owned by ServerImpl::jails_
// through a unique_ptr, so its address is stable while it runs (callbacks
// and the sources' subscriber id refer to it).
struct JailState {
  uint64_t id = 0;  // its subscriber id at its sources; never reused
  std::unique_ptr<Jail> jail;
  std::vector<std::unique_ptr<Action>> actions;
  // What it reads, in the order attached: the shared file source (every
  // file jail has it, even with no file), its journal, ... Each is also in
  // ServerImpl::sources_ while some jail reads it.
  std::vector<std::shared_ptr<LineSource>> sources;
  // The jail's part of the configuration stream, as JSON, and each action's
  // options: a reload rebuilds what changed and keeps the rest.
  std::string signature;
  std::vector<std::string> action_signatures;
  // The ban epoch last seen in each action's reports: when an action
  // repairs its environment (epoch bumped), the jail's bans are applied to
  // it again.
  std::map<const Action*, uint64_t> action_epochs;
  uint64_t evicted_logged = 0;
  // Its metrics, shared with ServerImpl::counters_ (kept across reloads).
  std::shared_ptr<JailCounters> counters;
};

// backend = systemd[...]: the jail reads the journal, not files.
inline bool ReadsJournal(const JailConfig& c) { return c.backend.rfind("systemd", 0) == 0; }
// backend = ami[...]: the jail reads Asterisk's security events from AMI.
inline bool ReadsAmi(const JailConfig& c) {
  return c.backend == "ami" || c.backend.rfind("ami[", 0) == 0;
}

// A jail of a loaded configuration with the part of the command stream that
// configures it (its signature: a reload rebuilds the jail when it changes).
struct ConfiguredJail {
  JailConfig config;
  std::string signature;
};
// The jails of `cfg`, in order, except those CheckConfig found errors in
// (their located errors are in cfg's diagnostics). Logpaths with no file yet are included, to
// be watched until the file appears; a glob that matches nothing is only
// expanded at start, which `warnings` says.
Result<std::vector<ConfiguredJail>> ConfiguredJails(const LoadedConfig& cfg,
                                                    std::vector<std::string>* warnings);

// Past bans of an address for <ipmatches>, <ipjailmatches>, <ipfailures>,
// <ipjailfailures>: a second connection to the ban database, used only by
// action worker threads, one query at a time.
class BanHistoryReader {
 public:
  // A ban whose row may not be committed yet: actions start before the
  // turn's commit (CommitTurn). fail2ban writes the row first, so its
  // history tags count the ban being acted on; this one is counted too.
  struct Pending {
    std::string jail;
    StoredBan row;
    int max_matches = 0;  // the store's dbmaxmatches: what the row keeps
  };
  // nullptr when the database is not a file (None, :memory:).
  static std::unique_ptr<BanHistoryReader> Open(const std::string& dbfile);
  // fail2ban's getBansMerged(ip, jail) (all jails when `jail` is empty),
  // with `pending` where it belongs when its row is not there yet.
  std::optional<MergedBans> Merged(const std::string& ip, const std::string& jail,
                                   const Pending* pending = nullptr);

 private:
  explicit BanHistoryReader(std::unique_ptr<BanStore> store) : store_(std::move(store)) {}
  std::mutex mu_;
  std::unique_ptr<BanStore> store_;  // guarded by mu_
};

class ServerImpl : public JailEvents, public BanHistory, public CommandRunner {
 public:
  explicit ServerImpl(ServerOptions options)
      : options_(std::move(options)),
        clock_(options_.clock ? *options_.clock : SystemClock()),
        spawner_(options_.spawner ? options_.spawner : &shell_spawner_) {}
  ~ServerImpl() override;

  Status Init();
  // Start(), the loop until Stop() or a termination signal, Finish().
  Status Run();
  // Run()'s parts (Server::Start, RunUntil, Finish).
  Status Start();
  Result<bool> RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  void Finish();
  // Init's part after ServerOptions::detach: database, loop, pool, jails.
  Status InitAfterDetach(LoadedConfig& cfg);
  void Stop() {
    if (loop_) loop_->Stop();
  }

  // Re-reads the configuration (SIGHUP, `bantam reload`): jails no longer
  // configured are stopped, new ones started, changed ones rebuilt keeping
  // their bans and failures; unchanged ones keep running untouched (their
  // actions get actionreload). `jail`: only that jail. `unban`: every ban of
  // the reloaded jails is lifted first. `restart`: the jails are stopped and
  // started again even if unchanged. On a configuration error nothing
  // changes and the error is returned.
  struct ReloadRequest {
    std::optional<std::string> jail;
    bool unban = false;
    bool restart = false;
  };
  Status Reload(const ReloadRequest& request);

  // JailEvents
  void OnFound(const std::string& jail, const IpAddr& id, double time) override;
  void OnIgnored(const std::string& jail, const IpAddr& id, const char* source) override;
  void OnBan(const std::string& jail, const Ticket& ticket) override;
  void OnAlreadyBanned(const std::string& jail, const IpAddr& id) override;
  void OnUnban(const std::string& jail, const Ticket& ticket) override;
  void OnCovered(const std::string& jail, const Ticket& ticket, const IpAddr& by) override;
  void OnWarning(const std::string& jail, const std::string& message) override;
  bool RunIgnoreCommand(const PendingIgnoreCommand& command,
                        std::function<void(Result<int>)> done) override;
  // BanHistory (bantime.increment)
  std::optional<BanRecord> LastBan(const IpAddr& id, std::string_view jail,
                                   bool overalljails) override;
  // CommandRunner (ignorecommand): blocking, on the loop.
  Result<int> Run(const std::string& command,
                  const std::vector<std::pair<std::string, std::string>>& env) override;

 private:
  // A jail built from configuration, not yet running.
  Result<std::unique_ptr<JailState>> BuildJail(JailConfig config, const std::string& signature);
  // The one place that knows the kinds of source: subscribes the jail to
  // the file source with its logpaths, or opens its journal, ... Each
  // resumes where the jail left off: `carried` (the positions of the jail
  // it replaces, on a reload), else the database.
  void AttachSources(JailState& js, const std::vector<SourcePosition>& carried = {});
  // Unsubscribes the jail from its sources; a source no jail reads any more
  // leaves the loop.
  void DetachSources(JailState& js);
  // Puts `source` on the loop (its fd, its poll timer) unless it is there.
  Status RegisterSource(const std::shared_ptr<LineSource>& source);
  // Adds `source` to the jail's sources and, the first time, to the loop.
  Status UseSource(JailState& js, std::shared_ptr<LineSource> source);
  // Every position of the jail's sources (for the jail replacing it).
  std::vector<SourcePosition> PositionsOf(const JailState& js) const;
  // actionstart (unless on demand) and restore from the database.
  void StartJail(JailState& js);
  // Lifts every ban from the firewall (flush or unban), then actionstop.
  // The bans stay in the database.
  void StopJail(JailState& js);
  // Removes the actions whose stop has been reported.
  void ReapRetiredActions();
  // Moves the bans and failures of `from` into the freshly built `to` and
  // reuses `from`'s actions where their options did not change.
  void Transplant(JailState& from, JailState& to);
  Status ApplyServerOptions(const OrderedMap<std::string>& server);
  // The configuration as `bantam -t` sees it: loaded, then checked (its
  // errors are diagnostics, which fail their jail).
  Result<LoadedConfig> LoadCheckedConfig() const;
  void LogDiagnostics(const LoadedConfig& cfg);

  Status OpenJournal(JailState& js, JournalSource& source,
                     const std::vector<SourcePosition>& carried);
  Result<std::shared_ptr<AmiSource>> OpenAmi(JailState& js);

  void Log(LogLevel level, const char* component, const std::string& message) {
    if (logger_) logger_->Log(level, component, message);
  }
  // sd_notify(0, state) (service_notify.h). A failure is logged at debug
  // level only, as sd_notify's was ignored: under `bantamd -b` the
  // starter's socket is gone once it heard READY=1.
  void Notify(const char* state);
  JailState* FindJail(const std::string& name);
  JailState* FindJailById(uint64_t id);
  // After an action's report: if the action was repaired since its last
  // report, its jail's bans are submitted to it again (kReban).
  void CheckBanEpoch(uint64_t jail_id, Action& action, const ActionReport& r);
  // Action::EndTurn for every action, retired ones included.
  void EndActionTurns();
  // `pending`: the ban's row when its commit may still be to come.
  BanInfo MakeBanInfo(const JailState& js, const Ticket& t,
                      const StoredBan* pending = nullptr) const;
  // Queues `op` on `action`, or holds it while the actions that `js`
  // replaced (same jail name, earlier jail id) have not stopped yet: a jail
  // rebuilt by a reload or restarted runs nothing before its predecessor's
  // unbans and actionstop, as fail2ban's sequential stop and start do. Two
  // actions of the same name would otherwise race over the same chain or
  // set (the new actionstart before the old actionstop deletes it).
  void Submit(JailState& js, Action& action, ActionOp op, BanInfo info,
              std::function<void()> after = nullptr);
  void SubmitNow(uint64_t jail_id, const std::string& jail, Action& action, ActionOp op, BanInfo info,
                 std::function<void()> after);
  // Whether an action of a jail named `jail` other than `jail_id` is
  // retired and not yet stopped.
  bool PredecessorRunning(const std::string& jail, uint64_t jail_id) const;
  // A retired action stopped: submits the held operations whose jail has
  // no predecessor running any more, in the order they were held.
  void ReleaseHeldOperations();
  // Queues the retired action's actionstop; it leaves retired_ once done.
  void Retire(JailState& js, std::unique_ptr<Action> action);
  // Whom an operation's report goes to: one per jail and action, kept in
  // op_targets_ for the server's life so a report's callback can point at
  // it (the jail and action may be gone by then; the ids say so).
  struct OpTarget {
    uint64_t jail_id = 0;
    Action* action = nullptr;
    std::string jail;
    // When each operation not yet reported was submitted, in order (an
    // action reports in submission order): the duration metric.
    std::deque<std::chrono::steady_clock::time_point> submitted;
  };
  void OnReport(OpTarget& target, const ActionReport& r);
  void StartJails();
  void StopJails();
  void WaitForActions();
  // CommitTurn(true): the turn's state, with the position of every source
  // that changed since the last save.
  void SaveLogPositions() { CommitTurn(/*save_positions=*/true); }
  void OnLine(const SourceLine& line);
  // The number of `origin` in origins_, given on first sight.
  uint32_t OriginId(std::string_view origin);
  void ServiceTimer();
  void PurgeDatabase();
  // BanStore::CompactFailures when its log outgrew the windows held and no
  // burst is being read; `force`: now.
  void CompactFailures(bool force);
  // BanStore::Checkpoint when no burst is being read (service timer).
  void CheckpointDatabase();
  // Once a burst is over, gives back what it left: SQLite's page cache and
  // the heap glibc keeps after the turns freed it.
  void ReleaseMemoryAfterBurst();
  // End of a loop turn: CommitTurn, the actions' EndTurn, the log's flush;
  // in a burst (a source has a backlog), the commit and the flush wait
  // until kBurstCommitMs passed since the last commit.
  void FlushTurn();
  double LineNow();
  // Writes what this turn changed in one transaction: its bans, the failure
  // windows that changed, and (when there was any such change, or
  // `save_positions`) the positions the sources were read up to, so that
  // after a crash no line is counted twice and no failure is forgotten.
  // The turn's bans go to their actions first (applied while it commits),
  // and are logged after the commit, committed or not: a failed commit (disk full, read-only, I/O error) keeps every row in
  // memory and writes it with a later turn, and saves no position past it.
  void CommitTurn(bool save_positions);
  // Drops the rows of unsaved_bans_ for `js` whose ban was lifted by the
  // operator (unbanip, unban --all, reload --unban): a later retry must not
  // write back a ban that no longer exists.
  void ForgetUnsavedBansLifted(JailState& js);
  // Loads the failure windows `js` saved before a restart, still inside
  // findtime, and turns on its change tracking.
  void RestoreFailures(JailState& js);
  // Tells each jail's failure table whether to keep matched lines: only if
  // one of its actions, or an <ipmatches> of any jail's, may read them.
  void UpdateKeepMatches();
  // Reads the rest of a log burst in later loop turns.
  // Whether a source has read-in left to do: a burst (or a start-up's
  // backlog) is being read.
  bool ReadingBacklog() const;
  void ScheduleBacklog();
  // Reads the backlog of the sources of `jails` (and of the shared file
  // source, where a reload adds files) to their end, "not in operation":
  // at start, and for jails a reload or `start JAIL` started.
  void ReadIn(const std::vector<JailState*>& jails);
  void ReportDeferredBans() { CommitTurn(/*save_positions=*/false); }
  // Logs a ban and hands it to the jail's actions.
  void ReportBan(JailState& js, const Ticket& t);
  // ReportBan's halves: the Ban line; the actions' ban operations.
  void LogBan(JailState& js, const Ticket& t);
  void ActOnBan(JailState& js, const Ticket& t, const StoredBan* pending = nullptr);
  Status WritePidFile();

  ServerOptions options_;
  const Clock& clock_;
  OrderedMap<std::string> server_opts_;
  std::unique_ptr<Logger> logger_;
  std::string dbfile_;
  std::unique_ptr<BanStore> store_;
  std::shared_ptr<BanHistoryReader> history_reader_;
  std::unique_ptr<EventLoop> loop_;
  // The log files of every file jail; in sources_ while a jail uses it.
  std::shared_ptr<FileSource> files_;
  // Every source some jail reads, each once, with its loop registration.
  struct LiveSource {
    std::shared_ptr<LineSource> source;
    int fd = -1;
    std::optional<EventLoop::TimerId> poll_timer;
  };
  std::vector<LiveSource> sources_;
  ShellSpawner shell_spawner_;
  Spawner* spawner_;  // options_.spawner or shell_spawner_
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<WorkerPool> mail_pool_;  // whois and sendmail, apart from firewall actions
  std::unique_ptr<SystemHostAddresses> self_;
  ActionEnv action_env_;
  std::vector<std::unique_ptr<JailState>> jails_;
  uint64_t next_jail_id_ = 0;
  // Actions of stopped or rebuilt jails, kept until their stop is reported
  // (an Action must outlive its queued operations).
  struct Retired {
    std::unique_ptr<Action> action;
    std::shared_ptr<bool> stopped;
    std::string jail;
    uint64_t jail_id = 0;
  };
  std::vector<Retired> retired_;
  // Operations held by Submit until the jail's predecessor stopped.
  struct HeldOperation {
    uint64_t jail_id = 0;
    std::string jail;
    Action* action = nullptr;  // alive: its own stop is held or queued behind
    ActionOp op = ActionOp::kBan;
    BanInfo info;
    std::function<void()> after;
  };
  std::deque<HeldOperation> held_ops_;
  std::string pidfile_;
  bool initial_read_ = false;
  bool running_ = false;
  bool log_reopen_failed_ = false;  // ReopenIfMoved failed; said once
  std::string scratch_;
  // Every origin a line came from (OriginId), numbered once; never erased:
  // as many as the logs, journal and AMI connections ever read.
  std::vector<std::string> origins_;
  uint32_t last_origin_ = 0;
  // The time lines are seen at (LineNow): read once for up to
  // kLinesPerClockRead lines, and again in every loop turn.
  double line_now_ = 0;
  uint32_t line_now_uses_ = 0;
  std::string message_scratch_;  // OnFound, OnAlreadyBanned: one log line at a time
  size_t pending_ops_ = 0;
  // By jail id and action; never erased (a few per reload), so pointers to
  // them stay valid. A reused Action address under the same jail id gets
  // the same values.
  std::map<std::pair<uint64_t, const Action*>, OpTarget> op_targets_;
  // Group commit: the bans of one loop turn share one transaction with the
  // turn's failure windows and log positions; they are logged only once it
  // is committed (or failed: see CommitTurn), so a ban that was logged is on
  // disk whatever happens to the process. Their actions are queued just
  // before the commit (CommitTurn says why that is safe).
  struct DeferredBan {
    uint64_t jail_id;
    Ticket ticket;
    std::string jail;
    StoredBan row;
  };
  std::vector<DeferredBan> deferred_bans_;
  // What failed to commit, kept until a commit succeeds: ban rows, and by
  // jail name the ids whose failure window is to be written (or deleted).
  struct UnsavedBan {
    std::string jail;
    StoredBan row;
  };
  std::vector<UnsavedBan> unsaved_bans_;
  std::map<std::string, std::unordered_set<IpAddr>> unsaved_failures_;
  // A failed commit is retried at most once a second, and reported at
  // once, then at most once a minute while it keeps failing.
  int64_t commit_retry_ms_ = 0;
  int64_t last_commit_ms_ = 0;  // EventLoop::NowMs() of the last commit tried
  int64_t commit_error_logged_ms_ = 0;
  std::string commit_error_;
  uint64_t commits_failed_ = 0;
  // Rows (bans and failure windows) committed since memory was last given
  // back (ReleaseMemoryAfterBurst).
  uint64_t rows_since_release_ = 0;
  // An unwritable database runs from memory (BanStore::degraded): said
  // every minute.
  int64_t degraded_logged_ms_ = 0;
  bool backlog_scheduled_ = false;
  // ignorecommands run on these lanes of the pool, in turn (an address's
  // failures wait in its jail, so order across lanes does not matter).
  std::vector<WorkerPool::StrandId> ignore_strands_;
  size_t next_ignore_strand_ = 0;

  // --- control socket (server_control.cc) ---
 public:
  // Listens on the control socket (the `socket` option; mode 0600, or 0660
  // with fail2ban.conf's bantam option `socketgroup`). Called once the
  // loop exists and before the jails start, so a second bantamd on the
  // same socket stops before touching any firewall. Error: another server
  // answers on the path, the path is unusable, an unknown group.
  Status StartControl();
  // Closes every control connection and removes the socket.
  void StopControl() { control_.reset(); }

 private:
  ControlServer::Response OnControl(const ControlRequest& request, const PeerCredentials& peer);
  // fail2ban's Transmitter over this server's state.
  ControlReply ControlCommand(const std::vector<std::string>& cmd, std::function<void()>* after);
  // `set`: one entry per option in SetTable (server_control.cc).
  ControlReply ControlSet(const std::vector<std::string>& cmd);
  struct SetTable;
  ControlReply ControlGet(const std::vector<std::string>& cmd);
  ControlReply ControlStatus(const std::vector<std::string>& cmd);
  ControlReply ControlReload(const std::vector<std::string>& cmd);
  ControlReply ControlStartStopJail(const std::vector<std::string>& cmd);
  // Unbans `ips` in `js` (an address, a subnet or a host name each), also
  // from the database. Returns the count; `missed` gets those not banned.
  // `publish`: an operator's unban, sent to the fleet (server_fleet.cc).
  int ControlUnban(JailState& js, const std::vector<std::string>& ips,
                   std::vector<std::string>* missed, bool publish = true);
  int ControlUnbanAll(JailState& js);
  Value ControlJailStatus(JailState& js, const std::string& flavor);
  // A jail's bantime.* value as fail2ban keeps it (raw text, or seconds,
  // or a bool for increment); null when never set.
  Value BanTimeExtra(const JailState& js, const std::string& opt) const;

  std::unique_ptr<ControlServer> control_;
  LogThrottle refused_log_;  // "Refused command" lines, per uid
  std::optional<gid_t> control_group_;
  std::string control_group_name_;
  // bantime.* values set through the socket, by jail id (the configured
  // ones are read back from the jail's signature).
  std::map<uint64_t, Value::Dict> ban_extra_;
  // usedns as it was when the jail's regexes were compiled: fail2ban's
  // `get JAIL failregex` shows them expanded for it, whatever usedns says
  // now.
  std::map<uint64_t, bool> regex_dns_;
  // How `get`/`set` show a jail's regexes: expanded for that usedns.
  FailRegexOptions ShownRegexOptions(const JailState& js) const;
  // Jails added by `add JAIL` and not started yet (fail2ban configures them
  // with set commands first): their settings so far.
  struct PendingJail {
    std::string name;
    std::vector<Value> commands;  // ["add", ...], ["set", ...], ...
  };
  std::vector<PendingJail> pending_jails_;
  // --- end control socket ---

  // --- metrics (server_metrics.cc) ---
 public:
  // Why the bans and unbans that jails report while one is alive happen:
  // the control socket's banip/unbanip set kManual, the fleet module sets
  // kFleet around what it applies from its peers. Without one: a ban is
  // kMaxretry (kRecidive in a recidive jail), an unban kExpired.
  class ScopedCause {
   public:
    ScopedCause(ServerImpl* s, BanCause ban, UnbanCause unban)
        : s_(s), ban_(s->ban_cause_), unban_(s->unban_cause_) {
      s->ban_cause_ = ban;
      s->unban_cause_ = unban;
    }
    ~ScopedCause() {
      s_->ban_cause_ = ban_;
      s_->unban_cause_ = unban_;
    }
    ScopedCause(const ScopedCause&) = delete;
    ScopedCause& operator=(const ScopedCause&) = delete;

   private:
    ServerImpl* s_;
    BanCause ban_;
    UnbanCause unban_;
  };

 private:
  // Reads `metrics` and `metrics_allow_remote` of `cfg` (checked by
  // CheckConfig) and, when they changed, stops the endpoint and starts it
  // on the new address. A failure to listen is an error in the log only:
  // the jails run without their endpoint.
  void ApplyMetricsSettings(const LoadedConfig& cfg);
  // What GET /metrics answers.
  void RenderMetrics(ExpositionFormat format, std::string* out);
  // The counters of the jail named in `config` (kept from an earlier jail
  // of that name), its sources pruned to the ones it still reads.
  std::shared_ptr<JailCounters> CountersFor(const JailConfig& config);
  // Drops the counters of jails no longer running.
  void PruneCounters();
  // A reload's outcome.
  void CountReload(bool ok);
  void OnNftTransaction(const std::string& jail, const std::string& action, size_t elements,
                        double seconds, bool ok);

  DaemonCounters counters_;
  BanCause ban_cause_ = BanCause::kMaxretry;
  UnbanCause unban_cause_ = UnbanCause::kExpired;
  std::optional<MetricsListen> metrics_listen_;  // set while configured
  std::unique_ptr<MetricsServer> metrics_;
  // --- end metrics ---

  // --- fleet (server_fleet.cc) ---
  // Reads [Fleet] and the jails' fleet options and connects; a bad fleet
  // configuration is logged and leaves the fleet off, never the jails.
  void StartFleet();
  // What the fleet reports, counted as its cause (server_fleet.cc).
  std::unique_ptr<JailEvents> fleet_events_;
  // Last member: stopped before the loop and the jails it refers to go.
  std::unique_ptr<Fleet> fleet_;
  // --- end fleet ---
};

}  // namespace bantam

#endif  // BANTAM_DAEMON_SERVER_IMPL_H_
