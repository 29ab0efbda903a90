#include "bantam/mail_action.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../testing/require.h"
#include "../testing/temp_tree.h"
#include "bantam/config_loader.h"

namespace bantam {
namespace {

using testing::TempTree;
namespace fs = std::filesystem;

constexpr char kStockActionDir[] = "/etc/fail2ban/action.d";
const std::string kBundledActionDir = std::string(BANTAM_SOURCE_DIR) + "/action.d";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The options of `spec` (e.g. "sendmail-whois[name=SSH]") as the config
// stream carries them, resolved from the action files in `action_dir`.
// Empty when the directory or the action is missing.
OrderedMap<std::string> LoadAction(const std::string& action_dir, const std::string& spec,
                                   const std::string& logpath = "") {
  OrderedMap<std::string> out;
  if (!fs::is_directory(action_dir)) return out;
  TempTree t;
  for (const auto& e : fs::directory_iterator(action_dir))
    if (e.path().extension() == ".conf")
      t.Write("action.d/" + e.path().filename().string(), ReadFile(e.path()));
  t.Write("fail2ban.conf", "[Definition]\nloglevel = INFO\n");
  t.Write("filter.d/f.conf", "[Definition]\nfailregex = ^bad from <HOST>$\n");
  t.Write("log/j.log", "");
  t.Write("jail.conf", "[j]\nenabled = true\nfilter = f\nlogpath = " +
                           (logpath.empty() ? t.Path("log/j.log") : logpath) +
                           "\naction = " + spec + "\n");
  LoadOptions o;
  o.basedir = t.root();
  Result<LoadedConfig> r = LoadConfig(o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return out;
  for (const Value& cmd : r->commands) {
    if (!cmd.is_list() || cmd.as_list().size() != 5) continue;
    const Value::List& l = cmd.as_list();
    if (!l[0].is_string() || l[0].as_string() != "multi-set" || !l[2].is_string() ||
        l[2].as_string() != "action" || !l[4].is_list())
      continue;
    for (const Value& pair : l[4].as_list()) {
      const Value::List& kv = pair.as_list();
      out.Set(kv[0].as_string(), kv[1].is_string() ? kv[1].as_string() : kv[1].ToPyStr());
    }
  }
  return out;
}

// Hostile text a whois server or a log line could carry.
const std::string kHostile =
    "netname: EVIL $(touch MARK1)\n"
    "descr: `touch MARK2`;rm -rf MARK3\n"
    "remarks: back\\c slash \\n %s %b %%\n"
    "~! touch MARK4\n"
    "'\"quotes\" & | > out\n";

class MailActionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_path_ = getenv("PATH") ? getenv("PATH") : "";
    dir_ = tmp_.root();
    // Stubs: whois answers hostile text (and records its argv); mail and
    // sendmail keep argv and stdin.
    tmp_.Write("whois.txt", kHostile);
    Stub("whois",
         "printf '%s\\n' \"$@\" > " + dir_ + "/whois.argv\n/bin/cat " + dir_ + "/whois.txt\n");
    Stub("sendmail",
         "printf '%s\\n' \"$@\" > " + dir_ + "/mail.argv\n/bin/cat > " + dir_ + "/mail.body\n");
    Stub("mail",
         "printf '%s\\n' \"$@\" > " + dir_ + "/mail.argv\n/bin/cat > " + dir_ + "/mail.body\n");
    // Only the stubs and the shell's own directory: a real whois or mail
    // of the machine must not answer.
    SetPath(dir_ + "/bin");
  }
  void TearDown() override { setenv("PATH", old_path_.c_str(), 1); }

  void SetPath(const std::string& p) { setenv("PATH", p.c_str(), 1); }
  void Stub(const std::string& name, const std::string& body) {
    tmp_.Write("bin/" + name, "#!/bin/sh\ncd " + dir_ + "\n" + body);
    chmod(tmp_.Path("bin/" + name).c_str(), 0755);
  }
  std::string Body() { return ReadFile(dir_ + "/mail.body"); }
  std::string Argv() { return ReadFile(dir_ + "/mail.argv"); }
  bool AnyMarker() {
    for (const char* m : {"MARK1", "MARK2", "MARK3", "MARK4", "out"})
      if (fs::exists(dir_ + "/" + m)) return true;
    return false;
  }

