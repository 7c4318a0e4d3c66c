#include "common/mailbox/flags.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {
namespace {

using ::testing::ElementsAre;

TEST(ParseFlagsTest, SystemBitsAndKeywordsOnce) {
  std::vector<std::string> given = {"\\seen", "\\Deleted", "$Label1", "$label1", "Work"};
  absl::StatusOr<FlagSet> flags = ParseFlags(given);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->system, kSeenBit | kDeletedBit);
  EXPECT_THAT(flags->keywords, ElementsAre("$Label1", "Work"));
}

TEST(ParseFlagsTest, Refusals) {
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"\\Recent"}, {"\\Unknown"}, {"a b"}, {"a(b"}, {""}, {std::string(251, 'k')}}) {
    absl::StatusOr<FlagSet> flags = ParseFlags(bad);
    ASSERT_FALSE(flags.ok()) << bad[0];
    EXPECT_EQ(v1::DetailOf(flags.status()).code(), v1::BAD_REQUEST);
  }
  std::vector<std::string> longest = {std::string(kMaxKeywordOctets, 'k')};
  EXPECT_TRUE(ParseFlags(longest).ok());
}

TEST(FlagListTest, RfcOrderThenKeywords) {
  EXPECT_THAT(FlagList(16 | 8 | 1, "b a"),
              ElementsAre("\\Answered", "\\Seen", "\\Draft", "b", "a"));
  EXPECT_THAT(SplitKeywords(JoinKeywords({"x", "y"})), ElementsAre("x", "y"));
  EXPECT_TRUE(SplitKeywords("").empty());
  v1::MessageFlags flags = MakeMessageFlags(7, 2, "k", 42);
  EXPECT_EQ(flags.uid(), 7u);
  EXPECT_EQ(flags.modseq(), 42u);
  EXPECT_THAT(flags.flags(), ElementsAre("\\Flagged", "k"));
}

}  // namespace
}  // namespace mailbox::rules
