#include "bantam/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern char** environ;

namespace bantam {

namespace {

using SteadyClock = std::chrono::steady_clock;

std::string SignalName(int sig) {
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 32)
  if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
#endif
  return "signal " + std::to_string(sig);
}

std::string FormatSeconds(double s) {
  if (s == std::floor(s) && std::fabs(s) < 1e15) return std::to_string(static_cast<int64_t>(s));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", s);
  return buf;
}

// Reads what is available from `fd` into `out` (up to `limit`, the rest is
// read and dropped so the writer never blocks). False at EOF or error.
bool ReadSome(int fd, std::string* out, size_t limit) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      size_t keep = out->size() < limit ? std::min(limit - out->size(), static_cast<size_t>(n)) : 0;
      out->append(buf, keep);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// The parent's ends of a running command's stdin, stdout and stderr (-1
// once closed) and what is still to be written to stdin.
struct ChildPipes {
  int in = -1, out = -1, err = -1;
  const std::string* input = nullptr;
  size_t sent = 0;
  size_t limit = 0;  // cap on each of out and err

  void CloseAll() {
    CloseFd(&in);
    CloseFd(&out);
    CloseFd(&err);
  }
};

// Writes what the child's stdin takes now; closes it when all is sent or
// the child stopped reading.
void FeedSome(ChildPipes* p) {
  const std::string& input = *p->input;
  ssize_t k = send(p->in, input.data() + p->sent, input.size() - p->sent, MSG_NOSIGNAL);
  if (k > 0) p->sent += static_cast<size_t>(k);
  if ((k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
      p->sent >= input.size())
    CloseFd(&p->in);
}

// Waits up to `ms` (< 0: forever) for `pid` to end, feeding its stdin and
// collecting its output on the way. True when it ended. The child is left
// unreaped (WNOWAIT), so its pid and process group id stay reserved while
// we may still signal them.
bool WaitChild(pid_t pid, int pidfd, ChildPipes* p, std::string* out, std::string* err,
               int64_t ms) {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
  for (;;) {
    siginfo_t info;
    info.si_pid = 0;
    int w = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (w == 0 && info.si_pid == pid) return true;
    if (w < 0 && errno != EINTR) return true;  // not our child any more (reaped elsewhere)
    int64_t left = -1;
    if (ms >= 0) {
      left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
                 .count();
      if (left <= 0) return false;
    }
    pollfd fds[4];
    int n = 0;
    int in_i = -1, out_i = -1, err_i = -1;
    if (p->in >= 0) {
      in_i = n;
      fds[n++] = {p->in, POLLOUT, 0};
    }
    if (p->out >= 0) {
      out_i = n;
      fds[n++] = {p->out, POLLIN, 0};
    }
    if (p->err >= 0) {
      err_i = n;
      fds[n++] = {p->err, POLLIN, 0};
    }
    if (pidfd >= 0) fds[n++] = {pidfd, POLLIN, 0};
    // Without a pidfd, poll in short ticks and ask waitpid again.
    int timeout = static_cast<int>(left < 0 ? -1 : std::min<int64_t>(left, 1 << 30));
    if (pidfd < 0 && (timeout < 0 || timeout > 10)) timeout = 10;
    if (poll(fds, static_cast<nfds_t>(n), timeout) <= 0) continue;
    if (in_i >= 0 && fds[in_i].revents) FeedSome(p);
    if (out_i >= 0 && fds[out_i].revents && !ReadSome(p->out, out, p->limit)) CloseFd(&p->out);
    if (err_i >= 0 && fds[err_i].revents && !ReadSome(p->err, err, p->limit)) CloseFd(&p->err);
  }
}

}  // namespace

std::string SpawnResult::Describe(double timeout_seconds) const {
  switch (end) {
    case End::kExited:
      return "returned " + std::to_string(exit_code);
    case End::kSignaled:
      return "killed with " + SignalName(signal);
    case End::kTimedOut:
      return "timed out after " + FormatSeconds(timeout_seconds) +
             " seconds (process group killed)";
    case End::kFailedToStart:
      return "failed to start: " + error;
  }
  return "?";
}

SpawnResult ShellSpawner::Run(const SpawnRequest& request) {
  SpawnResult result;
  const auto start = SteadyClock::now();
  auto finish = [&]() -> SpawnResult {
    result.elapsed_seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    return std::move(result);
  };
  const bool exec_argv = !request.argv.empty();
  const bool feed = !request.input.empty();

  // A socket for stdin: send(MSG_NOSIGNAL) cannot raise SIGPIPE in the
  // daemon when the command exits without reading.
  int in_sock[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if ((feed && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sock) != 0) ||
      pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + strerror(errno);
    for (int* fd :
         {&in_sock[0], &in_sock[1], &out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]})
      CloseFd(fd);
    return finish();
  }
  if (feed) shutdown(in_sock[1], SHUT_WR);  // the child's end only reads

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (feed) {
    posix_spawn_file_actions_adddup2(&fa, in_sock[1], 0);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, request.merge_stderr ? out_pipe[1] : err_pipe[1], 2);
  // The daemon's sockets, logs and database stay out of actions even when
  // some library opened them without O_CLOEXEC.
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &empty);
  // SIGPIPE ignored by the daemon must not stay ignored in `... | sendmail`.
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> argv;
  if (exec_argv) {
    for (const std::string& a : request.argv) argv.push_back(const_cast<char*>(a.c_str()));
  } else {
    argv.push_back(const_cast<char*>(shell_.c_str()));
    argv.push_back(const_cast<char*>("-c"));
    argv.push_back(const_cast<char*>(request.script.c_str()));
    for (const std::string& a : request.args) argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);

  pid_t pid = -1;
  int rc = exec_argv ? posix_spawnp(&pid, request.argv[0].c_str(), &fa, &attr, argv.data(), environ)
                     : posix_spawn(&pid, shell_.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  CloseFd(&in_sock[1]);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  ChildPipes pipes;
  pipes.in = in_sock[0];
  pipes.out = out_pipe[0];
  pipes.err = err_pipe[0];
  pipes.input = &request.input;
  pipes.limit = request.max_output > 0 ? request.max_output : max_output_;
  if (request.merge_stderr) CloseFd(&pipes.err);
  if (rc != 0) {
    result.error = exec_argv ? request.argv[0] + ": " + strerror(rc)
                             : "posix_spawn " + shell_ + ": " + strerror(rc);
    pipes.CloseAll();
    return finish();
  }
  for (int fd : {pipes.in, pipes.out, pipes.err})
    if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
  int pidfd = PidfdOpen(pid);

  const double t = request.timeout_seconds;
  // Beyond ~30 years (or inf) means no limit.
  const int64_t limit_ms = t > 0 && t < 1e9 ? static_cast<int64_t>(std::ceil(t * 1000)) : -1;
  bool ended = WaitChild(pid, pidfd, &pipes, &result.out, &result.err, limit_ms);
  if (!ended) {
    // The shell and everything it started share its process group (setsid).
    // The leader is not reaped yet, so the group id cannot have been reused.
    // As fail2ban: SIGTERM, a short grace, then SIGKILL for what is left.
    killpg(pid, SIGTERM);
    WaitChild(pid, pidfd, &pipes, &result.out, &result.err, 200);
    killpg(pid, SIGKILL);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!ended) {
    result.end = SpawnResult::End::kTimedOut;
    result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : SIGTERM;
  } else if (WIFEXITED(status)) {
    result.end = SpawnResult::End::kExited;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.end = SpawnResult::End::kSignaled;
    result.signal = WTERMSIG(status);
  } else {
    result.end = SpawnResult::End::kExited;
    result.exit_code = 0;
  }
  // What the command wrote before it ended is in the pipes; do not wait for
  // EOF, a background child may hold them open for long.
  if (pipes.out >= 0) ReadSome(pipes.out, &result.out, pipes.limit);
  if (pipes.err >= 0) ReadSome(pipes.err, &result.err, pipes.limit);
  pipes.CloseAll();
  CloseFd(&pidfd);
  return finish();
}

}  // namespace bantam
