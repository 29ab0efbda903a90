#include "bantam/fleet.h"

#include <cmath>

#include "bantam/fleet_entry.h"

namespace bantam {

namespace {

constexpr int64_t kWarnIntervalMs = 60 * 1000;

}  // namespace

Fleet::Fleet(FleetSettings settings, EventLoop* loop, const Clock& clock, FleetHooks hooks)
    : settings_(std::move(settings)), loop_(loop), clock_(clock), hooks_(std::move(hooks)) {}

Fleet::~Fleet() {
  *alive_ = false;
  if (link_) {
    loop_->Unwatch(link_->notify_fd());
    link_->Stop();
    // What the link took before it stopped leaves the outbox; the cursor
    // of what was applied is kept.
    FleetLink::Report r = link_->Take();
    if (store_) (void)store_->DeleteOutbox(r.published);
  }
  if (store_) {
    FlushOutbox();
    if (!cursor_to_save_.empty()) (void)store_->SetCursor(settings_.stream, cursor_to_save_);
  }
}

Result<std::unique_ptr<Fleet>> Fleet::Start(FleetSettings settings, const std::string& dbfile,
                                            EventLoop* loop, const Clock& clock, FleetHooks hooks) {
  if (Status c = LoadFleetCrypto(); !c.ok()) return c;
  std::unique_ptr<Fleet> f(new Fleet(std::move(settings), loop, clock, std::move(hooks)));
  Result<std::unique_ptr<FleetStore>> store = FleetStore::Open(dbfile);
  if (!store.ok()) return store.status();
  f->store_ = std::move(*store);
  Result<std::string> cursor = f->store_->Cursor(f->settings_.stream);
  if (!cursor.ok()) return cursor.status();
  f->last_applied_ = *cursor;
  Result<std::vector<std::pair<int64_t, FleetEntry>>> outbox = f->store_->Outbox();
  if (!outbox.ok()) return outbox.status();
  f->outbox_size_ = outbox->size();
  f->link_ = std::make_unique<FleetLink>(f->settings_);
  if (Status s = f->link_->Start(*cursor); !s.ok()) return s;
  Fleet* self = f.get();
  if (Status s = loop->Watch(f->link_->notify_fd(), [self](uint32_t) { self->OnNotify(); });
      !s.ok())
    return s;
  if (!outbox->empty()) {
    f->Log(FleetLogLevel::kNotice,
           "Fleet: " + std::to_string(outbox->size()) + " entries from the outbox to publish");
    f->link_->Publish(std::move(*outbox));
  }
  f->Log(FleetLogLevel::kInfo, "Fleet: node " + f->settings_.node + ", Redis " +
                                   f->settings_.Where() + ", stream " + f->settings_.stream +
                                   (cursor->empty() ? ", reading from its start"
                                                    : ", resuming after " + *cursor));
  return f;
}

void Fleet::Queue(FleetEntry entry) {
  unsaved_.push_back(std::move(entry));
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // One transaction for the bans of a loop turn.
  std::weak_ptr<bool> alive = alive_;
  loop_->AddTimer(0, [this, alive] {
    if (alive.expired()) return;
    FlushOutbox();
  });
}

void Fleet::FlushOutbox() {
  flush_scheduled_ = false;
  if (unsaved_.empty()) return;
  std::vector<FleetEntry> entries = std::move(unsaved_);
  unsaved_.clear();
  Result<std::vector<int64_t>> ids = store_->AddOutbox(entries);
  std::vector<std::pair<int64_t, FleetEntry>> rows;
  if (!ids.ok()) {
    // Published all the same; only a crash before Redis took them loses them.
    Log(FleetLogLevel::kError, ids.status().message());
    for (FleetEntry& e : entries) rows.emplace_back(0, std::move(e));
  } else {
    for (size_t i = 0; i < entries.size(); ++i) rows.emplace_back((*ids)[i], std::move(entries[i]));
    outbox_size_ += rows.size();
  }
  link_->Publish(std::move(rows));
}

std::string Fleet::BanReported(const std::string& jail, const Ticket& t) {
  auto origin = origins_.find({jail, t.id.ToString()});
  if (origin != origins_.end()) {
    std::string note = " (fleet: " + origin->second + ")";
    origins_.erase(origin);
    return note;
  }
  if (t.restored || !FleetPublishes(settings_.ModeOf(jail)) || !t.id.is_ip()) return "";
  FleetEntry e;
  e.op = FleetOp::kBan;
  e.jail = jail;
  e.ip = t.id.ToString();
  e.time = clock_.Now();
  const double bt = t.ban_time.value_or(-1);
  if (bt < 0) {
    e.left = -1;
  } else {
    e.left = static_cast<int64_t>(std::ceil(t.time + bt - e.time));
    if (e.left <= 0) return "";
  }
  e.count = t.ban_count + 1;
  Queue(std::move(e));
  return "";
}

void Fleet::OperatorUnban(const std::string& jail, const IpAddr& id) {
  if (!FleetPublishes(settings_.ModeOf(jail)) || !id.is_ip()) return;
  FleetEntry e;
  e.op = FleetOp::kUnban;
  e.jail = jail;
  e.ip = id.ToString();
  e.time = clock_.Now();
  Queue(std::move(e));
}

void Fleet::FailureFound(const std::string& jail, const IpAddr& id, double time) {
  if (!settings_.SharesFailures(jail) || !FleetPublishes(settings_.ModeOf(jail)) || !id.is_ip()) {
    return;
  }
  Jail* j = hooks_.find_jail(jail);
  if (j == nullptr) return;
  FleetEntry e;
  e.op = FleetOp::kFail;
  e.jail = jail;
  e.ip = id.ToString();
  e.time = time;
  e.left = static_cast<int64_t>(std::ceil(j->config().findtime));
  e.count = 1;
  ++counters_.failures_sent;
  link_->Publish({{0, std::move(e)}});
}

void Fleet::ApplyFailure(const FleetEntry& e) {
  Jail* jail = hooks_.find_jail(e.jail);
  if (jail == nullptr || !FleetApplies(settings_.ModeOf(e.jail)) ||
      !settings_.SharesFailures(e.jail)) {
    return;
  }
  // It counts for the shorter of the two findtimes.
  const double window = std::min(static_cast<double>(e.left), jail->config().findtime);
  if (clock_.Now() - e.time > window) return;
  const IpAddr ip = IpAddr::FromText(e.ip);
  if (jail->bans().IsBanned(ip)) return;
  IgnoreVerdict v = jail->ignore_list().Check(ip);
  if (v.ignored) return;  // the ban it may lead to would be refused too
  ++counters_.failures_counted;
  Log(FleetLogLevel::kInfo, "[" + e.jail + "] Found " + e.ip + " (fleet: " + e.node + ")");
  jail->AddAttempt(ip, {});
}

void Fleet::Warn(const std::string& kind, const std::string& message, uint64_t count) {
  WarnState& w = warned_[kind];
  const int64_t now = EventLoop::NowMs();
  if (w.logged_ms >= 0 && now - w.logged_ms < kWarnIntervalMs) {
    w.suppressed += count;
    return;
  }
  std::string text = message;
  if (w.suppressed > 0) {
    text += " (and " + std::to_string(w.suppressed) + " more " + kind +
            " entries not logged since the last warning)";
  }
  if (count > 1) text += " (" + std::to_string(count - 1) + " more of this kind in the batch)";
  w.logged_ms = now;
  w.suppressed = 0;
  Log(FleetLogLevel::kWarning, text);
}

void Fleet::OnNotify() {
  FleetLink::Report r = link_->Take();
  for (const auto& [warning, text] : r.messages) {
    Log(warning ? FleetLogLevel::kWarning : FleetLogLevel::kNotice, text);
  }
  if (!r.published.empty()) {
    counters_.published += r.published.size();
    std::vector<int64_t> rows;
    for (int64_t id : r.published)
      if (id > 0) rows.push_back(id);
    if (Status s = store_->DeleteOutbox(rows); !s.ok()) Log(FleetLogLevel::kError, s.message());
    outbox_size_ = outbox_size_ > rows.size() ? outbox_size_ - rows.size() : 0;
  }
  for (const auto& [kind, n] : r.dropped_counts) {
    counters_.dropped += n;
    std::string sample;
    for (const FleetLink::Dropped& d : r.dropped) {
      if (d.reason.compare(0, kind.size(), kind) == 0) {
        sample = d.id + ": " + d.reason;
        break;
      }
    }
    Warn(kind, "Fleet: dropped entry " + sample + " from " + settings_.stream, n);
  }
  for (const FleetEntry& e : r.failures) ApplyFailure(e);
  bool applied_any = false;
  for (const FleetLink::Batch& b : r.batches) {
    for (const auto& [id, e] : b.entries) Apply(id, e);
    if (!b.last_id.empty()) {
      last_applied_ = b.last_id;
      applied_any = true;
    }
  }
  if (applied_any) {
    cursor_to_save_ = last_applied_;
    if (!cursor_save_scheduled_) {
      cursor_save_scheduled_ = true;
      // Saved in the next loop turn, after this turn's bans were written:
      // a crash in between applies the entries again, which finds them
      // banned; it never skips one.
      std::weak_ptr<bool> alive = alive_;
      loop_->AddTimer(0, [this, alive] {
        if (alive.expired()) return;
        cursor_save_scheduled_ = false;
        if (Status s = store_->SetCursor(settings_.stream, cursor_to_save_); !s.ok()) {
          Log(FleetLogLevel::kError, s.message());
        }
      });
    }
  }
}

void Fleet::Apply(const std::string& id, const FleetEntry& e) {
  Jail* jail = hooks_.find_jail(e.jail);
  if (jail == nullptr) {
    ++counters_.unknown_jail;
    Warn("unknown jail", "Fleet: dropped entry " + id + " from " + e.node + ": no jail '" + e.jail +
                             "' here");
    return;
  }
  if (!FleetApplies(settings_.ModeOf(e.jail))) {
    ++counters_.not_applied;
    return;
  }
  const IpAddr ip = IpAddr::FromText(e.ip);
  if (e.op == FleetOp::kUnban) {
    if (hooks_.unban(e.jail, ip)) {
      ++counters_.unbanned;
      Log(FleetLogLevel::kNotice,
          "[" + e.jail + "] Fleet unban of " + e.ip + " by " + e.node + " applied");
    }
    return;
  }
  const double now = clock_.Now();
  double bantime = -1;
  if (e.left >= 0) {
    // What is left of the origin's ban, counted from when it was published.
    bantime = static_cast<double>(e.left) - std::max(0.0, now - e.time);
    if (bantime <= 0) {
      ++counters_.expired;
      return;
    }
  }
  if (jail->bans().IsBanned(ip)) {
    ++counters_.duplicate;
    return;
  }
  IgnoreVerdict v = jail->ignore_list().Check(ip);
  if (v.ignored) {
    ++counters_.ignored;
    if (hooks_.events) hooks_.events->OnIgnored(e.jail, ip, IgnoreSourceName(v.source));
    return;
  }
  Ticket t;
  t.id = ip;
  t.time = now;
  t.first_time = now;
  t.ban_time = bantime;
  t.ban_count = static_cast<int>(std::max<int64_t>(0, e.count - 1));
  t.retry = t.attempts = 0;
  if (jail->mutable_bans().AddBan(t) != AddBanOutcome::kAdded) {
    ++counters_.duplicate;
    return;
  }
  ++counters_.applied;
  origins_[{e.jail, e.ip}] = e.node;
  if (hooks_.events) hooks_.events->OnBan(e.jail, t);
}

Value::List Fleet::StatusPairs() const {
  const bool up = link_ && link_->connected();
  Value::List out;
  out.push_back(Value::List{"Fleet", std::string(up ? "connected" : "not connected") + " to " +
                                         settings_.Where() + " as " + settings_.node});
  out.push_back(Value::List{"Fleet last applied", last_applied_.empty() ? "none" : last_applied_});
  const int64_t behind = link_ ? link_->behind() : 0;
  out.push_back(Value::List{"Fleet entries behind",
                            behind >= FleetLink::kBehindCap ? std::to_string(behind) + "+"
                                                            : std::to_string(behind)});
  out.push_back(Value::List{"Fleet outbox", static_cast<int64_t>(outbox_size_ + unsaved_.size())});
  out.push_back(Value::List{
      "Fleet applied",
      "bans " + std::to_string(counters_.applied) + ", unbans " +
          std::to_string(counters_.unbanned) + ", expired " + std::to_string(counters_.expired) +
          ", ignored " + std::to_string(counters_.ignored) + ", dropped " +
          std::to_string(counters_.dropped + counters_.unknown_jail)});
  if (!settings_.jails.empty() && counters_.failures_sent + counters_.failures_counted > 0) {
    out.push_back(Value::List{"Fleet failures", "sent " + std::to_string(counters_.failures_sent) +
                                                    ", counted " +
                                                    std::to_string(counters_.failures_counted)});
  }
  return out;
}

}  // namespace bantam
