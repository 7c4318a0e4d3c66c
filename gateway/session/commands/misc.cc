// ENABLE (RFC 5161: CONDSTORE, QRESYNC) and ID (RFC 2971).

#include <optional>
#include <string>
#include <vector>

#include "boost/asio/awaitable.hpp"
#include "gateway/imap/command.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/command_context.h"

namespace gateway::commands {

awaitable<void> Capability(CommandContext& session) {
  session.Send(imap::CapabilityResponse(session.Capabilities()));
  session.Ok("CAPABILITY completed");
  co_return;
}

awaitable<void> Noop(CommandContext& session, std::string_view name) {
  // Pending updates go out before the tagged OK, as after every command.
  session.Ok(std::string(name) + " completed");
  co_return;
}

awaitable<void> Logout(CommandContext& session) {
  session.Logout();
  co_return;
}

awaitable<void> Unparsed(CommandContext& session, std::string_view name) {
  session.Bad(std::string(name) + " could not be parsed");
  co_return;
}

awaitable<void> Enable(CommandContext& session, const imap::EnableCommand& command) {
  // RFC 5161 §3.1 (and RFC 6855 §3, RFC 9051 §6.3.1): ENABLE belongs before
  // any mailbox is selected; enabling UTF8=ACCEPT, IMAP4rev2 or CONDSTORE under
  // a selection would change the syntax of a view the client already has.
  if (session.selected() != nullptr) {
    session.Bad("ENABLE is only valid before a mailbox is selected (RFC 5161 §3.1)");
    co_return;
  }
  std::vector<std::string> enabled;
  for (const std::string& capability : command.capabilities) {
    // Names arrive upper-cased. Only extensions that change the server's
    // behaviour are enabled; anything else is ignored, not refused (RFC 5161 §3.1).
    if (capability == "CONDSTORE") {
      if (!session.condstore_enabled()) {
        session.EnableCondstore();
        enabled.push_back(capability);
      }
    } else if (capability == "QRESYNC") {
      // RFC 7162 §3.2.3: enables CONDSTORE as well (listed only if asked for).
      if (!session.qresync_enabled()) {
        session.EnableQresync();
        enabled.push_back(capability);
      }
    } else if (capability == "UTF8=ACCEPT") {
      // RFC 6855 §3: UTF-8 mailbox names and strings from here on.
      if (!session.utf8_accept_enabled()) {
        session.EnableUtf8Accept();
        enabled.push_back(capability);
      }
    } else if (capability == "IMAP4REV2") {
      // RFC 9051 §7.2.2: the client takes the RFC 9051 behaviour, UTF-8
      // names (§5.1) included.
      if (!session.imap4rev2()) {
        session.EnableImap4rev2();
        enabled.push_back("IMAP4rev2");
      }
    }
  }
  // RFC 5161 §3.2: ENABLED lists what this command enabled, possibly nothing.
  session.Send(imap::EnabledResponse(enabled));
  session.Ok("ENABLE completed");
}

awaitable<void> Id(CommandContext& session, const imap::IdCommand& command) {
  // RFC 2971 §3.1: the client's fields may be logged; they are not, as they can
  // identify a person's device. The answer names the software, not the host or
  // operating system (§3.3 leaves that to the server's discretion).
  (void)command;
  const imap::IdCommand::Params ours = {{"name", "imapd"}, {"version", "0.1"}};
  session.Send(imap::IdResponse(ours));
  session.Ok("ID completed");
  co_return;
}

}  // namespace gateway::commands
