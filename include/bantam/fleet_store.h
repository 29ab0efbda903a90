// FleetStore: what the fleet keeps in bantamd's SQLite database, beside the
// ban tables (its own connection to the same file, WAL):
//   fleet_outbox  local bans and operator unbans not yet in Redis, in order;
//                 a row leaves once XADD took it, so bans made while Redis
//                 is down (or before a crash) are published later.
//   fleet_cursor  per stream, the id of the last entry applied here: a
//                 restart or kill -9 resumes after it.
// dbfile None or :memory: keeps both in memory for the process's life.
//
// Not thread-safe: used on the event-loop thread only.
#ifndef BANTAM_FLEET_STORE_H_
#define BANTAM_FLEET_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bantam/fleet_entry.h"
#include "bantam/status.h"

struct sqlite3;

namespace bantam {

class FleetStore {
 public:
  static Result<std::unique_ptr<FleetStore>> Open(const std::string& dbfile);
  ~FleetStore();
  FleetStore(const FleetStore&) = delete;
  FleetStore& operator=(const FleetStore&) = delete;

  // Appends `entries` in one transaction; returns their row ids, in order.
  Result<std::vector<int64_t>> AddOutbox(const std::vector<FleetEntry>& entries);
  Status DeleteOutbox(const std::vector<int64_t>& ids);
  // Every row waiting, oldest first.
  Result<std::vector<std::pair<int64_t, FleetEntry>>> Outbox();
  // "" when nothing was applied yet.
  Result<std::string> Cursor(const std::string& stream);
  Status SetCursor(const std::string& stream, const std::string& id);

 private:
  explicit FleetStore(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  sqlite3* db_;
};

}  // namespace bantam

#endif  // BANTAM_FLEET_STORE_H_
