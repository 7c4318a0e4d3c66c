#include "mailbox-service/server/auth.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <functional>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mailbox-service/server/scram.h"
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
  options.hash.scram_iterations = scram::kMinIterations;
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

// A SCRAM-SHA-256 client (RFC 5802 §3) against Authenticator, as the gateway relays it.
struct ScramOptions {
  std::string gs2 = "n,,";
  bool plus = false;
  std::string binding_type;  // what the gateway's connection offers
  std::string binding_data;  // the gateway's binding data
  std::string client_binding;  // what the client binds to (c= after the gs2 header)
  bool tamper_proof = false;
  std::function<void(std::string&)> alter_state;
};

struct ScramRun {
  absl::StatusOr<v1::AuthenticateResponse> first = absl::UnknownError("not run");
  absl::StatusOr<v1::AuthenticateResponse> final_step = absl::UnknownError("not run");
  std::string expected_server_final;
  std::string salt;
  uint32_t iterations = 0;
};

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

// `auth` is looked up at each step: a test may replace the Authenticator between
// them (another replica).
ScramRun RunScram(std::unique_ptr<Authenticator>& auth, const std::string& user,
                  const std::string& password, const ScramOptions& options = {}) {
  ScramRun run;
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::SCRAM_SHA_256);
  request.set_client_ip("192.0.2.1");
  request.mutable_scram()->set_plus(options.plus);
  request.mutable_scram()->set_channel_binding_type(options.binding_type);
  request.mutable_scram()->set_channel_binding(options.binding_data);
  const std::string bare = absl::StrCat("n=", user, ",r=clientnonce");
  request.set_sasl_step(options.gs2 + bare);
  run.first = auth->Authenticate(request);
  if (!run.first.ok()) {
    return run;
  }
  const std::string server_first = run.first->sasl_step();
  std::string nonce;
  std::string salt;
  for (absl::string_view part : absl::StrSplit(server_first, ',')) {
    if (absl::ConsumePrefix(&part, "r=")) nonce = std::string(part);
    if (absl::ConsumePrefix(&part, "s=")) absl::Base64Unescape(part, &salt);
    if (absl::ConsumePrefix(&part, "i=")) EXPECT_TRUE(absl::SimpleAtoi(part, &run.iterations));
  }
  run.salt = salt;
  scram::Keys keys = scram::Derive(password, salt, run.iterations);
  unsigned char salted[32];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), static_cast<int>(run.iterations),
                    EVP_sha256(), sizeof(salted), salted);
  const std::string client_key =
      HmacSha256(std::string_view(reinterpret_cast<const char*>(salted), 32), "Client Key");
  const std::string without_proof =
      absl::StrCat("c=", absl::Base64Escape(options.gs2 + options.client_binding), ",r=", nonce);
  const std::string auth_message = absl::StrCat(bare, ",", server_first, ",", without_proof);
  std::string proof = HmacSha256(keys.stored_key, auth_message);
  for (size_t i = 0; i < proof.size(); ++i) {
    proof[i] = static_cast<char>(proof[i] ^ client_key[i]);
  }
  if (options.tamper_proof) {
    proof[5] = static_cast<char>(proof[5] ^ 0x10);
  }
  run.expected_server_final = scram::ServerFinal(keys, auth_message);
  request.set_sasl_step(absl::StrCat(without_proof, ",p=", absl::Base64Escape(proof)));
  std::string state = run.first->scram_state();
  if (options.alter_state) {
    options.alter_state(state);
  }
  request.mutable_scram()->set_state(state);
  run.final_step = auth->Authenticate(request);
  return run;
}

v1::ErrorCode CodeOf(const absl::StatusOr<v1::AuthenticateResponse>& response) {
  return response.ok() ? v1::ERROR_CODE_UNSPECIFIED : v1::DetailOf(response.status()).code();
}

