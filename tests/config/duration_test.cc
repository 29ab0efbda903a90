#include "bantam/duration.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace bantam {
namespace {

struct Case {
  const char* text;
  bool is_integer;
  const char* str2sec;  // What fail2ban-client --str2sec prints (fail2ban 1.0.2).
};

void ExpectValue(const Case& c) {
  SCOPED_TRACE(std::string("input '") + c.text + "'");
  Result<TimeValue> value = ParseTimeValue(c.text);
  ASSERT_TRUE(value.ok()) << value.status().message();
  EXPECT_EQ(value->is_integer, c.is_integer);
  EXPECT_EQ(FormatStr2Sec(*value), c.str2sec);
  Result<double> seconds = ParseDuration(c.text);
  ASSERT_TRUE(seconds.ok());
  EXPECT_EQ(*seconds, std::stod(c.str2sec));
}

TEST(Duration, PlainNumbers) {
  for (const Case& c : std::vector<Case>{
           {"600", true, "600"},
           {"0", true, "0"},
           {"-1", true, "-1"},
           {"+5", true, "5"},
           {"1_000", true, "1000"},
           {"00", true, "0"},
           {"1.5", false, "1.5"},
           {".5", false, "0.5"},
           {"5.", false, "5.0"},
           {"1.0", false, "1.0"},
           {"007.5", false, "7.5"},
           {"1e+3", false, "1000.0"},
           {"1E-1", false, "0.1"},
           {"0xff", true, "255"},
           {"9223372036854775807", true, "9223372036854775807"},
       }) {
    ExpectValue(c);
  }
}

TEST(Duration, EveryUnitWord) {
  for (const Case& c : std::vector<Case>{
           {"1s", true, "1"},
           {"1se", true, "1"},
           {"1sec", true, "1"},
           {"1second", true, "1"},
           {"1seconds", true, "1"},
           {"1ss", true, "1"},
           {"1m", true, "60"},
           {"1mi", true, "60"},
           {"1min", true, "60"},
           {"1minute", true, "60"},
           {"1minutes", true, "60"},
           {"1mm", true, "60"},
           {"1h", true, "3600"},
           {"1ho", true, "3600"},
           {"1hou", true, "3600"},
           {"1hour", true, "3600"},
           {"1hours", true, "3600"},
           {"1hh", true, "3600"},
           {"1d", true, "86400"},
           {"1da", true, "86400"},
           {"1day", true, "86400"},
           {"1days", true, "86400"},
           {"1dd", true, "86400"},
           {"1w", true, "604800"},
           {"1we", true, "604800"},
           {"1wee", true, "604800"},
           {"1week", true, "604800"},
           {"1weeks", true, "604800"},
           {"1ww", true, "604800"},
           {"1mo", false, "2629800.0"},
           {"1mon", false, "2629800.0"},
           {"1month", false, "2629800.0"},
           {"1months", false, "2629800.0"},
           {"1y", false, "31557600.0"},
           {"1ye", false, "31557600.0"},
           {"1yea", false, "31557600.0"},
           {"1year", false, "31557600.0"},
           {"1years", false, "31557600.0"},
           {"1yy", false, "31557600.0"},
       }) {
    ExpectValue(c);
  }
}

TEST(Duration, UnitsIgnoreCase) {
  ExpectValue({"1DAYS", true, "86400"});
  ExpectValue({"1Y2MO3W4D5H6M7S", false, "38995567.0"});
}

TEST(Duration, CapitalMIsMinutesNotMonths) {
  ExpectValue({"1M", true, "60"});
  ExpectValue({"1Mo", false, "2629800.0"});
}

TEST(Duration, Combinations) {
  for (const Case& c : std::vector<Case>{
           {"10m", true, "600"},
           {"1h 30m", true, "5400"},
           {"1d12h", true, "129600"},
           {"1d12h30m", true, "131400"},
           {"1d12h 30m", true, "131400"},
           {"1 d 12 h", true, "129600"},
           {"1h 2m 3s", true, "3723"},
           {"1 hour 30 minutes", true, "5400"},
           {"1y 2mo 3w 4d 5h 6m 7s", false, "38995567.0"},
           {"1h1", true, "3601"},
           {"1min30", true, "90"},
           {"10 20 30", true, "60"},
           {"5 6m", true, "365"},
           {"1.5h", false, "5400.0"},
           {"1.5 s", false, "1.5"},
           {"2.5mo", false, "6574500.0"},
           {"1mo 1", false, "2629801.0"},
           {"1h\n30m", true, "5400"},
       }) {
    ExpectValue(c);
  }
}

TEST(Duration, PythonArithmetic) {
  for (const Case& c : std::vector<Case>{
           {"1year-6mo", false, "15778800.0"},
           {"1h-30m", true, "1800"},
           {"2*(1h+30m)", true, "10800"},
           {"1h/2", false, "1800.0"},
           {"1/3", false, "0.3333333333333333"},
           {"0.1+0.2", false, "0.30000000000000004"},
           {"7//2", true, "3"},
           {"-7//2", true, "-4"},
           {"7%-3", true, "-2"},
           {"-7.5%2", false, "0.5"},
           {"5.5//-2", false, "-3.0"},
           {"2**3**2", true, "512"},
           {"-2**2", true, "-4"},
           {"2**-1", false, "0.5"},
           {"1d**0.5", false, "293.9387691339814"},
           {"~1", true, "-2"},
           {"1+-+2", true, "-1"},
           {"(1 2)", true, "3"},
           {"1h # ban for an hour", true, "3600"},
       }) {
    ExpectValue(c);
  }
}

TEST(Duration, FloatSpellingFollowsPythonRepr) {
  ExpectValue({"1e+15", false, "1000000000000000.0"});
  ExpectValue({"1e+16", false, "1e+16"});
  ExpectValue({"0.0001", false, "0.0001"});
  ExpectValue({"0.00001", false, "1e-05"});
  ExpectValue({"-0.0", false, "-0.0"});
  ExpectValue({"1.5**1000", false, "1.2338405969061735e+176"});
  ExpectValue({"1e+400", false, "inf"});
  ExpectValue({"1e-400", false, "0.0"});
  Result<TimeValue> nan = ParseTimeValue("1e+400-1e+400");
  ASSERT_TRUE(nan.ok());
  EXPECT_EQ(FormatStr2Sec(*nan), "nan");
}

TEST(Duration, WhitespaceAndNewlinesAsEvalSeesThem) {
  ExpectValue({" 5", true, "5"});
  ExpectValue({"5 ", true, "5"});
  ExpectValue({"\n5\n", true, "5"});
  ExpectValue({"(1\n+2)", true, "3"});
  ExpectValue({"1\v2", true, "3"});  // The regex joins; eval never sees \v.
}

void ExpectError(const std::string& text) {
  Result<TimeValue> value = ParseTimeValue(text);
  ASSERT_FALSE(value.ok()) << "'" << text << "' gave " << FormatStr2Sec(*value);
  EXPECT_EQ(value.status().message(), "invalid time value '" + text + "'");
  Result<double> seconds = ParseDuration(text);
  ASSERT_FALSE(seconds.ok());
  EXPECT_EQ(seconds.status().message(), "invalid time value '" + text + "'");
}

TEST(Duration, ErrorMessageQuotesTheText) {
  Result<double> seconds = ParseDuration("xyz");
  ASSERT_FALSE(seconds.ok());
  EXPECT_EQ(seconds.status().message(), "invalid time value 'xyz'");
}

TEST(Duration, RejectsWhatFail2banRejects) {
  for (const char* text : {
           "",      "   ",  "xyz",  "h",      "m",      "1dayx",   "1d_",  "1wks",      "1secs",
           "1e3",   "1e20", "0x10", "1h+",    "1d+",    "(1",      "1)",   "()",        "1 (2)",
           "(1) 2", "010",  "0_1",  "1_",     "1__0",   "1._5",    "5.s",  "1..5",      "1. 2",
           "1 .5",  "1/0",  "7%0",  "7//0.0", "0**-1",  "0.0**-1", "~1.5", "10.0**400", "1\n+2",
           "5\n+6", "\n 5", "#x",   "12:30",  "1h;30m", "1 _2",
       }) {
    ExpectError(text);
  }
}

// Python evaluates these to a tuple or a complex number, which no jail can
// use; fail2ban would fail later, we fail here.
TEST(Duration, RejectsValuesThatAreNotNumbers) {
  for (const char* text : {"1,2", "1j", "(-8)**0.5", "(1h,)"}) ExpectError(text);
}

// fail2ban joins "digit space digit" without overlapping matches, so the
// middle "2" of "1 2 3" is used up and eval sees "1+2 3".
TEST(Duration, SingleDigitRunOfThreeIsASyntaxError) {
  ExpectError("1 2 3");
  ExpectError("1d 2 3 4");
  ExpectValue({"12 34 56", true, "102"});
}

// Python ints grow without bound; ours are 64-bit and refuse to overflow.
TEST(Duration, IntegerOverflowIsAnError) {
  ExpectError("9223372036854775807+1");
  ExpectError("2**64");
  ExpectError("0x10000000000000000");
}

TEST(Duration, FormatBareSeconds) {
  EXPECT_EQ(FormatStr2Sec(600.0), "600");
  EXPECT_EQ(FormatStr2Sec(-1.0), "-1");
  EXPECT_EQ(FormatStr2Sec(0.5), "0.5");
  EXPECT_EQ(FormatStr2Sec(5400.25), "5400.25");
  EXPECT_EQ(FormatStr2Sec(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatStr2Sec(1e20), "1e+20");
  EXPECT_EQ(FormatStr2Sec(1.5e-7), "1.5e-07");
  EXPECT_EQ(FormatStr2Sec(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(FormatStr2Sec(-std::numeric_limits<double>::infinity()), "-inf");
}

// ---------------------------------------------------------------------------
// Differential test against the real fail2ban-client. It only converts
// strings (--str2sec); it never reads a config or talks to a server.

struct Oracle {
  pid_t pid = -1;
  int out_fd = -1;
};

// Starts `fail2ban-client --str2sec TEXT` with stdout on a pipe.
Oracle StartOracle(const std::string& text, std::string* err) {
  int fds[2];
  if (pipe(fds) != 0) {
    *err = std::string("pipe: ") + std::strerror(errno);
    return {};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::string prog = "fail2ban-client", flag = "--str2sec", arg = text;
  char* argv[] = {prog.data(), flag.data(), arg.data(), nullptr};
  Oracle oracle;
  int rc = posix_spawnp(&oracle.pid, prog.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    *err = "cannot run fail2ban-client (" + std::string(std::strerror(rc)) +
           "); the differential test needs fail2ban 1.0.2 installed as the oracle";
    return {};
  }
  oracle.out_fd = fds[0];
  return oracle;
}

// Reads the output and reaps the process; returns the exit status.
int FinishOracle(const Oracle& oracle, std::string* out) {
  char buf[4096];
  ssize_t n;
  while ((n = read(oracle.out_fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out->append(buf, static_cast<size_t>(n));
  }
  close(oracle.out_fd);
  int status = 0;
  while (waitpid(oracle.pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Duration, MatchesFail2banClientStr2Sec) {
  const std::vector<std::string> inputs = {
      "600",    "10m",     "1h 30m",    "3d",       "1w",        "1mo",         "1y",     "-1",
      "1.5h",   "1d12h",   "1year-6mo", "6 months", "0d 1h 30m", "1hour+30min", "2weeks", "1Y",
      "1M",     "1mon",    "90s",       "1min30",   "1h1",       "10 20 30",    "1 2 3",  "5 6m",
      "1/3",    "0.1+0.2", "1e+16",     "0.00001",  "-7//2",     "2**-1",       "1e+400", "0xff",
      "1_000s", "1d**0.5", "1h\n30m",   "xyz",      "1e3",       "1dayx",       "010",    "1/0",
      "",       "1h+",     "(1h",
  };
  std::vector<Oracle> oracles;
  for (const std::string& text : inputs) {
    std::string err;
    oracles.push_back(StartOracle(text, &err));
    if (oracles.back().pid < 0) {
      for (size_t i = 0; i + 1 < oracles.size(); ++i) {
        std::string ignored;
        FinishOracle(oracles[i], &ignored);
      }
      FAIL() << err;
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& text = inputs[i];
    SCOPED_TRACE("fail2ban-client --str2sec '" + text + "'");
    std::string out;
    int code = FinishOracle(oracles[i], &out);
    Result<TimeValue> ours = ParseTimeValue(text);
    if (code == 0) {
      ASSERT_TRUE(!out.empty() && out.back() == '\n') << "output: " << out;
      out.pop_back();
      ASSERT_TRUE(ours.ok()) << ours.status().message() << "; fail2ban printed " << out;
      EXPECT_EQ(FormatStr2Sec(*ours), out);
    } else {
      // fail2ban prints "ERROR: <python exception>" and exits 255.
      EXPECT_EQ(out.rfind("ERROR: ", 0), 0u) << "exit " << code << ", output: " << out;
      EXPECT_FALSE(ours.ok()) << "fail2ban rejected it, we gave " << FormatStr2Sec(*ours);
    }
  }
}

}  // namespace
}  // namespace bantam
