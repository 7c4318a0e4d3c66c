// Tests' side of bearer tokens: signing keys made by OpenSSL, their public JWKs,
// and JWTs signed with them.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mailbox-service/server/jose.h"

namespace mailbox::server::testing {

struct SigningKey {
  std::string alg;  // "RS256", "ES256" or "EdDSA"
  std::string kid;
  std::shared_ptr<EVP_PKEY> key;
};

inline std::string BnBytes(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) {
    return "";
  }
  std::string out(pad > 0 ? pad : BN_num_bytes(bn), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

// A fresh key for `alg`; RSA keys have `rsa_bits`.
inline SigningKey MakeKey(std::string alg, std::string kid, int rsa_bits = 2048) {
  EVP_PKEY* key = nullptr;
  if (alg == "RS256") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits));
  } else if (alg == "ES256") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  return {std::move(alg), std::move(kid), std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free)};
}

// The key's public JWK; `extra` is added to its members (e.g. "\"use\":\"enc\",").
inline std::string PublicJwk(const SigningKey& key, const std::string& extra = "") {
  using jose::Base64UrlEncode;
  std::string kid = key.kid.empty() ? "" : absl::StrCat("\"kid\":\"", key.kid, "\",");
  if (key.alg == "RS256") {
    return absl::StrCat("{", kid, extra, "\"kty\":\"RSA\",\"n\":\"",
                        Base64UrlEncode(BnBytes(key.key.get(), OSSL_PKEY_PARAM_RSA_N)),
                        "\",\"e\":\"",
                        Base64UrlEncode(BnBytes(key.key.get(), OSSL_PKEY_PARAM_RSA_E)), "\"}");
  }
  if (key.alg == "ES256") {
    return absl::StrCat("{", kid, extra, "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"",
                        Base64UrlEncode(BnBytes(key.key.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32)),
                        "\",\"y\":\"",
                        Base64UrlEncode(BnBytes(key.key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32)),
                        "\"}");
  }
  unsigned char raw[32];
  size_t size = sizeof(raw);
  EVP_PKEY_get_raw_public_key(key.key.get(), raw, &size);
  return absl::StrCat("{", kid, extra, "\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"",
                      Base64UrlEncode(std::string_view(reinterpret_cast<char*>(raw), size)),
                      "\"}");
}

inline std::string Jwks(const std::vector<std::string>& jwks) {
  return absl::StrCat("{\"keys\":[", absl::StrJoin(jwks, ","), "]}");
}

// The JWS signature of `input` with `key`, as the JWS carries it (raw R || S for
// ES256).
inline std::string Sign(const SigningKey& key, std::string_view input) {
  const EVP_MD* digest = key.alg == "EdDSA" ? nullptr : EVP_sha256();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t size = 0;
  std::string signature;
  if (EVP_DigestSignInit(ctx, nullptr, digest, nullptr, key.key.get()) == 1 &&
      EVP_DigestSign(ctx, nullptr, &size, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) == 1) {
    signature.resize(size);
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &size,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    signature.resize(size);
  }
  EVP_MD_CTX_free(ctx);
  if (key.alg == "ES256") {
    const unsigned char* der = reinterpret_cast<const unsigned char*>(signature.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(sig);
    return raw;
  }
  return signature;
}

// A compact JWS of `claims` (JSON) with `header` (JSON) signed by `key`.
inline std::string SignedToken(const SigningKey& key, const std::string& header,
                               const std::string& claims) {
  std::string input =
      absl::StrCat(jose::Base64UrlEncode(header), ".", jose::Base64UrlEncode(claims));
  return absl::StrCat(input, ".", jose::Base64UrlEncode(Sign(key, input)));
}

// The usual header for `key`: its alg and kid.
inline std::string Header(const SigningKey& key) {
  return absl::StrCat("{\"alg\":\"", key.alg, "\",\"typ\":\"JWT\",\"kid\":\"", key.kid, "\"}");
}

}  // namespace mailbox::server::testing
