#include "bantam/ip_address.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/types.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>

#include "bantam/py.h"

namespace bantam {
namespace {

constexpr uint64_t kAllOnes = ~uint64_t{0};

// inet_pton(AF_INET) as glibc does it: exactly four decimal parts, each at
// most 255 and without leading zeros.
bool ParseIpv4(std::string_view s, uint32_t* out) {
  uint32_t acc = 0;
  uint32_t part = 0;
  int parts = 0;
  bool in_part = false;
  for (char ch : s) {
    if (ch >= '0' && ch <= '9') {
      if (in_part && part == 0) return false;  // "01": glibc refuses octal-looking parts
      part = part * 10 + static_cast<uint32_t>(ch - '0');
      if (part > 255) return false;
      if (!in_part) {
        if (++parts > 4) return false;
        in_part = true;
      }
    } else if (ch == '.' && in_part) {
      if (parts == 4) return false;
      acc = (acc << 8) | part;
      part = 0;
      in_part = false;
    } else {
      return false;
    }
  }
  if (parts < 4 || !in_part) return false;
  *out = (acc << 8) | part;
  return true;
}

int HexValue(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// inet_pton(AF_INET6) as glibc does it: one "::" standing for at least one
// group, groups of 1-4 hex digits, an optional dotted IPv4 tail, no zone id.
bool ParseIpv6(std::string_view s, uint8_t out[16]) {
  uint8_t tmp[16] = {};
  size_t tp = 0;
  int colon_at = -1;  // where "::" was seen, as an offset into tmp
  size_t i = 0;
  if (!s.empty() && s[0] == ':') {
    if (s.size() < 2 || s[1] != ':') return false;
    i = 1;
  }
  size_t token = i;
  int digits = 0;
  uint32_t value = 0;
  while (i < s.size()) {
    const char ch = s[i++];
    const int h = HexValue(ch);
    if (h >= 0) {
      if (++digits > 4) return false;
      value = (value << 4) | static_cast<uint32_t>(h);
      continue;
    }
    if (ch == ':') {
      token = i;
      if (digits == 0) {
        if (colon_at >= 0) return false;
        colon_at = static_cast<int>(tp);
        continue;
      }
      if (i == s.size() || tp + 2 > 16) return false;
      tmp[tp++] = static_cast<uint8_t>(value >> 8);
      tmp[tp++] = static_cast<uint8_t>(value);
      digits = 0;
      value = 0;
      continue;
    }
    uint32_t v4;
    if (ch == '.' && tp + 4 <= 16 && ParseIpv4(s.substr(token), &v4)) {
      for (int shift = 24; shift >= 0; shift -= 8) tmp[tp++] = static_cast<uint8_t>(v4 >> shift);
      digits = 0;
      break;
    }
    return false;
  }
  if (digits > 0) {
    if (tp + 2 > 16) return false;
    tmp[tp++] = static_cast<uint8_t>(value >> 8);
    tmp[tp++] = static_cast<uint8_t>(value);
  }
  if (colon_at >= 0) {
    if (tp == 16) return false;  // "::" must stand for at least one group
    const size_t tail = tp - static_cast<size_t>(colon_at);
    std::memmove(tmp + 16 - tail, tmp + colon_at, tail);
    std::memset(tmp + colon_at, 0, 16 - tail - static_cast<size_t>(colon_at));
    tp = 16;
  }
  if (tp != 16) return false;
  std::memcpy(out, tmp, 16);
  return true;
}

// Python's int(text) for a "/N" suffix, ASCII only (a deliberate
// difference, see ip_address.h). Errors carry Python's message, since
// fail2ban would have let that ValueError escape. Values too large for
// int64 saturate; Init refuses them.
Result<int64_t> PrefixInt(std::string_view text) {
  const bool ascii = std::all_of(text.begin(), text.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  const std::optional<int64_t> n = ascii ? PyInt(text) : std::nullopt;
  if (!n) return Status::Error("invalid literal for int() with base 10: " + PyRepr(text));
  return *n;
}

// Whether a 128-bit number is ones from bit 127 down, then zeros.
bool IsHighOnes(uint64_t hi, uint64_t lo) {
  if (hi == kAllOnes) return std::countl_one(lo) + std::countr_zero(lo) == 64;
  return lo == 0 && std::countl_one(hi) + std::countr_zero(hi) == 64;
}

// IPAddr.maskplen: the prefix length whose mask is this number, looked up by
// value alone, so "::255.255.255.0" is a /24 mask just like "255.255.255.0".
Result<int> MaskPrefixLength(const IpAddr& mask, uint64_t hi, uint64_t lo) {
  if (hi == 0 && lo <= 0xFFFFFFFFu) {
    const uint32_t v = static_cast<uint32_t>(lo);
    if (v == 0 || std::countl_one(v) + std::countr_zero(v) == 32) return std::popcount(v);
  } else if (IsHighOnes(hi, lo)) {
    return std::popcount(hi) + std::popcount(lo);
  }
  return Status::Error("invalid mask " + PyRepr(mask.ToString()) + ", no plen representation");
}

uint64_t HighMask(int64_t plen) {  // the top `plen` bits of 64
  if (plen <= 0) return 0;
  if (plen >= 64) return kAllOnes;
  return ~(kAllOnes >> plen);
}

}  // namespace

Result<IpAddr> IpAddr::Parse(std::string_view text, int cidr) { return ParseAt(text, cidr, 0); }

IpAddr IpAddr::FromText(std::string_view text, int cidr) {
  Result<IpAddr> ip = Parse(text, cidr);
  if (ip.ok()) return std::move(*ip);
  IpAddr invalid;
  invalid.raw_ = std::string(text);
  return invalid;
}

Result<IpAddr> IpAddr::ParseAt(std::string_view text, int64_t cidr, int depth) {
  if (cidr != kCidrUnspec) return Init(text, cidr);
  // IPAddr.__wrap_ipstr: "[v6]" is how logs write an address next to a port.
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return Init(text, kCidrUnspec);
  const std::string_view suffix = text.substr(slash + 1);
  int64_t prefix;
  if (suffix.find_first_of(".:") != std::string_view::npos) {
    if (depth >= kMaxMaskDepth) return Status::Error("maximum recursion depth exceeded");
    Result<IpAddr> mask = ParseAt(suffix, kCidrUnspec, depth + 1);
    if (!mask.ok()) return mask.status();
    Result<int> plen = MaskPrefixLength(*mask, mask->hi_, mask->lo_);
    if (!plen.ok()) return plen.status();
    prefix = *plen;
  } else {
    Result<int64_t> n = PrefixInt(suffix);
    if (!n.ok()) return n.status();
    prefix = *n;
  }
  return Init(text.substr(0, slash), prefix);
}

Result<IpAddr> IpAddr::Init(std::string_view text, int64_t cidr) {
  IpAddr ip;
  if (cidr == kCidrRaw) {
    ip.family_ = kCidrRaw;
    ip.raw_ = std::string(text);
    return ip;
  }
  if (cidr > INT_MAX) return Status::Error("prefix length " + std::to_string(cidr) + " too large");
  bool try4 = true;
  bool try6 = true;
  if (cidr < kCidrRaw) {
    // fail2ban hands kCidrRaw - cidr to inet_pton as the family, which takes
    // a C int and knows only AF_INET and AF_INET6.
    const int64_t family = kCidrRaw - cidr;
    if (family > INT_MAX) return Status::Error("signed integer is greater than maximum");
    try4 = family == AF_INET;
    try6 = family == AF_INET6;
  }
  // Python refuses to pass a NUL to inet_pton.
  if (text.find('\0') != std::string_view::npos) return Status::Error("embedded null character");

  uint32_t v4;
  uint8_t v6[16];
  if (try4 && ParseIpv4(text, &v4)) {
    ip.family_ = AF_INET;
    ip.lo_ = v4;
    ip.plen_ = 32;
    if (cidr >= 0) {
      ip.lo_ &= HighMask(cidr + 32);
      ip.plen_ = static_cast<int>(cidr);
    }
  } else if (try6 && ParseIpv6(text, v6)) {
    ip.family_ = AF_INET6;
    for (int i = 0; i < 8; ++i) {
      ip.hi_ = (ip.hi_ << 8) | v6[i];
      ip.lo_ = (ip.lo_ << 8) | v6[i + 8];
    }
    ip.plen_ = 128;
    if (cidr >= 0) {
      ip.hi_ &= HighMask(cidr);
      ip.lo_ &= HighMask(cidr - 64);
      ip.plen_ = static_cast<int>(cidr);
    } else if (ip.hi_ == 0 && (ip.lo_ >> 32) == 0xFFFF) {
      // IPv4-mapped: the same host as its IPv4 form, so ban and ignore lists
      // see one id whichever way the log wrote it.
      ip.family_ = AF_INET;
      ip.lo_ &= 0xFFFFFFFFu;
      ip.plen_ = 32;
    }
  } else {
    ip.raw_ = std::string(text);
  }
  return ip;
}

std::string IpAddr::ToString() const {
  std::string out;
  if (is_ipv4()) {
    // By hand: every ban formats its address several times.
    char buf[sizeof "255.255.255.255/32"];
    char* p = buf;
    auto put = [&p](unsigned v) {
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
    };
    for (int shift = 24; shift >= 0; shift -= 8) {
      put(static_cast<unsigned>((lo_ >> shift) & 0xFF));
      if (shift) *p++ = '.';
    }
    if (plen_ > 0 && plen_ < 32) {
      *p++ = '/';
      put(static_cast<unsigned>(plen_));
    }
    out.assign(buf, p);
    return out;
  }
  if (!is_ipv6()) return raw_;
  // inet_ntop: the longest (first on a tie) run of two or more zero groups
  // becomes "::"; "::a.b.c.d" and "::ffff:a.b.c.d" keep the IPv4 tail.
  uint16_t words[8];
  for (int i = 0; i < 4; ++i) {
    words[i] = static_cast<uint16_t>(hi_ >> (48 - 16 * i));
    words[i + 4] = static_cast<uint16_t>(lo_ >> (48 - 16 * i));
  }
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (words[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && words[j] == 0) ++j;
    if (j - i > best_len) best = i, best_len = j - i;
    i = j;
  }
  if (best_len < 2) best = -1;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) {
    if (best >= 0 && i >= best && i < best + best_len) {
      if (i == best) out += ':';
      continue;
    }
    if (i != 0) out += ':';
    if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xFFFF))) {
      for (int shift = 24; shift >= 0; shift -= 8) {
        out += std::to_string((lo_ >> shift) & 0xFF);
        if (shift) out += '.';
      }
      break;
    }
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const int nibble = (words[i] >> shift) & 0xF;
      if (nibble || started || shift == 0) out += kHex[nibble], started = true;
    }
  }
  if (best >= 0 && best + best_len == 8) out += ':';
  if (plen_ > 0 && plen_ < 128) out += "/" + std::to_string(plen_);
  return out;
}