  // A stock action with its mail command pointed at the stub.
  // (The stream carries the commands with their options substituted.)
  std::unique_ptr<Action> Make(OrderedMap<std::string> opts, std::string* reason = nullptr,
                               const std::string& sendmail = "") {
    for (auto& [key, value] : opts) {
      for (size_t p = value.find("/usr/sbin/sendmail"); p != std::string::npos;
           p = value.find("/usr/sbin/sendmail", p + 1))
        value.replace(p, 18, sendmail.empty() ? dir_ + "/bin/sendmail" : sendmail);
    }
    std::string why;
    auto r = MailAction::CreateIfStock("j", "mail", opts,
                                       ActionEnv{&spawner_, &pool_, true, nullptr}, &why);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (reason) *reason = why;
    if (!r.ok()) return nullptr;
    EXPECT_TRUE(*r != nullptr || reason) << why;
    return std::move(*r);
  }
  ActionReport Run(Action* a, ActionOp op, const BanInfo& info) {
    return static_cast<MailAction*>(a)->Run(op, info);
  }

  BanInfo Ticket(const std::string& ip = "192.0.2.7") {
    BanInfo info;
    info.jail = "j";
    info.ip = ip;
    info.family = "inet4";
    info.failures = 5;
    info.time = 1700000000;
    info.matches = {"bad from " + ip + " user $(touch MARK1)", "~! touch MARK4", "\\c end"};
    return info;
  }

  TempTree tmp_;
  std::string dir_, old_path_;
  ShellSpawner spawner_;
  WorkerPool pool_{2};
};

// ------------------------------------------------------------ recognition

TEST_F(MailActionTest, RecognizesEveryStockFail2banMailVariant) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  for (const char* name :
       {"sendmail", "sendmail-whois", "sendmail-whois-lines", "sendmail-whois-matches",
        "sendmail-whois-ipmatches", "sendmail-whois-ipjailmatches", "mail", "mail-whois",
        "mail-whois-lines"}) {
    SCOPED_TRACE(name);
    if (!fs::exists(std::string(kStockActionDir) + "/" + name + ".conf")) continue;
    OrderedMap<std::string> opts = LoadAction(kStockActionDir, std::string(name) + "[name=SSH]");
    ASSERT_TRUE(opts.Contains("actionban"));
    std::string reason;
    auto r = MailAction::CreateIfStock("j", name, opts, ActionEnv{&spawner_, &pool_, true, nullptr},
                                       &reason);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_NE(*r, nullptr) << reason;
    if (*r) {
      EXPECT_STREQ((*r)->kind(), "mail");
      EXPECT_FALSE((*r)->start_on_demand());
      EXPECT_FALSE((*r)->has_flush());
      EXPECT_EQ((*r)->GetProperty("name"), "SSH");
    }
  }
}

TEST_F(MailActionTest, RecognizesBundledMailActions) {
  for (const char* name : {"sendmail-whois", "sendmail-whois-lines"}) {
    SCOPED_TRACE(name);
    OrderedMap<std::string> opts = LoadAction(kBundledActionDir, std::string(name) + "[name=SSH]");
    std::string reason;
    EXPECT_NE(Make(opts, &reason), nullptr) << reason;
  }
}

TEST_F(MailActionTest, ActionsItCannotReproduceRunInTheShell) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  for (const char* name : {"sendmail-buffered", "mail-buffered", "sendmail-geoip-lines",
                           "iptables-multiport", "dummy"}) {
    SCOPED_TRACE(name);
    std::string reason;
    EXPECT_EQ(Make(LoadAction(kStockActionDir, name), &reason), nullptr);
    EXPECT_FALSE(reason.empty());
  }
}

TEST_F(MailActionTest, CustomisedActionbanRunsInTheShell) {
  OrderedMap<std::string> opts = LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]");
  std::string reason;
  opts.Set("actionban", *opts.Find("actionban") + "\ncurl -d '<ip>' https://example.org/report");
  EXPECT_EQ(Make(opts, &reason), nullptr);
  EXPECT_NE(reason.find("actionban"), std::string::npos) << reason;

  opts = LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]");
  opts.Set("actionban", "printf %b \"`cat /etc/motd`\" | <mailcmd>");
  EXPECT_EQ(Make(opts, &reason), nullptr);
  EXPECT_NE(reason.find("cannot compose natively"), std::string::npos) << reason;
}

TEST_F(MailActionTest, NativeNoForcesTheShell) {
  OrderedMap<std::string> opts =
      LoadAction(kBundledActionDir, "sendmail-whois[name=SSH, native=no]");
  std::string reason;
  EXPECT_EQ(Make(opts, &reason), nullptr);
  EXPECT_EQ(reason, "native = no");
}

