#include "mailbox-service/server/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mailbox::server::scram {
namespace {

constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
constexpr size_t kKeyBytes = SHA256_DIGEST_LENGTH;

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

std::string Sha256(std::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

std::optional<std::string> Unbase64(absl::string_view text) {
  std::string out;
  if (!absl::Base64Unescape(text, &out)) {
    return std::nullopt;
  }
  return out;
}

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed SCRAM message: ", AV(what)));
}

// RFC 5802 §7 saslname: "=2C" stands for ",", "=3D" for "="; any other "=" is an
// error.
std::optional<std::string> UnescapeSaslName(std::string_view name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '=') {
      out.push_back(name[i]);
      continue;
    }
    std::string_view escape = name.substr(i + 1, 2);
    if (escape == "2C") {
      out.push_back(',');
    } else if (escape == "3D") {
      out.push_back('=');
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

// RFC 5802 §7: printable ASCII but ",".
bool ValidNonce(std::string_view nonce) {
  if (nonce.empty()) {
    return false;
  }
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') {
      return false;
    }
  }
  return true;
}

// RFC 5802 §7 cb-name: 1*(ALPHA / DIGIT / "." / "-").
bool ValidBindingName(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

Keys Derive(std::string_view password, std::string_view salt, uint32_t iterations) {
  unsigned char salted[kKeyBytes];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                    sizeof(salted), salted);
  const std::string_view salted_password(reinterpret_cast<const char*>(salted), sizeof(salted));
  Keys keys;
  keys.salt = std::string(salt);
  keys.iterations = iterations;
  keys.stored_key = Sha256(Hmac(salted_password, "Client Key"));
  keys.server_key = Hmac(salted_password, "Server Key");
  OPENSSL_cleanse(salted, sizeof(salted));
  return keys;
}

absl::StatusOr<Keys> Make(std::string_view password, uint32_t iterations) {
  if (iterations < kMinIterations || iterations > kMaxIterations) {
    return absl::InvalidArgumentError(absl::StrCat("the SCRAM iteration count must be from ",
                                                   kMinIterations, " to ", kMaxIterations));
  }
  unsigned char salt[kSaltBytes];
  if (RAND_bytes(salt, sizeof(salt)) != 1) {
    return absl::InternalError("no randomness for a SCRAM salt");
  }
  return Derive(password, std::string_view(reinterpret_cast<const char*>(salt), sizeof(salt)),
                iterations);
}

std::string Base64(std::string_view bytes) { return absl::Base64Escape(AV(bytes)); }

std::string Encode(const Keys& keys) {
  return absl::StrCat(AV(kPrefix), keys.iterations, ":", Base64(keys.salt), "$",
                      Base64(keys.stored_key), ":", Base64(keys.server_key));
}

std::optional<Keys> Parse(std::string_view encoded) {
  if (encoded.substr(0, kPrefix.size()) != kPrefix) {
    return std::nullopt;
  }
  std::vector<absl::string_view> halves = absl::StrSplit(AV(encoded.substr(kPrefix.size())), '$');
  if (halves.size() != 2) {
    return std::nullopt;
  }
  std::vector<absl::string_view> first = absl::StrSplit(halves[0], ':');
  std::vector<absl::string_view> second = absl::StrSplit(halves[1], ':');
  if (first.size() != 2 || second.size() != 2) {
    return std::nullopt;
  }
  Keys keys;
  std::optional<std::string> salt = Unbase64(first[1]);
  std::optional<std::string> stored = Unbase64(second[0]);
  std::optional<std::string> server = Unbase64(second[1]);
  if (!absl::SimpleAtoi(first[0], &keys.iterations) || keys.iterations < kMinIterations ||
      keys.iterations > kMaxIterations || !salt || salt->empty() || !stored ||
      stored->size() != kKeyBytes || !server || server->size() != kKeyBytes) {
    return std::nullopt;
  }
  keys.salt = *std::move(salt);
  keys.stored_key = *std::move(stored);
  keys.server_key = *std::move(server);
  return keys;
}

