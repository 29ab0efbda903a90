#include "bantam/regex_tool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bantam/ami_protocol.h"
#include "bantam/config_dir.h"
#include "bantam/config_loader.h"
#include "bantam/filter.h"
#include "bantam/prefix_options.h"
#include "bantam/ini.h"
#include "bantam/journal_reader.h"
#include "bantam/option_list.h"
#include "bantam/py.h"
#include "bantam/utf8.h"
#include "bantam/value.h"

namespace bantam {

namespace {

constexpr const char kVersion[] = "1.0.2";

// Files at least this large are read and date-parsed on a second thread.
constexpr size_t kPipelineBytes = 1 << 20;

// Output goes through stdio with a large buffer: a report of a big log is
// written once at the end, --json streams.
void Out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

std::string ShortStr(std::string_view s, size_t l = 53) {
  // Python counts code points.
  if (CountCodePoints(s) <= l) return std::string(s);
  size_t keep = 0;
  for (size_t n = 0; n < l - 3; ++n) NextCodePoint(s, &keep);
  return std::string(s.substr(0, keep)) + "...";
}

void PprintList(const std::vector<std::string>& l, const std::string& header = "") {
  if (l.empty()) return;
  std::string s = header.empty() ? "" : "|- " + header + "\n";
  s += "|  ";
  for (size_t i = 0; i < l.size(); ++i) {
    if (i != 0) s += "\n|  ";
    s += l[i];
  }
  s += "\n`-";
  Out(s);
}

std::string RStrip(std::string_view s) {
  size_t e = s.size();
  while (e > 0 && IsPyAsciiSpace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(0, e));
}

struct Options {
  std::string config = "/etc/fail2ban";
  bool config_given = false;  // -c; otherwise ChooseConfigDir decides
  std::optional<std::string> datepattern;
  std::optional<std::string> timezone;
  std::string encoding = "UTF-8";
  bool raw = false;
  std::optional<std::string> usedns;
  int maxlines = 0;
  std::optional<std::string> journalmatch;
  std::string log_level = "critical";
  int verbose = 0;
  bool verbose_date = false;
  bool check_all = true;
  std::optional<std::string> out;
  bool print_no_missed = false, print_no_ignored = false;
  bool print_all_matched = false, print_all_missed = false, print_all_ignored = false;
  bool json = false;
  std::optional<double> now;
  PrefixOptions prefixes;  // --prefix4, --prefix6
  std::vector<std::string> args;
};

void PrintUsage(FILE* f, const char* prog) {
  std::fprintf(
      f,
      "Usage: %s [OPTIONS] <LOG> <REGEX> [IGNOREREGEX]\n\n"
      "Runs a filter (or a single regex) over log lines and reports what it finds,\n"
      "with the arguments and report of fail2ban-regex.\n\n"
      "LOG is one log line given on the command line, a log file, or\n"
      "systemd-journal[journalpath=DIR|journalfiles=FILES] for a journal.\n"
      "REGEX is a failregex, the name of a filter in CONFIG/filter.d (options in\n"
      "brackets, e.g. sshd[mode=aggressive]), or the path of a filter file.\n"
      "IGNOREREGEX is an ignoreregex or a filter file whose ignoreregex is used.\n\n"
      "Options:\n"
      "  -h, --help              this help\n"
      "  -c, --config DIR        configuration directory (default /etc/fail2ban)\n"
      "  -d, --datepattern P     date pattern to use instead of the filter's\n"
      "  --timezone, --TZ ZONE   zone of log times that carry none (e.g. UTC, +0100)\n"
      "  -e, --encoding ENC      log encoding; only UTF-8\n"
      "  -r, --raw               use host names as they are, no DNS lookups\n"
      "  --usedns yes|warn|no|raw  how <HOST> treats names (no: addresses only)\n"
      "  -L, --maxlines N        lines buffered for multi-line regexes\n"
      "  -m, --journalmatch M    journal match instead of the filter's\n"
      "  -l, --log-level LEVEL   show warnings at this level or above on stderr\n"
      "  -V                      version, short form\n"
      "  -v, --verbose           more detail (repeatable); --verbosity N sets it\n"
      "  --verbose-date, --VD    more detail on date templates\n"
      "  --no-check-all          stop at the first failregex that matches a line\n"
      "  -o, --out FIELD         print only this of each failure: id, ip, msg, row,\n"
      "                          a captured field, or a template with <tags>\n"
      "  --print-no-missed       do not list missed lines\n"
      "  --print-no-ignored      do not list ignored lines\n"
      "  --print-all-matched     list every matched line\n"
      "  --print-all-missed      list every missed line\n"
      "  --print-all-ignored     list every ignored line\n"
      "  --json                  one JSON object per failure and nothing else:\n"
      "                          {\"lineno\":N,\"id\":...,\"time\":T,\"fail\":{...}}\n"
      "  --prefix4 N, --prefix6 N  count failures by their /N network, as a jail with\n"
      "                          prefix4/prefix6 does: ids become prefixes, and the\n"
      "                          report lists the failures per prefix\n"
      "  --now EPOCH             fix the current time (year inference, lines without date)\n",
      prog);
}

// optparse-style parsing: "-dX", "-d X", "--datepattern=X", "--datepattern X".
// Returns an error message, or "" on success; sets *exit_now for -h/-V.
std::string ParseArgs(int argc, char** argv, Options* o, int* exit_now) {
  struct Spec {
    const char* short_name;
    const char* long_name;
    const char* long_alias;
    bool value;
  };
  static const Spec kSpecs[] = {
      {"-c", "--config", nullptr, true},          {"-d", "--datepattern", nullptr, true},
      {nullptr, "--timezone", "--TZ", true},      {"-e", "--encoding", nullptr, true},
      {"-r", "--raw", nullptr, false},            {nullptr, "--usedns", nullptr, true},
      {"-L", "--maxlines", nullptr, true},        {"-m", "--journalmatch", nullptr, true},
      {"-l", "--log-level", nullptr, true},       {"-V", nullptr, nullptr, false},
      {"-v", "--verbose", nullptr, false},        {nullptr, "--verbosity", nullptr, true},
      {nullptr, "--verbose-date", "--VD", false}, {"-D", "--debuggex", nullptr, false},
      {nullptr, "--no-check-all", nullptr, false}, {"-o", "--out", nullptr, true},
      {nullptr, "--print-no-missed", nullptr, false}, {nullptr, "--print-no-ignored", nullptr, false},
      {nullptr, "--print-all-matched", nullptr, false}, {nullptr, "--print-all-missed", nullptr, false},
      {nullptr, "--print-all-ignored", nullptr, false}, {"-t", "--log-traceback", nullptr, false},
      {nullptr, "--full-traceback", nullptr, false}, {nullptr, "--json", nullptr, false},
      {nullptr, "--now", nullptr, true},          {"-h", "--help", nullptr, false},
      {nullptr, "--prefix4", nullptr, true},      {nullptr, "--prefix6", nullptr, true},
  };
  bool only_args = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (only_args || a.size() < 2 || a[0] != '-') {
      o->args.push_back(a);
      continue;
    }
    if (a == "--") {
      only_args = true;
      continue;
    }
    const Spec* spec = nullptr;
    std::optional<std::string> value;
    if (a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      const std::string name = a.substr(0, eq);
      if (eq != std::string::npos) value = a.substr(eq + 1);
      for (const Spec& s : kSpecs) {
        if ((s.long_name && name == s.long_name) || (s.long_alias && name == s.long_alias)) spec = &s;
      }
      if (!spec) return "no such option: " + name;
      if (!spec->value && value) return spec->long_name + std::string(" option does not take a value");
    } else {
      const std::string name = a.substr(0, 2);
      for (const Spec& s : kSpecs) {
        if (s.short_name && name == s.short_name) spec = &s;
      }
      if (!spec) return "no such option: " + name;
      if (a.size() > 2) {
        if (spec->value) {
          value = a.substr(2);
        } else {
          // Bundled flags such as -rv.
          std::string rest = "-" + a.substr(2);
          // Re-dispatch the remaining flags one by one.
          for (size_t k = 1; k < rest.size(); ++k) {
            std::string flag = std::string("-") + rest[k];
            const Spec* fs = nullptr;
            for (const Spec& s : kSpecs)
              if (s.short_name && flag == s.short_name) fs = &s;
            if (!fs || fs->value) return "no such option: " + flag;
            if (flag == "-r") o->raw = true;
            if (flag == "-v") ++o->verbose;
            if (flag == "-D") return "--debuggex is not supported by bantam-regex";
            if (flag == "-V") {
              Out(kVersion);
              *exit_now = 0;
              return "";
            }
            if (flag == "-h") {
              PrintUsage(stdout, argv[0]);
              *exit_now = 0;
              return "";
            }
          }
        }
      }
    }
    const std::string key = spec->long_name ? spec->long_name : spec->short_name;
    if (spec->value && !value) {
      if (i + 1 >= argc) return a + " option requires an argument";
      value = argv[++i];
    }
    if (key == "--config") {
      o->config = *value;
      o->config_given = true;
    } else if (key == "--datepattern") o->datepattern = *value;
    else if (key == "--timezone") o->timezone = *value;
    else if (key == "--encoding") o->encoding = *value;
    else if (key == "--raw") o->raw = true;
    else if (key == "--usedns") o->usedns = *value;
    else if (key == "--maxlines" || key == "--verbosity") {
      char* end = nullptr;
      const long v = std::strtol(value->c_str(), &end, 10);
      if (value->empty() || *end != '\0') {
        return "option " + a + ": invalid integer value: " + PyRepr(*value);
      }
      (key == "--maxlines" ? o->maxlines : o->verbose) = static_cast<int>(v);
    } else if (key == "--journalmatch") o->journalmatch = *value;
    else if (key == "--log-level") o->log_level = *value;
    else if (key == "-V") {
      Out(kVersion);
      *exit_now = 0;
      return "";
    } else if (key == "--verbose") ++o->verbose;
    else if (key == "--verbose-date") o->verbose_date = true;
    else if (key == "--debuggex") return "--debuggex is not supported by bantam-regex";
    else if (key == "--no-check-all") o->check_all = false;
    else if (key == "--out") o->out = *value;
    else if (key == "--print-no-missed") o->print_no_missed = true;
    else if (key == "--print-no-ignored") o->print_no_ignored = true;
    else if (key == "--print-all-matched") o->print_all_matched = true;
    else if (key == "--print-all-missed") o->print_all_missed = true;
    else if (key == "--print-all-ignored") o->print_all_ignored = true;
    else if (key == "--json") o->json = true;
    else if (key == "--now") {
      char* end = nullptr;
      const double v = std::strtod(value->c_str(), &end);
      if (value->empty() || *end != '\0' || !std::isfinite(v)) {
        return "option --now: invalid number: " + PyRepr(*value);
      }
      o->now = v;
    } else if (key == "--prefix4" || key == "--prefix6") {
      if (Status st = SetPrefixOption(&o->prefixes, key.substr(2), *value); !st.ok()) {
        return "option " + key + ": " + st.message();
      }
    } else if (key == "--help") {
      PrintUsage(stdout, argv[0]);
      *exit_now = 0;
      return "";
    }
  }
  return "";
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A log file mapped into memory (or read, for pipes and /proc files).
class LogText {
 public:
  ~LogText() {
    if (map_ != nullptr) ::munmap(map_, size_);
  }
  std::string Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "[Errno " + std::to_string(errno) + "] " + std::strerror(errno) + ": " + PyRepr(path);
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
      void* m = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (m != MAP_FAILED) {
        map_ = m;
        size_ = static_cast<size_t>(st.st_size);
        ::madvise(m, size_, MADV_SEQUENTIAL);
        ::close(fd);
        text_ = std::string_view(static_cast<const char*>(map_), size_);
        return "";
      }
    }
    char buf[1 << 16];
    ssize_t r;
    while ((r = ::read(fd, buf, sizeof buf)) > 0) owned_.append(buf, static_cast<size_t>(r));
    ::close(fd);
    text_ = owned_;
    return "";
  }
  std::string_view text() const { return text_; }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
  std::string owned_;
  std::string_view text_;
};

