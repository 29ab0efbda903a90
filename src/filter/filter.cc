#include "bantam/filter.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "bantam/ini.h"
#include "bantam/py.h"
#include "bantam/value.h"

namespace bantam {
namespace {

// The mlfid cache of fail2ban's Filter: Utils.Cache(maxCount=100, maxTime=300).
constexpr size_t kMlfidMaxCount = 100;
constexpr double kMlfidMaxTime = 300;

// A line whose date lies further than this from now is treated as "now" in
// operation (fail2ban's timezone/latency heuristic), and a remembered date
// is reused for date-less lines only this long.
constexpr double kDateSkew = 60;

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// int() of a captured cidr group: Python accepts surrounding whitespace and
// Unicode digits, but <CIDR> only ever captures \d+, which with UCP can be
// non-ASCII; those (and overflow) fall back to "unspecified".
int ParseCidr(std::string_view s, int fallback) {
  if (!IsDigits(s) || s.size() > 9) return fallback;
  return std::atoi(std::string(s).c_str());
}

// "alt_user_1" -> ("alt_", "user"); "tuple_id" -> ("tuple_", "fid").
bool SplitComplexName(std::string_view name, std::string_view* prefix, std::string* target) {
  for (std::string_view pre : {std::string_view("alt_"), std::string_view("tuple_")}) {
    if (name.size() <= 4 || name.substr(0, pre.size()) != pre) continue;
    std::string_view rest = name.substr(pre.size());
    // Drop a trailing "_<digits>" (the regex's lazy (.*?) then (?:_\d+)?$).
    const size_t us = rest.rfind('_');
    if (us != std::string_view::npos) {
      // The lazy group takes the shortest prefix such that the rest is
      // "_\d+": the first "_" followed only by digits to the end. Python's
      // \d is Unicode, but group names are ASCII here.
      for (size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] == '_' && IsDigits(rest.substr(i + 1))) {
          rest = rest.substr(0, i);
          break;
        }
      }
    }
    std::string n = LowerAscii(rest);
    if (n == "id") n = "fid";
    if (n == "port") n = "fport";
    *prefix = pre;
    *target = std::move(n);
    return true;
  }
  return false;
}

std::string PyReprOpt(const std::optional<std::string>& v) { return v ? PyRepr(*v) : "None"; }

}  // namespace

// ---------------------------------------------------------------------------

const std::optional<std::string>* FailData::FindEntry(std::string_view name) const {
  for (const Entry& e : groups_) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}

std::optional<std::string_view> FailData::Get(std::string_view name) const {
  const std::optional<std::string>* v = FindEntry(name);
  if (v == nullptr || !*v) return std::nullopt;
  return std::string_view(**v);
}

void FailData::Set(std::string_view name, std::optional<std::string> value) {
  for (Entry& e : groups_) {
    if (e.first == name) {
      e.second = std::move(value);
      return;
    }
  }
  groups_.emplace_back(std::string(name), std::move(value));
}

bool FailData::Pop(std::string_view name) {
  for (auto it = groups_.begin(); it != groups_.end(); ++it) {
    if (it->first == name) {
      const bool truthy = it->second && !it->second->empty();
      groups_.erase(it);
      return truthy;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------

std::vector<std::string_view> PySplitLines(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t sep = 0;
    if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e)) {
      sep = 1;
    } else if (c == '\r') {
      sep = (i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) {
      sep = 2;
    } else if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
                static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      sep = 3;
    }
    if (sep == 0) {
      ++i;
      continue;
    }
    out.push_back(s.substr(start, i - start));
    i += sep;
    start = i;
  }
  if (start < s.size()) out.push_back(s.substr(start));
  return out;
}

// ---------------------------------------------------------------------------

void LogLine::Set(std::string_view p, std::string_view d, std::string_view q, uint64_t n) {
  pre.assign(p);
  date.assign(d);
  post.assign(q);
  seq = n;
}

void LogLine::AppendJoined(std::string* out) const {
  out->append(pre).append(date).append(post);
}

bool LogLine::StrippedEquals(std::string_view s) const {
  return s.size() == pre.size() + post.size() && s.substr(0, pre.size()) == pre &&
         s.substr(pre.size()) == post;
}

Filter::Filter(FilterSettings settings) : settings_(std::move(settings)) {}

