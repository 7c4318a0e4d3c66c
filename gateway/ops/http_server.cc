#include "gateway/ops/http_server.h"

#include <memory>

namespace gateway::ops {

using mailbox::ops::HttpResponse;

std::vector<mailbox::ops::HttpRoute> GatewayRoutes(const Metrics& metrics) {
  const Metrics* m = &metrics;
  return {
      {"GET", "/healthz",
       [] {
         return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
       }},
      {"GET", "/readyz",
       [m] {
         const bool ready = m->ready.load() && !m->draining.load();
         return HttpResponse{
             ready ? 200 : 503, "text/plain; charset=utf-8",
             ready ? "ready\n" : (m->draining.load() ? "draining\n" : "starting\n")};
       }},
      {"GET", "/metrics",
       [m] {
         return HttpResponse{200, mailbox::ops::kPrometheusContentType, m->Render()};
       }},
  };
}

boost::asio::awaitable<void> ServeHttp(boost::asio::ip::tcp::acceptor& acceptor,
                                       const Metrics& metrics) {
  co_await mailbox::ops::ServeHttp(
      acceptor,
      std::make_shared<const std::vector<mailbox::ops::HttpRoute>>(GatewayRoutes(metrics)),
      "imap-gateway");
}

}  // namespace gateway::ops
