// The store conformance suite: what every backend of the Store interface must do,
// run against each backend (typed tests). A backend is added to StoreBackends
// below with a policy that opens a store on a private database (the same one
// again after a reopen) and counts rows with SQL; every backend keeps the logical
// tables the counts name (users, mailboxes, messages, contents, content_data,
// expunged_messages, changes, auth_failures).
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/postgres/pg_db.h"
#include "mailbox-service/store/postgres/pg_store.h"
#include "mailbox-service/store/postgres/pg_test_server.h"
#include "mailbox-service/store/sqlite_db.h"
#include "mailbox-service/store/sqlite_store.h"
#include "mailbox-service/store/store.h"
#include "mailbox-service/store/store_test_util.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// --- Backends ---------------------------------------------------------------------

class SqliteBackend {
 public:
  explicit SqliteBackend(const std::string& test_name) : path_(TempPath(test_name + ".db")) {}

  absl::StatusOr<std::unique_ptr<Store>> Open(const StoreLimits& limits, EventSink events,
                                              const StoreOptions& options) {
    SqliteStore::Options sqlite_options;
    static_cast<StoreOptions&>(sqlite_options) = options;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(path_, limits, std::move(events), sqlite_options);
    if (!store.ok()) {
      return store.status();
    }
    return std::unique_ptr<Store>(*std::move(store));
  }

  int64_t CountRows(const std::string& sql) {
    auto conn = sqlite::Connection::Open(path_, true);
    EXPECT_TRUE(conn.ok());
    auto stmt = (*conn)->Prepare(sql.c_str());  // a fresh connection: no stale cache key
    EXPECT_TRUE(stmt.ok()) << stmt.status();
    auto row = stmt->Step();
    EXPECT_TRUE(row.ok() && *row);
    return stmt->Int(0);
  }

  // Runs a statement that returns no rows (tests that make rows look older).
  void Exec(const std::string& sql) {
    auto conn = sqlite::Connection::Open(path_, false);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)->Exec(sql.c_str()).ok()) << sql;
  }

  absl::Status FlushEvents(Store&) { return absl::OkStatus(); }  // delivered at commit

 private:
  std::string path_;
};

// One private PostgreSQL server for the whole test program, stopped at its end.
class PgServerEnvironment : public ::testing::Environment {
 public:
  static absl::StatusOr<pg::TestServer*> Get() {
    if (server_ == nullptr) {
      absl::StatusOr<pg::TestServer> started = pg::TestServer::Start();
      if (!started.ok()) {
        return started.status();
      }
      server_ = new pg::TestServer(*std::move(started));
    }
    return server_;
  }
  void TearDown() override {
    delete server_;
    server_ = nullptr;
  }

 private:
  static pg::TestServer* server_;
};
pg::TestServer* PgServerEnvironment::server_ = nullptr;
[[maybe_unused]] ::testing::Environment* const kPgEnvironment =
    ::testing::AddGlobalTestEnvironment(new PgServerEnvironment);

// Each test gets a database of its own on the shared server.
class PgBackend {
 public:
  explicit PgBackend(const std::string&) {
    static int databases = 0;
    dbname_ = absl::StrCat("conformance_", ++databases);
    absl::StatusOr<pg::TestServer*> server = PgServerEnvironment::Get();
    if (!server.ok()) {
      ready_ = server.status();
      return;
    }
    server_ = *server;
    ready_ = server_->CreateDatabase(dbname_);
  }

  absl::StatusOr<std::unique_ptr<Store>> Open(const StoreLimits& limits, EventSink events,
                                              const StoreOptions& options) {
    if (!ready_.ok()) {
      return ready_;
    }
    pg::PgStore::Options pg_options;
    static_cast<StoreOptions&>(pg_options) = options;
    pg_options.conninfo = server_->conninfo(dbname_);
    pg_options.max_connections = 8;
    absl::StatusOr<std::unique_ptr<pg::PgStore>> store =
        pg::PgStore::Open(limits, std::move(events), pg_options);
    if (!store.ok()) {
      return store.status();
    }
    return std::unique_ptr<Store>(*std::move(store));
  }

  int64_t CountRows(const std::string& sql) {
    auto conn = pg::Connection::Open(server_->conninfo(dbname_), absl::Now() + absl::Seconds(10));
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) {
      return -1;
    }
    auto result = (*conn)->Query(sql, absl::Now() + absl::Seconds(10));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok() || result->rows() == 0) {
      return -1;
    }
    return result->Int(0, 0);
  }

  void Exec(const std::string& sql) {
    auto conn = pg::Connection::Open(server_->conninfo(dbname_), absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)->Exec(sql, absl::Now() + absl::Seconds(10)).ok()) << sql;
  }

  absl::Status FlushEvents(Store& store) {
    return static_cast<pg::PgStore&>(store).FlushEvents(absl::Seconds(10));
  }

 private:
  absl::Status ready_;
  pg::TestServer* server_ = nullptr;
  std::string dbname_;
};

template <typename Backend>
class StoreConformanceTest : public ::testing::Test {
 protected:
  StoreConformanceTest()
      : backend_(::testing::UnitTest::GetInstance()->current_test_info()->name()) {}

  void SetUp() override {
    Reopen();
    absl::StatusOr<uint64_t> user = store_->CreateUser("alice", "hash");
    ASSERT_TRUE(user.ok()) << user.status();
    user_ = *user;
  }

  void Reopen(StoreOptions options = {}) {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store = backend_.Open(
        limits_,
        [this](const v1::ChangeEvent& e) {
          std::lock_guard<std::mutex> lock(events_mutex_);
          events_.push_back(e);
        },
        options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  int64_t CountRows(const std::string& sql) { return backend_.CountRows(sql); }
  void Exec(const std::string& sql) { backend_.Exec(sql); }

  // The metadata FETCH returns for `uids` of `box` with SAVEDATE, INTERNALDATE
  // and PREVIEW (LAZY if `lazy`).
  std::vector<v1::FetchedMetadata> FetchDates(const v1::OpenResponse& box,
                                              std::vector<std::pair<uint32_t, uint32_t>> uids,
                                              bool lazy = false, bool include_expunged = false) {
    v1::FetchRequest request;
    request.set_mailbox_id(box.mailbox_id());
    request.set_uidvalidity(box.uidvalidity());
    *request.mutable_uids() = Uids(std::move(uids));
    request.set_internal_date(true);
    request.set_save_date(true);
    request.set_preview(true);
    request.set_preview_lazy(lazy);
    request.set_include_expunged(include_expunged);
    CollectingSink sink;
    absl::Status fetched = store_->Fetch(user_, request, sink);
    EXPECT_TRUE(fetched.ok()) << fetched;
    return sink.Metadata();
  }

  std::vector<uint32_t> SearchUids(const v1::OpenResponse& box, const v1::SearchKey& key) {
    v1::SearchRequest request;
    request.set_mailbox_id(box.mailbox_id());
    request.set_uidvalidity(box.uidvalidity());
    *request.mutable_key() = key;
    absl::StatusOr<v1::SearchResponse> response = store_->Search(user_, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? Expand(response->uids()) : std::vector<uint32_t>{};
  }

  // The events the sink received for every change committed so far (a backend that
  // delivers them from another thread is waited for).
  std::vector<v1::ChangeEvent> Events() {
    EXPECT_TRUE(backend_.FlushEvents(*store_).ok());
    std::lock_guard<std::mutex> lock(events_mutex_);
    return events_;
  }
  void ClearEvents() {
    EXPECT_TRUE(backend_.FlushEvents(*store_).ok());
    std::lock_guard<std::mutex> lock(events_mutex_);
    events_.clear();
  }

  v1::OpenResponse OpenBox(const std::string& name, bool read_only = false) {
    v1::OpenRequest request;
    request.set_name(name);
    request.set_read_only(read_only);
    absl::StatusOr<v1::OpenResponse> response = store_->Open(user_, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::OpenResponse();
  }

  v1::StatusResponse StatusOf(const std::string& name) {
    v1::StatusRequest request;
    request.set_name(name);
    absl::StatusOr<v1::StatusResponse> response = store_->Status(user_, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::StatusResponse();
  }

  absl::Status Create(const std::string& name) {
    v1::CreateMailboxRequest request;
    request.set_name(name);
    return store_->CreateMailbox(user_, request).status();
  }

  std::vector<uint32_t> AppendSome(const std::string& mailbox, int n,
                                   std::vector<std::string> flags = {}) {
    std::vector<NewMessage> messages;
    for (int i = 0; i < n; ++i) {
      messages.push_back(
          Message(absl::StrCat(kSimple, "message ", i, " to ", mailbox, "\r\n"), flags));
    }
    absl::StatusOr<v1::AppendResponse> response =
        store_->Append(user_, mailbox, std::move(messages));
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? std::vector<uint32_t>(response->uids().begin(), response->uids().end())
                         : std::vector<uint32_t>{};
  }

  std::map<std::string, std::vector<std::string>> List(std::vector<std::string> patterns,
                                                       bool subscribed_only = false) {
    v1::ListMailboxesRequest request;
    for (auto& p : patterns) {
      request.add_patterns(p);
    }
    request.set_subscribed_only(subscribed_only);
    absl::StatusOr<v1::ListMailboxesResponse> response = store_->ListMailboxes(user_, request);
    EXPECT_TRUE(response.ok()) << response.status();
    std::map<std::string, std::vector<std::string>> out;
    if (response.ok()) {
      EXPECT_EQ(response->delimiter(), "/");
      for (const auto& info : response->mailboxes()) {
        out[info.name()] = {info.attributes().begin(), info.attributes().end()};
      }
    }
    return out;
  }

  // Sets \Deleted on `uids` and expunges them.
  void DeleteAndExpunge(const v1::OpenResponse& box, const v1::UidSet& uids) {
    v1::StoreRequest store;
    store.set_mailbox_id(box.mailbox_id());
    store.set_uidvalidity(box.uidvalidity());
    *store.mutable_uids() = uids;
    store.set_mode(v1::StoreRequest::ADD);
    store.add_flags("\\Deleted");
    ASSERT_TRUE(store_->StoreFlags(user_, store).ok());
    v1::ExpungeRequest expunge;
    expunge.set_mailbox_id(box.mailbox_id());
    expunge.set_uidvalidity(box.uidvalidity());
    expunge.set_uids_only(true);
    *expunge.mutable_uids() = uids;
    auto expunged = store_->Expunge(user_, expunge);
    ASSERT_TRUE(expunged.ok()) << expunged.status();
  }

  // Options whose clock is `now_`, which a test moves.
  StoreOptions ClockedOptions() {
    StoreOptions options;
    options.clock = [this] { return now_; };
    return options;
  }

  Backend backend_;
  StoreLimits limits_;
  std::chrono::system_clock::time_point now_ = std::chrono::system_clock::now();
  std::mutex events_mutex_;
  std::vector<v1::ChangeEvent> events_;  // guarded by events_mutex_
  std::unique_ptr<Store> store_;
  uint64_t user_ = 0;
};

using StoreBackends = ::testing::Types<SqliteBackend, PgBackend>;
TYPED_TEST_SUITE(StoreConformanceTest, StoreBackends);

// --- Users -----------------------------------------------------------------------

// SCRAM keys live beside the hash they were made with: stored only while the hash
// is that one, dropped when it changes.
TYPED_TEST(StoreConformanceTest, ScramKeysFollowThePasswordHash) {
  const std::string hash = this->store_->FindUser("alice")->password_hash;
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "");
  ASSERT_TRUE(this->store_->SetScramKeys("alice", "not the hash", "keys-0").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "");
  ASSERT_TRUE(this->store_->SetScramKeys("alice", hash, "keys-1").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "keys-1");
  EXPECT_EQ(this->store_->FindUserById(this->user_)->scram_sha256, "keys-1");
  EXPECT_EQ(this->store_->ListUsers()->front().scram_sha256, "keys-1");
  ASSERT_TRUE(this->store_->SetPasswordHash("alice", "new").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "");
  ASSERT_TRUE(this->store_->SetScramKeys("alice", hash, "keys-old").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "");
  ASSERT_TRUE(this->store_->SetScramKeys("alice", "new", "keys-2").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->scram_sha256, "keys-2");
  // Nobody to store them for is not an error.
  EXPECT_TRUE(this->store_->SetScramKeys("nobody", "new", "keys").ok());
}

TYPED_TEST(StoreConformanceTest, Users) {
  EXPECT_EQ(CodeOf(this->store_->CreateUser("alice", "x").status()), v1::ALREADYEXISTS);
  EXPECT_EQ(CodeOf(this->store_->CreateUser("", "x").status()), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->store_->CreateUser("bad\xff", "x").status()), v1::BAD_REQUEST);
  auto bob = this->store_->CreateUser("Alice", "h2");  // case-sensitive: a different user
  ASSERT_TRUE(bob.ok());
  EXPECT_NE(*bob, this->user_);
  EXPECT_EQ(this->store_->FindUser("alice")->id, this->user_);
  EXPECT_EQ(this->store_->FindUserById(*bob)->username, "Alice");
  EXPECT_EQ(this->store_->FindUser("nobody").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(this->store_->SetPasswordHash("alice", "new").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->password_hash, "new");
  EXPECT_EQ(this->store_->ListUsers()->size(), 2u);
  // CreateUser made an INBOX.
  EXPECT_EQ(this->OpenBox("INBOX").messages(), 0u);

  this->AppendSome("INBOX", 2);
  ASSERT_TRUE(this->store_->DeleteUser("alice").ok());
  EXPECT_EQ(this->store_->FindUser("alice").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->DeleteUser("alice").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM mailboxes WHERE user_id = 1"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM content_data"), 0);
}

TYPED_TEST(StoreConformanceTest, AuthFailuresAndSecrets) {
  EXPECT_EQ(*this->store_->RecordAuthFailure("ip:1", 1000, 500), 1);
  EXPECT_EQ(*this->store_->RecordAuthFailure("ip:1", 1200, 500), 2);
  EXPECT_EQ(*this->store_->RecordAuthFailure("ip:1", 1600, 500), 2);  // 1000 fell out
  auto failures = this->store_->AuthFailures("ip:1", 1700, 500);
  ASSERT_TRUE(failures.ok());
  EXPECT_EQ(failures->first, 2);
  EXPECT_EQ(failures->second, 1600);
  ASSERT_TRUE(this->store_->ClearAuthFailures("ip:1").ok());
  EXPECT_EQ(this->store_->AuthFailures("ip:1", 1700, 500)->first, 0);

  EXPECT_EQ(*this->store_->GetOrCreateSecret("k", "first"), "first");
  EXPECT_EQ(*this->store_->GetOrCreateSecret("k", "second"), "first");
}

TYPED_TEST(StoreConformanceTest, PasswordChangesBumpTheCredentialGeneration) {
  const uint64_t before = this->store_->FindUser("alice")->credential_generation;
  ASSERT_TRUE(this->store_->SetPasswordHash("alice", "new").ok());
  EXPECT_EQ(this->store_->FindUser("alice")->credential_generation, before + 1);
  EXPECT_EQ(this->store_->FindUserById(this->user_)->credential_generation, before + 1);
}

TYPED_TEST(StoreConformanceTest, APasswordChangeTellsTheFeedsOfEveryMailboxOfTheUser) {
  ASSERT_TRUE(this->Create("Archive").ok());
  const int64_t mailboxes = this->CountRows(
      absl::StrCat("SELECT count(*) FROM mailboxes WHERE user_id = ", this->user_).c_str());
  ASSERT_GE(mailboxes, 2);
  this->ClearEvents();
  ASSERT_TRUE(this->store_->SetPasswordHash("alice", "new").ok());
  // One per mailbox, and one for the user's mailbox list (NOTIFY's MailboxName).
  ASSERT_EQ(static_cast<int64_t>(this->Events().size()), mailboxes + 1);
  for (const v1::ChangeEvent& event : this->Events()) {
    ASSERT_TRUE(event.has_resync());
    EXPECT_EQ(event.resync().reason().code(), v1::AUTHENTICATIONFAILED);
    EXPECT_EQ(event.modseq(), 0u);  // not a change of the mailbox
  }
  EXPECT_EQ(this->Events().back().mailbox_id(), 0u);
  EXPECT_EQ(this->Events().back().user_id(), this->user_);
}

Store::AuthAttemptLimits AuthLimits(int64_t window_ms, int64_t max_rows,
                                    int64_t max_rows_per_address = 1'000'000) {
  Store::AuthAttemptLimits limits;
  limits.window_ms = window_ms;
  limits.max_rows = max_rows;
  limits.max_rows_per_address = max_rows_per_address;
  return limits;
}

TYPED_TEST(StoreConformanceTest, AuthReservationsCountAtOnceAndAreReleasedOrKept) {
  auto allow_two = [](const std::vector<AuthAttemptState>& states) -> int64_t {
    return states[0].failures >= 2 ? 5000 : 0;
  };
  const auto limits = AuthLimits(500, 100);
  auto first = this->store_->ReserveAuthAttempt({"pair:a", "ip:1"}, "1", 1000, limits, allow_two);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->retry_after_ms, 0);
  EXPECT_EQ(first->rows.size(), 2u);
  auto second = this->store_->ReserveAuthAttempt({"pair:a", "ip:1"}, "1", 1000, limits, allow_two);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->retry_after_ms, 0);
  // Two in flight: the third is refused and records nothing.
  auto third = this->store_->ReserveAuthAttempt({"pair:a", "ip:1"}, "1", 1000, limits, allow_two);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->retry_after_ms, 5000);
  EXPECT_TRUE(third->rows.empty());
  EXPECT_EQ(this->store_->AuthFailures("ip:1", 1000, 500)->first, 2);
  // An attempt that read the clock earlier, before waiting its turn, still sees them.
  auto late = this->store_->ReserveAuthAttempt({"pair:a", "ip:1"}, "1", 990, limits, allow_two);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->retry_after_ms, 5000);
  // The first turned out right: released. The second stays as a failure.
  ASSERT_TRUE(this->store_->ReleaseAuthAttempt(first->rows).ok());
  EXPECT_EQ(this->store_->AuthFailures("pair:a", 1000, 500)->first, 1);
  EXPECT_EQ(this->store_->AuthFailures("ip:1", 1000, 500)->first, 1);
}

