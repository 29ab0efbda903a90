// BanStore: the persistent ban database (`dbfile`), on the very file format
// fail2ban 1.0 uses (schema version 4: tables fail2banDb, jails, logs, bans,
// bips), so an operator who switches keeps `dbfile =
// /var/lib/fail2ban/fail2ban.sqlite3`, gets the bans fail2ban had restored,
// and can switch back.
//
// What fail2ban keeps there and what each table means:
//   jails  name, enabled: jails known to the daemon; a stopped jail is
//          disabled, and Purge() forgets it once it has no bans left.
//   logs   per (jail, path): MD5 of the log's first line and the byte offset
//          read so far, so a restart resumes where it stopped unless the log
//          was rotated (the first line changed).
//   bans   one row per ban ever made (history, aged out by dbpurgeage).
//   bips   one row per (ip, jail): the latest ban, its bantime and bancount;
//          this is what restore and bantime.increment read.
//   data   (in bans and bips) a JSON object: "matches" (log lines, oldest
//          first, at most dbmaxmatches), "failures" and any other ticket data.
//
// Durability. Every write commits before it returns, or with the Batch that
// encloses it. The file runs in WAL mode with synchronous=NORMAL: a commit
// has appended its pages to the -wal file with write(2) before COMMIT
// returns, so it is in the kernel's page cache and survives the process
// being killed at any moment (kill -9, a crash, the OOM killer): the next
// open replays the WAL. No committed transaction (for the daemon: no turn)
// is lost to a process crash, and none is ever half applied. A power cut or
// kernel panic may lose the last commits since the latest checkpoint's
// fsync (the WAL is fsync'ed only when it is checkpointed, about every 1000
// pages), but never leaves a half transaction or a corrupt file behind on a
// disk that honours fsync. fsync per turn would cost a disk flush on the
// event loop for a guarantee that only matters with power cuts. fail2ban
// itself runs with synchronous=OFF and an in-memory rollback journal, so a
// crash in the middle of its writes can corrupt its file; the switch
// between the two is harmless, as each sets its journal mode on open.
//
// Tables of our own (bantam_failure_log) carry a `bantam_` prefix and no
// foreign key, so fail2ban (which only touches its five tables, and whose
// purge deletes jails rows) neither sees nor trips over them.
//
// Times are epoch seconds passed in by the caller ("now" is a parameter,
// never read from a clock here), which keeps the store testable with fake
// time. Bantimes are seconds; -1 means permanent, and -2 (only in rows that
// fail2ban upgraded from schema version 2) means unknown.
//
// Thread-safety: none. A BanStore (and its SQLite connection, opened
// SQLITE_OPEN_NOMUTEX) belongs to one thread at a time; the daemon uses it
// from its event loop. Other processes may use the same file; SQLite's file
// locks serialise them, and a write waits up to 5 s for a lock (as Python's
// sqlite3 does for fail2ban).
#ifndef BANTAM_BAN_STORE_H_
#define BANTAM_BAN_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

// The ticket data kept with a ban: fail2ban's ticket.getData() dict.
struct BanData {
  // The log lines behind the ban, oldest first. fail2ban may store a line as
  // a list of pieces ([pre, match, post]); those are read joined, as its
  // ticket.getMatches() joins them.
  std::vector<std::string> matches;
  int64_t failures = 0;
  // Every other key of the dict, in stored order (e.g. "ip", "user" from
  // <F-*> groups). Written back as they are read; a JSON number that is not
  // a 64-bit integer reads as a string of its digits.
  Value::Dict extra;

  bool operator==(const BanData&) const = default;
};

// One ban as the store holds it.
struct StoredBan {
  std::string
      ip;  // the ticket id as text (fail2ban: str(IPAddr)); canonical form is the caller's job
  int64_t time = 0;      // timeofban; fail2ban stores round(ticket time)
  int64_t bantime = 0;   // seconds; -1 permanent. REAL values fail2ban wrote read truncated.
  int64_t bancount = 1;  // how many times this ip has been banned in this jail
  BanData data;

  bool operator==(const StoredBan&) const = default;
};

