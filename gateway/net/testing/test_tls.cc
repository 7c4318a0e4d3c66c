#include "gateway/net/testing/test_tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace gateway::net::testing {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "test_tls: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  std::abort();
}

EVP_PKEY* NewP256Key() {
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr);
  EVP_PKEY* key = nullptr;
  if (pctx == nullptr || EVP_PKEY_keygen_init(pctx) != 1 ||
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pctx, NID_X9_62_prime256v1) != 1 ||
      EVP_PKEY_keygen(pctx, &key) != 1) {
    Die("EC key generation");
  }
  EVP_PKEY_CTX_free(pctx);
  return key;
}

}  // namespace

std::string TestTmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

TlsFiles WriteSelfSignedCert(const std::string& dir, const std::string& stem,
                             const std::string& common_name) {
  EVP_PKEY* key = NewP256Key();
  X509* cert = X509_new();
  if (cert == nullptr || X509_set_version(cert, 2) != 1) {
    Die("X509_new");
  }
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  if (X509_set_pubkey(cert, key) != 1 || X509_sign(cert, key, EVP_sha256()) == 0) {
    Die("X509_sign");
  }
  TlsFiles files{dir + "/" + stem + ".crt", dir + "/" + stem + ".key"};
  FILE* f = std::fopen(files.cert_chain_file.c_str(), "w");
  if (f == nullptr || PEM_write_X509(f, cert) != 1) {
    Die("writing certificate");
  }
  std::fclose(f);
  f = std::fopen(files.private_key_file.c_str(), "w");
  if (f == nullptr ||
      PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    Die("writing key");
  }
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

BlockingClient::~BlockingClient() {
  if (newest_session_ != nullptr) {
    SSL_SESSION_free(newest_session_);
  }
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(ctx_);
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool BlockingClient::Connect(uint16_t port, const std::string& host,
                             const std::string& source) {
  bool v6 = host.find(':') != std::string::npos;
  fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) {
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (v6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(port);
    ::inet_pton(AF_INET6, host.c_str(), &addr.sin6_addr);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  if (!source.empty()) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &local.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      return false;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

std::string BlockingClient::StartTls(const ClientOptions& options) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) {
    return "SSL_CTX_new failed";
  }
#ifndef OPENSSL_IS_BORINGSSL
  // Debian's OpenSSL configuration raises the security level so far that a client
  // could not even offer TLS 1.1; the refusal has to come from the server.
  SSL_CTX_set_security_level(ctx_, 0);
#endif
  SSL_CTX_set_min_proto_version(ctx_, options.min_version);
  SSL_CTX_set_max_proto_version(ctx_, options.max_version);
  if (!options.tls12_ciphers.empty()) {
    std::string list = options.tls12_ciphers;
#ifndef OPENSSL_IS_BORINGSSL
    list += ":@SECLEVEL=0";
#endif
    if (SSL_CTX_set_cipher_list(ctx_, list.c_str()) != 1) {
      return "client cipher list rejected";
    }
  }
  if (!options.alpn.empty()) {
    std::string wire;
    for (const std::string& protocol : options.alpn) {
      wire.push_back(static_cast<char>(protocol.size()));
      wire += protocol;
    }
    // Returns 0 on success (unlike most of the API), in both libraries.
    if (SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
      return "client ALPN list rejected";
    }
  }
#ifdef OPENSSL_IS_BORINGSSL
  // BoringSSL gives TLS 1.3 tickets only to this callback. (OpenSSL updates the SSL's
  // session instead; with a client cache it would also mark a resumed TLS 1.3
  // session unusable once a new ticket arrives, which the rotation test relies on.)
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_, &BlockingClient::OnNewSession);
#endif
  ssl_ = SSL_new(ctx_);
  SSL_set_app_data(ssl_, this);
  SSL_set_fd(ssl_, fd_);
  SSL_set_tlsext_host_name(ssl_, "localhost");
  if (options.session != nullptr) {
    SSL_set_session(ssl_, options.session);
  }
  if (SSL_connect(ssl_) != 1) {
    char buffer[256];
    unsigned long error = ERR_get_error();
    if (error == 0) {
      return "handshake failed (connection closed)";
    }
    ERR_error_string_n(error, buffer, sizeof(buffer));
    return buffer;
  }
  return "";
}

bool BlockingClient::WriteAll(std::string_view data) {
  while (!data.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(data.size(), 1 << 20));
    int n = ssl_ != nullptr ? SSL_write(ssl_, data.data(), chunk)
                            : static_cast<int>(::send(fd_, data.data(), chunk, MSG_NOSIGNAL));
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string BlockingClient::ReadExactly(size_t n) {
  std::string out;
  char buffer[16384];
  while (out.size() < n) {
    int want = static_cast<int>(std::min(sizeof(buffer), n - out.size()));
    int got = ssl_ != nullptr ? SSL_read(ssl_, buffer, want)
                              : static_cast<int>(::recv(fd_, buffer, want, 0));
    if (got <= 0) {
      break;
    }
    out.append(buffer, static_cast<size_t>(got));
  }
  return out;
}

std::string BlockingClient::ReadLine() {
  std::string out;
  char c;
  while (out.size() < 2 || out.substr(out.size() - 2) != "\r\n") {
    int got = ssl_ != nullptr ? SSL_read(ssl_, &c, 1) : static_cast<int>(::recv(fd_, &c, 1, 0));
    if (got <= 0) {
      break;
    }
    out.push_back(c);
  }
  return out;
}

std::string BlockingClient::ReadToEnd() {
  std::string out;
  char buffer[16384];
  for (;;) {
    int got = ssl_ != nullptr ? SSL_read(ssl_, buffer, sizeof(buffer))
                              : static_cast<int>(::recv(fd_, buffer, sizeof(buffer), 0));
    if (got <= 0) {
      return out;
    }
    out.append(buffer, static_cast<size_t>(got));
  }
}

std::string BlockingClient::version() const {
  return ssl_ != nullptr ? SSL_get_version(ssl_) : "";
}

std::string BlockingClient::peer_common_name() const {
  if (ssl_ == nullptr) {
    return "";
  }
  X509* cert = SSL_get_peer_certificate(ssl_);
  if (cert == nullptr) {
    return "";
  }
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  X509_free(cert);
  return cn;
}

std::string BlockingClient::alpn_selected() const {
  if (ssl_ == nullptr) {
    return "";
  }
  const unsigned char* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_, &data, &length);
  return std::string(reinterpret_cast<const char*>(data), data == nullptr ? 0 : length);
}

bool BlockingClient::session_reused() const {
  return ssl_ != nullptr && SSL_session_reused(ssl_) == 1;
}

int BlockingClient::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<BlockingClient*>(SSL_get_app_data(ssl));
  if (self->newest_session_ != nullptr) {
    SSL_SESSION_free(self->newest_session_);
  }
  self->newest_session_ = session;
  return 1;  // we keep the reference
}

SSL_SESSION* BlockingClient::TakeSession() {
  if (newest_session_ != nullptr) {
    SSL_SESSION* session = newest_session_;
    newest_session_ = nullptr;
    return session;
  }
  return ssl_ != nullptr ? SSL_get1_session(ssl_) : nullptr;
}

void BlockingClient::DropTlsKeepSocket() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(ctx_);
    ctx_ = nullptr;
  }
}

void BlockingClient::Close() {
  if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace gateway::net::testing
