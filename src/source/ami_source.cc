#include "bantam/ami_source.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace bantam {
namespace {

constexpr uint64_t kTimerTag = 0;
// Bytes read from the socket per Process(), so a flood is spread over loop
// turns and the other jails get theirs.
constexpr size_t kReadBudget = 256 * 1024;

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

struct Address {
  sockaddr_storage ss = {};
  socklen_t len = 0;
};

std::optional<Address> ToAddress(const std::string& host, uint16_t port) {
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof *v4;
    return a;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof *v6;
    return a;
  }
  return std::nullopt;
}

std::string Seconds(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

}  // namespace

Result<AmiOptions> ParseAmiOptions(const OrderedMap<std::string>& backend_options,
                                   std::vector<std::string>* warnings) {
  AmiOptions o;
  bool have_user = false;
  for (const auto& [key, value] : backend_options) {
    if (key == "host") {
      o.host = value == "localhost" ? "127.0.0.1" : value;
      if (!ToAddress(o.host, 1))
        return Status::Error("ami backend: host = '" + value +
                             "' is not an IP address (or localhost); bantam does no DNS here");
    } else if (key == "port") {
      int port = 0;
      bool digits =
          !value.empty() && value.size() <= 5 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (digits) port = std::stoi(value);
      if (!digits || port < 1 || port > 65535)
        return Status::Error("ami backend: port = '" + value + "' is not a port number (1-65535)");
      o.port = static_cast<uint16_t>(port);
    } else if (key == "username") {
      if (value.empty() || HasControl(value))
        return Status::Error("ami backend: username must be non-empty, on one line");
      o.username = value;
      have_user = true;
    } else if (key == "secret") {
      // Never echo the value.
      if (value.empty() || HasControl(value))
        return Status::Error("ami backend: secret must be non-empty, on one line");
      o.secret = value;
    } else if (key == "secret_file") {
      if (value.empty()) return Status::Error("ami backend: secret_file is empty");
      o.secret_file = value;
    } else if (key == "events") {
      bool ok = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ',' || c == '_';
      });
      if (!ok)
        return Status::Error("ami backend: events = '" + value +
                             "' is not a comma-separated list of event classes");
      o.events = value;
    } else {
      return Status::Error("ami backend: unknown option '" + key +
                           "' (known: host, port, username, secret, secret_file, events)");
    }
  }
  if (!have_user) return Status::Error("ami backend: username is missing");
  if (o.secret && o.secret_file)
    return Status::Error("ami backend: give secret_file or secret, not both");
  if (!o.secret && !o.secret_file) return Status::Error("ami backend: secret_file is missing");
  if (o.secret && warnings) {
    warnings->push_back(
        "ami backend: the AMI secret is written in the jail configuration; "
        "put it in a file only root can read and name it with secret_file=");
  }
  return o;
}

Result<std::string> LoadAmiSecret(const AmiOptions& options, std::string* warning) {
  if (!options.secret_file) return options.secret.value_or(std::string());
  const std::string& path = *options.secret_file;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::FromErrno("ami backend: secret_file '" + path + "'", errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("ami backend: secret_file '" + path + "'", err);
  }
  if (warning && (st.st_mode & S_IROTH)) {
    *warning = "ami backend: secret_file '" + path +
               "' is readable by every user; make it readable by root only (chmod 600)";
  }
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  int err = errno;
  close(fd);
  if (n < 0) return Status::FromErrno("ami backend: reading secret_file '" + path + "'", err);
  std::string_view text(buf, static_cast<size_t>(n));
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  if (text.empty()) return Status::Error("ami backend: secret_file '" + path + "' is empty");
  if (HasControl(text))
    return Status::Error("ami backend: secret_file '" + path + "' holds control characters");
  return std::string(text);
}

