#include "mailbox-service/server/limits.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/resource_quota.h"

namespace mailbox::server {
namespace {

struct IntFlag {
  const char* name;
  int64_t min;
  int64_t max;
};

// Reads one integer flag and checks its range, so a typo is an error at start
// rather than a limit that silently does not hold.
absl::StatusOr<int64_t> ReadInt(const config::Config& config, const IntFlag& flag) {
  absl::StatusOr<int64_t> value = config.GetInt(flag.name);
  if (!value.ok()) {
    return value.status();
  }
  if (*value < flag.min || *value > flag.max) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag.name, " must be between ", flag.min,
                                                   " and ", flag.max, ", not ", *value));
  }
  return *value;
}

}  // namespace

std::vector<config::Setting> LimitSettings() {
  const ServerLimits d;
  return {
      {"max-threads", "MAILBOX_MAX_THREADS", std::to_string(d.max_threads),
       "threads that run calls (SQLite, password hashes, a Fetch's writes), all started "
       "at once; each call being handled holds one"},
      {"work-queue", "MAILBOX_WORK_QUEUE", std::to_string(d.work_queue),
       "calls that may wait for a free thread; calls beyond are refused at once with "
       "RESOURCE_EXHAUSTED (the gateway answers NO [UNAVAILABLE])"},
      {"max-feeds", "MAILBOX_MAX_FEEDS", std::to_string(d.max_feeds),
       "change-feed streams at once (a gateway opens one per worker thread; each holds "
       "a thread); more are refused with RESOURCE_EXHAUSTED"},
      {"grpc-memory-mib", "MAILBOX_GRPC_MEMORY_MIB", std::to_string(d.grpc_memory_bytes >> 20),
       "memory gRPC may use for connection and call buffers (resource quota)"},
      {"max-calls-per-user", "MAILBOX_MAX_CALLS_PER_USER", std::to_string(d.max_calls_per_user),
       "calls one user may have in flight (streams included, not the change feed); 0: no "
       "limit"},
      {"search-max-depth", "MAILBOX_SEARCH_MAX_DEPTH", std::to_string(d.max_search_depth),
       "nesting of AND/OR/NOT in one Search request (deeper is BAD)"},
      {"search-max-keys", "MAILBOX_SEARCH_MAX_KEYS", std::to_string(d.max_search_keys),
       "search keys in one Search request (AND/OR/NOT count)"},
      {"search-max-uid-ranges", "MAILBOX_SEARCH_MAX_UID_RANGES",
       std::to_string(d.max_search_uid_ranges), "UID ranges in one Search request, all keys"},
      {"search-max-string-octets", "MAILBOX_SEARCH_MAX_STRING_OCTETS",
       std::to_string(d.max_search_string_octets),
       "octets of search strings in one Search request, all keys"},
      {"search-max-scan-mib", "MAILBOX_SEARCH_MAX_SCAN_MIB",
       std::to_string(d.max_search_scan_octets >> 20),
       "MiB of message text one Search may scan, summed over its keys; 0: no limit"},
      {"search-memory-mib", "MAILBOX_SEARCH_MEMORY_MIB",
       std::to_string(d.max_search_memory_octets >> 20),
       "MiB of message content all searches together may hold (a message scanned counts "
       "twice its size); a search waits for room until its deadline; 0: no limit"},
      {"append-memory-kib", "MAILBOX_APPEND_MEMORY_KIB",
       std::to_string(d.append_memory_octets >> 10),
       "KiB of one Append/Revise call's messages kept in memory while the stream "
       "arrives; the rest waits in a file under <data-dir>/spool"},
      {"max-append-call-mib", "MAILBOX_MAX_APPEND_CALL_MIB",
       std::to_string(d.max_append_call_octets >> 20),
       "MiB of all messages of one Append call (a MULTIAPPEND) together"},
      {"commit-memory-mib", "MAILBOX_COMMIT_MEMORY_MIB",
       std::to_string(d.commit_memory_octets >> 20),
       "MiB of appended message content being stored at once, all calls together; "
       "0: no limit"},
      {"reader-cache-kib", "MAILBOX_READER_CACHE_KIB", std::to_string(d.reader_cache_kib),
       "SQLite page cache of each reader connection (a stalled FETCH holds one); 0: "
       "SQLite's default"},
      {"fetch-stall-seconds", "MAILBOX_FETCH_STALL_SECONDS",
       std::to_string(d.fetch_stall_seconds),
       "cancel a Fetch whose reader has taken nothing for this long (it holds a thread "
       "until then); 0: never"},
  };
}

