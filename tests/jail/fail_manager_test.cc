#include "bantam/fail_manager.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

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

std::set<std::string> Texts(const std::vector<IpAddr>& ids) {
  std::set<std::string> out;
  for (const IpAddr& id : ids) out.insert(id.ToString());
  return out;
}

TEST(FailManagerTest, ChangesAreNotTrackedUnlessAsked) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  fm.AddFailure(Ip("192.0.2.1"), 1, {});
  EXPECT_FALSE(fm.has_changes());
  EXPECT_TRUE(fm.TakeChanges().empty());
}

TEST(FailManagerTest, TakeChangesNamesEachChangedIdOnceWithItsCurrentEntry) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  fm.set_track_changes(true);
  fm.AddFailure(Ip("192.0.2.1"), 1, Lines({"a"}));
  fm.AddFailure(Ip("192.0.2.1"), 2, Lines({"b"}));
  fm.AddFailure(Ip("192.0.2.2"), 3, {});
  EXPECT_TRUE(fm.has_changes());
  FailManager::Changes c = fm.TakeChanges();
  EXPECT_EQ(Texts(c.upserts), (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
  EXPECT_TRUE(c.removed.empty());
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->retry, 2);
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->data.matches, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(fm.has_changes());
  EXPECT_TRUE(fm.TakeChanges().empty());
}

TEST(FailManagerTest, BannedExpiredEvictedAndDeletedIdsAreReportedRemoved) {
  FailManager fm({.maxretry = 2, .findtime = 600, .maxmatches = 5, .max_entries = 3});
  fm.set_track_changes(true);
  const IpAddr banned = Ip("192.0.2.1"), expired = Ip("192.0.2.2"), deleted = Ip("192.0.2.3");
  fm.AddFailure(expired, 0, {});
  fm.AddFailure(banned, 500, {});
  fm.AddFailure(deleted, 500, {});
  fm.TakeChanges();
  fm.AddFailure(banned, 501, {});
  ASSERT_TRUE(fm.ToBan(&banned).has_value());
  fm.DelFailure(deleted);
  fm.Cleanup(700);  // `expired` last failed at 0, findtime 600
  FailManager::Changes c = fm.TakeChanges();
  EXPECT_TRUE(c.upserts.empty());
  EXPECT_EQ(Texts(c.removed), (std::set<std::string>{"192.0.2.1", "192.0.2.2", "192.0.2.3"}));

  // Eviction at the cap removes the stalest id.
  fm.AddFailure(Ip("192.0.2.10"), 800, {});
  fm.AddFailure(Ip("192.0.2.11"), 801, {});
  fm.AddFailure(Ip("192.0.2.12"), 802, {});
  fm.TakeChanges();
  fm.AddFailure(Ip("192.0.2.13"), 803, {});
  c = fm.TakeChanges();
  EXPECT_EQ(Texts(c.upserts), (std::set<std::string>{"192.0.2.13"}));
  EXPECT_EQ(Texts(c.removed), (std::set<std::string>{"192.0.2.10"}));
}

TEST(FailManagerTest, RestoredEntryContinuesItsWindow) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  Ticket saved;
  saved.id = Ip("192.0.2.7");
  saved.time = 1100;
  saved.first_time = 1000;
  saved.retry = 2;
  saved.attempts = 2;
  saved.data.matches = {"one", "two"};
  fm.Restore(saved);
  EXPECT_EQ(fm.size(), 1u);
  EXPECT_EQ(fm.fail_total(), 0u);  // counted before the restart, not now
  EXPECT_FALSE(fm.has_changes());   // already saved
  // One failure short of maxretry before the restart: the next one bans.
  EXPECT_EQ(fm.AddFailure(saved.id, 1200, Lines({"three"})), 3);
  std::optional<Ticket> t = fm.ToBan(&saved.id);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->attempts, 3);
  EXPECT_EQ(t->first_time, 1000);
  EXPECT_EQ(t->data.matches, (std::vector<std::string>{"one", "two", "three"}));
}

