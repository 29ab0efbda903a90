// UTF-8 encoding of one code point, shared by the parsers that turn escapes
// (\uXXXX in JSON, \N and \x in Python regexes) into text.
#ifndef BANTAM_UTF8_H_
#define BANTAM_UTF8_H_

#include <string>

namespace bantam {

// Appends the UTF-8 bytes of `code_point` (at most U+10FFFF; surrogates are
// encoded as they are, callers that must not produce them check first).
void AppendUtf8(std::string* out, char32_t code_point);

}  // namespace bantam

#endif  // BANTAM_UTF8_H_
