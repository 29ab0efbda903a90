// Which configured actions run natively (ReadStockNftAction / CreateAction),
// read from real configuration trees: Debian's /etc/fail2ban (copied to a
// temporary directory with a jail.local added) and the bundled one.
#include "bantam/nft_action.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <filesystem>
#include <fstream>

#include "bantam/action_factory.h"
#include "bantam/config_loader.h"
#include "bantam/jail.h"
#include "../testing/require.h"
#include "../testing/temp_tree.h"

namespace bantam {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

// The options of jail `test`'s actions, from `basedir` plus `jail_local`.
std::vector<JailActionConfig> ActionsOf(
    const std::string& basedir, const std::string& jail_local, TempTree* tree,
    const std::map<std::string, std::string>& extra_files = {}) {
  fs::copy(basedir, tree->Path("etc"), fs::copy_options::recursive);
  for (const auto& [rel, text] : extra_files) std::ofstream(tree->Path("etc/" + rel)) << text;
  std::ofstream(tree->Path("log")) << "";
  std::ofstream(tree->Path("etc/jail.local"))
      << "[test]\nenabled = true\nfilter =\nlogpath = " << tree->Path("log") << "\n"
      << jail_local;
  LoadOptions o;
  o.basedir = tree->Path("etc");
  o.jail = "test";
  Result<LoadedConfig> cfg = LoadConfig(o);
  EXPECT_TRUE(cfg.ok()) << cfg.status().message();
  if (!cfg.ok()) return {};
  std::vector<std::string> warnings;
  Result<std::vector<JailConfig>> jails = JailsFromCommands(cfg->commands, &warnings);
  EXPECT_TRUE(jails.ok());
  if (!jails.ok() || jails->empty()) return {};
  return jails->front().actions;
}

struct Recognized {
  std::optional<NftStockAction> stock;
  std::string reason;
};

Recognized Read(const JailActionConfig& a) {
  OrderedMap<std::string> opts;
  for (const auto& [k, v] : a.options) opts.Set(k, v.ToPyStr());
  Spawner* spawner = nullptr;
  Result<std::unique_ptr<CommandAction>> shell =
      CommandAction::Create("test", a.name, std::move(opts), ActionEnv{spawner, nullptr, true});
  EXPECT_TRUE(shell.ok());
  Recognized r;
  if (shell.ok()) r.stock = ReadStockNftAction(**shell, &r.reason);
  return r;
}

class StockTrees : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Basedir() const {
    return GetParam() == "debian" ? "/etc/fail2ban" : std::string(BANTAM_SOURCE_DIR) + "/config";
  }
  void SetUp() override {
    const std::string conf = Basedir() + "/action.d/nftables.conf";
    if (GetParam() == "debian") {
      BANTAM_REQUIRE_TOOL(fs::exists(conf), conf, "fail2ban");
    } else {
      ASSERT_TRUE(fs::exists(conf)) << conf << " is missing from the source tree";
    }
  }
};

