// Copying a SQLite store into PostgreSQL keeps every id, UID, UIDVALIDITY and
// MODSEQ, the content, the change log and the shared secrets.
#include "mailbox-service/store/store_copy.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/postgres/pg_store.h"
#include "mailbox-service/store/postgres/pg_schema.h"
#include "mailbox-service/store/postgres/pg_test_server.h"
#include "mailbox-service/store/sqlite_store.h"
#include "mailbox-service/store/store_test_util.h"

namespace mailbox::store {
namespace {

v1::OpenResponse OpenBox(Store& store, uint64_t user, const std::string& name) {
  v1::OpenRequest request;
  request.set_name(name);
  request.set_read_only(true);
  absl::StatusOr<v1::OpenResponse> box = store.Open(user, request);
  EXPECT_TRUE(box.ok()) << box.status();
  return box.ok() ? *box : v1::OpenResponse();
}

std::string WholeMessage(Store& store, uint64_t user, const v1::OpenResponse& box, uint32_t uid) {
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(box.mailbox_id());
  fetch.set_uidvalidity(box.uidvalidity());
  *fetch.mutable_uids() = Uids({{uid, uid}});
  fetch.add_sections();
  CollectingSink sink;
  EXPECT_TRUE(store.Fetch(user, fetch, sink).ok());
  return sink.Section(uid, 0);
}

TEST(StoreCopyTest, EverythingArrivesWithItsIds) {
  const std::string path = TempPath("copy-source.db");
  std::string big = absl::StrCat(kSimple, std::string(700 << 10, 'b'), "\r\n");
  uint64_t alice = 0, bob = 0;
  v1::OpenResponse before;
  std::vector<v1::ChangeEvent> log_before;
  {
    auto source = SqliteStore::Open(path, {}, nullptr);
    ASSERT_TRUE(source.ok()) << source.status();
    Store& store = **source;
    alice = *store.CreateUser("alice", "hash-a");
    bob = *store.CreateUser("bob", "hash-b");
    ASSERT_TRUE(store.DeleteUser("bob").ok());
    bob = *store.CreateUser("bob", "hash-b2");  // ids are never reused
    v1::CreateMailboxRequest create;
    create.set_name("Work/Reports");
    ASSERT_TRUE(store.CreateMailbox(alice, create).ok());
    std::vector<NewMessage> messages;
    messages.push_back(Message(kSimple, {"\\Seen", "$Important"}));
    messages.push_back(Message(big));
    messages.push_back(Message(kMultipart, {"\\Deleted"}));
    ASSERT_TRUE(store.Append(alice, "INBOX", std::move(messages)).ok());
    v1::OpenResponse box = OpenBox(store, alice, "INBOX");
    v1::ExpungeRequest expunge;
    expunge.set_mailbox_id(box.mailbox_id());
    expunge.set_uidvalidity(box.uidvalidity());
    ASSERT_TRUE(store.Expunge(alice, expunge).ok());
    v1::SetSubscriptionRequest subscribe;
    subscribe.set_name("Work/Reports");
    subscribe.set_subscribed(true);
    ASSERT_TRUE(store.SetSubscription(alice, subscribe).ok());
    ASSERT_TRUE(store.GetOrCreateSecret("session-key", "k3y").ok());
    before = OpenBox(store, alice, "INBOX");
    ASSERT_TRUE(
        store.ReadChanges(alice, before.mailbox_id(), before.uidvalidity(), 0, &log_before).ok());
  }

  absl::StatusOr<pg::TestServer> server = pg::TestServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(server->CreateDatabase("copy_target").ok());
  std::map<std::string, int64_t> reported;
  ASSERT_TRUE(CopySqliteToPostgres(path, server->conninfo("copy_target"),
                                   [&](std::string_view table, int64_t rows) {
                                     reported[std::string(table)] = rows;
                                   })
                  .ok());
  EXPECT_EQ(reported["users"], 2);
  EXPECT_EQ(reported["messages"], 2);
  EXPECT_EQ(reported["content_data"], 3);  // the expunged message is still retained

  pg::PgStore::Options options;
  options.conninfo = server->conninfo("copy_target");
  auto target = pg::PgStore::Open({}, nullptr, options);
  ASSERT_TRUE(target.ok()) << target.status();
  Store& store = **target;
  EXPECT_EQ(store.FindUser("alice")->id, alice);
  EXPECT_EQ(store.FindUser("bob")->id, bob);
  EXPECT_EQ(store.FindUser("bob")->password_hash, "hash-b2");
  v1::OpenResponse after = OpenBox(store, alice, "INBOX");
  EXPECT_EQ(after.mailbox_id(), before.mailbox_id());
  EXPECT_EQ(after.uidvalidity(), before.uidvalidity());
  EXPECT_EQ(after.uidnext(), before.uidnext());
  EXPECT_EQ(after.highest_modseq(), before.highest_modseq());
  EXPECT_EQ(after.messages(), 2u);
  EXPECT_THAT(std::vector<std::string>(after.flags().begin(), after.flags().end()),
              ::testing::Contains("$Important"));
  EXPECT_EQ(WholeMessage(store, alice, after, 2), big);
  std::vector<v1::ChangeEvent> log_after;
  ASSERT_TRUE(
      store.ReadChanges(alice, after.mailbox_id(), after.uidvalidity(), 0, &log_after).ok());
  ASSERT_EQ(log_after.size(), log_before.size());
  for (size_t i = 0; i < log_after.size(); ++i) {
    EXPECT_EQ(log_after[i].SerializeAsString(), log_before[i].SerializeAsString());
  }
  v1::ListMailboxesRequest subscribed;
  subscribed.set_subscribed_only(true);
  auto list = store.ListMailboxes(alice, subscribed);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->mailboxes_size(), 1);
  EXPECT_EQ(list->mailboxes(0).name(), "Work/Reports");
  EXPECT_EQ(*store.FindSecret("session-key"), "k3y");
  // New writes continue above the copied ids.
  std::vector<NewMessage> next;
  next.push_back(Message(absl::StrCat(kSimple, "after the move\r\n")));
  auto appended = store.Append(alice, "INBOX", std::move(next));
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->uids(0), before.uidnext());
  EXPECT_GT(*store.CreateUser("carol", "h"), bob);

  // A second copy would mix two stores: refused.
  absl::Status again = CopySqliteToPostgres(path, server->conninfo("copy_target"), nullptr);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
}

TEST(StoreCopyTest, MigrateBringsAnEmptyDatabaseToThisBuildsSchemaOnce) {
  absl::StatusOr<pg::TestServer> server = pg::TestServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(server->CreateDatabase("migrated").ok());
  absl::StatusOr<std::pair<int, int>> first = MigratePostgres(server->conninfo("migrated"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->first, 0);
  EXPECT_EQ(first->second, pg::LatestSchemaVersion());
  absl::StatusOr<std::pair<int, int>> again = MigratePostgres(server->conninfo("migrated"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->first, pg::LatestSchemaVersion());
  EXPECT_EQ(again->second, pg::LatestSchemaVersion());
  // A replica starts on it without migrating anything more.
  pg::PgStore::Options options;
  options.conninfo = server->conninfo("migrated");
  EXPECT_TRUE(pg::PgStore::Open({}, nullptr, options).ok());
  EXPECT_FALSE(MigratePostgres("host=/nonexistent dbname=none").ok());
}

}  // namespace
}  // namespace mailbox::store
