// The daemon's loop turn as the store sees it (issue 20): one Batch holding
// the turn's bans, log/journal positions and failure windows; what a full
// disk does to it; that kill -9 never loses or halves a committed turn; and
// that fail2ban still reads a file carrying our failures table.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../testing/temp_tree.h"
#include "bantam/ban_store.h"
#include "store_test_util.h"

namespace bantam {
namespace {

using store_test::Ban;
using store_test::Ip;
using store_test::RawSql;
using testing::TempTree;

std::unique_ptr<BanStore> MustOpen(const std::string& path, const BanStoreOptions& opts = {}) {
  auto store = BanStore::Open(path, opts);
  EXPECT_TRUE(store.ok()) << store.status().message();
  return store.ok() ? std::move(*store) : nullptr;
}

StoredFailure Fail(std::string ip, double first, double last, int64_t retry,
                   std::vector<std::string> matches = {}) {
  StoredFailure f;
  f.ip = std::move(ip);
  f.first_time = first;
  f.last_time = last;
  f.retry = retry;
  f.attempts = retry;
  f.data.matches = std::move(matches);
  return f;
}

std::vector<std::string> FailIps(const std::vector<StoredFailure>& fs) {
  std::vector<std::string> out;
  for (const auto& f : fs) out.push_back(f.ip);
  return out;
}

template <class T>
T Val(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : T{};
}

// ---------------------------------------------------------------------------

TEST(BanStoreTurnTest, FailureWindowsRoundTripUpsertAndDelete) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  StoredFailure a = Fail("192.0.2.1", 100.25, 150.5, 2, {"line 1", "line \"2\" ü"});
  a.attempts = 3;
  a.ban_count = 1;
  a.data.extra.emplace_back("user", Value(std::string("root")));
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->AddJail("sshd").ok());
    ASSERT_TRUE(store->PutFailure("sshd", Fail("2001:db8::1", 100, 150.5, 1)).ok());
    ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.2", 110, 120, 1)).ok());
    ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.1", 90, 95, 1)).ok());
    // The same (jail, ip) again replaces its row.
    ASSERT_TRUE(store->PutFailure("sshd", a).ok());
    // Another jail's window for the same ip is its own row; no AddJail
    // needed (no foreign key).
    ASSERT_TRUE(store->PutFailure("web", Fail("192.0.2.1", 1, 2, 1)).ok());
    // Least recently failing first; ties by ip.
    EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 0))),
              (std::vector<std::string>{"192.0.2.2", "192.0.2.1", "2001:db8::1"}));
    // Only windows whose last failure is after `since`.
    EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 120))),
              (std::vector<std::string>{"192.0.2.1", "2001:db8::1"}));
    EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 150.5))), std::vector<std::string>{});
    ASSERT_TRUE(store->DelFailure("sshd", "192.0.2.2").ok());
    ASSERT_TRUE(store->DelFailure("sshd", "198.51.100.1").ok());  // none: fine
  }
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  auto got = Val(store->GetFailures("sshd", 0));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], a);
  EXPECT_EQ(FailIps(Val(store->GetFailures("web", 0))), std::vector<std::string>{"192.0.2.1"});
  ASSERT_TRUE(store->DelFailures("sshd").ok());
  EXPECT_TRUE(Val(store->GetFailures("sshd", 0)).empty());
  EXPECT_EQ(Val(store->GetFailures("web", 0)).size(), 1u);
  // Stored compactly: the count lives in its column, not in the JSON.
  EXPECT_EQ(RawSql(path, "SELECT data FROM bantam_failure_log"), "{\"matches\": []}\n");
}