Result<std::unique_ptr<AmiSource>> AmiSource::Create(SubscriberId subscriber, AmiOptions options,
                                                     LineCallback on_line, NoticeCallback on_notice,
                                                     WallClock wall_clock, Timing timing) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Status::FromErrno("ami: epoll_create1", errno);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) {
    int err = errno;
    close(ep);
    return Status::FromErrno("ami: timerfd_create", err);
  }
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerTag;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0) {
    int err = errno;
    close(tfd);
    close(ep);
    return Status::FromErrno("ami: epoll_ctl", err);
  }
  return std::unique_ptr<AmiSource>(new AmiSource(subscriber, std::move(options),
                                                  std::move(on_line), std::move(on_notice),
                                                  std::move(wall_clock), timing, ep, tfd));
}

AmiSource::AmiSource(SubscriberId subscriber, AmiOptions options, LineCallback on_line,
                     NoticeCallback on_notice, WallClock wall_clock, Timing timing, int epoll_fd,
                     int timer_fd)
    : subscribers_{subscriber},
      options_(std::move(options)),
      on_line_(std::move(on_line)),
      on_notice_(std::move(on_notice)),
      wall_clock_(std::move(wall_clock)),
      timing_(timing),
      epoll_fd_(epoll_fd),
      timer_fd_(timer_fd),
      retry_(timing.first_retry),
      framer_(AmiFramer::Callbacks{[this](std::string_view b) { OnBanner(b); },
                                   [this](const AmiMessage& m) { OnMessage(m); },
                                   [this](std::string_view why) { OnDrop(why); }},
              true) {
  origin_ = "ami://" + options_.username + "@" + Peer();
}

