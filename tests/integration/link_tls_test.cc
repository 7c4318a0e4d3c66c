// The gateway-service link against the real mailbox-service binary: TLS with client
// certificates, callers without a verified certificate refused (or, where the service
// lets them in, throttled by their own address rather than the client IP they
// report), and the plaintext listen policy.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"
#include "storage-client/channel_credentials.h"
#include "storage-client/testing/test_pki.h"
#include "tests/integration/service_process.h"

namespace mailbox::testing {
namespace {

struct Pki {
  CertFiles ca, other_ca, server, gateway, rogue;
};

class LinkTlsTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    std::string dir = TempDir("link_tls_pki");
    auto ca = MakeCa(dir, "ca");
    auto other = MakeCa(dir, "other-ca");
    ASSERT_TRUE(ca.ok() && other.ok());
    auto server = MakeLeaf(dir, "service", *ca);
    auto gateway = MakeLeaf(dir, "gateway", *ca);
    auto rogue = MakeLeaf(dir, "rogue", *other);
    ASSERT_TRUE(server.ok() && gateway.ok() && rogue.ok());
    pki_ = new Pki{*ca, *other, *server, *gateway, *rogue};
  }

  static std::vector<std::string> TlsFlags(bool require_client_cert) {
    return {"--tls-cert-file=" + pki_->server.cert, "--tls-key-file=" + pki_->server.key,
            "--tls-client-ca-file=" + pki_->ca.cert,
            absl::StrCat("--tls-require-client-cert=", require_client_cert ? "true" : "false")};
  }

  // A channel trusting `ca` (empty: plaintext) presenting `identity` (may be null).
  static std::shared_ptr<grpc::Channel> Channel(const ServiceProcess& service,
                                                const std::string& ca, const CertFiles* identity,
                                                const std::string& server_name = "") {
    client::ChannelTlsOptions options;
    options.ca_file = ca;
    if (identity != nullptr) {
      options.cert_file = identity->cert;
      options.key_file = identity->key;
    }
    options.server_name = server_name;
    auto credentials = client::MakeChannelCredentials(options);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    grpc::ChannelArguments args;
    client::ApplyChannelTlsArgs(options, &args);
    return grpc::CreateCustomChannel(service.target(), *credentials, args);
  }

  static grpc::Status Authenticate(const std::shared_ptr<grpc::Channel>& channel,
                                   const std::string& user, const std::string& password,
                                   const std::string& client_ip,
                                   const std::string& gateway_token = "") {
    auto stub = v1::Mailbox::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!gateway_token.empty()) {
      context.AddMetadata("x-mailbox-gateway-token", gateway_token);
    }
    v1::AuthenticateRequest request;
    request.set_mechanism(v1::PASSWORD);
    request.set_username(user);
    request.set_password(password);
    request.set_client_ip(client_ip);
    v1::AuthenticateResponse response;
    return stub->Authenticate(&context, request, &response);
  }

  static grpc::Status CreateUser(const std::shared_ptr<grpc::Channel>& channel,
                                 const ServiceProcess& service, const std::string& user,
                                 const std::string& password) {
    auto stub = v1::Admin::NewStub(channel);
    grpc::ClientContext context;
    context.AddMetadata("x-mailbox-admin", service.admin_token());
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateUserRequest request;
    request.set_username(user);
    request.set_password(password);
    v1::CreateUserResponse response;
    return stub->CreateUser(&context, request, &response);
  }

  static Pki* pki_;
};

Pki* LinkTlsTest::pki_ = nullptr;

