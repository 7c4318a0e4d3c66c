#include "common/mailbox/uid_sets.h"

#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

v1::UidSet Set(std::initializer_list<std::pair<uint32_t, uint32_t>> ranges) {
  v1::UidSet set;
  for (auto [first, last] : ranges) {
    v1::UidRange* range = set.add_ranges();
    range->set_first(first);
    range->set_last(last);
  }
  return set;
}

TEST(NormalizeUidSetTest, SortsAndMergesAdjacent) {
  absl::StatusOr<UidRanges> ranges = NormalizeUidSet(Set({{9, 12}, {1, 3}, {4, 4}, {11, 20}}));
  ASSERT_TRUE(ranges.ok());
  EXPECT_THAT(*ranges, ElementsAre(Pair(1u, 4u), Pair(9u, 20u)));
  const uint32_t max = std::numeric_limits<uint32_t>::max();
  EXPECT_THAT(*NormalizeUidSet(Set({{max, max}, {1, max}})), ElementsAre(Pair(1u, max)));
}

TEST(NormalizeUidSetTest, Refusals) {
  for (const v1::UidSet& bad : {Set({}), Set({{0, 3}}), Set({{5, 4}})}) {
    absl::StatusOr<UidRanges> ranges = NormalizeUidSet(bad);
    ASSERT_FALSE(ranges.ok());
    EXPECT_EQ(v1::DetailOf(ranges.status()).code(), v1::BAD_REQUEST);
  }
}

TEST(UidSetBuilderTest, RunsBecomeRanges) {
  v1::UidSet set = ToUidSet({1, 2, 3, 7, 9, 10});
  ASSERT_EQ(set.ranges_size(), 3);
  EXPECT_EQ(set.ranges(0).last(), 3u);
  EXPECT_EQ(set.ranges(1).first(), 7u);
  EXPECT_EQ(set.ranges(2).first(), 9u);
  EXPECT_TRUE(Contains(set, 2));
  EXPECT_TRUE(Contains(set, 10));
  EXPECT_FALSE(Contains(set, 8));
  EXPECT_EQ(ToUidSet({}).ranges_size(), 0);
}

TEST(SearchMatchesTest, GivesTheModseqsOfTheFirstAndOfTheLastMatchInTheView) {
  SearchMatches matches(/*view_last_uid=*/7);
  matches.Add(2, 50);
  matches.Add(3, 90);
  matches.Add(7, 20);
  matches.Add(9, 70);  // not in the caller's view yet
  v1::SearchResponse response = matches.Take();
  EXPECT_EQ(response.highest_modseq(), 90u);
  EXPECT_EQ(response.first_match_modseq(), 50u);
  EXPECT_EQ(response.last_match_modseq(), 20u);
  ASSERT_EQ(response.uids().ranges_size(), 3);
  EXPECT_EQ(response.uids().ranges(1).first(), 7u);

  SearchMatches none(0);
  v1::SearchResponse empty = none.Take();
  EXPECT_EQ(empty.uids().ranges_size(), 0);
  EXPECT_EQ(empty.first_match_modseq(), 0u);
  EXPECT_EQ(empty.last_match_modseq(), 0u);
}

v1::ChangeEvent ExpungeOf(std::initializer_list<std::pair<uint32_t, uint32_t>> ranges) {
  v1::ChangeEvent event;
  *event.mutable_expunged()->mutable_uids() = Set(ranges);
  return event;
}

UidRanges RangesOf(const v1::UidSet& set) {
  UidRanges out;
  for (const v1::UidRange& range : set.ranges()) {
    out.emplace_back(range.first(), range.last());
  }
  return out;
}

TEST(ExpungedWithinTest, CollectsExpungesClippedToTheSetInOrder) {
  v1::ChangeEvent added;
  added.mutable_added()->set_uidnext(30);
  std::vector<v1::ChangeEvent> events = {ExpungeOf({{20, 25}}), added, ExpungeOf({{3, 3}, {5, 9}}),
                                         ExpungeOf({{10, 10}})};
  EXPECT_THAT(RangesOf(ExpungedWithin(events, AllUids())),
              ElementsAre(Pair(3u, 3u), Pair(5u, 10u), Pair(20u, 25u)));
  EXPECT_THAT(RangesOf(ExpungedWithin(events, {{1, 6}, {8, 21}})),
              ElementsAre(Pair(3u, 3u), Pair(5u, 6u), Pair(8u, 10u), Pair(20u, 21u)));
  EXPECT_EQ(ExpungedWithin(events, {{11, 19}}).ranges_size(), 0);
  EXPECT_EQ(ExpungedWithin({}, AllUids()).ranges_size(), 0);
}

TEST(AbsentWithinTest, NamesTheGapsBelowUidnext) {
  EXPECT_THAT(RangesOf(AbsentWithin({2, 3, 7}, AllUids(), 10)),
              ElementsAre(Pair(1u, 1u), Pair(4u, 6u), Pair(8u, 9u)));
  EXPECT_THAT(RangesOf(AbsentWithin({2, 3, 7}, {{3, 5}, {7, 8}, {9, 40}}, 10)),
              ElementsAre(Pair(4u, 5u), Pair(8u, 9u)));
  EXPECT_EQ(AbsentWithin({1, 2, 3}, AllUids(), 4).ranges_size(), 0);
  EXPECT_EQ(AbsentWithin({}, AllUids(), 1).ranges_size(), 0);
  const uint32_t max = std::numeric_limits<uint32_t>::max();
  EXPECT_THAT(RangesOf(AbsentWithin({max - 1}, AllUids(), max)),
              ElementsAre(Pair(1u, max - 2)));
}

}  // namespace
}  // namespace mailbox::rules
