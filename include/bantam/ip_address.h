// IpAddr: a failure id as fail2ban 1.0.2's IPAddr holds it (an IPv4/IPv6
// address or network, a raw non-IP id, or text that is neither), and
// TextToIp, fail2ban's DNSUtils.textToIp over a Resolver seam.
//
// The parser reproduces IPAddr(text, cidr) on glibc, quirks included, because
// the jail compares ids by these rules and users' ignoreip lists rely on them:
//   - "[x]" loses its brackets; "a/24", "a/255.255.255.0" and "a/ffff::" set
//     the prefix length and mask out host bits ("1.2.3.4/24" -> "1.2.3.0/24");
//     "a/0" prints "0.0.0.0"; a prefix above 32 (128) keeps every bit and
//     prints no suffix. Like Python's int(), the suffix may carry spaces, a
//     sign or "_" between digits; "a/-2" makes a raw id, "a/-4" ("a/-12")
//     accepts only IPv4 (IPv6).
//   - Addresses follow inet_pton: no leading zeros ("001.2.3.4" is invalid),
//     no zone ids ("fe80::1%eth0" is invalid), at most 4 hex digits a group.
//   - "::ffff:a.b.c.d" becomes the IPv4 address a.b.c.d unless a prefix length
//     was given; "::a.b.c.d" stays IPv6. IPv6 prints like inet_ntop.
//   - Invalid text keeps its text (after bracket and suffix removal) and
//     prints it; raw ids print their text unchanged.
// Where fail2ban raises (a mask with no prefix length, "1.2.3.4/x", a NUL
// byte, nesting masks too deep) Parse() returns the error and FromText()
// gives an invalid IpAddr holding the text.
//
// Deliberate differences, each because C++ cannot or should not follow:
//   - Prefix lengths above INT_MAX (Python has big ints) are errors.
//   - Only ASCII digits and ASCII spaces are accepted in a "/N" suffix.
//   - Masks nest at most kMaxMaskDepth (200) deep ("a/b/c/..."); Python's
//     limit is its recursion limit (248 from a fresh interpreter's top level).
//   - operator== compares raw ids by text; fail2ban's __eq__ holds any two
//     raw ids equal (its hash still tells them apart, so dict keys - what the
//     jail uses - behave like ours). Contains() keeps fail2ban's rule.
#ifndef BANTAM_IP_ADDRESS_H_
#define BANTAM_IP_ADDRESS_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/status.h"

namespace bantam {

// fail2ban's CIDR_UNSPEC (-1) and CIDR_RAW (-2) markers, as in IPAddr.
inline constexpr int kCidrUnspec = -1;
inline constexpr int kCidrRaw = -2;
// fail2ban's FAM_IPv4 / FAM_IPv6: a cidr argument that restricts parsing to
// one family (what DNSUtils.dnsToIp passes for getaddrinfo's answers).
inline constexpr int kFamIpv4 = kCidrRaw - AF_INET;
inline constexpr int kFamIpv6 = kCidrRaw - AF_INET6;

class Resolver;

// A value type: an IPv4/IPv6 address or network, a raw (non-IP) failure id,
// or invalid text, exactly as fail2ban's IPAddr(text, cidr) would hold it.
// IP forms allocate nothing (bytes, not strings); raw and invalid forms own
// a copy of their text.
class IpAddr {
 public:
  static constexpr int kMaxMaskDepth = 200;

  // An invalid, empty address (fail2ban's IPAddr("")).
  IpAddr() = default;

  // IPAddr(text, cidr). Errors where fail2ban raises, with Python's message.
  static Result<IpAddr> Parse(std::string_view text, int cidr = kCidrUnspec);
  // IPAddr(text, cidr), with fail2ban's exceptions folded into an invalid
  // address holding `text` (what a caller that catches them would keep).
  static IpAddr FromText(std::string_view text, int cidr = kCidrUnspec);

