#include "mailbox-service/server/introspection.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include <boost/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace mailbox::server {
namespace {

namespace json = boost::json;

std::string Sha256(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

std::optional<int64_t> NumberMember(const json::object& object, std::string_view name) {
  const json::value* value = object.if_contains(name);
  if (value == nullptr) return std::nullopt;
  if (const int64_t* n = value->if_int64()) return *n;
  if (const uint64_t* n = value->if_uint64()) {
    return *n > (uint64_t{1} << 40) ? std::nullopt : std::optional<int64_t>(*n);
  }
  if (const double* n = value->if_double(); n != nullptr && std::isfinite(*n)) {
    return static_cast<int64_t>(std::floor(*n));
  }
  return std::nullopt;
}

}  // namespace

// application/x-www-form-urlencoded (HTML's URL-encoded form serialization), as
// RFC 6749 Appendix B uses for client credentials and RFC 7662 §2.1 for the body.
std::string FormEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '*') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

TokenIntrospector::TokenIntrospector(IntrospectionOptions options, IntrospectionClaims claims,
                                     IntrospectionPost post)
    : options_(std::move(options)), claims_(std::move(claims)), post_(std::move(post)) {}

size_t TokenIntrospector::cached() const {
  absl::MutexLock lock(&mutex_);
  return cache_.size();
}

absl::StatusOr<std::string> TokenIntrospector::Introspect(std::string_view token,
                                                          int64_t now_unix) {
  const std::string key = Sha256(token);
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      if (it->second.until_unix > now_unix) {
        return it->second.user;
      }
      cache_.erase(it);
    }
  }
  int64_t exp = 0;
  auto user = Ask(token, now_unix, &exp);
  if (!user.ok()) {
    return user;
  }
  const int64_t until = std::min(exp, now_unix + options_.max_cache_seconds);
  if (options_.max_cache_entries > 0 && until > now_unix) {
    absl::MutexLock lock(&mutex_);
    if (cache_.size() >= options_.max_cache_entries) {
      // Full: expired answers go first; if none has, this one is not kept.
      absl::erase_if(cache_, [now_unix](const auto& entry) {
        return entry.second.until_unix <= now_unix;
      });
    }
    if (cache_.size() < options_.max_cache_entries) {
      cache_[key] = Entry{*user, until};
    }
  }
  return user;
}

absl::StatusOr<std::string> TokenIntrospector::Ask(std::string_view token, int64_t now_unix,
                                                   int64_t* exp) {
  // RFC 7662 §2.1.
  auto body = post_(absl::StrCat("token=", FormEncode(token), "&token_type_hint=access_token"));
  if (!body.ok()) {
    return absl::UnavailableError(body.status().message());
  }
  json::parse_options parse;
  parse.max_depth = static_cast<std::size_t>(options_.max_json_depth);
  std::error_code error;
  json::value value =
      json::parse(json::string_view(body->data(), body->size()), error, json::storage_ptr(), parse);
  const json::object* answer = error ? nullptr : value.if_object();
  if (answer == nullptr) {
    return absl::UnavailableError("the introspection endpoint's answer is not a JSON object");
  }
  // RFC 7662 §2.2: "active" is required; everything else is optional.
  const json::value* active = answer->if_contains("active");
  if (active == nullptr || !active->is_bool() || !active->get_bool()) {
    return absl::InvalidArgumentError("the introspection endpoint says the token is not active");
  }
  const int64_t skew = claims_.clock_skew_s;
  std::optional<int64_t> expiry = NumberMember(*answer, "exp");
  if (answer->contains("exp") && !expiry.has_value()) {
    return absl::InvalidArgumentError("introspection: exp is not a NumericDate");
  }
  if (expiry.has_value() && now_unix - skew >= *expiry) {
    return absl::InvalidArgumentError("introspection: the token has expired");
  }
  *exp = expiry.value_or(now_unix + options_.max_cache_seconds);
  if (std::optional<int64_t> nbf = NumberMember(*answer, "nbf");
      nbf.has_value() && now_unix + skew < *nbf) {
    return absl::InvalidArgumentError("introspection: the token is not valid yet (nbf)");
  }
  if (const json::value* iss = answer->if_contains("iss"); iss != nullptr) {
    const json::string* text = iss->if_string();
    if (text == nullptr || *text != claims_.issuer) {
      return absl::InvalidArgumentError("introspection: wrong issuer");
    }
  }
  if (const json::value* aud = answer->if_contains("aud"); aud != nullptr) {
    bool found = false;
    if (const json::string* one = aud->if_string(); one != nullptr) {
      found = *one == claims_.audience;
    } else if (const json::array* many = aud->if_array(); many != nullptr) {
      for (const json::value& entry : *many) {
        const json::string* text = entry.if_string();
        found = found || (text != nullptr && *text == claims_.audience);
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          "introspection: the token is not meant for this service (aud)");
    }
  }
  const json::value* user = answer->if_contains(claims_.user_claim);
  const json::string* name = user == nullptr ? nullptr : user->if_string();
  if (name == nullptr || name->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("introspection: the answer has no string \"", claims_.user_claim, "\""));
  }
  return std::string(name->data(), name->size());
}

}  // namespace mailbox::server
