// Test certificates made with the openssl command: a CA, and server or client
// certificates it signs. For tests of the gateway-service link only.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace mailbox::testing {

struct CertFiles {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (unencrypted)
};

// A self-signed CA named `name`, written to dir/name.pem and dir/name.key.
absl::StatusOr<CertFiles> MakeCa(const std::string& dir, const std::string& name);

// A certificate for `name` signed by `ca`, valid for server and client use, with
// subjectAltName DNS:localhost and IP:127.0.0.1; written to dir/name.pem and .key.
absl::StatusOr<CertFiles> MakeLeaf(const std::string& dir, const std::string& name,
                                   const CertFiles& ca);

}  // namespace mailbox::testing