TEST(FailManagerTest, ChangesSurviveSlotReuseAndReturn) {
  // Changes are kept per slot: a slot freed and taken by another id before
  // TakeChanges() must report both ids right, and an id that comes back is
  // an upsert only.
  FailManager fm({.maxretry = 2, .findtime = 600, .maxmatches = 5});
  fm.set_track_changes(true);
  const IpAddr a = Ip("192.0.2.1"), b = Ip("192.0.2.2"), c = Ip("192.0.2.3");
  fm.AddFailure(a, 1, {});
  fm.AddFailure(a, 2, {});
  ASSERT_TRUE(fm.ToBan(&a).has_value());  // a's slot is free
  fm.AddFailure(b, 3, {});                 // and b takes it
  fm.AddFailure(c, 4, {});
  fm.DelFailure(c);
  fm.AddFailure(c, 5, {});  // back again
  FailManager::Changes ch = fm.TakeChanges();
  EXPECT_EQ(Texts(ch.upserts), (std::set<std::string>{"192.0.2.2", "192.0.2.3"}));
  EXPECT_EQ(Texts(ch.removed), (std::set<std::string>{"192.0.2.1"}));
  EXPECT_EQ(ch.upserts.size(), 2u);
  EXPECT_FALSE(fm.has_changes());
  // A restored entry replacing a held one is a change; a new one is not.
  Ticket t;
  t.id = b;
  t.time = t.first_time = 6;
  fm.Restore(t);
  t.id = Ip("192.0.2.9");
  fm.Restore(t);
  ch = fm.TakeChanges();
  EXPECT_EQ(Texts(ch.upserts), (std::set<std::string>{"192.0.2.2"}));
  EXPECT_TRUE(ch.removed.empty());
  // Turning tracking off forgets what was pending.
  fm.AddFailure(a, 7, {});
  fm.set_track_changes(false);
  EXPECT_FALSE(fm.has_changes());
  fm.set_track_changes(true);
  EXPECT_TRUE(fm.TakeChanges().empty());
}

TEST(FailManagerTest, TakeFromKeepsPendingChanges) {
  FailManager old({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  old.set_track_changes(true);
  old.AddFailure(Ip("192.0.2.1"), 1, {});
  FailManager rebuilt({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  rebuilt.set_track_changes(true);
  rebuilt.TakeFrom(old);
  EXPECT_EQ(Texts(rebuilt.TakeChanges().upserts), (std::set<std::string>{"192.0.2.1"}));
  EXPECT_FALSE(old.has_changes());
}

TEST(FailManagerTest, KeepMatchesOffKeepsNoLines) {
  FailManager fm({.maxretry = 10, .findtime = 600, .maxmatches = 5});
  const IpAddr ip = Ip("192.0.2.1"), other = Ip("192.0.2.2");
  fm.AddFailure(other, 1, Lines({"x"}));
  fm.set_keep_matches(false);
  fm.AddFailure(ip, 1, Lines({"a"}));
  fm.AddFailure(ip, 2, Lines({"b"}));
  EXPECT_TRUE(fm.Find(ip)->data.matches.empty());
  EXPECT_EQ(fm.Find(other)->data.matches, (std::vector<std::string>{"x"}));
  fm.AddFailure(other, 2, Lines({"y"}));  // held lines go at the next failure
  EXPECT_TRUE(fm.Find(other)->data.matches.empty());
  EXPECT_EQ(fm.Find(ip)->attempts, 2);
}

TEST(FailManagerTest, FirstFailureLinesAreCappedBySecondFailureWithoutLines) {
  // As before the compact table: the cap applies at the second failure even
  // when it brings no line.
  FailManager fm({.maxretry = 10, .findtime = 600, .maxmatches = 2});
  const IpAddr ip = Ip("192.0.2.1");
  fm.AddFailure(ip, 1, Lines({"a", "b", "c"}));
  fm.AddFailure(ip, 2, {});
  EXPECT_EQ(fm.Find(ip)->data.matches, (std::vector<std::string>{"b", "c"}));
}

FailData Groups(std::initializer_list<std::pair<const char*, const char*>> groups) {
  FailData d;
  for (const auto& [k, v] : groups) {
    d.Set(k, v ? std::optional<std::string>(v) : std::nullopt);
  }
  return d;
}

TEST(FailManagerTest, FirstFailureGroupsComeBackWithTheTicket) {
  // <HOST>'s groups (None or the id's own text) are held as a shared shape,
  // anything else as it is; both come back in order, Nones included.
  FailManager fm({.maxretry = 2, .findtime = 600});
  const IpAddr v4 = Ip("192.0.2.1"), v6 = Ip("2001:db8::1"), user = Ip("192.0.2.2");
  fm.AddFailure(v4, 1, Groups({{"ip4", "192.0.2.1"}, {"ip6", nullptr}, {"dns", nullptr}}));
  fm.AddFailure(v6, 1, Groups({{"ip4", nullptr}, {"ip6", "2001:db8::1"}, {"dns", nullptr}}));
  fm.AddFailure(user, 1, Groups({{"ip4", "192.0.2.2"}, {"user", "root"}, {"dns", nullptr}}));
  for (const IpAddr* id : {&v4, &v6, &user}) {
    fm.AddFailure(*id, 2, Groups({{"ip4", "9.9.9.9"}}));  // later groups are not kept
  }
  std::optional<Ticket> t = fm.ToBan(&v4);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->data.groups(), Groups({{"ip4", "192.0.2.1"}, {"ip6", nullptr}, {"dns", nullptr}}).groups());
  t = fm.ToBan(&v6);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->data.groups(),
            Groups({{"ip4", nullptr}, {"ip6", "2001:db8::1"}, {"dns", nullptr}}).groups());
  t = fm.ToBan(&user);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->data.groups(), Groups({{"ip4", "192.0.2.2"}, {"user", "root"}, {"dns", nullptr}}).groups());
}

TEST(FailManagerTest, RawAndNetworkIdsAreHeldLikeAddresses) {
  FailManager fm({.maxretry = 2, .findtime = 600});
  const IpAddr raw = IpAddr::FromText("user@example", kCidrRaw);
  const IpAddr net = Ip("192.0.2.0/24"), addr = Ip("192.0.2.0");
  const IpAddr text = Ip("not an address");
  fm.AddFailure(raw, 1, {});
  fm.AddFailure(net, 1, {});
  fm.AddFailure(addr, 1, {});
  fm.AddFailure(text, 1, {});
  EXPECT_EQ(fm.size(), 4u);
  EXPECT_EQ(fm.AddFailure(net, 2, {}), 2);  // not the address with the same bits
  EXPECT_EQ(fm.Find(addr)->retry, 1);
  EXPECT_EQ(fm.AddFailure(raw, 2, {}), 2);
  std::optional<Ticket> t = fm.ToBan(&raw);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->id, raw);
  EXPECT_EQ(fm.ToBan(&net)->id, net);
  EXPECT_EQ(fm.Find(text)->id, text);
  EXPECT_EQ(fm.size(), 2u);
}

