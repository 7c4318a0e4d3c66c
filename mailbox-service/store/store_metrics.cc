#include "mailbox-service/store/store_metrics.h"

namespace mailbox::store {

namespace {

std::vector<std::vector<std::string>> Operations() {
  std::vector<std::vector<std::string>> out;
  for (std::string_view name : kStoreOperations) {
    out.push_back({std::string(name)});
  }
  return out;
}

}  // namespace

StoreMetrics::StoreMetrics(metrics::Registry& registry)
    : transactions(registry.AddCounterFamily(
          "imapd_mailbox_store_transactions_total",
          "Write transactions of the store per outcome: committed, rolled_back (the write "
          "failed or its commit did), retried (PostgreSQL: run again after a conflict or a "
          "connection lost before COMMIT).",
          {"outcome"}, {{"committed"}, {"rolled_back"}, {"retried"}})),
      sqlite_durable_commits(registry.AddCounter(
          "imapd_mailbox_sqlite_durable_commits_total",
          "SQLite write transactions committed with synchronous=FULL: each syncs the WAL to "
          "disk, so this counts the fsyncs writes cost (a group commit of several writes is "
          "one).")),
      postgres_pool_in_use(registry.AddGauge(
          "imapd_mailbox_postgres_pool_in_use_connections",
          "PostgreSQL connections lent to a call now (bounded by --postgres-max-connections).")),
      postgres_pool_waiting(registry.AddGauge("imapd_mailbox_postgres_pool_waiting_calls",
                                              "Calls waiting for a PostgreSQL connection now.")),
      postgres_pool_open(registry.AddGauge("imapd_mailbox_postgres_pool_open_connections",
                                           "PostgreSQL connections open now, idle or lent.")),
      operation_seconds(registry.AddHistogramFamily(
          "imapd_mailbox_store_operation_duration_seconds",
          "Time spent in the store per operation (Store method: Append, Fetch, StoreFlags...), "
          "including waits for the writer or a database connection. Series appear once used.",
          {"operation"}, Operations(), metrics::LatencyBuckets(), {.omit_zero = true})) {}

StoreMetrics& GlobalStoreMetrics() {
  static StoreMetrics* metrics = new StoreMetrics(metrics::ProcessRegistry());
  return *metrics;
}

}  // namespace mailbox::store
