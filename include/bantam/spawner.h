// Spawner: runs one command to completion with a timeout and says how it
// ended: `/bin/sh -c SCRIPT ARG0 ARG1...` (shell actions), or an argv exec'd
// without a shell with bytes for its stdin (whois and the mail command of
// MailAction). It blocks, so it is only ever called from WorkerPool threads
// (worker_pool.h) or from tests. ShellSpawner is the real one; unit tests use
// a fake that records scripts and returns canned results.
#ifndef BANTAM_SPAWNER_H_
#define BANTAM_SPAWNER_H_

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace bantam {

struct SpawnRequest {
  std::string script;             // given to `sh -c` (unused when argv is set)
  std::vector<std::string> args;  // become $0, $1, ... of the script
  double timeout_seconds = 60;    // <= 0 or >= 1e9: no limit
  // Not empty: exec this argv (argv[0] searched in PATH) without a shell;
  // script and args are then unused. Nothing in it is ever parsed.
  std::vector<std::string> argv = {};
  // Written to the command's stdin, which is then closed. Empty: stdin is
  // /dev/null. A command that exits without reading it all is no error.
  std::string input = {};
  // Cap on each of SpawnResult::out and err (the rest is read and dropped);
  // 0: the spawner's own.
  size_t max_output = 0;
  bool merge_stderr = false;  // stderr goes to out (`2>&1`); err stays empty
};

// How a command ended. stdout/stderr are captured up to a limit (for the log).
struct SpawnResult {
  enum class End { kExited, kSignaled, kTimedOut, kFailedToStart };
  End end = End::kFailedToStart;
  int exit_code = -1;    // kExited: the exit status
  int signal = 0;        // kSignaled: the signal; kTimedOut: the one that ended it
  std::string out, err;  // captured output (truncated to the spawner's limit)
  // kFailedToStart: why ("posix_spawn /bin/sh: ...", for an argv
  // "whois: No such file or directory").
  std::string error;
  double elapsed_seconds = 0;

  // The command exited with status 0.
  bool ok() const { return end == End::kExited && exit_code == 0; }
  // "returned 1", "killed with SIGTERM", "timed out after 1 seconds (killed)",
  // "failed to start: ...": what fail2ban's log says, without the command.
  std::string Describe(double timeout_seconds) const;
};

// Runs shell commands. Implementations are thread-safe: workers call Run
// concurrently.
class Spawner {
 public:
  virtual ~Spawner() = default;
  // Blocks until the command ended (or was killed on timeout).
  virtual SpawnResult Run(const SpawnRequest& request) = 0;
};

// The real Spawner: posix_spawn of `shell -c SCRIPT ARGS...` (or posix_spawnp
// of the request's argv) in a new session (its own process group), stdin
// from /dev/null or a socket fed the request's input (send(MSG_NOSIGNAL), so
// a reader that quits early cannot SIGPIPE the daemon), stdout and stderr
// captured,
// no other descriptor inherited, signal dispositions reset to default. On
// timeout the whole process group gets SIGTERM, then after 0.2 s SIGKILL (as
// fail2ban's executeCmd). Background children that outlive a command that
// exited in time are left alone and their later output is not read.
// Requires that nobody else reaps our children (no SIGCHLD = SIG_IGN, no
// waitpid(-1) elsewhere in the process).
class ShellSpawner final : public Spawner {
 public:
  explicit ShellSpawner(std::string shell = "/bin/sh", size_t max_output = 64 * 1024)
      : shell_(std::move(shell)), max_output_(max_output) {}
  SpawnResult Run(const SpawnRequest& request) override;

 private:
  const std::string shell_;
  const size_t max_output_;
};

}  // namespace bantam

#endif  // BANTAM_SPAWNER_H_
