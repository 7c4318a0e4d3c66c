// The bounds of the mailbox service that are set by flags: the threads that run
// calls, gRPC's memory, calls in flight per user, and the size and work of one Search.
// main.cc adds LimitSettings() to its flags, reads them with ReadServerLimits and
// hands them to the store, the service and the ServerBuilder; everything else
// about the limits lives here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server_builder.h"
#include "common/config.h"
#include "mailbox-service/server/service.h"
#include "mailbox-service/store/store.h"

namespace mailbox::server {

struct ServerLimits {
  // Threads that run calls (WorkPool, started once: each call being handled holds
  // one), and calls that may wait for one; a call that finds the queue full is
  // refused with RESOURCE_EXHAUSTED.
  int max_threads = 128;
  int work_queue = 4096;
  // Change-feed streams at once (each has a thread of its own).
  int max_feeds = 64;
  // gRPC resource quota: the memory gRPC may use for its buffers.
  int64_t grpc_memory_bytes = 256ll << 20;
  // Receive window of each gRPC stream: what a client (a gateway streaming an APPEND)
  // may send ahead of what the service has read. 0 lets gRPC grow it from its
  // bandwidth-delay probe, bounded only by the resource quota.
  int64_t grpc_stream_window_bytes = 1 << 20;
  int max_calls_per_user = 16;
  int max_search_depth = 64;
  int max_search_keys = 1000;
  int max_search_uid_ranges = 100000;
  int64_t max_search_string_octets = 64 << 10;
  int64_t max_search_scan_octets = 2048ll << 20;
  int64_t max_search_memory_octets = 256ll << 20;
  // Append/Revise bodies: in memory up to this per call, then in a spool file
  // under <data-dir>/spool.
  int64_t append_memory_octets = 1 << 20;
  int64_t max_append_call_octets = 256ll << 20;
  std::string spool_dir;
  // Message content being committed at once, over all calls.
  int64_t commit_memory_octets = 256ll << 20;
  int reader_cache_kib = 256;
  int fetch_stall_seconds = 120;
};

// The flags (and environment variables) of ServerLimits, with their defaults.
std::vector<config::Setting> LimitSettings();

// Reads and checks the flags of LimitSettings() from `config`.
absl::StatusOr<ServerLimits> ReadServerLimits(const config::Config& config);

// Copies the limits into the parts that enforce them.
void ApplyLimits(const ServerLimits& limits, store::StoreLimits* store);
void ApplyLimits(const ServerLimits& limits, ServiceOptions* service);
void ApplyLimits(const ServerLimits& limits, grpc::ServerBuilder* builder);

}  // namespace mailbox::server
