#include "bantam/nft_action.h"

#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "bantam/clock.h"
#include "bantam/ip_address.h"
#include "bantam/py.h"

namespace bantam {
namespace {

bool IsFalse(const std::string& s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l == "no" || l == "false" || l == "off" || l == "0";
}

// A shell command line as words, with quoting and backslashes dropped:
// `nft add element inet t s \{ <ip> \}` and `... '{ <ip> }'` read the same.
std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == '\\' || c == '\'' || c == '"') continue;
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    cur += c;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

bool ParseUint(const std::string& s, unsigned max, unsigned* out) {
  if (s.empty() || s.size() > 6) return false;
  unsigned v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

bool ProtocolNumber(const std::string& name, uint8_t* out) {
  unsigned n = 0;
  if (ParseUint(name, 255, &n)) {
    *out = static_cast<uint8_t>(n);
    return true;
  }
  struct protoent pe, *res = nullptr;
  char buf[1024];
  if (getprotobyname_r(name.c_str(), &pe, buf, sizeof buf, &res) != 0 || res == nullptr) {
    return false;
  }
  *out = static_cast<uint8_t>(res->p_proto);
  return true;
}

bool PortNumber(const std::string& name, uint16_t* out) {
  unsigned n = 0;
  if (ParseUint(name, 65535, &n)) {
    *out = static_cast<uint16_t>(n);
    return true;
  }
  struct servent se, *res = nullptr;
  char buf[1024];
  if (getservbyname_r(name.c_str(), nullptr, &se, buf, sizeof buf, &res) != 0 || res == nullptr) {
    return false;
  }
  *out = ntohs(static_cast<uint16_t>(res->s_port));
  return true;
}

// <port> as the shell action hands it to nft (`:` read as `-`).
bool ParsePorts(const std::string& text, std::vector<std::pair<uint16_t, uint16_t>>* out,
                std::string* why) {
  for (const std::string& item : SplitCommaList(text)) {
    size_t dash = item.find_first_of("-:");
    uint16_t lo = 0, hi = 0;
    if (dash == std::string::npos || PortNumber(item, &lo)) {
      if (!PortNumber(item, &lo)) {
        *why = "port '" + item + "' is not a number, a range or a known service";
        return false;
      }
      hi = lo;
    } else if (!PortNumber(item.substr(0, dash), &lo) || !PortNumber(item.substr(dash + 1), &hi) ||
               hi < lo) {
      *why = "port '" + item + "' is not a number, a range or a known service";
      return false;
    }
    out->emplace_back(lo, hi);
  }
  if (out->empty()) {
    *why = "no port";
    return false;
  }
  return true;
}

struct NamedCode {
  const char* name;
  int code;
};
constexpr NamedCode kIcmpCodes[] = {
    {"net-unreachable", 0},  {"host-unreachable", 1}, {"prot-unreachable", 2},
    {"port-unreachable", 3}, {"net-prohibited", 9},   {"host-prohibited", 10},
    {"admin-prohibited", 13}};
constexpr NamedCode kIcmpv6Codes[] = {{"no-route", 0},         {"admin-prohibited", 1},
                                      {"addr-unreachable", 3}, {"port-unreachable", 4},
                                      {"policy-fail", 5},      {"reject-route", 6}};
constexpr NamedCode kIcmpxCodes[] = {{"no-route", 0},
                                     {"port-unreachable", 1},
                                     {"host-unreachable", 2},
                                     {"admin-prohibited", 3}};

template <size_t N>
bool LookupCode(const NamedCode (&table)[N], const std::string& name, int* code) {
  for (const NamedCode& c : table) {
    if (name == c.name) {
      *code = c.code;
      return true;
    }
  }
  return false;
}

// <blocktype>: drop, reject, reject with icmp|icmpv6|icmpx [type] NAME,
// reject with tcp reset.
bool ParseBlock(const std::string& text, NftBlock* out, std::string* why) {
  const std::vector<std::string> w = Words(text);
  *why = "blocktype '" + text + "' is not one the native action builds";
  if (w.size() == 1 && w[0] == "drop") {
    out->verdict = NftBlock::Verdict::kDrop;
    return true;
  }
  if (w.empty() || w[0] != "reject") return false;
  out->verdict = NftBlock::Verdict::kReject;
  if (w.size() == 1) return true;
  if (w.size() < 3 || w[1] != "with") return false;
  if (w.size() == 4 && w[2] == "tcp" && w[3] == "reset") {
    out->reject_type = 1;
    out->reject_code = 0;
    return true;
  }
  size_t name_at = (w.size() == 5 && w[3] == "type") ? 4 : (w.size() == 4 ? 3 : 0);
  if (name_at == 0) return false;
  int code = 0;
  if (w[2] == "icmp" && LookupCode(kIcmpCodes, w[name_at], &code)) {
    out->reject_type = 0;
    out->icmp_family = NftFamily::kIpv4;
  } else if (w[2] == "icmpv6" && LookupCode(kIcmpv6Codes, w[name_at], &code)) {
    out->reject_type = 0;
    out->icmp_family = NftFamily::kIpv6;
  } else if (w[2] == "icmpx" && LookupCode(kIcmpxCodes, w[name_at], &code)) {
    out->reject_type = 2;
  } else {
    return false;
  }
  out->reject_code = code;
  return true;
}

bool StartsWith(const std::vector<std::string>& w, const std::vector<std::string>& prefix,
                size_t at = 0) {
  if (w.size() < at + prefix.size()) return false;
  return std::equal(prefix.begin(), prefix.end(), w.begin() + static_cast<long>(at));
}

bool IsNft(const std::string& word) {
  return word == "nft" || (word.size() > 4 && word.compare(word.size() - 4, 4, "/nft") == 0);
}

// One family's objects, read from its expanded commands. The commands are
// the truth (the stream carries them resolved; options such as `chain` may
// still hold `<known/chain>`), except for <port> and <protocol>, which the
// rule refers to through shell variables.
struct FamilyView {
  std::string table_family, table, chain, chain_type, chain_hook, chain_priority;
  std::string addr_set, addr_type, addr_family, type, port, protocol, blocktype;
};

// Checks that one family's commands are the stock action's; `why` says
// what differs.
bool CheckFamily(CommandAction& shell, const std::string& family, FamilyView* v,
                 std::string* why) {
  auto expanded = [&](const char* tag) -> std::string {
    Result<std::string> r = shell.ExpandedCommand(tag, family);
    return r.ok() ? *r : std::string();
  };
  v->port = Trim(expanded("port"));
  v->protocol = Trim(expanded("protocol"));
  const std::string want_type = family == "inet6" ? "ipv6_addr" : "ipv4_addr";
  const std::string want_af = family == "inet6" ? "ip6" : "ip";

  // actionban / actionunban: nft add|delete element TF T SET { <ip> }.
  auto element_cmd = [&](const char* tag, const char* verb) -> std::vector<std::string> {
    std::vector<std::string> w = Words(expanded(tag));
    if (w.size() != 9 || !IsNft(w[0]) || w[1] != verb || w[2] != "element" || w[6] != "{" ||
        w[7] != "<ip>" || w[8] != "}") {
      *why = std::string(tag) + " is not the stock `nft " + verb + " element` command";
      return {};
    }
    return w;
  };
  std::vector<std::string> ban = element_cmd("actionban", "add");
  if (ban.empty()) return false;
  std::vector<std::string> unban = element_cmd("actionunban", "delete");
  if (unban.empty()) return false;
  if (!std::equal(ban.begin() + 3, ban.end(), unban.begin() + 3)) {
    *why = "actionban and actionunban name different sets";
    return false;
  }
  v->table_family = ban[3];
  v->table = ban[4];
  v->addr_set = ban[5];
  if (v->table_family != "inet" && v->table_family != want_af) {
    *why = "table family '" + v->table_family + "' is not inet or " + want_af;
    return false;
  }

  // actionstart: the table, the chain, the set, and rules whose match is
  // one the native action builds and nothing more.
  bool table = false, chain = false, set = false;
  int rules = 0;
  for (const std::string& line : Lines(expanded("actionstart"))) {
    std::vector<std::string> w = Words(line);
    size_t at = 0;
    while (at < w.size() && !IsNft(w[at])) ++at;
    if (at >= w.size()) continue;
    ++at;
    if (at < w.size() && w[at] == "--") ++at;
    if (StartsWith(w, {"add", "table", v->table_family, v->table}, at) && w.size() == at + 4) {
      table = true;
    } else if (StartsWith(w, {"add", "chain", v->table_family, v->table}, at) &&
               w.size() == at + 13 && StartsWith(w, {"{", "type"}, at + 5) &&
               w[at + 8] == "hook" && w[at + 10] == "priority" && w[at + 12] == "}") {
      chain = true;
      v->chain = w[at + 4];
      v->chain_type = w[at + 7];
      v->chain_hook = w[at + 9];
      v->chain_priority = w[at + 11];
    } else if (StartsWith(w, {"add", "set", v->table_family, v->table, v->addr_set, "{", "type"},
                          at) &&
               w.size() == at + 9 && w[at + 8] == "}") {
      set = true;
      v->addr_type = w[at + 7];
    } else if (StartsWith(w, {"add", "rule", v->table_family, v->table}, at) && chain &&
               w.size() > at + 4 && w[at + 4] == v->chain) {
      ++rules;
      // The match: the words before "<ip|ip6> saddr @<addr_set>".
      const size_t m = at + 5;
      size_t s = m;
      while (s + 2 < w.size() && !(w[s + 1] == "saddr" && w[s + 2] == "@" + v->addr_set)) ++s;
      if (s + 2 >= w.size()) {
        *why = "actionstart's rule does not read @" + v->addr_set;
        return false;
      }
      v->addr_family = w[s];
      std::string block;
      for (size_t i = s + 3; i < w.size(); ++i) block += (block.empty() ? "" : " ") + w[i];
      if (!v->blocktype.empty() && v->blocktype != block) {
        *why = "actionstart's rules end differently";
        return false;
      }
      v->blocktype = block;
      std::string type = "custom";
      for (size_t i = m; i < s; ++i) {
        const std::string& x = w[i];
        if (x == "l4proto") type = "allports";
        if (x == "dport") type = "multiport";
        static const std::set<std::string> plumbing = {
            "meta", "l4proto", "dport", "{", "}", "$proto", "$ports", "$(echo", "|", "sed",
            "tr", "s/:/-/g)", ":", "-)"};
        if (plumbing.count(x) || x == v->port || x == v->protocol) continue;
        *why = "actionstart's rule has '" + x + "', which the native action does not build";
        return false;
      }
      if (!v->type.empty() && v->type != type) {
        *why = "actionstart's rules match differently";
        return false;
      }
      v->type = type;
    }
  }
  if (!table || !chain || !set || rules == 0) {
    *why = "actionstart does not add the table, chain, set and rule of the stock action";
    return false;
  }
  if (v->addr_type != want_type || v->addr_family != want_af) {
    *why = "the " + family + " set is '" + v->addr_type + "' read by '" + v->addr_family +
           " saddr', not " + want_type + " by " + want_af;
    return false;
  }
  return true;
}

}  // namespace

std::optional<NftStockAction> ReadStockNftAction(CommandAction& shell, std::string* reason) {
  std::string why;
  if (std::optional<std::string> native = shell.GetProperty("native"); native && IsFalse(*native)) {
    *reason = "native = " + *native;
    return std::nullopt;
  }
  const std::vector<std::string> families = shell.Families();
  if (families.empty() || families[0] != "inet4") {
    *reason = "it has no [Init?family=inet6] section";
    return std::nullopt;
  }
  NftStockAction out;
  out.start_on_demand = shell.start_on_demand();
  out.ipv6 = families.size() > 1;
  NftSpec& spec = out.spec;
  FamilyView v4;
  for (const std::string& family : families) {
    FamilyView v;
    if (!CheckFamily(shell, family, &v, &why)) {
      *reason = why;
      return std::nullopt;
    }
    if (family == "inet4") {
      v4 = v;
      spec.set_v4 = v.addr_set;
    } else {
      if (v.table != v4.table || v.table_family != v4.table_family || v.chain != v4.chain ||
          v.type != v4.type || v.port != v4.port || v.protocol != v4.protocol ||
          v.blocktype != v4.blocktype) {
        *reason = "its IPv4 and IPv6 settings differ in more than the set";
        return std::nullopt;
      }
      spec.set_v6 = v.addr_set;
    }
  }
  spec.table_family = v4.table_family;
  spec.table = v4.table;
  spec.chain = v4.chain;
  spec.chain_type = v4.chain_type;
  spec.chain_hook = v4.chain_hook;
  {
    const std::string& p = v4.chain_priority;
    char* end = nullptr;
    long prio = strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || prio < -2147483647 || prio > 2147483647) {
      *reason = "chain_priority '" + p + "' is not a number";
      return std::nullopt;
    }
    spec.chain_priority = static_cast<int>(prio);
  }
  if (spec.chain_type != "filter" ||
      (spec.chain_hook != "input" && spec.chain_hook != "forward" &&
       spec.chain_hook != "output" && spec.chain_hook != "prerouting" &&
       spec.chain_hook != "postrouting")) {
    *reason = "chain type/hook '" + spec.chain_type + "/" + spec.chain_hook +
              "' is not one the native action builds";
    return std::nullopt;
  }
  if (!ParseBlock(v4.blocktype, &spec.block, &why)) {
    *reason = why;
    return std::nullopt;
  }
  std::vector<uint8_t> protos;
  if (v4.type != "custom") {
    for (const std::string& p : SplitCommaList(v4.protocol)) {
      uint8_t n = 0;
      if (!ProtocolNumber(p, &n)) {
        *reason = "protocol '" + p + "' is not a known protocol";
        return std::nullopt;
      }
      protos.push_back(n);
    }
    if (protos.empty()) {
      *reason = "no protocol";
      return std::nullopt;
    }
  }
  if (v4.type == "allports") {
    spec.rules.push_back(NftRule{protos, {}});
  } else if (v4.type == "multiport") {
    std::vector<std::pair<uint16_t, uint16_t>> ports;
    if (!ParsePorts(v4.port, &ports, &why)) {
      *reason = why;
      return std::nullopt;
    }
    for (uint8_t p : protos) {
      if (p != IPPROTO_TCP && p != IPPROTO_UDP && p != IPPROTO_SCTP && p != IPPROTO_DCCP &&
          p != IPPROTO_UDPLITE) {
        *reason = "protocol " + std::to_string(p) + " has no ports";
        return std::nullopt;
      }
      spec.rules.push_back(NftRule{{p}, ports});
    }
  } else if (v4.type == "custom") {
    spec.rules.push_back(NftRule{});
  } else {
    *reason = "type '" + v4.type + "' is not allports, multiport or custom";
    return std::nullopt;
  }
  if (std::optional<std::string> t = shell.GetProperty("kernel_timeout")) {
    spec.element_timeouts = PyAsBool(*t);
  }
  return out;
}

