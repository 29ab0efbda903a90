// Counting and banning by prefix (prefix4/prefix6, aggregate4/aggregate6):
// the arithmetic, the options, and what a jail does with them.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bantam/ban_manager.h"
#include "bantam/ban_time.h"
#include "bantam/clock.h"
#include "bantam/ip_address.h"
#include "bantam/jail.h"
#include "bantam/prefix_options.h"

namespace bantam {
namespace {

IpAddr Ip(const char* text) { return IpAddr::FromText(text); }

TEST(PrefixArithmeticTest, NetworkMasksHostBitsAndPrints) {
  EXPECT_EQ(Ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd").Network(64).ToString(), "2001:db8:1:2::/64");
  EXPECT_EQ(Ip("2001:db8:1:2::7").Network(48).ToString(), "2001:db8:1::/48");
  EXPECT_EQ(Ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff").Network(127).ToString(),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127");
  EXPECT_EQ(Ip("2001:db8::7").Network(1).ToString(), "::/1");
  EXPECT_EQ(Ip("198.51.100.77").Network(24).ToString(), "198.51.100.0/24");
  EXPECT_EQ(Ip("198.51.100.77").Network(31).ToString(), "198.51.100.76/31");
  EXPECT_EQ(Ip("198.51.100.77").Network(1).ToString(), "128.0.0.0/1");
  // The full width, or longer than the id: unchanged.
  EXPECT_EQ(Ip("198.51.100.77").Network(32), Ip("198.51.100.77"));
  EXPECT_EQ(Ip("2001:db8::7").Network(128), Ip("2001:db8::7"));
  EXPECT_EQ(Ip("2001:db8::/64").Network(96), Ip("2001:db8::/64"));
  // Raw ids and invalid text are not networks.
  const IpAddr raw = IpAddr::FromText("user1", kCidrRaw);
  EXPECT_EQ(raw.Network(24), raw);
  // A network is the same value as the parsed CIDR text (its hash too).
  EXPECT_EQ(Ip("2001:db8:1:2::99").Network(64), Ip("2001:db8:1:2::/64"));
  EXPECT_EQ(Ip("2001:db8:1:2::99").Network(64).Hash(), Ip("2001:db8:1:2::/64").Hash());
}

TEST(PrefixArithmeticTest, OverlapsIsSymmetricAndFamilyBound) {
  const IpAddr net = Ip("2001:db8:1:2::/64");
  EXPECT_TRUE(net.Overlaps(Ip("2001:db8:1:2::1")));
  EXPECT_TRUE(Ip("2001:db8:1:2::1").Overlaps(net));
  EXPECT_TRUE(net.Overlaps(Ip("2001:db8::/32")));      // contains it
  EXPECT_TRUE(net.Overlaps(Ip("2001:db8:1:2:8000::/65")));  // inside it
  EXPECT_FALSE(net.Overlaps(Ip("2001:db8:1:3::1")));
  EXPECT_FALSE(Ip("192.0.2.0/24").Overlaps(Ip("::ffff:192.0.2.1/128")));
  EXPECT_TRUE(Ip("192.0.2.0/24").Overlaps(Ip("192.0.2.200")));
  EXPECT_FALSE(Ip("192.0.2.0/24").Overlaps(Ip("192.0.3.0")));
}

TEST(PrefixOptionsTest, ParsesAndRejectsWithTheOptionNamed) {
  PrefixOptions o;
  EXPECT_FALSE(o.bans_networks());
  ASSERT_TRUE(SetPrefixOption(&o, "prefix6", " 64 ").ok());
  ASSERT_TRUE(SetPrefixOption(&o, "aggregate4", "24:5").ok());
  EXPECT_EQ(o.prefix6, 64);
  EXPECT_EQ(o.aggregate4, 24);
  EXPECT_EQ(o.aggregate4_count, 5);
  EXPECT_TRUE(o.bans_networks());
  EXPECT_EQ(o.Describe(), "prefix6 = 64, aggregate4 = 24:5");
  EXPECT_EQ(o.UnitOf(Ip("2001:db8:1:2::9")).ToString(), "2001:db8:1:2::/64");
  EXPECT_EQ(o.UnitOf(Ip("192.0.2.9")).ToString(), "192.0.2.9");
  EXPECT_TRUE(SetPrefixOption(&o, "aggregate4", "no").ok());
  EXPECT_EQ(o.aggregate4, 0);

  EXPECT_EQ(SetPrefixOption(&o, "prefix6", "129").message(),
            "prefix6 = 129: expected a prefix length from 1 to 128");
  EXPECT_EQ(SetPrefixOption(&o, "prefix4", "0").message(),
            "prefix4 = 0: expected a prefix length from 1 to 32");
  EXPECT_FALSE(SetPrefixOption(&o, "prefix4", "24x").ok());
  EXPECT_FALSE(SetPrefixOption(&o, "prefix4", "").ok());
  EXPECT_FALSE(SetPrefixOption(&o, "aggregate6", "64").ok());
  EXPECT_FALSE(SetPrefixOption(&o, "aggregate6", "64:1").ok());
  EXPECT_FALSE(SetPrefixOption(&o, "aggregate6", "128:3").ok());
  EXPECT_FALSE(SetPrefixOption(&o, "aggregate4", "24:").ok());
  // The failed sets left the values as they were.
  EXPECT_EQ(o.prefix6, 64);
  EXPECT_EQ(o.prefix4, 32);

  PrefixOptions bad;
  bad.prefix6 = 64;
  ASSERT_TRUE(SetPrefixOption(&bad, "aggregate6", "64:3").ok());
  EXPECT_EQ(ValidatePrefixOptions(bad).message(),
            "aggregate6 = 64:3: the aggregate prefix must be shorter than prefix6 (64)");
  bad.aggregate6 = 48;
  EXPECT_TRUE(ValidatePrefixOptions(bad).ok());
}

TEST(BanManagerPrefixTest, CoveringBanAndUnitCounts) {
  FakeClock clock(1000);
  BanManager bans(clock, 600);
  bans.set_aggregation(AF_INET6, 64, 128);
  auto ban = [&](const char* ip) {
    Ticket t;
    t.id = Ip(ip);
    t.time = 1000;
    return bans.AddBan(t);
  };
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:1:2::1")), nullptr);
  ban("2001:db8:1:2::1");
  ban("2001:db8:1:2::2");
  ban("2001:db8:1:3::1");
  EXPECT_EQ(bans.UnitsIn(Ip("2001:db8:1:2::/64")), 2u);
  EXPECT_EQ(bans.UnitsIn(Ip("2001:db8:1:3::/64")), 1u);
  // An address is not its own cover.
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:1:2::1")), nullptr);
  ban("2001:db8:1::/48");
  ASSERT_NE(bans.CoveringBan(Ip("2001:db8:1:2::99")), nullptr);
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:1:2::99"))->id.ToString(), "2001:db8:1::/48");
  EXPECT_NE(bans.CoveringBan(Ip("2001:db8:1:2::/64")), nullptr);
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:1::/48")), nullptr);
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:2::1")), nullptr);
  EXPECT_EQ(bans.CoveringBan(Ip("192.0.2.1")), nullptr);
  bans.Remove(Ip("2001:db8:1::/48"));
  EXPECT_EQ(bans.CoveringBan(Ip("2001:db8:1:2::99")), nullptr);
  bans.Remove(Ip("2001:db8:1:2::1"));
  EXPECT_EQ(bans.UnitsIn(Ip("2001:db8:1:2::/64")), 1u);
  clock.Advance(601);
  bans.TakeDue(clock.Now());
  EXPECT_EQ(bans.UnitsIn(Ip("2001:db8:1:2::/64")), 0u);
  EXPECT_EQ(bans.size(), 0u);
}

// Records what the jail reports, one line per event.
class Events : public JailEvents {
 public:
  void OnFound(const std::string&, const IpAddr& id, double) override {
    log.push_back("found " + id.ToString());
  }
  void OnIgnored(const std::string&, const IpAddr& id, const char* source) override {
    log.push_back("ignored " + id.ToString() + " by " + source);
  }
  void OnBan(const std::string&, const Ticket& t) override {
    log.push_back("ban " + t.id.ToString() + " for " +
                  std::to_string(static_cast<int>(t.BanTimeOr(-2))) +
                  (t.aggregated ? " aggregating " + std::to_string(t.aggregated) : ""));
  }
  void OnAlreadyBanned(const std::string&, const IpAddr& id) override {
    log.push_back("already " + id.ToString());
  }
  void OnUnban(const std::string&, const Ticket& t) override {
    log.push_back("unban " + t.id.ToString());
  }
  void OnCovered(const std::string&, const Ticket& t, const IpAddr& by) override {
    log.push_back("covered " + t.id.ToString() + " by " + by.ToString());
  }
  void OnWarning(const std::string&, const std::string& m) override {
    log.push_back("warning " + m);
  }
  // Only the bans and warnings: the found lines are the input echoed.
  std::vector<std::string> Decisions() const {
    std::vector<std::string> out;
    for (const std::string& l : log)
      if (l.rfind("found ", 0) != 0) out.push_back(l);
    return out;
  }
  std::vector<std::string> log;
};

struct History : BanHistory {
  std::map<std::string, BanRecord> records;
  std::optional<BanRecord> LastBan(const IpAddr& id, std::string_view, bool) override {
    auto it = records.find(id.ToString());
    if (it == records.end()) return std::nullopt;
    return it->second;
  }
};

class PrefixJailTest : public ::testing::Test {
 protected:
  std::unique_ptr<Jail> Make(JailConfig c) {
    Result<std::unique_ptr<Jail>> j =
        Jail::Create(std::move(c), clock_, &events_, &history_, nullptr, nullptr, nullptr);
    EXPECT_TRUE(j.ok()) << j.status().message();
    return j.ok() ? std::move(*j) : nullptr;
  }
  JailConfig Pbx() {
    JailConfig c;
    c.name = "pbx";
    c.filter.failregex = {"^auth failed from <HOST>$"};
    c.filter.datepattern = "{NONE}";
    c.maxretry = 3;
    c.findtime = 600;
    c.bantime = 3600;
    c.ignoreself = false;
    return c;
  }
  static std::string V6(int net, int host) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "2001:db8:1:%x::%x", net, host);
    return buf;
  }
  void Fail(Jail& j, const std::string& ip) { j.ProcessLine("auth failed from " + ip); }

