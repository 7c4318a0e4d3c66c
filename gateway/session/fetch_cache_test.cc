#include "gateway/session/fetch_cache.h"

#include <string>

#include "gtest/gtest.h"

namespace gateway {
namespace {

CachedMessage WithSection(const std::string& key, size_t size) {
  CachedMessage message;
  message.has_size = true;
  message.size = size;
  message.sections.emplace_back(key, std::string(size, 'x'));
  return message;
}

TEST(FetchCacheTest, FindsWhatWasAddedByMailboxUidvalidityAndUid) {
  FetchCache cache(1 << 20);
  cache.Add({1, 7, 3}, WithSection("k", 10));
  const CachedMessage* found = cache.Find({1, 7, 3});
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->size, 10u);
  ASSERT_NE(found->FindSection("k"), nullptr);
  EXPECT_EQ(found->FindSection("other"), nullptr);
  // Another UIDVALIDITY, mailbox or UID (a revised message's new UID) is
  // another message.
  EXPECT_EQ(cache.Find({1, 8, 3}), nullptr);
  EXPECT_EQ(cache.Find({2, 7, 3}), nullptr);
  EXPECT_EQ(cache.Find({1, 7, 4}), nullptr);
}

TEST(FetchCacheTest, MergesWhatLaterFetchesLearn) {
  FetchCache cache(1 << 20);
  cache.Add({1, 1, 1}, WithSection("a", 5));
  CachedMessage envelope;
  envelope.has_envelope = true;
  envelope.envelope = "(NIL)";
  cache.Add({1, 1, 1}, envelope);
  const CachedMessage* found = cache.Find({1, 1, 1});
  ASSERT_NE(found, nullptr);
  EXPECT_TRUE(found->has_size);
  EXPECT_TRUE(found->has_envelope);
  EXPECT_NE(found->FindSection("a"), nullptr);
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), found->Bytes());
}

TEST(FetchCacheTest, EvictsLeastRecentlyUsedToStayWithinTheLimit) {
  const size_t one = WithSection("k", 1000).Bytes();
  FetchCache cache(3 * one);  // exactly three entries
  for (uint32_t uid = 1; uid <= 3; ++uid) {
    cache.Add({1, 1, uid}, WithSection("k", 1000));
  }
  EXPECT_EQ(cache.entries(), 3u);
  EXPECT_EQ(cache.bytes(), 3 * one);  // at the limit, nothing evicted
  ASSERT_NE(cache.Find({1, 1, 1}), nullptr);  // 1 is now the most recent
  cache.Add({1, 1, 4}, WithSection("k", 1000));
  EXPECT_LE(cache.bytes(), cache.max_bytes());
  EXPECT_EQ(cache.entries(), 3u);
  EXPECT_EQ(cache.Find({1, 1, 2}), nullptr);  // the least recently used went
  EXPECT_NE(cache.Find({1, 1, 1}), nullptr);
  EXPECT_NE(cache.Find({1, 1, 3}), nullptr);
  EXPECT_NE(cache.Find({1, 1, 4}), nullptr);
  for (uint32_t uid = 5; uid < 100; ++uid) {
    cache.Add({1, 1, uid}, WithSection("k", 1000 + uid));
    EXPECT_LE(cache.bytes(), cache.max_bytes());
  }
}

TEST(FetchCacheTest, AnEntryOverTheLimitIsNotKeptAndEvictsNothing) {
  const size_t one = WithSection("k", 1000).Bytes();
  FetchCache cache(2 * one);
  cache.Add({1, 1, 1}, WithSection("k", 1000));
  cache.Add({1, 1, 2}, WithSection("k", 10 * 1000));
  EXPECT_EQ(cache.Find({1, 1, 2}), nullptr);
  EXPECT_NE(cache.Find({1, 1, 1}), nullptr);
  EXPECT_EQ(cache.bytes(), one);
  // Growing an entry past the limit drops it.
  cache.Add({1, 1, 1}, WithSection("big", 10 * 1000));
  EXPECT_EQ(cache.Find({1, 1, 1}), nullptr);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.entries(), 0u);
}

TEST(FetchCacheTest, ZeroKeepsNothing) {
  FetchCache cache(0);
  cache.Add({1, 1, 1}, WithSection("k", 1));
  EXPECT_EQ(cache.Find({1, 1, 1}), nullptr);
  EXPECT_EQ(cache.bytes(), 0u);
}

}  // namespace
}  // namespace gateway
