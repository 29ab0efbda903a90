// bantam: the fail2ban-client compatible command line client (also run as
// `fail2ban-client`). All logic is in the library (client.h).
#include <string>
#include <vector>

#include "bantam/client.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return bantam::RunClient(args, bantam::SystemClientEnv(args.empty() ? "bantam" : args[0]));
}
