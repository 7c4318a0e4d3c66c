// The commands of the Not Authenticated state (RFC 3501 §6.2): STARTTLS, LOGIN,
// and AUTHENTICATE with SASL PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login,
// when the operator turns it on), SCRAM-SHA-256(-PLUS) (scram.cc), OAUTHBEARER
// (RFC 7628) and XOAUTH2 (when the operator turns them on), and SASL-IR (RFC 4959).

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/sasl.h"
#include "gateway/session/commands/sasl_bearer.h"
#include "proto/mailbox/v1/errors.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

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
  sasl::SetClient(session, request);
  return request;
}

// Checks the credentials with the mailbox service and answers the command.
awaitable<void> FinishLogin(CommandContext& session, const v1::AuthenticateRequest& request,
                            ops::LoginMechanism mechanism) {
  auto response = co_await session.store().Authenticate(request);
  if (!response.ok()) {
    sasl::AnswerFailure(session, response.status(), request.username(), mechanism);
    co_return;
  }
  sasl::AnswerSuccess(session, *response, mechanism);
}

// The mechanisms AUTHENTICATE takes on this connection, as named in the refusal
// of any other.
std::string OfferedMechanisms(const CommandContext& session) {
  std::string offered = "PLAIN";
  if (session.options().allow_auth_login) {
    absl::StrAppend(&offered, ", LOGIN");
  }
  if (session.options().allow_scram) {
    absl::StrAppend(&offered, ", SCRAM-SHA-256");
    if (!session.channel_binding().type.empty()) {
      absl::StrAppend(&offered, ", SCRAM-SHA-256-PLUS");
    }
  }
  if (session.options().oauth && session.tls_active()) {
    absl::StrAppend(&offered, ", OAUTHBEARER, XOAUTH2");
  }
  return offered;
}

// RFC 4616: [authzid] NUL authcid NUL passwd
awaitable<void> AuthenticatePlain(CommandContext& session,
                                  const imap::AuthenticateCommand& command) {
  std::optional<std::string> decoded = co_await sasl::FirstResponse(session, command);
  if (!decoded.has_value()) {
    co_return;
  }
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
  co_await FinishLogin(session, request, ops::LoginMechanism::kPlain);
}

// The LOGIN mechanism (draft-murchison-sasl-login): the server asks "Username:",
// then "Password:", each answered with the value alone. A SASL-IR initial
// response, if any, is the user name (the draft's §2 allows it). Checked as
// LOGIN and PLAIN are, through the same throttle.
awaitable<void> AuthenticateLogin(CommandContext& session,
                                  const imap::AuthenticateCommand& command) {
  std::optional<std::string> user;
  if (command.initial_response.has_value()) {
    user = co_await sasl::FirstResponse(session, command);
  } else {
    user = co_await sasl::Round(session, "Username:");
  }
  if (!user.has_value()) {
    co_return;
  }
  std::optional<std::string> password = co_await sasl::Round(session, "Password:");
  if (!password.has_value()) {
    co_return;
  }
  v1::AuthenticateRequest request =
      PasswordRequest(session, *std::move(user), *std::move(password), "");
  co_await FinishLogin(session, request, ops::LoginMechanism::kLoginSasl);
}

// AUTHENTICATE OAUTHBEARER (RFC 7628) and XOAUTH2: the token goes to the mailbox
// service, which checks it, through the same throttle as a password.
awaitable<void> AuthenticateBearer(CommandContext& session,
                                   const imap::AuthenticateCommand& command, bool xoauth2) {
  std::optional<std::string> decoded = co_await sasl::FirstResponse(session, command);
  if (!decoded.has_value()) {
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
  sasl::SetClient(session, request);
  const ops::LoginMechanism mechanism =
      xoauth2 ? ops::LoginMechanism::kXoauth2 : ops::LoginMechanism::kOauthBearer;
  auto response = co_await session.store().Authenticate(request);
  if (response.ok()) {
    sasl::AnswerSuccess(session, *response, mechanism);
    co_return;
  }
  if (v1::DetailOf(response.status()).code() == v1::AUTHENTICATIONFAILED) {
    // RFC 7628 §3.2.2: the error goes as a challenge, which the client answers
    // with a single %x01; the exchange fails whatever it sends. XOAUTH2 clients
    // get the same exchange, with the HTTP status Google's servers put in
    // "status".
    const SessionOptions& options = session.options();
    std::optional<std::string> answer = co_await sasl::Round(
        session, BearerErrorChallenge(xoauth2 ? "401" : "invalid_token", options.oauth_scope,
                                      options.oauth_openid_configuration));
    if (!answer.has_value()) {
      // Cancelled or broken off (already answered): the failure still counts.
      ops::GlobalMetrics().Login(mechanism, ops::LoginOutcome::kFailure);
      session.LogEvent(mailbox::log::Level::kWarning, mailbox::log::event::kLoginFailed,
                       {{"user", request.username()},
                        {"mechanism", ops::LoginMechanismName(mechanism)},
                        {"reason", "bad_credentials"}});
      if (session.CountAuthFailure()) {
        ops::GlobalMetrics().auth_disconnects.fetch_add(1);
        session.SendTaggedNow();
        session.EndWithBye("Too many failed authentication attempts");
      }
      co_return;
    }
  }
  sasl::AnswerFailure(session, response.status(), request.username(), mechanism);
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
  co_await FinishLogin(session, request, ops::LoginMechanism::kLogin);
}

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
  const bool plain = command.mechanism == "PLAIN";
  const bool login = command.mechanism == "LOGIN" && session.options().allow_auth_login;
  const bool scram = command.mechanism == "SCRAM-SHA-256" && session.options().allow_scram;
  // RFC 5802 §6: -PLUS only where the channel can be bound (TLS 1.3, or 1.2 with
  // Extended Master Secret).
  const bool scram_plus = command.mechanism == "SCRAM-SHA-256-PLUS" &&
                          session.options().allow_scram &&
                          !session.channel_binding().type.empty();
  if (!plain && !login && !scram && !scram_plus) {
    session.No(absl::StrCat("Unsupported authentication mechanism ", command.mechanism,
                            "; this server offers ", OfferedMechanisms(session)),
               "CANNOT");
    co_return;
  }
  if (PlaintextAuthRefused(session)) {
    co_return;
  }
  if (scram || scram_plus) {
    co_await AuthenticateScram(session, command, scram_plus);
  } else if (login) {
    co_await AuthenticateLogin(session, command);
  } else {
    co_await AuthenticatePlain(session, command);
  }
}

}  // namespace gateway::commands
