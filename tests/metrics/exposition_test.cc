#include "bantam/exposition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace bantam {
namespace {

TEST(NegotiateFormatTest, PrometheusScraperGetsOpenMetrics) {
  // What Prometheus 2.42 sends.
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=1.0.0,application/"
                            "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;"
                            "q=0.5,*/*;q=0.1"),
            ExpositionFormat::kOpenMetrics100);
}

TEST(NegotiateFormatTest, TextWhenNotAsked) {
  EXPECT_EQ(NegotiateFormat(""), ExpositionFormat::kText004);
  EXPECT_EQ(NegotiateFormat("*/*"), ExpositionFormat::kText004);
  EXPECT_EQ(NegotiateFormat("text/plain;version=0.0.4"), ExpositionFormat::kText004);
  EXPECT_EQ(NegotiateFormat("application/json"), ExpositionFormat::kText004);
}

TEST(NegotiateFormatTest, QValuesDecide) {
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text; q=0.2, text/plain; q=0.9"),
            ExpositionFormat::kText004);
  EXPECT_EQ(NegotiateFormat("text/plain; q=0.2, application/openmetrics-text"),
            ExpositionFormat::kOpenMetrics100);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;q=0"), ExpositionFormat::kText004);
}

TEST(NegotiateFormatTest, UnknownOpenMetricsVersionIsNotServed) {
  // Only 1.0.0 is written; 0.0.1 alone falls back to text.
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text;version=0.0.1"),
            ExpositionFormat::kText004);
  EXPECT_EQ(NegotiateFormat("application/openmetrics-text; version=\"1.0.0\""),
            ExpositionFormat::kOpenMetrics100);
}

