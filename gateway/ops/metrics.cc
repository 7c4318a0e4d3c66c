#include "gateway/ops/metrics.h"

#include "common/metrics/grpc_metrics.h"

namespace gateway::ops {
namespace {

using mailbox::metrics::Product;
using mailbox::metrics::Registry;

std::vector<std::string> Strings(const auto& views) {
  return std::vector<std::string>(views.begin(), views.end());
}

std::vector<std::vector<std::string>> OneLabel(const auto& views) {
  std::vector<std::vector<std::string>> out;
  for (std::string_view view : views) {
    out.push_back({std::string(view)});
  }
  return out;
}

// Registers an atomic kept by the code that bumps it, read when rendered.
template <typename T>
void Expose(Registry& registry, std::string name, std::string help, Registry::Type type,
            const std::atomic<T>* value) {
  registry.AddCallback(std::move(name), std::move(help), type,
                       [value] { return static_cast<double>(value->load()); });
}

}  // namespace

size_t CommandFamilyIndex(std::string_view command_name) {
  if (command_name.starts_with("UID ")) {
    command_name.remove_prefix(4);
  }
  for (size_t i = 0; i + 1 < kCommandFamilies.size(); ++i) {
    if (kCommandFamilies[i] == command_name) {
      return i;
    }
  }
  return kCommandFamilies.size() - 1;
}

Metrics& GlobalMetrics() {
  static Metrics* metrics = new Metrics();
  return *metrics;
}

Metrics::Metrics()
    : connections_accepted(registry.AddCounterFamily(
          "imapd_gateway_connections_accepted_total",
          "Connections accepted and handed to a session, per listener (imaps: implicit TLS; "
          "starttls: plain IMAP), before the TLS handshake; refused ones are not counted.",
          {"listener"}, OneLabel(kListeners))),
      connections_open_by_listener(registry.AddGaugeFamily(
          "imapd_gateway_connections_open", "IMAP connections open now, per listener.",
          {"listener"}, OneLabel(kListeners))),
      connections_refused(registry.AddCounterFamily(
          "imapd_gateway_connections_refused_total",
          "Connections refused before a session, per listener and reason: over "
          "--max-connections, over --max-connections-per-ip, or a trusted proxy's connection "
          "without a valid PROXY header.",
          {"listener", "reason"}, Product({Strings(kListeners), Strings(kRefusalReasons)}))),
      tls_handshakes(registry.AddCounterFamily(
          "imapd_gateway_tls_handshakes_total",
          "TLS handshakes per listener (imaps: at connect; starttls: after STARTTLS) and "
          "outcome.",
          {"listener", "outcome"}, Product({Strings(kListeners), {"success", "failure"}}))),
      tls_handshake_seconds(registry.AddHistogramFamily(
          "imapd_gateway_tls_handshake_duration_seconds",
          "TLS handshake duration per listener and outcome.", {"listener", "outcome"},
          Product({Strings(kListeners), {"success", "failure"}}),
          mailbox::metrics::LatencyBuckets())),
      logins(registry.AddCounterFamily(
          "imapd_gateway_logins_total",
          "LOGIN and AUTHENTICATE attempts per mechanism (LOGIN: the IMAP command; LOGIN-SASL: "
          "AUTHENTICATE LOGIN) and outcome (throttled: the service's login throttle refused "
          "it; unavailable: the service could not be asked).",
          {"mechanism", "outcome"}, Product({Strings(kLoginMechanisms), Strings(kLoginOutcomes)}))),
      command_seconds(registry.AddHistogramFamily(
          "imapd_gateway_command_duration_seconds",
          "IMAP command latency per command family (UID FETCH counts as FETCH), from the "
          "complete command to its tagged response; IDLE: the whole idle. Series appear once "
          "the family is used.",
          {"command"}, OneLabel(kCommandFamilies), mailbox::metrics::LatencyBuckets(),
          {.omit_zero = true})) {
  using Type = Registry::Type;
  Expose(registry, "imapd_gateway_sessions_authenticated", "Sessions past LOGIN/AUTHENTICATE.",
         Type::kGauge, &sessions_authenticated);
  Expose(registry, "imapd_gateway_sessions_idling", "Sessions in IDLE.", Type::kGauge,
         &sessions_idling);
  Expose(registry, "imapd_gateway_pending_changes",
         "Changes of selected mailboxes waiting to be reported to their sessions, summed "
         "over sessions (each session's queue is bounded by --max-pending-changes).",
         Type::kGauge, &pending_changes);
  Expose(registry, "imapd_gateway_commands_received_total",
         "IMAP commands received (complete command lines, including those answered BAD).",
         Type::kCounter, &commands_total);
  Expose(registry, "imapd_gateway_commands_bad_total", "Commands answered BAD.", Type::kCounter,
         &commands_bad);
  Expose(registry, "imapd_gateway_commands_no_total", "Commands answered NO.", Type::kCounter,
         &commands_no);
  registry.AddCallbackFamily(
      "imapd_gateway_commands_total",
      "IMAP commands run, per command family (UID FETCH counts as FETCH).", Type::kCounter,
      {"command"}, OneLabel(kCommandFamilies), [this] {
        std::vector<double> out;
        for (const auto& n : family_commands) {
          out.push_back(static_cast<double>(n.load(std::memory_order_relaxed)));
        }
        return out;
      });
  registry.AddCallbackFamily(
      "imapd_gateway_store_calls_total",
      "Calls to the mailbox service (unary RPCs and streams) made by IMAP commands, per "
      "command family; divided by imapd_gateway_commands_total it is the calls per command.",
      Type::kCounter, {"command"}, OneLabel(kCommandFamilies), [this] {
        std::vector<double> out;
        for (const auto& n : family_store_calls) {
          out.push_back(static_cast<double>(n.load(std::memory_order_relaxed)));
        }
        return out;
      });
  Expose(registry, "imapd_gateway_store_unavailable_total",
         "Commands answered NO [UNAVAILABLE] because the mailbox service was unreachable.",
         Type::kCounter, &store_unavailable);
  Expose(registry, "imapd_gateway_auth_disconnects_total",
         "Connections ended with BYE after --max-auth-failures failed logins.", Type::kCounter,
         &auth_disconnects);
  Expose(registry, "imapd_gateway_received_bytes_total", "Bytes read from clients.", Type::kCounter,
         &bytes_in);
  Expose(registry, "imapd_gateway_sent_bytes_total", "Bytes written to clients.", Type::kCounter,
         &bytes_out);
  Expose(registry, "imapd_gateway_tls_certificate_reloads_total", "Certificate reloads.",
         Type::kCounter, &cert_reloads);
  Expose(registry, "imapd_gateway_heap_trims_total",
         "Times freed heap memory was returned to the kernel after connections fell.",
         Type::kCounter, &heap_trims);
  Expose(registry, "imapd_gateway_search_limit_refusals_total",
         "SEARCH commands answered NO [LIMIT] for naming too many message ranges.", Type::kCounter,
         &search_limit_refusals);
  Expose(registry, "imapd_gateway_changes_coalesced_total",
         "Unreported flag changes replaced by a later change of the same message.", Type::kCounter,
         &changes_coalesced);
  Expose(registry, "imapd_gateway_change_queue_overflows_total",
         "Sessions ended with BYE because too many changes waited to be reported.", Type::kCounter,
         &change_queue_overflows);
  Expose(registry, "imapd_gateway_append_too_slow_total",
         "APPEND connections ended because message data arrived below the minimum rate.",
         Type::kCounter, &append_too_slow);
  Expose(registry, "imapd_gateway_sessions_compressed",
         "Sessions with COMPRESS=DEFLATE active (bounded by --max-compressed-connections).",
         Type::kGauge, &sessions_compressed);
  Expose(registry, "imapd_gateway_compress_refused_limit_total",
         "COMPRESS commands answered NO [LIMIT] at --max-compressed-connections.", Type::kCounter,
         &compress_refused_limit);
  Expose(registry, "imapd_gateway_compress_input_errors_total",
         "Connections closed for invalid or over-expanding compressed input.", Type::kCounter,
         &compress_input_errors);
  Expose(registry, "imapd_gateway_fetch_cache_hits_total",
         "Messages a FETCH answered from the gateway's cache, without the mailbox service.",
         Type::kCounter, &fetch_cache_hits);
  Expose(registry, "imapd_gateway_fetch_cache_misses_total",
         "Messages a FETCH had to ask the mailbox service for.", Type::kCounter,
         &fetch_cache_misses);
  Expose(registry, "imapd_gateway_fetch_cache_evictions_total",
         "Messages dropped from the FETCH cache to stay within --fetch-cache-size.", Type::kCounter,
         &fetch_cache_evictions);
  Expose(registry, "imapd_gateway_fetch_cache_bytes",
         "Bytes held by the FETCH caches of all workers (bounded by --fetch-cache-size each).",
         Type::kGauge, &fetch_cache_bytes);
  Expose(registry, "imapd_gateway_fetch_cache_entries", "Messages held by the FETCH caches.",
         Type::kGauge, &fetch_cache_entries);
  registry.AddCallback("imapd_gateway_ready",
                       "1 while /readyz answers 200 (serving and not draining), else 0.",
                       Type::kGauge, [this] { return ready.load() && !draining.load() ? 1 : 0; });
  mailbox::metrics::AddProcessMetrics(registry);
}

Metrics::~Metrics() = default;

mailbox::metrics::RpcMetrics& Metrics::StoreRpcs() {
  std::call_once(store_rpcs_once_, [this] {
    store_rpcs_ = std::make_unique<mailbox::metrics::RpcMetrics>(
        registry, "imapd_gateway_store_rpc_duration_seconds", "imapd_gateway_store_rpcs_total",
        "Client side (gateway to mailbox service):",
        std::vector<std::string>{"mailbox.v1.Mailbox"});
  });
  return *store_rpcs_;
}

}  // namespace gateway::ops
