// The Asterisk Manager Interface (AMI) as bantam reads it: the framing of
// the stream (a banner line, then "Key: value" lines ended by CRLF, each
// message ended by an empty line) and the rendering of one security event
// as the line Asterisk's security log channel (res_security_log) writes for
// it, so that filters written for the log file match events read from AMI.
//
// Pure functions and a byte-fed parser, no I/O: AmiSource (ami_source.h)
// feeds it from a socket, bantam-regex from a saved capture, the fuzzer
// from anything.
#ifndef BANTAM_AMI_PROTOCOL_H_
#define BANTAM_AMI_PROTOCOL_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bantam {

// One AMI message: its headers in the order received. The views point into
// the AmiFramer that produced it and are valid during its callback only.
struct AmiMessage {
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  // The first value of `key` (AMI keys are case-insensitive), or nullopt.
  std::optional<std::string_view> Find(std::string_view key) const;
};

// Splits an AMI byte stream into messages. Lines end with CRLF (a bare LF
// is accepted too). A message longer than kMaxMessage bytes, or holding a
// line that is no "Key: value" header, is dropped (on_drop says why) and
// the stream resynchronised at the next empty line. Not thread-safe.
class AmiFramer {
 public:
  static constexpr size_t kMaxMessage = 64 * 1024;

  struct Callbacks {
    // The first line when it starts with "Asterisk Call Manager/".
    std::function<void(std::string_view banner)> on_banner;
    std::function<void(const AmiMessage& message)> on_message;
    std::function<void(std::string_view why)> on_drop;
  };
  // `expect_banner`: the first line may be the banner (a live connection,
  // or a capture that starts with it).
  AmiFramer(Callbacks callbacks, bool expect_banner);
  AmiFramer(const AmiFramer&) = delete;
  AmiFramer& operator=(const AmiFramer&) = delete;

  // Consumes `bytes`; calls back for every line completed in it.
  void Feed(std::string_view bytes);
  // The stream ended: a message not yet ended by an empty line is dropped
  // (returns true if there was one, which on_drop was not told about).
  bool Finish();
  // Starts over, as for a new connection (expecting the banner again).
  void Reset(bool expect_banner);

 private:
  void OnLine(std::string_view line);
  void Drop(std::string_view why);

  Callbacks cb_;
  bool expect_banner_;
  bool skipping_ = false;       // dropping lines until the next empty one
  bool line_too_long_ = false;  // dropping bytes until the next LF
  std::string partial_;         // an unfinished line
  std::string bytes_;           // the current message's headers, key and value back to back
  struct Span {
    size_t key, key_len, value, value_len;
  };
  std::vector<Span> spans_;
  size_t message_size_ = 0;  // bytes of the current message, line ends included
  AmiMessage message_;       // reused
};

// One security event rendered as res_security_log writes it.
struct SecurityLine {
  // "[2024-03-03 09:16:00] SECURITY[0] res_security_log.c: SecurityEvent=\"InvalidPassword\",
  // EventTV=\"...\",Severity=\"Error\",...": the date is EventTV's wall clock
  // (Asterisk's own zone), the thread id 0 (AMI does not say it).
  std::string line;
  // EventTV as epoch seconds, or `now` when it is absent or unreadable
  // (then time_from_event is false).
  double time = 0;
  bool time_from_event = false;
  // The EventTV text ("" when absent).
  std::string event_tv;
  // Severity is "Informational" (SuccessfulAuth, ChallengeSent, ...):
  // ordinary traffic. AmiSource and bantam-regex hand such events to no
  // filter, so that no filter, however broad, bans on them.
  bool informational = false;
};

// True when `message` is a security event (a known security event name, or
// an event carrying EventTV, Severity and Service) and renders it into
// *out; false for anything else (responses, FullyBooted, call events).
// The fields follow "SecurityEvent" in the order Asterisk sent them, which
// is the order its security log uses (required fields, then the optional
// ones present); the headers the manager itself adds (Privilege, Timestamp,
// SystemName, SequenceNumber, File, Line, Func) are left out. Values are
// copied verbatim, unescaped, as res_security_log does. `now` (epoch
// seconds) dates an event whose EventTV is missing or unreadable.
bool FormatSecurityEvent(const AmiMessage& message, double now, SecurityLine* out);

// Epoch seconds of an EventTV: "2024-03-03T09:16:00.120+0000" (Asterisk 12
// and later) or "1283174065-307531" (seconds-microseconds, Asterisk 1.8 to
// 11). nullopt for anything else.
std::optional<double> ParseEventTv(std::string_view text);

// Whether a file's text is an AMI capture rather than a log: it starts with
// the banner or with an "Event:" header.
bool LooksLikeAmiCapture(std::string_view head);

}  // namespace bantam

#endif  // BANTAM_AMI_PROTOCOL_H_
