// A thin RAII layer over the SQLite C API for the SQLite store: one connection
// with a cache of prepared statements, and a statement handle that resets itself.
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

struct sqlite3;
struct sqlite3_stmt;
struct sqlite3_blob;

namespace mailbox::store::sqlite {

// Maps an SQLite result code to a status: SQLITE_BUSY/LOCKED/FULL/IOERR become
// Unavailable (the store is temporarily unable to serve, retry), anything else
// Internal (SERVER_BUG). `what` says which operation failed.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view what);

// A prepared statement borrowed from a Connection's cache. Destruction resets it
// and clears its bindings so the next user starts clean, and returns it to the
// cache. While one Statement holds a cached statement, Prepare of the same SQL
// hands out a private copy, so two handles never share bindings or a cursor.
class Statement {
 public:
  Statement() = default;
  // `in_use`: the cache's flag for `stmt`, cleared on destruction; null for a
  // private copy, which is finalized on destruction instead.
  Statement(sqlite3_stmt* stmt, bool* in_use) : stmt_(stmt), in_use_(in_use) {}
  Statement(Statement&& other) noexcept : stmt_(other.stmt_), in_use_(other.in_use_) {
    other.stmt_ = nullptr;
    other.in_use_ = nullptr;
  }
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based, as in SQLite.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, uint64_t value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, uint32_t value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, bool value) { return Bind(index, static_cast<int64_t>(value)); }
  // Text and blobs are bound without copying: the bytes must outlive the step.
  Statement& BindText(int index, std::string_view value);
  Statement& BindBlob(int index, std::string_view value);
  Statement& BindNull(int index);

  // Steps once: true if a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion, ignoring rows.
  absl::Status Run();

  int64_t Int(int column) const;
  bool IsNull(int column) const;
  // Views into SQLite's buffer, valid until the next Step or destruction.
  std::string_view Text(int column) const;
  std::string_view Blob(int column) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
  bool* in_use_ = nullptr;
};

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

class Connection {
 public:
  // Opens (creating if needed) the database and applies the per-connection pragmas:
  // WAL, synchronous=FULL, foreign keys, busy timeout.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path,
                                                          bool read_only);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Prepares `sql` once per connection; `sql` must be a string with static storage
  // (its address is the cache key).
  absl::StatusOr<Statement> Prepare(const char* sql);
  // Runs one or more statements without results.
  absl::Status Exec(const char* sql);
  absl::StatusOr<BlobReader> OpenBlob(const char* table, const char* column, int64_t rowid);

  // True while a transaction is open (not in autocommit mode).
  bool InTransaction() const;
  int64_t Changes() const;
  int64_t LastInsertRowid() const;
  sqlite3* raw() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;  // lent to a live Statement
  };
  sqlite3* db_;
  // std::map: node addresses are stable, so a Statement may point at `in_use`.
  std::map<const char*, Cached> cache_;
};

}  // namespace mailbox::store::sqlite
