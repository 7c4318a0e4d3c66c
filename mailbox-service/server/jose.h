// The small part of JOSE the mailbox service needs to check OAuth 2.0 access
// tokens offline: base64url (RFC 4648 §5), public JSON Web Keys and key sets
// (RFC 7517; EC and RSA per RFC 7518 §6, Ed25519 per RFC 8037 §2) and the
// signature of a JWS in compact serialization (RFC 7515 §7.1) with RS256, ES256
// (RFC 7518 §3.3, §3.4) or EdDSA over Ed25519 (RFC 8037 §3.1). Signatures are
// checked with OpenSSL 3 (EVP_DigestVerify); JSON is parsed with Boost.JSON under
// a depth limit.
//
// Written here rather than taken from Debian's libjwt (1.10: no EdDSA, no JWK or
// JWK Set input, keys as PEM only) or libcjose (0.6: no OKP/Ed25519 keys and no
// EdDSA, no JWK Set parsing): see docs/security.md ("OAuth 2.0 bearer tokens").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace mailbox::server::jose {

// Strict base64url without padding (RFC 7515 §2): nullopt on any other character,
// on "=" and on a length no encoder produces.
std::optional<std::string> Base64UrlDecode(std::string_view text);
std::string Base64UrlEncode(std::string_view data);

// The signature algorithms accepted ("alg", RFC 7518 §3.1, RFC 8037 §3.1).
enum class Algorithm { kRs256, kEs256, kEdDsa };
// nullopt for every other name, "none" and the HMAC ones included.
std::optional<Algorithm> AlgorithmNamed(std::string_view name);

struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const;
};

// One public verification key.
struct Jwk {
  std::string kid;  // may be empty
  Algorithm algorithm = Algorithm::kRs256;  // the only one this key verifies
  std::shared_ptr<EVP_PKEY> key;
};

struct JwksLimits {
  size_t max_keys = 32;
  int max_json_depth = 8;
  // Smallest RSA modulus accepted (RFC 7518 §3.3 asks for 2048 bits).
  int min_rsa_bits = 2048;
};

// Parses a JWK Set ({"keys": [...]}). Keys for another use than "sig" (RFC 7517
// §4.2), of another type or curve, or whose "alg" names another algorithm than
// their type allows are left out; any key of a supported type that is malformed
// (bad base64url, a point not on its curve, a short RSA modulus), two keys with
// the same "kid", more than `max_keys` keys in the set, or no usable key at all
// make the whole set invalid (InvalidArgument naming the reason).
absl::StatusOr<std::vector<Jwk>> ParseJwks(std::string_view json, const JwksLimits& limits);

// Checks the signature of a JWS signing input ("header.payload", RFC 7515 §5.2)
// with `key`, which must be of `key.algorithm`. `signature` is the decoded
// signature: PKCS #1 v1.5 for RS256, R || S (64 octets) for ES256, 64 octets for
// EdDSA.
bool VerifySignature(const Jwk& key, std::string_view signing_input, std::string_view signature);

}  // namespace mailbox::server::jose
