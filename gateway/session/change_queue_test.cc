#include "gateway/session/change_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

namespace gateway {
namespace {

namespace v1 = mailbox::v1;

v1::ChangeEvent Flags(uint64_t modseq, std::vector<uint32_t> uids, const std::string& flag) {
  v1::ChangeEvent event;
  event.set_mailbox_id(7);
  event.set_modseq(modseq);
  for (uint32_t uid : uids) {
    v1::MessageFlags* message = event.mutable_flags_changed()->add_messages();
    message->set_uid(uid);
    message->add_flags(flag);
    message->set_modseq(modseq);
  }
  return event;
}

v1::ChangeEvent Added(uint64_t modseq, std::vector<uint32_t> uids) {
  v1::ChangeEvent event;
  event.set_mailbox_id(7);
  event.set_modseq(modseq);
  for (uint32_t uid : uids) {
    event.mutable_added()->add_messages()->set_uid(uid);
  }
  return event;
}

v1::ChangeEvent Expunged(uint64_t modseq, uint32_t first, uint32_t last) {
  v1::ChangeEvent event;
  event.set_mailbox_id(7);
  event.set_modseq(modseq);
  v1::UidRange* range = event.mutable_expunged()->mutable_uids()->add_ranges();
  range->set_first(first);
  range->set_last(last);
  return event;
}

TEST(ChangeQueueTest, RepeatedFlagChangesOfTheSameMessagesCoalesce) {
  // The attack: STORE 1:* +FLAGS / -FLAGS over and over while a session
  // does not read. However often, the queue holds one entry per message.
  ChangeQueue queue(1000);
  std::vector<uint32_t> uids;
  for (uint32_t uid = 1; uid <= 500; ++uid) uids.push_back(uid);
  for (uint64_t modseq = 2; modseq < 82; ++modseq) {
    ASSERT_TRUE(queue.Push(Flags(modseq, uids, modseq % 2 == 0 ? "\\Seen" : "\\Flagged")));
  }
  EXPECT_EQ(queue.items(), 500u);
  EXPECT_EQ(queue.coalesced(), 79u * 500u);
  ASSERT_FALSE(queue.empty());
  const v1::ChangeEvent& merged = queue.front();
  // The latest change of each message, and the highest MODSEQ.
  EXPECT_EQ(merged.modseq(), 81u);
  ASSERT_EQ(merged.flags_changed().messages_size(), 500);
  EXPECT_EQ(merged.flags_changed().messages(0).uid(), 1u);
  EXPECT_EQ(merged.flags_changed().messages(0).flags(0), "\\Flagged");
  EXPECT_EQ(merged.flags_changed().messages(0).modseq(), 81u);
  queue.pop_front();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.items(), 0u);
}

TEST(ChangeQueueTest, FlagChangesDoNotMergeAcrossOtherEvents) {
  // A flag change after an expunge (or an addition) must be reported after
  // it, so it starts a new run.
  ChangeQueue queue(100);
  ASSERT_TRUE(queue.Push(Flags(2, {1, 2}, "\\Seen")));
  ASSERT_TRUE(queue.Push(Expunged(3, 2, 2)));
  ASSERT_TRUE(queue.Push(Added(4, {3})));
  ASSERT_TRUE(queue.Push(Flags(5, {1, 3}, "\\Flagged")));
  ASSERT_TRUE(queue.Push(Flags(6, {3}, "\\Deleted")));
  // 2 + 1 + 1 + 2 (UID 3 coalesced).
  EXPECT_EQ(queue.items(), 6u);
  EXPECT_TRUE(queue.HasAdded(3));
  EXPECT_FALSE(queue.HasAdded(1));
  std::vector<std::string> kinds;
  while (queue.items() > 2) {
    const v1::ChangeEvent& event = queue.front();
    kinds.push_back(event.has_flags_changed() ? "flags" : event.has_expunged() ? "expunged"
                                                                                 : "added");
    queue.pop_front();
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"flags", "expunged", "added"}));
  // UID 3's change at MODSEQ 6 replaced the one at 5; UID 1's did not.
  EXPECT_TRUE(queue.FrontReplaced(3));
  EXPECT_FALSE(queue.FrontReplaced(1));
  ASSERT_EQ(queue.front().flags_changed().messages_size(), 2);
  EXPECT_EQ(queue.front().flags_changed().messages(1).uid(), 3u);
  EXPECT_EQ(queue.front().flags_changed().messages(1).flags(0), "\\Deleted");
  EXPECT_EQ(queue.items(), 2u);
  queue.pop_front();
  // Empty again: the next flag change starts a fresh event.
  ASSERT_TRUE(queue.Push(Flags(7, {1}, "\\Seen")));
  EXPECT_EQ(queue.items(), 1u);
  EXPECT_EQ(queue.front().modseq(), 7u);
}

// Queues given one depth gauge add up in it, and each takes its part away as it
// is emptied or destroyed.
TEST(ChangeQueueTest, TheDepthGaugeFollowsTheQueues) {
  std::atomic<int64_t> depth{0};
  {
    ChangeQueue a(100, &depth);
    ChangeQueue b(100, &depth);
    ASSERT_TRUE(a.Push(Added(2, {1, 2, 3})));
    ASSERT_TRUE(b.Push(Added(2, {1, 2})));
    EXPECT_EQ(depth.load(), 5);
    ASSERT_TRUE(a.Push(Flags(3, {1}, "\\Seen")));
    EXPECT_EQ(depth.load(), static_cast<int64_t>(a.items() + b.items()));
    a.pop_front();
    EXPECT_EQ(depth.load(), static_cast<int64_t>(a.items() + b.items()));
    b.clear();
    EXPECT_EQ(depth.load(), static_cast<int64_t>(a.items()));
  }
  EXPECT_EQ(depth.load(), 0);
}

TEST(ChangeQueueTest, CapIsExact) {
  ChangeQueue queue(10);
  // Additions of ten messages: exactly at the cap.
  EXPECT_TRUE(queue.Push(Added(2, {1, 2, 3, 4, 5, 6, 7, 8})));
  EXPECT_TRUE(queue.Push(Added(3, {9, 10})));
  EXPECT_EQ(queue.items(), 10u);
  // A flag change of a message already pending as a flag change would still
  // fit, but this one starts a new entry: over the cap.
  EXPECT_FALSE(queue.Push(Flags(4, {1}, "\\Seen")));
  queue.clear();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.items(), 0u);

  // Coalesced flag changes never go over however many arrive.
  ChangeQueue flags(10);
  for (uint64_t modseq = 2; modseq < 1000; ++modseq) {
    ASSERT_TRUE(flags.Push(Flags(modseq, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "\\Seen")));
  }
  EXPECT_EQ(flags.items(), 10u);
  EXPECT_FALSE(flags.Push(Flags(1000, {11}, "\\Seen")));
}

TEST(ChangeQueueTest, OtherEventsWeighOne) {
  ChangeQueue queue(2);
  v1::ChangeEvent renamed;
  renamed.set_modseq(2);
  renamed.mutable_renamed()->set_new_name("x");
  v1::ChangeEvent subscribed;
  subscribed.mutable_subscribed()->set_highest_modseq(2);
  EXPECT_TRUE(queue.Push(subscribed));
  EXPECT_TRUE(queue.Push(renamed));
  EXPECT_FALSE(queue.Push(Expunged(3, 1, 5)));
}

}  // namespace
}  // namespace gateway
