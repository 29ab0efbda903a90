// LogTailer: follows the log files of every jail and hands their new lines
// to the daemon, with fail2ban's FileFilter/FileContainer semantics (head or
// tail start, resume by the md5 of the first line, rotation detection) minus
// its losses: the old file of a rename rotation is read to its end before
// the new one, and lines a copytruncate cut off before we read them are
// read from the rotated copy.
//
// A passive component for the single-threaded event loop: it owns one
// inotify fd (or none, when polling) and reads files only inside Process()
// and Poll(). Each file is read once however many jails subscribe to it.
#ifndef BANTAM_LOG_TAILER_H_
#define BANTAM_LOG_TAILER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bantam/line_source.h"
#include "bantam/status.h"

namespace bantam {

// How changes are noticed. Either way, Poll() re-checks every file.
enum class TailBackend {
  kInotify,  // fd() becomes readable when a file or its directory changes
  kPolling,  // stat every poll_interval(), as fail2ban's `polling`
};

// fail2ban's `backend` values for files: auto, pyinotify, inotify -> kInotify;
// polling -> kPolling. Other values (systemd, gamin) are errors naming the value.
Result<TailBackend> ParseTailBackend(std::string_view backend);

// One followed path. Owned by the LogTailer; a pointer stays valid until the
// last subscriber is removed or the tailer is destroyed.
class LogFile {
 public:
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  // As given to Add(); symlinks are followed when opening it.
  const std::string& path() const { return path_; }
  // Sorted, unique.
  const std::vector<SubscriberId>& subscribers() const { return subscribers_; }
  // File offset of the first byte not yet delivered: the start of a partial
  // last line, which is read again after a restart. Persist it with the hash.
  uint64_t position() const { return discarding_ ? read_off_ : line_start_; }
  // md5 (hex) of the first line including its line end, as fail2ban's
  // FileContainer.getHash(); "" while the file is missing, empty or its
  // first line has no line end yet.
  const std::string& first_line_hash() const { return hash_; }
  SavedPosition saved_position() const { return {position(), hash_}; }
  // True while the path is open; false when missing or unreadable.
  bool is_open() const { return fd_ >= 0; }
  // Meaningful inside the line callback only: the line being delivered was
  // longer than the cap and is its first max_line_bytes bytes; the rest of
  // it up to its line end is skipped.
  bool line_cut() const { return line_cut_; }

 private:
  friend class LogTailer;
  explicit LogFile(std::string path) : path_(std::move(path)) {}

  std::string path_;
  std::vector<SubscriberId> subscribers_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  uint64_t read_off_ = 0;    // next byte to read
  uint64_t line_start_ = 0;  // first byte of pending_ in the file
  std::string pending_;      // an incomplete line, at most the cap
  bool discarding_ = false;  // skipping the rest of a cut line
  bool line_cut_ = false;
  std::string hash_;
  uint64_t first_line_len_ = 0;  // bytes hash_ covers
  bool opened_once_ = false;     // later opens start at 0, not at tail/saved
  bool tail_ = false;
  std::optional<SavedPosition> saved_;
  bool missing_noticed_ = false;
  int open_errno_noticed_ = 0;
  bool dirty_ = false;
  bool backlog_ = false;  // unread data left after a budgeted pass
  // inotify watches: the open inode, the path's directory and, for a
  // symlink, the target's directory (where rotation of the target shows).
  int wd_file_ = -1;
  int wd_dir_ = -1;
  int wd_target_dir_ = -1;
  std::string target_dir_;
};

class LogTailer {
 public:
  // Lines longer than this are delivered cut (LogFile::line_cut()), so one
  // runaway writer costs at most this much memory per file.
  static constexpr size_t kDefaultMaxLineBytes = 1 << 20;

  // A complete line without its "\n" and trailing "\r"s, raw bytes (NULs and
  // invalid UTF-8 included; decoding is the caller's). The view is valid
  // during the call only. The callback must not call Add() or Remove().
  using LineCallback = std::function<void(const LogFile& file, std::string_view line)>;
  // Things an operator should hear about once: a missing or unreadable file,
  // a rotation, a truncation. Not errors: the tailer keeps going.
  using NoticeCallback = std::function<void(const LogFile& file, std::string_view message)>;

  struct Options {
    TailBackend backend = TailBackend::kInotify;
    LineCallback on_line;      // required
    NoticeCallback on_notice;  // may be empty
    size_t max_line_bytes = kDefaultMaxLineBytes;
    // kPolling: how often to Poll() (fail2ban stats every second).
    // kInotify: a safety net for directories that do not exist yet and
    // events the kernel dropped; Poll() is cheap (two stats per file).
    std::chrono::milliseconds poll_interval{1000};
    // Bytes read from one file per pass (Poll/Process/Continue); 0: all
    // there is. The rest waits for Continue(), which the owner calls while
    // has_backlog(), so other work (clients, timers) runs in between.
    size_t max_bytes_per_pass = 0;
  };

  // Errors: inotify_init1 failing (fd limits), a missing on_line.
  static Result<std::unique_ptr<LogTailer>> Create(Options options);
  ~LogTailer();
  LogTailer(const LogTailer&) = delete;
  LogTailer& operator=(const LogTailer&) = delete;

  // Follows `path` for `subscriber`. On the first Add of a path the start is
  // chosen as fail2ban does: `tail` -> the end of the file (skipping the rest
  // of an unfinished last line); else `saved` when its hash equals the first
  // line's hash and its pos is within the file; else the start. A later Add
  // of the same path only adds the subscriber (the file is already being
  // read). A path that does not exist yet is not an error: a notice is
  // given once and the file is read from its start when it appears.
  // Lines are delivered by the next Poll()/Process(), not from here: call
  // Poll() once after the Adds.
  Status Add(const std::string& path, SubscriberId subscriber, bool tail,
             std::optional<SavedPosition> saved = std::nullopt);
  // Drops the subscriber; the file is closed when none is left. No-op if
  // not subscribed.
  void Remove(const std::string& path, SubscriberId subscriber);

