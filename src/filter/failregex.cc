#include "bantam/failregex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string.h>

#include <cstring>
#include <mutex>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantam/py.h"
#include "bantam/utf8.h"
#include "bantam/value.h"

// PCRE2_MATCH_INVALID_UTF is what keeps undecodable log bytes harmless.
#if PCRE2_MAJOR < 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR < 34)
#error "bantam needs PCRE2 10.34 or later"
#endif

namespace bantam {
namespace {

// ---------------------------------------------------------------------------
// Text with, for every byte, the offset in the user's regex it came from, so
// errors found after tag expansion still point into what the user wrote.

struct MappedText {
  std::string text;
  std::vector<size_t> origin;  // origin.size() == text.size() + 1

  void Append(std::string_view s, size_t from) {
    text.append(s);
    origin.insert(origin.end(), s.size(), from);
  }
  void AppendCopy(const MappedText& in, size_t begin, size_t end) {
    text.append(in.text, begin, end - begin);
    origin.insert(origin.end(), in.origin.begin() + static_cast<ptrdiff_t>(begin),
                  in.origin.begin() + static_cast<ptrdiff_t>(end));
  }
  void Finish(size_t end_origin) { origin.push_back(end_origin); }
};

// Strict UTF-8 decoding. Returns the byte offset of the first invalid
// sequence, or npos. `starts` receives each code point's byte offset plus a
// final entry for the end.
size_t DecodeUtf8(std::string_view s, std::vector<char32_t>* cps, std::vector<size_t>* starts) {
  const size_t bad = FindInvalidUtf8(s);
  if (bad != std::string_view::npos) return bad;
  for (size_t i = 0; i < s.size();) {
    starts->push_back(i);
    cps->push_back(NextCodePoint(s, &i));
  }
  starts->push_back(s.size());
  return std::string_view::npos;
}

// ---------------------------------------------------------------------------
// Character sets whose Python 3.11 meaning differs from PCRE2 10.42's.
// Compared exhaustively over all code points: with PCRE2_UCP, \d, \w and \b
// agree with Python's Unicode str patterns, but Python's \s is str.isspace(),
// which adds U+001C..U+001F and lacks PCRE2's U+180E. Spelled out, it is the
// C0 spaces, U+001C..U+001F, U+0085 and the Unicode separators (\p{Z}).

struct CpRange {
  char32_t lo, hi;
};
using CpRanges = std::vector<CpRange>;

const CpRanges& PySpaces() {
  static const CpRanges k = {{0x09, 0x0D},     {0x1C, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},
                             {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                             {0x205F, 0x205F}, {0x3000, 0x3000}};
  return k;
}
constexpr std::string_view kPySpaceBody = R"(\t-\r\x{1c}-\x{1f}\x{85}\p{Z})";

// Under (?a) Python's classes are ASCII-only.
const CpRanges& AsciiDigits() {
  static const CpRanges k = {{'0', '9'}};
  return k;
}
const CpRanges& AsciiWord() {
  static const CpRanges k = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  return k;
}
const CpRanges& AsciiSpaces() {
  static const CpRanges k = {{0x09, 0x0D}, {0x20, 0x20}};
  return k;
}
constexpr std::string_view kAsciiWordBody = "0-9A-Z_a-z";

bool InRanges(const CpRanges& ranges, char32_t c) {
  for (const CpRange& r : ranges) {
    if (c >= r.lo && c <= r.hi) return true;
  }
  return false;
}

// Python's case-insensitive matching (lower(c) equal, plus re._casefix)
// treats these code points as one letter; PCRE2's Unicode case folding does
// not. Found by comparing both engines over every cased code point; the
// tests keep checking it.
constexpr std::array<std::array<char32_t, 4>, 4> kPyCaseGroups = {{
    {U'I', U'i', 0x130, 0x131},
    {0x390, 0x1FD3, 0, 0},
    {0x3B0, 0x1FE3, 0, 0},
    {0xFB05, 0xFB06, 0, 0},
}};

const std::array<char32_t, 4>* PyCaseGroup(char32_t c) {
  for (const auto& group : kPyCaseGroups) {
    for (char32_t m : group) {
      if (m != 0 && m == c) return &group;
    }
  }
  return nullptr;
}

bool IsAsciiLetter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char32_t c) { return c >= '0' && c <= '9'; }
bool IsOctDigit(char32_t c) { return c >= '0' && c <= '7'; }
bool IsHexDigit(char32_t c) {
  return IsAsciiDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int HexValue(char32_t c) {
  if (IsAsciiDigit(c)) return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  return static_cast<int>(c - 'A' + 10);
}

std::string HexCp(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\x{%x}", static_cast<unsigned>(c));
  return buf;
}

// Spaces and format characters, written as \x{...} so they stay visible.
bool IsInvisible(char32_t c) {
  return (c >= 0x80 && IsPySpace(c)) || c == 0xAD || c == 0x180E || (c >= 0x200B && c <= 0x200F) ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF;
}

// A literal, spelled so PCRE2 reads exactly that character, in a class or not.
std::string EscapeLiteral(char32_t c, bool in_class) {
  switch (c) {
    case '\n':
      return "\\n";
    case '\t':
      return "\\t";
    case '\r':
      return "\\r";
    default:
      break;
  }
  if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0xA0) || IsInvisible(c)) return HexCp(c);
  const std::string_view specials = in_class ? "\\]^-[" : "\\^$.|?*+()[]{}";
  if (c < 0x80 && specials.find(static_cast<char>(c)) != std::string_view::npos) {
    return std::string("\\") + static_cast<char>(c);
  }
  std::string out;
  AppendUtf8(&out, c);
  return out;
}

std::string ToUtf8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) AppendUtf8(&out, c);
  return out;
}

// Python's repr() of a decoded name, for error messages.
std::string PyRepr(const std::u32string& s) { return bantam::PyRepr(ToUtf8(s)); }

// ---------------------------------------------------------------------------
// Step 1: fail2ban's tags. The expansions are fail2ban's documented regexes
// for each tag (failregex.py: R_HOST, RH4TAG, IPAddr.IP_4_RE/IP_6_RE).

constexpr std::string_view kIp4Re = R"((?:\d{1,3}\.){3}\d{1,3})";
constexpr std::string_view kIp6Re =
    R"((?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))";

std::string Ip4Tag() { return "(?:::f{4,6}:)?(?P<ip4>" + std::string(kIp4Re) + ")"; }
std::string Ip6Tag() { return "(?P<ip6>" + std::string(kIp6Re) + ")"; }
std::string DnsTag() { return R"((?P<dns>[\w\-.^_]*\w))"; }
std::string CidrTag() { return R"((?P<cidr>\d+))"; }
std::string AddrTag() { return R"(\[?(?:)" + Ip4Tag() + "|" + Ip6Tag() + R"()\]?)"; }
std::string HostTag(bool with_dns) {
  return with_dns ? "(?:" + AddrTag() + "|" + DnsTag() + ")" : AddrTag();
}
std::string SubnetTag() {
  return R"(\[?(?:)" + Ip4Tag() + "|" + Ip6Tag() + ")(?:/" + CidrTag() + R"()?\]?)";
}

// Replacement for a tag with a fixed expansion, or nullopt.
std::optional<std::string> FixedTag(std::string_view name, bool host_matches_dns) {
  if (name == "HOST") return HostTag(host_matches_dns);
  if (name == "IP4" || name == "F-IP4/") return Ip4Tag();
  if (name == "IP6" || name == "F-IP6/") return Ip6Tag();
  if (name == "ADDR" || name == "F-ADDR/") return AddrTag();
  if (name == "CIDR" || name == "F-CIDR/") return CidrTag();
  if (name == "SUBNET" || name == "F-SUBNET/") return SubnetTag();
  if (name == "DNS" || name == "F-DNS/") return DnsTag();
  if (name == "F-ID/") return std::string(R"((?P<fid>\S+))");
  if (name == "F-PORT/") return std::string(R"((?P<fport>\w+))");
  return std::nullopt;
}

// Characters of a tag name: fail2ban matches tags with </?[\w\-]+/?>. Tags it
// knows are ASCII; for unknown ones only the extent matters, and since no tag
// can contain '<' the extent never changes the result, so any non-ASCII
// byte may count as a name character here.
bool IsTagNameByte(char c) {
  const auto b = static_cast<unsigned char>(c);
  return b >= 0x80 || IsAsciiLetter(b) || IsAsciiDigit(b) || c == '_' || c == '-';
}

