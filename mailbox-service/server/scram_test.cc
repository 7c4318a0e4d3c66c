#include "mailbox-service/server/scram.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mailbox::server::scram {
namespace {

std::string Unbase64(std::string_view text) {
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(absl::string_view(text.data(), text.size()), &out));
  return out;
}

// RFC 7677 §3: user "user", password "pencil".
constexpr char kClientFirst[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr char kServerFirst[] =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr char kClientFinal[] =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr char kServerFinal[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

TEST(ScramTest, Rfc7677TestVector) {
  Keys keys = Derive("pencil", Unbase64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  auto first = ParseClientFirst(kClientFirst);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->binding, Binding::kNone);
  EXPECT_EQ(first->gs2_header, "n,,");
  EXPECT_EQ(first->username, "user");
  EXPECT_EQ(first->nonce, "rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(first->bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(ServerFirst("rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", keys), kServerFirst);

  auto final_message = ParseClientFinal(kClientFinal);
  ASSERT_TRUE(final_message.ok()) << final_message.status();
  EXPECT_EQ(final_message->channel_binding, "n,,");  // "biws"
  EXPECT_EQ(final_message->nonce, "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  const std::string auth_message =
      absl::StrCat(first->bare, ",", kServerFirst, ",", final_message->without_proof);
  EXPECT_TRUE(VerifyProof(keys, auth_message, final_message->proof));
  EXPECT_EQ(ServerFinal(keys, auth_message), kServerFinal);

  // Any other password, salt, count or message fails the proof.
  std::string tampered = final_message->proof;
  tampered[0] = static_cast<char>(tampered[0] ^ 1);
  EXPECT_FALSE(VerifyProof(keys, auth_message, tampered));
  EXPECT_FALSE(VerifyProof(Derive("pencil2", keys.salt, 4096), auth_message,
                           final_message->proof));
  EXPECT_FALSE(VerifyProof(Derive("pencil", keys.salt, 4097), auth_message,
                           final_message->proof));
  EXPECT_FALSE(VerifyProof(keys, auth_message + "x", final_message->proof));
}

TEST(ScramTest, EncodeParseRoundTripKeepsNoPassword) {
  auto keys = Make("pencil", 4096);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->salt.size(), kSaltBytes);
  const std::string encoded = Encode(*keys);
  EXPECT_EQ(encoded.find("pencil"), std::string::npos);
  EXPECT_EQ(encoded.rfind("SCRAM-SHA-256$4096:", 0), 0u) << encoded;
  auto parsed = Parse(encoded);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->salt, keys->salt);
  EXPECT_EQ(parsed->iterations, 4096u);
  EXPECT_EQ(parsed->stored_key, keys->stored_key);
  EXPECT_EQ(parsed->server_key, keys->server_key);
  // Two users with one password get different salts, hence different keys.
  auto other = Make("pencil", 4096);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->stored_key, keys->stored_key);
}

TEST(ScramTest, IterationCountBounds) {
  EXPECT_FALSE(Make("pw", kMinIterations - 1).ok());
  EXPECT_TRUE(Make("pw", kMinIterations).ok());
  EXPECT_FALSE(Make("pw", kMaxIterations + 1).ok());
  Keys keys = Derive("pw", "salt", kMinIterations);
  keys.iterations = kMinIterations - 1;
  EXPECT_FALSE(Parse(Encode(keys)).has_value());
  keys.iterations = kMaxIterations + 1;
  EXPECT_FALSE(Parse(Encode(keys)).has_value());
}

TEST(ScramTest, ParseRefusesWhatIsNotEncode) {
  for (const char* bad : {"", "$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA",
                          "SCRAM-SHA-256$4096:c2FsdA==", "SCRAM-SHA-256$x:c2FsdA==$AA==:AA==",
                          "SCRAM-SHA-256$4096:c2FsdA==$AA==:AA=="}) {
    EXPECT_FALSE(Parse(bad).has_value()) << bad;
  }
}

TEST(ScramTest, ClientFirstHeaderAndNames) {
  auto first = ParseClientFirst("p=tls-exporter,a=us=2Cer,n=us=3Der=2C,r=abc");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->binding, Binding::kRequired);
  EXPECT_EQ(first->binding_name, "tls-exporter");
  EXPECT_EQ(first->authzid, "us,er");
  EXPECT_EQ(first->gs2_header, "p=tls-exporter,a=us=2Cer,");
  EXPECT_EQ(first->username, "us=er,");
  first = ParseClientFirst("y,,n=user,r=abc,x=extension");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->binding, Binding::kNotOffered);
  for (const char* bad :
       {"", "n", "n,", "x,,n=user,r=abc", "p=,,n=user,r=abc", "p=tls_unique,,n=user,r=abc",
        "n,b=user,n=user,r=abc", "n,,m=ext,n=user,r=abc", "n,,r=abc,n=user", "n,,n=,r=abc",
        "n,,n=us=4er,r=abc", "n,,n=user", "n,,n=user,r=", "n,,n=user,r=a b"}) {
    EXPECT_FALSE(ParseClientFirst(bad).ok()) << bad;
  }
}

TEST(ScramTest, ClientFinalShape) {
  for (const char* bad :
       {"", "c=biws,r=abc", "c=biws,r=abc,p=short", "r=abc,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=!!,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="}) {
    EXPECT_FALSE(ParseClientFinal(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace mailbox::server::scram
