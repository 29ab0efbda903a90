// The daemon's counters for its Prometheus endpoint (server_metrics.cc
// writes them out). Plain integers, updated on the event-loop thread where
// things happen, read on the same thread when scraped: no lock, no atomic.
//
// Per-jail counters are kept by jail name, apart from the Jail objects, so
// that a reload that rebuilds a jail keeps them; a jail that is removed
// takes its counters (and so its series) with it.
#ifndef BANTAM_DAEMON_DAEMON_METRICS_H_
#define BANTAM_DAEMON_DAEMON_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bantam/action.h"
#include "bantam/exposition.h"

namespace bantam {

// Why an address was banned (the `cause` label of bantam_bans_total).
enum class BanCause {
  kMaxretry,  // failures in its logs reached maxretry
  kManual,    // `bantam set JAIL banip`
  kRestored,  // still in force in the database at start
  kFleet,     // applied from a peer bantam (src/fleet)
  kRecidive,  // maxretry in a jail that reads bantam's own log (recidive)
  kAggregated,  // a prefix ban that took the place of aggregate4/6 bans
};
inline constexpr size_t kBanCauses = 6;
const char* BanCauseName(BanCause cause);

// Why a ban ended (the `cause` label of bantam_unbans_total).
enum class UnbanCause {
  kExpired,  // its bantime ran out
  kManual,   // `bantam unban`, `set JAIL unbanip`, `reload --unban`
  kFleet,    // lifted by a peer bantam (src/fleet)
  kAggregated,  // now covered by a prefix ban (aggregate4/aggregate6)
};
inline constexpr size_t kUnbanCauses = 4;
const char* UnbanCauseName(UnbanCause cause);

// Why a failure was ignored (the `reason` label), from the jail's report.
inline constexpr std::array<const char*, 5> kIgnoreReasons = {"ip", "self", "dns", "command",
                                                              "cache"};
// The index in kIgnoreReasons of what JailEvents::OnIgnored says
// ("ignoreself rule" -> "self"); the last one for anything unknown.
size_t IgnoreReasonIndex(std::string_view source);

// One log (or journal, or AMI connection) as one jail reads it.
struct SourceCounters {
  std::string origin;  // the file's path, "systemd-journal", "ami://..."
  uint64_t lines = 0;
  uint64_t bytes = 0;      // of the lines, without their line ends
  double last_line = 0;    // when the last line was read (epoch seconds); 0: never
};

inline constexpr size_t kActionOps = 9;  // ActionOp's values

struct ActionCounters {
  std::array<uint64_t, kActionOps> runs{};
  std::array<uint64_t, kActionOps> errors{};
  // From submission to report: queueing included.
  Histogram duration{DurationBuckets()};
  // Native nftables: element transactions and their sizes.
  uint64_t nft_transactions = 0;
  uint64_t nft_failed = 0;
  Histogram nft_elements{SizeBuckets()};
  Histogram nft_duration{DurationBuckets()};
};

struct JailCounters {
  uint64_t failures = 0;
  std::array<uint64_t, kBanCauses> bans{};
  std::array<uint64_t, kUnbanCauses> unbans{};
  std::array<uint64_t, kIgnoreReasons.size()> ignored{};
  // Bans of this jail reached at maxretry count as kRecidive.
  bool recidive = false;
  // Read anywhere; changed only by Source and KeepSources.
  std::vector<SourceCounters> sources;
  // By action name.
  std::map<std::string, ActionCounters> actions;

  // The counters of `origin`, made on first use. Lines come in runs from
  // one source: the last one found is tried first.
  SourceCounters& Source(std::string_view origin) {
    if (last_source_ < sources.size() && sources[last_source_].origin == origin) {
      return sources[last_source_];
    }
    last_origin_id_ = kNoOriginId;
    for (size_t i = 0; i < sources.size(); ++i) {
      if (sources[i].origin == origin) {
        last_source_ = i;
        return sources[i];
      }
    }
    sources.push_back(SourceCounters{std::string(origin)});
    last_source_ = sources.size() - 1;
    return sources.back();
  }
  // The same, for a caller that numbers its origins (one number for one
  // origin text, for good): a run of lines compares numbers, not paths.
  SourceCounters& Source(uint32_t origin_id, std::string_view origin) {
    if (origin_id == last_origin_id_ && last_source_ < sources.size()) {
      return sources[last_source_];
    }
    SourceCounters& found = Source(origin);
    last_origin_id_ = origin_id;
    return found;
  }
  // Drops the counters of every origin not in `origins` (a reload took
  // them away). Here and in Source only is `sources` changed: the
  // number above must not name an entry that moved.
  void KeepSources(const std::set<std::string>& origins) {
    std::erase_if(sources, [&](const SourceCounters& s) { return origins.count(s.origin) == 0; });
    last_origin_id_ = kNoOriginId;
  }

 private:
  static constexpr uint32_t kNoOriginId = UINT32_MAX;
  size_t last_source_ = 0;
  // What last_source_ was found for by number; kNoOriginId once it was
  // found (or changed) by text.
  uint32_t last_origin_id_ = kNoOriginId;
};

struct DaemonCounters {
  // By jail name; a JailState holds its jail's.
  std::map<std::string, std::shared_ptr<JailCounters>, std::less<>> jails;
  uint64_t db_commits = 0;
  uint64_t db_commits_failed = 0;
  Histogram db_duration{DurationBuckets()};
  uint64_t reloads = 0;
  uint64_t reloads_failed = 0;
  bool last_reload_ok = true;
  double last_reload_success = 0;  // epoch seconds: the start, then each good reload
  double start_time = 0;           // epoch seconds

  JailCounters* Find(std::string_view jail) {
    auto it = jails.find(jail);
    return it == jails.end() ? nullptr : it->second.get();
  }
};

}  // namespace bantam

#endif  // BANTAM_DAEMON_DAEMON_METRICS_H_
