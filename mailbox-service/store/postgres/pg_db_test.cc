// The libpq layer against a real, private PostgreSQL server (pg_test_server.h).
#include "mailbox-service/store/postgres/pg_db.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/postgres/pg_schema.h"
#include "mailbox-service/store/postgres/pg_test_server.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store::pg {
namespace {

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

class PgDbTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<TestServer> started = TestServer::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = new TestServer(*std::move(started));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  std::unique_ptr<Connection> Connect() {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Open(server_->conninfo(), Soon());
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  static TestServer* server_;
};

TestServer* PgDbTest::server_ = nullptr;

TEST_F(PgDbTest, ParametersAndResultsRoundTripInBinary) {
  std::unique_ptr<Connection> conn = Connect();
  ASSERT_NE(conn, nullptr);
  const std::string bytes("a\0b\xff", 4);
  absl::StatusOr<Result> result = conn->Query(
      "SELECT $1::int8, $2::text, $3::bytea, $4::bool, $5::int8 IS NULL, 7::int2, "
      "-9::int4",
      Params().Int(-1234567890123).Text("Grüße").Bytes(bytes).Bool(true).Null(), Soon());
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows(), 1);
  EXPECT_EQ(result->Int(0, 0), -1234567890123);
  EXPECT_EQ(result->Bytes(0, 1), "Grüße");
  EXPECT_EQ(result->Bytes(0, 2), bytes);
  EXPECT_TRUE(result->Bool(0, 3));
  EXPECT_TRUE(result->Bool(0, 4));
  EXPECT_EQ(result->Int(0, 5), 7);
  EXPECT_EQ(result->Int(0, 6), -9);
}

TEST_F(PgDbTest, QueriesArePreparedOncePerConnectionWithinABound) {
  std::unique_ptr<Connection> conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto prepared = [&conn]() {
    absl::StatusOr<Result> count =
        conn->Query("SELECT count(*)::int8 FROM pg_prepared_statements", Soon());
    EXPECT_TRUE(count.ok()) << count.status();
    return count.ok() ? count->Int(0, 0) : -1;
  };
  const int64_t before = prepared();  // the count query itself
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Result> same = conn->Query("SELECT $1::int8 + 1", Params().Int(i), Soon());
    ASSERT_TRUE(same.ok()) << same.status();
    EXPECT_EQ(same->Int(0, 0), i + 1);
  }
  EXPECT_EQ(prepared(), before + 1);
  // The same text with a parameter of another type is a statement of its own.
  absl::StatusOr<Result> null =
      conn->Query("SELECT $1::int8 IS NULL", Params().Null(), Soon());
  ASSERT_TRUE(null.ok()) << null.status();
  absl::StatusOr<Result> number =
      conn->Query("SELECT $1::int8 IS NULL", Params().Int(5), Soon());
  ASSERT_TRUE(number.ok()) << number.status();
  EXPECT_TRUE(null->Bool(0, 0));
  EXPECT_FALSE(number->Bool(0, 0));
  EXPECT_EQ(prepared(), before + 3);
  // Past the bound, queries still run, unnamed.
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<Result> distinct =
        conn->Query(absl::StrCat("SELECT $1::int8 * ", i), Params().Int(2), Soon());
    ASSERT_TRUE(distinct.ok()) << distinct.status();
    EXPECT_EQ(distinct->Int(0, 0), 2 * i);
  }
  EXPECT_EQ(prepared(), 256);
  // A failed prepare leaves the connection usable and names nothing twice.
  std::unique_ptr<Connection> fresh = Connect();
  ASSERT_NE(fresh, nullptr);
  EXPECT_FALSE(fresh->Query("SELECT $1::int8 FROM missing_table", Params().Int(1), Soon()).ok());
  absl::StatusOr<Result> after = fresh->Query("SELECT $1::int8", Params().Int(9), Soon());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->Int(0, 0), 9);
}

