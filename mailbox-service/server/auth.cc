#include "mailbox-service/server/auth.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr std::string_view kTokenVersion = "v1";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

absl::Status AuthFailed() {
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "Authentication failed: wrong user name or password");
}

}  // namespace

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buffer(bytes);
  if (RAND_bytes(buffer.data(), static_cast<int>(buffer.size())) != 1) {
    // Without randomness no credential can be made safely.
    abort();
  }
  return Hex(buffer.data(), buffer.size());
}

absl::StatusOr<std::string> HashPassword(std::string_view password,
                                         const PasswordHashOptions& options) {
  unsigned char salt[kSaltBytes];
  if (RAND_bytes(salt, sizeof(salt)) != 1) {
    return absl::InternalError("no randomness for a password salt");
  }
  std::string encoded(argon2_encodedlen(options.time_cost, options.memory_kib,
                                        options.parallelism, kSaltBytes, kHashBytes, Argon2_id),
                      '\0');
  int rc = argon2id_hash_encoded(options.time_cost, options.memory_kib, options.parallelism,
                                 password.data(), password.size(), salt, sizeof(salt),
                                 kHashBytes, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return absl::InternalError(absl::StrCat("argon2id: ", argon2_error_message(rc)));
  }
  encoded.resize(strlen(encoded.c_str()));
  return encoded;
}

bool VerifyPassword(std::string_view encoded, std::string_view password) {
  std::string terminated(encoded);
  return argon2id_verify(terminated.c_str(), password.data(), password.size()) == ARGON2_OK;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(store::Store* store,
                                                                     AuthOptions options) {
  auto key = store->GetOrCreateSecret("session-hmac-key", RandomHex(32));
  if (!key.ok()) {
    return key.status();
  }
  auto authenticator =
      std::unique_ptr<Authenticator>(new Authenticator(store, options, *std::move(key)));
  auto dummy = HashPassword(RandomHex(16), options.hash);
  if (!dummy.ok()) {
    return dummy.status();
  }
  authenticator->dummy_hash_ = *std::move(dummy);
  return authenticator;
}

Authenticator::Authenticator(store::Store* store, AuthOptions options, std::string key)
    : store_(store), options_(options), key_(std::move(key)) {}

std::string Authenticator::Mac(std::string_view payload) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &mac_size);
  return Hex(mac, mac_size);
}

std::string Authenticator::IssueSessionToken(uint64_t user_id, int64_t expires_unix) const {
  std::string payload = absl::StrCat(std::string(kTokenVersion), ".", user_id, ".", expires_unix);
  return absl::StrCat(payload, ".", Mac(payload));
}

absl::StatusOr<uint64_t> Authenticator::CheckSessionToken(std::string_view token) const {
  auto invalid = [] {
    return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                         "session credential is missing, malformed, expired or forged");
  };
  size_t last_dot = token.rfind('.');
  if (last_dot == std::string_view::npos) {
    return invalid();
  }
  std::string_view payload = token.substr(0, last_dot);
  std::string expected = Mac(payload);
  std::string_view given = token.substr(last_dot + 1);
  if (given.size() != expected.size() ||
      CRYPTO_memcmp(given.data(), expected.data(), expected.size()) != 0) {
    return invalid();
  }
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(payload.data(), payload.size()), '.');
  uint64_t user_id = 0;
  int64_t expires = 0;
  if (parts.size() != 3 || parts[0] != kTokenVersion || !absl::SimpleAtoi(parts[1], &user_id) ||
      !absl::SimpleAtoi(parts[2], &expires)) {
    return invalid();
  }
  if (expires * 1000 < NowMs()) {
    return invalid();
  }
  // A deleted user's sessions end with the user (the store never reuses ids).
  auto user = store_->FindUserById(user_id);
  if (!user.ok()) {
    if (absl::IsNotFound(user.status())) {
      return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                           "the user of this session no longer exists");
    }
    return user.status();
  }
  return user_id;
}

absl::StatusOr<int64_t> Authenticator::ThrottleDelay(std::string_view key, int free_failures,
                                                     int64_t now_ms) {
  auto state = store_->AuthFailures(key, now_ms, options_.throttle.window_ms);
  if (!state.ok()) {
    return state.status();
  }
  auto [count, last_ms] = *state;
  if (count < free_failures) {
    return 0;
  }
  // Doubling delays past the free allowance: 1 s, 2 s, 4 s ... capped.
  int shift = std::min(count - free_failures, 30);
  int64_t delay = std::min<int64_t>(int64_t{1000} << shift, options_.throttle.max_delay_ms);
  return std::max<int64_t>(0, last_ms + delay - now_ms);
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::Authenticate(
    const v1::AuthenticateRequest& request, absl::Time deadline) {
  if (request.mechanism() != v1::PASSWORD) {
    return v1::MakeError(absl::StatusCode::kUnimplemented, v1::CANNOT,
                         "only password authentication is offered by this service");
  }
  if (!request.authzid().empty() && request.authzid() != request.username()) {
    return v1::MakeError(absl::StatusCode::kPermissionDenied, v1::AUTHORIZATIONFAILED,
                         "acting as another user is not permitted");
  }
  const int64_t now_ms = NowMs();
  const std::string user_key = absl::StrCat("user:", request.username());
  const std::string ip_key = absl::StrCat("ip:", request.client_ip());
  for (auto [key, allowance] : {std::pair<const std::string*, int>{&user_key,
                                                                  options_.throttle.user_free_failures},
                                {&ip_key, options_.throttle.ip_free_failures}}) {
    if (key == &ip_key && request.client_ip().empty()) {
      continue;
    }
    auto delay = ThrottleDelay(*key, allowance, now_ms);
    if (!delay.ok()) {
      return delay.status();
    }
    if (*delay > 0) {
      return v1::MakeError(absl::StatusCode::kResourceExhausted, v1::THROTTLED,
                           absl::StrCat("Too many failed logins; try again in ",
                                        (*delay + 999) / 1000, " s"),
                           *delay);
    }
  }

  auto user = store_->FindUser(request.username());
  std::optional<bool> verified;
  if (user.ok()) {
    verified = verifier_.VerifyBy(user->password_hash, request.password(), deadline);
  } else if (absl::IsNotFound(user.status())) {
    // Same work as for a real user, so timing does not tell which names exist.
    verified = verifier_.VerifyBy(dummy_hash_, request.password(), deadline);
    if (verified.has_value()) {
      verified = false;
    }
  } else {
    return user.status();
  }
  if (!verified.has_value()) {
    return v1::MakeError(absl::StatusCode::kDeadlineExceeded, v1::UNAVAILABLE,
                         "Too many logins at once: the password could not be checked in "
                         "time; try again");
  }
  if (!*verified) {
    for (const std::string* key : {&user_key, &ip_key}) {
      if (key == &ip_key && request.client_ip().empty()) {
        continue;
      }
      auto recorded = store_->RecordAuthFailure(*key, now_ms, options_.throttle.window_ms);
      if (!recorded.ok()) {
        return recorded.status();
      }
    }
    return AuthFailed();
  }
  if (auto cleared = store_->ClearAuthFailures(user_key); !cleared.ok()) {
    return cleared;
  }
  v1::AuthenticateResponse response;
  response.mutable_principal()->set_user_id(user->id);
  response.mutable_principal()->set_username(user->username);
  int64_t expires = now_ms / 1000 + options_.session_lifetime_s;
  response.set_session_token(IssueSessionToken(user->id, expires));
  response.set_expires_unix(expires);
  return response;
}

}  // namespace mailbox::server
