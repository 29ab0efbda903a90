// Fuzzes the filter engine and date detection on arbitrary log text: the
// bundled asterisk and sshd filters (prefregex, failregexes, multi-line
// mlfid state, <F-CONTENT> rewriting) with fail2ban's default date
// templates, plus a datepattern taken from the input's first line.
// Any input must be processed without a crash, hang, leak or UB.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bantam/config_loader.h"
#include "bantam/date_detector.h"
#include "bantam/filter.h"
#include "bantam/utf8.h"

namespace {

using namespace bantam;

std::unique_ptr<Filter> Load(const char* name, int maxlines) {
  Result<LoadedFilter> f = LoadFilter(BANTAM_SOURCE_DIR "/config", std::string("filter.d/") + name,
                                      OrderedMap<std::string>());
  if (!f.ok()) __builtin_trap();
  FilterSettings s;
  for (const Value& cmd : f->commands) {
    const Value::List& c = cmd.as_list();
    const std::string& opt = c[2].as_string();
    std::vector<std::string> vals;
    if (c[0].as_string() == "multi-set") {
      for (const Value& v : c[3].as_list()) vals.push_back(v.ToPyStr());
    } else {
      vals.push_back(c[3].ToPyStr());
    }
    for (const std::string& v : vals) {
      if (opt == "prefregex") s.prefregex = v;
      if (opt == "addfailregex") s.failregex.push_back(v);
      if (opt == "addignoreregex") s.ignoreregex.push_back(v);
      if (opt == "datepattern") s.datepattern = v;
    }
  }
  s.maxlines = maxlines;
  s.check_all_regex = true;
  s.ignore_pending = false;
  s.check_find_time = false;
  s.return_raw_host = true;
  Result<std::unique_ptr<Filter>> filter = Filter::Create(std::move(s));
  if (!filter.ok()) __builtin_trap();
  return std::move(*filter);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<Filter> asterisk = Load("asterisk", 1);
  static std::unique_ptr<Filter> sshd = Load("sshd", 5);
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::vector<Failure> failures;
  std::string scratch;
  uint64_t seq = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = DecodeUtf8Replace(text.substr(pos, nl - pos), &scratch);
    asterisk->ProcessLine(line, 1124013600, ++seq, &failures);
    sshd->ProcessLine(line, 1124013600, seq, &failures);
    pos = nl + 1;
  }

  // The first line as a datepattern, searched in the rest.
  const size_t nl = text.find('\n');
  if (nl != std::string_view::npos) {
    DateDetectorOptions o;
    o.datepattern = std::string(text.substr(0, nl));
    Result<DateDetector> dd = DateDetector::Create(o);
    if (dd.ok()) {
      std::string rest = std::string(DecodeUtf8Replace(text.substr(nl + 1), &scratch));
      dd->Match(rest, 1124013600);
    }
  }
  return 0;
}
