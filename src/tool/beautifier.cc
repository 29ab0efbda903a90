#include "bantam/beautifier.h"

#include <cstdio>
#include <optional>

#include "bantam/py.h"

namespace bantam {

namespace {

using Words = std::vector<std::string>;
// nullopt stands for the TypeError/IndexError Python would raise on an
// answer of an unexpected shape; the caller then falls back to repr.
using Text = std::optional<std::string>;

// Python's `"..." + response`: only a string concatenates.
Text Cat(const std::string& head, const Value& v) {
  if (!v.is_string()) return std::nullopt;
  return head + v.as_string();
}

// Python's len()/iteration over a list, or over a str's characters.
std::optional<std::vector<Value>> Items(const Value& v) {
  if (v.is_list()) return v.as_list();
  if (v.is_string()) {
    std::vector<Value> chars;
    const std::string& s = v.as_string();
    for (size_t i = 0; i < s.size();) {
      size_t n = 1;
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c >= 0xF0) n = 4;
      else if (c >= 0xE0) n = 3;
      else if (c >= 0xC0) n = 2;
      chars.emplace_back(s.substr(i, n));
      i += n;
    }
    return chars;
  }
  if (v.is_dict()) {
    std::vector<Value> keys;
    for (const auto& [k, _] : v.as_dict()) keys.emplace_back(k);
    return keys;
  }
  return std::nullopt;
}

// sep.join(items): every item must be a string.
Text Join(const std::vector<Value>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) return std::nullopt;
    if (i) out += sep;
    out += items[i].as_string();
  }
  return out;
}

// "|- a\n|- b\n`- c" under `head`; `numbered` adds "[i]: ".
Text Tree(const std::string& head, const std::vector<Value>& items, bool numbered) {
  std::string out = head;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) return std::nullopt;
    out += i + 1 == items.size() ? "`- " : "|- ";
    if (numbered) out += "[" + std::to_string(i) + "]: ";
    out += items[i].as_string();
    if (i + 1 != items.size()) out += "\n";
  }
  return out;
}

// One status value: lists print their elements' str() space-separated.
std::string StatusValue(const Value& v) {
  if (!v.is_list()) return PyStrValue(v);
  std::string out;
  for (size_t i = 0; i < v.as_list().size(); ++i) {
    if (i) out += " ";
    out += PyStrValue(v.as_list()[i]);
  }
  return out;
}

// A status answer is a list of (name, value) pairs.
bool IsPair(const Value& v) { return v.is_list() && v.as_list().size() == 2; }

Text Status(const Words& cmd, const Value& response) {
  if (!response.is_list()) return std::nullopt;
  const Value::List& top = response.as_list();
  std::string out;
  if (cmd.size() > 1) {
    out = "Status for the jail: " + cmd[1];
    for (size_t n = 0; n < top.size(); ++n) {
      if (!IsPair(top[n]) || !top[n].as_list()[1].is_list()) return std::nullopt;
      const bool last = n + 1 == top.size();
      out += "\n" + std::string(last ? "`-" : "|-") + " " + PyStrValue(top[n].as_list()[0]);
      const std::string indent = last ? "   " : "|  ";
      const Value::List& sub = top[n].as_list()[1].as_list();
      for (size_t m = 0; m < sub.size(); ++m) {
        if (!IsPair(sub[m])) return std::nullopt;
        out += "\n" + indent + (m + 1 == sub.size() ? "`-" : "|-") + " " +
               PyStrValue(sub[m].as_list()[0]) + ":\t" + StatusValue(sub[m].as_list()[1]);
      }
    }
  } else {
    out = "Status";
    for (size_t n = 0; n < top.size(); ++n) {
      if (!IsPair(top[n])) return std::nullopt;
      out += "\n" + std::string(n + 1 == top.size() ? "`-" : "|-") + " " +
             PyStrValue(top[n].as_list()[0]) + ":\t" + StatusValue(top[n].as_list()[1]);
    }
  }
  return out;
}

