// Fuzzes the whole configuration load and check: the input becomes
// jail.local on top of a small fixed tree (a filter with [Init] options and
// includes, an action with [Init?family=inet6]), then LoadConfig and
// CheckConfig run as `bantam -t` would. Log path globs go to a fake so a
// pattern such as /*/*/*/* never walks the real file system.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "bantam/config_check.h"
#include "bantam/config_loader.h"

namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

const std::string& Tree() {
  static const std::string root = [] {
    char tmpl[] = "/tmp/bantam-fuzz-XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    ::mkdir((dir + "/filter.d").c_str(), 0755);
    ::mkdir((dir + "/action.d").c_str(), 0755);
    WriteFile(dir + "/fail2ban.conf", "[Definition]\nloglevel = INFO\ndbpurgeage = 1d\n");
    WriteFile(dir + "/jail.conf",
              "[DEFAULT]\nbantime = 10m\nfindtime = 10m\nmaxretry = 5\nbanaction = fw\n"
              "action_ = %(banaction)s[port=\"%(port)s\", protocol=\"%(protocol)s\"]\n"
              "action = %(action_)s\nport = 0:65535\nprotocol = tcp\n"
              "[pbx]\nfilter = pbx[mode=%(mode)s]\nmode = normal\nlogpath = /var/log/x\n");
    WriteFile(dir + "/filter.d/common.conf", "[DEFAULT]\n_daemon = \\S+\n");
    WriteFile(dir + "/filter.d/pbx.conf",
              "[INCLUDES]\nbefore = common.conf\n[Init]\nmode = normal\n"
              "[Definition]\nfailregex = ^<_daemon>: <mode> failed from <HOST>$\n"
              "ignoreregex =\ndatepattern = {^LN-BEG}\n");
    WriteFile(dir + "/action.d/fw.conf",
              "[Definition]\nactionstart = start <name> <port>\n"
              "actionban = ban <ip> <blocktype> <matches>\nactionunban = unban <ip>\n"
              "[Init]\nblocktype = reject\nname = default\n"
              "[Init?family=inet6]\nblocktype = reject6\n");
    return dir;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& root = Tree();
  WriteFile(root + "/jail.local", std::string(reinterpret_cast<const char*>(data), size));
  bantam::LoadOptions options;
  options.basedir = root;
  options.glob_logpath = [](const std::string& p) { return std::vector<std::string>{p}; };
  bantam::Result<bantam::LoadedConfig> cfg = bantam::LoadConfig(options);
  if (cfg.ok()) {
    bantam::CheckConfig(&*cfg);
    for (const bantam::Value& v : cfg->commands) v.ToJson();
  }
  return 0;
}
