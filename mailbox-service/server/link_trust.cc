#include "mailbox-service/server/link_trust.h"

#include <openssl/crypto.h>

#include "absl/strings/str_replace.h"
#include "grpc/grpc_security_constants.h"

namespace mailbox::server {

bool IsTlsLink(const grpc::AuthContext* auth) {
  if (auth == nullptr) {
    return false;
  }
  for (const grpc::string_ref& type :
       auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    std::string_view value(type.data(), type.size());
    if (value == GRPC_SSL_TRANSPORT_SECURITY_TYPE || value == GRPC_TLS_TRANSPORT_SECURITY_TYPE) {
      return true;
    }
  }
  return false;
}

bool IsPlaintextLink(const grpc::AuthContext* auth) {
  if (auth == nullptr) {
    return false;
  }
  for (const grpc::string_ref& type :
       auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    if (std::string_view(type.data(), type.size()) == kInsecureTransportSecurityType) {
      return true;
    }
  }
  return false;
}

bool HasVerifiedClientCertificate(const grpc::AuthContext* auth) {
  // gRPC sets a peer identity (SAN or CN) and the PEM property only for a certificate
  // the peer presented; the listener asks for certificates only in the modes that
  // verify them (server_credentials.cc), so a presented one has been verified.
  return IsTlsLink(auth) && auth->IsPeerAuthenticated() &&
         !auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME).empty();
}

std::string PeerHost(std::string_view peer) {
  // Newer gRPC releases percent-encode the brackets and colons of IPv6 peers.
  std::string decoded = absl::StrReplaceAll(std::string(peer), {{"%5B", "["},
                                                                {"%5D", "]"},
                                                                {"%3A", ":"},
                                                                {"%5b", "["},
                                                                {"%5d", "]"},
                                                                {"%3a", ":"},
                                                                {"%25", "%"}});
  std::string_view rest = decoded;
  if (rest.starts_with("ipv4:")) {
    rest.remove_prefix(5);
    size_t colon = rest.rfind(':');
    return std::string(colon == std::string_view::npos ? rest : rest.substr(0, colon));
  }
  if (rest.starts_with("ipv6:")) {
    rest.remove_prefix(5);
    if (rest.starts_with("[")) {
      size_t close = rest.find(']');
      if (close != std::string_view::npos) {
        return std::string(rest.substr(1, close - 1));
      }
    }
    return std::string(rest);
  }
  return decoded;
}

bool GatewayTokenMatches(std::optional<std::string_view> presented, std::string_view expected) {
  return presented.has_value() && !expected.empty() && presented->size() == expected.size() &&
         CRYPTO_memcmp(presented->data(), expected.data(), expected.size()) == 0;
}

std::string ThrottleClientIp(const grpc::AuthContext* auth, std::string_view peer,
                             const std::string& claimed, bool token_matches) {
  // Fails closed: a link that is neither TLS with a verified certificate nor carries
  // the token (plaintext, a transport gRPC might add) does not get to name the client.
  if (token_matches || HasVerifiedClientCertificate(auth)) {
    return claimed;
  }
  return PeerHost(peer);
}

}  // namespace mailbox::server
