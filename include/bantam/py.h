// Python's rules for the small things fail2ban leaves to Python: which
// characters are white space, what int() and fail2ban's boolean options
// accept, how repr() writes a str or a float. Each function names the
// Python expression it follows; where bantam needs two flavours of one rule
// (str or bytes, all of Unicode or its ASCII part), both are here under
// names that say which.
#ifndef BANTAM_PY_H_
#define BANTAM_PY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bantam {

// ---- White space and case

// str.isspace() of one code point: U+0009..U+000D, U+001C..U+0020, U+0085,
// U+00A0 and the Unicode separators (Zs, Zl, Zp).
bool IsPySpace(char32_t c);

// IsPySpace for one byte of UTF-8 text, so only its ASCII members (U+001C..
// U+001F included). The configuration reader strips just these: a no-break
// space around a value stays, where Python's str.strip() would remove it.
bool IsPyAsciiSpace(char c);

// bytes.isspace(): space, \t, \n, \v, \f and \r, which is what int() strips
// from a bytes value (U+001C..U+001F are not space to bytes).
bool IsPyBytesSpace(char c);

// str.strip() of UTF-8 text: IsPySpace code points off both ends. A view
// into `s`.
std::string_view PyStrip(std::string_view s);

// The same with IsPyAsciiSpace bytes only (see there).
std::string_view PyStripAscii(std::string_view s);

// str.lower() for ASCII letters only, as option names are lower-cased (see
// README); other bytes are kept.
std::string LowerAscii(std::string_view s);

// ---- Numbers and booleans

// unicodedata.decimal(c, -1): the value of a decimal digit of any script
// (Unicode Nd, as Python 3.11 knows them), or -1.
int PyDecimalValue(char32_t c);

// int(s) for a str s, base 10: white space around, an optional sign, and
// decimal digits of any script (Unicode Nd, as Python 3.11 knows them) with
// single underscores between them. The white space is IsPySpace beyond
// ASCII but IsPyBytesSpace within it: CPython's int() skips no U+001C..
// U+001F. nullopt where Python raises ValueError. Python's int has no
// bound: a value outside int64 saturates to INT64_MAX or INT64_MIN and sets
// *overflow (when given) for callers that must refuse it. Never allocates
// (the date parser calls it per line).
std::optional<int64_t> PyInt(std::string_view s, bool* overflow = nullptr);

// fail2ban's _as_bool: "1", "on", "true" and "yes" in any ASCII case are
// true, anything else is false.
bool PyAsBool(std::string_view s);

// ---- repr()

// repr() of a str: 'abc', "it's", with Python's escapes.
std::string PyRepr(std::string_view s);

// repr() of a float: the shortest text that reads back the same, positional
// for decimal exponents -4..15 ("1124013600.0", "0.1", "0.0001") and with an
// exponent otherwise ("1e+16", "1.5e-07"); "inf", "-inf", "nan".
std::string PyFloatRepr(double v);

}  // namespace bantam

#endif  // BANTAM_PY_H_
