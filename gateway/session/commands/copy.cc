// COPY, MOVE and their UID forms (RFC 3501 §6.4.7, RFC 6851, RFC 4315 COPYUID).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;

// The COPYUID response code (RFC 4315 §3) for source_uids[i] -> destination_uids[i],
// or "" when nothing was copied. The two uid-sets are read as lists that pair
// up element by element, so both are written in the same order (by source
// UID) and only runs are compressed.
std::string CopyUidCode(uint32_t destination_uidvalidity,
                        const google::protobuf::RepeatedField<uint32_t>& source_uids,
                        const google::protobuf::RepeatedField<uint32_t>& destination_uids) {
  const int count = std::min(source_uids.size(), destination_uids.size());
  if (count == 0 || destination_uidvalidity == 0) {
    return "";
  }
  std::vector<std::pair<uint32_t, uint32_t>> pairs;
  pairs.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    pairs.emplace_back(source_uids[i], destination_uids[i]);
  }
  std::sort(pairs.begin(), pairs.end());
  std::vector<uint32_t> sources, destinations;
  sources.reserve(pairs.size());
  destinations.reserve(pairs.size());
  for (const auto& [source, destination] : pairs) {
    sources.push_back(source);
    destinations.push_back(destination);
  }
  return imap::code::CopyUid(destination_uidvalidity, ToRuns(sources), ToRuns(destinations));
}

}  // namespace

awaitable<void> Copy(CommandContext& session, const imap::SequenceSet& set, bool uid,
                     const std::string& mailbox_name, bool move) {
  const std::string verb = move ? "MOVE" : "COPY";
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad(absl::StrCat(verb, " needs a selected mailbox"));
    co_return;
  }
  // Out-of-range sequence numbers: BAD, as for FETCH (see fetch.cc).
  if (auto error = SequenceSetError(set, uid, mailbox->map.size())) {
    session.Bad(*error);
    co_return;
  }
  std::optional<std::string> destination = session.DecodeMailboxName(mailbox_name);
  if (!destination.has_value()) {
    co_return;  // DecodeMailboxName answered
  }
  // MOVE expunges from the source (RFC 6851 §3.3), which EXAMINE forbids.
  if (move && mailbox->read_only) {
    session.No("MOVE is not allowed: the mailbox is read-only", imap::code::kReadOnly);
    co_return;
  }
  const std::vector<imap::Interval> uids = session.ResolveSet(set, uid);
  if (uids.empty()) {
    session.Ok(absl::StrCat(verb, " completed, no messages matched"));
    co_return;
  }

  if (!move) {
    v1::CopyRequest request;
    request.set_mailbox_id(mailbox->mailbox_id);
    request.set_uidvalidity(mailbox->uidvalidity);
    *request.mutable_uids() = CommandContext::ToUidSet(uids);
    request.set_destination(*destination);
    absl::StatusOr<v1::CopyResponse> response =
        co_await session.store().Copy(request);
    if (!response.ok()) {
      // A missing destination carries TRYCREATE (RFC 3501 §6.4.7), which
      // Session::Fail turns into "NO [TRYCREATE]".
      session.Fail(response.status(), "COPY");
      co_return;
    }
    // A copy into the selected mailbox itself is reported with EXISTS first.
    if (*destination == mailbox->name && response->destination_uids_size() > 0) {
      const uint64_t mailbox_id = mailbox->mailbox_id;
      co_await session.CatchUp(mailbox_id, response->destination_uids(
                                                response->destination_uids_size() - 1));
    }
    session.Ok("COPY completed", CopyUidCode(response->destination_uidvalidity(),
                                             response->source_uids(),
                                             response->destination_uids()));
    co_return;
  }

  v1::MoveRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  *request.mutable_uids() = CommandContext::ToUidSet(uids);
  request.set_destination(*destination);
  absl::StatusOr<v1::MoveResponse> response =
      co_await session.store().Move(request);
  if (!response.ok()) {
    session.Fail(response.status(), "MOVE");
    co_return;
  }
  // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs, since
  // the tagged OK comes after them.
  const std::string copy_uid = CopyUidCode(response->destination_uidvalidity(),
                                           response->source_uids(),
                                           response->destination_uids());
  if (!copy_uid.empty()) {
    session.Send(imap::StatusResponse("*", imap::Status::kOk, copy_uid, "Moved"));
  }
  const std::vector<uint32_t> moved(response->source_uids().begin(),
                                    response->source_uids().end());
  // RFC 6851 §3.3: the source messages are expunged, and reported as such.
  session.ReportOwnExpunge(moved, moved.empty() ? 0 : response->highest_modseq());
  // RFC 6851 §4.4 with QRESYNC: HIGHESTMODSEQ (expunges of others are reported
  // meanwhile only by UID MOVE, by RFC 3501 §7.4.1).
  if (!moved.empty() && session.qresync_enabled()) {
    session.Ok("MOVE completed", co_await ReportedHighestModseq(
                                     session, response->highest_modseq(), /*allow_expunge=*/uid));
    co_return;
  }
  session.Ok("MOVE completed");
}

}  // namespace gateway::commands
