#include "bantam/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

#include "bantam/config_check.h"
#include "bantam/config_loader.h"
#include "bantam/duration.h"
#include "bantam/fleet_config.h"
#include "bantam/layered_config.h"
#include "bantam/py.h"

namespace bantam {

namespace {

constexpr size_t kMaxLine = 1 << 20;  // protocol v1: a line is at most 1 MiB

// ---------------------------------------------------------------------------
// Option parsing (Python getopt semantics, which fail2ban-client uses).

struct LongOpt {
  const char* name;
  bool takes_value;
};
constexpr const char kShortOpts[] = "hc:s:p:xfbdtviqV";
constexpr LongOpt kLongOpts[] = {
    {"loglevel", true}, {"logtarget", true}, {"syslogsocket", true}, {"test", false},
    {"async", false},   {"conf", true},      {"pidfile", true},      {"pname", true},
    {"socket", true},   {"timeout", true},   {"str2sec", true},      {"help", false},
    {"version", false}, {"dp", false},       {"dump-pretty", false},
};

// getopt finds a long option by exact name or unique prefix; bantam's own
// --dump (older than this client) only by its exact name, since getopt
// would read "--dump" as a prefix of --dump-pretty.
Result<const LongOpt*> FindLong(const std::string& name) {
  static constexpr LongOpt kDump = {"dump", false};
  if (name == "dump") return &kDump;
  const LongOpt* found = nullptr;
  for (const LongOpt& o : kLongOpts) {
    if (name == o.name) return &o;
    if (std::string_view(o.name).substr(0, name.size()) == name) {
      if (found) return Status::Error("option --" + name + " not a unique prefix");
      found = &o;
    }
  }
  if (!found) return Status::Error("option --" + name + " not recognized");
  return found;
}

void Usage(const std::function<void(const std::string&)>& out, const std::string& caller) {
  out("Usage: " + caller + " [OPTIONS] <COMMAND>\n\n"
      "Controls the bantam daemon (bantamd) the way fail2ban-client controls\n"
      "fail2ban-server, over the same configuration directory.\n\n"
      "Options:\n"
      "    -c, --conf <DIR>        configuration directory (default: BANTAM_CONFDIR in\n"
      "                            /etc/default/bantam, else /etc/fail2ban)\n"
      "    -s, --socket <FILE>     control socket (default: from fail2ban.conf)\n"
      "    -p, --pidfile <FILE>    pid file of the daemon\n"
      "    --pname <NAME>          accepted for compatibility, not used\n"
      "    --loglevel <LEVEL>      daemon log level (with start)\n"
      "    --logtarget <TARGET>    daemon log target: a file, STDOUT, STDERR, SYSLOG,\n"
      "                            SYSTEMD-JOURNAL (with start)\n"
      "    --syslogsocket auto|<FILE>\n"
      "    -d, --dump              print the resolved configuration, a JSON array a line\n"
      "    --dp, --dump-pretty     the same as Python literals\n"
      "    -t, --test              check the configuration (alone or before a command)\n"
      "    -i                      read commands from the terminal, one a line\n"
      "    -v / -q                 more / less logging on stderr\n"
      "    -x                      let a starting daemon remove a stale socket\n"
      "    -b / -f                 start the daemon in the background (default) /\n"
      "                            in the foreground\n"
      "    --timeout <TIME>        how long start waits for the daemon (default 30)\n"
      "    --str2sec <STRING>      print a time value (1h 30m) in seconds\n"
      "    -h, --help              this help\n"
      "    -V, --version           version (-V: the version number alone)\n\n"
      "Commands:\n"
      "  Daemon:\n"
      "    start | restart | stop | ping [TIMEOUT] | version | status\n"
      "    reload [--restart] [--unban] [--if-exists] [--all | JAIL]\n"
      "    restart [--unban] [--if-exists] JAIL\n"
      "    flushlogs | echo WORD...\n"
      "  Bans:\n"
      "    banned [IP...]          jails holding each IP (all bans without IPs)\n"
      "    status [JAIL] --json | banned [IP...] --json   the same as one JSON object\n"
      "    unban --all | unban IP...\n"
      "    set JAIL banip IP... | set JAIL unbanip [--report-absent] IP...\n"
      "    get JAIL banip [SEP | --with-time] | get JAIL banned [IP...]\n"
      "  Jails:\n"
      "    add JAIL [BACKEND] | start JAIL | stop JAIL | status JAIL [FLAVOR]\n"
      "  Settings (see fail2ban's documentation for the full list):\n"
      "    get loglevel|logtarget|syslogsocket|dbfile|dbpurgeage|dbmaxmatches\n"
      "    set loglevel|logtarget|syslogsocket|dbfile|dbpurgeage|dbmaxmatches VALUE\n"
      "    get JAIL OPTION         logpath ignoreip failregex ignoreregex findtime\n"
      "                            bantime maxretry maxlines maxmatches usedns\n"
      "                            datepattern logencoding journalmatch actions ...\n"
      "    set JAIL OPTION VALUE   the same options, and addlogpath/dellogpath,\n"
      "                            addignoreip/delignoreip, addfailregex/delfailregex,\n"
      "                            addaction/delaction, idle on|off, attempt IP ...\n"
      "    get JAIL action ACT PROPERTY | set JAIL action ACT PROPERTY VALUE\n"
      "    get JAIL actionproperties ACT | get JAIL actionmethods ACT\n");
}

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ---------------------------------------------------------------------------
// Logging to stderr in fail2ban-client's default format, so that scripts
// and people reading both see the same lines.

class ClientLog {
 public:
  ClientLog(const ClientEnv& env, const int* verbose) : env_(env), verbose_(verbose) {}
  void Error(const std::string& msg) const { Write(40, "ERROR", msg); }
  void Warning(const std::string& msg) const { Write(30, "WARNING", msg); }
  void Info(const std::string& msg) const { Write(20, "INFO", msg); }

