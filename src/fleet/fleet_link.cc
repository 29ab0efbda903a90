#include "bantam/fleet_link.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "bantam/shared_library.h"

namespace bantam {

namespace {

constexpr int64_t kBackoffFirstMs = 100;
constexpr int64_t kBackoffMaxMs = 5000;
constexpr int kReadBlockMs = 500;
constexpr size_t kPublishPipeline = 500;
// The reader stops reading while this many entries wait to be taken.
constexpr size_t kMaxWaiting = 5 * FleetLink::kReadCount;

// hiredis, loaded when a fleet is configured (shared_library.h).
struct HiredisApi {
  decltype(&redisConnectWithTimeout) connect_with_timeout;
  decltype(&redisConnectUnixWithTimeout) connect_unix_with_timeout;
  decltype(&redisSetTimeout) set_timeout;
  decltype(&redisCommandArgv) command_argv;
  decltype(&redisAppendCommandArgv) append_command_argv;
  decltype(&redisGetReply) get_reply;
  decltype(&freeReplyObject) free_reply_object;
  decltype(&redisFree) free;
};

HiredisApi g_redis;  // filled once by LoadHiredis, read-only after

Status LoadHiredis() {
  static const Status loaded = []() -> Status {
    Result<const SharedLibrary*> lib = SharedLibrary::Load("libhiredis.so.0.14", "libhiredis0.14");
    if (!lib.ok()) return lib.status();
    const SharedLibrary& l = **lib;
    HiredisApi a{};
    for (Status s : {l.Bind("redisConnectWithTimeout", &a.connect_with_timeout),
                     l.Bind("redisConnectUnixWithTimeout", &a.connect_unix_with_timeout),
                     l.Bind("redisSetTimeout", &a.set_timeout),
                     l.Bind("redisCommandArgv", &a.command_argv),
                     l.Bind("redisAppendCommandArgv", &a.append_command_argv),
                     l.Bind("redisGetReply", &a.get_reply),
                     l.Bind("freeReplyObject", &a.free_reply_object),
                     l.Bind("redisFree", &a.free)}) {
      if (!s.ok()) return s;
    }
    g_redis = a;
    return Status::Ok();
  }();
  return loaded;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r) g_redis.free_reply_object(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// hiredis writes with write(2): a connection Redis closed would raise
// SIGPIPE and kill bantamd. Blocked on the link's threads only (a signal
// ignored process-wide would be inherited by every action's shell), the
// write fails with EPIPE instead; the pending signal is never delivered.
void BlockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::string Reason(const std::string& message) {
  const size_t end = message.find(':');
  return end == std::string::npos ? message : message.substr(0, end);
}

}  // namespace

struct FleetLink::Conn {
  redisContext* ctx = nullptr;
  int64_t backoff_ms = kBackoffFirstMs;
  ~Conn() { Close(); }
  void Close() {
    if (ctx) g_redis.free(ctx);
    ctx = nullptr;
  }
  // One command; error text in *err when it failed or Redis answered an error.
  Reply Command(const std::vector<std::string>& args, std::string* err) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    Reply r(static_cast<redisReply*>(
        g_redis.command_argv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) {
      *err = ctx->errstr[0] ? ctx->errstr : "no reply";
    } else if (r->type == REDIS_REPLY_ERROR) {
      *err = std::string(r->str, r->len);
    }
    return r;
  }
};

FleetLink::FleetLink(FleetSettings settings) : settings_(std::move(settings)) {}

FleetLink::~FleetLink() {
  Stop();
  if (event_fd_ >= 0) ::close(event_fd_);
}

Status FleetLink::Start(const std::string& cursor) {
  if (Status l = LoadHiredis(); !l.ok()) return l;
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) return Status::FromErrno("eventfd", errno);
  start_cursor_ = cursor.empty() ? "0-0" : cursor;
  publisher_ = std::thread([this] { PublisherMain(); });
  reader_ = std::thread([this] { ReaderMain(); });
  return Status::Ok();
}

void FleetLink::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  if (reader_.joinable()) reader_.join();
}

void FleetLink::Publish(std::vector<std::pair<int64_t, FleetEntry>> rows) {
  if (rows.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : rows) to_publish_.push_back(std::move(r));
  }
  cv_.notify_all();
}

