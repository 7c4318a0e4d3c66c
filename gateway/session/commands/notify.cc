// NOTIFY (RFC 5465): which mailboxes besides the selected one the session
// watches, and the unsolicited STATUS and LIST responses that report their
// changes.
//
// Supported: the message events MessageNew, MessageExpunge and FlagChange, and
// the mailbox-list events MailboxName and SubscriptionChange (§5.4, §5.5,
// required of a server with LIST-EXTENDED), and the metadata events
// MailboxMetadataChange and ServerMetadataChange (§5.6, §5.7, required of a
// server with METADATA; an unsolicited METADATA naming the entries), for every
// mailbox filter (SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED,
// SUBTREE, MAILBOXES). AnnotationChange (ANNOTATE, RFC 5257, not offered) is
// answered NO [BADEVENT] listing what is supported (§3.1, §5).
//
// The selected mailbox always gets RFC 3501's responses (EXISTS, EXPUNGE,
// FETCH FLAGS) with EXPUNGE held while a command that uses message numbers
// runs (§7.4.1), which is SELECTED-DELAYED's behaviour (RFC 5465 §6.1) and
// allowed for SELECTED. Other mailboxes are resolved when NOTIFY runs, and
// then follow the mailbox list: one created, renamed or subscribed into a
// filter later is watched from then on (NotifyWatch).

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "absl/strings/str_cat.h"
#include "common/mailbox/names.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/notify_watch.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = ::mailbox::v1;
using Filter = imap::NotifyEventGroup::Filter;

// §5: the events this server reports, in the BADEVENT list.
constexpr absl::string_view kSupportedEvents =
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange "
    "MailboxMetadataChange ServerMetadataChange";

// How long NOTIFY waits for its mailbox-list subscription to be live before it
// answers OK anyway (a service that does not answer: changes of the list are
// then reported from when it does).
constexpr std::chrono::seconds kListSubscribeWait(5);

uint8_t EventMask(const std::string& event) {
  if (event == "MessageNew") return NotifyWatch::kMessageNew;
  if (event == "MessageExpunge") return NotifyWatch::kMessageExpunge;
  if (event == "FlagChange") return NotifyWatch::kFlagChange;
  if (event == "MailboxName") return NotifyWatch::kMailboxName;
  if (event == "SubscriptionChange") return NotifyWatch::kSubscriptionChange;
  if (event == "MailboxMetadataChange") return NotifyWatch::kMailboxMetadataChange;
  if (event == "ServerMetadataChange") return NotifyWatch::kServerMetadataChange;
  return 0;
}

bool Selectable(const v1::MailboxInfo& info) {
  if (info.mailbox_id() == 0) return false;
  for (const std::string& attribute : info.attributes()) {
    if (attribute == "\\Noselect" || attribute == "\\NonExistent") return false;
  }
  return true;
}

// §5.1-5.3: the STATUS a watcher of a mailbox other than the selected one gets
// for its message events (HIGHESTMODSEQ once CONDSTORE is on, RFC 7162 §3.1).
std::string NotifyStatusLine(CommandContext& session, const std::string& name,
                             const v1::StatusResponse& status) {
  std::vector<std::pair<imap::StatusItem, imap::StatusValue>> values = {
      {imap::StatusItem::kMessages, uint64_t{status.messages()}},
      {imap::StatusItem::kUidNext, uint64_t{status.uidnext()}},
      {imap::StatusItem::kUidValidity, uint64_t{status.uidvalidity()}},
      {imap::StatusItem::kUnseen, uint64_t{status.unseen()}},
  };
  if (session.condstore_enabled()) {
    values.emplace_back(imap::StatusItem::kHighestModSeq, status.highest_modseq());
  }
  return imap::StatusDataResponse(name, values, session.utf8_accept());
}

// Appends the selectable mailboxes a LIST of `request` finds to `names`.
awaitable<absl::Status> ListNames(CommandContext& session, v1::ListMailboxesRequest request,
                                  std::vector<std::string>* names) {
  absl::StatusOr<v1::ListMailboxesResponse> listed =
      co_await session.store().ListMailboxes(std::move(request));
  if (!listed.ok()) {
    co_return listed.status();
  }
  for (const v1::MailboxInfo& info : listed->mailboxes()) {
    if (Selectable(info)) {
      names->push_back(info.name());
    }
  }
  co_return absl::OkStatus();
}

