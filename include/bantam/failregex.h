// Failregex compiler: turns a fail2ban regex (Python `re` syntax plus
// fail2ban's <HOST>, <F-*>, <SKIPLINES>... tags) into a compiled PCRE2 regex
// that matches exactly what fail2ban 1.0.2 on Python 3.11 would match.
//
// The translation follows fail2ban's Regex.__init__: tags are expanded first
// (<HOST> honours `usedns`), "((?i)x)" is rewritten to "(?i:x)", then the
// Python pattern is parsed with Python's own rules and error messages and
// re-emitted in PCRE2 syntax. Python semantics PCRE2 spells differently are
// rewritten (\Z, \s, \v, \uXXXX, {,n}, case folding of i/I/U+0130/U+0131, the
// (?a) flag, ...). Constructs that cannot be reproduced exactly are errors,
// never silent differences.
//
// Subjects are UTF-8. Offsets in matches are byte offsets. Invalid UTF-8 in
// a subject never crashes and never matches any character (fail2ban would
// have decoded it to U+FFFD first; the filter engine decides whether to).
// fail2ban searches "\n".join(lines) + "\n", so `$` matches before that
// final newline and, with maxlines > 1, `^` after every newline.
//
// One deliberate difference: PCRE2's match limit turns catastrophic
// backtracking (e.g. "(\S+)*x" on a long word) into a Search() error where
// Python would keep going.
//
// The steps live apart: failregex_tags.h expands the tags, regex_translate.h
// translates Python re to PCRE2; failregex.cc chains them and wraps PCRE2.
#ifndef BANTAM_FAILREGEX_H_
#define BANTAM_FAILREGEX_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bantam/status.h"

