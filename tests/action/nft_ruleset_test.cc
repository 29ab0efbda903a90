// NftRuleset against the real kernel, each test in a network namespace of its
// own (never the host's ruleset), compared with what the `nft` shell commands
// of fail2ban's action.d/nftables.conf make. A binary of its own
// (bantam_nft_tests), because its main() moves the process out of the host's
// network namespace first.
#include "bantam/nft_ruleset.h"

#include <arpa/inet.h>  // before the linux/ headers, which would redefine in_addr
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "../testing/require.h"

namespace bantam {
namespace {

bool g_can_unshare = false;

// Runs `nft <args>` (args passed to sh, so quote them) in the calling
// thread's network namespace; *rc gets its exit status.
std::string Nft(const std::string& args, int* rc = nullptr) {
  std::string out;
  FILE* p = popen(("nft " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (rc != nullptr) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Runs the commands the way the shell action does, each its own nft command
// (its own transaction), but in one `nft -i` process: starting nft for each
// would make this binary slow. Returns nft's output: empty unless one failed.
std::string NftCommands(const std::vector<std::string>& cmds) {
  char path[] = "/tmp/bantam-nft-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  std::string text;
  for (const std::string& c : cmds) text += c + "\n";
  bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  std::string out = written ? Nft(std::string("-i < ") + path) : "write failed";
  unlink(path);
  return out;
}

// `nft list` text with what may differ between two equal rulesets dropped:
// the order of set elements (hash order) and how long a timeout has left.
std::string Normalize(const std::string& text) {
  std::string s = std::regex_replace(text, std::regex(" expires [0-9hmsd]+"), "");
  // `elements = { a, b,\n c }` -> sorted one line.
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t start = s.find("elements = {", pos);
    if (start == std::string::npos) break;
    size_t end = s.find('}', start);
    out += s.substr(pos, start - pos);
    std::string body = s.substr(start + 12, end - start - 12);
    std::vector<std::string> items;
    std::stringstream ss(body);
    std::string item;
    while (std::getline(ss, item, ',')) {
      item.erase(0, item.find_first_not_of(" \t\n"));
      item.erase(item.find_last_not_of(" \t\n") + 1);
      if (!item.empty()) items.push_back(item);
    }
    std::sort(items.begin(), items.end());
    out += "elements = {";
    for (const std::string& i : items) out += " " + i + ",";
    out += " }";
    pos = end + 1;
  }
  out += s.substr(pos);
  // --debug=netlink: runs of "\telement ..." lines, sorted.
  std::stringstream in(out);
  std::string line, result;
  std::vector<std::string> run;
  auto flush = [&] {
    std::sort(run.begin(), run.end());
    for (const std::string& l : run) result += l + "\n";
    run.clear();
  };
  while (std::getline(in, line)) {
    if (line.rfind("\telement ", 0) == 0) {
      run.push_back(line);
    } else {
      flush();
      result += line + "\n";
    }
  }
  flush();
  return result;
}

// Every set in the namespace as the kernel holds it, attributes nft does not
// print included (flags, key type, size, the userdata nft reads back).
std::string SetsDigest() {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == nullptr || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) return "no socket";
  std::vector<char> buf(1 << 16);
  const uint32_t seq = 1;
  nlmsghdr* nlh =
      nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETSET, NFPROTO_UNSPEC, NLM_F_DUMP, seq);
  mnl_socket_sendto(nl, nlh, nlh->nlmsg_len);
  std::vector<std::string> lines;
  auto cb = [](const nlmsghdr* m, void* data) -> int {
    auto* out = static_cast<std::vector<std::string>*>(data);
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_nlmsg_parse(m, s);
    std::string line = std::to_string(nftnl_set_get_u32(s, NFTNL_SET_FAMILY)) + " " +
                       nftnl_set_get_str(s, NFTNL_SET_TABLE) + " " +
                       nftnl_set_get_str(s, NFTNL_SET_NAME) +
                       " flags=" + std::to_string(nftnl_set_get_u32(s, NFTNL_SET_FLAGS)) +
                       " key=" + std::to_string(nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE)) + "/" +
                       std::to_string(nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN));
    if (nftnl_set_is_set(s, NFTNL_SET_DESC_SIZE)) {
      line += " size=" + std::to_string(nftnl_set_get_u32(s, NFTNL_SET_DESC_SIZE));
    }
    uint32_t len = 0;
    const auto* ud = static_cast<const uint8_t*>(nftnl_set_get_data(s, NFTNL_SET_USERDATA, &len));
    line += " udata=";
    char hex[4];
    for (uint32_t i = 0; ud != nullptr && i < len; ++i) {
      snprintf(hex, sizeof(hex), "%02x", ud[i]);
      line += hex;
    }
    nftnl_set_free(s);
    out->push_back(line);
    return MNL_CB_OK;
  };
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n <= 0) break;
    if (mnl_cb_run(buf.data(), n, seq, mnl_socket_get_portid(nl), cb, &lines) <= MNL_CB_STOP) break;
  }
  mnl_socket_close(nl);
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

