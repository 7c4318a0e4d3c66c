// Versioned schema of the SQLite store.
//
// The schema version lives in PRAGMA user_version. Each migration step runs in its
// own IMMEDIATE transaction together with the version bump, so a crash leaves the
// database at a whole version. Steps are only ever appended: a released step is
// never edited.
//
// The tables use only types and constraints PostgreSQL has too (integers, text,
// blobs as bytea, partial indexes, triggers), so a PostgreSQL backend mirrors them.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/store/sqlite_db.h"

namespace mailbox::store::sqlite {

// The version a fully migrated database has.
int LatestSchemaVersion();

// The database's current version (0 for a new file).
absl::StatusOr<int> SchemaVersion(Connection& conn);

// Applies every step above the current version up to `target` (tests migrate to an
// older version to check upgrades). FailedPrecondition if the database is newer
// than this binary knows.
absl::Status Migrate(Connection& conn, int target = LatestSchemaVersion());

}  // namespace mailbox::store::sqlite
