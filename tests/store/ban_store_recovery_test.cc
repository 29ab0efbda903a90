// BanStore::OpenOrRecover: what the daemon's store does with a damaged or
// unwritable dbfile at start (issue 20), on real files.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "../testing/temp_tree.h"
#include "bantam/ban_store.h"
#include "store_test_util.h"

namespace bantam {
namespace {

using store_test::Ban;
using store_test::Ip;
using store_test::RawSql;
using testing::TempTree;

// 2026-12-05 12:00:00 UTC: names the moved-aside file.
constexpr int64_t kNow = 1796472000;
constexpr char kStamp[] = "20261205-120000";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A database with jail sshd, `bans` bans (each with a match line long
// enough to fill many pages), a log position and a failure window; closed
// cleanly (no -wal left).
void MakeDb(const std::string& path, int bans) {
  auto store = BanStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().message();
  BanStore& s = **store;
  ASSERT_TRUE(s.AddJail("sshd").ok());
  auto batch = s.BeginBatch();
  ASSERT_TRUE(batch.ok());
  for (int i = 0; i < bans; ++i) {
    ASSERT_TRUE(s.AddBan("sshd", Ban(Ip(i), 1000 + i, -1, 1,
                                     {"Failed password for root from " + Ip(i) + " port 22"}))
                    .ok());
  }
  ASSERT_TRUE(s.UpdateLog("sshd", "/var/log/auth.log", 4242, "md5").ok());
  StoredFailure f;
  f.ip = "192.0.2.7";
  f.first_time = 900;
  f.last_time = 950;
  f.retry = 2;
  f.attempts = 2;
  ASSERT_TRUE(s.PutFailure("sshd", f).ok());
  ASSERT_TRUE(batch->Commit().ok());
}

std::string Expected(const std::string& path, const std::string& why, const std::string& rest) {
  return path + ": " + why + "; moved it to " + path + "." + kStamp +
         ".corrupt (with its -wal/-shm) and created a new database; " + rest;
}

size_t CountBans(BanStore& store) {
  auto bans = store.GetBans({});
  EXPECT_TRUE(bans.ok()) << bans.status().message();
  return bans.ok() ? bans->size() : 0;
}

// ---------------------------------------------------------------------------

TEST(BanStoreRecoveryTest, HealthyFileOpensAsItIs) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path, 10);
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(opened->report.state, OpenReport::State::kOk);
  EXPECT_EQ(opened->report.message, "");
  EXPECT_FALSE(opened->store->degraded());
  EXPECT_EQ(opened->store->journal_mode(), "wal");
  EXPECT_EQ(CountBans(*opened->store), 10u);
  for (const auto& e : std::filesystem::directory_iterator(tmp.root())) {
    EXPECT_EQ(e.path().filename().string().find("corrupt"), std::string::npos) << e.path();
  }
}

TEST(BanStoreRecoveryTest, RandomBytesAreMovedAsideAndANewDatabaseMade) {
  TempTree tmp;
  const std::string path = tmp.Path("f2b.sqlite3");
  std::string junk(8192, '\0');
  uint32_t x = 12345;
  for (char& c : junk) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 16);
  }
  WriteFile(path, junk);
  // What a recovery killed half way would have left: rebuilt, not used.
  WriteFile(path + ".salvage", "partial");
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  const std::string moved = path + "." + kStamp + ".corrupt";
  EXPECT_EQ(opened->report.state, OpenReport::State::kRecreated);
  EXPECT_EQ(opened->report.moved_to, moved);
  EXPECT_EQ(opened->report.message,
            Expected(path, "file is not a database",
                     "salvaged 0 bans, 0 current bans (bips), 0 log positions, 0 failure "
                     "windows, 0 jails (the damaged file cannot be read at all)"));
  EXPECT_FALSE(opened->store->degraded());
  EXPECT_EQ(ReadFile(moved), junk);
  EXPECT_FALSE(Exists(path + ".salvage"));
  BanStore& s = *opened->store;
  ASSERT_TRUE(s.AddJail("sshd").ok());
  ASSERT_TRUE(s.AddBan("sshd", Ban("10.0.0.1", 1000, -1)).ok());
  EXPECT_EQ(RawSql(path, "PRAGMA quick_check; SELECT version FROM fail2banDb"), "ok\n4\n");

  // Damaged again in the same second: the first backup is not overwritten.
  opened->store.reset();
  WriteFile(path, junk);
  auto again = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->report.moved_to, moved + ".1");
  EXPECT_EQ(ReadFile(moved + ".1"), junk);
}

