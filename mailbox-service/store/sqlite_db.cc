#include "mailbox-service/store/sqlite_db.h"

#include <sqlite3.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store::sqlite {

absl::Status SqliteError(int rc, sqlite3* db, std::string_view what) {
  std::string message = absl::StrCat("store: ", absl::string_view(what.data(), what.size()),
                                     ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE, message);
    default:
      return v1::MakeError(absl::StatusCode::kInternal, v1::SERVER_BUG, message);
  }
}

namespace {

// One sqlite3_stmt. Bound text and blobs are not copied (SQLITE_STATIC).
class SqliteCursor final : public sql::Cursor {
 public:
  explicit SqliteCursor(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~SqliteCursor() override { sqlite3_finalize(stmt_); }

  void BindInt(int index, int64_t value) override { sqlite3_bind_int64(stmt_, index, value); }
  void BindText(int index, std::string_view value) override {
    // A non-null pointer even for "", so the value is '' and not NULL.
    sqlite3_bind_text64(stmt_, index, value.empty() ? "" : value.data(), value.size(),
                        SQLITE_STATIC, SQLITE_UTF8);
  }
  void BindBlob(int index, std::string_view value) override {
    sqlite3_bind_blob64(stmt_, index, value.empty() ? "" : value.data(), value.size(),
                        SQLITE_STATIC);
  }
  void BindNull(int index) override { sqlite3_bind_null(stmt_, index); }

  absl::StatusOr<bool> Step() override {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return SqliteError(rc, sqlite3_db_handle(stmt_), sqlite3_sql(stmt_));
  }

  int64_t Int(int column) const override { return sqlite3_column_int64(stmt_, column); }
  bool IsNull(int column) const override {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  std::string_view Text(int column) const override {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    return text == nullptr ? std::string_view()
                           : std::string_view(reinterpret_cast<const char*>(text), size);
  }
  std::string_view Blob(int column) const override {
    const void* blob = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    return blob == nullptr ? std::string_view()
                           : std::string_view(static_cast<const char*>(blob), size);
  }
  void Reset() override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_;
};

}  // namespace

BlobReader::~BlobReader() {
  if (blob_ != nullptr) {
    sqlite3_blob_close(blob_);
  }
}

absl::Status BlobReader::Read(uint64_t offset, uint64_t length, std::string* out) {
  if (offset > size_ || length > size_ - offset) {
    return v1::MakeError(absl::StatusCode::kInternal, v1::SERVER_BUG,
                         absl::StrCat("store: blob read [", offset, "+", length,
                                      ") beyond its size ", size_));
  }
  size_t old = out->size();
  out->resize(old + length);
  // sqlite3_blob_read takes an int length: read in pieces below 1 GiB.
  uint64_t done = 0;
  while (done < length) {
    int piece = static_cast<int>(std::min<uint64_t>(length - done, 1u << 30));
    int rc = sqlite3_blob_read(blob_, out->data() + old + done, piece,
                               static_cast<int>(offset + done));
    if (rc != SQLITE_OK) {
      out->resize(old);
      return SqliteError(rc, nullptr, "blob read");
    }
    done += piece;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& path,
                                                            bool read_only) {
  sqlite3* db = nullptr;
  // Readers open read-write but set query_only: a WAL reader must be able to
  // update the shared-memory index, which a SQLITE_OPEN_READONLY handle may not.
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(rc, db, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  sqlite3_extended_result_codes(db, 1);
  // Writers wait for each other inside SQLite only across processes; in-process
  // writes are serialized by the store's mutex. Readers never wait in WAL mode
  // except during recovery.
  sqlite3_busy_timeout(db, 10000);
  const char* pragmas = read_only ? "PRAGMA foreign_keys=ON; PRAGMA query_only=ON;"
                                  : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                                    "PRAGMA foreign_keys=ON;";
  if (absl::Status status = conn->Exec(pragmas); !status.ok()) {
    return status;
  }
  return conn;
}

Connection::~Connection() {
  ClearCache();  // finalizes the statements before the handle closes
  sqlite3_close_v2(db_);
}

absl::StatusOr<std::unique_ptr<sql::Cursor>> Connection::NewCursor(const char* sql, bool cached) {
  sqlite3_stmt* stmt = nullptr;
  const int rc =
      sqlite3_prepare_v3(db_, sql, -1, cached ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return SqliteError(rc, db_, absl::StrCat("prepare ", sql));
  }
  return std::unique_ptr<sql::Cursor>(new SqliteCursor(stmt));
}

absl::Status Connection::Exec(const char* sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string text = error != nullptr ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    return SqliteError(rc, nullptr, absl::StrCat(text, " in ", sql));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlobReader> Connection::OpenBlob(const char* table, const char* column,
                                                int64_t rowid) {
  BlobReader reader;
  int rc = sqlite3_blob_open(db_, "main", table, column, rowid, /*flags=*/0, &reader.blob_);
  if (rc != SQLITE_OK) {
    return SqliteError(rc, db_, absl::StrCat("blob open ", table, ".", column));
  }
  reader.size_ = static_cast<uint64_t>(sqlite3_blob_bytes(reader.blob_));
  return reader;
}

bool Connection::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

int64_t Connection::Changes() const { return sqlite3_changes64(db_); }

}  // namespace mailbox::store::sqlite
