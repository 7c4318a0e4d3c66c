#include "gateway/ops/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

std::string Post(asio::io_context& io, uint16_t port, const std::string& path) {
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string request = "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
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

TEST(HttpServerTest, ReadinessFailsWhileTheStoreIsUnreachable) {
  asio::io_context io;
  Metrics metrics;
  metrics.ready = true;
  std::atomic<bool> store_up{false};
  HttpHooks hooks;
  hooks.store_ready = [&store_up] { return store_up.load(); };
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(io, ServeHttp(acceptor, metrics, hooks), [](std::exception_ptr) {});
  std::thread runner([&] { io.run(); });

  std::string down = Get(io, port, "/readyz");
  EXPECT_NE(down.find("503"), std::string::npos);
  EXPECT_NE(down.find("mailbox service unreachable"), std::string::npos);
  EXPECT_NE(Get(io, port, "/healthz").find("200 OK"), std::string::npos);  // alive all the same
  store_up = true;
  EXPECT_NE(Get(io, port, "/readyz").find("200 OK"), std::string::npos);

  asio::post(io, [&] { acceptor.close(); });
  runner.join();
}

TEST(HttpServerTest, ADrainRequestFailsReadinessAndIsAnsweredWhenTheGraceIsOver) {
  asio::io_context io;
  Metrics metrics;
  metrics.ready = true;
  Drain drain(std::chrono::milliseconds(300), metrics);
  HttpHooks hooks;
  hooks.drain = &drain;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(io, ServeHttp(acceptor, metrics, hooks), [](std::exception_ptr) {});
  std::thread runner([&] { io.run(); });

  EXPECT_NE(Get(io, port, "/drain").find("405"), std::string::npos);  // GET does nothing
  EXPECT_FALSE(drain.started());
  const auto start = std::chrono::steady_clock::now();
  std::string answer;
  std::thread client([&] { answer = Post(io, port, "/drain"); });
  // While the request waits for the grace period, readiness already fails.
  while (!drain.started()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string ready = Get(io, port, "/readyz");
  EXPECT_NE(ready.find("503"), std::string::npos);
  EXPECT_NE(ready.find("draining"), std::string::npos);
  client.join();
  EXPECT_NE(answer.find("200 OK"), std::string::npos);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  // A second request joins the same drain: its grace period does not start again.
  EXPECT_NE(Post(io, port, "/drain").find("200 OK"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  asio::post(io, [&] { acceptor.close(); });
  runner.join();
}

TEST(HttpServerTest, RequestDrainTalksToTheEndpoint) {
  asio::io_context io;
  Metrics metrics;
  Drain drain(std::chrono::milliseconds(50), metrics);
  HttpHooks hooks;
  hooks.drain = &drain;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  uint16_t port = acceptor.local_endpoint().port();
  asio::co_spawn(io, ServeHttp(acceptor, metrics, hooks), [](std::exception_ptr) {});
  std::thread runner([&] { io.run(); });

  EXPECT_TRUE(RequestDrain("127.0.0.1", port, std::chrono::seconds(5)).ok());
  EXPECT_TRUE(metrics.draining.load());

  asio::post(io, [&] { acceptor.close(); });
  runner.join();
  // Nobody listens any more.
  EXPECT_EQ(RequestDrain("127.0.0.1", port, std::chrono::seconds(5)).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace gateway::ops
