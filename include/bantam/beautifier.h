// Beautifier: turns a control-socket answer into the text fail2ban-client
// prints for it.
//
// The server answers a command with a bare value (fail2ban's Transmitter
// reply, carried as JSON) or with an error naming a Python exception class.
// The client, not the server, knows how each command's answer reads:
// `status` becomes a tree, `get JAIL failregex` a numbered list, a bool
// "True". The rules follow fail2ban 1.0.2's client so that scripts parsing
// its output keep working; they key on the command words, not on the value.
#ifndef BANTAM_BEAUTIFIER_H_
#define BANTAM_BEAUTIFIER_H_

#include <string>
#include <vector>

#include "bantam/value.h"

namespace bantam {

// A failed command as the server reports it: the Python exception class
// ("UnknownJailException", "IndexError", "ValueError", ...), its args and
// str(exception).
struct ServerError {
  std::string type;
  Value::List args;
  std::string message;
};

// The text printed (without the final newline) for `response` to `cmd`,
// the command words as sent. Never fails: an answer of an unexpected shape
// is printed as Python would print the value itself.
std::string Beautify(const std::vector<std::string>& cmd, const Value& response);

// The text printed for a failed command.
std::string BeautifyError(const ServerError& error);

// Python's str() / repr() of a decoded answer: lists as [..], mappings as
// {..}, None, True, floats as Python writes them; str() of a string is the
// string itself, repr() quotes it.
std::string PyStrValue(const Value& v);
std::string PyReprValue(const Value& v);

// The name Python's logging gives a numeric level, with fail2ban's extra
// levels: 20 -> "INFO", 5 -> "HEAVY", 9 -> "#09-Lev.", 60 -> "Level 60".
std::string LogLevelName(int64_t level);

}  // namespace bantam

#endif  // BANTAM_BEAUTIFIER_H_
