#include "bantam/metrics_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cstring>
#include <utility>

#include "bantam/py.h"
#include "bantam/shared_library.h"
#include "bantam/unix_socket.h"

namespace bantam {
namespace {

MHD_Daemon* AsDaemon(void* d) { return static_cast<MHD_Daemon*>(d); }

// libmicrohttpd, loaded when an endpoint is configured (shared_library.h).
struct MhdApi {
  decltype(&MHD_start_daemon) start_daemon;
  decltype(&MHD_stop_daemon) stop_daemon;
  decltype(&MHD_get_daemon_info) get_daemon_info;
  decltype(&MHD_run) run;
  decltype(&MHD_get_timeout) get_timeout;
  decltype(&MHD_create_response_from_buffer) create_response_from_buffer;
  decltype(&MHD_add_response_header) add_response_header;
  decltype(&MHD_queue_response) queue_response;
  decltype(&MHD_destroy_response) destroy_response;
  decltype(&MHD_lookup_connection_value) lookup_connection_value;
};

MhdApi g_mhd;  // filled once by LoadMhd, read-only after

Status LoadMhd() {
  static const Status loaded = []() -> Status {
    Result<const SharedLibrary*> lib = SharedLibrary::Load("libmicrohttpd.so.12", "libmicrohttpd12");
    if (!lib.ok()) return lib.status();
    const SharedLibrary& l = **lib;
    MhdApi a{};
    for (Status s : {l.Bind("MHD_start_daemon", &a.start_daemon),
                     l.Bind("MHD_stop_daemon", &a.stop_daemon),
                     l.Bind("MHD_get_daemon_info", &a.get_daemon_info), l.Bind("MHD_run", &a.run),
                     l.Bind("MHD_get_timeout", &a.get_timeout),
                     l.Bind("MHD_create_response_from_buffer", &a.create_response_from_buffer),
                     l.Bind("MHD_add_response_header", &a.add_response_header),
                     l.Bind("MHD_queue_response", &a.queue_response),
                     l.Bind("MHD_destroy_response", &a.destroy_response),
                     l.Bind("MHD_lookup_connection_value", &a.lookup_connection_value)}) {
      if (!s.ok()) return s;
    }
    g_mhd = a;
    return Status::Ok();
  }();
  return loaded;
}

Result<uint16_t> ParsePort(std::string_view text, std::string_view value) {
  unsigned port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port == 0 ||
      port > 65535) {
    return Status::Error("'" + std::string(value) + "': the port must be a number from 1 to 65535");
  }
  return static_cast<uint16_t>(port);
}

Result<int> ListenOn(const MetricsListen& l, uint16_t* bound_port) {
  const std::string where = "metrics " + l.ToString();
  if (l.kind == MetricsListen::Kind::kUnix) {
    Result<sockaddr_un> unix_addr = UnixSocketAddress(l.path);
    if (!unix_addr.ok()) return Status::Error(where + ": " + unix_addr.status().message());
    const sockaddr_un& addr = *unix_addr;
    struct stat st {};
    if (::lstat(l.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return Status::Error(where + ": exists and is not a socket");
      if (UnixSocketAnswers(addr)) return Status::Error(where + ": another server answers there");
      ::unlink(l.path.c_str());  // stale, from a process that died
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::FromErrno(where + ": socket", errno);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const int err = errno;
      ::close(fd);
      return Status::FromErrno(where + ": bind", err);
    }
    // As open as a loopback port: any local user may read the counters.
    ::chmod(l.path.c_str(), 0666);
    if (::listen(fd, 16) != 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(l.path.c_str());
      return Status::FromErrno(where + ": listen", err);
    }
    return fd;
  }
  const bool v6 = l.kind == MetricsListen::Kind::kInet6;
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(where + ": socket", errno);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(l.port);
    ::inet_pton(AF_INET6, l.host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(l.port);
    ::inet_pton(AF_INET, l.host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0 || ::listen(fd, 16) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::FromErrno(where, err);
  }
  sockaddr_storage got{};
  socklen_t got_len = sizeof got;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &got_len) == 0) {
    *bound_port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&got)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&got)->sin_port);
  }
  return fd;
}

}  // namespace

bool MetricsListen::local() const {
  if (kind == Kind::kUnix) return true;
  if (kind == Kind::kInet4) {
    in_addr a{};
    return ::inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
  }
  in6_addr a{};
  return ::inet_pton(AF_INET6, host.c_str(), &a) == 1 && IN6_IS_ADDR_LOOPBACK(&a);
}

