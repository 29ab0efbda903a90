#include "bantam/journal_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../testing/journal_export.h"
#include "../testing/require.h"

namespace bantam {
namespace {

namespace fs = std::filesystem;

// fail2ban's interpreter; `python3` on PATH may be another one.
constexpr char kFail2banPython[] = "/usr/bin/python3";
// Central European time with its real DST rules, so timestamps on either
// side of a transition show fail2ban's fixed-offset quirk.
constexpr char kCet[] = "CET-01CEST-02,M3.5.0,M10.5.0";

using Fields = testing::JournalFields;
using testing::ExportEntry;
using testing::kJournalRemote;

Fields Entry(const std::string& realtime, const std::string& monotonic, Fields rest) {
  Fields f = {{"__REALTIME_TIMESTAMP", realtime},
              {"__MONOTONIC_TIMESTAMP", monotonic},
              {"_BOOT_ID", "0123456789abcdef0123456789abcdef"}};
  f.insert(f.end(), rest.begin(), rest.end());
  return f;
}

// The corpus: each entry exercises one rule of formatJournalEntry.
std::vector<Fields> Corpus() {
  return {
      // Summer (CEST) entry, plain sshd line.
      Entry("1689999000123456", "1000000",
            {{"_HOSTNAME", "host1"},
             {"SYSLOG_IDENTIFIER", "sshd"},
             {"_PID", "42"},
             {"_COMM", "sshd"},
             {"_SYSTEMD_UNIT", "sshd.service"},
             {"MESSAGE", "Failed password for root from 192.0.2.1 port 22 ssh2"}}),
      // The source timestamp wins; SYSLOG_PID=0 is falsy so _PID is used.
      Entry("1690000000000000", "2000000",
            {{"_SOURCE_REALTIME_TIMESTAMP", "1689999999500000"},
             {"_HOSTNAME", "host1"},
             {"SYSLOG_IDENTIFIER", "sudo"},
             {"SYSLOG_PID", "0"},
             {"_PID", "77"},
             {"_COMM", "sudo"},
             {"_SYSTEMD_UNIT", "session-1.scope"},
             {"MESSAGE", "pam_unix(sudo:auth): authentication failure"}}),
      // Winter (CET) kernel line: monotonic seconds in brackets.
      Entry("1700000000000000", "12345678",
            {{"_HOSTNAME", "host1"},
             {"SYSLOG_IDENTIFIER", "kernel"},
             {"MESSAGE", "Out of memory: Killed process 1"}}),
      // _COMM stands in for the identifier; a hex PID; invalid UTF-8.
      Entry("1700000001000000", "12345679",
            {{"_HOSTNAME", "host1"},
             {"_COMM", "sshd"},
             {"SYSLOG_PID", "0x1f"},
             {"_SYSTEMD_UNIT", "ssh.service"},
             {"MESSAGE", "Invalid user \xff\xfe\xe2\x82 from 192.0.2.2"}}),
      // A PID that is no number; a message with a new line, twice.
      Entry("1700000002000000", "12345680",
            {{"_HOSTNAME", "host2"},
             {"SYSLOG_IDENTIFIER", "app"},
             {"SYSLOG_PID", "ab'\"c"},
             {"MESSAGE", "line1\nline2"},
             {"MESSAGE", "second"}}),
      // Nothing but a message.
      Entry("1700000003000000", "12345681", {{"MESSAGE", "bare"}}),
      // No message at all.
      Entry("1700000004000000", "12345682",
            {{"_HOSTNAME", "host1"}, {"SYSLOG_IDENTIFIER", "cron"}, {"_PID", "9"}}),
  };
}

// What fail2ban 1.0.2 makes of Corpus() with python-systemd's zone fixed
// at +01:00 under kCet (checked against FilterSystemd, see the Oracle test).
struct Expected {
  const char* line;
  const char* date;
  double time;
};
const Expected kExpected[] = {
    {"host1 sshd[42]: Failed password for root from 192.0.2.1 port 22 ssh2",
     "2023-07-22T05:10:00.123456+01:00", 1689995400.123456},
    {"host1 sudo[77]: pam_unix(sudo:auth): authentication failure",
     "2023-07-22T05:26:39.500000+01:00", 1689996399.5},
    {"host1 kernel: [   12.345678] Out of memory: Killed process 1", "2023-11-14T23:13:20+01:00",
     1700000000},
    {"host1 sshd[31]: Invalid user \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd from 192.0.2.2",
     "2023-11-14T23:13:21+01:00", 1700000001},
    {"host2 app[b'ab\\'\"c']: line1\\nline2 second", "2023-11-14T23:13:22+01:00", 1700000002},
    {"bare", "2023-11-14T23:13:23+01:00", 1700000003},
    {"host1 cron[9]: ", "2023-11-14T23:13:24+01:00", 1700000004},
};

bool CanRun(const char* path) { return access(path, X_OK) == 0; }

std::string Quote(const std::string& s) { return testing::ShellQuote(s); }

// Runs a shell command, returning its stdout; empty on failure.
std::string Capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // It builds the journal files the tests read.
    BANTAM_REQUIRE_TOOL(CanRun(kJournalRemote), kJournalRemote, "systemd-journal-remote");
    char tmpl[] = "/tmp/bantam-journal-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const char* tz = std::getenv("TZ");
    if (tz) old_tz_ = tz;
    had_tz_ = tz != nullptr;
    setenv("TZ", kCet, 1);
    tzset();
  }
  void TearDown() override {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
    if (had_tz_) {
      setenv("TZ", old_tz_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

  // Writes `entries` to DIR/sub/NAME.journal with systemd-journal-remote.
  std::string MakeJournal(const std::vector<Fields>& entries, const std::string& sub = "j",
                          const std::string& name = "x") {
    fs::create_directories(dir_ + "/" + sub);
    std::string out = dir_ + "/" + sub + "/" + name + ".journal";
    EXPECT_TRUE(testing::WriteJournalFile(entries, out, dir_ + "/" + name + ".export")) << out;
    return out;
  }

  static std::unique_ptr<JournalReader> OpenFiles(const std::string& pattern, long offset = 3600) {
    JournalOptions o;
    o.journalfiles = std::vector<std::string>{pattern};
    Result<std::unique_ptr<JournalReader>> r = JournalReader::Open(o, offset);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(*r) : nullptr;
  }

  static std::vector<JournalLine> ReadAll(JournalReader* r) {
    std::vector<JournalLine> out;
    JournalLine l;
    for (;;) {
      Result<bool> more = r->Next(&l);
      EXPECT_TRUE(more.ok()) << more.status().message();
      if (!more.ok() || !*more) break;
      out.push_back(l);
    }
    return out;
  }

  std::string dir_;
  std::string old_tz_;
  bool had_tz_ = false;
};

std::vector<std::string> Lines(const std::vector<JournalLine>& v) {
  std::vector<std::string> out;
  for (const JournalLine& l : v) out.push_back(l.line);
  return out;
}

TEST_F(JournalTest, ReadsFilesInOrderAsFail2banFormatsThem) {
  std::string file = MakeJournal(Corpus());
  auto r = OpenFiles(file);
  ASSERT_TRUE(r);
  std::vector<JournalLine> got = ReadAll(r.get());
  ASSERT_EQ(got.size(), std::size(kExpected));
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].line, kExpected[i].line);
    EXPECT_EQ(got[i].date_text, kExpected[i].date);
    EXPECT_DOUBLE_EQ(got[i].time, kExpected[i].time);
    EXPECT_EQ(got[i].cursor.rfind("s=", 0), 0u) << got[i].cursor;
  }
}

