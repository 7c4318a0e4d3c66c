// The gateway's operator endpoint (common/ops/http_server.h): GET /healthz (the
// process runs), /readyz (accepting IMAP and not draining) and /metrics
// (Prometheus text).
#pragma once

#include <vector>

#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "common/ops/http_server.h"
#include "gateway/ops/metrics.h"

namespace gateway::ops {

// The gateway's routes; `metrics` must outlive them.
std::vector<mailbox::ops::HttpRoute> GatewayRoutes(const Metrics& metrics);

// Serves GatewayRoutes until the acceptor is closed. `metrics` must outlive the
// server.
boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       const Metrics& metrics);

}  // namespace gateway::ops
