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

TEST(Value, ParseJsonRoundTripsEveryKind) {
  const std::string text =
      R"([null, true, false, 0, -17, 9223372036854775807, 1.5, -2.5e-07, "a\"b\\c\n\u00e9\ud83d\ude00", )"
      R"({"k": [1, {"x": null}], "a": "b"}, [], {}])";
  Result<Value> v = Value::ParseJson(text);
  ASSERT_TRUE(v.ok()) << v.status().message();
  const Value::List& l = v->as_list();
  ASSERT_EQ(l.size(), 12u);
  EXPECT_TRUE(l[0].is_null());
  EXPECT_EQ(l[1], Value(true));
  EXPECT_EQ(l[4], Value(-17));
  EXPECT_EQ(l[5].as_int(), INT64_MAX);
  EXPECT_EQ(l[6].as_double(), 1.5);
  EXPECT_EQ(l[7].as_double(), -2.5e-07);
  EXPECT_EQ(l[8].as_string(), "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(l[9].as_dict()[0].first, "k");  // key order kept
  EXPECT_EQ(l[9].as_dict()[1].first, "a");
  // What ToJson writes, ParseJson reads back equal.
  Result<Value> again = Value::ParseJson(v->ToJson());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *v);
}

TEST(Value, ParseJsonBigIntegerBecomesDouble) {
  Result<Value> v = Value::ParseJson("18446744073709551616");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->is_double());
}

TEST(Value, ParseJsonErrorsNameTheOffset) {
  EXPECT_EQ(Value::ParseJson("[1, 2").status().message(), "JSON: offset 5: unterminated array");
  EXPECT_EQ(Value::ParseJson("{\"a\" 1}").status().message(), "JSON: offset 5: expected ':'");
  EXPECT_EQ(Value::ParseJson("[1] x").status().message(),
            "JSON: offset 4: unexpected data after the value");
  EXPECT_EQ(Value::ParseJson("\"a\x01\"").status().message(),
            "JSON: offset 2: control character in string");
  EXPECT_EQ(Value::ParseJson("01").status().message(),
            "JSON: offset 1: unexpected data after the value");
  EXPECT_FALSE(Value::ParseJson("").ok());
  EXPECT_FALSE(Value::ParseJson("\"\\x\"").ok());
}

TEST(Value, ParseJsonLimitsDepth) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_EQ(Value::ParseJson(deep).status().message(), "JSON: offset 64: nested too deeply");
  EXPECT_TRUE(Value::ParseJson(deep, 200).ok());
}

TEST(Value, FloatsPrintAsPython) {
  EXPECT_EQ(Value(1.0).ToPyStr(), "1.0");
  EXPECT_EQ(Value(0.1).ToPyStr(), "0.1");
  EXPECT_EQ(Value(600.5).ToPyStr(), "600.5");
  EXPECT_EQ(Value(1e16).ToPyStr(), "1e+16");
  EXPECT_EQ(Value(1e15).ToPyStr(), "1000000000000000.0");
  EXPECT_EQ(Value(0.0001).ToPyStr(), "0.0001");
  EXPECT_EQ(Value(0.00001).ToPyStr(), "1e-05");
  EXPECT_EQ(Value(-2.5e-07).ToPyStr(), "-2.5e-07");
  EXPECT_EQ(Value(1.0 / 3).ToPyStr(), "0.3333333333333333");
  EXPECT_EQ(Value(2.0).ToPyStr(), "2.0");
  EXPECT_EQ(Value(Value::List{1.5}).ToJson(), "[1.5]");
}

}  // namespace
}  // namespace bantam
