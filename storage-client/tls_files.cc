#include "storage-client/tls_files.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace mailbox::tls {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::StatusOr<std::unique_ptr<FILE, FileCloser>> Open(const std::string& path,
                                                       const std::string& what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "r"));
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  return file;
}

// The first certificate of a PEM file, or an error naming the file.
absl::StatusOr<std::unique_ptr<X509, X509Free>> FirstCertificate(const std::string& path,
                                                                 const std::string& what) {
  auto file = Open(path, what);
  if (!file.ok()) {
    return file.status();
  }
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(file->get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " holds no PEM certificate"));
  }
  return cert;
}

}  // namespace

absl::Status CheckCertificateFile(const std::string& path, const std::string& what) {
  auto cert = FirstCertificate(path, what);
  return cert.ok() ? absl::OkStatus() : cert.status();
}

absl::Status CheckKeyPair(const std::string& cert_path, const std::string& key_path,
                          const std::string& what) {
  auto cert = FirstCertificate(cert_path, what);
  if (!cert.ok()) {
    return cert.status();
  }
  auto file = Open(key_path, what);
  if (!file.ok()) {
    return file.status();
  }
  // A callback that offers no passphrase, so an encrypted key fails here instead of
  // OpenSSL asking on the terminal.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_PrivateKey(file->get(), nullptr, no_passphrase, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", key_path, " holds no PEM private key (an encrypted key is not supported)"));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the key in ", key_path, " does not belong to the certificate in ", cert_path));
  }
  return absl::OkStatus();
}

}  // namespace mailbox::tls
