// OrderedMap: a string-keyed map that remembers insertion order.
//
// fail2ban's configuration semantics depend on Python dict order (option
// order decides command order in the dump), so every option table in the
// config engine is one of these. Re-assigning a key keeps its position.
#ifndef BANTAM_ORDERED_MAP_H_
#define BANTAM_ORDERED_MAP_H_

#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bantam {

template <class V>
class OrderedMap {
 public:
  using Entry = std::pair<std::string, V>;

  // Returns nullptr when absent. The pointer is invalidated by insertion.
  const V* Find(std::string_view key) const {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  V* Find(std::string_view key) {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  bool Contains(std::string_view key) const { return index_.count(std::string(key)) != 0; }

  // Inserts at the end, or overwrites in place.
  V& Set(std::string key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      entries_[it->second].second = std::move(value);
      return entries_[it->second].second;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(value));
    return entries_.back().second;
  }

  // Default-constructs at the end when absent.
  V& operator[](const std::string& key) {
    auto it = index_.find(key);
    if (it != index_.end()) return entries_[it->second].second;
    return Set(key, V());
  }

  void Erase(std::string_view key) {
    auto it = index_.find(std::string(key));
    if (it == index_.end()) return;
    size_t pos = it->second;
    index_.erase(it);
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(pos));
    for (auto& [k, i] : index_)
      if (i > pos) --i;
  }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  auto begin() { return entries_.begin(); }
  auto end() { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace bantam

#endif  // BANTAM_ORDERED_MAP_H_
