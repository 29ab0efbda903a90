// Helpers for tests that drive fail2ban's own Python as an oracle: text is
// passed both ways hex-encoded (any byte survives), records are split on
// tabs and newlines, and the interpreter runs through the shell with its
// stderr kept for the failure message.
#ifndef BANTAM_TESTS_TESTING_ORACLE_IO_H_
#define BANTAM_TESTS_TESTING_ORACLE_IO_H_

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "temp_tree.h"

namespace bantam::testing {

// Lower-case hex of every byte ("" for "").
inline std::string HexEncode(std::string_view s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

inline std::string HexDecode(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  }
  return out;
}

// Python's s.split(sep): every piece, empty ones included.
inline std::vector<std::string> SplitOn(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.emplace_back(s.substr(start, at == std::string_view::npos ? s.npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

// Runs `command` through /bin/sh with its stderr in dir/stderr.txt.
// Returns stdout; nullopt if it could not run or exited non-zero, with the
// exit status and stderr in *err.
inline std::optional<std::string> RunShell(const std::string& command, const TempTree& dir,
                                           std::string* err) {
  const std::string err_file = dir.Path("stderr.txt");
  FILE* pipe = ::popen((command + " 2>'" + err_file + "'").c_str(), "r");
  if (pipe == nullptr) {
    *err = "cannot run";
    return std::nullopt;
  }
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0) {
    std::ifstream in(err_file);
    std::stringstream text;
    text << in.rdbuf();
    *err = "status " + std::to_string(status) + "\n" + text.str();
    return std::nullopt;
  }
  return out;
}

}  // namespace bantam::testing

#endif  // BANTAM_TESTS_TESTING_ORACLE_IO_H_
