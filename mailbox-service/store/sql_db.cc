#include "mailbox-service/store/sql_db.h"

#include <utility>

namespace mailbox::store::sql {

Statement::Statement(Statement&& other) noexcept
    : cursor_(std::exchange(other.cursor_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)),
      owned_(std::move(other.owned_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    Release();
    cursor_ = std::exchange(other.cursor_, nullptr);
    in_use_ = std::exchange(other.in_use_, nullptr);
    owned_ = std::move(other.owned_);
  }
  return *this;
}

Statement::~Statement() { Release(); }

void Statement::Release() {
  if (cursor_ != nullptr && in_use_ != nullptr) {
    cursor_->Reset();
    *in_use_ = false;
  }
  owned_.reset();
  cursor_ = nullptr;
  in_use_ = nullptr;
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      return absl::OkStatus();
    }
  }
}

absl::StatusOr<Statement> Connection::Prepare(const char* sql) {
  // Whether the cached statement is lent out is tracked explicitly: a statement
  // bound but not yet stepped looks idle to the database, and sharing it then
  // would let the second user rebind the first's parameters.
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Statement(it->second.cursor.get(), &it->second.in_use);
  }
  const bool cache = it == cache_.end();
  absl::StatusOr<std::unique_ptr<Cursor>> cursor = NewCursor(sql, cache);
  if (!cursor.ok()) {
    return cursor.status();
  }
  if (!cache) {
    return Statement(*std::move(cursor));  // in use by an outer loop: a private copy
  }
  Cached& cached = cache_[sql];
  cached.cursor = *std::move(cursor);
  cached.in_use = true;
  return Statement(cached.cursor.get(), &cached.in_use);
}

absl::StatusOr<Statement> Connection::PrepareUncached(const char* sql) {
  absl::StatusOr<std::unique_ptr<Cursor>> cursor = NewCursor(sql, /*cached=*/false);
  if (!cursor.ok()) {
    return cursor.status();
  }
  return Statement(*std::move(cursor));
}

}  // namespace mailbox::store::sql
