// Clock: where the jail logic gets "now" (fail2ban's MyTime.time()), so that
// failure windows, ban expiry and caches are tested with fake time.
//
// Time is wall-clock epoch seconds as a double, the unit Filter and Failure
// already use: failure times come from log lines, and ban end times are
// compared with them, so a monotonic clock would not do.
#ifndef BANTAM_CLOCK_H_
#define BANTAM_CLOCK_H_

namespace bantam {

class Clock {
 public:
  virtual ~Clock() = default;
  // Epoch seconds, with sub-second precision.
  virtual double Now() const = 0;
};

// CLOCK_REALTIME. A process-wide object; never destroyed.
Clock& SystemClock();

// A clock that moves only when told to. Tests own it and pass it by
// reference to what they test.
class FakeClock : public Clock {
 public:
  explicit FakeClock(double now = 1700000000) : now_(now) {}
  double Now() const override { return now_; }
  void Set(double now) { now_ = now; }
  void Advance(double seconds) { now_ += seconds; }

 private:
  double now_;
};

}  // namespace bantam

#endif  // BANTAM_CLOCK_H_
