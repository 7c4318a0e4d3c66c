// EXPUNGE (RFC 3501 §6.4.3), UID EXPUNGE (RFC 4315 §2.1), CLOSE (RFC 3501
// §6.4.2) and UNSELECT (RFC 3691).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

// Removes the \Deleted messages among `uids` (UID ranges of the view) from
// the selected mailbox.
//
// Always names the UIDs, also for a plain EXPUNGE: a message added by someone
// else and not yet announced to this session must not be expunged by it,
// because the session would then skip the feed event of its own expunge
// (own_modseqs) and keep announcing a message that no longer exists.
awaitable<absl::StatusOr<v1::ExpungeResponse>> ExpungeUids(
    CommandContext& session, const SelectedMailbox& mailbox, std::vector<imap::Interval> uids) {
  v1::ExpungeRequest request;
  request.set_mailbox_id(mailbox.mailbox_id);
  request.set_uidvalidity(mailbox.uidvalidity);
  *request.mutable_uids() = CommandContext::ToUidSet(uids);
  request.set_uids_only(true);
  co_return co_await session.store().Expunge(request);
}

// Every UID of the view, as ranges.
std::vector<imap::Interval> AllUids(const SelectedMailbox& mailbox) {
  std::vector<imap::Interval> uids;
  for (const auto& [first, last] : mailbox.map.PresentUidRanges(1, mailbox.map.max_uid())) {
    uids.push_back({first, last});
  }
  return uids;
}

std::vector<uint32_t> Expunged(const v1::ExpungeResponse& response) {
  std::vector<uint32_t> uids;
  for (const v1::UidRange& range : response.expunged().ranges()) {
    for (uint64_t uid = range.first(); uid <= range.last(); ++uid) {
      uids.push_back(static_cast<uint32_t>(uid));
    }
  }
  return uids;
}

}  // namespace

awaitable<void> Expunge(CommandContext& session, const imap::SequenceSet* uid_set) {
  const char* verb = uid_set == nullptr ? "EXPUNGE" : "UID EXPUNGE";
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad(absl::StrCat(verb, " needs a selected mailbox"));
    co_return;
  }
  // RFC 3501 §6.3.2: a mailbox opened with EXAMINE is not changed.
  if (mailbox->read_only) {
    session.No(absl::StrCat(verb, " is not allowed: the mailbox is read-only"),
               imap::code::kReadOnly);
    co_return;
  }
  // UID EXPUNGE: non-existent UIDs are ignored (RFC 4315 §2.1, RFC 3501 §6.4.8).
  std::vector<imap::Interval> uids = uid_set == nullptr
                                         ? AllUids(*mailbox)
                                         : session.ResolveSet(*uid_set, /*uid=*/true);
  if (uids.empty()) {
    session.Ok(absl::StrCat(verb, " completed"));
    co_return;
  }
  absl::StatusOr<v1::ExpungeResponse> response =
      co_await ExpungeUids(session, *mailbox, std::move(uids));
  if (!response.ok()) {
    session.Fail(response.status(), verb);
    co_return;
  }
  const std::vector<uint32_t> expunged = Expunged(*response);
  // Sends "* n EXPUNGE" for each (RFC 3501 §7.4.1), or VANISHED.
  session.ReportOwnExpunge(expunged, expunged.empty() ? 0 : response->highest_modseq());
  // RFC 7162 §3.2.7, §3.2.9: with QRESYNC, the tagged OK of an expunge carries
  // HIGHESTMODSEQ (which value: ReportedHighestModseq).
  if (!expunged.empty() && session.qresync_enabled()) {
    session.Ok(absl::StrCat(verb, " completed"),
               co_await ReportedHighestModseq(session, response->highest_modseq(),
                                              /*allow_expunge=*/true));
    co_return;
  }
  session.Ok(absl::StrCat(verb, " completed"));
}

awaitable<void> Close(CommandContext& session, bool expunge) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad(expunge ? "CLOSE needs a selected mailbox" : "UNSELECT needs a selected mailbox");
    co_return;
  }
  // RFC 3501 §6.4.2: CLOSE expunges silently (no EXPUNGE responses), and not
  // at all in a mailbox opened with EXAMINE. UNSELECT (RFC 3691) never does.
  std::string warning;
  if (expunge && !mailbox->read_only) {
    std::vector<imap::Interval> uids = AllUids(*mailbox);
    if (!uids.empty()) {
      absl::StatusOr<v1::ExpungeResponse> response =
          co_await ExpungeUids(session, *mailbox, std::move(uids));
      if (!response.ok()) {
        // CLOSE has no NO response (RFC 3501 §6.4.2): the mailbox is closed
        // anyway, and the text says the deleted messages are still there.
        warning = absl::StrCat(", but messages marked \\Deleted were not removed: ",
                               response.status().message());
      }
    }
  }
  session.Deselect();
  session.Ok(absl::StrCat(expunge ? "CLOSE completed" : "UNSELECT completed", warning));
}

}  // namespace gateway::commands
