#include "bantam/config_dir.h"

#include <errno.h>
#include <sys/stat.h>

#include <fstream>
#include <string_view>

namespace bantam {
namespace {

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool IsName(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    const bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// The value of a shell assignment: one quoted or bare word. A trailing
// `# comment` after whitespace is allowed, as the shell reads it.
Result<std::string> ShellWord(std::string_view v, const std::string& where) {
  std::string out;
  size_t i = 0;
  while (i < v.size() && v[i] != ' ' && v[i] != '\t') {
    const char c = v[i];
    if (c == '"' || c == '\'') {
      const size_t close = v.find(c, i + 1);
      if (close == std::string_view::npos) return Status::Error(where + ": unterminated quote");
      out.append(v.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      out.push_back(c);
      ++i;
    }
  }
  const std::string_view rest = Trim(v.substr(i));
  if (!rest.empty() && rest[0] != '#')
    return Status::Error(where + ": expected one value, got more after it");
  return out;
}

}  // namespace

Result<ConfigDirChoice> ChooseConfigDir(const std::optional<std::string>& cli_dir,
                                        const std::string& defaults_file) {
  if (cli_dir) return ConfigDirChoice{*cli_dir, "-c"};
  struct stat st;
  if (::stat(defaults_file.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return ConfigDirChoice{kFallbackConfigDir,
                             "built-in default: " + defaults_file + " not found"};
    return Status::FromErrno("cannot read " + defaults_file, errno);
  }
  std::ifstream in(defaults_file);
  if (!in || S_ISDIR(st.st_mode)) return Status::Error("cannot read " + defaults_file);
  std::optional<ConfigDirChoice> found;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    std::string_view s = Trim(line);
    if (s.empty() || s[0] == '#') continue;
    if (s.substr(0, 7) == "export ") s = Trim(s.substr(7));
    const std::string where = defaults_file + ":" + std::to_string(lineno);
    const size_t eq = s.find('=');
    if (eq == std::string_view::npos || !IsName(s.substr(0, eq)))
      return Status::Error(where + ": expected NAME=VALUE");
    if (s.substr(0, eq) != "BANTAM_CONFDIR") continue;
    Result<std::string> value = ShellWord(s.substr(eq + 1), where);
    if (!value.ok()) return value.status();
    if (value->empty() || (*value)[0] != '/')
      return Status::Error(where + ": BANTAM_CONFDIR must be an absolute directory, got '" +
                           *value + "'");
    found = ConfigDirChoice{*value, "BANTAM_CONFDIR in " + where};  // the last one wins
  }
  if (in.bad()) return Status::Error("cannot read " + defaults_file);
  if (found) return *found;
  return ConfigDirChoice{kFallbackConfigDir,
                         "built-in default: no BANTAM_CONFDIR in " + defaults_file};
}

}  // namespace bantam
