#include "bantam/utf8.h"

#include <cstdint>
#include <cstring>

namespace bantam {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// For a lead byte: how many continuation bytes follow, and the range the
// first of them must lie in (the others are always 0x80..0xBF). The narrow
// ranges are what rule out overlong forms (E0, F0), surrogates (ED) and
// code points past U+10FFFF (F4). need == -1: not a lead byte.
struct Lead {
  int need;
  int lo, hi;  // unsigned byte values
};

Lead LeadOf(unsigned char c) {
  if (c < 0x80) return {0, 0, 0};
  if (c >= 0xC2 && c <= 0xDF) return {1, 0x80, 0xBF};
  if (c >= 0xE0 && c <= 0xEF) return {2, c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF};
  if (c >= 0xF0 && c <= 0xF4) return {3, c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF};
  return {-1, 0, 0};
}

// How many bytes of s[pos...] form the valid start of a sequence: the whole
// sequence when it is well-formed (and then *complete is set), else the
// maximal subpart (at least 1), which "replace" turns into one U+FFFD.
size_t ValidPrefix(std::string_view s, size_t pos, bool* complete) {
  const Lead lead = LeadOf(static_cast<unsigned char>(s[pos]));
  *complete = lead.need == 0;
  if (lead.need <= 0) return 1;
  int got = 0;
  for (size_t j = pos + 1; got < lead.need && j < s.size(); ++j, ++got) {
    const int d = static_cast<unsigned char>(s[j]);
    if (d < (got == 0 ? lead.lo : 0x80) || d > (got == 0 ? lead.hi : 0xBF)) break;
  }
  *complete = got == lead.need;
  return 1 + static_cast<size_t>(got);
}

}  // namespace

void AppendUtf8(std::string* out, char32_t c) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

size_t Utf8SequenceLength(std::string_view s, size_t pos) {
  bool complete;
  const size_t len = ValidPrefix(s, pos, &complete);
  return complete ? len : 0;
}

char32_t utf8_internal::NextMultiByte(std::string_view s, size_t* pos) {
  const size_t len = Utf8SequenceLength(s, *pos);
  const auto b0 = static_cast<unsigned char>(s[*pos]);
  if (len == 0) {
    ++*pos;
    return 0xFFFD;
  }
  char32_t cp = len == 1 ? b0 : b0 & (0x3F >> (len - 1));
  for (size_t i = 1; i < len; ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[*pos + i]) & 0x3F);
  }
  *pos += len;
  return cp;
}

size_t CountCodePoints(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size(); ++n) NextCodePoint(s, &pos);
  return n;
}

size_t FindInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

void AppendUtf8Replace(std::string_view raw, std::string* out) {
  size_t i = 0;
  while (i < raw.size()) {
    bool complete;
    const size_t len = ValidPrefix(raw, i, &complete);
    if (complete) {
      out->append(raw.substr(i, len));
    } else {
      out->append(kReplacement);
    }
    i += len;
  }
}

std::string_view DecodeUtf8Replace(std::string_view raw, std::string* scratch) {
  // Fast path: ASCII and well-formed sequences need no copy.
  size_t i = 0;
  const size_t n = raw.size();
  while (i < n) {
    // Eight ASCII bytes at a time: most log text is ASCII.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, raw.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(raw[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = Utf8SequenceLength(raw, i);
    if (len == 0) break;
    i += len;
  }
  if (i >= n) return raw;
  scratch->assign(raw.substr(0, i));
  AppendUtf8Replace(raw.substr(i), scratch);
  return *scratch;
}

}  // namespace bantam
