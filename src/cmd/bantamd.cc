// bantamd: the daemon, with fail2ban-server's command line. All logic is
// in the library (Server).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits.h>
#include <optional>
#include <string>
#include <vector>

#include "bantam/config_dir.h"
#include "bantam/server.h"

namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "Usage: bantamd [OPTIONS]\n\n"
               "bantamd reads a fail2ban configuration and protects this host as fail2ban-server "
               "does.\n\n"
               "Options:\n"
               "    -c <DIR>                configuration directory (default: BANTAM_CONFDIR in\n"
               "                            /etc/default/bantam, else /etc/fail2ban)\n"
               "    -s <FILE>               socket path\n"
               "    -p <FILE>               pidfile path\n"
               "    --loglevel <LEVEL>      logging level\n"
               "    --logtarget <TARGET>    logging target: a file, STDOUT, STDERR, SYSLOG, "
               "SYSTEMD-JOURNAL\n"
               "    --syslogsocket auto|<FILE>\n"
               "    -f                      stay in the foreground\n"
               "    -b                      go to the background (default)\n"
               "    -x                      force: remove a stale socket first\n"
               "    -h, --help              this help\n"
               "    -V, --version           version\n");
}

// The starter's side of -b: waits until the detached daemon says READY=1
// (it speaks sd_notify's protocol to the datagram socket `notify`) or is
// gone (the pipe's write end, held only by the daemon, is closed), and
// exits accordingly: `bantamd -b` succeeds only once the jails run, so an
// init script or `bantam start` hears of a daemon that died while starting.
[[noreturn]] void AwaitReady(int notify, int alive) {
  pollfd fds[2] = {{notify, POLLIN, 0}, {alive, POLLIN, 0}};
  for (;;) {
    const int r = ::poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (fds[0].revents & POLLIN) {
      char buf[512];
      const ssize_t n = ::recv(notify, buf, sizeof buf - 1, 0);
      if (n > 0) {
        buf[n] = '\0';
        // Messages are newline-separated assignments; only READY=1 matters.
        std::string msg(buf, static_cast<size_t>(n));
        if (("\n" + msg + "\n").find("\nREADY=1\n") != std::string::npos) ::_exit(0);
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) break;  // the daemon is gone
  }
  std::fprintf(stderr,
               "ERROR: bantamd exited while starting; its log (logtarget) says why\n");
  ::_exit(255);
}

// fail2ban-server's -b: detach from the terminal and the session. Returns
// in the daemon only; the starting process waits for it in AwaitReady.
bool Daemonize() {
  int alive[2];
  if (::pipe2(alive, O_CLOEXEC) != 0) return false;
  const int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (notify < 0) return false;
  // An abstract socket: nothing to clean up, gone with the starter.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = "bantamd-start-" + std::to_string(::getpid());
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(notify, reinterpret_cast<const sockaddr*>(&addr), len) != 0) return false;
  // The daemon's sd_notify(READY=1) comes here. A service manager's own
  // socket does not apply to a daemon that detaches itself.
  ::setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid > 0) {
    ::close(alive[1]);
    AwaitReady(notify, alive[0]);
  }
  ::close(alive[0]);
  ::close(notify);
  if (::setsid() < 0) return false;
  const pid_t again = ::fork();
  if (again < 0) return false;
  if (again > 0) ::_exit(0);
  // alive[1] stays open (close-on-exec, so no action inherits it) for the
  // daemon's life: its closing tells the starter the daemon is gone.
  if (::chdir("/") != 0) return false;
  ::umask(022);
  // Nothing may keep the starter's terminal or pipes open (a caller reading
  // `bantam start` through a pipe waits for end of file).
  FILE* null_in = std::freopen("/dev/null", "r", stdin);
  FILE* null_out = std::freopen("/dev/null", "w", stdout);
  FILE* null_err = std::freopen("/dev/null", "w", stderr);
  (void)null_in;
  (void)null_out;
  (void)null_err;
  return true;
}

}  // namespace

