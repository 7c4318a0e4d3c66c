// The gateway's operator endpoint (Boost.Beast): GET /healthz (the process runs),
// /readyz (accepting IMAP and not draining) and /metrics (Prometheus text).
#pragma once

#include <cstdint>
#include <string>

#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "gateway/ops/metrics.h"

namespace gateway::ops {

// Serves until the acceptor is closed. Each request has a 10 s timer; only small
// GET requests are read. `metrics` must outlive the server.
boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       const Metrics& metrics);

}  // namespace gateway::ops
