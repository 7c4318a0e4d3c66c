#include "mailbox-service/server/password_verifier.h"

#include <argon2.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mailbox-service/server/auth.h"

namespace mailbox::server {
namespace {

std::string Hash(std::string_view password, uint32_t memory_kib = 256, uint32_t passes = 1) {
  PasswordHashOptions options;
  options.memory_kib = memory_kib;
  options.time_cost = passes;
  auto hash = HashPassword(password, options);
  EXPECT_TRUE(hash.ok()) << hash.status();
  return *hash;
}

TEST(PasswordVerifierTest, AgreesWithLibargon2) {
  PasswordVerifier verifier(1);
  const std::string hash = Hash("correct horse");
  EXPECT_TRUE(verifier.Verify(hash, "correct horse"));
  EXPECT_FALSE(verifier.Verify(hash, "correct horsE"));
  EXPECT_FALSE(verifier.Verify(hash, ""));
  // The same slot, reused for a hash of another memory cost, bigger then smaller.
  const std::string big = Hash("pw", 2048, 2);
  EXPECT_TRUE(verifier.Verify(big, "pw"));
  EXPECT_TRUE(verifier.Verify(hash, "correct horse"));
  EXPECT_FALSE(verifier.Verify(big, "pW"));
}

TEST(PasswordVerifierTest, MalformedHashesNeverMatch) {
  PasswordVerifier verifier(1);
  const std::string hash = Hash("secret");
  for (std::string bad : {
           std::string(""),
           std::string("not a hash"),
           std::string("$argon2i$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA"),
           hash.substr(0, hash.size() - 4),
           hash + "$extra",
           std::string("$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
                       "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"),
           std::string("$argon2id$v=19$m=256,t=1,p=0$c2FsdHNhbHRzYWx0c2FsdA$"
                       "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"),
           std::string("$argon2id$v=19$m=256,t=x,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
                       "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"),
       }) {
    EXPECT_FALSE(verifier.Verify(bad, "secret")) << bad;
  }
}

TEST(PasswordVerifierTest, GivesUpWhenNoSlotFreesBeforeTheDeadline) {
  PasswordVerifier verifier(1);
  const std::string slow = Hash("pw", 64 * 1024, 3);  // a few hundred ms
  const std::string quick = Hash("pw");
  // A free slot is taken even when the deadline has passed: nothing was waited for.
  EXPECT_EQ(verifier.VerifyBy(quick, "pw", absl::InfinitePast()), std::optional<bool>(true));
  std::atomic<bool> slow_result{false};
  std::thread holder([&] { slow_result = verifier.Verify(slow, "pw"); });
  // Once the slow check holds the only slot, a caller whose deadline comes first
  // gets nullopt (no hash computed).
  bool gave_up = false;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!gave_up && absl::Now() < until) {
    gave_up = !verifier.VerifyBy(quick, "pw", absl::Now() + absl::Milliseconds(1)).has_value();
  }
  holder.join();
  EXPECT_TRUE(gave_up);
  EXPECT_TRUE(slow_result);
  EXPECT_EQ(verifier.VerifyBy(quick, "pw", absl::Now() + absl::Seconds(10)),
            std::optional<bool>(true));
}

TEST(PasswordVerifierTest, ManyThreadsShareFewSlots) {
  PasswordVerifier verifier(2);
  EXPECT_EQ(verifier.slots(), 2);
  const std::string hash = Hash("pw");
  std::atomic<int> matched{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        matched += verifier.Verify(hash, "pw") ? 1 : 0;
        matched += verifier.Verify(hash, "wrong") ? 100 : 0;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(matched.load(), 40);
}

TEST(PasswordVerifierTest, DefaultIsOneSlotPerCpu) {
  PasswordVerifier verifier;
  EXPECT_GE(verifier.slots(), 1);
}

}  // namespace
}  // namespace mailbox::server
