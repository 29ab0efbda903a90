#include "bantam/ban_time.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../testing/require.h"
#include "../testing/temp_tree.h"
#include "bantam/duration.h"

namespace bantam {
namespace {

constexpr const char* kPython = "/usr/bin/python3";

struct Case {
  std::vector<std::pair<std::string, std::string>> extra;  // bantime.<opt> = value
  uint64_t seed = 1;
};

BanTimeIncrementOptions ToOptions(const Case& c) {
  BanTimeIncrementOptions o;
  o.increment = true;
  for (const auto& [k, v] : c.extra) {
    if (k == "factor") o.factor = v;
    if (k == "formula") o.formula = v;
    if (k == "multipliers") o.multipliers = v;
    if (k == "maxtime") o.maxtime = *ParseDuration(v);
    if (k == "rndtime") o.rndtime = *ParseDuration(v);
  }
  return o;
}

// Options with increment on and the given settings.
BanTimeIncrementOptions Opts(std::string formula = "", std::string factor = "1",
                             std::string multipliers = "") {
  BanTimeIncrementOptions o;
  o.increment = true;
  o.formula = std::move(formula);
  o.factor = std::move(factor);
  o.multipliers = std::move(multipliers);
  return o;
}

const std::vector<double> kBanTimes = {600, 1, 3600, 86400};
constexpr int kMaxCount = 24;

// fail2ban's own Jail.setBanTimeExtra + ObserverThread.calcBanTime, run with
// random.seed(seed) per case; one line of repr()s (or "ERR msg") per case.
constexpr const char* kOracle = R"PY(
import random, sys, logging
logging.disable(logging.CRITICAL)
from fail2ban.server.jail import Jail
from fail2ban.server.observer import ObserverThread
class J: pass
class O: BanTimeIncr = ObserverThread.BanTimeIncr
bantimes = [600, 1, 3600, 86400]
for line in open(sys.argv[1]):
    parts = line.rstrip('\n').split('\t')
    seed = int(parts[0])
    j = J(); j._banExtra = {}; j.database = None
    j.getBanTimeExtra = lambda opt=None, j=j: Jail.getBanTimeExtra(j, opt)
    out = []
    try:
        Jail.setBanTimeExtra(j, 'increment', 'true')
        for kv in parts[1:]:
            k, v = kv.split('=', 1)
            Jail.setBanTimeExtra(j, k, bytes.fromhex(v).decode())
        random.seed(seed)
        for bt in bantimes:
            for c in range(25):
                try:
                    out.append(repr(float(ObserverThread.calcBanTime(O(), j, bt, c))))
                except Exception as e:
                    out.append('E')
        print(' '.join(out))
    except Exception as e:
        print('ERR', e)
)PY";

std::string Hex(const std::string& s) {
  std::string out;
  char b[3];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

bool HaveFail2ban() {
  return std::system(
             (std::string(kPython) + " -c 'import fail2ban.server.jail' 2>/dev/null").c_str()) == 0;
}

TEST(BanTimeTest, SequencesMatchFail2bansCalcBanTime) {
  BANTAM_REQUIRE_TOOL(HaveFail2ban(), std::string(kPython) + " -c 'import fail2ban.server.jail'",
                      "fail2ban");
  const std::vector<Case> cases = {
      {{}},
      {{{"factor", "2"}}},
      {{{"factor", "1.5"}}},
      {{{"factor", "0.5"}, {"maxtime", "1w"}}},
      {{{"formula", "ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)"}}},
      {{{"formula", "ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)"},
        {"factor", "2"},
        {"maxtime", "5w"}}},
      {{{"multipliers", "1 2 4 8 16 32 64"}}},
      {{{"multipliers", "1 5 30 60 300 720 1440 2880"}, {"factor", "2"}}},
      {{{"multipliers", "3"}, {"factor", "1.25"}, {"maxtime", "2d"}}},
      {{{"maxtime", "1w"}}},
      {{{"rndtime", "30m"}}, 7},
      {{{"rndtime", "1h"}, {"maxtime", "5w"}, {"factor", "3"}}, 424242424242ull},
      {{{"multipliers", "1 2 4"}, {"rndtime", "10m"}}, 99},
      {{{"formula", "ban.Time + ban.Count * 3600 if ban.Count < 3 else ban.Time * 10"}}},
      {{{"formula", "min(ban.Time * 2 ** ban.Count, 86400) // 7"}}},
      {{{"formula", "ban.Time * (ban.Count + 1) / 3"}}},
      {{{"formula", "max(ban.Time, 600 * banFactor ** ban.Count % 100000)"}, {"factor", "3"}}},
      {{{"formula", "(ban.Count > 2 and ban.Time * 4 or ban.Time) - -ban.Count"}}},
      {{{"formula", "ban.Time * round(math.log(ban.Count + 1) * 10) + abs(-5) + int(2.9)"}}},
      {{{"formula", "ban.Time << ban.Count >> 1"}}},
      {{{"formula", "ban.Time * (2 ** -ban.Count) + math.sqrt(ban.Count) * 1e3"}}},
      {{{"formula", "ban.Time * 1_0 if not ban.Count % 2 else ban.Time * 0x10"}}},
      {{{"formula", "1 < ban.Count <= 5 and ban.Time * 100 or ban.Time"}}},
  };
  testing::TempTree dir;
  {
    std::ofstream in(dir.Path("cases.txt"));
    for (const Case& c : cases) {
      in << c.seed;
      for (const auto& [k, v] : c.extra) in << '\t' << k << '=' << Hex(v);
      in << '\n';
    }
  }
  std::ofstream(dir.Path("oracle.py")) << kOracle;
  const std::string cmd = std::string(kPython) + " '" + dir.Path("oracle.py") + "' '" +
                          dir.Path("cases.txt") + "' 2>'" + dir.Path("err.txt") + "'";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ASSERT_EQ(::pclose(pipe), 0) << "oracle failed";
  std::istringstream lines(out);
  int compared = 0;
  for (const Case& c : cases) {
    std::string line;
    ASSERT_TRUE(std::getline(lines, line));
    std::string label;
    for (const auto& [k, v] : c.extra) label += k + "=" + v + "; ";
    SCOPED_TRACE(label);
    ASSERT_NE(line.substr(0, 3), "ERR") << line;
    PythonRandom random(c.seed);
    Result<BanTimeIncrement> inc = BanTimeIncrement::Create(ToOptions(c), &random);
    ASSERT_TRUE(inc.ok()) << inc.status().message();
    std::istringstream words(line);
    for (double bt : kBanTimes) {
      for (int count = 0; count <= kMaxCount; ++count) {
        std::string w;
        ASSERT_TRUE(words >> w);
        Result<double> got = inc->Calc(bt, count);
        if (w == "E") {
          EXPECT_FALSE(got.ok()) << "bantime " << bt << " count " << count;
          continue;
        }
        ASSERT_TRUE(got.ok()) << got.status().message();
        EXPECT_EQ(*got, std::strtod(w.c_str(), nullptr)) << "bantime " << bt << " count " << count;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 2000);
}

TEST(BanTimeTest, PythonRandomMatchesCPython) {
  // random.seed(7); random.random(), and a seed above 32 bits.
  PythonRandom r(7);
  EXPECT_EQ(r.Next(), 0.32383276483316237);
  PythonRandom big(424242424242ull);
  const double v = big.Next();
  EXPECT_GE(v, 0.0);
  EXPECT_LT(v, 1.0);
}

TEST(BanTimeTest, DefaultFormulaDoublesUpToTwentyThenStops) {
  Result<BanTimeIncrement> inc = BanTimeIncrement::Create(Opts());
  ASSERT_TRUE(inc.ok());
  EXPECT_EQ(*inc->Calc(600, 1), 1200);
  EXPECT_EQ(*inc->Calc(600, 3), 4800);
  EXPECT_EQ(*inc->Calc(600, 20), 600.0 * (1 << 20));
  EXPECT_EQ(*inc->Calc(600, 30), 600.0 * (1 << 20));
}

TEST(BanTimeTest, MaxtimeCapsAndRndtimeStaysInBounds) {
  struct Fixed : Random {
    double v;
    double Next() override { return v; }
  } fixed;
  BanTimeIncrementOptions o = Opts();
  o.maxtime = 86400;
  o.rndtime = 100;
  Result<BanTimeIncrement> inc = BanTimeIncrement::Create(o, &fixed);
  ASSERT_TRUE(inc.ok());
  fixed.v = 0;
  EXPECT_EQ(*inc->Calc(600, 10), 86400);
  fixed.v = 0.999999;
  EXPECT_NEAR(*inc->Calc(600, 10), 86499.9999, 1e-6);
  PythonRandom real(3);
  Result<BanTimeIncrement> inc2 = BanTimeIncrement::Create(o, &real);
  for (int i = 0; i < 1000; ++i) {
    const double v = *inc2->Calc(600, 2);
    EXPECT_GE(v, 2400);
    EXPECT_LT(v, 2500);
  }
}

TEST(BanTimeTest, MultipliersUseTheLastForHighCounts) {
  Result<BanTimeIncrement> inc = BanTimeIncrement::Create(Opts("", "2", "1 5 30"));
  ASSERT_TRUE(inc.ok());
  EXPECT_EQ(*inc->Calc(60, 1), 600);
  EXPECT_EQ(*inc->Calc(60, 2), 3600);
  EXPECT_EQ(*inc->Calc(60, 9), 3600);
  // Multipliers may shorten a ban; the formula never does.
  EXPECT_EQ(*inc->Calc(60, 0), 120);
}

TEST(BanTimeTest, ConfigErrorsNameTheProblem) {
  auto err = [](BanTimeIncrementOptions o) {
    Result<BanTimeIncrement> r = BanTimeIncrement::Create(o);
    return r.ok() ? std::string("ok") : r.status().message();
  };
  EXPECT_EQ(err(Opts("ban.Time * foo")),
            "bantime.formula: unsupported name 'foo' in 'ban.Time * foo'");
  EXPECT_EQ(err(Opts("__import__('os').system('x')")),
            "bantime.formula: unsupported function '__import__' in '__import__('os').system('x')'");
  EXPECT_EQ(err(Opts("ban.Time * (2")), "bantime.formula: expected ')' in 'ban.Time * (2'");
  EXPECT_EQ(err(Opts("ban.Time * 1.5 << 2")),
            "bantime.formula: unsupported operand type(s) for <<: 'float' and 'int'");
  EXPECT_EQ(err(Opts("ban.Time if ban.Count")),
            "bantime.formula: expected 'else' in 'ban.Time if ban.Count'");
  EXPECT_EQ(err(Opts("", "ban.Time")), "bantime.factor: unsupported name 'ban.Time' in 'ban.Time'");
  EXPECT_EQ(err(Opts("", "1", "1  2")),
            "bantime.multipliers: invalid literal for int() with base 10: ''");
  EXPECT_EQ(err(Opts("", "1", "1 2.5")),
            "bantime.multipliers: invalid literal for int() with base 10: '2.5'");
  EXPECT_EQ(err(Opts("max(ban.Time)")),
            "bantime.formula: max() takes 2 or more arguments, got 1 in 'max(ban.Time)'");
  // A value error is only an error for the counts that hit it.
  Result<BanTimeIncrement> div = BanTimeIncrement::Create(Opts("ban.Time / (ban.Count - 1)"));
  ASSERT_TRUE(div.ok());
  EXPECT_EQ(div->Calc(600, 1).status().message(), "division by zero");
  EXPECT_EQ(*div->Calc(600, 3), 600);  // max(600, 300)
}

struct FakeHistory : BanHistory {
  std::optional<BanRecord> record;
  bool asked_overall = false;
  std::optional<BanRecord> LastBan(const IpAddr&, std::string_view, bool overalljails) override {
    asked_overall = overalljails;
    return record;
  }
};

TEST(BanTimeTest, IncrementForFollowsIncrBanTime) {
  BanTimeIncrementOptions o = Opts();
  o.overalljails = true;
  Result<BanTimeIncrement> inc = BanTimeIncrement::Create(o);
  ASSERT_TRUE(inc.ok());
  FakeHistory history;
  Ticket t;
  t.id = IpAddr::FromText("192.0.2.1");
  t.time = 5000;
  // Never banned: unchanged.
  EXPECT_EQ(inc->IncrementFor(600, &t, history, "sshd"), 600);
  EXPECT_FALSE(t.ban_time.has_value());
  EXPECT_TRUE(history.asked_overall);
  // Banned twice before: 600 * 4, count raised past the record.
  history.record = BanRecord{2, 4000, 1200};
  EXPECT_EQ(inc->IncrementFor(600, &t, history, "sshd"), 2400);
  EXPECT_EQ(*t.ban_time, 2400);
  EXPECT_EQ(t.ban_count, 3);
  EXPECT_FALSE(t.restored);
  // A line not newer than the last ban was read before: restored.
  Ticket old = t;
  old.time = 4000;
  old.ban_count = 0;
  inc->IncrementFor(600, &old, history, "sshd");
  EXPECT_TRUE(old.restored);
  // Permanent and disabled stay as they are.
  EXPECT_EQ(inc->IncrementFor(-1, &t, history, "sshd"), -1);
  Result<BanTimeIncrement> off = BanTimeIncrement::Create(BanTimeIncrementOptions());
  EXPECT_EQ(off->IncrementFor(600, &t, history, "sshd"), 600);
}

TEST(BanTimeTest, ObservedRetryWeighsKnownBadIds) {
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(0, 5), 1);
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(1, 5), 2);
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(2, 5), 3);
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(3, 5), 5);
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(30, 5), 5);
  EXPECT_EQ(BanTimeIncrement::ObservedRetry(30, 1 << 30), (1 << 19) + 1);
}

}  // namespace
}  // namespace bantam
