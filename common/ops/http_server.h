// A small operator HTTP endpoint (Boost.Beast) for both binaries: each process
// gives the paths it serves (GET /healthz, /readyz, /metrics...) as routes whose
// handler makes the response when a request comes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"

namespace mailbox::ops {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// The content type of the Prometheus text exposition format.
inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

struct HttpRoute {
  std::string method = "GET";
  std::string path;
  // Runs on the acceptor's executor for each request; must be thread-safe with
  // respect to what it reads.
  std::function<HttpResponse()> handler;
  // Instead of `handler`, for a response that has to wait (no request timer runs
  // meanwhile) or depends on who asks: given the peer's address.
  std::function<boost::asio::awaitable<HttpResponse>(const boost::asio::ip::tcp::endpoint& peer)>
      wait_handler;
};

// Serves until the acceptor is closed. Each request has a 10 s timer; only small
// requests are read. A path with no route is 404; a known path asked with another
// method is 405. Requests still being answered when the acceptor closes keep the
// routes alive. `name` prefixes log lines.
// An acceptor on `io` listening on `endpoint` (SO_REUSEADDR), for an operator
// endpoint; or Unavailable "cannot listen on <shown>: <why> (is another process
// using that address?)".
absl::StatusOr<std::unique_ptr<boost::asio::ip::tcp::acceptor>> ListenOn(
    boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
    const std::string& shown);

boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       std::shared_ptr<const std::vector<HttpRoute>> routes,
                                       std::string name);

}  // namespace mailbox::ops
