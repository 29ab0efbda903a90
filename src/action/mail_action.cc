#include "bantam/mail_action.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <locale.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

#include "bantam/command_action.h"
#include "bantam/duration.h"
#include "bantam/py.h"
#include "bantam/tag_substitution.h"

extern char** environ;

namespace bantam {

// ------------------------------------------------------------- the program

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
  std::shared_ptr<struct WhoisCall> call;
};
using Word = std::vector<Piece>;

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

// Tags filled per ban (fail2ban's ActionInfo and the hostnames): they stay
// tags in the parsed program and are never seen by a parser or a shell.
bool IsDynamicTag(const std::string& t) {
  static const std::set<std::string> kTags = {"ip",
                                              "ip-rev",
                                              "ip-host",
                                              "fid",
                                              "failures",
                                              "time",
                                              "bantime",
                                              "bancount",
                                              "matches",
                                              "ipmatches",
                                              "ipjailmatches",
                                              "ipfailures",
                                              "ipjailfailures",
                                              "restored",
                                              "family",
                                              "fq-hostname",
                                              "sh-hostname"};
  if (kTags.count(t)) return true;
  if (t.rfind("jail.", 0) == 0) return true;
  if (t.rfind("F-", 0) == 0 && t.size() > 2) {
    for (size_t i = 2; i < t.size(); ++i) {
      char c = t[i];
      if (!std::isupper(static_cast<unsigned char>(c)) &&
          !std::isdigit(static_cast<unsigned char>(c)) && c != '_' && c != '-')
        return false;
    }
    return true;
  }
  return false;
}

// <name> at s[i] (fail2ban's <([^ <>]+)>): the name, or "" if none.
std::string TagAt(const std::string& s, size_t i) {
  if (s[i] != '<') return "";
  size_t j = i + 1;
  while (j < s.size() && s[j] != ' ' && s[j] != '<' && s[j] != '>' && s[j] != '\n') ++j;
  if (j > i + 1 && j < s.size() && s[j] == '>') return s.substr(i + 1, j - i - 1);
  return "";
}

bool Literal(const Word& w, std::string* out) {
  out->clear();
  for (const Piece& p : w) {
    if (p.kind != Piece::kText) return false;
    *out += p.text;
  }
  return true;
}

// ----------------------------------------------------------------- lexing

struct Token {
  enum Kind { kWord, kOp };
  Kind kind = kWord;
  Word word;
  std::string op;  // "|", "||", ";", "\n", "(", ")", "{", "}", "2>&1", "2>/dev/null", ...
  size_t begin = 0;
};

