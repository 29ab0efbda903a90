#include "bantam/ini.h"

#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "bantam/py.h"
#include "bantam/utf8.h"

namespace bantam {

namespace {

// Python text mode reads "\r\n" and a lone "\r" as line ends too.
std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' || text[i] == '\r') {
      lines.push_back(text.substr(start, i - start));
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

// Index where a comment starts, or npos. ';' starts an inline comment only
// at the line start or after white space; '#' and ';' start a whole-line
// comment.
size_t CommentStart(std::string_view line) {
  std::string_view stripped = PyStripAscii(line);
  if (!stripped.empty() && (stripped[0] == '#' || stripped[0] == ';')) return 0;
  for (size_t i = line.find(';'); i != std::string_view::npos; i = line.find(';', i + 1)) {
    if (i == 0 || IsPyAsciiSpace(line[i - 1])) return i;
  }
  return std::string_view::npos;
}


}  // namespace

Result<IniFile> ParseIni(std::string_view text, const std::string& path) {
  IniFile ini;
  ini.path = path;
  // Values are collected as lines first and joined at the end, like
  // ConfigParser does; an option is addressed by (section, name) because
  // map entries move while the maps grow.
  struct Pending {
    std::string section;
    std::string name;
    std::vector<std::string> lines;
  };
  std::vector<Pending> pending;
  bool in_section = false;
  bool in_option = false;
  std::string sectname;
  size_t indent_level = 0;
  std::set<std::pair<std::string, std::string>> seen_options;
  std::string errors;

  int lineno = 0;
  for (std::string_view line : SplitLines(text)) {
    ++lineno;
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    const size_t comment = CommentStart(line);
    const std::string_view value =
        PyStripAscii(comment == std::string_view::npos ? line : line.substr(0, comment));
    if (value.empty()) {
      // A blank line (not a comment) belongs to the value being read.
      if (comment == std::string_view::npos && in_option) pending.back().lines.emplace_back();
      continue;
    }
    size_t indent = 0;
    while (indent < line.size() && IsPyAsciiSpace(line[indent])) ++indent;
    if (in_option && indent > indent_level) {
      pending.back().lines.emplace_back(value);
      continue;
    }
    indent_level = indent;
    const size_t close = value.rfind(']');
    if (value[0] == '[' && close != std::string_view::npos && close >= 2) {
      sectname = std::string(value.substr(1, close - 1));
      in_option = false;
      in_section = true;
      if (sectname != "DEFAULT") {
        if (ini.sections.Contains(sectname)) {
          return Status::Error(where + "section '" + sectname + "' already exists");
        }
        ini.sections.Set(sectname, ConfSection());
      }
      continue;
    }
    if (!in_section) return Status::Error(where + "no [section] header before this line");
    const size_t delim = value.find_first_of("=:");
    if (delim == std::string_view::npos) {
      errors += where + "expected 'name = value' or '[section]', got '" + std::string(value) +
                "'\n";
      continue;
    }
    std::string name = LowerAscii(PyStripAscii(value.substr(0, delim)));
    if (name.empty()) {
      errors += where + "option name missing before '" + std::string(1, value[delim]) + "'\n";
      continue;
    }
    if (!seen_options.emplace(sectname, name).second) {
      return Status::Error(where + "option '" + name + "' in section '" + sectname +
                           "' already exists");
    }
    ConfSection& sect = sectname == "DEFAULT" ? ini.defaults : *ini.sections.Find(sectname);
    sect.Set(name, ConfValue{"", SourceLoc{path, lineno}});
    pending.push_back(
        Pending{sectname, name, {std::string(PyStripAscii(value.substr(delim + 1)))}});
    in_option = true;
  }
  if (!errors.empty()) {
    errors.pop_back();
    return Status::Error(errors);
  }
  for (Pending& p : pending) {
    ConfSection& sect = p.section == "DEFAULT" ? ini.defaults : *ini.sections.Find(p.section);
    std::string joined;
    for (size_t k = 0; k < p.lines.size(); ++k) {
      if (k) joined.push_back('\n');
      joined += p.lines[k];
    }
    while (!joined.empty() && IsPyAsciiSpace(joined.back())) joined.pop_back();
    sect.Find(p.name)->text = std::move(joined);
  }
  return ini;
}

Result<IniFile> ReadIniFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::FromErrno(path, errno);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status::FromErrno(path, errno);
  std::string text = buf.str();
  const size_t bad = FindInvalidUtf8(text);
  if (bad != std::string_view::npos) {
    int line = 1;
    for (size_t i = 0; i < bad; ++i)
      if (text[i] == '\n') ++line;
    return Status::Error(path + ":" + std::to_string(line) + ": invalid UTF-8");
  }
  return ParseIni(text, path);
}

}  // namespace bantam
