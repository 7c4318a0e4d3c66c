// Mailbox-level commands: LIST/LSUB (RFC 3501 §6.3.8-6.3.9, RFC 5258 LIST-EXTENDED,
// RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE), STATUS, CREATE, DELETE, RENAME,
// SUBSCRIBE/UNSUBSCRIBE (RFC 3501 §6.3.3-6.3.7, §6.3.10) and NAMESPACE (RFC 2342).
//
// The mailbox service owns names, hierarchy and subscriptions; these handlers turn
// wire names into UTF-8, ask the service, and print what it says in IMAP syntax.
// Name limits (length, depth) are the service's to enforce so every front end
// applies the same ones.

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "common/mailbox/names.h"
#include "common/mailbox/object_ids.h"
#include "common/mailbox/quota.h"
#include "gateway/imap/command.h"
#include "gateway/imap/response.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {
namespace {

namespace v1 = ::mailbox::v1;
using ::mailbox::rules::CanonicalMailboxName;
using ::mailbox::rules::IsInbox;
using ::mailbox::rules::JoinListReference;
using ::mailbox::rules::kHierarchyDelimiter;
using ::mailbox::rules::ListPatternMatches;
using ::mailbox::rules::MatchingSuperiors;
using ::mailbox::rules::WidenListPattern;

// Flush LIST output in pieces so a user with many mailboxes (and RETURN STATUS)
// does not build one huge buffer.
constexpr size_t kFlushEvery = 256 * 1024;

constexpr std::string_view kNoselect = "\\Noselect";
constexpr std::string_view kNonExistent = "\\NonExistent";
constexpr std::string_view kSubscribed = "\\Subscribed";
constexpr std::string_view kHasChildren = "\\HasChildren";
constexpr std::string_view kHasNoChildren = "\\HasNoChildren";

// What a LIST command asked for beyond RFC 3501 (RFC 5258 §3, RFC 6154 §3).
struct ListOptions {
  bool select_subscribed = false;   // (SUBSCRIBED): only subscribed names
  bool select_special_use = false;  // (SPECIAL-USE): only special-use mailboxes
  bool recursive_match = false;     // (RECURSIVEMATCH): report matching parents
  bool return_subscribed = false;   // \Subscribed in the attributes
};

// Reads the selection and return options; returns the complaint for BAD if one is
// not known. RFC 5258 §3: RECURSIVEMATCH alone (or with REMOTE only) is an error.
std::optional<std::string> ReadListOptions(const imap::ListCommand& command,
                                           ListOptions* options) {
  bool other_selection = false;
  for (const std::string& option : command.selection_options) {
    if (option == "SUBSCRIBED") {
      options->select_subscribed = true;
      options->return_subscribed = true;  // RFC 5258 §3: implies RETURN (SUBSCRIBED)
      other_selection = true;
    } else if (option == "SPECIAL-USE") {
      options->select_special_use = true;
      other_selection = true;
    } else if (option == "RECURSIVEMATCH") {
      options->recursive_match = true;
    } else if (option == "REMOTE") {
      // RFC 5258 §3: there are no remote mailboxes here, so nothing changes.
    } else {
      return "unknown LIST selection option " + option.substr(0, 40);
    }
  }
  if (options->recursive_match && !other_selection) {
    return "RECURSIVEMATCH needs another selection option (RFC 5258 §3)";
  }
  for (const std::string& option : command.return_options) {
    if (option == "SUBSCRIBED") {
      options->return_subscribed = true;
    } else if (option == "CHILDREN" || option == "SPECIAL-USE") {
      // Children and special-use attributes are always reported (RFC 5258 §4 and
      // RFC 6154 §2 allow it without being asked).
    } else {
      return "unknown LIST return option " + option.substr(0, 40);
    }
  }
  return std::nullopt;
}

bool HasAttribute(const v1::MailboxInfo& info, std::string_view attribute) {
  return std::any_of(info.attributes().begin(), info.attributes().end(),
                     [&](const std::string& a) { return a == attribute; });
}

// One line of LIST/LSUB output.
struct ListEntry {
  std::string name;  // UTF-8
  std::vector<std::string> attributes;
  bool selectable = true;
  // RFC 5258 §3.5 CHILDINFO ("SUBSCRIBED"): an inferior is subscribed.
  bool subscribed_child = false;
};

// The attributes the command may show of what the service reported.
ListEntry EntryFor(const v1::MailboxInfo& info, bool lsub, const ListOptions& options) {
  ListEntry entry;
  entry.name = info.name();
  const bool noselect = HasAttribute(info, kNoselect);
  const bool nonexistent = HasAttribute(info, kNonExistent);
  entry.selectable = !noselect && !nonexistent;
  if (lsub) {
    // RFC 3501 §6.3.9: LSUB shows only \Noselect, also for a subscribed name
    // whose mailbox is gone.
    if (!entry.selectable) {
      entry.attributes.emplace_back(kNoselect);
    }
    return entry;
  }
  for (const std::string& attribute : info.attributes()) {
    if (attribute == kSubscribed) {
      // RFC 5258 §3: basic LIST does not report subscriptions.
      if (options.return_subscribed) {
        entry.attributes.push_back(attribute);
      }
    } else if (attribute == kNoselect || attribute == kNonExistent ||
               attribute == kHasChildren || attribute == kHasNoChildren) {
      entry.attributes.push_back(attribute);
    }
  }
  for (const std::string& use : info.special_use()) {
    entry.attributes.push_back(use);
  }
  return entry;
}

// RFC 3501 does not fix an order; INBOX first, then by name, as the service does.
bool ListOrder(const ListEntry& a, const ListEntry& b) {
  const bool a_inbox = a.name == "INBOX", b_inbox = b.name == "INBOX";
  if (a_inbox != b_inbox) {
    return a_inbox;
  }
  return a.name < b.name;
}

// `append_limit`: the largest message APPEND takes (RFC 7889 §3.2), the same for
// every mailbox.
imap::StatusValue StatusValue(const v1::StatusResponse& status, imap::StatusItem item,
                              uint64_t append_limit) {
  switch (item) {
    case imap::StatusItem::kMessages:
      return status.messages();
    case imap::StatusItem::kRecent:
      return status.recent();
    case imap::StatusItem::kUidNext:
      return status.uidnext();
    case imap::StatusItem::kUidValidity:
      return status.uidvalidity();
    case imap::StatusItem::kUnseen:
      return status.unseen();
    case imap::StatusItem::kDeleted:
      return status.deleted();
    case imap::StatusItem::kSize:
      return status.size();
    case imap::StatusItem::kHighestModSeq:
      return status.highest_modseq();
    case imap::StatusItem::kAppendLimit:
      return append_limit;
    case imap::StatusItem::kMailboxId:
      return ::mailbox::rules::MailboxObjectId(status.mailbox_id(), status.uidvalidity());
    case imap::StatusItem::kDeletedStorage:
      // RFC 9208 §4.2: in the STORAGE resource's unit of 1024 octets.
      return ::mailbox::rules::StorageUnits(status.deleted_storage());
  }
  return uint64_t{0};
}

std::string StatusLine(const std::string& name, const std::vector<imap::StatusItem>& items,
                       const v1::StatusResponse& status, bool utf8_accept,
                       uint64_t append_limit) {
  std::vector<std::pair<imap::StatusItem, imap::StatusValue>> values;
  values.reserve(items.size());
  for (imap::StatusItem item : items) {
    values.emplace_back(item, StatusValue(status, item, append_limit));
  }
  return imap::StatusDataResponse(name, values, utf8_accept);
}

// RFC 7162 §3.1: STATUS with HIGHESTMODSEQ is a CONDSTORE enabling command. If a
// mailbox is selected, its view starts reporting MODSEQs now, so the client learns
// the point it starts from.
void EnableCondstoreForStatus(CommandContext& session,
                              const std::vector<imap::StatusItem>& items) {
  if (std::find(items.begin(), items.end(), imap::StatusItem::kHighestModSeq) ==
      items.end()) {
    return;
  }
  session.EnableCondstore();
}

bool ServiceUnreachable(const absl::Status& status) {
  return v1::DetailOf(status).code() == v1::UNAVAILABLE;
}

// Drops one trailing delimiter (RFC 3501 §6.3.3: "foo/" declares that "foo" will
// have inferiors; the name created is "foo").
std::string StripTrailingDelimiter(std::string name) {
  if (name.size() > 1 && name.back() == kHierarchyDelimiter) {
    name.pop_back();
  }
  return name;
}

}  // namespace

