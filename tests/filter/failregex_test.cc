#include "bantam/failregex.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../testing/oracle_io.h"

namespace bantam {
namespace {

// ---------------------------------------------------------------------------
// Helpers

// The translation, or "ERROR: message".
std::string Tr(std::string_view regex, RegexKind kind = RegexKind::kIgnoreRegex,
               const FailRegexOptions& options = {}) {
  Result<std::string> r = TranslateFailRegex(regex, kind, options);
  return r.ok() ? *r : "ERROR: " + r.status().message();
}

std::string Err(std::string_view regex, RegexKind kind = RegexKind::kIgnoreRegex) {
  Result<std::string> r = TranslateFailRegex(regex, kind);
  return r.ok() ? "OK: " + *r : r.status().message();
}

FailRegex MustCompile(std::string_view regex, RegexKind kind = RegexKind::kIgnoreRegex,
                      const FailRegexOptions& options = {}) {
  Result<FailRegex> r = FailRegex::Compile(regex, kind, options);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return std::move(*FailRegex::Compile("x", RegexKind::kIgnoreRegex));
  return std::move(*r);
}

// Group `name` of a search of `subject`, "<none>" when unset, "<nomatch>".
std::string Find(const FailRegex& re, std::string_view subject, std::string_view name = "") {
  FailRegexMatch m;
  Result<bool> found = re.Search(subject, &m);
  if (!found.ok()) return "<error: " + found.status().message() + ">";
  if (!*found) return "<nomatch>";
  const int index = name.empty() ? 0 : re.GroupIndex(name);
  std::optional<std::string_view> g = m.Group(index);
  return g ? std::string(*g) : "<none>";
}

std::string Utf8(char32_t c) {
  std::string out;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tags: each expands to fail2ban 1.0.2's regex, then to PCRE2 syntax.

constexpr std::string_view kIp4 = R"((?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3}))";
constexpr std::string_view kIp6 =
    R"((?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)))";
constexpr std::string_view kDns = R"((?P<dns>[\w\-.\^_]*\w))";
constexpr std::string_view kNotSpace = R"([^\t-\r\x{1c}-\x{1f}\x{85}\p{Z}])";
constexpr std::string_view kSpace = R"([\t-\r\x{1c}-\x{1f}\x{85}\p{Z}])";

std::string Addr() { return R"(\[?(?:)" + std::string(kIp4) + "|" + std::string(kIp6) + R"()\]?)"; }

TEST(FailRegexTranslateTest, HostTagWithDns) {
  EXPECT_EQ(Tr("^<HOST>$"), "^(?:" + Addr() + "|" + std::string(kDns) + ")$");
}

TEST(FailRegexTranslateTest, HostTagWithUseDnsNo) {
  FailRegexOptions options;
  options.host_matches_dns = false;
  EXPECT_EQ(Tr("^<HOST>$", RegexKind::kFailRegex, options), "^" + Addr() + "$");
}

TEST(FailRegexTranslateTest, AddressTags) {
  EXPECT_EQ(Tr("<ADDR>"), Addr());
  EXPECT_EQ(Tr("<F-ADDR/>"), Addr());
  EXPECT_EQ(Tr("<IP4>"), kIp4);
  EXPECT_EQ(Tr("<F-IP4/>"), kIp4);
  EXPECT_EQ(Tr("<IP6>"), kIp6);
  EXPECT_EQ(Tr("<F-IP6/>"), kIp6);
  EXPECT_EQ(Tr("<DNS>"), kDns);
  EXPECT_EQ(Tr("<F-DNS/>"), kDns);
  EXPECT_EQ(Tr("<CIDR>"), R"((?P<cidr>\d+))");
  EXPECT_EQ(Tr("<F-CIDR/>"), R"((?P<cidr>\d+))");
  const std::string subnet =
      R"(\[?(?:)" + std::string(kIp4) + "|" + std::string(kIp6) + R"()(?:/(?P<cidr>\d+))?\]?)";
  EXPECT_EQ(Tr("<SUBNET>"), subnet);
  EXPECT_EQ(Tr("<F-SUBNET/>"), subnet);
}

TEST(FailRegexTranslateTest, FailureIdAndPortTags) {
  EXPECT_EQ(Tr("<F-ID/>"), "(?P<fid>" + std::string(kNotSpace) + "+)");
  EXPECT_EQ(Tr("<F-PORT/>"), R"((?P<fport>\w+))");
  // Open/close forms map id and port like fail2ban's R_MAP.
  EXPECT_EQ(Tr("<F-ID>x</F-ID>"), "(?P<fid>x)");
  EXPECT_EQ(Tr("<F-PORT>\\d+</F-PORT>"), R"((?P<fport>\d+))");
}

TEST(FailRegexTranslateTest, CustomTagsBecomeLowercaseGroups) {
  EXPECT_EQ(Tr("<F-USER>\\S+</F-USER> <F-ALT_USER1>.</F-ALT_USER1>"),
            "(?P<user>" + std::string(kNotSpace) + "+) (?P<alt_user1>.)");
  EXPECT_EQ(Tr("<F-MLFID>a</F-MLFID><F-NOFAIL/>"), "(?P<mlfid>a)<F-NOFAIL/>");
  EXPECT_EQ(Tr("<F-CONTENT>.+</F-CONTENT>", RegexKind::kPrefRegex), "(?P<content>.+)");
}

TEST(FailRegexTranslateTest, UnknownAndUnopenedTagsStayLiteral) {
  EXPECT_EQ(Tr("</F-USER> <foo> <F-user>"), "</F-USER> <foo> <F-user>");
  // Once opened, every close tag closes (fail2ban does not count).
  EXPECT_EQ(Tr("(<F-A>x</F-A>y</F-A>"), "((?P<a>x)y)");
}

TEST(FailRegexTranslateTest, SkipLinesTagsAreNumbered) {
  EXPECT_EQ(Tr("a<SKIPLINES>b<SKIPLINES>c"),
            R"(a\n(?P<skiplines0>(?:(?:.*\n)*?))b\n(?P<skiplines1>(?:(?:.*\n)*?))c)");
}

// ---------------------------------------------------------------------------
// Python syntax and semantics PCRE2 spells differently.

TEST(FailRegexTranslateTest, PythonOnlySyntax) {
  EXPECT_EQ(Tr("a\\Z"), "a\\z");
  EXPECT_EQ(Tr("\\Aa$"), "\\Aa$");
  EXPECT_EQ(Tr("x{,3}y{2,}z{4}w{}v{1"), "x{0,3}y{2,}z{4}w\\{\\}v\\{1");
  EXPECT_EQ(Tr("\\v\\a\\f"), "\\x{b}\\x{7}\\x{c}");
  EXPECT_EQ(Tr("\\x41\\u00e9\\U0001F600\\101\\0\\07"),
            "A\xc3\xa9\xf0\x9f\x98\x80"
            "A\\x{0}\\x{7}");
  EXPECT_EQ(Tr("\\.\\-\\:\\ \\#"), "\\.-: #");
  EXPECT_EQ(Tr("a]b}c"), "a\\]b\\}c");
}

TEST(FailRegexTranslateTest, NamedGroupsBackrefsAndConditionals) {
  EXPECT_EQ(Tr("(?P<a>x)(?P=a)(y)\\2(?(a)b|c)(?(2)d)"), "(?P<a>x)\\g{1}(y)\\g{2}(?(1)b|c)(?(2)d)");
  // sshd's conditional user group.
  EXPECT_EQ(Tr("(?P<cond_user>\\S+)|(?(cond_user): |x)"),
            "(?P<cond_user>" + std::string(kNotSpace) + "+)|(?(1): |x)");
  // Names PCRE2 cannot hold (over 32 characters) stay unnamed in PCRE2.
  const std::string long_name(40, 'n');
  EXPECT_EQ(Tr("(?P<" + long_name + ">x)"), "(x)");
  FailRegex re = MustCompile("(?P<" + long_name + ">x)");
  EXPECT_EQ(re.GroupIndex(long_name), 1);
}

TEST(FailRegexTranslateTest, Spaces) {
  EXPECT_EQ(Tr("\\s\\S"), std::string(kSpace) + std::string(kNotSpace));
  EXPECT_EQ(Tr("[\\s,]"), R"([\t-\r\x{1c}-\x{1f}\x{85}\p{Z},])");
  EXPECT_EQ(Tr("[^\\s]"), R"([^\t-\r\x{1c}-\x{1f}\x{85}\p{Z}])");
  // A class with \S is "not (spaces it does not list)".
  EXPECT_EQ(Tr("[\\S.]"), kNotSpace);
  EXPECT_EQ(
      Tr("[\\S ]"),
      R"([^\t-\r\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}-\x{2029}\x{202f}\x{205f}\x{3000}])");
  EXPECT_EQ(
      Tr("[^\\S\\n]"),
      R"([\t\x{b}-\r\x{1c}- \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}-\x{2029}\x{202f}\x{205f}\x{3000}])");
  EXPECT_EQ(Tr("[\\S\\s]"), R"([\d\D])");
  EXPECT_EQ(Tr("[^\\S\\W]"), R"([^\d\D])");
}

TEST(FailRegexTranslateTest, ClassesAreEscapedForPcre2) {
  // "[[:alpha:]]" is not a POSIX class in Python.
  EXPECT_EQ(Tr("[[:alpha:]]"), "[\\[:alpha:]\\]");
  EXPECT_EQ(Tr("[]a-]"), "[\\]a\\-]");
  EXPECT_EQ(Tr("[^^\\]\\\\\\b]"), "[^\\^\\]\\\\\\x{8}]");
  EXPECT_EQ(Tr("[\\x41-\\u005a]"), "[A-Z]");
}

TEST(FailRegexTranslateTest, FlagsAndVerbose) {
  EXPECT_EQ(Tr("(?i)ab"), "(?i)ab");
  EXPECT_EQ(Tr("(?s)(?m)a"), "(?ms)a");
  EXPECT_EQ(Tr("(?u)a"), "a");
  EXPECT_EQ(Tr("(?x) a b # comment\n c\\ [ ]"), "abc [ ]");
  EXPECT_EQ(Tr("a(?#comment)*"), "a*");
  EXPECT_EQ(Tr("(?i:a)(?-i:b)(?s-i:c)"), "(?i:a)(?:b)(?s:c)");
  EXPECT_EQ(Tr("(?i)(?-i:b)"), "(?i)(?-i:b)");
  EXPECT_EQ(Tr("(?>a+)b*+c?+"), "(?>a+)b*+c?+");
}

TEST(FailRegexTranslateTest, GlobalFlagsInGroupsBecomeLocal) {
  // fail2ban's R_GLOB2LOCFLAGS rewrite, which also drops the capture.
  EXPECT_EQ(Tr("x((?i)ab)"), "x(?i:ab)");
  EXPECT_EQ(Tr("x(?:(?si)ab)"), "x(?is:ab)");
  EXPECT_EQ(Tr("x\\((?i)a)"), "ERROR: global flags not at the start of the expression at offset 3");
}

TEST(FailRegexTranslateTest, MultilineOnlyForFailregexWithMaxlines) {
  FailRegexOptions options;
  options.maxlines = 3;
  EXPECT_EQ(Tr("^<F-ID/>$", RegexKind::kFailRegex, options),
            "(?m)^(?P<fid>" + std::string(kNotSpace) + "+)$");
  EXPECT_EQ(Tr("^a$", RegexKind::kIgnoreRegex, options), "^a$");
  EXPECT_EQ(Tr("^a$", RegexKind::kPrefRegex, options), "^a$");
  options.maxlines = 1;
  EXPECT_EQ(Tr("^<F-ID/>$", RegexKind::kFailRegex, options),
            "^(?P<fid>" + std::string(kNotSpace) + "+)$");
}

TEST(FailRegexTranslateTest, CaseFoldingPythonAddsToPcre2) {
  EXPECT_EQ(Tr("(?i)ki"), "(?i)k[Iiİı]");
  EXPECT_EQ(Tr("(?i)[h-j]"), "(?i)[h-jIiİı]");
  EXPECT_EQ(Tr("(?i)[^a-z]"), "(?i)[^a-zIiİı]");
  EXPECT_EQ(Tr("(?ai)k[a-c]\\w"), "[kK][a-cA-C][0-9A-Z_a-z]");
}

TEST(FailRegexTranslateTest, AsciiFlag) {
  EXPECT_EQ(Tr("(?a)\\w\\d\\s\\W"), "[0-9A-Z_a-z][0-9][\\t-\\r ][^0-9A-Z_a-z]");
  EXPECT_EQ(Tr("(?a)[\\W.]"), "[^0-9A-Z_a-z]");
  EXPECT_EQ(Tr("(?a:\\w)\\w"), "(?:[0-9A-Z_a-z])\\w");
  EXPECT_EQ(Tr("\\B"), "\\B(?!\\A\\z)");
}

// ---------------------------------------------------------------------------
// Errors: Python's messages, with byte offsets into the regex as written.

TEST(FailRegexErrorTest, PythonMessages) {
  EXPECT_EQ(Err("^foo("), "missing ), unterminated subpattern at offset 4");
  EXPECT_EQ(Err("a)"), "unbalanced parenthesis at offset 1");
  EXPECT_EQ(Err("*a"), "nothing to repeat at offset 0");
  EXPECT_EQ(Err("^*"), "nothing to repeat at offset 1");
  EXPECT_EQ(Err("a**"), "multiple repeat at offset 2");
  EXPECT_EQ(Err("a{2,1}"), "min repeat greater than max repeat at offset 2");
  EXPECT_EQ(Err("[a"), "unterminated character set at offset 0");
  EXPECT_EQ(Err("[z-a]"), "bad character range z-a at offset 1");
  EXPECT_EQ(Err("[\\d-z]"), "bad character range \\d-z at offset 1");
  EXPECT_EQ(Err("\\q"), "bad escape \\q at offset 0");
  EXPECT_EQ(Err("ab\\"), "bad escape (end of pattern) at offset 2");
  EXPECT_EQ(Err("\\x4"), "incomplete escape \\x4 at offset 0");
  EXPECT_EQ(Err("\\777"), "octal escape value \\777 outside of range 0-0o377 at offset 0");
  EXPECT_EQ(Err("\\8"), "invalid group reference 8 at offset 1");
  EXPECT_EQ(Err("(a\\1)"), "cannot refer to an open group at offset 2");
  EXPECT_EQ(Err("(?P<1a>x)"), "bad character in group name '1a' at offset 4");
  EXPECT_EQ(Err("(?P<a>x)(?P<a>y)"),
            "redefinition of group name 'a' as group 2; was group 1 at offset 12");
  EXPECT_EQ(Err("(?P=b)"), "unknown group name 'b' at offset 4");
  EXPECT_EQ(Err("(?(x)a|b)"), "unknown group name 'x' at offset 3");
  EXPECT_EQ(Err("(?(0)a|b)"), "bad group number at offset 3");
  EXPECT_EQ(Err("(a)(?(1)b|c|d)"), "conditional backref with more than two branches at offset 11");
  EXPECT_EQ(Err("(?(2)a|b)(c)"), "invalid group reference 2 at offset 3");
  EXPECT_EQ(Err("x(?i)"), "global flags not at the start of the expression at offset 1");
  EXPECT_EQ(Err("(?L)"), "bad inline flags: cannot use 'L' flag with a str pattern at offset 3");
  EXPECT_EQ(Err("(?-a:x)"), "bad inline flags: cannot turn off flags 'a', 'u' and 'L' at offset 4");
  EXPECT_EQ(Err("(?i-i:x)"), "bad inline flags: flag turned on and off at offset 5");
  EXPECT_EQ(Err("(?z)"), "unknown extension ?z at offset 1");
  EXPECT_EQ(Err("(?<a>x)"), "unknown extension ?<a at offset 1");
  EXPECT_EQ(Err("(?#x"), "missing ), unterminated comment at offset 0");
  EXPECT_EQ(Err("(?<=a|bc)"), "look-behind requires fixed-width pattern at offset 0");
  EXPECT_EQ(Err("(?<=(a)\\1)"),
            "cannot refer to group defined in the same lookbehind subpattern at offset 9");
}

TEST(FailRegexErrorTest, OffsetsPointIntoTheRegexAsWritten) {
  // After a tag, the offset is still the one in the configured text.
  EXPECT_EQ(Err("<HOST> ("), "missing ), unterminated subpattern at offset 7");
  EXPECT_EQ(Err("é("), "missing ), unterminated subpattern at offset 2");
  EXPECT_EQ(Err("((?i)x"), "missing ), unterminated subpattern at offset 0");
}

TEST(FailRegexErrorTest, Fail2banChecks) {
  EXPECT_EQ(Err("   "), "cannot add empty regex");
  EXPECT_EQ(Err("a", RegexKind::kFailRegex),
            "no failure-id group in failregex: it needs <HOST>, <ADDR>, <IP4>, <IP6>, <DNS>, "
            "<F-ID> or <F-MLFID> (or a prefregex with one)");
  EXPECT_EQ(Err("a", RegexKind::kPrefRegex), "OK: a");
  FailRegexOptions options;
  options.prefregex_has_failure_id = true;
  EXPECT_EQ(Tr("a", RegexKind::kFailRegex, options), "a");
  EXPECT_EQ(Err("<F-MLFID>x</F-MLFID>", RegexKind::kFailRegex), "OK: (?P<mlfid>x)");
  // fail2ban's own group names cannot hold '-', so neither can an F- tag's.
  EXPECT_EQ(Err("<F-MY-TAG>x</F-MY-TAG>"), "bad character in group name 'my-tag' at offset 0");
}

TEST(FailRegexErrorTest, WhatPcre2CannotMatchIsRefused) {
  EXPECT_EQ(Err("\\N{EM DASH}"),
            "named Unicode escape \\N{EM DASH} is not supported, use \\uXXXX or \\UXXXXXXXX at "
            "offset 0");
  EXPECT_EQ(Err("\\ud800"), "surrogate escape \\ud800 cannot match UTF-8 text at offset 0");
  EXPECT_EQ(Err("a{70000}"), "repetition count above PCRE2's limit of 65535 at offset 1");
  EXPECT_EQ(Err("(?P<é>x)"), "non-ASCII group name 'é' is not supported at offset 4");
  EXPECT_EQ(Err("(?t)a"), "the (?t) TEMPLATE flag is not supported");
  EXPECT_EQ(Err(std::string_view("a\xff", 2)), "invalid UTF-8 at offset 1");
}

TEST(FailRegexErrorTest, CheckFailRegexNamesTheRegex) {
  EXPECT_EQ(CheckFailRegex("^foo(", RegexKind::kFailRegex).message(),
            "cannot compile failregex '^foo(': missing ), unterminated subpattern at offset 4");
  EXPECT_EQ(CheckFailRegex("[", RegexKind::kIgnoreRegex).message(),
            "cannot compile ignoreregex '[': unterminated character set at offset 0");
  EXPECT_TRUE(CheckFailRegex("^<HOST>$", RegexKind::kFailRegex).ok());
  EXPECT_TRUE(CheckFailRegex("^x<F-CONTENT>.+</F-CONTENT>$", RegexKind::kPrefRegex).ok());
}

// A regex a check compiled under CheckedRegexes is taken by Compile once,
// for the same text, kind and options only, and matches as one compiled
// without it.
TEST(CheckedRegexesTest, CompileTakesWhatTheCheckCompiledOnce) {
  const std::string re = "^auth failure from <HOST> user <F-USER>\\S+</F-USER>$";
  const std::string line = "auth failure from 192.0.2.7 user bob";
  FailRegexOptions no_dns;
  no_dns.host_matches_dns = false;
  CheckedRegexes checked;
  bool has_id = false;
  ASSERT_TRUE(CheckFailRegex(re, RegexKind::kFailRegex, no_dns, &has_id).ok());
  EXPECT_TRUE(has_id);
  EXPECT_EQ(checked.kept(), 1u);
  // Other options or another kind: compiled anew.
  Result<FailRegex> with_dns = FailRegex::Compile(re, RegexKind::kFailRegex);
  Result<FailRegex> ignore = FailRegex::Compile(re, RegexKind::kIgnoreRegex, no_dns);
  ASSERT_TRUE(with_dns.ok() && ignore.ok());
  EXPECT_EQ(checked.taken(), 0u);
  Result<FailRegex> taken = FailRegex::Compile(re, RegexKind::kFailRegex, no_dns);
  ASSERT_TRUE(taken.ok()) << taken.status().message();
  EXPECT_EQ(checked.taken(), 1u);
  EXPECT_EQ(checked.kept(), 0u);
  Result<FailRegex> again = FailRegex::Compile(re, RegexKind::kFailRegex, no_dns);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(checked.taken(), 1u);
  // The taken one is complete: pattern, groups and matching as compiled anew.
  EXPECT_EQ(taken->pattern(), again->pattern());
  EXPECT_NE(taken->pattern(), with_dns->pattern());
  EXPECT_EQ(taken->GroupIndex("user"), again->GroupIndex("user"));
  FailRegexMatch m1, m2;
  Result<bool> a = taken->Search(line, &m1);
  Result<bool> b = again->Search(line, &m2);
  ASSERT_TRUE(a.ok() && b.ok() && *a && *b);
  EXPECT_EQ(m1.Group(taken->GroupIndex("ip4")), "192.0.2.7");
  EXPECT_EQ(m1.Group(taken->GroupIndex("user")), m2.Group(again->GroupIndex("user")));
  EXPECT_FALSE(*taken->Search("auth failure from host.example.org user bob", &m1));
}

// Without one nothing is kept; a nested one is used while it lives.
TEST(CheckedRegexesTest, OnlyTheInnermostScopeKeeps) {
  ASSERT_TRUE(CheckFailRegex("^a <HOST>$", RegexKind::kFailRegex).ok());
  CheckedRegexes outer;
  {
    CheckedRegexes inner;
    ASSERT_TRUE(CheckFailRegex("^b <HOST>$", RegexKind::kFailRegex).ok());
    EXPECT_EQ(inner.kept(), 1u);
    EXPECT_EQ(outer.kept(), 0u);
  }
  ASSERT_TRUE(CheckFailRegex("^c <HOST>$", RegexKind::kFailRegex).ok());
  EXPECT_EQ(outer.kept(), 1u);
  ASSERT_TRUE(FailRegex::Compile("^b <HOST>$", RegexKind::kFailRegex).ok());
  EXPECT_EQ(outer.taken(), 0u);
  ASSERT_TRUE(FailRegex::Compile("^c <HOST>$", RegexKind::kFailRegex).ok());
  EXPECT_EQ(outer.taken(), 1u);
}

// ---------------------------------------------------------------------------
// Compiled regexes.

TEST(FailRegexMatchTest, GroupsByFail2banName) {
  FailRegex re =
      MustCompile("^user <F-USER>\\S+</F-USER> from <HOST>( port \\d+)?$", RegexKind::kFailRegex);
  EXPECT_EQ(re.capture_count(), 5);  // user, ip4, ip6, dns, and the port group
  std::vector<std::string> names;
  for (const FailRegexGroup& g : re.groups())
    names.push_back(g.name + "=" + std::to_string(g.index));
  EXPECT_EQ(names, (std::vector<std::string>{"dns=4", "ip4=2", "ip6=3", "user=1"}));
  EXPECT_TRUE(re.HasFailureIdGroup());
  EXPECT_EQ(re.GroupIndex("fid"), -1);

  FailRegexMatch m;
  Result<bool> found = re.Search("user bob from 192.0.2.1 port 22\n", &m);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(*found);
  EXPECT_EQ(m.Group(re.GroupIndex("user")), "bob");
  EXPECT_EQ(m.Group(re.GroupIndex("ip4")), "192.0.2.1");
  EXPECT_EQ(m.Group(re.GroupIndex("ip6")), std::nullopt);
  EXPECT_EQ(m.Group(5), " port 22");
  EXPECT_EQ(m.start(), 0u);
  EXPECT_EQ(m.end(), 31u);  // $ before the final newline, as in Python

  EXPECT_EQ(Find(re, "user bob from 2001:db8::1\n", "ip6"), "2001:db8::1");
  EXPECT_EQ(Find(re, "user bob from host.example.org\n", "dns"), "host.example.org");
  EXPECT_EQ(Find(re, "user bob from\n"), "<nomatch>");
}

TEST(FailRegexMatchTest, OneMatchObjectServesRegexesOfAnySize) {
  FailRegex small = MustCompile("a");
  FailRegex big = MustCompile("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)");
  FailRegexMatch m;
  ASSERT_TRUE(*small.Search("a", &m));
  ASSERT_TRUE(*big.Search("abcdefghijkl", &m));
  EXPECT_EQ(m.Group(12), "l");
  ASSERT_TRUE(*small.Search("a", &m));
  EXPECT_EQ(m.Group(1), std::nullopt);  // not a stale group of `big`
  ASSERT_FALSE(*small.Search("b", &m));
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.Group(0), std::nullopt);
}

// The 1 MiB JIT stack is made only when PCRE2's default 32 KiB one runs
// out; a match that needs it still succeeds (the search is retried once),
// and the match object keeps it for the next search.
TEST(FailRegexMatchTest, DeepMatchGetsTheBigJitStackOnDemand) {
  FailRegex re = MustCompile("^(?:(a)|b)*c$");
  const std::string deep = std::string(20000, 'a') + "c";
  FailRegexMatch m;
  EXPECT_EQ(Find(re, "aac"), "aac");
  Result<bool> found = re.Search(deep, &m);
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_TRUE(*found);
  EXPECT_EQ(m.end(), deep.size());
  found = re.Search(deep, &m);
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_TRUE(*found);
}

TEST(FailRegexMatchTest, InvalidUtf8SubjectsNeverCrash) {
  FailRegex re = MustCompile("^a.c<F-ID/>$", RegexKind::kFailRegex);
  EXPECT_EQ(Find(re, std::string_view("a\xff"
                                      "cx\n",
                                      5)),
            "<nomatch>");
  EXPECT_EQ(Find(re,
                 "a\xc3\xa9"
                 "cx\n",
                 "fid"),
            "x");
  FailRegex any = MustCompile("c(?P<rest>.*)");
  EXPECT_EQ(Find(any, std::string_view("\xc3(c\xe2\x82ok"), "rest"), "");
  EXPECT_EQ(Find(any, std::string_view("\xc3(cok\xe2\x82"), "rest"), "ok");
  EXPECT_EQ(Find(any, std::string_view()), "<nomatch>");
}

TEST(FailRegexMatchTest, PythonAnchorsAndSpaces) {
  FailRegex end = MustCompile("a\\Z");
  EXPECT_EQ(Find(end, "a\n"), "<nomatch>");
  EXPECT_EQ(Find(end, "a"), "a");
  FailRegex space = MustCompile("a\\sb");
  EXPECT_EQ(Find(space,
                 "a\x1c"
                 "b"),
            "a\x1c"
            "b");
  EXPECT_EQ(Find(space,
                 "a\xe1\xa0\x8e"
                 "b"),
            "<nomatch>");  // U+180E is no space in Python
  FailRegexOptions options;
  options.maxlines = 2;
  FailRegex ml = MustCompile("^(?P<fid>)$", RegexKind::kFailRegex, options);
  FailRegexMatch m;
  ASSERT_TRUE(*ml.Search("x\n", &m));
  EXPECT_EQ(m.start(), 2u);  // Python's multi-line ^ matches after the last "\n"
}

TEST(FailRegexMatchTest, MoveKeepsTheCompiledCode) {
  FailRegex a = MustCompile("(?P<x>b)");
  FailRegex b = std::move(a);
  EXPECT_EQ(Find(b, "abc", "x"), "b");
  a = std::move(b);
  EXPECT_EQ(Find(a, "abc", "x"), "b");
}

// ---------------------------------------------------------------------------
// Differential tests against fail2ban and Python's re, run at test time.
// They need fail2ban installed; without it they fail, they never skip.

constexpr std::string_view kOracle = R"PY(
import ast, os, re, shutil, subprocess, sys

from fail2ban.server import failregex as fr


def hx(s):
    return s.encode('utf-8').hex()


def unhx(h):
    return bytes.fromhex(h).decode('utf-8')


def prepare(regex, kind, maxlines, usedns):
    """fail2ban's Regex.__init__ steps, keeping re.error's msg and pos."""
    r = fr.Regex._resolveHostTag(regex, useDns=usedns)
    if r.lstrip() == '':
        raise re.error('cannot add empty regex')
    if fr.R_GLOB2LOCFLAGS:
        r = fr.R_GLOB2LOCFLAGS[0].sub(fr.R_GLOB2LOCFLAGS[1], r)
    multiline = kind == 'failregex' and maxlines > 1
    compiled = re.compile(r, re.MULTILINE if multiline else 0)
    # The object fail2ban builds, or this oracle has drifted from it.
    assert fr.Regex(regex, multiline=multiline, useDns=usedns)._regexObj.pattern == r
    return compiled


def groups_text(compiled):
    names = ','.join('%s=%d' % kv for kv in sorted(compiled.groupindex.items()))
    return '%d %s' % (compiled.groups, names or '-')


def cmd_stock(workdir):
    etc = os.path.join(workdir, 'etc')
    shutil.copytree('/etc/fail2ban', etc)
    log = os.path.join(workdir, 'empty.log')
    open(log, 'w').close()
    fdir = os.path.join(etc, 'filter.d')
    with open(os.path.join(etc, 'jail.local'), 'w') as out:
        out.write('[DEFAULT]\nenabled = true\nbackend = polling\nlogpath = %s\n' % log)
        for fn in sorted(os.listdir(fdir)):
            if not fn.endswith('.conf'):
                continue
            name = fn[:-5]
            if name == 'common' or name.endswith('-common'):
                continue  # only included by other filters
            text = open(os.path.join(fdir, fn), encoding='utf-8').read()
            if not re.search(r'^failregex\s*=', text, re.M):
                continue
            out.write('\n[bantam-%s]\nfilter = %s\n' % (name, name))
            modes = re.findall(r'^(?:mdre|mdpr|usrre|apache-pref-ign)-([a-z]+)', text, re.M)
            for mode in sorted(set(modes)):
                out.write('\n[bantam-%s-%s]\nfilter = %s[mode=%s]\n' % (name, mode, name, mode))
    proc = subprocess.run(['fail2ban-client', '-c', etc, '-d'], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit('fail2ban-client -d failed with %d' % proc.returncode)
    jails = {}
    for line in proc.stdout.splitlines():
        try:
            cmd = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        if not isinstance(cmd, list) or len(cmd) < 4 or cmd[0] not in ('set', 'multi-set'):
            continue
        jail, what, value = cmd[1], cmd[2], cmd[3]
        j = jails.setdefault(jail, {'usedns': 'warn', 'maxlines': 1, 'prefregex': None,
                                    'failregex': [], 'ignoreregex': []})
        many = value if cmd[0] == 'multi-set' else [value]
        if what == 'usedns':
            j['usedns'] = value
        elif what == 'maxlines':
            j['maxlines'] = int(value)
        elif what == 'prefregex':
            j['prefregex'] = value
        elif what == 'addfailregex':
            j['failregex'] += many
        elif what == 'addignoreregex':
            j['ignoreregex'] += many
    seen = set()
    for jail in sorted(jails):
        j = jails[jail]
        for usedns in sorted({j['usedns'], 'no'}):
            pref = None
            if j['prefregex']:
                pref = fr.Regex(j['prefregex'], useDns=usedns)
            pref_fid = bool(pref and [g for g in fr.FAILURE_ID_PRESENTS
                                      if g in pref._regexObj.groupindex])
            items = [('prefregex', j['prefregex'])] if j['prefregex'] else []
            items += [('failregex', r) for r in j['failregex']]
            items += [('ignoreregex', r) for r in j['ignoreregex']]
            for kind, regex in items:
                key = (kind, j['maxlines'], usedns, pref_fid, regex)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    compiled = prepare(regex, kind, j['maxlines'], usedns)
                    if kind == 'failregex':
                        fr.FailRegex(regex, prefRegex=pref, multiline=j['maxlines'] > 1,
                                     useDns=usedns)
                    verdict = 'ok ' + groups_text(compiled)
                except Exception as e:
                    verdict = 'err ' + hx(str(e))
                print('\t'.join(['R', jail, kind, str(j['maxlines']), usedns,
                                 str(int(pref_fid)), hx(regex), verdict]))


def cmd_match(path):
    for line in open(path, encoding='ascii'):
        kind, maxlines, usedns, regex, subject = line.rstrip('\n').split('\t')
        try:
            compiled = prepare(unhx(regex), kind, int(maxlines), usedns)
        except re.error as e:
            print('err\t%s\t%s' % (hx(e.msg), '-' if e.pos is None else e.pos))
            continue
        m = compiled.search(unhx(subject))
        if not m:
            print('nomatch\t%d' % compiled.groups)
            continue
        groups = ['-' if g is None else hx(g) for g in m.groups()]
        print('match\t%d\t%s' % (compiled.groups, ','.join([hx(m.group(0))] + groups)))


def cmd_charset(path):
    text = ''.join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    for line in open(path, encoding='ascii'):
        pattern = re.compile(unhx(line.strip()))
        ranges = []
        for m in pattern.finditer(text):
            c = m.start() + (0x800 if m.start() >= 0xD800 else 0)
            if ranges and ranges[-1][1] + 1 == c:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
        print(','.join('%x-%x' % tuple(r) for r in ranges) or '-')


def cmd_casefold():
    cased = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and
             (chr(c).lower() != chr(c) or chr(c).upper() != chr(c))]
    cand = set(cased)
    for c in cased:
        for s in (chr(c).lower(), chr(c).upper()):
            if len(s) == 1:
                cand.add(ord(s))
    cand = sorted(cand)
    text = ''.join(chr(c) for c in cand)
    print(','.join('%x' % c for c in cand))
    for c in cand:
        pattern = re.compile('(?i)\\U%08x' % c)
        print('%x:%s' % (c, ','.join('%x' % ord(m.group()) for m in pattern.finditer(text))))


{'stock': cmd_stock, 'match': cmd_match, 'charset': cmd_charset,
 'casefold': cmd_casefold}[sys.argv[1]](*sys.argv[2:])
)PY";

using testing::HexDecode;
using testing::HexEncode;
using testing::SplitOn;
using testing::TempTree;

// Runs `command` through the shell; returns its stdout, or nullopt after
// recording a test failure that shows its stderr.
std::optional<std::string> RunCommand(const std::string& command, const TempTree& dir) {
  std::string err;
  std::optional<std::string> out = testing::RunShell(command, dir, &err);
  if (!out) ADD_FAILURE() << "command failed (" << err << "): " << command;
  return out;
}

// The Python interpreter fail2ban runs with (its client's #! line), so the
// oracle is fail2ban's own code on its own Python.
std::optional<std::string> Fail2banPython(const TempTree& dir) {
  std::optional<std::string> client = RunCommand("command -v fail2ban-client", dir);
  if (!client || client->empty()) {
    ADD_FAILURE() << "fail2ban-client not found: the differential tests need fail2ban 1.0.2 "
                     "(apt-get install fail2ban)";
    return std::nullopt;
  }
  client->erase(client->find_last_not_of("\n") + 1);
  std::ifstream in(*client);
  std::string shebang;
  std::getline(in, shebang);
  if (shebang.rfind("#!", 0) != 0) {
    ADD_FAILURE() << *client << " has no #! line to find fail2ban's Python";
    return std::nullopt;
  }
  std::string python = shebang.substr(2);
  python.erase(0, python.find_first_not_of(' '));
  std::optional<std::string> version =
      RunCommand("'" + python + "' -c 'import fail2ban.version as v; print(v.version)'", dir);
  if (!version) return std::nullopt;
  if (version->rfind("1.0.2", 0) != 0) {
    ADD_FAILURE() << "expected fail2ban 1.0.2, found " << *version;
    return std::nullopt;
  }
  return python;
}

// Runs the oracle script with `args`; nullopt (and a failure) if it cannot.
std::optional<std::string> RunOracle(const TempTree& dir, const std::string& args) {
  if (dir.root().empty()) {
    ADD_FAILURE() << "cannot create a temporary directory";
    return std::nullopt;
  }
  std::optional<std::string> python = Fail2banPython(dir);
  if (!python) return std::nullopt;
  const std::filesystem::path script = std::filesystem::path(dir.Path("oracle.py"));
  std::ofstream(script) << kOracle;
  return RunCommand("'" + *python + "' '" + script.string() + "' " + args, dir);
}

struct MatchCase {
  RegexKind kind;
  std::string regex;
  std::string subject;
  int maxlines = 1;
  bool usedns_no = false;
};

std::string KindName(RegexKind kind) { return std::string(RegexKindName(kind)); }

// Searches every case with our FailRegex and with Python's re (through
// fail2ban's preparation) and expects the same outcome and groups. Returns
// which cases Python matched, so callers can tell the test is not vacuous.
std::vector<bool> ExpectSameAsPython(const std::vector<MatchCase>& cases) {
  std::vector<bool> python_matched(cases.size(), false);
  TempTree dir;
  const std::filesystem::path input = std::filesystem::path(dir.Path("cases.txt"));
  {
    std::ofstream out(input);
    for (const MatchCase& c : cases) {
      out << KindName(c.kind) << '\t' << c.maxlines << '\t' << (c.usedns_no ? "no" : "warn") << '\t'
          << HexEncode(c.regex) << '\t' << HexEncode(c.subject) << '\n';
    }
  }
  std::optional<std::string> out = RunOracle(dir, "match '" + input.string() + "'");
  if (!out) return python_matched;
  std::vector<std::string> lines = SplitOn(*out, '\n');
  if (lines.size() < cases.size()) {
    ADD_FAILURE() << "oracle answered " << lines.size() << " of " << cases.size() << " cases";
    return python_matched;
  }
  FailRegexMatch m;
  for (size_t i = 0; i < cases.size(); ++i) {
    const MatchCase& c = cases[i];
    SCOPED_TRACE("regex '" + c.regex + "' on '" + c.subject + "'");
    const std::vector<std::string> py = SplitOn(lines[i], '\t');
    FailRegexOptions options;
    options.maxlines = c.maxlines;
    options.host_matches_dns = !c.usedns_no;
    options.prefregex_has_failure_id = true;  // Python's side is a plain Regex
    Result<FailRegex> re = FailRegex::Compile(c.regex, c.kind, options);
    if (py[0] == "err") {
      if (re.ok()) {
        ADD_FAILURE() << "Python refuses it: " << HexDecode(py[1]);
        continue;
      }
      std::string want = HexDecode(py[1]);
      if (py[2] != "-") want += " at offset " + py[2];
      EXPECT_NE(re.status().message().find(want), std::string::npos)
          << re.status().message() << "\nPython: " << want;
      continue;
    }
    if (!re.ok()) {
      ADD_FAILURE() << re.status().message();
      continue;
    }
    EXPECT_EQ(std::to_string(re->capture_count()), py[1]);
    Result<bool> found = re->Search(c.subject, &m);
    if (!found.ok()) {
      ADD_FAILURE() << found.status().message();
      continue;
    }
    if (py[0] == "nomatch") {
      EXPECT_FALSE(*found) << "matched '" << *m.Group(0) << "'";
      continue;
    }
    python_matched[i] = true;
    if (!*found) {
      ADD_FAILURE() << "Python matched '" << HexDecode(SplitOn(py[2], ',')[0]) << "'";
      continue;
    }
    const std::vector<std::string> groups = SplitOn(py[2], ',');
    for (size_t g = 0; g < groups.size(); ++g) {
      std::optional<std::string_view> ours = m.Group(static_cast<int>(g));
      if (groups[g] == "-") {
        EXPECT_EQ(ours, std::nullopt) << "group " << g;
      } else {
        EXPECT_EQ(ours.value_or("<none>"), HexDecode(groups[g])) << "group " << g;
      }
    }
  }
  return python_matched;
}

TEST(FailRegexPythonTest, SemanticsMatchPythonRe) {
  const RegexKind kI = RegexKind::kIgnoreRegex;
  const RegexKind kF = RegexKind::kFailRegex;
  std::vector<MatchCase> cases = {
      {kI, R"(a\Z)", "a\n"},
      {kI, R"(a$)", "a\n"},
      {kI, R"(a$)", "a\n\n"},
      {kI, R"(^b)", "a\nb\n"},
      {kF, R"(^b<F-ID/>$)", "a\nbx\nc\n", 3},
      {kF, R"(^(?P<fid>)$)", "a\n", 2},
      {kF, R"(x$(?P<fid>\n)^y)", "x\ny\n", 2},
      {kI, R"(a\sb\Sc)",
       "a\x1c"
       "b-c"},
      {kI, R"(a\sb)",
       "a\xe1\xa0\x8e"
       "b"},
      {kI, R"(a\sb)",
       "a\xe3\x80\x80"
       "b"},
      {kI, R"([\S.]+)", " x.y\x1d"},
      {kI, R"([^\S\n]+)", "a \t\n b"},
      {kI, R"(\w+)", "--\xc3\xa9t\xc3\xa9_42\xd9\xa3--"},
      {kI, R"(\d+)", "x\xd9\xa3\xd9\xa4y"},
      {kI, R"(\bfoo\b)",
       "\xc3\xa9"
       "foo bar foo"},
      {kI, R"(\B)", ""},
      {kI, R"(\B)", "ab"},
      {kI, R"(a\Bb)", "ab"},
      {kI, R"((?a)\w+)", "\xc3\xa9t\xc3\xa9x"},
      {kI, R"((?a)\bx)", "\xc3\xa9x"},
      {kI, R"((?a)\Bx)", "\xc3\xa9x"},
      {kI, R"((?i)i+)", "I\xc4\xb0\xc4\xb1i"},
      {kI, R"((?i)[a-z]+)", "xI\xc4\xb0\xc4\xb1\xe2\x84\xaaK"},
      {kI, R"((?i)[^a-z]+)", "K\xc4\xb0\xc4\xb1-"},
      {kI, R"((?ai)k+)", "kK\xe2\x84\xaa"},
      {kI, R"((?ai)[h-j]+)", "hIJ\xc4\xb0"},
      {kI, R"((?i:a)A)", "aA"},
      {kI, R"((?i:a)A)", "AA"},
      {kI, R"((?i)a(?-i:a))", "AA"},
      {kI, R"((?s:.)+)", "a\nb"},
      {kI, R"(.+)", "a\nb"},
      {kI, R"(x{,2})", "xxx"},
      {kI, R"(x{2)", "x{2"},
      {kI, R"(x{})", "x{}"},
      {kI, R"(\v\x41\u00e9\101\0)",
       "\vA\xc3\xa9"
       "A" +
           std::string(1, '\0')},
      {kI, R"((?P<a>x)(?P=a)(?(a)y|z))", "xxy"},
      {kI, R"((?P<a>x)?(?(a)y|z))", "z"},
      {kI, R"((?P<c>a)?b(?(c)c|d))", "bd"},
      {kI, R"((a)|b\1)", "b"},
      {kI, R"((?>a+)b)", "aab"},
      {kI, R"((?>a+)a)", "aaa"},
      {kI, R"(a++a)", "aaa"},
      {kI, R"((?<=a)b|(?<!c)d)", "cd ab"},
      {kI, R"((?x) a b # c
              [ ]c)",
       "ab c"},
      {kI, R"(a(?#x)+)", "aaa"},
      {kI, R"(x((?i)ab))", "xAB"},
      {kI, R"([[:alpha:]])", "a:]"},
      {kI, R"([]a-])", "-"},
      {kI, R"((a*)*b)", "b"},
      {kI, R"((a|b)*c)", "abac"},
      {kI, R"((?:(a)|b)+)", "ab"},
      {kI, R"(^(?:(?:.*\n)*?)y$)", "a\nb\ny\n"},
      {kF, R"(^a<SKIPLINES>^b <HOST>$)", "a\nx\ny\nb 192.0.2.1\n", 5},
      {kF, R"(^<HOST>$)", "[2001:db8::1]\n"},
      {kF, R"(^<HOST>$)", "::ffff:192.0.2.7\n"},
      {kF, R"(^<HOST>$)", "host-1.example.com\n"},
      {kF, R"(^<HOST>$)", "host-1.example.com\n", 1, true},
      {kF, R"(^<SUBNET>$)", "192.0.2.0/24\n"},
      {kF, R"(^<ADDR>/<CIDR> <F-ID/> <F-PORT/>$)", "2001:db8::/32 x:y 443\n"},
      // Errors must agree too.
      {kI, R"(^foo()", "x"},
      {kI, R"(x(?i))", "x"},
      {kI, R"((?<=a|bc))", "x"},
      {kI, R"([\d-z])", "x"},
      {kI, R"(\8)", "x"},
      {kI, R"((?P<a>x)(?P<a>y))", "x"},
      {kI, R"(a**)", "x"},
      {kI, R"((?(0)a|b))", "x"},
      {kI, R"((?P<1a>x))", "x"},
      {kI, R"((?i-i:x))", "x"},
      {kI, R"(\777)", "x"},
      {kI, R"([z-a])", "x"},
      {kI, R"((?L))", "x"},
      {kI, R"(\x4)", "x"},
      {kI, R"((?<=(a)\1))", "x"},
      {kI, R"(ab\)", "x"},
  };
  const std::vector<bool> matched = ExpectSameAsPython(cases);
  EXPECT_GT(std::count(matched.begin(), matched.end(), true), 40);
}

