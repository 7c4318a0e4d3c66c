// QRESYNC (RFC 7162 §3.2): what a client that reconnects has missed, told in the
// SELECT/EXAMINE that names its last UIDVALIDITY and MODSEQ, or by UID FETCH with
// the VANISHED modifier (fetch.cc).
//
// The mailbox service answers "which UIDs were expunged after MODSEQ m" from its
// change log (Vanished). Past the log's start it names every UID the mailbox lacks,
// which the RFC allows for VANISHED (EARLIER) (§3.2.5.2, §3.2.10.2). Either way the
// UIDs the session's view still shows are left out here: those were expunged after
// the view was taken, and the change feed reports them with a plain VANISHED.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;
using Intervals = std::vector<imap::Interval>;

// The parts of `set` at or above `floor`.
Intervals AtOrAbove(const Intervals& set, uint64_t floor) {
  Intervals out;
  for (const imap::Interval& range : set) {
    if (range.last < floor) {
      continue;
    }
    out.push_back({static_cast<uint32_t>(std::max<uint64_t>(range.first, floor)), range.last});
  }
  return out;
}

// The parts of `set` the view shows, or (present = false) does not show.
Intervals Partition(const SelectedMailbox& mailbox, const Intervals& set, bool present) {
  Intervals out;
  for (const imap::Interval& range : set) {
    uint64_t next = range.first;  // the first UID of `range` not yet placed
    for (const auto& [first, last] : mailbox.map.PresentUidRanges(range.first, range.last)) {
      if (present) {
        out.push_back({first, last});
      } else if (first > next) {
        out.push_back({static_cast<uint32_t>(next), first - 1});
      }
      next = static_cast<uint64_t>(last) + 1;
    }
    if (!present && next <= range.last) {
      out.push_back({static_cast<uint32_t>(next), range.last});
    }
  }
  return out;
}

// RFC 7162 §3.2.5.2: the client's (message number, UID) pairs, in order. While a
// pair still holds, the client has heard of every expunge below its UID, so the
// VANISHED report can start above it. Returns the lowest UID to report.
uint64_t FirstUnconfirmedUid(const SelectedMailbox& mailbox,
                             const imap::QresyncParameter& parameter) {
  if (!parameter.known_sequence_set.has_value() || !parameter.known_uid_set.has_value()) {
    return 1;
  }
  const Intervals seqs = parameter.known_sequence_set->Resolve(mailbox.map.size());
  const Intervals uids = parameter.known_uid_set->Resolve(std::numeric_limits<uint32_t>::max());
  uint64_t floor = 1;
  size_t si = 0, ui = 0;
  uint64_t seq = seqs.empty() ? 0 : seqs[0].first;
  uint64_t uid = uids.empty() ? 0 : uids[0].first;
  // At most one step per message of the view: every pair names a message of it.
  while (si < seqs.size() && ui < uids.size() && seq <= mailbox.map.size()) {
    const std::optional<uint32_t> now = mailbox.map.UidAt(static_cast<uint32_t>(seq));
    if (!now.has_value() || *now != uid) {
      break;
    }
    floor = uid + 1;
    if (++seq > seqs[si].last && ++si < seqs.size()) {
      seq = seqs[si].first;
    }
    if (++uid > uids[ui].last && ++ui < uids.size()) {
      uid = uids[ui].first;
    }
  }
  return floor;
}

}  // namespace

