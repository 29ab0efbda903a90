// The control socket's commands: fail2ban 1.0.2's Transmitter (and the
// Server/Jail/Filter/Actions methods it calls) over bantamd's state. Reply
// values and exceptions are fail2ban's, so the client prints what
// fail2ban-client prints; see control_protocol.h for the wire format and the
// deliberate differences.
#include <grp.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "bantam/duration.h"
#include "bantam/layered_config.h"
#include "bantam/option_list.h"
#include "bantam/py.h"
#include "server_impl.h"

namespace bantam {
namespace {

constexpr const char kDefaultSocket[] = "/var/run/fail2ban/fail2ban.sock";

ControlReply Ok(Value v) { return ControlReply::Success(std::move(v)); }
ControlReply UnknownJail(const std::string& name) {
  return ControlReply::KeyFailure("UnknownJailException", name);
}
ControlReply IndexError() { return ControlReply::Failure("IndexError", "list index out of range"); }
ControlReply InvalidSet(const std::string& opt) {
  return ControlReply::Failure("Exception",
                               "Invalid command " + PyRepr(opt) + " (no set action or not yet implemented)");
}
ControlReply InvalidGet() {
  return ControlReply::Failure("Exception", "Invalid command (no get action or not yet implemented)");
}
ControlReply Unsupported(const std::string& what) {
  return ControlReply::Failure("NotImplementedError",
                               what + " is not supported by bantam's control socket");
}

// Seconds as fail2ban's str2seconds gives them: an int when whole.
Value Secs(double s) {
  if (std::isfinite(s) && s == std::floor(s) && std::fabs(s) < 9e15) return static_cast<int64_t>(s);
  return s;
}

// Python's int(text), limited to int64. Errors carry Python's message.
Result<int64_t> IntArg(const std::string& text) {
  bool overflow = false;
  const std::optional<int64_t> n = PyInt(text, &overflow);
  if (!n || overflow) {
    return Status::Error("invalid literal for int() with base 10: " + PyRepr(text));
  }
  return *n;
}

ControlReply ValueError(const std::string& m) { return ControlReply::Failure("ValueError", m); }

// A DNS name as unbanip takes it: dot-separated labels of letters, digits
// and hyphens, at most 253 characters.
bool IsHostName(std::string_view v) {
  if (v.empty() || v.size() > 253) return false;
  size_t label = 0;
  for (char c : v) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// banip takes addresses and networks; unbanip and unban also host names.
// Anything else (a raw failure id, shell syntax, a NUL) is refused before it
// reaches a jail, the database, an action or the log. fail2ban has no
// check of its own (it refuses some such strings only by accident, when a
// "/" makes it read a mask); the reply names the value as Python's repr.
std::optional<ControlReply> RefuseNonAddresses(const std::vector<std::string>& cmd, size_t first,
                                               bool names_too) {
  for (size_t i = first; i < cmd.size(); ++i) {
    if (IpAddr::FromText(cmd[i]).is_ip()) continue;
    if (names_too && IsHostName(cmd[i])) continue;
    return ValueError(PyRepr(cmd[i]) + " is not an IP address" +
                      (names_too ? ", network or host name" : " or network"));
  }
  return std::nullopt;
}

std::string TimeText(double t) {
  const time_t secs = static_cast<time_t>(t);
  struct tm tm {};
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// Python's repr() of a list of str.
std::string PyListRepr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += PyRepr(items[i]);
  }
  return out + "]";
}

std::string CommandRepr(const std::vector<std::string>& cmd) { return PyListRepr(cmd); }

Value StringList(const std::vector<std::string>& v) { return Value::List(v.begin(), v.end()); }

}  // namespace

Status ServerImpl::StartControl() {
  const std::string* configured = server_opts_.Find("socket");
  const std::string path = configured && !configured->empty() ? *configured : kDefaultSocket;
  ControlServer::Options o;
  o.path = path;
  // socketgroup is bantam's own option of fail2ban.conf/.local [Definition];
  // fail2ban's reader does not know it, so it is read here.
  ConfigFileCache cache;
  LayeredConfig cfg(options_.basedir, &cache);
  bool found = false;
  if (cfg.Read("fail2ban", &found).ok() && found) {
    Lookup g = cfg.Get("Definition", "socketgroup");
    if (g.ok() && !g.value.empty()) {
      struct group grp {};
      struct group* res = nullptr;
      std::vector<char> buf(16384);
      if (::getgrnam_r(g.value.c_str(), &grp, buf.data(), buf.size(), &res) != 0 || res == nullptr) {
        return Status::Error("socketgroup " + PyRepr(g.value) + ": no such group");
      }
      control_group_ = res->gr_gid;
      control_group_name_ = g.value;
      o.mode = 0660;
      o.group = res->gr_gid;
    }
  }
  Result<std::unique_ptr<ControlServer>> s = ControlServer::Start(
      loop_.get(), std::move(o),
      [this](const ControlRequest& r, const PeerCredentials& p) { return OnControl(r, p); },
      [this](const std::string& m) { Log(LogLevel::kWarning, "fail2ban.server", m); });
  if (!s.ok()) return s.status();
  control_ = std::move(*s);
  Log(LogLevel::kInfo, "fail2ban.server",
      "Control socket " + path +
          (control_group_ ? " (read-only for group " + control_group_name_ + ")" : ""));
  return Status::Ok();
}

ControlServer::Response ServerImpl::OnControl(const ControlRequest& request,
                                              const PeerCredentials& peer) {
  // root and the daemon's own user may do everything; the socketgroup only
  // what changes nothing.
  const bool full = peer.uid == 0 || peer.uid == ::geteuid();
  if (!full) {
    const bool reader = control_group_ && peer.InGroup(*control_group_);
    std::string why;
    if (!reader) {
      why = "permission denied: uid " + std::to_string(peer.uid) +
            " may not use bantam's control socket (root only" +
            (control_group_ ? ", or read-only commands for group " + control_group_name_ : "") + ")";
    } else if (!IsReadOnlyCommand(request.cmd)) {
      why = "permission denied: group " + control_group_name_ +
            " may only run read-only commands (ping, version, echo, status, banned, get); " +
            PyRepr(request.cmd[0]) + " needs root";
    }
    if (!why.empty()) {
      // A member of the socket's group sending refused commands in a loop
      // gets one line a minute, with the count of those held back.
      uint64_t held = 0;
      if (refused_log_.Allow(peer.uid, EventLoop::NowMs(), &held)) {
        Log(LogLevel::kWarning, "fail2ban.server",
            "Refused command " + CommandRepr(request.cmd) + " from uid " +
                std::to_string(peer.uid) + " pid " + std::to_string(peer.pid) +
                (held > 0 ? " (and " + std::to_string(held) + " more from this uid not logged since the last such line)"
                          : ""));
      }
      return {ControlReply::Failure("PermissionError", why), nullptr};
    }
  }
  ControlServer::Response r;
  r.reply = ControlCommand(request.cmd, &r.after_sent);
  if (!r.reply.ok) {
    Log(LogLevel::kError, "fail2ban.transmitter",
        "Command " + CommandRepr(request.cmd) + " has failed. Received " + r.reply.error.type +
            "(" + PyRepr(r.reply.error.message) + ")");
  }
  return r;
}

ControlReply ServerImpl::ControlCommand(const std::vector<std::string>& cmd,
                                        std::function<void()>* after) {
  const std::string& name = cmd[0];
  auto arg = [&](size_t i) -> const std::string* { return i < cmd.size() ? &cmd[i] : nullptr; };
  if (name == "ping") return Ok("pong");
  if (name == "version") return Ok(kFail2banCompatVersion);
  if (name == "echo") return Ok(StringList({cmd.begin() + 1, cmd.end()}));
  if (name == "server-status") return Ok("Server ready");
  if (name == "status") return ControlStatus(cmd);
  if (name == "get") return ControlGet(cmd);
  if (name == "set") return ControlSet(cmd);
  if (name == "reload") return ControlReload(cmd);
  if (name == "flushlogs") {
    Result<std::string> r = logger_->Reopen();
    if (!r.ok()) return ControlReply::Failure("Exception", r.status().message());
    return Ok(*r);
  }
  if (name == "banned") {
    Value::List res;
    if (cmd.size() > 1) {
      for (size_t i = 1; i < cmd.size(); ++i) {
        const IpAddr id = IpAddr::FromText(cmd[i]);
        Value::List in;
        for (auto& js : jails_)
          if (js->jail->bans().IsBanned(id)) in.emplace_back(js->jail->name());
        res.emplace_back(std::move(in));
      }
    } else {
      for (auto& js : jails_) {
        Value::List ips;
        for (const IpAddr& id : js->jail->bans().BannedIds()) ips.emplace_back(id.ToString());
        res.emplace_back(Value::Dict{{js->jail->name(), Value(std::move(ips))}});
      }
    }
    return Ok(Value(std::move(res)));
  }
  if (name == "unban" && cmd.size() >= 2) {
    int64_t cnt = 0;
    if (cmd.size() == 2 && cmd[1] == "--all") {
      for (auto& js : jails_) cnt += ControlUnbanAll(*js);
    } else {
      if (auto refused = RefuseNonAddresses(cmd, 1, /*names_too=*/true)) return *refused;
      const std::vector<std::string> ips(cmd.begin() + 1, cmd.end());
      for (auto& js : jails_) cnt += ControlUnban(*js, ips, nullptr);
    }
    return Ok(cnt);
  }
  if (name == "add") {
    const std::string* jail = arg(1);
    if (jail == nullptr) return IndexError();
    if (*jail == "--all") return ControlReply::Failure("Exception", "Reserved name " + PyRepr(*jail));
    const bool pending = std::any_of(pending_jails_.begin(), pending_jails_.end(),
                                     [&](const auto& p) { return p.name == *jail; });
    if (FindJail(*jail) != nullptr || pending) {
      return ControlReply::Failure("DuplicateJailException", *jail);
    }
    // Configured by the set commands that follow, started by `start JAIL`.
    PendingJail p;
    p.name = *jail;
    p.commands.push_back(Value::List{"add", *jail, arg(2) ? *arg(2) : std::string("auto")});
    pending_jails_.push_back(std::move(p));
    return Ok(*jail);
  }
  if (name == "stop" && cmd.size() == 1) {
    // Answered first; the loop stops once the reply is out.
    *after = [this] {
      Log(LogLevel::kInfo, "fail2ban.server", "Shutdown in progress...");
      loop_->Stop();
    };
    return Ok(nullptr);
  }
  if (name == "start" || name == "stop") return ControlStartStopJail(cmd);
  if (name == "config-error") {
    if (arg(1) == nullptr) return IndexError();
    Log(LogLevel::kError, "fail2ban.transmitter", *arg(1));
    return Ok(nullptr);
  }
  if (name == "multi-set" || name == "server-stream") {
    return Unsupported(PyRepr(name) + " (bantamd reads its own configuration; use reload)");
  }
  if (name == "sleep") return Unsupported("'sleep' (it would block the daemon)");
  return ControlReply::Failure("Exception", "Invalid command");
}

ControlReply ServerImpl::ControlStartStopJail(const std::vector<std::string>& cmd) {
  if (cmd.size() < 2) return IndexError();
  const std::string& jail = cmd[1];
  if (cmd[0] == "start") {
    if (JailState* js = FindJail(jail)) {
      js->jail->set_idle(false);
      return Ok(nullptr);
    }
    auto p = std::find_if(pending_jails_.begin(), pending_jails_.end(),
                          [&](const PendingJail& x) { return x.name == jail; });
    if (p == pending_jails_.end()) return UnknownJail(jail);
    std::vector<std::string> warnings;
    Result<std::vector<JailConfig>> configs = JailsFromCommands(p->commands, &warnings);
    for (const std::string& w : warnings) Log(LogLevel::kWarning, "fail2ban.server", w);
    if (!configs.ok() || configs->size() != 1) {
      return ControlReply::Failure("Exception", configs.ok() ? "jail " + PyRepr(jail) + " has no settings"
                                                             : configs.status().message());
    }
    std::string signature;
    for (const Value& v : p->commands) {
      v.AppendJson(&signature);
      signature.push_back('\n');
    }
    Result<std::unique_ptr<JailState>> built = BuildJail(std::move(configs->front()), signature);
    if (!built.ok()) return ControlReply::Failure("Exception", built.status().message());
    pending_jails_.erase(p);
    JailState& fresh = **built;
    jails_.push_back(std::move(*built));
    StartJail(fresh);
    AttachSources(fresh);
    ReadIn({&fresh});
    return Ok(nullptr);
  }
  // stop --all | stop JAIL
  std::vector<std::string> names;
  if (jail == "--all") {
    Log(LogLevel::kInfo, "fail2ban.server", "Stopping all jails");
    for (auto& js : jails_) names.push_back(js->jail->name());
    pending_jails_.clear();
  } else {
    auto p = std::find_if(pending_jails_.begin(), pending_jails_.end(),
                          [&](const PendingJail& x) { return x.name == jail; });
    if (p != pending_jails_.end()) {
      pending_jails_.erase(p);
      return Ok(nullptr);
    }
    if (FindJail(jail) == nullptr) return UnknownJail(jail);
    names.push_back(jail);
  }
  for (const std::string& n : names) {
    auto it = std::find_if(jails_.begin(), jails_.end(),
                           [&](const std::unique_ptr<JailState>& js) { return js->jail->name() == n; });
    if (it == jails_.end()) continue;
    SaveLogPositions();
    StopJail(**it);
    if (Status s = store_->DelJail(n); !s.ok()) Log(LogLevel::kError, "fail2ban.database", s.message());
    jails_.erase(it);
    PruneCounters();
  }
  return Ok(nullptr);
}

ControlReply ServerImpl::ControlReload(const std::vector<std::string>& cmd) {
  ReloadRequest req;
  bool if_exists = false;
  for (size_t i = 1; i < cmd.size(); ++i) {
    const std::string& w = cmd[i];
    if (w == "--restart") {
      req.restart = true;
    } else if (w == "--unban") {
      req.unban = true;
    } else if (w == "--all") {
      req.jail.reset();
    } else if (w == "--if-exists") {
      if_exists = true;
    } else if (!w.empty() && w[0] == '-' && w.size() > 1 && w[1] == '-') {
      return ValueError("unknown reload option " + PyRepr(w));
    } else if (req.jail) {
      return ValueError("reload takes at most one jail");
    } else {
      req.jail = w;
    }
  }
  if (std::find(cmd.begin(), cmd.end(), "--all") != cmd.end()) req.jail.reset();
  Status s = Reload(req);
  if (!s.ok()) {
    if (if_exists && req.jail && FindJail(*req.jail) == nullptr &&
        s.message().rfind("Sorry but the jail", 0) == 0) {
      return Ok("OK");
    }
    return ControlReply::Failure("Exception", s.message());
  }
  return Ok("OK");
}

Value ServerImpl::ControlJailStatus(JailState& js, const std::string& flavor) {
  const Jail& j = *js.jail;
  Value::List filter{Value::List{"Currently failed", static_cast<int64_t>(j.failures().size())},
                     Value::List{"Total failed", static_cast<int64_t>(j.failures().fail_total())}};
  for (const std::shared_ptr<LineSource>& s : js.sources) {
    SourceStatus st = s->StatusOf(js.id);
    filter.emplace_back(Value::List{std::move(st.title), StringList(st.items)});
  }
  Value::List ips;
  const bool short_flavor = flavor == "short";
  if (!short_flavor) {
    for (const IpAddr& id : j.bans().BannedIds()) ips.emplace_back(id.ToString());
  }
  Value::List actions{Value::List{"Currently banned", static_cast<int64_t>(j.bans().size())},
                      Value::List{"Total banned", static_cast<int64_t>(j.bans().ban_total())}};
  if (!short_flavor) actions.emplace_back(Value::List{"Banned IP list", Value(std::move(ips))});
  if (flavor == "cymru") {
    // fail2ban asks Team Cymru's DNS through dnspython and, without it,
    // answers "error" for each list; bantamd does no such lookups on its
    // loop.
    Log(LogLevel::kError, "fail2ban.actions", "the cymru status flavor needs DNS lookups bantamd does not do");
    for (const char* k : {"Banned ASN list", "Banned Country list", "Banned RIR list"}) {
      actions.emplace_back(Value::List{k, Value::List{"error"}});
    }
  }
  return Value::List{Value::List{"Filter", Value(std::move(filter))},
                     Value::List{"Actions", Value(std::move(actions))}};
}

ControlReply ServerImpl::ControlStatus(const std::vector<std::string>& cmd) {
  if (cmd.size() == 1) {
    std::vector<std::string> names;
    for (auto& js : jails_) names.push_back(js->jail->name());
    std::sort(names.begin(), names.end());
    std::string list;
    for (size_t i = 0; i < names.size(); ++i) list += (i ? ", " : "") + names[i];
    Value::List out{Value::List{"Number of jail", static_cast<int64_t>(jails_.size())},
                    Value::List{"Jail list", list}};
    if (fleet_) {
      for (Value& pair : fleet_->StatusPairs()) out.push_back(std::move(pair));
    }
    return Ok(Value(std::move(out)));
  }
  if (cmd.size() > 3) return ControlReply::Failure("Exception", "Invalid command (no status)");
  const std::string flavor = cmd.size() == 3 ? cmd[2] : "basic";
  if (flavor != "short" && flavor != "basic" && flavor != "cymru") {
    Log(LogLevel::kWarning, "fail2ban.actions",
        "Unsupported extended jail status flavor " + PyRepr(flavor) +
            ". Supported: ['short', 'basic', 'cymru']");
  }
  if (cmd[1] == "--all") {
    // fail2ban 1.1's `status --all [FLAVOR]`.
    std::vector<JailState*> sorted;
    for (auto& js : jails_) sorted.push_back(js.get());
    std::sort(sorted.begin(), sorted.end(),
              [](JailState* a, JailState* b) { return a->jail->name() < b->jail->name(); });
    Value::Dict per_jail;
    for (JailState* js : sorted) per_jail.emplace_back(js->jail->name(), ControlJailStatus(*js, flavor));
    if (flavor == "stats") return Ok(Value(std::move(per_jail)));
    std::string list;
    for (size_t i = 0; i < sorted.size(); ++i) list += (i ? ", " : "") + sorted[i]->jail->name();
    return Ok(Value::List{Value::List{"Number of jail", static_cast<int64_t>(sorted.size())},
                          Value::List{"Jail list", list}, Value(std::move(per_jail))});
  }
  JailState* js = FindJail(cmd[1]);
  if (js == nullptr) return UnknownJail(cmd[1]);
  return Ok(ControlJailStatus(*js, flavor));
}

int ServerImpl::ControlUnbanAll(JailState& js) {
  // This turn's bans are written (and acted on) before they are lifted.
  ReportDeferredBans();
  ScopedCause manual(this, BanCause::kManual, UnbanCause::kManual);
  const std::vector<Ticket> lifted = js.jail->UnbanAll();
  const int n = static_cast<int>(lifted.size());
  if (fleet_) {
    for (const Ticket& t : lifted) fleet_->OperatorUnban(js.jail->name(), t.id);
  }
  ForgetUnsavedBansLifted(js);
  // fail2ban's flush also forgets the jail's bans in the database.
  if (Status s = store_->DelAllBans(js.jail->name()); !s.ok()) {
    Log(LogLevel::kError, "fail2ban.database", s.message());
  }
  return n;
}

int ServerImpl::ControlUnban(JailState& js, const std::vector<std::string>& ips,
                             std::vector<std::string>* missed, bool publish) {
  ReportDeferredBans();
  // An operator's unban (`publish`); the fleet's and the recursion below
  // keep the cause their caller set.
  std::optional<ScopedCause> manual;
  if (publish) manual.emplace(this, BanCause::kManual, UnbanCause::kManual);
  int cnt = 0;
  for (const std::string& ip : ips) {
    // Always from the database too, banned now or not (as fail2ban).
    if (Status s = store_->DelBan(js.jail->name(), ip); !s.ok()) {
      Log(LogLevel::kError, "fail2ban.database", s.message());
    }
    const IpAddr id = IpAddr::FromText(ip);
    IpAddr lifted;
    if (js.jail->Unban(id, &lifted)) {
      if (!(lifted == id)) {
        // An address inside a banned prefix: the prefix is what is lifted.
        Log(LogLevel::kNotice, "fail2ban.actions",
            "[" + js.jail->name() + "] " + ip + " is inside the banned prefix " +
                lifted.ToString() + ": lifted the prefix");
        if (Status s = store_->DelBan(js.jail->name(), lifted.ToString()); !s.ok()) {
          Log(LogLevel::kError, "fail2ban.database", s.message());
        }
      }
      if (publish && fleet_) fleet_->OperatorUnban(js.jail->name(), lifted);
      ++cnt;
      continue;
    }
    if (publish && fleet_) fleet_->OperatorUnban(js.jail->name(), id);
    if (!id.is_single()) {
      // A subnet (or a name): every banned address in it.
      std::vector<IpAddr> in = js.jail->bans().IdsIn(id);
      if (!in.empty()) {
        std::vector<std::string> texts;
        for (const IpAddr& x : in) texts.push_back(x.ToString());
        cnt += ControlUnban(js, texts, missed, /*publish=*/false);
        continue;
      }
    }
    if (missed) missed->push_back(ip);
  }
  ForgetUnsavedBansLifted(js);
  return cnt;
}

Value ServerImpl::BanTimeExtra(const JailState& js, const std::string& opt) const {
  auto over = ban_extra_.find(js.id);
  if (over != ban_extra_.end()) {
    for (const auto& [k, v] : over->second)
      if (k == opt) return v;
  }
  // The configured value, from the jail's part of the command stream.
  Value found;
  size_t pos = 0;
  const std::string& sig = js.signature;
  while (pos < sig.size()) {
    size_t nl = sig.find('\n', pos);
    if (nl == std::string::npos) nl = sig.size();
    const std::string_view line(sig.data() + pos, nl - pos);
    pos = nl + 1;
    if (line.find("bantime." + opt) == std::string_view::npos) continue;
    Result<Value> v = Value::ParseJson(line);
    if (!v.ok() || !v->is_list() || v->as_list().size() < 4) continue;
    const Value::List& l = v->as_list();
    if (l[0].ToPyStr() != "set" || l[2].ToPyStr() != "bantime." + opt) continue;
    const std::string raw = l[3].ToPyStr();
    if (raw.empty()) {
      found = Value();
    } else if (opt == "increment") {
      found = PyAsBool(raw);
    } else if (opt == "maxtime" || opt == "rndtime") {
      Result<double> d = ParseDuration(raw);
      found = d.ok() ? Secs(*d) : Value(raw);
    } else {
      found = l[3].is_string() ? l[3] : Value(raw);
    }
  }
  return found;
}

FailRegexOptions ServerImpl::ShownRegexOptions(const JailState& js) const {
  const FilterSettings& f = js.jail->config().filter;
  FailRegexOptions ro;
  auto dns = regex_dns_.find(js.id);
  ro.host_matches_dns = dns != regex_dns_.end() ? dns->second : f.usedns != "no";
  ro.maxlines = f.maxlines;
  return ro;
}

ControlReply ServerImpl::ControlGet(const std::vector<std::string>& cmd) {
  if (cmd.size() < 2) return IndexError();
  const std::string& name = cmd[1];
  if (name == "loglevel") return Ok(LogLevelName(logger_->level()));
  if (name == "logtarget") return Ok(logger_->target());
  if (name == "syslogsocket") {
    const std::string* v = server_opts_.Find("syslogsocket");
    return Ok(v ? *v : std::string("auto"));
  }
  if (name == "thread") return Ok(Value::Dict{{"stacksize", 0}});
  if (name == "dbfile") return store_->enabled() ? Ok(dbfile_) : Ok(nullptr);
  if (name == "dbmaxmatches") {
    return store_->enabled() ? Ok(static_cast<int64_t>(store_->max_matches())) : Ok(nullptr);
  }
  if (name == "dbpurgeage") {
    return store_->enabled() ? Ok(static_cast<int64_t>(store_->purge_age())) : Ok(nullptr);
  }
  if (cmd.size() < 3) return IndexError();
  const std::string& opt = cmd[2];
  if (opt == "fleet") {  // bantam's own: the jail's fleet mode
    if (FindJail(name) == nullptr) return UnknownJail(name);
    return Ok(std::string(FleetModeName(fleet_ ? fleet_->ModeOf(name) : FleetMode::kNo)));
  }
  static const char* const kJailGets[] = {
      "banned",     "logpath",   "logencoding", "journalmatch", "ignoreself",  "ignoreip",
      "ignorecommand", "ignorecache", "prefregex", "failregex", "ignoreregex", "usedns",
      "findtime",   "datepattern", "logtimezone", "maxmatches", "maxretry",    "maxlines",
      "bantime",    "banip",     "actions",     "action",      "actionproperties", "actionmethods"};
  const bool known = std::find_if(std::begin(kJailGets), std::end(kJailGets), [&](const char* k) {
                       return opt == k;
                     }) != std::end(kJailGets) ||
                     opt.rfind("bantime.", 0) == 0;
  if (!known) return InvalidGet();
  JailState* js = FindJail(name);
  if (js == nullptr) return UnknownJail(name);
  Jail& j = *js->jail;
  const JailConfig& c = j.config();
  const FailRegexOptions ro = ShownRegexOptions(*js);

  if (opt == "banned") {
    if (cmd.size() == 3) {
      Value::List ips;
      for (const IpAddr& id : j.bans().BannedIds()) ips.emplace_back(id.ToString());
      return Ok(Value(std::move(ips)));
    }
    if (cmd.size() == 4) return Ok(j.bans().IsBanned(IpAddr::FromText(cmd[3])) ? 1 : 0);
    Value::List r;
    for (size_t i = 3; i < cmd.size(); ++i) r.emplace_back(j.bans().IsBanned(IpAddr::FromText(cmd[i])) ? 1 : 0);
    return Ok(Value(std::move(r)));
  }
  if (opt == "logpath") {
    if (ReadsJournal(c) || ReadsAmi(c)) return Ok(Value::List{});
    return Ok(StringList(files_->paths(js->id)));
  }
  if (opt == "logencoding") return Ok("UTF-8");
  if (opt == "journalmatch") {
    Value::List r;
    if (c.backend.rfind("systemd", 0) == 0) {
      for (const auto& m : c.journalmatch) r.emplace_back(StringList(m));
    }
    return Ok(Value(std::move(r)));
  }
  if (opt == "ignoreself") return Ok(j.ignore_list().ignoreself());
  if (opt == "ignoreip") {
    Value::List r;
    for (const IpAddr& a : j.ignore_list().Entries()) r.emplace_back(a.ToString());
    return Ok(Value(std::move(r)));
  }
  if (opt == "ignorecommand") {
    // fail2ban's default is False, not "".
    const std::string& ic = j.ignore_list().ignorecommand();
    return ic.empty() ? Ok(false) : Ok(ic);
  }
  if (opt == "ignorecache") return Ok(nullptr);
  if (opt == "prefregex") {
    return Ok(c.filter.prefregex.empty() ? std::string() : ExpandFailRegexTags(c.filter.prefregex, ro));
  }
  if (opt == "failregex" || opt == "ignoreregex") {
    Value::List r;
    for (const std::string& re : opt == "failregex" ? c.filter.failregex : c.filter.ignoreregex) {
      r.emplace_back(ExpandFailRegexTags(re, ro));
    }
    return Ok(Value(std::move(r)));
  }
  if (opt == "usedns") return Ok(c.filter.usedns);
  if (opt == "findtime") return Ok(Secs(c.findtime));
  if (opt == "datepattern") {
    const std::vector<DateTemplateStats> t = j.filter().date_detector().templates();
    if (t.empty() || t.size() > 2) return Ok(Value::List{nullptr, "Default Detectors"});
    return Ok(Value::List{c.filter.datepattern, t.front().name});
  }
  if (opt == "logtimezone") {
    return c.filter.logtimezone.empty() ? Ok(nullptr) : Ok(c.filter.logtimezone);
  }
  if (opt == "maxmatches") return Ok(static_cast<int64_t>(j.failures().maxmatches()));
  if (opt == "maxretry") return Ok(static_cast<int64_t>(j.failures().maxretry()));
  if (opt == "maxlines") return Ok(static_cast<int64_t>(c.filter.maxlines));
  if (opt == "bantime") return Ok(Secs(j.bans().ban_time()));
  if (opt == "banip") {
    const bool with_time = cmd.size() > 3 && cmd[3] == "--with-time";
    Value::List r;
    for (const Ticket* t : j.bans().BansByEnd()) {
      if (!with_time) {
        r.emplace_back(t->id.ToString());
        continue;
      }
      const double bt = t->BanTimeOr(j.bans().ban_time());
      char line[256];
      std::snprintf(line, sizeof line, " \t%s + %lld = %s", TimeText(t->time).c_str(),
                    static_cast<long long>(bt), TimeText(t->EndOfBan(j.bans().ban_time())).c_str());
      r.emplace_back(t->id.ToString() + line);
    }
    return Ok(Value(std::move(r)));
  }
  if (opt.rfind("bantime.", 0) == 0) return Ok(BanTimeExtra(*js, opt.substr(8)));
  if (opt == "actions") {
    Value::List r;
    for (const JailActionConfig& a : c.actions) r.emplace_back(a.name);
    return Ok(Value(std::move(r)));
  }
  if (opt == "action") {
    // ["get", JAIL, "action", NAME, PROP]
    if (cmd.size() < 5) return IndexError();
    for (const auto& a : js->actions) {
      if (a->name() != cmd[3]) continue;
      std::optional<std::string> v = a->GetProperty(cmd[4]);
      if (!v) {
        return ControlReply::Failure("AttributeError", "'CommandAction' object has no attribute " +
                                                           PyRepr(cmd[4]));
      }
      return Ok(*v);
    }
    return ControlReply::Failure("KeyError", PyRepr(cmd[3]));
  }
  // actionproperties / actionmethods list a Python object's attributes.
  return Unsupported("get JAIL " + opt);
}

// `set`'s options, one setter each: the server's (["set", NAME, VALUE]) and
// a jail's (["set", JAIL, OPT, VALUE...]). A nested class, so the setters
// reach the server's state.
struct ServerImpl::SetTable {
  // What a jail setter works on: the command, its first value ("" if none)
  // and the running jail it names.
  struct JailArgs {
    const std::vector<std::string>& cmd;
    const std::string& val;
    JailState& js;
    Jail& j;
  };
  using ServerSetter = ControlReply (*)(ServerImpl& s, const std::string& value);
  using JailSetter = ControlReply (*)(ServerImpl& s, const JailArgs& a);
  struct ServerOption {
    std::string_view name;
    ServerSetter set;
  };
  struct JailOption {
    std::string_view name;  // "bantime.": every bantime.* option
    // Null: a known option bantam does not change at run time.
    JailSetter set;
    // False: the setter checks the arguments itself (cmd[3] may be absent).
    bool needs_value = true;
    // Checked before the jail is looked up (as fail2ban's Transmitter does).
    std::optional<ControlReply> (*check)(const std::string& val) = nullptr;
  };
  static const ServerOption kServer[];
  static const JailOption kJail[];

