// Server driven in steps with a FakeClock and a recording Spawner: a real
// configuration tree and log file in a temp dir, real matching, the real
// event loop and worker pool; only time and the shell are fakes.
#include "bantam/server.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../testing/journal_export.h"
#include "../testing/require.h"
#include "../testing/temp_tree.h"
#include "bantam/clock.h"
#include "bantam/spawner.h"

namespace bantam {
namespace {

using std::chrono::milliseconds;

// Records every script, in the order they finish, and says it exited 0.
// Workers call it concurrently.
class RecordingSpawner : public Spawner {
 public:
  SpawnResult Run(const SpawnRequest& request) override {
    if (!slow_word_.empty() && request.script.find(slow_word_) != std::string::npos) {
      std::this_thread::sleep_for(slow_for_);
    }
    std::lock_guard<std::mutex> lock(mu_);
    scripts_.push_back(request.script);
    args_.push_back(request.args);
    SpawnResult r;
    r.end = SpawnResult::End::kExited;
    r.exit_code = 0;
    return r;
  }
  // The recorded scripts that contain `word`.
  std::vector<std::string> With(const std::string& word) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const std::string& s : scripts_) {
      if (s.find(word) != std::string::npos) out.push_back(s);
    }
    return out;
  }
  // The arguments ($0, $1...) of the recorded scripts that contain `word`.
  std::vector<std::vector<std::string>> ArgsWith(const std::string& word) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::vector<std::string>> out;
    for (size_t i = 0; i < scripts_.size(); ++i) {
      if (scripts_[i].find(word) != std::string::npos) out.push_back(args_[i]);
    }
    return out;
  }
  // Where the `nth` (from 1) recorded script containing `word` is in the
  // order of completion; -1 if there is none.
  int IndexOf(const std::string& word, int nth = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < scripts_.size(); ++i) {
      if (scripts_[i].find(word) != std::string::npos && --nth == 0) return static_cast<int>(i);
    }
    return -1;
  }
  // Scripts containing `word` take `d` to run. Set before the server runs.
  void SlowDown(const std::string& word, milliseconds d) {
    slow_word_ = word;
    slow_for_ = d;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> scripts_;
  std::vector<std::vector<std::string>> args_;
  std::string slow_word_;
  milliseconds slow_for_{0};
};

// Server::Create blocks the signals the daemon handles; the rest of the
// test binary gets its mask back.
class SignalMaskGuard {
 public:
  SignalMaskGuard() { ::pthread_sigmask(SIG_SETMASK, nullptr, &saved_); }
  ~SignalMaskGuard() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

 private:
  sigset_t saved_;
};

std::string LocalTime(double t) {
  const time_t secs = static_cast<time_t>(t);
  struct tm tm;
  ::localtime_r(&secs, &tm);
  char buf[64];
  ::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = tree_.root();
    tree_.Write("fail2ban.conf", "[Definition]\nloglevel = INFO\nlogtarget = " + d +
                                     "/bantam.log\npidfile = " + d + "/bantamd.pid\nsocket = " + d +
                                     "/bantam.sock\ndbfile = " + d + "/db.sqlite3\n");
    tree_.Write("filter.d/pbx.conf", "[Definition]\nfailregex = ^\\s*auth failed from <HOST>$\n");
    tree_.Write("action.d/record.conf",
                "[Definition]\nactionstart = do-start\nactionstop = do-stop\n"
                "actionban = do-ban <ip>\nactionunban = do-unban <ip>\n");
    tree_.Write("jail.conf",
                "[DEFAULT]\nignoreself = false\n[pbx]\nenabled = true\nfilter = pbx\n"
                "action = record\nlogpath = " +
                    d +
                    "/pbx.log\nmaxretry = 3\n"
                    "findtime = 600\nbantime = 600\n");
    tree_.Write("pbx.log", "");
  }

  std::unique_ptr<Server> Create() {
    ServerOptions o;
    o.basedir = tree_.root();
    o.clock = &clock_;
    o.spawner = &spawner_;
    Result<std::unique_ptr<Server>> s = Server::Create(o);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }

  void Fail(const std::string& ip, int n) {
    std::ofstream log(tree_.Path("pbx.log"), std::ios::app);
    for (int i = 0; i < n; ++i)
      log << LocalTime(clock_.Now()) << " auth failed from " << ip << "\n";
  }

  // Serves events until `count` recorded scripts contain `word` (or 10 s).
  bool RunUntilScripts(Server& server, const std::string& word, size_t count) {
    Result<bool> done =
        server.RunUntil([&] { return spawner_.With(word).size() >= count; }, milliseconds(10000));
    EXPECT_TRUE(done.ok()) << done.status().message();
    return done.ok() && *done;
  }

  // Lines of the daemon's log containing `text`.
  int LogCount(const std::string& text) {
    std::ifstream log(tree_.Path("bantam.log"));
    int n = 0;
    for (std::string line; std::getline(log, line);) n += line.find(text) != std::string::npos;
    return n;
  }

  SignalMaskGuard mask_;
  testing::TempTree tree_;
  FakeClock clock_{1700000000};
  RecordingSpawner spawner_;
};

