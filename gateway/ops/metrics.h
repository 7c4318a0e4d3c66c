// Process-wide gateway metrics in the Prometheus text format.
//
// Counters and gauges are plain atomics, bumped from any worker thread without locks;
// Render() reads them for GET /metrics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace gateway::ops {

// IMAP command families counted per family: "UID FETCH" counts as FETCH. Names
// not in the list count as "OTHER" (the last index).
inline constexpr std::array<std::string_view, 32> kCommandFamilies = {
    "CAPABILITY", "NOOP",     "LOGOUT",    "STARTTLS", "AUTHENTICATE", "LOGIN",   "SELECT",
    "EXAMINE",    "CREATE",   "DELETE",    "RENAME",   "SUBSCRIBE",    "UNSUBSCRIBE",
    "LIST",       "LSUB",     "STATUS",    "APPEND",   "CHECK",        "CLOSE",   "UNSELECT",
    "EXPUNGE",    "SEARCH",   "FETCH",     "STORE",    "COPY",         "MOVE",    "IDLE",
    "ENABLE",     "NAMESPACE", "ID",       "COMPRESS", "OTHER"};

// The index in kCommandFamilies of a command name as the command table spells it
// (imap::CommandSpec::name).
size_t CommandFamilyIndex(std::string_view command_name);

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
  // COMPRESS=DEFLATE (RFC 4978): sessions compressing now, which
  // --max-compressed-connections bounds; COMPRESS commands refused at that bound;
  // connections ended for invalid or over-expanding compressed input.
  std::atomic<int64_t> sessions_compressed{0};
  std::atomic<uint64_t> compress_refused_limit{0};
  std::atomic<uint64_t> compress_input_errors{0};
  // Per command family (kCommandFamilies): commands run, and the calls they made
  // to the mailbox service (unary RPCs and streams, each counted once).
  std::array<std::atomic<uint64_t>, kCommandFamilies.size()> family_commands{};
  std::array<std::atomic<uint64_t>, kCommandFamilies.size()> family_store_calls{};
  // The per-worker FETCH cache (session/fetch_cache.h), summed over workers.
  std::atomic<uint64_t> fetch_cache_hits{0};    // messages answered without the service
  std::atomic<uint64_t> fetch_cache_misses{0};  // messages that needed the service
  std::atomic<uint64_t> fetch_cache_evictions{0};
  std::atomic<int64_t> fetch_cache_bytes{0};
  std::atomic<int64_t> fetch_cache_entries{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};

  void ConnectionOpened() {
    const int64_t open = connections_open.fetch_add(1) + 1;
    int64_t high = connections_high_water.load(std::memory_order_relaxed);
    while (open > high && !connections_high_water.compare_exchange_weak(high, open)) {
    }
  }

  // Counts one command of `family` (CommandFamilyIndex) and the store calls it made.
  void CommandDone(size_t family, uint64_t store_calls) {
    family_commands[family].fetch_add(1, std::memory_order_relaxed);
    if (store_calls != 0) {
      family_store_calls[family].fetch_add(store_calls, std::memory_order_relaxed);
    }
  }

  // The whole exposition, with HELP and TYPE lines.
  std::string Render() const;
};

// The process's metrics (one gateway per process).
Metrics& GlobalMetrics();

}  // namespace gateway::ops
