#include "bantam/filter.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace bantam {
namespace {

constexpr double kNow = 1124013600;

std::unique_ptr<Filter> Make(FilterSettings s) {
  Result<std::unique_ptr<Filter>> f = Filter::Create(std::move(s));
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(*f) : nullptr;
}

// Runs `lines` (time known, as from the journal) and renders every failure
// as "lineno:regex:id[:key=value...]" for compact assertions.
std::vector<std::string> Feed(Filter* f, const std::vector<std::string>& lines,
                             const std::vector<std::string>& keys = {}) {
  std::vector<std::string> out;
  std::vector<Failure> failures;
  for (size_t i = 0; i < lines.size(); ++i) {
    f->ProcessLineWithTime(lines[i], kNow + static_cast<double>(i), "", kNow + 10,
                           static_cast<uint64_t>(i + 1), &failures);
    for (const Failure& x : failures) {
      std::string s = std::to_string(i + 1) + ":" + std::to_string(x.regex_index) + ":" +
                      (x.id ? x.id->ToString() : "None");
      if (x.nofail()) s += ":nofail";
      for (const std::string& k : keys) {
        if (k == "matches") {
          s += ":matches=" + std::to_string(x.fail.matches.size());
        } else if (k == "users") {
          std::string u;
          for (const std::string& v : x.fail.users) u += (u.empty() ? "" : ",") + v;
          s += ":users=" + u;
        } else if (k == "ip") {
          s += ":ip=" + x.fail.ip.value_or("-");
        } else {
          s += ":" + k + "=" + std::string(x.fail.Get(k).value_or("-"));
        }
      }
      out.push_back(s);
    }
  }
  return out;
}

using Lines = std::vector<std::string>;

TEST(Filter, HostFromFailregexAndMatchedLine) {
  FilterSettings s;
  s.failregex = {"^auth failed from <HOST> port \\d+$"};
  auto f = Make(s);
  ASSERT_TRUE(f);
  EXPECT_EQ(Feed(f.get(), {"auth failed from 192.0.2.7 port 22", "auth ok from 192.0.2.8 port 22"},
                {"ip4", "matches"}),
            Lines({"1:0:192.0.2.7:ip4=192.0.2.7:matches=1"}));
  std::vector<Failure> failures;
  f->ProcessLineWithTime("auth failed from 2001:db8::1 port 1", 5, "DATE ", kNow, 9, &failures);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].id->ToString(), "2001:db8::1");
  EXPECT_EQ(failures[0].time, 5);
  // "matches" holds the whole line, date text included, as fail2ban keeps it.
  EXPECT_EQ(failures[0].fail.matches, Lines({"DATE auth failed from 2001:db8::1 port 1"}));
}

TEST(Filter, OnlyFirstMatchingFailregexUnlessCheckAll) {
  FilterSettings s;
  s.failregex = {"from <HOST>", "failed from <ADDR>"};
  auto first = Make(s);
  EXPECT_EQ(Feed(first.get(), {"failed from 192.0.2.1"}), Lines({"1:0:192.0.2.1"}));
  s.check_all_regex = true;
  auto all = Make(s);
  EXPECT_EQ(Feed(all.get(), {"failed from 192.0.2.1"}), Lines({"1:0:192.0.2.1", "1:1:192.0.2.1"}));
}

TEST(Filter, PrefregexContentIsWhatFailregexesSee) {
  FilterSettings s;
  s.prefregex = "^pbx\\[<F-PID>\\d+</F-PID>\\]: <F-CONTENT>.+</F-CONTENT>$";
  s.failregex = {"^Registration failed for '<HOST>'$"};
  auto f = Make(s);
  LineResult r;
  std::vector<Failure> failures;
  f->ProcessLineWithTime("pbx[42]: Registration failed for '192.0.2.9'", kNow, "", kNow, 1,
                         &failures, &r);
  EXPECT_TRUE(r.prefregex_matched);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].id->ToString(), "192.0.2.9");
  // Prefregex groups come with the failure; the content group does not.
  EXPECT_EQ(failures[0].fail.Get("pid").value_or("-"), "42");
  EXPECT_FALSE(failures[0].fail.Has("content"));
  // A line the prefregex rejects never reaches the failregexes.
  f->ProcessLineWithTime("other[42]: Registration failed for '192.0.2.9'", kNow, "", kNow, 2,
                         &failures, &r);
  EXPECT_FALSE(r.prefregex_matched);
  EXPECT_TRUE(failures.empty());
}

