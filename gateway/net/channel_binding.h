// TLS channel bindings (RFC 5056) for SCRAM-SHA-256-PLUS: what ties a SASL
// exchange to the TLS connection it runs on, so that a man in the middle holding
// two TLS connections cannot relay it.
//
// * TLS 1.3: "tls-exporter" (RFC 9266 §2), the 32-octet exporter value with label
//   "EXPORTER-Channel-Binding" and an empty context (RFC 8446 §7.5).
// * TLS 1.2: "tls-unique" (RFC 5929 §3.1), the first Finished message of the latest
//   handshake: the client's in a full handshake, the server's in an abbreviated
//   (resumed) one. Offered only when the Extended Master Secret extension (RFC
//   7627) was negotiated: without it the triple-handshake attack gives two
//   connections the same tls-unique value (RFC 7627 §1, RFC 9266 §1).
//
// Compiles against OpenSSL 3 and BoringSSL.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace gateway::net {

struct ChannelBinding {
  std::string type;  // "tls-exporter", "tls-unique", or empty: none on this connection
  std::string data;
};

// The binding of the completed handshake of server-side `ssl`; empty for nullptr, an
// unfinished handshake, another TLS version, or TLS 1.2 without Extended Master
// Secret.
ChannelBinding ServerChannelBinding(SSL* ssl);

}  // namespace gateway::net
