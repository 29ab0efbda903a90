#include "bantam/date_detector.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "bantam/py.h"
#include "bantam/utf8.h"
#include "bantam/value.h"

namespace bantam {

// Template flags, as fail2ban's DateTemplate names them: where the regex is
// anchored decides whether the search may stop at it.
enum : int { kLineBegin = 8, kLineEnd = 4, kWordBegin = 2, kWordEnd = 1 };

// fail2ban's wordBegin argument: False, True or 'start'.
enum class Bound { kNone, kWord, kLineStart };

enum class TemplateKind { kPattern, kEpoch, kTai64n };

// One date template (fail2ban's DateTemplate and its per-detector
// DateDetectorTemplate wrapper in one).
struct DateTemplate {
  TemplateKind kind = TemplateKind::kPattern;
  std::string name;
  std::string regex;                   // Python syntax
  std::optional<std::string> pattern;  // only pattern templates have one
  int flags = 0;
  double weight = 1.0;
  bool long_epoch = false;
  int value_group = 1;  // the group an EPOCH template reads

  // Compiled once per process for each template list (see Create) and
  // shared by every detector using it: FailRegex is immutable.
  std::shared_ptr<const FailRegex> re;
  std::vector<std::pair<int, TimeField>> fields;  // strptime groups, by group number
  bool has_p = false;

  // Its index in its detector's list as created (the list is reordered).
  int slot = -1;

  // DateDetectorTemplate's counters.
  uint64_t hits = 0;
  double last_used = 0;
  int64_t distance = 0x7fffffff;
  // DateTemplate.hits: every successful regex search, winning or not.
  uint64_t regex_hits = 0;

  // getTime() of this template's last match. Consecutive lines mostly carry
  // the same timestamp text, and the conversion is a pure function of the
  // template, the matched text and `now`.
  mutable std::string memo_text;
  mutable double memo_now = 0;
  mutable bool memo_valid = false;
  mutable std::optional<double> memo_time;
  mutable bool memo_raised = false;

  // Search short cuts (SearchTemplate). Each only skips a search whose
  // result is known to be "no match", so results never change.
  // An EPOCH template without a pattern: a match starts at the line's
  // start, after a leading '[', or after "audit(", and with a digit.
  bool epoch_starts = false;
  // A line-begin EPOCH template: its digits start after at most two \W
  // at the line's start.
  bool epoch_at_begin = false;
  // An anchored regex: whether lines starting with four given ASCII bytes
  // can match at all (RulesOutPrefix) is kept by the detector, per prefix
  // (PrefixMask).

