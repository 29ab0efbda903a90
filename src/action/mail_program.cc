#include "bantam/mail_program.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace bantam {

namespace {

bool IsIpTag(const Word& w) {
  return w.size() == 1 && w[0].kind == Piece::kTag && w[0].text == "ip";
}

// whois <ip> [2>&1] [|| echo WORDS]: `ao` as a whois call.
Status ParseWhois(const AndOr& ao, WhoisCall* call) {
  if (ao.empty() || ao.size() > 2) return Status::Error("not a whois call");
  for (const auto& pipe : ao)
    if (pipe.size() != 1 || pipe[0].group) return Status::Error("not a whois call");
  Simple w = SplitSimple(ao[0][0]);
  if (!w.assigns.empty() || w.words.size() != 2 || !IsWord(w.words[0], "whois") ||
      !IsIpTag(w.words[1]))
    return Status::Error("a whois call other than `whois <ip>`");
  for (const std::string& r : w.redirs) {
    if (r == "2>&1") {
      call->merge_stderr = true;
    } else if (r != "2>/dev/null") {
      return Status::Error("whois redirection " + r);
    }
  }
  if (ao.size() == 2) {
    Simple e = SplitSimple(ao[1][0]);
    if (!e.assigns.empty() || !e.redirs.empty() || e.words.empty() || !IsWord(e.words[0], "echo"))
      return Status::Error("whois fallback other than echo");
    call->has_fallback = true;
    for (size_t i = 1; i < e.words.size(); ++i) {
      for (const Piece& p : e.words[i])
        if (p.kind != Piece::kText && p.kind != Piece::kTag)
          return Status::Error("whois fallback with substitutions");
      call->fallback.push_back(e.words[i]);
    }
  }
  return Status::Ok();
}

Status ParseSubstitution(const std::string& inner, Word* w);

// Command substitutions in a mail command: `date` and whois only.
const SubstitutionParser kSubstitutions = ParseSubstitution;

Status ParseSubstitution(const std::string& inner, Word* w) {
  std::vector<Token> toks;
  if (Status st = LexShell(inner, kSubstitutions, &toks); !st.ok())
    return Status::Error("in `" + inner + "`: " + st.message());
  std::vector<AndOr> list;
  if (Status st = ParseShellList(std::move(toks), &list); !st.ok())
    return Status::Error("in `" + inner + "`: " + st.message());
  Piece p;
  const AndOr& ao = list[0];
  if (ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group) {
    Simple s = SplitSimple(ao[0][0]);
    if (!s.words.empty() && IsWord(s.words[0], "date")) {
      for (const auto& [name, value] : s.assigns) {
        std::string v;
        if (!Literal(value, &v) || (v != "C" && v != "POSIX"))
          return Status::Error("date with " + name + " other than C");
      }
      if (!s.redirs.empty() || s.words.size() > 2) return Status::Error("date with arguments");
      p.kind = Piece::kDate;
      p.text = "%a %b %e %H:%M:%S %Z %Y";
      if (s.words.size() == 2) {
        std::string fmt;
        if (!Literal(s.words[1], &fmt) || fmt.empty() || fmt[0] != '+')
          return Status::Error("date argument other than +FORMAT");
        p.text = fmt.substr(1);
      }
      w->push_back(std::move(p));
      return Status::Ok();
    }
  }
  auto call = std::make_shared<WhoisCall>();
  if (Status st = ParseWhois(ao, call.get()); !st.ok())
    return Status::Error("command substitution `" + inner + "`");
  p.kind = Piece::kWhois;
  p.call = std::move(call);
  w->push_back(std::move(p));
  return Status::Ok();
}

// printf's format: only %s, %b and %% (escapes are handled when printing).
Status CheckFormat(const std::string& fmt) {
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') continue;
    if (i + 1 >= fmt.size()) return Status::Error("printf format ends in %");
    char c = fmt[++i];
    if (c != 's' && c != 'b' && c != '%') return Status::Error(std::string("printf %") + c);
  }
  return Status::Ok();
}

