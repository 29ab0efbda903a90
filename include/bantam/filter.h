// Filter: what fail2ban's Filter.processLine does for one jail. It finds the
// date in a line (DateDetector), cuts it out, and runs prefregex, the
// failregex list and the ignoreregex list over a buffer of the last
// `maxlines` lines; failures spread over several lines are merged by their
// <F-MLFID> value. Failure ids are normalised as fail2ban's IPAddr does.
//
// Single-threaded: one Filter belongs to one jail on the event loop (or to
// one bantam-regex run). Create() compiles everything; ProcessLine() does not
// allocate for lines that match nothing.
#ifndef BANTAM_FILTER_H_
#define BANTAM_FILTER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bantam/date_detector.h"
#include "bantam/failregex.h"
#include "bantam/ip_address.h"
#include "bantam/literal_scan.h"
#include "bantam/status.h"

namespace bantam {

// Lines longer than this are cut before matching (fail2ban has no limit; a
// multi-megabyte line is junk or an attack on the matcher, never a log
// message a filter is written for). The cut is reported through `warn`.
inline constexpr size_t kMaxLineBytes = 64 * 1024;

// The filter options of one jail, as the [Definition] of a filter plus the
// jail's usedns, and the switches fail2ban flips on its Filter object.
struct FilterSettings {
  std::string prefregex;  // empty: none
  std::vector<std::string> failregex;
  std::vector<std::string> ignoreregex;
  int maxlines = 1;
  std::string usedns = "warn";  // yes | warn | no | raw
  std::string datepattern;      // empty: fail2ban's default templates
  std::string logtimezone;      // empty: local time

  // fail2ban's Filter attributes. The daemon keeps the defaults;
  // fail2ban-regex sets check_all_regex, ignore_pending = false and
  // check_find_time = false; fail2ban's sample tests also return_raw_host.
  bool check_all_regex = false;  // run every failregex, not only the first hit
  bool ignore_pending = true;    // drop mlfid failures that have no id yet
  bool return_raw_host = false;  // never resolve <DNS>/<HOST> names
  bool check_find_time = true;   // skip lines older than findtime (restore phase)
  bool in_operation = true;      // false while reading a log's backlog
  double findtime = 600;

  // Keep the prefregex groups of the last line for prefregex_groups()
  // (fail2ban-regex -v prints them).
  bool record_prefregex_groups = false;

  // Date detection shared with the other filters of equal date settings on
  // this thread (DateDetectorOptions::share_searches): the daemon sets it so
  // that jails reading one file search each line's date once. Feed such
  // filters each line with the same `now` for the sharing to apply.
  bool share_date_searches = false;
  // The line gate's strings (see Filter) looked for in one scan per line
  // shared with the other filters created on this thread (LiteralScan), so
  // jails reading one file scan each line once. Used on the creating
  // thread only; elsewhere each filter looks for its own strings.
  bool share_line_scans = false;
  // False: no line gate, every line goes through the regexes (tests
  // compare the two paths).
  bool line_gate = true;
  // False: a line the gate turns away is not copied, and ProcessedLine()
  // is empty after it. The daemon never asks; with ten jails on a file
  // the copies were a quarter of what each extra jail cost per line.
  bool keep_processed_line = true;

  // Receives warnings (PCRE2 limits hit, a line cut, DNS lookups under
  // usedns=warn, a match without a date). May be empty.
  std::function<void(const std::string&)> warn;
  // Resolves <HOST> names under usedns=yes/warn. Null: SystemResolver().
  Resolver* resolver = nullptr;
};

// fail2ban's `fail` dict of one failure: the named groups of the matching
// regexes (prefregex groups first), plus what the multi-line merge adds.
class FailData {
 public:
  // A group value; nullopt is a group that did not take part (Python None).
  using Entry = std::pair<std::string, std::optional<std::string>>;

