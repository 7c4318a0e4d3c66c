#include "gateway/ops/memory_return.h"

#include "gtest/gtest.h"

namespace gateway::ops {
namespace {

TEST(TrimPolicyTest, TrimsOnlyAfterARealDrop) {
  TrimPolicy policy(/*min_drop=*/100);
  EXPECT_FALSE(policy.ShouldTrim(0, 0));
  EXPECT_FALSE(policy.ShouldTrim(1000, 1000));
  EXPECT_FALSE(policy.ShouldTrim(900, 900));  // a tenth fewer: not a quarter
  EXPECT_TRUE(policy.ShouldTrim(700, 700));   // 300 fewer than the peak of 1,000
  EXPECT_FALSE(policy.ShouldTrim(700, 700));  // the peak restarted at 700
  EXPECT_FALSE(policy.ShouldTrim(600, 600));  // 100 fewer, but not a quarter of 700
  EXPECT_TRUE(policy.ShouldTrim(500, 500));
}

TEST(TrimPolicyTest, ABurstBetweenLooksCounts) {
  TrimPolicy policy(/*min_drop=*/100);
  EXPECT_FALSE(policy.ShouldTrim(0, 0));
  EXPECT_TRUE(policy.ShouldTrim(5000, 0));  // 5,000 came and went between two looks
  EXPECT_FALSE(policy.ShouldTrim(0, 0));
}

TEST(TrimPolicyTest, SmallGatewaysAreLeftAlone) {
  TrimPolicy policy(/*min_drop=*/100);
  EXPECT_FALSE(policy.ShouldTrim(80, 80));
  EXPECT_FALSE(policy.ShouldTrim(0, 0));  // all gone, but only 80 connections
  EXPECT_FALSE(policy.ShouldTrim(150, 150));
  EXPECT_TRUE(policy.ShouldTrim(10, 10));  // 140 fewer than 150
}

}  // namespace
}  // namespace gateway::ops