awaitable<void> List(CommandContext& session, const imap::ListCommand& command) {
  const bool lsub = command.lsub;
  const std::string_view verb = lsub ? "LSUB" : "LIST";
  ListOptions options;
  if (std::optional<std::string> complaint = ReadListOptions(command, &options)) {
    session.Bad(*complaint);
    co_return;
  }
  // A reference or pattern that is not valid modified UTF-7 matches no mailbox.
  std::optional<std::string> reference =
      session.DecodeMailboxName(command.reference, CommandContext::NameUse::kPattern);
  const bool reference_valid = reference.has_value();
  bool root_requested = false;
  std::vector<std::string> patterns;
  for (const std::string& wire_pattern : command.patterns) {
    // "*" and "%" are printable ASCII, which modified UTF-7 leaves alone, so a
    // pattern decodes like a name.
    std::optional<std::string> pattern =
        session.DecodeMailboxName(wire_pattern, CommandContext::NameUse::kPattern);
    if (!pattern.has_value() || !reference_valid) {
      continue;
    }
    if (pattern->empty()) {
      // RFC 3501 §6.3.8: an empty pattern asks for the delimiter and the root of
      // the reference. All names live in one namespace whose root is "".
      root_requested = true;
      continue;
    }
    std::string joined = JoinListReference(*reference, *pattern);
    if (std::find(patterns.begin(), patterns.end(), joined) == patterns.end()) {
      patterns.push_back(std::move(joined));
    }
  }
  const bool utf8 = session.utf8_accept();
  if (root_requested) {
    session.Send(imap::ListResponse(lsub, {std::string(kNoselect)}, kHierarchyDelimiter, "",
                                    utf8));
  }
  if (patterns.empty()) {
    session.Ok(std::string(verb) + " completed");
    co_return;
  }

  // Which names need their matching superiors reported: LSUB with "%" (RFC 3501
  // §6.3.9: "foo/bar" subscribed, "foo" not, LSUB "" "%" shows "foo" \Noselect),
  // and RECURSIVEMATCH (RFC 5258 §3: parents of subscribed names, with CHILDINFO).
  // For those the service is asked with widened patterns and the result filtered
  // here.
  const bool subscribed_only = lsub || options.select_subscribed;
  const bool recursive = !lsub && options.recursive_match && options.select_subscribed;
  std::vector<std::string> superior_patterns;
  v1::ListMailboxesRequest request;
  request.set_subscribed_only(subscribed_only);
  bool widened = false;
  for (const std::string& pattern : patterns) {
    const bool wants_superiors =
        recursive || (lsub && pattern.find('%') != std::string::npos);
    if (wants_superiors) {
      superior_patterns.push_back(pattern);
      request.add_patterns(WidenListPattern(pattern));
      widened = true;
    } else {
      request.add_patterns(pattern);
    }
  }
  absl::StatusOr<v1::ListMailboxesResponse> listed =
      co_await session.store().ListMailboxes(std::move(request));
  if (!listed.ok()) {
    session.Fail(listed.status(), verb);
    co_return;
  }

  std::vector<ListEntry> entries;
  std::map<std::string, size_t> index;  // name -> position in entries
  std::set<std::string> superiors;      // names with a subscribed inferior
  for (const v1::MailboxInfo& info : listed->mailboxes()) {
    bool matches = !widened;
    if (widened) {
      matches = std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) {
        return ListPatternMatches(p, info.name());
      });
      // A subscribed name this command returns itself gives its superiors nothing
      // to report (RFC 5258 §3.5: CHILDINFO is for children the client does not
      // see in the same response).
      for (const std::string& pattern : superior_patterns) {
        if (matches) {
          break;
        }
        for (std::string& superior : MatchingSuperiors(pattern, info.name())) {
          superiors.insert(std::move(superior));
        }
      }
    }
    if (!matches) {
      continue;
    }
    if (options.select_special_use && info.special_use().empty()) {
      continue;  // RFC 6154 §3: only mailboxes with a special use
    }
    ListEntry entry = EntryFor(info, lsub, options);
    index.emplace(entry.name, entries.size());
    entries.push_back(std::move(entry));
  }

  std::vector<std::string> missing;  // superiors not listed yet
  for (const std::string& superior : superiors) {
    auto it = index.find(superior);
    if (it != index.end()) {
      entries[it->second].subscribed_child = true;
    } else {
      missing.push_back(superior);
    }
  }
  if (lsub) {
    for (std::string& name : missing) {
      ListEntry entry;
      entry.name = std::move(name);
      entry.attributes.emplace_back(kNoselect);
      entry.selectable = false;
      entries.push_back(std::move(entry));
    }
  } else if (!missing.empty()) {
    // RECURSIVEMATCH parents are not subscribed themselves; their attributes come
    // from a plain listing of exactly those names (a name containing "*" or "%"
    // may match more, hence the exact comparison below).
    v1::ListMailboxesRequest parents_request;
    for (const std::string& name : missing) {
      parents_request.add_patterns(name);
    }
    absl::StatusOr<v1::ListMailboxesResponse> parents =
        co_await session.store().ListMailboxes(std::move(parents_request));
    if (!parents.ok()) {
      session.Fail(parents.status(), verb);
      co_return;
    }
    std::map<std::string, const v1::MailboxInfo*> by_name;
    for (const v1::MailboxInfo& info : parents->mailboxes()) {
      by_name.emplace(info.name(), &info);
    }
    for (std::string& name : missing) {
      ListEntry entry;
      auto it = by_name.find(name);
      if (it != by_name.end()) {
        entry = EntryFor(*it->second, /*lsub=*/false, options);
      } else {
        // RFC 5258 §3: a parent that does not exist is \NonExistent.
        entry.name = std::move(name);
        entry.attributes.emplace_back(kNonExistent);
        entry.selectable = false;
      }
      entry.subscribed_child = true;
      entries.push_back(std::move(entry));
    }
  }
  std::stable_sort(entries.begin(), entries.end(), ListOrder);

  size_t queued = 0;
  for (const ListEntry& entry : entries) {
    std::string line =
        imap::ListResponse(lsub, entry.attributes, kHierarchyDelimiter, entry.name, utf8);
    if (line.empty()) {
      continue;  // not valid UTF-8: the service should never store such a name
    }
    if (recursive && entry.subscribed_child) {
      // RFC 5258 §3.5: mbox-list-extended after the name.
      line.resize(line.size() - 2);  // the CRLF
      line += " (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n";
    }
    queued += line.size();
    session.Send(line);
    if (!lsub && !command.return_status.empty() && entry.selectable) {
      // RFC 5819 §2: a STATUS line right after the LIST line of each selectable
      // mailbox.
      v1::StatusRequest status_request;
      status_request.set_name(entry.name);
      absl::StatusOr<v1::StatusResponse> status =
          co_await session.store().Status(std::move(status_request));
      if (status.ok()) {
        std::string status_line =
            StatusLine(entry.name, command.return_status, *status, utf8,
                       session.options().limits.max_append_literal_size);
        queued += status_line.size();
        session.Send(status_line);
      } else if (ServiceUnreachable(status.status())) {
        session.Fail(status.status(), verb);
        co_return;
      }
      // Other errors (the mailbox went away since it was listed): RFC 5819 lets
      // the server leave its STATUS out.
    }
    if (queued >= kFlushEvery) {
      queued = 0;
      const bool ok1 = co_await session.Flush();
      if (!ok1) {
        session.No("connection lost");
        co_return;
      }
    }
  }
  if (!lsub) {
    EnableCondstoreForStatus(session, command.return_status);
  }
  session.Ok(std::string(verb) + " completed");
}

