#include "bantam/mail_message.h"

#include <glob.h>
#include <locale.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <fstream>
#include <utility>

#include "bantam/mail_action.h"
#include "bantam/printf_escapes.h"

namespace bantam {

namespace {

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// grep -F -w: `pat` as a whole word somewhere in `line`.
bool ContainsWord(const std::string& line, const std::string& pat) {
  if (pat.empty()) return false;
  for (size_t p = line.find(pat); p != std::string::npos; p = line.find(pat, p + 1)) {
    bool before = p == 0 || !IsWordChar(line[p - 1]);
    size_t e = p + pat.size();
    bool after = e >= line.size() || !IsWordChar(line[e]);
    if (before && after) return true;
  }
  return false;
}

std::vector<std::string> Glob(const std::string& pattern) {
  if (pattern.find_first_of("*?[") == std::string::npos) return {pattern};
  glob_t g = {};
  std::vector<std::string> out;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  } else {
    out.push_back(pattern);
  }
  globfree(&g);
  return out;
}

}  // namespace

std::string MailComposer::Message(const MailProgram& prog) {
  std::string out;
  for (const Stmt& st : prog.stmts) {
    switch (st.kind) {
      case Stmt::kAssign:
        vars_[st.var] = Expand(st.value);
        break;
      case Stmt::kPrintf:
        Printf(st.words, &out);
        break;
      case Stmt::kWhois:
        out += Whois(st.whois);
        break;
      case Stmt::kGrep:
        out += Grep(st);
        break;
    }
  }
  return out;
}

std::vector<std::string> MailComposer::Argv(const std::vector<Word>& words) {
  std::vector<std::string> out;
  for (const Word& w : words) {
    std::string a = Expand(w);
    for (char& c : a)
      if (c == '\n' || c == '\r') c = ' ';
    std::erase(a, '\0');
    out.push_back(std::move(a));
  }
  return out;
}

std::optional<std::string> MailComposer::Tag(const std::string& tag) {
  if (tag.rfind("F-", 0) == 0) {
    auto it = info_.captures.find(TicketDataKey(tag.substr(2)));
    return it == info_.captures.end() ? std::string() : it->second;
  }
  return tags_.Value(tag);
}

// `w` as text; kText pieces through printf %b escapes when `b_arg`.
// False when \c ended the output.
bool MailComposer::ExpandInto(const Word& w, bool b_arg, std::string* out) {
  for (const Piece& p : w) {
    switch (p.kind) {
      case Piece::kText:
        if (!b_arg) {
          *out += p.text;
        } else if (!PrintfUnescape(p.text, true, out)) {
          return false;
        }
        break;
      case Piece::kTag: {
        std::optional<std::string> v = Tag(p.text);
        *out += v ? *v : "<" + p.text + ">";
        break;
      }
      case Piece::kVar: {
        auto it = vars_.find(p.text);
        if (it != vars_.end()) *out += it->second;
        break;
      }
      case Piece::kDate:
        *out += Date(p.text);
        break;
      case Piece::kWhois: {
        std::string v = Whois(*p.call);
        while (!v.empty() && v.back() == '\n') v.pop_back();  // as $(...) does
        *out += v;
        break;
      }
    }
  }
  return true;
}

std::string MailComposer::Expand(const Word& w) {
  std::string s;
  ExpandInto(w, false, &s);
  return s;
}