 private:
  void Write(int level, const char* name, const std::string& msg) const {
    const int v = *verbose_;
    const int threshold = v <= 0 ? 40 : v == 1 ? 30 : v == 2 ? 20 : 10;
    if (level < threshold) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char stamp[64];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    char head[160];
    std::snprintf(head, sizeof head, "%s,%03ld %-24s[%d]: %-7s ", stamp, ts.tv_nsec / 1000000,
                  "fail2ban", static_cast<int>(getpid()), name);
    env_.err(head + msg);
  }
  const ClientEnv& env_;
  const int* verbose_;
};

// ---------------------------------------------------------------------------
// Socket helpers.

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TransportError ErrnoError(int e) {
  return {e, "[Errno " + std::to_string(e) + "] " + std::strerror(e)};
}

// Waits for `events` on fd until `deadline` (Now() seconds; <0: forever).
bool WaitFd(int fd, short events, double deadline, TransportError* err) {
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      const double left = deadline - Now();
      if (left <= 0) {
        *err = {0, "timed out"};
        return false;
      }
      ms = static_cast<int>(std::ceil(left * 1000));
    }
    struct pollfd p = {fd, events, 0};
    const int n = ::poll(&p, 1, ms);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) {
      *err = ErrnoError(errno);
      return false;
    }
  }
}

// ---------------------------------------------------------------------------
// shlex.split (POSIX mode) for interactive lines.

Result<std::vector<std::string>> ShellSplit(const std::string& line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\'') {
      in_word = true;
      const size_t end = line.find('\'', i + 1);
      if (end == std::string::npos) return Status::Error("No closing quotation");
      cur += line.substr(i + 1, end - i - 1);
      i = end;
    } else if (c == '"') {
      in_word = true;
      size_t j = i + 1;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size() &&
            (line[j + 1] == '\\' || line[j + 1] == '"' || line[j + 1] == '$' ||
             line[j + 1] == '`')) {
          ++j;
        }
        cur += line[j];
      }
      if (j >= line.size()) return Status::Error("No closing quotation");
      i = j;
    } else if (c == '\\') {
      in_word = true;
      if (i + 1 >= line.size()) return Status::Error("No escaped character");
      cur += line[++i];
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      in_word = true;
      cur += c;
    }
  }
  if (in_word) words.push_back(cur);
  return words;
}

// Python's repr() of a tuple of values: "('x',)", "('a', 1)".
std::string PyTupleRepr(const Value::List& items) {
  std::string out = "(";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += PyReprValue(items[i]);
  }
  if (items.size() == 1) out += ",";
  return out + ")";
}

std::string PyListRepr(const std::vector<std::string>& words) {
  Value::List l(words.begin(), words.end());
  return PyReprValue(Value(std::move(l)));
}

bool ParseFloat(const std::string& s, double* out) {
  const char* begin = s.c_str();
  while (*begin == ' ' || *begin == '\t') ++begin;
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(begin, &end);
  if (end == begin) return false;
  while (*end == ' ' || *end == '\t' || *end == '\n') ++end;
  return *end == '\0';
}

// ---------------------------------------------------------------------------
// The client proper.

class Client {
 public:
  Client(const ClientEnv& env, ClientOptions opts)
      : env_(env),
        o_(std::move(opts)),
        log_(env, &o_.verbose),
        cli_loglevel_(o_.loglevel),
        cli_logtarget_(o_.logtarget),
        cli_syslogsocket_(o_.syslogsocket) {}

  int Run(const std::vector<std::string>& argv);

 private:
  Status ReadEarlyOptions();
  bool DumpAndTest(bool* finished);
  bool ProcessCommand(std::vector<std::string> cmd);
  // `status [JAIL] --json`, `banned [IP...] --json`: the reply as one JSON
  // object (docs/json.md), for scripts.
  bool JsonCommand(std::vector<std::string> cmd);
  // Sends `cmds` over one connection; prints answers when `show` (echo
  // and server-status always print). False when any failed.
  bool ProcessCmds(const std::vector<std::vector<std::string>>& cmds, bool show,
                   double timeout = -1);
  bool Ping(double timeout) { return ProcessCmds({{"ping"}}, false, timeout); }
  void LogSocketError(const TransportError& e, bool error_only);
  bool StartServer();
  bool WaitOnServer(bool alive, double maxtime);
  bool Reload(std::vector<std::string> cmd);
  int Interactive();
  Result<LoadedConfig> ReadConfig(const std::optional<std::string>& jail);

  const ClientEnv& env_;
  ClientOptions o_;
  ClientLog log_;
  // The logging options as given on the command line, before
  // fail2ban.conf filled the gaps: only these are passed to bantamd.
  const std::optional<std::string> cli_loglevel_, cli_logtarget_, cli_syslogsocket_;
  std::string socket_, pidfile_;
};

