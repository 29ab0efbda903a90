// Server: bantamd's core, fail2ban-server's job. It reads the configuration
// (LoadConfig), opens the log target and the ban database, builds the jails
// and their actions, restores unexpired bans, tails every jail's logs, and
// runs it all on one EventLoop until SIGTERM/SIGINT. Shell actions run on a
// worker pool and report back through its completion fd.
//
// Not thread-safe: created, run and destroyed on one thread.
#ifndef BANTAM_SERVER_H_
#define BANTAM_SERVER_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

class Clock;
class Spawner;

struct ServerOptions {
  std::string basedir = "/etc/fail2ban";
  // Why `basedir` (ChooseConfigDir's origin), logged at start-up.
  std::string basedir_origin = "-c";
  // Command-line settings that win over fail2ban.conf: loglevel,
  // logtarget, syslogsocket, socket, pidfile.
  OrderedMap<std::string> overrides;
  // bantamd -b: called once the configuration is read and the log target
  // open, before the database is opened and before any thread starts (a
  // fork() keeps only the calling thread, and SQLite connections must not
  // cross it). Errors after it go to the log only.
  std::function<Status()> detach;
  // Seams for tests; not owned, and must outlive the Server. `clock`: the
  // jails' "now" (failure windows, ban expiry; the loop's timers stay on
  // real time); null: SystemClock(). `spawner`: runs shell actions and
  // ignorecommands, from worker threads; null: a ShellSpawner.
  const Clock* clock = nullptr;
  Spawner* spawner = nullptr;
};

class ServerImpl;

class Server {
 public:
  // Loads the configuration and opens everything. Error: a configuration
  // error ("file:line: ..."), an unusable log target or database.
  static Result<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts the jails (actionstart, restore, log reading) and runs until
  // Stop() or a termination signal; then stops the jails (unban, actionstop)
  // and saves the log positions.
  Status Run();
  void Stop();

  // Run() in steps, for tests that drive the server on their own thread:
  // Start() does what Run() does before it waits for events (signals,
  // control socket, jails started, logs read in); RunUntil() serves events
  // until `done()` (checked every 10 ms and before waiting) or `timeout`
  // of real time, saying whether done() became true; Finish() does what
  // Run() does after the loop (stops the jails, saves the positions).
  Status Start();
  Result<bool> RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  void Finish();

 private:
  explicit Server(std::unique_ptr<ServerImpl> impl);
  std::unique_ptr<ServerImpl> impl_;
};

}  // namespace bantam

#endif  // BANTAM_SERVER_H_
