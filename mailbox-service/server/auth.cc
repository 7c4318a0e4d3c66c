#include "mailbox-service/server/auth.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <iostream>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
// v2: user id, credential generation, expiry. v1 (before generations): user id, expiry.
constexpr std::string_view kTokenVersion = "v2";
constexpr std::string_view kOldTokenVersion = "v1";

int64_t SystemNowMs() {
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

// The same answer for every bad token: why it was refused goes to the log only.
absl::Status BearerFailed() {
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "Authentication failed: the token is invalid or expired");
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

namespace {

// Doubling delays from 1 s past `allowance` failures, capped; the time left to wait
// after `latest_ms`.
int64_t Backoff(const ThrottleOptions& options, int failures, int allowance, int64_t latest_ms,
                int64_t now_ms) {
  if (failures < allowance) {
    return 0;
  }
  int shift = std::min(failures - allowance, 30);
  int64_t delay = std::min<int64_t>(int64_t{1000} << shift, options.max_delay_ms);
  return std::max<int64_t>(0, latest_ms + delay - now_ms);
}

}  // namespace

int64_t ThrottleDelayMs(const ThrottleOptions& options, const store::AuthAttemptState& pair,
                        const store::AuthAttemptState* ip, int64_t now_ms, bool recent_login) {
  int allowance = options.user_free_failures;
  int64_t ip_wait = 0;
  if (!recent_login && ip != nullptr && ip->failures >= options.ip_free_failures) {
    // Many failures from this address, over many user names (password
    // spraying), or an attacker behind the same NAT or load balancer as honest
    // users. A client that already failed for this user waits after one failure,
    // and the address as a whole is slowed, whatever user name it tries next.
    allowance = std::min(allowance, 1);
    ip_wait = Backoff(options, ip->failures, options.ip_free_failures, ip->latest_ms, now_ms);
  }
  return std::max(ip_wait, Backoff(options, pair.failures, allowance, pair.latest_ms, now_ms));
}

std::string ThrottleAddress(std::string_view client_ip, int ipv6_prefix_bits) {
  constexpr size_t kMaxUnparsed = 64;
  std::string text(client_ip.substr(0, std::min<size_t>(client_ip.size(), 128)));
  // A scoped link-local address ("fe80::1%eth0"): the zone is not part of it.
  if (size_t zone = text.find('%'); zone != std::string::npos) {
    text.resize(zone);
  }
  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) {
    char out[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, bytes, out, sizeof(out));
    return out;
  }
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) {
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes, kMapped, sizeof(kMapped)) == 0) {
      // ::ffff:a.b.c.d is the IPv4 client a.b.c.d on a dual-stack socket.
      char out[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, bytes + 12, out, sizeof(out));
      return out;
    }
    const int bits = std::clamp(ipv6_prefix_bits, 0, 128);
    for (int i = 0; i < 16; ++i) {
      const int keep = std::clamp(bits - i * 8, 0, 8);
      bytes[i] &= static_cast<unsigned char>(0xff00 >> keep);
    }
    char out[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, bytes, out, sizeof(out));
    return absl::StrCat(out, "/", bits);
  }
  return std::string(client_ip.substr(0, std::min(client_ip.size(), kMaxUnparsed)));
}