  // The entry for `name`; null if none.
  static const ServerOption* FindServer(std::string_view name);
  static const JailOption* FindJail(std::string_view opt);

  static Value ShownRegexes(const ServerImpl& s, const JailState& js,
                            const std::vector<std::string>& list) {
    const FailRegexOptions ro = s.ShownRegexOptions(js);
    Value::List r;
    for (const std::string& re : list) r.emplace_back(ExpandFailRegexTags(re, ro));
    return Value(std::move(r));
  }
  // Recompiles the jail's filter; the failure fail2ban reports if it fails.
  static std::optional<ControlReply> Refilter(Jail& j, FilterSettings fs,
                                              const char* error_type = "RegexException") {
    Status st = j.SetFilterSettings(std::move(fs));
    if (!st.ok()) return ControlReply::Failure(error_type, st.message());
    return std::nullopt;
  }
  static ControlReply IgnoreIps(const Jail& j) {
    Value::List r;
    for (const IpAddr& ip : j.ignore_list().Entries()) r.emplace_back(ip.ToString());
    return Ok(Value(std::move(r)));
  }

  static ControlReply DbSetting(ServerImpl& s, const std::string& name, const std::string& value);
  static ControlReply LogPath(ServerImpl& s, const JailArgs& a, bool add);
  static ControlReply RegexList(ServerImpl& s, const JailArgs& a, bool fail, bool add);
  static ControlReply Count(ServerImpl& s, const JailArgs& a);
  static ControlReply BanTimeOption(ServerImpl& s, const JailArgs& a);
};

ControlReply ServerImpl::SetTable::DbSetting(ServerImpl& s, const std::string& name,
                                             const std::string& value) {
  if (!s.store_->enabled()) return Ok(nullptr);
  if (name == "dbmaxmatches") {
    Result<int64_t> n = IntArg(value);
    if (!n.ok()) return ValueError(n.status().message());
    s.store_->set_max_matches(static_cast<int>(*n));
    return Ok(static_cast<int64_t>(s.store_->max_matches()));
  }
  Result<double> age = ParseDuration(value);
  if (!age.ok()) return ValueError(age.status().message());
  s.store_->set_purge_age(static_cast<int64_t>(*age));
  return Ok(static_cast<int64_t>(s.store_->purge_age()));
}

ControlReply ServerImpl::SetTable::LogPath(ServerImpl& s, const JailArgs& a, bool add) {
  const std::vector<std::string>& cmd = a.cmd;
  const std::string& val = a.val;
  bool tail = false;
  if (add) {
    if (cmd.size() == 5) {
      const std::string how = LowerAscii(cmd[4]);
      if (how == "tail") {
        tail = true;
      } else if (how != "head") {
        return ValueError("File option must be 'head' or 'tail'");
      }
    } else if (cmd.size() > 5) {
      return ValueError("Only one file can be added at a time");
    }
  }
  if (ReadsJournal(a.j.config()) || ReadsAmi(a.j.config())) return Ok(Value::List{});
  const uint64_t id = a.js.id;
  const bool present = s.files_->follows(val, id);
  if (add) {
    struct stat st {};
    if (present) {
      s.Log(LogLevel::kError, "fail2ban.filter", val + " already exists");
    } else if (::stat(val.c_str(), &st) != 0) {
      const int err = errno;
      ControlError e;
      e.type = err == ENOENT ? "FileNotFoundError" : err == EACCES ? "PermissionError" : "OSError";
      e.args = {static_cast<int64_t>(err), std::string(strerror(err))};
      e.message = "[Errno " + std::to_string(err) + "] " + strerror(err) + ": " + PyRepr(val);
      return ControlReply::Failure(std::move(e));
    } else {
      if (Status st2 = s.files_->Add(val, id, tail); !st2.ok()) {
        return ControlReply::Failure("OSError", st2.message());
      }
      s.Log(LogLevel::kInfo, "fail2ban.filter", "Added logfile: " + PyRepr(val));
    }
  } else if (present) {
    s.files_->Remove(val, id);
    s.Log(LogLevel::kInfo, "fail2ban.filter", "Removed logfile: " + PyRepr(val));
  }
  return Ok(StringList(s.files_->paths(id)));
}

ControlReply ServerImpl::SetTable::RegexList(ServerImpl& s, const JailArgs& a, bool fail,
                                             bool add) {
  FilterSettings fs = a.j.config().filter;
  std::vector<std::string>& list = fail ? fs.failregex : fs.ignoreregex;
  if (add) {
    list.push_back(a.val);
  } else {
    Result<int64_t> idx = IntArg(a.val);
    if (!idx.ok()) return ValueError(idx.status().message());
    const int64_t n = static_cast<int64_t>(list.size());
    const int64_t i = *idx < 0 ? *idx + n : *idx;
    if (i < 0 || i >= n) {
      s.Log(LogLevel::kError, "fail2ban.filter",
            "Cannot remove regular expression. Index " + std::to_string(*idx) + " is not valid");
    } else {
      list.erase(list.begin() + i);
    }
  }
  if (auto e = Refilter(a.j, std::move(fs))) return *e;
  const FilterSettings& now = a.j.config().filter;
  return Ok(ShownRegexes(s, a.js, fail ? now.failregex : now.ignoreregex));
}

// maxmatches, maxretry, maxlines.
ControlReply ServerImpl::SetTable::Count(ServerImpl& s, const JailArgs& a) {
  const std::string& opt = a.cmd[2];
  Result<int64_t> n = IntArg(a.val);
  if (!n.ok()) return ValueError(n.status().message());
  if (opt == "maxmatches") {
    a.j.set_maxmatches(static_cast<int>(*n));
  } else if (opt == "maxretry") {
    a.j.set_maxretry(static_cast<int>(*n));
    s.Log(LogLevel::kInfo, "fail2ban.filter", "  maxRetry: " + std::to_string(*n));
  } else {
    FilterSettings fs = a.j.config().filter;
    fs.maxlines = static_cast<int>(*n);
    if (auto e = Refilter(a.j, std::move(fs))) return *e;
  }
  return Ok(*n);
}

ControlReply ServerImpl::SetTable::BanTimeOption(ServerImpl& s, const JailArgs& a) {
  const std::string key = a.cmd[2].substr(8);
  const std::string& val = a.val;
  BanTimeIncrementOptions inc = a.j.config().increment;
  Value stored;
  const bool unset = val.empty();
  if (key == "increment") {
    inc.increment = !unset && PyAsBool(val);
    stored = unset ? Value() : Value(inc.increment);
  } else if (key == "factor") {
    inc.factor = unset ? "1" : val;
    stored = unset ? Value() : Value(val);
  } else if (key == "formula") {
    inc.formula = val;
    stored = unset ? Value() : Value(val);
  } else if (key == "multipliers") {
    inc.multipliers = val;
    stored = unset ? Value() : Value(val);
  } else if (key == "maxtime" || key == "rndtime") {
    std::optional<double> secs;
    if (!unset) {
      Result<double> d = ParseDuration(val);
      if (!d.ok()) return ValueError(d.status().message());
      secs = *d;
      stored = Secs(*d);
    }
    (key == "maxtime" ? inc.maxtime : inc.rndtime) = secs;
  } else if (key == "overalljails") {
    inc.overalljails = !unset && PyAsBool(val);
    stored = unset ? Value() : Value(val);
  } else {
    stored = unset ? Value() : Value(val);
  }
  if (Status st = a.j.SetIncrement(inc); !st.ok())
    return ControlReply::Failure("Exception", st.message());
  Value::Dict& extra = s.ban_extra_[a.js.id];
  std::erase_if(extra, [&](const auto& kv) { return kv.first == key; });
  extra.emplace_back(key, stored);
  s.Log(LogLevel::kInfo, "fail2ban.jail", "Set banTime." + key + " = " + (unset ? "None" : val));
  return Ok(stored);
}

const ServerImpl::SetTable::ServerOption ServerImpl::SetTable::kServer[] = {
    {"loglevel",
     [](ServerImpl& s, const std::string& value) -> ControlReply {
       Result<LogLevel> level = ParseLogLevel(value);
       if (!level.ok()) return ValueError("Invalid log level " + PyRepr(value));
       s.logger_->set_level(*level);
       s.server_opts_.Set("loglevel", value);
       return Ok(LogLevelName(*level));
     }},
    {"logtarget",
     [](ServerImpl& s, const std::string& value) -> ControlReply {
       if (value != s.logger_->target()) {
         const std::string* sys = s.server_opts_.Find("syslogsocket");
         Result<std::unique_ptr<Logger>> l =
             Logger::Open(value, sys ? *sys : "auto", s.logger_->level());
         if (!l.ok()) {
           s.Log(LogLevel::kError, "fail2ban.server", l.status().message());
           return ControlReply::Failure("Exception", "Failed to change log target");
         }
         s.Log(LogLevel::kInfo, "fail2ban.server", "Changed logging target to " + value);
         s.logger_ = std::move(*l);
         s.server_opts_.Set("logtarget", value);
       }
       return Ok(s.logger_->target());
     }},
    {"syslogsocket",
     [](ServerImpl& s, const std::string& value) -> ControlReply {
       s.server_opts_.Set("syslogsocket", value);
       if (s.logger_->target().rfind("SYSLOG", 0) == 0) {
         Result<std::unique_ptr<Logger>> l =
             Logger::Open(s.logger_->target(), value, s.logger_->level());
         if (!l.ok()) return ControlReply::Failure("Exception", "Failed to change syslog socket");
         s.logger_ = std::move(*l);
       }
       return Ok(value);
     }},
    // Read at start only.
    {"allowipv6", [](ServerImpl&, const std::string& value) -> ControlReply { return Ok(value); }},
    {"thread", [](ServerImpl&, const std::string&) -> ControlReply { return Ok(nullptr); }},
    {"dbfile",
     [](ServerImpl& s, const std::string& value) -> ControlReply {
       if (!s.store_->enabled() && LowerAscii(value) == "none") return Ok(nullptr);
       if (s.store_->enabled() && value == s.dbfile_) return Ok(s.dbfile_);
       return ControlReply::Failure("RuntimeError",
                                    "Cannot change database when there are jails present");
     }},
    {"dbmaxmatches",
     [](ServerImpl& s, const std::string& value) { return DbSetting(s, "dbmaxmatches", value); }},
    {"dbpurgeage",
     [](ServerImpl& s, const std::string& value) { return DbSetting(s, "dbpurgeage", value); }},
};

const ServerImpl::SetTable::JailOption ServerImpl::SetTable::kJail[] = {
    {"idle",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       a.j.set_idle(a.val == "on");
       return Ok(a.j.idle());
     },
     true,
     [](const std::string& val) -> std::optional<ControlReply> {
       if (val == "on" || val == "off") return std::nullopt;
       return ControlReply::Failure("Exception", "Invalid idle option, must be 'on' or 'off'");
     }},
    {"ignoreself",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       a.j.ignore_list().set_ignoreself(PyAsBool(a.val));
       return Ok(a.j.ignore_list().ignoreself());
     }},
    {"addignoreip",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       for (size_t i = 3; i < a.cmd.size(); ++i) a.j.ignore_list().Add(a.cmd[i]);
       return IgnoreIps(a.j);
     }},
    {"delignoreip",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       a.j.ignore_list().Remove(a.val);
       return IgnoreIps(a.j);
     }},
    {"ignorecommand",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       a.j.ignore_list().set_ignorecommand(a.val);
       return Ok(a.val);
     }},
    // ignorecache, journal matches and actions change Python objects fail2ban
    // builds at run time; bantam builds them from the configuration only.
    {"ignorecache", nullptr},
    {"addlogpath", [](ServerImpl& s, const JailArgs& a) { return LogPath(s, a, true); }},
    {"dellogpath", [](ServerImpl& s, const JailArgs& a) { return LogPath(s, a, false); }},
    {"logencoding",
     [](ServerImpl&, const JailArgs& a) -> ControlReply {
       const std::string e = LowerAscii(a.val);
       if (e != "auto" && e != "utf-8" && e != "utf8") {
         return Unsupported("logencoding " + PyRepr(a.val) + " (bantam reads UTF-8)");
       }
       return Ok("UTF-8");
     }},
    {"addjournalmatch", nullptr},
    {"deljournalmatch", nullptr},
    {"prefregex",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       FilterSettings fs = a.j.config().filter;
       fs.prefregex = a.val;
       if (auto e = Refilter(a.j, std::move(fs))) return *e;
       const std::string& p = a.j.config().filter.prefregex;
       return Ok(p.empty() ? std::string() : ExpandFailRegexTags(p, s.ShownRegexOptions(a.js)));
     }},
    {"addfailregex", [](ServerImpl& s, const JailArgs& a) { return RegexList(s, a, true, true); }},
    {"delfailregex", [](ServerImpl& s, const JailArgs& a) { return RegexList(s, a, true, false); }},
    {"addignoreregex",
     [](ServerImpl& s, const JailArgs& a) { return RegexList(s, a, false, true); }},
    {"delignoreregex",
     [](ServerImpl& s, const JailArgs& a) { return RegexList(s, a, false, false); }},
    {"usedns",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       std::string v = LowerAscii(a.val);
       if (v != "yes" && v != "warn" && v != "no" && v != "raw") {
         s.Log(LogLevel::kError, "fail2ban.filter",
               "Incorrect value " + PyRepr(v) + " specified for usedns. Using safe 'no'");
         v = "no";
       }
       // The regexes stay compiled for the first usedns (see regex_dns_).
       s.regex_dns_.emplace(a.js.id, a.j.config().filter.usedns != "no");
       FilterSettings fs = a.j.config().filter;
       fs.usedns = v;
       if (auto e = Refilter(a.j, std::move(fs))) return *e;
       return Ok(v);
     }},
    {"findtime",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       Result<double> d = ParseDuration(a.val);
       if (!d.ok()) return ValueError(d.status().message());
       a.j.set_findtime(*d);
       s.Log(LogLevel::kInfo, "fail2ban.filter", "  findtime: " + Secs(*d).ToPyStr());
       return Ok(Secs(a.j.config().findtime));
     }},
    {"bantime",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       Result<double> d = ParseDuration(a.val);
       if (!d.ok()) return ValueError(d.status().message());
       a.j.set_bantime(*d);
       s.Log(LogLevel::kInfo, "fail2ban.actions", "  banTime: " + Secs(*d).ToPyStr());
       return Ok(Secs(a.j.bans().ban_time()));
     }},
    {"datepattern",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       FilterSettings fs = a.j.config().filter;
       fs.datepattern = a.val;
       if (auto e = Refilter(a.j, std::move(fs), "ValueError")) return *e;
       return s.ControlGet({"get", a.cmd[1], "datepattern"});
     }},
    {"logtimezone",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       FilterSettings fs = a.j.config().filter;
       fs.logtimezone = a.val;
       if (auto e = Refilter(a.j, std::move(fs), "ValueError")) return *e;
       return s.ControlGet({"get", a.cmd[1], "logtimezone"});
     }},
    {"maxmatches", Count},
    {"maxretry", Count},
    {"maxlines", Count},
    {"attempt",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       if (a.cmd.size() < 4) {
         return ControlReply::Failure("TypeError",
                                      "addAttempt() missing 1 required positional argument: 'ip'");
       }
       const IpAddr id = IpAddr::FromText(a.val);
       s.Log(LogLevel::kInfo, "fail2ban.filter",
             "[" + a.cmd[1] + "] Attempt " + id.ToString() + " - " + TimeText(s.clock_.Now()));
       a.j.AddAttempt(id, std::vector<std::string>(a.cmd.begin() + 4, a.cmd.end()));
       return Ok(1);
     },
     false},
    {"banip",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       if (auto refused = RefuseNonAddresses(a.cmd, 3, /*names_too=*/false)) return *refused;
       ScopedCause manual(&s, BanCause::kManual, UnbanCause::kManual);
       int64_t cnt = 0;
       for (size_t i = 3; i < a.cmd.size(); ++i) cnt += a.j.BanNow(IpAddr::FromText(a.cmd[i])) ? 1 : 0;
       return Ok(cnt);
     },
     false},
    {"unbanip",
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       bool report = false;
       size_t first = 3;
       if (a.cmd[3] == "--report-absent") {
         report = true;
         first = 4;
       }
       if (auto refused = RefuseNonAddresses(a.cmd, first, /*names_too=*/true)) return *refused;
       std::vector<std::string> missed;
       const int cnt = s.ControlUnban(a.js, {a.cmd.begin() + first, a.cmd.end()}, &missed);
       if (report && !missed.empty()) return ValueError("not banned: " + PyListRepr(missed));
       return Ok(cnt);
     }},
    {"bantime.", BanTimeOption},
    {"addaction", nullptr},
    {"delaction", nullptr},
    {"action",
     // ["set", JAIL, "action", NAME, PROP, VALUE]
     [](ServerImpl& s, const JailArgs& a) -> ControlReply {
       if (a.cmd.size() < 6) return IndexError();
       for (auto& act : a.js.actions) {
         if (act->name() != a.cmd[3]) continue;
         act->SetProperty(a.cmd[4], a.cmd[5]);
         s.UpdateKeepMatches();
         return Ok(a.cmd[5]);
       }
       return ControlReply::Failure("KeyError", PyRepr(a.cmd[3]));
     }},
};

