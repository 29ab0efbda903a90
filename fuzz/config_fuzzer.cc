// Fuzzes the configuration reader end to end on one in-memory file:
// ConfigParser syntax, %(...)s interpolation (including known/ and
// default/ references), <tag> substitution and NAME[opt=...] lists.
// Any input must give a value or a clean error: no crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "bantam/ini.h"
#include "bantam/layered_config.h"
#include "bantam/option_list.h"
#include "bantam/tag_substitution.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bantam;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<IniFile> ini = ParseIni(text, "fuzz.conf");
  if (!ini.ok()) return 0;
  ConfigFileCache cache;
  LayeredConfig cfg("/nonexistent", &cache);
  cfg.MergeFile(*ini);
  cfg.MergeFile(*ini);  // a second overlay fills KNOWN/ sections
  for (const std::string& section : cfg.Sections()) {
    OrderedMap<std::string> values;
    for (const std::string& opt : cfg.Options(section)) {
      Lookup l = cfg.Get(section, opt);
      cfg.GetEx(section, "known/" + opt);
      if (!l.ok()) continue;
      values.Set(opt, l.value);
      Result<NamedOptions> named = ParseNamedOptions(l.value);
      (void)named;
      for (const std::string& item : SplitNamedOptionsList(l.value)) {
        Result<NamedOptions> each = ParseNamedOptions(item);
        (void)each;
      }
      SplitWords(l.value);
    }
    Result<OrderedMap<std::string>> subst = SubstituteTags(
        values, {}, [&](const std::string& tag) -> Result<std::optional<std::string>> {
          Lookup l = cfg.GetEx(section, tag);
          if (l.code == LookupCode::kError) return Status::Error(l.error);
          if (!l.ok()) return std::optional<std::string>();
          return std::optional<std::string>(l.value);
        });
    (void)subst;
  }
  return 0;
}