awaitable<void> SendListOfSelected(CommandContext& session, const std::string& name) {
  v1::ListMailboxesRequest request;
  request.add_patterns(name);
  absl::StatusOr<v1::ListMailboxesResponse> listed =
      co_await session.store().ListMailboxes(std::move(request));
  ListEntry entry;
  entry.name = name;
  if (listed.ok()) {
    // The pattern is the name itself (names hold no wildcards, V0010), which
    // matches only it; the name is compared all the same.
    for (const v1::MailboxInfo& info : listed->mailboxes()) {
      if (info.name() == name) {
        entry = EntryFor(info, /*lsub=*/false, ListOptions());
        break;
      }
    }
  }
  // Without the service's answer the line still names the mailbox, with no
  // attributes: the selection itself has succeeded.
  session.Send(imap::ListResponse(/*lsub=*/false, entry.attributes, kHierarchyDelimiter,
                                  entry.name, session.utf8_accept()));
}

awaitable<void> Status(CommandContext& session, const imap::StatusCommand& command) {
  std::optional<std::string> name = session.DecodeMailboxName(command.mailbox);
  if (!name.has_value()) {
    co_return;
  }
  // STATUS of the selected mailbox is allowed (RFC 9051 §6.3.11 only warns that it
  // may be slow); the numbers are the service's, which may be ahead of the view.
  v1::StatusRequest request;
  request.set_name(*name);
  absl::StatusOr<v1::StatusResponse> status =
      co_await session.store().Status(std::move(request));
  if (!status.ok()) {
    session.Fail(status.status(), "STATUS");
    co_return;
  }
  // The service spells INBOX canonically; echo that rather than the client's case.
  std::string line = StatusLine(CanonicalMailboxName(*name), command.items, *status,
                                session.utf8_accept(),
                                session.options().limits.max_append_literal_size);
  if (line.empty()) {
    session.Bad("mailbox name is not valid UTF-8");
    co_return;
  }
  EnableCondstoreForStatus(session, command.items);
  session.Send(line);
  session.Ok("STATUS completed");
}