TEST_F(MailActionTest, CustomisedTextIsReproduced) {
  OrderedMap<std::string> opts = LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]");
  opts.Set("actionban",
           "printf %b \"Subject: <ip> is out\\nHello <dest>, \\\"<name>\\\" \\$HOME "
           "`whois <ip> || echo none`\\n\" | <mailcmd>");
  auto a = Make(opts);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(Run(a.get(), ActionOp::kBan, Ticket()).status.ok());
  std::string whois = kHostile;
  whois.pop_back();  // $(...) drops trailing newlines
  EXPECT_EQ(Body(), "Subject: 192.0.2.7 is out\nHello root, \"SSH\" $HOME " + whois + "\n");
}

// ------------------------------------------------------------- composing

TEST_F(MailActionTest, StockSendmailWhoisMatchesSendsHostileTextVerbatim) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  auto a = Make(LoadAction(kStockActionDir,
                           "sendmail-whois-matches[name=SSH, dest=admin@example.org, "
                           "sender=f2b@example.org]"));
  ASSERT_NE(a, nullptr);
  ActionReport r = Run(a.get(), ActionOp::kBan, Ticket());
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
  EXPECT_FALSE(AnyMarker());
  EXPECT_EQ(ReadFile(dir_ + "/whois.argv"), "192.0.2.7\n");
  EXPECT_EQ(Argv(), "-f\nf2b@example.org\nadmin@example.org\n");
  const std::string body = Body();
  EXPECT_EQ(body.rfind("Subject: [Fail2Ban] SSH: banned 192.0.2.7 from ", 0), 0u) << body;
  EXPECT_NE(body.find("\nDate: "), std::string::npos) << body;
  EXPECT_EQ(body.find("`"), body.find("`touch MARK2`")) << "no shell text outside whois";
  EXPECT_NE(body.find("\nFrom: Fail2Ban <f2b@example.org>\nTo: admin@example.org\n\nHi,\n"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("The IP 192.0.2.7 has just been banned by Fail2Ban after\n5 attempts "
                      "against SSH.\n\n\nHere is more information about 192.0.2.7 :\n\n"),
            std::string::npos)
      << body;
  std::string whois = kHostile;
  whois.pop_back();
  EXPECT_NE(body.find(whois), std::string::npos) << body;
  EXPECT_NE(body.find("Matches:\n\nbad from 192.0.2.7 user $(touch MARK1)\n~! touch MARK4\n"
                      "\\c end\n\n\nRegards,\n\nFail2Ban"),
            std::string::npos)
      << body;
}

TEST_F(MailActionTest, StockMailWhoisLinesTildeEscapesStayText) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  tmp_.Write("log/a.log",
             "x 192.0.2.7 ~! touch MARK4\nother 192.0.2.70\n"
             "`touch MARK2` from 192.0.2.7\n");
  auto a = Make(LoadAction(
      kStockActionDir, "mail-whois-lines[name=SSH, logpath=\"" + tmp_.Path("log/a.log") + "\"]"));
  ASSERT_NE(a, nullptr);
  ActionReport r = Run(a.get(), ActionOp::kBan, Ticket());
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
  EXPECT_FALSE(AnyMarker());
  std::string argv = Argv();
  EXPECT_EQ(argv.rfind("-E\nset escape\n-s\n[Fail2Ban] SSH: banned 192.0.2.7 from ", 0), 0u)
      << argv;
  EXPECT_EQ(argv.substr(argv.size() - 6), "\nroot\n");
  const std::string body = Body();
  EXPECT_EQ(body.rfind("Hi,\n\nThe IP 192.0.2.7 has just been banned", 0), 0u) << body;
  EXPECT_NE(body.find(kHostile +
                      "\nLines containing failures of 192.0.2.7 (max 1000)\n"
                      "x 192.0.2.7 ~! touch MARK4\n`touch MARK2` from 192.0.2.7\n\n\nRegards,"),
            std::string::npos)
      << body;
}

