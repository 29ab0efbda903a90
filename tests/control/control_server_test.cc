#include "bantam/control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../testing/require.h"
#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;
using Decision = ConnectionLimits::Decision;

// Runs an EventLoop with a ControlServer on a thread of its own, so the test
// can be the client. Everything the server touches stays on that thread; the
// test talks to it through sockets only, and stops it through a pipe.
class ServerThread {
 public:
  explicit ServerThread(ControlServer::Options options, ControlServer::Handler handler = nullptr,
                        ControlServer::LogCallback log = nullptr) {
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    if (!handler) {
      // "count" answers how many clients are connected (read on the loop);
      // everything else echoes the command and the peer's uid.
      handler = [this](const ControlRequest& r, const PeerCredentials& p) {
        if (r.cmd[0] == "count" && r.cmd.size() == 2) {
          return ControlServer::Response{
              ControlReply::Success(static_cast<int64_t>(
                  server_->client_count(static_cast<uid_t>(std::stoul(r.cmd[1]))))),
              nullptr};
        }
        if (r.cmd[0] == "count") {
          return ControlServer::Response{
              ControlReply::Success(static_cast<int64_t>(server_->client_count())), nullptr};
        }
        Value::List words(r.cmd.begin(), r.cmd.end());
        return ControlServer::Response{
            ControlReply::Success(Value(Value::List{Value(words), static_cast<int64_t>(p.uid),
                                                    static_cast<int64_t>(p.pid)})),
            nullptr};
      };
    }
    Result<std::unique_ptr<ControlServer>> s =
        ControlServer::Start(loop_.get(), std::move(options), std::move(handler), std::move(log));
    EXPECT_TRUE(s.ok()) << s.status().message();
    if (!s.ok()) return;
    server_ = std::move(*s);
    EXPECT_EQ(::pipe2(stop_pipe_, O_CLOEXEC | O_NONBLOCK), 0);
    EXPECT_TRUE(loop_->Watch(stop_pipe_[0], [this](uint32_t) { loop_->Stop(); }).ok());
    thread_ = std::thread([this] { EXPECT_TRUE(loop_->Run().ok()); });
  }
  ~ServerThread() { Stop(); }

  // Stops the loop and destroys the server (removing its socket).
  void Stop() {
    if (thread_.joinable()) {
      [[maybe_unused]] ssize_t n = ::write(stop_pipe_[1], "x", 1);
      thread_.join();
    }
    server_.reset();
    if (stop_pipe_[0] >= 0) {
      loop_->Unwatch(stop_pipe_[0]);
      ::close(stop_pipe_[0]);
      ::close(stop_pipe_[1]);
      stop_pipe_[0] = stop_pipe_[1] = -1;
    }
  }
  bool ok() const { return server_ != nullptr; }
  ControlServer* server() { return server_.get(); }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<ControlServer> server_;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

int Connect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads one line (without "\n"); "<eof>" when the server closed first,
// "<timeout>" after `timeout_ms`.
std::string ReadLine(int fd, int timeout_ms = 5000) {
  std::string line;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "<timeout>";
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return "<timeout>";
    char c;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n <= 0) return line.empty() ? "<eof>" : line + "<eof>";
    if (c == '\n') return line;
    line.push_back(c);
  }
}

std::string Ask(int fd, const std::vector<std::string>& cmd) {
  SendAll(fd, EncodeControlRequest(cmd));
  return ReadLine(fd);
}

ControlServer::Options Opts(const TempTree& t) {
  ControlServer::Options o;
  o.path = t.Path("run/bantam.sock");
  return o;
}

TEST(ControlServer, AnswersARequestWithThePeersCredentials) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Ask(fd, {"status", "asterisk"}),
            "{\"v\":1,\"ok\":true,\"value\":[[\"status\", \"asterisk\"], " +
                std::to_string(::getuid()) + ", " + std::to_string(::getpid()) + "]}");
  ::close(fd);
}

TEST(ControlServer, SocketIsCreatedWithItsModeAndGroupAndRemovedAtExit) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  o.mode = 0660;
  o.group = ::getgid();
  {
    ServerThread s(o);
    ASSERT_TRUE(s.ok());
    struct stat st {};
    ASSERT_EQ(::lstat(o.path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, ::getgid());
    EXPECT_NE(::access((o.path + "~").c_str(), F_OK), 0) << "temporary name left behind";
  }
  EXPECT_NE(::access(o.path.c_str(), F_OK), 0) << "socket not removed";
}

