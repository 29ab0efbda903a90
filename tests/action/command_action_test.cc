#include "bantam/command_action.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

namespace bantam {
namespace {

// Records what would run; answers with a scripted result per command.
class FakeSpawner : public Spawner {
 public:
  // Returns the exit code for a script (0 by default).
  std::function<int(const SpawnRequest&)> exit_code;

  SpawnResult Run(const SpawnRequest& request) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(request);
    SpawnResult r;
    r.end = SpawnResult::End::kExited;
    r.exit_code = exit_code ? exit_code(request) : 0;
    if (r.exit_code) r.err = "fake failure";
    return r;
  }
  std::vector<SpawnRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  std::vector<std::string> scripts() {
    std::vector<std::string> out;
    for (const SpawnRequest& r : requests()) out.push_back(r.script);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<SpawnRequest> requests_;
};

OrderedMap<std::string> Opts(std::initializer_list<std::pair<std::string, std::string>> kv) {
  OrderedMap<std::string> m;
  for (const auto& [k, v] : kv) m.Set(k, v);
  return m;
}

std::unique_ptr<CommandAction> Make(OrderedMap<std::string> opts, Spawner* spawner,
                                    WorkerPool* pool = nullptr) {
  auto r = CommandAction::Create("sshd", "act", std::move(opts), ActionEnv{spawner, pool, true});
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(*r);
}

BanInfo Ticket(const std::string& ip, const std::string& family = "inet4") {
  BanInfo info;
  info.jail = "sshd";
  info.ip = ip;
  info.family = family;
  info.failures = 5;
  info.time = 1700000000.5;
  info.bantime = 600;
  info.bancount = 2;
  info.matches = {"line one", "line two"};
  return info;
}

std::vector<std::string> Ops(const ActionReport& r) {
  std::vector<std::string> out;
  for (const CommandRun& run : r.runs) out.push_back(run.operation);
  return out;
}

// iptables-allports[name=SSH] as `bantam -d` resolves it from stock files.
Value StockIptablesAllports() {
  auto pair = [](const char* k, Value v) { return Value(Value::List{Value(k), std::move(v)}); };
  return Value(Value::List{
      pair("actionstart",
           "{ <iptables> -C f2b-SSH -j RETURN >/dev/null 2>&1; } || { <iptables> -N f2b-SSH || "
           "true; <iptables> -A f2b-SSH -j RETURN; }\nfor proto in $(echo 'tcp' | sed 's/,/ "
           "/g'); do\n{ <iptables> -C INPUT -p $proto -j f2b-SSH >/dev/null 2>&1; } || { "
           "<iptables> -I INPUT -p $proto -j f2b-SSH; }\ndone"),
      pair("actionstop",
           "for proto in $(echo 'tcp' | sed 's/,/ /g'); do\n<iptables> -D INPUT -p $proto -j "
           "f2b-SSH\ndone\n<iptables> -F f2b-SSH\n<iptables> -X f2b-SSH"),
      pair("actionflush", "<iptables> -F f2b-SSH"),
      pair("actioncheck",
           "for proto in $(echo 'tcp' | sed 's/,/ /g'); do\n<iptables> -C INPUT -p $proto -j "
           "f2b-SSH\ndone"),
      pair("actionban", "<iptables> -I f2b-SSH 1 -s <ip> -j <blocktype>"),
      pair("actionunban", "<iptables> -D f2b-SSH -s <ip> -j <blocktype>"),
      pair("name", "SSH"),
      pair("actname", "iptables-allports-SSH"),
      pair("chain", "INPUT"),
      pair("blocktype", "REJECT --reject-with icmp-port-unreachable"),
      pair("returntype", "RETURN"),
      pair("lockingopt", "-w"),
      pair("iptables", "iptables <lockingopt>"),
      pair("blocktype?family=inet6", "REJECT --reject-with icmp6-port-unreachable"),
      pair("iptables?family=inet6", "ip6tables <lockingopt>"),
  });
}

// ------------------------------------------------------------ substitution

TEST(ActionTags, EscapeTagAsFail2ban) {
  EXPECT_EQ(EscapeTag("a b"), "a b");
  EXPECT_EQ(EscapeTag("$(id);`x`|y\n\r'\"\\"), "\\$\\(id\\)\\;\\`x\\`\\|y\\n\\r\\'\\\"\\\\");
  EXPECT_EQ(EscapeTag("#&*?~<>^[]{}"), "\\#\\&\\*\\?\\~\\<\\>\\^\\[\\]\\{\\}");
}

TEST(ActionTags, TicketDataKeyMapsIdAndPort) {
  EXPECT_EQ(TicketDataKey("USER"), "user");
  EXPECT_EQ(TicketDataKey("ID"), "fid");
  EXPECT_EQ(TicketDataKey("PORT"), "fport");
}

TEST(ActionTags, PlainValuesAreInsertedDirectly) {
  auto lookup = [](const std::string& t) -> std::optional<std::string> {
    if (t == "ip") return std::string("1.2.3.4");
    return std::nullopt;
  };
  ShellCommand c = ReplaceDynamicTags("ban <ip><br>x<sp>y <unknown> <F-USER>|<F-NONE>|", lookup,
                                      {{"user", "bob"}});
  EXPECT_EQ(c.script, "ban 1.2.3.4\nx y <unknown> bob||");
  EXPECT_TRUE(c.args.empty());
}

TEST(ActionTags, SpecialValuesBecomeQuotedVariablesByContext) {
  auto lookup = [](const std::string& t) -> std::optional<std::string> {
    if (t == "matches") return std::string("a;b");
    return std::nullopt;
  };
  ShellCommand c =
      ReplaceDynamicTags("x <matches> \"<matches>\" '<F-USER>'", lookup, {{"user", "$(evil)"}});
  EXPECT_EQ(c.script,
            "f2bV_matches=${0} f2bV_F_user=${1} \n"
            "x \"${f2bV_matches}\" \"${f2bV_matches}\" ''\"${f2bV_F_user}\"''");
  EXPECT_EQ(c.args, (std::vector<std::string>{"a;b", "$(evil)"}));
}

TEST(ActionTags, ValuesAreNotSubstitutedRecursively) {
  // A capture that looks like a tag stays text (and, holding '<', a variable).
  auto lookup = [](const std::string& t) -> std::optional<std::string> {
    if (t == "matches") return std::string("<F-USER>");
    return std::nullopt;
  };
  ShellCommand c = ReplaceDynamicTags("<matches>", lookup, {{"user", "root"}});
  EXPECT_EQ(c.script, "f2bV_matches=${0} \n\"${f2bV_matches}\"");
  EXPECT_EQ(c.args, (std::vector<std::string>{"<F-USER>"}));
}

TEST(ActionTags, CollidingVariableNamesStayApart) {
  ShellCommand c = ReplaceDynamicTags("<F-A-B> <F-A_B>", nullptr, {{"a-b", "x;1"}, {"a_b", "y;2"}});
  EXPECT_EQ(c.script, "f2bV_F_a_b=${0} f2bV_F_a_b_2=${1} \n\"${f2bV_F_a_b}\" \"${f2bV_F_a_b_2}\"");
}

TEST(ActionTags, NulBytesAreDropped) {
  ShellCommand c = ReplaceDynamicTags("<F-USER>", nullptr, {{"user", std::string("ro\0ot", 5)}});
  EXPECT_EQ(c.script, "root");
}

// ------------------------------------------------- stock-like, fake spawner

TEST(ActionCommand, StockIptablesBanInet4StartsOnDemandFirst) {
  FakeSpawner sp;
  auto a = CommandAction::Create("sshd", "iptables-allports-SSH", StockIptablesAllports(),
                                 ActionEnv{&sp, nullptr, true});
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE((*a)->start_on_demand());
  ActionReport start = (*a)->Run(ActionOp::kStart, BanInfo{});
  EXPECT_TRUE(start.status.ok());
  EXPECT_TRUE(start.skipped);
  EXPECT_TRUE(sp.requests().empty());

  ActionReport r = (*a)->Run(ActionOp::kBan, Ticket("192.0.2.7"));
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  ASSERT_EQ(sp.scripts().size(), 2u);
  EXPECT_EQ(sp.scripts()[0],
            "{ iptables -w -C f2b-SSH -j RETURN >/dev/null 2>&1; } || { iptables -w -N f2b-SSH "
            "|| true; iptables -w -A f2b-SSH -j RETURN; }\nfor proto in $(echo 'tcp' | sed "
            "'s/,/ /g'); do\n{ iptables -w -C INPUT -p $proto -j f2b-SSH >/dev/null 2>&1; } || "
            "{ iptables -w -I INPUT -p $proto -j f2b-SSH; }\ndone");
  EXPECT_EQ(sp.scripts()[1],
            "iptables -w -I f2b-SSH 1 -s 192.0.2.7 -j REJECT --reject-with icmp-port-unreachable");
  EXPECT_EQ(sp.requests()[1].timeout_seconds, 60);

  // Second ban of the family: no second start.
  ASSERT_TRUE((*a)->Run(ActionOp::kBan, Ticket("192.0.2.8")).status.ok());
  EXPECT_EQ(sp.scripts().size(), 3u);
}

TEST(ActionCommand, StockIptablesBanInet6UsesFamilyVariants) {
  FakeSpawner sp;
  auto a = CommandAction::Create("sshd", "iptables-allports-SSH", StockIptablesAllports(),
                                 ActionEnv{&sp, nullptr, true});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Run(ActionOp::kBan, Ticket("2001:db8::1", "inet6")).status.ok());
  ASSERT_EQ(sp.scripts().size(), 2u);
  EXPECT_EQ(sp.scripts()[0].substr(0, 30), "{ ip6tables -w -C f2b-SSH -j R");
  EXPECT_EQ(sp.scripts()[1],
            "ip6tables -w -I f2b-SSH 1 -s 2001:db8::1 -j REJECT --reject-with "
            "icmp6-port-unreachable");
  ASSERT_TRUE((*a)->Run(ActionOp::kUnban, Ticket("2001:db8::1", "inet6")).status.ok());
  EXPECT_EQ(sp.scripts().back(),
            "ip6tables -w -D f2b-SSH -s 2001:db8::1 -j REJECT --reject-with "
            "icmp6-port-unreachable");
  // Unban in a family never banned here: nothing runs.
  ActionReport u = (*a)->Run(ActionOp::kUnban, Ticket("192.0.2.1"));
  EXPECT_TRUE(u.skipped);
  EXPECT_EQ(sp.scripts().size(), 3u);
  // Stop: only the started family.
  ActionReport stop = (*a)->Run(ActionOp::kStop, BanInfo{});
  ASSERT_TRUE(stop.status.ok());
  EXPECT_EQ(Ops(stop), (std::vector<std::string>{"actionstop"}));
  EXPECT_EQ(stop.runs[0].family, "inet6");
  EXPECT_NE(stop.runs[0].command.script.find("ip6tables -w -X f2b-SSH"), std::string::npos);
}

// sendmail-whois[name=SSH, dest=root] as `bantam -d` resolves it.
TEST(ActionCommand, StockSendmailWhoisBanCommand) {
  auto pair = [](const char* k, Value v) { return Value(Value::List{Value(k), std::move(v)}); };
  Value opts(Value::List{
      pair("actionstart",
           "printf %b \"Subject: [Fail2Ban] SSH: started on <fq-hostname>\nDate: `LC_ALL=C date "
           "+\"%a, %d %h %Y %T %z\"`\nFrom: Fail2Ban <fail2ban>\nTo: root\\n\nHi,\\n\nThe jail "
           "SSH has been started successfully.\\n\nRegards,\\n\nFail2Ban\" | /usr/sbin/sendmail "
           "-f \"fail2ban\" \"root\""),
      pair("actioncheck", ""),
      pair("actionban",
           "printf %b \"Subject: [Fail2Ban] SSH: banned <ip> from <fq-hostname>\nDate: "
           "`LC_ALL=C date +\"%a, %d %h %Y %T %z\"`\nFrom: Fail2Ban <fail2ban>\nTo: "
           "root\\n\nHi,\\n\nThe IP <ip> has just been banned by Fail2Ban after\n<failures> "
           "attempts against SSH.\\n\\n\nHere is more information about <ip> :\\n\n`whois <ip> "
           "|| echo \"missing whois program\"`\\n\nRegards,\\n\nFail2Ban\" | /usr/sbin/sendmail "
           "-f \"fail2ban\" \"root\""),
      pair("actionunban", ""),
      pair("norestored", true),
      pair("name", "SSH"),
      pair("dest", "root"),
      pair("actname", "sendmail-whois-SSH"),
      pair("mailcmd", "/usr/sbin/sendmail -f \"<sender>\" \"<dest>\""),
      pair("sender", "fail2ban"),
      pair("sendername", "Fail2Ban"),
  });
  FakeSpawner sp;
  auto a = CommandAction::Create("sshd", "sendmail-whois-SSH", opts, ActionEnv{&sp, nullptr, true});
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE((*a)->norestored());
  EXPECT_FALSE((*a)->start_on_demand());
  ASSERT_TRUE((*a)->Run(ActionOp::kStart, BanInfo{}).status.ok());
  ASSERT_TRUE((*a)->Run(ActionOp::kBan, Ticket("192.0.2.7")).status.ok());
  ASSERT_EQ(sp.scripts().size(), 2u);
  const std::string ban = sp.scripts()[1];
  const std::string from = "banned 192.0.2.7 from ";
  size_t h = ban.find(from) + from.size();
  std::string host = ban.substr(h, ban.find('\n', h) - h);
  EXPECT_FALSE(host.empty());
  EXPECT_EQ(host.find('<'), std::string::npos);
  EXPECT_EQ(ban,
            "printf %b \"Subject: [Fail2Ban] SSH: banned 192.0.2.7 from " + host +
                "\nDate: `LC_ALL=C date +\"%a, %d %h %Y %T %z\"`\nFrom: Fail2Ban <fail2ban>\nTo: "
                "root\\n\nHi,\\n\nThe IP 192.0.2.7 has just been banned by Fail2Ban after\n5 "
                "attempts against SSH.\\n\\n\nHere is more information about 192.0.2.7 :\\n\n"
                "`whois 192.0.2.7 || echo \"missing whois program\"`\\n\nRegards,\\n\nFail2Ban\" "
                "| /usr/sbin/sendmail -f \"fail2ban\" \"root\"");
  EXPECT_TRUE(sp.requests()[1].args.empty());
  // A restored ban does not mail again.
  BanInfo restored = Ticket("192.0.2.8");
  restored.restored = true;
  EXPECT_TRUE((*a)->Run(ActionOp::kBan, restored).skipped);
}

TEST(ActionCommand, Ipv6NotAllowedLeavesOnlyInet4Family) {
  FakeSpawner sp;
  auto a = CommandAction::Create("sshd", "a",
                                 Opts({{"actionstart", "start <x>"},
                                       {"x", "4"},
                                       {"x?family=inet6", "6"},
                                       {"actionstart_on_demand", "false"}}),
                                 ActionEnv{&sp, nullptr, false});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Run(ActionOp::kStart, BanInfo{}).status.ok());
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"start 4"}));
}