struct RegexStat {
  std::string regex;
  uint64_t hits = 0;
  struct Hit {
    std::string id;
    std::optional<double> time;
    bool multiple;
  };
  std::vector<Hit> ips;  // only with -v
};

struct LineStats {
  uint64_t tested = 0, matched = 0, missed = 0, ignored = 0;
  std::vector<std::string> matched_lines, missed_lines, ignored_lines;
};

void AppendJsonFail(const Failure& f, std::string* out) {
  out->push_back('{');
  bool first = true;
  auto key = [&](std::string_view k) {
    if (!first) out->push_back(',');
    first = false;
    out->append(JsonQuote(k));
    out->push_back(':');
  };
  for (const auto& [k, v] : f.fail.groups()) {
    if (!v) continue;
    key(k);
    out->append(JsonQuote(*v));
  }
  if (f.fail.ip) {
    key("ip");
    out->append(JsonQuote(*f.fail.ip));
  }
  if (f.fail.has_users) {
    key("users");
    out->push_back('[');
    for (size_t i = 0; i < f.fail.users.size(); ++i) {
      if (i != 0) out->push_back(',');
      out->append(JsonQuote(f.fail.users[i]));
    }
    out->push_back(']');
  }
  key("matches");
  out->push_back('[');
  for (size_t i = 0; i < f.fail.matches.size(); ++i) {
    if (i != 0) out->push_back(',');
    out->append(JsonQuote(f.fail.matches[i]));
  }
  out->push_back(']');
  out->push_back('}');
}

