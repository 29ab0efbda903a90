#include "bantam/printf_escapes.h"

namespace bantam {

bool PrintfUnescape(const std::string& s, bool b_arg, std::string* out) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      *out += s[i];
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 'n':
        *out += '\n';
        break;
      case 't':
        *out += '\t';
        break;
      case 'r':
        *out += '\r';
        break;
      case 'a':
        *out += '\a';
        break;
      case 'b':
        *out += '\b';
        break;
      case 'f':
        *out += '\f';
        break;
      case 'v':
        *out += '\v';
        break;
      case '\\':
        *out += '\\';
        break;
      case 'c':
        if (b_arg) return false;
        *out += "\\c";
        break;
      default:
        if (c >= '0' && c <= '7') {
          // %b: \0NNN; format: \NNN.
          size_t j = i;
          if (b_arg && c == '0') ++j;
          int v = 0, k = 0;
          while (k < 3 && j < s.size() && s[j] >= '0' && s[j] <= '7')
            v = v * 8 + (s[j++] - '0'), ++k;
          if (k == 0 && !(b_arg && c == '0')) {
            *out += '\\';
            *out += c;
            break;
          }
          *out += static_cast<char>(v);
          i = j - 1;
        } else {
          *out += '\\';
          *out += c;
        }
    }
  }
  return true;
}

}  // namespace bantam
