#include "bantam/ban_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <unordered_map>
#include <utility>

#include "bantam/utf8.h"

namespace bantam {
namespace {

constexpr int kSchemaVersion = 4;
// Python's sqlite3 waits 5 s for a lock by default; fail2ban inherits that.
constexpr int kBusyTimeoutMs = 5000;

// fail2ban 1.0's schema, statement for statement. The text must stay the
// same: fail2ban re-runs these with IF NOT EXISTS, and sqlite_master keeps
// the text an operator sees with `.schema`.
constexpr const char* kCreateFail2banDb = "CREATE TABLE IF NOT EXISTS fail2banDb(version INTEGER);";
constexpr const char* kCreateJails =
    "CREATE TABLE IF NOT EXISTS jails("
    "name TEXT NOT NULL UNIQUE, "
    "enabled INTEGER NOT NULL DEFAULT 1"
    ");"
    "CREATE INDEX IF NOT EXISTS jails_name ON jails(name);";
constexpr const char* kCreateLogs =
    "CREATE TABLE IF NOT EXISTS logs("
    "jail TEXT NOT NULL, "
    "path TEXT, "
    "firstlinemd5 TEXT, "
    "lastfilepos INTEGER DEFAULT 0, "
    "FOREIGN KEY(jail) REFERENCES jails(name) ON DELETE CASCADE, "
    "UNIQUE(jail, path),"
    "UNIQUE(jail, path, firstlinemd5)"
    ");"
    "CREATE INDEX IF NOT EXISTS logs_path ON logs(path);"
    "CREATE INDEX IF NOT EXISTS logs_jail_path ON logs(jail, path);";
constexpr const char* kCreateBans =
    "CREATE TABLE IF NOT EXISTS bans("
    "jail TEXT NOT NULL, "
    "ip TEXT, "
    "timeofban INTEGER NOT NULL, "
    "bantime INTEGER NOT NULL, "
    "bancount INTEGER NOT NULL default 1, "
    "data JSON, "
    "FOREIGN KEY(jail) REFERENCES jails(name) "
    ");"
    "CREATE INDEX IF NOT EXISTS bans_jail_timeofban_ip ON bans(jail, timeofban);"
    "CREATE INDEX IF NOT EXISTS bans_jail_ip ON bans(jail, ip);"
    "CREATE INDEX IF NOT EXISTS bans_ip ON bans(ip);";
constexpr const char* kCreateBips =
    "CREATE TABLE IF NOT EXISTS bips("
    "ip TEXT NOT NULL, "
    "jail TEXT NOT NULL, "
    "timeofban INTEGER NOT NULL, "
    "bantime INTEGER NOT NULL, "
    "bancount INTEGER NOT NULL default 1, "
    "data JSON, "
    "PRIMARY KEY(ip, jail), "
    "FOREIGN KEY(jail) REFERENCES jails(name) "
    ");"
    "CREATE INDEX IF NOT EXISTS bips_timeofban ON bips(timeofban);"
    "CREATE INDEX IF NOT EXISTS bips_ip ON bips(ip);";
// Ours: FailManager's windows (see StoredFailure), as a log: each commit
// appends the windows its turn changed (a row with a NULL retry says the
// window is gone), and the row with the highest seq of a (jail, ip) is its
// state. Appends touch the table's last pages only; upserting in place, a
// burst rewrote every page of the table at each commit (a 200k-line burst
// wrote 364 MB to the WAL). CompactFailures() drops what later rows
// superseded. No foreign key on jails: fail2ban's purge deletes jails rows
// and would trip over one. bantam_failures, the in-place table of earlier
// development builds, is dropped.
constexpr const char* kCreateFailures =
    "DROP TABLE IF EXISTS bantam_failures;"
    "CREATE TABLE IF NOT EXISTS bantam_failure_log("
    "seq INTEGER PRIMARY KEY, "
    "jail TEXT NOT NULL, "
    "ip TEXT NOT NULL, "
    "first_time REAL, "
    "last_time REAL, "
    "retry INTEGER, "
    "attempts INTEGER, "
    "ban_count INTEGER, "
    "data JSON"
    ");";

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// ---------------------------------------------------------------------------
// The data column: a JSON object. Python writes it with json.dumps (", " and
// ": " separators, non-ASCII raw) and reads it with json.loads, so any valid
// JSON goes both ways; we write the same shape it does.

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  bool ParseValue(Value* out, int depth = 0) {
    if (depth > 64) return false;
    SkipSpace();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '"') {
      std::string str;
      if (!ParseString(&str)) return false;
      *out = Value(std::move(str));
      return true;
    }
    if (c == '{') {
      ++i_;
      Value::Dict dict;
      SkipSpace();
      if (Eat('}')) {
        *out = Value(std::move(dict));
        return true;
      }
      for (;;) {
        SkipSpace();
        std::string key;
        if (!ParseString(&key)) return false;
        SkipSpace();
        if (!Eat(':')) return false;
        Value v;
        if (!ParseValue(&v, depth + 1)) return false;
        dict.emplace_back(std::move(key), std::move(v));
        SkipSpace();
        if (Eat('}')) break;
        if (!Eat(',')) return false;
      }
      *out = Value(std::move(dict));
      return true;
    }
    if (c == '[') {
      ++i_;
      Value::List list;
      SkipSpace();
      if (Eat(']')) {
        *out = Value(std::move(list));
        return true;
      }
      for (;;) {
        Value v;
        if (!ParseValue(&v, depth + 1)) return false;
        list.push_back(std::move(v));
        SkipSpace();
        if (Eat(']')) break;
        if (!Eat(',')) return false;
      }
      *out = Value(std::move(list));
      return true;
    }
    if (Literal("true")) return *out = Value(true), true;
    if (Literal("false")) return *out = Value(false), true;
    if (Literal("null")) return *out = Value(nullptr), true;
    return ParseNumber(out);
  }

