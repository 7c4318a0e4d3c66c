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
                                          const Metrics& metrics) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  const std::string target(request.target());
  if (request.method() != http::verb::get) {
    response.result(http::status::method_not_allowed);
    response.body() = "only GET\n";
  } else if (target == "/healthz") {
    response.result(http::status::ok);
    response.body() = "ok\n";
  } else if (target == "/readyz") {
    bool ready = metrics.ready.load() && !metrics.draining.load();
    response.result(ready ? http::status::ok : http::status::service_unavailable);
    response.body() = ready ? "ready\n" : (metrics.draining.load() ? "draining\n" : "starting\n");
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

asio::awaitable<void> ServeOne(beast::tcp_stream stream, const Metrics* metrics) {
  beast::flat_buffer buffer(8192);
  stream.expires_after(std::chrono::seconds(10));
  http::request_parser<http::string_body> parser;
  parser.body_limit(4096);
  parser.header_limit(8192);
  auto [read_error, read] = co_await http::async_read(stream, buffer, parser, kNoThrow);
  if (read_error) {
    co_return;
  }
  auto response = Respond(parser.get(), *metrics);
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, response, kNoThrow);
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace

asio::awaitable<void> ServeHttp(asio::ip::tcp::acceptor& acceptor, const Metrics& metrics) {
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
    asio::co_spawn(acceptor.get_executor(), ServeOne(beast::tcp_stream(std::move(socket)), &metrics),
                   [](std::exception_ptr e) {
                     if (e) {
                       std::cerr << "gateway: http request handler failed\n";
                     }
                   });
  }
}

}  // namespace gateway::ops
