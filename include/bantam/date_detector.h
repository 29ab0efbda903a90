// DateDetector: finds and converts the date in a log line exactly as
// fail2ban 1.0.2's DateDetector does (matchTime + getTime).
//
// A detector holds a list of date templates: fail2ban's default set (each
// default also comes anchored at line begin, weighted to be preferred), or
// the ones a `datepattern` names. Which template wins on a line depends on
// history: the template that matched last is tried first within the same
// boundaries, templates that match keep bubbling up the list by hits and
// distance. That order is part of fail2ban's observable behaviour (it picks
// between two dates on one line), so it is reproduced step by step,
// including positions counted in code points as Python does.
//
// Not reproduced: fail2ban shares each template's raw regex hit counter
// between all jails of a server (its templates are cached objects); here
// every detector counts its own, as one fail2ban-regex run does. The
// "template unused for 5 minutes" rule uses the `now` passed to Match()
// instead of the wall clock.
#ifndef BANTAM_DATE_DETECTOR_H_
#define BANTAM_DATE_DETECTOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/failregex.h"
#include "bantam/status.h"
#include "bantam/strptime.h"

namespace bantam {

// A new line key, never returned before in this process: the caller that
// hands one line to several filters (or detectors) passes one key with it,
// and a different key with any other text. Keys are never 0.
uint64_t NewLineKey();

// A token of the calling thread, equal only for calls on the same thread:
// what the per-line paths compare instead of std::this_thread::get_id(),
// which is a library call each time.
inline const void* ThisThreadToken() {
  static thread_local const char token = 0;
  return &token;
}

struct DateDetectorOptions {
  // The jail's/filter's `datepattern` as written ("" = fail2ban's default
  // template set). Like fail2ban's setDatePattern, the value is split at
  // newlines and every non-empty stripped line is one template: a strptime
  // style pattern with fail2ban's extensions (%ExY, %Exd, %k, %z, %Z, ...),
  // EPOCH, LEPOCH, TAI64N, {^LN-BEG}..., {UNB}..., {NONE}, {^LN-BEG} or
  // {DEFAULT} alone, or a pattern containing {DATE}.
  std::string datepattern;
  // `logtimezone` / fail2ban-regex --timezone, e.g. "UTC", "UTC+0200",
  // "+0200"; "" = local time (TZ). Applies to dates that carry no zone.
  std::string logtimezone;
  // Lets detectors with equal options, created and used on one thread,
  // search a line once between them (several jails reading one file):
  // when a detector is in exactly the state another one was in before it
  // matched the same line with the same `now`, it redoes that match's
  // effects without searching (see Match). Results never differ from
  // searching; a detector that fell out of step simply searches.
  bool share_searches = false;
  // Skips template searches that provably find nothing: an anchored
  // template on a line whose first four ASCII bytes no match can begin
  // with (PCRE2 partial matching, cached per prefix), an EPOCH template on
  // a line without a digit where its match could start. Off only in the
  // tests that compare both ways.
  bool search_shortcuts = true;
};

struct DateMatch {
  // Byte span of the date text (fail2ban's group 1) in the line; may be
  // empty (fail2ban's filter then uses the last date or now instead).
  size_t begin = 0, end = 0;
  // Epoch seconds as getTime() computes them (whole seconds except for
  // EPOCH templates); nullopt if the text matched but could not be
  // converted (fail2ban: "findFailure failed to parse timeText").
  std::optional<double> time;
  // Index into templates() of the template that matched, after reordering.
  int template_index = -1;
  // fail2ban's code raised an exception other than ValueError for this line
  // (an unknown zone name in %Z, a month without a day, an empty match at
  // the very end of the line...). fail2ban drops such a line; `time` is
  // nullopt.
  bool raised = false;
};

// A template's name as fail2ban-regex prints it and its hit count; and
// how often its regex found a date, winning or not (what decides whether
// the search stops at the template before it).
struct DateTemplateStats {
  std::string name;
  uint64_t hits;
  uint64_t regex_hits = 0;
};

struct DateTemplate;  // one compiled template with its usage counters

// Owns its templates and their compiled regexes. Not thread-safe: Match()
// updates hit counts and reorders templates. Movable, not copyable.
class DateDetector {
 public:
  // Error: an invalid datepattern (fail2ban's message, e.g. "Failed to set
  // datepattern '%Y-%q' (may be an invalid format or unescaped percent
  // char): unsupported format character 'q' (0x71) at index 6"), a regex
  // that does not compile, a duplicate template, or a bad logtimezone.
  static Result<DateDetector> Create(const DateDetectorOptions& options);

