// The client against a fake bantamd: a thread that answers protocol-v1
// lines with canned replies (values captured from fail2ban-server) and
// records what it was sent. Expected stdout texts are fail2ban-client's.
#include "bantam/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../testing/temp_tree.h"

namespace bantam {
namespace {

using Words = std::vector<std::string>;

// Answers each request line with replies_[cmd json], or with an
// "Invalid command" error; a reply "" means: never answer.
class FakeServer {
 public:
  explicit FakeServer(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    EXPECT_EQ(::pipe(stop_), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeServer() {
    (void)!::write(stop_[1], "x", 1);
    thread_.join();
    ::close(fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
    ::unlink(path_.c_str());
  }

  void Answer(const Words& cmd, const std::string& reply_json) {
    std::lock_guard<std::mutex> l(mu_);
    replies_[EncodeRequest(cmd)] = reply_json;
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Serve() {
    std::vector<int> clients;
    std::map<int, std::string> buffers;
    for (;;) {
      std::vector<pollfd> fds = {{stop_[0], POLLIN, 0}, {fd_, POLLIN, 0}};
      for (int c : clients) fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) <= 0) continue;
      if (fds[0].revents) break;
      if (fds[1].revents) clients.push_back(::accept(fd_, nullptr, nullptr));
      for (size_t i = 2; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        const int c = fds[i].fd;
        char buf[4096];
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
          ::close(c);
          std::erase(clients, c);
          continue;
        }
        std::string& b = buffers[c];
        b.append(buf, n);
        size_t nl;
        while ((nl = b.find('\n')) != std::string::npos) {
          std::string line = b.substr(0, nl);
          b.erase(0, nl + 1);
          std::string reply;
          {
            std::lock_guard<std::mutex> l(mu_);
            requests_.push_back(line);
            auto it = replies_.find(line);
            reply = it != replies_.end()
                        ? it->second
                        : R"({"v": 1, "ok": false, "error": {"type": "Exception", "args": )"
                          R"(["Invalid command"], "message": "Invalid command"}})";
          }
          if (!reply.empty()) (void)!::write(c, (reply + "\n").data(), reply.size() + 1);
        }
      }
    }
    for (int c : clients) ::close(c);
  }

  std::string path_;
  int fd_ = -1;
  int stop_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::string> replies_;
  std::vector<std::string> requests_;
};

std::string Ok(const std::string& value_json) {
  return R"({"v": 1, "ok": true, "value": )" + value_json + "}";
}

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : socket_(tree_.Path("s.sock")), server_(socket_) {
    tree_.Write("conf/fail2ban.conf", "[Definition]\nsocket = " + socket_ +
                                          "\npidfile = " + tree_.Path("p.pid") +
                                          "\nlogtarget = STDERR\ndbfile = :memory:\n");
    tree_.Write("conf/filter.d/asterisk.conf", "[Definition]\nfailregex = ^bad <HOST>$\n");
    tree_.Write("asterisk.log", "");
    tree_.Write("conf/jail.conf", "[asterisk]\nenabled = true\nbackend = polling\n"
                                  "filter = asterisk\nlogpath = " +
                                      tree_.Path("asterisk.log") + "\n");
    env_.as_fail2ban = true;
    env_.out = [this](const std::string& s) { out_ += s; };
    env_.err = [this](const std::string& s) { err_ += s + "\n"; };
    env_.read_line = [this](const std::string& prompt, std::string* line) {
      out_ += prompt;
      if (input_.empty()) return false;
      *line = input_.front();
      input_.pop_front();
      return true;
    };
    env_.spawn_server = [this](const Words& args, bool) {
      spawned_ = args;
      return true;
    };
  }

  int Run(Words args) {
    args.insert(args.begin(), {"fail2ban-client", "-c", tree_.Path("conf")});
    return RunClient(args, env_);
  }

