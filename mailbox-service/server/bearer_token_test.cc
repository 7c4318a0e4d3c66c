#include "mailbox-service/server/bearer_token.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "mailbox-service/server/jwt_test_util.h"

namespace mailbox::server {
namespace {

using testing::Header;
using testing::Jwks;
using testing::MakeKey;
using testing::PublicJwk;
using testing::SignedToken;
using testing::SigningKey;

constexpr int64_t kNow = 1'800'000'000;

class BearerTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new SigningKey(MakeKey("RS256", "rsa-1"));
    ec_ = new SigningKey(MakeKey("ES256", "ec-1"));
    ed_ = new SigningKey(MakeKey("EdDSA", "ed-1"));
    ed2_ = new SigningKey(MakeKey("EdDSA", "ed-2"));
  }

  void SetUp() override {
    path_ = absl::StrCat(getenv("TEST_TMPDIR"), "/",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                         ".jwks");
    options_.jwks_path = path_;
    options_.issuer = "https://id.example";
    options_.audience = "imap.example";
    options_.check_interval = std::chrono::milliseconds(0);
    WriteFile(Jwks({PublicJwk(*rsa_), PublicJwk(*ec_), PublicJwk(*ed_)}));
  }

  // Replaces the file as an operator's tool would (a new file renamed over it).
  void WriteFile(const std::string& text) {
    std::ofstream(path_ + ".tmp") << text;
    ASSERT_EQ(std::rename((path_ + ".tmp").c_str(), path_.c_str()), 0);
  }

  std::unique_ptr<BearerValidator> Validator() {
    auto validator = BearerValidator::Create(options_);
    EXPECT_TRUE(validator.ok()) << validator.status();
    return validator.ok() ? *std::move(validator) : nullptr;
  }

  static std::string Claims(const std::string& extra = "", int64_t exp = kNow + 600) {
    return absl::StrCat("{\"iss\":\"https://id.example\",\"aud\":\"imap.example\",",
                        "\"email\":\"alice@example.org\",\"sub\":\"u-1\",\"iat\":", kNow - 10,
                        ",", extra, "\"exp\":", exp, "}");
  }

  static std::string Token(const SigningKey& key, const std::string& claims = Claims()) {
    return SignedToken(key, Header(key), claims);
  }

  // Why `token` was refused ("" if it was accepted as alice@example.org).
  std::string Refusal(BearerValidator& validator, std::string_view token, int64_t now = kNow) {
    auto user = validator.Validate(token, now);
    if (user.ok()) {
      return *user == "alice@example.org" ? "" : "accepted as " + *user;
    }
    return std::string(user.status().message());
  }

  static SigningKey* rsa_;
  static SigningKey* ec_;
  static SigningKey* ed_;
  static SigningKey* ed2_;
  std::string path_;
  BearerOptions options_;
};

SigningKey* BearerTokenTest::rsa_ = nullptr;
SigningKey* BearerTokenTest::ec_ = nullptr;
SigningKey* BearerTokenTest::ed_ = nullptr;
SigningKey* BearerTokenTest::ed2_ = nullptr;

TEST(Base64UrlTest, StrictAlphabetAndLength) {
  EXPECT_EQ(jose::Base64UrlDecode("aGk"), "hi");
  EXPECT_EQ(jose::Base64UrlDecode("-_8"), std::string("\xfb\xff", 2));
  EXPECT_EQ(jose::Base64UrlDecode(""), "");
  EXPECT_FALSE(jose::Base64UrlDecode("aGk=").has_value());  // no padding in JWS
  EXPECT_FALSE(jose::Base64UrlDecode("+/8").has_value());   // not the URL alphabet
  EXPECT_FALSE(jose::Base64UrlDecode("aGkhx").has_value()); // no encoder makes 5 chars
  EXPECT_FALSE(jose::Base64UrlDecode("aGl").has_value());   // "hi" with stray low bits
  for (std::string data : {"", "a", "ab", "abc", "abcd", "\xff\x00\x10"}) {
    EXPECT_EQ(jose::Base64UrlDecode(jose::Base64UrlEncode(data)), data);
  }
}

TEST_F(BearerTokenTest, EachAlgorithmIsAccepted) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  for (const SigningKey* key : {rsa_, ec_, ed_}) {
    EXPECT_EQ(Refusal(*validator, Token(*key)), "") << key->alg;
  }
}