  FakeClock clock_{1700000000};
  Events events_;
  History history_;
};

using Log = std::vector<std::string>;

TEST_F(PrefixJailTest, DefaultsCountEachAddressAlone) {
  auto jail = Make(Pbx());
  for (int i = 1; i <= 10; ++i) Fail(*jail, V6(2, i));
  EXPECT_EQ(jail->bans().size(), 0u);
  EXPECT_EQ(jail->failures().size(), 10u);
}

TEST_F(PrefixJailTest, RotatingAddressesOfOnePrefixAreBannedAsThePrefix) {
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  c.prefixes.prefix4 = 24;
  auto jail = Make(c);
  for (int i = 1; i <= 2; ++i) Fail(*jail, V6(2, i));
  Fail(*jail, V6(3, 1));  // another /64: counted apart
  EXPECT_EQ(jail->bans().size(), 0u);
  EXPECT_EQ(jail->failures().size(), 2u);
  Fail(*jail, V6(2, 0x1000));
  EXPECT_EQ(events_.Decisions(), Log({"ban 2001:db8:1:2::/64 for 3600"}));
  // The found lines name the addresses; the counting is by prefix.
  EXPECT_EQ(events_.log[0], "found 2001:db8:1:2::1");
  // Any address of the banned /64 is inside the ban; the next /64 is not.
  EXPECT_NE(jail->bans().CoveringBan(Ip("2001:db8:1:2:ffff::1")), nullptr);
  EXPECT_EQ(jail->bans().CoveringBan(Ip("2001:db8:1:3::1")), nullptr);
  // IPv4 by /24.
  events_.log.clear();
  Fail(*jail, "198.51.100.1");
  Fail(*jail, "198.51.100.2");
  Fail(*jail, "198.51.100.250");
  EXPECT_EQ(events_.Decisions(), Log({"ban 198.51.100.0/24 for 3600"}));
  // More failures of the banned prefix: already banned, not banned again.
  events_.log.clear();
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(2, 0x77));
  EXPECT_EQ(events_.Decisions(), Log({"already 2001:db8:1:2::/64"}));
}

