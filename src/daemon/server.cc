#include "bantam/server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <utility>

#include "bantam/ban_store.h"
#include "bantam/clock.h"
#include "bantam/command_action.h"
#include "bantam/config_loader.h"
#include "bantam/duration.h"
#include "bantam/event_loop.h"
#include "bantam/jail.h"
#include "bantam/journal_reader.h"
#include "bantam/option_list.h"
#include "bantam/log_tailer.h"
#include "bantam/logging.h"
#include "bantam/regex_tool.h"
#include "bantam/spawner.h"

namespace bantam {
namespace {

constexpr const char kVersion[] = "1.0.2";

std::string TimeString(double t) {
  const time_t secs = static_cast<time_t>(t);
  struct tm tm {};
  localtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace

class ServerImpl : public JailEvents, public BanHistory, public CommandRunner {
 public:
  explicit ServerImpl(ServerOptions options) : options_(std::move(options)) {}
  ~ServerImpl() override;

  Status Init();
  Status Run();
  void Stop() {
    if (loop_) loop_->Stop();
  }

  // JailEvents
  void OnFound(const std::string& jail, const IpAddr& id, double time) override;
  void OnIgnored(const std::string& jail, const IpAddr& id, const char* source) override;
  void OnBan(const std::string& jail, const Ticket& ticket) override;
  void OnAlreadyBanned(const std::string& jail, const IpAddr& id) override;
  void OnUnban(const std::string& jail, const Ticket& ticket) override;
  void OnWarning(const std::string& jail, const std::string& message) override;
  // BanHistory (bantime.increment)
  std::optional<BanRecord> LastBan(const IpAddr& id, std::string_view jail,
                                   bool overalljails) override;
  // CommandRunner (ignorecommand): blocking, on the loop.
  Result<int> Run(const std::string& command,
                  const std::vector<std::pair<std::string, std::string>>& env) override;

 private:
  struct JailState {
    std::unique_ptr<Jail> jail;
    std::vector<std::unique_ptr<CommandAction>> actions;
    std::unique_ptr<JournalReader> journal;  // backend = systemd
    uint64_t evicted_logged = 0;
  };
  Status OpenJournal(JailState& js);
  void ReadJournal(JailState& js);

  void Log(LogLevel level, const char* component, const std::string& message) {
    if (logger_) logger_->Log(level, component, message);
  }
  JailState* FindJail(const std::string& name);
  BanInfo MakeBanInfo(const std::string& jail, const Ticket& t) const;
  void Submit(JailState& js, CommandAction& action, ActionOp op, BanInfo info);
  void StartJails();
  void StopJails();
  void SaveLogPositions();
  void OnLine(const LogFile& file, std::string_view raw);
  void ServiceTimer();
  void PurgeDatabase();
  Status WritePidFile();

  ServerOptions options_;
  const Clock& clock_ = SystemClock();
  OrderedMap<std::string> server_opts_;
  std::unique_ptr<Logger> logger_;
  std::unique_ptr<BanStore> store_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<LogTailer> tailer_;
  ShellSpawner spawner_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<SystemHostAddresses> self_;
  std::vector<JailState> jails_;
  std::string pidfile_;
  bool initial_read_ = false;
  bool ipv6_allowed_ = true;
  std::string scratch_;
  size_t pending_ops_ = 0;
};

ServerImpl::~ServerImpl() {
  // Actions block in their destructors until queued commands have run.
  for (JailState& js : jails_) js.actions.clear();
  if (!pidfile_.empty()) ::unlink(pidfile_.c_str());
}

// The signals the loop handles. They are blocked before any thread starts,
// so that every thread inherits the mask and they reach only the signalfd.
const std::vector<int>& HandledSignals() {
  static const std::vector<int> kSignals = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
  return kSignals;
}

Status ServerImpl::Init() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : HandledSignals()) sigaddset(&mask, s);
  if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return Status::Error(std::string("pthread_sigmask: ") + strerror(errno));
  }
  LoadOptions lo;
  lo.basedir = options_.basedir;
  lo.overrides = options_.overrides;
  Result<LoadedConfig> cfg = LoadConfig(lo);
  if (!cfg.ok()) return cfg.status();
  server_opts_ = cfg->server;