// Python's "%a %b %d %H:%M:%S %Y" of time.localtime(t).
std::string CTimeString(double t) {
  const time_t secs = static_cast<time_t>(std::floor(t));
  struct tm tm {};
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %b %d %H:%M:%S %Y", &tm);
  return buf;
}

class RegexTool {
 public:
  explicit RegexTool(Options o) : o_(std::move(o)) {}
  int Run();

 private:
  void Output(const std::string& s) {
    if (!quiet()) Out(s);
  }
  bool quiet() const { return o_.out.has_value() || o_.json; }
  bool ReadRegex(const std::string& value, bool fail);
  bool SetDatePattern(const std::string& pattern);
  // The text fail2ban-regex shows for a line: `prefix` + the line, decoded
  // from raw bytes when `decode`.
  struct Original {
    std::string_view line;
    std::string_view prefix;
    bool decode;
    std::string Text() const;
  };
  void TestLine(std::string_view line, uint64_t lineno, const JournalLine* entry = nullptr);
  void TestDated(LogLine* dated, uint64_t lineno, const Original& original);
  void RunPipelined(std::string_view text);
  void TestJournalLine(const JournalLine& entry, uint64_t lineno);
  void OutFormatted(const std::vector<Failure>& ret);
  void PrintStats(double elapsed);
  void PrintLines(const char* type, uint64_t count, const std::vector<std::string>& lines,
                  bool print_all);

  Options o_;
  FilterSettings settings_;
  bool maxlines_set_ = false;
  bool datepattern_set_ = false;
  int maxlines_stat_ = 20;
  std::optional<std::string> prefregex_;
  std::vector<RegexStat> failregex_, ignoreregex_;
  std::unique_ptr<Filter> filter_;
  std::string backend_ = "auto";
  std::vector<std::string> journalmatch_;
  uint64_t pref_matched_ = 0;
  std::vector<std::string> pref_groups_;
  LineStats stats_;
  std::vector<Failure> failures_;
  LineResult line_result_;
  std::vector<uint64_t> buffer_before_, buffer_after_;
  std::vector<std::string> buffered_text_;  // text of lines in the buffer, by seq order
  std::vector<std::pair<uint64_t, std::string>> pending_lines_;
  std::string json_;
  std::map<std::string, uint64_t> by_prefix_;  // failures per id, with --prefix4/6
  std::string journal_date_;
  LogLine dated_;
  double now_ = 0;
};

void RegexTool::OutFormatted(const std::vector<Failure>& ret) {
  const std::string& fmt = *o_.out;
  for (const Failure& r : ret) {
    const std::string id = r.id ? r.id->ToString() : "None";
    if (fmt == "id" || fmt == "fid") {
      Out(id);
    } else if (fmt == "ip") {
      Out(r.fail.ip ? *r.fail.ip : id);
    } else if (fmt == "msg") {
      for (const std::string& m : r.fail.matches) Out(m);
    } else if (fmt == "row") {
      std::string row = "[" + PyRepr(id) + ",\t" + (r.time ? PyFloatRepr(*r.time) : "None") + ",\t{";
      bool first = true;
      for (const auto& [k, v] : r.fail.groups()) {
        if (!first) row += ", ";
        first = false;
        row += PyRepr(k) + ": " + (v ? PyRepr(*v) : "None");
      }
      row += "}],";
      Out(row);
    } else if (fmt == "matches") {
      std::string l = "[";
      for (size_t i = 0; i < r.fail.matches.size(); ++i) {
        if (i != 0) l += ", ";
        l += PyRepr(r.fail.matches[i]);
      }
      Out(l + "]");
    } else {
      // A field name, or a template with <tags>.
      if (fmt.find('<') == std::string::npos) {
        std::optional<std::string_view> v = r.fail.Get(fmt);
        Out(v ? std::string(*v) : "None");
        continue;
      }
      std::string s;
      for (size_t i = 0; i < fmt.size();) {
        if (fmt[i] == '<') {
          const size_t e = fmt.find('>', i);
          if (e != std::string::npos) {
            const std::string tag = fmt.substr(i + 1, e - i - 1);
            std::optional<std::string> v;
            if (tag == "ip" || tag == "fid") v = tag == "ip" && r.fail.ip ? *r.fail.ip : id;
            else if (tag == "time") v = PyFloatRepr(r.time.value_or(now_));  // a ticket's default
            else if (tag == "msg" || tag == "matches") {
              std::string m;
              for (size_t k = 0; k < r.fail.matches.size(); ++k) {
                if (k != 0) m += "\n";
                m += r.fail.matches[k];
              }
              v = m;
            } else if (tag.rfind("F-", 0) == 0) {
              // A failure field; one the failure lacks is empty, as in actions.
              v = std::string(r.fail.Get(LowerAscii(tag.substr(2))).value_or(""));
            } else if (auto g = r.fail.Get(tag)) {
              v = std::string(*g);
            }
            if (v) {
              std::string esc;
              for (char c : *v) {
                if (c == '\0') esc += "\\x00";
                else esc.push_back(c);
              }
              s += esc;
              i = e + 1;
              continue;
            }
          }
        }
        s.push_back(fmt[i]);
        ++i;
      }
      Out(s);
    }
  }
}