TEST_F(MailActionTest, BundledSendmailWhoisLines) {
  tmp_.Write("log/a.log", "x 192.0.2.7 $(touch MARK1)\n192.0.2.77\n");
  tmp_.Write("log/b.log", "y 192.0.2.7\n");
  // A glob, as a jail's logpath may be.
  auto a = Make(LoadAction(
      kBundledActionDir, "sendmail-whois-lines[name=SSH, logpath=" + tmp_.Path("log/*.log") + "]"));
  ASSERT_NE(a, nullptr);
  ActionReport r = Run(a.get(), ActionOp::kBan, Ticket());
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_FALSE(AnyMarker());
  EXPECT_EQ(Argv(), "-i\n-f\nbantam\nroot\n");
  const std::string body = Body();
  EXPECT_EQ(body.rfind("Subject: [bantam] SSH: banned 192.0.2.7 on ", 0), 0u) << body;
  EXPECT_NE(body.find("\nFrom: bantam <bantam>\nTo: root\n\nJail SSH banned 192.0.2.7 after 5 "
                      "failures.\n\nwhois 192.0.2.7:\n\n" +
                      kHostile +
                      "\nLog lines mentioning 192.0.2.7:\n\nx 192.0.2.7 $(touch MARK1)\n"
                      "y 192.0.2.7\n"),
            std::string::npos)
      << body;
}

class FakeContext : public BanContext {
 public:
  std::optional<MergedBans> MergedBansOf(const std::string&, const std::string& jail) override {
    MergedBans m;
    m.failures = jail.empty() ? 9 : 7;
    m.matches = {jail.empty() ? "all $(touch MARK1)" : "jail `touch MARK2`"};
    return m;
  }
  std::optional<std::string> JailCounter(const std::string&, const std::string&) override {
    return std::nullopt;
  }
  std::optional<std::string> HostName(const std::string&) override { return std::nullopt; }
};

TEST_F(MailActionTest, IpMatchesAndIpJailMatchesComeFromTheContext) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  BanInfo info = Ticket();
  info.context = std::make_shared<FakeContext>();
  auto a = Make(LoadAction(kStockActionDir, "sendmail-whois-ipmatches[name=SSH]"));
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(Run(a.get(), ActionOp::kBan, info).status.ok());
  EXPECT_NE(Body().find("Matches with 9 failures IP:192.0.2.7\n\nall $(touch MARK1)\n"),
            std::string::npos)
      << Body();
  auto b = Make(LoadAction(kStockActionDir, "sendmail-whois-ipjailmatches[name=SSH]"));
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(Run(b.get(), ActionOp::kBan, info).status.ok());
  EXPECT_NE(Body().find("Matches for SSH with 7 failures IP:192.0.2.7\n\njail `touch MARK2`\n"),
            std::string::npos)
      << Body();
  EXPECT_FALSE(AnyMarker());
}

TEST_F(MailActionTest, StartAndStopMails) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  auto a = Make(LoadAction(kStockActionDir, "sendmail-whois[name=SSH]"));
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(Run(a.get(), ActionOp::kStop, BanInfo{}).skipped);  // never started
  ActionReport r = Run(a.get(), ActionOp::kStart, BanInfo{});
  ASSERT_TRUE(r.status.ok());
  EXPECT_FALSE(r.skipped);
  EXPECT_NE(
      Body().find("Hi,\n\nThe jail SSH has been started successfully.\n\nRegards,\n\nFail2Ban"),
      std::string::npos)
      << Body();
  ASSERT_TRUE(Run(a.get(), ActionOp::kStop, BanInfo{}).status.ok());
  EXPECT_NE(Body().find("The jail SSH has been stopped."), std::string::npos) << Body();
  EXPECT_TRUE(Run(a.get(), ActionOp::kUnban, Ticket()).skipped);
  // Restored bans were mailed when they happened (norestored).
  BanInfo restored = Ticket();
  restored.restored = true;
  EXPECT_TRUE(Run(a.get(), ActionOp::kBan, restored).skipped);

  // Ours sends none.
  auto b = Make(LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]"));
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(Run(b.get(), ActionOp::kStart, BanInfo{}).skipped);
}

// --------------------------------------------------------------- failures

TEST_F(MailActionTest, SlowWhoisTimesOutWithAWarning) {
  Stub("whois", "echo partial\nexec /bin/sleep 10\n");
  OrderedMap<std::string> opts = LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]");
  opts.Set("whois_timeout", "0.3");
  auto a = Make(opts);
  ASSERT_NE(a, nullptr);
  auto start = std::chrono::steady_clock::now();
  ActionReport r = Run(a.get(), ActionOp::kBan, Ticket());
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 5);
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(r.warnings.size(), 1u) << r.warnings.back();
  EXPECT_NE(r.warnings[0].find("whois for 192.0.2.7 timed out"), std::string::npos) << r.warnings[0];
  EXPECT_NE(Body().find("partial\n(whois lookup failed)\n"), std::string::npos) << Body();
}

