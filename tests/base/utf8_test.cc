#include "bantam/utf8.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace bantam {
namespace {

TEST(Utf8, AppendUtf8EncodesEveryLength) {
  std::string s;
  for (char32_t c : {U'a', U'\u00e9', U'\u20ac', U'\U0001F600'}) AppendUtf8(&s, c);
  EXPECT_EQ(s, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(Utf8, DecodeUtf8ReplaceFollowsPython) {
  std::string scratch;
  EXPECT_EQ(DecodeUtf8Replace("plain ascii", &scratch), "plain ascii");
  EXPECT_EQ(DecodeUtf8Replace("caf\xc3\xa9", &scratch), "caf\xc3\xa9");
  // One U+FFFD per maximal invalid subpart, as bytes.decode("utf-8", "replace").
  EXPECT_EQ(DecodeUtf8Replace("a\xff" "b", &scratch), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(DecodeUtf8Replace("\xe2\x82" "x", &scratch), "\xef\xbf\xbd" "x");
  EXPECT_EQ(DecodeUtf8Replace("\xed\xa0\x80", &scratch), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(DecodeUtf8Replace("\xf0\x9f\x98", &scratch), "\xef\xbf\xbd");
  EXPECT_EQ(DecodeUtf8Replace(std::string_view("\0\xc0\x80", 3), &scratch),
            std::string_view("\0\xef\xbf\xbd\xef\xbf\xbd", 7));
}

TEST(Utf8, ValidTextIsReturnedWithoutACopy) {
  std::string scratch = "untouched";
  const std::string line = "Jan  1 00:00:00 h sshd[1]: Failed for r\xc3\xa9my from 192.0.2.1";
  EXPECT_EQ(DecodeUtf8Replace(line, &scratch).data(), line.data());
  EXPECT_EQ(scratch, "untouched");
}

TEST(Utf8, AppendUtf8ReplaceAppends) {
  std::string out = "host ";
  AppendUtf8Replace("a\xf4\x90\x80\x80z", &out);  // past U+10FFFF: each byte alone
  EXPECT_EQ(out, "host a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
}

TEST(Utf8, FindInvalidUtf8NamesTheFirstBadSequence) {
  EXPECT_EQ(FindInvalidUtf8("caf\xc3\xa9"), std::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("ab\xc3"), 2u);             // truncated
  EXPECT_EQ(FindInvalidUtf8("ab\xc0\xaf"), 2u);         // overlong
  EXPECT_EQ(FindInvalidUtf8("\xed\xa0\x80"), 0u);       // surrogate
  EXPECT_EQ(FindInvalidUtf8("x\xf4\x90\x80\x80"), 1u);  // past U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("\x80"), 0u);               // stray continuation
}

TEST(Utf8, NextCodePointCountsAStrayByteAsOneCharacter) {
  const std::string_view s = "\xc3\xa9\xc0\xaf" "a";
  size_t pos = 0;
  std::vector<char32_t> cps;
  while (pos < s.size()) cps.push_back(NextCodePoint(s, &pos));
  EXPECT_EQ(cps, (std::vector<char32_t>{0xE9, 0xFFFD, 0xFFFD, 'a'}));
  EXPECT_EQ(CountCodePoints(s), 4u);
  EXPECT_EQ(Utf8SequenceLength(s, 0), 2u);
  EXPECT_EQ(Utf8SequenceLength(s, 2), 0u);
}

}  // namespace
}  // namespace bantam
