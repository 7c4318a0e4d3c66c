// How the mailbox service listens: plaintext on loopback (the embedded default), or
// TLS with client certificates from files that are watched and reloaded.
//
// The gateway-service link carries passwords, the admin token and the gateway token,
// and the service trusts the client IP a verified gateway reports (link_trust.h). A plaintext
// listener anyone else can reach would give all of that away, so the service refuses
// to listen without TLS on an address other than loopback unless the operator says
// --insecure-listen (docs/security.md, "The gateway-service link").
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "common/config.h"

namespace mailbox::server {

struct ServerTlsOptions {
  std::string cert_file;       // the service's certificate chain, leaf first
  std::string key_file;        // its private key
  std::string client_ca_file;  // CA bundle that signs the gateways' client certificates
  // Refuse handshakes without a client certificate. Off, a caller without one may
  // still connect (mailbox-admin with only the CA: the admin token is its credential),
  // but its Authenticate calls are throttled by its own address.
  bool require_client_cert = true;
  int reload_seconds = 60;
  bool insecure_listen = false;  // allow plaintext on a non-loopback address
  // gRPC logs a line per refused handshake; at most this many a second reach stderr
  // (grpc_log_limit.h). 0: no bound.
  int grpc_log_lines_per_second = 20;

  bool tls() const { return !cert_file.empty() || !key_file.empty(); }
  // What the operator should know about a setup that works but weakens the link
  // (empty if nothing): plaintext off loopback, or TLS that cannot tell gateways apart.
  std::string Warning(std::string_view listen) const;
};

// The flags (and environment variables) of the link, to add to the service's own.
std::vector<config::Setting> ServerTlsSettings();
// `settings` followed by ServerTlsSettings().
std::vector<config::Setting> WithServerTlsSettings(std::vector<config::Setting> settings);

// Reads the settings of ServerTlsSettings() and checks them against each other.
absl::StatusOr<ServerTlsOptions> ServerTlsFromConfig(const config::Config& config);

// True for addresses only this host can reach: 127.0.0.0/8, [::1], localhost and
// unix sockets in the file system ("unix:/path"). Not "unix-abstract:name": such a
// socket has no file permissions, so it is treated like a network address.
bool IsLoopbackListen(std::string_view listen);

// Refuses a plaintext listener on a non-loopback address unless insecure_listen.
absl::Status CheckListenPolicy(std::string_view listen, const ServerTlsOptions& options);

// Checks the files (readable, PEM, key matching the certificate) and builds the
// listener's credentials: insecure without TLS, else TLS whose certificate, key and
// client CA gRPC re-reads every reload_seconds (new connections see new files).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// All of the above from the service's configuration: the options (into *options), the
// listen policy for --listen, and the credentials.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenerCredentials(
    const config::Config& config, ServerTlsOptions* options);

}  // namespace mailbox::server
