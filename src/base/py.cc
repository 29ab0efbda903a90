#include "bantam/py.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "bantam/utf8.h"

namespace bantam {

namespace {

// Every Unicode decimal digit (category Nd) counts for int(). Each script's
// digits are ten consecutive code points; these are the zeros (Unicode 14,
// as in Python 3.11).
constexpr std::array<char32_t, 66> kDigitZeros = {
    0x30,    0x660,   0x6f0,   0x7c0,   0x966,   0x9e6,   0xa66,   0xae6,   0xb66,   0xbe6,
    0xc66,   0xce6,   0xd66,   0xde6,   0xe50,   0xed0,   0xf20,   0x1040,  0x1090,  0x17e0,
    0x1810,  0x1946,  0x19d0,  0x1a80,  0x1a90,  0x1b50,  0x1bb0,  0x1c40,  0x1c50,  0xa620,
    0xa8d0,  0xa900,  0xa9d0,  0xa9f0,  0xaa50,  0xabf0,  0xff10,  0x104a0, 0x10d30, 0x11066,
    0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0,
    0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2,
    0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
};

// The white space int() skips around a number: CPython maps str.isspace()
// code points beyond ASCII to ' ' and then skips only the C spaces, so
// U+001C..U+001F, which str.isspace() counts, are no space to int().
bool IsIntSpace(char32_t c) {
  return c < 0x80 ? IsPyBytesSpace(static_cast<char>(c)) : IsPySpace(c);
}

void AppendHex(std::string* out, unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", v);
  out->append(buf);
}

}  // namespace

int PyDecimalValue(char32_t cp) {
  if (cp >= '0' && cp <= '9') return static_cast<int>(cp - '0');
  if (cp < 0x660) return -1;
  auto it = std::upper_bound(kDigitZeros.begin(), kDigitZeros.end(), cp);
  const char32_t zero = *(it - 1);
  return cp - zero < 10 ? static_cast<int>(cp - zero) : -1;
}

bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsPyAsciiSpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

bool IsPyBytesSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string_view PyStrip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    size_t p = begin;
    if (!IsPySpace(NextCodePoint(s, &p))) break;
    begin = p;
  }
  size_t end = begin;
  for (size_t pos = begin; pos < s.size();) {
    if (!IsPySpace(NextCodePoint(s, &pos))) end = pos;
  }
  return s.substr(begin, end - begin);
}

std::string_view PyStripAscii(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsPyAsciiSpace(s[b])) ++b;
  while (e > b && IsPyAsciiSpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::optional<int64_t> PyInt(std::string_view s, bool* overflow) {
  size_t pos = 0;
  const size_t end = s.size();
  while (pos < end) {
    size_t p = pos;
    if (!IsIntSpace(NextCodePoint(s, &p))) break;
    pos = p;
  }
  bool negative = false;
  if (pos < end && (s[pos] == '+' || s[pos] == '-')) {
    negative = s[pos] == '-';
    ++pos;
  }
  // The magnitude; past int64 it stops growing and only the syntax is
  // still checked.
  uint64_t value = 0;
  bool any = false, last_underscore = false, saturated = false;
  while (pos < end) {
    size_t p = pos;
    const char32_t cp = NextCodePoint(s, &p);
    if (cp == '_') {
      if (!any || last_underscore) return std::nullopt;
      last_underscore = true;
      pos = p;
      continue;
    }
    const int d = PyDecimalValue(cp);
    if (d < 0) break;
    any = true;
    last_underscore = false;
    if (!saturated && (__builtin_mul_overflow(value, 10u, &value) ||
                       __builtin_add_overflow(value, static_cast<unsigned>(d), &value))) {
      saturated = true;
    }
    pos = p;
  }
  if (!any || last_underscore) return std::nullopt;
  while (pos < end) {
    size_t p = pos;
    if (!IsIntSpace(NextCodePoint(s, &p))) return std::nullopt;
    pos = p;
  }
  constexpr uint64_t kMaxMagnitude = uint64_t{INT64_MAX};
  if (!saturated && value <= kMaxMagnitude + (negative ? 1 : 0)) {
    if (overflow) *overflow = false;
    return negative ? static_cast<int64_t>(0 - value) : static_cast<int64_t>(value);
  }
  if (overflow) *overflow = true;
  return negative ? INT64_MIN : INT64_MAX;
}

bool PyAsBool(std::string_view s) {
  const std::string l = LowerAscii(s);
  return l == "1" || l == "on" || l == "true" || l == "yes";
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
      AppendHex(&out, c);
    } else if (c == 0xc2 && i + 1 < s.size() &&
               (static_cast<unsigned char>(s[i + 1]) <= 0xa0 ||
                static_cast<unsigned char>(s[i + 1]) == 0xad)) {
      // U+0080..U+00A0 and U+00AD are not printable for Python.
      AppendHex(&out, static_cast<unsigned char>(s[i + 1]) & 0xffu);
      ++i;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  (void)ec;
  std::string sci(buf, end);  // d.ddde[+-]XX
  const size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  const int exp = std::atoi(sci.c_str() + e + 1);
  const bool neg = !mant.empty() && mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits.push_back(c);
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    return out + eb;
  }
  if (exp < 0) {
    return out + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  }
  const size_t int_len = static_cast<size_t>(exp) + 1;
  if (digits.size() <= int_len) {
    return out + digits + std::string(int_len - digits.size(), '0') + ".0";
  }
  return out + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

}  // namespace bantam
