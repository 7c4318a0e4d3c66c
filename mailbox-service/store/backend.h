// The one place the mailbox service chooses its store backend (--backend).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mailbox-service/store/store.h"

namespace mailbox::store {

struct BackendConfig {
  std::string backend = "sqlite";  // one of Backends()
  // sqlite: the directory of the database file (mailbox.db).
  std::filesystem::path data_dir;
  // postgres: the libpq connection string or URI of the shared database, and the
  // most connections this replica opens to it.
  std::string postgres;
  int postgres_max_connections = 16;
  // Worker threads that call the store at once; SQLite keeps that many readers.
  int max_threads = 4;
  StoreOptions options;
};

// Parses --default-mailboxes: "Name:\\Use,Name:\\Use" (empty: none). Each name must
// be valid and not INBOX, each use one RFC 6154 §2 defines; INVALID_ARGUMENT says
// which is not.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseDefaultMailboxes(
    std::string_view spec, const StoreLimits& limits);

// The backends this build has, for --help and error messages.
std::vector<std::string> Backends();

// Opens the configured backend; INVALID_ARGUMENT names the backends there are.
absl::StatusOr<std::unique_ptr<Store>> OpenBackend(const BackendConfig& config,
                                                   const StoreLimits& limits, EventSink events);

}  // namespace mailbox::store