IpAddr Ip(const char* text) { return IpAddr::Parse(text).value(); }

NftSpec JailSpec(const std::string& name) {
  NftSpec spec;
  spec.set_v4 = "addr-set-" + name;
  spec.set_v6 = "addr6-set-" + name;
  spec.rules = {NftRule{{IPPROTO_TCP}, {}}};
  return spec;
}

std::unique_ptr<NftRuleset> OpenOrDie(const NftSpec& spec) {
  auto r = NftRuleset::Open(spec);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : nullptr;
}

// Each test runs in a new, empty network namespace.
class NftRulesetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BANTAM_REQUIRE_ROOT(g_can_unshare, "unshare(CLONE_NEWNET) for a network namespace of its own");
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << strerror(errno);
    int rc = 0;
    Nft("--version", &rc);
    has_nft_ = rc == 0;
  }
  bool has_nft_ = false;
};

// One spec and the shell action's text for it.
struct EqualityCase {
  std::string name;
  NftSpec spec;
  std::vector<std::string> matches;  // <match> of each rule, as the shell writes it
  std::string blocktype;
  bool v6 = true;
  std::string addr_timeout;  // " timeout 1h" in the shell's add element
};

std::vector<EqualityCase> EqualityCases() {
  std::vector<EqualityCase> cases;
  auto base = [](const std::string& name) {
    EqualityCase c;
    c.name = name;
    c.spec = JailSpec("x");
    c.blocktype = "reject";
    return c;
  };
  {
    EqualityCase c = base("allports_tcp");
    c.spec.rules = {NftRule{{IPPROTO_TCP}, {}}};
    c.matches = {"meta l4proto { tcp }"};
    cases.push_back(c);
  }
  {
    EqualityCase c = base("allports_tcp_udp");
    c.spec.rules = {NftRule{{IPPROTO_TCP, IPPROTO_UDP}, {}}};
    c.matches = {"meta l4proto { tcp,udp }"};
    cases.push_back(c);
  }
  {
    EqualityCase c = base("multiport_tcp_udp");
    c.spec.rules = {NftRule{{IPPROTO_TCP}, {{5060, 5060}, {5061, 5061}}},
                    NftRule{{IPPROTO_UDP}, {{5060, 5060}, {5061, 5061}}}};
    c.matches = {"tcp dport { 5060,5061 }", "udp dport { 5060,5061 }"};
    cases.push_back(c);
  }
  {
    EqualityCase c = base("multiport_range_and_service");
    c.spec.rules = {
        NftRule{{IPPROTO_TCP}, {{10000, 20000}, {5060, 5060}}}, NftRule{{IPPROTO_UDP}, {{22, 22}}},
        NftRule{{IPPROTO_SCTP}, {{1, 3}, {4, 6}, {65535, 65535}}},
        NftRule{{IPPROTO_TCP}, {{0, 10}, {8000, 8080}}}, NftRule{{IPPROTO_TCP}, {{100, 200}}}};
    c.matches = {"tcp dport { 10000-20000,sip }", "udp dport { 22 }",
                 "sctp dport { 1-3,4-6,65535 }", "tcp dport { 0-10,8000-8080 }",
                 "tcp dport { 100-200 }"};
    cases.push_back(c);
  }
  {
    EqualityCase c = base("custom_drop");
    c.spec.rules = {NftRule{}};
    c.spec.block.verdict = NftBlock::Verdict::kDrop;
    c.matches = {""};
    c.blocktype = "drop";
    cases.push_back(c);
  }
  {
    EqualityCase c = base("reject_icmp_host_prohibited");
    c.spec.block = {NftBlock::Verdict::kReject, NFT_REJECT_ICMP_UNREACH, 10, NftFamily::kIpv4};
    c.matches = {"meta l4proto { tcp }"};
    c.blocktype = "reject with icmp type host-prohibited";
    c.v6 = false;  // nft refuses it for ip6 ("conflicting protocols")
    cases.push_back(c);
  }
  {
    EqualityCase c = base("reject_icmpx_admin_prohibited");
    c.spec.rules = {NftRule{{IPPROTO_TCP, IPPROTO_UDP}, {}}};
    c.spec.block = {NftBlock::Verdict::kReject, NFT_REJECT_ICMPX_UNREACH, 3, std::nullopt};
    c.matches = {"meta l4proto { tcp,udp }"};
    c.blocktype = "reject with icmpx type admin-prohibited";
    cases.push_back(c);
  }
  {
    EqualityCase c = base("reject_tcp_reset_custom");
    c.spec.rules = {NftRule{}};
    c.spec.block = {NftBlock::Verdict::kReject, NFT_REJECT_TCP_RST, 0, std::nullopt};
    c.matches = {""};
    c.blocktype = "reject with tcp reset";
    cases.push_back(c);
  }
  {
    EqualityCase c = base("table_family_ip");
    c.spec.table_family = "ip";
    c.spec.rules = {NftRule{{IPPROTO_TCP}, {{22, 22}, {80, 80}}}};
    c.matches = {"tcp dport { 22,80 }"};
    c.v6 = false;
    cases.push_back(c);
  }
  {
    EqualityCase c = base("table_family_ip6_prerouting");
    c.spec.table_family = "ip6";
    c.spec.chain_hook = "prerouting";
    c.spec.chain_priority = -150;
    c.spec.rules = {NftRule{{IPPROTO_TCP, IPPROTO_UDP}, {}}};
    c.matches = {"meta l4proto { tcp,udp }"};
    c.v6 = true;
    cases.push_back(c);
  }
  {
    EqualityCase c = base("element_timeouts");
    c.spec.element_timeouts = true;
    c.matches = {"meta l4proto { tcp }"};
    c.addr_timeout = " timeout 1h";
    cases.push_back(c);
  }
  return cases;
}

