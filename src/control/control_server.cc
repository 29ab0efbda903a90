#include "bantam/control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "bantam/unix_socket.h"

namespace bantam {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Accepts per wakeup: a connection storm cannot keep the loop in accept().
constexpr int kMaxAcceptsPerWake = 64;

PeerCredentials ReadPeer(int fd) {
  PeerCredentials p;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.pid = cred.pid;
    p.uid = cred.uid;
    p.gid = cred.gid;
  }
  // Supplementary groups as they were at connect() (Linux 4.13+).
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) == 0) {
      groups.resize(glen / sizeof(gid_t));
      p.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(glen / sizeof(gid_t) + 1);
  }
  return p;
}

// Best effort, for a socket about to be closed: a fresh or idle socket's
// buffer takes one short line.
void SendBusy(int fd, const std::string& why) {
  const std::string line = EncodeControlReply(ControlReply::Failure("ServerBusy", why));
  [[maybe_unused]] ssize_t n = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

bool PeerCredentials::InGroup(gid_t g) const {
  return gid == g || std::find(groups.begin(), groups.end(), g) != groups.end();
}

ConnectionLimits::Decision ConnectionLimits::Admit(uid_t uid) const {
  const Limits& l = limits_;
  Decision d;
  const std::optional<uid_t> most = MostConnected();
  if (Privileged(uid)) {
    if (total_ < l.max_clients) return d;
    if (!most) {
      d.kind = Decision::kRefuse;
      d.why = "too many control connections (" + std::to_string(l.max_clients) +
              ", all of them root's); close some and try again";
      return d;
    }
    d.kind = Decision::kEvictThenAdmit;
    d.victim = *most;
    d.why = "connection closed to make room for root: all " + std::to_string(l.max_clients) +
            " control connections are taken, " + std::to_string(count(*most)) + " of them by uid " +
            std::to_string(*most);
    return d;
  }
  const size_t mine = count(uid);
  if (mine >= l.per_peer) {
    d.kind = Decision::kRefuse;
    d.why = "too many control connections from uid " + std::to_string(uid) + " (at most " +
            std::to_string(l.per_peer) + " per user); close some and try again";
    return d;
  }
  const size_t share = l.max_clients > l.privileged_reserve ? l.max_clients - l.privileged_reserve : 0;
  if (unprivileged_ < share && total_ < l.max_clients) return d;
  if (most && count(*most) >= mine + 2) {
    d.kind = Decision::kEvictThenAdmit;
    d.victim = *most;
    d.why = "connection closed to make room for another user: uid " + std::to_string(*most) +
            " holds " + std::to_string(count(*most)) + " of the " + std::to_string(share) +
            " control connections open to users other than root";
    return d;
  }
  d.kind = Decision::kRefuse;
  if (unprivileged_ < share) {  // root's own connections fill the rest
    d.why = "too many control connections (" + std::to_string(l.max_clients) + " in all); try again later";
    return d;
  }
  d.why = "too many control connections (the " + std::to_string(share) +
          " open to users other than root are taken, " + std::to_string(mine) +
          " of them by uid " + std::to_string(uid) + "); try again later";
  return d;
}

void ConnectionLimits::Add(uid_t uid) {
  ++counts_[uid];
  ++total_;
  if (!Privileged(uid)) ++unprivileged_;
}

void ConnectionLimits::Remove(uid_t uid) {
  auto it = counts_.find(uid);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
  --total_;
  if (!Privileged(uid)) --unprivileged_;
}

size_t ConnectionLimits::count(uid_t uid) const {
  auto it = counts_.find(uid);
  return it == counts_.end() ? 0 : it->second;
}

std::optional<uid_t> ConnectionLimits::MostConnected() const {
  std::optional<uid_t> best;
  size_t best_count = 0;
  for (const auto& [uid, n] : counts_) {
    if (Privileged(uid) || n <= best_count) continue;
    best = uid;
    best_count = n;
  }
  return best;
}

bool LogThrottle::Allow(uid_t key, int64_t now_ms, uint64_t* suppressed) {
  if (suppressed) *suppressed = 0;
  // Bounded by the uids that can reach the socket, but pruned anyway.
  if (entries_.size() > 256) {
    std::erase_if(entries_, [&](const auto& e) {
      return now_ms - e.second.last_ms >= period_ms_ && e.second.suppressed == 0;
    });
  }
  auto [it, fresh] = entries_.try_emplace(key, Entry{now_ms, 0});
  if (fresh) return true;
  Entry& e = it->second;
  if (now_ms - e.last_ms >= period_ms_) {
    if (suppressed) *suppressed = e.suppressed;
    e.last_ms = now_ms;
    e.suppressed = 0;
    return true;
  }
  ++e.suppressed;
  return false;
}

ControlServer::ControlServer(EventLoop* loop, Options options, Handler handler, LogCallback log)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)), log_(std::move(log)),
      limits_({options_.max_clients, options_.max_clients_per_peer, options_.privileged_reserve},
              ::geteuid()),
      log_throttle_(options_.log_period_ms) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(EventLoop* loop, Options options,
                                                            Handler handler, LogCallback log) {
  std::unique_ptr<ControlServer> s(
      new ControlServer(loop, std::move(options), std::move(handler), std::move(log)));
  Status st = s->Listen();
  if (!st.ok()) return st;
  return s;
}