Result<std::unique_ptr<Filter>> Filter::Create(FilterSettings settings) {
  if (settings.maxlines < 1) settings.maxlines = 1;
  std::unique_ptr<Filter> f(new Filter(std::move(settings)));
  const FilterSettings& s = f->settings_;

  FailRegexOptions options;
  options.host_matches_dns = s.usedns != "no";
  options.maxlines = s.maxlines;
  if (!s.prefregex.empty()) {
    Result<FailRegex> re = FailRegex::Compile(s.prefregex, RegexKind::kPrefRegex, options);
    if (!re.ok()) return re.status();
    f->prefregex_content_ = re->GroupIndex("content");
    options.prefregex_has_failure_id = re->HasFailureIdGroup();
    f->prefregex_.emplace(std::move(*re));
  }
  for (const std::string& r : s.failregex) {
    Result<FailRegex> re = FailRegex::Compile(r, RegexKind::kFailRegex, options);
    if (!re.ok()) return re.status();
    f->failregexes_.push_back(std::move(*re));
  }
  for (const std::string& r : s.ignoreregex) {
    Result<FailRegex> re = FailRegex::Compile(r, RegexKind::kIgnoreRegex, options);
    if (!re.ok()) return re.status();
    f->ignoreregexes_.push_back(std::move(*re));
  }
  DateDetectorOptions date_options;
  date_options.datepattern = s.datepattern;
  date_options.logtimezone = s.logtimezone;
  date_options.share_searches = s.share_date_searches;
  Result<DateDetector> dd = DateDetector::Create(date_options);
  if (!dd.ok()) return dd.status();
  f->date_detector_ = std::make_unique<DateDetector>(std::move(*dd));
  f->BuildGate();
  return f;
}

void Filter::BuildGate() {
  gate_.clear();
  gate_bypasses_prefregex_ = false;
  // A multi-line buffer holds earlier lines too; checking ignoreregexes
  // first reports (LineResult) and warns for lines no failregex matches.
  if (!settings_.line_gate || settings_.maxlines > 1) return;
  if (!ignoreregexes_.empty() && ignoreregexes_.size() + 2 < failregexes_.size()) return;
  // A failure needs one of the failregexes' strings, each in the line (or
  // in the prefregex's content, which is part of it); a prefregex match
  // needs one of the prefregex's. One failregex that may match anything
  // leaves the failregexes none.
  std::vector<std::string> fail_texts;
  for (const FailRegex& re : failregexes_) {
    if (re.required_literals().empty()) {
      fail_texts.clear();
      break;
    }
    for (const FailRegex::RequiredLiteral& lit : re.required_literals()) {
      fail_texts.push_back(lit.text);
    }
  }
  std::vector<std::string> pref_texts;
  if (prefregex_) {
    for (const FailRegex::RequiredLiteral& lit : prefregex_->required_literals()) {
      pref_texts.push_back(lit.text);
    }
  }
  // The set whose shortest string is longest turns more lines away:
  // dropbear's prefregex needs "ad", "ogin" or "xit", its failregexes
  // "password attempt for " and the like. Strings from the failregexes
  // skip the prefregex too (gate_bypasses_prefregex_).
  const auto shortest = [](const std::vector<std::string>& v) {
    size_t n = SIZE_MAX;
    for (const std::string& t : v) n = std::min(n, t.size());
    return v.empty() ? size_t{0} : n;
  };
  std::vector<std::string> texts;
  if (!pref_texts.empty() && shortest(pref_texts) >= shortest(fail_texts)) {
    texts = std::move(pref_texts);
  } else {
    if (fail_texts.empty()) return;
    texts = std::move(fail_texts);
    gate_bypasses_prefregex_ = prefregex_.has_value();
  }
  std::sort(texts.begin(), texts.end());
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
  for (const std::string& t : texts) {
    // The buffer ends in "\n" after the line: a string with a newline could
    // match there, which GateOpen does not look at.
    if (t.empty() || t.find('\n') != std::string::npos) {
      gate_.clear();
      gate_bypasses_prefregex_ = false;
      return;
    }
    gate_.emplace_back(t);
    const auto first = static_cast<unsigned char>(t[0]);
    gate_first_bytes_[first / 64] |= uint64_t{1} << (first % 64);
    gate_max_size_ = std::max(gate_max_size_, t.size());
  }
  if (settings_.share_line_scans && !gate_.empty()) {
    scan_ = LiteralScan::ForThisThread();
    scan_thread_ = ThisThreadToken();
    std::vector<uint32_t> ids;
    for (const FailRegex::RequiredLiteral& lit : gate_) ids.push_back(scan_->Add(lit.text));
    gate_mask_ = LiteralScan::MaskOf(ids);
  }
}

bool Filter::GateOpen(std::string_view pre, std::string_view date, std::string_view post,
                      uint64_t line_key) const {
  // The shared scan looks at the whole line, date included: a string in
  // pre or post is found there (one only in the date opens the gate for
  // nothing, which costs a search, not a result).
  if (scan_ && scan_thread_ == ThisThreadToken()) {
    scan_->Scan(pre, date, post, line_key);
    if (scan_->HasAny(gate_mask_)) return true;
  } else if (FailRegex::RequiredLiteral::AnyFoundIn(gate_, post) ||
             (!pre.empty() && FailRegex::RequiredLiteral::AnyFoundIn(gate_, pre))) {
    return true;
  }
  // Across the cut-out date: a head of k bytes of a string ends `pre`,
  // the rest starts `post`. Most lines fail on the first byte's bit.
  const size_t last_k = std::min(pre.size(), gate_max_size_ == 0 ? 0 : gate_max_size_ - 1);
  for (size_t k = 1; k <= last_k; ++k) {
    const auto c = static_cast<unsigned char>(pre[pre.size() - k]);
    if ((gate_first_bytes_[c / 64] >> (c % 64) & 1) == 0) continue;
    const std::string_view head = pre.substr(pre.size() - k);
    for (const FailRegex::RequiredLiteral& lit : gate_) {
      const std::string_view t = lit.text;
      if (k < t.size() && t.size() - k <= post.size() && t.substr(0, k) == head &&
          post.substr(0, t.size() - k) == t.substr(k)) {
        return true;
      }
    }
  }
  return false;
}