  double Weight() const {
    return static_cast<double>(hits) * weight / static_cast<double>(std::max<int64_t>(1, distance));
  }
};

namespace {

// ---------------------------------------------------------------------------
// The regexes fail2ban uses to rewrite date patterns. They are Python
// regexes run on pattern text; our translator runs them with Python's
// semantics, so \w, lookbehinds and $ behave as in fail2ban.

struct MetaRegexes {
  FailRegex global_flags, no_word_bound_beg, no_word_bound_end, grouped, group, line_bound_beg,
      line_bound_end, del_word_bounds, alpha_pattern, epoch_pattern, date_prematch,
      exsanc_bound_beg, exeanc_bound_beg, alnum;
};

FailRegex MustCompile(std::string_view re) {
  Result<FailRegex> r = FailRegex::Compile(re, RegexKind::kDateRegex);
  if (!r.ok()) {
    std::fprintf(stderr, "bantam: internal date regex %.*s: %s\n", static_cast<int>(re.size()),
                 re.data(), r.status().message().c_str());
    std::abort();
  }
  return std::move(*r);
}

const MetaRegexes& Meta() {
  static const MetaRegexes* const kMeta = new MetaRegexes{
      MustCompile(R"(((?:^|(?!<\\))\(\?[a-z]+\)))"),
      MustCompile(R"(^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^))"),
      MustCompile(R"((?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$)"),
      MustCompile(R"((?<!(?:\(\?))(?<!\\)\((?!\?))"),
      MustCompile(R"(^((?:\(\?\w+\))?\^?(?:\(\?\w+\))?)(.*?)(\$?)$)"),
      MustCompile(R"(^(?:\(\?\w+\))?(?:\^|\((?:\?:)?\^(?!\|)))"),
      MustCompile(R"((?<![\\\|])(?:\$\)?)$)"),
      MustCompile(R"(^\(*(?:\(\?\w+\))?\(*\*\*|(?<!\\)\*\*\)*$)"),
      MustCompile(R"((?<!\%)\%[aAbBpc])"),
      MustCompile(R"((?i)(?<!\\)\{L?EPOCH\})"),
      MustCompile(R"((?i)(?<!\\)\{DATE\})"),
      MustCompile(R"(^\((?:\?:)?\^\|\\b\|\\W\))"),
      MustCompile(R"(\(\?=\\b\|\\W\|\$\)$)"),
      MustCompile(R"([^\W_])"),
  };
  return *kMeta;
}

bool Found(const FailRegex& re, std::string_view s, FailRegexMatch* m) {
  Result<bool> r = re.Search(s, m);
  return r.ok() && *r;
}

bool Found(const FailRegex& re, std::string_view s) {
  FailRegexMatch m;
  return Found(re, s, &m);
}

// re.sub(regex, repl, s, count): `repl` builds the replacement from a match.
std::string Sub(const FailRegex& re, std::string_view s,
                const std::function<std::string(const FailRegexMatch&)>& repl, int count = 0) {
  FailRegexMatch m;
  std::string out;
  size_t pos = 0, copied = 0;
  int done = 0;
  while (pos <= s.size() && (count == 0 || done < count)) {
    Result<bool> r = re.Search(s, pos, &m);
    if (!r.ok() || !*r) break;
    out.append(s.substr(copied, m.start() - copied));
    out += repl(m);
    copied = m.end();
    ++done;
    pos = m.end() > m.start() ? m.end() : m.end() + 1;
  }
  out.append(s.substr(std::min(copied, s.size())));
  return out;
}

std::string SubLiteral(const FailRegex& re, std::string_view s, const std::string& text) {
  return Sub(re, s, [&](const FailRegexMatch&) { return text; });
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool IsAsciiAlnum(unsigned char b) {
  return (b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z');
}

std::string AsciiUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// Bytes in the code point at s[pos] (an invalid byte counts alone).
size_t CodePointLength(std::string_view s, size_t pos) {
  size_t next = pos;
  NextCodePoint(s, &next);
  return next - pos;
}

// ---------------------------------------------------------------------------
// fail2ban's strptime directive table (its TimeRE after its own overrides,
// under the C locale): the regex each %-directive expands to and the name
// it takes in a template's name.

struct Directive {
  std::string_view key;
  std::string_view regex;  // "" for ExY, computed from the current year
  std::string_view name;
};

constexpr Directive kDirectives[] = {
    {"d", R"((?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1]))", "Day"},
    {"f", R"((?P<f>[0-9]{1,6}))", "Microseconds"},
    {"H", R"((?P<H>[0-1]?\d|2[0-3]))", "24hour"},
    {"I", R"((?P<I>1[0-2]|0[1-9]|[1-9]))", "12hour"},
    {"G", R"((?P<G>\d\d\d\d))", "%G"},
    {"j", R"((?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9]))", "Yearday"},
    {"m", R"((?P<m>0?[1-9]|1[0-2]))", "Month"},
    {"M", R"((?P<M>[0-5]?\d))", "Minute"},
    {"S", R"((?P<S>[0-5]?\d|6[0-1]))", "Second"},
    {"U", R"((?P<U>5[0-3]|[0-4]\d|\d))", "Yearweek"},
    {"w", R"((?P<w>[0-6]))", "Weekday"},
    {"u", R"((?P<u>[1-7]))", "%u"},
    {"V", R"((?P<V>5[0-3]|0[1-9]|[1-4]\d|\d))", "%V"},
    {"y", R"((?P<y>\d\d))", "Year2"},
    {"Y", R"((?P<Y>\d{4}))", "Year"},
    {"z", R"((?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?))", "Zone offset"},
    {"A", R"((?P<A>wednesday|thursday|saturday|tuesday|monday|friday|sunday))", "DAYNAME"},
    {"a", R"((?P<a>mon|tue|wed|thu|fri|sat|sun))", "DAY"},
    {"B",
     R"((?P<B>september|february|november|december|january|october|august|march|april|june|july|may))",
     "MONTH"},
    {"b", R"((?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))", "MON"},
    {"p", R"((?P<p>am|pm))", "AMPM"},
    {"Z", R"((?P<Z>Z|[A-Z]{3,5}))", "Zone name"},
    {"%", "%", "%"},
    {"W", R"((?P<W>5[0-3]|[0-4]\d|\d))", "Yearweek"},
    {"c",
     R"((?P<a>mon|tue|wed|thu|fri|sat|sun)\s+(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])\s+(?P<H>2[0-3]|[0-1]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[0-1]|[0-5]\d|\d)\s+(?P<Y>\d\d\d\d))",
     "%c"},
    {"x", R"((?P<m>1[0-2]|0[1-9]|[1-9])/(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])/(?P<y>\d\d))", "%x"},
    {"X", R"((?P<H>2[0-3]|[0-1]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[0-1]|[0-5]\d|\d))", "%X"},
    {"k", R"( ?(?P<H>[0-2]?\d))", "%k"},
    {"l", R"( ?(?P<I>1?\d))", "%l"},
    // Multi-character keys; fail2ban's directive regex tries them in this order.
    {"ExZ", R"((?P<Z>[A-Z](?:[A-Z]{2,4})?))", "ExZone name"},
    {"Exz", R"((?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?))",
     "ExZone offset"},
    {"Exd", R"((?P<d>[1-2]\d|0[1-9]|3[0-1]))", "ExDay"},
    {"Exm", R"((?P<m>0[1-9]|1[0-2]))", "ExMonth"},
    {"ExH", R"((?P<H>[0-1]\d|2[0-3]))", "Ex24hour"},
    // fail2ban names these "Ex%k"/"%Exk" depending on Python's set order
    // (hash seed); we settle on one.
    {"Exk", R"( ?(?P<H>[0-1]?\d|2[0-3]))", "Ex%k"},
    {"Exl", R"( ?(?P<I>1[0-2]|\d))", "Ex%l"},
    {"ExM", R"((?P<M>[0-5]\d))", "ExMinute"},
    {"ExS", R"((?P<S>[0-5]\d|6[0-1]))", "ExSecond"},
    {"ExY", "", "ExYear"},
    {"Exy", R"((?P<y>\d{2}))", "ExYear2"},
};

const Directive* FindDirective(std::string_view key) {
  for (const Directive& d : kDirectives) {
    if (d.key == key) return &d;
  }
  return nullptr;
}

// fail2ban's _getYearCentRE grouping: a compact alternation of the given
// three-digit year prefixes ("20[012]").
std::string GroupPrefixes(const std::vector<std::string>& set) {
  if (set.size() > 1) {
    std::optional<std::string> c;
    for (const std::string& i : set) {
      const std::string head = i.substr(0, i.empty() ? 0 : i.size() - 1);
      if (!c || head == *c) {
        c = head;
      } else {
        c.reset();
        break;
      }
    }
    if (!c || c->empty()) {
      const bool started_empty = c.has_value();
      c.reset();
      if (!started_empty) {
        for (const std::string& i : set) {
          const std::string first = i.substr(0, 1);
          if (!c || first == *c) {
            c = first;
          } else {
            c.reset();
            break;
          }
        }
      }
    }
    if (c && !c->empty()) {
      std::vector<std::string> rest;
      for (const std::string& i : set) rest.push_back(i.substr(c->size()));
      return *c + GroupPrefixes(rest);
    }
  }
  std::string out;
  if (set.size() > 1) {
    if (set[0].size() > 1) {
      out = "(?:";
      for (size_t k = 0; k < set.size(); ++k) out += (k ? "|" : "") + set[k];
      out += ")";
    } else {
      out = "[";
      for (const std::string& i : set) out += i;
      out += "]";
    }
  } else {
    for (const std::string& i : set) out += i;
  }
  return out;
}

// %ExY: the centuries of last year, in three years, and every third year
// back to 2001, so that years of the running decade(s) match only.
std::string ExYearRegex() {
  const time_t t = std::time(nullptr);
  struct tm tm {};
  ::localtime_r(&t, &tm);
  const int year = tm.tm_year + 1900;
  std::set<std::string> cents;
  auto cent = [](int y) { return std::to_string(y).substr(0, 3); };
  cents.insert(cent(year - 1));
  cents.insert(cent(year + 3));
  const int alt_year = 2001;
  for (int i = -1; i < year - alt_year + 1; i += 3) cents.insert(cent(alt_year + i));
  return "(?P<Y>" + GroupPrefixes(std::vector<std::string>(cents.begin(), cents.end())) + "\\d)";
}

// The "%(key)s" format fail2ban builds from a pattern (its _patternRE.sub).
std::string PatternToFormat(std::string_view pattern) {
  std::string fmt;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      std::string_view key;
      if (pattern[i + 1] == '%') {
        key = "%";
      } else {
        for (const Directive& d : kDirectives) {
          if (d.key.size() == 3 && pattern.substr(i + 1, 3) == d.key) {
            key = d.key;
            break;
          }
        }
        if (key.empty() && FindDirective(pattern.substr(i + 1, 1)) != nullptr) {
          key = pattern.substr(i + 1, 1);
        }
      }
      if (!key.empty()) {
        fmt += "%(";
        fmt += key;
        fmt += ")s";
        i += 1 + key.size();
        continue;
      }
    }
    fmt += pattern[i++];
  }
  return fmt;
}

size_t CodePointIndex(std::string_view s, size_t byte) {
  return CountCodePoints(s.substr(0, byte));
}

// Python's `fmt % mapping`, enough of it for what a datepattern can hold.
// Errors carry Python's message. With a mapping argument Python hands the
// mapping itself to the first conversion without a key, and nothing to any
// later one ("not enough arguments") until a keyed conversion resets it.
Result<std::string> PyFormat(std::string_view fmt,
                             const std::function<std::optional<std::string>(std::string_view)>& lookup) {
  constexpr std::string_view kNotEnough = "not enough arguments for format string";
  std::string out;
  int argidx = -2;  // CPython's unicode_format state for a mapping argument
  bool keyed = false;
  auto next_arg = [&]() {
    if (argidx < -1) {
      argidx = -1;
      return true;
    }
    return false;
  };
  size_t i = 0;
  while (i < fmt.size()) {
    if (fmt[i] != '%') {
      out += fmt[i++];
      continue;
    }
    ++i;
    std::optional<std::string> value;
    keyed = false;
    if (i < fmt.size() && fmt[i] == '(') {
      ++i;
      const size_t start = i;
      int depth = 1;
      while (depth > 0 && i < fmt.size()) {
        if (fmt[i] == ')') --depth;
        else if (fmt[i] == '(') ++depth;
        ++i;
      }
      if (depth > 0) return Status::Error("incomplete format key");
      const std::string key(fmt.substr(start, i - 1 - start));
      value = lookup(key);
      if (!value) return Status::Error(PyRepr(key));  // KeyError
      keyed = true;
      argidx = -2;
    }
    bool decorated = false;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
      ++i;
      decorated = true;
    }
    for (int part = 0; part < 2; ++part) {  // width, then precision
      if (part == 1) {
        if (i >= fmt.size() || fmt[i] != '.') break;
        ++i;
      }
      if (i < fmt.size() && fmt[i] == '*') {
        if (!next_arg()) return Status::Error(std::string(kNotEnough));
        return Status::Error("* wants int");
      }
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        ++i;
        decorated = true;
      }
    }
    if (i >= fmt.size()) return Status::Error("incomplete format");
    const size_t conv_at = i;
    const size_t conv_len = CodePointLength(fmt, i);
    const std::string_view conv = fmt.substr(i, conv_len);
    i += conv_len;
    if (conv == "%") {
      out += '%';
      continue;
    }
    if (!next_arg()) return Status::Error(std::string(kNotEnough));
    const std::string type = keyed ? "str" : "dict";
    const char c = conv.size() == 1 ? conv[0] : '\0';
    switch (c) {
      case 's':
        if (keyed && !decorated) {
          out += *value;
          continue;
        }
        [[fallthrough]];
      case 'r':
      case 'a':
        // Python would paste the repr of its whole directive table here.
        return Status::Error(std::string("unsupported conversion '%") + c + "' in a date pattern");
      case 'd': case 'i': case 'u':
        return Status::Error(std::string("%") + c + " format: a real number is required, not " + type);
      case 'o': case 'x': case 'X':
        return Status::Error(std::string("%") + c + " format: an integer is required, not " + type);
      case 'e': case 'E': case 'f': case 'F': case 'g': case 'G':
        return Status::Error("must be real number, not " + type);
      case 'c':
        return Status::Error("%c requires int or char");
      default: {
        // Python reports the character and its code point.
        size_t at = 0;
        const char32_t cp = NextCodePoint(conv, &at);
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%x", static_cast<unsigned>(cp));
        return Status::Error("unsupported format character '" + std::string(conv) + "' (" + hex +
                             ") at index " + std::to_string(CodePointIndex(fmt, conv_at)));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Building templates, following fail2ban's constructors step by step.

class TemplateFactory {
 public:
  // `ex_year`: ExYearRegex() of the time the templates are made for.
  explicit TemplateFactory(std::string ex_year) : ex_year_(std::move(ex_year)) {}

  // DateTemplate.setRegex: word/line boundaries, group 1, flags.
  void SetRegex(DateTemplate* t, std::string_view regex_in, Bound word_begin, bool word_end) const {
    const MetaRegexes& meta = Meta();
    FailRegexMatch m;
    std::string regex(PyStrip(regex_in));
    // Global flags like (?iu) move to the front, after the rewriting.
    std::optional<std::string> global_flags;
    if (Found(meta.global_flags, regex, &m)) {
      global_flags = std::string(*m.Group(1));
      regex.erase(m.start(), m.end() - m.start());
    }
    const bool bound_begin = word_begin != Bound::kNone && !Found(meta.no_word_bound_beg, regex);
    const bool bound_end = word_end && !Found(meta.no_word_bound_end, regex);
    if (!Found(meta.grouped, regex)) {
      regex = Sub(meta.group, regex, [](const FailRegexMatch& g) {
        return std::string(g.Group(1).value_or("")) + "(" + std::string(g.Group(2).value_or("")) +
               ")" + std::string(g.Group(3).value_or(""));
      });
    }
    t->flags = 0;
    if (bound_begin) {
      if (word_begin != Bound::kLineStart) {
        t->flags |= kWordBegin;
        regex = R"((?=^|\b|\W))" + regex;
      } else {
        t->flags |= kLineBegin;
        regex = R"(^(?:\W{0,2})?)" + regex;
        if (!StartsWith(t->name, "{^LN-BEG}")) t->name = "{^LN-BEG}" + t->name;
      }
    }
    if (bound_end) {
      t->flags |= kWordEnd;
      regex += R"((?=\b|\W|$))";
    }
    if (!(t->flags & kLineBegin) && Found(meta.line_bound_beg, regex)) t->flags |= kLineBegin;
    if (!(t->flags & kLineEnd) && Found(meta.line_bound_end, regex)) t->flags |= kLineEnd;
    regex = Sub(meta.del_word_bounds, regex, [](const FailRegexMatch& g) {
      std::string s(*g.Group(0));
      std::string out;
      for (size_t k = 0; k < s.size(); ++k) {
        if (s.compare(k, 2, "**") == 0) {
          ++k;
        } else {
          out += s[k];
        }
      }
      return out;
    });
    if (global_flags) regex = *global_flags + regex;
    t->regex = std::move(regex);
  }

  // DatePatternRegex(pattern).
  Result<DateTemplate> Pattern(std::string_view pattern_in) const {
    DateTemplate t;
    t.kind = TemplateKind::kPattern;
    t.pattern = std::string(pattern_in);
    std::string_view pattern = pattern_in;
    Bound word_begin = Bound::kWord;
    bool word_end = true;
    if (StartsWith(pattern, "{UNB}")) {
      pattern.remove_prefix(5);
      word_begin = Bound::kNone;
      word_end = false;
    }
    if (word_begin != Bound::kNone && StartsWith(pattern, "{^LN-BEG}")) {
      pattern.remove_prefix(9);
      word_begin = Bound::kLineStart;
    }
    const std::string fmt = PatternToFormat(pattern);
    Result<std::string> name = PyFormat(fmt, [](std::string_view key) -> std::optional<std::string> {
      const Directive* d = FindDirective(key);
      if (d == nullptr) return std::nullopt;
      return std::string(d->name);
    });
    Result<std::string> regex = !name.ok() ? Result<std::string>(name.status())
                                           : PyFormat(fmt, [&](std::string_view key) -> std::optional<std::string> {
                                               const Directive* d = FindDirective(key);
                                               if (d == nullptr) return std::nullopt;
                                               return d->key == "ExY" ? ex_year_ : std::string(d->regex);
                                             });
    if (!regex.ok()) {
      return Status::Error("Failed to set datepattern '" + std::string(pattern) +
                           "' (may be an invalid format or unescaped percent char): " +
                           regex.status().message());
    }
    std::string re = std::move(*regex);
    if (Found(Meta().alpha_pattern, pattern)) re = "(?iu)" + re;
    t.name = std::move(*name);
    SetRegex(&t, re, word_begin, word_end);
    return t;
  }

  // DateEpoch(lineBeginOnly, pattern, longFrm).
  DateTemplate Epoch(bool line_begin_only, std::optional<std::string_view> pattern, bool long_form) const {
    DateTemplate t;
    t.kind = TemplateKind::kEpoch;
    t.long_epoch = long_form;
    std::string epoch_re = R"(\d{10,11}\b(?:\.\d{3,6})?)";
    t.name = pattern ? std::string(*pattern) : "Epoch";
    if (long_form) {
      t.name = pattern ? std::string(*pattern) : "LongEpoch";
      epoch_re = R"(\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?)";
    }
    if (pattern) {
      t.value_group = 2;
      SetRegex(&t, "(" + SubLiteral(Meta().epoch_pattern, *pattern, "(" + epoch_re + ")") + ")",
               Bound::kWord, true);
    } else if (!line_begin_only) {
      SetRegex(&t,
               R"(((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\())))" + epoch_re +
                   R"re()(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\]))))re",
               Bound::kNone, true);
    } else {
      SetRegex(&t, R"(((?P<square>(?<=^\[))?)" + epoch_re + R"()(?(square)(?=\])))",
               Bound::kLineStart, true);
    }
    return t;
  }

  // DateTai64n(wordBegin).
  DateTemplate Tai64n(Bound word_begin) const {
    DateTemplate t;
    t.kind = TemplateKind::kTai64n;
    t.name = "TAI64N";
    SetRegex(&t, "@[0-9a-f]{24}", word_begin, true);
    return t;
  }

  // _getPatternTemplate(pattern, key).
  Result<DateTemplate> FromPattern(std::string_view pattern, std::string key = "") const {
    if (key.empty()) {
      key = pattern.find('%') == std::string_view::npos ? AsciiUpper(pattern) : std::string(pattern);
    }
    if (key.find("EPOCH") != std::string::npos) {
      if (Found(Meta().epoch_pattern, pattern)) {
        return Epoch(false, pattern, key.find("LEPOCH") != std::string::npos);
      }
      if (key == "EPOCH" || key == "{^LN-BEG}EPOCH" || key == "^EPOCH") {
        return Epoch(key != "EPOCH", std::nullopt, false);
      }
      if (key == "LEPOCH" || key == "{^LN-BEG}LEPOCH" || key == "^LEPOCH") {
        return Epoch(key != "LEPOCH", std::nullopt, true);
      }
    }
    if (key == "TAI64N" || key == "{^LN-BEG}TAI64N" || key == "^TAI64N") {
      return Tai64n(key != "TAI64N" ? Bound::kLineStart : Bound::kNone);
    }
    return Pattern(pattern);
  }

  // _getAnchoredTemplate(template, wrap): the template rebuilt from its
  // wrapped pattern (or, without one, from its wrapped name).
  Result<DateTemplate> Anchored(const DateTemplate& t,
                                const std::function<std::string(std::string_view)>& wrap) const {
    if (t.pattern) return FromPattern(wrap(*t.pattern));
    return FromPattern(wrap(t.name));
  }

  // fail2ban's DEFAULT_TEMPLATES, built once per factory.
  const std::vector<DateTemplate>& Raw() const {
    if (raw_.empty()) {
      for (std::string_view p : kDefaultPatterns) {
        Result<DateTemplate> t = FromPattern(p);
        if (t.ok()) raw_.push_back(std::move(*t));
      }
    }
    return raw_;
  }

  // DateDetectorCache.templates: every default that is not anchored yet
  // comes first in a line-begin anchored copy weighted 100, then the
  // defaults themselves.
  const std::vector<DateTemplate>& Cached() const {
    if (cached_.empty()) {
      std::vector<DateTemplate> anchored, plain;
      for (const DateTemplate& dt : Raw()) {
        if (!StartsWith(dt.name, "{^LN-BEG}") && !StartsWith(dt.name, "^")) {
          Result<DateTemplate> t2 =
              Anchored(dt, [](std::string_view s) { return "{^LN-BEG}" + std::string(s); });
          if (t2.ok() && t2->name != dt.name) {
            t2->weight = 100.0;
            anchored.push_back(std::move(*t2));
          }
        }
        plain.push_back(Copy(dt));
      }
      for (DateTemplate& t : anchored) cached_.push_back(std::move(t));
      for (DateTemplate& t : plain) cached_.push_back(std::move(t));
    }
    return cached_;
  }

  // Templates are built uncompiled, so copies are plain data.
  static DateTemplate Copy(const DateTemplate& t) {
    DateTemplate c;
    c.kind = t.kind;
    c.name = t.name;
    c.regex = t.regex;
    c.pattern = t.pattern;
    c.flags = t.flags;
    c.weight = t.weight;
    c.long_epoch = t.long_epoch;
    c.value_group = t.value_group;
    return c;
  }

 private:
  static constexpr std::string_view kDefaultPatterns[] = {
      R"(%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?)",
      R"((?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?)",
      R"((?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?)",
      R"(%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S)",
      R"(%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?)",
      R"(%m/%d/%ExY:%H:%M:%S)",
      R"(%m-%d-%ExY %k:%M:%S(?:\.%f)?)",
      R"(EPOCH)",
      R"({^LN-BEG}%H:%M:%S)",
      R"(^<%m/%d/%Exy@%H:%M:%S>)",
      R"(%Exy%Exm%Exd  ?%H:%M:%S)",
      R"(%b %d, %ExY %I:%M:%S %p)",
      R"(^%b-%d-%Exy %k:%M:%S)",
      R"(%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?)",
      R"((?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?)",
      R"((?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?)",
      R"(TAI64N)",
  };

  std::string ex_year_;
  mutable std::vector<DateTemplate> raw_;
  mutable std::vector<DateTemplate> cached_;
};

// unboundPattern(s): drops {UNB}, {^LN-BEG} and the explicit boundary
// groups, so a default can be embedded in a {DATE} pattern.
std::string UnboundPattern(std::string_view s) {
  const MetaRegexes& meta = Meta();
  std::string p(s);
  if (StartsWith(p, "{UNB}")) p.erase(0, 5);
  if (StartsWith(p, "{^LN-BEG}")) p.erase(0, 9);
  p = SubLiteral(meta.exsanc_bound_beg, p, "");
  return SubLiteral(meta.exeanc_bound_beg, p, "");
}

// Template list under construction (DateDetector.appendTemplate and
// addDefaultTemplate).
class TemplateList {
 public:
  explicit TemplateList(const TemplateFactory& factory) : factory_(factory) {}

  Status AppendOne(DateTemplate t, bool ignore_dup) {
    if (!names_.insert(t.name).second) {
      if (ignore_dup) return Status::Ok();
      return Status::Error("There is already a template with name " + t.name);
    }
    list_.push_back(std::move(t));
    return Status::Ok();
  }

  enum class Filter { kAll, kLineBegin, kNothing };

  Status AddDefaults(Filter filter, std::optional<std::string_view> pre_match, bool all_defaults) {
    const bool ignore_dup = !list_.empty();
    const std::vector<DateTemplate>& defaults = all_defaults ? factory_.Cached() : factory_.Raw();
    for (const DateTemplate& dt : defaults) {
      if (filter == Filter::kNothing) continue;
      if (filter == Filter::kLineBegin && !(dt.flags & kLineBegin)) continue;
      if (pre_match) {
        Result<DateTemplate> t = factory_.Anchored(dt, [&](std::string_view s) {
          const std::string inner = UnboundPattern(s);
          return SubLiteral(Meta().date_prematch, *pre_match, inner);
        });
        if (!t.ok()) return t.status();
        if (Status st = AppendOne(std::move(*t), ignore_dup); !st.ok()) return st;
      } else {
        if (Status st = AppendOne(TemplateFactory::Copy(dt), ignore_dup); !st.ok()) return st;
      }
    }
    return Status::Ok();
  }

  Status Append(std::string_view pattern) {
    const std::string key =
        pattern.find('%') == std::string_view::npos ? AsciiUpper(pattern) : std::string(pattern);
    if (key == "{^LN-BEG}" || key == "{DEFAULT}") {
      // fail2ban's filter for {DEFAULT} returns None for every template, so
      // it adds nothing (and alone leaves the full default set for later).
      return AddDefaults(key == "{^LN-BEG}" ? Filter::kLineBegin : Filter::kNothing, std::nullopt, true);
    }
    if (key.find("{DATE}") != std::string::npos) {
      return AddDefaults(Filter::kAll, pattern, false);
    }
    Result<DateTemplate> t = key == "{NONE}" ? factory_.FromPattern("{UNB}^", key)
                                             : factory_.FromPattern(pattern, key);
    if (!t.ok()) return t.status();
    return AppendOne(std::move(*t), false);
  }

  std::vector<DateTemplate>& list() { return list_; }

 private:
  const TemplateFactory& factory_;
  std::vector<DateTemplate> list_;
  std::set<std::string> names_;
};

// The compiled regex of a template's regex text. One per text in the
// process: template lists of different datepatterns hold many of the same
// templates (each `{^LN-BEG}` one is also in the default list), and one
// compiled object lets detectors share a search (MatchAnchoredLast).
Result<std::shared_ptr<const FailRegex>> CompileShared(const std::string& regex) {
  static std::mutex mu;
  static auto* const compiled = new std::map<std::string, std::shared_ptr<const FailRegex>>;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = compiled->find(regex);
    if (it != compiled->end()) return it->second;
  }
  Result<FailRegex> re = FailRegex::Compile(regex, RegexKind::kDateRegex);
  if (!re.ok()) return re.status();
  auto shared = std::make_shared<const FailRegex>(std::move(*re));
  std::lock_guard<std::mutex> lock(mu);
  return compiled->emplace(regex, std::move(shared)).first->second;
}

// Which rule of RuledOut an EPOCH template's regex allows, told by its
// final text, whichever way the template was built (copies included).
void SetEpochStarts(DateTemplate* t) {
  t->epoch_starts = t->epoch_at_begin = false;
  if (t->kind != TemplateKind::kEpoch) return;
  const std::string_view r = t->regex;
  // Its three starts, then \d.
  static constexpr std::string_view kAnywhere =
      R"(((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\()))\d{10,11})";
  t->epoch_starts =
      StartsWith(r, kAnywhere) || (StartsWith(r, "(") && StartsWith(r.substr(1), kAnywhere));
  // At most two \W at the line's start (a '[' among them), then \d.
  static constexpr std::string_view kAtBegin = R"(^(?:\W{0,2})?((?P<square>(?<=^\[))?\d{10,11})";
  t->epoch_at_begin = StartsWith(r, kAtBegin);
}

Status Compile(DateTemplate* t) {
  SetEpochStarts(t);
  Result<std::shared_ptr<const FailRegex>> re = CompileShared(t->regex);
  if (!re.ok()) {
    // The message already quotes the expression.
    return Status::Error("Compile " + PyRepr(t->name) + " failed, " + re.status().message());
  }
  if ((*re)->capture_count() < t->value_group) {
    return Status::Error("Compile " + PyRepr(t->name) + " failed, expression " + PyRepr(t->regex) +
                         ": no such group");
  }
  for (const FailRegexGroup& g : (*re)->groups()) {
    if (std::optional<TimeField> f = TimeFieldFromGroupName(g.name)) {
      t->fields.emplace_back(g.index, *f);
      if (*f == TimeField::p) t->has_p = true;
    }
  }
  std::sort(t->fields.begin(), t->fields.end());
  t->re = std::move(*re);
  return Status::Ok();
}

// Length of the code point that ends at byte `end` (1 for invalid bytes).
size_t CodePointBackLength(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  const size_t len = CodePointLength(s, start);
  return start + len == end ? len : 1;
}

// Byte offset of code point `cp` in `line` (line.size() for the end), or
// nullopt past the end. Python indexes lines by code point; invalid bytes
// count one each.
std::optional<size_t> ByteOfCodePoint(std::string_view line, int64_t cp) {
  if (cp < 0) return std::nullopt;
  size_t pos = 0;
  for (int64_t n = 0; n < cp; ++n) {
    if (pos >= line.size()) return std::nullopt;
    pos += CodePointLength(line, pos);
  }
  return pos;
}

}  // namespace

// ---------------------------------------------------------------------------

namespace {

// fail2ban's setDatePattern (or its default set), compiled.
Result<std::vector<DateTemplate>> BuildTemplates(std::string_view datepattern,
                                                 const std::string& ex_year) {
  TemplateFactory factory(ex_year);
  TemplateList list(factory);
  // setDatePattern: one template per non-empty, stripped line.
  std::string_view rest = datepattern;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    const std::string line(PyStrip(rest.substr(0, nl)));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty()) continue;
    if (Status st = list.Append(line); !st.ok()) return st;
  }
  if (list.list().empty()) {
    if (Status st = list.AddDefaults(TemplateList::Filter::kAll, std::nullopt, true); !st.ok()) return st;
  }
  for (DateTemplate& t : list.list()) {
    if (Status st = Compile(&t); !st.ok()) return st;
  }
  return std::move(list.list());
}

}  // namespace

