#include "bantam/logging.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>

#include "bantam/ini.h"
#include "bantam/option_list.h"
#include "bantam/py.h"
#include "bantam/shared_library.h"
#include "bantam/value.h"

namespace bantam {
namespace {

// A file appended to, reopened on request (logrotate). spdlog's file sinks
// cannot reopen a moved file.
class ReopenableFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(std::FILE* f) : file_(f) {}
  ~ReopenableFileSink() override {
    WritePending();
    if (file_ != nullptr) std::fclose(file_);
  }
  // Swaps in a freshly opened file.
  void Replace(std::FILE* f) {
    std::lock_guard<std::mutex> lock(mutex_);
    WritePending();
    if (file_ != nullptr) std::fclose(file_);
    file_ = f;
  }
  // Whether `path` no longer names the open file.
  bool MovedFrom(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (file_ == nullptr) return false;
    struct stat open_st, path_st;
    if (::fstat(::fileno(file_), &open_st) != 0) return false;
    if (::stat(path.c_str(), &path_st) != 0) return errno == ENOENT;
    return open_st.st_ino != path_st.st_ino || open_st.st_dev != path_st.st_dev;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (file_ == nullptr) return;
    pending_.append(msg.payload.data(), msg.payload.size());
    pending_.push_back('\n');
    // Not written per line: the daemon flushes after each commit of its
    // turns' state (Logger::Flush; once per turn, or per 50 ms of a burst), so an
    // operator tailing the log (or recidive) still sees a ban within the
    // turn that made it, a burst of 60k Found lines costs a few writes
    // instead of 60k, and a process killed mid-turn has logged nothing of
    // what it had not yet saved (read again after the restart, those lines
    // are logged once). Held in memory rather than in stdio's buffer, which
    // writes whenever it fills; bounded all the same.
    if (pending_.size() >= kMaxPending) WritePending();
  }
  void flush_() override { WritePending(); }

 private:
  static constexpr size_t kMaxPending = 8 << 20;
  void WritePending() {
    if (file_ == nullptr || pending_.empty()) return;
    std::fwrite(pending_.data(), 1, pending_.size(), file_);
    std::fflush(file_);
    pending_.clear();
  }

  std::FILE* file_;
  std::string pending_;
};

// logtarget = SYSTEMD-JOURNAL: the fields spdlog's systemd_sink sent
// (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER), through sd_journal_sendv of a
// libsystemd loaded for this target only (shared_library.h): linked, it
// and the six libraries it brings were a quarter of every start-up.
class JournalSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  using SendV = decltype(&sd_journal_sendv);
  // `ident` is SYSLOG_IDENTIFIER; `sendv` comes from the loaded library.
  JournalSink(std::string ident, SendV sendv)
      : ident_("SYSLOG_IDENTIFIER=" + std::move(ident)), sendv_(sendv) {}

  // The library's sd_journal_sendv into *sendv, or an error naming its
  // package.
  static Status Load(SendV* sendv) {
    Result<const SharedLibrary*> lib = SharedLibrary::Load("libsystemd.so.0", "libsystemd0");
    if (!lib.ok()) return lib.status();
    return (*lib)->Bind("sd_journal_sendv", sendv);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    message_.assign("MESSAGE=").append(msg.payload.data(), msg.payload.size());
    // spdlog's levels as syslog priorities, as systemd_sink mapped them.
    static const char* const kPriority[] = {"PRIORITY=7", "PRIORITY=7", "PRIORITY=6",
                                            "PRIORITY=4", "PRIORITY=3", "PRIORITY=2",
                                            "PRIORITY=6"};
    const char* priority = kPriority[static_cast<size_t>(msg.level) % 7];
    const iovec iov[] = {{message_.data(), message_.size()},
                         {const_cast<char*>(priority), strlen(priority)},
                         {ident_.data(), ident_.size()}};
    const int r = sendv_(iov, 3);
    if (r < 0) spdlog::throw_spdlog_ex("Failed writing to systemd", -r);
  }
  void flush_() override {}

 private:
  std::string ident_;
  SendV sendv_;
  std::string message_;  // reused
};

spdlog::level::level_enum SpdLevel(LogLevel level) {
  const int l = static_cast<int>(level);
  if (l >= 50) return spdlog::level::critical;
  if (l >= 40) return spdlog::level::err;
  if (l >= 30) return spdlog::level::warn;
  if (l >= 20) return spdlog::level::info;
  if (l >= 10) return spdlog::level::debug;
  return spdlog::level::trace;
}

