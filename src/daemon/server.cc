#include "bantam/server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <utility>

#include "bantam/config_check.h"
#include "bantam/duration.h"
#include "bantam/failregex.h"
#include "bantam/option_list.h"
#include "bantam/py.h"
#include "bantam/service_notify.h"
#include "bantam/utf8.h"
#include "server_impl.h"

namespace bantam {
namespace {

constexpr const char kVersion[] = "1.0.2";
// How much of one log a loop turn reads when a burst arrives (about 1.3k
// Asterisk lines, a few ms of matching).
constexpr size_t kTailBytesPerTurn = 256 * 1024;
// Lines of one turn share one reading of the clock, for at most this many
// lines (a turn reads at most kTailBytesPerTurn per file, ~1-2 ms of work).
constexpr uint32_t kLinesPerClockRead = 1024;
// While a burst is read over several turns, one commit serves the turns of
// this long: each commit rewrites every b-tree page its failure windows
// touch, so committing each 256 KiB turn of a 30 MB burst wrote the same
// pages a hundred times over. A ban found in a burst waits this long at
// most for its commit; a line on a quiet log is committed with its turn.
constexpr int64_t kBurstCommitMs = 50;
// The failure-window log is compacted (when quiet) once this many rows, or
// twice the windows held, were appended since the last time.
constexpr uint64_t kCompactAfterRows = 50000;

// <ipmatches>, <ipjailmatches>... and the jail.* counters of one ban: the
// counters as they were when the ban was submitted, the database for the
// merged history. Read by a worker thread.
class ServerBanContext : public BanContext {
 public:
  ServerBanContext(std::shared_ptr<BanHistoryReader> history, std::string jail, uint64_t banned,
                   uint64_t banned_total, uint64_t found, uint64_t found_total,
                   std::optional<BanHistoryReader::Pending> pending)
      : history_(std::move(history)), jail_(std::move(jail)), pending_(std::move(pending)) {
    counters_[0] = banned;
    counters_[1] = banned_total;
    counters_[2] = found;
    counters_[3] = found_total;
  }
  std::optional<MergedBans> MergedBansOf(const std::string& ip, const std::string& jail) override {
    if (!history_) return std::nullopt;
    return history_->Merged(ip, jail, pending_ ? &*pending_ : nullptr);
  }
  std::optional<std::string> JailCounter(const std::string& jail, const std::string& tag) override {
    if (jail != jail_) return std::nullopt;
    static const char* const kTags[] = {"jail.banned", "jail.banned_total", "jail.found",
                                        "jail.found_total"};
    for (int i = 0; i < 4; ++i) {
      if (tag == kTags[i]) return std::to_string(counters_[i]);
    }
    return std::nullopt;
  }
  std::optional<std::string> HostName(const std::string& ip) override {
    std::vector<std::string> names = SystemResolver().IpToName(IpAddr::FromText(ip));
    if (names.empty()) return std::nullopt;
    return names.front();
  }

 private:
  std::shared_ptr<BanHistoryReader> history_;
  std::string jail_;
  std::optional<BanHistoryReader::Pending> pending_;
  uint64_t counters_[4];
};

}  // namespace

std::unique_ptr<BanHistoryReader> BanHistoryReader::Open(const std::string& dbfile) {
  const std::string lower = LowerAscii(dbfile);
  if (lower == "none" || dbfile == ":memory:" || dbfile.empty()) return nullptr;
  // Opened now, before the loop runs: opening reads the schema and sets the
  // journal mode, which a connection opened by a worker later would do while
  // the loop commits, and one of the two could then find the file busy.
  Result<std::unique_ptr<BanStore>> store = BanStore::Open(dbfile, BanStoreOptions{});
  if (!store.ok()) return nullptr;
  return std::unique_ptr<BanHistoryReader>(new BanHistoryReader(std::move(*store)));
}

std::optional<MergedBans> BanHistoryReader::Merged(const std::string& ip, const std::string& jail,
                                                   const Pending* pending) {
  std::lock_guard<std::mutex> lock(mu_);
  // The queries below must see the same rows: the loop may commit the
  // pending ban between two of them, and the row would then be missed by
  // one query and taken as stored by the next.
  if (!store_->BeginRead().ok()) return std::nullopt;
  struct EndRead {
    BanStore* store;
    ~EndRead() { (void)store->EndRead(); }
  } end_read{store_.get()};
  BanStore::BansQuery q;
  q.ip = ip;
  if (!jail.empty()) q.jail = jail;
  Result<std::vector<StoredBan>> bans = store_->GetBans(q);
  if (!bans.ok()) return std::nullopt;
  if (pending != nullptr && pending->row.ip == ip && (jail.empty() || jail == pending->jail)) {
    auto same = [&](const StoredBan& b) {
      return b.time == pending->row.time && b.bantime == pending->row.bantime &&
             b.bancount == pending->row.bancount &&
             b.data.failures == pending->row.data.failures;
    };
    bool stored = false;
    if (jail.empty()) {
      BanStore::BansQuery own = q;
      own.jail = pending->jail;
      Result<std::vector<StoredBan>> own_bans = store_->GetBans(own);
      if (!own_bans.ok()) return std::nullopt;
      stored = std::any_of(own_bans->begin(), own_bans->end(), same);
    } else {
      stored = std::any_of(bans->begin(), bans->end(), same);
    }
    if (!stored) {
      // Where the query's order (newest first) puts it; kept as the store
      // keeps it: the last dbmaxmatches lines.
      StoredBan b = pending->row;
      const size_t keep = static_cast<size_t>(std::max(pending->max_matches, 0));
      if (b.data.matches.size() > keep) {
        b.data.matches.erase(b.data.matches.begin(),
                             b.data.matches.end() - static_cast<std::ptrdiff_t>(keep));
      }
      auto at = std::find_if(bans->begin(), bans->end(),
                             [&](const StoredBan& x) { return x.time < b.time; });
      bans->insert(at, std::move(b));
    }
  }
  // fail2ban's getBansMerged: failures summed, matches of every ban, oldest
  // ban first.
  MergedBans merged;
  for (auto it = bans->rbegin(); it != bans->rend(); ++it) {
    merged.failures += it->data.failures;
    merged.matches.insert(merged.matches.end(), it->data.matches.begin(), it->data.matches.end());
  }
  return merged;
}

Result<std::vector<ConfiguredJail>> ConfiguredJails(const LoadedConfig& cfg,
                                                    std::vector<std::string>* warnings) {
  Result<std::vector<JailConfig>> jails = JailsFromCommands(cfg.commands, warnings);
  if (!jails.ok()) return jails.status();
  std::set<std::string> broken;
  for (const Diagnostic& d : cfg.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError && !d.jail.empty()) broken.insert(d.jail);
  }
  std::vector<ConfiguredJail> out;
  for (JailConfig& jc : *jails) {
    if (broken.count(jc.name)) {
      // A bad jail fails alone; the others run.
      warnings->push_back("Jail '" + jc.name + "' not started: see the errors above");
      continue;
    }
    ConfiguredJail c;
    for (const Value& v : cfg.commands) {
      const Value::List& l = v.as_list();
      if (l.size() < 2 || l[1].ToPyStr() != jc.name) continue;
      const std::string verb = l[0].ToPyStr();
      if (verb != "add" && verb != "set" && verb != "multi-set") continue;
      v.AppendJson(&c.signature);
      c.signature.push_back('\n');
    }
    if (auto pr = cfg.prefixes.find(jc.name); pr != cfg.prefixes.end()) {
      jc.prefixes = pr->second;
      c.signature += "prefixes " + jc.prefixes.Describe() + "\n";
    }
    for (const MissingLogPath& m : cfg.missing_logpaths) {
      if (m.jail != jc.name) continue;
      if (m.path.find_first_of("*?[") != std::string::npos) {
        warnings->push_back("[" + m.jail + "] no file matches logpath '" + m.path +
                            "'; files matching it later are not picked up until restart");
      } else {
        jc.logpaths.emplace_back(m.path, m.tail);
        c.signature += "missing " + m.path + (m.tail ? " tail\n" : "\n");
      }
    }
    c.config = std::move(jc);
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

std::string ActionSignature(const JailActionConfig& a) {
  return a.name + "\n" + Value(a.options).ToJson();
}

}  // namespace

ServerImpl::~ServerImpl() {
  // Actions block in their destructors until queued commands have run.
  for (auto& js : jails_) js->actions.clear();
  retired_.clear();
  if (!pidfile_.empty()) ::unlink(pidfile_.c_str());
}

// The signals the loop handles. They are blocked before any thread starts,
// so that every thread inherits the mask and they reach only the signalfd.
const std::vector<int>& HandledSignals() {
  static const std::vector<int> kSignals = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
  return kSignals;
}

Result<LoadedConfig> ServerImpl::LoadCheckedConfig() const {
  LoadOptions lo;
  lo.basedir = options_.basedir;
  lo.overrides = options_.overrides;
  Result<LoadedConfig> cfg = LoadConfig(lo);
  if (cfg.ok()) CheckConfig(&*cfg);
  return cfg;
}

void ServerImpl::LogDiagnostics(const LoadedConfig& cfg) {
  for (const Diagnostic& d : cfg.diagnostics) {
    Log(d.severity == Diagnostic::Severity::kError ? LogLevel::kError : LogLevel::kWarning,
        "fail2ban.configreader", d.message);
  }
}

Status ServerImpl::Init() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : HandledSignals()) sigaddset(&mask, s);
  if (::pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return Status::Error(std::string("pthread_sigmask: ") + strerror(errno));
  }
  // The check's compiled regexes serve the jails InitAfterDetach builds
  // (after a fork with -b: the same thread, the same memory).
  CheckedRegexes checked;
  Result<LoadedConfig> cfg = LoadCheckedConfig();
  if (!cfg.ok()) return cfg.status();
  server_opts_ = cfg->server;
  counters_.start_time = counters_.last_reload_success = SystemClock().Now();

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
  Log(LogLevel::kInfo, "fail2ban.server",
      "Configuration directory " + options_.basedir + " (" + options_.basedir_origin + ")");
  LogDiagnostics(*cfg);
  pidfile_ = opt("pidfile", "");
  if (options_.detach) {
    if (Status d = options_.detach(); !d.ok()) return d;
    logger_->AfterFork();
  }
  Status rest = InitAfterDetach(*cfg);
  // Whoever started a detached daemon no longer sees its stderr.
  if (!rest.ok() && options_.detach) Log(LogLevel::kError, "fail2ban.server", rest.message());
  return rest;
}