// PCRE2's opaque types, so this header does not drag in <pcre2.h>.
struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace bantam {

// kDateRegex is a plain Python regex (a date template): no fail2ban tags, no
// flag rewriting, no failure-id requirement.
enum class RegexKind { kPrefRegex, kFailRegex, kIgnoreRegex, kDateRegex };

// "prefregex", "failregex", "ignoreregex" or "datepattern".
std::string_view RegexKindName(RegexKind kind);

// The jail settings that change how fail2ban prepares a regex.
struct FailRegexOptions {
  // False when the jail sets `usedns = no`: <HOST> then matches addresses
  // only, like <ADDR>. Every other usedns value keeps the DNS alternative.
  bool host_matches_dns = true;
  // The jail's `maxlines`. Above 1 fail2ban compiles failregexes (not
  // prefregex or ignoreregex) with re.MULTILINE over a buffer of lines.
  int maxlines = 1;
  // fail2ban accepts a failregex without a failure-id group (host, address,
  // <F-ID>, <F-MLFID>) only when the jail's prefregex has one.
  bool prefregex_has_failure_id = false;

  bool operator==(const FailRegexOptions&) const = default;
};

// The PCRE2 pattern fail2ban's Regex would compile for `regex` (tags
// expanded, Python-only syntax translated). It must be compiled the way
// FailRegex::Compile does (UTF, UCP, MATCH_INVALID_UTF, ALT_CIRCUMFLEX,
// newline LF). Error: Python's message with a byte offset into `regex`,
// e.g. "missing ), unterminated subpattern at offset 4", or
// "no failure-id group ..." for a failregex without <HOST> and the like.
Result<std::string> TranslateFailRegex(std::string_view regex, RegexKind kind);
Result<std::string> TranslateFailRegex(std::string_view regex, RegexKind kind,
                                       const FailRegexOptions& options);

// The regex with fail2ban's tags expanded and "((?i)x)" rewritten, still in
// Python syntax: what fail2ban's Regex.getRegex() returns.
std::string ExpandFailRegexTags(std::string_view regex, const FailRegexOptions& options = {});

// Translates and compiles `regex`. Error: "cannot compile failregex
// '^foo(': missing ), unterminated subpattern at offset 4".
// `has_failure_id` (if given) is set to FailRegex::HasFailureIdGroup's
// answer. While a CheckedRegexes lives on this thread, what was compiled is
// kept there for FailRegex::Compile.
Status CheckFailRegex(std::string_view regex, RegexKind kind);
Status CheckFailRegex(std::string_view regex, RegexKind kind, const FailRegexOptions& options,
                      bool* has_failure_id = nullptr);

// A named group of a compiled regex, under its fail2ban/Python name
// ("ip4", "user", "alt_user_1", "skiplines0", "content", ...).
struct FailRegexGroup {
  std::string name;
  int index;  // PCRE2 capture number, the same as Python's group number.
};

class FailRegexMatch;

// A compiled failregex/prefregex/ignoreregex. Owns its PCRE2 code (JIT
// compiled when the platform supports it). Immutable after Compile(), so one
// FailRegex may be searched from several threads, each with its own
// FailRegexMatch.
class FailRegex {
 public:
  static Result<FailRegex> Compile(std::string_view regex, RegexKind kind,
                                   const FailRegexOptions& options = {});

  FailRegex(FailRegex&& other) noexcept;
  FailRegex& operator=(FailRegex&& other) noexcept;
  FailRegex(const FailRegex&) = delete;
  FailRegex& operator=(const FailRegex&) = delete;
  ~FailRegex();

  // The regex as configured, and the PCRE2 pattern compiled from it.
  const std::string& regex() const { return regex_; }
  const std::string& pattern() const { return pattern_; }
  RegexKind kind() const { return kind_; }

  // Number of capturing groups, named or not (Python's `re.groups`).
  int capture_count() const { return capture_count_; }
  // Named groups sorted by name (Python's `groupindex`).
  const std::vector<FailRegexGroup>& groups() const { return groups_; }
  // The capture number of group `name`, or -1 when the regex has none.
  int GroupIndex(std::string_view name) const;
  // True if one of fail2ban's failure-id groups (fid, ip4, ip6, dns, mlfid)
  // is present; a prefregex with one lets failregexes go without.
  bool HasFailureIdGroup() const;
  // Strings one of which every match must contain; Search() skips the
  // matcher when none occurs. Empty when nothing is known.
  struct RequiredLiteral {
    explicit RequiredLiteral(std::string t);
    bool FoundIn(std::string_view hay) const;
    // Whether `text` is at `p` (at least text.size() bytes readable): the
    // first and last byte inline, where most candidates fail, then memcmp.
    bool StartsAt(const char* p) const {
      return p[0] == text[0] && p[text.size() - 1] == text.back() &&
             std::memcmp(p, text.data(), text.size()) == 0;
    }
    std::string text;
    size_t anchor = 0;  // index of the byte memchr() looks for: the rarest one
    // Whether any of `literals` occurs in `hay`: one pass over it for up to
    // four of them (their anchor bytes compared 16 bytes at a time where
    // SSE2 is there), one FoundIn each otherwise.
    static bool AnyFoundIn(const std::vector<RequiredLiteral>& literals, std::string_view hay);
  };
  const std::vector<RequiredLiteral>& required_literals() const { return required_; }

  // Like Python's pattern.search(subject): finds the leftmost match. Returns
  // true on a match, false on none, an error if PCRE2 gave up (match or JIT
  // stack limit). `match` is reused across calls; it grows only the first
  // time it meets a regex with more groups, so steady-state searching does
  // not allocate. `subject` must outlive the use of `match`'s groups.
  Result<bool> Search(std::string_view subject, FailRegexMatch* match) const;
  // Like pattern.search(subject, pos): starts at byte `start_offset`, where
  // `^` does not match (unless multi-line after "\n") but lookbehind and \b
  // still see the bytes before it. To emulate Python's endpos, pass
  // subject.substr(0, endpos).
  Result<bool> Search(std::string_view subject, size_t start_offset,
                      FailRegexMatch* match) const;

  // PCRE2 anchored the pattern (every top-level branch starts with a
  // non-multi-line ^ or \A, ...): a search from offset 0 tries offset 0
  // only.
  bool anchored() const { return anchored_; }
  // True only if no subject that starts with `prefix` has a match found by
  // Search(subject, 0, ...): the pattern is anchored, and matching `prefix`
  // alone with PCRE2_PARTIAL_HARD fails without reaching its end (which
  // PCRE2 would report as a partial match). False when that cannot be
  // shown: not anchored, a partial or complete match, or any PCRE2 error.
  // Exact only for a prefix of whole characters; callers pass ASCII.
  bool RulesOutPrefix(std::string_view prefix, FailRegexMatch* match) const;

 private:
  FailRegex() = default;
  // Compile() without the JIT step; Search() JIT-compiles on first use.
  static Result<FailRegex> CompileNoJit(std::string_view regex, RegexKind kind,
                                        const FailRegexOptions& options);
  friend Status CheckFailRegex(std::string_view, RegexKind, const FailRegexOptions&, bool*);

  std::string regex_;
  std::string pattern_;
  RegexKind kind_ = RegexKind::kFailRegex;
  int capture_count_ = 0;
  std::vector<FailRegexGroup> groups_;
  std::vector<RequiredLiteral> required_;  // literal prefilter: one must occur
  bool anchored_ = false;
  void CompileJit() const;

  pcre2_real_code_8* code_ = nullptr;
  // Date templates are many and most are never tried, so their JIT code is
  // made on first use (start-up cost); other kinds are JIT-compiled at
  // once. 0: not yet; 1: done (or JIT unavailable: the interpreter runs).
  mutable std::atomic<int> jit_state_{0};
};

// A configuration's regexes compiled once for its check and its jails.
// While one lives on a thread (the daemon's start-up and reload: the check
// of a configuration, then the jails built from it), CheckFailRegex keeps
// each regex it compiled, and FailRegex::Compile of the same text, kind and
// options takes it and adds only the JIT step, instead of translating and
// compiling it again. What is taken is what Compile would have made; what
// is not taken (a check without jails, a jail that did not change) goes
// with the scope. Scopes nest: the inner one is used.
class CheckedRegexes {
 public:
  CheckedRegexes();
  ~CheckedRegexes();
  CheckedRegexes(const CheckedRegexes&) = delete;
  CheckedRegexes& operator=(const CheckedRegexes&) = delete;

  // How many compilations were taken from here, and how many are kept.
  size_t taken() const { return taken_; }
  size_t kept() const { return kept_.size(); }

 private:
  friend class FailRegex;
  friend Status CheckFailRegex(std::string_view, RegexKind, const FailRegexOptions&, bool*);
  struct Kept {
    RegexKind kind;
    FailRegexOptions options;
    FailRegex regex;
  };
  // The one on this thread; null: none.
  static CheckedRegexes* Current();
  void Keep(RegexKind kind, const FailRegexOptions& options, FailRegex regex);
  std::optional<FailRegex> Take(std::string_view regex, RegexKind kind,
                                const FailRegexOptions& options);

  std::unordered_multimap<std::string, Kept> kept_;  // by the regex's text
  size_t taken_ = 0;
  CheckedRegexes* outer_;
};

// Reusable per-thread state for FailRegex::Search: PCRE2 match data, match
// context and JIT stack. Holds the last result as views into the subject.
class FailRegexMatch {
 public:
  FailRegexMatch();
  FailRegexMatch(const FailRegexMatch&) = delete;
  FailRegexMatch& operator=(const FailRegexMatch&) = delete;
  ~FailRegexMatch();

  // Whether the last Search matched.
  bool matched() const { return matched_; }
  // Byte span of the whole match; only meaningful when matched().
  size_t start() const;
  size_t end() const;
  // Group `index` of the last match, or nullopt when it did not take part
  // (Python's None) or there was no match.
  std::optional<std::string_view> Group(int index) const;

 private:
  friend class FailRegex;

  // Makes room for `pairs` ovector pairs; allocates only when growing.
  bool Reserve(uint32_t pairs);
  // Gives the match context a 1 MiB JIT stack, once; false if it has one
  // already (so the caller retries at most once) or cannot.
  bool GrowJitStack();

  pcre2_real_match_data_8* data_ = nullptr;
  pcre2_real_match_context_8* context_ = nullptr;
  pcre2_real_jit_stack_8* jit_stack_ = nullptr;
  uint32_t pairs_ = 0;       // allocated ovector pairs
  uint32_t used_pairs_ = 0;  // pairs the last matching regex has
  std::string_view subject_;
  bool matched_ = false;
};

}  // namespace bantam

#endif  // BANTAM_FAILREGEX_H_
