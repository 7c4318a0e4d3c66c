#include "bench/loadgen/histogram.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace bench::loadgen {
namespace {

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.min(), 0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (int v = 1; v <= 100; ++v) {
    h.Record(v);
  }
  EXPECT_EQ(h.ValueAtPercentile(50), 50);
  EXPECT_EQ(h.ValueAtPercentile(90), 90);
  EXPECT_EQ(h.ValueAtPercentile(99), 99);
  EXPECT_EQ(h.ValueAtPercentile(100), 100);
  EXPECT_EQ(h.min(), 1);
  EXPECT_EQ(h.max(), 100);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(HistogramTest, BucketsAreContiguousAndWithinTwoDigits) {
  for (int i = 0; i + 1 < Histogram::kBuckets; ++i) {
    ASSERT_EQ(Histogram::BucketHighest(i) + 1, Histogram::BucketLowest(i + 1)) << i;
  }
  for (uint64_t v : {uint64_t{0}, uint64_t{127}, uint64_t{128}, uint64_t{129}, uint64_t{1000},
                     uint64_t{123456}, uint64_t{999999999}, uint64_t{1} << 62}) {
    const int index = Histogram::BucketIndex(v);
    ASSERT_LT(index, Histogram::kBuckets);
    EXPECT_LE(Histogram::BucketLowest(index), v);
    EXPECT_GE(Histogram::BucketHighest(index), v);
    const double width = static_cast<double>(Histogram::BucketHighest(index) -
                                             Histogram::BucketLowest(index));
    EXPECT_LE(width, static_cast<double>(v) / 64.0 + 1.0) << v;
  }
  EXPECT_LT(Histogram::BucketIndex(~uint64_t{0}), Histogram::kBuckets);
}

TEST(HistogramTest, PercentilesOfAWideDistribution) {
  Histogram h;
  // 1..100000 microseconds, uniform: p50 = 50000, p99.9 = 99900, within 1/64.
  for (int64_t v = 1; v <= 100000; ++v) {
    h.Record(v);
  }
  auto near = [](int64_t got, int64_t want) {
    return got >= want && got <= want + want / 64 + 1;
  };
  EXPECT_TRUE(near(h.ValueAtPercentile(50), 50000)) << h.ValueAtPercentile(50);
  EXPECT_TRUE(near(h.ValueAtPercentile(90), 90000)) << h.ValueAtPercentile(90);
  EXPECT_TRUE(near(h.ValueAtPercentile(99), 99000)) << h.ValueAtPercentile(99);
  EXPECT_TRUE(near(h.ValueAtPercentile(99.9), 99900)) << h.ValueAtPercentile(99.9);
  EXPECT_EQ(h.ValueAtPercentile(100), 100000);
}

TEST(HistogramTest, OutlierShowsInTailOnly) {
  Histogram h;
  for (int i = 0; i < 999; ++i) {
    h.Record(100);
  }
  h.Record(5'000'000);
  EXPECT_EQ(h.ValueAtPercentile(99), 100);
  EXPECT_EQ(h.ValueAtPercentile(99.9), 100);
  EXPECT_EQ(h.ValueAtPercentile(99.95), 5'000'000);
  EXPECT_EQ(h.max(), 5'000'000);
}

TEST(HistogramTest, NegativeIsZeroAndMergeAdds) {
  Histogram a;
  Histogram b;
  a.Record(-5);
  b.Record(300);
  b.Record(700);
  a.Merge(b);
  EXPECT_EQ(a.count(), 3);
  EXPECT_EQ(a.min(), 0);
  EXPECT_EQ(a.max(), 700);
  EXPECT_EQ(a.ValueAtPercentile(100), 700);
}

}  // namespace
}  // namespace bench::loadgen
