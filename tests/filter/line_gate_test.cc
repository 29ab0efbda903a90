// Work skipped because it provably finds nothing never changes a result:
// the line gate (Filter) and the scan it shares between filters
// (LiteralScan) never change a failure; the date detector's search short
// cuts (FailRegex::RulesOutPrefix, EPOCH starts) never change a date.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../testing/require.h"
#include "bantam/config_loader.h"
#include "bantam/date_detector.h"
#include "bantam/failregex.h"
#include "bantam/filter.h"
#include "bantam/literal_scan.h"
#include "bantam/ordered_map.h"

namespace bantam {
namespace {

// A string of `min` to `max` characters drawn from `alphabet`.
std::string RandomText(std::mt19937& rng, const std::string& alphabet, size_t min, size_t max) {
  std::string s(min + rng() % (max - min + 1), ' ');
  for (char& c : s) c = alphabet[rng() % alphabet.size()];
  return s;
}

TEST(LiteralScanTest, FindsEveryOccurringStringAndNoOther) {
  LiteralScan scan;
  const uint32_t a = scan.Add("abc"), b = scan.Add("bcd"), q = scan.Add("'"), x = scan.Add("xyz");
  EXPECT_EQ(scan.Add("abc"), a);  // the same text, the same id
  scan.Scan("zab", "", "cd'");
  EXPECT_TRUE(scan.Has(a));
  EXPECT_TRUE(scan.Has(b));
  EXPECT_TRUE(scan.Has(q));
  EXPECT_FALSE(scan.Has(x));
  scan.Scan("", "xy", "");
  EXPECT_FALSE(scan.Has(a));
  EXPECT_FALSE(scan.Has(x));
  scan.Scan("", "", "xyz");
  EXPECT_TRUE(scan.Has(x));
  EXPECT_FALSE(scan.Has(q));
}

TEST(LiteralScanTest, ScansALineOnceForItsReaders) {
  LiteralScan scan;
  scan.Add("fail");
  scan.Scan("[", "Nov 1 00:00:01", "] auth fail");
  scan.Scan("[", "Nov 1 00:00:01", "] auth fail");
  scan.Scan("[Nov 1 00:00:01] ", "", "auth fail");  // the same text, cut elsewhere
  EXPECT_EQ(scan.scans(), 1u);
  scan.Scan("", "", "auth fail");
  EXPECT_EQ(scan.scans(), 2u);
  scan.Add("auth");  // a new string: the next line is scanned again
  scan.Scan("", "", "auth fail");
  EXPECT_EQ(scan.scans(), 3u);
}

// A line key stands for the text: the scan trusts it and compares nothing
// (shown here by breaking the promise), and a scan without a key does not
// take a keyed scan's text for its own unless the bytes are equal.
TEST(LiteralScanTest, ALineKeyStandsForTheText) {
  LiteralScan scan;
  const uint32_t fail = scan.Add("fail");
  const uint64_t k1 = NewLineKey(), k2 = NewLineKey();
  EXPECT_NE(k1, k2);
  scan.Scan("[", "Nov 1 00:00:01", "] auth fail", k1);
  scan.Scan("", "", "not the same text", k1);
  EXPECT_EQ(scan.scans(), 1u);
  EXPECT_TRUE(scan.Has(fail));
  scan.Scan("", "", "no such word", k2);
  EXPECT_EQ(scan.scans(), 2u);
  EXPECT_FALSE(scan.Has(fail));
  scan.Scan("", "", "no such word");  // the same bytes: no new scan
  EXPECT_EQ(scan.scans(), 2u);
  scan.Scan("", "", "auth fail");
  EXPECT_EQ(scan.scans(), 3u);
  EXPECT_TRUE(scan.Has(fail));
  scan.Scan("", "", "auth fail", k2);  // k2 was another text
  EXPECT_EQ(scan.scans(), 4u);
}

// The scan is shared by the filters of the thread that made them; one used
// on another thread looks for its strings itself and leaves it alone.
TEST(LiteralScanTest, AFilterUsedOnAnotherThreadDoesNotTouchTheSharedScan) {
  FilterSettings s;
  s.failregex = {"auth fail from <HOST>"};
  s.share_line_scans = true;
  Result<std::unique_ptr<Filter>> a = Filter::Create(s), b = Filter::Create(s);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::shared_ptr<LiteralScan> scan = LiteralScan::ForThisThread();
  const uint64_t before = scan->scans();
  std::vector<Failure> on_other, on_this;
  size_t found_other[2] = {9, 9};
  std::thread other([&] {
    (*a)->ProcessLine("auth fail from 192.0.2.1", 1700000000, 1, &on_other, nullptr, 0);
    found_other[0] = on_other.size();
    (*a)->ProcessLine("auth ok from 192.0.2.2", 1700000000, 2, &on_other, nullptr, 0);
    found_other[1] = on_other.size();
  });
  other.join();
  EXPECT_EQ(found_other[0], 1u);
  EXPECT_EQ(found_other[1], 0u);
  EXPECT_EQ(scan->scans(), before);
  (*b)->ProcessLine("auth fail from 192.0.2.1", 1700000000, 1, &on_this, nullptr, 0);
  EXPECT_EQ(on_this.size(), 1u);
  EXPECT_EQ(scan->scans(), before + 1);
}

TEST(LiteralScanTest, AgreesWithFindOnRandomText) {
  std::mt19937 rng(15);
  const std::string alphabet = "ab' :[]X";
  auto random_text = [&](size_t max) { return RandomText(rng, alphabet, 0, max); };
  LiteralScan scan;
  std::vector<std::string> texts;
  std::vector<uint32_t> ids;
  for (int i = 0; i < 40; ++i) {
    std::string t = random_text(4);
    if (t.empty()) continue;
    texts.push_back(t);
    ids.push_back(scan.Add(t));
  }
  for (int n = 0; n < 2000; ++n) {
    const std::string a = random_text(6), b = random_text(6), c = random_text(30);
    scan.Scan(a, b, c);
    const std::string whole = a + b + c;
    for (size_t i = 0; i < texts.size(); ++i) {
      ASSERT_EQ(scan.Has(ids[i]), whole.find(texts[i]) != std::string::npos)
          << "'" << texts[i] << "' in '" << whole << "'";
    }
  }
}

// Bytes of every high nibble, non-ASCII ones included, and lines up to
// 223 bytes long.
TEST(LiteralScanTest, AgreesWithFindOnRandomBytesAndLongLines) {
  std::mt19937 rng(151);
  std::string alphabet;
  for (int h = 0; h < 16; ++h) {
    alphabet += {static_cast<char>(h << 4 | 3), static_cast<char>(h << 4 | 12)};
  }
  auto random_text = [&](size_t min, size_t max) { return RandomText(rng, alphabet, min, max); };
  size_t present = 0, absent = 0;
  for (int round = 0; round < 20; ++round) {
    LiteralScan scan;
    std::vector<std::string> texts;
    std::vector<uint32_t> ids;
    for (int i = 0, count = 1 + static_cast<int>(rng() % 30); i < count; ++i) {
      texts.push_back(random_text(1, 3));
      ids.push_back(scan.Add(texts.back()));
    }
    for (int n = 0; n < 300; ++n) {
      const std::string a = random_text(0, 3), b = random_text(0, 20), c = random_text(0, 200);
      scan.Scan(a, b, c);
      const std::string whole = a + b + c;
      for (size_t i = 0; i < texts.size(); ++i) {
        const bool found = whole.find(texts[i]) != std::string::npos;
        ASSERT_EQ(scan.Has(ids[i]), found) << "string " << i << " in a line of " << whole.size();
        ++(found ? present : absent);
      }
    }
  }
  EXPECT_GT(present, 10000u);
  EXPECT_GT(absent, 10000u);
}

TEST(RequiredLiteralTest, AnyFoundInAgreesWithFindOnRandomText) {
  std::mt19937 rng(16);
  const std::string alphabet = "abcXY' :";
  auto random_text = [&](size_t min, size_t max) { return RandomText(rng, alphabet, min, max); };
  size_t found = 0, cases = 0;
  for (int n = 0; n < 3000; ++n) {
    std::vector<FailRegex::RequiredLiteral> lits;
    const size_t count = rng() % 7;  // 0..6: the one-pass path takes 2..4
    for (size_t k = 0; k < count; ++k) lits.emplace_back(random_text(1, 4));
    for (int h = 0; h < 10; ++h) {
      const std::string hay = random_text(0, 70);
      bool expect = false;
      for (const auto& lit : lits) expect = expect || hay.find(lit.text) != std::string::npos;
      ASSERT_EQ(FailRegex::RequiredLiteral::AnyFoundIn(lits, hay), expect) << "in '" << hay << "'";
      found += expect;
      ++cases;
    }
  }
  // Both answers are common, so a constant one cannot pass.
  EXPECT_GT(found, cases / 5);
  EXPECT_LT(found, cases - cases / 5);
}

// ---------------------------------------------------------------------------

constexpr char kConfDir[] = "/etc/fail2ban";
constexpr char kSampleLogs[] = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// The filter settings fail2ban's configuration gives filter.d/NAME, as a
// jail reads them (no DNS lookups, no findtime: every failure counts).
bool SettingsFor(const std::string& name, FilterSettings* out) {
  Result<LoadedFilter> loaded = LoadFilter(kConfDir, "filter.d/" + name, OrderedMap<std::string>());
  if (!loaded.ok()) return false;
  FilterSettings s;
  for (const Value& cmd : loaded->commands) {
    const Value::List& c = cmd.as_list();
    if (c.size() < 4) continue;
    const std::string& opt = c[2].as_string();
    std::vector<std::string> vals;
    if (c[0].as_string() == "multi-set") {
      for (const Value& v : c[3].as_list()) vals.push_back(v.ToPyStr());
    } else {
      for (size_t k = 3; k < c.size(); ++k) vals.push_back(c[k].ToPyStr());
    }
    if (vals.empty()) continue;
    if (opt == "prefregex") s.prefregex = vals.back();
    if (opt == "addfailregex") s.failregex.insert(s.failregex.end(), vals.begin(), vals.end());
    if (opt == "addignoreregex") {
      s.ignoreregex.insert(s.ignoreregex.end(), vals.begin(), vals.end());
    }
    if (opt == "maxlines") s.maxlines = std::atoi(vals.back().c_str());
    if (opt == "datepattern") s.datepattern = vals.back();
  }
  s.return_raw_host = true;
  s.check_find_time = false;
  *out = std::move(s);
  return true;
}

std::string Render(size_t line, const Failure& f) {
  std::string s = std::to_string(line) + ":" + std::to_string(f.regex_index) + ":" +
                  (f.id ? f.id->ToString() : "None") + ":" +
                  (f.time ? std::to_string(*f.time) : "None") + (f.nofail() ? ":nofail" : "");
  for (const std::string& m : f.fail.matches) s += "|" + m;
  for (const auto& [k, v] : f.fail.groups()) s += ";" + k + "=" + v.value_or("None");
  return s;
}

// Every stock filter on every fail2ban sample log (most lines of a log are
// for another filter: the gate's case), read as the daemon reads a file
// with many jails: all filters on one thread, sharing date searches and
// line scans, each line with one `now`. The failures, their order and
// their data must equal those of the same filters without a gate.
// Every stock filter, gated (sharing the date search and the line scan)
// and not, on every fail2ban sample line: the same failures and the same
// processed line. With `line_keys`, the gated filters get one key per line,
// as the daemon gives them. Without `keep_processed_line` (the daemon's
// setting), a gated filter's processed line is empty after a line its gate
// turned away and the plain filter's otherwise.
void ExpectTheGateChangesNothing(bool line_keys, bool keep_processed_line = true) {
  const std::vector<std::string> logs = ListDir(kSampleLogs);
  BANTAM_REQUIRE_TOOL(!logs.empty(), std::string("fail2ban's sample logs in ") + kSampleLogs,
                      "fail2ban");
  std::vector<std::string> names;
  std::vector<std::unique_ptr<Filter>> gated, plain;
  for (const std::string& file : ListDir(std::string(kConfDir) + "/filter.d")) {
    if (file.size() < 6 || file.substr(file.size() - 5) != ".conf") continue;
    const std::string name = file.substr(0, file.size() - 5);
    FilterSettings s;
    if (!SettingsFor(name, &s) || s.failregex.empty()) continue;
    FilterSettings g = s, p = s;
    g.share_date_searches = g.share_line_scans = true;
    g.keep_processed_line = keep_processed_line;
    p.line_gate = false;
    Result<std::unique_ptr<Filter>> fg = Filter::Create(std::move(g));
    Result<std::unique_ptr<Filter>> fp = Filter::Create(std::move(p));
    if (!fg.ok() || !fp.ok()) continue;  // a filter bantam cannot compile: not this test's
    names.push_back(name);
    gated.push_back(std::move(*fg));
    plain.push_back(std::move(*fp));
  }
  ASSERT_GT(names.size(), 50u);
  size_t failures_seen = 0, lines_seen = 0, not_kept = 0;
  std::vector<Failure> a, b;
  for (const std::string& log : logs) {
    std::ifstream in(std::string(kSampleLogs) + "/" + log);
    std::string line;
    uint64_t seq = 0;
    double now = 1700000000;
    while (std::getline(in, line)) {
      ++seq;
      ++lines_seen;
      now += 0.25;
      const uint64_t key = line_keys ? NewLineKey() : 0;
      for (size_t i = 0; i < names.size(); ++i) {
        gated[i]->ProcessLine(line, now, seq, &a, nullptr, key);
        plain[i]->ProcessLine(line, now, seq, &b);
        ASSERT_EQ(a.size(), b.size()) << names[i] << " on " << log << ":" << seq;
        for (size_t k = 0; k < a.size(); ++k) {
          ASSERT_EQ(Render(seq, a[k]), Render(seq, b[k])) << names[i] << " on " << log;
        }
        failures_seen += a.size();
        std::string pa = gated[i]->ProcessedLine(), pb = plain[i]->ProcessedLine();
        if (!keep_processed_line && pa.empty() && !pb.empty()) {
          // Only a line that matched nothing can have been turned away.
          ASSERT_TRUE(b.empty()) << names[i] << " on " << log << ":" << seq;
          ++not_kept;
          continue;
        }
        ASSERT_EQ(pa, pb) << names[i] << " on " << log << ":" << seq;
      }
    }
  }
  EXPECT_GT(lines_seen, 1000u);
  EXPECT_GT(failures_seen, 500u);
  if (keep_processed_line) {
    EXPECT_EQ(not_kept, 0u);
  } else {
    EXPECT_GT(not_kept, lines_seen);  // most filters turn most lines away
  }
}

TEST(LineGateTest, SameFailuresAsSearchingEveryLineOnFail2banSamples) {
  ExpectTheGateChangesNothing(false);
}

TEST(LineGateTest, SameFailuresWithLineKeys) { ExpectTheGateChangesNothing(true); }

TEST(LineGateTest, SameFailuresWithoutKeepingTurnedAwayLines) {
  ExpectTheGateChangesNothing(true, false);
}

// dropbear's prefregex needs only "ad", "ogin" or "xit" after its prefix,
// its failregexes much longer strings: the gate takes those, so a dropbear
// line that no failregex can match is turned away (its processed line is
// not kept) while a failure is still found.
TEST(LineGateTest, TakesTheFailregexesStringsWhenTheyAreLonger) {
  FilterSettings s;
  BANTAM_REQUIRE_TOOL(SettingsFor("dropbear", &s), std::string(kConfDir) + "/filter.d/dropbear.conf",
                      "fail2ban");
  ASSERT_FALSE(s.prefregex.empty());
  s.keep_processed_line = false;
  Result<std::unique_ptr<Filter>> f = Filter::Create(std::move(s));
  ASSERT_TRUE(f.ok()) << f.status().message();
  std::vector<Failure> out;
  double now = 1700000000;
  (*f)->ProcessLine("Nov 14 22:13:20 host dropbear[1]: Bad thing happened", now, 1, &out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ((*f)->ProcessedLine(), "");  // turned away by the gate
  (*f)->ProcessLine("Nov 14 22:13:21 host dropbear[1]: Bad password attempt for 'root' from "
                    "192.0.2.7:5000",
                    now + 1, 2, &out);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].id.has_value());
  EXPECT_EQ(out[0].id->ToString(), "192.0.2.7");
  EXPECT_NE((*f)->ProcessedLine(), "");
}

// ---------------------------------------------------------------------------
// Date search short cuts.

TEST(RulesOutPrefixTest, OnlyWhatNoLongerSubjectCanMatch) {
  FailRegexMatch m;
  auto re = [](const char* r) {
    Result<FailRegex> c = FailRegex::Compile(r, RegexKind::kDateRegex);
    EXPECT_TRUE(c.ok()) << r;
    return std::move(*c);
  };
  const FailRegex abc = re("^abc"), any = re("abc"), digits = re(R"(^(?:\W{0,2})?\d{4}-)");
  EXPECT_TRUE(abc.anchored());
  EXPECT_FALSE(any.anchored());
  EXPECT_TRUE(abc.RulesOutPrefix("abx", &m));
  EXPECT_TRUE(abc.RulesOutPrefix("b", &m));
  EXPECT_FALSE(abc.RulesOutPrefix("ab", &m));    // "abc..." still can
  EXPECT_FALSE(abc.RulesOutPrefix("abcd", &m));  // a match
  EXPECT_FALSE(any.RulesOutPrefix("xyz", &m));   // unanchored: it may start later
  EXPECT_TRUE(digits.RulesOutPrefix("[Nov", &m));
  EXPECT_TRUE(digits.RulesOutPrefix("Nov ", &m));
  EXPECT_FALSE(digits.RulesOutPrefix("[202", &m));
  EXPECT_FALSE(digits.RulesOutPrefix("  20", &m));
  // An assertion at the end of the prefix looks past it: never ruled out.
  const FailRegex word = re(R"(^ab\b)"), end = re("^ab$"), ahead = re("^ab(?=x)");
  EXPECT_FALSE(word.RulesOutPrefix("ab", &m));
  EXPECT_FALSE(end.RulesOutPrefix("ab", &m));
  EXPECT_FALSE(ahead.RulesOutPrefix("ab", &m));
  EXPECT_TRUE(ahead.RulesOutPrefix("ac", &m));
  // (?m)^ is not anchored: it may match after a newline.
  EXPECT_FALSE(re("(?m)^abc").anchored());
}

// One detector with the short cuts and one without, fed the same lines
// with the same `now`: every match and, at the end, the template list
// (order and hit counts) must be equal.
class DatePair {
 public:
  explicit DatePair(const std::string& datepattern, const std::string& logtimezone = "") {
    DateDetectorOptions a, b;
    a.datepattern = b.datepattern = datepattern;
    a.logtimezone = b.logtimezone = logtimezone;
    b.search_shortcuts = false;
    Result<DateDetector> da = DateDetector::Create(a), db = DateDetector::Create(b);
    ok_ = da.ok() && db.ok();
    if (ok_) {
      fast_.emplace(std::move(*da));
      slow_.emplace(std::move(*db));
    }
  }
  bool ok() const { return ok_; }
  // "" if both agree, else what differs.
  // `key`: the line's key for the detector with short cuts.
  std::string Feed(std::string_view line, double now, uint64_t key = 0) {
    const std::optional<DateMatch> a = fast_->Match(line, now, key), b = slow_->Match(line, now);
    const std::string ra = Render(a), rb = Render(b);
    return ra == rb ? "" : "with short cuts " + ra + ", without " + rb;
  }
  std::string Templates() const {
    return RenderTemplates(*fast_) == RenderTemplates(*slow_)
               ? ""
               : RenderTemplates(*fast_) + " vs " + RenderTemplates(*slow_);
  }
  uint64_t shared_wins() const { return fast_->shared_wins(); }
  uint64_t ruled_out_lines() const { return fast_->ruled_out_lines(); }
  uint64_t hits() const {
    uint64_t n = 0;
    for (const DateTemplateStats& t : fast_->templates()) n += t.hits;
    return n;
  }