// grep's arguments: -w -F [-h] [-m N] (-e PATTERN | PATTERN) FILES...
Status ParseGrepArgs(const std::vector<Word>& words, Stmt* st) {
  bool have_pattern = false, fixed = false, word = false;
  for (size_t i = 1; i < words.size(); ++i) {
    std::string lit;
    bool is_lit = Literal(words[i], &lit);
    if (is_lit && lit.size() > 1 && lit[0] == '-' && !(have_pattern && st->words.size())) {
      for (size_t k = 1; k < lit.size(); ++k) {
        char f = lit[k];
        if (f == 'w') {
          word = true;
        } else if (f == 'F') {
          fixed = true;
        } else if (f == 'h') {
          st->no_names = true;
        } else if (f == 'm' || f == 'e') {
          std::string arg = lit.substr(k + 1);
          Word argw;
          if (arg.empty()) {
            if (++i >= words.size()) return Status::Error("grep -" + std::string(1, f));
            argw = words[i];
          } else {
            argw = {Piece{Piece::kText, arg, false, nullptr}};
          }
          if (f == 'm') {
            std::string n;
            if (!Literal(argw, &n) || n.empty() ||
                !std::all_of(n.begin(), n.end(), [](char d) { return std::isdigit(d); }))
              return Status::Error("grep -m " + n);
            st->per_file = std::stol(n);
          } else {
            st->value = argw;
            have_pattern = true;
          }
          break;
        } else {
          return Status::Error("grep -" + std::string(1, f));
        }
      }
      continue;
    }
    if (!have_pattern) {
      st->value = words[i];
      have_pattern = true;
    } else {
      st->words.push_back(words[i]);
    }
  }
  if (!fixed || !word || !have_pattern || st->words.empty())
    return Status::Error("grep other than `grep -wF <ip> FILES`");
  for (const Word& f : st->words)
    for (const Piece& p : f)
      if (p.kind != Piece::kText && p.kind != Piece::kVar)
        return Status::Error("grep file names with substitutions");
  return Status::Ok();
}

// tail's count: -n N, -nN or -N.
Status ParseTailCount(const std::vector<Word>& words, long* tail) {
  std::string n;
  if (words.size() == 3 && IsWord(words[1], "-n") && Literal(words[2], &n)) {
  } else if (words.size() == 2 && Literal(words[1], &n) && n.rfind("-n", 0) == 0) {
    n = n.substr(2);
  } else if (words.size() == 2 && Literal(words[1], &n) && n.rfind("-", 0) == 0) {
    n = n.substr(1);
  } else {
    return Status::Error("tail other than `tail -n N`");
  }
  if (n.empty() || !std::all_of(n.begin(), n.end(), [](char d) { return std::isdigit(d); }))
    return Status::Error("tail -n " + n);
  *tail = std::stol(n);
  return Status::Ok();
}

// printf FORMAT ARGS...: only %s, %b and %%; no unquoted $var arguments.
Status ParsePrintf(const Simple& s, Stmt* st) {
  if (!s.redirs.empty()) return Status::Error("printf redirection");
  if (s.words.size() < 2) return Status::Error("printf without format");
  std::string fmt;
  if (!Literal(s.words[1], &fmt)) return Status::Error("printf format with substitutions");
  if (Status c = CheckFormat(fmt); !c.ok()) return c;
  st->kind = Stmt::kPrintf;
  st->words.assign(s.words.begin() + 1, s.words.end());
  for (size_t i = 1; i < st->words.size(); ++i)
    for (const Piece& p : st->words[i])
      if (p.kind == Piece::kVar && !p.quoted)
        return Status::Error("printf argument with unquoted $" + p.text);
  return Status::Ok();
}