  // fail2ban.conf: log target and level first, so everything after is logged.
  auto opt = [&](const char* name, const char* fallback) {
    const std::string* v = server_opts_.Find(name);
    return v ? *v : std::string(fallback);
  };
  Result<LogLevel> level = ParseLogLevel(opt("loglevel", "INFO"));
  if (!level.ok()) return level.status();
  Result<std::unique_ptr<Logger>> logger =
      Logger::Open(opt("logtarget", "STDERR"), opt("syslogsocket", "auto"), *level);
  if (!logger.ok()) return logger.status();
  logger_ = std::move(*logger);
  Log(LogLevel::kInfo, "fail2ban.server", std::string(50, '-'));
  Log(LogLevel::kInfo, "fail2ban.server", std::string("Starting Fail2ban v") + kVersion);
  for (const Diagnostic& d : cfg->diagnostics) {
    Log(d.severity == Diagnostic::Severity::kError ? LogLevel::kError : LogLevel::kWarning,
        "fail2ban.configreader", d.message);
  }
  pidfile_ = opt("pidfile", "");

  // Server settings from the stream: database and its options.
  std::string dbfile = "None";
  BanStoreOptions store_options;
  for (const Value& c : cfg->commands) {
    const Value::List& l = c.as_list();
    if (l.size() != 3 || l[0].as_string() != "set") continue;
    const std::string key = l[1].ToPyStr();
    if (key == "dbfile") dbfile = l[2].ToPyStr();
    if (key == "dbpurgeage") {
      Result<double> age = ParseDuration(l[2].ToPyStr());
      if (age.ok()) store_options.purge_age = static_cast<int64_t>(*age);
    }
    if (key == "dbmaxmatches" && l[2].is_int()) {
      store_options.max_matches = static_cast<int>(l[2].as_int());
    }
    if (key == "allowipv6") ipv6_allowed_ = LowerAscii(l[2].ToPyStr()) != "no";
  }
  Result<std::unique_ptr<BanStore>> store = BanStore::Open(dbfile, store_options);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  if (store_->enabled()) {
    Log(LogLevel::kInfo, "fail2ban.database",
        "Connected to fail2ban persistent database '" + dbfile + "'");
  }

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  loop_ = std::move(*loop);
  pool_ = std::make_unique<WorkerPool>(4);
  self_ = std::make_unique<SystemHostAddresses>(SystemResolver());

  std::vector<std::string> warnings;
  Result<std::vector<JailConfig>> jails = JailsFromCommands(cfg->commands, &warnings);
  if (!jails.ok()) return jails.status();
  for (const std::string& w : warnings) Log(LogLevel::kWarning, "fail2ban.server", w);

  // One tailer for every file backend; the first jail's backend decides
  // inotify or polling for all (a per-jail choice is not needed in practice).
  TailBackend backend = TailBackend::kInotify;
  for (const JailConfig& j : *jails) {
    if (j.backend.rfind("polling", 0) == 0) backend = TailBackend::kPolling;
  }
  LogTailer::Options to;
  to.backend = backend;
  to.on_line = [this](const LogFile& f, std::string_view line) { OnLine(f, line); };
  to.on_notice = [this](const LogFile& f, std::string_view m) {
    Log(LogLevel::kWarning, "fail2ban.filter", f.path() + ": " + std::string(m));
  };
  Result<std::unique_ptr<LogTailer>> tailer = LogTailer::Create(std::move(to));
  if (!tailer.ok()) return tailer.status();
  tailer_ = std::move(*tailer);

