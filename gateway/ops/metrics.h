// Process-wide gateway metrics in the Prometheus text format.
//
// Counters and gauges are plain atomics, bumped from any worker thread without locks;
// Render() reads them for GET /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace gateway::ops {

struct Metrics {
  std::atomic<int64_t> connections_open{0};
  // The most connections open at once since ops/memory_return last looked (bursts
  // between its looks count too).
  std::atomic<int64_t> connections_high_water{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> tls_handshake_failures{0};
  std::atomic<int64_t> sessions_authenticated{0};
  std::atomic<int64_t> sessions_idling{0};
  std::atomic<uint64_t> commands_total{0};
  std::atomic<uint64_t> commands_bad{0};
  std::atomic<uint64_t> commands_no{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> store_unavailable{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> cert_reloads{0};
  std::atomic<uint64_t> heap_trims{0};
  // SEARCHes answered NO [LIMIT] for naming too many message ranges.
  std::atomic<uint64_t> search_limit_refusals{0};
  // Pending flag changes replaced by a later change of the same message.
  std::atomic<uint64_t> changes_coalesced{0};
  // Sessions ended with BYE because their queue of unreported changes was full.
  std::atomic<uint64_t> change_queue_overflows{0};
  // Connections the worker pool turned away (net/listener.h Refusal).
  std::atomic<uint64_t> refused_max_connections{0};
  std::atomic<uint64_t> refused_per_ip{0};
  std::atomic<uint64_t> refused_proxy_header{0};
  // APPEND connections ended because a message literal arrived too slowly.
  std::atomic<uint64_t> append_too_slow{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};

  void ConnectionOpened() {
    const int64_t open = connections_open.fetch_add(1) + 1;
    int64_t high = connections_high_water.load(std::memory_order_relaxed);
    while (open > high && !connections_high_water.compare_exchange_weak(high, open)) {
    }
  }

  // The whole exposition, with HELP and TYPE lines.
  std::string Render() const;
};

// The process's metrics (one gateway per process).
Metrics& GlobalMetrics();

}  // namespace gateway::ops
