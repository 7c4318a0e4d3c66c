// What the SQL store (sql_store.h) needs of a database connection, so that one body
// of queries runs on SQLite and on PostgreSQL: prepared statements with "?"
// placeholders bound in order, stepped row by row, and plain statement execution.
// A backend implements Cursor and Connection (sqlite_db.h, postgres/pg_sql.h).
//
// Not thread-safe: a Connection is used by one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::store::sql {

// One prepared statement of a backend.
class Cursor {
 public:
  virtual ~Cursor() = default;
  // Parameters are 1-based. Text and blobs are not copied: the bytes must outlive
  // the statement's first Step.
  virtual void BindInt(int index, int64_t value) = 0;
  virtual void BindText(int index, std::string_view value) = 0;
  virtual void BindBlob(int index, std::string_view value) = 0;
  virtual void BindNull(int index) = 0;
  // True if a row is available, false when done.
  virtual absl::StatusOr<bool> Step() = 0;
  virtual int64_t Int(int column) const = 0;
  virtual bool IsNull(int column) const = 0;
  // Views valid until the next Step or Reset.
  virtual std::string_view Text(int column) const = 0;
  virtual std::string_view Blob(int column) const = 0;
  // Ends the current execution and clears the bindings.
  virtual void Reset() = 0;
};

// A prepared statement lent by a Connection. Destruction resets it for the next
// user (a cached statement) or frees it (a private copy).
class Statement {
 public:
  Statement() = default;
  Statement(Cursor* cached, bool* in_use) : cursor_(cached), in_use_(in_use) {}
  explicit Statement(std::unique_ptr<Cursor> own) : cursor_(own.get()), owned_(std::move(own)) {}
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, int64_t value) {
    cursor_->BindInt(index, value);
    return *this;
  }
  Statement& Bind(int index, uint64_t value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, uint32_t value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, bool value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& BindText(int index, std::string_view value) {
    cursor_->BindText(index, value);
    return *this;
  }
  Statement& BindBlob(int index, std::string_view value) {
    cursor_->BindBlob(index, value);
    return *this;
  }
  Statement& BindNull(int index) {
    cursor_->BindNull(index);
    return *this;
  }

  absl::StatusOr<bool> Step() { return cursor_->Step(); }
  // Steps to completion, ignoring rows.
  absl::Status Run();

  int64_t Int(int column) const { return cursor_->Int(column); }
  bool IsNull(int column) const { return cursor_->IsNull(column); }
  std::string_view Text(int column) const { return cursor_->Text(column); }
  std::string_view Blob(int column) const { return cursor_->Blob(column); }

 private:
  void Release();
  Cursor* cursor_ = nullptr;
  bool* in_use_ = nullptr;
  std::unique_ptr<Cursor> owned_;
};

class Connection {
 public:
  virtual ~Connection() = default;

  // Prepares `sql` once per connection; `sql` must have static storage (its
  // address is the cache key). While a cached statement is lent out, preparing the
  // same SQL gives a private copy, so two handles never share bindings or a cursor.
  absl::StatusOr<Statement> Prepare(const char* sql);
  // Prepares SQL built at run time, without caching it; `sql` must outlive the
  // statement.
  absl::StatusOr<Statement> PrepareUncached(const char* sql);
  // Runs one or more statements without parameters or results.
  virtual absl::Status Exec(const char* sql) = 0;
  // Opens a read-only transaction that sees one consistent snapshot; COMMIT ends it.
  virtual absl::Status BeginSnapshot() { return Exec("BEGIN"); }
  // True while a transaction is open.
  virtual bool InTransaction() const = 0;
  // Rows the last completed INSERT, UPDATE or DELETE touched.
  virtual int64_t Changes() const = 0;

 protected:
  // `cached`: the cursor will be kept and reused for the connection's lifetime.
  virtual absl::StatusOr<std::unique_ptr<Cursor>> NewCursor(const char* sql, bool cached) = 0;
  // Frees the cached cursors; a backend calls it before closing its handle.
  void ClearCache() { cache_.clear(); }

 private:
  struct Cached {
    std::unique_ptr<Cursor> cursor;
    bool in_use = false;  // lent to a live Statement
  };
  // std::map: node addresses are stable, so a Statement may point at `in_use`.
  std::map<const char*, Cached> cache_;
};

}  // namespace mailbox::store::sql