TYPED_TEST(StoreConformanceTest, AuthRecordsArePrunedAcrossKeys) {
  auto allow = [](const std::vector<AuthAttemptState>&) -> int64_t { return 0; };
  // Keys that never repeat (a new IP each time): their old rows still go.
  for (int i = 0; i < 50; ++i) {
    const std::string address = absl::StrCat("old", i);
    ASSERT_TRUE(this->store_
                    ->ReserveAuthAttempt({absl::StrCat("ip:", address)}, address, 1000,
                                         AuthLimits(500, 1000), allow)
                    .ok());
  }
  ASSERT_TRUE(
      this->store_->ReserveAuthAttempt({"ip:new"}, "new", 2000, AuthLimits(500, 1000), allow).ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM auth_failures"), 1);
}

TYPED_TEST(StoreConformanceTest, AnAddressIsCappedAndAFullTableCostsOnlyTheLargestHolder) {
  auto allow = [](const std::vector<AuthAttemptState>&) -> int64_t { return 0; };
  auto attempt = [&](const std::string& address, int64_t now_ms,
                     const Store::AuthAttemptLimits& limits) {
    auto reservation = this->store_->ReserveAuthAttempt(
        {absl::StrCat("pair:", address, ":u"), absl::StrCat("ip:", address)}, address, now_ms,
        limits, allow);
    EXPECT_TRUE(reservation.ok()) << reservation.status();
    return reservation.ok() ? *reservation : AuthReservation{};
  };
  // Per address: 6 rows (3 attempts) and the fourth waits until the first leaves
  // the window.
  const auto capped = AuthLimits(5000, 1000, 6);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(attempt("a", 1000 + i, capped).retry_after_ms, 0);
  }
  AuthReservation refused = attempt("a", 1100, capped);
  EXPECT_EQ(refused.retry_after_ms, 1000 + 5000 - 1100);
  EXPECT_TRUE(refused.rows.empty());
  EXPECT_EQ(attempt("b", 1100, capped).retry_after_ms, 0);  // other addresses unaffected

  ASSERT_TRUE(this->store_->ClearAuthFailures("pair:a:u").ok());
  ASSERT_TRUE(this->store_->ClearAuthFailures("ip:a").ok());
  ASSERT_TRUE(this->store_->ClearAuthFailures("pair:b:u").ok());
  ASSERT_TRUE(this->store_->ClearAuthFailures("ip:b").ok());
  // 12 rows in all. "early" records first, then "flood" holds the most.
  const auto full = AuthLimits(5000, 12);
  EXPECT_EQ(attempt("early", 2000, full).retry_after_ms, 0);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(attempt("flood", 2001 + i, full).retry_after_ms, 0);
  }
  EXPECT_EQ(attempt("other", 2010, full).retry_after_ms, 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM auth_failures"), 12);
  // Full: the largest holder is refused ...
  AuthReservation flood = attempt("flood", 2020, full);
  EXPECT_GT(flood.retry_after_ms, 0);
  EXPECT_TRUE(flood.rows.empty());
  // ... and another address's attempt takes the place of the flood's oldest rows,
  // not of the oldest rows in the table ("early"'s).
  EXPECT_EQ(attempt("late", 2030, full).retry_after_ms, 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM auth_failures"), 12);
  EXPECT_EQ(this->store_->AuthFailures("ip:early", 2030, 5000)->first, 1);
  EXPECT_EQ(this->store_->AuthFailures("ip:other", 2030, 5000)->first, 1);
  EXPECT_EQ(this->store_->AuthFailures("ip:late", 2030, 5000)->first, 1);
  EXPECT_EQ(this->store_->AuthFailures("ip:flood", 2030, 5000)->first, 3);
}

TYPED_TEST(StoreConformanceTest, ReleasingAReservationWhoseRowsWentNeverDeletesANewerAttempt) {
  auto allow = [](const std::vector<AuthAttemptState>&) -> int64_t { return 0; };
  auto old =
      this->store_->ReserveAuthAttempt({"pair:x", "ip:x"}, "x", 1000, AuthLimits(500, 100), allow);
  ASSERT_TRUE(old.ok());
  // The old attempt's rows leave the window (pruned by this later attempt) while
  // its password is still being checked; the newer attempt is recorded after.
  auto newer =
      this->store_->ReserveAuthAttempt({"pair:y", "ip:y"}, "y", 2000, AuthLimits(500, 100), allow);
  ASSERT_TRUE(newer.ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM auth_failures"), 2);
  // A reused row id would make this delete the newer attempt's rows.
  ASSERT_TRUE(this->store_->ReleaseAuthAttempt(old->rows).ok());
  EXPECT_EQ(this->store_->AuthFailures("pair:y", 2000, 500)->first, 1);
  EXPECT_EQ(this->store_->AuthFailures("ip:y", 2000, 500)->first, 1);
}

TYPED_TEST(StoreConformanceTest, SecretsCanBeFoundAndDeleted) {
  EXPECT_EQ(this->store_->FindSecret("k").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(this->store_->GetOrCreateSecret("k", "v").ok());
  EXPECT_EQ(*this->store_->FindSecret("k"), "v");
  ASSERT_TRUE(this->store_->DeleteSecret("k").ok());
  ASSERT_TRUE(this->store_->DeleteSecret("k").ok());
  EXPECT_EQ(this->store_->FindSecret("k").status().code(), absl::StatusCode::kNotFound);
}

// --- Mailboxes -----------------------------------------------------------------------

TYPED_TEST(StoreConformanceTest, CreateMakesSuperiorsAndListMatchesPatterns) {
  ASSERT_TRUE(this->Create("a/b/c").ok());
  ASSERT_TRUE(this->Create("x").ok());
  EXPECT_EQ(CodeOf(this->Create("a/b")), v1::ALREADYEXISTS);
  EXPECT_EQ(CodeOf(this->Create("inbox")), v1::ALREADYEXISTS);
  EXPECT_TRUE(this->Create("y/").ok());  // trailing delimiter is dropped (RFC 3501 §6.3.3)

  auto all = this->List({"*"});
  EXPECT_THAT(all["INBOX"], ElementsAre("\\HasNoChildren"));
  EXPECT_THAT(all["a"], ElementsAre("\\HasChildren"));
  EXPECT_THAT(all["a/b"], ElementsAre("\\HasChildren"));
  EXPECT_THAT(all["a/b/c"], ElementsAre("\\HasNoChildren"));
  EXPECT_EQ(all.size(), 6u);
  EXPECT_EQ(all.count("y"), 1u);

  std::vector<std::string> top;
  for (auto& [name, attrs] : this->List({"%"})) {
    top.push_back(name);
  }
  EXPECT_THAT(top, ElementsAre("INBOX", "a", "x", "y"));
  std::vector<std::string> under;
  for (auto& [name, attrs] : this->List({"a/%"})) {
    under.push_back(name);
  }
  EXPECT_THAT(under, ElementsAre("a/b"));
  EXPECT_EQ(this->List({"inBox"}).count("INBOX"), 1u);
  ASSERT_TRUE(this->Create("x y").ok());  // sorts between "x" and any "x/..."
  ASSERT_TRUE(this->Create("x/z").ok());
  EXPECT_THAT(this->List({"x"})["x"], ElementsAre("\\HasChildren"));
  EXPECT_EQ(this->List({"a*c"}).size(), 1u);
  EXPECT_EQ(this->List({"a%c"}).size(), 0u);
}

TYPED_TEST(StoreConformanceTest, NewUsersGetTheDefaultMailboxesSubscribed) {
  StoreOptions options;
  options.default_mailboxes = {{"Sent", "\\Sent"}, {"Trash", "\\Trash"}};
  this->Reopen(options);
  auto carol = this->store_->CreateUser("carol", "h");
  ASSERT_TRUE(carol.ok()) << carol.status();
  v1::ListMailboxesRequest list;
  list.set_subscribed_only(true);
  auto response = this->store_->ListMailboxes(*carol, list);
  ASSERT_TRUE(response.ok()) << response.status();
  std::map<std::string, std::vector<std::string>> uses;
  for (const auto& info : response->mailboxes()) {
    uses[info.name()] = {info.special_use().begin(), info.special_use().end()};
  }
  EXPECT_THAT(uses, ElementsAre(::testing::Pair("Sent", ElementsAre("\\Sent")),
                                ::testing::Pair("Trash", ElementsAre("\\Trash"))));
  v1::OpenRequest open;
  open.set_name("Trash");
  EXPECT_TRUE(this->store_->Open(*carol, open).ok());
}

TYPED_TEST(StoreConformanceTest, SpecialUseAndStatus) {
  v1::CreateMailboxRequest request;
  request.set_name("Sent");
  request.add_special_use("\\Sent");
  ASSERT_TRUE(this->store_->CreateMailbox(this->user_, request).ok());
  v1::ListMailboxesRequest list;
  auto response = this->store_->ListMailboxes(this->user_, list);
  ASSERT_TRUE(response.ok());
  bool found = false;
  for (const auto& info : response->mailboxes()) {
    if (info.name() == "Sent") {
      found = true;
      EXPECT_THAT(info.special_use(), ElementsAre("\\Sent"));
    }
  }
  EXPECT_TRUE(found);
  request.set_name("Odd");
  request.clear_special_use();
  request.add_special_use("\\Bogus");
  EXPECT_EQ(CodeOf(this->store_->CreateMailbox(this->user_, request).status()), v1::BAD_REQUEST);

  this->AppendSome("Sent", 3, {"\\Seen"});
  this->AppendSome("Sent", 1, {"\\Deleted"});
  v1::StatusRequest status_request;
  status_request.set_name("Sent");
  auto status = this->store_->Status(this->user_, status_request);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->messages(), 4u);
  EXPECT_EQ(status->unseen(), 1u);
  EXPECT_EQ(status->deleted(), 1u);
  EXPECT_EQ(status->uidnext(), 5u);
  EXPECT_EQ(status->recent(), 4u);
  EXPECT_GT(status->size(), 4 * std::string(kSimple).size());
  EXPECT_EQ(status->highest_modseq(), 3u);
  status_request.set_name("nope");
  EXPECT_EQ(CodeOf(this->store_->Status(this->user_, status_request).status()), v1::NONEXISTENT);
}

TYPED_TEST(StoreConformanceTest, InvalidNamesAreRejectedClearly) {
  EXPECT_EQ(CodeOf(this->Create("")), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->Create("bad\xc3(")), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->Create("a//b")), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->Create("/a")), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->Create("a*")), v1::BAD_REQUEST);
  EXPECT_EQ(CodeOf(this->Create(std::string(251, 'n'))), v1::LIMIT);
  std::string deep;
  for (int i = 0; i < 32; ++i) {
    deep += i == 0 ? "d" : "/d";
  }
  absl::Status status = this->Create(deep);
  EXPECT_EQ(CodeOf(status), v1::LIMIT);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("hierarchy levels"));
  EXPECT_TRUE(this->Create("Entwürfe").ok());
}

TYPED_TEST(StoreConformanceTest, RenameMovesChildren) {
  ASSERT_TRUE(this->Create("a/b").ok());
  uint32_t validity = this->OpenBox("a/b").uidvalidity();
  this->AppendSome("a/b", 1);
  v1::RenameMailboxRequest request;
  request.set_from("a");
  request.set_to("z/a2");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, request).ok());
  auto all = this->List({"*"});
  EXPECT_EQ(all.count("a"), 0u);
  EXPECT_EQ(all.count("z"), 1u);
  EXPECT_EQ(all.count("z/a2"), 1u);
  EXPECT_EQ(all.count("z/a2/b"), 1u);
  v1::OpenResponse moved = this->OpenBox("z/a2/b");
  EXPECT_EQ(moved.uidvalidity(), validity);  // an ordinary rename keeps UIDVALIDITY
  EXPECT_EQ(moved.messages(), 1u);

  request.set_from("nope");
  EXPECT_EQ(CodeOf(this->store_->RenameMailbox(this->user_, request)), v1::NONEXISTENT);
  ASSERT_TRUE(this->Create("q").ok());
  request.set_from("q");
  request.set_to("z");
  EXPECT_EQ(CodeOf(this->store_->RenameMailbox(this->user_, request)), v1::ALREADYEXISTS);
  request.set_to("q/sub");
  EXPECT_EQ(CodeOf(this->store_->RenameMailbox(this->user_, request)), v1::CANNOT);
}

TYPED_TEST(StoreConformanceTest, RenameInboxMovesMessagesAndLeavesItEmpty) {
  ASSERT_TRUE(this->Create("INBOX/child").ok());
  this->AppendSome("INBOX", 3, {"\\Flagged"});
  uint32_t inbox_validity = this->OpenBox("INBOX").uidvalidity();
  v1::RenameMailboxRequest request;
  request.set_from("inbox");
  request.set_to("Old");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, request).ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  EXPECT_EQ(inbox.messages(), 0u);
  EXPECT_EQ(inbox.uidvalidity(), inbox_validity);
  EXPECT_EQ(inbox.uidnext(), 4u);  // UIDs are never reused
  v1::OpenResponse old = this->OpenBox("Old");
  EXPECT_EQ(old.messages(), 3u);
  EXPECT_NE(old.uidvalidity(), inbox_validity);
  EXPECT_THAT(Expand(old.uids()), ElementsAre(1, 2, 3));
  EXPECT_EQ(this->List({"INBOX/child"}).size(), 1u);  // inferiors of INBOX stay
}

TYPED_TEST(StoreConformanceTest, DeleteWithChildrenBecomesNoselect) {
  ASSERT_TRUE(this->Create("p/c").ok());
  this->AppendSome("p", 2);
  v1::OpenResponse opened = this->OpenBox("p");
  v1::DeleteMailboxRequest request;
  request.set_name("p");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, request).ok());
  EXPECT_THAT(this->List({"p"})["p"], ElementsAre("\\Noselect", "\\HasChildren"));
  // The session that had it selected learns it is gone.
  std::vector<v1::ChangeEvent> changes;
  EXPECT_EQ(CodeOf(this->store_->ReadChanges(this->user_, opened.mailbox_id(), opened.uidvalidity(),
                                             0, &changes)),
            v1::MAILBOX_CHANGED);
  std::vector<v1::ChangeEvent> events = this->Events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_TRUE(events[events.size() - 2].has_deleted());
  // The mailbox list keeps the name, as \Noselect (RFC 5465 §5.4).
  ASSERT_TRUE(events.back().has_mailbox_list());
  EXPECT_EQ(events.back().mailbox_list().kind(),
            v1::ChangeEvent::MailboxListChanged::NOSELECT);
  EXPECT_EQ(events.back().mailbox_list().name(), "p");
  EXPECT_EQ(CodeOf(this->store_->DeleteMailbox(this->user_, request)), v1::CANNOT);
  v1::OpenRequest open;
  open.set_name("p");
  EXPECT_EQ(CodeOf(this->store_->Open(this->user_, open).status()), v1::CANNOT);

  request.set_name("p/c");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, request).ok());
  request.set_name("p");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, request).ok());  // no children left
  EXPECT_TRUE(this->List({"p*"}).empty());
  request.set_name("INBOX");
  EXPECT_EQ(CodeOf(this->store_->DeleteMailbox(this->user_, request)), v1::CANNOT);
  request.set_name("nope");
  EXPECT_EQ(CodeOf(this->store_->DeleteMailbox(this->user_, request)), v1::NONEXISTENT);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM messages"), 0);
}

TYPED_TEST(StoreConformanceTest, Subscriptions) {
  ASSERT_TRUE(this->Create("news").ok());
  for (const char* name : {"news", "gone", "INBOX"}) {
    v1::SetSubscriptionRequest request;
    request.set_name(name);
    request.set_subscribed(true);
    ASSERT_TRUE(this->store_->SetSubscription(this->user_, request).ok());
  }
  auto subscribed = this->List({"*"}, true);
  EXPECT_EQ(subscribed.size(), 3u);
  EXPECT_THAT(subscribed["gone"], ElementsAre("\\NonExistent", "\\Subscribed"));
  EXPECT_THAT(subscribed["news"], ElementsAre("\\HasNoChildren", "\\Subscribed"));
  EXPECT_THAT(this->List({"*"})["news"], ElementsAre("\\HasNoChildren", "\\Subscribed"));
  v1::SetSubscriptionRequest request;
  request.set_name("news");
  request.set_subscribed(false);
  ASSERT_TRUE(this->store_->SetSubscription(this->user_, request).ok());
  EXPECT_EQ(this->List({"*"}, true).count("news"), 0u);
}

TYPED_TEST(StoreConformanceTest, UidValidityIsNeverReused) {
  ASSERT_TRUE(this->Create("t").ok());
  uint32_t first = this->OpenBox("t").uidvalidity();
  v1::DeleteMailboxRequest del;
  del.set_name("t");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, del).ok());
  ASSERT_TRUE(this->Create("t").ok());
  uint32_t second = this->OpenBox("t").uidvalidity();
  EXPECT_GT(second, first);
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, del).ok());
  this->Reopen();
  ASSERT_TRUE(this->Create("t").ok());
  EXPECT_GT(this->OpenBox("t").uidvalidity(), second);
}

// --- Append and fetch -------------------------------------------------------------

