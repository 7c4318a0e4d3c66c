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

v1::ChangeEvent ListEvent(uint64_t user, v1::ChangeEvent::MailboxListChanged::Kind kind,
                          const std::string& name, const std::string& old_name = "") {
  v1::ChangeEvent event;
  event.set_user_id(user);
  event.mutable_mailbox_list()->set_kind(kind);
  event.mutable_mailbox_list()->set_name(name);
  event.mutable_mailbox_list()->set_old_name(old_name);
  return event;
}

using Change = v1::ChangeEvent::MailboxListChanged;
constexpr uint64_t kUser = 1;

std::vector<std::string> Lines(const std::vector<NotifyWatch::ListNews>& news) {
  std::vector<std::string> out;
  for (const NotifyWatch::ListNews& item : news) {
    std::string line = "(";
    for (const std::string& attribute : item.attributes) {
      line += attribute;
    }
    line += ") " + item.name;
    if (!item.old_name.empty()) {
      line += " OLDNAME " + item.old_name;
    }
    out.push_back(std::move(line));
  }
  return out;
}

TEST_F(NotifyWatchTest, ListChangesInTheFiltersBecomeListLinesAndNewMailboxesAreWatched) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  NotifyWatch other_session(std::chrono::milliseconds(0), [] {});
  NotifyWatch::Rule subtree;
  subtree.scope = NotifyWatch::Rule::kSubtree;
  subtree.names = {"Lists"};
  subtree.events = NotifyWatch::kMailboxName | NotifyWatch::kSubscriptionChange | kAll;
  NotifyWatch::Rule subscribed;
  subscribed.scope = NotifyWatch::Rule::kSubscribed;
  subscribed.events = NotifyWatch::kMessageNew | NotifyWatch::kMessageExpunge;
  watch.SetRules(router_.get(), kUser, session_.token, {subtree, subscribed}, {}, 10);
  other_session.SetRules(router_.get(), kUser, session_.token, {subtree}, {}, 10);
  EXPECT_EQ(router_->subscribed_lists(), 1u);  // one per user, however many sessions
  RunUntil([&] { return watch.list_live(); });
  ASSERT_TRUE(watch.list_live());

  // Lists/new is created (the fake store for its id; the event as announced).
  v1::CreateMailboxRequest create;
  create.set_name("Lists/new");
  auto created = RunTask(io_, store_.CreateMailbox(session_, create));
  ASSERT_TRUE(created.ok());
  v1::ChangeEvent event = ListEvent(kUser, Change::CREATED, "Lists/new");
  event.mutable_mailbox_list()->set_mailbox_id(created->mailbox_id());
  event.mutable_mailbox_list()->set_uidvalidity(created->uidvalidity());
  event.mutable_mailbox_list()->set_highest_modseq(0);
  store_.AnnounceListChange(event);
  store_.AnnounceListChange(ListEvent(kUser, Change::CREATED, "Elsewhere"));  // no filter
  store_.AnnounceListChange(ListEvent(kUser + 1, Change::CREATED, "Lists/bobs"));  // not ours
  store_.AnnounceListChange(ListEvent(kUser, Change::SUBSCRIBED, "Lists/new"));
  store_.AnnounceListChange(ListEvent(kUser, Change::RENAMED, "Lists/x", "Elsewhere"));
  store_.AnnounceListChange(ListEvent(kUser, Change::DELETED, "Lists/x"));
  store_.AnnounceListChange(ListEvent(kUser, Change::NOSELECT, "Lists"));
  RunUntil([&] { return false; });
  EXPECT_EQ(Lines(watch.TakeListNews(router_.get(), session_.token)),
            (std::vector<std::string>{"() Lists/new", "(\\Subscribed) Lists/new",
                                      "() Lists/x OLDNAME Elsewhere", "(\\NonExistent) Lists/x",
                                      "(\\Noselect) Lists"}));
  EXPECT_EQ(other_session.TakeListNews(router_.get(), session_.token).size(), 5u);
  // The new mailbox is watched from its first MODSEQ: its first message is news.
  EXPECT_TRUE(watch.watches(created->mailbox_id()));
  Append("Lists/new");
  RunUntil([&] { return watch.has_news(); });
  auto news = watch.TakeNews(0, NotifyWatch::Clock::now());
  ASSERT_EQ(news.size(), 1u);
  EXPECT_EQ(news[0].name, "Lists/new");
  // Subscribed into the SUBSCRIBED filter: looked up, then watched.
  store_.AnnounceListChange(ListEvent(kUser, Change::SUBSCRIBED, "Other"));
  RunUntil([&] { return false; });
  EXPECT_TRUE(watch.TakeListNews(router_.get(), session_.token).empty());  // no SubscriptionChange
  EXPECT_EQ(watch.TakeLookups(), (std::vector<std::string>{"Other"}));
  watch.Watch(router_.get(), session_.token, TargetOf("Other", 0));
  EXPECT_EQ(watch.size(), 2u);
  // Unsubscribed out of it: no longer watched.
  store_.AnnounceListChange(ListEvent(kUser, Change::UNSUBSCRIBED, "Other"));
  RunUntil([&] { return false; });
  EXPECT_EQ(watch.size(), 1u);

  watch.Clear(router_.get());
  EXPECT_FALSE(watch.listens_to_list());
  EXPECT_EQ(router_->subscribed_lists(), 1u);
  other_session.Clear(router_.get());
  EXPECT_EQ(router_->subscribed_lists(), 0u);
}

