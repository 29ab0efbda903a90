// LineSource: a thing that produces log lines for jails (fail2ban's
// FileFilter/FilterSystemd minus the matching): the log files (FileSource,
// log_tailer.h), the systemd journal (JournalSource, journal_reader.h), and
// whatever else speaks lines, each a passive component for the event loop.
//
// The daemon owns its sources and drives them from the event-loop thread
// only: it watches fd() and calls Process() when it is readable, calls Poll()
// every poll_interval(), and Continue() while has_backlog(). A source hands
// each line to its LineCallback, naming the jails (subscribers) it is for; it
// never calls into a jail itself. One source may serve several jails (a file
// two jails follow is read once); each jail keeps the list of sources it
// reads (the daemon's JailState).
//
// Where this differs from fail2ban: there, each jail's filter reads its own
// files in its own thread; here a file is read once for all jails on the one
// loop thread, and every source reports its position in one form, so the
// daemon writes all of them in one place.
#ifndef BANTAM_LINE_SOURCE_H_
#define BANTAM_LINE_SOURCE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "bantam/status.h"

namespace bantam {

// Which jail (or other consumer) wants a source's lines; opaque to sources.
using SubscriberId = uint64_t;

// The name fail2ban gives the journal in the database's `logs` table.
inline constexpr char kJournalLogName[] = "systemd-journal";

// Where a file was left, as the daemon persists it (fail2ban's `logs` table:
// firstlinemd5, lastfilepos).
struct SavedPosition {
  uint64_t pos = 0;
  // Lowercase hex SHA-1 of the first line, as fail2ban on Python 3 stores it
  // (an MD5 saved by earlier bantam builds is still accepted); "" if unknown.
  std::string first_line_hash;
  bool operator==(const SavedPosition&) const = default;
};

// Where a time-ordered source (the journal) was left: the time of the last
// entry read, epoch seconds, and its ISO form, as fail2ban's updateJournal
// stores them (lastfilepos, firstlinemd5).
struct TimePosition {
  double time = 0;
  std::string time_text;
  bool operator==(const TimePosition&) const = default;
};

// One position a source reports for one of its jails.
struct SourcePosition {
  SubscriberId subscriber = 0;
  // The `logs` table's path: the file's path; kJournalLogName.
  std::string name;
  std::variant<SavedPosition, TimePosition> where;
};

// One line handed out by a source. The views are valid during the callback
// only.
struct SourceLine {
  // Raw bytes without the line end; the receiver decodes them (invalid
  // UTF-8 becomes U+FFFD, as fail2ban's default logencoding does).
  std::string_view text;
  // The jails it is for, sorted, unique.
  const std::vector<SubscriberId>* subscribers = nullptr;
  // Where it came from: the file's path; kJournalLogName.
  std::string_view origin;
  // Set by sources whose entries carry their own time (the journal): then
  // no date is looked for in the text, and date_text is what fail2ban's line
  // tuple carries as the date. Unset: the jail finds the date in the text.
  std::optional<double> time;
  std::string_view date_text;
};

// What `bantam status JAIL` shows of a source: fail2ban's "File list" or
// "Journal matches" line of the Filter section.
struct SourceStatus {
  std::string title;
  std::vector<std::string> items;
};

class LineSource {
 public:
  using LineCallback = std::function<void(const SourceLine& line)>;

  virtual ~LineSource();

  // The fd to watch for readability, then call Process(); -1 for none.
  virtual int fd() const = 0;
  // How often to call Poll(); zero: never (the fd says everything).
  virtual std::chrono::milliseconds poll_interval() const = 0;
  // The component that errors of Process() and Poll() are logged under
  // ("fail2ban.filter", "fail2ban.filtersystemd").
  virtual const char* log_component() const = 0;

  // The fd was readable: read what it announced and hand out the lines.
  // Errors concern the source as a whole; it stays usable.
  virtual Status Process() = 0;
  // Checks for and reads what is new without the fd's word: the periodic
  // check, and the first read after jails subscribed (their backlog).
  virtual Status Poll() = 0;
  // Reading budgets (bytes of one input per pass; 0: all there is), so that
  // a burst is read over several loop turns. Sources without a backlog
  // ignore them.
  virtual void set_max_bytes_per_pass(size_t /*bytes*/) {}
  virtual bool has_backlog() const { return false; }
  virtual void Continue() {}

  // Stops handing lines to `subscriber` and forgets its positions.
  virtual void Unsubscribe(SubscriberId subscriber) = 0;
  virtual bool has_subscribers() const = 0;

  // Appends the positions worth saving: every one (changed_only false), or
  // those that differ from what MarkSaved() last recorded for them.
  virtual void Positions(bool changed_only, std::vector<SourcePosition>* out) const = 0;
  // `position`, as Positions() gave it, is on disk now.
  virtual void MarkSaved(const SourcePosition& position) = 0;

  // The status section for one subscriber.
  virtual SourceStatus StatusOf(SubscriberId subscriber) const = 0;
};

}  // namespace bantam

#endif  // BANTAM_LINE_SOURCE_H_
