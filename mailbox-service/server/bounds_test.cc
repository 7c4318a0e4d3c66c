// The per-user call limiter, the append spool and the commit gate, at their
// boundaries.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailbox-service/server/service.h"
#include "mailbox-service/server/spool.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

TEST(CallLimiterTest, RefusesTheCallOverTheLimitAndCountsPerUser) {
  CallLimiter limiter(2);
  auto a = limiter.Acquire(7);
  auto b = limiter.Acquire(7);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(limiter.InFlight(7), 2);
  auto c = limiter.Acquire(7);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(v1::DetailOf(c.status()).code(), v1::LIMIT);
  EXPECT_NE(c.status().message().find("2 requests in progress"), absl::string_view::npos);
  // Another user is not affected.
  EXPECT_TRUE(limiter.Acquire(8).ok());
  // Ending a call gives its slot back.
  { CallLimiter::Slot done = *std::move(a); }
  EXPECT_EQ(limiter.InFlight(7), 1);
  EXPECT_TRUE(limiter.Acquire(7).ok());
}

TEST(CallLimiterTest, ZeroMeansNoLimit) {
  CallLimiter limiter(0);
  std::vector<CallLimiter::Slot> slots;
  for (int i = 0; i < 1000; ++i) {
    auto slot = limiter.Acquire(1);
    ASSERT_TRUE(slot.ok());
    slots.push_back(*std::move(slot));
  }
}

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  return std::string(base != nullptr ? base : "/tmp") + "/bounds_test_spool";
}

TEST(MessageSpoolTest, KeepsSmallCallsInMemoryAndSpoolsTheRest) {
  std::filesystem::remove_all(TempDir());
  MessageSpool spool(TempDir(), 10);
  ASSERT_TRUE(spool.Begin(6).ok());
  ASSERT_TRUE(spool.Add("abc").ok());
  ASSERT_TRUE(spool.Add("def").ok());
  EXPECT_EQ(spool.spooled_octets(), 0u);
  EXPECT_FALSE(std::filesystem::exists(TempDir()));  // no file needed yet
  // 6 + 5 > 10: this one goes to the file.
  ASSERT_TRUE(spool.Begin(5).ok());
  ASSERT_TRUE(spool.Add("ghijk").ok());
  // A later small one still fits the allowance: 6 + 4 = 10.
  ASSERT_TRUE(spool.Begin(4).ok());
  ASSERT_TRUE(spool.Add("lmno").ok());
  ASSERT_TRUE(spool.Begin(2).ok());
  ASSERT_TRUE(spool.Add("pq").ok());
  EXPECT_EQ(spool.spooled_octets(), 7u);
  EXPECT_EQ(spool.total_octets(), 17u);
  EXPECT_EQ(spool.count(), 4u);
  // The directory is private and the file has no name in it.
  struct stat st;
  ASSERT_EQ(::stat(TempDir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(std::filesystem::is_empty(TempDir()));
  std::string out;
  ASSERT_TRUE(spool.Take(0, &out).ok());
  EXPECT_EQ(out, "abcdef");
  ASSERT_TRUE(spool.Take(3, &out).ok());
  EXPECT_EQ(out, "pq");
  ASSERT_TRUE(spool.Take(2, &out).ok());
  EXPECT_EQ(out, "lmno");
  ASSERT_TRUE(spool.Take(1, &out).ok());
  EXPECT_EQ(out, "ghijk");
}

TEST(MessageSpoolTest, AMessageGrowsByParts) {
  // RFC 4469 CATENATE: a message's size is learnt part by part.
  std::filesystem::remove_all(TempDir());
  MessageSpool spool(TempDir(), 10);
  ASSERT_TRUE(spool.Begin(0).ok());
  ASSERT_TRUE(spool.Extend(4).ok());
  ASSERT_TRUE(spool.Add("abcd").ok());
  ASSERT_TRUE(spool.Extend(6).ok());  // 10: still in memory
  ASSERT_TRUE(spool.Add("efghij").ok());
  EXPECT_EQ(spool.spooled_octets(), 0u);
  EXPECT_EQ(spool.memory_octets(), 10u);
  ASSERT_TRUE(spool.Extend(3).ok());  // 13: the whole message moves to the file
  ASSERT_TRUE(spool.Add("klm").ok());
  EXPECT_EQ(spool.spooled_octets(), 13u);
  EXPECT_EQ(spool.memory_octets(), 0u);
  // The next one starts in memory again, and an in-file message grows in place.
  ASSERT_TRUE(spool.Begin(2).ok());
  ASSERT_TRUE(spool.Add("no").ok());
  EXPECT_EQ(spool.total_octets(), 15u);
  std::string out;
  ASSERT_TRUE(spool.Take(0, &out).ok());
  EXPECT_EQ(out, "abcdefghijklm");
  ASSERT_TRUE(spool.Take(1, &out).ok());
  EXPECT_EQ(out, "no");
}

TEST(MessageSpoolTest, AnUnusableDirectoryIsUnavailable) {
  MessageSpool spool("/proc/no-such-dir/spool", 0);
  absl::Status status = spool.Begin(1);
  EXPECT_EQ(v1::DetailOf(status).code(), v1::UNAVAILABLE);
}

TEST(CommitGateTest, WaitsForRoomAndTimesOut) {
  CommitGate gate(100);
  auto first = gate.Acquire(60, absl::InfiniteFuture());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(gate.in_use(), 60u);
  // 60 + 50 > 100: no room before the deadline.
  auto refused = gate.Acquire(50, absl::Now() + absl::Milliseconds(50));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(v1::DetailOf(refused.status()).code(), v1::UNAVAILABLE);
  // 60 + 40 = 100 fits exactly.
  auto exact = gate.Acquire(40, absl::InfiniteFuture());
  ASSERT_TRUE(exact.ok());
  // A call larger than the capacity waits until it is alone, then proceeds.
  std::thread release([held = *std::move(first), also = *std::move(exact)]() mutable {
    absl::SleepFor(absl::Milliseconds(50));
    CommitGate::Hold drop1 = std::move(held);
    CommitGate::Hold drop2 = std::move(also);
  });
  auto big = gate.Acquire(1000, absl::Now() + absl::Seconds(10));
  release.join();
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(gate.in_use(), 100u);
}

}  // namespace
}  // namespace mailbox::server