  // The inotify fd (poll for POLLIN, then call Process()); -1 when polling.
  int fd() const { return inotify_fd_; }
  // How often the loop should call Poll() (a timerfd).
  std::chrono::milliseconds poll_interval() const { return options_.poll_interval; }

  // Drains the inotify fd and reads the files it names. Errors only for the
  // inotify fd itself; trouble with one file goes to on_notice.
  Status Process();
  // Checks every file: stat, detect rotation/truncation, read new lines.
  void Poll();
  // Reads the next budget of every file that has unread data left.
  void Continue();
  bool has_backlog() const;
  void set_max_bytes_per_pass(size_t bytes) { options_.max_bytes_per_pass = bytes; }

  // nullptr if the path is not followed.
  const LogFile* Find(const std::string& path) const;
  // Every followed file, in Add() order; for persisting positions.
  std::vector<const LogFile*> files() const;

 private:
  explicit LogTailer(Options options, int inotify_fd);

  void Check(LogFile& f);
  bool Open(LogFile& f);
  void Close(LogFile& f);
  void ReadAvailable(LogFile& f);
  void ReadRange(LogFile& f, int fd, uint64_t end);
  void Split(LogFile& f, const char* data, size_t n);
  void AppendPending(LogFile& f, const char* data, size_t n);
  void Deliver(LogFile& f, const char* data, size_t n, bool cut);
  void FlushPartial(LogFile& f);
  void RestartFromTop(LogFile& f, const char* why);
  void RecoverFromRotatedCopy(LogFile& f);
  // md5 hex of the first line into hash (""  if it has no line end within
  // the cap) and its length with the line end into *len; true if found.
  // SHA-1 of the first complete line into hash (41 bytes), its length into
  // *len; also its MD5 into legacy_md5 (33 bytes) when given. False, with
  // empty digests, when the file has no complete first line.
  bool HashFirstLine(int fd, char hash[41], uint64_t* len, char* legacy_md5 = nullptr);
  // Whether the saved position's hash names this file's first line.
  bool SavedHashMatches(LogFile& f, int fd);
  void UpdateHash(LogFile& f);
  void Notice(const LogFile& f, std::string_view message);

  void EnsureWatches(LogFile& f);
  int AddWatch(const std::string& path, uint32_t mask, LogFile* f);
  void DropWatch(int* wd, LogFile* f);
  void DropAllWatches(LogFile& f);

  Options options_;
  int inotify_fd_;
  std::vector<std::unique_ptr<LogFile>> files_;
  std::unordered_map<int, std::vector<LogFile*>> watchers_;  // wd -> files
  std::vector<char> read_buf_;    // reused for every read
  std::vector<char> event_buf_;   // inotify events
  std::string notice_;            // reused for notice text
};

// The files of every file-backend jail as one LineSource: a LogTailer (owned)
// and, per jail, the files it follows in the order it added them. Each file
// is read once for all the jails that follow it. Event-loop thread only.
class FileSource final : public LineSource {
 public:
  // `options.on_line` is replaced: lines go to `on_line`, naming the file's
  // subscribers and its path. Errors: LogTailer::Create's.
  static Result<std::unique_ptr<FileSource>> Create(LogTailer::Options options,
                                                    LineCallback on_line);
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  // Makes `subscriber` a jail of this source even while it follows no
  // file (its status shows an empty file list).
  void Subscribe(SubscriberId subscriber);
  // LogTailer::Add, and on success the path joins the subscriber's files.
  Status Add(const std::string& path, SubscriberId subscriber, bool tail,
             std::optional<SavedPosition> saved = std::nullopt);
  // Drops the subscriber's file (its first entry in paths()); no-op if it
  // does not follow it.
  void Remove(const std::string& path, SubscriberId subscriber);
  // The subscriber's files, in the order added (empty if unknown).
  const std::vector<std::string>& paths(SubscriberId subscriber) const;
  bool follows(const std::string& path, SubscriberId subscriber) const;
  LogTailer& tailer() { return *tailer_; }

  // LineSource
  int fd() const override { return tailer_->fd(); }
  std::chrono::milliseconds poll_interval() const override { return tailer_->poll_interval(); }
  const char* log_component() const override { return "fail2ban.filter"; }
  Status Process() override { return tailer_->Process(); }
  Status Poll() override;
  void set_max_bytes_per_pass(size_t bytes) override { tailer_->set_max_bytes_per_pass(bytes); }
  bool has_backlog() const override { return tailer_->has_backlog(); }
  void Continue() override { tailer_->Continue(); }
  void Unsubscribe(SubscriberId subscriber) override;
  bool has_subscribers() const override { return !paths_.empty(); }
  // Files with no complete first line yet (no hash) have no position.
  void Positions(bool changed_only, std::vector<SourcePosition>* out) const override;
  void MarkSaved(const SourcePosition& position) override;
  // "File list": the subscriber's files.
  SourceStatus StatusOf(SubscriberId subscriber) const override;

 private:
  explicit FileSource(LineCallback on_line) : on_line_(std::move(on_line)) {}

  std::unique_ptr<LogTailer> tailer_;
  LineCallback on_line_;
  std::map<SubscriberId, std::vector<std::string>> paths_;
  std::map<std::pair<std::string, SubscriberId>, SavedPosition> saved_;
};

}  // namespace bantam

#endif  // BANTAM_LOG_TAILER_H_
