#include "gateway/session/uid_map.h"

#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace gateway {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

TEST(UidMapTest, LooksUpBothWaysAcrossHoles) {
  UidMap map(Ranges{{1, 3}, {7, 7}, {10, 12}});
  EXPECT_EQ(map.size(), 7u);
  EXPECT_EQ(map.max_uid(), 12u);
  EXPECT_EQ(map.UidAt(1), 1u);
  EXPECT_EQ(map.UidAt(4), 7u);
  EXPECT_EQ(map.UidAt(7), 12u);
  EXPECT_FALSE(map.UidAt(0).has_value());
  EXPECT_FALSE(map.UidAt(8).has_value());
  EXPECT_EQ(map.SeqOf(10), 5u);
  EXPECT_FALSE(map.SeqOf(5).has_value());
  EXPECT_EQ(map.LowerBoundSeq(5), 4u);
  EXPECT_EQ(map.LowerBoundSeq(13), 8u);
  EXPECT_EQ(map.UidRangesForSeqs(2, 5), (Ranges{{2, 3}, {7, 7}, {10, 10}}));
  EXPECT_EQ(map.PresentUidRanges(2, 11), (Ranges{{2, 3}, {7, 7}, {10, 11}}));
}

TEST(UidMapTest, ExpungeShiftsLaterSequenceNumbers) {
  UidMap map(Ranges{{1, 10}});
  EXPECT_EQ(map.Expunge(4), 4u);   // splits the run
  EXPECT_EQ(map.Expunge(4), std::nullopt);
  EXPECT_EQ(map.Expunge(1), 1u);   // front of a run
  EXPECT_EQ(map.Expunge(10), 8u);  // back of a run
  EXPECT_EQ(map.size(), 7u);
  EXPECT_EQ(map.UidAt(1), 2u);
  EXPECT_EQ(map.UidAt(3), 5u);
  EXPECT_EQ(map.SeqOf(9), 7u);
  EXPECT_TRUE(map.Append(15));
  EXPECT_FALSE(map.Append(15));
  EXPECT_EQ(map.SeqOf(15), 8u);
}

TEST(UidMapTest, AgreesWithAPlainVectorUnderRandomChanges) {
  std::mt19937 random(42);
  std::vector<uint32_t> model;
  for (uint32_t uid = 1; uid <= 3000; ++uid) {
    model.push_back(uid);
  }
  UidMap map(Ranges{{1, 3000}});
  for (int step = 0; step < 4000; ++step) {
    if (random() % 4 == 0) {
      uint32_t uid = (model.empty() ? 0 : model.back()) + 1 + random() % 3;
      ASSERT_TRUE(map.Append(uid));
      model.push_back(uid);
    } else if (!model.empty()) {
      size_t index = random() % model.size();
      ASSERT_EQ(map.Expunge(model[index]), index + 1);
      model.erase(model.begin() + static_cast<std::ptrdiff_t>(index));
    }
    ASSERT_EQ(map.size(), model.size());
    if (!model.empty()) {
      size_t probe = random() % model.size();
      ASSERT_EQ(map.UidAt(probe + 1), model[probe]);
      ASSERT_EQ(map.SeqOf(model[probe]), probe + 1);
    }
  }
}

TEST(UidMapTest, AMillionMessagesWithFewHolesStaySmall) {
  UidMap map(Ranges{{1, 1000000}});
  for (uint32_t uid = 1000; uid < 1000000; uid += 10000) {
    map.Expunge(uid);
  }
  EXPECT_EQ(map.size(), 1000000u - 100u);
  EXPECT_LT(map.MemoryBytes(), 4096u);  // vs 4 MB as a plain array
  EXPECT_EQ(map.UidAt(999900), 1000000u);
}

}  // namespace
}  // namespace gateway