TEST_F(PrefixJailTest, IgnoreipInsideThePrefixKeepsCountingPerAddress) {
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  c.ignoreip = {"2001:db8:1:2::1", "2001:db8:1:4:8000::/65"};
  auto jail = Make(c);
  // The ignored address itself is ignored, as always.
  Fail(*jail, V6(2, 1));
  EXPECT_EQ(events_.log.back(), "ignored 2001:db8:1:2::1 by ip");
  // Its neighbours are counted alone, with one warning for the prefix.
  for (int i = 2; i <= 4; ++i) Fail(*jail, V6(2, i));
  EXPECT_EQ(jail->bans().size(), 0u);
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(2, 9));
  EXPECT_EQ(events_.Decisions(),
            Log({"ignored 2001:db8:1:2::1 by ip",
                 "warning prefix 2001:db8:1:2::/64 holds ignoreip 2001:db8:1:2::1: its addresses "
                 "are counted and banned one by one",
                 "ban 2001:db8:1:2::9 for 3600"}));
  // A network entry inside the prefix does the same.
  events_.log.clear();
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(4, i + 1));
  EXPECT_EQ(jail->bans().size(), 1u);
  EXPECT_EQ(events_.Decisions().front(),
            "warning prefix 2001:db8:1:4::/64 holds ignoreip 2001:db8:1:4:8000::/65: its "
            "addresses are counted and banned one by one");
  // A prefix without ignored entries is counted as a prefix.
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(5, i + 1));
  EXPECT_TRUE(jail->bans().IsBanned(Ip("2001:db8:1:5::/64")));
  // Changing the ignore list is seen at once.
  jail->ignore_list().Add("2001:db8:1:6::5");
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(6, i + 1));
  EXPECT_FALSE(jail->bans().IsBanned(Ip("2001:db8:1:6::/64")));
}

