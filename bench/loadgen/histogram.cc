#include "bench/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace bench::loadgen {

int Histogram::BucketIndex(uint64_t value) {
  if (value < static_cast<uint64_t>(kSubBuckets)) {
    return static_cast<int>(value);
  }
  // Shift so that the top kSubBucketBits bits remain: value >> shift is in [64, 128).
  const int shift = std::bit_width(value) - kSubBucketBits;
  const uint64_t sub = (value >> shift) - kHalf;
  return kSubBuckets + (shift - 1) * kHalf + static_cast<int>(sub);
}

uint64_t Histogram::BucketLowest(int index) {
  if (index < kSubBuckets) {
    return static_cast<uint64_t>(index);
  }
  const int shift = (index - kSubBuckets) / kHalf + 1;
  const uint64_t sub = static_cast<uint64_t>((index - kSubBuckets) % kHalf) + kHalf;
  return sub << shift;
}

uint64_t Histogram::BucketHighest(int index) {
  if (index < kSubBuckets) {
    return static_cast<uint64_t>(index);
  }
  const int shift = (index - kSubBuckets) / kHalf + 1;
  return BucketLowest(index) + ((uint64_t{1} << shift) - 1);
}

void Histogram::Record(int64_t value) {
  value = std::max<int64_t>(value, 0);
  ++counts_[BucketIndex(static_cast<uint64_t>(value))];
  if (count_ == 0 || value < min_) {
    min_ = value;
  }
  max_ = std::max(max_, value);
  ++count_;
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) {
    return;
  }
  for (int i = 0; i < kBuckets; ++i) {
    counts_[i] += other.counts_[i];
  }
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

int64_t Histogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) {
    return 0;
  }
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The small slack keeps e.g. 99.9% of 1000 at rank 999 despite binary rounding.
  int64_t rank = static_cast<int64_t>(std::ceil(percentile * count_ / 100.0 - 1e-7));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return std::min<int64_t>(static_cast<int64_t>(BucketHighest(i)), max_);
    }
  }
  return max_;
}

}  // namespace bench::loadgen
