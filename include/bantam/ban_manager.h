// BanManager: the ids one jail currently bans, each with its ticket and end
// of ban; fail2ban 1.0.2's BanManager. The caller runs the ban and unban
// actions; this only keeps the books.
//
// A ticket's end of ban is its time (the last failure's log time) plus its
// own bantime, or the jail's bantime when it has none; bantime -1 never
// ends. An id is due for unban once now is strictly past its end. Due ids
// come out in end-of-ban order (fail2ban's come out in table order), and
// NextUnbanTime() tells the event loop when to look again.
//
// Single-threaded: owned by one jail on the event loop. `clock` must outlive
// the BanManager.
#ifndef BANTAM_BAN_MANAGER_H_
#define BANTAM_BAN_MANAGER_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "bantam/clock.h"
#include "bantam/ip_address.h"
#include "bantam/ticket.h"

namespace bantam {

// What AddBan did with a ticket.
enum class AddBanOutcome {
  kAdded,          // newly banned: run the ban actions
  kExpired,        // its ban would already be over: nothing to do
  kAlreadyBanned,  // the id is banned; nothing changed
  kProlonged,      // the id is banned and its ban now ends later
};

class BanManager {
 public:
  // `ban_time`: the jail's bantime in seconds (-1: permanent).
  explicit BanManager(const Clock& clock, double ban_time = 600)
      : clock_(clock), ban_time_(ban_time) {}
  BanManager(const BanManager&) = delete;
  BanManager& operator=(const BanManager&) = delete;

  // addBanTicket. kAdded: the ticket is stored with ban_count + 1.
  // kProlonged: the id was banned, this ticket's end of ban is later, so the
  // stored ticket's bantime grows to end there too (permanent stays so).
  // *existing, when given, points at the stored ticket for kAlreadyBanned
  // and kProlonged (valid until the next non-const call).
  AddBanOutcome AddBan(Ticket ticket, const Ticket** existing = nullptr);

  // unBanList: removes and returns the tickets whose ban is over at `now`,
  // earliest end first, at most `max_count` of them. Permanent bans are
  // never due (fail2ban's would be in the year 4461763).
  std::vector<Ticket> TakeDue(double now, size_t max_count = std::numeric_limits<size_t>::max());
  // When the earliest non-permanent ban ends (kMaxBanEnd if none does); the
  // id is due once the clock is past it.
  double NextUnbanTime() const;

  // getTicketByID: removes and returns the ban of `id` (manual unban).
  std::optional<Ticket> Remove(const IpAddr& id);
  // flushBanList: removes and returns every ban, in ban order.
  std::vector<Ticket> Flush();
  // Changes the bantime of a banned id, e.g. when the ban-time increment is
  // worked out after the ban (fail2ban's observer). False if not banned.
  bool SetTicketBanTime(const IpAddr& id, double ban_time);

  bool IsBanned(const IpAddr& id) const { return index_.count(id) != 0; }
  // The ban of `id`, or null. Valid until the next non-const call.
  const Ticket* Find(const IpAddr& id) const;
  // Banned ids in the order they were banned (status "Banned IP list").
  std::vector<IpAddr> BannedIds() const;
  // Banned tickets by end of ban, earliest first (`get banip --with-time`).
  std::vector<const Ticket*> BansByEnd() const;
  // Banned ids that `net` contains (unban by subnet or host name).
  std::vector<IpAddr> IdsIn(const IpAddr& net, Resolver* resolver = nullptr) const;

  // Prefix bans (prefix4/prefix6, aggregate4/aggregate6, or a network given
  // to banip). A banned network that contains `id` (an address or a longer
  // network), or null; exact bans of `id` itself are not reported. Costs
  // one lookup per prefix length in use, none while only addresses are
  // banned. Valid until the next non-const call.
  const Ticket* CoveringBan(const IpAddr& id) const;
  // Aggregation: count the bans of `unit_plen` (32/128: addresses) of
  // `family` per /`aggregate_plen` network; 0 turns it off. Call before
  // the first ban of that family (bans already held are counted too).
  void set_aggregation(int family, int aggregate_plen, int unit_plen);
  // How many such bans lie in `net`, a network of the aggregate length.
  size_t UnitsIn(const IpAddr& net) const;

  // Currently banned (status "Currently banned").
  size_t size() const { return index_.size(); }
  // Bans since start (status "Total banned").
  uint64_t ban_total() const { return ban_total_; }
  void set_ban_total(uint64_t total) { ban_total_ = total; }

  double ban_time() const { return ban_time_; }
  // Tickets without their own bantime follow the new value at once.
  void set_ban_time(double ban_time);

 private:
  struct Entry {
    Ticket ticket;
    double end = 0;    // EndOfBan(ban_time_) when last indexed
    uint64_t seq = 0;  // ban order, breaks ties between equal ends
  };
  using Order = std::list<Entry>;  // ban order
  struct ByEnd {
    bool operator()(Order::iterator a, Order::iterator b) const {
      return a->end != b->end ? a->end < b->end : a->seq < b->seq;
    }
  };

  void Reindex(Order::iterator it);
  // Keeps the prefix-length census and aggregate counts as `id` comes and goes.
  void Indexed(const IpAddr& id, int delta);
  Ticket Erase(Order::iterator it);

  const Clock& clock_;
  double ban_time_;
  Order order_;
  std::unordered_map<IpAddr, Order::iterator> index_;
  std::set<Order::iterator, ByEnd> by_end_;
  uint64_t next_seq_ = 0;
  // Banned networks by (family, prefix length), counted; few lengths.
  std::map<std::pair<int, int>, size_t> net_lengths_;
  struct Aggregation {
    int aggregate_plen = 0;
    int unit_plen = 0;
    std::unordered_map<IpAddr, size_t> units;  // per aggregate network
  };
  Aggregation aggregate4_, aggregate6_;
  uint64_t ban_total_ = 0;
};

}  // namespace bantam

#endif  // BANTAM_BAN_MANAGER_H_
