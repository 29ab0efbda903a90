// Which configuration directory bantamd, bantam and bantam-regex read when
// no -c is given.
//
// A host may have two trees: fail2ban's /etc/fail2ban and the package's own
// /etc/bantam. The choice is never guessed at run time: /etc/default/bantam
// names it (`BANTAM_CONFDIR=/etc/fail2ban`), written once by the package's
// postinst from what it found, and edited by the operator after that. Every
// program says where its choice came from (`origin`), so the daemon's log
// and `bantam -t` show it.
#ifndef BANTAM_CONFIG_DIR_H_
#define BANTAM_CONFIG_DIR_H_

#include <optional>
#include <string>

#include "bantam/status.h"

namespace bantam {

inline constexpr const char kDefaultsFile[] = "/etc/default/bantam";
// Used when the defaults file does not exist (a build tree, or an install
// without the package): fail2ban's own default.
inline constexpr const char kFallbackConfigDir[] = "/etc/fail2ban";

struct ConfigDirChoice {
  std::string dir;
  // Where `dir` came from, for messages: "-c", "BANTAM_CONFDIR in
  // /etc/default/bantam:3", or "built-in default: /etc/default/bantam not found".
  std::string origin;
};

// `cli_dir` (from -c) wins when set. Otherwise reads `defaults_file`, a shell
// variable file (KEY=VALUE lines, '#' comments, optional `export ` and
// quotes; other keys are ignored). Errors, as "file:line: message": a line
// that is not an assignment, an unterminated quote, an empty or relative
// BANTAM_CONFDIR, an unreadable file.
Result<ConfigDirChoice> ChooseConfigDir(const std::optional<std::string>& cli_dir,
                                        const std::string& defaults_file = kDefaultsFile);

}  // namespace bantam

#endif  // BANTAM_CONFIG_DIR_H_
