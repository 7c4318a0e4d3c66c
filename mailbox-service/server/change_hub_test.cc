#include "mailbox-service/server/change_hub.h"

#include <thread>

#include <gtest/gtest.h>

namespace mailbox::server {
namespace {

v1::ChangeEvent Added(uint64_t mailbox, uint64_t modseq, uint32_t uid) {
  v1::ChangeEvent event;
  event.set_mailbox_id(mailbox);
  event.set_modseq(modseq);
  event.mutable_added()->add_messages()->set_uid(uid);
  return event;
}

std::vector<uint64_t> Drain(FeedQueue& queue, size_t count) {
  std::vector<uint64_t> modseqs;
  for (size_t i = 0; i < count; ++i) {
    auto event = queue.Pop();
    EXPECT_TRUE(event.has_value());
    modseqs.push_back(event->has_subscribed() ? 0 : event->modseq());
  }
  return modseqs;
}

TEST(ChangeHubTest, ReplayAndLiveEventsMergeWithoutGapsOrRepeats) {
  ChangeHub hub;
  FeedQueue queue;
  queue.BeginReplay(7, 10);
  hub.Add(7, &queue);
  // Live events that commit while the log is being read are buffered...
  hub.Publish(Added(7, 12, 2));
  hub.Publish(Added(7, 13, 3));
  // ...and the log read may already contain some of them.
  queue.FinishReplay(7, {Added(7, 11, 1), Added(7, 12, 2)});
  hub.Publish(Added(7, 14, 4));
  hub.Publish(Added(8, 99, 1));  // another mailbox: not subscribed
  EXPECT_EQ(Drain(queue, 4), (std::vector<uint64_t>{11, 12, 0, 13}));
  EXPECT_EQ(Drain(queue, 1), (std::vector<uint64_t>{14}));
}

TEST(ChangeHubTest, ReplayDropsEventsAtOrBelowTheResumePoint) {
  ChangeHub hub;
  FeedQueue queue;
  queue.BeginReplay(1, 5);
  hub.Add(1, &queue);
  queue.FinishReplay(1, {Added(1, 5, 1), Added(1, 6, 2)});
  EXPECT_EQ(Drain(queue, 2), (std::vector<uint64_t>{6, 0}));
}

TEST(ChangeHubTest, UnsubscribedMailboxesGetNothing) {
  ChangeHub hub;
  FeedQueue queue;
  queue.BeginReplay(1, 0);
  hub.Add(1, &queue);
  queue.FinishReplay(1, {});
  EXPECT_EQ(Drain(queue, 1), (std::vector<uint64_t>{0}));
  hub.Remove(1, &queue);
  queue.Forget(1);
  hub.Publish(Added(1, 1, 1));
  queue.Close();
  EXPECT_FALSE(queue.Pop().has_value());
}

TEST(ChangeHubTest, AStalledReaderIsToldToResynchroniseInsteadOfGrowingWithoutBound) {
  ChangeHub hub;
  FeedQueue queue(/*max_pending=*/3);
  queue.BeginReplay(1, 0);
  hub.Add(1, &queue);
  queue.FinishReplay(1, {Added(1, 1, 1), Added(1, 2, 2), Added(1, 3, 3), Added(1, 4, 4)});
  hub.Publish(Added(1, 5, 5));  // after the overflow nothing more is queued
  auto first = queue.Pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->has_resync());
  EXPECT_EQ(first->resync().reason().code(), v1::RESYNC);
  queue.Close();
  EXPECT_FALSE(queue.Pop().has_value());
}

TEST(ChangeHubTest, CloseAllWakesBlockedReaders) {
  ChangeHub hub;
  FeedQueue queue;
  hub.Add(0, &queue);
  std::thread reader([&] { EXPECT_FALSE(queue.Pop().has_value()); });
  hub.CloseAll();
  reader.join();
}

}  // namespace
}  // namespace mailbox::server