TEST_F(PgDbTest, ErrorsCarryTheirSqlStateAndMeaning) {
  std::unique_ptr<Connection> conn = Connect();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Exec("CREATE TABLE uniq (k int8 PRIMARY KEY)", Soon()).ok());
  ASSERT_TRUE(conn->Query("INSERT INTO uniq VALUES ($1)", Params().Int(1), Soon()).ok());
  absl::StatusOr<Result> again =
      conn->Query("INSERT INTO uniq VALUES ($1)", Params().Int(1), Soon());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(SqlStateOf(again.status()), "23505");

  absl::StatusOr<Result> bad = conn->Query("SELECT * FROM no_such_table", Soon());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(v1::DetailOf(bad.status()).code(), v1::SERVER_BUG);
  EXPECT_NE(bad.status().message().find("no_such_table"), std::string::npos);
  EXPECT_FALSE(conn->broken());
  // The connection still serves after errors.
  absl::StatusOr<Result> count = conn->Query("SELECT count(*) FROM uniq", Soon());
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->Int(0, 0), 1);
  ASSERT_TRUE(conn->Exec("DROP TABLE uniq", Soon()).ok());
}

TEST_F(PgDbTest, AQueryPastItsDeadlineIsCancelledAndTheConnectionServesOn) {
  std::unique_ptr<Connection> conn = Connect();
  ASSERT_NE(conn, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<Result> slow =
      conn->Query("SELECT pg_sleep(30)", absl::Now() + absl::Milliseconds(300));
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded) << slow.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(conn->broken());
  absl::StatusOr<Result> next = conn->Query("SELECT 1::int8", Soon());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->Int(0, 0), 1);
}

TEST_F(PgDbTest, ThePoolIsBoundedAndRollsBackWhatACallerLeftOpen) {
  Pool pool(server_->conninfo(), 2);
  {
    absl::StatusOr<Pool::Lease> first = pool.Acquire(Soon());
    absl::StatusOr<Pool::Lease> second = pool.Acquire(Soon());
    ASSERT_TRUE(first.ok() && second.ok());
    ASSERT_TRUE((*first)->Exec("BEGIN", Soon()).ok());
    absl::StatusOr<Pool::Lease> third = pool.Acquire(absl::Now() + absl::Milliseconds(200));
    EXPECT_EQ(third.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(third.status().message().find("2 PostgreSQL connections"), std::string::npos);
    EXPECT_EQ(pool.open_connections(), 2);
  }
  // A waiter gets the connection another returns.
  absl::StatusOr<Pool::Lease> held = pool.Acquire(Soon());
  absl::StatusOr<Pool::Lease> other = pool.Acquire(Soon());
  ASSERT_TRUE(held.ok() && other.ok());
  EXPECT_TRUE((*held)->idle());
  EXPECT_TRUE((*other)->idle());
  std::thread releaser([lease = std::move(*held)]() mutable {
    absl::SleepFor(absl::Milliseconds(100));
    Pool::Lease gone = std::move(lease);
  });
  absl::StatusOr<Pool::Lease> waited = pool.Acquire(Soon());
  EXPECT_TRUE(waited.ok()) << waited.status();
  releaser.join();
  EXPECT_EQ(pool.open_connections(), 2);
}

TEST_F(PgDbTest, NotificationsReachAListener) {
  std::unique_ptr<Connection> listener = Connect();
  std::unique_ptr<Connection> sender = Connect();
  ASSERT_NE(listener, nullptr);
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(listener->Exec("LISTEN changes", Soon()).ok());
  absl::StatusOr<std::vector<Notification>> none =
      listener->WaitForNotifications(absl::Now() + absl::Milliseconds(100));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(sender->Query("SELECT pg_notify('changes', $1)", Params().Text("42"), Soon()).ok());
  absl::StatusOr<std::vector<Notification>> got = listener->WaitForNotifications(Soon());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].channel, "changes");
  EXPECT_EQ((*got)[0].payload, "42");
}