Status ServerImpl::InitAfterDetach(LoadedConfig& loaded) {
  LoadedConfig* cfg = &loaded;

  // Server settings from the stream: database and its options.
  dbfile_ = "None";
  BanStoreOptions store_options;
  bool ipv6_allowed = true;
  for (const Value& c : cfg->commands) {
    const Value::List& l = c.as_list();
    if (l.size() != 3 || l[0].as_string() != "set") continue;
    const std::string key = l[1].ToPyStr();
    if (key == "dbfile") dbfile_ = l[2].ToPyStr();
    if (key == "dbpurgeage") {
      Result<double> age = ParseDuration(l[2].ToPyStr());
      if (age.ok()) store_options.purge_age = static_cast<int64_t>(*age);
    }
    if (key == "dbmaxmatches" && l[2].is_int()) {
      store_options.max_matches = static_cast<int>(l[2].as_int());
    }
    if (key == "allowipv6") ipv6_allowed = LowerAscii(l[2].ToPyStr()) != "no";
  }
  // A damaged database is moved aside and a fresh one made; an unwritable
  // one runs from an in-memory copy: never a reason to leave the host
  // unprotected. Only what is not the file's fault fails here.
  Result<BanStore::Opened> opened = BanStore::OpenOrRecover(
      dbfile_, store_options, static_cast<int64_t>(clock_.Now()));
  if (!opened.ok()) return opened.status();
  store_ = std::move(opened->store);
  if (opened->report.state != OpenReport::State::kOk) {
    Log(LogLevel::kError, "fail2ban.database", opened->report.message);
  }
  if (store_->enabled()) {
    Log(LogLevel::kInfo, "fail2ban.database",
        "Connected to fail2ban persistent database '" + dbfile_ + "'" +
            (store_->degraded() ? " (read-only: running from memory)" : ""));
  }
  degraded_logged_ms_ = EventLoop::NowMs();
  history_reader_ = BanHistoryReader::Open(dbfile_);

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  loop_ = std::move(*loop);
  pool_ = std::make_unique<WorkerPool>(4);
  mail_pool_ = std::make_unique<WorkerPool>(2);
  self_ = std::make_unique<SystemHostAddresses>(SystemResolver());
  action_env_.spawner = spawner_;
  action_env_.pool = pool_.get();
  action_env_.mail_pool = mail_pool_.get();
  action_env_.ipv6_allowed = ipv6_allowed;
  action_env_.on_nft_transaction = [this](const std::string& jail, const std::string& action,
                                          size_t elements, double seconds, bool ok) {
    OnNftTransaction(jail, action, elements, seconds, ok);
  };

  std::vector<std::string> warnings;
  Result<std::vector<ConfiguredJail>> jails = ConfiguredJails(*cfg, &warnings);
  if (!jails.ok()) return jails.status();
  for (const std::string& w : warnings) Log(LogLevel::kWarning, "fail2ban.server", w);

  // One tailer for every file backend; a polling jail makes it poll for all
  // (a per-jail choice is not needed in practice).
  TailBackend backend = TailBackend::kInotify;
  for (const ConfiguredJail& j : *jails) {
    if (j.config.backend.rfind("polling", 0) == 0) backend = TailBackend::kPolling;
  }
  LogTailer::Options to;
  to.backend = backend;
  to.on_notice = [this](const LogFile& f, std::string_view m) {
    Log(LogLevel::kWarning, "fail2ban.filter", f.path() + ": " + std::string(m));
  };
  Result<std::unique_ptr<FileSource>> files =
      FileSource::Create(std::move(to), [this](const SourceLine& line) { OnLine(line); });
  if (!files.ok()) return files.status();
  files_ = std::move(*files);

  for (ConfiguredJail& c : *jails) {
    Result<std::unique_ptr<JailState>> js = BuildJail(std::move(c.config), c.signature);
    // A bad jail fails alone; the others run.
    if (!js.ok()) continue;
    jails_.push_back(std::move(*js));
  }
  ApplyMetricsSettings(*cfg);
  return Status::Ok();
}

