// What a test does when a program, an oracle or a privilege it needs is
// missing: under CI (a non-empty $CI; CI runs with CI=true) it fails with a
// sentence naming the Debian package, so a machine set up wrong cannot pass
// by skipping; elsewhere it is skipped with the same sentence.
#ifndef BANTAM_TESTS_TESTING_REQUIRE_H_
#define BANTAM_TESTS_TESTING_REQUIRE_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace bantam::testing {

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && *ci != '\0';
}

// "needs WHAT (Debian package PACKAGE); set up with packaging/setup.sh",
// then `detail` (say, the probe's stderr) on the next line if there is one.
inline std::string NeedsTool(std::string_view what, std::string_view package,
                             std::string_view detail = {}) {
  std::string s = "needs " + std::string(what) + " (Debian package " + std::string(package) +
                  "); set up with packaging/setup.sh";
  if (!detail.empty()) s += "\n" + std::string(detail);
  return s;
}

// "needs root (WHY); run the tests as root (sudo tests/run.sh)".
inline std::string NeedsRoot(std::string_view why) {
  return "needs root (" + std::string(why) + "); run the tests as root (sudo tests/run.sh)";
}

}  // namespace bantam::testing

// Fails (under CI) or skips the test with `message` when `condition` is
// false. Like GTEST_SKIP it returns from the enclosing function: use it in a
// TEST body or a fixture's SetUp(), never in a helper the test calls.
#define BANTAM_REQUIRE(condition, message) \
  do {                                     \
    if (!(condition)) {                    \
      if (::bantam::testing::InCi()) {     \
        GTEST_FAIL() << (message);         \
      } else {                             \
        GTEST_SKIP() << (message);         \
      }                                    \
    }                                      \
  } while (0)

// BANTAM_REQUIRE_TOOL(fs::exists(kNft), "/usr/sbin/nft", "nftables")
#define BANTAM_REQUIRE_TOOL(condition, what, package) \
  BANTAM_REQUIRE(condition, ::bantam::testing::NeedsTool(what, package))

// BANTAM_REQUIRE_ROOT(geteuid() == 0, "a network namespace of its own")
#define BANTAM_REQUIRE_ROOT(condition, why) \
  BANTAM_REQUIRE(condition, ::bantam::testing::NeedsRoot(why))

#endif  // BANTAM_TESTS_TESTING_REQUIRE_H_
