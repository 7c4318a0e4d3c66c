#include "gateway/ops/memory_return.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace gateway::ops {

bool TrimPolicy::ShouldTrim(int64_t high_water, int64_t open) {
  peak_ = std::max({peak_, high_water, open});
  const int64_t drop = peak_ - open;
  if (drop >= min_drop_ && drop * 4 >= peak_) {
    peak_ = open;
    return true;
  }
  return false;
}

boost::asio::awaitable<void> ReturnFreedMemory(Metrics& metrics, int interval_s) {
  namespace asio = boost::asio;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  TrimPolicy policy;
  while (true) {
    timer.expires_after(std::chrono::seconds(interval_s));
    auto [error] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (error) {
      co_return;
    }
    const int64_t open = metrics.connections_open.load();
    if (policy.ShouldTrim(metrics.connections_high_water.exchange(open), open)) {
      ::malloc_trim(0);
      metrics.heap_trims.fetch_add(1);
    }
  }
}

}  // namespace gateway::ops
