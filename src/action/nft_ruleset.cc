#include "bantam/nft_ruleset.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <string_view>
#include <tuple>

namespace bantam {

namespace {

// Numbers nft writes into set userdata and reads back when it lists a set
// (nftables' enum byteorder, enum expr_types, enum proto_desc_id and its
// datatype ids). Without them `nft list` would print our sets differently.
constexpr uint32_t kByteorderHost = 1;
constexpr uint32_t kByteorderBigEndian = 2;
constexpr uint32_t kExprPayload = 7;
constexpr uint32_t kExprMeta = 9;
constexpr uint32_t kDportField = 2;  // every transport header's template index of dport
constexpr uint32_t kTypeIpv4Addr = 7;
constexpr uint32_t kTypeIpv6Addr = 8;
constexpr uint32_t kTypeInetProto = 12;
constexpr uint32_t kTypeInetService = 13;

// Elements a message carries in Apply: small enough that splitting a refused
// message into single elements is cheap, big enough that 100k elements are
// ~800 messages.
constexpr size_t kElementsPerMessage = 128;
// One transaction's limits: every message may come back as an error, and
// each error takes up to ~2 KiB of the receive buffer (skb truesize); the
// batch must fit the send buffer. Lowered to what the socket got.
constexpr size_t kMaxMessagesPerBatch = 4096;
constexpr size_t kMaxBatchBytes = 4 << 20;
constexpr size_t kErrorBytes = 2048;
constexpr int kSocketBufferBytes = 16 << 20;
constexpr size_t kReceiveBufferBytes = 256 << 10;

struct NftnlFree {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
  void operator()(nftnl_udata_buf* p) const { nftnl_udata_buf_free(p); }
};
template <class T>
using NftnlPtr = std::unique_ptr<T, NftnlFree>;

// nftables' proto_desc_id of a transport protocol that has a dport; 0: none.
uint32_t ProtoDescId(uint8_t proto) {
  switch (proto) {
    case IPPROTO_UDP:
      return 6;
    case IPPROTO_UDPLITE:
      return 7;
    case IPPROTO_TCP:
      return 8;
    case IPPROTO_DCCP:
      return 9;
    case IPPROTO_SCTP:
      return 10;
    default:
      return 0;
  }
}

const char* FamilyWord(NftFamily f) { return f == NftFamily::kIpv4 ? "ip" : "ip6"; }

std::string Hex(const void* data, size_t len) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < len; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

// An address as one number, IPv4 in the low 32 bits.
using Bits = unsigned __int128;

Bits AddrBits(const IpAddr& a) {
  if (a.is_ipv4()) return a.bits_lo() & 0xffffffffu;
  return (static_cast<Bits>(a.bits_hi()) << 64) | a.bits_lo();
}

void PutBits(Bits v, uint8_t len, uint8_t* out) {
  for (int i = len - 1; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

Bits GetBits(const uint8_t* p, uint8_t len) {
  Bits v = 0;
  for (uint8_t i = 0; i < len; ++i) v = (v << 8) | p[i];
  return v;
}

// The element key(s) of an address or network: its first address and, for
// an interval set, the address after its last one; has_end false when the
// range reaches the top of the address space (nft marks the start open).
struct ElementKeys {
  std::array<uint8_t, 16> start{};
  std::array<uint8_t, 16> end{};
  uint8_t len = 0;  // 4 or 16; 0: not an IP form
  bool has_end = false;
};

ElementKeys KeysOf(const IpAddr& a, bool interval) {
  ElementKeys k;
  if (!a.is_ip()) return k;
  k.len = a.is_ipv4() ? 4 : 16;
  const int width = k.len * 8;
  const int host = width - a.plen();
  Bits first = AddrBits(a);
  if (host >= width) {
    first = 0;
  } else if (host > 0) {
    first &= ~((static_cast<Bits>(1) << host) - 1);
  }
  PutBits(first, k.len, k.start.data());
  if (!interval || host >= width) return k;
  const Bits last_plus_one = first + (static_cast<Bits>(1) << host);
  const bool top = k.len == 4 ? last_plus_one > 0xffffffffu : last_plus_one == 0;
  if (!top) {
    PutBits(last_plus_one, k.len, k.end.data());
    k.has_end = true;
  }
  return k;
}

// The networks that make up [first, end), or with to_top (IPv6 only, whose
// top is past what Bits holds) [first, the last address]: at each step the
// largest aligned block that fits.
void AppendNetworks(Bits first, Bits end, bool to_top, uint8_t len, std::vector<IpAddr>* out) {
  const int width = len * 8;
  const int family = len == 4 ? AF_INET : AF_INET6;
  while (to_top || first < end) {
    int host = 0;
    while (host < width) {
      const int next = host + 1;
      if (next == 128) {
        if (first == 0 && to_top) host = next;
        break;
      }
      const Bits size = static_cast<Bits>(1) << next;
      // An aligned block below an IPv6 top always fits.
      if ((first & (size - 1)) != 0 || (!to_top && first + size > end)) break;
      host = next;
    }
    out->push_back(IpAddr::FromBits(family, width - host, static_cast<uint64_t>(first >> 64),
                                    static_cast<uint64_t>(first)));
    if (host == 128) return;
    first += static_cast<Bits>(1) << host;
    if (to_top && first == 0) return;
  }
}

// A netlink batch under construction: BATCH_BEGIN, messages with
// consecutive sequence numbers, BATCH_END. Pointers it returns are valid
// until the next Put().
class Batch {
 public:
  explicit Batch(uint32_t first_seq) : begin_seq_(first_seq), next_seq_(first_seq) {
    Reserve(NLMSG_HDRLEN + 64);
    nlmsghdr* nlh = nftnl_batch_begin(Tail(), next_seq_++);
    size_ += NLMSG_ALIGN(nlh->nlmsg_len);
  }

  // A message header at the tail with room for `max_len` bytes in all.
  nlmsghdr* Put(uint16_t type, uint16_t family, uint16_t flags, size_t max_len) {
    Reserve(max_len);
    last_offset_ = size_;
    last_seq_ = next_seq_;
    return nftnl_nlmsg_build_hdr(Tail(), type, family, flags, next_seq_++);
  }
  // Takes the message Put() returned, as far as it was filled.
  void Commit(const nlmsghdr* nlh) {
    size_ += NLMSG_ALIGN(nlh->nlmsg_len);
    ++messages_;
  }
  // Asks for an ACK on the last message and closes the batch.
  void Finish() {
    if (messages_ > 0) {
      reinterpret_cast<nlmsghdr*>(buf_.data() + last_offset_)->nlmsg_flags |= NLM_F_ACK;
    }
    Reserve(NLMSG_HDRLEN + 64);
    nlmsghdr* nlh = nftnl_batch_end(Tail(), next_seq_++);
    size_ += NLMSG_ALIGN(nlh->nlmsg_len);
  }

  const char* data() const { return buf_.data(); }
  size_t size() const { return size_; }
  size_t messages() const { return messages_; }
  uint32_t begin_seq() const { return begin_seq_; }
  uint32_t last_seq() const { return last_seq_; }
  uint32_t next_seq() const { return next_seq_; }

 private:
  char* Tail() { return buf_.data() + size_; }
  void Reserve(size_t len) {
    if (buf_.size() < size_ + len) buf_.resize(std::max(buf_.size() * 2, size_ + len));
  }

  std::vector<char> buf_;
  size_t size_ = 0;
  size_t last_offset_ = 0;
  size_t messages_ = 0;
  uint32_t begin_seq_;
  uint32_t last_seq_ = 0;
  uint32_t next_seq_;
};

// A kernel error for the message with sequence number `seq`.
struct SeqError {
  uint32_t seq;
  int error;
};

// --- Rule construction --------------------------------------------------------

void AddExpr(nftnl_rule* r, nftnl_expr* e) { nftnl_rule_add_expr(r, e); }

void AddMeta(nftnl_rule* r, uint32_t key) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  AddExpr(r, e);
}

void AddCmp(nftnl_rule* r, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  AddExpr(r, e);
}

void AddPayload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  AddExpr(r, e);
}

void AddLookup(nftnl_rule* r, const std::string& set, uint32_t set_id) {
  nftnl_expr* e = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
  AddExpr(r, e);
}

// One element of an anonymous set: its key and, for intervals, whether it
// ends one or starts one open to the top of the key range.
struct AnonElement {
  std::vector<uint8_t> key;
  bool interval_end = false;
  bool open = false;
};

// An anonymous set a rule looks up (`{ tcp, udp }`, `{ 22, 80 }`).
struct AnonSet {
  uint32_t id = 0;
  uint32_t flags = 0;
  uint32_t key_type = 0;
  uint32_t key_len = 0;
  NftnlPtr<nftnl_udata_buf> udata;
  std::vector<AnonElement> elements;
};

// The elements as a kernel dump returns them, order aside.
std::string Canonical(std::vector<std::string> keys) {
  std::sort(keys.begin(), keys.end());
  std::string out;
  for (const std::string& k : keys) out += k + ",";
  return out;
}

std::string Canonical(const AnonSet& set) {
  std::vector<std::string> keys;
  for (const AnonElement& e : set.elements) {
    keys.push_back(Hex(e.key.data(), e.key.size()) + (e.interval_end ? "/end" : ""));
  }
  return Canonical(std::move(keys));
}

NftnlPtr<nftnl_udata_buf> SetUserdata(uint32_t byteorder, bool merge, uint32_t expr,
                                      const std::vector<std::pair<uint8_t, uint32_t>>& expr_data) {
  NftnlPtr<nftnl_udata_buf> buf(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_KEYBYTEORDER, byteorder);
  if (merge) nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_MERGE_ELEMENTS, 1);
  if (expr != 0) {
    nftnl_udata* typeof_nest = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_KEY_TYPEOF);
    nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_TYPEOF_EXPR, expr);
    nftnl_udata* data_nest = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_TYPEOF_DATA);
    for (const auto& [type, value] : expr_data) nftnl_udata_put_u32(buf.get(), type, value);
    nftnl_udata_nest_end(buf.get(), data_nest);
    nftnl_udata_nest_end(buf.get(), typeof_nest);
  }
  return buf;
}

