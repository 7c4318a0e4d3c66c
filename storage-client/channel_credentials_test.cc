#include "storage-client/channel_credentials.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage-client/testing/test_pki.h"
#include "storage-client/tls_files.h"

namespace mailbox::client {
namespace {

using ::testing::HasSubstr;

class ChannelCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/channel_credentials_test";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto ca = mailbox::testing::MakeCa(dir_, "ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    auto client = mailbox::testing::MakeLeaf(dir_, "gateway", ca_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
    auto other = mailbox::testing::MakeLeaf(dir_, "other", ca_);
    ASSERT_TRUE(other.ok()) << other.status();
    other_ = *other;
  }

  std::string dir_;
  mailbox::testing::CertFiles ca_, client_, other_;
};

TEST_F(ChannelCredentialsTest, NoFilesIsPlaintext) {
  auto credentials = MakeChannelCredentials({});
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
}

TEST_F(ChannelCredentialsTest, CaOnlyAndMutualTls) {
  ChannelTlsOptions options;
  options.ca_file = ca_.cert;
  EXPECT_TRUE(MakeChannelCredentials(options).ok());
  options.cert_file = client_.cert;
  options.key_file = client_.key;
  auto credentials = MakeChannelCredentials(options);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
}

TEST_F(ChannelCredentialsTest, ClientCertificateWithoutCaIsRefused) {
  ChannelTlsOptions options;
  options.cert_file = client_.cert;
  options.key_file = client_.key;
  auto credentials = MakeChannelCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("needs the CA file"));
}

TEST_F(ChannelCredentialsTest, CertificateWithoutKeyIsRefused) {
  ChannelTlsOptions options;
  options.ca_file = ca_.cert;
  options.cert_file = client_.cert;
  auto credentials = MakeChannelCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("give both or neither"));
}

TEST_F(ChannelCredentialsTest, MissingCaFileIsNamed) {
  ChannelTlsOptions options;
  options.ca_file = dir_ + "/missing.pem";
  auto credentials = MakeChannelCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("missing.pem"));
  EXPECT_THAT(credentials.status().message(), HasSubstr("No such file"));
}

TEST_F(ChannelCredentialsTest, KeyOfAnotherCertificateIsRefused) {
  ChannelTlsOptions options;
  options.ca_file = ca_.cert;
  options.cert_file = client_.cert;
  options.key_file = other_.key;
  auto credentials = MakeChannelCredentials(options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("does not belong to the certificate"));
}

TEST_F(ChannelCredentialsTest, ReloadIntervalBelowOneSecondIsRefused) {
  ChannelTlsOptions options;
  options.ca_file = ca_.cert;
  options.reload_seconds = 0;
  EXPECT_FALSE(MakeChannelCredentials(options).ok());
}

TEST_F(ChannelCredentialsTest, TlsFileChecks) {
  EXPECT_TRUE(tls::CheckCertificateFile(ca_.cert, "ca").ok());
  // A key is not a certificate.
  auto not_cert = tls::CheckCertificateFile(ca_.key, "--store-ca-file");
  ASSERT_FALSE(not_cert.ok());
  EXPECT_THAT(not_cert.message(), HasSubstr("--store-ca-file"));
  EXPECT_THAT(not_cert.message(), HasSubstr("holds no PEM certificate"));
  EXPECT_TRUE(tls::CheckKeyPair(client_.cert, client_.key, "client").ok());
  // An encrypted key is refused without asking for a passphrase.
  std::string encrypted = dir_ + "/encrypted.key";
  ASSERT_EQ(std::system(("openssl pkey -in " + client_.key + " -aes128 -passout pass:x -out " +
                         encrypted + " 2>/dev/null")
                            .c_str()),
            0);
  auto status = tls::CheckKeyPair(client_.cert, encrypted, "client");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("encrypted"));
}

}  // namespace
}  // namespace mailbox::client
