#include "bantam/ami_protocol.h"

#include <strings.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>

namespace bantam {
namespace {

constexpr std::string_view kBannerPrefix = "Asterisk Call Manager/";

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

// The event names of Asterisk's security events (security_events.c).
constexpr std::array<std::string_view, 15> kSecurityEvents = {
    "FailedACL",        "InvalidAccountID",    "SessionLimit",      "MemoryLimit",
    "LoadAverageLimit", "RequestNotSupported", "RequestNotAllowed", "AuthMethodNotAllowed",
    "RequestBadFormat", "SuccessfulAuth",      "UnexpectedAddress", "ChallengeResponseFailed",
    "InvalidPassword",  "ChallengeSent",       "InvalidTransport"};

// Headers the manager adds to every event; they are not part of the
// security event and res_security_log never prints them.
constexpr std::array<std::string_view, 8> kManagerHeaders = {
    "Event", "Privilege", "Timestamp", "SystemName", "SequenceNumber", "File", "Line", "Func"};

bool IsManagerHeader(std::string_view key) {
  return std::any_of(kManagerHeaders.begin(), kManagerHeaders.end(),
                     [&](std::string_view h) { return EqualsNoCase(h, key); });
}

bool ParseDigits(std::string_view s, int* out) {
  if (s.empty()) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::optional<std::string_view> AmiMessage::Find(std::string_view key) const {
  for (const auto& [k, v] : headers) {
    if (EqualsNoCase(k, key)) return v;
  }
  return std::nullopt;
}

AmiFramer::AmiFramer(Callbacks callbacks, bool expect_banner)
    : cb_(std::move(callbacks)), expect_banner_(expect_banner) {}

void AmiFramer::Reset(bool expect_banner) {
  expect_banner_ = expect_banner;
  skipping_ = false;
  line_too_long_ = false;
  partial_.clear();
  bytes_.clear();
  spans_.clear();
  message_size_ = 0;
}

void AmiFramer::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t lf = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, lf);
    if (line_too_long_) {
      // The rest of an over-long line: nothing of it is kept.
      if (lf != std::string_view::npos) line_too_long_ = false;
    } else if (lf == std::string_view::npos) {
      if (partial_.size() + piece.size() > kMaxMessage) {
        partial_.clear();
        line_too_long_ = true;
        Drop("a line longer than 64 KiB");
      } else {
        partial_.append(piece);
      }
    } else if (partial_.empty()) {
      if (piece.size() > kMaxMessage) {
        Drop("a line longer than 64 KiB");
      } else {
        OnLine(piece);
      }
    } else {
      if (partial_.size() + piece.size() > kMaxMessage) {
        partial_.clear();
        Drop("a line longer than 64 KiB");
      } else {
        partial_.append(piece);
        OnLine(partial_);
        partial_.clear();
      }
    }
    if (lf == std::string_view::npos) break;
    bytes.remove_prefix(lf + 1);
  }
}

void AmiFramer::Drop(std::string_view why) {
  const bool had_message = !skipping_;
  bytes_.clear();
  spans_.clear();
  message_size_ = 0;
  skipping_ = true;
  // One report per dropped message, not one per line of it.
  if (had_message && cb_.on_drop) cb_.on_drop(why);
}

void AmiFramer::OnLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (expect_banner_) {
    expect_banner_ = false;
    if (line.substr(0, kBannerPrefix.size()) == kBannerPrefix) {
      if (cb_.on_banner) cb_.on_banner(line);
      return;
    }
  }
  if (line.empty()) {
    if (skipping_) {
      skipping_ = false;
      return;
    }
    if (spans_.empty()) return;  // a stray empty line between messages
    message_.headers.clear();
    for (const Span& s : spans_) {
      message_.headers.emplace_back(std::string_view(bytes_).substr(s.key, s.key_len),
                                    std::string_view(bytes_).substr(s.value, s.value_len));
    }
    if (cb_.on_message) cb_.on_message(message_);
    bytes_.clear();
    spans_.clear();
    message_size_ = 0;
    return;
  }
  if (skipping_) return;
  message_size_ += line.size() + 2;
  if (message_size_ > kMaxMessage) {
    Drop("a message longer than 64 KiB");
    return;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    Drop("a line that is no 'Key: value' header");
    return;
  }
  std::string_view key = line.substr(0, colon);
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  Span s;
  s.key = bytes_.size();
  s.key_len = key.size();
  bytes_.append(key);
  s.value = bytes_.size();
  s.value_len = value.size();
  bytes_.append(value);
  spans_.push_back(s);
}