IpAddr IpAddr::Network(int plen) const {
  if (!is_ip() || plen >= plen_) return *this;
  IpAddr net = *this;
  net.plen_ = std::max(plen, 0);
  if (is_ipv4()) {
    net.lo_ &= HighMask(int64_t{net.plen_} + 32) & 0xFFFFFFFFu;
  } else {
    net.hi_ &= HighMask(net.plen_);
    net.lo_ &= HighMask(int64_t{net.plen_} - 64);
  }
  return net;
}

bool IpAddr::Overlaps(const IpAddr& other) const {
  if (!is_ip() || family_ != other.family_) return false;
  const int shorter = std::min(plen_, other.plen_);
  return Network(shorter) == other.Network(shorter);
}

bool IpAddr::IsInNet(const IpAddr& net, Resolver* resolver) const {
  if (net.family_ == 0 && !net.raw_.empty()) {
    if (resolver == nullptr) return false;
    for (const IpAddr& ip : resolver->HostToIp(net.raw_)) {
      if (is_ip() && PyEquals(ip)) return true;
    }
    return false;
  }
  if (family_ != net.family_) return false;
  if (is_ipv4()) {
    const uint64_t mask = HighMask(int64_t{net.plen_} + 32) & 0xFFFFFFFFu;
    return (lo_ & mask) == net.lo_ && net.hi_ == 0;
  }
  if (is_ipv6()) {
    return (hi_ & HighMask(net.plen_)) == net.hi_ &&
           (lo_ & HighMask(int64_t{net.plen_} - 64)) == net.lo_;
  }
  return false;
}