void Filter::Warn(const std::string& message) const {
  if (settings_.warn) settings_.warn(message);
}

void Filter::LineBufferSeqs(std::vector<uint64_t>* seqs) const {
  seqs->clear();
  if (org_stale_ && buffer_is_org_) {
    seqs->push_back(turned_away_seq_);
    return;
  }
  for (const LogLine& t : buffer_is_org_ ? org_ : buffer_) seqs->push_back(t.seq);
}

std::string Filter::ProcessedLine() const {
  if (org_stale_) {
    return turned_away_.substr(0, turned_away_pre_) +
           turned_away_.substr(turned_away_.size() - turned_away_post_);
  }
  return org_.empty() ? std::string() : org_.back().pre + org_.back().post;
}


void Filter::CopyView(const DatedView& v, uint64_t seq, LogLine* out) {
  out->Set(v.pre, v.date, v.post, seq);
  out->time = v.time;
  out->no_date = v.no_date;
  out->skip = v.skip;
  out->skipped_old = v.skipped_old;
}

void Filter::DateLineWithTime(std::string_view line, double time, std::string_view date_text,
                              double now, uint64_t seq, LogLine* out) {
  DatedView v;
  DateViewWithTime(line, time, date_text, now, seq, &v);
  CopyView(v, seq, out);
}

void Filter::DateLine(std::string_view line, double now, uint64_t seq, LogLine* out) {
  DatedView v;
  DateView(line, now, seq, 0, &v);
  CopyView(v, seq, out);
}

void Filter::DateViewWithTime(std::string_view line, double time, std::string_view date_text,
                              double now, uint64_t seq, DatedView* out) {
  if (line.size() > kMaxLineBytes) {
    Warn("line " + std::to_string(seq) + " cut to " + std::to_string(kMaxLineBytes) + " bytes");
    line = line.substr(0, kMaxLineBytes);
  }
  out->line = line;
  out->pre = line.substr(0, 0);
  out->date = date_text;
  out->post = line;
  out->whole_line = date_text.empty();
  out->line_key = 0;
  out->no_date = false;
  out->skip = false;
  out->skipped_old = false;
  if (last_time_text_ != date_text) last_time_text_.assign(date_text);
  last_date_ = time;
  out->time = time;
  if (settings_.check_find_time && !settings_.in_operation && time < now - settings_.findtime) {
    out->skip = out->skipped_old = true;
  }
}