namespace {

// Whether a filter's failures may be networks (<SUBNET>, <CIDR>: e.g. the
// recidive filter reading prefix bans), so the jail bans networks too.
bool CapturesNetworks(const FilterSettings& f) {
  for (const std::string& r : f.failregex) {
    if (r.find("<SUBNET>") != std::string::npos || r.find("<CIDR>") != std::string::npos ||
        r.find("<F-SUBNET") != std::string::npos || r.find("<F-CIDR") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<JailState>> ServerImpl::BuildJail(JailConfig config,
                                                         const std::string& signature) {
  const std::string name = config.name;
  Log(LogLevel::kInfo, "fail2ban.jail", "Creating new jail '" + name + "'");
  auto js = std::make_unique<JailState>();
  js->id = next_jail_id_++;
  js->signature = signature;
  const std::vector<JailActionConfig> actions = config.actions;
  Result<std::unique_ptr<Jail>> jail =
      Jail::Create(std::move(config), clock_, this, this, &SystemResolver(), self_.get(), this);
  if (!jail.ok()) {
    Log(LogLevel::kError, "fail2ban.jail", jail.status().message());
    return jail.status();
  }
  js->jail = std::move(*jail);
  js->counters = CountersFor(js->jail->config());
  // A jail that bans networks gets interval sets from native nftables.
  ActionEnv env = action_env_;
  env.network_bans = js->jail->config().prefixes.bans_networks() || CapturesNetworks(js->jail->config().filter);
  for (const JailActionConfig& a : actions) {
    OrderedMap<std::string> opts;
    for (const auto& [k, v] : a.options) opts.Set(k, v.ToPyStr());
    Result<CreatedAction> act = CreateAction(name, a.name, std::move(opts), env);
    if (!act.ok()) {
      Status s = Status::Error("Jail '" + name + "': action '" + a.name + "': " +
                               act.status().message());
      Log(LogLevel::kError, "fail2ban.jail", s.message());
      return s;
    }
    if (!act->shell_reason.empty()) {
      Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + name + "': action '" + a.name +
                                                "' runs through the shell: " + act->shell_reason);
    }
    Log(LogLevel::kDebug, "fail2ban.jail", "Jail '" + name + "': action '" + a.name + "' (" +
                                               act->action->kind() + ")");
    js->actions.push_back(std::move(act->action));
    js->action_signatures.push_back(ActionSignature(a));
  }
  return js;
}

void ServerImpl::AttachSources(JailState& js, const std::vector<SourcePosition>& carried) {
  const JailConfig& c = js.jail->config();
  if (Status s = store_->AddJail(c.name); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", s.message());
  }
  if (ReadsAmi(c)) {
    Result<std::shared_ptr<AmiSource>> ami = OpenAmi(js);
    if (!ami.ok()) {
      Log(LogLevel::kError, "fail2ban.jail", "Jail '" + c.name + "': " + ami.status().message());
      return;
    }
    if (Status s = UseSource(js, *ami); !s.ok()) {
      Log(LogLevel::kError, "fail2ban.jail", "Jail '" + c.name + "': " + s.message());
      return;
    }
    (*ami)->Start();
    Log(LogLevel::kInfo, "bantam.ami",
        "[" + c.name + "] Jail is in operation now (security events from " +
            (*ami)->StatusOf(js.id).items.front() + ")");
    return;
  }
  if (ReadsJournal(c)) {
    auto journal = std::make_shared<JournalSource>(
        js.id, c.journalmatch, [this](const SourceLine& line) { OnLine(line); });
    Status s = OpenJournal(js, *journal, carried);
    // One that did not open stays, closed: the status shows its matches.
    Status used = UseSource(js, journal);
    if (s.ok()) s = used;
    if (!s.ok()) {
      Log(LogLevel::kError, "fail2ban.jail", "Jail '" + c.name + "': " + s.message());
      return;
    }
    Log(LogLevel::kInfo, "fail2ban.filtersystemd",
        "[" + c.name + "] Jail is in operation now (process new journal entries)");
    return;
  }
  files_->Subscribe(js.id);
  if (Status s = UseSource(js, files_); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.filter", "[" + c.name + "] " + s.message());
  }
  for (const auto& [path, tail] : c.logpaths) {
    // The last position read, resumed only if the file still starts with
    // the same line (the tailer checks the hash). A file other jails
    // already follow just gains a subscriber at its current position.
    std::optional<SavedPosition> saved;
    for (const SourcePosition& p : carried) {
      if (p.name != path) continue;
      if (const SavedPosition* where = std::get_if<SavedPosition>(&p.where)) saved = *where;
    }
    if (!saved) {
      Result<std::optional<std::pair<std::string, int64_t>>> log = store_->GetLog(c.name, path);
      if (log.ok() && *log) {
        saved = SavedPosition{static_cast<uint64_t>((*log)->second), (*log)->first};
      }
    }
    Status s = files_->Add(path, js.id, tail, saved);
    if (!s.ok()) {
      Log(LogLevel::kError, "fail2ban.filter", "[" + c.name + "] " + s.message());
      continue;
    }
    Log(LogLevel::kInfo, "fail2ban.filter", "Added logfile: '" + path + "'");
  }
}

Status ServerImpl::RegisterSource(const std::shared_ptr<LineSource>& source) {
  for (const LiveSource& live : sources_) {
    if (live.source == source) return Status::Ok();
  }
  LiveSource live;
  live.source = source;
  LineSource* s = source.get();
  if (s->fd() >= 0) {
    Status w = loop_->Watch(s->fd(), [this, s](uint32_t) {
      if (Status p = s->Process(); !p.ok()) Log(LogLevel::kError, s->log_component(), p.message());
      ScheduleBacklog();
    });
    if (!w.ok()) return w;
    live.fd = s->fd();
  }
  if (const int64_t ms = s->poll_interval().count(); ms > 0) {
    live.poll_timer = loop_->AddTimer(ms, [this, s] {
      if (Status p = s->Poll(); !p.ok()) Log(LogLevel::kError, s->log_component(), p.message());
      ScheduleBacklog();
    }, ms);
  }
  sources_.push_back(std::move(live));
  return Status::Ok();
}

Status ServerImpl::UseSource(JailState& js, std::shared_ptr<LineSource> source) {
  Status s = RegisterSource(source);
  js.sources.push_back(std::move(source));
  return s;
}

void ServerImpl::DetachSources(JailState& js) {
  for (const std::shared_ptr<LineSource>& s : js.sources) s->Unsubscribe(js.id);
  js.sources.clear();
  // The file source stays on the loop for the server's life, as it
  // started: files added later are followed at once.
  std::erase_if(sources_, [&](const LiveSource& live) {
    if (live.source == files_ || live.source->has_subscribers()) return false;
    if (live.fd >= 0) loop_->Unwatch(live.fd);
    if (live.poll_timer) loop_->CancelTimer(*live.poll_timer);
    return true;
  });
}

std::vector<SourcePosition> ServerImpl::PositionsOf(const JailState& js) const {
  std::vector<SourcePosition> all, mine;
  for (const std::shared_ptr<LineSource>& s : js.sources) s->Positions(false, &all);
  for (SourcePosition& p : all) {
    if (p.subscriber == js.id) mine.push_back(std::move(p));
  }
  return mine;
}

// backend = systemd[journalpath=..., journalfiles=..., journalflags=...]:
// the journal, filtered by the jail's journalmatch, from the last entry
// read before (carried over a reload, else kept in the database) but at
// most findtime ago, as fail2ban.
Status ServerImpl::OpenJournal(JailState& js, JournalSource& source,
                               const std::vector<SourcePosition>& carried) {
  const JailConfig& c = js.jail->config();
  Result<NamedOptions> be = ParseNamedOptions(c.backend);
  if (!be.ok()) return Status::Error("backend " + PyRepr(c.backend) + ": " + be.status().message());
  Result<JournalOptions> jo = ParseJournalOptions(be->options);
  if (!jo.ok()) return jo.status();
  std::optional<TimePosition> resume;
  for (const SourcePosition& p : carried) {
    const TimePosition* where = std::get_if<TimePosition>(&p.where);
    if (p.name == kJournalLogName && where != nullptr && where->time > 0) resume = *where;
  }
  if (!resume) {
    Result<std::optional<double>> saved = store_->GetJournalPosition(c.name, kJournalLogName);
    if (saved.ok() && *saved) resume = TimePosition{**saved, std::string()};
  }
  return source.Open(*jo, clock_.Now() - c.findtime, resume);
}

// backend = ami[host=..., port=..., username=..., secret_file=...]: the
// jail's own connection to the Asterisk Manager Interface. Nothing to
// resume: AMI has no history. Its messages never quote the backend value,
// which may hold an inline secret.
Result<std::shared_ptr<AmiSource>> ServerImpl::OpenAmi(JailState& js) {
  const JailConfig& c = js.jail->config();
  Result<NamedOptions> be = ParseNamedOptions(c.backend);
  if (!be.ok()) return Status::Error("backend ami[...]: the options do not parse");
  // Its warnings (an inline secret) came with the configuration check.
  Result<AmiOptions> options = ParseAmiOptions(be->options, nullptr);
  if (!options.ok()) return options.status();
  const std::string jail = c.name;
  auto notice = [this, jail](AmiSource::Level level, const std::string& message) {
    LogLevel l = level == AmiSource::Level::kError     ? LogLevel::kError
                 : level == AmiSource::Level::kWarning ? LogLevel::kWarning
                 : level == AmiSource::Level::kInfo    ? LogLevel::kInfo
                                                       : LogLevel::kDebug;
    Log(l, "bantam.ami", "[" + jail + "] " + message);
  };
  Result<std::unique_ptr<AmiSource>> source = AmiSource::Create(
      js.id, std::move(*options), [this](const SourceLine& line) { OnLine(line); },
      std::move(notice), [this] { return clock_.Now(); });
  if (!source.ok()) return source.status();
  return std::shared_ptr<AmiSource>(std::move(*source));
}

JailState* ServerImpl::FindJail(const std::string& name) {
  for (auto& js : jails_)
    if (js->jail->name() == name) return js.get();
  return nullptr;
}

JailState* ServerImpl::FindJailById(uint64_t id) {
  // Few jails: a scan beats a map.
  for (auto& js : jails_)
    if (js->id == id) return js.get();
  return nullptr;
}

BanInfo ServerImpl::MakeBanInfo(const JailState& js, const Ticket& t,
                                const StoredBan* pending) const {
  BanInfo info;
  info.jail = js.jail->name();
  info.ip = t.id.ToString();
  info.family = t.id.is_ipv6() ? "inet6" : t.id.is_ipv4() ? "inet4" : "";
  info.failures = t.attempts;
  info.time = t.time;
  const double bt = t.ban_time.value_or(js.jail->config().bantime);
  info.bantime = static_cast<int64_t>(bt);
  info.bancount = t.ban_count;
  info.matches = t.data.matches;
  info.restored = t.restored;
  for (const auto& [k, v] : t.data.groups()) {
    if (v) info.captures[k] = *v;
  }
  const Jail& j = *js.jail;
  // StopJail hands the actions to retired_ one by one: some may be null.
  const bool read = std::any_of(js.actions.begin(), js.actions.end(), [](const auto& a) {
    return a == nullptr || a->uses_ban_context();
  });
  if (!read) return info;
  std::optional<BanHistoryReader::Pending> own;
  if (pending != nullptr) {
    own = BanHistoryReader::Pending{info.jail, *pending, store_->max_matches()};
  }
  info.context = std::make_shared<ServerBanContext>(
      history_reader_, info.jail, j.bans().size(), j.bans().ban_total(), j.failures().size(),
      j.failures().fail_total(), std::move(own));
  return info;
}

void ServerImpl::Submit(JailState& js, Action& action, ActionOp op, BanInfo info,
                        std::function<void()> after) {
  const std::string& name = js.jail->name();
  const bool behind_held = std::any_of(held_ops_.begin(), held_ops_.end(),
                                       [&](const HeldOperation& h) { return h.jail_id == js.id; });
  if (behind_held || PredecessorRunning(name, js.id)) {
    held_ops_.push_back(HeldOperation{js.id, name, &action, op, std::move(info), std::move(after)});
    return;
  }
  SubmitNow(js.id, name, action, op, std::move(info), std::move(after));
}

void ServerImpl::SubmitNow(uint64_t jail_id, const std::string& jail, Action& action, ActionOp op,
                           BanInfo info, std::function<void()> after) {
  ++pending_ops_;
  auto [it, fresh] = op_targets_.try_emplace(std::make_pair(jail_id, &action));
  OpTarget* target = &it->second;
  if (fresh) *target = OpTarget{jail_id, &action, jail, {}};
  target->submitted.push_back(std::chrono::steady_clock::now());
  if (!after) {
    // Small enough for std::function to hold without allocating: a
    // restore submits 100k of these.
    action.Submit(op, std::move(info), [this, target](ActionReport r) { OnReport(*target, r); });
    return;
  }
  action.Submit(op, std::move(info), [this, target, after = std::move(after)](ActionReport r) {
    OnReport(*target, r);
    after();
  });
}

bool ServerImpl::PredecessorRunning(const std::string& jail, uint64_t jail_id) const {
  return std::any_of(retired_.begin(), retired_.end(), [&](const Retired& r) {
    return r.jail_id != jail_id && r.jail == jail && !*r.stopped;
  });
}

void ServerImpl::Retire(JailState& js, std::unique_ptr<Action> action) {
  auto stopped = std::make_shared<bool>(false);
  Action& a = *action;
  retired_.push_back(Retired{std::move(action), stopped, js.jail->name(), js.id});
  // Submitted after joining retired_: held operations of js's own
  // predecessors still count it as running.
  Submit(js, a, ActionOp::kStop, BanInfo{}, [this, stopped] {
    *stopped = true;
    ReleaseHeldOperations();
  });
}

void ServerImpl::ReleaseHeldOperations() {
  // Per jail id, in order: a jail's operations stay held while any earlier
  // one of it is held.
  std::set<uint64_t> blocked;
  std::deque<HeldOperation> still;
  std::deque<HeldOperation> held = std::move(held_ops_);
  held_ops_.clear();
  for (HeldOperation& h : held) {
    if (blocked.count(h.jail_id) != 0 || PredecessorRunning(h.jail, h.jail_id)) {
      blocked.insert(h.jail_id);
      still.push_back(std::move(h));
      continue;
    }
    SubmitNow(h.jail_id, h.jail, *h.action, h.op, std::move(h.info), std::move(h.after));
  }
  // SubmitNow never holds, so nothing was added meanwhile.
  held_ops_ = std::move(still);
}

void ServerImpl::OnReport(OpTarget& target, const ActionReport& r) {
  --pending_ops_;
  std::optional<std::chrono::steady_clock::time_point> submitted;
  if (!target.submitted.empty()) {
    submitted = target.submitted.front();
    target.submitted.pop_front();
  }
  JailState* owner = FindJailById(target.jail_id);
  if (owner != nullptr && !r.abandoned) {
    ActionCounters& c = owner->counters->actions[r.action];
    const size_t op = static_cast<size_t>(r.op) < kActionOps ? static_cast<size_t>(r.op) : 0;
    ++c.runs[op];
    if (!r.status.ok()) ++c.errors[op];
    if (submitted) {
      c.duration.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - *submitted).count());
    }
  }
  CheckBanEpoch(target.jail_id, *target.action, r);
  for (const std::string& n : r.notes) Log(LogLevel::kError, "fail2ban.utils", n);
  for (const std::string& w : r.warnings) Log(LogLevel::kWarning, "fail2ban.actions", w);
  if (!r.status.ok()) {
    for (const CommandRun& run : r.runs) {
      if (!run.result.ok()) Log(LogLevel::kError, "fail2ban.utils", run.Describe());
    }
    Log(LogLevel::kError, "fail2ban.actions",
        "Failed to execute " + std::string(ActionOpName(r.op)) + " jail '" + target.jail +
            "' action '" + r.action + "' info '" + r.ip + "': " + r.status.message());
  }
}

void ServerImpl::CheckBanEpoch(uint64_t jail_id, Action& action, const ActionReport& r) {
  JailState* js = FindJailById(jail_id);
  if (js == nullptr) return;
  auto owned = std::find_if(js->actions.begin(), js->actions.end(),
                            [&](const std::unique_ptr<Action>& a) { return a.get() == &action; });
  if (owned == js->actions.end()) return;  // retired
  uint64_t& seen = js->action_epochs[&action];
  if (r.ban_epoch <= seen) return;
  seen = r.ban_epoch;
  // The action rebuilt its environment (actionrepair, or stop and start):
  // what it held before is gone, so every ban in force goes to it again.
  // The ban that found the breakage was retried by the action itself.
  const std::vector<const Ticket*> bans = js->jail->bans().BansByEnd();
  size_t n = 0;
  for (const Ticket* t : bans) {
    if (r.op == ActionOp::kBan && t->id.ToString() == r.ip) continue;
    Submit(*js, action, ActionOp::kReban, MakeBanInfo(*js, *t));
    ++n;
  }
  if (n > 0) {
    Log(LogLevel::kNotice, "fail2ban.actions",
        "[" + js->jail->name() + "] Reban " + std::to_string(n) + " ban(s) with action '" +
            action.name() + "' after it was repaired");
  }
}

void ServerImpl::OnFound(const std::string& jail, const IpAddr& id, double time) {
  // Counted whatever the log level.
  if (JailCounters* c = counters_.Find(jail)) ++c->failures;
  if (fleet_) fleet_->FailureFound(jail, id, time);  // fleet_failures = yes
  if (!logger_ || !logger_->Enabled(LogLevel::kInfo)) return;
  // One line per failure (60k in a burst of 200k lines): built in a reused
  // buffer rather than from five temporaries.
  std::string& m = message_scratch_;
  m.assign("[").append(jail).append("] Found ");
  m.append(id.ToString());
  m.append(" - ").append(LocalTimeText(static_cast<time_t>(time)));
  logger_->Log(LogLevel::kInfo, "fail2ban.filter", m);
}

void ServerImpl::OnIgnored(const std::string& jail, const IpAddr& id, const char* source) {
  if (JailCounters* c = counters_.Find(jail)) ++c->ignored[IgnoreReasonIndex(source)];
  Log(LogLevel::kInfo, "fail2ban.filter",
      "[" + jail + "] Ignore " + id.ToString() + " by " + source);
}

void ServerImpl::OnBan(const std::string& jail, const Ticket& t) {
  JailState* js = FindJail(jail);
  if (js == nullptr) return;
  {
    BanCause cause = t.restored ? BanCause::kRestored : ban_cause_;
    if (cause == BanCause::kMaxretry && js->counters->recidive) cause = BanCause::kRecidive;
    if (t.aggregated > 0 && !t.restored) cause = BanCause::kAggregated;
    ++js->counters->bans[static_cast<size_t>(cause)];
  }
  if (t.restored) {
    // Already on disk.
    ReportBan(*js, t);
    return;
  }
  StoredBan b;
  b.ip = t.id.ToString();
  b.time = static_cast<int64_t>(t.time);
  const double bt = t.ban_time.value_or(js->jail->config().bantime);
  b.bantime = static_cast<int64_t>(bt);
  b.bancount = t.ban_count + 1;
  b.data.matches = t.data.matches;
  b.data.failures = t.attempts;
  if (!store_->enabled()) {
    ReportBan(*js, t);
    return;
  }
  // Recorded before it is reported: written with the turn's transaction at
  // its end (CommitTurn), then logged and acted on.
  deferred_bans_.push_back(DeferredBan{js->id, t, jail, std::move(b)});
}

void ServerImpl::ReportBan(JailState& js, const Ticket& t) {
  LogBan(js, t);
  ActOnBan(js, t);
}

void ServerImpl::LogBan(JailState& js, const Ticket& t) {
  // Once per ban, when it is on disk: the fleet publishes a local ban, and
  // names the origin of one it applied from a peer.
  const std::string fleet_note = fleet_ ? fleet_->BanReported(js.jail->name(), t) : "";
  std::string note = fleet_note;
  if (t.aggregated > 0) {
    // aggregate4/aggregate6: what the prefix ban took the place of.
    const bool units_are_addresses = t.id.is_ipv4() ? js.jail->config().prefixes.prefix4 == 32
                                                    : js.jail->config().prefixes.prefix6 == 128;
    note += " (aggregated " + std::to_string(t.aggregated) +
            (units_are_addresses ? " address" : " prefix") + (t.aggregated == 1 ? "" : "es") + ")";
  }
  Log(LogLevel::kNotice, "fail2ban.actions",
      "[" + js.jail->name() + "] " + (t.restored ? "Restore Ban " : "Ban ") + t.id.ToString() + note);
}

void ServerImpl::ActOnBan(JailState& js, const Ticket& t, const StoredBan* pending) {
  BanInfo info = MakeBanInfo(js, t, pending);
  for (size_t i = 0; i < js.actions.size(); ++i) {
    Action& a = *js.actions[i];
    Submit(js, a, ActionOp::kBan, i + 1 == js.actions.size() ? std::move(info) : info);
  }
}

void ServerImpl::CommitTurn(bool save_positions) {
  std::vector<DeferredBan> bans = std::move(deferred_bans_);
  deferred_bans_.clear();
  // The turn's bans go to their actions before the commit, which then runs
  // while a worker applies them (the native nft action's netlink batch),
  // instead of after it; their Ban lines wait for the commit. Safe for
  // crash consistency: what a crash before the commit leaves unsaved is
  // the ban row together with the failure windows and the source positions
  // of its lines, so the next start reads those lines again and makes,
  // saves, logs and applies the same ban (adding a set element or running
  // actionban again for a ban already in force is harmless). The firewall
  // can hold a ban the database lacks only if the process dies in that
  // sub-millisecond window and its lines are never read again; a logged
  // Ban line (what recidive and the operator see) still always has its row.
  for (const DeferredBan& d : bans) {
    if (JailState* js = FindJailById(d.jail_id)) ActOnBan(*js, d.ticket, &d.row);
  }
  if (!bans.empty()) EndActionTurns();
  if (store_->enabled()) {
    // The failure windows this turn changed, as FailManager reports them
    // (each once, in its current state): written straight from its tickets.
    // Only when they are not written now (a failed or postponed commit) do
    // they join unsaved_failures_, by id (a set node each: 60k in a burst).
    bool failures_changed = false;
    struct TakenChanges {
      const std::string* jail;
      const FailManager* fails;
      FailManager::Changes changes;
    };
    std::vector<TakenChanges> taken;
    for (auto& js : jails_) {
      FailManager& fails = js->jail->mutable_failures();
      if (!fails.has_changes()) continue;
      taken.push_back(TakenChanges{&js->jail->name(), &fails, fails.TakeChanges()});
      failures_changed = true;
    }
    auto keep_unsaved_failures = [&] {
      for (const auto& [jail, fails, changes] : taken) {
        std::unordered_set<IpAddr>& ids = unsaved_failures_[*jail];
        for (const IpAddr& id : changes.upserts) ids.insert(id);
        for (const IpAddr& id : changes.removed) ids.insert(id);
      }
      taken.clear();
    };
    for (const DeferredBan& d : bans) unsaved_bans_.push_back(UnsavedBan{d.jail, d.row});
    const bool pending = !unsaved_bans_.empty() || !unsaved_failures_.empty() || !taken.empty();
    // Without a change of state, a position is saved by the 10 s timer
    // only: lines that changed nothing may be read again after a crash at
    // no cost, and a quiet log costs no write per line.
    const bool write = pending || save_positions;
    const int64_t now_ms = EventLoop::NowMs();
    // After a failure, new bans and failures still go in at once (so that
    // they are tried with the next turn), but an idle retry waits a second.
    const bool retry_wait = commits_failed_ > 0 && now_ms < commit_retry_ms_ && bans.empty() &&
                            !failures_changed && !save_positions;
    if (write && !retry_wait) {
      last_commit_ms_ = now_ms;
      const auto commit_started = std::chrono::steady_clock::now();
      std::vector<std::pair<LineSource*, SourcePosition>> positions;
      Status s;
      {
        Result<BanStore::Batch> batch = store_->BeginBatch();
        if (!batch.ok()) {
          s = batch.status();
        } else {
          auto keep = [&s](Status w) {
            if (s.ok() && !w.ok()) s = std::move(w);
          };
          for (const UnsavedBan& u : unsaved_bans_) keep(store_->AddBan(u.jail, u.row));
          // One record refilled per window: its strings and match list keep
          // their buffers from one window to the next.
          StoredFailure f;
          auto put = [&](const std::string& jail, const Ticket& t) {
            f.ip = t.id.ToString();
            f.first_time = t.first_time;
            f.last_time = t.time;
            f.retry = t.retry;
            f.attempts = t.attempts;
            f.ban_count = t.ban_count;
            f.data.matches.assign(t.data.matches.begin(), t.data.matches.end());
            keep(store_->PutFailure(jail, f));
          };
          for (const auto& [jail, ids] : unsaved_failures_) {
            JailState* js = FindJail(jail);
            for (const IpAddr& id : ids) {
              const Ticket* t = js ? js->jail->failures().Find(id) : nullptr;
              if (t == nullptr) {
                keep(store_->DelFailure(jail, id.ToString()));
              } else {
                put(jail, *t);
              }
            }
          }
          // An id also in unsaved_failures_ is written twice with the same
          // state: the log's latest row wins, so that is harmless.
          for (const auto& [jail, fails, changes] : taken) {
            for (const IpAddr& id : changes.upserts) {
              const Ticket* t = fails->Find(id);
              if (t == nullptr) {
                keep(store_->DelFailure(*jail, id.ToString()));
              } else {
                put(*jail, *t);
              }
            }
            for (const IpAddr& id : changes.removed) keep(store_->DelFailure(*jail, id.ToString()));
          }
          std::vector<SourcePosition> changed;
          for (const LiveSource& live : sources_) {
            changed.clear();
            live.source->Positions(/*changed_only=*/true, &changed);
            for (SourcePosition& p : changed) {
              JailState* js = FindJailById(p.subscriber);
              if (js == nullptr) continue;
              const std::string& jail = js->jail->name();
              if (const SavedPosition* file = std::get_if<SavedPosition>(&p.where)) {
                keep(store_->UpdateLog(jail, p.name, static_cast<int64_t>(file->pos),
                                       file->first_line_hash));
              } else {
                const TimePosition& tp = std::get<TimePosition>(p.where);
                keep(store_->UpdateJournal(jail, p.name, tp.time, tp.time_text));
              }
              positions.emplace_back(live.source.get(), std::move(p));
            }
          }
          // A write that failed on its own (not the transaction) must not
          // be kept for retry: Commit reports what aborted the batch.
          Status c = batch->Commit();
          if (!c.ok()) s = std::move(c);
        }
      }
      ++counters_.db_commits;
      if (!s.ok()) ++counters_.db_commits_failed;
      counters_.db_duration.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_started).count());
      if (s.ok()) {
        // What the turn logged so far (its Found lines) is written right
        // after the commit that saved it: a kill between the two is the
        // only way to lose or repeat a log line, and that window is two
        // system calls wide, not the rest of the turn.
        if (logger_) logger_->Flush();
        for (auto& [source, p] : positions) source->MarkSaved(p);
        if (commits_failed_ > 0) {
          Log(LogLevel::kNotice, "fail2ban.database",
              "Database writes work again: " + std::to_string(unsaved_bans_.size()) +
                  " ban(s) kept in memory since the first failure are now written");
        }
        rows_since_release_ += unsaved_bans_.size();
        for (const auto& [jail, ids] : unsaved_failures_) rows_since_release_ += ids.size();
        for (const auto& [jail, fails, changes] : taken) {
          rows_since_release_ += changes.upserts.size() + changes.removed.size();
        }
        unsaved_bans_.clear();
        unsaved_failures_.clear();
        taken.clear();
        commits_failed_ = 0;
        commit_error_.clear();
      } else {
        keep_unsaved_failures();
        ++commits_failed_;
        commit_retry_ms_ = now_ms + 1000;
        const bool news = s.message() != commit_error_;
        if (commits_failed_ == 1 || news || now_ms - commit_error_logged_ms_ >= 60000) {
          size_t windows = 0;
          for (const auto& [jail, ids] : unsaved_failures_) windows += ids.size();
          Log(LogLevel::kError, "fail2ban.database",
              "Cannot write to the database " + dbfile_ + ": " + s.message() + "; " +
                  std::to_string(unsaved_bans_.size()) + " ban(s) and " +
                  std::to_string(windows) +
                  " failure window(s) are kept in memory and written when it works again "
                  "(bans are enforced meanwhile; no log position is saved past them)");
          commit_error_logged_ms_ = now_ms;
          commit_error_ = s.message();
        }
      }
    }
    // Not written (no commit tried): kept for the next one.
    keep_unsaved_failures();
  }
  for (const DeferredBan& d : bans) {
    // A jail stopped by a reload in the same turn lifted its bans already.
    if (JailState* js = FindJailById(d.jail_id)) LogBan(*js, d.ticket);
  }
}