TEST_F(BearerTokenTest, UserClaimIsConfigurable) {
  options_.user_claim = "sub";
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  EXPECT_EQ(*validator->Validate(Token(*ed_), kNow), "u-1");
  options_.user_claim = "preferred_username";
  validator = Validator();
  EXPECT_EQ(Refusal(*validator, Token(*ed_)),
            "the token has no string claim \"preferred_username\"");
}

TEST_F(BearerTokenTest, ExpiryWithClockSkewAtItsLimit) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  // Expired 60 s ago: still within the allowance; 61 s ago: not.
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims("", kNow - 59))), "");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims("", kNow - 60))), "the token has expired");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims("", kNow - 3600))), "the token has expired");
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, Header(*ed_),
                                            "{\"iss\":\"https://id.example\",\"aud\":"
                                            "\"imap.example\",\"email\":\"alice@example.org\"}")),
            "the token has no exp");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, "{\"iss\":\"https://id.example\",\"aud\":"
                                            "\"imap.example\",\"email\":\"alice@example.org\","
                                            "\"exp\":\"tomorrow\"}")),
            "exp is not a NumericDate");
  // A fractional NumericDate (RFC 7519 §2).
  EXPECT_EQ(Refusal(*validator, Token(*ed_, absl::StrCat("{\"iss\":\"https://id.example\","
                                                         "\"aud\":\"imap.example\",\"email\":"
                                                         "\"alice@example.org\",\"exp\":",
                                                         kNow + 10, ".5}"))),
            "");
}

TEST_F(BearerTokenTest, NotBeforeAndIssuedAt) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims(absl::StrCat("\"nbf\":", kNow + 60, ",")))),
            "");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims(absl::StrCat("\"nbf\":", kNow + 61, ",")))),
            "the token is not valid yet (nbf)");
  EXPECT_EQ(Refusal(*validator,
                    Token(*ed_, absl::StrCat("{\"iss\":\"https://id.example\",\"aud\":"
                                             "\"imap.example\",\"email\":\"alice@example.org\","
                                             "\"iat\":",
                                             kNow + 3600, ",\"exp\":", kNow + 7200, "}"))),
            "the token was issued in the future (iat)");
}

TEST_F(BearerTokenTest, IssuerAndAudience) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  auto claims = [](const std::string& iss, const std::string& aud) {
    return absl::StrCat("{\"iss\":", iss, ",\"aud\":", aud,
                        ",\"email\":\"alice@example.org\",\"exp\":", kNow + 600, "}");
  };
  EXPECT_EQ(Refusal(*validator, Token(*ed_, claims("\"https://evil.example\"",
                                                   "\"imap.example\""))),
            "wrong issuer");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, claims("\"https://id.example/\"",
                                                   "\"imap.example\""))),
            "wrong issuer");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, "{\"aud\":\"imap.example\",\"exp\":9999999999}")),
            "wrong issuer");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, claims("\"https://id.example\"", "\"web.example\""))),
            "the token is not meant for this service (aud)");
  EXPECT_EQ(Refusal(*validator,
                    Token(*ed_, claims("\"https://id.example\"", "[\"web\",\"imap.example\"]"))),
            "");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, claims("\"https://id.example\"", "[\"web\"]"))),
            "the token is not meant for this service (aud)");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, claims("\"https://id.example\"", "[]"))),
            "the token is not meant for this service (aud)");
}

TEST_F(BearerTokenTest, KeyLookup) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  // Signed by a key not in the set, under a kid that is not there either.
  EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "no key with kid \"ed-2\"");
  // Under the kid of a key in the set: the signature does not hold.
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed2_, Header(*ed_), Claims())), "bad signature");
  // No kid and several keys: none is guessed.
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, "{\"alg\":\"EdDSA\"}", Claims())),
            "the token names no kid and the key set holds several keys");
  // No kid and one key in the set: that one.
  WriteFile(Jwks({PublicJwk(*ed_)}));
  validator = Validator();
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, "{\"alg\":\"EdDSA\"}", Claims())), "");
}

