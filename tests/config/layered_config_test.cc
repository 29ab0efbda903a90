#include "bantam/layered_config.h"

#include <gtest/gtest.h>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

std::string Get(const LayeredConfig& cfg, const std::string& sec, const std::string& opt,
                const Vars* vars = nullptr) {
  Lookup l = cfg.Get(sec, opt, vars);
  switch (l.code) {
    case LookupCode::kOk: return l.value;
    case LookupCode::kNoSection: return "<no section>";
    case LookupCode::kNoOption: return "<no option>";
    case LookupCode::kError: return "<error> " + l.error;
  }
  return "";
}

class LayeredConfigTest : public ::testing::Test {
 protected:
  LayeredConfig& Read(const std::string& name) {
    cfg_ = std::make_unique<LayeredConfig>(tree_.root(), &cache_);
    bool found = false;
    Status s = cfg_->Read(name, &found);
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_TRUE(found);
    return *cfg_;
  }
  TempTree tree_;
  ConfigFileCache cache_;
  std::unique_ptr<LayeredConfig> cfg_;
};

TEST_F(LayeredConfigTest, OverlayOrderConfThenDConfThenLocalThenDLocal) {
  tree_.Write("jail.conf", "[j]\na = conf\nb = conf\nc = conf\nd = conf\n");
  tree_.Write("jail.d/01.conf", "[j]\nb = d-conf\nc = d-conf\nd = d-conf\n");
  tree_.Write("jail.d/00.local", "[j]\nd = d-local\n");
  tree_.Write("jail.local", "[j]\nc = local\nd = local\n");
  LayeredConfig& cfg = Read("jail");
  EXPECT_EQ(Get(cfg, "j", "a"), "conf");
  EXPECT_EQ(Get(cfg, "j", "b"), "d-conf");
  EXPECT_EQ(Get(cfg, "j", "c"), "local");
  EXPECT_EQ(Get(cfg, "j", "d"), "d-local");
  EXPECT_EQ(cfg.Where("j", "d").ToString(), tree_.Path("jail.d/00.local") + ":2");
}

TEST_F(LayeredConfigTest, IncludesBeforeAndAfterWithTheirLocals) {
  tree_.Write("filter.d/common.conf", "[DEFAULT]\nprefix = common\nwho = common\n");
  tree_.Write("filter.d/common.local", "[DEFAULT]\nwho = common-local\n");
  tree_.Write("filter.d/late.conf", "[Definition]\nlast = late\n");
  tree_.Write("filter.d/f.conf",
              "[INCLUDES]\nbefore = common.conf\nafter = late.conf\n"
              "[Definition]\nprefix = own\nlast = own\nref = %(prefix)s/%(who)s\n");
  LayeredConfig& cfg = Read("filter.d/f");
  EXPECT_EQ(Get(cfg, "Definition", "prefix"), "own");
  EXPECT_EQ(Get(cfg, "Definition", "last"), "late");  // after= overrides the file itself
  EXPECT_EQ(Get(cfg, "Definition", "ref"), "own/common-local");
}

TEST_F(LayeredConfigTest, SelfIncludeDoesNotLoop) {
  tree_.Write("a.conf", "[INCLUDES]\nbefore = a.conf\n[s]\nx = 1\n");
  LayeredConfig& cfg = Read("a");
  EXPECT_EQ(Get(cfg, "s", "x"), "1");
}

TEST_F(LayeredConfigTest, MissingIncludeIsSilentlySkipped) {
  // Stock files name optional overlays (after = paths-overrides.local).
  tree_.Write("a.conf", "[INCLUDES]\nbefore = gone.conf\nafter = gone.local\n[s]\nx = 1\n");
  LayeredConfig& cfg = Read("a");
  EXPECT_EQ(Get(cfg, "s", "x"), "1");
  EXPECT_TRUE(cfg.warnings().empty());
  EXPECT_EQ(cfg.files(), std::vector<std::string>{tree_.Path("a.conf")});
}

TEST_F(LayeredConfigTest, EndlessIncludeChainIsAnError) {
  for (int i = 0; i < 100; ++i) {
    tree_.Write("c" + std::to_string(i) + ".conf",
                "[INCLUDES]\nbefore = c" + std::to_string(i + 1) + ".conf\n[s]\nx = 1\n");
  }
  LayeredConfig cfg(tree_.root(), &cache_);
  bool found = false;
  Status s = cfg.Read("c0", &found);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), tree_.Path("c64.conf") +
                             ": [INCLUDES] nest deeper than 64 files or pull in more than 4096");
}

TEST_F(LayeredConfigTest, ExponentialIncludeFanOutIsAnError) {
  // Each file includes the next one twice: 2^40 reads without a cap.
  for (int i = 0; i < 40; ++i) {
    std::string next = "f" + std::to_string(i + 1) + ".conf";
    tree_.Write("f" + std::to_string(i) + ".conf",
                "[INCLUDES]\nbefore = " + next + "\n  " + next + "\n[s]\nx = 1\n");
  }
  LayeredConfig cfg(tree_.root(), &cache_);
  bool found = false;
  EXPECT_FALSE(cfg.Read("f0", &found).ok());
}

TEST_F(LayeredConfigTest, KnownKeepsTheOverriddenValue) {
  tree_.Write("filter.d/f.conf", "[Definition]\nfailregex = ^stock$\n");
  tree_.Write("filter.d/f.local",
              "[Definition]\nfailregex = %(known/failregex)s\n            ^mine$\n");
  LayeredConfig& cfg = Read("filter.d/f");
  EXPECT_EQ(Get(cfg, "Definition", "failregex"), "^stock$\n^mine$");
}