TEST_F(NotifyWatchTest, ListLinesAndNewMailboxesStopAtTheLimit) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  NotifyWatch::Rule personal;
  personal.scope = NotifyWatch::Rule::kPersonal;
  personal.events = NotifyWatch::kMailboxName | kAll;
  constexpr size_t kLimit = 2;
  watch.Replace(router_.get(), session_.token, {TargetOf("INBOX", kAll)});
  watch.SetRules(router_.get(), kUser, session_.token, {personal}, {}, kLimit);
  RunUntil([&] { return watch.list_live(); });
  // At the limit: two lines queued; the second new mailbox is one too many to
  // watch (INBOX and the first make two).
  std::vector<uint64_t> ids;
  for (const char* name : {"n1", "n2"}) {
    v1::CreateMailboxRequest create;
    create.set_name(name);
    auto created = RunTask(io_, store_.CreateMailbox(session_, create));
    ASSERT_TRUE(created.ok());
    ids.push_back(created->mailbox_id());
    v1::ChangeEvent event = ListEvent(kUser, Change::CREATED, name);
    event.mutable_mailbox_list()->set_mailbox_id(created->mailbox_id());
    event.mutable_mailbox_list()->set_uidvalidity(created->uidvalidity());
    store_.AnnounceListChange(event);
  }
  RunUntil([&] { return false; });
  EXPECT_FALSE(watch.overflowed());
  EXPECT_TRUE(watch.watches(ids[0]));
  EXPECT_FALSE(watch.watches(ids[1]));
  EXPECT_EQ(watch.size(), kLimit);
  EXPECT_EQ(watch.TakeListNews(router_.get(), session_.token).size(), kLimit);
  // One line more than the limit before the client reads: overflow (§5.8).
  for (const char* name : {"a", "b", "c"}) {
    store_.AnnounceListChange(ListEvent(kUser, Change::DELETED, name));
  }
  RunUntil([&] { return false; });
  EXPECT_TRUE(watch.overflowed());
  EXPECT_TRUE(watch.has_news());
  watch.Clear(router_.get());
  EXPECT_FALSE(watch.overflowed());
  EXPECT_FALSE(watch.has_news());
}

