#include "bantam/ami_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A loopback AMI server the test drives by hand, one step at a time, on
// the test's thread: listen, accept, write, read.
class FakeAmi {
 public:
  explicit FakeAmi(bool v6 = false, uint16_t port = 0) : v6_(v6) {
    fd_ = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss = {};
    socklen_t len;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      a->sin6_port = htons(port);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a->sin_port = htons(port);
      len = sizeof *a;
    }
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0 && listen(fd_, 8) == 0;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  ~FakeAmi() {
    Drop();
    close(fd_);
  }
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  // Waits for the next connection, at most `timeout`.
  bool Accept(std::chrono::milliseconds timeout = 3s) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    Drop();
    conn_ = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    return conn_ >= 0;
  }
  void Send(std::string_view s) {
    ASSERT_EQ(write(conn_, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  // What the client sent so far (non-blocking).
  std::string Received() {
    char buf[4096];
    pollfd p{conn_, POLLIN, 0};
    while (poll(&p, 1, 0) == 1) {
      ssize_t n = read(conn_, buf, sizeof buf);
      if (n <= 0) break;
      got_.append(buf, static_cast<size_t>(n));
    }
    return got_;
  }
  void Drop() {
    if (conn_ >= 0) close(conn_);
    conn_ = -1;
    got_.clear();
  }
  int listen_fd() const { return fd_; }

 private:
  bool v6_;
  int fd_ = -1, conn_ = -1;
  bool ok_ = false;
  uint16_t port_ = 0;
  std::string got_;
};

constexpr char kBanner[] = "Asterisk Call Manager/5.0.2\r\n";
constexpr char kLoginOk[] =
    "Response: Success\r\nActionID: bantam-login\r\nMessage: Authentication accepted\r\n\r\n";

std::string Event(std::string_view name, std::string_view severity, std::string_view remote) {
  return "Event: " + std::string(name) +
         "\r\nPrivilege: security,all\r\nEventTV: 2024-03-03T09:16:00.120+0000\r\nSeverity: " +
         std::string(severity) +
         "\r\nService: SIP\r\nEventVersion: 1\r\nAccountID: 201\r\nSessionID: 0x1\r\n"
         "LocalAddress: IPV4/UDP/192.0.2.10/5060\r\nRemoteAddress: " +
         std::string(remote) + "\r\n\r\n";
}

struct Notice {
  AmiSource::Level level;
  std::string text;
};

class AmiSourceTest : public ::testing::Test {
 protected:
  void Make(uint16_t port, std::string host = "127.0.0.1", AmiSource::Timing timing = Fast()) {
    AmiOptions o;
    o.host = std::move(host);
    o.port = port;
    o.username = "bantam";
    o.secret = "s3cr3t-value";
    Result<std::unique_ptr<AmiSource>> s = AmiSource::Create(
        7, o,
        [this](const SourceLine& l) {
          lines.emplace_back(l.text);
          times.push_back(l.time.value_or(-1));
        },
        [this](AmiSource::Level lv, const std::string& m) {
          notices.push_back({lv, m});
        },
        [] { return 1.0e9; }, timing);
    ASSERT_TRUE(s.ok()) << s.status().message();
    src = std::move(*s);
  }
  static AmiSource::Timing Fast() {
    AmiSource::Timing t;
    t.first_retry = 20ms;
    t.max_retry = 80ms;
    t.handshake = 300ms;
    return t;
  }
  // Runs the source as the daemon's loop would (poll its fd, Process())
  // until `done`, at most `timeout`.
  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
    const auto end = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() > end) return false;
      pollfd p{src->fd(), POLLIN, 0};
      if (poll(&p, 1, 10) == 1) {
        Status s = src->Process();
        if (!s.ok()) ADD_FAILURE() << s.message();
      }
    }
    return true;
  }
  // The next connection to `ami`, driving the source meanwhile (its
  // retries run on its own timer).
  bool Accept(FakeAmi& ami, std::chrono::milliseconds timeout = 3s) {
    return RunUntil([&] { return ami.Accept(0ms); }, timeout);
  }
  // Connect, banner, login accepted.
  void LogIn(FakeAmi& ami) {
    ASSERT_TRUE(Accept(ami));
    ami.Send(kBanner);
    ASSERT_TRUE(RunUntil([&] { return ami.Received().find("\r\n\r\n") != std::string::npos; }));
    ami.Send(kLoginOk);
    ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kConnected; }));
  }
  int Count(AmiSource::Level level) const {
    int n = 0;
    for (const Notice& x : notices) n += x.level == level;
    return n;
  }
  std::string AllNotices() const {
    std::string s;
    for (const Notice& n : notices) s += n.text + "\n";
    return s;
  }

  std::unique_ptr<AmiSource> src;
  std::vector<std::string> lines;
  std::vector<double> times;
  std::vector<Notice> notices;
};