// One search: from state `before`, on (line, now), to state `after`, with
// what it changed and what it returned.
struct DateDetector::SearchRecord {
  bool valid = false;
  uint64_t before = 0, after = 0;
  // The line: by its key when the search had one (then `line` is not kept).
  uint64_t line_key = 0;
  std::string line;
  double now = 0;
  std::vector<int> hit_templates;  // templates whose regex found a date, in order
  int winner = -1;                 // the winning template's index, -1: none
  int64_t distance = 0;
  bool raised = false;
  Boundary pos, end_pos;
  std::optional<DateMatch> result;
};

struct DateDetector::SharedSearch {
  const void* thread = nullptr;  // the only thread that uses it (ThisThreadToken)
  uint64_t initial = 0;    // the state id of a new detector with these options
  // The last searches, overwritten in turn: a few, so that a detector out
  // of step (an idle jail's) does not take the place of the search the
  // others in step with each other replay.
  std::array<SearchRecord, 4> records;
  size_t next = 0;
};

struct DateDetector::AnchoredWin {
  // The template it is for (null: unused), by what its match and
  // conversion depend on: the compiled regex (one per regex text), the
  // kind of conversion and its options.
  const FailRegex* re = nullptr;
  TemplateKind kind = TemplateKind::kPattern;
  int value_group = 1;
  bool long_epoch = false;
  // The detector that asked last: the line is kept only when detectors
  // take turns, so a detector alone on its thread (bantam-regex) does not
  // copy every line for nobody.
  const DateDetector* asker = nullptr;
  // The line it matched, and the `now` and zone it was converted at; the
  // rest below is the answer for it when `valid`.
  bool valid = false;
  uint64_t line_key = 0;  // when not 0, `line` is not kept
  std::string line;
  double now = 0;
  std::optional<int> tz;
  // The match's start in code points, fail2ban's IndexError, boundaries.
  int64_t distance = 0;
  bool raised = false;
  Boundary pos, end_pos;
  // The detector's answer but for template_index (the detector's order).
  DateMatch result;
};

