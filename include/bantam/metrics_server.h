// MetricsServer: bantamd's Prometheus endpoint, an HTTP server (GNU
// libmicrohttpd) run as a passive component of the EventLoop. MHD keeps
// its sockets in an epoll set of its own whose fd the loop watches; every
// request is served on the loop's thread, in MHD_run(), without blocking:
// so a scrape reads the daemon's counters with no lock, and a slow,
// silent or hostile client costs a connection slot until its timeout,
// never a wait of the loop (and so never a delay of detection).
//
// `GET /metrics` (and HEAD) answers with what the render callback writes,
// in the format the Accept header asks for (exposition.h); every other
// path or method is 404.
//
// Single-threaded: every method and callback runs on the loop's thread.
// `loop` must outlive the MetricsServer.
#ifndef BANTAM_METRICS_SERVER_H_
#define BANTAM_METRICS_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "bantam/event_loop.h"
#include "bantam/exposition.h"
#include "bantam/status.h"

namespace bantam {

// Where the endpoint listens: fail2ban.local's `metrics = 127.0.0.1:9191`,
// `[::1]:9191` or `unix:/run/bantam/metrics.sock`.
struct MetricsListen {
  enum class Kind { kInet4, kInet6, kUnix };
  Kind kind = Kind::kInet4;
  std::string host;  // numeric address, without brackets (inet)
  uint16_t port = 0;
  std::string path;  // kUnix
  // Only this host can reach it: a loopback address, or a unix socket.
  bool local() const;
  // As written in the configuration: "127.0.0.1:9191", "[::1]:9191",
  // "unix:/run/bantam/metrics.sock".
  std::string ToString() const;
};

// Parses the `metrics` value. Host names are refused (no DNS at start),
// and so is port 0. Error: what is wrong, without the option's name.
Result<MetricsListen> ParseMetricsListen(std::string_view value);

// The `metrics` and `metrics_allow_remote` options together: nullopt-like
// `enabled == false` when `metrics` is empty or "off"/"no"/"false"; an
// error for a bad address, a bad boolean, or a non-local address without
// metrics_allow_remote = yes.
struct MetricsSettings {
  bool enabled = false;
  MetricsListen listen;
};
Result<MetricsSettings> ParseMetricsSettings(std::string_view metrics,
                                             std::string_view allow_remote);

class MetricsServer {
 public:
  // Writes the exposition in `format` to `out`.
  using Render = std::function<void(ExpositionFormat format, std::string* out)>;

  struct Options {
    MetricsListen listen;
    // Connections served at once; more are closed as they arrive.
    unsigned max_connections = 8;
    // A connection idle this long (no request, or not reading its answer)
    // is closed.
    unsigned timeout_seconds = 10;
  };

  // Binds and listens (a stale unix socket nobody answers on is replaced).
  // Errors: the address is in use or not ours, MHD cannot start.
  static Result<std::unique_ptr<MetricsServer>> Start(EventLoop* loop, Options options,
                                                      Render render);
  // Closes every connection, stops listening, removes the unix socket.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  const MetricsListen& listen() const { return options_.listen; }
  // With port 0 in an inet address: the port the kernel chose.
  uint16_t bound_port() const { return bound_port_; }
  // Answers to GET /metrics so far.
  uint64_t scrapes() const { return scrapes_; }
  // Seconds the last render took.
  double last_render_seconds() const { return last_render_seconds_; }

 private:
  class Impl;
  MetricsServer(EventLoop* loop, Options options, Render render);
  // Lets MHD do what its sockets are ready for, and its timeouts.
  void Pump();

  EventLoop* loop_;
  Options options_;
  Render render_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;  // MHD's; watched by the loop
  uint16_t bound_port_ = 0;
  void* daemon_ = nullptr;  // struct MHD_Daemon
  EventLoop::TimerId timer_ = 0;
  bool again_scheduled_ = false;
  uint64_t scrapes_ = 0;
  double last_render_seconds_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bantam

#endif  // BANTAM_METRICS_SERVER_H_