int64_t MaxRecordsPerAddress(const ThrottleOptions& options) {
  if (options.max_records_per_address > 0) {
    return options.max_records_per_address;
  }
  // Attempts an address can make in one window: its free failures, then one per
  // doubling delay until the delays fill the window.
  int64_t attempts = options.ip_free_failures;
  int64_t elapsed = 0;
  int64_t delay = 1000;
  for (; delay < options.max_delay_ms && elapsed <= options.window_ms; delay *= 2) {
    elapsed += delay;
    ++attempts;
  }
  if (elapsed <= options.window_ms) {
    // At the cap: one attempt per max_delay_ms for the rest of the window.
    attempts += (options.window_ms - elapsed) / std::max<int64_t>(options.max_delay_ms, 1) + 1;
  }
  return 2 * (attempts + 2);
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(store::Store* store,
                                                                     AuthOptions options,
                                                                     SessionKeyRing keys) {
  if (keys.keys.empty()) {
    return absl::InvalidArgumentError("no session key to sign tokens with");
  }
  auto authenticator =
      std::unique_ptr<Authenticator>(new Authenticator(store, options, std::move(keys)));
  auto dummy = HashPassword(RandomHex(16), options.hash);
  if (!dummy.ok()) {
    return dummy.status();
  }
  authenticator->dummy_hash_ = *std::move(dummy);
  return authenticator;
}

Authenticator::Authenticator(store::Store* store, AuthOptions options, SessionKeyRing keys)
    : store_(store), options_(std::move(options)), keys_(std::move(keys)) {}

int64_t Authenticator::NowMs() const {
  return options_.clock_ms ? options_.clock_ms() : SystemNowMs();
}

std::string Authenticator::Mac(std::string_view key, std::string_view payload) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &mac_size);
  return Hex(mac, mac_size);
}

std::string Authenticator::IssueSessionToken(uint64_t user_id, uint64_t credential_generation,
                                             int64_t expires_unix) const {
  std::string payload = absl::StrCat(std::string(kTokenVersion), ".", user_id, ".",
                                     credential_generation, ".", expires_unix);
  return absl::StrCat(payload, ".", Mac(keys_.keys.front(), payload));
}

absl::StatusOr<uint64_t> Authenticator::CheckSessionToken(std::string_view token,
                                                          int64_t* expires_unix) const {
  auto invalid = [] {
    return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                         "session credential is missing, malformed, expired or forged");
  };
  size_t last_dot = token.rfind('.');
  if (last_dot == std::string_view::npos) {
    return invalid();
  }
  std::string_view payload = token.substr(0, last_dot);
  std::string_view given = token.substr(last_dot + 1);
  bool signed_by_us = false;
  for (const std::string& key : keys_.keys) {
    std::string expected = Mac(key, payload);
    signed_by_us =
        signed_by_us || (given.size() == expected.size() &&
                         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0);
  }
  if (!signed_by_us) {
    return invalid();
  }
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(payload.data(), payload.size()), '.');
  uint64_t user_id = 0;
  uint64_t generation = 0;
  int64_t expires = 0;
  if (parts.size() == 3 && parts[0] == kOldTokenVersion) {
    // Issued before tokens carried a generation: valid while the password is
    // the one it was issued under, i.e. has never been changed since the
    // upgrade.
    if (!absl::SimpleAtoi(parts[1], &user_id) || !absl::SimpleAtoi(parts[2], &expires)) {
      return invalid();
    }
  } else if (parts.size() != 4 || parts[0] != kTokenVersion ||
             !absl::SimpleAtoi(parts[1], &user_id) || !absl::SimpleAtoi(parts[2], &generation) ||
             !absl::SimpleAtoi(parts[3], &expires)) {
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
  if (user->credential_generation != generation) {
    return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                         "the password of this account was changed after this session "
                         "logged in; log in again");
  }
  if (expires_unix != nullptr) {
    *expires_unix = expires;
  }
  return user_id;
}

