#include "mailbox-service/server/change_hub.h"

#include <chrono>
#include <string>
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

TEST(ChangeHubTest, ASubscriptionEndsWhenItsTokenExpires) {
  ChangeHub hub;
  FeedQueue queue;
  const auto start = std::chrono::system_clock::now();
  queue.BeginReplay(7, 0, start + std::chrono::milliseconds(100));
  hub.Add(7, &queue);
  queue.FinishReplay(7, {});
  queue.BeginReplay(8, 0);  // no expiry (an admin's subscription)
  hub.Add(8, &queue);
  queue.FinishReplay(8, {});
  EXPECT_TRUE(queue.Pop()->has_subscribed());
  EXPECT_TRUE(queue.Pop()->has_subscribed());
  // Nothing else happens: the expiry alone wakes the reader.
  auto ended = queue.Pop();
  ASSERT_TRUE(ended.has_value());
  EXPECT_GE(std::chrono::system_clock::now() - start, std::chrono::milliseconds(100));
  EXPECT_EQ(ended->mailbox_id(), 7u);
  ASSERT_TRUE(ended->has_resync());
  EXPECT_EQ(ended->resync().reason().code(), v1::AUTHENTICATIONFAILED);
  // Nothing more for the ended subscription; the other goes on.
  hub.Publish(Added(7, 1, 1));
  hub.Publish(Added(8, 1, 1));
  auto next = queue.Pop();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->mailbox_id(), 8u);
}

TEST(ChangeHubTest, ARevokedCredentialEndsTheSubscriptionAtOnce) {
  ChangeHub hub;
  FeedQueue queue;
  queue.BeginReplay(7, 50);
  hub.Add(7, &queue);
  queue.FinishReplay(7, {});
  EXPECT_TRUE(queue.Pop()->has_subscribed());
  // As the store announces a password change: no MODSEQ, not in the log.
  v1::ChangeEvent revoked;
  revoked.set_mailbox_id(7);
  revoked.mutable_resync()->mutable_reason()->set_code(v1::AUTHENTICATIONFAILED);
  hub.Publish(revoked);
  hub.Publish(Added(7, 51, 1));
  auto event = queue.Pop();
  ASSERT_TRUE(event.has_value());
  ASSERT_TRUE(event->has_resync());
  EXPECT_EQ(event->resync().reason().code(), v1::AUTHENTICATIONFAILED);
  queue.BeginReplay(9, 0);
  hub.Add(9, &queue);
  queue.FinishReplay(9, {});
  auto next = queue.Pop();  // not mailbox 7's change
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->mailbox_id(), 9u);
}

v1::ChangeEvent ListChange(uint64_t user, const std::string& name) {
  v1::ChangeEvent event;
  event.set_user_id(user);
  event.mutable_mailbox_list()->set_kind(v1::ChangeEvent::MailboxListChanged::CREATED);
  event.mutable_mailbox_list()->set_name(name);
  return event;
}

void Subscribe(ChangeHub& hub, FeedQueue& queue, uint64_t user) {
  queue.BeginList(user);
  hub.AddList(user, &queue);
  queue.ListSubscribed(user);
}

TEST(ChangeHubTest, MailboxListEventsGoToTheFeedsOfTheirUserOnly) {
  ChangeHub hub;
  FeedQueue alice_feed;
  FeedQueue bob_feed;
  Subscribe(hub, alice_feed, 1);
  Subscribe(hub, bob_feed, 2);
  // A mailbox subscription with MODSEQs above anything: list events pass it by.
  alice_feed.BeginReplay(7, 100);
  hub.Add(7, &alice_feed);
  alice_feed.FinishReplay(7, {});
  hub.Publish(ListChange(1, "a"));
  hub.Publish(Added(7, 101, 1));
  hub.Publish(ListChange(1, "b"));
  hub.Publish(ListChange(2, "bobs"));
  hub.Publish(ListChange(3, "nobody's"));

  std::vector<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    auto event = alice_feed.Pop();
    ASSERT_TRUE(event.has_value());
    if (event->has_mailbox_list()) {
      EXPECT_EQ(event->user_id(), 1u);
      seen.push_back(event->mailbox_list().name());
    } else if (event->has_subscribed()) {
      seen.push_back(event->mailbox_id() == 0 ? "list subscribed" : "7 subscribed");
    } else {
      seen.push_back(std::to_string(event->modseq()));
    }
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"list subscribed", "7 subscribed", "a", "101", "b"}));
  auto bobs = bob_feed.Pop();
  ASSERT_TRUE(bobs.has_value());
  EXPECT_TRUE(bobs->has_subscribed());
  EXPECT_EQ(bobs->user_id(), 2u);
  bobs = bob_feed.Pop();
  ASSERT_TRUE(bobs.has_value());
  EXPECT_EQ(bobs->mailbox_list().name(), "bobs");

  // Unsubscribed: nothing more of that list.
  hub.RemoveList(1, &alice_feed);
  alice_feed.ForgetList(1);
  hub.Publish(ListChange(1, "c"));
  hub.Publish(Added(7, 102, 2));
  auto next = alice_feed.Pop();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->modseq(), 102u);
}

TEST(ChangeHubTest, AStalledReaderOfAMailboxListIsToldToResubscribe) {
  ChangeHub hub;
  FeedQueue queue(/*max_pending=*/3);
  Subscribe(hub, queue, 1);  // the marker is the first pending event
  hub.Publish(ListChange(1, "a"));
  hub.Publish(ListChange(1, "b"));
  hub.Publish(ListChange(1, "c"));  // the fourth: the list's events go, a Resync instead
  hub.Publish(ListChange(1, "d"));  // ended: not queued
  auto event = queue.Pop();
  ASSERT_TRUE(event.has_value());
  ASSERT_TRUE(event->has_resync());
  EXPECT_EQ(event->user_id(), 1u);
  EXPECT_EQ(event->mailbox_id(), 0u);
  EXPECT_EQ(event->resync().reason().code(), v1::RESYNC);
  queue.Close();
  EXPECT_FALSE(queue.Pop().has_value());
}

TEST(ChangeHubTest, AMailboxListSubscriptionEndsWithItsTokenOrItsCredential) {
  ChangeHub hub;
  FeedQueue queue;
  const auto start = std::chrono::system_clock::now();
  queue.BeginList(1, start + std::chrono::milliseconds(100));
  hub.AddList(1, &queue);
  queue.ListSubscribed(1);
  Subscribe(hub, queue, 2);
  EXPECT_TRUE(queue.Pop()->has_subscribed());
  EXPECT_TRUE(queue.Pop()->has_subscribed());
  auto ended = queue.Pop();  // the expiry alone wakes the reader
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->user_id(), 1u);
  ASSERT_TRUE(ended->has_resync());
  EXPECT_EQ(ended->resync().reason().code(), v1::AUTHENTICATIONFAILED);
  hub.Publish(ListChange(1, "late"));  // not delivered any more
  // A password change (the store announces a Resync for the user's list).
  v1::ChangeEvent revoked;
  revoked.set_user_id(2);
  revoked.mutable_resync()->mutable_reason()->set_code(v1::AUTHENTICATIONFAILED);
  hub.Publish(revoked);
  hub.Publish(ListChange(2, "after"));
  auto event = queue.Pop();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->user_id(), 2u);
  EXPECT_TRUE(event->has_resync());
  queue.Close();
  EXPECT_FALSE(queue.Pop().has_value());
}

}  // namespace
}  // namespace mailbox::server