class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}

  Status Run(std::vector<Token>* out) {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
        continue;
      }
      if (c == '\\' && i_ + 1 < s_.size() && s_[i_ + 1] == '\n') {
        i_ += 2;
        continue;
      }
      Token t;
      t.begin = i_;
      if (c == '\n' || c == ';' || c == '(' || c == ')') {
        t.kind = Token::kOp;
        t.op = std::string(1, c);
        ++i_;
      } else if (c == '|' || c == '&') {
        t.kind = Token::kOp;
        t.op = std::string(1, c);
        if (i_ + 1 < s_.size() && s_[i_ + 1] == c) t.op += c;
        i_ += t.op.size();
        if (t.op == "&") return Status::Error("background job (&)");
      } else if (c == '>' || (c == '<' && !IsDynamicTag(TagAt(s_, i_)))) {
        return Status::Error(std::string("redirection '") + c + "'");
      } else if (c == '#') {
        return Status::Error("comment");
      } else {
        if (Status st = LexWord(&t); !st.ok()) return st;
      }
      out->push_back(std::move(t));
    }
    return Status::Ok();
  }

 private:
  void Text(Word* w, char c) {
    if (w->empty() || w->back().kind != Piece::kText) w->push_back(Piece{});
    w->back().text += c;
  }
  // A dynamic tag at i_: appended as a piece.
  bool Tag(Word* w) {
    std::string tag = TagAt(s_, i_);
    if (tag.empty() || !IsDynamicTag(tag)) return false;
    Piece p;
    p.kind = Piece::kTag;
    p.text = tag;
    w->push_back(std::move(p));
    i_ += tag.size() + 2;
    return true;
  }

  Status LexWord(Token* t) {
    t->kind = Token::kWord;
    Word& w = t->word;
    bool any_quote = false;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '|' || c == '&' ||
          c == '(' || c == ')')
        break;
      if (c == '>') {
        // 2>&1, 2>/dev/null: a redirection of the word's fd digits.
        std::string fd;
        if (!Literal(w, &fd) || any_quote ||
            !std::all_of(fd.begin(), fd.end(), [](char d) { return std::isdigit(d); }))
          return Status::Error("redirection '>'");
        size_t j = i_ + 1;
        while (j < s_.size() && s_[j] == ' ') ++j;
        size_t k = j;
        while (k < s_.size() && !std::isspace(static_cast<unsigned char>(s_[k])) && s_[k] != ';' &&
               s_[k] != '|' && s_[k] != ')')
          ++k;
        t->kind = Token::kOp;
        t->op = fd + ">" + s_.substr(j, k - j);
        i_ = k;
        return Status::Ok();
      }
      if (c == '<') {
        if (Tag(&w)) continue;
        return Status::Error("redirection '<'");
      }
      if (c == '\\') {
        if (i_ + 1 < s_.size() && s_[i_ + 1] != '\n') Text(&w, s_[i_ + 1]);
        i_ += 2;
        continue;
      }
      if (c == '\'') {
        any_quote = true;
        ++i_;
        for (;;) {
          if (i_ >= s_.size()) return Status::Error("unterminated '");
          if (s_[i_] == '\'') break;
          if (s_[i_] == '<' && Tag(&w)) continue;
          Text(&w, s_[i_++]);
        }
        ++i_;
        continue;
      }
      if (c == '"') {
        any_quote = true;
        ++i_;
        if (Status st = LexDouble(&w); !st.ok()) return st;
        continue;
      }
      if (c == '$' || c == '`') {
        if (Status st = LexDollar(&w, false); !st.ok()) return st;
        continue;
      }
      Text(&w, c);
      ++i_;
    }
    std::string lit;
    if (!any_quote && Literal(w, &lit) && (lit == "{" || lit == "}")) {
      t->kind = Token::kOp;
      t->op = lit;
    }
    return Status::Ok();
  }

  Status LexDouble(Word* w) {
    for (;;) {
      if (i_ >= s_.size()) return Status::Error("unterminated \"");
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return Status::Ok();
      }
      if (c == '\\' && i_ + 1 < s_.size()) {
        char n = s_[i_ + 1];
        if (n == '$' || n == '`' || n == '"' || n == '\\') {
          Text(w, n);
          i_ += 2;
        } else if (n == '\n') {
          i_ += 2;
        } else {
          Text(w, c);  // stays for printf %b: "\n"
          ++i_;
        }
        continue;
      }
      if (c == '$' || c == '`') {
        if (Status st = LexDollar(w, true); !st.ok()) return st;
        continue;
      }
      if (c == '<' && Tag(w)) continue;
      Text(w, c);
      ++i_;
    }
  }

  // $name, ${name}, $(...), `...` at i_.
  Status LexDollar(Word* w, bool quoted) {
    std::string inner;
    if (s_[i_] == '`') {
      size_t j = i_ + 1;
      for (; j < s_.size() && s_[j] != '`'; ++j) {
        if (s_[j] == '\\' && j + 1 < s_.size() &&
            (s_[j + 1] == '`' || s_[j + 1] == '\\' || s_[j + 1] == '$')) {
          inner += s_[++j];
          continue;
        }
        inner += s_[j];
      }
      if (j >= s_.size()) return Status::Error("unterminated `");
      i_ = j + 1;
      return Substitution(w, inner);
    }
    size_t j = i_ + 1;
    if (j < s_.size() && s_[j] == '(') {
      int depth = 1;
      char q = 0;
      size_t k = j + 1;
      for (; k < s_.size(); ++k) {
        char c = s_[k];
        if (q) {
          if (c == q) q = 0;
          continue;
        }
        if (c == '\'' || c == '"') q = c;
        if (c == '(') ++depth;
        if (c == ')' && --depth == 0) break;
      }
      if (k >= s_.size()) return Status::Error("unterminated $(");
      inner = s_.substr(j + 1, k - j - 1);
      i_ = k + 1;
      return Substitution(w, inner);
    }
    bool braced = j < s_.size() && s_[j] == '{';
    if (braced) ++j;
    size_t k = j;
    while (k < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[k])) || s_[k] == '_') &&
           !(k == j && std::isdigit(static_cast<unsigned char>(s_[k]))))
      ++k;
    if (k == j) {
      if (braced) return Status::Error("unsupported ${...}");
      if (j < s_.size() && !std::isspace(static_cast<unsigned char>(s_[j])) && s_[j] != '"')
        return Status::Error(std::string("unsupported $") + s_[j]);
      Text(w, '$');
      ++i_;
      return Status::Ok();
    }
    if (braced && (k >= s_.size() || s_[k] != '}')) return Status::Error("unsupported ${...}");
    Piece p;
    p.kind = Piece::kVar;
    p.text = s_.substr(j, k - j);
    p.quoted = quoted;
    w->push_back(std::move(p));
    i_ = braced ? k + 1 : k;
    return Status::Ok();
  }

  Status Substitution(Word* w, const std::string& inner);

  const std::string& s_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------- parsing

