#include "mailbox-service/server/bearer_token.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "storage-client/posix_file.h"

namespace mailbox::server {
namespace {

namespace json = boost::json;

absl::Status Invalid(absl::string_view why) { return absl::InvalidArgumentError(why); }

// A JSON object from base64url text, under the depth limit.
absl::StatusOr<json::object> DecodeObject(std::string_view encoded, int max_depth,
                                          const char* what) {
  std::optional<std::string> text = jose::Base64UrlDecode(encoded);
  if (!text.has_value()) {
    return Invalid(absl::StrCat("the ", what, " is not base64url"));
  }
  json::parse_options options;
  options.max_depth = static_cast<std::size_t>(max_depth);
  std::error_code error;
  json::value value = json::parse(json::string_view(text->data(), text->size()), error,
                                  json::storage_ptr(), options);
  if (error) {
    return Invalid(absl::StrCat("the ", what, " is not JSON: ", error.message()));
  }
  json::object* object = value.if_object();
  if (object == nullptr) {
    return Invalid(absl::StrCat("the ", what, " is not a JSON object"));
  }
  return std::move(*object);
}

std::optional<std::string_view> StringClaim(const json::object& object, std::string_view name) {
  const json::value* value = object.if_contains(name);
  const json::string* text = value == nullptr ? nullptr : value->if_string();
  if (text == nullptr) {
    return std::nullopt;
  }
  return std::string_view(text->data(), text->size());
}

// RFC 7519 §2 NumericDate: seconds, possibly with a fraction. Absent: nullopt and
// `*present` false; present but not a number in range: nullopt, `*present` true.
std::optional<int64_t> DateClaim(const json::object& object, std::string_view name,
                                 bool* present) {
  const json::value* value = object.if_contains(name);
  *present = value != nullptr;
  if (value == nullptr) {
    return std::nullopt;
  }
  constexpr int64_t kLargest = int64_t{1} << 40;  // far beyond any real date
  if (const int64_t* number = value->if_int64(); number != nullptr) {
    if (*number < -kLargest || *number > kLargest) return std::nullopt;
    return *number;
  }
  if (const uint64_t* number = value->if_uint64(); number != nullptr) {
    if (*number > static_cast<uint64_t>(kLargest)) return std::nullopt;
    return static_cast<int64_t>(*number);
  }
  if (const double* number = value->if_double(); number != nullptr) {
    if (!std::isfinite(*number) || std::fabs(*number) > static_cast<double>(kLargest)) {
      return std::nullopt;
    }
    return static_cast<int64_t>(std::floor(*number));
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<JwksFile>> JwksFile::Open(const BearerOptions& options) {
  std::unique_ptr<JwksFile> file(new JwksFile(options));
  FileId id;
  auto keys = file->Read(&id);
  if (!keys.ok()) {
    return keys.status();
  }
  absl::MutexLock lock(&file->mutex_);
  file->keys_ = std::make_shared<const std::vector<jose::Jwk>>(*std::move(keys));
  file->seen_ = id;
  file->next_check_ = std::chrono::steady_clock::now() + options.check_interval;
  return file;
}

absl::StatusOr<std::vector<jose::Jwk>> JwksFile::Read(FileId* id) const {
  const std::string& path = options_.jwks_path;
  // The key set is public data: a symbolic link (as a configuration mount makes)
  // is followed. O_NONBLOCK: a FIFO in its place must not hang the service.
  posix::UniqueFd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    return posix::ErrnoError("cannot open", path, errno);
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) {
    return posix::ErrnoError("cannot stat", path, errno);
  }
  *id = FileId{info.st_dev, info.st_ino, info.st_size,
               int64_t{info.st_mtim.tv_sec} * 1'000'000'000 + info.st_mtim.tv_nsec};
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  if (static_cast<uint64_t>(info.st_size) > options_.max_jwks_octets) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " holds ", info.st_size, " octets; a key set may hold ", options_.max_jwks_octets));
  }
  // One octet more than allowed tells a file that grew since fstat.
  auto text = posix::ReadAll(fd.get(), options_.max_jwks_octets + 1, path);
  if (!text.ok()) {
    return text.status();
  }
  if (text->size() > options_.max_jwks_octets) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is larger than ", options_.max_jwks_octets, " octets"));
  }
  auto keys = jose::ParseJwks(*text, options_.jwks);
  if (!keys.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", keys.status().message()));
  }
  return keys;
}