absl::StatusOr<Authenticator::Attempt> Authenticator::ReserveAttempt(
    std::string_view username, std::string_view client_ip, int64_t now_ms) {
  const bool ip_known = !client_ip.empty();
  const ThrottleOptions& throttle = options_.throttle;
  // Clients are counted by address group (an IPv6 /64, an IPv4 address however
  // written), so neither a fresh address from the same prefix nor another
  // spelling of one gives a new allowance.
  const std::string address =
      ip_known ? ThrottleAddress(client_ip, throttle.ipv6_prefix_bits) : "";
  // Length-prefixed, so no user name can make one pair's key equal another's.
  const std::string pair_key = absl::StrCat("pair:", address.size(), ":", address, ":",
                                            absl::string_view(username.data(), username.size()));
  std::vector<std::string> keys = {pair_key};
  if (ip_known) {
    keys.push_back(absl::StrCat("ip:", address));
  }
  store::Store::AuthAttemptLimits limits;
  limits.window_ms = throttle.window_ms;
  limits.max_rows = throttle.max_records;
  limits.max_rows_per_address = MaxRecordsPerAddress(throttle);
  // A row under this key marks a recent successful login of the pair.
  const std::string login_key = absl::StrCat("login:", pair_key);
  limits.read_only_keys = {login_key};
  // The check and the record are one transaction: the attempt counts as a
  // failure before its credential is checked, so parallel attempts see each
  // other.
  auto reservation = store_->ReserveAuthAttempt(
      keys, address, now_ms, limits, [&](const std::vector<store::AuthAttemptState>& states) {
        return ThrottleDelayMs(throttle, states[0], ip_known ? &states[1] : nullptr, now_ms,
                               states.back().failures > 0);
      });
  if (!reservation.ok()) {
    return reservation.status();
  }
  if (reservation->retry_after_ms > 0) {
    const int64_t delay = reservation->retry_after_ms;
    mailbox::log::Warning(mailbox::log::event::kLoginThrottled,
                          {{"client", ip_known ? client_ip : std::string_view("unknown")},
                           {"user", username},
                           {"retry_after_ms", delay}});
    return v1::MakeError(
        absl::StatusCode::kResourceExhausted, v1::THROTTLED,
        absl::StrCat("Too many failed logins; try again in ", (delay + 999) / 1000, " s"), delay);
  }
  Attempt attempt;
  attempt.rows = std::move(reservation->rows);
  if (ip_known) {
    attempt.login_key = login_key;
  }
  return attempt;
}

absl::Status Authenticator::AttemptSucceeded(const Attempt& attempt, int64_t now_ms) {
  // Only this attempt's own rows go. Earlier failures of the pair stay until they
  // leave the window: behind a shared address the pair may be an attacker's as
  // well as the user's, and a user's login must not hand the attacker a new
  // allowance (nor delete rows other attempts in flight reserved).
  if (auto released = store_->ReleaseAuthAttempt(attempt.rows); !released.ok()) {
    return released;
  }
  // Remember the login for a window (one row per pair): this client is exempt
  // from its address's wait (see ThrottleDelayMs).
  if (!attempt.login_key.empty()) {
    if (auto cleared = store_->ClearAuthFailures(attempt.login_key); !cleared.ok()) {
      return cleared;
    }
    if (auto noted =
            store_->RecordAuthFailure(attempt.login_key, now_ms, options_.throttle.window_ms);
        !noted.ok()) {
      return noted.status();
    }
  }
  return absl::OkStatus();
}

v1::AuthenticateResponse Authenticator::LoggedIn(const store::UserRecord& user,
                                                 int64_t now_ms) const {
  v1::AuthenticateResponse response;
  response.mutable_principal()->set_user_id(user.id);
  response.mutable_principal()->set_username(user.username);
  int64_t expires = now_ms / 1000 + options_.session_lifetime_s;
  response.set_session_token(IssueSessionToken(user.id, user.credential_generation, expires));
  response.set_expires_unix(expires);
  return response;
}

