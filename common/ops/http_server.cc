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

// The route for the request's path (the query string does not choose it, e.g.
// /metrics?x=1) and method; `same_path` is a route with the path and another method.
const HttpRoute* FindRoute(const http::request<http::string_body>& request,
                           const std::vector<HttpRoute>& routes, const HttpRoute** same_path) {
  std::string_view target(request.target().data(), request.target().size());
  target = target.substr(0, target.find('?'));
  *same_path = nullptr;
  for (const HttpRoute& candidate : routes) {
    if (candidate.path == target) {
      *same_path = &candidate;
      if (candidate.method == std::string_view(request.method_string())) {
        return &candidate;
      }
    }
  }
  return nullptr;
}

http::response<http::string_body> Blank(const http::request<http::string_body>& request) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(false);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  return response;
}

void Fill(HttpResponse made, http::response<http::string_body>* response) {
  response->result(static_cast<http::status>(made.status));
  response->set(http::field::content_type, made.content_type);
  response->body() = std::move(made.body);
}

// 405 for a known path asked with another method, 404 naming the paths otherwise.
void Refuse(const HttpRoute* same_path, const std::vector<HttpRoute>& routes,
            http::response<http::string_body>* response) {
  if (same_path != nullptr) {
    response->result(http::status::method_not_allowed);
    response->set(http::field::allow, same_path->method);
    response->body() = "only " + same_path->method + "\n";
    return;
  }
  std::string paths;
  for (const HttpRoute& candidate : routes) {
    paths += (paths.empty() ? "" : ", ") + candidate.path;
  }
  response->result(http::status::not_found);
  response->body() = "not found: try " + paths + "\n";
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
  const HttpRoute* same_path = nullptr;
  const HttpRoute* route = FindRoute(request, *routes, &same_path);
  http::response<http::string_body> response = Blank(request);
  if (route == nullptr) {
    Refuse(same_path, *routes, &response);
  } else if (route->wait_handler) {
    beast::error_code ec;
    const auto peer = stream.socket().remote_endpoint(ec);
    stream.expires_never();
    Fill(co_await route->wait_handler(peer), &response);
  } else {
    Fill(route->handler(), &response);
  }
  response.prepare_payload();
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, response, kNoThrow);
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace

absl::StatusOr<std::unique_ptr<asio::ip::tcp::acceptor>> ListenOn(
    asio::io_context& io, const asio::ip::tcp::endpoint& endpoint, const std::string& shown) {
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io);
  boost::system::error_code ec;
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor->bind(endpoint, ec);
  }
  if (!ec) {
    acceptor->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError("cannot listen on " + shown + ": " + ec.message() +
                                  " (is another process using that address?)");
  }
  return acceptor;
}

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
