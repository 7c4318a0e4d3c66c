// Credentials of the mailbox service: password hashing, session tokens and the
// throttling of failed authentications.
//
// Passwords are kept only as argon2id hashes (libargon2). A successful Authenticate
// yields a session token that the gateway sends on every later call; the token is
// an HMAC over (user id, credential generation, expiry) with a key kept outside
// the database (data_dir.h), so any replica given the same key file can check it
// and no gateway can mint one. A password change bumps the user's credential
// generation, which ends every session made before it.
//
// Failed attempts are counted in the store per (user, client IP) and per client IP,
// so the limits hold across connections and replicas; see ThrottleDelayMs for the
// policy and docs/security.md ("Login throttling") for why.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox-service/server/bearer_token.h"
#include "mailbox-service/server/password_verifier.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::server {

struct PasswordHashOptions {
  // OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane).
  uint32_t time_cost = 2;
  uint32_t memory_kib = 19 * 1024;
  uint32_t parallelism = 1;
  // PBKDF2 iterations of the SCRAM-SHA-256 keys kept beside the hash (scram.h).
  // RFC 7677 §4 asks for at least 4096; twice that costs a client a few
  // milliseconds per login and doubles the work of a guess against stolen keys.
  uint32_t scram_iterations = 8192;
};

// An encoded argon2id hash ("$argon2id$v=19$m=...") of `password` with a fresh salt.
absl::StatusOr<std::string> HashPassword(std::string_view password,
                                         const PasswordHashOptions& options);
// The encoded SCRAM-SHA-256 keys (scram.h) of `password`, fresh salt, stored beside
// its hash.
absl::StatusOr<std::string> ScramKeysFor(std::string_view password,
                                         const PasswordHashOptions& options);
// True if `password` matches `encoded`. Never throws; a malformed hash is a mismatch.
bool VerifyPassword(std::string_view encoded, std::string_view password);

// Longest user name accepted by Authenticate (as by CreateUser): longer ones are
// refused before any lookup, hash or throttle record.
inline constexpr size_t kMaxUsernameOctets = 255;

struct ThrottleOptions {
  int64_t window_ms = 15 * 60 * 1000;
  // Failures of one user name from one client address before that client waits.
  int user_free_failures = 5;
  // Failures from one client address (any user names) before the address itself is
  // slowed: past it, each further attempt from the address waits 1 s after the
  // address's latest failure, then 2 s, 4 s ... up to max_delay_ms.
  int ip_free_failures = 20;
  int64_t max_delay_ms = 15 * 60 * 1000;
  // Rows the store keeps for throttling, in all; when full, the address holding the
  // most rows is refused (or pays with its oldest rows for another's attempt).
  int64_t max_records = 100000;
  // Rows one address may hold in the window; 0: derived from the policy
  // (MaxRecordsPerAddress).
  int64_t max_records_per_address = 0;
  // IPv6 clients are counted by this prefix of their address (one /64 is usually
  // one subscriber, who can pick any address in it).
  int ipv6_prefix_bits = 64;
};

// The address key the throttle counts a client under: an IPv4-mapped IPv6 address
// as its IPv4 address, other IPv6 addresses as their first `ipv6_prefix_bits` bits
// ("2001:db8:1:2::/64"), IPv4 as is; anything unparseable as given, cut at 64
// octets.
std::string ThrottleAddress(std::string_view client_ip, int ipv6_prefix_bits);

// The rows one address can hold in a window when it tries as fast as the policy
// lets it (two rows per attempt: its pair and its address), with room for two
// more attempts: options.max_records_per_address if set.
int64_t MaxRecordsPerAddress(const ThrottleOptions& options);

// The throttle policy: how long an attempt must wait (0: check its password) given
// the recent failures (attempts in flight included) of its (user, client address)
// pair and of its client address (nullptr when unknown). The longer of two waits:
// * the pair's: doubling delays from 1 s, capped at max_delay_ms, after
//   user_free_failures failures (after 1 while the address is over its budget);
// * the address's: past ip_free_failures failures of the address, doubling delays
//   from 1 s after the address's latest failure, capped at max_delay_ms, for every
//   attempt from the address, so a sprayer gets a few tries per window however many
//   user names it goes through.
// Failures from one address never delay the same user from another address. A pair
// that logged in successfully within the window (`recent_login`) is exempt from the
// address's wait and keeps user_free_failures: users who already logged in from a
// shared address are not slowed by an attacker behind it.
int64_t ThrottleDelayMs(const ThrottleOptions& options, const store::AuthAttemptState& pair,
                        const store::AuthAttemptState* ip, int64_t now_ms,
                        bool recent_login = false);