  // fail2ban's isValid: true for IP forms *and raw ids*; false only for text
  // that is neither. Use is_ip() to ask "is this an address?".
  bool is_valid() const { return family_ != 0; }
  bool is_ipv4() const { return family_ == AF_INET; }
  bool is_ipv6() const { return family_ == AF_INET6; }
  bool is_ip() const { return is_ipv4() || is_ipv6(); }
  bool is_raw() const { return family_ == kCidrRaw; }
  // isSingle: an address rather than a network, raw id or invalid text.
  bool is_single() const { return (is_ipv4() && plen_ == 32) || (is_ipv6() && plen_ == 128); }
  // AF_INET, AF_INET6, kCidrRaw for raw ids, 0 (AF_UNSPEC) for invalid text.
  int family() const { return family_; }
  // 32/128 for an address, N for a network, 0 for raw ids and invalid text.
  int plen() const { return plen_; }
  // The text of a raw id or invalid text; empty for IP forms.
  std::string_view raw() const { return raw_; }
  // str(IPAddr).
  std::string ToString() const;
  // The address of an IP form as one 128-bit number (IPv4 in the low 32 bits
  // of lo), for compact tables; 0 for raw ids and invalid text.
  uint64_t bits_hi() const { return hi_; }
  uint64_t bits_lo() const { return lo_; }
  // The IP form with these parts, as family(), plen(), bits_hi() and
  // bits_lo() of an is_ip() address gave them.
  static IpAddr FromBits(int family, int plen, uint64_t hi, uint64_t lo) {
    IpAddr ip;
    ip.family_ = family;
    ip.plen_ = plen;
    ip.hi_ = hi;
    ip.lo_ = lo;
    return ip;
  }

  // The network of the first `plen` bits of this IP form (bantam's prefix
  // counting): "2001:db8:1:2::7".Network(64) is "2001:db8:1:2::/64". A
  // `plen` at or above the address's own keeps it as it is; raw ids and
  // invalid text come back unchanged.
  IpAddr Network(int plen) const;
  // Whether two IP forms share an address (one lies in the other); false
  // across families and for raw ids and invalid text.
  bool Overlaps(const IpAddr& other) const;

  // fail2ban's isInNet: whether this address, with *its own prefix length
  // ignored*, lies in `net`. Families must match (an IPv4 address is never
  // in an IPv6 network, mapped or not). When `net` is invalid non-empty text
  // fail2ban resolves it as a host name: that needs `resolver` (it may
  // block); without one such a net contains nothing.
  bool IsInNet(const IpAddr& net, Resolver* resolver = nullptr) const;
  // fail2ban's contains: `ip` equals this (by fail2ban's __eq__, so any raw
  // id contains any raw id) or ip.IsInNet(*this).
  bool Contains(const IpAddr& ip, Resolver* resolver = nullptr) const;
  // fail2ban's `ipaddr == "text"`: raw ids compare their text, everything
  // else compares with IpAddr::FromText(text).
  bool EqualsText(std::string_view text) const;

  // Same form with the same address and prefix length, or the same text.
  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    return a.family_ == b.family_ && a.plen_ == b.plen_ && a.hi_ == b.hi_ && a.lo_ == b.lo_ &&
           a.raw_ == b.raw_;
  }
  size_t Hash() const;

 private:
  // Parse() at mask nesting `depth`, with a cidr Python's int() may produce.
  static Result<IpAddr> ParseAt(std::string_view text, int64_t cidr, int depth);
  static Result<IpAddr> Init(std::string_view text, int64_t cidr);
  // fail2ban's __eq__ between two IPAddr objects.
  bool PyEquals(const IpAddr& other) const;

  int family_ = 0;
  int plen_ = 0;
  // The address as one 128-bit number; IPv4 lives in the low 32 bits of lo_.
  uint64_t hi_ = 0;
  uint64_t lo_ = 0;
  std::string raw_;
};

// Seam for name resolution, so tests run without DNS. Implementations may
// block: call them off the event loop.
class Resolver {
 public:
  virtual ~Resolver() = default;
  // DNSUtils.dnsToIp: the host's addresses (IPv4 first), no duplicates;
  // empty when it has none or resolution fails.
  virtual std::vector<IpAddr> HostToIp(std::string_view host) = 0;
  // DNSUtils.ipToName: the address's name, or nothing.
  virtual std::vector<std::string> IpToName(const IpAddr& ip) = 0;
};

// getaddrinfo/getnameinfo, uncached and stateless, so any thread may use it.
// A process-wide object; never destroyed.
Resolver& SystemResolver();

// DNSUtils.textToIp(text, usedns): a dotted-quad IPv4 address (optionally
// followed by one "\n") gives itself; anything else, IPv6 literals included
// (fail2ban's searchIP finds IPv4 only), is resolved with `resolver` when
// usedns is "yes" or "warn", and gives nothing otherwise. For "warn" with a
// non-empty answer *warning receives the message fail2ban logs; otherwise
// it is cleared. `warning` may be null.
std::vector<IpAddr> TextToIp(std::string_view text, std::string_view usedns, Resolver& resolver,
                             std::string* warning);

}  // namespace bantam

template <>
struct std::hash<bantam::IpAddr> {
  size_t operator()(const bantam::IpAddr& ip) const { return ip.Hash(); }
};

#endif  // BANTAM_IP_ADDRESS_H_