// As ListNames for the subscribed mailboxes, and every subscribed name (those
// of no mailbox too) into `subscribed`.
awaitable<absl::Status> ListSubscribed(CommandContext& session, v1::ListMailboxesRequest request,
                                       std::vector<std::string>* names,
                                       std::set<std::string>* subscribed) {
  absl::StatusOr<v1::ListMailboxesResponse> listed =
      co_await session.store().ListMailboxes(std::move(request));
  if (!listed.ok()) {
    co_return listed.status();
  }
  for (const v1::MailboxInfo& info : listed->mailboxes()) {
    subscribed->insert(info.name());
    if (Selectable(info)) {
      names->push_back(info.name());
    }
  }
  co_return absl::OkStatus();
}

// §5.4, §5.5: a change of the mailbox list as a LIST line (names in modified
// UTF-7 unless UTF8=ACCEPT is enabled, as LIST answers).
std::string NotifyListLine(CommandContext& session, const NotifyWatch::ListNews& news) {
  if (news.metadata) {
    // §5.6, §5.7: RFC 5464 §4.4.2's METADATA with the entries' names; when
    // too many changed to name, both hierarchies, for the client to read again.
    return imap::MetadataChangedResponse(
        news.name,
        news.entries.empty() ? std::vector<std::string>{"/private", "/shared"} : news.entries,
        session.utf8_accept());
  }
  if (news.old_name.empty()) {
    return imap::ListResponse(false, news.attributes, ::mailbox::rules::kHierarchyDelimiter,
                              news.name, session.utf8_accept());
  }
  return imap::RenamedListResponse(news.attributes, ::mailbox::rules::kHierarchyDelimiter,
                                   news.name, news.old_name, session.utf8_accept());
}

}  // namespace

