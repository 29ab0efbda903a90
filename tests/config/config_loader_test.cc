#include "bantam/config_loader.h"

#include <gtest/gtest.h>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

// A small tree of our own; the expected streams below were checked once
// against `fail2ban-client -d` on the same files (the conformance suite
// does that comparison at test time on the stock tree).
class ConfigLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_.Write("fail2ban.conf", "[Definition]\nloglevel = INFO\ndbpurgeage = 1d\n");
    tree_.Write("filter.d/common.conf", "[DEFAULT]\n_daemon = \\S+\n");
    tree_.Write("filter.d/f.conf",
                "[INCLUDES]\nbefore = common.conf\n"
                "[Init]\nmode = normal\n"
                "[Definition]\n_daemon = pbx\n"
                "failregex = ^<_daemon>: bad password from <HOST> (<mode>)$\n"
                "            ^<_daemon>: <mode> scan from <HOST>$\n"
                "datepattern = {^LN-BEG}\n");
    tree_.Write("action.d/a.conf",
                "[Definition]\nactionban = block <ip> in f2b-<name> <port>\n"
                "actionunban = unblock <ip> <matches>\nnorestored = yes\n"
                "[Init]\nport = 1\n");
    tree_.Write("log/pbx.log", "");
  }

  Result<LoadedConfig> Load() {
    LoadOptions o;
    o.basedir = tree_.root();
    return LoadConfig(o);
  }

  std::string Dump() {
    Result<LoadedConfig> r = Load();
    if (!r.ok()) return "error: " + r.status().message();
    std::string out;
    for (const Value& v : r->commands) out += v.ToJson() + "\n";
    return out;
  }

  std::vector<std::string> Errors() {
    std::vector<std::string> out;
    Result<LoadedConfig> r = Load();
    if (!r.ok()) return {"fatal: " + r.status().message()};
    for (const Diagnostic& d : r->diagnostics)
      if (d.severity == Diagnostic::Severity::kError) out.push_back(d.message);
    return out;
  }

  TempTree tree_;
};

constexpr char kServerStream[] =
    R"(["set", "syslogsocket", "auto"]
["set", "loglevel", "INFO"]
["set", "logtarget", "/var/log/fail2ban.log"]
["set", "allowipv6", "auto"]
["set", "dbfile", "/var/lib/fail2ban/fail2ban.sqlite3"]
["set", "dbpurgeage", "1d"]
)";

TEST_F(ConfigLoaderTest, JailFilterAndActionResolve) {
  tree_.Write("jail.conf",
              "[DEFAULT]\nmaxretry = 3\nbantime = 1h\n"
              "[pbx]\nenabled = true\nfilter = f[mode=aggressive]\n"
              "logpath = " + tree_.Path("log/pbx.log") + " tail\n"
              "action = a[port=5060]\n"
              "ignoreip = 127.0.0.1/8 ::1,10.0.0.1\n"
              "[off]\nfilter = missing\n");
  EXPECT_EQ(Dump(), std::string(kServerStream) +
                        R"(["add", "pbx", "auto"]
["multi-set", "pbx", "addfailregex", ["^pbx: bad password from <HOST> (aggressive)$", "^pbx: aggressive scan from <HOST>$"]]
["set", "pbx", "datepattern", "{^LN-BEG}"]
["set", "pbx", "maxretry", 3]
["set", "pbx", "bantime", "1h"]
["set", "pbx", "addignoreip", "127.0.0.1/8", "::1", "10.0.0.1"]
["set", "pbx", "addlogpath", ")" + tree_.Path("log/pbx.log") +
                        R"(", "tail"]
["set", "pbx", "addaction", "a"]
["multi-set", "pbx", "action", "a", [["actionban", "block <ip> in f2b-pbx 5060"], ["actionunban", "unblock <ip> <matches>"], ["norestored", true], ["port", "5060"], ["name", "pbx"], ["actname", "a"]]]
["start", "pbx"]
)");
  EXPECT_TRUE(Errors().empty());
}

TEST_F(ConfigLoaderTest, BrokenJailsAreSkippedWithConfigErrorOthersStart) {
  tree_.Write("jail.conf",
              "[bad]\nenabled = true\nfilter = nosuch\n"
              "[bad2]\nenabled = true\nfilter = f\naction = a[port=\"1\"x]\n"
              "[num]\nenabled = true\nfilter = f\nmaxretry = three\n");
  EXPECT_EQ(Dump(), std::string(kServerStream) +
                        R"(["config-error", "Jail 'bad' skipped, because of wrong configuration: Unable to read the filter 'nosuch'"]
["config-error", "Jail 'bad2' skipped, because of wrong configuration: Invalid action definition 'a[port=\"1\"x]': unexpected syntax at 8 after option 'port': x"]
["add", "num", "auto"]
["multi-set", "num", "addfailregex", ["^pbx: bad password from <HOST> (normal)$", "^pbx: normal scan from <HOST>$"]]
["set", "num", "datepattern", "{^LN-BEG}"]
["set", "num", "maxretry", null]
["start", "num"]
)");
  const std::string jail = tree_.Path("jail.conf");
  EXPECT_EQ(Errors(),
            (std::vector<std::string>{
                jail + ":3: jail 'bad': Unable to read the filter 'nosuch' (no filter.d/nosuch.conf "
                       "or .local in " + tree_.root() + ")",
                jail + ":7: jail 'bad2': Invalid action definition 'a[port=\"1\"x]': unexpected "
                       "syntax at 8 after option 'port': x",
                jail + ":11: [num] maxretry = 'three' is not an integer"}));
}