TEST(ActionCommand, SharedStartCommandRunsOnceForBothFamilies) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionstart", "start <x>"},
                      {"actionstop", "stop"},
                      {"x", "same"},
                      {"y?family=inet6", "v6"},
                      {"actionstart_on_demand", "false"}}),
                &sp);
  ActionReport r = a->Run(ActionOp::kStart, BanInfo{});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"start same"}));
  ActionReport s = a->Run(ActionOp::kStop, BanInfo{});
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"start same", "stop"}));
}

TEST(ActionCommand, PlainActionStartsOnceAtStart) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionstart", "touch <name>"},
                      {"actionban", "ban <ip>"},
                      {"name", "x"},
                      {"norestored", "True"}}),
                &sp);
  EXPECT_FALSE(a->start_on_demand());
  EXPECT_TRUE(a->norestored());
  ASSERT_TRUE(a->Run(ActionOp::kStart, BanInfo{}).status.ok());
  ASSERT_TRUE(a->Run(ActionOp::kBan, Ticket("192.0.2.1", "inet4")).status.ok());
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"touch x", "ban 192.0.2.1"}));
  BanInfo restored = Ticket("192.0.2.2");
  restored.restored = true;
  ActionReport r = a->Run(ActionOp::kBan, restored);
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(sp.scripts().size(), 2u);
}

