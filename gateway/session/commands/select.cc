// SELECT and EXAMINE (RFC 3501 §6.3.1-2), with CONDSTORE (RFC 7162 §3.1.8),
// QRESYNC (§3.2.5) and OBJECTID's MAILBOXID (RFC 8474 §4.2).

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/mailbox/names.h"
#include "common/mailbox/object_ids.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {

namespace v1 = mailbox::v1;

awaitable<void> Select(CommandContext& session, const std::string& wire_name, bool read_only,
                       bool condstore, const std::optional<imap::QresyncParameter>& qresync) {
  // RFC 7162 §3.2.5: the QRESYNC parameter is BAD unless QRESYNC was enabled; a
  // BAD changes nothing, so the selected mailbox stays selected.
  if (qresync.has_value() && !session.qresync_enabled()) {
    session.Bad("the QRESYNC parameter needs ENABLE QRESYNC first (RFC 7162 §3.2.5)");
    co_return;
  }
  // RFC 7162 §3.2.11, RFC 9051 §7.1: the responses after this one belong to the
  // mailbox being selected, whatever becomes of this command.
  if (session.selected() != nullptr) {
    session.Send(imap::StatusResponse("*", imap::Status::kOk, imap::code::kClosed,
                                      "Previous mailbox closed"));
  }
  auto name = session.DecodeMailboxName(wire_name);
  // Selecting the selected mailbox again keeps its change-feed registration
  // while Open runs, so the worker's subscription is not dropped and made
  // again (and the flags the session knows stay current: Session::Select).
  if (!name.has_value() || session.selected() == nullptr ||
      session.selected()->name != *name) {
    // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
    session.Deselect();
  }
  if (!name.has_value()) {
    co_return;
  }
  v1::OpenRequest request;
  request.set_name(*name);
  request.set_read_only(read_only);
  request.set_keep_recent(session.imap4rev2());
  auto open = co_await session.store().Open(request);
  if (!open.ok()) {
    session.Deselect();
    session.Fail(open.status(), absl::StrCat(read_only ? "EXAMINE " : "SELECT ", *name));
    co_return;
  }
  auto box = std::make_unique<SelectedMailbox>();
  box->name = *name;
  box->mailbox_id = open->mailbox_id();
  box->uidvalidity = open->uidvalidity();
  box->read_only = read_only || open->read_only();
  box->condstore = condstore || session.condstore_enabled();
  box->applied_modseq = open->highest_modseq();
  box->uidnext = open->uidnext();
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  for (const auto& range : open->uids().ranges()) {
    ranges.emplace_back(range.first(), range.last());
  }
  box->map = UidMap(ranges);
  for (const auto& range : open->recent_uids().ranges()) {
    for (uint32_t uid = range.first(); uid <= range.last() && uid != 0; ++uid) {
      box->recent.insert(uid);
      if (uid == range.last()) {
        break;
      }
    }
  }
  box->announced_flags.assign(open->flags().begin(), open->flags().end());
  for (const std::string& flag : box->announced_flags) {
    if (!flag.empty() && flag[0] != '\\') {
      box->announced_keywords.insert(flag);
    }
  }
  session.Send(imap::FlagsResponse(box->announced_flags));
  session.Send(imap::ExistsResponse(box->map.size()));
  // RFC 9051 has neither RECENT nor [UNSEEN] (Appendix E items 11, 12).
  if (!session.imap4rev2()) {
    session.Send(imap::RecentResponse(open->recent()));
  }
  if (open->first_unseen_uid() != 0 && !session.imap4rev2()) {
    if (auto seq = box->map.SeqOf(open->first_unseen_uid()); seq.has_value()) {
      session.Send(imap::StatusResponse("*", imap::Status::kOk, imap::code::Unseen(*seq),
                                        absl::StrCat("Message ", *seq, " is first unseen")));
    }
  }
  session.Send(imap::StatusResponse("*", imap::Status::kOk,
                                    imap::code::UidValidity(open->uidvalidity()), "UIDs valid"));
  session.Send(imap::StatusResponse("*", imap::Status::kOk, imap::code::UidNext(open->uidnext()),
                                    "Predicted next UID"));
  if (!box->read_only) {
    box->announced_permanent.assign(open->permanent_flags().begin(),
                                    open->permanent_flags().end());
  }
  session.Send(imap::StatusResponse("*", imap::Status::kOk,
                                    imap::code::PermanentFlags(box->announced_permanent),
                                    box->read_only ? "No permanent flags permitted" : "Limited"));
  session.Send(imap::StatusResponse("*", imap::Status::kOk,
                                    imap::code::HighestModSeq(open->highest_modseq()), "Highest"));
  // RFC 8474 §4.2.
  session.Send(imap::StatusResponse(
      "*", imap::Status::kOk,
      absl::StrCat("MAILBOXID (",
                   ::mailbox::rules::MailboxObjectId(open->mailbox_id(), open->uidvalidity()), ")"),
      "Ok"));
  const bool is_read_only = box->read_only;
  session.Select(std::move(box));
  // RFC 9051 §6.3.2: an IMAP4rev2 session also gets the mailbox's LIST. Asked
  // for once the view is registered for changes, which may arrive meanwhile.
  if (session.imap4rev2()) {
    co_await SendListOfSelected(session, ::mailbox::rules::CanonicalMailboxName(*name));
  }
  if (condstore) {
    session.EnableCondstore();  // RFC 7162 §3.1: SELECT (CONDSTORE) enables it
  }
  // RFC 7162 §3.2.5.1: with the client's UIDVALIDITY, what changed since its
  // MODSEQ; with another, nothing more (the client sees UIDVALIDITY changed).
  if (qresync.has_value() && qresync->uidvalidity == open->uidvalidity()) {
    const absl::Status resynced = co_await Resync(session, *qresync);
    if (!resynced.ok()) {
      session.Deselect();
      session.Fail(resynced,
                   absl::StrCat(read_only ? "EXAMINE " : "SELECT ", *name, " (QRESYNC)"));
      co_return;
    }
  }
  session.Ok(is_read_only ? "EXAMINE completed" : "SELECT completed",
             is_read_only ? imap::code::kReadOnly : imap::code::kReadWrite);
}

}  // namespace gateway::commands
