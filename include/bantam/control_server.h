// ControlServer: the listening side of the control socket (wire protocol in
// control_protocol.h) as a passive component of the EventLoop. It owns the
// unix socket and its clients: non-blocking accepts, per-client input and
// output buffers (partial reads and writes), the request size limit, an
// idle timeout and caps on concurrent clients (in all and per peer uid, see
// ConnectionLimits), so a slow or hostile client costs a bounded amount of
// memory, never blocks the loop (and so never delays log processing) and
// can never lock root out. It reads each peer's credentials from the kernel
// and hands every valid request with them to the handler; what a command
// does and who may run it is the handler's business (who may connect at
// all is the socket file's mode and group).
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

// Who gets one of the control socket's connection slots: a pure policy over
// per-uid counts (uids as SO_PEERCRED gives them), so it is tested with
// made-up uids. The threat it answers: a read-only `socketgroup` member (or
// several) opening hundreds of connections and keeping them alive must not
// keep root out, nor the other members.
//
// - Privileged peers (uid 0 and the server's own uid: those the handler
//   lets run every command) have no cap of their own and always get in:
//   `privileged_reserve` slots are kept back for them, so the other peers
//   together hold at most max_clients - privileged_reserve. Should root's
//   own connections still fill the table, a newcomer from root evicts a
//   connection of the most-connected unprivileged peer; it is refused only
//   when every connection is privileged (root locking itself out).
// - Each unprivileged uid holds at most `per_peer` connections; past that
//   its new connections are refused: that peer is the one hogging, so it is
//   the one told no. 32 because one `bantam` command is one short
//   connection, so even a monitoring host running checks in parallel needs
//   a handful, while (256 - 16) / 32 = 7.5 means it takes eight colluding
//   uids to fill the unprivileged share at all.
// - When the unprivileged share is full, a newcomer holding at least two
//   fewer connections than the most-connected unprivileged uid evicts one
//   of that uid's connections (the server picks the least recently active,
//   preferring one that owes no reply): slots are shared out max-min
//   fairly, so a member with none always gets in past members holding many.
//   Otherwise the newcomer is refused: it already holds its fair share.
// Evicted and refused clients get a one-line ServerBusy reply saying why.
class ConnectionLimits {
 public:
  struct Limits {
    size_t max_clients = 256;
    size_t per_peer = 32;
    size_t privileged_reserve = 16;
  };
  // `self_uid`: the server's effective uid, privileged like root.
  ConnectionLimits(Limits limits, uid_t self_uid) : limits_(limits), self_uid_(self_uid) {}

  struct Decision {
    enum Kind { kAdmit, kEvictThenAdmit, kRefuse };
    Kind kind = kAdmit;
    uid_t victim = static_cast<uid_t>(-1);  // kEvictThenAdmit: whose connection goes
    std::string why;                        // kRefuse / kEvictThenAdmit: for the log and reply
  };
  // What to do with a new connection from `uid`, given those counted.
  Decision Admit(uid_t uid) const;
  // Keep the counts: once per admitted connection, once per closed one.
  void Add(uid_t uid);
  void Remove(uid_t uid);

  bool Privileged(uid_t uid) const { return uid == 0 || uid == self_uid_; }
  size_t count(uid_t uid) const;
  size_t total() const { return total_; }
  size_t unprivileged_total() const { return unprivileged_; }
  const Limits& limits() const { return limits_; }

 private:
  // The unprivileged uid holding the most connections (the lowest such uid
  // on a tie, for determinism); nullopt when there is none.
  std::optional<uid_t> MostConnected() const;

  Limits limits_;
  uid_t self_uid_;
  std::map<uid_t, size_t> counts_;  // only uids with a connection
  size_t total_ = 0;
  size_t unprivileged_ = 0;
};

// At most one log line per key (a peer uid) per period: a client refused in
// a loop, or hundreds dropped at once, must not flood the log. Pure: the
// caller passes the time.
class LogThrottle {
 public:
  explicit LogThrottle(int64_t period_ms = 60000) : period_ms_(period_ms) {}
  // Whether to log an event for `key` at `now_ms`; if so, *suppressed (when
  // given) is how many were held back for that key since its last line.
  bool Allow(uid_t key, int64_t now_ms, uint64_t* suppressed = nullptr);

 private:
  struct Entry {
    int64_t last_ms = 0;
    uint64_t suppressed = 0;
  };
  int64_t period_ms_;
  std::map<uid_t, Entry> entries_;  // pruned of entries older than a period
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
    // Connection slots, per peer and kept back for root: ConnectionLimits.
    size_t max_clients = 256;
    size_t max_clients_per_peer = 32;
    size_t privileged_reserve = 16;
    // Refused and dropped clients are logged at most once per peer uid per
    // this period (with a count of those held back).
    int64_t log_period_ms = 60000;
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
  // (protocol error, oversize, idle, slow reader, over a cap, evicted).
  uint64_t accepted_total() const { return accepted_total_; }
  uint64_t dropped_total() const { return dropped_total_; }
  // Connections from `uid` now.
  size_t client_count(uid_t uid) const { return limits_.count(uid); }

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

  ControlServer(EventLoop* loop, Options options, Handler handler, LogCallback log);
  Status Listen();
  void OnAccept();
  // Applies ConnectionLimits to a new connection; false if it was refused
  // (and closed).
  bool Admit(int fd, const PeerCredentials& peer);
  // The connection of `uid` to evict: least recently active, owing no
  // reply; -1 if it has none.
  int EvictionVictim(uid_t uid) const;
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
  // Logs a refused or dropped client, throttled per uid.
  void LogPeer(const PeerCredentials& peer, const std::string& what);

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
  ConnectionLimits limits_;
  LogThrottle log_throttle_;
};

}  // namespace bantam

#endif  // BANTAM_CONTROL_SERVER_H_
