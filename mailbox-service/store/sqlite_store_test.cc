// What is particular to the SQLite backend: schema migrations, the database file
// and statement caching. What every backend must do is in store_conformance_test.cc.
#include "mailbox-service/store/sqlite_store.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/sqlite_db.h"
#include "mailbox-service/store/sqlite_schema.h"
#include "mailbox-service/store/sql_store.h"
#include "mailbox-service/store/store_test_util.h"
#include "mailbox-service/store/upgrade_test_util.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// --- Schema ------------------------------------------------------------------

TEST(SqliteSchemaTest, UpgradesOldDatabaseAndReopensIdempotently) {
  std::string path = TempPath("migrate.db");
  {
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE(sqlite::Migrate(**conn, 1).ok());
    EXPECT_EQ(*sqlite::SchemaVersion(**conn), 1);
    ASSERT_TRUE(
        (*conn)->Exec("INSERT INTO users (username, password_hash) VALUES ('old', 'h')").ok());
  }
  for (int i = 0; i < 2; ++i) {
    auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    auto user = (*store)->FindUser("old");
    ASSERT_TRUE(user.ok()) << user.status();
    // A version-2 table works after the upgrade.
    EXPECT_EQ(*(*store)->RecordAuthFailure("user:old", 1000, 100), 1 + i);
  }
  auto conn = sqlite::Connection::Open(path, false);
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(*sqlite::SchemaVersion(**conn), sqlite::LatestSchemaVersion());
  auto mode = (*conn)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->Text(0), "wal");
}

TEST(SqliteSchemaTest, RefusesNewerDatabase) {
  std::string path = TempPath("newer.db");
  {
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE((*conn)->Exec("PRAGMA user_version = 999").ok());
  }
  auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), ::testing::HasSubstr("newer"));
}

TEST(SqliteSchemaTest, IdCountersStartAboveRowsOfOlderVersions) {
  std::string path = TempPath("counters.db");
  {
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE(sqlite::Migrate(**conn, 2).ok());
    ASSERT_TRUE((*conn)
                    ->Exec("INSERT INTO users (id, username, password_hash) "
                           "VALUES (41, 'old', 'h');"
                           "INSERT INTO mailboxes (id, user_id, name, uidvalidity) "
                           "VALUES (70, 41, 'INBOX', 1)")
                    .ok());
  }
  auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  auto user = (*store)->CreateUser("new", "h");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(*user, 42u);
  v1::OpenRequest open;
  open.set_name("INBOX");
  auto inbox = (*store)->Open(*user, open);
  ASSERT_TRUE(inbox.ok()) << inbox.status();
  EXPECT_EQ(inbox->mailbox_id(), 71u);
}

TEST(SqliteDbTest, SameSqlPreparedTwiceDoesNotShareBindings) {
  std::string path = TempPath("stmt.db");
  auto conn = sqlite::Connection::Open(path, false);
  ASSERT_TRUE(conn.ok());
  static constexpr char kSql[] = "SELECT ?";
  // Bound but not yet stepped: sqlite3_stmt_busy() is false for the first one.
  auto first = (*conn)->Prepare(kSql);
  auto second = (*conn)->Prepare(kSql);
  ASSERT_TRUE(first.ok() && second.ok());
  first->Bind(1, int64_t{1});
  second->Bind(1, int64_t{2});
  ASSERT_TRUE(*first->Step());
  ASSERT_TRUE(*second->Step());
  EXPECT_EQ(first->Int(0), 1);
  EXPECT_EQ(second->Int(0), 2);
  // Back in the cache afterwards, and clean.
  *first = sqlite::Statement();
  auto third = (*conn)->Prepare(kSql);
  ASSERT_TRUE(third.ok());
  third->Bind(1, int64_t{3});
  ASSERT_TRUE(*third->Step());
  EXPECT_EQ(third->Int(0), 3);
}

TEST(SqliteSchemaTest, UpgradeKeepsMessagesAndAddsRetention) {
  std::string path = TempPath("migrate3.db");
  {
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE(sqlite::Migrate(**conn, 3).ok());
  }
  {
    auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    auto user = (*store)->CreateUser("u", "h");
    ASSERT_TRUE(user.ok());
    std::vector<NewMessage> messages;
    messages.push_back(Message(kSimple, {"\\Deleted"}));
    ASSERT_TRUE((*store)->Append(*user, "INBOX", std::move(messages)).ok());
    v1::OpenRequest open;
    open.set_name("INBOX");
    auto box = (*store)->Open(*user, open);
    ASSERT_TRUE(box.ok());
    v1::ExpungeRequest expunge;
    expunge.set_mailbox_id(box->mailbox_id());
    expunge.set_uidvalidity(box->uidvalidity());
    ASSERT_TRUE((*store)->Expunge(*user, expunge).ok());
    CollectingSink sink;
    ASSERT_TRUE((*store)->Fetch(*user, FetchEverything(*box, true), sink).ok());
    ASSERT_EQ(sink.Metadata().size(), 1u);
    EXPECT_TRUE(sink.Metadata()[0].expunged());
  }
  auto conn = sqlite::Connection::Open(path, false);
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(*sqlite::SchemaVersion(**conn), sqlite::LatestSchemaVersion());
}