  ActionEnv env;
  env.spawner = &spawner_;
  env.pool = pool_.get();
  env.ipv6_allowed = ipv6_allowed_;
  // Logpaths with no file yet: watched until the file appears (a glob is
  // only expanded at start).
  for (const MissingLogPath& m : cfg->missing_logpaths) {
    for (JailConfig& jc : *jails) {
      if (jc.name != m.jail) continue;
      if (m.path.find_first_of("*?[") != std::string::npos) {
        Log(LogLevel::kWarning, "fail2ban.filter",
            "[" + m.jail + "] no file matches logpath '" + m.path +
                "'; files matching it later are not picked up until restart");
      } else {
        jc.logpaths.emplace_back(m.path, m.tail);
      }
    }
  }
  for (JailConfig& jc : *jails) {
    const std::string name = jc.name;
    Log(LogLevel::kInfo, "fail2ban.jail", "Creating new jail '" + name + "'");
    std::vector<JailActionConfig> actions = jc.actions;
    std::vector<std::pair<std::string, bool>> logpaths = jc.logpaths;
    Result<std::unique_ptr<Jail>> jail =
        Jail::Create(std::move(jc), clock_, this, this, &SystemResolver(), self_.get(), this);
    if (!jail.ok()) {
      // A bad jail fails alone; the others run.
      Log(LogLevel::kError, "fail2ban.jail", jail.status().message());
      continue;
    }
    JailState js;
    js.jail = std::move(*jail);
    bool bad = false;
    for (const JailActionConfig& a : actions) {
      OrderedMap<std::string> opts;
      for (const auto& [k, v] : a.options) opts.Set(k, v.ToPyStr());
      Result<std::unique_ptr<CommandAction>> act =
          CommandAction::Create(name, a.name, std::move(opts), env);
      if (!act.ok()) {
        Log(LogLevel::kError, "fail2ban.jail",
            "Jail '" + name + "': action '" + a.name + "': " + act.status().message());
        bad = true;
        break;
      }
      js.actions.push_back(std::move(*act));
    }
    if (bad) continue;
    if (Status s = store_->AddJail(name); !s.ok()) {
      Log(LogLevel::kError, "fail2ban.database", s.message());
    }
    const uint64_t index = jails_.size();
    if (js.jail->config().backend.rfind("systemd", 0) == 0) {
      if (Status j = OpenJournal(js); !j.ok()) {
        Log(LogLevel::kError, "fail2ban.jail", "Jail '" + name + "': " + j.message());
        continue;
      }
      jails_.push_back(std::move(js));
      continue;
    }
    for (const auto& [path, tail] : logpaths) {
      // The last position read, resumed only if the file still starts
      // with the same line (the tailer checks the hash).
      std::optional<SavedPosition> saved;
      Result<std::optional<std::pair<std::string, int64_t>>> log = store_->GetLog(name, path);
      if (log.ok() && *log) saved = SavedPosition{static_cast<uint64_t>((*log)->second), (*log)->first};
      Status s = tailer_->Add(path, index, tail, saved);
      if (!s.ok()) {
        Log(LogLevel::kError, "fail2ban.filter", "[" + name + "] " + s.message());
      } else {
        Log(LogLevel::kInfo, "fail2ban.filter", "Added logfile: '" + path + "'");
      }
    }
    jails_.push_back(std::move(js));
  }
  return Status::Ok();
}

// backend = systemd[journalpath=..., journalfiles=..., journalflags=...]:
// the journal, filtered by the jail's journalmatch, from findtime ago (as
// fail2ban starts without a saved position).
Status ServerImpl::OpenJournal(JailState& js) {
  const JailConfig& c = js.jail->config();
  Result<NamedOptions> be = ParseNamedOptions(c.backend);
  if (!be.ok()) return Status::Error("backend " + PyRepr(c.backend) + ": " + be.status().message());
  Result<JournalOptions> jo = ParseJournalOptions(be->options);
  if (!jo.ok()) return jo.status();
  Result<std::unique_ptr<JournalReader>> reader = JournalReader::Open(*jo);
  if (!reader.ok()) return reader.status();
  js.journal = std::move(*reader);
  if (Status s = js.journal->AddMatches(c.journalmatch); !s.ok()) return s;
  if (Status s = js.journal->SeekRealtime(clock_.Now() - c.findtime); !s.ok()) return s;
  Log(LogLevel::kInfo, "fail2ban.filtersystemd",
      "[" + c.name + "] Jail is in operation now (process new journal entries)");
  return Status::Ok();
}

void ServerImpl::ReadJournal(JailState& js) {
  JournalLine entry;
  std::string date;
  while (true) {
    Result<bool> more = js.journal->Next(&entry);
    if (!more.ok()) {
      Log(LogLevel::kError, "fail2ban.filtersystemd", more.status().message());
      return;
    }
    if (!*more) return;
    // fail2ban's tuple line carries the ISO date with one space appended.
    date.assign(entry.date_text).push_back(' ');
    js.jail->ProcessJournalLine(entry.line, entry.time, date);
  }
}

ServerImpl::JailState* ServerImpl::FindJail(const std::string& name) {
  for (JailState& js : jails_)
    if (js.jail->name() == name) return &js;
  return nullptr;
}

