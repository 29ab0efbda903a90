// LoadConfig: reads a fail2ban configuration directory (fail2ban.conf,
// jail.conf, filter.d, action.d with their .local/.d overlays) and resolves
// it into the command stream fail2ban-client would send to its server:
//   ["set", "loglevel", "INFO"], ["add", "sshd", "auto"],
//   ["multi-set", "sshd", "addfailregex", [...]], ["start", "sshd"], ...
// That stream is bantam's resolved configuration: `bantam --dump` prints
// it, and the daemon is configured by applying it.
#ifndef BANTAM_CONFIG_LOADER_H_
#define BANTAM_CONFIG_LOADER_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bantam/ini.h"
#include "bantam/ordered_map.h"
#include "bantam/prefix_options.h"
#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

// The fail2ban release whose configuration semantics we follow; configs
// see it as %(fail2ban_version)s (the stock jail.conf puts it in agent strings).
inline constexpr const char kFail2banCompatVersion[] = "1.0.2";

struct Diagnostic {
  enum class Severity { kWarning, kError };
  Severity severity = Severity::kWarning;
  std::string message;  // "file:line: text" whenever a location is known
  std::string jail;     // the jail the problem belongs to; empty: server-wide
};

struct LoadOptions {
  std::string basedir = "/etc/fail2ban";
  // Server options given on the command line (loglevel, logtarget,
  // syslogsocket, socket, pidfile); they win over fail2ban.conf.
  OrderedMap<std::string> overrides;
  // Resolve only this jail (fail2ban-client reload JAIL).
  std::optional<std::string> jail;
  // Expands a logpath glob into existing paths (dangling links excluded,
  // in directory order). Tests and fuzzers replace the file system here.
  std::function<std::vector<std::string>(const std::string& pattern)> glob_logpath;
};

// A jail's logpath that matched no file when the configuration was read.
struct MissingLogPath {
  std::string jail;
  std::string path;  // as written (may be a glob)
  bool tail = false;
};

struct LoadedConfig {
  // fail2ban.conf's early options: socket, pidfile, loglevel, logtarget,
  // syslogsocket (with command-line overrides applied).
  OrderedMap<std::string> server;
  std::vector<Value> commands;
  std::vector<Diagnostic> diagnostics;
  // Where each jail option came from, for validation messages:
  // (jail, option) -> location of its definition; jail "" for fail2ban.conf.
  std::map<std::pair<std::string, std::string>, SourceLoc> origins;
  // Logpaths that matched no file; the stream leaves them out.
  std::vector<MissingLogPath> missing_logpaths;
  // bantam's own options of fail2ban.conf/.local [Definition], which
  // fail2ban does not know and the stream leaves out (metrics,
  // metrics_allow_remote), as set; their locations are in origins.
  OrderedMap<std::string> extensions;
  // bantam's prefix options of each enabled jail (prefix4, prefix6,
  // aggregate4, aggregate6; see prefix_options.h), for jails that set one
  // here or in [DEFAULT]. A bad value is an error diagnostic of that jail.
  std::map<std::string, PrefixOptions> prefixes;

  bool has_errors() const {
    for (const Diagnostic& d : diagnostics)
      if (d.severity == Diagnostic::Severity::kError) return true;
    return false;
  }
};

// Errors that stop fail2ban from producing a stream at all (syntax errors,
// broken interpolation, self-referencing tags) return a Status with
// "file:line: message". Errors confined to one jail (unknown filter or
// action file, bad option syntax) become a ["config-error", ...] command
// for that jail plus an error diagnostic, and the other jails resolve.
Result<LoadedConfig> LoadConfig(const LoadOptions& options);

// One filter resolved on its own, as fail2ban-regex reads it: its
// filter-level commands (prefregex, addfailregex, addignoreregex, maxlines,
// datepattern, addjournalmatch) for jail `jail`.
struct LoadedFilter {
  std::vector<Value> commands;
  std::vector<Diagnostic> diagnostics;
  std::vector<std::string> files;  // the files read, in order
};

// Reads `file` ("filter.d/sshd", relative to `basedir`, with its .local and
// .d overlays) with the options given as NAME[opt=value]. `backend` picks
// logtype=journal for "systemd..." when neither filter nor options set it.
// Error: missing file, syntax or interpolation errors ("file:line: ...").
Result<LoadedFilter> LoadFilter(const std::string& basedir, const std::string& file,
                                const OrderedMap<std::string>& options,
                                const std::string& backend = "auto",
                                const std::string& jail = "fail2ban-regex-jail");

}  // namespace bantam

#endif  // BANTAM_CONFIG_LOADER_H_