TEST_F(MailActionTest, MissingWhoisAndMailCommandAreWarnings) {
  BANTAM_REQUIRE_TOOL(fs::is_directory(kStockActionDir), kStockActionDir, "fail2ban");
  fs::remove(dir_ + "/bin/whois");
  auto a = Make(LoadAction(kStockActionDir, "sendmail-whois[name=SSH]"));
  ASSERT_NE(a, nullptr);
  ActionReport r = Run(a.get(), ActionOp::kBan, Ticket());
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(r.warnings.size(), 1u) << r.warnings.back();
  EXPECT_NE(r.warnings[0].find("whois for 192.0.2.7 not run"), std::string::npos) << r.warnings[0];
  EXPECT_NE(Body().find(" :\n\nmissing whois program\n\nRegards,"), std::string::npos) << Body();

  a = Make(LoadAction(kStockActionDir, "sendmail-whois[name=SSH]"), nullptr,
           "/nonexistent/sendmail");
  ASSERT_NE(a, nullptr);
  a->SetProperty("dest", "changed");  // no effect: the stream's commands hold their values
  bool done = false;
  a->Submit(ActionOp::kBan, Ticket(), [&](ActionReport rep) {
    r = std::move(rep);
    done = true;
  });
  for (int i = 0; i < 100 && !done; ++i) pool_.WaitAndRunCompletions(100);
  ASSERT_TRUE(done);
  EXPECT_TRUE(r.status.ok());
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_NE(r.warnings[1].find("not sent: /nonexistent/sendmail -f fail2ban root failed to start"),
            std::string::npos)
      << r.warnings[1];
}

TEST_F(MailActionTest, MailCommandWithShellSyntaxGetsValuesAsArguments) {
  OrderedMap<std::string> opts = LoadAction(kBundledActionDir, "sendmail-whois[name=SSH]");
  std::string ban = *opts.Find("actionban");
  ban = ban.substr(0, ban.rfind('|')) + "| " + dir_ +
        "/bin/sendmail -f '<sender>' 'x <ip> y' 2>/dev/null";
  opts.Set("actionban", ban);
  std::string reason;
  auto r = MailAction::CreateIfStock("j", "m", opts, ActionEnv{&spawner_, &pool_, true, nullptr},
                                     &reason);
  ASSERT_TRUE(r.ok());
  ASSERT_NE(*r, nullptr) << reason;
  ActionReport rep =
      static_cast<MailAction*>(r->get())->Run(ActionOp::kBan, Ticket("$(touch MARK1)"));
  EXPECT_TRUE(rep.status.ok());
  EXPECT_FALSE(AnyMarker());
  EXPECT_EQ(Argv(), "-f\nbantam\nx $(touch MARK1) y\n");
  ASSERT_EQ(rep.runs.size(), 1u);
  EXPECT_EQ(rep.runs[0].command.args, std::vector<std::string>{"$(touch MARK1)"});
}

TEST_F(MailActionTest, SubmittedMailsReportOnTheLoopAndTheQueueIsBounded) {
  // The mail command waits until GO exists: every ban mail queues behind it.
  fs::remove(dir_ + "/bin/whois");  // fewer processes: only the mail command runs
  Stub("sendmail", "while [ ! -e GO ]; do /bin/sleep 0.02; done\n/bin/cat > /dev/null\n");
  auto a = Make(LoadAction(kBundledActionDir, "sendmail-whois[name=SSH, mailqueue=20]"));
  ASSERT_NE(a, nullptr);
  auto* mail = static_cast<MailAction*>(a.get());
  static_assert(MailAction::kMaxPendingMails == 1000);
  const size_t total = 20 + 5;
  size_t reported = 0, dropped = 0;
  for (size_t i = 0; i < total; ++i) {
    a->Submit(ActionOp::kBan, Ticket("192.0.2." + std::to_string(i % 250)), [&](ActionReport r) {
      ++reported;
      if (r.skipped && !r.warnings.empty()) ++dropped;
    });
  }
  EXPECT_EQ(dropped, 5u);  // answered at once
  EXPECT_EQ(mail->dropped(), 5u);
  tmp_.Write("GO", "");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (reported < total && std::chrono::steady_clock::now() < deadline)
    pool_.WaitAndRunCompletions(100);
  EXPECT_EQ(reported, total);
}

}  // namespace
}  // namespace bantam
