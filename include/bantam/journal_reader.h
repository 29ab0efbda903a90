// JournalReader: the systemd journal as a log source, read the way
// fail2ban 1.0.2's `backend = systemd` reads it.
//
// fail2ban turns each journal entry into a syslog-style line
// ("HOST IDENT[PID]: MESSAGE") plus a timestamp, and the failregexes of
// every journal filter are written against that line. Reproducing the line
// byte for byte, quirks included, is what makes those filters work here.
#ifndef BANTAM_JOURNAL_READER_H_
#define BANTAM_JOURNAL_READER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantam/line_source.h"
#include "bantam/ordered_map.h"
#include "bantam/status.h"

struct sd_journal;

namespace bantam {

// The options of `backend = systemd[journalpath=DIR, journalfiles=..,
// journalflags=N, namespace=NAME]`. Unset and set-but-empty differ, as they
// do in fail2ban ("journalfiles=" that globs to nothing fails to open).
struct JournalOptions {
  // One directory: fail2ban hands the whole value to sd_journal_open_directory.
  std::optional<std::string> journalpath;
  // Glob patterns, split on spaces, commas and new lines; globbed at Open().
  std::optional<std::vector<std::string>> journalfiles;
  // sd_journal_open flags. Unset: 0 with a path or files, otherwise
  // $F2B_SYSTEMD_DEFAULT_FLAGS or 4 (SD_JOURNAL_SYSTEM).
  std::optional<int> journalflags;
  // A journal namespace; ignored when a path or files are given.
  std::optional<std::string> ns;
};

// Parses the option map of systemd[...]. Errors name the bad option, e.g.
// "systemd backend: journalflags = 'x' is not a non-negative integer".
Result<JournalOptions> ParseJournalOptions(const OrderedMap<std::string>& backend_options);

// One entry as fail2ban's FilterSystemd.formatJournalEntry renders it.
struct JournalLine {
  // "HOST IDENT[PID]: MESSAGE", new lines escaped as the two bytes "\n".
  std::string line;
  // datetime.isoformat() of the entry time, "2023-11-14T23:13:20.123456+01:00".
  // fail2ban's line tuple carries it with one space appended.
  std::string date_text;
  // Epoch seconds as fail2ban computes them: mktime() of the wall-clock
  // fields of date_text (so off by an hour when the zone's offset at
  // open time differs from the offset at the entry), plus microseconds.
  double time = 0;
  std::string cursor;  // __CURSOR, for resuming with SeekCursor()
};

// The raw parts of one entry that formatting reads. The views belong to
// whoever filled it (JournalReader's copy of the entry, or a test's strings).
struct JournalEntry {
  std::vector<std::pair<std::string_view, std::string_view>> fields;  // FIELD, bytes; in order
  uint64_t realtime_usec = 0;                                         // __REALTIME_TIMESTAMP
  uint64_t monotonic_usec = 0;                                        // __MONOTONIC_TIMESTAMP
  std::string_view cursor;
};

// fail2ban's formatJournalEntry + getJrnEntTime. `utc_offset` (seconds east
// of UTC) is the fixed zone python-systemd stamps on every timestamp: the
// local offset at the moment it was first imported, not at the entry.
// Fields are decoded as UTF-8 with U+FFFD for invalid bytes, as fail2ban
// does with the default logencoding. Where fail2ban would raise on a
// malformed field (_SOURCE_REALTIME_TIMESTAMP=abc), the journal's own
// timestamp is used instead of dropping the entry.
void FormatJournalEntry(const JournalEntry& entry, long utc_offset, JournalLine* out);

// The local zone's UTC offset now, in seconds east (tm_gmtoff).
long CurrentUtcOffset();

// What sd_journal_process reported.
enum class JournalChange { kNop, kAppend, kInvalidate };

// An open journal (owns its sd_journal*), with fail2ban's journalmatch
// semantics and a cursor that Next() advances. Not thread-safe; use it
// from the event loop only.
class JournalReader {
 public:
  // Opens as fail2ban's FilterSystemd does: journalpath, else journalfiles
  // (globbed, deduplicated), else the namespace, else the local journal.
  // `utc_offset` fixes the zone of timestamps (see FormatJournalEntry);
  // unset means CurrentUtcOffset() at this call. The first Open() loads
  // libsystemd.so.0 (dlopen, shared_library.h); when it cannot, this and
  // every later Open() fail with an error naming the package libsystemd0.
  static Result<std::unique_ptr<JournalReader>> Open(const JournalOptions& options,
                                                     std::optional<long> utc_offset = {});
  ~JournalReader();
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  // One fail2ban `addjournalmatch`: "FIELD=value" terms, "+" between OR
  // groups. Terms of one group AND across fields and OR within a field (the
  // journal's rule); groups, and successive calls, are ORed. On a bad term
  // the earlier matches are restored and the error names the term.
  Status AddMatch(const std::vector<std::string>& words);
  // AddMatch for each element: the lines of a filter's journalmatch.
  Status AddMatches(const std::vector<std::vector<std::string>>& matches);
  // Drops every match (delJournalMatch() with no argument).
  void ClearMatches();
  // The accepted groups, "+" removed; for `status` output.
  const std::vector<std::vector<std::string>>& matches() const { return matches_; }

