#include "bantam/fleet_store.h"

#include <sqlite3.h>

namespace bantam {

namespace {

// Prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

Status DbError(sqlite3* db, const std::string& what) {
  return Status::Error("fleet database: " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

Result<std::unique_ptr<FleetStore>> FleetStore::Open(const std::string& dbfile) {
  const bool memory = dbfile.empty() || dbfile == "None" || dbfile == ":memory:";
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(memory ? ":memory:" : dbfile.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::Error("fleet database " + dbfile + ": " + msg);
  }
  // The ban store holds the file too: wait for its transactions.
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<FleetStore> s(new FleetStore(db));
  if (!memory) {
    if (Status st = s->Exec("PRAGMA journal_mode = WAL"); !st.ok()) return st;
    if (Status st = s->Exec("PRAGMA synchronous = NORMAL"); !st.ok()) return st;
  }
  if (Status st = s->Exec(
          "CREATE TABLE IF NOT EXISTS fleet_outbox(id INTEGER PRIMARY KEY AUTOINCREMENT,"
          " op TEXT NOT NULL, jail TEXT NOT NULL, ip TEXT NOT NULL, left INTEGER NOT NULL,"
          " count INTEGER NOT NULL, time REAL NOT NULL)");
      !st.ok())
    return st;
  if (Status st = s->Exec("CREATE TABLE IF NOT EXISTS fleet_cursor(stream TEXT PRIMARY KEY,"
                          " last_id TEXT NOT NULL)");
      !st.ok())
    return st;
  return s;
}

FleetStore::~FleetStore() { sqlite3_close(db_); }

Status FleetStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "error";
    sqlite3_free(err);
    return Status::Error(std::string("fleet database: ") + msg);
  }
  return Status::Ok();
}

Result<std::vector<int64_t>> FleetStore::AddOutbox(const std::vector<FleetEntry>& entries) {
  std::vector<int64_t> ids;
  if (entries.empty()) return ids;
  if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  Stmt st(db_, "INSERT INTO fleet_outbox(op, jail, ip, left, count, time) VALUES(?,?,?,?,?,?)");
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return DbError(db_, "insert");
  }
  for (const FleetEntry& e : entries) {
    sqlite3_reset(st.get());
    sqlite3_bind_text(st.get(), 1, FleetOpName(e.op), -1, SQLITE_STATIC);
    sqlite3_bind_text(st.get(), 2, e.jail.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.get(), 3, e.ip.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st.get(), 4, e.left);
    sqlite3_bind_int64(st.get(), 5, e.count);
    sqlite3_bind_double(st.get(), 6, e.time);
    if (sqlite3_step(st.get()) != SQLITE_DONE) {
      Status err = DbError(db_, "insert");
      (void)Exec("ROLLBACK");
      return err;
    }
    ids.push_back(sqlite3_last_insert_rowid(db_));
  }
  if (Status s = Exec("COMMIT"); !s.ok()) {
    (void)Exec("ROLLBACK");
    return s;
  }
  return ids;
}

Status FleetStore::DeleteOutbox(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::Ok();
  if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  Stmt st(db_, "DELETE FROM fleet_outbox WHERE id = ?");
  for (int64_t id : ids) {
    sqlite3_reset(st.get());
    sqlite3_bind_int64(st.get(), 1, id);
    if (sqlite3_step(st.get()) != SQLITE_DONE) {
      Status err = DbError(db_, "delete");
      (void)Exec("ROLLBACK");
      return err;
    }
  }
  return Exec("COMMIT");
}

Result<std::vector<std::pair<int64_t, FleetEntry>>> FleetStore::Outbox() {
  std::vector<std::pair<int64_t, FleetEntry>> out;
  Stmt st(db_, "SELECT id, op, jail, ip, left, count, time FROM fleet_outbox ORDER BY id");
  if (!st.ok()) return DbError(db_, "outbox");
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    FleetEntry e;
    auto text = [&](int col) {
      const unsigned char* t = sqlite3_column_text(st.get(), col);
      return std::string(t ? reinterpret_cast<const char*>(t) : "");
    };
    const std::string op = text(1);
    e.op = op == "unban" ? FleetOp::kUnban : op == "fail" ? FleetOp::kFail : FleetOp::kBan;
    e.jail = text(2);
    e.ip = text(3);
    e.left = sqlite3_column_int64(st.get(), 4);
    e.count = sqlite3_column_int64(st.get(), 5);
    e.time = sqlite3_column_double(st.get(), 6);
    out.emplace_back(sqlite3_column_int64(st.get(), 0), std::move(e));
  }
  return out;
}

Result<std::string> FleetStore::Cursor(const std::string& stream) {
  Stmt st(db_, "SELECT last_id FROM fleet_cursor WHERE stream = ?");
  if (!st.ok()) return DbError(db_, "cursor");
  sqlite3_bind_text(st.get(), 1, stream.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.get()) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st.get(), 0);
    return std::string(t ? reinterpret_cast<const char*>(t) : "");
  }
  return std::string();
}

Status FleetStore::SetCursor(const std::string& stream, const std::string& id) {
  Stmt st(db_, "INSERT INTO fleet_cursor(stream, last_id) VALUES(?, ?)"
               " ON CONFLICT(stream) DO UPDATE SET last_id = excluded.last_id");
  if (!st.ok()) return DbError(db_, "cursor");
  sqlite3_bind_text(st.get(), 1, stream.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.get(), 2, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.get()) != SQLITE_DONE) return DbError(db_, "cursor");
  return Status::Ok();
}

}  // namespace bantam
