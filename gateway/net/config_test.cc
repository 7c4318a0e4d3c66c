#include "gateway/net/config.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gateway::net {
namespace {

TEST(NetConfigTest, DefaultsAreTheSeedPorts) {
  NetConfig config;
  ASSERT_EQ(config.imaps_listen.size(), 1u);
  EXPECT_EQ(config.imaps_listen[0].port, 993);
  ASSERT_EQ(config.imap_listen.size(), 1u);
  EXPECT_EQ(config.imap_listen[0].port, 143);
  // Certificate files have no default.
  EXPECT_FALSE(ValidateNetConfig(config).ok());
}

TEST(NetConfigTest, ParsesListenAddresses) {
  auto v6 = ParseListenAddress("[::1]:1993", 993);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 1993);
  auto bare = ParseListenAddress("10.0.0.1", 143);
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->port, 143);
  auto v6_bare = ParseListenAddress("[::]", 993);
  ASSERT_TRUE(v6_bare.ok());
  EXPECT_EQ(v6_bare->host, "::");
  EXPECT_FALSE(ParseListenAddress("::1:993", 993).ok());  // needs brackets
  EXPECT_FALSE(ParseListenAddress("example.com:993", 993).ok());
  EXPECT_FALSE(ParseListenAddress("1.2.3.4:99999", 993).ok());
  EXPECT_FALSE(ParseListenAddress("1.2.3.4:", 993).ok());
  EXPECT_FALSE(ParseListenAddress("[::1", 993).ok());
}

TEST(NetConfigTest, EnvironmentThenFlags) {
  std::map<std::string, std::string> env = {
      {"IMAPD_IMAPS_LISTEN", "0.0.0.0:10993, [::]:10993"},
      {"IMAPD_IMAP_LISTEN", ""},
      {"IMAPD_TLS_CERT_FILE", "/env/cert.pem"},
      {"IMAPD_TLS_KEY_FILE", "/env/key.pem"},
      {"IMAPD_WORKERS", "4"},
      {"IMAPD_DRAIN_TIMEOUT", "5s"},
  };
  NetConfig config;
  ASSERT_TRUE(ApplyNetEnvironment(config, [&](const char* name) -> const char* {
                auto it = env.find(name);
                return it == env.end() ? nullptr : it->second.c_str();
              }).ok());
  EXPECT_EQ(config.imaps_listen.size(), 2u);
  EXPECT_TRUE(config.imap_listen.empty());
  EXPECT_EQ(config.workers, 4u);
  EXPECT_EQ(config.drain_timeout, std::chrono::seconds(5));

  auto rest = ApplyNetFlags(config, {"imapd", "--workers=8", "--tls-cert-file", "/flag/c.pem",
                                     "--other=1", "positional", "--tls-reload-interval=0"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, (std::vector<std::string>{"imapd", "--other=1", "positional"}));
  EXPECT_EQ(config.workers, 8u);
  EXPECT_EQ(config.tls_cert_file, "/flag/c.pem");
  EXPECT_EQ(config.tls_key_file, "/env/key.pem");
  EXPECT_EQ(config.tls_reload_interval, std::chrono::milliseconds(0));
  EXPECT_TRUE(ValidateNetConfig(config).ok());

  WorkerPoolOptions options = WorkerPoolOptionsOf(config);
  ASSERT_EQ(options.listeners.size(), 2u);
  EXPECT_EQ(options.listeners[0].kind, ListenerKind::kImplicitTls);
  EXPECT_EQ(options.workers, 8u);
}

TEST(NetConfigTest, BadValuesNameTheSetting) {
  NetConfig config;
  absl::Status status = SetNetOption(config, "workers", "many");
  EXPECT_NE(status.message().find("--workers=many"), absl::string_view::npos) << status;
  status = SetNetOption(config, "tls-handshake-timeout", "0");
  EXPECT_FALSE(status.ok());
  status = SetNetOption(config, "accept-backoff", "10");  // unit missing
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(ApplyNetFlags(config, {"imapd", "--workers"}).ok());
  status = ApplyNetEnvironment(config, [](const char* name) -> const char* {
    return std::string(name) == "IMAPD_MAX_CONNECTIONS" ? "-1" : nullptr;
  });
  EXPECT_NE(status.message().find("IMAPD_MAX_CONNECTIONS"), absl::string_view::npos) << status;
  EXPECT_NE(NetFlagsHelp().find("IMAPD_TLS_CERT_FILE"), std::string::npos);
}

TEST(NetConfigTest, ConnectionCapsHaveRealDefaults) {
  NetConfig config;
  EXPECT_EQ(config.max_connections, 10000u);
  EXPECT_EQ(config.max_connections_per_ip, 100u);
  EXPECT_TRUE(config.trusted_proxies.empty());  // no PROXY header believed by default
  EXPECT_EQ(config.proxy_protocol_timeout, std::chrono::seconds(5));
  EXPECT_EQ(config.proxy_protocol_max_header, 1024u);
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::hours(1));
  EXPECT_TRUE(SetNetOption(config, "tls-ticket-key-rotation", "0").ok());  // no tickets
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::milliseconds(0));
  EXPECT_TRUE(SetNetOption(config, "tls-ticket-key-rotation", "6h").ok());
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::hours(6));
  EXPECT_FALSE(SetNetOption(config, "tls-ticket-key-rotation", "6").ok());
  WorkerPoolOptions options = WorkerPoolOptionsOf(config);
  EXPECT_EQ(options.max_connections, 10000u);
  EXPECT_EQ(options.max_connections_per_ip, 100u);
  EXPECT_EQ(options.proxy_header_max_length, 1024u);
  EXPECT_NE(NetFlagsHelp().find("IMAPD_MAX_CONNECTIONS_PER_IP (default 100)"),
            std::string::npos);
  EXPECT_NE(NetFlagsHelp().find("IMAPD_TRUSTED_PROXIES"), std::string::npos);
}

