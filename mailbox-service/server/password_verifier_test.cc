#include "mailbox-service/server/password_verifier.h"

#include <argon2.h>

#include <atomic>
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
