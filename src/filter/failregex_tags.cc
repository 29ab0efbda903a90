#include "bantam/failregex_tags.h"

#include <map>
#include <optional>
#include <string>
#include <utility>

namespace bantam {

void MappedText::Append(std::string_view s, size_t from) {
  text.append(s);
  origin.insert(origin.end(), s.size(), from);
}

void MappedText::AppendCopy(const MappedText& in, size_t begin, size_t end) {
  text.append(in.text, begin, end - begin);
  origin.insert(origin.end(), in.origin.begin() + static_cast<ptrdiff_t>(begin),
                in.origin.begin() + static_cast<ptrdiff_t>(end));
}

MappedText UnmappedText(std::string_view regex) {
  MappedText out;
  for (size_t i = 0; i < regex.size(); ++i) out.Append(regex.substr(i, 1), i);
  out.Finish(regex.size());
  return out;
}

namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

constexpr std::string_view kIp4Re = R"((?:\d{1,3}\.){3}\d{1,3})";
constexpr std::string_view kIp6Re =
    R"((?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))";

std::string Ip4Tag() { return "(?:::f{4,6}:)?(?P<ip4>" + std::string(kIp4Re) + ")"; }
std::string Ip6Tag() { return "(?P<ip6>" + std::string(kIp6Re) + ")"; }
std::string DnsTag() { return R"((?P<dns>[\w\-.^_]*\w))"; }
std::string CidrTag() { return R"((?P<cidr>\d+))"; }
std::string AddrTag() { return R"(\[?(?:)" + Ip4Tag() + "|" + Ip6Tag() + R"()\]?)"; }
std::string HostTag(bool with_dns) {
  return with_dns ? "(?:" + AddrTag() + "|" + DnsTag() + ")" : AddrTag();
}
std::string SubnetTag() {
  return R"(\[?(?:)" + Ip4Tag() + "|" + Ip6Tag() + ")(?:/" + CidrTag() + R"()?\]?)";
}

// Replacement for a tag with a fixed expansion, or nullopt.
std::optional<std::string> FixedTag(std::string_view name, bool host_matches_dns) {
  if (name == "HOST") return HostTag(host_matches_dns);
  if (name == "IP4" || name == "F-IP4/") return Ip4Tag();
  if (name == "IP6" || name == "F-IP6/") return Ip6Tag();
  if (name == "ADDR" || name == "F-ADDR/") return AddrTag();
  if (name == "CIDR" || name == "F-CIDR/") return CidrTag();
  if (name == "SUBNET" || name == "F-SUBNET/") return SubnetTag();
  if (name == "DNS" || name == "F-DNS/") return DnsTag();
  if (name == "F-ID/") return std::string(R"((?P<fid>\S+))");
  if (name == "F-PORT/") return std::string(R"((?P<fport>\w+))");
  return std::nullopt;
}

// Characters of a tag name: fail2ban matches tags with </?[\w\-]+/?>. Tags it
// knows are ASCII; for unknown ones only the extent matters, and since no tag
// can contain '<' the extent never changes the result, so any non-ASCII
// byte may count as a name character here.
bool IsTagNameByte(char c) {
  const auto b = static_cast<unsigned char>(c);
  return b >= 0x80 || IsAsciiLetter(b) || IsAsciiDigit(b) || c == '_' || c == '-';
}

}  // namespace

MappedText ResolveFailRegexTags(std::string_view regex, bool host_matches_dns) {
  MappedText out;
  std::map<std::string, bool, std::less<>> open_tags;
  int skiplines = 0;
  size_t i = 0;
  while (i < regex.size()) {
    if (regex[i] != '<') {
      out.Append(regex.substr(i, 1), i);
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (j < regex.size() && regex[j] == '/') ++j;
    size_t k = j;
    while (k < regex.size() && IsTagNameByte(regex[k])) ++k;
    const bool has_name = k > j;
    if (k < regex.size() && regex[k] == '/') ++k;
    if (!has_name || k >= regex.size() || regex[k] != '>') {
      out.Append(regex.substr(i, 1), i);
      ++i;
      continue;
    }
    const std::string_view name = regex.substr(i + 1, k - i - 1);
    const std::string_view whole = regex.substr(i, k + 1 - i);
    std::string replacement(whole);
    if (name == "SKIPLINES") {
      replacement = "\\n(?P<skiplines" + std::to_string(skiplines++) + ">(?:(?:.*\\n)*?))";
    } else if (std::optional<std::string> fixed = FixedTag(name, host_matches_dns)) {
      replacement = std::move(*fixed);
    } else {
      // <F-NAME> opens a group named name.lower() (id -> fid, port -> fport);
      // </F-NAME> closes it, but only once opened, else it stays literal.
      const bool closing = name.starts_with('/');
      const std::string_view custom = name.substr(closing ? 1 : 0);
      bool is_custom = custom.size() > 2 && custom.starts_with("F-");
      for (size_t n = 2; is_custom && n < custom.size(); ++n) {
        const char c = custom[n];
        is_custom = (c >= 'A' && c <= 'Z') || IsAsciiDigit(c) || c == '_' || c == '-';
      }
      if (is_custom) {
        const std::string tag(custom.substr(2));
        if (closing) {
          if (open_tags.count(tag)) replacement = ")";
        } else {
          open_tags[tag] = true;
          std::string group = tag;
          for (char& c : group) {
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
          }
          if (group == "id") group = "fid";
          if (group == "port") group = "fport";
          replacement = "(?P<" + group + ">";
        }
      }
    }
    if (replacement == whole) {
      for (size_t n = i; n <= k; ++n) out.Append(regex.substr(n, 1), n);
    } else {
      out.Append(replacement, i);
    }
    i = k + 1;
  }
  out.Finish(regex.size());
  return out;
}

MappedText GlobalToLocalFlags(const MappedText& in) {
  const std::string& s = in.text;
  MappedText out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '(' && (i == 0 || s[i - 1] != '\\')) {
      size_t j = i + 1;
      if (s.compare(j, 2, "?:") == 0) j += 2;
      if (s.compare(j, 2, "(?") == 0) {
        size_t k = j + 2;
        while (k < s.size() && s[k] >= 'a' && s[k] <= 'z') ++k;
        if (k > j + 2 && k < s.size() && s[k] == ')') {
          // The new group starts where the dropped one did.
          out.Append("(", in.origin[i]);
          out.AppendCopy(in, j + 1, k);  // "?" and the flags
          out.Append(":", in.origin[k]);
          i = k + 1;
          continue;
        }
      }
    }
    out.AppendCopy(in, i, i + 1);
    ++i;
  }
  out.Finish(in.origin.back());
  return out;
}

}  // namespace bantam
