// Fleet: the event loop's side of bantamd's fleet (docs/fleet.md). It
// keeps the outbox (FleetStore) and hands it to the FleetLink's publisher;
// it takes the entries the FleetLink's reader checked, and applies them to
// the jails of the same name through the same path as a local ban, except
// that the jail's ignoreself/ignoreip/ignorecommand come first, the ban
// time is what is left of the origin's, and the ban is never published
// again. The cursor (last entry applied) is saved after the turn that
// applied it has written its bans.
//
// Single-threaded: every method runs on the loop thread. `loop`, `clock`
// and what `hooks` refer to must outlive the Fleet.
#ifndef BANTAM_FLEET_H_
#define BANTAM_FLEET_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bantam/clock.h"
#include "bantam/event_loop.h"
#include "bantam/fleet_config.h"
#include "bantam/fleet_link.h"
#include "bantam/fleet_store.h"
#include "bantam/jail.h"
#include "bantam/value.h"

namespace bantam {

enum class FleetLogLevel { kInfo, kNotice, kWarning, kError };

struct FleetHooks {
  // The running jail of that name, or nullptr.
  std::function<Jail*(const std::string&)> find_jail;
  // Receives the bans the fleet makes (OnBan) and addresses it ignores.
  JailEvents* events = nullptr;
  // Lifts a ban of `jail` as the operator's unbanip would (firewall and
  // database), without publishing it; true when it was banned.
  std::function<bool(const std::string& jail, const IpAddr& id)> unban;
  std::function<void(FleetLogLevel, const std::string&)> log;
};

class Fleet {
 public:
  // Opens the outbox in `dbfile`, queues what it holds, and starts the
  // link from the saved cursor.
  static Result<std::unique_ptr<Fleet>> Start(FleetSettings settings, const std::string& dbfile,
                                              EventLoop* loop, const Clock& clock, FleetHooks hooks);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // A ban is being logged and acted on: publishes it when it is a new
  // local ban of a publishing jail. Returns the note for its log line:
  // " (fleet: NODE)" for a ban the fleet made, "" otherwise.
  std::string BanReported(const std::string& jail, const Ticket& ticket);
  // The operator lifted `id` in `jail` (unbanip, unban): published for a
  // publishing jail.
  void OperatorUnban(const std::string& jail, const IpAddr& id);
  // A failure the jail counted (fleet_failures = yes): published to the
  // failure stream, where it counts towards maxretry on the other nodes
  // for the jail's findtime. Not kept in the outbox: a failure Redis did
  // not take while it was down is lost (it was counted here).
  void FailureFound(const std::string& jail, const IpAddr& id, double time);

  FleetMode ModeOf(const std::string& jail) const { return settings_.ModeOf(jail); }
  const FleetSettings& settings() const { return settings_; }
  // For `bantam status`: (name, value) pairs.
  Value::List StatusPairs() const;

  struct Counters {
    uint64_t published = 0;
    uint64_t applied = 0;      // bans made here from the fleet
    uint64_t unbanned = 0;     // bans lifted here by a fleet unban
    uint64_t expired = 0;      // entries whose ban was over when read
    uint64_t ignored = 0;      // by ignoreself/ignoreip/ignorecommand
    uint64_t duplicate = 0;    // already banned here
    uint64_t not_applied = 0;  // jail with fleet = no or publish here
    uint64_t unknown_jail = 0;
    uint64_t dropped = 0;      // malformed, oversized, unsigned, bad mac
    uint64_t failures_sent = 0;     // fleet_failures published
    uint64_t failures_counted = 0;  // other nodes' failures counted here
  };
  const Counters& counters() const { return counters_; }

 private:
  Fleet(FleetSettings settings, EventLoop* loop, const Clock& clock, FleetHooks hooks);
  void Queue(FleetEntry entry);
  void FlushOutbox();
  void OnNotify();
  void Apply(const std::string& id, const FleetEntry& e);
  void ApplyFailure(const FleetEntry& e);
  // Logs `message` as a warning unless one of `kind` was logged in the
  // last minute; then it only counts, and the next one says how many.
  void Warn(const std::string& kind, const std::string& message, uint64_t count = 1);
  void Log(FleetLogLevel level, const std::string& message) {
    if (hooks_.log) hooks_.log(level, message);
  }

  FleetSettings settings_;
  EventLoop* loop_;
  const Clock& clock_;
  FleetHooks hooks_;
  std::unique_ptr<FleetStore> store_;
  std::unique_ptr<FleetLink> link_;
  std::vector<FleetEntry> unsaved_;  // queued this turn, written by FlushOutbox
  bool flush_scheduled_ = false;
  size_t outbox_size_ = 0;
  std::string last_applied_;
  std::string cursor_to_save_;
  bool cursor_save_scheduled_ = false;
  // Origin node of the fleet's bans not yet reported, by (jail, address).
  std::map<std::pair<std::string, std::string>, std::string> origins_;
  struct WarnState {
    int64_t logged_ms = -1;
    uint64_t suppressed = 0;
  };
  std::map<std::string, WarnState> warned_;
  Counters counters_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bantam

#endif  // BANTAM_FLEET_H_
