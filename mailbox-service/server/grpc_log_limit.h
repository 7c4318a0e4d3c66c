// A bound on how fast gRPC's own log lines reach stderr.
//
// gRPC logs one error line for every TLS handshake it refuses (no client
// certificate, another CA's, plaintext on the TLS port). Anyone who reaches the
// service's port can open connections as fast as the network allows, so without a
// bound these lines could fill the disk of whatever collects the service's output.
// Past the bound, lines are dropped and counted, and the count is logged with the
// next line that passes.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace mailbox::server {

// A token bucket of `lines_per_second` lines, as deep as one second of them.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int lines_per_second);

  // -1 if the line at `now` is to be dropped; otherwise how many lines were dropped
  // since the last one that passed (0 usually).
  int64_t Admit(absl::Time now);

 private:
  const double rate_;
  double tokens_;
  absl::Time last_ = absl::InfinitePast();
  int64_t dropped_ = 0;
};

// Routes gRPC's log lines through a LogRateLimiter of `lines_per_second` (0 keeps
// gRPC's own unbounded logger). Call once, before the server starts.
void InstallGrpcLogRateLimit(int lines_per_second);

}  // namespace mailbox::server
