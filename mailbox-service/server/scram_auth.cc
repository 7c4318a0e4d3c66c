// The SCRAM-SHA-256 and SCRAM-SHA-256-PLUS conversation of Authenticator (auth.h),
// RFC 5802 §5 with SHA-256 (RFC 7677), in two calls of the unary Authenticate:
//
//   1. client-first-message  -> server-first-message + sealed state
//   2. client-final-message + sealed state -> server-final-message + session token
//
// The service keeps nothing between the calls: the state (user name, gs2 header,
// the first two messages, expiry) travels through the gateway under an HMAC with
// the session-token key, so either call may reach any replica that shares the
// key, and neither the gateway nor the client can alter it. The gateway sees the
// messages anyway (they carry nothing secret); it never sees a key.
//
// The proof is checked in the second call, which is throttled exactly as a
// password login is: the attempt is recorded as a failure for (user name, client
// address) before the proof is checked. A user without SCRAM keys, an unknown user,
// a wrong proof and a wrong channel binding all fail alike.

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "mailbox-service/server/auth.h"
#include "mailbox-service/server/scram.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

// How long the client has to answer the server-first message.
constexpr int64_t kStateLifetimeMs = 5 * 60 * 1000;
// Random octets the server adds to the client's nonce (RFC 5802 §5.1: "r=").
constexpr size_t kServerNonceBytes = 18;
constexpr size_t kMacHexChars = 64;  // HMAC-SHA-256 as hex

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status AuthFailed() {
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "Authentication failed: wrong user name or password");
}

absl::Status StateInvalid() {
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "SCRAM: the conversation state is missing, altered or expired; start "
                       "again");
}

// The state's fields, each as <length>:<octets>.
void AppendField(std::string& out, std::string_view field) {
  absl::StrAppend(&out, field.size(), ":", AV(field));
}

std::optional<std::vector<std::string>> SplitFields(std::string_view payload) {
  std::vector<std::string> fields;
  while (!payload.empty()) {
    const size_t colon = payload.find(':');
    size_t size = 0;
    if (colon == std::string_view::npos || !absl::SimpleAtoi(AV(payload.substr(0, colon)), &size) ||
        size > payload.size() - colon - 1) {
      return std::nullopt;
    }
    fields.emplace_back(payload.substr(colon + 1, size));
    payload.remove_prefix(colon + 1 + size);
  }
  return fields;
}

// Fields of the sealed state, in order.
enum StateField {
  kExpiresMs,
  kUsername,
  kGs2Header,
  kClientFirstBare,
  kServerFirst,
  kNonce,
  kPlus,
  kBindingType,
  kFieldCount
};

}  // namespace

absl::StatusOr<std::string> ScramKeysFor(std::string_view password,
                                         const PasswordHashOptions& options) {
  auto keys = scram::Make(password, options.scram_iterations);
  if (!keys.ok()) {
    return keys.status();
  }
  return scram::Encode(*keys);
}

std::string Authenticator::SealScramState(std::string_view payload) const {
  return absl::StrCat(AV(payload), Mac(keys_.keys.front(), absl::StrCat("scram-state:", AV(payload))));
}

