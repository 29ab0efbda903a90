// The service manager's readiness protocol (sd_notify(3)), spoken without
// libsystemd.
//
// Linking libsystemd for sd_notify alone made every start of every program
// load seven more shared objects (libsystemd brings libcap, libgcrypt,
// libgpg-error, liblzma, libzstd and liblz4): about a quarter of bantamd's
// start-up (bench/README.md, issue 15). The protocol is one datagram of
// newline-separated assignments ("READY=1", "STATUS=...") sent to the
// AF_UNIX datagram socket that $NOTIFY_SOCKET names: a path, or a name in
// the abstract namespace when it starts with '@'. libsystemd is loaded
// only for a journal backend (journal_reader.h).
#ifndef BANTAM_SERVICE_NOTIFY_H_
#define BANTAM_SERVICE_NOTIFY_H_

#include <string_view>

#include "bantam/status.h"

namespace bantam {

// sd_notify(0, state): sends `state` to $NOTIFY_SOCKET, which stays set
// (a reload's RELOADING=1 and READY=1 go to the same place). false when
// the variable is unset or empty (no service manager listens), true once
// the datagram is sent; an error names the socket and the reason.
Result<bool> NotifyServiceManager(std::string_view state);

// The same, to `socket` as $NOTIFY_SOCKET spells it ("/run/...", "@name").
// An error for a name that is neither or does not fit sun_path, for an
// empty state, and when the send fails (no such socket: ENOENT for a path,
// ECONNREFUSED for an abstract name).
Status NotifySocket(std::string_view socket, std::string_view state);

}  // namespace bantam

#endif  // BANTAM_SERVICE_NOTIFY_H_
