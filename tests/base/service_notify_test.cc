#include "bantam/service_notify.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

// A datagram socket bound where a service manager would listen: a path,
// or an abstract name when `name` starts with '@'.
class Listener {
 public:
  explicit Listener(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, name.data(), name.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (name[0] == '@') {
      addr.sun_path[0] = '\0';
    } else {
      ++len;  // the NUL
    }
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0;
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  bool bound() const { return bound_; }

  // The next datagram, waiting up to 5 s; nullopt if none came.
  std::optional<std::string> Receive() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  // Whether another datagram is queued (none should be: one per call).
  bool Pending() {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

// Sets NOTIFY_SOCKET for one test, restoring what was there.
class ScopedNotifySocket {
 public:
  explicit ScopedNotifySocket(const char* value) {
    if (const char* old = ::getenv("NOTIFY_SOCKET")) old_ = old;
    if (value) {
      ::setenv("NOTIFY_SOCKET", value, 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }
  ~ScopedNotifySocket() {
    if (old_) {
      ::setenv("NOTIFY_SOCKET", old_->c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }

 private:
  std::optional<std::string> old_;
};

TEST(ServiceNotify, SendsOneDatagramToAPath) {
  testing::TempTree tree;
  const std::string path = tree.Path("notify");
  Listener listener(path);
  ASSERT_TRUE(listener.bound()) << strerror(errno);
  ScopedNotifySocket env(path.c_str());

  Result<bool> sent = NotifyServiceManager("READY=1");
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_TRUE(*sent);
  EXPECT_EQ(listener.Receive(), "READY=1");
  EXPECT_FALSE(listener.Pending());

  // The variable stays (sd_notify(0, ...)): a reload notifies again.
  ASSERT_NE(::getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_EQ(std::string(::getenv("NOTIFY_SOCKET")), path);
  sent = NotifyServiceManager("RELOADING=1");
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_EQ(listener.Receive(), "RELOADING=1");
}

TEST(ServiceNotify, SendsToAnAbstractName) {
  const std::string name = "@bantam-notify-test-" + std::to_string(::getpid());
  Listener listener(name);
  ASSERT_TRUE(listener.bound()) << strerror(errno);
  ScopedNotifySocket env(name.c_str());

  // Several assignments travel in one datagram, bytes unchanged.
  Result<bool> sent = NotifyServiceManager("STATUS=2 jails\nREADY=1");
  ASSERT_TRUE(sent.ok()) << sent.status().message();
  EXPECT_TRUE(*sent);
  EXPECT_EQ(listener.Receive(), "STATUS=2 jails\nREADY=1");
  EXPECT_FALSE(listener.Pending());
}

TEST(ServiceNotify, AbstractNameIsNotAPath) {
  // "@name" must reach the abstract socket, not a file named "@name" in
  // the working directory (nor the abstract name with a trailing NUL).
  const std::string name = "@bantam-notify-exact-" + std::to_string(::getpid());
  Listener with_nul(name + std::string(1, '\0'));
  ASSERT_TRUE(with_nul.bound()) << strerror(errno);
  Status s = NotifySocket(name, "READY=1");
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(with_nul.Pending());
}

TEST(ServiceNotify, UnsetOrEmptyVariableSendsNothing) {
  {
    ScopedNotifySocket env(nullptr);
    Result<bool> sent = NotifyServiceManager("READY=1");
    ASSERT_TRUE(sent.ok()) << sent.status().message();
    EXPECT_FALSE(*sent);
  }
  {
    ScopedNotifySocket env("");
    Result<bool> sent = NotifyServiceManager("READY=1");
    ASSERT_TRUE(sent.ok()) << sent.status().message();
    EXPECT_FALSE(*sent);
  }
}

TEST(ServiceNotify, ErrorsNameTheSocket) {
  testing::TempTree tree;
  const std::string gone = tree.Path("nobody-listens");
  {
    ScopedNotifySocket env(gone.c_str());
    Result<bool> sent = NotifyServiceManager("STOPPING=1");
    ASSERT_FALSE(sent.ok());
    EXPECT_EQ(sent.status().message(),
              "notify socket '" + gone + "': No such file or directory");
  }
  EXPECT_EQ(NotifySocket("run/notify", "READY=1").message(),
            "notify socket 'run/notify': neither an absolute path nor an abstract name ('@...')");
  EXPECT_EQ(NotifySocket("/" + std::string(107, 'x'), "READY=1").message(),
            "notify socket '/" + std::string(107, 'x') + "': longer than 107 bytes");
  EXPECT_EQ(NotifySocket(gone, "").message(), "notify socket '" + gone + "': empty state");
  // 107 bytes of abstract name fit (no NUL is sent with them).
  std::string longest = "@bantam-notify-" + std::to_string(::getpid()) + "-";
  longest.resize(108, 'n');
  Listener listener(longest);
  ASSERT_TRUE(listener.bound()) << strerror(errno);
  EXPECT_TRUE(NotifySocket(longest, "WATCHDOG=1").ok());
  EXPECT_EQ(listener.Receive(), "WATCHDOG=1");
}

}  // namespace
}  // namespace bantam