Status ControlServer::Listen() {
  const std::string& path = options_.path;
  Result<sockaddr_un> addr = UnixSocketAddress(path);
  if (!addr.ok()) return addr.status();
  // The socket is bound under a temporary name, given its mode and group,
  // and only then renamed into place: no client ever sees it with the
  // process's umask, and the umask (which forked actions inherit) is never
  // touched.
  const std::string tmp = path + "~";
  Result<sockaddr_un> tmp_addr = UnixSocketAddress(tmp);
  if (!tmp_addr.ok()) return tmp_addr.status();

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::Error("control socket path '" + path + "' exists and is not a socket");
    }
    if (UnixSocketAnswers(*addr)) {
      return Status::Error("control socket '" + path +
                           "' is in use: another server is running (stop it first)");
    }
    // A dead server's socket.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("cannot remove stale control socket '" + path + "'", errno);
    }
  }
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::FromErrno("cannot create directory '" + dir + "' for the control socket", errno);
    }
  }
  ::unlink(tmp.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  auto fail = [&](const std::string& what) {
    Status e = Status::FromErrno(what, errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*tmp_addr), sizeof *tmp_addr) != 0) {
    return fail("cannot bind control socket '" + tmp + "'");
  }
  if (::chmod(tmp.c_str(), options_.mode) != 0) return fail("chmod '" + tmp + "'");
  if (options_.group && ::chown(tmp.c_str(), static_cast<uid_t>(-1), *options_.group) != 0) {
    return fail("chown '" + tmp + "'");
  }
  if (::listen(fd, 128) != 0) return fail("listen on '" + tmp + "'");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename '" + tmp + "' to '" + path + "'");
  if (::stat(path.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  listen_fd_ = fd;
  Status w = loop_->Watch(listen_fd_, [this](uint32_t) { OnAccept(); }, EPOLLIN);
  if (!w.ok()) return w;
  const int64_t every = std::clamp<int64_t>(options_.idle_timeout_ms / 4, 10, 1000);
  sweep_timer_ = loop_->AddTimer(every, [this] { Sweep(); }, every);
  return Status::Ok();
}

ControlServer::~ControlServer() {
  if (sweep_timer_) loop_->CancelTimer(sweep_timer_);
  if (rearm_timer_) loop_->CancelTimer(rearm_timer_);
  for (auto& [fd, c] : clients_) {
    loop_->Unwatch(fd);
    ::close(fd);
  }
  clients_.clear();
  if (listen_fd_ >= 0) {
    loop_->Unwatch(listen_fd_);
    ::close(listen_fd_);
    // Only our own socket: a server started since may own the path now.
    struct stat st {};
    if (::lstat(options_.path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
      ::unlink(options_.path.c_str());
    }
  }
}

void ControlServer::OnAccept() {
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the pending connection keeps the listener
        // readable, so stop watching it for a moment instead of spinning.
        Log(std::string("control socket: cannot accept: ") + strerror(errno));
        loop_->Unwatch(listen_fd_);
        rearm_timer_ = loop_->AddTimer(250, [this] {
          rearm_timer_ = 0;
          if (!loop_->Watch(listen_fd_, [this](uint32_t) { OnAccept(); }, EPOLLIN).ok()) {
            Log("control socket: cannot watch the listener again");
          }
        });
      }
      return;  // EAGAIN, or a connection that died before accept
    }
    ++accepted_total_;
    PeerCredentials peer = ReadPeer(fd);
    if (!Admit(fd, peer)) continue;
    auto c = std::make_unique<Client>();
    c->fd = fd;
    c->peer = std::move(peer);
    c->last_active_ms = EventLoop::NowMs();
    Status w = loop_->Watch(fd, [this, fd](uint32_t ev) { OnClient(fd, ev); }, EPOLLIN);
    if (!w.ok()) {
      ::close(fd);
      continue;
    }
    limits_.Add(c->peer.uid);
    clients_[fd] = std::move(c);
  }
}

