// MailProgram: a stock ban-mail command (fail2ban's `printf %b "..." |
// mailcmd` family, its options already substituted) read into statements
// whose output, in order, is the message, and the mail command it is piped
// into. MailComposer (mail_message.h) runs it for a ban.
//
// The reader knows only the shell the stock actions are written in: printf
// with %s/%b, `date +FMT`, `whois <ip> [2>&1] || echo TEXT`, `grep -wF
// <ip> FILES | tail -n N`, variable assignments, ( ) and { } groups, and a
// final `| mailcmd`. Anything else is an error naming it, and the caller
// (MailAction) leaves the action to the shell executor. Dynamic tags stay
// tags (shell_words.h). A parsed program is immutable and shared by
// shared_ptr; parsing is pure and runs on any thread.
#ifndef BANTAM_MAIL_PROGRAM_H_
#define BANTAM_MAIL_PROGRAM_H_

#include <memory>
#include <string>
#include <vector>

#include "bantam/shell_words.h"
#include "bantam/status.h"

namespace bantam {

// whois <ip> [2>&1] [|| echo WORDS]
struct WhoisCall {
  bool merge_stderr = false;
  bool has_fallback = false;
  std::vector<Word> fallback;  // echo's arguments
};

struct Stmt {
  enum Kind { kAssign, kPrintf, kWhois, kGrep };
  Kind kind = kPrintf;
  std::string var;          // kAssign
  Word value;               // kAssign; kGrep: the pattern
  std::vector<Word> words;  // kPrintf: format, args; kGrep: files
  WhoisCall whois;          // kWhois
  long per_file = -1;       // kGrep: -m
  long tail = -1;           // kGrep: | tail -n
  bool no_names = false;    // kGrep: -h
};

struct MailProgram {
  std::vector<Stmt> stmts;      // their output, in order, is the message
  std::vector<Word> sink_argv;  // the mail command as exec argv, or
  std::string sink_shell;       // the mail command for `sh -c` (trusted text + dynamic tags)
};

// Parses a mail command (its options already substituted). The sink is
// sink_argv when it is plain words and tags, else its text from the first
// word to the end is sink_shell. Error: what the reader does not know
// ("a command other than printf, whois, grep | tail or an assignment").
Result<std::shared_ptr<const MailProgram>> ParseMailCommand(const std::string& cmd);

}  // namespace bantam

#endif  // BANTAM_MAIL_PROGRAM_H_