void MailComposer::Printf(const std::vector<Word>& words, std::string* out) {
  std::string fmt;
  (void)Literal(words[0], &fmt);
  size_t arg = 1;
  for (;;) {
    const size_t before = arg;
    for (size_t i = 0; i < fmt.size(); ++i) {
      if (fmt[i] == '\\') {
        size_t j = i + 1;
        if (j < fmt.size() && fmt[j] >= '0' && fmt[j] <= '7') {
          while (j < fmt.size() && j < i + 4 && fmt[j] >= '0' && fmt[j] <= '7') ++j;
        } else {
          j = std::min(j + 1, fmt.size());
        }
        PrintfUnescape(fmt.substr(i, j - i), false, out);
        i = j - 1;
        continue;
      }
      if (fmt[i] != '%' || i + 1 >= fmt.size()) {
        *out += fmt[i];
        continue;
      }
      char c = fmt[++i];
      if (c == '%') {
        *out += '%';
        continue;
      }
      if (arg >= words.size()) continue;  // missing argument: empty
      if (!ExpandInto(words[arg++], c == 'b', out)) return;
    }
    // The format is reused while arguments remain (and it takes some).
    if (arg >= words.size() || arg == before) break;
  }
}

std::string MailComposer::Date(const std::string& fmt) {
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  static locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
  char buf[256];
  size_t n = c_locale ? strftime_l(buf, sizeof(buf), fmt.c_str(), &tm, c_locale)
                      : strftime(buf, sizeof(buf), fmt.c_str(), &tm);
  return std::string(buf, n);
}

std::string MailComposer::Whois(const WhoisCall& call) {
  std::string out;
  const std::string& ip = info_.ip;
  std::vector<std::string> argv = {"whois"};
  if (!ip.empty() && ip[0] == '-') argv.push_back("--");
  argv.push_back(ip);
  SpawnRequest req;
  req.argv = std::move(argv);
  req.timeout_seconds = whois_timeout_;
  req.max_output = MailAction::kMaxWhoisOutput;
  req.merge_stderr = call.merge_stderr;
  SpawnResult r = spawner_->Run(req);
  out = r.out;
  const std::string& who = who_;
  if (r.end == SpawnResult::End::kFailedToStart) {
    report_.warnings.push_back(who + "whois for " + ip + " not run (" + r.error +
                               "); mail sent without it");
  } else if (r.end == SpawnResult::End::kTimedOut) {
    report_.warnings.push_back(who + "whois for " + ip + " " + r.Describe(whois_timeout_) +
                               "; mail sent with what it answered");
  } else if (r.end == SpawnResult::End::kExited && r.exit_code == 127) {
    report_.warnings.push_back(who + "whois for " + ip + " " + r.Describe(whois_timeout_));
  }
  if (!r.ok() && call.has_fallback) {
    std::string echo;
    for (size_t i = 0; i < call.fallback.size(); ++i) {
      if (i) echo += ' ';
      echo += Expand(call.fallback[i]);
    }
    out += echo + "\n";
  }
  return out;
}

std::string MailComposer::Grep(const Stmt& st) {
  const std::string pat = Expand(st.value);
  std::vector<std::string> files;
  for (const Word& w : st.words) {
    // Unquoted $var: word-split; then globbed, as the shell does.
    std::vector<std::string> fields(1);
    for (const Piece& p : w) {
      if (p.kind == Piece::kVar && !p.quoted) {
        auto it = vars_.find(p.text);
        std::string v = it == vars_.end() ? "" : it->second;
        for (char c : v) {
          if (c == ' ' || c == '\t' || c == '\n') {
            if (!fields.back().empty()) fields.emplace_back();
          } else {
            fields.back() += c;
          }
        }
      } else {
        fields.back() += p.kind == Piece::kVar ? vars_[p.text] : p.text;
      }
    }
    for (const std::string& f : fields)
      if (!f.empty())
        for (std::string& g : Glob(f)) files.push_back(std::move(g));
  }
  std::deque<std::string> lines;
  const bool names = files.size() > 1 && !st.no_names;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) continue;
    long found = 0;
    std::string line;
    while ((st.per_file < 0 || found < st.per_file) && std::getline(in, line)) {
      if (!ContainsWord(line, pat)) continue;
      ++found;
      lines.push_back(names ? f + ":" + line : line);
      if (st.tail >= 0 && lines.size() > static_cast<size_t>(st.tail)) lines.pop_front();
    }
  }
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

}  // namespace bantam
