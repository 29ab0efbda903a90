// EventLoop: bantamd's single event loop, in the manner of redis' ae.c.
// File descriptors with a callback each (epoll), one-shot and repeating
// timers (a heap, served through epoll_wait's timeout), and signals (a
// signalfd). Everything else in the daemon is a passive component that
// exposes an fd and a callback; blocking work runs elsewhere and reports
// back through an fd.
//
// Not thread-safe: every method must be called on the loop's thread,
// except Wake(), which any thread may call.
#ifndef BANTAM_EVENT_LOOP_H_
#define BANTAM_EVENT_LOOP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <vector>

#include "bantam/status.h"

namespace bantam {

class EventLoop {
 public:
  // Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, ...).
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerCallback = std::function<void()>;
  using SignalCallback = std::function<void(int signo)>;
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` (not owned) for `events` (EPOLLIN by default). One
  // callback per fd; Watch on a watched fd replaces it.
  Status Watch(int fd, FdCallback callback, uint32_t events = 0x001 /* EPOLLIN */);
  void Unwatch(int fd);

  // Runs `callback` after `delay_ms`, then every `interval_ms` if non-zero.
  TimerId AddTimer(int64_t delay_ms, TimerCallback callback, int64_t interval_ms = 0);
  void CancelTimer(TimerId id);

  // Blocks `signals` for the process and delivers them through a signalfd.
  // Call before starting threads so they inherit the blocked mask.
  Status HandleSignals(const std::vector<int>& signals, SignalCallback callback);

  // Called once per loop turn, after the turn's callbacks and timers and
  // before the loop waits again (redis' beforesleep): the place to flush
  // what the turn produced in one go.
  void SetBeforeSleep(std::function<void()> callback) { before_sleep_ = std::move(callback); }

  // Runs until Stop(). Returns the first error from epoll itself.
  Status Run();
  // Makes Run() return after the current iteration.
  void Stop() { stopping_ = true; }
  // Interrupts a blocking epoll_wait from another thread.
  void Wake();

  // Milliseconds on the monotonic clock, as timers use it.
  static int64_t NowMs();

 private:
  EventLoop(int epoll_fd, int wake_fd) : epoll_fd_(epoll_fd), wake_fd_(wake_fd) {}
  int NextTimeoutMs() const;
  void RunTimers();

  struct Timer {
    int64_t due_ms;
    TimerId id;
    bool operator>(const Timer& o) const { return due_ms != o.due_ms ? due_ms > o.due_ms : id > o.id; }
  };
  struct TimerEntry {
    TimerCallback callback;
    int64_t interval_ms;
  };

  int epoll_fd_;
  int wake_fd_;
  int signal_fd_ = -1;
  bool stopping_ = false;
  std::map<int, std::shared_ptr<FdCallback>> fds_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timer_heap_;
  std::map<TimerId, TimerEntry> timers_;
  TimerId next_timer_ = 1;
  SignalCallback signal_callback_;
  std::function<void()> before_sleep_;
};

}  // namespace bantam

#endif  // BANTAM_EVENT_LOOP_H_
