#include "gateway/imap/sequence_set.h"

#include <gtest/gtest.h>

namespace imap {
namespace {

TEST(SequenceSetTest, ParsesStarRangesInEitherOrderAndMaxNumber) {
  Result<SequenceSet> set = SequenceSet::Parse("1:*,*:1,4294967295,5:3");
  ASSERT_TRUE(set.ok()) << set.error().message;
  ASSERT_EQ(set->ranges().size(), 4u);
  EXPECT_EQ(set->ranges()[1], (SequenceRange{SequenceRange::kStar, 1}));
  EXPECT_EQ(set->ranges()[2], (SequenceRange{4294967295u, 4294967295u}));
  EXPECT_EQ(set->ranges()[3], (SequenceRange{5, 3}));
  EXPECT_TRUE(set->HasStar());
  EXPECT_EQ(set->ToString(), "1:*,*:1,4294967295,5:3");
}

TEST(SequenceSetTest, RejectsInvalid) {
  for (const char* bad : {"0", "0:5", "4294967296", "99999999999999999999", "",
                          ",", "1,", ",1", "1:", ":1", "1::2", "a", "01", "1:2:3",
                          "-1", "1 ", "$"}) {
    EXPECT_FALSE(SequenceSet::Parse(bad).ok()) << bad;
  }
}

TEST(SequenceSetTest, ResolveSortsMergesAndSubstitutesStar) {
  SequenceSet set = *SequenceSet::Parse("5:3,1,*,8:9,10,2");
  EXPECT_EQ(set.Resolve(20),
            (std::vector<Interval>{{1, 5}, {8, 10}, {20, 20}}));
  EXPECT_EQ(SequenceSet::Parse("1:*,*:1")->Resolve(7), (std::vector<Interval>{{1, 7}}));
  // "n:*" where n exceeds "*" still covers both ends (RFC 3501 §9).
  EXPECT_EQ(SequenceSet::Parse("559:*")->Resolve(100),
            (std::vector<Interval>{{100, 559}}));
  // Empty mailbox: a lone "*" is nothing.
  EXPECT_TRUE(SequenceSet::Parse("*")->Resolve(0).empty());
  // The whole 32-bit space does not allocate per number and does not overflow.
  EXPECT_EQ(SequenceSet::Parse("1:4294967295,4294967295,7")->Resolve(3),
            (std::vector<Interval>{{1, 4294967295u}}));
}

TEST(SequenceSetTest, ContainsAndFormat) {
  SequenceSet set = *SequenceSet::Parse("2:4,*");
  EXPECT_TRUE(set.Contains(3, 10));
  EXPECT_TRUE(set.Contains(10, 10));
  EXPECT_FALSE(set.Contains(5, 10));
  EXPECT_FALSE(set.Contains(0, 10));
  EXPECT_EQ(FormatIntervals({{1, 3}, {5, 5}, {9, 12}}), "1:3,5,9:12");
  EXPECT_EQ(SequenceSet::FromIntervals({{1, 3}, {5, 5}}).ToString(), "1:3,5");
}

}  // namespace
}  // namespace imap
