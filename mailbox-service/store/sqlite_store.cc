#include "mailbox-service/store/sqlite_store.h"
#include "mailbox-service/store/store_metrics.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "mailbox-service/store/message_content.h"
#include "mailbox-service/store/sqlite_db.h"
#include "mailbox-service/store/sqlite_schema.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {

using sqlite::Connection;
using sqlite::Statement;

namespace {

absl::Status Error(absl::StatusCode code, v1::ErrorCode detail, std::string_view message) {
  return v1::MakeError(code, detail, message);
}

// ---------------------------------------------------------------------------
// Content bytes

// Copies content from its file into the blob content_data.raw of row `rowid`
// (created as a zeroblob of the content's size) a piece at a time, through
// SQLite's incremental blob I/O: the content is never whole in memory.
absl::Status WriteContentBlob(Connection& conn, int64_t rowid, const ContentFile& file) {
  sqlite3_blob* blob = nullptr;
  int rc = sqlite3_blob_open(conn.raw(), "main", "content_data", "raw", rowid, /*flags=*/1,
                             &blob);
  if (rc != SQLITE_OK) {
    return sqlite::SqliteError(rc, conn.raw(), "blob open content_data.raw for writing");
  }
  absl::Status written = ForEachContentPiece(
      file, [&](uint64_t offset, std::string_view piece) -> absl::Status {
        int rc = sqlite3_blob_write(blob, piece.data(), static_cast<int>(piece.size()),
                                    static_cast<int>(offset));
        return rc == SQLITE_OK ? absl::OkStatus()
                               : sqlite::SqliteError(rc, conn.raw(), "blob write");
      });
  rc = sqlite3_blob_close(blob);
  if (written.ok() && rc != SQLITE_OK) {
    return sqlite::SqliteError(rc, conn.raw(), "blob close");
  }
  return written;
}

class BlobContentReader final : public ContentReader {
 public:
  explicit BlobContentReader(sqlite::BlobReader blob) : blob_(std::move(blob)) {}
  uint64_t size() const override { return blob_.size(); }
  absl::Status Read(uint64_t offset, uint64_t length, std::string* out) override {
    return blob_.Read(offset, length, out);
  }

 private:
  sqlite::BlobReader blob_;
};

}  // namespace

absl::Status SqliteStore::StoreContentBytes(sql::Connection& sql_conn, int64_t content_id,
                                            const PreparedContent& content) {
  Connection& conn = static_cast<Connection&>(sql_conn);
  if (content.file.has_value()) {
    ASSIGN_OR_RETURN(Statement data, conn.Prepare("INSERT INTO content_data (content_id, raw) "
                                                  "VALUES (?, zeroblob(?))"));
    data.Bind(1, content_id).Bind(2, content.size());
    RETURN_IF_ERROR(data.Run());
    return WriteContentBlob(conn, content_id, *content.file);
  }
  ASSIGN_OR_RETURN(Statement data,
                   conn.Prepare("INSERT INTO content_data (content_id, raw) VALUES (?, ?)"));
  data.Bind(1, content_id).BindBlob(2, content.raw);
  return data.Run();
}

absl::StatusOr<std::unique_ptr<ContentReader>> SqliteStore::OpenContent(sql::Connection& conn,
                                                                        int64_t content_id) {
  ASSIGN_OR_RETURN(sqlite::BlobReader blob, static_cast<Connection&>(conn).OpenBlob(
                                                "content_data", "raw", content_id));
  return std::unique_ptr<ContentReader>(new BlobContentReader(std::move(blob)));
}

// ---------------------------------------------------------------------------
// Opening, group commit and readers

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               StoreLimits limits,
                                                               EventSink events) {
  return Open(path, limits, std::move(events), Options());
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               StoreLimits limits,
                                                               EventSink events,
                                                               Options options) {
  RETURN_IF_ERROR(ValidateConfig(limits, options));
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> writer, Connection::Open(path, false));
  RETURN_IF_ERROR(sqlite::Migrate(*writer));
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(path, limits, std::move(events), options, std::move(writer)));
}

SqliteStore::SqliteStore(std::string path, StoreLimits limits, EventSink events,
                         Options options, std::unique_ptr<Connection> writer)
    : SqlStore(limits, std::move(events), options),
      path_(std::move(path)),
      max_idle_readers_(options.max_idle_readers),
      writer_(std::move(writer)) {}

SqliteStore::~SqliteStore() = default;

struct SqliteStore::PendingWrite {
  WriteBody body;
  absl::Status status;
  bool done = false;  // guarded by commit_mutex_
};

// SQLite has one writer at a time, which serializes every scope already.
absl::Status SqliteStore::Write(WriteScope /*scope*/, WriteBody body) {
  PendingWrite write{body};
  std::unique_lock<std::mutex> lock(commit_mutex_);
  commit_queue_.push_back(&write);
  commit_ready_.wait(lock, [&] { return write.done || !committing_; });
  if (write.done) {
    return write.status;  // committed (or failed) in another caller's batch
  }
  // This caller commits every write queued meanwhile, its own included: those that
  // arrived during the previous commit's fsync share this one.
  committing_ = true;
  std::vector<PendingWrite*> batch;
  batch.swap(commit_queue_);
  lock.unlock();
  CommitBatch(batch);
  lock.lock();
  for (PendingWrite* pending : batch) {
    pending->done = true;
  }
  committing_ = false;
  lock.unlock();
  commit_ready_.notify_all();
  return write.status;
}

