// Credentials of the mailbox service: password hashing, session tokens and the
// throttling of failed authentications.
//
// Passwords are kept only as argon2id hashes (libargon2). A successful Authenticate
// yields a session token that the gateway sends on every later call; the token is
// an HMAC over (user id, expiry) with a key shared by all replicas through the
// store, so any replica can check it and no gateway can mint one.
//
// Failures are counted in the store per user and per client IP, so the limits hold
// across connections, gateway replicas and service replicas.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox-service/server/password_verifier.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::server {

struct PasswordHashOptions {
  // OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane).
  uint32_t time_cost = 2;
  uint32_t memory_kib = 19 * 1024;
  uint32_t parallelism = 1;
};

// An encoded argon2id hash ("$argon2id$v=19$m=...") of `password` with a fresh salt.
absl::StatusOr<std::string> HashPassword(std::string_view password,
                                         const PasswordHashOptions& options);
// True if `password` matches `encoded`. Never throws; a malformed hash is a mismatch.
bool VerifyPassword(std::string_view encoded, std::string_view password);

struct ThrottleOptions {
  int64_t window_ms = 15 * 60 * 1000;
  int user_free_failures = 5;   // failures per user before delays start
  int ip_free_failures = 20;    // failures per client IP before delays start
  int64_t max_delay_ms = 15 * 60 * 1000;
};

struct AuthOptions {
  PasswordHashOptions hash;
  ThrottleOptions throttle;
  int64_t session_lifetime_s = 24 * 3600;
};

class Authenticator {
 public:
  // `store` must outlive this. Loads (or creates) the shared session key.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(store::Store* store,
                                                               AuthOptions options);

  // Checks a password login. Errors: UNAUTHENTICATED/AUTHENTICATIONFAILED (wrong user
  // or password, indistinguishable), RESOURCE_EXHAUSTED/THROTTLED with retry_after_ms,
  // UNIMPLEMENTED for mechanisms not offered yet, DEADLINE_EXCEEDED/UNAVAILABLE when
  // the password could not be checked by `deadline` (the caller's own deadline: too
  // many logins were waiting for the hash; no failure is recorded).
  absl::StatusOr<v1::AuthenticateResponse> Authenticate(
      const v1::AuthenticateRequest& request, absl::Time deadline = absl::InfiniteFuture());

  // The user id a session token stands for, or UNAUTHENTICATED (also once the
  // user was deleted).
  absl::StatusOr<uint64_t> CheckSessionToken(std::string_view token) const;

  std::string IssueSessionToken(uint64_t user_id, int64_t expires_unix) const;

  const AuthOptions& options() const { return options_; }

 private:
  Authenticator(store::Store* store, AuthOptions options, std::string key);
  std::string Mac(std::string_view payload) const;
  // Delay still owed for `key`, or 0.
  absl::StatusOr<int64_t> ThrottleDelay(std::string_view key, int free_failures, int64_t now_ms);

  store::Store* store_;
  AuthOptions options_;
  std::string key_;
  std::string dummy_hash_;  // verified against for unknown users, to equalise timing
  PasswordVerifier verifier_;
};

// Random bytes as lowercase hex (OpenSSL RAND_bytes).
std::string RandomHex(size_t bytes);

}  // namespace mailbox::server
