// The mailbox service's store metrics (common/metrics): what the backends count
// themselves (transactions, durable commits, PostgreSQL pool use) and the
// latency per Store operation (timed_store.h).
//
// One instance per process, GlobalStoreMetrics(), registered in the process
// registry; backends bump it from any thread.
#pragma once

#include <array>
#include <string_view>

#include "common/metrics/metrics.h"

namespace mailbox::store {

// The operations, in the order of StoreMetrics::operation_seconds (the Store
// methods timed_store.h times).
inline constexpr std::array<std::string_view, 42> kStoreOperations = {
    "CreateUser",
    "DeleteUser",
    "SetPasswordHash",
    "SetScramKeys",
    "FindUser",
    "FindUserById",
    "ListUsers",
    "RecordAuthFailure",
    "AuthFailures",
    "ClearAuthFailures",
    "ReserveAuthAttempt",
    "ReleaseAuthAttempt",
    "GetOrCreateSecret",
    "FindSecret",
    "DeleteSecret",
    "ListMailboxes",
    "CreateMailbox",
    "DeleteMailbox",
    "RenameMailbox",
    "SetSubscription",
    "Status",
    "SetQuota",
    "GetUserQuota",
    "GetQuota",
    "GetMetadata",
    "SetMetadata",
    "Open",
    "ClaimRecent",
    "Vanished",
    "Fetch",
    "StoreFlags",
    "Copy",
    "Move",
    "Expunge",
    "Append",
    "Search",
    "SortableMessages",
    "SortedUids",
    "Revise",
    "ReadChanges",
    "PrepareImport",
    "FinishImport",
};

// Transaction outcomes, in the order of StoreMetrics::transactions.
enum class TxnOutcome { kCommitted, kRolledBack, kRetried };

struct StoreMetrics {
  explicit StoreMetrics(metrics::Registry& registry);

  // Write transactions per outcome: committed; rolled back (every write of it
  // failed, or the commit failed); retried (PostgreSQL: a serialization failure,
  // deadlock or lost connection before COMMIT ran the write again).
  metrics::Family<metrics::Counter>& transactions;
  // SQLite: COMMITs of write transactions, each of which syncs the WAL to disk
  // (journal_mode=WAL, synchronous=FULL), so the count of fsyncs the writes cost
  // (checkpoints add theirs; SQLite does them inside a commit). A group commit
  // of several writes is one.
  metrics::Counter& sqlite_durable_commits;
  // PostgreSQL connection pool: connections lent to a call now, and calls waiting
  // for one.
  metrics::Gauge& postgres_pool_in_use;
  metrics::Gauge& postgres_pool_waiting;
  metrics::Gauge& postgres_pool_open;
  // Per Store method (timed_store.h kStoreOperations).
  metrics::Family<metrics::Histogram>& operation_seconds;

  void Transaction(TxnOutcome outcome) { transactions.At(static_cast<size_t>(outcome)).Inc(); }
};

// The process's store metrics, registered in metrics::ProcessRegistry() on first use.
StoreMetrics& GlobalStoreMetrics();

}  // namespace mailbox::store