FleetLink::Report FleetLink::Take() {
  uint64_t n;
  while (::read(event_fd_, &n, sizeof n) == static_cast<ssize_t>(sizeof n)) {
  }
  Report out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out = std::move(report_);
    report_ = Report();
    waiting_entries_ = 0;
  }
  cv_.notify_all();
  return out;
}

bool FleetLink::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return up_;
}

int64_t FleetLink::behind() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::min<int64_t>(kBehindCap, behind_redis_ + static_cast<int64_t>(waiting_entries_));
}

void FleetLink::Notify() {
  const uint64_t one = 1;
  (void)!::write(event_fd_, &one, sizeof one);
}

bool FleetLink::Sleep(std::unique_lock<std::mutex>& lock, int64_t ms) {
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
  return !stopping_;
}

// Called with mu_ held.
void FleetLink::ConnFailed(const char* who, const std::string& error) {
  if (up_ || !warned_) {
    report_.messages.emplace_back(
        true, "Fleet: Redis " + settings_.Where() + " unreachable (" + who + ": " + error +
                  "); bans go on locally and are published when it is back");
    warned_ = true;
    Notify();
  }
  up_ = false;
}

// Called with mu_ held.
void FleetLink::ConnUp() {
  if (up_) return;
  report_.messages.emplace_back(false, std::string("Fleet: connected to Redis ") +
                                           settings_.Where() + (warned_ ? " again" : ""));
  up_ = true;
  warned_ = false;
  Notify();
}

// Called without mu_.
FleetLink::Conn* FleetLink::Connect(Conn* c, const char* who) {
  c->Close();
  const timeval connect_timeout{2, 0};
  c->ctx = settings_.unix_path.empty()
               ? g_redis.connect_with_timeout(settings_.host.c_str(), settings_.port, connect_timeout)
               : g_redis.connect_unix_with_timeout(settings_.unix_path.c_str(), connect_timeout);
  std::string err;
  if (c->ctx == nullptr) {
    err = "out of memory";
  } else if (c->ctx->err) {
    err = c->ctx->errstr;
  } else {
    g_redis.set_timeout(c->ctx, timeval{5, 0});
    if (!settings_.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!settings_.username.empty()) auth.push_back(settings_.username);
      auth.push_back(settings_.password);
      c->Command(auth, &err);
    }
    if (err.empty() && settings_.db != 0) c->Command({"SELECT", std::to_string(settings_.db)}, &err);
    // A restarted Redis takes connections, AUTH and SELECT while it loads its
    // data, and refuses stream commands (-LOADING) until it is done. Up only
    // once a stream command is answered: else the first XADD or XREAD would
    // report that refusal as a second outage, with a second WARNING.
    if (err.empty()) c->Command({"XRANGE", settings_.stream, "+", "+", "COUNT", "1"}, &err);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!err.empty()) {
    c->Close();
    ConnFailed(who, err);
    return nullptr;
  }
  c->backoff_ms = kBackoffFirstMs;
  ConnUp();
  return c;
}

