#include "common/mailbox/list.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "common/mailbox/names.h"

namespace mailbox::rules {

v1::ListMailboxesResponse BuildListResponse(const v1::ListMailboxesRequest& request,
                                            std::vector<ListedMailbox> mailboxes,
                                            const std::set<std::string>& subscribed) {
  std::vector<std::string> patterns(request.patterns().begin(), request.patterns().end());
  if (patterns.empty()) {
    patterns.push_back("*");
  }
  auto matches = [&](std::string_view name) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [&](const std::string& p) { return ListPatternMatches(p, name); });
  };
  std::sort(mailboxes.begin(), mailboxes.end(),
            [](const ListedMailbox& a, const ListedMailbox& b) { return a.name < b.name; });
  // In byte order the inferiors of "a" start at "a/", though not necessarily right
  // after "a" ("a b" sorts between them).
  auto has_children = [&](const ListedMailbox& mailbox) {
    const std::string prefix = mailbox.name + kHierarchyDelimiter;
    auto it = std::lower_bound(
        mailboxes.begin(), mailboxes.end(), prefix,
        [](const ListedMailbox& row, const std::string& key) { return row.name < key; });
    return it != mailboxes.end() && IsInferiorOf(it->name, mailbox.name);
  };

  std::vector<v1::MailboxInfo> infos;
  std::set<std::string_view> existing;
  for (const ListedMailbox& mailbox : mailboxes) {
    existing.insert(mailbox.name);
    const bool is_subscribed = subscribed.count(mailbox.name) > 0;
    if ((request.subscribed_only() && !is_subscribed) || !matches(mailbox.name)) {
      continue;
    }
    v1::MailboxInfo info;
    info.set_name(mailbox.name);
    info.set_mailbox_id(mailbox.id);
    if (mailbox.noselect) {
      info.add_attributes("\\Noselect");
    }
    info.add_attributes(has_children(mailbox) ? "\\HasChildren" : "\\HasNoChildren");
    if (is_subscribed) {
      info.add_attributes("\\Subscribed");
    }
    for (const std::string& use : mailbox.special_use) {
      info.add_special_use(use);
    }
    infos.push_back(std::move(info));
  }
  if (request.subscribed_only()) {
    for (const std::string& name : subscribed) {
      if (existing.count(name) == 0 && matches(name)) {
        v1::MailboxInfo info;
        info.set_name(name);
        info.add_attributes("\\NonExistent");
        info.add_attributes("\\Subscribed");
        infos.push_back(std::move(info));
      }
    }
  }
  std::stable_sort(infos.begin(), infos.end(),
                   [](const v1::MailboxInfo& a, const v1::MailboxInfo& b) {
                     const bool a_inbox = a.name() == kInbox, b_inbox = b.name() == kInbox;
                     if (a_inbox != b_inbox) {
                       return a_inbox;
                     }
                     return a.name() < b.name();
                   });
  v1::ListMailboxesResponse response;
  response.set_delimiter(std::string(1, kHierarchyDelimiter));
  for (v1::MailboxInfo& info : infos) {
    *response.add_mailboxes() = std::move(info);
  }
  return response;
}

}  // namespace mailbox::rules
