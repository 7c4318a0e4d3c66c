// The embedded SQLite implementation of the mailbox store (store.h).
//
// One file holds everything (schema in sqlite_schema.cc). Writes go through a single
// connection guarded by a mutex, in BEGIN IMMEDIATE transactions with
// synchronous=FULL, so a method returns only after its change is durable. Writes
// that arrive while another commits wait and are then committed together (group
// commit): one transaction, each write in a savepoint of its own so that a failing
// one leaves the others, and one fsync for all. Reads use
// a pool of WAL reader connections and never wait for writers. Change events are
// logged in the same transaction as the change and passed to the EventSink after
// COMMIT while the write mutex is still held, so the sink sees every mailbox's
// events in MODSEQ order.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

namespace sqlite {
class Connection;
}

class SqliteStore final : public Store {
 public:
  struct Options {
    // Change-log rows kept per mailbox; ReadChanges from further back is RESYNC.
    uint64_t change_log_retention = 100000;
    // Idle reader connections kept open (more are opened under load).
    int max_idle_readers = 4;
    // How long an expunged message stays fetchable with
    // FetchRequest.include_expunged, for sessions not yet told of the expunge
    // (RFC 3501 §7.4.1). Retained messages are pruned, and their content released,
    // a bounded batch at a time by later write transactions. Zero retains nothing.
    std::chrono::milliseconds expunged_retention = std::chrono::minutes(10);
    // The time source for expunge retention; empty means the system clock. Tests
    // inject time here.
    std::function<std::chrono::system_clock::time_point()> clock;
  };

  // Opens or creates the database at `path` (WAL, synchronous=FULL, foreign keys
  // on) and runs the schema migrations. `events` may be empty; it is called under
  // the write mutex, so it must not block or call the store's write methods.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                           StoreLimits limits,
                                                           EventSink events);
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                           StoreLimits limits,
                                                           EventSink events,
                                                           Options options);
  ~SqliteStore() override;

  absl::StatusOr<uint64_t> CreateUser(std::string_view username,
                                      std::string_view password_hash) override;
  absl::Status DeleteUser(std::string_view username) override;
  absl::Status SetPasswordHash(std::string_view username,
                               std::string_view password_hash) override;
  absl::StatusOr<UserRecord> FindUser(std::string_view username) override;
  absl::StatusOr<UserRecord> FindUserById(uint64_t user_id) override;
  absl::StatusOr<std::vector<UserRecord>> ListUsers() override;

  absl::StatusOr<int> RecordAuthFailure(std::string_view key, int64_t now_ms,
                                        int64_t window_ms) override;
  absl::StatusOr<std::pair<int, int64_t>> AuthFailures(std::string_view key, int64_t now_ms,
                                                       int64_t window_ms) override;
  absl::Status ClearAuthFailures(std::string_view key) override;
  absl::StatusOr<AuthReservation> ReserveAuthAttempt(const std::vector<std::string>& keys,
                                                     std::string_view address, int64_t now_ms,
                                                     const AuthAttemptLimits& limits,
                                                     const AuthAttemptPolicy& policy) override;
  absl::Status ReleaseAuthAttempt(const std::vector<int64_t>& rows) override;
  absl::StatusOr<std::string> GetOrCreateSecret(std::string_view name,
                                                std::string_view initial_value) override;
  absl::StatusOr<std::string> FindSecret(std::string_view name) override;
  absl::Status DeleteSecret(std::string_view name) override;

  absl::StatusOr<v1::ListMailboxesResponse> ListMailboxes(
      uint64_t user_id, const v1::ListMailboxesRequest& request) override;
  absl::StatusOr<v1::CreateMailboxResponse> CreateMailbox(
      uint64_t user_id, const v1::CreateMailboxRequest& request) override;
  absl::Status DeleteMailbox(uint64_t user_id,
                             const v1::DeleteMailboxRequest& request) override;
  absl::Status RenameMailbox(uint64_t user_id,
                             const v1::RenameMailboxRequest& request) override;
  absl::Status SetSubscription(uint64_t user_id,
                               const v1::SetSubscriptionRequest& request) override;
  absl::StatusOr<v1::StatusResponse> Status(uint64_t user_id,
                                            const v1::StatusRequest& request) override;

  absl::StatusOr<v1::OpenResponse> Open(uint64_t user_id,
                                        const v1::OpenRequest& request) override;
  absl::Status Fetch(uint64_t user_id, const v1::FetchRequest& request,
                     FetchSink& sink) override;
  absl::StatusOr<v1::StoreResponse> StoreFlags(uint64_t user_id,
                                               const v1::StoreRequest& request) override;
  absl::StatusOr<v1::CopyResponse> Copy(uint64_t user_id,
                                        const v1::CopyRequest& request) override;
  absl::StatusOr<v1::MoveResponse> Move(uint64_t user_id,
                                        const v1::MoveRequest& request) override;
  absl::StatusOr<v1::ExpungeResponse> Expunge(uint64_t user_id,
                                              const v1::ExpungeRequest& request) override;
  absl::StatusOr<v1::AppendResponse> Append(uint64_t user_id, std::string_view mailbox,
                                            std::vector<NewMessage> messages) override;
  using Store::Search;
  absl::StatusOr<v1::SearchResponse> Search(uint64_t user_id, const v1::SearchRequest& request,
                                            WorkBudget& budget) override;
  absl::StatusOr<v1::ReviseResponse> Revise(uint64_t user_id,
                                            const v1::ReviseHeader& header,
                                            std::string content) override;

  absl::Status ReadChanges(uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity,
                           uint64_t from_modseq,
                           std::vector<v1::ChangeEvent>* out) override;

  // The implementation's transaction context; public only so that helpers in the
  // .cc file can name it.
  class WriteTx;

 private:
  class ReaderLease;
  struct PendingWrite;

  SqliteStore(std::string path, StoreLimits limits, EventSink events, Options options,
              std::unique_ptr<sqlite::Connection> writer);

  // Runs `body` in a BEGIN IMMEDIATE transaction on the write connection; commits if
  // it returns OK, else rolls back. Events the body logged are passed to the sink
  // after COMMIT, before the write mutex is released. Returns once the change is
  // durable; concurrent calls share a transaction (see CommitBatch).
  template <typename Body>
  absl::Status Write(Body&& body);

  // Runs the bodies of `batch` in order in one transaction, each in a savepoint
  // when there are several, commits, and sets each write's status.
  void CommitBatch(const std::vector<PendingWrite*>& batch);

  // Unix milliseconds now, from options_.clock.
  int64_t NowMs() const;

  // Borrows a reader connection for the lifetime of the lease.
  absl::StatusOr<ReaderLease> Reader();
  void ReturnReader(std::unique_ptr<sqlite::Connection> conn);

  const std::string path_;
  const StoreLimits limits_;
  const EventSink events_;
  const Options options_;

  std::mutex write_mutex_;
  std::unique_ptr<sqlite::Connection> writer_;  // guarded by write_mutex_

  // Group commit: writes waiting for the next transaction. Each waiting caller has
  // one entry, so the queue is bounded by the threads that call the store.
  std::mutex commit_mutex_;
  std::condition_variable commit_ready_;
  std::vector<PendingWrite*> commit_queue_;  // guarded by commit_mutex_
  bool committing_ = false;                  // guarded by commit_mutex_

  OctetGate search_memory_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::Connection>> idle_readers_;  // guarded by readers_mutex_
};

}  // namespace mailbox::store
