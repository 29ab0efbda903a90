#include "bantam/fleet_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "bantam/fleet_entry.h"
#include "bantam/layered_config.h"

namespace bantam {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

class FleetReader {
 public:
  FleetReader(const std::string& basedir, bool read_secrets, std::vector<Diagnostic>* d)
      : basedir_(basedir), read_secrets_(read_secrets), diags_(d) {}

  FleetSettings Run() {
    ConfigFileCache cache;
    LayeredConfig server(basedir_, &cache);
    bool found = false;
    if (server.Read("fail2ban", &found).ok() && found && server.HasSection("Fleet")) {
      ReadServer(server);
    }
    LayeredConfig jails(basedir_, &cache);
    found = false;
    if (jails.Read("jail", &found).ok() && found) ReadJails(jails);
    return std::move(out_);
  }

 private:
  void Add(Diagnostic::Severity sev, const SourceLoc& loc, const std::string& jail,
           const std::string& message) {
    Diagnostic d;
    d.severity = sev;
    d.jail = jail;
    d.message = (loc.file.empty() ? "" : loc.ToString() + ": ") + message;
    // An error of [DEFAULT] shows up once, not once per jail.
    if (!seen_.insert(d.message).second) return;
    diags_->push_back(std::move(d));
  }
  void Error(const SourceLoc& loc, const std::string& message, const std::string& jail = "") {
    Add(Diagnostic::Severity::kError, loc, jail, message);
  }

  // The option's value, or "" when unset; interpolation errors reported.
  std::string Get(const LayeredConfig& cfg, const std::string& section, const std::string& opt) {
    Lookup l = cfg.Get(section, opt);
    if (l.code == LookupCode::kError) {
      Error({}, l.error);
      return "";
    }
    return l.ok() ? Trim(l.value) : "";
  }