namespace {

// State ids are unique in the process; 0 is never used.
uint64_t NextStateId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

uint64_t NewLineKey() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

namespace {

// Whether a kept line (by key, or by its text when key is 0) is `line`
// given with `key`.
bool SameLine(uint64_t kept_key, const std::string& kept, uint64_t key, std::string_view line) {
  if (kept_key != 0 || key != 0) return kept_key == key;
  return kept == line;
}

}  // namespace

DateDetector::DateDetector()
    : match_(std::make_unique<FailRegexMatch>()), found_match_(std::make_unique<FailRegexMatch>()) {}
DateDetector::DateDetector(DateDetector&& other) noexcept = default;
DateDetector& DateDetector::operator=(DateDetector&& other) noexcept = default;
DateDetector::~DateDetector() = default;

Result<DateDetector> DateDetector::Create(const DateDetectorOptions& options) {
  DateDetector dd;
  if (!options.logtimezone.empty()) {
    Result<int> tz = ParseTimeZone(options.logtimezone);
    if (!tz.ok()) return tz.status();
    dd.default_tz_ = *tz;
  }
  ::tzset();  // mktime re-reads TZ; localtime_r only once, so read it now
  LocalZoneChanged();

  // The compiled template list of a datepattern depends on nothing else
  // but the current year (%ExY), so it is built once per process: every
  // jail with the default dates would otherwise translate and compile the
  // same ~30 regexes at its creation. Each detector copies the unused
  // templates (its own counters) and shares their compiled regexes.
  using Prototypes = std::vector<DateTemplate>;
  static std::mutex cache_mu;
  static auto* const cache = new std::map<std::string, std::shared_ptr<const Prototypes>>;
  const std::string ex_year = ExYearRegex();
  const std::string cache_key = options.datepattern + '\0' + ex_year;
  std::shared_ptr<const Prototypes> prototypes;
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache->find(cache_key);
    if (it != cache->end()) prototypes = it->second;
  }
  if (!prototypes) {
    Result<std::vector<DateTemplate>> built = BuildTemplates(options.datepattern, ex_year);
    if (!built.ok()) return built.status();
    prototypes = std::make_shared<const Prototypes>(std::move(*built));
    std::lock_guard<std::mutex> lock(cache_mu);
    prototypes = cache->emplace(cache_key, prototypes).first->second;
  }
  size_t max_fields = 0;
  for (const DateTemplate& t : *prototypes) {
    max_fields = std::max(max_fields, t.fields.size());
    dd.templates_.push_back(std::make_unique<DateTemplate>(t));
    dd.templates_.back()->slot = static_cast<int>(dd.templates_.size() - 1);
  }
  dd.fields_.reserve(max_fields);
  dd.search_shortcuts_ = options.search_shortcuts;
  for (const auto& t : dd.templates_) {
    if (t->slot >= 64) continue;
    if (t->epoch_starts) dd.epoch_slots_ |= uint64_t{1} << t->slot;
    if (t->epoch_at_begin) dd.epoch_begin_slots_ |= uint64_t{1} << t->slot;
  }
  if (options.share_searches) {
    // Equal template lists (the default ones carry the current year) and
    // zone give equal new detectors, so they start from one state id.
    std::string key = options.logtimezone;
    for (const auto& t : dd.templates_) {
      key.append(1, '\0').append(t->name).append(1, '\0').append(t->regex);
      key.append(1, '\0').append(std::to_string(t->flags)).append(1, '/').append(
          PyFloatRepr(t->weight));
    }
    thread_local std::map<std::string, std::weak_ptr<SharedSearch>> registry;
    std::shared_ptr<SharedSearch> shared = registry[key].lock();
    if (!shared) {
      shared = std::make_shared<SharedSearch>();
      shared->thread = ThisThreadToken();
      shared->initial = NextStateId();
      for (SearchRecord& r : shared->records) r.hit_templates.reserve(dd.templates_.size());
      registry[key] = shared;
    }
    dd.shared_ = std::move(shared);
    dd.state_ = dd.shared_->initial;
  }
  return dd;
}

