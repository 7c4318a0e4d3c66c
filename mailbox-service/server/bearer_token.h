// OAuth 2.0 bearer tokens (RFC 6750) presented with SASL OAUTHBEARER (RFC 7628)
// or XOAUTH2: the service checks them offline as signed JWTs (RFC 7519) against
// the keys of a JWK Set file the operator keeps (--oauth-jwks), re-read when it
// changes, and, if an introspection endpoint is configured, asks it about the
// tokens that are not JWTs (RFC 7662, introspection.h). A token names its user in
// a configured claim; that user must exist (tokens never create users).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "mailbox-service/server/introspection.h"
#include "mailbox-service/server/jose.h"

namespace mailbox::server {

struct BearerOptions {
  // The JWK Set file (RFC 7517 §5) of the identity provider's signing keys;
  // empty: no JWT is checked offline (introspection must then be on).
  std::string jwks_path;
  // RFC 7662 introspection of opaque tokens (and of every token when there is no
  // JWK Set); off when its url is empty.
  IntrospectionOptions introspection;
  // Required "iss" (RFC 7519 §4.1.1), compared exactly.
  std::string issuer;
  // Required in "aud" (RFC 7519 §4.1.3), a string or an array of strings.
  std::string audience;
  // The claim naming the user (a string): "email" by default, since identity
  // providers put the mail address there and user names of this service are
  // usually mail addresses; "sub" or "preferred_username" are common choices.
  std::string user_claim = "email";
  // Allowance for clocks that disagree, applied to exp, nbf and iat.
  int64_t clock_skew_s = 60;
  // Longest token accepted, in octets (checked before anything is decoded).
  size_t max_token_octets = 8192;
  // Largest JWK Set file read, in octets, and its key and nesting limits.
  size_t max_jwks_octets = 64 * 1024;
  jose::JwksLimits jwks;
  // Nesting depth allowed in a token's header and claims.
  int max_token_json_depth = 8;
  // How often the file is looked at for a change (one stat).
  std::chrono::milliseconds check_interval{1000};
};

// The keys of a JWK Set file, re-read when the file changes (device, inode, size or
// modification time). A changed file that cannot be used (missing, too large, not a
// JWK Set, a bad key) keeps the keys read before and is reported once on stderr.
// Thread-safe.
class JwksFile {
 public:
  // Reads the file now: an error if it cannot be used (the service does not
  // start on a bad file).
  static absl::StatusOr<std::unique_ptr<JwksFile>> Open(const BearerOptions& options);

  // The keys now.
  std::shared_ptr<const std::vector<jose::Jwk>> Current();

 private:
  struct FileId {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  explicit JwksFile(const BearerOptions& options) : options_(options) {}
  // The keys in the file, or why it cannot be used; `id` receives what the file
  // was when it was read.
  absl::StatusOr<std::vector<jose::Jwk>> Read(FileId* id) const;

  const BearerOptions options_;
  absl::Mutex mutex_;
  std::shared_ptr<const std::vector<jose::Jwk>> keys_ ABSL_GUARDED_BY(mutex_);
  FileId seen_ ABSL_GUARDED_BY(mutex_);
  std::chrono::steady_clock::time_point next_check_ ABSL_GUARDED_BY(mutex_);
};

class BearerValidator {
 public:
  // `post` sends requests to the introspection endpoint (introspection_client.h),
  // needed when options.introspection.url is set.
  static absl::StatusOr<std::unique_ptr<BearerValidator>> Create(
      BearerOptions options, IntrospectionPost post = nullptr);

  // The user name the token stands for, if it is a JWS-signed JWT (compact form)
  // signed by a key of the set with the algorithm that key is for, whose iss, aud,
  // exp, nbf and iat hold at `now_unix`; or, for a token that is not a JWS (or
  // every token, without a JWK Set), what the introspection endpoint says. Every
  // failure of the token is InvalidArgument with a reason for the service's log
  // (never shown to the client); Unavailable if the endpoint could not be asked.
  absl::StatusOr<std::string> Validate(std::string_view token, int64_t now_unix);

  const BearerOptions& options() const { return options_; }

 private:
  BearerValidator(BearerOptions options, std::unique_ptr<JwksFile> keys,
                  std::unique_ptr<TokenIntrospector> introspector)
      : options_(std::move(options)),
        keys_(std::move(keys)),
        introspector_(std::move(introspector)) {}
  absl::StatusOr<std::string> ValidateJws(std::string_view token, int64_t now_unix);

  const BearerOptions options_;
  std::unique_ptr<JwksFile> keys_;                 // null without a JWK Set
  std::unique_ptr<TokenIntrospector> introspector_;  // null without introspection
};

}  // namespace mailbox::server