Status Client::ReadEarlyOptions() {
  struct Early {
    const char* name;
    std::optional<std::string>* slot;
    const char* fallback;
  };
  const Early kEarly[] = {
      {"socket", &o_.socket, "/var/run/fail2ban/fail2ban.sock"},
      {"pidfile", &o_.pidfile, "/var/run/fail2ban/fail2ban.pid"},
      {"logtarget", &o_.logtarget, "/var/log/fail2ban.log"},
      {"loglevel", &o_.loglevel, "INFO"},
      {"syslogsocket", &o_.syslogsocket, "auto"},
  };
  bool need = false;
  for (const Early& e : kEarly) need |= !e.slot->has_value();
  if (need) {
    struct stat st;
    if (::stat(o_.conf.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Status::Error("Base configuration directory " + o_.conf + " does not exist ");
    ConfigFileCache cache;
    LayeredConfig cfg(o_.conf, &cache);
    bool found = false;
    Status s = cfg.Read("fail2ban", &found);
    if (!s.ok()) return s;
    for (const Early& e : kEarly) {
      if (e.slot->has_value()) continue;
      Lookup l = found ? cfg.Get("Definition", e.name) : Lookup{LookupCode::kNoOption, "", ""};
      if (l.code == LookupCode::kError) return Status::Error(l.error);
      *e.slot = l.ok() ? l.value : std::string(e.fallback);
    }
  }
  // The level is checked here so a bad one fails before the daemon starts.
  static const std::set<std::string> kLevels = {
      "CRITICAL", "FATAL", "ERROR", "WARNING",    "WARN", "NOTICE", "INFO",
      "DEBUG",    "TRACEDEBUG",     "HEAVYDEBUG", "MSG",  "NOTSET"};
  std::string up = *o_.loglevel;
  for (char& c : up) c = static_cast<char>(::toupper(static_cast<unsigned char>(c)));
  const bool numeric =
      !up.empty() && up.find_first_not_of("0123456789") == std::string::npos;
  if (!numeric && !kLevels.count(up))
    return Status::Error("Invalid log level " + PyRepr(*o_.loglevel));
  socket_ = *o_.socket;
  pidfile_ = *o_.pidfile;
  return Status::Ok();
}

Result<LoadedConfig> Client::ReadConfig(const std::optional<std::string>& jail) {
  LoadOptions load;
  load.basedir = o_.conf;
  if (o_.socket) load.overrides.Set("socket", *o_.socket);
  if (o_.pidfile) load.overrides.Set("pidfile", *o_.pidfile);
  if (o_.loglevel) load.overrides.Set("loglevel", *o_.loglevel);
  if (o_.logtarget) load.overrides.Set("logtarget", *o_.logtarget);
  if (o_.syslogsocket) load.overrides.Set("syslogsocket", *o_.syslogsocket);
  load.jail = jail;
  return LoadConfig(load);
}

// -d / --dp / -t, as before this client had commands. Returns the success;
// *finished when nothing else is to run.
bool Client::DumpAndTest(bool* finished) {
  *finished = false;
  if (!o_.dump && !o_.test) return true;
  // Which tree is checked, when the operator did not name it: first, so it
  // stands above any error too.
  if (o_.test && !o_.conf_given)
    env_.out("Configuration directory " + o_.conf + " (" + o_.conf_origin + ")\n");
  Result<LoadedConfig> cfg = ReadConfig(std::nullopt);
  if (!cfg.ok()) {
    env_.err("ERROR: " + cfg.status().message());
    if (o_.test) env_.err("ERROR: test configuration failed");
    *finished = true;
    return false;
  }
  if (o_.test) {
    CheckConfig(&*cfg);
    // bantam's fleet options ([Fleet], per jail `fleet`): not in the stream.
    (void)LoadFleetSettings(o_.conf, /*read_secrets=*/false, &cfg->diagnostics);
  }
  for (const Diagnostic& d : cfg->diagnostics) {
    const bool error = d.severity == Diagnostic::Severity::kError;
    if (!error && !o_.test && o_.dump) continue;  // the dump stays quiet about warnings
    env_.err((error ? "" : "warning: ") + d.message);
  }
  if (o_.dump) {
    std::string text;
    for (const Value& cmd : cfg->commands)
      text += (o_.dump == 2 ? PyReprValue(cmd) : cmd.ToJson()) + "\n";
    env_.out(text);
    if (!o_.test) {
      *finished = true;
      return true;
    }
  }
  if (cfg->has_errors()) {
    env_.err("ERROR: test configuration failed");
    *finished = true;
    return false;
  }
  if (o_.args.empty()) {
    env_.out("OK: configuration test is successful\n");
    *finished = true;
  }
  return true;
}

void Client::LogSocketError(const TransportError& e, bool error_only) {
  if (::access(socket_.c_str(), F_OK) == 0) {
    if (::access(socket_.c_str(), W_OK) == 0) {
      if (error_only) {
        log_.Error(e.text);
      } else {
        log_.Error((e.text.empty() ? "" : "[" + e.text + "] ") +
                   "Unable to contact server. Is it running?");
      }
    } else {
      log_.Error("Permission denied to socket: " + socket_ + ", (you must be root)");
    }
  } else {
    log_.Error("Failed to access socket path: " + socket_ + ". Is fail2ban running?");
  }
}

bool Client::ProcessCmds(const std::vector<std::vector<std::string>>& cmds, bool show,
                         double timeout) {
  std::unique_ptr<ControlConnection> conn;
  bool all_ok = true;
  for (const std::vector<std::string>& c : cmds) {
    const bool always = !c.empty() && (c[0] == "echo" || c[0] == "server-status");
    TransportError terr;
    if (!conn) {
      conn = ControlConnection::Connect(socket_, timeout, &terr);
    } else {
      conn->set_timeout(timeout);
    }
    Reply reply;
    if (!conn || !conn->Call(c, &reply, &terr)) {
      if (terr.protocol) {
        log_.Error("ProtocolError: " + terr.text);
      } else if (show || o_.verbose > 1) {
        if (show || c[0] != "ping") LogSocketError(terr, !c.empty() && c[0] == "ping");
      }
      return false;
    }
    if (reply.ok) {
      if (show || always) env_.out(Beautify(c, reply.value) + "\n");
    } else {
      log_.Error("NOK: " + PyTupleRepr(reply.error.args));
      if (show) env_.out(BeautifyError(reply.error) + "\n");
      all_ok = false;
    }
  }
  return all_ok;
}

bool Client::WaitOnServer(bool alive, double maxtime) {
  const double start = Now();
  double sleep = 0.0125 / 2;
  for (;;) {
    const bool up = ::access(socket_.c_str(), F_OK) == 0 && Ping(sleep);
    if (up == alive) return true;
    const double waited = Now() - start;
    if (waited >= maxtime) return false;
    // Poll fast during the first 200 ms, then at most twice a second.
    sleep = std::min(sleep * 2, waited > 0.2 ? 0.5 : 0.1);
    std::this_thread::sleep_for(std::chrono::duration<double>(sleep));
  }
}

bool Client::StartServer() {
  if (Ping(0.1)) {
    log_.Error("Server already running");
    return false;
  }
  // bantamd reads its configuration itself; reading it here first reports
  // a broken tree before anything is started, as fail2ban-client does.
  Result<LoadedConfig> cfg = ReadConfig(std::nullopt);
  if (!cfg.ok()) {
    log_.Error("Failed during configuration: " + cfg.status().message());
    return false;
  }
  if (!o_.force && ::access(socket_.c_str(), F_OK) == 0) {
    log_.Error("Fail2ban seems to be in unexpected state (not running but the socket exists)");
    return false;
  }
  std::vector<std::string> args = {"bantamd", o_.background ? "-b" : "-f", "-c", o_.conf,
                                   "-s", socket_, "-p", pidfile_};
  if (o_.force) args.push_back("-x");
  // Logging options only when given here: bantamd reads fail2ban.conf for
  // the rest, and a later reload then sees changes to it.
  for (const auto& [flag, value] :
       {std::pair{"--loglevel", &cli_loglevel_}, std::pair{"--logtarget", &cli_logtarget_},
        std::pair{"--syslogsocket", &cli_syslogsocket_}}) {
    if (value->has_value()) {
      args.push_back(flag);
      args.push_back(**value);
    }
  }
  if (!env_.spawn_server(args, !o_.background)) {
    log_.Error("Could not start server " + std::string(o_.background ? "background" : "foreground"));
    return false;
  }
  if (!WaitOnServer(true, o_.timeout)) {
    log_.Error("Could not start server. Maybe an old socket file is still present. Try to remove " +
               socket_ + ". If you used fail2ban-client to start the server, adding the -x option "
               "will do it");
    return false;
  }
  return ProcessCmds({{"server-status"}}, false);
}

bool Client::Reload(std::vector<std::string> cmd) {
  std::vector<std::string> opts;
  while (cmd.size() >= 2) {
    if (cmd[1] == "--restart" || cmd[1] == "--unban" || cmd[1] == "--if-exists") {
      opts.push_back(cmd[1]);
      cmd.erase(cmd.begin() + 1);
      continue;
    }
    if (cmd.size() > 2) {
      log_.Error("Unexpected argument(s) for reload: " +
                 PyListRepr(std::vector<std::string>(cmd.begin() + 1, cmd.end())));
      return false;
    }
    break;
  }
  if (!Ping(-1)) {
    log_.Error("Could not find server");
    return false;
  }
  const bool all = cmd.size() == 1 || cmd[1] == "--all";
  // bantamd re-reads the configuration itself; reading it here as well
  // refuses a broken tree (or an unknown jail) before the daemon sees it.
  Result<LoadedConfig> cfg = ReadConfig(all ? std::nullopt : std::optional(cmd[1]));
  if (!cfg.ok()) {
    // fail2ban's wording for a jail the configuration does not have.
    const bool unknown_jail =
        !all && cfg.status().message().ends_with("section [" + cmd[1] + "] not found");
    log_.Error("Failed during configuration: " +
               (unknown_jail ? "No section: " + PyRepr(cmd[1]) : cfg.status().message()));
    return false;
  }
  if (!all) {
    bool known = false;
    for (const Value& c : cfg->commands) {
      known |= c.is_list() && c.as_list().size() >= 2 && c.as_list()[0] == Value("add") &&
               c.as_list()[1] == Value(cmd[1]);
    }
    if (!known) {
      log_.Error("Failed during configuration: No section: " + PyRepr(cmd[1]));
      return false;
    }
  }
  if (o_.interactive) env_.out("  ## reload ... \n");
  std::vector<std::string> request = {"reload"};
  request.insert(request.end(), opts.begin(), opts.end());
  if (cmd.size() > 1) request.push_back(cmd[1]);
  return ProcessCmds({request}, true);
}

bool Client::ProcessCommand(std::vector<std::string> cmd) {
  if (cmd.empty()) return false;
  if (cmd.size() == 1 && cmd[0] == "start") return StartServer();
  if (cmd[0] == "restart") {
    if (cmd.size() > 1) {
      cmd[0] = "reload";
      cmd.insert(cmd.begin() + 1, "--restart");
      return ProcessCommand(std::move(cmd));
    }
    if (o_.interactive) env_.out("  ## stop ... \n");
    ProcessCommand({"stop"});
    if (!WaitOnServer(false, o_.timeout)) {
      log_.Error("Could not stop server");
      return false;
    }
    if (o_.interactive) {
      env_.out("  ## load configuration ... \n");
      // A restart picks up changed early options (socket, pidfile).
      o_.socket = o_.pidfile = std::nullopt;
      o_.loglevel = cli_loglevel_;
      o_.logtarget = cli_logtarget_;
      o_.syslogsocket = cli_syslogsocket_;
      Status s = ReadEarlyOptions();
      if (!s.ok()) {
        env_.out("ERROR: " + s.message() + "\n");
        return false;
      }
      env_.out("  ## start ... \n");
    }
    return ProcessCommand({"start"});
  }
  if (cmd[0] == "reload") return Reload(std::move(cmd));
  if ((cmd[0] == "status" || cmd[0] == "banned") &&
      std::find(cmd.begin(), cmd.end(), "--json") != cmd.end()) {
    return JsonCommand(std::move(cmd));
  }
  if (std::optional<ServerError> refused = PrecheckCommand(cmd)) {
    log_.Error("NOK: " + PyTupleRepr(refused->args));
    env_.out(BeautifyError(*refused) + "\n");
    return false;
  }
  double timeout = -1;
  if (cmd[0] == "ping" && cmd.size() > 1) {
    if (!ParseFloat(cmd[1], &timeout)) {
      log_.Error("could not convert string to float: " + PyRepr(cmd[1]));
      return false;
    }
  }
  return ProcessCmds({cmd}, true, timeout);
}

namespace {

// "Currently failed" -> "currently_failed".
std::string JsonKey(const std::string& title) {
  std::string k = LowerAscii(title);
  std::replace(k.begin(), k.end(), ' ', '_');
  return k;
}

// A status section ([["Currently failed", 1], ["File list", [...]], ...])
// as an object.
Value SectionObject(const Value& section) {
  Value::Dict d;
  if (!section.is_list()) return Value(std::move(d));
  for (const Value& item : section.as_list()) {
    if (!item.is_list() || item.as_list().size() != 2) continue;
    d.emplace_back(JsonKey(item.as_list()[0].ToPyStr()), item.as_list()[1]);
  }
  return Value(std::move(d));
}

// `status JAIL`'s reply ([["Filter", [...]], ["Actions", [...]]]) as
// {"filter": {...}, "actions": {...}}.
Value JailObject(const Value& status) {
  Value::Dict d;
  if (!status.is_list()) return Value(std::move(d));
  for (const Value& part : status.as_list()) {
    if (!part.is_list() || part.as_list().size() != 2) continue;
    d.emplace_back(JsonKey(part.as_list()[0].ToPyStr()), SectionObject(part.as_list()[1]));
  }
  return Value(std::move(d));
}

}  // namespace

bool Client::JsonCommand(std::vector<std::string> cmd) {
  std::erase(cmd, "--json");
  std::vector<std::string> request = cmd;
  if (cmd[0] == "status") {
    if (cmd.size() > 2) {
      log_.Error("status --json takes at most one jail");
      return false;
    }
    // Every jail's status in one answer.
    if (cmd.size() == 1) request = {"status", "--all"};
  }
  TransportError terr;
  std::unique_ptr<ControlConnection> conn = ControlConnection::Connect(socket_, -1, &terr);
  Reply reply;
  if (!conn || !conn->Call(request, &reply, &terr)) {
    if (terr.protocol) {
      log_.Error("ProtocolError: " + terr.text);
    } else {
      LogSocketError(terr, false);
    }
    return false;
  }
  if (!reply.ok) {
    log_.Error("NOK: " + PyTupleRepr(reply.error.args));
    env_.out(Value(Value::Dict{{"error", Value(BeautifyError(reply.error))}}).ToJson() + "\n");
    return false;
  }
  Value::Dict out;
  out.emplace_back("version", Value(int64_t{1}));
  const Value& v = reply.value;
  if (cmd[0] == "status" && cmd.size() == 2) {
    Value::Dict jail{{"name", Value(cmd[1])}};
    const Value parts = JailObject(v);
    for (const auto& kv : parts.as_dict()) jail.push_back(kv);
    out.emplace_back("jail", Value(std::move(jail)));
  } else if (cmd[0] == "status") {
    // [["Number of jail", N], ["Jail list", "a, b"], {"a": status, ...}]
    Value::Dict jails;
    if (v.is_list() && v.as_list().size() == 3 && v.as_list()[2].is_dict()) {
      for (const auto& [name, status] : v.as_list()[2].as_dict()) {
        jails.emplace_back(name, JailObject(status));
      }
    }
    out.emplace_back("jails", Value(std::move(jails)));
  } else if (cmd.size() == 1) {
    // banned: [{"jail": [ip, ...]}, ...]
    Value::Dict jails;
    if (v.is_list()) {
      for (const Value& d : v.as_list()) {
        if (!d.is_dict()) continue;
        for (const auto& kv : d.as_dict()) jails.push_back(kv);
      }
    }
    out.emplace_back("banned", Value(std::move(jails)));
  } else {
    // banned IP...: one list of jails per address, in order.
    Value::Dict ips;
    if (v.is_list()) {
      for (size_t i = 0; i + 1 < cmd.size() && i < v.as_list().size(); ++i) {
        ips.emplace_back(cmd[i + 1], v.as_list()[i]);
      }
    }
    out.emplace_back("addresses", Value(std::move(ips)));
  }
  env_.out(Value(std::move(out)).ToJson() + "\n");
  return true;
}

int Client::Interactive() {
  if (!o_.args.empty() && !ProcessCommand(o_.args)) return 255;
  env_.out("bantam " BANTAM_VERSION " (fail2ban " + std::string(kFail2banCompatVersion) +
           " compatible). Type a command, 'help', or 'exit'.\n"
           "'history' lists earlier lines, '!!' repeats the last, '!N' line N.\n\n");
  const std::string prompt = env_.as_fail2ban ? "fail2ban> " : "bantam> ";
  std::vector<std::string> history;
  std::string line;
  for (;;) {
    if (!env_.read_line(prompt, &line)) {
      // End of input ends the session as fail2ban-client's does: a blank
      // line and status 255.
      env_.out("\n");
      return 255;
    }
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line == "!!" || (line.size() > 1 && line[0] == '!' &&
                         line.find_first_not_of("0123456789", 1) == std::string::npos)) {
      const size_t n = line == "!!" ? history.size() : std::strtoul(line.c_str() + 1, nullptr, 10);
      if (n == 0 || n > history.size()) {
        log_.Error(line + ": event not found");
        continue;
      }
      line = history[n - 1];
      env_.out(line + "\n");
    }
    if (line == "exit" || line == "quit") return 0;
    if (!line.empty()) history.push_back(line);
    if (line == "help") {
      Usage(env_.out, env_.as_fail2ban ? "fail2ban-client" : "bantam");
    } else if (line == "history") {
      for (size_t i = 0; i < history.size(); ++i)
        env_.out(std::to_string(i + 1) + "  " + history[i] + "\n");
    } else if (!line.empty()) {
      Result<std::vector<std::string>> words = ShellSplit(line);
      if (!words.ok()) {
        log_.Error(words.status().message());
      } else if (!words->empty()) {
        ProcessCommand(*words);
      }
    }
  }
}

int Client::Run(const std::vector<std::string>& argv) {
  const std::string caller = argv.empty() ? "bantam" : Basename(argv[0]);
  Status s = ReadEarlyOptions();
  if (!s.ok()) {
    env_.out("ERROR: " + s.message() + "\n");
    log_.Error("Init of command line failed");
    return 255;
  }
  bool finished = false;
  const bool ok = DumpAndTest(&finished);
  if (finished) return ok ? 0 : 255;
  if (o_.interactive) return Interactive();
  if (o_.args.empty()) {
    Usage(env_.out, caller);
    return 255;
  }
  return ProcessCommand(o_.args) ? 0 : 255;
}

bool Contains(std::initializer_list<const char*> names, const std::string& w) {
  for (const char* n : names)
    if (w == n) return true;
  return false;
}

ServerError PyException(const std::string& type, const std::string& message) {
  return {type, {Value(message)}, message};
}

}  // namespace