TEST(ActionCommand, MayReadMatchesWhenAnOptionMentionsThem) {
  // The jail keeps matched lines only for actions that may read them.
  FakeSpawner sp;
  auto plain = Make(Opts({{"actionban", "ban <ip>"}}), &sp);
  EXPECT_FALSE(plain->may_read_matches(false));
  EXPECT_FALSE(plain->may_read_matches(true));
  auto own = Make(Opts({{"actionban", "ban <ip> <lines>"}, {"lines", "<ipjailmatches>"}}), &sp);
  EXPECT_TRUE(own->may_read_matches(false));
  EXPECT_FALSE(own->may_read_matches(true));
  auto all = Make(Opts({{"actionban", "mail <ipmatches>"}}), &sp);
  EXPECT_TRUE(all->may_read_matches(false));
  EXPECT_TRUE(all->may_read_matches(true));
  // A set counts at once, before the strand applies it.
  plain->SetProperty("actionban", "ban <ip> <matches>");
  EXPECT_TRUE(plain->may_read_matches(false));
}

TEST(ActionCommand, SetPropertyChangesLaterCommands) {
  FakeSpawner sp;
  WorkerPool pool(1);
  auto a = Make(Opts({{"actionban", "ban <ip> <tag>"}, {"tag", "one"}}), &sp, &pool);
  EXPECT_EQ(a->GetProperty("actionban"), "ban <ip> <tag>");
  EXPECT_EQ(a->GetProperty("nosuch"), std::nullopt);
  std::vector<ActionReport> reports;
  auto done = [&](ActionReport r) { reports.push_back(std::move(r)); };
  a->Submit(ActionOp::kBan, Ticket("192.0.2.1", ""), done);
  // Applied on the action's strand after the first ban, before the second,
  // and the cached command built from the old value is dropped.
  a->SetProperty("tag", "two");
  a->Submit(ActionOp::kBan, Ticket("192.0.2.2", ""), done);
  while (reports.size() < 2) pool.WaitAndRunCompletions(1000);
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"ban 192.0.2.1 one", "ban 192.0.2.2 two"}));
  EXPECT_EQ(a->GetProperty("tag"), "two");
}

