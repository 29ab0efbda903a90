// The fleet's place in bantamd (docs/fleet.md): configuration at start and
// the hooks a Fleet needs from the server. The fleet logic is in src/fleet.
#include "bantam/fleet.h"
#include "bantam/fleet_config.h"
#include "server_impl.h"

namespace bantam {

namespace {

// What the fleet applies from its peers reaches the server as a jail's
// events would, counted as the fleet's (bantam_bans_total{cause="fleet"}).
class FleetEvents : public JailEvents {
 public:
  explicit FleetEvents(ServerImpl* server) : server_(server) {}
  void OnFound(const std::string& jail, const IpAddr& id, double time) override {
    server_->OnFound(jail, id, time);
  }
  void OnIgnored(const std::string& jail, const IpAddr& id, const char* source) override {
    server_->OnIgnored(jail, id, source);
  }
  void OnBan(const std::string& jail, const Ticket& ticket) override {
    ServerImpl::ScopedCause fleet(server_, BanCause::kFleet, UnbanCause::kFleet);
    server_->OnBan(jail, ticket);
  }
  void OnAlreadyBanned(const std::string& jail, const IpAddr& id) override {
    server_->OnAlreadyBanned(jail, id);
  }
  void OnUnban(const std::string& jail, const Ticket& ticket) override {
    ServerImpl::ScopedCause fleet(server_, BanCause::kFleet, UnbanCause::kFleet);
    server_->OnUnban(jail, ticket);
  }
  void OnWarning(const std::string& jail, const std::string& message) override {
    server_->OnWarning(jail, message);
  }

 private:
  ServerImpl* server_;
};

}  // namespace

void ServerImpl::StartFleet() {
  std::vector<Diagnostic> diagnostics;
  FleetSettings settings = LoadFleetSettings(options_.basedir, /*read_secrets=*/true, &diagnostics);
  bool errors = false;
  for (const Diagnostic& d : diagnostics) {
    const bool error = d.severity == Diagnostic::Severity::kError;
    errors = errors || error;
    Log(error ? LogLevel::kError : LogLevel::kWarning, "fail2ban.fleet", d.message);
  }
  if (!settings.enabled) return;
  if (errors) {
    Log(LogLevel::kError, "fail2ban.fleet",
        "Fleet off: its configuration has errors (bantam -t shows them)");
    return;
  }
  FleetHooks hooks;
  hooks.find_jail = [this](const std::string& name) -> Jail* {
    JailState* js = FindJail(name);
    return js ? js->jail.get() : nullptr;
  };
  fleet_events_ = std::make_unique<FleetEvents>(this);
  hooks.events = fleet_events_.get();
  hooks.unban = [this](const std::string& name, const IpAddr& id) {
    JailState* js = FindJail(name);
    ScopedCause fleet(this, BanCause::kFleet, UnbanCause::kFleet);
    return js != nullptr && ControlUnban(*js, {id.ToString()}, nullptr, /*publish=*/false) > 0;
  };
  hooks.log = [this](FleetLogLevel level, const std::string& message) {
    LogLevel l = LogLevel::kInfo;
    if (level == FleetLogLevel::kNotice) l = LogLevel::kNotice;
    if (level == FleetLogLevel::kWarning) l = LogLevel::kWarning;
    if (level == FleetLogLevel::kError) l = LogLevel::kError;
    Log(l, "fail2ban.fleet", message);
  };
  Result<std::unique_ptr<Fleet>> fleet =
      Fleet::Start(std::move(settings), dbfile_, loop_.get(), clock_, std::move(hooks));
  if (!fleet.ok()) {
    Log(LogLevel::kError, "fail2ban.fleet", "Fleet off: " + fleet.status().message());
    return;
  }
  fleet_ = std::move(*fleet);
}

}  // namespace bantam