Status ParseStmt(const AndOr& ao, std::vector<Stmt>* out) {
  Stmt st;
  // grep ... | tail -n N  (or | <greplimit> already substituted)
  if (ao.size() == 1 && ao[0].size() == 2 && !ao[0][0].group && !ao[0][1].group) {
    Simple g = SplitSimple(ao[0][0]);
    Simple t = SplitSimple(ao[0][1]);
    if (!g.assigns.empty() || g.words.empty() || !IsWord(g.words[0], "grep") ||
        !t.assigns.empty() || !t.redirs.empty() || t.words.empty() || !IsWord(t.words[0], "tail"))
      return Status::Error("a pipe other than `grep ... | tail -n N`");
    for (const std::string& r : g.redirs)
      if (r != "2>/dev/null") return Status::Error("grep redirection " + r);
    st.kind = Stmt::kGrep;
    if (Status e = ParseGrepArgs(g.words, &st); !e.ok()) return e;
    if (Status e = ParseTailCount(t.words, &st.tail); !e.ok()) return e;
    out->push_back(std::move(st));
    return Status::Ok();
  }
  if (ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group) {
    Simple s = SplitSimple(ao[0][0]);
    if (s.words.empty()) {
      if (!s.redirs.empty()) return Status::Error("redirection");
      for (auto& [name, value] : s.assigns) {
        Stmt a;
        a.kind = Stmt::kAssign;
        a.var = name;
        a.value = value;
        out->push_back(std::move(a));
      }
      return Status::Ok();
    }
    if (!s.assigns.empty()) return Status::Error("command with assignments");
    if (IsWord(s.words[0], "printf")) {
      if (Status e = ParsePrintf(s, &st); !e.ok()) return e;
      out->push_back(std::move(st));
      return Status::Ok();
    }
  }
  st.kind = Stmt::kWhois;
  if (ParseWhois(ao, &st.whois).ok()) {
    out->push_back(std::move(st));
    return Status::Ok();
  }
  return Status::Error("a command other than printf, whois, grep | tail or an assignment");
}

}  // namespace

Result<std::shared_ptr<const MailProgram>> ParseMailCommand(const std::string& cmd) {
  std::vector<Token> toks;
  if (Status st = LexShell(cmd, kSubstitutions, &toks); !st.ok()) return st;
  std::vector<AndOr> list;
  if (Status st = ParseShellList(std::move(toks), &list); !st.ok()) return st;
  if (list.empty()) return Status::Error("empty command");
  auto prog = std::make_shared<MailProgram>();
  for (size_t i = 0; i + 1 < list.size(); ++i) {
    const AndOr& ao = list[i];
    bool assign_only = ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group &&
                       SplitSimple(ao[0][0]).words.empty() && SplitSimple(ao[0][0]).redirs.empty();
    if (!assign_only) return Status::Error("a command before the mail pipe");
    if (Status st = ParseStmt(ao, &prog->stmts); !st.ok()) return st;
  }
  const AndOr& last = list.back();
  if (last.size() != 1 || last[0].size() != 2)
    return Status::Error("not of the form `message | mailcmd`");
  const Cmd& producer = last[0][0];
  const Cmd& sink = last[0][1];
  if (producer.group) {
    for (const AndOr& ao : producer.body)
      if (Status st = ParseStmt(ao, &prog->stmts); !st.ok()) return st;
  } else {
    AndOr one = {{producer}};
    if (Status st = ParseStmt(one, &prog->stmts); !st.ok()) return st;
  }
  if (sink.group) return Status::Error("mail command is a group");
  // The sink runs from argv when it is plain words, otherwise from its
  // (trusted) text under sh -c.
  Simple s = SplitSimple(sink);
  bool plain = s.assigns.empty() && s.redirs.empty() && !s.words.empty();
  for (const Word& w : s.words)
    for (const Piece& p : w)
      if (p.kind != Piece::kText && p.kind != Piece::kTag) plain = false;
  if (plain) {
    prog->sink_argv = s.words;
  } else {
    prog->sink_shell = cmd.substr(sink.words.front().begin);
  }
  // Trailing separators after the sink would have made more AndOrs; the
  // sink text runs to the end.
  return std::shared_ptr<const MailProgram>(std::move(prog));
}

}  // namespace bantam