awaitable<absl::Status> ReportVanishedEarlier(CommandContext& session, uint64_t since,
                                              const Intervals& uids) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr || uids.empty()) {
    co_return absl::OkStatus();
  }
  // UIDs the view never reached (added after it was taken) are the feed's to report.
  Intervals asked;
  for (const imap::Interval& range : uids) {
    if (range.first < mailbox->uidnext) {
      const uint64_t last = std::min<uint64_t>(range.last, mailbox->uidnext - 1);
      asked.push_back({range.first, static_cast<uint32_t>(last)});
    }
  }
  asked = Partition(*mailbox, asked, /*present=*/false);
  if (asked.empty()) {
    co_return absl::OkStatus();
  }
  v1::VanishedRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  request.set_since_modseq(since);
  *request.mutable_uids() = CommandContext::ToUidSet(asked);
  absl::StatusOr<v1::VanishedResponse> reply =
      co_await session.store().Vanished(request);
  if (!reply.ok()) {
    co_return reply.status();
  }
  // The view may have changed while the service answered.
  const Intervals vanished =
      Partition(*mailbox, CommandContext::ToIntervals(reply->uids()), /*present=*/false);
  if (!vanished.empty()) {
    session.Send(imap::VanishedResponse(vanished, /*earlier=*/true));
  }
  co_return absl::OkStatus();
}

awaitable<std::string> ReportedHighestModseq(CommandContext& session, uint64_t modseq,
                                             bool allow_expunge) {
  if (co_await session.CatchUpTo(modseq, allow_expunge)) {
    co_return imap::code::HighestModSeq(modseq);
  }
  const SelectedMailbox* mailbox = session.selected();
  co_return mailbox == nullptr ? std::string()
                               : imap::code::HighestModSeq(mailbox->applied_modseq);
}

awaitable<absl::Status> Resync(CommandContext& session, const imap::QresyncParameter& parameter) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    co_return absl::OkStatus();
  }
  // §3.2.5: without known-uids, every UID below UIDNEXT.
  Intervals known;
  if (parameter.known_uids.has_value()) {
    known = parameter.known_uids->Resolve(std::numeric_limits<uint32_t>::max());
  } else if (mailbox->uidnext > 1) {
    known.push_back({1, static_cast<uint32_t>(mailbox->uidnext - 1)});
  }
  if (known.empty()) {
    co_return absl::OkStatus();
  }
  // VANISHED (EARLIER) before any FETCH (§3.2.5.1, §3.2.6).
  absl::Status vanished = co_await ReportVanishedEarlier(
      session, parameter.modseq, AtOrAbove(known, FirstUnconfirmedUid(*mailbox, parameter)));
  if (!vanished.ok()) {
    co_return vanished;
  }
  const Intervals present = Partition(*mailbox, known, /*present=*/true);
  if (present.empty()) {
    co_return absl::OkStatus();
  }
  // The flags of the known messages changed since the client's MODSEQ, as
  // "UID FETCH known (FLAGS) (CHANGEDSINCE modseq)" would give them (§3.2.5.1).
  v1::FetchRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  *request.mutable_uids() = CommandContext::ToUidSet(present);
  request.set_flags(true);
  request.set_modseq(true);
  request.set_changed_since(parameter.modseq);
  std::unique_ptr<mailbox::client::FetchStream> stream =
      session.store().Fetch(request);
  constexpr int kFlushEvery = 256;  // messages between writes, bounding the output held
  int since_flush = 0;
  while (true) {
    absl::StatusOr<std::optional<v1::FetchResponse>> item = co_await stream->Next();
    if (!item.ok()) {
      co_return item.status();
    }
    if (!item->has_value()) {
      break;
    }
    if (!(*item)->has_metadata() || (*item)->metadata().expunged()) {
      continue;
    }
    const v1::FetchedMetadata& metadata = (*item)->metadata();
    mailbox->LearnFlags(metadata.uid(), metadata.flags(), metadata.modseq(),
                        session.options().max_known_flags);
    session.AnnounceKeywords(metadata.flags());
    v1::MessageFlags message;
    message.set_uid(metadata.uid());
    *message.mutable_flags() = metadata.flags();
    message.set_modseq(metadata.modseq());
    session.Send(FlagsFetchResponse(*mailbox, message, /*with_uid=*/true, /*with_modseq=*/true));
    if (++since_flush == kFlushEvery) {
      since_flush = 0;
      if (!co_await session.Flush()) {
        stream->Cancel();
        co_return absl::OkStatus();  // the connection broke; the session ends
      }
    }
  }
  co_return absl::OkStatus();
}

}  // namespace gateway::commands
