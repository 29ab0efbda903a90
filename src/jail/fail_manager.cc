#include "bantam/fail_manager.h"

#include <cmath>
#include <iterator>
#include <utility>

namespace bantam {

int FailManager::AddFailure(const IpAddr& id, double time, FailData&& data, int count,
                            bool observed) {
  auto found = index_.find(id);
  if (found == index_.end()) {
    // An observed re-count for an id without failures means it was banned
    // meanwhile; fail2ban drops it rather than start a new window.
    if (observed) return count;
    if (options_.max_entries != 0) EvictTo(options_.max_entries - 1);
    Ticket& t = order_.emplace_back();
    t.id = id;
    t.time = time;
    t.first_time = time;
    t.retry = count;
    t.attempts = 1;
    // The first failure's lines stay as they are, as in fail2ban: they are
    // bounded by maxlines, and maxmatches applies from the second failure.
    t.data = std::move(data);
    index_.emplace(id, std::prev(order_.end()));
    ++fail_total_;
    Touch(id);
    return t.retry;
  }

  // Most recent failure last, so eviction takes the stalest id.
  order_.splice(order_.end(), order_, found->second);
  Ticket& t = *found->second;
  if (time > t.time) {
    if (t.first_time < time - options_.findtime) {
      // Same operation order as fail2ban so the doubles round alike;
      // nearbyint rounds half to even like Python's round().
      t.retry =
          static_cast<int>(std::nearbyint(t.retry / (time - t.first_time) * options_.findtime));
      t.first_time = time - options_.findtime;
    }
    t.time = time;
  }
  t.retry += count;
  t.attempts += 1;
  std::vector<std::string>& kept = t.data.matches;
  if (options_.maxmatches > 0) {
    for (std::string& line : data.matches) kept.push_back(std::move(line));
    const size_t cap = static_cast<size_t>(options_.maxmatches);
    if (kept.size() > cap) kept.erase(kept.begin(), kept.end() - static_cast<ptrdiff_t>(cap));
  } else {
    kept.clear();
  }
  ++fail_total_;
  Touch(id);
  return t.retry;
}

std::optional<Ticket> FailManager::ToBan(const IpAddr* id) {
  if (id != nullptr) {
    auto found = index_.find(*id);
    if (found != index_.end()) {
      if (found->second->retry < options_.maxretry) return std::nullopt;
      Ticket t = std::move(*found->second);
      Erase(found->second);
      return t;
    }
  }
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    if (it->retry >= options_.maxretry) {
      Ticket t = std::move(*it);
      index_.erase(t.id);
      order_.erase(it);
      Touch(t.id);
      return t;
    }
  }
  return std::nullopt;
}

void FailManager::Cleanup(double now) {
  const double cutoff = now - options_.findtime;
  for (auto it = order_.begin(); it != order_.end();) {
    auto next = std::next(it);
    if (it->time <= cutoff) Erase(it);
    it = next;
  }
}

bool FailManager::Service(double now, bool force) {
  if (!force && now < next_service_) return false;
  next_service_ = now + 5;
  Cleanup(now);
  return true;
}

void FailManager::DelFailure(const IpAddr& id) {
  auto found = index_.find(id);
  if (found != index_.end()) Erase(found->second);
}

const Ticket* FailManager::Find(const IpAddr& id) const {
  auto found = index_.find(id);
  return found == index_.end() ? nullptr : &*found->second;
}

void FailManager::Restore(Ticket ticket) {
  if (auto found = index_.find(ticket.id); found != index_.end()) Erase(found->second);
  if (options_.max_entries != 0) EvictTo(options_.max_entries - 1);
  const IpAddr id = ticket.id;
  order_.push_back(std::move(ticket));
  index_.emplace(id, std::prev(order_.end()));
}

void FailManager::set_track_changes(bool on) {
  track_changes_ = on;
  if (!on) changed_.clear();
}

FailManager::Changes FailManager::TakeChanges() {
  Changes changes;
  for (const IpAddr& id : changed_) {
    auto found = index_.find(id);
    if (found == index_.end()) {
      changes.removed.push_back(id);
    } else {
      changes.upserts.push_back(&*found->second);
    }
  }
  changed_.clear();
  return changes;
}

void FailManager::set_max_entries(size_t value) {
  options_.max_entries = value;
  if (value != 0) EvictTo(value);
}

void FailManager::TakeFrom(FailManager& other) {
  // Swapping the containers keeps the index's iterators valid.
  order_.swap(other.order_);
  index_.swap(other.index_);
  other.order_.clear();
  other.index_.clear();
  if (track_changes_) {
    changed_.merge(other.changed_);
  }
  other.changed_.clear();
  fail_total_ = other.fail_total_;
  evicted_total_ = other.evicted_total_;
  if (options_.max_entries != 0) EvictTo(options_.max_entries);
}

void FailManager::Erase(Order::iterator it) {
  Touch(it->id);
  index_.erase(it->id);
  order_.erase(it);
}

void FailManager::EvictTo(size_t limit) {
  while (index_.size() > limit) {
    Erase(order_.begin());
    ++evicted_total_;
  }
}

}  // namespace bantam
