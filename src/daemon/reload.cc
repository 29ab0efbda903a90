// Configuration reload (SIGHUP, `bantam reload`): what fail2ban's
// reloadJails does, without stopping jails whose configuration did not
// change.
#include <algorithm>
#include <set>

#include "bantam/config_loader.h"
#include "bantam/failregex.h"
#include "bantam/option_list.h"
#include "server_impl.h"

namespace bantam {

Status ServerImpl::ApplyServerOptions(const OrderedMap<std::string>& server) {
  auto opt = [&](const char* name, const char* fallback) {
    const std::string* v = server.Find(name);
    return v ? *v : std::string(fallback);
  };
  Result<LogLevel> level = ParseLogLevel(opt("loglevel", "INFO"));
  if (!level.ok()) return level.status();
  const std::string target = opt("logtarget", "STDERR");
  if (target != logger_->target()) {
    Result<std::unique_ptr<Logger>> logger = Logger::Open(target, opt("syslogsocket", "auto"), *level);
    if (!logger.ok()) return logger.status();
    Log(LogLevel::kInfo, "fail2ban.server", "Changed logging target to " + target);
    logger_ = std::move(*logger);
  }
  logger_->set_level(*level);
  for (const char* key : {"dbfile", "socket", "pidfile"}) {
    const std::string* old_value = server_opts_.Find(key);
    const std::string* new_value = server.Find(key);
    if ((old_value ? *old_value : "") != (new_value ? *new_value : "")) {
      Log(LogLevel::kWarning, "fail2ban.server",
          std::string(key) + " changed: takes effect at the next restart");
    }
  }
  server_opts_ = server;
  return Status::Ok();
}

void ServerImpl::Transplant(JailState& from, JailState& to) {
  // The failure windows keep being saved: changes not yet written move too.
  to.jail->mutable_failures().set_track_changes(store_->enabled());
  to.jail->TakeStateFrom(*from.jail);
  to.evicted_logged = from.evicted_logged;

  // Actions whose options did not change keep running (and keep what they
  // know: started families, on-demand state); they get actionreload.
  std::vector<bool> reused(from.actions.size(), false);
  std::vector<bool> fresh(to.actions.size(), true);
  for (size_t i = 0; i < to.actions.size(); ++i) {
    for (size_t j = 0; j < from.actions.size(); ++j) {
      if (reused[j] || from.action_signatures[j] != to.action_signatures[i]) continue;
      to.actions[i] = std::move(from.actions[j]);
      reused[j] = true;
      fresh[i] = false;
      Submit(to, *to.actions[i], ActionOp::kReload, BanInfo{});
      break;
    }
  }
  // Actions gone from the jail lift their bans and stop.
  const std::vector<const Ticket*> bans = to.jail->bans().BansByEnd();
  for (size_t j = 0; j < from.actions.size(); ++j) {
    if (reused[j]) continue;
    Action& a = *from.actions[j];
    if (a.has_flush() && !bans.empty()) {
      Submit(from, a, ActionOp::kFlush, BanInfo{});
    } else {
      for (const Ticket* t : bans) Submit(from, a, ActionOp::kUnban, MakeBanInfo(to, *t));
    }
    Retire(from, std::move(from.actions[j]));
  }
  from.actions.clear();
  // New actions start and apply the bans in force.
  for (size_t i = 0; i < to.actions.size(); ++i) {
    if (!fresh[i]) continue;
    Action& a = *to.actions[i];
    if (!a.start_on_demand()) Submit(to, a, ActionOp::kStart, BanInfo{});
    for (const Ticket* t : bans) Submit(to, a, ActionOp::kBan, MakeBanInfo(to, *t));
  }
  // The new subscriptions first: a file both follow stays open and is not
  // read again from its saved position; a journal resumes after the last
  // entry `from` read.
  AttachSources(to, PositionsOf(from));
  DetachSources(from);
}

Status ServerImpl::Reload(const ReloadRequest& request) {
  Notify("RELOADING=1");
  // READY=1 and the metrics' reload count, whatever the outcome.
  struct Ready {
    ServerImpl* s;
    bool ok = false;
    ~Ready() {
      s->CountReload(ok);
      s->Notify("READY=1");
    }
  } ready{this};

  // The check's compiled regexes serve the jails rebuilt below.
  CheckedRegexes checked;
  Result<LoadedConfig> cfg = LoadCheckedConfig();
  if (!cfg.ok()) return cfg.status();
  LogDiagnostics(*cfg);
  std::vector<std::string> warnings;
  Result<std::vector<ConfiguredJail>> configured = ConfiguredJails(*cfg, &warnings);
  if (!configured.ok()) return configured.status();
  if (request.jail) {
    const bool known = FindJail(*request.jail) != nullptr ||
                       std::any_of(configured->begin(), configured->end(),
                                   [&](const ConfiguredJail& c) { return c.config.name == *request.jail; });
    if (!known) return Status::Error("Sorry but the jail '" + *request.jail + "' does not exist");
  }
  if (Status s = ApplyServerOptions(cfg->server); !s.ok()) return s;
  ApplyMetricsSettings(*cfg);
  for (const std::string& w : warnings) Log(LogLevel::kWarning, "fail2ban.server", w);
  SaveLogPositions();
  // Bans of this turn are reported by the jails that made them.
  ReportDeferredBans();

  auto selected = [&](const std::string& name) { return !request.jail || *request.jail == name; };
  std::set<std::string> names;
  for (const ConfiguredJail& c : *configured) names.insert(c.config.name);

  // Jails gone from the configuration stop.
  for (auto it = jails_.begin(); it != jails_.end();) {
    const std::string name = (*it)->jail->name();
    if (!selected(name) || names.count(name) != 0) {
      ++it;
      continue;
    }
    StopJail(**it);
    if (Status s = store_->DelJail(name); !s.ok()) Log(LogLevel::kError, "fail2ban.database", s.message());
    it = jails_.erase(it);
  }

  std::vector<JailState*> started;
  for (ConfiguredJail& c : *configured) {
    const std::string name = c.config.name;
    if (!selected(name)) continue;
    JailState* old = FindJail(name);
    if (old != nullptr && request.unban) {
      ReportDeferredBans();
      ScopedCause manual(this, BanCause::kManual, UnbanCause::kManual);
      for (const Ticket& t : old->jail->UnbanAll()) {
        if (Status s = store_->DelBan(name, t.id.ToString()); !s.ok()) {
          Log(LogLevel::kError, "fail2ban.database", s.message());
        }
      }
      ForgetUnsavedBansLifted(*old);
    }
    if (old != nullptr && !request.restart && old->signature == c.signature) {
      for (auto& a : old->actions) Submit(*old, *a, ActionOp::kReload, BanInfo{});
      continue;
    }
    Result<std::unique_ptr<JailState>> built = BuildJail(std::move(c.config), c.signature);
    if (!built.ok()) {
      // The jail keeps running as it was (or stays absent); the error is
      // logged with its location.
      continue;
    }
    JailState& fresh = **built;
    if (old == nullptr) {
      jails_.push_back(std::move(*built));
      StartJail(fresh);
      AttachSources(fresh);
      started.push_back(&fresh);
      continue;
    }
    auto slot = std::find_if(jails_.begin(), jails_.end(),
                             [&](const std::unique_ptr<JailState>& p) { return p.get() == old; });
    if (request.restart) {
      StopJail(*old);
      *slot = std::move(*built);
      StartJail(fresh);
      AttachSources(fresh);
      started.push_back(&fresh);
    } else {
      Transplant(*old, fresh);
      *slot = std::move(*built);
      Log(LogLevel::kInfo, "fail2ban.jail", "Jail '" + name + "' reloaded");
    }
  }
  UpdateKeepMatches();
  PruneCounters();
  // New logs are read like at start: their backlog "not in operation".
  ReadIn(started);
  Log(LogLevel::kInfo, "fail2ban.server", "Reload finished.");
  ready.ok = true;
  return Status::Ok();
}

}  // namespace bantam