 private:
  static std::string Render(const std::optional<DateMatch>& m) {
    if (!m) return "none";
    return std::to_string(m->begin) + "-" + std::to_string(m->end) +
           " t=" + (m->time ? std::to_string(*m->time) : "None") + " #" +
           std::to_string(m->template_index) + (m->raised ? " raised" : "");
  }
  static std::string RenderTemplates(const DateDetector& d) {
    std::string s;
    for (const DateTemplateStats& t : d.templates())
      s += t.name + "=" + std::to_string(t.hits) + "/" + std::to_string(t.regex_hits) + ";";
    return s;
  }
  bool ok_ = false;
  std::optional<DateDetector> fast_, slow_;
};

TEST(DateShortcutTest, EpochStartsAsTheRegexHasThem) {
  DatePair p("EPOCH");
  ASSERT_TRUE(p.ok());
  const char* lines[] = {
      "1700000000 at the start",
      "[1700000000] bracketed",
      "type=AVC msg=audit(1700000000.123:44): avc: denied",
      "type=AVC msg=AUDIT(1700000000.123:44): upper case, no match",
      "xaudit(1700000000.1:4) no word boundary before audit",
      "no date at all, 1700000000 in the middle",
      "[\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0] "
      "Arabic-Indic digits",
      "\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0 at the "
      "start",
      "audit(",
      "[",
      "",
      "(",
      "audit(1700000000:1)",
      // Ten digits are needed where a match may start; nine are not enough.
      "[2026-12-06 11:36:37] a bracketed date that is not an epoch",
      "170000000 nine digits at the start",
      "[170000000] nine digits bracketed",
      "type=AVC msg=audit(170000000.123:44): nine digits",
      "17000000001 eleven digits",
      "[1700000000",
      "1700000000",
      "170000000",
      "[\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0\xd9\xa0 five Arabic-Indic digits, ten bytes",
      "[1\xd9\xa7\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0] mixed",
  };
  double now = 1700000100;
  for (const char* line : lines) {
    EXPECT_EQ(p.Feed(line, now), "") << line;
    now += 1;
  }
  EXPECT_EQ(p.Templates(), "");
  EXPECT_GT(p.hits(), 3u);
}

// A line-begin EPOCH template ({^LN-BEG}EPOCH, and the one in `^{DATE}`'s
// list) is ruled out by its own rule: ten digits after at most two non-word
// characters at the line's start.
TEST(DateShortcutTest, EpochAtTheLineBeginAsTheRegexHasIt) {
  for (const char* pattern : {"{^LN-BEG}EPOCH", "^{DATE}", "{^LN-BEG}"}) {
    DatePair p(pattern);
    ASSERT_TRUE(p.ok()) << pattern;
    const char* lines[] = {
        "1700000000 at the start",
        "[1700000000] bracketed",
        "[[1700000000 two non-word characters",
        "[[[1700000000 three: no match",
        "  1700000000 two blanks",
        "_1700000000 an underscore is a word character",
        "x1700000000 so is a letter",
        "\xc3\xa9" "1700000000 a non-ASCII letter",
        "\xe2\x80\x94\xe2\x80\x94" "1700000000 two dashes of three bytes",
        "\xe2\x80\x94\xe2\x80\x94\xe2\x80\x94" "1700000000 three dashes",
        "[\xd9\xa1\xd9\xa7\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0"
        "\xd9\xa0] Arabic-Indic digits",
        "[170000000] nine digits",
        "[17000000001] eleven",
        "[2026-12-06 11:36:37] a date that is not an epoch",
        "[1700 not ten digits",
        "[",
        "",
        "1700000000",
        "[1700000000",
    };
    double now = 1700000100;
    for (int round = 0; round < 2; ++round) {
      for (const char* line : lines) {
        EXPECT_EQ(p.Feed(line, now), "") << pattern << ": " << line;
        now += 1;
      }
    }
    EXPECT_EQ(p.Templates(), "") << pattern;
    EXPECT_GT(p.hits(), 10u) << pattern;
  }
}

// recidive's `^{DATE}` on a log whose lines start with "[": no template can
// match, and every one is ruled out without a search, the EPOCH template by
// its rule on each line (which looks past the first bytes). A line with the
// same first bytes on which an epoch may start is still searched.
TEST(DateShortcutTest, EveryTemplateRuledOutTheEpochOneLineByLine) {
  DatePair p("^{DATE}");
  ASSERT_TRUE(p.ok());
  struct Step {
    const char* line;
    uint64_t ruled_out;  // lines ruled out so far
  };
  const Step steps[] = {
      // The first line with these bytes asks every template.
      {"[Nov 25 16:18:31] NOTICE[1] chan_sip.c: no date at the start", 0},
      {"[Nov 25 16:18:32] NOTICE[1] chan_sip.c: again", 1},
      {"[Nov 25 16:18:33] NOTICE[1] chan_sip.c: and again", 2},
      {"[1700 not ten digits", 2},
      // The same four bytes, every other template ruled out by them: the
      // EPOCH template must be searched, and matches.
      {"[1700000000] an epoch", 2},
      // EPOCH, now the last template, is searched first and fails.
      {"[1700 not ten digits again", 3},
      {"[Nov 25 16:18:34] NOTICE[1] chan_sip.c: back", 4},
  };
  double now = 1700000100;
  for (const Step& s : steps) {
    EXPECT_EQ(p.Feed(s.line, now), "") << s.line;
    EXPECT_EQ(p.ruled_out_lines(), s.ruled_out) << s.line;
    now += 1;
  }
  EXPECT_EQ(p.Templates(), "");
  EXPECT_EQ(p.hits(), 1u);
}

// Every datepattern of a stock filter, the default set and the special
// ones, on every fail2ban sample log and on its lines with their first
// bytes changed (where the prefix verdicts and EPOCH starts decide).
TEST(DateShortcutTest, SameDatesAsSearchingEveryTemplateOnFail2banSamples) {
  const std::vector<std::string> logs = ListDir(kSampleLogs);
  BANTAM_REQUIRE_TOOL(!logs.empty(), std::string("fail2ban's sample logs in ") + kSampleLogs,
                      "fail2ban");
  std::vector<std::string> patterns = {"",
                                       "EPOCH",
                                       "LEPOCH",
                                       "^EPOCH",
                                       "TAI64N",
                                       "{^LN-BEG}TAI64N",
                                       "{^LN-BEG}",
                                       "^{DATE}",
                                       "{^LN-BEG}%Y-%m-%d %H:%M:%S",
                                       "%d/%b/%Y:%H:%M:%S"};
  for (const std::string& file : ListDir(std::string(kConfDir) + "/filter.d")) {
    if (file.size() < 6 || file.substr(file.size() - 5) != ".conf") continue;
    FilterSettings s;
    if (SettingsFor(file.substr(0, file.size() - 5), &s) && !s.datepattern.empty() &&
        std::find(patterns.begin(), patterns.end(), s.datepattern) == patterns.end()) {
      patterns.push_back(s.datepattern);
    }
  }
  ASSERT_GT(patterns.size(), 14u);
  const std::vector<std::string> heads = {"", "[", "  ", "@", "(", "x", "\xc3\xa9"};
  size_t lines_seen = 0;
  uint64_t hits = 0;
  for (const std::string& pattern : patterns) {
    DatePair p(pattern);
    if (!p.ok()) continue;  // a pattern bantam rejects: not this test's
    double now = 1700000000;
    for (const std::string& log : logs) {
      std::ifstream in(std::string(kSampleLogs) + "/" + log);
      std::string line;
      while (std::getline(in, line)) {
        for (const std::string& head : heads) {
          for (size_t cut : {size_t{0}, size_t{1}, size_t{3}}) {
            if (cut > line.size() || (head.empty() && cut > 0)) continue;
            const std::string changed = head + line.substr(cut);
            now += 0.25;
            ++lines_seen;
            ASSERT_EQ(p.Feed(changed, now), "")
                << "'" << pattern << "' on " << log << ": " << changed;
          }
        }
      }
      ASSERT_EQ(p.Templates(), "") << "'" << pattern << "' after " << log;
    }
    hits += p.hits();
  }
  EXPECT_GT(lines_seen, 100000u);
  EXPECT_GT(hits, 10000u);
}

// Detectors of different datepatterns and zones on one thread, each fed
// every line in turn as the jails of one file are: where their last
// template is the same anchored regex they share its search and
// conversion (MatchAnchoredLast). Each must still give what a detector of
// its own, searching every template, gives. Every line comes twice, the
// second time with a `now` half a year later (another inferred year).
void ExpectSharedDatesExact(bool line_keys) {
  const std::vector<std::string> logs = ListDir(kSampleLogs);
  BANTAM_REQUIRE_TOOL(!logs.empty(), std::string("fail2ban's sample logs in ") + kSampleLogs,
                      "fail2ban");
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"{^LN-BEG}", ""},
      {"", ""},
      {"^(?:%Y-)?%m-%d[ T]%H:%M:%S(?:\\.%f)?\n{^LN-BEG}", ""},
      {"{^LN-BEG}TAI64N\n{^LN-BEG}", ""},
      {"{^LN-BEG}", "UTC+0200"},
      {"", "UTC-0130"},
      {"^{DATE}", ""},
      {"{^LN-BEG}%Y-%m-%d %H:%M:%S", ""},
  };
  std::vector<std::unique_ptr<DatePair>> pairs;
  for (const auto& [pattern, zone] : settings) {
    pairs.push_back(std::make_unique<DatePair>(pattern, zone));
    ASSERT_TRUE(pairs.back()->ok()) << pattern;
  }
  size_t lines_seen = 0;
  double now = 1700000000;
  for (const std::string& log : logs) {
    std::ifstream in(std::string(kSampleLogs) + "/" + log);
    std::string line;
    while (std::getline(in, line)) {
      now += 0.5;
      ++lines_seen;
      for (double at : {now, now + 183 * 86400.0}) {
        const uint64_t key = line_keys ? NewLineKey() : 0;
        for (size_t k = 0; k < pairs.size(); ++k) {
          ASSERT_EQ(pairs[k]->Feed(line, at, key), "")
              << "'" << settings[k].first << "' " << settings[k].second << " on " << log << ": "
              << line;
        }
      }
    }
  }
  uint64_t shared = 0;
  for (size_t k = 0; k < pairs.size(); ++k) {
    EXPECT_EQ(pairs[k]->Templates(), "") << settings[k].first << " " << settings[k].second;
    EXPECT_GT(pairs[k]->hits(), 200u) << settings[k].first;
    shared += pairs[k]->shared_wins();
  }
  EXPECT_GT(lines_seen, 2000u);
  // The sharing this is about took place, on more than a line in two.
  EXPECT_GT(shared, lines_seen);
}

TEST(DateShortcutTest, DetectorsOfOtherPatternsAndZonesShareSearchesExactly) {
  ExpectSharedDatesExact(false);
}

TEST(DateShortcutTest, DetectorsShareSearchesExactlyByLineKey) { ExpectSharedDatesExact(true); }

}  // namespace
}  // namespace bantam