void FleetLink::PublisherMain() {
  BlockSigpipe();
  Conn c;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (to_publish_.empty()) {
      cv_.wait(lock, [this] { return stopping_ || !to_publish_.empty(); });
      continue;
    }
    if (c.ctx == nullptr) {
      lock.unlock();
      const bool ok = Connect(&c, "publish") != nullptr;
      lock.lock();
      if (!ok) {
        if (!Sleep(lock, c.backoff_ms)) break;
        c.backoff_ms = std::min(c.backoff_ms * 2, kBackoffMaxMs);
        continue;
      }
    }
    // The front rows stay queued until Redis took them: Publish() only
    // appends behind them.
    const size_t n = std::min(to_publish_.size(), kPublishPipeline);
    std::vector<std::pair<int64_t, FleetEntry>> rows(to_publish_.begin(), to_publish_.begin() + n);
    lock.unlock();
    const std::string maxlen = std::to_string(settings_.maxlen);
    const std::string failures_stream = settings_.failures_stream();
    for (auto& [id, e] : rows) {
      e.node = settings_.node;
      FleetFields f = EncodeFleetEntry(e, settings_.key);
      // A failure counts for findtime (its `left`): older ones are trimmed.
      const bool fail = e.op == FleetOp::kFail;
      const std::string& key = fail ? failures_stream : settings_.stream;
      const std::string bound =
          fail ? std::to_string(static_cast<int64_t>((e.time - static_cast<double>(e.left)) * 1000))
               : maxlen;
      const char* trim = fail ? "MINID" : "MAXLEN";
      std::vector<const char*> argv = {"XADD", key.c_str(), trim, "~", bound.c_str(), "*"};
      std::vector<size_t> lens = {4, key.size(), std::strlen(trim), 1, bound.size(), 1};
      for (const auto& [k, v] : f) {
        argv.push_back(k.c_str());
        lens.push_back(k.size());
        argv.push_back(v.c_str());
        lens.push_back(v.size());
      }
      // Appending copies the arguments into the output buffer.
      g_redis.append_command_argv(c.ctx, static_cast<int>(argv.size()), argv.data(), lens.data());
    }
    size_t done = 0;
    std::string err;
    for (size_t i = 0; i < rows.size(); ++i) {
      void* raw = nullptr;
      if (g_redis.get_reply(c.ctx, &raw) != REDIS_OK) {
        err = c.ctx->errstr[0] ? c.ctx->errstr : "connection lost";
        break;
      }
      Reply r(static_cast<redisReply*>(raw));
      if (r->type == REDIS_REPLY_ERROR) {
        if (err.empty()) err = std::string(r->str, r->len);
        continue;
      }
      if (err.empty()) ++done;
    }
    lock.lock();
    for (size_t i = 0; i < done; ++i) {
      report_.published.push_back(to_publish_.front().first);
      to_publish_.pop_front();
    }
    if (done > 0) Notify();
    if (!err.empty()) {
      lock.unlock();
      c.Close();
      lock.lock();
      ConnFailed("publish", err);
      if (!Sleep(lock, c.backoff_ms)) break;
      c.backoff_ms = std::min(c.backoff_ms * 2, kBackoffMaxMs);
    }
  }
}

void FleetLink::ReaderMain() {
  BlockSigpipe();
  Conn c;
  std::unique_lock<std::mutex> lock(mu_);
  std::string cursor = start_cursor_;
  // Failures from now on: those before the start may be in the failure
  // windows the database restored already.
  std::string failures_cursor =
      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count()) +
      "-0";
  while (!stopping_) {
    if (waiting_entries_ >= kMaxWaiting) {
      cv_.wait(lock, [this] { return stopping_ || waiting_entries_ < kMaxWaiting; });
      continue;
    }
    if (c.ctx == nullptr) {
      lock.unlock();
      const bool ok = Connect(&c, "read") != nullptr;
      lock.lock();
      if (!ok) {
        if (!Sleep(lock, c.backoff_ms)) break;
        c.backoff_ms = std::min(c.backoff_ms * 2, kBackoffMaxMs);
        continue;
      }
    }
    lock.unlock();
    ReadOnce(c, &cursor, &failures_cursor);
    const bool failed = c.ctx == nullptr;
    lock.lock();
    if (failed && !Sleep(lock, c.backoff_ms)) break;
  }
}

int64_t FleetLink::CountAfter(Conn& c, const std::string& cursor) {
  std::string err;
  Reply r = c.Command({"XRANGE", settings_.stream, "(" + cursor, "+", "COUNT",
                       std::to_string(kBehindCap)},
                      &err);
  if (!err.empty() || !r || r->type != REDIS_REPLY_ARRAY) return 0;
  return static_cast<int64_t>(r->elements);
}