void Filter::DateView(std::string_view line, double now, uint64_t seq, uint64_t line_key,
                      DatedView* out) {
  // Every cut keeps pre as the line's head and post as its tail; the date
  // between them is the line's own text unless it is last_time_text_.
  const auto set = [out](std::string_view p, std::string_view d, std::string_view q,
                         bool whole_line = true) {
    out->pre = p;
    out->date = d;
    out->post = q;
    out->whole_line = whole_line || d.empty();
  };
  out->line_key = line_key;
  out->no_date = false;
  out->skip = false;
  out->skipped_old = false;
  out->time.reset();
  if (line.size() > kMaxLineBytes) {
    Warn("line " + std::to_string(seq) + " cut to " + std::to_string(kMaxLineBytes) + " bytes");
    line = line.substr(0, kMaxLineBytes);
  }
  out->line = line;

  std::optional<double>& date = out->time;
  const std::optional<DateMatch> m = date_detector_->Match(line, now, line_key);
  if (m && m->raised) {
    // fail2ban's date code raises here and the line is dropped with an error.
    Warn("Failed to process line (date parsing raised): " + std::string(line));
    set("", "", line);
    out->skip = true;
    return;
  }
  if (m) {
    // The detector's span lies within the line: views without substr's
    // checks (ten jails on a file cut each line ten times).
    const char* const p = line.data();
    const std::string_view text(p + m->begin, m->end - m->begin);
    set(std::string_view(p, m->begin), text, std::string_view(p + m->end, line.size() - m->end));
    if (!text.empty()) {
      if (m->time) {
        date = *m->time;
        if (last_time_text_ != text) last_time_text_.assign(text);
        last_date_ = date;
      } else {
        Warn("findFailure failed to parse timeText: " + std::string(text));
      }
    } else if (last_date_ && *last_date_ != 0 && *last_date_ > now - kDateSkew) {
      set("", last_time_text_, line, false);
      date = last_date_;
    } else {
      date = now;
    }
  } else {
    set("", "", line);
  }
  if (!date) {
    out->no_date = true;
    if (last_date_ && *last_date_ != 0 && *last_date_ > now - kDateSkew) {
      set("", last_time_text_, line, false);
      date = last_date_;
    } else if (settings_.check_find_time && settings_.in_operation) {
      date = now;
    }
  }

  if (settings_.check_find_time && date) {
    if (settings_.in_operation) {
      // fail2ban truncates the difference to whole seconds before comparing:
      // |trunc(d)| > kDateSkew, which for a whole kDateSkew is |d| >=
      // kDateSkew + 1 (and false for NaN either way) without a libm call.
      static_assert(kDateSkew == static_cast<double>(static_cast<int64_t>(kDateSkew)));
      if (std::fabs(*date - now) >= kDateSkew + 1) {
        const double delta = std::trunc(*date - now);
        if (!warned_time_skew_) {
          warned_time_skew_ = true;
          Warn("Detected a log entry " + std::to_string(static_cast<int64_t>(std::fabs(delta))) +
               "s " + (delta < 0 ? "before" : "after") +
               " the current time in operation mode; treating such entries as if they just "
               "happened. Line with odd timestamp: " +
               std::string(line));
        }
        date = now;
        last_date_ = date;
      }
    } else if (*date < now - settings_.findtime) {
      if (!warned_old_) {
        warned_old_ = true;
        Warn("Ignoring all log entries older than " +
             std::to_string(static_cast<int64_t>(settings_.findtime)) +
             "s; these are probably messages generated while the daemon was not running.");
      }
      out->skip = out->skipped_old = true;
    }
  }
}

void Filter::MatchLine(LogLine* line, double now, std::vector<Failure>* failures,
                       LineResult* result) {
  failures->clear();
  if (result != nullptr) *result = LineResult();
  if (line->skip) {
    if (result != nullptr) result->skipped_old = line->skipped_old;
    return;
  }
  FindFailure(line, now, failures, result);
}

void Filter::ProcessLineWithTime(std::string_view line, double time, std::string_view date_text,
                                 double now, uint64_t seq, std::vector<Failure>* failures,
                                 LineResult* result) {
  DatedView v;
  DateViewWithTime(line, time, date_text, now, seq, &v);
  MatchView(v, now, seq, failures, result);
}

void Filter::ProcessLine(std::string_view line, double now, uint64_t seq,
                         std::vector<Failure>* failures, LineResult* result, uint64_t line_key) {
  DatedView v;
  DateView(line, now, seq, line_key, &v);
  MatchView(v, now, seq, failures, result);
}

void Filter::MatchView(const DatedView& v, double now, uint64_t seq,
                       std::vector<Failure>* failures, LineResult* result) {
  // FindFailure's gate, before the line is copied: with several jails on a
  // file most lines are turned away by most of them. What is left is what
  // FindFailure leaves for such a line.
  const bool gate_applies =
      !v.skip && !gate_.empty() && settings_.maxlines <= 1 &&
      !(gate_bypasses_prefregex_ && (result != nullptr || settings_.record_prefregex_groups));
  if (gate_applies && !GateOpen(v.pre, v.date, v.post, v.whole_line ? v.line_key : 0)) {
    failures->clear();
    org_stale_ = true;
    if (settings_.keep_processed_line) {
      turned_away_.assign(v.line);
      turned_away_pre_ = v.pre.size();
      turned_away_post_ = v.post.size();
    } else {
      turned_away_.clear();
      turned_away_pre_ = turned_away_post_ = 0;
    }
    turned_away_seq_ = seq;
    buffer_is_org_ = true;
    if (prefregex_) prefregex_matched_ = false;
    buf_valid_ = false;
    if (result != nullptr) {
      *result = LineResult();
      result->prefregex_matched = prefregex_matched_;
    }
    return;
  }
  CopyView(v, seq, &current_);
  gate_open_known_ = gate_applies;
  MatchLine(&current_, now, failures, result);
  gate_open_known_ = false;
}

void Filter::RebuildBuf() {
  buf_.clear();
  const std::vector<LogLine>& lines = buffer_is_org_ ? org_ : buffer_;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i != 0) buf_.push_back('\n');
    lines[i].AppendStripped(&buf_);
  }
  buf_.push_back('\n');
  buf_valid_ = true;
}

bool Filter::Search(const FailRegex& re, std::string_view subject) {
  Result<bool> r = re.Search(subject, &match_);
  if (!r.ok()) {
    Warn(r.status().message());
    return false;
  }
  return *r;
}

