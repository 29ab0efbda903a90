#include "bantam/ban_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../testing/temp_tree.h"
#include "store_test_util.h"

namespace bantam {
namespace {

using testing::TempTree;

// fail2ban's interpreter; `python3` on PATH may be another one.
constexpr char kFail2banPython[] = "/usr/bin/python3";

std::unique_ptr<BanStore> MustOpen(const std::string& path, const BanStoreOptions& opts = {}) {
  auto store = BanStore::Open(path, opts);
  EXPECT_TRUE(store.ok()) << store.status().message();
  if (!store.ok()) return nullptr;
  return std::move(*store);
}

StoredBan Ban(std::string ip, int64_t time, int64_t bantime, int64_t bancount,
              std::vector<std::string> matches = {}, int64_t failures = 1) {
  StoredBan b;
  b.ip = std::move(ip);
  b.time = time;
  b.bantime = bantime;
  b.bancount = bancount;
  b.data.matches = std::move(matches);
  b.data.failures = failures;
  return b;
}

// The value of an OK result, by value: safe in a range-for over a temporary.
template <class T>
T Val(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : T{};
}

std::vector<std::string> Ips(const std::vector<StoredBan>& bans) {
  std::vector<std::string> out;
  for (const auto& b : bans) out.push_back(b.ip);
  return out;
}

using store_test::RawSql;  // builds old schemas and inspects raw rows

// ---------------------------------------------------------------------------

TEST(BanStoreTest, CreatesFail2banSchemaVersion4InWalMode) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("f2b.sqlite3"));
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->enabled());
  EXPECT_EQ(store->journal_mode(), "wal");
  EXPECT_EQ(RawSql(tmp.Path("f2b.sqlite3"), "SELECT version FROM fail2banDb"), "4\n");
  EXPECT_EQ(RawSql(tmp.Path("f2b.sqlite3"),
                   "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"),
            "bans\nbans_ip\nbans_jail_ip\nbans_jail_timeofban_ip\nbantam_failure_log\nbips\nbips_ip\n"
            "bips_timeofban\nfail2banDb\njails\njails_name\nlogs\nlogs_jail_path\nlogs_path\n");
}

TEST(BanStoreTest, OpenCreatesLastDirectoryLevel) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("lib/f2b.sqlite3"));
  ASSERT_TRUE(store);
}

TEST(BanStoreTest, JailsAddDisableReenablePurge) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->AddJail("web").ok());
  ASSERT_TRUE(store->AddJail("sshd").ok());  // again: no duplicate
  EXPECT_EQ(*store->GetJailNames(), (std::set<std::string>{"sshd", "web"}));
  ASSERT_TRUE(store->DelJail("web").ok());
  EXPECT_EQ(*store->GetJailNames(true), (std::set<std::string>{"sshd"}));
  EXPECT_EQ(*store->GetJailNames(false), (std::set<std::string>{"web"}));
  ASSERT_TRUE(store->DelAllJails().ok());
  EXPECT_EQ(*store->GetJailNames(true), (std::set<std::string>{}));
  ASSERT_TRUE(store->AddJail("sshd").ok());  // re-enables
  EXPECT_EQ(*store->GetJailNames(true), (std::set<std::string>{"sshd"}));
  // A disabled jail without bans is forgotten by Purge.
  ASSERT_TRUE(store->Purge(1000000).ok());
  EXPECT_EQ(*store->GetJailNames(), (std::set<std::string>{"sshd"}));
}

TEST(BanStoreTest, LogPositionResumesOnlyWithSameFirstLine) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  // First sight: nothing to resume; the row is created.
  auto pos = store->AddLog("sshd", "/var/log/auth.log", 0, "md5-a");
  ASSERT_TRUE(pos.ok()) << pos.status().message();
  EXPECT_FALSE(pos->has_value());
  EXPECT_EQ(*store->GetLogPaths(), (std::set<std::string>{"/var/log/auth.log"}));
  ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/auth.log", 4242, "md5-a").ok());
  // Restart: same first line resumes; a rotated file (new md5) starts over.
  EXPECT_EQ(**store->AddLog("sshd", "/var/log/auth.log", 0, "md5-a"), 4242);
  EXPECT_FALSE(store->AddLog("sshd", "/var/log/auth.log", 0, "md5-b")->has_value());
  EXPECT_EQ(**store->GetLogPosition("sshd", "/var/log/auth.log", "md5-a"), 4242);
  EXPECT_FALSE(store->GetLogPosition("sshd", "/var/log/auth.log", "md5-b")->has_value());
  EXPECT_EQ(**store->GetLogPosition("sshd", "/var/log/auth.log", std::nullopt), 4242);
  EXPECT_FALSE(store->GetLogPosition("web", "/var/log/auth.log", "md5-a")->has_value());
  // UpdateLog inserts a missing row.
  ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/other.log", 7, "md5-c").ok());
  EXPECT_EQ(**store->GetLogPosition("sshd", "/var/log/other.log", "md5-c"), 7);
  EXPECT_EQ(*store->GetLogPaths("sshd"),
            (std::set<std::string>{"/var/log/auth.log", "/var/log/other.log"}));
  // The journal's position is a float time.
  EXPECT_FALSE(store->GetJournalPosition("sshd", "systemd-journal")->has_value());
  ASSERT_TRUE(
      store->UpdateJournal("sshd", "systemd-journal", 1700000000.25, "2023-11-14T22:13:20").ok());
  EXPECT_DOUBLE_EQ(**store->GetJournalPosition("sshd", "systemd-journal"), 1700000000.25);
}

