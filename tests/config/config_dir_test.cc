#include "bantam/config_dir.h"

#include <gtest/gtest.h>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

TEST(ConfigDirTest, CommandLineWinsOverTheDefaultsFile) {
  TempTree t;
  t.Write("default", "BANTAM_CONFDIR=/etc/bantam\n");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::string("/srv/conf"), t.Path("default"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/srv/conf");
  EXPECT_EQ(c->origin, "-c");
}

TEST(ConfigDirTest, DefaultsFileNamesTheDirectoryAndTheLine) {
  TempTree t;
  t.Write("default",
          "# Written by the bantam package.\n"
          "\n"
          "OTHER=x\n"
          "BANTAM_CONFDIR=/etc/fail2ban\n");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("default"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/etc/fail2ban");
  EXPECT_EQ(c->origin, "BANTAM_CONFDIR in " + t.Path("default") + ":4");
}

TEST(ConfigDirTest, ShellQuotingExportAndTrailingCommentAreRead) {
  TempTree t;
  t.Write("default", "export BANTAM_CONFDIR=\"/etc/ban tam\"  # chosen by hand\n");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("default"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/etc/ban tam");
}

TEST(ConfigDirTest, LastAssignmentWinsAsInTheShell) {
  TempTree t;
  t.Write("default", "BANTAM_CONFDIR=/etc/fail2ban\nBANTAM_CONFDIR='/etc/bantam'\n");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("default"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/etc/bantam");
  EXPECT_EQ(c->origin, "BANTAM_CONFDIR in " + t.Path("default") + ":2");
}

TEST(ConfigDirTest, MissingFileFallsBackToFail2banAndSaysSo) {
  TempTree t;
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("nothing"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/etc/fail2ban");
  EXPECT_EQ(c->origin, "built-in default: " + t.Path("nothing") + " not found");
}

TEST(ConfigDirTest, FileWithoutTheVariableFallsBackAndSaysSo) {
  TempTree t;
  t.Write("default", "# nothing chosen\n");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("default"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->dir, "/etc/fail2ban");
  EXPECT_EQ(c->origin, "built-in default: no BANTAM_CONFDIR in " + t.Path("default"));
}

TEST(ConfigDirTest, ErrorsNameFileAndLine) {
  TempTree t;
  const std::string f = t.Path("default");
  t.Write("default", "# ok\nBANTAM_CONFDIR\n");
  EXPECT_EQ(ChooseConfigDir(std::nullopt, f).status().message(), f + ":2: expected NAME=VALUE");
  t.Write("default", "BANTAM_CONFDIR=\"/etc/bantam\n");
  EXPECT_EQ(ChooseConfigDir(std::nullopt, f).status().message(), f + ":1: unterminated quote");
  t.Write("default", "BANTAM_CONFDIR=etc/bantam\n");
  EXPECT_EQ(ChooseConfigDir(std::nullopt, f).status().message(),
            f + ":1: BANTAM_CONFDIR must be an absolute directory, got 'etc/bantam'");
  t.Write("default", "BANTAM_CONFDIR=\n");
  EXPECT_EQ(ChooseConfigDir(std::nullopt, f).status().message(),
            f + ":1: BANTAM_CONFDIR must be an absolute directory, got ''");
  t.Write("default", "BANTAM_CONFDIR=/etc/bantam /etc/fail2ban\n");
  EXPECT_EQ(ChooseConfigDir(std::nullopt, f).status().message(),
            f + ":1: expected one value, got more after it");
}

TEST(ConfigDirTest, UnreadableFileIsAnErrorNotAFallback) {
  TempTree t;
  t.Write("dir/x", "");
  Result<ConfigDirChoice> c = ChooseConfigDir(std::nullopt, t.Path("dir"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cannot read " + t.Path("dir"));
}

}  // namespace
}  // namespace bantam