MappedText ResolveTags(std::string_view regex, bool host_matches_dns) {
  MappedText out;
  std::map<std::string, bool, std::less<>> open_tags;
  int skiplines = 0;
  size_t i = 0;
  while (i < regex.size()) {
    if (regex[i] != '<') {
      out.Append(regex.substr(i, 1), i);
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (j < regex.size() && regex[j] == '/') ++j;
    size_t k = j;
    while (k < regex.size() && IsTagNameByte(regex[k])) ++k;
    const bool has_name = k > j;
    if (k < regex.size() && regex[k] == '/') ++k;
    if (!has_name || k >= regex.size() || regex[k] != '>') {
      out.Append(regex.substr(i, 1), i);
      ++i;
      continue;
    }
    const std::string_view name = regex.substr(i + 1, k - i - 1);
    const std::string_view whole = regex.substr(i, k + 1 - i);
    std::string replacement(whole);
    if (name == "SKIPLINES") {
      replacement = "\\n(?P<skiplines" + std::to_string(skiplines++) + ">(?:(?:.*\\n)*?))";
    } else if (std::optional<std::string> fixed = FixedTag(name, host_matches_dns)) {
      replacement = std::move(*fixed);
    } else {
      // <F-NAME> opens a group named name.lower() (id -> fid, port -> fport);
      // </F-NAME> closes it, but only once opened, else it stays literal.
      const bool closing = name.starts_with('/');
      const std::string_view custom = name.substr(closing ? 1 : 0);
      bool is_custom = custom.size() > 2 && custom.starts_with("F-");
      for (size_t n = 2; is_custom && n < custom.size(); ++n) {
        const char c = custom[n];
        is_custom = (c >= 'A' && c <= 'Z') || IsAsciiDigit(c) || c == '_' || c == '-';
      }
      if (is_custom) {
        const std::string tag(custom.substr(2));
        if (closing) {
          if (open_tags.count(tag)) replacement = ")";
        } else {
          open_tags[tag] = true;
          std::string group = tag;
          for (char& c : group) {
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
          }
          if (group == "id") group = "fid";
          if (group == "port") group = "fport";
          replacement = "(?P<" + group + ">";
        }
      }
    }
    if (replacement == whole) {
      for (size_t n = i; n <= k; ++n) out.Append(regex.substr(n, 1), n);
    } else {
      out.Append(replacement, i);
    }
    i = k + 1;
  }
  out.Finish(regex.size());
  return out;
}

// Step 2: fail2ban rewrites "((?i)x)" and "(?:(?i)x)" to "(?i:x)", so that
// flags meant for a group do not become global ones.
MappedText GlobalToLocalFlags(const MappedText& in) {
  const std::string& s = in.text;
  MappedText out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '(' && (i == 0 || s[i - 1] != '\\')) {
      size_t j = i + 1;
      if (s.compare(j, 2, "?:") == 0) j += 2;
      if (s.compare(j, 2, "(?") == 0) {
        size_t k = j + 2;
        while (k < s.size() && s[k] >= 'a' && s[k] <= 'z') ++k;
        if (k > j + 2 && k < s.size() && s[k] == ')') {
          // The new group starts where the dropped one did.
          out.Append("(", in.origin[i]);
          out.AppendCopy(in, j + 1, k);  // "?" and the flags
          out.Append(":", in.origin[k]);
          i = k + 1;
          continue;
        }
      }
    }
    out.AppendCopy(in, i, i + 1);
    ++i;
  }
  out.Finish(in.origin.back());
  return out;
}

// ---------------------------------------------------------------------------
// Step 3: a parser with the structure, checks and messages of Python 3.11's
// re._parser, emitting PCRE2 syntax instead of sre opcodes.

// re flags, as Python tracks them.
constexpr int kFlagI = 1;
constexpr int kFlagM = 2;
constexpr int kFlagS = 4;
constexpr int kFlagX = 8;
constexpr int kFlagA = 16;
constexpr int kFlagU = 32;
constexpr int kFlagL = 64;
constexpr int kFlagT = 128;
constexpr int kTypeFlags = kFlagA | kFlagU | kFlagL;

int FlagBit(char32_t c) {
  switch (c) {
    case 'i':
      return kFlagI;
    case 'L':
      return kFlagL;
    case 'm':
      return kFlagM;
    case 's':
      return kFlagS;
    case 'x':
      return kFlagX;
    case 'a':
      return kFlagA;
    case 't':
      return kFlagT;
    case 'u':
      return kFlagU;
    default:
      return 0;
  }
}

// Flags of a local group applied to the enclosing ones, as sre does: a type
// flag (a/u) replaces the enclosing type flag.
int CombineFlags(int flags, int add, int del) {
  if (add & kTypeFlags) flags &= ~kTypeFlags;
  return (flags | add) & ~del;
}

// The PCRE2 letters for the Python flags in effect. Case-insensitivity under
// (?a) is ASCII-only in Python, so PCRE2's (Unicode) caseless is off there
// and letters are expanded by hand instead.
std::string Pcre2FlagLetters(int flags) {
  std::string out;
  if ((flags & kFlagI) && !(flags & kFlagA)) out += 'i';
  if (flags & kFlagM) out += 'm';
  if (flags & kFlagS) out += 's';
  return out;
}

constexpr uint64_t kMaxRepeat = 4294967295u;  // _sre.MAXREPEAT
constexpr uint64_t kMaxGroups = 1073741823u;  // _sre.MAXGROUPS
constexpr uint64_t kPcre2MaxRepeat = 65535;
constexpr uint64_t kSaturate = uint64_t{1} << 62;

uint64_t SatAdd(uint64_t a, uint64_t b) { return std::min(a + b, kSaturate); }
uint64_t SatMul(uint64_t a, uint64_t b) {
  if (a == 0 || b == 0) return 0;
  if (a > kSaturate / b) return kSaturate;
  return std::min(a * b, kSaturate);
}

// sre's (min, max) width of a subpattern, needed for lookbehind checks.
struct Width {
  uint64_t lo = 0;
  uint64_t hi = 0;
};

Width CapWidth(Width w) { return {std::min(w.lo, kMaxRepeat - 1), std::min(w.hi, kMaxRepeat)}; }

enum class ItemKind {
  kPlain,   // literal, class, group, backreference, lookaround, ...
  kAt,      // ^ $ \A \Z \b \B: Python refuses to repeat these
  kRepeat,  // already quantified: Python refuses a second quantifier
};

struct Item {
  Item() = default;
  Item(std::string t, Width w, ItemKind k) : text(std::move(t)), width(w), kind(k) {}

  std::string text;  // one PCRE2 atom (or an unquantifiable assertion)
  Width width;
  ItemKind kind = ItemKind::kPlain;
  // For the literal prefilter: `lit` is the exact text the item matches
  // (a case-sensitive literal character), and `need` a set of strings one
  // of which every match of the item contains (empty: nothing known).
  std::string lit;
  std::vector<std::string> need;
};

struct Alternation {
  std::string text;
  Width width;
  std::vector<std::string> need;  // as Item::need, for the whole alternation
};

// The most selective "one of these must occur" set a sequence guarantees:
// runs of adjacent literals, or the set of a required sub-item. Prefers
// the set whose shortest string is longest.
std::vector<std::string> SequenceNeed(const std::vector<Item>& seq) {
  std::vector<std::string> best;
  size_t best_score = 0;
  auto consider = [&](std::vector<std::string> cand) {
    if (cand.empty()) return;
    size_t score = SIZE_MAX;
    for (const std::string& c : cand) score = std::min(score, c.size());
    if (score > best_score || (score == best_score && cand.size() < best.size())) {
      best_score = score;
      best = std::move(cand);
    }
  };
  std::string run;
  for (const Item& item : seq) {
    if (!item.lit.empty()) {
      run += item.lit;
      continue;
    }
    consider(run.empty() ? std::vector<std::string>() : std::vector<std::string>{run});
    run.clear();
    consider(item.need);
  }
  consider(run.empty() ? std::vector<std::string>() : std::vector<std::string>{run});
  return best;
}

struct Token {
  bool end = true;
  bool escaped = false;
  char32_t c = 0;

  bool Is(char32_t want) const { return !end && !escaped && c == want; }
  size_t size() const { return end ? 0 : (escaped ? 2 : 1); }
  std::u32string Str() const {
    if (end) return {};
    return escaped ? std::u32string{U'\\', c} : std::u32string{c};
  }
};

// An element of a character class before it is emitted.
struct ClassItem {
  enum Kind { kRange, kNative, kSet, kNotSet } kind = kRange;
  char32_t lo = 0, hi = 0;        // kRange
  std::string_view native;        // kNative: \d \D \w \W under Unicode
  const CpRanges* set = nullptr;  // kSet, kNotSet

  static ClassItem Range(char32_t from, char32_t to) {
    ClassItem item;
    item.lo = from;
    item.hi = to;
    return item;
  }
};

struct TranslateError {
  std::string message;
  std::optional<size_t> position;  // code point index into the parsed text
};

class PyRegexTranslator {
 public:
  PyRegexTranslator(const std::vector<char32_t>& text, int flags) : s_(text), flags_(flags) {
    Advance();
  }

  // Returns the PCRE2 pattern, or nullopt with error() set.
  std::optional<std::string> Run();