// Called without mu_. Closes the connection on failure.
void FleetLink::ReadOnce(Conn& c, std::string* cursor, std::string* failures_cursor) {
  std::string err;
  Reply r = c.Command({"XREAD", "COUNT", std::to_string(kReadCount), "BLOCK",
                       std::to_string(kReadBlockMs), "STREAMS", settings_.stream,
                       settings_.failures_stream(), *cursor, *failures_cursor},
                      &err);
  if (!err.empty()) {
    c.Close();
    std::lock_guard<std::mutex> lock(mu_);
    ConnFailed("read", err);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ConnUp();
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {  // nil: nothing new
    std::lock_guard<std::mutex> lock(mu_);
    behind_redis_ = 0;
    return;
  }
  Batch batch;
  std::vector<FleetEntry> failures;
  std::vector<Dropped> dropped;
  std::map<std::string, uint64_t> counts;
  bool full = false;
  auto drop = [&](const std::string& id, const std::string& reason) {
    ++counts[Reason(reason)];
    if (dropped.size() < kMaxDroppedKept) dropped.push_back(Dropped{id, reason});
  };
  for (size_t s = 0; s < r->elements; ++s) {
    const redisReply* stream = r->element[s];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2 ||
        stream->element[0]->type != REDIS_REPLY_STRING ||
        stream->element[1]->type != REDIS_REPLY_ARRAY) {
      // Not what XREAD answers: reconnect after a backoff rather than ask
      // the same again at once.
      c.Close();
      std::lock_guard<std::mutex> lock(mu_);
      ConnFailed("read", "unexpected XREAD reply");
      return;
    }
    const bool bans = std::string(stream->element[0]->str, stream->element[0]->len) == settings_.stream;
    const redisReply* items = stream->element[1];
    if (bans) full = items->elements >= kReadCount;
    for (size_t i = 0; i < items->elements; ++i) {
      const redisReply* item = items->element[i];
      if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
          item->element[0]->type != REDIS_REPLY_STRING)
        continue;
      std::string id(item->element[0]->str, item->element[0]->len);
      (bans ? batch.last_id : *failures_cursor) = id;
      const redisReply* kv = item->element[1];
      if (kv->type != REDIS_REPLY_ARRAY) {
        drop(id, "malformed: no fields");
        continue;
      }
      if (kv->elements > 2 * kFleetMaxFields) {
        drop(id, "oversized: " + std::to_string(kv->elements / 2) + " fields");
        continue;
      }
      FleetFields fields;
      bool too_big = false;
      for (size_t j = 0; j + 1 < kv->elements; j += 2) {
        const redisReply* k = kv->element[j];
        const redisReply* v = kv->element[j + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (k->len > kFleetMaxValue || v->len > kFleetMaxValue) {
          too_big = true;
          break;
        }
        fields.emplace_back(std::string(k->str, k->len), std::string(v->str, v->len));
      }
      if (too_big) {
        drop(id, "oversized: a field over " + std::to_string(kFleetMaxValue) + " bytes");
        continue;
      }
      Result<FleetEntry> e = DecodeFleetEntry(fields, settings_.key);
      if (!e.ok()) {
        drop(id, e.status().message());
        continue;
      }
      if (e->node == settings_.node) continue;  // our own, already counted here
      if ((e->op == FleetOp::kFail) != !bans) {
        drop(id, std::string("malformed: a ") + FleetOpName(e->op) + " entry in the " +
                     (bans ? "ban" : "failure") + " stream");
        continue;
      }
      if (bans) {
        batch.entries.emplace_back(std::move(id), std::move(*e));
      } else {
        failures.push_back(std::move(*e));
      }
    }
  }
  if (!batch.last_id.empty()) *cursor = batch.last_id;
  // What is left in Redis is counted at most once a second, and only when
  // this read did not reach the end of the stream.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  int64_t after = -1;
  if (!full) {
    after = 0;
  } else if (now_ms - last_count_ms_ >= 1000) {
    last_count_ms_ = now_ms;
    after = CountAfter(c, *cursor);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (after >= 0) behind_redis_ = after;
  waiting_entries_ += batch.entries.size() + failures.size() + dropped.size() + 1;
  if (!batch.last_id.empty()) report_.batches.push_back(std::move(batch));
  for (FleetEntry& f : failures) report_.failures.push_back(std::move(f));
  for (Dropped& d : dropped) {
    if (report_.dropped.size() < kMaxDroppedKept) report_.dropped.push_back(std::move(d));
  }
  for (const auto& [k, n] : counts) report_.dropped_counts[k] += n;
  Notify();
}

}  // namespace bantam
