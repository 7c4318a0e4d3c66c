// SORT and UID SORT (RFC 5256 §3, RFC 5957 SORT=DISPLAY), THREAD and UID THREAD
// (RFC 5256 §4).
//
// The search criteria are translated as SEARCH's (search_mapping.h); the mailbox
// service orders or threads the matches by the keys it keeps per message and
// answers with UIDs, shown to the client as sequence numbers or UIDs of its view.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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
namespace {

namespace v1 = mailbox::v1;

// The store's search request for SORT/THREAD criteria, limited to the messages
// the client has been told of; nullopt once the command was answered (BAD or NO).
std::optional<v1::SearchRequest> MapCriteria(CommandContext& session,
                                             const imap::SearchKey& criteria,
                                             const std::string& charset, std::string_view name,
                                             bool* uses_modseq,
                                             const std::vector<imap::Interval>* saved) {
  SelectedMailbox* mailbox = session.selected();
  absl::StatusOr<MappedSearch> mapped =
      MapSearchKey(criteria, mailbox->map, mailbox->recent, mailbox->map.max_uid(),
                   session.options().max_search_uid_ranges, saved);
  if (absl::IsResourceExhausted(mapped.status())) {
    ops::GlobalMetrics().search_limit_refusals.fetch_add(1);
    session.No(absl::StrCat(std::string(name), " refused: ", mapped.status().message()), "LIMIT");
    return std::nullopt;
  }
  if (!mapped.ok()) {
    session.Bad(absl::StrCat("Invalid search criteria: ", mapped.status().message()));
    return std::nullopt;
  }
  if (mapped->uses_modseq) {
    session.EnableCondstore();  // RFC 7162 §3.1
  }
  *uses_modseq = mapped->uses_modseq;
  v1::SearchRequest request;
  request.set_mailbox_id(mailbox->mailbox_id);
  request.set_uidvalidity(mailbox->uidvalidity);
  // RFC 5256 §3: the charset is required; one the store does not know comes back
  // as BADCHARSET, answered "NO [BADCHARSET (US-ASCII UTF-8)]" by Session::Fail.
  request.set_charset(charset);
  // Messages above the view were not announced (no EXISTS yet): a thread must not
  // name them, so they are not searched at all. A live result (RFC 5267 §4.3)
  // widens this second key as the view grows (context.cc, WidenView).
  v1::SearchKey* both = request.mutable_key();
  *both->mutable_and_()->add_keys() = std::move(mapped->key);
  v1::UidRange* view = both->mutable_and_()->add_keys()->mutable_uid()->add_ranges();
  view->set_first(1);
  view->set_last(std::max<uint32_t>(mailbox->map.max_uid(), 1));
  request.set_view_last_uid(mailbox->map.max_uid());
  return request;
}

// The number the client knows a UID by, or nullopt if it is not in its view.
std::optional<uint32_t> NumberOf(const SelectedMailbox& mailbox, uint32_t uid, bool as_uid) {
  const std::optional<uint32_t> seq = mailbox.map.SeqOf(uid);
  if (!seq.has_value()) {
    return std::nullopt;
  }
  return as_uid ? uid : *seq;
}

v1::SortCriterion::Key StoreKey(imap::SortCriterion::Key key) {
  using Key = imap::SortCriterion::Key;
  switch (key) {
    case Key::kArrival: return v1::SortCriterion::ARRIVAL;
    case Key::kCc: return v1::SortCriterion::CC;
    case Key::kDate: return v1::SortCriterion::DATE;
    case Key::kFrom: return v1::SortCriterion::FROM;
    case Key::kSize: return v1::SortCriterion::SIZE;
    case Key::kSubject: return v1::SortCriterion::SUBJECT;
    case Key::kTo: return v1::SortCriterion::TO;
    case Key::kDisplayFrom: return v1::SortCriterion::DISPLAYFROM;
    case Key::kDisplayTo: return v1::SortCriterion::DISPLAYTO;
  }
  return v1::SortCriterion::KEY_UNSPECIFIED;
}

}  // namespace