TEST(ActionCommand, QueuedBansAreAbandonedAtStopButUnbansRun) {
  // The first ban hangs until released, as a hanging firewall command does;
  // what queued behind it is abandoned when the daemon stops, except the
  // unban, which must still run.
  FakeSpawner sp;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> hanging;
  sp.exit_code = [&](const SpawnRequest& r) {
    if (r.script == "ban 192.0.2.1") {
      hanging.set_value();
      released.wait();
    }
    return 0;
  };
  WorkerPool pool(1);
  auto a = Make(Opts({{"actionban", "ban <ip>"}, {"actionunban", "unban <ip>"}}), &sp, &pool);
  std::vector<ActionReport> reports;
  auto done = [&](ActionReport r) { reports.push_back(std::move(r)); };
  a->Submit(ActionOp::kBan, Ticket("192.0.2.1"), done);
  hanging.get_future().wait();
  a->Submit(ActionOp::kBan, Ticket("192.0.2.2"), done);
  a->Submit(ActionOp::kReban, Ticket("192.0.2.3"), done);
  a->Submit(ActionOp::kUnban, Ticket("192.0.2.1"), done);
  EXPECT_EQ(pool.CancelQueued(), 2u);
  release.set_value();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (reports.size() < 4 && std::chrono::steady_clock::now() < deadline) {
    pool.WaitAndRunCompletions(100);
  }
  ASSERT_EQ(reports.size(), 4u);
  int abandoned = 0;
  for (const ActionReport& r : reports) {
    if (r.ip == "192.0.2.2" || r.ip == "192.0.2.3") {
      EXPECT_TRUE(r.abandoned) << r.ip;
      EXPECT_TRUE(r.skipped) << r.ip;
      EXPECT_TRUE(r.runs.empty()) << r.ip;
      ++abandoned;
    } else {
      EXPECT_FALSE(r.abandoned) << ActionOpName(r.op);
      EXPECT_TRUE(r.status.ok()) << r.status.message();
    }
  }
  EXPECT_EQ(abandoned, 2);
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"ban 192.0.2.1", "unban 192.0.2.1"}));
}

