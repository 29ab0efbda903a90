#include "bantam/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace bantam {
namespace {

// Runs completions until `n` arrived or 10 s passed.
std::vector<std::string> Collect(WorkerPool& pool, std::vector<std::string>& log, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (log.size() < n && std::chrono::steady_clock::now() < deadline) {
    pool.WaitAndRunCompletions(50);
  }
  return log;
}

TEST(WorkerPoolTest, JobsOfAStrandRunInOrder) {
  WorkerPool pool(3);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::vector<std::string> log;
  for (int i = 0; i < 20; ++i) {
    pool.Post(strand, [&log, i]() -> WorkerPool::Completion {
      return [&log, i] { log.push_back(std::to_string(i)); };
    });
  }
  Collect(pool, log, 20);
  ASSERT_EQ(log.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(log[i], std::to_string(i));
}

// Workers start when jobs need them, up to the cap: none before the first
// job, as many as jobs of different strands run at once, never more.
TEST(WorkerPoolTest, WorkersStartWhenJobsNeedThemUpToTheCap) {
  WorkerPool pool(3);
  EXPECT_EQ(pool.threads_started(), 0u);
  // Four strands' jobs that all wait until three of them run together:
  // only three workers can make that happen, and the fourth waits.
  std::atomic<int> running{0};
  std::atomic<int> peak{0};
  std::atomic<bool> release{false};
  std::vector<std::string> log;
  for (int i = 0; i < 4; ++i) {
    pool.Post(pool.NewStrand(), [&, i]() -> WorkerPool::Completion {
      const int now = ++running;
      for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
      while (peak.load() < 3 && !release.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      --running;
      return [&log, i] { log.push_back(std::to_string(i)); };
    });
  }
  Collect(pool, log, 4);
  release = true;
  EXPECT_EQ(log.size(), 4u);
  EXPECT_EQ(peak.load(), 3);
  EXPECT_EQ(pool.threads_started(), 3u);
}

TEST(WorkerPoolTest, CancelQueuedAbandonsOnlyCancellableQueuedJobs) {
  WorkerPool pool(1);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::atomic<int> ran{0};
  std::vector<std::string> log;
  // A running job (a hanging action), which cancelling must not touch.
  pool.Post(
      strand,
      [&, released]() -> WorkerPool::Completion {
        started.set_value();
        released.wait();
        ++ran;
        return [&log] { log.push_back("running"); };
      },
      [&log]() -> WorkerPool::Completion { return [&log] { log.push_back("cancel running"); }; });
  started.get_future().wait();
  for (int i = 0; i < 3; ++i) {
    pool.Post(
        strand,
        [&ran]() -> WorkerPool::Completion {
          ++ran;
          return nullptr;
        },
        [&log, i]() -> WorkerPool::Completion {
          return [&log, i] { log.push_back("cancelled " + std::to_string(i)); };
        });
  }
  // A job without a cancel closure (an actionstop) stays queued.
  pool.Post(strand, [&ran, &log]() -> WorkerPool::Completion {
    ++ran;
    return [&log] { log.push_back("stop"); };
  });
  EXPECT_EQ(pool.CancelQueued(), 3u);
  EXPECT_EQ(pool.CancelQueued(), 0u);
  release.set_value();
  Collect(pool, log, 5);
  pool.WaitIdle(strand);
  EXPECT_EQ(ran.load(), 2);  // the running job and the stop
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled 0", "cancelled 1", "cancelled 2", "running",
                                           "stop"}));
}

TEST(WorkerPoolTest, AStrandWhoseQueueWasCancelledAcceptsNewJobs) {
  WorkerPool pool(2);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::vector<std::string> log;
  pool.Post(strand, [&, released]() -> WorkerPool::Completion {
    started.set_value();
    released.wait();
    return nullptr;
  });
  started.get_future().wait();
  pool.Post(
      strand, []() -> WorkerPool::Completion { return nullptr; },
      [&log]() -> WorkerPool::Completion { return [&log] { log.push_back("cancelled"); }; });
  EXPECT_EQ(pool.CancelQueued(), 1u);
  release.set_value();
  pool.WaitIdle(strand);
  pool.Post(strand, [&log]() -> WorkerPool::Completion {
    return [&log] { log.push_back("after"); };
  });
  Collect(pool, log, 2);
  EXPECT_EQ(log, (std::vector<std::string>{"cancelled", "after"}));
}

TEST(WorkerPoolTest, RunIfIdleRunsOnTheCallerWhenTheStrandIsIdle) {
  WorkerPool pool(1);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::thread::id ran_on;
  EXPECT_TRUE(pool.RunIfIdle(strand, [&] { ran_on = std::this_thread::get_id(); }));
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(WorkerPoolTest, RunIfIdleRefusesWhileAJobIsRunningOrQueued) {
  WorkerPool pool(1);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  pool.Post(strand, [&, released]() -> WorkerPool::Completion {
    started.set_value();
    released.wait();
    return nullptr;
  });
  started.get_future().wait();
  bool ran = false;
  EXPECT_FALSE(pool.RunIfIdle(strand, [&] { ran = true; }));
  // Another strand is not held up by it.
  EXPECT_TRUE(pool.RunIfIdle(pool.NewStrand(), [] {}));
  release.set_value();
  pool.WaitIdle(strand);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(pool.RunIfIdle(strand, [&] { ran = true; }));
  EXPECT_TRUE(ran);
}

// A job posted while the caller runs the strand's work waits for it, and
// WaitIdle from another thread waits for both.
TEST(WorkerPoolTest, JobsPostedDuringRunIfIdleRunAfterIt) {
  WorkerPool pool(2);
  const WorkerPool::StrandId strand = pool.NewStrand();
  std::vector<std::string> order;  // strand-owned: written by the inline run, then the job
  std::atomic<bool> waited{false};
  std::thread waiter;
  EXPECT_TRUE(pool.RunIfIdle(strand, [&] {
    pool.Post(strand, [&]() -> WorkerPool::Completion {
      order.push_back("job");
      return nullptr;
    });
    waiter = std::thread([&] {
      pool.WaitIdle(strand);
      waited = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(waited.load());  // the strand is still ours
    order.push_back("inline");
  }));
  waiter.join();
  EXPECT_TRUE(waited.load());
  EXPECT_EQ(order, (std::vector<std::string>{"inline", "job"}));
}

}  // namespace
}  // namespace bantam
