#include "gateway/session/commands/sasl.h"

#include <cstdint>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "proto/mailbox/v1/errors.h"

namespace gateway::commands::sasl {

namespace v1 = mailbox::v1;

std::optional<std::string> DecodeBase64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
  }
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) {
      return std::nullopt;
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

std::string EncodeBase64(std::string_view bytes) {
  return absl::Base64Escape(absl::string_view(bytes.data(), bytes.size()));
}

namespace {

// Sends `continuation` (a whole "+ ...\r\n" line) and reads one line of base64.
awaitable<std::optional<std::string>> ReadResponse(CommandContext& session,
                                                   std::string continuation) {
  session.Send(continuation);
  const bool flushed = co_await session.Flush();
  if (!flushed) {
    co_return std::nullopt;
  }
  session.input().SetMode(imap::Receiver::Mode::kLine);
  std::string response;
  while (true) {
    std::optional<imap::Event> event = co_await session.NextInput(session.InputDeadline());
    if (!event.has_value()) {
      co_return std::nullopt;  // the connection ended
    }
    if (auto* line = std::get_if<imap::Line>(&*event)) {
      response = line->text;
      break;
    }
    if (auto* error = std::get_if<imap::ProtocolError>(&*event)) {
      session.input().SetMode(imap::Receiver::Mode::kCommand);
      session.Bad(error->message);
      co_return std::nullopt;
    }
  }
  session.input().SetMode(imap::Receiver::Mode::kCommand);
  if (response == "*") {
    // RFC 3501 §6.2.2: the client cancels the exchange.
    session.Bad("AUTHENTICATE cancelled by the client");
    co_return std::nullopt;
  }
  std::optional<std::string> decoded = DecodeBase64(response);
  if (!decoded.has_value()) {
    session.Bad("The SASL response is not valid base64");
  }
  co_return decoded;
}

}  // namespace

awaitable<std::optional<std::string>> FirstResponse(CommandContext& session,
                                                    const imap::AuthenticateCommand& command) {
  if (command.initial_response.has_value()) {
    if (*command.initial_response == "=") {
      co_return std::string();
    }
    std::optional<std::string> decoded = DecodeBase64(*command.initial_response);
    if (!decoded.has_value()) {
      session.Bad("The SASL response is not valid base64");
    }
    co_return decoded;
  }
  // RFC 3501 §6.2.2: an empty challenge, then one line of base64.
  std::optional<std::string> response = co_await ReadResponse(session, "+ \r\n");
  co_return response;
}

awaitable<std::optional<std::string>> Round(CommandContext& session, std::string_view challenge) {
  std::optional<std::string> response =
      co_await ReadResponse(session, absl::StrCat("+ ", EncodeBase64(challenge), "\r\n"));
  co_return response;
}

void SetClient(const CommandContext& session, v1::AuthenticateRequest& request) {
  // The client's address, from the PROXY header when a trusted proxy sent one
  // (net/listener.h): the service throttles failed logins per client_ip.
  request.set_client_ip(session.client_address());
  request.set_gateway_id(session.options().gateway_id);
}

void AnswerFailure(CommandContext& session, const absl::Status& status,
                   std::string_view username, ops::LoginMechanism mechanism) {
  namespace log = mailbox::log;
  v1::ErrorDetail detail = v1::DetailOf(status);
  // The reason names the service's verdict; its own words stay out of the line
  // unless they are about the throttle (they never hold the credential).
  const std::string_view reason =
      detail.code() == v1::AUTHENTICATIONFAILED ? "bad_credentials"
      : detail.code() == v1::THROTTLED          ? "throttled"
      : detail.code() == v1::UNAVAILABLE ||
              (detail.code() == v1::ERROR_CODE_UNSPECIFIED &&
               (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)))
          ? "unavailable"
      : detail.code() == v1::BAD_REQUEST ? "bad_request"
      : detail.code() == v1::CANNOT      ? "not_offered"
                                         : "error";
  log::Fields fields = {{"user", username}, {"mechanism", ops::LoginMechanismName(mechanism)}, {"reason", reason}};
  if (detail.code() == v1::THROTTLED && detail.retry_after_ms() > 0) {
    fields.push_back({"retry_after_ms", detail.retry_after_ms()});
  }
  session.LogEvent(reason == "unavailable" ? log::Level::kError : log::Level::kWarning,
                   log::event::kLoginFailed, std::move(fields));
  auto& metrics = ops::GlobalMetrics();
  if (reason == "unavailable") {
    metrics.Login(mechanism, ops::LoginOutcome::kUnavailable);
    session.Fail(status, "Authentication");
    return;
  }
  metrics.Login(mechanism, detail.code() == v1::THROTTLED ? ops::LoginOutcome::kThrottled
                                                         : ops::LoginOutcome::kFailure);
  if (detail.code() == v1::BAD_REQUEST) {
    // E.g. a user name over the service's 255-octet limit: say so, nothing was
    // checked.
    session.Bad(absl::StrCat("Authentication: ", std::string(status.message())));
    return;
  }
  if (detail.code() == v1::CANNOT) {
    // E.g. bearer tokens offered by this gateway (--oauth) while the service
    // checks none: the operator's mistake, not the client's failure.
    session.No(absl::StrCat("Authentication: ", std::string(status.message())), "CANNOT");
    return;
  }
  // The service's own words where they are meant for the client: the wait of the
  // throttle, or why a SCRAM exchange failed (e.g. a channel binding this
  // connection does not have).
  const bool own_words =
      (detail.code() == v1::THROTTLED || detail.code() == v1::AUTHENTICATIONFAILED) &&
      !status.message().empty();
  std::string text = own_words ? std::string(status.message())
                               : "Authentication failed: wrong user name or password";
  session.No(text, "AUTHENTICATIONFAILED");
  if (session.CountAuthFailure()) {
    metrics.auth_disconnects.fetch_add(1);
    session.SendTaggedNow();
    session.EndWithBye("Too many failed authentication attempts");
  }
}

void AnswerSuccess(CommandContext& session, const v1::AuthenticateResponse& response,
                   ops::LoginMechanism mechanism) {
  ops::GlobalMetrics().Login(mechanism, ops::LoginOutcome::kSuccess);
  std::string username = response.principal().username();
  mailbox::client::Session credential(response.session_token());
  credential.user_id = response.principal().user_id();
  session.LoggedIn(std::move(credential), username);
  session.LogEvent(mailbox::log::Level::kInfo, mailbox::log::event::kLoginSucceeded,
                   {{"mechanism", ops::LoginMechanismName(mechanism)}});
  session.Ok(absl::StrCat("Logged in as ", username),
             imap::code::Capability(session.Capabilities()));
}

}  // namespace gateway::commands::sasl
