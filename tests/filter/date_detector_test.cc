#include "bantam/date_detector.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bantam/strptime.h"
#include "../testing/oracle_io.h"
#include "../testing/require.h"

namespace bantam {
namespace {

// fail2ban's test clock zone, set in both processes.
constexpr const char* kTestTz = "CET-01CEST-02,M3.5.0,M10.5.0";
// 2005-08-14 12:00:00 CEST, fail2ban's test "now".
constexpr double kNow = 1124013600.0;

// Sets TZ for the lifetime of the object and restores it afterwards.
class ScopedTz {
 public:
  explicit ScopedTz(const std::string& tz) {
    if (const char* old = ::getenv("TZ")) old_ = old;
    ::setenv("TZ", tz.c_str(), 1);
    ::tzset();
  }
  ~ScopedTz() {
    if (old_) {
      ::setenv("TZ", old_->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }

 private:
  std::optional<std::string> old_;
};

DateDetector MakeDetector(const std::string& datepattern = "", const std::string& tz = "") {
  Result<DateDetector> dd = DateDetector::Create({datepattern, tz});
  EXPECT_TRUE(dd.ok()) << dd.status().message();
  if (!dd.ok()) std::abort();
  return std::move(*dd);
}

// "text@time" for the date found in `line`, "-" for none.
std::string Find(DateDetector& dd, std::string_view line, double now = kNow) {
  std::optional<DateMatch> m = dd.Match(line, now);
  if (!m) return "-";
  std::string out(line.substr(m->begin, m->end - m->begin));
  char buf[64];
  if (m->time) {
    std::snprintf(buf, sizeof buf, "@%.17g", *m->time);
  } else {
    std::snprintf(buf, sizeof buf, "@%s", m->raised ? "raised" : "none");
  }
  return out + buf;
}

// ---------------------------------------------------------------------------
// Unit tests that pin behaviour without the oracle.

TEST(StrptimeTest, TimeZones) {
  EXPECT_EQ(*ParseTimeZone("UTC"), 0);
  EXPECT_EQ(*ParseTimeZone("Z"), 0);
  EXPECT_EQ(*ParseTimeZone("+0200"), 120);
  EXPECT_EQ(*ParseTimeZone("-05:30"), -330);
  EXPECT_EQ(*ParseTimeZone("UTC+0200"), 120);
  EXPECT_EQ(*ParseTimeZone("CET+01"), 120);
  EXPECT_EQ(*ParseTimeZone("NPT"), 345);
  EXPECT_EQ(ParseTimeZone("Europe/Paris").status().message(),
            "Unknown or unsupported time zone: 'Europe/Paris'");
  EXPECT_FALSE(ParseTimeZone("UTC+2").ok());
  EXPECT_FALSE(ParseTimeZone("ABC").ok());  // fail2ban: KeyError
}

TEST(DateDetectorTest, DefaultTemplatesNamedAsFail2banRegexPrintsThem) {
  ScopedTz tz(kTestTz);
  DateDetector dd = MakeDetector();
  const std::vector<DateTemplateStats> t = dd.templates();
  ASSERT_EQ(t.size(), 31u);
  EXPECT_EQ(t[0].name,
            "{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]"
            "Microseconds)?(?:\\s*Zone offset)?");
  EXPECT_EQ(t[7].name, "{^LN-BEG}Epoch");
  EXPECT_EQ(t[13].name, "{^LN-BEG}TAI64N");
  EXPECT_EQ(t[21].name, "Epoch");
  EXPECT_EQ(t[30].name, "TAI64N");
}

TEST(DateDetectorTest, SyslogAndIso) {
  ScopedTz tz(kTestTz);
  DateDetector dd = MakeDetector();
  EXPECT_EQ(Find(dd, "Jan 23 21:59:59 host sshd[1]: x"), "Jan 23 21:59:59@1106513999");
  EXPECT_EQ(Find(dd, "2005-01-23 21:59:59 x"), "2005-01-23 21:59:59@1106513999");
  EXPECT_EQ(Find(dd, "no date here"), "-");
}

// Where fail2ban raises something other than ValueError, the line is
// dropped; Match() says so instead of guessing a time.
TEST(DateDetectorTest, RaisedWhereFail2banRaises) {
  ScopedTz tz(kTestTz);
  DateDetector none = MakeDetector("{NONE}");
  EXPECT_EQ(Find(none, ""), "@raised");  // line[0] of an empty line: IndexError
  EXPECT_EQ(Find(none, "x"), "@1123970400");  // empty date: today, midnight
  DateDetector zone = MakeDetector("%d.%m.%Y %H:%M:%S %Z");
  EXPECT_EQ(Find(zone, "23.01.2005 21:59:59 ABC"), "23.01.2005 21:59:59 ABC@raised");  // KeyError
  EXPECT_EQ(Find(zone, "23.01.2005 21:59:59 CET"), "23.01.2005 21:59:59 CET@1106513999");
  DateDetector month = MakeDetector("%m %H:%M");
  EXPECT_EQ(Find(month, "12 21:59"), "12 21:59@raised");  // no day: TypeError
  DateDetector iso = MakeDetector("%Y-%m-%d %H:%M:%S");
  EXPECT_EQ(Find(iso, "2005-02-30 21:59:59"), "2005-02-30 21:59:59@none");  // ValueError
}

TEST(DateDetectorTest, Errors) {
  EXPECT_EQ(DateDetector::Create({"%q %Y", ""}).status().message(),
            "Failed to set datepattern '%q %Y' (may be an invalid format or unescaped percent "
            "char): unsupported format character 'q' (0x71) at index 1");
  // After a directive Python's %-formatting has no argument left.
  EXPECT_EQ(DateDetector::Create({"%Y-%q", ""}).status().message(),
            "Failed to set datepattern '%Y-%q' (may be an invalid format or unescaped percent "
            "char): not enough arguments for format string");
  EXPECT_EQ(DateDetector::Create({"%H:%M:%", ""}).status().message(),
            "Failed to set datepattern '%H:%M:%' (may be an invalid format or unescaped percent "
            "char): incomplete format");
  EXPECT_EQ(DateDetector::Create({"EPOCH\nepoch", ""}).status().message(),
            "There is already a template with name Epoch");
  EXPECT_EQ(DateDetector::Create({"", "Mars"}).status().message(),
            "Unknown or unsupported time zone: 'Mars'");
  EXPECT_FALSE(DateDetector::Create({"%H:%M:%S(", ""}).ok());
}

TEST(DateDetectorTest, JunkDoesNotCrash) {
  ScopedTz tz(kTestTz);
  for (const std::string& pattern : {std::string(), std::string("{NONE}"), std::string("EPOCH"),
                                     std::string("{^LN-BEG}%ExY%Exm%Exd")}) {
    DateDetector dd = MakeDetector(pattern);
    const std::string nul("Jan 23 21:59:59\0 x\0", 19);
    dd.Match(nul, kNow);
    dd.Match("\xff\xfe Jan 23 21:59:59 \xc3", kNow);
    dd.Match("2005-01-23 21:59:59 \xe2\x82", kNow);
    dd.Match("", kNow);
    std::string big(4 << 20, 'a');
    big += " Jan 23 21:59:59";
    dd.Match(big, kNow);
    std::string digits(4 << 20, '1');
    dd.Match(digits, kNow);
    std::string mixed;
    for (int i = 0; i < (1 << 18); ++i) mixed += "12:3\xc3\xa9 ";
    dd.Match(mixed, kNow);
  }
}

// ---------------------------------------------------------------------------
// Differential tests against fail2ban's own DateDetector, run at test time
// with /usr/bin/python3 (fail2ban's interpreter). When that Python cannot
// import fail2ban they fail under CI and are skipped elsewhere, naming the
// package (BANTAM_REQUIRE).

constexpr std::string_view kOracle = R"PY(
import os, re, sys, time
from fail2ban.server.datedetector import DateDetector
from fail2ban.server.mytime import MyTime


def hx(s):
    return s.encode('utf-8').hex()


def unhx(h):
    return bytes.fromhex(h).decode('utf-8')


dd = None
for raw in open(sys.argv[1], encoding='ascii'):
    f = raw.rstrip('\n').split('\t')
    if f[0] == 'D':
        os.environ['TZ'] = unhx(f[1])
        time.tzset()
        dd = DateDetector()
        try:
            if f[3] != '-':
                dd.default_tz = unhx(f[3])
            # Filter.setDatePattern's splitting.
            for p in filter(bool, map(str.strip, re.split('\n+', unhx(f[2])))):
                dd.appendTemplate(p)
            if not dd.templates:
                dd.addDefaultTemplate()
            # Template objects are cached process-wide; start each detector
            # with clean regex hit counters, as a fresh fail2ban-regex would.
            for t in dd.templates:
                t.template.hits = 0
                t.template.regex  # compile errors surface at first use
            for t in dd.templates:
                t.template._compileRegex()
            print('ok')
        except Exception as e:
            print('err\t' + hx(str(e)))
            dd = None
    elif dd is None:
        print('skip')
    elif f[0] == 'L':
        MyTime.setTime(float(f[1]))
        line = unhx(f[2])
        try:
            m, t = dd.matchTime(line)
        except Exception as e:
            print('raise')
            continue
        if not m:
            print('none')
            continue
        s, e = m.span(1)
        bs = len(line[:s].encode('utf-8')) if s >= 0 else 0
        be = len(line[:e].encode('utf-8')) if e >= 0 else 0
        try:
            r = dd.getTime(line, (m, t))
            tm = repr(float(r[0])) if r else 'none'
        except Exception as ex:
            tm = 'raised'
        idx = [i for i, x in enumerate(dd.templates) if x.template is t][0]
        print('match\t%d\t%d\t%s\t%s\t%d' % (bs, be, tm, hx(t.name), idx))
    elif f[0] == 'T':
        print('T\t' + ','.join('%s=%d' % (hx(t.name), t.hits) for t in dd.templates))
)PY";

// fail2ban names %Exk/%Exl by Python's set order (hash seed dependent).
std::string NormalizeName(std::string name) {
  for (auto [from, to] : {std::pair{"%Exk", "Ex%k"}, std::pair{"%Exl", "Ex%l"}}) {
    for (size_t at; (at = name.find(from)) != std::string::npos;) name.replace(at, 4, to);
  }
  return name;
}

constexpr const char* kPython = "/usr/bin/python3";

using testing::HexDecode;
using testing::HexEncode;
using testing::SplitOn;
using testing::TempTree;

// Runs `command`; stdout, or nullopt with stderr in *err.
std::optional<std::string> Run(const std::string& command, const TempTree& dir, std::string* err) {
  return testing::RunShell(command, dir, err);
}

// One detector and the lines it sees, in order.
struct Session {
  std::string datepattern;
  std::string logtimezone;
  std::string tz = kTestTz;
  std::vector<std::pair<double, std::string>> lines;  // (now, line)
  bool expect_error = false;
  bool dump_templates = true;
};

struct Tally {
  int sessions = 0, lines = 0, matched = 0, agreed = 0;
};

// Runs every session through fail2ban and through DateDetector and expects
// the same date span, time, template and final template order with hits.
Tally ExpectSameAsFail2ban(const std::vector<Session>& sessions) {
  Tally tally;
  TempTree dir;
  std::string err;
  if (!Run(std::string(kPython) + " -c 'import fail2ban.server.datedetector'", dir, &err)) {
    ADD_FAILURE() << "internal: skip check should have caught this";
    return tally;
  }
  const std::filesystem::path script = std::filesystem::path(dir.Path("oracle.py"));
  const std::filesystem::path input = std::filesystem::path(dir.Path("cases.txt"));
  std::ofstream(script) << kOracle;
  {
    std::ofstream out(input);
    char now[64];
    for (const Session& s : sessions) {
      out << "D\t" << HexEncode(s.tz) << '\t' << HexEncode(s.datepattern) << '\t'
          << (s.logtimezone.empty() ? "-" : HexEncode(s.logtimezone)) << '\n';
      for (const auto& [t, line] : s.lines) {
        std::snprintf(now, sizeof now, "%.17g", t);
        out << "L\t" << now << '\t' << HexEncode(line) << '\n';
      }
      if (s.dump_templates) out << "T\n";
    }
  }
  std::optional<std::string> out =
      Run("LC_ALL=C.UTF-8 PYTHONHASHSEED=0 " + std::string(kPython) + " '" + script.string() +
              "' '" + input.string() + "'",
          dir, &err);
  if (!out) {
    ADD_FAILURE() << "oracle failed: " << err;
    return tally;
  }
  std::vector<std::string> answers = SplitOn(*out, '\n');
  size_t k = 0;
  auto next = [&]() -> std::string { return k < answers.size() ? answers[k++] : "<missing>"; };
  for (const Session& s : sessions) {
    ++tally.sessions;
    SCOPED_TRACE("datepattern '" + s.datepattern + "' logtimezone '" + s.logtimezone + "' TZ " + s.tz);
    ScopedTz tz(s.tz);
    Result<DateDetector> dd = DateDetector::Create({s.datepattern, s.logtimezone});
    const std::vector<std::string> head = SplitOn(next(), '\t');
    if (head[0] == "err") {
      EXPECT_FALSE(dd.ok()) << "fail2ban refuses it: " << HexDecode(head[1]);
      if (!dd.ok() && s.expect_error) {
        std::printf("[          ] refused alike: %s | fail2ban: %s\n", dd.status().message().c_str(),
                    HexDecode(head[1]).c_str());
      }
      for (size_t n = 0; n < s.lines.size(); ++n) next();
      if (s.dump_templates) next();
      continue;
    }
    EXPECT_FALSE(s.expect_error) << "fail2ban accepts it";
    if (!dd.ok()) {
      ADD_FAILURE() << dd.status().message();
      for (size_t n = 0; n < s.lines.size() + (s.dump_templates ? 1 : 0); ++n) next();
      continue;
    }
    for (const auto& [now, line] : s.lines) {
      ++tally.lines;
      SCOPED_TRACE("line '" + line.substr(0, 200) + "' now " + std::to_string(now));
      const std::vector<std::string> py = SplitOn(next(), '\t');
      std::optional<DateMatch> m = dd->Match(line, now);
      std::string ours;
      if (!m) {
        ours = "none";
      } else if (m->raised && m->template_index < 0) {
        ours = "raise";
      } else {
        std::string tm = "none";
        if (m->raised) {
          tm = "raised";
        } else if (m->time) {
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.17g", *m->time);
          tm = buf;
        }
        ours = "match\t" + std::to_string(m->begin) + "\t" + std::to_string(m->end) + "\t" + tm +
               "\t" + dd->templates()[m->template_index].name + "\t" +
               std::to_string(m->template_index);
      }
      std::string theirs = py[0];
      if (py[0] == "match" && py.size() == 6) {
        std::string tm = py[3];
        if (tm != "none" && tm != "raised") {
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.17g", std::strtod(tm.c_str(), nullptr));
          tm = buf;
        }
        theirs = "match\t" + py[1] + "\t" + py[2] + "\t" + tm + "\t" + NormalizeName(HexDecode(py[4])) +
                 "\t" + py[5];
      }
      if (theirs != "none") ++tally.matched;
      EXPECT_EQ(ours, theirs);
      if (ours == theirs) ++tally.agreed;
    }
    if (s.dump_templates) {
      const std::vector<std::string> py = SplitOn(next(), '\t');
      std::string theirs, ours;
      if (py.size() == 2) {
        for (const std::string& kv : SplitOn(py[1], ',')) {
          const size_t eq = kv.rfind('=');
          theirs += NormalizeName(HexDecode(kv.substr(0, eq))) + "=" + kv.substr(eq + 1) + "\n";
        }
      }
      for (const DateTemplateStats& t : dd->templates()) {
        ours += t.name + "=" + std::to_string(t.hits) + "\n";
      }
      EXPECT_EQ(ours, theirs) << "template order and hits differ";
    }
  }
  return tally;
}

// The differential date tests need fail2ban 1.0.2 for kPython.
class DateDetectorPythonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TempTree dir;
    const std::string probe = std::string(kPython) + " -c 'import fail2ban.server.datedetector'";
    std::string err;
    const bool found = testing::RunShell(probe, dir, &err).has_value();
    BANTAM_REQUIRE(found, testing::NeedsTool(probe, "fail2ban", err));
  }
};

void Report(const char* what, const Tally& t) {
  std::printf("[          ] %s: %d sessions, %d lines, %d dated by fail2ban, %d agree\n", what,
              t.sessions, t.lines, t.matched, t.agreed);
}

Session Lines(std::string datepattern, std::vector<std::string> lines, double now = kNow) {
  Session s;
  s.datepattern = std::move(datepattern);
  for (std::string& l : lines) s.lines.emplace_back(now, std::move(l));
  return s;
}

// Every default template's format, one fresh detector per line (so each
// line meets the default order), then all of them through one detector.
TEST_F(DateDetectorPythonTest, DefaultTemplates) {
  const std::vector<std::string> lines = {
      "Jan 23 21:59:59 host sshd[123]: Failed password",
      "Sun Jan 23 21:59:59 2005 host x",
      "Sun Jan 23 21:59:59.011 2005 host x",
      "Jan 23 21:59:59.123456 host",
      "Jan  3 01:02:03 host x",
      "Jan 3 1:02:03 host x",
      "Sun Jan 23 2005 21:59:59.011 x",
      "Jan 23 2005 21:59:59 x",
      "jan 23 21:59:59 lower-case month",
      "JAN 23 21:59:59 upper-case month",
      "Aug 14 11:59:59 an hour ago",
      "Aug 14 12:00:01 a second in the future",
      "Aug 15 11:59:59 in a day",
      "Aug 15 12:00:01 more than a day ahead: last year",
      "Dec 31 23:59:59 far ahead",
      "Feb 29 12:00:00 leap day in a non-leap year",
      "2005-01-23T21:59:59.981746 x",
      "2005-01-23 21:59:59 x",
      "2005-01-23  8:59:59 x",
      "2005/01/23 21:59:59 x",
      "2006.12.21 06:43:20 syslog-ng",
      "2005-01-23 21:59:59,123 fail2ban.log style",
      "2005-01-23T21:59:59Z x",
      "2005-01-23T21:59:59+0200 x",
      "2005-01-23T21:59:59 +02:00 x",
      "2005-01-23T21:59:59-0530 x",
      "2005-01-23T21:59:59 UTC x",
      "2005-01-23T21:59:59 GMT x",
      "2005-13-23 21:59:59 bad month",
      "2005-02-30 21:59:59 bad day",
      "2005-01-23 24:59:59 bad hour",
      "2005-01-23 21:59:60 leap second",
      "1999-01-23 21:59:59 last century",
      "2005-01-23T21:59:59.123456789 too many digits",
      "23/01/2005 21:59:59 x11vnc",
      "23/01/05 21:59:59 short year",
      "17-07-2008 17:23:25 x",
      "[31/Oct/2006:09:22:55 -0000] apache",
      "[23/Jan/2005:21:59:59 +0100] apache",
      "192.0.2.1 - - [23/Jan/2005:21:59:59 +0100] \"GET / HTTP/1.1\" 404",
      "26-Jul-2007 15:20:52 x",
      "26-Jul-2007 15:20:52.252 named",
      "26-Jul-2007 15:20:52 +0200 roundcube",
      "05/20/2008:01:57:39 cpanel",
      "01-27-2012 16:22:44.252 x",
      "01-27-2012 16:22:44 x",
      "1106513999 epoch",
      "1106513999.123 epoch",
      "1106513999.123456 epoch",
      "[1106513999] nsd",
      "type=USER_AUTH msg=audit(1106513999.123:6868): selinux",
      "foo 1106513999 epoch in the middle",
      "21:59:59 only a time",
      "  21:59:59 only a time after spaces",
      "<09/16/08@05:03:30> x",
      "050123 21:59:59 mysql",
      "130322 11:46:11 mysql",
      "050123  1:59:59 mysql",
      "Jan 23, 2005 9:59:59 PM tomcat",
      "Jan 23, 2005 12:59:59 AM tomcat",
      "Jan 23, 2005 12:59:59 PM tomcat",
      "Apr-27-13 02:33:06 assp",
      "20050123T215959 x",
      "20050123 215959 x",
      "20050123  85959 x",
      "20050123T215959.123+0100 x",
      "PDT Apr 16 21:05:29 monit",
      "CET Jan 23 21:59:59 zone name",
      "XYZ Jan 23 21:59:59 unknown zone name",
      "+00:00 Jan 23 21:59:59.011 2005 zone offset",
      "-0500 Sun Jan 23 21:59:59 2005",
      "@4000000041f4104f00000000 tai64n",
      "x @4000000041f4104f00000000 tai64n inside",
      "[2012-02-13 17:44:26] asterisk",
      "2005-01-23 21:59:59 2006-01-23 21:59:59 two dates",
      "host 2005-01-23 21:59:59 date after a word",
      "message: Jan 23 21:59:59 inside",
      "prefix Jan 23 21:59:59",
      "Ünïcödé prefix 2005-01-23 21:59:59",
      "\xc3\xa9\xc3\xa9 Jan 23 21:59:59 multibyte before",
      "12:34:56 time then 2005-01-23 21:59:59",
      "Jan 23 21:59:59",
      "2005-01-23",
      "",
      "x",
  };
  std::vector<Session> sessions;
  for (const std::string& l : lines) sessions.push_back(Lines("", {l}));
  sessions.push_back(Lines("", lines));
  // Reordering over a long sequence: many syslog lines, then a switch.
  std::vector<std::string> seq;
  for (int i = 0; i < 12; ++i) seq.push_back("Jan 23 21:59:" + std::to_string(10 + i) + " host x");
  for (int i = 0; i < 6; ++i) seq.push_back("2005-01-23 22:00:0" + std::to_string(i) + " host x");
  for (int i = 0; i < 6; ++i) seq.push_back("[23/Jan/2005:21:59:5" + std::to_string(i) + " +0100] x");
  for (int i = 0; i < 4; ++i) seq.push_back("host Jan 23 21:59:1" + std::to_string(i) + " x");
  for (int i = 0; i < 4; ++i) seq.push_back("Jan 23 21:59:1" + std::to_string(i) + " 2005-01-23 22:00:00");
  sessions.push_back(Lines("", seq));
  Report("default templates", ExpectSameAsFail2ban(sessions));
}

// Year inference (and "today") around the turn of the year, with several
// "now" values, in local time and with zones.
TEST_F(DateDetectorPythonTest, YearInference) {
  const std::vector<double> nows = {
      1104535800.0,   // 2005-01-01 00:30 CET
      1104532200.0,   // 2004-12-31 23:30 CET
      1106478000.0,   // 2005-01-23 12:00 CET
      1124013600.0,   // 2005-08-14 12:00 CEST
      1709197200.0,   // 2024-02-29 10:00 CET
      1743298200.0,   // 2025-03-30 03:30 CEST (just after the switch)
      1761442200.0,   // 2025-10-26 02:30 CET
      1104535800.25,  // with a fraction
  };
  const std::vector<std::string> lines = {
      "Dec 31 23:59:59 x", "Jan  1 00:00:01 x", "Jan  1 00:45:00 x", "Jan  2 00:10:00 x",
      "Dec 30 23:00:00 x", "Feb 29 10:00:00 x", "Mar 30 02:30:00 x", "Oct 26 02:30:00 x",
      "Jan 23 12:00:00 x", "Jan 24 12:00:01 x", "Aug 14 12:00:00 x", "Aug 15 13:00:00 x",
      "00:10:00 only time", "23:59:59 only time", "12:00:00 only time",
      "Dec 31 23:59:59 +0200 Jan",
  };
  std::vector<Session> sessions;
  for (double now : nows) {
    for (const std::string& l : lines) {
      Session s = Lines("", {l}, now);
      sessions.push_back(s);
      s.datepattern = "^%b %d %H:%M:%S";
      sessions.push_back(s);
      s.datepattern = "^%b %d %H:%M:%S";
      s.logtimezone = "UTC";
      sessions.push_back(s);
      s.datepattern = "{^LN-BEG}%H:%M:%S";
      s.logtimezone = "+0500";
      sessions.push_back(s);
      s.datepattern = "(?:%b %d )?%H:%M:%S";
      s.logtimezone = "-0300";
      sessions.push_back(s);
    }
  }
  Report("year inference", ExpectSameAsFail2ban(sessions));
}

// Custom datepatterns: fail2ban's forms and extensions.
TEST_F(DateDetectorPythonTest, CustomPatterns) {
  const std::vector<std::string> lines = {
      "2005-01-23 21:59:59 x",
      "x 2005-01-23 21:59:59 y",
      "2005-01-23 21:59:59.123456 x",
      "[2005-01-23 21:59:59] x",
      "Jan 23 21:59:59 host",
      "host Jan 23 21:59:59",
      "Sunday January 23 2005 09:59:59 PM",
      "sun jan 23 21:59:59 2005",
      "20050123215959 x",
      "20050123 x",
      "050123215959",
      "1106513999 x",
      "1106513999.123 x",
      "x 1106513999 y",
      "1106513999123 ms",
      "1106513999123456 us",
      "1106513999123.456 ms",
      "@4000000041f4104f00000000 x",
      "2005-023 21:59:59 yearday",
      "2005 03 0 21:59:59 week and weekday",
      "2005 03 Sun 21:59:59 week and weekday",
      "23.01.2005 21:59:59 CET",
      "23.01.2005 21:59:59 XYZ",
      "23.01.2005 21:59:59 EST+01",
      "23.01.2005 21:59:59 +05:30",
      "21:59:59 x",
      "9:59:59 PM x",
      "12:00:00 AM x",
      "epoch=1106513999 x",
      "",
  };
  const std::vector<std::string> patterns = {
      "%Y-%m-%d %H:%M:%S",
      "^%Y-%m-%d %H:%M:%S",
      "{^LN-BEG}%Y-%m-%d %H:%M:%S",
      "%Y-%m-%d %H:%M:%S\\.%f",
      "\\[%Y-%m-%d %H:%M:%S\\]",
      "^%b %d %H:%M:%S",
      "%b %d %H:%M:%S",
      "%A %B %d %Y %I:%M:%S %p",
      "%a %b %d %H:%M:%S %Y",
      "%ExY%Exm%Exd%ExH%ExM%ExS",
      "%ExY%Exm%Exd",
      "%Exy%Exm%Exd%ExH%ExM%ExS",
      "{^LN-BEG}%ExY%Exm%Exd",
      "EPOCH",
      "epoch",
      "^EPOCH",
      "{^LN-BEG}EPOCH",
      "LEPOCH",
      "{^LN-BEG}LEPOCH",
      "epoch={EPOCH}",
      "epoch={LEPOCH}",
      "TAI64N",
      "{^LN-BEG}TAI64N",
      "%Y-%j %H:%M:%S",
      "%Y %U %w %H:%M:%S",
      "%Y %W %a %H:%M:%S",
      "%d.%m.%Y %H:%M:%S %Z",
      "%d.%m.%Y %H:%M:%S %ExZ",
      "%d.%m.%Y %H:%M:%S %z",
      "%d.%m.%Y %H:%M:%S %Exz",
      "%H:%M:%S",
      "{UNB}%H:%M:%S",
      "**%H:%M:%S**",
      "%I:%M:%S %p",
      "%I:%M:%S",
      "%l:%M:%S",
      "%Exk:%M:%S",
      "%m %H:%M",
      "%%Y %Y",
      "{NONE}",
      "{^LN-BEG}",
      "{DEFAULT}",
      "^\\[{DATE}\\]",
      "{DATE}",
      "%Y-%m-%d %H:%M:%S\nEPOCH",
      "EPOCH\n%b %d %H:%M:%S\n\n  %Y-%m-%d %H:%M:%S  ",
      "%H:%M:%S\n{DEFAULT}",
      "(?i)%b %d %H:%M:%S",
      "(?P<H>\\d\\d)h(?P<M>\\d\\d)",
      "%c",
      "%x %X",
  };
  std::vector<Session> sessions;
  for (const std::string& p : patterns) {
    sessions.push_back(Lines(p, lines));
    for (const std::string& l : lines) sessions.push_back(Lines(p, {l}));
  }
  for (const char* bad : {"%Y-%q", "%H:%M:%", "%Y %s", "%H:%M:%S(", "%(foo)s", "%q %Y", "%-5q", "%E %Y",
                                 "EPOCH\nEPOCH", "%Y %Exq", "%Y-%m-%d %H:%M:%S %-5q"}) {
    Session s = Lines(bad, {"2005-01-23 21:59:59"});
    s.expect_error = true;
    s.dump_templates = false;
    sessions.push_back(s);
  }
  Report("custom patterns", ExpectSameAsFail2ban(sessions));
}

// Time zones: TZ, logtimezone and zones in the line.
TEST_F(DateDetectorPythonTest, TimeZones) {
  const std::vector<std::string> lines = {
      "Jan 23 21:59:59 x",
      "Aug 14 11:00:00 x",
      "2005-01-23 21:59:59 x",
      "2005-01-23 21:59:59 +0200 x",
      "2005-01-23T21:59:59Z x",
      "2005-01-23T21:59:59-05:30 x",
      "2005-03-27 02:30:00 x",
      "2005-10-30 02:30:00 x",
      "[23/Jan/2005:21:59:59 -0800] x",
      "1106513999 x",
      "11:00:00 x",
  };
  std::vector<Session> sessions;
  for (const std::string& tz : {std::string(kTestTz), std::string("UTC"), std::string("EST5EDT,M3.2.0,M11.1.0"),
                                std::string("<+0530>-5:30")}) {
    for (const char* ltz : {"", "UTC", "UTC+0200", "+0200", "-05:30", "CET", "EST+01", "Z",
                                   "GMT-0100"}) {
      for (const std::string& p : {std::string(), std::string("%Y-%m-%d %H:%M:%S")}) {
        Session s = Lines(p, lines);
        s.tz = tz;
        s.logtimezone = ltz;
        sessions.push_back(s);
      }
    }
  }
  for (const char* bad : {"Mars", "UTC+2", "+2", "utc"}) {
    Session s = Lines("", {"Jan 23 21:59:59 x"});
    s.logtimezone = bad;
    s.expect_error = true;
    s.dump_templates = false;
    sessions.push_back(s);
  }
  Report("time zones", ExpectSameAsFail2ban(sessions));
}

// Sequences where the order of templates decides which date wins.
TEST_F(DateDetectorPythonTest, TemplateReordering) {
  std::vector<Session> sessions;
  sessions.push_back(Lines("", {
      "Jan 23 21:59:59 x 2005-01-23 21:59:58",
      "2005-01-23 21:59:57 x Jan 23 21:59:56",
      "x Jan 23 21:59:55 y 2005-01-23 21:59:54",
      "x 2005-01-23 21:59:53 y Jan 23 21:59:52",
      "xy 2005-01-23 21:59:53 y Jan 23 21:59:52",
      "Jan 23 21:59:59 x 2005-01-23 21:59:58",
      "Jan 23 21:59:59 x 2005-01-23 21:59:58",
      "1106513999 Jan 23 21:59:58",
      "[1106513999] Jan 23 21:59:58",
      "21:59:59 Jan 23 21:59:58",
      "Jan 23 21:59:58",
      "x Jan 23 21:59:58",
      "xx Jan 23 21:59:58",
      "é Jan 23 21:59:58",
      "éé Jan 23 21:59:58",
      "ab Jan 23 21:59:58",
  }));
  sessions.push_back(Lines("%H:%M:%S\n%Y-%m-%d %H:%M:%S\n%b %d %H:%M:%S", {
      "2005-01-23 21:59:59 x",
      "2005-01-23 21:59:59 x",
      "Jan 23 21:59:59 x",
      "x Jan 23 21:59:59 2005-01-23 21:59:58",
      "x 2005-01-23 21:59:58 Jan 23 21:59:59",
      "21:59:59",
      "2005-01-23 21:59:59 x",
      "2005-01-23 21:59:59 x",
      "2005-01-23 21:59:59 x",
  }));
  // Alternating formats over many lines.
  std::vector<std::string> alt;
  for (int i = 0; i < 40; ++i) {
    switch (i % 5) {
      case 0: alt.push_back("Jan 23 21:59:59 host x"); break;
      case 1: alt.push_back("2005-01-23 21:59:59 host x"); break;
      case 2: alt.push_back("host [23/Jan/2005:21:59:59 +0100] x"); break;
      case 3: alt.push_back("1106513999 host x"); break;
      default: alt.push_back("message with 2005-01-23 21:59:5" + std::to_string(i % 10) + " inside"); break;
    }
  }
  sessions.push_back(Lines("", alt));
  sessions.push_back(Lines("%Y-%m-%d %H:%M:%S\n%b %d %H:%M:%S\nEPOCH", alt));
  Report("template reordering", ExpectSameAsFail2ban(sessions));
}

// Lines and patterns where fail2ban's own code trips: exceptions other than
// ValueError, empty matches, non-ASCII digits and case folding.
TEST_F(DateDetectorPythonTest, EdgeCases) {
  std::vector<Session> sessions;
  const std::vector<std::string> lines = {
      "",
      "x",
      "Jan 23 21:59:59",
      "2005-01-23 21:59:59",
      "\u0662\u0660\u0660\u0665-01-23 21:59:59 arabic-indic year",
      "2005-01-23 \u0662\u0661:59:59 arabic-indic hour",
      "\u0661\u0661\u0660\u0666\u0665\u0661\u0663\u0669\u0669\u0669 epoch in arabic-indic",
      "\u017fep 23 21:59:59 long s",
      "Sep 23 21:59:59",
      "\u212a 12:00:00 kelvin",
      "23.01.2005 21:59:59 ABC",
      "23.01.2005 21:59:59 abc",
      "23.01.2005 21:59:59 GMT",
      "23.01.2005 21:59:59 gmt",
      "9:59:59 x",
      "12 21:59 month only",
      "Feb 29 2004 12:00:00 leap",
      "2004 060 12:00:00",
      "2005 000 12:00:00",
      "2005 366 12:00:00",
      "0000-01-23 21:59:59",
      "9999-12-31 23:59:59 +0100",
      "0001-01-01 00:00:00 +0100",
      "0001-01-01 00:00:00 -0100",
      "\u00e9\u00e9\u00e9 21:59:59",
      "\t2005-01-23 21:59:59",
  };
  for (const std::string& p :
       {std::string(), std::string("{NONE}"), std::string("{UNB}(?:%H:%M:%S)?"),
        std::string("%d.%m.%Y %H:%M:%S %Z"), std::string("%d.%m.%Y %H:%M:%S %z"),
        std::string("%m %H:%M"), std::string("%I:%M:%S(?: %p)?"), std::string("%Y %j %H:%M:%S"),
        std::string("%Y-%m-%d %H:%M:%S(?: %z)?"), std::string("%b %d %H:%M:%S"),
        std::string("%b %d %Y %H:%M:%S"), std::string("{UNB}%H:%M:%S"), std::string("EPOCH"),
        std::string("%Y-%m-%d %H:%M:%S"), std::string("%H:%M:%S"), std::string("(?P<Z>\\S+) %H:%M"),
        std::string("%ExZ %H:%M:%S"), std::string("(?P<y>\\d+)?-%H:%M:%S")}) {
    sessions.push_back(Lines(p, lines));
    for (const std::string& l : lines) sessions.push_back(Lines(p, {l}));
  }
  Report("edge cases", ExpectSameAsFail2ban(sessions));
}


// ---------------------------------------------------------------------------
// share_searches: detectors of equal options replay each other's search.

DateDetector MakeWith(const DateDetectorOptions& o) {
  Result<DateDetector> dd = DateDetector::Create(o);
  EXPECT_TRUE(dd.ok()) << dd.status().message();
  if (!dd.ok()) std::abort();
  return std::move(*dd);
}

DateDetector MakeSharing(const std::string& datepattern = "", const std::string& tz = "") {
  DateDetectorOptions o;
  o.datepattern = datepattern;
  o.logtimezone = tz;
  o.share_searches = true;
  return MakeWith(o);
}

// Every result and the template statistics (order, hits and regex hits)
// of a detector.
std::string Trace(DateDetector& dd, std::string_view line, double now = kNow) {
  std::string out = Find(dd, line, now);
  for (const DateTemplateStats& t : dd.templates()) {
    if (t.hits || t.regex_hits) {
      out += " | " + t.name + "=" + std::to_string(t.hits) + "/" + std::to_string(t.regex_hits);
    }
  }
  return out;
}

// A detector that searches every template of every line: no short cut, no
// sharing of any kind, the reference the others are held to.
DateDetector MakeSearching(const std::string& datepattern = "") {
  DateDetectorOptions o;
  o.datepattern = datepattern;
  o.search_shortcuts = false;
  return MakeWith(o);
}

// Lines that move the default detector around: two formats alternating,
// a second date later in the line, the same prefix with another date, a
// date past the line's start, a date-less line, a line that raises, a
// year roll-over and explicit zones.
const std::vector<std::string>& TrickyLines() {
  static const std::vector<std::string> lines = {
      "[Nov 25 16:18:31] NOTICE[1] chan_sip.c: x",
      "[Nov 25 16:18:31] NOTICE[1] chan_sip.c: x",
      "[2005-11-25 16:18:31] VERBOSE[2] pbx.c: y",
      "[Nov 25 16:18:31] NOTICE[1] chan_sip.c: Jan 23 21:59:59 inside",
      "[Nov 25 16:18:32] NOTICE[1] chan_sip.c: x",
      "[Nov 25 16:18:3] NOTICE[1] prefix equal, date not",
      "host 2005-01-23 21:59:59 later in the line",
      "no date at all",
      "Dec 31 23:59:59 host x",
      "Jan  1 00:00:00 host x",
      "2005-01-23T21:59:59.123+0100 iso with zone",
      "2005-01-23T21:59:59.123-0500 iso with zone",
      "1106513999 epoch",
      "21:59:59 time only",
      "\u00e9 2005-01-23 21:59:59 after a non-ASCII character",
      "",
      "[Nov 25 16:18:31] NOTICE[1] chan_sip.c: x",
  };
  return lines;
}

TEST(DateDetectorSharingTest, ReplaysGiveWhatASearchGives) {
  ScopedTz tz(kTestTz);
  for (const std::string& pattern :
       {std::string(), std::string("{^LN-BEG}"), std::string("{NONE}"),
        std::string("%H:%M:%S"), std::string("EPOCH")}) {
    DateDetector alone = MakeDetector(pattern);
    DateDetector a = MakeSharing(pattern);
    DateDetector b = MakeSharing(pattern);
    DateDetector c = MakeSharing(pattern);
    for (int round = 0; round < 3; ++round) {
      for (const std::string& line : TrickyLines()) {
        const std::string want = Trace(alone, line);
        EXPECT_EQ(Trace(a, line), want) << pattern << ": " << line;
        EXPECT_EQ(Trace(b, line), want) << pattern << ": " << line;
        EXPECT_EQ(Trace(c, line), want) << pattern << ": " << line;
      }
    }
    const uint64_t n = 3 * TrickyLines().size();
    EXPECT_EQ(a.replayed(), 0u) << pattern;
    EXPECT_EQ(b.replayed(), n) << pattern;
    EXPECT_EQ(c.replayed(), n) << pattern;
  }
}

// A detector that missed a line (an idle jail) is in another state: it
// must search from then on, and still find what a lone detector finds.
TEST(DateDetectorSharingTest, NoReplayOnceOutOfStep) {
  ScopedTz tz(kTestTz);
  DateDetector alone_a = MakeDetector(), alone_b = MakeDetector();
  DateDetector a = MakeSharing(), b = MakeSharing();
  const std::vector<std::string>& lines = TrickyLines();
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(Trace(a, lines[i]), Trace(alone_a, lines[i])) << lines[i];
    if (i == 2) continue;  // b skips one line
    EXPECT_EQ(Trace(b, lines[i]), Trace(alone_b, lines[i])) << lines[i];
  }
  EXPECT_EQ(b.replayed(), 2u);  // the two lines before the skip
}

