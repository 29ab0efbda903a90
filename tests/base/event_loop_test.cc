#include "bantam/event_loop.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace bantam {
namespace {

std::unique_ptr<EventLoop> MakeLoop() {
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  EXPECT_TRUE(loop.ok()) << loop.status().message();
  return std::move(*loop);
}

TEST(EventLoop, TimersFireInDueOrderAndRepeat) {
  // No assumption about how long anything takes: a descheduled process may
  // find every timer due at once; they must still run in due order.
  auto loop = MakeLoop();
  std::vector<std::string> fired;
  int ticks = 0;
  auto maybe_stop = [&] {
    if (fired.size() == 2 && ticks == 3) loop->Stop();
  };
  loop->AddTimer(20, [&] {
    fired.push_back("b");
    maybe_stop();
  });
  loop->AddTimer(5, [&] {
    fired.push_back("a");
    maybe_stop();
  });
  EventLoop::TimerId tick = 0;
  tick = loop->AddTimer(
      1,
      [&] {
        if (++ticks == 3) loop->CancelTimer(tick);
        maybe_stop();
      },
      2);
  const EventLoop::TimerId cancelled = loop->AddTimer(10, [&] { fired.push_back("never"); });
  loop->CancelTimer(cancelled);
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(fired, std::vector<std::string>({"a", "b"}));
  EXPECT_EQ(ticks, 3);
}

TEST(EventLoop, FdCallbackAndUnwatchFromItself) {
  auto loop = MakeLoop();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::string got;
  ASSERT_TRUE(loop->Watch(p[0], [&](uint32_t events) {
                    ASSERT_TRUE(events & EPOLLIN);
                    char buf[16];
                    const ssize_t n = ::read(p[0], buf, sizeof buf);
                    got.append(buf, static_cast<size_t>(n));
                    loop->Unwatch(p[0]);  // frees this callback while it runs
                    loop->Stop();
                  }).ok());
  ASSERT_EQ(::write(p[1], "ping", 4), 4);
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(got, "ping");
  ::close(p[0]);
  ::close(p[1]);
}

TEST(EventLoop, WakeFromAnotherThreadInterruptsTheWait) {
  auto loop = MakeLoop();
  bool stopped_by_timer = false;
  loop->AddTimer(5000, [&] {
    stopped_by_timer = true;
    loop->Stop();
  });
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    loop->Stop();  // only a flag: without Wake the loop would sleep 5 s
    loop->Wake();
  });
  const int64_t start = EventLoop::NowMs();
  ASSERT_TRUE(loop->Run().ok());
  other.join();
  EXPECT_FALSE(stopped_by_timer);
  EXPECT_LT(EventLoop::NowMs() - start, 2000);
}

TEST(EventLoop, SignalsArriveThroughTheLoop) {
  auto loop = MakeLoop();
  std::vector<int> got;
  ASSERT_TRUE(loop->HandleSignals({SIGUSR1, SIGUSR2}, [&](int signo) {
                    got.push_back(signo);
                    if (got.size() == 2) loop->Stop();
                  }).ok());
  ::raise(SIGUSR1);
  ::raise(SIGUSR2);
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(got, std::vector<int>({SIGUSR1, SIGUSR2}));
  // Leave the signals blocked but drained; other tests do not use them.
}

}  // namespace
}  // namespace bantam
