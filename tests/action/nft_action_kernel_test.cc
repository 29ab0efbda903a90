// NftAction on the real kernel, inside the test binary's own network
// namespace (main() in nft_ruleset_test.cc): batching, per-element errors, repair
// after `nft flush ruleset`, and flush/stop removing only what it added.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bantam/clock.h"
#include "bantam/nft_action.h"
#include "bantam/spawner.h"
#include "../testing/require.h"

namespace bantam {
namespace {

// main() (nft_ruleset_test.cc) left the host's network namespace: ours is
// not the one of the process that started us.
bool InOwnNetns() {
  struct stat self {}, parent {};
  const std::string p = "/proc/" + std::to_string(getppid()) + "/ns/net";
  return stat("/proc/self/ns/net", &self) == 0 && stat(p.c_str(), &parent) == 0 &&
         self.st_ino != parent.st_ino;
}

std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

NftStockAction Allports(const std::string& name) {
  NftStockAction a;
  a.spec.set_v4 = "addr-set-" + name;
  a.spec.set_v6 = "addr6-set-" + name;
  a.spec.rules.push_back(NftRule{{6, 17}, {}});
  return a;
}

BanInfo Ban(const std::string& ip) {
  BanInfo b;
  b.jail = "pbx";
  b.ip = ip;
  b.family = ip.find(':') == std::string::npos ? "inet4" : "inet6";
  b.time = 1e9;
  b.bantime = 600;
  return b;
}

class NftActionKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    BANTAM_REQUIRE_ROOT(InOwnNetns(), "unshare(CLONE_NEWNET) for a network namespace of its own");
    // The tests look at the kernel's sets and rules with nft.
    BANTAM_REQUIRE_TOOL(std::system("nft --version >/dev/null 2>&1") == 0, "nft", "nftables");
    Shell("nft flush ruleset");
  }
  void TearDown() override {
    if (InOwnNetns()) Shell("nft flush ruleset");
  }