// Invented lines in the formats the stock filters read, checked against
// every prefregex/failregex/ignoreregex of the named jails.
TEST(FailRegexPythonTest, StockFiltersOnInventedLines) {
  TempTree dir;
  std::optional<std::string> out = RunOracle(dir, "stock '" + dir.root() + "'");
  if (!out) return;
  // NOLINTBEGIN(bugprone-suspicious-missing-comma): long lines are split
  const std::map<std::string, std::vector<std::string>> lines = {
      {"sshd",
       {"srv sshd[2211]: Failed password for invalid user admin from 192.0.2.10 port 4242 ssh2",
        "srv sshd[2211]: Failed password for root from 2001:db8::7 port 22 ssh2",
        "srv sshd[77]: Invalid user test from 198.51.100.3 port 5000",
        "srv sshd[77]: Connection closed by authenticating user root 203.0.113.9 port 51234 "
        "[preauth]",
        "srv sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=ssh ruser= rhost=host.example.com  user=root",
        "srv sshd[1]: error: maximum authentication attempts exceeded for invalid user "
        "\xc3\xbcg\xc3\xbcr from 192.0.2.44 port 2222 ssh2 [preauth]",
        "srv sshd[1]: Accepted publickey for alice from 192.0.2.1 port 1 ssh2",
        "srv sshd[9]: Did not receive identification string from 192.0.2.5 port 3333",
        "srv sshd[12]: Received disconnect from 192.0.2.8 port 4444:11: Bye Bye [preauth]",
        "srv sshd[12]: Unable to negotiate with 192.0.2.9 port 5555: no matching key exchange "
        "method found. Their offer: diffie-hellman-group1-sha1 [preauth]"}},
      {"apache-auth",
       // fail2ban's apache date pattern leaves "[]" behind.
       {"[] [auth_basic:error] [pid 1234:tid 5678] [client 192.0.2.20:5555] AH01618: user bob "
        "not found: /secret",
        "[] [auth_digest:error] [pid 9] [client 192.0.2.21:1] AH01790: user `eve' in realm `r' "
        "not found: /x"}},
      {"nginx-http-auth",
       {"[error] 123#0: *1 user \"mallory\": password mismatch, client: 192.0.2.30, server: "
        "example.com, request: \"GET / HTTP/1.1\", host: \"example.com\"",
        "[error] 123#0: *2 user \"eve\" was not found in \"/etc/nginx/.htpasswd\", client: "
        "192.0.2.31, server: x, request: \"GET / HTTP/1.1\", host: \"x\""}},
      {"postfix",
       {"mail postfix/smtpd[999]: NOQUEUE: reject: RCPT from unknown[192.0.2.40]: 554 5.7.1 "
        "<spam@example.net>: Relay access denied; from=<a@b.c> to=<d@e.f> proto=ESMTP helo=<x>",
        "mail postfix/smtpd[999]: warning: unknown[192.0.2.41]: SASL LOGIN authentication "
        "failed: UGFzc3dvcmQ6"}},
      {"dovecot",
       {"mail dovecot: auth-worker(1234): pam(user@example.com,192.0.2.50,<abc>): unknown user",
        "mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
        "user=<bob>, method=PLAIN, rip=192.0.2.51, lip=192.0.2.1, TLS"}},
      {"recidive", {"fail2ban.actions        [1]: NOTICE  [sshd] Ban 192.0.2.60"}},
      {"named-refused",
       {"ns1 named[1]: client @0x7f 192.0.2.70#53 (example.com): query (cache) "
        "'example.com/A/IN' denied"}},
      {"vsftpd",
       {"vsftpd: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp "
        "ruser=joe rhost=192.0.2.80"}},
  };
  // NOLINTEND(bugprone-suspicious-missing-comma)
  struct Record {
    const std::vector<std::string>* lines;
    RegexKind kind;
    std::string regex;
    int maxlines;
  };
  std::vector<Record> records;
  for (const std::string& record : SplitOn(*out, '\n')) {
    const std::vector<std::string> f = SplitOn(record, '\t');
    if (f.size() < 8 || f[0] != "R" || f[4] == "no") continue;
    // Jails are "name", "bantam-name" or "bantam-name-mode" (see kOracle).
    std::string jail = f[1];
    if (jail.rfind("bantam-", 0) == 0) jail = jail.substr(7);
    auto it = lines.begin();
    while (it != lines.end() && jail != it->first && jail.rfind(it->first + "-", 0) != 0) ++it;
    if (it == lines.end()) continue;
    const RegexKind kind = f[2] == "prefregex"   ? RegexKind::kPrefRegex
                           : f[2] == "failregex" ? RegexKind::kFailRegex
                                                 : RegexKind::kIgnoreRegex;
    records.push_back(Record{&it->second, kind, HexDecode(f[6]), std::stoi(f[3])});
  }
  // Subjects: each whole line (what prefregex sees) and, as failregexes see
  // it, the <F-CONTENT> any of the jail's prefregexes takes from it (our
  // prefregex results are themselves compared with Python below).
  std::map<std::string, std::vector<std::string>> subjects;
  for (const Record& r : records) {
    for (const std::string& line : *r.lines) {
      std::vector<std::string>& list = subjects[line];
      if (list.empty()) list.push_back(line + "\n");
      if (r.kind != RegexKind::kPrefRegex) continue;
      FailRegex pref = MustCompile(r.regex, RegexKind::kPrefRegex);
      FailRegexMatch m;
      const std::string whole = line + "\n";  // outlives the views into it
      if (!*pref.Search(whole, &m)) continue;
      std::optional<std::string_view> content = m.Group(pref.GroupIndex("content"));
      if (!content) continue;
      const std::string subject = std::string(*content) + "\n";
      if (std::find(list.begin(), list.end(), subject) == list.end()) list.push_back(subject);
    }
  }
  std::vector<MatchCase> cases;
  std::vector<std::string> case_lines;
  for (const Record& r : records) {
    for (const std::string& line : *r.lines) {
      for (const std::string& subject : subjects[line]) {
        cases.push_back(MatchCase{r.kind, r.regex, subject, r.maxlines, false});
        case_lines.push_back(line);
      }
    }
  }
  EXPECT_GT(cases.size(), 200u);
  const std::vector<bool> matched = ExpectSameAsPython(cases);
  // Each invented line must be a failure some stock failregex finds, or the
  // test would mostly compare non-matches.
  std::map<std::string, int> hits;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (matched[i] && cases[i].kind == RegexKind::kFailRegex) ++hits[case_lines[i]];
  }
  for (const auto& [jail, jail_lines] : lines) {
    for (const std::string& line : jail_lines) EXPECT_GT(hits[line], 0) << line;
  }
  std::printf("[          ] %zu searches, %td matched in Python\n", cases.size(),
              std::count(matched.begin(), matched.end(), true));
}