std::string MetricsListen::ToString() const {
  switch (kind) {
    case Kind::kUnix:
      return "unix:" + path;
    case Kind::kInet6:
      return "[" + host + "]:" + std::to_string(port);
    case Kind::kInet4:
      break;
  }
  return host + ":" + std::to_string(port);
}

Result<MetricsListen> ParseMetricsListen(std::string_view value) {
  MetricsListen l;
  const std::string text(value);
  if (value.rfind("unix:", 0) == 0) {
    l.kind = MetricsListen::Kind::kUnix;
    l.path = text.substr(5);
    if (l.path.empty() || l.path[0] != '/') {
      return Status::Error("'" + text + "': a unix socket needs an absolute path (unix:/run/bantam/metrics.sock)");
    }
    if (l.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Status::Error("'" + text + "': the socket path is longer than " +
                           std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
    }
    return l;
  }
  std::string_view host, port;
  if (!value.empty() && value.front() == '[') {
    const size_t close = value.find(']');
    if (close == std::string_view::npos || close + 1 >= value.size() || value[close + 1] != ':') {
      return Status::Error("'" + text + "' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
    }
    host = value.substr(1, close - 1);
    port = value.substr(close + 2);
    l.kind = MetricsListen::Kind::kInet6;
    in6_addr a{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a) != 1) {
      return Status::Error("'" + text + "': '" + std::string(host) + "' is not an IPv6 address");
    }
  } else {
    const size_t colon = value.rfind(':');
    if (colon == std::string_view::npos || value.find(':') != colon) {
      return Status::Error("'" + text + "' is not ADDRESS:PORT, [IPV6]:PORT or unix:PATH");
    }
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    l.kind = MetricsListen::Kind::kInet4;
    in_addr a{};
    if (::inet_pton(AF_INET, std::string(host).c_str(), &a) != 1) {
      return Status::Error("'" + text + "': '" + std::string(host) +
                           "' is not an IPv4 address (host names are not resolved)");
    }
  }
  l.host = std::string(host);
  Result<uint16_t> p = ParsePort(port, value);
  if (!p.ok()) return p.status();
  l.port = *p;
  return l;
}

Result<MetricsSettings> ParseMetricsSettings(std::string_view metrics,
                                             std::string_view allow_remote) {
  MetricsSettings s;
  const std::string m(PyStripAscii(metrics));
  const std::string lower = LowerAscii(m);
  bool remote = false;
  const std::string r = LowerAscii(std::string(PyStripAscii(allow_remote)));
  if (r == "yes" || r == "true" || r == "on" || r == "1") {
    remote = true;
  } else if (!(r.empty() || r == "no" || r == "false" || r == "off" || r == "0")) {
    return Status::Error("metrics_allow_remote = '" + std::string(allow_remote) +
                         "' is not yes or no");
  }
  if (m.empty() || lower == "off" || lower == "no" || lower == "false" || lower == "none") return s;
  Result<MetricsListen> l = ParseMetricsListen(m);
  if (!l.ok()) return Status::Error("metrics = " + l.status().message());
  if (!l->local() && !remote) {
    return Status::Error("metrics = '" + m +
                         "' is reachable from other hosts: the endpoint has no authentication "
                         "and tells who attacks and what is banned; bind a loopback address or a "
                         "unix socket, or set metrics_allow_remote = yes");
  }
  s.enabled = true;
  s.listen = std::move(*l);
  return s;
}

// The MHD callbacks, with access to the server's members.
class MetricsServer::Impl {
 public:
  static MHD_Result Access(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/,
                           const char* /*upload_data*/, size_t* upload_data_size,
                           void** con_cls) {
    auto* self = static_cast<MetricsServer*>(cls);
    // The first call only announces the request; the answer comes with
    // the second, once any body has been read (and thrown away).
    if (*con_cls == nullptr) {
      *con_cls = self;
      return MHD_YES;
    }
    if (*upload_data_size != 0) {
      *upload_data_size = 0;
      return MHD_YES;
    }
    const bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                     strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    if (!get || strcmp(url, "/metrics") != 0) {
      static const char kNotFound[] = "404 page not found: the metrics are at GET /metrics\n";
      MHD_Response* r = g_mhd.create_response_from_buffer(sizeof kNotFound - 1,
                                                        const_cast<char*>(kNotFound),
                                                        MHD_RESPMEM_PERSISTENT);
      g_mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
      const MHD_Result q = g_mhd.queue_response(connection, MHD_HTTP_NOT_FOUND, r);
      g_mhd.destroy_response(r);
      return q;
    }
    const char* accept =
        g_mhd.lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    const ExpositionFormat format = NegotiateFormat(accept ? accept : "");
    const auto start = std::chrono::steady_clock::now();
    std::string body;
    self->render_(format, &body);
    self->last_render_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++self->scrapes_;
    MHD_Response* r =
        g_mhd.create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    g_mhd.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ContentTypeOf(format));
    const MHD_Result q = g_mhd.queue_response(connection, MHD_HTTP_OK, r);
    g_mhd.destroy_response(r);
    return q;
  }
};