// fail2ban's Regex.search bookkeeping: which lines of `org` the match covers
// (counted by newlines in `subject`, which may be a rewritten buffer), minus
// the lines eaten by <SKIPLINES>.
void Filter::SplitMatched(const FailRegex& re, std::string_view subject,
                          const std::vector<LogLine>& org, MatchedLines* out) const {
  out->matched.clear();
  out->unmatched.clear();
  if (org.size() <= 1) {
    for (size_t i = 0; i < org.size(); ++i) out->matched.push_back(i);
    return;
  }
  const size_t start = match_.start(), end = match_.end();
  // rindex("\n", 0, start + 1): last newline at or before `start`.
  size_t line_start = 0;
  {
    const size_t limit = std::min(start + 1, subject.size());
    const size_t nl = subject.substr(0, limit).rfind('\n');
    if (nl != std::string_view::npos) line_start = nl + 1;
  }
  // index("\n", end - 1): first newline at or after end - 1 (Python's
  // negative start counts from the end when the match is empty at 0).
  size_t line_end = subject.size();
  {
    size_t from = end == 0 ? subject.size() - 1 : end - 1;
    const size_t nl = subject.find('\n', from);
    if (nl != std::string_view::npos) line_end = nl + 1;
  }
  const size_t count1 = static_cast<size_t>(
      std::count(subject.begin(), subject.begin() + static_cast<ptrdiff_t>(line_start), '\n'));
  const size_t count2 = static_cast<size_t>(
      std::count(subject.begin(), subject.begin() + static_cast<ptrdiff_t>(line_end), '\n'));
  const size_t c1 = std::min(count1, org.size());
  const size_t c2 = std::min(std::max(count2, c1), org.size());
  for (size_t i = c1; i < c2; ++i) out->matched.push_back(i);
  for (size_t i = 0; i < c1; ++i) out->unmatched.push_back(i);

  // Lines captured by <SKIPLINES> groups go back to "unmatched".
  std::string skipped;
  for (int n = 0;; ++n) {
    const int gi = re.GroupIndex("skiplines" + std::to_string(n));
    if (gi < 0) break;
    if (std::optional<std::string_view> g = match_.Group(gi)) skipped.append(*g);
  }
  if (!skipped.empty()) {
    size_t n = 0;
    for (std::string_view sk : PySplitLines(skipped)) {
      for (size_t m = 0; n + m < out->matched.size(); ++m) {
        if (org[out->matched[n + m]].StrippedEquals(sk)) {
          out->unmatched.push_back(out->matched[n + m]);
          out->matched.erase(out->matched.begin() + static_cast<ptrdiff_t>(n + m));
          n += m;
          break;
        }
      }
    }
  }
  for (size_t i = c2; i < org.size(); ++i) out->unmatched.push_back(i);
}

int Filter::IgnoreLine(const FailRegex* failregex, const MatchedLines* matched_by_fail,
                       LineResult* result) {
  std::string_view subject = buf_;
  std::string own;
  if (failregex != nullptr && settings_.maxlines > 1) {
    for (size_t i = 0; i < matched_by_fail->matched.size(); ++i) {
      if (i != 0) own.push_back('\n');
      org_[matched_by_fail->matched[i]].AppendStripped(&own);
    }
    own.push_back('\n');
    subject = own;
  }
  int found = -1;
  for (size_t i = 0; i < ignoreregexes_.size(); ++i) {
    Result<bool> r = ignoreregexes_[i].Search(subject, &ignore_match_);
    if (!r.ok()) {
      Warn(r.status().message());
      continue;
    }
    if (!*r) continue;
    found = static_cast<int>(i);
    if (result != nullptr) result->ignored_by.push_back(found);
    if (!settings_.check_all_regex || settings_.maxlines > 1) {
      if (failregex != nullptr) {
        std::vector<LogLine> rest;
        for (size_t u : matched_by_fail->unmatched) rest.push_back(org_[u]);
        buffer_ = std::move(rest);
        buffer_is_org_ = false;
        buf_valid_ = false;
      }
    }
    if (!settings_.check_all_regex) break;
  }
  return found;
}