absl::StatusOr<ClientFirst> ParseClientFirst(std::string_view message) {
  ClientFirst first;
  // gs2-header: gs2-cbind-flag "," [authzid] ","
  const size_t flag_end = message.find(',');
  const size_t header_end =
      flag_end == std::string_view::npos ? flag_end : message.find(',', flag_end + 1);
  if (header_end == std::string_view::npos) {
    return Malformed("the client-first message starts with a gs2 header (n,, y,, or p=...,,)");
  }
  const std::string_view flag = message.substr(0, flag_end);
  if (flag == "n") {
    first.binding = Binding::kNone;
  } else if (flag == "y") {
    first.binding = Binding::kNotOffered;
  } else if (flag.substr(0, 2) == "p=" && ValidBindingName(flag.substr(2))) {
    first.binding = Binding::kRequired;
    first.binding_name = std::string(flag.substr(2));
  } else {
    return Malformed("the channel-binding flag is n, y or p=<type>");
  }
  const std::string_view authzid = message.substr(flag_end + 1, header_end - flag_end - 1);
  if (!authzid.empty()) {
    std::optional<std::string> name;
    if (authzid.substr(0, 2) == "a=") {
      name = UnescapeSaslName(authzid.substr(2));
    }
    if (!name.has_value()) {
      return Malformed("the authorization identity is a=<name>");
    }
    first.authzid = *std::move(name);
  }
  first.gs2_header = std::string(message.substr(0, header_end + 1));
  first.bare = std::string(message.substr(header_end + 1));
  std::vector<absl::string_view> attributes = absl::StrSplit(AV(first.bare), ',');
  if (!attributes.empty() && attributes[0].substr(0, 2) == "m=") {
    return Malformed("no mandatory extension (m=) is supported");
  }
  if (attributes.size() < 2 || attributes[0].substr(0, 2) != "n=" ||
      attributes[1].substr(0, 2) != "r=") {
    return Malformed("the client-first message is n=<user>,r=<nonce>");
  }
  std::optional<std::string> username =
      UnescapeSaslName(std::string_view(attributes[0].data() + 2, attributes[0].size() - 2));
  if (!username.has_value() || username->empty()) {
    return Malformed("the user name (n=) is empty or has a stray \"=\"");
  }
  first.username = *std::move(username);
  first.nonce = std::string(attributes[1].substr(2));
  if (!ValidNonce(first.nonce)) {
    return Malformed("the nonce (r=) is empty or not printable ASCII");
  }
  return first;
}

absl::StatusOr<ClientFinal> ParseClientFinal(std::string_view message) {
  // The proof is the last attribute (RFC 5802 §7 client-final-message).
  const size_t proof_at = message.rfind(",p=");
  if (proof_at == std::string_view::npos) {
    return Malformed("the client-final message ends with the proof (p=)");
  }
  ClientFinal final_message;
  final_message.without_proof = std::string(message.substr(0, proof_at));
  std::optional<std::string> proof = Unbase64(AV(message.substr(proof_at + 3)));
  if (!proof.has_value() || proof->size() != kKeyBytes) {
    return Malformed("the proof (p=) is not base64 of 32 octets");
  }
  final_message.proof = *std::move(proof);
  std::vector<absl::string_view> attributes =
      absl::StrSplit(AV(final_message.without_proof), ',');
  if (attributes.size() < 2 || attributes[0].substr(0, 2) != "c=" ||
      attributes[1].substr(0, 2) != "r=") {
    return Malformed("the client-final message is c=<binding>,r=<nonce>,p=<proof>");
  }
  std::optional<std::string> binding =
      Unbase64(attributes[0].substr(2));
  if (!binding.has_value()) {
    return Malformed("the channel binding (c=) is not base64");
  }
  final_message.channel_binding = *std::move(binding);
  final_message.nonce = std::string(attributes[1].substr(2));
  return final_message;
}

std::string ServerFirst(std::string_view nonce, const Keys& keys) {
  return absl::StrCat("r=", AV(nonce), ",s=", Base64(keys.salt), ",i=", keys.iterations);
}

bool VerifyProof(const Keys& keys, std::string_view auth_message, std::string_view proof) {
  if (proof.size() != kKeyBytes || keys.stored_key.size() != kKeyBytes) {
    return false;
  }
  // ClientKey = ClientProof XOR ClientSignature; the proof holds if
  // H(ClientKey) = StoredKey.
  std::string client_key = Hmac(keys.stored_key, auth_message);
  for (size_t i = 0; i < kKeyBytes; ++i) {
    client_key[i] = static_cast<char>(client_key[i] ^ proof[i]);
  }
  const std::string stored = Sha256(client_key);
  OPENSSL_cleanse(client_key.data(), client_key.size());
  return CRYPTO_memcmp(stored.data(), keys.stored_key.data(), kKeyBytes) == 0;
}

std::string ServerFinal(const Keys& keys, std::string_view auth_message) {
  return absl::StrCat("v=", Base64(Hmac(keys.server_key, auth_message)));
}

}  // namespace mailbox::server::scram
