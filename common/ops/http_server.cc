#include "common/ops/http_server.h"

#include <chrono>
#include <iostream>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace mailbox::ops {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

http::response<http::string_body> Respond(const http::request<http::string_body>& request,
                                          const std::vector<HttpRoute>& routes) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  std::string target(request.target());
  // The query string does not choose the route (e.g. /metrics?x=1).
  target = target.substr(0, target.find('?'));
  const HttpRoute* same_path = nullptr;
  const HttpRoute* route = nullptr;
  for (const HttpRoute& candidate : routes) {
    if (candidate.path == target) {
      same_path = &candidate;
      if (candidate.method == std::string_view(request.method_string())) {
        route = &candidate;
        break;
      }
    }
  }
  if (route != nullptr) {
    HttpResponse made = route->handler();
    response.result(static_cast<http::status>(made.status));
    response.set(http::field::content_type, made.content_type);
    response.body() = std::move(made.body);
  } else if (same_path != nullptr) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, same_path->method);
    response.body() = "only " + same_path->method + "\n";
  } else {
    std::string paths;
    for (const HttpRoute& candidate : routes) {
      paths += (paths.empty() ? "" : ", ") + candidate.path;
    }
    response.result(http::status::not_found);
    response.body() = "not found: try " + paths + "\n";
  }
  response.prepare_payload();
  return response;
}

asio::awaitable<void> ServeOne(beast::tcp_stream stream,
                               std::shared_ptr<const std::vector<HttpRoute>> routes) {
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
  const HttpRoute* waiting = nullptr;
  for (const HttpRoute& route : *routes) {
    if (route.wait_handler && route.path == std::string_view(request.target()) &&
        route.method == std::string_view(request.method_string())) {
      waiting = &route;
    }
  }
  http::response<http::string_body> response;
  if (waiting != nullptr) {
    beast::error_code ec;
    const auto peer = stream.socket().remote_endpoint(ec);
    stream.expires_never();
    HttpResponse made = co_await waiting->wait_handler(peer);
    response.version(request.version());
    response.keep_alive(false);
    response.result(static_cast<http::status>(made.status));
    response.set(http::field::content_type, made.content_type);
    response.body() = std::move(made.body);
    response.prepare_payload();
  } else {
    response = Respond(request, *routes);
  }
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, response, kNoThrow);
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace

asio::awaitable<void> ServeHttp(asio::ip::tcp::acceptor& acceptor,
                                std::shared_ptr<const std::vector<HttpRoute>> routes,
                                std::string name) {
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
    asio::co_spawn(acceptor.get_executor(), ServeOne(beast::tcp_stream(std::move(socket)), routes),
                   [name](std::exception_ptr e) {
                     if (e) {
                       std::cerr << name << ": http request handler failed\n";
                     }
                   });
  }
}

}  // namespace mailbox::ops
