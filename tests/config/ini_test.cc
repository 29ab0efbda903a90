#include "bantam/ini.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

std::string ValueOf(const IniFile& ini, const std::string& section, const std::string& opt) {
  const ConfSection* s = section == "DEFAULT" ? &ini.defaults : ini.sections.Find(section);
  if (!s) return "<no section>";
  const ConfValue* v = s->Find(opt);
  return v ? v->text : "<no option>";
}

TEST(IniParse, SectionsOptionsAndBothDelimiters) {
  Result<IniFile> ini = ParseIni("[DEFAULT]\nA = 1\n[jail]\nport: ssh\nx=\n", "t.conf");
  ASSERT_TRUE(ini.ok()) << ini.status().message();
  EXPECT_EQ(ValueOf(*ini, "DEFAULT", "a"), "1");  // names are lower-cased
  EXPECT_EQ(ValueOf(*ini, "jail", "port"), "ssh");
  EXPECT_EQ(ValueOf(*ini, "jail", "x"), "");
  EXPECT_EQ(ini->sections.size(), 1u);
}

TEST(IniParse, FirstDelimiterSplitsNameFromValue) {
  Result<IniFile> ini = ParseIni("[s]\nurl = http://x:80/a=b\n", "t.conf");
  ASSERT_TRUE(ini.ok());
  EXPECT_EQ(ValueOf(*ini, "s", "url"), "http://x:80/a=b");
}

TEST(IniParse, ContinuationLinesAndKeptBlankLines) {
  Result<IniFile> ini = ParseIni(
      "[s]\n"
      "failregex = ^one$\n"
      "            ^two$\n"
      "\n"
      "            ^three$\n"
      "\n"
      "next = 1\n",
      "t.conf");
  ASSERT_TRUE(ini.ok());
  // The blank line inside stays; trailing blank lines are dropped.
  EXPECT_EQ(ValueOf(*ini, "s", "failregex"), "^one$\n^two$\n\n^three$");
  EXPECT_EQ(ValueOf(*ini, "s", "next"), "1");
}

TEST(IniParse, ContinuationNeedsDeeperIndentThanTheOptionLine) {
  Result<IniFile> ini = ParseIni("[s]\n  a = 1\n  b = 2\n    c\n", "t.conf");
  ASSERT_TRUE(ini.ok()) << ini.status().message();
  EXPECT_EQ(ValueOf(*ini, "s", "a"), "1");
  EXPECT_EQ(ValueOf(*ini, "s", "b"), "2\nc");
}

TEST(IniParse, CommentRules) {
  Result<IniFile> ini = ParseIni(
      "# full line\n"
      "; also full line\n"
      "[s]\n"
      "a = x ; inline comment\n"
      "b = x;not a comment\n"
      "c = x # hash is not an inline comment\n"
      "d = one\n"
      "    # a comment line inside a value is dropped\n"
      "    two\n",
      "t.conf");
  ASSERT_TRUE(ini.ok());
  EXPECT_EQ(ValueOf(*ini, "s", "a"), "x");
  EXPECT_EQ(ValueOf(*ini, "s", "b"), "x;not a comment");
  EXPECT_EQ(ValueOf(*ini, "s", "c"), "x # hash is not an inline comment");
  EXPECT_EQ(ValueOf(*ini, "s", "d"), "one\ntwo");
}

TEST(IniParse, CarriageReturnLineEnds) {
  Result<IniFile> ini = ParseIni("[s]\r\na = 1\r\nb = 2\r", "t.conf");
  ASSERT_TRUE(ini.ok());
  EXPECT_EQ(ValueOf(*ini, "s", "a"), "1");
  EXPECT_EQ(ValueOf(*ini, "s", "b"), "2");
}

TEST(IniParse, SourceLocations) {
  Result<IniFile> ini = ParseIni("[s]\n\na = 1\n", "dir/t.conf");
  ASSERT_TRUE(ini.ok());
  EXPECT_EQ(ini->sections.Find("s")->Find("a")->loc.ToString(), "dir/t.conf:3");
}

TEST(IniParse, DefaultMayRepeatOtherSectionsMayNot) {
  EXPECT_TRUE(ParseIni("[DEFAULT]\na=1\n[DEFAULT]\nb=2\n", "t.conf").ok());
  Result<IniFile> dup = ParseIni("[s]\na=1\n[s]\nb=2\n", "t.conf");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "t.conf:3: section 's' already exists");
}

TEST(IniParse, DuplicateOptionIsAnError) {
  Result<IniFile> dup = ParseIni("[sshd]\nport = 22\nPort = 2222\n", "jail.local");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "jail.local:3: option 'port' in section 'sshd' already exists");
}

TEST(IniParse, OptionBeforeAnySection) {
  Result<IniFile> r = ParseIni("\nenabled = true\n", "jail.local");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "jail.local:2: no [section] header before this line");
}

TEST(IniParse, EveryGarbageLineIsReported) {
  Result<IniFile> r = ParseIni("[s]\nthis is junk\na = 1\nmore junk\n= x\n", "f.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "f.conf:2: expected 'name = value' or '[section]', got 'this is junk'\n"
            "f.conf:4: expected 'name = value' or '[section]', got 'more junk'\n"
            "f.conf:5: option name missing before '='");
}

TEST(IniParse, EmptyBracketsAreNotASection) {
  Result<IniFile> r = ParseIni("[s]\n[]\n", "f.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "f.conf:2: expected 'name = value' or '[section]', got '[]'");
}

TEST(IniRead, MissingFileNamesPathAndErrno) {
  Result<IniFile> r = ReadIniFile("/nonexistent/bantam/x.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "/nonexistent/bantam/x.conf: No such file or directory");
}

}  // namespace
}  // namespace bantam
