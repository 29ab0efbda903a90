#include "bantam/shell_words.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace bantam {

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

namespace {

// ----------------------------------------------------------------- lexing

class Lexer {
 public:
  Lexer(const std::string& s, const SubstitutionParser& subst) : s_(s), subst_(subst) {}

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

  Status Substitution(Word* w, const std::string& inner) { return subst_(inner, w); }

  const std::string& s_;
  const SubstitutionParser& subst_;
  size_t i_ = 0;
};

// ---------------------------------------------------------------- parsing

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

}  // namespace

Status LexShell(const std::string& s, const SubstitutionParser& subst, std::vector<Token>* out) {
  return Lexer(s, subst).Run(out);
}

Status ParseShellList(std::vector<Token> tokens, std::vector<AndOr>* out) {
  return Parser(std::move(tokens)).List(out, "");
}

Simple SplitSimple(const Cmd& c) {
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

}  // namespace bantam
