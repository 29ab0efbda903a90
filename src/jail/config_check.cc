#include "bantam/config_check.h"

#include <map>
#include <optional>
#include <set>

#include "bantam/ami_source.h"
#include "bantam/duration.h"
#include "bantam/failregex.h"
#include "bantam/ini.h"
#include "bantam/metrics_server.h"
#include "bantam/option_list.h"
#include "bantam/py.h"

namespace bantam {

namespace {

class Checker {
 public:
  explicit Checker(LoadedConfig* c) : config_(c) {}

  void Run() {
    // Regexes compile in the context of their jail: usedns, maxlines and
    // whether the prefregex already captures the failure id.
    for (const Value& cmd : config_->commands) {
      const Value::List& c = cmd.as_list();
      if (c.size() != 4 || !c[0].is_string() || c[0].as_string() != "set" || !c[2].is_string())
        continue;
      JailContext& j = jails_[c[1].ToPyStr()];
      const std::string& opt = c[2].as_string();
      if (opt == "usedns" && c[3].is_string()) {
        j.options.host_matches_dns = LowerAscii(c[3].as_string()) != "no";
      } else if (opt == "maxlines" && c[3].is_int()) {
        j.options.maxlines = static_cast<int>(c[3].as_int());
      } else if (opt == "prefregex" && c[3].is_string()) {
        j.prefregex = c[3].as_string();
      }
    }
    for (auto& [name, j] : jails_) {
      if (!j.prefregex) continue;
      bool has_failure_id = false;
      Status pref =
          CheckFailRegex(*j.prefregex, RegexKind::kPrefRegex, j.options, &has_failure_id);
      if (!pref.ok()) {
        Error(name, "prefregex", pref.message());
      } else {
        j.options.prefregex_has_failure_id = has_failure_id;
      }
    }
    for (const Value& cmd : config_->commands) {
      const Value::List& c = cmd.as_list();
      if (c.size() < 3 || !c[0].is_string()) continue;
      const std::string& verb = c[0].as_string();
      if (verb == "set" && c.size() == 3) {
        CheckServer(c[1].as_string(), c[2]);
      } else if (verb == "set" && c.size() >= 5 && c[2].is_string() &&
                 c[2].as_string() == "addaction") {
        // ["set", jail, "addaction", name, "/path/name.py", "{kwargs}"]
        Error(c[1].as_string(), "action",
              "action '" + c[3].ToPyStr() + "' is a Python action (" + c[4].ToPyStr() +
                  "), which bantam cannot run; use a shell action (action.d/*.conf) instead");
      } else if (verb == "set" && c.size() >= 4 && c[2].is_string()) {
        CheckJail(c[1].as_string(), c[2].as_string(), c[3]);
      } else if (verb == "multi-set" && c.size() == 4 && c[3].is_list()) {
        // ["multi-set", jail, "addfailregex", [regex, ...]]
        for (const Value& v : c[3].as_list()) CheckJail(c[1].as_string(), c[2].as_string(), v);
      } else if (verb == "add" && c.size() == 3 && c[2].is_string()) {
        CheckBackend(c[1].as_string(), c[2].as_string());
      }
    }
    CheckMetrics();
  }

 private:
  void Error(const std::string& jail, const std::string& option, const std::string& msg) {
    auto it = config_->origins.find({jail, option});
    std::string where = it == config_->origins.end() ? "" : it->second.ToString() + ": ";
    std::string scope = jail.empty() ? "" : "[" + jail + "] ";
    config_->diagnostics.push_back({Diagnostic::Severity::kError, where + scope + msg, jail});
  }

  void Warning(const std::string& jail, const std::string& option, const std::string& msg) {
    auto it = config_->origins.find({jail, option});
    std::string where = it == config_->origins.end() ? "" : it->second.ToString() + ": ";
    std::string scope = jail.empty() ? "" : "[" + jail + "] ";
    config_->diagnostics.push_back({Diagnostic::Severity::kWarning, where + scope + msg, jail});
  }

