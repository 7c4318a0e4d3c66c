// The PostgreSQL backend's schema and its versioned migrations. The version is kept
// in the table schema_version; Migrate runs the missing steps, each in its own
// transaction under an advisory lock, so replicas starting at once migrate once and
// a database written by a newer version is refused rather than damaged.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailbox-service/store/postgres/pg_db.h"

namespace mailbox::store::pg {

int LatestSchemaVersion();
// 0 for an empty database.
absl::StatusOr<int> SchemaVersion(Connection& conn, absl::Time deadline);
// Brings the schema to `target` (at most LatestSchemaVersion()). FAILED_PRECONDITION
// if the database is newer than this binary.
absl::Status Migrate(Connection& conn, int target, absl::Time deadline);

}  // namespace mailbox::store::pg
