#include "bantam/service_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

namespace bantam {

Status NotifySocket(std::string_view socket, std::string_view state) {
  const std::string shown = "notify socket '" + std::string(socket) + "'";
  if (state.empty()) return Status::Error(shown + ": empty state");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // As libsystemd: a path is sent with its terminating NUL; an abstract
  // name ('@' read as the leading NUL) is exactly its bytes.
  const bool abstract = !socket.empty() && socket.front() == '@';
  if (socket.empty() || (socket.front() != '/' && !abstract)) {
    return Status::Error(shown + ": neither an absolute path nor an abstract name ('@...')");
  }
  if (socket.size() + (abstract ? 0 : 1) > sizeof addr.sun_path) {
    return Status::Error(shown + ": longer than " + std::to_string(sizeof addr.sun_path - 1) +
                         " bytes");
  }
  memcpy(addr.sun_path, socket.data(), socket.size());
  if (abstract) addr.sun_path[0] = '\0';
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() + (abstract ? 0 : 1));

  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(shown + ": socket", errno);
  ssize_t sent;
  do {
    // Blocking, as sd_notify: a READY=1 dropped because the manager's
    // queue was full would fail the start.
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr), len);
  } while (sent < 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  if (sent < 0) return Status::FromErrno(shown, err);
  return Status::Ok();
}

Result<bool> NotifyServiceManager(std::string_view state) {
  const char* socket = ::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || *socket == '\0') return false;
  if (Status s = NotifySocket(socket, state); !s.ok()) return s;
  return true;
}

}  // namespace bantam
