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
  Indexed(e.ticket.id, +1);
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
  net_lengths_.clear();
  aggregate4_.units.clear();
  aggregate6_.units.clear();
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
  Indexed(it->ticket.id, -1);
  Ticket t = std::move(it->ticket);
  order_.erase(it);
  return t;
}

const Ticket* BanManager::CoveringBan(const IpAddr& id) const {
  for (const auto& [key, count] : net_lengths_) {
    const auto [family, plen] = key;
    if (count == 0 || family != id.family() || plen >= id.plen()) continue;
    if (const Ticket* t = Find(id.Network(plen))) return t;
  }
  return nullptr;
}

void BanManager::set_aggregation(int family, int aggregate_plen, int unit_plen) {
  Aggregation& a = family == AF_INET ? aggregate4_ : aggregate6_;
  a.aggregate_plen = aggregate_plen;
  a.unit_plen = unit_plen;
  a.units.clear();
  if (aggregate_plen == 0) return;
  for (const Entry& e : order_) {
    if (e.ticket.id.family() == family && e.ticket.id.plen() == unit_plen) {
      ++a.units[e.ticket.id.Network(aggregate_plen)];
    }
  }
}

size_t BanManager::UnitsIn(const IpAddr& net) const {
  const Aggregation& a = net.is_ipv4() ? aggregate4_ : aggregate6_;
  auto it = a.units.find(net);
  return it == a.units.end() ? 0 : it->second;
}

void BanManager::Indexed(const IpAddr& id, int delta) {
  if (!id.is_ip()) return;
  if (!id.is_single()) {
    size_t& n = net_lengths_[{id.family(), id.plen()}];
    n += delta;
    if (n == 0) net_lengths_.erase({id.family(), id.plen()});
  }
  Aggregation& a = id.is_ipv4() ? aggregate4_ : aggregate6_;
  if (a.aggregate_plen == 0 || id.plen() != a.unit_plen) return;
  const IpAddr net = id.Network(a.aggregate_plen);
  if (delta > 0) {
    ++a.units[net];
  } else if (auto it = a.units.find(net); it != a.units.end() && --it->second == 0) {
    a.units.erase(it);
  }
}

}  // namespace bantam
