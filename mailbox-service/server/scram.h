// SCRAM-SHA-256 (RFC 5802 with SHA-256, RFC 7677): the keys the service keeps for a
// user and the messages of the exchange. No store, no state: Authenticator
// (auth.h) runs the conversation with these.
//
// A user's keys are derived from the password when it is set (RFC 5802 §3):
//   SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i)
//   StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
//   ServerKey      = HMAC(SaltedPassword, "Server Key")
// and only salt, i, StoredKey and ServerKey are kept: neither the password nor
// SaltedPassword, so the keys let the service check a client's proof and prove
// itself, but not log in as the user elsewhere.
//
// The password is used as the octets the client sent when it was set (the same
// octets argon2id hashes): SASLprep (RFC 4013) is not applied. It is the identity
// on ASCII passwords, which is what clients that do apply it then agree with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailbox::server::scram {

// RFC 7677 §4: at least 4096.
inline constexpr uint32_t kMinIterations = 4096;
// Refused above this (an attacker-sized count in a corrupted row, or a typo).
inline constexpr uint32_t kMaxIterations = 10'000'000;
inline constexpr size_t kSaltBytes = 16;

struct Keys {
  std::string salt;  // raw octets
  uint32_t iterations = 0;
  std::string stored_key;  // 32 octets
  std::string server_key;  // 32 octets
};

// Derives the keys from `password` with the given salt and iteration count.
Keys Derive(std::string_view password, std::string_view salt, uint32_t iterations);
// Derive with a fresh random salt of kSaltBytes.
absl::StatusOr<Keys> Make(std::string_view password, uint32_t iterations);

// "SCRAM-SHA-256$<i>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>" (the
// layout PostgreSQL uses for its SCRAM verifiers).
std::string Encode(const Keys& keys);
// nullopt for anything but what Encode writes.
std::optional<Keys> Parse(std::string_view encoded);

// The gs2 header's channel-binding flag (RFC 5802 §7: gs2-cbind-flag).
enum class Binding {
  kNone,         // "n": the client does not support channel binding
  kNotOffered,   // "y": the client does, but thinks the server does not
  kRequired,     // "p=<name>": the client binds to the channel `binding_name`
};

// RFC 5802 §7 client-first-message: gs2-header client-first-message-bare.
struct ClientFirst {
  Binding binding = Binding::kNone;
  std::string binding_name;  // for kRequired
  std::string authzid;       // "a=", unescaped; empty if absent
  std::string gs2_header;    // as sent, through the comma after the authzid
  std::string username;      // "n=", unescaped ("=2C" is ",", "=3D" is "=")
  std::string nonce;         // "r="
  std::string bare;          // client-first-message-bare, as sent
};
// InvalidArgument with a message a client can act on for anything malformed
// (including mandatory extensions, "m=", which none is defined for).
absl::StatusOr<ClientFirst> ParseClientFirst(std::string_view message);

// RFC 5802 §7 client-final-message.
struct ClientFinal {
  std::string channel_binding;  // "c=", decoded: the gs2 header and binding data
  std::string nonce;            // "r="
  std::string proof;            // "p=", decoded
  std::string without_proof;    // client-final-message-without-proof, as sent
};
absl::StatusOr<ClientFinal> ParseClientFinal(std::string_view message);

// The server-first-message "r=<nonce>,s=<base64 salt>,i=<iterations>".
std::string ServerFirst(std::string_view nonce, const Keys& keys);

// RFC 5802 §3: true if `proof` proves knowledge of the password behind `keys` for
// AuthMessage `auth_message` (constant time in the proof).
bool VerifyProof(const Keys& keys, std::string_view auth_message, std::string_view proof);

// The server-final-message "v=<base64 ServerSignature>".
std::string ServerFinal(const Keys& keys, std::string_view auth_message);

// RFC 4648 base64 with padding.
std::string Base64(std::string_view bytes);

}  // namespace mailbox::server::scram