TEST_F(JournalTest, OpensByDirectoryAndByGlob) {
  MakeJournal({Corpus()[0]}, "d", "a");
  MakeJournal({Corpus()[5]}, "d", "b");
  JournalOptions o;
  o.journalpath = dir_ + "/d";
  Result<std::unique_ptr<JournalReader>> byPath = JournalReader::Open(o, 3600);
  ASSERT_TRUE(byPath.ok()) << byPath.status().message();
  EXPECT_EQ(Lines(ReadAll(byPath->get())),
            (std::vector<std::string>{kExpected[0].line, kExpected[5].line}));

  auto byGlob = OpenFiles(dir_ + "/d/*.journal");
  ASSERT_TRUE(byGlob);
  EXPECT_EQ(ReadAll(byGlob.get()).size(), 2u);
}

TEST_F(JournalTest, OpenErrorsSayWhatFailed) {
  JournalOptions o;
  o.journalfiles = std::vector<std::string>{dir_ + "/none*.journal"};
  Result<std::unique_ptr<JournalReader>> r = JournalReader::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "journal: no file matches journalfiles: Invalid argument");

  o = {};
  o.journalpath = dir_ + "/missing";
  r = JournalReader::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "journal: opening directory '" + dir_ + "/missing': No such file or directory");
}