// Every regex of every stock filter (every mode, maxlines and usedns as the
// jail sets them, plus usedns = no) compiles, with Python's groups.
TEST(FailRegexStockFiltersTest, AllStockRegexesCompileWithPythonsGroups) {
  TempTree dir;
  std::optional<std::string> out = RunOracle(dir, "stock '" + dir.root() + "'");
  if (!out) return;
  int checked = 0;
  std::map<std::string, bool> distinct;
  for (const std::string& record : SplitOn(*out, '\n')) {
    const std::vector<std::string> f = SplitOn(record, '\t');
    if (f.size() < 8 || f[0] != "R") continue;
    const std::string regex = HexDecode(f[6]);
    SCOPED_TRACE("jail " + f[1] + " " + f[2] + " '" + regex + "'");
    FailRegexOptions options;
    options.maxlines = std::stoi(f[3]);
    options.host_matches_dns = f[4] != "no";
    options.prefregex_has_failure_id = f[5] == "1";
    const RegexKind kind = f[2] == "prefregex"   ? RegexKind::kPrefRegex
                           : f[2] == "failregex" ? RegexKind::kFailRegex
                                                 : RegexKind::kIgnoreRegex;
    const std::vector<std::string> verdict = SplitOn(f[7], ' ');
    ASSERT_EQ(verdict[0], "ok") << "fail2ban refuses it: " << HexDecode(verdict[1]);
    EXPECT_TRUE(CheckFailRegex(regex, kind, options).ok())
        << CheckFailRegex(regex, kind, options).message();
    Result<FailRegex> re = FailRegex::Compile(regex, kind, options);
    if (!re.ok()) continue;
    std::string names;
    for (const FailRegexGroup& g : re->groups()) {
      names += (names.empty() ? "" : ",") + g.name + "=" + std::to_string(g.index);
    }
    EXPECT_EQ(std::to_string(re->capture_count()) + " " + (names.empty() ? "-" : names),
              f[7].substr(3));
    ++checked;
    distinct[regex] = true;
  }
  // 1.0.2 as packaged by Debian 12 has 247 distinct regexes; a much smaller
  // count means the oracle lost filters, not that they all passed.
  EXPECT_GE(distinct.size(), 200u);
  std::printf("[          ] %d stock regex variants (%zu distinct) compiled\n", checked,
              distinct.size());
}

