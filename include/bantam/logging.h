// Logging in fail2ban.log's format, so operators, their scripts and the
// stock recidive jail read bantamd's log exactly like fail2ban's:
//   2026-11-25 16:18:31,640 fail2ban.actions        [1234]: NOTICE  [asterisk] Ban 192.0.2.1
// Targets as fail2ban's `logtarget`: a file path, STDOUT, STDERR,
// SYSLOG[facility=...] (through syslogsocket) or SYSTEMD-JOURNAL. Sinks are
// spdlog's; the line format is fail2ban's, built here.
//
// Thread-safe: Log() may be called from any thread.
#ifndef BANTAM_LOGGING_H_
#define BANTAM_LOGGING_H_

#include <atomic>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>

#include "bantam/status.h"

namespace spdlog {
class logger;
}

namespace bantam {

// fail2ban's levels (Python logging numbers, plus its NOTICE and debug levels).
enum class LogLevel : int {
  kHeavyDebug = 5,
  kTraceDebug = 7,
  kDebug = 10,
  kInfo = 20,
  kNotice = 25,
  kWarning = 30,
  kError = 40,
  kCritical = 50,
};

// fail2ban's str2LogLevel: a name (any case; WARN, FATAL accepted) or a number.
Result<LogLevel> ParseLogLevel(std::string_view text);
// "NOTICE", "WARNING", ...; numbers without a name print as "Level N".
std::string LogLevelName(LogLevel level);

// One line as fail2ban's formatter writes it: "%(asctime)s %(name)-24s
// [%(process)d]: %(levelname)-7s %(message)s", asctime in local time with
// milliseconds ("2026-11-25 16:18:31,640"). Syslog drops the time and the
// padding.
// "2026-11-25 16:18:31" for `t` in local time (cached per thread and second).
std::string_view LocalTimeText(time_t t);

std::string FormatLogLine(double epoch, std::string_view component, int pid, LogLevel level,
                          std::string_view message, bool with_time = true, bool padding = true);

class Logger {
 public:
  // Opens `target` as fail2ban's setLogTarget does. `syslog_socket` is
  // fail2ban's syslogsocket ("auto" or a path). Error: "Unable to log to
  // '/x/y.log': No such file or directory", unknown syslog facility, ...
  static Result<std::unique_ptr<Logger>> Open(std::string_view target, std::string_view syslog_socket,
                                              LogLevel level);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // File targets buffer their lines until Flush() (the daemon calls it
  // once per event-loop turn) or an ERROR or worse, which is written at once.
  void Log(LogLevel level, std::string_view component, std::string_view message);
  void Flush();
  // The pid written in each line is read once; a process that forks
  // (bantamd -b) calls this in the child.
  void AfterFork();
  bool Enabled(LogLevel level) const { return static_cast<int>(level) >= level_.load(); }
  void set_level(LogLevel level) { level_ = static_cast<int>(level); }
  LogLevel level() const { return static_cast<LogLevel>(level_.load()); }
  const std::string& target() const { return target_; }

  // fail2ban-client flushlogs: reopens a file target (after logrotate moved
  // it). Returns "flushed" or "rolled over" as fail2ban does.
  Result<std::string> Reopen();
  // Reopens a file target whose path no longer names the open file (moved
  // or deleted by a logrotate whose postrotate could not reach us, such as
  // fail2ban's own `fail2ban-client flushlogs` for /var/log/fail2ban.log).
  // Returns whether it reopened; an error if the new file cannot be opened.
  Result<bool> ReopenIfMoved();

 private:
  Logger() = default;

  std::string target_;
  std::string path_;  // for file targets
  bool with_time_ = true;
  bool padding_ = true;
  bool journal_ = false;
  std::atomic<int> level_{static_cast<int>(LogLevel::kInfo)};
  int pid_ = 0;
  std::shared_ptr<spdlog::logger> sink_logger_;
};

}  // namespace bantam

#endif  // BANTAM_LOGGING_H_