bool ControlServer::Admit(int fd, const PeerCredentials& peer) {
  const ConnectionLimits::Decision d = limits_.Admit(peer.uid);
  if (d.kind == ConnectionLimits::Decision::kAdmit) return true;
  if (d.kind == ConnectionLimits::Decision::kRefuse) {
    ++dropped_total_;
    SendBusy(fd, d.why);
    ::close(fd);
    LogPeer(peer, "refusing client: " + d.why);
    return false;
  }
  const int victim = EvictionVictim(d.victim);
  if (victim < 0) {  // cannot happen: the policy names a uid with connections
    ++dropped_total_;
    SendBusy(fd, "too many control connections; try again later");
    ::close(fd);
    return false;
  }
  Client& v = *clients_.at(victim);
  // Not into the middle of a reply it is still reading.
  if (v.out_off >= v.out.size()) SendBusy(victim, d.why);
  Close(victim, "evicted: " + d.why);
  return true;
}

int ControlServer::EvictionVictim(uid_t uid) const {
  int best = -1;
  std::pair<bool, int64_t> best_key;  // (owes a reply, last active): least first
  for (const auto& [fd, c] : clients_) {
    if (c->peer.uid != uid) continue;
    const std::pair<bool, int64_t> key{c->out_off < c->out.size(), c->last_active_ms};
    if (best < 0 || key < best_key) {
      best = fd;
      best_key = key;
    }
  }
  return best;
}

void ControlServer::LogPeer(const PeerCredentials& peer, const std::string& what) {
  uint64_t held = 0;
  if (!log_throttle_.Allow(peer.uid, EventLoop::NowMs(), &held)) return;
  std::string m = "control socket: " + what + " (pid " + std::to_string(peer.pid) + ", uid " +
                  std::to_string(peer.uid) + ")";
  if (held > 0) {
    m += "; " + std::to_string(held) + " more refused or dropped clients of uid " +
         std::to_string(peer.uid) + " not logged since its last such line";
  }
  Log(m);
}

void ControlServer::OnClient(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  if (events & EPOLLOUT) {
    Flush(c);
    if (clients_.count(fd) == 0) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadFrom(c);
}

void ControlServer::ReadFrom(Client& c) {
  const int fd = c.fd;
  char buf[kReadChunk];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    Close(fd);
    return;
  }
  if (n == 0) {
    // The client is done sending: answer what is complete, then close.
    c.closing = true;
    c.in.clear();
    if (c.out_off >= c.out.size()) {
      Close(fd);
    } else {
      UpdateInterest(c);
    }
    return;
  }
  c.last_active_ms = EventLoop::NowMs();
  if (c.closing) return;  // input after a protocol error is ignored
  c.in.append(buf, static_cast<size_t>(n));
  HandleLines(c);
}

void ControlServer::HandleLines(Client& c) {
  const int fd = c.fd;
  size_t start = 0;             // first byte of the next line
  size_t search_from = c.scanned;  // no "\n" before this
  while (!c.closing) {
    if (c.out.size() - c.out_off > options_.max_pending_output) {
      // The client does not read its replies: stop reading its requests
      // until it catches up (Flush turns reading back on).
      c.reading = false;
      break;
    }
    const size_t nl = c.in.find('\n', search_from);
    if (nl == std::string::npos) {
      search_from = c.in.size();
      break;
    }
    const std::string_view line(c.in.data() + start, nl - start);
    start = search_from = nl + 1;
    Result<ControlRequest> req =
        line.size() + 1 > options_.max_line_bytes
            ? Result<ControlRequest>(Status::Error("request longer than " +
                                                   std::to_string(options_.max_line_bytes) + " bytes"))
            : ParseControlRequest(line);
    if (!req.ok()) {
      Refuse(c, req.status().message());
      return;
    }
    Response r = handler_(*req, c.peer);
    // Look the client up again after calling out.
    if (clients_.count(fd) == 0) return;
    Send(c, EncodeControlReply(r.reply), std::move(r.after_sent));
    if (clients_.count(fd) == 0) return;
  }
  if (c.closing) return;
  c.in.erase(0, start);
  c.scanned = search_from - start;
  if (c.in.size() >= options_.max_line_bytes) {
    Refuse(c, "request longer than " + std::to_string(options_.max_line_bytes) + " bytes");
    return;
  }
  UpdateInterest(c);
}