TEST(BanStoreTest, BansRoundTripAndRestoreAfterReopen) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  StoredBan v6 = Ban("2001:db8::1", 1500, -1, 1, {"ünï \"q\" \\ \t\x01"}, 5);
  v6.data.extra = {{"user", Value("root")}, {"port", Value(22)}};
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->AddJail("sshd").ok());
    ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.1", 1000, 600, 1, {"a", "b"}, 2)).ok());
    ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.1", 2000, 1200, 2, {"c"}, 1)).ok());
    ASSERT_TRUE(store->AddBan("sshd", v6).ok());
  }
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 2100;
  auto current = store->GetCurrentBans(q);
  ASSERT_TRUE(current.ok()) << current.status().message();
  ASSERT_EQ(current->size(), 2u);
  EXPECT_EQ((*current)[0], Ban("192.0.2.1", 2000, 1200, 2, {"c"}, 1));
  EXPECT_EQ((*current)[1], v6);

  // The history keeps both bans of 192.0.2.1, newest first.
  auto history = store->GetBans({.jail = "sshd"});
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(Ips(*history), (std::vector<std::string>{"192.0.2.1", "192.0.2.1", "2001:db8::1"}));
  EXPECT_EQ((*history)[0].time, 2000);
  EXPECT_EQ((*history)[1].time, 1000);
  EXPECT_EQ((*history)[1].data.matches, (std::vector<std::string>{"a", "b"}));
  // bantime window: only bans after now - bantime.
  EXPECT_EQ(Ips(*store->GetBans({.jail = "sshd", .bantime = 700, .now = 2100})),
            (std::vector<std::string>{"192.0.2.1", "2001:db8::1"}));
  EXPECT_EQ(Ips(*store->GetBans({.ip = "2001:db8::1"})), (std::vector<std::string>{"2001:db8::1"}));
}

TEST(BanStoreTest, CurrentBansDropExpiredAndCorrectBanTime) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->AddBan("sshd", Ban("10.0.0.1", 1000, 100, 1)).ok());   // over at 1100
  ASSERT_TRUE(store->AddBan("sshd", Ban("10.0.0.2", 1000, 5000, 1)).ok());  // long
  ASSERT_TRUE(store->AddBan("sshd", Ban("10.0.0.3", 1000, -1, 1)).ok());    // permanent
  ASSERT_TRUE(store->AddBan("sshd", Ban("10.0.0.4", 1900, 600, 1)).ok());   // recent
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 2000;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)),
            (std::vector<std::string>{"10.0.0.2", "10.0.0.3", "10.0.0.4"}));
  // forbantime: only bans made in the last 600 s.
  q.forbantime = 600;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)), (std::vector<std::string>{"10.0.0.4"}));
  q.forbantime = -1;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)).size(), 3u);
  // A max bantime of 1500 shortens the long and the permanent ban; both
  // still end after now (1000 + 1500 > 2000), so all three stay.
  q.forbantime.reset();
  q.max_bantime = 1500;
  auto capped = *store->GetCurrentBans(q);
  ASSERT_EQ(capped.size(), 3u);
  EXPECT_EQ(capped[0].bantime, 1500);
  EXPECT_EQ(capped[1].bantime, 1500);
  EXPECT_EQ(capped[2].bantime, 600);
  // A cap of 900 ends them before now: they are dropped.
  q.max_bantime = 900;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)), (std::vector<std::string>{"10.0.0.4"}));
  // One ip: at most one result.
  q.max_bantime.reset();
  q.ip = "10.0.0.3";
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)), (std::vector<std::string>{"10.0.0.3"}));
  q.ip = "10.0.0.1";
  EXPECT_TRUE(store->GetCurrentBans(q)->empty());
}

TEST(BanStoreTest, CurrentBansAcrossJailsTakeLatestPerIp) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddJail("b").ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, 9000, 1, {"from a"})).ok());
  ASSERT_TRUE(store->AddBan("b", Ban("10.0.0.1", 1500, 9000, 3, {"from b"})).ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.2", 1200, 9000, 1)).ok());
  CurrentBansQuery q;
  q.now = 2000;
  auto all = *store->GetCurrentBans(q);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].ip, "10.0.0.1");
  EXPECT_EQ(all[0].time, 1500);
  EXPECT_EQ(all[0].bancount, 3);
  EXPECT_EQ(all[0].data.matches, (std::vector<std::string>{"from b"}));
  q.ip = "10.0.0.1";
  auto one = *store->GetCurrentBans(q);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].time, 1500);
  q.ip = "10.9.9.9";
  EXPECT_TRUE(store->GetCurrentBans(q)->empty());
}