TEST(SqliteSchemaTest, UpgradeFromVersion6KeepsOlderMessages) {
  std::string path = TempPath("migrate6.db");
  {
    auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    SeedOlderMessage(**store);
  }
  {
    // Back to the shape of version 6, rows and all.
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE((*conn)
                    ->Exec(absl::StrCat(kUndoMessageSortColumns,
                                        "DROP TRIGGER mailboxes_metadata;"
                           "DROP TABLE metadata;"
                           "DROP TRIGGER messages_count;"
                           "DROP TRIGGER messages_uncount;"
                           "ALTER TABLE mailboxes DROP COLUMN message_count;"
                           "ALTER TABLE mailboxes DROP COLUMN message_octets;"
                           "ALTER TABLE users DROP COLUMN quota_storage_kib;"
                           "ALTER TABLE users DROP COLUMN quota_messages;"
                           "ALTER TABLE messages DROP COLUMN save_date;"
                           "ALTER TABLE expunged_messages DROP COLUMN save_date;"
                           "ALTER TABLE contents DROP COLUMN preview;"
                           "ALTER TABLE users DROP COLUMN scram_sha256;"
                           "ALTER TABLE contents DROP COLUMN sort_keys;"
                           "PRAGMA user_version = 6")
                               .c_str())
                    .ok());
  }
  auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  const uint64_t user = (*store)->FindUser("u")->id;
  v1::OpenResponse box;
  ExpectOlderMessageUpgraded(**store, user, &box);
  ExpectOlderMessageCounted(**store, user);
  // SAVEDON falls back to the internal date's day.
  v1::SearchRequest search;
  search.set_mailbox_id(box.mailbox_id());
  search.set_uidvalidity(box.uidvalidity());
  search.mutable_key()->set_saved_on(20200101);
  auto found = (*store)->Search(user, search);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(Expand(found->uids()), ElementsAre(1));
  auto conn = sqlite::Connection::Open(path, false);
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(*sqlite::SchemaVersion(**conn), sqlite::LatestSchemaVersion());
}

// The step that adds SCRAM keys, from the version before it: users keep their
// password hash and have no keys (NULL) until the service stores some.
TEST(SqliteSchemaTest, UpgradeToScramKeysLeavesUsersWithoutKeys) {
  std::string path = TempPath("migrate-scram.db");
  {
    auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CreateUser("u", "hash").ok());
  }
  {
    auto conn = sqlite::Connection::Open(path, false);
    ASSERT_TRUE(conn.ok());
    const std::string back = absl::StrCat(kUndoMessageSortColumns,
                                          "ALTER TABLE users DROP COLUMN scram_sha256;"
                                          "PRAGMA user_version = ",
                                          sqlite::LatestSchemaVersion() - 2);
    ASSERT_TRUE((*conn)->Exec(back.c_str()).ok());
  }
  auto store = SqliteStore::Open(path, StoreLimits(), nullptr);
  ASSERT_TRUE(store.ok()) << store.status();
  auto user = (*store)->FindUser("u");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->password_hash, "hash");
  EXPECT_EQ(user->scram_sha256, "");
  ASSERT_TRUE((*store)->SetScramKeys("u", "hash", "SCRAM-SHA-256$keys").ok());
  EXPECT_EQ((*store)->FindUser("u")->scram_sha256, "SCRAM-SHA-256$keys");
}

// SORT by a key with an index reads the index in order (no sort of the whole
// mailbox): what SortedUids runs, as SQLite plans it.
TEST(SqliteSchemaTest, SortByAnIndexedFirstKeyIsAnIndexScan) {
  std::string path = TempPath("sort-plan.db");
  ASSERT_TRUE(SqliteStore::Open(path, StoreLimits(), nullptr).ok());
  auto conn = sqlite::Connection::Open(path, false);
  ASSERT_TRUE(conn.ok());
  ASSERT_TRUE((*conn)->Exec("ANALYZE").ok());
  using K = v1::SortCriterion;
  const std::vector<std::tuple<K::Key, bool, std::string>> indexed = {
      {K::DATE, false, "messages_by_sent_date"},   {K::DATE, true, "messages_by_sent_date"},
      {K::ARRIVAL, false, "messages_by_arrival"},  {K::ARRIVAL, true, "messages_by_arrival"},
  };
  for (const auto& [key, reverse, index] : indexed) {
    google::protobuf::RepeatedPtrField<K> criteria;
    criteria.Add()->set_key(key);
    criteria.Mutable(0)->set_reverse(reverse);
    const std::string sql = absl::StrCat("EXPLAIN QUERY PLAN ", SortedUidsQuery(criteria));
    auto plan = (*conn)->PrepareUncached(sql.c_str());
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::string details;
    while (*plan->Step()) {
      details.append(plan->Text(3)).append("\n");
    }
    EXPECT_THAT(details, ::testing::HasSubstr(absl::StrCat("INDEX ", index, " "))) << sql;
    // At most ties of the first key are ordered apart (by UID).
    EXPECT_THAT(details, ::testing::Not(::testing::HasSubstr("TEMP B-TREE FOR ORDER BY")))
        << sql;
  }
}

}  // namespace
}  // namespace mailbox::store