// getBan(): what bantime.increment learns about an ip's past bans.
struct BanHistoryRow {
  int64_t bancount = 0;     // for all jails: the sum over them
  int64_t time_of_ban = 0;  // the last ban's time (for all jails: the latest)
  int64_t bantime = 0;      // the last ban's bantime (for all jails: the sum, as fail2ban does)

  bool operator==(const BanHistoryRow&) const = default;
};

// The restore query (fail2ban's getCurrentBans): bans that are still in
// force at `now`.
struct CurrentBansQuery {
  std::optional<std::string> jail;  // unset: every jail, the latest ban per ip
  std::optional<std::string> ip;    // unset: every ip; set: at most one result
  // Only bans made within this many seconds before `now` (fail2ban passes
  // the jail's bantime unless bantime.increment is on). Unset or -1: any age.
  std::optional<int64_t> forbantime;
  int64_t now = 0;  // fromtime
  // correctBanTime: a ban longer than this, or permanent, is shortened to it
  // (the jail's max bantime), and dropped if that has already expired.
  // Unset or -1: bantimes are kept as stored.
  std::optional<int64_t> max_bantime;
  // Bantime for rows whose bantime is unknown (-2): the jail's bantime.
  // Unset: max_bantime if set, else 600, as fail2ban does without a jail.
  std::optional<int64_t> unknown_bantime;
  // Keep the last N matches of each ban; 0 drops them. Unset: the store's
  // max_matches (dbmaxmatches).
  std::optional<int> max_matches;
};

// One failure window of FailManager, as saved at the end of a loop turn so
// a restarted daemon forgets no failure still inside findtime. It holds what
// rebuilds the Ticket: FailManager's window is a count over an interval
// (see fail_manager.h), not a list of times, so two times and two counts
// are the whole of it.
struct StoredFailure {
  std::string ip;         // the failure id as text, as StoredBan::ip
  double first_time = 0;  // Ticket::first_time: start of the interval `retry` covers
  double last_time = 0;   // Ticket::time: the latest failure's log time
  int64_t retry = 1;      // Ticket::retry: the count compared with maxretry
  int64_t attempts = 1;   // Ticket::attempts: failures actually seen (<failures>)
  int64_t ban_count = 0;  // Ticket::ban_count
  // matches: the lines kept for <matches> (the caller passes at most its
  // maxmatches; stored as given). extra: the first failure's named groups.
  // data.failures is not stored (attempts is).
  BanData data;

  bool operator==(const StoredFailure&) const = default;
};

// What OpenOrRecover() found and did, for the daemon to log.
struct OpenReport {
  enum class State {
    kOk,                // opened as it was (or created)
    kRecreated,         // damaged: moved aside, a fresh file made, readable rows salvaged
    kReadOnlyInMemory,  // not writable: its content copied into memory, run from there
  };
  State state = State::kOk;
  // Empty for kOk; otherwise one line to log as ERROR, naming the file (and
  // for kRecreated the name it was moved to and what was salvaged).
  std::string message;
  std::string moved_to;  // kRecreated: where the damaged file went ("" if nowhere)
};

struct BanStoreOptions {
  int64_t purge_age = 24 * 60 * 60;  // dbpurgeage, seconds
  int max_matches = 10;              // dbmaxmatches; 0 stores no matches
  // A bips row outlives dbpurgeage until its ban has been over for this many
  // bantimes (fail2ban's outDatedFactor), so bantime.increment remembers
  // repeat offenders.
  int outdated_factor = 3;
};

class BanStore {
 public:
  // Opens (creating if absent) the database `dbfile`, as fail2ban's `dbfile`:
  //   "none" (any case)  no database: every write succeeds doing nothing and
  //                      every read finds nothing, which is how fail2ban
  //                      behaves without one (no restore, no increment
  //                      history). enabled() is false.
  //   ":memory:"         a private in-memory database, lost on close.
  //   a path             created with its last directory level if absent.
  // A database of schema version 1-3 is upgraded in one transaction (as
  // fail2ban would, without the backup copy: a failed upgrade rolls back).
  // Errors name the path: "PATH: file is not a database", "PATH: schema
  // version 5 is newer than this bantam supports (4)". This Open never moves
  // or repairs anything: a damaged or unwritable file is an error (for
  // tools and second readers). The daemon opens with OpenOrRecover().
  static Result<std::unique_ptr<BanStore>> Open(const std::string& dbfile,
                                                const BanStoreOptions& options = {});
  ~BanStore();

