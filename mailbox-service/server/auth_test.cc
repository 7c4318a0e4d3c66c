#include "mailbox-service/server/auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mailbox-service/server/jwt_test_util.h"
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
    ASSERT_TRUE(store_->CreateUser("bob", *hash).ok());
    Restart(FastOptions(), {kKeyA});
  }

  // A new Authenticator on the same store (as after a restart of the service).
  void Restart(AuthOptions options, std::vector<std::string> keys) {
    auto auth = Authenticator::Create(store_.get(), std::move(options), {std::move(keys)});
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
  }

  // Time stands still: delays never run out while a test looks at them.
  AuthOptions FixedClock(AuthOptions options) {
    options.clock_ms = [] { return int64_t{1'800'000'000'000}; };
    return options;
  }

  v1::AuthenticateRequest Login(std::string user, std::string password,
                                std::string ip = "192.0.2.1") {
    v1::AuthenticateRequest request;
    request.set_mechanism(v1::PASSWORD);
    request.set_username(user);
    request.set_password(password);
    request.set_client_ip(ip);
    return request;
  }

  v1::ErrorCode Outcome(const v1::AuthenticateRequest& request) {
    auto response = auth_->Authenticate(request);
    return response.ok() ? v1::ERROR_CODE_UNSPECIFIED : v1::DetailOf(response.status()).code();
  }

  // 60 guesses for alice from one client, all at once.
  void ExpectParallelGuessesChecked(int allowance);

  static constexpr const char* kKeyA = "0123456789abcdef0123456789abcdef-key-a";
  static constexpr const char* kKeyB = "fedcba9876543210fedcba9876543210-key-b";

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
  EXPECT_FALSE(auth_->CheckSessionToken(auth_->IssueSessionToken(1, 0, 1000)).ok());
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