TEST(BanStoreTest, GetBanHistoryPerJailAndOverall) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddJail("b").ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, 600, 1)).ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 2000, 1200, 2)).ok());
  ASSERT_TRUE(store->AddBan("b", Ban("10.0.0.1", 1500, 300, 1)).ok());
  using Q = BanStore::BanHistoryQuery;
  EXPECT_EQ(**store->GetBan(Q{.ip = "10.0.0.1", .jail = "a"}), (BanHistoryRow{2, 2000, 1200}));
  EXPECT_EQ(**store->GetBan(Q{.ip = "10.0.0.1", .jail = "b"}), (BanHistoryRow{1, 1500, 300}));
  EXPECT_EQ(**store->GetBan(Q{.ip = "10.0.0.1", .jail = "a", .overall_jails = true}),
            (BanHistoryRow{3, 2000, 1500}));
  EXPECT_FALSE(store->GetBan(Q{.ip = "10.0.0.2", .jail = "a"})->has_value());
  EXPECT_FALSE(store->GetBan(Q{.ip = "10.0.0.2", .overall_jails = true})->has_value());
  // Window: only bans after now - forbantime (or after fromtime).
  EXPECT_FALSE(
      store->GetBan(Q{.ip = "10.0.0.1", .jail = "b", .forbantime = 100, .now = 2000})->has_value());
  EXPECT_EQ(**store->GetBan(Q{.ip = "10.0.0.1", .overall_jails = true, .fromtime = 1200}),
            (BanHistoryRow{3, 2000, 1500}));
}

// A second connection reading between BeginRead and EndRead sees one
// state of the file: a ban the first commits meanwhile appears only after.
TEST(BanStoreTest, ReadsBetweenBeginReadAndEndReadSeeOneState) {
  TempTree tmp;
  auto writer = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->AddJail("a").ok());
  ASSERT_TRUE(writer->AddBan("a", Ban("10.0.0.1", 1000, 600, 1)).ok());
  auto reader = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(reader);
  const BanStore::BansQuery q{.ip = "10.0.0.1"};
  ASSERT_TRUE(reader->BeginRead().ok());
  EXPECT_EQ(Val(reader->GetBans(q)).size(), 1u);
  ASSERT_TRUE(writer->AddBan("a", Ban("10.0.0.1", 2000, 600, 2)).ok());
  EXPECT_EQ(Val(reader->GetBans(q)).size(), 1u);
  ASSERT_TRUE(reader->EndRead().ok());
  EXPECT_EQ(Val(reader->GetBans(q)).size(), 2u);
}

TEST(BanStoreTest, DelBansForgetsHistoryAndCurrent) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddJail("b").ok());
  for (const char* ip : {"10.0.0.1", "10.0.0.2", "10.0.0.3"}) {
    ASSERT_TRUE(store->AddBan("a", Ban(ip, 1000, -1, 1)).ok());
    ASSERT_TRUE(store->AddBan("b", Ban(ip, 1000, -1, 1)).ok());
  }
  std::vector<std::string> gone = {"10.0.0.1", "10.0.0.3"};
  ASSERT_TRUE(store->DelBans("a", gone).ok());
  CurrentBansQuery q;
  q.jail = "a";
  q.now = 2000;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)), (std::vector<std::string>{"10.0.0.2"}));
  EXPECT_EQ(Ips(*store->GetBans({.jail = "a"})), (std::vector<std::string>{"10.0.0.2"}));
  ASSERT_TRUE(store->DelAllBans("a").ok());
  EXPECT_TRUE(store->GetCurrentBans(q)->empty());
  q.jail = "b";
  EXPECT_EQ(store->GetCurrentBans(q)->size(), 3u);
  ASSERT_TRUE(store->DelBan("b", "10.0.0.2").ok());
  EXPECT_EQ(store->GetCurrentBans(q)->size(), 2u);
}

TEST(BanStoreTest, PurgeDropsOldHistoryOutdatedBipsAndEmptyDisabledJails) {
  TempTree tmp;
  BanStoreOptions opts;
  opts.purge_age = 1000;
  auto store = MustOpen(tmp.Path("db"), opts);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddJail("gone").ok());
  const int64_t now = 100000;
  // horizon = now - 1000 = 99000.
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 50000, 100, 1)).ok());    // old, short
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.2", 50000, 20000, 1)).ok());  // old, 3x long
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.3", 50000, -1, 1)).ok());     // permanent
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.4", 99500, 100, 1)).ok());    // recent
  ASSERT_TRUE(store->AddBan("gone", Ban("10.0.0.5", 50000, 100, 1)).ok());
  ASSERT_TRUE(store->DelJail("gone").ok());
  ASSERT_TRUE(store->Purge(now).ok());
  // History older than purge_age is gone whatever its bantime.
  EXPECT_EQ(Ips(*store->GetBans({})), (std::vector<std::string>{"10.0.0.4"}));
  // bips: kept while timeofban + 3 * bantime >= horizon, and when permanent.
  using Q = BanStore::BanHistoryQuery;
  EXPECT_FALSE(store->GetBan(Q{.ip = "10.0.0.1", .jail = "a"})->has_value());
  EXPECT_TRUE(store->GetBan(Q{.ip = "10.0.0.2", .jail = "a"})->has_value());
  EXPECT_TRUE(store->GetBan(Q{.ip = "10.0.0.3", .jail = "a"})->has_value());
  EXPECT_TRUE(store->GetBan(Q{.ip = "10.0.0.4", .jail = "a"})->has_value());
  EXPECT_EQ(*store->GetJailNames(), (std::set<std::string>{"a"}));
}