absl::StatusOr<ServerLimits> ReadServerLimits(const config::Config& config) {
  ServerLimits limits;
  constexpr int64_t kIntMax = 1 << 30;
  absl::StatusOr<int64_t> v;
  if (v = ReadInt(config, {"max-threads", 4, 100000}); !v.ok()) return v.status();
  limits.max_threads = static_cast<int>(*v);
  if (v = ReadInt(config, {"work-queue", 0, 1000000}); !v.ok()) return v.status();
  limits.work_queue = static_cast<int>(*v);
  if (v = ReadInt(config, {"max-feeds", 1, 100000}); !v.ok()) return v.status();
  limits.max_feeds = static_cast<int>(*v);
  if (v = ReadInt(config, {"grpc-memory-mib", 16, 1 << 20}); !v.ok()) return v.status();
  limits.grpc_memory_bytes = *v << 20;
  if (v = ReadInt(config, {"max-calls-per-user", 0, kIntMax}); !v.ok()) return v.status();
  limits.max_calls_per_user = static_cast<int>(*v);
  if (v = ReadInt(config, {"search-max-depth", 1, 10000}); !v.ok()) return v.status();
  limits.max_search_depth = static_cast<int>(*v);
  if (v = ReadInt(config, {"search-max-keys", 1, kIntMax}); !v.ok()) return v.status();
  limits.max_search_keys = static_cast<int>(*v);
  if (v = ReadInt(config, {"search-max-uid-ranges", 1, kIntMax}); !v.ok()) return v.status();
  limits.max_search_uid_ranges = static_cast<int>(*v);
  if (v = ReadInt(config, {"search-max-string-octets", 1, kIntMax}); !v.ok()) return v.status();
  limits.max_search_string_octets = *v;
  if (v = ReadInt(config, {"search-max-scan-mib", 0, int64_t{1} << 40}); !v.ok()) {
    return v.status();
  }
  limits.max_search_scan_octets = *v << 20;
  if (v = ReadInt(config, {"search-memory-mib", 0, 1 << 20}); !v.ok()) return v.status();
  limits.max_search_memory_octets = *v << 20;
  if (v = ReadInt(config, {"append-memory-kib", 0, 1 << 20}); !v.ok()) return v.status();
  limits.append_memory_octets = *v << 10;
  if (v = ReadInt(config, {"max-append-call-mib", 1, 1 << 20}); !v.ok()) return v.status();
  limits.max_append_call_octets = *v << 20;
  if (v = ReadInt(config, {"commit-memory-mib", 0, 1 << 20}); !v.ok()) return v.status();
  limits.commit_memory_octets = *v << 20;
  if (v = ReadInt(config, {"reader-cache-kib", 0, 1 << 20}); !v.ok()) return v.status();
  limits.reader_cache_kib = static_cast<int>(*v);
  if (v = ReadInt(config, {"fetch-stall-seconds", 0, 86400}); !v.ok()) return v.status();
  limits.fetch_stall_seconds = static_cast<int>(*v);
  limits.spool_dir = config.Get("data-dir") + "/spool";
  return limits;
}

void ApplyLimits(const ServerLimits& limits, store::StoreLimits* store) {
  store->max_search_depth = limits.max_search_depth;
  store->max_search_keys = limits.max_search_keys;
  store->max_search_uid_ranges = limits.max_search_uid_ranges;
  store->max_search_string_octets = static_cast<uint64_t>(limits.max_search_string_octets);
  store->max_search_scan_octets = static_cast<uint64_t>(limits.max_search_scan_octets);
  store->reader_cache_kib = limits.reader_cache_kib;
  store->max_search_memory_octets = static_cast<uint64_t>(limits.max_search_memory_octets);
}

void ApplyLimits(const ServerLimits& limits, ServiceOptions* service) {
  service->max_calls_per_user = limits.max_calls_per_user;
  service->spool_dir = limits.spool_dir;
  service->append_memory_octets = static_cast<uint64_t>(limits.append_memory_octets);
  service->max_append_call_octets = static_cast<uint64_t>(limits.max_append_call_octets);
  service->fetch_stall_timeout = absl::Seconds(limits.fetch_stall_seconds);
  service->commit_memory_octets = static_cast<uint64_t>(limits.commit_memory_octets);
  service->workers = limits.max_threads;
  service->work_queue = limits.work_queue;
  service->max_feeds = limits.max_feeds;
}

void ApplyLimits(const ServerLimits& limits, grpc::ServerBuilder* builder) {
  // The builder keeps its own reference to the quota's core object. Every method
  // uses the callback API, so the quota bounds memory only; the threads that run
  // calls are the service's WorkPool (ServiceOptions::workers).
  grpc::ResourceQuota quota("mailbox-service");
  quota.Resize(static_cast<size_t>(limits.grpc_memory_bytes));
  builder->SetResourceQuota(quota);
}

}  // namespace mailbox::server