TEST(ControlServer, DefaultModeIsOwnerOnly) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  struct stat st {};
  ASSERT_EQ(::lstat(t.Path("run/bantam.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(ControlServer, StaleSocketIsReplacedButALiveServerIsNot) {
  TempTree t;
  const std::string path = t.Path("run/bantam.sock");
  {
    // A socket file nobody listens on, as a killed server leaves it.
    ::mkdir(t.Path("run").c_str(), 0755);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }
  ServerThread first(Opts(t));
  ASSERT_TRUE(first.ok());

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Result<std::unique_ptr<ControlServer>> second = ControlServer::Start(
      loop->get(), Opts(t), [](const ControlRequest&, const PeerCredentials&) {
        return ControlServer::Response{ControlReply::Success("second"), nullptr};
      });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("is in use: another server is running"),
            std::string::npos)
      << second.status().message();
  // The first server still owns and serves the path.
  const int fd = Connect(path);
  ASSERT_GE(fd, 0);
  EXPECT_NE(Ask(fd, {"ping"}).find("[\"ping\"]"), std::string::npos);
  ::close(fd);
}

TEST(ControlServer, RefusesAPathThatIsNotASocket) {
  TempTree t;
  t.Write("run/bantam.sock", "precious\n");
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Result<std::unique_ptr<ControlServer>> s = ControlServer::Start(
      loop->get(), Opts(t), [](const ControlRequest&, const PeerCredentials&) {
        return ControlServer::Response{};
      });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(),
            "control socket path '" + t.Path("run/bantam.sock") + "' exists and is not a socket");
}

TEST(ControlServer, SeveralRequestsInOneWriteAreAnsweredInOrder) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  SendAll(fd, EncodeControlRequest({"echo", "1"}) + EncodeControlRequest({"echo", "2"}) +
                  EncodeControlRequest({"echo", "3"}));
  for (const char* n : {"1", "2", "3"}) {
    EXPECT_NE(ReadLine(fd).find(std::string("[\"echo\", \"") + n + "\"]"), std::string::npos) << n;
  }
  ::close(fd);
}

TEST(ControlServer, RequestArrivingByteByByteIsAnswered) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  const std::string req = EncodeControlRequest({"banned", "192.0.2.1"});
  for (char c : req) {
    SendAll(fd, std::string_view(&c, 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_NE(ReadLine(fd).find("[\"banned\", \"192.0.2.1\"]"), std::string::npos);
  ::close(fd);
}

TEST(ControlServer, GarbageGetsAProtocolErrorAndTheConnectionIsClosed) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  // The valid request after the garbage is never answered.
  SendAll(fd, "GET / HTTP/1.0\n" + EncodeControlRequest({"ping"}));
  const std::string reply = ReadLine(fd);
  EXPECT_EQ(reply.rfind("{\"v\":1,\"ok\":false,\"error\":{\"type\":\"ProtocolError\"", 0), 0u)
      << reply;
  EXPECT_EQ(ReadLine(fd), "<eof>");
  ::close(fd);
  // The server is unharmed.
  const int fd2 = Connect(t.Path("run/bantam.sock"));
  EXPECT_NE(Ask(fd2, {"ping"}).find("\"ok\":true"), std::string::npos);
  ::close(fd2);
}

TEST(ControlServer, OversizedRequestWithoutNewlineIsRefused) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  o.max_line_bytes = 4096;
  ServerThread s(o);
  ASSERT_TRUE(s.ok());
  const int fd = Connect(o.path);
  SendAll(fd, "{\"v\":1,\"cmd\":[\"" + std::string(8000, 'a'));
  const std::string reply = ReadLine(fd);
  EXPECT_NE(reply.find("\"ProtocolError\""), std::string::npos) << reply;
  EXPECT_NE(reply.find("request longer than 4096 bytes"), std::string::npos) << reply;
  EXPECT_EQ(ReadLine(fd), "<eof>");
  ::close(fd);
}

TEST(ControlServer, OversizedRequestLineIsRefusedAtTheDefaultLimit) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  // Exactly one byte over 1 MiB with its newline, sent in one go.
  std::string req = "{\"v\":1,\"cmd\":[\"echo\",\"";
  req += std::string(kMaxControlLineBytes - req.size() - 4 + 1, 'b');
  req += "\"]}\n";
  ASSERT_EQ(req.size(), kMaxControlLineBytes + 1);
  std::thread writer([&] { SendAll(fd, req); });
  const std::string reply = ReadLine(fd);
  writer.join();
  EXPECT_NE(reply.find("request longer than 1048576 bytes"), std::string::npos) << reply;
  ::close(fd);

  // One byte less is fine.
  const int fd2 = Connect(t.Path("run/bantam.sock"));
  req.erase(30, 1);
  std::thread writer2([&] { SendAll(fd2, req); });
  std::string ok = ReadLine(fd2, 60000);
  writer2.join();
  EXPECT_EQ(ok.rfind("{\"v\":1,\"ok\":true", 0), 0u) << ok.substr(0, 200);
  ::close(fd2);
}

