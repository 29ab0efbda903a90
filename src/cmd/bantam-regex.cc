// bantam-regex: the fail2ban-regex drop-in. All logic is in the library.
#include "bantam/regex_tool.h"

int main(int argc, char** argv) { return bantam::RegexToolMain(argc, argv); }