// maxretry failures ban once; the ban ends when the fake clock passes
// bantime, and only then.
TEST_F(ServerTest, FailuresBanOnceAndFakeTimeLiftsTheBan) {
  std::unique_ptr<Server> server = Create();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Start().ok());
  ASSERT_TRUE(RunUntilScripts(*server, "do-start", 1));

  Fail("192.0.2.7", 2);
  // Two failures: no ban, whatever time passes in the loop.
  Result<bool> idle = server->RunUntil([] { return false; }, milliseconds(300));
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(spawner_.With("do-ban").empty());

  Fail("192.0.2.7", 1);
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban", 1));
  std::vector<std::string> bans = spawner_.With("do-ban");
  ASSERT_EQ(bans.size(), 1u);
  EXPECT_NE(bans[0].find("do-ban 192.0.2.7"), std::string::npos) << bans[0];

  // Real time passes (the service timer runs) but not fake time: no unban.
  idle = server->RunUntil([] { return false; }, milliseconds(1500));
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(spawner_.With("do-unban").empty());

  clock_.Advance(601);
  ASSERT_TRUE(RunUntilScripts(*server, "do-unban", 1));
  std::vector<std::string> unbans = spawner_.With("do-unban");
  ASSERT_EQ(unbans.size(), 1u);
  EXPECT_NE(unbans[0].find("do-unban 192.0.2.7"), std::string::npos) << unbans[0];
  EXPECT_EQ(spawner_.With("do-ban").size(), 1u);

  server->Finish();
  EXPECT_EQ(spawner_.With("do-stop").size(), 1u);
}

// <ipfailures> and <ipjailmatches> read the address's past bans from the
// database (a second connection), the ban being acted on included.
TEST_F(ServerTest, BanTagsReadTheAddressHistoryFromTheDatabase) {
  tree_.Write("action.d/record.conf",
              "[Definition]\nactionban = do-ban <ip> failures=<ipfailures> "
              "matches=<ipjailmatches>\nactionunban = do-unban <ip>\n");
  std::unique_ptr<Server> server = Create();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Start().ok());
  Fail("192.0.2.7", 3);
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban", 1));
  clock_.Advance(601);
  ASSERT_TRUE(RunUntilScripts(*server, "do-unban", 1));
  Fail("192.0.2.7", 3);
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban", 2));
  const std::vector<std::string> bans = spawner_.With("do-ban");
  ASSERT_EQ(bans.size(), 2u);
  EXPECT_NE(bans[0].find("failures=3 "), std::string::npos) << bans[0];
  EXPECT_NE(bans[1].find("failures=6 "), std::string::npos) << bans[1];
  // <ipjailmatches> reaches the shell as an argument: both bans' lines.
  const std::vector<std::vector<std::string>> args = spawner_.ArgsWith("do-ban");
  ASSERT_EQ(args.size(), 2u);
  std::string all;
  for (const std::string& a : args[1]) all += a + "\n";
  size_t lines = 0;
  for (size_t at = all.find("auth failed from 192.0.2.7"); at != std::string::npos;
       at = all.find("auth failed from 192.0.2.7", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 6u) << all;
  server->Finish();
  // Every ban was written when it was made: none waited for a retry.
  EXPECT_EQ(LogCount("Cannot write to the database"), 0);
}

