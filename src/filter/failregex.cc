#include "bantam/failregex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <string.h>

#include <cstring>
#include <mutex>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bantam/failregex_tags.h"
#include "bantam/py.h"
#include "bantam/regex_translate.h"
#include "bantam/utf8.h"

// PCRE2_MATCH_INVALID_UTF is what keeps undecodable log bytes harmless.
#if PCRE2_MAJOR < 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR < 34)
#error "bantam needs PCRE2 10.34 or later"
#endif

namespace bantam {
namespace {

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
  MappedText tagged =
      plain ? UnmappedText(regex) : ResolveFailRegexTags(regex, options.host_matches_dns);
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
  PyRegexTranslation py;
  PyRegexError e;
  if (!TranslatePyRegex(cps, multiline, &py, &e)) {
    if (!e.position) return Status::Error(e.message);
    const size_t byte = starts[std::min(*e.position, starts.size() - 1)];
    return Status::Error(e.message + " at offset " + std::to_string(text.origin[byte]));
  }

  Translation t;
  t.pattern = std::move(py.pattern);
  t.capture_count = py.capture_count;
  t.need = std::move(py.need);
  for (size_t i = 1; i < py.group_names.size(); ++i) {
    if (!py.group_names[i].empty()) t.groups.push_back({py.group_names[i], static_cast<int>(i)});
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
  return GlobalToLocalFlags(ResolveFailRegexTags(regex, options.host_matches_dns)).text;
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

Status CheckFailRegex(std::string_view regex, RegexKind kind, const FailRegexOptions& options,
                      bool* has_failure_id) {
  // Compiled as a date template is: without JIT code, which a check does
  // not need (Compile adds it if the regex is taken from CheckedRegexes).
  Result<FailRegex> compiled = FailRegex::CompileNoJit(regex, kind, options);
  if (!compiled.ok()) return compiled.status();
  if (has_failure_id != nullptr) *has_failure_id = compiled->HasFailureIdGroup();
  if (CheckedRegexes* checked = CheckedRegexes::Current()) {
    checked->Keep(kind, options, std::move(*compiled));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------

namespace {
thread_local CheckedRegexes* t_checked_regexes = nullptr;
}  // namespace

CheckedRegexes::CheckedRegexes() : outer_(t_checked_regexes) { t_checked_regexes = this; }

CheckedRegexes::~CheckedRegexes() { t_checked_regexes = outer_; }

CheckedRegexes* CheckedRegexes::Current() { return t_checked_regexes; }

void CheckedRegexes::Keep(RegexKind kind, const FailRegexOptions& options, FailRegex regex) {
  std::string text = regex.regex();
  kept_.emplace(std::move(text), Kept{kind, options, std::move(regex)});
}

std::optional<FailRegex> CheckedRegexes::Take(std::string_view regex, RegexKind kind,
                                              const FailRegexOptions& options) {
  auto [it, end] = kept_.equal_range(std::string(regex));
  for (; it != end; ++it) {
    if (it->second.kind != kind || !(it->second.options == options)) continue;
    std::optional<FailRegex> out(std::move(it->second.regex));
    kept_.erase(it);
    ++taken_;
    return out;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------

Result<FailRegex> FailRegex::Compile(std::string_view regex, RegexKind kind,
                                     const FailRegexOptions& options) {
  std::optional<FailRegex> checked;
  if (CheckedRegexes* c = CheckedRegexes::Current()) checked = c->Take(regex, kind, options);
  Result<FailRegex> re = checked ? Result<FailRegex>(std::move(*checked))
                                 : CompileNoJit(regex, kind, options);
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
  uint32_t all_options = 0;
  pcre2_pattern_info(compiled, PCRE2_INFO_ALLOPTIONS, &all_options);
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
  re.anchored_ = (all_options & PCRE2_ANCHORED) != 0;
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
    anchored_ = other.anchored_;
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
  if (c == ' ') return 20;
  if (std::strchr("etaoinsrhl", c) != nullptr && c != 0) return 18;
  if (c >= '0' && c <= '9') return 16;
  if (c >= 'a' && c <= 'z') return 14;
  if (std::strchr(":.[]-/=,_'\"()", c) != nullptr && c != 0) return 12;
  // Upper case: log levels and tags (VERBOSE, NOTICE, SECURITY) are full
  // of the common letters; "NOTICE" is better found by its C than its E.
  if (std::strchr("ETAOINSRHL", c) != nullptr && c != 0) return 10;
  if (c >= 'A' && c <= 'Z') return 9;
  return 8;
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
    if (StartsAt(p - anchor)) return true;
    ++p;
  }
  return false;
}

bool FailRegex::RequiredLiteral::AnyFoundIn(const std::vector<RequiredLiteral>& literals,
                                            std::string_view hay) {
  if (literals.empty()) return false;
  if (literals.size() == 1) return literals[0].FoundIn(hay);
#if defined(__SSE2__)
  if (literals.size() <= 4 && hay.size() >= 16) {
    // Unused lanes repeat the first literal's anchor: harmless duplicates.
    __m128i anchors[4];
    for (size_t k = 0; k < 4; ++k) {
      const RequiredLiteral& lit = literals[k < literals.size() ? k : 0];
      anchors[k] = _mm_set1_epi8(lit.text[lit.anchor]);
    }
    // A byte at `pos` equals some anchor: does a literal start around it?
    auto found_at = [&](size_t pos) {
      for (const RequiredLiteral& lit : literals) {
        if (hay[pos] != lit.text[lit.anchor] || pos < lit.anchor) continue;
        const size_t start = pos - lit.anchor;
        if (start + lit.text.size() <= hay.size() && lit.StartsAt(hay.data() + start)) return true;
      }
      return false;
    };
    auto candidates = [&](size_t at) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hay.data() + at));
      const __m128i m =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, anchors[0]), _mm_cmpeq_epi8(v, anchors[1])),
                       _mm_or_si128(_mm_cmpeq_epi8(v, anchors[2]), _mm_cmpeq_epi8(v, anchors[3])));
      return static_cast<uint32_t>(_mm_movemask_epi8(m));
    };
    size_t at = 0;
    for (; at + 16 <= hay.size(); at += 16) {
      for (uint32_t mask = candidates(at); mask != 0; mask &= mask - 1) {
        if (found_at(at + static_cast<size_t>(__builtin_ctz(mask)))) return true;
      }
    }
    if (at < hay.size()) {
      // The last 16 bytes, less those already looked at.
      const size_t last = hay.size() - 16;
      for (uint32_t mask = candidates(last) >> (at - last); mask != 0; mask &= mask - 1) {
        if (found_at(at + static_cast<size_t>(__builtin_ctz(mask)))) return true;
      }
    }
    return false;
  }
#endif
  for (const RequiredLiteral& lit : literals) {
    if (lit.FoundIn(hay)) return true;
  }
  return false;
}

bool FailRegex::RulesOutPrefix(std::string_view prefix, FailRegexMatch* match) const {
  if (!anchored_ || prefix.empty()) return false;
  match->matched_ = false;
  if (!match->Reserve(static_cast<uint32_t>(capture_count_) + 1)) return false;
  // Partial matching has JIT code of its own, which is not compiled: the
  // interpreter runs, once per prefix the caller has not seen before.
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(prefix.data()), prefix.size(), 0,
                             PCRE2_PARTIAL_HARD, match->data_, match->context_);
  return rc == PCRE2_ERROR_NOMATCH;
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
    if (!RequiredLiteral::AnyFoundIn(required_, subject.substr(start_offset))) return false;
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