BanInfo ServerImpl::MakeBanInfo(const std::string& jail, const Ticket& t) const {
  BanInfo info;
  info.jail = jail;
  info.ip = t.id.ToString();
  info.family = t.id.is_ipv6() ? "inet6" : t.id.is_ipv4() ? "inet4" : "";
  info.failures = t.attempts;
  info.time = t.time;
  const double bt = t.ban_time.value_or(600);
  info.bantime = static_cast<int64_t>(bt);
  info.bancount = t.ban_count;
  info.matches = t.data.matches;
  info.restored = t.restored;
  for (const auto& [k, v] : t.data.groups()) {
    if (v) info.captures[k] = *v;
  }
  return info;
}

void ServerImpl::Submit(JailState& js, CommandAction& action, ActionOp op, BanInfo info) {
  ++pending_ops_;
  const std::string jail = js.jail->name();
  action.Submit(op, std::move(info), [this, jail](ActionReport r) {
    --pending_ops_;
    for (const std::string& n : r.notes) Log(LogLevel::kError, "fail2ban.utils", n);
    if (!r.status.ok()) {
      for (const CommandRun& run : r.runs) {
        if (!run.result.ok()) Log(LogLevel::kError, "fail2ban.utils", run.Describe());
      }
      Log(LogLevel::kError, "fail2ban.actions",
          "Failed to execute " + std::string(ActionOpName(r.op)) + " jail '" + jail +
              "' action '" + r.action + "' info '" + r.ip + "': " + r.status.message());
    }
  });
}

void ServerImpl::OnFound(const std::string& jail, const IpAddr& id, double time) {
  Log(LogLevel::kInfo, "fail2ban.filter",
      "[" + jail + "] Found " + id.ToString() + " - " + TimeString(time));
}

void ServerImpl::OnIgnored(const std::string& jail, const IpAddr& id, const char* source) {
  Log(LogLevel::kInfo, "fail2ban.filter",
      "[" + jail + "] Ignore " + id.ToString() + " by " + source);
}

void ServerImpl::OnBan(const std::string& jail, const Ticket& t) {
  JailState* js = FindJail(jail);
  if (js == nullptr) return;
  Log(LogLevel::kNotice, "fail2ban.actions",
      "[" + jail + "] " + (t.restored ? "Restore Ban " : "Ban ") + t.id.ToString());
  if (!t.restored) {
    // Recorded before the actions run: a ban that was logged is never lost,
    // whatever happens to the action or the process.
    StoredBan b;
    b.ip = t.id.ToString();
    b.time = static_cast<int64_t>(t.time);
    const double bt = t.ban_time.value_or(js->jail->config().bantime);
    b.bantime = static_cast<int64_t>(bt);
    b.bancount = t.ban_count + 1;
    b.data.matches = t.data.matches;
    b.data.failures = t.attempts;
    if (Status s = store_->AddBan(jail, b); !s.ok()) {
      Log(LogLevel::kError, "fail2ban.database", "[" + jail + "] " + s.message());
    }
  }
  const BanInfo info = MakeBanInfo(jail, t);
  for (auto& a : js->actions) Submit(*js, *a, ActionOp::kBan, info);
}

void ServerImpl::OnAlreadyBanned(const std::string& jail, const IpAddr& id) {
  Log(LogLevel::kNotice, "fail2ban.actions", "[" + jail + "] " + id.ToString() + " already banned");
}

void ServerImpl::OnUnban(const std::string& jail, const Ticket& t) {
  JailState* js = FindJail(jail);
  if (js == nullptr) return;
  Log(LogLevel::kNotice, "fail2ban.actions", "[" + jail + "] Unban " + t.id.ToString());
  const BanInfo info = MakeBanInfo(jail, t);
  for (auto& a : js->actions) Submit(*js, *a, ActionOp::kUnban, info);
}

void ServerImpl::OnWarning(const std::string& jail, const std::string& message) {
  Log(LogLevel::kWarning, "fail2ban.filter", "[" + jail + "] " + message);
}

