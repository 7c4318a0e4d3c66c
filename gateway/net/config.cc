#include "gateway/net/config.h"

#include <charconv>
#include <limits>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "boost/asio/ip/address.hpp"

namespace gateway::net {
namespace {

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(std::string_view name, std::string_view value, std::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("--", Absl(name), "=", Absl(value),
                                                 ": expected ", Absl(want)));
}

template <typename T>
absl::Status ParseNumber(std::string_view name, std::string_view value, T min, T max,
                         T& out) {
  T parsed{};
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (ec != std::errc() || end != value.data() + value.size() || parsed < min ||
      parsed > max) {
    return Invalid(name, value,
                   absl::StrCat("an integer from ", min, " to ", max));
  }
  out = parsed;
  return absl::OkStatus();
}

absl::Status ParseMillis(std::string_view name, std::string_view value, bool allow_zero,
                         std::chrono::milliseconds& out) {
  // One duration syntax for every binary (common/config.h): a bare number is refused.
  absl::StatusOr<absl::Duration> parsed = mailbox::config::ParseDuration(value);
  absl::Duration duration = parsed.ok() ? *parsed : absl::ZeroDuration();
  if (!parsed.ok() || duration < absl::ZeroDuration() ||
      (!allow_zero && duration == absl::ZeroDuration()) || duration > absl::Hours(24 * 365)) {
    return Invalid(name, value,
                   allow_zero ? "a duration such as 250ms, 30s or 2m (0s allowed)"
                              : "a positive duration such as 250ms, 30s or 2m");
  }
  out = absl::ToChronoMilliseconds(duration);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ListenAddress>> ParseListenList(std::string_view name,
                                                           std::string_view value,
                                                           uint16_t default_port) {
  std::vector<ListenAddress> out;
  for (absl::string_view item : absl::StrSplit(Absl(value), ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    absl::StatusOr<ListenAddress> address =
        ParseListenAddress(std::string_view(item.data(), item.size()), default_port);
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", Absl(name), ": ", address.status().message()));
    }
    out.push_back(*std::move(address));
  }
  return out;
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text, uint16_t default_port) {
  std::string_view host = text;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Absl(text), "': missing ']' after an IPv6 address"));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("'", Absl(text), "': expected ':port' after ']'"));
      }
      port_text = rest.substr(1);
    }
  } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", Absl(text), "': write IPv6 addresses in brackets, e.g. [::]:993"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  ListenAddress out;
  out.host = std::string(host);
  out.port = default_port;
  boost::system::error_code ec;
  boost::asio::ip::make_address(out.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", Absl(text), "': '", out.host, "' is not an IP address"));
  }
  if (!port_text.empty() || (text.size() > 0 && text.back() == ':')) {
    unsigned port = 0;
    auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(),
                                       port);
    if (perr != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", Absl(text), "': port must be a number from 0 to 65535"));
    }
    out.port = static_cast<uint16_t>(port);
  }
  return out;
}