TEST_F(AmiSourceTest, LogsInWithSecurityEventsAndHandsOutSecurityLines) {
  FakeAmi ami;
  ASSERT_TRUE(ami.ok());
  Make(ami.port());
  src->Start();
  ASSERT_TRUE(Accept(ami));
  ami.Send(kBanner);
  ASSERT_TRUE(RunUntil([&] { return ami.Received().find("\r\n\r\n") != std::string::npos; }));
  EXPECT_EQ(ami.Received(),
            "Action: Login\r\nActionID: bantam-login\r\nUsername: bantam\r\n"
            "Secret: s3cr3t-value\r\nEvents: security\r\n\r\n");
  ami.Send(kLoginOk);
  ami.Send("Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n");
  ami.Send(Event("ChallengeSent", "Informational", "IPV4/UDP/192.0.2.30/5060"));
  ami.Send(Event("SuccessfulAuth", "Informational", "IPV4/UDP/192.0.2.30/5060"));
  ami.Send(Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.80/5064"));
  ami.Send(Event("InvalidAccountID", "Error", "IPV6/UDP/2001:db8::1/5060"));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 2; })) << lines.size();
  // Informational events reach no filter: a successful login never counts.
  EXPECT_EQ(lines[0].rfind("[2024-03-03 09:16:00] SECURITY[0] res_security_log.c: "
                           "SecurityEvent=\"InvalidPassword\",EventTV=",
                           0),
            0u)
      << lines[0];
  EXPECT_NE(lines[0].find(",RemoteAddress=\"IPV4/UDP/203.0.113.80/5064\""), std::string::npos);
  EXPECT_NE(lines[1].find(",RemoteAddress=\"IPV6/UDP/2001:db8::1/5060\""), std::string::npos);
  EXPECT_DOUBLE_EQ(times[0], 1709457360.12);  // EventTV, not the wall clock
  EXPECT_EQ(src->state(), AmiSource::State::kConnected);
  EXPECT_EQ(Count(AmiSource::Level::kInfo), 1) << AllNotices();
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 0) << AllNotices();
  SourceStatus st = src->StatusOf(7);
  EXPECT_EQ(st.title, "File list");
  EXPECT_EQ(st.items, (std::vector<std::string>{"ami://bantam@127.0.0.1:" +
                                                std::to_string(ami.port()) + " (connected)"}));
}

TEST_F(AmiSourceTest, ConnectsOverIpv6) {
  FakeAmi ami(/*v6=*/true);
  if (!ami.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  Make(ami.port(), "::1");
  src->Start();
  LogIn(ami);
  EXPECT_EQ(src->StatusOf(7).items[0],
            "ami://bantam@[::1]:" + std::to_string(ami.port()) + " (connected)");
}

TEST_F(AmiSourceTest, LoginRefusedIsOneErrorNamingUserAndHostNeverTheSecret) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSERT_TRUE(Accept(ami));
    ami.Send(kBanner);
    ASSERT_TRUE(RunUntil([&] { return ami.Received().find("\r\n\r\n") != std::string::npos; }));
    ami.Send("Response: Error\r\nActionID: bantam-login\r\nMessage: Authentication failed\r\n\r\n");
    ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  }
  ASSERT_EQ(Count(AmiSource::Level::kError), 1) << AllNotices();
  std::string error;
  for (const Notice& n : notices)
    if (n.level == AmiSource::Level::kError) error = n.text;
  EXPECT_NE(error.find("'bantam'"), std::string::npos) << error;
  EXPECT_NE(error.find("127.0.0.1:" + std::to_string(ami.port())), std::string::npos) << error;
  EXPECT_NE(error.find("Authentication failed"), std::string::npos) << error;
  EXPECT_EQ(AllNotices().find("s3cr3t"), std::string::npos);
  EXPECT_EQ(src->StatusOf(7).items[0].find("s3cr3t"), std::string::npos);
  // Backed off: 20, 40, 80 ms, capped.
  EXPECT_EQ(src->retry_delay(), 80ms);
  // Accepted at last: INFO, and the delay starts over.
  ASSERT_TRUE(Accept(ami));
  ami.Send(kBanner);
  ASSERT_TRUE(RunUntil([&] { return ami.Received().find("\r\n\r\n") != std::string::npos; }));
  ami.Send(kLoginOk);
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kConnected; }));
  EXPECT_NE(notices.back().text.find("connection back"), std::string::npos) << AllNotices();
  EXPECT_EQ(src->retry_delay(), 20ms);
}

