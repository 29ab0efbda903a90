// bantam-regex: fail2ban-regex's command line over bantam's filter engine.
// Same arguments, same report layout; plus --json (one object per failure)
// and --now (a fixed clock for tests).
#ifndef BANTAM_REGEX_TOOL_H_
#define BANTAM_REGEX_TOOL_H_

#include <string>
#include <string_view>

namespace bantam {

// Runs the tool with argv[1..argc); writes to stdout/stderr. Returns the
// exit code: 0, or 255 on errors as fail2ban-regex does.
int RegexToolMain(int argc, char** argv);

}  // namespace bantam

#endif  // BANTAM_REGEX_TOOL_H_
