#include "gateway/net/channel_binding.h"

#include <cstring>

namespace gateway::net {
namespace {

constexpr char kExporterLabel[] = "EXPORTER-Channel-Binding";
constexpr size_t kExporterBytes = 32;  // RFC 9266 §2

}  // namespace

ChannelBinding ServerChannelBinding(SSL* ssl) {
  ChannelBinding binding;
  if (ssl == nullptr || !SSL_is_init_finished(ssl)) {
    return binding;
  }
  const int version = SSL_version(ssl);
  if (version == TLS1_3_VERSION) {
    unsigned char out[kExporterBytes];
    if (SSL_export_keying_material(ssl, out, sizeof(out), kExporterLabel,
                                   std::strlen(kExporterLabel), nullptr, 0,
                                   /*use_context=*/0) == 1) {
      binding.type = "tls-exporter";
      binding.data.assign(reinterpret_cast<const char*>(out), sizeof(out));
    }
    return binding;
  }
  if (version == TLS1_2_VERSION && SSL_get_extms_support(ssl) == 1) {
    // RFC 5929 §3.1: the first Finished of the handshake. A full handshake's
    // first is the client's (the peer's, here); a resumed one's, the server's.
    unsigned char finished[64];
    const size_t size = SSL_session_reused(ssl)
                            ? SSL_get_finished(ssl, finished, sizeof(finished))
                            : SSL_get_peer_finished(ssl, finished, sizeof(finished));
    if (size > 0 && size <= sizeof(finished)) {
      binding.type = "tls-unique";
      binding.data.assign(reinterpret_cast<const char*>(finished), size);
    }
  }
  return binding;
}

}  // namespace gateway::net
