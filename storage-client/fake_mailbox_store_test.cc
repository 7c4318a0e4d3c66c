#include "storage-client/fake_mailbox_store.h"

#include <chrono>
#include <exception>
#include <string>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "gtest/gtest.h"
#include "proto/mailbox/v1/errors.h"
#include "common/status_macros.h"

namespace mailbox::client {
namespace {

using boost::asio::awaitable;

// The test bodies return a status so CO_ASSIGN_OR_RETURN can be used in them.
void RunToCompletion(awaitable<absl::Status> test) {
  boost::asio::io_context io;
  bool finished = false;
  boost::asio::co_spawn(io, std::move(test),
                        [&finished](std::exception_ptr error, absl::Status status) {
                          finished = true;
                          EXPECT_EQ(error, nullptr);
                          EXPECT_TRUE(status.ok()) << status;
                        });
  io.run();
  EXPECT_TRUE(finished);
}

v1::UidSet Uids(uint32_t first, uint32_t last) {
  v1::UidSet set;
  v1::UidRange* range = set.add_ranges();
  range->set_first(first);
  range->set_last(last);
  return set;
}

awaitable<absl::Status> AppendMessage(MailboxStore& store, const Session& session,
                                      std::string mailbox, std::string content) {
  std::unique_ptr<AppendStream> append = store.Append(session);
  v1::AppendRequest item;
  item.set_mailbox(mailbox);
  CO_RETURN_IF_ERROR(co_await append->Write(item));
  item.mutable_message()->set_size(content.size());
  item.mutable_message()->add_flags("\\Draft");
  CO_RETURN_IF_ERROR(co_await append->Write(item));
  item.set_chunk(content.substr(0, content.size() / 2));
  CO_RETURN_IF_ERROR(co_await append->Write(item));
  item.set_chunk(content.substr(content.size() / 2));
  CO_RETURN_IF_ERROR(co_await append->Write(item));
  CO_RETURN_IF_ERROR(co_await append->Finish());
  co_return absl::OkStatus();
}

awaitable<absl::Status> LoginAppendFetchStoreExpunge(FakeMailboxStore& store) {
  v1::AuthenticateRequest login;
  login.set_mechanism(v1::PASSWORD);
  login.set_username("alice");
  login.set_password("wrong");
  auto refused = co_await store.Authenticate(login);
  EXPECT_EQ(v1::DetailOf(refused.status()).code(), v1::AUTHENTICATIONFAILED);
  login.set_password("secret");
  CO_ASSIGN_OR_RETURN(v1::AuthenticateResponse auth, co_await store.Authenticate(login));
  const Session session(auth.session_token());

  const std::string message = "Subject: hello\r\n\r\nbody text\r\n";
  CO_RETURN_IF_ERROR(co_await AppendMessage(store, session, "inbox", message));
  CO_RETURN_IF_ERROR(co_await AppendMessage(store, session, "INBOX", message + "more"));
  v1::AppendRequest first;
  first.set_mailbox("Nope");
  std::unique_ptr<AppendStream> missing = store.Append(session);
  CO_RETURN_IF_ERROR(co_await missing->Write(first));
  EXPECT_EQ(v1::DetailOf((co_await missing->Finish()).status()).code(), v1::TRYCREATE);

  v1::OpenRequest open;
  open.set_name("INBOX");
  CO_ASSIGN_OR_RETURN(v1::OpenResponse box, co_await store.Open(session, open));
  EXPECT_EQ(box.messages(), 2u);
  EXPECT_EQ(box.uidnext(), 3u);
  EXPECT_EQ(box.first_unseen_uid(), 1u);

  v1::FetchRequest fetch;
  fetch.set_mailbox_id(box.mailbox_id());
  fetch.set_uidvalidity(box.uidvalidity());
  *fetch.mutable_uids() = Uids(1, 1);
  fetch.set_flags(true);
  fetch.set_size(true);
  fetch.add_sections();  // BODY[]
  fetch.set_mark_seen(true);
  std::unique_ptr<FetchStream> stream = store.Fetch(session, fetch);
  std::string body;
  int metadata = 0;
  for (;;) {
    CO_ASSIGN_OR_RETURN(std::optional<v1::FetchResponse> item, co_await stream->Next());
    if (!item.has_value()) {
      break;
    }
    if (item->has_metadata()) {
      ++metadata;
      EXPECT_EQ(item->metadata().size(), message.size());
      EXPECT_TRUE(item->metadata().seen_changed());
    } else {
      body += item->chunk().data();
    }
  }
  EXPECT_EQ(metadata, 1);
  EXPECT_EQ(body, message);

  v1::StoreRequest flag;
  flag.set_mailbox_id(box.mailbox_id());
  flag.set_uidvalidity(box.uidvalidity());
  *flag.mutable_uids() = Uids(1, 2);
  flag.set_mode(v1::StoreRequest::ADD);
  flag.add_flags("\\Deleted");
  CO_ASSIGN_OR_RETURN(v1::StoreResponse stored, co_await store.Store(session, flag));
  EXPECT_EQ(stored.changed_size(), 2);

  v1::SearchRequest search;
  search.set_mailbox_id(box.mailbox_id());
  search.set_uidvalidity(box.uidvalidity());
  search.mutable_key()->set_text("MORE");
  CO_ASSIGN_OR_RETURN(v1::SearchResponse found, co_await store.Search(session, search));
  EXPECT_EQ(found.uids().ranges_size(), 1);
  EXPECT_EQ(found.uids().ranges(0).first(), 2u);

  v1::ExpungeRequest expunge;
  expunge.set_mailbox_id(box.mailbox_id());
  expunge.set_uidvalidity(box.uidvalidity());
  *expunge.mutable_uids() = Uids(2, 2);
  expunge.set_uids_only(true);
  CO_ASSIGN_OR_RETURN(v1::ExpungeResponse gone, co_await store.Expunge(session, expunge));
  EXPECT_EQ(gone.expunged().ranges(0).first(), 2u);
  v1::StatusRequest status;
  status.set_name("INBOX");
  CO_ASSIGN_OR_RETURN(v1::StatusResponse counts, co_await store.Status(session, status));
  EXPECT_EQ(counts.messages(), 1u);
  EXPECT_EQ(counts.deleted(), 1u);

  // A stale (mailbox_id, uidvalidity) pair.
  fetch.set_uidvalidity(box.uidvalidity() + 100);
  auto stale = co_await store.Fetch(session, fetch)->Next();
  EXPECT_EQ(v1::DetailOf(stale.status()).code(), v1::MAILBOX_CHANGED);
  co_return absl::OkStatus();
}

TEST(FakeMailboxStoreTest, LoginAppendFetchStoreExpunge) {
  FakeMailboxStore store;
  store.AddUser("alice", "secret");
  RunToCompletion(LoginAppendFetchStoreExpunge(store));
}

awaitable<absl::Status> MailboxesAndFailures(FakeMailboxStore& store) {
  const Session session = store.SessionFor("bob");
  v1::CreateMailboxRequest create;
  create.set_name("Work/2024");
  CO_RETURN_IF_ERROR(co_await store.CreateMailbox(session, create));
  EXPECT_EQ(v1::DetailOf((co_await store.CreateMailbox(session, create)).status()).code(),
            v1::ALREADYEXISTS);
  v1::ListMailboxesRequest list;
  list.add_patterns("%");
  CO_ASSIGN_OR_RETURN(v1::ListMailboxesResponse top, co_await store.ListMailboxes(session, list));
  EXPECT_EQ(top.mailboxes_size(), 2);  // INBOX, Work (not Work/2024)
  v1::RenameMailboxRequest rename;
  rename.set_from("Work/2024");
  rename.set_to("Archive");
  CO_RETURN_IF_ERROR(co_await store.RenameMailbox(session, rename));
  v1::DeleteMailboxRequest remove;
  remove.set_name("INBOX");
  EXPECT_EQ(v1::DetailOf((co_await store.DeleteMailbox(session, remove)).status()).code(),
            v1::CANNOT);

  store.FailNextCalls(v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE, "down"));
  v1::StatusRequest status;
  status.set_name("Archive");
  EXPECT_EQ((co_await store.Status(session, status)).status().code(),
            absl::StatusCode::kUnavailable);
  CO_RETURN_IF_ERROR(co_await store.Status(session, status));
  EXPECT_EQ((co_await store.Status(Session("bogus"), status)).status().code(),
            absl::StatusCode::kUnauthenticated);
  co_return absl::OkStatus();
}

TEST(FakeMailboxStoreTest, MailboxesAndInjectedFailures) {
  FakeMailboxStore store;
  store.AddUser("bob", "pw");
  RunToCompletion(MailboxesAndFailures(store));
}

awaitable<absl::Status> FeedReplaysAndFollows(FakeMailboxStore& store) {
  const Session session = store.SessionFor("carol");
  CO_RETURN_IF_ERROR(co_await AppendMessage(store, session, "INBOX", "a\r\n\r\nb"));
  v1::OpenRequest open;
  open.set_name("INBOX");
  CO_ASSIGN_OR_RETURN(v1::OpenResponse box, co_await store.Open(session, open));

  std::unique_ptr<ChangeFeed> feed =
      store.OpenChangeFeed(co_await boost::asio::this_coro::executor);
  feed->Subscribe(box.mailbox_id(), box.uidvalidity(), 0, session.token);
  CO_ASSIGN_OR_RETURN(v1::ChangeEvent replayed, co_await feed->Next());
  EXPECT_TRUE(replayed.has_added());
  CO_ASSIGN_OR_RETURN(v1::ChangeEvent marker, co_await feed->Next());
  EXPECT_TRUE(marker.has_subscribed());

  CO_RETURN_IF_ERROR(co_await AppendMessage(store, session, "INBOX", "c\r\n\r\nd"));
  CO_ASSIGN_OR_RETURN(v1::ChangeEvent live, co_await feed->Next());
  EXPECT_TRUE(live.has_added());
  EXPECT_GT(live.modseq(), replayed.modseq());

  feed->Subscribe(box.mailbox_id(), box.uidvalidity() + 1, 0, session.token);
  CO_ASSIGN_OR_RETURN(v1::ChangeEvent resync, co_await feed->Next());
  EXPECT_TRUE(resync.has_resync());
  EXPECT_EQ(resync.resync().reason().code(), v1::MAILBOX_CHANGED);
  feed->Close();
  EXPECT_EQ((co_await feed->Next()).status().code(), absl::StatusCode::kCancelled);
  co_return absl::OkStatus();
}

TEST(FakeMailboxStoreTest, ChangeFeedReplaysThenFollows) {
  FakeMailboxStore store;
  store.AddUser("carol", "pw");
  RunToCompletion(FeedReplaysAndFollows(store));
}

}  // namespace
}  // namespace mailbox::client
