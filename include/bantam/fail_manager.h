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
// maxretry.
//
// Storage: ids are held compactly, not as Tickets. An address id costs one
// 64-byte slot (its 128 bits, the window, intrusive links for the order of
// last failures) plus 4-8 bytes of open-addressing index, and no heap block
// when its first failure's groups are all None or its own text (the usual
// <HOST> groups: they are stored as a shared "shape") and no matched line is
// kept. Anything else (a raw id, other group values, kept lines) goes in one
// side block per id. Matched lines are kept only with keep_matches on (the
// default; the daemon turns it off for jails whose actions never read
// <matches>, <ipmatches> or <ipjailmatches>), and then at most maxmatches
// once a second failure arrived. Of a failure's FailData only the groups and
// the matched lines are kept: the rest is the filter's multi-line state.
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
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
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
  explicit FailManager(FailManagerOptions options = {});
  ~FailManager();
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
  // The entry of `id` as a Ticket, or null. Valid until the next Find() or
  // non-const call: each call rebuilds one copy, so a commit that looks up
  // thousands of ids holds one Ticket at a time, not thousands.
  const Ticket* Find(const IpAddr& id) const;

  // Puts back an entry saved earlier (a restart): as it was, without
  // counting it in fail_total(). An entry already held for the id is
  // replaced. Subject to max_entries like a new id.
  void Restore(Ticket ticket);

  // Change tracking for persistence (off by default; it costs one hash
  // insert per failure). Turning it off forgets pending changes.
  void set_track_changes(bool on);
  bool track_changes() const { return track_changes_; }
  // The ids changed since the last call: `upserts` the ids that hold an
  // entry (read it with Find()), `removed` the ids that no longer hold one
  // (banned, expired, evicted, deleted). Each id appears in one list at
  // most; order is unspecified.
  struct Changes {
    std::vector<IpAddr> upserts;
    std::vector<IpAddr> removed;
    bool empty() const { return upserts.empty() && removed.empty(); }
  };
  Changes TakeChanges();
  // Whether TakeChanges() would return anything.
  bool has_changes() const { return !dirty_.empty() || !removed_.empty(); }

  // Ids holding failures (status "Currently failed").
  size_t size() const { return size_; }
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
  // Whether matched lines are kept (see Storage above). Turned off, no new
  // line is kept and an id's held lines go at its next failure.
  bool keep_matches() const { return keep_matches_; }
  void set_keep_matches(bool on) { keep_matches_ = on; }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr uint16_t kNoShape = 0x7FFF;

  // What an id holds beyond its slot; allocated only when needed.
  struct Extra {
    IpAddr id;  // a raw id or invalid text; empty for addresses
    std::vector<FailData::Entry> groups;  // when the slot has no shape
    std::vector<std::string> matches;
    std::optional<double> ban_time;  // Restore()d tickets only
    bool restored = false;
    bool banned = false;
  };
  // One held id (64 bytes). A free slot is chained by `next`.
  struct Slot {
    uint64_t hi = 0, lo = 0;  // IpAddr bits when `family` is set
    double time = 0, first_time = 0;
    std::unique_ptr<Extra> extra;
    int32_t retry = 0, attempts = 0, ban_count = 0;
    uint32_t prev = kNil, next = kNil;  // order of last failures
    uint16_t shape : 15 = kNoShape;  // index in shapes_: group names, None or id text
    uint16_t dirty : 1 = 0;  // changed since TakeChanges() (listed in dirty_)
    int8_t family = 0;  // AF_INET, AF_INET6; 0: the id is extra->id
    uint8_t plen = 0;
  };
  // A list of group names, each None or the id's own text.
  using Shape = std::vector<std::pair<std::string, bool /*none*/>>;
  // Slots come 1024 at a time (64 KiB): a jail with few failures touches
  // one chunk, and growth never copies the table.
  static constexpr uint32_t kChunkBits = 10;

  Slot& At(uint32_t i) { return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)]; }
  const Slot& At(uint32_t i) const {
    return chunks_[i >> kChunkBits][i & ((1u << kChunkBits) - 1)];
  }
  IpAddr IdOf(const Slot& s) const;
  size_t HashOf(const Slot& s) const;
  bool SameId(const Slot& s, const IpAddr& id) const;
  // The slot index of `id`, or kNil.
  uint32_t Lookup(const IpAddr& id) const;
  // A new slot for `id`, indexed and last in order.
  uint32_t Insert(const IpAddr& id);
  void IndexRemove(uint32_t slot);
  void GrowIndex();
  void Unlink(uint32_t i);
  void LinkLast(uint32_t i);
  void Erase(uint32_t i);
  void EvictTo(size_t limit);
  void Touch(uint32_t i) {
    if (!track_changes_ || At(i).dirty) return;
    At(i).dirty = 1;
    dirty_.push_back(i);
  }
  Extra& ExtraOf(Slot& s);
  // Stores `groups` (the first failure's) in the slot: as a shape when it can.
  void SetGroups(Slot& s, const IpAddr& id, const std::vector<FailData::Entry>& groups);
  // The slot's ticket; its side block is moved from when `take`.
  Ticket MakeTicket(Slot& s, bool take) const;

  FailManagerOptions options_;
  bool keep_matches_ = true;
  std::vector<std::unique_ptr<Slot[]>> chunks_;
  uint32_t slots_used_ = 0;  // slots ever handed out (free ones are chained)
  uint32_t free_ = kNil;
  uint32_t head_ = kNil, tail_ = kNil;  // least / most recently failing
  size_t size_ = 0;
  std::vector<uint32_t> index_;  // open addressing, linear probing; kNil empty
  std::vector<Shape> shapes_;
  mutable Ticket found_;  // what Find() returned last
  uint64_t fail_total_ = 0;
  uint64_t evicted_total_ = 0;
  double next_service_ = -1e300;
  bool track_changes_ = false;
  // Change tracking: slots changed (a slot freed or reused since is told by
  // its dirty bit), and ids that lost their entry.
  std::vector<uint32_t> dirty_;
  std::unordered_set<IpAddr> removed_;
};

}  // namespace bantam

#endif  // BANTAM_FAIL_MANAGER_H_