TEST(ActionCommand, AllTicketTagsSubstituted) {
  class Context : public BanContext {
   public:
    std::optional<MergedBans> MergedBansOf(const std::string& ip,
                                           const std::string& jail) override {
      EXPECT_EQ(ip, "192.0.2.9");
      if (jail.empty()) return MergedBans{12, {"all1", "all2"}};
      return MergedBans{7, {"jail1"}};
    }
    std::optional<std::string> JailCounter(const std::string&, const std::string& tag) override {
      if (tag == "jail.banned") return std::string("3");
      return std::nullopt;
    }
    std::optional<std::string> HostName(const std::string&) override {
      return std::string("host.example");
    }
  };
  FakeSpawner sp;
  auto a = Make(Opts({{"actionban",
                       "<ip> <family> <fid> <failures> <time> <bantime> <bancount> <restored> "
                       "<ip-rev> <ip-host> <ipfailures> <ipjailfailures> <jail.banned> <actname> "
                       "<F-USER> <F-ID> <F-PORT> [<F-MISSING>] <timeout>"},
                      {"actname", "act1"},
                      {"timeout", "2m"}}),
                &sp);
  EXPECT_EQ(a->timeout_seconds(), 120);
  BanInfo info = Ticket("192.0.2.9");
  info.captures = {{"user", "alice"}, {"fid", "id7"}, {"fport", "22"}};
  info.context = std::make_shared<Context>();
  ASSERT_TRUE(a->Run(ActionOp::kBan, info).status.ok());
  EXPECT_EQ(sp.scripts()[0],
            "192.0.2.9 inet4 192.0.2.9 5 1700000000.5 600 2 0 9.2.0.192. host.example 12 7 3 "
            "act1 alice id7 22 [] 120");
  EXPECT_EQ(sp.requests()[0].timeout_seconds, 120);
}

TEST(ActionCommand, MatchesTagsAndFallbackWithoutContext) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionban",
                       "m=\"<matches>\" i=\"<ipmatches>\" j=\"<ipjailmatches>\" "
                       "f=<ipfailures>"}}),
                &sp);
  ASSERT_TRUE(a->Run(ActionOp::kBan, Ticket("192.0.2.9")).status.ok());
  SpawnRequest r = sp.requests()[0];
  EXPECT_EQ(r.script,
            "f2bV_matches=${0} f2bV_ipmatches=${1} f2bV_ipjailmatches=${2} \n"
            "m=\"${f2bV_matches}\" i=\"${f2bV_ipmatches}\" j=\"${f2bV_ipjailmatches}\" f=5");
  EXPECT_EQ(r.args, (std::vector<std::string>(3, "line one\nline two")));
}

TEST(ActionCommand, StaticMatchesOptionIsEscapedLikeFail2ban) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionstart", "echo <matches> <br>done"}, {"matches", "a;b $x"}}), &sp);
  ASSERT_TRUE(a->Run(ActionOp::kStart, BanInfo{}).status.ok());
  EXPECT_EQ(sp.scripts()[0], "echo a\\;b \\$x \ndone");
}

TEST(ActionCommand, SelfReferencingOptionsFailTheBan) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionban", "x <a>"}, {"a", "<b>"}, {"b", "<a>"}}), &sp);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  EXPECT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("refers back to itself"), std::string::npos);
  EXPECT_TRUE(sp.requests().empty());
}

// ---------------------------------------------------- check / repair / retry

