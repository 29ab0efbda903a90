// MailAction: the stock ban-mail actions (fail2ban's sendmail, sendmail-whois,
// -lines, -matches, -ipmatches, -ipjailmatches, mail, mail-whois,
// mail-whois-lines, and bantam's own sendmail-whois*) composed and sent
// without a shell ever seeing text from outside.
//
// The stock actions build the message in the shell: `printf %b "...
// `whois <ip>` ..." | <mailcmd>`. MailAction reads that command (after the
// action's own options are substituted, as fail2ban does) with a small
// parser that knows exactly the shell those actions are written in: printf
// with %b/%s, `date +FMT`, `whois <ip> || echo TEXT`, `grep ... | tail`,
// variable assignments, ( ) and { } groups, and a final `| mailcmd`. What it
// does not know makes CreateIfStock decline, and the shell executor runs the
// action as written, so an operator's customisation keeps working.
//
// Differences from running the action in the shell, on purpose:
//  - values from outside (<ip>, <matches>, whois answers, log lines, <F-*>)
//    are inserted verbatim: printf %b backslash escapes are interpreted
//    only in the action's own text, never in those values (fail2ban's
//    `printf %b` turns a `\c` in a log line into the end of the mail);
//  - whois runs as exec("whois", ip) through env.spawner (no shell), with
//    a timeout (whois_timeout, 30 s) and its answer capped at 64 KiB; it is
//    not converted between charsets (mail-whois-common's
//    _whois_convert_charset is declined);
//  - the mail command gets the message on stdin through env.spawner, as
//    exec(argv) split from mailcmd; only when it holds shell syntax
//    (redirections, $, pipes) does it run under `sh -c`, with the trusted
//    configured text as the script and dynamic values as positional
//    parameters. Header values taken into argv (a mail -s subject) have
//    CR/LF replaced by spaces;
//  - `date` is formatted in the C locale by strftime;
//  - at most kMaxPendingMails (option mailqueue) ban mails wait per action;
//    more are dropped with a warning (the ban itself is never held back).
// Problems with whois or the mail command are the report's warnings; the
// operation still succeeds (a ban is never undone by its mail).
// The parts: shell_words.h (lexer), mail_program.h (the parsed command),
// mail_message.h (composing a mail), printf_escapes.h.
#ifndef BANTAM_MAIL_ACTION_H_
#define BANTAM_MAIL_ACTION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "bantam/action.h"
#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

struct MailProgram;  // a parsed mail command (mail_program.h)

class MailAction : public Action {
 public:
  static constexpr size_t kMaxPendingMails = 1000;
  static constexpr size_t kMaxWhoisOutput = 64 * 1024;

  // The native action when `options` are a stock mail action this class can
  // reproduce; nullptr with *shell_reason set ("native = no", "actionban:
  // cannot compose natively: ...") when the shell executor must run them.
  // Error: options a mail action cannot have (bad timeout, whois_timeout),
  // or no pool or spawner in `env`. `env.mail_pool` (or `env.pool`) and
  // `env.spawner` must outlive the action.
  static Result<std::unique_ptr<Action>> CreateIfStock(const std::string& jail,
                                                       const std::string& name,
                                                       const OrderedMap<std::string>& options,
                                                       ActionEnv env, std::string* shell_reason);
  // Blocks until the mails already submitted went out (or timed out).
  ~MailAction() override;
  MailAction(const MailAction&) = delete;
  MailAction& operator=(const MailAction&) = delete;

  const std::string& jail() const override { return jail_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "mail"; }
  bool start_on_demand() const override { return false; }
  bool has_flush() const override { return false; }

  // The action's options as configured; a set applies to mails submitted
  // after it (a value the parser then cannot handle fails those mails).
  std::optional<std::string> GetProperty(const std::string& key) const override;
  void SetProperty(const std::string& key, const std::string& value) override;

  // Loop thread: queues `op` on the action's strand of env.mail_pool; `done`
  // runs on the loop thread. Start, stop and ban send mails; the others
  // have nothing to do (reported skipped).
  void Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) override;
  // Runs `op` now on the calling thread, blocking. For tests and tools;
  // never while submitted operations may be running.
  ActionReport Run(ActionOp op, const BanInfo& info);

  uint64_t ban_epoch() const override { return 0; }
  // Ban mails dropped because kMaxPendingMails were waiting.
  uint64_t dropped() const { return dropped_.load(); }

 private:
  MailAction(std::string jail, std::string name, OrderedMap<std::string> options, ActionEnv env);
  WorkerPool* pool() const { return env_.mail_pool ? env_.mail_pool : env_.pool; }
  std::string Option(const std::string& key) const;
  // The parsed program for an operation (strand only; cached until a set).
  Result<std::shared_ptr<const MailProgram>> Program(const std::string& op_tag);
  void Send(const std::string& op_tag, const BanInfo& info, ActionReport* report);

  const std::string jail_, name_;
  mutable std::mutex options_mu_;  // options_ is read by the loop, set on the strand
  OrderedMap<std::string> options_;
  const ActionEnv env_;
  WorkerPool::StrandId strand_ = 0;
  std::atomic<size_t> pending_{0};
  std::atomic<uint64_t> dropped_{0};
  // Owned by the strand.
  std::map<std::string, std::shared_ptr<const MailProgram>> programs_;
  bool started_ = false;
};

}  // namespace bantam

#endif  // BANTAM_MAIL_ACTION_H_