std::FILE* OpenAppend(const std::string& path, std::string* error) {
  std::FILE* f = std::fopen(path.c_str(), "ae");
  if (f == nullptr) *error = "Unable to log to " + PyRepr(path) + ": " + strerror(errno);
  return f;
}

}  // namespace

Result<LogLevel> ParseLogLevel(std::string_view text) {
  const std::string t = LowerAscii(std::string(PyStripAscii(text)));
  static const std::pair<const char*, LogLevel> kNames[] = {
      {"critical", LogLevel::kCritical}, {"fatal", LogLevel::kCritical},
      {"error", LogLevel::kError},       {"warning", LogLevel::kWarning},
      {"warn", LogLevel::kWarning},      {"notice", LogLevel::kNotice},
      {"info", LogLevel::kInfo},         {"debug", LogLevel::kDebug},
      {"tracedebug", LogLevel::kTraceDebug}, {"heavydebug", LogLevel::kHeavyDebug},
  };
  for (const auto& [name, level] : kNames) {
    if (t == name) return level;
  }
  if (!t.empty() && t.find_first_not_of("0123456789") == std::string::npos && t.size() < 4) {
    return static_cast<LogLevel>(std::stoi(t));
  }
  return Status::Error("Invalid log level " + PyRepr(text));
}

std::string LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kCritical:
      return "CRITICAL";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kNotice:
      return "NOTICE";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kTraceDebug:
      return "TRACE";
    case LogLevel::kHeavyDebug:
      return "HEAVY";
  }
  return "Level " + std::to_string(static_cast<int>(level));
}

std::string_view LocalTimeText(time_t t) {
  // A log writes many lines per second: the text changes once a second.
  thread_local time_t cached = -1;
  thread_local char text[32];
  thread_local size_t length = 0;
  if (t != cached) {
    struct tm tm {};
    localtime_r(&t, &tm);
    length = std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
    cached = t;
  }
  return std::string_view(text, length);
}

std::string FormatLogLine(double epoch, std::string_view component, int pid, LogLevel level,
                          std::string_view message, bool with_time, bool padding) {
  std::string out;
  out.reserve(72 + component.size() + message.size());
  if (with_time) {
    const double secs = std::floor(epoch);
    out.append(LocalTimeText(static_cast<time_t>(secs)));
    // Python's logging: int(msecs), truncated.
    const int ms = std::clamp(static_cast<int>((epoch - secs) * 1000), 0, 999);
    const char msec[6] = {',', static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                          static_cast<char>('0' + ms % 10), ' ', '\0'};
    out.append(msec, 5);
  }
  out.append(component);
  if (padding && component.size() < 24) out.append(24 - component.size(), ' ');
  out.append("[").append(std::to_string(pid)).append("]: ");
  const std::string name = LogLevelName(level);
  out.append(name);
  if (padding && name.size() < 7) out.append(7 - name.size(), ' ');
  out.push_back(' ');
  out.append(message);
  return out;
}