// ---------------------------------------------------------------------------

Result<ClientOptions> ParseClientArgs(const std::vector<std::string>& argv,
                                      const std::function<void(const std::string&)>& out,
                                      bool as_fail2ban) {
  // First collect (option, value) pairs as getopt does, then apply them in
  // order: an unknown option anywhere fails before -h acts.
  std::vector<std::pair<std::string, std::string>> opts;
  ClientOptions o;
  size_t i = 1;
  for (; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.size() < 2 || a[0] != '-') break;  // the command starts here
    if (a[1] == '-') {
      std::string name = a.substr(2), value;
      const size_t eq = name.find('=');
      const bool has_value = eq != std::string::npos;
      if (has_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      Result<const LongOpt*> lo = FindLong(name);
      if (!lo.ok()) return lo.status();
      if ((*lo)->takes_value && !has_value) {
        if (i + 1 >= argv.size())
          return Status::Error("option --" + std::string((*lo)->name) + " requires argument");
        value = argv[++i];
      } else if (!(*lo)->takes_value && has_value) {
        return Status::Error("option --" + std::string((*lo)->name) +
                             " must not have an argument");
      }
      opts.emplace_back("--" + std::string((*lo)->name), value);
      continue;
    }
    for (size_t k = 1; k < a.size(); ++k) {
      const char* spec = std::strchr(kShortOpts, a[k]);
      if (a[k] == ':' || !spec)
        return Status::Error("option -" + std::string(1, a[k]) + " not recognized");
      if (spec[1] == ':') {
        std::string value = a.substr(k + 1);
        if (value.empty()) {
          if (i + 1 >= argv.size())
            return Status::Error("option -" + std::string(1, a[k]) + " requires argument");
          value = argv[++i];
        }
        opts.emplace_back(std::string("-") + a[k], value);
        break;
      }
      opts.emplace_back(std::string("-") + a[k], "");
    }
  }
  o.args.assign(argv.begin() + std::min(i, argv.size()), argv.end());

  for (const auto& [opt, value] : opts) {
    if (opt == "-c" || opt == "--conf") {
      o.conf = value;
      o.conf_given = true;
    } else if (opt == "-s" || opt == "--socket") {
      o.socket = value;
    } else if (opt == "-p" || opt == "--pidfile") {
      o.pidfile = value;
    } else if (opt == "-d" || opt == "--dump") {
      o.dump = 1;
    } else if (opt == "--dp" || opt == "--dump-pretty") {
      o.dump = 2;
    } else if (opt == "-t" || opt == "--test") {
      o.test = true;
    } else if (opt == "-v") {
      ++o.verbose;
    } else if (opt == "-q") {
      --o.verbose;
    } else if (opt == "-x") {
      o.force = true;
    } else if (opt == "-i") {
      o.interactive = true;
    } else if (opt == "-b") {
      o.background = true;
    } else if (opt == "-f") {
      o.background = false;
    } else if (opt == "--timeout" || opt == "--str2sec") {
      Result<TimeValue> t = ParseTimeValue(value);
      if (!t.ok()) {
        o.error = "ERROR: " + t.status().message();
        o.done = true;
        o.exit_code = 255;
        return o;
      }
      if (opt == "--timeout") {
        o.timeout = t->seconds();
      } else {
        out(FormatStr2Sec(*t) + "\n");
        o.done = true;
        return o;
      }
    } else if (opt == "-h" || opt == "--help") {
      Usage(out, argv.empty() ? "bantam" : Basename(argv[0]));
      o.done = true;
      return o;
    } else if (opt == "-V" || opt == "--version") {
      // -V is what scripts parse: under fail2ban's name it reports the
      // fail2ban release whose behaviour bantam follows.
      if (opt == "-V") {
        out(std::string(as_fail2ban ? kFail2banCompatVersion : BANTAM_VERSION) + "\n");
      } else if (as_fail2ban) {
        out("Fail2Ban v" + std::string(kFail2banCompatVersion) + " (bantam " BANTAM_VERSION ")\n");
      } else {
        out("bantam v" BANTAM_VERSION " (fail2ban " + std::string(kFail2banCompatVersion) +
            " configuration compatible)\n");
      }
      o.done = true;
      return o;
    } else if (opt == "--loglevel") {
      o.loglevel = value;
    } else if (opt == "--logtarget") {
      o.logtarget = value;
    } else if (opt == "--syslogsocket") {
      o.syslogsocket = value;
    }
    // --async and --pname: accepted, nothing to do for bantam.
  }
  return o;
}