  bool AtEnd() {
    SkipSpace();
    return i_ == s_.size();
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool ParseNumber(Value* out) {
    size_t start = i_;
    bool integral = true;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c >= '0' && c <= '9') {
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
      } else {
        break;
      }
      ++i_;
    }
    std::string text(s_.substr(start, i_ - start));
    if (text.empty() || text == "-") return false;
    if (integral) {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0 && *end == '\0') {
        *out = Value(static_cast<int64_t>(v));
        return true;
      }
    }
    // Value has no float; keep the digits rather than lose the key.
    *out = Value(std::move(text));
    return true;
  }
  bool Hex4(uint32_t* cp) {
    if (i_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return false;
    }
    *cp = v;
    return true;
  }
  bool ParseString(std::string* out) {
    if (!Eat('"')) return false;
    for (;;) {
      size_t run = i_;
      while (i_ < s_.size() && s_[i_] != '"' && s_[i_] != '\\') ++i_;
      out->append(s_.substr(run, i_ - run));
      if (i_ >= s_.size()) return false;
      if (s_[i_++] == '"') return true;
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
            size_t save = i_;
            i_ += 2;
            uint32_t lo = 0;
            if (Hex4(&lo) && lo >= 0xDC00 && lo < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              i_ = save;
            }
          }
          // A lone surrogate has no UTF-8 form; Python's encode('replace')
          // would have written '?' for it.
          if (cp >= 0xD800 && cp < 0xE000) cp = '?';
          AppendUtf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

// fail2ban's ticket.getMatches(): a line stored as pieces is joined.
std::string MatchText(const Value& v) {
  if (v.is_string()) return v.as_string();
  if (v.is_list()) {
    std::string out;
    for (const Value& piece : v.as_list()) out += MatchText(piece);
    return out;
  }
  return v.ToPyStr();
}

// Undecodable data reads as empty, as fail2ban's converter turns it into {}.
BanData DecodeData(std::string_view json) {
  BanData data;
  if (json.empty()) return data;
  JsonReader reader(json);
  Value root;
  if (!reader.ParseValue(&root) || !reader.AtEnd() || !root.is_dict()) return data;
  for (auto& [key, v] : root.as_dict()) {
    if (key == "matches" && v.is_list()) {
      for (const Value& m : v.as_list()) data.matches.push_back(MatchText(m));
    } else if (key == "failures" && v.is_int()) {
      data.failures = v.as_int();
    } else {
      data.extra.emplace_back(key, v);
    }
  }
  return data;
}

void KeepLastMatches(std::vector<std::string>* matches, size_t max) {
  if (matches->size() > max) matches->erase(matches->begin(), matches->end() - max);
}

// The shape fail2ban's addBan stores: matches (the last max_matches; the key
// left out when max_matches is 0), failures, then the other keys. A failure
// window keeps its count in a column instead (with_failures false).
std::string EncodeData(const BanData& data, int max_matches, bool with_failures = true) {
  std::string out = "{";
  const char* sep = "";
  if (max_matches > 0) {
    size_t n = data.matches.size();
    size_t first = n > static_cast<size_t>(max_matches) ? n - max_matches : 0;
    out.append("\"matches\": [");
    for (size_t i = first; i < n; ++i) {
      if (i != first) out.append(", ");
      out.append(JsonQuote(data.matches[i]));
    }
    out.append("]");
    sep = ", ";
  }
  if (with_failures) {
    out.append(sep).append("\"failures\": ").append(std::to_string(data.failures));
    sep = ", ";
  }
  for (const auto& [key, v] : data.extra) {
    if (key == "matches" || key == "failures") continue;
    out.append(sep).append(JsonQuote(key)).append(": ");
    sep = ", ";
    v.AppendJson(&out);
  }
  out.push_back('}');
  return out;
}

bool IsNone(const std::string& dbfile) {
  if (dbfile.size() != 4) return false;
  for (size_t i = 0; i < 4; ++i) {
    if (std::tolower(static_cast<unsigned char>(dbfile[i])) != "none"[i]) return false;
  }
  return true;
}

struct SalvageCounts;

// Errors that come from the file or the machine, not from what was written:
// a full disk, I/O, memory, a file that became read-only or damaged.
bool IsEnvironmentError(int extended_code) {
  switch (extended_code & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return true;
    default:
      return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------

struct BanStore::Impl {
  std::string filename;
  BanStoreOptions options;
  DbPtr db;  // null for dbfile = none
  std::string journal_mode;
  uint64_t failure_rows_appended = 0;  // since the last CompactFailures()
  int wal_pages = 0;                   // frames in the WAL (its hook's count)
  bool memory = false;           // db is in memory (":memory:" or a degraded copy)
  bool check_integrity = false;  // run PRAGMA quick_check when opening
  std::string degraded_reason;   // set when running from a copy of an unwritable file
  // The extended result code of the latest failed call, for Open to tell a
  // damaged file from an unwritable one.
  mutable int last_error = SQLITE_OK;
  // A Batch is open. batch_error: SQLite aborted its transaction under a
  // write (the first such error); later writes must not run on their own.
  bool batch_open = false;
  std::string batch_error;
  // Keyed by SQL text: the set of statements is small and fixed (the
  // optional filters of the queries make a handful of variants).
  // Looked up by string_view: a write runs a few per row, and building a
  // std::string key from the literal each time was a heap allocation each.
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const { return std::hash<std::string_view>{}(sql); }
  };
  std::unordered_map<std::string, StmtPtr, SqlHash, std::equal_to<>> statements;

  Status Error(std::string_view what) const {
    last_error = sqlite3_extended_errcode(db.get());
    return Status::Error(filename + ": " + std::string(what) + ": " + sqlite3_errmsg(db.get()));
  }

  // A cached statement, reset and unbound when the Query goes out of scope.
  class Query {
   public:
    Query(Impl* impl, sqlite3_stmt* stmt) : impl_(impl), stmt_(stmt) {}
    ~Query() {
      if (stmt_ != nullptr) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
      }
    }
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& Bind(std::string_view v) {
      sqlite3_bind_text(stmt_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
      return *this;
    }
    Query& BindBlob(std::string_view v) {
      sqlite3_bind_blob(stmt_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
      return *this;
    }
    Query& Bind(int64_t v) {
      sqlite3_bind_int64(stmt_, ++n_, v);
      return *this;
    }
    Query& Bind(double v) {
      sqlite3_bind_double(stmt_, ++n_, v);
      return *this;
    }
    Query& BindNull() {
      sqlite3_bind_null(stmt_, ++n_);
      return *this;
    }
    Query& Bind(std::optional<std::string_view> v) { return v ? Bind(*v) : BindNull(); }

    // True while there is a row; errors land in *status.
    bool Step(Status* status) {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc != SQLITE_DONE) *status = impl_->Error(sqlite3_sql(stmt_));
      return false;
    }
    Status Run() {
      Status st;
      while (Step(&st)) {
      }
      return st;
    }

    bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
    int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
    double Double(int col) const { return sqlite3_column_double(stmt_, col); }
    // TEXT or BLOB alike: fail2ban stores data as a BLOB of UTF-8 JSON.
    std::string_view Text(int col) const {
      const char* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
      int n = sqlite3_column_bytes(stmt_, col);
      return p ? std::string_view(p, n) : std::string_view();
    }

   private:
    Impl* impl_;
    sqlite3_stmt* stmt_;
    int n_ = 0;
  };

  Result<sqlite3_stmt*> Prepare(std::string_view sql) {
    auto it = statements.find(sql);
    if (it != statements.end()) return it->second.get();
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                           SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return Error(sql);
    }
    statements.emplace(std::string(sql), StmtPtr(stmt));
    return stmt;
  }

  // Runs a one-off script (schema work); nothing cached.
  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      last_error = sqlite3_extended_errcode(db.get());
      std::string msg = err ? err : sqlite3_errmsg(db.get());
      sqlite3_free(err);
      return Status::Error(filename + ": " + msg);
    }
    return Status::Ok();
  }

  Status Run(std::string_view sql) {
    auto stmt = Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    Query q(this, *stmt);
    return q.Run();
  }

  // One write operation: its own committed transaction, or a savepoint when
  // a Batch is open, so a failed operation never leaves half its rows.
  class Write {
   public:
    // `one_statement`: the body runs a single statement, which SQLite
    // already applies all or nothing; inside a Batch it needs no savepoint
    // (two statements fewer per failure upsert).
    explicit Write(Impl* impl, bool one_statement = false)
        : impl_(impl), one_statement_(one_statement) {}
    ~Write() {
      if (!begun_ || done_) return;
      if (own_) {
        (void)impl_->Run("ROLLBACK");
      } else {
        (void)impl_->Run("ROLLBACK TO write_op");
        (void)impl_->Run("RELEASE write_op");
      }
    }
    Write(const Write&) = delete;
    Write& operator=(const Write&) = delete;

    Status Begin() {
      own_ = sqlite3_get_autocommit(impl_->db.get()) != 0;
      if (impl_->batch_open && (own_ || !impl_->batch_error.empty())) {
        // The batch's transaction is gone: writing on our own would commit
        // part of the turn outside it.
        if (impl_->batch_error.empty()) impl_->batch_error = "its transaction ended";
        return impl_->BatchLost();
      }
      if (!own_ && one_statement_) return Status::Ok();
      // IMMEDIATE takes the write lock up front: with WAL, a deferred
      // transaction that reads first could not upgrade after another
      // process wrote (SQLITE_BUSY_SNAPSHOT, no retry helps).
      Status st = impl_->Run(own_ ? "BEGIN IMMEDIATE" : "SAVEPOINT write_op");
      begun_ = st.ok();
      return st;
    }
    Status Commit() {
      if (!begun_) return Status::Ok();
      Status st = impl_->Run(own_ ? "COMMIT" : "RELEASE write_op");
      done_ = st.ok();
      return st;
    }

   private:
    Impl* impl_;
    bool one_statement_;
    bool own_ = false;
    bool begun_ = false;
    bool done_ = false;
  };

  // Runs `body` inside a Write.
  template <class F>
  Status InWrite(F&& body, bool one_statement = false) {
    if (!db) return Status::Ok();
    Write w(this, one_statement);
    Status st = w.Begin();
    if (!st.ok()) return st;
    st = body();
    if (st.ok()) st = w.Commit();
    // SQLite may abort the whole transaction on such an error, not only the
    // statement; and if it did not, committing the rest of the turn without
    // this write would still leave the file with part of a turn. A
    // constraint error (a bug in one write) undoes only that write.
    if (!st.ok() && batch_open && batch_error.empty() &&
        (sqlite3_get_autocommit(db.get()) != 0 || IsEnvironmentError(last_error))) {
      batch_error = st.message();
    }
    return st;
  }

  Status BatchLost() const {
    return Status::Error(filename + ": the batch was rolled back: " + batch_error);
  }
  // Ends the open batch: commits it if `commit` and nothing aborted it;
  // whatever failed, leaves no transaction open.
  Status EndBatch(bool commit) {
    batch_open = false;
    Status st;
    if (!batch_error.empty()) {
      st = BatchLost();
    } else if (commit) {
      st = Run("COMMIT");
    }
    if (sqlite3_get_autocommit(db.get()) == 0) (void)Run("ROLLBACK");
    batch_error.clear();
    return st;
  }

  // Called by SQLite after each commit to the WAL with its page count:
  // checkpoints only past kWalForceCheckpointPages (the rest is left to
  // BanStore::Checkpoint, called when the daemon is quiet).
  static int WalHook(void* arg, sqlite3* db, const char* name, int pages) {
    auto* impl = static_cast<Impl*>(arg);
    impl->wal_pages = pages;
    if (pages >= BanStore::kWalForceCheckpointPages) {
      int log = 0;
      int done = 0;
      if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
              SQLITE_OK &&
          log == done) {
        impl->wal_pages = 0;
      }
    }
    return SQLITE_OK;
  }

  Status Configure();
  Status OpenSchema();
  Status QuickCheck();
  SalvageCounts Salvage(sqlite3* from);
  Status Upgrade(int64_t version);
  bool TableExists(const char* name);

  // fail2ban's _addLog read: (firstlinemd5 is set, md5, lastfilepos).
  struct LogRow {
    bool found = false;
    std::optional<std::string> md5;
    int64_t pos = 0;
    double pos_real = 0;
  };
  Result<LogRow> ReadLog(std::string_view jail, std::string_view path);
  Status InsertLog(std::string_view jail, std::string_view path,
                   std::optional<std::string_view> md5, double pos, bool pos_is_real);
  Status UpdateLogRow(std::string_view jail, std::string_view path, std::string_view md5,
                      double pos, bool pos_is_real);
};

