#include "mailbox-service/server/server_credentials.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage-client/testing/test_pki.h"

namespace mailbox::server {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<config::Config> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "mailbox-service");
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  std::vector<config::Setting> settings = {{"listen", "", "127.0.0.1:50051", ""}};
  return config::Config::Parse(static_cast<int>(argv.size()), argv.data(),
                               WithServerTlsSettings(settings));
}

TEST(ServerCredentialsTest, LoopbackAddresses) {
  for (const char* listen : {"127.0.0.1:50051", "127.3.4.5:1", "localhost:50051", "LOCALHOST:1",
                             "[::1]:50051", "unix:/run/mailbox.sock"}) {
    EXPECT_TRUE(IsLoopbackListen(listen)) << listen;
  }
  for (const char* listen :
       {"0.0.0.0:50051", ":50051", "[::]:50051", "192.0.2.1:50051", "10.0.0.1:1", "[2001:db8::1]:1",
        "mail.example:50051", "128.0.0.1:1", "[::1",
        // No file permissions guard an abstract socket.
        "unix-abstract:mailbox"}) {
    EXPECT_FALSE(IsLoopbackListen(listen)) << listen;
  }
}

TEST(ServerCredentialsTest, PlaintextOnNonLoopbackNeedsInsecureListen) {
  ServerTlsOptions plaintext;
  EXPECT_TRUE(CheckListenPolicy("127.0.0.1:0", plaintext).ok());
  auto refused = CheckListenPolicy("0.0.0.0:50051", plaintext);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.message(), HasSubstr("refusing to listen on 0.0.0.0:50051 without TLS"));
  EXPECT_THAT(refused.message(), HasSubstr("--insecure-listen"));
  EXPECT_FALSE(CheckListenPolicy("unix-abstract:mailbox", plaintext).ok());
  EXPECT_TRUE(CheckListenPolicy("unix:/run/mailbox.sock", plaintext).ok());
  plaintext.insecure_listen = true;
  EXPECT_TRUE(CheckListenPolicy("0.0.0.0:50051", plaintext).ok());
  EXPECT_TRUE(CheckListenPolicy("unix-abstract:mailbox", plaintext).ok());
  ServerTlsOptions tls;
  tls.cert_file = "cert.pem";
  tls.key_file = "key.pem";
  EXPECT_TRUE(CheckListenPolicy("0.0.0.0:50051", tls).ok());
}

TEST(ServerCredentialsTest, WarningsForWeakButAllowedSetups) {
  ServerTlsOptions options;
  EXPECT_EQ(options.Warning("127.0.0.1:50051"), "");
  options.insecure_listen = true;
  EXPECT_THAT(options.Warning("0.0.0.0:50051"), HasSubstr("cross the network in clear"));
  options.cert_file = "c.pem";
  options.key_file = "k.pem";
  options.require_client_cert = false;
  EXPECT_THAT(options.Warning("0.0.0.0:50051"), HasSubstr("share one throttle"));
  options.client_ca_file = "ca.pem";
  EXPECT_EQ(options.Warning("0.0.0.0:50051"), "");
}

TEST(ServerCredentialsTest, Defaults) {
  auto config = Parse({});
  ASSERT_TRUE(config.ok());
  auto options = ServerTlsFromConfig(*config);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(options->tls());
  EXPECT_TRUE(options->require_client_cert);
  EXPECT_FALSE(options->insecure_listen);
  EXPECT_EQ(options->reload_seconds, 60);
  EXPECT_EQ(options->grpc_log_lines_per_second, 20);
}

TEST(ServerCredentialsTest, InconsistentFlagsAreRefused) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  };
  std::vector<Case> cases = {
      {{"--tls-cert-file=c.pem"}, "go together"},
      {{"--tls-client-ca-file=ca.pem"}, "needs TLS"},
      {{"--tls-cert-file=c.pem", "--tls-key-file=k.pem"}, "needs --tls-client-ca-file"},
      // Values are checked when the settings are parsed.
      {{"--tls-reload-interval=0s"}, "from 1s to 24h"},
      {{"--tls-reload-interval=60"}, "write 60s"},
      {{"--tls-reload-seconds=60"}, "renamed to --tls-reload-interval"},
      {{"--grpc-log-lines-per-second=-1"}, "from 0 to 1000000"},
      {{"--insecure-listen=ture"}, "expected true or false"},
  };
  for (const Case& c : cases) {
    auto config = Parse(c.args);
    absl::Status status = config.status();
    if (config.ok()) {
      status = ServerTlsFromConfig(*config).status();
    }
    ASSERT_FALSE(status.ok()) << c.args[0];
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  // Server-only TLS is allowed when asked for explicitly.
  auto config =
      Parse({"--tls-cert-file=c.pem", "--tls-key-file=k.pem", "--tls-require-client-cert=false"});
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(ServerTlsFromConfig(*config).ok());
}

TEST(ServerCredentialsTest, ListenerCredentialsFromFiles) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/server_credentials_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto ca = mailbox::testing::MakeCa(dir, "ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto server = mailbox::testing::MakeLeaf(dir, "service", *ca);
  ASSERT_TRUE(server.ok()) << server.status();

  ServerTlsOptions options;
  auto config = Parse({"--listen=0.0.0.0:0", "--tls-cert-file=" + server->cert,
                       "--tls-key-file=" + server->key, "--tls-client-ca-file=" + ca->cert});
  ASSERT_TRUE(config.ok());
  auto credentials = ListenerCredentials(*config, &options);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
  EXPECT_TRUE(options.tls());

  // A key that is not the certificate's.
  config = Parse({"--tls-cert-file=" + server->cert, "--tls-key-file=" + ca->key,
                  "--tls-client-ca-file=" + ca->cert});
  ASSERT_TRUE(config.ok());
  credentials = ListenerCredentials(*config, &options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("does not belong"));

  // A client CA that is not there.
  config = Parse({"--tls-cert-file=" + server->cert, "--tls-key-file=" + server->key,
                  "--tls-client-ca-file=" + dir + "/nope.pem"});
  ASSERT_TRUE(config.ok());
  credentials = ListenerCredentials(*config, &options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("--tls-client-ca-file"));
  EXPECT_THAT(credentials.status().message(), HasSubstr("nope.pem"));

  // Plaintext on every address.
  config = Parse({"--listen=0.0.0.0:0"});
  ASSERT_TRUE(config.ok());
  credentials = ListenerCredentials(*config, &options);
  ASSERT_FALSE(credentials.ok());
  EXPECT_THAT(credentials.status().message(), HasSubstr("without TLS"));
}

}  // namespace
}  // namespace mailbox::server