void ServerImpl::ForgetUnsavedBansLifted(JailState& js) {
  const std::string& name = js.jail->name();
  std::erase_if(unsaved_bans_, [&](const UnsavedBan& u) {
    return u.jail == name && js.jail->bans().Find(IpAddr::FromText(u.row.ip)) == nullptr;
  });
}

void ServerImpl::RestoreFailures(JailState& js) {
  FailManager& fails = js.jail->mutable_failures();
  if (!store_->enabled()) return;
  const JailConfig& c = js.jail->config();
  Result<std::vector<StoredFailure>> saved =
      store_->GetFailures(c.name, clock_.Now() - fails.findtime());
  if (!saved.ok()) {
    Log(LogLevel::kError, "fail2ban.database", "[" + c.name + "] " + saved.status().message());
  } else {
    for (StoredFailure& f : *saved) {
      Ticket t;
      t.id = IpAddr::FromText(f.ip);
      // Banned meanwhile (by `banip`, or restored): its failures went with
      // the ban.
      if (js.jail->bans().Find(t.id) != nullptr) continue;
      t.first_time = f.first_time;
      t.time = f.last_time;
      t.retry = static_cast<int>(f.retry);
      t.attempts = static_cast<int>(f.attempts);
      t.ban_count = static_cast<int>(f.ban_count);
      t.data.matches = std::move(f.data.matches);
      fails.Restore(std::move(t));
    }
    if (!saved->empty()) {
      Log(LogLevel::kInfo, "fail2ban.jail",
          "Jail '" + c.name + "': " + std::to_string(saved->size()) +
              " address(es) with failures inside findtime restored from the database");
    }
  }
  fails.set_track_changes(true);
}