namespace {

// A jail that bans networks needs interval sets.
NftStockAction WithNetworkBans(NftStockAction stock, bool network_bans) {
  stock.spec.intervals = stock.spec.intervals || network_bans;
  return stock;
}

}  // namespace

// The strand's side: the netlink connection and what this action put in the
// kernel. Touched only by jobs on the action's strand.
class NftAction::Worker {
 public:
  Worker(std::string jail, std::string name, NftStockAction stock)
      : jail_(std::move(jail)), name_(std::move(name)), stock_(std::move(stock)) {}

  // The reports of a batch's operations that are not plain successes
  // (errors, skips, notes), by index: a batch of 100k bans that all went in
  // makes no report until each is handed to its submitter.
  using Reports = std::map<size_t, ActionReport>;

  const std::string& jail() const { return jail_; }
  const std::string& name() const { return name_; }

  // A plain success of operation `p`.
  ActionReport OkReport(const Pending& p) const {
    ActionReport r;
    r.op = p.op;
    r.jail = jail_;
    r.action = name_;
    r.ip = p.ip;
    return r;
  }

  // The inline path (NftAction::SendTurn): `batch` holds only element
  // operations. Applies it as Process would and returns its reports, or
  // returns nullopt having changed nothing, here or in the kernel, when it
  // needs more than the element transaction: the socket opened, a family
  // started, or a set or rule that is not in order repaired (which puts
  // back every ban held). Process then does all of that on the strand.
  std::optional<Reports> ProcessSmall(std::vector<Pending>& batch) {
    if (!rules_) return std::nullopt;
    std::vector<size_t> run(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) run[i] = i;
    Reports reports;
    if (!ApplyRun(batch, run, reports, /*small=*/true)) return std::nullopt;
    return reports;
  }

