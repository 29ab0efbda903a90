#include "bantam/fleet_entry.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

const char kKey[] = "0123456789abcdef-fleet-secret";

FleetEntry Sample() {
  FleetEntry e;
  e.op = FleetOp::kBan;
  e.node = "pbx2";
  e.jail = "asterisk";
  e.ip = "203.0.113.9";
  e.left = 3600;
  e.count = 2;
  e.time = 1733450000.25;
  return e;
}

std::string* Field(FleetFields& f, const std::string& name) {
  for (auto& [k, v] : f)
    if (k == name) return &v;
  return nullptr;
}

TEST(FleetEntryTest, HmacSha256MatchesRfc4231TestCase2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(FleetEntryTest, EncodeThenDecodeGivesTheEntryBack) {
  FleetFields f = EncodeFleetEntry(Sample(), kKey);
  ASSERT_EQ(f.back().first, "mac");
  Result<FleetEntry> e = DecodeFleetEntry(f, kKey);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->op, FleetOp::kBan);
  EXPECT_EQ(e->node, "pbx2");
  EXPECT_EQ(e->jail, "asterisk");
  EXPECT_EQ(e->ip, "203.0.113.9");
  EXPECT_EQ(e->left, 3600);
  EXPECT_EQ(e->count, 2);
  EXPECT_DOUBLE_EQ(e->time, 1733450000.25);
}

TEST(FleetEntryTest, UnbanAndPermanentBanAndIpv6RoundTrip) {
  FleetEntry s = Sample();
  s.op = FleetOp::kUnban;
  s.ip = "2001:db8::7";
  s.left = -1;
  Result<FleetEntry> e = DecodeFleetEntry(EncodeFleetEntry(s, kKey), kKey);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->op, FleetOp::kUnban);
  EXPECT_EQ(e->ip, "2001:db8::7");
  EXPECT_EQ(e->left, -1);
}

TEST(FleetEntryTest, FailureRoundTrips) {
  FleetEntry s = Sample();
  s.op = FleetOp::kFail;
  s.left = 600;  // the origin's findtime
  Result<FleetEntry> e = DecodeFleetEntry(EncodeFleetEntry(s, kKey), kKey);
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_EQ(e->op, FleetOp::kFail);
  EXPECT_EQ(e->left, 600);
}

TEST(FleetEntryTest, FieldOrderInTheStreamDoesNotMatter) {
  FleetFields f = EncodeFleetEntry(Sample(), kKey);
  std::reverse(f.begin(), f.end());
  EXPECT_TRUE(DecodeFleetEntry(f, kKey).ok());
}

TEST(FleetEntryTest, WrongKeyIsBadMac) {
  Result<FleetEntry> e = DecodeFleetEntry(EncodeFleetEntry(Sample(), kKey), "another-secret-of-16");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(), "bad mac");
}

TEST(FleetEntryTest, EveryChangedFieldBreaksTheMac) {
  for (const char* name : {"v", "op", "node", "jail", "ip", "left", "count", "time"}) {
    FleetFields f = EncodeFleetEntry(Sample(), kKey);
    std::string* v = Field(f, name);
    ASSERT_NE(v, nullptr) << name;
    *v = (std::string(name) == "ip") ? "203.0.113.10" : (std::string(name) == "op") ? "unban" : *v + "1";
    Result<FleetEntry> e = DecodeFleetEntry(f, kKey);
    ASSERT_FALSE(e.ok()) << name;
    EXPECT_EQ(e.status().message(), "bad mac") << name;
  }
}

TEST(FleetEntryTest, ValuesCannotBeShiftedBetweenFields) {
  // With plain concatenation "node=pb x2jail=..." and "node=pbx 2jail=..."
  // would sign alike; the length prefix keeps them apart.
  FleetEntry a = Sample();
  a.node = "pbx";
  a.jail = "2asterisk";
  FleetEntry b = Sample();
  b.node = "pbx2";
  b.jail = "asterisk";
  FleetFields fa = EncodeFleetEntry(a, kKey);
  FleetFields fb = EncodeFleetEntry(b, kKey);
  *Field(fa, "mac") = *Field(fb, "mac");
  EXPECT_FALSE(DecodeFleetEntry(fa, kKey).ok());
}

