#include "bantam/value.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

TEST(Value, JsonOfEveryKind) {
  Value v = Value::List{"set", "sshd", "maxretry", 5, true, nullptr,
                        Value::List{"a\"b", "c\\d\n\t\x01"},
                        Value::Dict{{"stacksize", 256}}};
  EXPECT_EQ(v.ToJson(),
            R"(["set", "sshd", "maxretry", 5, true, null, ["a\"b", "c\\d\n\t\u0001"], )"
            R"({"stacksize": 256}])");
}

TEST(Value, Utf8PassesThroughJson) {
  EXPECT_EQ(Value("Grüße").ToJson(), "\"Grüße\"");
}

TEST(Value, PythonStrOfScalars) {
  EXPECT_EQ(Value(true).ToPyStr(), "True");
  EXPECT_EQ(Value(false).ToPyStr(), "False");
  EXPECT_EQ(Value(nullptr).ToPyStr(), "None");
  EXPECT_EQ(Value(-3).ToPyStr(), "-3");
  EXPECT_EQ(Value("x").ToPyStr(), "x");
}

TEST(PyRepr, QuoteChoiceAndEscapes) {
  EXPECT_EQ(PyRepr("abc"), "'abc'");
  EXPECT_EQ(PyRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyRepr("both ' and \""), "'both \\' and \"'");
  EXPECT_EQ(PyRepr("a\\b\nc\x7f"), "'a\\\\b\\nc\\x7f'");
}

}  // namespace
}  // namespace bantam
