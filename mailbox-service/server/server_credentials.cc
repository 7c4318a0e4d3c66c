#include "mailbox-service/server/server_credentials.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "storage-client/tls_files.h"

namespace mailbox::server {

std::vector<config::Setting> ServerTlsSettings() {
  return {
      {"tls-cert-file", "MAILBOX_TLS_CERT_FILE", "",
       "PEM certificate chain of the gRPC listener; with --tls-key-file turns TLS on "
       "(reloaded when it changes)"},
      {"tls-key-file", "MAILBOX_TLS_KEY_FILE", "", "PEM private key of the gRPC listener"},
      {"tls-client-ca-file", "MAILBOX_TLS_CLIENT_CA_FILE", "",
       "PEM CA bundle that signs the gateways' client certificates"},
      {"tls-require-client-cert", "MAILBOX_TLS_REQUIRE_CLIENT_CERT", "true",
       "refuse TLS handshakes without a client certificate signed by --tls-client-ca-file",
       config::Bool()},
      {"tls-reload-interval", "MAILBOX_TLS_RELOAD_INTERVAL", "1m",
       "how often the certificate, key and client CA files are re-read (whole seconds)",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"insecure-listen", "MAILBOX_INSECURE_LISTEN", "false",
       "allow a plaintext listener on a non-loopback address (passwords and tokens "
       "cross the network in clear)",
       config::Bool()},
      {"grpc-log-lines-per-second", "MAILBOX_GRPC_LOG_LINES_PER_SECOND", "20",
       "at most this many gRPC log lines a second (one per refused handshake), the rest "
       "counted; 0: no bound",
       config::Int(0, 1'000'000)},
      {"tls-reload-seconds", "MAILBOX_TLS_RELOAD_SECONDS", "", "",
       config::RenamedTo("tls-reload-interval")},
  };
}

std::vector<config::Setting> WithServerTlsSettings(std::vector<config::Setting> settings) {
  for (auto& setting : ServerTlsSettings()) {
    settings.push_back(std::move(setting));
  }
  return settings;
}

absl::StatusOr<ServerTlsOptions> ServerTlsFromConfig(const config::Config& config) {
  ServerTlsOptions options;
  options.cert_file = config.Get("tls-cert-file");
  options.key_file = config.Get("tls-key-file");
  options.client_ca_file = config.Get("tls-client-ca-file");
  options.require_client_cert = config.GetBool("tls-require-client-cert");
  options.insecure_listen = config.GetBool("insecure-listen");
  // Both were checked against their rows' ranges (1s..24h, 0..1000000) when parsed.
  options.reload_seconds =
      static_cast<int>(absl::ToInt64Seconds(config.GetDuration("tls-reload-interval")));
  auto log_rate = config.GetInt("grpc-log-lines-per-second");
  if (!log_rate.ok()) {
    return log_rate.status();
  }
  options.grpc_log_lines_per_second = static_cast<int>(*log_rate);
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert-file and --tls-key-file go together");
  }
  if (!options.tls() && !options.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca-file needs TLS: give --tls-cert-file and --tls-key-file too");
  }
  if (options.tls() && options.require_client_cert && options.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-require-client-cert needs --tls-client-ca-file (the CA of the gateways' "
        "certificates); set --tls-require-client-cert=false for TLS without client "
        "certificates");
  }
  return options;
}

bool IsLoopbackListen(std::string_view listen) {
  // A unix socket in the file system is guarded by its file's permissions; an
  // abstract one has none: every process of the host (and of its network namespace)
  // can connect, so it counts as a network address.
  if (listen.starts_with("unix-abstract:")) {
    return false;
  }
  if (listen.starts_with("unix:")) {
    return true;
  }
  // host:port, [v6]:port, or a bare host; an empty host means every address.
  std::string_view host = listen;
  if (host.starts_with("[")) {
    size_t close = host.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    host = host.substr(1, close - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(absl::string_view(host.data(), host.size()), "localhost")) {
    return true;
  }
  std::string host_str(host);
  in_addr v4;
  if (inet_pton(AF_INET, host_str.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host_str.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

std::string ServerTlsOptions::Warning(std::string_view listen) const {
  if (!tls() && !IsLoopbackListen(listen)) {
    return absl::StrCat("warning: listening on ", std::string(listen),
                        " without TLS (--insecure-listen): passwords and tokens (the "
                        "gateway token too, which lets its holder report client IPs) cross "
                        "the network in clear");
  }
  if (tls() && client_ca_file.empty()) {
    return "warning: TLS without --tls-client-ca-file: no caller can be verified, so logins "
           "are throttled by the caller's own address and all users of a gateway share one "
           "throttle";
  }
  return "";
}

absl::Status CheckListenPolicy(std::string_view listen, const ServerTlsOptions& options) {
  if (options.tls() || options.insecure_listen || IsLoopbackListen(listen)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to listen on ", std::string(listen),
      " without TLS: passwords, session tokens, the admin token and the gateway token would "
      "cross the network in clear, for anyone who reaches the address to read or reuse. Give "
      "--tls-cert-file, --tls-key-file and --tls-client-ca-file (see docs/security.md), "
      "listen on a loopback address, or pass --insecure-listen if this network is private"));
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (!options.tls()) {
    return grpc::InsecureServerCredentials();
  }
  if (auto status = tls::CheckKeyPair(options.cert_file, options.key_file, "--tls-cert-file");
      !status.ok()) {
    return status;
  }
  if (!options.client_ca_file.empty()) {
    if (auto status = tls::CheckCertificateFile(options.client_ca_file, "--tls-client-ca-file");
        !status.ok()) {
      return status;
    }
  }
  // Watched files: gRPC re-reads them every reload_seconds and uses what it read for
  // the handshakes after that; connections already made keep their session.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.client_ca_file,
      static_cast<unsigned>(options.reload_seconds));
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (options.client_ca_file.empty()) {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls_options.watch_root_certs();
    // Only the *_AND_VERIFY modes: a certificate the service accepts has always been
    // verified against the client CA, which link_trust.h relies on.
    tls_options.set_cert_request_type(
        options.require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  auto credentials = grpc::experimental::TlsServerCredentials(tls_options);
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("gRPC refused the TLS options of the listener");
  }
  return credentials;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const config::Config& config, ServerTlsOptions* options) {
  auto parsed = ServerTlsFromConfig(config);
  if (!parsed.ok()) {
    return parsed.status();
  }
  *options = *std::move(parsed);
  if (auto status = CheckListenPolicy(config.Get("listen"), *options); !status.ok()) {
    return status;
  }
  return MakeServerCredentials(*options);
}

}  // namespace mailbox::server
