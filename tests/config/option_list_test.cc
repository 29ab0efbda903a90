#include "bantam/option_list.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

std::string Dump(const NamedOptions& n) {
  std::string out = n.name + "{";
  for (const auto& [k, v] : n.options) out += k + "=" + v + ";";
  return out + "}";
}

std::string Parse(std::string_view text) {
  Result<NamedOptions> r = ParseNamedOptions(text);
  return r.ok() ? Dump(*r) : "error: " + r.status().message();
}

TEST(NamedOptions, PlainName) { EXPECT_EQ(Parse("sshd"), "sshd{}"); }

TEST(NamedOptions, QuotedAndBareValues) {
  EXPECT_EQ(Parse("iptables[name=SSH, port=\"ssh, 2222\", protocol='tcp']"),
            "iptables{name=SSH;port=ssh, 2222;protocol=tcp;}");
}

TEST(NamedOptions, ValuesAreStrippedAndMayBeEmpty) {
  EXPECT_EQ(Parse("a[x=  1 , y=]"), "a{x=1;y=;}");
}

TEST(NamedOptions, SeveralGroups) {
  EXPECT_EQ(Parse("nftables[type=allports][name=x]"), "nftables{type=allports;name=x;}");
}

TEST(NamedOptions, TrailingComma) { EXPECT_EQ(Parse("a[x=1,]"), "a{x=1;}"); }

TEST(NamedOptions, ValueContainingEqualsAndNewline) {
  EXPECT_EQ(Parse("a[cmd=x=y\nz]"), "a{cmd=x=y\nz;}");
}

TEST(NamedOptions, MissingClosingBracket) {
  EXPECT_EQ(Parse("sshd[mode=aggressive"), "error: unexpected option syntax");
}

TEST(NamedOptions, TextAfterQuotedValue) {
  EXPECT_EQ(Parse("a[x=\"1\"2, y=3]"), "error: unexpected syntax at 5 after option 'x': 2, y=3");
}

TEST(NamedOptions, OptionWithoutEquals) {
  EXPECT_EQ(Parse("a[x=1, oops]"), "error: expected option, wrong syntax at 4:  oops");  // fail2ban keeps the space
}

TEST(SplitNamedOptionsList, OnePerEntryWithSpacesInsideOptions) {
  std::vector<std::string> v = SplitNamedOptionsList(
      "iptables-allports[name=ASTERISK, protocol=all]\n"
      "           sendmail-whois[name=ASTERISK, dest=root, sender=fail2ban@example.org]");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], "iptables-allports[name=ASTERISK, protocol=all]");
  EXPECT_EQ(v[1], "sendmail-whois[name=ASTERISK, dest=root, sender=fail2ban@example.org]");
}

TEST(SplitNamedOptionsList, BareNamesAndMultilineOptions) {
  std::vector<std::string> v =
      SplitNamedOptionsList("dummy  a[x=\"1 2\",\n   y=3]\n\nb");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], "dummy");
  EXPECT_EQ(v[1], "a[x=\"1 2\",\n   y=3]");
  EXPECT_EQ(v[2], "b");
}

TEST(SplitNamedOptionsList, JunkAfterBracketIsOneWord) {
  std::vector<std::string> v = SplitNamedOptionsList("a[x=1]b c");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], "a[x=1]b");
  EXPECT_EQ(v[1], "c");
}

TEST(SplitNewlines, KeepsEmptyPiecesLikePythonSplit) {
  EXPECT_EQ(SplitNewlines("a\n\nb\n"), (std::vector<std::string_view>{"a", "", "b", ""}));
  EXPECT_EQ(SplitNewlines(""), (std::vector<std::string_view>{""}));
}

TEST(SplitWords, SpacesCommasNewlines) {
  EXPECT_EQ(SplitWords("127.0.0.1/8 ::1,10.0.0.0/8\n\n  host.example ,"),
            (std::vector<std::string>{"127.0.0.1/8", "::1", "10.0.0.0/8", "host.example"}));
  EXPECT_TRUE(SplitWords("").empty());
}

}  // namespace
}  // namespace bantam
