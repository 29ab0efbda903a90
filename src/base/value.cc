#include "bantam/value.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "bantam/py.h"
#include "bantam/utf8.h"

namespace bantam {

namespace {

void AppendHex(std::string* out, const char* prefix, unsigned v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s%0*x", prefix, width, v);
  out->append(buf);
}

}  // namespace

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          AppendHex(&out, "\\u", c, 4);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

void Value::AppendJson(std::string* out) const {
  if (is_null()) {
    out->append("null");
  } else if (is_bool()) {
    out->append(as_bool() ? "true" : "false");
  } else if (is_int()) {
    out->append(std::to_string(as_int()));
  } else if (is_double()) {
    // JSON has no inf/nan; Python's json writes them as below and reads
    // them back, and so does ParseJson.
    const double d = as_double();
    out->append(std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                                                       : PyFloatRepr(d));
  } else if (is_string()) {
    out->append(JsonQuote(as_string()));
  } else if (is_dict()) {
    out->push_back('{');
    const char* sep = "";
    for (const auto& [k, v] : as_dict()) {
      out->append(sep).append(JsonQuote(k)).append(": ");
      v.AppendJson(out);
      sep = ", ";
    }
    out->push_back('}');
  } else {
    out->push_back('[');
    const char* sep = "";
    for (const Value& v : as_list()) {
      out->append(sep);
      v.AppendJson(out);
      sep = ", ";
    }
    out->push_back(']');
  }
}

std::string Value::ToJson() const {
  std::string out;
  AppendJson(&out);
  return out;
}

std::string Value::ToPyStr() const {
  if (is_null()) return "None";
  if (is_bool()) return as_bool() ? "True" : "False";
  if (is_int()) return std::to_string(as_int());
  if (is_double()) return PyFloatRepr(as_double());
  if (is_string()) return as_string();
  auto repr = [](const Value& v) { return v.is_string() ? PyRepr(v.as_string()) : v.ToPyStr(); };
  if (is_dict()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : as_dict()) {
      if (!first) out.append(", ");
      first = false;
      out.append(PyRepr(k)).append(": ").append(repr(v));
    }
    return out + "}";
  }
  std::string out = "[";
  bool first = true;
  for (const Value& v : as_list()) {
    if (!first) out.append(", ");
    first = false;
    out.append(repr(v));
  }
  out.push_back(']');
  return out;
}

namespace {

class JsonParser {
 public:
  JsonParser(std::string_view s, int max_depth) : s_(s), max_depth_(max_depth) {}

  Result<Value> ParseDocument() {
    Value v;
    if (!ParseValue(&v, 0)) return Fail();
    SkipSpace();
    if (pos_ != s_.size()) {
      error_ = "unexpected data after the value";
      return Fail();
    }
    return v;
  }

 private:
  Status Fail() const {
    return Status::Error("JSON: offset " + std::to_string(pos_) + ": " + error_);
  }
  bool Error(const char* what) {
    if (error_.empty()) error_ = what;
    return false;
  }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool ParseValue(Value* out, int depth) {
    SkipSpace();
    if (pos_ >= s_.size()) return Error("unexpected end of input");
    const char c = s_[pos_];
    if (c == '{' || c == '[') {
      if (depth >= max_depth_) return Error("nested too deeply");
      return c == '{' ? ParseObject(out, depth + 1) : ParseArray(out, depth + 1);
    }
    if (c == '"') {
      std::string str;
      if (!ParseString(&str)) return false;
      *out = Value(std::move(str));
      return true;
    }
    if (Literal("true")) return *out = Value(true), true;
    if (Literal("false")) return *out = Value(false), true;
    if (Literal("null")) return *out = Value(nullptr), true;
    if (Literal("NaN")) return *out = Value(std::nan("")), true;
    if (Literal("Infinity")) return *out = Value(HUGE_VAL), true;
    if (Literal("-Infinity")) return *out = Value(-HUGE_VAL), true;
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
    return Error("expected a value");
  }

  bool ParseNumber(Value* out) {
    const size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > d;
    };
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return Error("expected digits");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (!digits()) return Error("expected digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return Error("expected exponent digits");
    }
    const std::string text(s_.substr(start, pos_ - start));
    if (integral) {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0) return *out = Value(static_cast<int64_t>(v)), true;
    }
    *out = Value(std::strtod(text.c_str(), nullptr));
    return true;
  }

  bool Hex4(unsigned* cp) {
    if (pos_ + 4 > s_.size()) return Error("short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else return Error("bad \\u escape");
    }
    *cp = v;
    return true;
  }


  bool ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Error("control character in string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      if (++pos_ >= s_.size()) return Error("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          unsigned cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00 && s_.substr(pos_, 2) == "\\u") {
            const size_t save = pos_;
            pos_ += 2;
            unsigned lo = 0;
            if (!Hex4(&lo)) return false;
            if (lo >= 0xdc00 && lo < 0xe000) {
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else {
              pos_ = save;
            }
          }
          // A lone surrogate cannot be UTF-8: U+FFFD, as a lenient decoder.
          if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
          AppendUtf8(out, cp);
          break;
        }
        default:
          --pos_;
          return Error("bad escape");
      }
    }
  }

  bool ParseArray(Value* out, int depth) {
    ++pos_;
    Value::List list;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      *out = Value(std::move(list));
      return true;
    }
    while (true) {
      Value v;
      if (!ParseValue(&v, depth)) return false;
      list.push_back(std::move(v));
      SkipSpace();
      if (pos_ >= s_.size()) return Error("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] != ']') return Error("expected ',' or ']'");
      ++pos_;
      *out = Value(std::move(list));
      return true;
    }
  }

  bool ParseObject(Value* out, int depth) {
    ++pos_;
    Value::Dict dict;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      *out = Value(std::move(dict));
      return true;
    }
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a string key");
      std::string key;
      if (!ParseString(&key)) return false;
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Error("expected ':'");
      ++pos_;
      Value v;
      if (!ParseValue(&v, depth)) return false;
      dict.emplace_back(std::move(key), std::move(v));
      SkipSpace();
      if (pos_ >= s_.size()) return Error("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] != '}') return Error("expected ',' or '}'");
      ++pos_;
      *out = Value(std::move(dict));
      return true;
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  int max_depth_;
  std::string error_;
};

}  // namespace

Result<Value> Value::ParseJson(std::string_view text, int max_depth) {
  return JsonParser(text, max_depth).ParseDocument();
}

}  // namespace bantam