std::vector<DateTemplateStats> DateDetector::templates() const {
  std::vector<DateTemplateStats> out;
  out.reserve(templates_.size());
  for (const auto& t : templates_) out.push_back({t->name, t->hits, t->regex_hits});
  return out;
}

DateDetector::Char DateDetector::CharAt(std::string_view line, size_t byte) {
  Char c;
  if (byte >= line.size()) return c;
  const size_t len = CodePointLength(line, byte);
  std::copy_n(line.data() + byte, len, c.bytes);
  c.size = static_cast<uint8_t>(len);
  const auto b = static_cast<unsigned char>(line[byte]);
  if (b < 0x80) {
    c.alnum = IsAsciiAlnum(b);
  } else {
    FailRegexMatch* m = found_match_.get();  // free at this point
    c.alnum = Found(Meta().alnum, c.view(), m);
  }
  return c;
}

namespace {

// Whether `s` may hold ten \d at byte `i`: \d is Unicode's, so a byte of a
// non-ASCII character may be part of one, but ten digits take ten bytes.
bool MaybeTenDigitsAt(std::string_view s, size_t i) {
  if (i > s.size() || s.size() - i < 10) return false;
  for (size_t k = i; k < i + 10; ++k) {
    const auto b = static_cast<unsigned char>(s[k]);
    if (!((b >= '0' && b <= '9') || b >= 0x80)) return false;
  }
  return true;
}

// An EPOCH template's match (epoch_starts) can begin only at 0, at 1 after
// a leading '[', or right after "audit(" (any case: the pattern may carry
// (?i)), and with \d{10,11} there.
bool EpochMayStart(std::string_view s) {
  if (MaybeTenDigitsAt(s, 0) || (!s.empty() && s[0] == '[' && MaybeTenDigitsAt(s, 1))) return true;
  for (size_t p = s.find('('); p != std::string_view::npos; p = s.find('(', p + 1)) {
    if (p < 5 || !MaybeTenDigitsAt(s, p + 1)) continue;
    static constexpr std::string_view kAudit = "audit";
    bool audit = true;
    for (size_t k = 0; k < 5 && audit; ++k) audit = (s[p - 5 + k] | 0x20) == kAudit[k];
    if (audit) return true;
  }
  return false;
}

// A line-begin EPOCH template's match (epoch_at_begin) has its ten \d
// after at most two \W at the line's start. Two code points take at most
// eight bytes, and an ASCII word character cannot be one of them.
bool EpochMayStartAtBegin(std::string_view s) {
  for (size_t i = 0; i <= 8 && i < s.size(); ++i) {
    if (MaybeTenDigitsAt(s, i)) return true;
    const auto b = static_cast<unsigned char>(s[i]);
    if (IsAsciiAlnum(b) || b == '_') return false;
  }
  return false;
}

}  // namespace

