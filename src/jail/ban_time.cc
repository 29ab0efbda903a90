#include "bantam/ban_time.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <utility>

#include "bantam/py.h"

namespace bantam {
namespace {

using Value = BanTimeFormula::Value;
using Node = BanTimeFormula::Node;

enum Op : uint8_t {
  kConst,
  kBanTime,
  kBanCount,
  kBanFactor,
  kNeg,
  kPos,
  kInvert,
  kNot,
  kAdd,
  kSub,
  kMul,
  kTrueDiv,
  kFloorDiv,
  kMod,
  kPow,
  kShl,
  kShr,
  kBitAnd,
  kBitOr,
  kBitXor,
  kLt,
  kLe,
  kGt,
  kGe,
  kEq,
  kNe,
  kAnd,
  kOr,
  kIfElse,
  kMin,
  kMax,
  kAbs,
  kInt,
  kFloat,
  kRound,
  kExp,
  kLog,
  kLog2,
  kLog10,
  kSqrt,
  kMathPow,
  kFloor,
  kCeil,
};

constexpr int kMaxDepth = 100;

Value Int(int64_t i) { return Value{true, i, 0}; }
Value Float(double f) { return Value{false, 0, f}; }
Value Bool(bool b) { return Int(b ? 1 : 0); }
bool Truthy(const Value& v) { return v.is_int ? v.i != 0 : v.f != 0; }

// ---- Parsing ---------------------------------------------------------------

class Parser {
 public:
  Parser(std::string_view text, bool with_ban, std::vector<Node>* nodes, std::vector<int>* args)
      : s_(text), with_ban_(with_ban), nodes_(nodes), args_(args) {}

  // Index of the root node, or -1 with error().
  int ParseAll() {
    int root = Expr(0);
    if (root < 0) return -1;
    SkipSpace();
    if (pos_ != s_.size()) return Fail("unexpected '" + std::string(s_.substr(pos_, 10)) + "'");
    return root;
  }
  const std::string& error() const { return error_; }

 private:
  int Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return -1;
  }
  int Add(uint8_t op, int a = -1, int b = -1, int c = -1) {
    Node n;
    n.op = op;
    n.a = a;
    n.b = b;
    n.c = c;
    nodes_->push_back(n);
    return static_cast<int>(nodes_->size()) - 1;
  }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  static bool IsNameChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  // Consumes `tok` if next; keywords must end at a word boundary.
  bool Eat(std::string_view tok) {
    SkipSpace();
    if (s_.substr(pos_, tok.size()) != tok) return false;
    if (IsNameChar(tok.back()) && pos_ + tok.size() < s_.size() &&
        IsNameChar(s_[pos_ + tok.size()])) {
      return false;
    }
    // "*" must not eat the first half of "**", "<" not of "<<" or "<=", ...
    if (tok.size() == 1 && pos_ + 1 < s_.size()) {
      const char n = s_[pos_ + 1];
      if ((tok == "*" && n == '*') || (tok == "/" && n == '/') ||
          ((tok == "<" || tok == ">") && (n == tok[0] || n == '=')) || (tok == "=" && n == '=')) {
        return false;
      }
    }
    pos_ += tok.size();
    return true;
  }
  bool Enter(int depth) {
    if (depth > kMaxDepth) {
      Fail("expression nested too deeply");
      return false;
    }
    return true;
  }

