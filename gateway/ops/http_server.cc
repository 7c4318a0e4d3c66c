#include "gateway/ops/http_server.h"

#include <memory>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace gateway::ops {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using mailbox::ops::HttpResponse;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr char kText[] = "text/plain; charset=utf-8";

}  // namespace

std::vector<mailbox::ops::HttpRoute> GatewayRoutes(const Metrics& metrics, HttpHooks hooks) {
  const Metrics* m = &metrics;
  std::vector<mailbox::ops::HttpRoute> routes = {
      {"GET", "/healthz", [] { return HttpResponse{200, kText, "ok\n"}; }, {}},
      {"GET", "/readyz",
       [m, store_ready = hooks.store_ready] {
         const char* why = !m->ready.load()                    ? "starting\n"
                           : m->draining.load()                ? "draining\n"
                           : store_ready && !store_ready()     ? "mailbox service unreachable\n"
                                                               : nullptr;
         return why == nullptr ? HttpResponse{200, kText, "ready\n"}
                               : HttpResponse{503, kText, why};
       },
       {}},
      {"GET", "/metrics",
       [m] { return HttpResponse{200, mailbox::ops::kPrometheusContentType, m->Render()}; },
       {}},
  };
  if (Drain* drain = hooks.drain; drain != nullptr) {
    // POST /drain: starts the drain and answers once its grace period is over, so
    // that a preStop hook waiting for the answer holds SIGTERM back until the
    // balancer had the time to notice the failing readiness.
    routes.push_back(
        {"POST", "/drain", {},
         [drain](const asio::ip::tcp::endpoint& peer) -> asio::awaitable<HttpResponse> {
           if (!peer.address().is_loopback()) {
             // The endpoint may listen on every address (for probes); a drain is
             // asked for only from inside the gateway's own host or pod.
             co_return HttpResponse{403, kText, "POST /drain only from a loopback address\n"};
           }
           const auto grace_end = drain->Begin();
           asio::steady_timer wait(co_await asio::this_coro::executor, grace_end);
           co_await wait.async_wait(kNoThrow);
           co_return HttpResponse{200, kText,
                                  "draining: readiness fails and the grace period is over\n"};
         }});
  }
  return routes;
}

boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       const Metrics& metrics, HttpHooks hooks) {
  co_await mailbox::ops::ServeHttp(
      acceptor,
      std::make_shared<const std::vector<mailbox::ops::HttpRoute>>(
          GatewayRoutes(metrics, std::move(hooks))),
      "imap-gateway");
}

absl::Status RequestDrain(const std::string& host, uint16_t port,
                          std::chrono::milliseconds timeout) {
  asio::io_context io;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError("not an IP address: " + host);
  }
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  http::request<http::empty_body> request(http::verb::post, "/drain", 11);
  request.set(http::field::host, host);
  http::response<http::string_body> response;
  beast::flat_buffer buffer;
  auto exchange = [&]() -> asio::awaitable<beast::error_code> {
    auto [connect_error] =
        co_await stream.async_connect(asio::ip::tcp::endpoint(address, port), kNoThrow);
    if (connect_error) {
      co_return connect_error;
    }
    auto [write_error, written] = co_await http::async_write(stream, request, kNoThrow);
    if (write_error) {
      co_return write_error;
    }
    auto [read_error, read] = co_await http::async_read(stream, buffer, response, kNoThrow);
    co_return read_error;
  };
  beast::error_code result;
  asio::co_spawn(io, exchange(), [&](std::exception_ptr, beast::error_code error) {
    result = error;
  });
  io.run();
  const std::string where = host + ":" + std::to_string(port);
  if (result) {
    return absl::UnavailableError("no answer from the operator endpoint at " + where + ": " +
                                  result.message());
  }
  if (response.result() != http::status::ok) {
    return absl::FailedPreconditionError("the operator endpoint at " + where + " answered " +
                                         std::to_string(response.result_int()) + ": " +
                                         response.body());
  }
  return absl::OkStatus();
}

}  // namespace gateway::ops
