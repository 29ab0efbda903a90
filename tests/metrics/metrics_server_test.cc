#include "bantam/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

TEST(ParseMetricsListenTest, Inet4Inet6Unix) {
  Result<MetricsListen> a = ParseMetricsListen("127.0.0.1:9191");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->kind, MetricsListen::Kind::kInet4);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9191);
  EXPECT_TRUE(a->local());
  EXPECT_EQ(a->ToString(), "127.0.0.1:9191");

  Result<MetricsListen> b = ParseMetricsListen("[::1]:9191");
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(b->kind, MetricsListen::Kind::kInet6);
  EXPECT_EQ(b->host, "::1");
  EXPECT_TRUE(b->local());
  EXPECT_EQ(b->ToString(), "[::1]:9191");

  Result<MetricsListen> c = ParseMetricsListen("unix:/run/bantam/metrics.sock");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->kind, MetricsListen::Kind::kUnix);
  EXPECT_EQ(c->path, "/run/bantam/metrics.sock");
  EXPECT_TRUE(c->local());

  EXPECT_TRUE(ParseMetricsListen("127.8.9.10:1").ok());
  EXPECT_TRUE(ParseMetricsListen("127.8.9.10:1")->local());
  EXPECT_FALSE(ParseMetricsListen("0.0.0.0:9191")->local());
  EXPECT_FALSE(ParseMetricsListen("192.0.2.1:9191")->local());
  EXPECT_FALSE(ParseMetricsListen("[::]:9191")->local());
  EXPECT_FALSE(ParseMetricsListen("[2001:db8::1]:9191")->local());
}

