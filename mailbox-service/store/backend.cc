#include "mailbox-service/store/backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "mailbox-service/store/postgres/pg_store.h"
#include "mailbox-service/store/sqlite_store.h"

namespace mailbox::store {

std::vector<std::string> Backends() { return {"sqlite", "postgres"}; }

absl::StatusOr<std::unique_ptr<Store>> OpenBackend(const BackendConfig& config,
                                                   const StoreLimits& limits, EventSink events) {
  if (config.backend == "sqlite") {
    SqliteStore::Options options;
    static_cast<StoreOptions&>(options) = config.options;
    // Each worker may hold a reader connection; keeping that many open spares a
    // reopen (and the re-preparing of its statements) per call under load.
    options.max_idle_readers = config.max_threads;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(
        (config.data_dir / "mailbox.db").string(), limits, std::move(events), options);
    if (!store.ok()) {
      return store.status();
    }
    return std::unique_ptr<Store>(*std::move(store));
  }
  if (config.backend == "postgres") {
    pg::PgStore::Options options;
    static_cast<StoreOptions&>(options) = config.options;
    options.conninfo = config.postgres;
    options.max_connections = config.postgres_max_connections;
    absl::StatusOr<std::unique_ptr<pg::PgStore>> store =
        pg::PgStore::Open(limits, std::move(events), options);
    if (!store.ok()) {
      return store.status();
    }
    return std::unique_ptr<Store>(*std::move(store));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend \"", config.backend,
                                                 "\"; this build has: ",
                                                 absl::StrJoin(Backends(), ", ")));
}

}  // namespace mailbox::store