// The windows are a log: a change appends a row (the latest row of an ip is
// its state; an end is a row of its own), and compaction keeps the latest
// live row of each window only, with the same windows read back.
TEST(BanStoreTurnTest, FailureLogAppendsAndCompactionKeepsTheLatestRows) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.1", 100, 100 + i, i)).ok());
  }
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.2", 100, 101, 1)).ok());
  ASSERT_TRUE(store->DelFailure("sshd", "192.0.2.2").ok());
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.3", 100, 101, 1)).ok());
  ASSERT_TRUE(store->DelFailure("sshd", "192.0.2.3").ok());
  // Back after its end: the new window counts, not the old one.
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.3", 200, 200, 1)).ok());
  ASSERT_TRUE(store->PutFailure("web", Fail("192.0.2.1", 100, 101, 1)).ok());
  EXPECT_EQ(store->failure_rows_appended(), 9u);
  EXPECT_EQ(RawSql(path, "SELECT count(*) FROM bantam_failure_log"), "9\n");
  const std::vector<StoredFailure> before = Val(store->GetFailures("sshd", 0));
  ASSERT_EQ(FailIps(before), (std::vector<std::string>{"192.0.2.1", "192.0.2.3"}));
  EXPECT_EQ(before[0].retry, 3);
  EXPECT_EQ(before[1].first_time, 200);

  ASSERT_TRUE(store->CompactFailures().ok());
  EXPECT_EQ(store->failure_rows_appended(), 0u);
  EXPECT_EQ(RawSql(path, "SELECT jail, ip, retry FROM bantam_failure_log ORDER BY seq"),
            "sshd|192.0.2.1|3\nsshd|192.0.2.3|1\nweb|192.0.2.1|1\n");
  EXPECT_EQ(Val(store->GetFailures("sshd", 0)), before);
  // Appends go on after compaction.
  ASSERT_TRUE(store->DelFailure("sshd", "192.0.2.1").ok());
  EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 0))), std::vector<std::string>{"192.0.2.3"});
}

TEST(BanStoreTurnTest, FailureWindowsOutliveDelJailUntilPurge) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"), {.purge_age = 1000});
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->AddJail("web").ok());
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.1", 9000, 9500, 1)).ok());
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.2", 8000, 8999, 1)).ok());  // old
  ASSERT_TRUE(store->PutFailure("web", Fail("192.0.2.3", 9000, 9500, 1)).ok());
  // A stopped jail keeps its windows: the daemon marks every jail disabled
  // at stop (as fail2ban does) and restores them at the next start.
  ASSERT_TRUE(store->DelJail("web").ok());
  EXPECT_EQ(Val(store->GetFailures("web", 0)).size(), 1u);
  ASSERT_TRUE(store->Purge(10000).ok());
  EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 0))), std::vector<std::string>{"192.0.2.1"});
  EXPECT_TRUE(Val(store->GetFailures("web", 0)).empty());
  EXPECT_EQ(*store->GetJailNames(), (std::set<std::string>{"sshd"}));
}

// One turn: bans, positions and windows in one Batch, visible to another
// reader only once committed, all or nothing.
TEST(BanStoreTurnTest, BatchCarriesBansPositionsAndFailureWindows) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.9", 10, 20, 2)).ok());
  auto turn = [&]() {
    ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.9", 30, 600)).ok());
    ASSERT_TRUE(store->DelFailure("sshd", "192.0.2.9").ok());
    ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.10", 25, 30, 1)).ok());
    ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/auth.log", 1234, "md5a").ok());
    ASSERT_TRUE(store->UpdateJournal("sshd", "systemd-journal", 1700000000.25, "iso").ok());
  };
  const std::string kBefore = "0\n192.0.2.9\n0\n";
  const char* kState =
      "SELECT count(*) FROM bans; SELECT ip FROM bantam_failure_log l WHERE retry IS NOT NULL AND"
      " seq = (SELECT max(seq) FROM bantam_failure_log WHERE jail = l.jail AND ip = l.ip);"
      " SELECT count(*) FROM logs";
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok()) << batch.status().message();
    turn();
    EXPECT_EQ(RawSql(path, kState), kBefore);  // another connection: not yet
  }                                            // dropped: rolled back
  EXPECT_EQ(RawSql(path, kState), kBefore);
  EXPECT_TRUE(Val(store->GetLog("sshd", "/var/log/auth.log")) == std::nullopt);
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok()) << batch.status().message();
    turn();
    EXPECT_EQ(RawSql(path, kState), kBefore);
    ASSERT_TRUE(batch->Commit().ok());
  }
  EXPECT_EQ(RawSql(path, kState), "1\n192.0.2.10\n2\n");
  EXPECT_EQ(*Val(store->GetLog("sshd", "/var/log/auth.log")),
            (std::pair<std::string, int64_t>("md5a", 1234)));
  EXPECT_EQ(*Val(store->GetJournalPosition("sshd", "systemd-journal")), 1700000000.25);
}

