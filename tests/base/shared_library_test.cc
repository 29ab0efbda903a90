#include "bantam/shared_library.h"

#include <gtest/gtest.h>

#include <string>

namespace bantam {
namespace {

TEST(SharedLibrary, MissingLibraryErrorNamesThePackage) {
  Result<const SharedLibrary*> lib =
      SharedLibrary::Load("libbantam-no-such-library.so.0", "bantam-no-such-package");
  ASSERT_FALSE(lib.ok());
  const std::string& m = lib.status().message();
  EXPECT_EQ(m.rfind("cannot load libbantam-no-such-library.so.0 (", 0), 0u) << m;
  const std::string tail = "); it is in the Debian package bantam-no-such-package";
  ASSERT_GE(m.size(), tail.size());
  EXPECT_EQ(m.substr(m.size() - tail.size()), tail) << m;
}

// The journal backend's library (journal_reader.cc): loaded once, its
// functions found, an unknown one an error naming it.
TEST(SharedLibrary, LoadsLibsystemdOnceAndBindsByName) {
  Result<const SharedLibrary*> lib = SharedLibrary::Load("libsystemd.so.0", "libsystemd0");
  ASSERT_TRUE(lib.ok()) << lib.status().message();
  Result<const SharedLibrary*> again = SharedLibrary::Load("libsystemd.so.0", "libsystemd0");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*lib, *again);
  int (*get_fd)(void*) = nullptr;
  EXPECT_TRUE((*lib)->Bind("sd_journal_get_fd", &get_fd).ok());
  EXPECT_NE(get_fd, nullptr);
  void (*none)() = nullptr;
  Status s = (*lib)->Bind("bantam_no_such_symbol", &none);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("libsystemd.so.0 has no bantam_no_such_symbol", 0), 0u)
      << s.message();
}

}  // namespace
}  // namespace bantam
