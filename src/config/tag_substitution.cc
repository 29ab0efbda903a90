#include "bantam/tag_substitution.h"

#include <map>

namespace bantam {

namespace {

constexpr int kMaxTagReplacements = 25;
// Guards against exponential growth (<a> = <b><b>, <b> = <c><c>, ...).
constexpr size_t kMaxValueSize = 1 << 20;

// Finds the next "<name>" at or after `from` (name: no space, '<' or '>').
bool NextTag(const std::string& s, size_t from, size_t* start, size_t* end, std::string* name) {
  for (size_t i = s.find('<', from); i != std::string::npos; i = s.find('<', i + 1)) {
    size_t j = i + 1;
    while (j < s.size() && s[j] != ' ' && s[j] != '<' && s[j] != '>') ++j;
    if (j > i + 1 && j < s.size() && s[j] == '>') {
      *start = i;
      *end = j + 1;
      *name = s.substr(i + 1, j - i - 1);
      return true;
    }
  }
  return false;
}

bool HasTag(const std::string& s) {
  size_t a, b;
  std::string n;
  return NextTag(s, 0, &a, &b, &n);
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t i = s->find(from); i != std::string::npos; i = s->find(from, pos)) {
    out.append(*s, pos, i - pos);
    out.append(to);
    pos = i + from.size();
  }
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

}  // namespace

Result<OrderedMap<std::string>> SubstituteTags(const OrderedMap<std::string>& input,
                                               const std::set<std::string>& ignore,
                                               const TagFallback& fallback,
                                               const std::string& conditional) {
  OrderedMap<std::string> tags = input;
  std::set<std::string> done;
  std::map<std::string, std::map<std::string, int>> rep_counts;
  std::vector<std::string> keys;
  for (const auto& [k, v] : input) keys.push_back(k);

  for (;;) {
    bool again = false;
    for (const std::string& key : keys) {
      if (ignore.count(key) || done.count(key)) continue;
      std::string value = *tags.Find(key);
      const std::string original = value;
      std::map<std::string, int> counts = rep_counts[key];
      size_t start, end;
      std::string rtag;
      size_t from = 0;
      while (NextTag(value, from, &start, &end, &rtag)) {
        if (ignore.count(rtag)) {
          from = end;
          continue;
        }
        auto c = counts.find(rtag);
        if (rtag == key || (c != counts.end() && c->second > kMaxTagReplacements)) {
          return Status::Error("tag <" + rtag + "> in '" + key +
                               "' refers back to itself and cannot be resolved");
        }
        std::optional<std::string> repl;
        if (!conditional.empty()) {
          if (const std::string* v = tags.Find(rtag + "?" + conditional)) repl = *v;
        }
        if (!repl) {
          if (const std::string* v = tags.Find(rtag)) {
            repl = *v;
          } else if (fallback) {
            Result<std::optional<std::string>> r = fallback(rtag);
            if (!r.ok()) return r.status();
            repl = *r;
          }
        }
        if (!repl) {  // unknown here: filled in later (e.g. <ip>)
          from = end;
          continue;
        }
        ReplaceAll(&value, "<" + rtag + ">", *repl);
        if (value.size() > kMaxValueSize) {
          return Status::Error("tag substitution in '" + key + "' grows beyond " +
                               std::to_string(kMaxValueSize) + " bytes");
        }
        ++counts[rtag];
        from = start;
      }
      if (value != original) {
        if (HasTag(value)) {
          rep_counts[key] = counts;
          again = true;
        }
        tags.Set(key, value);
      }
      if (value.find('<') == std::string::npos) done.insert(key);
    }
    if (!again) break;
  }
  return tags;
}

}  // namespace bantam