TEST(ContentTypeTest, Formats) {
  EXPECT_STREQ(ContentTypeOf(ExpositionFormat::kText004), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_STREQ(ContentTypeOf(ExpositionFormat::kOpenMetrics100),
               "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

TEST(FormatSampleValueTest, IntegersFloatsAndSpecials) {
  EXPECT_EQ(FormatSampleValue(0), "0");
  EXPECT_EQ(FormatSampleValue(3790), "3790");
  EXPECT_EQ(FormatSampleValue(-2), "-2");
  EXPECT_EQ(FormatSampleValue(1764990000.25), "1764990000.25");
  EXPECT_EQ(FormatSampleValue(0.0005), "0.0005");
  EXPECT_EQ(FormatSampleValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatSampleValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatSampleValue(std::nan("")), "NaN");
  // Shortest form that reads back exactly.
  EXPECT_EQ(std::stod(FormatSampleValue(0.1 + 0.2)), 0.1 + 0.2);
}

TEST(EscapeLabelValueTest, BackslashQuoteNewline) {
  EXPECT_EQ(EscapeLabelValue("/var/log/asterisk/messages"), "/var/log/asterisk/messages");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(EscapeLabelValueTest, InvalidUtf8IsReplaced) {
  EXPECT_EQ(EscapeLabelValue("/var/log/\xff.log"), "/var/log/\xef\xbf\xbd.log");
  EXPECT_EQ(EscapeLabelValue("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST(HistogramTest, BucketsAreUpperBoundsInclusive) {
  static constexpr double kBounds[] = {1, 5, 10};
  Histogram h(kBounds);
  h.Observe(0.5);
  h.Observe(1);   // le="1"
  h.Observe(1.5);
  h.Observe(10);  // le="10"
  h.Observe(11);  // +Inf only
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 1, 1, 1}));
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 24);
  Histogram g(kBounds);
  g.Observe(3);
  g.Merge(h);
  EXPECT_EQ(g.counts(), (std::vector<uint64_t>{2, 2, 1, 1}));
  EXPECT_EQ(g.count(), 6u);
}

TEST(ExpositionWriterTest, Text004CounterGaugeAndEscapedLabels) {
  std::string out;
  ExpositionWriter w(ExpositionFormat::kText004, &out);
  w.Family("bantam_bans", MetricType::kCounter, "Bans, by cause.\nSecond line \\ here.");
  w.Sample({{"jail", "pbx"}, {"cause", "maxretry"}}, uint64_t{3});
  w.Sample({{"jail", "we\"ird\\jail"}, {"cause", "manual"}}, uint64_t{0});
  w.Family("bantam_banned_addresses", MetricType::kGauge, "Addresses currently banned.");
  w.Sample({{"jail", "pbx"}}, uint64_t{2});
  w.Family("process_start_time_seconds", MetricType::kGauge, "Start time.");
  w.Sample({}, 1764990000.5);
  w.Finish();
  EXPECT_EQ(out,
            "# HELP bantam_bans_total Bans, by cause.\\nSecond line \\\\ here.\n"
            "# TYPE bantam_bans_total counter\n"
            "bantam_bans_total{jail=\"pbx\",cause=\"maxretry\"} 3\n"
            "bantam_bans_total{jail=\"we\\\"ird\\\\jail\",cause=\"manual\"} 0\n"
            "# HELP bantam_banned_addresses Addresses currently banned.\n"
            "# TYPE bantam_banned_addresses gauge\n"
            "bantam_banned_addresses{jail=\"pbx\"} 2\n"
            "# HELP process_start_time_seconds Start time.\n"
            "# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds 1764990000.5\n");
}

TEST(ExpositionWriterTest, OpenMetricsNamesCounterFamiliesWithoutTotalAndEnds) {
  std::string out;
  ExpositionWriter w(ExpositionFormat::kOpenMetrics100, &out);
  w.Family("bantam_failures", MetricType::kCounter, "Failures \"counted\".");
  w.Sample({{"jail", "pbx"}}, uint64_t{7});
  w.Finish();
  EXPECT_EQ(out,
            "# HELP bantam_failures Failures \\\"counted\\\".\n"
            "# TYPE bantam_failures counter\n"
            "bantam_failures_total{jail=\"pbx\"} 7\n"
            "# EOF\n");
}

TEST(ExpositionWriterTest, FamilyWithoutSamplesIsLeftOut) {
  std::string out;
  ExpositionWriter w(ExpositionFormat::kText004, &out);
  w.Family("bantam_nft_transactions", MetricType::kCounter, "None here.");
  w.Family("bantam_jails", MetricType::kGauge, "Jails.");
  w.Sample({}, uint64_t{0});
  w.Finish();
  EXPECT_EQ(out, "# HELP bantam_jails Jails.\n# TYPE bantam_jails gauge\nbantam_jails 0\n");
}

TEST(ExpositionWriterTest, HistogramIsCumulativeWithInfSumAndCount) {
  static constexpr double kBounds[] = {0.5, 1};
  Histogram h(kBounds);
  h.Observe(0.25);
  h.Observe(0.75);
  h.Observe(2);
  std::string text;
  {
    ExpositionWriter w(ExpositionFormat::kText004, &text);
    w.Family("bantam_action_duration_seconds", MetricType::kHistogram, "Durations.");
    w.Sample({{"jail", "pbx"}}, h);
    w.Finish();
  }
  EXPECT_EQ(text,
            "# HELP bantam_action_duration_seconds Durations.\n"
            "# TYPE bantam_action_duration_seconds histogram\n"
            "bantam_action_duration_seconds_bucket{jail=\"pbx\",le=\"0.5\"} 1\n"
            "bantam_action_duration_seconds_bucket{jail=\"pbx\",le=\"1\"} 2\n"
            "bantam_action_duration_seconds_bucket{jail=\"pbx\",le=\"+Inf\"} 3\n"
            "bantam_action_duration_seconds_sum{jail=\"pbx\"} 3\n"
            "bantam_action_duration_seconds_count{jail=\"pbx\"} 3\n");
  std::string om;
  {
    ExpositionWriter w(ExpositionFormat::kOpenMetrics100, &om);
    w.Family("bantam_action_duration_seconds", MetricType::kHistogram, "Durations.");
    w.Sample({}, h);
    w.Finish();
  }
  // OpenMetrics bucket bounds are floats.
  EXPECT_NE(om.find("bantam_action_duration_seconds_bucket{le=\"1.0\"} 2\n"), std::string::npos)
      << om;
  EXPECT_NE(om.find("bantam_action_duration_seconds_bucket{le=\"0.5\"} 1\n"), std::string::npos);
  EXPECT_EQ(om.substr(om.size() - 6), "# EOF\n");
}

TEST(BucketsTest, AscendingAndFinite) {
  for (std::span<const double> b : {DurationBuckets(), SizeBuckets()}) {
    ASSERT_FALSE(b.empty());
    for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
    EXPECT_TRUE(std::isfinite(b.back()));
  }
}

}  // namespace
}  // namespace bantam