std::optional<ServerError> PrecheckCommand(const std::vector<std::string>& cmd) {
  const ServerError kInvalid = PyException("Exception", "Invalid command");
  const ServerError kIndex = PyException("IndexError", "list index out of range");
  if (cmd.empty()) return kInvalid;
  const std::string& c0 = cmd[0];
  const size_t n = cmd.size();
  if (Contains({"ping", "stop", "banned", "echo", "server-status", "flushlogs", "version"}, c0))
    return std::nullopt;
  if (c0 == "start" || c0 == "add") return n < 2 ? std::optional(kIndex) : std::nullopt;
  if (c0 == "unban") return n < 2 ? std::optional(kInvalid) : std::nullopt;
  if (c0 == "status") {
    if (n > 3) return PyException("Exception", "Invalid command (no status)");
    return std::nullopt;
  }
  if (c0 == "get") {
    if (n < 2) return kIndex;
    if (Contains({"loglevel", "logtarget", "syslogsocket", "thread", "dbfile", "dbmaxmatches",
                  "dbpurgeage"},
                 cmd[1]))
      return std::nullopt;
    if (n < 3) return kIndex;
    const std::string& what = cmd[2];
    if (what == "action") return n < 5 ? std::optional(kIndex) : std::nullopt;
    if (what == "actionproperties" || what == "actionmethods")
      return n < 4 ? std::optional(kIndex) : std::nullopt;
    if (Contains({"banned", "logpath", "logencoding", "journalmatch", "ignoreself", "ignoreip",
                  "ignorecommand", "ignorecache", "prefregex", "failregex", "ignoreregex",
                  "usedns", "findtime", "datepattern", "logtimezone", "maxmatches", "maxretry",
                  "maxlines", "bantime", "banip", "actions", /* bantam's */ "fleet"},
                 what) ||
        what.rfind("bantime.", 0) == 0)
      return std::nullopt;
    return PyException("Exception", "Invalid command (no get action or not yet implemented)");
  }
  if (c0 == "set") {
    if (n < 2) return kIndex;
    if (Contains({"loglevel", "logtarget", "syslogsocket", "allowipv6", "thread", "dbfile"},
                 cmd[1]))
      return n < 3 ? std::optional(kIndex) : std::nullopt;
    if (cmd[1] == "dbmaxmatches" || cmd[1] == "dbpurgeage") return std::nullopt;
    if (n < 3) return kIndex;
    const std::string& what = cmd[2];
    if (Contains({"addignoreip", "banip", "attempt"}, what)) return std::nullopt;
    if (Contains({"idle", "ignoreself", "delignoreip", "ignorecommand", "ignorecache",
                  "addlogpath", "dellogpath", "logencoding", "addjournalmatch",
                  "deljournalmatch", "prefregex", "addfailregex", "delfailregex",
                  "addignoreregex", "delignoreregex", "usedns", "findtime", "datepattern",
                  "logtimezone", "maxmatches", "maxretry", "maxlines", "bantime", "unbanip",
                  "addaction", "delaction", "action"},
                 what) ||
        what.rfind("bantime.", 0) == 0)
      return n < 4 ? std::optional(kIndex) : std::nullopt;
    return PyException("Exception", "Invalid command " + PyRepr(what) +
                                        " (no set action or not yet implemented)");
  }
  return kInvalid;
}

