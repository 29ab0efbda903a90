#include "bantam/tag_substitution.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

OrderedMap<std::string> Tags(std::initializer_list<std::pair<const char*, const char*>> kv) {
  OrderedMap<std::string> m;
  for (auto& [k, v] : kv) m.Set(k, v);
  return m;
}

TEST(SubstituteTags, RecursiveAndUnknownTagsKept) {
  auto r = SubstituteTags(Tags({{"ban", "<cmd> -s <ip> -j <blocktype>"},
                                {"cmd", "<iptables> -I f2b-<name>"},
                                {"iptables", "iptables -w"},
                                {"name", "sshd"},
                                {"blocktype", "REJECT"}}),
                          {}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r->Find("ban"), "iptables -w -I f2b-sshd -s <ip> -j REJECT");
  EXPECT_EQ(*r->Find("cmd"), "iptables -w -I f2b-sshd");
}

TEST(SubstituteTags, IgnoredTagsStay) {
  auto r = SubstituteTags(Tags({{"a", "<b> <matches>"}, {"b", "x"}, {"matches", "m"}}),
                          {"matches"}, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->Find("a"), "x <matches>");
}

TEST(SubstituteTags, FallbackSuppliesMissingTags) {
  auto r = SubstituteTags(Tags({{"a", "<x>-<y>"}}), {},
                          [](const std::string& t) -> Result<std::optional<std::string>> {
                            if (t == "x") return std::optional<std::string>("X");
                            return std::optional<std::string>();
                          });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->Find("a"), "X-<y>");
}

TEST(SubstituteTags, ConditionalVariantPreferred) {
  auto r = SubstituteTags(Tags({{"a", "<cmd>"}, {"cmd", "iptables"}, {"cmd?family=inet6", "ip6tables"}}),
                          {}, nullptr, "family=inet6");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->Find("a"), "ip6tables");
}

TEST(SubstituteTags, SelfReferenceIsAnError) {
  auto r = SubstituteTags(Tags({{"a", "x<a>"}}), {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "tag <a> in 'a' refers back to itself and cannot be resolved");
}

TEST(SubstituteTags, IndirectLoopIsAnError) {
  auto r = SubstituteTags(Tags({{"a", "<b>"}, {"b", "<a>"}}), {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "tag <a> in 'a' refers back to itself and cannot be resolved");
}

TEST(SubstituteTags, ExponentialGrowthIsCut) {
  OrderedMap<std::string> m;
  for (int i = 0; i < 30; ++i)
    m.Set("t" + std::to_string(i), "<t" + std::to_string(i + 1) + "><t" + std::to_string(i + 1) + ">");
  m.Set("t30", "xxxxxxxx");
  auto r = SubstituteTags(m, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("grows beyond"), std::string::npos);
}

}  // namespace
}  // namespace bantam
