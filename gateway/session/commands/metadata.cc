// METADATA (RFC 5464): annotations on the server ("") and on mailboxes, kept by
// the mailbox service, which checks entry names and enforces the size limits.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/mailbox/names.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"

namespace gateway::commands {
namespace {

namespace v1 = ::mailbox::v1;
using ::mailbox::rules::CanonicalMailboxName;

// The mailbox a command names, decoded; "" (the server) stays "". nullopt after
// the session answered an undecodable name.
std::optional<std::string> AnnotatedMailbox(CommandContext& session, const std::string& wire) {
  if (wire.empty()) {
    return std::string();
  }
  std::optional<std::string> name = session.DecodeMailboxName(wire);
  if (!name.has_value()) {
    return std::nullopt;
  }
  return CanonicalMailboxName(*name);
}

}  // namespace

awaitable<void> GetMetadata(CommandContext& session, const imap::GetMetadataCommand& command) {
  std::optional<std::string> mailbox = AnnotatedMailbox(session, command.mailbox);
  if (!mailbox.has_value()) {
    co_return;
  }
  v1::GetMetadataRequest request;
  request.set_mailbox(*mailbox);
  for (const std::string& entry : command.entries) {
    request.add_entries(entry);
  }
  request.set_depth(command.depth);
  if (command.max_size.has_value()) {
    // MAXSIZE 0 leaves out every value that is not empty.
    request.set_max_size(*command.max_size == 0 ? 1 : *command.max_size);
  }
  absl::StatusOr<v1::GetMetadataResponse> found =
      co_await session.store().GetMetadata(std::move(request));
  if (!found.ok()) {
    session.Fail(found.status(), "GETMETADATA");
    co_return;
  }
  std::vector<std::pair<std::string, std::string>> entries;
  for (const v1::MetadataEntry& entry : found->entries()) {
    if (command.max_size == uint64_t{0} && !entry.value().empty()) {
      continue;
    }
    entries.emplace_back(entry.name(), entry.value());
  }
  // §4.2: a METADATA response carries the entries that exist; none, none sent.
  if (!entries.empty()) {
    std::string line = imap::MetadataResponse(*mailbox, entries, session.utf8_accept());
    if (line.empty()) {
      session.Bad("mailbox name is not valid UTF-8");
      co_return;
    }
    session.Send(line);
  }
  if (found->longest_left_out() > 0) {
    // §4.2.1: the size of the longest value MAXSIZE left out.
    session.Ok("GETMETADATA completed",
               absl::StrCat("METADATA LONGENTRIES ", found->longest_left_out()));
    co_return;
  }
  session.Ok("GETMETADATA completed");
}

awaitable<void> SetMetadata(CommandContext& session, const imap::SetMetadataCommand& command) {
  std::optional<std::string> mailbox = AnnotatedMailbox(session, command.mailbox);
  if (!mailbox.has_value()) {
    co_return;
  }
  v1::SetMetadataRequest request;
  request.set_mailbox(*mailbox);
  for (const auto& [name, value] : command.entries) {
    v1::MetadataEntry* entry = request.add_entries();
    entry->set_name(name);
    if (value.has_value()) {
      entry->set_value(*value);
    }
  }
  absl::StatusOr<v1::SetMetadataResponse> set =
      co_await session.store().SetMetadata(std::move(request));
  if (!set.ok()) {
    session.Fail(set.status(), "SETMETADATA");
    co_return;
  }
  session.Ok("SETMETADATA completed");
}

}  // namespace gateway::commands
