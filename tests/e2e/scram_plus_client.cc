// A SCRAM-SHA-256-PLUS client over TLS 1.3 with tls-exporter channel binding
// (RFC 9266), for tests/e2e/test_sasl.py: Python's ssl module gives no exporter
// value, so this connects with OpenSSL, takes the exporter of its own end of the
// connection, and logs in through the real gateway and mailbox service.
//
//   scram_plus_client PORT CA_FILE USER PASSWORD [MODE]
//
// MODE: "good" (default), "other-binding" (binds to 32 octets that are not this
// connection's), "tls-unique" (names a type TLS 1.3 does not have). Prints the
// server's lines and, last, "RESULT <tagged line>" and "SERVER-VERIFIED yes|no".
// Exits 0 when the exchange ran (whatever the answer), 2 on a setup error.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n);
  return out;
}

std::string Unbase64(const std::string& in) {
  std::string out(3 * in.size() / 4 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) {
    return "";
  }
  size_t pad = 0;
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) {
    ++pad;
  }
  out.resize(n - pad);
  return out;
}

std::string Hmac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<char*>(out), size);
}

std::string Sha256(const std::string& data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

class Connection {
 public:
  explicit Connection(SSL* ssl) : ssl_(ssl) {}
  void Send(const std::string& line) {
    std::cout << "C: " << line << std::endl;
    std::string wire = line + "\r\n";
    SSL_write(ssl_, wire.data(), static_cast<int>(wire.size()));
  }
  std::string ReadLine() {
    while (buffer_.find("\r\n") == std::string::npos) {
      char raw[4096];
      int n = SSL_read(ssl_, raw, sizeof(raw));
      if (n <= 0) {
        return "";
      }
      buffer_.append(raw, n);
    }
    size_t end = buffer_.find("\r\n");
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    std::cout << "S: " << line << std::endl;
    return line;
  }

 private:
  SSL* ssl_;
  std::string buffer_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: scram_plus_client PORT CA_FILE USER PASSWORD [MODE]\n";
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string user = argv[3];
  const std::string password = argv[4];
  const std::string mode = argc > 5 ? argv[5] : "good";

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_load_verify_locations(ctx, argv[2], nullptr) != 1) {
    std::cerr << "cannot load " << argv[2] << "\n";
    return 2;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    std::perror("connect");
    return 2;
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set1_host(ssl, "localhost");
  if (SSL_connect(ssl) != 1) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  std::cout << "TLS " << SSL_get_version(ssl) << std::endl;

  // RFC 9266 §2: the client's side of the same exporter.
  unsigned char exporter[32];
  const char label[] = "EXPORTER-Channel-Binding";
  if (SSL_export_keying_material(ssl, exporter, sizeof(exporter), label, std::strlen(label),
                                 nullptr, 0, 0) != 1) {
    std::cerr << "no exporter\n";
    return 2;
  }
  std::string binding(reinterpret_cast<char*>(exporter), sizeof(exporter));
  std::string type = "tls-exporter";
  if (mode == "other-binding") {
    binding[0] = static_cast<char>(binding[0] ^ 1);
  } else if (mode == "tls-unique") {
    type = "tls-unique";
  }

  Connection imap(ssl);
  imap.ReadLine();  // greeting
  unsigned char random[18];
  RAND_bytes(random, sizeof(random));
  const std::string nonce = Base64(std::string(reinterpret_cast<char*>(random), sizeof(random)));
  const std::string gs2 = "p=" + type + ",,";
  const std::string first_bare = "n=" + user + ",r=" + nonce;
  imap.Send("a AUTHENTICATE SCRAM-SHA-256-PLUS " + Base64(gs2 + first_bare));
  std::string line = imap.ReadLine();
  bool verified = false;
  if (line.rfind("+ ", 0) == 0) {
    const std::string server_first = Unbase64(line.substr(2));
    std::string server_nonce, salt;
    int iterations = 0;
    size_t start = 0;
    while (start <= server_first.size()) {
      size_t end = server_first.find(',', start);
      if (end == std::string::npos) end = server_first.size();
      std::string part = server_first.substr(start, end - start);
      if (part.rfind("r=", 0) == 0) server_nonce = part.substr(2);
      if (part.rfind("s=", 0) == 0) salt = Unbase64(part.substr(2));
      if (part.rfind("i=", 0) == 0) iterations = std::atoi(part.c_str() + 2);
      start = end + 1;
    }
    unsigned char salted[32];
    PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                      reinterpret_cast<const unsigned char*>(salt.data()),
                      static_cast<int>(salt.size()), iterations, EVP_sha256(), sizeof(salted),
                      salted);
    const std::string salted_password(reinterpret_cast<char*>(salted), sizeof(salted));
    const std::string client_key = Hmac(salted_password, "Client Key");
    const std::string without_proof = "c=" + Base64(gs2 + binding) + ",r=" + server_nonce;
    const std::string auth_message = first_bare + "," + server_first + "," + without_proof;
    std::string proof = Hmac(Sha256(client_key), auth_message);
    for (size_t i = 0; i < proof.size(); ++i) {
      proof[i] = static_cast<char>(proof[i] ^ client_key[i]);
    }
    const std::string expected_final =
        "v=" + Base64(Hmac(Hmac(salted_password, "Server Key"), auth_message));
    imap.Send(Base64(without_proof + ",p=" + Base64(proof)));
    line = imap.ReadLine();
    if (line.rfind("+ ", 0) == 0) {
      verified = Unbase64(line.substr(2)) == expected_final;
      imap.Send("");
      line = imap.ReadLine();
    }
  }
  std::cout << "RESULT " << line << std::endl;
  std::cout << "SERVER-VERIFIED " << (verified ? "yes" : "no") << std::endl;
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  return 0;
}