// A simple command: words and redirections; or a ( ) / { } group.
struct Cmd;
using AndOr = std::vector<std::vector<Cmd>>;  // pipelines joined by ||
struct Cmd {
  bool group = false;
  std::vector<Token> words;  // simple: words and redirection ops
  std::vector<AndOr> body;   // group
};

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Status List(std::vector<AndOr>* out, const std::string& close) {
    for (;;) {
      while (pos_ < t_.size() && IsOp(t_[pos_], "\n", ";")) ++pos_;
      if (pos_ >= t_.size()) {
        if (!close.empty()) return Status::Error("missing '" + close + "'");
        return Status::Ok();
      }
      if (!close.empty() && IsOp(t_[pos_], close)) {
        ++pos_;
        return Status::Ok();
      }
      AndOr ao;
      if (Status st = ParseAndOr(&ao); !st.ok()) return st;
      out->push_back(std::move(ao));
    }
  }
  size_t pos() const { return pos_; }

 private:
  static bool IsOp(const Token& t, const std::string& a, const std::string& b = "") {
    return t.kind == Token::kOp && (t.op == a || (!b.empty() && t.op == b));
  }

  Status ParseAndOr(AndOr* out) {
    for (;;) {
      std::vector<Cmd> pipe;
      for (;;) {
        Cmd c;
        if (Status st = ParseCmd(&c); !st.ok()) return st;
        pipe.push_back(std::move(c));
        if (pos_ < t_.size() && IsOp(t_[pos_], "|")) {
          ++pos_;
          while (pos_ < t_.size() && IsOp(t_[pos_], "\n")) ++pos_;
          continue;
        }
        break;
      }
      out->push_back(std::move(pipe));
      if (pos_ < t_.size() && IsOp(t_[pos_], "||")) {
        ++pos_;
        while (pos_ < t_.size() && IsOp(t_[pos_], "\n")) ++pos_;
        continue;
      }
      if (pos_ < t_.size() && IsOp(t_[pos_], "&&")) return Status::Error("'&&'");
      return Status::Ok();
    }
  }

  Status ParseCmd(Cmd* c) {
    if (pos_ < t_.size() && IsOp(t_[pos_], "(", "{")) {
      std::string close = t_[pos_].op == "(" ? ")" : "}";
      ++pos_;
      c->group = true;
      if (Status st = List(&c->body, close); !st.ok()) return st;
      if (pos_ < t_.size() && t_[pos_].kind == Token::kOp &&
          t_[pos_].op.find('>') != std::string::npos)
        return Status::Error("redirection of a group");
      return Status::Ok();
    }
    while (pos_ < t_.size()) {
      const Token& t = t_[pos_];
      if (t.kind == Token::kOp && t.op.find('>') == std::string::npos) break;
      c->words.push_back(t);
      ++pos_;
    }
    if (c->words.empty()) {
      return Status::Error(pos_ < t_.size() ? "unexpected '" + t_[pos_].op + "'"
                                            : "unexpected end");
    }
    return Status::Ok();
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
};

