#include "bantam/journal_reader.h"

#include <glob.h>
#include <systemd/sd-journal.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <set>

#include "bantam/option_list.h"
#include "bantam/py.h"
#include "bantam/shared_library.h"
#include "bantam/utf8.h"

namespace bantam {
namespace {

// ---- Python value semantics that formatJournalEntry leans on ----

// Decimal digits of a non-negative number held as a string; grows it by
// value*base+digit so any length and base converts exactly, as Python's
// big ints do (a PID field may hold anything).
void MulAdd(std::string* dec, int base, int digit) {
  int carry = digit;
  for (size_t i = dec->size(); i-- > 0;) {
    int v = ((*dec)[i] - '0') * base + carry;
    (*dec)[i] = static_cast<char>('0' + v % 10);
    carry = v / 10;
  }
  while (carry) {
    dec->insert(dec->begin(), static_cast<char>('0' + carry % 10));
    carry /= 10;
  }
  size_t nz = dec->find_first_not_of('0');
  dec->erase(0, nz == std::string::npos ? dec->size() - 1 : nz);
}

int DigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

// Python's int(bytes_value, base) for base 10 or 0, rendered as "%i" would
// print it; nullopt where Python raises ValueError.
std::optional<std::string> PyIntText(std::string_view s, int base) {
  while (!s.empty() && IsPyBytesSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsPyBytesSpace(s.back())) s.remove_suffix(1);
  bool neg = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  bool underscore_ok = false;  // a '_' may follow a digit or a base prefix
  if (base == 0) {
    base = 10;
    if (s.size() >= 2 && s[0] == '0') {
      char p = static_cast<char>(s[1] | 0x20);
      int prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (prefixed) {
        base = prefixed;
        s.remove_prefix(2);
        underscore_ok = true;
      }
    }
    // Base 0 refuses "010": a decimal with a leading zero must be all zeros.
    if (base == 10 && !s.empty() && s[0] == '0' &&
        s.find_first_not_of("0_") != std::string_view::npos)
      return std::nullopt;
  }
  std::string dec = "0";
  bool any_digit = false, last_underscore = false;
  for (char c : s) {
    if (c == '_') {
      if (!underscore_ok) return std::nullopt;
      underscore_ok = false;
      last_underscore = true;
      continue;
    }
    int d = DigitValue(c);
    if (d >= base) return std::nullopt;
    MulAdd(&dec, base, d);
    any_digit = true;
    underscore_ok = true;
    last_underscore = false;
  }
  if (!any_digit || last_underscore) return std::nullopt;
  return neg && dec != "0" ? "-" + dec : dec;
}

// int(bytes) for the timestamp fields, which must fit an int64 to be usable.
std::optional<int64_t> PyInt64(std::string_view s) {
  std::optional<std::string> t = PyIntText(s, 10);
  if (!t) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(t->c_str(), &end, 10);
  if (errno == ERANGE || *end) return std::nullopt;
  return static_cast<int64_t>(v);
}

// str(b'...'): how "[%s]" % pid prints a PID field that is no number.
std::string PyBytesRepr(std::string_view b) {
  bool has_single = b.find('\'') != std::string_view::npos;
  bool has_double = b.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (unsigned char c : b) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

// ---- time, as python-systemd and getJrnEntTime produce it ----

// datetime.fromtimestamp(usec / 1e6, timezone(offset)).isoformat() and
// time.mktime(that.timetuple()) + microsecond / 1e6.
void EntryTime(int64_t usec, long utc_offset, std::string* iso, double* epoch) {
  int64_t secs = usec / 1000000, micro = usec % 1000000;
  if (micro < 0) {
    micro += 1000000;
    --secs;
  }
  time_t wall = static_cast<time_t>(secs + utc_offset);
  struct tm tm;
  gmtime_r(&wall, &tm);

  char buf[64];
  int len = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  iso->assign(buf, static_cast<size_t>(len));
  if (micro) {
    len = std::snprintf(buf, sizeof buf, ".%06" PRId64, micro);
    iso->append(buf, static_cast<size_t>(len));
  }
  long off = utc_offset < 0 ? -utc_offset : utc_offset;
  len = std::snprintf(buf, sizeof buf, "%c%02ld:%02ld", utc_offset < 0 ? '-' : '+', off / 3600,
                      off / 60 % 60);
  iso->append(buf, static_cast<size_t>(len));
  if (off % 60) {
    len = std::snprintf(buf, sizeof buf, ":%02ld", off % 60);
    iso->append(buf, static_cast<size_t>(len));
  }

  // An aware datetime's timetuple() has tm_isdst -1, so mktime() re-reads
  // the wall clock in the real local zone, DST rules and all.
  struct tm local = {};
  local.tm_year = tm.tm_year;
  local.tm_mon = tm.tm_mon;
  local.tm_mday = tm.tm_mday;
  local.tm_hour = tm.tm_hour;
  local.tm_min = tm.tm_min;
  local.tm_sec = tm.tm_sec;
  local.tm_isdst = -1;
  *epoch = static_cast<double>(mktime(&local)) + static_cast<double>(micro) / 1.0E6;
}

void EscapeNewlines(std::string* s) {
  if (s->find('\n') == std::string::npos) return;
  std::string t;
  t.reserve(s->size() + 8);
  for (char c : *s) {
    if (c == '\n') {
      t += "\\n";
    } else {
      t += c;
    }
  }
  s->swap(t);
}

}  // namespace

long CurrentUtcOffset() {
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  return tm.tm_gmtoff;
}

void FormatJournalEntry(const JournalEntry& e, long utc_offset, JournalLine* out) {
  // dict(entry).get(): the first value of each field. Only MESSAGE is
  // joined when repeated; fail2ban would crash on the others.
  const std::string_view *hostname = nullptr, *ident = nullptr, *comm = nullptr,
                         *syslog_pid = nullptr, *pid = nullptr, *source_realtime = nullptr,
                         *source_monotonic = nullptr;
  auto first = [](const std::string_view** slot, const std::string_view& v) {
    if (!*slot) *slot = &v;
  };
  for (const auto& [k, v] : e.fields) {
    if (k == "_HOSTNAME")
      first(&hostname, v);
    else if (k == "SYSLOG_IDENTIFIER")
      first(&ident, v);
    else if (k == "_COMM")
      first(&comm, v);
    else if (k == "SYSLOG_PID")
      first(&syslog_pid, v);
    else if (k == "_PID")
      first(&pid, v);
    else if (k == "_SOURCE_REALTIME_TIMESTAMP")
      first(&source_realtime, v);
    else if (k == "_SOURCE_MONOTONIC_TIMESTAMP")
      first(&source_monotonic, v);
  }

  std::string& line = out->line;
  line.clear();
  // logelements joined with spaces; empty values are falsy and skipped.
  bool any = false;
  auto element = [&] {
    if (any) line += ' ';
    any = true;
  };
  if (hostname && !hostname->empty()) {
    element();
    AppendUtf8Replace(*hostname, &line);
  }
  if (!ident || ident->empty()) ident = comm;
  if (ident && !ident->empty()) {
    element();
    size_t ident_start = line.size();
    AppendUtf8Replace(*ident, &line);
    // PID fields go through int(); 0 and b'' are falsy and fall through to
    // _PID. A non-number gets a second chance as int(v, 0) ("0x1f"), and
    // failing that is printed as the bytes' repr.
    auto pid_text = [](const std::string_view* v) -> std::optional<std::string> {
      if (!v) return std::nullopt;
      if (std::optional<std::string> d = PyIntText(*v, 10)) {
        if (*d == "0") return std::nullopt;
        return d;
      }
      if (v->empty()) return std::nullopt;
      if (std::optional<std::string> d = PyIntText(*v, 0)) return d;
      return PyBytesRepr(*v);
    };
    std::optional<std::string> p = pid_text(syslog_pid);
    if (!p) p = pid_text(pid);
    if (p) {
      line += '[';
      line += *p;
      line += ']';
    }
    line += ':';
    if (std::string_view(line).substr(ident_start) == "kernel:") {
      std::optional<int64_t> m = source_monotonic ? PyInt64(*source_monotonic) : std::nullopt;
      double secs = static_cast<double>(m ? *m : static_cast<int64_t>(e.monotonic_usec)) / 1.0E6;
      char buf[64];
      int len = std::snprintf(buf, sizeof buf, "[%12.6f]", secs);
      element();
      line.append(buf, static_cast<size_t>(len));
    }
  }
  // MESSAGE is always an element ('' when absent); repeated values are
  // space-joined.
  element();
  bool first_message = true;
  for (const auto& [k, v] : e.fields) {
    if (k != "MESSAGE") continue;
    if (!first_message) line += ' ';
    first_message = false;
    AppendUtf8Replace(v, &line);
  }
  EscapeNewlines(&line);

  std::optional<int64_t> realtime = source_realtime ? PyInt64(*source_realtime) : std::nullopt;
  EntryTime(realtime ? *realtime : static_cast<int64_t>(e.realtime_usec), utc_offset,
            &out->date_text, &out->time);
  out->cursor.assign(e.cursor);
}

Result<JournalOptions> ParseJournalOptions(const OrderedMap<std::string>& backend_options) {
  JournalOptions o;
  for (const auto& [key, value] : backend_options) {
    if (key == "journalpath") {
      o.journalpath = value;
    } else if (key == "journalfiles") {
      o.journalfiles = SplitWords(value);
    } else if (key == "journalflags") {
      std::optional<int64_t> v = PyInt64(value);
      if (!v || *v < 0 || *v > INT32_MAX)
        return Status::Error("systemd backend: journalflags = '" + value +
                             "' is not a non-negative integer");
      o.journalflags = static_cast<int>(*v);
    } else if (key == "namespace") {
      o.ns = value;
    } else if (key == "useDns") {
      // fail2ban hands this one to the Filter, not the journal; the jail
      // reads it from the same option map.
    } else {
      return Status::Error("systemd backend: unknown option '" + key + "'");
    }
  }
  return o;
}

namespace {

// libsystemd, loaded when a jail reads the journal (shared_library.h):
// linked, it and the six libraries it brings (libcap, libgcrypt,
// libgpg-error, liblzma, libzstd, liblz4) were a quarter of every
// program's start-up. Named as in libsystemd, without "sd_journal_".
struct SdJournalApi {
  decltype(&sd_journal_add_disjunction) add_disjunction;
  decltype(&sd_journal_add_match) add_match;
  decltype(&sd_journal_close) close;
  decltype(&sd_journal_enumerate_data) enumerate_data;
  decltype(&sd_journal_flush_matches) flush_matches;
  decltype(&sd_journal_get_cursor) get_cursor;
  decltype(&sd_journal_get_fd) get_fd;
  decltype(&sd_journal_get_monotonic_usec) get_monotonic_usec;
  decltype(&sd_journal_get_realtime_usec) get_realtime_usec;
  decltype(&sd_journal_next) next;
  decltype(&sd_journal_open) open;
  decltype(&sd_journal_open_directory) open_directory;
  decltype(&sd_journal_open_files) open_files;
  decltype(&sd_journal_open_namespace) open_namespace;
  decltype(&sd_journal_previous) previous;
  decltype(&sd_journal_process) process;
  decltype(&sd_journal_restart_data) restart_data;
  decltype(&sd_journal_seek_cursor) seek_cursor;
  decltype(&sd_journal_seek_head) seek_head;
  decltype(&sd_journal_seek_realtime_usec) seek_realtime_usec;
  decltype(&sd_journal_seek_tail) seek_tail;
  decltype(&sd_journal_test_cursor) test_cursor;
};

SdJournalApi g_sd;  // filled once by LoadSdJournal, read-only after

Status LoadSdJournal() {
  static const Status loaded = []() -> Status {
    Result<const SharedLibrary*> lib = SharedLibrary::Load("libsystemd.so.0", "libsystemd0");
    if (!lib.ok()) return Status::Error("journal: " + lib.status().message());
    const SharedLibrary& l = **lib;
    SdJournalApi a{};
    for (Status s : {l.Bind("sd_journal_add_disjunction", &a.add_disjunction),
                     l.Bind("sd_journal_add_match", &a.add_match),
                     l.Bind("sd_journal_close", &a.close),
                     l.Bind("sd_journal_enumerate_data", &a.enumerate_data),
                     l.Bind("sd_journal_flush_matches", &a.flush_matches),
                     l.Bind("sd_journal_get_cursor", &a.get_cursor),
                     l.Bind("sd_journal_get_fd", &a.get_fd),
                     l.Bind("sd_journal_get_monotonic_usec", &a.get_monotonic_usec),
                     l.Bind("sd_journal_get_realtime_usec", &a.get_realtime_usec),
                     l.Bind("sd_journal_next", &a.next),
                     l.Bind("sd_journal_open", &a.open),
                     l.Bind("sd_journal_open_directory", &a.open_directory),
                     l.Bind("sd_journal_open_files", &a.open_files),
                     l.Bind("sd_journal_open_namespace", &a.open_namespace),
                     l.Bind("sd_journal_previous", &a.previous),
                     l.Bind("sd_journal_process", &a.process),
                     l.Bind("sd_journal_restart_data", &a.restart_data),
                     l.Bind("sd_journal_seek_cursor", &a.seek_cursor),
                     l.Bind("sd_journal_seek_head", &a.seek_head),
                     l.Bind("sd_journal_seek_realtime_usec", &a.seek_realtime_usec),
                     l.Bind("sd_journal_seek_tail", &a.seek_tail),
                     l.Bind("sd_journal_test_cursor", &a.test_cursor)}) {
      if (!s.ok()) return Status::Error("journal: " + s.message());
    }
    g_sd = a;
    return Status::Ok();
  }();
  return loaded;
}

Status JournalError(const std::string& what, int r) {
  return Status::FromErrno("journal: " + what, -r);
}

// glob.glob() of each pattern: no match is no file, a plain name only if it
// exists, backslash is no escape; the union without duplicates.
std::vector<std::string> GlobAll(const std::vector<std::string>& patterns) {
  std::set<std::string> files;
  for (const std::string& p : patterns) {
    glob_t g = {};
    if (glob(p.c_str(), GLOB_NOESCAPE, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) files.insert(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return {files.begin(), files.end()};
}

}  // namespace

Result<std::unique_ptr<JournalReader>> JournalReader::Open(const JournalOptions& o,
                                                           std::optional<long> utc_offset) {
  if (Status s = LoadSdJournal(); !s.ok()) return s;
  std::optional<std::vector<std::string>> files;
  if (o.journalfiles) files = GlobAll(*o.journalfiles);
  if (o.journalpath && files)
    return Status::Error("journal: journalpath and journalfiles cannot be specified together");

  int flags = 0;
  if (o.journalflags) {
    flags = *o.journalflags;
  } else if ((!files || files->empty()) && (!o.journalpath || o.journalpath->empty())) {
    // Without an explicit place fail2ban reads only system journals, so a
    // host with many user sessions does not run out of descriptors.
    flags = SD_JOURNAL_SYSTEM;
    if (const char* env = std::getenv("F2B_SYSTEMD_DEFAULT_FLAGS")) {
      std::optional<int64_t> v = PyInt64(env);
      if (!v || *v < 0 || *v > INT32_MAX)
        return Status::Error(std::string("journal: F2B_SYSTEMD_DEFAULT_FLAGS = '") + env +
                             "' is not a non-negative integer");
      flags = static_cast<int>(*v);
    }
  }

  sd_journal* j = nullptr;
  int r;
  std::string what;
  if (o.journalpath) {
    what = "opening directory '" + *o.journalpath + "'";
    r = g_sd.open_directory(&j, o.journalpath->c_str(), flags);
  } else if (files) {
    std::vector<const char*> argv;
    for (const std::string& f : *files) argv.push_back(f.c_str());
    argv.push_back(nullptr);
    what = files->empty() ? "no file matches journalfiles" : "opening journal files";
    r = g_sd.open_files(&j, argv.data(), flags);
  } else if (o.ns) {
    what = "opening namespace '" + *o.ns + "'";
    r = g_sd.open_namespace(&j, o.ns->c_str(), flags);
  } else {
    what = "opening the local journal";
    r = g_sd.open(&j, flags);
  }
  if (r < 0) return JournalError(what, r);
  return std::unique_ptr<JournalReader>(
      new JournalReader(j, utc_offset ? *utc_offset : CurrentUtcOffset()));
}

JournalReader::~JournalReader() { g_sd.close(j_); }

Status JournalReader::AddGroups(const std::vector<std::vector<std::string>>& groups) {
  // The same calls, in the same order, as fail2ban's _addJournalMatches:
  // the journal's match tree depends on them.
  int r;
  if (!matches_.empty() && (r = g_sd.add_disjunction(j_)) < 0)
    return JournalError("adding a disjunction", r);
  for (const std::vector<std::string>& group : groups) {
    for (const std::string& term : group) {
      if ((r = g_sd.add_match(j_, term.data(), term.size())) < 0)
        return JournalError("bad journal match '" + term + "'", r);
    }
    if ((r = g_sd.add_disjunction(j_)) < 0) return JournalError("adding a disjunction", r);
  }
  matches_.insert(matches_.end(), groups.begin(), groups.end());
  return Status::Ok();
}

Status JournalReader::Restore() {
  g_sd.flush_matches(j_);
  std::vector<std::vector<std::string>> kept;
  kept.swap(matches_);
  return AddGroups(kept);
}

Status JournalReader::AddMatch(const std::vector<std::string>& words) {
  std::vector<std::vector<std::string>> groups(1);
  for (const std::string& w : words) {
    if (w == "+") {
      groups.emplace_back();
    } else {
      groups.back().push_back(w);
    }
  }
  Status s = AddGroups(groups);
  if (s.ok()) return s;
  // A half-added call would leave a match tree nobody asked for.
  Status restored = Restore();
  if (!restored.ok()) return Status::Error(s.message() + "; restoring: " + restored.message());
  return s;
}

Status JournalReader::AddMatches(const std::vector<std::vector<std::string>>& matches) {
  for (const std::vector<std::string>& m : matches) {
    Status s = AddMatch(m);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

void JournalReader::ClearMatches() {
  g_sd.flush_matches(j_);
  matches_.clear();
}

Status JournalReader::SeekHead() {
  int r = g_sd.seek_head(j_);
  return r < 0 ? JournalError("seeking to the head", r) : Status::Ok();
}

Status JournalReader::SeekTail() {
  int r = g_sd.seek_tail(j_);
  return r < 0 ? JournalError("seeking to the tail", r) : Status::Ok();
}

Status JournalReader::SeekRealtime(double since) {
  if (!(since >= 0)) return Status::Error("journal: cannot seek to a negative time");
  // int(realtime * 1000000): truncation, as python-systemd does it.
  int r = g_sd.seek_realtime_usec(j_, static_cast<uint64_t>(since * 1000000));
  return r < 0 ? JournalError("seeking to a time", r) : Status::Ok();
}

Status JournalReader::SeekCursor(std::string_view cursor) {
  std::string c(cursor);
  int r = g_sd.seek_cursor(j_, c.c_str());
  if (r < 0) return JournalError("seeking to cursor '" + c + "'", r);
  // A seek only positions between entries; step onto the one the cursor
  // names so Next() continues after it. If that entry is gone (vacuumed,
  // or filtered out by matches) we stand on a later one that is unread.
  r = g_sd.next(j_);
  if (r < 0) return JournalError("reading after cursor", r);
  if (r == 0) return Status::Ok();  // nothing at or after it: at the end
  r = g_sd.test_cursor(j_, c.c_str());
  if (r < 0) return JournalError("testing cursor '" + c + "'", r);
  if (r > 0) return Status::Ok();
  // Seeking to the later entry's own cursor leaves it for Next().
  char* later = nullptr;
  r = g_sd.get_cursor(j_, &later);
  if (r < 0) return JournalError("reading the entry cursor", r);
  r = g_sd.seek_cursor(j_, later);
  std::free(later);
  return r < 0 ? JournalError("seeking past cursor '" + c + "'", r) : Status::Ok();
}

Result<bool> JournalReader::Next(JournalLine* out) {
  int r = g_sd.next(j_);
  if (r < 0) return JournalError("reading the next entry", r);
  if (r == 0) return false;
  Status s = ReadCurrent(out);
  if (!s.ok()) return s;
  return true;
}

Result<bool> JournalReader::Previous(JournalLine* out) {
  int r = g_sd.previous(j_);
  if (r < 0) return JournalError("moving to the previous entry", r);
  if (r == 0) return false;
  if (out) {
    Status s = ReadCurrent(out);
    if (!s.ok()) return s;
  }
  return true;
}

Status JournalReader::ReadCurrent(JournalLine* out) {
  // Each enumerated field is valid only until the next call (compressed
  // ones share one decompression buffer), so copy them all into one reused
  // buffer first and take the views once it stops growing.
  field_bytes_.clear();
  field_spans_.clear();
  const void* data;
  size_t len;
  g_sd.restart_data(j_);
  // Like python-systemd, stop quietly at a field that cannot be read and
  // use what came before it.
  while (g_sd.enumerate_data(j_, &data, &len) > 0) {
    std::string_view d(static_cast<const char*>(data), len);
    size_t eq = d.find('=');
    if (eq == std::string_view::npos) continue;
    field_spans_.push_back({field_bytes_.size(), eq, len});
    field_bytes_.append(d);
  }
  entry_.fields.clear();
  for (const FieldSpan& f : field_spans_) {
    std::string_view d(field_bytes_.data() + f.start, f.size);
    entry_.fields.emplace_back(d.substr(0, f.eq), d.substr(f.eq + 1));
  }
  int r = g_sd.get_realtime_usec(j_, &entry_.realtime_usec);
  if (r < 0) return JournalError("reading the entry time", r);
  sd_id128_t boot;
  r = g_sd.get_monotonic_usec(j_, &entry_.monotonic_usec, &boot);
  if (r < 0) return JournalError("reading the entry's monotonic time", r);
  char* cursor = nullptr;
  r = g_sd.get_cursor(j_, &cursor);
  if (r < 0) return JournalError("reading the entry cursor", r);
  entry_.cursor = cursor;
  FormatJournalEntry(entry_, utc_offset_, out);
  std::free(cursor);
  entry_.cursor = {};
  return Status::Ok();
}

Result<int> JournalReader::fd() {
  int r = g_sd.get_fd(j_);
  if (r < 0) return JournalError("getting a file descriptor", r);
  return r;
}

Result<JournalChange> JournalReader::Process() {
  int r = g_sd.process(j_);
  if (r < 0) return JournalError("processing changes", r);
  if (r == SD_JOURNAL_APPEND) return JournalChange::kAppend;
  if (r == SD_JOURNAL_INVALIDATE) return JournalChange::kInvalidate;
  return JournalChange::kNop;
}

JournalSource::JournalSource(SubscriberId subscriber,
                             std::vector<std::vector<std::string>> journalmatch,
                             LineCallback on_line)
    : subscribers_{subscriber},
      journalmatch_(std::move(journalmatch)),
      on_line_(std::move(on_line)) {}

Status JournalSource::Open(const JournalOptions& options, double not_before,
                           std::optional<TimePosition> resume) {
  reader_.reset();
  fd_ = -1;
  if (resume && resume->time > 0) last_ = *resume;
  Result<std::unique_ptr<JournalReader>> reader = JournalReader::Open(options);
  if (!reader.ok()) return reader.status();
  std::unique_ptr<JournalReader> r = std::move(*reader);
  if (Status s = r->AddMatches(journalmatch_); !s.ok()) return s;
  // Entries up to the last one read are not read again: start 1.5 us after
  // it, which the seek's truncation to whole us turns into exactly +1 us.
  double since = not_before;
  if (last_.time > 0) since = std::max(since, last_.time + 1.5e-6);
  if (Status s = r->SeekRealtime(since); !s.ok()) return s;
  Result<int> fd = r->fd();
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  reader_ = std::move(r);
  return Status::Ok();
}

Status JournalSource::Process() {
  if (!reader_) return Status::Ok();
  Result<JournalChange> change = reader_->Process();
  if (!change.ok()) return change.status();
  return Poll();
}

Status JournalSource::Poll() {
  if (!reader_) return Status::Ok();
  while (true) {
    Result<bool> more = reader_->Next(&entry_);
    if (!more.ok()) return more.status();
    if (!*more) return Status::Ok();
    // fail2ban's tuple line carries the ISO date with one space appended.
    date_.assign(entry_.date_text).push_back(' ');
    SourceLine line;
    line.text = entry_.line;
    line.subscribers = &subscribers_;
    line.origin = kJournalLogName;
    line.time = entry_.time;
    line.date_text = date_;
    on_line_(line);
    last_.time = entry_.time;
    last_.time_text = entry_.date_text;
  }
}

void JournalSource::Unsubscribe(SubscriberId subscriber) { std::erase(subscribers_, subscriber); }

void JournalSource::Positions(bool changed_only, std::vector<SourcePosition>* out) const {
  if (subscribers_.empty() || last_.time <= 0) return;
  if (changed_only && last_.time == saved_time_) return;
  out->push_back(SourcePosition{subscribers_.front(), kJournalLogName, last_});
}

void JournalSource::MarkSaved(const SourcePosition& position) {
  if (const TimePosition* where = std::get_if<TimePosition>(&position.where)) {
    saved_time_ = where->time;
  }
}

SourceStatus JournalSource::StatusOf(SubscriberId /*subscriber*/) const {
  std::string joined;
  for (const std::vector<std::string>& m : journalmatch_) {
    if (!joined.empty()) joined += " + ";
    for (size_t i = 0; i < m.size(); ++i) joined += (i ? " " : "") + m[i];
  }
  return SourceStatus{"Journal matches", {joined}};
}

}  // namespace bantam