  const TranslateError& error() const { return *error_; }
  int capture_count() const { return static_cast<int>(group_names_.size()) - 1; }
  // Index 0 unused; empty for unnamed groups.
  const std::vector<std::u32string>& group_names() const { return group_names_; }
  // Strings one of which every match contains (empty: none known).
  const std::vector<std::string>& need() const { return need_; }

 private:
  std::vector<std::string> need_;
  // -- Tokenizer (re._parser.Tokenizer) --
  void Advance();
  Token Get() {
    Token t = next_;
    Advance();
    return t;
  }
  bool Match(char32_t c) {
    if (next_.Is(c)) {
      Advance();
      return true;
    }
    return false;
  }
  size_t Tell() const { return index_ - next_.size(); }
  void Seek(size_t index) {
    index_ = index;
    Advance();
  }
  bool Fail(std::string message, size_t offset = 0) {
    if (!error_) error_ = TranslateError{std::move(message), Tell() - offset};
    next_ = Token{};  // stop the parse
    index_ = s_.size();
    return false;
  }
  bool FailAt(std::string message, std::optional<size_t> position) {
    if (!error_) error_ = TranslateError{std::move(message), position};
    next_ = Token{};
    index_ = s_.size();
    return false;
  }
  bool failed() const { return error_.has_value(); }
  bool GetUntil(char32_t terminator, std::string_view what, std::u32string* result);
  bool CheckGroupName(const std::u32string& name, size_t offset);

  // -- Parser --
  bool ParseSub(const int* flags, bool verbose, int nested, Alternation* out);
  bool Parse(const int* flags, bool verbose, int nested, bool first, std::vector<Item>* seq);
  bool ParseEscape(Token escape, int flags, Item* item);
  bool ClassEscape(Token escape, ClassItem* item, int flags);
  bool ParseClass(int flags, Item* item);
  bool ParseRepeat(Token quantifier, std::vector<Item>* seq, bool* literal);
  bool ParseGroup(const int* flags, bool verbose, int nested, bool first, std::vector<Item>* seq,
                  bool* verbose_out);
  bool ParseFlags(Token first, int* add, int* del, bool* global);
  bool CheckLookbehindGroup(size_t gid);
  bool CheckGroup(size_t gid) const { return gid < group_widths_.size() && group_widths_[gid]; }

  // Octal or hex escapes shared by both contexts; sets *c or fails.
  bool NumericEscape(Token escape, std::u32string* text, char32_t* c);

  std::string EmitLiteral(char32_t c, int flags) const;
  std::string EmitClass(std::vector<ClassItem> items, bool negate, int flags) const;
  std::string EmitCategory(char32_t letter, int flags) const;

  const std::vector<char32_t>& s_;
  int flags_;  // Python's state.flags: the global flags
  size_t index_ = 0;
  Token next_;
  std::optional<TranslateError> error_;

  std::vector<std::u32string> group_names_{std::u32string()};
  std::vector<std::optional<Width>> group_widths_{std::nullopt};  // set when closed
  std::map<std::u32string, size_t> group_index_;
  std::optional<size_t> lookbehind_groups_;
  std::map<uint64_t, size_t> groupref_pos_;
  // Lookbehinds whose width is not fixed, by start: sre rejects them when
  // compiling, i.e. after any parse error and outermost first.
  std::set<size_t> bad_lookbehinds_;
};

void PyRegexTranslator::Advance() {
  size_t i = index_;
  if (i >= s_.size()) {
    next_ = Token{};
    return;
  }
  Token t;
  t.end = false;
  t.c = s_[i];
  if (t.c == '\\') {
    ++i;
    if (i >= s_.size()) {
      FailAt("bad escape (end of pattern)", s_.size() - 1);
      return;
    }
    t.escaped = true;
    t.c = s_[i];
  }
  index_ = i + 1;
  next_ = t;
}

bool PyRegexTranslator::GetUntil(char32_t terminator, std::string_view what,
                                 std::u32string* result) {
  result->clear();
  while (true) {
    const Token c = next_;
    Advance();
    if (failed()) return false;
    if (c.end) {
      if (result->empty()) return Fail("missing " + std::string(what));
      return Fail("missing " + ToUtf8(std::u32string(1, terminator)) + ", unterminated name",
                  result->size());
    }
    if (c.Is(terminator)) {
      if (result->empty()) return Fail("missing " + std::string(what), 1);
      return true;
    }
    *result += c.Str();
  }
}

bool PyRegexTranslator::CheckGroupName(const std::u32string& name, size_t offset) {
  bool ok = !name.empty() && !IsAsciiDigit(name[0]);
  bool ascii = true;
  for (char32_t c : name) {
    if (c >= 0x80) ascii = false;
    ok = ok && (IsAsciiLetter(c) || IsAsciiDigit(c) || c == '_');
  }
  if (!ascii) {
    // Python accepts Unicode identifiers; checking them needs Unicode's
    // XID tables, and no filter uses one.
    return Fail("non-ASCII group name " + PyRepr(name) + " is not supported", name.size() + offset);
  }
  if (!ok) return Fail("bad character in group name " + PyRepr(name), name.size() + offset);
  return true;
}

bool PyRegexTranslator::CheckLookbehindGroup(size_t gid) {
  if (!lookbehind_groups_) return true;
  if (!CheckGroup(gid)) return Fail("cannot refer to an open group");
  if (gid >= *lookbehind_groups_) {
    return Fail("cannot refer to group defined in the same lookbehind subpattern");
  }
  return true;
}

std::optional<std::string> PyRegexTranslator::Run() {
  Alternation top;
  ParseSub(&flags_, (flags_ & kFlagX) != 0, 0, &top);
  if (failed()) return std::nullopt;
  need_ = top.need;
  // fix_flags(): str patterns take UNICODE unless ASCII was asked for.
  if ((flags_ & kFlagA) && (flags_ & kFlagU)) {
    FailAt("ASCII and UNICODE flags are incompatible", std::nullopt);
    return std::nullopt;
  }
  if (!next_.end) {
    Fail("unbalanced parenthesis");
    return std::nullopt;
  }
  for (const auto& [group, pos] : groupref_pos_) {
    if (group >= group_names_.size()) {
      FailAt("invalid group reference " + std::to_string(group), pos);
      return std::nullopt;
    }
  }
  if (!bad_lookbehinds_.empty()) {
    FailAt("look-behind requires fixed-width pattern", *bad_lookbehinds_.begin());
    return std::nullopt;
  }
  if (flags_ & kFlagT) {
    FailAt("the (?t) TEMPLATE flag is not supported", std::nullopt);
    return std::nullopt;
  }
  const std::string letters = Pcre2FlagLetters(flags_);
  if (letters.empty()) return std::move(top.text);
  return "(?" + letters + ")" + top.text;
}

bool PyRegexTranslator::ParseSub(const int* flags, bool verbose, int nested, Alternation* out) {
  Width width{kMaxRepeat - 1, 0};
  bool any = false;
  bool need_known = true;
  out->text.clear();
  out->need.clear();
  while (true) {
    std::vector<Item> seq;
    if (!Parse(flags, verbose, nested + 1, nested == 0 && !any, &seq)) return false;
    Width w;
    if (any) out->text += '|';
    for (const Item& item : seq) {
      out->text += item.text;
      w.lo = SatAdd(w.lo, item.width.lo);
      w.hi = SatAdd(w.hi, item.width.hi);
    }
    std::vector<std::string> branch_need = SequenceNeed(seq);
    if (branch_need.empty()) need_known = false;
    if (need_known) out->need.insert(out->need.end(), branch_need.begin(), branch_need.end());
    w = CapWidth(w);
    width.lo = std::min(width.lo, w.lo);
    width.hi = std::max(width.hi, w.hi);
    any = true;
    if (!Match('|')) break;
    if (nested == 0) verbose = (flags_ & kFlagX) != 0;
  }
  out->width = width;
  if (!need_known) out->need.clear();
  // More than a few alternatives cost more to scan for than they save.
  if (out->need.size() > 8) out->need.clear();
  return !failed();
}

