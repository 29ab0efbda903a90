#include "bantam/regex_translate.h"

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

namespace bantam {
namespace {

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
// The parser: the structure, checks and messages of Python 3.11's
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

// What a group's "(?...)" prefix asks for, when it opens a group.
struct GroupKind {
  bool capture = true;
  bool atomic = false;
  std::optional<std::u32string> name;  // (?P<name>...)
  int add = 0, del = 0;                // (?flags-flags:...)
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
  // A group after its "(": an extension item, or a (capturing) group.
  bool ParseGroup(const int* flags, bool verbose, int nested, bool first, std::vector<Item>* seq,
                  bool* verbose_out);
  // What "(?X" made of the group ParseGroup reads on.
  enum class Extension { kFailed, kDone, kGroup };
  Extension ParseExtension(const int* flags, bool verbose, int nested, bool first, size_t start,
                           std::vector<Item>* seq, bool* verbose_out, GroupKind* kind);
  Extension ParsePExtension(std::vector<Item>* seq, GroupKind* kind);
  bool ParseNamedBackref(std::vector<Item>* seq);
  bool SkipComment(size_t start);
  bool ParseLookaround(Token c, const int* flags, bool verbose, int nested, size_t start,
                       std::vector<Item>* seq);
  bool ParseConditional(const int* flags, bool verbose, int nested, size_t start,
                        std::vector<Item>* seq);
  bool ParseConditionGroup(size_t* group);
  bool ParseGroupBody(const int* flags, bool verbose, int nested, size_t start,
                      const GroupKind& kind, std::vector<Item>* seq);
  std::string GroupOpening(const GroupKind& kind, int flags, int child_flags) const;
  bool ParseFlags(Token first, int* add, int* del, bool* global);
  bool CheckLookbehindGroup(size_t gid);
  bool CheckGroup(size_t gid) const { return gid < group_widths_.size() && group_widths_[gid]; }