TEST_F(AmiSourceTest, RefusedConnectionBacksOffCappedWithOneWarningThenInfoWhenBack) {
  uint16_t port;
  {
    FakeAmi probe;  // a port nobody listens on once it closes
    port = probe.port();
  }
  AmiSource::Timing t = Fast();
  Make(port, "127.0.0.1", t);
  const auto start = Clock::now();
  src->Start();
  ASSERT_TRUE(RunUntil([&] { return src->attempts() >= 6; }, 5s));
  const auto elapsed = Clock::now() - start;
  // 20 + 40 + 80 + 80 + 80 ms of waiting at least: no busy loop.
  EXPECT_GE(elapsed, 290ms);
  EXPECT_EQ(src->retry_delay(), 80ms);
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 1) << AllNotices();
  EXPECT_NE(notices[0].text.find("Connection refused"), std::string::npos) << AllNotices();
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_NE(src->StatusOf(7).items[0].find("(disconnected: connecting: Connection refused)"),
            std::string::npos)
      << src->StatusOf(7).items[0];

  FakeAmi ami(false, port);
  ASSERT_TRUE(ami.ok());
  LogIn(ami);
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 1) << AllNotices();
  EXPECT_EQ(notices.back().level, AmiSource::Level::kInfo);
  EXPECT_NE(notices.back().text.find("connection back"), std::string::npos) << AllNotices();
}

TEST_F(AmiSourceTest, LoginRefusedAfterAnOutageIsStillAnError) {
  uint16_t port;
  {
    FakeAmi probe;
    port = probe.port();
  }
  Make(port);
  src->Start();
  ASSERT_TRUE(RunUntil([&] { return src->attempts() >= 2; }));
  FakeAmi ami(false, port);
  ASSERT_TRUE(ami.ok());
  ASSERT_TRUE(Accept(ami));
  ami.Send(kBanner);
  ASSERT_TRUE(RunUntil([&] { return ami.Received().find("\r\n\r\n") != std::string::npos; }));
  ami.Send("Response: Error\r\nMessage: Authentication failed\r\n\r\n");
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 1) << AllNotices();
  EXPECT_EQ(Count(AmiSource::Level::kError), 1) << AllNotices();
  EXPECT_NE(AllNotices().find("login as 'bantam' refused: Authentication failed"),
            std::string::npos)
      << AllNotices();
}

TEST_F(AmiSourceTest, DropMidMessageLosesOnlyThatMessageAndReconnects) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  LogIn(ami);
  ami.Send(Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.1/5060"));
  std::string half = Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.2/5060");
  ami.Send(half.substr(0, half.size() / 2));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 1; }));
  ami.Drop();
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_NE(AllNotices().find("in the middle of a message"), std::string::npos) << AllNotices();
  LogIn(ami);
  ami.Send(Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.3/5060"));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 2; }));
  EXPECT_NE(lines[1].find("203.0.113.3"), std::string::npos);
  for (const std::string& l : lines) EXPECT_EQ(l.find("203.0.113.2"), std::string::npos) << l;
  EXPECT_EQ(src->connects(), 2u);
}

TEST_F(AmiSourceTest, ServerClosingAtOnceIsAnOutageNotABusyLoop) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Accept(ami));
    ami.Drop();
    ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  }
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 1) << AllNotices();
  EXPECT_NE(notices[0].text.find("connection closed by Asterisk"), std::string::npos);
}