void ServerImpl::ReadIn(const std::vector<JailState*>& jails) {
  // The file source first: a reload may have added files to it for jails
  // it rebuilt rather than started.
  std::vector<LineSource*> todo;
  auto add = [&](LineSource* s) {
    if (s != nullptr && std::find(todo.begin(), todo.end(), s) == todo.end()) todo.push_back(s);
  };
  add(files_.get());
  for (JailState* js : jails) {
    for (const std::shared_ptr<LineSource>& s : js->sources) add(s.get());
  }
  // What is there is read to its end at once, "not in operation".
  for (LineSource* s : todo) {
    s->set_max_bytes_per_pass(0);
    initial_read_ = true;
    Status p = s->Poll();
    initial_read_ = false;
    if (!p.ok()) Log(LogLevel::kError, s->log_component(), p.message());
    s->set_max_bytes_per_pass(kTailBytesPerTurn);
  }
}

bool ServerImpl::ReadingBacklog() const {
  return std::any_of(sources_.begin(), sources_.end(),
                     [](const LiveSource& l) { return l.source->has_backlog(); });
}

void ServerImpl::ScheduleBacklog() {
  if (backlog_scheduled_) return;
  if (!ReadingBacklog()) return;
  backlog_scheduled_ = true;
  loop_->AddTimer(0, [this] {
    backlog_scheduled_ = false;
    // A copy: reading may not change sources_, but be safe against it.
    std::vector<std::shared_ptr<LineSource>> live;
    for (const LiveSource& l : sources_) live.push_back(l.source);
    for (const std::shared_ptr<LineSource>& s : live) {
      if (s->has_backlog()) s->Continue();
    }
    ScheduleBacklog();
  });
}

