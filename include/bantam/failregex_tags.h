// fail2ban's tags in a failregex: <HOST>, <ADDR>, <IP4>, <IP6>, <DNS>,
// <CIDR>, <SUBNET>, <SKIPLINES>, <F-ID>, <F-PORT>, <F-NAME>...</F-NAME>,
// expanded to the Python regexes fail2ban documents for them (its
// failregex.py R_HOST, RH4TAG, IPAddr.IP_4_RE/IP_6_RE), and its rewriting
// of "((?i)x)" to "(?i:x)". The result is still Python syntax; the
// translator (regex_translate.h) comes after. Every output byte remembers
// the offset in the user's regex it came from, so errors found later
// point into what the user wrote. Pure; any thread.
//
// Differences from fail2ban: none intended. Unknown tags stay as written
// (so they reach the regex as literal text), as in fail2ban.
#ifndef BANTAM_FAILREGEX_TAGS_H_
#define BANTAM_FAILREGEX_TAGS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace bantam {

// Text with, for every byte, the offset in the user's regex it came from.
struct MappedText {
  std::string text;
  std::vector<size_t> origin;  // origin.size() == text.size() + 1 once finished

  void Append(std::string_view s, size_t from);
  void AppendCopy(const MappedText& in, size_t begin, size_t end);
  void Finish(size_t end_origin) { origin.push_back(end_origin); }
};

// `regex` with every byte mapped to itself (a date template: no tags).
MappedText UnmappedText(std::string_view regex);

// fail2ban's tags expanded. `host_matches_dns` false (usedns = no): <HOST>
// is <ADDR>. A </F-NAME> closes a group only once <F-NAME> opened it.
MappedText ResolveFailRegexTags(std::string_view regex, bool host_matches_dns);

// fail2ban's rewriting of "((?i)x)" and "(?:(?i)x)" to "(?i:x)", so that
// flags meant for a group do not become global ones.
MappedText GlobalToLocalFlags(const MappedText& in);

}  // namespace bantam

#endif  // BANTAM_FAILREGEX_TAGS_H_