TYPED_TEST(StoreConformanceTest, AppendIsAtomic) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Seen", "$Label1"}));
  messages.push_back(Message(kMultipart));
  auto response = this->store_->Append(this->user_, "inbox", std::move(messages));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_THAT(response->uids(), ElementsAre(1, 2));

  this->limits_.max_message_octets = 1000;
  this->Reopen();
  messages.clear();
  messages.push_back(Message(kSimple));
  messages.push_back(Message(std::string(2000, 'x')));
  auto too_big = this->store_->Append(this->user_, "INBOX", std::move(messages));
  EXPECT_EQ(CodeOf(too_big.status()), v1::TOOBIG);
  EXPECT_THAT(std::string(too_big.status().message()), ::testing::HasSubstr("message 2 of 2"));
  messages.clear();
  messages.push_back(Message(kSimple));
  messages.push_back(Message(kSimple, {"\\Recent"}));
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(messages)).status()),
            v1::BAD_REQUEST);
  messages.clear();
  messages.push_back(Message(kSimple, {"bad(keyword"}));
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(messages)).status()),
            v1::BAD_REQUEST);
  messages.clear();
  messages.push_back(Message(kSimple));
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "Nowhere", std::move(messages)).status()),
            v1::TRYCREATE);
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  EXPECT_EQ(inbox.messages(), 2u);
  EXPECT_EQ(inbox.uidnext(), 3u);
  EXPECT_THAT(inbox.flags(), ::testing::Contains("$Label1"));
  EXPECT_THAT(inbox.permanent_flags(), ::testing::Contains("\\*"));
}

// --- Import with another server's UIDVALIDITY and UIDs ------------------------------

TYPED_TEST(StoreConformanceTest, ImportKeepsUidValidityUidsAndRaisesUidNext) {
  // The INBOX every user starts with never held a message: the import takes it.
  v1::PrepareImportRequest prepare;
  prepare.set_mailbox("INBOX");
  prepare.set_uidvalidity(4000000000u);
  prepare.set_highest_modseq(500);
  auto inbox = this->store_->PrepareImport(this->user_, prepare);
  ASSERT_TRUE(inbox.ok()) << inbox.status();
  EXPECT_FALSE(inbox->created());
  EXPECT_EQ(inbox->uidvalidity(), 4000000000u);
  EXPECT_EQ(inbox->highest_modseq(), 500u);

  std::vector<NewMessage> messages;
  messages.push_back(Message(absl::StrCat(kSimple, "one\r\n"), {"\\Seen", "$Work"}));
  messages.back().uid = 3;
  messages.push_back(Message(absl::StrCat(kSimple, "two\r\n")));
  messages.back().uid = 7;
  messages.push_back(Message(absl::StrCat(kSimple, "three\r\n")));  // no UID: the next
  auto appended = this->store_->Append(this->user_, "INBOX", std::move(messages));
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_THAT(appended->uids(), ElementsAre(3, 7, 8));
  EXPECT_EQ(appended->uidvalidity(), 4000000000u);

  // UIDs never go back: below UIDNEXT, or not ascending within a call.
  messages.clear();
  messages.push_back(Message(kSimple));
  messages.back().uid = 8;
  auto below = this->store_->Append(this->user_, "INBOX", std::move(messages));
  EXPECT_EQ(CodeOf(below.status()), v1::CANNOT);
  EXPECT_THAT(std::string(below.status().message()), ::testing::HasSubstr("UID 8 is below 9"));
  messages.clear();
  messages.push_back(Message(kSimple));
  messages.back().uid = 20;
  messages.push_back(Message(kSimple));
  messages.back().uid = 20;
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(messages)).status()),
            v1::CANNOT);
  // At the limit: UID 2^32-1 would leave no UIDNEXT.
  messages.clear();
  messages.push_back(Message(kSimple));
  messages.back().uid = 4294967295u;
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(messages)).status()),
            v1::LIMIT);

  v1::StatusResponse status = this->StatusOf("INBOX");
  EXPECT_EQ(status.messages(), 3u);
  EXPECT_EQ(status.uidnext(), 9u);
  EXPECT_GT(status.highest_modseq(), 500u);  // above the old server's

  // UIDNEXT rises past UIDs the old server gave to messages expunged since; never falls.
  v1::FinishImportRequest finish;
  finish.set_mailbox("INBOX");
  finish.set_uidvalidity(4000000000u);
  finish.set_uidnext(12);
  auto finished = this->store_->FinishImport(this->user_, finish);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->uidnext(), 12u);
  finish.set_uidnext(5);
  EXPECT_EQ(this->store_->FinishImport(this->user_, finish)->uidnext(), 12u);
  EXPECT_EQ(this->StatusOf("INBOX").uidnext(), 12u);
  finish.set_uidvalidity(1);
  EXPECT_EQ(CodeOf(this->store_->FinishImport(this->user_, finish).status()),
            v1::MAILBOX_CHANGED);

  // A second import into the filled mailbox is refused: a mailbox in use is never
  // disturbed.
  EXPECT_EQ(CodeOf(this->store_->PrepareImport(this->user_, prepare).status()),
            v1::ALREADYEXISTS);
  prepare.set_uidvalidity(0);
  EXPECT_EQ(CodeOf(this->store_->PrepareImport(this->user_, prepare).status()),
            v1::BAD_REQUEST);

  // A new mailbox (with its superior) gets the UIDVALIDITY given, and mailboxes
  // created later get higher ones.
  prepare.set_mailbox("Work/Projects");
  prepare.set_uidvalidity(4100000000u);
  prepare.set_highest_modseq(0);
  this->ClearEvents();
  auto created = this->store_->PrepareImport(this->user_, prepare);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created());
  // Both are announced, so that sessions' LIST caches and NOTIFY hear of them: the
  // superior as \Noselect (RFC 5465 §5.4).
  auto announced = [&](v1::ChangeEvent::MailboxListChanged::Kind kind, const std::string& name) {
    std::vector<v1::ChangeEvent> events = this->Events();
    return std::any_of(events.begin(), events.end(), [&](const v1::ChangeEvent& event) {
      return event.has_mailbox_list() && event.mailbox_list().kind() == kind &&
             event.mailbox_list().name() == name;
    });
  };
  EXPECT_TRUE(announced(v1::ChangeEvent::MailboxListChanged::NOSELECT, "Work"));
  EXPECT_TRUE(announced(v1::ChangeEvent::MailboxListChanged::CREATED, "Work/Projects"));
  EXPECT_EQ(this->StatusOf("Work/Projects").uidvalidity(), 4100000000u);
  EXPECT_EQ(this->StatusOf("Work/Projects").uidnext(), 1u);
  ASSERT_TRUE(this->Create("Later").ok());
  EXPECT_GT(this->StatusOf("Later").uidvalidity(), 4100000000u);
  // The superior the import made only holds other mailboxes, as on the old
  // server; importing it later takes it over.
  EXPECT_THAT(this->List({"Work"})["Work"], ::testing::Contains("\\Noselect"));
  prepare.set_mailbox("Work");
  prepare.set_uidvalidity(4200000000u);
  auto superior = this->store_->PrepareImport(this->user_, prepare);
  ASSERT_TRUE(superior.ok()) << superior.status();
  EXPECT_FALSE(superior->created());
  EXPECT_EQ(this->StatusOf("Work").uidvalidity(), 4200000000u);
}

TYPED_TEST(StoreConformanceTest, ImportedUidsAreVisibleThroughOpenAndVanished) {
  v1::PrepareImportRequest prepare;
  prepare.set_mailbox("Archive");
  prepare.set_uidvalidity(1234);
  prepare.set_highest_modseq(40);
  ASSERT_TRUE(this->store_->PrepareImport(this->user_, prepare).ok());
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Flagged"}));
  messages.back().uid = 2;
  messages.push_back(Message(kMultipart, {"\\Answered", "$Forwarded"}));
  messages.back().uid = 5;
  ASSERT_TRUE(this->store_->Append(this->user_, "Archive", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("Archive", /*read_only=*/true);
  EXPECT_EQ(box.uidvalidity(), 1234u);
  EXPECT_EQ(box.messages(), 2u);
  EXPECT_EQ(box.uidnext(), 6u);
  EXPECT_THAT(box.flags(), ::testing::Contains("$Forwarded"));
  // A client that cached the old server's HIGHESTMODSEQ (40) asks what vanished
  // since: nothing, and the answer is exact (the log starts there).
  v1::VanishedRequest vanished;
  vanished.set_mailbox_id(box.mailbox_id());
  vanished.set_uidvalidity(1234);
  vanished.set_since_modseq(40);
  auto since = this->store_->Vanished(this->user_, vanished);
  ASSERT_TRUE(since.ok()) << since.status();
  EXPECT_TRUE(since->exact());
  EXPECT_TRUE(since->uids().ranges().empty());
}

TYPED_TEST(StoreConformanceTest, ContentIsStoredOnce) {
  this->AppendSome("INBOX", 1);
  std::vector<NewMessage> messages;
  messages.push_back(Message(absl::StrCat(kSimple, "message 0 to INBOX\r\n")));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  auto bob = this->store_->CreateUser("bob", "h");
  ASSERT_TRUE(bob.ok());
  messages.clear();
  messages.push_back(Message(absl::StrCat(kSimple, "message 0 to INBOX\r\n")));
  ASSERT_TRUE(this->store_->Append(*bob, "INBOX", std::move(messages)).ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM messages"), 3);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 1);
  EXPECT_EQ(this->CountRows("SELECT refcount FROM contents"), 3);
}

TYPED_TEST(StoreConformanceTest, OpenClaimsRecentOnce) {
  this->AppendSome("INBOX", 2);
  v1::OpenResponse examine = this->OpenBox("INBOX", true);
  EXPECT_EQ(examine.recent(), 2u);
  EXPECT_THAT(Expand(examine.recent_uids()), ElementsAre(1, 2));  // seen, not taken
  v1::OpenResponse select = this->OpenBox("INBOX");
  EXPECT_EQ(select.recent(), 2u);
  EXPECT_THAT(Expand(select.recent_uids()), ElementsAre(1, 2));
  EXPECT_EQ(select.unseen(), 2u);
  EXPECT_EQ(select.first_unseen_uid(), 1u);
  EXPECT_THAT(select.flags(), ::testing::IsSupersetOf(
                                  {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"}));
  v1::OpenResponse again = this->OpenBox("INBOX");
  EXPECT_EQ(again.recent(), 0u);
  this->AppendSome("INBOX", 1);
  EXPECT_THAT(Expand(this->OpenBox("INBOX").recent_uids()), ElementsAre(3));
  v1::OpenRequest request;
  request.set_name("Missing");
  EXPECT_EQ(CodeOf(this->store_->Open(this->user_, request).status()), v1::NONEXISTENT);
}

TYPED_TEST(StoreConformanceTest, FetchItemsAndSections) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Flagged"}));
  messages.push_back(Message(kMultipart));
  messages[0].has_internal_date = true;
  messages[0].internal_date_unix = 760686745;
  messages[0].internal_date_tz_minutes = -480;
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");

  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 10}});
  request.set_flags(true);
  request.set_internal_date(true);
  request.set_size(true);
  request.set_envelope(true);
  request.set_body(true);
  request.set_bodystructure(true);
  request.set_modseq(true);
  request.add_sections();  // BODY[]
  request.add_sections()->set_text(v1::Section::HEADER);
  request.add_sections()->set_text(v1::Section::TEXT);
  v1::Section* fields = request.add_sections();
  fields->set_text(v1::Section::HEADER_FIELDS);
  fields->add_fields("subject");
  v1::Section* partial = request.add_sections();
  partial->set_has_partial(true);
  partial->set_partial_offset(6);
  partial->set_partial_count(5);
  v1::Section* beyond = request.add_sections();
  beyond->set_has_partial(true);
  beyond->set_partial_offset(100000);
  beyond->set_partial_count(5);
  CollectingSink sink;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, sink).ok());

  auto meta = sink.Metadata();
  ASSERT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta[0].uid(), 1u);
  EXPECT_THAT(meta[0].flags(), ElementsAre("\\Flagged"));
  EXPECT_EQ(meta[0].internal_date_unix(), 760686745);
  EXPECT_EQ(meta[0].internal_date_tz_minutes(), -480);
  EXPECT_EQ(meta[0].size(), std::string(kSimple).size());
  EXPECT_THAT(meta[0].envelope(), ::testing::HasSubstr("\"hello\""));
  EXPECT_THAT(meta[0].bodystructure(), ::testing::HasSubstr("\"TEXT\" \"PLAIN\""));
  EXPECT_FALSE(meta[0].body().empty());
  EXPECT_EQ(meta[0].modseq(), 2u);
  EXPECT_FALSE(meta[0].seen_changed());
  EXPECT_THAT(meta[1].bodystructure(), ::testing::HasSubstr("\"MIXED\""));

  EXPECT_EQ(sink.Section(1, 0), kSimple);
  std::string simple = kSimple;
  size_t split = simple.find("\r\n\r\n") + 4;
  EXPECT_EQ(sink.Section(1, 1), simple.substr(0, split));
  EXPECT_EQ(sink.Section(1, 2), simple.substr(split));
  EXPECT_EQ(sink.Section(1, 3), "Subject: hello\r\n\r\n");
  EXPECT_EQ(sink.Section(1, 4), simple.substr(6, 5));
  auto chunks = sink.Chunks(1, 4);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].total_size(), 5u);
  EXPECT_TRUE(chunks[0].last());
  auto empty = sink.Chunks(1, 5);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].total_size(), 0u);
  EXPECT_EQ(empty[0].data(), "");
  EXPECT_TRUE(empty[0].last());
  // Metadata precedes the sections of its message, UIDs ascend.
  ASSERT_TRUE(sink.items[0].has_metadata());
  EXPECT_TRUE(sink.items[1].has_chunk());
}

TYPED_TEST(StoreConformanceTest, FetchBinaryAndParts) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kMultipart));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 1}});
  request.add_sections()->add_part(1);           // 0: BODY[1]
  request.add_sections()->add_part(2);           // 1: BODY[2]
  v1::Section* binary = request.add_sections();  // 2: BINARY[2]
  binary->add_part(2);
  binary->set_binary(true);
  v1::Section* size = request.add_sections();  // 3: BINARY.SIZE[2]
  size->add_part(2);
  size->set_size_only(true);
  v1::Section* unknown = request.add_sections();  // 4: BINARY[3]
  unknown->add_part(3);
  unknown->set_binary(true);
  v1::Section* binary_partial = request.add_sections();  // 5: BINARY[2]<6.100>
  binary_partial->add_part(2);
  binary_partial->set_binary(true);
  binary_partial->set_has_partial(true);
  binary_partial->set_partial_offset(6);
  binary_partial->set_partial_count(100);
  v1::Section* mime_header = request.add_sections();  // 6: BODY[2.MIME]
  mime_header->add_part(2);
  mime_header->set_text(v1::Section::MIME);
  request.add_sections()->add_part(9);  // 7: BODY[9]: no such part
  CollectingSink sink;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, sink).ok());
  EXPECT_EQ(sink.Section(1, 0), "part one");
  EXPECT_EQ(sink.Section(1, 1), "aGVsbG8gYmluYXJ5");
  EXPECT_EQ(sink.Section(1, 2), "hello binary");
  auto size_chunks = sink.Chunks(1, 3);
  ASSERT_EQ(size_chunks.size(), 1u);
  EXPECT_EQ(size_chunks[0].total_size(), 12u);
  EXPECT_EQ(size_chunks[0].data(), "");
  auto unknown_chunks = sink.Chunks(1, 4);
  ASSERT_EQ(unknown_chunks.size(), 1u);
  EXPECT_TRUE(unknown_chunks[0].error_unknown_cte());
  EXPECT_EQ(sink.Section(1, 5), "binary");
  EXPECT_THAT(sink.Section(1, 6), ::testing::HasSubstr("Content-Transfer-Encoding: base64"));
  EXPECT_EQ(sink.Section(1, 7), "");

  // Statically impossible sections are rejected before anything is read.
  v1::FetchRequest bad = request;
  bad.clear_sections();
  bad.add_sections()->set_text(v1::Section::MIME);
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, bad, sink)), v1::BAD_REQUEST);
}

TYPED_TEST(StoreConformanceTest, FetchMarkSeenAndChangedSince) {
  this->AppendSome("INBOX", 3);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{2, 2}});
  request.set_mark_seen(true);
  request.add_sections();
  CollectingSink sink;
  this->ClearEvents();
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, sink).ok());
  auto meta = sink.Metadata();
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_TRUE(meta[0].seen_changed());
  EXPECT_THAT(meta[0].flags(), ElementsAre("\\Seen"));
  EXPECT_EQ(meta[0].modseq(), box.highest_modseq() + 1);
  ASSERT_EQ(this->Events().size(), 1u);
  ASSERT_TRUE(this->Events()[0].has_flags_changed());
  EXPECT_EQ(this->Events()[0].flags_changed().messages(0).uid(), 2u);

  // Already seen: nothing changes the second time.
  CollectingSink again;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, again).ok());
  EXPECT_FALSE(again.Metadata()[0].seen_changed());
  EXPECT_EQ(this->Events().size(), 1u);

  v1::FetchRequest since;
  since.set_mailbox_id(box.mailbox_id());
  since.set_uidvalidity(box.uidvalidity());
  *since.mutable_uids() = Uids({{1, 100}});
  since.set_changed_since(box.highest_modseq());
  since.set_modseq(true);
  CollectingSink changed;
  ASSERT_TRUE(this->store_->Fetch(this->user_, since, changed).ok());
  ASSERT_EQ(changed.Metadata().size(), 1u);
  EXPECT_EQ(changed.Metadata()[0].uid(), 2u);
}

TYPED_TEST(StoreConformanceTest, FetchRejectsBadRequests) {
  this->AppendSome("INBOX", 1);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  CollectingSink sink;
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, request, sink)), v1::BAD_REQUEST);  // empty set
  *request.mutable_uids() = Uids({{5, 2}});
  absl::Status inverted = this->store_->Fetch(this->user_, request, sink);
  EXPECT_EQ(CodeOf(inverted), v1::BAD_REQUEST);
  EXPECT_THAT(std::string(inverted.message()), ::testing::HasSubstr("inverted"));
  *request.mutable_uids() = Uids({{1, 2}});
  request.set_uidvalidity(box.uidvalidity() + 1);
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, request, sink)), v1::MAILBOX_CHANGED);
  request.set_uidvalidity(box.uidvalidity());
  auto other = this->store_->CreateUser("mallory", "h");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(CodeOf(this->store_->Fetch(*other, request, sink)), v1::MAILBOX_CHANGED);
  EXPECT_TRUE(sink.items.empty());
}