TEST(BanStoreRecoveryTest, StrictOpenStillLeavesDamagedFileAlone) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  WriteFile(path, std::string(4096, 'x'));
  auto store = BanStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(ReadFile(path), std::string(4096, 'x'));
}

TEST(BanStoreRecoveryTest, TruncatedFileSalvagesTheRowsBeforeTheCut) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path, 3000);
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(opened->report.state, OpenReport::State::kRecreated);
  const std::string& msg = opened->report.message;
  EXPECT_EQ(msg.rfind(path + ": database disk image is malformed", 0), 0u) << msg;
  EXPECT_NE(msg.find("moved it to " + path + "." + kStamp + ".corrupt"), std::string::npos) << msg;
  const size_t salvaged = CountBans(*opened->store);
  EXPECT_GT(salvaged, 0u) << msg;
  EXPECT_LT(salvaged, 3000u) << msg;
  EXPECT_NE(msg.find("salvaged " + std::to_string(salvaged) + " bans"), std::string::npos) << msg;
  // The jail came back (from its own table or made up for the bans' sake).
  EXPECT_EQ(*opened->store->GetJailNames(), (std::set<std::string>{"sshd"}));
  EXPECT_EQ(RawSql(path, "PRAGMA quick_check"), "ok\n");
}

TEST(BanStoreRecoveryTest, MalformedPageFailsQuickCheckAndRowsAroundItAreSalvaged) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path, 3000);
  // A leaf page of the bans table in the middle of it: the first read of
  // the file does not touch it, only quick_check (or a query) would.
  std::string pages = RawSql(path,
                             "SELECT pageno FROM dbstat WHERE name='bans' AND pagetype='leaf' "
                             "ORDER BY pageno");
  std::vector<int> leaves;
  for (size_t p = 0, e; (e = pages.find('\n', p)) != std::string::npos; p = e + 1) {
    leaves.push_back(std::stoi(pages.substr(p, e - p)));
  }
  ASSERT_GT(leaves.size(), 10u) << pages;
  const int victim = leaves[leaves.size() / 2];
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(victim - 1) * 4096);
    const std::string garbage(4096, '\x55');
    f.write(garbage.data(), garbage.size());
  }
  // A healthy first read: the damage is only found by the check.
  ASSERT_EQ(RawSql(path, "SELECT count(*) FROM sqlite_master WHERE name='bans'"), "1\n");

  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(opened->report.state, OpenReport::State::kRecreated);
  const std::string& msg = opened->report.message;
  EXPECT_EQ(msg.rfind(path + ": database disk image is malformed", 0), 0u) << msg;
  // Only the rows of the damaged page are lost: the scan resumes from the
  // other end.
  const size_t salvaged = CountBans(*opened->store);
  EXPECT_LT(salvaged, 3000u) << msg;
  EXPECT_GT(salvaged, 3000u - 100u) << msg;
  EXPECT_NE(msg.find("salvaged " + std::to_string(salvaged) +
                     " bans, 3000 current bans (bips), "
                     "1 log positions, 1 failure windows, 1 jails (bans: "),
            std::string::npos)
      << msg;
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 5000;
  EXPECT_EQ(opened->store->GetCurrentBans(q)->size(), 3000u);
  EXPECT_EQ(*opened->store->GetLog("sshd", "/var/log/auth.log"),
            (std::pair<std::string, int64_t>("md5", 4242)));
  EXPECT_EQ(opened->store->GetFailures("sshd", 0)->size(), 1u);
}