TEST_F(PrefixJailTest, AggregationBansThePrefixAtTheThresholdAndLiftsTheAddresses) {
  JailConfig c = Pbx();
  ASSERT_TRUE(SetPrefixOption(&c.prefixes, "aggregate6", "64:3").ok());
  auto jail = Make(c);
  auto ban_address = [&](const std::string& ip) {
    for (int i = 0; i < 3; ++i) Fail(*jail, ip);
  };
  ban_address(V6(2, 1));
  ban_address(V6(3, 1));  // another /64 does not add up
  ban_address(V6(2, 2));
  EXPECT_EQ(jail->bans().size(), 3u);
  EXPECT_EQ(events_.Decisions(), Log({"ban 2001:db8:1:2::1 for 3600", "ban 2001:db8:1:3::1 for 3600",
                                      "ban 2001:db8:1:2::2 for 3600"}));
  events_.log.clear();
  ban_address(V6(2, 3));
  EXPECT_EQ(events_.Decisions(),
            Log({"ban 2001:db8:1:2::3 for 3600", "covered 2001:db8:1:2::1 by 2001:db8:1:2::/64",
                 "covered 2001:db8:1:2::2 by 2001:db8:1:2::/64",
                 "covered 2001:db8:1:2::3 by 2001:db8:1:2::/64",
                 "ban 2001:db8:1:2::/64 for 3600 aggregating 3"}));
  EXPECT_EQ(jail->bans().size(), 2u);
  EXPECT_TRUE(jail->bans().IsBanned(Ip("2001:db8:1:2::/64")));
  EXPECT_TRUE(jail->bans().IsBanned(Ip("2001:db8:1:3::1")));
  // A fourth address of the prefix reaching maxretry is already banned.
  events_.log.clear();
  ban_address(V6(2, 4));
  EXPECT_EQ(events_.Decisions(), Log({"already 2001:db8:1:2::/64"}));
  EXPECT_EQ(jail->bans().size(), 2u);
}

TEST_F(PrefixJailTest, AggregatedBanLastsAtLeastAsLongAsWhatItReplaces) {
  JailConfig c = Pbx();
  ASSERT_TRUE(SetPrefixOption(&c.prefixes, "aggregate4", "24:2").ok());
  auto jail = Make(c);
  ASSERT_TRUE(jail->BanNow(Ip("192.0.2.1")));
  ASSERT_TRUE(jail->mutable_bans().SetTicketBanTime(Ip("192.0.2.1"), 86400));
  clock_.Advance(100);
  for (int i = 0; i < 3; ++i) Fail(*jail, "192.0.2.2");
  const Ticket* t = jail->bans().Find(Ip("192.0.2.0/24"));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->EndOfBan(3600), 1700000000 + 86400.0);
}

TEST_F(PrefixJailTest, AggregationNeverCoversAnIgnoredAddress) {
  JailConfig c = Pbx();
  ASSERT_TRUE(SetPrefixOption(&c.prefixes, "aggregate4", "24:2").ok());
  c.ignoreip = {"192.0.2.200"};
  auto jail = Make(c);
  for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) {
    for (int i = 0; i < 3; ++i) Fail(*jail, ip);
  }
  EXPECT_EQ(jail->bans().size(), 3u);
  EXPECT_FALSE(jail->bans().IsBanned(Ip("192.0.2.0/24")));
  int warnings = 0;
  for (const std::string& l : events_.log) {
    if (l == "warning not aggregating into 192.0.2.0/24: it holds ignoreip 192.0.2.200; its bans "
             "stay one by one") {
      ++warnings;
    }
  }
  EXPECT_EQ(warnings, 1);
}

