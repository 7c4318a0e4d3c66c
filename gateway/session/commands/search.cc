// SEARCH and UID SEARCH (RFC 3501 §6.4.4, §6.4.8) with RFC 4731 ESEARCH
// results and the RFC 7162 §3.1.5 MODSEQ criterion.
//
// The criteria are translated by MapSearchKey (search_mapping.h), which
// resolves what only the session knows (sequence numbers, \Recent); the store
// evaluates the tree and answers with UIDs, which are shown to the client as
// sequence numbers or UIDs of its view.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/command.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {

awaitable<void> Search(CommandContext& session, const imap::SearchCommand& command) {
  namespace v1 = mailbox::v1;
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("SEARCH needs a selected mailbox");
    co_return;
  }
  const bool update = command.return_options.has_value() && command.return_options->update;
  if (update && !HasLiveResultRoom(session, command.uid ? "UID SEARCH" : "SEARCH")) {
    co_return;
  }
  // RFC 5182 §2.1: a SAVE search replaces "$"; if it fails, "$" is empty.
  const bool save = command.return_options.has_value() && command.return_options->save;
  std::vector<imap::Interval> previous;
  if (save) {
    previous = std::move(mailbox->saved_result);
    mailbox->saved_result.clear();
  }
  absl::StatusOr<MappedSearch> mapped =
      MapSearchKey(command.criteria, mailbox->map, mailbox->recent, mailbox->map.max_uid(),
                   session.options().max_search_uid_ranges,
                   save ? &previous : &mailbox->saved_result);
  if (absl::IsResourceExhausted(mapped.status())) {
    // RFC 5530 §3: LIMIT, an implementation limit the client can work around.
    ops::GlobalMetrics().search_limit_refusals.fetch_add(1);
    session.No(absl::StrCat("SEARCH refused: ", mapped.status().message()), "LIMIT");
    co_return;
  }
  if (!mapped.ok()) {
    session.Bad(absl::StrCat("Invalid search criteria: ", mapped.status().message()));
    co_return;
  }
  // RFC 7162 §3.1: SEARCH with MODSEQ enables CONDSTORE.
  if (mapped->uses_modseq) {
    session.EnableCondstore();
  }

  v1::SearchRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  // RFC 3501 §6.4.4: no CHARSET means US-ASCII; after ENABLE UTF8=ACCEPT the
  // strings are UTF-8 (RFC 6855 §3). A CHARSET the store does not know comes
  // back as BADCHARSET, which Session::Fail answers with
  // "NO [BADCHARSET (US-ASCII UTF-8)]" as §6.4.4 asks.
  if (command.charset.has_value()) {
    request.set_charset(*command.charset);
  } else {
    request.set_charset(session.utf8_accept() ? "UTF-8" : "US-ASCII");
  }
  *request.mutable_key() = std::move(mapped->key);
  // RFC 5267 §4.3: a live result is searched again with the same key.
  std::optional<v1::SearchRequest> live_request;
  if (update) {
    live_request = request;
  }
  // Matches above it were not announced (no EXISTS yet) and are left out below.
  request.set_view_last_uid(mailbox->map.max_uid());
  absl::StatusOr<v1::SearchResponse> response =
      co_await session.store().Search(request);
  if (!response.ok()) {
    session.Fail(response.status(), "SEARCH");
    co_return;
  }

  // Matches the client has not been told about yet (no EXISTS) are left out.
  const std::vector<uint32_t> numbers = ResultNumbers(response->uids(), mailbox->map, command.uid);
  // RFC 7162 §3.1.5: "(MODSEQ n)" when a MODSEQ criterion was used and
  // something matched. The store gives the highest MODSEQ of all matches.
  std::optional<uint64_t> modseq;
  if (mapped->uses_modseq && !numbers.empty()) {
    modseq = response->highest_modseq();
  }
  if (save) {
    // RFC 5182 §2.4: with only MIN and/or MAX, "$" holds those messages; else all.
    const imap::SearchReturnOptions& options = *command.return_options;
    std::vector<uint32_t> uids =
        command.uid ? numbers : ResultNumbers(response->uids(), mailbox->map, /*uid=*/true);
    if ((options.min || options.max) && !options.all && !options.count &&
        !options.partial.has_value() && !uids.empty()) {
      std::vector<uint32_t> ends;
      if (options.min) ends.push_back(uids.front());
      if (options.max && (!options.min || uids.back() != uids.front())) ends.push_back(uids.back());
      uids = std::move(ends);
    }
    mailbox->saved_result = ToRuns(uids);  // ascending, so runs are sorted ranges
    if (!options.min && !options.max && !options.all && !options.count &&
        !options.partial.has_value()) {
      // SAVE alone: the result goes to "$" only, no response (§2.4).
      session.Ok(command.uid ? "UID SEARCH completed, result saved"
                             : "SEARCH completed, result saved");
      co_return;
    }
  }
  if (update) {
    // Kept before anything is sent: over the size bound the command is refused.
    v1::SortRequest live;
    *live.mutable_search() = *std::move(live_request);
    std::vector<uint32_t> uids =
        command.uid ? numbers : ResultNumbers(response->uids(), mailbox->map, /*uid=*/true);
    if (!KeepLive(session, /*sorted=*/false, std::move(live), std::move(uids),
                  command.uid ? "UID SEARCH" : "SEARCH")) {
      co_return;
    }
  }
  if (command.return_options.has_value() || session.imap4rev2()) {
    // RFC 4731 §3.1; RFC 9051 §6.4.4: after ENABLE IMAP4rev2 every SEARCH is
    // answered with ESEARCH, as RETURN (ALL) when the client asked for nothing.
    // RFC 7162 §3.1.10: the MODSEQ is the highest of the messages returned;
    // with only MIN and/or MAX requested, those are the only ones.
    const imap::SearchReturnOptions options =
        command.return_options.value_or(imap::SearchReturnOptions());
    if (modseq.has_value() && (options.min || options.max) && !options.all &&
        !options.count && !options.partial.has_value()) {
      modseq = std::max(options.min ? response->first_match_modseq() : 0,
                        options.max ? response->last_match_modseq() : 0);
    }
    imap::EsearchData data = MakeEsearchData(numbers, options);
    data.modseq = modseq;
    session.Send(imap::EsearchResponse(session.tag(), command.uid, data));
  } else {
    session.Send(imap::SearchResponse(numbers, modseq));
  }
  session.Ok(command.uid ? "UID SEARCH completed" : "SEARCH completed");
}

}  // namespace gateway::commands
