#include "gateway/ops/http_server.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace gateway::ops
