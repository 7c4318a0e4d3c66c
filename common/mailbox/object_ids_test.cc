#include "common/mailbox/object_ids.h"

#include <string>

#include "gtest/gtest.h"

namespace mailbox::rules {
namespace {

TEST(ObjectIdsTest, SpellingsAreObjectIdsOfTheirOwnKind) {
  EXPECT_EQ(MailboxObjectId(42, 1700000000), "F42V1700000000");
  const std::string digest(32, '\xab');
  EXPECT_EQ(EmailObjectId(digest), "Mabababababababababababab");
  EXPECT_TRUE(IsObjectId(MailboxObjectId(1, 1)));
  EXPECT_TRUE(IsObjectId(EmailObjectId(digest)));
  EXPECT_TRUE(IsObjectId("a_b-C9"));
  EXPECT_FALSE(IsObjectId(""));
  EXPECT_FALSE(IsObjectId("a.b"));
  EXPECT_FALSE(IsObjectId(std::string(256, 'a')));
}

}  // namespace
}  // namespace mailbox::rules