TEST(ControlServer, IdleClientIsDropped) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  o.idle_timeout_ms = 150;
  ServerThread s(o);
  ASSERT_TRUE(s.ok());
  const int quiet = Connect(o.path);
  const int partial = Connect(o.path);
  SendAll(partial, "{\"v\":1,");  // half a request, then nothing
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadLine(quiet, 3000), "<eof>");
  EXPECT_EQ(ReadLine(partial, 3000), "<eof>");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ::close(quiet);
  ::close(partial);
}

TEST(ControlServer, ClientsOverTheCapAreRefusedPolitely) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  o.max_clients = 3;
  ServerThread s(o);
  ASSERT_TRUE(s.ok());
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) {
    fds.push_back(Connect(o.path));
    EXPECT_NE(Ask(fds.back(), {"ping"}).find("\"ok\":true"), std::string::npos);
  }
  const int extra = Connect(o.path);
  ASSERT_GE(extra, 0);
  const std::string reply = ReadLine(extra);
  EXPECT_NE(reply.find("\"type\":\"ServerBusy\""), std::string::npos) << reply;
  EXPECT_EQ(ReadLine(extra), "<eof>");
  ::close(extra);
  // Once one leaves, a newcomer is served.
  ::close(fds.back());
  fds.pop_back();
  std::string answer;
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int fd = Connect(o.path);
    answer = Ask(fd, {"ping"});
    ::close(fd);
    if (answer.find("\"ok\":true") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(answer.find("\"ok\":true"), std::string::npos) << answer;
  for (int fd : fds) ::close(fd);
}

TEST(ControlServer, TwoHundredConcurrentClients) {
  TempTree t;
  ServerThread s(Opts(t));
  ASSERT_TRUE(s.ok());
  constexpr int kClients = 200;
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) {
    fds.push_back(Connect(t.Path("run/bantam.sock")));
    ASSERT_GE(fds.back(), 0) << i;
  }
  // Every client sends before any reads: the server must hold them all.
  for (int i = 0; i < kClients; ++i) {
    SendAll(fds[i], EncodeControlRequest({"echo", std::to_string(i)}) +
                        EncodeControlRequest({"echo", std::to_string(i), "again"}));
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_NE(ReadLine(fds[i]).find("[\"echo\", \"" + std::to_string(i) + "\"]"),
              std::string::npos);
    EXPECT_NE(ReadLine(fds[i]).find("[\"echo\", \"" + std::to_string(i) + "\", \"again\"]"),
              std::string::npos);
  }
  EXPECT_EQ(Ask(fds[0], {"count"}), "{\"v\":1,\"ok\":true,\"value\":200}");
  for (int fd : fds) ::close(fd);
}

TEST(ControlServer, AClientSlowToReadALargeReplyIsNotIdle) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  // The idle timeout leaves room for the 900 KB request to arrive on a
  // loaded machine (a client that stops half-way through a request for
  // longer than it is dropped, rightly): at 100 ms, an ASan run on 2 busy
  // cores lost the client while it was still sending.
  o.idle_timeout_ms = 400;
  o.stalled_reply_timeout_ms = 3000;
  ServerThread s(o);
  ASSERT_TRUE(s.ok());
  const int slow = Connect(o.path);
  // A reply far larger than the socket buffers, left unread past the idle
  // timeout: the whole of it still arrives.
  SendAll(slow, EncodeControlRequest({"echo", std::string(900 * 1024, 'x')}));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::string reply;
  char chunk[65536];
  while (reply.find('\n') == std::string::npos) {
    pollfd p{slow, POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) break;
    const ssize_t got = ::recv(slow, chunk, sizeof chunk, 0);
    if (got <= 0) break;
    reply.append(chunk, static_cast<size_t>(got));
  }
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply.substr(0, 80);
  EXPECT_GT(reply.size(), 900u * 1024);
  // Left unread past the stalled-reply timeout, it is dropped.
  SendAll(slow, EncodeControlRequest({"echo", std::string(900 * 1024, 'y')}));
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  std::string rest;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(slow, buf, sizeof buf, 0)) > 0) rest.append(buf, static_cast<size_t>(n));
  EXPECT_LT(rest.size(), 900u * 1024) << "the stalled reply was not cut off";
  ::close(slow);
}

