// Live search and sort results (RFC 5267 §4.3, CONTEXT=SEARCH and
// CONTEXT=SORT): SEARCH or SORT with RETURN (UPDATE) keeps its result, and
// while the mailbox stays selected the session tells the client how it changes
// with unsolicited "* ESEARCH (TAG "t") UID ADDTO (...) REMOVEFROM (...)",
// until CANCELUPDATE.
//
// After a batch of changes (arrivals, expunges, flag changes, the session's
// own ones) the session asks the mailbox service for each live result again,
// with the criteria as first mapped (sequence numbers, "$" and \Recent stand
// for the messages they named then), limited to the messages the client has
// been told of, and compares. The number of live results and the size of each
// are bounded (SessionOptions::max_live_results, max_live_result_size).

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
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
using LiveResult = SelectedMailbox::LiveResult;

// ADDTO/REMOVEFROM steps per ESEARCH response, so that one line stays short.
constexpr size_t kChangesPerResponse = 100;

// Lets a SORT's view range (sort.cc, MapCriteria: the second key of the AND)
// take in messages announced since.
void WidenView(v1::SortRequest& request, uint32_t max_uid) {
  v1::SearchKey* key = request.mutable_search()->mutable_key();
  if (key->has_and_() && key->and_().keys_size() == 2 && key->and_().keys(1).has_uid() &&
      key->and_().keys(1).uid().ranges_size() == 1) {
    key->mutable_and_()->mutable_keys(1)->mutable_uid()->mutable_ranges(0)->set_last(
        std::max<uint32_t>(max_uid, 1));
  }
  request.mutable_search()->set_view_last_uid(max_uid);
}

}  // namespace

bool HasLiveResultRoom(CommandContext& session, std::string_view name) {
  const SelectedMailbox* mailbox = session.selected();
  const size_t limit = session.options().max_live_results;
  size_t live = 0;
  for (const LiveResult& result : mailbox->live_results) {
    // A live result of the same tag is replaced, so it does not count.
    if (result.tag != session.tag()) ++live;
  }
  if (live < limit) {
    return true;
  }
  ops::GlobalMetrics().search_limit_refusals.fetch_add(1);
  session.No(absl::StrCat(std::string(name), " refused: at most ", limit,
                          " searches and sorts are kept live per session; CANCELUPDATE one "
                          "first (RFC 5267)"),
             "LIMIT");
  return false;
}

bool KeepLive(CommandContext& session, bool sorted, v1::SortRequest request,
              std::vector<uint32_t> uids, std::string_view name) {
  SelectedMailbox* mailbox = session.selected();
  const size_t limit = session.options().max_live_result_size;
  if (uids.size() > limit) {
    ops::GlobalMetrics().search_limit_refusals.fetch_add(1);
    session.No(absl::StrCat(std::string(name), " refused: ", uids.size(), " messages match, more than the ",
                            limit, " a live result may hold; narrow the criteria or leave out "
                            "UPDATE"),
               "LIMIT");
    return false;
  }
  LiveResult live;
  live.tag = session.tag();
  live.sorted = sorted;
  live.request = std::move(request);
  live.uids = std::move(uids);
  for (LiveResult& existing : mailbox->live_results) {
    if (existing.tag == live.tag) {
      existing = std::move(live);
      return true;
    }
  }
  mailbox->live_results.push_back(std::move(live));
  return true;
}