TEST(ActionCommand, FailedBanChecksRepairsAndRetries) {
  FakeSpawner sp;
  int bans = 0, checks = 0;
  sp.exit_code = [&](const SpawnRequest& r) {
    if (r.script == "ban 192.0.2.1") return bans++ == 0 ? 1 : 0;
    if (r.script == "check") return checks++ == 0 ? 1 : 0;
    return 0;
  };
  auto a = Make(
      Opts({{"actionban", "ban <ip>"}, {"actioncheck", "check"}, {"actionrepair", "repair"}}), &sp);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(Ops(r), (std::vector<std::string>{"actionban", "actioncheck", "actionrepair",
                                              "actioncheck", "actionban"}));
  EXPECT_EQ(
      r.notes,
      (std::vector<std::string>{"Invariant check failed. Trying to restore a sane environment"}));
  EXPECT_EQ(r.ban_epoch, 1u);
  EXPECT_EQ(r.runs[0].Describe(),
            "actionban (inet4) -- exec: ban 192.0.2.1 -- returned 1\n  stderr: fake failure");
}

TEST(ActionCommand, FailedCheckWithoutRepairRestartsTheAction) {
  FakeSpawner sp;
  int bans = 0, checks = 0;
  sp.exit_code = [&](const SpawnRequest& r) {
    if (r.script == "ban 192.0.2.1") return bans++ == 0 ? 1 : 0;
    if (r.script == "check") return checks++ == 0 ? 1 : 0;
    return 0;
  };
  auto a = Make(Opts({{"actionstart", "start"},
                      {"actionstop", "stop"},
                      {"actionban", "ban <ip>"},
                      {"actioncheck", "check"}}),
                &sp);
  ASSERT_TRUE(a->Run(ActionOp::kStart, BanInfo{}).status.ok());
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1", ""));
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(Ops(r), (std::vector<std::string>{"actionban", "actioncheck", "actionstop",
                                              "actionstart", "actioncheck", "actionban"}));
}

TEST(ActionCommand, BanFailingTwiceIsReportedAndRunsOnlyTwice) {
  FakeSpawner sp;
  sp.exit_code = [](const SpawnRequest& r) { return r.script.rfind("ban", 0) == 0 ? 2 : 0; };
  auto a = Make(Opts({{"actionban", "ban <ip>"}, {"actioncheck", "check"}}), &sp);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  EXPECT_EQ(r.status.message(), "Error banning 192.0.2.1");
  EXPECT_EQ(Ops(r), (std::vector<std::string>{"actionban", "actioncheck", "actionban"}));
}

TEST(ActionCommand, BanFailingWithoutCheckRetriesOnce) {
  FakeSpawner sp;
  sp.exit_code = [](const SpawnRequest&) { return 1; };
  auto a = Make(Opts({{"actionban", "ban <ip>"}}), &sp);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(Ops(r), (std::vector<std::string>{"actionban", "actionban"}));
}

TEST(ActionCommand, FailedUnbanDoesNotRepairUnlessAsked) {
  FakeSpawner sp;
  sp.exit_code = [](const SpawnRequest& r) {
    return r.script.rfind("unban", 0) == 0 || r.script == "check" ? 1 : 0;
  };
  auto a = Make(Opts({{"actionban", "ban <ip>"},
                      {"actionunban", "unban <ip>"},
                      {"actioncheck", "check"},
                      {"actionrepair", "repair"}}),
                &sp);
  ASSERT_TRUE(a->Run(ActionOp::kBan, Ticket("192.0.2.1")).status.ok());
  ActionReport r = a->Run(ActionOp::kUnban, Ticket("192.0.2.1"));
  EXPECT_EQ(r.status.message(), "Error unbanning 192.0.2.1");
  EXPECT_EQ(Ops(r), (std::vector<std::string>{"actionunban", "actioncheck"}));
  EXPECT_EQ(r.notes, (std::vector<std::string>{"Invariant check failed. Unban is impossible."}));
}

TEST(ActionCommand, FailedOnDemandStartBlocksTheBan) {
  FakeSpawner sp;
  sp.exit_code = [](const SpawnRequest& r) { return r.script == "start" ? 1 : 0; };
  auto a = Make(
      Opts(
          {{"actionstart", "start"}, {"actionban", "ban <ip>"}, {"actionstart_on_demand", "true"}}),
      &sp);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  EXPECT_EQ(r.status.message(), "Error starting action sshd/act: script error");
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"start"}));
}

TEST(ActionCommand, FlushClearsBansSoUnbanSkips) {
  FakeSpawner sp;
  auto a = Make(
      Opts({{"actionban", "ban <ip>"}, {"actionunban", "unban <ip>"}, {"actionflush", "flush"}}),
      &sp);
  EXPECT_TRUE(a->has_flush());
  EXPECT_TRUE(a->Run(ActionOp::kFlush, BanInfo{}).skipped);  // nothing banned yet
  ASSERT_TRUE(a->Run(ActionOp::kBan, Ticket("192.0.2.1")).status.ok());
  ASSERT_TRUE(a->Run(ActionOp::kFlush, BanInfo{}).status.ok());
  EXPECT_TRUE(a->Run(ActionOp::kUnban, Ticket("192.0.2.1")).skipped);
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"ban 192.0.2.1", "flush"}));
}

