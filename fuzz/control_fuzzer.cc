// Fuzzes the control socket's request parser: arbitrary bytes as one request
// line through ParseControlRequest (Value::ParseJson with the request depth
// limit, then the version-1 validation), and every accepted request through
// the read-only check and back out through the encoder, which must parse
// again to the same command. Any input must be handled without a crash,
// hang, leak or UB.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "bantam/control_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bantam;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  Result<ControlRequest> req = ParseControlRequest(line);
  if (req.ok()) {
    if (req->cmd.empty()) __builtin_trap();
    (void)IsReadOnlyCommand(req->cmd);
    std::string again = EncodeControlRequest(req->cmd);
    again.pop_back();
    Result<ControlRequest> back = ParseControlRequest(again);
    if (!back.ok() || back->cmd != req->cmd) __builtin_trap();
  }
  // The same bytes as a reply (the client's side of the parser).
  Result<ControlReply> reply = ParseControlReply(line);
  if (reply.ok()) {
    std::string out = EncodeControlReply(*reply);
    out.pop_back();
    if (!ParseControlReply(out).ok()) __builtin_trap();
  }
  return 0;
}