TEST(Filter, IgnoreregexDropsTheFailure) {
  FilterSettings s;
  s.failregex = {"failed for <HOST>"};
  s.ignoreregex = {"for 192\\.0\\.2\\.1\\b"};
  auto f = Make(s);
  LineResult r;
  std::vector<Failure> failures;
  f->ProcessLineWithTime("failed for 192.0.2.1", kNow, "", kNow, 1, &failures, &r);
  EXPECT_TRUE(failures.empty());
  EXPECT_EQ(r.ignored_by, std::vector<int>({0}));
  f->ProcessLineWithTime("failed for 192.0.2.10", kNow, "", kNow, 2, &failures, &r);
  EXPECT_EQ(failures.size(), 1u);
  EXPECT_TRUE(r.ignored_by.empty());
}

TEST(Filter, IgnoreregexCheckedFirstWhenFewComparedToFailregexes) {
  // With at least three more failregexes than ignoreregexes, fail2ban runs
  // the ignoreregexes over the line before any failregex.
  FilterSettings s;
  s.failregex = {"a <HOST>", "b <HOST>", "c <HOST>", "d <HOST>"};
  s.ignoreregex = {"^skip"};
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(), {"skip a 192.0.2.1", "x a 192.0.2.1"}), Lines({"2:0:192.0.2.1"}));
}

TEST(Filter, FailureIdOtherThanHostKeepsTheAddress) {
  FilterSettings s;
  s.failregex = {"^session <F-ID>\\w+</F-ID> from <HOST>$", "^token <F-ID>\\S+</F-ID> bad$"};
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(), {"session abc from 192.0.2.3", "token xyz bad"}, {"ip"}),
            Lines({"1:0:abc:ip=192.0.2.3", "2:1:xyz:ip=-"}));
}

TEST(Filter, AlternateUserGroupsMerge) {
  FilterSettings s;
  s.failregex = {"^(?:user <F-USER>\\w+</F-USER>|login <F-ALT_USER>\\w+</F-ALT_USER>) from <HOST>$"};
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(), {"user bob from 192.0.2.4", "login eve from 192.0.2.5"}, {"user"}),
            Lines({"1:0:192.0.2.4:user=bob", "2:0:192.0.2.5:user=eve"}));
}

TEST(Filter, MultiLineFailureJoinedByMlfid) {
  // The connection id links a line naming the user to a later line naming
  // the address; the failure reports both lines.
  FilterSettings s;
  s.failregex = {"^conn <F-MLFID>\\d+</F-MLFID>: invalid user <F-USER>\\S+</F-USER>$",
                 "^conn <F-MLFID>\\d+</F-MLFID>: from <HOST> disconnected$"};
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(),
                {"conn 7: invalid user root", "conn 8: invalid user admin",
                 "conn 7: from 192.0.2.6 disconnected"},
                {"user", "mlfid", "matches"}),
            Lines({"3:1:192.0.2.6:user=root:mlfid=7:matches=2"}));
}

TEST(Filter, PendingMlfidFailuresReportedOnlyWithoutIgnorePending) {
  FilterSettings s;
  s.failregex = {"^conn <F-MLFID>\\d+</F-MLFID>: bad password$"};
  s.check_all_regex = true;
  s.ignore_pending = false;
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(), {"conn 1: bad password"}), Lines({"1:0:None"}));
}

TEST(Filter, NofailAndForgetOnAConnection) {
  // A successful login (F-NOFAIL) on a connection is not a failure. The
  // disconnect (F-MLFFORGET) reports what the connection gathered and then
  // forgets it. Expectations checked against fail2ban 1.0.2's Filter.
  FilterSettings s;
  s.failregex = {
      "^conn <F-MLFID>\\d+</F-MLFID>: <F-NOFAIL>accepted</F-NOFAIL> from <HOST>$",
      "^conn <F-MLFID>\\d+</F-MLFID>: failed from <HOST>$",
      "^conn <F-MLFID>\\d+</F-MLFID>: <F-MLFFORGET>closed</F-MLFFORGET>$",
  };
  s.check_all_regex = true;
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(),
                {"conn 1: accepted from 192.0.2.1", "conn 1: closed", "conn 2: failed from 192.0.2.2"}),
            Lines({"1:0:192.0.2.1:nofail", "2:2:192.0.2.1", "3:1:192.0.2.2"}));
  s.check_all_regex = false;  // the daemon's mode: the nofail line reports nothing
  auto first = Make(s);
  EXPECT_EQ(Feed(first.get(), {"conn 1: accepted from 192.0.2.1", "conn 1: closed",
                               "conn 2: failed from 192.0.2.2"},
                 {"matches"}),
            Lines({"2:2:192.0.2.1:matches=2", "3:1:192.0.2.2:matches=1"}));
}