  // The daemon's Open: never leaves the host unprotected because of the
  // database file. As Open(), plus (`now`: epoch seconds, names the backup):
  //   - a damaged file (not a database, truncated, "database disk image is
  //     malformed", or PRAGMA quick_check not "ok") is renamed to
  //     "<dbfile>.<YYYYmmdd-HHMMSS>.corrupt" (UTC; ".1", ".2"... if taken),
  //     its -wal/-shm renamed alongside ("<moved>-wal", so the moved copy
  //     still opens with them), a fresh database is created at `dbfile`,
  //     and every row SQLite can still read from the damaged file's jails,
  //     logs, bans, bips and bantam_failure_log is copied in. kRecreated. The
  //     new file is built as "<dbfile>.salvage" and renamed into place only
  //     after the damaged one has been moved, so a kill -9 during recovery
  //     leaves the damaged file (recovered again at the next start) or a
  //     complete new one (put in place at the next start, kRecreated).
  //   - a file that cannot be written (mode 0444 for a non-root daemon, a
  //     read-only filesystem, a directory where the -wal/-shm cannot be
  //     created, a full disk at start) or a damaged one that cannot be moved
  //     aside is read read-only and copied (page by page, or row by row if
  //     damaged) into an in-memory database the store then runs from:
  //     kReadOnlyInMemory, degraded() true. Bans it read are served and new
  //     ones kept, until exit: nothing reaches the file.
  // (fail2ban 1.0.2 only notices damage when reading its version fails; it
  // moves the file to "<dbfile>.<stamp>" without its sidecars, pipes the
  // sqlite3 program's .dump of it into a new file, and deletes that and
  // starts empty if the dump gave nothing. It does not check pages at
  // start, and an unwritable file fails each write rather than running
  // from memory.)
  // It fails only when the fault is not the file's: the directory of
  // `dbfile` does not exist and cannot be created (a configuration error,
  // reported at start as fail2ban does), a newer schema version (another
  // program's file: not ours to move), a lock held past the busy timeout.
  struct Opened {
    std::unique_ptr<BanStore> store;
    OpenReport report;
  };
  static Result<Opened> OpenOrRecover(const std::string& dbfile, const BanStoreOptions& options,
                                      int64_t now);

  BanStore(const BanStore&) = delete;
  BanStore& operator=(const BanStore&) = delete;

  bool enabled() const;                 // false for dbfile = none
  const std::string& filename() const;  // as given to Open()
  // "wal" on a file, "memory" for :memory: or an in-memory copy, "" for none.
  const std::string& journal_mode() const;
  // True when running from an in-memory copy of an unwritable file
  // (OpenReport::State::kReadOnlyInMemory); degraded_reason() is the
  // report's message, for the daemon to log as ERROR every minute.
  bool degraded() const;
  const std::string& degraded_reason() const;

  // dbpurgeage / dbmaxmatches may change while running (fail2ban-client set).
  void set_purge_age(int64_t seconds);
  int64_t purge_age() const;
  void set_max_matches(int n);
  int max_matches() const;

  // --- jails (a jail must be added before its logs and bans: foreign keys) ---
  // addJail: inserts or re-enables.
  Status AddJail(std::string_view jail);
  // delJail: marks it disabled; its rows stay until Purge().
  Status DelJail(std::string_view jail);
  // delAllJails: disables every jail (fail2ban does this when it opens the
  // database, before adding the configured jails).
  Status DelAllJails();
  // Jail names; `enabled` unset: all.
  Result<std::set<std::string>> GetJailNames(std::optional<bool> enabled = std::nullopt);

