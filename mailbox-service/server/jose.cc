#include "mailbox-service/server/jose.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <set>

// Boost.JSON, header-only: //third_party:boost_json compiles its sources.
#include <boost/json.hpp>

#include "absl/strings/str_cat.h"

namespace mailbox::server::jose {
namespace {

namespace json = boost::json;

int Base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

struct BnDeleter {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
using UniqueBn = std::unique_ptr<BIGNUM, BnDeleter>;

struct ParamBldDeleter {
  void operator()(OSSL_PARAM_BLD* bld) const { OSSL_PARAM_BLD_free(bld); }
};
struct ParamDeleter {
  void operator()(OSSL_PARAM* params) const { OSSL_PARAM_free(params); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

std::shared_ptr<EVP_PKEY> Share(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, PkeyDeleter());
}

// A key from OSSL_PARAMs (OpenSSL 3's way to build one from its numbers), checked
// (RSA: modulus and exponent; EC: the point is on the curve).
absl::StatusOr<std::shared_ptr<EVP_PKEY>> FromData(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamDeleter> params(OSSL_PARAM_BLD_to_param(bld));
  UniquePkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not a valid ", type, " public key"));
  }
  std::shared_ptr<EVP_PKEY> shared = Share(key);
  UniquePkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (check == nullptr || EVP_PKEY_public_check(check.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not a valid ", type, " public key"));
  }
  return shared;
}

const json::string* StringMember(const json::object& object, std::string_view name) {
  const json::value* value = object.if_contains(name);
  return value == nullptr ? nullptr : value->if_string();
}

// The base64url member `name` of a key, decoded.
absl::StatusOr<std::string> KeyBytes(const json::object& key, const char* name) {
  const json::string* text = StringMember(key, name);
  std::optional<std::string> bytes;
  if (text != nullptr) {
    bytes = Base64UrlDecode(std::string_view(text->data(), text->size()));
  }
  if (!bytes.has_value() || bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key member \"", name, "\" is missing or not base64url"));
  }
  return *std::move(bytes);
}

UniqueBn Bignum(const std::string& bytes) {
  return UniqueBn(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                            static_cast<int>(bytes.size()), nullptr));
}

// RFC 7518 §6.3.1: n and e.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> RsaKey(const json::object& key,
                                                 const JwksLimits& limits) {
  auto n = KeyBytes(key, "n");
  auto e = KeyBytes(key, "e");
  if (!n.ok()) return n.status();
  if (!e.ok()) return e.status();
  UniqueBn n_bn = Bignum(*n);
  UniqueBn e_bn = Bignum(*e);
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
  if (n_bn == nullptr || e_bn == nullptr || bld == nullptr ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n_bn.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e_bn.get()) != 1) {
    return absl::InvalidArgumentError("not a valid RSA public key");
  }
  auto pkey = FromData("RSA", bld.get());
  if (pkey.ok() && EVP_PKEY_get_bits(pkey->get()) < limits.min_rsa_bits) {
    return absl::InvalidArgumentError(
        absl::StrCat("RSA key shorter than ", limits.min_rsa_bits, " bits"));
  }
  return pkey;
}

// RFC 7518 §6.2.1: P-256 with 32-octet x and y.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> P256Key(const json::object& key) {
  auto x = KeyBytes(key, "x");
  auto y = KeyBytes(key, "y");
  if (!x.ok()) return x.status();
  if (!y.ok()) return y.status();
  if (x->size() != 32 || y->size() != 32) {
    return absl::InvalidArgumentError("a P-256 key's x and y are 32 octets each");
  }
  // SEC 1 §2.3.3 uncompressed point: 0x04 || x || y.
  std::string point = absl::StrCat(std::string(1, '\x04'), *x, *y);
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
  if (bld == nullptr ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return absl::InvalidArgumentError("not a valid P-256 public key");
  }
  return FromData("EC", bld.get());
}

// RFC 8037 §2: OKP, crv Ed25519, x the 32-octet public key.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> Ed25519Key(const json::object& key) {
  auto x = KeyBytes(key, "x");
  if (!x.ok()) return x.status();
  if (x->size() != 32) {
    return absl::InvalidArgumentError("an Ed25519 key's x is 32 octets");
  }
  EVP_PKEY* pkey =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                  reinterpret_cast<const unsigned char*>(x->data()), x->size());
  if (pkey == nullptr) {
    return absl::InvalidArgumentError("not a valid Ed25519 public key");
  }
  return Share(pkey);
}

// The algorithm a key verifies, from its type and curve; nullopt for keys this
// service has no use for.
std::optional<Algorithm> AlgorithmOfKey(const json::object& key) {
  const json::string* kty = StringMember(key, "kty");
  const json::string* crv = StringMember(key, "crv");
  if (kty == nullptr) {
    return std::nullopt;
  }
  if (*kty == "RSA") {
    return Algorithm::kRs256;
  }
  if (*kty == "EC" && crv != nullptr && *crv == "P-256") {
    return Algorithm::kEs256;
  }
  if (*kty == "OKP" && crv != nullptr && *crv == "Ed25519") {
    return Algorithm::kEdDsa;
  }
  return std::nullopt;
}

// RFC 7517 §4.2, §4.3: a key meant for something else than verifying signatures.
bool NotForSignatures(const json::object& key) {
  if (const json::value* use = key.if_contains("use"); use != nullptr) {
    const json::string* text = use->if_string();
    if (text == nullptr || *text != "sig") {
      return true;
    }
  }
  if (const json::value* ops = key.if_contains("key_ops"); ops != nullptr) {
    const json::array* list = ops->if_array();
    if (list == nullptr) {
      return true;
    }
    for (const json::value& op : *list) {
      if (const json::string* text = op.if_string(); text != nullptr && *text == "verify") {
        return false;
      }
    }
    return true;
  }
  return false;
}

}  // namespace