absl::Status SetNetOption(NetConfig& config, std::string_view name, std::string_view value) {
  if (name == "imaps-listen" || name == "imap-listen") {
    const bool imaps = name == "imaps-listen";
    absl::StatusOr<std::vector<ListenAddress>> list =
        ParseListenList(name, value, imaps ? 993 : 143);
    if (!list.ok()) {
      return list.status();
    }
    (imaps ? config.imaps_listen : config.imap_listen) = *std::move(list);
    return absl::OkStatus();
  }
  if (name == "tls-cert-file") {
    config.tls_cert_file = std::string(value);
    return absl::OkStatus();
  }
  if (name == "tls-key-file") {
    config.tls_key_file = std::string(value);
    return absl::OkStatus();
  }
  if (name == "workers") {
    return ParseNumber<std::size_t>(name, value, 0, 1024, config.workers);
  }
  if (name == "max-connections") {
    return ParseNumber<std::size_t>(name, value, 0, 100'000'000, config.max_connections);
  }
  if (name == "max-connections-per-ip") {
    return ParseNumber<std::size_t>(name, value, 0, 100'000'000, config.max_connections_per_ip);
  }
  if (name == "trusted-proxies") {
    std::string error;
    std::optional<proxy::TrustedNetworks> networks =
        proxy::TrustedNetworks::Parse(value, &error);
    if (!networks.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", Absl(name), "=", Absl(value), ": ", error));
    }
    config.trusted_proxies = *std::move(networks);
    return absl::OkStatus();
  }
  if (name == "proxy-protocol-timeout") {
    return ParseMillis(name, value, false, config.proxy_protocol_timeout);
  }
  if (name == "proxy-protocol-max-header") {
    // 232: the fixed part and the largest address block (AF_UNIX, PROXY §2.2);
    // 65551: the most the 16-bit length field can announce.
    return ParseNumber<std::size_t>(name, value, 232, 65'551, config.proxy_protocol_max_header);
  }
  if (name == "listen-backlog") {
    return ParseNumber<int>(name, value, 1, 1 << 20, config.listen_backlog);
  }
  if (name == "tls-handshake-timeout") {
    return ParseMillis(name, value, false, config.tls_handshake_timeout);
  }
  if (name == "tls-reload-interval") {
    return ParseMillis(name, value, true, config.tls_reload_interval);
  }
  if (name == "tls-ticket-key-rotation") {
    return ParseMillis(name, value, true, config.tls_ticket_key_rotation);
  }
  if (name == "accept-backoff") {
    return ParseMillis(name, value, false, config.accept_backoff);
  }
  if (name == "shutdown-grace") {
    return ParseMillis(name, value, true, config.shutdown_grace);
  }
  if (name == "drain-timeout") {
    return ParseMillis(name, value, true, config.drain_timeout);
  }
  return absl::NotFoundError(absl::StrCat("unknown network option --", Absl(name)));
}

std::vector<mailbox::config::Setting> NetSettings() {
  namespace config = mailbox::config;
  // Values whose syntax only SetNetOption knows are checked by it.
  auto check = [](const char* name) {
    return config::String([name](std::string_view value) {
      NetConfig scratch;
      absl::Status status = SetNetOption(scratch, name, value);
      // SetNetOption's message starts with the flag; the caller names it already.
      absl::string_view message = status.message();
      if (size_t colon = message.find(": "); colon != absl::string_view::npos) {
        message.remove_prefix(colon + 2);
      }
      return status.ok() ? status : absl::InvalidArgumentError(message);
    });
  };
  const absl::Duration ms = absl::Milliseconds(1);
  const absl::Duration year = absl::Hours(24 * 365);
  return {
      {"imaps-listen", "IMAPD_IMAPS_LISTEN", "0.0.0.0:993",
       "implicit-TLS (IMAPS) listen addresses, comma-separated; empty disables",
       check("imaps-listen")},
      {"imap-listen", "IMAPD_IMAP_LISTEN", "0.0.0.0:143",
       "plain IMAP + STARTTLS listen addresses, comma-separated; empty disables",
       check("imap-listen")},
      {"tls-cert-file", "IMAPD_TLS_CERT_FILE", "",
       "PEM certificate chain, leaf first; reloaded when it changes (required)"},
      {"tls-key-file", "IMAPD_TLS_KEY_FILE", "",
       "PEM private key; reloaded when it changes (required)"},
      {"workers", "IMAPD_WORKERS", "0", "worker threads (0 = one per CPU)",
       config::Int(0, 1024)},
      {"max-connections", "IMAPD_MAX_CONNECTIONS", "10000",
       "open connections across all workers; more are refused (0 = unlimited)",
       config::Int(0, 100'000'000)},
      {"max-connections-per-ip", "IMAPD_MAX_CONNECTIONS_PER_IP", "100",
       "open connections from one client address (the PROXY header's when one is "
       "accepted); more are refused (0 = unlimited)",
       config::Int(0, 100'000'000)},
      {"trusted-proxies", "IMAPD_TRUSTED_PROXIES", "",
       "comma-separated address ranges (10.0.0.0/8, 192.0.2.7, fd00::/8) whose connections "
       "must start with a PROXY protocol v1/v2 header naming the client",
       check("trusted-proxies")},
      {"proxy-protocol-timeout", "IMAPD_PROXY_PROTOCOL_TIMEOUT", "5s",
       "time a trusted proxy has to send the PROXY header", config::Duration(ms, year)},
      // 232: the fixed part and the largest address block (AF_UNIX, PROXY §2.2);
      // 65551: the most the 16-bit length field can announce.
      {"proxy-protocol-max-header", "IMAPD_PROXY_PROTOCOL_MAX_HEADER", "1024",
       "largest PROXY protocol v2 header accepted, in octets (v1 is at most 107)",
       config::Size(232, 65'551)},
      {"listen-backlog", "IMAPD_LISTEN_BACKLOG", "1024", "listen(2) backlog per acceptor",
       config::Int(1, 1 << 20)},
      {"tls-handshake-timeout", "IMAPD_TLS_HANDSHAKE_TIMEOUT", "30s",
       "time allowed for a TLS handshake, including the wait for the ClientHello",
       config::Duration(ms, year)},
      {"tls-reload-interval", "IMAPD_TLS_RELOAD_INTERVAL", "1m",
       "how often to check the certificate files for changes (0s = only on SIGHUP)",
       config::Duration()},
      {"tls-ticket-key-rotation", "IMAPD_TLS_TICKET_KEY_ROTATION", "1h",
       "how often the session-ticket key is replaced; the previous one is still accepted "
       "(0s = no session tickets)",
       config::Duration()},
      {"accept-backoff", "IMAPD_ACCEPT_BACKOFF", "100ms",
       "pause of an acceptor after running out of descriptors", config::Duration(ms, year)},
      {"shutdown-grace", "IMAPD_SHUTDOWN_GRACE", "5s",
       "on SIGTERM or a drain request, how long /readyz fails while the listeners still "
       "accept, so a load balancer stops sending clients before sessions are ended",
       config::Duration()},
      {"drain-timeout", "IMAPD_DRAIN_TIMEOUT", "30s",
       "after the grace period, how long sessions may take to reach a safe point and end "
       "(BYE [UNAVAILABLE]) before they are closed",
       config::Duration()},
  };
}

absl::StatusOr<NetConfig> NetConfigFrom(const mailbox::config::Config& config) {
  NetConfig out;
  for (const mailbox::config::Setting& setting : NetSettings()) {
    std::string value = config.Get(setting.name);
    if (setting.kind.type == mailbox::config::Type::kSize) {
      value = absl::StrCat(config.GetSize(setting.name));  // SetNetOption takes octets
    }
    if (absl::Status status = SetNetOption(out, setting.name, value); !status.ok()) {
      return status;
    }
  }
  return out;
}

absl::Status ValidateNetConfig(const NetConfig& config) {
  if (config.imaps_listen.empty() && config.imap_listen.empty()) {
    return absl::InvalidArgumentError(
        "no listeners: set --imaps-listen and/or --imap-listen");
  }
  // STARTTLS needs the certificate too: plaintext LOGIN is refused by default
  // (RFC 9051 §11.1), so a server without TLS could log nobody in.
  if (config.tls_cert_file.empty() || config.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file (IMAPD_TLS_CERT_FILE, IMAPD_TLS_KEY_FILE) "
        "are required");
  }
  return absl::OkStatus();
}

TlsFiles TlsFilesOf(const NetConfig& config) {
  return TlsFiles{config.tls_cert_file, config.tls_key_file};
}

WorkerPoolOptions WorkerPoolOptionsOf(const NetConfig& config, LogSink log) {
  WorkerPoolOptions options;
  for (const ListenAddress& address : config.imaps_listen) {
    options.listeners.push_back({address, ListenerKind::kImplicitTls});
  }
  for (const ListenAddress& address : config.imap_listen) {
    options.listeners.push_back({address, ListenerKind::kStartTls});
  }
  options.workers = config.workers;
  options.max_connections = config.max_connections;
  options.max_connections_per_ip = config.max_connections_per_ip;
  options.trusted_proxies = config.trusted_proxies;
  options.proxy_header_timeout = config.proxy_protocol_timeout;
  options.proxy_header_max_length = config.proxy_protocol_max_header;
  options.backlog = config.listen_backlog;
  options.accept_backoff = config.accept_backoff;
  options.log = std::move(log);
  return options;
}

}  // namespace gateway::net