  Reports Process(std::vector<Pending>& batch) {
    Reports reports;
    if (Status s = EnsureOpen(); !s.ok()) {
      for (size_t i = 0; i < batch.size(); ++i) ReportOf(batch, i, reports).status = s;
      return reports;
    }
    std::vector<size_t> run;  // consecutive element operations
    for (size_t i = 0; i < batch.size(); ++i) {
      switch (batch[i].op) {
        case ActionOp::kBan:
        case ActionOp::kReban:
        case ActionOp::kProlong:
        case ActionOp::kUnban:
          if (run.empty()) run.reserve(batch.size() - i);
          run.push_back(i);
          continue;
        default:
          break;
      }
      ApplyRun(batch, run, reports);
      run.clear();
      ActionReport& r = ReportOf(batch, i, reports);
      switch (batch[i].op) {
        case ActionOp::kStart:
          if (!stock_.start_on_demand) {
            for (NftFamily f : Families()) {
              Status s = StartFamily(f);
              if (!s.ok()) r.status = Status::Error("Error starting action " + jail_ + "/" + name_ + ": " + s.message());
            }
          } else {
            r.skipped = true;
          }
          break;
        case ActionOp::kStop:
          for (NftFamily f : Families()) {
            if (!started_.count(f)) continue;
            Status s = rules_->Stop(f);
            started_.erase(f);
            banned_[f].clear();
            networks_[f].clear();
            if (!s.ok()) r.status = Status::Error("Error stopping action " + jail_ + "/" + name_ + ": " + s.message());
          }
          break;
        case ActionOp::kFlush: {
          std::vector<NftRuleset::ElementOp> ops;
          for (auto& [f, addrs] : banned_) {
            for (const auto& [addr, held] : addrs) {
              if (!held.shadowed) ops.push_back({false, addr, 0});
            }
          }
          if (ops.empty()) {
            r.skipped = true;
            break;
          }
          Result<std::vector<NftRuleset::ElementError>> errs = rules_->Apply(ops);
          if (!errs.ok()) {
            r.status = errs.status();
            break;
          }
          for (const auto& e : *errs) {
            r.notes.push_back("nftables: flush: " + ops[e.index].addr.ToString() + ": " +
                              strerror(e.error));
          }
          for (auto& [f, addrs] : banned_) addrs.clear();
          for (auto& [f, nets] : networks_) nets.clear();
          break;
        }
        case ActionOp::kCheck:
          for (NftFamily f : Families()) {
            if (started_.count(f)) RepairIfBroken(f, &r);
          }
          break;
        case ActionOp::kReload:
        default:
          r.skipped = true;
          break;
      }
    }
    ApplyRun(batch, run, reports);
    return reports;
  }