bool IpAddr::Contains(const IpAddr& ip, Resolver* resolver) const {
  return ip.PyEquals(*this) || ip.IsInNet(*this, resolver);
}

bool IpAddr::PyEquals(const IpAddr& other) const {
  if (family_ != other.family_) return false;
  if (family_ == 0) return raw_ == other.raw_;
  // Raw ids hold no address, so fail2ban finds any two of them equal.
  return hi_ == other.hi_ && lo_ == other.lo_ && plen_ == other.plen_;
}

bool IpAddr::EqualsText(std::string_view text) const {
  if (is_raw()) return raw_ == text;
  Result<IpAddr> other = Parse(text);
  return other.ok() && PyEquals(*other);
}

size_t IpAddr::Hash() const {
  if (!is_ip()) return std::hash<std::string>()(raw_) ^ static_cast<size_t>(family_ & 0xFF);
  uint64_t h = hi_ * 0x9E3779B97F4A7C15ull;
  h ^= lo_ + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= (static_cast<uint64_t>(plen_) << 8 | static_cast<uint64_t>(family_)) * 0xC2B2AE3D27D4EB4Full;
  return static_cast<size_t>(h ^ (h >> 29));
}

namespace {

class GetaddrinfoResolver : public Resolver {
 public:
  std::vector<IpAddr> HostToIp(std::string_view host) override {
    std::vector<IpAddr> out;
    const std::string name(host);
    if (name.find('\0') != std::string::npos) return out;
    // Like dnsToIp: ask per family (IPv4 first), keep addresses only.
    for (int family : {AF_INET, AF_INET6}) {
      addrinfo hints = {};
      hints.ai_family = family;
      hints.ai_protocol = IPPROTO_TCP;
      addrinfo* list = nullptr;
      if (::getaddrinfo(name.c_str(), nullptr, &hints, &list) != 0) continue;
      for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        char text[NI_MAXHOST];
        if (ai->ai_family == AF_INET6 &&
            reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_scope_id != 0) {
          continue;  // Python spells these "fe80::1%eth0", which IPAddr refuses
        }
        if (::getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof text, nullptr, 0,
                          NI_NUMERICHOST) != 0) {
          continue;
        }
        IpAddr ip = IpAddr::FromText(text, family == AF_INET ? kFamIpv4 : kFamIpv6);
        if (!ip.is_valid()) continue;
        bool seen = false;
        for (const IpAddr& o : out) seen = seen || o == ip;
        if (!seen) out.push_back(std::move(ip));
      }
      ::freeaddrinfo(list);
    }
    return out;
  }

  std::vector<std::string> IpToName(const IpAddr& ip) override {
    std::vector<std::string> out;
    if (!ip.is_ip()) return out;
    addrinfo hints = {};
    hints.ai_flags = AI_NUMERICHOST;
    addrinfo* list = nullptr;
    if (::getaddrinfo(ip.ToString().c_str(), nullptr, &hints, &list) != 0) return out;
    char name[NI_MAXHOST];
    if (::getnameinfo(list->ai_addr, list->ai_addrlen, name, sizeof name, nullptr, 0,
                      NI_NAMEREQD) == 0) {
      out.emplace_back(name);
    }
    ::freeaddrinfo(list);
    return out;
  }
};

}  // namespace

