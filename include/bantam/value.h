// Value: one element of the configuration command stream.
//
// The resolved configuration is a list of commands such as
// ["set", "sshd", "maxretry", 5], exactly as fail2ban-client sends them to
// its server. A Value is null, bool, integer, float, string, a list of
// Values or a string-keyed mapping: what that stream and the control
// socket's answers (fail2ban's Transmitter replies) hold.
#ifndef BANTAM_VALUE_H_
#define BANTAM_VALUE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "bantam/status.h"

namespace bantam {

class Value {
 public:
  using List = std::vector<Value>;
  // A mapping, as in ["set", "thread", {"stacksize": 256}]; keeps order.
  using Dict = std::vector<std::pair<std::string, Value>>;

  Value() : v_(nullptr) {}
  Value(std::nullptr_t) : v_(nullptr) {}                // NOLINT
  Value(bool b) : v_(b) {}                              // NOLINT
  Value(int64_t i) : v_(i) {}                           // NOLINT
  Value(int i) : v_(static_cast<int64_t>(i)) {}         // NOLINT
  Value(double d) : v_(d) {}                            // NOLINT
  Value(std::string s) : v_(std::move(s)) {}            // NOLINT
  Value(std::string_view s) : v_(std::string(s)) {}     // NOLINT
  Value(const char* s) : v_(std::string(s)) {}          // NOLINT
  Value(List l) : v_(std::move(l)) {}                   // NOLINT
  Value(Dict d) : v_(std::move(d)) {}                   // NOLINT

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_double() const { return std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_list() const { return std::holds_alternative<List>(v_); }
  bool is_dict() const { return std::holds_alternative<Dict>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_double() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return std::get<List>(v_); }
  List& as_list() { return std::get<List>(v_); }
  const Dict& as_dict() const { return std::get<Dict>(v_); }
  Dict& as_dict() { return std::get<Dict>(v_); }

  // Compact JSON, strings as UTF-8 with JSON escapes.
  std::string ToJson() const;
  void AppendJson(std::string* out) const;
  // What Python's str() gives: "True", "5", "1.5", "None", the string
  // itself.
  std::string ToPyStr() const;

  // Parses one JSON text (RFC 8259; surrounding whitespace allowed). Numbers
  // without fraction or exponent that fit 64 bits become ints, others
  // doubles; \u escapes (with surrogate pairs) become UTF-8. Objects keep
  // their key order. Nesting deeper than `max_depth` is an error. Errors
  // name the byte offset: "JSON: offset 12: expected ':'".
  static Result<Value> ParseJson(std::string_view text, int max_depth = 64);

  bool operator==(const Value& o) const = default;

 private:
  std::variant<std::nullptr_t, bool, int64_t, double, std::string, List, Dict> v_;
};

// JSON string literal for `s` (with quotes).
std::string JsonQuote(std::string_view s);

}  // namespace bantam

#endif  // BANTAM_VALUE_H_
