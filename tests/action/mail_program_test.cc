#include "bantam/mail_program.h"

#include <gtest/gtest.h>

#include <string>

#include "bantam/shell_words.h"

namespace bantam {
namespace {

std::shared_ptr<const MailProgram> Parse(const std::string& cmd) {
  Result<std::shared_ptr<const MailProgram>> p = ParseMailCommand(cmd);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.ok() ? *p : nullptr;
}

std::string Error(const std::string& cmd) {
  Result<std::shared_ptr<const MailProgram>> p = ParseMailCommand(cmd);
  EXPECT_FALSE(p.ok()) << cmd;
  return p.ok() ? "" : p.status().message();
}

TEST(MailProgramTest, StockShapeWithWhoisAndDate) {
  auto p = Parse(
      "printf %b \"Subject: [Fail2Ban] j: banned <ip>\\nDate: `LC_ALL=C date +\"%a\"`\\n"
      "$(whois <ip> || echo \"(whois failed)\")\" | /usr/sbin/sendmail -f x root");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->stmts.size(), 1u);
  EXPECT_EQ(p->stmts[0].kind, Stmt::kPrintf);
  const Word& arg = p->stmts[0].words[1];
  bool tag = false, date = false, whois = false;
  for (const Piece& piece : arg) {
    tag |= piece.kind == Piece::kTag && piece.text == "ip";
    date |= piece.kind == Piece::kDate && piece.text == "%a";
    whois |= piece.kind == Piece::kWhois && piece.call && piece.call->has_fallback;
  }
  EXPECT_TRUE(tag && date && whois);
  ASSERT_EQ(p->sink_argv.size(), 4u);
  EXPECT_TRUE(p->sink_shell.empty());
  EXPECT_TRUE(IsWord(p->sink_argv[0], "/usr/sbin/sendmail"));
}

TEST(MailProgramTest, GrepTailAndAssignments) {
  auto p = Parse(
      "f='/var/log/a /var/log/b'; ( printf %s \"x\"; grep -wF <ip> $f | tail -n 5 ) | mail r");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->stmts.size(), 3u);
  EXPECT_EQ(p->stmts[0].kind, Stmt::kAssign);
  EXPECT_EQ(p->stmts[2].kind, Stmt::kGrep);
  EXPECT_EQ(p->stmts[2].tail, 5);
  auto q = Parse("( grep -hwF -m3 -e <ip> /a /b | tail -7 ) | mail r");
  ASSERT_NE(q, nullptr);
  ASSERT_EQ(q->stmts.size(), 1u);
  EXPECT_EQ(q->stmts[0].per_file, 3);
  EXPECT_EQ(q->stmts[0].tail, 7);
  EXPECT_TRUE(q->stmts[0].no_names);
  EXPECT_EQ(q->stmts[0].words.size(), 2u);
}

TEST(MailProgramTest, ShellSyntaxInTheSinkKeepsItsText) {
  auto p = Parse("printf %s x | /usr/sbin/sendmail -f '<sender>' 2>/dev/null");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->sink_argv.empty());
  EXPECT_EQ(p->sink_shell, "/usr/sbin/sendmail -f '<sender>' 2>/dev/null");
}

TEST(MailProgramTest, WhatItDoesNotKnowIsNamed) {
  EXPECT_EQ(Error("printf %s x | mail r &"), "background job (&)");
  EXPECT_EQ(Error("printf %d 1 | mail r"), "printf %d");
  EXPECT_EQ(Error("echo x | mail r"),
            "a command other than printf, whois, grep | tail or an assignment");
  EXPECT_EQ(Error("printf %s \"$(id)\" | mail r"), "command substitution `id`");
  EXPECT_EQ(Error("printf %s x > f | mail r"), "redirection '>'");
  EXPECT_EQ(Error("printf %s x | mail r < f"), "redirection '<'");
  EXPECT_EQ(Error("printf %s 'x | mail r"), "unterminated '");
  EXPECT_EQ(Error("printf %s x && mail r"), "'&&'");
  EXPECT_EQ(Error("( grep -w <ip> /f | tail -n 5 ) | mail r"),
            "grep other than `grep -wF <ip> FILES`");
  EXPECT_EQ(Error("( grep -wFq <ip> /f | tail -n 5 ) | mail r"), "grep -q");
  EXPECT_EQ(Error("( grep -wF -m x <ip> /f | tail -n 5 ) | mail r"), "grep -m x");
  EXPECT_EQ(Error("( grep -wF <ip> /f | tail -n x ) | mail r"), "tail -n x");
  EXPECT_EQ(Error("( grep -wF <ip> /f | tail +5 ) | mail r"), "tail other than `tail -n N`");
  EXPECT_EQ(Error("printf %s $v | mail r"), "printf argument with unquoted $v");
}

TEST(ShellWordsTest, TagsStayTagsInsideQuotes) {
  std::vector<Token> toks;
  SubstitutionParser none = [](const std::string& inner, Word*) {
    return Status::Error("no " + inner);
  };
  ASSERT_TRUE(LexShell("a'<ip> b'\"<F-USER>\" c", none, &toks).ok());
  ASSERT_EQ(toks.size(), 2u);
  ASSERT_EQ(toks[0].word.size(), 4u);
  EXPECT_EQ(toks[0].word[1].kind, Piece::kTag);
  EXPECT_EQ(toks[0].word[3].kind, Piece::kTag);
  EXPECT_EQ(toks[0].word[3].text, "F-USER");
  std::string lit;
  EXPECT_FALSE(Literal(toks[0].word, &lit));
  EXPECT_EQ(LexShell("x <notatag>", none, &toks).message(), "redirection '<'");
  EXPECT_EQ(LexShell("x $(y)", none, &toks).message(), "no y");
}

}  // namespace
}  // namespace bantam