// A detector of another datepattern whose last template is the same
// anchored regex goes first: the detector that searches takes that match
// from it (MatchAnchoredLast), and what the others replay must still
// include its effects.
TEST(DateDetectorSharingTest, ReplaysASearchTakenFromAnotherPattern) {
  ScopedTz tz(kTestTz);
  DateDetector other = MakeSharing("{^LN-BEG}");
  DateDetector a = MakeSharing(), b = MakeSharing();
  DateDetector want_other = MakeSearching("{^LN-BEG}"), want = MakeSearching();
  for (int round = 0; round < 3; ++round) {
    for (const std::string& line : TrickyLines()) {
      EXPECT_EQ(Trace(other, line), Trace(want_other, line)) << line;
      const std::string w = Trace(want, line);
      EXPECT_EQ(Trace(a, line), w) << line;
      EXPECT_EQ(Trace(b, line), w) << line;
    }
  }
  EXPECT_GT(a.shared_wins(), 10u);
  EXPECT_EQ(b.replayed(), 3 * TrickyLines().size());
}

// A detector that matched while it was the only one with its options made
// no records, and its state must not look like a new detector's: one made
// later with the same options records from the start state, and the first
// must not replay that.
TEST(DateDetectorSharingTest, ADetectorThatWasAloneIsNotTakenForANewOne) {
  ScopedTz tz(kTestTz);
  DateDetector first = MakeSharing();
  DateDetector want_first = MakeSearching();
  for (const std::string& line : TrickyLines()) {
    EXPECT_EQ(Trace(first, line), Trace(want_first, line)) << line;
  }
  DateDetector second = MakeSharing();
  DateDetector want_second = MakeSearching();
  for (const std::string& line : TrickyLines()) {
    EXPECT_EQ(Trace(second, line), Trace(want_second, line)) << line;
    EXPECT_EQ(Trace(first, line), Trace(want_first, line)) << line;
  }
  EXPECT_EQ(first.replayed(), 0u);
}

