// NftAction on the real kernel, inside the test binary's own network
// namespace (main() in nft_ruleset_test.cc): batching, per-element errors, repair
// after `nft flush ruleset`, and flush/stop removing only what it added.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

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
  b.time = static_cast<double>(time(nullptr));
  b.bantime = 3600;
  auto r = Turn(a, {{ActionOp::kStart, {}}, {ActionOp::kBan, b}});
  EXPECT_TRUE(r[1].status.ok()) << r[1].status.message();
  const std::string set = Shell("nft list set inet f2b-table addr-set-pbx");
  EXPECT_NE(set.find("flags timeout"), std::string::npos) << set;
  EXPECT_NE(set.find("192.0.2.1 timeout 1h"), std::string::npos) << set;
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

}  // namespace
}  // namespace bantam