TYPED_TEST(StoreConformanceTest, LargeMessageStreamsInBoundedChunks) {
  std::string big = "From: big@example.com\r\nSubject: big\r\n\r\n";
  std::string line(76, 'x');
  line += "\r\n";
  while (big.size() < (50u << 20)) {
    big += line;
  }
  const size_t total = big.size();
  std::vector<NewMessage> messages;
  messages.push_back(Message(big));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");

  class CheckingSink : public FetchSink {
   public:
    explicit CheckingSink(size_t limit) : limit_(limit) {}
    bool Send(const v1::FetchResponse& item) override {
      if (item.has_chunk()) {
        EXPECT_LE(item.chunk().data().size(), limit_);
        if (chunks_ == 0) {
          total_size_ = item.chunk().total_size();
        }
        ++chunks_;
        received_ += item.chunk().data().size();
        if (item.chunk().last()) {
          last_seen_ = true;
        }
      }
      return true;
    }
    size_t limit_, chunks_ = 0, received_ = 0, total_size_ = 0;
    bool last_seen_ = false;
  };
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 1}});
  request.set_size(true);
  request.add_sections();
  CheckingSink sink(this->limits_.fetch_chunk_octets);
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, sink).ok());
  EXPECT_EQ(sink.total_size_, total);
  EXPECT_EQ(sink.received_, total);
  EXPECT_TRUE(sink.last_seen_);
  EXPECT_EQ(sink.chunks_,
            (total + this->limits_.fetch_chunk_octets - 1) / this->limits_.fetch_chunk_octets);

  // A partial in the middle of the big body.
  request.mutable_sections(0)->set_has_partial(true);
  request.mutable_sections(0)->set_partial_offset(40u << 20);
  request.mutable_sections(0)->set_partial_count(1000);
  CollectingSink partial;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, partial).ok());
  EXPECT_EQ(partial.Section(1, 0), big.substr(40u << 20, 1000));

  // A receiver that goes away cancels the fetch.
  class CancellingSink : public FetchSink {
   public:
    bool Send(const v1::FetchResponse& item) override { return !item.has_chunk(); }
  } cancelling;
  request.mutable_sections(0)->set_has_partial(false);
  EXPECT_EQ(this->store_->Fetch(this->user_, request, cancelling).code(),
            absl::StatusCode::kCancelled);
}

// --- Store, copy, move, expunge ------------------------------------------------------

TYPED_TEST(StoreConformanceTest, StoreFlagsWithUnchangedSince) {
  this->AppendSome("INBOX", 3);
  v1::OpenResponse box = this->OpenBox("INBOX");
  const uint64_t base = box.highest_modseq();
  v1::StoreRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 1}});
  request.set_mode(v1::StoreRequest::ADD);
  request.add_flags("\\seen");  // system flags are case-insensitive
  request.add_flags("Work");
  auto first = this->store_->StoreFlags(this->user_, request);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->changed_size(), 1);
  EXPECT_THAT(first->changed(0).flags(), ElementsAre("\\Seen", "Work"));
  EXPECT_EQ(first->changed(0).modseq(), base + 1);
  EXPECT_EQ(first->highest_modseq(), base + 1);

  // Message 1 changed after `base`: it fails UNCHANGEDSINCE; 2 and 3 change.
  *request.mutable_uids() = Uids({{1, 3}});
  request.set_has_unchanged_since(true);
  request.set_unchanged_since(base);
  request.clear_flags();
  request.add_flags("\\Flagged");
  auto second = this->store_->StoreFlags(this->user_, request);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(Expand(second->modified()), ElementsAre(1));
  ASSERT_EQ(second->changed_size(), 2);
  EXPECT_EQ(second->changed(0).uid(), 2u);
  EXPECT_EQ(second->changed(1).modseq(), base + 2);

  // A no-op store allocates no MODSEQ and reports nothing changed.
  request.set_has_unchanged_since(false);
  auto noop = this->store_->StoreFlags(this->user_, request);
  ASSERT_TRUE(noop.ok());
  EXPECT_EQ(noop->changed_size(), 1);  // only message 1 lacked \Flagged
  auto noop2 = this->store_->StoreFlags(this->user_, request);
  EXPECT_EQ(noop2->changed_size(), 0);
  EXPECT_EQ(noop2->highest_modseq(), base + 3);

  request.set_mode(v1::StoreRequest::REMOVE);
  request.clear_flags();
  request.add_flags("work");
  auto removed = this->store_->StoreFlags(this->user_, request);
  ASSERT_EQ(removed->changed_size(), 1);
  EXPECT_THAT(removed->changed(0).flags(), ElementsAre("\\Flagged", "\\Seen"));
  request.set_mode(v1::StoreRequest::SET);
  request.clear_flags();
  request.add_flags("\\Draft");
  auto set = this->store_->StoreFlags(this->user_, request);
  ASSERT_EQ(set->changed_size(), 3);
  EXPECT_THAT(set->changed(2).flags(), ElementsAre("\\Draft"));

  request.clear_flags();
  request.add_flags("\\Recent");
  EXPECT_EQ(CodeOf(this->store_->StoreFlags(this->user_, request).status()), v1::BAD_REQUEST);
  request.clear_flags();
  request.add_flags("\\Bogus");
  EXPECT_EQ(CodeOf(this->store_->StoreFlags(this->user_, request).status()), v1::BAD_REQUEST);
  request.clear_flags();
  request.add_flags("a b");
  EXPECT_EQ(CodeOf(this->store_->StoreFlags(this->user_, request).status()), v1::BAD_REQUEST);
  request.set_mode(v1::StoreRequest::MODE_UNSPECIFIED);
  EXPECT_EQ(CodeOf(this->store_->StoreFlags(this->user_, request).status()), v1::BAD_REQUEST);
}

TYPED_TEST(StoreConformanceTest, CopyAndMoveReturnMappings) {
  this->AppendSome("INBOX", 4, {"\\Flagged"});
  ASSERT_TRUE(this->Create("Dest").ok());
  this->AppendSome("Dest", 1);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::CopyRequest copy;
  copy.set_mailbox_id(box.mailbox_id());
  copy.set_uidvalidity(box.uidvalidity());
  *copy.mutable_uids() = Uids({{2, 3}, {9, 12}});
  copy.set_destination("Dest");
  auto copied = this->store_->Copy(this->user_, copy);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_THAT(copied->source_uids(), ElementsAre(2, 3));
  EXPECT_THAT(copied->destination_uids(), ElementsAre(2, 3));
  v1::OpenResponse dest = this->OpenBox("Dest");
  EXPECT_EQ(copied->destination_uidvalidity(), dest.uidvalidity());
  EXPECT_EQ(dest.messages(), 3u);
  EXPECT_EQ(this->OpenBox("INBOX").messages(), 4u);
  copy.set_destination("Missing");
  EXPECT_EQ(CodeOf(this->store_->Copy(this->user_, copy).status()), v1::TRYCREATE);

  this->ClearEvents();
  v1::MoveRequest move;
  move.set_mailbox_id(box.mailbox_id());
  move.set_uidvalidity(box.uidvalidity());
  *move.mutable_uids() = Uids({{1, 1}, {4, 4}});
  move.set_destination("Dest");
  auto moved = this->store_->Move(this->user_, move);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_THAT(moved->source_uids(), ElementsAre(1, 4));
  EXPECT_THAT(moved->destination_uids(), ElementsAre(4, 5));
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  EXPECT_THAT(Expand(inbox.uids()), ElementsAre(2, 3));
  EXPECT_EQ(moved->highest_modseq(), inbox.highest_modseq());
  ASSERT_EQ(this->Events().size(), 2u);
  EXPECT_EQ(this->Events()[0].mailbox_id(), dest.mailbox_id());
  EXPECT_TRUE(this->Events()[0].has_added());
  EXPECT_EQ(this->Events()[0].added().messages(0).flags(0), "\\Flagged");
  EXPECT_EQ(this->Events()[1].mailbox_id(), box.mailbox_id());
  EXPECT_THAT(Expand(this->Events()[1].expunged().uids()), ElementsAre(1, 4));
  // Copies share content: 4 INBOX messages and 1 Dest message.
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 5);
}

TYPED_TEST(StoreConformanceTest, ExpungeBothForms) {
  this->AppendSome("INBOX", 5);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::StoreRequest store;
  store.set_mailbox_id(box.mailbox_id());
  store.set_uidvalidity(box.uidvalidity());
  *store.mutable_uids() = Uids({{1, 4}});
  store.set_mode(v1::StoreRequest::ADD);
  store.add_flags("\\Deleted");
  ASSERT_TRUE(this->store_->StoreFlags(this->user_, store).ok());

  v1::ExpungeRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  request.set_uids_only(true);
  *request.mutable_uids() = Uids({{2, 3}, {5, 5}});
  auto some = this->store_->Expunge(this->user_, request);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_THAT(Expand(some->expunged()), ElementsAre(2, 3));  // 5 is not \Deleted

  request.set_uids_only(false);
  request.clear_uids();
  auto all = this->store_->Expunge(this->user_, request);
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Expand(all->expunged()), ElementsAre(1, 4));
  EXPECT_THAT(Expand(this->OpenBox("INBOX").uids()), ElementsAre(5));
  EXPECT_EQ(all->highest_modseq(), this->OpenBox("INBOX").highest_modseq());
  // The expunged messages are retained, with their content, for sessions not yet
  // told (see ExpungedMessages* below).
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 4);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 5);

  request.set_uids_only(true);
  EXPECT_EQ(CodeOf(this->store_->Expunge(this->user_, request).status()), v1::BAD_REQUEST);
}

TYPED_TEST(StoreConformanceTest, ReviseIssuesNewUidAndExpungesOld) {
  this->AppendSome("INBOX", 2, {"\\Draft", "Keep"});
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->ClearEvents();
  v1::ReviseHeader header;
  header.set_mailbox_id(box.mailbox_id());
  header.set_uidvalidity(box.uidvalidity());
  header.set_uid(1);
  auto revised = this->store_->Revise(this->user_, header, std::string(kMultipart));
  ASSERT_TRUE(revised.ok()) << revised.status();
  EXPECT_EQ(revised->old_uid(), 1u);
  EXPECT_EQ(revised->new_uid(), 3u);
  EXPECT_EQ(revised->uidvalidity(), box.uidvalidity());
  EXPECT_EQ(revised->modseq(), box.highest_modseq() + 2);
  ASSERT_EQ(this->Events().size(), 2u);
  ASSERT_TRUE(this->Events()[0].has_added());
  EXPECT_EQ(this->Events()[0].added().messages(0).uid(), 3u);
  EXPECT_THAT(this->Events()[0].added().messages(0).flags(), ElementsAre("\\Draft", "Keep"));
  ASSERT_TRUE(this->Events()[1].has_expunged());
  EXPECT_THAT(Expand(this->Events()[1].expunged().uids()), ElementsAre(1));
  EXPECT_LT(this->Events()[0].modseq(), this->Events()[1].modseq());
  EXPECT_THAT(Expand(this->OpenBox("INBOX").uids()), ElementsAre(2, 3));

  // By name, replacing flags.
  header.set_mailbox_id(0);
  header.set_mailbox("inbox");
  header.set_uid(3);
  header.set_replace_flags(true);
  header.add_flags("\\Seen");
  auto again = this->store_->Revise(this->user_, header, std::string(kSimple));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->new_uid(), 4u);
  EXPECT_THAT(this->Events()[2].added().messages(0).flags(), ElementsAre("\\Seen"));
  header.set_uid(1);
  EXPECT_EQ(CodeOf(this->store_->Revise(this->user_, header, std::string(kSimple)).status()),
            v1::EXPUNGEISSUED);
  header.set_uid(2);
  header.set_uidvalidity(box.uidvalidity() + 7);
  EXPECT_EQ(CodeOf(this->store_->Revise(this->user_, header, std::string(kSimple)).status()),
            v1::MAILBOX_CHANGED);
}

// --- SAVEDATE (RFC 8514) and PREVIEW (RFC 8970) ------------------------------------

TYPED_TEST(StoreConformanceTest, SaveDatesAreWhenEachCopyWasSaved) {
  this->Reopen(this->ClockedOptions());
  using std::chrono::seconds;
  constexpr int64_t kAppended = 1709294400;  // 2024-03-01T12:00:00Z
  this->now_ = std::chrono::system_clock::time_point(seconds(kAppended));
  NewMessage old_date = Message(kSimple);
  old_date.has_internal_date = true;
  old_date.internal_date_unix = 1577880000;  // 2020-01-01T12:00:00Z
  std::vector<NewMessage> messages;
  messages.push_back(std::move(old_date));
  messages.push_back(Message(kMultipart));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  ASSERT_TRUE(this->Create("Dest").ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  auto appended = this->FetchDates(inbox, {{1, 2}});
  ASSERT_EQ(appended.size(), 2u);
  for (const v1::FetchedMetadata& m : appended) {
    EXPECT_TRUE(m.has_save_date());
    EXPECT_EQ(m.save_date_unix(), kAppended);
  }
  EXPECT_EQ(appended[0].internal_date_unix(), 1577880000);

  // COPY two days later: the copy's save date is the time of the copy, its
  // internal date the original's; the original keeps its own.
  constexpr int64_t kCopied = kAppended + 2 * 86400;  // 2024-03-03
  this->now_ = std::chrono::system_clock::time_point(seconds(kCopied));
  v1::CopyRequest copy;
  copy.set_mailbox_id(inbox.mailbox_id());
  copy.set_uidvalidity(inbox.uidvalidity());
  *copy.mutable_uids() = Uids({{1, 1}});
  copy.set_destination("Dest");
  ASSERT_TRUE(this->store_->Copy(this->user_, copy).ok());
  // MOVE a day after that.
  constexpr int64_t kMoved = kCopied + 86400;  // 2024-03-04
  this->now_ = std::chrono::system_clock::time_point(seconds(kMoved));
  v1::MoveRequest move;
  move.set_mailbox_id(inbox.mailbox_id());
  move.set_uidvalidity(inbox.uidvalidity());
  *move.mutable_uids() = Uids({{2, 2}});
  move.set_destination("Dest");
  ASSERT_TRUE(this->store_->Move(this->user_, move).ok());

  v1::OpenResponse dest = this->OpenBox("Dest");
  auto copies = this->FetchDates(dest, {{1, 2}});
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(copies[0].save_date_unix(), kCopied);
  EXPECT_EQ(copies[0].internal_date_unix(), 1577880000);
  EXPECT_EQ(copies[1].save_date_unix(), kMoved);
  auto originals = this->FetchDates(inbox, {{1, 2}}, false, /*include_expunged=*/true);
  ASSERT_EQ(originals.size(), 2u);
  EXPECT_EQ(originals[0].save_date_unix(), kAppended);
  EXPECT_TRUE(originals[1].expunged());  // retained by the move, with its save date
  EXPECT_EQ(originals[1].save_date_unix(), kAppended);

  // A revision is saved when it is made.
  constexpr int64_t kRevised = kMoved + 86400;
  this->now_ = std::chrono::system_clock::time_point(seconds(kRevised));
  v1::ReviseHeader header;
  header.set_mailbox_id(dest.mailbox_id());
  header.set_uidvalidity(dest.uidvalidity());
  header.set_uid(1);
  auto revised = this->store_->Revise(this->user_, header, std::string(kSimple));
  ASSERT_TRUE(revised.ok()) << revised.status();
  auto revision = this->FetchDates(dest, {{revised->new_uid(), revised->new_uid()}});
  ASSERT_EQ(revision.size(), 1u);
  EXPECT_EQ(revision[0].save_date_unix(), kRevised);

  // SAVEDBEFORE / SAVEDON / SAVEDSINCE compare the save date's day (UTC).
  v1::SearchKey key;
  key.set_saved_on(20240304);
  EXPECT_THAT(this->SearchUids(dest, key), ElementsAre(2));
  key.set_saved_before(20240305);
  EXPECT_THAT(this->SearchUids(dest, key), ElementsAre(2));
  key.set_saved_since(20240305);
  EXPECT_THAT(this->SearchUids(dest, key), ElementsAre(revised->new_uid()));
  key.set_saved_on(20240301);
  EXPECT_THAT(this->SearchUids(inbox, key), ElementsAre(1));
  key.set_on(20200101);  // the internal date is not the save date
  EXPECT_THAT(this->SearchUids(inbox, key), ElementsAre(1));
  key.set_saved_on(20200101);
  EXPECT_THAT(this->SearchUids(inbox, key), IsEmpty());
}

TYPED_TEST(StoreConformanceTest, RowsWithoutASaveDateAnswerAndSearchByTheInternalDate) {
  NewMessage m = Message(kSimple);
  m.has_internal_date = true;
  m.internal_date_unix = 1577880000;  // 2020-01-01T12:00:00Z
  std::vector<NewMessage> messages;
  messages.push_back(std::move(m));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  // As a row stored before save dates were kept.
  this->Exec("UPDATE messages SET save_date = NULL");
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  auto fetched = this->FetchDates(inbox, {{1, 1}});
  ASSERT_EQ(fetched.size(), 1u);
  EXPECT_TRUE(fetched[0].has_save_date());
  EXPECT_EQ(fetched[0].save_date_unix(), 1577880000);
  v1::SearchKey key;
  key.set_saved_on(20200101);
  EXPECT_THAT(this->SearchUids(inbox, key), ElementsAre(1));
  key.set_saved_since(20200102);
  EXPECT_THAT(this->SearchUids(inbox, key), IsEmpty());
}

TYPED_TEST(StoreConformanceTest, PreviewsAreMadeAtIngestAndSharedByCopies) {
  const std::string html =
      "Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
      "<html><head><style>b {}</style></head><body><p>Hello&nbsp;<b>there</b></p>"
      "<p>second</p></body></html>\r\n";
  const std::string no_text =
      "Subject: n\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "iVBORw0KGgo=\r\n";
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple));
  messages.push_back(Message(html));
  messages.push_back(Message(no_text));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents WHERE preview IS NULL"), 0);
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  for (bool lazy : {false, true}) {
    auto fetched = this->FetchDates(inbox, {{1, 3}}, lazy);
    ASSERT_EQ(fetched.size(), 3u);
    for (const v1::FetchedMetadata& m : fetched) {
      EXPECT_TRUE(m.has_preview());
    }
    EXPECT_EQ(fetched[0].preview(), "Hello world");
    EXPECT_EQ(fetched[1].preview(), "Hello there second");
    EXPECT_EQ(fetched[2].preview(), "");
  }
  ASSERT_TRUE(this->Create("Dest").ok());
  v1::CopyRequest copy;
  copy.set_mailbox_id(inbox.mailbox_id());
  copy.set_uidvalidity(inbox.uidvalidity());
  *copy.mutable_uids() = Uids({{2, 2}});
  copy.set_destination("Dest");
  ASSERT_TRUE(this->store_->Copy(this->user_, copy).ok());
  auto copied = this->FetchDates(this->OpenBox("Dest"), {{1, 1}});
  ASSERT_EQ(copied.size(), 1u);
  EXPECT_EQ(copied[0].preview(), "Hello there second");
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 3);
}

