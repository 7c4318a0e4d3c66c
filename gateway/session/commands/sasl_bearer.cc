#include "gateway/session/commands/sasl_bearer.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"

namespace gateway::commands {
namespace {

constexpr char kSeparator = '\x01';  // RFC 7628 §3.1 kvsep

absl::Status Malformed(const char* what) { return absl::InvalidArgumentError(what); }

// RFC 5801 §4 saslname: "=2C" stands for "," and "=3D" for "="; any other "=" is
// an error.
std::optional<std::string> DecodeSaslName(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      out.push_back(text[i]);
    } else if (text.substr(i, 3) == "=2C") {
      out.push_back(',');
      i += 2;
    } else if (text.substr(i, 3) == "=3D") {
      out.push_back('=');
      i += 2;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// RFC 6750 §2.1: "Bearer" 1*SP b64token, the scheme in any case.
std::optional<std::string> BearerToken(std::string_view value) {
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(value.data(), kScheme.size()),
                              absl::string_view(kScheme.data(), kScheme.size())) ||
      value[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  size_t end = 0;
  while (end < value.size() && (absl::ascii_isalnum(value[end]) ||
                                std::string_view("-._~+/").find(value[end]) !=
                                    std::string_view::npos)) {
    ++end;
  }
  if (end == 0) {
    return std::nullopt;
  }
  while (end < value.size() && value[end] == '=') {
    ++end;
  }
  if (end != value.size()) {
    return std::nullopt;
  }
  return std::string(value);
}

// key=value pairs, each ended by %x01, and an empty one closing the list (RFC
// 7628 §3.1: *kvpair kvsep). Takes "auth" and, if `user` is given, "user"; other
// keys (host, port, ...) are allowed and ignored.
absl::Status ParsePairs(std::string_view pairs, std::string* auth, std::string* user) {
  bool closed = false;
  while (!pairs.empty()) {
    const size_t end = pairs.find(kSeparator);
    if (end == std::string_view::npos) {
      return Malformed("a key=value pair is not ended by %x01");
    }
    std::string_view pair = pairs.substr(0, end);
    pairs.remove_prefix(end + 1);
    if (pair.empty()) {
      closed = true;
      break;
    }
    const size_t equals = pair.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return Malformed("a key=value pair has no key");
    }
    std::string_view key = pair.substr(0, equals);
    for (char c : key) {
      if (!absl::ascii_isalpha(c)) {
        return Malformed("a key of a key=value pair is not letters");
      }
    }
    std::string_view value = pair.substr(equals + 1);
    std::string* target = key == "auth" ? auth : (key == "user" ? user : nullptr);
    if (target != nullptr) {
      if (!target->empty()) {
        return Malformed("a key appears twice");
      }
      *target = std::string(value);
    }
  }
  if (!closed || !pairs.empty()) {
    return Malformed("the key=value pairs must end with an empty one (%x01 %x01)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BearerCredentials> ParseOauthBearer(std::string_view message) {
  // gs2-header = gs2-cb-flag "," [ gs2-authzid ] ","
  BearerCredentials credentials;
  if (message.substr(0, 2) == "p=") {
    return Malformed("OAUTHBEARER: channel binding is not offered; send \"n,\"");
  }
  if (message.size() < 2 || (message[0] != 'n' && message[0] != 'y') || message[1] != ',') {
    return Malformed("OAUTHBEARER: the response starts with a GS2 header (\"n,,\" or "
                     "\"n,a=user,\")");
  }
  message.remove_prefix(2);
  const size_t comma = message.find(',');
  if (comma == std::string_view::npos) {
    return Malformed("OAUTHBEARER: the GS2 header is not ended by \",\"");
  }
  std::string_view authzid = message.substr(0, comma);
  if (!authzid.empty()) {
    std::optional<std::string> name =
        authzid.substr(0, 2) == "a=" ? DecodeSaslName(authzid.substr(2)) : std::nullopt;
    if (!name.has_value() || name->empty()) {
      return Malformed("OAUTHBEARER: the GS2 authorization identity is \"a=\" saslname");
    }
    credentials.user = *std::move(name);
  }
  message.remove_prefix(comma + 1);
  if (message.empty() || message.front() != kSeparator) {
    return Malformed("OAUTHBEARER: %x01 follows the GS2 header");
  }
  message.remove_prefix(1);
  std::string auth;
  if (absl::Status status = ParsePairs(message, &auth, nullptr); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("OAUTHBEARER: ", status.message()));
  }
  std::optional<std::string> token = BearerToken(auth);
  if (!token.has_value()) {
    return Malformed("OAUTHBEARER: no \"auth=Bearer <token>\" pair");
  }
  credentials.token = *std::move(token);
  return credentials;
}

absl::StatusOr<BearerCredentials> ParseXoauth2(std::string_view message) {
  BearerCredentials credentials;
  std::string auth;
  if (absl::Status status = ParsePairs(message, &auth, &credentials.user); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("XOAUTH2: ", status.message()));
  }
  if (credentials.user.empty()) {
    return Malformed("XOAUTH2: no \"user=\" pair");
  }
  std::optional<std::string> token = BearerToken(auth);
  if (!token.has_value()) {
    return Malformed("XOAUTH2: no \"auth=Bearer <token>\" pair");
  }
  credentials.token = *std::move(token);
  return credentials;
}

std::string BearerErrorChallenge(std::string_view status, std::string_view scope,
                                 std::string_view openid_configuration) {
  // RFC 7628 §3.2.2's members, in its order.
  boost::json::object json = {{"status", status}, {"schemes", "bearer"}};
  if (!scope.empty()) {
    json["scope"] = scope;
  }
  if (!openid_configuration.empty()) {
    json["openid-configuration"] = openid_configuration;
  }
  return boost::json::serialize(json);
}

}  // namespace gateway::commands