TEST_F(LinkTlsTest, RequiredClientCertificate) {
  ServiceProcess service(TempDir("link_required"), TlsFlags(true));
  ASSERT_TRUE(service.Start().ok());

  auto gateway = Channel(service, pki_->ca.cert, &pki_->gateway);
  ASSERT_TRUE(CreateUser(gateway, service, "alice", "pw-alice").ok());
  grpc::Status ok = Authenticate(gateway, "alice", "pw-alice", "192.0.2.1");
  EXPECT_TRUE(ok.ok()) << ok.error_message();

  // No client certificate, a certificate of another CA, plaintext: the handshake
  // fails, so the call never reaches Authenticate (nor the admin API).
  auto no_cert = Channel(service, pki_->ca.cert, nullptr);
  auto rogue = Channel(service, pki_->ca.cert, &pki_->rogue);
  auto plaintext = Channel(service, "", nullptr);
  for (const auto& [name, channel] :
       {std::pair{"no client certificate", no_cert}, std::pair{"another CA", rogue},
        std::pair{"plaintext", plaintext}}) {
    grpc::Status status = Authenticate(channel, "alice", "pw-alice", "192.0.2.1");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << name;
    EXPECT_EQ(CreateUser(channel, service, "mallory", "pw").error_code(),
              grpc::StatusCode::UNAVAILABLE)
        << name;
  }

  // The gateway checks the service's certificate too: signed by its CA, for the name
  // it connects to.
  auto wrong_ca = Channel(service, pki_->other_ca.cert, &pki_->gateway);
  EXPECT_EQ(Authenticate(wrong_ca, "alice", "pw-alice", "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  auto wrong_name = Channel(service, pki_->ca.cert, &pki_->gateway, "mailbox.example");
  EXPECT_EQ(Authenticate(wrong_name, "alice", "pw-alice", "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  auto right_name = Channel(service, pki_->ca.cert, &pki_->gateway, "localhost");
  EXPECT_TRUE(Authenticate(right_name, "alice", "pw-alice", "").ok());
}

// With client certificates optional, a caller without one gets in (e.g. mailbox-admin
// with the CA only), but the client IP it reports is ignored: a password guesser
// cannot escape the per-address throttle by sending a new address with each guess.
TEST_F(LinkTlsTest, ReportedClientIpCountsOnlyFromVerifiedGateways) {
  std::vector<std::string> flags = TlsFlags(false);
  flags.push_back("--auth-ip-free-failures=3");
  flags.push_back("--auth-user-free-failures=1000");
  ServiceProcess service(TempDir("link_optional"), flags);
  ASSERT_TRUE(service.Start().ok());

  auto guesser = Channel(service, pki_->ca.cert, nullptr);
  std::vector<grpc::StatusCode> codes;
  for (int i = 0; i < 5; ++i) {
    codes.push_back(
        Authenticate(guesser, "nobody", "guess", absl::StrCat("198.51.100.", i + 1)).error_code());
  }
  EXPECT_EQ(codes, (std::vector<grpc::StatusCode>{
                       grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::UNAUTHENTICATED,
                       grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::RESOURCE_EXHAUSTED,
                       grpc::StatusCode::RESOURCE_EXHAUSTED}));

  // A verified gateway speaks for many clients: distinct client IPs are throttled
  // apart (its own address, throttled above, does not matter)...
  auto gateway = Channel(service, pki_->ca.cert, &pki_->gateway);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(
        Authenticate(gateway, "someone", "guess", absl::StrCat("203.0.113.", i + 1)).error_code(),
        grpc::StatusCode::UNAUTHENTICATED)
        << i;
  }
  // ...and one client IP is throttled as that client.
  codes.clear();
  for (int i = 0; i < 4; ++i) {
    codes.push_back(Authenticate(gateway, "other", "guess", "203.0.113.200").error_code());
  }
  EXPECT_EQ(codes.back(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

std::string ReadToken(const ServiceProcess& service) {
  std::string token;
  if (FILE* f = std::fopen((service.data_dir() + "/gateway.token").c_str(), "r")) {
    char buffer[256] = {};
    if (std::fgets(buffer, sizeof buffer, f) != nullptr) {
      token = buffer;
    }
    std::fclose(f);
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
    token.pop_back();
  }
  return token;
}

// One user's password guessed six times, each guess reporting a new client IP:
// the status codes.
std::vector<grpc::StatusCode> RotatingGuesses(const std::shared_ptr<grpc::Channel>& channel,
                                              const std::string& token) {
  std::vector<grpc::StatusCode> codes;
  for (int i = 0; i < 6; ++i) {
    codes.push_back(LinkTlsTest::Authenticate(channel, "alice", "guess",
                                              absl::StrCat("198.51.100.", i + 1), token)
                        .error_code());
  }
  return codes;
}

// The embedded default: plaintext on loopback, which every local user can reach.
// Without the gateway token a caller's made-up client IPs are ignored: after the free
// failures it is throttled by its own address (127.0.0.1), however many it invents.
class PlaintextLinkTest : public LinkTlsTest {
 protected:
  void SetUp() override {
    service_ = std::make_unique<ServiceProcess>(
        TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name()),
        std::vector<std::string>{"--auth-ip-free-failures=3", "--auth-user-free-failures=1000"});
    ASSERT_TRUE(service_->Start().ok());
    ASSERT_TRUE(service_->CreateUser("alice", "pw-alice").ok());
    token_ = ReadToken(*service_);
    ASSERT_EQ(token_.size(), 64u);
  }

  // The first three guesses are checked; by the sixth the caller's own address is
  // over its allowance.
  static void ExpectThrottledByPeer(const std::vector<grpc::StatusCode>& codes) {
    ASSERT_EQ(codes.size(), 6u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(codes[i], grpc::StatusCode::UNAUTHENTICATED) << i;
    }
    EXPECT_EQ(codes.back(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  std::unique_ptr<ServiceProcess> service_;
  std::string token_;
};

TEST_F(PlaintextLinkTest, WithoutTokenTheReportedClientIpIsIgnored) {
  ExpectThrottledByPeer(RotatingGuesses(service_->Channel(), ""));
}

TEST_F(PlaintextLinkTest, AWrongTokenCountsAsNone) {
  std::string wrong = token_;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  ExpectThrottledByPeer(RotatingGuesses(service_->Channel(), wrong));
  // Nor does a prefix of the right one, or the right one with more after it.
  EXPECT_EQ(
      Authenticate(service_->Channel(), "alice", "guess", "198.51.100.99", token_.substr(0, 32))
          .error_code(),
      grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Authenticate(service_->Channel(), "alice", "guess", "198.51.100.99", token_ + "0")
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(PlaintextLinkTest, WithTheTokenTheReportedClientIpIsUsed) {
  // Six client IPs, each with one failure: none is throttled...
  EXPECT_EQ(RotatingGuesses(service_->Channel(), token_),
            std::vector<grpc::StatusCode>(6, grpc::StatusCode::UNAUTHENTICATED));
  // ...while one client IP is throttled as that client.
  std::vector<grpc::StatusCode> codes;
  for (int i = 0; i < 5; ++i) {
    codes.push_back(
        Authenticate(service_->Channel(), "alice", "guess", "203.0.113.200", token_).error_code());
  }
  EXPECT_EQ(codes.front(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(codes.back(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The right password still logs in from a fresh client IP.
  EXPECT_TRUE(Authenticate(service_->Channel(), "alice", "pw-alice", "203.0.113.9", token_).ok());
}

// The token made at the first start is kept across restarts (gateways keep using it).
TEST_F(PlaintextLinkTest, TheTokenFileIsMadeOnceWithMode0600) {
  struct stat info {};
  ASSERT_EQ(::stat((service_->data_dir() + "/gateway.token").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 0600u);
  service_->Stop(SIGTERM);
  ASSERT_TRUE(service_->Start().ok());
  EXPECT_EQ(ReadToken(*service_), token_);
}

// A TLS caller without a client certificate may also vouch for itself with the token.
TEST_F(LinkTlsTest, TokenAlsoCountsOnTls) {
  std::vector<std::string> flags = TlsFlags(false);
  flags.push_back("--auth-ip-free-failures=3");
  flags.push_back("--auth-user-free-failures=1000");
  ServiceProcess service(TempDir("link_tls_token"), flags);
  ASSERT_TRUE(service.Start().ok());
  auto caller = Channel(service, pki_->ca.cert, nullptr);
  EXPECT_EQ(RotatingGuesses(caller, ReadToken(service)),
            std::vector<grpc::StatusCode>(6, grpc::StatusCode::UNAUTHENTICATED));
}

// Runs the binary to its exit; returns the exit code and what it printed.
std::pair<int, std::string> RunService(const std::vector<std::string>& flags) {
  std::string dir = TempDir("link_refused");
  std::string command = Runfile("mailbox-service/server/mailbox-service");
  absl::StrAppend(&command, " --data-dir=", dir, "/data");
  for (const std::string& flag : flags) {
    absl::StrAppend(&command, " ", flag);
  }
  absl::StrAppend(&command, " >", dir, "/out 2>&1");
  int status = std::system(command.c_str());
  std::string out;
  if (FILE* f = std::fopen((dir + "/out").c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
      out.append(buffer, n);
    }
    std::fclose(f);
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(LinkTlsTest, PlaintextOnAllAddressesRefusesToStart) {
  auto [code, out] = RunService({"--listen=0.0.0.0:0"});
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("refusing to listen on 0.0.0.0:0 without TLS"), std::string::npos) << out;
  EXPECT_NE(out.find("--insecure-listen"), std::string::npos) << out;
}

}  // namespace
}  // namespace mailbox::testing