// fail2ban-regex's setDatePattern: the first pattern wins (command line
// before filter file), reported with the name of the template it makes.
bool RegexTool::SetDatePattern(const std::string& pattern) {
  if (datepattern_set_) return true;
  DateDetectorOptions d;
  d.datepattern = pattern;
  d.logtimezone = settings_.logtimezone;
  Result<DateDetector> dd = DateDetector::Create(d);
  if (!dd.ok()) {
    Out("ERROR: " + dd.status().message());
    return false;
  }
  settings_.datepattern = pattern;
  datepattern_set_ = true;
  const std::vector<DateTemplateStats> t = dd->templates();
  const std::string name =
      t.empty() || t.size() > 2 ? std::string("Default Detectors") : t.front().name;
  Output("Use      datepattern : " + pattern + " : " + name);
  return true;
}

std::string Basename(const std::string& path) {
  const size_t s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

// fail2ban-regex's "has an extension" test: a dot among the last 6 characters.
bool HasExtension(const std::string& name) {
  const std::string tail = name.size() > 6 ? name.substr(name.size() - 6) : name;
  return tail.find('.') != std::string::npos;
}

// fail2ban-regex's test for "a filter name or file, maybe with options":
// (?ms)^/{0,3}[\w/_\-.]+(?:\[.*\])?$ (non-ASCII counts as a word character).
bool LooksLikeFilterName(std::string_view v) {
  const size_t bracket = v.find('[');
  const std::string_view name = v.substr(0, bracket);
  if (name.empty()) return false;
  for (char ch : name) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool word = c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                      (c >= 'A' && c <= 'Z') || c == '_' || c == '/' || c == '-' || c == '.';
    if (!word) return false;
  }
  return bracket == std::string_view::npos || v.back() == ']';
}

bool RegexTool::ReadRegex(const std::string& value, bool fail) {
  const std::string kind = fail ? "failregex" : "ignoreregex";
  std::string basedir = o_.config;
  std::string flt_name = value;
  std::optional<std::string> flt_file;
  OrderedMap<std::string> flt_opt;
  if (fail && LooksLikeFilterName(value)) {
    Result<NamedOptions> parsed = ParseNamedOptions(value);
    if (!parsed.ok()) {
      Out("ERROR: Wrong filter name or options: " + parsed.status().message());
      Out("       while parsing: " + value);
      return false;
    }
    flt_name = parsed->name;
    flt_opt = parsed->options;
    std::vector<std::string> tries;
    if (HasExtension(flt_name)) {
      tries = {flt_name};
    } else {
      tries = {flt_name, flt_name + ".conf", flt_name + ".local"};
    }
    for (std::string f : tries) {
      if (f.find('/') == std::string::npos) {
        f = Basename(basedir) == "filter.d" ? basedir + "/" + f : basedir + "/filter.d/" + f;
      } else {
        const size_t s = f.rfind('/');
        basedir = s == 0 ? "/" : f.substr(0, s);
      }
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        flt_file = f;
        break;
      }
    }
  }
  if (flt_file) {
    std::string load_basedir = basedir;
    std::string file;
    const std::string stem = [&] {
      std::string b = Basename(flt_name);
      const size_t dot = b.rfind('.');
      return dot == std::string::npos || dot == 0 ? b : b.substr(0, dot);
    }();
    if (basedir == o_.config || Basename(basedir) == "filter.d" ||
        (!HasExtension(flt_name) && flt_name.find('/') == std::string::npos)) {
      if (Basename(load_basedir) == "filter.d") {
        const size_t s = load_basedir.rfind('/');
        load_basedir = s == std::string::npos ? "." : load_basedir.substr(0, s);
      }
      Output("Use " + std::string(11 - std::min<size_t>(11, kind.size()), ' ') + kind +
             " filter file : " + stem + ", basedir: " + load_basedir);
      file = "filter.d/" + stem;
    } else {
      // A file outside any filter.d: read it (and its overlays) on its own.
      Output("Use " + std::string(11 - std::min<size_t>(11, kind.size()), ' ') + kind +
             " file : " + flt_name);
      const std::string path = *flt_file;
      const size_t s = path.rfind('/');
      load_basedir = s == std::string::npos ? "." : path.substr(0, s);
      file = stem;
    }
    if (!flt_opt.empty()) {
      std::string repr = "{";
      bool first = true;
      for (const auto& [k, v] : flt_opt) {
        if (!first) repr += ", ";
        first = false;
        repr += PyRepr(k) + ": " + PyRepr(v);
      }
      Output("Use   filter options : " + repr + "}");
    }
    Result<LoadedFilter> loaded = LoadFilter(load_basedir, file, flt_opt, backend_);
    if (!loaded.ok()) {
      Out("Wrong config file: " + loaded.status().message());
      Out("ERROR: failed to load filter " + value);
      return false;
    }
    for (const Value& cmd : loaded->commands) {
      const Value::List& c = cmd.as_list();
      if (c.size() < 4) continue;
      const std::string& op = c[0].as_string();
      const std::string& opt = c[2].as_string();
      std::vector<std::string> vals;
      if (op == "multi-set") {
        for (const Value& v : c[3].as_list()) vals.push_back(v.ToPyStr());
      } else {
        for (size_t k = 3; k < c.size(); ++k) vals.push_back(c[k].ToPyStr());
      }
      if (opt == "prefregex") {
        for (const std::string& v : vals) prefregex_ = v;
      } else if (opt == "addfailregex" || opt == "addignoreregex") {
        for (const std::string& v : vals) {
          RegexStat st;
          st.regex = v;
          (opt == "addfailregex" ? failregex_ : ignoreregex_).push_back(std::move(st));
        }
        if (opt == "addfailregex" && !fail) {
          // fail2ban-regex keeps whatever type the file provides.
        }
      } else if (opt == "maxlines") {
        for (const std::string& v : vals) {
          if (!maxlines_set_) {
            char* end = nullptr;
            const long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0') {
              Out("ERROR: Invalid value for maxlines (" + PyRepr(v) + ") read from " + value);
              return false;
            }
            settings_.maxlines = static_cast<int>(n);
            maxlines_set_ = true;
            Output("Use         maxlines : " + std::to_string(settings_.maxlines));
          }
        }
      } else if (opt == "datepattern") {
        for (const std::string& v : vals) {
          if (!SetDatePattern(v)) return false;
        }
      } else if (opt == "addjournalmatch") {
        if (!o_.journalmatch) journalmatch_ = vals;  // -m wins; the last one counts
      }
    }
    return true;
  }
  Output("Use " + std::string(11 - std::min<size_t>(11, kind.size()), ' ') + kind +
         " line : " + ShortStr(value));
  RegexStat st;
  st.regex = value;
  (fail ? failregex_ : ignoreregex_).push_back(std::move(st));
  return true;
}

