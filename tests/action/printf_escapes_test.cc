#include "bantam/printf_escapes.h"

#include <gtest/gtest.h>

#include <string>

namespace bantam {
namespace {

std::string Format(const std::string& s) {
  std::string out;
  EXPECT_TRUE(PrintfUnescape(s, false, &out));
  return out;
}

TEST(PrintfEscapesTest, CommonEscapes) {
  EXPECT_EQ(Format("a\\nb\\tc\\\\d\\re"), "a\nb\tc\\d\re");
  EXPECT_EQ(Format("\\a\\b\\f\\v"), "\a\b\f\v");
  EXPECT_EQ(Format("\\q stays"), "\\q stays");
  EXPECT_EQ(Format("trailing\\"), "trailing\\");
}

TEST(PrintfEscapesTest, OctalInFormatAndInBArgument) {
  EXPECT_EQ(Format("\\101\\0102"), std::string("A\0102", 3));
  std::string out;
  EXPECT_TRUE(PrintfUnescape("\\0101\\101", true, &out));
  EXPECT_EQ(out, "AA");  // %b: \0NNN, and \NNN too
  out.clear();
  EXPECT_TRUE(PrintfUnescape("\\0", true, &out));
  EXPECT_EQ(out, std::string(1, '\0'));
}

TEST(PrintfEscapesTest, BackslashCEndsOnlyABArgument) {
  EXPECT_EQ(Format("a\\cb"), "a\\cb");
  std::string out;
  EXPECT_FALSE(PrintfUnescape("a\\cb", true, &out));
  EXPECT_EQ(out, "a");
}

}  // namespace
}  // namespace bantam
