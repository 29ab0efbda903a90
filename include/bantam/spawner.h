// Running shell commands off the event-loop thread.
//
// Spawner: runs one `/bin/sh -c SCRIPT ARG0 ARG1...` to completion with a
// timeout and says how it ended. It blocks, so it is only ever called from
// WorkerPool threads (or from tests). ShellSpawner is the real one; unit
// tests use a fake that records scripts and returns canned results.
//
// WorkerPool: worker threads that run blocking jobs and hand a completion
// closure back to the event-loop thread through an eventfd. Jobs posted to
// the same strand run one at a time, in the order posted; different strands
// run in parallel.
#ifndef BANTAM_SPAWNER_H_
#define BANTAM_SPAWNER_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bantam {

struct SpawnRequest {
  std::string script;             // given to `sh -c`
  std::vector<std::string> args;  // become $0, $1, ... of the script
  double timeout_seconds = 60;    // <= 0 or >= 1e9: no limit
};

// How a command ended. stdout/stderr are captured up to a limit (for the log).
struct SpawnResult {
  enum class End { kExited, kSignaled, kTimedOut, kFailedToStart };
  End end = End::kFailedToStart;
  int exit_code = -1;    // kExited: the exit status
  int signal = 0;        // kSignaled: the signal; kTimedOut: the one that ended it
  std::string out, err;  // captured output (truncated to the spawner's limit)
  std::string error;     // kFailedToStart: why ("posix_spawn: No such file...")
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

// The real Spawner: posix_spawn of `shell -c SCRIPT ARGS...` in a new session
// (its own process group), stdin from /dev/null, stdout and stderr captured,
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

// Worker threads for blocking jobs. Created and driven by the event-loop
// thread: Post, NewStrand, completion_fd and RunCompletions belong to it
// (Post and NewStrand are also safe from other threads). A job runs on a
// worker and returns a completion (may be empty) that RunCompletions later
// calls on the loop thread.
class WorkerPool {
 public:
  using Completion = std::function<void()>;
  using Job = std::function<Completion()>;
  using StrandId = uint64_t;

  // threads >= 1. Error only if the eventfd cannot be created (aborts: a
  // daemon without it cannot run any action).
  explicit WorkerPool(int threads);
  // Runs every job already posted, joins the workers; completions not yet
  // collected by RunCompletions are dropped.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A new serial lane for jobs.
  StrandId NewStrand();
  // Queues `job` behind the earlier jobs of `strand`.
  void Post(StrandId strand, Job job);
  // Blocks until no job of `strand` is queued or running.
  void WaitIdle(StrandId strand);

  // Readable (EPOLLIN) when completions are waiting. Owned by the pool.
  int completion_fd() const { return event_fd_; }
  // Loop thread: calls every completion that arrived, in arrival order;
  // returns how many ran.
  size_t RunCompletions();
  // Tests: blocks until at least one completion is waiting or `timeout_ms`
  // passed; then RunCompletions(). Returns how many ran.
  size_t WaitAndRunCompletions(int timeout_ms);

 private:
  struct Lane {
    std::deque<Job> jobs;
    bool running = false;
  };
  void WorkerMain();

  int event_fd_ = -1;
  std::mutex mu_;
  std::condition_variable work_cv_;  // a lane became ready, or stopping
  std::condition_variable idle_cv_;  // a lane went idle
  std::map<StrandId, Lane> lanes_;   // guarded by mu_
  std::deque<StrandId> ready_;       // lanes with jobs and none running
  std::deque<Completion> completions_;
  StrandId next_strand_ = 1;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bantam

#endif  // BANTAM_SPAWNER_H_