const char* const kV4[] = {"192.0.2.1", "192.0.2.77", "198.51.100.3", "203.0.113.200"};
const char* const kV6[] = {"2001:db8::1", "2001:db8::beef", "2001:db8:1::7"};

struct Listing {
  std::string text;
  std::string netlink;
  std::string sets;
};

Listing ListAll() {
  return {Normalize(Nft("list ruleset")), Normalize(Nft("--debug=netlink list ruleset")),
          SetsDigest()};
}

TEST_F(NftRulesetTest, RulesetEqualsShellActions) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  for (const EqualityCase& c : EqualityCases()) {
    SCOPED_TRACE(c.name);
    const bool ip_table = c.spec.table_family == "ip";
    const bool ip6_table = c.spec.table_family == "ip6";
    std::vector<NftFamily> families;
    if (!ip6_table) families.push_back(NftFamily::kIpv4);
    if (c.v6 && !ip_table) families.push_back(NftFamily::kIpv6);
    const uint64_t timeout = c.addr_timeout.empty() ? 0 : 3600 * 1000;

    // Namespace A: NftRuleset.
    ASSERT_EQ(unshare(CLONE_NEWNET), 0);
    auto nft = OpenOrDie(c.spec);
    ASSERT_NE(nft, nullptr);
    std::vector<NftRuleset::ElementOp> ops;
    for (NftFamily f : families) {
      Status s = nft->Start(f);
      ASSERT_TRUE(s.ok()) << s.message();
      if (f == NftFamily::kIpv4) {
        for (const char* a : kV4) ops.push_back({true, Ip(a), timeout});
      } else {
        for (const char* a : kV6) ops.push_back({true, Ip(a), timeout});
      }
    }
    auto applied = nft->Apply(ops);
    ASSERT_TRUE(applied.ok()) << applied.status().message();
    EXPECT_TRUE(applied->empty());
    nft.reset();
    Listing ours = ListAll();

    // Namespace B: the shell action's commands.
    ASSERT_EQ(unshare(CLONE_NEWNET), 0);
    const std::string tf = c.spec.table_family + " " + c.spec.table;
    std::vector<std::string> cmds = {
        "add table " + tf, "add chain " + tf + " " + c.spec.chain + " { type " + c.spec.chain_type +
                               " hook " + c.spec.chain_hook + " priority " +
                               std::to_string(c.spec.chain_priority) + " ; }"};
    for (NftFamily f : families) {
      const bool v4 = f == NftFamily::kIpv4;
      cmds.push_back("add set " + tf + " " + c.spec.set(f) + " { type " +
                     (v4 ? "ipv4_addr" : "ipv6_addr") +
                     (c.spec.element_timeouts ? "; flags timeout" : "") + "; }");
      for (const std::string& m : c.matches) {
        cmds.push_back("add rule " + tf + " " + c.spec.chain + " " + m + " " + (v4 ? "ip" : "ip6") +
                       " saddr @" + c.spec.set(f) + " " + c.blocktype);
      }
    }
    // actionban once per address; one command for all of a set's addresses
    // makes the same elements.
    for (NftFamily f : families) {
      std::string elements;
      for (const char* a : f == NftFamily::kIpv4
                               ? std::vector<const char*>(std::begin(kV4), std::end(kV4))
                               : std::vector<const char*>(std::begin(kV6), std::end(kV6))) {
        elements += std::string(elements.empty() ? "" : ", ") + a + c.addr_timeout;
      }
      cmds.push_back("add element " + tf + " " + c.spec.set(f) + " { " + elements + " }");
    }
    std::string out = NftCommands(cmds);
    ASSERT_EQ(out, "") << "nft -i failed";
    Listing theirs = ListAll();

    EXPECT_EQ(ours.text, theirs.text);
    EXPECT_EQ(ours.netlink, theirs.netlink);
    EXPECT_EQ(ours.sets, theirs.sets);
    EXPECT_NE(ours.text.find("elements = {"), std::string::npos) << ours.text;
  }
}

