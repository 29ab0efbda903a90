#include "bantam/jail.h"

#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "bantam/duration.h"
#include "bantam/option_list.h"
#include "bantam/py.h"

namespace bantam {
namespace {

Status BadValue(const std::string& jail, const std::string& opt, const Value& v,
                const std::string& why) {
  return Status::Error("jail '" + jail + "': " + opt + " = " + v.ToPyStr() + ": " + why);
}

Result<double> Seconds(const std::string& jail, const std::string& opt, const Value& v) {
  if (v.is_int()) return static_cast<double>(v.as_int());
  Result<double> d = ParseDuration(v.ToPyStr());
  if (!d.ok()) return BadValue(jail, opt, v, d.status().message());
  return *d;
}

Result<int> Int(const std::string& jail, const std::string& opt, const Value& v) {
  if (v.is_int()) return static_cast<int>(v.as_int());
  const std::string s = v.ToPyStr();
  char* end = nullptr;
  const long n = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0') return BadValue(jail, opt, v, "not an integer");
  return static_cast<int>(n);
}

bool Bool(const Value& v) { return v.is_bool() ? v.as_bool() : PyAsBool(v.ToPyStr()); }

}  // namespace

Result<std::vector<JailConfig>> JailsFromCommands(const std::vector<Value>& commands,
                                                  std::vector<std::string>* warnings) {
  std::vector<JailConfig> jails;
  auto find = [&](const std::string& name) -> JailConfig* {
    for (JailConfig& j : jails)
      if (j.name == name) return &j;
    return nullptr;
  };
  for (const Value& cmd : commands) {
    if (!cmd.is_list()) continue;
    const Value::List& c = cmd.as_list();
    if (c.size() < 2 || !c[0].is_string()) continue;
    const std::string& op = c[0].as_string();
    if (op == "add" && c.size() >= 3) {
      JailConfig j;
      j.name = c[1].ToPyStr();
      // fail2ban lowercases the backend's name (Jail._setBackend), not its
      // options: "Systemd[journalpath=/X]" reads /X's journal.
      j.backend = c[2].ToPyStr();
      const size_t name_end = std::min(j.backend.find('['), j.backend.size());
      j.backend.replace(0, name_end, LowerAscii(std::string_view(j.backend).substr(0, name_end)));
      jails.push_back(std::move(j));
      continue;
    }
    if ((op != "set" && op != "multi-set") || c.size() < 4) continue;
    JailConfig* j = find(c[1].ToPyStr());
    if (j == nullptr) continue;  // a server-level setting
    const std::string opt = c[2].ToPyStr();
    const Value& v = c[3];
    std::vector<std::string> values;
    if (op == "multi-set" && v.is_list() && opt != "action") {
      for (const Value& x : v.as_list()) values.push_back(x.ToPyStr());
    } else {
      for (size_t i = 3; i < c.size(); ++i) values.push_back(c[i].ToPyStr());
    }
    const std::string& name = j->name;
    if (opt == "usedns") {
      // fail2ban's setUseDns lowercases it: "No" is "no".
      j->filter.usedns = LowerAscii(v.ToPyStr());
    } else if (opt == "prefregex") {
      j->filter.prefregex = v.ToPyStr();
    } else if (opt == "addfailregex") {
      for (std::string& r : values) j->filter.failregex.push_back(std::move(r));
    } else if (opt == "addignoreregex") {
      for (std::string& r : values) j->filter.ignoreregex.push_back(std::move(r));
    } else if (opt == "maxlines") {
      Result<int> n = Int(name, opt, v);
      if (!n.ok()) return n.status();
      j->filter.maxlines = *n;
    } else if (opt == "datepattern") {
      j->filter.datepattern = v.ToPyStr();
    } else if (opt == "logtimezone") {
      j->filter.logtimezone = v.ToPyStr();
    } else if (opt == "addjournalmatch") {
      j->journalmatch.push_back(values);
    } else if (opt == "addlogpath") {
      const bool tail = c.size() >= 5 && c[4].ToPyStr() == "tail";
      j->logpaths.emplace_back(v.ToPyStr(), tail);
    } else if (opt == "maxretry" || opt == "maxmatches") {
      Result<int> n = Int(name, opt, v);
      if (!n.ok()) return n.status();
      (opt == "maxretry" ? j->maxretry : j->maxmatches) = *n;
    } else if (opt == "findtime" || opt == "bantime") {
      Result<double> s = Seconds(name, opt, v);
      if (!s.ok()) return s.status();
      (opt == "findtime" ? j->findtime : j->bantime) = *s;
      if (opt == "findtime") j->filter.findtime = *s;
    } else if (opt == "addignoreip") {
      for (std::string& ip : values) j->ignoreip.push_back(std::move(ip));
    } else if (opt == "ignoreself") {
      j->ignoreself = Bool(v);
    } else if (opt == "ignorecommand") {
      j->ignorecommand = v.ToPyStr();
    } else if (opt == "bantime.increment") {
      j->increment.increment = Bool(v);
    } else if (opt == "bantime.factor") {
      j->increment.factor = v.ToPyStr();
    } else if (opt == "bantime.formula") {
      j->increment.formula = v.ToPyStr();
    } else if (opt == "bantime.multipliers") {
      j->increment.multipliers = v.ToPyStr();
    } else if (opt == "bantime.maxtime" || opt == "bantime.rndtime") {
      Result<double> s = Seconds(name, opt, v);
      if (!s.ok()) return s.status();
      (opt == "bantime.maxtime" ? j->increment.maxtime : j->increment.rndtime) = *s;
    } else if (opt == "bantime.overalljails") {
      j->increment.overalljails = Bool(v);
    } else if (opt == "addaction") {
      j->actions.push_back(JailActionConfig{v.ToPyStr(), {}});
    } else if (opt == "action" && c.size() >= 5) {
      const std::string actname = v.ToPyStr();
      JailActionConfig* a = nullptr;
      for (JailActionConfig& x : j->actions)
        if (x.name == actname) a = &x;
      if (a == nullptr) continue;
      if (op == "multi-set" && c[4].is_list()) {
        for (const Value& pair : c[4].as_list()) {
          if (pair.is_list() && pair.as_list().size() == 2) {
            a->options.emplace_back(pair.as_list()[0].ToPyStr(), pair.as_list()[1]);
          }
        }
      } else if (c.size() >= 6) {
        a->options.emplace_back(c[4].ToPyStr(), c[5]);
      }
    } else if (opt == "logencoding" || opt == "idle") {
      // UTF-8 only (decoded as fail2ban's 'replace'); idle comes with the client.
    } else {
      if (warnings) warnings->push_back("jail '" + name + "': setting " + opt + " is not supported yet; ignored");
    }
  }
  return jails;
}

// ---------------------------------------------------------------------------

Jail::Jail(JailConfig config, const Clock& clock, JailEvents* events, BanHistory* history)
    : config_(std::move(config)),
      clock_(clock),
      events_(events),
      history_(history),
      fails_(FailManagerOptions{config_.maxretry, config_.findtime, config_.maxmatches,
                                kDefaultMaxFailEntries}),
      bans_(clock, config_.bantime) {}

Result<std::unique_ptr<Jail>> Jail::Create(JailConfig config, const Clock& clock, JailEvents* events,
                                           BanHistory* history, Resolver* resolver,
                                           HostAddresses* self, CommandRunner* runner) {
  std::unique_ptr<Jail> j(new Jail(std::move(config), clock, events, history));
  j->resolver_ = resolver;
  const std::string jail_name = j->config_.name;
  if (Status s = j->SetFilterSettings(j->config_.filter); !s.ok()) return s;
  j->ignore_ = std::make_unique<IgnoreList>(clock, resolver, self, runner);
  for (const std::string& ip : j->config_.ignoreip) j->ignore_->Add(ip);
  j->ignore_->set_ignoreself(j->config_.ignoreself);
  j->ignore_->set_ignorecommand(j->config_.ignorecommand);
  if (Status s = ValidatePrefixOptions(j->config_.prefixes); !s.ok()) {
    return Status::Error("jail '" + jail_name + "': " + s.message());
  }
  for (int family : {AF_INET, AF_INET6}) {
    const PrefixOptions& p = j->config_.prefixes;
    if (p.AggregatePlen(family) > 0) {
      j->bans_.set_aggregation(family, p.AggregatePlen(family), p.UnitPlen(family));
    }
  }
  if (j->config_.increment.increment) {
    Result<BanTimeIncrement> inc = BanTimeIncrement::Create(j->config_.increment);
    if (!inc.ok()) return Status::Error("jail '" + jail_name + "': " + inc.status().message());
    j->increment_.emplace(std::move(*inc));
  }
  return j;
}

Status Jail::SetFilterSettings(FilterSettings settings) {
  FilterSettings fs = settings;
  fs.resolver = resolver_;
  fs.share_date_searches = true;  // jails on one file search a line's date once
  fs.share_line_scans = true;     // ... and scan it for their gates' strings once
  fs.keep_processed_line = false;  // nothing in the daemon reads it
  const std::string jail_name = config_.name;
  JailEvents* ev = events_;
  fs.warn = [ev, jail_name](const std::string& m) { ev->OnWarning(jail_name, m); };
  Result<std::unique_ptr<Filter>> filter = Filter::Create(std::move(fs));
  if (!filter.ok()) {
    return Status::Error("jail '" + jail_name + "': " + filter.status().message());
  }
  filter_ = std::move(*filter);
  config_.filter = std::move(settings);
  return Status::Ok();
}

Status Jail::SetIncrement(const BanTimeIncrementOptions& options) {
  if (!options.increment) {
    increment_.reset();
  } else {
    Result<BanTimeIncrement> inc = BanTimeIncrement::Create(options);
    if (!inc.ok()) return Status::Error("jail '" + config_.name + "': " + inc.status().message());
    increment_.emplace(std::move(*inc));
  }
  config_.increment = options;
  return Status::Ok();
}

void Jail::set_maxretry(int value) {
  config_.maxretry = value;
  fails_.set_maxretry(value);
}

void Jail::set_maxmatches(int value) {
  config_.maxmatches = value;
  fails_.set_maxmatches(value);
}

void Jail::set_bantime(double seconds) {
  config_.bantime = seconds;
  bans_.set_ban_time(seconds);
}

void Jail::set_findtime(double seconds) {
  config_.findtime = seconds;
  fails_.set_findtime(seconds);
  FilterSettings fs = config_.filter;
  fs.findtime = seconds;
  // The same settings compiled before: only the findtime differs.
  if (!SetFilterSettings(std::move(fs)).ok()) config_.filter.findtime = seconds;
}

void Jail::AddAttempt(const IpAddr& id, std::vector<std::string> matches) {
  const double now = clock_.Now();
  const int weight = matches.empty() ? 1 : static_cast<int>(matches.size());
  FailData data;
  data.matches = std::move(matches);
  const IpAddr key = CountingId(id);
  const int retry = fails_.AddFailure(key, now, std::move(data), weight);
  if (retry >= fails_.maxretry()) TryBan(key);
}

void Jail::ProcessLine(std::string_view line, bool in_operation) {
  ProcessLine(line, in_operation, clock_.Now());
}

void Jail::ProcessLine(std::string_view line, bool in_operation, double now, uint64_t line_key) {
  if (idle_) return;
  filter_->set_in_operation(in_operation);
  filter_->ProcessLine(line, now, ++seq_, &failures_, nullptr, line_key);
  HandleFailures(now);
}

void Jail::ProcessJournalLine(std::string_view line, double time, std::string_view date_text,
                              double now) {
  if (idle_) return;
  filter_->ProcessLineWithTime(line, time, date_text, now, ++seq_, &failures_);
  HandleFailures(now);
}

void Jail::HandleFailures(double now) {
  for (Failure& f : failures_) {
    if (!f.id || f.nofail()) continue;
    // A failure never lies in the future (fail2ban clamps estimated times).
    const double time = std::min(f.time.value_or(now), now);
    auto waiting = parked_.find(*f.id);
    if (waiting != parked_.end()) {
      waiting->second.push_back(ParkedFailure{time, std::move(f.fail)});
      continue;
    }
    PendingIgnoreCommand pending;
    std::optional<IgnoreVerdict> verdict = ignore_->Prepare(*f.id, &f.fail, &pending);
    if (!verdict) {
      std::weak_ptr<Jail*> weak = alive_;
      auto done = [weak, pending](Result<int> status) {
        if (std::shared_ptr<Jail*> self = weak.lock()) (*self)->IgnoreCommandDone(pending, status);
      };
      if (events_->RunIgnoreCommand(pending, std::move(done))) {
        parked_[*f.id].push_back(ParkedFailure{time, std::move(f.fail)});
        continue;
      }
      verdict = ignore_->Check(*f.id, &f.fail);
    }
    CountFailure(*f.id, time, std::move(f.fail), *verdict);
  }
  fails_.Service(now);
}

void Jail::CountFailure(const IpAddr& id, double time, FailData&& data, const IgnoreVerdict& verdict) {
  if (!verdict.error.empty()) events_->OnWarning(config_.name, verdict.error);
  if (verdict.ignored) {
    events_->OnIgnored(config_.name, id, IgnoreSourceName(verdict.source));
    return;
  }
  events_->OnFound(config_.name, id, time);
  const IpAddr key = CountingId(id);
  const int retry = fails_.AddFailure(key, time, std::move(data));
  if (retry >= fails_.maxretry()) TryBan(key);
}

IpAddr Jail::CountingId(const IpAddr& address) {
  const IpAddr unit = config_.prefixes.UnitOf(address);
  if (unit == address) return address;
  const std::string inside = IgnoredInside(unit);
  if (inside.empty()) return unit;
  // ignoreip wins: this prefix is counted (and banned) address by address.
  if (warned_prefixes_.size() >= 4096) warned_prefixes_.clear();
  if (warned_prefixes_.emplace(unit, true).second) {
    events_->OnWarning(config_.name, "prefix " + unit.ToString() + " holds " + inside +
                                         ": its addresses are counted and banned one by one");
  }
  return address;
}

std::string Jail::IgnoredInside(const IpAddr& net) {
  if (ignore_generation_ != ignore_->generation() || ignored_inside_.size() >= 65536) {
    ignored_inside_.clear();
    warned_prefixes_.clear();
    ignore_generation_ = ignore_->generation();
  }
  auto found = ignored_inside_.find(net);
  if (found != ignored_inside_.end()) return found->second;
  std::string inside = ignore_->EntryInside(net);
  // EntryInside may refresh this host's addresses and so the generation.
  ignore_generation_ = ignore_->generation();
  ignored_inside_.emplace(net, inside);
  return inside;
}

void Jail::MaybeAggregate(const IpAddr& unit) {
  const PrefixOptions& p = config_.prefixes;
  const int plen = p.AggregatePlen(unit.family());
  if (plen == 0 || unit.plen() != p.UnitPlen(unit.family())) return;
  const IpAddr net = unit.Network(plen);
  if (bans_.UnitsIn(net) < static_cast<size_t>(p.AggregateCount(unit.family()))) return;
  if (const std::string inside = IgnoredInside(net); !inside.empty()) {
    if (warned_prefixes_.size() >= 4096) warned_prefixes_.clear();
    if (warned_prefixes_.emplace(net, true).second) {
      events_->OnWarning(config_.name, "not aggregating into " + net.ToString() + ": it holds " +
                                           inside + "; its bans stay one by one");
    }
    return;
  }
  const double now = clock_.Now();
  Ticket t;
  t.id = net;
  t.time = now;
  t.first_time = now;
  t.retry = t.attempts = 0;
  // The prefix ban never ends before a ban it replaces would have.
  double longest = 0;
  bool permanent = false;
  std::vector<Ticket> covered;
  for (const IpAddr& id : bans_.IdsIn(net)) {
    std::optional<Ticket> old = bans_.Remove(id);
    if (!old) continue;
    const double bt = old->BanTimeOr(config_.bantime);
    if (bt == kPermanentBanTime) {
      permanent = true;
    } else {
      longest = std::max(longest, old->time + bt - now);
    }
    t.retry += old->retry;
    t.attempts += old->attempts;
    t.first_time = std::min(t.first_time, old->first_time);
    covered.push_back(std::move(*old));
  }
  double bantime = config_.bantime;
  if (increment_ && history_ != nullptr) {
    std::string error;
    bantime = increment_->IncrementFor(bantime, &t, *history_, config_.name, &error);
    if (!error.empty()) events_->OnWarning(config_.name, "bantime.increment: " + error);
  }
  if (permanent || bantime == kPermanentBanTime) {
    bantime = kPermanentBanTime;
  } else {
    bantime = std::max(bantime, longest);
  }
  t.ban_time = bantime;
  t.aggregated = static_cast<int>(covered.size());
  for (const Ticket& old : covered) events_->OnCovered(config_.name, old, net);
  if (bans_.AddBan(t) == AddBanOutcome::kAdded) events_->OnBan(config_.name, t);
}

void Jail::IgnoreCommandDone(const PendingIgnoreCommand& pending, const Result<int>& status) {
  const IgnoreVerdict verdict = ignore_->Finish(pending, status);
  auto it = parked_.find(pending.id);
  if (it == parked_.end()) return;
  std::vector<ParkedFailure> waiting = std::move(it->second);
  parked_.erase(it);
  // The failures that queued behind the first share its answer (fail2ban
  // would have asked again, or found it in ignorecache).
  for (ParkedFailure& p : waiting) CountFailure(pending.id, p.time, std::move(p.data), verdict);
  fails_.Service(clock_.Now());
}

void Jail::TryBan(const IpAddr& id) {
  std::optional<Ticket> ticket = fails_.ToBan(&id);
  if (!ticket) return;
  if (const Ticket* prefix = bans_.CoveringBan(id)) {
    // A banned prefix holds it already: its packets are dropped.
    events_->OnAlreadyBanned(config_.name, prefix->id);
    return;
  }
  double bantime = config_.bantime;
  if (increment_ && history_ != nullptr) {
    std::string error;
    bantime = increment_->IncrementFor(bantime, &*ticket, *history_, config_.name, &error);
    if (!error.empty()) events_->OnWarning(config_.name, "bantime.increment: " + error);
  }
  ticket->ban_time = bantime;
  ticket->time = clock_.Now();
  const Ticket* existing = nullptr;
  switch (bans_.AddBan(*ticket, &existing)) {
    case AddBanOutcome::kAdded:
      events_->OnBan(config_.name, *ticket);
      MaybeAggregate(id);
      break;
    case AddBanOutcome::kAlreadyBanned:
    case AddBanOutcome::kProlonged:
      events_->OnAlreadyBanned(config_.name, id);
      break;
    case AddBanOutcome::kExpired:
      break;
  }
}

bool Jail::BanNow(const IpAddr& id) {
  if (const Ticket* prefix = bans_.CoveringBan(id)) {
    events_->OnAlreadyBanned(config_.name, prefix->id);
    return false;
  }
  if (bans_.IsBanned(id)) {
    // fail2ban's addBannedIP of a banned id: its ban is prolonged to end
    // one bantime from now.
    Ticket again;
    again.id = id;
    again.time = clock_.Now();
    bans_.AddBan(std::move(again));
    events_->OnAlreadyBanned(config_.name, id);
    return false;
  }
  Ticket t;
  t.id = id;
  t.time = clock_.Now();
  t.first_time = t.time;
  t.retry = t.attempts = config_.maxretry;
  double bantime = config_.bantime;
  if (increment_ && history_ != nullptr) bantime = increment_->IncrementFor(bantime, &t, *history_, config_.name);
  t.ban_time = bantime;
  if (bans_.AddBan(t) != AddBanOutcome::kAdded) return false;
  events_->OnBan(config_.name, t);
  MaybeAggregate(id);
  return true;
}

void Jail::Restore(Ticket ticket) {
  ticket.restored = true;
  // A prefix ban and the bans it covers are never held together (a record
  // of a covered ban can outlive its prefix's aggregation in a crash).
  if (bans_.CoveringBan(ticket.id) != nullptr) return;
  if (ticket.id.is_ip() && !ticket.id.is_single()) {
    for (const IpAddr& id : bans_.IdsIn(ticket.id)) {
      if (id == ticket.id) continue;
      if (std::optional<Ticket> old = bans_.Remove(id)) events_->OnCovered(config_.name, *old, ticket.id);
    }
  }
  if (bans_.AddBan(ticket) == AddBanOutcome::kAdded) events_->OnBan(config_.name, ticket);
}

bool Jail::Unban(const IpAddr& id, IpAddr* lifted) {
  std::optional<Ticket> t = bans_.Remove(id);
  if (!t) {
    const Ticket* prefix = bans_.CoveringBan(id);
    if (prefix == nullptr) return false;
    t = bans_.Remove(IpAddr(prefix->id));
  }
  if (lifted != nullptr) *lifted = t->id;
  events_->OnUnban(config_.name, *t);
  return true;
}

void Jail::TakeStateFrom(Jail& old) {
  for (Ticket& t : old.bans_.Flush()) {
    // AddBan counts a new ban; this one is only moving.
    t.ban_count -= 1;
    bans_.AddBan(std::move(t));
  }
  bans_.set_ban_total(old.bans_.ban_total());
  fails_.TakeFrom(old.fails_);
}

std::vector<Ticket> Jail::UnbanAll() {
  std::vector<Ticket> all = bans_.Flush();
  for (const Ticket& t : all) events_->OnUnban(config_.name, t);
  return all;
}

void Jail::UnbanDue() {
  for (const Ticket& t : bans_.TakeDue(clock_.Now())) events_->OnUnban(config_.name, t);
}

}  // namespace bantam
