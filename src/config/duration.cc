#include "bantam/duration.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "bantam/py.h"

namespace bantam {
namespace {

// ---------------------------------------------------------------------------
// Step one: fail2ban's textual rewrite. Character classes are those of
// Python's re module restricted to ASCII; non-ASCII text is rejected later.

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsWordChar(char c) { return IsDigit(c) || IsLetter(c) || c == '_'; }
// Python's \s on ASCII includes the information separators 0x1c..0x1f.
bool IsRegexSpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// One regex of fail2ban's, as its list of words; the factor is Python source
// text so that months and years make the result a float, as they do there.
struct UnitGroup {
  std::string_view factor;
  std::array<std::string_view, 6> words;  // Unused slots are empty.
};

constexpr UnitGroup kUnitGroups[] = {
    {"86400", {"d", "dd", "da", "day", "days"}},
    {"604800", {"w", "ww", "we", "wee", "week", "weeks"}},
    {"2629800.0", {"mo", "mon", "month", "months"}},
    {"31557600.0", {"y", "yy", "ye", "yea", "year", "years"}},
    {"1", {"s", "ss", "se", "sec", "second", "seconds"}},
    {"60", {"m", "mm", "mi", "min", "minute", "minutes"}},
    {"3600", {"h", "hh", "ho", "hou", "hour", "hours"}},
};

bool EqualsIgnoringCase(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (ToLower(text[i]) != lower[i]) return false;
  }
  return true;
}

std::optional<std::string_view> UnitFactor(std::string_view letters) {
  for (const UnitGroup& group : kUnitGroups) {
    for (std::string_view word : group.words) {
      if (!word.empty() && EqualsIgnoringCase(letters, word)) return group.factor;
    }
  }
  return std::nullopt;
}

// fail2ban applies one regex per unit group in turn. The groups' words are
// disjoint and a replacement never changes the character before or after
// another candidate, so a single left-to-right pass gives the same text.
std::string RewriteUnits(std::string_view text) {
  // "1d12h" -> "1d 12h": a digit right after a letter gets a space before it.
  std::string spaced;
  spaced.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size(); ++i) {
    if (i > 0 && IsLetter(text[i - 1]) && IsDigit(text[i])) spaced += ' ';
    spaced += text[i];
  }

  // A run of letters after a digit or space that is a unit word and ends at a
  // word boundary becomes "*<seconds>". After the step above a letter run can
  // only be followed by a non-word character or '_'.
  std::string units;
  units.reserve(spaced.size() + 16);
  size_t i = 0;
  while (i < spaced.size()) {
    bool candidate =
        IsLetter(spaced[i]) && i > 0 && (IsDigit(spaced[i - 1]) || IsRegexSpace(spaced[i - 1]));
    if (!candidate) {
      units += spaced[i++];
      continue;
    }
    size_t end = i;
    while (end < spaced.size() && IsLetter(spaced[end])) ++end;
    std::optional<std::string_view> factor;
    if (end == spaced.size() || !IsWordChar(spaced[end])) {
      factor = UnitFactor(std::string_view(spaced).substr(i, end - i));
    }
    if (factor) {
      units += '*';
      units += *factor;
    } else {
      units.append(spaced, i, end - i);
    }
    i = end;
  }

  // Digit, whitespace, digit -> digit '+' digit; matches do not overlap, so
  // the right digit of one match cannot be the left digit of the next.
  std::string joined;
  joined.reserve(units.size());
  i = 0;
  while (i < units.size()) {
    if (IsDigit(units[i])) {
      size_t j = i + 1;
      while (j < units.size() && IsRegexSpace(units[j])) ++j;
      if (j > i + 1 && j < units.size() && IsDigit(units[j])) {
        joined += units[i];
        joined += '+';
        joined += units[j];
        i = j + 1;
        continue;
      }
    }
    joined += units[i++];
  }
  return joined;
}

// ---------------------------------------------------------------------------
// Step two: Python's tokenizer, for the tokens an arithmetic expression uses.

enum class Tok {
  kNumber,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kSlashSlash,
  kPercent,
  kPower,
  kTilde,
  kOpen,
  kClose,
  kEnd
};

