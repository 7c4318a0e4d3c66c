// Error codes of the network layer. Stream operations report errors as values
// (boost::system::error_code); besides Asio's own codes (eof, timed_out,
// operation_aborted, connection_reset, ...) they use the two categories below.
#pragma once

#include <string>
#include <system_error>

#include "boost/system/error_code.hpp"

namespace gateway::net {

enum class NetErrc {
  // The peer closed the TCP connection without a TLS close_notify (RFC 8446 §6.1).
  // For IMAP this is an ordinary disconnect; treat it like eof.
  kTlsTruncated = 1,
  // The TLS library failed without saying why (no queued error).
  kTlsFailure,
  // Handshake() on a stream that already runs TLS (RFC 3501 §6.2.1: STARTTLS twice).
  kAlreadyTls,
  // An earlier fatal error or Shutdown() left the stream unusable.
  kStreamBroken,
  // StartCompression() on a stream that already compresses (RFC 4978 §3), or
  // Handshake() under compression (TLS must not start inside it).
  kCompressionActive,
  // The peer's compressed data is not valid DEFLATE (Stream::compression_error()
  // says why); the stream is broken.
  kCompressedDataInvalid,
  // The peer's compressed data expands beyond the codec's bound (deflate.h); the
  // stream is broken.
  kCompressedDataTooLarge,
};

// Category of NetErrc values, named "gateway.net".
const boost::system::error_category& NetCategory();
boost::system::error_code MakeErrorCode(NetErrc e);

// Category "tls" whose values are packed OpenSSL/BoringSSL error codes
// (ERR_get_error()); message() is the library's reason string, e.g.
// "error:0A0000C1:SSL routines::no shared cipher".
const boost::system::error_category& TlsCategory();

// True for the errors that mean "the peer is gone": eof, TLS truncation, reset,
// broken pipe, not connected.
bool IsDisconnect(const boost::system::error_code& ec);

// Pops every error queued on this thread by the TLS library and joins their reason
// strings with "; ". Returns "unknown TLS error" if the queue was empty.
std::string DrainTlsErrors();

}  // namespace gateway::net