std::vector<uint8_t> Be16(uint32_t v) {
  return {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v & 0xff)};
}

// The anonymous set nft makes of a port list with ranges: sorted, overlapping
// and adjacent ranges merged, each range a start element and an end element
// one past it (none past 65535: the start is marked open instead), and an
// end element at 0 first when the lowest range does not start there.
std::vector<AnonElement> PortIntervals(std::vector<std::pair<uint16_t, uint16_t>> ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (const auto& [lo, hi] : ranges) {
    if (!merged.empty() && lo <= merged.back().second + 1) {
      merged.back().second = std::max<uint32_t>(merged.back().second, hi);
    } else {
      merged.emplace_back(lo, hi);
    }
  }
  std::vector<AnonElement> out;
  if (merged.front().first > 0) out.push_back({Be16(0), true, false});
  for (const auto& [lo, hi] : merged) {
    out.push_back({Be16(lo), false, hi == 0xffff});
    if (hi < 0xffff) out.push_back({Be16(hi + 1), true, false});
  }
  return out;
}

// One rule of the spec as nft would send it, with the anonymous set it
// needs (if any).
struct BuiltRule {
  NftnlPtr<nftnl_rule> rule;
  std::optional<AnonSet> anon;
};

}  // namespace

struct NftRuleset::Impl {
  mnl_socket* nl = nullptr;
  uint32_t portid = 0;
  uint32_t seq = 0;
  uint16_t family = NFPROTO_INET;  // the table's
  uint32_t hooknum = NF_INET_LOCAL_IN;
  size_t max_batch_messages = kMaxMessagesPerBatch;
  size_t max_batch_bytes = kMaxBatchBytes;
  std::vector<char> rx;

  ~Impl() {
    if (nl != nullptr) mnl_socket_close(nl);
  }

  // Builds a rule of `spec` for `f`; *next_set_id numbers its anonymous set.
  Result<BuiltRule> BuildRule(const NftSpec& spec, NftFamily f, const NftRule& rule,
                              uint32_t named_set_id, uint32_t* next_set_id) const;
  // Sends `batch` and gathers the kernel's errors. The kernel handles a
  // batch inside sendmsg(), so every reply is queued when it returns; the
  // ACK asked for on the last message tells that all were read.
  Status Talk(const Batch& batch, std::vector<SeqError>* errors);
  // A GET request (a dump if `dump`) whose reply messages go to `cb`.
  // Error: the kernel's, with `context`.
  Status Request(uint16_t type, bool dump, const std::string& context,
                 const std::function<void(nlmsghdr*)>& build,
                 const std::function<void(const nlmsghdr*)>& cb);
  void Drain();

  Result<std::vector<NftnlPtr<nftnl_rule>>> DumpRules(const NftSpec& spec);
  Result<std::string> AnonContents(const NftSpec& spec, const char* set_name);
  // The flags and key length of the named set, nullopt when there is none.
  struct SetShape {
    uint32_t flags = 0;
    uint32_t key_len = 0;
  };
  Result<std::optional<SetShape>> ShapeOf(const NftSpec& spec, const std::string& set_name);
};

namespace {

// The flags our named set is made with.
uint32_t NamedSetFlags(const NftSpec& spec) {
  return (spec.element_timeouts ? NFT_SET_TIMEOUT : 0) | (spec.intervals ? NFT_SET_INTERVAL : 0);
}

}  // namespace