// Python's \d \w \s and friends, in and out of classes, against PCRE2's
// translation over every code point.
TEST(FailRegexPythonTest, CharacterClassesOverAllCodePoints) {
  const std::vector<std::string> patterns = {R"(\w)",
                                             R"(\W)",
                                             R"(\d)",
                                             R"(\D)",
                                             R"(\s)",
                                             R"(\S)",
                                             R"([\S.])",
                                             R"([^\S ])",
                                             R"([\w\s])",
                                             R"([^\W\d])",
                                             R"((?a)\w)",
                                             R"((?a)\s)",
                                             R"((?a)[\W])",
                                             R"((?i)[a-z])",
                                             R"((?i)[^a-z])",
                                             R"((?i)[\u0100-\u0200])",
                                             R"((?i)[\u0390-\u03b0])",
                                             R"(.)",
                                             R"((?s).)"};
  TempTree dir;
  const std::filesystem::path input = std::filesystem::path(dir.Path("patterns.txt"));
  {
    std::ofstream f(input);
    for (const std::string& p : patterns) f << HexEncode(p) << '\n';
  }
  std::optional<std::string> out = RunOracle(dir, "charset '" + input.string() + "'");
  if (!out) return;
  const std::vector<std::string> lines = SplitOn(*out, '\n');
  ASSERT_GE(lines.size(), patterns.size());
  // Every code point but the surrogates, UTF-8 encoded once.
  std::vector<std::pair<char32_t, std::string>> chars;
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    if (c < 0xD800 || c > 0xDFFF) chars.emplace_back(c, Utf8(c));
  }
  FailRegexMatch m;
  for (size_t i = 0; i < patterns.size(); ++i) {
    SCOPED_TRACE(patterns[i]);
    // Global flags must stay in front of the anchors.
    std::string flags, body = patterns[i];
    if (body.rfind("(?", 0) == 0 && body[2] != ':') {
      flags = body.substr(0, body.find(')') + 1);
      body = body.substr(flags.size());
    }
    FailRegex re = MustCompile(flags.append("^(?:").append(body).append(")\\Z"));
    std::string ours;
    char32_t lo = 0, hi = 0;
    bool open = false;
    auto flush = [&] {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%x-%x", ours.empty() ? "" : ",", static_cast<unsigned>(lo),
                    static_cast<unsigned>(hi));
      ours += buf;
    };
    for (const auto& [c, utf8] : chars) {
      if (!*re.Search(utf8, &m)) continue;
      if (open && hi + 1 == c) {
        hi = c;
        continue;
      }
      if (open) flush();
      lo = hi = c;
      open = true;
    }
    if (open) flush();
    EXPECT_EQ(ours.empty() ? "-" : ours, lines[i]);
  }
}