  // The value of `name` if set and not None.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Python truthiness of fail.get(name): set, not None, not empty.
  bool Truthy(std::string_view name) const { return !Get(name).value_or("").empty(); }
  bool Has(std::string_view name) const { return FindEntry(name) != nullptr; }
  void Set(std::string_view name, std::optional<std::string> value);
  // Removes `name`; returns whether its value was truthy.
  bool Pop(std::string_view name);
  const std::vector<Entry>& groups() const { return groups_; }

  // Matched lines ("matches"), whole lines with their date.
  std::vector<std::string> matches;
  // "nofail-matches": lines of a multi-line failure not yet known to fail.
  std::vector<std::string> nofail_matches;
  bool has_nofail_matches = false;
  // "users": every user seen on one multi-line failure id, in first-seen order.
  std::vector<std::string> users;
  bool has_users = false;
  // "mlfpending": a failure was seen before its id was known.
  bool mlfpending = false;
  // "ip": the address when the failure id is something else (<F-ID>).
  std::optional<std::string> ip;

 private:
  const std::optional<std::string>* FindEntry(std::string_view name) const;
  std::vector<Entry> groups_;
};

// A log line after date detection: fail2ban's tuple line (pre, date, post:
// the text before, of and after the date) with the time it gives.
struct LogLine {
  std::string pre, date, post;
  uint64_t seq = 0;
  std::optional<double> time;  // nullopt: no date and no recent one to reuse
  bool no_date = false;        // no date of its own (a recent one may be reused)
  bool skip = false;           // dropped before matching
  bool skipped_old = false;    // ... because it is older than findtime

  void Set(std::string_view p, std::string_view d, std::string_view q, uint64_t n);
  void AppendJoined(std::string* out) const;  // pre + date + post
  void AppendStripped(std::string* out) const { out->append(pre).append(post); }
  bool StrippedEquals(std::string_view s) const;
};

// One failure found on a line: fail2ban's [regex index, fid, time, fail].
struct Failure {
  int regex_index = 0;
  // The failure id; nullopt for a multi-line failure still waiting for its
  // id (only reported with ignore_pending = false).
  std::optional<IpAddr> id;
  // Epoch seconds; nullopt when neither the line nor the recent past gave a
  // date (only reported with check_find_time = false).
  std::optional<double> time;
  FailData fail;

  // fail2ban-regex counts a failure flagged nofail as an ignored line.
  bool nofail() const { return fail.Truthy("nofail"); }
};

// What happened to one line besides the failures, for bantam-regex's stats.
struct LineResult {
  bool prefregex_matched = false;
  // Indexes of ignoreregexes that matched.
  std::vector<int> ignored_by;
  // True when the line was not considered at all (older than findtime).
  bool skipped_old = false;
};

class Filter {
 public:
  // Compiles every regex and the date templates. Error: the first regex or
  // datepattern that fails, e.g. "cannot compile failregex '...': ...".
  static Result<std::unique_ptr<Filter>> Create(FilterSettings settings);

  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  // Processes one line (UTF-8, no line terminator). `now` is the current
  // time in epoch seconds (fail2ban's MyTime.time()). `seq` names the line
  // in line_buffer(), e.g. its line number. `failures` is cleared and filled;
  // `result`, if given, is filled.
  // `line_key`: 0, or a key (NewLineKey, date_detector.h) given with this
  // line to every filter it goes to and with no other text: the filters of
  // one thread then know the line they share by the key.
  void ProcessLine(std::string_view line, double now, uint64_t seq, std::vector<Failure>* failures,
                   LineResult* result = nullptr, uint64_t line_key = 0);
  // ProcessLine in two phases, for callers that pipeline them: DateLine
  // finds the date (touching only the date state), MatchLine runs the
  // regexes (touching only the matching state). Each phase must stay on one
  // thread, and lines must reach MatchLine in DateLine order. MatchLine may
  // swap `line`'s strings with old buffers (capacity is recycled).
  void DateLine(std::string_view line, double now, uint64_t seq, LogLine* out);
  void DateLineWithTime(std::string_view line, double time, std::string_view date_text, double now,
                        uint64_t seq, LogLine* out);
  void MatchLine(LogLine* line, double now, std::vector<Failure>* failures,
                 LineResult* result = nullptr);