  // After these, Next() returns the first entry at or after the position.
  Status SeekHead();
  // What Next() does right after SeekTail() varies with the libsystemd
  // version (252 returns the last entry again); call Previous() first to
  // stand on the last entry, as fail2ban does.
  Status SeekTail();
  // Seconds since the epoch, truncated to microseconds like python-systemd.
  Status SeekRealtime(double since);
  // Next() returns the entry after the one `cursor` names (which need not
  // still exist: then the first entry past its position).
  Status SeekCursor(std::string_view cursor);

  // Moves to the next entry and formats it into *out. false at the end.
  Result<bool> Next(JournalLine* out);
  // Moves back one entry, formatting it into *out unless out is null
  // (fail2ban steps back after a seek so as not to sit in dead space, and
  // reads the last entry at start-up). false at the start.
  Result<bool> Previous(JournalLine* out = nullptr);

  // sd_journal_get_fd: poll it for POLLIN, then call Process().
  Result<int> fd();
  Result<JournalChange> Process();

 private:
  JournalReader(sd_journal* j, long utc_offset) : j_(j), utc_offset_(utc_offset) {}
  Status ReadCurrent(JournalLine* out);
  Status AddGroups(const std::vector<std::vector<std::string>>& groups);
  Status Restore();

  sd_journal* j_;
  long utc_offset_;
  std::vector<std::vector<std::string>> matches_;
  // Reused so Next() allocates nothing per entry once warm: the entry's
  // fields copied out of the journal, and entry_'s views into them.
  struct FieldSpan {
    size_t start, eq, size;
  };
  std::string field_bytes_;
  std::vector<FieldSpan> field_spans_;
  JournalEntry entry_;
};

// The journal as the LineSource of one jail (`backend = systemd`): a
// JournalReader with the jail's journalmatch, read from where the jail left
// off. Lines carry the entry's time (SourceLine::time). Owned by the daemon;
// event-loop thread only.
class JournalSource final : public LineSource {
 public:
  // Closed until Open(): it reads nothing, and its status shows
  // `journalmatch` (the filter's lines, "+" words included) all the same.
  JournalSource(SubscriberId subscriber, std::vector<std::vector<std::string>> journalmatch,
                LineCallback on_line);
  JournalSource(const JournalSource&) = delete;
  JournalSource& operator=(const JournalSource&) = delete;

  // Opens the journal, adds the matches and stands before the first entry
  // at or after `not_before` (now - findtime) that is also after `resume`
  // (the last entry read before, saved or carried over a reload). On error
  // the source stays closed.
  Status Open(const JournalOptions& options, double not_before, std::optional<TimePosition> resume);
  bool is_open() const { return reader_ != nullptr; }

  // LineSource
  int fd() const override { return fd_; }
  std::chrono::milliseconds poll_interval() const override { return {}; }
  const char* log_component() const override { return "fail2ban.filtersystemd"; }
  // sd_journal_process, then the new entries.
  Status Process() override;
  // Reads every entry past the position; the first error stops it.
  Status Poll() override;
  void Unsubscribe(SubscriberId subscriber) override;
  bool has_subscribers() const override { return !subscribers_.empty(); }
  // The last entry read, once there is one.
  void Positions(bool changed_only, std::vector<SourcePosition>* out) const override;
  void MarkSaved(const SourcePosition& position) override;
  // "Journal matches": the journalmatch lines joined with " + ".
  SourceStatus StatusOf(SubscriberId subscriber) const override;

 private:
  std::vector<SubscriberId> subscribers_;  // the one jail, until unsubscribed
  std::vector<std::vector<std::string>> journalmatch_;
  LineCallback on_line_;
  std::unique_ptr<JournalReader> reader_;
  int fd_ = -1;
  TimePosition last_;      // the last entry read (time 0: none)
  double saved_time_ = 0;  // last_.time when it was last saved
  JournalLine entry_;      // reused
  std::string date_;       // reused
};

}  // namespace bantam

#endif  // BANTAM_JOURNAL_READER_H_