TEST_F(AmiSourceTest, TrickleAndStalledPeerNeverBlockProcess) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  LogIn(ami);
  const std::string ev = Event("FailedACL", "Error", "IPV4/UDP/203.0.113.9/5060");
  // Byte by byte; every Process() returns at once with what there is.
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    ami.Send(ev.substr(i, 1));
    const auto t0 = Clock::now();
    ASSERT_TRUE(src->Process().ok());
    EXPECT_LT(Clock::now() - t0, 50ms);
  }
  EXPECT_TRUE(lines.empty());
  // The peer stalls one byte short: Process() still does not wait for it.
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    ASSERT_TRUE(src->Process().ok());
    EXPECT_LT(Clock::now() - t0, 50ms);
  }
  ami.Send(ev.substr(ev.size() - 1));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 1; }));
  EXPECT_NE(lines[0].find("FailedACL"), std::string::npos);
}

TEST_F(AmiSourceTest, OversizedAndUnframedMessagesAreDroppedWithAWarning) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  LogIn(ami);
  std::string big = "Event: InvalidPassword\r\n";
  while (big.size() <= AmiFramer::kMaxMessage) big += "X-Filler: " + std::string(200, 'f') + "\r\n";
  big += "RemoteAddress: IPV4/UDP/203.0.113.66/5060\r\n\r\n";
  ami.Send(big);
  ami.Send(
      "Event: InvalidPassword\r\ngarbage without a colon\r\n"
      "RemoteAddress: IPV4/UDP/203.0.113.67/5060\r\n\r\n");
  ami.Send(Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.68/5060"));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 1; }));
  EXPECT_NE(lines[0].find("203.0.113.68"), std::string::npos);
  EXPECT_EQ(Count(AmiSource::Level::kWarning), 2) << AllNotices();
  EXPECT_NE(AllNotices().find("longer than 64 KiB"), std::string::npos);
  EXPECT_NE(AllNotices().find("no 'Key: value' header"), std::string::npos);
  EXPECT_EQ(src->state(), AmiSource::State::kConnected);
}

TEST_F(AmiSourceTest, AnsweredPingsKeepTheConnection) {
  FakeAmi ami;
  AmiSource::Timing t = Fast();
  t.ping_interval = 50ms;
  Make(ami.port(), "127.0.0.1", t);
  src->Start();
  LogIn(ami);
  const std::string ping = "Action: Ping\r\nActionID: bantam-ping\r\n\r\n";
  auto pings = [&] {
    size_t n = 0;
    for (size_t at = 0; (at = ami.Received().find(ping, at)) != std::string::npos;
         at += ping.size())
      ++n;
    return n;
  };
  for (size_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(RunUntil([&] { return pings() == i; })) << ami.Received();
    ami.Send("Response: Success\r\nActionID: bantam-ping\r\nPing: Pong\r\n\r\n");
  }
  ami.Send(Event("InvalidPassword", "Error", "IPV4/UDP/203.0.113.5/5060"));
  ASSERT_TRUE(RunUntil([&] { return lines.size() == 1; }));
  EXPECT_EQ(src->state(), AmiSource::State::kConnected);
  EXPECT_EQ(src->connects(), 1u);
}

TEST_F(AmiSourceTest, UnansweredPingIsAnOutage) {
  FakeAmi ami;
  AmiSource::Timing t = Fast();
  t.ping_interval = 50ms;
  Make(ami.port(), "127.0.0.1", t);
  src->Start();
  LogIn(ami);
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_NE(ami.Received().find("Action: Ping\r\n"), std::string::npos);
  EXPECT_NE(AllNotices().find("no answer to a Ping within 300 ms"), std::string::npos)
      << AllNotices();
}

TEST_F(AmiSourceTest, SilentServerTimesOutTheHandshake) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  ASSERT_TRUE(Accept(ami));
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_NE(AllNotices().find("no answer within"), std::string::npos) << AllNotices();
}

TEST_F(AmiSourceTest, NoBannerIsNoManager) {
  FakeAmi ami;
  Make(ami.port());
  src->Start();
  ASSERT_TRUE(Accept(ami));
  ami.Send("HTTP/1.1 400 Bad Request\r\nServer: x\r\n\r\n");
  ASSERT_TRUE(RunUntil([&] { return src->state() == AmiSource::State::kWaiting; }));
  EXPECT_NE(AllNotices().find("banner"), std::string::npos) << AllNotices();
  EXPECT_EQ(ami.Received().find("Secret"), std::string::npos);  // never sent to a stranger
}