namespace {

// The rule's identity for comparing ours with the kernel's: every expression
// as libnftnl prints it, except lookups, whose anonymous sets are named
// differently on each side and compare by their elements.
std::string Fingerprint(nftnl_rule* rule,
                        const std::function<std::string(nftnl_expr*)>& lookup_identity) {
  struct Ctx {
    std::string out;
    const std::function<std::string(nftnl_expr*)>* lookup;
  } ctx{"", &lookup_identity};
  nftnl_expr_foreach(
      rule,
      [](nftnl_expr* e, void* data) -> int {
        auto* c = static_cast<Ctx*>(data);
        const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
        c->out += name;
        c->out += ' ';
        if (std::strcmp(name, "lookup") == 0) {
          // Appended piece by piece: `" " + string` makes GCC 12 -O3 report
          // a false -Wrestrict inside std::string.
          c->out += "sreg ";
          c->out += std::to_string(nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_SREG));
          if (nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_DREG)) c->out += " dreg";
          // The kernel reports flags 0 that nft did not send.
          c->out += " flags ";
          c->out += std::to_string(nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS));
          c->out += ' ';
          c->out += (*c->lookup)(e);
        } else {
          char buf[512];
          nftnl_expr_snprintf(buf, sizeof(buf), e, NFTNL_OUTPUT_DEFAULT, 0);
          c->out += buf;
        }
        c->out += ";";
        return 0;
      },
      &ctx);
  return ctx.out;
}

// The named set a rule looks up, if any (not an anonymous one).
bool RuleReadsSet(nftnl_rule* rule, const std::string& set) {
  struct Ctx {
    const std::string* set;
    bool found;
  } ctx{&set, false};
  nftnl_expr_foreach(
      rule,
      [](nftnl_expr* e, void* data) -> int {
        auto* c = static_cast<Ctx*>(data);
        if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "lookup") == 0 &&
            *c->set == nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET)) {
          c->found = true;
        }
        return 0;
      },
      &ctx);
  return ctx.found;
}

// Calls fn for each attribute in [begin, end).
template <class Fn>
void ForEachAttr(const void* begin, const void* end, const Fn& fn) {
  const auto* a = static_cast<const nlattr*>(begin);
  int len = static_cast<int>(static_cast<const char*>(end) - static_cast<const char*>(begin));
  while (mnl_attr_ok(a, len)) {
    fn(a);
    const nlattr* next = mnl_attr_next(a);
    len -= static_cast<int>(reinterpret_cast<const char*>(next) - reinterpret_cast<const char*>(a));
    a = next;
  }
}

template <class Fn>
void ForEachNested(const nlattr* nest, const Fn& fn) {
  const char* begin = static_cast<const char*>(mnl_attr_get_payload(nest));
  ForEachAttr(begin, begin + mnl_attr_get_payload_len(nest), fn);
}

bool IsAnonymousName(const char* name) { return std::strncmp(name, "__set", 5) == 0; }

void PutAnonSet(Batch* batch, uint16_t family, const std::string& table, const AnonSet& anon) {
  NftnlPtr<nftnl_set> s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, "__set%d");
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, anon.flags);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, anon.key_type);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, anon.key_len);
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, anon.id);
  // nft counts an interval open to the top as if it had its end element.
  uint32_t size = 0;
  for (const AnonElement& e : anon.elements) size += e.open ? 2 : 1;
  nftnl_set_set_u32(s.get(), NFTNL_SET_DESC_SIZE, size);
  nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, nftnl_udata_buf_data(anon.udata.get()),
                     nftnl_udata_buf_len(anon.udata.get()));
  nlmsghdr* nlh = batch->Put(NFT_MSG_NEWSET, family, NLM_F_CREATE, 4096);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  batch->Commit(nlh);

  for (const AnonElement& el : anon.elements) {
    nftnl_set_elem* e = nftnl_set_elem_alloc();
    if (el.interval_end) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, el.key.data(), static_cast<uint32_t>(el.key.size()));
    if (el.open) {
      NftnlPtr<nftnl_udata_buf> ud(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
      nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN);
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud.get()),
                         nftnl_udata_buf_len(ud.get()));
    }
    nftnl_set_elem_add(s.get(), e);
  }
  nlh = batch->Put(NFT_MSG_NEWSETELEM, family, NLM_F_CREATE, 1024 + 64 * anon.elements.size());
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  batch->Commit(nlh);
}

}  // namespace

