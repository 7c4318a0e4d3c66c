// The gateway's operator endpoint (common/ops/http_server.h): GET /healthz (the
// process runs), /readyz (accepting IMAP, not draining, and the mailbox service
// reachable), /metrics (Prometheus text), and POST /drain from a loopback address
// (starts the drain; answered when its grace period is over: see drain.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "common/ops/http_server.h"
#include "gateway/ops/drain.h"
#include "gateway/ops/metrics.h"

namespace gateway::ops {

struct HttpHooks {
  // Whether the mailbox service can take calls; /readyz fails while it says no.
  // May block briefly (it runs on the endpoint's own thread). Null: not asked.
  std::function<bool()> store_ready;
  // Null: POST /drain is not served.
  Drain* drain = nullptr;
};

// The gateway's routes; `metrics` and the hooks' targets must outlive them.
std::vector<mailbox::ops::HttpRoute> GatewayRoutes(const Metrics& metrics, HttpHooks hooks = {});

// Serves GatewayRoutes until the acceptor is closed.
boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       const Metrics& metrics, HttpHooks hooks = {});

// The client side of POST /drain (`imap-gateway drain`): asks the gateway whose
// operator endpoint listens on `port` of `host` (a loopback address) to drain, and
// returns once it answered, that is when the grace period is over, or after
// `timeout`.
absl::Status RequestDrain(const std::string& host, uint16_t port,
                          std::chrono::milliseconds timeout);

}  // namespace gateway::ops
