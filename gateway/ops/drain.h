// The gateway's drain, in the order a load balancer needs it:
//
//   1. Begin() (SIGTERM, or POST /drain from `imap-gateway drain`, a Kubernetes
//      preStop hook): /readyz fails from now on, and the listeners keep accepting
//      for the grace period, so the balancer sees the failing probe and stops
//      sending new clients before any connection is refused;
//   2. when the grace period is over (main(), on SIGTERM): the listeners close and
//      every session ends with "* BYE [UNAVAILABLE]" at its next safe point;
//   3. sessions still open after --drain-timeout are closed, and the process exits.
//
// A drain request without SIGTERM stops at 1: the gateway is out of the balancer
// and its sessions go on until it is stopped.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>

#include "gateway/ops/metrics.h"

namespace gateway::ops {

class Drain {
 public:
  using Clock = std::chrono::steady_clock;

  Drain(Clock::duration grace, Metrics& metrics) : grace_(grace), metrics_(metrics) {}

  // Starts the drain unless it has started (readiness fails from now on). Returns
  // when the grace period ends (of the first call). Thread-safe.
  Clock::time_point Begin();

  bool started() const;

 private:
  const Clock::duration grace_;
  Metrics& metrics_;
  mutable std::mutex mutex_;
  std::optional<Clock::time_point> grace_end_;
};

}  // namespace gateway::ops
