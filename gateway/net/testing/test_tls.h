// Test helpers for gateway/net: self-signed certificates made with the TLS library's
// own API (no openssl binary needed), and a plain blocking TLS client to run in a
// thread against a server coroutine. Compiles against OpenSSL 3 and BoringSSL.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/net/tls_context.h"

namespace gateway::net::testing {

// Writes a fresh EC P-256 key and a self-signed certificate with subject CN
// `common_name` to `<dir>/<stem>.crt` and `<dir>/<stem>.key`. Aborts the test binary
// on failure (test setup cannot go on without them).
TlsFiles WriteSelfSignedCert(const std::string& dir, const std::string& stem,
                             const std::string& common_name);

// $TEST_TMPDIR, or /tmp when run outside Bazel.
std::string TestTmpDir();

struct ClientOptions {
  ClientOptions(int min = TLS1_2_VERSION, int max = TLS1_3_VERSION, std::string ciphers = "")
      : min_version(min), max_version(max), tls12_ciphers(std::move(ciphers)) {}
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string tls12_ciphers;  // empty: library default
  std::vector<std::string> alpn;  // protocols to offer (RFC 7301); empty: no ALPN
  SSL_SESSION* session = nullptr;  // to resume (not owned)
};

// A blocking TLS (or plain) client over one TCP connection to 127.0.0.1 or ::1.
// Not thread-safe; meant to run in its own std::thread.
class BlockingClient {
 public:
  BlockingClient() = default;
  BlockingClient(const BlockingClient&) = delete;
  BlockingClient& operator=(const BlockingClient&) = delete;
  ~BlockingClient();

  // TCP connect; false on failure. A non-empty `source` binds the local address
  // first (any 127.0.0.0/8 address is loopback, so tests can be "other clients").
  bool Connect(uint16_t port, const std::string& host = "127.0.0.1",
               const std::string& source = "");
  // Client handshake on the connected socket. Returns "" on success, else the reason.
  std::string StartTls(const ClientOptions& options = {});

  // Writes all of `data` (TLS if started, else plain). False on error.
  bool WriteAll(std::string_view data);
  // Reads exactly `n` bytes; returns fewer if the connection ends first.
  std::string ReadExactly(size_t n);
  // Reads one byte at a time up to and including "\r\n" (so nothing past the line is
  // consumed — needed before a STARTTLS handshake).
  std::string ReadLine();
  // Reads until EOF or error; returns what arrived.
  std::string ReadToEnd();

  // The negotiated version string ("TLSv1.3") and the server certificate's CN.
  std::string version() const;
  std::string peer_common_name() const;
  SSL* ssl() const { return ssl_; }
  // The protocol the server selected by ALPN, or "".
  std::string alpn_selected() const;
  // Whether the handshake resumed ClientOptions::session.
  bool session_reused() const;
  // The session to resume later (owned by the caller: SSL_SESSION_free): the newest
  // ticket's (TLS 1.3 tickets come after the handshake; BoringSSL hands them only to
  // the new-session callback), else the handshake's.
  SSL_SESSION* TakeSession();
  int fd() const { return fd_; }

  // Frees the SSL object without sending close_notify, keeping the socket open.
  void DropTlsKeepSocket();
  // Sends close_notify (if TLS) and closes.
  void Close();

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  SSL_SESSION* newest_session_ = nullptr;  // owned

  static int OnNewSession(SSL* ssl, SSL_SESSION* session);
};

}  // namespace gateway::net::testing