TYPED_TEST(StoreConformanceTest, PreviewsOfOlderContentAreMadeOnFirstRequestAndKept) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple));
  messages.push_back(Message(kMultipart));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  const auto made_at_ingest = this->FetchDates(inbox, {{1, 2}});
  ASSERT_EQ(made_at_ingest.size(), 2u);
  // As content stored before previews were kept.
  this->Exec("UPDATE contents SET preview = NULL");
  // LAZY (RFC 8970 §3.1): NIL rather than the work now.
  auto lazy = this->FetchDates(inbox, {{1, 2}}, /*lazy=*/true);
  ASSERT_EQ(lazy.size(), 2u);
  EXPECT_FALSE(lazy[0].has_preview());
  EXPECT_FALSE(lazy[1].has_preview());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents WHERE preview IS NULL"), 2);
  // Without LAZY: made from the stored structure, the same as at ingest, and kept.
  auto made = this->FetchDates(inbox, {{1, 2}});
  ASSERT_EQ(made.size(), 2u);
  for (size_t i = 0; i < made.size(); ++i) {
    EXPECT_TRUE(made[i].has_preview());
    EXPECT_EQ(made[i].preview(), made_at_ingest[i].preview());
  }
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents WHERE preview IS NULL"), 0);
  lazy = this->FetchDates(inbox, {{1, 2}}, /*lazy=*/true);
  ASSERT_EQ(lazy.size(), 2u);
  EXPECT_EQ(lazy[1].preview(), made_at_ingest[1].preview());
}

// Criteria for SortedUids: (key, reverse) pairs.
google::protobuf::RepeatedPtrField<v1::SortCriterion> Criteria(
    std::initializer_list<std::pair<v1::SortCriterion::Key, bool>> keys) {
  google::protobuf::RepeatedPtrField<v1::SortCriterion> criteria;
  for (const auto& [key, reverse] : keys) {
    v1::SortCriterion* criterion = criteria.Add();
    criterion->set_key(key);
    criterion->set_reverse(reverse);
  }
  return criteria;
}

TYPED_TEST(StoreConformanceTest, SortKeysAreKeptAtIngestAndMadeForOlderContent) {
  const std::string reply =
      "From: \"Zed\" <Zed@Example.com>\r\nTo: amy@example.com\r\nCc: cat@example.com\r\n"
      "Subject: =?utf-8?q?Re=3A_=5Blist=5D_hello?=\r\n"
      "Date: Tue, 8 Feb 1994 00:00:00 +0000\r\n"
      "Message-ID: <r@x>\r\nIn-Reply-To: <o@x>\r\n\r\nbody\r\n";
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple));
  messages.push_back(Message(reply));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents WHERE sort_keys IS NULL"), 0);
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  auto check = [&] {
    auto sortable = this->store_->SortableMessages(this->user_, inbox.mailbox_id(),
                                                   inbox.uidvalidity(), Uids({{1, 5}}));
    ASSERT_TRUE(sortable.ok()) << sortable.status();
    ASSERT_EQ(sortable->size(), 2u);
    const SortableMessage& first = (*sortable)[0];
    const SortableMessage& second = (*sortable)[1];
    EXPECT_EQ(first.uid, 1u);
    EXPECT_EQ(first.size, std::string(kSimple).size());
    EXPECT_EQ(first.keys.subject, "hello");
    EXPECT_FALSE(first.keys.reply_or_forward);
    EXPECT_EQ(first.keys.display_from, "alice");
    EXPECT_EQ(second.uid, 2u);
    EXPECT_EQ(second.keys.subject, "hello");
    EXPECT_TRUE(second.keys.reply_or_forward);
    EXPECT_EQ(second.keys.from, "zed");
    EXPECT_EQ(second.keys.to, "amy");
    EXPECT_EQ(second.keys.cc, "cat");
    EXPECT_EQ(second.keys.sent_at, 760665600);
    EXPECT_EQ(second.keys.message_id, "r@x");
    EXPECT_THAT(second.keys.references, ElementsAre("o@x"));
  };
  check();
  // As content stored before sort keys were kept: made on the first sort, kept.
  this->Exec("UPDATE contents SET sort_keys = NULL");
  check();
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents WHERE sort_keys IS NULL"), 0);
  check();
  // Only the UIDs asked for; a mailbox that changed is MAILBOX_CHANGED.
  auto one = this->store_->SortableMessages(this->user_, inbox.mailbox_id(),
                                            inbox.uidvalidity(), Uids({{2, 2}}));
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].uid, 2u);
  auto none = this->store_->SortableMessages(this->user_, inbox.mailbox_id(),
                                             inbox.uidvalidity(), v1::UidSet());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(this->store_
                   ->SortableMessages(this->user_, inbox.mailbox_id(), inbox.uidvalidity() + 1,
                                      Uids({{1, 5}}))
                   .ok());
}

TYPED_TEST(StoreConformanceTest, SortableMessagesStopAtTheirLimit) {
  this->limits_.max_sort_messages = 2;
  this->Reopen();
  std::vector<NewMessage> messages;
  for (int i = 0; i < 3; ++i) {
    messages.push_back(Message(absl::StrCat("Subject: ", i, "\r\n\r\nbody\r\n")));
  }
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  auto two = this->store_->SortableMessages(this->user_, inbox.mailbox_id(),
                                            inbox.uidvalidity(), Uids({{1, 2}}));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 2u);
  auto three = this->store_->SortableMessages(this->user_, inbox.mailbox_id(),
                                              inbox.uidvalidity(), Uids({{1, 3}}));
  EXPECT_TRUE(absl::IsResourceExhausted(three.status())) << three.status();
  EXPECT_EQ(v1::DetailOf(three.status()).code(), v1::LIMIT);
  const auto by_subject = Criteria({{v1::SortCriterion::SUBJECT, false}});
  auto two_sorted = this->store_->SortedUids(this->user_, inbox.mailbox_id(),
                                             inbox.uidvalidity(), Uids({{1, 2}}), by_subject);
  ASSERT_TRUE(two_sorted.ok()) << two_sorted.status();
  EXPECT_EQ(two_sorted->size(), 2u);
  auto three_sorted = this->store_->SortedUids(this->user_, inbox.mailbox_id(),
                                               inbox.uidvalidity(), Uids({{1, 3}}), by_subject);
  EXPECT_TRUE(absl::IsResourceExhausted(three_sorted.status())) << three_sorted.status();
  EXPECT_EQ(v1::DetailOf(three_sorted.status()).code(), v1::LIMIT);
}

TYPED_TEST(StoreConformanceTest, SortedUidsReadTheOrderThatTheKeysGive) {
  // Varied keys with many ties: some without a Date: (the internal date counts),
  // display names and bare addresses, missing fields, sizes that repeat.
  std::vector<NewMessage> messages;
  for (int i = 0; i < 40; ++i) {
    std::string header;
    if (i % 3 != 0) {
      absl::StrAppend(&header, "From: ", i % 4 == 0 ? "\"Name " : "",
                      i % 4 == 0 ? absl::StrCat(i % 5, "\" ") : "", "<u", i % 6,
                      "@example.com>\r\n");
    }
    if (i % 5 != 0) {
      absl::StrAppend(&header, "To: t", i % 7, "@example.org\r\n");
    }
    if (i % 2 == 0) {
      absl::StrAppend(&header, "Cc: c", i % 3, "@example.net\r\n");
    }
    absl::StrAppend(&header, "Subject: ", i % 4 == 1 ? "Re: " : "", "topic ", i % 5, "\r\n");
    if (i % 7 != 3) {
      absl::StrAppend(&header, "Date: ", 1 + i % 9, " Feb 1994 0", i % 10,
                      ":00:00 +0000\r\n");
    }
    NewMessage message =
        Message(absl::StrCat(header, "\r\n", std::string(10 * (i % 4), 'x'), "\r\n"));
    message.has_internal_date = true;
    message.internal_date_unix = 760000000 + 86400 * (i % 11);
    messages.push_back(std::move(message));
  }
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  ASSERT_TRUE(this->Create("Copies").ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  v1::CopyRequest copy;
  copy.set_mailbox_id(inbox.mailbox_id());
  copy.set_uidvalidity(inbox.uidvalidity());
  *copy.mutable_uids() = Uids({{1, 40}});
  copy.set_destination("Copies");
  ASSERT_TRUE(this->store_->Copy(this->user_, copy).ok());
  using K = v1::SortCriterion;
  const std::vector<google::protobuf::RepeatedPtrField<v1::SortCriterion>> orders = {
      Criteria({{K::ARRIVAL, false}}),      Criteria({{K::DATE, true}}),
      Criteria({{K::DATE, false}}),         Criteria({{K::SUBJECT, false}}),
      Criteria({{K::FROM, true}}),          Criteria({{K::TO, false}}),
      Criteria({{K::CC, false}}),           Criteria({{K::SIZE, true}}),
      Criteria({{K::DISPLAYFROM, false}}),  Criteria({{K::DISPLAYTO, true}}),
      Criteria({{K::SUBJECT, false}, {K::DATE, true}}),
      Criteria({{K::FROM, false}, {K::SIZE, false}, {K::ARRIVAL, true}}),
  };
  auto check = [&](const v1::OpenResponse& box, const v1::UidSet& uids) {
    for (const auto& criteria : orders) {
      auto sortable =
          this->store_->SortableMessages(this->user_, box.mailbox_id(), box.uidvalidity(), uids);
      ASSERT_TRUE(sortable.ok()) << sortable.status();
      auto sorted = this->store_->SortedUids(this->user_, box.mailbox_id(), box.uidvalidity(),
                                             uids, criteria);
      ASSERT_TRUE(sorted.ok()) << sorted.status();
      EXPECT_EQ(*sorted, SortMessages(*std::move(sortable), criteria))
          << criteria[0].ShortDebugString();
    }
  };
  v1::OpenResponse copies = this->OpenBox("Copies");
  check(inbox, Uids({{1, 40}}));
  check(inbox, Uids({{3, 9}, {20, 24}, {38, 99}}));
  check(copies, Uids({{1, 40}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM messages WHERE sort_date IS NULL"), 0);
  // Rows from before they carried their keys get them on the first sort.
  this->Exec(
      "UPDATE messages SET sort_date = NULL, sort_subject = NULL, sort_from = NULL, "
      "sort_to = NULL, sort_cc = NULL, sort_display_from = NULL, sort_display_to = NULL");
  this->Exec("UPDATE contents SET sort_keys = NULL");
  check(inbox, Uids({{2, 30}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM messages m JOIN mailboxes b ON "
                            "b.id = m.mailbox_id WHERE b.name = 'INBOX' AND sort_date IS NULL"),
            0);
  check(copies, Uids({{1, 40}}));
  // None matched, a changed mailbox, no criteria.
  auto none = this->store_->SortedUids(this->user_, inbox.mailbox_id(), inbox.uidvalidity(),
                                       v1::UidSet(), orders[0]);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(this->store_
                ->SortedUids(this->user_, inbox.mailbox_id(), inbox.uidvalidity() + 1,
                             Uids({{1, 5}}), orders[0])
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::IsInvalidArgument(
      this->store_
          ->SortedUids(this->user_, inbox.mailbox_id(), inbox.uidvalidity(), Uids({{1, 5}}),
                       google::protobuf::RepeatedPtrField<v1::SortCriterion>())
          .status()));
}

// --- Change log and events ----------------------------------------------------------

// The mailbox-list events of `events`, as "KIND name[<old]" strings, each checked
// to be an announcement for `user` (no mailbox, no MODSEQ).
std::vector<std::string> ListEvents(const std::vector<v1::ChangeEvent>& events, uint64_t user) {
  std::vector<std::string> out;
  for (const v1::ChangeEvent& event : events) {
    if (!event.has_mailbox_list()) {
      continue;
    }
    EXPECT_EQ(event.user_id(), user);
    EXPECT_EQ(event.mailbox_id(), 0u);
    EXPECT_EQ(event.modseq(), 0u);
    const v1::ChangeEvent::MailboxListChanged& change = event.mailbox_list();
    std::string line = absl::StrCat(v1::ChangeEvent::MailboxListChanged::Kind_Name(change.kind()),
                                     " ", change.name());
    if (!change.old_name().empty()) {
      absl::StrAppend(&line, "<", change.old_name());
    }
    out.push_back(std::move(line));
  }
  return out;
}

TYPED_TEST(StoreConformanceTest, MailboxListChangesArePublishedButNotLogged) {
  this->ClearEvents();
  ASSERT_TRUE(this->Create("a/b").ok());  // the superior too (RFC 3501 §6.3.3)
  ASSERT_TRUE(this->Create("a/b/c").ok());
  v1::SetSubscriptionRequest subscribe;
  subscribe.set_name("a/b");
  subscribe.set_subscribed(true);
  ASSERT_TRUE(this->store_->SetSubscription(this->user_, subscribe).ok());
  ASSERT_TRUE(this->store_->SetSubscription(this->user_, subscribe).ok());  // no change
  v1::RenameMailboxRequest rename;
  rename.set_from("a/b");
  rename.set_to("x/y");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, rename).ok());
  v1::DeleteMailboxRequest remove;
  remove.set_name("x/y/c");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, remove).ok());
  subscribe.set_subscribed(false);
  ASSERT_TRUE(this->store_->SetSubscription(this->user_, subscribe).ok());
  rename.set_from("INBOX");
  rename.set_to("Old");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, rename).ok());
  EXPECT_THAT(ListEvents(this->Events(), this->user_),
              ElementsAre("CREATED a", "CREATED a/b", "CREATED a/b/c", "SUBSCRIBED a/b",
                          "CREATED x", "RENAMED x/y<a/b", "RENAMED x/y/c<a/b/c",
                          "DELETED x/y/c", "UNSUBSCRIBED a/b", "CREATED Old"));
  for (const v1::ChangeEvent& event : this->Events()) {
    if (event.has_mailbox_list() &&
        event.mailbox_list().kind() != v1::ChangeEvent::MailboxListChanged::SUBSCRIBED &&
        event.mailbox_list().kind() != v1::ChangeEvent::MailboxListChanged::UNSUBSCRIBED) {
      EXPECT_NE(event.mailbox_list().mailbox_id(), 0u) << event.ShortDebugString();
    }
  }
  // Nothing of it is in a mailbox's change log: a feed never replays it.
  v1::OpenResponse renamed = this->OpenBox("x/y");
  std::vector<v1::ChangeEvent> changes;
  ASSERT_TRUE(this->store_->ReadChanges(this->user_, renamed.mailbox_id(), renamed.uidvalidity(),
                                        0, &changes)
                  .ok());
  for (const v1::ChangeEvent& change : changes) {
    EXPECT_FALSE(change.has_mailbox_list());
  }
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM changes WHERE mailbox_id = 0"), 0);
  // Another user's list is not announced as this one's.
  absl::StatusOr<uint64_t> bob = this->store_->CreateUser("bob", "hash");
  ASSERT_TRUE(bob.ok());
  this->ClearEvents();
  v1::CreateMailboxRequest create;
  create.set_name("Bobs");
  ASSERT_TRUE(this->store_->CreateMailbox(*bob, create).ok());
  EXPECT_THAT(ListEvents(this->Events(), *bob), ElementsAre("CREATED Bobs"));
}