awaitable<void> Sort(CommandContext& session, const imap::SortCommand& command) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("SORT needs a selected mailbox");
    co_return;
  }
  const std::string_view name = command.uid ? "UID SORT" : "SORT";
  const bool update = command.return_options.has_value() && command.return_options->update;
  if (update && !HasLiveResultRoom(session, name)) {
    co_return;
  }
  const bool save = command.return_options.has_value() && command.return_options->save;
  std::vector<imap::Interval> previous;
  if (save) {
    // RFC 5182 §2.1 (ESORT takes the search return options, RFC 5267 §3): a
    // SAVE replaces "$", which is empty if the command fails.
    previous = std::move(mailbox->saved_result);
    mailbox->saved_result.clear();
  }
  bool uses_modseq = false;
  std::optional<v1::SearchRequest> search =
      MapCriteria(session, command.criteria, command.charset, "SORT", &uses_modseq,
                  save ? &previous : &mailbox->saved_result);
  if (!search.has_value()) {
    co_return;
  }
  v1::SortRequest request;
  *request.mutable_search() = *std::move(search);
  for (const imap::SortCriterion& criterion : command.program) {
    v1::SortCriterion* added = request.add_criteria();
    added->set_key(StoreKey(criterion.key));
    added->set_reverse(criterion.reverse);
  }
  absl::StatusOr<v1::SortResponse> response = co_await session.store().Sort(request);
  if (!response.ok()) {
    session.Fail(response.status(), "SORT");
    co_return;
  }
  std::vector<uint32_t> numbers;
  numbers.reserve(response->uids_size());
  for (const uint32_t uid : response->uids()) {
    if (std::optional<uint32_t> number = NumberOf(*mailbox, uid, command.uid)) {
      numbers.push_back(*number);
    }
  }
  std::optional<uint64_t> modseq;
  if (uses_modseq && !numbers.empty()) {
    modseq = response->highest_modseq();
  }
  if (!command.return_options.has_value()) {
    session.Send(imap::SortResponse(numbers, modseq));
    session.Ok(command.uid ? "UID SORT completed" : "SORT completed");
    co_return;
  }
  // RFC 5267 §3: ESORT answers with ESEARCH, in sort order.
  const imap::SearchReturnOptions& options = *command.return_options;
  std::vector<uint32_t> uids;
  if (save || update) {
    uids.reserve(numbers.size());
    for (const uint32_t uid : response->uids()) {
      if (mailbox->map.SeqOf(uid).has_value()) uids.push_back(uid);
    }
  }
  if (update && !KeepLive(session, /*sorted=*/true, request, uids, name)) {
    co_return;
  }
  if (save) {
    // RFC 5182 §2.4: with only MIN and/or MAX, "$" holds those messages; else
    // all of them ("$" is a set: the sort order is not kept).
    std::vector<uint32_t> saved = uids;
    if ((options.min || options.max) && !options.all && !options.count &&
        !options.partial.has_value() && !saved.empty()) {
      std::vector<uint32_t> ends;
      if (options.min) ends.push_back(saved.front());
      if (options.max && (!options.min || saved.back() != saved.front())) {
        ends.push_back(saved.back());
      }
      saved = std::move(ends);
    }
    std::sort(saved.begin(), saved.end());
    mailbox->saved_result = ToRuns(saved);
    if (!options.min && !options.max && !options.all && !options.count &&
        !options.partial.has_value()) {
      session.Ok(command.uid ? "UID SORT completed, result saved" : "SORT completed, result saved");
      co_return;
    }
  }
  imap::EsearchData data = MakeEsearchData(numbers, options);
  // RFC 7162 §3.1.5: MODSEQ when the criteria used it. The store gives the
  // highest MODSEQ of all matches, also when only MIN, MAX or PARTIAL are
  // returned (RFC 7162 §3.1.10 asks for those messages' highest; this one is
  // never lower).
  data.modseq = modseq;
  session.Send(imap::EsearchResponse(session.tag(), command.uid, data));
  session.Ok(command.uid ? "UID SORT completed" : "SORT completed");
}

awaitable<void> Thread(CommandContext& session, const imap::ThreadCommand& command) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("THREAD needs a selected mailbox");
    co_return;
  }
  bool uses_modseq = false;
  std::optional<v1::SearchRequest> search =
      MapCriteria(session, command.criteria, command.charset, "THREAD", &uses_modseq,
                  &session.selected()->saved_result);
  if (!search.has_value()) {
    co_return;
  }
  v1::ThreadRequest request;
  *request.mutable_search() = *std::move(search);
  request.set_algorithm(command.algorithm == "ORDEREDSUBJECT" ? v1::ThreadRequest::ORDEREDSUBJECT
                                                              : v1::ThreadRequest::REFERENCES);
  absl::StatusOr<v1::ThreadResponse> response = co_await session.store().Thread(request);
  if (!response.ok()) {
    session.Fail(response.status(), "THREAD");
    co_return;
  }
  std::vector<imap::ThreadNode> nodes;
  nodes.reserve(response->nodes_size());
  for (const v1::ThreadNode& node : response->nodes()) {
    uint32_t number = 0;  // a dummy
    if (node.uid() != 0) {
      // Every UID is in the view (the search was limited to it); should one have
      // left it meanwhile, it stands as a dummy rather than a number the client
      // does not know.
      number = NumberOf(*mailbox, node.uid(), command.uid).value_or(0);
    }
    nodes.push_back({number, node.depth()});
  }
  session.Send(imap::ThreadResponse(nodes));
  session.Ok(command.uid ? "UID THREAD completed" : "THREAD completed");
}

}  // namespace gateway::commands