TEST_F(JournalTest, MatchGroupsAreOred) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->AddMatches({{"_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"}}).ok());
  EXPECT_EQ(Lines(ReadAll(r.get())),
            (std::vector<std::string>{kExpected[0].line, kExpected[3].line}));
  EXPECT_EQ(r->matches(), (std::vector<std::vector<std::string>>{{"_SYSTEMD_UNIT=sshd.service"},
                                                                 {"_COMM=sshd"}}));
}

TEST_F(JournalTest, TermsOfOneGroupAndAcrossFields) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->AddMatch({"_COMM=sshd", "_SYSTEMD_UNIT=ssh.service"}).ok());
  EXPECT_EQ(Lines(ReadAll(r.get())), (std::vector<std::string>{kExpected[3].line}));
}

TEST_F(JournalTest, SecondMatchCallIsOred) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->AddMatch({"_SYSTEMD_UNIT=sshd.service"}).ok());
  ASSERT_TRUE(r->AddMatch({"SYSLOG_IDENTIFIER=kernel"}).ok());
  EXPECT_EQ(Lines(ReadAll(r.get())),
            (std::vector<std::string>{kExpected[0].line, kExpected[2].line}));
}

TEST_F(JournalTest, BadMatchKeepsEarlierMatches) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->AddMatch({"_SYSTEMD_UNIT=sshd.service"}).ok());
  Status s = r->AddMatch({"_COMM=sudo", "+", "not a match"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "journal: bad journal match 'not a match': Invalid argument");
  EXPECT_EQ(r->matches().size(), 1u);
  EXPECT_EQ(Lines(ReadAll(r.get())), (std::vector<std::string>{kExpected[0].line}));
}

TEST_F(JournalTest, SeekCursorResumesAfterLastReadEntry) {
  std::string file = MakeJournal(Corpus());
  auto r = OpenFiles(file);
  ASSERT_TRUE(r);
  JournalLine l;
  ASSERT_TRUE(*r->Next(&l));
  ASSERT_TRUE(*r->Next(&l));
  std::string cursor = l.cursor;

  auto again = OpenFiles(file);
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->SeekCursor(cursor).ok());
  std::vector<JournalLine> rest = ReadAll(again.get());
  ASSERT_EQ(rest.size(), std::size(kExpected) - 2);
  EXPECT_EQ(rest[0].line, kExpected[2].line);
}

TEST_F(JournalTest, SeekCursorOfFilteredEntryStopsOnNextMatch) {
  std::string file = MakeJournal(Corpus());
  auto r = OpenFiles(file);
  ASSERT_TRUE(r);
  JournalLine l;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(*r->Next(&l));  // the kernel entry
  // Under a match the cursor's entry is invisible; the next match must
  // still come out, not be skipped.
  auto again = OpenFiles(file);
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->AddMatch({"_COMM=sshd"}).ok());
  ASSERT_TRUE(again->SeekCursor(l.cursor).ok());
  EXPECT_EQ(Lines(ReadAll(again.get())), (std::vector<std::string>{kExpected[3].line}));
}

TEST_F(JournalTest, SeekRealtimeAndTail) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->SeekRealtime(1700000002.0).ok());
  EXPECT_EQ(ReadAll(r.get()).size(), 3u);
  // fail2ban's start-up: from the tail, step back onto the last entry.
  ASSERT_TRUE(r->SeekTail().ok());
  JournalLine l;
  ASSERT_TRUE(*r->Previous(&l));
  EXPECT_EQ(l.line, kExpected[6].line);
  EXPECT_FALSE(*r->Next(&l));
  ASSERT_TRUE(r->SeekHead().ok());
  ASSERT_TRUE(*r->Next(&l));
  EXPECT_EQ(l.line, kExpected[0].line);
}

TEST_F(JournalTest, BinaryMessageDoesNotBreakReading) {
  std::string blob;
  for (int i = 0; i < 256; ++i) blob += static_cast<char>(i);
  auto r = OpenFiles(MakeJournal({Entry("1700000000000000", "1", {{"MESSAGE", blob}}),
                                  Entry("1700000001000000", "2", {{"MESSAGE", "after"}})}));
  ASSERT_TRUE(r);
  std::vector<JournalLine> got = ReadAll(r.get());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].line.substr(0, 10), std::string("\0\x01\x02\x03\x04\x05\x06\x07\x08\t", 10));
  EXPECT_EQ(got[0].line.substr(10, 2), "\\n");  // the \n byte, escaped
  EXPECT_EQ(got[1].line, "after");
}

