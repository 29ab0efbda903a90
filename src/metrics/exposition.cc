#include "bantam/exposition.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "bantam/utf8.h"

namespace bantam {
namespace {

constexpr double kDurationBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,   0.5,   1,      2.5,   5,    10,    30,    60};
constexpr double kSizeBounds[] = {1, 2, 5, 10, 20, 50, 100, 500, 1000, 5000, 10000, 50000, 100000};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

// One media range of an Accept header: its type and its q-value, and
// whether its parameters rule it out (an OpenMetrics version we do not
// write).
struct MediaRange {
  std::string_view type;
  double q = 1;
  bool usable = true;
};

MediaRange ParseMediaRange(std::string_view part) {
  MediaRange m;
  size_t semi = part.find(';');
  m.type = Trim(part.substr(0, semi));
  while (semi != std::string_view::npos) {
    part.remove_prefix(semi + 1);
    semi = part.find(';');
    std::string_view param = Trim(part.substr(0, semi));
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = Trim(param.substr(0, eq));
    std::string_view value = Trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (EqualsNoCase(key, "q")) {
      double q = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), q);
      m.q = ec == std::errc() && end == value.data() + value.size() ? q : 0;
    } else if (EqualsNoCase(key, "version") &&
               EqualsNoCase(m.type, "application/openmetrics-text")) {
      m.usable = value == "1.0.0";
    } else if (EqualsNoCase(key, "version") && EqualsNoCase(m.type, "text/plain")) {
      m.usable = value == "0.0.4";
    }
  }
  return m;
}

void AppendValue(double v, std::string* out) {
  if (std::isnan(v)) {
    *out += "NaN";
  } else if (std::isinf(v)) {
    *out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    (void)ec;
    out->append(buf, end);
  } else {
    // Plain decimals where they are short (bucket bounds, timestamps),
    // exponents for the very small and the very large; either way the
    // shortest text that reads back exactly.
    char buf[64];
    const double a = std::fabs(v);
    const auto fmt = a >= 1e-6 && a < 1e15 ? std::chars_format::fixed : std::chars_format::scientific;
    std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, v, fmt);
    if (r.ec != std::errc()) r = std::to_chars(buf, buf + sizeof buf, v);
    out->append(buf, r.ptr);
  }
}

void AppendUint(uint64_t v, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out->append(buf, end);
}

void AppendEscaped(std::string_view raw, bool quote, std::string* scratch, std::string* out) {
  const std::string_view text = DecodeUtf8Replace(raw, scratch);
  for (char c : text) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c == '"' && quote) {
      *out += "\\\"";
    } else {
      out->push_back(c);
    }
  }
}

}  // namespace

ExpositionFormat NegotiateFormat(std::string_view accept) {
  double best_om = -1, best_text = -1;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    const MediaRange m = ParseMediaRange(accept.substr(0, comma));
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    if (!m.usable || m.q <= 0) continue;
    if (EqualsNoCase(m.type, "application/openmetrics-text")) {
      best_om = std::max(best_om, m.q);
    } else if (EqualsNoCase(m.type, "text/plain") || EqualsNoCase(m.type, "text/*") ||
               m.type == "*/*") {
      best_text = std::max(best_text, m.q);
    }
  }
  return best_om >= 0 && best_om >= best_text ? ExpositionFormat::kOpenMetrics100
                                               : ExpositionFormat::kText004;
}

const char* ContentTypeOf(ExpositionFormat format) {
  return format == ExpositionFormat::kOpenMetrics100
             ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
             : "text/plain; version=0.0.4; charset=utf-8";
}

std::span<const double> DurationBuckets() { return kDurationBounds; }
std::span<const double> SizeBuckets() { return kSizeBounds; }

void Histogram::Observe(double value) {
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  ++counts_[i];
  ++count_;
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.counts_.size() != counts_.size()) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
}

std::string FormatSampleValue(double value) {
  std::string out;
  AppendValue(value, &out);
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out, scratch;
  AppendEscaped(value, /*quote=*/true, &scratch, &out);
  return out;
}

void ExpositionWriter::Family(std::string_view name, MetricType type, std::string_view help) {
  name_.assign(name);
  help_.assign(help);
  type_ = type;
  header_written_ = false;
}

void ExpositionWriter::Header() {
  if (header_written_) return;
  header_written_ = true;
  const bool om = format_ == ExpositionFormat::kOpenMetrics100;
  // Text 0.0.4 names a counter family after its samples (..._total);
  // OpenMetrics names it without the suffix.
  const std::string family =
      type_ == MetricType::kCounter && !om ? name_ + "_total" : name_;
  *out_ += "# HELP ";
  *out_ += family;
  out_->push_back(' ');
  AppendEscaped(help_, /*quote=*/om, &scratch_, out_);
  *out_ += "\n# TYPE ";
  *out_ += family;
  *out_ += type_ == MetricType::kCounter ? " counter\n"
           : type_ == MetricType::kGauge ? " gauge\n"
                                         : " histogram\n";
}

void ExpositionWriter::Line(std::string_view suffix, Labels labels, std::string_view extra_name,
                            std::string_view extra_value, std::string_view value) {
  *out_ += name_;
  *out_ += suffix;
  if (labels.size() > 0 || !extra_name.empty()) {
    out_->push_back('{');
    bool first = true;
    auto label = [&](std::string_view n, std::string_view v) {
      if (!first) out_->push_back(',');
      first = false;
      *out_ += n;
      *out_ += "=\"";
      AppendEscaped(v, /*quote=*/true, &scratch_, out_);
      out_->push_back('"');
    };
    for (const auto& [n, v] : labels) label(n, v);
    if (!extra_name.empty()) label(extra_name, extra_value);
    out_->push_back('}');
  }
  out_->push_back(' ');
  *out_ += value;
  out_->push_back('\n');
}

void ExpositionWriter::Sample(Labels labels, double value) {
  Header();
  std::string v;
  AppendValue(value, &v);
  Line(type_ == MetricType::kCounter ? "_total" : "", labels, {}, {}, v);
}

void ExpositionWriter::Sample(Labels labels, uint64_t value) {
  Header();
  std::string v;
  AppendUint(value, &v);
  Line(type_ == MetricType::kCounter ? "_total" : "", labels, {}, {}, v);
}

void ExpositionWriter::Sample(Labels labels, const Histogram& h) {
  Header();
  std::string v, le;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.counts().size(); ++i) {
    cumulative += h.counts()[i];
    le.clear();
    if (i < h.bounds().size()) {
      AppendValue(h.bounds()[i], &le);
      // OpenMetrics writes bucket bounds as floats ("1.0", not "1").
      if (format_ == ExpositionFormat::kOpenMetrics100 &&
          le.find_first_of(".eE") == std::string::npos) {
        le += ".0";
      }
    } else {
      le = "+Inf";
    }
    v.clear();
    AppendUint(cumulative, &v);
    Line("_bucket", labels, "le", le, v);
  }
  v.clear();
  AppendValue(h.sum(), &v);
  Line("_sum", labels, {}, {}, v);
  v.clear();
  AppendUint(h.count(), &v);
  Line("_count", labels, {}, {}, v);
}

void ExpositionWriter::Finish() {
  if (format_ == ExpositionFormat::kOpenMetrics100) *out_ += "# EOF\n";
}

}  // namespace bantam