bool BanStore::Impl::TableExists(const char* name) {
  auto stmt = Prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?");
  if (!stmt.ok()) return false;
  Query q(this, *stmt);
  q.Bind(std::string_view(name));
  Status st;
  return q.Step(&st);
}

Status BanStore::Impl::OpenSchema() {
  // The first read is where SQLite notices a file that is not a database.
  {
    auto stmt = Prepare("SELECT count(*) FROM sqlite_master");
    if (!stmt.ok()) return Status::Error(filename + ": " + sqlite3_errmsg(db.get()));
    Query q(this, *stmt);
    Status st;
    q.Step(&st);
    if (!st.ok()) return Status::Error(filename + ": " + sqlite3_errmsg(db.get()));
  }
  std::optional<int64_t> version;
  if (TableExists("fail2banDb")) {
    auto stmt = Prepare("SELECT version FROM fail2banDb LIMIT 1");
    if (!stmt.ok()) return stmt.status();
    Query q(this, *stmt);
    Status st;
    if (q.Step(&st) && !q.IsNull(0)) version = q.Int(0);
    if (!st.ok()) return st;
  }
  if (version && *version > kSchemaVersion) {
    return Status::Error(filename + ": schema version " + std::to_string(*version) +
                         " is newer than this bantam supports (" + std::to_string(kSchemaVersion) +
                         ")");
  }
  if (version && *version < 1) {
    return Status::Error(filename + ": unknown schema version " + std::to_string(*version));
  }

  // WAL after the checks above, so a refused file is left as it was. The
  // mode is a property of the file: fail2ban switches it back to its own
  // (MEMORY) when it opens the file, and we to ours.
  if (check_integrity) {
    if (Status st = QuickCheck(); !st.ok()) return st;
  }
  if (!memory) {
    auto stmt = Prepare("PRAGMA journal_mode = WAL");
    if (!stmt.ok()) return stmt.status();
    Query q(this, *stmt);
    Status st;
    if (q.Step(&st)) journal_mode = std::string(q.Text(0));
    if (!st.ok()) return st;
    // Our hook replaces SQLite's auto-checkpoint (BanStore::Checkpoint).
    if (journal_mode == "wal") sqlite3_wal_hook(db.get(), &Impl::WalHook, this);
  } else {
    journal_mode = "memory";
  }
  // NORMAL in WAL mode: a commit is in the OS before COMMIT returns (survives
  // kill -9); only the WAL checkpoint is fsync'ed.
  if (Status st = Exec("PRAGMA synchronous = NORMAL"); !st.ok()) return st;

  if (Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) return st;
  Status st;
  if (version && *version < kSchemaVersion) st = Upgrade(*version);
  // Missing tables or indexes (a new file, or one that lost an index) are
  // created; existing ones are left alone.
  for (const char* script :
       {kCreateFail2banDb, kCreateJails, kCreateLogs, kCreateBans, kCreateBips, kCreateFailures}) {
    if (st.ok()) st = Exec(script);
  }
  if (st.ok() && !version) {
    st = Exec(
        "INSERT INTO fail2banDb(version) SELECT 4 WHERE NOT EXISTS (SELECT 1 FROM fail2banDb)");
  }
  if (!st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return Exec("COMMIT");
}

// quick_check reads every page (not the indexes against their tables): the
// damage a crash or a bad disk leaves that the first read would not see.
Status BanStore::Impl::QuickCheck() {
  auto stmt = Prepare("PRAGMA quick_check(1)");
  if (!stmt.ok()) return Status::Error(filename + ": " + sqlite3_errmsg(db.get()));
  Query q(this, *stmt);
  Status st;
  std::string result = q.Step(&st) ? std::string(q.Text(0)) : std::string();
  if (!st.ok()) return Status::Error(filename + ": " + sqlite3_errmsg(db.get()));
  if (result != "ok") {
    last_error = SQLITE_CORRUPT;
    return Status::Error(filename + ": database disk image is malformed (quick_check: " + result +
                         ")");
  }
  return Status::Ok();
}

// The steps fail2ban's updateDb takes, in one transaction (the caller's).
Status BanStore::Impl::Upgrade(int64_t version) {
  Status st;
  if (version < 2 && TableExists("logs")) {
    // Version 1 lacked the UNIQUE constraints on logs.
    st = Exec(
        "CREATE TEMPORARY TABLE logs_temp AS SELECT * FROM logs;"
        "DROP TABLE logs;");
    if (st.ok()) st = Exec(kCreateLogs);
    if (st.ok()) st = Exec("INSERT INTO logs SELECT * FROM logs_temp; DROP TABLE logs_temp;");
    if (!st.ok()) return st;
  }
  if (version < 3 && TableExists("bans")) {
    // Version 2 had no bantime/bancount; -2 marks the bantime as unknown
    // (the restore substitutes the jail's bantime).
    st = Exec(
        "CREATE TEMPORARY TABLE bans_temp AS SELECT jail, ip, timeofban, -2 AS bantime,"
        " 1 AS bancount, data FROM bans;"
        "DROP TABLE bans;");
    if (st.ok()) st = Exec(kCreateBans);
    if (st.ok()) st = Exec("INSERT INTO bans SELECT * FROM bans_temp; DROP TABLE bans_temp;");
    if (!st.ok()) return st;
  }
  if (version < 4 && !TableExists("bips")) {
    st = Exec(kCreateBips);
    if (st.ok() && TableExists("bans")) {
      st = Exec(
          "INSERT OR REPLACE INTO bips(ip, jail, timeofban, bantime, bancount, data)"
          " SELECT ip, jail, timeofban, bantime, bancount, data FROM bans ORDER BY timeofban");
    }
    if (!st.ok()) return st;
  }
  return Exec("UPDATE fail2banDb SET version = 4");
}

// ---------------------------------------------------------------------------

BanStore::BanStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BanStore::~BanStore() = default;

namespace {

// fail2ban creates the last directory level of an absolute path. A directory
// that still does not exist is the configuration's fault, not the file's.
Status MakeParentDir(const std::string& dbfile) {
  const size_t slash = dbfile.rfind('/');
  if (slash == std::string::npos || slash == 0) return Status::Ok();
  const std::string dir = dbfile.substr(0, slash);
  if (dbfile[0] == '/' && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(dir, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno(dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::FromErrno(dir, ENOTDIR);
  return Status::Ok();
}

enum class Fault { kOther, kDamaged, kUnwritable };

Fault Classify(int extended_code) {
  switch (extended_code & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Fault::kDamaged;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_FULL:
    case SQLITE_IOERR:
      return Fault::kUnwritable;
    default:
      return Fault::kOther;
  }
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A path as the file part of an SQLite URI.
std::string UriPath(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      static const char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[(static_cast<unsigned char>(c) >> 4) & 15]);
      out.push_back(kHex[static_cast<unsigned char>(c) & 15]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Opens `path` read-only without creating or changing anything. A WAL file
// whose -shm cannot be created (read-only directory or filesystem) is read
// as immutable, which skips its -wal: *note says so. Null if unreadable.
DbPtr OpenReadOnly(const std::string& path, std::string* note) {
  for (const char* params : {"?mode=ro", "?mode=ro&immutable=1"}) {
    sqlite3* raw = nullptr;
    const std::string uri = "file:" + UriPath(path) + params;
    int rc = sqlite3_open_v2(uri.c_str(), &raw,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nullptr);
    DbPtr db(raw);
    if (rc != SQLITE_OK) continue;
    sqlite3_busy_timeout(raw, kBusyTimeoutMs);
    // Tolerates a file shorter than its header says (truncated) and a schema
    // that does not parse, so what is left can still be read. Nothing is
    // written through this connection.
    (void)sqlite3_exec(raw, "PRAGMA writable_schema = ON", nullptr, nullptr, nullptr);
    if (sqlite3_exec(raw, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      continue;
    }
    struct stat wal;
    if (std::string_view(params).find("immutable") != std::string_view::npos &&
        ::stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0) {
      *note = "; its -wal could not be read (the latest commits are missing)";
    }
    return db;
  }
  return nullptr;
}

// Renames a damaged `dbfile` and its -wal/-shm/-journal to
// "<dbfile>.<stamp>.corrupt[.N]" and the same plus suffix. 0 or an errno;
// on failure nothing was moved.
int MoveAside(const std::string& dbfile, int64_t now, std::string* moved) {
  const time_t t = static_cast<time_t>(now);
  struct tm tm;
  char stamp[32] = "0";
  if (::gmtime_r(&t, &tm) != nullptr) std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  static const char* const kSidecars[] = {"-wal", "-shm", "-journal"};
  const std::string base = dbfile + "." + stamp + ".corrupt";
  std::string target = base;
  for (int n = 1;; ++n) {
    bool taken = Exists(target);
    for (const char* suffix : kSidecars) taken = taken || Exists(target + suffix);
    if (!taken) break;
    target = base + "." + std::to_string(n);
  }
  // Sidecars first: a -wal left behind would be replayed into the new file.
  std::vector<const char*> done;
  int err = 0;
  for (const char* suffix : kSidecars) {
    if (!Exists(dbfile + suffix)) continue;
    if (::rename((dbfile + suffix).c_str(), (target + suffix).c_str()) != 0) {
      err = errno;
      break;
    }
    done.push_back(suffix);
  }
  if (err == 0 && ::rename(dbfile.c_str(), target.c_str()) != 0) err = errno;
  if (err != 0) {
    for (const char* suffix : done)
      (void)::rename((target + suffix).c_str(), (dbfile + suffix).c_str());
    return err;
  }
  *moved = target;
  return 0;
}

// Where OpenOrRecover builds the new file before it takes the damaged one's
// name.
constexpr char kSalvageSuffix[] = ".salvage";

void RemoveWithSidecars(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    (void)::unlink((path + suffix).c_str());
}

// Renames are durable only once their directory is synced: after a power
// cut the damaged file must not be back under the name.
void SyncParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// What Salvage() copied, per table, for the report.
struct SalvageCounts {
  int64_t jails = 0, logs = 0, bans = 0, bips = 0, failures = 0;
  std::string error;  // why a table could not be read to its end, if one could not

  std::string Describe() const {
    std::string out = "salvaged " + std::to_string(bans) + " bans, " + std::to_string(bips) +
                      " current bans (bips), " + std::to_string(logs) + " log positions, " +
                      std::to_string(failures) + " failure windows, " + std::to_string(jails) +
                      " jails";
    if (!error.empty()) out += " (" + error + ")";
    return out;
  }
};

}  // namespace

// The connection settings every store connection gets, file or memory.
Status BanStore::Impl::Configure() {
  Impl* impl = this;
  sqlite3* raw = impl->db.get();
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  // foreign_keys is per connection and a no-op inside a transaction, so it
  // goes first; fail2ban relies on it for ON DELETE CASCADE of logs.
  if (Status st = impl->Exec("PRAGMA foreign_keys = ON"); !st.ok()) return st;
  // Savepoints (one per write inside a Batch) keep their undo pages in a
  // statement journal; on disk that is a pwrite per touched page per ban,
  // which made a 100k-ban batch take ~15 s instead of ~1 s. fail2ban sets
  // the same.
  if (Status st = impl->Exec("PRAGMA temp_store = MEMORY"); !st.ok()) return st;
  // 100k bans with their indexes are ~25 MiB; with the default 2 MiB cache a
  // big batch spills and re-reads pages all along, and a restore reads the
  // file through the cache anyway. Memory is only taken as pages are used.
  return impl->Exec("PRAGMA cache_size = -32768");
}

// Opens impl->filename read-write (creating it) and brings its schema up to
// date. On failure impl->last_error holds SQLite's code.
Status BanStore::OpenFile(Impl* impl) {
  sqlite3* raw = nullptr;
  int rc =
      sqlite3_open_v2(impl->filename.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  impl->db.reset(raw);
  if (rc != SQLITE_OK) {
    impl->last_error = raw ? sqlite3_extended_errcode(raw) : rc;
    return Status::Error(impl->filename + ": " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  // SQLite quietly opens a file it may not write (mode 0444, a read-only
  // filesystem) read-only, and a WAL file then even passes an empty write
  // transaction: without this, the first ban would be the first error.
  if (!impl->memory && sqlite3_db_readonly(raw, "main") == 1) {
    impl->last_error = SQLITE_READONLY;
    return Status::Error(impl->filename + ": " + sqlite3_errstr(SQLITE_READONLY));
  }
  if (Status st = impl->Configure(); !st.ok()) return st;
  return impl->OpenSchema();
}

Result<std::unique_ptr<BanStore>> BanStore::Open(const std::string& dbfile,
                                                 const BanStoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->filename = dbfile;
  impl->options = options;
  if (IsNone(dbfile)) return std::unique_ptr<BanStore>(new BanStore(std::move(impl)));
  if (dbfile.empty()) return Status::Error("dbfile: empty path");
  impl->memory = dbfile == ":memory:";
  if (Status st = MakeParentDir(dbfile); !st.ok()) return st;
  if (Status st = OpenFile(impl.get()); !st.ok()) return st;
  return std::unique_ptr<BanStore>(new BanStore(std::move(impl)));
}

// Copies every row SQLite can read from `from`'s tables into dest's (which
// has the schema), in one transaction. A table whose scan stops at damage is
// scanned again from its other end, so rows past a bad page still come back;
// INSERT OR IGNORE with the same rowid (or key) drops the doubles.
SalvageCounts BanStore::Impl::Salvage(sqlite3* from) {
  Impl* dest = this;
  struct Table {
    const char* name;
    const char* columns;
    bool rowid;    // copy the rowid too (all but WITHOUT ROWID tables)
    int jail_col;  // the column naming the jail, or -1
    int64_t SalvageCounts::*count;
  };
  static const Table kTables[] = {
      {"jails", "name, enabled", true, -1, &SalvageCounts::jails},
      {"logs", "jail, path, firstlinemd5, lastfilepos", true, 0, &SalvageCounts::logs},
      {"bans", "jail, ip, timeofban, bantime, bancount, data", true, 0, &SalvageCounts::bans},
      {"bips", "ip, jail, timeofban, bantime, bancount, data", true, 1, &SalvageCounts::bips},
      {"bantam_failure_log", "seq, jail, ip, first_time, last_time, retry, attempts, ban_count, data",
       false, 1, &SalvageCounts::failures},
  };
  SalvageCounts counts;
  auto note = [&](const std::string& what) {
    if (counts.error.empty()) counts.error = what;
  };
  if (Status st = dest->Exec("BEGIN IMMEDIATE"); !st.ok()) {
    note(st.message());
    return counts;
  }
  for (const Table& t : kTables) {
    const std::string cols = t.rowid ? std::string("rowid, ") + t.columns : t.columns;
    int ncols = 1;
    for (const char* c = cols.c_str(); *c; ++c) ncols += *c == ',';
    std::string marks;
    for (int i = 0; i < ncols; ++i) marks += i ? ", ?" : "?";
    auto insert = dest->Prepare(std::string("INSERT OR IGNORE INTO ") + t.name + "(" + cols +
                                ") VALUES(" + marks + ")");
    auto add_jail = dest->Prepare("INSERT OR IGNORE INTO jails(name, enabled) VALUES(?, 0)");
    if (!insert.ok() || !add_jail.ok()) {
      note(insert.ok() ? add_jail.status().message() : insert.status().message());
      continue;
    }
    const std::string order = t.rowid ? "rowid" : "jail, ip";
    const std::string order_desc = t.rowid ? "rowid DESC" : "jail DESC, ip DESC";
    for (const std::string& ord : {order, order_desc}) {
      sqlite3_stmt* raw = nullptr;
      const std::string sql = "SELECT " + cols + " FROM " + t.name + " ORDER BY " + ord;
      if (sqlite3_prepare_v2(from, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
        // No such table (an older schema) or a damaged schema: nothing to copy.
        sqlite3_finalize(raw);
        if (std::string_view(t.name) != "bantam_failure_log") {
          note(std::string(t.name) + ": " + sqlite3_errmsg(from));
        }
        break;
      }
      StmtPtr select(raw);
      int rc;
      while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
        if (t.jail_col >= 0) {
          const int jc = t.jail_col + (t.rowid ? 1 : 0);
          Impl::Query j(dest, *add_jail);
          sqlite3_bind_value(*add_jail, 1, sqlite3_column_value(raw, jc));
          (void)j.Run();
        }
        Impl::Query q(dest, *insert);
        for (int i = 0; i < ncols; ++i)
          sqlite3_bind_value(*insert, i + 1, sqlite3_column_value(raw, i));
        if (Status st = q.Run(); !st.ok()) {
          note(std::string(t.name) + ": " + st.message());
        } else {
          counts.*t.count += sqlite3_changes(dest->db.get());
        }
      }
      if (rc == SQLITE_DONE) break;  // read to the end: no second pass needed
      note(std::string(t.name) + ": " + sqlite3_errmsg(from));
    }
  }
  if (Status st = dest->Exec("COMMIT"); !st.ok()) {
    (void)dest->Exec("ROLLBACK");
    note(st.message());
    counts = SalvageCounts{.error = counts.error};
  }
  return counts;
}

// Runs from memory: a copy of `source` (the file as found, or its moved
// copy) if it can be read, else an empty database. `why` starts the report.
Result<BanStore::Opened> BanStore::OpenInMemory(const std::string& dbfile,
                                                const BanStoreOptions& options,
                                                const std::string& source, std::string why) {
  auto impl = std::make_unique<Impl>();
  impl->filename = dbfile;
  impl->options = options;
  impl->memory = true;
  auto open_memory = [&]() -> Status {
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    impl->statements.clear();
    impl->db.reset(raw);
    if (rc != SQLITE_OK)
      return Status::Error(dbfile + ": in-memory database: " + sqlite3_errstr(rc));
    return impl->Configure();
  };
  if (Status st = open_memory(); !st.ok()) return st;

  std::string note;
  DbPtr from = Exists(source) ? OpenReadOnly(source, &note) : nullptr;
  bool copied = false;
  if (from) {
    sqlite3_backup* b = sqlite3_backup_init(impl->db.get(), "main", from.get(), "main");
    if (b != nullptr) {
      int rc = sqlite3_backup_step(b, -1);
      copied = sqlite3_backup_finish(b) == SQLITE_OK && rc == SQLITE_DONE;
    }
    // A page-exact copy of a damaged file is damaged too.
    if (copied && !impl->QuickCheck().ok()) copied = false;
    if (!copied) {
      if (Status st = open_memory(); !st.ok()) return st;
    }
  }
  if (Status st = impl->OpenSchema(); !st.ok()) return st;
  std::string what;
  if (copied) {
    auto bans = impl->Prepare("SELECT count(*) FROM bips");
    int64_t n = 0;
    if (bans.ok()) {
      Impl::Query q(impl.get(), *bans);
      Status st;
      if (q.Step(&st)) n = q.Int(0);
    }
    what = "copied it (" + std::to_string(n) + " current bans)";
  } else if (from) {
    what = impl->Salvage(from.get()).Describe();
  } else {
    what = "could not read it either: starting empty";
  }
  from.reset();
  Opened out;
  out.report.state = OpenReport::State::kReadOnlyInMemory;
  out.report.message =
      std::move(why) + "; running from memory: " + what + note + "; bans made now are not saved";
  impl->degraded_reason = out.report.message;
  out.store.reset(new BanStore(std::move(impl)));
  return out;
}

Result<BanStore::Opened> BanStore::OpenOrRecover(const std::string& dbfile,
                                                 const BanStoreOptions& options, int64_t now) {
  Opened out;
  if (IsNone(dbfile) || dbfile == ":memory:" || dbfile.empty()) {
    auto store = Open(dbfile, options);
    if (!store.ok()) return store.status();
    out.store = std::move(*store);
    return out;
  }
  if (Status st = MakeParentDir(dbfile); !st.ok()) return st;
  // A recovery killed after moving the damaged file aside and before
  // renaming the new one into place: the new one is complete (it was
  // closed before the move), so it goes in now.
  std::string resumed;
  if (!Exists(dbfile) && Exists(dbfile + kSalvageSuffix)) {
    if (::rename((dbfile + kSalvageSuffix).c_str(), dbfile.c_str()) == 0) {
      SyncParentDir(dbfile);
      resumed = dbfile + ": put in place the new database " + dbfile + kSalvageSuffix +
                " that an interrupted recovery had made";
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->filename = dbfile;
  impl->options = options;
  impl->check_integrity = true;
  Status st = OpenFile(impl.get());
  if (st.ok()) {
    impl->check_integrity = false;
    out.store.reset(new BanStore(std::move(impl)));
    if (!resumed.empty()) {
      out.report.state = OpenReport::State::kRecreated;
      out.report.message = std::move(resumed);
    }
    return out;
  }
  const Fault fault = Classify(impl->last_error);
  if (fault == Fault::kOther) return st;
  std::string why = st.message();
  if (fault == Fault::kUnwritable) {
    impl.reset();
    return OpenInMemory(dbfile, options, dbfile, std::move(why));
  }
  // Damaged. Its -wal stays as it is for the moved copy: no checkpoint
  // into a damaged file on close.
  if (impl->db) sqlite3_db_config(impl->db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  impl.reset();
  // The new file is built beside it and only takes its name once complete,
  // so a kill -9 at any step leaves either the damaged file in place (and
  // the next start recovers again) or the complete new one (see above).
  const std::string temp = dbfile + kSalvageSuffix;
  RemoveWithSidecars(temp);
  auto fresh = std::make_unique<Impl>();
  fresh->filename = temp;
  fresh->options = options;
  if (Status fs = OpenFile(fresh.get()); !fs.ok()) {
    fresh.reset();
    RemoveWithSidecars(temp);
    return OpenInMemory(dbfile, options, dbfile,
                        why + "; cannot create a new one: " + fs.message());
  }
  std::string note;
  DbPtr from = OpenReadOnly(dbfile, &note);
  SalvageCounts counts;
  if (from) {
    counts = fresh->Salvage(from.get());
  } else {
    counts.error = "the damaged file cannot be read at all";
  }
  from.reset();
  // Everything into the main file, no -wal to carry along the rename.
  Status settle = fresh->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  if (settle.ok()) settle = fresh->Exec("PRAGMA journal_mode = DELETE");
  fresh.reset();
  if (!settle.ok()) {
    RemoveWithSidecars(temp);
    return OpenInMemory(dbfile, options, dbfile,
                        why + "; cannot create a new one: " + settle.message());
  }
  std::string moved;
  if (int err = MoveAside(dbfile, now, &moved); err != 0) {
    RemoveWithSidecars(temp);
    return OpenInMemory(dbfile, options, dbfile,
                        why + "; cannot move it aside: " + std::strerror(err));
  }
  why += "; moved it to " + moved + " (with its -wal/-shm)";
  if (::rename(temp.c_str(), dbfile.c_str()) != 0) {
    const int err = errno;
    return OpenInMemory(dbfile, options, moved,
                        why + "; cannot put the new one in place: " + std::strerror(err));
  }
  SyncParentDir(dbfile);
  auto impl2 = std::make_unique<Impl>();
  impl2->filename = dbfile;
  impl2->options = options;
  if (Status st2 = OpenFile(impl2.get()); !st2.ok()) {
    if (Classify(impl2->last_error) == Fault::kOther) return st2;
    impl2.reset();
    return OpenInMemory(dbfile, options, dbfile, why + "; " + st2.message());
  }
  out.report.state = OpenReport::State::kRecreated;
  out.report.moved_to = moved;
  out.report.message = why + " and created a new database; " + counts.Describe() + note;
  out.store.reset(new BanStore(std::move(impl2)));
  return out;
}

bool BanStore::enabled() const { return impl_->db != nullptr; }
bool BanStore::degraded() const { return !impl_->degraded_reason.empty(); }
const std::string& BanStore::degraded_reason() const { return impl_->degraded_reason; }
const std::string& BanStore::filename() const { return impl_->filename; }
const std::string& BanStore::journal_mode() const { return impl_->journal_mode; }
void BanStore::set_purge_age(int64_t seconds) { impl_->options.purge_age = seconds; }
int64_t BanStore::purge_age() const { return impl_->options.purge_age; }
void BanStore::set_max_matches(int n) { impl_->options.max_matches = n < 0 ? 0 : n; }
int BanStore::max_matches() const { return impl_->options.max_matches; }

// --- jails ---------------------------------------------------------------

Status BanStore::AddJail(std::string_view jail) {
  return impl_->InWrite([&]() -> Status {
    auto stmt = impl_->Prepare(
        "INSERT INTO jails(name, enabled) VALUES(?, 1)"
        " ON CONFLICT(name) DO UPDATE SET enabled = 1 WHERE enabled != 1");
    if (!stmt.ok()) return stmt.status();
    Impl::Query q(impl_.get(), *stmt);
    return q.Bind(jail).Run();
  });
}

Status BanStore::DelJail(std::string_view jail) {
  return impl_->InWrite([&]() -> Status {
    auto stmt = impl_->Prepare("UPDATE jails SET enabled=0 WHERE name=?");
    if (!stmt.ok()) return stmt.status();
    Impl::Query q(impl_.get(), *stmt);
    return q.Bind(jail).Run();
  });
}

Status BanStore::DelAllJails() {
  return impl_->InWrite([&]() -> Status { return impl_->Run("UPDATE jails SET enabled=0"); });
}

Result<std::set<std::string>> BanStore::GetJailNames(std::optional<bool> enabled) {
  std::set<std::string> names;
  if (!impl_->db) return names;
  auto stmt =
      impl_->Prepare(enabled ? "SELECT name FROM jails WHERE enabled=?" : "SELECT name FROM jails");
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  if (enabled) q.Bind(int64_t{*enabled ? 1 : 0});
  Status st;
  while (q.Step(&st)) names.emplace(q.Text(0));
  if (!st.ok()) return st;
  return names;
}

// --- logs ----------------------------------------------------------------

Result<BanStore::Impl::LogRow> BanStore::Impl::ReadLog(std::string_view jail,
                                                       std::string_view path) {
  auto stmt = Prepare("SELECT firstlinemd5, lastfilepos FROM logs WHERE jail=? AND path=?");
  if (!stmt.ok()) return stmt.status();
  Query q(this, *stmt);
  q.Bind(jail).Bind(path);
  LogRow row;
  Status st;
  if (q.Step(&st)) {
    row.found = true;
    if (!q.IsNull(0)) row.md5 = std::string(q.Text(0));
    row.pos = q.Int(1);
    row.pos_real = q.Double(1);
  }
  if (!st.ok()) return st;
  return row;
}

Status BanStore::Impl::InsertLog(std::string_view jail, std::string_view path,
                                 std::optional<std::string_view> md5, double pos,
                                 bool pos_is_real) {
  auto stmt = Prepare(
      "INSERT OR REPLACE INTO logs(jail, path, firstlinemd5, lastfilepos) VALUES(?, ?, ?, ?)");
  if (!stmt.ok()) return stmt.status();
  Query q(this, *stmt);
  q.Bind(jail).Bind(path).Bind(md5);
  if (pos_is_real) {
    q.Bind(pos);
  } else {
    q.Bind(static_cast<int64_t>(pos));
  }
  return q.Run();
}

Status BanStore::Impl::UpdateLogRow(std::string_view jail, std::string_view path,
                                    std::string_view md5, double pos, bool pos_is_real) {
  auto stmt = Prepare("UPDATE logs SET firstlinemd5=?, lastfilepos=? WHERE jail=? AND path=?");
  if (!stmt.ok()) return stmt.status();
  {
    Query q(this, *stmt);
    q.Bind(md5);
    if (pos_is_real) {
      q.Bind(pos);
    } else {
      q.Bind(static_cast<int64_t>(pos));
    }
    if (Status st = q.Bind(jail).Bind(path).Run(); !st.ok()) return st;
  }
  if (sqlite3_changes(db.get()) > 0) return Status::Ok();
  return InsertLog(jail, path, md5, pos, pos_is_real);
}

Result<std::optional<int64_t>> BanStore::AddLog(std::string_view jail, std::string_view path,
                                                int64_t pos,
                                                std::optional<std::string_view> first_line_md5) {
  std::optional<int64_t> resume;
  Status st = impl_->InWrite([&]() -> Status {
    auto row = impl_->ReadLog(jail, path);
    if (!row.ok()) return row.status();
    if (row->found) resume = row->pos;
    // As fail2ban: a row without an md5 counts as absent and is replaced.
    if (!row->md5 && (pos != 0 || first_line_md5)) {
      if (Status ist =
              impl_->InsertLog(jail, path, first_line_md5, static_cast<double>(pos), false);
          !ist.ok()) {
        return ist;
      }
    }
    if (first_line_md5 && (!row->md5 || *row->md5 != *first_line_md5)) resume.reset();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return resume;
}

Result<std::optional<int64_t>> BanStore::GetLogPosition(
    std::string_view jail, std::string_view path, std::optional<std::string_view> first_line_md5) {
  if (!impl_->db) return std::optional<int64_t>();
  auto row = impl_->ReadLog(jail, path);
  if (!row.ok()) return row.status();
  if (!row->found) return std::optional<int64_t>();
  if (first_line_md5 && (!row->md5 || *row->md5 != *first_line_md5)) {
    return std::optional<int64_t>();
  }
  return std::optional<int64_t>(row->pos);
}

Result<std::optional<std::pair<std::string, int64_t>>> BanStore::GetLog(std::string_view jail,
                                                                       std::string_view path) {
  using Out = std::optional<std::pair<std::string, int64_t>>;
  if (!impl_->db) return Out();
  auto row = impl_->ReadLog(jail, path);
  if (!row.ok()) return row.status();
  if (!row->found || !row->md5) return Out();
  return Out(std::make_pair(*row->md5, row->pos));
}

Status BanStore::UpdateLog(std::string_view jail, std::string_view path, int64_t pos,
                           std::string_view first_line_md5) {
  return impl_->InWrite([&]() -> Status {
    return impl_->UpdateLogRow(jail, path, first_line_md5, static_cast<double>(pos), false);
  });
}

Result<std::set<std::string>> BanStore::GetLogPaths(std::optional<std::string_view> jail) {
  std::set<std::string> paths;
  if (!impl_->db) return paths;
  auto stmt = impl_->Prepare(jail ? "SELECT path FROM logs WHERE jail=?" : "SELECT path FROM logs");
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  if (jail) q.Bind(*jail);
  Status st;
  while (q.Step(&st)) paths.emplace(q.Text(0));
  if (!st.ok()) return st;
  return paths;
}

Result<std::optional<double>> BanStore::GetJournalPosition(std::string_view jail,
                                                           std::string_view name) {
  if (!impl_->db) return std::optional<double>();
  auto row = impl_->ReadLog(jail, name);
  if (!row.ok()) return row.status();
  if (!row->found) return std::optional<double>();
  return std::optional<double>(row->pos_real);
}

Status BanStore::UpdateJournal(std::string_view jail, std::string_view name, double time,
                               std::string_view iso) {
  return impl_->InWrite(
      [&]() -> Status { return impl_->UpdateLogRow(jail, name, iso, time, true); });
}

// --- bans ----------------------------------------------------------------

Status BanStore::AddBan(std::string_view jail, const StoredBan& ban) {
  return impl_->InWrite([&]() -> Status {
    const std::string data = EncodeData(ban.data, impl_->options.max_matches);
    // The two tables list jail and ip in opposite orders.
    auto insert = [&](const char* sql, std::string_view first, std::string_view second) -> Status {
      auto stmt = impl_->Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      Impl::Query q(impl_.get(), *stmt);
      // data as a BLOB: Python's sqlite3 stores the bytes fail2ban's adapter
      // returns that way, and we keep the file looking the same.
      return q.Bind(first)
          .Bind(second)
          .Bind(ban.time)
          .Bind(ban.bantime)
          .Bind(ban.bancount)
          .BindBlob(data)
          .Run();
    };
    Status st = insert(
        "INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) VALUES(?, ?, ?, ?, ?, ?)",
        jail, ban.ip);
    if (!st.ok()) return st;
    return insert(
        "INSERT OR REPLACE INTO bips(ip, jail, timeofban, bantime, bancount, data)"
        " VALUES(?, ?, ?, ?, ?, ?)",
        ban.ip, jail);
  });
}

Status BanStore::DelBans(std::string_view jail, std::span<const std::string> ips) {
  if (ips.empty()) return Status::Ok();
  return impl_->InWrite([&]() -> Status {
    for (const char* sql : {"DELETE FROM bips WHERE jail = ? AND ip = ?",
                            "DELETE FROM bans WHERE jail = ? AND ip = ?"}) {
      auto stmt = impl_->Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      for (const std::string& ip : ips) {
        Impl::Query q(impl_.get(), *stmt);
        if (Status st = q.Bind(jail).Bind(std::string_view(ip)).Run(); !st.ok()) return st;
      }
    }
    return Status::Ok();
  });
}

Status BanStore::DelAllBans(std::string_view jail) {
  return impl_->InWrite([&]() -> Status {
    for (const char* sql : {"DELETE FROM bips WHERE jail = ?", "DELETE FROM bans WHERE jail = ?"}) {
      auto stmt = impl_->Prepare(sql);
      if (!stmt.ok()) return stmt.status();
      Impl::Query q(impl_.get(), *stmt);
      if (Status st = q.Bind(jail).Run(); !st.ok()) return st;
    }
    return Status::Ok();
  });
}

Result<std::vector<StoredBan>> BanStore::GetBans(const BansQuery& query) {
  std::vector<StoredBan> bans;
  if (!impl_->db) return bans;
  std::string sql = "SELECT ip, timeofban, bantime, bancount, data FROM bans WHERE 1";
  if (query.jail) sql += " AND jail=?";
  const bool by_time = query.bantime && *query.bantime >= 0;
  if (by_time) sql += " AND timeofban > ?";
  if (query.ip) sql += " AND ip=?";
  sql += " ORDER BY ip, timeofban desc";
  auto stmt = impl_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  if (query.jail) q.Bind(std::string_view(*query.jail));
  if (by_time) q.Bind(query.now - *query.bantime);
  if (query.ip) q.Bind(std::string_view(*query.ip));
  Status st;
  while (q.Step(&st)) {
    StoredBan& b = bans.emplace_back();
    b.ip = q.Text(0);
    b.time = q.Int(1);
    b.bantime = q.Int(2);
    b.bancount = q.Int(3);
    b.data = DecodeData(q.Text(4));
  }
  if (!st.ok()) return st;
  return bans;
}

Status BanStore::BeginRead() {
  if (!impl_->db) return Status::Ok();
  return impl_->Exec("BEGIN");
}

Status BanStore::EndRead() {
  if (!impl_->db) return Status::Ok();
  return impl_->Exec("COMMIT");
}

Result<std::vector<StoredBan>> BanStore::GetCurrentBans(const CurrentBansQuery& query) {
  std::vector<StoredBan> bans;
  if (!impl_->db) return bans;
  // The query fail2ban runs, so both pick the same rows: per jail the bips
  // row of each ip; across jails the latest one (SQLite takes the bare
  // columns from the row that holds max(timeofban)).
  std::string sql = query.jail
                        ? "SELECT ip, timeofban, bantime, bancount, data FROM bips WHERE jail=?"
                        : "SELECT ip, max(timeofban), bantime, bancount, data FROM bips WHERE 1";
  if (query.ip) sql += " AND ip=?";
  sql += " AND (timeofban + bantime > ? OR bantime <= -1)";
  const bool by_age = query.forbantime && *query.forbantime != -1;
  if (by_age) sql += " AND timeofban > ?";
  sql += query.ip ? " ORDER BY timeofban DESC LIMIT 1" : " GROUP BY ip ORDER BY ip, timeofban DESC";
  auto stmt = impl_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  if (query.jail) q.Bind(std::string_view(*query.jail));
  if (query.ip) q.Bind(std::string_view(*query.ip));
  q.Bind(query.now);
  if (by_age) q.Bind(query.now - *query.forbantime);

  // -1: persistent bans are allowed, nothing to correct.
  const bool capped = query.max_bantime.has_value() && *query.max_bantime >= 0;
  const int64_t cap = capped ? *query.max_bantime : 0;
  const int max_matches = query.max_matches.value_or(impl_->options.max_matches);
  Status st;
  while (q.Step(&st)) {
    // An aggregate over no rows still yields one row of NULLs.
    if (q.IsNull(0) || q.Text(0).empty()) continue;
    int64_t time = q.Int(1);
    int64_t bantime = q.Int(2);
    if (bantime == -2) {
      bantime = query.unknown_bantime ? *query.unknown_bantime : (cap != 0 ? cap : 600);
    } else if (capped && (bantime == -1 || bantime > cap)) {
      bantime = cap;
    }
    // The cap may have ended the ban already.
    if (bantime != -1 && time + bantime <= query.now) continue;
    StoredBan& b = bans.emplace_back();
    b.ip = q.Text(0);
    b.time = time;
    b.bantime = bantime;
    b.bancount = q.Int(3);
    b.data = DecodeData(q.Text(4));
    if (max_matches > 0) {
      KeepLastMatches(&b.data.matches, static_cast<size_t>(max_matches));
    } else {
      b.data.matches.clear();
    }
  }
  if (!st.ok()) return st;
  return bans;
}

Result<std::optional<BanHistoryRow>> BanStore::GetBan(const BanHistoryQuery& query) {
  if (!impl_->db) return std::optional<BanHistoryRow>();
  const bool overall = query.overall_jails || !query.jail;
  std::string sql = query.overall_jails
                        ? "SELECT sum(bancount), max(timeofban), sum(bantime) FROM bips"
                        : "SELECT bancount, timeofban, bantime FROM bips";
  sql += " WHERE ip = ?";
  if (!query.overall_jails && query.jail) sql += " AND jail=?";
  if (query.forbantime) sql += " AND timeofban > ?";
  if (query.fromtime) sql += " AND timeofban > ?";
  if (overall) sql += " GROUP BY ip ORDER BY timeofban DESC LIMIT 1";
  auto stmt = impl_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  q.Bind(std::string_view(query.ip));
  if (!query.overall_jails && query.jail) q.Bind(std::string_view(*query.jail));
  if (query.forbantime) q.Bind(query.now - *query.forbantime);
  if (query.fromtime) q.Bind(*query.fromtime);
  Status st;
  std::optional<BanHistoryRow> history;
  if (q.Step(&st) && !q.IsNull(1)) history = BanHistoryRow{q.Int(0), q.Int(1), q.Int(2)};
  if (!st.ok()) return st;
  return history;
}

// --- failure windows ---------------------------------------------------------

Status BanStore::PutFailure(std::string_view jail, const StoredFailure& f) {
  ++impl_->failure_rows_appended;
  return impl_->InWrite(
      [&]() -> Status {
        auto stmt = impl_->Prepare(
            "INSERT INTO bantam_failure_log(jail, ip, first_time, last_time, retry, attempts,"
            " ban_count, data) VALUES(?, ?, ?, ?, ?, ?, ?, ?)");
        if (!stmt.ok()) return stmt.status();
        Impl::Query q(impl_.get(), *stmt);
        const std::string data = EncodeData(f.data, static_cast<int>(f.data.matches.size()) + 1,
                                            /*with_failures=*/false);
        return q.Bind(jail)
            .Bind(std::string_view(f.ip))
            .Bind(f.first_time)
            .Bind(f.last_time)
            .Bind(f.retry)
            .Bind(f.attempts)
            .Bind(f.ban_count)
            .Bind(std::string_view(data))
            .Run();
      },
      /*one_statement=*/true);
}

Status BanStore::DelFailure(std::string_view jail, std::string_view ip) {
  ++impl_->failure_rows_appended;
  return impl_->InWrite(
      [&]() -> Status {
        auto stmt = impl_->Prepare("INSERT INTO bantam_failure_log(jail, ip) VALUES(?, ?)");
        if (!stmt.ok()) return stmt.status();
        Impl::Query q(impl_.get(), *stmt);
        return q.Bind(jail).Bind(ip).Run();
      },
      /*one_statement=*/true);
}

Status BanStore::DelFailures(std::string_view jail) {
  return impl_->InWrite(
      [&]() -> Status {
        auto stmt = impl_->Prepare("DELETE FROM bantam_failure_log WHERE jail = ?");
        if (!stmt.ok()) return stmt.status();
        Impl::Query q(impl_.get(), *stmt);
        return q.Bind(jail).Run();
      },
      /*one_statement=*/true);
}

Result<std::vector<StoredFailure>> BanStore::GetFailures(std::string_view jail, double since) {
  std::vector<StoredFailure> out;
  if (!impl_->db) return out;
  auto stmt = impl_->Prepare(
      "SELECT ip, first_time, last_time, retry, attempts, ban_count, data FROM bantam_failure_log"
      " WHERE jail = ? ORDER BY seq");
  if (!stmt.ok()) return stmt.status();
  Impl::Query q(impl_.get(), *stmt);
  q.Bind(jail);
  // The latest row of each ip wins; a NULL retry ends its window.
  std::unordered_map<std::string, size_t> at;
  std::vector<bool> gone;
  Status st;
  while (q.Step(&st)) {
    std::string ip(q.Text(0));
    auto [it, fresh] = at.try_emplace(ip, out.size());
    if (fresh) {
      out.emplace_back().ip = std::move(ip);
      gone.push_back(false);
    }
    const size_t i = it->second;
    gone[i] = q.IsNull(3);
    if (gone[i]) continue;
    StoredFailure& f = out[i];
    f.first_time = q.Double(1);
    f.last_time = q.Double(2);
    f.retry = q.Int(3);
    f.attempts = q.Int(4);
    f.ban_count = q.Int(5);
    f.data = DecodeData(q.Text(6));
  }
  if (!st.ok()) return st;
  size_t kept = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (gone[i] || !(out[i].last_time > since)) continue;
    if (kept != i) out[kept] = std::move(out[i]);
    ++kept;
  }
  out.resize(kept);
  std::sort(out.begin(), out.end(), [](const StoredFailure& a, const StoredFailure& b) {
    return a.last_time != b.last_time ? a.last_time < b.last_time : a.ip < b.ip;
  });
  return out;
}

uint64_t BanStore::failure_rows_appended() const { return impl_->failure_rows_appended; }

// --- WAL checkpoints -------------------------------------------------------

int BanStore::wal_pages() const { return impl_->wal_pages; }

Status BanStore::Checkpoint(bool force) {
  if (!impl_->db || impl_->journal_mode != "wal") return Status::Ok();
  if (impl_->wal_pages == 0 || (!force && impl_->wal_pages < kWalCheckpointPages)) {
    return Status::Ok();
  }
  int log = 0;
  int done = 0;
  if (sqlite3_wal_checkpoint_v2(impl_->db.get(), "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
      SQLITE_OK) {
    return impl_->Error("checkpoint");
  }
  // A reader still on old pages keeps them: the rest goes at a later call.
  if (log == done) impl_->wal_pages = 0;
  return Status::Ok();
}

void BanStore::ReleaseMemory() {
  if (impl_->db) sqlite3_db_release_memory(impl_->db.get());
}

Status BanStore::CompactFailures() {
  if (!impl_->db) return Status::Ok();
  Status st = impl_->InWrite([&]() -> Status {
    if (Status s = impl_->Run(
            "DELETE FROM bantam_failure_log WHERE seq NOT IN"
            " (SELECT max(seq) FROM bantam_failure_log GROUP BY jail, ip)");
        !s.ok()) {
      return s;
    }
    return impl_->Run("DELETE FROM bantam_failure_log WHERE retry IS NULL");
  });
  if (st.ok()) impl_->failure_rows_appended = 0;
  return st;
}

Status BanStore::Purge(int64_t now) {
  return impl_->InWrite([&]() -> Status {
    const int64_t horizon = now - impl_->options.purge_age;
    {
      auto stmt = impl_->Prepare("DELETE FROM bans WHERE timeofban < ?");
      if (!stmt.ok()) return stmt.status();
      Impl::Query q(impl_.get(), *stmt);
      if (Status st = q.Bind(horizon).Run(); !st.ok()) return st;
    }
    {
      auto stmt = impl_->Prepare(
          "DELETE FROM bips WHERE timeofban < ? and bantime != -1"
          " and (timeofban + (bantime * ?)) < ?");
      if (!stmt.ok()) return stmt.status();
      Impl::Query q(impl_.get(), *stmt);
      q.Bind(horizon).Bind(int64_t{impl_->options.outdated_factor}).Bind(horizon);
      if (Status st = q.Run(); !st.ok()) return st;
    }
    {
      // A window older than purge_age is long out of any sane findtime; a
      // disabled or forgotten jail's windows will not be restored.
      auto stmt = impl_->Prepare(
          "DELETE FROM bantam_failure_log WHERE last_time < ?"
          " OR jail NOT IN (SELECT name FROM jails WHERE enabled = 1)");
      if (!stmt.ok()) return stmt.status();
      Impl::Query q(impl_.get(), *stmt);
      if (Status st = q.Bind(static_cast<double>(horizon)).Run(); !st.ok()) return st;
    }
    return impl_->Run(
        "DELETE FROM jails WHERE enabled = 0 "
        "AND NOT EXISTS(SELECT * FROM bans WHERE jail = jails.name) "
        "AND NOT EXISTS(SELECT * FROM bips WHERE jail = jails.name)");
  });
}

// --- batches ---------------------------------------------------------------

Result<BanStore::Batch> BanStore::BeginBatch() {
  if (!impl_->db) return Batch(nullptr);
  if (impl_->batch_open || sqlite3_get_autocommit(impl_->db.get()) == 0) {
    return Status::Error(impl_->filename + ": a batch is already open");
  }
  if (Status st = impl_->Run("BEGIN IMMEDIATE"); !st.ok()) return st;
  impl_->batch_open = true;
  impl_->batch_error.clear();
  return Batch(this);
}

BanStore::Batch::Batch(Batch&& other) noexcept : store_(std::exchange(other.store_, nullptr)) {}

BanStore::Batch::~Batch() {
  if (store_ != nullptr) (void)store_->impl_->EndBatch(/*commit=*/false);
}

Status BanStore::Batch::Commit() {
  if (store_ == nullptr) return Status::Ok();
  return std::exchange(store_, nullptr)->impl_->EndBatch(/*commit=*/true);
}

Status BanStore::SetMaxPageCountForTesting(int64_t pages) {
  if (!impl_->db) return Status::Ok();
  return impl_->Exec(("PRAGMA max_page_count = " + std::to_string(pages)).c_str());
}

}  // namespace bantam
