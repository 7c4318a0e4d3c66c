#include "gateway/ops/http_server.h"

#include <chrono>
#include <iostream>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace gateway::ops {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

http::response<http::string_body> Respond(const http::request<http::string_body>& request,
                                          const Metrics& metrics, const HttpHooks& hooks) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  const std::string target(request.target());
  if (target == "/drain" && hooks.drain != nullptr) {
    // Only a POST from loopback reaches DrainRequest.
    response.result(http::status::method_not_allowed);
    response.body() = "a drain is asked for with POST, from a loopback address\n";
  } else if (request.method() != http::verb::get) {
    response.result(http::status::method_not_allowed);
    response.body() = "only GET\n";
  } else if (target == "/healthz") {
    response.result(http::status::ok);
    response.body() = "ok\n";
  } else if (target == "/readyz") {
    const char* why = !metrics.ready.load()                         ? "starting\n"
                      : metrics.draining.load()                     ? "draining\n"
                      : hooks.store_ready && !hooks.store_ready() ? "mailbox service unreachable\n"
                                                                    : nullptr;
    response.result(why == nullptr ? http::status::ok : http::status::service_unavailable);
    response.body() = why == nullptr ? "ready\n" : why;
  } else if (target == "/metrics") {
    response.result(http::status::ok);
    response.set(http::field::content_type, "text/plain; version=0.0.4");
    response.body() = metrics.Render();
  } else {
    response.result(http::status::not_found);
    response.body() = "not found: try /healthz, /readyz or /metrics\n";
  }
  response.prepare_payload();
  return response;
}

// POST /drain: starts the drain and answers once its grace period is over, so that
// a preStop hook waiting for the answer holds SIGTERM back until the balancer had
// the time to notice the failing readiness.
asio::awaitable<http::response<http::string_body>> DrainRequest(
    const http::request<http::string_body>& request, beast::tcp_stream& stream, Drain& drain) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  beast::error_code ec;
  const auto peer = stream.socket().remote_endpoint(ec);
  if (ec || !peer.address().is_loopback()) {
    // The endpoint may listen on every address (for probes); a drain is asked
    // for only from inside the gateway's own host or pod.
    response.result(http::status::forbidden);
    response.body() = "POST /drain only from a loopback address\n";
    response.prepare_payload();
    co_return response;
  }
  const auto grace_end = drain.Begin();
  stream.expires_never();
  asio::steady_timer wait(stream.get_executor(), grace_end);
  co_await wait.async_wait(kNoThrow);
  response.result(http::status::ok);
  response.body() = "draining: readiness fails and the grace period is over\n";
  response.prepare_payload();
  co_return response;
}

asio::awaitable<void> ServeOne(beast::tcp_stream stream, const Metrics* metrics,
                               const HttpHooks* hooks) {
  beast::flat_buffer buffer(8192);
  stream.expires_after(std::chrono::seconds(10));
  http::request_parser<http::string_body> parser;
  parser.body_limit(4096);
  parser.header_limit(8192);
  auto [read_error, read] = co_await http::async_read(stream, buffer, parser, kNoThrow);
  if (read_error) {
    co_return;
  }
  const auto& request = parser.get();
  http::response<http::string_body> response;
  if (request.method() == http::verb::post && request.target() == "/drain" &&
      hooks->drain != nullptr) {
    response = co_await DrainRequest(request, stream, *hooks->drain);
  } else {
    response = Respond(request, *metrics, *hooks);
  }
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, response, kNoThrow);
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace

asio::awaitable<void> ServeHttp(asio::ip::tcp::acceptor& acceptor, const Metrics& metrics,
                                HttpHooks hooks) {
  while (acceptor.is_open()) {
    auto [error, socket] = co_await acceptor.async_accept(kNoThrow);
    if (error) {
      if (error == asio::error::operation_aborted || !acceptor.is_open()) {
        co_return;
      }
      // Out of descriptors and similar: pause instead of spinning.
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    asio::co_spawn(acceptor.get_executor(),
                   ServeOne(beast::tcp_stream(std::move(socket)), &metrics, &hooks),
                   [](std::exception_ptr e) {
                     if (e) {
                       std::cerr << "gateway: http request handler failed\n";
                     }
                   });
  }
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