TEST(BanStoreTest, DbMaxMatchesCutsStoredAndRestoredMatches) {
  TempTree tmp;
  BanStoreOptions opts;
  opts.max_matches = 3;
  auto store = MustOpen(tmp.Path("db"), opts);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, -1, 1, {"1", "2", "3", "4", "5"}, 5)).ok());
  // The last three are stored (history and bips alike).
  EXPECT_EQ((*store->GetBans({}))[0].data.matches, (std::vector<std::string>{"3", "4", "5"}));
  CurrentBansQuery q;
  q.now = 2000;
  EXPECT_EQ((*store->GetCurrentBans(q))[0].data.matches, (std::vector<std::string>{"3", "4", "5"}));
  // The restore may ask for fewer, or none.
  q.max_matches = 1;
  EXPECT_EQ((*store->GetCurrentBans(q))[0].data.matches, (std::vector<std::string>{"5"}));
  q.max_matches = 0;
  EXPECT_TRUE((*store->GetCurrentBans(q))[0].data.matches.empty());
  // dbmaxmatches = 0: the "matches" key is not stored at all.
  store->set_max_matches(0);
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.2", 1000, -1, 1, {"x"}, 1)).ok());
  EXPECT_EQ(RawSql(tmp.Path("db"), "SELECT CAST(data AS TEXT) FROM bips WHERE ip='10.0.0.2'"),
            "{\"failures\": 1}\n");
  EXPECT_EQ(RawSql(tmp.Path("db"),
                   "SELECT typeof(data), CAST(data AS TEXT) FROM bips WHERE "
                   "ip='10.0.0.1'"),
            "blob|{\"matches\": [\"3\", \"4\", \"5\"], \"failures\": 5}\n");
}

TEST(BanStoreTest, DataKeepsOtherKeysAndJoinsPiecewiseMatches) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  // Rows as fail2ban may have written them: matches as [pre, match, post]
  // pieces, \u escapes, surrogate pairs, a float, and a row of junk.
  EXPECT_EQ(RawSql(path,
                   "INSERT INTO bips VALUES('10.0.0.1','a',1000,-1,1,"
                   "'{\"matches\": [[\"pre \", \"m\", \" post\"], \"\\u00e9\\ud83d\\ude00\"],"
                   " \"failures\": 7, \"user\": \"bob\", \"score\": 1.5, \"ok\": true}');"
                   "INSERT INTO bips VALUES('10.0.0.2','a',1000,-1,1,'{not json');"
                   "INSERT INTO bips VALUES('10.0.0.3','a',1000,-1,1,NULL);"),
            "");
  CurrentBansQuery q;
  q.now = 2000;
  auto bans = *store->GetCurrentBans(q);
  ASSERT_EQ(bans.size(), 3u);
  EXPECT_EQ(bans[0].data.matches, (std::vector<std::string>{"pre m post", "é😀"}));
  EXPECT_EQ(bans[0].data.failures, 7);
  EXPECT_EQ(bans[0].data.extra,
            (Value::Dict{{"user", Value("bob")}, {"score", Value("1.5")}, {"ok", Value(true)}}));
  EXPECT_EQ(bans[1].data, BanData{});
  EXPECT_EQ(bans[2].data, BanData{});
}

TEST(BanStoreTest, BanForUnknownJailIsRefused) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  Status st = store->AddBan("nojail", Ban("10.0.0.1", 1000, 600, 1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("FOREIGN KEY constraint failed"), std::string::npos) << st.message();
  // Neither table got a row: the operation is all or nothing.
  EXPECT_EQ(RawSql(tmp.Path("db"), "SELECT count(*) FROM bans; SELECT count(*) FROM bips"),
            "0\n0\n");
}

TEST(BanStoreTest, BatchCommitsOnceAndRollsBackWhenDropped) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("a").ok());
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok()) << batch.status().message();
    ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, -1, 1)).ok());
    EXPECT_FALSE(store->BeginBatch().ok());
    // A failing write inside the batch undoes only itself.
    EXPECT_FALSE(store->AddBan("nojail", Ban("10.0.0.9", 1000, -1, 1)).ok());
    ASSERT_TRUE(batch->Commit().ok());
  }
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok());
    ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.2", 1000, -1, 1)).ok());
  }  // dropped: rolled back
  EXPECT_EQ(Ips(*store->GetBans({})), (std::vector<std::string>{"10.0.0.1"}));
}