struct Token {
  Tok kind;
  TimeValue number;  // For kNumber.
};

// Bounds the recursion; CPython's parser has a similar limit.
constexpr int kMaxParenDepth = 200;

TimeValue Int(int64_t v) { return TimeValue{true, v, 0}; }
TimeValue Real(double v) { return TimeValue{false, 0, v}; }

bool IsHexDigit(char c) { return IsDigit(c) || (ToLower(c) >= 'a' && ToLower(c) <= 'f'); }
int HexValue(char c) { return IsDigit(c) ? c - '0' : ToLower(c) - 'a' + 10; }

// digitpart: digit (["_"] digit)*. Appends the digits without '_' to *out.
void LexDigitPart(std::string_view s, size_t* i, std::string* out) {
  if (*i >= s.size() || !IsDigit(s[*i])) return;
  while (*i < s.size()) {
    if (IsDigit(s[*i])) {
      *out += s[(*i)++];
    } else if (s[*i] == '_' && *i + 1 < s.size() && IsDigit(s[*i + 1])) {
      ++*i;
    } else {
      break;
    }
  }
}

// A float literal strtod-style text out of range: inf or 0 by its magnitude.
double OutOfRangeFloat(std::string_view digits_int, std::string_view digits_frac, int64_t exp) {
  int64_t magnitude = exp;
  size_t nonzero = digits_int.find_first_not_of('0');
  if (nonzero != std::string_view::npos) {
    magnitude += static_cast<int64_t>(digits_int.size() - nonzero);
  } else {
    size_t lead = digits_frac.find_first_not_of('0');
    magnitude -= static_cast<int64_t>(lead == std::string_view::npos ? 0 : lead);
  }
  return magnitude > 0 ? HUGE_VAL : 0.0;
}

// Lexes a Python number literal at s[*i] (a digit, or '.' before a digit).
std::optional<TimeValue> LexNumber(std::string_view s, size_t* i) {
  if (s[*i] == '0' && *i + 1 < s.size() && (s[*i + 1] == 'x' || s[*i + 1] == 'X')) {
    *i += 2;
    int64_t value = 0;
    int ndigits = 0;
    while (*i < s.size()) {
      if (s[*i] == '_' && *i + 1 < s.size() && IsHexDigit(s[*i + 1])) ++*i;
      if (!IsHexDigit(s[*i])) break;
      if (__builtin_mul_overflow(value, 16, &value) ||
          __builtin_add_overflow(value, HexValue(s[*i]), &value)) {
        return std::nullopt;
      }
      ++ndigits;
      ++*i;
    }
    if (ndigits == 0) return std::nullopt;
    return Int(value);
  }

  std::string int_digits, frac_digits, exp_digits;
  bool is_float = false;
  LexDigitPart(s, i, &int_digits);
  if (*i < s.size() && s[*i] == '.') {
    is_float = true;
    ++*i;
    LexDigitPart(s, i, &frac_digits);
  }
  bool exp_negative = false;
  if (*i < s.size() && (s[*i] == 'e' || s[*i] == 'E')) {
    size_t j = *i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) exp_negative = s[j++] == '-';
    if (j < s.size() && IsDigit(s[j])) {
      LexDigitPart(s, &j, &exp_digits);
      is_float = true;
      *i = j;
    }  // Otherwise the 'e' stays and is refused below, as Python does.
  }
  // "1_", "1e", "1j", "5.s": Python says invalid literal (or complex).
  if (*i < s.size() && IsWordChar(s[*i])) return std::nullopt;

  if (!is_float) {
    if (int_digits.size() > 1 && int_digits[0] == '0' &&
        int_digits.find_first_not_of('0') != std::string::npos) {
      return std::nullopt;  // "010": leading zeros are not permitted.
    }
    int64_t value = 0;
    auto [end, ec] =
        std::from_chars(int_digits.data(), int_digits.data() + int_digits.size(), value);
    if (ec != std::errc() || end != int_digits.data() + int_digits.size()) return std::nullopt;
    return Int(value);
  }

  std::string text = int_digits.empty() ? "0" : int_digits;
  text += '.';
  text += frac_digits.empty() ? "0" : frac_digits;
  if (!exp_digits.empty()) {
    text += exp_negative ? "e-" : "e";
    text += exp_digits;
  }
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) {
    int64_t exp = 0;
    for (char c : exp_digits) exp = std::min<int64_t>(exp * 10 + (c - '0'), int64_t{1} << 40);
    value = OutOfRangeFloat(int_digits, frac_digits, exp_negative ? -exp : exp);
  } else if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return Real(value);
}

