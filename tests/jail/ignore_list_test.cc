#include "bantam/ignore_list.h"

#include <gtest/gtest.h>

#include <map>

namespace bantam {
namespace {

IpAddr Ip(const char* text) { return IpAddr::FromText(text); }

struct FakeResolver : Resolver {
  std::map<std::string, std::vector<IpAddr>, std::less<>> hosts;
  int lookups = 0;
  std::vector<IpAddr> HostToIp(std::string_view host) override {
    ++lookups;
    auto it = hosts.find(host);
    return it == hosts.end() ? std::vector<IpAddr>() : it->second;
  }
  std::vector<std::string> IpToName(const IpAddr&) override { return {}; }
};

struct FakeSelf : HostAddresses {
  std::vector<IpAddr> ips = {Ip("127.0.0.1"), Ip("::1"), Ip("198.51.100.7")};
  int calls = 0;
  std::vector<IpAddr> SelfIps() override {
    ++calls;
    return ips;
  }
};

struct FakeRunner : CommandRunner {
  Result<int> status = 1;
  std::vector<std::string> commands;
  std::vector<std::pair<std::string, std::string>> last_env;
  Result<int> Run(const std::string& command,
                  const std::vector<std::pair<std::string, std::string>>& env) override {
    commands.push_back(command);
    last_env = env;
    return status;
  }
};

struct IgnoreListTest : ::testing::Test {
  FakeClock clock{1000};
  FakeResolver resolver;
  FakeSelf self;
  FakeRunner runner;
  IgnoreList list{clock, &resolver, &self, &runner};
};

TEST_F(IgnoreListTest, AddressesAndNetworksV4V6) {
  list.set_ignoreself(false);
  EXPECT_TRUE(list.Add("192.0.2.5"));
  EXPECT_TRUE(list.Add("10.0.0.0/8"));
  EXPECT_TRUE(list.Add("2001:db8:1::/48"));
  EXPECT_TRUE(list.Add("[2001:db8::5]"));
  EXPECT_TRUE(list.Add("172.16.1.1/255.255.0.0"));
  EXPECT_FALSE(list.Add("10.1.2.3/8"));  // same network
  EXPECT_FALSE(list.Add(""));
  EXPECT_EQ(list.Check(Ip("192.0.2.5")).source, IgnoreSource::kIp);
  EXPECT_FALSE(list.Check(Ip("192.0.2.6")).ignored);
  EXPECT_TRUE(list.Check(Ip("10.255.0.1")).ignored);
  EXPECT_TRUE(list.Check(Ip("172.16.200.1")).ignored);
  EXPECT_FALSE(list.Check(Ip("172.17.0.1")).ignored);
  EXPECT_TRUE(list.Check(Ip("2001:db8:1:ffff::1")).ignored);
  EXPECT_FALSE(list.Check(Ip("2001:db8:2::1")).ignored);
  EXPECT_TRUE(list.Check(Ip("2001:db8::5")).ignored);
  // A mapped address is IPv4, and IPv4 never matches an IPv6 network.
  EXPECT_TRUE(list.Check(Ip("::ffff:10.0.0.1")).ignored);
  EXPECT_TRUE(list.Remove("10.0.0.0/8"));
  EXPECT_FALSE(list.Check(Ip("10.255.0.1")).ignored);
  EXPECT_FALSE(list.Remove("10.0.0.0/8"));
  EXPECT_TRUE(runner.commands.empty());
}

TEST_F(IgnoreListTest, HostNamesResolveThroughTheResolverAndAreCached) {
  list.set_ignoreself(false);
  resolver.hosts["gw.example"] = {Ip("192.0.2.1"), Ip("2001:db8::1")};
  EXPECT_TRUE(list.Add("gw.example"));
  IgnoreVerdict v = list.Check(Ip("2001:db8::1"));
  EXPECT_TRUE(v.ignored);
  EXPECT_EQ(v.source, IgnoreSource::kDns);
  EXPECT_STREQ(IgnoreSourceName(v.source), "dns");
  EXPECT_TRUE(list.Check(Ip("192.0.2.1")).ignored);
  EXPECT_FALSE(list.Check(Ip("192.0.2.2")).ignored);
  EXPECT_EQ(resolver.lookups, 1);  // answers kept 5 minutes
  clock.Advance(301);
  resolver.hosts["gw.example"] = {Ip("192.0.2.2")};
  EXPECT_TRUE(list.Check(Ip("192.0.2.2")).ignored);
  EXPECT_EQ(resolver.lookups, 2);
  // fail2ban 1.1's "file:" entries are host names to 1.0.2: they match nothing.
  EXPECT_TRUE(IgnoreList::IsFileEntry("file:/etc/ignore"));
  EXPECT_TRUE(list.Add("file:/etc/ignore"));
  EXPECT_FALSE(list.Check(Ip("192.0.2.3")).ignored);
}

TEST_F(IgnoreListTest, IgnoreSelf) {
  IgnoreVerdict v = list.Check(Ip("198.51.100.7"));
  EXPECT_TRUE(v.ignored);
  EXPECT_EQ(v.source, IgnoreSource::kSelf);
  EXPECT_TRUE(list.Check(Ip("::1")).ignored);
  EXPECT_FALSE(list.Check(Ip("198.51.100.8")).ignored);
  EXPECT_EQ(self.calls, 1);
  list.set_ignoreself(false);
  EXPECT_FALSE(list.Check(Ip("198.51.100.7")).ignored);
}

TEST_F(IgnoreListTest, IgnoreCommandExitCodes) {
  list.set_ignoreself(false);
  list.set_ignorecommand("/usr/bin/check <ip> --fid <fid>");
  runner.status = 0;
  IgnoreVerdict v = list.Check(Ip("203.0.113.9"));
  EXPECT_TRUE(v.ignored);
  EXPECT_EQ(v.source, IgnoreSource::kCommand);
  EXPECT_EQ(runner.commands.back(), "/usr/bin/check 203.0.113.9 --fid 203.0.113.9");
  runner.status = 1;
  v = list.Check(Ip("203.0.113.9"));
  EXPECT_FALSE(v.ignored);
  EXPECT_TRUE(v.error.empty());
  runner.status = 2;
  v = list.Check(Ip("203.0.113.9"));
  EXPECT_FALSE(v.ignored);
  EXPECT_EQ(v.error,
            "ignorecommand '/usr/bin/check 203.0.113.9 --fid 203.0.113.9' exited with "
            "status 2 (expected 0 or 1)");
  runner.status = Status::Error("killed by signal 9");
  v = list.Check(Ip("203.0.113.9"));
  EXPECT_FALSE(v.ignored);
  EXPECT_NE(v.error.find("killed by signal 9"), std::string::npos);
  EXPECT_EQ(runner.commands.size(), 4u);
}

TEST_F(IgnoreListTest, CommandTagsFromFailureDataAreEscaped) {
  list.set_ignoreself(false);
  list.set_ignorecommand("check <ip> <F-USER> <F-NONE> <unknown>");
  FailData data;
  data.Set("user", std::string("x; rm -rf /"));
  runner.status = 1;
  (void)list.Check(Ip("raw-id-is-fine"), &data);
  EXPECT_EQ(runner.commands.back(), "check raw-id-is-fine $f2bV_F_user  <unknown>");
  ASSERT_EQ(runner.last_env.size(), 1u);
  EXPECT_EQ(runner.last_env[0],
            (std::pair<std::string, std::string>{"f2bV_F_user", "x; rm -rf /"}));
}

TEST_F(IgnoreListTest, TwoStepCommandForRunningOffTheLoop) {
  list.set_ignoreself(false);
  list.set_ignorecommand("check <ip>");
  list.set_ignorecache(*ParseIgnoreCache("key=\"<ip>\", max-count=10, max-time=1m"));
  PendingIgnoreCommand pending;
  EXPECT_FALSE(list.Prepare(Ip("192.0.2.1"), nullptr, &pending).has_value());
  EXPECT_EQ(pending.command, "check 192.0.2.1");
  EXPECT_TRUE(list.Finish(pending, 0).ignored);
  std::optional<IgnoreVerdict> cached = list.Prepare(Ip("192.0.2.1"), nullptr, &pending);
  ASSERT_TRUE(cached.has_value());
  EXPECT_TRUE(cached->ignored);
  EXPECT_EQ(cached->source, IgnoreSource::kCache);
  EXPECT_TRUE(runner.commands.empty());
}

TEST_F(IgnoreListTest, IgnoreCacheRemembersAnswersForMaxTime) {
  list.set_ignoreself(false);
  list.set_ignorecommand("check <ip>");
  Result<std::optional<IgnoreCacheOptions>> opts =
      ParseIgnoreCache("key=\"<ip>\", max-count=2, max-time=5m");
  ASSERT_TRUE(opts.ok()) << opts.status().message();
  ASSERT_TRUE(opts->has_value());
  EXPECT_EQ((*opts)->key, "<ip>");
  EXPECT_EQ((*opts)->max_count, 2u);
  EXPECT_EQ((*opts)->max_time, 300);
  list.set_ignorecache(*opts);
  runner.status = 0;
  EXPECT_TRUE(list.Check(Ip("192.0.2.1")).ignored);
  runner.status = 1;
  EXPECT_TRUE(list.Check(Ip("192.0.2.1")).ignored);  // cached
  EXPECT_EQ(runner.commands.size(), 1u);
  EXPECT_FALSE(list.Check(Ip("192.0.2.2")).ignored);  // negative answers cached too
  EXPECT_FALSE(list.Check(Ip("192.0.2.2")).ignored);
  EXPECT_EQ(runner.commands.size(), 2u);
  // A third key at max-count pushes out the oldest.
  EXPECT_FALSE(list.Check(Ip("192.0.2.3")).ignored);
  EXPECT_EQ(list.cache_size(), 2u);
  EXPECT_FALSE(list.Check(Ip("192.0.2.1")).ignored);  // asked again
  EXPECT_EQ(runner.commands.size(), 4u);
  // Expiry.
  clock.Advance(301);
  EXPECT_FALSE(list.Check(Ip("192.0.2.3")).ignored);
  EXPECT_EQ(runner.commands.size(), 5u);
}

TEST_F(IgnoreListTest, ParseIgnoreCacheErrors) {
  EXPECT_FALSE(ParseIgnoreCache("")->has_value());
  EXPECT_EQ(ParseIgnoreCache("max-count=5").status().message(),
            "ignorecache: missing 'key' option");
  EXPECT_FALSE(ParseIgnoreCache("key=\"<ip>\" junk").ok());
  EXPECT_EQ((*ParseIgnoreCache("key=<ip> junk"))->key, "<ip> junk");  // as fail2ban reads it
  EXPECT_EQ((*ParseIgnoreCache("key='<ip>:<F-USER>'"))->key, "<ip>:<F-USER>");
  EXPECT_EQ((*ParseIgnoreCache("key=<ip>"))->max_count, 100u);
}

}  // namespace
}  // namespace bantam