std::optional<std::string> Authenticator::OpenScramState(std::string_view sealed) const {
  if (sealed.size() < kMacHexChars) {
    return std::nullopt;
  }
  const std::string_view payload = sealed.substr(0, sealed.size() - kMacHexChars);
  const std::string_view given = sealed.substr(payload.size());
  bool valid = false;
  for (const std::string& key : keys_.keys) {
    const std::string expected = Mac(key, absl::StrCat("scram-state:", AV(payload)));
    valid = valid || CRYPTO_memcmp(expected.data(), given.data(), kMacHexChars) == 0;
  }
  if (!valid) {
    return std::nullopt;
  }
  return std::string(payload);
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::ScramStep(
    const v1::AuthenticateRequest& request) {
  const int64_t now_ms = NowMs();
  if (request.scram().state().empty()) {
    return ScramFirst(request, now_ms);
  }
  return ScramFinal(request, now_ms);
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::ScramFirst(
    const v1::AuthenticateRequest& request, int64_t now_ms) {
  auto first = scram::ParseClientFirst(request.sasl_step());
  if (!first.ok()) {
    return v1::BadRequest(std::string(first.status().message()));
  }
  if (first->username.size() > kMaxUsernameOctets) {
    return v1::BadRequest(absl::StrCat("user name is longer than ", kMaxUsernameOctets, " octets"));
  }
  if (!first->authzid.empty() && first->authzid != first->username) {
    return v1::MakeError(absl::StatusCode::kPermissionDenied, v1::AUTHORIZATIONFAILED,
                         "acting as another user is not permitted");
  }
  const v1::ScramContext& context = request.scram();
  const std::string& offered = context.channel_binding_type();
  if (context.plus()) {
    if (first->binding != scram::Binding::kRequired) {
      return v1::BadRequest(
          "SCRAM-SHA-256-PLUS binds to the channel: the gs2 header must be p=<type>");
    }
    if (offered.empty() || first->binding_name != offered) {
      // RFC 5802 §7: e=unsupported-channel-binding-type.
      return v1::MakeError(
          absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
          absl::StrCat("SCRAM: channel binding type ", first->binding_name,
                       " is not available on this connection",
                       offered.empty() ? std::string() : absl::StrCat("; it offers ", offered)));
    }
  } else if (first->binding == scram::Binding::kRequired) {
    return v1::BadRequest("channel binding (p=) needs the SCRAM-SHA-256-PLUS mechanism");
  } else if (first->binding == scram::Binding::kNotOffered && !offered.empty()) {
    // RFC 5802 §6: the client supports binding and thinks the server does not, but
    // this server advertised -PLUS: someone removed it from the list on the way.
    return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                         "SCRAM: the client believes channel binding is not offered, but "
                         "SCRAM-SHA-256-PLUS is: refusing a possible downgrade");
  }

  std::optional<scram::Keys> keys;
  auto user = store_->FindUser(first->username);
  if (user.ok()) {
    keys = scram::Parse(user->scram_sha256);
  } else if (!absl::IsNotFound(user.status())) {
    return user.status();
  }
  if (!keys.has_value()) {
    // No such user, or no keys yet: a salt that is the same on every try and looks
    // like any other, so the answer does not tell; the second step then fails as a
    // wrong password does.
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_size = 0;
    const std::string input = absl::StrCat("scram-salt:", first->username);
    HMAC(EVP_sha256(), keys_.keys.front().data(), static_cast<int>(keys_.keys.front().size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_size);
    keys.emplace();
    keys->salt = std::string(reinterpret_cast<const char*>(mac), scram::kSaltBytes);
    keys->iterations = options_.hash.scram_iterations;
  }
  unsigned char random[kServerNonceBytes];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return absl::InternalError("no randomness for a SCRAM nonce");
  }
  const std::string nonce = absl::StrCat(
      first->nonce,
      scram::Base64(std::string_view(reinterpret_cast<const char*>(random), sizeof(random))));
  const std::string server_first = scram::ServerFirst(nonce, *keys);

  std::string payload;
  AppendField(payload, absl::StrCat(now_ms + kStateLifetimeMs));
  AppendField(payload, first->username);
  AppendField(payload, first->gs2_header);
  AppendField(payload, first->bare);
  AppendField(payload, server_first);
  AppendField(payload, nonce);
  AppendField(payload, context.plus() ? "1" : "0");
  AppendField(payload, offered);
  v1::AuthenticateResponse response;
  response.set_sasl_step(server_first);
  response.set_scram_state(SealScramState(payload));
  return response;
}

absl::StatusOr<v1::AuthenticateResponse> Authenticator::ScramFinal(
    const v1::AuthenticateRequest& request, int64_t now_ms) {
  const v1::ScramContext& context = request.scram();
  std::optional<std::string> payload = OpenScramState(context.state());
  std::optional<std::vector<std::string>> fields;
  if (payload.has_value()) {
    fields = SplitFields(*payload);
  }
  int64_t expires_ms = 0;
  if (!fields.has_value() || fields->size() != kFieldCount ||
      !absl::SimpleAtoi((*fields)[kExpiresMs], &expires_ms) || expires_ms < now_ms ||
      ((*fields)[kPlus] == "1") != context.plus() ||
      (*fields)[kBindingType] != context.channel_binding_type()) {
    return StateInvalid();
  }
  const std::string& username = (*fields)[kUsername];
  auto final_message = scram::ParseClientFinal(request.sasl_step());
  if (!final_message.ok()) {
    return v1::BadRequest(std::string(final_message.status().message()));
  }
  if (final_message->nonce != (*fields)[kNonce]) {
    return v1::BadRequest("SCRAM: the nonce (r=) is not the one of the server-first message");
  }
  // RFC 5802 §7: c= is the base64 of the gs2 header and, with -PLUS, the binding
  // data of the channel this gateway holds.
  std::string expected_binding = (*fields)[kGs2Header];
  if (context.plus()) {
    expected_binding += context.channel_binding();
  }
  const bool binding_ok =
      (!context.plus() || !context.channel_binding().empty()) &&
      final_message->channel_binding.size() == expected_binding.size() &&
      CRYPTO_memcmp(final_message->channel_binding.data(), expected_binding.data(),
                    expected_binding.size()) == 0;

  auto attempt = ReserveAttempt(username, request.client_ip(), now_ms);
  if (!attempt.ok()) {
    return attempt.status();
  }
  auto user = store_->FindUser(username);
  if (!user.ok() && !absl::IsNotFound(user.status())) {
    store_->ReleaseAuthAttempt(attempt->rows).IgnoreError();
    return user.status();
  }
  std::optional<scram::Keys> keys;
  if (user.ok()) {
    keys = scram::Parse(user->scram_sha256);
  }
  const std::string auth_message =
      absl::StrCat((*fields)[kClientFirstBare], ",", (*fields)[kServerFirst], ",",
                   final_message->without_proof);
  // The keys must still be those the salt and count came from (a password set
  // between the steps fails the proof anyway, as it derives from another salt).
  const bool verified = keys.has_value() &&
                        (*fields)[kServerFirst] == scram::ServerFirst((*fields)[kNonce], *keys) &&
                        scram::VerifyProof(*keys, auth_message, final_message->proof) &&
                        binding_ok;
  if (!verified) {
    // The reserved rows stay: they are the recorded failure.
    return AuthFailed();
  }
  if (auto succeeded = AttemptSucceeded(*attempt, now_ms); !succeeded.ok()) {
    return succeeded;
  }
  v1::AuthenticateResponse response = LoggedIn(*user, now_ms);
  response.set_sasl_step(scram::ServerFinal(*keys, auth_message));
  return response;
}

}  // namespace mailbox::server
