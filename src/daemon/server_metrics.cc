// The daemon's Prometheus endpoint: the metrics settings, the counters'
// bookkeeping across reloads, and the exposition of every counter
// (daemon_metrics.h) and of the state the jails hold (failing and banned
// addresses). Everything runs on the event-loop thread.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "bantam/config_loader.h"
#include "server_impl.h"

namespace bantam {

const char* BanCauseName(BanCause cause) {
  switch (cause) {
    case BanCause::kMaxretry:
      return "maxretry";
    case BanCause::kManual:
      return "manual";
    case BanCause::kRestored:
      return "restored";
    case BanCause::kFleet:
      return "fleet";
    case BanCause::kRecidive:
      return "recidive";
    case BanCause::kAggregated:
      return "aggregated";
  }
  return "";
}

const char* UnbanCauseName(UnbanCause cause) {
  switch (cause) {
    case UnbanCause::kExpired:
      return "expired";
    case UnbanCause::kManual:
      return "manual";
    case UnbanCause::kFleet:
      return "fleet";
    case UnbanCause::kAggregated:
      return "aggregated";
  }
  return "";
}

size_t IgnoreReasonIndex(std::string_view source) {
  if (source == "ignoreself rule") return 1;
  for (size_t i = 0; i < kIgnoreReasons.size(); ++i) {
    if (source == kIgnoreReasons[i]) return i;
  }
  return kIgnoreReasons.size() - 1;
}

namespace {

// The process collector's usual series, from /proc.
struct ProcessStats {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double open_fds = 0;
  bool ok = false;
};

ProcessStats ReadProcessStats() {
  ProcessStats p;
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!std::getline(f, line)) return p;
  // Fields after the command name, which is in parentheses and may hold
  // spaces: state is field 3, utime 14, stime 15, rss 24.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return p;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string x; rest >> x;) fields.push_back(x);
  if (fields.size() < 22) return p;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  p.cpu_seconds = (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
  p.resident_bytes = std::stod(fields[21]) * page;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    int n = 0;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    p.open_fds = n - 1;  // not the one listing them
  }
  p.ok = true;
  return p;
}

}  // namespace

std::shared_ptr<JailCounters> ServerImpl::CountersFor(const JailConfig& config) {
  std::shared_ptr<JailCounters>& c = counters_.jails[config.name];
  if (!c) c = std::make_shared<JailCounters>();
  if (!ReadsJournal(config) && !ReadsAmi(config)) {
    // A logpath the reload removed takes its series with it; the others
    // show from the start, at 0.
    std::set<std::string> paths;
    for (const auto& [path, tail] : config.logpaths) paths.insert(path);
    c->KeepSources(paths);
    for (const std::string& p : paths) c->Source(p);
  }
  // The recidive jail: the stock one, or any jail reading bantam's own log.
  c->recidive = config.name == "recidive";
  if (logger_) {
    for (const auto& [path, tail] : config.logpaths) {
      if (path == logger_->target()) c->recidive = true;
    }
  }
  return c;
}

void ServerImpl::PruneCounters() {
  std::set<std::string, std::less<>> live;
  for (const auto& js : jails_) live.insert(js->jail->name());
  std::erase_if(counters_.jails, [&](const auto& kv) { return live.count(kv.first) == 0; });
  // Actions no longer in their jail take their series with them.
  for (const auto& js : jails_) {
    std::set<std::string, std::less<>> names;
    for (const auto& a : js->actions) {
      if (a) names.insert(a->name());
    }
    std::erase_if(js->counters->actions,
                  [&](const auto& kv) { return names.count(kv.first) == 0; });
  }
}

void ServerImpl::CountReload(bool ok) {
  ++counters_.reloads;
  counters_.last_reload_ok = ok;
  if (ok) {
    counters_.last_reload_success = SystemClock().Now();
  } else {
    ++counters_.reloads_failed;
  }
}

void ServerImpl::OnNftTransaction(const std::string& jail, const std::string& action,
                                  size_t elements, double seconds, bool ok) {
  JailCounters* c = counters_.Find(jail);
  if (c == nullptr) return;
  ActionCounters& a = c->actions[action];
  ++a.nft_transactions;
  if (!ok) ++a.nft_failed;
  a.nft_elements.Observe(static_cast<double>(elements));
  a.nft_duration.Observe(seconds);
}

