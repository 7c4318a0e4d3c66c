// IDLE (RFC 2177): the continuation, the session's wait for DONE (during which
// it reports changes as they come), and the completion.

#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"

namespace gateway::commands {

awaitable<void> Idle(CommandContext& session) {
  session.Send(imap::ContinuationResponse("idling"));
  const bool flushed = co_await session.Flush();
  if (!flushed) {
    co_return;
  }
  const CommandContext::IdleEnd end = co_await session.WaitIdle();
  if (end == CommandContext::IdleEnd::kDone) {
    session.Ok("IDLE terminated");
  } else if (end == CommandContext::IdleEnd::kLoggedOut) {
    session.MarkAnswered();  // the BYE ended it: no completion follows
  }
}

}  // namespace gateway::commands