std::optional<BanRecord> ServerImpl::LastBan(const IpAddr& id, std::string_view jail,
                                             bool overalljails) {
  BanStore::BanHistoryQuery q;
  q.ip = id.ToString();
  q.jail = std::string(jail);
  q.overall_jails = overalljails;
  q.now = static_cast<int64_t>(clock_.Now());
  Result<std::optional<BanHistoryRow>> r = store_->GetBan(q);
  if (!r.ok() || !*r) return std::nullopt;
  BanRecord rec;
  rec.ban_count = static_cast<int>((*r)->bancount);
  rec.time_of_ban = static_cast<double>((*r)->time_of_ban);
  rec.last_ban_time = static_cast<double>((*r)->bantime);
  return rec;
}

Result<int> ServerImpl::Run(const std::string& command,
                            const std::vector<std::pair<std::string, std::string>>& env) {
  // Untrusted values reach the command as shell variables assigned from
  // positional parameters, never as script text.
  SpawnRequest req;
  req.args.push_back("sh");
  for (size_t i = 0; i < env.size(); ++i) {
    req.script += env[i].first + "=\"$" + std::to_string(i + 1) + "\"\n";
    req.args.push_back(env[i].second);
  }
  req.script += command;
  req.timeout_seconds = 60;
  SpawnResult r = spawner_.Run(req);
  if (r.end != SpawnResult::End::kExited) return Status::Error(r.Describe(60));
  return r.exit_code;
}

void ServerImpl::OnLine(const LogFile& file, std::string_view raw) {
  const std::string_view line = DecodeUtf8Replace(raw, &scratch_);
  for (SubscriberId id : file.subscribers()) {
    if (id < jails_.size()) jails_[id].jail->ProcessLine(line, !initial_read_);
  }
}

void ServerImpl::ServiceTimer() {
  for (JailState& js : jails_) {
    js.jail->UnbanDue();
    // The failure table is capped; say so when the cap pushes ids out (a
    // flood of unique sources), at most once per service round.
    const uint64_t evicted = js.jail->failures().evicted_total();
    if (evicted > js.evicted_logged) {
      Log(LogLevel::kWarning, "fail2ban.filter",
          "[" + js.jail->name() + "] " + std::to_string(evicted - js.evicted_logged) +
              " failure record(s) of the oldest addresses dropped: more than " +
              std::to_string(js.jail->failures().max_entries()) + " addresses are being tracked");
      js.evicted_logged = evicted;
    }
  }
}

void ServerImpl::PurgeDatabase() {
  if (Status s = store_->Purge(static_cast<int64_t>(clock_.Now())); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", "purge: " + s.message());
  }
}

void ServerImpl::StartJails() {
  const int64_t now = static_cast<int64_t>(clock_.Now());
  for (JailState& js : jails_) {
    for (auto& a : js.actions) {
      if (!a->start_on_demand()) Submit(js, *a, ActionOp::kStart, BanInfo{});
    }
    // Restore the bans still in force (the actions re-apply them unless
    // they are norestored).
    CurrentBansQuery q;
    q.jail = js.jail->name();
    q.now = now;
    if (!js.jail->config().increment.increment) q.forbantime = static_cast<int64_t>(js.jail->config().bantime);
    Result<std::vector<StoredBan>> bans = store_->GetCurrentBans(q);
    if (!bans.ok()) {
      Log(LogLevel::kError, "fail2ban.database", bans.status().message());
    } else {
      for (const StoredBan& b : *bans) {
        Ticket t;
        t.id = IpAddr::FromText(b.ip);
        t.time = static_cast<double>(b.time);
        t.ban_time = static_cast<double>(b.bantime);
        t.ban_count = static_cast<int>(b.bancount);
        t.attempts = static_cast<int>(b.data.failures);
        t.data.matches = b.data.matches;
        js.jail->Restore(std::move(t));
      }
    }
    Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + js.jail->name() + "' started");
  }
}

void ServerImpl::StopJails() {
  for (JailState& js : jails_) {
    // fail2ban's stop: lift every ban from the firewall (flush when the
    // action can), then actionstop. The bans stay in the database and come
    // back at the next start.
    std::vector<Ticket> bans = js.jail->mutable_bans().Flush();
    for (auto& a : js.actions) {
      if (a->has_flush() && !bans.empty()) {
        Submit(js, *a, ActionOp::kFlush, BanInfo{});
      } else {
        for (const Ticket& t : bans) Submit(js, *a, ActionOp::kUnban, MakeBanInfo(js.jail->name(), t));
      }
      Submit(js, *a, ActionOp::kStop, BanInfo{});
    }
    Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + js.jail->name() + "' stopped");
  }
  // Wait for every queued command (each is bounded by its timeout).
  while (pending_ops_ > 0) pool_->WaitAndRunCompletions(1000);
}

