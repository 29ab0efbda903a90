#include "bantam/fail_manager.h"

#include <gtest/gtest.h>

#include <string>

namespace bantam {
namespace {

IpAddr Ip(const char* text) { return IpAddr::FromText(text); }

FailData Lines(std::initializer_list<const char*> lines) {
  FailData d;
  for (const char* l : lines) d.matches.emplace_back(l);
  return d;
}

TEST(FailManagerTest, MaxretryReachedExactly) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  const IpAddr ip = Ip("192.0.2.1");
  EXPECT_EQ(fm.AddFailure(ip, 1000, {}), 1);
  EXPECT_EQ(fm.AddFailure(ip, 1010, {}), 2);
  EXPECT_FALSE(fm.ToBan(&ip).has_value());
  EXPECT_EQ(fm.AddFailure(ip, 1020, {}), 3);
  std::optional<Ticket> t = fm.ToBan(&ip);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->id, ip);
  EXPECT_EQ(t->retry, 3);
  EXPECT_EQ(t->attempts, 3);
  EXPECT_EQ(t->time, 1020);
  EXPECT_EQ(fm.size(), 0u);
  EXPECT_EQ(fm.fail_total(), 3u);
}

TEST(FailManagerTest, TimeComesFromTheFailureNotTheClock) {
  // Failures with old log times still count against each other: only their
  // spread matters, and an older time never moves the ticket's time back.
  FailManager fm({.maxretry = 3, .findtime = 600});
  const IpAddr ip = Ip("192.0.2.1");
  fm.AddFailure(ip, 5000, {});
  fm.AddFailure(ip, 100, {});  // an old line read late
  EXPECT_EQ(fm.Find(ip)->time, 5000);
  EXPECT_EQ(fm.AddFailure(ip, 4999, {}), 3);
}

TEST(FailManagerTest, WindowScalesCountToRateOverFindtime) {
  // fail2ban's adjustTime: a failure that stretches the interval past
  // findtime rescales retry to round(retry / span * findtime).
  FailManager fm({.maxretry = 5, .findtime = 600});
  const IpAddr ip = Ip("2001:db8::1");
  fm.AddFailure(ip, 0, {});
  fm.AddFailure(ip, 100, {});
  fm.AddFailure(ip, 200, {});  // retry 3 over [0, 200]
  // At 1200 the span is 1200 > 600: 3 / 1200 * 600 = 1.5 -> 2 (half to
  // even), +1 for this failure.
  EXPECT_EQ(fm.AddFailure(ip, 1200, {}), 3);
  EXPECT_EQ(fm.Find(ip)->first_time, 600);
  EXPECT_EQ(fm.Find(ip)->attempts, 4);
  // A failure far later: 3 / (10000 - 600) * 600 = 0.19 -> 0, +1.
  EXPECT_EQ(fm.AddFailure(ip, 10000, {}), 1);
}

TEST(FailManagerTest, HalfRoundsToEven) {
  FailManager fm({.maxretry = 9, .findtime = 100});
  const IpAddr ip = Ip("192.0.2.9");
  fm.AddFailure(ip, 0, {}, 5);  // retry 5 at 0
  // 5 / 200 * 100 = 2.5 -> 2 (Python round), then +1.
  EXPECT_EQ(fm.AddFailure(ip, 200, {}), 3);
}

TEST(FailManagerTest, CleanupForgetsIdsQuietForFindtime) {
  FailManager fm({.maxretry = 3, .findtime = 600});
  fm.AddFailure(Ip("192.0.2.1"), 1000, {});
  fm.AddFailure(Ip("192.0.2.2"), 1500, {});
  fm.Cleanup(1599);  // cutoff 999
  EXPECT_EQ(fm.size(), 2u);
  fm.Cleanup(1600);  // cutoff 1000: last failure at or before it goes
  EXPECT_EQ(fm.size(), 1u);
  EXPECT_EQ(fm.Find(Ip("192.0.2.1")), nullptr);
  EXPECT_NE(fm.Find(Ip("192.0.2.2")), nullptr);
  // Old failures outside findtime do not add up across a cleanup.
  fm.AddFailure(Ip("192.0.2.1"), 1700, {});
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->retry, 1);
  EXPECT_EQ(fm.fail_total(), 3u);
}

TEST(FailManagerTest, ServiceRunsAtMostEveryFiveSeconds) {
  FailManager fm({.maxretry = 3, .findtime = 10});
  fm.AddFailure(Ip("192.0.2.1"), 0, {});
  EXPECT_TRUE(fm.Service(5));
  EXPECT_EQ(fm.size(), 1u);
  EXPECT_FALSE(fm.Service(9.5));  // too soon after the last run
  EXPECT_EQ(fm.size(), 1u);
  EXPECT_TRUE(fm.Service(10.5, /*force=*/true));
  EXPECT_EQ(fm.size(), 0u);
}

