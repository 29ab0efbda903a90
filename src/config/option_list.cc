#include "bantam/option_list.h"

#include "bantam/ini.h"
#include "bantam/py.h"
#include "bantam/value.h"

namespace bantam {

namespace {

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.' || static_cast<unsigned char>(c) >= 0x80;
}

// True when only white space remains from i (Python's "\s*$").
bool OnlyWsFrom(std::string_view s, size_t i) {
  for (; i < s.size(); ++i)
    if (!IsPyAsciiSpace(s[i])) return false;
  return true;
}

// Parses the text between the brackets: key=value pairs separated by ','
// or by "][" (several option groups).
Status ParseOptionPairs(std::string_view s, OrderedMap<std::string>* out) {
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t i = pos;
    while (i < s.size() && IsPyAsciiSpace(s[i])) ++i;
    size_t key_begin = i;
    while (i < s.size() && IsKeyChar(s[i])) ++i;
    if (i > key_begin && i < s.size() && s[i] == '=') {
      std::string key(s.substr(key_begin, i - key_begin));
      ++i;
      std::string_view value;
      char q = i < s.size() ? s[i] : '\0';
      size_t close = (q == '"' || q == '\'') ? s.find(q, i + 1) : std::string_view::npos;
      if (close != std::string_view::npos) {
        value = s.substr(i + 1, close - i - 1);
        i = close + 1;
      } else {
        size_t b = i;
        while (i < s.size() && s[i] != ',' && s[i] != ']') ++i;
        value = s.substr(b, i - b);
      }
      if (i < s.size() && s[i] == ',') {
        ++i;
      } else if (i < s.size() && s[i] == ']') {
        size_t j = i + 1;
        while (j < s.size() && IsPyAsciiSpace(s[j])) ++j;
        if (j < s.size() && s[j] == '[') {
          i = j + 1;
        } else {
          return Status::Error("unexpected syntax at " + std::to_string(i) + " after option " +
                               PyRepr(key) + ": " + std::string(s.substr(i, 25)));
        }
      } else if (i == s.size() || (i + 1 == s.size() && s[i] == '\n')) {
        // end of the option text
      } else {
        return Status::Error("unexpected syntax at " + std::to_string(i) + " after option " +
                             PyRepr(key) + ": " + std::string(s.substr(i, 25)));
      }
      out->Set(key, std::string(PyStripAscii(value)));
      pos = i;
      continue;
    }
    // A trailing comma and white space end the list quietly.
    size_t j = pos;
    if (j < s.size() && s[j] == ',') ++j;
    if (OnlyWsFrom(s, j)) return Status::Ok();
    return Status::Error("expected option, wrong syntax at " + std::to_string(pos) + ": " +
                         std::string(s.substr(pos, 25)));
  }
  return Status::Ok();
}

}  // namespace

Result<NamedOptions> ParseNamedOptions(std::string_view text) {
  NamedOptions out;
  size_t open = text.find('[');
  if (open == 0 || text.empty()) return Status::Error("unexpected option syntax");
  if (open == std::string_view::npos) {
    out.name = std::string(text);
    return out;
  }
  size_t close = text.rfind(']');
  if (close == std::string_view::npos || close < open || !OnlyWsFrom(text, close + 1)) {
    return Status::Error("unexpected option syntax");
  }
  out.name = std::string(text.substr(0, open));
  Status s = ParseOptionPairs(text.substr(open + 1, close - open - 1), &out.options);
  if (!s.ok()) return s;
  return out;
}

namespace {

// Length of a "[k=v, ...]" group list starting at s[i] == '[', or npos.
size_t OptionGroupsLength(std::string_view s, size_t i) {
  size_t start = i;
  ++i;  // '['
  for (;;) {
    while (i < s.size() && IsPyAsciiSpace(s[i])) ++i;
    size_t kb = i;
    while (i < s.size() && IsKeyChar(s[i])) ++i;
    if (i == kb || i >= s.size() || s[i] != '=') break;
    ++i;
    char q = i < s.size() ? s[i] : '\0';
    size_t close = (q == '"' || q == '\'') ? s.find(q, i + 1) : std::string_view::npos;
    if (close != std::string_view::npos) {
      i = close + 1;
    } else {
      while (i < s.size() && s[i] != ',' && s[i] != ']') ++i;
    }
    while (i < s.size() && IsPyAsciiSpace(s[i])) ++i;
    if (i < s.size() && s[i] == ',') {
      ++i;
    } else if (i < s.size() && s[i] == ']') {
      size_t j = i + 1;
      while (j < s.size() && IsPyAsciiSpace(s[j])) ++j;
      if (j < s.size() && s[j] == '[') i = j + 1;
    }
    while (i < s.size() && IsPyAsciiSpace(s[i])) ++i;
  }
  if (i < s.size() && s[i] == ']') return i + 1 - start;
  return std::string_view::npos;
}

}  // namespace

std::vector<std::string> SplitNamedOptionsList(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    if (IsPyAsciiSpace(text[pos])) {
      ++pos;
      continue;
    }
    // A name, optionally followed by its bracketed options, must end at
    // white space or the end; anything else is taken as one bare word.
    size_t i = pos;
    while (i < text.size() && text[i] != '[' && !IsPyAsciiSpace(text[i])) ++i;
    size_t end = std::string_view::npos;
    if (i > pos) {
      size_t j = i;
      while (j < text.size() && IsPyAsciiSpace(text[j])) ++j;
      if (j < text.size() && text[j] == '[') {
        size_t len = OptionGroupsLength(text, j);
        if (len != std::string_view::npos &&
            (j + len == text.size() || IsPyAsciiSpace(text[j + len]))) {
          end = j + len;
        }
      }
      if (end == std::string_view::npos && (i == text.size() || IsPyAsciiSpace(text[i]))) end = i;
    }
    if (end == std::string_view::npos) {
      end = pos;
      while (end < text.size() && !IsPyAsciiSpace(text[end])) ++end;
    }
    out.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

std::vector<std::string_view> SplitNewlines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t nl = text.find('\n'); nl != std::string_view::npos; nl = text.find('\n', start)) {
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  out.push_back(text.substr(start));
  return out;
}

std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find_first_of(" ,\n", i);
    if (j == std::string_view::npos) j = text.size();
    std::string_view w = PyStripAscii(text.substr(i, j - i));
    if (!w.empty()) out.emplace_back(w);
    i = j + 1;
  }
  return out;
}

Result<std::vector<std::string>> ShlexSplit(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      if (in_word) out.push_back(std::move(cur)), cur.clear(), in_word = false;
      ++i;
    } else if (c == '\'') {
      size_t e = s.find('\'', i + 1);
      if (e == std::string_view::npos) return Status::Error("No closing quotation");
      cur.append(s.substr(i + 1, e - i - 1));
      in_word = true;
      i = e + 1;
    } else if (c == '"') {
      ++i;
      for (;;) {
        if (i >= s.size()) return Status::Error("No closing quotation");
        if (s[i] == '"') break;
        if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) ++i;
        cur.push_back(s[i++]);
      }
      ++i;
      in_word = true;
    } else if (c == '\\') {
      if (i + 1 >= s.size()) return Status::Error("No escaped character");
      cur.push_back(s[i + 1]);
      in_word = true;
      i += 2;
    } else {
      cur.push_back(c);
      in_word = true;
      ++i;
    }
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

}  // namespace bantam
