// AmiSource: Asterisk's security events read live from the Asterisk
// Manager Interface (`backend = ami[host=127.0.0.1, port=5038,
// username=bantam, secret_file=/etc/bantam/ami.secret]`), each handed to
// the jail as the line Asterisk's security log would hold (ami_protocol.h).
//
// A non-blocking TCP client on the daemon's event loop: connect, read the
// banner, `Action: Login` with `Events: security`, then read events. When
// the connection is refused, drops, or the login is refused, it retries
// after 1 s, 2 s, 4 s ... at most 60 s, and says so once per outage. Its
// fd() is an epoll set of its own (socket and retry timer), so it stays the
// same across reconnects and the daemon registers it once. A logged-in
// connection is checked with Action: Ping every minute.
#ifndef BANTAM_AMI_SOURCE_H_
#define BANTAM_AMI_SOURCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/ami_protocol.h"
#include "bantam/line_source.h"
#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

// The options of backend = ami[...].
struct AmiOptions {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal ("localhost": 127.0.0.1)
  uint16_t port = 5038;
  std::string username;
  std::optional<std::string> secret;       // inline (warned about)
  std::optional<std::string> secret_file;  // read at each connection attempt
  std::string events = "security";         // the Login's Events: header
};

// Parses the option map of ami[...]. Errors name the option, e.g.
// "ami backend: unknown option 'hots'"; `warnings` gets the advice that is
// no error (an inline secret). Checks no file.
Result<AmiOptions> ParseAmiOptions(const OrderedMap<std::string>& backend_options,
                                   std::vector<std::string>* warnings);

// Reads the secret: the file's first line (secret_file) or the inline one.
// `warning` is set when the file is readable by others.
Result<std::string> LoadAmiSecret(const AmiOptions& options, std::string* warning);

// The source of one jail. Owned by the daemon; event-loop thread only.
class AmiSource final : public LineSource {
 public:
  enum class Level { kDebug, kInfo, kWarning, kError };
  using NoticeCallback = std::function<void(Level level, const std::string& message)>;
  // Seconds since the epoch, for events without a readable EventTV.
  using WallClock = std::function<double()>;

  struct Timing {
    std::chrono::milliseconds first_retry{1000};
    std::chrono::milliseconds max_retry{60000};
    // From connect to logged in, and from a Ping to its answer; a server
    // that says nothing is an outage.
    std::chrono::milliseconds handshake{10000};
    // How often a logged-in connection is checked with Action: Ping.
    std::chrono::milliseconds ping_interval{60000};
  };

  // Creates the epoll set; connects only at Start().
  static Result<std::unique_ptr<AmiSource>> Create(SubscriberId subscriber, AmiOptions options,
                                                   LineCallback on_line, NoticeCallback on_notice,
                                                   WallClock wall_clock, Timing timing);
  static Result<std::unique_ptr<AmiSource>> Create(SubscriberId subscriber, AmiOptions options,
                                                   LineCallback on_line, NoticeCallback on_notice,
                                                   WallClock wall_clock) {
    return Create(subscriber, std::move(options), std::move(on_line), std::move(on_notice),
                  std::move(wall_clock), Timing());
  }
  ~AmiSource() override;
  AmiSource(const AmiSource&) = delete;
  AmiSource& operator=(const AmiSource&) = delete;

  // Starts the first connection attempt (non-blocking).
  void Start();

  // Where the connection stands, for status and tests.
  enum class State { kIdle, kConnecting, kBanner, kLogin, kConnected, kWaiting };
  State state() const { return state_; }
  // The delay before the next attempt while kWaiting (the last one used).
  std::chrono::milliseconds retry_delay() const { return retry_; }
  uint64_t connects() const { return connects_; }  // successful logins
  uint64_t attempts() const { return attempts_; }  // connection attempts

  // LineSource
  int fd() const override { return epoll_fd_; }
  std::chrono::milliseconds poll_interval() const override { return {}; }
  const char* log_component() const override { return "bantam.ami"; }
  Status Process() override;
  Status Poll() override { return Status::Ok(); }
  void Unsubscribe(SubscriberId subscriber) override;
  bool has_subscribers() const override { return !subscribers_.empty(); }
  // A live stream has no position worth saving.
  void Positions(bool, std::vector<SourcePosition>*) const override {}
  void MarkSaved(const SourcePosition&) override {}
  // "File list": "ami://USER@HOST:PORT (connected)", or the state and why.
  SourceStatus StatusOf(SubscriberId subscriber) const override;

 private:
  AmiSource(SubscriberId subscriber, AmiOptions options, LineCallback on_line,
            NoticeCallback on_notice, WallClock wall_clock, Timing timing, int epoll_fd,
            int timer_fd);
  void Connect();
  // The connection failed or ended: close it, report, wait retry_.
  // `our_fault`: the login was refused or the secret is unreadable, an
  // ERROR (once until the next login) rather than an outage's WARNING.
  void Fail(const std::string& why, bool our_fault = false);
  void CloseSocket();
  void ArmTimer(std::chrono::milliseconds delay);
  void WatchSocket(bool want_write);
  void OnWritable();
  void OnReadable();
  void Flush();
  void OnBanner(std::string_view banner);
  void OnMessage(const AmiMessage& message);
  void OnDrop(std::string_view why);
  void KeepAlive();
  void Notice(Level level, const std::string& message) {
    if (on_notice_) on_notice_(level, message);
  }
  std::string Peer() const;

  std::vector<SubscriberId> subscribers_;
  AmiOptions options_;
  LineCallback on_line_;
  NoticeCallback on_notice_;
  WallClock wall_clock_;
  Timing timing_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int sock_ = -1;
  State state_ = State::kIdle;
  std::chrono::milliseconds retry_;
  bool in_outage_ = false;       // a failure was reported and no login since
  bool error_reported_ = false;  // an ERROR (our_fault) since the last login
  std::string last_error_;       // why the last attempt failed, for status
  uint64_t connects_ = 0, attempts_ = 0;
  std::string origin_;     // "ami://USER@HOST:PORT", the lines' origin
  std::string secret_;     // from Connect() until the Login is queued
  uint64_t sock_gen_ = 0;  // tags the socket's epoll events (0: the timer)
  std::string out_;        // bytes still to send
  bool ping_pending_ = false;
  AmiFramer framer_;
  SecurityLine line_;  // reused
};

}  // namespace bantam

#endif  // BANTAM_AMI_SOURCE_H_