void RegexTool::TestJournalLine(const JournalLine& entry, uint64_t lineno) {
  // fail2ban's tuple line is ('', isoformat + ' ', line); stats show the
  // joined text.
  journal_date_.assign(entry.date_text).push_back(' ');
  TestLine(entry.line, lineno, &entry);
}

void RegexTool::TestLine(std::string_view line, uint64_t lineno, const JournalLine* entry) {
  if (entry != nullptr) {
    filter_->DateLineWithTime(line, entry->time, journal_date_, now_, lineno, &dated_);
    TestDated(&dated_, lineno, Original{line, journal_date_, false});
  } else {
    filter_->DateLine(line, now_, lineno, &dated_);
    TestDated(&dated_, lineno, Original{line, {}, false});
  }
}

std::string RegexTool::Original::Text() const {
  std::string scratch;
  std::string out(prefix);
  out.append(decode ? DecodeUtf8Replace(line, &scratch) : line);
  return out;
}

void RegexTool::TestDated(LogLine* dated, uint64_t lineno, const Original& original) {
  const bool multi = settings_.maxlines > 1;
  if (multi) filter_->LineBufferSeqs(&buffer_before_);
  const bool full_buffer = buffer_before_.size() >= static_cast<size_t>(settings_.maxlines);
  filter_->MatchLine(dated, now_, &failures_, &line_result_);
  if (o_.prefixes.bans_networks()) {
    // Failures counted by prefix, as the jail would count them.
    for (Failure& f : failures_) {
      if (!f.id) continue;
      *f.id = o_.prefixes.UnitOf(*f.id);
      if (!f.nofail()) ++by_prefix_[f.id->ToString()];
    }
  }
  bool is_ignored = !line_result_.ignored_by.empty();
  for (int i : line_result_.ignored_by) ++ignoreregex_[static_cast<size_t>(i)].hits;

  if (o_.json) {
    for (const Failure& f : failures_) {
      if (!f.id || f.nofail()) continue;
      json_.clear();
      json_ += "{\"lineno\":";
      json_ += std::to_string(lineno);
      json_ += ",\"id\":";
      json_ += JsonQuote(f.id->ToString());
      json_ += ",\"time\":";
      json_ += f.time ? PyFloatRepr(*f.time) : "null";
      json_ += ",\"fail\":";
      AppendJsonFail(f, &json_);
      json_ += "}\n";
      std::fwrite(json_.data(), 1, json_.size(), stdout);
    }
    return;
  }
  std::vector<const Failure*> ret;
  size_t counted = 0;
  for (const Failure& f : failures_) {
    if (!o_.out) {
      RegexStat& rs = failregex_[static_cast<size_t>(f.regex_index)];
      ++rs.hits;
      if (o_.verbose) rs.ips.push_back({f.id ? f.id->ToString() : "None", f.time, counted > 1});
    }
    if (!f.nofail()) {
      ret.push_back(&f);
      ++counted;
    } else {
      is_ignored = true;
    }
  }
  if (o_.out) {
    if (!ret.empty() && !is_ignored) {
      std::vector<Failure> copy;
      for (const Failure* f : ret) copy.push_back(*f);
      OutFormatted(copy);
    }
    return;
  }
  if (line_result_.prefregex_matched && filter_->prefregex()) {
    ++pref_matched_;
    if (o_.verbose) {
      if (pref_groups_.size() < static_cast<size_t>(maxlines_stat_)) {
        std::string repr = "{";
        bool first = true;
        for (const auto& [k, v] : filter_->prefregex_groups()) {
          if (!first) repr += ", ";
          first = false;
          repr += PyRepr(k) + ": " + (v ? PyRepr(*v) : "None");
        }
        pref_groups_.push_back(repr + "}");
      } else if (pref_groups_.size() == static_cast<size_t>(maxlines_stat_)) {
        pref_groups_.push_back("...");
      }
    }
  }

  if (multi) {
    // Lines of the buffer that a match consumed count as matched, not missed.
    filter_->LineBufferSeqs(&buffer_after_);
    for (size_t k = full_buffer ? 1 : 0; k < buffer_before_.size(); ++k) {
      const uint64_t seq = buffer_before_[k];
      if (std::find(buffer_after_.begin(), buffer_after_.end(), seq) != buffer_after_.end()) {
        continue;
      }
      for (auto it = pending_lines_.begin(); it != pending_lines_.end(); ++it) {
        if (it->first == seq) {
          auto m = std::find(stats_.missed_lines.begin(), stats_.missed_lines.end(), it->second);
          if (m != stats_.missed_lines.end()) stats_.missed_lines.erase(m);
          if (o_.print_all_matched) stats_.matched_lines.push_back(it->second);
          break;
        }
      }
      ++stats_.matched;
      --stats_.missed;
    }
  }

  // The line's text is only built when it is kept.
  if (is_ignored) {
    ++stats_.ignored;
    if (!o_.print_no_ignored &&
        (o_.print_all_ignored || stats_.ignored <= static_cast<uint64_t>(maxlines_stat_) + 1)) {
      stats_.ignored_lines.push_back(original.Text());
    }
  } else if (!ret.empty()) {
    ++stats_.matched;
    if (o_.print_all_matched) stats_.matched_lines.push_back(original.Text());
  } else {
    ++stats_.missed;
    if (!o_.print_no_missed &&
        (o_.print_all_missed || stats_.missed <= static_cast<uint64_t>(maxlines_stat_) + 1)) {
      stats_.missed_lines.push_back(original.Text());
    }
  }
  ++stats_.tested;
  if (multi) {
    pending_lines_.emplace_back(lineno, original.Text());
    while (pending_lines_.size() > static_cast<size_t>(settings_.maxlines) + 1) {
      pending_lines_.erase(pending_lines_.begin());
    }
  }
}