Result<BuiltRule> NftRuleset::Impl::BuildRule(const NftSpec& spec, NftFamily f, const NftRule& rule,
                                              uint32_t named_set_id, uint32_t* next_set_id) const {
  const NftBlock& block = spec.block;
  const bool reject = block.verdict == NftBlock::Verdict::kReject;
  const bool tcp_reset = reject && block.reject_type == NFT_REJECT_TCP_RST;
  auto refuse = [&](const std::string& why) {
    return Status::Error("nftables: add rule " + spec.table_family + " " + spec.table + " " +
                         spec.chain + " (" + FamilyWord(f) + " saddr @" + spec.set(f) +
                         "): " + why);
  };
  if (!rule.dports.empty() && rule.l4protos.size() != 1) {
    return refuse("a port match needs exactly one protocol");
  }
  if (!rule.dports.empty() && ProtoDescId(rule.l4protos[0]) == 0) {
    return refuse("protocol " + std::to_string(rule.l4protos[0]) + " has no dport");
  }
  if (tcp_reset) {
    for (uint8_t p : rule.l4protos) {
      if (p != IPPROTO_TCP) return refuse("you cannot use tcp reset with this protocol");
    }
  }
  if (reject && block.reject_type == NFT_REJECT_ICMPX_UNREACH && family != NFPROTO_INET) {
    return refuse("abstracted ICMP unreachable not supported");
  }
  if (reject && block.reject_type == NFT_REJECT_ICMP_UNREACH && block.icmp_family &&
      *block.icmp_family != f) {
    return refuse(std::string("conflicting protocols specified: ") +
                  FamilyWord(*block.icmp_family) + " vs " + FamilyWord(f));
  }
  if (reject && (block.reject_type < -1 || block.reject_type > NFT_REJECT_ICMPX_UNREACH)) {
    return refuse("unknown reject type " + std::to_string(block.reject_type));
  }

  BuiltRule out;
  out.rule.reset(nftnl_rule_alloc());
  nftnl_rule* r = out.rule.get();
  nftnl_rule_set_str(r, NFTNL_RULE_TABLE, spec.table.c_str());
  nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, spec.chain.c_str());
  nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, family);

  // `reject with tcp reset` depends on tcp, and nft adds the match first if
  // the rule has none.
  if (tcp_reset && rule.l4protos.empty()) {
    const uint8_t tcp = IPPROTO_TCP;
    AddMeta(r, NFT_META_L4PROTO);
    AddCmp(r, NFT_CMP_EQ, &tcp, 1);
  }
  if (!rule.l4protos.empty() && rule.dports.empty()) {  // meta l4proto { ... }
    AddMeta(r, NFT_META_L4PROTO);
    if (rule.l4protos.size() == 1) {
      AddCmp(r, NFT_CMP_EQ, &rule.l4protos[0], 1);
    } else {
      AnonSet anon;
      anon.id = (*next_set_id)++;
      anon.flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
      anon.key_type = kTypeInetProto;
      anon.key_len = 1;
      anon.udata = SetUserdata(kByteorderHost, false, kExprMeta, {{0, NFT_META_L4PROTO}});
      for (uint8_t p : rule.l4protos) anon.elements.push_back({{p}, false, false});
      AddLookup(r, "__set%d", anon.id);
      out.anon = std::move(anon);
    }
  }
  if (!rule.dports.empty()) {  // <proto> dport { ... }
    const uint8_t proto = rule.l4protos[0];
    AddMeta(r, NFT_META_L4PROTO);
    AddCmp(r, NFT_CMP_EQ, &proto, 1);
    AddPayload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    bool ranges = false;
    for (const auto& [lo, hi] : rule.dports) ranges |= lo != hi;
    if (rule.dports.size() == 1) {
      const auto [lo, hi] = rule.dports[0];
      if (lo == hi) {
        AddCmp(r, NFT_CMP_EQ, Be16(lo).data(), 2);
      } else {
        AddCmp(r, NFT_CMP_GTE, Be16(lo).data(), 2);
        AddCmp(r, NFT_CMP_LTE, Be16(hi).data(), 2);
      }
    } else {
      AnonSet anon;
      anon.id = (*next_set_id)++;
      anon.flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (ranges ? NFT_SET_INTERVAL : 0);
      anon.key_type = kTypeInetService;
      anon.key_len = 2;
      anon.udata = SetUserdata(kByteorderBigEndian, ranges, kExprPayload,
                               {{0, ProtoDescId(proto)}, {1, kDportField}});
      if (ranges) {
        anon.elements = PortIntervals(rule.dports);
      } else {
        for (const auto& port : rule.dports) anon.elements.push_back({Be16(port.first)});
      }
      AddLookup(r, "__set%d", anon.id);
      out.anon = std::move(anon);
    }
  }
  if (family == NFPROTO_INET) {
    const uint8_t nfproto = f == NftFamily::kIpv4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
    AddMeta(r, NFT_META_NFPROTO);
    AddCmp(r, NFT_CMP_EQ, &nfproto, 1);
  }
  if (f == NftFamily::kIpv4) {
    AddPayload(r, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
  } else {
    AddPayload(r, NFT_PAYLOAD_NETWORK_HEADER, 8, 16);
  }
  AddLookup(r, spec.set(f), named_set_id);

  if (reject) {
    uint32_t type = block.reject_type < 0 ? NFT_REJECT_ICMP_UNREACH : block.reject_type;
    int code = block.reject_code;
    if (code < 0) {
      switch (type) {
        case NFT_REJECT_ICMP_UNREACH:  // port-unreachable
          code = f == NftFamily::kIpv4 ? 3 : 4;
          break;
        case NFT_REJECT_ICMPX_UNREACH:
          code = NFT_REJECT_ICMPX_PORT_UNREACH;
          break;
        default:
          code = 0;
      }
    }
    nftnl_expr* e = nftnl_expr_alloc("reject");
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, static_cast<uint8_t>(code));
    AddExpr(r, e);
  } else {
    nftnl_expr* e = nftnl_expr_alloc("immediate");
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
    AddExpr(r, e);
  }
  return out;
}

Status NftRuleset::Impl::Talk(const Batch& batch, std::vector<SeqError>* errors) {
  if (mnl_socket_sendto(nl, batch.data(), batch.size()) < 0) {
    return Status::FromErrno("nftables: send", errno);
  }
  const int fd = mnl_socket_get_fd(nl);
  bool last_seen = batch.messages() == 0;
  bool refused = false;
  while (!last_seen) {
    ssize_t n = recv(fd, rx.data(), rx.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return Status::FromErrno("nftables: receive", errno);
      }
      if (refused) break;  // the kernel did not take the batch at all
      // Everything should be queued by now; wait a little all the same.
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 1000) > 0) continue;
      return Status::Error("nftables: no answer to a batch");
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_pid != portid) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (nlh->nlmsg_seq == batch.begin_seq() && err->error != 0) refused = true;
      if (err->error != 0) errors->push_back({nlh->nlmsg_seq, -err->error});
      if (nlh->nlmsg_seq == batch.last_seq()) last_seen = true;
    }
  }
  for (const SeqError& e : *errors) {
    if (e.seq == batch.begin_seq()) return Status::FromErrno("nftables: transaction", e.error);
  }
  return Status::Ok();
}

void NftRuleset::Impl::Drain() {
  const int fd = mnl_socket_get_fd(nl);
  while (recv(fd, rx.data(), rx.size(), MSG_DONTWAIT) > 0 || errno == EINTR) {
  }
}

Status NftRuleset::Impl::Request(uint16_t type, bool dump, const std::string& context,
                                 const std::function<void(nlmsghdr*)>& build,
                                 const std::function<void(const nlmsghdr*)>& cb) {
  std::vector<char> req(MNL_SOCKET_BUFFER_SIZE);
  const uint32_t req_seq = seq++;
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(req.data(), type, family, dump ? NLM_F_DUMP : NLM_F_ACK, req_seq);
  build(nlh);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    return Status::FromErrno(context, errno);
  }
  struct Ctx {
    const std::function<void(const nlmsghdr*)>* cb;
  } ctx{&cb};
  auto trampoline = [](const nlmsghdr* m, void* data) -> int {
    (*static_cast<Ctx*>(data)->cb)(m);
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl, rx.data(), rx.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      Drain();
      return Status::FromErrno(context, err);
    }
    int ret = mnl_cb_run(rx.data(), n, req_seq, portid, trampoline, &ctx);
    if (ret == MNL_CB_STOP) return Status::Ok();
    if (ret < 0) {
      const int err = errno;
      Drain();
      return Status::FromErrno(context, err);
    }
  }
}

Result<std::vector<NftnlPtr<nftnl_rule>>> NftRuleset::Impl::DumpRules(const NftSpec& spec) {
  std::vector<NftnlPtr<nftnl_rule>> rules;
  Status s = Request(
      NFT_MSG_GETRULE, true,
      "nftables: list chain " + spec.table_family + " " + spec.table + " " + spec.chain,
      [&](nlmsghdr* nlh) {
        NftnlPtr<nftnl_rule> r(nftnl_rule_alloc());
        nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, spec.table.c_str());
        nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, spec.chain.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, r.get());
      },
      [&](const nlmsghdr* nlh) {
        NftnlPtr<nftnl_rule> r(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return;
        // The kernel filters by table and chain name, not family.
        if (nftnl_rule_get_u32(r.get(), NFTNL_RULE_FAMILY) != family) return;
        rules.push_back(std::move(r));
      });
  // No table or chain yet: no rules.
  if (!s.ok() && s.message().find(std::strerror(ENOENT)) != std::string::npos) return rules;
  if (!s.ok()) return s;
  return rules;
}