bool In(const std::string& w, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (w == n) return true;
  return false;
}

// nullopt: the answer has the wrong shape. An engaged optional holding the
// raw value's str() means "no rule for this command".
Text BeautifyOrFail(const Words& in, const Value& r) {
  const std::string raw = PyStrValue(r);
  if (in.empty()) return raw;
  const std::string& c0 = in[0];
  if (c0 == "ping") return Cat("Server replied: ", r);
  if (c0 == "version") return raw;
  if (c0 == "start") return std::string("Jail started");
  if (c0 == "stop") {
    if (r.is_null()) return std::string(in.size() == 1 ? "Shutdown successful" : "Jail stopped");
    return raw;
  }
  if (c0 == "add") return Cat("Added jail ", r);
  if (c0 == "flushlogs") return Cat("logs: ", r);
  if (c0 == "echo") {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    return Join(*items, " ");
  }
  if (c0 == "status") return Status(in, r);
  if (in.size() < 2) return raw;
  const std::string& c1 = in[1];
  if (c1 == "syslogsocket") return Cat("Current syslog socket is:\n`- ", r);
  if (c1 == "logtarget") return Cat("Current logging target is:\n`- ", r);
  if (c1 == "loglevel") {
    // Python's bool is an int: True names level 1.
    if (r.is_int() || r.is_bool())
      return "Current logging level is " +
             PyRepr(LogLevelName(r.is_bool() ? r.as_bool() : r.as_int()));
    return "Current logging level is " + PyReprValue(r);
  }
  if (c1 == "dbfile") {
    if (r.is_null()) return std::string("Database currently disabled");
    return Cat("Current database file is:\n`- ", r);
  }
  if (c1 == "dbpurgeage") {
    if (r.is_null()) return std::string("Database currently disabled");
    int64_t secs;
    if (r.is_int()) secs = r.as_int();
    else if (r.is_bool()) secs = r.as_bool();
    else if (r.is_double()) secs = static_cast<int64_t>(r.as_double());
    else return std::nullopt;
    return "Current database purge age is:\n`- " + std::to_string(secs) + "seconds";
  }
  if (in.size() < 3) return raw;
  const std::string& c2 = in[2];
  if (In(c2, {"logpath", "addlogpath", "dellogpath"})) {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    if (items->empty()) return std::string("No file is currently monitored");
    return Tree("Current monitored log file(s):\n", *items, false);
  }
  if (c2 == "logencoding") return Cat("Current log encoding is set to:\n", r);
  if (In(c2, {"journalmatch", "addjournalmatch", "deljournalmatch"})) {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    if (items->empty()) return std::string("No journal match filter set");
    std::string out = "Current match filter:\n";
    for (size_t i = 0; i < items->size(); ++i) {
      std::optional<std::vector<Value>> words = Items((*items)[i]);
      if (!words) return std::nullopt;
      Text one = Join(*words, " ");
      if (!one) return std::nullopt;
      if (i) out += " + ";
      out += *one;
    }
    return out;
  }
  if (c2 == "datepattern") {
    const std::string head = "Current date pattern set to: ";
    if (r.is_null()) return head + "Not set/required";
    std::optional<std::vector<Value>> items = Items(r);
    if (!items || items->empty()) return std::nullopt;
    if ((*items)[0].is_null()) {
      if (items->size() < 2) return std::nullopt;
      return head + PyStrValue((*items)[1]);
    }
    if (items->size() != 2) return std::nullopt;
    return head + PyStrValue((*items)[0]) + " (" + PyStrValue((*items)[1]) + ")";
  }
  if (In(c2, {"ignoreip", "addignoreip", "delignoreip"})) {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    if (items->empty()) return std::string("No IP address/network is ignored");
    return Tree("These IP addresses/networks are ignored:\n", *items, false);
  }
  if (In(c2, {"failregex", "addfailregex", "delfailregex", "ignoreregex", "addignoreregex",
              "delignoreregex"})) {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    if (items->empty()) return std::string("No regular expression is defined");
    return Tree("The following regular expression are defined:\n", *items, true);
  }
  if (c2 == "actions") {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items) return std::nullopt;
    if (items->empty()) return "No actions for jail " + c1;
    Text list = Join(*items, ", ");
    if (!list) return std::nullopt;
    return "The jail " + c1 + " has the following actions:\n" + *list;
  }
  if (c2 == "actionproperties" || c2 == "actionmethods") {
    std::optional<std::vector<Value>> items = Items(r);
    if (!items || in.size() < 4) return std::nullopt;
    const char* what = c2 == "actionproperties" ? "properties" : "methods";
    if (items->empty())
      return "No " + std::string(what) + " for jail " + c1 + " action " + in[3];
    Text list = Join(*items, ", ");
    if (!list) return std::nullopt;
    return "The jail " + c1 + " action " + in[3] + " has the following " + what + ":\n" + *list;
  }
  if (c2 == "banip" && c0 == "get") {
    if (!r.is_list()) return raw;
    std::string sep = in.size() <= 3 ? " " : in[3];
    if (sep == "--with-time") sep = "\n";
    return Join(r.as_list(), sep);
  }
  return raw;
}