bool AmiFramer::Finish() {
  const bool had = !spans_.empty() || (!partial_.empty() && !skipping_);
  Reset(false);
  return had;
}

std::optional<double> ParseEventTv(std::string_view t) {
  // "SECONDS-MICROSECONDS"
  if (size_t dash = t.find('-');
      dash != std::string_view::npos && t.find('T') == std::string_view::npos) {
    int usec = 0;
    std::string_view secs = t.substr(0, dash), micro = t.substr(dash + 1);
    if (secs.empty() || secs.size() > 12 || micro.size() > 6 || !ParseDigits(micro, &usec))
      return std::nullopt;
    double v = 0;
    for (char c : secs) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    return v + usec / 1e6;
  }
  // "YYYY-MM-DDTHH:MM:SS[.fraction](+|-)HHMM"
  if (t.size() < 19 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':')
    return std::nullopt;
  struct tm tm = {};
  int year, mon, day, hour, min, sec;
  if (!ParseDigits(t.substr(0, 4), &year) || !ParseDigits(t.substr(5, 2), &mon) ||
      !ParseDigits(t.substr(8, 2), &day) || !ParseDigits(t.substr(11, 2), &hour) ||
      !ParseDigits(t.substr(14, 2), &min) || !ParseDigits(t.substr(17, 2), &sec))
    return std::nullopt;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
    return std::nullopt;
  std::string_view rest = t.substr(19);
  double frac = 0;
  if (!rest.empty() && rest[0] == '.') {
    rest.remove_prefix(1);
    double scale = 0.1;
    size_t n = 0;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') {
      frac += (rest[n] - '0') * scale;
      scale /= 10;
      ++n;
    }
    if (n == 0) return std::nullopt;
    rest.remove_prefix(n);
  }
  long offset = 0;
  if (!rest.empty()) {
    int hh, mm;
    if (rest.size() != 5 || (rest[0] != '+' && rest[0] != '-') ||
        !ParseDigits(rest.substr(1, 2), &hh) || !ParseDigits(rest.substr(3, 2), &mm))
      return std::nullopt;
    offset = (hh * 3600L + mm * 60L) * (rest[0] == '-' ? -1 : 1);
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const time_t utc = timegm(&tm);
  return static_cast<double>(utc - offset) + frac;
}

bool FormatSecurityEvent(const AmiMessage& message, double now, SecurityLine* out) {
  const std::optional<std::string_view> event = message.Find("Event");
  if (!event || event->empty()) return false;
  const bool known = std::any_of(kSecurityEvents.begin(), kSecurityEvents.end(),
                                 [&](std::string_view e) { return e == *event; });
  const std::optional<std::string_view> tv = message.Find("EventTV");
  const std::optional<std::string_view> severity = message.Find("Severity");
  if (!known && !(tv && severity && message.Find("Service"))) return false;

  out->event_tv.assign(tv.value_or(std::string_view()));
  const std::optional<double> event_time = tv ? ParseEventTv(*tv) : std::nullopt;
  out->time_from_event = event_time.has_value();
  out->time = event_time.value_or(now);
  out->informational = severity && *severity == "Informational";

  std::string& line = out->line;
  line.clear();
  // The logger's "[date] LEVEL[thread] file: " prefix, dated with the
  // event's own wall clock.
  line += '[';
  if (tv && tv->size() >= 19 && (*tv)[10] == 'T' && event_time) {
    line.append(tv->substr(0, 10));
    line += ' ';
    line.append(tv->substr(11, 8));
  } else {
    // No (or an old-style) EventTV: the time it stands for, in the local
    // zone as Asterisk's logger would write it.
    time_t secs = static_cast<time_t>(out->time);
    struct tm tm;
    localtime_r(&secs, &tm);
    char buf[32];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    line.append(buf, n);
  }
  line += "] SECURITY[0] res_security_log.c: SecurityEvent=\"";
  line.append(*event);
  line += '"';
  for (const auto& [k, v] : message.headers) {
    if (IsManagerHeader(k)) continue;
    line += ',';
    line.append(k);
    line += "=\"";
    line.append(v);
    line += '"';
  }
  return true;
}

bool LooksLikeAmiCapture(std::string_view head) {
  return head.substr(0, kBannerPrefix.size()) == kBannerPrefix || StartsWithNoCase(head, "Event:");
}

}  // namespace bantam