 private:
  ActionReport& ReportOf(const std::vector<Pending>& batch, size_t i, Reports& reports) const {
    auto [it, fresh] = reports.try_emplace(i);
    if (fresh) it->second = OkReport(batch[i]);
    return it->second;
  }

  Status EnsureOpen() {
    if (rules_) return Status::Ok();
    Result<std::unique_ptr<NftRuleset>> r = NftRuleset::Open(stock_.spec);
    if (!r.ok()) return r.status();
    rules_ = std::move(*r);
    return Status::Ok();
  }

  std::vector<NftFamily> Families() const {
    if (stock_.ipv6) return {NftFamily::kIpv4, NftFamily::kIpv6};
    return {NftFamily::kIpv4};
  }

  Status StartFamily(NftFamily f) {
    Status s = rules_->Start(f);
    if (s.ok()) started_.insert(f);
    return s;
  }

  // A kernel timeout for an element whose deadline is `deadline` (0: none).
  static uint64_t TimeoutLeft(double deadline, double now) {
    return deadline > 0 ? static_cast<uint64_t>(std::max(1.0, std::ceil(deadline - now)) * 1000)
                        : 0;
  }

  // `net` is a network holding all of `addr` and more.
  static bool Covers(const IpAddr& net, const IpAddr& addr) {
    return net.plen() < addr.plen() && addr.IsInNet(net);
  }

