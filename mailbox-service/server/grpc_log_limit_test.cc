#include "mailbox-service/server/grpc_log_limit.h"

#include "gtest/gtest.h"

namespace mailbox::server {
namespace {

TEST(LogRateLimiterTest, PassesABurstThenTheRateAndCountsWhatItDrops) {
  LogRateLimiter limiter(10);
  absl::Time t = absl::FromUnixSeconds(1000);
  // One second's worth at once.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(limiter.Admit(t), 0) << i;
  }
  // A flood in the same instant: all dropped.
  for (int i = 0; i < 500; ++i) {
    EXPECT_EQ(limiter.Admit(t), -1);
  }
  // 100 ms later one line passes and reports the 500 dropped.
  EXPECT_EQ(limiter.Admit(t + absl::Milliseconds(100)), 500);
  EXPECT_EQ(limiter.Admit(t + absl::Milliseconds(100)), -1);
  EXPECT_EQ(limiter.Admit(t + absl::Milliseconds(200)), 1);
}

TEST(LogRateLimiterTest, SustainedFloodIsHeldToTheRate) {
  LogRateLimiter limiter(20);
  absl::Time t = absl::FromUnixSeconds(1000);
  int passed = 0;
  // 10,000 lines a second for 10 s.
  for (int i = 0; i < 100'000; ++i) {
    if (limiter.Admit(t + absl::Microseconds(100) * i) >= 0) {
      ++passed;
    }
  }
  EXPECT_LE(passed, 20 + 10 * 20 + 1);
  EXPECT_GE(passed, 10 * 20);
}

TEST(LogRateLimiterTest, QuietPeriodRefillsOnlyToOneSecond) {
  LogRateLimiter limiter(5);
  absl::Time t = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Admit(t), 0);
  t += absl::Hours(1);
  int passed = 0;
  for (int i = 0; i < 100; ++i) {
    passed += limiter.Admit(t) >= 0 ? 1 : 0;
  }
  EXPECT_EQ(passed, 5);
}

TEST(LogRateLimiterTest, ClockGoingBackDoesNotRefill) {
  LogRateLimiter limiter(2);
  absl::Time t = absl::FromUnixSeconds(1000);
  EXPECT_EQ(limiter.Admit(t), 0);
  EXPECT_EQ(limiter.Admit(t), 0);
  EXPECT_EQ(limiter.Admit(t - absl::Seconds(5)), -1);
  EXPECT_EQ(limiter.Admit(t), -1);
}

}  // namespace
}  // namespace mailbox::server