DateDetector::PrefixMask* DateDetector::PrefixMaskFor(std::string_view line) {
  if (!search_shortcuts_ || line.size() < 4) return nullptr;
  uint32_t key = 0;
  std::memcpy(&key, line.data(), 4);
  if ((key & 0x80808080u) != 0) return nullptr;
  PrefixMask& m = prefix_masks_[(key * 2654435761u) >> 28];
  if (!m.valid || m.key != key) m = PrefixMask{key, true, 0, 0};
  return &m;
}

bool DateDetector::RuledOut(DateTemplate& t, std::string_view subject) {
  if (!search_shortcuts_) return false;
  if (t.epoch_starts && !EpochMayStart(subject)) return true;
  if (t.epoch_at_begin && !EpochMayStartAtBegin(subject)) return true;
  // The verdicts for the line's first four bytes (line_mask_: ASCII, at
  // least four of them), one bit per template, each worked out once.
  if (!t.re->anchored() || subject.size() < 4 || line_mask_ == nullptr || t.slot < 0 ||
      t.slot >= 64) {
    return false;
  }
  const uint64_t bit = uint64_t{1} << t.slot;
  if ((line_mask_->known & bit) == 0) {
    line_mask_->known |= bit;
    if (t.re->RulesOutPrefix(subject.substr(0, 4), match_.get())) line_mask_->ruled_out |= bit;
  }
  return (line_mask_->ruled_out & bit) != 0;
}

bool DateDetector::SearchTemplate(int index, std::string_view line, size_t pos, size_t endpos) {
  DateTemplate& t = *templates_[index];
  // pattern.search(line, pos, endpos): both clamped to the line; nothing
  // is found when pos lies beyond endpos.
  endpos = std::min(endpos, line.size());
  pos = std::min(pos, line.size());
  if (pos > endpos) return false;
  if (pos == 0 && RuledOut(t, line.substr(0, endpos))) return false;
  Result<bool> r = t.re->Search(line.substr(0, endpos), pos, match_.get());
  // PCRE2 giving up (match limit) counts as no match; Python would go on.
  if (!r.ok() || !*r) return false;
  ++t.regex_hits;
  if (recording_ != nullptr) recording_->hit_templates.push_back(index);
  return true;
}