  // The contents of a secret file, first line, trimmed.
  bool ReadSecret(const std::string& path, const SourceLoc& loc, const std::string& opt,
                  bool private_file, std::string* out) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      Error(loc, "[Fleet] " + opt + " " + path + ": no such file");
      return false;
    }
    if (private_file && (st.st_mode & 0007) != 0) {
      Add(Diagnostic::Severity::kWarning, loc, "",
          "[Fleet] " + opt + " " + path + " is readable by others (chmod o-rwx, 0600 or 0640)");
    }
    if (!read_secrets_) {
      if (::access(path.c_str(), R_OK) != 0) {
        Error(loc, "[Fleet] " + opt + " " + path + ": not readable");
        return false;
      }
      return true;
    }
    std::ifstream in(path);
    if (!in) {
      Error(loc, "[Fleet] " + opt + " " + path + ": cannot be read");
      return false;
    }
    std::string line;
    std::getline(in, line);
    *out = Trim(line);
    return true;
  }

  void ReadServer(const LayeredConfig& cfg) {
    const std::string redis = Get(cfg, "Fleet", "redis");
    const SourceLoc redis_loc = cfg.Where("Fleet", "redis");
    if (redis.empty()) return;  // [Fleet] without redis: the fleet is off
    out_.enabled = true;
    out_.redis = redis;
    if (redis.rfind("unix:", 0) == 0) {
      out_.unix_path = redis.substr(5);
      if (out_.unix_path.empty() || out_.unix_path[0] != '/') {
        Error(redis_loc, "[Fleet] redis " + redis + ": expected unix:/absolute/path");
      }
    } else {
      const size_t colon = redis.rfind(':');
      int64_t port = 0;
      std::string host = colon == std::string::npos ? redis : redis.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      if (colon == std::string::npos || host.empty() ||
          !ParseInt(redis.substr(colon + 1), &port) || port < 1 || port > 65535) {
        Error(redis_loc, "[Fleet] redis " + redis + ": expected HOST:PORT or unix:/path");
      } else {
        out_.host = host;
        out_.port = static_cast<int>(port);
      }
    }
    if (std::string db = Get(cfg, "Fleet", "db"); !db.empty()) {
      int64_t n = 0;
      if (!ParseInt(db, &n) || n < 0 || n > 65535) {
        Error(cfg.Where("Fleet", "db"), "[Fleet] db " + db + ": expected a database number");
      } else {
        out_.db = static_cast<int>(n);
      }
    }
    out_.username = Get(cfg, "Fleet", "username");
    if (std::string pf = Get(cfg, "Fleet", "password_file"); !pf.empty()) {
      ReadSecret(pf, cfg.Where("Fleet", "password_file"), "password_file", true, &out_.password);
    }
    out_.node = Get(cfg, "Fleet", "node");
    if (out_.node.empty()) {
      char host[256] = {};
      if (::gethostname(host, sizeof host - 1) == 0) out_.node = host;
      const size_t dot = out_.node.find('.');
      if (dot != std::string::npos) out_.node.resize(dot);
    }
    if (!ValidFleetName(out_.node)) {
      Error(cfg.Where("Fleet", "node"),
            "[Fleet] node '" + out_.node + "': 1 to 64 letters, digits or ._-@:");
    }
    if (std::string s = Get(cfg, "Fleet", "stream"); !s.empty()) {
      bool ok = s.size() <= 128;
      for (char c : s) ok = ok && c > ' ' && c != 0x7f;
      if (!ok) Error(cfg.Where("Fleet", "stream"), "[Fleet] stream '" + s + "': not a key name");
      out_.stream = s;
    }
    if (std::string m = Get(cfg, "Fleet", "maxlen"); !m.empty()) {
      if (!ParseInt(m, &out_.maxlen) || out_.maxlen < 100) {
        Error(cfg.Where("Fleet", "maxlen"), "[Fleet] maxlen " + m + ": expected a number >= 100");
      }
    }
    const std::string key_file = Get(cfg, "Fleet", "key_file");
    if (key_file.empty()) {
      Error(redis_loc, "[Fleet] has redis but no key_file: entries cannot be signed");
    } else if (ReadSecret(key_file, cfg.Where("Fleet", "key_file"), "key_file", true, &out_.key) &&
               read_secrets_ && out_.key.size() < 16) {
      Error(cfg.Where("Fleet", "key_file"),
            "[Fleet] key_file " + key_file + ": the secret is shorter than 16 bytes");
    }
  }

  void ReadJails(const LayeredConfig& cfg) {
    for (const std::string& sec : cfg.Sections()) {
      if (sec == "INCLUDES" || sec == "DEFAULT") continue;
      FleetJailSettings j;
      const std::string mode = Lower(Get(cfg, sec, "fleet"));
      const SourceLoc loc = cfg.Where(sec, "fleet");
      if (mode.empty() || mode == "no" || mode == "false" || mode == "off") {
        j.mode = FleetMode::kNo;
      } else if (mode == "share") {
        j.mode = FleetMode::kShare;
      } else if (mode == "publish") {
        j.mode = FleetMode::kPublish;
      } else if (mode == "apply") {
        j.mode = FleetMode::kApply;
      } else {
        Error(loc, "fleet = " + mode + ": expected share, publish, apply or no", sec);
        continue;
      }
      const std::string failures = Lower(Get(cfg, sec, "fleet_failures"));
      if (failures == "yes" || failures == "true" || failures == "on" || failures == "1") {
        j.failures = true;
      } else if (!failures.empty() && failures != "no" && failures != "false" &&
                 failures != "off" && failures != "0") {
        Error(cfg.Where(sec, "fleet_failures"),
              "fleet_failures = " + failures + ": expected yes or no", sec);
      }
      if (j.mode == FleetMode::kNo) {
        if (j.failures) {
          Add(Diagnostic::Severity::kWarning, cfg.Where(sec, "fleet_failures"), sec,
              "fleet_failures = yes has no effect without fleet = share, publish or apply");
        }
        continue;
      }
      if (!out_.enabled && IsEnabled(cfg, sec)) {
        Error(loc, "fleet = " + mode + " but fail2ban.local has no [Fleet] redis", sec);
      }
      out_.jails[sec] = j;
    }
  }

  bool IsEnabled(const LayeredConfig& cfg, const std::string& sec) {
    const std::string e = Lower(Get(cfg, sec, "enabled"));
    return e == "true" || e == "yes" || e == "1" || e == "on";
  }

  std::string basedir_;
  bool read_secrets_;
  std::vector<Diagnostic>* diags_;
  std::set<std::string> seen_;
  FleetSettings out_;
};

}  // namespace

const char* FleetModeName(FleetMode mode) {
  switch (mode) {
    case FleetMode::kShare: return "share";
    case FleetMode::kPublish: return "publish";
    case FleetMode::kApply: return "apply";
    case FleetMode::kNo: break;
  }
  return "no";
}

FleetSettings LoadFleetSettings(const std::string& basedir, bool read_secrets,
                                std::vector<Diagnostic>* diagnostics) {
  return FleetReader(basedir, read_secrets, diagnostics).Run();
}

}  // namespace bantam
