// The PostgreSQL backend of the mailbox store (sql_store.h holds the queries), for
// several interchangeable replicas of the mailbox service on one database.
//
// * Writes run in READ COMMITTED transactions whose first statement takes the
//   transaction-level advisory lock of their WriteScope: the writes of one user (or
//   of the accounts, the login throttle, the secrets) run one at a time across
//   every replica, and each statement after the lock sees every earlier write of
//   the scope. UID and MODSEQ allocation is therefore gap-free and in commit order.
//   Rows shared between scopes (message content and its reference count) are
//   changed by single statements, which PostgreSQL applies to the latest version;
//   a write that meets a concurrent change it cannot apply (content collected
//   after the body found it, two inserts of one new content, a deadlock) fails and
//   is run again (Options::max_write_attempts). SERIALIZABLE would also be correct,
//   but its predicate locks cover index pages, not rows: under load most writes of
//   unrelated users failed and ran again.
// * Every committed change is in the table `changes`; the transaction also sends
//   one NOTIFY mailbox_changes per event, carrying the event (or, for one too large
//   for a notification, naming its row in `changes`). NOTIFY is delivered at
//   commit, in commit order. Each replica LISTENs on one connection of its own and
//   hands the events to its EventSink: a change committed through any replica
//   reaches every replica's feeds, in MODSEQ order. Should that connection drop,
//   events may have been missed while it was down, so the sink gets a Resync for
//   mailbox 0 ("every feed"): the feeds end and their gateways resume from their
//   last MODSEQ, which the log replays.
// * Dropping content no message refers to any more, and pruning expunged messages
//   past their retention, touch rows of every user: inside a write they would lock
//   other users' rows under this user's scope (and, under SERIALIZABLE, made
//   unrelated writes conflict). They run after the write's COMMIT instead, as
//   statements of their own, the pruning at most once a second unless a backlog
//   remains.
// * Message bytes are rows of at most 256 KiB (content_data.seq), written and read
//   a piece at a time.
// * Connections come from a bounded pool; every query has the call's deadline;
//   losing the database fails calls with UNAVAILABLE until it is back.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailbox-service/store/postgres/pg_db.h"
#include "mailbox-service/store/sql_store.h"

namespace mailbox::store::pg {

class SqlConnection;

class PgStore final : public SqlStore {
 public:
  struct Options : StoreOptions {
    std::string conninfo;  // libpq connection string or URI
    int max_connections = 16;
    // Deadline of the queries of one store call.
    absl::Duration call_timeout = absl::Seconds(30);
    // Runs of a write that keeps meeting concurrent writes before it fails
    // with UNAVAILABLE (the pauses between them grow to 64 ms; the call's
    // deadline ends them too).
    int max_write_attempts = 100;
  };

  // Connects, runs the schema migrations and, if `events` is set, starts the
  // thread that listens for changes committed through any replica.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(StoreLimits limits, EventSink events,
                                                       Options options);
  ~PgStore() override;
  using SqlStore::Open;  // the mailbox Open, beside the static ones above

  // Returns once every change committed (through any replica) before the call has
  // been handed to the EventSink, or DEADLINE_EXCEEDED after `timeout`.
  absl::Status FlushEvents(absl::Duration timeout);

  // Whether the listening connection is up: it notices a lost database within
  // about kProbeInterval even when nothing is written.
  bool Healthy() const override { return healthy_.load(std::memory_order_relaxed); }

 protected:
  absl::Status Write(WriteScope scope, WriteBody body) override;
  absl::StatusOr<ReaderLease> Reader() override;
  absl::Status StoreContentBytes(sql::Connection& conn, int64_t content_id,
                                 const PreparedContent& content) override;
  absl::StatusOr<std::unique_ptr<ContentReader>> OpenContent(sql::Connection& conn,
                                                             int64_t content_id) override;
  absl::Status ContentReleased(sql::Connection& conn) override;

 private:
  PgStore(StoreLimits limits, EventSink events, Options options);
  // *lost_before_commit: it failed because the database was unreachable or the
  // connection was lost before COMMIT went out, so nothing was committed.
  absl::Status WriteOnce(WriteScope scope, WriteBody body, absl::Time deadline,
                         bool* lost_before_commit);
  // After a committed write: the retention cleanup when due, and dropping the
  // content the write released. Failures are left for a later write.
  void Tidy(SqlConnection& conn, int64_t now_ms);
  void Listen(std::unique_ptr<Connection> conn);
  // Handles one notification; false if the connection failed.
  bool Deliver(Connection& conn, const Notification& notification);

  const Options pg_options_;
  const uint64_t flush_tag_;  // tells this replica's flush notices from others'
  Pool pool_;
  absl::Mutex flush_mu_;
  uint64_t flush_sent_ ABSL_GUARDED_BY(flush_mu_) = 0;
  uint64_t flushed_ ABSL_GUARDED_BY(flush_mu_) = 0;
  std::atomic<int64_t> next_prune_ms_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> healthy_{true};
  std::thread listener_;
};

}  // namespace mailbox::store::pg
