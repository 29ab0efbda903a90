#include "bantam/worker_pool.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <system_error>

namespace bantam {

WorkerPool::WorkerPool(int threads) {
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) {
    std::perror("bantam: eventfd");
    std::abort();
  }
  max_threads_ = threads < 1 ? 1 : static_cast<size_t>(threads);
  threads_.reserve(max_threads_);
}

void WorkerPool::StartWorkerIfNeeded() {
  if (idle_ >= ready_.size() || threads_.size() >= max_threads_) return;
  try {
    threads_.emplace_back([this] { WorkerMain(); });
  } catch (const std::system_error& e) {
    // Out of threads: the started workers get to the lane in turn. With
    // none, no action could ever run.
    if (threads_.empty()) {
      std::fprintf(stderr, "bantam: cannot start a worker thread: %s\n", e.what());
      std::abort();
    }
  }
}

size_t WorkerPool::threads_started() {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  close(event_fd_);
}

WorkerPool::StrandId WorkerPool::NewStrand() {
  std::lock_guard<std::mutex> lock(mu_);
  return next_strand_++;
}

void WorkerPool::Post(StrandId strand, Job job, Job cancel) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Lane& lane = lanes_[strand];
    lane.jobs.push_back({std::move(job), std::move(cancel)});
    if (lane.running || lane.jobs.size() > 1) return;  // already queued or running
    ready_.push_back(strand);
    StartWorkerIfNeeded();
  }
  work_cv_.notify_one();
}

void WorkerPool::WaitIdle(StrandId strand) {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] {
    auto it = lanes_.find(strand);
    return it == lanes_.end() || (!it->second.running && it->second.jobs.empty());
  });
}

bool WorkerPool::RunIfIdle(StrandId strand, const std::function<void()>& fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A strand has a lane exactly while a job of it is queued or running.
    if (lanes_.count(strand) != 0) return false;
    lanes_[strand].running = true;
  }
  fn();
  {
    std::lock_guard<std::mutex> lock(mu_);
    Lane& after = lanes_[strand];
    after.running = false;
    if (!after.jobs.empty()) {
      // Posted while `fn` ran: Post left them for us to make ready.
      ready_.push_back(strand);
      StartWorkerIfNeeded();
      work_cv_.notify_one();
      return true;
    }
    lanes_.erase(strand);
  }
  idle_cv_.notify_all();
  return true;
}

void WorkerPool::WorkerMain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Stopping: keep running until every posted job has run.
    ++idle_;
    work_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
    --idle_;
    if (ready_.empty()) return;  // stopping and nothing left
    StrandId id = ready_.front();
    ready_.pop_front();
    Lane& lane = lanes_[id];
    Job job = std::move(lane.jobs.front().job);
    lane.jobs.pop_front();
    lane.running = true;
    lock.unlock();
    Completion done = job();
    lock.lock();
    Deliver(std::move(done));
    Lane& after = lanes_[id];
    after.running = false;
    if (!after.jobs.empty()) {
      // This worker looks for a ready lane next: no new one is needed.
      ready_.push_back(id);
      work_cv_.notify_one();
    } else {
      lanes_.erase(id);
      idle_cv_.notify_all();
    }
  }
}

void WorkerPool::Deliver(Completion done) {
  if (!done) return;
  completions_.push_back(std::move(done));
  uint64_t one = 1;
  ssize_t w = write(event_fd_, &one, sizeof(one));
  (void)w;  // EAGAIN only when the counter is saturated: already readable
}

size_t WorkerPool::CancelQueued() {
  std::vector<Job> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, lane] : lanes_) {
      std::deque<Queued> kept;
      for (Queued& q : lane.jobs) {
        if (q.cancel) {
          cancels.push_back(std::move(q.cancel));
        } else {
          kept.push_back(std::move(q));
        }
      }
      lane.jobs.swap(kept);
    }
    // A lane left with no job and none running must not stay ready: the
    // worker that picks it would find nothing to run.
    std::deque<StrandId> ready;
    for (StrandId id : ready_) {
      auto it = lanes_.find(id);
      if (it != lanes_.end() && !it->second.jobs.empty()) ready.push_back(id);
    }
    ready_.swap(ready);
    for (auto it = lanes_.begin(); it != lanes_.end();) {
      if (!it->second.running && it->second.jobs.empty()) {
        it = lanes_.erase(it);
      } else {
        ++it;
      }
    }
  }
  idle_cv_.notify_all();
  // The cancel closures run outside the lock: they may be arbitrary code.
  std::vector<Completion> done;
  done.reserve(cancels.size());
  for (Job& cancel : cancels) done.push_back(cancel());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Completion& c : done) Deliver(std::move(c));
  }
  return cancels.size();
}

size_t WorkerPool::RunCompletions() {
  uint64_t count;
  ssize_t r = read(event_fd_, &count, sizeof(count));
  (void)r;
  std::deque<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(completions_);
  }
  for (Completion& c : batch) c();
  return batch.size();
}

size_t WorkerPool::WaitAndRunCompletions(int timeout_ms) {
  pollfd p = {event_fd_, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return RunCompletions();
}

}  // namespace bantam
