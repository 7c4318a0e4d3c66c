#include "storage-client/channel_credentials.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "storage-client/tls_files.h"

namespace mailbox::client {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsOptions& options) {
  const bool has_identity = !options.cert_file.empty() || !options.key_file.empty();
  if (!options.tls()) {
    if (has_identity || !options.server_name.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate or server name for the mailbox service link needs the CA "
          "file that signs the service's certificate");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "the client certificate and key of the mailbox service link go together: give both "
        "or neither");
  }
  if (options.reload_seconds < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the link's certificate reload interval must be at least 1 s, got ",
                     options.reload_seconds));
  }
  if (auto status = tls::CheckCertificateFile(options.ca_file, "CA file"); !status.ok()) {
    return status;
  }
  if (has_identity) {
    if (auto status = tls::CheckKeyPair(options.cert_file, options.key_file, "client certificate");
        !status.ok()) {
      return status;
    }
  }
  // The provider re-reads the files every reload_seconds on its own thread; a
  // renewed client certificate or CA applies to the handshakes after that.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.ca_file,
      static_cast<unsigned>(options.reload_seconds));
  grpc::experimental::TlsChannelCredentialsOptions tls_options;
  tls_options.set_certificate_provider(provider);
  tls_options.watch_root_certs();
  if (has_identity) {
    tls_options.watch_identity_key_cert_pairs();
  }
  // The server's chain is verified against ca_file and its name against the target's
  // host (or server_name): gRPC's default verifier on the client side.
  tls_options.set_verify_server_certs(true);
  auto credentials = grpc::experimental::TlsCredentials(tls_options);
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("gRPC refused the TLS options of the mailbox service link");
  }
  return credentials;
}

void ApplyChannelTlsArgs(const ChannelTlsOptions& options, grpc::ChannelArguments* args) {
  if (options.tls() && !options.server_name.empty()) {
    args->SetSslTargetNameOverride(options.server_name);
  }
}

}  // namespace mailbox::client
