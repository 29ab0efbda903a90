#include "bantam/value.h"

#include <cstdio>

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

std::string PyRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == static_cast<unsigned char>(quote)) {
      out.push_back('\\');
      out.push_back(quote);
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c < 0x20 || c == 0x7f) {
      AppendHex(&out, "\\x", c, 2);
    } else if (c == 0xc2 && i + 1 < s.size() &&
               (static_cast<unsigned char>(s[i + 1]) <= 0xa0 ||
                static_cast<unsigned char>(s[i + 1]) == 0xad)) {
      // U+0080..U+00A0 and U+00AD are not printable for Python.
      AppendHex(&out, "\\x", static_cast<unsigned char>(s[i + 1]) & 0xffu, 2);
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(quote);
  return out;
}

void Value::AppendJson(std::string* out) const {
  if (is_null()) {
    out->append("null");
  } else if (is_bool()) {
    out->append(as_bool() ? "true" : "false");
  } else if (is_int()) {
    out->append(std::to_string(as_int()));
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

}  // namespace bantam
