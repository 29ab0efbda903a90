#include "bantam/literal_scan.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "bantam/failregex.h"

namespace bantam {

std::shared_ptr<LiteralScan> LiteralScan::ForThisThread() {
  thread_local std::weak_ptr<LiteralScan> current;
  std::shared_ptr<LiteralScan> scan = current.lock();
  if (!scan) {
    scan = std::make_shared<LiteralScan>();
    current = scan;
  }
  return scan;
}

uint32_t LiteralScan::Add(std::string_view text) {
  for (size_t i = 0; i < literals_.size(); ++i) {
    if (literals_[i].text == text) return static_cast<uint32_t>(i);
  }
  literals_.emplace_back(std::string(text));
  Rebuild();
  return static_cast<uint32_t>(literals_.size() - 1);
}

std::vector<uint64_t> LiteralScan::MaskOf(const std::vector<uint32_t>& ids) {
  std::vector<uint64_t> mask;
  for (uint32_t id : ids) {
    if (mask.size() <= id / 64) mask.resize(id / 64 + 1, 0);
    mask[id / 64] |= uint64_t{1} << (id % 64);
  }
  return mask;
}

void LiteralScan::Rebuild() {
  pairs_.assign(65536 / 64, 0);
  entries_.clear();
  single_.fill(-1);
  const auto set_pair = [this](uint32_t pair) { pairs_[pair / 64] |= uint64_t{1} << (pair % 64); };
  for (size_t i = 0; i < literals_.size(); ++i) {
    const FailRegex::RequiredLiteral& lit = literals_[i];
    const auto* t = reinterpret_cast<const unsigned char*>(lit.text.data());
    if (lit.text.size() == 1) {
      single_[t[0]] = static_cast<int32_t>(i);
      for (uint32_t next = 0; next < 256; ++next) set_pair(t[0] | next << 8);
      continue;
    }
    const size_t offset = lit.anchor + 1 < lit.text.size() ? lit.anchor : lit.anchor - 1;
    const auto pair = static_cast<uint16_t>(t[offset] | t[offset + 1] << 8);
    set_pair(pair);
    entries_.push_back({pair, static_cast<uint32_t>(i), static_cast<uint32_t>(offset)});
  }
  std::sort(entries_.begin(), entries_.end(), [](const PairEntry& x, const PairEntry& y) {
    return Bucket(x.pair) < Bucket(y.pair);
  });
  bucket_start_.fill(0);
  for (const PairEntry& e : entries_) ++bucket_start_[Bucket(e.pair) + 1];
  for (uint32_t k = 0; k < kBuckets; ++k) bucket_start_[k + 1] += bucket_start_[k];
  found_.assign((literals_.size() + 63) / 64, 0);
  last_valid_ = false;
  last_key_ = 0;
}

void LiteralScan::OnPair(const unsigned char* text, size_t n, size_t i, uint32_t pair) {
  if (const int32_t id = single_[text[i]]; id >= 0) {
    found_[static_cast<uint32_t>(id) / 64] |= uint64_t{1} << (id % 64);
  }
  const uint32_t bucket = Bucket(pair);
  for (uint32_t k = bucket_start_[bucket]; k < bucket_start_[bucket + 1]; ++k) {
    const PairEntry* const e = &entries_[k];
    if (e->pair != pair) continue;
    const FailRegex::RequiredLiteral& lit = literals_[e->id];
    if (i < e->offset || i - e->offset + lit.text.size() > n) continue;
    if (lit.StartsAt(reinterpret_cast<const char*>(text) + i - e->offset)) {
      found_[e->id / 64] |= uint64_t{1} << (e->id % 64);
    }
  }
}

void LiteralScan::Scan(std::string_view a, std::string_view b, std::string_view c,
                       uint64_t line_key) {
  const size_t n = a.size() + b.size() + c.size();
  if (line_key != 0 && line_key == last_key_) return;
  // string_view's compare, not memcmp: a piece may be an empty view
  // without data (nullptr), which memcmp must not be given.
  const std::string_view last = last_;
  if (line_key == 0 && last_valid_ && last.size() == n && last.substr(0, a.size()) == a &&
      last.substr(a.size(), b.size()) == b && last.substr(a.size() + b.size()) == c) {
    return;
  }
  ++scans_;
  last_.assign(a).append(b).append(c);
  last_valid_ = true;
  last_key_ = line_key;
  std::fill(found_.begin(), found_.end(), 0);
  if (literals_.empty()) return;
  // The string's terminating NUL is the second byte of the last pair: only
  // a one-byte string can be found there (the others do not fit).
  const auto* const text = reinterpret_cast<const unsigned char*>(last_.c_str());
  const uint64_t* const pairs = pairs_.data();
  for (size_t i = 0; i < n; ++i) {
    uint16_t pair;  // text[i] | text[i + 1] << 8 on this little-endian host
    std::memcpy(&pair, text + i, 2);
    if (std::endian::native == std::endian::big) pair = static_cast<uint16_t>(pair >> 8 | pair << 8);
    if ((pairs[pair / 64] >> (pair % 64) & 1) != 0) OnPair(text, n, i, pair);
  }
}

}  // namespace bantam