std::string EncodeRequest(const std::vector<std::string>& cmd) {
  Value::List words(cmd.begin(), cmd.end());
  Value::Dict req = {{"v", Value(1)}, {"cmd", Value(std::move(words))}};
  return Value(std::move(req)).ToJson();
}

Result<Reply> DecodeReply(std::string_view line) {
  Result<Value> parsed = Value::ParseJson(line);
  if (!parsed.ok()) return Status::Error("bad answer: " + parsed.status().message());
  if (!parsed->is_dict()) return Status::Error("bad answer: not a JSON object");
  const Value* v = nullptr;
  const Value* ok = nullptr;
  const Value* value = nullptr;
  const Value* error = nullptr;
  for (const auto& [k, e] : parsed->as_dict()) {
    if (k == "v") v = &e;
    if (k == "ok") ok = &e;
    if (k == "value") value = &e;
    if (k == "error") error = &e;
  }
  if (!v || !v->is_int() || v->as_int() != 1)
    return Status::Error("bad answer: protocol version is not 1");
  if (!ok || !ok->is_bool()) return Status::Error("bad answer: no \"ok\"");
  Reply r;
  r.ok = ok->as_bool();
  if (r.ok) {
    if (value) r.value = *value;
    return r;
  }
  if (!error || !error->is_dict()) return Status::Error("bad answer: no \"error\"");
  bool has_message = false;
  for (const auto& [k, e] : error->as_dict()) {
    if (k == "type" && e.is_string()) r.error.type = e.as_string();
    if (k == "args" && e.is_list()) r.error.args = e.as_list();
    if (k == "message" && e.is_string()) {
      r.error.message = e.as_string();
      has_message = true;
    }
  }
  if (r.error.type.empty()) return Status::Error("bad answer: error without a type");
  if (!has_message) {
    // str() of an exception: its single argument, or the tuple of them.
    r.error.message = r.error.args.size() == 1 ? PyStrValue(r.error.args[0])
                                                : PyTupleRepr(r.error.args);
  }
  return r;
}

