// The SQL store's connection interface (sql_db.h) on a PostgreSQL connection: "?"
// placeholders become $1, $2, ... once per statement, parameters go in binary
// form, and a statement runs on its first Step, with the connection's deadline.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox-service/store/postgres/pg_db.h"
#include "mailbox-service/store/sql_db.h"

namespace mailbox::store::pg {

// "?" outside quoted literals becomes "$1", "$2", ... in order.
std::string NumberPlaceholders(std::string_view sql);

class SqlConnection final : public sql::Connection {
 public:
  // Holds `lease` until destroyed; every statement must finish by `deadline`.
  SqlConnection(Pool::Lease lease, absl::Time deadline)
      : lease_(std::move(lease)), deadline_(deadline) {}
  ~SqlConnection() override { ClearCache(); }

  absl::Status Exec(const char* sql) override;
  // REPEATABLE READ: every read of the transaction sees one snapshot.
  absl::Status BeginSnapshot() override;
  bool InTransaction() const override;
  int64_t Changes() const override { return changes_; }

  pg::Connection& raw() { return *lease_; }
  absl::Time deadline() const { return deadline_; }
  void set_changes(int64_t changes) { changes_ = changes; }
  // Set by a write that released content, for the cleanup after its COMMIT.
  bool content_released() const { return content_released_; }
  void set_content_released(bool released) { content_released_ = released; }

 protected:
  absl::StatusOr<std::unique_ptr<sql::Cursor>> NewCursor(const char* sql, bool cached) override;

 private:
  Pool::Lease lease_;
  absl::Time deadline_;
  int64_t changes_ = 0;
  bool content_released_ = false;
};

}  // namespace mailbox::store::pg