TEST_F(ConfigLoaderTest, InterpolationErrorStopsTheLoadWithLocation) {
  tree_.Write("filter.d/g.conf", "[Definition]\nfailregex = ^x %(mode)s <HOST>\n");
  tree_.Write("jail.conf", "[j]\nenabled = true\nfilter = g\n");
  EXPECT_EQ(Dump(), "error: " + tree_.Path("filter.d/g.conf") +
                        ":2: option 'failregex' in [Definition] refers to %(mode)s, which is not "
                        "defined");
}

TEST_F(ConfigLoaderTest, SelfReferencingTagsStopTheLoad) {
  tree_.Write("action.d/loop.conf", "[Definition]\nactionban = <x>\n[Init]\nx = <y>\ny = <x>\n");
  tree_.Write("jail.conf", "[j]\nenabled = true\nfilter = f\naction = loop\n");
  EXPECT_EQ(Dump(), "error: " + tree_.Path("action.d/loop.conf") +
                        ": tag <x> in 'actionban' refers back to itself and cannot be resolved");
}

TEST_F(ConfigLoaderTest, ActionNamesFollowFail2ban) {
  // name= differing from the jail gives "action-name" (or the suffix when
  // the name extends the jail name), and actname= wins.
  tree_.Write("jail.conf",
              "[pbx]\nenabled = true\nfilter = f\n"
              "action = a[name=other]\n a[name=pbx-udp]\n a[actname=mine]\n");
  std::string d = Dump();
  EXPECT_NE(d.find(R"(["set", "pbx", "addaction", "a-other"])"), std::string::npos) << d;
  EXPECT_NE(d.find(R"(["set", "pbx", "addaction", "a-udp"])"), std::string::npos) << d;
  EXPECT_NE(d.find(R"(["set", "pbx", "addaction", "mine"])"), std::string::npos) << d;
}

TEST_F(ConfigLoaderTest, MissingBaseDirectory) {
  LoadOptions o;
  o.basedir = tree_.Path("nope");
  Result<LoadedConfig> r = LoadConfig(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "Base configuration directory " + tree_.Path("nope") + " does not exist");
}

TEST_F(ConfigLoaderTest, InvalidLogLevel) {
  tree_.Write("fail2ban.local", "[Definition]\nloglevel = LOUD\n");
  tree_.Write("jail.conf", "[DEFAULT]\n");
  EXPECT_EQ(Dump(), "error: " + tree_.Path("fail2ban.local") + ":2: Invalid log level 'LOUD'");
}

TEST_F(ConfigLoaderTest, PrefixOptionsPerJailOrDefaultStayOutOfTheStream) {
  const std::string base =
      "[DEFAULT]\nprefix6 = 64\n"
      "[a]\nenabled = true\nfilter = f\naggregate4 = 24:5\n"
      "[b]\nenabled = true\nfilter = f\nprefix6 = 128\n"
      "[off]\nenabled = false\nfilter = f\nprefix6 = 999\n";
  tree_.Write("jail.conf", base);
  const std::string with = Dump();
  Result<LoadedConfig> r = Load();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(Errors().empty());
  ASSERT_EQ(r->prefixes.size(), 2u);
  EXPECT_EQ(r->prefixes.at("a").Describe(), "prefix6 = 64, aggregate4 = 24:5");
  EXPECT_EQ(r->prefixes.at("b").Describe(), "");
  // fail2ban does not know them: the stream is what it is without them.
  tree_.Write("jail.conf",
              "[a]\nenabled = true\nfilter = f\n[b]\nenabled = true\nfilter = f\n"
              "[off]\nenabled = false\nfilter = f\n");
  EXPECT_EQ(Dump(), with);
}

TEST_F(ConfigLoaderTest, BadPrefixOptionsAreErrorsOfTheirJailWithLocation) {
  tree_.Write("jail.conf",
              "[a]\nenabled = true\nfilter = f\nprefix4 = 33\n"
              "[b]\nenabled = true\nfilter = f\nprefix6 = 64\naggregate6 = 64:3\n"
              "[c]\nenabled = true\nfilter = f\n");
  const std::string jail = tree_.Path("jail.conf");
  EXPECT_EQ(Errors(), (std::vector<std::string>{
                          jail + ":4: jail 'a': prefix4 = 33: expected a prefix length from 1 to 32",
                          jail + ":9: jail 'b': aggregate6 = 64:3: the aggregate prefix must be "
                                 "shorter than prefix6 (64)"}));
  Result<LoadedConfig> r = Load();
  ASSERT_TRUE(r.ok());
  for (const Diagnostic& d : r->diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) {
      EXPECT_TRUE(d.jail == "a" || d.jail == "b") << d.message;
    }
  }
  EXPECT_EQ(r->prefixes.count("c"), 0u);
}

}  // namespace
}  // namespace bantam