void ServerImpl::ApplyMetricsSettings(const LoadedConfig& cfg) {
  const std::string* m = cfg.extensions.Find("metrics");
  const std::string* r = cfg.extensions.Find("metrics_allow_remote");
  Result<MetricsSettings> settings = ParseMetricsSettings(m ? *m : "", r ? *r : "");
  if (!settings.ok()) {
    // CheckConfig reported it with its location; the endpoint stays as it was.
    return;
  }
  std::optional<MetricsListen> want;
  if (settings->enabled) want = settings->listen;
  const auto same = [](const std::optional<MetricsListen>& a, const std::optional<MetricsListen>& b) {
    return a.has_value() == b.has_value() && (!a || a->ToString() == b->ToString());
  };
  if (same(want, metrics_listen_) && (metrics_ || !want)) return;
  if (metrics_) {
    Log(LogLevel::kInfo, "bantam.metrics",
        "Metrics endpoint " + metrics_->listen().ToString() + " closed");
  }
  metrics_.reset();
  metrics_listen_ = want;
  if (!want) return;
  MetricsServer::Options o;
  o.listen = *want;
  Result<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(
      loop_.get(), std::move(o),
      [this](ExpositionFormat format, std::string* out) { RenderMetrics(format, out); });
  if (!server.ok()) {
    // The jails run without it: metrics are never a reason to leave the
    // host unprotected.
    Log(LogLevel::kError, "bantam.metrics", server.status().message());
    return;
  }
  metrics_ = std::move(*server);
  Log(LogLevel::kInfo, "bantam.metrics",
      "Metrics endpoint " + want->ToString() + ", GET /metrics");
}