  int Expr(int depth) {
    if (!Enter(depth)) return -1;
    int body = OrTest(depth + 1);
    if (body < 0) return -1;
    if (!Eat("if")) return body;
    int cond = OrTest(depth + 1);
    if (cond < 0) return -1;
    if (!Eat("else")) return Fail("expected 'else'");
    int other = Expr(depth + 1);
    if (other < 0) return -1;
    return Add(kIfElse, cond, body, other);
  }
  int OrTest(int depth) {
    int left = AndTest(depth);
    while (left >= 0 && Eat("or")) {
      int right = AndTest(depth);
      if (right < 0) return -1;
      left = Add(kOr, left, right);
    }
    return left;
  }
  int AndTest(int depth) {
    int left = NotTest(depth);
    while (left >= 0 && Eat("and")) {
      int right = NotTest(depth);
      if (right < 0) return -1;
      left = Add(kAnd, left, right);
    }
    return left;
  }
  int NotTest(int depth) {
    if (!Enter(depth)) return -1;
    if (Eat("not")) {
      int v = NotTest(depth + 1);
      return v < 0 ? -1 : Add(kNot, v);
    }
    return Comparison(depth);
  }
  int Comparison(int depth) {
    int left = BitOr(depth);
    if (left < 0) return -1;
    int result = -1;
    for (;;) {
      uint8_t op;
      if (Eat("<="))
        op = kLe;
      else if (Eat(">="))
        op = kGe;
      else if (Eat("=="))
        op = kEq;
      else if (Eat("!="))
        op = kNe;
      else if (Eat("<"))
        op = kLt;
      else if (Eat(">"))
        op = kGt;
      else
        break;
      int right = BitOr(depth);
      if (right < 0) return -1;
      // a < b < c is (a < b) and (b < c); b is pure, so evaluating it twice
      // gives what Python gives.
      int cmp = Add(op, left, right);
      result = result < 0 ? cmp : Add(kAnd, result, cmp);
      left = right;
    }
    return result < 0 ? left : result;
  }
  int BitOr(int depth) {
    int left = BitXor(depth);
    while (left >= 0 && Eat("|")) {
      int right = BitXor(depth);
      if (right < 0) return -1;
      left = Add(kBitOr, left, right);
    }
    return left;
  }
  int BitXor(int depth) {
    int left = BitAnd(depth);
    while (left >= 0 && Eat("^")) {
      int right = BitAnd(depth);
      if (right < 0) return -1;
      left = Add(kBitXor, left, right);
    }
    return left;
  }
  int BitAnd(int depth) {
    int left = Shift(depth);
    while (left >= 0 && Eat("&")) {
      int right = Shift(depth);
      if (right < 0) return -1;
      left = Add(kBitAnd, left, right);
    }
    return left;
  }
  int Shift(int depth) {
    int left = Arith(depth);
    for (;;) {
      if (left < 0) return -1;
      uint8_t op;
      if (Eat("<<"))
        op = kShl;
      else if (Eat(">>"))
        op = kShr;
      else
        return left;
      int right = Arith(depth);
      if (right < 0) return -1;
      left = Add(op, left, right);
    }
  }
  int Arith(int depth) {
    int left = Term(depth);
    for (;;) {
      if (left < 0) return -1;
      uint8_t op;
      if (Eat("+"))
        op = kAdd;
      else if (Eat("-"))
        op = kSub;
      else
        return left;
      int right = Term(depth);
      if (right < 0) return -1;
      left = Add(op, left, right);
    }
  }
  int Term(int depth) {
    int left = Factor(depth);
    for (;;) {
      if (left < 0) return -1;
      uint8_t op;
      if (Eat("//"))
        op = kFloorDiv;
      else if (Eat("*"))
        op = kMul;
      else if (Eat("/"))
        op = kTrueDiv;
      else if (Eat("%"))
        op = kMod;
      else
        return left;
      int right = Factor(depth);
      if (right < 0) return -1;
      left = Add(op, left, right);
    }
  }
  int Factor(int depth) {
    if (!Enter(depth)) return -1;
    uint8_t op;
    if (Eat("-"))
      op = kNeg;
    else if (Eat("+"))
      op = kPos;
    else if (Eat("~"))
      op = kInvert;
    else
      return Power(depth);
    int v = Factor(depth + 1);
    return v < 0 ? -1 : Add(op, v);
  }
  int Power(int depth) {
    int base = Primary(depth);
    if (base < 0 || !Eat("**")) return base;
    int exp = Factor(depth + 1);  // right-associative, binds unary minus
    return exp < 0 ? -1 : Add(kPow, base, exp);
  }
  int Primary(int depth) {
    SkipSpace();
    if (pos_ >= s_.size()) return Fail("unexpected end of expression");
    const char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      int v = Expr(depth + 1);
      if (v < 0) return -1;
      if (!Eat(")")) return Fail("expected ')'");
      return v;
    }
    if ((c >= '0' && c <= '9') || c == '.') return Number();
    if (!IsNameChar(c)) return Fail("unexpected '" + std::string(1, c) + "'");
    // A dotted name: ban.Time, math.exp, ...
    size_t start = pos_;
    while (pos_ < s_.size() && (IsNameChar(s_[pos_]) || s_[pos_] == '.')) ++pos_;
    const std::string_view name = s_.substr(start, pos_ - start);
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      return Call(name, depth);
    }
    if (with_ban_ && name == "ban.Time") return Add(kBanTime);
    if (with_ban_ && name == "ban.Count") return Add(kBanCount);
    if (with_ban_ && name == "banFactor") return Add(kBanFactor);
    if (name == "True" || name == "False") return Const(Bool(name == "True"));
    if (name == "math.e") return Const(Float(M_E));
    if (name == "math.pi") return Const(Float(M_PI));
    return Fail("unsupported name '" + std::string(name) + "'");
  }
  int Call(std::string_view name, int depth) {
    struct Fn {
      std::string_view name;
      uint8_t op;
      int min_args, max_args;
    };
    static constexpr Fn kFns[] = {
        {"min", kMin, 2, 64},         {"max", kMax, 2, 64},       {"abs", kAbs, 1, 1},
        {"int", kInt, 1, 1},          {"float", kFloat, 1, 1},    {"round", kRound, 1, 1},
        {"math.exp", kExp, 1, 1},     {"math.log", kLog, 1, 2},   {"math.log2", kLog2, 1, 1},
        {"math.log10", kLog10, 1, 1}, {"math.sqrt", kSqrt, 1, 1}, {"math.pow", kMathPow, 2, 2},
        {"math.floor", kFloor, 1, 1}, {"math.ceil", kCeil, 1, 1},
    };
    const Fn* fn = nullptr;
    for (const Fn& f : kFns) {
      if (f.name == name) fn = &f;
    }
    if (fn == nullptr) return Fail("unsupported function '" + std::string(name) + "'");
    std::vector<int> call_args;
    if (!Eat(")")) {
      for (;;) {
        int a = Expr(depth + 1);
        if (a < 0) return -1;
        call_args.push_back(a);
        if (Eat(")")) break;
        if (!Eat(",")) return Fail("expected ',' or ')'");
        if (Eat(")")) break;  // trailing comma
      }
    }
    const int n = static_cast<int>(call_args.size());
    if (n < fn->min_args || n > fn->max_args) {
      return Fail(std::string(name) + "() takes " +
                  (fn->min_args == fn->max_args ? std::to_string(fn->min_args)
                                                : std::to_string(fn->min_args) + " or more") +
                  " arguments, got " + std::to_string(n));
    }
    int node = Add(fn->op);
    (*nodes_)[node].first_arg = static_cast<int>(args_->size());
    (*nodes_)[node].nargs = n;
    args_->insert(args_->end(), call_args.begin(), call_args.end());
    return node;
  }
  int Const(Value v) {
    int n = Add(kConst);
    (*nodes_)[n].value = v;
    return n;
  }
  int Number() {
    // Python literals: 600, 1_000, 1.5, .5, 1e3, 0x10.
    size_t start = pos_;
    std::string digits;
    if (s_.substr(pos_, 2) == "0x" || s_.substr(pos_, 2) == "0X") {
      pos_ += 2;
      while (pos_ < s_.size() &&
             (std::isxdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) {
        if (s_[pos_] != '_') digits += s_[pos_];
        ++pos_;
      }
      errno = 0;
      const unsigned long long v = std::strtoull(digits.c_str(), nullptr, 16);
      if (digits.empty() || errno != 0 || v > static_cast<unsigned long long>(INT64_MAX)) {
        return Fail("invalid number '" + std::string(s_.substr(start, pos_ - start)) + "'");
      }
      return Const(Int(static_cast<int64_t>(v)));
    }
    bool is_float = false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c >= '0' && c <= '9') {
        digits += c;
      } else if (c == '_' && pos_ + 1 < s_.size() &&
                 std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])) && !digits.empty()) {
      } else if (c == '.' && !is_float) {
        is_float = true;
        digits += c;
      } else if ((c == 'e' || c == 'E') && digits != ".") {
        is_float = true;
        digits += c;
        if (pos_ + 1 < s_.size() && (s_[pos_ + 1] == '+' || s_[pos_ + 1] == '-'))
          digits += s_[++pos_];
      } else {
        break;
      }
      ++pos_;
    }
    if (pos_ < s_.size() && IsNameChar(s_[pos_])) {
      return Fail("invalid number '" + std::string(s_.substr(start, pos_ + 1 - start)) + "'");
    }
    char* end = nullptr;
    if (is_float) {
      const double v = std::strtod(digits.c_str(), &end);
      if (digits == "." || end != digits.c_str() + digits.size()) {
        return Fail("invalid number '" + std::string(s_.substr(start, pos_ - start)) + "'");
      }
      return Const(Float(v));
    }
    if (digits.size() > 1 && digits[0] == '0' &&
        digits.find_first_not_of('0') != std::string::npos) {
      return Fail("leading zeros in decimal integer literals are not permitted");
    }
    errno = 0;
    const long long v = std::strtoll(digits.c_str(), &end, 10);
    if (errno != 0) return Const(Float(std::strtod(digits.c_str(), nullptr)));
    return Const(Int(v));
  }

  std::string_view s_;
  size_t pos_ = 0;
  bool with_ban_;
  std::vector<Node>* nodes_;
  std::vector<int>* args_;
  std::string error_;
};