TEST(ActionCommand, RebanPrefersActionreban) {
  FakeSpawner sp;
  auto a = Make(Opts({{"actionban", "ban <ip>"}, {"actionreban", "reban <ip>"}}), &sp);
  ASSERT_TRUE(a->Run(ActionOp::kReban, Ticket("192.0.2.1")).status.ok());
  auto b = Make(Opts({{"actionban", "ban <ip>"}}), &sp);
  ASSERT_TRUE(b->Run(ActionOp::kReban, Ticket("192.0.2.1")).status.ok());
  EXPECT_EQ(sp.scripts(), (std::vector<std::string>{"reban 192.0.2.1", "ban 192.0.2.1"}));
}

TEST(ActionCommand, OptionsFromStreamValue) {
  FakeSpawner sp;
  Value bad(Value::List{Value("actionban")});
  auto r = CommandAction::Create("j", "a", bad, ActionEnv{&sp, nullptr, true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "action j/a: options must be [name, value] pairs, got \"actionban\"");
  auto t =
      CommandAction::Create("j", "a", Opts({{"timeout", "soon"}}), ActionEnv{&sp, nullptr, true});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "action j/a: timeout: invalid time value 'soon'");
}

TEST(ActionCommand, SubmittedOperationsRunInOrderAndReportOnLoopThread) {
  FakeSpawner sp;
  WorkerPool pool(4);
  auto a = Make(
      Opts({{"actionstart", "start"}, {"actionban", "ban <ip>"}, {"actionunban", "unban <ip>"}}),
      &sp, &pool);
  std::vector<std::string> done;
  const std::thread::id loop = std::this_thread::get_id();
  auto record = [&](ActionReport r) {
    EXPECT_EQ(std::this_thread::get_id(), loop);
    done.push_back(std::string(ActionOpName(r.op)) + " " + r.ip);
  };
  a->Submit(ActionOp::kStart, BanInfo{}, record);
  for (int i = 0; i < 20; ++i)
    a->Submit(ActionOp::kBan, Ticket("192.0.2." + std::to_string(i)), record);
  a->Submit(ActionOp::kUnban, Ticket("192.0.2.3"), record);
  for (int spins = 0; done.size() < 22 && spins < 100; ++spins) pool.WaitAndRunCompletions(100);
  ASSERT_EQ(done.size(), 22u);
  std::vector<std::string> scripts = sp.scripts();
  ASSERT_EQ(scripts.size(), 22u);
  EXPECT_EQ(scripts[0], "start");
  for (int i = 0; i < 20; ++i) EXPECT_EQ(scripts[1 + i], "ban 192.0.2." + std::to_string(i));
  EXPECT_EQ(scripts[21], "unban 192.0.2.3");
  EXPECT_EQ(done.front(), "start ");
  EXPECT_EQ(done.back(), "unban 192.0.2.3");
}

// ------------------------------------------------------------- real shell

class ActionShellTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bantam-action-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static bool Exists(const std::string& path) { return std::filesystem::exists(path); }

  std::string dir_;
  ShellSpawner spawner_;
};

TEST_F(ActionShellTest, ExitStatusAndStderrCaptured) {
  SpawnResult r = spawner_.Run({"echo out; echo 'bad thing' >&2; exit 3", {}, 10});
  EXPECT_EQ(r.end, SpawnResult::End::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "bad thing\n");
  EXPECT_EQ(r.Describe(10), "returned 3");
  SpawnResult s = spawner_.Run({"kill -TERM $$", {}, 10});
  EXPECT_EQ(s.end, SpawnResult::End::kSignaled);
  EXPECT_EQ(s.Describe(10), "killed with SIGTERM");
  SpawnResult n = spawner_.Run({"no-such-command-bantam", {}, 10});
  EXPECT_EQ(n.exit_code, 127);
  EXPECT_NE(n.err.find("not found"), std::string::npos);
}

TEST_F(ActionShellTest, PositionalArgumentsReachTheScript) {
  SpawnResult r = spawner_.Run({"printf '%s|%s' \"$0\" \"$1\"", {"a b", "$(c)"}, 10});
  EXPECT_EQ(r.out, "a b|$(c)");
}