Result<std::string> NftRuleset::Impl::AnonContents(const NftSpec& spec, const char* set_name) {
  std::vector<std::string> keys;
  Status s = Request(
      NFT_MSG_GETSETELEM, true,
      "nftables: list set " + spec.table_family + " " + spec.table + " " + set_name,
      [&](nlmsghdr* nlh) {
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, spec.table.c_str());
        mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set_name);
      },
      [&](const nlmsghdr* nlh) {
        NftnlPtr<nftnl_set> set(nftnl_set_alloc());
        if (nftnl_set_elems_nlmsg_parse(nlh, set.get()) < 0) return;
        nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(set.get());
        for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e != nullptr;
             e = nftnl_set_elems_iter_next(it)) {
          uint32_t len = 0;
          const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
          const bool end =
              nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_FLAGS) &&
              (nftnl_set_elem_get_u32(e, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
          keys.push_back(Hex(key, key == nullptr ? 0 : len) + (end ? "/end" : ""));
        }
        nftnl_set_elems_iter_destroy(it);
      });
  if (!s.ok()) return s;
  return Canonical(std::move(keys));
}

Result<std::optional<NftRuleset::Impl::SetShape>> NftRuleset::Impl::ShapeOf(
    const NftSpec& spec, const std::string& set_name) {
  std::optional<SetShape> shape;
  Status s = Request(
      NFT_MSG_GETSET, false,
      "nftables: list set " + spec.table_family + " " + spec.table + " " + set_name,
      [&](nlmsghdr* nlh) {
        mnl_attr_put_strz(nlh, NFTA_SET_TABLE, spec.table.c_str());
        mnl_attr_put_strz(nlh, NFTA_SET_NAME, set_name.c_str());
      },
      [&](const nlmsghdr* nlh) {
        NftnlPtr<nftnl_set> set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, set.get()) < 0) return;
        shape = SetShape{nftnl_set_get_u32(set.get(), NFTNL_SET_FLAGS),
                         nftnl_set_get_u32(set.get(), NFTNL_SET_KEY_LEN)};
      });
  if (!s.ok()) {
    if (s.message().find(std::strerror(ENOENT)) != std::string::npos) return shape;
    return s;
  }
  return shape;
}

NftRuleset::NftRuleset(NftSpec spec, std::unique_ptr<Impl> impl)
    : spec_(std::move(spec)), impl_(std::move(impl)) {}

NftRuleset::~NftRuleset() = default;

Result<std::unique_ptr<NftRuleset>> NftRuleset::Open(NftSpec spec) {
  auto impl = std::make_unique<Impl>();
  if (spec.table_family == "inet") {
    impl->family = NFPROTO_INET;
  } else if (spec.table_family == "ip") {
    impl->family = NFPROTO_IPV4;
  } else if (spec.table_family == "ip6") {
    impl->family = NFPROTO_IPV6;
  } else {
    return Status::Error("nftables: table family '" + spec.table_family +
                         "' is not inet, ip or ip6");
  }
  static const std::map<std::string_view, uint32_t> kHooks = {
      {"prerouting", NF_INET_PRE_ROUTING},
      {"input", NF_INET_LOCAL_IN},
      {"forward", NF_INET_FORWARD},
      {"output", NF_INET_LOCAL_OUT},
      {"postrouting", NF_INET_POST_ROUTING}};
  auto hook = kHooks.find(spec.chain_hook);
  if (hook == kHooks.end()) {
    return Status::Error("nftables: unknown chain hook '" + spec.chain_hook + "'");
  }
  impl->hooknum = hook->second;
  if (spec.table.empty() || spec.chain.empty() || spec.chain_type.empty()) {
    return Status::Error("nftables: table, chain and chain type must not be empty");
  }

  impl->nl = mnl_socket_open(NETLINK_NETFILTER);
  if (impl->nl == nullptr) return Status::FromErrno("nftables: netlink socket", errno);
  if (mnl_socket_bind(impl->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    return Status::FromErrno("nftables: bind netlink socket", errno);
  }
  impl->portid = mnl_socket_get_portid(impl->nl);
  impl->seq = static_cast<uint32_t>(time(nullptr));
  impl->rx.resize(kReceiveBufferBytes);
  const int fd = mnl_socket_get_fd(impl->nl);
  // Errors carry only the refused message's header, not the message.
  int one = 1;
  mnl_socket_setsockopt(impl->nl, NETLINK_CAP_ACK, &one, sizeof(one));
  // Big batches and their replies. The FORCE variants pass rmem_max and
  // wmem_max (root only); the plain ones are the fallback.
  int bytes = kSocketBufferBytes;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }
  int sndbuf = 0;
  int rcvbuf = 0;
  socklen_t len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
  len = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
  impl->max_batch_messages =
      std::clamp<size_t>(static_cast<size_t>(rcvbuf) / kErrorBytes, 16, kMaxMessagesPerBatch);
  impl->max_batch_bytes =
      std::clamp<size_t>(static_cast<size_t>(sndbuf) / 2, 64 << 10, kMaxBatchBytes);
  return std::unique_ptr<NftRuleset>(new NftRuleset(std::move(spec), std::move(impl)));
}