void Filter::CollectGroups(const FailRegex& re, FailData* fail) const {
  bool complex = false;
  for (const FailRegexGroup& g : re.groups()) {
    std::optional<std::string_view> v = match_.Group(g.index);
    fail->Set(g.name, v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
    if (g.name.size() > 4 && (g.name.rfind("alt_", 0) == 0 || g.name.rfind("tuple_", 0) == 0)) {
      complex = true;
    }
  }
  if (!complex) return;
  // Merge alternates ("alt_user_1" -> "user") and tuples ("tuple_id_2" ->
  // "fid" as a tuple), in sorted (key, target) order as fail2ban does.
  std::vector<std::pair<std::string, std::string>> alts, tuples;
  for (const FailRegexGroup& g : re.groups()) {
    std::string_view prefix;
    std::string target;
    if (!SplitComplexName(g.name, &prefix, &target)) continue;
    (prefix == "alt_" ? alts : tuples).emplace_back(g.name, std::move(target));
  }
  std::sort(alts.begin(), alts.end());
  std::sort(tuples.begin(), tuples.end());
  for (const auto& [k, n] : alts) {
    std::optional<std::string_view> v = fail->Get(k);
    if (v && !v->empty() && !fail->Truthy(n)) fail->Set(n, std::string(*v));
  }
  // A tuple is kept as its Python repr, which is what str() of the failure
  // id gives; later parts are appended to that repr.
  std::vector<std::pair<std::string, std::vector<std::string>>> built;
  for (const auto& kn : tuples) {
    const std::string& k = kn.first;
    const std::string& n = kn.second;
    const std::optional<std::string>* vk = nullptr;
    for (const auto& e : fail->groups()) {
      if (e.first == k) vk = &e.second;
    }
    auto it = std::find_if(built.begin(), built.end(), [&](const auto& b) { return b.first == n; });
    if (it == built.end()) {
      std::vector<std::string> parts;
      std::optional<std::string> t;
      for (const auto& e : fail->groups()) {
        if (e.first == n) t = e.second;
      }
      parts.push_back(PyReprOpt(t));
      built.emplace_back(n, std::move(parts));
      it = built.end() - 1;
    }
    it->second.push_back(vk != nullptr ? PyReprOpt(*vk) : "None");
  }
  for (const auto& [n, parts] : built) {
    std::string repr = "(";
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i != 0) repr += ", ";
      repr += parts[i];
    }
    repr += ")";
    fail->Set(n, std::move(repr));
  }
}

// ---------------------------------------------------------------------------

Filter::MlfidEntry* Filter::MlfidGet(const std::string& key, double now) {
  auto it = mlfid_.find(key);
  if (it == mlfid_.end()) return nullptr;
  if (it->second->second.expires > now) return &it->second->second;
  MlfidUnset(key);
  return nullptr;
}

void Filter::MlfidSet(const std::string& key, MlfidEntry entry, double now) {
  entry.expires = now + kMlfidMaxTime;
  auto it = mlfid_.find(key);
  if (it == mlfid_.end() && mlfid_.size() >= kMlfidMaxCount) {
    // fail2ban pops the oldest entries until one has not expired yet and a
    // slot is free.
    while (!mlfid_order_.empty()) {
      const bool alive = mlfid_order_.front().second.expires > now;
      mlfid_.erase(mlfid_order_.front().first);
      mlfid_order_.pop_front();
      if (alive && mlfid_.size() < kMlfidMaxCount) break;
    }
  }
  it = mlfid_.find(key);
  if (it != mlfid_.end()) {
    it->second->second = std::move(entry);  // an existing key keeps its place
    return;
  }
  mlfid_order_.emplace_back(key, std::move(entry));
  mlfid_.emplace(key, std::prev(mlfid_order_.end()));
}

void Filter::MlfidUnset(const std::string& key) {
  auto it = mlfid_.find(key);
  if (it == mlfid_.end()) return;
  mlfid_order_.erase(it->second);
  mlfid_.erase(it);
}

namespace {

// fail2ban's _updateUsers: adds `user` to the "users" set of `fail`.
bool UpdateUsers(FailData* fail, std::optional<std::string_view> user) {
  if (user && !user->empty()) {
    if (!fail->has_users) {
      fail->has_users = true;
      fail->users.clear();
    }
    if (std::find(fail->users.begin(), fail->users.end(), *user) == fail->users.end()) {
      fail->users.emplace_back(*user);
    }
    return true;
  }
  return fail->has_users;
}

}  // namespace

