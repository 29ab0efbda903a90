// TempTree: a scratch directory for tests that need real files; removed
// (recursively) when the object goes away.
#ifndef BANTAM_TESTS_TESTING_TEMP_TREE_H_
#define BANTAM_TESTS_TESTING_TEMP_TREE_H_

#include <filesystem>
#include <fstream>
#include <string>

namespace bantam::testing {

class TempTree {
 public:
  TempTree() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "bantam-test-XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
  }
  ~TempTree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(const std::string& rel) const { return root_ + "/" + rel; }

  // Writes `text` to root/rel, creating parent directories.
  void Write(const std::string& rel, const std::string& text) const {
    std::filesystem::path p = Path(rel);
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  }

 private:
  std::string root_;
};

}  // namespace bantam::testing

#endif  // BANTAM_TESTS_TESTING_TEMP_TREE_H_