TEST(FleetEntryTest, NoMacIsUnsigned) {
  FleetFields f = EncodeFleetEntry(Sample(), kKey);
  f.pop_back();
  Result<FleetEntry> e = DecodeFleetEntry(f, kKey);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(), "unsigned: no mac");
}

TEST(FleetEntryTest, MissingDuplicateAndUnknownFieldsAreMalformed) {
  FleetFields f = EncodeFleetEntry(Sample(), kKey);
  f.erase(f.begin() + 4);  // ip
  EXPECT_EQ(DecodeFleetEntry(f, kKey).status().message(), "malformed: no field 'ip'");
  f = EncodeFleetEntry(Sample(), kKey);
  f.push_back({"jail", "sshd"});
  EXPECT_EQ(DecodeFleetEntry(f, kKey).status().message(), "malformed: field 'jail' twice");
  f = EncodeFleetEntry(Sample(), kKey);
  f.push_back({"extra", "1"});
  EXPECT_EQ(DecodeFleetEntry(f, kKey).status().message(), "malformed: unknown field");
  EXPECT_EQ(DecodeFleetEntry({{"x", "y"}}, kKey).status().message(), "malformed: unknown field");
  EXPECT_EQ(DecodeFleetEntry({}, kKey).status().message(), "malformed: no field 'v'");
}

TEST(FleetEntryTest, OversizedIsRefusedBeforeTheMac) {
  FleetFields f = EncodeFleetEntry(Sample(), kKey);
  *Field(f, "node") = std::string(kFleetMaxValue + 1, 'a');
  EXPECT_EQ(DecodeFleetEntry(f, kKey).status().message().rfind("oversized", 0), 0u);
  FleetFields many;
  for (size_t i = 0; i <= kFleetMaxFields; ++i) many.push_back({"f" + std::to_string(i), "x"});
  EXPECT_EQ(DecodeFleetEntry(many, kKey).status().message(), "oversized: 17 fields");
}

// A signed entry with a bad value is still refused: the secret's holders
// are trusted with bans, not with feeding the parser anything.
TEST(FleetEntryTest, SignedButInvalidValuesAreMalformed) {
  struct Case {
    const char* field;
    const char* value;
    const char* error;
  } cases[] = {
      {"ip", "example.com", "malformed: address"},
      {"ip", "1.2.3.4; rm -rf /", "malformed: address"},
      {"ip", "01.2.3.4", "malformed: address"},
      {"node", "pbx 2", "malformed: node name"},
      {"jail", "", "malformed: jail name"},
      {"left", "-5", "malformed: left"},
      {"left", "10x", "malformed: left"},
      {"count", "-1", "malformed: count"},
      {"time", "nan", "malformed: time"},
      {"op", "flush", "malformed: op"},
      {"v", "2", "malformed: version 2"},
  };
  for (const Case& c : cases) {
    FleetFields f = EncodeFleetEntry(Sample(), kKey);
    *Field(f, c.field) = c.value;
    // Re-sign what was changed, as a key holder could.
    f.pop_back();
    FleetFields resigned = f;
    std::string input = "bantam-fleet-v1;";
    for (const char* name : {"v", "op", "node", "jail", "ip", "left", "count", "time"}) {
      std::string v = *Field(f, name);
      input += std::string(name) + "=" + std::to_string(v.size()) + ":" + v + ";";
    }
    resigned.push_back({"mac", HmacSha256Hex(kKey, input)});
    Result<FleetEntry> e = DecodeFleetEntry(resigned, kKey);
    ASSERT_FALSE(e.ok()) << c.field << "=" << c.value;
    EXPECT_EQ(e.status().message(), c.error) << c.field << "=" << c.value;
  }
}

TEST(FleetEntryTest, ValidFleetName) {
  EXPECT_TRUE(ValidFleetName("pbx-2.example_net"));
  EXPECT_TRUE(ValidFleetName("asterisk"));
  EXPECT_FALSE(ValidFleetName(""));
  EXPECT_FALSE(ValidFleetName(std::string(65, 'a')));
  EXPECT_FALSE(ValidFleetName("a/b"));
  EXPECT_FALSE(ValidFleetName("a\nb"));
}

}  // namespace
}  // namespace bantam
