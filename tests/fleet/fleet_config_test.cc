#include "bantam/fleet_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

class FleetConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_.Write("fail2ban.conf", "[Definition]\nloglevel = INFO\n");
    tree_.Write("jail.conf", "[DEFAULT]\nbantime = 600\n\n[asterisk]\nenabled = true\n");
    tree_.Write("fleet.key", "a-secret-of-more-than-16-bytes\n");
    ::chmod(tree_.Path("fleet.key").c_str(), 0600);
  }
  FleetSettings Load(bool secrets = true) {
    diags_.clear();
    return LoadFleetSettings(tree_.root(), secrets, &diags_);
  }
  std::string Messages() const {
    std::string out;
    for (const Diagnostic& d : diags_)
      out += (d.severity == Diagnostic::Severity::kError ? "E " : "W ") + d.message + "\n";
    return out;
  }
  std::string Rel(std::string text) const {
    for (size_t p; (p = text.find(tree_.root() + "/")) != std::string::npos;)
      text.erase(p, tree_.root().size() + 1);
    return text;
  }
  TempTree tree_;
  std::vector<Diagnostic> diags_;
};

TEST_F(FleetConfigTest, NoFleetSectionMeansOff) {
  FleetSettings s = Load();
  EXPECT_FALSE(s.enabled);
  EXPECT_TRUE(diags_.empty()) << Messages();
}

TEST_F(FleetConfigTest, ReadsEveryOption) {
  tree_.Write("redis.pass", "s3cret\n");
  ::chmod(tree_.Path("redis.pass").c_str(), 0600);
  tree_.Write("fail2ban.local", "[Fleet]\nredis = unix:/run/redis/redis.sock\ndb = 2\n"
                                "username = bantam\npassword_file = " + tree_.Path("redis.pass") +
                                    "\nnode = pbx1\nstream = fleet:bans\nkey_file = " +
                                    tree_.Path("fleet.key") + "\nmaxlen = 5000\n");
  tree_.Write("jail.local", "[asterisk]\nfleet = share\n\n[sshd]\nfleet = apply\n");
  FleetSettings s = Load();
  EXPECT_TRUE(diags_.empty()) << Messages();
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(s.db, 2);
  EXPECT_EQ(s.username, "bantam");
  EXPECT_EQ(s.password, "s3cret");
  EXPECT_EQ(s.node, "pbx1");
  EXPECT_EQ(s.stream, "fleet:bans");
  EXPECT_EQ(s.key, "a-secret-of-more-than-16-bytes");
  EXPECT_EQ(s.maxlen, 5000);
  EXPECT_EQ(s.ModeOf("asterisk"), FleetMode::kShare);
  EXPECT_EQ(s.ModeOf("sshd"), FleetMode::kApply);
  EXPECT_EQ(s.ModeOf("other"), FleetMode::kNo);
}

TEST_F(FleetConfigTest, HostPortAndDefaultNode) {
  tree_.Write("fail2ban.local",
              "[Fleet]\nredis = 10.0.0.5:6380\nkey_file = " + tree_.Path("fleet.key") + "\n");
  FleetSettings s = Load();
  EXPECT_TRUE(diags_.empty()) << Messages();
  EXPECT_EQ(s.host, "10.0.0.5");
  EXPECT_EQ(s.port, 6380);
  EXPECT_FALSE(s.node.empty());
  EXPECT_EQ(s.stream, "bantam:bans");
}

TEST_F(FleetConfigTest, BadValuesNameFileAndLine) {
  tree_.Write("fail2ban.local", "[Fleet]\nredis = localhost\ndb = x\nnode = pbx 1\nkey_file = " +
                                    tree_.Path("fleet.key") + "\nmaxlen = 5\n");
  tree_.Write("jail.local", "[asterisk]\nfleet = everywhere\nfleet_failures = maybe\n");
  Load();
  EXPECT_EQ(Rel(Messages()),
            "E fail2ban.local:2: [Fleet] redis localhost: expected HOST:PORT or unix:/path\n"
            "E fail2ban.local:3: [Fleet] db x: expected a database number\n"
            "E fail2ban.local:4: [Fleet] node 'pbx 1': 1 to 64 letters, digits or ._-@:\n"
            "E fail2ban.local:6: [Fleet] maxlen 5: expected a number >= 100\n"
            "E jail.local:2: fleet = everywhere: expected share, publish, apply or no\n");
}

