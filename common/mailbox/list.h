// The mailbox service's answer to a LIST request (mailbox.v1 ListMailboxes), built
// from a user's mailboxes and subscriptions: pattern matching (RFC 3501 §6.3.8),
// \HasChildren / \HasNoChildren (RFC 3348), \Subscribed and \NonExistent for
// subscriptions of names that do not exist (RFC 5258 §3), special use (RFC 6154),
// INBOX first and the rest in byte order. A backend reads the rows; this decides.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::rules {

struct ListedMailbox {
  std::string name;  // canonical (see CanonicalMailboxName)
  uint64_t id = 0;
  bool noselect = false;
  std::vector<std::string> special_use;
};

// `mailboxes` is every mailbox of the user, in any order; `subscribed` every name
// the user subscribed to.
v1::ListMailboxesResponse BuildListResponse(const v1::ListMailboxesRequest& request,
                                            std::vector<ListedMailbox> mailboxes,
                                            const std::set<std::string>& subscribed);

}  // namespace mailbox::rules