TEST_F(PrefixJailTest, AggregatingPrefixesIntoAShorterPrefix) {
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  ASSERT_TRUE(SetPrefixOption(&c.prefixes, "aggregate6", "48:2").ok());
  auto jail = Make(c);
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(2, i + 1));
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(3, i + 1));
  EXPECT_EQ(events_.Decisions().back(), "ban 2001:db8:1::/48 for 3600 aggregating 2");
  EXPECT_EQ(jail->bans().size(), 1u);
}

TEST_F(PrefixJailTest, UnbanOfAnAddressInsideABannedPrefixLiftsThePrefix) {
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  auto jail = Make(c);
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(2, i + 1));
  ASSERT_TRUE(jail->bans().IsBanned(Ip("2001:db8:1:2::/64")));
  IpAddr lifted;
  EXPECT_FALSE(jail->Unban(Ip("2001:db8:1:3::1"), &lifted));
  EXPECT_TRUE(jail->Unban(Ip("2001:db8:1:2::abc"), &lifted));
  EXPECT_EQ(lifted.ToString(), "2001:db8:1:2::/64");
  EXPECT_EQ(events_.log.back(), "unban 2001:db8:1:2::/64");
  EXPECT_EQ(jail->bans().size(), 0u);
  // banip of an address inside a banned prefix: already banned.
  ASSERT_TRUE(jail->BanNow(Ip("2001:db8:9::/64")));
  EXPECT_FALSE(jail->BanNow(Ip("2001:db8:9::1")));
  EXPECT_EQ(events_.log.back(), "already 2001:db8:9::/64");
}

TEST_F(PrefixJailTest, IncrementCountsThePrefixsOwnHistory) {
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  c.increment.increment = true;
  auto jail = Make(c);
  // The /64 was banned twice before; its addresses never were.
  history_.records["2001:db8:1:2::/64"] = BanRecord{2, 1699990000, 7200};
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(2, i + 1));
  EXPECT_EQ(events_.Decisions(), Log({"ban 2001:db8:1:2::/64 for 14400"}));
  // Another /64 without history gets the plain bantime.
  for (int i = 0; i < 3; ++i) Fail(*jail, V6(3, i + 1));
  EXPECT_EQ(events_.Decisions().back(), "ban 2001:db8:1:3::/64 for 3600");
}

TEST_F(PrefixJailTest, RestoreNeverHoldsAPrefixTogetherWithWhatItCovers) {
  JailConfig c = Pbx();
  ASSERT_TRUE(SetPrefixOption(&c.prefixes, "aggregate6", "64:3").ok());
  auto jail = Make(c);
  auto saved = [&](const char* ip) {
    Ticket t;
    t.id = Ip(ip);
    t.time = clock_.Now();
    t.ban_time = 3600;
    return t;
  };
  jail->Restore(saved("2001:db8:1:2::1"));
  jail->Restore(saved("2001:db8:1:2::/64"));
  jail->Restore(saved("2001:db8:1:2::2"));
  EXPECT_EQ(events_.Decisions(), Log({"ban 2001:db8:1:2::1 for 3600",
                                      "covered 2001:db8:1:2::1 by 2001:db8:1:2::/64",
                                      "ban 2001:db8:1:2::/64 for 3600"}));
  EXPECT_EQ(jail->bans().size(), 1u);
}

TEST_F(PrefixJailTest, TheCacheBoundsAFloodOfPrefixes) {
  // 1,000 /64s, 20 addresses each, one failure per address: the failure
  // table holds one entry per prefix and every prefix is banned. (The
  // daemon-level flood of 1,000,000 addresses is tests/jail/prefix_flood_test.py.)
  JailConfig c = Pbx();
  c.prefixes.prefix6 = 64;
  auto jail = Make(c);
  size_t most = 0;
  for (int host = 1; host <= 20; ++host) {
    for (int net = 0; net < 1000; ++net) Fail(*jail, V6(net, host));
    most = std::max(most, jail->failures().size());
  }
  EXPECT_LE(most, 1000u);
  EXPECT_EQ(jail->bans().size(), 1000u);
  EXPECT_EQ(jail->bans().ban_total(), 1000u);
}

}  // namespace
}  // namespace bantam