  // --- logs ---
  // addLog: records `path` for `jail` if it has no row yet (with `pos` and
  // `first_line_md5`), and returns the stored offset to resume from: unset
  // when there is none, or when `first_line_md5` is given and differs from
  // the stored one (the log was rotated: start over). fail2ban passes "" as
  // the md5 of a file without a complete first line.
  Result<std::optional<int64_t>> AddLog(std::string_view jail, std::string_view path, int64_t pos,
                                        std::optional<std::string_view> first_line_md5);
  // The same answer as AddLog without writing anything.
  Result<std::optional<int64_t>> GetLogPosition(std::string_view jail, std::string_view path,
                                                std::optional<std::string_view> first_line_md5);
  // The stored first-line md5 and position of `path` in `jail`, for a
  // reader that compares the hash itself; nullopt if none is stored.
  Result<std::optional<std::pair<std::string, int64_t>>> GetLog(std::string_view jail,
                                                                std::string_view path);
  // updateLog: sets md5 and offset, inserting the row if missing.
  Status UpdateLog(std::string_view jail, std::string_view path, int64_t pos,
                   std::string_view first_line_md5);
  Result<std::set<std::string>> GetLogPaths(std::optional<std::string_view> jail = std::nullopt);
  // getJournalPos / updateJournal: the journal backend keeps its last entry
  // time (a float) in lastfilepos and the ISO form in firstlinemd5, under the
  // path "systemd-journal". Unset: no position stored.
  Result<std::optional<double>> GetJournalPosition(std::string_view jail, std::string_view name);
  Status UpdateJournal(std::string_view jail, std::string_view name, double time,
                       std::string_view iso);

  // --- bans ---
  // addBan: appends to the history (bans) and replaces the ip's row in bips;
  // committed when it returns (or with the enclosing Batch). Matches beyond
  // max_matches() are cut from the front; with max_matches() 0 none are kept.
  Status AddBan(std::string_view jail, const StoredBan& ban);
  // delBan: forgets these ips' bans in `jail` (history and bips).
  Status DelBans(std::string_view jail, std::span<const std::string> ips);
  Status DelBan(std::string_view jail, const std::string& ip) { return DelBans(jail, {&ip, 1}); }
  // delBan without ips: forgets every ban of `jail`.
  Status DelAllBans(std::string_view jail);

  // getBans: the history, ordered by ip then newest first. `bantime` set and
  // >= 0: only bans made after now - bantime. bantime/bancount of the
  // results are as stored; data.matches are not cut.
  struct BansQuery {
    std::optional<std::string> jail = {};
    std::optional<std::string> ip = {};
    std::optional<int64_t> bantime = {};
    int64_t now = 0;
  };
  Result<std::vector<StoredBan>> GetBans(const BansQuery& query);
  // Reads between BeginRead() and EndRead() see one state of the file:
  // what other connections commit meanwhile is not seen by any of them. For
  // a connection that only reads; without a database both do nothing.
  Status BeginRead();
  Status EndRead();

  // getCurrentBans: the bans to restore, ordered by ip; see CurrentBansQuery.
  Result<std::vector<StoredBan>> GetCurrentBans(const CurrentBansQuery& query);

  // getBan: the ip's ban history from bips; unset if it was never banned
  // (within the window). `jail` unset or `overall_jails`: across all jails.
  // `forbantime`: only bans after now - forbantime; `fromtime`: only after it.
  struct BanHistoryQuery {
    std::string ip = {};
    std::optional<std::string> jail = {};
    bool overall_jails = false;
    std::optional<int64_t> forbantime = {};
    std::optional<int64_t> fromtime = {};
    int64_t now = 0;
  };
  Result<std::optional<BanHistoryRow>> GetBan(const BanHistoryQuery& query);

