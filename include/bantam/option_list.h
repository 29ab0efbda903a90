// The small syntaxes inside fail2ban option values:
//   "sshd[mode=aggressive, port=\"ssh, 2222\"]"   (a name with options)
//   "iptables[...]\n sendmail-whois[...]"           (a list of those)
//   "127.0.0.1/8 ::1, 10.0.0.0/8"                   (a word list)
#ifndef BANTAM_OPTION_LIST_H_
#define BANTAM_OPTION_LIST_H_

#include <string>
#include <string_view>
#include <vector>

#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

struct NamedOptions {
  std::string name;
  OrderedMap<std::string> options;  // in written order, values unquoted and stripped
};

// Parses NAME[opt=val, opt2="a, b"][opt3='x']. Errors read like
// "unexpected syntax at 7 after option 'port': ..." (offsets within the
// bracketed text, as fail2ban reports them).
Result<NamedOptions> ParseNamedOptions(std::string_view text);

// Splits a value holding several NAME[...] entries separated by white
// space or new lines; options may contain spaces and new lines.
std::vector<std::string> SplitNamedOptionsList(std::string_view text);

// Python's str.split('\n'): every piece, empty ones included. Views into
// `text`, which must outlive them.
std::vector<std::string_view> SplitNewlines(std::string_view text);

// Words separated by spaces, commas or new lines; empty words dropped.
std::vector<std::string> SplitWords(std::string_view text);

// POSIX shlex.split as Python does it (no comments): words with quotes and
// backslashes resolved. Error: "No closing quotation", "No escaped character".
Result<std::vector<std::string>> ShlexSplit(std::string_view s);

}  // namespace bantam

#endif  // BANTAM_OPTION_LIST_H_
