// Fuzzes the AMI stream parser and the security event formatter: arbitrary
// bytes as what an Asterisk manager (or anything answering on its port)
// sends, fed whole and again split at a point the input chooses, which must
// give the same messages. Every rendered line must stay one line (no LF), and no
// message may exceed the framer's limit. Any input must be handled without
// a crash, hang, leak or UB.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/ami_protocol.h"

namespace {

std::vector<std::string> Run(std::string_view a, std::string_view b) {
  using namespace bantam;
  std::vector<std::string> out;
  SecurityLine line;
  AmiFramer framer(AmiFramer::Callbacks{
                       [&](std::string_view banner) { out.push_back("B" + std::string(banner)); },
                       [&](const AmiMessage& m) {
                         size_t bytes = 0;
                         for (const auto& [k, v] : m.headers) bytes += k.size() + v.size();
                         if (bytes > AmiFramer::kMaxMessage) __builtin_trap();
                         if (FormatSecurityEvent(m, 1.7e9, &line)) {
                           // One line: the framing leaves no LF in a value (a lone CR
                           // inside one is kept, as Asterisk's log would keep it).
                           if (line.line.find('\n') != std::string::npos) __builtin_trap();
                           out.push_back("L" + line.line);
                         } else {
                           out.push_back("M" + std::to_string(m.headers.size()));
                         }
                       },
                       [&](std::string_view why) { out.push_back("D" + std::string(why)); }},
                   true);
  framer.Feed(a);
  framer.Feed(b);
  (void)framer.Finish();
  if (!line.event_tv.empty()) (void)bantam::ParseEventTv(line.event_tv);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t split = size ? data[0] % (size + 1) : 0;
  if (Run(in, {}) != Run(in.substr(0, split), in.substr(split))) __builtin_trap();
  (void)bantam::ParseEventTv(in);
  (void)bantam::LooksLikeAmiCapture(in);
  return 0;
}
