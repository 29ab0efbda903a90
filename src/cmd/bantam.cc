// bantam: the fail2ban-client compatible command line client.
// This version offers the configuration commands: -d/--dump and -t/--test.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bantam/config_check.h"
#include "bantam/config_loader.h"
#include "bantam/duration.h"

namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "Usage: bantam [OPTIONS] <COMMAND>\n\n"
               "Options:\n"
               "    -c <DIR>                configuration directory (default /etc/fail2ban)\n"
               "    -s <FILE>               socket path\n"
               "    -p <FILE>               pidfile path\n"
               "    --loglevel <LEVEL>      logging level\n"
               "    --logtarget <TARGET>    logging target\n"
               "    --syslogsocket auto|<FILE>\n"
               "    -d, --dump              dump the resolved configuration, one JSON array per "
               "line\n"
               "    -t, --test              test the configuration\n"
               "    --str2sec <STRING>      convert a time abbreviation (e.g. 1h 30m) to seconds\n"
               "    -h, --help              this help\n"
               "    -V, --version           version\n");
}

bool TakesValue(const std::string& a) {
  return a == "-c" || a == "-s" || a == "-p" || a == "--loglevel" || a == "--logtarget" ||
         a == "--syslogsocket" || a == "--str2sec";
}

}  // namespace

int main(int argc, char** argv) {
  bantam::LoadOptions load;
  bool dump = false, test = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    if (TakesValue(a)) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ERROR: option %s requires an argument\n", a.c_str());
        return 255;
      }
      value = argv[++i];
    } else if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos &&
               TakesValue(a.substr(0, a.find('=')))) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    }
    if (a == "-c") {
      load.basedir = value;
    } else if (a == "-s") {
      load.overrides.Set("socket", value);
    } else if (a == "-p") {
      load.overrides.Set("pidfile", value);
    } else if (a == "--loglevel" || a == "--logtarget" || a == "--syslogsocket") {
      load.overrides.Set(a.substr(2), value);
    } else if (a == "--str2sec") {
      bantam::Result<bantam::TimeValue> t = bantam::ParseTimeValue(value);
      if (!t.ok()) {
        std::fprintf(stderr, "ERROR: %s\n", t.status().message().c_str());
        return 255;
      }
      std::printf("%s\n", bantam::FormatStr2Sec(*t).c_str());
      return 0;
    } else if (a == "-d" || a == "--dump") {
      dump = true;
    } else if (a == "-t" || a == "--test") {
      test = true;
    } else if (a == "-h" || a == "--help") {
      Usage(stdout);
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::printf("bantam v%s (fail2ban %s configuration compatible)\n", BANTAM_VERSION,
                  bantam::kFail2banCompatVersion);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "ERROR: unknown option %s\n", a.c_str());
      Usage(stderr);
      return 255;
    } else {
      args.push_back(a);
    }
  }
  if (!dump && !test) {
    if (args.empty()) {
      Usage(stderr);
    } else {
      std::fprintf(stderr,
                   "ERROR: command '%s' needs the bantamd control socket, which this version "
                   "does not have yet; only -d and -t are available\n",
                   args[0].c_str());
    }
    return 255;
  }

  bantam::Result<bantam::LoadedConfig> cfg = bantam::LoadConfig(load);
  if (!cfg.ok()) {
    std::fprintf(stderr, "ERROR: %s\n", cfg.status().message().c_str());
    if (test) std::fprintf(stderr, "ERROR: test configuration failed\n");
    return 255;
  }
  if (test) bantam::CheckConfig(&*cfg);
  for (const bantam::Diagnostic& d : cfg->diagnostics) {
    const bool err = d.severity == bantam::Diagnostic::Severity::kError;
    if (!err && !test && dump) continue;  // the dump stays quiet about warnings
    std::fprintf(stderr, "%s%s\n", err ? "" : "warning: ", d.message.c_str());
  }
  if (dump) {
    for (const bantam::Value& cmd : cfg->commands) std::printf("%s\n", cmd.ToJson().c_str());
  }
  if (test) {
    if (cfg->has_errors()) {
      std::fprintf(stderr, "ERROR: test configuration failed\n");
      return 255;
    }
    std::printf("OK: configuration test is successful\n");
  }
  return 0;
}