// A damaged file is moved with its -wal and -shm, under names SQLite pairs
// with the moved file, and the new file does not pick up the old WAL.
TEST(BanStoreRecoveryTest, DamagedFileIsMovedWithItsWalAndShm) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path, 10);
  // A writer killed after committing leaves its -wal and -shm behind.
  std::string r = store_test::InChild([&]() -> std::string {
    auto store = BanStore::Open(path);
    CHILD_CHECK(store.ok(), store.status().message());
    CHILD_CHECK((*store)->AddBan("sshd", Ban("192.0.2.99", 2000, -1)).ok(), "");
    ::_exit(0);  // no close: no checkpoint
  });
  ASSERT_EQ(r, "");
  ASSERT_TRUE(Exists(path + "-wal"));
  ASSERT_TRUE(Exists(path + "-shm"));
  const std::string wal = ReadFile(path + "-wal");
  // Damage the header: "file is not a database".
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.write("garbage garbage!", 16);
  }
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  const std::string moved = path + "." + kStamp + ".corrupt";
  EXPECT_EQ(opened->report.state, OpenReport::State::kRecreated);
  EXPECT_EQ(
      opened->report.message.rfind(path + ": file is not a database; moved it to " + moved, 0), 0u)
      << opened->report.message;
  EXPECT_TRUE(Exists(moved));
  EXPECT_EQ(ReadFile(moved + "-wal"), wal);
  EXPECT_TRUE(Exists(moved + "-shm"));
  EXPECT_EQ(CountBans(*opened->store), 0u);
  EXPECT_EQ(RawSql(path, "PRAGMA quick_check"), "ok\n");
}

TEST(BanStoreRecoveryTest, ReadOnlyFileRunsFromAnInMemoryCopy) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path, 100);
  ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  const std::string before = ReadFile(path);
  std::string r = store_test::InChild([&]() -> std::string {
    CHILD_CHECK(store_test::DropFileModeOverride(), "capset");
    CHILD_CHECK(::open(path.c_str(), O_WRONLY) < 0, "the file is still writable");
    CHILD_CHECK(!BanStore::Open(path).ok(), "strict Open should refuse it");
    auto opened = BanStore::OpenOrRecover(path, {}, kNow);
    CHILD_CHECK(opened.ok(), opened.status().message());
    const OpenReport& rep = opened->report;
    CHILD_CHECK(rep.state == OpenReport::State::kReadOnlyInMemory, rep.message);
    CHILD_CHECK(rep.message == path +
                                   ": attempt to write a readonly database; running from memory: "
                                   "copied it (100 current bans); bans made now are not saved",
                rep.message);
    BanStore& s = *opened->store;
    CHILD_CHECK(s.degraded(), "");
    CHILD_CHECK(s.degraded_reason() == rep.message, s.degraded_reason());
    CurrentBansQuery q;
    q.jail = "sshd";
    q.now = 5000;
    CHILD_CHECK(s.GetCurrentBans(q)->size() == 100, "bans served");
    CHILD_CHECK(s.GetFailures("sshd", 0)->size() == 1, "failures served");
    // It keeps working, in memory.
    CHILD_CHECK(s.AddBan("sshd", Ban("192.0.2.1", 5000, 600)).ok(), "");
    auto batch = s.BeginBatch();
    CHILD_CHECK(batch.ok(), batch.status().message());
    CHILD_CHECK(s.UpdateLog("sshd", "/var/log/auth.log", 5000, "md5").ok(), "");
    CHILD_CHECK(batch->Commit().ok(), "");
    CHILD_CHECK(s.GetCurrentBans(q)->size() == 101, "");
    return "";
  });
  EXPECT_EQ(r, "ok");
  EXPECT_EQ(ReadFile(path), before);
  // Reading a WAL file takes a -wal and -shm beside it (the directory is
  // writable); nothing was written into the -wal.
  EXPECT_EQ(ReadFile(path + "-wal"), "");
}

TEST(BanStoreRecoveryTest, ReadOnlyDirectoryRunsFromAnInMemoryCopy) {
  TempTree tmp;
  const std::string dir = tmp.Path("lib");
  const std::string path = dir + "/db";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  MakeDb(path, 100);
  ASSERT_FALSE(Exists(path + "-wal"));
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  std::string r = store_test::InChild([&]() -> std::string {
    CHILD_CHECK(store_test::DropFileModeOverride(), "capset");
    auto opened = BanStore::OpenOrRecover(path, {}, kNow);
    CHILD_CHECK(opened.ok(), opened.status().message());
    const OpenReport& rep = opened->report;
    CHILD_CHECK(rep.state == OpenReport::State::kReadOnlyInMemory, rep.message);
    CHILD_CHECK(rep.message.rfind(path + ": ", 0) == 0, rep.message);
    CHILD_CHECK(rep.message.find("; running from memory: copied it (100 current bans); bans made "
                                 "now are not saved") != std::string::npos,
                rep.message);
    CurrentBansQuery q;
    q.jail = "sshd";
    q.now = 5000;
    CHILD_CHECK(opened->store->GetCurrentBans(q)->size() == 100, "bans served");
    return "";
  });
  ::chmod(dir.c_str(), 0755);
  EXPECT_EQ(r, "ok");
}