// ---- Evaluation ------------------------------------------------------------

const char* TypeName(const Value& v) { return v.is_int ? "int" : "float"; }

Status TypeError(const char* op, const Value& a, const Value& b) {
  return Status::Error(std::string("unsupported operand type(s) for ") + op + ": '" + TypeName(a) +
                       "' and '" + TypeName(b) + "'");
}

// Python's float divmod.
void FloatDivMod(double a, double b, double* div, double* mod) {
  double m = std::fmod(a, b);
  double d = (a - m) / b;
  if (m != 0) {
    if ((b < 0) != (m < 0)) {
      m += b;
      d -= 1;
    }
  } else {
    m = std::copysign(0.0, b);
  }
  double fd;
  if (d != 0) {
    fd = std::floor(d);
    if (d - fd > 0.5) fd += 1;
  } else {
    fd = std::copysign(0.0, a / b);
  }
  *div = fd;
  *mod = m;
}

Result<Value> Arith(uint8_t op, const Value& x, const Value& y) {
  if (x.is_int && y.is_int) {
    int64_t r;
    switch (op) {
      case kAdd:
        if (!__builtin_add_overflow(x.i, y.i, &r)) return Int(r);
        break;
      case kSub:
        if (!__builtin_sub_overflow(x.i, y.i, &r)) return Int(r);
        break;
      case kMul:
        if (!__builtin_mul_overflow(x.i, y.i, &r)) return Int(r);
        break;
      case kFloorDiv:
      case kMod: {
        if (y.i == 0) return Status::Error("integer division or modulo by zero");
        if (x.i == INT64_MIN && y.i == -1) break;
        int64_t q = x.i / y.i, m = x.i % y.i;
        if (m != 0 && ((m < 0) != (y.i < 0))) {
          m += y.i;
          q -= 1;
        }
        return Int(op == kFloorDiv ? q : m);
      }
      case kPow: {
        if (y.i < 0) break;  // a float, below
        int64_t acc = 1, base = x.i, e = y.i;
        bool overflow = false;
        while (e > 0 && !overflow) {
          if (e & 1) overflow = __builtin_mul_overflow(acc, base, &acc);
          e >>= 1;
          if (e > 0 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
        }
        if (!overflow) return Int(acc);
        break;
      }
      default:
        break;
    }
  }
  // Floats, and ints that outgrew 64 bits (Python would stay exact).
  const double a = x.AsDouble(), b = y.AsDouble();
  switch (op) {
    case kAdd:
      return Float(a + b);
    case kSub:
      return Float(a - b);
    case kMul:
      return Float(a * b);
    case kTrueDiv:
      if (b == 0) return Status::Error("division by zero");
      return Float(a / b);
    case kFloorDiv:
    case kMod: {
      if (b == 0) return Status::Error("float divmod()");
      double d, m;
      FloatDivMod(a, b, &d, &m);
      return Float(op == kFloorDiv ? d : m);
    }
    case kPow: {
      if (a == 0 && b < 0) return Status::Error("0.0 cannot be raised to a negative power");
      if (a < 0 && b != std::floor(b))
        return Status::Error("negative number to a fractional power");
      const double r = std::pow(a, b);
      if (std::isinf(r) && std::isfinite(a) && std::isfinite(b)) {
        return Status::Error("(34, 'Numerical result out of range')");
      }
      return Float(r);
    }
    default:
      return Status::Error("internal: bad arithmetic operator");
  }
}

Result<Value> IntOnly(uint8_t op, const Value& x, const Value& y) {
  static const char* const kNames[] = {"<<", ">>", "&", "|", "^"};
  const char* name = kNames[op == kShl      ? 0
                            : op == kShr    ? 1
                            : op == kBitAnd ? 2
                            : op == kBitOr  ? 3
                                            : 4];
  if (!x.is_int || !y.is_int) return TypeError(name, x, y);
  switch (op) {
    case kShl:
      if (y.i < 0) return Status::Error("negative shift count");
      if (y.i < 63 && (x.i >= 0 ? x.i <= (INT64_MAX >> y.i) : x.i >= (INT64_MIN >> y.i))) {
        return Int(static_cast<int64_t>(static_cast<uint64_t>(x.i) << y.i));
      }
      return Float(
          std::ldexp(static_cast<double>(x.i), static_cast<int>(std::min<int64_t>(y.i, 100000))));
    case kShr:
      if (y.i < 0) return Status::Error("negative shift count");
      return Int(y.i >= 63 ? (x.i < 0 ? -1 : 0) : (x.i >> y.i));
    case kBitAnd:
      return Int(x.i & y.i);
    case kBitOr:
      return Int(x.i | y.i);
    default:
      return Int(x.i ^ y.i);
  }
}

bool Less(const Value& a, const Value& b) {
  if (a.is_int && b.is_int) return a.i < b.i;
  return a.AsDouble() < b.AsDouble();
}
bool Equal(const Value& a, const Value& b) {
  if (a.is_int && b.is_int) return a.i == b.i;
  return a.AsDouble() == b.AsDouble();
}

Result<Value> ToInt(double f) {
  if (std::isnan(f)) return Status::Error("cannot convert float NaN to integer");
  if (std::isinf(f)) return Status::Error("cannot convert float infinity to integer");
  if (f >= 9.2233720368547758e18 || f < -9.2233720368547758e18) return Float(std::trunc(f));
  return Int(static_cast<int64_t>(f));
}

Result<Value> MathResult(double r, double arg) {
  if (std::isnan(r) && !std::isnan(arg)) return Status::Error("math domain error");
  if (std::isinf(r) && std::isfinite(arg)) return Status::Error("math range error");
  return Float(r);
}

}  // namespace