awaitable<void> RefreshLiveResults(CommandContext& session) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr || mailbox->live_results.empty()) {
    co_return;
  }
  mailbox->live_dirty = false;  // changes arriving meanwhile set it again
  const uint64_t mailbox_id = mailbox->mailbox_id;
  // By tag rather than by index: the list is looked up again after each call.
  std::vector<std::string> tags;
  for (const LiveResult& live : mailbox->live_results) {
    tags.push_back(live.tag);
  }
  for (const std::string& tag : tags) {
    mailbox = session.selected();
    if (mailbox == nullptr || mailbox->mailbox_id != mailbox_id) {
      co_return;
    }
    const LiveResult* found = nullptr;
    for (const LiveResult& live : mailbox->live_results) {
      if (live.tag == tag) found = &live;
    }
    if (found == nullptr) {
      continue;
    }
    v1::SortRequest request = found->request;
    const bool sorted = found->sorted;
    WidenView(request, mailbox->map.max_uid());
    std::vector<uint32_t> uids;
    if (sorted) {
      absl::StatusOr<v1::SortResponse> response = co_await session.store().Sort(request);
      if (!response.ok()) {
        // Asked again after the next change, or at the next command.
        if (session.selected() != nullptr) session.selected()->live_dirty = true;
        co_return;
      }
      uids.assign(response->uids().begin(), response->uids().end());
    } else {
      absl::StatusOr<v1::SearchResponse> response =
          co_await session.store().Search(request.search());
      if (!response.ok()) {
        if (session.selected() != nullptr) session.selected()->live_dirty = true;
        co_return;
      }
      mailbox = session.selected();
      if (mailbox == nullptr || mailbox->mailbox_id != mailbox_id) {
        co_return;
      }
      uids = ResultNumbers(response->uids(), mailbox->map, /*uid=*/true);
    }
    mailbox = session.selected();
    if (mailbox == nullptr || mailbox->mailbox_id != mailbox_id) {
      co_return;
    }
    // Only what the client has been told of (EXISTS) belongs in the result.
    std::vector<uint32_t> in_view;
    in_view.reserve(uids.size());
    for (const uint32_t uid : uids) {
      if (mailbox->map.SeqOf(uid).has_value()) in_view.push_back(uid);
    }
    LiveResult* live = nullptr;
    for (LiveResult& candidate : mailbox->live_results) {
      if (candidate.tag == tag) live = &candidate;
    }
    if (live == nullptr) {
      continue;  // cancelled meanwhile
    }
    if (in_view.size() > session.options().max_live_result_size) {
      // RFC 5267 §4.3: NOUPDATE says the result is no longer kept up to date.
      ops::GlobalMetrics().search_limit_refusals.fetch_add(1);
      session.Send(imap::StatusResponse(
          "*", imap::Status::kNo, absl::StrCat("NOUPDATE \"", tag, "\""),
          absl::StrCat("The result now holds ", in_view.size(), " messages, more than the ",
                       session.options().max_live_result_size,
                       " a live result may; it is no longer updated")));
      for (auto it = mailbox->live_results.begin(); it != mailbox->live_results.end(); ++it) {
        if (it->tag == tag) {
          mailbox->live_results.erase(it);
          break;
        }
      }
      continue;
    }
    const std::vector<imap::ContextChange> changes = DiffResults(live->uids, in_view);
    for (size_t i = 0; i < changes.size(); i += kChangesPerResponse) {
      const size_t end = std::min(changes.size(), i + kChangesPerResponse);
      std::vector<imap::ContextChange> part(changes.begin() + i, changes.begin() + end);
      session.Send(imap::ContextUpdateResponse(tag, part));
    }
    live->uids = std::move(in_view);
  }
}

awaitable<void> CancelUpdate(CommandContext& session, const imap::CancelUpdateCommand& command) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("CANCELUPDATE needs a selected mailbox");
    co_return;
  }
  // All or nothing: a tag without a live result makes the command BAD.
  for (const std::string& tag : command.tags) {
    bool known = false;
    for (const LiveResult& live : mailbox->live_results) {
      known = known || live.tag == tag;
    }
    if (!known) {
      session.Bad(absl::StrCat("No search or sort tagged \"", tag.substr(0, 40),
                               "\" is kept live (RETURN (UPDATE)) in this mailbox"));
      co_return;
    }
  }
  for (const std::string& tag : command.tags) {
    for (auto it = mailbox->live_results.begin(); it != mailbox->live_results.end(); ++it) {
      if (it->tag == tag) {
        mailbox->live_results.erase(it);
        break;
      }
    }
  }
  session.Ok("CANCELUPDATE completed");
}

}  // namespace gateway::commands