awaitable<void> Notify(CommandContext& session, const imap::NotifyCommand& command) {
  const size_t limit = session.options().max_notify_mailboxes;
  if (limit == 0) {
    session.Bad("NOTIFY is not enabled on this server");
    co_return;
  }
  if (command.none) {
    // §3.1: NOTIFY NONE turns every notification off.
    session.notify_watch().Clear(session.feed_router());
    session.Ok("NOTIFY NONE completed");
    co_return;
  }
  for (const imap::NotifyEventGroup& group : command.groups) {
    for (const std::string& event : group.events) {
      if (EventMask(event) == 0) {
        // §3.1: an event the server cannot report is refused, naming those
        // it can; the previous NOTIFY stays in force.
        session.No(absl::StrCat(event, " is not supported; this server reports ",
                                kSupportedEvents),
                   absl::StrCat("BADEVENT (", kSupportedEvents, ")"));
        co_return;
      }
    }
    if (!group.message_new_attributes.empty()) {
      session.No(
          "MessageNew with fetch attributes is not supported: ask for MessageNew alone and "
          "FETCH the new messages after their EXISTS",
          imap::code::kCannot);
      co_return;
    }
  }

  // The mailboxes each group names, the first group naming a mailbox deciding
  // its events (a later, wider filter does not override an earlier one).
  std::vector<std::pair<std::string, uint8_t>> wanted;
  std::set<std::string> seen;
  std::vector<std::string> personal;
  bool personal_listed = false;
  // What the watch follows the mailbox list with (NotifyWatch::SetRules).
  std::vector<NotifyWatch::Rule> rules;
  std::set<std::string> subscribed;
  for (const imap::NotifyEventGroup& group : command.groups) {
    if (group.filter == Filter::kSelected || group.filter == Filter::kSelectedDelayed) {
      // The selected mailbox gets RFC 3501's responses (file comment); the
      // server's annotations (§5.7) belong to no mailbox, whatever the filter.
      const bool server_metadata =
          std::find(group.events.begin(), group.events.end(), "ServerMetadataChange") !=
          group.events.end();
      if (server_metadata) {
        NotifyWatch::Rule& rule = rules.emplace_back();
        rule.scope = NotifyWatch::Rule::kMailboxes;  // naming no mailbox
        rule.events = NotifyWatch::kServerMetadataChange;
      }
      continue;
    }
    uint8_t all_events = 0;
    for (const std::string& event : group.events) {
      all_events |= EventMask(event);
    }
    // The mailboxes watched now are for the message events.
    const uint8_t events = all_events & NotifyWatch::kMessageEvents;
    NotifyWatch::Rule& rule = rules.emplace_back();
    rule.events = all_events;
    std::vector<std::string> names;
    absl::Status listed = absl::OkStatus();
    switch (group.filter) {
      case Filter::kInboxes:
        // §6.3: the mailboxes mail is delivered to; here only INBOX.
        rule.scope = NotifyWatch::Rule::kInboxes;
        names.push_back("INBOX");
        break;
      case Filter::kPersonal: {
        // §6.2: the user's own mailboxes (all there are here).
        rule.scope = NotifyWatch::Rule::kPersonal;
        if (!personal_listed) {
          v1::ListMailboxesRequest request;
          listed = co_await ListNames(session, std::move(request), &personal);
          personal_listed = true;
        }
        names = personal;
        break;
      }
      case Filter::kSubscribed: {
        rule.scope = NotifyWatch::Rule::kSubscribed;
        v1::ListMailboxesRequest request;
        request.set_subscribed_only(true);
        listed = co_await ListSubscribed(session, std::move(request), &names, &subscribed);
        break;
      }
      case Filter::kSubtree:
      case Filter::kMailboxes:
        rule.scope = group.filter == Filter::kSubtree ? NotifyWatch::Rule::kSubtree
                                                      : NotifyWatch::Rule::kMailboxes;
        for (const std::string& wire : group.mailboxes) {
          // A name that is not valid modified UTF-7 names no mailbox.
          std::optional<std::string> name =
              session.DecodeMailboxName(wire, CommandContext::NameUse::kPattern);
          if (!name.has_value()) {
            continue;
          }
          rule.names.push_back(::mailbox::rules::CanonicalMailboxName(*name));
          if (group.filter == Filter::kMailboxes) {
            names.push_back(std::move(*name));
            continue;
          }
          // §6.5: the mailbox and all mailboxes under it.
          v1::ListMailboxesRequest request;
          request.add_patterns(*name);
          request.add_patterns(absl::StrCat(*name, std::string(1, ::mailbox::rules::kHierarchyDelimiter), "*"));
          listed = co_await ListNames(session, std::move(request), &names);
          if (!listed.ok()) {
            break;
          }
        }
        break;
      case Filter::kSelected:
      case Filter::kSelectedDelayed:
        break;
    }
    if (!listed.ok()) {
      session.Fail(listed, "NOTIFY");
      co_return;
    }
    for (std::string& name : names) {
      if (!seen.insert(name).second) {
        continue;
      }
      if (events != 0) {
        wanted.emplace_back(std::move(name), events);
      }
    }
    if (wanted.size() > limit) {
      // A bound per session, known before anything is watched: refused, and
      // the previous NOTIFY stays in force.
      session.No(absl::StrCat("NOTIFY would watch more than ", limit,
                              " mailboxes, this server's limit per session; name fewer"),
                 imap::code::kLimit);
      co_return;
    }
  }

  // Where each mailbox stands now: the feed subscription starts there, and
  // SET STATUS reports it (§3.1). A mailbox that does not exist is skipped.
  std::vector<NotifyWatch::Target> targets;
  targets.reserve(wanted.size());
  for (auto& [name, events] : wanted) {
    v1::StatusRequest request;
    request.set_name(name);
    absl::StatusOr<v1::StatusResponse> status =
        co_await session.store().Status(std::move(request));
    if (!status.ok()) {
      if (v1::DetailOf(status.status()).code() == v1::NONEXISTENT) {
        continue;
      }
      session.Fail(status.status(), "NOTIFY");
      co_return;
    }
    NotifyWatch::Target target;
    target.mailbox_id = status->mailbox_id();
    target.uidvalidity = status->uidvalidity();
    target.modseq = status->highest_modseq();
    target.name = name;
    target.events = events;
    if (command.status && target.mailbox_id != session.selected_mailbox_id()) {
      session.Send(NotifyStatusLine(session, name, *status));
    }
    targets.push_back(std::move(target));
  }
  session.notify_watch().Replace(session.feed_router(), session.session_token(), targets);
  session.notify_watch().SetRules(session.feed_router(), session.user_id(),
                                  session.session_token(), std::move(rules),
                                  std::move(subscribed), limit);
  // The OK promises the changes of the mailbox list committed after it: wait
  // (a round trip to the service) until the feed delivers them, a bounded time.
  if (!session.notify_watch().list_live()) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    const auto give_up = std::chrono::steady_clock::now() + kListSubscribeWait;
    while (!session.notify_watch().list_live() && std::chrono::steady_clock::now() < give_up) {
      timer.expires_after(std::chrono::milliseconds(5));
      co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
  }
  session.Ok("NOTIFY completed");
}