Result<BanTimeFormula> BanTimeFormula::Compile(std::string_view text, std::string_view option,
                                               bool with_ban) {
  BanTimeFormula f;
  f.option_ = std::string(option);
  Parser parser(text, with_ban, &f.nodes_, &f.args_);
  const int root = parser.ParseAll();
  if (root < 0) {
    return Status::Error(std::string(option) + ": " + parser.error() + " in '" + std::string(text) +
                         "'");
  }
  // Eval starts at the last node; make sure that is the root.
  if (root != static_cast<int>(f.nodes_.size()) - 1) {
    Node n;
    n.op = kPos;
    n.a = root;
    f.nodes_.push_back(n);
  }
  return f;
}

Result<Value> BanTimeFormula::Evaluate(Value ban_time, Value ban_count, Value ban_factor) const {
  const Value vars[3] = {ban_time, ban_count, ban_factor};
  return Eval(static_cast<int>(nodes_.size()) - 1, vars, 0);
}

Result<Value> BanTimeFormula::Eval(int index, const Value vars[3], int depth) const {
  const Node& n = nodes_[static_cast<size_t>(index)];
  // Nesting is bounded by the parser, but comparison chains and operator
  // runs add height; keep a guard so a pathological formula cannot smash
  // the stack.
  if (depth > 4 * kMaxDepth + 1000) return Status::Error("expression too deep");
  auto eval = [&](int child) { return Eval(child, vars, depth + 1); };
  switch (n.op) {
    case kConst:
      return n.value;
    case kBanTime:
      return vars[0];
    case kBanCount:
      return vars[1];
    case kBanFactor:
      return vars[2];
    case kIfElse: {
      Result<Value> c = eval(n.a);
      if (!c.ok()) return c;
      return eval(Truthy(*c) ? n.b : n.c);
    }
    case kAnd:
    case kOr: {
      Result<Value> a = eval(n.a);
      if (!a.ok()) return a;
      if (Truthy(*a) == (n.op == kOr)) return a;
      return eval(n.b);
    }
    case kMin:
    case kMax: {
      Result<Value> best = eval(args_[static_cast<size_t>(n.first_arg)]);
      if (!best.ok()) return best;
      for (int k = 1; k < n.nargs; ++k) {
        Result<Value> v = eval(args_[static_cast<size_t>(n.first_arg + k)]);
        if (!v.ok()) return v;
        // Python keeps the first of equal candidates.
        if (n.op == kMin ? Less(*v, *best) : Less(*best, *v)) best = v;
      }
      return best;
    }
    default:
      break;
  }
  if (n.nargs > 0 || n.op == kAbs) {
    Result<Value> x = eval(args_[static_cast<size_t>(n.first_arg)]);
    if (!x.ok()) return x;
    Value y;
    if (n.nargs > 1) {
      Result<Value> yr = eval(args_[static_cast<size_t>(n.first_arg + 1)]);
      if (!yr.ok()) return yr;
      y = *yr;
    }
    const double f = x->AsDouble();
    switch (n.op) {
      case kAbs:
        if (x->is_int) return x->i == INT64_MIN ? Float(-f) : Int(x->i < 0 ? -x->i : x->i);
        return Float(std::fabs(f));
      case kInt:
        return x->is_int ? *x : ToInt(f);
      case kFloat:
        return Float(f);
      case kRound: {
        if (x->is_int) return *x;
        return ToInt(std::nearbyint(f));  // half to even, as Python's round()
      }
      case kExp:
        return MathResult(std::exp(f), f);
      case kLog:
        if (f <= 0) return Status::Error("math domain error");
        if (n.nargs > 1) {
          const double b = y.AsDouble();
          if (b <= 0) return Status::Error("math domain error");
          if (b == 1) return Status::Error("float division by zero");
          return Float(std::log(f) / std::log(b));
        }
        return Float(std::log(f));
      case kLog2:
        if (f <= 0) return Status::Error("math domain error");
        return Float(std::log2(f));
      case kLog10:
        if (f <= 0) return Status::Error("math domain error");
        return Float(std::log10(f));
      case kSqrt:
        if (f < 0) return Status::Error("math domain error");
        return Float(std::sqrt(f));
      case kMathPow: {
        const double b = y.AsDouble();
        if (f == 0 && b < 0) return Status::Error("math domain error");
        if (f < 0 && b != std::floor(b)) return Status::Error("math domain error");
        return MathResult(std::pow(f, b), f);
      }
      case kFloor:
      case kCeil:
        if (x->is_int) return *x;
        return ToInt(n.op == kFloor ? std::floor(f) : std::ceil(f));
      default:
        return Status::Error("internal: bad function");
    }
  }
  Result<Value> a = eval(n.a);
  if (!a.ok()) return a;
  switch (n.op) {
    case kPos:
      return a;
    case kNeg:
      if (a->is_int && a->i != INT64_MIN) return Int(-a->i);
      return Float(-a->AsDouble());
    case kInvert:
      if (!a->is_int) return Status::Error("bad operand type for unary ~: 'float'");
      return Int(~a->i);
    case kNot:
      return Bool(!Truthy(*a));
    default:
      break;
  }
  Result<Value> b = eval(n.b);
  if (!b.ok()) return b;
  switch (n.op) {
    case kAdd:
    case kSub:
    case kMul:
    case kTrueDiv:
    case kFloorDiv:
    case kMod:
    case kPow:
      return Arith(n.op, *a, *b);
    case kShl:
    case kShr:
    case kBitAnd:
    case kBitOr:
    case kBitXor:
      return IntOnly(n.op, *a, *b);
    case kLt:
      return Bool(Less(*a, *b));
    case kLe:
      return Bool(!Less(*b, *a));
    case kGt:
      return Bool(Less(*b, *a));
    case kGe:
      return Bool(!Less(*a, *b));
    case kEq:
      return Bool(Equal(*a, *b));
    case kNe:
      return Bool(!Equal(*a, *b));
    default:
      return Status::Error("internal: bad operator");
  }
}