void SqliteStore::CommitBatch(const std::vector<PendingWrite*>& batch) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  Connection& conn = *writer_;
  auto fail_all = [&](const absl::Status& status) {
    for (PendingWrite* pending : batch) {
      pending->status = status;
    }
  };
  StoreMetrics& metrics = GlobalStoreMetrics();
  if (absl::Status begun = conn.Exec("BEGIN IMMEDIATE"); !begun.ok()) {
    metrics.Transaction(TxnOutcome::kRolledBack);
    fail_all(begun);
    return;
  }
  const int64_t now_ms = NowMs();
  const bool grouped = batch.size() > 1;
  std::vector<std::vector<v1::ChangeEvent>> logged(batch.size());
  bool any_ok = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    PendingWrite& write = *batch[i];
    if (grouped) {
      if (absl::Status saved = conn.Exec("SAVEPOINT one_write"); !saved.ok()) {
        conn.Exec("ROLLBACK").IgnoreError();
        metrics.Transaction(TxnOutcome::kRolledBack);
        fail_all(saved);
        return;
      }
    }
    write.status = RunWrite(conn, write.body, now_ms, &logged[i]);
    if (!conn.InTransaction()) {
      // SQLite rolled the whole transaction back itself (an I/O error, a full
      // disk): the writes before this one are lost with it, the rest not tried.
      metrics.Transaction(TxnOutcome::kRolledBack);
      fail_all(write.status.ok() ? Error(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
                                         "store: the transaction was rolled back")
                                 : write.status);
      return;
    }
    if (grouped) {
      absl::Status ended = write.status.ok()
                               ? conn.Exec("RELEASE one_write")
                               : conn.Exec("ROLLBACK TO one_write; RELEASE one_write");
      if (!ended.ok()) {
        conn.Exec("ROLLBACK").IgnoreError();
        metrics.Transaction(TxnOutcome::kRolledBack);
        fail_all(ended);
        return;
      }
    }
    if (write.status.ok()) {
      any_ok = true;
    } else {
      logged[i].clear();
    }
  }
  absl::Status status = absl::OkStatus();
  if (any_ok) {
    // Every transaction pays a little of the retention cleanup, so no background
    // thread is needed and the work happens where the write lock is already held.
    status = PruneExpired(conn, now_ms).status();
    if (status.ok()) {
      status = conn.Exec("COMMIT");
    }
  } else {
    status = conn.Exec("ROLLBACK");
  }
  if (!status.ok()) {
    conn.Exec("ROLLBACK").IgnoreError();
    metrics.Transaction(TxnOutcome::kRolledBack);
    for (PendingWrite* pending : batch) {
      if (pending->status.ok()) {
        pending->status = status;
      }
    }
    return;
  }
  if (any_ok) {
    metrics.Transaction(TxnOutcome::kCommitted);
    metrics.sqlite_durable_commits.Inc();
  } else {
    metrics.Transaction(TxnOutcome::kRolledBack);
  }
  // After COMMIT (the changes are durable) and still under the write mutex, so the
  // sink receives each mailbox's events in MODSEQ order (store.h).
  if (const EventSink& sink = events(); sink) {
    for (const std::vector<v1::ChangeEvent>& write_events : logged) {
      for (const v1::ChangeEvent& event : write_events) {
        sink(event);
      }
    }
  }
}

absl::StatusOr<SqlStore::ReaderLease> SqliteStore::Reader() {
  auto give_back = [this](sql::Connection* conn) { ReturnReader(conn); };
  {
    std::lock_guard<std::mutex> lock(readers_mutex_);
    if (!idle_readers_.empty()) {
      Connection* conn = idle_readers_.back().release();
      idle_readers_.pop_back();
      return ReaderLease(conn, give_back);
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(path_, true));
  if (limits().reader_cache_kib > 0) {
    RETURN_IF_ERROR(
        conn->Exec(absl::StrCat("PRAGMA cache_size = -", limits().reader_cache_kib).c_str()));
  }
  return ReaderLease(conn.release(), give_back);
}

void SqliteStore::ReturnReader(sql::Connection* returned) {
  std::unique_ptr<Connection> conn(static_cast<Connection*>(returned));
  if (conn->InTransaction()) {
    // A snapshot that failed to end would pin an old WAL read mark and break the
    // next BEGIN: never reuse such a connection.
    return;
  }
  std::lock_guard<std::mutex> lock(readers_mutex_);
  if (static_cast<int>(idle_readers_.size()) < max_idle_readers_) {
    idle_readers_.push_back(std::move(conn));
  }
}

absl::Status SqliteStore::DeleteSecret(std::string_view name) {
  // A deleted row stays in its page's free space and in older WAL frames until
  // overwritten. secure_delete zeroes it in the page; the truncating checkpoint
  // then copies the zeroed page into the database and empties the WAL, so the
  // secret is not left in either file.
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    RETURN_IF_ERROR(writer_->Exec("PRAGMA secure_delete = ON"));
  }
  absl::Status deleted = SqlStore::DeleteSecret(name);
  std::lock_guard<std::mutex> lock(write_mutex_);
  absl::Status checkpoint =
      deleted.ok() ? writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)") : absl::OkStatus();
  absl::Status restored = writer_->Exec("PRAGMA secure_delete = OFF");
  RETURN_IF_ERROR(deleted);
  RETURN_IF_ERROR(checkpoint);
  return restored;
}

}  // namespace mailbox::store
