// WorkerPool: worker threads that run blocking jobs (shell actions, DNS,
// whois, sendmail) off the event-loop thread and hand a completion closure
// back to it through an eventfd. Jobs posted to the same strand run one at
// a time, in the order posted; different strands run in parallel. A job
// posted with a cancel closure may be abandoned while still queued
// (CancelQueued, used when the daemon stops): its cancel closure runs
// instead, so whoever waits for its completion still gets one.
#ifndef BANTAM_WORKER_POOL_H_
#define BANTAM_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace bantam {

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

  // Up to `threads` (>= 1) workers, each started when a job is ready and no
  // worker is free: a daemon whose actions never run starts none. Error
  // only if the eventfd cannot be created (aborts: a daemon without it
  // cannot run any action).
  explicit WorkerPool(int threads);
  // Runs every job already posted, joins the workers; completions not yet
  // collected by RunCompletions are dropped.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A new serial lane for jobs.
  StrandId NewStrand();
  // Queues `job` behind the earlier jobs of `strand`. With `cancel`, the job
  // may be abandoned by CancelQueued() before it starts; `cancel` then runs
  // in its place (on the thread calling CancelQueued) and its completion is
  // delivered like the job's would have been.
  void Post(StrandId strand, Job job, Job cancel = nullptr);
  // Abandons every queued job that has a cancel closure, in every strand:
  // jobs already running finish; jobs without one stay queued, in order.
  // Returns how many were abandoned.
  size_t CancelQueued();
  // Blocks until no job of `strand` is queued or running.
  void WaitIdle(StrandId strand);
  // Runs `fn` on the calling thread as a job of `strand`, if no job of it is
  // queued or running; returns false, without running it, otherwise. While
  // `fn` runs the strand counts as running: jobs posted meanwhile (from any
  // thread) queue behind it and WaitIdle waits for it, so `fn` and the
  // strand's jobs never overlap and each sees what the other did. `fn`
  // delivers no completion: the caller has its result at once.
  bool RunIfIdle(StrandId strand, const std::function<void()>& fn);

  // Readable (EPOLLIN) when completions are waiting. Owned by the pool.
  int completion_fd() const { return event_fd_; }
  // Loop thread: calls every completion that arrived, in arrival order;
  // returns how many ran.
  size_t RunCompletions();
  // Tests: blocks until at least one completion is waiting or `timeout_ms`
  // passed; then RunCompletions(). Returns how many ran.
  size_t WaitAndRunCompletions(int timeout_ms);
  // Workers started so far (tests).
  size_t threads_started();

 private:
  struct Queued {
    Job job;
    Job cancel;
  };
  struct Lane {
    std::deque<Queued> jobs;
    bool running = false;
  };
  void WorkerMain();
  // mu_ held.
  void Deliver(Completion done);
  // mu_ held, after a lane was made ready: starts a worker if every
  // started one is busy and the cap allows.
  void StartWorkerIfNeeded();

  int event_fd_ = -1;
  std::mutex mu_;
  std::condition_variable work_cv_;  // a lane became ready, or stopping
  std::condition_variable idle_cv_;  // a lane went idle
  std::map<StrandId, Lane> lanes_;   // guarded by mu_
  std::deque<StrandId> ready_;       // lanes with jobs and none running
  std::deque<Completion> completions_;
  StrandId next_strand_ = 1;
  bool stopping_ = false;
  size_t max_threads_ = 1;
  size_t idle_ = 0;                  // workers waiting for a ready lane
  std::vector<std::thread> threads_;  // guarded by mu_
};

}  // namespace bantam

#endif  // BANTAM_WORKER_POOL_H_