TEST_F(FleetConfigTest, KeyFileIsRequiredAndMustExist) {
  tree_.Write("fail2ban.local", "[Fleet]\nredis = unix:/x.sock\n");
  Load();
  EXPECT_EQ(Rel(Messages()),
            "E fail2ban.local:2: [Fleet] has redis but no key_file: entries cannot be signed\n");
  tree_.Write("fail2ban.local", "[Fleet]\nredis = unix:/x.sock\nkey_file = /nonexistent/key\n");
  Load();
  EXPECT_EQ(Rel(Messages()),
            "E fail2ban.local:3: [Fleet] key_file /nonexistent/key: no such file\n");
}

TEST_F(FleetConfigTest, ShortSecretIsAnError) {
  tree_.Write("short.key", "tiny\n");
  ::chmod(tree_.Path("short.key").c_str(), 0600);
  tree_.Write("fail2ban.local",
              "[Fleet]\nredis = unix:/x.sock\nkey_file = " + tree_.Path("short.key") + "\n");
  Load();
  EXPECT_NE(Messages().find("the secret is shorter than 16 bytes"), std::string::npos) << Messages();
}

TEST_F(FleetConfigTest, PasswordFileReadableByOthersIsAWarning) {
  tree_.Write("redis.pass", "s3cret\n");
  ::chmod(tree_.Path("redis.pass").c_str(), 0644);
  tree_.Write("fail2ban.local", "[Fleet]\nredis = unix:/x.sock\npassword_file = " +
                                    tree_.Path("redis.pass") + "\nkey_file = " +
                                    tree_.Path("fleet.key") + "\n");
  FleetSettings s = Load();
  EXPECT_EQ(Rel(Messages()),
            "W fail2ban.local:3: [Fleet] password_file redis.pass is readable by others "
            "(chmod o-rwx, 0600 or 0640)\n");
  EXPECT_EQ(s.password, "s3cret");
}

TEST_F(FleetConfigTest, JailFleetWithoutRedisIsAnError) {
  tree_.Write("jail.local", "[asterisk]\nfleet = publish\n");
  Load();
  EXPECT_EQ(Rel(Messages()),
            "E jail.local:2: fleet = publish but fail2ban.local has no [Fleet] redis\n");
}

TEST_F(FleetConfigTest, DefaultSectionAppliesToEveryJailAndErrsOnce) {
  tree_.Write("fail2ban.local",
              "[Fleet]\nredis = unix:/x.sock\nkey_file = " + tree_.Path("fleet.key") + "\n");
  tree_.Write("jail.local", "[DEFAULT]\nfleet = bogus\n\n[sshd]\nenabled = true\n");
  Load();
  EXPECT_EQ(Rel(Messages()), "E jail.local:2: fleet = bogus: expected share, publish, apply or no\n");
  tree_.Write("jail.local", "[DEFAULT]\nfleet = share\n\n[sshd]\nenabled = true\n");
  FleetSettings s = Load();
  EXPECT_TRUE(diags_.empty()) << Messages();
  EXPECT_EQ(s.ModeOf("sshd"), FleetMode::kShare);
  EXPECT_EQ(s.ModeOf("asterisk"), FleetMode::kShare);
}

TEST_F(FleetConfigTest, FleetFailures) {
  tree_.Write("fail2ban.local",
              "[Fleet]\nredis = unix:/x.sock\nkey_file = " + tree_.Path("fleet.key") + "\n");
  tree_.Write("jail.local", "[asterisk]\nfleet = share\nfleet_failures = yes\n\n"
                            "[sshd]\nfleet_failures = yes\n");
  FleetSettings s = Load();
  EXPECT_TRUE(s.SharesFailures("asterisk"));
  EXPECT_FALSE(s.SharesFailures("sshd"));
  EXPECT_EQ(s.failures_stream(), "bantam:bans:failures");
  EXPECT_EQ(Rel(Messages()), "W jail.local:6: fleet_failures = yes has no effect without fleet = "
                             "share, publish or apply\n");
}

}  // namespace
}  // namespace bantam