// Large fields are stored compressed and decompressed into one shared
// buffer; holding a view across fields would read the wrong bytes.
TEST_F(JournalTest, LargeCompressedFieldsKeepTheirOwnBytes) {
  std::string host(2000, 'h'), ident(2000, 'i'), message(3000, 'm');
  auto r = OpenFiles(MakeJournal(
      {Entry("1700000000000000", "1",
             {{"_HOSTNAME", host}, {"SYSLOG_IDENTIFIER", ident}, {"MESSAGE", message}})}));
  ASSERT_TRUE(r);
  std::vector<JournalLine> got = ReadAll(r.get());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].line, host + " " + ident + ": " + message);
}

TEST_F(JournalTest, FdAndProcessWork) {
  auto r = OpenFiles(MakeJournal(Corpus()));
  ASSERT_TRUE(r);
  Result<int> fd = r->fd();
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_GE(*fd, 0);
  EXPECT_TRUE(r->Process().ok());
}

// JournalSource hands out every entry as a line for its one jail, with the
// entry's time and fail2ban's date text (a space appended); its position
// is the last entry read, and a source resuming from it reads nothing again.
TEST_F(JournalTest, JournalSourceReadsLinesAndResumesAfterItsPosition) {
  JournalOptions o;
  o.journalfiles = std::vector<std::string>{MakeJournal(Corpus())};
  std::vector<std::string> lines;
  std::vector<double> times;
  auto collect = [&](const SourceLine& l) {
    ASSERT_TRUE(l.time.has_value());
    EXPECT_EQ(*l.subscribers, (std::vector<SubscriberId>{7}));
    EXPECT_EQ(l.origin, kJournalLogName);
    EXPECT_EQ(l.date_text.back(), ' ');
    lines.emplace_back(l.text);
    times.push_back(*l.time);
  };
  JournalSource first(7, {}, collect);
  EXPECT_EQ(first.fd(), -1);  // closed until opened
  ASSERT_TRUE(first.Open(o, 0, std::nullopt).ok());
  EXPECT_GE(first.fd(), 0);
  ASSERT_TRUE(first.Poll().ok());
  ASSERT_EQ(lines.size(), std::size(kExpected));
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i], kExpected[i].line) << i;

  std::vector<SourcePosition> changed;
  first.Positions(true, &changed);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].subscriber, 7u);
  EXPECT_EQ(changed[0].name, kJournalLogName);
  const TimePosition last = std::get<TimePosition>(changed[0].where);
  EXPECT_EQ(last.time, times.back());
  first.MarkSaved(changed[0]);
  changed.clear();
  first.Positions(true, &changed);
  EXPECT_TRUE(changed.empty());
  first.Positions(false, &changed);
  EXPECT_EQ(changed.size(), 1u);

  lines.clear();
  JournalSource again(7, {}, collect);
  ASSERT_TRUE(again.Open(o, 0, last).ok());
  ASSERT_TRUE(again.Poll().ok());
  EXPECT_TRUE(lines.empty());
}

// A journal that did not open still shows the jail's journalmatch, lines
// joined with " + " ("+" words kept), as fail2ban's status does.
TEST(JournalSourceTest, ClosedSourceShowsItsMatches) {
  JournalSource s(3, {{"_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"}, {"_COMM=su"}},
                  [](const SourceLine&) {});
  JournalOptions o;
  o.journalpath = "/nonexistent/bantam-journal";
  EXPECT_FALSE(s.Open(o, 0, std::nullopt).ok());
  EXPECT_FALSE(s.is_open());
  EXPECT_EQ(s.fd(), -1);
  EXPECT_TRUE(s.Poll().ok());
  SourceStatus st = s.StatusOf(3);
  EXPECT_EQ(st.title, "Journal matches");
  EXPECT_EQ(st.items,
            (std::vector<std::string>{"_SYSTEMD_UNIT=sshd.service + _COMM=sshd + _COMM=su"}));
  s.Unsubscribe(3);
  EXPECT_FALSE(s.has_subscribers());
}

// Reads the same file with fail2ban itself and compares every field of
// every entry, with the real "zone offset at import" behaviour.
constexpr char kOracle[] = R"PY(
import sys, datetime
from systemd import journal
if sys.argv[1] != "now":
    journal._LOCAL_TIMEZONE = datetime.timezone(datetime.timedelta(seconds=int(sys.argv[1])))
