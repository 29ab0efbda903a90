// Helpers shared by the store's fault and turn tests: raw SQL on a file,
// bans to write, and running a scenario in a forked child (for what a test
// must not do to the whole test binary: drop privileges, enter a mount
// namespace, be killed).
#ifndef BANTAM_TESTS_STORE_STORE_TEST_UTIL_H_
#define BANTAM_TESTS_STORE_STORE_TEST_UTIL_H_

#include <linux/capability.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bantam/ban_store.h"

namespace bantam::store_test {

inline StoredBan Ban(std::string ip, int64_t time, int64_t bantime, int64_t bancount = 1,
                     std::vector<std::string> matches = {}, int64_t failures = 1) {
  StoredBan b;
  b.ip = std::move(ip);
  b.time = time;
  b.bantime = bantime;
  b.bancount = bancount;
  b.data.matches = std::move(matches);
  b.data.failures = failures;
  return b;
}

// "10.x.y.z" for i.
inline std::string Ip(int i) {
  return "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) + "." +
         std::to_string(i & 255);
}

// Runs `sql` on `path` directly, bypassing BanStore; rows as "a|b\n", an
// error as "ERROR: message".
inline std::string RawSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  std::string out;
  char* err = nullptr;
  sqlite3_exec(
      db, sql.c_str(),
      [](void* arg, int n, char** vals, char**) {
        auto* o = static_cast<std::string*>(arg);
        for (int i = 0; i < n; ++i) *o += (i ? "|" : "") + std::string(vals[i] ? vals[i] : "NULL");
        *o += "\n";
        return 0;
      },
      &out, &err);
  if (err) {
    out += std::string("ERROR: ") + err;
    sqlite3_free(err);
  }
  sqlite3_close(db);
  return out;
}

// Runs `body` in a forked child and returns what it returned: "" means
// success (reported as "ok"), anything else describes the failure. A child
// that dies is reported too. Use CHILD_CHECK inside (gtest's macros do not
// reach the parent).
inline std::string InChild(const std::function<std::string()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(fds[0]);
    std::string r = body();
    if (r.empty()) r = "ok";
    size_t off = 0;
    while (off < r.size()) {
      ssize_t n = ::write(fds[1], r.data() + off, r.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    out += " [child died, status " + std::to_string(status) + "]";
  }
  return out;
}

#define CHILD_CHECK(cond, detail)                                                           \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      return std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #cond + ": " + \
             std::string(detail);                                                           \
    }                                                                                       \
  } while (0)

// Makes this (child) process root without the powers to ignore file modes,
// as a daemon running as an ordinary user is: a 0444 file or a 0555
// directory is then really read-only to it.
inline bool DropFileModeOverride() {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  const uint32_t drop = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER);
  data[0].effective &= ~drop;
  data[0].permitted &= ~drop;
  data[0].inheritable &= ~drop;
  return ::syscall(SYS_capset, &header, data) == 0;
}

}  // namespace bantam::store_test

#endif  // BANTAM_TESTS_STORE_STORE_TEST_UTIL_H_