  // A network of this action's in the kernel holds `addr`.
  bool CoveredInKernel(NftFamily f, const IpAddr& addr) {
    auto& held = banned_[f];
    for (const IpAddr& n : networks_[f]) {
      auto h = held.find(n);
      if (h != held.end() && !h->second.shadowed && Covers(n, addr)) return true;
    }
    return false;
  }

  const char* SetName(NftFamily f) const {
    return (f == NftFamily::kIpv4 ? stock_.spec.set_v4 : stock_.spec.set_v6).c_str();
  }

  std::string ElementText(bool add, NftFamily f, const std::string& ip) const {
    const NftSpec& s = stock_.spec;
    return std::string("nftables: ") + (add ? "add" : "delete") + " element " + s.table_family +
           " " + s.table + " " + SetName(f) + " { " + ip + " }";
  }

  // The set and rule are where they should be; if not (`nft flush ruleset`
  // ...), makes them again and puts back every address this action holds.
  // Returns false if the family is still broken.
  bool RepairIfBroken(NftFamily f, ActionReport* r) {
    Result<bool> ok = rules_->Check(f);
    if (ok.ok() && *ok) return true;
    r->notes.push_back("[" + jail_ + "] action '" + name_ + "': " + SetName(f) +
                       " or its rule is missing. Invariant check failed. Trying to restore a sane "
                       "environment");
    if (Status s = rules_->Start(f); !s.ok()) {
      r->notes.push_back("Unable to restore environment: " + s.message());
      return false;
    }
    std::vector<NftRuleset::ElementOp> ops;
    ops.reserve(banned_[f].size());
    const double now = SystemClock().Now();
    for (const auto& [addr, held] : banned_[f]) {
      if (!held.shadowed) ops.push_back({true, addr, TimeoutLeft(held.deadline, now)});
    }
    if (!ops.empty()) {
      Result<std::vector<NftRuleset::ElementError>> errs = rules_->Apply(ops);
      if (!errs.ok()) {
        r->notes.push_back("Unable to restore bans: " + errs.status().message());
        return false;
      }
      r->notes.push_back("[" + jail_ + "] action '" + name_ + "': restored " +
                         std::to_string(ops.size() - errs->size()) + " ban(s) in " + SetName(f));
    }
    return true;
  }

  // An element operation of a run: its Pending's index, family, and address.
  struct Item {
    size_t op_index;
    NftFamily family;
    bool add;
    IpAddr addr;
  };

