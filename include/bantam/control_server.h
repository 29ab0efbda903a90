// ControlServer: the listening side of the control socket (wire protocol in
// control_protocol.h) as a passive component of the EventLoop. It owns the
// unix socket and its clients: non-blocking accepts, per-client input and
// output buffers (partial reads and writes), the request size limit, an
// idle timeout and a cap on concurrent clients, so a slow or hostile client
// costs a bounded amount of memory and never blocks the loop (and so never
// delays log processing). It reads each peer's credentials from the kernel
// and hands every valid request with them to the handler; what a command
// does and who may run it is the handler's business.
//
// Single-threaded: every method and callback runs on the loop's thread.
// `loop` must outlive the ControlServer.
#ifndef BANTAM_CONTROL_SERVER_H_
#define BANTAM_CONTROL_SERVER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bantam/control_protocol.h"
#include "bantam/event_loop.h"
#include "bantam/status.h"

namespace bantam {

// Who is on the other end, as the kernel saw it at connect().
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS), may be empty

  bool InGroup(gid_t g) const;
};

class ControlServer {
 public:
  struct Options {
    std::string path;
    // 0600 root-only; 0660 with a read-only group.
    mode_t mode = 0600;
    // Owner group of the socket file; nullopt leaves the process's group.
    std::optional<gid_t> group;
    size_t max_line_bytes = kMaxControlLineBytes;
    // A client that sends nothing for this long is dropped.
    int64_t idle_timeout_ms = 30000;
    // A client that owes us the reading of a reply is given this long
    // without progress before it is dropped: a reply can be large (the
    // banned list of a busy jail) and a client slow to take it is not idle.
    int64_t stalled_reply_timeout_ms = 300000;
    size_t max_clients = 256;
    // Replies waiting for a client that does not read: above this, its
    // requests are no longer read; at 4x, it is dropped.
    size_t max_pending_output = 4 << 20;
  };

  // The handler's answer to one request. `after_sent`, if set, runs once the
  // reply has been written out (or the client is gone): bantamd's `stop`
  // answers first and stops the loop from there.
  struct Response {
    ControlReply reply;
    std::function<void()> after_sent;
  };
  using Handler = std::function<Response(const ControlRequest&, const PeerCredentials&)>;
  // Receives what an operator should see: a refused or dropped client.
  using LogCallback = std::function<void(const std::string&)>;

  // Creates the socket and starts listening on `loop`. A socket file left
  // by a dead server is replaced; a live server on the path, or a file
  // that is not a socket, is an error naming the path. The file gets its
  // mode and group before the first client can connect.
  static Result<std::unique_ptr<ControlServer>> Start(EventLoop* loop, Options options,
                                                      Handler handler, LogCallback log = nullptr);
  // Closes every connection and removes the socket file (if it is still
  // the one this server created).
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return options_.path; }
  size_t client_count() const { return clients_.size(); }
  // Connections accepted since start, and those dropped for misbehaving
  // (protocol error, oversize, idle, slow reader, over the cap).
  uint64_t accepted_total() const { return accepted_total_; }
  uint64_t dropped_total() const { return dropped_total_; }

 private:
  struct Client {
    int fd = -1;
    PeerCredentials peer;
    std::string in;
    size_t scanned = 0;  // bytes of `in` known to hold no "\n"
    std::string out;
    size_t out_off = 0;
    std::vector<std::pair<size_t, std::function<void()>>> after_sent;  // at out offset
    int64_t last_active_ms = 0;
    bool closing = false;  // close once `out` is written
    bool reading = true;        // false while its replies pile up unread
    uint32_t events = 0x001;    // what the loop watches for (EPOLLIN)
  };

  ControlServer(EventLoop* loop, Options options, Handler handler, LogCallback log)
      : loop_(loop), options_(std::move(options)), handler_(std::move(handler)),
        log_(std::move(log)) {}
  Status Listen();
  void OnAccept();
  void OnClient(int fd, uint32_t events);
  void ReadFrom(Client& c);
  void HandleLines(Client& c);
  // Replies ProtocolError and closes the client once that is written.
  void Refuse(Client& c, const std::string& why);
  void Send(Client& c, const std::string& line, std::function<void()> after_sent = nullptr);
  void Flush(Client& c);
  void UpdateInterest(Client& c);
  void Close(int fd, const std::string& why = "");
  void Sweep();
  void Log(const std::string& m) {
    if (log_) log_(m);
  }

  EventLoop* loop_;
  Options options_;
  Handler handler_;
  LogCallback log_;
  int listen_fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::map<int, std::unique_ptr<Client>> clients_;
  EventLoop::TimerId sweep_timer_ = 0;
  EventLoop::TimerId rearm_timer_ = 0;
  uint64_t accepted_total_ = 0;
  uint64_t dropped_total_ = 0;
};

}  // namespace bantam

#endif  // BANTAM_CONTROL_SERVER_H_
