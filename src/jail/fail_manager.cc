#include "bantam/fail_manager.h"

#include <sys/socket.h>

#include <cmath>
#include <utility>

namespace bantam {

namespace {

constexpr size_t kMinIndex = 16;

}  // namespace

FailManager::FailManager(FailManagerOptions options) : options_(options) {
  static_assert(sizeof(void*) != 8 || sizeof(Slot) == 64, "a held id should fit one cache line");
}

FailManager::~FailManager() = default;

// ---------------------------------------------------------------------------
// Ids and the index.

IpAddr FailManager::IdOf(const Slot& s) const {
  if (s.family == 0) return s.extra->id;
  return IpAddr::FromBits(s.family, s.plen, s.hi, s.lo);
}

size_t FailManager::HashOf(const Slot& s) const {
  if (s.family == 0) return s.extra->id.Hash();
  return IpAddr::FromBits(s.family, s.plen, s.hi, s.lo).Hash();
}

bool FailManager::SameId(const Slot& s, const IpAddr& id) const {
  if (s.family == 0) return s.extra->id == id;
  return s.family == id.family() && s.plen == id.plen() && s.hi == id.bits_hi() &&
         s.lo == id.bits_lo() && id.raw().empty();
}

uint32_t FailManager::Lookup(const IpAddr& id) const {
  if (size_ == 0) return kNil;
  const size_t mask = index_.size() - 1;
  for (size_t p = id.Hash() & mask;; p = (p + 1) & mask) {
    const uint32_t i = index_[p];
    if (i == kNil) return kNil;
    if (SameId(At(i), id)) return i;
  }
}

void FailManager::GrowIndex() {
  std::vector<uint32_t> old;
  old.swap(index_);
  index_.assign(old.empty() ? kMinIndex : old.size() * 2, kNil);
  const size_t mask = index_.size() - 1;
  for (uint32_t i : old) {
    if (i == kNil) continue;
    size_t p = HashOf(At(i)) & mask;
    while (index_[p] != kNil) p = (p + 1) & mask;
    index_[p] = i;
  }
}

uint32_t FailManager::Insert(const IpAddr& id) {
  // Load factor at most 3/4 keeps linear probes short.
  if ((size_ + 1) * 4 > index_.size() * 3) GrowIndex();
  uint32_t i = free_;
  if (i != kNil) {
    free_ = At(i).next;
  } else {
    if ((slots_used_ >> kChunkBits) == chunks_.size()) {
      chunks_.push_back(std::make_unique<Slot[]>(size_t{1} << kChunkBits));
    }
    i = slots_used_++;
  }
  Slot& s = At(i);
  s = Slot{};
  if (id.is_ip() && id.raw().empty()) {
    s.family = static_cast<int8_t>(id.family());
    s.plen = static_cast<uint8_t>(id.plen());
    s.hi = id.bits_hi();
    s.lo = id.bits_lo();
  } else {
    ExtraOf(s).id = id;
  }
  const size_t mask = index_.size() - 1;
  size_t p = id.Hash() & mask;
  while (index_[p] != kNil) p = (p + 1) & mask;
  index_[p] = i;
  ++size_;
  LinkLast(i);
  return i;
}

void FailManager::IndexRemove(uint32_t slot) {
  const size_t mask = index_.size() - 1;
  size_t hole = HashOf(At(slot)) & mask;
  while (index_[hole] != slot) hole = (hole + 1) & mask;
  // Backward-shift deletion: pull later members of the probe run into the
  // hole when their home position allows it, so no tombstones build up.
  for (size_t p = (hole + 1) & mask; index_[p] != kNil; p = (p + 1) & mask) {
    const size_t home = HashOf(At(index_[p])) & mask;
    // Whether `home` lies cyclically in (hole, p]: then it must stay.
    const bool stays = hole <= p ? (hole < home && home <= p) : (hole < home || home <= p);
    if (stays) continue;
    index_[hole] = index_[p];
    hole = p;
  }
  index_[hole] = kNil;
}

// ---------------------------------------------------------------------------
// Order of last failures.

void FailManager::Unlink(uint32_t i) {
  Slot& s = At(i);
  if (s.prev != kNil) At(s.prev).next = s.next; else head_ = s.next;
  if (s.next != kNil) At(s.next).prev = s.prev; else tail_ = s.prev;
  s.prev = s.next = kNil;
}

void FailManager::LinkLast(uint32_t i) {
  Slot& s = At(i);
  s.prev = tail_;
  s.next = kNil;
  if (tail_ != kNil) At(tail_).next = i; else head_ = i;
  tail_ = i;
}

void FailManager::Erase(uint32_t i) {
  Slot& s = At(i);
  if (track_changes_) removed_.insert(IdOf(s));
  s.dirty = 0;
  IndexRemove(i);
  Unlink(i);
  s.extra.reset();
  s.next = free_;
  free_ = i;
  --size_;
}

void FailManager::EvictTo(size_t limit) {
  while (size_ > limit) {
    Erase(head_);
    ++evicted_total_;
  }
}

// ---------------------------------------------------------------------------
// What a slot holds besides the window.

FailManager::Extra& FailManager::ExtraOf(Slot& s) {
  if (!s.extra) s.extra = std::make_unique<Extra>();
  return *s.extra;
}

void FailManager::SetGroups(Slot& s, const IpAddr& id, const std::vector<FailData::Entry>& groups) {
  // A shape fits when every value is None or the id's text, as <HOST>'s
  // ip4/ip6/dns groups are; the text is made once, and only if needed.
  std::string text;
  bool have_text = false;
  bool fits = true;
  for (const auto& [name, value] : groups) {
    if (!value) continue;
    if (!have_text) {
      text = id.ToString();
      have_text = true;
    }
    if (*value != text) {
      fits = false;
      break;
    }
  }
  if (fits) {
    for (size_t k = 0; k < shapes_.size(); ++k) {
      const Shape& shape = shapes_[k];
      if (shape.size() != groups.size()) continue;
      bool same = true;
      for (size_t g = 0; g < groups.size() && same; ++g) {
        same = shape[g].first == groups[g].first && shape[g].second == !groups[g].second;
      }
      if (same) {
        s.shape = static_cast<uint16_t>(k);
        return;
      }
    }
    if (shapes_.size() < kNoShape) {
      Shape shape;
      shape.reserve(groups.size());
      for (const auto& [name, value] : groups) shape.emplace_back(name, !value);
      shapes_.push_back(std::move(shape));
      s.shape = static_cast<uint16_t>(shapes_.size() - 1);
      return;
    }
  }
  s.shape = kNoShape;
  ExtraOf(s).groups = groups;
}

Ticket FailManager::MakeTicket(Slot& s, bool take) const {
  Ticket t;
  t.id = IdOf(s);
  t.time = s.time;
  t.first_time = s.first_time;
  t.retry = s.retry;
  t.attempts = s.attempts;
  t.ban_count = s.ban_count;
  if (s.shape != kNoShape) {
    const Shape& shape = shapes_[s.shape];
    std::string text;
    if (!shape.empty()) text = t.id.ToString();
    for (const auto& [name, none] : shape) {
      t.data.Set(name, none ? std::nullopt : std::optional<std::string>(text));
    }
  }
  if (Extra* x = s.extra.get()) {
    if (s.shape == kNoShape) {
      for (auto& [name, value] : x->groups) {
        t.data.Set(name, take ? std::move(value) : value);
      }
    }
    t.data.matches = take ? std::move(x->matches) : x->matches;
    t.ban_time = x->ban_time;
    t.restored = x->restored;
    t.banned = x->banned;
  }
  return t;
}

// ---------------------------------------------------------------------------
// fail2ban's FailManager.

int FailManager::AddFailure(const IpAddr& id, double time, FailData&& data, int count,
                            bool observed) {
  uint32_t i = Lookup(id);
  if (i == kNil) {
    // An observed re-count for an id without failures means it was banned
    // meanwhile; fail2ban drops it rather than start a new window.
    if (observed) return count;
    if (options_.max_entries != 0) EvictTo(options_.max_entries - 1);
    i = Insert(id);
    Slot& s = At(i);
    s.time = time;
    s.first_time = time;
    s.retry = count;
    s.attempts = 1;
    SetGroups(s, id, data.groups());
    // The first failure's lines stay as they are, as in fail2ban: they are
    // bounded by maxlines, and maxmatches applies from the second failure.
    if (keep_matches_ && !data.matches.empty()) ExtraOf(s).matches = std::move(data.matches);
    ++fail_total_;
    if (!removed_.empty()) removed_.erase(id);  // back within the period: a change
    Touch(i);
    return s.retry;
  }

  // Most recent failure last, so eviction takes the stalest id.
  if (i != tail_) {
    Unlink(i);
    LinkLast(i);
  }
  Slot& s = At(i);
  if (time > s.time) {
    if (s.first_time < time - options_.findtime) {
      // Same operation order as fail2ban so the doubles round alike;
      // nearbyint rounds half to even like Python's round().
      s.retry = static_cast<int>(
          std::nearbyint(s.retry / (time - s.first_time) * options_.findtime));
      s.first_time = time - options_.findtime;
    }
    s.time = time;
  }
  s.retry += count;
  s.attempts += 1;
  if (options_.maxmatches > 0 && keep_matches_) {
    if (!data.matches.empty() || s.extra) {
      std::vector<std::string>& kept = ExtraOf(s).matches;
      for (std::string& line : data.matches) kept.push_back(std::move(line));
      const size_t cap = static_cast<size_t>(options_.maxmatches);
      if (kept.size() > cap) kept.erase(kept.begin(), kept.end() - static_cast<ptrdiff_t>(cap));
    }
  } else if (s.extra) {
    s.extra->matches.clear();
    s.extra->matches.shrink_to_fit();
  }
  ++fail_total_;
  Touch(i);
  return s.retry;
}

std::optional<Ticket> FailManager::ToBan(const IpAddr* id) {
  if (id != nullptr) {
    const uint32_t i = Lookup(*id);
    if (i != kNil) {
      if (At(i).retry < options_.maxretry) return std::nullopt;
      Ticket t = MakeTicket(At(i), /*take=*/true);
      Erase(i);
      return t;
    }
  }
  for (uint32_t i = head_; i != kNil; i = At(i).next) {
    if (At(i).retry >= options_.maxretry) {
      Ticket t = MakeTicket(At(i), /*take=*/true);
      Erase(i);
      return t;
    }
  }
  return std::nullopt;
}

void FailManager::Cleanup(double now) {
  const double cutoff = now - options_.findtime;
  for (uint32_t i = head_; i != kNil;) {
    const uint32_t next = At(i).next;
    if (At(i).time <= cutoff) Erase(i);
    i = next;
  }
}

bool FailManager::Service(double now, bool force) {
  if (!force && now < next_service_) return false;
  next_service_ = now + 5;
  Cleanup(now);
  return true;
}

void FailManager::DelFailure(const IpAddr& id) {
  const uint32_t i = Lookup(id);
  if (i != kNil) Erase(i);
}

const Ticket* FailManager::Find(const IpAddr& id) const {
  const uint32_t i = Lookup(id);
  if (i == kNil) return nullptr;
  // MakeTicket only moves from the slot when asked to.
  found_ = MakeTicket(const_cast<Slot&>(At(i)), /*take=*/false);
  return &found_;
}

void FailManager::Restore(Ticket ticket) {
  if (const uint32_t old = Lookup(ticket.id); old != kNil) Erase(old);
  if (options_.max_entries != 0) EvictTo(options_.max_entries - 1);
  const uint32_t i = Insert(ticket.id);
  Slot& s = At(i);
  s.time = ticket.time;
  s.first_time = ticket.first_time;
  s.retry = ticket.retry;
  s.attempts = ticket.attempts;
  s.ban_count = ticket.ban_count;
  SetGroups(s, ticket.id, ticket.data.groups());
  if (keep_matches_ && !ticket.data.matches.empty()) {
    ExtraOf(s).matches = std::move(ticket.data.matches);
  }
  if (ticket.ban_time || ticket.restored || ticket.banned) {
    Extra& x = ExtraOf(s);
    x.ban_time = ticket.ban_time;
    x.restored = ticket.restored;
    x.banned = ticket.banned;
  }
  // Replacing an entry is a change; a restored one is saved already.
  if (!removed_.empty() && removed_.erase(ticket.id) != 0) Touch(i);
}

void FailManager::set_track_changes(bool on) {
  track_changes_ = on;
  if (on) return;
  for (uint32_t i : dirty_) At(i).dirty = 0;
  dirty_.clear();
  removed_.clear();
}

FailManager::Changes FailManager::TakeChanges() {
  Changes changes;
  for (uint32_t i : dirty_) {
    Slot& s = At(i);
    if (!s.dirty) continue;  // freed since, or listed twice
    s.dirty = 0;
    changes.upserts.push_back(IdOf(s));
  }
  dirty_.clear();
  changes.removed.assign(removed_.begin(), removed_.end());
  removed_.clear();
  return changes;
}

void FailManager::set_max_entries(size_t value) {
  options_.max_entries = value;
  if (value != 0) EvictTo(value);
}

void FailManager::TakeFrom(FailManager& other) {
  // This manager's own pending changes are of entries about to be dropped:
  // kept by id, they are told as upserts if `other` holds them, else removed.
  std::vector<IpAddr> mine;
  if (track_changes_) {
    for (uint32_t i : dirty_) {
      if (At(i).dirty) mine.push_back(IdOf(At(i)));
    }
  }
  dirty_.clear();
  // Slot indices stay valid: the whole storage moves together.
  chunks_ = std::move(other.chunks_);
  slots_used_ = std::exchange(other.slots_used_, 0);
  free_ = std::exchange(other.free_, kNil);
  head_ = std::exchange(other.head_, kNil);
  tail_ = std::exchange(other.tail_, kNil);
  size_ = std::exchange(other.size_, 0);
  index_ = std::move(other.index_);
  shapes_ = std::move(other.shapes_);
  other.chunks_.clear();
  other.index_.clear();
  other.shapes_.clear();
  dirty_ = std::move(other.dirty_);
  other.dirty_.clear();
  if (track_changes_) {
    removed_.merge(other.removed_);
  } else {
    for (uint32_t i : dirty_) At(i).dirty = 0;
    dirty_.clear();
  }
  other.removed_.clear();
  for (const IpAddr& id : mine) {
    if (const uint32_t i = Lookup(id); i != kNil) {
      Touch(i);
    } else {
      removed_.insert(id);
    }
  }
  fail_total_ = other.fail_total_;
  evicted_total_ = other.evicted_total_;
  if (options_.max_entries != 0) EvictTo(options_.max_entries);
}

}  // namespace bantam