void ServerImpl::EndActionTurns() {
  for (auto& js : jails_) {
    for (auto& a : js->actions) a->EndTurn();
  }
  for (Retired& r : retired_) r.action->EndTurn();
}

double ServerImpl::LineNow() {
  if (line_now_uses_ == 0) line_now_ = clock_.Now();
  if (++line_now_uses_ >= kLinesPerClockRead) line_now_uses_ = 0;
  return line_now_;
}

void ServerImpl::FlushTurn() {
  line_now_uses_ = 0;  // the next turn's lines read the clock again
  const bool burst = ReadingBacklog();
  if (burst && EventLoop::NowMs() - last_commit_ms_ < kBurstCommitMs) {
    // The turn's state waits for the next commit, and so do its log lines
    // (a crash before it reads them again, and must not have logged them).
    EndActionTurns();
    return;
  }
  ReportDeferredBans();
  EndActionTurns();
  if (logger_) logger_->Flush();
}

void ServerImpl::OnAlreadyBanned(const std::string& jail, const IpAddr& id) {
  if (!logger_ || !logger_->Enabled(LogLevel::kNotice)) return;
  std::string& m = message_scratch_;
  m.assign("[").append(jail).append("] ");
  m.append(id.ToString());
  m.append(" already banned");
  logger_->Log(LogLevel::kNotice, "fail2ban.actions", m);
}

void ServerImpl::OnUnban(const std::string& jail, const Ticket& t) {
  // A ban made earlier in this turn is reported (and its actions queued)
  // before its unban.
  if (!deferred_bans_.empty()) ReportDeferredBans();
  JailState* js = FindJail(jail);
  if (js == nullptr) return;
  ++js->counters->unbans[static_cast<size_t>(unban_cause_)];
  Log(LogLevel::kNotice, "fail2ban.actions", "[" + jail + "] Unban " + t.id.ToString());
  const BanInfo info = MakeBanInfo(*js, t);
  for (auto& a : js->actions) Submit(*js, *a, ActionOp::kUnban, info);
}