  // The same for a line whose time is already known (journal entries):
  // nothing is cut out; `date_text` is the time as text, which fail2ban puts
  // in front of the line in "matches".
  void ProcessLineWithTime(std::string_view line, double time, std::string_view date_text,
                           double now, uint64_t seq, std::vector<Failure>* failures,
                           LineResult* result = nullptr);

  // The `seq` of every line held in the multi-line buffer, oldest first.
  void LineBufferSeqs(std::vector<uint64_t>* seqs) const;
  // The last line with its date cut out (fail2ban's processedLine()); empty
  // after a line the gate turned away unless keep_processed_line.
  std::string ProcessedLine() const;

  const FilterSettings& settings() const { return settings_; }
  // fail2ban's inOperation: false while a log's backlog is read at start.
  void set_in_operation(bool value) { settings_.in_operation = value; }
  const FailRegex* prefregex() const { return prefregex_ ? &*prefregex_ : nullptr; }
  // The groups of the last prefregex match in group-number order, content
  // included (only with record_prefregex_groups).
  const std::vector<FailData::Entry>& prefregex_groups() const { return pref_groups_; }
  const std::vector<FailRegex>& failregexes() const { return failregexes_; }
  const std::vector<FailRegex>& ignoreregexes() const { return ignoreregexes_; }
  DateDetector& date_detector() { return *date_detector_; }
  const DateDetector& date_detector() const { return *date_detector_; }

 private:
  // What a regex search over the buffer matched, in buffer line indexes.
  struct MatchedLines {
    std::vector<size_t> matched;
    std::vector<size_t> unmatched;
  };
  struct MlfidEntry {
    FailData fail;
    double expires = 0;
  };

  // A line as DateLine cuts it, viewing the line (and last_time_text_)
  // instead of copying them: valid until the next line is dated.
  struct DatedView {
    std::string_view line;  // as matched (cut to kMaxLineBytes): pre is its head, post its tail
    std::string_view pre, date, post;
    std::optional<double> time;
    bool no_date = false, skip = false, skipped_old = false;
    // pre + date + post is `line` (the date was not taken from an earlier
    // line), and the line's key if it has one.
    bool whole_line = true;
    uint64_t line_key = 0;
  };

  explicit Filter(FilterSettings settings);

  void DateView(std::string_view line, double now, uint64_t seq, uint64_t line_key,
                DatedView* out);
  static void CopyView(const DatedView& v, uint64_t seq, LogLine* out);
  void DateViewWithTime(std::string_view line, double time, std::string_view date_text, double now,
                        uint64_t seq, DatedView* out);
  // ProcessLine's second phase from a view: a line the gate turns away is
  // not copied (see turned_away_); any other goes to MatchLine.
  void MatchView(const DatedView& v, double now, uint64_t seq, std::vector<Failure>* failures,
                 LineResult* result);

  void FindFailure(LogLine* line, double now, std::vector<Failure>* failures,
                   LineResult* result);
  // Searches `re` over buf_; false on no match or a PCRE2 limit (warned).
  bool Search(const FailRegex& re, std::string_view subject);
  void SplitMatched(const FailRegex& re, std::string_view subject,
                    const std::vector<LogLine>& org, MatchedLines* out) const;
  // fail2ban's _ignoreLine: index of the first matching ignoreregex, or -1.
  int IgnoreLine(const FailRegex* failregex, const MatchedLines* matched_by_fail,
                 LineResult* result);
  void RebuildBuf();
  // Builds gate_ from the compiled regexes (see gate_).
  void BuildGate();
  // Whether one of gate_ occurs in a line's text with its date cut out
  // (pre + post, the text RebuildBuf gives a one-line buffer).
  bool GateOpen(std::string_view pre, std::string_view date, std::string_view post,
                uint64_t line_key) const;
  void CollectGroups(const FailRegex& re, FailData* fail) const;
  // fail2ban's _mergeFailure. Returns the merged data: the cache entry's
  // own FailData (fail2ban mutates the cached dict) or *fail itself.
  FailData* MergeFailure(const std::string& mlfid, FailData* fail,
                         const std::vector<std::string>& matched, double now);
  void Warn(const std::string& message) const;