// RFC 5465 §5.6, §5.7: SetMetadata announces the entries it changed on the
// user's list feed (a mailbox's, or the server's as ""), after the commit.
TYPED_TEST(StoreConformanceTest, MetadataChangesArePublishedOnTheListFeed) {
  using Change = v1::ChangeEvent::MailboxListChanged;
  auto metadata_events = [this]() {
    std::vector<std::string> out;
    for (const std::string& line : ListEvents(this->Events(), this->user_)) {
      out.push_back(line);
    }
    for (const v1::ChangeEvent& event : this->Events()) {
      if (event.has_mailbox_list() && event.mailbox_list().kind() == Change::METADATA_CHANGED) {
        out.push_back(absl::StrCat(event.mailbox_list().mailbox_id() != 0 ? "id " : "no id ",
                                   absl::StrJoin(event.mailbox_list().entries(), ",")));
      }
    }
    return out;
  };
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  this->ClearEvents();
  v1::SetMetadataRequest set;
  set.set_mailbox("inbox");
  v1::MetadataEntry* comment = set.add_entries();
  comment->set_name("/Private/Comment");
  comment->set_value("hello");
  v1::MetadataEntry* gone = set.add_entries();
  gone->set_name("/shared/none");  // removing what is not there changes nothing
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, set).ok());
  v1::SetMetadataRequest server;
  server.set_mailbox("");
  server.add_entries()->set_name("/private/vendor/x");
  server.mutable_entries(0)->set_value("1");
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, server).ok());
  server.mutable_entries(0)->clear_value();
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, server).ok());
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, server).ok());  // nothing left to remove
  EXPECT_THAT(metadata_events(),
              ElementsAre("METADATA_CHANGED INBOX", "METADATA_CHANGED ",
                          "METADATA_CHANGED ", "id /private/comment", "no id /private/vendor/x",
                          "no id /private/vendor/x"));
  for (const v1::ChangeEvent& event : this->Events()) {
    if (event.has_mailbox_list() && !event.mailbox_list().name().empty()) {
      EXPECT_EQ(event.mailbox_list().mailbox_id(), inbox.mailbox_id());
    }
  }
  // A refused SETMETADATA announces nothing.
  this->ClearEvents();
  server.mutable_entries(0)->set_name("/shared/vendor/x");
  server.mutable_entries(0)->set_value("1");
  EXPECT_EQ(CodeOf(this->store_->SetMetadata(this->user_, server)), v1::NOPERM);
  EXPECT_THAT(metadata_events(), IsEmpty());
  // At the bound the names are carried; past it none (something changed).
  for (size_t count : {kMaxMetadataEventEntries, kMaxMetadataEventEntries + 1}) {
    this->ClearEvents();
    v1::SetMetadataRequest many;
    many.set_mailbox("INBOX");
    for (size_t i = 0; i < count; ++i) {
      v1::MetadataEntry* entry = many.add_entries();
      entry->set_name(absl::StrCat("/private/n", count, "/", i));
      entry->set_value("v");
    }
    ASSERT_TRUE(this->store_->SetMetadata(this->user_, many).ok());
    ASSERT_THAT(ListEvents(this->Events(), this->user_), ElementsAre("METADATA_CHANGED INBOX"));
    for (const v1::ChangeEvent& event : this->Events()) {
      if (event.has_mailbox_list()) {
        EXPECT_EQ(static_cast<size_t>(event.mailbox_list().entries_size()),
                  count == kMaxMetadataEventEntries ? count : 0u);
      }
    }
  }
}

TYPED_TEST(StoreConformanceTest, ChangeLogMatchesEventsInModseqOrder) {
  v1::OpenResponse box = this->OpenBox("INBOX");
  const uint64_t start = box.highest_modseq();
  this->ClearEvents();
  this->AppendSome("INBOX", 3);
  v1::StoreRequest store;
  store.set_mailbox_id(box.mailbox_id());
  store.set_uidvalidity(box.uidvalidity());
  *store.mutable_uids() = Uids({{1, 2}});
  store.set_mode(v1::StoreRequest::ADD);
  store.add_flags("\\Deleted");
  ASSERT_TRUE(this->store_->StoreFlags(this->user_, store).ok());
  v1::ExpungeRequest expunge;
  expunge.set_mailbox_id(box.mailbox_id());
  expunge.set_uidvalidity(box.uidvalidity());
  ASSERT_TRUE(this->store_->Expunge(this->user_, expunge).ok());

  std::vector<v1::ChangeEvent> changes;
  ASSERT_TRUE(
      this->store_->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(), start, &changes)
          .ok());
  ASSERT_EQ(changes.size(), 3u);
  ASSERT_EQ(this->Events().size(), 3u);
  for (size_t i = 0; i < changes.size(); ++i) {
    EXPECT_EQ(changes[i].SerializeAsString(), this->Events()[i].SerializeAsString());
    EXPECT_EQ(changes[i].modseq(), start + 1 + i);
    EXPECT_EQ(changes[i].mailbox_id(), box.mailbox_id());
  }
  EXPECT_TRUE(changes[0].has_added());
  EXPECT_EQ(changes[0].added().uidnext(), 4u);
  EXPECT_TRUE(changes[1].has_flags_changed());
  EXPECT_THAT(Expand(changes[2].expunged().uids()), ElementsAre(1, 2));

  std::vector<v1::ChangeEvent> tail;
  ASSERT_TRUE(
      this->store_->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(), start + 2, &tail)
          .ok());
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0].modseq(), start + 3);
  EXPECT_EQ(CodeOf(this->store_->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity() + 1,
                                             0, &tail)),
            v1::MAILBOX_CHANGED);
}

TYPED_TEST(StoreConformanceTest, ChangeLogIsPrunedAndOldResumePointsResync) {
  StoreOptions options;
  options.change_log_retention = 5;
  this->Reopen(options);
  v1::OpenResponse box = this->OpenBox("INBOX");
  for (int i = 0; i < 12; ++i) {
    this->AppendSome("INBOX", 1);
  }
  const uint64_t highest = this->OpenBox("INBOX").highest_modseq();
  std::vector<v1::ChangeEvent> changes;
  ASSERT_TRUE(
      this->store_
          ->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(), highest - 5, &changes)
          .ok());
  EXPECT_EQ(changes.size(), 5u);
  changes.clear();
  absl::Status status = this->store_->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(),
                                                  highest - 6, &changes);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CodeOf(status), v1::RESYNC);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM changes"), 5);
}

TYPED_TEST(StoreConformanceTest, ClaimRecentGivesEachArrivalToOneSession) {
  this->AppendSome("INBOX", 1);
  v1::OpenResponse box = this->OpenBox("INBOX");  // claims UID 1
  this->AppendSome("INBOX", 3);                    // UIDs 2..4 arrive
  EXPECT_EQ(this->StatusOf("INBOX").recent(), 3u);
  v1::ClaimRecentRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  request.set_up_to_uid(3);
  auto first = this->store_->ClaimRecent(this->user_, request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(Expand(first->claimed()), ElementsAre(2, 3));
  auto second = this->store_->ClaimRecent(this->user_, request);  // another session
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->claimed().ranges_size(), 0);
  // STATUS counts what no session has claimed (RFC 3501 §6.3.10).
  EXPECT_EQ(this->StatusOf("INBOX").recent(), 1u);
  request.set_up_to_uid(100);  // past UIDNEXT: only what exists
  auto rest = this->store_->ClaimRecent(this->user_, request);
  ASSERT_TRUE(rest.ok());
  EXPECT_THAT(Expand(rest->claimed()), ElementsAre(4));
  EXPECT_EQ(this->StatusOf("INBOX").recent(), 0u);
  this->AppendSome("INBOX", 1);  // UID 5 is not lost to the claim that went past it
  EXPECT_THAT(Expand(this->OpenBox("INBOX").recent_uids()), ElementsAre(5));
  request.set_uidvalidity(box.uidvalidity() + 1);
  EXPECT_EQ(CodeOf(this->store_->ClaimRecent(this->user_, request).status()),
            v1::MAILBOX_CHANGED);
}

// An IMAP4rev2 session (RFC 9051 has no \Recent) opens read-write without
// taking the messages from a session that has it.
TYPED_TEST(StoreConformanceTest, OpenKeepingRecentClaimsNothing) {
  this->AppendSome("INBOX", 2);
  v1::OpenRequest request;
  request.set_name("INBOX");
  request.set_keep_recent(true);
  auto kept = this->store_->Open(this->user_, request);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_FALSE(kept->read_only());
  EXPECT_EQ(kept->recent_uids().ranges_size(), 0);
  EXPECT_EQ(this->StatusOf("INBOX").recent(), 2u);
  EXPECT_THAT(Expand(this->OpenBox("INBOX").recent_uids()), ElementsAre(1, 2));
}

TYPED_TEST(StoreConformanceTest, VanishedNamesExpungesAfterAModseq) {
  this->AppendSome("INBOX", 6);
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->DeleteAndExpunge(box, Uids({{2, 2}}));
  const uint64_t after_first = this->OpenBox("INBOX").highest_modseq();
  this->DeleteAndExpunge(box, Uids({{4, 5}}));
  v1::VanishedRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  request.set_since_modseq(box.highest_modseq());
  auto all = this->store_->Vanished(this->user_, request);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->exact());
  EXPECT_THAT(Expand(all->uids()), ElementsAre(2, 4, 5));
  request.set_since_modseq(after_first);
  EXPECT_THAT(Expand(this->store_->Vanished(this->user_, request)->uids()), ElementsAre(4, 5));
  request.set_since_modseq(box.highest_modseq());
  *request.mutable_uids() = Uids({{1, 4}});
  EXPECT_THAT(Expand(this->store_->Vanished(this->user_, request)->uids()), ElementsAre(2, 4));
  request.set_uidvalidity(box.uidvalidity() + 1);
  EXPECT_EQ(CodeOf(this->store_->Vanished(this->user_, request).status()), v1::MAILBOX_CHANGED);
}

TYPED_TEST(StoreConformanceTest, VanishedPastTheLogNamesEveryAbsentUid) {
  StoreOptions options;
  options.change_log_retention = 3;
  this->Reopen(options);
  this->AppendSome("INBOX", 5);
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->DeleteAndExpunge(box, Uids({{1, 1}}));
  const uint64_t old = this->OpenBox("INBOX").highest_modseq();
  this->DeleteAndExpunge(box, Uids({{3, 3}}));
  for (int i = 0; i < 4; ++i) {
    this->AppendSome("INBOX", 1);  // UIDs 6..9 push the expunges out of the log
  }
  v1::VanishedRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  request.set_since_modseq(old);
  auto past = this->store_->Vanished(this->user_, request);
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_FALSE(past->exact());
  // UID 1 went before `old`; the answer may name it (RFC 7162 §3.2.5.2).
  EXPECT_THAT(Expand(past->uids()), ElementsAre(1, 3));
  *request.mutable_uids() = Uids({{2, 100}});
  EXPECT_THAT(Expand(this->store_->Vanished(this->user_, request)->uids()), ElementsAre(3));
}

TYPED_TEST(StoreConformanceTest, ConcurrentWritersKeepEventOrder) {
  v1::OpenResponse box = this->OpenBox("INBOX");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 10; ++i) {
        std::vector<NewMessage> messages;
        messages.push_back(Message(absl::StrCat(kSimple, t, "-", i)));
        EXPECT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
        v1::StatusRequest status;
        status.set_name("INBOX");
        EXPECT_TRUE(this->store_->Status(this->user_, status).ok());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  ASSERT_EQ(this->Events().size(), 40u);
  for (size_t i = 1; i < this->Events().size(); ++i) {
    EXPECT_EQ(this->Events()[i].modseq(), this->Events()[i - 1].modseq() + 1);
  }
  EXPECT_EQ(this->OpenBox("INBOX").messages(), 40u);
}

TYPED_TEST(StoreConformanceTest, ConcurrentWritesThatFailLeaveTheOthersCommitted) {
  // Writers that overlap share transactions (group commit): the failing ones must
  // leave no trace and take nothing of the others with them.
  constexpr int kThreads = 6;
  constexpr int kRounds = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < kRounds; ++i) {
        EXPECT_TRUE(this->Create(absl::StrCat("box-", t, "-", i)).ok());
        EXPECT_EQ(CodeOf(this->Create("INBOX")), v1::ALREADYEXISTS);
        std::vector<NewMessage> messages;
        messages.push_back(Message(absl::StrCat(kSimple, t, "-", i)));
        EXPECT_EQ(
            CodeOf(this->store_->Append(this->user_, "nowhere", std::move(messages)).status()),
            v1::TRYCREATE);
        std::vector<NewMessage> kept;
        kept.push_back(Message(absl::StrCat(kSimple, t, "-", i)));
        EXPECT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(kept)).ok());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  // Durable: all of it is there after the store is opened again.
  this->Reopen();
  v1::ListMailboxesRequest list;
  list.add_patterns("box-*");
  auto boxes = this->store_->ListMailboxes(this->user_, list);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_EQ(boxes->mailboxes_size(), kThreads * kRounds);
  EXPECT_EQ(this->OpenBox("INBOX").messages(), static_cast<uint32_t>(kThreads * kRounds));
  std::map<uint64_t, uint64_t> last_modseq;
  for (const v1::ChangeEvent& event : this->Events()) {
    if (event.modseq() == 0) {
      continue;  // an announcement, not a change
    }
    EXPECT_GT(event.modseq(), last_modseq[event.mailbox_id()]);
    last_modseq[event.mailbox_id()] = event.modseq();
  }
}

// --- Quotas (RFC 9208) ---------------------------------------------------------------

// A message of exactly `octets` octets (at least a header and a blank line).
std::string MessageOfSize(size_t octets, int serial) {
  std::string message = absl::StrCat("Subject: ", serial, "\r\n\r\n");
  EXPECT_LE(message.size(), octets);
  message.append(octets - message.size(), 'x');
  return message;
}

TYPED_TEST(StoreConformanceTest, QuotaUsageFollowsEveryWriteAndRootsAppearWithALimit) {
  v1::GetQuotaRequest root;
  root.set_root("");
  EXPECT_EQ(CodeOf(this->store_->GetQuota(this->user_, root).status()), v1::NONEXISTENT);
  v1::GetQuotaRequest of_inbox;
  of_inbox.set_mailbox("INBOX");
  auto none = this->store_->GetQuota(this->user_, of_inbox);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->roots_size(), 0);  // no limit, no root

  auto usage = [this] {
    auto quota = this->store_->GetUserQuota(this->user_);
    EXPECT_TRUE(quota.ok()) << quota.status();
    return quota.ok() ? std::make_pair(quota->storage_octets(), quota->messages())
                      : std::make_pair(uint64_t{0}, uint64_t{0});
  };
  std::vector<NewMessage> messages;
  messages.push_back(Message(MessageOfSize(1000, 1)));
  messages.push_back(Message(MessageOfSize(2000, 2)));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  EXPECT_EQ(usage(), std::make_pair(uint64_t{3000}, uint64_t{2}));
  ASSERT_TRUE(this->Create("Other").ok());
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  v1::CopyRequest copy;
  copy.set_mailbox_id(inbox.mailbox_id());
  copy.set_uidvalidity(inbox.uidvalidity());
  *copy.mutable_uids() = Uids({{1, 2}});
  copy.set_destination("Other");
  ASSERT_TRUE(this->store_->Copy(this->user_, copy).ok());
  // A copy counts again, although its content is stored once.
  EXPECT_EQ(usage(), std::make_pair(uint64_t{6000}, uint64_t{4}));
  v1::MoveRequest move;
  move.set_mailbox_id(inbox.mailbox_id());
  move.set_uidvalidity(inbox.uidvalidity());
  *move.mutable_uids() = Uids({{2, 2}});
  move.set_destination("Other");
  ASSERT_TRUE(this->store_->Move(this->user_, move).ok());
  EXPECT_EQ(usage(), std::make_pair(uint64_t{6000}, uint64_t{4}));
  this->DeleteAndExpunge(inbox, Uids({{1, 1}}));
  EXPECT_EQ(usage(), std::make_pair(uint64_t{5000}, uint64_t{3}));
  v1::DeleteMailboxRequest remove;
  remove.set_name("Other");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, remove).ok());
  EXPECT_EQ(usage(), std::make_pair(uint64_t{0}, uint64_t{0}));
  this->AppendSome("INBOX", 1);
  const uint64_t appended_octets = absl::StrCat(kSimple, "message 0 to INBOX\r\n").size();
  EXPECT_EQ(usage(), std::make_pair(appended_octets, uint64_t{1}));

  v1::QuotaLimits limits;
  limits.set_storage_kib(10);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  auto of_root = this->store_->GetQuota(this->user_, root);
  ASSERT_TRUE(of_root.ok()) << of_root.status();
  EXPECT_THAT(of_root->roots(), ElementsAre(""));
  ASSERT_EQ(of_root->resources_size(), 1);  // only the limited resource
  EXPECT_EQ(of_root->resources(0).name(), "STORAGE");
  EXPECT_EQ(of_root->resources(0).usage(), 1u);  // a part of 1024 octets counts whole
  EXPECT_EQ(of_root->resources(0).limit(), 10u);
  limits.set_messages(50);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  auto inbox_roots = this->store_->GetQuota(this->user_, of_inbox);
  ASSERT_TRUE(inbox_roots.ok()) << inbox_roots.status();
  EXPECT_THAT(inbox_roots->roots(), ElementsAre(""));
  ASSERT_EQ(inbox_roots->resources_size(), 2);
  EXPECT_EQ(inbox_roots->resources(1).name(), "MESSAGE");
  EXPECT_EQ(inbox_roots->resources(1).usage(), 1u);
  EXPECT_EQ(inbox_roots->resources(1).limit(), 50u);
  auto user_quota = this->store_->GetUserQuota(this->user_);
  ASSERT_TRUE(user_quota.ok());
  EXPECT_EQ(user_quota->limits().storage_kib(), 10u);
  EXPECT_EQ(user_quota->limits().messages(), 50u);

  root.set_root("user.alice");
  EXPECT_EQ(CodeOf(this->store_->GetQuota(this->user_, root).status()), v1::NONEXISTENT);
  of_inbox.set_mailbox("Missing");
  EXPECT_EQ(CodeOf(this->store_->GetQuota(this->user_, of_inbox).status()), v1::NONEXISTENT);
  EXPECT_EQ(this->store_->SetQuota("nobody", limits).code(), absl::StatusCode::kNotFound);
  // Clearing the limits removes the root.
  ASSERT_TRUE(this->store_->SetQuota("alice", v1::QuotaLimits()).ok());
  root.set_root("");
  EXPECT_EQ(CodeOf(this->store_->GetQuota(this->user_, root).status()), v1::NONEXISTENT);
}