TEST_F(BearerTokenTest, AlgorithmMustBeTheKeys) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  // An EC signature presented under the RSA key's kid.
  EXPECT_EQ(Refusal(*validator, SignedToken(*ec_, "{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}",
                                            Claims())),
            "alg \"ES256\" is not the algorithm of key \"rsa-1\"");
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, "{\"alg\":\"RS256\",\"kid\":\"ed-1\"}",
                                            Claims())),
            "alg \"RS256\" is not the algorithm of key \"ed-1\"");
  // HS256 keyed with the public key's bytes (RFC 8725 §2.1): never accepted.
  const std::string jwk = PublicJwk(*rsa_);
  std::string input = absl::StrCat(
      jose::Base64UrlEncode("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}"), ".",
      jose::Base64UrlEncode(Claims()));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), jwk.data(), static_cast<int>(jwk.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_size);
  EXPECT_EQ(Refusal(*validator,
                    absl::StrCat(input, ".",
                                 jose::Base64UrlEncode(std::string_view(
                                     reinterpret_cast<char*>(mac), mac_size)))),
            "alg \"HS256\" is not accepted (RS256, ES256, EdDSA)");
  // RFC 7518 §3.6 unsecured JWS.
  std::string none = absl::StrCat(jose::Base64UrlEncode("{\"alg\":\"none\"}"), ".",
                                  jose::Base64UrlEncode(Claims()), ".");
  EXPECT_EQ(Refusal(*validator, none), "alg \"none\" is not accepted (RS256, ES256, EdDSA)");
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, "{\"kid\":\"ed-1\"}", Claims())),
            "alg \"\" is not accepted (RS256, ES256, EdDSA)");
  EXPECT_EQ(Refusal(*validator, SignedToken(*ed_, "{\"alg\":\"EdDSA\",\"kid\":\"ed-1\","
                                                  "\"crit\":[\"exp\"]}",
                                            Claims())),
            "the token has critical header parameters");
}

TEST_F(BearerTokenTest, TamperedTokens) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  for (const SigningKey* key : {rsa_, ec_, ed_}) {
    const std::string token = Token(*key);
    const size_t first = token.find('.');
    const size_t second = token.rfind('.');
    // Another user in the claims, the signature kept.
    std::string forged = absl::StrCat(
        token.substr(0, first + 1),
        jose::Base64UrlEncode(absl::StrReplaceAll(Claims(), {{"alice", "mallory"}})),
        token.substr(second));
    EXPECT_EQ(Refusal(*validator, forged), "bad signature") << key->alg;
    // One bit of the signature flipped.
    std::string signature = *jose::Base64UrlDecode(token.substr(second + 1));
    signature[signature.size() / 2] ^= 0x01;
    EXPECT_EQ(Refusal(*validator, absl::StrCat(token.substr(0, second + 1),
                                               jose::Base64UrlEncode(signature))),
              "bad signature")
        << key->alg;
    EXPECT_EQ(Refusal(*validator, token.substr(0, second + 1)), "bad signature") << key->alg;
  }
  EXPECT_EQ(Refusal(*validator, "not a token"),
            "the token is not a JWS in compact form (three parts)");
  EXPECT_EQ(Refusal(*validator, Token(*ed_) + ".x"),
            "the token is not a JWS in compact form (three parts)");
  EXPECT_EQ(Refusal(*validator, "!!.e30.e30"), "the header is not base64url");
  EXPECT_EQ(Refusal(*validator, "W10.e30.e30"), "the header is not a JSON object");
}

TEST_F(BearerTokenTest, TokenSizeAtItsLimit) {
  const std::string token =
      Token(*ed_, Claims(absl::StrCat("\"pad\":\"", std::string(6000, 'x'), "\",")));
  options_.max_token_octets = token.size();
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  EXPECT_EQ(Refusal(*validator, token), "");
  options_.max_token_octets = token.size() - 1;
  validator = Validator();
  EXPECT_EQ(Refusal(*validator, token),
            absl::StrCat("the token is longer than ", token.size() - 1, " octets"));
  // The default limit: 8 KiB.
  EXPECT_EQ(BearerOptions().max_token_octets, 8192u);
}

TEST_F(BearerTokenTest, JsonDepthAtItsLimit) {
  options_.max_token_json_depth = 4;
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  // The claims object and three arrays: depth 4.
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims("\"deep\":[[[1]]],"))), "");
  EXPECT_EQ(Refusal(*validator, Token(*ed_, Claims("\"deep\":[[[[1]]]],"))).rfind(
                "the claims is not JSON", 0),
            0u);
}

