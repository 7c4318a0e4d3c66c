#include "mailbox-service/server/auth.h"

#include <gtest/gtest.h>

#include "mailbox-service/store/sqlite_store.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

// Cheap hashes: the test checks behaviour, not the cost.
AuthOptions FastOptions() {
  AuthOptions options;
  options.hash.memory_kib = 64;
  options.hash.time_cost = 1;
  options.throttle.user_free_failures = 3;
  options.throttle.ip_free_failures = 100;
  return options;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = std::string(getenv("TEST_TMPDIR")) + "/" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db";
    std::remove(path.c_str());
    auto store = store::SqliteStore::Open(path, {}, [](const v1::ChangeEvent&) {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto hash = HashPassword("correct horse", FastOptions().hash);
    ASSERT_TRUE(hash.ok());
    ASSERT_TRUE(store_->CreateUser("alice", *hash).ok());
    auto auth = Authenticator::Create(store_.get(), FastOptions());
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
  }

  v1::AuthenticateRequest Login(std::string user, std::string password) {
    v1::AuthenticateRequest request;
    request.set_mechanism(v1::PASSWORD);
    request.set_username(user);
    request.set_password(password);
    request.set_client_ip("192.0.2.1");
    return request;
  }

  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Authenticator> auth_;
};

TEST(PasswordTest, HashesAreSaltedAndVerify) {
  auto a = HashPassword("secret", FastOptions().hash);
  auto b = HashPassword("secret", FastOptions().hash);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(VerifyPassword(*a, "secret"));
  EXPECT_FALSE(VerifyPassword(*a, "Secret"));
  EXPECT_FALSE(VerifyPassword("not a hash", "secret"));
}

TEST_F(AuthTest, GoodPasswordYieldsATokenThatNamesTheUser) {
  auto response = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->principal().username(), "alice");
  auto user = auth_->CheckSessionToken(response->session_token());
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(*user, response->principal().user_id());
}

TEST_F(AuthTest, ForgedExpiredAndMalformedTokensAreRefused) {
  auto response = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(response.ok());
  std::string token = response->session_token();
  std::string forged = token;
  forged[3] = forged[3] == '1' ? '2' : '1';  // another user id, same MAC
  EXPECT_FALSE(auth_->CheckSessionToken(forged).ok());
  EXPECT_FALSE(auth_->CheckSessionToken("").ok());
  EXPECT_FALSE(auth_->CheckSessionToken("v1.1.1.").ok());
  EXPECT_FALSE(auth_->CheckSessionToken(auth_->IssueSessionToken(1, 1000)).ok());
}

TEST_F(AuthTest, ASessionEndsWhenItsUserIsDeleted) {
  auto response = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(response.ok());
  ASSERT_TRUE(store_->DeleteUser("alice").ok());
  auto user = auth_->CheckSessionToken(response->session_token());
  ASSERT_FALSE(user.ok());
  EXPECT_EQ(user.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, WrongPasswordAndUnknownUserLookTheSame) {
  auto wrong = auth_->Authenticate(Login("alice", "nope"));
  auto unknown = auth_->Authenticate(Login("mallory", "nope"));
  ASSERT_FALSE(wrong.ok());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(wrong.status().code(), unknown.status().code());
  EXPECT_EQ(wrong.status().message(), unknown.status().message());
  EXPECT_EQ(v1::DetailOf(wrong.status()).code(), v1::AUTHENTICATIONFAILED);
}

TEST_F(AuthTest, RepeatedFailuresAreThrottledWithARetryHintEvenForTheRightPassword) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(v1::DetailOf(auth_->Authenticate(Login("alice", "nope")).status()).code(),
              v1::AUTHENTICATIONFAILED);
  }
  auto throttled = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_FALSE(throttled.ok());
  v1::ErrorDetail detail = v1::DetailOf(throttled.status());
  EXPECT_EQ(detail.code(), v1::THROTTLED);
  EXPECT_GT(detail.retry_after_ms(), 0);
  EXPECT_LE(detail.retry_after_ms(), 1000);
}

TEST_F(AuthTest, OtherMechanismsAndForeignAuthzidAreRefusedClearly) {
  auto request = Login("alice", "correct horse");
  request.set_authzid("bob");
  EXPECT_EQ(v1::DetailOf(auth_->Authenticate(request).status()).code(), v1::AUTHORIZATIONFAILED);
  request = Login("alice", "correct horse");
  request.set_mechanism(v1::BEARER);
  EXPECT_EQ(auth_->Authenticate(request).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace mailbox::server