const ServerImpl::SetTable::ServerOption* ServerImpl::SetTable::FindServer(std::string_view name) {
  for (const ServerOption& o : kServer) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

const ServerImpl::SetTable::JailOption* ServerImpl::SetTable::FindJail(std::string_view opt) {
  for (const JailOption& o : kJail) {
    if (o.name == opt) return &o;
  }
  if (opt.rfind("bantime.", 0) == 0) return FindJail("bantime.");
  return nullptr;
}

ControlReply ServerImpl::ControlSet(const std::vector<std::string>& cmd) {
  if (cmd.size() < 3) return IndexError();
  const std::string& name = cmd[1];
  if (const SetTable::ServerOption* o = SetTable::FindServer(name)) return o->set(*this, cmd[2]);

  // A jail's option.
  const std::string& opt = cmd[2];
  const SetTable::JailOption* o = SetTable::FindJail(opt);
  if (o == nullptr) return InvalidSet(opt);
  if (o->needs_value && cmd.size() < 4) return IndexError();
  const std::string val = cmd.size() > 3 ? cmd[3] : std::string();
  // A jail added by `add` and not started: collect its settings.
  for (PendingJail& p : pending_jails_) {
    if (p.name != name) continue;
    Value::List c;
    for (const std::string& w : cmd) c.emplace_back(w);
    p.commands.push_back(Value(std::move(c)));
    return Ok(val);
  }
  if (o->check) {
    if (std::optional<ControlReply> e = o->check(val)) return *e;
  }
  JailState* js = FindJail(name);
  if (js == nullptr) return UnknownJail(name);
  if (o->set == nullptr) {
    return Unsupported("set JAIL " + opt + " (change the configuration and reload)");
  }
  return o->set(*this, SetTable::JailArgs{cmd, val, *js, *js->jail});
}

}  // namespace bantam
