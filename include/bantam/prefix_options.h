// PrefixOptions: bantam's options for counting and banning by network prefix
// (docs/prefixes.md). fail2ban does not know them and the command stream
// does not carry them; the loader reads them per jail (or from [DEFAULT])
// next to the jail's other options:
//   prefix4 = N     1..32, default 32: failures of an IPv4 address count
//                   against its /N, and the ban is on the /N
//   prefix6 = N     1..128, default 128: the same for IPv6
//   aggregate4 = P:C, aggregate6 = P:C
//                   keep counting per prefix4/prefix6 unit, but once C units
//                   of one /P are banned in the jail, ban the /P instead and
//                   lift the bans it covers. P must be shorter than the unit.
// The defaults are fail2ban's model: one address, one count, one ban.
#ifndef BANTAM_PREFIX_OPTIONS_H_
#define BANTAM_PREFIX_OPTIONS_H_

#include <string>
#include <string_view>

#include "bantam/ip_address.h"
#include "bantam/status.h"

namespace bantam {

struct PrefixOptions {
  int prefix4 = 32;
  int prefix6 = 128;
  // aggregateN = PLEN:COUNT; plen 0 means off.
  int aggregate4 = 0;
  int aggregate4_count = 0;
  int aggregate6 = 0;
  int aggregate6_count = 0;

  // Whether any option differs from per-address counting and banning (a
  // jail then may ban networks; its native nftables sets need intervals).
  bool bans_networks() const {
    return prefix4 < 32 || prefix6 < 128 || aggregate4 > 0 || aggregate6 > 0;
  }
  // The id failures of `address` are counted under: its prefix4/prefix6
  // network, or the address itself (also for raw ids and networks).
  IpAddr UnitOf(const IpAddr& address) const {
    if (!address.is_single()) return address;
    return address.Network(address.is_ipv4() ? prefix4 : prefix6);
  }
  // The aggregation of `family` (AF_INET/AF_INET6): prefix length and count,
  // {0, 0} when off.
  int AggregatePlen(int family) const { return family == AF_INET ? aggregate4 : aggregate6; }
  int AggregateCount(int family) const {
    return family == AF_INET ? aggregate4_count : aggregate6_count;
  }
  int UnitPlen(int family) const { return family == AF_INET ? prefix4 : prefix6; }
  // "prefix6 = 64, aggregate4 = 24:5": the options that differ from the
  // defaults, for logs and reload signatures; empty when none does.
  std::string Describe() const;

  friend bool operator==(const PrefixOptions&, const PrefixOptions&) = default;
};

// Sets option `name` (one of the four above) from its text. Error: why the
// value cannot be used ("prefix6 = 200: expected 1 to 128"). Combinations
// are checked by Validate().
Status SetPrefixOption(PrefixOptions* options, std::string_view name, std::string_view value);
// The option names, in the order they are read.
inline constexpr const char* kPrefixOptionNames[] = {"prefix4", "prefix6", "aggregate4",
                                                     "aggregate6"};
// An aggregate prefix at or longer than its unit aggregates nothing: an
// error naming the option.
Status ValidatePrefixOptions(const PrefixOptions& options);

}  // namespace bantam

#endif  // BANTAM_PREFIX_OPTIONS_H_
