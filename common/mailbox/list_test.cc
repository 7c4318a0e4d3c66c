#include "common/mailbox/list.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailbox::rules {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Names(const v1::ListMailboxesResponse& response) {
  std::vector<std::string> out;
  for (const v1::MailboxInfo& info : response.mailboxes()) {
    out.push_back(info.name());
  }
  return out;
}

std::vector<ListedMailbox> Sample() {
  return {{.name = "b", .id = 4},
          {.name = "a/c", .id = 3},
          {.name = "a b", .id = 5},
          {.name = "a", .id = 2, .noselect = true},
          {.name = "INBOX", .id = 1},
          {.name = "Sent", .id = 6, .special_use = {"\\Sent"}}};
}

TEST(BuildListResponseTest, InboxFirstThenByteOrderWithChildren) {
  v1::ListMailboxesResponse response = BuildListResponse({}, Sample(), {});
  EXPECT_EQ(response.delimiter(), "/");
  EXPECT_THAT(Names(response), ElementsAre("INBOX", "Sent", "a", "a b", "a/c", "b"));
  const v1::MailboxInfo& a = response.mailboxes(2);
  EXPECT_THAT(a.attributes(), ElementsAre("\\Noselect", "\\HasChildren"));
  EXPECT_THAT(response.mailboxes(3).attributes(), ElementsAre("\\HasNoChildren"));
  EXPECT_THAT(response.mailboxes(1).special_use(), ElementsAre("\\Sent"));
}

TEST(BuildListResponseTest, PatternsAndSubscriptions) {
  v1::ListMailboxesRequest request;
  request.add_patterns("inbox");
  request.add_patterns("a/%");
  EXPECT_THAT(Names(BuildListResponse(request, Sample(), {})), ElementsAre("INBOX", "a/c"));

  v1::ListMailboxesRequest subscribed;
  subscribed.set_subscribed_only(true);
  v1::ListMailboxesResponse response =
      BuildListResponse(subscribed, Sample(), {"b", "gone", "INBOX"});
  EXPECT_THAT(Names(response), ElementsAre("INBOX", "b", "gone"));
  EXPECT_THAT(response.mailboxes(2).attributes(), ElementsAre("\\NonExistent", "\\Subscribed"));
  EXPECT_EQ(response.mailboxes(2).mailbox_id(), 0u);
}

}  // namespace
}  // namespace mailbox::rules
