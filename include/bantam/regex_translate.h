// Python re -> PCRE2: a parser with the structure, checks and error
// messages of Python 3.11's re._parser that emits PCRE2 syntax instead of
// sre opcodes. Python semantics PCRE2 spells differently are rewritten (\Z,
// \s, \v, \uXXXX, {,n}, case folding of i/I/U+0130/U+0131, the (?a) flag,
// ...); what cannot be reproduced exactly is an error, never a silent
// difference. The result must be compiled as FailRegex does (UTF, UCP,
// MATCH_INVALID_UTF, ALT_CIRCUMFLEX, newline LF).
//
// Differences from Python, on purpose: non-ASCII group names, the (?t) flag
// and conditional group numbers other than plain ASCII digits are refused.
// fail2ban's tags are not known here (failregex_tags.h expands them
// first). Pure; any thread.
#ifndef BANTAM_REGEX_TRANSLATE_H_
#define BANTAM_REGEX_TRANSLATE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace bantam {

struct PyRegexTranslation {
  std::string pattern;  // PCRE2 syntax
  int capture_count = 0;
  // Group names (UTF-8) by capture number; index 0 unused, "" for unnamed.
  std::vector<std::string> group_names;
  // Strings one of which every match contains (empty: none known).
  std::vector<std::string> need;
};

struct PyRegexError {
  std::string message;             // Python's ("missing ), unterminated subpattern")
  std::optional<size_t> position;  // code point index into the pattern, when Python gives one
};

// Translates the Python regex `pattern` (code points). `multiline`: compile
// as with re.MULTILINE. False with *error set when Python would raise.
bool TranslatePyRegex(const std::vector<char32_t>& pattern, bool multiline, PyRegexTranslation* out,
                      PyRegexError* error);

}  // namespace bantam

#endif  // BANTAM_REGEX_TRANSLATE_H_