MetricsServer::MetricsServer(EventLoop* loop, Options options, Render render)
    : loop_(loop), options_(std::move(options)), render_(std::move(render)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(EventLoop* loop, Options options,
                                                            Render render) {
  if (Status l = LoadMhd(); !l.ok()) {
    return Status::Error("metrics " + options.listen.ToString() + ": " + l.message());
  }
  std::unique_ptr<MetricsServer> s(new MetricsServer(loop, std::move(options), std::move(render)));
  Result<int> fd = ListenOn(s->options_.listen, &s->bound_port_);
  if (!fd.ok()) return fd.status();
  s->listen_fd_ = *fd;
  const bool unix_socket = s->options_.listen.kind == MetricsListen::Kind::kUnix;
  const unsigned flags = MHD_USE_EPOLL | MHD_USE_SUPPRESS_DATE_NO_CLOCK;
  MHD_Daemon* d = g_mhd.start_daemon(
      flags, 0, nullptr, nullptr, &Impl::Access, s.get(),
      MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(s->listen_fd_),
      MHD_OPTION_CONNECTION_LIMIT, s->options_.max_connections,
      MHD_OPTION_CONNECTION_TIMEOUT, s->options_.timeout_seconds,
      // One remote host cannot take every slot. Local clients all come
      // from the loopback address (or none, on a unix socket): a cap per
      // address would be a cap on the local scraper too.
      MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      s->options_.listen.local() ? 0u : std::max(1u, s->options_.max_connections / 2),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(16 * 1024),
      MHD_OPTION_END);
  if (d == nullptr) {
    ::close(s->listen_fd_);
    s->listen_fd_ = -1;
    if (unix_socket) ::unlink(s->options_.listen.path.c_str());
    return Status::Error("metrics " + s->options_.listen.ToString() +
                         ": the HTTP server (libmicrohttpd) did not start");
  }
  s->daemon_ = d;
  s->listen_fd_ = -1;  // MHD_stop_daemon closes it
  const MHD_DaemonInfo* info = g_mhd.get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == nullptr) return Status::Error("metrics: libmicrohttpd has no epoll fd");
  s->epoll_fd_ = info->epoll_fd;
  MetricsServer* raw = s.get();
  Status w = loop->Watch(s->epoll_fd_, [raw](uint32_t) { raw->Pump(); });
  if (!w.ok()) return w;
  // Timeouts are whole seconds: a look every second closes idle clients.
  s->timer_ = loop->AddTimer(1000, [raw] { raw->Pump(); }, 1000);
  return s;
}

void MetricsServer::Pump() {
  g_mhd.run(AsDaemon(daemon_));
  // MHD may have work left that its epoll fd will not announce again
  // (edge-triggered sockets it stopped reading to be fair): it says so with
  // a timeout of 0, and is run again in the next turn.
  MHD_UNSIGNED_LONG_LONG timeout = 0;
  if (g_mhd.get_timeout(AsDaemon(daemon_), &timeout) == MHD_YES && timeout == 0 &&
      !again_scheduled_) {
    again_scheduled_ = true;
    std::weak_ptr<bool> alive = alive_;
    loop_->AddTimer(0, [this, alive] {
      if (alive.expired()) return;
      again_scheduled_ = false;
      Pump();
    });
  }
}

MetricsServer::~MetricsServer() {
  if (epoll_fd_ >= 0) loop_->Unwatch(epoll_fd_);
  if (timer_ != 0) loop_->CancelTimer(timer_);
  if (daemon_ != nullptr) g_mhd.stop_daemon(AsDaemon(daemon_));
  if (options_.listen.kind == MetricsListen::Kind::kUnix) ::unlink(options_.listen.path.c_str());
}

}  // namespace bantam
