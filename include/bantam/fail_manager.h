// FailManager: the failures of one jail, per failure id, until an id reaches
// maxretry (then ToBan() hands its ticket over) or goes quiet for findtime
// (then Cleanup() forgets it). It is fail2ban 1.0.2's FailManager.
//
// The window is fail2ban's, which is not a list of timestamps: an id keeps a
// count (`retry`) and the interval it covers, from `first_time` to the time
// of its latest failure. A failure later than that which would stretch the
// interval past findtime scales the count to the rate seen so far over one
// findtime - round(retry / (t - first_time) * findtime), Python's
// round-half-even - and moves first_time to t - findtime. A failure with an
// older log time than the latest only adds to the count. Times always come
// from the failure (its log line), never from the clock.
//
// Memory bound (not in fail2ban): at most `max_entries` ids are held. A new
// id arriving at the cap evicts the id whose last failure arrived longest ago
// and bumps evicted_total(), so a flood of unique (e.g. IPv6) sources costs
// bounded memory; what it costs in detection is that an attacker spreading
// over more sources than the cap can push a slow id out before it reaches
// maxretry. Each held id costs about 400 bytes plus its kept match lines
// (at most maxmatches of them), so the default cap is about 40 MB + lines.
//
// Persistence (not in fail2ban, which keeps failures in memory only and so
// forgets them in a crash): with track_changes on, every id whose entry was
// added, changed or removed is remembered until TakeChanges(), so the
// daemon can write exactly the turn's changes in the transaction that also
// saves the log position the failures were read up to. Restore() puts a
// saved entry back at start.
//
// Single-threaded: owned by one jail on the event loop.
#ifndef BANTAM_FAIL_MANAGER_H_
#define BANTAM_FAIL_MANAGER_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bantam/filter.h"
#include "bantam/ip_address.h"
#include "bantam/ticket.h"

namespace bantam {

inline constexpr size_t kDefaultMaxFailEntries = 100000;

struct FailManagerOptions {
  int maxretry = 3;
  double findtime = 600;
  // Matched lines kept per id for the <matches> tags; 0 keeps none once a
  // second failure arrives (fail2ban keeps the first failure's as they are).
  int maxmatches = 5;
  // The memory bound above; 0 means no bound.
  size_t max_entries = kDefaultMaxFailEntries;
};

class FailManager {
 public:
  explicit FailManager(FailManagerOptions options = {}) : options_(options) {}
  FailManager(const FailManager&) = delete;
  FailManager& operator=(const FailManager&) = delete;

  // addFailure: counts one failure of `id` at log time `time` carrying
  // `data` (its groups and matched lines, moved from). `count` is the weight
  // added to retry (the ban-time increment adds more for known bad ids).
  // `observed`: a re-count for an id that may be banned meanwhile; it is
  // dropped when the id holds no entry. Returns the id's retry count, which
  // the caller compares with maxretry to ban at once.
  int AddFailure(const IpAddr& id, double time, FailData&& data, int count = 1,
                 bool observed = false);

  // toBan: removes and returns the ticket of `id` if it reached maxretry;
  // with no `id` (or one holding no entry, as fail2ban does), of the first
  // id that did, least recently failing first. nullopt: nothing to ban.
  std::optional<Ticket> ToBan(const IpAddr* id = nullptr);

  // Forgets every id whose last failure is at or before now - findtime.
  void Cleanup(double now);
  // fail2ban's performSvc: Cleanup at most every 5 seconds (unless forced).
  // Returns whether it ran.
  bool Service(double now, bool force = false);

  void DelFailure(const IpAddr& id);
  // Takes every entry and the totals of `other` (a jail rebuilt by a
  // reload), keeping this manager's options; `other` is left empty.
  void TakeFrom(FailManager& other);
  // The entry of `id`, or null. Valid until the next non-const call.
  const Ticket* Find(const IpAddr& id) const;

  // Puts back an entry saved earlier (a restart): as it was, without
  // counting it in fail_total(). An entry already held for the id is
  // replaced. Subject to max_entries like a new id.
  void Restore(Ticket ticket);

  // Change tracking for persistence (off by default; it costs one hash
  // insert per failure). Turning it off forgets pending changes.
  void set_track_changes(bool on);
  bool track_changes() const { return track_changes_; }
  // The ids changed since the last call: `upserts` get their current entry,
  // `removed` the ids that no longer hold one (banned, expired, evicted,
  // deleted). Each id appears in one list at most; order is unspecified.
  struct Changes {
    std::vector<const Ticket*> upserts;  // valid until the next non-const call
    std::vector<IpAddr> removed;
    bool empty() const { return upserts.empty() && removed.empty(); }
  };
  Changes TakeChanges();
  // Whether TakeChanges() would return anything.
  bool has_changes() const { return !changed_.empty(); }

  // Ids holding failures (status "Currently failed").
  size_t size() const { return index_.size(); }
  // Failures counted since start (status "Total failed").
  uint64_t fail_total() const { return fail_total_; }
  void set_fail_total(uint64_t total) { fail_total_ = total; }
  // Ids pushed out by the max_entries cap since start; worth a log line.
  uint64_t evicted_total() const { return evicted_total_; }

  int maxretry() const { return options_.maxretry; }
  void set_maxretry(int value) { options_.maxretry = value; }
  double findtime() const { return options_.findtime; }
  void set_findtime(double value) { options_.findtime = value; }
  int maxmatches() const { return options_.maxmatches; }
  void set_maxmatches(int value) { options_.maxmatches = value; }
  size_t max_entries() const { return options_.max_entries; }
  // Shrinking the cap evicts down to it at once.
  void set_max_entries(size_t value);

 private:
  using Order = std::list<Ticket>;  // least recently failing first

  void Erase(Order::iterator it);
  void Touch(const IpAddr& id) {
    if (track_changes_) changed_.insert(id);
  }
  void EvictTo(size_t limit);

  FailManagerOptions options_;
  Order order_;
  std::unordered_map<IpAddr, Order::iterator> index_;
  uint64_t fail_total_ = 0;
  uint64_t evicted_total_ = 0;
  double next_service_ = -1e300;
  bool track_changes_ = false;
  std::unordered_set<IpAddr> changed_;
};

}  // namespace bantam

#endif  // BANTAM_FAIL_MANAGER_H_
