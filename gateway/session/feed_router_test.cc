#include "gateway/session/feed_router.h"

#include <gtest/gtest.h>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "storage-client/fake_mailbox_store.h"

namespace gateway {
namespace {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;

class Recorder : public FeedRouter::Listener {
 public:
  void OnChange(const v1::ChangeEvent& event) override { events.push_back(event); }
  void OnChangesDelivered() override { deliveries.push_back(events.size()); }
  std::vector<v1::ChangeEvent> events;
  // events.size() at each OnChangesDelivered.
  std::vector<size_t> deliveries;
  size_t added() const {
    size_t n = 0;
    for (const auto& e : events) {
      n += e.has_added() ? 1 : 0;
    }
    return n;
  }
};

template <typename T>
T RunTask(asio::io_context& io, asio::awaitable<T> task) {
  std::optional<T> result;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr, T value) { result.emplace(value); });
  io.restart();
  while (!result.has_value() && io.run_one() > 0) {
  }
  return std::move(*result);
}

asio::awaitable<absl::Status> AppendOne(mailbox::client::MailboxStore& store,
                                        mailbox::client::Session session) {
  auto stream = store.Append(session);
  v1::AppendRequest item;
  item.set_mailbox("INBOX");
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

TEST(FeedRouterTest, OneSubscriptionServesEverySessionOfAMailbox) {
  asio::io_context io;
  mailbox::client::FakeMailboxStore store;
  store.AddUser("alice", "pw");
  auto session = store.SessionFor("alice");
  v1::OpenRequest open_request;
  open_request.set_name("INBOX");
  auto open = RunTask(io, store.Open(session, open_request));
  ASSERT_TRUE(open.ok()) << open.status();

  FeedRouter router(store, io.get_executor());
  Recorder first, second;
  router.Add(open->mailbox_id(), open->uidvalidity(), open->highest_modseq(), session.token,
             &first);
  router.Add(open->mailbox_id(), open->uidvalidity(), open->highest_modseq(), session.token,
             &second);
  EXPECT_EQ(router.subscribed_mailboxes(), 1u);
  ASSERT_TRUE(RunTask(io, AppendOne(store, session)).ok());
  for (int i = 0; i < 100 && (first.added() < 1 || second.added() < 1); ++i) {
    io.restart();
    io.poll();
  }
  EXPECT_EQ(first.added(), 1u);
  EXPECT_EQ(second.added(), 1u);

  router.Remove(open->mailbox_id(), &first);
  ASSERT_TRUE(RunTask(io, AppendOne(store, session)).ok());
  for (int i = 0; i < 100 && second.added() < 2; ++i) {
    io.restart();
    io.poll();
  }
  EXPECT_EQ(first.added(), 1u);
  EXPECT_EQ(second.added(), 2u);
  router.Remove(open->mailbox_id(), &second);
  EXPECT_EQ(router.subscribed_mailboxes(), 0u);
  router.Close();
  io.poll();
}

asio::awaitable<absl::StatusOr<v1::ReviseResponse>> ReviseOne(
    mailbox::client::MailboxStore& store, mailbox::client::Session session, uint64_t mailbox_id,
    uint32_t uid) {
  auto stream = store.Revise(session);
  std::string content = "Subject: y\r\n\r\nrevised\r\n";
  v1::ReviseRequest item;
  item.mutable_header()->set_mailbox_id(mailbox_id);
  item.mutable_header()->set_uid(uid);
  item.mutable_header()->set_size(content.size());
  if (auto s = co_await stream->Write(item); !s.ok()) {
    co_return s;
  }
  item.Clear();
  item.set_chunk(content);
  if (auto s = co_await stream->Write(item); !s.ok()) {
    co_return s;
  }
  co_return co_await stream->Finish();
}

TEST(FeedRouterTest, ARevisionsTwoEventsReachListenersBeforeOneDelivery) {
  asio::io_context io;
  mailbox::client::FakeMailboxStore store;
  store.AddUser("alice", "pw");
  auto session = store.SessionFor("alice");
  ASSERT_TRUE(RunTask(io, AppendOne(store, session)).ok());
  v1::OpenRequest open_request;
  open_request.set_name("INBOX");
  auto open = RunTask(io, store.Open(session, open_request));
  ASSERT_TRUE(open.ok()) << open.status();

  FeedRouter router(store, io.get_executor());
  std::vector<Recorder> listeners(3);
  for (Recorder& listener : listeners) {
    router.Add(open->mailbox_id(), open->uidvalidity(), open->highest_modseq(), session.token,
               &listener);
  }
  auto revised = RunTask(io, ReviseOne(store, session, open->mailbox_id(), 1));
  ASSERT_TRUE(revised.ok()) << revised.status();
  for (int i = 0; i < 100; ++i) {
    io.restart();
    io.poll();
  }
  for (const Recorder& listener : listeners) {
    // The Subscribed marker, then the revision's addition and expunge, told at once.
    ASSERT_EQ(listener.events.size(), 3u);
    EXPECT_TRUE(listener.events[1].has_added());
    EXPECT_TRUE(listener.events[2].has_expunged());
    EXPECT_EQ(listener.deliveries, (std::vector<size_t>{1, 3}));
  }
  // Removal from the middle keeps the others.
  router.Remove(open->mailbox_id(), &listeners[1]);
  router.Remove(open->mailbox_id(), &listeners[1]);  // twice: no effect
  ASSERT_TRUE(RunTask(io, AppendOne(store, session)).ok());
  for (int i = 0; i < 100; ++i) {
    io.restart();
    io.poll();
  }
  EXPECT_EQ(listeners[0].events.size(), 4u);
  EXPECT_EQ(listeners[1].events.size(), 3u);
  EXPECT_EQ(listeners[2].events.size(), 4u);
  router.Close();
  io.poll();
}

}  // namespace
}  // namespace gateway