bool DateDetector::MatchAnchoredLast(std::string_view line, double now,
                                     std::optional<DateMatch>* out) {
  const int i = last_template_;
  if (i >= static_cast<int>(templates_.size())) return false;
  DateTemplate& t = *templates_[i];
  if ((t.flags & (kLineBegin | kLineEnd)) == 0) return false;
  // MatchTemplate's first step for this template: a search of the whole
  // line, and no other template is tried when it matches.
  thread_local std::array<AnchoredWin, 4> wins;
  thread_local size_t next_win = 0;
  AnchoredWin* w = nullptr;
  for (AnchoredWin& c : wins) {
    if (c.re == t.re.get() && c.kind == t.kind && c.value_group == t.value_group &&
        c.long_epoch == t.long_epoch) {
      w = &c;
      break;
    }
  }
  const bool others = w != nullptr && w->asker != this;
  if (w != nullptr) w->asker = this;
  if (w != nullptr && w->valid && w->now == now && w->tz == default_tz_ &&
      SameLine(w->line_key, w->line, line_key_, line)) {
    // What SearchTemplate would have counted.
    ++shared_wins_;
    ++t.regex_hits;
    if (recording_ != nullptr) recording_->hit_templates.push_back(i);
  } else {
    if (!SearchTemplate(i, line, 0, line.size())) return false;
    if (w == nullptr) {
      w = &wins[next_win];
      next_win = (next_win + 1) % wins.size();
      w->re = t.re.get();
      w->kind = t.kind;
      w->value_group = t.value_group;
      w->long_epoch = t.long_epoch;
      w->asker = this;
    }
    w->valid = false;
    const size_t start_b = match_->start(), end_b = match_->end();
    w->distance = static_cast<int64_t>(CodePointIndex(line, start_b));
    w->raised = false;
    w->pos = Boundary{};
    w->end_pos = Boundary{};
    WinBoundaries(line, start_b, end_b, w->distance,
                  static_cast<int64_t>(CodePointIndex(line, end_b)), &w->raised, &w->pos,
                  &w->end_pos);
    w->result = WinResult(t, line, w->raised, now);
    if (others) {
      w->line_key = line_key_;
      if (line_key_ == 0) w->line.assign(line);
      w->now = now;
      w->tz = default_tz_;
      w->valid = true;
    }
  }
  if (recording_ != nullptr) {
    recording_->winner = i;
    recording_->distance = w->distance;
    recording_->raised = w->raised;
    recording_->pos = w->pos;
    recording_->end_pos = w->end_pos;
  }
  const int index = CommitWin(i, w->distance, w->raised, w->pos, w->end_pos, now);
  *out = w->result;
  (*out)->template_index = w->raised ? -1 : index;
  return true;
}

int DateDetector::MatchTemplate(std::string_view line, double now, bool* raised,
                                bool last_unmatched) {
  const int count = static_cast<int>(templates_.size());
  bool matched = false;
  int found_index = -1;
  int64_t found_distance = 0x7fffffff, found_endpos = 0x7fffffff;
  int ignore_by_search = 0x7fffffff;
  int64_t distance = 0, endpos = 0;
  int i = last_template_;
  // First the template that matched last, within the same boundaries.
  if (i < count) {
    DateTemplate& t = *templates_[i];
    if (t.flags & (kLineBegin | kLineEnd)) {
      matched = !last_unmatched && SearchTemplate(i, line, 0, line.size());
      ignore_by_search = i;
    } else {
      const int64_t d = last_pos_.index, e = last_end_pos_.index;
      auto slice = [&](int64_t cp) -> Char {  // line[cp:cp+1]
        std::optional<size_t> b = ByteOfCodePoint(line, cp);
        Char c;
        if (!b || *b >= line.size()) return c;
        const size_t len = CodePointLength(line, *b);
        std::copy_n(line.data() + *b, len, c.bytes);
        c.size = static_cast<uint8_t>(len);
        return c;
      };
      const Char before_d = slice(d - 1), at_d = slice(d), at_e = slice(e), before_e = slice(e - 1);
      const bool begin_ok = before_d.view() == last_pos_.before.view() ||
                            (at_d.view() == last_pos_.at.view() && !last_pos_.at.alnum);
      const bool end_ok = at_e.view() == last_end_pos_.at.view() ||
                          (before_e.view() == last_end_pos_.before.view() && !last_end_pos_.before.alnum);
      if (begin_ok && end_ok) {
        const size_t pos_b = ByteOfCodePoint(line, d).value_or(line.size());
        const size_t end_b = ByteOfCodePoint(line, e).value_or(line.size());
        matched = SearchTemplate(i, line, pos_b, end_b);
      } else {
        matched = SearchTemplate(i, line, 0, line.size());
        ignore_by_search = i;
      }
    }
    if (matched) {
      distance = static_cast<int64_t>(CodePointIndex(line, match_->start()));
      endpos = static_cast<int64_t>(CodePointIndex(line, match_->end()));
      if (!(count == 1 || (t.flags & (kLineBegin | kLineEnd)) ||
            (distance == last_pos_.index && endpos == last_end_pos_.index))) {
        // Another position: maybe another format; keep it as a fallback.
        found_index = i;
        found_distance = distance;
        found_endpos = endpos;
        std::swap(match_, found_match_);
        matched = false;
      }
    }
  }
  // Every template ruled out, each search of the loop below would return
  // false before running: by the verdicts for lines starting as this one
  // does, and an EPOCH template (whose rule looks at the whole line, so it
  // has no verdict by prefix) by its rule on this line, asked once for all.
  bool none_can = false;
  if (!matched && line_mask_ != nullptr && count <= 64) {
    const uint64_t all = count == 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
    uint64_t out = line_mask_->ruled_out;
    if (out != all && (out | epoch_slots_ | epoch_begin_slots_) == all) {
      if ((epoch_slots_ & ~out) != 0 && !EpochMayStart(line)) out |= epoch_slots_;
      if ((epoch_begin_slots_ & ~out) != 0 && !EpochMayStartAtBegin(line)) {
        out |= epoch_begin_slots_;
      }
    }
    none_can = out == all;
    if (none_can) ++ruled_out_lines_;
  }
  if (!matched && !none_can) {
    for (i = 0; i < count; ++i) {
      if (i == ignore_by_search) continue;
      DateTemplate& t = *templates_[i];
      if (!SearchTemplate(i, line, 0, line.size())) continue;
      matched = true;
      distance = static_cast<int64_t>(CodePointIndex(line, match_->start()));
      endpos = static_cast<int64_t>(CodePointIndex(line, match_->end()));
      if (i + 1 >= count) break;
      if (t.flags & (kLineBegin | kLineEnd)) break;
      if (distance == 0 && t.hits && !templates_[i + 1]->regex_hits) break;
      if (distance > t.distance || distance > last_pos_.index) {
        // Further into the line than usual: maybe a date inside the
        // message. Keep the nearest and search on.
        if (distance < found_distance) {
          found_index = i;
          found_distance = distance;
          found_endpos = endpos;
          std::swap(match_, found_match_);
        }
        matched = false;
        continue;
      }
      break;
    }
    if (!matched && found_index >= 0) {
      i = found_index;
      distance = found_distance;
      endpos = found_endpos;
      std::swap(match_, found_match_);
      matched = true;
    }
  }
  if (!matched) return -1;

  Boundary pos, end_pos;
  WinBoundaries(line, match_->start(), match_->end(), distance, endpos, raised, &pos, &end_pos);
  if (recording_ != nullptr) {
    recording_->winner = i;
    recording_->distance = distance;
    recording_->raised = *raised;
    recording_->pos = pos;
    recording_->end_pos = end_pos;
  }
  return CommitWin(i, distance, *raised, pos, end_pos, now);
}

