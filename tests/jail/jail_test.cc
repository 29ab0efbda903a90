#include "bantam/jail.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../testing/temp_tree.h"
#include "bantam/clock.h"
#include "bantam/config_check.h"
#include "bantam/config_loader.h"
#include "bantam/failregex.h"
#include "bantam/filter.h"

namespace bantam {
namespace {

// Records what the jail reports, one line per event.
class RecordingEvents : public JailEvents {
 public:
  void OnFound(const std::string& jail, const IpAddr& id, double) override {
    log.push_back(jail + " found " + id.ToString());
  }
  void OnIgnored(const std::string& jail, const IpAddr& id, const char* source) override {
    log.push_back(jail + " ignored " + id.ToString() + " by " + source);
  }
  void OnBan(const std::string& jail, const Ticket& t) override {
    log.push_back(jail + " ban " + t.id.ToString() + " for " +
                  std::to_string(static_cast<int>(t.BanTimeOr(-2))));
  }
  void OnAlreadyBanned(const std::string& jail, const IpAddr& id) override {
    log.push_back(jail + " already " + id.ToString());
  }
  void OnUnban(const std::string& jail, const Ticket& t) override {
    log.push_back(jail + " unban " + t.id.ToString());
  }
  void OnWarning(const std::string& jail, const std::string& m) override {
    log.push_back(jail + " warning " + m);
  }
  std::vector<std::string> log;
};

class JailTest : public ::testing::Test {
 protected:
  std::unique_ptr<Jail> Make(JailConfig c) {
    Result<std::unique_ptr<Jail>> j =
        Jail::Create(std::move(c), clock_, &events_, nullptr, nullptr, nullptr, nullptr);
    EXPECT_TRUE(j.ok()) << j.status().message();
    return j.ok() ? std::move(*j) : nullptr;
  }
  JailConfig Pbx() {
    JailConfig c;
    c.name = "pbx";
    c.filter.failregex = {"^auth failed from <HOST>$"};
    c.filter.datepattern = "{NONE}";
    c.maxretry = 3;
    c.findtime = 600;
    c.bantime = 3600;
    c.ignoreself = false;
    return c;
  }
  FakeClock clock_{1700000000};
  RecordingEvents events_;
};

using Log = std::vector<std::string>;

TEST_F(JailTest, BansAtMaxretryOnceAndUnbansWhenBantimeEnds) {
  auto jail = Make(Pbx());
  for (int i = 0; i < 4; ++i) {
    jail->ProcessLine("auth failed from 192.0.2.1");
    clock_.Advance(1);
  }
  EXPECT_EQ(events_.log, Log({"pbx found 192.0.2.1", "pbx found 192.0.2.1", "pbx found 192.0.2.1",
                              "pbx ban 192.0.2.1 for 3600", "pbx found 192.0.2.1"}));
  events_.log.clear();
  clock_.Advance(3500);
  jail->UnbanDue();
  EXPECT_TRUE(events_.log.empty());
  clock_.Advance(200);
  jail->UnbanDue();
  EXPECT_EQ(events_.log, Log({"pbx unban 192.0.2.1"}));
  EXPECT_EQ(jail->bans().size(), 0u);
}

TEST_F(JailTest, FailuresSpreadOverMoreThanFindtimeCountLess) {
  // fail2ban scales the count down once failures spread over more than
  // findtime; checked against fail2ban 1.0.2's FailManager: failures at
  // 0 s, 700 s and 1400 s count 1, 2, 2 (1 + 2 * 600/700 rounded).
  auto jail = Make(Pbx());
  jail->ProcessLine("auth failed from 192.0.2.2");
  clock_.Advance(700);
  jail->ProcessLine("auth failed from 192.0.2.2");
  clock_.Advance(700);
  jail->ProcessLine("auth failed from 192.0.2.2");
  EXPECT_EQ(jail->bans().size(), 0u) << ::testing::PrintToString(events_.log);
  clock_.Advance(10);
  jail->ProcessLine("auth failed from 192.0.2.2");
  EXPECT_EQ(jail->bans().size(), 1u);
}

TEST_F(JailTest, IgnoreipIsNeverCountedOrBanned) {
  JailConfig c = Pbx();
  c.ignoreip = {"192.0.2.0/24"};
  auto jail = Make(c);
  for (int i = 0; i < 5; ++i) jail->ProcessLine("auth failed from 192.0.2.9");
  jail->ProcessLine("auth failed from 198.51.100.1");
  EXPECT_EQ(events_.log.front(), "pbx ignored 192.0.2.9 by ip");
  EXPECT_EQ(events_.log.back(), "pbx found 198.51.100.1");
  EXPECT_EQ(jail->bans().size(), 0u);
  EXPECT_EQ(jail->failures().size(), 1u);
}

TEST_F(JailTest, PermanentBanNeverEnds) {
  JailConfig c = Pbx();
  c.bantime = -1;
  auto jail = Make(c);
  for (int i = 0; i < 3; ++i) jail->ProcessLine("auth failed from 2001:db8::7");
  clock_.Advance(10 * 365 * 86400.0);
  jail->UnbanDue();
  EXPECT_EQ(events_.log.back(), "pbx ban 2001:db8::7 for -1");
  EXPECT_TRUE(jail->bans().IsBanned(IpAddr::FromText("2001:db8::7")));
}

TEST_F(JailTest, ManualBanAndUnban) {
  auto jail = Make(Pbx());
  EXPECT_TRUE(jail->BanNow(IpAddr::FromText("203.0.113.5")));
  EXPECT_FALSE(jail->BanNow(IpAddr::FromText("203.0.113.5")));
  EXPECT_TRUE(jail->Unban(IpAddr::FromText("203.0.113.5")));
  EXPECT_FALSE(jail->Unban(IpAddr::FromText("203.0.113.5")));
  // A second ban of a banned id prolongs it and is reported, as fail2ban
  // logs "already banned".
  EXPECT_EQ(events_.log, Log({"pbx ban 203.0.113.5 for 3600", "pbx already 203.0.113.5",
                              "pbx unban 203.0.113.5"}));
}

// Holds ignorecommands until the test answers them, as the daemon's worker
// pool would; the runner answers the synchronous fallback.
class AsyncEvents : public RecordingEvents {
 public:
  bool RunIgnoreCommand(const PendingIgnoreCommand& command,
                        std::function<void(Result<int>)> done) override {
    log.push_back("run " + command.command);
    queued.push_back(std::move(done));
    return true;
  }
  std::vector<std::function<void(Result<int>)>> queued;
};

// A jail whose ignorecommand is "check <ip>".
JailConfig WithIgnoreCommand(int maxretry) {
  JailConfig c;
  c.name = "pbx";
  c.filter.failregex = {"^auth failed from <HOST>$"};
  c.filter.datepattern = "{NONE}";
  c.maxretry = maxretry;
  c.ignoreself = false;
  c.ignorecommand = "check <ip>";
  return c;
}

TEST(JailIgnoreCommand, RunsOffTheCallerAndKeepsTheOrderOfAnAddressesFailures) {
  FakeClock clock(1700000000);
  AsyncEvents events;
  Result<std::unique_ptr<Jail>> j = Jail::Create(WithIgnoreCommand(2), clock, &events, nullptr,
                                                 nullptr, nullptr, nullptr);
  ASSERT_TRUE(j.ok()) << j.status().message();
  Jail& jail = **j;
  jail.ProcessLine("auth failed from 192.0.2.1");
  jail.ProcessLine("auth failed from 192.0.2.1");  // waits behind the first
  jail.ProcessLine("auth failed from 198.51.100.2");
  EXPECT_EQ(events.log, Log({"run check 192.0.2.1", "run check 198.51.100.2"}));
  EXPECT_EQ(jail.waiting_for_ignorecommand(), 2u);
  EXPECT_EQ(jail.failures().size(), 0u);
  events.log.clear();
  events.queued[1](1);  // 198.51.100.2: not ignored
  events.queued[0](1);  // 192.0.2.1: not ignored; both its failures count and ban
  EXPECT_EQ(events.log, Log({"pbx found 198.51.100.2", "pbx found 192.0.2.1", "pbx found 192.0.2.1",
                             "pbx ban 192.0.2.1 for 600"}));
  EXPECT_EQ(jail.waiting_for_ignorecommand(), 0u);
}

TEST(JailIgnoreCommand, AnIgnoredAddressAndAFailingCommand) {
  FakeClock clock(1700000000);
  AsyncEvents events;
  Result<std::unique_ptr<Jail>> j = Jail::Create(WithIgnoreCommand(1), clock, &events, nullptr,
                                                 nullptr, nullptr, nullptr);
  ASSERT_TRUE(j.ok());
  (*j)->ProcessLine("auth failed from 192.0.2.1");
  (*j)->ProcessLine("auth failed from 192.0.2.9");
  events.log.clear();
  events.queued[0](0);                                   // exit 0: ignore
  events.queued[1](Status::Error("killed by signal 9"));  // error: counted, with a warning
  ASSERT_EQ(events.log.size(), 4u) << ::testing::PrintToString(events.log);
  EXPECT_EQ(events.log[0], "pbx ignored 192.0.2.1 by command");
  EXPECT_EQ(events.log[1].rfind("pbx warning ", 0), 0u);
  EXPECT_EQ(events.log[2], "pbx found 192.0.2.9");
  EXPECT_EQ(events.log[3], "pbx ban 192.0.2.9 for 600");
}

TEST(JailIgnoreCommand, AnswerForADestroyedJailIsDropped) {
  FakeClock clock(1700000000);
  AsyncEvents events;
  Result<std::unique_ptr<Jail>> j = Jail::Create(WithIgnoreCommand(5), clock, &events, nullptr,
                                                 nullptr, nullptr, nullptr);
  ASSERT_TRUE(j.ok());
  (*j)->ProcessLine("auth failed from 192.0.2.1");
  j->reset();
  events.log.clear();
  events.queued[0](1);
  EXPECT_TRUE(events.log.empty());
}

// The daemon's start-up: the check of the bundled configuration compiles
// every regex its jails' filters then take (CheckedRegexes), under the
// jails' own settings (usedns = No here, a prefregex), none compiled twice.
TEST(JailsFromCommands, FiltersTakeEveryRegexTheCheckCompiled) {
  testing::TempTree tree;
  std::filesystem::copy(std::string(BANTAM_SOURCE_DIR) + "/config", tree.Path("etc"),
                        std::filesystem::copy_options::recursive);
  std::ofstream(tree.Path("log")) << "";
  std::ofstream(tree.Path("etc/jail.local"))
      << "[asterisk]\nenabled = true\nusedns = No\nlogpath = " << tree.Path("log") << "\n"
      << "[sshd]\nenabled = true\nlogpath = " << tree.Path("log") << "\n";
  LoadOptions o;
  o.basedir = tree.Path("etc");
  CheckedRegexes checked;
  Result<LoadedConfig> cfg = LoadConfig(o);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  CheckConfig(&*cfg);
  ASSERT_TRUE(cfg->diagnostics.empty()) << cfg->diagnostics[0].message;
  const size_t kept = checked.kept();
  std::vector<std::string> warnings;
  Result<std::vector<JailConfig>> jails = JailsFromCommands(cfg->commands, &warnings);
  ASSERT_TRUE(jails.ok()) << jails.status().message();
  ASSERT_EQ(jails->size(), 2u);
  size_t regexes = 0;
  for (const JailConfig& j : *jails) {
    regexes += j.filter.failregex.size() + j.filter.ignoreregex.size() +
               (j.filter.prefregex.empty() ? 0 : 1);
    Result<std::unique_ptr<Filter>> f = Filter::Create(j.filter);
    ASSERT_TRUE(f.ok()) << f.status().message();
  }
  EXPECT_GT(regexes, 10u);
  EXPECT_EQ(kept, regexes);
  EXPECT_EQ(checked.taken(), regexes);
  EXPECT_EQ(checked.kept(), 0u);
}

TEST(JailsFromCommands, ReadsTheStreamBantamDumps) {
  auto L = [](std::initializer_list<Value> v) { return Value(Value::List(v)); };
  std::vector<Value> cmds = {
      L({"set", "loglevel", "INFO"}),
      L({"add", "asterisk", "polling"}),
      L({"set", "asterisk", "usedns", "no"}),
      L({"multi-set", "asterisk", "addfailregex", L({"a <HOST>", "b <HOST>"})}),
      L({"set", "asterisk", "addlogpath", "/var/log/asterisk/messages", "tail"}),
      L({"set", "asterisk", "maxretry", 4}),
      L({"set", "asterisk", "findtime", "10m"}),
      L({"set", "asterisk", "bantime", "1h"}),
      L({"set", "asterisk", "addignoreip", "127.0.0.1/8", "::1"}),
      L({"set", "asterisk", "bantime.increment", true}),
      L({"set", "asterisk", "addaction", "iptables-allports"}),
      L({"multi-set", "asterisk", "action", "iptables-allports",
         L({L({"actionban", "ban <ip>"}), L({"actionunban", "unban <ip>"})})}),
      L({"start", "asterisk"}),
  };
  std::vector<std::string> warnings;
  Result<std::vector<JailConfig>> jails = JailsFromCommands(cmds, &warnings);
  ASSERT_TRUE(jails.ok()) << jails.status().message();
  ASSERT_EQ(jails->size(), 1u);
  const JailConfig& j = (*jails)[0];
  EXPECT_EQ(j.backend, "polling");
  EXPECT_EQ(j.filter.usedns, "no");
  EXPECT_EQ(j.filter.failregex, std::vector<std::string>({"a <HOST>", "b <HOST>"}));
  // fail2ban lowercases the backend's name, not its options.
  std::vector<Value> journal = {L({"add", "j", "Systemd[journalpath=/Var/Log/X]"}),
                                L({"add", "k", " Polling"})};
  Result<std::vector<JailConfig>> be = JailsFromCommands(journal, &warnings);
  ASSERT_TRUE(be.ok()) << be.status().message();
  ASSERT_EQ(be->size(), 2u);
  EXPECT_EQ((*be)[0].backend, "systemd[journalpath=/Var/Log/X]");
  EXPECT_EQ((*be)[1].backend, " polling");
  // Any case, as fail2ban's setUseDns lowercases it.
  cmds[2] = L({"set", "asterisk", "usedns", "No"});
  Result<std::vector<JailConfig>> upper = JailsFromCommands(cmds, &warnings);
  ASSERT_TRUE(upper.ok()) << upper.status().message();
  EXPECT_EQ((*upper)[0].filter.usedns, "no");
  ASSERT_EQ(j.logpaths.size(), 1u);
  EXPECT_TRUE(j.logpaths[0].second);
  EXPECT_EQ(j.maxretry, 4);
  EXPECT_EQ(j.findtime, 600);
  EXPECT_EQ(j.bantime, 3600);
  EXPECT_EQ(j.ignoreip, std::vector<std::string>({"127.0.0.1/8", "::1"}));
  EXPECT_TRUE(j.increment.increment);
  ASSERT_EQ(j.actions.size(), 1u);
  EXPECT_EQ(j.actions[0].name, "iptables-allports");
  ASSERT_EQ(j.actions[0].options.size(), 2u);
  EXPECT_EQ(j.actions[0].options[0].first, "actionban");
  EXPECT_TRUE(warnings.empty());

  cmds.push_back(L({"set", "asterisk", "bantime", "soon"}));
  EXPECT_EQ(JailsFromCommands(cmds, &warnings).status().message(),
            "jail 'asterisk': bantime = soon: invalid time value 'soon'");
}

}  // namespace
}  // namespace bantam