TEST(BanStoreTest, NoneMeansNoDatabase) {
  for (const char* name : {"none", "None", "NONE"}) {
    auto store = MustOpen(name);
    ASSERT_TRUE(store);
    EXPECT_FALSE(store->enabled());
    EXPECT_TRUE(store->AddJail("a").ok());
    EXPECT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, -1, 1)).ok());
    EXPECT_TRUE(store->GetBans({})->empty());
    CurrentBansQuery q;
    EXPECT_TRUE(store->GetCurrentBans(q)->empty());
    EXPECT_FALSE(store->GetBan({.ip = "10.0.0.1"})->has_value());
    EXPECT_FALSE(store->AddLog("a", "/x", 5, "m")->has_value());
    EXPECT_TRUE(store->Purge(1).ok());
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok());
    EXPECT_TRUE(batch->Commit().ok());
  }
  EXPECT_FALSE(::access("none", F_OK) == 0);
}

TEST(BanStoreTest, MemoryDatabaseWorksWithinOneOpen) {
  auto store = MustOpen(":memory:");
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->enabled());
  ASSERT_TRUE(store->AddJail("a").ok());
  ASSERT_TRUE(store->AddBan("a", Ban("10.0.0.1", 1000, -1, 1)).ok());
  EXPECT_EQ(store->GetBans({})->size(), 1u);
  auto again = MustOpen(":memory:");
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->GetBans({})->empty());
}

TEST(BanStoreTest, NotADatabaseErrorNamesPath) {
  TempTree tmp;
  tmp.Write("junk.sqlite3", std::string(4096, 'x'));
  auto store = BanStore::Open(tmp.Path("junk.sqlite3"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().message(), tmp.Path("junk.sqlite3") + ": file is not a database");
  // Left as it was (fail2ban would move it aside and start afresh).
  std::ifstream in(tmp.Path("junk.sqlite3"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, std::string(4096, 'x'));
}

TEST(BanStoreTest, UnopenablePathErrorNamesPath) {
  TempTree tmp;
  tmp.Write("file", "x");
  auto store = BanStore::Open(tmp.Path("file/sub/db"));
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(tmp.Path("file/sub")), std::string::npos)
      << store.status().message();
}

TEST(BanStoreTest, NewerSchemaIsRefused) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  RawSql(path, "CREATE TABLE fail2banDb(version INTEGER); INSERT INTO fail2banDb VALUES(5);");
  auto store = BanStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().message(),
            path + ": schema version 5 is newer than this bantam supports (4)");
}

TEST(BanStoreTest, UpgradesVersion2Database) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  // fail2ban 0.9's schema (version 2): bans without bantime/bancount, no bips.
  ASSERT_EQ(RawSql(path,
                   "CREATE TABLE fail2banDb(version INTEGER); INSERT INTO fail2banDb VALUES(2);"
                   "CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL "
                   "DEFAULT 1);"
                   "CREATE TABLE logs(jail TEXT NOT NULL, path TEXT, firstlinemd5 TEXT, "
                   "lastfilepos INTEGER DEFAULT 0, FOREIGN KEY(jail) REFERENCES jails(name) ON "
                   "DELETE CASCADE, UNIQUE(jail, path), UNIQUE(jail, path, firstlinemd5));"
                   "CREATE TABLE bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, "
                   "data JSON, FOREIGN KEY(jail) REFERENCES jails(name));"
                   "INSERT INTO jails VALUES('sshd', 1);"
                   "INSERT INTO logs VALUES('sshd', '/var/log/auth.log', 'md5', 99);"
                   "INSERT INTO bans VALUES('sshd', '10.0.0.1', 1000, '{\"failures\": 3}');"
                   "INSERT INTO bans VALUES('sshd', '10.0.0.1', 1900, '{\"failures\": 4}');"),
            "");
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(RawSql(path, "SELECT version FROM fail2banDb"), "4\n");
  // Unknown bantimes (-2) restore with the jail's bantime.
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 2000;
  q.unknown_bantime = 600;
  auto bans = *store->GetCurrentBans(q);
  ASSERT_EQ(bans.size(), 1u);
  EXPECT_EQ(bans[0].time, 1900);
  EXPECT_EQ(bans[0].bantime, 600);
  EXPECT_EQ(bans[0].data.failures, 4);
  EXPECT_EQ(**store->GetLogPosition("sshd", "/var/log/auth.log", "md5"), 99);
}

// ---------------------------------------------------------------------------
// fail2ban itself on the same file, both ways.

constexpr char kPythonPrelude[] = R"PY(
import sys
from fail2ban.server.database import Fail2BanDb
from fail2ban.server.ticket import BanTicket
from fail2ban.server.mytime import MyTime