  DateDetector(DateDetector&& other) noexcept;
  DateDetector& operator=(DateDetector&& other) noexcept;
  DateDetector(const DateDetector&) = delete;
  DateDetector& operator=(const DateDetector&) = delete;
  ~DateDetector();

  // fail2ban's matchTime(line) then getTime(): finds the date in `line`
  // (UTF-8 bytes, no trailing newline). `now` is epoch seconds, fail2ban's
  // MyTime, used for year inference. nullopt: no template matched. Does not
  // allocate in steady state.
  //
  // With share_searches, every state a detector passes through has an id;
  // detectors created with equal options start from the same id, and a
  // detector takes over the id another one reached only by applying the
  // same recorded effects (template hit counts, the winner's bookkeeping,
  // its reordering) to the same state. So equal ids mean equal states, and
  // replaying is exact.
  //
  // `line_key`: 0, or a number that stands for the line's content (see
  // NewLineKey): detectors then recognise a line met before by the number
  // instead of comparing its bytes. Results never depend on it.
  std::optional<DateMatch> Match(std::string_view line, double now, uint64_t line_key = 0);

  // How many Match() calls were answered by replaying another detector's
  // search (share_searches only); for tests and statistics.
  uint64_t replayed() const { return replayed_; }
  // How many Match() calls took the search and conversion of the template
  // that matched last from another detector's (or an earlier) identical
  // one (search_shortcuts only); for tests and statistics.
  uint64_t shared_wins() const { return shared_wins_; }
  // How many Match() calls skipped the search of every template because
  // each was ruled out (search_shortcuts only); for tests and statistics.
  uint64_t ruled_out_lines() const { return ruled_out_lines_; }

  // Templates in their current order, as fail2ban-regex lists them under
  // "Date template hits:" (it prints only those with hits).
  std::vector<DateTemplateStats> templates() const;

 private:
  DateDetector();

  // A character around the last match, as Python's one-character slice.
  struct Char {
    char bytes[4] = {0, 0, 0, 0};
    uint8_t size = 0;  // 0: the empty string
    bool alnum = false;
    std::string_view view() const { return {bytes, size}; }
  };
  // fail2ban's __lastPos / __lastEndPos: a code point index and the
  // characters next to it.
  struct Boundary {
    int64_t index = 0;
    Char before, at;
  };

  // One recorded search, and the last few searches of detectors sharing
  // options on one thread (defined in the .cc file).
  struct SearchRecord;
  struct SharedSearch;
  // What MatchAnchoredLast worked out for one template regex and line.
  struct AnchoredWin;

