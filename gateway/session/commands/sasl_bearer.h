// The client messages of the SASL mechanisms that carry an OAuth 2.0 bearer token
// (RFC 6750), and the server's error challenge:
//  * OAUTHBEARER (RFC 7628 §3.1): a GS2 header (RFC 5801 §4) with an optional
//    authorization identity, then key=value pairs separated by %x01, one of them
//    "auth=Bearer <token>";
//  * XOAUTH2 (Google's predecessor of OAUTHBEARER): "user=" user %x01
//    "auth=Bearer " token %x01 %x01.
// The token itself is checked by the mailbox service.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace gateway::commands {

struct BearerCredentials {
  // The user the client named (OAUTHBEARER's authzid, XOAUTH2's user=), empty if
  // none: it must then be the user the token names.
  std::string user;
  std::string token;
};

// The decoded client response of OAUTHBEARER; InvalidArgument with a message for
// the client's BAD if it is malformed. Channel binding ("p=") is not offered.
absl::StatusOr<BearerCredentials> ParseOauthBearer(std::string_view message);

// The decoded client response of XOAUTH2.
absl::StatusOr<BearerCredentials> ParseXoauth2(std::string_view message);

// The JSON error the server sends (base64-encoded) as a challenge when a token is
// refused (RFC 7628 §3.2.2): {"status":<status>,"schemes":"bearer"} with "scope"
// and "openid-configuration" when not empty.
std::string BearerErrorChallenge(std::string_view status, std::string_view scope,
                                 std::string_view openid_configuration);

}  // namespace gateway::commands
