// The fail2ban-client compatible command line client: option parsing,
// the control-socket connection, command dispatch and the server start.
//
// `bantam` (or `fail2ban-client`, a link to it) takes fail2ban-client's
// options and commands, sends each command to bantamd as one JSON line
//   {"v": 1, "cmd": ["status", "sshd"]}
// and prints the answer as fail2ban-client would (see beautifier.h). The
// exit status is 0 on success and 255 on any failure, as fail2ban's.
//
// Deliberate differences from fail2ban-client 1.0.2:
// - Commands the server would refuse in any state (unknown words, missing
//   arguments) are refused here, with the text the server would have sent,
//   so nothing is sent and the answer is the same with no server running.
// - -d prints JSON arrays; --dp prints Python literals a line (no pformat
//   wrapping); -h is our own text.
// - -V prints the fail2ban release bantam follows ("1.0.2") when run as
//   fail2ban-client, bantam's own version when run as bantam; --version
//   prints "Fail2Ban v1.0.2 (bantam X)" / "bantam vX (fail2ban 1.0.2 ...)".
// - start/reload send no configuration stream: bantamd reads its own. The
//   client still reads the tree first so errors stop it as they do
//   fail2ban-client. -f start runs bantamd in this process (exec) and a
//   forked child prints "Server ready" once it answers.
// - Interactive mode (-i) reads plain lines (no GNU readline: it would make
//   the binary GPL-3 and add a build dependency for a debugging aid; use
//   rlwrap for editing). History is in memory: `history`, `!!`, `!N`.
#ifndef BANTAM_CLIENT_H_
#define BANTAM_CLIENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bantam/beautifier.h"
#include "bantam/config_dir.h"
#include "bantam/status.h"
#include "bantam/value.h"

namespace bantam {

// The command line as fail2ban-client understands it.
struct ClientOptions {
  // -c; without it RunClient fills `conf` from ChooseConfigDir.
  std::string conf = "/etc/fail2ban";
  bool conf_given = false;
  std::string conf_origin = "-c";  // ChooseConfigDir's origin, for -t
  // Unset: taken from CONF's fail2ban.conf/.local [Definition].
  std::optional<std::string> socket, pidfile, loglevel, logtarget, syslogsocket;
  int dump = 0;  // 1 for -d (JSON lines), 2 for --dp (Python literals)
  bool test = false;
  bool interactive = false;
  bool force = false;       // -x: the server may remove a stale socket
  bool background = true;   // -b (default) / -f
  int verbose = 1;          // -v adds, -q takes away
  double timeout = 30;      // --timeout: how long to wait for a server start
  std::vector<std::string> args;  // the command words

  // What stops the run right after parsing (-h, -V, --str2sec), already
  // printed; `exit_code` says how it ended.
  bool done = false;
  int exit_code = 0;
  std::string error;  // for stderr, when done with a failure
};

// Parses argv[1..] like fail2ban-client (getopt: bundled short options,
// unambiguous long-option prefixes, the first non-option word starts the
// command). -h, -V, --version and --str2sec print through `out` and set
// done. Error: the message of the unknown option or missing argument.
Result<ClientOptions> ParseClientArgs(const std::vector<std::string>& argv,
                                      const std::function<void(const std::string&)>& out,
                                      bool as_fail2ban);

// One answer from the control socket.
struct Reply {
  bool ok = false;
  Value value;        // when ok
  ServerError error;  // otherwise
};

// A failed exchange: `text` is what Python's socket error would say
// ("[Errno 111] Connection refused", "timed out").
struct TransportError {
  int errnum = 0;  // 0 for a timeout or a protocol error
  std::string text;
  bool protocol = false;  // the answer was not protocol v1
};

// A connection to bantamd's control socket; owns the fd.
class ControlConnection {
 public:
  // `timeout` in seconds applies to the connect and to every Call unless
  // the call gives its own; negative means wait forever.
  static std::unique_ptr<ControlConnection> Connect(const std::string& path, double timeout,
                                                    TransportError* err);
  ~ControlConnection();
  ControlConnection(const ControlConnection&) = delete;
  ControlConnection& operator=(const ControlConnection&) = delete;

  // Sends one request line and reads one answer line. False with *err on a
  // socket error, a timeout or an answer that is not protocol v1.
  bool Call(const std::vector<std::string>& cmd, Reply* reply, TransportError* err);
  void set_timeout(double seconds) { timeout_ = seconds; }

 private:
  ControlConnection(int fd, double timeout) : fd_(fd), timeout_(timeout) {}
  int fd_;
  double timeout_;
  std::string buffer_;  // bytes read past the last answer line
};

// The request line for `cmd` (without the newline), and the decoding of an
// answer line. Exposed for tests.
std::string EncodeRequest(const std::vector<std::string>& cmd);
Result<Reply> DecodeReply(std::string_view line);

// A command the server would refuse whatever its state, found before
// anything is sent: the ServerError fail2ban's server would raise for it
// ("Invalid command", an IndexError for missing words). nullopt: send it.
std::optional<ServerError> PrecheckCommand(const std::vector<std::string>& cmd);

// Where the client meets the world; tests replace all of it.
struct ClientEnv {
  std::function<void(const std::string&)> out;  // stdout, one call per printed text
  std::function<void(const std::string&)> err;  // stderr, one call per line
  // Reads one interactive line after showing `prompt`; false at end of input.
  std::function<bool(const std::string& prompt, std::string* line)> read_line;
  // Starts the server with these arguments (argv[0] is the program); in the
  // foreground when `foreground`. False when it could not be started.
  std::function<bool(const std::vector<std::string>& args, bool foreground)> spawn_server;
  bool as_fail2ban = false;  // invoked as fail2ban-client
  // Names the configuration directory when -c is not given (config_dir.h).
  std::string defaults_file = kDefaultsFile;
};

// The real stdout/stderr/stdin and a spawner that runs bantamd found next
// to `self_exe` (or on PATH).
ClientEnv SystemClientEnv(const std::string& argv0);

// Runs one invocation: argv as given to main(). Returns the exit status.
int RunClient(const std::vector<std::string>& argv, const ClientEnv& env);

}  // namespace bantam

#endif  // BANTAM_CLIENT_H_
