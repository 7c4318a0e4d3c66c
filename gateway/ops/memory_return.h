// Gives freed heap memory back to the kernel after the connection count falls.
//
// glibc keeps what a burst of connections freed: the heap's top cannot shrink past a
// chunk still in use, and free pages in the middle stay resident. After 15,000 idle
// TLS connections close, the gateway kept its ~330 MB RSS (bench/suite idle, then
// transfer). malloc_trim(0) releases those pages (MADV_DONTNEED on free chunks). It
// locks each arena while it walks it, so it runs only after a real drop: when the
// open connections fell by a quarter, and by at least `min_drop`, from their peak
// since the last trim.
#pragma once

#include <cstdint>

#include "boost/asio/awaitable.hpp"
#include "gateway/ops/metrics.h"

namespace gateway::ops {

class TrimPolicy {
 public:
  explicit TrimPolicy(int64_t min_drop = 256) : min_drop_(min_drop) {}

  // Called periodically with the most connections open at once since the last call
  // and those open now; true when it is time to trim (the peak then starts again
  // from `open`).
  bool ShouldTrim(int64_t high_water, int64_t open);

 private:
  int64_t min_drop_;
  int64_t peak_ = 0;
};

// Every `interval_s` seconds, trims the heap when the policy says so, counting trims
// in metrics.heap_trims. Runs until the io_context stops.
boost::asio::awaitable<void> ReturnFreedMemory(Metrics& metrics, int interval_s = 10);

}  // namespace gateway::ops
