// UTF-8, in one place: encoding a code point, walking well-formed text, and
// Python's two ways with bytes that are not UTF-8: errors="strict" (refuse
// at the first bad byte) and errors="replace" (U+FFFD for each maximal
// invalid subpart).
//
// "Well-formed" is Unicode's definition (Table 3-7): no overlong forms, no
// surrogates, nothing past U+10FFFF; it is what Python's decoder accepts.
#ifndef BANTAM_UTF8_H_
#define BANTAM_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace bantam {

namespace utf8_internal {
char32_t NextMultiByte(std::string_view s, size_t* pos);  // NextCodePoint beyond ASCII
}  // namespace utf8_internal

// Appends the UTF-8 bytes of `code_point` (at most U+10FFFF; surrogates are
// encoded as they are, callers that must not produce them check first).
void AppendUtf8(std::string* out, char32_t code_point);

// Length (1 to 4) of the well-formed sequence that starts at s[pos], or 0
// when none does. Requires pos < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t pos);

// The code point at s[*pos]; advances *pos past it. Requires *pos < s.size().
// A byte that starts no well-formed sequence is U+FFFD and advances one
// byte. Meant for text that is UTF-8 already (decoded log lines, checked
// configuration files, regex captures); where it is not (a log line given
// on bantam-regex's command line), each stray byte counts as one character,
// as in the str Python makes of such an argument. ASCII is inline: date
// parsing walks every line with it.
inline char32_t NextCodePoint(std::string_view s, size_t* pos) {
  const auto b = static_cast<unsigned char>(s[*pos]);
  if (b < 0x80) {
    ++*pos;
    return b;
  }
  return utf8_internal::NextMultiByte(s, pos);
}

// How many code points NextCodePoint finds in `s`.
size_t CountCodePoints(std::string_view s);

// Byte offset of the first byte that starts no well-formed sequence (where
// Python's strict decode fails), or std::string_view::npos when `s` is
// UTF-8.
size_t FindInvalidUtf8(std::string_view s);

// Python's bytes.decode("utf-8", "replace"), appended to *out: each maximal
// invalid subpart (a lead byte and the continuation bytes still valid for
// it) becomes one U+FFFD, exactly where CPython puts them, so a filter sees
// as many replacement characters as fail2ban's would.
void AppendUtf8Replace(std::string_view raw, std::string* out);

// The same for a whole line, without a copy when it is UTF-8 already:
// returns `raw` itself when valid, else a view of *scratch (overwritten).
std::string_view DecodeUtf8Replace(std::string_view raw, std::string* scratch);

}  // namespace bantam

#endif  // BANTAM_UTF8_H_