from fail2ban.server.filtersystemd import FilterSystemd
from fail2ban.tests.dummyjail import DummyJail
f = FilterSystemd(DummyJail(), journalfiles=sys.argv[2])
if len(sys.argv) > 3:
    f.addJournalMatch(sys.argv[3:])
j = f.getJournalReader()
while True:
    e = j.get_next()
    if not e:
        break
    (_, date, line), t = f.formatJournalEntry(e)
    print(line.encode("utf-8", "surrogateescape").hex(), date[:-1], "%.17g" % t, e["__CURSOR"])
)PY";

std::string Hex(const std::string& s) {
  std::string out;
  char buf[3];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

// Whether fail2ban's interpreter imports `module`.
bool Imports(const std::string& module) {
  int status = -1;
  Capture(std::string(kFail2banPython) + " -c 'import " + module + "' 2>/dev/null", &status);
  return CanRun(kFail2banPython) && status == 0;
}

TEST_F(JournalTest, OracleFail2banFormatsTheSame) {
  // fail2ban's systemd backend and python-systemd are separate packages:
  // each is named on its own, rather than showing up as a diff.
  BANTAM_REQUIRE_TOOL(Imports("fail2ban"), std::string(kFail2banPython) + " -c 'import fail2ban'",
                      "fail2ban");
  BANTAM_REQUIRE_TOOL(Imports("systemd.journal"),
                      std::string(kFail2banPython) + " -c 'import systemd.journal'",
                      "python3-systemd");
  BANTAM_REQUIRE_TOOL(Imports("fail2ban.server.filtersystemd"),
                      std::string(kFail2banPython) + " -c 'import fail2ban.server.filtersystemd'",
                      "fail2ban");
  int status = -1;
  std::string file = MakeJournal(Corpus());
  std::string script = dir_ + "/oracle.py";
  std::ofstream(script) << kOracle;

  for (const char* offset : {"3600", "7200", "now"}) {
    for (const std::vector<std::string>& match :
         {std::vector<std::string>{}, {"_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"}}) {
      SCOPED_TRACE(std::string("offset ") + offset);
      std::string cmd =
          std::string(kFail2banPython) + " " + Quote(script) + " " + offset + " " + Quote(file);
      for (const std::string& m : match) cmd += " " + Quote(m);
      std::string want = Capture(cmd, &status);
      ASSERT_EQ(status, 0) << cmd;

      JournalOptions o;
      o.journalfiles = std::vector<std::string>{file};
      Result<std::unique_ptr<JournalReader>> r = JournalReader::Open(
          o, std::string(offset) == "now" ? std::optional<long>()
                                          : std::optional<long>(std::atol(offset)));
      ASSERT_TRUE(r.ok()) << r.status().message();
      if (!match.empty()) {
        ASSERT_TRUE((*r)->AddMatch(match).ok());
      }
      std::string got;
      for (const JournalLine& l : ReadAll(r->get())) {
        char t[64];
        std::snprintf(t, sizeof t, "%.17g", l.time);
        got += Hex(l.line) + " " + l.date_text + " " + t + " " + l.cursor + "\n";
      }
      EXPECT_EQ(got, want);
    }
  }
}

// ---- formatting without a journal: the corners the corpus cannot hold ----

JournalLine Format(const std::vector<std::pair<std::string_view, std::string_view>>& fields,
                   uint64_t realtime = 1700000000000000, long offset = 0) {
  JournalEntry e;
  e.fields = fields;
  e.realtime_usec = realtime;
  e.monotonic_usec = 5000001;
  e.cursor = "c";
  JournalLine l;
  FormatJournalEntry(e, offset, &l);
  return l;
}

TEST(JournalFormatTest, PidFieldsFollowPythonInt) {
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", " 4_2 "}}).line, "x[42]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", "+007"}}).line, "x[7]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", "0o17"}}).line, "x[15]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", "0x0"}}).line, "x[0]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", "99999999999999999999999"}}).line,
            "x[99999999999999999999999]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", "010x"}}).line, "x[b'010x']: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"SYSLOG_PID", ""}, {"_PID", "5"}}).line, "x[5]: ");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "x"}, {"_PID", "-0"}}).line, "x: ");
}

