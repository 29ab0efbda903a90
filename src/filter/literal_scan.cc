#include "bantam/literal_scan.h"

#include <algorithm>
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
  std::array<uint32_t, 256> count{};
  for (const FailRegex::RequiredLiteral& lit : literals_) {
    ++count[static_cast<unsigned char>(lit.text[lit.anchor])];
  }
  first_[0] = 0;
  for (size_t b = 0; b < 256; ++b) first_[b + 1] = first_[b] + count[b];
  by_byte_.assign(literals_.size(), 0);
  std::array<uint32_t, 256> next{};
  for (size_t b = 0; b < 256; ++b) next[b] = first_[b];
  for (size_t i = 0; i < literals_.size(); ++i) {
    const auto b = static_cast<unsigned char>(literals_[i].text[literals_[i].anchor]);
    by_byte_[next[b]++] = static_cast<uint32_t>(i);
  }
  found_.assign((literals_.size() + 63) / 64, 0);
  last_valid_ = false;
  last_key_ = 0;
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
  const char* const text = last_.data();
  for (size_t i = 0; i < n; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const uint32_t end = first_[byte + 1];
    for (uint32_t k = first_[byte]; k < end; ++k) {
      const uint32_t id = by_byte_[k];
      const FailRegex::RequiredLiteral& lit = literals_[id];
      if (i < lit.anchor || i - lit.anchor + lit.text.size() > n) continue;
      if (lit.StartsAt(text + i - lit.anchor)) {
        found_[id / 64] |= uint64_t{1} << (id % 64);
      }
    }
  }
}

}  // namespace bantam
