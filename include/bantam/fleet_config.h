// FleetConfig: bantam's fleet options (docs/fleet.md), which fail2ban does
// not know and the command stream does not carry. They are read from the
// same files as the rest of the configuration:
//   fail2ban.conf/.local  [Fleet]  redis, db, username, password_file,
//                                  node, stream, key_file, maxlen
//   jail.conf/.local      per jail (or [DEFAULT]): fleet = share|publish|
//                                  apply|no, fleet_failures = yes|no
// Every bad value is a diagnostic located at the line that set it.
#ifndef BANTAM_FLEET_CONFIG_H_
#define BANTAM_FLEET_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bantam/config_loader.h"

namespace bantam {

// fleet = ...: whether the jail sends its bans to the fleet and whether it
// takes the fleet's bans for the jail of the same name.
enum class FleetMode { kNo, kShare, kPublish, kApply };
const char* FleetModeName(FleetMode mode);
inline bool FleetPublishes(FleetMode m) { return m == FleetMode::kShare || m == FleetMode::kPublish; }
inline bool FleetApplies(FleetMode m) { return m == FleetMode::kShare || m == FleetMode::kApply; }

struct FleetJailSettings {
  FleetMode mode = FleetMode::kNo;
  bool failures = false;  // fleet_failures
};

struct FleetSettings {
  bool enabled = false;  // [Fleet] redis is set
  // redis = HOST:PORT, or unix:/path.
  std::string redis;
  std::string host;
  int port = 6379;
  std::string unix_path;
  int db = 0;
  std::string username;
  std::string password;  // read from password_file
  std::string node;      // default: the host name
  std::string stream = "bantam:bans";
  std::string key;       // the shared secret, read from key_file
  int64_t maxlen = 100000;  // XADD MAXLEN ~ bound
  std::map<std::string, FleetJailSettings> jails;  // only jails not "no"

  FleetMode ModeOf(const std::string& jail) const {
    auto it = jails.find(jail);
    return it == jails.end() ? FleetMode::kNo : it->second.mode;
  }
  // fleet_failures: where the failures go, trimmed to findtime.
  std::string failures_stream() const { return stream + ":failures"; }
  bool SharesFailures(const std::string& jail) const {
    auto it = jails.find(jail);
    return it != jails.end() && it->second.failures;
  }
  // "unix:/run/redis/redis.sock" or "host:port", for messages.
  std::string Where() const { return redis; }
};

// Reads the fleet options of the configuration under `basedir` and appends
// a diagnostic per problem ("file:line: message"): errors for values that
// cannot be used, warnings for a password file others may read. Secrets
// (key_file, password_file) are read only with `read_secrets` (bantamd;
// `bantam -t` checks only that they are there and readable).
FleetSettings LoadFleetSettings(const std::string& basedir, bool read_secrets,
                                std::vector<Diagnostic>* diagnostics);

}  // namespace bantam

#endif  // BANTAM_FLEET_CONFIG_H_