void ServerImpl::SaveLogPositions() {
  for (const LogFile* f : tailer_->files()) {
    for (SubscriberId id : f->subscribers()) {
      if (id >= jails_.size() || f->first_line_hash().empty()) continue;
      Status s = store_->UpdateLog(jails_[id].jail->name(), f->path(),
                                   static_cast<int64_t>(f->position()), f->first_line_hash());
      if (!s.ok()) Log(LogLevel::kError, "fail2ban.database", s.message());
    }
  }
}

Status ServerImpl::WritePidFile() {
  if (pidfile_.empty()) return Status::Ok();
  std::ofstream f(pidfile_, std::ios::trunc);
  if (!f) return Status::Error("cannot write pidfile " + PyRepr(pidfile_) + ": " + strerror(errno));
  f << ::getpid() << "\n";
  return Status::Ok();
}

Status ServerImpl::Run() {
  Status s = loop_->HandleSignals(HandledSignals(), [this](int signo) {
    if (signo == SIGTERM || signo == SIGINT) {
      Log(LogLevel::kInfo, "fail2ban.server", "Shutdown in progress...");
      loop_->Stop();
    } else if (signo == SIGUSR1) {
      Result<std::string> r = logger_->Reopen();
      Log(LogLevel::kInfo, "fail2ban.server", r.ok() ? "Log " + *r : r.status().message());
    } else {
      Log(LogLevel::kWarning, "fail2ban.server",
          "SIGHUP: configuration reload is not implemented yet; still running the old one");
    }
  });
  if (!s.ok()) return s;
  if (Status p = WritePidFile(); !p.ok()) return p;
  s = loop_->Watch(pool_->completion_fd(), [this](uint32_t) { pool_->RunCompletions(); });
  if (!s.ok()) return s;
  if (tailer_->fd() >= 0) {
    s = loop_->Watch(tailer_->fd(), [this](uint32_t) {
      Status p = tailer_->Process();
      if (!p.ok()) Log(LogLevel::kError, "fail2ban.filter", p.message());
    });
    if (!s.ok()) return s;
  }
  const int64_t poll_ms = tailer_->poll_interval().count();
  loop_->AddTimer(poll_ms, [this] { tailer_->Poll(); }, poll_ms);
  loop_->AddTimer(1000, [this] { ServiceTimer(); }, 1000);
  loop_->AddTimer(10000, [this] { SaveLogPositions(); }, 10000);
  // fail2ban purges bans older than dbpurgeage once an hour.
  PurgeDatabase();
  loop_->AddTimer(3600 * 1000, [this] { PurgeDatabase(); }, 3600 * 1000);

  for (JailState& js : jails_) {
    if (!js.journal) continue;
    Result<int> fd = js.journal->fd();
    if (!fd.ok()) return fd.status();
    JailState* jsp = &js;
    s = loop_->Watch(*fd, [this, jsp](uint32_t) {
      Result<JournalChange> change = jsp->journal->Process();
      if (!change.ok()) {
        Log(LogLevel::kError, "fail2ban.filtersystemd", change.status().message());
        return;
      }
      ReadJournal(*jsp);
    });
    if (!s.ok()) return s;
  }

  StartJails();
  // The backlog of every log is read once, "not in operation": lines older
  // than findtime count for nothing, as in fail2ban.
  initial_read_ = true;
  tailer_->Poll();
  initial_read_ = false;
  for (JailState& js : jails_) {
    if (js.journal) ReadJournal(js);
  }
  ServiceTimer();
  sd_notify(0, "READY=1");
  Log(LogLevel::kInfo, "fail2ban.server", "Server ready");

  s = loop_->Run();
  sd_notify(0, "STOPPING=1");
  Log(LogLevel::kInfo, "fail2ban.server", "Stopping all jails");
  StopJails();
  SaveLogPositions();
  Log(LogLevel::kInfo, "fail2ban.server", "Exiting Fail2ban");
  return s;
}

Server::Server(std::unique_ptr<ServerImpl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  auto impl = std::make_unique<ServerImpl>(options);
  Status s = impl->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Run() { return impl_->Run(); }
void Server::Stop() { impl_->Stop(); }

}  // namespace bantam