AmiSource::~AmiSource() {
  if (sock_ >= 0 && state_ == State::kConnected) {
    // Best effort: a polite goodbye if the socket takes it at once.
    static constexpr char kLogoff[] = "Action: Logoff\r\n\r\n";
    ssize_t ignored = send(sock_, kLogoff, sizeof kLogoff - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
  }
  CloseSocket();
  if (timer_fd_ >= 0) close(timer_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

std::string AmiSource::Peer() const {
  const bool v6 = options_.host.find(':') != std::string::npos;
  return (v6 ? "[" + options_.host + "]" : options_.host) + ":" + std::to_string(options_.port);
}

void AmiSource::Start() {
  if (state_ != State::kIdle) return;
  std::string warning;
  // Read now only for the permission check; each attempt reads it again
  // (a rotated secret is picked up) and reports its errors.
  (void)LoadAmiSecret(options_, &warning);
  if (!warning.empty()) Notice(Level::kWarning, warning);
  Connect();
}

void AmiSource::ArmTimer(std::chrono::milliseconds delay) {
  itimerspec its = {};
  if (delay.count() > 0) {
    its.it_value.tv_sec = delay.count() / 1000;
    its.it_value.tv_nsec = (delay.count() % 1000) * 1000000;
  }
  timerfd_settime(timer_fd_, 0, &its, nullptr);  // zero disarms
}

void AmiSource::WatchSocket(bool want_write) {
  epoll_event ev = {};
  // EPOLLOUT only while there is something to wait for: a connect in
  // progress or unsent bytes. Level-triggered, it would otherwise spin.
  ev.events = EPOLLIN | EPOLLRDHUP | (want_write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.u64 = sock_gen_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, sock_, &ev);
}

void AmiSource::CloseSocket() {
  if (sock_ < 0) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, sock_, nullptr);
  close(sock_);
  sock_ = -1;
  out_.clear();
}

void AmiSource::Connect() {
  ++attempts_;
  framer_.Reset(true);
  out_.clear();
  std::optional<Address> addr = ToAddress(options_.host, options_.port);
  if (!addr) {
    Fail("bad address");
    return;
  }
  Result<std::string> secret = LoadAmiSecret(options_, nullptr);
  if (!secret.ok()) {
    Fail(secret.status().message(), /*our_fault=*/true);
    return;
  }
  secret_ = std::move(*secret);
  sock_ = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (sock_ < 0) {
    Fail(std::string("socket: ") + strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(sock_, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(sock_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
  ev.data.u64 = ++sock_gen_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, sock_, &ev) != 0) {
    int err = errno;
    close(sock_);
    sock_ = -1;
    Fail(std::string("epoll_ctl: ") + strerror(err));
    return;
  }
  ArmTimer(timing_.handshake);
  if (connect(sock_, reinterpret_cast<const sockaddr*>(&addr->ss), addr->len) == 0) {
    state_ = State::kBanner;
    WatchSocket(false);
    return;
  }
  if (errno == EINPROGRESS) {
    state_ = State::kConnecting;
    return;
  }
  Fail(std::string("connecting: ") + strerror(errno));
}

void AmiSource::Fail(const std::string& why, bool our_fault) {
  CloseSocket();
  secret_.assign(secret_.size(), '\0');
  secret_.clear();
  state_ = State::kWaiting;
  last_error_ = why;
  // 1 s, 2 s, 4 s ... within one outage; back to the first after a login.
  if (in_outage_) retry_ = std::min(retry_ * 2, timing_.max_retry);
  const std::string retry = "; retrying in " + Seconds(retry_) +
                            ", then less often (at most every " + Seconds(timing_.max_retry) + ")";
  if (our_fault && !error_reported_) {
    // Shown even in an outage already reported: Asterisk is back, but
    // will not let us in.
    Notice(Level::kError, Peer() + ": " + why + retry);
    error_reported_ = true;
  } else if (!in_outage_) {
    Notice(our_fault ? Level::kError : Level::kWarning, Peer() + ": " + why + retry);
  } else {
    Notice(Level::kDebug, Peer() + ": " + why + "; retrying in " + Seconds(retry_));
  }
  in_outage_ = true;
  ArmTimer(retry_);
}

Status AmiSource::Process() {
  epoll_event evs[4];
  int n = epoll_wait(epoll_fd_, evs, 4, 0);
  if (n < 0) {
    if (errno == EINTR) return Status::Ok();
    return Status::FromErrno("ami: epoll_wait", errno);
  }
  for (int i = 0; i < n; ++i) {
    const uint64_t tag = evs[i].data.u64;
    if (tag == kTimerTag) {
      uint64_t expirations;
      if (read(timer_fd_, &expirations, sizeof expirations) != sizeof expirations) continue;
      if (state_ == State::kWaiting) {
        Connect();
      } else if (state_ == State::kConnecting || state_ == State::kBanner ||
                 state_ == State::kLogin) {
        Fail("no answer within " + Seconds(timing_.handshake) + " of connecting");
      } else if (state_ == State::kConnected) {
        KeepAlive();
      }
      continue;
    }
    if (tag != sock_gen_ || sock_ < 0) continue;  // a socket closed since
    const uint32_t e = evs[i].events;
    if (state_ == State::kConnecting && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(sock_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Fail(std::string("connecting: ") + strerror(err));
        continue;
      }
      state_ = State::kBanner;
      WatchSocket(false);
    }
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) OnReadable();
    if (sock_ >= 0 && tag == sock_gen_ && (e & EPOLLOUT) && !out_.empty()) Flush();
  }
  return Status::Ok();
}

void AmiSource::OnReadable() {
  char buf[16384];
  size_t budget = kReadBudget;
  const uint64_t gen = sock_gen_;
  while (budget > 0 && sock_ >= 0 && gen == sock_gen_) {
    ssize_t n = read(sock_, buf, std::min(sizeof buf, budget));
    if (n > 0) {
      budget -= static_cast<size_t>(n);
      framer_.Feed(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) {
      const bool cut = framer_.Finish();
      Fail(std::string("connection closed by Asterisk") +
           (cut ? " in the middle of a message" : ""));
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    Fail(std::string("reading: ") + strerror(errno));
    return;
  }
}

void AmiSource::Flush() {
  while (!out_.empty()) {
    ssize_t n = send(sock_, out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      WatchSocket(true);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    Fail(std::string("writing: ") + strerror(errno));
    return;
  }
  // Wipe what held the secret.
  std::string().swap(out_);
  WatchSocket(false);
}

void AmiSource::OnBanner(std::string_view /*banner*/) {
  if (state_ != State::kBanner) return;
  state_ = State::kLogin;
  out_ = "Action: Login\r\nActionID: bantam-login\r\nUsername: " + options_.username +
         "\r\nSecret: " + secret_ + "\r\nEvents: " + options_.events + "\r\n\r\n";
  secret_.assign(secret_.size(), '\0');
  secret_.clear();
  Flush();
}

void AmiSource::KeepAlive() {
  // A manager that stopped answering without closing (hung, or a path that
  // drops packets) would otherwise keep the jail deaf for good.
  if (ping_pending_) {
    Fail("no answer to a Ping within " + Seconds(timing_.handshake));
    return;
  }
  ping_pending_ = true;
  out_ += "Action: Ping\r\nActionID: bantam-ping\r\n\r\n";
  ArmTimer(timing_.handshake);
  Flush();
}

void AmiSource::OnDrop(std::string_view why) {
  if (state_ == State::kBanner) {
    Fail("no 'Asterisk Call Manager/' banner: not an Asterisk manager port?");
  } else if (state_ == State::kLogin || state_ == State::kConnected) {
    Notice(Level::kWarning,
           Peer() + ": dropped " + std::string(why) + "; resynchronised at the next empty line");
  }
}

void AmiSource::OnMessage(const AmiMessage& m) {
  switch (state_) {
    case State::kBanner:
      Fail("no 'Asterisk Call Manager/' banner: not an Asterisk manager port?");
      return;
    case State::kLogin: {
      std::optional<std::string_view> response = m.Find("Response");
      if (!response) return;  // an event ahead of the answer
      if (*response == "Success") {
        state_ = State::kConnected;
        ++connects_;
        retry_ = timing_.first_retry;
        ping_pending_ = false;
        ArmTimer(timing_.ping_interval);
        last_error_.clear();
        Notice(Level::kInfo, Peer() + ": " + (in_outage_ ? "connection back, " : "") +
                                 "logged in as '" + options_.username + "', reading " +
                                 options_.events + " events");
        in_outage_ = false;
        error_reported_ = false;
        return;
      }
      std::string message(m.Find("Message").value_or("no reason given"));
      if (HasControl(message)) message = "(unprintable reason)";
      Fail("login as '" + options_.username + "' refused: " + message, /*our_fault=*/true);
      return;
    }
    case State::kConnected:
      if (ping_pending_ && m.Find("ActionID") == "bantam-ping") {
        ping_pending_ = false;
        ArmTimer(timing_.ping_interval);
        return;
      }
      break;
    default:
      return;
  }
  if (!FormatSecurityEvent(m, wall_clock_ ? wall_clock_() : 0.0, &line_)) return;
  if (line_.informational) return;  // a successful login is never a failure
  SourceLine line;
  line.text = line_.line;
  line.subscribers = &subscribers_;
  line.origin = origin_;
  line.time = line_.time;
  line.date_text = line_.event_tv;
  if (!subscribers_.empty()) on_line_(line);
}

void AmiSource::Unsubscribe(SubscriberId subscriber) { std::erase(subscribers_, subscriber); }

SourceStatus AmiSource::StatusOf(SubscriberId /*subscriber*/) const {
  std::string s = origin_ + " (";
  switch (state_) {
    case State::kIdle:
      s += "not started";
      break;
    case State::kConnecting:
      s += "connecting";
      break;
    case State::kBanner:
    case State::kLogin:
      s += "logging in";
      break;
    case State::kConnected:
      s += "connected";
      break;
    case State::kWaiting:
      s += "disconnected: " + last_error_;
      break;
  }
  s += ")";
  return SourceStatus{"File list", {s}};
}

}  // namespace bantam