TEST_F(NftRulesetTest, RefusesWhatNftRefusesBeforeSendingAnything) {
  NftSpec spec = JailSpec("x");
  spec.block = {NftBlock::Verdict::kReject, NFT_REJECT_ICMP_UNREACH, 10, NftFamily::kIpv4};
  auto nft = OpenOrDie(spec);
  ASSERT_NE(nft, nullptr);
  Status s = nft->Start(NftFamily::kIpv6);
  EXPECT_EQ(s.message(),
            "nftables: add rule inet f2b-table f2b-chain (ip6 saddr @addr6-set-x): conflicting "
            "protocols specified: ip vs ip6");
  auto checked = nft->Check(NftFamily::kIpv6);
  ASSERT_TRUE(checked.ok());
  EXPECT_FALSE(*checked);

  spec = JailSpec("x");
  spec.table_family = "ip";
  spec.block = {NftBlock::Verdict::kReject, NFT_REJECT_ICMPX_UNREACH, 3, std::nullopt};
  nft = OpenOrDie(spec);
  EXPECT_EQ(nft->Start(NftFamily::kIpv4).message(),
            "nftables: add rule ip f2b-table f2b-chain (ip saddr @addr-set-x): abstracted ICMP "
            "unreachable not supported");
  spec.table_family = "arp";
  EXPECT_EQ(NftRuleset::Open(spec).status().message(),
            "nftables: table family 'arp' is not inet, ip or ip6");
}

TEST_F(NftRulesetTest, KernelErrorsCarryTheCommand) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  // A set of ours with another key type is there already.
  Nft("add table inet f2b-table");
  Nft("add set inet f2b-table addr-set-x '{ type ipv6_addr; }'");
  auto nft = OpenOrDie(JailSpec("x"));
  Status s = nft->Start(NftFamily::kIpv4);
  EXPECT_EQ(s.message().rfind("nftables: add set inet f2b-table addr-set-x: ", 0), 0u)
      << s.message();
  // And nothing of the transaction stayed.
  EXPECT_EQ(Nft("list chains").find("f2b-chain"), std::string::npos);
}