  // Applies the element operations `run` of `batch`. With `small`, only
  // when every family it adds to is started and in order: otherwise returns
  // false before changing anything but `reports` (see ProcessSmall).
  bool ApplyRun(std::vector<Pending>& batch, const std::vector<size_t>& run, Reports& reports,
                bool small = false) {
    if (run.empty()) return true;
    std::vector<Item> items;
    items.reserve(run.size());
    std::set<NftFamily> adding;
    const double now = SystemClock().Now();
    for (size_t i : run) {
      const Pending& p = batch[i];
      IpAddr addr = IpAddr::FromText(p.ip);
      if (!addr.is_ip()) {
        ReportOf(batch, i, reports).status =
            Status::Error("nftables: '" + p.ip + "' is not an IP address or network");
        continue;
      }
      const NftFamily f = addr.is_ipv4() ? NftFamily::kIpv4 : NftFamily::kIpv6;
      if (!addr.is_single() && !stock_.spec.intervals) {
        // A set without flags interval takes no network; sending its first
        // address would ban one address and report the network banned.
        ReportOf(batch, i, reports).status = Status::Error(
            ElementText(p.op != ActionOp::kUnban, f, p.ip) + ": a network, but " + SetName(f) +
            " has no flags interval (the jail sets none of prefix4, prefix6, aggregate4, "
            "aggregate6)");
        continue;
      }
      if (f == NftFamily::kIpv6 && !stock_.ipv6) {
        ReportOf(batch, i, reports).skipped = true;
        continue;
      }
      const bool add = p.op != ActionOp::kUnban;
      // An unban behind a ban of the same run (the fleet's backlog: a ban
      // and its operator's unban) is not skipped although the family only
      // starts with this run.
      if (!add && !started_.count(f) && !adding.count(f)) {
        ReportOf(batch, i, reports).skipped = true;  // nothing banned in this family
        continue;
      }
      items.push_back(Item{i, f, add, std::move(addr)});
      if (add) adding.insert(f);
    }
    // Families banned in for the first time start now; those already
    // started are checked, since someone may have removed our set or rule.
    // A repair of one family (after `nft flush ruleset`, say) repairs the
    // other started family too, so every ban in force is back at once.
    // What a repair says goes to the report of the run's first ban.
    std::set<NftFamily> broken;
    ActionReport repair;
    bool repaired = false;
    if (small) {
      // The same check RepairIfBroken makes, without its repair.
      for (NftFamily f : adding) {
        if (!started_.count(f)) return false;
        Result<bool> ok = rules_->Check(f);
        if (!ok.ok() || !*ok) return false;
      }
    } else {
      for (NftFamily f : adding) {
        if (!started_.count(f)) {
          if (!StartFamily(f).ok()) broken.insert(f);
          continue;
        }
        const size_t notes = repair.notes.size();
        if (!RepairIfBroken(f, &repair)) broken.insert(f);
        repaired = repaired || repair.notes.size() != notes;
      }
    }
    if (repaired) {
      for (NftFamily f : Families()) {
        if (started_.count(f) && !adding.count(f) && !RepairIfBroken(f, &repair)) {
          broken.insert(f);
        }
      }
    }
    if (!repair.notes.empty()) {
      for (const Item& it : items) {
        if (!it.add) continue;
        std::vector<std::string>& notes = ReportOf(batch, it.op_index, reports).notes;
        notes.insert(notes.end(), std::make_move_iterator(repair.notes.begin()),
                     std::make_move_iterator(repair.notes.end()));
        break;
      }
    }
    // The element operations, each owned by an item: its own (primary) or
    // one it causes in an interval set (a covered element taken out for a
    // network, or put back when the network goes).
    struct Owned {
      size_t item;
      bool primary;
      bool existed;  // primary add: the element was held before (a refresh)
    };
    std::vector<NftRuleset::ElementOp> ops;
    std::vector<Owned> owner;
    ops.reserve(items.size());
    owner.reserve(items.size());
    const bool intervals = stock_.spec.intervals;
    for (size_t k : Order(items)) {
      Item& it = items[k];
      if (broken.count(it.family)) {
        ReportOf(batch, it.op_index, reports).status =
            Status::Error(ElementText(it.add, it.family, it.addr.ToString()) +
                          ": the action's set could not be created");
        continue;
      }
      uint64_t timeout_ms = 0;
      const Pending& p = batch[it.op_index];
      if (it.add && stock_.spec.element_timeouts && p.bantime > 0) {
        const double left = p.time + static_cast<double>(p.bantime) - now;
        timeout_ms = static_cast<uint64_t>(std::max(1.0, std::ceil(left)) * 1000);
      }
      if (!intervals) {
        ops.push_back({it.add, it.addr, timeout_ms});
        owner.push_back({k, true, false});
        continue;
      }
      // Interval sets: the held elements are kept free of overlaps (which
      // the kernel refuses), whatever order the jail's unbans of covered
      // addresses and the covering network's ban come in.
      auto& held = banned_[it.family];
      auto& nets = networks_[it.family];
      auto h = held.find(it.addr);
      if (it.add) {
        const double deadline = timeout_ms ? now + static_cast<double>(timeout_ms) / 1000 : 0;
        if (h != held.end() && h->second.shadowed) {
          h->second.deadline = deadline;
          continue;
        }
        if (h == held.end() && CoveredInKernel(it.family, it.addr)) {
          held.emplace(it.addr, Held{deadline, true});
          if (!it.addr.is_single()) nets.insert(it.addr);
          continue;
        }
        const bool existed = h != held.end();
        if (!existed && !it.addr.is_single()) {
          for (auto& [a, st] : held) {
            if (st.shadowed || !Covers(it.addr, a)) continue;
            ops.push_back({false, a, 0});
            owner.push_back({k, false, false});
            st.shadowed = true;
          }
        }
        ops.push_back({true, it.addr, timeout_ms});
        owner.push_back({k, true, existed});
        held.insert_or_assign(it.addr, Held{deadline, false});
        if (!it.addr.is_single()) nets.insert(it.addr);
        continue;
      }
      if (h != held.end() && h->second.shadowed) {  // not in the kernel
        held.erase(h);
        nets.erase(it.addr);
        continue;
      }
      ops.push_back({false, it.addr, 0});
      owner.push_back({k, true, false});
      if (h == held.end()) continue;
      held.erase(h);
      if (it.addr.is_single()) continue;
      nets.erase(it.addr);
      // What the network shadowed goes back in, widest first, unless another
      // network of ours still holds it.
      std::vector<IpAddr> back;
      for (const auto& [a, st] : held) {
        if (st.shadowed && Covers(it.addr, a)) back.push_back(a);
      }
      std::sort(back.begin(), back.end(),
                [](const IpAddr& x, const IpAddr& y) { return x.plen() < y.plen(); });
      for (const IpAddr& a : back) {
        if (CoveredInKernel(it.family, a)) continue;
        Held& st = held[a];
        ops.push_back({true, a, TimeoutLeft(st.deadline, now)});
        owner.push_back({k, false, false});
        st.shadowed = false;
      }
    }
    if (ops.empty()) return true;
    const auto started = std::chrono::steady_clock::now();
    Result<std::vector<NftRuleset::ElementError>> errs = rules_->Apply(ops);
    transactions_.push_back(Transaction{
        ops.size(),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
        errs.ok()});
    if (!errs.ok()) {
      for (const Owned& o : owner) {
        if (o.primary) ReportOf(batch, items[o.item].op_index, reports).status = errs.status();
      }
      return true;
    }
    std::vector<bool> failed(ops.size(), false);
    for (const NftRuleset::ElementError& e : *errs) {
      if (e.index < ops.size()) failed[e.index] = true;
    }
    // Covered elements taken out for a network the kernel then refused go
    // back in.
    std::vector<NftRuleset::ElementOp> undo;
    for (size_t j = 0; j < ops.size(); ++j) {
      const Owned& o = owner[j];
      Item& it = items[o.item];
      if (!failed[j]) {
        if (!intervals && o.primary) {
          auto& held = banned_[it.family];
          if (it.add) {
            if (held.empty()) held.reserve(ops.size());
            const double deadline =
                ops[j].timeout_ms ? now + static_cast<double>(ops[j].timeout_ms) / 1000 : 0;
            held.insert_or_assign(it.addr, Held{deadline, false});
          } else {
            held.erase(it.addr);
          }
        }
        continue;
      }
      int err = 0;
      for (const NftRuleset::ElementError& e : *errs) {
        if (e.index == j) err = e.error;
      }
      ActionReport& r = ReportOf(batch, it.op_index, reports);
      if (!o.primary) {
        // A covered element already gone (ENOENT) is what was wanted.
        if (ops[j].add || err != ENOENT) {
          r.warnings.push_back(ElementText(ops[j].add, it.family, ops[j].addr.ToString()) + ": " +
                               strerror(err));
        }
        if (ops[j].add && intervals) banned_[it.family][ops[j].addr].shadowed = true;
        continue;
      }
      r.status = Status::Error(ElementText(it.add, it.family, it.addr.ToString()) + ": " +
                               strerror(err));
      if (!intervals) {
        if (!it.add) banned_[it.family].erase(it.addr);
        continue;
      }
      if (!it.add || o.existed) continue;
      banned_[it.family].erase(it.addr);
      networks_[it.family].erase(it.addr);
      for (size_t m = 0; m < j; ++m) {
        if (owner[m].item != o.item || owner[m].primary || ops[m].add || failed[m]) continue;
        banned_[it.family][ops[m].addr].shadowed = false;
        undo.push_back({true, ops[m].addr, TimeoutLeft(banned_[it.family][ops[m].addr].deadline, now)});
      }
    }
    if (!undo.empty()) {
      Result<std::vector<NftRuleset::ElementError>> again = rules_->Apply(undo);
      if (!again.ok() || !again->empty()) {
        std::string why = again.ok() ? strerror((*again)[0].error) : again.status().message();
        for (const Owned& o : owner) {
          if (!o.primary) continue;
          ReportOf(batch, items[o.item].op_index, reports)
              .warnings.push_back("nftables: putting back covered elements: " + why);
          break;
        }
      }
    }
    return true;
  }