  // Finds the matching template like matchTime(); returns its index or -1.
  // Sets *raised when fail2ban would have raised (IndexError).
  // `last_unmatched`: the template that matched last, anchored, is known
  // not to match `line` (MatchAnchoredLast searched it).
  int MatchTemplate(std::string_view line, double now, bool* raised, bool last_unmatched);
  // matchTime and getTime when the template that matched last is anchored
  // at the line's begin or end and matches again (the usual case): its
  // search, boundaries and conversion are pure functions of the line, so
  // the detectors of one thread share them (a template list of another
  // jail holds the same compiled regex). False, with nothing changed, when
  // that template does not match `line`: the full search then runs.
  bool MatchAnchoredLast(std::string_view line, double now, std::optional<DateMatch>* out);
  // fail2ban's __lastPos / __lastEndPos for a match spanning bytes
  // [start, end) of `line`, code points [distance, endpos); *raised when
  // line[start] is past the end.
  void WinBoundaries(std::string_view line, size_t start, size_t end, int64_t distance,
                     int64_t endpos, bool* raised, Boundary* pos, Boundary* end_pos);
  // Match() without sharing.
  std::optional<DateMatch> MatchFresh(std::string_view line, double now);
  // The answer for template `t`'s match in match_ (raised: fail2ban's
  // IndexError), but for its template_index.
  DateMatch WinResult(const DateTemplate& t, std::string_view line, bool raised, double now);
  // The state changes of a template win (hits, boundaries, reordering);
  // returns the winner's index afterwards.
  int CommitWin(int i, int64_t distance, bool raised, const Boundary& pos,
                const Boundary& end_pos, double now);
  int ReorderTemplate(int num);
  bool SearchTemplate(int index, std::string_view line, size_t pos, size_t endpos);
  // True if searching template `t` from offset 0 of `subject` provably
  // finds nothing (search_shortcuts).
  bool RuledOut(DateTemplate& t, std::string_view subject);
  // RuledOut's prefix verdicts of every template (by slot) for the lines
  // starting with `key` (four ASCII bytes), for the last few such keys:
  // `known` the templates asked so far, `ruled_out` those that cannot match.
  struct PrefixMask {
    uint32_t key = 0;
    bool valid = false;
    uint64_t known = 0, ruled_out = 0;
  };
  // The mask for `line`'s first four bytes, or null (shorter, not ASCII).
  PrefixMask* PrefixMaskFor(std::string_view line);
  void Convert(const DateTemplate& t, double now, DateMatch* out);
  Char CharAt(std::string_view line, size_t byte);

  std::vector<std::unique_ptr<DateTemplate>> templates_;
  std::optional<int> default_tz_;
  // Two match buffers: the current search and the best one saved while
  // the search goes on (fail2ban's `found`), swapped rather than copied.
  std::unique_ptr<FailRegexMatch> match_;
  std::unique_ptr<FailRegexMatch> found_match_;
  // Scratch for one conversion, sized at Create.
  std::vector<TimeFieldValue> fields_;
  std::optional<LocalNow> local_now_;


  Boundary last_pos_{1, {}, {}};
  Boundary last_end_pos_{0x7fffffff, {}, {}};
  int last_template_ = 0x7fffffff;
  int first_unused_ = 0;

  // share_searches: the search shared with equal detectors (null without),
  // the id of this detector's state, and the replay count.
  bool search_shortcuts_ = true;
  std::array<PrefixMask, 16> prefix_masks_{};
  PrefixMask* line_mask_ = nullptr;  // the line MatchFresh is matching's, or null
  std::shared_ptr<SharedSearch> shared_;
  SearchRecord* recording_ = nullptr;  // what a search in progress fills, or null
  uint64_t state_ = 0;
  uint64_t line_key_ = 0;  // Match()'s while it runs
  // state_ is an id no search record holds: this detector searched alone
  // (no other detector of its thread shares its options) since it took it.
  bool private_state_ = false;
  uint64_t replayed_ = 0;
  uint64_t shared_wins_ = 0;
  uint64_t ruled_out_lines_ = 0;
  // The slots (bits) of the EPOCH templates, which RuledOut rules out by a
  // look at the line rather than by its first four bytes: those whose
  // match may start anywhere, and those anchored at the line's begin.
  uint64_t epoch_slots_ = 0;
  uint64_t epoch_begin_slots_ = 0;
};

}  // namespace bantam

#endif  // BANTAM_DATE_DETECTOR_H_