TEST_F(NftRulesetTest, ApplyReportsRefusedElementsAndCommitsTheRest) {
  auto nft = OpenOrDie(JailSpec("x"));
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(nft->Start(NftFamily::kIpv6).ok());

  auto r = nft->Apply({{true, Ip("192.0.2.1")}, {true, Ip("2001:db8::1")}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->empty());
  auto v4 = nft->Elements(NftFamily::kIpv4);
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(*v4, std::vector<IpAddr>{Ip("192.0.2.1")});

  // Deleting a missing element fails alone; the ops around it commit.
  r = nft->Apply({{true, Ip("192.0.2.2")},
                  {false, Ip("192.0.2.1")},
                  {false, Ip("192.0.2.99")},
                  {true, Ip("192.0.2.3")},
                  {false, Ip("2001:db8::2")},
                  {false, Ip("2001:db8::1")}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].index, 2u);
  EXPECT_EQ((*r)[0].error, ENOENT);
  EXPECT_EQ((*r)[1].index, 4u);
  EXPECT_EQ((*r)[1].error, ENOENT);
  v4 = nft->Elements(NftFamily::kIpv4);
  ASSERT_TRUE(v4.ok());
  std::set<std::string> got;
  for (const IpAddr& a : *v4) got.insert(a.ToString());
  EXPECT_EQ(got, (std::set<std::string>{"192.0.2.2", "192.0.2.3"}));
  auto v6 = nft->Elements(NftFamily::kIpv6);
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->empty());

  // Not a single address: refused without asking the kernel.
  r = nft->Apply({{true, Ip("192.0.2.0/24")}, {true, Ip("192.0.2.9")}});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].index, 0u);
  EXPECT_EQ((*r)[0].error, EINVAL);
}

TEST_F(NftRulesetTest, ApplyToAMissingSetReportsEveryElement) {
  auto nft = OpenOrDie(JailSpec("x"));
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  auto gone = OpenOrDie(JailSpec("gone"));
  std::vector<NftRuleset::ElementOp> ops;
  // More single-element errors than one transaction can report.
  for (int i = 0; i < 20000; ++i) {
    ops.push_back({true, Ip(("198.51.100." + std::to_string(i % 250)).c_str())});
  }
  auto r = gone->Apply(ops);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ((*r)[i].index, i);
    EXPECT_EQ((*r)[i].error, ENOENT);
  }
  auto e = gone->Elements(NftFamily::kIpv4);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(),
            "nftables: list set inet f2b-table addr-set-gone: No such file or directory");
}

TEST_F(NftRulesetTest, Apply100kAddsInOneCall) {
  auto nft = OpenOrDie(JailSpec("x"));
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  std::vector<NftRuleset::ElementOp> ops;
  ops.reserve(100000);
  for (uint32_t i = 0; i < 100000; ++i) {
    const uint32_t a = 0x0a000000 + i;  // 10.0.0.0 + i
    std::string text = std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
                       std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
    ops.push_back({true, Ip(text.c_str())});
  }
  auto t0 = std::chrono::steady_clock::now();
  auto r = nft->Apply(ops);
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->empty());
  auto e = nft->Elements(NftFamily::kIpv4);
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 100000u);
  std::unordered_set<IpAddr> got(e->begin(), e->end());
  EXPECT_EQ(got.size(), 100000u);
  EXPECT_TRUE(got.count(Ip("10.1.134.159")));  // 10.0.0.0 + 99999

  // Deletes, one of them refused, in the same call as adds.
  for (auto& op : ops) op.add = false;
  ops.push_back({false, Ip("10.255.0.1")});
  auto t3 = std::chrono::steady_clock::now();
  r = nft->Apply(ops);
  auto t4 = std::chrono::steady_clock::now();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].index, 100000u);
  using ms = std::chrono::duration<double, std::milli>;
  printf(
      "[ timing ] Apply 100000 IPv4 adds: %.1f ms; Elements(): %.1f ms; "
      "Apply 100000 deletes + 1 refused: %.1f ms\n",
      ms(t1 - t0).count(), ms(t2 - t1).count(), ms(t4 - t3).count());
  e = nft->Elements(NftFamily::kIpv4);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->empty());
}