class Actions:
    def __init__(self, bantime): self.bantime = bantime
    def getBanTime(self): return self.bantime

class Jail:
    def __init__(self, name, bantime): self.name = name; self.actions = Actions(bantime)
    def getMaxBanTime(self): return self.actions.getBanTime()

class Log:
    def __init__(self, name, pos, md5): self.n, self.p, self.h = name, pos, md5
    def getFileName(self): return self.n
    def getPos(self): return self.p
    def getHash(self): return self.h

sshd = Jail('sshd', 600)
web = Jail('web', 3600)
db = Fail2BanDb(sys.argv[1])
NOW = 2100
MyTime.setTime(NOW)

def ban(jail, ip, t, bantime, count, matches, failures, **extra):
    tk = BanTicket(ip, t, matches)
    tk.setBanTime(bantime)
    tk.setBanCount(count)
    tk.setAttempt(failures)
    for k, v in extra.items():
        tk.setData(k, v)
    db.addBan(jail, tk)

def extra(d):
    return ','.join('%s=%s' % (k, d[k]) for k in sorted(d) if k not in ('matches', 'failures'))

def current(t):
    d = t.getData()
    return 'current %s|%d|%s|%s|%s|%s|%s' % (t.getID(), t.getTime(), t.getBanTime(),
        t.getBanCount(), d.get('failures', 0), '^'.join(t.getMatches()), extra(d))

def dump():
    for j in (sshd, web, None):
        name = j.name if j else '*'
        for correct in (False, True):
            for t in db.getCurrentBans(jail=j, fromtime=NOW, correctBanTime=correct):
                print(name, correct, current(t))
        for t in db.getCurrentBans(jail=j, fromtime=NOW, correctBanTime=False, maxmatches=1):
            print(name, 'max1', current(t))
        for t in db.getBans(jail=j):
            d = t.getData()
            print(name, 'history %s|%d|%s|%s|%s' % (t.getID(), t.getTime(), d.get('failures', 0),
                '^'.join(t.getMatches()), extra(d)))
        for ip in ('192.0.2.1', '2001:db8::1'):
            for overall in (False, True):
                for row in db.getBan(ip, j, overalljails=overall):
                    print(name, 'getban', ip, overall, '|'.join(str(v) for v in row))
    # (getLogPaths and getJailNames use fetchmany(): one row at most.)
    print('log', db.addLog(sshd, Log('/var/log/auth.log', 0, None)),
        db.addLog(sshd, Log('/var/log/auth.log', 0, 'abc123')),
        db.addLog(sshd, Log('/var/log/auth.log', 0, 'rotated')))
    print('journal %.3f' % db.getJournalPos(sshd, 'systemd-journal'))
    print('jails', sorted(db.getJailNames(True)), sorted(db.getJailNames(False)))
)PY";

// The scenario fail2ban writes (and, in the other test, we write).
constexpr char kPythonScenario[] = R"PY(
db.maxMatches = 2
db.addJail(sshd)
db.addJail(web)
ban(sshd, '192.0.2.1', 1000, 600, 1, ['line a', 'line b', 'line c'], 3)
ban(sshd, '192.0.2.1', 2000, 1200, 2, ['line d'], 1)
ban(sshd, '2001:db8::1', 1500, -1, 1, ['\u00fcn\u00efcode "q" \\ \t'], 5, user='root')
ban(web, '192.0.2.1', 1800, 3600, 1, [['pre ', 'match', ' post']], 2)
ban(web, '198.51.100.7', 100, 600, 1, ['expired'], 1)
db.addLog(sshd, Log('/var/log/auth.log', 4242, 'abc123'))
db.updateLog(sshd, Log('/var/log/auth.log', 5000, 'abc123'))
db.updateJournal(sshd, 'systemd-journal', 1700000000.5, '2023-11-14T22:13:20.500000')
db.delJail(web)
)PY";

void WriteScenarioWithBanStore(BanStore* store) {
  store->set_max_matches(2);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  ASSERT_TRUE(store->AddJail("web").ok());
  ASSERT_TRUE(
      store->AddBan("sshd", Ban("192.0.2.1", 1000, 600, 1, {"line a", "line b", "line c"}, 3))
          .ok());
  ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2.1", 2000, 1200, 2, {"line d"}, 1)).ok());
  StoredBan v6 = Ban("2001:db8::1", 1500, -1, 1, {"ünïcode \"q\" \\ \t"}, 5);
  v6.data.extra = {{"user", Value("root")}};
  ASSERT_TRUE(store->AddBan("sshd", v6).ok());
  ASSERT_TRUE(store->AddBan("web", Ban("192.0.2.1", 1800, 3600, 1, {"pre match post"}, 2)).ok());
  ASSERT_TRUE(store->AddBan("web", Ban("198.51.100.7", 100, 600, 1, {"expired"}, 1)).ok());
  ASSERT_TRUE(store->AddLog("sshd", "/var/log/auth.log", 4242, "abc123").ok());
  ASSERT_TRUE(store->UpdateLog("sshd", "/var/log/auth.log", 5000, "abc123").ok());
  ASSERT_TRUE(
      store->UpdateJournal("sshd", "systemd-journal", 1700000000.5, "2023-11-14T22:13:20.500000")
          .ok());
  ASSERT_TRUE(store->DelJail("web").ok());
}