// Jails sharing logs: a.log is read by jails a and ab, b.log by ab and b.
// Each line reaches exactly the jails of its file (ab counts an address's
// failures over both files), whichever file the last line came from.
TEST_F(ServerTest, EachLineReachesTheJailsOfItsFileOnly) {
  const std::string d = tree_.root();
  tree_.Write("action.d/record.conf",
              "[Definition]\nactionban = do-ban <name> <ip>\nactionunban =\n[Init]\nname = x\n");
  std::string jails = "[DEFAULT]\nignoreself = false\nfilter = pbx\nmaxretry = 2\n"
                      "findtime = 600\nbantime = 600\n";
  for (const auto& [name, logs] : std::vector<std::pair<std::string, std::string>>{
           {"a", d + "/a.log"}, {"ab", d + "/a.log\n          " + d + "/b.log"},
           {"b", d + "/b.log"}}) {
    jails += "[" + name + "]\nenabled = true\naction = record[name=" + name + "]\nlogpath = " +
             logs + "\n";
  }
  tree_.Write("jail.conf", jails);
  tree_.Write("a.log", "");
  tree_.Write("b.log", "");
  std::unique_ptr<Server> server = Create();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Start().ok());
  const auto fail = [&](const std::string& log, const std::string& ip) {
    std::ofstream out(tree_.Path(log), std::ios::app);
    out << LocalTime(clock_.Now()) << " auth failed from " << ip << "\n";
  };
  // Alternating files, each line served before the next is written.
  const std::vector<std::pair<std::string, std::string>> lines = {
      {"a.log", "192.0.2.1"}, {"b.log", "192.0.2.2"}, {"a.log", "192.0.2.3"},
      {"b.log", "192.0.2.3"}, {"a.log", "192.0.2.1"}, {"b.log", "192.0.2.2"}};
  for (const auto& [log, ip] : lines) {
    fail(log, ip);
    ASSERT_TRUE(server->RunUntil([] { return false; }, milliseconds(150)).ok());
  }
  // 192.0.2.1: twice in a.log; .2: twice in b.log; .3: once in each.
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban", 5));
  ASSERT_TRUE(server->RunUntil([] { return false; }, milliseconds(300)).ok());
  std::vector<std::string> bans;
  for (const std::string& script : spawner_.With("do-ban")) {
    bans.push_back(script.substr(script.find("do-ban ")));
  }
  std::sort(bans.begin(), bans.end());
  EXPECT_EQ(bans, (std::vector<std::string>{"do-ban a 192.0.2.1", "do-ban ab 192.0.2.1",
                                            "do-ban ab 192.0.2.2", "do-ban ab 192.0.2.3",
                                            "do-ban b 192.0.2.2"}));
  server->Finish();
}