// Not replayed: another line, another `now`, other options, a detector
// made without share_searches, and a detector used on another thread.
TEST(DateDetectorSharingTest, NoReplayForAnotherLineNowOrOptions) {
  ScopedTz tz(kTestTz);
  const std::string line = "Jan 23 21:59:59 host x";
  {
    DateDetector a = MakeSharing(), b = MakeSharing();
    Find(a, line);
    DateDetector alone = MakeDetector();
    EXPECT_EQ(Find(b, "Jan 23 21:59:58 host x"), Find(alone, "Jan 23 21:59:58 host x"));
    EXPECT_EQ(b.replayed(), 0u);
  }
  {
    DateDetector a = MakeSharing(), b = MakeSharing();
    Find(a, line, kNow);
    DateDetector alone = MakeDetector();
    // Another `now` may change the year a date without one gets.
    EXPECT_EQ(Find(b, line, kNow + 366 * 86400.0), Find(alone, line, kNow + 366 * 86400.0));
    EXPECT_EQ(b.replayed(), 0u);
  }
  {
    DateDetector a = MakeSharing(), utc = MakeSharing("", "UTC"), iso = MakeSharing("%Y-%m-%d");
    DateDetector plain = MakeDetector();
    Find(a, line);
    Find(utc, line);
    Find(iso, line);
    Find(plain, line);
    EXPECT_EQ(utc.replayed(), 0u);
    EXPECT_EQ(iso.replayed(), 0u);
    EXPECT_EQ(plain.replayed(), 0u);
  }
  {
    DateDetector a = MakeSharing(), b = MakeSharing();
    Find(a, line);
    std::string got;
    std::thread other([&] { got = Find(b, line); });
    other.join();
    DateDetector alone = MakeDetector();
    EXPECT_EQ(got, Find(alone, line));
    EXPECT_EQ(b.replayed(), 0u);
    // Back on its own thread b is out of step with a for good.
    Find(a, "Jan 23 22:00:00 host y");
    Find(b, "Jan 23 22:00:00 host y");
    EXPECT_EQ(b.replayed(), 0u);
  }
}


// The compiled template list is made once per process and copied into
// each new detector: a detector made after another one has been used
// starts from scratch all the same (no hits, the default order).
TEST(DateDetectorTest, NewDetectorStartsFreshAfterAnotherOneWasUsed) {
  ScopedTz tz(kTestTz);
  DateDetector first = MakeDetector();
  const std::vector<DateTemplateStats> order = first.templates();
  for (const std::string& line : TrickyLines()) Find(first, line);
  ASSERT_NE(first.templates()[0].name, order[0].name);  // the list moved
  DateDetector second = MakeDetector();
  const std::vector<DateTemplateStats> fresh = second.templates();
  ASSERT_EQ(fresh.size(), order.size());
  for (size_t i = 0; i < fresh.size(); ++i) {
    EXPECT_EQ(fresh[i].name, order[i].name);
    EXPECT_EQ(fresh[i].hits, 0u);
  }
  DateDetector third = MakeDetector();
  for (const std::string& line : TrickyLines()) EXPECT_EQ(Trace(second, line), Trace(third, line));
}

}  // namespace
}  // namespace bantam
