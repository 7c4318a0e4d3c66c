// A thin RAII layer over the SQLite C API for the SQLite store: the SQL store's
// connection interface (sql_db.h) on one SQLite handle, and incremental blob I/O.
//
// Not thread-safe: a Connection is used by one thread at a time (the store hands
// connections out under its own locks).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/store/sql_db.h"

struct sqlite3;
struct sqlite3_stmt;
struct sqlite3_blob;

namespace mailbox::store::sqlite {

// Maps an SQLite result code to a status: SQLITE_BUSY/LOCKED/FULL/IOERR become
// Unavailable (the store is temporarily unable to serve, retry), anything else
// Internal (SERVER_BUG). `what` says which operation failed.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view what);

using Statement = sql::Statement;

// Incremental blob I/O (sqlite3_blob_*), so FETCH of a large message never holds the
// whole message in memory.
class BlobReader {
 public:
  BlobReader() = default;
  BlobReader(BlobReader&& other) noexcept : blob_(other.blob_), size_(other.size_) {
    other.blob_ = nullptr;
  }
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  ~BlobReader();

  uint64_t size() const { return size_; }
  // Appends bytes [offset, offset + length) to *out.
  absl::Status Read(uint64_t offset, uint64_t length, std::string* out);

 private:
  friend class Connection;
  sqlite3_blob* blob_ = nullptr;
  uint64_t size_ = 0;
};

class Connection final : public sql::Connection {
 public:
  // Opens (creating if needed) the database and applies the per-connection pragmas:
  // WAL, synchronous=FULL, foreign keys, busy timeout.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path,
                                                          bool read_only);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::Status Exec(const char* sql) override;
  absl::StatusOr<BlobReader> OpenBlob(const char* table, const char* column, int64_t rowid);

  bool InTransaction() const override;
  int64_t Changes() const override;
  sqlite3* raw() const { return db_; }

 protected:
  absl::StatusOr<std::unique_ptr<sql::Cursor>> NewCursor(const char* sql, bool cached) override;

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace mailbox::store::sqlite
