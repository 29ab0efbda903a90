#include "bantam/mail_action.h"

#include <cctype>
#include <set>
#include <utility>
#include <vector>

#include "bantam/action_queue.h"
#include "bantam/command_action.h"
#include "bantam/duration.h"
#include "bantam/mail_message.h"
#include "bantam/mail_program.h"
#include "bantam/py.h"
#include "bantam/shell_words.h"
#include "bantam/tag_substitution.h"

namespace bantam {

namespace {

constexpr int kMaxTagReplacements = 25;
constexpr double kDefaultWhoisTimeout = 30;
constexpr double kDefaultMailTimeout = 60;
constexpr size_t kMaxMailCmdOutput = 8 * 1024;

const char* const kNothingToDoKeys[] = {"actionunban",  "actioncheck",  "actionflush",
                                        "actionrepair", "actionreload", "actionprolong"};

bool IsBlank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

bool IsFalse(const std::string& s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l == "false" || l == "no" || l == "off" || l == "0";
}

// argv as a shell would need it quoted, for the log (never run).
std::string DescribeArgv(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`|;&<>()*?[]#~") == std::string::npos;
    if (plain) {
      s += a;
      continue;
    }
    s += '\'';
    for (char c : a) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
    s += '\'';
  }
  return s;
}

// The report of one operation, before it ran.
ActionReport NewReport(ActionOp op, const std::string& jail, const std::string& action,
                       const std::string& ip) {
  ActionReport report;
  report.op = op;
  report.jail = jail;
  report.action = action;
  report.ip = ip;
  return report;
}

// fail2ban's replaceTag over the action's own options: `op_tag` with every
// option tag substituted; dynamic tags stay.
Result<std::string> StaticCommand(const OrderedMap<std::string>& options,
                                  const std::string& op_tag) {
  static const std::set<std::string> kEscaped = {"matches", "ipmatches", "ipjailmatches"};
  Result<OrderedMap<std::string>> props = SubstituteTags(options, kEscaped, nullptr);
  if (!props.ok()) return props.status();
  std::string query = "<" + op_tag + ">";
  for (int count = kMaxTagReplacements + 1;;) {
    std::string value;
    size_t i = 0;
    while (i < query.size()) {
      std::string tag = query[i] == '<' ? TagAt(query, i) : "";
      if (tag.empty()) {
        value += query[i++];
        continue;
      }
      const std::string* v = props->Find(tag);
      if (v && !IsDynamicTag(tag)) {
        value += kEscaped.count(tag) ? EscapeTag(*v) : *v;
      } else if (tag == "br") {
        value += '\n';
      } else if (tag == "sp") {
        value += ' ';
      } else {
        value += "<" + tag + ">";
      }
      i += tag.size() + 2;
    }
    if (value == query) break;
    query = std::move(value);
    if (--count <= 0) return Status::Error("too long replacement interpolation in " + op_tag);
  }
  return query;
}

// The program ends in a mail command (the stream carries actionban with
// <mailcmd> already substituted, so the program's name decides).
bool LooksLikeMailSink(const MailProgram& prog) {
  std::string cmd;
  if (!prog.sink_argv.empty()) {
    if (!Literal(prog.sink_argv[0], &cmd)) return false;
  } else {
    cmd = prog.sink_shell.substr(0, prog.sink_shell.find_first_of(" \t\n"));
  }
  cmd = cmd.substr(cmd.rfind('/') == std::string::npos ? 0 : cmd.rfind('/') + 1);
  static const std::set<std::string> kMailers = {"mail",     "mailx", "bsd-mailx", "s-nail",
                                                 "sendmail", "msmtp", "ssmtp",     "mutt"};
  return kMailers.count(cmd) != 0;
}

}  // namespace

// ------------------------------------------------------------- MailAction

Result<std::unique_ptr<Action>> MailAction::CreateIfStock(const std::string& jail,
                                                          const std::string& name,
                                                          const OrderedMap<std::string>& options,
                                                          ActionEnv env,
                                                          std::string* shell_reason) {
  auto decline = [&](std::string why) -> Result<std::unique_ptr<Action>> {
    if (shell_reason) *shell_reason = std::move(why);
    return std::unique_ptr<Action>();
  };
  if (const std::string* native = options.Find("native"); native && IsFalse(*native))
    return decline("native = no");
  const std::string* ban = options.Find("actionban");
  if (!ban || IsBlank(*ban)) return decline("not a mail action: actionban is empty");
  if (!options.Contains("dest")) return decline("not a mail action: no dest option");
  for (const char* key : kNothingToDoKeys) {
    const std::string* v = options.Find(key);
    if (v && !IsBlank(*v))
      return decline(std::string("not a stock mail action: ") + key + " is set");
  }
  for (const char* key : {"timeout", "whois_timeout"}) {
    if (const std::string* t = options.Find(key)) {
      Result<double> d = ParseDuration(*t);
      if (!d.ok())
        return Status::Error("action " + jail + "/" + name + ": " + key + ": " +
                             d.status().message());
    }
  }
  for (const char* op : {"actionban", "actionreban", "actionstart", "actionstop"}) {
    const std::string* v = options.Find(op);
    if (!v || IsBlank(*v)) continue;
    Result<std::string> cmd = StaticCommand(options, op);
    if (!cmd.ok()) return decline(std::string(op) + ": " + cmd.status().message());
    Result<std::shared_ptr<const MailProgram>> prog = ParseMailCommand(*cmd);
    if (!prog.ok())
      return decline(std::string(op) + ": cannot compose natively: " + prog.status().message());
    if (std::string(op) == "actionban" && !LooksLikeMailSink(**prog))
      return decline("not a mail action: actionban does not pipe into a mail command");
  }
  if (env.mail_pool == nullptr && env.pool == nullptr)
    return Status::Error("action " + jail + "/" + name + ": no worker pool for mail");
  if (env.spawner == nullptr)
    return Status::Error("action " + jail + "/" + name + ": no spawner for mail");
  return std::unique_ptr<Action>(new MailAction(jail, name, options, env));
}

MailAction::MailAction(std::string jail, std::string name, OrderedMap<std::string> options,
                       ActionEnv env)
    : jail_(std::move(jail)), name_(std::move(name)), options_(std::move(options)), env_(env) {
  strand_ = pool()->NewStrand();
}

MailAction::~MailAction() { pool()->WaitIdle(strand_); }

std::string MailAction::Option(const std::string& key) const {
  return GetProperty(key).value_or(std::string());
}

std::optional<std::string> MailAction::GetProperty(const std::string& key) const {
  return FindOptionLocked(options_mu_, options_, key);
}

void MailAction::SetProperty(const std::string& key, const std::string& value) {
  pool()->Post(strand_, [this, key, value]() -> WorkerPool::Completion {
    {
      std::lock_guard<std::mutex> lock(options_mu_);
      options_.Set(key, value);
    }
    programs_.clear();
    return nullptr;
  });
}

Result<std::shared_ptr<const MailProgram>> MailAction::Program(const std::string& op_tag) {
  if (auto it = programs_.find(op_tag); it != programs_.end()) return it->second;
  OrderedMap<std::string> options;
  {
    std::lock_guard<std::mutex> lock(options_mu_);
    options = options_;
  }
  Result<std::string> cmd = StaticCommand(options, op_tag);
  if (!cmd.ok()) return cmd.status();
  Result<std::shared_ptr<const MailProgram>> prog = ParseMailCommand(*cmd);
  if (!prog.ok()) {
    return Status::Error(op_tag + " cannot be composed natively any more: " +
                         prog.status().message() + " (set native = no to run it in the shell)");
  }
  programs_[op_tag] = *prog;
  return *prog;
}

void MailAction::Send(const std::string& op_tag, const BanInfo& info, ActionReport* report) {
  if (IsBlank(Option(op_tag))) {
    report->skipped = true;
    return;
  }
  Result<std::shared_ptr<const MailProgram>> prog = Program(op_tag);
  if (!prog.ok()) {
    report->status =
        Status::Error("mail action " + jail_ + "/" + name_ + ": " + prog.status().message());
    return;
  }
  double whois_timeout = kDefaultWhoisTimeout, timeout = kDefaultMailTimeout;
  if (Result<double> t = ParseDuration(Option("whois_timeout")); t.ok() && *t > 0)
    whois_timeout = *t;
  if (Result<double> t = ParseDuration(Option("timeout")); t.ok() && *t > 0) timeout = *t;

  MailComposer composer("mail action " + jail_ + "/" + name_ + ": ", info, env_.spawner,
                        whois_timeout, report);
  const std::string message = composer.Message(**prog);
  CommandRun run;
  run.operation = op_tag;
  run.family = info.family;
  run.timeout_seconds = timeout;
  SpawnRequest req;
  if (!(*prog)->sink_argv.empty()) {
    req.argv = composer.Argv((*prog)->sink_argv);
    run.command.script = DescribeArgv(req.argv);
  } else {
    // Only the configured text is the script; ban values are arguments.
    run.command = ReplaceDynamicTags((*prog)->sink_shell,
                                     [&](const std::string& tag) { return composer.Tag(tag); },
                                     info.captures);
    req.script = run.command.script;
    req.args = run.command.args;
  }
  req.input = message;
  req.timeout_seconds = timeout;
  req.max_output = kMaxMailCmdOutput;
  run.result = env_.spawner->Run(req);
  if (!run.result.ok()) {
    std::string note = "mail action " + jail_ + "/" + name_ + ": mail" +
                       (info.ip.empty() ? "" : " for " + info.ip) +
                       " not sent: " + run.command.script + " " + run.result.Describe(timeout);
    std::string err = run.result.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    if (!err.empty()) note += ": " + err;
    report->warnings.push_back(std::move(note));
  }
  report->runs.push_back(std::move(run));
}

ActionReport MailAction::Run(ActionOp op, const BanInfo& info) {
  ActionReport report = NewReport(op, jail_, name_, info.ip);
  switch (op) {
    case ActionOp::kStart:
      started_ = true;
      Send("actionstart", info, &report);
      break;
    case ActionOp::kStop:
      if (!started_) {
        report.skipped = true;
        break;
      }
      started_ = false;
      Send("actionstop", info, &report);
      break;
    case ActionOp::kBan:
    case ActionOp::kReban:
      if (info.restored && PyAsBool(Option("norestored"))) {
        report.skipped = true;
        break;
      }
      Send(op == ActionOp::kReban && !IsBlank(Option("actionreban")) ? "actionreban" : "actionban",
           info, &report);
      break;
    default:
      report.skipped = true;
      break;
  }
  return report;
}

void MailAction::Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) {
  const bool is_ban = op == ActionOp::kBan || op == ActionOp::kReban;
  if (!is_ban && op != ActionOp::kStart && op != ActionOp::kStop) {
    ActionReport report = NewReport(op, jail_, name_, info.ip);
    report.skipped = true;
    if (done) done(std::move(report));
    return;
  }
  // A flood of bans must not queue hours of whois lookups: beyond the
  // bound their mails are dropped (the bans themselves are not affected).
  size_t bound = kMaxPendingMails;
  if (Result<double> q = ParseDuration(Option("mailqueue")); q.ok() && *q >= 1)
    bound = static_cast<size_t>(*q);
  if (is_ban && pending_.load() >= bound) {
    uint64_t n = ++dropped_;
    ActionReport report = NewReport(op, jail_, name_, info.ip);
    report.skipped = true;
    report.warnings.push_back("mail action " + jail_ + "/" + name_ + ": " + std::to_string(bound) +
                           " mails waiting; mail for " + info.ip + " dropped (" +
                           std::to_string(n) + " dropped so far)");
    if (done) done(std::move(report));
    return;
  }
  ++pending_;
  QueuedOperation q;
  q.op = op;
  q.jail = jail_;
  q.action = name_;
  q.ip = info.ip;
  q.run = [this, op, info = std::move(info)] { return Run(op, info); };
  q.finally = [this] { --pending_; };
  q.done = std::move(done);
  PostOperation(*pool(), strand_, std::move(q));
}

}  // namespace bantam
