// Shell words: the lexer and grammar of the small piece of POSIX sh that the
// stock ban-mail actions are written in (words, quotes, $var, command
// substitution, | || ; newline, ( ) and { } groups, `2>&1`-style
// redirections). MailProgram (mail_program.h) reads a mail command with it;
// nothing here runs anything.
//
// Values from outside stay out of the text a parser sees: a dynamic tag
// (<ip>, <matches>, <F-USER>...) in the command becomes a kTag piece of its
// word, filled only when a mail is composed. Command substitutions are
// handed to the caller's SubstitutionParser, which knows which commands it
// can reproduce.
//
// Differences from sh, on purpose: whatever this subset does not cover
// (`&`, `&&`, `#` comments, `<` and `>` redirections other than of fd
// digits, `${...}` forms other than ${name}, $? and other specials) is an
// error naming it, never a guess; the caller then leaves the command to a
// real shell. Pure functions; any thread.
#ifndef BANTAM_SHELL_WORDS_H_
#define BANTAM_SHELL_WORDS_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bantam/status.h"

namespace bantam {

struct WhoisCall;  // `whois <ip> || echo ...` (mail_program.h)

// One piece of a shell word.
struct Piece {
  enum Kind {
    kText,   // the action's own text (printf %b may interpret its escapes)
    kTag,    // a dynamic tag: <ip>, <matches>, <F-USER>... (a value from outside)
    kVar,    // $name of a variable assigned earlier in the command
    kDate,   // `date +FORMAT`: text is the strftime format
    kWhois,  // `whois <ip> || echo ...`: call
  };
  Kind kind = kText;
  std::string text;
  bool quoted = false;  // kVar: inside "..." (else word-split)
  std::shared_ptr<WhoisCall> call;
};
using Word = std::vector<Piece>;

// A word or an operator ("|", "||", ";", "\n", "(", ")", "{", "}", "2>&1",
// "2>/dev/null", ...).
struct Token {
  enum Kind { kWord, kOp };
  Kind kind = kWord;
  Word word;
  std::string op;
  size_t begin = 0;  // offset of the token in the lexed text
};

// A simple command (words and redirection ops) or a ( ) / { } group.
struct Cmd;
using AndOr = std::vector<std::vector<Cmd>>;  // pipelines joined by ||
struct Cmd {
  bool group = false;
  std::vector<Token> words;  // simple: words and redirection ops
  std::vector<AndOr> body;   // group
};

// A simple command split into leading NAME=value assignments, words and
// redirections.
struct Simple {
  std::vector<std::pair<std::string, Word>> assigns;
  std::vector<Word> words;
  std::vector<std::string> redirs;
};

// Turns the text inside $(...) or `...` into the piece it stands for,
// appended to `w`; an error when it is no command the caller reproduces.
using SubstitutionParser = std::function<Status(const std::string& inner, Word* w)>;

// Lexes `s` into tokens. Error: what is not in the subset ("redirection
// '<'", "unterminated '", ...) or what `subst` refused.
Status LexShell(const std::string& s, const SubstitutionParser& subst, std::vector<Token>* out);
// Parses tokens into a list of and-or lists. Error: "missing ')'",
// "'&&'", "unexpected end", ...
Status ParseShellList(std::vector<Token> tokens, std::vector<AndOr>* out);

Simple SplitSimple(const Cmd& c);

// The text of `w` when it is all kText pieces; false (and *out partial)
// otherwise.
bool Literal(const Word& w, std::string* out);
// `w` is exactly the literal `text`.
bool IsWord(const Word& w, const char* text);

// <name> at s[i] (fail2ban's <([^ <>]+)>): the name, or "" if none.
std::string TagAt(const std::string& s, size_t i);
// Tags filled per ban (fail2ban's ActionInfo and the hostnames): they stay
// tags in a parsed command and are never seen by a parser or a shell.
bool IsDynamicTag(const std::string& tag);

}  // namespace bantam

#endif  // BANTAM_SHELL_WORDS_H_