TYPED_TEST(StoreConformanceTest, WritesThatWouldPassAQuotaStoreNothing) {
  v1::QuotaLimits limits;
  limits.set_messages(3);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  this->AppendSome("INBOX", 2);
  // Two more would make four: refused whole, nothing stored, no UID used.
  std::vector<NewMessage> two;
  two.push_back(Message(MessageOfSize(100, 1)));
  two.push_back(Message(MessageOfSize(100, 2)));
  absl::Status refused = this->store_->Append(this->user_, "INBOX", std::move(two)).status();
  EXPECT_EQ(CodeOf(refused), v1::OVERQUOTA);
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("over quota"));
  v1::OpenResponse inbox = this->OpenBox("INBOX");
  EXPECT_EQ(inbox.messages(), 2u);
  EXPECT_EQ(inbox.uidnext(), 3u);
  this->AppendSome("INBOX", 1);  // exactly at the limit is allowed
  ASSERT_TRUE(this->Create("Archive").ok());
  inbox = this->OpenBox("INBOX");
  v1::CopyRequest copy;
  copy.set_mailbox_id(inbox.mailbox_id());
  copy.set_uidvalidity(inbox.uidvalidity());
  *copy.mutable_uids() = Uids({{1, 1}});
  copy.set_destination("Archive");
  EXPECT_EQ(CodeOf(this->store_->Copy(this->user_, copy).status()), v1::OVERQUOTA);
  EXPECT_EQ(this->OpenBox("Archive").messages(), 0u);
  // Lowered below the usage: moving and expunging still work, adding does not.
  limits.set_messages(1);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  v1::MoveRequest move;
  move.set_mailbox_id(inbox.mailbox_id());
  move.set_uidvalidity(inbox.uidvalidity());
  *move.mutable_uids() = Uids({{1, 2}});
  move.set_destination("Archive");
  ASSERT_TRUE(this->store_->Move(this->user_, move).ok());
  EXPECT_EQ(this->OpenBox("Archive").messages(), 2u);
  this->DeleteAndExpunge(inbox, Uids({{3, 3}}));
  std::vector<NewMessage> one;
  one.push_back(Message(MessageOfSize(100, 3)));
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(one)).status()),
            v1::OVERQUOTA);

  // STORAGE: a revision may shrink a message past a lowered limit, not grow it.
  limits.clear_messages();
  limits.set_storage_kib(4);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  v1::OpenResponse archive = this->OpenBox("Archive");
  this->DeleteAndExpunge(archive, Uids({{1, 2}}));
  std::vector<NewMessage> three_kib;
  three_kib.push_back(Message(MessageOfSize(3072, 4)));
  auto appended = this->store_->Append(this->user_, "INBOX", std::move(three_kib));
  ASSERT_TRUE(appended.ok()) << appended.status();
  const uint32_t uid = appended->uids(0);
  std::vector<NewMessage> two_kib;
  two_kib.push_back(Message(MessageOfSize(2048, 5)));
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(two_kib)).status()),
            v1::OVERQUOTA);
  v1::ReviseHeader header;
  header.set_mailbox("INBOX");
  header.set_uid(uid);
  EXPECT_EQ(CodeOf(this->store_->Revise(this->user_, header, MessageOfSize(5000, 6)).status()),
            v1::OVERQUOTA);
  auto shrunk = this->store_->Revise(this->user_, header, MessageOfSize(3000, 7));
  ASSERT_TRUE(shrunk.ok()) << shrunk.status();
  auto quota = this->store_->GetUserQuota(this->user_);
  ASSERT_TRUE(quota.ok());
  EXPECT_EQ(quota->storage_octets(), 3000u);
  EXPECT_EQ(quota->messages(), 1u);
}

TYPED_TEST(StoreConformanceTest, ParallelAppendsRacingForTheLastBytesStopAtTheLimit) {
  // Room for exactly kFit messages of 1 KiB; more threads than that each try
  // several. Exactly kFit succeed, whatever the interleaving.
  constexpr int kFit = 7;
  constexpr int kThreads = 6;
  constexpr int kTries = 4;
  v1::QuotaLimits limits;
  limits.set_storage_kib(kFit);
  ASSERT_TRUE(this->store_->SetQuota("alice", limits).ok());
  std::atomic<int> stored{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &stored, &refused] {
      for (int i = 0; i < kTries; ++i) {
        std::vector<NewMessage> one;
        one.push_back(Message(MessageOfSize(1024, t * 100 + i)));
        absl::Status status =
            this->store_->Append(this->user_, "INBOX", std::move(one)).status();
        if (status.ok()) {
          ++stored;
        } else {
          EXPECT_EQ(CodeOf(status), v1::OVERQUOTA) << status;
          ++refused;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(stored.load(), kFit);
  EXPECT_EQ(refused.load(), kThreads * kTries - kFit);
  this->Reopen();
  EXPECT_EQ(this->OpenBox("INBOX").messages(), static_cast<uint32_t>(kFit));
  auto quota = this->store_->GetUserQuota(this->user_);
  ASSERT_TRUE(quota.ok());
  EXPECT_EQ(quota->storage_octets(), kFit * 1024u);
}

TYPED_TEST(StoreConformanceTest, StatusCountsTheStorageAnExpungeWouldFree) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(MessageOfSize(1000, 1)));
  messages.push_back(Message(MessageOfSize(300, 2), {"\\Deleted"}));
  messages.push_back(Message(MessageOfSize(200, 3), {"\\Deleted"}));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::StatusResponse status = this->StatusOf("INBOX");
  EXPECT_EQ(status.deleted(), 2u);
  EXPECT_EQ(status.deleted_storage(), 500u);
  EXPECT_EQ(status.size(), 1500u);
}

// --- Annotations (RFC 5464) ----------------------------------------------------------

TYPED_TEST(StoreConformanceTest, AnnotationsAreSetReadByDepthAndLeaveWithTheirMailbox) {
  ASSERT_TRUE(this->Create("Projects").ok());
  v1::SetMetadataRequest set;
  set.set_mailbox("Projects");
  auto add = [&set](const std::string& name, std::optional<std::string> value) {
    v1::MetadataEntry* entry = set.add_entries();
    entry->set_name(name);
    if (value.has_value()) {
      entry->set_value(*value);
    }
  };
  add("/private/Comment", "mine");
  add("/shared/comment", "ours");
  add("/private/filters/values/small", "SMALLER 5000");
  add("/private/filters/values/boss", std::string(2000, 'b'));
  add("/private/filters/values/deep/er", "x");
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, set).ok());
  auto get = [this](const std::string& mailbox, std::vector<std::string> names, int depth,
                    uint64_t max_size) {
    v1::GetMetadataRequest request;
    request.set_mailbox(mailbox);
    for (auto& n : names) request.add_entries(n);
    request.set_depth(depth);
    request.set_max_size(max_size);
    auto response = this->store_->GetMetadata(this->user_, request);
    EXPECT_TRUE(response.ok()) << response.status();
    std::vector<std::string> out;
    if (response.ok()) {
      for (const auto& e : response->entries()) out.push_back(e.name() + "=" + e.value());
      if (response->longest_left_out() > 0) {
        out.push_back(absl::StrCat("longest=", response->longest_left_out()));
      }
    }
    return out;
  };
  // Names compare without case and come back in lower case.
  EXPECT_THAT(get("Projects", {"/PRIVATE/comment", "/shared/comment", "/private/none"}, 0, 0),
              ElementsAre("/private/comment=mine", "/shared/comment=ours"));
  EXPECT_THAT(get("Projects", {"/private/filters/values"}, 1, 100),
              ElementsAre("/private/filters/values/small=SMALLER 5000", "longest=2000"));
  EXPECT_EQ(get("Projects", {"/private/filters"}, -1, 0).size(), 3u);
  EXPECT_TRUE(get("INBOX", {"/private/comment"}, 0, 0).empty());  // per mailbox
  // Server entries: private ones are the user's; shared ones are the operator's.
  v1::SetMetadataRequest server;
  v1::MetadataEntry* note = server.add_entries();
  note->set_name("/private/vendor/x/note");
  note->set_value("server-wide, mine");
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, server).ok());
  EXPECT_THAT(get("", {"/private/vendor/x/note"}, 0, 0),
              ElementsAre("/private/vendor/x/note=server-wide, mine"));
  note->set_name("/shared/comment");
  EXPECT_EQ(CodeOf(this->store_->SetMetadata(this->user_, server)), v1::NOPERM);
  // NIL removes; a failing request changes nothing.
  v1::SetMetadataRequest mixed;
  mixed.set_mailbox("Projects");
  v1::MetadataEntry* removed = mixed.add_entries();
  removed->set_name("/private/comment");
  v1::MetadataEntry* bad = mixed.add_entries();
  bad->set_name("/public/comment");
  bad->set_value("x");
  EXPECT_EQ(CodeOf(this->store_->SetMetadata(this->user_, mixed)), v1::BAD_REQUEST);
  EXPECT_EQ(get("Projects", {"/private/comment"}, 0, 0).size(), 1u);
  mixed.mutable_entries()->RemoveLast();
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, mixed).ok());
  EXPECT_TRUE(get("Projects", {"/private/comment"}, 0, 0).empty());
  // Entries go with their mailbox: one created again under the name has none.
  v1::DeleteMailboxRequest remove;
  remove.set_name("Projects");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, remove).ok());
  ASSERT_TRUE(this->Create("Projects").ok());
  EXPECT_TRUE(get("Projects", {"/private/filters"}, -1, 0).empty());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM metadata"), 1);  // the server note
  for (const char* invalid : {"/private", "/private/", "/private//a", "/shared/a*", "comment"}) {
    v1::GetMetadataRequest request;
    request.add_entries(invalid);
    EXPECT_EQ(CodeOf(this->store_->GetMetadata(this->user_, request).status()),
              v1::BAD_REQUEST)
        << invalid;
  }
  v1::GetMetadataRequest missing;
  missing.set_mailbox("Nowhere");
  missing.add_entries("/private/comment");
  EXPECT_EQ(CodeOf(this->store_->GetMetadata(this->user_, missing).status()), v1::NONEXISTENT);
}

TYPED_TEST(StoreConformanceTest, AnnotationLimitsAreExact) {
  this->limits_.max_metadata_value_octets = 1024;
  this->limits_.max_metadata_entries = 10;
  this->limits_.max_metadata_octets = 1 << 20;
  this->Reopen();
  v1::SetMetadataRequest set;
  set.set_mailbox("INBOX");
  v1::MetadataEntry* entry = set.add_entries();
  entry->set_name("/private/big");
  entry->set_value(std::string(1024, 'v'));  // exactly the limit
  ASSERT_TRUE(this->store_->SetMetadata(this->user_, set).ok());
  entry->set_value(std::string(1025, 'v'));
  absl::Status too_big = this->store_->SetMetadata(this->user_, set);
  EXPECT_EQ(CodeOf(too_big), v1::METADATA_MAXSIZE);
  EXPECT_EQ(v1::DetailOf(too_big).limit(), 1024u);
  // Ten entries in all fit; the eleventh is TOOMANY, and nothing of it is kept.
  for (int i = 1; i < 10; ++i) {
    entry->set_name(absl::StrCat("/private/n", i));
    entry->set_value("v");
    ASSERT_TRUE(this->store_->SetMetadata(this->user_, set).ok()) << i;
  }
  entry->set_name("/private/eleventh");
  EXPECT_EQ(CodeOf(this->store_->SetMetadata(this->user_, set)), v1::METADATA_TOOMANY);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM metadata"), 10);
  // Replacing a value is no new entry.
  entry->set_name("/private/n1");
  entry->set_value("w");
  EXPECT_TRUE(this->store_->SetMetadata(this->user_, set).ok());
}

// --- Search ---------------------------------------------------------------------------

TYPED_TEST(StoreConformanceTest, SearchUsesEvaluator) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Seen"}));
  messages.push_back(Message(kMultipart));
  messages.push_back(Message(kSimple));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::SearchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  request.mutable_key()->set_not_flag("\\Seen");
  auto unseen = this->store_->Search(this->user_, request);
  ASSERT_TRUE(unseen.ok()) << unseen.status();
  EXPECT_THAT(Expand(unseen->uids()), ElementsAre(2, 3));
  EXPECT_EQ(unseen->highest_modseq(), box.highest_modseq());

  request.mutable_key()->set_body("part one");
  EXPECT_THAT(Expand(this->store_->Search(this->user_, request)->uids()), ElementsAre(2));
  v1::SearchKey* and_key = request.mutable_key()->mutable_and_()->add_keys();
  *and_key->mutable_uid() = Uids({{3, 3}});
  request.mutable_key()->mutable_and_()->add_keys()->mutable_header()->set_field("Subject");
  request.mutable_key()->mutable_and_()->mutable_keys(1)->mutable_header()->set_value("HELLO");
  EXPECT_THAT(Expand(this->store_->Search(this->user_, request)->uids()), ElementsAre(3));

  request.set_charset("KOI8-R");
  EXPECT_EQ(CodeOf(this->store_->Search(this->user_, request).status()), v1::BADCHARSET);
  request.set_charset("UTF-8");
  request.set_uidvalidity(box.uidvalidity() + 1);
  EXPECT_EQ(CodeOf(this->store_->Search(this->user_, request).status()), v1::MAILBOX_CHANGED);
}

TYPED_TEST(StoreConformanceTest, SearchStopsWhenItsBudgetIsSpentOrItsCallerIsGone) {
  std::string big = "Subject: big\r\nContent-Type: text/plain\r\n\r\n";
  big.append(1 << 20, 'z');
  std::vector<NewMessage> messages;
  for (int i = 0; i < 4; ++i) messages.push_back(Message(big));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::SearchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  for (int i = 0; i < 4; ++i) {
    v1::SearchKey* key = request.mutable_key()->mutable_and_()->add_keys();
    key->mutable_not_()->set_text("absent " + std::to_string(i));
  }
  // 4 keys x 4 MiB = 16 MiB of scanning.
  WorkBudget small(8 << 20, absl::InfiniteFuture(), {});
  auto over = this->store_->Search(this->user_, request, small);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CodeOf(over.status()), v1::LIMIT);

  WorkBudget enough(32 << 20, absl::InfiniteFuture(), {});
  auto within = this->store_->Search(this->user_, request, enough);
  ASSERT_TRUE(within.ok()) << within.status();
  EXPECT_THAT(Expand(within->uids()), ElementsAre(1, 2, 3, 4));

  WorkBudget gone(0, absl::InfiniteFuture(), [] { return true; });
  auto cancelled = this->store_->Search(this->user_, request, gone);
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LE(gone.scanned_octets(), 2 * WorkBudget::kPollOctets);

  // With room for less than one message's content, searches still run, one
  // large message at a time.
  this->limits_.max_search_memory_octets = 1 << 20;
  this->Reopen();
  WorkBudget tight(0, absl::Now() + absl::Seconds(30), {});
  auto one_at_a_time = this->store_->Search(this->user_, request, tight);
  ASSERT_TRUE(one_at_a_time.ok()) << one_at_a_time.status();
  EXPECT_THAT(Expand(one_at_a_time->uids()), ElementsAre(1, 2, 3, 4));

  // The request's shape is checked against the store's limits first.
  this->limits_.max_search_keys = 4;
  this->Reopen();
  auto too_many = this->store_->Search(this->user_, request);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CodeOf(too_many.status()), v1::LIMIT);
}

// --- Hardening: ids, statement cache, flags, rename, search -------------------------

TYPED_TEST(StoreConformanceTest, UserIdsAreNeverReused) {
  auto a = this->store_->CreateUser("a", "h");
  auto b = this->store_->CreateUser("b", "h");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(this->store_->DeleteUser("b").ok());
  auto c = this->store_->CreateUser("c", "h");
  ASSERT_TRUE(c.ok());
  // A session token naming b's id must never act for c.
  EXPECT_GT(*c, *b);
  EXPECT_EQ(this->store_->FindUserById(*b).status().code(), absl::StatusCode::kNotFound);

  // Also across a reopen (the counter is in the database, not in memory).
  ASSERT_TRUE(this->store_->DeleteUser("c").ok());
  this->Reopen();
  auto d = this->store_->CreateUser("d", "h");
  ASSERT_TRUE(d.ok());
  EXPECT_GT(*d, *c);
}

TYPED_TEST(StoreConformanceTest, MailboxIdsAreNeverReused) {
  // Change events name mailboxes by id alone: a new mailbox must not take the id
  // (and restart the MODSEQs) of a deleted one.
  ASSERT_TRUE(this->Create("x").ok());
  const uint64_t x = this->OpenBox("x").mailbox_id();
  v1::DeleteMailboxRequest del;
  del.set_name("x");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, del).ok());
  this->Reopen();
  ASSERT_TRUE(this->Create("y").ok());
  EXPECT_GT(this->OpenBox("y").mailbox_id(), x);
  // Deleting a user and creating another does not recycle the INBOX id either.
  const uint64_t inbox = this->OpenBox("INBOX").mailbox_id();
  auto other = this->store_->CreateUser("other", "h");
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(this->store_->DeleteUser("other").ok());
  auto again = this->store_->CreateUser("again", "h");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM mailboxes WHERE user_id = (SELECT max(id) FROM "
                            "users) AND id > (SELECT max(id) FROM mailboxes WHERE name = 'y')"),
            1);
  EXPECT_GT(this->OpenBox("y").mailbox_id(), inbox);
}

TYPED_TEST(StoreConformanceTest, RemovingAKeywordDoesNotAddItToFlags) {
  this->AppendSome("INBOX", 1, {"\\Seen"});
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::StoreRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 1}});
  request.set_mode(v1::StoreRequest::REMOVE);
  request.add_flags("\\Seen");
  request.add_flags("NeverSet");
  auto response = this->store_->StoreFlags(this->user_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->changed_size(), 1);
  EXPECT_THAT(this->OpenBox("INBOX").flags(), ::testing::Not(::testing::Contains("NeverSet")));
}

TYPED_TEST(StoreConformanceTest, RenameInboxToItsOwnInferior) {
  this->AppendSome("INBOX", 2);
  v1::RenameMailboxRequest request;
  request.set_from("INBOX");
  request.set_to("INBOX/old");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, request).ok());
  EXPECT_EQ(this->OpenBox("INBOX").messages(), 0u);
  EXPECT_EQ(this->OpenBox("INBOX/old").messages(), 2u);
  // Other mailboxes still cannot move under themselves.
  ASSERT_TRUE(this->Create("a").ok());
  request.set_from("a");
  request.set_to("a/b");
  EXPECT_EQ(CodeOf(this->store_->RenameMailbox(this->user_, request)), v1::CANNOT);
}