awaitable<void> ReportWatchedMailboxes(CommandContext& session, bool now) {
  NotifyWatch& watch = session.notify_watch();
  const auto time = NotifyWatch::Clock::now();
  if (!watch.has_news() || (!now && time < watch.next_round())) {
    co_return;
  }
  if (watch.list_revoked()) {
    // The list subscription's credential (maybe another session's) ended: this
    // session's own decides, as for the mailboxes it watches.
    v1::StatusRequest request;
    request.set_name("INBOX");
    absl::StatusOr<v1::StatusResponse> status =
        co_await session.store().Status(std::move(request));
    const v1::ErrorDetail detail =
        status.ok() ? v1::ErrorDetail() : v1::DetailOf(status.status());
    if (detail.code() == v1::AUTHENTICATIONFAILED) {
      session.EndWithBye(absl::StrCat("Session ended: ", detail.message()));
      co_return;
    }
    watch.ListCredentialHolds();
  }
  if (watch.overflowed()) {
    // §5.8: more mailbox-list changes than the session may hold; notifications
    // end as if NOTIFY NONE had been issued.
    session.Send(
        "* OK [NOTIFICATIONOVERFLOW] Too many mailbox changes to report; NOTIFY is off, "
        "issue NOTIFY SET again\r\n");
    watch.Clear(session.feed_router());
    co_return;
  }
  for (const NotifyWatch::ListNews& item :
       watch.TakeListNews(session.feed_router(), session.session_token())) {
    std::string line = NotifyListLine(session, item);
    if (!line.empty()) {
      session.Send(line);
    }
  }
  // Mailboxes that came into a filter: watched from where they stand now.
  for (const std::string& name : watch.TakeLookups()) {
    v1::StatusRequest request;
    request.set_name(name);
    absl::StatusOr<v1::StatusResponse> status =
        co_await session.store().Status(std::move(request));
    if (!status.ok()) {
      continue;  // gone again (or not selectable): nothing to watch
    }
    NotifyWatch::Target target;
    target.mailbox_id = status->mailbox_id();
    target.uidvalidity = status->uidvalidity();
    target.modseq = status->highest_modseq();
    target.name = name;
    watch.Watch(session.feed_router(), session.session_token(), std::move(target));
  }
  std::vector<NotifyWatch::News> news = watch.TakeNews(session.selected_mailbox_id(), time);
  for (const NotifyWatch::News& item : news) {
    v1::StatusRequest request;
    request.set_name(item.name);
    absl::StatusOr<v1::StatusResponse> status =
        co_await session.store().Status(std::move(request));
    if (!status.ok()) {
      const v1::ErrorDetail detail = v1::DetailOf(status.status());
      if (detail.code() == v1::NONEXISTENT) {
        watch.Forget(session.feed_router(), item.mailbox_id);
      } else if (detail.code() == v1::AUTHENTICATIONFAILED) {
        // The credential was revoked or expired (the feed's Resync says so
        // too): as for the selected mailbox, the session ends.
        session.EndWithBye(absl::StrCat("Session ended: ", detail.message()));
        co_return;
      } else {
        watch.Retry(item.mailbox_id);
      }
      continue;
    }
    if (!watch.Refresh(session.feed_router(), session.session_token(), item, *status)) {
      continue;
    }
    session.Send(NotifyStatusLine(session, item.name, *status));
  }
}

}  // namespace gateway::commands