// Splits a simple command into leading NAME=value assignments, words and
// redirections.
struct Simple {
  std::vector<std::pair<std::string, Word>> assigns;
  std::vector<Word> words;
  std::vector<std::string> redirs;
};

Simple Split(const Cmd& c) {
  Simple s;
  for (const Token& t : c.words) {
    if (t.kind == Token::kOp) {
      s.redirs.push_back(t.op);
      continue;
    }
    if (s.words.empty() && !t.word.empty() && t.word[0].kind == Piece::kText) {
      const std::string& head = t.word[0].text;
      size_t eq = head.find('=');
      bool name =
          eq != std::string::npos && eq > 0 && !std::isdigit(static_cast<unsigned char>(head[0])) &&
          std::all_of(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(eq), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
          });
      if (name) {
        Word value = t.word;
        value[0].text = head.substr(eq + 1);
        if (value[0].text.empty()) value.erase(value.begin());
        s.assigns.emplace_back(head.substr(0, eq), std::move(value));
        continue;
      }
    }
    s.words.push_back(t.word);
  }
  return s;
}

bool IsWord(const Word& w, const char* text) {
  std::string lit;
  return Literal(w, &lit) && lit == text;
}

bool IsIpTag(const Word& w) {
  return w.size() == 1 && w[0].kind == Piece::kTag && w[0].text == "ip";
}