// A server that goes away without its stop (as after kill -9: no position
// saved at stop, no actionstop) leaves on disk exactly what its turns
// committed: the log position together with the failure windows read up to
// it. The next server neither counts those lines again (two failures read
// twice would reach maxretry 3) nor forgets them (one more failure bans).
TEST_F(ServerTest, CrashNeitherRecountsNorForgetsFailures) {
  {
    std::unique_ptr<Server> first = Create();
    ASSERT_NE(first, nullptr);
    ASSERT_TRUE(first->Start().ok());
    Fail("192.0.2.7", 2);
    Fail("198.51.100.9", 2);
    Result<bool> idle = first->RunUntil([] { return false; }, milliseconds(500));
    ASSERT_TRUE(idle.ok());
    EXPECT_TRUE(spawner_.With("do-ban").empty());
    // Destroyed without Finish().
  }
  ASSERT_TRUE(spawner_.With("do-stop").empty());

  std::unique_ptr<Server> second = Create();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Start().ok());
  Result<bool> idle = second->RunUntil([] { return false; }, milliseconds(500));
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(spawner_.With("do-ban").empty()) << "lines read before the crash were counted again";

  Fail("192.0.2.7", 1);
  ASSERT_TRUE(RunUntilScripts(*second, "do-ban", 1)) << "failures before the crash were forgotten";
  idle = second->RunUntil([] { return false; }, milliseconds(300));
  ASSERT_TRUE(idle.ok());
  std::vector<std::string> bans = spawner_.With("do-ban");
  ASSERT_EQ(bans.size(), 1u);
  EXPECT_NE(bans[0].find("do-ban 192.0.2.7"), std::string::npos) << bans[0];

  // The windows are forgotten once findtime passed, across a restart too.
  second.reset();
  clock_.Advance(601);
  std::unique_ptr<Server> third = Create();
  ASSERT_NE(third, nullptr);
  ASSERT_TRUE(third->Start().ok());
  Fail("198.51.100.9", 1);
  idle = third->RunUntil([] { return false; }, milliseconds(500));
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(spawner_.With("do-ban 198.51.100.9").size(), 0u);
  third->Finish();
  // Each line of the log was counted once, by one of the three servers.
  EXPECT_EQ(LogCount("] Found 192.0.2.7 "), 3);
  EXPECT_EQ(LogCount("] Found 198.51.100.9 "), 3);
}

// The same for a journal jail: the journal's position (the time of the last
// entry read) is saved with the failure windows, so entries read before a
// crash are neither counted again nor forgotten.
TEST_F(ServerTest, JournalCrashNeitherRecountsNorForgetsFailures) {
  BANTAM_REQUIRE_TOOL(::access(testing::kJournalRemote, X_OK) == 0, testing::kJournalRemote,
                      "systemd-journal-remote");
  const std::string d = tree_.root();
  tree_.Write("filter.d/pbxj.conf", "[Definition]\nfailregex = auth failed from <HOST>$\n");
  tree_.Write("jail.conf",
              "[DEFAULT]\nignoreself = false\n[pbxj]\nenabled = true\nfilter = pbxj\n"
              "action = record\nbackend = systemd[journalfiles=\"" +
                  d + "/journal/*.journal\"]\nmaxretry = 3\nfindtime = 600\nbantime = 600\n");
  std::filesystem::create_directories(d + "/journal");
  int entry = 0;
  auto failures = [&](const std::string& file, const std::string& ip, int n, double at) {
    std::vector<testing::JournalFields> entries;
    for (int i = 0; i < n; ++i, ++entry) {
      const long long usec = static_cast<long long>((at + i) * 1e6);
      entries.push_back({{"__REALTIME_TIMESTAMP", std::to_string(usec)},
                         {"__MONOTONIC_TIMESTAMP", std::to_string(1000000 + entry)},
                         {"_BOOT_ID", "0123456789abcdef0123456789abcdef"},
                         {"_HOSTNAME", "pbx"},
                         {"SYSLOG_IDENTIFIER", "asterisk"},
                         {"_PID", "7"},
                         {"MESSAGE", "auth failed from " + ip}});
    }
    ASSERT_TRUE(testing::WriteJournalFile(entries, d + "/journal/" + file + ".journal",
                                          d + "/" + file + ".export"));
  };
  const double now = clock_.Now();
  failures("a", "192.0.2.7", 2, now - 100);
  {
    std::unique_ptr<Server> first = Create();
    ASSERT_NE(first, nullptr);
    ASSERT_TRUE(first->Start().ok());
    Result<bool> idle = first->RunUntil([&] { return LogCount("] Found 192.0.2.7 ") >= 2; },
                                        milliseconds(5000));
    ASSERT_TRUE(idle.ok());
    ASSERT_EQ(LogCount("] Found 192.0.2.7 "), 2);
    EXPECT_TRUE(spawner_.With("do-ban").empty());
    // Destroyed without Finish(): as after kill -9.
  }
  failures("b", "192.0.2.7", 1, now - 50);
  std::unique_ptr<Server> second = Create();
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Start().ok());
  ASSERT_TRUE(RunUntilScripts(*second, "do-ban 192.0.2.7", 1)) << "failures before the crash were forgotten";
  second->Finish();
  EXPECT_EQ(LogCount("] Found 192.0.2.7 "), 3) << "entries read before the crash were counted again";
}