TEST_F(AuthTest, UsersFromBeforeScramGetKeysAtTheirNextPasswordLogin) {
  // alice was made by the store alone, without keys: SCRAM fails as a wrong
  // password does.
  ScramRun before = RunScram(auth_, "alice", "correct horse");
  ASSERT_TRUE(before.first.ok()) << before.first.status();
  EXPECT_EQ(CodeOf(before.final_step), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(before.final_step.status().message(),
            "Authentication failed: wrong user name or password");
  ASSERT_EQ(Outcome(Login("alice", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  auto alice = store_->FindUser("alice");
  ASSERT_TRUE(alice.ok());
  auto keys = scram::Parse(alice->scram_sha256);
  ASSERT_TRUE(keys.has_value()) << alice->scram_sha256;
  EXPECT_EQ(keys->iterations, scram::kMinIterations);
  ScramRun after = RunScram(auth_, "alice", "correct horse");
  ASSERT_TRUE(after.final_step.ok()) << after.final_step.status();
  EXPECT_EQ(after.final_step->principal().username(), "alice");
  EXPECT_EQ(after.final_step->sasl_step(), after.expected_server_final);
  EXPECT_TRUE(auth_->CheckSessionToken(after.final_step->session_token()).ok());
  // A wrong login does not touch them; a password change drops them.
  EXPECT_EQ(Outcome(Login("alice", "wrong")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(store_->FindUser("alice")->scram_sha256, alice->scram_sha256);
  ASSERT_TRUE(store_->SetPasswordHash("alice", alice->password_hash).ok());
  EXPECT_EQ(store_->FindUser("alice")->scram_sha256, "");
}

TEST_F(AuthTest, KeysAreStoredOnlyBesideTheHashTheyWereMadeWith) {
  auto alice = store_->FindUser("alice");
  ASSERT_TRUE(alice.ok());
  ASSERT_TRUE(store_->SetScramKeys("alice", "another hash", "SCRAM-SHA-256$x").ok());
  EXPECT_EQ(store_->FindUser("alice")->scram_sha256, "");
  ASSERT_TRUE(store_->SetScramKeys("alice", alice->password_hash, "SCRAM-SHA-256$x").ok());
  EXPECT_EQ(store_->FindUser("alice")->scram_sha256, "SCRAM-SHA-256$x");
}

TEST_F(AuthTest, ScramWrongPasswordTamperedProofAndUnknownUserFailAlike) {
  ASSERT_EQ(Outcome(Login("alice", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  ScramOptions tampered;
  tampered.tamper_proof = true;
  for (ScramRun run : {RunScram(auth_, "alice", "wrong"),
                       RunScram(auth_, "alice", "correct horse", tampered),
                       RunScram(auth_, "nobody", "correct horse")}) {
    ASSERT_TRUE(run.first.ok()) << run.first.status();
    EXPECT_EQ(CodeOf(run.final_step), v1::AUTHENTICATIONFAILED);
    EXPECT_EQ(run.final_step.status().message(),
              "Authentication failed: wrong user name or password");
  }
  // Unknown: the same salt every time, and the configured count.
  ScramRun again = RunScram(auth_, "nobody", "x");
  EXPECT_EQ(again.salt, RunScram(auth_, "nobody", "y").salt);
  EXPECT_EQ(again.salt.size(), scram::kSaltBytes);
  EXPECT_EQ(again.iterations, scram::kMinIterations);
}

TEST_F(AuthTest, ScramFailuresAreThrottledWithPasswordLogins) {
  Restart(FixedClock(FastOptions()), {kKeyA});
  ASSERT_EQ(Outcome(Login("bob", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  EXPECT_EQ(Outcome(Login("bob", "wrong")), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(CodeOf(RunScram(auth_, "bob", "wrong").final_step), v1::AUTHENTICATIONFAILED);
  EXPECT_EQ(CodeOf(RunScram(auth_, "bob", "wrong").final_step), v1::AUTHENTICATIONFAILED);
  // Three failures of the pair, by either mechanism: both now wait.
  EXPECT_EQ(CodeOf(RunScram(auth_, "bob", "correct horse").final_step), v1::THROTTLED);
  EXPECT_EQ(Outcome(Login("bob", "correct horse")), v1::THROTTLED);
}

TEST_F(AuthTest, ScramStateIsSealedAndExpires) {
  ASSERT_EQ(Outcome(Login("alice", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  ScramOptions altered;
  altered.alter_state = [](std::string& state) { state[3] = state[3] == 'x' ? 'y' : 'x'; };
  ScramRun run = RunScram(auth_, "alice", "correct horse", altered);
  EXPECT_EQ(CodeOf(run.final_step), v1::AUTHENTICATIONFAILED);
  EXPECT_NE(run.final_step.status().message().find("conversation state"), absl::string_view::npos);
  // A state from an earlier conversation, past its lifetime.
  int64_t now = 1'800'000'000'000;
  AuthOptions options = FastOptions();
  options.clock_ms = [&now] { return now; };
  Restart(options, {kKeyA});
  ScramOptions late;
  late.alter_state = [&now](std::string&) { now += 5 * 60 * 1000 + 1; };
  run = RunScram(auth_, "alice", "correct horse", late);
  EXPECT_NE(run.final_step.status().message().find("conversation state"), absl::string_view::npos);
  // Sealed with the key ring: a replica with the same keys continues it.
  ScramOptions elsewhere;
  elsewhere.alter_state = [this](std::string&) { Restart(FastOptions(), {kKeyB, kKeyA}); };
  run = RunScram(auth_, "alice", "correct horse", elsewhere);
  EXPECT_TRUE(run.final_step.ok()) << run.final_step.status();
}

TEST_F(AuthTest, ScramPlusChecksTheChannelBinding) {
  ASSERT_EQ(Outcome(Login("alice", "correct horse")), v1::ERROR_CODE_UNSPECIFIED);
  ScramOptions bound;
  bound.gs2 = "p=tls-exporter,,";
  bound.plus = true;
  bound.binding_type = "tls-exporter";
  bound.binding_data = std::string(32, '\x42');
  bound.client_binding = bound.binding_data;
  ScramRun run = RunScram(auth_, "alice", "correct horse", bound);
  ASSERT_TRUE(run.final_step.ok()) << run.final_step.status();
  EXPECT_EQ(run.final_step->sasl_step(), run.expected_server_final);
  // The client bound to another channel (a man in the middle's).
  ScramOptions other = bound;
  other.client_binding = std::string(32, '\x43');
  EXPECT_EQ(CodeOf(RunScram(auth_, "alice", "correct horse", other).final_step),
            v1::AUTHENTICATIONFAILED);
  // A type the connection does not have.
  ScramOptions wrong_type = bound;
  wrong_type.gs2 = "p=tls-unique,,";
  EXPECT_EQ(CodeOf(RunScram(auth_, "alice", "correct horse", wrong_type).first),
            v1::AUTHENTICATIONFAILED);
  // "y" where -PLUS was offered is a downgrade; where none was, it is fine.
  ScramOptions downgraded;
  downgraded.gs2 = "y,,";
  downgraded.binding_type = "tls-unique";
  downgraded.binding_data = std::string(12, '\x44');
  EXPECT_EQ(CodeOf(RunScram(auth_, "alice", "correct horse", downgraded).first),
            v1::AUTHENTICATIONFAILED);
  ScramOptions no_binding;
  no_binding.gs2 = "y,,";
  EXPECT_TRUE(RunScram(auth_, "alice", "correct horse", no_binding).final_step.ok());
  // -PLUS without p=, and p= without -PLUS, are malformed.
  ScramOptions plus_without_p = bound;
  plus_without_p.gs2 = "n,,";
  EXPECT_EQ(CodeOf(RunScram(auth_, "alice", "correct horse", plus_without_p).first),
            v1::BAD_REQUEST);
  ScramOptions p_without_plus = bound;
  p_without_plus.plus = false;
  EXPECT_EQ(CodeOf(RunScram(auth_, "alice", "correct horse", p_without_plus).first),
            v1::BAD_REQUEST);
}

TEST_F(AuthTest, ScramOverlongNamesAndForeignAuthzidAreRefusedBeforeAnyWork) {
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::SCRAM_SHA_256);
  request.set_client_ip("192.0.2.1");
  request.set_sasl_step(absl::StrCat("n,,n=", std::string(kMaxUsernameOctets + 1, 'a'), ",r=x"));
  EXPECT_EQ(CodeOf(auth_->Authenticate(request)), v1::BAD_REQUEST);
  request.set_sasl_step(absl::StrCat("n,,n=", std::string(kMaxUsernameOctets, 'a'), ",r=x"));
  EXPECT_TRUE(auth_->Authenticate(request).ok());
  request.set_sasl_step("n,a=bob,n=alice,r=x");
  EXPECT_EQ(CodeOf(auth_->Authenticate(request)), v1::AUTHORIZATIONFAILED);
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
