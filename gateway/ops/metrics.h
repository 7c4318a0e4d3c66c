// Process-wide gateway metrics in the Prometheus text format (common/metrics).
//
// Most counters and gauges are plain atomics bumped from any worker thread
// without locks, registered with the registry as values read when GET /metrics
// renders them; the labelled families and histograms (command and RPC latency,
// TLS handshakes, logins, connections per listener) are the registry's own.
// docs/operations.md ("Metrics") lists every metric.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/metrics/metrics.h"

namespace mailbox::metrics {
class RpcMetrics;
}

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

// The listener label: "imaps" (implicit TLS, RFC 8314) or "starttls" (plain IMAP
// that may upgrade), indexed by these constants.
inline constexpr size_t kImapsListener = 0;
inline constexpr size_t kStartTlsListener = 1;
inline constexpr std::array<std::string_view, 2> kListeners = {"imaps", "starttls"};

// Why the worker pool refused a connection (net::Refusal, in that order).
inline constexpr std::array<std::string_view, 3> kRefusalReasons = {
    "max_connections", "max_connections_per_ip", "proxy_header"};

// How a client authenticated: LOGIN is the IMAP command; LOGIN-SASL is
// AUTHENTICATE LOGIN.
enum class LoginMechanism {
  kLogin,
  kPlain,
  kScram,
  kScramPlus,
  kOauthBearer,
  kXoauth2,
  kLoginSasl
};
inline constexpr std::array<std::string_view, 7> kLoginMechanisms = {
    "LOGIN",       "PLAIN",   "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
    "OAUTHBEARER", "XOAUTH2", "LOGIN-SASL"};
// The label (and log) name of a mechanism.
inline std::string_view LoginMechanismName(LoginMechanism mechanism) {
  return kLoginMechanisms[static_cast<size_t>(mechanism)];
}
// success; failure (wrong credentials, a refused token, a malformed request);
// throttled (the service's login throttle said wait); unavailable (the service
// could not be asked).
enum class LoginOutcome { kSuccess, kFailure, kThrottled, kUnavailable };
inline constexpr std::array<std::string_view, 4> kLoginOutcomes = {"success", "failure",
                                                                   "throttled", "unavailable"};

struct Metrics {
  Metrics();
  ~Metrics();

  // First: the families below are registered in it.
  mailbox::metrics::Registry registry;

  std::atomic<int64_t> connections_open{0};
  // The most connections open at once since ops/memory_return last looked (bursts
  // between its looks count too).
  std::atomic<int64_t> connections_high_water{0};
  std::atomic<int64_t> sessions_authenticated{0};
  std::atomic<int64_t> sessions_idling{0};
  // Changes of selected mailboxes queued for their sessions and not yet reported,
  // summed over sessions (each queue bounded by --max-pending-changes).
  std::atomic<int64_t> pending_changes{0};
  std::atomic<uint64_t> commands_total{0};
  std::atomic<uint64_t> commands_bad{0};
  std::atomic<uint64_t> commands_no{0};
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
  // Connections ended with BYE after --max-auth-failures failed logins.
  std::atomic<uint64_t> auth_disconnects{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};

  // Per listener (kListeners): connections accepted (before TLS), open now, and
  // refused by the worker pool per reason (kRefusalReasons).
  mailbox::metrics::Family<mailbox::metrics::Counter>& connections_accepted;
  mailbox::metrics::Family<mailbox::metrics::Gauge>& connections_open_by_listener;
  mailbox::metrics::Family<mailbox::metrics::Counter>& connections_refused;
  // TLS handshakes per listener and outcome (success, failure), and their duration.
  mailbox::metrics::Family<mailbox::metrics::Counter>& tls_handshakes;
  mailbox::metrics::Family<mailbox::metrics::Histogram>& tls_handshake_seconds;
  // Logins per mechanism (kLoginMechanisms) and outcome (kLoginOutcomes).
  mailbox::metrics::Family<mailbox::metrics::Counter>& logins;
  // Command latency per family: from the command's complete line to its tagged
  // response being queued (IDLE: the whole idle).
  mailbox::metrics::Family<mailbox::metrics::Histogram>& command_seconds;

  void ConnectionOpened(size_t listener) {
    connections_open_by_listener.At(listener).Add();
    const int64_t open = connections_open.fetch_add(1) + 1;
    int64_t high = connections_high_water.load(std::memory_order_relaxed);
    while (open > high && !connections_high_water.compare_exchange_weak(high, open)) {
    }
  }
  void ConnectionClosed(size_t listener) {
    connections_open_by_listener.At(listener).Sub();
    connections_open.fetch_sub(1);
  }
  void Refused(size_t reason, size_t listener) {
    connections_refused.At(listener * kRefusalReasons.size() + reason).Inc();
  }
  void TlsHandshake(size_t listener, bool ok, std::chrono::steady_clock::duration elapsed) {
    const size_t series = listener * 2 + (ok ? 0 : 1);
    tls_handshakes.At(series).Inc();
    tls_handshake_seconds.At(series).ObserveDuration(elapsed);
  }
  void Login(LoginMechanism mechanism, LoginOutcome outcome) {
    logins.At(static_cast<size_t>(mechanism) * kLoginOutcomes.size() + static_cast<size_t>(outcome))
        .Inc();
  }

  // Counts one command of `family` (CommandFamilyIndex), the store calls it made,
  // and how long it took.
  void CommandDone(size_t family, uint64_t store_calls,
                   std::chrono::steady_clock::duration elapsed) {
    family_commands[family].fetch_add(1, std::memory_order_relaxed);
    if (store_calls != 0) {
      family_store_calls[family].fetch_add(store_calls, std::memory_order_relaxed);
    }
    command_seconds.At(family).ObserveDuration(elapsed);
  }

  // The client side RPC metrics of the calls to the mailbox service (every call
  // passes through the interceptor this gives the storage client), registered
  // on first use.
  mailbox::metrics::RpcMetrics& StoreRpcs();

  // The whole exposition, with HELP and TYPE lines.
  std::string Render() const { return registry.Render(); }

 private:
  std::once_flag store_rpcs_once_;
  std::unique_ptr<mailbox::metrics::RpcMetrics> store_rpcs_;
};

// The process's metrics (one gateway per process).
Metrics& GlobalMetrics();

}  // namespace gateway::ops