TEST(AmiOptionsTest, ParsesAndRejects) {
  std::vector<std::string> warnings;
  OrderedMap<std::string> m;
  m.Set("host", "localhost");
  m.Set("port", "5039");
  m.Set("username", "bantam");
  m.Set("secret_file", "/etc/bantam/ami.secret");
  Result<AmiOptions> o = ParseAmiOptions(m, &warnings);
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->host, "127.0.0.1");
  EXPECT_EQ(o->port, 5039);
  EXPECT_EQ(o->events, "security");
  EXPECT_TRUE(warnings.empty());

  auto error = [](std::vector<std::pair<std::string, std::string>> kv) {
    OrderedMap<std::string> mm;
    for (auto& [k, v] : kv) mm.Set(k, v);
    Result<AmiOptions> r = ParseAmiOptions(mm, nullptr);
    return r.ok() ? std::string("ok") : r.status().message();
  };
  EXPECT_EQ(error({{"username", "u"}, {"secret_file", "/f"}, {"hots", "x"}}),
            "ami backend: unknown option 'hots' (known: host, port, username, secret, "
            "secret_file, events)");
  EXPECT_EQ(error({{"username", "u"}, {"secret_file", "/f"}, {"host", "pbx.example.org"}}),
            "ami backend: host = 'pbx.example.org' is not an IP address (or localhost); bantam "
            "does no DNS here");
  EXPECT_EQ(error({{"username", "u"}, {"secret_file", "/f"}, {"port", "70000"}}),
            "ami backend: port = '70000' is not a port number (1-65535)");
  EXPECT_EQ(error({{"secret_file", "/f"}}), "ami backend: username is missing");
  EXPECT_EQ(error({{"username", "u"}}), "ami backend: secret_file is missing");
  EXPECT_EQ(error({{"username", "u"}, {"secret", "a"}, {"secret_file", "/f"}}),
            "ami backend: give secret_file or secret, not both");
  EXPECT_EQ(error({{"username", "u"}, {"secret_file", "/f"}, {"events", "security\r\nAction: x"}}),
            "ami backend: events = 'security\r\nAction: x' is not a comma-separated list of event "
            "classes");
  EXPECT_EQ(error({{"username", "u\r\nSecret: x"}, {"secret_file", "/f"}}),
            "ami backend: username must be non-empty, on one line");
  const std::string secret_error = error({{"username", "u"}, {"secret", "pw\nx"}});
  EXPECT_EQ(secret_error.find("pw"), std::string::npos) << secret_error;

  OrderedMap<std::string> inline_secret;
  inline_secret.Set("username", "u");
  inline_secret.Set("secret", "pw");
  ASSERT_TRUE(ParseAmiOptions(inline_secret, &warnings).ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("secret_file="), std::string::npos);
  EXPECT_EQ(warnings[0].find("pw"), std::string::npos);
}

TEST(AmiSecretTest, FileIsReadAndWorldReadableWarned) {
  testing::TempTree tmp;
  const std::string path = tmp.Path("ami.secret");
  std::ofstream(path) << "hunter2\n";
  AmiOptions o;
  o.secret_file = path;
  chmod(path.c_str(), 0600);
  std::string warning;
  Result<std::string> s = LoadAmiSecret(o, &warning);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(*s, "hunter2");
  EXPECT_TRUE(warning.empty());
  chmod(path.c_str(), 0644);
  s = LoadAmiSecret(o, &warning);
  ASSERT_TRUE(s.ok());
  EXPECT_NE(warning.find("readable by every user"), std::string::npos) << warning;
  EXPECT_EQ(warning.find("hunter2"), std::string::npos);
  o.secret_file = tmp.Path("missing");
  EXPECT_FALSE(LoadAmiSecret(o, nullptr).ok());
}

TEST_F(AmiSourceTest, WorldReadableSecretFileIsWarnedAtStart) {
  testing::TempTree tmp;
  const std::string path = tmp.Path("ami.secret");
  std::ofstream(path) << "hunter2\n";
  chmod(path.c_str(), 0644);
  FakeAmi ami;
  AmiOptions o;
  o.port = ami.port();
  o.username = "bantam";
  o.secret_file = path;
  Result<std::unique_ptr<AmiSource>> s = AmiSource::Create(
      1, o, [](const SourceLine&) {},
      [this](AmiSource::Level lv, const std::string& m) {
        notices.push_back({lv, m});
      },
      [] { return 0.0; }, Fast());
  ASSERT_TRUE(s.ok());
  (*s)->Start();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].level, AmiSource::Level::kWarning);
  EXPECT_NE(notices[0].text.find(path), std::string::npos);
}

}  // namespace
}  // namespace bantam