void ServerImpl::RenderMetrics(ExpositionFormat format, std::string* out) {
  out->reserve(16384 + jails_.size() * 4096);
  ExpositionWriter w(format, out);
  using T = MetricType;

  w.Family("bantam_build_info", T::kGauge,
           "bantam's version, and the fail2ban release whose semantics it follows.");
  w.Sample({{"version", BANTAM_VERSION}, {"fail2ban_version", kFail2banCompatVersion}},
           uint64_t{1});
  w.Family("process_start_time_seconds", T::kGauge,
           "Start time of the process since unix epoch in seconds.");
  w.Sample({}, counters_.start_time);
  if (const ProcessStats p = ReadProcessStats(); p.ok) {
    w.Family("process_cpu_seconds", T::kCounter, "Total user and system CPU time spent in seconds.");
    w.Sample({}, p.cpu_seconds);
    w.Family("process_resident_memory_bytes", T::kGauge, "Resident memory size in bytes.");
    w.Sample({}, p.resident_bytes);
    w.Family("process_open_fds", T::kGauge, "Number of open file descriptors.");
    w.Sample({}, p.open_fds);
  }

  w.Family("bantam_config_reloads", T::kCounter,
           "Configuration reloads (SIGHUP, bantam reload), by result.");
  w.Sample({{"result", "success"}}, counters_.reloads - counters_.reloads_failed);
  w.Sample({{"result", "failure"}}, counters_.reloads_failed);
  w.Family("bantam_config_last_reload_successful", T::kGauge,
           "Whether the last configuration reload succeeded (1 before any reload).");
  w.Sample({}, uint64_t{counters_.last_reload_ok ? 1u : 0u});
  w.Family("bantam_config_last_reload_success_timestamp_seconds", T::kGauge,
           "When the configuration was last loaded successfully (start or reload).");
  w.Sample({}, counters_.last_reload_success);

  w.Family("bantam_db_transactions", T::kCounter,
           "Ban database transactions (one per loop turn with something to save), by result.");
  w.Sample({{"result", "success"}}, counters_.db_commits - counters_.db_commits_failed);
  w.Sample({{"result", "failure"}}, counters_.db_commits_failed);
  w.Family("bantam_db_transaction_duration_seconds", T::kHistogram,
           "Time one ban database transaction took.");
  w.Sample({}, counters_.db_duration);

  if (metrics_) {
    w.Family("bantam_metrics_scrapes", T::kCounter, "Answers to GET /metrics before this one.");
    w.Sample({}, metrics_->scrapes());
    w.Family("bantam_metrics_last_render_seconds", T::kGauge,
             "Time the previous answer to GET /metrics took to write (on the event loop).");
    w.Sample({}, metrics_->last_render_seconds());
  }

  w.Family("bantam_jails", T::kGauge, "Jails running.");
  w.Sample({}, static_cast<uint64_t>(jails_.size()));

  // Per jail, each family over every jail, in the order they run.
  std::vector<const JailState*> jails;
  for (const auto& js : jails_) {
    if (js->counters) jails.push_back(js.get());
  }
  auto each = [&](auto&& f) {
    for (const JailState* js : jails) f(*js, *js->counters, js->jail->name());
  };

  w.Family("bantam_source_lines_read", T::kCounter,
           "Log lines a jail read from a source (file, journal, AMI).");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (const SourceCounters& s : c.sources) w.Sample({{"jail", jail}, {"source", s.origin}}, s.lines);
  });
  w.Family("bantam_source_read_bytes", T::kCounter,
           "Bytes of the log lines a jail read from a source, line ends excluded.");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (const SourceCounters& s : c.sources) w.Sample({{"jail", jail}, {"source", s.origin}}, s.bytes);
  });
  w.Family("bantam_source_last_line_timestamp_seconds", T::kGauge,
           "When a jail last read a line from a source (absent until the first line).");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (const SourceCounters& s : c.sources) {
      if (s.last_line > 0) w.Sample({{"jail", jail}, {"source", s.origin}}, s.last_line);
    }
  });

  w.Family("bantam_failures", T::kCounter,
           "Failures found in the logs and counted (not ignored).");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    w.Sample({{"jail", jail}}, c.failures);
  });
  w.Family("bantam_ignored_failures", T::kCounter,
           "Failures not counted, by reason: ignoreip (ip), ignoreself (self), dns, "
           "ignorecommand (command), a cached answer (cache).");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (size_t i = 0; i < kIgnoreReasons.size(); ++i) {
      w.Sample({{"jail", jail}, {"reason", kIgnoreReasons[i]}}, c.ignored[i]);
    }
  });
  w.Family("bantam_failing_addresses", T::kGauge,
           "Addresses with failures inside findtime, not banned.");
  each([&](const JailState& js, const JailCounters&, const std::string& jail) {
    w.Sample({{"jail", jail}}, static_cast<uint64_t>(js.jail->failures().size()));
  });
  w.Family("bantam_bans", T::kCounter,
           "Bans, by cause: maxretry, manual (banip), restored (from the database at start), "
           "fleet, recidive (maxretry in a jail reading bantam's own log).");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (size_t i = 0; i < kBanCauses; ++i) {
      w.Sample({{"jail", jail}, {"cause", BanCauseName(static_cast<BanCause>(i))}}, c.bans[i]);
    }
  });
  w.Family("bantam_unbans", T::kCounter,
           "Bans lifted, by cause: expired (bantime over), manual (unban), fleet.");
  each([&](const JailState&, const JailCounters& c, const std::string& jail) {
    for (size_t i = 0; i < kUnbanCauses; ++i) {
      w.Sample({{"jail", jail}, {"cause", UnbanCauseName(static_cast<UnbanCause>(i))}},
               c.unbans[i]);
    }
  });
  w.Family("bantam_banned_addresses", T::kGauge, "Addresses currently banned.");
  each([&](const JailState& js, const JailCounters&, const std::string& jail) {
    w.Sample({{"jail", jail}}, static_cast<uint64_t>(js.jail->bans().size()));
  });

  // Actions: those the jail runs now, with their counters (kept by name).
  struct LiveAction {
    const std::string* jail;
    const Action* action;
    const ActionCounters* c;
  };
  std::vector<LiveAction> actions;
  static const ActionCounters kNone;
  for (const JailState* js : jails) {
    for (const auto& a : js->actions) {
      if (!a) continue;
      auto it = js->counters->actions.find(a->name());
      actions.push_back({&js->jail->name(), a.get(),
                         it == js->counters->actions.end() ? &kNone : &it->second});
    }
  }
  // ban and unban always; other operations once they ran.
  auto op_samples = [&](std::array<uint64_t, kActionOps> ActionCounters::*values) {
    for (const LiveAction& a : actions) {
      for (size_t op = 0; op < kActionOps; ++op) {
        const bool always = op == static_cast<size_t>(ActionOp::kBan) ||
                            op == static_cast<size_t>(ActionOp::kUnban);
        if (!always && a.c->runs[op] == 0) continue;
        w.Sample({{"jail", *a.jail},
                  {"action", a.action->name()},
                  {"operation", ActionOpName(static_cast<ActionOp>(op))}},
                 (a.c->*values)[op]);
      }
    }
  };
  w.Family("bantam_action_runs", T::kCounter,
           "Action operations completed (ban, unban, start, stop, ...), by jail and action.");
  op_samples(&ActionCounters::runs);
  w.Family("bantam_action_errors", T::kCounter, "Action operations that failed.");
  op_samples(&ActionCounters::errors);
  w.Family("bantam_action_duration_seconds", T::kHistogram,
           "Time from an action operation's submission to its completion, queueing included.");
  for (const LiveAction& a : actions) {
    w.Sample({{"jail", *a.jail}, {"action", a.action->name()}}, a.c->duration);
  }
  auto native = [](const Action* a) { return std::string_view(a->kind()) == "nftables netlink"; };
  w.Family("bantam_nft_transactions", T::kCounter,
           "Netlink transactions of set elements made by native nftables actions.");
  for (const LiveAction& a : actions) {
    if (native(a.action)) w.Sample({{"jail", *a.jail}, {"action", a.action->name()}}, a.c->nft_transactions);
  }
  w.Family("bantam_nft_transaction_failures", T::kCounter,
           "Netlink transactions of set elements the kernel refused as a whole.");
  for (const LiveAction& a : actions) {
    if (native(a.action)) w.Sample({{"jail", *a.jail}, {"action", a.action->name()}}, a.c->nft_failed);
  }
  w.Family("bantam_nft_transaction_elements", T::kHistogram,
           "Set elements (bans and unbans) per netlink transaction.");
  for (const LiveAction& a : actions) {
    if (native(a.action)) w.Sample({{"jail", *a.jail}, {"action", a.action->name()}}, a.c->nft_elements);
  }
  w.Family("bantam_nft_transaction_duration_seconds", T::kHistogram,
           "Time one netlink transaction of set elements took.");
  for (const LiveAction& a : actions) {
    if (native(a.action)) w.Sample({{"jail", *a.jail}, {"action", a.action->name()}}, a.c->nft_duration);
  }
  w.Finish();
}

}  // namespace bantam