TEST(Filter, MaxlinesBufferMatchesAcrossLinesAndConsumesThem) {
  FilterSettings s;
  s.maxlines = 3;
  s.failregex = {"^begin<SKIPLINES>from <HOST> rejected$"};
  auto f = Make(s);
  EXPECT_EQ(Feed(f.get(), {"begin", "noise", "from 192.0.2.8 rejected", "from 192.0.2.9 rejected"},
                {"matches"}),
            Lines({"3:0:192.0.2.8:matches=2"}));
  std::vector<uint64_t> seqs;
  f->LineBufferSeqs(&seqs);
  // The skipped "noise" line stays buffered; the matched lines are gone.
  EXPECT_EQ(seqs, std::vector<uint64_t>({2, 4}));
}

class FakeResolver : public Resolver {
 public:
  std::vector<IpAddr> HostToIp(std::string_view host) override {
    lookups.emplace_back(host);
    if (host == "bad.example") return {IpAddr::FromText("198.51.100.1")};
    return {};
  }
  std::vector<std::string> IpToName(const IpAddr&) override { return {}; }
  std::vector<std::string> lookups;
};

TEST(Filter, HostNamesResolvedOnlyWhenUsednsAllows) {
  FakeResolver resolver;
  FilterSettings s;
  s.failregex = {"^failed from <HOST>$"};
  s.usedns = "yes";
  s.resolver = &resolver;
  auto yes = Make(s);
  EXPECT_EQ(Feed(yes.get(), {"failed from bad.example", "failed from unknown.example"}),
            Lines({"1:0:198.51.100.1"}));
  EXPECT_EQ(resolver.lookups, Lines({"bad.example", "unknown.example"}));

  s.usedns = "no";  // <HOST> then only matches addresses
  auto no = Make(s);
  EXPECT_EQ(Feed(no.get(), {"failed from bad.example", "failed from 192.0.2.1"}),
            Lines({"2:0:192.0.2.1"}));

  s.usedns = "yes";
  s.return_raw_host = true;  // fail2ban-regex -r: the name itself is the id
  resolver.lookups.clear();
  auto raw = Make(s);
  EXPECT_EQ(Feed(raw.get(), {"failed from bad.example"}), Lines({"1:0:bad.example"}));
  EXPECT_TRUE(resolver.lookups.empty());
}

TEST(Filter, HugeLineIsCutAndWarned) {
  std::vector<std::string> warnings;
  FilterSettings s;
  s.failregex = {"^failed from <HOST>"};
  s.warn = [&](const std::string& m) { warnings.push_back(m); };
  auto f = Make(s);
  const std::string line = "failed from 192.0.2.1 " + std::string(4 << 20, 'x');
  EXPECT_EQ(Feed(f.get(), {line}), Lines({"1:0:192.0.2.1"}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("cut to 65536 bytes"), std::string::npos) << warnings[0];
}

// In operation a date more than a minute away from now is taken as now,
// the difference cut to whole seconds first (fail2ban's int()): 60.9 s off
// keeps the line's date, 61 s does not. Said once.
TEST(Filter, InOperationADateOverAMinuteOffIsTakenAsNow) {
  std::vector<std::string> warnings;
  FilterSettings s;
  s.failregex = {"failed from <HOST>"};
  s.datepattern = "{^LN-BEG}EPOCH";
  s.warn = [&](const std::string& m) { warnings.push_back(m); };
  auto f = Make(s);
  ASSERT_TRUE(f);
  std::vector<Failure> failures;
  uint64_t seq = 0;
  auto time_at = [&](double now) {
    f->ProcessLine("1124013600 failed from 192.0.2.1", now, ++seq, &failures);
    return failures.size() == 1 ? failures[0].time : -1.0;
  };
  EXPECT_EQ(time_at(kNow), kNow);
  EXPECT_EQ(time_at(kNow + 60.9), kNow);
  EXPECT_EQ(time_at(kNow - 60.9), kNow);
  EXPECT_EQ(time_at(kNow + 61), kNow + 61);
  EXPECT_EQ(time_at(kNow - 61), kNow - 61);
  EXPECT_EQ(time_at(kNow + 3600.5), kNow + 3600.5);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("Detected a log entry 61s before the current time"),
            std::string::npos)
      << warnings[0];
}

