#include "common/metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace mailbox::metrics {
namespace {

TEST(MetricsTest, CounterAndGaugeRenderWithHelpAndType) {
  Registry registry;
  Counter& logins = registry.AddCounter("test_logins_total", "Logins.\nSecond \\ line.");
  Gauge& open = registry.AddGauge("test_open", "Open now.");
  logins.Inc();
  logins.Inc(2);
  open.Add(5);
  open.Sub();
  EXPECT_EQ(registry.Render(),
            "# HELP test_logins_total Logins.\\nSecond \\\\ line.\n"
            "# TYPE test_logins_total counter\n"
            "test_logins_total 3\n"
            "# HELP test_open Open now.\n"
            "# TYPE test_open gauge\n"
            "test_open 4\n");
}

TEST(MetricsTest, LabelledFamilyRendersEveryRegisteredTuple) {
  Registry registry;
  auto& handshakes =
      registry.AddCounterFamily("test_handshakes_total", "Handshakes.", {"listener", "outcome"},
                                Product({{"imaps", "starttls"}, {"success", "failure"}}));
  ASSERT_EQ(handshakes.size(), 4u);
  handshakes.Get({"starttls", "failure"}).Inc(7);
  handshakes.At(0).Inc();
  EXPECT_EQ(registry.Render(),
            "# HELP test_handshakes_total Handshakes.\n"
            "# TYPE test_handshakes_total counter\n"
            "test_handshakes_total{listener=\"imaps\",outcome=\"success\"} 1\n"
            "test_handshakes_total{listener=\"imaps\",outcome=\"failure\"} 0\n"
            "test_handshakes_total{listener=\"starttls\",outcome=\"success\"} 0\n"
            "test_handshakes_total{listener=\"starttls\",outcome=\"failure\"} 7\n");
}

TEST(MetricsTest, OmitZeroLeavesOutUnusedSeries) {
  Registry registry;
  auto& calls =
      registry.AddCounterFamily("test_calls_total", "Calls.", {"code"},
                                {{"OK"}, {"NOT_FOUND"}, {"INTERNAL"}}, {.omit_zero = true});
  calls.Get({"NOT_FOUND"}).Inc();
  EXPECT_EQ(registry.Render(),
            "# HELP test_calls_total Calls.\n# TYPE test_calls_total counter\n"
            "test_calls_total{code=\"NOT_FOUND\"} 1\n");
}

TEST(MetricsTest, HistogramHasCumulativeBucketsInfSumAndCount) {
  Registry registry;
  auto& latency =
      registry.AddHistogramFamily("test_duration_seconds", "Latency.", {"command"},
                                  {{"FETCH"}, {"IDLE"}}, {0.25, 1, 2}, {.omit_zero = true});
  Histogram& fetch = latency.Get({"FETCH"});
  fetch.Observe(0.125);
  fetch.Observe(0.25);  // on a bound: counts in that bucket (le is <=)
  fetch.Observe(0.5);
  fetch.Observe(3);
  EXPECT_EQ(registry.Render(),
            "# HELP test_duration_seconds Latency.\n"
            "# TYPE test_duration_seconds histogram\n"
            "test_duration_seconds_bucket{command=\"FETCH\",le=\"0.25\"} 2\n"
            "test_duration_seconds_bucket{command=\"FETCH\",le=\"1\"} 3\n"
            "test_duration_seconds_bucket{command=\"FETCH\",le=\"2\"} 3\n"
            "test_duration_seconds_bucket{command=\"FETCH\",le=\"+Inf\"} 4\n"
            "test_duration_seconds_sum{command=\"FETCH\"} 3.875\n"
            "test_duration_seconds_count{command=\"FETCH\"} 4\n");
}

TEST(MetricsTest, UnlabelledHistogram) {
  Registry registry;
  Histogram& h = registry.AddHistogram("test_seconds", "H.", {1});
  h.ObserveDuration(std::chrono::milliseconds(2500));
  EXPECT_EQ(registry.Render(),
            "# HELP test_seconds H.\n# TYPE test_seconds histogram\n"
            "test_seconds_bucket{le=\"1\"} 0\n"
            "test_seconds_bucket{le=\"+Inf\"} 1\n"
            "test_seconds_sum 2.5\n"
            "test_seconds_count 1\n");
}

TEST(MetricsTest, CallbacksAreReadAtRenderTime) {
  Registry registry;
  std::atomic<uint64_t> external{4};
  registry.AddCallback("test_external_total", "External.", Registry::Type::kCounter,
                       [&] { return static_cast<double>(external.load()); });
  registry.AddCallbackFamily("test_queue_depth", "Depth.", Registry::Type::kGauge, {"worker"},
                             {{"0"}, {"1"}}, [] {
                               return std::vector<double>{2, 0.5};
                             });
  external = 9;
  EXPECT_EQ(registry.Render(),
            "# HELP test_external_total External.\n# TYPE test_external_total counter\n"
            "test_external_total 9\n"
            "# HELP test_queue_depth Depth.\n# TYPE test_queue_depth gauge\n"
            "test_queue_depth{worker=\"0\"} 2\n"
            "test_queue_depth{worker=\"1\"} 0.5\n");
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry registry;
  registry.AddGaugeFamily("test_g", "G.", {"name"}, {{"a\"b\\c\nd"}});
  EXPECT_NE(registry.Render().find("test_g{name=\"a\\\"b\\\\c\\nd\"} 0\n"), std::string::npos);
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(60), "60");
  EXPECT_EQ(FormatValue(0.0005), "0.0005");
  EXPECT_EQ(FormatValue(0.0025), "0.0025");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatValue(-1.0 / 0.0), "-Inf");
}

TEST(MetricsTest, ManyThreadsBumpWithoutLosingCounts) {
  Registry registry;
  Counter& counter = registry.AddCounter("test_bumps_total", "Bumps.");
  Histogram& histogram = registry.AddHistogram("test_h_seconds", "H.", LatencyBuckets());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter.Inc();
        histogram.Observe(0.002);
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(counter.Value(), 80000u);
  const Histogram::Snapshot snapshot = histogram.Read();
  EXPECT_EQ(snapshot.count, 80000u);
  EXPECT_NEAR(snapshot.sum, 160, 1e-6);
}

TEST(MetricsDeathTest, BadRegistrationsAbort) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("test_no_suffix", "x"), "must end in _total");
  EXPECT_DEATH(registry.AddGauge("bad-name", "x"), "invalid metric name");
  registry.AddGauge("test_once", "x");
  EXPECT_DEATH(registry.AddGauge("test_once", "x"), "registered twice");
  EXPECT_DEATH(registry.AddGaugeFamily("test_l", "x", {"le"}, {{"1"}}), "invalid label name");
  EXPECT_DEATH(registry.AddHistogram("test_h", "x", {2, 1}), "bounds must increase");
  auto& family = registry.AddGaugeFamily("test_f", "x", {"a"}, {{"x"}});
  EXPECT_DEATH(family.Get({"y"}), "no series");
}

}  // namespace
}  // namespace mailbox::metrics