void ServerImpl::OnCovered(const std::string& jail, const Ticket& t, const IpAddr& by) {
  if (!deferred_bans_.empty()) ReportDeferredBans();
  JailState* js = FindJail(jail);
  if (js == nullptr) return;
  ++js->counters->unbans[static_cast<size_t>(UnbanCause::kAggregated)];
  Log(LogLevel::kNotice, "fail2ban.actions",
      "[" + jail + "] Unban " + t.id.ToString() + " (covered by " + by.ToString() + ")");
  // The prefix's record takes its place: a restart restores the prefix only.
  if (Status s = store_->DelBan(jail, t.id.ToString()); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", s.message());
  }
  const BanInfo info = MakeBanInfo(*js, t);
  for (auto& a : js->actions) Submit(*js, *a, ActionOp::kUnban, info);
}

void ServerImpl::OnWarning(const std::string& jail, const std::string& message) {
  Log(LogLevel::kWarning, "fail2ban.filter", "[" + jail + "] " + message);
}

bool ServerImpl::RunIgnoreCommand(const PendingIgnoreCommand& command,
                                  std::function<void(Result<int>)> done) {
  if (!pool_) return false;
  if (ignore_strands_.empty()) {
    for (int i = 0; i < 2; ++i) ignore_strands_.push_back(pool_->NewStrand());
  }
  const WorkerPool::StrandId strand = ignore_strands_[next_ignore_strand_++ % ignore_strands_.size()];
  pool_->Post(strand, [this, command, done = std::move(done)]() -> WorkerPool::Completion {
    Result<int> status = Run(command.command, command.env);
    return [done, status]() { done(status); };
  });
  return true;
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
  SpawnResult r = spawner_->Run(req);
  if (r.end != SpawnResult::End::kExited) return Status::Error(r.Describe(60));
  return r.exit_code;
}

void ServerImpl::OnLine(const SourceLine& line) {
  const std::string_view text = DecodeUtf8Replace(line.text, &scratch_);
  // One time for every jail: they share the line's date search. And one
  // for a batch of lines: they were read together, and the date
  // conversions of equal timestamps are then reused.
  const double now = LineNow();
  // The jails' filters know the line they share by this key instead of
  // comparing its bytes again.
  const uint64_t key = NewLineKey();
  const uint32_t origin = OriginId(line.origin);
  // The subscribers are sorted by id, and so, but for jails added at run
  // time out of order, is jails_ (ids are given in creation order): one
  // walk over both finds them, with the search for any it passed. An index,
  // not an iterator: nothing here may hold on across the jails' calls.
  size_t next = 0;
  for (SubscriberId id : *line.subscribers) {
    while (next < jails_.size() && jails_[next]->id < id) ++next;
    JailState* js =
        next < jails_.size() && jails_[next]->id == id ? jails_[next].get() : FindJailById(id);
    if (js == nullptr) continue;
    SourceCounters& sc = js->counters->Source(origin, line.origin);
    ++sc.lines;
    sc.bytes += line.text.size();
    sc.last_line = now;
    if (line.time) {
      js->jail->ProcessJournalLine(text, *line.time, line.date_text, now);
    } else {
      js->jail->ProcessLine(text, !initial_read_, now, key);
    }
  }
}

uint32_t ServerImpl::OriginId(std::string_view origin) {
  if (last_origin_ < origins_.size() && origins_[last_origin_] == origin) return last_origin_;
  for (uint32_t i = 0; i < origins_.size(); ++i) {
    if (origins_[i] == origin) return last_origin_ = i;
  }
  origins_.emplace_back(origin);
  return last_origin_ = static_cast<uint32_t>(origins_.size() - 1);
}

void ServerImpl::ServiceTimer() {
  for (auto& jsp : jails_) {
    JailState& js = *jsp;
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
  ReapRetiredActions();
  CompactFailures(/*force=*/false);
  CheckpointDatabase();
  ReleaseMemoryAfterBurst();
  if (store_->degraded() && EventLoop::NowMs() - degraded_logged_ms_ >= 60000) {
    degraded_logged_ms_ = EventLoop::NowMs();
    Log(LogLevel::kError, "fail2ban.database",
        store_->degraded_reason() + " (bans are kept in memory only until this is fixed and "
        "bantamd restarted)");
  }
  // A rotated log target is followed within a second even when the
  // rotation's postrotate did not tell us (fail2ban's logrotate snippet runs
  // fail2ban-client, which cannot speak to bantamd).
  if (Result<bool> moved = logger_->ReopenIfMoved(); !moved.ok()) {
    // Still written to the moved file, which stays open; said once.
    if (!log_reopen_failed_) Log(LogLevel::kError, "fail2ban.server", moved.status().message());
    log_reopen_failed_ = true;
  } else if (*moved) {
    log_reopen_failed_ = false;
    Log(LogLevel::kInfo, "fail2ban.server",
        "Log target " + logger_->target() + " was moved or deleted: reopened");
  }
}

void ServerImpl::ReapRetiredActions() {
  std::erase_if(retired_, [](const Retired& r) { return *r.stopped; });
}

void ServerImpl::CompactFailures(bool force) {
  if (!store_->enabled()) return;
  if (!force) {
    // Not in a burst (its commits would wait behind this), and only once
    // the log holds more superseded rows than live ones: the cost is a
    // pass over the table, paid once per as many appends.
    if (ReadingBacklog()) return;
    uint64_t held = 0;
    for (auto& js : jails_) held += js->jail->failures().size();
    if (store_->failure_rows_appended() < std::max<uint64_t>(kCompactAfterRows, 2 * held)) return;
  }
  if (Status s = store_->CompactFailures(); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", "compacting the failure windows: " + s.message());
  }
}

void ServerImpl::CheckpointDatabase() {
  if (!store_->enabled()) return;
  // In a burst the WAL grows (up to BanStore::kWalForceCheckpointPages);
  // its pages are copied once it is over, not a thousand pages at a time
  // inside the commits that release its bans.
  if (ReadingBacklog()) return;
  if (Status s = store_->Checkpoint(); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", s.message());
  }
}

// Rows a quiet period must follow before memory is given back: a trickle
// of failures leaves nothing worth a heap walk.
constexpr uint64_t kReleaseAfterRows = 1000;
// How long no commit must have run: the burst is over.
constexpr int64_t kReleaseQuietMs = 1000;

void ServerImpl::ReleaseMemoryAfterBurst() {
  if (rows_since_release_ < kReleaseAfterRows) return;
  if (EventLoop::NowMs() - last_commit_ms_ < kReleaseQuietMs) return;
  if (ReadingBacklog()) return;
  rows_since_release_ = 0;
  // A burst of 100,000 new addresses leaves about 5 MiB of SQLite pages
  // and 4 MiB of freed heap resident (bench/README.md, "memory"); both
  // come back at the next burst's cost of a few page faults.
  store_->ReleaseMemory();
  malloc_trim(0);
}

void ServerImpl::PurgeDatabase() {
  if (Status s = store_->Purge(static_cast<int64_t>(clock_.Now())); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", "purge: " + s.message());
  }
}

// How many restored bans are handed to the actions at a time (StartJail).
constexpr size_t kRestoreSlice = 8192;

void ServerImpl::UpdateKeepMatches() {
  auto reads = [](const JailState& js, bool other_jails) {
    return std::any_of(js.actions.begin(), js.actions.end(), [&](const auto& a) {
      return a == nullptr || a->may_read_matches(other_jails);
    });
  };
  const bool any_ipmatches = std::any_of(jails_.begin(), jails_.end(), [&](const auto& js) {
    return reads(*js, /*other_jails=*/true);
  });
  for (auto& js : jails_) {
    js->jail->mutable_failures().set_keep_matches(any_ipmatches || reads(*js, false));
  }
}

void ServerImpl::StartJail(JailState& js) {
  UpdateKeepMatches();
  for (auto& a : js.actions) {
    if (!a->start_on_demand()) Submit(js, *a, ActionOp::kStart, BanInfo{});
  }
  // Restore the bans still in force (the actions re-apply them unless they
  // are norestored).
  CurrentBansQuery q;
  q.jail = js.jail->name();
  q.now = static_cast<int64_t>(clock_.Now());
  const JailConfig& c = js.jail->config();
  if (!c.increment.increment) q.forbantime = static_cast<int64_t>(c.bantime);
  Result<std::vector<StoredBan>> bans = store_->GetCurrentBans(q);
  if (!bans.ok()) {
    Log(LogLevel::kError, "fail2ban.database", bans.status().message());
  } else {
    size_t n = 0;
    for (StoredBan& b : *bans) {
      Ticket t;
      t.id = IpAddr::FromText(b.ip);
      t.time = static_cast<double>(b.time);
      t.ban_time = static_cast<double>(b.bantime);
      t.ban_count = static_cast<int>(b.bancount);
      t.attempts = static_cast<int>(b.data.failures);
      t.data.matches = std::move(b.data.matches);
      js.jail->Restore(std::move(t));
      // Restored bans go to the actions in slices, so an action that
      // gathers them (nftables over netlink) applies one slice while this
      // thread restores the next.
      if (++n % kRestoreSlice == 0) {
        for (auto& a : js.actions) a->EndTurn();
      }
    }
  }
  // And the rest now, not after the other jails and the logs' backlog.
  for (auto& a : js.actions) a->EndTurn();
  RestoreFailures(js);
  Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + js.jail->name() + "' started");
}

