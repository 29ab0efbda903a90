// FleetLink: bantamd's connections to Redis, each on a thread of its own
// so that Redis never holds up the event loop (detection and local bans go
// on whether Redis answers or not):
//   - the publisher XADDs what Publish() was given, in order, pipelined,
//     with MAXLEN ~ maxlen (failures: to their own stream, MINID ~ their
//     time less findtime), and reports which outbox rows Redis took;
//   - the reader XREADs the stream from a cursor (BLOCK, COUNT), checks
//     each entry (DecodeFleetEntry: size, fields, HMAC) and hands the good
//     ones over in batches with the id of the last entry read, so the
//     cursor moves past dropped entries too. It reads no further while a
//     batch waits to be taken: memory stays bounded whatever the stream
//     holds.
// Both reconnect with a capped backoff (0.1 s doubling to 5 s).
//
// Thread-safe: Publish(), Take() and the accessors may be called from any
// thread; the owner (the event loop) watches notify_fd() and calls Take()
// when it is readable.
#ifndef BANTAM_FLEET_LINK_H_
#define BANTAM_FLEET_LINK_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bantam/fleet_config.h"
#include "bantam/fleet_entry.h"

namespace bantam {

class FleetLink {
 public:
  // One XREAD's worth of entries.
  struct Batch {
    std::vector<std::pair<std::string, FleetEntry>> entries;  // stream id, entry
    std::string last_id;  // the last id read, dropped entries included
  };
  // A dropped entry: its id and why (DecodeFleetEntry's message).
  struct Dropped {
    std::string id;
    std::string reason;
  };
  struct Report {
    std::vector<int64_t> published;  // outbox rows Redis took
    std::vector<Batch> batches;
    // fleet_failures: failures of other nodes (their own stream, read from
    // when the link started; no cursor is kept for them).
    std::vector<FleetEntry> failures;
    std::vector<Dropped> dropped;    // at most kMaxDroppedKept; counts below
    std::map<std::string, uint64_t> dropped_counts;  // by reason's first word
    std::vector<std::pair<bool, std::string>> messages;  // (warning?, text)
  };

  // `settings` is copied. Nothing runs before Start().
  explicit FleetLink(FleetSettings settings);
  ~FleetLink();  // Stop()
  FleetLink(const FleetLink&) = delete;
  FleetLink& operator=(const FleetLink&) = delete;

  // Starts both threads; the reader begins after `cursor` ("" or "0-0":
  // the start of the stream). Error: no eventfd.
  Status Start(const std::string& cursor);
  void Stop();

  // Queues outbox rows for XADD, after those queued before.
  void Publish(std::vector<std::pair<int64_t, FleetEntry>> rows);
  // Readable (eventfd) when Take() has something.
  int notify_fd() const { return event_fd_; }
  // Everything reported since the last call; lets the reader go on.
  Report Take();

  bool connected() const;
  // Entries in the stream after the reader's cursor plus those handed over
  // but not taken; capped at kBehindCap (the count costs an XRANGE).
  int64_t behind() const;
  static constexpr int64_t kBehindCap = 10000;
  static constexpr size_t kReadCount = 1000;
  static constexpr size_t kMaxDroppedKept = 20;

 private:
  struct Conn;
  void PublisherMain();
  void ReaderMain();
  // Connects, authenticates and selects the db; nullptr on failure (the
  // reason logged once per outage).
  Conn* Connect(Conn* c, const char* who);
  void ConnFailed(const char* who, const std::string& error);
  void ConnUp();
  void Notify();
  // Waits `ms` or until Stop(); false when stopping.
  bool Sleep(std::unique_lock<std::mutex>& lock, int64_t ms);
  void ReadOnce(Conn& c, std::string* cursor, std::string* failures_cursor);
  int64_t CountAfter(Conn& c, const std::string& cursor);

  const FleetSettings settings_;
  int event_fd_ = -1;
  std::thread publisher_;
  std::thread reader_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool up_ = false;      // last known state of the connection
  bool warned_ = false;  // this outage was reported
  std::deque<std::pair<int64_t, FleetEntry>> to_publish_;
  Report report_;
  size_t waiting_entries_ = 0;  // in report_.batches, not taken yet
  int64_t behind_redis_ = 0;
  std::string start_cursor_;
  int64_t last_count_ms_ = 0;  // reader thread only: when CountAfter last ran
};

}  // namespace bantam

#endif  // BANTAM_FLEET_LINK_H_