awaitable<void> Create(CommandContext& session, const imap::CreateCommand& command) {
  std::optional<std::string> decoded =
      session.DecodeMailboxName(command.mailbox, CommandContext::NameUse::kNew);
  if (!decoded.has_value()) {
    co_return;
  }
  std::string name = StripTrailingDelimiter(std::move(*decoded));
  if (name.empty()) {
    session.No("a mailbox name cannot be empty", imap::code::kCannot);
    co_return;
  }
  if (IsInbox(name)) {
    // RFC 3501 §6.3.3: creating INBOX is an error; it always exists.
    session.No("INBOX always exists", imap::code::kAlreadyExists);
    co_return;
  }
  v1::CreateMailboxRequest request;
  request.set_name(name);
  for (const std::string& use : command.special_use) {
    // RFC 6154 §3: a special use the server cannot give is a NO [USEATTR].
    if (!::mailbox::rules::IsKnownSpecialUse(use)) {
      session.No(absl::StrCat("cannot give a mailbox the special use ", use,
                              ": not one of those RFC 6154 §2 defines"),
                 imap::code::kUseAttr);
      co_return;
    }
    request.add_special_use(use);
  }
  absl::StatusOr<v1::CreateMailboxResponse> created =
      co_await session.store().CreateMailbox(std::move(request));
  if (!created.ok()) {
    session.Fail(created.status(), "CREATE");
    co_return;
  }
  // RFC 8474 §4.1: the new mailbox's id in the tagged OK.
  session.Ok("CREATE completed",
             absl::StrCat("MAILBOXID (",
                          ::mailbox::rules::MailboxObjectId(created->mailbox_id(), created->uidvalidity()),
                          ")"));
}

