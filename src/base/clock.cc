#include "bantam/clock.h"

#include <time.h>

namespace bantam {
namespace {

class RealtimeClock : public Clock {
 public:
  double Now() const override {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
};

}  // namespace

Clock& SystemClock() {
  static Clock* clock = new RealtimeClock;  // never destroyed: usable during exit
  return *clock;
}

}  // namespace bantam