  void CheckTime(const std::string& jail, const std::string& option, const Value& v) {
    if (!v.is_string()) return;
    Result<double> d = ParseDuration(v.as_string());
    if (!d.ok()) Error(jail, option, option + ": " + d.status().message());
  }

  void CheckServer(const std::string& option, const Value& v) {
    if (option == "dbpurgeage") CheckTime("", option, v);
  }

  // bantam's metrics endpoint: its address, and the extra option a
  // non-local one needs.
  void CheckMetrics() {
    const std::string* m = config_->extensions.Find("metrics");
    const std::string* r = config_->extensions.Find("metrics_allow_remote");
    Result<MetricsSettings> s = ParseMetricsSettings(m ? *m : "", r ? *r : "");
    if (!s.ok()) {
      const bool remote_bad = s.status().message().rfind("metrics_allow_remote", 0) == 0;
      Error("", remote_bad ? "metrics_allow_remote" : "metrics", s.status().message());
    }
  }

  void CheckBackend(const std::string& jail, const std::string& backend) {
    static const std::set<std::string> kKnown = {"auto", "pyinotify", "inotify", "polling",
                                                 "systemd", "ami"};
    Result<NamedOptions> b = ParseNamedOptions(backend);
    // The name in any case, as fail2ban lowercases it.
    const std::string name = b.ok() ? LowerAscii(PyStripAscii(b->name)) : std::string();
    if (b.ok() && name == "ami") {
      // Its options are checked here, and its messages never quote the
      // value: it may hold an inline secret.
      std::vector<std::string> warnings;
      Result<AmiOptions> o = ParseAmiOptions(b->options, &warnings);
      if (!o.ok()) Error(jail, "backend", o.status().message());
      for (const std::string& w : warnings) Warning(jail, "backend", w);
      return;
    }
    if (!b.ok() || !kKnown.count(name)) {
      Error(jail, "backend",
            "backend = '" + backend +
                "' is not one of auto, pyinotify, inotify, polling, systemd, ami");
    }
  }

  void CheckJail(const std::string& jail, const std::string& option, const Value& v) {
    static const std::set<std::string> kTimes = {"bantime", "findtime", "bantime.maxtime",
                                                 "bantime.rndtime"};
    if (kTimes.count(option)) {
      CheckTime(jail, option, v);
    } else if (option == "bantime.factor" && v.is_string()) {
      if (!ParseTimeValue(v.as_string()).ok())
        Error(jail, option, "bantime.factor = '" + v.as_string() + "' is not a number");
    } else if (option == "bantime.multipliers" && v.is_string()) {
      for (const std::string& w : SplitWords(v.as_string())) {
        Result<double> d = ParseDuration(w);
        if (!d.ok()) Error(jail, option, "bantime.multipliers: " + d.status().message());
      }
    } else if (option == "usedns" && v.is_string()) {
      static const std::set<std::string> kModes = {"yes", "no", "warn", "raw"};
      if (!kModes.count(LowerAscii(v.as_string())))
        Error(jail, option, "usedns = '" + v.as_string() + "' is not one of yes, no, warn, raw");
    } else if ((option == "addfailregex" || option == "addignoreregex") && v.is_string()) {
      RegexKind kind = option == "addfailregex" ? RegexKind::kFailRegex : RegexKind::kIgnoreRegex;
      Status s = CheckFailRegex(v.as_string(), kind, jails_[jail].options);
      if (!s.ok()) Error(jail, option.substr(3), s.message());
    }
  }

  struct JailContext {
    FailRegexOptions options;
    std::optional<std::string> prefregex;
  };

  LoadedConfig* config_;
  std::map<std::string, JailContext> jails_;
};

}  // namespace

void CheckConfig(LoadedConfig* config) { Checker(config).Run(); }

}  // namespace bantam
