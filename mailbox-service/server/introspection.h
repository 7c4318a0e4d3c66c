// OAuth 2.0 token introspection (RFC 7662) for bearer tokens the service cannot
// check by itself (opaque tokens): the token is sent to the identity provider's
// introspection endpoint over HTTPS, with the service's client credentials, and
// the answer is checked as a JWT's claims would be. Answers for active tokens are
// cached (bounded in entries and in time) so that a client that logs in often does
// not cost a request each time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace mailbox::server {

struct IntrospectionOptions {
  // https://host[:port]/path of the endpoint (RFC 7662 §2); empty: off.
  std::string url;
  // The service's client credentials (RFC 7662 §2.1, HTTP Basic per RFC 6749
  // §2.3.1).
  std::string client_id;
  std::string client_secret;
  // CA certificates the endpoint's certificate must chain to; empty: the system's.
  std::string ca_file;
  // The whole request (resolve, connect, TLS, write, read) must end within this.
  std::chrono::milliseconds timeout{5000};
  // Largest response body read; a longer one fails the request.
  size_t max_response_octets = 64 * 1024;
  // Active tokens remembered (by SHA-256), each at most this long and never past
  // its exp.
  size_t max_cache_entries = 10000;
  int64_t max_cache_seconds = 60;
  int max_json_depth = 8;
};

// Sends an application/x-www-form-urlencoded body to the endpoint (the HTTPS
// client is introspection_client.h); the response body, or Unavailable (unreachable, timed out, TLS refused, an HTTP status other
// than 200, a body over the limit).
using IntrospectionPost = std::function<absl::StatusOr<std::string>(const std::string& body)>;

// application/x-www-form-urlencoded (as RFC 6749 Appendix B uses for client
// credentials and RFC 7662 §2.1 for the request body).
std::string FormEncode(std::string_view text);

// What an active token's answer must hold (the JWT checks' settings).
struct IntrospectionClaims {
  std::string issuer;      // "iss", if the answer has one, must be this
  std::string audience;    // "aud", if the answer has one, must be or hold this
  std::string user_claim;  // the member naming the user (e.g. "username", "email")
  int64_t clock_skew_s = 60;
};

class TokenIntrospector {
 public:
  TokenIntrospector(IntrospectionOptions options, IntrospectionClaims claims,
                    IntrospectionPost post);

  // The user the token stands for. InvalidArgument (with a reason for the log)
  // if the endpoint says it is not active or its answer fails a check;
  // Unavailable if the endpoint could not be asked (not the client's fault).
  absl::StatusOr<std::string> Introspect(std::string_view token, int64_t now_unix);

  size_t cached() const;

 private:
  struct Entry {
    std::string user;
    int64_t until_unix = 0;
  };
  absl::StatusOr<std::string> Ask(std::string_view token, int64_t now_unix, int64_t* exp);

  const IntrospectionOptions options_;
  const IntrospectionClaims claims_;
  const IntrospectionPost post_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Entry> cache_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace mailbox::server
