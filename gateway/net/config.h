// Network settings of the gateway and how operators set them: every setting has a
// command-line flag, an environment variable and a config-file key (common/config.h),
// each with a documented default. The gateway's main() applies these, then builds the TlsContextProvider and
// the WorkerPool from the result.
//
//   flag                      environment                    default
//   --imaps-listen            IMAPD_IMAPS_LISTEN             0.0.0.0:993
//   --imap-listen             IMAPD_IMAP_LISTEN              0.0.0.0:143
//   --tls-cert-file           IMAPD_TLS_CERT_FILE            (required)
//   --tls-key-file            IMAPD_TLS_KEY_FILE             (required)
//   --workers                 IMAPD_WORKERS                  0 = one per CPU
//   --max-connections         IMAPD_MAX_CONNECTIONS          10000 (0 = unlimited)
//   --max-connections-per-ip  IMAPD_MAX_CONNECTIONS_PER_IP   100 (0 = unlimited)
//   --trusted-proxies         IMAPD_TRUSTED_PROXIES          (none)
//   --proxy-protocol-timeout  IMAPD_PROXY_PROTOCOL_TIMEOUT   5s
//   --proxy-protocol-max-header IMAPD_PROXY_PROTOCOL_MAX_HEADER 1024
//   --listen-backlog          IMAPD_LISTEN_BACKLOG           1024
//   --tls-handshake-timeout   IMAPD_TLS_HANDSHAKE_TIMEOUT    30s
//   --tls-reload-interval     IMAPD_TLS_RELOAD_INTERVAL      1m (0s = only on SIGHUP)
//   --tls-ticket-key-rotation IMAPD_TLS_TICKET_KEY_ROTATION  1h (0s = no session tickets)
//   --accept-backoff          IMAPD_ACCEPT_BACKOFF           100ms
//   --shutdown-grace          IMAPD_SHUTDOWN_GRACE           5s
//   --drain-timeout           IMAPD_DRAIN_TIMEOUT            30s
//
// Listen values are comma-separated "host:port" items, IPv6 in brackets
// ("0.0.0.0:993,[::]:993"); an empty value disables that listener. Durations take
// a unit ("250ms", "30s", "2m"); a bare number is refused.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "gateway/net/listener.h"
#include "gateway/net/log.h"
#include "gateway/net/tls_context.h"

namespace gateway::net {

struct NetConfig {
  std::vector<ListenAddress> imaps_listen = {{"0.0.0.0", 993}};
  std::vector<ListenAddress> imap_listen = {{"0.0.0.0", 143}};
  std::string tls_cert_file;
  std::string tls_key_file;
  std::size_t workers = 0;
  // Sized for a host with 20,000 descriptors: each connection takes one, and the
  // gRPC channels, the operator endpoint and the accept back-off need headroom
  // (docs/security.md, "Connections, TLS and the PROXY protocol").
  std::size_t max_connections = 10'000;
  std::size_t max_connections_per_ip = 100;
  proxy::TrustedNetworks trusted_proxies;
  std::chrono::milliseconds proxy_protocol_timeout{5'000};
  std::size_t proxy_protocol_max_header = 1024;
  int listen_backlog = 1024;
  std::chrono::milliseconds tls_handshake_timeout{30'000};
  std::chrono::milliseconds tls_reload_interval{60'000};
  std::chrono::milliseconds tls_ticket_key_rotation{kDefaultTicketKeyRotation};
  std::chrono::milliseconds accept_backoff{100};
  std::chrono::milliseconds shutdown_grace{5'000};
  std::chrono::milliseconds drain_timeout{30'000};
};

// Sets the setting named by its flag (without "--"). Errors name the setting and say
// what was expected.
absl::Status SetNetOption(NetConfig& config, std::string_view name, std::string_view value);

// The rows above for the settings table of imap-gateway (common/config.h): checked
// there at start, with the same messages as SetNetOption.
std::vector<mailbox::config::Setting> NetSettings();

// The NetConfig of parsed settings (the rows of NetSettings()).
absl::StatusOr<NetConfig> NetConfigFrom(const mailbox::config::Config& config);

// Parses "host:port", "[v6]:port", or a bare host (then `default_port`).
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text,
                                                 uint16_t default_port);

// Checks the combination: at least one listener, certificate and key set.
absl::Status ValidateNetConfig(const NetConfig& config);

TlsFiles TlsFilesOf(const NetConfig& config);
WorkerPoolOptions WorkerPoolOptionsOf(const NetConfig& config, LogSink log = {});

}  // namespace gateway::net