TYPED_TEST(StoreConformanceTest, SearchUidSetsOfManyUnsortedRangesAndEmptySets) {
  // Over the default of max_search_uid_ranges (which a gateway's line length
  // keeps far below): this test is about the evaluation of many ranges.
  this->limits_.max_search_uid_ranges = 200000;
  this->Reopen();
  this->AppendSome("INBOX", 40);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::SearchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  // Every odd UID from 4294967295 down, as single ranges in descending order,
  // under NOT so that the store cannot pre-filter by them.
  v1::UidSet* set = request.mutable_key()->mutable_not_()->mutable_uid();
  for (uint32_t uid = 4294967295u; uid > 4294967295u - 200000; uid -= 2) {
    v1::UidRange* r = set->add_ranges();
    r->set_first(uid);
    r->set_last(uid);
  }
  for (int uid = 39; uid >= 1; uid -= 2) {
    v1::UidRange* r = set->add_ranges();
    r->set_first(uid);
    r->set_last(uid);
  }
  v1::UidRange* all = set->add_ranges();  // overlapping ranges are merged
  all->set_first(38);
  all->set_last(40);
  auto response = this->store_->Search(this->user_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  std::vector<uint32_t> expected;
  for (uint32_t uid = 2; uid <= 36; uid += 2) {
    expected.push_back(uid);
  }
  EXPECT_EQ(Expand(response->uids()), expected);

  // An empty UID set (a sequence set that resolved to nothing) matches nothing.
  request.mutable_key()->mutable_uid();
  response = this->store_->Search(this->user_, request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->uids().ranges_size(), 0);

  // 1:4294967295 costs one range, not four billion UIDs.
  *request.mutable_key()->mutable_uid() = Uids({{1, 4294967295u}});
  response = this->store_->Search(this->user_, request);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(Expand(response->uids()).size(), 40u);
}

TYPED_TEST(StoreConformanceTest, ModseqsBeyond63BitsNeverBindNegative) {
  this->AppendSome("INBOX", 2);
  v1::OpenResponse box = this->OpenBox("INBOX");
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(box.mailbox_id());
  fetch.set_uidvalidity(box.uidvalidity());
  *fetch.mutable_uids() = Uids({{1, 4294967295u}});
  fetch.set_changed_since(uint64_t{1} << 63);
  CollectingSink sink;
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, fetch, sink)), v1::BAD_REQUEST);
  EXPECT_TRUE(sink.items.empty());

  std::vector<v1::ChangeEvent> changes;
  ASSERT_TRUE(this->store_
                  ->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(), uint64_t{1} << 63,
                                &changes)
                  .ok());
  EXPECT_THAT(changes, IsEmpty());
  ASSERT_TRUE(this->store_
                  ->ReadChanges(this->user_, box.mailbox_id(), box.uidvalidity(),
                                box.highest_modseq(), &changes)
                  .ok());
  EXPECT_THAT(changes, IsEmpty());
}

TYPED_TEST(StoreConformanceTest, AppendRejectsInternalDatesImapCannotExpress) {
  NewMessage message = Message(kSimple);
  message.has_internal_date = true;
  message.internal_date_unix = 253402300800;  // 10000-01-01
  std::vector<NewMessage> messages;
  messages.push_back(message);
  EXPECT_EQ(CodeOf(this->store_->Append(this->user_, "INBOX", std::move(messages)).status()),
            v1::BAD_REQUEST);
  message.internal_date_unix = 253402300799;  // 9999-12-31T23:59:59Z
  messages.clear();
  messages.push_back(message);
  EXPECT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
}

TYPED_TEST(StoreConformanceTest, ReadersAreReusableAfterCancelledFetchAndErrors) {
  this->AppendSome("INBOX", 3);
  v1::OpenResponse box = this->OpenBox("INBOX");
  class CancelAfterOne : public FetchSink {
   public:
    bool Send(const v1::FetchResponse&) override { return ++sent < 1; }
    int sent = 0;
  };
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(box.mailbox_id());
  fetch.set_uidvalidity(box.uidvalidity());
  *fetch.mutable_uids() = Uids({{1, 3}});
  fetch.add_sections();  // BODY[]
  for (int i = 0; i < 8; ++i) {
    CancelAfterOne sink;
    EXPECT_EQ(this->store_->Fetch(this->user_, fetch, sink).code(), absl::StatusCode::kCancelled);
    v1::StatusRequest bad;
    bad.set_name("nope");
    EXPECT_EQ(CodeOf(this->store_->Status(this->user_, bad).status()), v1::NONEXISTENT);
  }
  // A reader left inside its snapshot would fail to BEGIN or show stale data.
  this->AppendSome("INBOX", 1);
  v1::StatusRequest status;
  status.set_name("INBOX");
  for (int i = 0; i < 8; ++i) {
    auto response = this->store_->Status(this->user_, status);
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->messages(), 4u);
  }
}

// --- Expunged messages stay fetchable (RFC 3501 §7.4.1) -------------------------

std::vector<uint32_t> UidsOf(const std::vector<v1::FetchedMetadata>& meta) {
  std::vector<uint32_t> out;
  for (const auto& m : meta) {
    out.push_back(m.uid());
  }
  return out;
}

TYPED_TEST(StoreConformanceTest, ExpungedMessagesStayFetchableWithIncludeExpunged) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Flagged"}));
  messages.push_back(Message(kMultipart));
  messages.push_back(Message(kMultipart, {"Later"}));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  CollectingSink before;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, false), before).ok());
  ASSERT_EQ(before.Metadata().size(), 3u);

  this->DeleteAndExpunge(box, Uids({{1, 1}, {3, 3}}));

  CollectingSink without;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, false), without).ok());
  EXPECT_THAT(UidsOf(without.Metadata()), ElementsAre(2));

  CollectingSink with;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, true), with).ok());
  auto meta = with.Metadata();
  // Retained and live messages merge into one UID order.
  ASSERT_THAT(UidsOf(meta), ElementsAre(1, 2, 3));
  EXPECT_TRUE(meta[0].expunged());
  EXPECT_FALSE(meta[1].expunged());
  EXPECT_TRUE(meta[2].expunged());
  // Everything but the flags (\Deleted was set before the expunge, at a new
  // MODSEQ) is exactly what the live message gave.
  for (int i : {0, 2}) {
    v1::FetchedMetadata expected = before.Metadata()[i];
    expected.add_flags("\\Deleted");
    expected.set_expunged(true);
    v1::FetchedMetadata actual = meta[i];
    EXPECT_GT(actual.modseq(), expected.modseq());
    actual.clear_modseq();
    expected.clear_modseq();
    std::vector<std::string> actual_flags(actual.flags().begin(), actual.flags().end());
    std::vector<std::string> expected_flags(expected.flags().begin(), expected.flags().end());
    EXPECT_THAT(actual_flags, ::testing::UnorderedElementsAreArray(expected_flags));
    actual.clear_flags();
    expected.clear_flags();
    EXPECT_EQ(actual.SerializeAsString(), expected.SerializeAsString()) << "UID " << meta[i].uid();
    for (uint32_t section = 0; section < 5; ++section) {
      EXPECT_EQ(with.Section(meta[i].uid(), section), before.Section(meta[i].uid(), section))
          << "UID " << meta[i].uid() << " section " << section;
      EXPECT_EQ(with.Chunks(meta[i].uid(), section).size(),
                before.Chunks(meta[i].uid(), section).size());
    }
  }
  EXPECT_EQ(with.Section(1, 0), kSimple);
  EXPECT_EQ(with.Section(3, 3), "hello binary");

  // A set naming only expunged UIDs, and CHANGEDSINCE, work as for live ones.
  v1::FetchRequest only = FetchEverything(box, true);
  *only.mutable_uids() = Uids({{3, 3}});
  CollectingSink third;
  ASSERT_TRUE(this->store_->Fetch(this->user_, only, third).ok());
  EXPECT_THAT(UidsOf(third.Metadata()), ElementsAre(3));
  only.set_changed_since(meta[2].modseq());
  CollectingSink unchanged;
  ASSERT_TRUE(this->store_->Fetch(this->user_, only, unchanged).ok());
  EXPECT_TRUE(unchanged.items.empty());

  // Search, Status and Open see only live messages.
  v1::SearchRequest search;
  search.set_mailbox_id(box.mailbox_id());
  search.set_uidvalidity(box.uidvalidity());
  search.mutable_key()->set_all(true);
  auto found = this->store_->Search(this->user_, search);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(Expand(found->uids()), ElementsAre(2));
  v1::StatusRequest status;
  status.set_name("INBOX");
  auto counted = this->store_->Status(this->user_, status);
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(counted->messages(), 1u);
  EXPECT_EQ(counted->size(), std::string(kMultipart).size());
  EXPECT_THAT(Expand(this->OpenBox("INBOX").uids()), ElementsAre(2));
}

TYPED_TEST(StoreConformanceTest, ExpungedMessagesAreNotMarkedSeen) {
  this->AppendSome("INBOX", 2);
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->DeleteAndExpunge(box, Uids({{1, 1}}));
  const int64_t retained_modseq =
      this->CountRows("SELECT modseq FROM expunged_messages WHERE uid = 1");
  this->ClearEvents();
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 2}});
  request.set_flags(true);
  request.set_mark_seen(true);
  request.set_include_expunged(true);
  request.add_sections();
  CollectingSink sink;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, sink).ok());
  auto meta = sink.Metadata();
  ASSERT_THAT(UidsOf(meta), ElementsAre(1, 2));
  EXPECT_TRUE(meta[0].expunged());
  EXPECT_FALSE(meta[0].seen_changed());
  EXPECT_THAT(meta[0].flags(), ElementsAre("\\Deleted"));
  EXPECT_TRUE(meta[1].seen_changed());
  EXPECT_THAT(meta[1].flags(), ElementsAre("\\Seen"));
  // One event, for the live message only.
  ASSERT_EQ(this->Events().size(), 1u);
  ASSERT_EQ(this->Events()[0].flags_changed().messages_size(), 1);
  EXPECT_EQ(this->Events()[0].flags_changed().messages(0).uid(), 2u);
  EXPECT_EQ(this->CountRows("SELECT system_flags FROM expunged_messages WHERE uid = 1"), 4);
  EXPECT_EQ(this->CountRows("SELECT modseq FROM expunged_messages WHERE uid = 1"), retained_modseq);

  // Only expunged UIDs: no transaction has anything to mark, no event.
  *request.mutable_uids() = Uids({{1, 1}});
  CollectingSink again;
  ASSERT_TRUE(this->store_->Fetch(this->user_, request, again).ok());
  EXPECT_FALSE(again.Metadata()[0].seen_changed());
  EXPECT_EQ(this->Events().size(), 1u);
}

TYPED_TEST(StoreConformanceTest, MoveReviseAndRenameInboxSourcesAreRetained) {
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple, {"\\Flagged"}));
  messages.push_back(Message(kMultipart, {"Keep"}));
  messages.push_back(Message(absl::StrCat(kSimple, "third\r\n")));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  ASSERT_TRUE(this->Create("Dest").ok());
  v1::OpenResponse box = this->OpenBox("INBOX");

  v1::MoveRequest move;
  move.set_mailbox_id(box.mailbox_id());
  move.set_uidvalidity(box.uidvalidity());
  *move.mutable_uids() = Uids({{1, 1}});
  move.set_destination("Dest");
  ASSERT_TRUE(this->store_->Move(this->user_, move).ok());
  v1::ReviseHeader header;
  header.set_mailbox_id(box.mailbox_id());
  header.set_uidvalidity(box.uidvalidity());
  header.set_uid(2);
  auto revised = this->store_->Revise(this->user_, header, absl::StrCat(kSimple, "revised\r\n"));
  ASSERT_TRUE(revised.ok()) << revised.status();
  ASSERT_EQ(revised->new_uid(), 4u);

  CollectingSink sink;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, true), sink).ok());
  auto meta = sink.Metadata();
  ASSERT_THAT(UidsOf(meta), ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(meta[0].expunged());
  EXPECT_THAT(meta[0].flags(), ElementsAre("\\Flagged"));
  EXPECT_TRUE(meta[1].expunged());
  EXPECT_THAT(meta[1].flags(), ElementsAre("Keep"));
  EXPECT_FALSE(meta[2].expunged());
  EXPECT_FALSE(meta[3].expunged());
  EXPECT_EQ(sink.Section(1, 0), kSimple);
  EXPECT_EQ(sink.Section(2, 0), kMultipart);
  EXPECT_EQ(sink.Section(4, 0), absl::StrCat(kSimple, "revised\r\n"));

  // RENAME INBOX expunges every INBOX message (RFC 3501 §6.3.5); INBOX sessions
  // may still fetch them.
  v1::RenameMailboxRequest rename;
  rename.set_from("INBOX");
  rename.set_to("Old");
  ASSERT_TRUE(this->store_->RenameMailbox(this->user_, rename).ok());
  CollectingSink renamed;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, true), renamed).ok());
  auto gone = renamed.Metadata();
  ASSERT_THAT(UidsOf(gone), ElementsAre(1, 2, 3, 4));
  for (const auto& m : gone) {
    EXPECT_TRUE(m.expunged()) << m.uid();
  }
  EXPECT_EQ(renamed.Section(3, 0), absl::StrCat(kSimple, "third\r\n"));
  EXPECT_EQ(this->OpenBox("INBOX").messages(), 0u);
}

TYPED_TEST(StoreConformanceTest, ExpungedMessagesArePrunedAfterRetentionAndReleaseContent) {
  this->Reopen(this->ClockedOptions());
  ASSERT_TRUE(this->Create("Dest").ok());
  std::vector<NewMessage> messages;
  messages.push_back(Message(kSimple));
  messages.push_back(Message(kMultipart));
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  // UID 2's content is shared with a copy that stays.
  v1::CopyRequest copy;
  copy.set_mailbox_id(box.mailbox_id());
  copy.set_uidvalidity(box.uidvalidity());
  *copy.mutable_uids() = Uids({{2, 2}});
  copy.set_destination("Dest");
  ASSERT_TRUE(this->store_->Copy(this->user_, copy).ok());
  this->DeleteAndExpunge(box, Uids({{1, 2}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 2);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 2);
  const std::string shared_refcount =
      "SELECT c.refcount FROM contents c JOIN messages m ON m.content_id = c.id";
  EXPECT_EQ(this->CountRows(shared_refcount.c_str()), 2);

  auto fetch_uids = [&] {
    CollectingSink sink;
    EXPECT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, true), sink).ok());
    return UidsOf(sink.Metadata());
  };
  this->now_ += std::chrono::minutes(10) - std::chrono::milliseconds(1);
  EXPECT_THAT(fetch_uids(), ElementsAre(1, 2));
  // Past the window they are no longer returned, even before a write prunes them.
  this->now_ += std::chrono::milliseconds(2);
  EXPECT_THAT(fetch_uids(), IsEmpty());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 2);

  // Any write prunes: UID 1's content goes, UID 2's stays for the copy.
  v1::SetSubscriptionRequest subscribe;
  subscribe.set_name("Dest");
  subscribe.set_subscribed(true);
  ASSERT_TRUE(this->store_->SetSubscription(this->user_, subscribe).ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 1);
  EXPECT_EQ(this->CountRows(shared_refcount.c_str()), 1);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM content_data"), 1);
}

TYPED_TEST(StoreConformanceTest, ExpungedMessagesArePrunedInBoundedBatches) {
  this->Reopen(this->ClockedOptions());
  std::vector<NewMessage> messages;
  for (int i = 0; i < 1003; ++i) {
    messages.push_back(Message(absl::StrCat(kSimple, i, "\r\n")));
  }
  ASSERT_TRUE(this->store_->Append(this->user_, "INBOX", std::move(messages)).ok());
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->DeleteAndExpunge(box, Uids({{1, 1003}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 1003);
  this->now_ += std::chrono::hours(1);
  ASSERT_TRUE(this->Create("a").ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 3);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 3);
  ASSERT_TRUE(this->Create("b").ok());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 0);
}

TYPED_TEST(StoreConformanceTest, ZeroRetentionKeepsNothing) {
  StoreOptions options;
  options.expunged_retention = std::chrono::milliseconds(0);
  this->Reopen(options);
  this->AppendSome("INBOX", 2);
  v1::OpenResponse box = this->OpenBox("INBOX");
  this->DeleteAndExpunge(box, Uids({{1, 1}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 1);
  CollectingSink sink;
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(box, true), sink).ok());
  EXPECT_THAT(UidsOf(sink.Metadata()), ElementsAre(2));

  options.expunged_retention = std::chrono::milliseconds(-1);
  auto refused = this->backend_.Open(this->limits_, nullptr, options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(StoreConformanceTest, ExpungedMessagesOfADeletedMailboxAreGone) {
  ASSERT_TRUE(this->Create("Box").ok());
  ASSERT_TRUE(this->Create("p/c").ok());
  this->AppendSome("Box", 2);
  this->AppendSome("p", 2);
  v1::OpenResponse box = this->OpenBox("Box");
  v1::OpenResponse p = this->OpenBox("p");
  this->DeleteAndExpunge(box, Uids({{1, 1}}));
  this->DeleteAndExpunge(p, Uids({{1, 1}}));
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 2);

  v1::DeleteMailboxRequest remove;
  remove.set_name("Box");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, remove).ok());
  CollectingSink sink;
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, FetchEverything(box, true), sink)),
            v1::MAILBOX_CHANGED);
  EXPECT_TRUE(sink.items.empty());

  // "p" has an inferior: it stays as \Noselect with the same id, and when made
  // selectable again it must not show the old incarnation's messages.
  remove.set_name("p");
  ASSERT_TRUE(this->store_->DeleteMailbox(this->user_, remove).ok());
  EXPECT_EQ(CodeOf(this->store_->Fetch(this->user_, FetchEverything(p, true), sink)),
            v1::MAILBOX_CHANGED);
  ASSERT_TRUE(this->Create("p").ok());
  v1::OpenResponse again = this->OpenBox("p");
  ASSERT_EQ(again.mailbox_id(), p.mailbox_id());
  ASSERT_TRUE(this->store_->Fetch(this->user_, FetchEverything(again, true), sink).ok());
  EXPECT_TRUE(sink.items.empty());
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM expunged_messages"), 0);
  EXPECT_EQ(this->CountRows("SELECT count(*) FROM contents"), 0);
}

}  // namespace
}  // namespace mailbox::store