TEST(ThrottlePolicyTest, DelaysDoubleFromTheAllowanceOfThePairAndTightenOverTheIpBudget) {
  ThrottleOptions options;
  options.user_free_failures = 5;
  options.ip_free_failures = 20;
  options.max_delay_ms = 60'000;
  const int64_t now = 1'000'000;
  store::AuthAttemptState quiet_ip{3, now};
  store::AuthAttemptState busy_ip{20, now};
  // Under the allowance, from an address under its budget: no wait.
  EXPECT_EQ(ThrottleDelayMs(options, {4, now}, &quiet_ip, now), 0);
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, &quiet_ip, now), 0);
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, nullptr, now), 0);
  // Over its budget the address itself waits, even for a user name it never
  // tried (password spraying): 1 s after its latest failure, then 2 s, 4 s ...
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, &busy_ip, now), 1000);
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, &busy_ip, now + 1000), 0);
  store::AuthAttemptState busier_ip{23, now};
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, &busier_ip, now), 8000);
  store::AuthAttemptState flooding_ip{500, now};
  EXPECT_EQ(ThrottleDelayMs(options, {0, 0}, &flooding_ip, now), 60'000);
  // At it: 1 s after the latest failure, then 2 s, 4 s ... up to the cap.
  EXPECT_EQ(ThrottleDelayMs(options, {5, now}, &quiet_ip, now), 1000);
  EXPECT_EQ(ThrottleDelayMs(options, {5, now - 400}, &quiet_ip, now), 600);
  EXPECT_EQ(ThrottleDelayMs(options, {5, now - 1000}, &quiet_ip, now), 0);
  EXPECT_EQ(ThrottleDelayMs(options, {7, now}, nullptr, now), 4000);
  EXPECT_EQ(ThrottleDelayMs(options, {40, now}, nullptr, now), 60'000);
  // Over the IP budget a client that failed once for this user waits.
  store::AuthAttemptState busy_ip_earlier{20, now - 1000};  // its own delay is over
  EXPECT_EQ(ThrottleDelayMs(options, {1, now}, &busy_ip_earlier, now), 1000);
  EXPECT_EQ(ThrottleDelayMs(options, {1, now}, &quiet_ip, now), 0);
}

TEST(ThrottlePolicyTest, RecordsPerAddressFollowThePolicy) {
  ThrottleOptions options;  // 20 free, delays 1 s ... 512 s fill a 900 s window
  EXPECT_EQ(MaxRecordsPerAddress(options), 2 * (20 + 10 + 2));
  options.max_delay_ms = 1000;  // then one a second for the rest of the window
  EXPECT_EQ(MaxRecordsPerAddress(options), 2 * (20 + 901 + 2));  // at 0 s, 1 s ... 900 s
  options.max_records_per_address = 7;
  EXPECT_EQ(MaxRecordsPerAddress(options), 7);
}

TEST(ThrottleAddressTest, GroupsIpv6ByPrefixAndMapsIpv4) {
  EXPECT_EQ(ThrottleAddress("192.0.2.1", 64), "192.0.2.1");
  EXPECT_EQ(ThrottleAddress("::ffff:192.0.2.1", 64), "192.0.2.1");
  EXPECT_EQ(ThrottleAddress("::FFFF:c000:0201", 64), "192.0.2.1");
  EXPECT_EQ(ThrottleAddress("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ThrottleAddress("2001:0db8:0001:0002::1", 64), "2001:db8:1:2::/64");
  EXPECT_EQ(ThrottleAddress("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
  EXPECT_EQ(ThrottleAddress("2001:db8:1:2:3:4:5:6", 56), "2001:db8:1::/56");
  EXPECT_EQ(ThrottleAddress("2001:db8:1:2ff:3:4:5:6", 60), "2001:db8:1:2f0::/60");
  EXPECT_EQ(ThrottleAddress("2001:db8::1", 128), "2001:db8::1/128");
  EXPECT_EQ(ThrottleAddress("fe80::1%eth0", 64), "fe80::/64");
  // Not an address: used as given, bounded.
  EXPECT_EQ(ThrottleAddress("unix-socket", 64), "unix-socket");
  EXPECT_EQ(ThrottleAddress(std::string(1000, 'x'), 64), std::string(64, 'x'));
}

TEST_F(AuthTest, AddressesOfOneIpv6PrefixAndBothSpellingsOfAnIpv4ShareTheirCount) {
  Restart(FixedClock(FastOptions()), {kKeyA});
  // Three failures from three addresses of one /64: the fourth address waits.
  EXPECT_EQ(Outcome(Login("alice", "guess", "2001:db8:1:2::1")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("alice", "guess", "2001:db8:1:2::2")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("alice", "guess", "2001:db8:1:2:ffff::3")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("alice", "correct horse", "2001:db8:1:2::4")), v1::THROTTLED);
  // Another /64 is another client.
  EXPECT_EQ(Outcome(Login("alice", "correct horse", "2001:db8:1:3::1")),
            v1::ERROR_CODE_UNSPECIFIED);
  // An IPv4 client seen through a dual-stack socket is the same client.
  EXPECT_EQ(Outcome(Login("bob", "guess", "198.51.100.9")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("bob", "guess", "::ffff:198.51.100.9")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("bob", "guess", "198.51.100.9")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("bob", "correct horse", "::ffff:198.51.100.9")), v1::THROTTLED);
}

TEST_F(AuthTest, ALoginOfTheUserDoesNotResetTheFailuresOfItsAddress) {
  // Behind a shared address the (user, address) pair is the attacker's as well as
  // the user's: the user's logins must not give the attacker new tries.
  Restart(FixedClock(FastOptions()), {kKeyA});
  EXPECT_EQ(Outcome(Login("alice", "guess")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("alice", "guess")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(Outcome(Login("alice", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  EXPECT_EQ(Outcome(Login("alice", "guess")), v1::AUTHENTICATIONFAILED);
  // Three failures in the window, the login in between notwithstanding.
  EXPECT_EQ(Outcome(Login("alice", "guess")), v1::THROTTLED);
}

TEST_F(AuthTest, SprayingFromOneAddressIsSlowedWhateverTheUserNames) {
  auto now = std::make_shared<std::atomic<int64_t>>(1'800'000'000'000);
  AuthOptions options = FastOptions();
  options.throttle.ip_free_failures = 4;
  options.clock_ms = [now] { return now->load(); };
  Restart(options, {kKeyA});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Outcome(Login(absl::StrCat("user", i), "guess")), v1::AUTHENTICATIONFAILED);
  }
  // Over the budget: a name never tried from here waits too, 1 s, then 2 s.
  EXPECT_EQ(Outcome(Login("user4", "guess")), v1::THROTTLED);
  now->fetch_add(1000);
  EXPECT_EQ(Outcome(Login("user4", "guess")), v1::AUTHENTICATIONFAILED);
  now->fetch_add(1000);
  EXPECT_EQ(Outcome(Login("user5", "guess")), v1::THROTTLED);
  now->fetch_add(1000);
  EXPECT_EQ(Outcome(Login("user5", "guess")), v1::AUTHENTICATIONFAILED);
  // Another address is not slowed by this one.
  EXPECT_EQ(Outcome(Login("user6", "guess", "203.0.113.5")), v1::AUTHENTICATIONFAILED);
}

TEST_F(AuthTest, ParallelAttemptsGetAtMostTheAllowanceOfPasswordChecks) {
  // The attempts reserve their place before the hash: 60 at once may not all pass
  // a check made before any of them was recorded.
  Restart(FixedClock(FastOptions()), {kKeyA});
  ExpectParallelGuessesChecked(FastOptions().throttle.user_free_failures);
}

TEST_F(AuthTest, ParallelAttemptsThatReadTheClockOutOfOrderStillSeeEachOther) {
  // Under load an attempt reads the clock and then waits for the store, so later
  // ones in the store may carry earlier times. Here every call reads an earlier time.
  AuthOptions options = FastOptions();
  auto ticks = std::make_shared<std::atomic<int64_t>>(0);
  options.clock_ms = [ticks] { return int64_t{1'800'000'000'000} - ticks->fetch_add(1); };
  Restart(options, {kKeyA});
  ExpectParallelGuessesChecked(FastOptions().throttle.user_free_failures);
}

void AuthTest::ExpectParallelGuessesChecked(int allowance) {
  constexpr int kAttempts = 60;
  std::atomic<int> checked{0};
  std::atomic<int> throttled{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kAttempts; ++i) {
    threads.emplace_back([&, i] {
      switch (Outcome(Login("alice", absl::StrCat("guess", i)))) {
        case v1::AUTHENTICATIONFAILED:
          checked.fetch_add(1);
          break;
        case v1::THROTTLED:
          throttled.fetch_add(1);
          break;
        default:
          other.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(checked.load(), allowance);
  EXPECT_EQ(throttled.load(), kAttempts - allowance);
  EXPECT_EQ(other.load(), 0);
}

TEST_F(AuthTest, AnAttackOnOneUserLocksOutNeitherThatUserElsewhereNorOthersOnTheSameIp) {
  auto now = std::make_shared<std::atomic<int64_t>>(1'800'000'000'000);
  AuthOptions options = FastOptions();
  options.throttle.ip_free_failures = 4;
  options.clock_ms = [now] { return now->load(); };
  Restart(options, {kKeyA});
  auto hash = HashPassword("correct horse", FastOptions().hash);
  ASSERT_TRUE(hash.ok());
  ASSERT_TRUE(store_->CreateUser("erin", *hash).ok());
  // bob logged in from the shared address before the attack.
  EXPECT_EQ(Outcome(Login("bob", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  // The attacker spends alice's allowance from the shared address and then some
  // names it sprays, which takes the address over its budget.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Outcome(Login("alice", "guess")), v1::AUTHENTICATIONFAILED);
  }
  EXPECT_EQ(Outcome(Login("alice", "guess")), v1::THROTTLED);
  EXPECT_EQ(Outcome(Login("carol", "guess")), v1::AUTHENTICATIONFAILED);
  // bob, who logged in from here within the window and never failed: not slowed.
  EXPECT_EQ(Outcome(Login("bob", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  // erin, new behind this address, waits with the address (1 s here), then her
  // password is checked and lets her in.
  EXPECT_EQ(Outcome(Login("erin", "correct horse")), v1::THROTTLED);
  now->fetch_add(1000);
  EXPECT_EQ(Outcome(Login("erin", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  // alice herself, from her own address: not locked out by the attack.
  EXPECT_EQ(Outcome(Login("alice", "correct horse", "198.51.100.7")), v1::ERROR_CODE_UNSPECIFIED);
  // The attacking client still waits, even with the right password.
  EXPECT_EQ(Outcome(Login("alice", "correct horse")), v1::THROTTLED);
}

TEST_F(AuthTest, OverlongUserNamesAreRefusedBeforeAnyWork) {
  auto response = auth_->Authenticate(Login(std::string(256, 'a'), "x"));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(v1::DetailOf(response.status()).code(), v1::BAD_REQUEST);
  EXPECT_NE(std::string(response.status().message()).find("255 octets"), std::string::npos);
  // 255 octets is an ordinary (unknown) name.
  EXPECT_EQ(Outcome(Login(std::string(255, 'a'), "x")), v1::AUTHENTICATIONFAILED);
}

TEST_F(AuthTest, APasswordChangeEndsTheSessionsMadeBeforeIt) {
  auto response = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(response.ok());
  ASSERT_TRUE(auth_->CheckSessionToken(response->session_token()).ok());
  auto hash = HashPassword("battery staple", FastOptions().hash);
  ASSERT_TRUE(hash.ok());
  ASSERT_TRUE(store_->SetPasswordHash("alice", *hash).ok());
  auto old_session = auth_->CheckSessionToken(response->session_token());
  ASSERT_FALSE(old_session.ok());
  EXPECT_EQ(old_session.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(std::string(old_session.status().message()).find("password"), std::string::npos);
  auto again = auth_->Authenticate(Login("alice", "battery staple"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(auth_->CheckSessionToken(again->session_token()).ok());
}

TEST_F(AuthTest, TokensFromBeforeGenerationsLastUntilThePasswordChanges) {
  auto alice = store_->FindUser("alice");
  ASSERT_TRUE(alice.ok());
  // A v1 token as the previous version made it: HMAC-SHA256 over
  // "v1.<id>.<expiry>".
  std::string payload = absl::StrCat("v1.", alice->id, ".", int64_t{4'000'000'000});
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), kKeyA, static_cast<int>(strlen(kKeyA)),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &mac_size);
  std::string token = payload + ".";
  for (unsigned int i = 0; i < mac_size; ++i) {
    absl::StrAppend(&token, absl::Hex(mac[i], absl::kZeroPad2));
  }
  EXPECT_TRUE(auth_->CheckSessionToken(token).ok());
  ASSERT_TRUE(store_->SetPasswordHash("alice", alice->password_hash).ok());
  EXPECT_FALSE(auth_->CheckSessionToken(token).ok());
}

TEST_F(AuthTest, RotatedKeysCheckOldTokensUntilTheOldKeyIsRemoved) {
  auto response = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(response.ok());
  const std::string signed_by_a = response->session_token();
  Restart(FastOptions(), {kKeyB, kKeyA});
  EXPECT_TRUE(auth_->CheckSessionToken(signed_by_a).ok());
  auto fresh = auth_->Authenticate(Login("alice", "correct horse"));
  ASSERT_TRUE(fresh.ok());
  Restart(FastOptions(), {kKeyB});
  EXPECT_FALSE(auth_->CheckSessionToken(signed_by_a).ok());
  EXPECT_TRUE(auth_->CheckSessionToken(fresh->session_token()).ok());
}

// OAuth bearer tokens go through the same checks and the same throttle as
// passwords.
class BearerAuthTest : public AuthTest {
 protected:
  static constexpr int64_t kNowS = 1'800'000'000;

  void SetUp() override {
    AuthTest::SetUp();
    key_ = testing::MakeKey("EdDSA", "k1");
    BearerOptions options;
    options.jwks_path = std::string(getenv("TEST_TMPDIR")) + "/" +
                        ::testing::UnitTest::GetInstance()->current_test_info()->name() +
                        ".jwks";
    std::ofstream(options.jwks_path) << testing::Jwks({testing::PublicJwk(key_)});
    options.issuer = "https://id.example";
    options.audience = "imap";
    options.user_claim = "preferred_username";
    auto validator = BearerValidator::Create(options);
    ASSERT_TRUE(validator.ok()) << validator.status();
    validator_ = *std::move(validator);
    AuthOptions auth = FixedClock(FastOptions());
    auth.bearer = validator_.get();
    Restart(auth, {kKeyA});
  }

  std::string TokenFor(const std::string& user, int64_t exp = kNowS + 600) {
    return testing::SignedToken(
        key_, testing::Header(key_),
        absl::StrCat("{\"iss\":\"https://id.example\",\"aud\":\"imap\",",
                     "\"preferred_username\":\"", user, "\",\"exp\":", exp, "}"));
  }

  static v1::AuthenticateRequest Bearer(std::string token, std::string user = "") {
    v1::AuthenticateRequest request;
    request.set_mechanism(v1::BEARER);
    request.set_token(std::move(token));
    request.set_username(std::move(user));
    request.set_client_ip("192.0.2.1");
    return request;
  }

  testing::SigningKey key_;
  std::unique_ptr<BearerValidator> validator_;
};

TEST_F(BearerAuthTest, AValidTokenLogsItsUserIn) {
  auto response = auth_->Authenticate(Bearer(TokenFor("alice")));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->principal().username(), "alice");
  EXPECT_TRUE(auth_->CheckSessionToken(response->session_token()).ok());
  // The user the client named (the GS2 authzid, XOAUTH2's user=) agrees.
  response = auth_->Authenticate(Bearer(TokenFor("bob"), "bob"));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->principal().username(), "bob");
}

TEST_F(BearerAuthTest, BadTokensWrongUserAndUnknownUserFailAlike) {
  const std::vector<v1::AuthenticateRequest> failures = {
      Bearer(TokenFor("alice", kNowS - 3600)),  // expired
      Bearer(TokenFor("alice"), "bob"),         // the client named another user
      Bearer(TokenFor("mallory")),              // no such user: none is made
      Bearer("garbage"),
  };
  std::string message;
  for (const auto& request : failures) {
    auto response = auth_->Authenticate(request);
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(v1::DetailOf(response.status()).code(), v1::AUTHENTICATIONFAILED);
    if (message.empty()) message = std::string(response.status().message());
    EXPECT_EQ(response.status().message(), message);
  }
  EXPECT_FALSE(store_->FindUser("mallory").ok());
}

TEST_F(BearerAuthTest, FailedTokensAreThrottledLikePasswords) {
  // Three free failures for the pair (FastOptions), then a wait, even for a good
  // token; a password login of the same pair waits as well.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Outcome(Bearer(TokenFor("alice", kNowS - 3600), "alice")),
              v1::AUTHENTICATIONFAILED);
  }
  EXPECT_EQ(Outcome(Bearer(TokenFor("alice"), "alice")), v1::THROTTLED);
  EXPECT_EQ(Outcome(Login("alice", "correct horse")), v1::THROTTLED);
}

TEST_F(AuthTest, BearerIsRefusedWhenNotConfigured) {
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::BEARER);
  request.set_token("a.b.c");
  EXPECT_EQ(Outcome(request), v1::CANNOT);
}

}  // namespace
}  // namespace mailbox::server