std::unique_ptr<ControlConnection> ControlConnection::Connect(const std::string& path,
                                                              double timeout,
                                                              TransportError* err) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    *err = {ENAMETOOLONG, "AF_UNIX path too long"};
    return nullptr;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = ErrnoError(errno);
    return nullptr;
  }
  // A Unix-socket connect completes or fails at once (a full backlog says
  // EAGAIN), so it needs no deadline of its own.
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    *err = ErrnoError(errno);
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<ControlConnection>(new ControlConnection(fd, timeout));
}

ControlConnection::~ControlConnection() { ::close(fd_); }

bool ControlConnection::Call(const std::vector<std::string>& cmd, Reply* reply,
                             TransportError* err) {
  const double deadline = timeout_ < 0 ? -1 : Now() + timeout_;
  const std::string line = EncodeRequest(cmd) + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    if (!WaitFd(fd_, POLLOUT, deadline, err)) return false;
    const ssize_t w = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      *err = ErrnoError(errno);
      return false;
    }
    sent += static_cast<size_t>(w);
  }
  size_t nl;
  while ((nl = buffer_.find('\n')) == std::string::npos) {
    if (buffer_.size() > kMaxLine) {
      *err = {0, "answer longer than 1 MiB", true};
      return false;
    }
    if (!WaitFd(fd_, POLLIN, deadline, err)) return false;
    char buf[65536];
    const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      *err = ErrnoError(errno);
      return false;
    }
    if (r == 0) {
      // What fail2ban's client reports for a connection closed mid-answer.
      *err = ErrnoError(ECONNRESET);
      return false;
    }
    buffer_.append(buf, static_cast<size_t>(r));
  }
  Result<Reply> decoded = DecodeReply(std::string_view(buffer_).substr(0, nl));
  buffer_.erase(0, nl + 1);
  if (!decoded.ok()) {
    *err = {0, decoded.status().message(), true};
    return false;
  }
  *reply = std::move(*decoded);
  return true;
}