  testing::TempTree tree_;
  std::string socket_;
  FakeServer server_;
  ClientEnv env_;
  std::string out_, err_;
  std::deque<std::string> input_;
  Words spawned_;
};

TEST_F(ClientTest, StatusPrintsTheTree) {
  server_.Answer({"status"}, Ok(R"([["Number of jail", 1], ["Jail list", "asterisk"]])"));
  EXPECT_EQ(Run({"status"}), 0);
  EXPECT_EQ(out_, "Status\n|- Number of jail:\t1\n`- Jail list:\tasterisk\n");
  EXPECT_EQ(server_.requests(), Words{R"({"v": 1, "cmd": ["status"]})"});
}

TEST_F(ClientTest, UnknownJailIsFail2bansSentenceAndStatus255) {
  server_.Answer({"status", "nojail"},
                 R"({"v": 1, "ok": false, "error": {"type": "UnknownJailException", )"
                 R"("args": ["nojail"], "message": "'nojail'"}})");
  EXPECT_EQ(Run({"status", "nojail"}), 255);
  EXPECT_EQ(out_, "Sorry but the jail 'nojail' does not exist\n");
  EXPECT_NE(err_.find("ERROR   NOK: ('nojail',)"), std::string::npos) << err_;
}

TEST_F(ClientTest, PermissionErrorPrintsTheServersMessage) {
  server_.Answer({"unban", "--all"},
                 R"({"v": 1, "ok": false, "error": {"type": "PermissionError", "args": )"
                 R"(["read-only access"], "message": "read-only access"}})");
  EXPECT_EQ(Run({"unban", "--all"}), 255);
  EXPECT_EQ(out_, "read-only access\n");
}

TEST_F(ClientTest, OptionsAfterTheCommandAreCommandWords) {
  server_.Answer({"get", "asterisk", "banip", "--with-time"},
                 Ok(R"(["1.2.3.4 \t2026-11-26 01:27:22 + 600 = 2026-11-26 01:37:22"])"));
  EXPECT_EQ(Run({"get", "asterisk", "banip", "--with-time"}), 0);
  EXPECT_EQ(out_, "1.2.3.4 \t2026-11-26 01:27:22 + 600 = 2026-11-26 01:37:22\n");
}

TEST_F(ClientTest, UnknownCommandIsRefusedWithoutSending) {
  EXPECT_EQ(Run({"bogus"}), 255);
  EXPECT_EQ(out_, "Invalid command\n");
  EXPECT_EQ(Run({"get", "asterisk"}), 255);
  EXPECT_EQ(out_, "Invalid command\nSorry but the command is invalid\n");
  EXPECT_EQ(Run({"set", "asterisk", "bogus", "1"}), 255);
  EXPECT_EQ(out_.substr(out_.rfind("Invalid")),
            "Invalid command 'bogus' (no set action or not yet implemented)\n");
  EXPECT_TRUE(server_.requests().empty());
}

TEST_F(ClientTest, NoServerNamesTheSocketPath) {
  EXPECT_EQ(Run({"-s", tree_.Path("none.sock"), "ping"}), 255);
  EXPECT_EQ(out_, "");
  EXPECT_NE(err_.find("ERROR   Failed to access socket path: " + tree_.Path("none.sock") +
                      ". Is fail2ban running?"),
            std::string::npos)
      << err_;
}

TEST_F(ClientTest, PingTimesOutWhenTheServerDoesNotAnswer) {
  server_.Answer({"ping", "0.2"}, "");
  EXPECT_EQ(Run({"ping", "0.2"}), 255);
  EXPECT_NE(err_.find("ERROR   timed out"), std::string::npos) << err_;
  EXPECT_EQ(Run({"ping", "soon"}), 255);
  EXPECT_NE(err_.find("could not convert string to float: 'soon'"), std::string::npos);
}

TEST_F(ClientTest, AnswerThatIsNotProtocolV1IsAProtocolError) {
  server_.Answer({"version"}, R"({"v": 2, "ok": true, "value": "x"})");
  EXPECT_EQ(Run({"version"}), 255);
  EXPECT_NE(err_.find("ProtocolError: bad answer: protocol version is not 1"),
            std::string::npos)
      << err_;
}

TEST_F(ClientTest, ReloadSendsOptionsAndJail) {
  server_.Answer({"ping"}, Ok(R"("pong")"));
  server_.Answer({"reload", "--restart", "--unban", "asterisk"}, Ok(R"("OK")"));
  EXPECT_EQ(Run({"restart", "--unban", "asterisk"}), 0);
  EXPECT_EQ(out_, "OK\n");
  EXPECT_EQ(server_.requests().back(),
            R"({"v": 1, "cmd": ["reload", "--restart", "--unban", "asterisk"]})");
}

TEST_F(ClientTest, ReloadOfAJailNotInTheConfigurationIsRefused) {
  server_.Answer({"ping"}, Ok(R"("pong")"));
  EXPECT_EQ(Run({"reload", "nojail"}), 255);
  EXPECT_NE(err_.find("Failed during configuration: No section: 'nojail'"), std::string::npos) << err_;
  EXPECT_EQ(Run({"reload", "--all", "asterisk"}), 255);
  EXPECT_NE(err_.find("Unexpected argument(s) for reload: ['--all', 'asterisk']"),
            std::string::npos);
}

TEST_F(ClientTest, StartWhenRunningSaysSo) {
  server_.Answer({"ping"}, Ok(R"("pong")"));
  EXPECT_EQ(Run({"start"}), 255);
  EXPECT_NE(err_.find("ERROR   Server already running"), std::string::npos) << err_;
  EXPECT_TRUE(spawned_.empty());
}

TEST_F(ClientTest, StartRefusesAStaleSocketWithoutDashX) {
  EXPECT_EQ(Run({"start"}), 255);  // the fake's socket file exists, nothing answers ping
  EXPECT_NE(err_.find("Fail2ban seems to be in unexpected state"), std::string::npos) << err_;
  EXPECT_TRUE(spawned_.empty());
}

TEST_F(ClientTest, StartSpawnsBantamdWithThePathsAndWaits) {
  server_.Answer({"server-status"}, Ok(R"("Server ready")"));
  env_.spawn_server = [this](const Words& args, bool foreground) {
    spawned_ = args;
    EXPECT_FALSE(foreground);
    server_.Answer({"ping"}, Ok(R"("pong")"));  // up from now on
    return true;
  };
  EXPECT_EQ(Run({"-x", "--loglevel", "DEBUG", "start"}), 0);
  EXPECT_EQ(out_, "Server ready\n");
  EXPECT_EQ(spawned_, (Words{"bantamd", "-b", "-c", tree_.Path("conf"), "-s", socket_, "-p",
                             tree_.Path("p.pid"), "-x", "--loglevel", "DEBUG"}));
}

TEST_F(ClientTest, InteractiveModeWithHistory) {
  server_.Answer({"echo", "a b", "c"}, Ok(R"(["a b", "c"])"));
  input_ = {"echo 'a b' c", "!!", "history", "exit"};
  EXPECT_EQ(Run({"-i"}), 0);
  EXPECT_NE(out_.find("fail2ban> a b c\nfail2ban> echo 'a b' c\na b c\n"), std::string::npos)
      << out_;
  EXPECT_NE(out_.find("1  echo 'a b' c\n2  echo 'a b' c\n"), std::string::npos) << out_;
}

TEST_F(ClientTest, InteractiveEndOfInputIs255) {
  input_ = {};
  EXPECT_EQ(Run({"-i"}), 255);
}

TEST(ClientArgsTest, GetoptRules) {
  std::string out;
  auto sink = [&out](const std::string& s) { out += s; };
  Result<ClientOptions> o =
      ParseClientArgs({"bantam", "-vvqx", "-cDIR", "--sock", "S", "--dump", "unban", "--all"},
                      sink, false);
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->verbose, 2);
  EXPECT_TRUE(o->force);
  EXPECT_EQ(o->conf, "DIR");
  EXPECT_EQ(*o->socket, "S");
  EXPECT_EQ(o->dump, 1);
  EXPECT_EQ(o->args, (Words{"unban", "--all"}));
  EXPECT_EQ(ParseClientArgs({"b", "--d"}, sink, false).status().message(),
            "option --d not a unique prefix");
  EXPECT_EQ(ParseClientArgs({"b", "-z", "-h"}, sink, false).status().message(),
            "option -z not recognized");
  EXPECT_EQ(ParseClientArgs({"b", "-c"}, sink, false).status().message(),
            "option -c requires argument");
  EXPECT_EQ(ParseClientArgs({"b", "--help=1"}, sink, false).status().message(),
            "option --help must not have an argument");
  o = ParseClientArgs({"b", "--timeout=1m", "--dp", "-f", "--", "-x"}, sink, false);
  EXPECT_EQ(o->timeout, 60);
  EXPECT_EQ(o->dump, 2);
  EXPECT_FALSE(o->background);
  EXPECT_EQ(o->args, Words{"-x"});
  EXPECT_TRUE(out.empty());
}

TEST(ClientArgsTest, VersionForms) {
  std::string out;
  auto sink = [&out](const std::string& s) { out += s; };
  EXPECT_TRUE(ParseClientArgs({"fail2ban-client", "-V"}, sink, true)->done);
  EXPECT_EQ(out, "1.0.2\n");
  out.clear();
  (void)ParseClientArgs({"fail2ban-client", "--version"}, sink, true);
  EXPECT_EQ(out, "Fail2Ban v1.0.2 (bantam " BANTAM_VERSION ")\n");
  out.clear();
  (void)ParseClientArgs({"bantam", "-V"}, sink, false);
  EXPECT_EQ(out, BANTAM_VERSION "\n");
  out.clear();
  (void)ParseClientArgs({"bantam", "--str2sec", "1h 30m"}, sink, false);
  EXPECT_EQ(out, "5400\n");
}

TEST(ClientProtocolTest, RequestAndReplyLines) {
  EXPECT_EQ(EncodeRequest({"set", "a", "banip", "1.2.3.4"}),
            R"({"v": 1, "cmd": ["set", "a", "banip", "1.2.3.4"]})");
  Result<Reply> r = DecodeReply(R"({"v": 1, "ok": true, "value": [1, null]})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->value, Value(Value::List{Value(1), Value()}));
  r = DecodeReply(R"({"v": 1, "ok": false, "error": {"type": "KeyError", "args": ["x", 1]}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->error.type, "KeyError");
  EXPECT_EQ(r->error.message, "('x', 1)");
  EXPECT_FALSE(DecodeReply("[]").ok());
  EXPECT_FALSE(DecodeReply(R"({"v": 1, "ok": false})").ok());
}

TEST(ClientPrecheckTest, WhatFail2bansServerWouldRefuseAnyway) {
  EXPECT_FALSE(PrecheckCommand({"status", "a", "b"}).has_value());
  EXPECT_EQ(PrecheckCommand({"status", "a", "b", "c"})->message, "Invalid command (no status)");
  EXPECT_EQ(PrecheckCommand({"unban"})->message, "Invalid command");
  EXPECT_EQ(PrecheckCommand({"add"})->type, "IndexError");
  EXPECT_FALSE(PrecheckCommand({"get", "loglevel"}).has_value());
  EXPECT_EQ(PrecheckCommand({"get", "j", "action", "a"})->type, "IndexError");
  EXPECT_FALSE(PrecheckCommand({"get", "j", "bantime.factor"}).has_value());
  EXPECT_EQ(PrecheckCommand({"get", "j", "x"})->message,
            "Invalid command (no get action or not yet implemented)");
  EXPECT_FALSE(PrecheckCommand({"set", "j", "banip"}).has_value());
  EXPECT_EQ(PrecheckCommand({"set", "j", "unbanip"})->type, "IndexError");
  EXPECT_EQ(PrecheckCommand({"set", "loglevel"})->type, "IndexError");
  EXPECT_FALSE(PrecheckCommand({"set", "dbpurgeage"}).has_value());
  EXPECT_EQ(PrecheckCommand({"server-stream"})->message, "Invalid command");
}

TEST_F(ClientTest, WithoutDashCTheDefaultsFileNamesTheTreeAndDashTSaysWhich) {
  tree_.Write("default", "BANTAM_CONFDIR=" + tree_.Path("conf") + "\n");
  env_.defaults_file = tree_.Path("default");
  EXPECT_EQ(RunClient({"bantam", "-t"}, env_), 0) << err_;
  EXPECT_EQ(out_, "Configuration directory " + tree_.Path("conf") + " (BANTAM_CONFDIR in " +
                      tree_.Path("default") + ":1)\nOK: configuration test is successful\n");
  // And the socket comes from that tree's fail2ban.conf.
  out_.clear();
  server_.Answer({"ping"}, Ok(R"("pong")"));
  EXPECT_EQ(RunClient({"bantam", "ping"}, env_), 0) << err_;
  EXPECT_EQ(out_, "Server replied: pong\n");
}

TEST_F(ClientTest, ABrokenDefaultsFileIsAnErrorNamingTheLine) {
  tree_.Write("default", "BANTAM_CONFDIR=relative\n");
  env_.defaults_file = tree_.Path("default");
  EXPECT_EQ(RunClient({"bantam", "ping"}, env_), 255);
  EXPECT_EQ(err_, "ERROR: " + tree_.Path("default") +
                      ":1: BANTAM_CONFDIR must be an absolute directory, got 'relative'\n");
  EXPECT_TRUE(server_.requests().empty());
}

}  // namespace
}  // namespace bantam
