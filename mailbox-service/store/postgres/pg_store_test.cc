// Two PgStore instances on one database, as two replicas of the mailbox service
// are: concurrent writes of the same users and of the same message content through
// both, against a real, private PostgreSQL server (pg_test_server.h).
#include "mailbox-service/store/postgres/pg_store.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/postgres/pg_db.h"
#include "mailbox-service/store/postgres/pg_schema.h"
#include "mailbox-service/store/postgres/pg_test_server.h"
#include "mailbox-service/store/store_test_util.h"
#include "mailbox-service/store/upgrade_test_util.h"

namespace mailbox::store::pg {
namespace {

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

class PgStoreReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestServer> started = TestServer::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::make_unique<TestServer>(*std::move(started));
    ASSERT_TRUE(server_->CreateDatabase("replicas").ok());
  }

  std::unique_ptr<PgStore> OpenReplica() {
    PgStore::Options options;
    options.conninfo = server_->conninfo("replicas");
    options.max_connections = 4;
    // Expunged content is released at once, so that collecting it races with
    // appends of the same bytes by the other threads.
    options.expunged_retention = std::chrono::milliseconds(0);
    absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(StoreLimits{}, nullptr, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  int64_t Count(const std::string& sql) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Open(server_->conninfo("replicas"), Soon());
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) {
      return -1;
    }
    absl::StatusOr<Result> result = (*conn)->Query(sql, Soon());
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() && result->rows() == 1 ? result->Int(0, 0) : -1;
  }

  std::unique_ptr<TestServer> server_;
};

TEST_F(PgStoreReplicasTest, ConcurrentWritersOfSharedContentStayGapFreeAndCounted) {
  std::unique_ptr<PgStore> replicas[2] = {OpenReplica(), OpenReplica()};
  ASSERT_NE(replicas[0], nullptr);
  ASSERT_NE(replicas[1], nullptr);
  uint64_t users[2];
  for (int u = 0; u < 2; ++u) {
    absl::StatusOr<uint64_t> user = replicas[0]->CreateUser(absl::StrCat("user", u), "hash");
    ASSERT_TRUE(user.ok()) << user.status();
    users[u] = *user;
  }
  constexpr int kThreads = 8;
  constexpr int kRounds = 12;
  std::mutex mu;
  std::vector<uint32_t> uids[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      PgStore& store = *replicas[t % 2];
      const int u = (t / 2) % 2;
      for (int i = 0; i < kRounds; ++i) {
        // The same bytes from every thread: one content row, shared by both users,
        // referenced and released over and over.
        std::vector<NewMessage> messages;
        messages.push_back(Message(kSimple));
        absl::StatusOr<v1::AppendResponse> appended =
            store.Append(users[u], "INBOX", std::move(messages));
        ASSERT_TRUE(appended.ok()) << appended.status();
        ASSERT_EQ(appended->uids_size(), 1);
        const uint32_t uid = appended->uids(0);
        {
          std::lock_guard lock(mu);
          uids[u].push_back(uid);
        }
        if (i % 3 == 2) {
          continue;  // some stay
        }
        v1::StoreRequest flag;
        flag.set_mailbox_id(appended->mailbox_id());
        flag.set_uidvalidity(appended->uidvalidity());
        *flag.mutable_uids() = Uids({{uid, uid}});
        flag.set_mode(v1::StoreRequest::ADD);
        flag.add_flags("\\Deleted");
        ASSERT_TRUE(store.StoreFlags(users[u], flag).ok());
        v1::ExpungeRequest expunge;
        expunge.set_mailbox_id(appended->mailbox_id());
        expunge.set_uidvalidity(appended->uidvalidity());
        expunge.set_uids_only(true);
        *expunge.mutable_uids() = Uids({{uid, uid}});
        absl::StatusOr<v1::ExpungeResponse> expunged = store.Expunge(users[u], expunge);
        ASSERT_TRUE(expunged.ok()) << expunged.status();
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  // Every UID of a mailbox was handed out once, with no gap, whichever replica
  // allocated it.
  for (int u = 0; u < 2; ++u) {
    std::vector<uint32_t> got = uids[u];
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got.size(), static_cast<size_t>(kThreads / 2 * kRounds));
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], i + 1);
    }
  }
  // The kept messages are there, each content's count is its references, and
  // content nothing refers to has been dropped.
  EXPECT_EQ(Count("SELECT count(*) FROM messages"), kThreads * (kRounds / 3));
  EXPECT_EQ(Count("SELECT count(*) FROM contents c WHERE refcount <> "
                  "(SELECT count(*) FROM messages m WHERE m.content_id = c.id)"),
            0);
  EXPECT_EQ(Count("SELECT count(*) FROM contents"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM expunged_messages"), 0);
}

// A database of schema version 1 with messages in it, brought to the latest
// version when a store opens it: the messages stay, their save dates are their
// internal dates (none was recorded), and a preview is made on the first
// request that is not LAZY and kept.
TEST(PgSchemaTest, UpgradeFromVersion1KeepsOlderMessages) {
  absl::StatusOr<TestServer> started = TestServer::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  TestServer server = *std::move(started);
  ASSERT_TRUE(server.CreateDatabase("upgrade").ok());
  PgStore::Options options;
  options.conninfo = server.conninfo("upgrade");
  {
    absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(StoreLimits{}, nullptr, options);
    ASSERT_TRUE(store.ok()) << store.status();
    SeedOlderMessage(**store);
  }
  {
    // Back to the shape of version 1, rows and all.
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Open(server.conninfo("upgrade"), Soon());
    ASSERT_TRUE(conn.ok()) << conn.status();
    absl::Status status = (*conn)->Exec(
        absl::StrCat(kUndoMessageSortColumns,
        "DROP TRIGGER mailboxes_metadata ON mailboxes;"
        "DROP FUNCTION mailbox_metadata_gone();"
        "DROP TABLE metadata;"
        "DROP TRIGGER messages_count ON messages;"
        "DROP TRIGGER messages_uncount ON messages;"
        "DROP FUNCTION message_count();"
        "DROP FUNCTION message_uncount();"
        "ALTER TABLE mailboxes DROP COLUMN message_count;"
        "ALTER TABLE mailboxes DROP COLUMN message_octets;"
        "ALTER TABLE users DROP COLUMN quota_storage_kib;"
        "ALTER TABLE users DROP COLUMN quota_messages;"
        "ALTER TABLE messages DROP COLUMN save_date;"
        "ALTER TABLE expunged_messages DROP COLUMN save_date;"
        "ALTER TABLE contents DROP COLUMN preview;"
        "ALTER TABLE users DROP COLUMN scram_sha256;"
        "ALTER TABLE contents DROP COLUMN sort_keys;"
        "UPDATE schema_version SET version = 1"),
        Soon());
    ASSERT_TRUE(status.ok()) << status;
  }
  absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(StoreLimits{}, nullptr, options);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<UserRecord> user = (*store)->FindUser("u");
  ASSERT_TRUE(user.ok()) << user.status();
  v1::OpenResponse box;
  ExpectOlderMessageUpgraded(**store, user->id, &box);
  ExpectOlderMessageCounted(**store, user->id);
  EXPECT_EQ(box.messages(), 1u);
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Open(server.conninfo("upgrade"), Soon());
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::StatusOr<int> version = SchemaVersion(**conn, Soon());
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, LatestSchemaVersion());
}

