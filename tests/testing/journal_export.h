// Real journal files for tests: entries in journal export format, written
// to a .journal file by Debian's systemd-journal-remote (package
// systemd-journal-remote). Header-only; tests only.
#ifndef BANTAM_TESTS_TESTING_JOURNAL_EXPORT_H_
#define BANTAM_TESTS_TESTING_JOURNAL_EXPORT_H_

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace bantam::testing {

inline constexpr char kJournalRemote[] = "/lib/systemd/systemd-journal-remote";

using JournalFields = std::vector<std::pair<std::string, std::string>>;

// Journal export format: FIELD=value lines, or FIELD, a little-endian
// 64-bit length and the raw bytes for values with new lines or binary.
inline std::string ExportEntry(const JournalFields& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    bool binary = false;
    for (unsigned char c : v) binary |= c < 0x20 || c >= 0x7f;
    out += k;
    if (binary) {
      out += '\n';
      uint64_t n = v.size();
      for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
      out += v;
    } else {
      out += '=';
      out += v;
    }
    out += '\n';
  }
  return out + '\n';
}

// `s` single-quoted for sh.
inline std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Writes `entries` to the journal file `out` (its directory must exist),
// through the export file `scratch`. True when systemd-journal-remote
// succeeded.
inline bool WriteJournalFile(const std::vector<JournalFields>& entries, const std::string& out,
                             const std::string& scratch) {
  {
    std::ofstream in(scratch, std::ios::binary);
    for (const JournalFields& e : entries) in << ExportEntry(e);
  }
  const std::string cmd = std::string(kJournalRemote) + " -o " + ShellQuote(out) + " - < " +
                          ShellQuote(scratch) + " > /dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace bantam::testing

#endif  // BANTAM_TESTS_TESTING_JOURNAL_EXPORT_H_