void RegexTool::PrintLines(const char* type, uint64_t count, const std::vector<std::string>& lines,
                           bool print_all) {
  if (count == 0) return;
  std::string cap = type;
  cap[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(cap[0])));
  const std::string header = cap + " line(s):";
  if (count < static_cast<uint64_t>(maxlines_stat_) || print_all) {
    std::vector<std::string> l;
    for (const std::string& s : lines) l.push_back(RStrip(s));
    PprintList(l, header);
  } else {
    Out(header + " too many to print.  Use --print-all-" + type + " to print all " +
        std::to_string(count) + " lines");
  }
}

void RegexTool::PrintStats(double elapsed) {
  Out("");
  Out("Results");
  Out("=======");
  if (filter_->prefregex()) {
    FailRegexOptions ro;
    ro.host_matches_dns = settings_.usedns != "no";
    Out("\nPrefregex: " + std::to_string(pref_matched_) + " total");
    std::vector<std::string> out = {ExpandFailRegexTags(*prefregex_, ro)};
    if (o_.verbose) {
      for (const std::string& g : pref_groups_) out.push_back("    " + g);
    }
    PprintList(out);
  }
  auto print_regexes = [&](const char* title, const std::vector<RegexStat>& list) {
    uint64_t total = 0;
    std::vector<std::string> out;
    for (size_t i = 0; i < list.size(); ++i) {
      total += list[i].hits;
      if (list[i].hits || o_.verbose) {
        char num[32];
        std::snprintf(num, sizeof num, "%2zu", i + 1);
        out.push_back(std::string(num) + ") [" + std::to_string(list[i].hits) + "] " +
                      list[i].regex);
      }
      if (o_.verbose) {
        for (const RegexStat::Hit& h : list[i].ips) {
          out.push_back("    " + h.id + "  " + CTimeString(h.time.value_or(now_)) +
                        (h.multiple ? " (multiple regex matched)" : ""));
        }
      }
    }
    Out("\n" + std::string(title) + ": " + std::to_string(total) + " total");
    PprintList(out, " #) [# of hits] regular expression");
  };
  print_regexes("Failregex", failregex_);
  print_regexes("Ignoreregex", ignoreregex_);

  Out("\nDate template hits:");
  std::vector<std::string> out;
  for (const DateTemplateStats& t : filter_->date_detector().templates()) {
    if (o_.verbose || t.hits) out.push_back("[" + std::to_string(t.hits) + "] " + t.name);
  }
  PprintList(out, "[# of hits] date format");

  Out("\nLines: " + std::to_string(stats_.tested) + " lines, " + std::to_string(stats_.ignored) +
      " ignored, " + std::to_string(stats_.matched) + " matched, " +
      std::to_string(stats_.missed) + " missed");
  if (o_.prefixes.bans_networks()) {
    // The ids a jail with these options would count, most failures first.
    std::vector<std::pair<std::string, uint64_t>> ids(by_prefix_.begin(), by_prefix_.end());
    std::stable_sort(ids.begin(), ids.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    Out("\nFailures by prefix (" + o_.prefixes.Describe() + "): " + std::to_string(ids.size()) +
        " ids");
    std::vector<std::string> list;
    const size_t shown = o_.verbose ? ids.size() : std::min<size_t>(ids.size(), 20);
    for (size_t i = 0; i < shown; ++i) {
      list.push_back("[" + std::to_string(ids[i].second) + "] " + ids[i].first);
    }
    if (shown < ids.size()) list.push_back("... " + std::to_string(ids.size() - shown) + " more (-v lists all)");
    PprintList(list, "[# of failures] id");
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "[processed in %.2f sec]", elapsed);
  Out(buf);
  Out("");
  if (o_.print_all_matched) {
    PrintLines("matched", stats_.matched, stats_.matched_lines, true);
  }
  if (!o_.print_no_ignored) {
    PrintLines("ignored", stats_.ignored, stats_.ignored_lines, o_.print_all_ignored);
  }
  if (!o_.print_no_missed) {
    PrintLines("missed", stats_.missed, stats_.missed_lines, o_.print_all_missed);
  }
}

// A progress bar on stderr for long runs on a terminal.
class Progress {
 public:
  Progress(size_t total, bool enabled) : total_(total), enabled_(enabled && total > (8u << 20)) {}
  void Update(size_t done, uint64_t lines) {
    if (!enabled_ || (lines & 0x3fff) != 0) return;
    const auto t = std::chrono::steady_clock::now();
    if (t - last_ < std::chrono::milliseconds(200)) return;
    last_ = t;
    const int pct = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total_));
    const int bar = pct * 30 / 100;
    std::fprintf(stderr, "\r[%s%s] %3d%% %llu lines", std::string(static_cast<size_t>(bar), '#').c_str(),
                 std::string(static_cast<size_t>(30 - bar), '.').c_str(), pct,
                 static_cast<unsigned long long>(lines));
    shown_ = true;
  }
  ~Progress() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  size_t total_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Large files run in two threads: a reader thread splits lines, decodes them
