// Credentials of a channel to the mailbox service: plaintext, TLS, or TLS with a
// client certificate (mutual TLS), from files that are watched and reloaded.
//
// The gateway and mailbox-admin both connect this way. The link carries passwords,
// session tokens and (from mailbox-admin) the admin token, so once the service runs on
// another host it must be TLS; with a client certificate the service also trusts the
// client IP a gateway reports for login throttling (docs/security.md, "The
// gateway-service link").
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace mailbox::client {

struct ChannelTlsOptions {
  // CA bundle that signs the service's certificate. Empty: a plaintext link (for
  // loopback and unix sockets only; the service refuses other plaintext listeners).
  std::string ca_file;
  // This client's certificate chain and key, both or neither; needs ca_file.
  std::string cert_file;
  std::string key_file;
  // The name the service's certificate must carry, when it differs from the host in
  // the target (e.g. the target is an IP address and the certificate names a host).
  std::string server_name;
  // How often gRPC re-reads the files; a renewed certificate or CA is used for the
  // connections made after that.
  int reload_seconds = 60;

  bool tls() const { return !ca_file.empty(); }
};

// Checks the options and the files (readable, PEM, key matching the certificate), so
// a bad path is an error at start rather than failed handshakes later. Plaintext
// options (no file at all) give grpc::InsecureChannelCredentials().
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsOptions& options);

// Adds what the channel needs besides its credentials (the expected server name).
void ApplyChannelTlsArgs(const ChannelTlsOptions& options, grpc::ChannelArguments* args);

}  // namespace mailbox::client
