#include "gateway/session/notify_watch.h"

#include <gtest/gtest.h>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "storage-client/fake_mailbox_store.h"

namespace gateway {
namespace {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;
using mailbox::client::FakeMailboxStore;

template <typename T>
T RunTask(asio::io_context& io, asio::awaitable<T> task) {
  std::optional<T> result;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr, T value) { result.emplace(value); });
  io.restart();
  while (!result.has_value() && io.run_one() > 0) {
  }
  return std::move(*result);
}

asio::awaitable<absl::Status> AppendTo(mailbox::client::MailboxStore& store,
                                       mailbox::client::Session session, std::string mailbox) {
  auto stream = store.Append(session);
  v1::AppendRequest item;
  item.set_mailbox(mailbox);
  if (auto s = co_await stream->Write(item); !s.ok()) {
    co_return s;
  }
  std::string content = "Subject: x\r\n\r\nbody\r\n";
  item.Clear();
  item.mutable_message()->set_size(content.size());
  if (auto s = co_await stream->Write(item); !s.ok()) {
    co_return s;
  }
  item.Clear();
  item.set_chunk(content);
  if (auto s = co_await stream->Write(item); !s.ok()) {
    co_return s;
  }
  auto done = co_await stream->Finish();
  co_return done.status();
}

class NotifyWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.AddUser("alice", "pw");
    session_ = store_.SessionFor("alice");
    v1::CreateMailboxRequest create;
    create.set_name("Other");
    auto created = RunTask(io_, store_.CreateMailbox(session_, create));
    ASSERT_TRUE(created.ok()) << created.status();
    router_ = std::make_unique<FeedRouter>(store_, io_.get_executor());
  }
  void TearDown() override {
    router_->Close();
    io_.poll();
  }

  NotifyWatch::Target TargetOf(const std::string& name, uint8_t events) {
    v1::StatusRequest request;
    request.set_name(name);
    auto status = RunTask(io_, store_.Status(session_, request));
    EXPECT_TRUE(status.ok()) << status.status();
    NotifyWatch::Target target;
    target.mailbox_id = status->mailbox_id();
    target.uidvalidity = status->uidvalidity();
    target.modseq = status->highest_modseq();
    target.name = name;
    target.events = events;
    return target;
  }

  void Append(const std::string& mailbox) {
    ASSERT_TRUE(RunTask(io_, AppendTo(store_, session_, mailbox)).ok());
  }

  // Runs the feed until `done` holds (the fake delivers within a few polls).
  template <typename Predicate>
  void RunUntil(Predicate done) {
    for (int i = 0; i < 200 && !done(); ++i) {
      io_.restart();
      io_.poll();
    }
  }

  static constexpr uint8_t kAll =
      NotifyWatch::kMessageNew | NotifyWatch::kMessageExpunge | NotifyWatch::kFlagChange;

  asio::io_context io_;
  FakeMailboxStore store_;
  mailbox::client::Session session_;
  std::unique_ptr<FeedRouter> router_;
};

TEST_F(NotifyWatchTest, SessionsShareOneSubscriptionPerMailbox) {
  int wakes = 0;
  NotifyWatch first(std::chrono::milliseconds(0), [&] { ++wakes; });
  NotifyWatch second(std::chrono::milliseconds(0), [] {});
  const std::vector<NotifyWatch::Target> both = {TargetOf("INBOX", kAll),
                                                 TargetOf("Other", kAll)};
  first.Replace(router_.get(), session_.token, both);
  second.Replace(router_.get(), session_.token, both);
  // Two sessions watching two mailboxes: four listeners, two subscriptions.
  EXPECT_EQ(router_->subscribed_mailboxes(), 2u);
  EXPECT_EQ(first.size(), 2u);

  Append("Other");
  RunUntil([&] { return first.has_news() && second.has_news(); });
  EXPECT_GE(wakes, 1);
  auto news = first.TakeNews(0, NotifyWatch::Clock::now());
  ASSERT_EQ(news.size(), 1u);
  EXPECT_EQ(news[0].name, "Other");
  EXPECT_EQ(news[0].mailbox_id, both[1].mailbox_id);

  // A NOTIFY naming fewer mailboxes: the other session's listener keeps the
  // subscription open.
  first.Replace(router_.get(), session_.token, {both[0]});
  EXPECT_EQ(router_->subscribed_mailboxes(), 2u);
  first.Clear(router_.get());
  second.Clear(router_.get());
  EXPECT_EQ(router_->subscribed_mailboxes(), 0u);
  EXPECT_FALSE(second.has_news());  // dropped with the mailboxes it was about
}