Status NftRuleset::Start(NftFamily f) {
  const std::string& set_name = spec_.set(f);
  const std::string where = spec_.table_family + " " + spec_.table;
  if (set_name.empty())
    return Status::Error("nftables: no set name for " + std::string(FamilyWord(f)));
  if ((impl_->family == NFPROTO_IPV4 && f == NftFamily::kIpv6) ||
      (impl_->family == NFPROTO_IPV6 && f == NftFamily::kIpv4)) {
    return Status::Error("nftables: add set " + where + " " + set_name + ": a " +
                         spec_.table_family + " table has no " + FamilyWord(f) + " traffic");
  }

  // The rules, built first so a spec nft would refuse sends nothing.
  constexpr uint32_t kNamedSetId = 1;
  uint32_t next_set_id = kNamedSetId + 1;
  std::vector<BuiltRule> rules;
  for (const NftRule& rule : spec_.rules) {
    Result<BuiltRule> built = impl_->BuildRule(spec_, f, rule, kNamedSetId, &next_set_id);
    if (!built.ok()) return built.status();
    rules.push_back(std::move(*built));
  }

  // A set of ours made with other flags (an older run without intervals, or
  // with other kernel timeouts) cannot be taken over: the kernel refuses to
  // "create" it again with EEXIST. It is deleted and made anew, with the
  // rules that read it, in this transaction. A set of that name with another
  // key is not one of ours: the kernel's EEXIST stands.
  Result<std::optional<Impl::SetShape>> shape = impl_->ShapeOf(spec_, set_name);
  if (!shape.ok()) return shape.status();
  const uint32_t key_len = f == NftFamily::kIpv4 ? 4 : 16;
  const bool replace =
      *shape && (*shape)->key_len == key_len && (*shape)->flags != NamedSetFlags(spec_);

  // Rules of ours already there (a restart after a crash) are not added again.
  Result<std::vector<NftnlPtr<nftnl_rule>>> existing = impl_->DumpRules(spec_);
  if (!existing.ok()) return existing.status();
  std::vector<std::string> present;
  std::vector<uint64_t> stale_rules;  // handles, when the set is replaced
  std::map<std::string, std::string> anon_cache;
  for (const auto& r : *existing) {
    if (!RuleReadsSet(r.get(), set_name)) continue;
    if (replace) {
      stale_rules.push_back(nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE));
      continue;
    }
    Status failed;
    std::string fp = Fingerprint(r.get(), [&](nftnl_expr* e) -> std::string {
      const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
      if (!IsAnonymousName(name)) return std::string("set ") + name;
      auto it = anon_cache.find(name);
      if (it == anon_cache.end()) {
        Result<std::string> contents = impl_->AnonContents(spec_, name);
        if (!contents.ok()) {
          failed = contents.status();
          return "?";
        }
        it = anon_cache.emplace(name, *contents).first;
      }
      return "anon " + it->second;
    });
    if (!failed.ok()) return failed;
    present.push_back(std::move(fp));
  }

  Batch batch(impl_->seq);
  // What each message does, by its seq - begin_seq - 1, for errors.
  std::vector<std::string> what;
  auto note = [&](const std::string& w) { what.resize(batch.last_seq() - batch.begin_seq(), w); };

  NftnlPtr<nftnl_table> table(nftnl_table_alloc());
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, spec_.table.c_str());
  nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, 0);
  nlmsghdr* nlh = batch.Put(NFT_MSG_NEWTABLE, impl_->family, NLM_F_CREATE, 1024);
  nftnl_table_nlmsg_build_payload(nlh, table.get());
  batch.Commit(nlh);
  note("add table " + where);

  NftnlPtr<nftnl_chain> chain(nftnl_chain_alloc());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, spec_.table.c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, spec_.chain.c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, spec_.chain_type.c_str());
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, impl_->hooknum);
  nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, spec_.chain_priority);
  nlh = batch.Put(NFT_MSG_NEWCHAIN, impl_->family, NLM_F_CREATE, 1024);
  nftnl_chain_nlmsg_build_payload(nlh, chain.get());
  batch.Commit(nlh);
  note("add chain " + where + " " + spec_.chain);

  for (const uint64_t handle : stale_rules) {
    NftnlPtr<nftnl_rule> del(nftnl_rule_alloc());
    nftnl_rule_set_str(del.get(), NFTNL_RULE_TABLE, spec_.table.c_str());
    nftnl_rule_set_str(del.get(), NFTNL_RULE_CHAIN, spec_.chain.c_str());
    nftnl_rule_set_u64(del.get(), NFTNL_RULE_HANDLE, handle);
    nlh = batch.Put(NFT_MSG_DELRULE, impl_->family, 0, 1024);
    nftnl_rule_nlmsg_build_payload(nlh, del.get());
    batch.Commit(nlh);
    note("delete rule " + where + " " + spec_.chain + " handle " + std::to_string(handle));
  }
  if (replace) {
    nlh = batch.Put(NFT_MSG_DELSET, impl_->family, 0, 1024);
    mnl_attr_put_strz(nlh, NFTA_SET_TABLE, spec_.table.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_NAME, set_name.c_str());
    batch.Commit(nlh);
    note("delete set " + where + " " + set_name + " (made with other flags)");
  }

  NftnlPtr<nftnl_set> set(nftnl_set_alloc());
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, spec_.table.c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, set_name.c_str());
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, NamedSetFlags(spec_));
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE,
                    f == NftFamily::kIpv4 ? kTypeIpv4Addr : kTypeIpv6Addr);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, f == NftFamily::kIpv4 ? 4 : 16);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, kNamedSetId);
  NftnlPtr<nftnl_udata_buf> udata = SetUserdata(kByteorderBigEndian, false, 0, {});
  nftnl_set_set_data(set.get(), NFTNL_SET_USERDATA, nftnl_udata_buf_data(udata.get()),
                     nftnl_udata_buf_len(udata.get()));
  nlh = batch.Put(NFT_MSG_NEWSET, impl_->family, NLM_F_CREATE, 1024);
  nftnl_set_nlmsg_build_payload(nlh, set.get());
  batch.Commit(nlh);
  note("add set " + where + " " + set_name);

  for (BuiltRule& built : rules) {
    std::string anon_contents = built.anon ? Canonical(*built.anon) : "";
    std::string fp = Fingerprint(built.rule.get(), [&](nftnl_expr* e) -> std::string {
      const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET);
      if (!IsAnonymousName(name)) return std::string("set ") + name;
      return "anon " + anon_contents;
    });
    auto same = std::find(present.begin(), present.end(), fp);
    if (same != present.end()) {
      present.erase(same);  // two identical rules in the spec need two in the chain
      continue;
    }
    if (built.anon) {
      PutAnonSet(&batch, impl_->family, spec_.table, *built.anon);
      note("add set " + where + " __set%d");
    }
    nlh = batch.Put(NFT_MSG_NEWRULE, impl_->family, NLM_F_APPEND | NLM_F_CREATE, 64 << 10);
    nftnl_rule_nlmsg_build_payload(nlh, built.rule.get());
    batch.Commit(nlh);
    note("add rule " + where + " " + spec_.chain);
  }
  batch.Finish();
  impl_->seq = batch.next_seq();

  std::vector<SeqError> errors;
  Status s = impl_->Talk(batch, &errors);
  if (!s.ok()) return s;
  for (const SeqError& e : errors) {
    const size_t i = e.seq - batch.begin_seq() - 1;
    if (i < what.size()) return Status::FromErrno("nftables: " + what[i], e.error);
  }
  if (!errors.empty()) return Status::FromErrno("nftables: add " + where, errors[0].error);
  return Status::Ok();
}