// (?i) on every cased character: the same letters match as in Python.
TEST(FailRegexPythonTest, CaseInsensitiveLiteralsOverAllCasedCodePoints) {
  TempTree dir;
  std::optional<std::string> out = RunOracle(dir, "casefold");
  if (!out) return;
  std::vector<std::string> lines = SplitOn(*out, '\n');
  ASSERT_GT(lines.size(), 2000u);
  std::vector<std::pair<std::string, std::string>> candidates;  // hex, UTF-8
  for (const std::string& h : SplitOn(lines[0], ',')) {
    candidates.emplace_back(h, Utf8(std::stoul(h, nullptr, 16)));
  }
  FailRegexMatch m;
  int checked = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const size_t colon = lines[i].find(':');
    const unsigned long c = std::stoul(lines[i].substr(0, colon), nullptr, 16);
    char pattern[32];
    std::snprintf(pattern, sizeof pattern, "(?i)^\\U%08lx\\Z", c);
    FailRegex re = MustCompile(pattern);
    std::string ours;
    for (const auto& [hex, subject] : candidates) {
      if (*re.Search(subject, &m)) ours += (ours.empty() ? "" : ",") + hex;
    }
    EXPECT_EQ(ours, lines[i].substr(colon + 1)) << pattern;
    ++checked;
  }
  EXPECT_GT(checked, 2000);
}

}  // namespace
}  // namespace bantam