// A turn's worth of content: `bans` bans with long lines, a position, windows.
Status WriteTurn(BanStore& s, int first, int bans, std::vector<Status>* errors) {
  auto batch = s.BeginBatch();
  if (!batch.ok()) return batch.status();
  auto note = [&](Status st) {
    if (!st.ok()) errors->push_back(std::move(st));
  };
  const std::string pad(200, 'x');
  for (int i = first; i < first + bans; ++i) {
    note(s.AddBan("sshd", Ban(Ip(i), 1000 + i, -1, 1, {"Failed password " + pad + Ip(i)})));
    note(s.PutFailure("sshd", Fail(Ip(i + 100000), 1000, 1000 + i, 1, {pad})));
  }
  note(s.UpdateLog("sshd", "/var/log/auth.log", first + bans, "md5"));
  return batch->Commit();
}

TEST(BanStoreTurnTest, DiskFullRollsTheTurnBackAndTheRetryCommitsIt) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.1", 1000, -1)).ok());
  const int64_t pages = std::stoll(RawSql(path, "PRAGMA page_count"));
  ASSERT_TRUE(store->SetMaxPageCountForTesting(pages).ok());

  std::vector<Status> errors;
  Status commit = WriteTurn(*store, 0, 500, &errors);
  ASSERT_FALSE(commit.ok());
  EXPECT_EQ(commit.message().rfind(path + ": the batch was rolled back: " + path + ": ", 0), 0u)
      << commit.message();
  EXPECT_NE(commit.message().find("database or disk is full"), std::string::npos)
      << commit.message();
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].message().find("database or disk is full"), std::string::npos)
      << errors[0].message();
  // Writes after the first failure did not run on their own.
  for (size_t i = 1; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i].message().rfind(path + ": the batch was rolled back: ", 0), 0u)
        << errors[i].message();
  }
  // Nothing of the turn reached the file; the store is usable.
  EXPECT_EQ(Val(store->GetBans({})).size(), 1u);
  EXPECT_TRUE(Val(store->GetFailures("sshd", 0)).empty());
  EXPECT_EQ(Val(store->GetLog("sshd", "/var/log/auth.log")), std::nullopt);
  EXPECT_EQ(RawSql(path, "SELECT count(*) FROM bans"), "1\n");
  // A small write still fits and commits on its own.
  ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/other.log", 1, "m").ok());

  // Room again: the daemon writes the same turn again.
  ASSERT_TRUE(store->SetMaxPageCountForTesting(1 << 30).ok());
  errors.clear();
  Status retry = WriteTurn(*store, 0, 500, &errors);
  ASSERT_TRUE(retry.ok()) << retry.message();
  EXPECT_TRUE(errors.empty());
  store.reset();
  EXPECT_EQ(RawSql(path,
                   "PRAGMA quick_check; SELECT count(*) FROM bans; SELECT count(*) FROM "
                   "bantam_failure_log; SELECT lastfilepos FROM logs WHERE path='/var/log/auth.log'"),
            "ok\n501\n500\n500\n");
}

// The same with a real filesystem running out of space (a 1 MiB tmpfs in a
// private mount namespace, gone with the child that made it): the failure
// comes from write(2) at COMMIT rather than from a page limit.
TEST(BanStoreTurnTest, RealDiskFullRollsTheTurnBackAndTheRetryCommitsIt) {
  TempTree tmp;
  const std::string mnt = tmp.Path("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  std::string r = store_test::InChild([&]() -> std::string {
    CHILD_CHECK(::unshare(CLONE_NEWNS) == 0, std::strerror(errno));
    CHILD_CHECK(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
                std::strerror(errno));
    CHILD_CHECK(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") == 0, std::strerror(errno));
    const std::string path = mnt + "/db";
    auto opened = BanStore::Open(path);
    CHILD_CHECK(opened.ok(), opened.status().message());
    BanStore& s = **opened;
    CHILD_CHECK(s.AddJail("sshd").ok(), "");
    // Fill what is left.
    const std::string filler_path = mnt + "/filler";
    {
      std::ofstream filler(filler_path, std::ios::binary);
      const std::string block(4096, 'f');
      while (filler.write(block.data(), block.size()) && filler.flush()) {
      }
    }
    std::vector<Status> errors;
    Status commit = WriteTurn(s, 0, 300, &errors);
    CHILD_CHECK(!commit.ok(), "the turn committed on a full disk");
    // Every write fitted in the page cache: it is COMMIT, writing the -wal,
    // that failed.
    CHILD_CHECK(errors.empty(), errors[0].message());
    CHILD_CHECK(commit.message() == path + ": COMMIT: database or disk is full", commit.message());
    auto bans = s.GetBans({});
    CHILD_CHECK(bans.ok() && bans->empty(), "part of the turn is visible");
    CHILD_CHECK(RawSql(path, "SELECT count(*) FROM bans") == "0\n", "");

    CHILD_CHECK(::unlink(filler_path.c_str()) == 0, std::strerror(errno));
    errors.clear();
    Status retry = WriteTurn(s, 0, 300, &errors);
    CHILD_CHECK(retry.ok(), retry.message());
    CHILD_CHECK(errors.empty(), errors[0].message());
    opened->reset();
    const std::string state = RawSql(path,
                                     "PRAGMA quick_check; SELECT count(*) FROM bans;"
                                     " SELECT count(*) FROM bantam_failure_log");
    CHILD_CHECK(state == "ok\n300\n300\n", state);
    return "";
  });
  EXPECT_EQ(r, "ok");
}