void Authenticator::AddScramKeys(const store::UserRecord& user, std::string_view password) {
  if (!user.scram_sha256.empty()) {
    return;
  }
  auto keys = ScramKeysFor(password, options_.hash);
  if (keys.ok()) {
    // Stored only if the password is still the one just checked.
    store_->SetScramKeys(user.username, user.password_hash, *keys).IgnoreError();
  }
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::Authenticate(
    const v1::AuthenticateRequest& request, absl::Time deadline) {
  if (request.mechanism() == v1::SCRAM_SHA_256) {
    return ScramStep(request);
  }
  if (request.mechanism() != v1::PASSWORD && request.mechanism() != v1::BEARER) {
    return v1::MakeError(absl::StatusCode::kUnimplemented, v1::CANNOT,
                         "only password, SCRAM-SHA-256 and bearer token authentication are "
                         "offered by this service");
  }
  if (request.username().size() > kMaxUsernameOctets) {
    return v1::BadRequest(absl::StrCat("user name is longer than ", kMaxUsernameOctets, " octets"));
  }
  if (!request.authzid().empty() && request.authzid() != request.username()) {
    return v1::MakeError(absl::StatusCode::kPermissionDenied, v1::AUTHORIZATIONFAILED,
                         "acting as another user is not permitted");
  }
  if (request.mechanism() == v1::BEARER) {
    return BearerLogin(request);
  }
  const int64_t now_ms = NowMs();
  auto attempt = ReserveAttempt(request.username(), request.client_ip(), now_ms);
  if (!attempt.ok()) {
    return attempt.status();
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
    store_->ReleaseAuthAttempt(attempt->rows).IgnoreError();
    return user.status();
  }
  if (!verified.has_value()) {
    // Not a failure of the client's: nothing is held against it.
    if (auto released = store_->ReleaseAuthAttempt(attempt->rows); !released.ok()) {
      return released;
    }
    return v1::MakeError(absl::StatusCode::kDeadlineExceeded, v1::UNAVAILABLE,
                         "Too many logins at once: the password could not be checked in "
                         "time; try again");
  }
  if (!*verified) {
    // The reserved rows stay: they are the recorded failure.
    return AuthFailed();
  }
  if (auto succeeded = AttemptSucceeded(*attempt, now_ms); !succeeded.ok()) {
    return succeeded;
  }
  AddScramKeys(*user, request.password());
  return LoggedIn(*user, now_ms);
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::BearerLogin(
    const v1::AuthenticateRequest& request) {
  if (options_.bearer == nullptr) {
    return v1::MakeError(absl::StatusCode::kUnimplemented, v1::CANNOT,
                         "OAuth bearer tokens are not configured on this service");
  }
  const int64_t now_ms = NowMs();
  // A token counts against the throttle like a password: the pair is the
  // client's address and the user it named (empty if it named none).
  auto attempt = ReserveAttempt(request.username(), request.client_ip(), now_ms);
  if (!attempt.ok()) {
    return attempt.status();
  }
  const std::string& client = request.client_ip();
  auto name = options_.bearer->Validate(request.token(), now_ms / 1000);
  if (absl::IsUnavailable(name.status())) {
    // The introspection endpoint could not be asked: not the client's failure.
    mailbox::log::Error(mailbox::log::event::kBearerRefused,
                        {{"client", client},
                         {"reason", "introspection_unavailable"},
                         {"error", std::string(name.status().message())}});
    if (auto released = store_->ReleaseAuthAttempt(attempt->rows); !released.ok()) {
      return released;
    }
    return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
                         "The identity provider could not be asked about the token; try again");
  }
  if (!name.ok()) {
    mailbox::log::Warning(mailbox::log::event::kBearerRefused,
                          {{"client", client},
                           {"reason", "invalid_token"},
                           {"error", std::string(name.status().message())}});
    return BearerFailed();  // the reserved rows stay: they are the recorded failure
  }
  if (!request.username().empty() && request.username() != *name) {
    mailbox::log::Warning(mailbox::log::event::kBearerRefused,
                          {{"client", client},
                           {"user", request.username()},
                           {"reason", "other_user"}});
    return BearerFailed();
  }
  auto user = store_->FindUser(*name);
  if (absl::IsNotFound(user.status())) {
    // No account is made from a token: an unknown user fails like a bad token.
    mailbox::log::Warning(mailbox::log::event::kBearerRefused,
                          {{"client", client}, {"user", *name}, {"reason", "unknown_user"}});
    return BearerFailed();
  }
  if (!user.ok()) {
    store_->ReleaseAuthAttempt(attempt->rows).IgnoreError();
    return user.status();
  }
  if (auto succeeded = AttemptSucceeded(*attempt, now_ms); !succeeded.ok()) {
    return succeeded;
  }
  return LoggedIn(*user, now_ms);
}

}  // namespace mailbox::server