bool PyRegexTranslator::Parse(const int* flags, bool verbose, int nested, bool first,
                              std::vector<Item>* seq) {
  while (true) {
    if (failed()) return false;
    const Token self = next_;
    if (self.end || self.Is('|') || self.Is(')')) break;
    Advance();
    if (failed()) return false;

    if (verbose && !self.escaped) {
      if (self.c == ' ' || self.c == '\t' || self.c == '\n' || self.c == '\r' || self.c == '\v' ||
          self.c == '\f') {
        continue;
      }
      if (self.c == '#') {
        while (true) {
          const Token t = Get();
          if (failed()) return false;
          if (t.end || t.Is('\n')) break;
        }
        continue;
      }
    }

    if (self.escaped) {
      Item item;
      if (!ParseEscape(self, *flags, &item)) return false;
      // An escaped ASCII punctuation or space character is itself.
      if (!(*flags & kFlagI) && self.c < 0x80 && !IsAsciiLetter(self.c) &&
          !IsAsciiDigit(self.c) && self.c >= 0x20 && self.c != 0x7f) {
        item.lit = std::string(1, static_cast<char>(self.c));
      }
      seq->push_back(std::move(item));
      continue;
    }
    switch (self.c) {
      case '[': {
        Item item;
        if (!ParseClass(*flags, &item)) return false;
        seq->push_back(std::move(item));
        break;
      }
      case '*':
      case '+':
      case '?':
      case '{': {
        bool literal = false;
        if (!ParseRepeat(self, seq, &literal)) return false;
        if (literal) seq->push_back(Item{"\\{", {1, 1}, ItemKind::kPlain});
        break;
      }
      case '.':
        seq->push_back(Item{".", {1, 1}, ItemKind::kPlain});
        break;
      case '(': {
        bool new_verbose = verbose;
        if (!ParseGroup(flags, verbose, nested, first && seq->empty(), seq, &new_verbose)) {
          return false;
        }
        verbose = new_verbose;
        break;
      }
      case '^':
        seq->push_back(Item{"^", {0, 0}, ItemKind::kAt});
        break;
      case '$':
        seq->push_back(Item{"$", {0, 0}, ItemKind::kAt});
        break;
      default: {
        Item item{EmitLiteral(self.c, *flags), {1, 1}, ItemKind::kPlain};
        if (!(*flags & kFlagI)) AppendUtf8(&item.lit, self.c);
        seq->push_back(std::move(item));
        break;
      }
    }
  }
  return !failed();
}

bool PyRegexTranslator::NumericEscape(Token escape, std::u32string* text, char32_t* c) {
  *text = escape.Str();
  size_t digits = 0;
  if (escape.c == 'x') {
    digits = 2;
  } else if (escape.c == 'u') {
    digits = 4;
  } else if (escape.c == 'U') {
    digits = 8;
  }
  for (size_t k = 0; k < digits && !next_.end && !next_.escaped && IsHexDigit(next_.c); ++k) {
    *text += Get().c;
  }
  if (failed()) return false;
  if (text->size() != digits + 2) {
    return Fail("incomplete escape " + ToUtf8(*text), text->size());
  }
  uint64_t value = 0;
  for (size_t k = 2; k < text->size(); ++k) value = value * 16 + HexValue((*text)[k]);
  if (value > 0x10FFFF) return Fail("bad escape " + ToUtf8(*text), text->size());
  if (value >= 0xD800 && value <= 0xDFFF) {
    // Python allows a lone surrogate; no UTF-8 subject can contain one.
    return Fail("surrogate escape " + ToUtf8(*text) + " cannot match UTF-8 text", text->size());
  }
  *c = static_cast<char32_t>(value);
  return true;
}

std::string PyRegexTranslator::EmitLiteral(char32_t c, int flags) const {
  if (flags & kFlagI) {
    if (flags & kFlagA) {
      if (IsAsciiLetter(c)) {
        const char lower = static_cast<char>(c | 0x20);
        return std::string("[") + lower + static_cast<char>(lower - 'a' + 'A') + "]";
      }
    } else if (const auto* group = PyCaseGroup(c)) {
      std::string out = "[";
      for (char32_t m : *group) {
        if (m != 0) out += EscapeLiteral(m, true);
      }
      return out + "]";
    }
  }
  return EscapeLiteral(c, false);
}

std::string PyRegexTranslator::EmitCategory(char32_t letter, int flags) const {
  const bool ascii = (flags & kFlagA) != 0;
  switch (letter) {
    case 'd':
      return ascii ? "[0-9]" : "\\d";
    case 'D':
      return ascii ? "[^0-9]" : "\\D";
    case 'w':
      return ascii ? "[" + std::string(kAsciiWordBody) + "]" : "\\w";
    case 'W':
      return ascii ? "[^" + std::string(kAsciiWordBody) + "]" : "\\W";
    case 's':
      return ascii ? "[\\t-\\r ]" : "[" + std::string(kPySpaceBody) + "]";
    case 'S':
      return ascii ? "[^\\t-\\r ]" : "[^" + std::string(kPySpaceBody) + "]";
    default:
      return {};
  }
}

bool PyRegexTranslator::ParseEscape(Token escape, int flags, Item* item) {
  const char32_t c = escape.c;
  const size_t start = Tell() - 2;
  item->width = {1, 1};
  item->kind = ItemKind::kPlain;
  switch (c) {
    case 'A':
      *item = Item{"\\A", {0, 0}, ItemKind::kAt};
      return true;
    case 'Z':
      // Python's \Z is the very end, PCRE2's \z.
      *item = Item{"\\z", {0, 0}, ItemKind::kAt};
      return true;
    case 'b':
    case 'B': {
      std::string text;
      if (flags & kFlagA) {
        const std::string w = "[" + std::string(kAsciiWordBody) + "]";
        text = c == 'b' ? "(?:(?<=" + w + ")(?!" + w + ")|(?<!" + w + ")(?=" + w + "))"
                        : "(?:(?<=" + w + ")(?=" + w + ")|(?<!" + w + ")(?!" + w + "))";
      } else {
        text = c == 'b' ? "\\b" : "\\B";
      }
      // sre's \B never matches an empty string; PCRE2's does.
      if (c == 'B') text += "(?!\\A\\z)";
      *item = Item{std::move(text), {0, 0}, ItemKind::kAt};
      return true;
    }
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
      item->text = EmitCategory(c, flags);
      return true;
    case 'a':
      item->text = EmitLiteral(0x07, flags);
      return true;
    case 'f':
      item->text = EmitLiteral(0x0C, flags);
      return true;
    case 'n':
      item->text = EmitLiteral('\n', flags);
      return true;
    case 'r':
      item->text = EmitLiteral('\r', flags);
      return true;
    case 't':
      item->text = EmitLiteral('\t', flags);
      return true;
    case 'v':
      // A vertical tab in Python, "any vertical space" in PCRE2.
      item->text = EmitLiteral(0x0B, flags);
      return true;
    case 'x':
    case 'u':
    case 'U': {
      std::u32string text;
      char32_t value;
      if (!NumericEscape(escape, &text, &value)) return false;
      item->text = EmitLiteral(value, flags);
      return true;
    }
    case 'N': {
      if (!Match('{')) return Fail("missing {");
      std::u32string name;
      if (!GetUntil('}', "character name", &name)) return false;
      return FailAt("named Unicode escape \\N{" + ToUtf8(name) +
                        "} is not supported, use \\uXXXX or \\UXXXXXXXX",
                    start);
    }
    case '0': {
      std::u32string text = escape.Str();
      for (int k = 0; k < 2 && !next_.end && !next_.escaped && IsOctDigit(next_.c); ++k) {
        text += Get().c;
      }
      char32_t value = 0;
      for (size_t k = 1; k < text.size(); ++k) value = value * 8 + (text[k] - '0');
      item->text = EmitLiteral(value, flags);
      return !failed();
    }
    default:
      break;
  }
  if (IsAsciiDigit(c)) {
    // An octal escape or a group reference, by Python's rules.
    std::u32string text = escape.Str();
    if (!next_.end && !next_.escaped && IsAsciiDigit(next_.c)) {
      text += Get().c;
      if (IsOctDigit(text[1]) && IsOctDigit(text[2]) && !next_.end && !next_.escaped &&
          IsOctDigit(next_.c)) {
        text += Get().c;
        const char32_t value = (text[1] - '0') * 64 + (text[2] - '0') * 8 + (text[3] - '0');
        if (value > 0377) {
          return Fail("octal escape value " + ToUtf8(text) + " outside of range 0-0o377",
                      text.size());
        }
        item->text = EmitLiteral(value, flags);
        return !failed();
      }
    }
    size_t group = 0;
    for (size_t k = 1; k < text.size(); ++k) group = group * 10 + (text[k] - '0');
    if (group < group_names_.size()) {
      if (!CheckGroup(group)) return Fail("cannot refer to an open group", text.size());
      if (!CheckLookbehindGroup(group)) return false;
      item->text = "\\g{" + std::to_string(group) + "}";
      item->width = *group_widths_[group];
      return !failed();
    }
    return Fail("invalid group reference " + std::to_string(group), text.size() - 1);
  }
  if (c < 0x80 && IsAsciiLetter(c)) return Fail("bad escape " + ToUtf8(escape.Str()), 2);
  item->text = EmitLiteral(c, flags);
  return true;
}