TEST_P(StockTrees, AllportsIsNative) {
  TempTree t;
  auto actions = ActionsOf(Basedir(), "action = nftables[type=allports, name=ASTERISK, protocol=\"tcp,udp\"]\n", &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  ASSERT_TRUE(r.stock) << r.reason;
  const NftSpec& s = r.stock->spec;
  EXPECT_EQ(s.table_family, "inet");
  EXPECT_EQ(s.table, "f2b-table");
  EXPECT_EQ(s.chain, "f2b-chain");
  EXPECT_EQ(s.chain_hook, "input");
  EXPECT_EQ(s.chain_priority, -1);
  EXPECT_EQ(s.set_v4, "addr-set-ASTERISK");
  EXPECT_EQ(s.set_v6, "addr6-set-ASTERISK");
  ASSERT_EQ(s.rules.size(), 1u);
  EXPECT_EQ(s.rules[0].l4protos, (std::vector<uint8_t>{IPPROTO_TCP, IPPROTO_UDP}));
  EXPECT_TRUE(s.rules[0].dports.empty());
  EXPECT_EQ(s.block.verdict, NftBlock::Verdict::kReject);
  EXPECT_EQ(s.block.reject_type, -1);
  EXPECT_FALSE(s.element_timeouts);
  EXPECT_TRUE(r.stock->ipv6);
}

TEST_P(StockTrees, MultiportGivesOneRulePerProtocolWithPortsAndRanges) {
  TempTree t;
  auto actions = ActionsOf(
      Basedir(),
      "action = nftables-multiport[name=sip, port=\"5060,sip,10000:20000\", protocol=\"tcp,udp\", "
      "blocktype=drop]\n",
      &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  ASSERT_TRUE(r.stock) << r.reason;
  const NftSpec& s = r.stock->spec;
  ASSERT_EQ(s.rules.size(), 2u);
  EXPECT_EQ(s.rules[0].l4protos, (std::vector<uint8_t>{IPPROTO_TCP}));
  EXPECT_EQ(s.rules[1].l4protos, (std::vector<uint8_t>{IPPROTO_UDP}));
  using R = std::pair<uint16_t, uint16_t>;
  EXPECT_EQ(s.rules[1].dports, (std::vector<R>{{5060, 5060}, {5060, 5060}, {10000, 20000}}));
  EXPECT_EQ(s.block.verdict, NftBlock::Verdict::kDrop);
}

TEST_P(StockTrees, DebianDefaultBanactionFromJailConfIsNative) {
  // jail.conf's action_ = %(banaction)s[port=..., protocol=..., chain=...].
  TempTree t;
  auto actions = ActionsOf(Basedir(),
                           "banaction = nftables\nport = 5060,5061\nprotocol = udp\n"
                           "action = %(action_)s\n",
                           &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  ASSERT_TRUE(r.stock) << r.reason;
  ASSERT_EQ(r.stock->spec.rules.size(), 1u) << r.stock->spec.rules.size();
  EXPECT_EQ(r.stock->spec.rules[0].dports.size(), 2u);
}

TEST_P(StockTrees, RejectVariantsAndKernelTimeouts) {
  TempTree t;
  auto actions = ActionsOf(
      Basedir(),
      "action = nftables[type=allports, name=a, blocktype=\"reject with icmpx type admin-prohibited\", "
      "kernel_timeout=yes]\n",
      &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  ASSERT_TRUE(r.stock) << r.reason;
  EXPECT_EQ(r.stock->spec.block.reject_type, 2);
  EXPECT_EQ(r.stock->spec.block.reject_code, 3);
  EXPECT_TRUE(r.stock->spec.element_timeouts);
}

TEST_P(StockTrees, NativeNoForcesTheShell) {
  TempTree t;
  auto actions = ActionsOf(Basedir(), "action = nftables[type=allports, native=no]\n", &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  EXPECT_FALSE(r.stock);
  EXPECT_EQ(r.reason, "native = no");
}

TEST_P(StockTrees, AChangedBanCommandForcesTheShell) {
  TempTree t;
  auto actions = ActionsOf(
      Basedir(), "action = nftables[type=allports]\n", &t,
      {{"action.d/nftables.local",
        "[Definition]\nactionban = <nftables> add element <table_family> <table> <addr_set> "
        "\\{ <ip> timeout 1h \\}\n"}});
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  EXPECT_FALSE(r.stock);
  EXPECT_EQ(r.reason, "actionban is not the stock `nft add element` command");
}

TEST_P(StockTrees, ARuleWithMoreMatchesForcesTheShell) {
  TempTree t;
  auto actions = ActionsOf(Basedir(), "action = nftables[type=allports, blocktype=\"counter drop\"]\n", &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  EXPECT_FALSE(r.stock);
  EXPECT_EQ(r.reason, "blocktype 'counter drop' is not one the native action builds");
}

TEST_P(StockTrees, UnknownPortForcesTheShell) {
  TempTree t;
  auto actions = ActionsOf(Basedir(), "action = nftables[port=\"no-such-service\"]\n", &t);
  ASSERT_EQ(actions.size(), 1u);
  Recognized r = Read(actions[0]);
  EXPECT_FALSE(r.stock);
  EXPECT_EQ(r.reason, "port 'no-such-service' is not a number, a range or a known service");
}

TEST_P(StockTrees, IptablesIsNotNft) {
  TempTree t;
  auto actions = ActionsOf(Basedir(), "action = iptables-allports[name=ASTERISK, protocol=all]\n", &t);
  ASSERT_EQ(actions.size(), 1u);
  OrderedMap<std::string> opts;
  for (const auto& [k, v] : actions[0].options) opts.Set(k, v.ToPyStr());
  Result<CreatedAction> c = CreateAction("test", actions[0].name, std::move(opts), ActionEnv{});
  ASSERT_TRUE(c.ok());
  EXPECT_STREQ(c->action->kind(), "shell");
  EXPECT_EQ(c->shell_reason, "");
}

INSTANTIATE_TEST_SUITE_P(NftAction, StockTrees, ::testing::Values("debian", "bundled"));

}  // namespace
}  // namespace bantam