TEST_F(NftRulesetTest, ElementTimeouts) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  NftSpec spec = JailSpec("x");
  spec.element_timeouts = true;
  auto nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  auto r = nft->Apply({{true, Ip("192.0.2.1"), 3600 * 1000},
                       {true, Ip("192.0.2.2"), 0},
                       {true, Ip("192.0.2.3"), 1}});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  std::string list = Nft("list set inet f2b-table addr-set-x");
  EXPECT_NE(list.find("flags timeout"), std::string::npos) << list;
  EXPECT_NE(list.find("192.0.2.1 timeout 1h expires "), std::string::npos) << list;
  EXPECT_NE(list.find("192.0.2.2"), std::string::npos) << list;
  EXPECT_EQ(list.find("192.0.2.2 timeout"), std::string::npos) << list;
  // The 1 ms element expires by itself.
  usleep(20 * 1000);
  auto e = nft->Elements(NftFamily::kIpv4);
  ASSERT_TRUE(e.ok());
  std::set<std::string> got;
  for (const IpAddr& a : *e) got.insert(a.ToString());
  EXPECT_EQ(got, (std::set<std::string>{"192.0.2.1", "192.0.2.2"}));
}

int CountRules(const std::string& listing);

std::vector<std::string> Texts(const std::vector<IpAddr>& v) {
  std::vector<std::string> out;
  for (const IpAddr& a : v) out.push_back(a.ToString());
  return out;
}

// spec.intervals (the jail bans networks): the set and its elements read as
// nft's own `flags interval` set with the same elements, networks and single
// addresses alike, the ranges that reach the top of the address space
// included; Elements() gives them back as networks, from either maker.
TEST_F(NftRulesetTest, IntervalSetsHoldNetworksAsNftWould) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  NftSpec spec = JailSpec("x");
  spec.intervals = true;
  auto nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(nft->Start(NftFamily::kIpv6).ok());
  const std::vector<const char*> ids = {"198.51.100.0/24", "192.0.2.7",  "255.255.255.0/24",
                                        "2001:db8:1:2::/64", "2001:db8::1", "ffff::/16",
                                        "10.0.0.0/8"};
  std::vector<NftRuleset::ElementOp> adds;
  for (const char* id : ids) adds.push_back({true, Ip(id), 0});
  auto r = nft->Apply(adds);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->empty());
  const std::vector<std::string> v4 = {"10.0.0.0/8", "192.0.2.7", "198.51.100.0/24",
                                       "255.255.255.0/24"};
  const std::vector<std::string> v6 = {"2001:db8::1", "2001:db8:1:2::/64", "ffff::/16"};
  auto e4 = nft->Elements(NftFamily::kIpv4);
  auto e6 = nft->Elements(NftFamily::kIpv6);
  ASSERT_TRUE(e4.ok() && e6.ok());
  EXPECT_EQ(Texts(*e4), v4);
  EXPECT_EQ(Texts(*e6), v6);
  const std::string ours4 = Normalize(Nft("list set inet f2b-table addr-set-x"));
  const std::string ours6 = Normalize(Nft("list set inet f2b-table addr6-set-x"));
  EXPECT_NE(ours4.find("flags interval"), std::string::npos) << ours4;
  EXPECT_NE(ours6.find("elements = { 2001:db8:1:2::/64, 2001:db8::1, ffff::/16, }"),
            std::string::npos)
      << ours6;

  // Deleting takes each interval out whole.
  std::vector<NftRuleset::ElementOp> dels;
  for (const char* id : ids) dels.push_back({false, Ip(id), 0});
  r = nft->Apply(dels);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->empty());
  e4 = nft->Elements(NftFamily::kIpv4);
  ASSERT_TRUE(e4.ok());
  EXPECT_TRUE(e4->empty()) << Nft("list set inet f2b-table addr-set-x");

  // nft's own set, in a fresh namespace.
  ASSERT_EQ(unshare(CLONE_NEWNET), 0) << strerror(errno);
  EXPECT_EQ(NftCommands({"add table inet f2b-table",
                         "add set inet f2b-table addr-set-x { type ipv4_addr; flags interval; }",
                         "add set inet f2b-table addr6-set-x { type ipv6_addr; flags interval; }",
                         "add element inet f2b-table addr-set-x { 198.51.100.0/24, 192.0.2.7, "
                         "255.255.255.0/24, 10.0.0.0/8 }",
                         "add element inet f2b-table addr6-set-x { 2001:db8:1:2::/64, "
                         "2001:db8::1, ffff::/16 }"}),
            "");
  EXPECT_EQ(Normalize(Nft("list set inet f2b-table addr-set-x")), ours4);
  EXPECT_EQ(Normalize(Nft("list set inet f2b-table addr6-set-x")), ours6);
  auto theirs = OpenOrDie(spec);
  e4 = theirs->Elements(NftFamily::kIpv4);
  e6 = theirs->Elements(NftFamily::kIpv6);
  ASSERT_TRUE(e4.ok() && e6.ok());
  EXPECT_EQ(Texts(*e4), v4);
  EXPECT_EQ(Texts(*e6), v6);
}