// ---- PythonRandom ------------------------------------------------------------

PythonRandom::PythonRandom(uint64_t seed) {
  // random.seed(int): init_genrand(19650218), then init_by_array over the
  // seed's 32-bit words, least significant first.
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const size_t key_length = (seed >> 32) != 0 ? 2 : 1;
  mt_[0] = 19650218u;
  for (size_t i = 1; i < mt_.size(); ++i) {
    mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  }
  size_t i = 1, j = 0;
  const size_t n = mt_.size();
  for (size_t k = std::max(n, key_length); k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] +
             static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= n) {
      mt_[0] = mt_[n - 1];
      i = 1;
    }
    if (j >= key_length) j = 0;
  }
  for (size_t k = n - 1; k > 0; --k) {
    mt_[i] =
        (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= n) {
      mt_[0] = mt_[n - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000u;
  index_ = static_cast<int>(n);
}

uint32_t PythonRandom::Next32() {
  constexpr int kN = 624, kM = 397;
  if (index_ >= kN) {
    for (int k = 0; k < kN; ++k) {
      const uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % kN] & 0x7fffffffu);
      mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    index_ = 0;
  }
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double PythonRandom::Next() {
  const uint32_t a = Next32() >> 5, b = Next32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

// ---- BanTimeIncrement --------------------------------------------------------

namespace {

Random& DefaultRandom() {
  static Random* random = new PythonRandom(std::random_device{}());
  return *random;
}

constexpr std::string_view kDefaultFormula =
    "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor";

}  // namespace

Result<BanTimeIncrement> BanTimeIncrement::Create(const BanTimeIncrementOptions& options,
                                                  Random* random) {
  BanTimeIncrement b;
  b.options_ = options;
  b.random_ = random;
  if (options.rndtime && random == nullptr) b.random_ = &DefaultRandom();

  Result<BanTimeFormula> factor = BanTimeFormula::Compile(
      options.factor.empty() ? "1" : options.factor, "bantime.factor", false);
  if (!factor.ok()) return factor.status();
  Result<Value> fv = factor->Evaluate({}, {}, {});
  if (!fv.ok()) return Status::Error("bantime.factor: " + fv.status().message());
  b.factor_ = *fv;

  // fail2ban splits at single spaces, so doubled spaces make an empty word
  // that int() rejects.
  if (!options.multipliers.empty()) {
    std::string_view rest = options.multipliers;
    for (;;) {
      const size_t sp = rest.find(' ');
      const std::string_view word = rest.substr(0, sp);
      bool overflow = false;
      std::optional<int64_t> m = PyInt(word, &overflow);
      if (!m || overflow) {
        return Status::Error("bantime.multipliers: invalid literal for int() with base 10: '" +
                             std::string(word) + "'");
      }
      b.multipliers_.push_back(*m);
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
    }
  } else {
    Result<BanTimeFormula> formula = BanTimeFormula::Compile(
        options.formula.empty() ? kDefaultFormula : std::string_view(options.formula),
        "bantime.formula", true);
    if (!formula.ok()) return formula.status();
    b.formula_ = std::move(*formula);
  }
  // A formula's types rarely depend on its values, so one trial run finds
  // most errors fail2ban would only log, ban after ban. No random draw: a
  // seeded sequence must start with the first real ban.
  // Value errors (a division by zero for some count) stay run-time errors,
  // as in fail2ban.
  Result<double> trial = b.CalcBase(600, 1);
  if (!trial.ok() && (trial.status().message().starts_with("unsupported operand") ||
                      trial.status().message().starts_with("bad operand"))) {
    return Status::Error(std::string(b.formula_ ? "bantime.formula: " : "bantime.multipliers: ") +
                         trial.status().message());
  }
  return b;
}

Result<double> BanTimeIncrement::Calc(double ban_time, int ban_count) const {
  Result<double> r = CalcBase(ban_time, ban_count);
  if (r.ok() && options_.rndtime) *r += random_->Next() * *options_.rndtime;
  return r;
}

Result<double> BanTimeIncrement::CalcBase(double ban_time, int ban_count) const {
  // The jail's bantime is a Python int in fail2ban (int(value)); keep it one
  // when integral so formula types match.
  const Value t = (ban_time == std::floor(ban_time) && std::fabs(ban_time) < 9e18)
                      ? Int(static_cast<int64_t>(ban_time))
                      : Float(ban_time);
  double result;
  if (!multipliers_.empty()) {
    int64_t idx = ban_count < static_cast<int>(multipliers_.size())
                      ? ban_count
                      : static_cast<int64_t>(multipliers_.size()) - 1;
    if (idx < 0) idx += static_cast<int64_t>(multipliers_.size());
    if (idx < 0) return Status::Error("list index out of range");
    Result<Value> r = Arith(kMul, t, factor_);
    if (r.ok()) r = Arith(kMul, *r, Int(multipliers_[static_cast<size_t>(idx)]));
    if (!r.ok()) return r.status();
    result = r->AsDouble();
  } else {
    Result<Value> r = formula_->Evaluate(t, Int(ban_count), factor_);
    if (!r.ok()) return r.status();
    // max(ban.Time, formula): the formula never shortens a ban.
    result = Less(t, *r) ? r->AsDouble() : t.AsDouble();
  }
  if (options_.maxtime) result = std::min(result, *options_.maxtime);
  return result;
}

double BanTimeIncrement::IncrementFor(double ban_time, Ticket* ticket, BanHistory& history,
                                      std::string_view jail, std::string* error) const {
  if (error != nullptr) error->clear();
  if (!(ban_time > 0) || !options_.increment) return ban_time;
  std::optional<BanRecord> rec = history.LastBan(ticket->id, jail, options_.overalljails);
  if (!rec) return ban_time;
  if (rec->ban_count >= ticket->ban_count) ticket->ban_count = rec->ban_count + 1;
  if (rec->ban_count > 0) {
    Result<double> r = Calc(ban_time, rec->ban_count);
    if (!r.ok()) {
      if (error != nullptr) *error = r.status().message();
      return ban_time;
    }
    ban_time = *r;
  }
  ticket->ban_time = ban_time;
  if (!(ticket->time > rec->time_of_ban)) ticket->restored = true;
  return ban_time;
}

int BanTimeIncrement::ObservedRetry(int ban_count, int maxretry) {
  // fail2ban computes this with "/" and gets 1.5 for a count of 0, which
  // then adds half a failure; a count of 0 never reaches here from its
  // database, so treat it as no extra weight.
  if (ban_count <= 0) return 1;
  const int retry = (1 << std::min(ban_count, 20)) / 2 + 1;
  return std::min(retry, maxretry);
}

}  // namespace bantam