  // Submits `ops` in one turn and waits for their reports.
  std::vector<ActionReport> Turn(NftAction& a, const std::vector<std::pair<ActionOp, BanInfo>>& ops) {
    std::vector<ActionReport> out(ops.size());
    size_t done = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      a.Submit(ops[i].first, ops[i].second, [&out, &done, i](ActionReport r) {
        out[i] = std::move(r);
        ++done;
      });
    }
    a.EndTurn();
    for (int k = 0; k < 200 && done < ops.size(); ++k) pool_.WaitAndRunCompletions(50);
    EXPECT_EQ(done, ops.size());
    return out;
  }

  std::set<std::string> Elements(const std::string& set) {
    std::string text = Shell("nft list set inet f2b-table " + set + " 2>/dev/null");
    std::set<std::string> out;
    size_t at = text.find("elements = {");
    if (at == std::string::npos) return out;
    size_t end = text.find('}', at);
    std::string body = text.substr(at + 12, end - at - 12);
    std::string cur;
    for (char c : body) {
      if (c == ',' || c == ' ' || c == '\n' || c == '\t') {
        if (!cur.empty()) out.insert(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) out.insert(cur);
    return out;
  }

  // The set as `nft list set` prints it, expiry times dropped.
  std::string List(const std::string& set) {
    std::string text = Shell("nft list set inet f2b-table " + set + " 2>&1");
    for (size_t at; (at = text.find(" expires ")) != std::string::npos;) {
      size_t end = text.find_first_of(",\n }", at + 9);
      text.erase(at, end - at);
    }
    return text;
  }

  // A jail with prefix4/prefix6/aggregate*: its action makes interval sets.
  ActionEnv NetworkEnv() {
    ActionEnv e = env_;
    e.network_bans = true;
    return e;
  }

  WorkerPool pool_{1};
  ActionEnv env_{nullptr, &pool_, true};
};

TEST_F(NftActionKernel, OneTurnOfBansLandsInTheSets) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  auto r = Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")},
                    {ActionOp::kBan, Ban("192.0.2.2")}, {ActionOp::kBan, Ban("2001:db8::1")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8::1"}));
}

// The fleet's backlog can hold a ban and its unban, read in one batch by a
// node that has banned nothing yet: the unban used to be skipped ("nothing
// banned in this family") and the address stayed in the set.
TEST_F(NftActionKernel, UnbanBehindTheFirstBanOfAFamilyInOneTurnIsApplied) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  // No kStart: the stock nftables actions start on demand, with the first ban.
  auto r = Turn(a, {{ActionOp::kBan, Ban("192.0.2.1")}, {ActionOp::kBan, Ban("192.0.2.2")},
                    {ActionOp::kUnban, Ban("192.0.2.1")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_FALSE(r[2].skipped);
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.2"}));
}

TEST_F(NftActionKernel, ARefusedElementFailsOnlyItsOwnOperation) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  auto r = Turn(a, {{ActionOp::kUnban, Ban("192.0.2.9")}, {ActionOp::kBan, Ban("192.0.2.3")},
                    {ActionOp::kUnban, Ban("192.0.2.1")}});
  EXPECT_FALSE(r[0].status.ok());
  EXPECT_NE(r[0].status.message().find("delete element inet f2b-table addr-set-pbx { 192.0.2.9 }"),
            std::string::npos)
      << r[0].status.message();
  EXPECT_TRUE(r[1].status.ok()) << r[1].status.message();
  EXPECT_TRUE(r[2].status.ok()) << r[2].status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.3"}));
}

TEST_F(NftActionKernel, FlushRulesetIsRepairedOnTheNextBanWithEveryBan) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")},
           {ActionOp::kBan, Ban("192.0.2.2")}, {ActionOp::kBan, Ban("2001:db8::1")}});
  Shell("nft flush ruleset");
  auto r = Turn(a, {{ActionOp::kBan, Ban("192.0.2.3")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  ASSERT_FALSE(r[0].notes.empty());
  EXPECT_EQ(Elements("addr-set-pbx"),
            (std::set<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.3"}));
  EXPECT_NE(Shell("nft list chain inet f2b-table f2b-chain").find("@addr-set-pbx"), std::string::npos);
  // The IPv6 family was repaired with it.
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8::1"}));
  r = Turn(a, {{ActionOp::kBan, Ban("2001:db8::2")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8::1", "2001:db8::2"}));
}

TEST_F(NftActionKernel, DeletedRuleIsNoticedOnTheNextBan) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  Shell("nft flush chain inet f2b-table f2b-chain");
  auto r = Turn(a, {{ActionOp::kBan, Ban("192.0.2.2")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_FALSE(r[0].notes.empty());
  EXPECT_NE(Shell("nft list chain inet f2b-table f2b-chain").find("@addr-set-pbx"), std::string::npos);
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
}

TEST_F(NftActionKernel, FlushAndStopRemoveOnlyWhatTheActionAdded) {
  Shell("nft add table ip operator; nft add chain ip operator input; "
      "nft add rule ip operator input tcp dport 22 accept");
  NftAction other("sshd", "nftables", {}, Allports("sshd"), env_);
  Turn(other, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("198.51.100.7")}});
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  // Someone else's element in our set stays through a flush.
  Shell("nft add element inet f2b-table addr-set-pbx { 203.0.113.5 }");
  auto r = Turn(a, {{ActionOp::kFlush, {}}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"203.0.113.5"}));
  r = Turn(a, {{ActionOp::kStop, {}}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  const std::string ruleset = Shell("nft list ruleset");
  EXPECT_EQ(ruleset.find("addr-set-pbx"), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("addr-set-sshd"), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("198.51.100.7"), std::string::npos) << ruleset;
  EXPECT_NE(ruleset.find("table ip operator"), std::string::npos) << ruleset;
  Turn(other, {{ActionOp::kFlush, {}}, {ActionOp::kStop, {}}});
  EXPECT_EQ(Shell("nft list ruleset").find("f2b-table"), std::string::npos);
}

TEST_F(NftActionKernel, KernelTimeoutsCarryTheBansRemainingTime) {
  NftStockAction s = Allports("pbx");
  s.spec.element_timeouts = true;
  NftAction a("pbx", "nftables", {}, s, env_);
  BanInfo b = Ban("192.0.2.1");
  const auto now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  // Banned this instant, for an hour: the element's timeout is the time
  // left when it reaches the kernel, rounded up to a second. That is 1h
  // unless the turn took a second or more (a loaded sanitizer run); then
  // 59 minutes and some seconds, never more than 1h nor without a timeout.
  b.time = now();
  b.bantime = 3600;
  auto r = Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, b}});
  const double took = now() - b.time;
  EXPECT_TRUE(r[1].status.ok()) << r[1].status.message();
  const std::string set = Shell("nft list set inet f2b-table addr-set-pbx");
  EXPECT_NE(set.find("flags timeout"), std::string::npos) << set;
  EXPECT_NE(set.find(took < 1.0 ? "192.0.2.1 timeout 1h" : "192.0.2.1 timeout 59m"),
            std::string::npos)
      << "turn took " << took << " s\n" << set;
  // A repair puts the address back with the time it has left, not forever.
  Shell("nft flush ruleset");
  BanInfo c = Ban("192.0.2.2");
  c.time = b.time;
  c.bantime = 3600;
  r = Turn(a, {{ActionOp::kBan, c}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  const std::string repaired = Shell("nft list set inet f2b-table addr-set-pbx");
  EXPECT_NE(repaired.find("192.0.2.1 timeout"), std::string::npos) << repaired;
  EXPECT_NE(repaired.find("192.0.2.2 timeout"), std::string::npos) << repaired;
}

// Issue 18: with network_bans the sets have flags interval; a /64 and a /24
// go in as intervals beside single addresses and come out whole.
TEST_F(NftActionKernel, NetworkBansAddAndDeleteIntervals) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  auto r = Turn(a, {{ActionOp::kBan, Ban("2001:db8:1:2::/64")},
                    {ActionOp::kBan, Ban("198.51.100.0/24")},
                    {ActionOp::kBan, Ban("192.0.2.1")},
                    {ActionOp::kBan, Ban("2001:db8:1:3::9")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(List("addr6-set-pbx"),
            "table inet f2b-table {\n"
            "\tset addr6-set-pbx {\n"
            "\t\ttype ipv6_addr\n"
            "\t\tflags interval\n"
            "\t\telements = { 2001:db8:1:2::/64,\n"
            "\t\t\t     2001:db8:1:3::9 }\n"
            "\t}\n"
            "}\n");
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "198.51.100.0/24"}));
  r = Turn(a, {{ActionOp::kUnban, Ban("2001:db8:1:2::/64")},
               {ActionOp::kUnban, Ban("198.51.100.0/24")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8:1:3::9"}));
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1"}));
  // A network not banned fails its unban alone, as an address does.
  r = Turn(a, {{ActionOp::kUnban, Ban("2001:db8:1:2::/64")}});
  EXPECT_FALSE(r[0].status.ok());
}

// aggregate6 = 64:3: the jail lifts the per-address bans and bans the /64 in
// one turn, unbans first. The set then holds the /64 alone.
TEST_F(NftActionKernel, PrefixBanAndTheUnbansOfTheAddressesItCoversInOneTurn) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  Turn(a, {{ActionOp::kBan, Ban("2001:db8:1:2::1")}, {ActionOp::kBan, Ban("2001:db8:1:2::2")},
           {ActionOp::kBan, Ban("2001:db8:1:2::3")}, {ActionOp::kBan, Ban("2001:db8:5::1")}});
  auto r = Turn(a, {{ActionOp::kUnban, Ban("2001:db8:1:2::1")},
                    {ActionOp::kUnban, Ban("2001:db8:1:2::2")},
                    {ActionOp::kUnban, Ban("2001:db8:1:2::3")},
                    {ActionOp::kBan, Ban("2001:db8:1:2::/64")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(Elements("addr6-set-pbx"),
            (std::set<std::string>{"2001:db8:1:2::/64", "2001:db8:5::1"}));
}

// The same turn in the other order (the ban first): the kernel refuses an
// interval overlapping an element, so the covered unbans go first anyway.
TEST_F(NftActionKernel, PrefixBanBeforeTheUnbansOfTheAddressesItCovers) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  Turn(a, {{ActionOp::kBan, Ban("198.51.100.1")}, {ActionOp::kBan, Ban("198.51.100.2")}});
  auto r = Turn(a, {{ActionOp::kBan, Ban("198.51.100.0/24")},
                    {ActionOp::kUnban, Ban("198.51.100.1")},
                    {ActionOp::kUnban, Ban("198.51.100.2")}});
  for (const ActionReport& x : r) {
    EXPECT_TRUE(x.status.ok()) << x.status.message();
    EXPECT_TRUE(x.warnings.empty()) << x.warnings[0];
  }
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"198.51.100.0/24"}));
}

// A covering network banned while an address inside it stays banned (no
// unban comes): the address leaves the kernel's set for the network's time
// and comes back when the network is unbanned; an address banned while its
// network is in the set waits the same way.
TEST_F(NftActionKernel, AddressesInsideABannedNetworkReturnWhenItIsUnbanned) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  Turn(a, {{ActionOp::kBan, Ban("2001:db8:1:2::1")}});
  auto r = Turn(a, {{ActionOp::kBan, Ban("2001:db8:1:2::/64")},
                    {ActionOp::kBan, Ban("2001:db8:1:2::7")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8:1:2::/64"}));
  r = Turn(a, {{ActionOp::kUnban, Ban("2001:db8:1:2::7")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  r = Turn(a, {{ActionOp::kUnban, Ban("2001:db8:1:2::/64")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8:1:2::1"}));
}

// `nft flush ruleset` with intervals in the sets: the next ban makes the
// interval sets again and puts every network and address back.
TEST_F(NftActionKernel, FlushRulesetIsRepairedWithIntervals) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("2001:db8:1:2::/64")},
           {ActionOp::kBan, Ban("198.51.100.0/24")}, {ActionOp::kBan, Ban("192.0.2.1")}});
  Shell("nft flush ruleset");
  auto r = Turn(a, {{ActionOp::kBan, Ban("203.0.113.0/24")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_FALSE(r[0].notes.empty());
  EXPECT_EQ(Elements("addr-set-pbx"),
            (std::set<std::string>{"192.0.2.1", "198.51.100.0/24", "203.0.113.0/24"}));
  EXPECT_EQ(Elements("addr6-set-pbx"), (std::set<std::string>{"2001:db8:1:2::/64"}));
  EXPECT_NE(List("addr6-set-pbx").find("flags interval"), std::string::npos);
  r = Turn(a, {{ActionOp::kFlush, {}}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_TRUE(Elements("addr-set-pbx").empty());
  EXPECT_TRUE(Elements("addr6-set-pbx").empty());
  Turn(a, {{ActionOp::kBan, Ban("2001:db8:1:2::/64")}});
  r = Turn(a, {{ActionOp::kStop, {}}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_EQ(Shell("nft list ruleset").find("f2b-table"), std::string::npos);
}

// Without network_bans the sets have no flags interval: a network id fails
// its own operation, saying why, and the set is left as it was.
TEST_F(NftActionKernel, NetworkWithoutNetworkBansFailsItsOperation) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  auto r = Turn(a, {{ActionOp::kBan, Ban("192.0.2.1")}, {ActionOp::kBan, Ban("198.51.100.0/24")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  ASSERT_FALSE(r[1].status.ok());
  EXPECT_NE(r[1].status.message().find("addr-set-pbx { 198.51.100.0/24 }: a network, but "
                                       "addr-set-pbx has no flags interval"),
            std::string::npos)
      << r[1].status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1"}));
}

// A set left by an older run without network bans (no flags) is replaced by
// an interval set when the jail now bans networks.
TEST_F(NftActionKernel, OlderNonIntervalSetIsReplacedAtStart) {
  {
    NftAction old("pbx", "nftables", {}, Allports("pbx"), env_);
    Turn(old, {{ActionOp::kBan, Ban("192.0.2.1")}});
  }
  NftAction a("pbx", "nftables", {}, Allports("pbx"), NetworkEnv());
  auto r = Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")},
                    {ActionOp::kBan, Ban("198.51.100.0/24")}});
  for (const ActionReport& x : r) EXPECT_TRUE(x.status.ok()) << x.status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "198.51.100.0/24"}));
  const std::string chain = Shell("nft list chain inet f2b-table f2b-chain");
  EXPECT_EQ(chain.find("@addr-set-pbx"), chain.rfind("@addr-set-pbx")) << chain;
}

// Kernel timeouts with intervals: flags interval,timeout and the network
// carries the ban's remaining time.
TEST_F(NftActionKernel, NetworkBansWithKernelTimeouts) {
  NftStockAction s = Allports("pbx");
  s.spec.element_timeouts = true;
  NftAction a("pbx", "nftables", {}, s, NetworkEnv());
  BanInfo b = Ban("2001:db8:1:2::/64");
  // Banned this instant (not at a whole second, which left 59m59s when the
  // second turned before the turn ran): 1h unless the turn took a second.
  b.time = SystemClock().Now();
  b.bantime = 3600;
  auto r = Turn(a, {{ActionOp::kBan, b}});
  const double took = SystemClock().Now() - b.time;
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  const std::string set = List("addr6-set-pbx");
  EXPECT_NE(set.find("flags interval,timeout"), std::string::npos) << set;
  EXPECT_NE(set.find(took < 1.0 ? "2001:db8:1:2::/64 timeout 1h" : "2001:db8:1:2::/64 timeout 59m"),
            std::string::npos)
      << "turn took " << took << " s\n" << set;
}


// Issue 15: a small turn of a started action is applied on the loop thread
// and reported before EndTurn returns, with no completion to wait for.
TEST_F(NftActionKernel, SmallTurnIsAppliedInlineAndLandsInTheSet) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  std::vector<ActionReport> reports;
  std::vector<std::thread::id> threads;
  for (const char* ip : {"192.0.2.2", "192.0.2.3"}) {
    a.Submit(ActionOp::kBan, Ban(ip), [&](ActionReport r) {
      reports.push_back(std::move(r));
      threads.push_back(std::this_thread::get_id());
    });
  }
  a.EndTurn();
  ASSERT_EQ(reports.size(), 2u);
  for (const ActionReport& r : reports) EXPECT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(reports[0].ip, "192.0.2.2");
  EXPECT_EQ(reports[1].ip, "192.0.2.3");
  for (const std::thread::id& t : threads) EXPECT_EQ(t, std::this_thread::get_id());
  EXPECT_EQ(Elements("addr-set-pbx"),
            (std::set<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.3"}));
  // And an inline unban takes it out again.
  auto r = Turn(a, {{ActionOp::kUnban, Ban("192.0.2.2")}});
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "192.0.2.3"}));
}

// The first ban of a family starts it (a few objects), a larger turn is a
// restore slice: both stay on the worker.
TEST_F(NftActionKernel, FirstBanAndLargeTurnsGoToTheWorker) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  size_t done = 0;
  a.Submit(ActionOp::kBan, Ban("192.0.2.1"), [&](ActionReport) { ++done; });
  a.EndTurn();
  EXPECT_EQ(done, 0u);
  for (int k = 0; k < 200 && done < 1; ++k) pool_.WaitAndRunCompletions(50);
  ASSERT_EQ(done, 1u);
  const size_t n = NftAction::kInlineMaxOps + 1;
  for (size_t i = 0; i < n; ++i) {
    a.Submit(ActionOp::kBan, Ban("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250)),
             [&](ActionReport r) {
               EXPECT_TRUE(r.status.ok()) << r.status.message();
               ++done;
             });
  }
  a.EndTurn();
  EXPECT_EQ(done, 1u);
  for (int k = 0; k < 200 && done < 1 + n; ++k) pool_.WaitAndRunCompletions(50);
  EXPECT_EQ(done, 1 + n);
  EXPECT_EQ(Elements("addr-set-pbx").size(), 1 + n);
}

// A turn that comes while an earlier one is on the worker (or has not
// reported yet) goes behind it: its unban of an address the earlier turn
// banned finds it there, and the reports come in submission order.
TEST_F(NftActionKernel, TurnArrivingWhileTheWorkerIsBusyGoesBehindIt) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  std::vector<std::string> order;
  std::vector<ActionReport> small;
  constexpr size_t kBig = 5000;
  for (size_t i = 0; i < kBig; ++i) {
    a.Submit(ActionOp::kBan, Ban("10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250)),
             [&](ActionReport r) {
               EXPECT_TRUE(r.status.ok()) << r.status.message();
               order.push_back("big");
             });
  }
  a.EndTurn();
  a.Submit(ActionOp::kUnban, Ban("10.2.0.7"), [&](ActionReport r) {
    order.push_back("small");
    small.push_back(std::move(r));
  });
  a.Submit(ActionOp::kBan, Ban("192.0.2.50"), [&](ActionReport r) {
    order.push_back("small");
    small.push_back(std::move(r));
  });
  a.EndTurn();
  EXPECT_TRUE(small.empty());  // not inline: the big turn has not reported
  for (int k = 0; k < 400 && order.size() < kBig + 2; ++k) pool_.WaitAndRunCompletions(50);
  ASSERT_EQ(order.size(), kBig + 2);
  for (size_t i = 0; i < kBig; ++i) ASSERT_EQ(order[i], "big") << i;
  ASSERT_EQ(small.size(), 2u);
  EXPECT_TRUE(small[0].status.ok()) << small[0].status.message();
  EXPECT_TRUE(small[1].status.ok()) << small[1].status.message();
  const std::set<std::string> in = Elements("addr-set-pbx");
  EXPECT_EQ(in.size(), kBig + 1);  // 192.0.2.1 and .50, 10.2.0.7 out
  EXPECT_EQ(in.count("10.2.0.7"), 0u);
  EXPECT_EQ(in.count("192.0.2.50"), 1u);
  // Everything reported: the next small turn is inline again.
  size_t inline_done = 0;
  a.Submit(ActionOp::kBan, Ban("192.0.2.51"), [&](ActionReport) { ++inline_done; });
  a.EndTurn();
  EXPECT_EQ(inline_done, 1u);
}

// A ban the kernel refuses on the inline path fails its own operation with
// the report the worker gives (the daemon logs it and keeps the ban
// recorded), is not held by the action (a flush does not look for it), and
// goes in when banned again once there is room.
TEST_F(NftActionKernel, BanRefusedOnTheInlinePathFailsAsOnTheWorker) {
  // A set of ours with room for two, made before the action starts: Start
  // keeps a set with the right type and flags.
  Shell("nft add table inet f2b-table; "
        "nft add set inet f2b-table addr-set-pbx '{ type ipv4_addr; size 2; }'");
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  ASSERT_NE(List("addr-set-pbx").find("size 2"), std::string::npos) << List("addr-set-pbx");
  std::vector<ActionReport> r;
  a.Submit(ActionOp::kBan, Ban("192.0.2.2"), [&](ActionReport x) { r.push_back(std::move(x)); });
  a.Submit(ActionOp::kBan, Ban("192.0.2.3"), [&](ActionReport x) { r.push_back(std::move(x)); });
  a.EndTurn();
  ASSERT_EQ(r.size(), 2u);  // inline
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.message();
  ASSERT_FALSE(r[1].status.ok());
  const std::string inline_error = r[1].status.message();
  EXPECT_NE(inline_error.find("add element inet f2b-table addr-set-pbx { 192.0.2.3 }: "),
            std::string::npos)
      << inline_error;
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
  // The same ban on the worker (a check in the turn sends it there) fails
  // with the same report.
  auto w = Turn(a, {{ActionOp::kCheck, {}}, {ActionOp::kBan, Ban("192.0.2.3")}});
  EXPECT_EQ(w[1].status.message(), inline_error);
  EXPECT_EQ(w[1].notes, r[1].notes);
  // The action does not hold what the kernel refused: a flush finds every
  // element it deletes (a held 192.0.2.3 would make a note of ENOENT).
  auto f = Turn(a, {{ActionOp::kFlush, {}}});
  EXPECT_TRUE(f[0].status.ok()) << f[0].status.message();
  EXPECT_TRUE(f[0].notes.empty()) << f[0].notes[0];
  EXPECT_TRUE(Elements("addr-set-pbx").empty());
  // Room made, the ban given again goes in, inline.
  std::vector<ActionReport> again;
  a.Submit(ActionOp::kBan, Ban("192.0.2.3"), [&](ActionReport x) { again.push_back(std::move(x)); });
  a.EndTurn();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again[0].status.ok()) << again[0].status.message();
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.3"}));
}

// A small turn that finds the set gone (`nft flush ruleset`) is not
// repaired on the loop thread: the repair puts back every ban held.
TEST_F(NftActionKernel, SmallTurnNeedingARepairGoesToTheWorker) {
  NftAction a("pbx", "nftables", {}, Allports("pbx"), env_);
  Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, Ban("192.0.2.1")}});
  Shell("nft flush ruleset");
  size_t done = 0;
  ActionReport got;
  a.Submit(ActionOp::kBan, Ban("192.0.2.2"), [&](ActionReport r) {
    got = std::move(r);
    ++done;
  });
  a.EndTurn();
  EXPECT_EQ(done, 0u);
  for (int k = 0; k < 200 && done < 1; ++k) pool_.WaitAndRunCompletions(50);
  ASSERT_EQ(done, 1u);
  EXPECT_TRUE(got.status.ok()) << got.status.message();
  EXPECT_FALSE(got.notes.empty());
  EXPECT_EQ(Elements("addr-set-pbx"), (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
}

}  // namespace
}  // namespace bantam