void ControlServer::Refuse(Client& c, const std::string& why) {
  ++dropped_total_;
  LogPeer(c.peer, "dropping client: " + why);
  c.closing = true;
  c.in.clear();
  c.in.shrink_to_fit();
  Send(c, EncodeControlReply(ControlReply::Failure("ProtocolError", why)));
}

void ControlServer::Send(Client& c, const std::string& line, std::function<void()> after_sent) {
  if (c.out_off > 0 && c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  }
  c.out += line;
  if (after_sent) c.after_sent.emplace_back(c.out.size(), std::move(after_sent));
  Flush(c);
}

void ControlServer::Flush(Client& c) {
  const int fd = c.fd;
  while (c.out_off < c.out.size()) {
    const ssize_t n = ::send(fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      Close(fd);  // runs the pending after_sent callbacks
      return;
    }
    c.out_off += static_cast<size_t>(n);
    c.last_active_ms = EventLoop::NowMs();
  }
  // Callbacks whose reply is out, in order. Taken out first: a callback
  // may stop the loop, but must not find the list half-consumed.
  std::vector<std::function<void()>> done;
  while (!c.after_sent.empty() && c.after_sent.front().first <= c.out_off) {
    done.push_back(std::move(c.after_sent.front().second));
    c.after_sent.erase(c.after_sent.begin());
  }
  const size_t pending = c.out.size() - c.out_off;
  if (pending == 0) {
    c.out.clear();
    c.out_off = 0;
  }
  for (auto& cb : done) cb();
  if (clients_.count(fd) == 0) return;
  if (pending == 0 && c.closing) {
    Close(fd);
    return;
  }
  if (pending > 4 * options_.max_pending_output) {
    Close(fd, "it does not read its replies");
    return;
  }
  if (!c.closing && !c.reading && pending <= options_.max_pending_output) {
    // Caught up: serve the requests already buffered, then read again.
    c.reading = true;
    HandleLines(c);
    return;
  }
  UpdateInterest(c);
}

void ControlServer::UpdateInterest(Client& c) {
  uint32_t ev = 0;
  if (c.reading && !c.closing) ev |= EPOLLIN;
  if (c.out_off < c.out.size()) ev |= EPOLLOUT;
  if (ev == c.events) return;
  c.events = ev;
  const int fd = c.fd;
  // ev == 0 leaves the fd registered but quiet (epoll still reports a
  // hang-up, which closes the client).
  if (!loop_->Watch(fd, [this, fd](uint32_t e) { OnClient(fd, e); }, ev).ok()) Close(fd);
}

void ControlServer::Close(int fd, const std::string& why) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  std::unique_ptr<Client> c = std::move(it->second);
  clients_.erase(it);
  limits_.Remove(c->peer.uid);
  loop_->Unwatch(fd);
  ::close(fd);
  if (!why.empty()) {
    ++dropped_total_;
    LogPeer(c->peer, "dropping client: " + why);
  }
  // A command whose reply could not be delivered still completes (a
  // `stop` whose client vanished still stops).
  for (auto& [off, cb] : c->after_sent) cb();
}

void ControlServer::Sweep() {
  const int64_t now = EventLoop::NowMs();
  std::vector<int> idle;
  for (const auto& [fd, c] : clients_) {
    const bool owes_reply = c->out_off < c->out.size();
    const int64_t limit = owes_reply ? std::max(options_.idle_timeout_ms, options_.stalled_reply_timeout_ms)
                                     : options_.idle_timeout_ms;
    if (now - c->last_active_ms < limit) continue;
    // A request we have not read yet is our delay, not the client's
    // idleness (a loop busy with a burst of log lines or of other clients).
    int unread = 0;
    if (::ioctl(fd, FIONREAD, &unread) == 0 && unread > 0) continue;
    idle.push_back(fd);
  }
  for (int fd : idle) Close(fd, "idle (no request, or its reply not read) for too long");
}

}  // namespace bantam
