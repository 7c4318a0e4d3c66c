#include "gateway/net/errors.h"

#include <openssl/err.h>

#include <cstdint>

#include "boost/asio/error.hpp"

namespace gateway::net {
namespace {

class NetCategoryImpl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "gateway.net"; }
  std::string message(int ev) const override {
    switch (static_cast<NetErrc>(ev)) {
      case NetErrc::kTlsTruncated:
        return "peer closed the connection without a TLS close_notify";
      case NetErrc::kTlsFailure:
        return "TLS failure without a reason from the TLS library";
      case NetErrc::kAlreadyTls:
        return "TLS is already active on this connection";
      case NetErrc::kStreamBroken:
        return "the stream was shut down or failed earlier";
      case NetErrc::kCompressionActive:
        return "compression is already active on this connection";
      case NetErrc::kCompressedDataInvalid:
        return "the peer sent invalid compressed data";
      case NetErrc::kCompressedDataTooLarge:
        return "the peer's compressed data expands beyond the allowed ratio";
    }
    return "unknown gateway.net error";
  }
};

class TlsCategoryImpl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int ev) const override {
    char buffer[256];
    ERR_error_string_n(static_cast<uint32_t>(ev), buffer, sizeof(buffer));
    return buffer;
  }
};

}  // namespace

const boost::system::error_category& NetCategory() {
  static const NetCategoryImpl category;
  return category;
}

boost::system::error_code MakeErrorCode(NetErrc e) {
  return boost::system::error_code(static_cast<int>(e), NetCategory());
}

const boost::system::error_category& TlsCategory() {
  static const TlsCategoryImpl category;
  return category;
}

bool IsDisconnect(const boost::system::error_code& ec) {
  namespace error = boost::asio::error;
  return ec == error::eof || ec == MakeErrorCode(NetErrc::kTlsTruncated) ||
         ec == error::connection_reset || ec == error::broken_pipe ||
         ec == error::not_connected || ec == error::connection_aborted;
}

std::string DrainTlsErrors() {
  std::string out;
  char buffer[256];
  while (auto packed = ERR_get_error()) {
    ERR_error_string_n(packed, buffer, sizeof(buffer));
    if (!out.empty()) {
      out += "; ";
    }
    out += buffer;
  }
  if (out.empty()) {
    out = "unknown TLS error";
  }
  return out;
}

}  // namespace gateway::net