// Intervals with kernel timeouts: the set has both flags, the timeout rides
// on the interval.
TEST_F(NftRulesetTest, IntervalsWithElementTimeouts) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  NftSpec spec = JailSpec("x");
  spec.intervals = true;
  spec.element_timeouts = true;
  auto nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv6).ok());
  auto r = nft->Apply({{true, Ip("2001:db8:1:2::/64"), 3600 * 1000},
                       {true, Ip("2001:db8::7"), 0},
                       {true, Ip("2001:db8:9::/48"), 1}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->empty());
  std::string list = Nft("list set inet f2b-table addr6-set-x");
  EXPECT_NE(list.find("flags interval,timeout"), std::string::npos) << list;
  EXPECT_NE(list.find("2001:db8:1:2::/64 timeout 1h expires "), std::string::npos) << list;
  EXPECT_EQ(list.find("2001:db8::7 timeout"), std::string::npos) << list;
  usleep(20 * 1000);
  auto e = nft->Elements(NftFamily::kIpv6);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(Texts(*e), (std::vector<std::string>{"2001:db8::7", "2001:db8:1:2::/64"}));
}

// A set of ours from a run without intervals (flags 0) is replaced at start,
// rules and all, rather than the kernel's EEXIST failing the start; Check()
// reports such a set as broken.
TEST_F(NftRulesetTest, StartReplacesOurSetMadeWithOtherFlags) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  auto old = OpenOrDie(JailSpec("x"));
  ASSERT_TRUE(old->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(old->Apply({{true, Ip("192.0.2.1"), 0}}).ok());
  NftSpec spec = JailSpec("x");
  spec.intervals = true;
  auto nft = OpenOrDie(spec);
  auto ok = nft->Check(NftFamily::kIpv4);
  ASSERT_TRUE(ok.ok());
  EXPECT_FALSE(*ok);
  Status s = nft->Start(NftFamily::kIpv4);
  ASSERT_TRUE(s.ok()) << s.message();
  ok = nft->Check(NftFamily::kIpv4);
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(*ok);
  const std::string list = Nft("list ruleset");
  EXPECT_NE(list.find("flags interval"), std::string::npos) << list;
  EXPECT_EQ(CountRules(list), 1) << list;
  auto r = nft->Apply({{true, Ip("192.0.2.0/24"), 0}});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

int CountRules(const std::string& listing) {
  int n = 0;
  for (size_t p = 0; (p = listing.find(" saddr @", p)) != std::string::npos; ++p) ++n;
  return n;
}

TEST_F(NftRulesetTest, StopRemovesOnlyOurs) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  auto a = OpenOrDie(JailSpec("a"));
  auto b = OpenOrDie(JailSpec("b"));
  ASSERT_TRUE(a->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(a->Start(NftFamily::kIpv6).ok());
  ASSERT_TRUE(b->Start(NftFamily::kIpv4).ok());
  Nft("add table ip foreign");
  Nft("add chain ip foreign c");
  Nft("add set ip foreign addr-set-a '{ type ipv4_addr; }'");
  Nft("add rule ip foreign c ip saddr @addr-set-a drop");
  ASSERT_TRUE(a->Apply({{true, Ip("192.0.2.1")}}).ok());

  ASSERT_TRUE(a->Stop(NftFamily::kIpv4).ok());
  std::string list = Nft("list ruleset");
  // Only the foreign table's set and rule of that name are left.
  EXPECT_EQ(list.find("@addr-set-a"), list.rfind("@addr-set-a")) << list;
  EXPECT_EQ(list.find("set addr-set-a {"), list.rfind("set addr-set-a {")) << list;
  EXPECT_NE(list.find("table ip foreign"), std::string::npos) << list;
  EXPECT_NE(list.find("ip saddr @addr-set-b reject"), std::string::npos) << list;
  EXPECT_NE(list.find("ip6 saddr @addr6-set-a reject"), std::string::npos) << list;
  EXPECT_EQ(CountRules(list), 3) << list;

  ASSERT_TRUE(a->Stop(NftFamily::kIpv6).ok());
  ASSERT_TRUE(b->Stop(NftFamily::kIpv6).ok());  // never started: nothing to do
  list = Nft("list ruleset");
  EXPECT_NE(list.find("table inet f2b-table"), std::string::npos) << list;
  ASSERT_TRUE(b->Stop(NftFamily::kIpv4).ok());
  list = Nft("list ruleset");
  EXPECT_EQ(list.find("table inet f2b-table"), std::string::npos) << list;
  EXPECT_NE(list.find("ip saddr @addr-set-a drop"), std::string::npos) << list;
  // Stopping again, with the table gone, is no error.
  EXPECT_TRUE(b->Stop(NftFamily::kIpv4).ok());
}

TEST_F(NftRulesetTest, CheckFindsOurRule) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  auto nft = OpenOrDie(JailSpec("x"));
  auto c = nft->Check(NftFamily::kIpv4);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(*c);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  EXPECT_TRUE(*nft->Check(NftFamily::kIpv4));
  EXPECT_FALSE(*nft->Check(NftFamily::kIpv6));
  Nft("flush chain inet f2b-table f2b-chain");
  EXPECT_FALSE(*nft->Check(NftFamily::kIpv4));
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  EXPECT_TRUE(*nft->Check(NftFamily::kIpv4));
  Nft("delete table inet f2b-table");
  EXPECT_FALSE(*nft->Check(NftFamily::kIpv4));
}

