// The closed set of event names the gateway and the mailbox service log
// (docs/operations.md, "Logs", lists each with its fields). Alerts and the fail2ban
// filter (deploy/fail2ban/) key on these names: rename none.
#pragma once

#include <string_view>

namespace mailbox::log::event {

// Both processes.
inline constexpr std::string_view kStarted = "started";
inline constexpr std::string_view kDraining = "draining";
inline constexpr std::string_view kStopped = "stopped";
inline constexpr std::string_view kStoreUnavailable = "store_unavailable";
inline constexpr std::string_view kCertReload = "cert_reload";
inline constexpr std::string_view kWarning = "warning";  // a start-up warning (text)
inline constexpr std::string_view kLogSuppressed = "log_suppressed";
// gRPC's own log lines (the mailbox service), with file, line and message.
inline constexpr std::string_view kGrpc = "grpc";
// The gateway network layer's diagnostics (accept errors, the drain deadline), with a
// "message".
inline constexpr std::string_view kNetwork = "network";

// Gateway.
inline constexpr std::string_view kConnectionOpened = "connection_opened";
inline constexpr std::string_view kConnectionRefused = "connection_refused";
inline constexpr std::string_view kTlsHandshakeFailed = "tls_handshake_failed";
inline constexpr std::string_view kLoginSucceeded = "login_succeeded";
inline constexpr std::string_view kLoginFailed = "login_failed";
inline constexpr std::string_view kConnectionClosed = "connection_closed";
inline constexpr std::string_view kCompressionError = "compression_error";
inline constexpr std::string_view kInternalError = "internal_error";
// The drain's second step: the grace period is over, the listeners closed, and the
// sessions end at their next safe point.
inline constexpr std::string_view kListenersClosed = "listeners_closed";

// Mailbox service.
inline constexpr std::string_view kLoginThrottled = "login_throttled";
inline constexpr std::string_view kBearerRefused = "bearer_token_refused";
inline constexpr std::string_view kStoreHealthy = "store_healthy";
inline constexpr std::string_view kKeysReload = "oauth_keys_reload";
// A token or key file copied from --secrets-dir at start, with "file".
inline constexpr std::string_view kSecretInstalled = "secret_installed";

}  // namespace mailbox::log::event
