#include "storage-client/testing/test_pki.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace mailbox::testing {
namespace {

absl::Status Run(const std::string& command) {
  // Quiet; a failure names the command, which can be rerun by hand.
  std::string log = absl::StrCat(command, " >/dev/null 2>&1");
  if (std::system(log.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("failed: ", command));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CertFiles> MakeCa(const std::string& dir, const std::string& name) {
  CertFiles files{absl::StrCat(dir, "/", name, ".pem"), absl::StrCat(dir, "/", name, ".key")};
  // P-256 keys: quick to make, and supported by every TLS stack involved.
  auto status = Run(absl::StrCat(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2",
      " -subj /CN=", name, " -keyout ", files.key, " -out ", files.cert,
      " -addext basicConstraints=critical,CA:TRUE",
      " -addext keyUsage=critical,keyCertSign,cRLSign"));
  if (!status.ok()) {
    return status;
  }
  return files;
}

absl::StatusOr<CertFiles> MakeLeaf(const std::string& dir, const std::string& name,
                                   const CertFiles& ca) {
  CertFiles files{absl::StrCat(dir, "/", name, ".pem"), absl::StrCat(dir, "/", name, ".key")};
  std::string csr = absl::StrCat(dir, "/", name, ".csr");
  std::string ext = absl::StrCat(dir, "/", name, ".ext");
  {
    std::ofstream out(ext);
    out << "basicConstraints=CA:FALSE\n"
        << "keyUsage=critical,digitalSignature,keyEncipherment\n"
        << "extendedKeyUsage=serverAuth,clientAuth\n"
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  }
  auto status = Run(absl::StrCat(
      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=", name,
      " -keyout ", files.key, " -out ", csr));
  if (status.ok()) {
    status = Run(absl::StrCat("openssl x509 -req -days 2 -set_serial ", std::rand() % 1000000 + 1,
                              " -in ", csr, " -CA ", ca.cert, " -CAkey ", ca.key, " -extfile ", ext,
                              " -out ", files.cert));
  }
  if (!status.ok()) {
    return status;
  }
  return files;
}

}  // namespace mailbox::testing