// kill -9 at any moment: every turn the process saw committed is there in
// full, and no turn is there in part.
TEST(BanStoreTurnTest, Kill9NeverLosesOrHalvesACommittedTurn) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->AddJail("sshd").ok());
  }
  int reported = -1;
  int next = 0;
  for (int round = 0; round < 8; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const int first = next;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto child = BanStore::Open(path);
      if (!child.ok()) ::_exit(2);
      BanStore& s = **child;
      for (int t = first;; ++t) {
        auto batch = s.BeginBatch();
        if (!batch.ok()) ::_exit(3);
        // Turn t: ban t, the window that led to it goes, a new one comes,
        // and the log and journal positions say t.
        bool ok = s.AddBan("sshd", Ban(Ip(t), 1000 + t, -1)).ok() &&
                  s.DelFailure("sshd", Ip(t)).ok() &&
                  s.PutFailure("sshd", Fail(Ip(t + 1), 1000, 1000 + t, 1)).ok() &&
                  s.UpdateLog("sshd", "/var/log/auth.log", t, "md5").ok() &&
                  s.UpdateJournal("sshd", "systemd-journal", t, "iso").ok();
        if (!ok || !batch->Commit().ok()) ::_exit(4);
        std::string line = std::to_string(t) + "\n";
        if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          ::_exit(5);
        }
      }
    }
    ::close(fds[1]);
    const int want = 1 + (round * 13) % 50;
    FILE* in = ::fdopen(fds[0], "r");
    char buf[64];
    int got = 0;
    while (got < want && std::fgets(buf, sizeof buf, in)) {
      reported = std::max(reported, std::atoi(buf));
      ++got;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    while (std::fgets(buf, sizeof buf, in)) reported = std::max(reported, std::atoi(buf));
    std::fclose(in);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    // The next child resumes after what is on file.
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    auto pos = Val(store->GetLog("sshd", "/var/log/auth.log"));
    ASSERT_TRUE(pos.has_value());
    const int last = static_cast<int>(pos->second);
    ASSERT_GE(last, reported) << "a committed turn was lost";
    // Everything up to `last` and nothing more, consistently across tables.
    EXPECT_EQ(Val(store->GetBans({})).size(), static_cast<size_t>(last + 1));
    EXPECT_EQ(Val(store->GetBans({.ip = Ip(last)})).size(), 1u);
    EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 0))), std::vector<std::string>{Ip(last + 1)});
    EXPECT_EQ(*Val(store->GetJournalPosition("sshd", "systemd-journal")), last);
    next = last + 1;
  }
  EXPECT_EQ(RawSql(path, "PRAGMA integrity_check"), "ok\n");
}