// A read-only filesystem, holding what a killed writer left: committed bans
// still in the -wal. They must be served too.
TEST(BanStoreRecoveryTest, ReadOnlyFilesystemServesBansStillInTheWal) {
  TempTree tmp;
  const std::string mnt = tmp.Path("mnt");
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  const std::string path = mnt + "/db";
  std::string r = store_test::InChild([&]() -> std::string {
    // A private mount namespace: the mount goes away with this child.
    CHILD_CHECK(::unshare(CLONE_NEWNS) == 0, std::strerror(errno));
    CHILD_CHECK(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
                std::strerror(errno));
    CHILD_CHECK(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") == 0, std::strerror(errno));
    std::string w = store_test::InChild([&]() -> std::string {
      auto store = BanStore::Open(path);
      CHILD_CHECK(store.ok(), store.status().message());
      CHILD_CHECK((*store)->AddJail("sshd").ok(), "");
      for (int i = 0; i < 50; ++i) {
        CHILD_CHECK((*store)->AddBan("sshd", Ban(Ip(i), 1000, -1)).ok(), "");
      }
      ::_exit(0);  // killed: no checkpoint, the bans are in the -wal only
    });
    CHILD_CHECK(w.empty(), w);
    CHILD_CHECK(::access((path + "-wal").c_str(), F_OK) == 0, "no -wal left");
    CHILD_CHECK(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") == 0,
                std::strerror(errno));
    auto opened = BanStore::OpenOrRecover(path, {}, kNow);
    CHILD_CHECK(opened.ok(), opened.status().message());
    const OpenReport& rep = opened->report;
    CHILD_CHECK(rep.state == OpenReport::State::kReadOnlyInMemory, rep.message);
    CurrentBansQuery q;
    q.jail = "sshd";
    q.now = 5000;
    const size_t n = opened->store->GetCurrentBans(q)->size();
    CHILD_CHECK(n == 50, std::to_string(n) + " bans served; " + rep.message);
    return "";
  });
  EXPECT_EQ(r, "ok");
}

// Killed after the damaged file was moved aside and before the new one
// took its name: the next start puts the new one (complete: it was closed
// before the move) in place rather than starting empty.
TEST(BanStoreRecoveryTest, InterruptedRecoveryPutsTheNewFileInPlace) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  MakeDb(path + ".salvage", 20);
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(opened->report.state, OpenReport::State::kRecreated);
  EXPECT_EQ(opened->report.message, path + ": put in place the new database " + path +
                                        ".salvage that an interrupted recovery had made");
  EXPECT_EQ(CountBans(*opened->store), 20u);
  EXPECT_FALSE(Exists(path + ".salvage"));
}

TEST(BanStoreRecoveryTest, MissingDirectoryIsAConfigurationError) {
  TempTree tmp;
  tmp.Write("file", "x");
  auto opened = BanStore::OpenOrRecover(tmp.Path("file/sub/db"), {}, kNow);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().message(), tmp.Path("file/sub") + ": Not a directory");
  auto relative = BanStore::OpenOrRecover("no-such-dir-here/db", {}, kNow);
  ASSERT_FALSE(relative.ok());
  EXPECT_EQ(relative.status().message(), "no-such-dir-here: No such file or directory");
}

TEST(BanStoreRecoveryTest, NewerSchemaIsRefusedAndLeftAlone) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  RawSql(path, "CREATE TABLE fail2banDb(version INTEGER); INSERT INTO fail2banDb VALUES(5);");
  const std::string before = ReadFile(path);
  auto opened = BanStore::OpenOrRecover(path, {}, kNow);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().message(),
            path + ": schema version 5 is newer than this bantam supports (4)");
  EXPECT_EQ(ReadFile(path), before);
}

TEST(BanStoreRecoveryTest, NoneAndMemoryOpenAsBefore) {
  auto none = BanStore::OpenOrRecover("None", {}, kNow);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->store->enabled());
  EXPECT_EQ(none->report.state, OpenReport::State::kOk);
  auto mem = BanStore::OpenOrRecover(":memory:", {}, kNow);
  ASSERT_TRUE(mem.ok());
  EXPECT_TRUE(mem->store->enabled());
  EXPECT_FALSE(mem->store->degraded());
}

}  // namespace
}  // namespace bantam