TEST_F(PgDbTest, MigrationsRunOnceEvenFromReplicasStartingTogether) {
  ASSERT_TRUE(server_->CreateDatabase("schema_test").ok());
  std::vector<std::thread> replicas;
  std::vector<absl::Status> results(3);
  for (int i = 0; i < 3; ++i) {
    replicas.emplace_back([&, i] {
      absl::StatusOr<std::unique_ptr<Connection>> conn =
          Connection::Open(server_->conninfo("schema_test"), Soon());
      results[i] = conn.ok() ? Migrate(**conn, LatestSchemaVersion(), Soon()) : conn.status();
    });
  }
  for (std::thread& replica : replicas) {
    replica.join();
  }
  for (const absl::Status& result : results) {
    EXPECT_TRUE(result.ok()) << result;
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Open(server_->conninfo("schema_test"), Soon());
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ(*SchemaVersion(**conn, Soon()), LatestSchemaVersion());
  absl::StatusOr<Result> rows = (*conn)->Query("SELECT count(*) FROM schema_version", Soon());
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->Int(0, 0), 1);
  // The triggers count content references.
  ASSERT_TRUE(
      (*conn)
          ->Exec("INSERT INTO users VALUES (1, 'u', 'h');"
                 "INSERT INTO mailboxes (id, user_id, name, uidvalidity) "
                 "VALUES (1, 1, 'INBOX', 1);"
                 "INSERT INTO contents (id, sha256, size, parsed, envelope, body, "
                 "bodystructure, header_size) VALUES (1, 'x', 1, '', '', '', '', 0);"
                 "INSERT INTO messages (mailbox_id, uid, content_id, modseq, "
                 "internal_date, internal_tz) VALUES (1, 1, 1, 2, 0, 0), (1, 2, 1, 3, 0, 0)",
                 Soon())
          .ok());
  absl::StatusOr<Result> refs = (*conn)->Query("SELECT refcount FROM contents", Soon());
  ASSERT_TRUE(refs.ok());
  EXPECT_EQ(refs->Int(0, 0), 2);
  // A database from a newer binary is refused, not changed.
  ASSERT_TRUE((*conn)->Exec("UPDATE schema_version SET version = 999", Soon()).ok());
  absl::Status newer = Migrate(**conn, LatestSchemaVersion(), Soon());
  EXPECT_EQ(newer.code(), absl::StatusCode::kFailedPrecondition) << newer;
  EXPECT_NE(newer.message().find("newer"), std::string::npos);
}

// Last: it restarts the server under the suite's other connections.
TEST_F(PgDbTest, ZRestartCostsTheCallsInFlightAndThePoolRecovers) {
  Pool pool(server_->conninfo(), 2);
  {
    absl::StatusOr<Pool::Lease> lease = pool.Acquire(Soon());
    ASSERT_TRUE(lease.ok());
    ASSERT_TRUE(server_->Restart().ok());
    absl::StatusOr<Result> lost = (*lease)->Query("SELECT 1::int8", Soon());
    EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << lost.status();
    EXPECT_EQ(v1::DetailOf(lost.status()).code(), v1::UNAVAILABLE);
    EXPECT_TRUE((*lease)->broken());
  }
  EXPECT_EQ(pool.open_connections(), 0);
  ASSERT_TRUE(server_->Stop().ok());
  absl::StatusOr<Pool::Lease> down = pool.Acquire(Soon());
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  ASSERT_TRUE(server_->Restart().ok());
  absl::StatusOr<Pool::Lease> back = pool.Acquire(Soon());
  ASSERT_TRUE(back.ok()) << back.status();
  absl::StatusOr<Result> answer = (*back)->Query("SELECT 2::int8", Soon());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->Int(0, 0), 2);
}

}  // namespace
}  // namespace mailbox::store::pg
