// IniFile: one configuration file parsed with the syntax of Python's
// ConfigParser as fail2ban configures it.
//
// That means: `[section]` headers, `name = value` or `name: value`,
// option names lower-cased, values continued on lines indented deeper than
// the option line, blank lines kept inside values (trailing ones dropped),
// whole-line comments starting with '#' or ';', inline comments only with
// ';' preceded by white space, `[DEFAULT]` as the fallback section, and a
// duplicate section or option in one file being an error.
// We do not use inih here: its continuation, comment and duplicate rules
// differ from ConfigParser's, and those differences change resolved values.
#ifndef BANTAM_INI_H_
#define BANTAM_INI_H_

#include <string>
#include <string_view>

#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

// Where a value was written, for "file:line: message" diagnostics.
struct SourceLoc {
  std::string file;
  int line = 0;
  std::string ToString() const { return file + ":" + std::to_string(line); }
};

struct ConfValue {
  std::string text;
  SourceLoc loc;
};

using ConfSection = OrderedMap<ConfValue>;

struct IniFile {
  std::string path;
  ConfSection defaults;            // [DEFAULT]
  OrderedMap<ConfSection> sections;  // every other section, in file order
};

// Parses `text` read from `path` (used in messages only). Errors name the
// file and line: "jail.local:7: option 'port' in section 'sshd' already exists".
// Several syntax errors in one file are reported together, one per line.
Result<IniFile> ParseIni(std::string_view text, const std::string& path);

// Reads and parses a file. A file that does not exist or cannot be read is
// an error naming the path and errno; invalid UTF-8 is an error too.
Result<IniFile> ReadIniFile(const std::string& path);

}  // namespace bantam

#endif  // BANTAM_INI_H_