namespace bantam {
namespace {

// The literal prefilter's "one of these must occur" set, joined by "|".
std::string Need(std::string_view regex) {
  Result<FailRegex> r = FailRegex::Compile(regex, RegexKind::kIgnoreRegex);
  if (!r.ok()) return "ERROR: " + r.status().message();
  std::string out;
  for (const FailRegex::RequiredLiteral& l : r->required_literals()) {
    out += (out.empty() ? "" : "|") + l.text;
  }
  return out;
}

TEST(FailRegexPrefilter, RequiredLiteralsAreSound) {
  EXPECT_EQ(Need("^Registration from '[^']*' failed"), "Registration from '");
  EXPECT_EQ(Need("^(?:NOTICE|SECURITY|WARNING) x"), "NOTICE|SECURITY|WARNING");
  // Optional or zero-repeat parts guarantee nothing; what follows them does.
  EXPECT_EQ(Need("^(?:abc)?x"), "x");
  EXPECT_EQ(Need("^a*b"), "b");
  EXPECT_EQ(Need("^a*"), "");
  EXPECT_EQ(Need("^(abc){0,3}"), "");
  // A repeat of at least one keeps its literal; an alternative without any
  // literal makes the whole alternation unknown.
  EXPECT_EQ(Need("(?:xyz)+"), "xyz");
  EXPECT_EQ(Need("(?:foo|\\d+)"), "");
  // Case-insensitive literals are not literal bytes.
  EXPECT_EQ(Need("(?i)failed password"), "");
  EXPECT_EQ(Need("a(?i:bcd)e"), "a");
  // Escaped punctuation is a literal; class escapes are not.
  EXPECT_EQ(Need("\\[auth\\]\\s"), "[auth]");
  // Lookarounds consume nothing and are left out.
  EXPECT_EQ(Need("(?=abc)x"), "x");
  EXPECT_EQ(Need("(?!abc)"), "");
}

TEST(FailRegexPrefilter, PrefilterKeepsEveryMatch) {
  // Lines that match must still match with the prefilter in front; lines
  // without the literal must not.
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"^(?:NOTICE|WARNING)\\[\\d+\\] x", "NOTICE[1] x", "NOTICE[1] x"},
      {"^(?:NOTICE|WARNING)\\[\\d+\\] x", "VERBOSE[1] x", "<nomatch>"},
      {"failed for '(\\d+)'", "Registration failed for '12'", "failed for '12'"},
      {"failed for '(\\d+)'", "failed for \"12\"", "<nomatch>"},
      {"(?:xyz)+!", "axyzxyz!", "xyzxyz!"},
      {"\\bword\\b", "a word here", "word"},
      {"\\bword\\b", "swordfish", "<nomatch>"},
      {"caf\u00e9 (\\w+)", "caf\u00e9 ok", "caf\u00e9 ok"},
  };
  for (const auto& [regex, line, want] : cases) {
    FailRegex re = MustCompile(regex);
    EXPECT_FALSE(re.required_literals().empty()) << regex;
    EXPECT_EQ(Find(re, line), want) << regex << " on " << line;
  }
}

}  // namespace
}  // namespace bantam