// The step that adds SCRAM keys, from the version before it: users keep their
// password hash and have no keys (NULL) until the service stores some.
TEST(PgSchemaTest, UpgradeToScramKeysLeavesUsersWithoutKeys) {
  absl::StatusOr<TestServer> started = TestServer::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  TestServer server = *std::move(started);
  ASSERT_TRUE(server.CreateDatabase("scram").ok());
  PgStore::Options options;
  options.conninfo = server.conninfo("scram");
  {
    absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(StoreLimits{}, nullptr, options);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CreateUser("u", "hash").ok());
  }
  {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Open(server.conninfo("scram"), Soon());
    ASSERT_TRUE(conn.ok()) << conn.status();
    absl::Status status = (*conn)->Exec(
        absl::StrCat(kUndoMessageSortColumns,
                     "ALTER TABLE users DROP COLUMN scram_sha256;"
                     "UPDATE schema_version SET version = ",
                     LatestSchemaVersion() - 2),
        Soon());
    ASSERT_TRUE(status.ok()) << status;
  }
  absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(StoreLimits{}, nullptr, options);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<UserRecord> user = (*store)->FindUser("u");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->password_hash, "hash");
  EXPECT_EQ(user->scram_sha256, "");
  ASSERT_TRUE((*store)->SetScramKeys("u", "hash", "SCRAM-SHA-256$keys").ok());
  EXPECT_EQ((*store)->FindUser("u")->scram_sha256, "SCRAM-SHA-256$keys");
}

}  // namespace
}  // namespace mailbox::store::pg
