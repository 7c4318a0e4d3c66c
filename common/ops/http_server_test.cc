#include "common/ops/http_server.h"
#include "common/ops/http_test_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/write.hpp"

namespace mailbox::ops {
namespace {

namespace asio = boost::asio;

std::string Request(asio::io_context& io, uint16_t port, const std::string& method,
                    const std::string& path) {
  return testing::HttpExchange(io, port, method, path);
}

TEST(HttpServerTest, RoutesByPathAndMethod) {
  asio::io_context io;
  std::atomic<int> calls{0};
  auto routes = std::make_shared<std::vector<HttpRoute>>(std::vector<HttpRoute>{
      {"GET", "/healthz",
       [] {
         return HttpResponse{200, "text/plain", "ok\n"};
       }},
      {"GET", "/metrics",
       [&] {
         ++calls;
         return HttpResponse{200, kPrometheusContentType, "x_total 1\n"};
       }},
      {"POST", "/poke",
       [] {
         return HttpResponse{202, "text/plain", "poked\n"};
       }},
  });
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(io, ServeHttp(acceptor, routes, "test"), [](std::exception_ptr) {});
  std::thread runner([&] { io.run(); });

  EXPECT_NE(Request(io, port, "GET", "/healthz").find("200 OK"), std::string::npos);
  std::string metrics = Request(io, port, "GET", "/metrics?name=x");
  EXPECT_NE(metrics.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(metrics.find("x_total 1"), std::string::npos);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_NE(Request(io, port, "POST", "/poke").find("202 Accepted"), std::string::npos);
  std::string wrong_method = Request(io, port, "POST", "/healthz");
  EXPECT_NE(wrong_method.find("405"), std::string::npos);
  EXPECT_NE(wrong_method.find("Allow: GET"), std::string::npos);
  std::string missing = Request(io, port, "GET", "/nope");
  EXPECT_NE(missing.find("404"), std::string::npos);
  EXPECT_NE(missing.find("/healthz, /metrics, /poke"), std::string::npos);

  asio::post(io, [&] { acceptor.close(); });
  runner.join();
}

}  // namespace
}  // namespace mailbox::ops