TEST_F(NotifyWatchTest, ABurstOfChangesIsOneEntryAndTheSelectedMailboxIsSkipped) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  const NotifyWatch::Target inbox = TargetOf("INBOX", kAll);
  const NotifyWatch::Target other = TargetOf("Other", kAll);
  watch.Replace(router_.get(), session_.token, {inbox, other});
  for (int i = 0; i < 50; ++i) {
    Append("INBOX");
  }
  Append("Other");
  RunUntil([&] { return false; });
  // Fifty appends to INBOX and one to Other: one entry each, in order.
  auto news = watch.TakeNews(0, NotifyWatch::Clock::now());
  ASSERT_EQ(news.size(), 2u);
  EXPECT_EQ(news[0].name, "INBOX");
  EXPECT_EQ(news[1].name, "Other");
  EXPECT_FALSE(watch.has_news());

  // The selected mailbox gets RFC 3501's responses, not STATUS.
  Append("INBOX");
  Append("Other");
  RunUntil([&] { return false; });
  news = watch.TakeNews(inbox.mailbox_id, NotifyWatch::Clock::now());
  ASSERT_EQ(news.size(), 1u);
  EXPECT_EQ(news[0].name, "Other");
  watch.Clear(router_.get());
}

TEST_F(NotifyWatchTest, OnlyTheEventsAskedForAreNewsAndReplaysAreNot) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  // Other's state before the append: a watcher that knows it already.
  Append("Other");
  const NotifyWatch::Target known = TargetOf("Other", NotifyWatch::kFlagChange);
  watch.Replace(router_.get(), session_.token, {known});
  // Another listener joins from MODSEQ 0: the router replays the append,
  // which this watcher already knew of.
  class Quiet : public FeedRouter::Listener {
    void OnChange(const v1::ChangeEvent&) override {}
  } quiet;
  router_->Add(known.mailbox_id, known.uidvalidity, 0, session_.token, &quiet);
  RunUntil([&] { return false; });
  EXPECT_FALSE(watch.has_news());
  // An addition is not a flag change.
  Append("Other");
  RunUntil([&] { return false; });
  EXPECT_FALSE(watch.has_news());
  router_->Remove(known.mailbox_id, &quiet);
  watch.Clear(router_.get());
}

TEST_F(NotifyWatchTest, RefreshForgetsAMailboxWhoseNameNowNamesAnother) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  const NotifyWatch::Target other = TargetOf("Other", kAll);
  watch.Replace(router_.get(), session_.token, {other});
  v1::StatusResponse status;
  status.set_mailbox_id(other.mailbox_id + 1000);
  EXPECT_FALSE(watch.Refresh(router_.get(), session_.token,
                             NotifyWatch::News{other.mailbox_id, "Other"}, status));
  EXPECT_EQ(watch.size(), 0u);
  EXPECT_EQ(router_->subscribed_mailboxes(), 0u);
}

TEST(NotifyWatchRoundTest, NewsWaitsForTheNextRound) {
  NotifyWatch watch(std::chrono::hours(1), [] {});
  const auto start = NotifyWatch::Clock::now();
  EXPECT_TRUE(watch.TakeNews(0, start).empty());
  EXPECT_EQ(watch.next_round(), start + std::chrono::hours(1));
}

}  // namespace
}  // namespace gateway
