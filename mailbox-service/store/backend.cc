#include "mailbox-service/store/backend.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/mailbox/names.h"
#include "mailbox-service/store/postgres/pg_store.h"
#include "mailbox-service/store/sqlite_store.h"

namespace mailbox::store {

std::vector<std::string> Backends() { return {"sqlite", "postgres"}; }

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseDefaultMailboxes(
    std::string_view spec, const StoreLimits& limits) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view entry :
       absl::StrSplit(absl::string_view(spec.data(), spec.size()), ',', absl::SkipWhitespace())) {
    const size_t colon = entry.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--default-mailboxes: \"", entry, "\" is not Name:\\Use (e.g. Sent:\\Sent)"));
    }
    const std::string use(absl::StripAsciiWhitespace(entry.substr(colon + 1)));
    const std::string requested(absl::StripAsciiWhitespace(entry.substr(0, colon)));
    absl::StatusOr<std::string> name = NormalizeMailboxName(requested, limits);
    if (!name.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--default-mailboxes: ", name.status().message()));
    }
    if (rules::IsInbox(*name)) {
      return absl::InvalidArgumentError("--default-mailboxes: INBOX always exists");
    }
    if (!rules::IsKnownSpecialUse(use)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--default-mailboxes: ", use, " is not a special use RFC 6154 §2 defines"));
    }
    out.emplace_back(*std::move(name), use);
  }
  return out;
}

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