TEST_F(NftRulesetTest, StartTwiceAddsNoDuplicateRules) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  NftSpec spec = JailSpec("x");
  spec.rules = {NftRule{{IPPROTO_TCP}, {{22, 22}, {80, 80}}},
                NftRule{{IPPROTO_UDP}, {{5060, 5070}, {10000, 20000}}},
                NftRule{{IPPROTO_TCP, IPPROTO_UDP}, {}}, NftRule{{IPPROTO_TCP}, {{443, 443}}}};
  auto nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(nft->Start(NftFamily::kIpv6).ok());
  std::string first = Nft("list ruleset");
  EXPECT_EQ(CountRules(first), 8) << first;
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  ASSERT_TRUE(nft->Start(NftFamily::kIpv6).ok());
  EXPECT_EQ(Nft("list ruleset"), first);

  // A rule that differs only in its ports is not ours: it is added.
  spec.rules[0].dports = {{22, 22}, {8080, 8080}};
  nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  EXPECT_EQ(CountRules(Nft("list ruleset")), 9);
}

TEST_F(NftRulesetTest, StartAfterTheShellActionAddsNothing) {
  BANTAM_REQUIRE_TOOL(has_nft_, "nft", "nftables");
  Nft("add table inet f2b-table");
  Nft("-- add chain inet f2b-table f2b-chain '{ type filter hook input priority -1 ; }'");
  Nft("add set inet f2b-table addr-set-x '{ type ipv4_addr; }'");
  Nft("add rule inet f2b-table f2b-chain 'tcp dport { 5060-5070,sip } ip saddr @addr-set-x "
      "reject'");
  Nft("add rule inet f2b-table f2b-chain 'meta l4proto { tcp,udp } ip saddr @addr-set-x reject'");
  std::string before = Nft("list ruleset");
  NftSpec spec = JailSpec("x");
  spec.rules = {NftRule{{IPPROTO_TCP}, {{5060, 5070}, {5060, 5060}}},
                NftRule{{IPPROTO_TCP, IPPROTO_UDP}, {}}};
  auto nft = OpenOrDie(spec);
  ASSERT_TRUE(nft->Start(NftFamily::kIpv4).ok());
  EXPECT_EQ(Nft("list ruleset"), before);
}

}  // namespace
}  // namespace bantam

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  // Leave the host's network namespace before any test touches nftables.
  if (unshare(CLONE_NEWNET) == 0) {
    bantam::g_can_unshare = true;
  } else {
    fprintf(stderr,
            "bantam_nft_tests: unshare(CLONE_NEWNET) failed (%s): these tests need root "
            "(CAP_SYS_ADMIN) and fail under CI, are skipped elsewhere; the host's ruleset is "
            "never touched.\n",
            strerror(errno));
  }
  return RUN_ALL_TESTS();
}