bool IsNewline(char c) { return c == '\n' || c == '\r'; }
bool IsInlineSpace(char c) { return c == ' ' || c == '\t' || c == '\f'; }

// Tokenizes like Python's eval(): leading spaces and tabs are dropped, blank
// and comment-only lines are skipped, an indented line is an error, newlines
// inside parentheses are whitespace, and a top-level newline ends the
// expression. Backslash continuations are not supported.
std::optional<std::vector<Token>> Tokenize(std::string_view s) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  int depth = 0;
  bool line_start = true;
  bool ended = false;  // A top-level newline followed the expression.
  while (true) {
    if (line_start && depth == 0) {
      int col = 0;
      size_t j = i;
      for (; j < s.size() && IsInlineSpace(s[j]); ++j) col = s[j] == '\f' ? 0 : col + 1;
      if (j == s.size()) {
        if (col > 0) return std::nullopt;  // Python: unexpected indent.
        break;
      }
      if (s[j] == '#') {
        while (j < s.size() && !IsNewline(s[j])) ++j;
      }
      if (j == s.size()) break;
      if (IsNewline(s[j])) {
        i = j + ((s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n') ? 2 : 1);
        continue;
      }
      if (col > 0 || ended) return std::nullopt;
      line_start = false;
      i = j;
    }
    if (i == s.size()) break;
    char c = s[i];
    if (IsInlineSpace(c)) {
      ++i;
    } else if (c == '#') {
      while (i < s.size() && !IsNewline(s[i])) ++i;
    } else if (IsNewline(c)) {
      i += (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
      if (depth == 0) {
        line_start = true;
        ended = true;
      }
    } else if (IsDigit(c) || (c == '.' && i + 1 < s.size() && IsDigit(s[i + 1]))) {
      std::optional<TimeValue> number = LexNumber(s, &i);
      if (!number) return std::nullopt;
      tokens.push_back({Tok::kNumber, *number});
    } else {
      Tok kind;
      size_t len = 1;
      bool doubled = i + 1 < s.size() && s[i + 1] == c;
      switch (c) {
        case '+':
          kind = Tok::kPlus;
          break;
        case '-':
          kind = Tok::kMinus;
          break;
        case '%':
          kind = Tok::kPercent;
          break;
        case '~':
          kind = Tok::kTilde;
          break;
        case '*':
          kind = doubled ? Tok::kPower : Tok::kStar;
          len = doubled ? 2 : 1;
          break;
        case '/':
          kind = doubled ? Tok::kSlashSlash : Tok::kSlash;
          len = doubled ? 2 : 1;
          break;
        case '(':
          if (++depth > kMaxParenDepth) return std::nullopt;
          kind = Tok::kOpen;
          break;
        case ')':
          if (--depth < 0) return std::nullopt;
          kind = Tok::kClose;
          break;
        default:
          return std::nullopt;  // Names, commas, non-ASCII, '\\', '\v', ...
      }
      tokens.push_back({kind, {}});
      i += len;
    }
  }
  if (depth != 0) return std::nullopt;
  tokens.push_back({Tok::kEnd, {}});
  return tokens;
}

// ---------------------------------------------------------------------------
// Step three: Python's arithmetic on int (here int64, refusing overflow where
// Python would grow) and float. nullopt is any Python exception.

using Value = std::optional<TimeValue>;

double AsReal(const TimeValue& v) { return v.is_integer ? static_cast<double>(v.integer) : v.real; }

bool IsOddInteger(double x) { return std::fmod(std::fabs(x), 2.0) == 1.0; }

// CPython's float_pow, minus the complex result for negative ** fractional.
Value RealPow(double v, double w) {
  if (w == 0) return Real(1.0);
  if (std::isnan(v)) return Real(v);
  if (std::isnan(w)) return Real(v == 1.0 ? 1.0 : w);
  if (std::isinf(w)) {
    double av = std::fabs(v);
    if (av == 1.0) return Real(1.0);
    return Real((w > 0) == (av > 1.0) ? std::fabs(w) : 0.0);
  }
  if (std::isinf(v)) {
    bool odd = IsOddInteger(w);
    if (w > 0) return Real(odd ? v : std::fabs(v));
    return Real(odd ? std::copysign(0.0, v) : 0.0);
  }
  if (v == 0.0) {
    if (w < 0.0) return std::nullopt;  // ZeroDivisionError.
    return Real(IsOddInteger(w) ? v : 0.0);
  }
  bool negate = false;
  if (v < 0.0) {
    if (w != std::floor(w)) return std::nullopt;  // Python returns a complex.
    v = -v;
    negate = IsOddInteger(w);
  }
  if (v == 1.0) return Real(negate ? -1.0 : 1.0);
  double r = std::pow(v, w);
  if (std::isinf(r)) return std::nullopt;  // OverflowError.
  return Real(negate ? -r : r);
}

Value IntPow(int64_t base, int64_t exp) {
  if (exp < 0) {
    if (base == 0) return std::nullopt;  // ZeroDivisionError.
    return RealPow(static_cast<double>(base), static_cast<double>(exp));
  }
  int64_t result = 1;
  while (exp > 0) {
    if ((exp & 1) && __builtin_mul_overflow(result, base, &result)) return std::nullopt;
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) return std::nullopt;
  }
  return Int(result);
}

// CPython's float divmod: the floor quotient and the remainder with the sign
// of the divisor.
void RealDivMod(double vx, double wx, double* floordiv, double* mod) {
  *mod = std::fmod(vx, wx);
  double div = (vx - *mod) / wx;
  if (*mod != 0) {
    if ((wx < 0) != (*mod < 0)) {
      *mod += wx;
      div -= 1.0;
    }
  } else {
    *mod = std::copysign(0.0, wx);
  }
  if (div != 0) {
    *floordiv = std::floor(div);
    if (div - *floordiv > 0.5) *floordiv += 1.0;
  } else {
    *floordiv = std::copysign(0.0, vx / wx);
  }
}

Value Binary(Tok op, const TimeValue& a, const TimeValue& b) {
  if (a.is_integer && b.is_integer) {
    int64_t x = a.integer, y = b.integer, r = 0;
    switch (op) {
      case Tok::kPlus:
        if (__builtin_add_overflow(x, y, &r)) return std::nullopt;
        return Int(r);
      case Tok::kMinus:
        if (__builtin_sub_overflow(x, y, &r)) return std::nullopt;
        return Int(r);
      case Tok::kStar:
        if (__builtin_mul_overflow(x, y, &r)) return std::nullopt;
        return Int(r);
      case Tok::kSlash:
        if (y == 0) return std::nullopt;
        return Real(static_cast<double>(x) / static_cast<double>(y));
      case Tok::kSlashSlash:
        if (y == 0 || (x == INT64_MIN && y == -1)) return std::nullopt;
        r = x / y;
        if (x % y != 0 && ((x < 0) != (y < 0))) --r;
        return Int(r);
      case Tok::kPercent:
        if (y == 0) return std::nullopt;
        if (y == -1) return Int(0);
        r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Int(r);
      case Tok::kPower:
        return IntPow(x, y);
      default:
        return std::nullopt;
    }
  }
  double x = AsReal(a), y = AsReal(b), div = 0, mod = 0;
  switch (op) {
    case Tok::kPlus:
      return Real(x + y);
    case Tok::kMinus:
      return Real(x - y);
    case Tok::kStar:
      return Real(x * y);
    case Tok::kSlash:
      if (y == 0) return std::nullopt;
      return Real(x / y);
    case Tok::kSlashSlash:
    case Tok::kPercent:
      if (y == 0) return std::nullopt;
      RealDivMod(x, y, &div, &mod);
      return Real(op == Tok::kSlashSlash ? div : mod);
    case Tok::kPower:
      return RealPow(x, y);
    default:
      return std::nullopt;
  }
}

Value Unary(Tok op, const TimeValue& v) {
  switch (op) {
    case Tok::kPlus:
      return v;
    case Tok::kMinus:
      if (!v.is_integer) return Real(-v.real);
      if (v.integer == INT64_MIN) return std::nullopt;
      return Int(-v.integer);
    case Tok::kTilde:
      if (!v.is_integer) return std::nullopt;  // TypeError.
      return Int(~v.integer);
    default:
      return std::nullopt;
  }
}

// Recursive descent over Python's grammar for these operators:
//   expr   := term (("+" | "-") term)*
//   term   := factor (("*" | "/" | "//" | "%") factor)*
//   factor := ("+" | "-" | "~") factor | power
//   power  := atom ["**" factor]
//   atom   := NUMBER | "(" expr ")"
class Evaluator {
 public:
  explicit Evaluator(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Value Run() {
    Value v = Expr();
    if (!v || Peek() != Tok::kEnd) return std::nullopt;
    return v;
  }

 private:
  Tok Peek() const { return tokens_[pos_].kind; }

  Value Expr() {
    Value v = Term();
    while (v && (Peek() == Tok::kPlus || Peek() == Tok::kMinus)) {
      Tok op = tokens_[pos_++].kind;
      Value rhs = Term();
      v = rhs ? Binary(op, *v, *rhs) : std::nullopt;
    }
    return v;
  }

  Value Term() {
    Value v = Factor();
    while (v && (Peek() == Tok::kStar || Peek() == Tok::kSlash || Peek() == Tok::kSlashSlash ||
                 Peek() == Tok::kPercent)) {
      Tok op = tokens_[pos_++].kind;
      Value rhs = Factor();
      v = rhs ? Binary(op, *v, *rhs) : std::nullopt;
    }
    return v;
  }

  // Prefix operators are collected iteratively so "-----1" costs no stack.
  Value Factor() {
    size_t first = pos_;
    while (Peek() == Tok::kPlus || Peek() == Tok::kMinus || Peek() == Tok::kTilde) ++pos_;
    size_t last = pos_;
    Value v = Power();
    while (v && last > first) v = Unary(tokens_[--last].kind, *v);
    return v;
  }

  Value Power() {
    Value base = Atom();
    if (!base || Peek() != Tok::kPower) return base;
    ++pos_;
    if (++depth_ > kMaxDepth) return std::nullopt;
    Value exp = Factor();
    --depth_;
    return exp ? Binary(Tok::kPower, *base, *exp) : std::nullopt;
  }

  Value Atom() {
    Tok kind = Peek();
    if (kind == Tok::kNumber) return tokens_[pos_++].number;
    if (kind != Tok::kOpen) return std::nullopt;
    ++pos_;
    Value v = Expr();
    if (!v || Peek() != Tok::kClose) return std::nullopt;
    ++pos_;
    return v;
  }

  // Bounds recursion through "**" chains; parentheses are bounded by Tokenize.
  static constexpr int kMaxDepth = 1000;

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<TimeValue> ParseTimeValue(std::string_view text) {
  Value value;
  if (std::optional<std::vector<Token>> tokens = Tokenize(RewriteUnits(text))) {
    value = Evaluator(*tokens).Run();
  }
  if (!value) return Status::Error("invalid time value '" + std::string(text) + "'");
  return *value;
}

Result<double> ParseDuration(std::string_view text) {
  Result<TimeValue> value = ParseTimeValue(text);
  if (!value.ok()) return value.status();
  return value->seconds();
}

std::string FormatStr2Sec(const TimeValue& value) {
  return value.is_integer ? std::to_string(value.integer) : PyFloatRepr(value.real);
}

std::string FormatStr2Sec(double seconds) {
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  if (std::fabs(seconds) < kExactIntegers && seconds == std::floor(seconds)) {
    return std::to_string(static_cast<int64_t>(seconds));
  }
  return PyFloatRepr(seconds);
}

}  // namespace bantam
