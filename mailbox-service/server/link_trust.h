// Whose word the service takes for a login's client IP.
//
// Authenticate throttles failed logins per user and per client IP (auth.h). The IP
// comes from the caller, a gateway that saw the IMAP client; anyone else who can reach
// the service could send a fresh made-up address with each guess and never be slowed.
// So the reported IP is taken only from callers the operator vouched for:
//
// * a caller whose client certificate verified against the service's client CA (TLS
//   link; the listener only accepts verified certificates);
// * a caller that sent the gateway token (storage-client/link_token.h), a secret in a
//   file only the operator's processes can read, on any link. A plaintext listener on
//   loopback is not enough by itself: every local user can reach it.
//
// Any other caller is throttled by its own network address instead of the one it
// reports.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "grpcpp/security/auth_context.h"

namespace mailbox::server {

// True if `auth` (the call's auth context; may be null) describes a TLS link.
bool IsTlsLink(const grpc::AuthContext* auth);

// The transport security type gRPC gives plaintext (insecure credentials) calls.
inline constexpr std::string_view kInsecureTransportSecurityType = "insecure";

// True if `auth` describes a plaintext link.
bool IsPlaintextLink(const grpc::AuthContext* auth);

// True if the caller presented a client certificate that verified.
bool HasVerifiedClientCertificate(const grpc::AuthContext* auth);

// The host part of a gRPC peer string ("ipv4:192.0.2.7:5000" -> "192.0.2.7",
// "ipv6:[2001:db8::1]:5000" or its percent-encoded form -> "2001:db8::1",
// "unix:/path" -> "unix:/path").
std::string PeerHost(std::string_view peer);

// True if the caller sent a gateway token (`presented`, from the call's metadata)
// equal to `expected`. Constant time in the token's content; an empty `expected`
// (no token file) matches nothing.
bool GatewayTokenMatches(std::optional<std::string_view> presented, std::string_view expected);

// The client IP to throttle this login by: `claimed` from a trusted caller (see
// above; `token_matches` from GatewayTokenMatches), else the caller's own address
// from `peer`.
std::string ThrottleClientIp(const grpc::AuthContext* auth, std::string_view peer,
                             const std::string& claimed, bool token_matches);

}  // namespace mailbox::server
