// MailComposer: writes one ban mail by running a parsed MailProgram
// (mail_program.h) for one ban: printf with the action's escapes, `date`,
// whois, grep of log files, variables; and fills the mail command's argv.
// Constructed per mail on the action's worker strand, used there, and
// dropped; the BanInfo, Spawner and ActionReport it is given must outlive
// it.
//
// Differences from fail2ban's shell, on purpose:
//  - values from outside (<ip>, <matches>, <F-*>, whois answers, log lines)
//    are inserted verbatim; printf %b escapes are interpreted only in the
//    action's own text (printf_escapes.h);
//  - whois runs through the Spawner as exec("whois", [--,] ip), no shell,
//    with a timeout and its answer capped at MailAction::kMaxWhoisOutput;
//  - `date` is formatted in the C locale by strftime;
//  - grep -wF reads the files itself (globs expanded as the shell would).
// Problems with whois are warnings in the report, never errors.
#ifndef BANTAM_MAIL_MESSAGE_H_
#define BANTAM_MAIL_MESSAGE_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bantam/action.h"
#include "bantam/command_action.h"
#include "bantam/mail_program.h"
#include "bantam/spawner.h"

namespace bantam {

class MailComposer {
 public:
  // `who` prefixes warnings ("mail action JAIL/NAME: "); whois runs through
  // `spawner` with `whois_timeout` seconds.
  MailComposer(std::string who, const BanInfo& info, Spawner* spawner, double whois_timeout,
               ActionReport* report)
      : who_(std::move(who)),
        info_(info),
        spawner_(spawner),
        whois_timeout_(whois_timeout),
        report_(*report) {}
  MailComposer(const MailComposer&) = delete;
  MailComposer& operator=(const MailComposer&) = delete;

  // The message: the output of the program's statements, in order.
  std::string Message(const MailProgram& prog);
  // `words` expanded with tags filled, for an exec argv: CR/LF become
  // spaces (no header injection through a mail -s subject), NULs go.
  std::vector<std::string> Argv(const std::vector<Word>& words);
  // The value of a dynamic tag for this ban; <F-NAME> from the captures
  // (empty when not captured). nullopt: unknown, left as written.
  std::optional<std::string> Tag(const std::string& tag);

 private:
  bool ExpandInto(const Word& w, bool b_arg, std::string* out);
  std::string Expand(const Word& w);
  void Printf(const std::vector<Word>& words, std::string* out);
  static std::string Date(const std::string& fmt);
  std::string Whois(const WhoisCall& call);
  std::string Grep(const Stmt& st);

  const std::string who_;
  const BanInfo& info_;
  Spawner* const spawner_;
  const double whois_timeout_;
  ActionReport& report_;
  std::map<std::string, std::string> vars_;  // assigned by the program
  TicketTags tags_{info_};
};

}  // namespace bantam

#endif  // BANTAM_MAIL_MESSAGE_H_
