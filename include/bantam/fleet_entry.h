// FleetEntry: one ban or unban as it travels between bantamd nodes through
// a Redis stream (docs/fleet.md). An entry is a flat list of field/value
// pairs, as XADD takes them:
//   v=1 op=ban|unban|fail node=pbx2 jail=asterisk ip=203.0.113.9
//   left=3600 count=1 time=1733450000.25 mac=<hex HMAC-SHA256>
// `left` is the ban time that was left at `time` (seconds; -1: permanent);
// for a failure (op=fail, fleet_failures), how long it counts: the
// origin jail's findtime.
// The MAC covers every other field, length-prefixed in that fixed order,
// under the fleet's shared secret (key_file): whoever can write to Redis
// but does not hold the secret cannot ban or unban anything.
//
// Pure functions, no I/O; thread-safe.
#ifndef BANTAM_FLEET_ENTRY_H_
#define BANTAM_FLEET_ENTRY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantam/status.h"

namespace bantam {

enum class FleetOp { kBan, kUnban, kFail };
const char* FleetOpName(FleetOp op);

struct FleetEntry {
  FleetOp op = FleetOp::kBan;
  std::string node;
  std::string jail;
  std::string ip;
  int64_t left = 0;  // seconds of ban left at `time`; -1: permanent
  int64_t count = 1;  // the origin's ban count for the address
  double time = 0;    // when it was published (origin's clock, epoch seconds)
};

using FleetFields = std::vector<std::pair<std::string, std::string>>;

// Limits a decoded entry must keep (anything larger is refused unread).
inline constexpr size_t kFleetMaxFields = 16;
inline constexpr size_t kFleetMaxValue = 256;

// The entry's fields, `mac` last, signed with `key`.
FleetFields EncodeFleetEntry(const FleetEntry& entry, std::string_view key);

// Checks and parses an entry read from the stream. Errors say why it is
// dropped, and start with one of the reasons "malformed", "oversized",
// "unsigned" (no mac) or "bad mac", so the caller can count them apart.
Result<FleetEntry> DecodeFleetEntry(const FleetFields& fields, std::string_view key);

// Loads libcrypto (once; shared_library.h): what the MACs need. An error
// names the missing library and its package.
Status LoadFleetCrypto();

// Lower-case hex HMAC-SHA256 of `data` under `key` (libcrypto).
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// Whether `text` may be a node or jail name in an entry: 1 to 64 bytes of
// letters, digits and "._-@:".
bool ValidFleetName(std::string_view text);

}  // namespace bantam

#endif  // BANTAM_FLEET_ENTRY_H_
