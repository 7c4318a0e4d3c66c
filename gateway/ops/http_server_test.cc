#include "gateway/ops/http_server.h"

#include <gtest/gtest.h>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/write.hpp"

namespace gateway::ops {
namespace {

namespace asio = boost::asio;

std::string Get(asio::io_context& io, uint16_t port, const std::string& path) {
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  std::string response;
  boost::system::error_code ec;
  char buffer[4096];
  while (true) {
    size_t n = socket.read_some(asio::buffer(buffer), ec);
    if (ec) {
      break;
    }
    response.append(buffer, n);
  }
  return response;
}

TEST(HttpServerTest, HealthReadinessAndMetrics) {
  asio::io_context io;
  Metrics metrics;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(io, ServeHttp(acceptor, metrics), [](std::exception_ptr) {});
  std::thread runner([&] { io.run(); });

  EXPECT_NE(Get(io, port, "/healthz").find("200 OK"), std::string::npos);
  EXPECT_NE(Get(io, port, "/readyz").find("503"), std::string::npos);
  metrics.ready = true;
  EXPECT_NE(Get(io, port, "/readyz").find("200 OK"), std::string::npos);
  metrics.draining = true;
  EXPECT_NE(Get(io, port, "/readyz").find("draining"), std::string::npos);
  metrics.connections_open = 7;
  metrics.refused_per_ip = 3;
  std::string text = Get(io, port, "/metrics");
  EXPECT_NE(text.find("imap_connections_refused_total{reason=\"max_connections_per_ip\"} 3"),
            std::string::npos);
  EXPECT_NE(text.find("imap_connections_refused_total{reason=\"proxy_header\"} 0"),
            std::string::npos);
  EXPECT_NE(text.find("imap_connections_open 7"), std::string::npos);
  EXPECT_NE(text.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(Get(io, port, "/nope").find("404"), std::string::npos);

  asio::post(io, [&] { acceptor.close(); });
  runner.join();
}

}  // namespace
}  // namespace gateway::ops
