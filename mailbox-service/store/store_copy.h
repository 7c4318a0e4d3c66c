// Moves a store from SQLite to PostgreSQL (mailbox-admin store copy): every user,
// mailbox, message, change-log entry, subscription and shared secret, with its
// UIDVALIDITY, UIDs, MODSEQs and ids as they are, so that clients need no resync
// and session tokens stay valid. Login-throttle records are not copied (they
// expire within the throttle window anyway).
//
// The SQLite database must be at this build's schema version and should not be
// written meanwhile (stop the service; the copy reads one snapshot). The
// PostgreSQL database is migrated first and must hold no users or mailboxes. The
// copy is one PostgreSQL transaction: it is all there or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::store {

// Called after each table with its name and the rows copied.
using CopyProgress = std::function<void(std::string_view table, int64_t rows)>;

absl::Status CopySqliteToPostgres(const std::string& sqlite_path, const std::string& conninfo,
                                  const CopyProgress& progress);

// Migrates the PostgreSQL database to this build's schema (mailbox-admin store
// migrate); returns its version before and after.
absl::StatusOr<std::pair<int, int>> MigratePostgres(const std::string& conninfo);

}  // namespace mailbox::store
