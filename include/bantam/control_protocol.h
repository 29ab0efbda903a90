// The control socket's wire protocol, version 1: how `bantam` (the client)
// talks to bantamd. fail2ban pickles Python objects over its socket; bantam
// speaks JSON lines carrying the same command words and the same reply
// values, so the client can print exactly what fail2ban-client prints.
//
// Transport: a unix stream socket at the `socket` path of fail2ban.conf /
// .local (bantamd -s overrides it). bantamd creates it mode 0600 owned by
// root, or 0660 root:GROUP when fail2ban.conf/.local [Definition] sets the
// bantam option `socketgroup = GROUP`. A stale socket file is removed at
// start; if another server answers on the path, bantamd refuses to start.
// bantamd removes the socket at exit.
//
// Framing: one request per line, UTF-8 JSON terminated by "\n", at most
// kMaxControlLineBytes including the "\n"; each reply is one JSON line. A
// connection may carry several requests; replies come in request order.
//
// Request:   {"v": 1, "cmd": ["status", "asterisk"]}
//   `cmd` is the list of command words (strings) exactly as fail2ban-client
//   sends them to fail2ban-server: ["set","asterisk","banip","1.2.3.4"],
//   ["get","asterisk","banip","--with-time"], ["unban","--all"], ["ping"],
//   ["banned","1.2.3.4"], ["stop"], ... Other keys are ignored (room for
//   later versions). Differences from fail2ban's commands:
//   - ["reload", OPTS..., JAIL?] with OPTS from --restart --unban --all
//     --if-exists: the server re-reads its own configuration instead of
//     receiving the client's stream (fail2ban's ["reload", name, opts,
//     stream] is not accepted). Reply value "OK".
//   - ["status", "--all", FLAVOR?] and the "stats" flavor follow fail2ban
//     1.1 (1.0.2 has neither).
//   - ["stop"] is answered before the server stops.
//
// Success:   {"v": 1, "ok": true, "value": V}
//   V is what fail2ban 1.0.2's Transmitter.proceed(cmd) returns as the
//   second element of its (0, V) reply, as JSON: tuples and sets become
//   arrays, None null, dicts objects (keeping their order), IPAddr objects
//   their str().
// Failure:   {"v": 1, "ok": false,
//             "error": {"type": "UnknownJailException", "args": ["asterisk"],
//                       "message": "'asterisk'"}}
//   fail2ban's (1, exception) reply: `type` is the Python class fail2ban
//   raises in that case (UnknownJailException, ValueError, KeyError,
//   Exception, ...), `args` its args and `message` its str(). bantam adds:
//   - "PermissionError": the peer may not run the command (see below).
//   - "ProtocolError": the line was not a valid request (bad JSON, missing
//     or wrong "v"/"cmd", over the size limit); the server then closes the
//     connection.
//   - "ServerBusy": the connection is closed for want of a slot: too many
//     connections in all, or from this uid, or it was evicted to make room
//     for root or for a user holding fewer (see ConnectionLimits in
//     control_server.h); the message says which. It can come unasked,
//     before any request or between two.
//
// Permissions are decided per connection from the peer's credentials
// (SO_PEERCRED / SO_PEERGROUPS), never from anything the client says:
// uid 0 may run every command; a member of `socketgroup` (primary or
// supplementary group) may run only the read-only commands (ping, version,
// echo, status, banned, get ..., server-status); anyone else is refused.
#ifndef BANTAM_CONTROL_PROTOCOL_H_
#define BANTAM_CONTROL_PROTOCOL_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

inline constexpr int kControlProtocolVersion = 1;
// A request line, "\n" included, may be at most this long.
inline constexpr size_t kMaxControlLineBytes = 1 << 20;
// JSON nesting allowed in a request ({"cmd": [...]} needs 2).
inline constexpr int kMaxControlRequestDepth = 8;

struct ControlRequest {
  std::vector<std::string> cmd;  // never empty
};

// Parses one request line (without its "\n"). Error: why it is not a valid
// version-1 request ("JSON: offset 3: ...", "'cmd' must be a non-empty list
// of strings", "unsupported protocol version 2").
Result<ControlRequest> ParseControlRequest(std::string_view line);
// The request line for `cmd`, "\n" included (what the client sends).
std::string EncodeControlRequest(const std::vector<std::string>& cmd);

// A Python exception as the protocol carries it.
struct ControlError {
  std::string type;  // "ValueError", "UnknownJailException", ...
  Value::List args;
  std::string message;  // str(exception)
};

// A reply: a value or an error.
struct ControlReply {
  bool ok = true;
  Value value;
  ControlError error;

  static ControlReply Success(Value v) {
    ControlReply r;
    r.value = std::move(v);
    return r;
  }
  static ControlReply Failure(ControlError e) {
    ControlReply r;
    r.ok = false;
    r.error = std::move(e);
    return r;
  }
  // An exception whose only argument is `message` (str() is the message):
  // Exception("Invalid command"), ValueError("not banned: ['1.2.3.4']").
  static ControlReply Failure(std::string type, std::string message);
  // Python's KeyError-style exception of one argument, whose str() is the
  // repr of the argument: UnknownJailException('asterisk') -> "'asterisk'".
  static ControlReply KeyFailure(std::string type, const std::string& key);
};

// The reply line, "\n" included.
std::string EncodeControlReply(const ControlReply& reply);
// Parses a reply line (without its "\n"). Error: not a valid v1 reply.
Result<ControlReply> ParseControlReply(std::string_view line);

// True for the commands that change nothing, which the read-only group may
// run: ping, version, echo, server-status, status ..., banned ...,
// get ... (every get).
bool IsReadOnlyCommand(const std::vector<std::string>& cmd);

}  // namespace bantam

#endif  // BANTAM_CONTROL_PROTOCOL_H_