// SQLite's auto-checkpoint copied the WAL into the file inside whichever
// COMMIT took it past 1000 pages, on the path of that turn's bans: the WAL
// now grows past that until Checkpoint() (the daemon calls it when quiet),
// up to kWalForceCheckpointPages, and what was committed is readable from
// a second connection before and after.
TEST(BanStoreTurnTest, CommitsLeaveTheWalCheckpointToCheckpoint) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  ASSERT_EQ(store->journal_mode(), "wal");
  ASSERT_TRUE(store->AddJail("sshd").ok());
  const std::string big(2000, 'x');
  int i = 0;
  while (store->wal_pages() <= BanStore::kWalCheckpointPages + 100) {
    ASSERT_LT(i, 20000) << "the WAL does not grow";
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok());
    for (int k = 0; k < 20; ++k, ++i) {
      ASSERT_TRUE(store->PutFailure("sshd", Fail(Ip(i), 1000, 1000 + i, 1, {big})).ok());
    }
    ASSERT_TRUE(batch->Commit().ok());
  }
  const uintmax_t wal_size = std::filesystem::file_size(path + "-wal");
  EXPECT_GT(wal_size, static_cast<uintmax_t>(BanStore::kWalCheckpointPages) * 4096);
  EXPECT_EQ(RawSql(path, "SELECT count(*) FROM bantam_failure_log"), std::to_string(i) + "\n");
  // Below the threshold nothing happens; past it the pages go to the file.
  ASSERT_TRUE(store->Checkpoint().ok());
  EXPECT_EQ(store->wal_pages(), 0);
  ASSERT_TRUE(store->PutFailure("sshd", Fail(Ip(i), 1000, 1000 + i, 1)).ok());
  EXPECT_GT(store->wal_pages(), 0);
  EXPECT_LT(store->wal_pages(), BanStore::kWalCheckpointPages);
  ASSERT_TRUE(store->Checkpoint().ok());
  EXPECT_GT(store->wal_pages(), 0);
  ASSERT_TRUE(store->Checkpoint(/*force=*/true).ok());
  EXPECT_EQ(store->wal_pages(), 0);
  EXPECT_EQ(RawSql(path, "SELECT count(*) FROM bantam_failure_log"), std::to_string(i + 1) + "\n");
  EXPECT_EQ(RawSql(path, "PRAGMA integrity_check"), "ok\n");
}

// Not a timed test: what one turn's transaction costs on the event loop,
// for the report.
TEST(BanStoreTurnTest, TurnCostNote) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  // A realistic standing population: 5000 windows, 1000 bans.
  {
    std::vector<Status> errors;
    for (int k = 0; k < 5; ++k) ASSERT_TRUE(WriteTurn(*store, k * 1000, 1000, &errors).ok());
  }
  using Clock = std::chrono::steady_clock;
  const std::vector<std::string> matches = {
      "2026-12-05 12:00:00 sshd[123]: Failed password for root from 203.0.113.5 port 2222 ssh2",
      "2026-12-05 12:00:01 sshd[123]: Failed password for root from 203.0.113.5 port 2223 ssh2",
      "2026-12-05 12:00:02 sshd[123]: Failed password for root from 203.0.113.5 port 2224 ssh2"};
  // The cost follows the pages a turn dirties (each goes to the -wal once
  // per commit): the kept match lines are most of a row.
  struct Case {
    int upserts;
    bool with_matches;
  };
  for (const Case c : {Case{1, true}, Case{100, true}, Case{1000, true}, Case{1000, false}}) {
    const int upserts = c.upserts;
    std::vector<double> ms, commit_ms;
    for (int rep = 0; rep < 21; ++rep) {
      auto t0 = Clock::now();
      auto batch = store->BeginBatch();
      ASSERT_TRUE(batch.ok());
      for (int i = 0; i < upserts; ++i) {
        StoredFailure f = Fail(Ip(100000 + (i * 7 + rep) % 5000), 1000, 2000 + rep, 2,
                               c.with_matches ? matches : std::vector<std::string>{});
        ASSERT_TRUE(store->PutFailure("sshd", f).ok());
      }
      ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/auth.log", 1000 + rep, "md5").ok());
      auto t1 = Clock::now();
      ASSERT_TRUE(batch->Commit().ok());
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      commit_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
    }
    std::sort(ms.begin(), ms.end());
    std::sort(commit_ms.begin(), commit_ms.end());
    std::printf(
        "[perf] turn with %4d failure upserts (%s) + 1 position: median %.3f ms (COMMIT %.3f), "
        "max %.3f ms\n",
        upserts, c.with_matches ? "3 match lines each" : "no match lines", ms[ms.size() / 2],
        commit_ms[commit_ms.size() / 2], ms.back());
  }
  // And the check the daemon's open now runs.
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok());
    for (int i = 0; i < 100000; ++i) {
      ASSERT_TRUE(store->AddBan("sshd", Ban(Ip(i), 1000, 86400, 1, {matches[0]})).ok());
    }
    ASSERT_TRUE(batch->Commit().ok());
  }
  store.reset();
  auto t0 = Clock::now();
  auto opened = BanStore::OpenOrRecover(path, {}, 0);
  const double open_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_TRUE(opened.ok());
  ASSERT_EQ(opened->report.state, OpenReport::State::kOk);
  t0 = Clock::now();
  auto strict = BanStore::Open(path);
  const double strict_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_TRUE(strict.ok());
  std::printf(
      "[perf] open of a %ld KiB file (101k bans): OpenOrRecover (quick_check) %.1f ms, "
      "Open %.1f ms\n",
      static_cast<long>(std::filesystem::file_size(path) / 1024), open_ms, strict_ms);
}

