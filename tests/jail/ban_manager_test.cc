#include "bantam/ban_manager.h"

#include <gtest/gtest.h>

namespace bantam {
namespace {

IpAddr Ip(const char* text) { return IpAddr::FromText(text); }

Ticket At(const char* ip, double time, std::optional<double> ban_time = std::nullopt) {
  Ticket t;
  t.id = Ip(ip);
  t.time = time;
  t.ban_time = ban_time;
  return t;
}

TEST(BanManagerTest, AddAndExpireInEndOrder) {
  FakeClock clock(1000);
  BanManager bm(clock, 600);
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 1000)), AddBanOutcome::kAdded);       // ends 1600
  EXPECT_EQ(bm.AddBan(At("192.0.2.2", 1000, 100)), AddBanOutcome::kAdded);  // ends 1100
  EXPECT_EQ(bm.AddBan(At("192.0.2.3", 990, 300)), AddBanOutcome::kAdded);   // ends 1290
  EXPECT_EQ(bm.size(), 3u);
  EXPECT_EQ(bm.ban_total(), 3u);
  EXPECT_EQ(bm.Find(Ip("192.0.2.1"))->ban_count, 1);
  EXPECT_EQ(bm.NextUnbanTime(), 1100);
  EXPECT_TRUE(bm.TakeDue(1100).empty());  // strictly past the end
  std::vector<Ticket> due = bm.TakeDue(1600);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].id, Ip("192.0.2.2"));
  EXPECT_EQ(due[1].id, Ip("192.0.2.3"));
  EXPECT_EQ(bm.NextUnbanTime(), 1600);
  EXPECT_EQ(bm.TakeDue(1601).size(), 1u);
  EXPECT_EQ(bm.size(), 0u);
  EXPECT_EQ(bm.NextUnbanTime(), kMaxBanEnd);
}

TEST(BanManagerTest, TakeDueHonoursMaxCount) {
  FakeClock clock(0);
  BanManager bm(clock, 10);
  for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) (void)bm.AddBan(At(ip, 0));
  EXPECT_EQ(bm.TakeDue(100, 2).size(), 2u);
  EXPECT_EQ(bm.TakeDue(100, 2).size(), 1u);
}

TEST(BanManagerTest, PermanentBanNeverExpires) {
  FakeClock clock(1000);
  BanManager bm(clock, -1);
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 0)), AddBanOutcome::kAdded);  // old, but permanent
  EXPECT_EQ(bm.AddBan(At("192.0.2.2", 1000, 5)), AddBanOutcome::kAdded);
  EXPECT_EQ(bm.NextUnbanTime(), 1005);
  EXPECT_EQ(bm.TakeDue(1e15).size(), 1u);
  EXPECT_TRUE(bm.IsBanned(Ip("192.0.2.1")));
  EXPECT_EQ(bm.NextUnbanTime(), kMaxBanEnd);
}

TEST(BanManagerTest, ExpiredTicketIsNotBanned) {
  FakeClock clock(10000);
  BanManager bm(clock, 600);
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 9000)), AddBanOutcome::kExpired);  // ended 9600
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 9400)), AddBanOutcome::kAdded);    // ends 10000: not < now
  EXPECT_EQ(bm.size(), 1u);
}

TEST(BanManagerTest, LaterTicketProlongsExistingBan) {
  FakeClock clock(1000);
  BanManager bm(clock, 600);
  ASSERT_EQ(bm.AddBan(At("192.0.2.1", 1000)), AddBanOutcome::kAdded);
  const Ticket* existing = nullptr;
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 900), &existing), AddBanOutcome::kAlreadyBanned);
  EXPECT_EQ(existing, bm.Find(Ip("192.0.2.1")));
  // A second ticket, 200 s later with a longer own bantime: the ban keeps
  // its start and grows to end where the new one would.
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 1200, 1000)), AddBanOutcome::kProlonged);
  const Ticket* t = bm.Find(Ip("192.0.2.1"));
  EXPECT_EQ(t->time, 1000);
  EXPECT_EQ(*t->ban_time, 1200);
  EXPECT_EQ(bm.NextUnbanTime(), 2200);
  EXPECT_EQ(bm.ban_total(), 1u);
  // Prolonging to permanent.
  EXPECT_EQ(bm.AddBan(At("192.0.2.1", 1300, -1)), AddBanOutcome::kProlonged);
  EXPECT_EQ(*bm.Find(Ip("192.0.2.1"))->ban_time, -1);
  EXPECT_EQ(bm.NextUnbanTime(), kMaxBanEnd);
}

TEST(BanManagerTest, JailBantimeChangeMovesDefaultTickets) {
  FakeClock clock(0);
  BanManager bm(clock, 600);
  (void)bm.AddBan(At("192.0.2.1", 0));
  (void)bm.AddBan(At("192.0.2.2", 0, 300));
  bm.set_ban_time(100);
  std::vector<const Ticket*> by_end = bm.BansByEnd();
  ASSERT_EQ(by_end.size(), 2u);
  EXPECT_EQ(by_end[0]->id, Ip("192.0.2.1"));
  EXPECT_EQ(bm.NextUnbanTime(), 100);
  EXPECT_TRUE(bm.SetTicketBanTime(Ip("192.0.2.1"), 1000));
  EXPECT_EQ(bm.NextUnbanTime(), 300);
}

TEST(BanManagerTest, StatusListsAndManualUnban) {
  FakeClock clock(0);
  BanManager bm(clock, 600);
  (void)bm.AddBan(At("192.0.2.1", 0, 500));
  (void)bm.AddBan(At("10.0.0.1", 0, 100));
  (void)bm.AddBan(At("2001:db8::1", 0, 50));
  EXPECT_EQ(bm.BannedIds(),
            (std::vector<IpAddr>{Ip("192.0.2.1"), Ip("10.0.0.1"), Ip("2001:db8::1")}));
  EXPECT_EQ(bm.IdsIn(Ip("192.0.2.0/24")), std::vector<IpAddr>{Ip("192.0.2.1")});
  std::optional<Ticket> t = bm.Remove(Ip("10.0.0.1"));
  ASSERT_TRUE(t.has_value());
  EXPECT_FALSE(bm.Remove(Ip("10.0.0.1")).has_value());
  EXPECT_EQ(bm.Flush().size(), 2u);
  EXPECT_EQ(bm.size(), 0u);
  EXPECT_EQ(bm.NextUnbanTime(), kMaxBanEnd);
  EXPECT_EQ(bm.ban_total(), 3u);
}

}  // namespace
}  // namespace bantam