std::shared_ptr<const std::vector<jose::Jwk>> JwksFile::Current() {
  absl::MutexLock lock(&mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) {
    return keys_;
  }
  next_check_ = now + options_.check_interval;
  FileId id;
  struct stat info {};
  if (stat(options_.jwks_path.c_str(), &info) == 0) {
    id = FileId{info.st_dev, info.st_ino, info.st_size,
                int64_t{info.st_mtim.tv_sec} * 1'000'000'000 + info.st_mtim.tv_nsec};
  }
  if (id == seen_) {
    return keys_;
  }
  FileId read_id;
  auto keys = Read(&read_id);
  // What was looked at is remembered either way: a bad file is reported once, and
  // read again only once it changes.
  seen_ = keys.ok() ? read_id : id;
  if (keys.ok()) {
    keys_ = std::make_shared<const std::vector<jose::Jwk>>(*std::move(keys));
    mailbox::log::Info(mailbox::log::event::kKeysReload, {{"result", "ok"},
                                                          {"file", options_.jwks_path},
                                                          {"keys", keys_->size()}});
  } else {
    mailbox::log::Error(mailbox::log::event::kKeysReload,
                        {{"result", "failed"},
                         {"file", options_.jwks_path},
                         {"error", std::string(keys.status().message())},
                         {"keys", keys_->size()},
                         {"detail", "keeping the keys read before"}});
  }
  return keys_;
}

absl::StatusOr<std::unique_ptr<BearerValidator>> BearerValidator::Create(
    BearerOptions options, IntrospectionPost post) {
  if (options.issuer.empty() || options.audience.empty() || options.user_claim.empty()) {
    return absl::InvalidArgumentError(
        "OAuth tokens need an issuer, an audience and a user claim to check");
  }
  if (options.jwks_path.empty() && options.introspection.url.empty()) {
    return absl::InvalidArgumentError(
        "OAuth tokens need a JWK Set file or an introspection endpoint");
  }
  std::unique_ptr<JwksFile> keys;
  if (!options.jwks_path.empty()) {
    auto opened = JwksFile::Open(options);
    if (!opened.ok()) {
      return opened.status();
    }
    keys = *std::move(opened);
  }
  std::unique_ptr<TokenIntrospector> introspector;
  if (!options.introspection.url.empty()) {
    if (post == nullptr) {
      return absl::InvalidArgumentError("no client for the introspection endpoint");
    }
    introspector = std::make_unique<TokenIntrospector>(
        options.introspection,
        IntrospectionClaims{options.issuer, options.audience, options.user_claim,
                            options.clock_skew_s},
        std::move(post));
  }
  return std::unique_ptr<BearerValidator>(
      new BearerValidator(std::move(options), std::move(keys), std::move(introspector)));
}

absl::StatusOr<std::string> BearerValidator::Validate(std::string_view token, int64_t now_unix) {
  if (token.size() > options_.max_token_octets) {
    return Invalid(absl::StrCat("the token is longer than ", options_.max_token_octets,
                                " octets"));
  }
  // RFC 7515 §7.1: header "." payload "." signature, each base64url.
  const size_t dots = static_cast<size_t>(std::count(token.begin(), token.end(), '.'));
  if (keys_ != nullptr && (dots == 2 || introspector_ == nullptr)) {
    return ValidateJws(token, now_unix);
  }
  if (introspector_ == nullptr || token.empty()) {
    return Invalid("the token is empty");
  }
  return introspector_->Introspect(token, now_unix);
}

absl::StatusOr<std::string> BearerValidator::ValidateJws(std::string_view token,
                                                         int64_t now_unix) {
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Invalid("the token is not a JWS in compact form (three parts)");
  }
  auto header = DecodeObject(token.substr(0, first), options_.max_token_json_depth, "header");
  if (!header.ok()) {
    return header.status();
  }
  std::optional<std::string_view> alg_name = StringClaim(*header, "alg");
  std::optional<jose::Algorithm> alg =
      alg_name.has_value() ? jose::AlgorithmNamed(*alg_name) : std::nullopt;
  if (!alg.has_value()) {
    // "none" (RFC 7518 §3.6) and HMAC (a public key used as a shared secret)
    // among them.
    return Invalid(absl::StrCat("alg \"", std::string(alg_name.value_or("")),
                                "\" is not accepted (RS256, ES256, EdDSA)"));
  }
  if (header->contains("crit")) {
    // RFC 7515 §4.1.11: no extension is understood here.
    return Invalid("the token has critical header parameters");
  }
  std::shared_ptr<const std::vector<jose::Jwk>> keys = keys_->Current();
  const jose::Jwk* key = nullptr;
  if (std::optional<std::string_view> kid = StringClaim(*header, "kid"); kid.has_value()) {
    for (const jose::Jwk& candidate : *keys) {
      if (candidate.kid == *kid) {
        key = &candidate;
        break;
      }
    }
    if (key == nullptr) {
      return Invalid(absl::StrCat("no key with kid \"", std::string(*kid), "\""));
    }
  } else if (header->contains("kid")) {
    return Invalid("the token's kid is not a string");
  } else if (keys->size() == 1) {
    key = &keys->front();
  } else {
    return Invalid("the token names no kid and the key set holds several keys");
  }
  if (key->algorithm != *alg) {
    return Invalid(absl::StrCat("alg \"", std::string(*alg_name),
                                "\" is not the algorithm of key \"",
                                key->kid, "\""));
  }
  const std::string_view signing_input = token.substr(0, second);
  std::optional<std::string> signature = jose::Base64UrlDecode(token.substr(second + 1));
  if (!signature.has_value() || !jose::VerifySignature(*key, signing_input, *signature)) {
    return Invalid("bad signature");
  }
  auto claims = DecodeObject(token.substr(first + 1, second - first - 1),
                             options_.max_token_json_depth, "claims");
  if (!claims.ok()) {
    return claims.status();
  }
  const int64_t skew = options_.clock_skew_s;
  bool present = false;
  std::optional<int64_t> exp = DateClaim(*claims, "exp", &present);
  if (!exp.has_value()) {
    return Invalid(present ? "exp is not a NumericDate" : "the token has no exp");
  }
  if (now_unix - skew >= *exp) {
    return Invalid("the token has expired");
  }
  std::optional<int64_t> nbf = DateClaim(*claims, "nbf", &present);
  if (present && !nbf.has_value()) {
    return Invalid("nbf is not a NumericDate");
  }
  if (nbf.has_value() && now_unix + skew < *nbf) {
    return Invalid("the token is not valid yet (nbf)");
  }
  std::optional<int64_t> iat = DateClaim(*claims, "iat", &present);
  if (present && !iat.has_value()) {
    return Invalid("iat is not a NumericDate");
  }
  if (iat.has_value() && now_unix + skew < *iat) {
    return Invalid("the token was issued in the future (iat)");
  }
  if (StringClaim(*claims, "iss") != std::optional<std::string_view>(options_.issuer)) {
    return Invalid("wrong issuer");
  }
  bool audience_found = false;
  if (const json::value* aud = claims->if_contains("aud"); aud != nullptr) {
    if (const json::string* one = aud->if_string(); one != nullptr) {
      audience_found = *one == options_.audience;
    } else if (const json::array* many = aud->if_array(); many != nullptr) {
      for (const json::value& entry : *many) {
        const json::string* text = entry.if_string();
        audience_found = audience_found || (text != nullptr && *text == options_.audience);
      }
    }
  }
  if (!audience_found) {
    return Invalid("the token is not meant for this service (aud)");
  }
  std::optional<std::string_view> user = StringClaim(*claims, options_.user_claim);
  if (!user.has_value() || user->empty()) {
    return Invalid(absl::StrCat("the token has no string claim \"", options_.user_claim, "\""));
  }
  return std::string(*user);
}

}  // namespace mailbox::server
