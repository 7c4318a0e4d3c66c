#include "gateway/session/commands/sasl_bearer.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace gateway::commands {
namespace {

std::string Error(const absl::StatusOr<BearerCredentials>& parsed) {
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

TEST(OauthBearerTest, RfcExamples) {
  // RFC 7628 §4.1, with and without the authorization identity.
  auto parsed = ParseOauthBearer(
      "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
      "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "user@example.com");
  EXPECT_EQ(parsed->token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
  parsed = ParseOauthBearer("n,,\x01" "auth=bearer  a.b.c\x01\x01");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "");
  EXPECT_EQ(parsed->token, "a.b.c");
  // "=2C" and "=3D" in a saslname (RFC 5801 §4).
  parsed = ParseOauthBearer("y,a=a=2Cb=3Dc,\x01" "auth=Bearer t\x01\x01");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "a,b=c");
}

TEST(OauthBearerTest, MalformedResponses) {
  EXPECT_EQ(Error(ParseOauthBearer("p=tls-unique,,\x01" "auth=Bearer t\x01\x01")),
            "OAUTHBEARER: channel binding is not offered; send \"n,\"");
  EXPECT_NE(Error(ParseOauthBearer("")), "");
  EXPECT_NE(Error(ParseOauthBearer("\x01")), "");  // only the answer to an error
  EXPECT_NE(Error(ParseOauthBearer("n,,auth=Bearer t\x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,u=x,\x01" "auth=Bearer t\x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,a=x=2,\x01" "auth=Bearer t\x01\x01")), "");
  EXPECT_EQ(Error(ParseOauthBearer("n,,\x01" "auth=Bearer t\x01")),
            "OAUTHBEARER: the key=value pairs must end with an empty one (%x01 %x01)");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01" "auth=Bearer t\x01\x01junk")), "");
  EXPECT_EQ(Error(ParseOauthBearer("n,,\x01host=x\x01\x01")),
            "OAUTHBEARER: no \"auth=Bearer <token>\" pair");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01" "auth=Basic dXNlcjpwdw==\x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01" "auth=Bearer \x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01" "auth=Bearer a b\x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01" "auth=Bearer t\x01" "auth=Bearer u\x01\x01")), "");
  EXPECT_NE(Error(ParseOauthBearer("n,,\x01=x\x01" "auth=Bearer t\x01\x01")), "");
}

TEST(Xoauth2Test, GooglesFormat) {
  auto parsed = ParseXoauth2("user=someuser@example.com\x01" "auth=Bearer ya29.vF9dft4qmTc2Nvb3"
                             "RlckBhdHRhdmlzdGEuY29tCg\x01\x01");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "someuser@example.com");
  EXPECT_EQ(parsed->token, "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
  EXPECT_EQ(Error(ParseXoauth2("auth=Bearer t\x01\x01")), "XOAUTH2: no \"user=\" pair");
  EXPECT_EQ(Error(ParseXoauth2("user=u\x01\x01")), "XOAUTH2: no \"auth=Bearer <token>\" pair");
  EXPECT_NE(Error(ParseXoauth2("user=u\x01" "auth=Bearer t\x01")), "");
}

TEST(BearerErrorChallengeTest, JsonOfRfc7628) {
  EXPECT_EQ(BearerErrorChallenge("invalid_token", "", ""),
            "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}");
  EXPECT_EQ(BearerErrorChallenge("invalid_token", "mail \"x\"",
                                 "https://id.example/.well-known/openid-configuration"),
            "{\"status\":\"invalid_token\",\"schemes\":\"bearer\",\"scope\":\"mail \\\"x\\\"\","
            "\"openid-configuration\":\"https://id.example/.well-known/openid-configuration\"}");
}

}  // namespace
}  // namespace gateway::commands