std::string PyBool(bool b) { return b ? "True" : "False"; }

std::string Extra(const BanData& d) {
  std::vector<std::pair<std::string, std::string>> kv;
  for (const auto& [k, v] : d.extra) kv.emplace_back(k, v.ToPyStr());
  std::sort(kv.begin(), kv.end());
  std::string out;
  for (const auto& [k, v] : kv) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "^" : "") + v[i];
  return out;
}

std::string Current(const StoredBan& b) {
  std::ostringstream o;
  o << "current " << b.ip << "|" << b.time << "|" << b.bantime << "|" << b.bancount << "|"
    << b.data.failures << "|" << Joined(b.data.matches) << "|" << Extra(b.data);
  return o.str();
}

// What kPythonPrelude's dump() prints, from BanStore.
std::string DumpWithBanStore(BanStore* store) {
  std::ostringstream o;
  const int64_t now = 2100;
  const std::vector<std::pair<std::optional<std::string>, int64_t>> jails = {
      {"sshd", 600}, {"web", 3600}, {std::nullopt, 0}};
  for (const auto& [jail, bantime] : jails) {
    const std::string name = jail ? *jail : "*";
    for (bool correct : {false, true}) {
      CurrentBansQuery q;
      q.jail = jail;
      q.now = now;
      if (jail) q.unknown_bantime = bantime;
      if (correct && jail) q.max_bantime = bantime;
      for (const auto& b : Val(store->GetCurrentBans(q))) {
        o << name << " " << PyBool(correct) << " " << Current(b) << "\n";
      }
    }
    CurrentBansQuery q;
    q.jail = jail;
    q.now = now;
    q.max_matches = 1;
    for (const auto& b : Val(store->GetCurrentBans(q))) o << name << " max1 " << Current(b) << "\n";
    for (const auto& b : Val(store->GetBans({.jail = jail}))) {
      o << name << " history " << b.ip << "|" << b.time << "|" << b.data.failures << "|"
        << Joined(b.data.matches) << "|" << Extra(b.data) << "\n";
    }
    for (const char* ip : {"192.0.2.1", "2001:db8::1"}) {
      for (bool overall : {false, true}) {
        auto h = *store->GetBan({.ip = ip, .jail = jail, .overall_jails = overall});
        if (h) {
          o << name << " getban " << ip << " " << PyBool(overall) << " " << h->bancount << "|"
            << h->time_of_ban << "|" << h->bantime << "\n";
        }
      }
    }
  }
  auto pos = [&](std::optional<std::string_view> md5) {
    auto p = Val(store->GetLogPosition("sshd", "/var/log/auth.log", md5));
    return p ? std::to_string(*p) : std::string("None");
  };
  o << "log " << pos(std::nullopt) << " " << pos("abc123") << " " << pos("rotated") << "\n";
  char journal[64];
  std::snprintf(journal, sizeof journal, "journal %.3f\n",
                Val(store->GetJournalPosition("sshd", "systemd-journal")).value_or(-1));
  o << journal;
  auto list = [](const std::set<std::string>& s) {
    std::string out = "[";
    for (const auto& n : s) out += (out.size() > 1 ? ", '" : "'") + n + "'";
    return out + "]";
  };
  o << "jails " << list(*store->GetJailNames(true)) << " " << list(*store->GetJailNames(false))
    << "\n";
  return o.str();
}

// Runs fail2ban's Python on `script` with the database path; returns stdout
// (stderr goes to the test log). Fails the test if fail2ban is missing.
std::string RunFail2ban(const TempTree& tmp, const std::string& script, const std::string& db) {
  tmp.Write("driver.py", script);
  std::string cmd = std::string("PYTHONIOENCODING=utf-8 ") + kFail2banPython + " " +
                    tmp.Path("driver.py") + " " + db;
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (!p) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  EXPECT_EQ(rc, 0) << "fail2ban driver failed (is fail2ban installed for " << kFail2banPython
                   << "?)\n"
                   << out;
  return out;
}

TEST(BanStoreFail2banTest, Fail2banWritesBantamReads) {
  TempTree tmp;
  const std::string path = tmp.Path("fail2ban.sqlite3");
  std::string f2b =
      RunFail2ban(tmp, std::string(kPythonPrelude) + kPythonScenario + "dump()\n", path);
  ASSERT_FALSE(f2b.empty());
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(DumpWithBanStore(store.get()), f2b);
  // And the figures that matter, spelled out.
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 2100;
  auto bans = *store->GetCurrentBans(q);
  ASSERT_EQ(bans.size(), 2u);
  EXPECT_EQ(bans[0], Ban("192.0.2.1", 2000, 1200, 2, {"line d"}, 1));
  EXPECT_EQ(bans[1].data.matches, (std::vector<std::string>{"ünïcode \"q\" \\ \t"}));
  EXPECT_EQ(bans[1].bantime, -1);
}