TEST(ParseMetricsListenTest, Errors) {
  EXPECT_EQ(ParseMetricsListen("localhost:9191").status().message(),
            "'localhost:9191': 'localhost' is not an IPv4 address (host names are not resolved)");
  EXPECT_EQ(ParseMetricsListen("127.0.0.1").status().message(),
            "'127.0.0.1' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
  EXPECT_EQ(ParseMetricsListen("127.0.0.1:0").status().message(),
            "'127.0.0.1:0': the port must be a number from 1 to 65535");
  EXPECT_EQ(ParseMetricsListen("127.0.0.1:65536").status().message(),
            "'127.0.0.1:65536': the port must be a number from 1 to 65535");
  EXPECT_EQ(ParseMetricsListen("::1:9191").status().message(),
            "'::1:9191' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
  EXPECT_EQ(ParseMetricsListen("[::1]").status().message(),
            "'[::1]' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
  EXPECT_EQ(ParseMetricsListen("[zz]:1").status().message(), "'[zz]:1': 'zz' is not an IPv6 address");
  EXPECT_EQ(ParseMetricsListen("unix:run/m.sock").status().message(),
            "'unix:run/m.sock': a unix socket needs an absolute path (unix:/run/bantam/metrics.sock)");
  EXPECT_FALSE(ParseMetricsListen("unix:/" + std::string(200, 'x')).ok());
}

TEST(ParseMetricsSettingsTest, OffByDefault) {
  for (const char* off : {"", "off", "no", "false", "None", " "}) {
    Result<MetricsSettings> s = ParseMetricsSettings(off, "");
    ASSERT_TRUE(s.ok()) << off;
    EXPECT_FALSE(s->enabled) << off;
  }
}

TEST(ParseMetricsSettingsTest, RemoteNeedsTheExtraOption) {
  Result<MetricsSettings> refused = ParseMetricsSettings("0.0.0.0:9191", "");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("set metrics_allow_remote = yes"), std::string::npos)
      << refused.status().message();
  EXPECT_FALSE(ParseMetricsSettings("[::]:9191", "no").ok());
  Result<MetricsSettings> allowed = ParseMetricsSettings("0.0.0.0:9191", "yes");
  ASSERT_TRUE(allowed.ok());
  EXPECT_TRUE(allowed->enabled);
  Result<MetricsSettings> local = ParseMetricsSettings(" 127.0.0.1:9191 ", "");
  ASSERT_TRUE(local.ok());
  EXPECT_TRUE(local->enabled);
  EXPECT_EQ(local->listen.ToString(), "127.0.0.1:9191");
}

TEST(ParseMetricsSettingsTest, BadValues) {
  EXPECT_EQ(ParseMetricsSettings("127.0.0.1:9191", "maybe").status().message(),
            "metrics_allow_remote = 'maybe' is not yes or no");
  EXPECT_EQ(ParseMetricsSettings("9191", "").status().message(),
            "metrics = '9191' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
}

// A MetricsServer on a loop of its own thread; the test is the client.
class ServerThread {
 public:
  explicit ServerThread(MetricsServer::Options options) {
    std::promise<Status> started;
    std::future<Status> ready = started.get_future();
    thread_ = std::thread([this, options, &started] {
      Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
      if (!loop.ok()) {
        started.set_value(loop.status());
        return;
      }
      Result<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(
          loop->get(), options, [this](ExpositionFormat f, std::string* out) {
            ++renders_;
            ExpositionWriter w(f, out);
            w.Family("test_renders", MetricType::kCounter, "Renders so far.");
            w.Sample({}, static_cast<uint64_t>(renders_.load()));
            w.Finish();
          });
      if (!server.ok()) {
        started.set_value(server.status());
        return;
      }
      port_ = (*server)->bound_port();
      (*loop)->AddTimer(10, [&] {
        if (stop_) (*loop)->Stop();
      }, 10);
      started.set_value(Status::Ok());
      Status s = (*loop)->Run();
      (void)s;
      server->reset();
    });
    status_ = ready.get();
  }
  ~ServerThread() {
    stop_ = true;
    thread_.join();
  }
  const Status& status() const { return status_; }
  uint16_t port() const { return port_; }
  int renders() const { return renders_; }

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> renders_{0};
  Status status_;
  uint16_t port_ = 0;
};

int ConnectTcp(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int ConnectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  path.copy(a.sun_path, sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` and reads until the server closes (Connection: close)
// or `timeout_ms` passes.
std::string Exchange(int fd, const std::string& request, int timeout_ms = 5000) {
  if (!request.empty() && ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) return "";
  std::string out;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// `headers` may end with "\r\n\r\n" and a body.
std::string Get(uint16_t port, const std::string& path, const std::string& headers = "",
                const std::string& method = "GET") {
  const int fd = ConnectTcp(port);
  if (fd < 0) return "";
  const bool body = headers.find("\r\n\r\n") != std::string::npos;
  std::string r = Exchange(fd, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                                   headers + (body ? "" : "\r\n"));
  ::close(fd);
  return r;
}

MetricsServer::Options LoopbackAnyPort() {
  MetricsServer::Options o;
  o.listen = *ParseMetricsListen("127.0.0.1:1");
  o.listen.port = 0;  // the kernel picks one
  return o;
}

TEST(MetricsServerTest, ServesMetricsInTheFormatAsked) {
  ServerThread s(LoopbackAnyPort());
  ASSERT_TRUE(s.status().ok()) << s.status().message();
  ASSERT_NE(s.port(), 0);
  const std::string text = Get(s.port(), "/metrics");
  EXPECT_EQ(text.rfind("HTTP/1.1 200", 0), 0u) << text;
  EXPECT_NE(text.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\r\n\r\n# HELP test_renders_total Renders so far.\n"
                      "# TYPE test_renders_total counter\ntest_renders_total 1\n"),
            std::string::npos)
      << text;
  const std::string om =
      Get(s.port(), "/metrics", "Accept: application/openmetrics-text;version=1.0.0\r\n");
  EXPECT_NE(om.find("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
            std::string::npos)
      << om;
  EXPECT_NE(om.find("test_renders_total 2\n# EOF\n"), std::string::npos) << om;
}

TEST(MetricsServerTest, EverythingElseIs404) {
  ServerThread s(LoopbackAnyPort());
  ASSERT_TRUE(s.status().ok()) << s.status().message();
  for (const char* path : {"/", "/metrics/", "/metricsx", "/api/v1/query", "/../metrics"}) {
    const std::string r = Get(s.port(), path);
    EXPECT_EQ(r.rfind("HTTP/1.1 404", 0), 0u) << path << ": " << r;
  }
  const std::string post = Get(s.port(), "/metrics", "Content-Length: 3\r\n\r\nabc", "POST");
  EXPECT_EQ(post.rfind("HTTP/1.1 404", 0), 0u) << post;
  EXPECT_EQ(s.renders(), 0);
}

TEST(MetricsServerTest, SilentClientTimesOutAndDoesNotBlockOthers) {
  MetricsServer::Options o = LoopbackAnyPort();
  o.timeout_seconds = 1;
  ServerThread s(o);
  ASSERT_TRUE(s.status().ok()) << s.status().message();
  const int silent = ConnectTcp(s.port());
  ASSERT_GE(silent, 0);
  const int half = ConnectTcp(s.port());
  ASSERT_GE(half, 0);
  ASSERT_GT(::send(half, "GET /met", 8, MSG_NOSIGNAL), 0);
  // Others are served meanwhile.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Get(s.port(), "/metrics").rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  // Both idle ones are closed after their timeout (a second, seen within 3).
  EXPECT_EQ(Exchange(silent, "", 4000), "");
  EXPECT_EQ(Exchange(half, "", 4000), "");
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(waited, std::chrono::seconds(4));
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  ::close(silent);
  ::close(half);
}

TEST(MetricsServerTest, ConnectionsBeyondTheLimitAreClosed) {
  MetricsServer::Options o = LoopbackAnyPort();
  o.max_connections = 2;
  o.timeout_seconds = 30;
  ServerThread s(o);
  ASSERT_TRUE(s.status().ok()) << s.status().message();
  const int a = ConnectTcp(s.port());
  const int b = ConnectTcp(s.port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // Give the server a turn to accept both.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Get(s.port(), "/metrics"), "");
  ::close(a);
  ::close(b);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Get(s.port(), "/metrics").rfind("HTTP/1.1 200", 0), 0u);
}

TEST(MetricsServerTest, UnixSocketReplacesAStaleOneAndIsRemoved) {
  TempTree t;
  const std::string path = t.Path("metrics.sock");
  {
    // A stale socket file: bound, then its process gone.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  MetricsServer::Options o;
  o.listen = *ParseMetricsListen("unix:" + path);
  {
    ServerThread s(o);
    ASSERT_TRUE(s.status().ok()) << s.status().message();
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666u);
    const int fd = ConnectUnix(path);
    ASSERT_GE(fd, 0);
    const std::string r =
        Exchange(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ::close(fd);
    EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
    EXPECT_NE(r.find("test_renders_total 1\n"), std::string::npos) << r;

    // A second server on the same live socket is refused.
    ServerThread second(o);
    EXPECT_FALSE(second.status().ok());
    EXPECT_NE(second.status().message().find("another server answers there"), std::string::npos)
        << second.status().message();
  }
  struct stat st {};
  EXPECT_NE(::stat(path.c_str(), &st), 0);
}

TEST(MetricsServerTest, ServesOnIpv6Loopback) {
  MetricsServer::Options o;
  o.listen = *ParseMetricsListen("[::1]:1");
  o.listen.port = 0;
  ServerThread s(o);
  ASSERT_TRUE(s.status().ok()) << s.status().message();
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(s.port());
  a.sin6_addr = in6addr_loopback;
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string r =
      Exchange(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ::close(fd);
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  // Not on IPv4.
  EXPECT_LT(ConnectTcp(s.port()), 0);
}

TEST(MetricsServerTest, AddressInUseIsAnError) {
  ServerThread first(LoopbackAnyPort());
  ASSERT_TRUE(first.status().ok());
  MetricsServer::Options o = LoopbackAnyPort();
  o.listen.port = first.port();
  ServerThread second(o);
  ASSERT_FALSE(second.status().ok());
  EXPECT_EQ(second.status().message(),
            "metrics 127.0.0.1:" + std::to_string(first.port()) + ": Address already in use");
}

}  // namespace
}  // namespace bantam
