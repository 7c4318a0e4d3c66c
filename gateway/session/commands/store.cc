// STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8) with the RFC 7162 §3.1.3
// UNCHANGEDSINCE modifier.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/command.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

v1::StoreRequest::Mode ToProtoMode(imap::StoreCommand::Mode mode) {
  switch (mode) {
    case imap::StoreCommand::Mode::kReplace: return v1::StoreRequest::SET;
    case imap::StoreCommand::Mode::kAdd: return v1::StoreRequest::ADD;
    case imap::StoreCommand::Mode::kRemove: return v1::StoreRequest::REMOVE;
  }
  return v1::StoreRequest::MODE_UNSPECIFIED;
}

}  // namespace

std::string FlagsFetchResponse(const SelectedMailbox& mailbox, const v1::MessageFlags& message,
                               bool with_uid, bool with_modseq) {
  std::optional<uint32_t> seq = mailbox.map.SeqOf(message.uid());
  if (!seq.has_value()) {
    return "";
  }
  std::vector<std::string> flags(message.flags().begin(), message.flags().end());
  // \Recent is never stored; only this session knows it (RFC 3501 §2.3.2).
  if (mailbox.recent.count(message.uid()) > 0) {
    flags.push_back("\\Recent");
  }
  imap::FetchResponseBuilder fetch(*seq);
  fetch.Flags(flags);
  if (with_uid) {
    fetch.Uid(message.uid());
  }
  if (with_modseq) {
    fetch.ModSeq(message.modseq());
  }
  return fetch.Finish();
}

awaitable<void> Store(CommandContext& session, const imap::StoreCommand& command) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("STORE needs a selected mailbox");
    co_return;
  }
  // RFC 3501 §2.3.2: \Recent is set by the server only.
  for (const std::string& flag : command.flags) {
    if (absl::EqualsIgnoreCase(flag, "\\Recent")) {
      session.Bad("\\Recent cannot be stored: only the server sets it");
      co_return;
    }
  }
  // Out-of-range sequence numbers: BAD, as for FETCH (see fetch.cc).
  if (auto error = SequenceSetError(command.set, command.uid, mailbox->map.size())) {
    session.Bad(*error);
    co_return;
  }
  // RFC 3501 §6.3.2: a mailbox opened with EXAMINE is not changed.
  if (mailbox->read_only) {
    session.No("STORE is not allowed: the mailbox is read-only", imap::code::kReadOnly);
    co_return;
  }
  // RFC 7162 §3.1: STORE with UNCHANGEDSINCE enables CONDSTORE.
  if (command.unchanged_since.has_value()) {
    session.EnableCondstore();
  }
  const bool condstore = session.condstore_enabled() || mailbox->condstore;
  const std::vector<imap::Interval> uids = session.ResolveSet(command.set, command.uid);
  if (uids.empty()) {
    session.Ok("STORE completed");
    co_return;
  }

  v1::StoreRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  *request.mutable_uids() = CommandContext::ToUidSet(uids);
  request.set_mode(ToProtoMode(command.mode));
  for (const std::string& flag : command.flags) {
    request.add_flags(flag);
  }
  if (command.unchanged_since.has_value()) {
    request.set_has_unchanged_since(true);
    request.set_unchanged_since(*command.unchanged_since);
  }
  absl::StatusOr<v1::StoreResponse> response =
      co_await session.store().Store(request);
  if (!response.ok()) {
    session.Fail(response.status(), "STORE");
    co_return;
  }
  // Only commands change the selection (feed events are queued), so `mailbox`
  // is still valid after the await.

  // .SILENT suppresses the FETCH responses (RFC 3501 §6.4.6), except that
  // with UNCHANGEDSINCE they are sent anyway so the client learns each new
  // MODSEQ (RFC 7162 §3.1.3). With CONDSTORE enabled they carry UID and
  // MODSEQ (RFC 7162 §3.2.4); UID STORE always carries the UID (§6.4.8).
  const bool report = !command.silent || command.unchanged_since.has_value();
  const bool with_uid = command.uid || condstore;
  for (const v1::MessageFlags& message : response->changed()) {
    // This session reports the change itself; its feed event must not repeat it.
    if (message.modseq() != 0) {
      mailbox->own_modseqs.insert(message.modseq());
    }
    mailbox->LearnFlags(message.uid(), message.flags(), message.modseq(),
                        session.options().max_known_flags);
    // Even for .SILENT: the mailbox now has the keyword, so FLAGS lists it.
    session.AnnounceKeywords(message.flags());
    if (report) {
      session.Send(FlagsFetchResponse(*mailbox, message, with_uid, condstore));
    }
  }

  // RFC 7162 §3.1.3: messages that failed UNCHANGEDSINCE, as UIDs for UID
  // STORE and as sequence numbers otherwise.
  if (response->modified().ranges_size() > 0) {
    const std::vector<imap::Interval> modified =
        command.uid ? CommandContext::ToIntervals(response->modified())
                    : UidsToSequenceIntervals(response->modified(), mailbox->map);
    if (!modified.empty()) {
      session.Ok("Conditional STORE failed for some messages", imap::code::Modified(modified));
      co_return;
    }
  }
  session.Ok("STORE completed");
}

}  // namespace gateway::commands