Status NftRuleset::Stop(NftFamily f) {
  const std::string& set_name = spec_.set(f);
  const std::string where = spec_.table_family + " " + spec_.table;
  bool table_exists = true;
  Status s = impl_->Request(
      NFT_MSG_GETTABLE, false, "nftables: list table " + where,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, spec_.table.c_str()); },
      [](const nlmsghdr*) {});
  if (!s.ok()) {
    if (s.message().find(std::strerror(ENOENT)) == std::string::npos) return s;
    table_exists = false;
  }
  if (!table_exists) return Status::Ok();

  Result<std::vector<NftnlPtr<nftnl_rule>>> rules = impl_->DumpRules(spec_);
  if (!rules.ok()) return rules.status();
  bool our_set = false;
  bool other_sets = false;
  s = impl_->Request(
      NFT_MSG_GETSET, true, "nftables: list sets " + where,
      [&](nlmsghdr* nlh) { mnl_attr_put_strz(nlh, NFTA_SET_TABLE, spec_.table.c_str()); },
      [&](const nlmsghdr* nlh) {
        NftnlPtr<nftnl_set> set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, set.get()) < 0) return;
        if (nftnl_set_get_u32(set.get(), NFTNL_SET_FAMILY) != impl_->family) return;
        if (nftnl_set_get_u32(set.get(), NFTNL_SET_FLAGS) & NFT_SET_ANONYMOUS) return;
        if (set_name == nftnl_set_get_str(set.get(), NFTNL_SET_NAME)) {
          our_set = true;
        } else {
          other_sets = true;
        }
      });
  if (!s.ok()) return s;

  Batch batch(impl_->seq);
  std::vector<std::string> what;
  for (const auto& r : *rules) {
    if (!RuleReadsSet(r.get(), set_name)) continue;
    const uint64_t handle = nftnl_rule_get_u64(r.get(), NFTNL_RULE_HANDLE);
    NftnlPtr<nftnl_rule> del(nftnl_rule_alloc());
    nftnl_rule_set_str(del.get(), NFTNL_RULE_TABLE, spec_.table.c_str());
    nftnl_rule_set_str(del.get(), NFTNL_RULE_CHAIN, spec_.chain.c_str());
    nftnl_rule_set_u64(del.get(), NFTNL_RULE_HANDLE, handle);
    nlmsghdr* nlh = batch.Put(NFT_MSG_DELRULE, impl_->family, 0, 1024);
    nftnl_rule_nlmsg_build_payload(nlh, del.get());
    batch.Commit(nlh);
    what.push_back("delete rule " + where + " " + spec_.chain + " handle " +
                   std::to_string(handle));
  }
  if (our_set) {
    nlmsghdr* nlh = batch.Put(NFT_MSG_DELSET, impl_->family, 0, 1024);
    mnl_attr_put_strz(nlh, NFTA_SET_TABLE, spec_.table.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_NAME, set_name.c_str());
    batch.Commit(nlh);
    what.push_back("delete set " + where + " " + set_name);
  }
  // As the shell action: the table goes when no set is left in it.
  if (!other_sets) {
    nlmsghdr* nlh = batch.Put(NFT_MSG_DELTABLE, impl_->family, 0, 1024);
    mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, spec_.table.c_str());
    batch.Commit(nlh);
    what.push_back("delete table " + where);
  }
  if (batch.messages() == 0) return Status::Ok();
  batch.Finish();
  impl_->seq = batch.next_seq();
  std::vector<SeqError> errors;
  s = impl_->Talk(batch, &errors);
  if (!s.ok()) return s;
  for (const SeqError& e : errors) {
    const size_t i = e.seq - batch.begin_seq() - 1;
    if (i < what.size()) return Status::FromErrno("nftables: " + what[i], e.error);
  }
  return Status::Ok();
}

Result<bool> NftRuleset::Check(NftFamily f) {
  const std::string& set_name = spec_.set(f);
  Result<std::optional<Impl::SetShape>> shape = impl_->ShapeOf(spec_, set_name);
  if (!shape.ok()) return shape.status();
  if (!*shape || (*shape)->flags != NamedSetFlags(spec_)) return false;
  Result<std::vector<NftnlPtr<nftnl_rule>>> rules = impl_->DumpRules(spec_);
  if (!rules.ok()) return rules.status();
  for (const auto& r : *rules) {
    if (RuleReadsSet(r.get(), set_name)) return true;
  }
  return false;
}

Result<std::vector<NftRuleset::ElementError>> NftRuleset::Apply(const std::vector<ElementOp>& ops) {
  std::vector<ElementError> refused;
  const bool intervals = spec_.intervals;
  // Keys in network order, 4 or 16 bytes; len 0: refused before sending.
  std::vector<ElementKeys> keys(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    const IpAddr& a = ops[i].addr;
    if (!a.is_ip() || (!intervals && !a.is_single())) continue;
    if (spec_.set(a.is_ipv4() ? NftFamily::kIpv4 : NftFamily::kIpv6).empty()) continue;
    keys[i] = KeysOf(a, intervals);
  }

  // A message: ops idx[first, first + count), all adds or all deletes of
  // one family's set.
  struct Group {
    size_t first;
    size_t count;
  };
  std::vector<uint32_t> idx;
  std::vector<Group> groups;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (keys[i].len == 0) {
      refused.push_back({i, EINVAL});
      continue;
    }
    const bool joins = !groups.empty() && groups.back().count < kElementsPerMessage &&
                       ops[idx.back()].add == ops[i].add && keys[idx.back()].len == keys[i].len;
    if (!joins) groups.push_back({idx.size(), 0});
    idx.push_back(static_cast<uint32_t>(i));
    ++groups.back().count;
  }

  const bool timeouts = spec_.element_timeouts;
  // A bound on a group's message: header, names, and per element its nest,
  // key nest, value and timeout; with intervals twice that (the end element
  // and its flags, or the start's open mark).
  auto group_bytes = [&](const Group& g) {
    return 64 + spec_.table.size() + spec_.set_v4.size() + spec_.set_v6.size() +
           g.count * (12 + 4 + keys[idx[g.first]].len + (timeouts ? 12 : 0)) *
               (intervals ? 2 : 1);
  };
  NftnlPtr<nftnl_udata_buf> open_mark(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN));
  nftnl_udata_put_u32(open_mark.get(), NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN);
  auto put_group = [&](Batch* batch, const Group& g) {
    const ElementOp& head = ops[idx[g.first]];
    const NftFamily f = head.addr.is_ipv4() ? NftFamily::kIpv4 : NftFamily::kIpv6;
    nlmsghdr* nlh = batch->Put(head.add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, impl_->family,
                               head.add ? NLM_F_CREATE : 0, group_bytes(g));
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, spec_.table.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, spec_.set(f).c_str());
    nlattr* list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    uint16_t n = 0;
    for (size_t k = 0; k < g.count; ++k) {
      const uint32_t i = idx[g.first + k];
      const ElementKeys& key = keys[i];
      // As nft sends an interval: the start element (with the timeout, or
      // marked open when nothing follows it), then its end element.
      nlattr* elem = mnl_attr_nest_start(nlh, ++n);
      if (timeouts && head.add && ops[i].timeout_ms > 0) {
        mnl_attr_put_u64(nlh, NFTA_SET_ELEM_TIMEOUT, htobe64(ops[i].timeout_ms));
      }
      nlattr* k_nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
      mnl_attr_put(nlh, NFTA_DATA_VALUE, key.len, key.start.data());
      mnl_attr_nest_end(nlh, k_nest);
      if (intervals && !key.has_end && head.add) {
        mnl_attr_put(nlh, NFTA_SET_ELEM_USERDATA, nftnl_udata_buf_len(open_mark.get()),
                     nftnl_udata_buf_data(open_mark.get()));
      }
      mnl_attr_nest_end(nlh, elem);
      if (intervals && key.has_end) {
        elem = mnl_attr_nest_start(nlh, ++n);
        mnl_attr_put_u32(nlh, NFTA_SET_ELEM_FLAGS, htonl(NFT_SET_ELEM_INTERVAL_END));
        k_nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
        mnl_attr_put(nlh, NFTA_DATA_VALUE, key.len, key.end.data());
        mnl_attr_nest_end(nlh, k_nest);
        mnl_attr_nest_end(nlh, elem);
      }
    }
    mnl_attr_nest_end(nlh, list);
    batch->Commit(nlh);
  };

  // Groups still to send, in op order. A transaction takes groups from the
  // front; if the kernel refuses some, the transaction is void: a refused
  // single element is reported and dropped, a refused group is split into
  // single elements, and all of it goes back to the front to be sent again.
  std::deque<Group> work(groups.begin(), groups.end());
  while (!work.empty()) {
    std::vector<Group> chunk;
    size_t bytes = 0;
    while (!work.empty() && chunk.size() < impl_->max_batch_messages &&
           (chunk.empty() || bytes + group_bytes(work.front()) <= impl_->max_batch_bytes)) {
      bytes += group_bytes(work.front());
      chunk.push_back(work.front());
      work.pop_front();
    }
    Batch batch(impl_->seq);
    for (const Group& g : chunk) put_group(&batch, g);
    batch.Finish();
    impl_->seq = batch.next_seq();
    std::vector<SeqError> errors;
    Status s = impl_->Talk(batch, &errors);
    if (!s.ok()) return s;
    if (errors.empty()) continue;  // committed
    std::vector<int> error_of(chunk.size(), 0);
    for (const SeqError& e : errors) {
      const size_t m = e.seq - batch.begin_seq() - 1;
      if (m >= chunk.size()) return Status::FromErrno("nftables: add/delete element", e.error);
      error_of[m] = e.error;
    }
    for (size_t m = chunk.size(); m-- > 0;) {
      const Group& g = chunk[m];
      if (error_of[m] == 0) {
        work.push_front(g);
      } else if (g.count == 1) {
        refused.push_back({idx[g.first], error_of[m]});
      } else {
        for (size_t k = g.count; k-- > 0;) work.push_front({g.first + k, 1});
      }
    }
  }
  std::sort(refused.begin(), refused.end(),
            [](const ElementError& a, const ElementError& b) { return a.index < b.index; });
  return refused;
}

