// NftRuleset: the tables, chains, sets and rules of fail2ban's stock
// nftables action (action.d/nftables.conf and its allports/multiport
// variants), described as data (NftSpec) and created, filled, checked and
// removed over netlink with libnftnl + libmnl, without forking `nft`.
//
// The objects are the ones `nft` would create from the shell action's
// commands, attribute for attribute, so `nft list ruleset` reads the same
// whichever of the two made them, and an operator can switch between
// fail2ban and bantam, or between the native and the shell action.
#ifndef BANTAM_NFT_RULESET_H_
#define BANTAM_NFT_RULESET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bantam/ip_address.h"
#include "bantam/status.h"

namespace bantam {

enum class NftFamily { kIpv4, kIpv6 };

// One rule of the action for one address family:
//   [meta l4proto <protos>] [<proto> dport <ports>] <ip|ip6> saddr @<set> <block>
// allports: l4protos = the protocols, no ports; multiport: one rule per
// protocol (the shell's loop), l4protos = {that protocol}, dports = the ports;
// custom: neither. As nft does, one protocol or one port becomes a comparison
// and several an anonymous set (an interval set, merged, if any entry is a
// range); a range whose ends are equal counts as a single port. dports need
// exactly one protocol, one nft knows the header of (tcp, udp, udplite, dccp,
// sctp).
struct NftRule {
  std::vector<uint8_t> l4protos;                      // IPPROTO_* numbers, as written
  std::vector<std::pair<uint16_t, uint16_t>> dports;  // inclusive ranges, as written
};

// <blocktype>: what a matching packet gets.
struct NftBlock {
  enum class Verdict { kDrop, kReject };
  Verdict verdict = Verdict::kReject;
  // For kReject: NFT_REJECT_ICMP_UNREACH (0), NFT_REJECT_TCP_RST (1),
  // NFT_REJECT_ICMPX_UNREACH (2); -1 with code -1 is plain `reject`, which
  // nft turns into icmp port-unreachable (ip) / icmpv6 port-unreachable (ip6).
  int reject_type = -1;
  int reject_code = -1;  // the type's code ("host-prohibited" ...), -1: default
  // For reject_type 0 with a code: kIpv4 for "icmp type ...", kIpv6 for
  // "icmpv6 type ...". nft refuses such a rule for the other family
  // ("conflicting protocols specified"), and so does Start(). Unset: the code
  // is used for either family.
  std::optional<NftFamily> icmp_family;
};

struct NftSpec {
  std::string table_family = "inet";  // inet, ip or ip6
  std::string table = "f2b-table";
  std::string chain = "f2b-chain";
  std::string chain_type = "filter";
  std::string chain_hook = "input";
  int chain_priority = -1;
  std::string set_v4;          // addr-set-<name>
  std::string set_v6;          // addr6-set-<name>
  std::vector<NftRule> rules;  // added in this order, for each family
  NftBlock block;
  // Sets are made with `flags timeout` and elements carry the ban's
  // remaining time, so the kernel lifts bans even if bantam is dead. Off in
  // fail2ban (whose sets have no flags). `nft list` then shows the set with
  // "flags timeout" and such an element as "1.2.3.4 timeout 1h expires
  // 59m58s120ms" (an element added with timeout_ms 0 has neither).
  bool element_timeouts = false;
  // Sets are made with `flags interval` (what the jail's prefix4/prefix6/
  // aggregate4/aggregate6 need): an element is then an address or a network,
  // sent as nft sends it, a start element and an NFT_SET_ELEM_INTERVAL_END
  // element at the address after its last one (none, and the start marked
  // open, when it ends at the top of the address space). Combines with
  // element_timeouts (the timeout rides on the start element).
  bool intervals = false;

  const std::string& set(NftFamily f) const { return f == NftFamily::kIpv4 ? set_v4 : set_v6; }
};

class NftRuleset {
 public:
  // One element change. timeout_ms: 0 = none (only used with element_timeouts).
  struct ElementOp {
    bool add = true;
    IpAddr addr;  // an IPv4 or IPv6 address; with spec().intervals also a network
    uint64_t timeout_ms = 0;
  };
  // An element the kernel refused; the others were applied.
  struct ElementError {
    size_t index = 0;  // into the ops passed to Apply
    int error = 0;     // errno from the kernel (ENOENT: no such set/element ...)
  };

  // Opens a netlink socket in the calling thread's network namespace.
  // Error: a spec nft would not take (table_family not inet/ip/ip6, an
  // unknown chain_hook, empty names), or no socket (no nf_tables).
  static Result<std::unique_ptr<NftRuleset>> Open(NftSpec spec);
  ~NftRuleset();
  NftRuleset(const NftRuleset&) = delete;
  NftRuleset& operator=(const NftRuleset&) = delete;

  const NftSpec& spec() const { return spec_; }

  // actionstart for one family, in one transaction: the table, the chain,
  // the family's set and its rules, each created only if missing (a rule is
  // kept if one identical to ours is there already, so a restart after a
  // crash does not stack duplicates). A set of that name made with other
  // flags (interval, timeout: an older run with other options) is replaced
  // in the same transaction, its rules with it; its elements are lost, and
  // the caller puts back what it holds. A rule nft would refuse (IPv6 in an ip
  // table, `tcp reset` on non-tcp traffic, icmpx outside inet) is an error
  // before anything is sent, so nothing of the family is created.
  Status Start(NftFamily family);
  // actionstop: deletes this spec's rules (every rule of the chain that
  // reads the family's set, as the shell action's handle grep does) and the
  // set, then the table if no named set is left in it; one transaction.
  // Objects of other jails and of other programs are left alone. Nothing
  // there (no table, no set) is no error.
  Status Stop(NftFamily family);
  // actioncheck: the family's set exists with this spec's flags and the
  // chain has a rule reading it.
  Result<bool> Check(NftFamily family);
  // Adds and deletes elements in one transaction (several only if the
  // netlink batch would pass the socket's limit). Elements the kernel
  // refuses (deleting one that is not there; a set that is gone) are
  // returned, in the order of `ops`; every other op is applied. An op whose
  // address is not an IPv4/IPv6 address, is a network while the spec has
  // no intervals, or whose family has no set name, is returned with EINVAL
  // without being sent. With intervals the kernel refuses (EEXIST or
  // ENOTEMPTY) an element overlapping one in the set: the caller deletes
  // covered elements first. Adding an element that
  // is there already is no error; as with `nft add element`, a kernel that
  // updates element timeouts (6.18 does) then gives it the op's timeout, or
  // none for timeout_ms 0. Error only for the transport; transactions
  // committed before it stay committed.
  Result<std::vector<ElementError>> Apply(const std::vector<ElementOp>& ops);
  // The addresses in the family's set, in the kernel's order (for an
  // interval set: ascending, each interval as the networks that make it up,
  // an address as a single address). A hash set the
  // kernel is still resizing (just after a large Apply) can give a
  // multi-part dump with repeats and gaps; such a dump is read again (up to
  // 20 times, 10 ms apart) before this gives up with an error.
  Result<std::vector<IpAddr>> Elements(NftFamily family);

 private:
  struct Impl;
  NftRuleset(NftSpec spec, std::unique_ptr<Impl> impl);
  NftSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantam

#endif  // BANTAM_NFT_RULESET_H_