TEST(FailManagerTest, IndexStaysRightThroughChurn) {
  // The open-addressing index deletes by shifting probe runs back: check it
  // against a plain map through inserts, bans, cleanups and evictions.
  FailManager fm({.maxretry = 3, .findtime = 50, .maxmatches = 1, .max_entries = 700});
  uint32_t rng = 12345;
  auto next = [&rng] { return rng = rng * 1103515245u + 12345u; };
  char text[64];
  for (int step = 0; step < 20000; ++step) {
    const uint32_t r = next() >> 8;
    const int n = static_cast<int>(r % 1000);
    if (r % 3 == 0) {
      std::snprintf(text, sizeof text, "2001:db8::%x", n);
    } else {
      std::snprintf(text, sizeof text, "10.0.%d.%d", n >> 8, n & 255);
    }
    const IpAddr id = IpAddr::FromText(text);
    const int retry = fm.AddFailure(id, step, {});
    ASSERT_EQ(fm.Find(id)->retry, retry);
    if (retry >= 3) {
      ASSERT_TRUE(fm.ToBan(&id).has_value());
      ASSERT_EQ(fm.Find(id), nullptr);
    }
    if (step % 97 == 0) fm.Service(step, /*force=*/true);
    ASSERT_LE(fm.size(), 700u);
  }
  // Every held id is found, and only those: count by looking each one up.
  size_t found = 0;
  for (int n = 0; n < 1000; ++n) {
    std::snprintf(text, sizeof text, "2001:db8::%x", n);
    if (fm.Find(IpAddr::FromText(text)) != nullptr) ++found;
    std::snprintf(text, sizeof text, "10.0.%d.%d", n >> 8, n & 255);
    if (fm.Find(IpAddr::FromText(text)) != nullptr) ++found;
  }
  EXPECT_EQ(found, fm.size());
}

TEST(FailManagerTest, FindCopiesTheEntryAndLeavesItHeld) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  fm.AddFailure(Ip("192.0.2.1"), 1, Lines({"a"}));
  fm.AddFailure(Ip("192.0.2.2"), 2, {});
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->data.matches, (std::vector<std::string>{"a"}));
  EXPECT_EQ(fm.Find(Ip("192.0.2.2"))->time, 2);
  // The copy did not take the lines from the entry.
  EXPECT_EQ(fm.Find(Ip("192.0.2.1"))->data.matches, (std::vector<std::string>{"a"}));
}

TEST(FailManagerTest, RestoredTicketFieldsComeBack) {
  FailManager fm({.maxretry = 3, .findtime = 600, .maxmatches = 5});
  Ticket saved;
  saved.id = Ip("2001:db8::7");
  saved.time = 1100.25;
  saved.first_time = 1000.5;
  saved.retry = 2;
  saved.attempts = 5;
  saved.ban_count = 3;
  fm.Restore(saved);
  fm.AddFailure(saved.id, 1200, {});
  std::optional<Ticket> t = fm.ToBan(&saved.id);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->ban_count, 3);
  EXPECT_EQ(t->attempts, 6);
  EXPECT_EQ(t->first_time, 1000.5);
  EXPECT_EQ(t->time, 1200);
}

}  // namespace
}  // namespace bantam