TEST(NetConfigTest, ConnectionAndProxySettings) {
  std::map<std::string, std::string> env = {
      {"IMAPD_MAX_CONNECTIONS_PER_IP", "3"},
      {"IMAPD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"},
      {"IMAPD_PROXY_PROTOCOL_TIMEOUT", "750ms"},
  };
  NetConfig config;
  ASSERT_TRUE(ApplyNetEnvironment(config, [&](const char* name) -> const char* {
                auto it = env.find(name);
                return it == env.end() ? nullptr : it->second.c_str();
              }).ok());
  EXPECT_EQ(config.max_connections_per_ip, 3u);
  ASSERT_EQ(config.trusted_proxies.networks().size(), 2u);
  EXPECT_EQ(config.proxy_protocol_timeout, std::chrono::milliseconds(750));
  auto rest = ApplyNetFlags(config, {"imapd", "--max-connections=0",
                                     "--max-connections-per-ip", "0",
                                     "--proxy-protocol-max-header=232"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(config.max_connections, 0u);  // 0 turns a cap off
  EXPECT_EQ(config.max_connections_per_ip, 0u);
  EXPECT_EQ(config.proxy_protocol_max_header, 232u);
  WorkerPoolOptions options = WorkerPoolOptionsOf(config);
  EXPECT_TRUE(options.trusted_proxies.Contains(*proxy::IpAddress::Parse("10.1.2.3")));
  EXPECT_EQ(options.proxy_header_timeout, std::chrono::milliseconds(750));
  // The bounds of each setting.
  EXPECT_FALSE(SetNetOption(config, "proxy-protocol-max-header", "231").ok());
  EXPECT_TRUE(SetNetOption(config, "proxy-protocol-max-header", "65551").ok());
  EXPECT_FALSE(SetNetOption(config, "proxy-protocol-max-header", "65552").ok());
  EXPECT_FALSE(SetNetOption(config, "proxy-protocol-timeout", "0").ok());
  EXPECT_FALSE(SetNetOption(config, "max-connections-per-ip", "-1").ok());
  absl::Status status = SetNetOption(config, "trusted-proxies", "10.0.0.1/8");
  EXPECT_NE(status.message().find("--trusted-proxies=10.0.0.1/8"), absl::string_view::npos)
      << status;
  EXPECT_TRUE(SetNetOption(config, "trusted-proxies", "").ok());
  EXPECT_TRUE(config.trusted_proxies.empty());
}

}  // namespace
}  // namespace gateway::net