TEST_F(LayeredConfigTest, KnownFallsBackToDefault) {
  tree_.Write("a.conf", "[DEFAULT]\nport = 22\n[s]\np = %(known/port)s\n");
  EXPECT_EQ(Get(Read("a"), "s", "p"), "22");
}

TEST_F(LayeredConfigTest, DefaultAndSectionReferences) {
  tree_.Write("a.conf",
              "[DEFAULT]\nbackend = auto\n[other]\nport = 5060\n"
              "[s]\nbackend = %(default/backend)s-x\nport = %(other/port)s\nme = %(__name__)s\n");
  LayeredConfig& cfg = Read("a");
  EXPECT_EQ(Get(cfg, "s", "backend"), "auto-x");
  EXPECT_EQ(Get(cfg, "s", "port"), "5060");
  EXPECT_EQ(Get(cfg, "s", "me"), "s");
}

TEST_F(LayeredConfigTest, NestedDefaultReference) {
  // As in the stock paths-common.conf: backend -> x_backend -> default/backend.
  tree_.Write("a.conf",
              "[DEFAULT]\nbackend = auto\ndefault_backend = %(default/backend)s\n"
              "x_backend = %(default_backend)s\n[s]\nbackend = %(x_backend)s\n");
  EXPECT_EQ(Get(Read("a"), "s", "backend"), "auto");
}

TEST_F(LayeredConfigTest, VarsWinOverSectionAndDefaults) {
  tree_.Write("a.conf", "[DEFAULT]\nv = d\n[s]\nv = s\nr = <%(v)s>\n");
  LayeredConfig& cfg = Read("a");
  Vars vars;
  vars.Set("v", "vars");
  EXPECT_EQ(Get(cfg, "s", "r", &vars), "<vars>");
  EXPECT_EQ(Get(cfg, "s", "r"), "<s>");
}

TEST_F(LayeredConfigTest, ConditionalSectionFoldsIntoInit) {
  tree_.Write("action.d/a.conf",
              "[Init]\nblocktype = reject\n[Init?family=inet6]\nblocktype = reject6\n");
  LayeredConfig& cfg = Read("action.d/a");
  EXPECT_EQ(Get(cfg, "Init", "blocktype"), "reject");
  EXPECT_EQ(Get(cfg, "Init", "blocktype?family=inet6"), "reject6");
  EXPECT_FALSE(cfg.HasSection("Init?family=inet6"));
}

TEST_F(LayeredConfigTest, PercentEscape) {
  tree_.Write("a.conf", "[s]\ndate = %%Y-%%m\n");
  EXPECT_EQ(Get(Read("a"), "s", "date"), "%Y-%m");
}

TEST_F(LayeredConfigTest, MissingReferenceNamesFileAndLine) {
  tree_.Write("a.conf", "[s]\n\nx = %(nope)s\n");
  EXPECT_EQ(Get(Read("a"), "s", "x"),
            "<error> " + tree_.Path("a.conf") +
                ":3: option 'x' in [s] refers to %(nope)s, which is not defined");
}

TEST_F(LayeredConfigTest, InterpolationLoopIsReportedNotFollowed) {
  tree_.Write("a.conf", "[s]\na = %(b)s\nb = %(a)s\n");
  EXPECT_EQ(Get(Read("a"), "s", "a"),
            "<error> " + tree_.Path("a.conf") +
                ":2: option 'a' in [s]: interpolation nested deeper than 10 levels (a %(...)s "
                "loop?)");
}

TEST_F(LayeredConfigTest, LonePercentIsASyntaxError) {
  tree_.Write("a.conf", "[s]\na = 100%\n");
  EXPECT_EQ(Get(Read("a"), "s", "a"),
            "<error> " + tree_.Path("a.conf") +
                ":2: option 'a' in [s]: '%' must be followed by '%' or '(' (write %% for a "
                "literal %)");
}

TEST_F(LayeredConfigTest, GetExKnownAndDefault) {
  tree_.Write("f.conf", "[DEFAULT]\nx = def\n[Definition]\nx = one\n");
  tree_.Write("f.local", "[Definition]\nx = two\n");
  LayeredConfig& cfg = Read("f");
  EXPECT_EQ(cfg.GetEx("Definition", "known/x").value, "one");
  EXPECT_EQ(cfg.GetEx("Definition", "default/x").value, "def");
  EXPECT_EQ(cfg.GetEx("Definition", "x").value, "two");
}

TEST_F(LayeredConfigTest, NothingToReadIsNotFound) {
  LayeredConfig cfg(tree_.root(), &cache_);
  bool found = true;
  ASSERT_TRUE(cfg.Read("filter.d/none", &found).ok());
  EXPECT_FALSE(found);
}

TEST_F(LayeredConfigTest, SyntaxErrorInAnOverlayStopsTheRead) {
  tree_.Write("jail.conf", "[s]\na = 1\n");
  tree_.Write("jail.local", "[s]\njunk\n");
  LayeredConfig cfg(tree_.root(), &cache_);
  bool found = false;
  Status s = cfg.Read("jail", &found);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            tree_.Path("jail.local") + ":2: expected 'name = value' or '[section]', got 'junk'");
}

}  // namespace
}  // namespace bantam