TEST_F(ActionShellTest, TimeoutKillsTheWholeProcessGroup) {
  auto a = Make(
      Opts({{"actionban", "sleep 30 & echo $! > " + Path("pid") + "; sleep 30"}, {"timeout", "1"}}),
      &spawner_);
  auto t0 = std::chrono::steady_clock::now();
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(r.status.ok());
  ASSERT_EQ(r.runs.size(), 2u);  // the ban is retried once, as fail2ban does
  EXPECT_EQ(r.runs[0].result.end, SpawnResult::End::kTimedOut);
  EXPECT_EQ(r.runs[0].result.Describe(1), "timed out after 1 seconds (process group killed)");
  EXPECT_LT(secs, 6);
  // The background sleep died with its group (gone, or a zombie for init).
  // Each attempt wrote its own background pid; the last one is checked.
  pid_t pid = std::stoi(Read(Path("pid")));
  std::string state;
  for (int i = 0; i < 100; ++i) {  // SIGKILL is delivered; exit may lag a little
    std::string stat = Read("/proc/" + std::to_string(pid) + "/stat");
    state = stat.empty() ? "gone" : stat.substr(stat.rfind(')') + 2, 1);
    if (state == "gone" || state == "Z") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(state == "gone" || state == "Z") << state;
}

TEST_F(ActionShellTest, HostileValuesArriveAsInertText) {
  const std::string marker = Path("pwned");
  const std::vector<std::string> hostile = {
      "$(touch " + marker + ")",      "`touch " + marker + "`",
      "x; touch " + marker,           "x | touch " + marker,
      "x && touch " + marker,         "x\ntouch " + marker,
      "' ; touch " + marker + " ; '", "\" ; touch " + marker + " ; \"",
      "\\'$(touch " + marker + ")\\", "${IFS}$(touch${IFS}" + marker + ")",
      "<ip> <F-USER> * ? [a]",        "-n",
  };
  auto a = Make(Opts({{"actionban", "printf '%s\\n' '<F-USER>' >> " + Path("sq") +
                                        "; printf '%s\\n' \"<F-USER>\" >> " + Path("dq") +
                                        "; printf '%s\\n' <F-USER> >> " + Path("bare") +
                                        "; printf '%s\\n' \"<matches>\" >> " + Path("m") +
                                        "; echo <matches> >> " + Path("echo")}}),
                &spawner_);
  std::string expected;
  for (const std::string& h : hostile) {
    BanInfo info = Ticket("192.0.2.1");
    info.captures = {{"user", h}};
    info.matches = {"first " + h, h};
    ActionReport r = a->Run(ActionOp::kBan, info);
    ASSERT_TRUE(r.status.ok()) << r.status.message() << "\n" << r.runs.back().Describe();
    // The executed script never holds the value itself.
    for (const CommandRun& run : r.runs)
      EXPECT_EQ(run.command.script.find("touch"), std::string::npos) << run.command.script;
    EXPECT_FALSE(Exists(marker)) << h;
    expected += h + "\n";
    EXPECT_EQ(Read(Path("sq")), expected);
    EXPECT_EQ(Read(Path("dq")), expected);
    EXPECT_EQ(Read(Path("bare")), expected);
  }
  std::string m;
  for (const std::string& h : hostile) m += "first " + h + "\n" + h + "\n";
  EXPECT_EQ(Read(Path("m")), m);
  EXPECT_FALSE(Read(Path("echo")).empty());
  EXPECT_FALSE(Exists(marker));
}

TEST_F(ActionShellTest, FailingBanReportsCommandAndStderr) {
  auto a = Make(Opts({{"actionban", "echo \"no chain for <ip>\" >&2; exit 4"}}), &spawner_);
  ActionReport r = a->Run(ActionOp::kBan, Ticket("192.0.2.1"));
  EXPECT_EQ(r.status.message(), "Error banning 192.0.2.1");
  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_EQ(r.runs[0].Describe(),
            "actionban (inet4) -- exec: echo \"no chain for 192.0.2.1\" >&2; exit 4 -- returned "
            "4\n  stderr: no chain for 192.0.2.1");
}

TEST_F(ActionShellTest, StartFinishesBeforeBansAndActionsRunInParallel) {
  WorkerPool pool(4);
  const std::string log = Path("log");
  auto slow = Make(Opts({{"actionstart", "sleep 0.5; echo start >> " + log},
                         {"actionban", "echo ban <ip> >> " + log}}),
                   &spawner_, &pool);
  auto other = Make(Opts({{"actionban", "echo other <ip> >> " + log}}), &spawner_, &pool);
  int reports = 0;
  auto count = [&](ActionReport r) {
    EXPECT_TRUE(r.status.ok()) << r.status.message();
    ++reports;
  };
  slow->Submit(ActionOp::kStart, BanInfo{}, count);
  slow->Submit(ActionOp::kBan, Ticket("192.0.2.1"), count);
  slow->Submit(ActionOp::kBan, Ticket("192.0.2.2"), count);
  other->Submit(ActionOp::kBan, Ticket("192.0.2.3"), count);
  for (int spins = 0; reports < 4 && spins < 100; ++spins) pool.WaitAndRunCompletions(100);
  ASSERT_EQ(reports, 4);
  // The other action did not wait for the slow start; the slow one's bans did.
  EXPECT_EQ(Read(log), "other 192.0.2.3\nstart\nban 192.0.2.1\nban 192.0.2.2\n");
}

}  // namespace
}  // namespace bantam