// fail2ban opens, reads, writes and purges a file that carries our table,
// and leaves the table alone.
TEST(BanStoreFail2banTest, FailuresTableDoesNotDisturbFail2ban) {
  TempTree tmp;
  const std::string path = tmp.Path("f2b.sqlite3");
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->AddJail("sshd").ok());
    ASSERT_TRUE(store->AddJail("gone").ok());
    ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.1", 2000, 600, 1, {"line a"}, 3)).ok());
    ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/auth.log", 77, "abc").ok());
    ASSERT_TRUE(store->PutFailure("sshd", Fail("192.0.2.2", 2000, 2050, 2, {"line b"})).ok());
    ASSERT_TRUE(store->PutFailure("gone", Fail("192.0.2.3", 2000, 2050, 1)).ok());
  }
  tmp.Write("driver.py", R"PY(
import sys
from fail2ban.server.database import Fail2BanDb
from fail2ban.server.ticket import BanTicket
from fail2ban.server.mytime import MyTime
class Actions:
    def getBanTime(self): return 600
class Jail:
    def __init__(self, name): self.name = name; self.actions = Actions()
    def getMaxBanTime(self): return 600
MyTime.setTime(2100)
db = Fail2BanDb(sys.argv[1])
sshd, gone = Jail('sshd'), Jail('gone')
print('version', db._db.execute('SELECT version FROM fail2banDb').fetchone()[0])
# (getJailNames() returns one name only: it fetches with fetchmany().)
names = lambda: sorted(r[0] for r in db._db.execute('SELECT name FROM jails'))
print('jails', names())
print('current', [(t.getID(), t.getTime(), t.getBanTime(), t.getMatches(), t.getAttempt())
                  for t in db.getCurrentBans(jail=sshd, fromtime=2100)])
print('logs', sorted(db.getLogPaths(sshd)))
tk = BanTicket('203.0.113.9', 2060, ['from fail2ban'])
tk.setBanTime(600)
db.addBan(sshd, tk)
db.delJail(gone)
db.purge()
print('after', names(), len(db.getBans(jail=sshd)))
db.close()
)PY");
  std::string cmd =
      "PYTHONIOENCODING=utf-8 /usr/bin/python3 " + tmp.Path("driver.py") + " " + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  EXPECT_EQ(out,
            "version 4\n"
            "jails ['gone', 'sshd']\n"
            "current [('192.0.2.1', 2000, 600, ['line a'], 3)]\n"
            "logs ['/var/log/auth.log']\n"
            "after ['sshd'] 2\n");
  // fail2ban purged the jail "gone" (no bans), which a foreign key from our
  // table would have refused; our rows are as we left them.
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(FailIps(Val(store->GetFailures("sshd", 0))), std::vector<std::string>{"192.0.2.2"});
  EXPECT_EQ(FailIps(Val(store->GetFailures("gone", 0))), std::vector<std::string>{"192.0.2.3"});
  EXPECT_EQ(Val(store->GetBans({})).size(), 2u);
  // Our purge then drops the windows of a jail that no longer exists.
  ASSERT_TRUE(store->Purge(2100).ok());
  EXPECT_TRUE(Val(store->GetFailures("gone", 0)).empty());
  EXPECT_EQ(Val(store->GetFailures("sshd", 0)).size(), 1u);
}

}  // namespace
}  // namespace bantam
