// LayeredConfig: the merged view of one fail2ban configuration name
// ("jail", "fail2ban", "filter.d/sshd", "action.d/nftables") with
// fail2ban 1.0 semantics:
//   NAME.conf, NAME.d/*.conf, NAME.local, NAME.d/*.local, in that order,
//   each preceded/followed by its [INCLUDES] before=/after= files (and
//   their .local overlays); later files override earlier ones option by
//   option, and the value an option had before being overridden stays
//   reachable as %(known/opt)s / <known/opt> (section "KNOWN/<section>").
//   Conditional sections such as [Init?family=inet6] fold into [Init] as
//   options named "opt?family=inet6".
// Get() interpolates %(name)s, %(section/name)s, %(known/name)s,
// %(default/name)s and %(__name__)s like fail2ban's ConfigParser subclass.
#ifndef BANTAM_LAYERED_CONFIG_H_
#define BANTAM_LAYERED_CONFIG_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bantam/ini.h"
#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

// Parsed files shared by every reader of one load (fail2ban's share_config):
// filter.d/common.conf is parsed once however many filters include it.
class ConfigFileCache {
 public:
  // Parses on first use. A file that cannot be opened yields a status
  // whose message starts with the path; see `missing()`.
  const Result<IniFile>& Get(const std::string& path);

 private:
  std::unordered_map<std::string, std::unique_ptr<Result<IniFile>>> files_;
};

// Extra lookup values that take precedence over the section (ConfigParser's
// `vars`). Keys are lower-case option names.
using Vars = OrderedMap<std::string>;

enum class LookupCode { kOk, kNoSection, kNoOption, kError };

struct Lookup {
  LookupCode code = LookupCode::kOk;
  std::string value;  // when kOk
  std::string error;  // when kError: "file:line: message"
  bool ok() const { return code == LookupCode::kOk; }
};

class LayeredConfig {
 public:
  // `cache` must outlive this object.
  LayeredConfig(std::string basedir, ConfigFileCache* cache)
      : basedir_(std::move(basedir)), cache_(cache) {}
  LayeredConfig(const LayeredConfig&) = delete;
  LayeredConfig& operator=(const LayeredConfig&) = delete;

  // Reads NAME's files under the base directory. Sets *found to false when
  // none of them exists (not an error by itself). Syntax errors in any file
  // read are returned; a missing included file is reported in warnings().
  Status Read(const std::string& name, bool* found);

  Lookup Get(const std::string& section, const std::string& option, const Vars* vars = nullptr,
             bool raw = false) const;
  // Get() that also understands "known/opt", "default/opt" and
  // "section/opt" as the option name (fail2ban's get_ex).
  Lookup GetEx(const std::string& section, const std::string& option,
               const Vars* vars = nullptr) const;

  bool HasSection(const std::string& section) const;
  bool HasOption(const std::string& section, const std::string& option,
                 bool with_default) const;
  // Sections in order of first appearance, without KNOWN/ ones.
  std::vector<std::string> Sections() const;
  // The section's own option names, in order.
  std::vector<std::string> Options(const std::string& section) const;

  // Overlays one parsed file, as Read() does for each file it reads.
  void MergeFile(const IniFile& ini);
  void MergeDefault(const std::string& option, const std::string& value);
  // Adds `values` to `section`; with a prefix, each name not already
  // starting with it is stored as prefix+name.
  void MergeSection(const std::string& section, const OrderedMap<std::string>& values,
                    const std::string& prefix);

  // Where option was last set (section, then [DEFAULT]); empty when unknown.
  SourceLoc Where(const std::string& section, const std::string& option) const;

  const std::string& basedir() const { return basedir_; }
  const std::vector<std::string>& files() const { return files_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Status CollectIncludes(const std::string& path, const std::vector<std::string>& seen,
                         std::vector<std::string>* out);
  Status ExpandWithLocal(const std::vector<std::string>& paths,
                         const std::vector<std::string>& seen, std::vector<std::string>* out);
  Status Interpolate(const std::string& section, const std::string& option,
                     const std::string& raw, const Vars* vars, std::string* out) const;

  std::string basedir_;
  ConfigFileCache* cache_;
  ConfSection defaults_;
  OrderedMap<ConfSection> sections_;
  std::vector<std::string> files_;
  std::vector<std::string> warnings_;
};

}  // namespace bantam

#endif  // BANTAM_LAYERED_CONFIG_H_