  // Octal or hex escapes shared by both contexts; sets *c or fails.
  bool NumericEscape(Token escape, std::u32string* text, char32_t* c);
  // \N{name} after its "\N", in both contexts: refused (Python looks the
  // name up in Unicode's tables). The error points at `at`, or (nullopt)
  // at the backslash reckoned back from the end of the name.
  bool RefuseNamedEscape(std::optional<size_t> at);

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
      if (!(*flags & kFlagI) && self.c < 0x80 && !IsAsciiLetter(self.c) && !IsAsciiDigit(self.c) &&
          self.c >= 0x20 && self.c != 0x7f) {
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

bool PyRegexTranslator::RefuseNamedEscape(std::optional<size_t> at) {
  if (!Match('{')) return Fail("missing {");
  std::u32string name;
  if (!GetUntil('}', "character name", &name)) return false;
  return FailAt(
      "named Unicode escape \\N{" + ToUtf8(name) + "} is not supported, use \\uXXXX or \\UXXXXXXXX",
      at ? *at : Tell() - name.size() - 4);
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
    case 'N':
      return RefuseNamedEscape(start);
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
    case 'N':
      return RefuseNamedEscape(std::nullopt);
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
  GroupKind kind;
  if (Match('?')) {
    switch (ParseExtension(flags, verbose, nested, first, start, seq, verbose_out, &kind)) {
      case Extension::kFailed:
        return false;
      case Extension::kDone:
        return true;
      case Extension::kGroup:
        break;
    }
  }
  return ParseGroupBody(flags, verbose, nested, start, kind, seq);
}

PyRegexTranslator::Extension PyRegexTranslator::ParseExtension(const int* flags, bool verbose,
                                                               int nested, bool first, size_t start,
                                                               std::vector<Item>* seq,
                                                               bool* verbose_out, GroupKind* kind) {
  auto done = [](bool ok) { return ok ? Extension::kDone : Extension::kFailed; };
  const Token c = Get();
  if (failed()) return Extension::kFailed;
  if (c.end) return done(Fail("unexpected end of pattern"));
  if (c.Is('P')) return ParsePExtension(seq, kind);
  if (c.Is(':')) {
    kind->capture = false;
    return Extension::kGroup;
  }
  if (c.Is('#')) return done(SkipComment(start));
  if (c.Is('=') || c.Is('!') || c.Is('<')) {
    return done(ParseLookaround(c, flags, verbose, nested, start, seq));
  }
  if (c.Is('(')) return done(ParseConditional(flags, verbose, nested, start, seq));
  if (c.Is('>')) {
    kind->capture = false;
    kind->atomic = true;
    return Extension::kGroup;
  }
  if (!c.escaped && (FlagBit(c.c) != 0 || c.c == '-')) {
    bool global = false;
    if (!ParseFlags(c, &kind->add, &kind->del, &global)) return Extension::kFailed;
    if (global) {
      if (!first) {
        return done(Fail("global flags not at the start of the expression", Tell() - start));
      }
      flags_ |= kind->add;  // *flags aliases flags_ at the top level
      *verbose_out = (flags_ & kFlagX) != 0;
      return Extension::kDone;
    }
    kind->capture = false;
    return Extension::kGroup;
  }
  return done(Fail("unknown extension ?" + ToUtf8(c.Str()), c.size() + 1));
}

// (?P<name>...) and (?P=name).
PyRegexTranslator::Extension PyRegexTranslator::ParsePExtension(std::vector<Item>* seq,
                                                                GroupKind* kind) {
  if (Match('<')) {
    kind->name.emplace();
    if (!GetUntil('>', "group name", &*kind->name)) return Extension::kFailed;
    if (!CheckGroupName(*kind->name, 1)) return Extension::kFailed;
    return Extension::kGroup;
  }
  if (Match('=')) return ParseNamedBackref(seq) ? Extension::kDone : Extension::kFailed;
  const Token d = Get();
  if (failed()) return Extension::kFailed;
  if (d.end) {
    Fail("unexpected end of pattern");
  } else {
    Fail("unknown extension ?P" + ToUtf8(d.Str()), d.size() + 2);
  }
  return Extension::kFailed;
}

bool PyRegexTranslator::ParseNamedBackref(std::vector<Item>* seq) {
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
}

// (?#...): comments leave nothing behind.
bool PyRegexTranslator::SkipComment(size_t start) {
  while (true) {
    if (next_.end) return Fail("missing ), unterminated comment", Tell() - start);
    const Token t = Get();
    if (failed()) return false;
    if (t.Is(')')) return true;
  }
}

// (?=...), (?!...), (?<=...), (?<!...) after their "(?" and first letter `c`.
bool PyRegexTranslator::ParseLookaround(Token c, const int* flags, bool verbose, int nested,
                                        size_t start, std::vector<Item>* seq) {
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
}

// The "name)" or "number)" of (?(...)yes|no): the group it tests.
bool PyRegexTranslator::ParseConditionGroup(size_t* group) {
  std::u32string cond;
  if (!GetUntil(')', "group name", &cond)) return false;
  const bool identifier = !cond.empty() && !IsAsciiDigit(cond[0]) &&
                          std::all_of(cond.begin(), cond.end(), [](char32_t ch) {
                            return IsAsciiLetter(ch) || IsAsciiDigit(ch) || ch == '_' || ch >= 0x80;
                          });
  if (identifier) {
    if (!CheckGroupName(cond, 1)) return false;
    const auto it = group_index_.find(cond);
    if (it == group_index_.end()) {
      return Fail("unknown group name " + PyRepr(cond), cond.size() + 1);
    }
    *group = it->second;
    return true;
  }
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
  *group = static_cast<size_t>(v);
  groupref_pos_.try_emplace(v, Tell() - cond.size() - 1);
  return true;
}

// (?(group)yes|no) after its "(?(".
bool PyRegexTranslator::ParseConditional(const int* flags, bool verbose, int nested, size_t start,
                                         std::vector<Item>* seq) {
  size_t group = 0;
  if (!ParseConditionGroup(&group)) return false;
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
}

// The group's body up to its ")", as `kind` asks; the group's number is
// taken before the body is parsed, as Python does.
bool PyRegexTranslator::ParseGroupBody(const int* flags, bool verbose, int nested, size_t start,
                                       const GroupKind& kind, std::vector<Item>* seq) {
  size_t group = 0;
  if (kind.capture) {
    group = group_names_.size();
    if (group >= kMaxGroups) return Fail("too many groups");
    if (kind.name) {
      const auto [it, inserted] = group_index_.emplace(*kind.name, group);
      if (!inserted) {
        return Fail("redefinition of group name " + PyRepr(*kind.name) + " as group " +
                        std::to_string(group) + "; was group " + std::to_string(it->second),
                    kind.name->size() + 1);
      }
    }
    group_names_.push_back(kind.name ? *kind.name : std::u32string());
    group_widths_.push_back(std::nullopt);
  }
  const int child_flags = CombineFlags(*flags, kind.add, kind.del);
  const bool sub_verbose = (verbose || (kind.add & kFlagX)) && !(kind.del & kFlagX);
  Alternation body;
  if (!ParseSub(&child_flags, sub_verbose, nested + 1, &body)) return false;
  if (!Match(')')) return Fail("missing ), unterminated subpattern", Tell() - start);
  if (kind.capture) group_widths_[group] = body.width;

  Item group_item{GroupOpening(kind, *flags, child_flags) + body.text + ")", body.width,
                  ItemKind::kPlain};
  group_item.need = std::move(body.need);
  seq->push_back(std::move(group_item));
  return true;
}

std::string PyRegexTranslator::GroupOpening(const GroupKind& kind, int flags,
                                            int child_flags) const {
  if (kind.capture) {
    // PCRE2 names are ASCII, at most 32 long; longer ones stay unnamed in
    // PCRE2, numbering is the same and FailRegex keeps Python's names.
    if (kind.name && kind.name->size() <= 32) return "(?P<" + ToUtf8(*kind.name) + ">";
    return "(";
  }
  if (kind.atomic) return "(?>";
  const std::string before = Pcre2FlagLetters(flags);
  const std::string after = Pcre2FlagLetters(child_flags);
  std::string on, off;
  for (char f : after) {
    if (before.find(f) == std::string::npos) on += f;
  }
  for (char f : before) {
    if (after.find(f) == std::string::npos) off += f;
  }
  return "(?" + on + (off.empty() ? "" : "-" + off) + ":";
}

}  // namespace

bool TranslatePyRegex(const std::vector<char32_t>& pattern, bool multiline, PyRegexTranslation* out,
                      PyRegexError* error) {
  PyRegexTranslator translator(pattern, multiline ? kFlagM : 0);
  std::optional<std::string> translated = translator.Run();
  if (!translated) {
    *error = PyRegexError{translator.error().message, translator.error().position};
    return false;
  }
  out->pattern = std::move(*translated);
  out->capture_count = translator.capture_count();
  out->need = translator.need();
  out->group_names.clear();
  for (const std::u32string& name : translator.group_names())
    out->group_names.push_back(ToUtf8(name));
  return true;
}

}  // namespace bantam