TEST(BanStoreFail2banTest, BantamWritesFail2banReadsAndBack) {
  TempTree tmp;
  const std::string path = tmp.Path("bantam.sqlite3");
  std::string ours;
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    WriteScenarioWithBanStore(store.get());
    ours = DumpWithBanStore(store.get());
  }
  std::string f2b = RunFail2ban(tmp, std::string(kPythonPrelude) + "dump()\n", path);
  EXPECT_EQ(f2b, ours);
  // fail2ban adds a ban to our file (switching the journal mode back to its
  // own); we open it again and see both.
  RunFail2ban(tmp,
              std::string(kPythonPrelude) + "db.addJail(sshd)\n" +
                  "ban(sshd, '203.0.113.9', 2050, 600, 1, ['from fail2ban'], 2)\n",
              path);
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->journal_mode(), "wal");
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 2100;
  EXPECT_EQ(Ips(*store->GetCurrentBans(q)),
            (std::vector<std::string>{"192.0.2.1", "2001:db8::1", "203.0.113.9"}));
}

// ---------------------------------------------------------------------------

// Every ban AddBan() reported must survive the process dying right after.
TEST(BanStoreTest, ReportedBansSurviveKill9) {
  TempTree tmp;
  const std::string path = tmp.Path("db");
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->AddJail("sshd").ok());
  }
  std::vector<std::string> reported;
  int next = 0;
  for (int round = 0; round < 12; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const int first = next;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto child = BanStore::Open(path);
      if (!child.ok()) ::_exit(2);
      for (int i = first;; ++i) {
        std::string ip = "10." + std::to_string((i >> 16) & 255) + "." +
                         std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
        if (!(*child)->AddBan("sshd", Ban(ip, 1000 + i, -1, 1, {"line"}, 1)).ok()) ::_exit(3);
        std::string line = ip + "\n";
        if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          ::_exit(4);
        }
      }
    }
    ::close(fds[1]);
    // Kill after a varying number of reports, the moment the last arrives.
    const int want = 1 + (round * 7) % 40;
    FILE* in = ::fdopen(fds[0], "r");
    char buf[64];
    int got = 0;
    while (got < want && std::fgets(buf, sizeof buf, in)) {
      std::string ip(buf);
      ip.pop_back();
      reported.push_back(ip);
      ++got;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    // Anything the child wrote after our last read is reported too: it
    // committed before writing.
    while (std::fgets(buf, sizeof buf, in)) {
      std::string ip(buf);
      ip.pop_back();
      reported.push_back(ip);
    }
    std::fclose(in);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    next += 1000;
  }
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 5000000;
  auto bans = *store->GetCurrentBans(q);
  std::set<std::string> have;
  for (const auto& b : bans) have.insert(b.ip);
  for (const auto& ip : reported) EXPECT_TRUE(have.count(ip)) << ip << " was lost";
  EXPECT_GE(have.size(), reported.size());
  EXPECT_EQ(RawSql(path, "PRAGMA integrity_check"), "ok\n");
}

// Not a timed test: prints how long 100k bans take to write in one batch
// and to restore, for the report.
TEST(BanStoreTest, HundredThousandBansPerformanceNote) {
  TempTree tmp;
  auto store = MustOpen(tmp.Path("db"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->AddJail("sshd").ok());
  constexpr int kBans = 100000;
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  {
    auto batch = store->BeginBatch();
    ASSERT_TRUE(batch.ok());
    for (int i = 0; i < kBans; ++i) {
      std::string ip = "10." + std::to_string((i >> 16) & 255) + "." +
                       std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
      ASSERT_TRUE(store
                      ->AddBan("sshd", Ban(ip, 1000 + i % 1000, 86400, 1,
                                           {"Failed password for root from " + ip + " port 22"}, 5))
                      .ok());
    }
    ASSERT_TRUE(batch->Commit().ok());
  }
  auto t1 = Clock::now();
  CurrentBansQuery q;
  q.jail = "sshd";
  q.now = 5000;
  auto bans = store->GetCurrentBans(q);
  auto t2 = Clock::now();
  ASSERT_TRUE(bans.ok());
  EXPECT_EQ(bans->size(), static_cast<size_t>(kBans));
  // A few single, committed bans: the per-ban cost on the event loop.
  auto t3 = Clock::now();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(store->AddBan("sshd", Ban("192.0.2." + std::to_string(i), 2000, 600, 1)).ok());
  }
  auto t4 = Clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf(
      "[perf] AddBan x%d in one batch: %.0f ms; GetCurrentBans -> %zu bans: %.0f ms; "
      "committed AddBan: %.3f ms each\n",
      kBans, ms(t1 - t0), bans->size(), ms(t2 - t1), ms(t4 - t3) / 200);
}

}  // namespace
}  // namespace bantam