FailData* Filter::MergeFailure(const std::string& mlfid, FailData* fail,
                               const std::vector<std::string>& matched, double now) {
  MlfidEntry* cached = MlfidGet(mlfid, now);
  bool users_many = false;
  int flags = 0;  // 1 nofail, 2 forget, 4 cached had nofail/gained, 8 gained
  if (fail->Truthy("mlfgained")) {
    flags |= 8 | 1;
    if (!fail->Truthy("nofail")) fail->Set("nofail", std::string(*fail->Get("mlfgained")));
  } else if (fail->Truthy("nofail")) {
    flags |= 1;
  }
  if (fail->Pop("mlfforget")) flags |= 2;

  FailData* merged = fail;
  if (cached != nullptr) {
    FailData& g = cached->fail;
    const bool has_users = UpdateUsers(&g, fail->Get("user"));
    users_many = has_users && g.users.size() > 1;
    if (g.Pop("nofail")) flags |= 4;
    if (g.Pop("mlfgained")) flags |= 4;
    if (flags & 8) g.mlfpending = false;
    if ((flags & 4) == 0 && !g.mlfpending) g.matches.clear();
    // Every non-None value of the new failure overwrites the cached one.
    for (const auto& [k, v] : fail->groups()) {
      if (v) g.Set(k, v);
    }
    if (fail->has_nofail_matches) {
      g.has_nofail_matches = true;
      g.nofail_matches = fail->nofail_matches;
    }
    if (fail->has_users) {
      g.has_users = true;
      g.users = fail->users;
    }
    if (fail->mlfpending) g.mlfpending = true;
    if (fail->ip) g.ip = fail->ip;
    if (!fail->matches.empty()) g.matches = fail->matches;
    merged = &g;
    if (flags & 2) {
      forgotten_ = std::move(g);
      MlfidUnset(mlfid);
      merged = &forgotten_;
    }
  } else if ((flags & 2) == 0) {
    const bool has_users = UpdateUsers(fail, fail->Get("user"));
    users_many = has_users && fail->users.size() > 1;
    MlfidEntry entry;
    entry.fail = std::move(*fail);
    MlfidSet(mlfid, std::move(entry), now);
    merged = &MlfidGet(mlfid, now)->fail;
  }

  const bool pending = merged->mlfpending;
  merged->mlfpending = false;
  if (pending || users_many) {
    merged->Pop("nofail");
    merged->Pop("mlfgained");
    flags &= ~(8 | 1);
  }
  if ((flags & 1) == 0) {
    std::vector<std::string> m = std::move(merged->nofail_matches);
    merged->nofail_matches.clear();
    merged->has_nofail_matches = false;
    m.insert(m.end(), merged->matches.begin(), merged->matches.end());
    if ((flags & 8) == 0) m.insert(m.end(), matched.begin(), matched.end());
    merged->matches = std::move(m);
  } else if ((flags & 3) == 1) {
    merged->has_nofail_matches = true;
    merged->nofail_matches.insert(merged->nofail_matches.end(), matched.begin(), matched.end());
  }
  return merged;
}

// ---------------------------------------------------------------------------