// whois <ip> [2>&1] [|| echo WORDS]: `ao` as a whois call.
Status ParseWhois(const AndOr& ao, WhoisCall* call) {
  if (ao.empty() || ao.size() > 2) return Status::Error("not a whois call");
  for (const auto& pipe : ao)
    if (pipe.size() != 1 || pipe[0].group) return Status::Error("not a whois call");
  Simple w = Split(ao[0][0]);
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
    Simple e = Split(ao[1][0]);
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

Status Lexer::Substitution(Word* w, const std::string& inner) {
  std::vector<Token> toks;
  Lexer lex(inner);
  if (Status st = lex.Run(&toks); !st.ok())
    return Status::Error("in `" + inner + "`: " + st.message());
  Parser parser(std::move(toks));
  std::vector<AndOr> list;
  if (Status st = parser.List(&list, ""); !st.ok())
    return Status::Error("in `" + inner + "`: " + st.message());
  if (list.size() != 1) return Status::Error("command substitution `" + inner + "`");
  Piece p;
  const AndOr& ao = list[0];
  if (ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group) {
    Simple s = Split(ao[0][0]);
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

Status ParseStmt(const AndOr& ao, std::vector<Stmt>* out) {
  Stmt st;
  // grep ... | tail -n N  (or | <greplimit> already substituted)
  if (ao.size() == 1 && ao[0].size() == 2 && !ao[0][0].group && !ao[0][1].group) {
    Simple g = Split(ao[0][0]);
    Simple t = Split(ao[0][1]);
    if (!g.assigns.empty() || g.words.empty() || !IsWord(g.words[0], "grep") ||
        !t.assigns.empty() || !t.redirs.empty() || t.words.empty() || !IsWord(t.words[0], "tail"))
      return Status::Error("a pipe other than `grep ... | tail -n N`");
    for (const std::string& r : g.redirs)
      if (r != "2>/dev/null") return Status::Error("grep redirection " + r);
    st.kind = Stmt::kGrep;
    bool have_pattern = false, fixed = false, word = false;
    for (size_t i = 1; i < g.words.size(); ++i) {
      std::string lit;
      bool is_lit = Literal(g.words[i], &lit);
      if (is_lit && lit.size() > 1 && lit[0] == '-' && !(have_pattern && st.words.size())) {
        for (size_t k = 1; k < lit.size(); ++k) {
          char f = lit[k];
          if (f == 'w') {
            word = true;
          } else if (f == 'F') {
            fixed = true;
          } else if (f == 'h') {
            st.no_names = true;
          } else if (f == 'm' || f == 'e') {
            std::string arg = lit.substr(k + 1);
            Word argw;
            if (arg.empty()) {
              if (++i >= g.words.size()) return Status::Error("grep -" + std::string(1, f));
              argw = g.words[i];
            } else {
              argw = {Piece{Piece::kText, arg, false, nullptr}};
            }
            if (f == 'm') {
              std::string n;
              if (!Literal(argw, &n) || n.empty() ||
                  !std::all_of(n.begin(), n.end(), [](char d) { return std::isdigit(d); }))
                return Status::Error("grep -m " + n);
              st.per_file = std::stol(n);
            } else {
              st.value = argw;
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
        st.value = g.words[i];
        have_pattern = true;
      } else {
        st.words.push_back(g.words[i]);
      }
    }
    if (!fixed || !word || !have_pattern || st.words.empty())
      return Status::Error("grep other than `grep -wF <ip> FILES`");
    for (const Word& f : st.words)
      for (const Piece& p : f)
        if (p.kind != Piece::kText && p.kind != Piece::kVar)
          return Status::Error("grep file names with substitutions");
    std::string n;
    if (t.words.size() == 3 && IsWord(t.words[1], "-n") && Literal(t.words[2], &n)) {
    } else if (t.words.size() == 2 && Literal(t.words[1], &n) && n.rfind("-n", 0) == 0) {
      n = n.substr(2);
    } else if (t.words.size() == 2 && Literal(t.words[1], &n) && n.rfind("-", 0) == 0) {
      n = n.substr(1);
    } else {
      return Status::Error("tail other than `tail -n N`");
    }
    if (n.empty() || !std::all_of(n.begin(), n.end(), [](char d) { return std::isdigit(d); }))
      return Status::Error("tail -n " + n);
    st.tail = std::stol(n);
    out->push_back(std::move(st));
    return Status::Ok();
  }
  if (ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group) {
    Simple s = Split(ao[0][0]);
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
      if (!s.redirs.empty()) return Status::Error("printf redirection");
      if (s.words.size() < 2) return Status::Error("printf without format");
      std::string fmt;
      if (!Literal(s.words[1], &fmt)) return Status::Error("printf format with substitutions");
      if (Status c = CheckFormat(fmt); !c.ok()) return c;
      st.kind = Stmt::kPrintf;
      st.words.assign(s.words.begin() + 1, s.words.end());
      for (size_t i = 1; i < st.words.size(); ++i)
        for (const Piece& p : st.words[i])
          if (p.kind == Piece::kVar && !p.quoted)
            return Status::Error("printf argument with unquoted $" + p.text);
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

// Parses a mail command (its options already substituted).
Result<std::shared_ptr<const MailProgram>> ParseMailCommand(const std::string& cmd) {
  std::vector<Token> toks;
  if (Status st = Lexer(cmd).Run(&toks); !st.ok()) return st;
  Parser parser(std::move(toks));
  std::vector<AndOr> list;
  if (Status st = parser.List(&list, ""); !st.ok()) return st;
  if (list.empty()) return Status::Error("empty command");
  auto prog = std::make_shared<MailProgram>();
  for (size_t i = 0; i + 1 < list.size(); ++i) {
    const AndOr& ao = list[i];
    bool assign_only = ao.size() == 1 && ao[0].size() == 1 && !ao[0][0].group &&
                       Split(ao[0][0]).words.empty() && Split(ao[0][0]).redirs.empty();
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
  Simple s = Split(sink);
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

// ---------------------------------------------------------------- running

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

// Reads what is available from `fd` (up to `limit` kept). False at EOF/error.
bool Drain(int fd, std::string* out, size_t limit) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      size_t keep = out->size() < limit ? std::min(limit - out->size(), static_cast<size_t>(n)) : 0;
      out->append(buf, keep);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Runs argv (PATH searched, no shell) in its own session with `input` on
// stdin, output captured; the process group is killed after `timeout`.
SpawnResult RunArgv(const std::vector<std::string>& argv, const std::string& input, double timeout,
                    size_t max_output, bool merge_stderr) {
  SpawnResult result;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&]() -> SpawnResult {
    result.elapsed_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::move(result);
  };
  int in_sock[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  // A socket for stdin: send(MSG_NOSIGNAL) cannot raise SIGPIPE in the daemon
  // when the mail command exits without reading.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sock) != 0 ||
      pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + strerror(errno);
    for (int* fd :
         {&in_sock[0], &in_sock[1], &out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]})
      CloseFd(fd);
    return finish();
  }
  shutdown(in_sock[1], SHUT_WR);  // the child's end only reads
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_sock[1], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, merge_stderr ? out_pipe[1] : err_pipe[1], 2);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  CloseFd(&in_sock[1]);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  int in_fd = in_sock[0], out_fd = out_pipe[0], err_fd = err_pipe[0];
  if (merge_stderr) CloseFd(&err_fd);
  if (rc != 0) {
    result.error = argv[0] + ": " + strerror(rc);
    CloseFd(&in_fd);
    CloseFd(&out_fd);
    CloseFd(&err_fd);
    return finish();
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
  size_t sent = 0;
  if (input.empty()) CloseFd(&in_fd);
    // Readable when the child ends; without it, poll ticks of 10 ms.
#ifdef SYS_pidfd_open
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  int pidfd = -1;
#endif

  const bool limited = timeout > 0 && timeout < 1e9;
  const auto deadline = start + std::chrono::milliseconds(
                                    limited ? static_cast<int64_t>(std::ceil(timeout * 1000)) : 0);
  int status = 0;
  bool ended = false, timed_out = false;
  while (!ended) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) {
      ended = true;
      break;
    }
    if (limited && std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      killpg(pid, SIGTERM);
      for (int i = 0; i < 20 && waitpid(pid, &status, WNOHANG) == 0; ++i) usleep(10000);
      killpg(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    pollfd fds[4];
    int n = 0, in_i = -1, out_i = -1, err_i = -1;
    if (pidfd >= 0) fds[n++] = {pidfd, POLLIN, 0};
    if (in_fd >= 0) {
      in_i = n;
      fds[n++] = {in_fd, POLLOUT, 0};
    }
    if (out_fd >= 0) {
      out_i = n;
      fds[n++] = {out_fd, POLLIN, 0};
    }
    if (err_fd >= 0) {
      err_i = n;
      fds[n++] = {err_fd, POLLIN, 0};
    }
    if (poll(fds, static_cast<nfds_t>(n), 10) <= 0) continue;
    if (in_i >= 0 && fds[in_i].revents) {
      ssize_t k = send(in_fd, input.data() + sent, input.size() - sent, MSG_NOSIGNAL);
      if (k > 0) sent += static_cast<size_t>(k);
      if ((k < 0 && errno != EAGAIN && errno != EINTR) || sent >= input.size()) CloseFd(&in_fd);
    }
    if (out_i >= 0 && fds[out_i].revents && !Drain(out_fd, &result.out, max_output))
      CloseFd(&out_fd);
    if (err_i >= 0 && fds[err_i].revents && !Drain(err_fd, &result.err, max_output))
      CloseFd(&err_fd);
  }
  if (out_fd >= 0) Drain(out_fd, &result.out, max_output);
  if (err_fd >= 0) Drain(err_fd, &result.err, max_output);
  CloseFd(&in_fd);
  CloseFd(&out_fd);
  CloseFd(&err_fd);
  CloseFd(&pidfd);
  if (timed_out) {
    result.end = SpawnResult::End::kTimedOut;
    result.signal = SIGTERM;
  } else if (WIFEXITED(status)) {
    result.end = SpawnResult::End::kExited;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.end = SpawnResult::End::kSignaled;
    result.signal = WTERMSIG(status);
  } else {
    result.end = SpawnResult::End::kExited;
    result.exit_code = 0;
  }
  return finish();
}




// printf's backslash escapes in `s` (format, or a %b argument when
// `b_arg`). Returns false when \c ended all output.
bool Unescape(const std::string& s, bool b_arg, std::string* out) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      *out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        *out += '\n';
        break;
      case 't':
        *out += '\t';
        break;
      case 'r':
        *out += '\r';
        break;
      case 'a':
        *out += '\a';
        break;
      case 'b':
        *out += '\b';
        break;
      case 'f':
        *out += '\f';
        break;
      case 'v':
        *out += '\v';
        break;
      case '\\':
        *out += '\\';
        break;
      case 'c':
        if (b_arg) return false;
        *out += "\\c";
        break;
      default:
        if (c >= '0' && c <= '7') {
          // %b: \0NNN; format: \NNN.
          size_t j = i;
          if (b_arg && c == '0') ++j;
          int v = 0, k = 0;
          while (k < 3 && j < s.size() && s[j] >= '0' && s[j] <= '7')
            v = v * 8 + (s[j++] - '0'), ++k;
          if (k == 0 && !(b_arg && c == '0')) {
            *out += '\\';
            *out += c;
            break;
          }
          *out += static_cast<char>(v);
          i = j - 1;
        } else {
          *out += '\\';
          *out += c;
        }
    }
  }
  return true;
}

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

// Composes one mail: runs the program's statements for `info`.
class Composer {
 public:
  Composer(const MailAction& action, const BanInfo& info, double whois_timeout,
           ActionReport* report)
      : action_(action), info_(info), whois_timeout_(whois_timeout), report_(*report) {}

  std::string Message(const MailProgram& prog) {
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

  // Words expanded with tags filled; for argv (no CR/LF: header injection).
  std::vector<std::string> Argv(const std::vector<Word>& words) {
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

  std::optional<std::string> Tag(const std::string& tag) {
    if (tag.rfind("F-", 0) == 0) {
      auto it = info_.captures.find(TicketDataKey(tag.substr(2)));
      return it == info_.captures.end() ? std::string() : it->second;
    }
    return tags_.Value(tag);
  }

 private:
  // `w` as text; kText pieces through printf %b escapes when `b_arg`.
  // False when \c ended the output.
  bool ExpandInto(const Word& w, bool b_arg, std::string* out) {
    for (const Piece& p : w) {
      switch (p.kind) {
        case Piece::kText:
          if (!b_arg) {
            *out += p.text;
          } else if (!Unescape(p.text, true, out)) {
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

  std::string Expand(const Word& w) {
    std::string s;
    ExpandInto(w, false, &s);
    return s;
  }

  void Printf(const std::vector<Word>& words, std::string* out) {
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
          Unescape(fmt.substr(i, j - i), false, out);
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

  static std::string Date(const std::string& fmt) {
    time_t now = time(nullptr);
    struct tm tm;
    localtime_r(&now, &tm);
    static locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
    char buf[256];
    size_t n = c_locale ? strftime_l(buf, sizeof(buf), fmt.c_str(), &tm, c_locale)
                        : strftime(buf, sizeof(buf), fmt.c_str(), &tm);
    return std::string(buf, n);
  }

  std::string Whois(const WhoisCall& call) {
    std::string out;
    const std::string& ip = info_.ip;
    std::vector<std::string> argv = {"whois"};
    if (!ip.empty() && ip[0] == '-') argv.push_back("--");
    argv.push_back(ip);
    SpawnResult r =
        RunArgv(argv, "", whois_timeout_, MailAction::kMaxWhoisOutput, call.merge_stderr);
    out = r.out;
    const std::string who = "mail action " + action_.jail() + "/" + action_.name() + ": ";
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

  std::string Grep(const Stmt& st) {
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

  const MailAction& action_;
  const BanInfo& info_;
  const double whois_timeout_;
  ActionReport& report_;
  std::map<std::string, std::string> vars_;
  TicketTags tags_{info_};
};

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
  return std::unique_ptr<Action>(new MailAction(jail, name, options, env));
}

MailAction::MailAction(std::string jail, std::string name, OrderedMap<std::string> options,
                       ActionEnv env)
    : jail_(std::move(jail)), name_(std::move(name)), options_(std::move(options)), env_(env) {
  strand_ = pool()->NewStrand();
}

MailAction::~MailAction() { pool()->WaitIdle(strand_); }

std::string MailAction::Option(const std::string& key) const {
  std::lock_guard<std::mutex> lock(options_mu_);
  const std::string* v = options_.Find(key);
  return v ? *v : std::string();
}

std::optional<std::string> MailAction::GetProperty(const std::string& key) const {
  std::lock_guard<std::mutex> lock(options_mu_);
  const std::string* v = options_.Find(key);
  if (v == nullptr) return std::nullopt;
  return *v;
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

  Composer composer(*this, info, whois_timeout, report);
  const std::string message = composer.Message(**prog);
  std::vector<std::string> argv;
  CommandRun run;
  run.operation = op_tag;
  run.family = info.family;
  run.timeout_seconds = timeout;
  if (!(*prog)->sink_argv.empty()) {
    argv = composer.Argv((*prog)->sink_argv);
    run.command.script = DescribeArgv(argv);
  } else {
    // Only the configured text is the script; ban values are arguments.
    run.command = ReplaceDynamicTags((*prog)->sink_shell,
                                     [&](const std::string& tag) { return composer.Tag(tag); },
                                     info.captures);
    argv = {"/bin/sh", "-c", run.command.script};
    argv.insert(argv.end(), run.command.args.begin(), run.command.args.end());
  }
  run.result = RunArgv(argv, message, timeout, kMaxMailCmdOutput, false);
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
  ActionReport report;
  report.op = op;
  report.jail = jail_;
  report.action = name_;
  report.ip = info.ip;
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
    ActionReport report;
    report.op = op;
    report.jail = jail_;
    report.action = name_;
    report.ip = info.ip;
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
    ActionReport report;
    report.op = op;
    report.jail = jail_;
    report.action = name_;
    report.ip = info.ip;
    report.skipped = true;
    report.warnings.push_back("mail action " + jail_ + "/" + name_ + ": " + std::to_string(bound) +
                           " mails waiting; mail for " + info.ip + " dropped (" +
                           std::to_string(n) + " dropped so far)");
    if (done) done(std::move(report));
    return;
  }
  ++pending_;
  pool()->Post(strand_,
               [this, op, info = std::move(info),
                done = std::move(done)]() mutable -> WorkerPool::Completion {
                 ActionReport report = Run(op, info);
                 --pending_;
                 if (!done) return nullptr;
                 return [done = std::move(done), report = std::move(report)]() mutable {
                   done(std::move(report));
                 };
               });
}

}  // namespace bantam