struct AuthOptions {
  PasswordHashOptions hash;
  ThrottleOptions throttle;
  int64_t session_lifetime_s = 24 * 3600;
  // Unix milliseconds now; empty means the system clock. Tests fix the time here.
  std::function<int64_t()> clock_ms;
  // Checks OAuth 2.0 bearer tokens (mechanism BEARER); null: BEARER is not
  // offered. Must outlive the Authenticator.
  BearerValidator* bearer = nullptr;
};

// Keys that sign and check session tokens: `keys[0]` signs, every key checks (so a
// rotation does not end sessions signed with the previous key).
struct SessionKeyRing {
  std::vector<std::string> keys;
};

class Authenticator {
 public:
  // `store` must outlive this. `keys` must hold at least one key.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(store::Store* store,
                                                               AuthOptions options,
                                                               SessionKeyRing keys);

  // Checks a password login (mechanism PASSWORD), runs one step of a SCRAM
  // conversation (SCRAM_SHA_256: a response without a session token carries the
  // server's next message and the sealed state for the next step), or checks a
  // bearer token (mechanism BEARER: `token`, and `username` if the client named
  // one, which must then be the token's user). Errors:
  // UNAUTHENTICATED/AUTHENTICATIONFAILED (wrong user or password, or a token that
  // is invalid, expired, for another user or for a user that does not exist,
  // indistinguishable), RESOURCE_EXHAUSTED/THROTTLED with retry_after_ms,
  // UNIMPLEMENTED for mechanisms not offered yet, DEADLINE_EXCEEDED/UNAVAILABLE when
  // the password could not be checked by `deadline` (the caller's own deadline: too
  // many logins were waiting for the hash; no failure is recorded).
  absl::StatusOr<v1::AuthenticateResponse> Authenticate(
      const v1::AuthenticateRequest& request, absl::Time deadline = absl::InfiniteFuture());

  // The user id a session token stands for, or UNAUTHENTICATED (also once the
  // user was deleted or their password changed).
  // `expires_unix`, if given, receives the token's expiry (Unix seconds).
  absl::StatusOr<uint64_t> CheckSessionToken(std::string_view token,
                                             int64_t* expires_unix = nullptr) const;

  std::string IssueSessionToken(uint64_t user_id, uint64_t credential_generation,
                                int64_t expires_unix) const;

  const AuthOptions& options() const { return options_; }

 private:
  Authenticator(store::Store* store, AuthOptions options, SessionKeyRing keys);
  static std::string Mac(std::string_view key, std::string_view payload);
  int64_t NowMs() const;

  // One attempt's throttle records (see ThrottleDelayMs): reserved as a failure
  // before the credential is checked.
  struct Attempt {
    std::vector<int64_t> rows;
    std::string login_key;  // empty when the client's address is unknown
  };
  // Reserves an attempt for `username` from `client_ip`, or THROTTLED.
  absl::StatusOr<Attempt> ReserveAttempt(std::string_view username, std::string_view client_ip,
                                         int64_t now_ms);
  // The credential was right: releases the attempt's records and remembers the login.
  absl::Status AttemptSucceeded(const Attempt& attempt, int64_t now_ms);
  // AUTHENTICATE OAUTHBEARER / XOAUTH2, after Authenticate checked the names:
  // checks request.token() with options_.bearer, through the same throttle as a
  // password.
  absl::StatusOr<v1::AuthenticateResponse> BearerLogin(const v1::AuthenticateRequest& request);
  // The response of a successful authentication of `user`.
  v1::AuthenticateResponse LoggedIn(const store::UserRecord& user, int64_t now_ms) const;
  // Gives a user who logged in with a password their SCRAM keys if they have none
  // yet (users from before SCRAM); failures only mean another try next time.
  void AddScramKeys(const store::UserRecord& user, std::string_view password);

  // scram_auth.cc: the two steps of a SCRAM-SHA-256(-PLUS) conversation.
  absl::StatusOr<v1::AuthenticateResponse> ScramStep(const v1::AuthenticateRequest& request);
  absl::StatusOr<v1::AuthenticateResponse> ScramFirst(const v1::AuthenticateRequest& request,
                                                      int64_t now_ms);
  absl::StatusOr<v1::AuthenticateResponse> ScramFinal(const v1::AuthenticateRequest& request,
                                                      int64_t now_ms);
  std::string SealScramState(std::string_view payload) const;
  std::optional<std::string> OpenScramState(std::string_view sealed) const;

  store::Store* store_;
  AuthOptions options_;
  SessionKeyRing keys_;
  std::string dummy_hash_;  // verified against for unknown users, to equalise timing
  PasswordVerifier verifier_;
};

// Random bytes as lowercase hex (OpenSSL RAND_bytes).
std::string RandomHex(size_t bytes);

}  // namespace mailbox::server
