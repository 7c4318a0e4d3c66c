// The embedded SQLite backend of the mailbox store (sql_store.h holds the queries).
//
// Writes go through a single connection guarded by a mutex, in BEGIN IMMEDIATE
// transactions with synchronous=FULL, so a method returns only after its change is
// durable. Writes that arrive while another commits wait and are then committed
// together (group commit): one transaction, each write in a savepoint of its own so
// that a failing one leaves the others, and one fsync for all. Reads use a pool of
// WAL reader connections and never wait for writers. Change events are logged in
// the same transaction as the change and passed to the EventSink after COMMIT while
// the write mutex is still held, so the sink sees every mailbox's events in MODSEQ
// order. Message bytes are one blob per content, written and read in pieces with
// SQLite's incremental blob I/O.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/store/sql_store.h"
#include "mailbox-service/store/store.h"

namespace mailbox::store {

namespace sqlite {
class Connection;
}

class SqliteStore final : public SqlStore {
 public:
  struct Options : StoreOptions {
    // Idle reader connections kept open (more are opened under load).
    int max_idle_readers = 4;
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
  using SqlStore::Open;  // the mailbox Open, beside the static ones above

  // Also scrubs the deleted row from the database file and the WAL.
  absl::Status DeleteSecret(std::string_view name) override;

 protected:
  absl::Status Write(WriteScope scope, WriteBody body) override;
  absl::StatusOr<ReaderLease> Reader() override;
  absl::Status StoreContentBytes(sql::Connection& conn, int64_t content_id,
                                 const PreparedContent& content) override;
  absl::StatusOr<std::unique_ptr<ContentReader>> OpenContent(sql::Connection& conn,
                                                             int64_t content_id) override;

 private:
  struct PendingWrite;

  SqliteStore(std::string path, StoreLimits limits, EventSink events, Options options,
              std::unique_ptr<sqlite::Connection> writer);

  // Runs the bodies of `batch` in order in one transaction, each in a savepoint
  // when there are several, commits, and sets each write's status.
  void CommitBatch(const std::vector<PendingWrite*>& batch);
  void ReturnReader(sql::Connection* conn);

  const std::string path_;
  const int max_idle_readers_;

  std::mutex write_mutex_;
  std::unique_ptr<sqlite::Connection> writer_;  // guarded by write_mutex_

  // Group commit: writes waiting for the next transaction. Each waiting caller has
  // one entry, so the queue is bounded by the threads that call the store.
  std::mutex commit_mutex_;
  std::condition_variable commit_ready_;
  std::vector<PendingWrite*> commit_queue_;  // guarded by commit_mutex_
  bool committing_ = false;                  // guarded by commit_mutex_

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::Connection>> idle_readers_;  // guarded by readers_mutex_
};

}  // namespace mailbox::store
