#include "bantam/logging.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tz = ::getenv("TZ");
    saved_tz_ = tz ? std::optional<std::string>(tz) : std::nullopt;
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  void TearDown() override {
    if (saved_tz_) {
      ::setenv("TZ", saved_tz_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }
  std::optional<std::string> saved_tz_;
};

TEST_F(LoggingTest, LineFormatIsFail2bans) {
  // What fail2ban 1.0.2 writes for the same record (Python logging with
  // fail2ban's "%(asctime)s %(name)-24s[%(process)d]: %(levelname)-7s %(message)s").
  EXPECT_EQ(FormatLogLine(1764087511.6405, "fail2ban.actions", 1234, LogLevel::kNotice,
                          "[asterisk] Ban 192.0.2.1"),
            "2025-11-25 16:18:31,640 fail2ban.actions        [1234]: NOTICE  [asterisk] Ban 192.0.2.1");
  EXPECT_EQ(FormatLogLine(1764087511.0, "fail2ban.filter", 7, LogLevel::kInfo,
                          "[sshd] Found 192.0.2.2 - 2025-11-25 16:18:31"),
            "2025-11-25 16:18:31,000 fail2ban.filter         [7]: INFO    [sshd] Found 192.0.2.2 - "
            "2025-11-25 16:18:31");
  // Syslog: no time, no padding.
  EXPECT_EQ(FormatLogLine(0, "fail2ban.actions", 9, LogLevel::kWarning, "x", false, false),
            "fail2ban.actions[9]: WARNING x");
}

TEST_F(LoggingTest, LevelsByNameAndNumber) {
  EXPECT_EQ(*ParseLogLevel("notice"), LogLevel::kNotice);
  EXPECT_EQ(*ParseLogLevel(" WARN "), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("HEAVYDEBUG"), LogLevel::kHeavyDebug);
  EXPECT_EQ(static_cast<int>(*ParseLogLevel("15")), 15);
  EXPECT_EQ(ParseLogLevel("loud").status().message(), "Invalid log level 'loud'");
  EXPECT_EQ(LogLevelName(LogLevel::kError), "ERROR");
}

TEST_F(LoggingTest, FileTargetFiltersByLevelAndReopensAfterRotation) {
  testing::TempTree tree;
  const std::string path = tree.Path("bantam.log");
  Result<std::unique_ptr<Logger>> logger = Logger::Open(path, "auto", LogLevel::kNotice);
  ASSERT_TRUE(logger.ok()) << logger.status().message();
  (*logger)->Log(LogLevel::kInfo, "fail2ban.filter", "not written");
  (*logger)->Log(LogLevel::kNotice, "fail2ban.actions", "[pbx] Ban 192.0.2.1");
  ASSERT_EQ(::rename(path.c_str(), tree.Path("bantam.log.1").c_str()), 0);
  ASSERT_TRUE((*logger)->Reopen().ok());
  (*logger)->Log(LogLevel::kWarning, "fail2ban.actions", "[pbx] Unban 192.0.2.1");
  EXPECT_EQ(ReadAll(path).find("Unban"), std::string::npos) << "buffered until Flush()";
  (*logger)->Flush();
  const std::string old_log = ReadAll(tree.Path("bantam.log.1"));
  const std::string new_log = ReadAll(path);
  EXPECT_EQ(old_log.find("not written"), std::string::npos);
  EXPECT_NE(old_log.find(" fail2ban.actions        [" + std::to_string(::getpid()) +
                         "]: NOTICE  [pbx] Ban 192.0.2.1\n"),
            std::string::npos)
      << old_log;
  EXPECT_NE(new_log.find("]: WARNING [pbx] Unban 192.0.2.1\n"), std::string::npos) << new_log;
}

// fail2ban's logrotate snippet for /var/log/fail2ban.log runs
// fail2ban-client flushlogs, which cannot reach bantamd: the daemon notices
// the rename itself.
TEST_F(LoggingTest, ReopenIfMovedFollowsARotationNobodyAnnounced) {
  testing::TempTree tree;
  const std::string path = tree.Path("fail2ban.log");
  Result<std::unique_ptr<Logger>> logger = Logger::Open(path, "auto", LogLevel::kInfo);
  ASSERT_TRUE(logger.ok()) << logger.status().message();
  Result<bool> moved = (*logger)->ReopenIfMoved();
  ASSERT_TRUE(moved.ok());
  EXPECT_FALSE(*moved) << "nothing moved yet";
  (*logger)->Log(LogLevel::kInfo, "fail2ban.actions", "before");
  ASSERT_EQ(::rename(path.c_str(), tree.Path("fail2ban.log.1").c_str()), 0);
  moved = (*logger)->ReopenIfMoved();
  ASSERT_TRUE(moved.ok()) << moved.status().message();
  EXPECT_TRUE(*moved);
  (*logger)->Log(LogLevel::kInfo, "fail2ban.actions", "after");
  (*logger)->Flush();
  EXPECT_NE(ReadAll(tree.Path("fail2ban.log.1")).find("before"), std::string::npos);
  EXPECT_EQ(ReadAll(tree.Path("fail2ban.log.1")).find("after"), std::string::npos);
  EXPECT_NE(ReadAll(path).find("after"), std::string::npos);
  moved = (*logger)->ReopenIfMoved();
  ASSERT_TRUE(moved.ok());
  EXPECT_FALSE(*moved) << "the new file is the open one";
  // Deleted outright: a new file is made.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  moved = (*logger)->ReopenIfMoved();
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE(*moved);
  (*logger)->Log(LogLevel::kInfo, "fail2ban.actions", "recreated");
  (*logger)->Flush();
  EXPECT_NE(ReadAll(path).find("recreated"), std::string::npos);
}

TEST_F(LoggingTest, ErrorsAreWrittenAtOnce) {
  testing::TempTree tree;
  const std::string path = tree.Path("bantam.log");
  Result<std::unique_ptr<Logger>> logger = Logger::Open(path, "auto", LogLevel::kInfo);
  ASSERT_TRUE(logger.ok()) << logger.status().message();
  (*logger)->Log(LogLevel::kInfo, "fail2ban.filter", "[pbx] Found 192.0.2.1");
  (*logger)->Log(LogLevel::kError, "fail2ban.actions", "Failed to execute ban");
  const std::string log = ReadAll(path);
  EXPECT_NE(log.find("Found 192.0.2.1"), std::string::npos) << log;
  EXPECT_NE(log.find("Failed to execute ban"), std::string::npos) << log;
}

TEST_F(LoggingTest, UnwritableTargetIsAClearError) {
  Result<std::unique_ptr<Logger>> logger =
      Logger::Open("/nonexistent-dir/x.log", "auto", LogLevel::kInfo);
  ASSERT_FALSE(logger.ok());
  EXPECT_EQ(logger.status().message(),
            "Unable to log to '/nonexistent-dir/x.log': No such file or directory");
  EXPECT_EQ(Logger::Open("SYSLOG[facility=nope]", "auto", LogLevel::kInfo).status().message(),
            "Unable to set facility 'NOPE'");
}

}  // namespace
}  // namespace bantam
