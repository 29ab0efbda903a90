// Exposition: Prometheus metrics as text. ExpositionWriter appends metric
// families to a string in the Prometheus text format 0.0.4 or in
// OpenMetrics 1.0.0 (which the scraper asks for in its Accept header,
// NegotiateFormat); Histogram is a fixed-bucket histogram of plain integers.
//
// Nothing here knows what bantam measures: the daemon keeps its counters
// where they are updated (the loop thread) and writes them out through an
// ExpositionWriter when scraped. Not thread-safe; no allocation per
// observation.
#ifndef BANTAM_EXPOSITION_H_
#define BANTAM_EXPOSITION_H_

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bantam {

enum class ExpositionFormat {
  kText004,         // text/plain; version=0.0.4
  kOpenMetrics100,  // application/openmetrics-text; version=1.0.0
};

// The format an HTTP Accept header prefers among the two (by q-value; a
// tie goes to OpenMetrics, listed first by the scrapers that offer it).
// Empty, absent or unknown media types: text 0.0.4.
ExpositionFormat NegotiateFormat(std::string_view accept);
// The Content-Type of a response in `format`.
const char* ContentTypeOf(ExpositionFormat format);

// Upper bounds (seconds) for durations from half a millisecond to a minute,
// and for sizes (counts of items) from 1 to 100,000. Static storage: a
// Histogram keeps a view of them.
std::span<const double> DurationBuckets();
std::span<const double> SizeBuckets();

// Counts observations into buckets with fixed upper bounds (and +Inf).
class Histogram {
 public:
  // `bounds`: ascending, finite; must outlive the histogram (use the
  // functions above).
  explicit Histogram(std::span<const double> bounds)
      : bounds_(bounds), counts_(bounds.size() + 1, 0) {}

  void Observe(double value);
  // Adds `other`'s observations; both must have the same bounds.
  void Merge(const Histogram& other);

  std::span<const double> bounds() const { return bounds_; }
  // Observations <= bounds()[i], not cumulative; the last is above all.
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::span<const double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

enum class MetricType { kCounter, kGauge, kHistogram };

// Label name and value. Names are ASCII identifiers chosen by the caller;
// values are any bytes (escaped, invalid UTF-8 replaced).
using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Appends families to `*out` (which must outlive the writer). Call
// Family(), then its samples, then the next Family(); Finish() once at the
// end. A family with no sample is left out altogether.
class ExpositionWriter {
 public:
  ExpositionWriter(ExpositionFormat format, std::string* out) : format_(format), out_(out) {}
  ExpositionWriter(const ExpositionWriter&) = delete;
  ExpositionWriter& operator=(const ExpositionWriter&) = delete;

  // `name`: the family name as the samples of a gauge or histogram carry
  // it; for a counter, without its "_total", which the samples get.
  void Family(std::string_view name, MetricType type, std::string_view help);
  void Sample(Labels labels, double value);
  void Sample(Labels labels, uint64_t value);
  void Sample(Labels labels, const Histogram& histogram);
  // OpenMetrics' "# EOF"; nothing for text 0.0.4.
  void Finish();

 private:
  void Header();
  void Line(std::string_view suffix, Labels labels, std::string_view extra_name,
            std::string_view extra_value, std::string_view value);

  ExpositionFormat format_;
  std::string* out_;
  std::string name_;
  std::string help_;
  MetricType type_ = MetricType::kGauge;
  bool header_written_ = true;
  std::string scratch_;
};

// A sample value as the formats write it: integers without a fraction,
// others in the shortest form that reads back exactly; NaN, +Inf, -Inf.
std::string FormatSampleValue(double value);
// A label value with \, " and newline escaped (and invalid UTF-8 replaced
// by U+FFFD), without the quotes.
std::string EscapeLabelValue(std::string_view value);

}  // namespace bantam

#endif  // BANTAM_EXPOSITION_H_