TEST_F(BearerTokenTest, KeySetIsReloadedWhenItChanges) {
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "no key with kid \"ed-2\"");
  // The provider rotates: ed-2 in, ed-1 out.
  WriteFile(Jwks({PublicJwk(*ed2_)}));
  EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "");
  EXPECT_EQ(Refusal(*validator, Token(*ed_)), "no key with kid \"ed-1\"");
  // A broken file, an empty set, a set over the key limit, a file over the size
  // limit, and no file at all: each keeps the keys read before.
  options_.jwks.max_keys = 2;
  validator = Validator();
  for (const std::string& bad :
       {std::string("{\"keys\":["), std::string("{\"keys\":[]}"),
        Jwks({PublicJwk(*ed_), PublicJwk(*ec_), PublicJwk(*rsa_)}),
        Jwks({PublicJwk(*ed_, absl::StrCat("\"pad\":\"", std::string(70000, 'x'), "\","))})}) {
    WriteFile(bad);
    EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "") << bad.substr(0, 40);
    EXPECT_EQ(Refusal(*validator, Token(*ed_)), "no key with kid \"ed-1\"") << bad.substr(0, 40);
  }
  std::remove(path_.c_str());
  EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "");
  // At the key limit: accepted.
  WriteFile(Jwks({PublicJwk(*ed_), PublicJwk(*ec_)}));
  EXPECT_EQ(Refusal(*validator, Token(*ed_)), "");
  EXPECT_EQ(Refusal(*validator, Token(*ed2_)), "no key with kid \"ed-2\"");
}

TEST_F(BearerTokenTest, KeySetFileSizeAtItsLimit) {
  const std::string jwks = Jwks({PublicJwk(*ed_)});
  WriteFile(jwks);
  options_.max_jwks_octets = jwks.size();
  auto validator = Validator();
  ASSERT_NE(validator, nullptr);
  EXPECT_EQ(Refusal(*validator, Token(*ed_)), "");
  options_.max_jwks_octets = jwks.size() - 1;
  EXPECT_FALSE(BearerValidator::Create(options_).ok());
  EXPECT_EQ(BearerOptions().max_jwks_octets, 65536u);
  EXPECT_EQ(BearerOptions().jwks.max_keys, 32u);
}

TEST_F(BearerTokenTest, BadFileAtStartIsRefused) {
  WriteFile("{\"keys\":[]}");
  EXPECT_FALSE(BearerValidator::Create(options_).ok());
  std::remove(path_.c_str());
  EXPECT_FALSE(BearerValidator::Create(options_).ok());
  WriteFile(Jwks({PublicJwk(*ed_)}));
  options_.issuer = "";
  EXPECT_FALSE(BearerValidator::Create(options_).ok());
}

TEST(JwksTest, KeySetLimitsAndChecks) {
  jose::JwksLimits limits;
  limits.max_keys = 2;
  SigningKey a = MakeKey("EdDSA", "a");
  SigningKey b = MakeKey("ES256", "b");
  SigningKey c = MakeKey("EdDSA", "c");
  auto two = jose::ParseJwks(Jwks({PublicJwk(a), PublicJwk(b)}), limits);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 2u);
  EXPECT_EQ(jose::ParseJwks(Jwks({PublicJwk(a), PublicJwk(b), PublicJwk(c)}), limits)
                .status()
                .message(),
            "3 keys in the set; at most 2");
  EXPECT_EQ(jose::ParseJwks(Jwks({PublicJwk(a), PublicJwk(MakeKey("EdDSA", "a"))}), limits)
                .status()
                .message(),
            "two keys with the same kid \"a\"");
  // Keys for encryption, for other algorithms or of other types are left out.
  auto some = jose::ParseJwks(
      Jwks({PublicJwk(a, "\"use\":\"enc\","), PublicJwk(b, "\"alg\":\"ES384\","),
            "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}", PublicJwk(c, "\"use\":\"sig\",")}),
      {});
  ASSERT_TRUE(some.ok()) << some.status();
  ASSERT_EQ(some->size(), 1u);
  EXPECT_EQ(some->front().kid, "c");
  // A short RSA modulus.
  EXPECT_FALSE(jose::ParseJwks(Jwks({PublicJwk(MakeKey("RS256", "r", 1024))}), {}).ok());
  // A P-256 point that is not on the curve.
  std::string off_curve = PublicJwk(b);
  const size_t y = off_curve.find("\"y\":\"") + 5;
  off_curve[y] = off_curve[y] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(jose::ParseJwks(Jwks({off_curve}), {}).ok());
  // Depth: {"keys":[{"x":[[...]]}]} past the limit.
  limits.max_json_depth = 3;
  EXPECT_FALSE(jose::ParseJwks("{\"keys\":[{\"kty\":\"OKP\",\"z\":[[]]}]}", limits).ok());
  EXPECT_FALSE(jose::ParseJwks("[]", {}).ok());
}

}  // namespace
}  // namespace mailbox::server