awaitable<void> Delete(CommandContext& session, const imap::DeleteCommand& command) {
  std::optional<std::string> name = session.DecodeMailboxName(command.mailbox);
  if (!name.has_value()) {
    co_return;
  }
  if (IsInbox(*name)) {
    session.No("INBOX cannot be deleted (RFC 3501 §6.3.4)", imap::code::kCannot);
    co_return;
  }
  // Deleting the selected mailbox is allowed: the service publishes a Deleted
  // event for it, and the session ends the selection when that event arrives, as
  // it does when another session deletes it.
  v1::DeleteMailboxRequest request;
  request.set_name(*name);
  absl::StatusOr<v1::DeleteMailboxResponse> deleted =
      co_await session.store().DeleteMailbox(std::move(request));
  if (!deleted.ok()) {
    session.Fail(deleted.status(), "DELETE");
    co_return;
  }
  // Deleting the selected mailbox ends the selection here, quietly; other sessions
  // that have it selected learn of it from the feed.
  if (session.selected() != nullptr && session.selected()->name == *name) {
    session.Deselect();
  }
  session.Ok("DELETE completed");
}

awaitable<void> Rename(CommandContext& session, const imap::RenameCommand& command) {
  std::optional<std::string> from = session.DecodeMailboxName(command.from);
  if (!from.has_value()) {
    co_return;
  }
  std::optional<std::string> to = session.DecodeMailboxName(command.to, CommandContext::NameUse::kNew);
  if (!to.has_value()) {
    co_return;
  }
  // The service checks the rest (RFC 3501 §6.3.5): the source exists, the target
  // does not, no move under itself; INBOX as the source moves its messages.
  v1::RenameMailboxRequest request;
  request.set_from(*from);
  request.set_to(*to);
  absl::StatusOr<v1::RenameMailboxResponse> renamed =
      co_await session.store().RenameMailbox(std::move(request));
  if (!renamed.ok()) {
    session.Fail(renamed.status(), "RENAME");
    co_return;
  }
  session.Ok("RENAME completed");
}

awaitable<void> Subscribe(CommandContext& session, const std::string& mailbox, bool subscribe) {
  const std::string_view verb = subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";
  std::optional<std::string> name = session.DecodeMailboxName(mailbox);
  if (!name.has_value()) {
    co_return;
  }
  v1::SetSubscriptionRequest request;
  request.set_name(*name);
  request.set_subscribed(subscribe);
  absl::StatusOr<v1::SetSubscriptionResponse> result =
      co_await session.store().SetSubscription(std::move(request));
  if (!result.ok()) {
    session.Fail(result.status(), verb);
    co_return;
  }
  session.Ok(std::string(verb) + " completed");
}

awaitable<void> Namespace(CommandContext& session) {
  // RFC 2342 §5: one personal namespace with an empty prefix; no other users' or
  // shared namespaces.
  const imap::Namespaces personal = {{"", kHierarchyDelimiter}};
  session.Send(imap::NamespaceResponse(personal, {}, {}));
  session.Ok("NAMESPACE completed");
  co_return;
}

}  // namespace gateway::commands