ClientEnv SystemClientEnv(const std::string& argv0) {
  ClientEnv env;
  env.as_fail2ban = Basename(argv0) == "fail2ban-client";
  env.out = [](const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  };
  env.err = [](const std::string& s) {
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
  };
  env.read_line = [](const std::string& prompt, std::string* line) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
    return static_cast<bool>(std::getline(std::cin, *line));
  };
  env.spawn_server = [](const std::vector<std::string>& args, bool foreground) {
    // bantamd next to this program first (a build tree), then in ../sbin
    // (the package: /usr/bin/bantam, /usr/sbin/bantamd), then the PATH.
    std::string exe;
    char self[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
      self[n] = '\0';
      std::string dir(self);
      dir = dir.substr(0, dir.rfind('/') + 1);
      if (::access((dir + "bantamd").c_str(), X_OK) == 0) {
        exe = dir + "bantamd";
      } else if (::access((dir + "../sbin/bantamd").c_str(), X_OK) == 0) {
        exe = dir + "../sbin/bantamd";
      }
    }
    std::vector<char*> cargv;
    for (const std::string& a : args) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    auto exec = [&] {
      if (!exe.empty()) ::execv(exe.c_str(), cargv.data());
      ::execvp("bantamd", cargv.data());
      std::fprintf(stderr, "ERROR: cannot run bantamd: %s\n", std::strerror(errno));
    };
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (foreground) {
      // The daemon keeps this process (its pid, terminal and signals); the
      // child reports when it answers.
      if (pid > 0) {
        exec();
        ::_exit(255);
      }
      return true;
    }
    if (pid == 0) {
      exec();
      ::_exit(255);
    }
    // bantamd -b returns once it has forked into the background, or fails.
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  return env;
}

int RunClient(const std::vector<std::string>& argv, const ClientEnv& env) {
  Result<ClientOptions> opts = ParseClientArgs(argv, env.out, env.as_fail2ban);
  if (!opts.ok()) {
    Usage(env.out, argv.empty() ? "bantam" : Basename(argv[0]));
    env.err("ERROR: " + opts.status().message());
    env.err("Init of command line failed");
    return 255;
  }
  if (!opts->error.empty()) env.err(opts->error);
  if (opts->done) return opts->exit_code;
  if (!opts->conf_given) {
    Result<ConfigDirChoice> conf = ChooseConfigDir(std::nullopt, env.defaults_file);
    if (!conf.ok()) {
      env.err("ERROR: " + conf.status().message());
      return 255;
    }
    opts->conf = conf->dir;
    opts->conf_origin = conf->origin;
  }
  Client client(env, std::move(*opts));
  return client.Run(argv);
}

}  // namespace bantam