Result<std::unique_ptr<Logger>> Logger::Open(std::string_view target, std::string_view syslog_socket,
                                             LogLevel level) {
  Result<NamedOptions> parsed = ParseNamedOptions(target);
  if (!parsed.ok()) return Status::Error("Invalid logtarget " + PyRepr(target) + ": " + parsed.status().message());
  const std::string name = parsed->name;
  std::string upper;
  for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  const OrderedMap<std::string>& opts = parsed->options;

  std::unique_ptr<Logger> logger(new Logger());
  logger->target_ = std::string(target);
  logger->level_ = static_cast<int>(level);
  std::shared_ptr<spdlog::sinks::sink> sink;
  bool default_padding = true;
  if (upper == "STDOUT" || upper == "SYSOUT") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    logger->with_time_ = upper != "SYSOUT";
  } else if (upper == "STDERR") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else if (upper == "SYSTEMD-JOURNAL") {
    JournalSink::SendV sendv = nullptr;
    if (Status s = JournalSink::Load(&sendv); !s.ok()) {
      return Status::Error("Unable to log to the journal: " + s.message());
    }
    sink = std::make_shared<JournalSink>("fail2ban", sendv);
    logger->journal_ = true;
  } else if (upper == "SYSLOG") {
    std::string facility_name = "DAEMON";
    if (const std::string* f = opts.Find("facility")) {
      facility_name.clear();
      for (char c : *f) facility_name.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    static const std::pair<const char*, int> kFacilities[] = {
        {"AUTH", LOG_AUTH},     {"AUTHPRIV", LOG_AUTHPRIV}, {"CRON", LOG_CRON},
        {"DAEMON", LOG_DAEMON}, {"KERN", LOG_KERN},         {"LPR", LOG_LPR},
        {"MAIL", LOG_MAIL},     {"NEWS", LOG_NEWS},         {"SYSLOG", LOG_SYSLOG},
        {"USER", LOG_USER},     {"UUCP", LOG_UUCP},         {"LOCAL0", LOG_LOCAL0},
        {"LOCAL1", LOG_LOCAL1}, {"LOCAL2", LOG_LOCAL2},     {"LOCAL3", LOG_LOCAL3},
        {"LOCAL4", LOG_LOCAL4}, {"LOCAL5", LOG_LOCAL5},     {"LOCAL6", LOG_LOCAL6},
        {"LOCAL7", LOG_LOCAL7},
    };
    int facility = -1;
    for (const auto& [fname, value] : kFacilities) {
      if (facility_name == fname) facility = value;
    }
    if (facility < 0) return Status::Error("Unable to set facility " + PyRepr(facility_name));
    // libc's syslog() writes to /dev/log, which is what "auto" means on
    // Linux; another socket path cannot be honoured through it.
    const std::string socket(syslog_socket);
    if (socket != "auto" && socket != "/dev/log") {
      return Status::Error("syslogsocket " + PyRepr(socket) +
                           ": only auto (/dev/log) is supported by bantamd");
    }
    struct stat st {};
    if (::stat("/dev/log", &st) != 0 || !S_ISSOCK(st.st_mode)) {
      return Status::Error("Syslog socket file: /dev/log does not exists or is not a socket");
    }
    sink = std::make_shared<spdlog::sinks::syslog_sink_mt>("fail2ban", LOG_PID, facility, false);
    logger->with_time_ = false;
    default_padding = false;
  } else {
    std::string error;
    std::FILE* f = OpenAppend(name, &error);
    if (f == nullptr) return Status::Error(error);
    sink = std::make_shared<ReopenableFileSink>(f);
    logger->path_ = name;
  }
  if (const std::string* d = opts.Find("datetime")) logger->with_time_ = PyAsBool(*d);
  logger->padding_ = default_padding;
  if (const std::string* p = opts.Find("padding")) logger->padding_ = PyAsBool(*p);
  logger->sink_logger_ = std::make_shared<spdlog::logger>("bantam", sink);
  logger->sink_logger_->set_pattern("%v");
  logger->sink_logger_->set_level(spdlog::level::trace);
  logger->sink_logger_->flush_on(spdlog::level::err);
  logger->pid_ = static_cast<int>(::getpid());
  return logger;
}

Logger::~Logger() {
  if (sink_logger_) sink_logger_->flush();
}

void Logger::AfterFork() { pid_ = static_cast<int>(::getpid()); }

void Logger::Flush() {
  if (sink_logger_) sink_logger_->flush();
}

void Logger::Log(LogLevel level, std::string_view component, std::string_view message) {
  if (!Enabled(level)) return;
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string line =
      journal_ ? std::string(message)
               : FormatLogLine(now, component, pid_, level, message,
                               with_time_, padding_);
  sink_logger_->log(SpdLevel(level), line);
}

Result<std::string> Logger::Reopen() {
  if (path_.empty()) return std::string("flushed");
  std::string error;
  std::FILE* f = OpenAppend(path_, &error);
  if (f == nullptr) return Status::Error(error);
  for (const auto& sink : sink_logger_->sinks()) {
    if (auto* file = dynamic_cast<ReopenableFileSink*>(sink.get())) file->Replace(f);
  }
  return std::string("rolled over");
}

Result<bool> Logger::ReopenIfMoved() {
  if (path_.empty()) return false;
  bool moved = false;
  for (const auto& sink : sink_logger_->sinks()) {
    if (auto* file = dynamic_cast<ReopenableFileSink*>(sink.get())) moved |= file->MovedFrom(path_);
  }
  if (!moved) return false;
  sink_logger_->flush();  // the last lines stay with the rotated file
  Result<std::string> r = Reopen();
  if (!r.ok()) return r.status();
  return true;
}

}  // namespace bantam
