#include "bantam/py.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

namespace bantam {
namespace {

TEST(Py, IntFollowsPython) {
  EXPECT_EQ(PyInt("12"), 12);
  EXPECT_EQ(PyInt(" 07 "), 7);
  EXPECT_EQ(PyInt("1_0"), 10);
  EXPECT_EQ(PyInt("-3"), -3);
  EXPECT_EQ(PyInt("+3"), 3);
  EXPECT_EQ(PyInt("\u0661\u0662"), 12);       // Arabic-Indic digits
  EXPECT_EQ(PyInt("\u3000" "5\n\u0085"), 5);  // str.isspace() around,
  EXPECT_EQ(PyInt("\x1c" "5"), std::nullopt);  // but not U+001C..U+001F
  EXPECT_EQ(PyInt(""), std::nullopt);
  EXPECT_EQ(PyInt("1__0"), std::nullopt);
  EXPECT_EQ(PyInt("_1"), std::nullopt);
  EXPECT_EQ(PyInt("1_"), std::nullopt);
  EXPECT_EQ(PyInt("+_1"), std::nullopt);
  EXPECT_EQ(PyInt("- 1"), std::nullopt);
  EXPECT_EQ(PyInt("1a"), std::nullopt);
  EXPECT_EQ(PyInt("0x10"), std::nullopt);
  EXPECT_EQ(PyInt("1.0"), std::nullopt);
  // Leading zeros, the int64 range edge, and a mix of ASCII and other digits.
  EXPECT_EQ(PyInt("0"), 0);
  EXPECT_EQ(PyInt("000000000000000007"), 7);
  EXPECT_EQ(PyInt("999999999999999999"), 999999999999999999);
  EXPECT_EQ(PyInt("1234567890123456789"), 1234567890123456789);
  EXPECT_EQ(PyInt("12 "), 12);
  EXPECT_EQ(PyInt("1\xd9\xa2"), 12);  // then an Arabic-Indic two
}

TEST(Py, IntSaturatesOutsideInt64AndSaysSo) {
  bool overflow = true;
  EXPECT_EQ(PyInt("9223372036854775807", &overflow), INT64_MAX);
  EXPECT_FALSE(overflow);
  EXPECT_EQ(PyInt("-9223372036854775808", &overflow), INT64_MIN);
  EXPECT_FALSE(overflow);
  EXPECT_EQ(PyInt("9223372036854775808", &overflow), INT64_MAX);
  EXPECT_TRUE(overflow);
  EXPECT_EQ(PyInt("-99999999999999999999999", &overflow), INT64_MIN);
  EXPECT_TRUE(overflow);
  // Syntax is still checked past the limit.
  EXPECT_EQ(PyInt("99999999999999999999999x", &overflow), std::nullopt);
}

TEST(Py, DecimalValueOfAnyScript) {
  EXPECT_EQ(PyDecimalValue('7'), 7);
  EXPECT_EQ(PyDecimalValue(0x0669), 9);   // ARABIC-INDIC DIGIT NINE
  EXPECT_EQ(PyDecimalValue(0xFF10), 0);   // FULLWIDTH DIGIT ZERO
  EXPECT_EQ(PyDecimalValue(0x00B2), -1);  // SUPERSCRIPT TWO: a digit, not decimal
  EXPECT_EQ(PyDecimalValue('a'), -1);
}

TEST(Py, AsBoolTakesFail2bansWords) {
  for (const char* t : {"1", "on", "ON", "true", "True", "yes", "YeS"}) {
    EXPECT_TRUE(PyAsBool(t)) << t;
  }
  for (const char* f : {"", "0", "off", "false", "no", " yes", "y", "2"}) {
    EXPECT_FALSE(PyAsBool(f)) << f;
  }
}

TEST(Py, SpaceFlavoursDiffer) {
  EXPECT_TRUE(IsPySpace(0x1C));
  EXPECT_TRUE(IsPySpace(0x85));
  EXPECT_TRUE(IsPySpace(0x3000));
  EXPECT_FALSE(IsPySpace(0x180E));  // MONGOLIAN VOWEL SEPARATOR: not since Unicode 6.3
  EXPECT_FALSE(IsPySpace(0x200B));  // ZERO WIDTH SPACE
  EXPECT_TRUE(IsPyAsciiSpace('\x1f'));
  EXPECT_FALSE(IsPyBytesSpace('\x1f'));  // bytes.isspace() stops at \r
  for (char c : {' ', '\t', '\n', '\v', '\f', '\r'}) {
    EXPECT_TRUE(IsPyAsciiSpace(c));
    EXPECT_TRUE(IsPyBytesSpace(c));
  }
  EXPECT_FALSE(IsPyAsciiSpace('\xc2'));  // the lead byte of U+0085 is no space alone
}

TEST(Py, StripUnicodeOrAsciiOnly) {
  EXPECT_EQ(PyStrip("\u00a0 %Y-%m-%d\t\u3000"), "%Y-%m-%d");
  EXPECT_EQ(PyStrip(" \u2028 "), "");
  EXPECT_EQ(PyStripAscii("\u00a0 value\x1c"), "\u00a0 value");
  EXPECT_EQ(LowerAscii("MaxRetry \u00c9"), "maxretry \u00c9");
}

TEST(Py, ReprQuoteChoiceAndEscapes) {
  EXPECT_EQ(PyRepr("abc"), "'abc'");
  EXPECT_EQ(PyRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyRepr("both ' and \""), "'both \\' and \"'");
  EXPECT_EQ(PyRepr("a\\b\nc\x7f"), "'a\\\\b\\nc\\x7f'");
}

TEST(Py, FloatReprFollowsPython) {
  EXPECT_EQ(PyFloatRepr(1124013600), "1124013600.0");
  EXPECT_EQ(PyFloatRepr(1329153714.123), "1329153714.123");
  EXPECT_EQ(PyFloatRepr(0.1), "0.1");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(PyFloatRepr(-0.5), "-0.5");
  EXPECT_EQ(PyFloatRepr(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(PyFloatRepr(-1.0 / 0.0), "-inf");
}

// Value's own float printer wrote these positionally ("12345678901234568.0")
// before it shared this one.
TEST(Py, FloatReprOf17DigitValuesFrom1e16UsesAnExponent) {
  EXPECT_EQ(PyFloatRepr(12345678901234568.0), "1.2345678901234568e+16");
  EXPECT_EQ(PyFloatRepr(-31310306441254076.0), "-3.1310306441254076e+16");
  EXPECT_EQ(PyFloatRepr(1234567890123456.8), "1234567890123456.8");
}

}  // namespace
}  // namespace bantam