int main(int raw_argc, char** raw_argv) {
  // Flags may be bundled as getopt allows ("-xf"): split them first.
  std::vector<std::string> words;
  for (int i = 1; i < raw_argc; ++i) {
    const std::string w = raw_argv[i];
    if (w.size() > 2 && w[0] == '-' && w[1] != '-' &&
        w.find_first_not_of("xfb", 1) == std::string::npos) {
      for (size_t k = 1; k < w.size(); ++k) words.push_back(std::string("-") + w[k]);
    } else {
      words.push_back(w);
    }
  }
  std::vector<char*> argv_storage{raw_argv[0]};
  for (std::string& w : words) argv_storage.push_back(w.data());
  const int argc = static_cast<int>(argv_storage.size());
  char** argv = argv_storage.data();
  bantam::ServerOptions options;
  std::optional<std::string> cli_conf;
  bool background = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* key) -> bool {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bantamd: %s needs a value\n", a.c_str());
        return false;
      }
      options.overrides.Set(key, argv[++i]);
      return true;
    };
    if (a == "-h" || a == "--help") {
      Usage(stdout);
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::printf("bantamd %s (fail2ban 1.0.2 compatible)\n", BANTAM_VERSION);
      return 0;
    } else if (a == "-c") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bantamd: -c needs a value\n");
        return 255;
      }
      cli_conf = argv[++i];
    } else if (a == "-s") {
      if (!value("socket")) return 255;
    } else if (a == "-p") {
      if (!value("pidfile")) return 255;
    } else if (a == "--loglevel") {
      if (!value("loglevel")) return 255;
    } else if (a == "--logtarget") {
      if (!value("logtarget")) return 255;
    } else if (a == "--syslogsocket") {
      if (!value("syslogsocket")) return 255;
    } else if (a == "-f") {
      background = false;
    } else if (a == "-b") {
      background = true;
    } else if (a == "-x" || a == "--async") {
      // No socket yet (the control socket comes with the client); accepted.
    } else if (a == "start" && i == argc - 1) {
      // fail2ban-server's unit runs `fail2ban-server -xf start`; the word
      // means nothing more than starting.
    } else {
      std::fprintf(stderr, "bantamd: unknown option %s\n", a.c_str());
      Usage(stderr);
      return 255;
    }
  }
  bantam::Result<bantam::ConfigDirChoice> conf = bantam::ChooseConfigDir(cli_conf);
  if (!conf.ok()) {
    std::fprintf(stderr, "ERROR: %s\n", conf.status().message().c_str());
    return 255;
  }
  options.basedir = conf->dir;
  options.basedir_origin = conf->origin;
  // Said where it can be seen before the log target is open (the journal,
  // under systemd) whenever the directory was not named on the command line.
  if (!cli_conf) {
    std::fprintf(stderr, "bantamd: configuration directory %s (%s)\n", conf->dir.c_str(),
                 conf->origin.c_str());
  }
  // The daemon changes to / when it detaches; a reload must still find a
  // configuration given as a relative path.
  if (char* abs = ::realpath(options.basedir.c_str(), nullptr)) {
    options.basedir = abs;
    std::free(abs);
  }
  if (background) {
    // Forks before any thread or database connection exists (Server calls
    // this once the configuration is read and the log is open, so
    // configuration errors still reach the terminal).
    options.detach = []() -> bantam::Status {
      if (!Daemonize()) {
        return bantam::Status::Error(std::string("cannot go to the background: ") + strerror(errno));
      }
      return bantam::Status::Ok();
    };
  }
  bantam::Result<std::unique_ptr<bantam::Server>> server = bantam::Server::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "ERROR: %s\n", server.status().message().c_str());
    return 255;
  }
  bantam::Status s = (*server)->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "ERROR: %s\n", s.message().c_str());
    return 255;
  }
  return 0;
}