// and finds their dates (Filter::DateLine), the calling thread matches them
// (Filter::MatchLine) and keeps the statistics. Batches of lines go round
// between the two through a small pool, so nothing is allocated per line.
void RegexTool::RunPipelined(std::string_view text) {
  constexpr size_t kBatchLines = 2048;
  constexpr size_t kBatches = 4;
  struct Batch {
    std::vector<LogLine> lines{kBatchLines};
    std::vector<uint64_t> linenos = std::vector<uint64_t>(kBatchLines);
    std::vector<Original> originals = std::vector<Original>(kBatchLines);
    size_t count = 0;
    bool last = false;
  };
  std::vector<Batch> pool(kBatches);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Batch*> free_batches, full_batches;
  for (Batch& b : pool) free_batches.push_back(&b);

  Progress progress(text.size(), !quiet() && ::isatty(2));
  std::thread reader([&] {
    std::string scratch;
    size_t pos = 0;
    uint64_t lineno = 0;
    bool done = false;
    while (!done) {
      Batch* b;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return !free_batches.empty(); });
        b = free_batches.front();
        free_batches.pop_front();
      }
      b->count = 0;
      while (b->count < kBatchLines && pos < text.size()) {
        const void* nl = std::memchr(text.data() + pos, '\n', text.size() - pos);
        const size_t end =
            nl ? static_cast<size_t>(static_cast<const char*>(nl) - text.data()) + 1 : text.size();
        std::string_view raw = text.substr(pos, end - pos);
        pos = end;
        ++lineno;
        while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.remove_suffix(1);
        if (raw.empty() || raw[0] == '#') continue;
        const std::string_view line = DecodeUtf8Replace(raw, &scratch);
        const size_t i = b->count++;
        filter_->DateLine(line, now_, lineno, &b->lines[i]);
        b->linenos[i] = lineno;
        b->originals[i] = Original{raw, {}, line.data() != raw.data()};
      }
      progress.Update(pos, lineno);
      done = pos >= text.size();
      b->last = done;
      {
        std::lock_guard<std::mutex> lock(mu);
        full_batches.push_back(b);
      }
      cv.notify_all();
    }
  });
  bool last = false;
  while (!last) {
    Batch* b;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !full_batches.empty(); });
      b = full_batches.front();
      full_batches.pop_front();
    }
    for (size_t i = 0; i < b->count; ++i) TestDated(&b->lines[i], b->linenos[i], b->originals[i]);
    last = b->last;
    {
      std::lock_guard<std::mutex> lock(mu);
      free_batches.push_back(b);
    }
    cv.notify_all();
  }
  reader.join();
}