  // The mlfid cache: fail2ban's Utils.Cache(maxCount=100, maxTime=300).
  MlfidEntry* MlfidGet(const std::string& key, double now);
  void MlfidSet(const std::string& key, MlfidEntry entry, double now);
  void MlfidUnset(const std::string& key);

  FilterSettings settings_;
  std::optional<FailRegex> prefregex_;
  std::vector<FailRegex> failregexes_;
  std::vector<FailRegex> ignoreregexes_;
  std::unique_ptr<DateDetector> date_detector_;
  int prefregex_content_ = -1;  // group number of <F-CONTENT> in prefregex

  // The line gate: strings one of which a one-line buffer must contain for
  // any failregex to match (empty: no gate, every line is searched). A
  // line without any of them gives no failure and leaves no state behind,
  // so FindFailure stops before building the buffer or running a regex.
  // gate_bypasses_prefregex_: the strings come from the failregexes, the
  // prefregex (which has none) is skipped too; only done when no caller
  // looks at prefregex_matched (LineResult, record_prefregex_groups).
  std::vector<FailRegex::RequiredLiteral> gate_;
  bool gate_bypasses_prefregex_ = false;
  // share_line_scans: the thread's scan, gate_'s ids in it, and the thread.
  std::shared_ptr<LiteralScan> scan_;
  std::vector<uint64_t> gate_mask_;  // gate_'s ids in scan_ (LiteralScan::MaskOf)
  const void* scan_thread_ = nullptr;  // ThisThreadToken() of the creating thread
  // For strings across the cut-out date: the first bytes of gate_'s
  // strings (a bit set) and the longest string's length.
  std::array<uint64_t, 4> gate_first_bytes_{};
  size_t gate_max_size_ = 0;

  // Per-line state, reused to avoid allocation.
  std::vector<LogLine> buffer_;  // fail2ban's __lineBuffer, unless buffer_is_org_
  bool buffer_is_org_ = false;     // the buffer is exactly org_ (one line, untouched)
  std::vector<LogLine> org_;     // orgBuffer of the current line
  LogLine current_;  // ProcessLine's line between the two phases
  // MatchView found the gate open for the line it hands to MatchLine.
  bool gate_open_known_ = false;
  // The last line was turned away by the gate before reaching MatchLine:
  // org_ still holds an older line, and this one is kept only as
  // ProcessedLine() and LineBufferSeqs() report it: the line, the sizes
  // of its pre and post (the date is cut out between them), its seq.
  bool org_stale_ = false;
  std::string turned_away_;
  size_t turned_away_pre_ = 0, turned_away_post_ = 0;
  uint64_t turned_away_seq_ = 0;
  std::string buf_;  // "\n".join(stripped lines) + "\n"
  bool buf_valid_ = false;
  FailRegexMatch match_;
  FailRegexMatch ignore_match_;

  std::optional<double> last_date_;
  std::string last_time_text_;
  bool prefregex_matched_ = false;  // fail2ban's prefRegex.hasMatched(), sticky
  std::vector<FailData::Entry> pref_groups_;
  bool warned_no_date_ = false;
  bool warned_time_skew_ = false;
  bool warned_old_ = false;
  FailData forgotten_;  // holds an mlfid entry removed while still in use

  std::list<std::pair<std::string, MlfidEntry>> mlfid_order_;
  std::unordered_map<std::string, std::list<std::pair<std::string, MlfidEntry>>::iterator> mlfid_;
};

// Python's str.splitlines(): splits at \n, \r, \r\n, \v, \f, \x1c-\x1e,
// U+0085, U+2028 and U+2029; no terminators kept.
std::vector<std::string_view> PySplitLines(std::string_view s);

}  // namespace bantam

#endif  // BANTAM_FILTER_H_