  // The order the items of a run reach the kernel: theirs, except that the
  // unban of an address inside a network banned earlier in the run moves
  // before that ban (an interval set refuses the overlap), unless the run
  // also bans that address in between.
  std::vector<size_t> Order(const std::vector<Item>& items) const {
    std::vector<size_t> order;
    order.reserve(items.size());
    if (!stock_.spec.intervals) {
      for (size_t k = 0; k < items.size(); ++k) order.push_back(k);
      return order;
    }
    std::vector<bool> taken(items.size(), false);
    for (size_t k = 0; k < items.size(); ++k) {
      if (taken[k]) continue;
      const Item& net = items[k];
      if (net.add && !net.addr.is_single()) {
        for (size_t j = k + 1; j < items.size(); ++j) {
          const Item& x = items[j];
          if (x.add && x.addr == net.addr) break;  // the network again: order matters from here
          if (taken[j] || x.add || !Covers(net.addr, x.addr)) continue;
          bool rebanned = false;
          for (size_t m = k + 1; m < j && !rebanned; ++m) {
            rebanned = items[m].add && items[m].addr == x.addr;
          }
          if (rebanned) continue;
          order.push_back(j);
          taken[j] = true;
        }
      }
      order.push_back(k);
      taken[k] = true;
    }
    return order;
  }

