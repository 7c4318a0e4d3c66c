// The commands of the Not Authenticated state (RFC 3501 §6.2): STARTTLS, LOGIN,
// and AUTHENTICATE with SASL PLAIN (RFC 4616), OAUTHBEARER (RFC 7628) and XOAUTH2,
// and SASL-IR (RFC 4959).

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/sasl_bearer.h"
#include "proto/mailbox/v1/errors.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

// RFC 4648 base64 (SASL responses). nullopt on any invalid character.
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

// Answers NO [PRIVACYREQUIRED] and returns true if plaintext auth is not allowed here.
bool PlaintextAuthRefused(CommandContext& session) {
  if (session.tls_active() || session.options().allow_plaintext_auth) {
    return false;
  }
  session.No("Plaintext authentication is disabled: use STARTTLS or the IMAPS port first",
             "PRIVACYREQUIRED");
  return true;
}

v1::AuthenticateRequest PasswordRequest(const CommandContext& session, std::string user,
                                        std::string password, std::string authzid) {
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::PASSWORD);
  request.set_username(std::move(user));
  request.set_password(std::move(password));
  request.set_authzid(std::move(authzid));
  // The client's address, from the PROXY header when a trusted proxy sent one
  // (net/listener.h): the service throttles failed logins per client_ip.
  request.set_client_ip(session.client_address());
  request.set_gateway_id(session.options().gateway_id);
  return request;
}

// Sends a continuation carrying `challenge` (base64, may be empty) and reads the
// client's one-line response (RFC 3501 §6.2.2). nullopt if the connection ended
// or the command was answered (a protocol error, or "*": the client cancelled).
awaitable<std::optional<std::string>> Challenge(CommandContext& session,
                                                std::string_view challenge) {
  session.Send(absl::StrCat("+ ", std::string(challenge), "\r\n"));
  const bool flushed = co_await session.Flush();
  if (!flushed) {
    co_return std::nullopt;
  }
  session.input().SetMode(imap::Receiver::Mode::kLine);
  std::optional<std::string> response;
  while (true) {
    std::optional<imap::Event> event = co_await session.NextInput(session.InputDeadline());
    if (!event.has_value()) {
      break;  // the connection ended
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
    session.Bad("AUTHENTICATE cancelled by the client");
    co_return std::nullopt;
  }
  co_return response;
}

// The client's response: the initial one (SASL-IR, RFC 4959 §3: "=" is empty) or
// one read after an empty challenge.
awaitable<std::optional<std::string>> FirstResponse(CommandContext& session,
                                                    const imap::AuthenticateCommand& command) {
  if (command.initial_response.has_value()) {
    co_return *command.initial_response == "=" ? std::string() : *command.initial_response;
  }
  std::optional<std::string> response = co_await Challenge(session, "");
  co_return response;
}

// Checks the credentials with the mailbox service and answers the command. For
// a refused token, `failure_challenge` (not empty) is first sent as a challenge
// and the client's answer awaited (RFC 7628 §3.2.2) before the NO.
awaitable<void> FinishLogin(CommandContext& session, const v1::AuthenticateRequest& request,
                            std::string failure_challenge = "") {
  auto response = co_await session.store().Authenticate(request);
  if (!response.ok()) {
    v1::ErrorDetail detail = v1::DetailOf(response.status());
    if (detail.code() == v1::UNAVAILABLE ||
        (detail.code() == v1::ERROR_CODE_UNSPECIFIED &&
         (absl::IsUnavailable(response.status()) || absl::IsDeadlineExceeded(response.status())))) {
      session.Fail(response.status(), "Authentication");
      co_return;
    }
    if (detail.code() == v1::CANNOT) {
      // E.g. bearer tokens offered by this gateway (--oauth) while the service
      // checks none: the operator's mistake, not the client's failure.
      session.No(absl::StrCat("Authentication: ", std::string(response.status().message())),
                 "CANNOT");
      co_return;
    }
    if (detail.code() == v1::BAD_REQUEST) {
      // E.g. a user name over the service's 255-octet limit: say so, nothing was
      // checked.
      session.Bad(absl::StrCat("Authentication: ", std::string(response.status().message())));
      co_return;
    }
    ops::GlobalMetrics().auth_failures.fetch_add(1);
    const bool bearer = request.mechanism() == v1::BEARER;
    session.LogConnection(absl::StrCat("authentication failed for ", request.username(),
                                       bearer ? " (bearer token)" : ""));
    std::string text = detail.code() == v1::THROTTLED ? std::string(response.status().message())
                       : bearer ? "Authentication failed: the token is invalid or expired"
                                : "Authentication failed: wrong user name or password";
    if (detail.code() != v1::THROTTLED && !failure_challenge.empty()) {
      // RFC 7628 §3.2.2: the error as a challenge; the client answers with a
      // single %x01 (whatever it sends, the exchange fails).
      const bool counted_out = session.CountAuthFailure();
      std::optional<std::string> answer = co_await Challenge(session, failure_challenge);
      if (!answer.has_value()) {
        co_return;
      }
      session.No(text, "AUTHENTICATIONFAILED");
      if (counted_out) {
        session.SendTaggedNow();
        session.EndWithBye("Too many failed authentication attempts");
      }
      co_return;
    }
    session.No(text, "AUTHENTICATIONFAILED");
    if (session.CountAuthFailure()) {
      session.SendTaggedNow();
      session.EndWithBye("Too many failed authentication attempts");
    }
    co_return;
  }
  std::string username = response->principal().username();
  session.LoggedIn(mailbox::client::Session(response->session_token()), username);
  session.Ok(absl::StrCat("Logged in as ", username),
             imap::code::Capability(session.Capabilities()));
}

}  // namespace