// RFC 5465 §5.6: a mailbox's annotation changes for a filter naming it with
// MailboxMetadataChange; §5.7: the server's for any rule with
// ServerMetadataChange (one naming no mailbox too, as for SELECTED).
TEST_F(NotifyWatchTest, MetadataChangesBecomeNewsForTheirEvents) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  NotifyWatch::Rule inboxes;
  inboxes.scope = NotifyWatch::Rule::kInboxes;
  inboxes.events = NotifyWatch::kMailboxMetadataChange;
  NotifyWatch::Rule server;
  server.scope = NotifyWatch::Rule::kMailboxes;  // no names: SELECTED's rule
  server.events = NotifyWatch::kServerMetadataChange;
  watch.SetRules(router_.get(), kUser, session_.token, {inboxes, server}, {}, 10);
  RunUntil([&] { return watch.list_live(); });
  ASSERT_TRUE(watch.list_live());
  v1::ChangeEvent inbox = ListEvent(kUser, Change::METADATA_CHANGED, "INBOX");
  inbox.mutable_mailbox_list()->add_entries("/private/comment");
  inbox.mutable_mailbox_list()->add_entries("/shared/comment");
  store_.AnnounceListChange(inbox);
  v1::ChangeEvent other = ListEvent(kUser, Change::METADATA_CHANGED, "Other");  // no filter
  other.mutable_mailbox_list()->add_entries("/private/comment");
  store_.AnnounceListChange(other);
  v1::ChangeEvent bobs = ListEvent(kUser + 1, Change::METADATA_CHANGED, "INBOX");  // not ours
  bobs.mutable_mailbox_list()->add_entries("/private/bob");
  store_.AnnounceListChange(bobs);
  v1::ChangeEvent vendor = ListEvent(kUser, Change::METADATA_CHANGED, "");
  vendor.mutable_mailbox_list()->add_entries("/private/vendor/x");
  store_.AnnounceListChange(vendor);
  store_.AnnounceListChange(ListEvent(kUser, Change::METADATA_CHANGED, ""));  // too many
  RunUntil([&] { return false; });
  std::vector<NotifyWatch::ListNews> news = watch.TakeListNews(router_.get(), session_.token);
  ASSERT_EQ(news.size(), 3u);
  EXPECT_TRUE(news[0].metadata);
  EXPECT_EQ(news[0].name, "INBOX");
  EXPECT_EQ(news[0].entries,
            (std::vector<std::string>{"/private/comment", "/shared/comment"}));
  EXPECT_TRUE(news[1].metadata);
  EXPECT_EQ(news[1].name, "");
  EXPECT_EQ(news[1].entries, (std::vector<std::string>{"/private/vendor/x"}));
  EXPECT_TRUE(news[2].metadata);
  EXPECT_TRUE(news[2].entries.empty());

  // Without the metadata events, none of it is news.
  NotifyWatch::Rule names;
  names.scope = NotifyWatch::Rule::kPersonal;
  names.events = NotifyWatch::kMailboxName;
  watch.SetRules(router_.get(), kUser, session_.token, {names}, {}, 10);
  RunUntil([&] { return watch.list_live(); });
  store_.AnnounceListChange(inbox);
  store_.AnnounceListChange(vendor);
  RunUntil([&] { return false; });
  EXPECT_TRUE(watch.TakeListNews(router_.get(), session_.token).empty());
  watch.Clear(router_.get());
}

TEST_F(NotifyWatchTest, AnEndedListSubscriptionIsTakenUpAgainOrEndsTheSession) {
  NotifyWatch watch(std::chrono::milliseconds(0), [] {});
  NotifyWatch::Rule personal;
  personal.scope = NotifyWatch::Rule::kPersonal;
  personal.events = NotifyWatch::kMailboxName;
  watch.SetRules(router_.get(), kUser, session_.token, {personal}, {}, 10);
  RunUntil([&] { return watch.list_live(); });
  v1::ChangeEvent resync;
  resync.set_user_id(kUser);
  resync.mutable_resync()->mutable_reason()->set_code(v1::RESYNC);
  store_.AnnounceListChange(resync);
  RunUntil([&] { return !watch.list_live(); });
  EXPECT_EQ(router_->subscribed_lists(), 0u);
  EXPECT_TRUE(watch.has_news());  // the next round listens again
  EXPECT_TRUE(watch.TakeListNews(router_.get(), session_.token).empty());
  EXPECT_EQ(router_->subscribed_lists(), 1u);
  RunUntil([&] { return watch.list_live(); });
  EXPECT_FALSE(watch.list_revoked());
  resync.mutable_resync()->mutable_reason()->set_code(v1::AUTHENTICATIONFAILED);
  store_.AnnounceListChange(resync);
  RunUntil([&] { return watch.list_revoked(); });
  EXPECT_TRUE(watch.list_revoked());
  EXPECT_TRUE(watch.TakeListNews(router_.get(), session_.token).empty());
  EXPECT_EQ(router_->subscribed_lists(), 0u);  // not with the credential that ended
  watch.ListCredentialHolds();  // the session's own holds: listens with it
  EXPECT_TRUE(watch.TakeListNews(router_.get(), session_.token).empty());
  EXPECT_EQ(router_->subscribed_lists(), 1u);
  watch.Clear(router_.get());
}

TEST(NotifyWatchRoundTest, NewsWaitsForTheNextRound) {
  NotifyWatch watch(std::chrono::hours(1), [] {});
  const auto start = NotifyWatch::Clock::now();
  EXPECT_TRUE(watch.TakeNews(0, start).empty());
  EXPECT_EQ(watch.next_round(), start + std::chrono::hours(1));
}

}  // namespace
}  // namespace gateway
