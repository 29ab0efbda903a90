#include "bantam/control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using testing::TempTree;

// Runs an EventLoop with a ControlServer on a thread of its own, so the test
// can be the client. Everything the server touches stays on that thread; the
// test talks to it through sockets only, and stops it through a pipe.
class ServerThread {
 public:
  explicit ServerThread(ControlServer::Options options, ControlServer::Handler handler = nullptr) {
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    if (!handler) {
      // "count" answers how many clients are connected (read on the loop);
      // everything else echoes the command and the peer's uid.
      handler = [this](const ControlRequest& r, const PeerCredentials& p) {
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
        ControlServer::Start(loop_.get(), std::move(options), std::move(handler));
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

}  // namespace
}  // namespace bantam