void ServerImpl::StartJails() {
  for (auto& js : jails_) {
    StartJail(*js);
    AttachSources(*js);
  }
}

void ServerImpl::StopJail(JailState& js) {
  // Bans of this turn get their actions before the jail lifts them.
  ReportDeferredBans();
  // fail2ban's stop: lift every ban from the firewall (flush when the
  // action can), then actionstop. The bans stay in the database and come
  // back at the next start.
  std::vector<Ticket> bans = js.jail->mutable_bans().Flush();
  for (auto& a : js.actions) {
    if (a->has_flush() && !bans.empty()) {
      Submit(js, *a, ActionOp::kFlush, BanInfo{});
    } else {
      for (const Ticket& t : bans) Submit(js, *a, ActionOp::kUnban, MakeBanInfo(js, t));
    }
    Retire(js, std::move(a));
  }
  js.actions.clear();
  DetachSources(js);
  Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + js.jail->name() + "' stopped");
}

void ServerImpl::StopJails() {
  for (auto& js : jails_) StopJail(*js);
  WaitForActions();
}

void ServerImpl::WaitForActions() {
  // Every queued command is bounded by its timeout.
  EndActionTurns();
  while (pending_ops_ > 0) {
    pool_->WaitAndRunCompletions(50);
    mail_pool_->RunCompletions();
    EndActionTurns();
  }
  ReapRetiredActions();
}

Status ServerImpl::WritePidFile() {
  if (pidfile_.empty()) return Status::Ok();
  std::ofstream f(pidfile_, std::ios::trunc);
  if (!f) return Status::Error("cannot write pidfile " + PyRepr(pidfile_) + ": " + strerror(errno));
  f << ::getpid() << "\n";
  return Status::Ok();
}

Status ServerImpl::Run() {
  if (Status s = Start(); !s.ok()) return s;
  Status s = loop_->Run();
  Finish();
  return s;
}

Result<bool> ServerImpl::RunUntil(const std::function<bool()>& done,
                                  std::chrono::milliseconds timeout) {
  if (done()) return true;
  const int64_t end = EventLoop::NowMs() + timeout.count();
  bool reached = false;
  const EventLoop::TimerId check = loop_->AddTimer(10, [&] {
    reached = done();
    if (reached || EventLoop::NowMs() >= end) loop_->Stop();
  }, 10);
  Status s = loop_->Run();
  loop_->CancelTimer(check);
  if (!s.ok()) return s;
  return reached || done();
}

Status ServerImpl::Start() {
  Status s = loop_->HandleSignals(HandledSignals(), [this](int signo) {
    if (signo == SIGTERM || signo == SIGINT) {
      Log(LogLevel::kInfo, "fail2ban.server", "Shutdown in progress...");
      loop_->Stop();
    } else if (signo == SIGUSR1) {
      Result<std::string> r = logger_->Reopen();
      Log(LogLevel::kInfo, "fail2ban.server", r.ok() ? "Log " + *r : r.status().message());
    } else {
      Log(LogLevel::kInfo, "fail2ban.server", "Reloading the configuration (SIGHUP)");
      if (Status r = Reload(ReloadRequest{}); !r.ok()) {
        Log(LogLevel::kError, "fail2ban.server",
            "Reload failed, still running the previous configuration: " + r.message());
      }
    }
  });
  if (!s.ok()) return s;
  if (Status p = WritePidFile(); !p.ok()) return p;
  s = loop_->Watch(pool_->completion_fd(), [this](uint32_t) { pool_->RunCompletions(); });
  if (!s.ok()) return s;
  s = loop_->Watch(mail_pool_->completion_fd(), [this](uint32_t) { mail_pool_->RunCompletions(); });
  if (!s.ok()) return s;
  // The file source is on the loop from the start, jails or not (and its
  // poll comes before the service timer in a turn where both are due).
  if (s = RegisterSource(files_); !s.ok()) return s;
  // What a loop turn logged reaches the file in one write at its end.
  loop_->SetBeforeSleep([this] { FlushTurn(); });
  loop_->AddTimer(1000, [this] { ServiceTimer(); }, 1000);
  loop_->AddTimer(10000, [this] { SaveLogPositions(); }, 10000);
  // fail2ban purges bans older than dbpurgeage once an hour.
  loop_->AddTimer(3600 * 1000, [this] { PurgeDatabase(); }, 3600 * 1000);

  if (Status c = StartControl(); !c.ok()) return c;
  // What the last run appended and superseded goes before it is read.
  CompactFailures(/*force=*/true);
  StartJails();
  // Only now: the purge deletes jails marked disabled (fail2ban marks every
  // jail so at its stop) and, by cascade, their saved log positions. Before
  // the jails were enabled again it threw away the position fail2ban (or a
  // clean stop) had saved for a jail with no ban, and the log was re-read.
  PurgeDatabase();
  // The backlog of every log is read once, "not in operation": lines older
  // than findtime count for nothing, as in fail2ban. From then on a burst
  // is read a budget per loop turn: a 30 MB append leaves room between
  // turns for control clients and timers, and each turn's bans are
  // committed and acted on as they come.
  std::vector<JailState*> all;
  for (auto& js : jails_) all.push_back(js.get());
  ReadIn(all);
  ServiceTimer();
  StartFleet();
  running_ = true;
  Notify("READY=1");
  Log(LogLevel::kInfo, "fail2ban.server", "Server ready");
  return Status::Ok();
}

void ServerImpl::Notify(const char* state) {
  Result<bool> sent = NotifyServiceManager(state);
  if (!sent.ok()) Log(LogLevel::kDebug, "fail2ban.server", sent.status().message());
}

void ServerImpl::Finish() {
  StopControl();
  metrics_.reset();
  running_ = false;
  Notify("STOPPING=1");
  Log(LogLevel::kInfo, "fail2ban.server", "Stopping all jails");
  SaveLogPositions();
  fleet_.reset();
  // Bans still queued behind a slow or hanging action would hold up the
  // stop for their timeouts each; they are recorded, so they are dropped
  // here and applied at the next start. Running commands finish (bounded
  // by their timeout), and every unban, flush and actionstop still runs.
  const size_t abandoned = pool_->CancelQueued() + mail_pool_->CancelQueued();
  if (abandoned > 0) {
    Log(LogLevel::kWarning, "fail2ban.server",
        std::to_string(abandoned) + " queued ban operation(s) abandoned to stop in time; "
        "the bans are recorded and are applied again at the next start");
  }
  StopJails();
  Log(LogLevel::kInfo, "fail2ban.server", "Exiting Fail2ban");
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
Status Server::Start() { return impl_->Start(); }
Result<bool> Server::RunUntil(const std::function<bool()>& done,
                              std::chrono::milliseconds timeout) {
  return impl_->RunUntil(done, timeout);
}
void Server::Finish() { impl_->Finish(); }
void Server::Stop() { impl_->Stop(); }

}  // namespace bantam
