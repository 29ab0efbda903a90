// Unix stream socket addresses, shared by the control socket and the
// metrics endpoint.
#ifndef BANTAM_UNIX_SOCKET_H_
#define BANTAM_UNIX_SOCKET_H_

#include <sys/un.h>

#include <string>

#include "bantam/status.h"

namespace bantam {

// The address of `path`; an error when it is empty or does not fit
// sun_path.
Result<sockaddr_un> UnixSocketAddress(const std::string& path);

// Whether a server answers at `addr`: a connect that is accepted or queued
// (EAGAIN: a listener whose backlog is full is still a live server). Tells
// a socket in use from one a dead process left behind.
bool UnixSocketAnswers(const sockaddr_un& addr);

}  // namespace bantam

#endif  // BANTAM_UNIX_SOCKET_H_
