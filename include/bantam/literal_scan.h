// LiteralScan: one pass over a log line that finds which of many strings
// occur in it, for every filter that reads the line. Each filter's line
// gate (Filter) asks for the strings one of which its regexes need; with
// several jails on one file the line is scanned once for all of them
// instead of once per jail and string.
//
// A scan is exact: a string is reported present if and only if it occurs
// in the scanned text. Shared scans are per thread (see ForThisThread):
// the daemon's jails match on the event loop thread.
#ifndef BANTAM_LITERAL_SCAN_H_
#define BANTAM_LITERAL_SCAN_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/failregex.h"

namespace bantam {

class LiteralScan {
 public:
  LiteralScan() = default;
  LiteralScan(const LiteralScan&) = delete;
  LiteralScan& operator=(const LiteralScan&) = delete;

  // The scan shared by the filters of this thread. Lives while one of the
  // returned pointers does.
  static std::shared_ptr<LiteralScan> ForThisThread();

  // Adds `text` (not empty) to the set and returns its id; the same text
  // always gets the same id. Forgets the last scanned line.
  uint32_t Add(std::string_view text);

  // Scans the text a + b + c (a line given in the pieces a filter keeps:
  // before, of and after its date) unless it is the text scanned last.
  // Afterwards Has(id) tells whether string `id` occurs in it.
  // `line_key`: 0, or a key (NewLineKey) that stands for the text a + b + c:
  // a scan with the same key is then known to be of the same text.
  void Scan(std::string_view a, std::string_view b, std::string_view c, uint64_t line_key = 0);
  bool Has(uint32_t id) const { return (found_[id / 64] >> (id % 64) & 1) != 0; }
  // Whether any string of a set occurs: `mask` has bit id % 64 of word
  // id / 64 set for each of the set's ids (see MaskOf).
  bool HasAny(const std::vector<uint64_t>& mask) const {
    for (size_t w = 0; w < mask.size(); ++w) {
      if ((found_[w] & mask[w]) != 0) return true;
    }
    return false;
  }
  static std::vector<uint64_t> MaskOf(const std::vector<uint32_t>& ids);

  // How many Scan() calls scanned (the others reused the last scan); for
  // tests.
  uint64_t scans() const { return scans_; }

 private:
  void Rebuild();

  // Where a string is looked for: at the two bytes `offset` and
  // `offset + 1` of it, chosen around its rarest byte (its anchor, as
  // FailRegex's per-regex prefilter chooses it). A pair of bytes sorts out
  // far more than one: with the ten stock filters that read an Asterisk
  // log, one byte drew ~58 candidates a line, the pair a few.
  struct PairEntry {
    uint16_t pair;    // byte offset | byte offset + 1 << 8
    uint32_t id;      // in literals_
    uint32_t offset;
  };
  void OnPair(const unsigned char* text, size_t n, size_t i, uint32_t pair);

  std::vector<FailRegex::RequiredLiteral> literals_;
  // Bit pair set for every pair a string is looked for by, and every pair
  // starting with a one-byte string's byte (single_).
  std::vector<uint64_t> pairs_;
  // entries_ grouped by bucket (Bucket(pair)): those of bucket k are
  // entries_[bucket_start_[k]] .. entries_[bucket_start_[k + 1]].
  static constexpr uint32_t kBuckets = 1024;
  static uint32_t Bucket(uint32_t pair) { return (pair * 0x9E37u >> 6) % kBuckets; }
  std::vector<PairEntry> entries_;
  std::array<uint32_t, kBuckets + 1> bucket_start_{};
  std::array<int32_t, 256> single_{};  // id of the one-byte string of each byte, or -1
  std::vector<uint64_t> found_;
  std::string last_;  // the text of the last scan, when last_valid_
  bool last_valid_ = false;
  uint64_t last_key_ = 0;  // the last scan's key; 0: none
  uint64_t scans_ = 0;
};

}  // namespace bantam

#endif  // BANTAM_LITERAL_SCAN_H_
