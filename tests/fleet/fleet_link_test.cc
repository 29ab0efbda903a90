// FleetLink against a real redis-server, started by each test on a unix
// socket in a temp dir (never a mock, never the system's Redis).
#include "bantam/fleet_link.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "../testing/require.h"
#include "../testing/temp_tree.h"

extern char** environ;

namespace bantam {
namespace {

constexpr char kRedisServer[] = "/usr/bin/redis-server";
constexpr char kKey[] = "link-test-secret-0123456789";

class FleetLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BANTAM_REQUIRE_TOOL(::access(kRedisServer, X_OK) == 0, kRedisServer, "redis-server");
    sock_ = tree_.Path("redis.sock");
  }
  void TearDown() override { StopRedis(); }

  void StartRedis() {
    std::vector<std::string> args = {kRedisServer, "--port",    "0",      "--unixsocket", sock_,
                                     "--dir",      tree_.root(), "--save", "",             "--appendonly",
                                     "no",         "--logfile", tree_.Path("redis.log")};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, kRedisServer, nullptr, nullptr, argv.data(), environ), 0);
    // The socket file appears at bind(), before listen(): wait for a PONG.
    for (int i = 0; i < 500 && !Pongs(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(Pongs()) << "redis-server did not answer PING on " << sock_;
  }
  bool Pongs() const {
    redisContext* c = redisConnectUnix(sock_.c_str());
    if (c == nullptr) return false;
    bool pong = false;
    if (!c->err) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      pong = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG";
      if (r) freeReplyObject(r);
    }
    redisFree(c);
    return pong;
  }
  void StopRedis() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    ::unlink(sock_.c_str());
  }

  FleetSettings Settings(const std::string& node) {
    FleetSettings s;
    s.enabled = true;
    s.redis = "unix:" + sock_;
    s.unix_path = sock_;
    s.node = node;
    s.key = kKey;
    return s;
  }

  // XADD as any other writer would, fields as given; returns the id.
  std::string RawAdd(const std::vector<std::string>& fields) {
    redisContext* c = redisConnectUnix(sock_.c_str());
    EXPECT_TRUE(c != nullptr && !c->err);
    std::vector<std::string> args = {"XADD", "bantam:bans", "*"};
    args.insert(args.end(), fields.begin(), fields.end());
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    std::string id = r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
    if (r) freeReplyObject(r);
    redisFree(c);
    return id;
  }

  // Takes reports until `done` says so or 10 s passed; all of them merged.
  FleetLink::Report Collect(FleetLink& link, const std::function<bool(const FleetLink::Report&)>& done) {
    FleetLink::Report all;
    for (int i = 0; i < 1000; ++i) {
      FleetLink::Report r = link.Take();
      for (auto& p : r.published) all.published.push_back(p);
      for (auto& b : r.batches) all.batches.push_back(std::move(b));
      for (auto& d : r.dropped) all.dropped.push_back(std::move(d));
      for (auto& [k, n] : r.dropped_counts) all.dropped_counts[k] += n;
      for (auto& m : r.messages) all.messages.push_back(std::move(m));
      if (done(all)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return all;
  }

  static size_t Entries(const FleetLink::Report& r) {
    size_t n = 0;
    for (const auto& b : r.batches) n += b.entries.size();
    return n;
  }

  static FleetEntry Ban(const std::string& ip) {
    FleetEntry e;
    e.jail = "asterisk";
    e.ip = ip;
    e.left = 600;
    e.time = 1000;
    return e;
  }

  testing::TempTree tree_;
  std::string sock_;
  pid_t pid_ = -1;
};

TEST_F(FleetLinkTest, OneNodesBansReachAnotherInOrderAndNotItself) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  FleetLink a(Settings("pbxa"));
  FleetLink b(Settings("pbxb"));
  ASSERT_TRUE(a.Start("").ok());
  ASSERT_TRUE(b.Start("").ok());
  a.Publish({{1, Ban("192.0.2.1")}, {2, Ban("192.0.2.2")}, {3, Ban("192.0.2.3")}});
  FleetLink::Report ra = Collect(a, [](const FleetLink::Report& r) { return r.published.size() == 3; });
  EXPECT_EQ(ra.published, (std::vector<int64_t>{1, 2, 3}));
  FleetLink::Report rb = Collect(b, [](const FleetLink::Report& r) { return Entries(r) == 3; });
  ASSERT_EQ(Entries(rb), 3u);
  std::vector<std::string> ips;
  for (const auto& batch : rb.batches)
    for (const auto& [id, e] : batch.entries) {
      ips.push_back(e.ip);
      EXPECT_EQ(e.node, "pbxa");
    }
  EXPECT_EQ(ips, (std::vector<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.3"}));
  EXPECT_TRUE(b.connected());
  // A reads its own entries too, and hands none of them over.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Entries(a.Take()), 0u);
}

TEST_F(FleetLinkTest, BadEntriesAreDroppedCountedAndReadPast) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  FleetFields good = EncodeFleetEntry([] {
    FleetEntry e = Ban("192.0.2.9");
    e.node = "pbxa";
    return e;
  }(), kKey);
  FleetFields forged = good;
  forged.back().second = std::string(64, '0');
  std::vector<std::string> flat_forged, flat_good;
  for (auto& [k, v] : forged) flat_forged.insert(flat_forged.end(), {k, v});
  for (auto& [k, v] : good) flat_good.insert(flat_good.end(), {k, v});
  RawAdd({"junk", "1"});
  RawAdd(flat_forged);
  RawAdd({"ip", std::string(300, 'x')});
  const std::string last = RawAdd(flat_good);
  FleetLink b(Settings("pbxb"));
  ASSERT_TRUE(b.Start("").ok());
  FleetLink::Report r = Collect(b, [](const FleetLink::Report& x) { return Entries(x) == 1; });
  ASSERT_EQ(Entries(r), 1u);
  EXPECT_EQ(r.batches.back().last_id, last);
  EXPECT_EQ(r.dropped_counts["malformed"], 1u);
  EXPECT_EQ(r.dropped_counts["bad mac"], 1u);
  EXPECT_EQ(r.dropped_counts["oversized"], 1u);
  ASSERT_EQ(r.dropped.size(), 3u);
  EXPECT_EQ(r.dropped[1].reason, "bad mac");
}

TEST_F(FleetLinkTest, ReaderResumesAfterItsCursor) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  std::vector<std::string> ids;
  for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) {
    FleetEntry e = Ban(ip);
    e.node = "pbxa";
    std::vector<std::string> flat;
    for (auto& [k, v] : EncodeFleetEntry(e, kKey)) flat.insert(flat.end(), {k, v});
    ids.push_back(RawAdd(flat));
  }
  FleetLink b(Settings("pbxb"));
  ASSERT_TRUE(b.Start(ids[1]).ok());
  FleetLink::Report r = Collect(b, [](const FleetLink::Report& x) { return Entries(x) >= 1; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  FleetLink::Report more = b.Take();
  ASSERT_EQ(Entries(r) + Entries(more), 1u);
  EXPECT_EQ(r.batches[0].entries[0].first, ids[2]);
  EXPECT_EQ(r.batches[0].entries[0].second.ip, "192.0.2.3");
}

TEST_F(FleetLinkTest, WhatIsPublishedWhileRedisIsDownGoesOutWhenItIsBack) {
  FleetLink a(Settings("pbxa"));
  ASSERT_TRUE(a.Start("").ok());
  a.Publish({{7, Ban("192.0.2.7")}});
  FleetLink::Report down = Collect(a, [](const FleetLink::Report& r) { return !r.messages.empty(); });
  ASSERT_FALSE(down.messages.empty());
  EXPECT_TRUE(down.messages[0].first);  // a warning
  EXPECT_NE(down.messages[0].second.find("unreachable"), std::string::npos) << down.messages[0].second;
  EXPECT_TRUE(down.published.empty());
  EXPECT_FALSE(a.connected());
  // Retries while down say nothing more.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_TRUE(a.Take().messages.empty());
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  FleetLink::Report up = Collect(a, [](const FleetLink::Report& r) { return !r.published.empty(); });
  EXPECT_EQ(up.published, (std::vector<int64_t>{7}));
  ASSERT_FALSE(up.messages.empty());
  EXPECT_FALSE(up.messages[0].first);
  EXPECT_NE(up.messages[0].second.find("connected to Redis unix:" + sock_ + " again"), std::string::npos)
      << up.messages[0].second;
}

}  // namespace
}  // namespace bantam