void AppendRepr(const Value& v, std::string* out);

void AppendStr(const Value& v, std::string* out) {
  if (v.is_string()) {
    *out += v.as_string();
  } else {
    AppendRepr(v, out);
  }
}

void AppendRepr(const Value& v, std::string* out) {
  if (v.is_null()) {
    *out += "None";
  } else if (v.is_bool()) {
    *out += v.as_bool() ? "True" : "False";
  } else if (v.is_int()) {
    *out += std::to_string(v.as_int());
  } else if (v.is_double()) {
    *out += PyFloatRepr(v.as_double());
  } else if (v.is_string()) {
    *out += PyRepr(v.as_string());
  } else if (v.is_list()) {
    *out += "[";
    bool first = true;
    for (const Value& e : v.as_list()) {
      if (!first) *out += ", ";
      first = false;
      AppendRepr(e, out);
    }
    *out += "]";
  } else {
    *out += "{";
    bool first = true;
    for (const auto& [k, e] : v.as_dict()) {
      if (!first) *out += ", ";
      first = false;
      *out += PyRepr(k);
      *out += ": ";
      AppendRepr(e, out);
    }
    *out += "}";
  }
}

}  // namespace

std::string PyStrValue(const Value& v) {
  std::string out;
  AppendStr(v, &out);
  return out;
}

std::string PyReprValue(const Value& v) {
  std::string out;
  AppendRepr(v, &out);
  return out;
}

std::string LogLevelName(int64_t level) {
  switch (level) {
    case 0: return "NOTSET";
    case 5: return "HEAVY";
    case 7: return "TRACE";
    case 10: return "DEBUG";
    case 18: return "MSG";
    case 20: return "INFO";
    case 25: return "NOTICE";
    case 30: return "WARNING";
    case 40: return "ERROR";
    case 50: return "CRITICAL";
    default: break;
  }
  // fail2ban names the unnamed levels below 50 itself, so short log
  // formats do not truncate "Level 9".
  if (level > 0 && level < 50) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02d-Lev.", static_cast<int>(level));
    return buf;
  }
  return "Level " + std::to_string(level);
}

std::string Beautify(const std::vector<std::string>& cmd, const Value& response) {
  Text text = BeautifyOrFail(cmd, response);
  if (text) return *text;
  // What fail2ban prints when its beautifier trips over an answer.
  return PyReprValue(response) + PyReprValue(response);
}

std::string BeautifyError(const ServerError& error) {
  const std::string first =
      !error.args.empty() && error.args[0].is_string() ? error.args[0].as_string() : "";
  if (error.type == "UnknownJailException") return "Sorry but the jail '" + first + "' does not exist";
  if (error.type == "IndexError") return "Sorry but the command is invalid";
  if (error.type == "DuplicateJailException") return "The jail '" + first + "' already exists";
  return error.message;
}

}  // namespace bantam