TEST(JournalFormatTest, EmptyIdentifierFallsBackToComm) {
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", ""}, {"_COMM", "c"}, {"MESSAGE", "m"}}).line, "c: m");
  EXPECT_EQ(Format({{"_HOSTNAME", ""}, {"MESSAGE", "m"}}).line, "m");
}

TEST(JournalFormatTest, KernelPrefersSourceMonotonic) {
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "kernel"}, {"MESSAGE", "m"}}).line,
            "kernel: [    5.000001] m");
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "kernel"},
                    {"_SOURCE_MONOTONIC_TIMESTAMP", "123456789012"},
                    {"MESSAGE", "m"}})
                .line,
            "kernel: [123456.789012] m");
  // With a PID it is no longer "kernel:" and gets no time.
  EXPECT_EQ(Format({{"SYSLOG_IDENTIFIER", "kernel"}, {"_PID", "1"}, {"MESSAGE", "m"}}).line,
            "kernel[1]: m");
}

TEST(JournalFormatTest, Utf8ReplacementMatchesCPython) {
  // Each maximal invalid subsequence becomes one U+FFFD (bytes.decode
  // 'replace'): overlong, surrogate, truncated, past U+10FFFF.
  const std::string r = "\xef\xbf\xbd";
  EXPECT_EQ(Format({{"MESSAGE", "\xe0\x80\x80"}}).line, r + r + r);
  EXPECT_EQ(Format({{"MESSAGE", "\xed\xa0\x80"}}).line, r + r + r);
  EXPECT_EQ(Format({{"MESSAGE", "\xf0\x90\x80"}}).line, r);
  EXPECT_EQ(Format({{"MESSAGE", "\xf4\x90\x80\x80"}}).line, r + r + r + r);
  EXPECT_EQ(Format({{"MESSAGE", "\xe2\x82x"}}).line, r + "x");
  EXPECT_EQ(Format({{"MESSAGE", "\xc0\xaf"}}).line, r + r);
  EXPECT_EQ(Format({{"MESSAGE", "ok \xe2\x82\xac \xf0\x9f\x98\x80"}}).line,
            "ok \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(JournalFormatTest, IsoformatOffsets) {
  EXPECT_EQ(Format({}, 1700000000000001, 0).date_text, "2023-11-14T22:13:20.000001+00:00");
  EXPECT_EQ(Format({}, 1700000000000000, -5 * 3600 - 30 * 60).date_text,
            "2023-11-14T16:43:20-05:30");
  EXPECT_EQ(Format({}, 1700000000000000, 1050).date_text, "2023-11-14T22:30:50+00:17:30");
  // An unusable source timestamp falls back to the journal's.
  EXPECT_EQ(Format({{"_SOURCE_REALTIME_TIMESTAMP", "x"}}, 1700000000000000, 0).date_text,
            "2023-11-14T22:13:20+00:00");
}

TEST(JournalOptionsTest, ParsesTheBackendOptions) {
  OrderedMap<std::string> m;
  m.Set("journalpath", "/var/log/journal/x y");
  m.Set("journalfiles", "/a/*.journal, /b/c.journal\n/d");
  m.Set("journalflags", " 1_0 ");
  m.Set("namespace", "ns");
  Result<JournalOptions> o = ParseJournalOptions(m);
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->journalpath, "/var/log/journal/x y");
  EXPECT_EQ(*o->journalfiles, (std::vector<std::string>{"/a/*.journal", "/b/c.journal", "/d"}));
  EXPECT_EQ(o->journalflags, 10);
  EXPECT_EQ(o->ns, "ns");

  EXPECT_FALSE(ParseJournalOptions({}).value().journalpath.has_value());
}

TEST(JournalOptionsTest, ErrorsNameTheOption) {
  OrderedMap<std::string> m;
  m.Set("journalflags", "0x4");
  EXPECT_EQ(ParseJournalOptions(m).status().message(),
            "systemd backend: journalflags = '0x4' is not a non-negative integer");
  OrderedMap<std::string> u;
  u.Set("journaldir", "/x");
  EXPECT_EQ(ParseJournalOptions(u).status().message(),
            "systemd backend: unknown option 'journaldir'");
}

TEST(JournalOptionsTest, PathAndFilesTogetherIsAnError) {
  JournalOptions o;
  o.journalpath = "/tmp";
  o.journalfiles = std::vector<std::string>{"/tmp"};
  EXPECT_EQ(JournalReader::Open(o).status().message(),
            "journal: journalpath and journalfiles cannot be specified together");
}

}  // namespace
}  // namespace bantam