TEST(FailManagerTest, MaxmatchesKeepsTheLastLines) {
  FailManager fm({.maxretry = 10, .findtime = 600, .maxmatches = 2});
  const IpAddr ip = Ip("192.0.2.1");
  fm.AddFailure(ip, 1, Lines({"a", "b", "c"}));  // first failure kept whole
  EXPECT_EQ(fm.Find(ip)->data.matches.size(), 3u);
  fm.AddFailure(ip, 2, Lines({"d"}));
  EXPECT_EQ(fm.Find(ip)->data.matches, (std::vector<std::string>{"c", "d"}));
  fm.AddFailure(ip, 3, Lines({"e"}));
  EXPECT_EQ(fm.Find(ip)->data.matches, (std::vector<std::string>{"d", "e"}));
}

TEST(FailManagerTest, MaxmatchesZeroDropsLines) {
  FailManager fm({.maxretry = 10, .findtime = 600, .maxmatches = 0});
  const IpAddr ip = Ip("192.0.2.1");
  fm.AddFailure(ip, 1, Lines({"a"}));
  fm.AddFailure(ip, 2, Lines({"b"}));
  EXPECT_TRUE(fm.Find(ip)->data.matches.empty());
}

TEST(FailManagerTest, ObservedFailureOfUnknownIdIsDropped) {
  FailManager fm;
  EXPECT_EQ(fm.AddFailure(Ip("192.0.2.1"), 1, {}, 2, /*observed=*/true), 2);
  EXPECT_EQ(fm.size(), 0u);
  EXPECT_EQ(fm.fail_total(), 0u);
  fm.AddFailure(Ip("192.0.2.1"), 1, {});
  EXPECT_EQ(fm.AddFailure(Ip("192.0.2.1"), 2, {}, 2, /*observed=*/true), 3);
}

TEST(FailManagerTest, ToBanWithoutIdTakesAnyEligible) {
  FailManager fm({.maxretry = 2, .findtime = 600});
  fm.AddFailure(Ip("192.0.2.1"), 1, {});
  fm.AddFailure(Ip("192.0.2.2"), 1, {}, 2);
  fm.AddFailure(Ip("192.0.2.3"), 1, {}, 2);
  const IpAddr absent = Ip("192.0.2.99");
  std::optional<Ticket> t = fm.ToBan(&absent);  // fail2ban falls back to any
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->id, Ip("192.0.2.2"));
  EXPECT_EQ(fm.ToBan()->id, Ip("192.0.2.3"));
  EXPECT_FALSE(fm.ToBan().has_value());
}

TEST(FailManagerTest, EvictionCapBoundsAFloodOfUniqueSources) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 1, .max_entries = 1000});
  const IpAddr slow = Ip("2001:db8:ffff::1");
  fm.AddFailure(slow, 0, {});
  char text[64];
  for (int i = 0; i < 100000; ++i) {
    std::snprintf(text, sizeof text, "2001:db8::%x:%x", i >> 16, i & 0xffff);
    fm.AddFailure(IpAddr::FromText(text), 1 + i * 0.001, Lines({"line"}));
    ASSERT_LE(fm.size(), 1000u);
  }
  EXPECT_EQ(fm.size(), 1000u);
  EXPECT_EQ(fm.evicted_total(), 100001u - 1000u);
  EXPECT_EQ(fm.Find(slow), nullptr);  // the stalest went first
  EXPECT_EQ(fm.fail_total(), 100001u);
}

TEST(FailManagerTest, EvictionSparesRecentlyFailingIds) {
  FailManager fm({.maxretry = 5, .findtime = 600, .maxmatches = 5, .max_entries = 3});
  fm.AddFailure(Ip("192.0.2.1"), 1, {});
  fm.AddFailure(Ip("192.0.2.2"), 2, {});
  fm.AddFailure(Ip("192.0.2.3"), 3, {});
  fm.AddFailure(Ip("192.0.2.1"), 4, {});  // .1 fails again: now .2 is stalest
  fm.AddFailure(Ip("192.0.2.4"), 5, {});
  EXPECT_EQ(fm.Find(Ip("192.0.2.2")), nullptr);
  EXPECT_NE(fm.Find(Ip("192.0.2.1")), nullptr);
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->retry, 2);
  EXPECT_EQ(fm.evicted_total(), 1u);
  fm.set_max_entries(1);
  EXPECT_EQ(fm.size(), 1u);
  EXPECT_NE(fm.Find(Ip("192.0.2.4")), nullptr);
}

}  // namespace
}  // namespace bantam