  const std::string jail_, name_;
  const NftStockAction stock_;
  std::unique_ptr<NftRuleset> rules_;

 public:
  // The element transactions of the batches processed since the last take
  // (ActionEnv::on_nft_transaction).
  struct Transaction {
    size_t elements;
    double seconds;
    bool ok;
  };
  std::vector<Transaction> TakeTransactions() { return std::exchange(transactions_, {}); }

 private:
  std::vector<Transaction> transactions_;
  std::set<NftFamily> started_;
  // The addresses this action put in each family's set.
  // With element_timeouts, each address's kernel deadline (epoch seconds;
  // 0 = none), so a repair puts it back with the time it has left.
  struct Held {
    double deadline = 0;
    // Inside a network also held, so not in the kernel's interval set (which
    // refuses overlaps): it goes back in when that network is unbanned.
    bool shadowed = false;
  };
  std::map<NftFamily, std::unordered_map<IpAddr, Held>> banned_;
  // The networks among banned_'s keys (interval sets only; usually few).
  std::map<NftFamily, std::unordered_set<IpAddr>> networks_;
};

NftAction::NftAction(std::string jail, std::string name, OrderedMap<std::string> options,
                     NftStockAction stock, ActionEnv env)
    : jail_(std::move(jail)),
      name_(std::move(name)),
      options_(std::move(options)),
      stock_(WithNetworkBans(std::move(stock), env.network_bans)),
      env_(env) {
  strand_ = env_.pool->NewStrand();
  worker_ = std::make_shared<Worker>(jail_, name_, stock_);
}

NftAction::~NftAction() {
  // Not inline: reports handed over from a destructor would reach a caller
  // in the middle of tearing down; as queued completions they run (or are
  // dropped with the pool) like those of every earlier turn.
  SendTurn(/*may_inline=*/false);
  env_.pool->WaitIdle(strand_);
}

std::optional<std::string> NftAction::GetProperty(const std::string& key) const {
  if (const std::string* v = options_.Find(key)) return *v;
  return std::nullopt;
}

void NftAction::SetProperty(const std::string& key, const std::string& value) {
  options_.Set(key, value);
}

void NftAction::Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) {
  pending_.push_back(Pending{op, std::move(info.ip), info.time, info.bantime, std::move(done)});
}

namespace {

bool IsElementOp(ActionOp op) {
  return op == ActionOp::kBan || op == ActionOp::kReban || op == ActionOp::kProlong ||
         op == ActionOp::kUnban;
}

}  // namespace

void NftAction::EndTurn() {
  // A report handed over inline may submit again (to this action too):
  // that is part of this turn, not left for one that may not come soon.
  while (!pending_.empty()) SendTurn(/*may_inline=*/true);
}

void NftAction::SendTurn(bool may_inline) {
  if (pending_.empty()) return;
  std::vector<Pending> batch = std::move(pending_);
  pending_.clear();
  // Hands the reports of a turn's operations to their submitters, in order
  // (loop thread).
  auto report = [](Worker& w, std::vector<Pending>& ops, Worker::Reports& got,
                   const std::vector<Worker::Transaction>& txs,
                   const decltype(ActionEnv::on_nft_transaction)& observer) {
    if (observer) {
      for (const Worker::Transaction& t : txs) {
        observer(w.jail(), w.name(), t.elements, t.seconds, t.ok);
      }
    }
    auto next = got.begin();
    for (size_t i = 0; i < ops.size(); ++i) {
      Pending& p = ops[i];
      const bool special = next != got.end() && next->first == i;
      if (p.done) p.done(special ? std::move(next->second) : w.OkReport(p));
      if (special) ++next;
    }
  };
  if (may_inline && *unreported_ == 0 && batch.size() <= kInlineMaxOps &&
      std::all_of(batch.begin(), batch.end(), [](const Pending& p) { return IsElementOp(p.op); })) {
    std::optional<Worker::Reports> reports;
    std::vector<Worker::Transaction> transactions;
    // Idle by construction (every turn posted has reported), but the pool
    // is the one that knows: on false nothing ran and the turn is posted.
    const bool ran = env_.pool->RunIfIdle(strand_, [&] {
      reports = worker_->ProcessSmall(batch);
      transactions = worker_->TakeTransactions();
    });
    if (ran && reports) {
      report(*worker_, batch, *reports, transactions, env_.on_nft_transaction);
      return;
    }
  }
  auto posted = std::make_shared<std::vector<Pending>>(std::move(batch));
  ++*unreported_;
  env_.pool->Post(strand_, [worker = worker_, posted, unreported = unreported_, report,
                            observer = env_.on_nft_transaction]() -> WorkerPool::Completion {
    Worker::Reports got = worker->Process(*posted);
    std::vector<Worker::Transaction> txs = worker->TakeTransactions();
    return [worker, posted, unreported, report, got = std::move(got), txs = std::move(txs),
            observer = std::move(observer)]() mutable {
      --*unreported;
      report(*worker, *posted, got, txs, observer);
    };
  });
}

}  // namespace bantam
