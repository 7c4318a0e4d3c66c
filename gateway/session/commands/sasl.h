// The SASL exchange of AUTHENTICATE (RFC 3501 §6.2.2, RFC 4959), shared by the
// mechanisms in auth.cc and scram.cc: base64 continuations, the client's
// responses, and the answer to what the mailbox service said.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "gateway/imap/command.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands::sasl {

using boost::asio::awaitable;

// RFC 4648 base64 (SASL responses). nullopt on any invalid character.
std::optional<std::string> DecodeBase64(std::string_view text);
std::string EncodeBase64(std::string_view bytes);

// The client's first response, decoded: the SASL-IR initial response (RFC 4959 §3;
// "=" is empty) if the command carried one, else the response to an empty
// challenge. nullopt when the command was answered (BAD: cancelled, not base64,
// a protocol error) or the connection ended.
awaitable<std::optional<std::string>> FirstResponse(CommandContext& session,
                                                    const imap::AuthenticateCommand& command);

// Sends `challenge` as a continuation ("+ " and its base64) and reads the client's
// response, decoded. nullopt as for FirstResponse.
awaitable<std::optional<std::string>> Round(CommandContext& session, std::string_view challenge);

// The client's address and this gateway's name on `request` (the service throttles
// failed attempts per user and client address).
void SetClient(const CommandContext& session, mailbox::v1::AuthenticateRequest& request);

// Answers an Authenticate call that failed: a tagged NO [AUTHENTICATIONFAILED] (or
// the service's THROTTLED text) counted by CountAuthFailure, BAD for a request the
// service refused as malformed, or the service's unavailability. Logs login_failed
// with `mechanism` (LOGIN: the LOGIN command; LOGIN-SASL: AUTHENTICATE LOGIN) and the reason, and counts the attempt in ops::Metrics::logins.
void AnswerFailure(CommandContext& session, const absl::Status& status,
                   std::string_view username, ops::LoginMechanism mechanism);

// Logs the session in with the credential the service returned and answers OK with
// the new capabilities; logs login_succeeded and counts it.
void AnswerSuccess(CommandContext& session, const mailbox::v1::AuthenticateResponse& response,
                   ops::LoginMechanism mechanism);

}  // namespace gateway::commands::sasl