Result<std::vector<IpAddr>> NftRuleset::Elements(NftFamily f) {
  const std::string& set_name = spec_.set(f);
  const std::string context =
      "nftables: list set " + spec_.table_family + " " + spec_.table + " " + set_name;
  struct Key {
    std::array<uint8_t, 16> bytes{};
    uint8_t len = 0;
    bool end = false;  // an interval's end element
    auto Tie() const { return std::tie(len, bytes, end); }
    // Ascending; at one key an end before a start (adjacent intervals).
    bool operator<(const Key& o) const {
      return len != o.len ? len < o.len : bytes != o.bytes ? bytes < o.bytes : end && !o.end;
    }
    bool operator==(const Key& o) const { return Tie() == o.Tie(); }
  };
  std::vector<Key> keys;
  // The kernel resumes a multi-part dump by position, and a hash set that is
  // being resized (as right after a big Apply) changes its order between
  // parts, so a dump may return an element twice and, as many times, miss
  // one. Duplicates (or the kernel's NLM_F_DUMP_INTR) mean: read again.
  constexpr int kAttempts = 20;
  for (int attempt = 0;; ++attempt) {
    keys.clear();
    bool interrupted = false;
    Status s = impl_->Request(
        NFT_MSG_GETSETELEM, true, context,
        [&](nlmsghdr* nlh) {
          mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, spec_.table.c_str());
          mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set_name.c_str());
        },
        [&](const nlmsghdr* nlh) {
          if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
          ForEachAttr(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)),
                      mnl_nlmsg_get_payload_tail(nlh), [&](const nlattr* attr) {
                        if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) return;
                        ForEachNested(attr, [&](const nlattr* elem) {
                          const nlattr* value = nullptr;
                          bool end = false;
                          ForEachNested(elem, [&](const nlattr* field) {
                            if (mnl_attr_get_type(field) == NFTA_SET_ELEM_FLAGS) {
                              end = ntohl(mnl_attr_get_u32(field)) & NFT_SET_ELEM_INTERVAL_END;
                            } else if (mnl_attr_get_type(field) == NFTA_SET_ELEM_KEY) {
                              ForEachNested(field, [&](const nlattr* v) {
                                if (mnl_attr_get_type(v) == NFTA_DATA_VALUE) value = v;
                              });
                            }
                          });
                          if (value == nullptr) return;
                          const uint16_t len = mnl_attr_get_payload_len(value);
                          if (len != 4 && len != 16) return;
                          Key k;
                          k.len = static_cast<uint8_t>(len);
                          k.end = end;
                          std::memcpy(k.bytes.data(), mnl_attr_get_payload(value), len);
                          keys.push_back(k);
                        });
                      });
        });
    if (!s.ok()) return s;
    std::vector<Key> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    const bool repeats = std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
    if (!repeats && !interrupted) break;
    if (attempt + 1 == kAttempts) {
      return Status::Error(context + ": the set kept changing while it was read");
    }
    timespec pause{0, 10 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }

  std::vector<IpAddr> out;
  if (!spec_.intervals) {
    out.reserve(keys.size());
    for (const Key& k : keys) {
      if (k.end) continue;
      char text[INET6_ADDRSTRLEN];
      if (inet_ntop(k.len == 4 ? AF_INET : AF_INET6, k.bytes.data(), text, sizeof(text)) ==
          nullptr) {
        continue;
      }
      Result<IpAddr> ip = IpAddr::Parse(text);
      if (ip.ok()) out.push_back(std::move(*ip));
    }
    return out;
  }
  // Each start with the end element after it; a start with none runs to the
  // top; an end with no start before it (the one at 0 nft adds) is not an
  // interval.
  std::sort(keys.begin(), keys.end());
  for (size_t i = 0; i < keys.size(); ++i) {
    const Key& k = keys[i];
    if (k.end) continue;
    const Bits first = GetBits(k.bytes.data(), k.len);
    const bool closed = i + 1 < keys.size() && keys[i + 1].end && keys[i + 1].len == k.len;
    if (closed) {
      AppendNetworks(first, GetBits(keys[i + 1].bytes.data(), k.len), false, k.len, &out);
    } else if (k.len == 4) {
      AppendNetworks(first, static_cast<Bits>(1) << 32, false, k.len, &out);
    } else {
      AppendNetworks(first, 0, true, k.len, &out);
    }
  }
  return out;
}

}  // namespace bantam