int RegexTool::Run() {
  if (!quiet()) {
    Out("");
    Out("Running tests");
    Out("=============");
    Out("");
  }
  if (o_.maxlines) {
    settings_.maxlines = o_.maxlines;
    maxlines_set_ = true;
    maxlines_stat_ = o_.maxlines;
    Output("Use         maxlines : " + std::to_string(settings_.maxlines));
  }
  if (o_.timezone) settings_.logtimezone = *o_.timezone;
  if (o_.datepattern && !SetDatePattern(*o_.datepattern)) return 255;
  if (o_.usedns) settings_.usedns = *o_.usedns;
  settings_.return_raw_host = o_.raw;
  settings_.check_find_time = false;
  settings_.check_all_regex = o_.check_all && !o_.out;
  settings_.ignore_pending = o_.out.has_value();
  settings_.record_prefregex_groups = o_.verbose > 0;
  if (o_.encoding != "UTF-8" && LowerAscii(o_.encoding) != "utf-8" && LowerAscii(o_.encoding) != "utf8") {
    Out("ERROR: only UTF-8 log encoding is supported, not " + o_.encoding);
    return 255;
  }
  const int level = [&] {
    const std::string l = LowerAscii(o_.log_level);
    if (l == "debug" || l == "trace" || l == "heavydebug") return 0;
    if (l == "info" || l == "notice") return 1;
    if (l == "warning" || l == "warn") return 2;
    if (l == "error") return 3;
    return 4;
  }();
  if (level <= 2) {
    settings_.warn = [](const std::string& m) { std::fprintf(stderr, "W: %s\n", m.c_str()); };
  }

  const std::string& cmd_log = o_.args[0];
  const bool journal = cmd_log.rfind("systemd-journal", 0) == 0;
  if (journal) backend_ = "systemd";
  if (o_.journalmatch) {
    Result<std::vector<std::string>> words = ShlexSplit(*o_.journalmatch);
    if (!words.ok()) {
      Out("ERROR: journalmatch: " + words.status().message());
      return 255;
    }
    journalmatch_ = std::move(*words);
  }
  if (!ReadRegex(o_.args[1], true)) return 255;
  if (o_.args.size() == 3 && !ReadRegex(o_.args[2], false)) return 255;

  if (prefregex_) settings_.prefregex = *prefregex_;
  for (const RegexStat& r : failregex_) settings_.failregex.push_back(r.regex);
  for (const RegexStat& r : ignoreregex_) settings_.ignoreregex.push_back(r.regex);
  Result<std::unique_ptr<Filter>> filter = Filter::Create(settings_);
  if (!filter.ok()) {
    Out("ERROR: " + filter.status().message());
    return 255;
  }
  filter_ = std::move(*filter);
  now_ = o_.now ? *o_.now : NowSeconds();

  LogText log;
  std::vector<std::string> single_lines;
  std::unique_ptr<JournalReader> reader;
  struct stat st {};
  const bool is_file = ::stat(cmd_log.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  if (is_file) {
    std::string err = log.Open(cmd_log);
    if (!err.empty()) {
      Out(err);
      return 255;
    }
    Output("Use         log file : " + cmd_log);
    if (LooksLikeAmiCapture(log.text()))
      Output("Use      AMI capture : Error security events as res_security_log lines");
    Output("Use         encoding : " + o_.encoding);
  } else if (journal) {
    Output("Use         systemd journal");
    Output("Use         encoding : " + o_.encoding);
    Result<NamedOptions> be = ParseNamedOptions(cmd_log);
    if (!be.ok()) {
      Out("ERROR: " + cmd_log + ": " + be.status().message());
      return 255;
    }
    Result<JournalOptions> jo = ParseJournalOptions(be->options);
    if (!jo.ok()) {
      Out("ERROR: " + jo.status().message());
      return 255;
    }
    Result<std::unique_ptr<JournalReader>> r = JournalReader::Open(*jo);
    if (!r.ok()) {
      Out("ERROR: " + r.status().message());
      return 255;
    }
    reader = std::move(*r);
    if (!journalmatch_.empty()) {
      Status s = reader->AddMatch(journalmatch_);
      if (!s.ok()) {
        Out("ERROR: " + s.message());
        return 255;
      }
      std::string joined;
      for (const std::string& w : journalmatch_) joined += (joined.empty() ? "" : " ") + w;
      Output("Use    journal match : " + joined);
    }
  } else if (settings_.maxlines <= 1 && cmd_log.find('\n') == std::string::npos) {
    std::string shown;
    for (char c : cmd_log) shown += c == '\n' ? std::string("\\n") : std::string(1, c);
    Output("Use      single line : " + ShortStr(shown));
    single_lines.push_back(cmd_log);
  } else {
    size_t start = 0;
    while (true) {
      const size_t nl = cmd_log.find('\n', start);
      single_lines.push_back(cmd_log.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    Output("Use      multi line : " + std::to_string(single_lines.size()) + " line(s)");
    for (size_t i = 0; i < single_lines.size(); ++i) {
      if (i >= 5) {
        Output("| ...");
        break;
      }
      char num[16];
      std::snprintf(num, sizeof num, "%2.2s", std::to_string(i + 1).c_str());
      Output("| " + std::string(num) + ": " + ShortStr(single_lines[i]));
    }
    Output("`-");
  }
  Output("");

  const auto t0 = std::chrono::steady_clock::now();
  std::string scratch;
  auto handle = [&](std::string_view raw, uint64_t lineno, bool from_file) {
    // fail2ban-regex strips \r and \n at the end and skips comments and
    // empty lines.
    while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.remove_suffix(1);
    if (raw.empty() || raw[0] == '#') return;
    std::string_view line = from_file ? DecodeUtf8Replace(raw, &scratch) : raw;
    TestLine(line, lineno);
  };
  if (reader) {
    JournalLine entry;
    uint64_t lineno = 0;
    std::vector<uint64_t> unused;
    while (true) {
      Result<bool> more = reader->Next(&entry);
      if (!more.ok()) {
        Out("ERROR: " + more.status().message());
        return 255;
      }
      if (!*more) break;
      TestJournalLine(entry, ++lineno);
    }
  } else if (is_file && LooksLikeAmiCapture(log.text())) {
    // A saved AMI stream: each security event becomes the line Asterisk's
    // security log would hold, timed by its EventTV, as bantamd's
    // backend = ami hands it to the jail.
    uint64_t lineno = 0;
    JournalLine entry;
    SecurityLine security;
    AmiFramer framer(AmiFramer::Callbacks{
                         nullptr,
                         [&](const AmiMessage& m) {
                           if (!FormatSecurityEvent(m, now_, &security)) return;
                           if (security.informational) return;  // as bantamd: never a failure
                           entry.line.assign(DecodeUtf8Replace(security.line, &scratch));
                           entry.date_text = security.event_tv;
                           entry.time = security.time;
                           TestJournalLine(entry, ++lineno);
                         },
                         [&](std::string_view why) {
                           std::fprintf(stderr, "W: AMI capture: dropped %.*s\n",
                                        static_cast<int>(why.size()), why.data());
                         }},
                     /*expect_banner=*/true);
    framer.Feed(log.text());
    framer.Feed("\r\n\r\n");  // a capture cut without its last empty line
  } else if (is_file && log.text().size() >= kPipelineBytes) {
    RunPipelined(log.text());
  } else if (is_file) {
    const std::string_view text = log.text();
    Progress progress(text.size(), !quiet() && ::isatty(2));
    size_t pos = 0;
    uint64_t lineno = 0;
    while (pos < text.size()) {
      const void* nl = std::memchr(text.data() + pos, '\n', text.size() - pos);
      const size_t end = nl ? static_cast<size_t>(static_cast<const char*>(nl) - text.data()) + 1
                            : text.size();
      handle(text.substr(pos, end - pos), ++lineno, true);
      pos = end;
      progress.Update(pos, lineno);
    }
  } else {
    uint64_t lineno = 0;
    for (const std::string& l : single_lines) handle(l, ++lineno, false);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!quiet()) PrintStats(elapsed);
  std::fflush(stdout);
  return 0;
}

}  // namespace

int RegexToolMain(int argc, char** argv) {
  static char out_buffer[1 << 16];
  std::setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);
  Options o;
  int exit_now = -1;
  const std::string err = ParseArgs(argc, argv, &o, &exit_now);
  if (exit_now >= 0) {
    std::fflush(stdout);
    return exit_now;
  }
  std::vector<std::string> errors;
  if (!err.empty()) {
    std::fprintf(stderr, "Usage: %s [OPTIONS] <LOG> <REGEX> [IGNOREREGEX]\n\n%s: error: %s\n",
                 argv[0], argv[0], err.c_str());
    return 2;
  }
  if (o.print_no_missed && o.print_all_missed) {
    errors.push_back("ERROR: --print-no-missed and --print-all-missed are mutually exclusive.");
  }
  if (o.print_no_ignored && o.print_all_ignored) {
    errors.push_back("ERROR: --print-no-ignored and --print-all-ignored are mutually exclusive.");
  }
  if (o.args.size() != 2 && o.args.size() != 3) {
    errors.push_back("ERROR: provide both <LOG> and <REGEX>.");
  }
  if (o.json && o.out) errors.push_back("ERROR: --json and --out are mutually exclusive.");
  if (!errors.empty()) {
    PrintUsage(stdout, argv[0]);
    std::fflush(stdout);
    std::string all;
    for (const std::string& e : errors) all += e + "\n";
    std::fprintf(stderr, "\n%s", all.c_str());
    return 255;
  }
  if (!o.config_given) {
    Result<ConfigDirChoice> conf = ChooseConfigDir(std::nullopt);
    if (!conf.ok()) {
      std::fprintf(stderr, "ERROR: %s\n", conf.status().message().c_str());
      return 255;
    }
    o.config = conf->dir;
  }
  RegexTool tool(std::move(o));
  const int rc = tool.Run();
  std::fflush(stdout);
  return rc;
}

}  // namespace bantam
