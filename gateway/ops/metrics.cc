#include "gateway/ops/metrics.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace gateway::ops {
namespace {

void Write(std::ostringstream& out, const char* name, const char* type, const char* help,
           int64_t value) {
  out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
      << name << " " << value << "\n";
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
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

std::string Metrics::Render() const {
  std::ostringstream out;
  Write(out, "imap_connections_open", "gauge", "IMAP connections currently open.",
        connections_open.load());
  Write(out, "imap_connections_total", "counter", "IMAP connections accepted.",
        static_cast<int64_t>(connections_total.load()));
  Write(out, "imap_tls_handshake_failures_total", "counter", "Failed TLS handshakes.",
        static_cast<int64_t>(tls_handshake_failures.load()));
  Write(out, "imap_sessions_authenticated", "gauge", "Sessions past LOGIN/AUTHENTICATE.",
        sessions_authenticated.load());
  Write(out, "imap_sessions_idling", "gauge", "Sessions in IDLE.", sessions_idling.load());
  Write(out, "imap_commands_total", "counter", "IMAP commands received.",
        static_cast<int64_t>(commands_total.load()));
  Write(out, "imap_commands_bad_total", "counter", "Commands answered BAD.",
        static_cast<int64_t>(commands_bad.load()));
  Write(out, "imap_commands_no_total", "counter", "Commands answered NO.",
        static_cast<int64_t>(commands_no.load()));
  Write(out, "imap_auth_failures_total", "counter", "Failed authentications.",
        static_cast<int64_t>(auth_failures.load()));
  Write(out, "imap_store_unavailable_total", "counter",
        "Commands answered NO [UNAVAILABLE] because the mailbox service was unreachable.",
        static_cast<int64_t>(store_unavailable.load()));
  Write(out, "imap_bytes_received_total", "counter", "Bytes read from clients.",
        static_cast<int64_t>(bytes_in.load()));
  Write(out, "imap_bytes_sent_total", "counter", "Bytes written to clients.",
        static_cast<int64_t>(bytes_out.load()));
  Write(out, "imap_tls_certificate_reloads_total", "counter", "Certificate reloads.",
        static_cast<int64_t>(cert_reloads.load()));
  Write(out, "imap_heap_trims_total", "counter",
        "Times freed heap memory was returned to the kernel after connections fell.",
        static_cast<int64_t>(heap_trims.load()));
  Write(out, "imap_search_limit_refusals_total", "counter",
        "SEARCH commands answered NO [LIMIT] for naming too many message ranges.",
        static_cast<int64_t>(search_limit_refusals.load()));
  Write(out, "imap_changes_coalesced_total", "counter",
        "Unreported flag changes replaced by a later change of the same message.",
        static_cast<int64_t>(changes_coalesced.load()));
  Write(out, "imap_change_queue_overflows_total", "counter",
        "Sessions ended with BYE because too many changes waited to be reported.",
        static_cast<int64_t>(change_queue_overflows.load()));
  out << "# HELP imap_connections_refused_total Connections refused before a session: "
         "over --max-connections, over --max-connections-per-ip, or a trusted proxy's "
         "connection without a valid PROXY header.\n"
         "# TYPE imap_connections_refused_total counter\n"
      << "imap_connections_refused_total{reason=\"max_connections\"} "
      << refused_max_connections.load() << "\n"
      << "imap_connections_refused_total{reason=\"max_connections_per_ip\"} "
      << refused_per_ip.load() << "\n"
      << "imap_connections_refused_total{reason=\"proxy_header\"} "
      << refused_proxy_header.load() << "\n";
  Write(out, "imap_append_too_slow_total", "counter",
        "APPEND connections ended because message data arrived below the minimum rate.",
        static_cast<int64_t>(append_too_slow.load()));
  Write(out, "imap_sessions_compressed", "gauge",
        "Sessions with COMPRESS=DEFLATE active (bounded by --max-compressed-connections).",
        sessions_compressed.load());
  Write(out, "imap_compress_refused_limit_total", "counter",
        "COMPRESS commands answered NO [LIMIT] at --max-compressed-connections.",
        static_cast<int64_t>(compress_refused_limit.load()));
  Write(out, "imap_compress_input_errors_total", "counter",
        "Connections closed for invalid or over-expanding compressed input.",
        static_cast<int64_t>(compress_input_errors.load()));
  out << "# HELP imap_family_commands_total IMAP commands run, per command family (UID "
         "FETCH counts as FETCH).\n# TYPE imap_family_commands_total counter\n";
  for (size_t i = 0; i < kCommandFamilies.size(); ++i) {
    if (uint64_t n = family_commands[i].load(std::memory_order_relaxed); n != 0) {
      out << "imap_family_commands_total{command=\"" << kCommandFamilies[i] << "\"} " << n
          << "\n";
    }
  }
  out << "# HELP imap_store_calls_total Calls to the mailbox service (unary RPCs and "
         "streams) made by IMAP commands, per command family; divided by "
         "imap_family_commands_total it is the calls per command.\n"
         "# TYPE imap_store_calls_total counter\n";
  for (size_t i = 0; i < kCommandFamilies.size(); ++i) {
    if (family_commands[i].load(std::memory_order_relaxed) != 0) {
      out << "imap_store_calls_total{command=\"" << kCommandFamilies[i] << "\"} "
          << family_store_calls[i].load(std::memory_order_relaxed) << "\n";
    }
  }
  Write(out, "imap_fetch_cache_hits_total", "counter",
        "Messages a FETCH answered from the gateway's cache, without the mailbox service.",
        static_cast<int64_t>(fetch_cache_hits.load()));
  Write(out, "imap_fetch_cache_misses_total", "counter",
        "Messages a FETCH had to ask the mailbox service for.",
        static_cast<int64_t>(fetch_cache_misses.load()));
  Write(out, "imap_fetch_cache_evictions_total", "counter",
        "Messages dropped from the FETCH cache to stay within --fetch-cache-size.",
        static_cast<int64_t>(fetch_cache_evictions.load()));
  Write(out, "imap_fetch_cache_bytes", "gauge",
        "Bytes held by the FETCH caches of all workers (bounded by --fetch-cache-size each).",
        fetch_cache_bytes.load());
  Write(out, "imap_fetch_cache_entries", "gauge", "Messages held by the FETCH caches.",
        fetch_cache_entries.load());
  Write(out, "process_resident_memory_bytes", "gauge", "Resident set size.", ResidentBytes());
  return out.str();
}

}  // namespace gateway::ops
