#include "mailbox-service/server/link_trust.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpc/grpc_security_constants.h"
#include "gtest/gtest.h"

namespace mailbox::server {
namespace {

// Iteration is not used by link_trust; an empty range is enough.
class NoProperties : public grpc::AuthPropertyIterator {
 public:
  NoProperties() = default;
};

// An auth context as gRPC builds one for each kind of link, without a connection.
class FakeAuthContext final : public grpc::AuthContext {
 public:
  bool IsPeerAuthenticated() const override { return !identity_name_.empty(); }
  std::vector<grpc::string_ref> GetPeerIdentity() const override {
    return FindPropertyValues(identity_name_);
  }
  std::string GetPeerIdentityPropertyName() const override { return identity_name_; }
  std::vector<grpc::string_ref> FindPropertyValues(const std::string& name) const override {
    std::vector<grpc::string_ref> values;
    auto [first, last] = properties_.equal_range(name);
    for (auto it = first; it != last; ++it) {
      values.emplace_back(it->second);
    }
    return values;
  }
  grpc::AuthPropertyIterator begin() const override { return NoProperties(); }
  grpc::AuthPropertyIterator end() const override { return NoProperties(); }
  void AddProperty(const std::string& key, const grpc::string_ref& value) override {
    properties_.emplace(key, std::string(value.data(), value.size()));
  }
  bool SetPeerIdentityPropertyName(const std::string& name) override {
    identity_name_ = name;
    return true;
  }

 private:
  std::multimap<std::string, std::string> properties_;
  std::string identity_name_;
};

FakeAuthContext Plaintext() {
  FakeAuthContext auth;
  auth.AddProperty(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME,
                   std::string(kInsecureTransportSecurityType));
  return auth;
}

FakeAuthContext TlsWithoutCertificate() {
  FakeAuthContext auth;
  auth.AddProperty(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME, GRPC_SSL_TRANSPORT_SECURITY_TYPE);
  return auth;
}

FakeAuthContext TlsWithCertificate() {
  FakeAuthContext auth = TlsWithoutCertificate();
  auth.AddProperty(GRPC_X509_CN_PROPERTY_NAME, "gateway-1");
  auth.AddProperty(GRPC_X509_PEM_CERT_PROPERTY_NAME, "-----BEGIN CERTIFICATE-----...");
  auth.SetPeerIdentityPropertyName(GRPC_X509_CN_PROPERTY_NAME);
  return auth;
}

// Every local user reaches a loopback listener: plaintext alone vouches for no one.
TEST(LinkTrustTest, PlaintextLinkWithoutTokenIsThrottledByItsOwnAddress) {
  FakeAuthContext auth = Plaintext();
  EXPECT_TRUE(IsPlaintextLink(&auth));
  EXPECT_FALSE(IsTlsLink(&auth));
  EXPECT_EQ(ThrottleClientIp(&auth, "ipv4:127.0.0.1:40000", "198.51.100.7", false), "127.0.0.1");
  EXPECT_EQ(ThrottleClientIp(&auth, "unix:/run/mailbox.sock", "198.51.100.7", false),
            "unix:/run/mailbox.sock");
}

TEST(LinkTrustTest, GatewayTokenTrustsTheReportedAddress) {
  FakeAuthContext plaintext = Plaintext();
  EXPECT_EQ(ThrottleClientIp(&plaintext, "ipv4:127.0.0.1:40000", "198.51.100.7", true),
            "198.51.100.7");
  FakeAuthContext tls = TlsWithoutCertificate();
  EXPECT_EQ(ThrottleClientIp(&tls, "ipv4:10.0.0.5:40000", "198.51.100.7", true), "198.51.100.7");
}

TEST(LinkTrustTest, GatewayTokenMatches) {
  const std::string token(64, 'c');
  EXPECT_TRUE(GatewayTokenMatches(token, token));
  EXPECT_FALSE(GatewayTokenMatches(std::nullopt, token));
  EXPECT_FALSE(GatewayTokenMatches(std::string(64, 'd'), token));
  EXPECT_FALSE(GatewayTokenMatches(token.substr(0, 63), token));
  EXPECT_FALSE(GatewayTokenMatches(token + "c", token));
  EXPECT_FALSE(GatewayTokenMatches("", token));
  // No token file: nothing matches, not even an empty token.
  EXPECT_FALSE(GatewayTokenMatches("", ""));
  EXPECT_FALSE(GatewayTokenMatches(token, ""));
}

TEST(LinkTrustTest, VerifiedClientCertificateTrustsTheReportedAddress) {
  FakeAuthContext auth = TlsWithCertificate();
  EXPECT_TRUE(IsTlsLink(&auth));
  EXPECT_TRUE(HasVerifiedClientCertificate(&auth));
  EXPECT_EQ(ThrottleClientIp(&auth, "ipv4:10.0.0.5:40000", "198.51.100.7", false), "198.51.100.7");
}

TEST(LinkTrustTest, TlsWithoutCertificateIsThrottledByItsOwnAddress) {
  FakeAuthContext auth = TlsWithoutCertificate();
  EXPECT_FALSE(HasVerifiedClientCertificate(&auth));
  EXPECT_EQ(ThrottleClientIp(&auth, "ipv4:10.0.0.5:40000", "198.51.100.7", false), "10.0.0.5");
  // An empty report does not switch the address throttle off either.
  EXPECT_EQ(ThrottleClientIp(&auth, "ipv4:10.0.0.5:40000", "", false), "10.0.0.5");
}

TEST(LinkTrustTest, PeerIdentityWithoutCertificateIsNotEnough) {
  // A TLS link whose peer is "authenticated" by some other property (no certificate).
  FakeAuthContext auth = TlsWithoutCertificate();
  auth.AddProperty("x-custom", "someone");
  auth.SetPeerIdentityPropertyName("x-custom");
  EXPECT_FALSE(HasVerifiedClientCertificate(&auth));
  EXPECT_EQ(ThrottleClientIp(&auth, "ipv4:10.0.0.5:1", "198.51.100.7", false), "10.0.0.5");
}

TEST(LinkTrustTest, UnknownLinkFailsClosed) {
  FakeAuthContext unknown;  // no transport security type at all
  EXPECT_EQ(ThrottleClientIp(&unknown, "ipv4:10.0.0.5:1", "198.51.100.7", false), "10.0.0.5");
  EXPECT_EQ(ThrottleClientIp(nullptr, "ipv4:10.0.0.5:1", "198.51.100.7", false), "10.0.0.5");
}

TEST(LinkTrustTest, PeerHost) {
  EXPECT_EQ(PeerHost("ipv4:192.0.2.7:5000"), "192.0.2.7");
  EXPECT_EQ(PeerHost("ipv6:[2001:db8::1]:5000"), "2001:db8::1");
  EXPECT_EQ(PeerHost("ipv6:%5B2001:db8::1%5D:5000"), "2001:db8::1");
  EXPECT_EQ(PeerHost("ipv6:%5B%3A%3A1%5D:5000"), "::1");
  EXPECT_EQ(PeerHost("unix:/run/mailbox.sock"), "unix:/run/mailbox.sock");
}

}  // namespace
}  // namespace mailbox::server