void Filter::FindFailure(LogLine* line, double now, std::vector<Failure>* failures,
                         LineResult* result) {
  const std::optional<double> date = line->time;
  const bool no_date = line->no_date;
  const bool raw_default = settings_.usedns == "raw" || settings_.return_raw_host;
  const int default_cidr = raw_default ? kCidrRaw : kCidrUnspec;
  const bool check_all = settings_.check_all_regex;
  const bool multi = settings_.maxlines > 1;

  org_stale_ = false;
  if (multi) {
    buffer_.push_back(*line);
    if (buffer_.size() > static_cast<size_t>(settings_.maxlines)) {
      buffer_.erase(buffer_.begin(),
                    buffer_.end() - static_cast<ptrdiff_t>(settings_.maxlines));
    }
    org_ = buffer_;
    buffer_is_org_ = false;
  } else {
    // One line: the buffer and orgBuffer are both just this line. Swapping
    // keeps the strings' capacity, so nothing is allocated per line.
    org_.resize(1);
    // The caller's line gets the previous buffers back, for reuse.
    std::swap(org_[0].pre, line->pre);
    std::swap(org_[0].date, line->date);
    std::swap(org_[0].post, line->post);
    org_[0].seq = line->seq;
    buffer_is_org_ = true;
  }
  auto report = [&]() {
    if (result != nullptr) result->prefregex_matched = prefregex_matched_;
  };
  if (!gate_.empty() && !multi &&
      !(gate_bypasses_prefregex_ && (result != nullptr || settings_.record_prefregex_groups)) &&
      !gate_open_known_ && !GateOpen(org_[0].pre, org_[0].date, org_[0].post, 0)) {
    // What the searches would have left: no prefregex match, no failure.
    if (prefregex_) prefregex_matched_ = false;
    buf_valid_ = false;
    report();
    return;
  }
  RebuildBuf();

  // Few ignoreregexes compared to failregexes: check them first.
  if (!ignoreregexes_.empty() && ignoreregexes_.size() + 2 < failregexes_.size()) {
    if (IgnoreLine(nullptr, nullptr, result) >= 0) {
      report();
      return;
    }
  }

  FailData pre_groups;
  bool have_pre_groups = false;
  if (prefregex_) {
    prefregex_matched_ = Search(*prefregex_, buf_);
    if (!prefregex_matched_) {
      report();
      return;
    }
    CollectGroups(*prefregex_, &pre_groups);
    have_pre_groups = true;
    if (settings_.record_prefregex_groups) {
      std::vector<FailRegexGroup> by_index = prefregex_->groups();
      std::sort(by_index.begin(), by_index.end(),
                [](const FailRegexGroup& a, const FailRegexGroup& b) { return a.index < b.index; });
      pref_groups_.clear();
      for (const FailRegexGroup& g : by_index) {
        std::optional<std::string_view> v = match_.Group(g.index);
        pref_groups_.emplace_back(g.name, v ? std::optional<std::string>(std::string(*v))
                                            : std::nullopt);
      }
    }
    std::optional<std::string> repl;
    if (prefregex_content_ >= 0) {
      if (std::optional<std::string_view> c = pre_groups.Get("content")) repl = std::string(*c);
      pre_groups.Pop("content");
    }
    if (repl && !repl->empty()) {
      buffer_.clear();
      LogLine t;
      t.post = std::move(*repl);
      t.seq = org_.back().seq;
      buffer_.push_back(std::move(t));
      buffer_is_org_ = false;
      buf_valid_ = false;
    }
  }
  report();

  MatchedLines lines;
  std::vector<std::string> matched_text;
  for (size_t index = 0; index < failregexes_.size(); ++index) {
    const FailRegex& re = failregexes_[index];
    if (!buf_valid_) RebuildBuf();
    if (!Search(re, buf_)) continue;
    SplitMatched(re, buf_, org_, &lines);
    FailData fail;
    if (have_pre_groups) fail = pre_groups;
    // fail2ban copies the prefregex groups and then updates them with every
    // group of the failregex, None included.
    CollectGroups(re, &fail);

    if (!ignoreregexes_.empty() && IgnoreLine(&re, &lines, result) >= 0) {
      buf_valid_ = false;
      if (!check_all) break;
      continue;
    }
    if (no_date) {
      if (!warned_no_date_) {
        warned_no_date_ = true;
        Warn("Found a match but no valid date/time found for '" + org_.back().date +
             "'. Please try setting a custom date pattern (see man page jail.conf(5)).");
      }
      if (!date && settings_.check_find_time) continue;
    }
    if (!check_all || multi) {
      std::vector<LogLine> rest;
      for (size_t u : lines.unmatched) rest.push_back(org_[u]);
      buffer_ = std::move(rest);
      buffer_is_org_ = false;
      buf_valid_ = false;
    }
    matched_text.clear();
    for (size_t m : lines.matched) {
      std::string s;
      org_[m].AppendJoined(&s);
      matched_text.push_back(std::move(s));
    }

    int cidr = default_cidr;
    bool raw = raw_default;
    FailData* merged = &fail;
    const std::optional<std::string> mlfid =
        fail.Get("mlfid") ? std::optional<std::string>(std::string(*fail.Get("mlfid")))
                          : std::nullopt;
    if (mlfid) {
      merged = MergeFailure(*mlfid, &fail, matched_text, now);
      if (merged->Truthy("nofail")) {
        if (!check_all) return;
      }
    } else {
      merged->matches.insert(merged->matches.end(), matched_text.begin(), matched_text.end());
    }

    std::optional<std::string> fid;
    if (auto v = merged->Get("fid")) fid = std::string(*v);
    std::optional<std::string> ip;
    if (auto v4 = merged->Get("ip4")) {
      ip = std::string(*v4);
      cidr = merged->Truthy("cidr") ? ParseCidr(*merged->Get("cidr"), kFamIpv4) : kFamIpv4;
      raw = true;
    } else if (auto v6 = merged->Get("ip6")) {
      ip = std::string(*v6);
      cidr = merged->Truthy("cidr") ? ParseCidr(*merged->Get("cidr"), kFamIpv6) : kFamIpv6;
      raw = true;
    } else if (auto dns = merged->Get("dns")) {
      ip = std::string(*dns);
    } else {
      if (!fid && !mlfid) {
        // fail2ban's getFailID() over this regex's own match.
        for (const char* g : {"fid", "ip4", "ip6", "dns"}) {
          const int gi = re.GroupIndex(g);
          if (gi < 0) continue;
          if (std::optional<std::string_view> v = match_.Group(gi)) {
            fid = std::string(*v);
            break;
          }
        }
        if (!fid) {
          Warn("No group found in '" + ProcessedLine() + "' using '" + re.regex() + "'");
          continue;
        }
      }
      ip = fid;
      raw = true;
    }

    std::vector<std::optional<IpAddr>> ids;
    if (!ip) {
      merged->mlfpending = true;
      if (!check_all && settings_.ignore_pending) return;
      ids.emplace_back(std::nullopt);
    } else if (raw) {
      if (!fid || *fid == *ip) {
        ids.emplace_back(IpAddr::FromText(*ip, cidr));
      } else {
        merged->ip = IpAddr::FromText(*ip, cidr).ToString();
        ids.emplace_back(IpAddr::FromText(*fid, default_cidr));
      }
    } else {
      std::string warning;
      Resolver& resolver = settings_.resolver != nullptr ? *settings_.resolver : SystemResolver();
      for (IpAddr& a : TextToIp(*ip, settings_.usedns, resolver, &warning)) {
        ids.emplace_back(std::move(a));
      }
      if (!warning.empty()) Warn(warning);
    }
    for (std::optional<IpAddr>& id : ids) {
      Failure f;
      f.regex_index = static_cast<int>(index);
      f.id = std::move(id);
      f.time = date;
      f.fail = *merged;
      failures->push_back(std::move(f));
    }
    if (!check_all) break;
  }
}

}  // namespace bantam