TEST(Filter, CatastrophicBacktrackingIsAWarningNotAHang) {
  std::vector<std::string> warnings;
  FilterSettings s;
  s.failregex = {"^(\\w+\\s?)*<HOST>$"};
  s.warn = [&](const std::string& m) { warnings.push_back(m); };
  auto f = Make(s);
  EXPECT_TRUE(Feed(f.get(), {std::string(5000, 'a') + " !"}).empty());
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("cannot match failregex '^(\\w+\\s?)*<HOST>$'"), std::string::npos)
      << warnings[0];
}

TEST(Filter, BadRegexIsACreateError) {
  FilterSettings s;
  s.failregex = {"^failed (from <HOST>"};
  Result<std::unique_ptr<Filter>> f = Filter::Create(s);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().message(),
            "cannot compile failregex '^failed (from <HOST>': missing ), unterminated subpattern "
            "at offset 8");
}

TEST(Filter, PySplitLinesSeparators) {
  EXPECT_EQ(PySplitLines("a\nb\r\nc\rd\x0b"
                         "e\xc2\x85"
                         "f\xe2\x80\xa8g\n"),
            std::vector<std::string_view>({"a", "b", "c", "d", "e", "f", "g"}));
  EXPECT_TRUE(PySplitLines("").empty());
}


// Jails on one file: filters made with share_date_searches and fed each line
// in turn (one `now` per line) find exactly what each finds alone, also
// when their settings differ after the date and one of them misses lines.
TEST(Filter, SharedDateSearchesFindWhatEachFilterFindsAlone) {
  const Lines lines = {
      "Jan 23 21:59:59 host sshd[1]: auth failed from 192.0.2.1",
      "Jan 23 21:59:59 host sshd[1]: auth failed from 192.0.2.2",
      "2005-01-23 22:00:01 host x: auth failed from 192.0.2.3",
      "no date: auth failed from 192.0.2.4",
      "Jan 23 22:00:02 host y: 2005-01-23 22:00:03 auth failed from 192.0.2.5",
      "Jan 23 22:00:0 host y: auth failed from 192.0.2.6",
      "Jan 23 22:00:04 host y: auth failed from 192.0.2.7",
  };
  auto settings = [](bool share, int maxlines) {
    FilterSettings s;
    s.failregex = {maxlines > 1 ? "auth failed from <HOST>$" : "auth failed from <HOST>$"};
    s.maxlines = maxlines;
    s.check_find_time = false;
    s.share_date_searches = share;
    return s;
  };
  auto render = [](size_t i, const std::vector<Failure>& failures) {
    std::string out;
    for (const Failure& x : failures) {
      out += std::to_string(i) + ":" + (x.id ? x.id->ToString() : "None") + "@" +
             (x.time ? std::to_string(static_cast<int64_t>(*x.time)) : "none") + " ";
    }
    return out;
  };
  const double now = 1106600000;  // 2005-01-24
  std::vector<std::unique_ptr<Filter>> shared, alone;
  for (int maxlines : {1, 1, 2}) {
    shared.push_back(Make(settings(true, maxlines)));
    alone.push_back(Make(settings(false, maxlines)));
  }
  std::vector<Failure> got, want;
  for (size_t i = 0; i < lines.size(); ++i) {
    for (size_t k = 0; k < shared.size(); ++k) {
      if (k == 1 && i == 3) continue;  // one filter misses a line (an idle jail)
      shared[k]->ProcessLine(lines[i], now, i + 1, &got);
      alone[k]->ProcessLine(lines[i], now, i + 1, &want);
      EXPECT_EQ(render(i, got), render(i, want)) << "filter " << k << ": " << lines[i];
    }
  }
  EXPECT_EQ(shared[0]->date_detector().replayed(), 0u);
  EXPECT_EQ(shared[2]->date_detector().replayed(), lines.size());
}

}  // namespace
}  // namespace bantam