Resolver& SystemResolver() {
  static Resolver* resolver = new GetaddrinfoResolver();
  return *resolver;
}

std::vector<IpAddr> TextToIp(std::string_view text, std::string_view usedns, Resolver& resolver,
                             std::string* warning) {
  if (warning != nullptr) warning->clear();
  // searchIP's "^...$" lets one trailing newline through; its IPv6 branch
  // never returns a match, so only dotted quads short-cut the resolver.
  std::string_view plain = text;
  if (!plain.empty() && plain.back() == '\n') plain.remove_suffix(1);
  uint32_t v4;
  if (ParseIpv4(plain, &v4)) return {IpAddr::FromText(plain)};
  if (usedns != "yes" && usedns != "warn") return {};
  std::vector<IpAddr> ips;
  for (IpAddr& ip : resolver.HostToIp(text)) {
    bool seen = false;
    for (const IpAddr& o : ips) seen = seen || o == ip;
    if (!seen) ips.push_back(std::move(ip));
  }
  if (!ips.empty() && usedns == "warn" && warning != nullptr) {
    // fail2ban formats the set of addresses: {'1.2.3.4', '::1'}.
    std::string set = "{";
    for (const IpAddr& ip : ips) {
      if (set.size() > 1) set += ", ";
      set += PyRepr(ip.ToString());
    }
    *warning = "Determined IP using DNS Lookup: " + std::string(text) + " = " + set + "}";
  }
  return ips;
}

}  // namespace bantam
