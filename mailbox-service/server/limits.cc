#include "mailbox-service/server/limits.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpcpp/resource_quota.h"

namespace mailbox::server {

namespace {
constexpr int64_t kKiB = 1 << 10;
constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kGiB = 1 << 30;
constexpr int64_t kTiB = int64_t{1} << 40;
}  // namespace

std::vector<config::Setting> LimitSettings() {
  const ServerLimits d;
  constexpr int64_t kIntMax = 1 << 30;
  return {
      {"max-threads", "MAILBOX_MAX_THREADS", std::to_string(d.max_threads),
       "threads that run calls (SQLite, password hashes, a Fetch's writes), all started "
       "at once; each call being handled holds one",
       config::Int(4, 100000)},
      {"work-queue", "MAILBOX_WORK_QUEUE", std::to_string(d.work_queue),
       "calls that may wait for a free thread; calls beyond are refused at once with "
       "RESOURCE_EXHAUSTED (the gateway answers NO [UNAVAILABLE])",
       config::Int(0, 1000000)},
      {"max-feeds", "MAILBOX_MAX_FEEDS", std::to_string(d.max_feeds),
       "change-feed streams at once (a gateway opens one per worker thread; each holds "
       "a thread); more are refused with RESOURCE_EXHAUSTED",
       config::Int(1, 100000)},
      {"grpc-memory", "MAILBOX_GRPC_MEMORY", config::FormatSize(d.grpc_memory_bytes),
       "memory gRPC may use for connection and call buffers (resource quota)",
       config::Size(16 * kMiB, kTiB)},
      {"grpc-stream-window", "MAILBOX_GRPC_STREAM_WINDOW",
       config::FormatSize(d.grpc_stream_window_bytes),
       "receive window of each gRPC stream: octets a gateway may send ahead of what the "
       "service has read (an APPEND's message waits there); 0 lets gRPC size it from its "
       "bandwidth-delay probe, up to --grpc-memory",
       config::Size(0, kGiB)},
      {"max-calls-per-user", "MAILBOX_MAX_CALLS_PER_USER", std::to_string(d.max_calls_per_user),
       "calls one user may have in flight (streams included, not the change feed); 0: no "
       "limit",
       config::Int(0, kIntMax)},
      {"search-max-depth", "MAILBOX_SEARCH_MAX_DEPTH", std::to_string(d.max_search_depth),
       "nesting of AND/OR/NOT in one Search request (deeper is BAD)", config::Int(1, 10000)},
      {"search-max-keys", "MAILBOX_SEARCH_MAX_KEYS", std::to_string(d.max_search_keys),
       "search keys in one Search request (AND/OR/NOT count)", config::Int(1, kIntMax)},
      {"search-max-uid-ranges", "MAILBOX_SEARCH_MAX_UID_RANGES",
       std::to_string(d.max_search_uid_ranges), "UID ranges in one Search request, all keys",
       config::Int(1, kIntMax)},
      {"search-max-string-octets", "MAILBOX_SEARCH_MAX_STRING_OCTETS",
       config::FormatSize(d.max_search_string_octets),
       "octets of search strings in one Search request, all keys", config::Size(1, kIntMax)},
      {"search-max-scan", "MAILBOX_SEARCH_MAX_SCAN",
       config::FormatSize(d.max_search_scan_octets),
       "message text one Search may scan, summed over its keys; 0: no limit",
       config::Size(0, kTiB)},
      {"search-memory", "MAILBOX_SEARCH_MEMORY", config::FormatSize(d.max_search_memory_octets),
       "message content all searches together may hold (a message scanned counts twice "
       "its size); a search waits for room until its deadline; 0: no limit",
       config::Size(0, kTiB)},
      {"append-memory", "MAILBOX_APPEND_MEMORY", config::FormatSize(d.append_memory_octets),
       "the part of one Append/Revise call's messages kept in memory while the stream "
       "arrives; the rest waits in a file under <data-dir>/spool",
       config::Size(0, kTiB >> 10)},
      {"max-append-call-size", "MAILBOX_MAX_APPEND_CALL_SIZE",
       config::FormatSize(d.max_append_call_octets),
       "all messages of one Append call (a MULTIAPPEND) together", config::Size(kMiB, kTiB)},
      {"commit-memory", "MAILBOX_COMMIT_MEMORY", config::FormatSize(d.commit_memory_octets),
       "appended message content being stored at once, all calls together; 0: no limit",
       config::Size(0, kTiB)},
      {"reader-cache-size", "MAILBOX_READER_CACHE_SIZE",
       config::FormatSize(int64_t{d.reader_cache_kib} << 10),
       "SQLite page cache of each reader connection (a stalled FETCH holds one), in whole "
       "KiB; 0: SQLite's default",
       config::Size(0, kTiB >> 10)},
      {"fetch-stall-timeout", "MAILBOX_FETCH_STALL_TIMEOUT",
       config::DurationString(absl::Seconds(d.fetch_stall_seconds)),
       "cancel a Fetch whose reader has taken nothing for this long (it holds a thread "
       "until then); 0s: never",
       config::Duration(absl::ZeroDuration(), absl::Hours(24))},

      // Former names, refused with the new one.
      {"grpc-memory-mib", "MAILBOX_GRPC_MEMORY_MIB", "", "", config::RenamedTo("grpc-memory")},
      {"search-max-scan-mib", "MAILBOX_SEARCH_MAX_SCAN_MIB", "", "",
       config::RenamedTo("search-max-scan")},
      {"search-memory-mib", "MAILBOX_SEARCH_MEMORY_MIB", "", "",
       config::RenamedTo("search-memory")},
      {"append-memory-kib", "MAILBOX_APPEND_MEMORY_KIB", "", "",
       config::RenamedTo("append-memory")},
      {"max-append-call-mib", "MAILBOX_MAX_APPEND_CALL_MIB", "", "",
       config::RenamedTo("max-append-call-size")},
      {"commit-memory-mib", "MAILBOX_COMMIT_MEMORY_MIB", "", "",
       config::RenamedTo("commit-memory")},
      {"reader-cache-kib", "MAILBOX_READER_CACHE_KIB", "", "",
       config::RenamedTo("reader-cache-size")},
      {"fetch-stall-seconds", "MAILBOX_FETCH_STALL_SECONDS", "", "",
       config::RenamedTo("fetch-stall-timeout")},
  };
}

// The values were checked against the ranges above when the settings were parsed.
absl::StatusOr<ServerLimits> ReadServerLimits(const config::Config& config) {
  ServerLimits limits;
  auto integer = [&config](const char* name) { return config.GetInt(name).value_or(0); };
  limits.max_threads = static_cast<int>(integer("max-threads"));
  limits.work_queue = static_cast<int>(integer("work-queue"));
  limits.max_feeds = static_cast<int>(integer("max-feeds"));
  limits.grpc_memory_bytes = config.GetSize("grpc-memory");
  limits.grpc_stream_window_bytes = config.GetSize("grpc-stream-window");
  if (limits.grpc_stream_window_bytes != 0 && limits.grpc_stream_window_bytes < 64 * kKiB) {
    return absl::InvalidArgumentError(
        "--grpc-stream-window must be 0 (sized by gRPC) or at least 64KiB");
  }
  limits.max_calls_per_user = static_cast<int>(integer("max-calls-per-user"));
  limits.max_search_depth = static_cast<int>(integer("search-max-depth"));
  limits.max_search_keys = static_cast<int>(integer("search-max-keys"));
  limits.max_search_uid_ranges = static_cast<int>(integer("search-max-uid-ranges"));
  limits.max_search_string_octets = config.GetSize("search-max-string-octets");
  limits.max_search_scan_octets = config.GetSize("search-max-scan");
  limits.max_search_memory_octets = config.GetSize("search-memory");
  limits.append_memory_octets = config.GetSize("append-memory");
  limits.max_append_call_octets = config.GetSize("max-append-call-size");
  limits.commit_memory_octets = config.GetSize("commit-memory");
  limits.reader_cache_kib = static_cast<int>(config.GetSize("reader-cache-size") >> 10);
  limits.fetch_stall_seconds =
      static_cast<int>(absl::ToInt64Seconds(config.GetDuration("fetch-stall-timeout")));
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
  if (limits.grpc_stream_window_bytes > 0) {
    // A fixed window: the bandwidth-delay probe would otherwise grow it (to several
    // MiB per stream) whenever the service reads slower than a gateway sends.
    builder->AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    builder->AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                                static_cast<int>(limits.grpc_stream_window_bytes));
  }
}

}  // namespace mailbox::server