void DateDetector::WinBoundaries(std::string_view line, size_t start_b, size_t end_b,
                                 int64_t distance, int64_t endpos, bool* raised, Boundary* pos,
                                 Boundary* end_pos) {
  if (start_b >= line.size()) {
    // line[distance] past the end: fail2ban's IndexError.
    *raised = true;
    return;
  }
  pos->index = distance;
  pos->before = start_b == 0 ? Char{} : CharAt(line, start_b - CodePointBackLength(line, start_b));
  pos->at = CharAt(line, start_b);
  end_pos->index = endpos;
  // line[endpos - 1]: for endpos 0 Python's index -1 is the last character.
  const size_t before_end = end_b == 0 ? line.size() : end_b;
  end_pos->before = CharAt(line, before_end - CodePointBackLength(line, before_end));
  end_pos->at = CharAt(line, end_b);
}

int DateDetector::CommitWin(int i, int64_t distance, bool raised, const Boundary& pos,
                            const Boundary& end_pos, double now) {
  DateTemplate& t = *templates_[i];
  ++t.hits;
  t.last_used = now;
  t.distance = distance;
  if (first_unused_ == i) ++first_unused_;
  if (raised) return i;
  last_pos_ = pos;
  last_end_pos_ = end_pos;
  if (i != 0 && i != last_template_) i = ReorderTemplate(i);
  last_template_ = i;
  return i;
}

int DateDetector::ReorderTemplate(int num) {
  if (num == 0) return num;
  DateTemplate& t = *templates_[num];
  const double untime = t.last_used - 300;  // unused for 5 minutes
  const double weight = t.Weight();
  int pos = first_unused_ < num ? first_unused_ : num / 2;
  auto moveable = [&] {
    const DateTemplate& other = *templates_[pos];
    return weight > other.Weight() || untime > other.last_used;
  };
  if (!moveable()) {
    if (pos == num - 1) return num;
    pos = num - 1;
    if (!moveable()) return num;
  }
  std::unique_ptr<DateTemplate> moving = std::move(templates_[num]);
  templates_.erase(templates_.begin() + num);
  templates_.insert(templates_.begin() + pos, std::move(moving));
  while (first_unused_ < static_cast<int>(templates_.size()) && templates_[first_unused_]->hits) {
    ++first_unused_;
  }
  return pos;
}

void DateDetector::Convert(const DateTemplate& t, double now, DateMatch* out) {
  switch (t.kind) {
    case TemplateKind::kPattern: {
      const std::string_view whole = match_->Group(0).value_or("");
      if (t.memo_valid && t.memo_now == now && t.memo_text == whole) {
        out->time = t.memo_time;
        out->raised = out->raised || t.memo_raised;
        return;
      }
      fields_.clear();
      for (const auto& [index, field] : t.fields) fields_.push_back({field, match_->Group(index)});
      if (!local_now_ || local_now_->epoch != now) local_now_ = MakeLocalNow(now);
      const StrptimeResult r = FieldsToTime(fields_, t.has_p, *local_now_, default_tz_);
      if (r.error == StrptimeError::kNone) out->time = r.time;
      if (r.error == StrptimeError::kOtherError) out->raised = true;
      t.memo_valid = true;
      t.memo_now = now;
      t.memo_text.assign(whole);
      t.memo_time = out->time;
      t.memo_raised = r.error == StrptimeError::kOtherError;
      return;
    }
    case TemplateKind::kEpoch: {
      const std::optional<std::string_view> v = match_->Group(t.value_group);
      if (!v) {
        out->raised = true;
        return;
      }
      // float(v), Unicode digits included (the regex's \d allows them).
      char buf[64];
      size_t n = 0;
      bool has_dot = false;
      for (size_t p = 0; p < v->size() && n + 1 < sizeof buf;) {
        const size_t len = CodePointLength(*v, p);
        if (len == 1) {
          buf[n++] = (*v)[p];
          has_dot |= (*v)[p] == '.';
        } else {
          const std::optional<int64_t> d = PyInt(v->substr(p, len));
          if (!d) return;
          buf[n++] = static_cast<char>('0' + *d);
        }
        p += len;
      }
      buf[n] = '\0';
      char* end = nullptr;
      double value = std::strtod(buf, &end);
      if (end != buf + n || n == 0) return;
      if (t.long_epoch && n >= 13) value = (n >= 16 && !has_dot) ? value / 1000000 : value / 1000;
      out->time = value;
      return;
    }
    case TemplateKind::kTai64n: {
      // int(value[2:17], 16): the seconds, without TAI64's 2^62 offset
      // digit and without leap-second correction, as fail2ban does.
      const std::string_view v = match_->Group(1).value_or("");
      if (v.size() < 17) return;
      double value = 0;
      for (char c : v.substr(2, 15)) {
        const int d = c <= '9' ? c - '0' : c - 'a' + 10;
        value = value * 16 + d;
      }
      out->time = value;
      return;
    }
  }
}

std::optional<DateMatch> DateDetector::Match(std::string_view line, double now,
                                             uint64_t line_key) {
  line_key_ = line_key;
  SharedSearch* const s =
      shared_ && shared_->thread == ThisThreadToken() ? shared_.get() : nullptr;
  if (s == nullptr || shared_.use_count() == 1) {
    // Off its thread, or no other detector shares the options: nothing to
    // replay and no one to record for. The state gets an id no record
    // holds, so that no detector created later takes it for its own.
    if (shared_ && !private_state_) {
      state_ = NextStateId();
      private_state_ = true;
    }
    return MatchFresh(line, now);
  }
  for (const SearchRecord& r : s->records) {
    if (!r.valid || r.before != state_ || r.now != now ||
        !SameLine(r.line_key, r.line, line_key, line)) {
      continue;
    }
    // The same state met the same line before: redo its effects in order
    // (search hits, then the winner's bookkeeping), no regex runs.
    for (int k : r.hit_templates) ++templates_[static_cast<size_t>(k)]->regex_hits;
    if (r.winner >= 0) CommitWin(r.winner, r.distance, r.raised, r.pos, r.end_pos, now);
    state_ = r.after;
    private_state_ = false;
    ++replayed_;
    return r.result;
  }
  SearchRecord& r = s->records[s->next];
  s->next = (s->next + 1) % s->records.size();
  r.valid = false;
  r.before = state_;
  r.line_key = line_key;
  if (line_key == 0) r.line.assign(line);
  r.now = now;
  r.hit_templates.clear();
  r.winner = -1;
  recording_ = &r;
  r.result = MatchFresh(line, now);
  recording_ = nullptr;
  state_ = r.after = NextStateId();
  private_state_ = false;
  r.valid = true;
  return r.result;
}

std::optional<DateMatch> DateDetector::MatchFresh(std::string_view line, double now) {
  line_mask_ = PrefixMaskFor(line);
  std::optional<DateMatch> anchored;
  // The search of the last template cannot be shared when shortcuts are
  // off: the tests comparing both ways then search every time.
  const bool last_unmatched = search_shortcuts_ && !MatchAnchoredLast(line, now, &anchored);
  if (anchored) {
    line_mask_ = nullptr;
    return anchored;
  }
  bool raised = false;
  const int i = MatchTemplate(line, now, &raised, last_unmatched);
  line_mask_ = nullptr;
  if (i < 0) return std::nullopt;
  DateMatch out = WinResult(*templates_[i], line, raised, now);
  out.template_index = raised ? -1 : i;
  return out;
}

DateMatch DateDetector::WinResult(const DateTemplate& t, std::string_view line, bool raised,
                                  double now) {
  DateMatch out;
  if (std::optional<std::string_view> g = match_->Group(1)) {
    out.begin = static_cast<size_t>(g->data() - line.data());
    out.end = out.begin + g->size();
  }
  if (raised) {
    out.raised = true;
  } else {
    Convert(t, now, &out);
  }
  return out;
}

}  // namespace bantam