  // --- failure windows (table bantam_failure_log; not in fail2ban) ---
  // A log: inside the turn's Batch the daemon appends the current state of
  // each window that changed (PutFailure), or that the window is gone
  // (DelFailure: banned, expired, evicted); the latest row of a (jail, ip)
  // is its state. At start it restores the windows still inside findtime.
  // No foreign key: the jail need not be added first.
  Status PutFailure(std::string_view jail, const StoredFailure& failure);
  Status DelFailure(std::string_view jail, std::string_view ip);
  // Every window of `jail`.
  Status DelFailures(std::string_view jail);
  // Drops the rows later ones superseded, and the ends of windows, in one
  // transaction (not inside a Batch). Its cost grows with the table: the
  // daemon calls it when failure_rows_appended() outgrows the windows held.
  Status CompactFailures();
  // Put/DelFailure calls since this store was opened or last compacted.
  uint64_t failure_rows_appended() const;

  // --- WAL checkpoints ---
  // SQLite's own checkpoint runs inside the COMMIT that takes the WAL past
  // 1000 pages: a copy of those pages into the database file and an fsync,
  // on the ban path of whichever turn commits then. The store checkpoints
  // inside COMMIT only past kWalForceCheckpointPages (a bound on the WAL's
  // size in a long burst); below it the daemon calls Checkpoint() when it
  // is quiet. Durability is the same either way: with synchronous=NORMAL a
  // commit is in the WAL before COMMIT returns, checkpointed or not.
  static constexpr int kWalCheckpointPages = 1000;
  static constexpr int kWalForceCheckpointPages = 16384;  // 64 MiB of 4 KiB pages
  // Pages in the WAL since its last checkpoint (0 but for a WAL file).
  int wal_pages() const;
  // A passive checkpoint (never waits for readers) when the WAL holds at
  // least kWalCheckpointPages; `force`: whenever it holds any.
  Status Checkpoint(bool force = false);
  // Frees what SQLite's page cache holds beyond what is in use (it grows
  // up to 32 MiB in a burst; pages are read back as needed).
  void ReleaseMemory();
  // The windows of `jail` whose last failure is after `since` (the caller
  // passes now - findtime, FailManager's cleanup bound), least recently
  // failing first: the order FailManager keeps them in.
  Result<std::vector<StoredFailure>> GetFailures(std::string_view jail, double since);

  // purge: drops history older than purge_age(), bips rows whose ban ended
  // outdated_factor bantimes before that (never permanent ones), failure
  // windows older than purge_age() or of jails that are disabled or gone,
  // and disabled jails that have no bans left.
  Status Purge(int64_t now);

  // Batch: groups writes into one transaction: the daemon's loop turn
  // (bans, UpdateLog/UpdateJournal positions, Put/DelFailure), bulk imports.
  // Any write of this class made while a Batch is open joins it, and a write
  // that fails inside it undoes only itself (a savepoint). Writes inside are
  // durable only after Commit(); destroying an uncommitted Batch rolls them
  // back. At most one at a time; the BanStore must outlive it.
  //
  // Commit() ends the batch whatever happens. On failure (disk full, I/O
  // error, lock timeout) it returns the error and everything written in the
  // batch is rolled back: nothing of it reaches the file, no transaction is
  // left open, and the store stays usable, so the caller keeps the turn's
  // content and writes it again in the next BeginBatch(). If SQLite itself
  // aborted the transaction under a write (SQLITE_FULL can), later writes in
  // that batch fail with "...: the batch was rolled back: <first error>"
  // rather than committing on their own, and Commit() returns that error.
  class Batch {
   public:
    Batch(Batch&& other) noexcept;
    Batch& operator=(Batch&&) = delete;
    Batch(const Batch&) = delete;
    ~Batch();
    Status Commit();

   private:
    friend class BanStore;
    explicit Batch(BanStore* store) : store_(store) {}
    BanStore* store_;  // null once committed, rolled back or moved from
  };
  Result<Batch> BeginBatch();

  // Test seam for disk-full: caps the file at `pages` pages (PRAGMA
  // max_page_count) so a write needing more fails with SQLITE_FULL.
  Status SetMaxPageCountForTesting(int64_t pages);

 private:
  struct Impl;
  explicit BanStore(std::unique_ptr<Impl> impl);
  static Status OpenFile(Impl* impl);
  static Result<Opened> OpenInMemory(const std::string& dbfile, const BanStoreOptions& options,
                                     const std::string& source, std::string why);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantam

#endif  // BANTAM_BAN_STORE_H_