TEST(ControlServer, AClientThatDoesNotReadItsRepliesStallsNoOne) {
  TempTree t;
  ControlServer::Options o = Opts(t);
  o.max_pending_output = 64 * 1024;
  ServerThread s(o);
  ASSERT_TRUE(s.ok());
  const int hog = Connect(o.path);
  const int fd = ::fcntl(hog, F_GETFL);
  ::fcntl(hog, F_SETFL, fd | O_NONBLOCK);
  // Requests whose replies are large, never read: the server stops reading
  // this client's requests once its output backs up.
  const std::string req = EncodeControlRequest({"echo", std::string(4000, 'x')});
  size_t sent = 0;
  for (int i = 0; i < 2000; ++i) {
    const ssize_t n = ::send(hog, req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  EXPECT_GT(sent, 0u);
  const int other = Connect(o.path);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(Ask(other, {"ping"}).find("\"ok\":true"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  ::close(other);
  ::close(hog);
}

TEST(ControlServer, AfterSentRunsOnceTheReplyIsOut) {
  TempTree t;
  std::atomic<int> ran{0};
  ServerThread s(Opts(t), [&](const ControlRequest& r, const PeerCredentials&) {
    ControlServer::Response resp{ControlReply::Success(Value(r.cmd[0])), nullptr};
    if (r.cmd[0] == "stop") resp.after_sent = [&] { ++ran; };
    return resp;
  });
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  EXPECT_EQ(Ask(fd, {"stop"}), "{\"v\":1,\"ok\":true,\"value\":\"stop\"}");
  for (int i = 0; i < 100 && ran == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(ran, 1);
  ::close(fd);
}

TEST(ControlServer, ClientHangingUpAfterItsRequestStillGetsItDone) {
  TempTree t;
  std::atomic<int> ran{0};
  ServerThread s(Opts(t), [&](const ControlRequest&, const PeerCredentials&) {
    return ControlServer::Response{ControlReply::Success("bye"), [&] { ++ran; }};
  });
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  SendAll(fd, EncodeControlRequest({"stop"}));
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(ReadLine(fd), "{\"v\":1,\"ok\":true,\"value\":\"bye\"}");
  EXPECT_EQ(ReadLine(fd), "<eof>");
  ::close(fd);
  EXPECT_EQ(ran, 1);
}

TEST(ControlServer, PeerCredentialsComeFromTheKernel) {
  PeerCredentials p;
  p.gid = 10;
  p.groups = {20, 30};
  EXPECT_TRUE(p.InGroup(10));
  EXPECT_TRUE(p.InGroup(30));
  EXPECT_FALSE(p.InGroup(40));

  TempTree t;
  PeerCredentials seen;
  std::atomic<bool> got{false};
  ServerThread s(Opts(t), [&](const ControlRequest&, const PeerCredentials& peer) {
    seen = peer;
    got = true;
    return ControlServer::Response{ControlReply::Success("ok"), nullptr};
  });
  ASSERT_TRUE(s.ok());
  const int fd = Connect(t.Path("run/bantam.sock"));
  Ask(fd, {"ping"});
  ::close(fd);
  ASSERT_TRUE(got);
  EXPECT_EQ(seen.uid, ::getuid());
  EXPECT_EQ(seen.gid, ::getgid());
  EXPECT_EQ(seen.pid, ::getpid());
  std::vector<gid_t> mine(::getgroups(0, nullptr));
  ::getgroups(static_cast<int>(mine.size()), mine.data());
  for (gid_t g : mine) EXPECT_TRUE(seen.InGroup(g)) << g;
}

// --- Connection slots per peer: the policy with made-up uids. ---

ConnectionLimits::Limits Small() { return {10, 4, 2}; }  // 8 slots for the unprivileged

void AddN(ConnectionLimits& l, uid_t uid, int n) {
  for (int i = 0; i < n; ++i) l.Add(uid);
}

TEST(ControlConnectionLimits, OneUserIsCappedAndTheRefusalSaysWhy) {
  ConnectionLimits l({}, 999);
  EXPECT_EQ(l.limits().per_peer, 32u);
  AddN(l, 1000, 32);
  const Decision d = l.Admit(1000);
  EXPECT_EQ(d.kind, Decision::kRefuse);
  EXPECT_EQ(d.why, "too many control connections from uid 1000 (at most 32 per user); close some and try again");
  EXPECT_EQ(l.Admit(1001).kind, Decision::kAdmit);
  EXPECT_EQ(l.Admit(0).kind, Decision::kAdmit);
  l.Remove(1000);
  EXPECT_EQ(l.Admit(1000).kind, Decision::kAdmit);
  EXPECT_EQ(l.count(1000), 31u);
  EXPECT_EQ(l.total(), 31u);
}

// The fault probe: socketgroup members holding every connection they may
// must never keep root out.
TEST(ControlConnectionLimits, RootGetsInPastAFullUnprivilegedShare) {
  ConnectionLimits l({}, 999);
  for (uid_t u = 1000; u < 1008; ++u) AddN(l, u, 30);  // 240 = 256 - 16
  EXPECT_EQ(l.unprivileged_total(), 240u);
  // Root's reserve: 16 connections without touching anyone.
  for (int i = 0; i < 16; ++i) {
    ASSERT_EQ(l.Admit(0).kind, Decision::kAdmit) << i;
    l.Add(0);
  }
  // The table is full now, and root still gets in: at a member's expense.
  const Decision d = l.Admit(0);
  EXPECT_EQ(d.kind, Decision::kEvictThenAdmit);
  EXPECT_EQ(d.victim, 1000u);
  EXPECT_EQ(d.why, "connection closed to make room for root: all 256 control connections are taken, 30 of them by uid 1000");
  // The server's own uid is as privileged as root.
  EXPECT_TRUE(l.Privileged(999));
  EXPECT_EQ(l.Admit(999).kind, Decision::kEvictThenAdmit);
}

TEST(ControlConnectionLimits, MembersNeverTakeRootsReserve) {
  ConnectionLimits l(Small(), 999);
  for (uid_t u = 1000; u < 1004; ++u) AddN(l, u, 2);  // the 8 unprivileged slots
  // Below its cap, but the share is full and nobody holds more than it.
  Decision d = l.Admit(1000);
  EXPECT_EQ(d.kind, Decision::kRefuse);
  EXPECT_EQ(d.why, "too many control connections (the 8 open to users other than root are taken, "
                   "2 of them by uid 1000); try again later");
  EXPECT_EQ(l.Admit(1004).kind, Decision::kEvictThenAdmit);  // holds none: 2 >= 0 + 2
  // The 2 slots left are root's.
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(l.Admit(0).kind, Decision::kAdmit);
    l.Add(0);
  }
  EXPECT_EQ(l.total(), 10u);
  EXPECT_EQ(l.unprivileged_total(), 8u);
  d = l.Admit(0);
  EXPECT_EQ(d.kind, Decision::kEvictThenAdmit);
  EXPECT_EQ(d.victim, 1000u);
  l.Remove(1000);
  l.Add(0);
  EXPECT_EQ(l.count(0), 3u);
  EXPECT_EQ(l.count(1000), 1u);
  // A slot root took from the members is not theirs again while root holds it.
  d = l.Admit(1000);
  EXPECT_EQ(d.kind, Decision::kRefuse) << d.why;
}

TEST(ControlConnectionLimits, ANewcomerEvictsFromTheMostConnectedMember) {
  ConnectionLimits l(Small(), 999);
  AddN(l, 1000, 4);
  AddN(l, 1001, 3);
  AddN(l, 1002, 1);  // share full: 8
  // 1003 holds nothing: it takes one from the biggest holder.
  Decision d = l.Admit(1003);
  ASSERT_EQ(d.kind, Decision::kEvictThenAdmit);
  EXPECT_EQ(d.victim, 1000u);
  EXPECT_EQ(d.why, "connection closed to make room for another user: uid 1000 holds 4 of the 8 control connections open to users other than root");
  l.Remove(1000);
  l.Add(1003);  // 3 3 1 1
  // Ties go to the lowest uid.
  d = l.Admit(1004);
  ASSERT_EQ(d.kind, Decision::kEvictThenAdmit);
  EXPECT_EQ(d.victim, 1000u);
  l.Remove(1000);
  l.Add(1004);  // 2 3 1 1 1
  d = l.Admit(1002);  // holds 1, 1001 holds 3: 3 >= 1 + 2
  ASSERT_EQ(d.kind, Decision::kEvictThenAdmit);
  EXPECT_EQ(d.victim, 1001u);
  l.Remove(1001);
  l.Add(1002);  // 2 2 2 1 1
  // Nobody holds two more than 1000: it has its fair share.
  d = l.Admit(1000);
  EXPECT_EQ(d.kind, Decision::kRefuse);
  EXPECT_EQ(d.why, "too many control connections (the 8 open to users other than root are taken, 2 of them by uid 1000); try again later");
  EXPECT_EQ(l.Admit(1003).kind, Decision::kRefuse);
  // Root's connections are never evicted for a member.
  ConnectionLimits r(Small(), 999);
  AddN(r, 0, 10);
  d = r.Admit(1000);
  EXPECT_EQ(d.kind, Decision::kRefuse);
  EXPECT_EQ(d.why, "too many control connections (10 in all); try again later");
  d = r.Admit(0);
  EXPECT_EQ(d.kind, Decision::kRefuse);
  EXPECT_EQ(d.why, "too many control connections (10, all of them root's); close some and try again");
}

TEST(ControlLogThrottle, OneLinePerUidPerPeriodWithACountOfTheRest) {
  LogThrottle t(60000);
  uint64_t held = 99;
  EXPECT_TRUE(t.Allow(1000, 0, &held));
  EXPECT_EQ(held, 0u);
  for (int i = 1; i <= 300; ++i) EXPECT_FALSE(t.Allow(1000, i * 100)) << i;
  EXPECT_TRUE(t.Allow(1001, 500));  // another peer is not held back
  EXPECT_TRUE(t.Allow(0, 500));
  EXPECT_FALSE(t.Allow(1000, 59999));
  EXPECT_TRUE(t.Allow(1000, 60000, &held));
  EXPECT_EQ(held, 301u);
  EXPECT_FALSE(t.Allow(1000, 60001));
  EXPECT_TRUE(t.Allow(1000, 200000, &held));
  EXPECT_EQ(held, 1u);
}

// --- The same through real sockets, connections made as other uids. ---

// `n` connections to `path` made by a child process running as uid:gid
// (root only), handed back over a socketpair: SO_PEERCRED is whoever called
// connect(), so the server sees `uid`. -1 for a connect() that failed.
std::vector<int> ConnectAs(const std::string& path, uid_t uid, gid_t gid, int n) {
  std::vector<int> fds;
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) return fds;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.data(), path.size());
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only system calls from here: the parent has threads.
    ::close(sp[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(2);
    for (int i = 0; i < n; ++i) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      char ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 'y' : 'n';
      iovec iov{&ok, 1};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (ok == 'y') {
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
      }
      if (::sendmsg(sp[1], &msg, MSG_NOSIGNAL) != 1) ::_exit(3);
      if (fd >= 0) ::close(fd);
    }
    ::_exit(0);
  }
  ::close(sp[1]);
  for (int i = 0; i < n && pid > 0; ++i) {
    char ok = 0;
    iovec iov{&ok, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(sp[0], &msg, MSG_CMSG_CLOEXEC) != 1) break;
    int fd = -1;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    if (ok == 'y' && cm != nullptr && cm->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    fds.push_back(fd);
  }
  ::close(sp[0]);
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child as uid " << uid << ": " << status;
  return fds;
}

// A server any uid may connect to, and its log.
struct OpenServer {
  explicit OpenServer(ControlServer::Options o)
      : server(Open(std::move(o)), nullptr, [this](const std::string& m) {
          std::lock_guard<std::mutex> lock(mu);
          log.push_back(m);
        }) {}
  static ControlServer::Options Open(ControlServer::Options o) {
    o.mode = 0666;
    return o;
  }
  std::vector<std::string> Log() {
    std::lock_guard<std::mutex> lock(mu);
    return log;
  }
  size_t LogLinesWith(const std::string& needle) {
    size_t n = 0;
    for (const std::string& l : Log()) n += l.find(needle) != std::string::npos;
    return n;
  }
  std::mutex mu;
  std::vector<std::string> log;
  ServerThread server;
};

// A tree whose socket a non-root child can reach (mkdtemp makes it 0700).
ControlServer::Options ReachableOpts(const TempTree& t) {
  ::chmod(t.root().c_str(), 0755);
  return Opts(t);
}

// Milliseconds root waits for `ping` on a new connection.
double RootPingMs(const std::string& path, std::string* reply) {
  const auto start = std::chrono::steady_clock::now();
  const int fd = Connect(path);
  *reply = fd < 0 ? "<connect failed>" : Ask(fd, {"ping"});
  if (fd >= 0) ::close(fd);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

constexpr uid_t kHostile = 40001;  // no such user needed: setuid() takes any uid

// The fault probe: 300 connections from one unprivileged uid, kept alive
// with pings, used to keep root out with "too many control connections".
TEST(ControlServer, ThreeHundredConnectionsFromOneUserDoNotLockRootOut) {
  BANTAM_REQUIRE_ROOT(::geteuid() == 0, "connections made as other uids");
  TempTree t;
  ControlServer::Options o = ReachableOpts(t);
  OpenServer s(o);
  ASSERT_TRUE(s.server.ok());
  std::vector<int> fds = ConnectAs(o.path, kHostile, kHostile, 300);
  ASSERT_EQ(fds.size(), 300u);
  int served = 0, busy = 0;
  std::string busy_reply;
  for (int fd : fds) {
    ASSERT_GE(fd, 0);
    const std::string r = Ask(fd, {"ping"});
    if (r.find("\"ok\":true") != std::string::npos) {
      ++served;
    } else if (r.find("\"ServerBusy\"") != std::string::npos) {
      ++busy;
      busy_reply = r;
      EXPECT_EQ(ReadLine(fd), "<eof>");
    } else {
      ADD_FAILURE() << r;
    }
  }
  EXPECT_EQ(served, 32);
  EXPECT_EQ(busy, 268);
  EXPECT_NE(busy_reply.find("too many control connections from uid 40001 (at most 32 per user)"),
            std::string::npos) << busy_reply;
  // Pinging keeps them; root still gets through at once, again and again.
  double worst = 0;
  for (int i = 0; i < 50; ++i) {
    for (int fd : fds) SendAll(fd, EncodeControlRequest({"ping"}));
    std::string reply;
    worst = std::max(worst, RootPingMs(o.path, &reply));
    ASSERT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
  }
  std::printf("root ping with 300 connections from uid %u: worst %.1f ms of 50\n", kHostile, worst);
  EXPECT_LT(worst, 500);
  const int root = Connect(o.path);
  EXPECT_EQ(Ask(root, {"count", std::to_string(kHostile)}), "{\"v\":1,\"ok\":true,\"value\":32}");
  ::close(root);
  // 268 refusals, one log line.
  EXPECT_EQ(s.LogLinesWith("uid 40001"), 1u) << s.Log().size() << " lines";
  EXPECT_EQ(s.LogLinesWith("refusing client: too many control connections from uid 40001"), 1u);
  for (int fd : fds) ::close(fd);
}

// Members filling the unprivileged share: root gets its reserve and more,
// and a member with no connection still gets one, each at the expense of
// the member holding most.
TEST(ControlServer, RootAndNewcomersGetInPastMembersFillingTheTable) {
  BANTAM_REQUIRE_ROOT(::geteuid() == 0, "connections made as other uids");
  TempTree t;
  ControlServer::Options o = ReachableOpts(t);
  o.max_clients = 40;
  o.max_clients_per_peer = 8;
  o.privileged_reserve = 4;  // 36 for the members
  OpenServer s(o);
  ASSERT_TRUE(s.server.ok());
  std::vector<int> held;
  for (uid_t u = kHostile; u < kHostile + 6; ++u) {
    for (int fd : ConnectAs(o.path, u, u, 6)) {
      ASSERT_GE(fd, 0);
      ASSERT_NE(Ask(fd, {"ping"}).find("\"ok\":true"), std::string::npos) << u;
      held.push_back(fd);
    }
  }
  ASSERT_EQ(held.size(), 36u);
  // Nobody holds two more than 40001: it has its fair share, and no more.
  std::vector<int> over = ConnectAs(o.path, kHostile, kHostile, 1);
  std::string line = ReadLine(over[0]);
  EXPECT_NE(line.find("too many control connections (the 36 open to users other than root are "
                      "taken, 6 of them by uid 40001); try again later"),
            std::string::npos) << line;
  ::close(over[0]);
  // Root's reserve, and past it.
  std::vector<int> roots;
  for (int i = 0; i < 6; ++i) {
    roots.push_back(Connect(o.path));
    ASSERT_NE(Ask(roots.back(), {"ping"}).find("\"ok\":true"), std::string::npos) << i;
  }
  // Tells which held connections were closed, with what.
  auto evicted = [&] {
    std::vector<std::string> lines;
    for (int& fd : held) {
      pollfd p{fd, POLLIN, 0};
      if (fd >= 0 && ::poll(&p, 1, 0) == 1) {
        lines.push_back(ReadLine(fd));
        ::close(fd);
        fd = -1;
      }
    }
    return lines;
  };
  std::vector<std::string> lines = evicted();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("connection closed to make room for root: all 40 control connections are "
                          "taken, 6 of them by uid 40001"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("6 of them by uid 40002"), std::string::npos) << lines[1];
  // A new member gets in.
  std::vector<int> late = ConnectAs(o.path, kHostile + 9, kHostile + 9, 1);
  EXPECT_NE(Ask(late[0], {"ping"}).find("\"ok\":true"), std::string::npos);
  lines = evicted();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"ServerBusy\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("connection closed to make room for another user: uid 40003 holds 6 of "
                          "the 36 control connections open to users other than root"),
            std::string::npos) << lines[0];
  // One line per uid: 40001's eviction is held back, its refusal having
  // been logged just before.
  EXPECT_EQ(s.LogLinesWith("uid 40001)"), 1u);
  EXPECT_EQ(s.LogLinesWith("refusing client: too many control connections (the 36"), 1u);
  EXPECT_EQ(s.LogLinesWith("evicted: connection closed to make room for root"), 1u);
  EXPECT_EQ(s.LogLinesWith("evicted: connection closed to make room for another user"), 1u);
  for (int fd : held) if (fd >= 0) ::close(fd);
  for (int fd : roots) ::close(fd);
  ::close(late[0]);
}

TEST(ControlServer, IdleConnectionsGiveTheirSlotsBack) {
  BANTAM_REQUIRE_ROOT(::geteuid() == 0, "connections made as other uids");
  TempTree t;
  ControlServer::Options o = ReachableOpts(t);
  o.idle_timeout_ms = 1000;
  OpenServer s(o);
  ASSERT_TRUE(s.server.ok());
  std::vector<int> fds = ConnectAs(o.path, kHostile, kHostile, 32);
  for (int fd : fds) ASSERT_NE(Ask(fd, {"ping"}).find("\"ok\":true"), std::string::npos);
  std::vector<int> more = ConnectAs(o.path, kHostile, kHostile, 1);
  EXPECT_NE(ReadLine(more[0]).find("\"ServerBusy\""), std::string::npos);
  ::close(more[0]);
  // Silent past the idle timeout: every one is closed, and the uid may
  // connect again.
  for (int fd : fds) EXPECT_EQ(ReadLine(fd, 5000), "<eof>");
  const int root = Connect(o.path);
  EXPECT_EQ(Ask(root, {"count", std::to_string(kHostile)}), "{\"v\":1,\"ok\":true,\"value\":0}");
  ::close(root);
  more = ConnectAs(o.path, kHostile, kHostile, 1);
  EXPECT_NE(Ask(more[0], {"ping"}).find("\"ok\":true"), std::string::npos);
  ::close(more[0]);
  for (int fd : fds) ::close(fd);
  // 32 idle drops and a refusal: one line for the uid.
  EXPECT_EQ(s.LogLinesWith("uid 40001"), 1u);
}

// Garbage, 100 MB without a newline, half a request then silence: none of
// it delays anyone else.
TEST(ControlServer, HostileClientsDelayNoOne) {
  TempTree t;
  std::vector<std::string> log;
  std::mutex mu;
  ServerThread s(Opts(t), nullptr, [&](const std::string& m) {
    std::lock_guard<std::mutex> lock(mu);
    log.push_back(m);
  });
  ASSERT_TRUE(s.ok());
  const std::string path = t.Path("run/bantam.sock");
  std::vector<int> stalled;
  for (int i = 0; i < 50; ++i) {
    stalled.push_back(Connect(path));
    SendAll(stalled.back(), "{\"v\":1,\"cmd\":[\"status\",");
  }
  std::atomic<bool> done{false};
  std::atomic<uint64_t> flood_sent{0}, garbage_conns{0};
  std::thread flood([&] {
    // 100 MB without a newline, from several connections in turn.
    const std::string chunk(1 << 20, 'a');
    while (!done && flood_sent < (100u << 20)) {
      const int fd = Connect(path);
      for (int i = 0; i < 100 && !done; ++i) {
        const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        flood_sent += static_cast<uint64_t>(n);
      }
      ::close(fd);
    }
  });
  std::thread garbage([&] {
    while (!done) {
      const int fd = Connect(path);
      SendAll(fd, "\x01\x02 GET / HTTP/1.1\r\n\xff\xfe{{{{\n");
      ::close(fd);
      ++garbage_conns;
    }
  });
  double worst = 0;
  std::string reply;
  for (int i = 0; i < 100; ++i) {
    worst = std::max(worst, RootPingMs(path, &reply));
    ASSERT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Keep going until the whole 100 MB went in.
  while (flood_sent < (100u << 20)) {
    worst = std::max(worst, RootPingMs(path, &reply));
    ASSERT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
  }
  done = true;
  flood.join();
  garbage.join();
  std::printf("root ping beside 50 stalled, %llu garbage connections and %llu MB without a newline: "
              "worst %.1f ms\n",
              static_cast<unsigned long long>(garbage_conns.load()),
              static_cast<unsigned long long>(flood_sent.load() >> 20), worst);
  EXPECT_LT(worst, 500);
  // The stalled clients are still connected (not yet idle), and served.
  EXPECT_NE(Ask(stalled[0], {"x"}).find("ProtocolError"), std::string::npos);
  for (int fd : stalled) ::close(fd);
  // Every one of them was uid 0's: one log line, not thousands.
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(log.size(), 1u);
}

}  // namespace
}  // namespace bantam