// A reload that replaces a jail's action (same name, new options) lifts the
// bans and runs actionstop of the old one before the new one's actionstart
// and bans: both may own the same chain or set, and a start that overtook
// the slow stop would have its chain deleted under it. The same holds for a
// jail rebuilt and for one restarted.
TEST_F(ServerTest, ReplacedActionStopsBeforeItsSuccessorStarts) {
  spawner_.SlowDown("do-stop", milliseconds(400));
  std::unique_ptr<Server> server = Create();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Start().ok());
  Fail("192.0.2.7", 3);
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban 192.0.2.7", 1));

  const std::string d = tree_.root();
  tree_.Write("jail.conf",
              "[DEFAULT]\nignoreself = false\n[pbx]\nenabled = true\nfilter = pbx\n"
              "action = record[x=1]\nlogpath = " +
                  d + "/pbx.log\nmaxretry = 3\nfindtime = 600\nbantime = 600\n");
  ASSERT_EQ(::kill(::getpid(), SIGHUP), 0);
  // Failures found around the reload: banned by the new action too, after
  // the old one stopped.
  Fail("198.51.100.9", 3);
  ASSERT_TRUE(RunUntilScripts(*server, "do-ban 192.0.2.7", 2));
  ASSERT_TRUE(server->RunUntil([&] { return spawner_.IndexOf("do-ban 198.51.100.9") >= 0 &&
                                            spawner_.IndexOf("do-start", 2) >= 0; },
                               milliseconds(10000)).ok());
  ASSERT_EQ(LogCount("Reload finished."), 1);
  const int old_unban = spawner_.IndexOf("do-unban 192.0.2.7");
  const int old_stop = spawner_.IndexOf("do-stop");
  const int new_start = spawner_.IndexOf("do-start", 2);
  const int new_ban = spawner_.IndexOf("do-ban 192.0.2.7", 2);
  ASSERT_GE(old_unban, 0);
  ASSERT_GE(old_stop, 0);
  ASSERT_GE(new_start, 0);
  EXPECT_LT(old_unban, old_stop);
  EXPECT_LT(old_stop, new_start) << "the new action started before the old one stopped";
  EXPECT_LT(new_start, new_ban);
  Result<bool> idle = server->RunUntil([] { return false; }, milliseconds(300));
  ASSERT_TRUE(idle.ok());
  const std::vector<std::string> late = spawner_.With("do-ban 198.51.100.9");
  ASSERT_FALSE(late.empty());
  EXPECT_LT(old_stop, spawner_.IndexOf("do-ban 198.51.100.9", static_cast<int>(late.size())))
      << "the new action never got the ban found during the reload";

  server->Finish();
  EXPECT_EQ(spawner_.With("do-stop").size(), 2u);
  EXPECT_LT(spawner_.IndexOf("do-unban 198.51.100.9"), spawner_.IndexOf("do-stop", 2));
}

}  // namespace
}  // namespace bantam