bool PyRegexTranslator::ClassEscape(Token escape, ClassItem* item, int flags) {
  const char32_t c = escape.c;
  const bool ascii = (flags & kFlagA) != 0;
  auto literal = [item](char32_t value) {
    item->kind = ClassItem::kRange;
    item->lo = item->hi = value;
    return true;
  };
  switch (c) {
    case 'a':
      return literal(0x07);
    case 'b':
      return literal(0x08);
    case 'f':
      return literal(0x0C);
    case 'n':
      return literal('\n');
    case 'r':
      return literal('\r');
    case 't':
      return literal('\t');
    case 'v':
      return literal(0x0B);
    case '\\':
      return literal('\\');
    case 'd':
    case 'w':
    case 's':
    case 'D':
    case 'W':
    case 'S': {
      // Upper case is the complement of the lower-case class.
      const bool negate = c == 'D' || c == 'W' || c == 'S';
      const char lower = static_cast<char>(negate ? c - 'A' + 'a' : c);
      if (ascii || lower == 's') {
        item->kind = negate ? ClassItem::kNotSet : ClassItem::kSet;
        item->set = lower == 'd'   ? &AsciiDigits()
                    : lower == 'w' ? &AsciiWord()
                    : ascii        ? &AsciiSpaces()
                                   : &PySpaces();
      } else {
        item->kind = ClassItem::kNative;
        item->native = lower == 'd' ? (negate ? "\\D" : "\\d") : (negate ? "\\W" : "\\w");
      }
      return true;
    }
    case 'x':
    case 'u':
    case 'U': {
      std::u32string text;
      char32_t value;
      if (!NumericEscape(escape, &text, &value)) return false;
      return literal(value);
    }
    case 'N': {
      if (!Match('{')) return Fail("missing {");
      std::u32string name;
      if (!GetUntil('}', "character name", &name)) return false;
      return FailAt("named Unicode escape \\N{" + ToUtf8(name) +
                        "} is not supported, use \\uXXXX or \\UXXXXXXXX",
                    Tell() - name.size() - 4);
    }
    default:
      break;
  }
  if (IsOctDigit(c)) {
    std::u32string text = escape.Str();
    for (int k = 0; k < 2 && !next_.end && !next_.escaped && IsOctDigit(next_.c); ++k) {
      text += Get().c;
    }
    char32_t value = 0;
    for (size_t k = 1; k < text.size(); ++k) value = value * 8 + (text[k] - '0');
    if (value > 0377) {
      return Fail("octal escape value " + ToUtf8(text) + " outside of range 0-0o377", text.size());
    }
    return literal(value);
  }
  if (IsAsciiDigit(c) || IsAsciiLetter(c)) return Fail("bad escape " + ToUtf8(escape.Str()), 2);
  return literal(c);
}

bool PyRegexTranslator::ParseClass(int flags, Item* item) {
  const size_t here = Tell() - 1;
  std::vector<ClassItem> items;
  const bool negate = Match('^');
  while (true) {
    const Token self = Get();
    if (failed()) return false;
    if (self.end) return Fail("unterminated character set", Tell() - here);
    if (self.Is(']') && !items.empty()) break;
    ClassItem code1;
    if (self.escaped) {
      if (!ClassEscape(self, &code1, flags)) return false;
    } else {
      code1.kind = ClassItem::kRange;
      code1.lo = code1.hi = self.c;
    }
    if (Match('-')) {
      const Token that = Get();
      if (failed()) return false;
      if (that.end) return Fail("unterminated character set", Tell() - here);
      if (that.Is(']')) {
        items.push_back(code1);
        items.push_back(ClassItem::Range('-', '-'));
        break;
      }
      ClassItem code2;
      if (that.escaped) {
        if (!ClassEscape(that, &code2, flags)) return false;
      } else {
        code2.kind = ClassItem::kRange;
        code2.lo = code2.hi = that.c;
      }
      const std::string msg =
          "bad character range " + ToUtf8(self.Str()) + "-" + ToUtf8(that.Str());
      const size_t offset = self.size() + 1 + that.size();
      if (code1.kind != ClassItem::kRange || code2.kind != ClassItem::kRange) {
        return Fail(msg, offset);
      }
      if (code2.lo < code1.lo) return Fail(msg, offset);
      items.push_back(ClassItem::Range(code1.lo, code2.lo));
    } else {
      items.push_back(code1);
    }
  }
  *item = Item{EmitClass(std::move(items), negate, flags), {1, 1}, ItemKind::kPlain};
  return true;
}

std::string PyRegexTranslator::EmitClass(std::vector<ClassItem> items, bool negate,
                                         int flags) const {
  // Case-insensitive additions PCRE2 would not make itself.
  if (flags & kFlagI) {
    const size_t n = items.size();
    for (size_t k = 0; k < n; ++k) {
      if (items[k].kind != ClassItem::kRange) continue;
      const char32_t lo = items[k].lo, hi = items[k].hi;
      if (flags & kFlagA) {
        // ASCII-only folding: add the other case of the ASCII letters.
        const char32_t a = std::max<char32_t>(lo, 'a'), z = std::min<char32_t>(hi, 'z');
        if (a <= z) items.push_back(ClassItem::Range(a - 32, z - 32));
        const char32_t A = std::max<char32_t>(lo, 'A'), Z = std::min<char32_t>(hi, 'Z');
        if (A <= Z) items.push_back(ClassItem::Range(A + 32, Z + 32));
      } else {
        for (const auto& group : kPyCaseGroups) {
          const bool hit = std::any_of(group.begin(), group.end(),
                                       [&](char32_t m) { return m != 0 && m >= lo && m <= hi; });
          if (!hit) continue;
          for (char32_t m : group) {
            if (m != 0) items.push_back(ClassItem::Range(m, m));
          }
        }
      }
    }
  }

  auto emit_ranges = [](const CpRanges& ranges, std::string* out) {
    if (&ranges == &PySpaces()) {
      *out += kPySpaceBody;
      return;
    }
    for (const CpRange& r : ranges) {
      *out += EscapeLiteral(r.lo, true);
      if (r.hi != r.lo) *out += "-" + EscapeLiteral(r.hi, true);
    }
  };

  const bool has_complement = std::any_of(
      items.begin(), items.end(), [](const ClassItem& i) { return i.kind == ClassItem::kNotSet; });
  if (!has_complement) {
    std::string out = negate ? "[^" : "[";
    for (const ClassItem& i : items) {
      if (i.kind == ClassItem::kNative) {
        out += i.native;
      } else if (i.kind == ClassItem::kSet) {
        emit_ranges(*i.set, &out);
      } else {
        out += EscapeLiteral(i.lo, true);
        if (i.hi != i.lo) out += "-" + EscapeLiteral(i.hi, true);
      }
    }
    return out + "]";
  }

  // A class holding a complement set (\S, or \D \W under (?a)) cannot list
  // its members, but its complement is finite: the characters in every
  // complemented set that no other item covers. Those sets are Python's \s
  // or ASCII sets; Unicode \d and \w never contain a space, \D and \W always.
  CpRanges remaining;
  const CpRanges* base = nullptr;
  for (const ClassItem& i : items) {
    if (i.kind == ClassItem::kNotSet) base = i.set;
  }
  for (const CpRange& r : *base) {
    for (char32_t c = r.lo; c <= r.hi; ++c) {
      bool covered = false;
      for (const ClassItem& i : items) {
        switch (i.kind) {
          case ClassItem::kRange:
            covered = covered || (c >= i.lo && c <= i.hi);
            break;
          case ClassItem::kSet:
            covered = covered || InRanges(*i.set, c);
            break;
          case ClassItem::kNotSet:
            covered = covered || !InRanges(*i.set, c);
            break;
          case ClassItem::kNative:
            covered = covered || i.native == "\\D" || i.native == "\\W";
            break;
        }
      }
      if (covered) continue;
      if (!remaining.empty() && remaining.back().hi + 1 == c) {
        remaining.back().hi = c;
      } else {
        remaining.push_back(CpRange{c, c});
      }
    }
  }
  // Python's class is "not remaining"; negated, it is "remaining".
  if (remaining.empty()) return negate ? "[^\\d\\D]" : "[\\d\\D]";
  std::string out = negate ? "[" : "[^";
  if (remaining.size() == PySpaces().size() &&
      std::equal(remaining.begin(), remaining.end(), PySpaces().begin(),
                 [](const CpRange& a, const CpRange& b) { return a.lo == b.lo && a.hi == b.hi; })) {
    out += kPySpaceBody;
  } else {
    emit_ranges(remaining, &out);
  }
  return out + "]";
}

