// printf's backslash escapes (POSIX printf(1)), as the stock ban mails'
// `printf %b "..."` interprets them; MailComposer applies them to the
// action's own text only, never to values from outside (log lines, whois
// answers), unlike fail2ban, whose shell printf %b sees those too. Pure;
// any thread.
#ifndef BANTAM_PRINTF_ESCAPES_H_
#define BANTAM_PRINTF_ESCAPES_H_

#include <string>

namespace bantam {

// Appends `s` to *out with its escapes interpreted: as in a printf format
// (\NNN octal, \c kept) or, when `b_arg`, as in a %b argument (\0NNN octal,
// \c ends all output). \n \t \r \a \b \f \v \\ in both; an unknown escape
// stays as written. Returns false when \c ended the output.
bool PrintfUnescape(const std::string& s, bool b_arg, std::string* out);

}  // namespace bantam

#endif  // BANTAM_PRINTF_ESCAPES_H_
