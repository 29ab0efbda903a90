// Ticket: what the jail knows about one failure id, first while it collects
// failures (FailManager) and then while it is banned (BanManager). It is
// fail2ban's FailTicket/BanTicket as one value type.
#ifndef BANTAM_TICKET_H_
#define BANTAM_TICKET_H_

#include <optional>

#include "bantam/filter.h"
#include "bantam/ip_address.h"

namespace bantam {

// fail2ban's Ticket.MAX_TIME: the end of a permanent ban (year 4461763).
inline constexpr double kMaxBanEnd = static_cast<double>(0x7FFFFFFFFFFFLL);
// The bantime that means "never unban".
inline constexpr double kPermanentBanTime = -1;

struct Ticket {
  IpAddr id;
  // Time of the last failure (log time, not arrival time); for a ban, the
  // time its ban started from.
  double time = 0;
  // Start of the interval the retry estimate covers (see FailManager).
  double first_time = 0;
  // Failures counted against maxretry: real ones plus the extra weight the
  // ban-time increment gives known bad ids, scaled down when the failures
  // spread over more than findtime.
  int retry = 1;
  // Failures actually seen (fail2ban's "failures" data, the <failures> tag).
  int attempts = 1;
  // How often this id was banned before, as far as the jail knows.
  int ban_count = 0;
  // This ticket's own bantime in seconds; nullopt: the jail's bantime.
  // kPermanentBanTime (-1) is permanent; other values may be fractional.
  std::optional<double> ban_time;
  bool restored = false;  // came back from the database at start
  bool banned = false;    // the ban actions have run
  // A prefix ban made by aggregate4/aggregate6: how many bans it took the
  // place of (for the log); 0 otherwise. Not stored.
  int aggregated = 0;
  // The first failure's named groups; data.matches holds the matched lines
  // kept (at most maxmatches once a second failure arrived).
  FailData data;

  double BanTimeOr(double default_ban_time) const { return ban_time.value_or(default_ban_time); }
  // getEndOfBanTime: kMaxBanEnd when permanent, else time + bantime.
  double EndOfBan(double default_ban_time) const {
    const double bt = BanTimeOr(default_ban_time);
    return bt == kPermanentBanTime ? kMaxBanEnd : time + bt;
  }
  // isTimedOut: strictly past the end of the ban; never when permanent.
  bool IsTimedOut(double now, double default_ban_time) const {
    const double bt = BanTimeOr(default_ban_time);
    return bt != kPermanentBanTime && now > time + bt;
  }
};

}  // namespace bantam

#endif  // BANTAM_TICKET_H_
