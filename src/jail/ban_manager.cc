#include "bantam/ban_manager.h"

#include <iterator>
#include <utility>

namespace bantam {

AddBanOutcome BanManager::AddBan(Ticket ticket, const Ticket** existing) {
  const double end = ticket.EndOfBan(ban_time_);
  if (end < clock_.Now()) return AddBanOutcome::kExpired;
  auto found = index_.find(ticket.id);
  if (found != index_.end()) {
    Entry& old = *found->second;
    if (existing != nullptr) *existing = &old.ticket;
    if (end <= old.end) return AddBanOutcome::kAlreadyBanned;
    // Keep the old start (actions already saw it) and stretch the bantime so
    // the ban ends where the new ticket's would.
    double bt = ticket.BanTimeOr(ban_time_);
    if (bt != kPermanentBanTime && ticket.time > old.ticket.time)
      bt += ticket.time - old.ticket.time;
    old.ticket.ban_time = bt;
    Reindex(found->second);
    return AddBanOutcome::kProlonged;
  }
  ticket.ban_count += 1;
  Entry& e = order_.emplace_back();
  e.ticket = std::move(ticket);
  e.end = end;
  e.seq = next_seq_++;
  auto it = std::prev(order_.end());
  index_.emplace(e.ticket.id, it);
  by_end_.insert(it);
  ++ban_total_;
  return AddBanOutcome::kAdded;
}

std::vector<Ticket> BanManager::TakeDue(double now, size_t max_count) {
  std::vector<Ticket> due;
  while (!by_end_.empty() && due.size() < max_count) {
    auto it = *by_end_.begin();
    // Permanent bans end at kMaxBanEnd and are never due.
    if (it->end >= kMaxBanEnd || !(now > it->end)) break;
    due.push_back(Erase(it));
  }
  return due;
}

double BanManager::NextUnbanTime() const {
  return by_end_.empty() ? kMaxBanEnd : (*by_end_.begin())->end;
}

std::optional<Ticket> BanManager::Remove(const IpAddr& id) {
  auto found = index_.find(id);
  if (found == index_.end()) return std::nullopt;
  return Erase(found->second);
}

std::vector<Ticket> BanManager::Flush() {
  std::vector<Ticket> all;
  all.reserve(order_.size());
  for (Entry& e : order_) all.push_back(std::move(e.ticket));
  by_end_.clear();
  index_.clear();
  order_.clear();
  return all;
}

bool BanManager::SetTicketBanTime(const IpAddr& id, double ban_time) {
  auto found = index_.find(id);
  if (found == index_.end()) return false;
  found->second->ticket.ban_time = ban_time;
  Reindex(found->second);
  return true;
}

const Ticket* BanManager::Find(const IpAddr& id) const {
  auto found = index_.find(id);
  return found == index_.end() ? nullptr : &found->second->ticket;
}

std::vector<IpAddr> BanManager::BannedIds() const {
  std::vector<IpAddr> ids;
  ids.reserve(order_.size());
  for (const Entry& e : order_) ids.push_back(e.ticket.id);
  return ids;
}

std::vector<const Ticket*> BanManager::BansByEnd() const {
  std::vector<const Ticket*> out;
  out.reserve(by_end_.size());
  for (auto it : by_end_) out.push_back(&it->ticket);
  return out;
}

std::vector<IpAddr> BanManager::IdsIn(const IpAddr& net, Resolver* resolver) const {
  std::vector<IpAddr> ids;
  for (const Entry& e : order_) {
    if (net.Contains(e.ticket.id, resolver)) ids.push_back(e.ticket.id);
  }
  return ids;
}

void BanManager::set_ban_time(double ban_time) {
  ban_time_ = ban_time;
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    if (!it->ticket.ban_time) Reindex(it);
  }
}

void BanManager::Reindex(Order::iterator it) {
  by_end_.erase(it);
  it->end = it->ticket.EndOfBan(ban_time_);
  by_end_.insert(it);
}

Ticket BanManager::Erase(Order::iterator it) {
  by_end_.erase(it);
  index_.erase(it->ticket.id);
  Ticket t = std::move(it->ticket);
  order_.erase(it);
  return t;
}

}  // namespace bantam
