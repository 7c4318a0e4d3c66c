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
  std::vector<v1::ChangeEvent> events;
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

}  // namespace
}  // namespace gateway
