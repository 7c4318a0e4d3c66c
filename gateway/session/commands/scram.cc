// AUTHENTICATE SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677): the
// gateway relays the conversation to the mailbox service, which holds the keys and
// checks the proof (mailbox-service/server/scram_auth.cc). The gateway keeps the
// service's sealed state for the length of the one AUTHENTICATE and adds the
// channel binding of its TLS connection (net/channel_binding.h) for -PLUS.
//
//   C: a AUTHENTICATE SCRAM-SHA-256 [initial response]
//   S: + <server-first-message>        (from the service's first step)
//   C: <client-final-message>
//   S: + <server-final-message>        (the service's "v=", proving it knows the keys)
//   C: (empty line)
//   S: a OK [CAPABILITY ...]
//
// IMAP has no additional data on success (RFC 3501 §6.2.2), so the server-final
// message goes out as a last challenge, answered by an empty response.

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/sasl.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

// The "n=" attribute of a client-first message, as sent (for the log line of a
// failure only; the service parses the message).
std::string UserForLog(std::string_view client_first) {
  const size_t at = client_first.find(",n=");
  if (at == std::string_view::npos) {
    return "(unnamed SCRAM user)";
  }
  std::string_view rest = client_first.substr(at + 3);
  return std::string(rest.substr(0, std::min<size_t>(rest.find(','), 255)));
}

}  // namespace

awaitable<void> AuthenticateScram(CommandContext& session,
                                  const imap::AuthenticateCommand& command, bool plus) {
  const ops::LoginMechanism mechanism =
      plus ? ops::LoginMechanism::kScramPlus : ops::LoginMechanism::kScram;
  std::optional<std::string> client_first = co_await sasl::FirstResponse(session, command);
  if (!client_first.has_value()) {
    co_return;
  }
  const std::string user = UserForLog(*client_first);
  const net::ChannelBinding binding = session.channel_binding();
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::SCRAM_SHA_256);
  request.set_sasl_step(*std::move(client_first));
  request.mutable_scram()->set_plus(plus);
  // The binding of this connection is sent whenever it has one, -PLUS or not: the
  // service then knows -PLUS was offered and refuses a client that says "y"
  // (RFC 5802 §6).
  request.mutable_scram()->set_channel_binding_type(binding.type);
  request.mutable_scram()->set_channel_binding(binding.data);
  sasl::SetClient(session, request);

  auto first = co_await session.store().Authenticate(request);
  if (!first.ok()) {
    sasl::AnswerFailure(session, first.status(), user, mechanism);
    co_return;
  }
  std::optional<std::string> client_final = co_await sasl::Round(session, first->sasl_step());
  if (!client_final.has_value()) {
    co_return;
  }
  request.set_sasl_step(*std::move(client_final));
  request.mutable_scram()->set_state(first->scram_state());
  auto final_step = co_await session.store().Authenticate(request);
  if (!final_step.ok()) {
    sasl::AnswerFailure(session, final_step.status(), user, mechanism);
    co_return;
  }
  if (final_step->session_token().empty()) {
    session.Bad("SCRAM: the mailbox service did not end the exchange after two steps");
    co_return;
  }
  std::optional<std::string> empty = co_await sasl::Round(session, final_step->sasl_step());
  if (!empty.has_value()) {
    co_return;  // cancelled: not logged in
  }
  if (!empty->empty()) {
    session.Bad("SCRAM: the response to the server-final message is empty");
    co_return;
  }
  sasl::AnswerSuccess(session, *final_step, mechanism);
}

}  // namespace gateway::commands