void PkeyDeleter::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const int value = Base64UrlValue(c);
    if (value < 0) {
      return std::nullopt;
    }
    bits = (bits << 6) | static_cast<uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  // The bits left over must be zero: one encoding per value (a token altered in
  // its last character must not keep its meaning).
  if ((bits & ((1u << count) - 1)) != 0) {
    return std::nullopt;
  }
  return out;
}

std::string Base64UrlEncode(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  uint32_t bits = 0;
  int count = 0;
  for (unsigned char c : data) {
    bits = (bits << 8) | c;
    count += 8;
    while (count >= 6) {
      count -= 6;
      out.push_back(kAlphabet[(bits >> count) & 63]);
    }
  }
  if (count > 0) {
    out.push_back(kAlphabet[(bits << (6 - count)) & 63]);
  }
  return out;
}

std::optional<Algorithm> AlgorithmNamed(std::string_view name) {
  if (name == "RS256") return Algorithm::kRs256;
  if (name == "ES256") return Algorithm::kEs256;
  if (name == "EdDSA") return Algorithm::kEdDsa;
  return std::nullopt;
}

absl::StatusOr<std::vector<Jwk>> ParseJwks(std::string_view text, const JwksLimits& limits) {
  json::parse_options options;
  options.max_depth = static_cast<std::size_t>(limits.max_json_depth);
  std::error_code error;
  json::value root = json::parse(json::string_view(text.data(), text.size()), error,
                                 json::storage_ptr(), options);
  if (error) {
    return absl::InvalidArgumentError(absl::StrCat("not JSON: ", error.message()));
  }
  const json::object* set = root.if_object();
  const json::value* keys_value = set == nullptr ? nullptr : set->if_contains("keys");
  const json::array* keys = keys_value == nullptr ? nullptr : keys_value->if_array();
  if (keys == nullptr) {
    return absl::InvalidArgumentError("not a JWK Set: no \"keys\" array");
  }
  if (keys->size() > limits.max_keys) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys->size(), " keys in the set; at most ", limits.max_keys));
  }
  std::vector<Jwk> out;
  std::set<std::string> kids;
  for (size_t i = 0; i < keys->size(); ++i) {
    const json::object* key = (*keys)[i].if_object();
    if (key == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("key ", i, " is not an object"));
    }
    std::optional<Algorithm> algorithm = AlgorithmOfKey(*key);
    if (!algorithm.has_value() || NotForSignatures(*key)) {
      continue;
    }
    if (const json::value* alg = key->if_contains("alg"); alg != nullptr) {
      const json::string* name = alg->if_string();
      std::optional<Algorithm> named =
          name == nullptr ? std::nullopt
                          : AlgorithmNamed(std::string_view(name->data(), name->size()));
      if (named != algorithm) {
        continue;  // e.g. an RSA key for PS256 or RS512: not one this service checks
      }
    }
    Jwk jwk;
    jwk.algorithm = *algorithm;
    if (const json::value* kid = key->if_contains("kid"); kid != nullptr) {
      const json::string* text = kid->if_string();
      if (text == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("key ", i, ": \"kid\" is not a string"));
      }
      jwk.kid = std::string(text->data(), text->size());
    }
    if (!kids.insert(jwk.kid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two keys with the same kid \"", jwk.kid, "\""));
    }
    absl::StatusOr<std::shared_ptr<EVP_PKEY>> pkey;
    switch (*algorithm) {
      case Algorithm::kRs256:
        pkey = RsaKey(*key, limits);
        break;
      case Algorithm::kEs256:
        pkey = P256Key(*key);
        break;
      case Algorithm::kEdDsa:
        pkey = Ed25519Key(*key);
        break;
    }
    if (!pkey.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key ", i, " (kid \"", jwk.kid, "\"): ", pkey.status().message()));
    }
    jwk.key = *std::move(pkey);
    out.push_back(std::move(jwk));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "no signature key of a supported type (RSA, EC P-256, OKP Ed25519) in the set");
  }
  return out;
}

bool VerifySignature(const Jwk& key, std::string_view signing_input,
                     std::string_view signature) {
  if (key.key == nullptr) {
    return false;
  }
  std::string der;
  const EVP_MD* digest = nullptr;
  switch (key.algorithm) {
    case Algorithm::kRs256:
      digest = EVP_sha256();
      break;
    case Algorithm::kEs256: {
      // RFC 7518 §3.4: R and S as 32-octet big-endian integers; OpenSSL takes
      // the DER ECDSA-Sig-Value.
      if (signature.size() != 64) {
        return false;
      }
      ECDSA_SIG* sig = ECDSA_SIG_new();
      BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 32, nullptr);
      BIGNUM* s =
          BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 32, 32, nullptr);
      if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return false;
      }
      unsigned char* encoded = nullptr;
      const int length = i2d_ECDSA_SIG(sig, &encoded);
      ECDSA_SIG_free(sig);
      if (length <= 0) {
        return false;
      }
      der.assign(reinterpret_cast<char*>(encoded), static_cast<size_t>(length));
      OPENSSL_free(encoded);
      signature = der;
      digest = EVP_sha256();
      break;
    }
    case Algorithm::kEdDsa:
      // RFC 8032 §5.1: Ed25519 hashes internally; no digest is named.
      if (signature.size() != 64) {
        return false;
      }
      break;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (ctx == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, digest, nullptr, key.key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(),
                          reinterpret_cast<const unsigned char*>(signing_input.data()),
                          signing_input.size()) == 1;
}

}  // namespace mailbox::server::jose