awaitable<void> StartTls(CommandContext& session) {
  if (session.tls_active()) {
    session.Bad("TLS is already active");
    co_return;
  }
  // The tagged OK goes out before the handshake, so the command writes it itself.
  session.MarkAnswered();
  co_await session.UpgradeToTls(
      imap::StatusResponse(session.tag(), imap::Status::kOk, "", "Begin TLS negotiation now"));
}

awaitable<void> Login(CommandContext& session, const std::string& user,
                      const std::string& password) {
  if (PlaintextAuthRefused(session)) {
    co_return;
  }
  v1::AuthenticateRequest request = PasswordRequest(session, user, password, "");
  co_await FinishLogin(session, request);
}

namespace {

// AUTHENTICATE OAUTHBEARER (RFC 7628) and XOAUTH2: the token goes to the mailbox
// service, which checks it.
awaitable<void> AuthenticateBearer(CommandContext& session,
                                   const imap::AuthenticateCommand& command, bool xoauth2) {
  std::optional<std::string> response = co_await FirstResponse(session, command);
  if (!response.has_value()) {
    co_return;
  }
  auto decoded = DecodeBase64(*response);
  if (!decoded.has_value()) {
    session.Bad("The SASL response is not valid base64");
    co_return;
  }
  absl::StatusOr<BearerCredentials> credentials =
      xoauth2 ? ParseXoauth2(*decoded) : ParseOauthBearer(*decoded);
  if (!credentials.ok()) {
    session.Bad(std::string(credentials.status().message()));
    co_return;
  }
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::BEARER);
  request.set_username(std::move(credentials->user));
  request.set_token(std::move(credentials->token));
  request.set_client_ip(session.client_address());
  request.set_gateway_id(session.options().gateway_id);
  // RFC 7628 §3.2.2 for OAUTHBEARER; XOAUTH2 clients get the same exchange, with
  // the HTTP status Google's servers put in "status".
  const SessionOptions& options = session.options();
  std::string challenge = BearerErrorChallenge(xoauth2 ? "401" : "invalid_token",
                                               options.oauth_scope,
                                               options.oauth_openid_configuration);
  co_await FinishLogin(session, request, std::move(challenge));
}

}  // namespace

awaitable<void> Authenticate(CommandContext& session, const imap::AuthenticateCommand& command) {
  const bool bearer = command.mechanism == "OAUTHBEARER" || command.mechanism == "XOAUTH2";
  if (bearer && session.options().oauth) {
    if (!session.tls_active()) {
      // A bearer token is a replayable secret: never over plaintext, whatever
      // --allow-plaintext-auth says.
      session.No("OAuth bearer tokens are accepted only over TLS: use STARTTLS or the IMAPS "
                 "port first",
                 "PRIVACYREQUIRED");
      co_return;
    }
    co_await AuthenticateBearer(session, command, command.mechanism == "XOAUTH2");
    co_return;
  }
  if (command.mechanism != "PLAIN") {
    session.No(absl::StrCat("Unsupported authentication mechanism ", command.mechanism,
                            "; this server offers PLAIN",
                            session.options().oauth && session.tls_active()
                                ? ", OAUTHBEARER and XOAUTH2"
                                : ""),
               "CANNOT");
    co_return;
  }
  if (PlaintextAuthRefused(session)) {
    co_return;
  }
  std::optional<std::string> response = co_await FirstResponse(session, command);
  if (!response.has_value()) {
    co_return;
  }
  auto decoded = DecodeBase64(*response);
  if (!decoded.has_value()) {
    session.Bad("The SASL response is not valid base64");
    co_return;
  }
  // RFC 4616: [authzid] NUL authcid NUL passwd
  size_t first = decoded->find('\0');
  size_t second = first == std::string::npos ? first : decoded->find('\0', first + 1);
  if (second == std::string::npos) {
    session.Bad("A PLAIN response is authzid NUL user NUL password");
    co_return;
  }
  std::string authzid = decoded->substr(0, first);
  std::string user = decoded->substr(first + 1, second - first - 1);
  std::string password = decoded->substr(second + 1);
  v1::AuthenticateRequest request =
      PasswordRequest(session, std::move(user), std::move(password), std::move(authzid));
  co_await FinishLogin(session, request);
}

}  // namespace gateway::commands
