// Fail2ban time values ("600", "10m", "1h 30m", "1mo", "-1", "1d12h"): what
// they are worth in seconds, and how `fail2ban-client --str2sec` prints them.
//
// fail2ban (MyTime.str2seconds) does not parse these; it rewrites the text and
// hands it to Python's eval():
//   1. a space goes between a letter and a digit that follows it ("1d12h" ->
//      "1d 12h");
//   2. a unit word that stands after a digit or whitespace and ends at a word
//      boundary becomes "*<seconds>", case-insensitively ("10m" -> "10*60");
//   3. digit, whitespace, digit becomes digit "+" digit, left to right without
//      overlap ("1*3600 30*60" -> "1*3600+30*60"; note "1 2 3" -> "1+2 3",
//      which Python rejects, and so do we).
// We perform the same rewrite and then evaluate the arithmetic part of Python:
// int and float literals (with "_", "1e+3", "0xff"), unary + - ~, binary
// + - * / // % **, parentheses, comments, and Python's int/float rules
// (ints stay ints; "/" and month/year units make floats). Anything else that
// Python would accept (names, tuples, comparisons, bit operators, complex
// numbers, ints beyond 64 bits, more than 200 nested parentheses) is an
// error here.
//
// Unit words (any case), as fail2ban 1.0.2 defines them:
//   s  se sec second(s)  ss       1
//   m  mi min minute(s)  mm       60      ("m" is minutes, never months)
//   h  ho hou hour(s)    hh       3600
//   d  da day(s)         dd       86400
//   w  we wee week(s)    ww       604800
//   mo mon month(s)               2629800.0   (365.25 days / 12, a float)
//   y  ye yea year(s)    yy       31557600.0  (365.25 days, a float)
#ifndef BANTAM_DURATION_H_
#define BANTAM_DURATION_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "bantam/status.h"

namespace bantam {

// A time value as fail2ban computes it. Python keeps ints and floats apart and
// fail2ban prints them differently ("600" vs "2629800.0"), so this does too.
struct TimeValue {
  bool is_integer = true;
  int64_t integer = 0;  // The value when is_integer.
  double real = 0;      // The value otherwise; may be inf or nan, as in Python.

  double seconds() const { return is_integer ? static_cast<double>(integer) : real; }
};

// Evaluates a fail2ban time value. Error: "invalid time value 'TEXT'".
Result<TimeValue> ParseTimeValue(std::string_view text);

// Seconds for a fail2ban time value, e.g. "1h 30m" -> 5400, "-1" -> -1.
// Error: "invalid time value 'TEXT'".
Result<double> ParseDuration(std::string_view text);

// Exactly what `fail2ban-client --str2sec` prints for the value (without the
// newline): "600", "5400.0", "0.3333333333333333", "1e+16", "inf".
std::string FormatStr2Sec(const TimeValue& value);

// As above for a bare number. The int/float distinction is gone, so integral
// values with magnitude below 2^53 print as Python ints ("600") and everything
// else as a Python float; prefer the TimeValue overload, which matches fail2ban
// for "1mo" (2629800.0) and "1.5h" (5400.0) too.
std::string FormatStr2Sec(double seconds);

}  // namespace bantam

#endif  // BANTAM_DURATION_H_
