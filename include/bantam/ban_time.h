// BanTimeIncrement: fail2ban 1.0.2's bantime.increment - how long to ban an
// id that was banned before (Jail.setBanTimeExtra's `evformula` and
// ObserverThread.incrBanTime / failureFound).
//
// Given the jail's bantime T and the id's previous ban count N > 0:
//   - with bantime.multipliers "m0 m1 ...": T * factor * m[min(N, last)]
//   - else max(T, formula), the formula defaulting to
//       ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor
//   - then min(that, maxtime) if maxtime is set,
//   - then + random() * rndtime if rndtime is set (random() in [0, 1)).
// bantime.factor and bantime.formula are Python expressions in fail2ban,
// which eval()s them. Here they go through a small evaluator of the subset a
// ban-time formula needs, with Python's semantics (ints stay ints, "/" makes
// a float, "//" and "%" floor, ** of ints is an int, << needs ints):
//   numbers, ban.Time, ban.Count, banFactor, True, False, math.e, math.pi;
//   + - * / // % ** << >> & | ^ ~, comparisons (chained), not/and/or,
//   `a if cond else b`, parentheses; min, max, abs, int, float, round,
//   math.exp/log/log2/log10/sqrt/pow/floor/ceil.
// Anything else is a configuration error naming what was not understood;
// Create() also evaluates once so type errors (1.5 << 2) show up at start;
// value errors (division by zero) are Calc() errors, as fail2ban logs them.
// Differences: integers beyond 64 bits continue as floats (Python's are
// exact), and ** with a fractional power of a negative number is an error
// (Python makes a complex number, and then fails elsewhere).
//
// The random part goes through a Random seam; PythonRandom reproduces
// Python's random.random() for a seed, so tests compare sequences with
// fail2ban's.
#ifndef BANTAM_BAN_TIME_H_
#define BANTAM_BAN_TIME_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/ip_address.h"
#include "bantam/status.h"
#include "bantam/ticket.h"

namespace bantam {

// Source of uniform doubles in [0, 1) for bantime.rndtime.
class Random {
 public:
  virtual ~Random() = default;
  virtual double Next() = 0;
};

// MT19937 seeded and drawn exactly as CPython's random.seed(int) and
// random.random() (53-bit doubles from two 32-bit outputs).
class PythonRandom : public Random {
 public:
  explicit PythonRandom(uint64_t seed);
  double Next() override;

 private:
  uint32_t Next32();
  std::array<uint32_t, 624> mt_;
  int index_ = 624;
};

// A compiled formula or factor expression. Immutable after Compile();
// Evaluate() does not allocate.
class BanTimeFormula {
 public:
  // Variables the expression may name: `ban.Time`/`ban.Count`/`banFactor`
  // only when `with_ban` (the factor expression has none). Error:
  // "bantime.formula: <what>" with `option` naming the setting.
  static Result<BanTimeFormula> Compile(std::string_view text, std::string_view option,
                                        bool with_ban);

  // A Python number as the evaluator holds it.
  struct Value {
    bool is_int = true;
    int64_t i = 0;
    double f = 0;
    double AsDouble() const { return is_int ? static_cast<double>(i) : f; }
  };
  // Evaluates with the given variables. Error: the Python exception the
  // expression would raise ("division by zero", ...).
  Result<Value> Evaluate(Value ban_time, Value ban_count, Value ban_factor) const;

  // One node of the compiled tree; children are indexes into nodes_.
  struct Node {
    uint8_t op = 0;  // an Op of the .cc
    int a = -1, b = -1, c = -1;
    int first_arg = 0, nargs = 0;  // call arguments: args_[first_arg, +nargs)
    Value value;                   // constants
  };

 private:
  Result<Value> Eval(int node, const Value vars[3], int depth) const;

  std::vector<Node> nodes_;  // root is the last node
  std::vector<int> args_;
  std::string option_;
};

struct BanTimeIncrementOptions {
  bool increment = false;
  std::string factor = "1";       // bantime.factor, an expression
  std::string formula;            // bantime.formula; empty: the default above
  std::string multipliers;        // bantime.multipliers, space separated ints
  std::optional<double> maxtime;  // bantime.maxtime, seconds
  std::optional<double> rndtime;  // bantime.rndtime, seconds
  bool overalljails = false;      // look for earlier bans in every jail
};

// What the store remembers of an id's bans (fail2ban's Fail2BanDb.getBan).
struct BanRecord {
  int ban_count = 0;         // bans so far
  double time_of_ban = 0;    // when the last one started
  double last_ban_time = 0;  // its bantime
};

// Seam over the ban database. May block briefly (sqlite on the loop).
class BanHistory {
 public:
  virtual ~BanHistory() = default;
  // The id's ban record in `jail`, or over all jails; nullopt if none.
  virtual std::optional<BanRecord> LastBan(const IpAddr& id, std::string_view jail,
                                           bool overalljails) = 0;
};

class BanTimeIncrement {
 public:
  // Error: a config error naming the bad setting. `random` (needed only for
  // rndtime; null: a process-wide std::random_device-seeded one) must
  // outlive this object.
  static Result<BanTimeIncrement> Create(const BanTimeIncrementOptions& options,
                                         Random* random = nullptr);

  const BanTimeIncrementOptions& options() const { return options_; }
  bool enabled() const { return options_.increment; }

  // calcBanTime / evformula: the bantime for an id banned `ban_count` times
  // before, from the jail's bantime. Error: what the expression raised
  // (fail2ban logs it and keeps `ban_time`).
  Result<double> Calc(double ban_time, int ban_count) const;

  // incrBanTime: looks `ticket` up in `history` and, when the id was banned
  // before, raises ticket->ban_count past it and sets ticket->ban_time to
  // the incremented bantime (marking the ticket restored when it is not
  // newer than that ban, i.e. a log line read twice). Returns the bantime to
  // use: `ban_time` unchanged when disabled, permanent, not found or on error.
  // `*error` (may be null) receives an evaluation error.
  double IncrementFor(double ban_time, Ticket* ticket, BanHistory& history, std::string_view jail,
                      std::string* error = nullptr) const;

  // failureFound's weight for a failure of a known bad id: the retry count
  // one failure is worth, (1 << min(ban_count, 20)) / 2 + 1, at most
  // maxretry. 1 means no extra weight.
  static int ObservedRetry(int ban_count, int maxretry);

 private:
  BanTimeIncrement() = default;
  // Calc without the random part.
  Result<double> CalcBase(double ban_time, int ban_count) const;

  BanTimeIncrementOptions options_;
  BanTimeFormula::Value factor_;
  std::vector<int64_t> multipliers_;
  std::optional<BanTimeFormula> formula_;
  Random* random_ = nullptr;
};

}  // namespace bantam

#endif  // BANTAM_BAN_TIME_H_
