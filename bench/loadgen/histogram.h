// An HDR-style latency histogram for the load generator.
//
// Values (microseconds) land in log-linear buckets: exact below 128, and above that
// 64 linear sub-buckets per power of two, so every recorded value is reported within
// 1/64 (about 1.6%) of its true value, i.e. two significant decimal digits, whatever
// its magnitude. Memory is fixed (a few KiB) and recording is O(1), so one histogram
// per command kind per run costs nothing measurable. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>

namespace bench::loadgen {

class Histogram {
 public:
  // Records one value; negative values count as 0.
  void Record(int64_t value);
  // Adds every value recorded in `other`.
  void Merge(const Histogram& other);

  int64_t count() const { return count_; }
  int64_t max() const { return max_; }
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }

  // The value at `percentile` (0..100]: the highest value equivalent to the bucket
  // holding the ceil(p/100 * count)-th smallest value, capped at max(). 0 when empty.
  int64_t ValueAtPercentile(double percentile) const;

  // Bucket arithmetic, public for tests.
  static int BucketIndex(uint64_t value);
  static uint64_t BucketLowest(int index);
  static uint64_t BucketHighest(int index);

  static constexpr int kSubBucketBits = 7;                       // 128 exact values
  static constexpr int kSubBuckets = 1 << kSubBucketBits;
  static constexpr int kHalf = kSubBuckets / 2;                  // 64 per octave
  static constexpr int kBuckets = kSubBuckets + (64 - kSubBucketBits) * kHalf;

 private:
  std::array<int64_t, kBuckets> counts_{};
  int64_t count_ = 0;
  int64_t sum_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
};

}  // namespace bench::loadgen
