// Checks of the PEM files that secure the gateway-service link, made once at start.
//
// gRPC's file-watching certificate provider only logs a file it cannot use and then
// fails every handshake, so a typo in a path would show up as "unavailable" on the
// first call. These checks turn it into a start-up error that names the file.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace mailbox::tls {

// `path` is readable and holds at least one PEM certificate. `what` names the setting
// in the error ("--store-ca-file").
absl::Status CheckCertificateFile(const std::string& path, const std::string& what);

// `cert_path` holds a certificate chain, `key_path` a private key, and the key belongs
// to the first (leaf) certificate.
absl::Status CheckKeyPair(const std::string& cert_path, const std::string& key_path,
                          const std::string& what);

}  // namespace mailbox::tls
