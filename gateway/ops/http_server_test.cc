#include "gateway/ops/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/write.hpp"
#include "common/ops/http_test_client.h"

namespace gateway::ops {
namespace {

mailbox::ops::HttpResponse Get(const std::vector<mailbox::ops::HttpRoute>& routes,
                               const std::string& path) {
  for (const auto& route : routes) {
    if (route.path == path && route.method == "GET") {
      return route.handler();
    }
  }
  return {404, "", ""};
}

TEST(GatewayRoutesTest, HealthReadinessAndMetrics) {
  Metrics metrics;
  const auto routes = GatewayRoutes(metrics);
  EXPECT_EQ(Get(routes, "/healthz").status, 200);
  EXPECT_EQ(Get(routes, "/readyz").status, 503);
  EXPECT_EQ(Get(routes, "/readyz").body, "starting\n");
  metrics.ready = true;
  EXPECT_EQ(Get(routes, "/readyz").status, 200);
  metrics.draining = true;
  EXPECT_EQ(Get(routes, "/readyz").body, "draining\n");

  metrics.ConnectionOpened(kImapsListener);
  metrics.ConnectionOpened(kImapsListener);
  metrics.ConnectionOpened(kStartTlsListener);
  metrics.ConnectionClosed(kImapsListener);
  metrics.Refused(1, kStartTlsListener);
  metrics.TlsHandshake(kImapsListener, false, std::chrono::milliseconds(3));
  metrics.Login(LoginMechanism::kScramPlus, LoginOutcome::kThrottled);
  metrics.CommandDone(CommandFamilyIndex("UID FETCH"), 2, std::chrono::milliseconds(20));
  metrics.bytes_in = 42;
  const mailbox::ops::HttpResponse response = Get(routes, "/metrics");
  EXPECT_EQ(response.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = response.body;
  for (const char* line : {
           "imapd_gateway_connections_open{listener=\"imaps\"} 1\n",
           "imapd_gateway_connections_open{listener=\"starttls\"} 1\n",
           "imapd_gateway_connections_refused_total{listener=\"starttls\",reason=\"max_"
           "connections_per_ip\"} 1\n",
           "imapd_gateway_connections_refused_total{listener=\"imaps\",reason=\"proxy_header\"} "
           "0\n",
           "imapd_gateway_tls_handshakes_total{listener=\"imaps\",outcome=\"failure\"} 1\n",
           "imapd_gateway_tls_handshake_duration_seconds_count{listener=\"imaps\",outcome="
           "\"failure\"} 1\n",
           "imapd_gateway_logins_total{mechanism=\"SCRAM-SHA-256-PLUS\",outcome=\"throttled\"} "
           "1\n",
           "imapd_gateway_commands_total{command=\"FETCH\"} 1\n",
           "imapd_gateway_store_calls_total{command=\"FETCH\"} 2\n",
           "imapd_gateway_command_duration_seconds_bucket{command=\"FETCH\",le=\"0.025\"} 1\n",
           "imapd_gateway_command_duration_seconds_bucket{command=\"FETCH\",le=\"0.01\"} 0\n",
           "imapd_gateway_received_bytes_total 42\n",
           "imapd_gateway_ready 0\n",
           "# TYPE process_resident_memory_bytes gauge\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  // Command families not used have no histogram series.
  EXPECT_EQ(text.find("imapd_gateway_command_duration_seconds_count{command=\"NOOP\"}"),
            std::string::npos);
}

namespace asio = boost::asio;

std::string HttpGet(asio::io_context& io, uint16_t port, const std::string& path) {
  return mailbox::ops::testing::HttpExchange(io, port, "GET", path);
}

std::string Post(asio::io_context& io, uint16_t port, const std::string& path) {
  return mailbox::ops::testing::HttpExchange(io, port, "POST", path);
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

  std::string down = HttpGet(io, port, "/readyz");
  EXPECT_NE(down.find("503"), std::string::npos);
  EXPECT_NE(down.find("mailbox service unreachable"), std::string::npos);
  EXPECT_NE(HttpGet(io, port, "/healthz").find("200 OK"), std::string::npos);  // alive all the same
  store_up = true;
  EXPECT_NE(HttpGet(io, port, "/readyz").find("200 OK"), std::string::npos);

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

  EXPECT_NE(HttpGet(io, port, "/drain").find("405"), std::string::npos);  // GET does nothing
  EXPECT_FALSE(drain.started());
  const auto start = std::chrono::steady_clock::now();
  std::string answer;
  std::thread client([&] { answer = Post(io, port, "/drain"); });
  // While the request waits for the grace period, readiness already fails.
  while (!drain.started()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string ready = HttpGet(io, port, "/readyz");
  EXPECT_NE(ready.find("503"), std::string::npos);
  EXPECT_NE(ready.find("draining"), std::string::npos);
  client.join();
  EXPECT_NE(answer.find("200 OK"), std::string::npos);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  // A second request joins the same drain: its grace period does not start again.
  EXPECT_NE(Post(io, port, "/drain").find("200 OK"), std::string::npos);
  // A query string does not change the route (it once reached the empty handler).
  EXPECT_NE(Post(io, port, "/drain?from=prestop").find("200 OK"), std::string::npos);
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