bool PyRegexTranslator::ParseRepeat(Token quantifier, std::vector<Item>* seq, bool* literal) {
  const size_t here = Tell();
  uint64_t min = 0, max = kMaxRepeat;
  std::string text;
  switch (quantifier.c) {
    case '?':
      max = 1;
      text = "?";
      break;
    case '*':
      text = "*";
      break;
    case '+':
      min = 1;
      text = "+";
      break;
    default: {  // '{'
      if (next_.Is('}')) {
        *literal = true;
        return true;
      }
      std::u32string lo, hi;
      while (!next_.end && !next_.escaped && IsAsciiDigit(next_.c)) lo += Get().c;
      if (Match(',')) {
        while (!next_.end && !next_.escaped && IsAsciiDigit(next_.c)) hi += Get().c;
      } else {
        hi = lo;
      }
      if (!Match('}')) {
        *literal = true;
        Seek(here);
        return !failed();
      }
      auto number = [](const std::u32string& digits) {
        uint64_t v = 0;
        for (char32_t d : digits) v = std::min<uint64_t>(v * 10 + (d - '0'), kSaturate);
        return v;
      };
      if (!lo.empty()) {
        min = number(lo);
        if (min >= kMaxRepeat) return FailAt("the repetition number is too large", here - 1);
      }
      if (!hi.empty()) {
        max = number(hi);
        if (max >= kMaxRepeat) return FailAt("the repetition number is too large", here - 1);
        if (max < min) return Fail("min repeat greater than max repeat", Tell() - here);
      }
      text = "{" + std::to_string(min);
      if (max != min) text += max == kMaxRepeat ? "," : "," + std::to_string(max);
      text += "}";
      break;
    }
  }
  if (seq->empty() || seq->back().kind == ItemKind::kAt) {
    return Fail("nothing to repeat", Tell() - here + quantifier.size());
  }
  if (seq->back().kind == ItemKind::kRepeat) {
    return Fail("multiple repeat", Tell() - here + quantifier.size());
  }
  if (min > kPcre2MaxRepeat || (max != kMaxRepeat && max > kPcre2MaxRepeat)) {
    return FailAt("repetition count above PCRE2's limit of 65535", here - 1);
  }
  if (Match('?')) {
    text += '?';
  } else if (Match('+')) {
    text += '+';
  }
  Item& item = seq->back();
  item.text += text;
  item.width = {SatMul(item.width.lo, min), SatMul(item.width.hi, max)};
  item.kind = ItemKind::kRepeat;
  if (min == 0) {
    item.need.clear();
  } else if (!item.lit.empty()) {
    item.need = {item.lit};
  }
  item.lit.clear();
  return !failed();
}

bool PyRegexTranslator::ParseFlags(Token self, int* add, int* del, bool* global) {
  *add = 0;
  *del = 0;
  *global = false;
  Token c = self;
  if (!c.Is('-')) {
    while (true) {
      const int flag = FlagBit(c.c);
      if (flag == kFlagL) return Fail("bad inline flags: cannot use 'L' flag with a str pattern");
      *add |= flag;
      if ((flag & kTypeFlags) && (*add & kTypeFlags) != flag) {
        return Fail("bad inline flags: flags 'a', 'u' and 'L' are incompatible");
      }
      c = Get();
      if (failed()) return false;
      if (c.end) return Fail("missing -, : or )");
      if (c.Is(')') || c.Is('-') || c.Is(':')) break;
      if (c.escaped || FlagBit(c.c) == 0) {
        const bool alpha = !c.escaped && (IsAsciiLetter(c.c) || c.c >= 0x80);
        return Fail(alpha ? "unknown flag" : "missing -, : or )", c.size());
      }
    }
  }
  if (c.Is(')')) {
    *global = true;
    return true;
  }
  if (*add & kFlagT) return Fail("bad inline flags: cannot turn on global flag", 1);
  if (c.Is('-')) {
    c = Get();
    if (failed()) return false;
    if (c.end) return Fail("missing flag");
    if (c.escaped || FlagBit(c.c) == 0) {
      const bool alpha = !c.escaped && (IsAsciiLetter(c.c) || c.c >= 0x80);
      return Fail(alpha ? "unknown flag" : "missing flag", c.size());
    }
    while (true) {
      const int flag = FlagBit(c.c);
      if (flag & kTypeFlags) {
        return Fail("bad inline flags: cannot turn off flags 'a', 'u' and 'L'");
      }
      *del |= flag;
      c = Get();
      if (failed()) return false;
      if (c.end) return Fail("missing :");
      if (c.Is(':')) break;
      if (c.escaped || FlagBit(c.c) == 0) {
        const bool alpha = !c.escaped && (IsAsciiLetter(c.c) || c.c >= 0x80);
        return Fail(alpha ? "unknown flag" : "missing :", c.size());
      }
    }
  }
  if (*del & kFlagT) return Fail("bad inline flags: cannot turn off global flag", 1);
  if (*add & *del) return Fail("bad inline flags: flag turned on and off", 1);
  return true;
}

bool PyRegexTranslator::ParseGroup(const int* flags, bool verbose, int nested, bool first,
                                   std::vector<Item>* seq, bool* verbose_out) {
  const size_t start = Tell() - 1;
  bool capture = true;
  bool atomic = false;
  std::optional<std::u32string> name;
  int add = 0, del = 0;
  if (Match('?')) {
    const Token c = Get();
    if (failed()) return false;
    if (c.end) return Fail("unexpected end of pattern");
    if (c.Is('P')) {
      if (Match('<')) {
        name.emplace();
        if (!GetUntil('>', "group name", &*name)) return false;
        if (!CheckGroupName(*name, 1)) return false;
      } else if (Match('=')) {
        std::u32string ref;
        if (!GetUntil(')', "group name", &ref)) return false;
        if (!CheckGroupName(ref, 1)) return false;
        const auto it = group_index_.find(ref);
        if (it == group_index_.end()) {
          return Fail("unknown group name " + PyRepr(ref), ref.size() + 1);
        }
        if (!CheckGroup(it->second)) return Fail("cannot refer to an open group", ref.size() + 1);
        if (!CheckLookbehindGroup(it->second)) return false;
        seq->push_back(Item{"\\g{" + std::to_string(it->second) + "}", *group_widths_[it->second],
                            ItemKind::kPlain});
        return true;
      } else {
        const Token d = Get();
        if (failed()) return false;
        if (d.end) return Fail("unexpected end of pattern");
        return Fail("unknown extension ?P" + ToUtf8(d.Str()), d.size() + 2);
      }
    } else if (c.Is(':')) {
      capture = false;
    } else if (c.Is('#')) {
      while (true) {
        if (next_.end) return Fail("missing ), unterminated comment", Tell() - start);
        const Token t = Get();
        if (failed()) return false;
        if (t.Is(')')) break;
      }
      return true;  // comments leave nothing behind
    } else if (c.Is('=') || c.Is('!') || c.Is('<')) {
      bool behind = false;
      Token kind = c;
      std::optional<size_t> saved_lookbehind = lookbehind_groups_;
      if (c.Is('<')) {
        kind = Get();
        if (failed()) return false;
        if (kind.end) return Fail("unexpected end of pattern");
        if (!kind.Is('=') && !kind.Is('!')) {
          return Fail("unknown extension ?<" + ToUtf8(kind.Str()), kind.size() + 2);
        }
        behind = true;
        if (!lookbehind_groups_) lookbehind_groups_ = group_names_.size();
      }
      Alternation body;
      if (!ParseSub(flags, verbose, nested + 1, &body)) return false;
      if (behind && !saved_lookbehind) lookbehind_groups_.reset();
      if (!Match(')')) return Fail("missing ), unterminated subpattern", Tell() - start);
      if (behind && body.width.lo != body.width.hi) bad_lookbehinds_.insert(start);
      std::string text = "(?";
      if (behind) text += '<';
      text += kind.Is('=') ? '=' : '!';
      seq->push_back(Item{text + body.text + ")", {0, 0}, ItemKind::kPlain});
      return true;
    } else if (c.Is('(')) {
      std::u32string cond;
      if (!GetUntil(')', "group name", &cond)) return false;
      size_t group = 0;
      const bool identifier =
          !cond.empty() && !IsAsciiDigit(cond[0]) &&
          std::all_of(cond.begin(), cond.end(), [](char32_t ch) {
            return IsAsciiLetter(ch) || IsAsciiDigit(ch) || ch == '_' || ch >= 0x80;
          });
      if (identifier) {
        if (!CheckGroupName(cond, 1)) return false;
        const auto it = group_index_.find(cond);
        if (it == group_index_.end()) {
          return Fail("unknown group name " + PyRepr(cond), cond.size() + 1);
        }
        group = it->second;
      } else {
        // Python's int() also takes " 1", "+1", "1_0" and non-ASCII digits
        // here (deprecated); we take plain ASCII digits only.
        if (cond.empty() || !std::all_of(cond.begin(), cond.end(), IsAsciiDigit)) {
          return Fail("bad character in group name " + PyRepr(cond), cond.size() + 1);
        }
        uint64_t v = 0;
        for (char32_t d : cond) v = std::min<uint64_t>(v * 10 + (d - '0'), kSaturate);
        if (v == 0) return Fail("bad group number", cond.size() + 1);
        if (v >= kMaxGroups) {
          return Fail("invalid group reference " + ToUtf8(cond), cond.size() + 1);
        }
        group = static_cast<size_t>(v);
        groupref_pos_.try_emplace(v, Tell() - cond.size() - 1);
      }
      if (!CheckLookbehindGroup(group)) return false;
      std::vector<Item> yes, no;
      if (!Parse(flags, verbose, nested + 1, false, &yes)) return false;
      bool has_no = false;
      if (Match('|')) {
        has_no = true;
        if (!Parse(flags, verbose, nested + 1, false, &no)) return false;
        if (next_.Is('|')) return Fail("conditional backref with more than two branches");
      }
      if (!Match(')')) return Fail("missing ), unterminated subpattern", Tell() - start);
      auto join = [](const std::vector<Item>& items, Width* w) {
        std::string text;
        for (const Item& i : items) {
          text += i.text;
          w->lo = SatAdd(w->lo, i.width.lo);
          w->hi = SatAdd(w->hi, i.width.hi);
        }
        *w = CapWidth(*w);
        return text;
      };
      Width wy, wn;
      std::string text = "(?(" + std::to_string(group) + ")" + join(yes, &wy);
      Width width = wy;
      if (has_no) {
        text += "|" + join(no, &wn);
        width = {std::min(wy.lo, wn.lo), std::max(wy.hi, wn.hi)};
      } else {
        width.lo = 0;
      }
      seq->push_back(Item{text + ")", width, ItemKind::kPlain});
      return true;
    } else if (c.Is('>')) {
      capture = false;
      atomic = true;
    } else if (!c.escaped && (FlagBit(c.c) != 0 || c.c == '-')) {
      bool global = false;
      if (!ParseFlags(c, &add, &del, &global)) return false;
      if (global) {
        if (!first) {
          return Fail("global flags not at the start of the expression", Tell() - start);
        }
        flags_ |= add;  // *flags aliases flags_ at the top level
        *verbose_out = (flags_ & kFlagX) != 0;
        return true;
      }
      capture = false;
    } else {
      return Fail("unknown extension ?" + ToUtf8(c.Str()), c.size() + 1);
    }
  }

  size_t group = 0;
  if (capture) {
    group = group_names_.size();
    if (group >= kMaxGroups) return Fail("too many groups");
    if (name) {
      const auto [it, inserted] = group_index_.emplace(*name, group);
      if (!inserted) {
        return Fail("redefinition of group name " + PyRepr(*name) + " as group " +
                        std::to_string(group) + "; was group " + std::to_string(it->second),
                    name->size() + 1);
      }
    }
    group_names_.push_back(name ? *name : std::u32string());
    group_widths_.push_back(std::nullopt);
  }
  const int child_flags = CombineFlags(*flags, add, del);
  const bool sub_verbose = (verbose || (add & kFlagX)) && !(del & kFlagX);
  Alternation body;
  if (!ParseSub(&child_flags, sub_verbose, nested + 1, &body)) return false;
  if (!Match(')')) return Fail("missing ), unterminated subpattern", Tell() - start);
  if (capture) group_widths_[group] = body.width;

  std::string open;
  if (capture) {
    // PCRE2 names are ASCII, at most 32 long; longer ones stay unnamed in
    // PCRE2, numbering is the same and FailRegex keeps Python's names.
    if (name && name->size() <= 32) {
      open = "(?P<" + ToUtf8(*name) + ">";
    } else {
      open = "(";
    }
  } else if (atomic) {
    open = "(?>";
  } else {
    const std::string before = Pcre2FlagLetters(*flags);
    const std::string after = Pcre2FlagLetters(child_flags);
    std::string on, off;
    for (char f : after) {
      if (before.find(f) == std::string::npos) on += f;
    }
    for (char f : before) {
      if (after.find(f) == std::string::npos) off += f;
    }
    open = "(?" + on + (off.empty() ? "" : "-" + off) + ":";
  }
  Item group_item{open + body.text + ")", body.width, ItemKind::kPlain};
  group_item.need = std::move(body.need);
  seq->push_back(std::move(group_item));
  return true;
}

