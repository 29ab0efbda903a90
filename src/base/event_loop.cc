#include "bantam/event_loop.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <string>

namespace bantam {
namespace {

Status Errno(const std::string& what) {
  return Status::Error(what + ": " + std::string(strerror(errno)));
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Errno("epoll_create1");
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    Status s = Errno("eventfd");
    ::close(ep);
    return s;
  }
  std::unique_ptr<EventLoop> loop(new EventLoop(ep, wake));
  Status s = loop->Watch(wake, [wake](uint32_t) {
    uint64_t n;
    while (::read(wake, &n, sizeof n) > 0) {
    }
  });
  if (!s.ok()) return s;
  return loop;
}

EventLoop::~EventLoop() {
  if (signal_fd_ >= 0) ::close(signal_fd_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

int64_t EventLoop::NowMs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Status EventLoop::Watch(int fd, FdCallback callback, uint32_t events) {
  struct epoll_event ev {};
  ev.events = events;
  ev.data.fd = fd;
  const bool known = fds_.count(fd) != 0;
  if (::epoll_ctl(epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Errno("epoll_ctl(" + std::to_string(fd) + ")");
  }
  fds_[fd] = std::make_shared<FdCallback>(std::move(callback));
  return Status::Ok();
}

void EventLoop::Unwatch(int fd) {
  if (fds_.erase(fd) == 0) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::AddTimer(int64_t delay_ms, TimerCallback callback,
                                       int64_t interval_ms) {
  const TimerId id = next_timer_++;
  timers_[id] = TimerEntry{std::move(callback), interval_ms};
  timer_heap_.push(Timer{NowMs() + std::max<int64_t>(0, delay_ms), id});
  return id;
}

void EventLoop::CancelTimer(TimerId id) { timers_.erase(id); }  // heap entry dropped lazily

Status EventLoop::HandleSignals(const std::vector<int>& signals, SignalCallback callback) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : signals) sigaddset(&mask, s);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return Errno("sigprocmask");
  const int fd = ::signalfd(signal_fd_, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return Errno("signalfd");
  const bool fresh = signal_fd_ < 0;
  signal_fd_ = fd;
  signal_callback_ = std::move(callback);
  if (!fresh) return Status::Ok();
  return Watch(fd, [this](uint32_t) {
    struct signalfd_siginfo info;
    while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (signal_callback_) signal_callback_(static_cast<int>(info.ssi_signo));
    }
  });
}

void EventLoop::Wake() {
  const uint64_t one = 1;
  // A full counter still wakes the loop; nothing else can fail here.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

int EventLoop::NextTimeoutMs() const {
  if (timer_heap_.empty()) return -1;
  const int64_t wait = timer_heap_.top().due_ms - NowMs();
  return static_cast<int>(std::clamp<int64_t>(wait, 0, INT_MAX));
}

void EventLoop::RunTimers() {
  const int64_t now = NowMs();
  while (!timer_heap_.empty() && timer_heap_.top().due_ms <= now) {
    const Timer t = timer_heap_.top();
    timer_heap_.pop();
    auto it = timers_.find(t.id);
    if (it == timers_.end()) continue;  // cancelled
    // Copy: the callback may cancel its own timer or add others.
    TimerCallback cb = it->second.callback;
    if (it->second.interval_ms > 0) {
      timer_heap_.push(Timer{now + it->second.interval_ms, t.id});
    } else {
      timers_.erase(it);
    }
    cb();
  }
}

Status EventLoop::Run() {
  stopping_ = false;
  constexpr int kMaxEvents = 64;
  struct epoll_event events[kMaxEvents];
  while (!stopping_) {
    if (before_sleep_) before_sleep_();
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, NextTimeoutMs());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("epoll_wait");
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      auto it = fds_.find(events[i].data.fd);
      if (it == fds_.end()) continue;  // unwatched by an earlier callback
      // Hold a reference: the callback may unwatch (and so free) itself.
      std::shared_ptr<FdCallback> cb = it->second;
      (*cb)(events[i].events);
    }
    RunTimers();
  }
  if (before_sleep_) before_sleep_();
  return Status::Ok();
}

}  // namespace bantam