// ---------------------------------------------------------------------------

struct Translation {
  std::string pattern;
  std::vector<std::string> need;
  int capture_count = 0;
  std::vector<FailRegexGroup> groups;  // sorted by name
};

constexpr std::string_view kFailureIdGroups[] = {"fid", "ip4", "ip6", "dns", "mlfid"};

bool HasFailureId(const std::vector<FailRegexGroup>& groups) {
  return std::any_of(groups.begin(), groups.end(), [](const FailRegexGroup& g) {
    return std::find(std::begin(kFailureIdGroups), std::end(kFailureIdGroups), g.name) !=
           std::end(kFailureIdGroups);
  });
}

Result<Translation> Translate(std::string_view regex, RegexKind kind,
                              const FailRegexOptions& options) {
  {
    std::vector<char32_t> cps;
    std::vector<size_t> starts;
    const size_t bad = DecodeUtf8(regex, &cps, &starts);
    if (bad != std::string_view::npos) {
      return Status::Error("invalid UTF-8 at offset " + std::to_string(bad));
    }
  }
  // Date templates are plain Python regexes: no tags, no flag rewriting.
  const bool plain = kind == RegexKind::kDateRegex;
  MappedText tagged;
  if (plain) {
    for (size_t i = 0; i < regex.size(); ++i) tagged.Append(regex.substr(i, 1), i);
    tagged.Finish(regex.size());
  } else {
    tagged = ResolveTags(regex, options.host_matches_dns);
  }
  std::vector<char32_t> cps;
  std::vector<size_t> starts;
  DecodeUtf8(tagged.text, &cps, &starts);  // valid: tags are ASCII
  if (!plain && std::all_of(cps.begin(), cps.end(), IsPySpace)) {
    return Status::Error("cannot add empty regex");
  }
  const MappedText text = plain ? tagged : GlobalToLocalFlags(tagged);
  cps.clear();
  starts.clear();
  DecodeUtf8(text.text, &cps, &starts);

  const bool multiline = kind == RegexKind::kFailRegex && options.maxlines > 1;
  PyRegexTranslator translator(cps, multiline ? kFlagM : 0);
  std::optional<std::string> pattern = translator.Run();
  if (!pattern) {
    const TranslateError& e = translator.error();
    if (!e.position) return Status::Error(e.message);
    const size_t byte = starts[std::min(*e.position, starts.size() - 1)];
    return Status::Error(e.message + " at offset " + std::to_string(text.origin[byte]));
  }

  Translation t;
  t.pattern = std::move(*pattern);
  t.capture_count = translator.capture_count();
  t.need = translator.need();
  const auto& names = translator.group_names();
  for (size_t i = 1; i < names.size(); ++i) {
    if (!names[i].empty()) t.groups.push_back({ToUtf8(names[i]), static_cast<int>(i)});
  }
  std::sort(t.groups.begin(), t.groups.end(),
            [](const FailRegexGroup& a, const FailRegexGroup& b) { return a.name < b.name; });
  if (kind == RegexKind::kFailRegex && !options.prefregex_has_failure_id &&
      !HasFailureId(t.groups)) {
    return Status::Error(
        "no failure-id group in failregex: it needs <HOST>, <ADDR>, <IP4>, <IP6>, <DNS>, "
        "<F-ID> or <F-MLFID> (or a prefregex with one)");
  }
  return t;
}

std::string Pcre2ErrorMessage(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) {
    return "PCRE2 error " + std::to_string(code);
  }
  return reinterpret_cast<const char*>(buf);
}

std::string CompileContext(std::string_view regex, RegexKind kind) {
  return "cannot compile " + std::string(RegexKindName(kind)) + " '" + std::string(regex) + "': ";
}

}  // namespace

std::string_view RegexKindName(RegexKind kind) {
  switch (kind) {
    case RegexKind::kPrefRegex:
      return "prefregex";
    case RegexKind::kFailRegex:
      return "failregex";
    case RegexKind::kIgnoreRegex:
      return "ignoreregex";
    case RegexKind::kDateRegex:
      return "datepattern";
  }
  return "regex";
}

std::string ExpandFailRegexTags(std::string_view regex, const FailRegexOptions& options) {
  return GlobalToLocalFlags(ResolveTags(regex, options.host_matches_dns)).text;
}

Result<std::string> TranslateFailRegex(std::string_view regex, RegexKind kind) {
  return TranslateFailRegex(regex, kind, FailRegexOptions());
}

Result<std::string> TranslateFailRegex(std::string_view regex, RegexKind kind,
                                       const FailRegexOptions& options) {
  Result<Translation> t = Translate(regex, kind, options);
  if (!t.ok()) return t.status();
  return std::move(t->pattern);
}

Status CheckFailRegex(std::string_view regex, RegexKind kind) {
  return CheckFailRegex(regex, kind, FailRegexOptions());
}

Status CheckFailRegex(std::string_view regex, RegexKind kind, const FailRegexOptions& options) {
  // Compiled as a date template is: without JIT code, which a check does
  // not need.
  Result<FailRegex> compiled = FailRegex::CompileNoJit(regex, kind, options);
  if (!compiled.ok()) return compiled.status();
  return Status::Ok();
}

// ---------------------------------------------------------------------------

Result<FailRegex> FailRegex::Compile(std::string_view regex, RegexKind kind,
                                     const FailRegexOptions& options) {
  Result<FailRegex> re = CompileNoJit(regex, kind, options);
  if (re.ok() && kind != RegexKind::kDateRegex) re->CompileJit();
  return re;
}

Result<FailRegex> FailRegex::CompileNoJit(std::string_view regex, RegexKind kind,
                                          const FailRegexOptions& options) {
  Result<Translation> t = Translate(regex, kind, options);
  if (!t.ok()) return Status::Error(CompileContext(regex, kind) + t.status().message());

  pcre2_compile_context* context = pcre2_compile_context_create(nullptr);
  if (context == nullptr) return Status::Error(CompileContext(regex, kind) + "out of memory");
  // Python's only line terminator is "\n" (for ., ^ and $ alike).
  pcre2_set_newline(context, PCRE2_NEWLINE_LF);
  // UCP: Unicode \d \w \b like Python str patterns. MATCH_INVALID_UTF: bad
  // bytes in a log line simply never match. ALT_CIRCUMFLEX: Python's
  // multi-line ^ also matches after a final "\n".
  const uint32_t options_mask = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_BACKSLASH_C;
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(t->pattern.data()),
                                       t->pattern.size(), options_mask, &code, &offset, context);
  pcre2_compile_context_free(context);
  if (compiled == nullptr) {
    return Status::Error(CompileContext(regex, kind) + "PCRE2: " + Pcre2ErrorMessage(code) +
                         " at offset " + std::to_string(offset) + " of '" + t->pattern + "'");
  }
  uint32_t captures = 0;
  pcre2_pattern_info(compiled, PCRE2_INFO_CAPTURECOUNT, &captures);
  if (static_cast<int>(captures) != t->capture_count) {
    pcre2_code_free(compiled);
    return Status::Error(CompileContext(regex, kind) +
                         "internal error: group count differs after translation");
  }

  FailRegex re;
  re.regex_ = std::string(regex);
  re.pattern_ = std::move(t->pattern);
  re.kind_ = kind;
  re.capture_count_ = t->capture_count;
  re.groups_ = std::move(t->groups);
  for (std::string& lit : t->need) re.required_.emplace_back(std::move(lit));
  re.code_ = compiled;
  return re;
}

void FailRegex::CompileJit() const {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (jit_state_.load(std::memory_order_relaxed) != 0) return;
  // Without JIT support PCRE2's interpreter gives the same results, slower.
  (void)pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  jit_state_.store(1, std::memory_order_release);
}

FailRegex::FailRegex(FailRegex&& other) noexcept { *this = std::move(other); }

FailRegex& FailRegex::operator=(FailRegex&& other) noexcept {
  if (this != &other) {
    if (code_ != nullptr) pcre2_code_free(code_);
    regex_ = std::move(other.regex_);
    pattern_ = std::move(other.pattern_);
    kind_ = other.kind_;
    capture_count_ = other.capture_count_;
    groups_ = std::move(other.groups_);
    required_ = std::move(other.required_);
    code_ = std::exchange(other.code_, nullptr);
    jit_state_.store(other.jit_state_.load(std::memory_order_acquire), std::memory_order_release);
  }
  return *this;
}

FailRegex::~FailRegex() {
  if (code_ != nullptr) pcre2_code_free(code_);
}

namespace {

// How common a byte is in log text (higher: more common); the rarest byte
// of a literal is the one memchr() looks for.
int Commonness(unsigned char c) {
  if (c == ' ') return 10;
  if (std::strchr("etaoinsrhl", c) != nullptr && c != 0) return 9;
  if (c >= '0' && c <= '9') return 8;
  if (c >= 'a' && c <= 'z') return 7;
  if (std::strchr(":.[]-/=,_'\"()", c) != nullptr && c != 0) return 6;
  if (c >= 'A' && c <= 'Z') return 5;
  return 4;
}

}  // namespace

FailRegex::RequiredLiteral::RequiredLiteral(std::string t) : text(std::move(t)) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (Commonness(static_cast<unsigned char>(text[i])) <=
        Commonness(static_cast<unsigned char>(text[anchor]))) {
      anchor = i;
    }
  }
}

bool FailRegex::RequiredLiteral::FoundIn(std::string_view hay) const {
  if (text.size() > hay.size()) return false;
  const char a = text[anchor];
  const char* p = hay.data() + anchor;
  const char* const last = hay.data() + (hay.size() - text.size()) + anchor;
  while (p <= last) {
    p = static_cast<const char*>(std::memchr(p, a, static_cast<size_t>(last - p) + 1));
    if (p == nullptr) return false;
    const char* start = p - anchor;
    // First and last byte inline before the call: most candidates fail there.
    if (start[0] == text[0] && start[text.size() - 1] == text.back() &&
        std::memcmp(start, text.data(), text.size()) == 0) {
      return true;
    }
    ++p;
  }
  return false;
}

int FailRegex::GroupIndex(std::string_view name) const {
  const auto it = std::lower_bound(
      groups_.begin(), groups_.end(), name,
      [](const FailRegexGroup& g, std::string_view n) { return std::string_view(g.name) < n; });
  return it != groups_.end() && it->name == name ? it->index : -1;
}

bool FailRegex::HasFailureIdGroup() const { return HasFailureId(groups_); }

Result<bool> FailRegex::Search(std::string_view subject, FailRegexMatch* match) const {
  return Search(subject, 0, match);
}

Result<bool> FailRegex::Search(std::string_view subject, size_t start_offset,
                               FailRegexMatch* match) const {
  match->matched_ = false;
  if (start_offset > subject.size()) return false;
  // Literal prefilter: a line without any of the required strings cannot
  // match, and memmem() is far cheaper than starting the matcher.
  if (!required_.empty()) {
    const std::string_view rest = subject.substr(start_offset);
    bool found = false;
    for (const RequiredLiteral& lit : required_) {
      if (lit.FoundIn(rest)) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  match->subject_ = subject;
  const uint32_t pairs = static_cast<uint32_t>(capture_count_) + 1;
  if (!match->Reserve(pairs)) return Status::Error("out of memory for regex match data");
  if (jit_state_.load(std::memory_order_acquire) == 0) CompileJit();
  // PCRE2 wants a non-null pointer even for an empty subject.
  const char* data = subject.data() != nullptr ? subject.data() : "";
  int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(data), subject.size(), start_offset, 0,
                       match->data_, match->context_);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT && match->GrowJitStack()) {
    rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(data), subject.size(), start_offset, 0,
                     match->data_, match->context_);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    return Status::Error("cannot match " + std::string(RegexKindName(kind_)) + " '" + regex_ +
                         "': " + Pcre2ErrorMessage(rc));
  }
  match->matched_ = true;
  match->used_pairs_ = pairs;
  return true;
}

FailRegexMatch::FailRegexMatch() = default;

FailRegexMatch::~FailRegexMatch() {
  if (data_ != nullptr) pcre2_match_data_free(data_);
  if (context_ != nullptr) pcre2_match_context_free(context_);
  if (jit_stack_ != nullptr) pcre2_jit_stack_free(jit_stack_);
}

bool FailRegexMatch::Reserve(uint32_t pairs) {
  if (context_ == nullptr) {
    context_ = pcre2_match_context_create(nullptr);
    if (context_ == nullptr) return false;
  }
  if (data_ != nullptr && pairs_ >= pairs) return true;
  if (data_ != nullptr) pcre2_match_data_free(data_);
  data_ = pcre2_match_data_create(pairs, nullptr);
  pairs_ = data_ != nullptr ? pairs : 0;
  return data_ != nullptr;
}

bool FailRegexMatch::GrowJitStack() {
  // PCRE2's default 32 KiB JIT stack (on the machine stack) is too small for
  // multi-line buffers scanned with <SKIPLINES>-style lazy loops. The big one
  // is made only when a match needs it: creating it maps 1 MiB, and freeing
  // it unmaps that (a TLB shootdown on every CPU), which cost ~10 ms of
  // bantamd's start-up when every short-lived FailRegexMatch (date template
  // set-up makes hundreds) had its own.
  if (jit_stack_ != nullptr || context_ == nullptr) return false;
  jit_stack_ = pcre2_jit_stack_create(size_t{32} << 10, size_t{1} << 20, nullptr);
  if (jit_stack_ == nullptr) return false;
  pcre2_jit_stack_assign(context_, nullptr, jit_stack_);
  return true;
}

size_t FailRegexMatch::start() const { return matched_ ? pcre2_get_ovector_pointer(data_)[0] : 0; }

size_t FailRegexMatch::end() const { return matched_ ? pcre2_get_ovector_pointer(data_)[1] : 0; }

std::optional<std::string_view> FailRegexMatch::Group(int index) const {
  if (!matched_ || index < 0 || static_cast<uint32_t>(index) >= used_pairs_) return std::nullopt;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
  const size_t pair = static_cast<size_t>(index) * 2;
  const PCRE2_SIZE begin = ov[pair], end = ov[pair + 1];
  if (begin == PCRE2_UNSET || end < begin) return std::nullopt;
  return subject_.substr(begin, end - begin);
}

}  // namespace bantam
