#include "gateway/net/config.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

using ::testing::HasSubstr;

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

absl::StatusOr<NetConfig> Parse(std::vector<std::string> args,
                                 mailbox::config::Environment env = {}) {
  mailbox::config::Program program;
  program.name = "imap-gateway";
  program.env_prefix = "IMAPD_";
  auto config = mailbox::config::Config::Parse(program, NetSettings(), args, env);
  if (!config.ok()) {
    return config.status();
  }
  return NetConfigFrom(*config);
}

std::string ErrorOf(std::vector<std::string> args, mailbox::config::Environment env = {}) {
  auto config = Parse(std::move(args), std::move(env));
  EXPECT_FALSE(config.ok());
  return std::string(config.status().message());
}

TEST(NetConfigTest, EnvironmentThenFlags) {
  mailbox::config::Environment env = {
      {"IMAPD_IMAPS_LISTEN", "0.0.0.0:10993, [::]:10993"},
      {"IMAPD_IMAP_LISTEN", ""},
      {"IMAPD_TLS_CERT_FILE", "/env/cert.pem"},
      {"IMAPD_TLS_KEY_FILE", "/env/key.pem"},
      {"IMAPD_WORKERS", "4"},
      {"IMAPD_DRAIN_TIMEOUT", "5s"},
  };
  auto config = Parse({}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->imaps_listen.size(), 2u);
  EXPECT_TRUE(config->imap_listen.empty());
  EXPECT_EQ(config->workers, 4u);
  EXPECT_EQ(config->drain_timeout, std::chrono::seconds(5));

  config = Parse({"--workers=8", "--tls-cert-file", "/flag/c.pem", "--tls-reload-interval=0s"},
                 env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->workers, 8u);
  EXPECT_EQ(config->tls_cert_file, "/flag/c.pem");
  EXPECT_EQ(config->tls_key_file, "/env/key.pem");
  EXPECT_EQ(config->tls_reload_interval, std::chrono::milliseconds(0));
  EXPECT_TRUE(ValidateNetConfig(*config).ok());

  WorkerPoolOptions options = WorkerPoolOptionsOf(*config);
  ASSERT_EQ(options.listeners.size(), 2u);
  EXPECT_EQ(options.listeners[0].kind, ListenerKind::kImplicitTls);
  EXPECT_EQ(options.workers, 8u);
}

TEST(NetConfigTest, BadValuesNameTheSetting) {
  EXPECT_EQ(ErrorOf({"--workers=many"}), "--workers=many: expected an integer from 0 to 1024");
  EXPECT_THAT(ErrorOf({"--tls-handshake-timeout=0s"}), HasSubstr("from 1ms"));
  EXPECT_THAT(ErrorOf({"--accept-backoff=10"}), HasSubstr("write 10s"));  // unit missing
  EXPECT_THAT(ErrorOf({"--workers"}), HasSubstr("needs a value"));
  EXPECT_THAT(ErrorOf({}, {{"IMAPD_MAX_CONNECTIONS", "-1"}}),
              HasSubstr("IMAPD_MAX_CONNECTIONS=-1 (--max-connections)"));
  EXPECT_EQ(ErrorOf({"--imaps-listen=::1:993"}),
            "--imaps-listen=::1:993: '::1:993': write IPv6 addresses in brackets, e.g. [::]:993");
  // SetNetOption, which NetConfigFrom applies, keeps the one duration syntax too.
  NetConfig config;
  EXPECT_FALSE(SetNetOption(config, "accept-backoff", "10").ok());
  EXPECT_FALSE(SetNetOption(config, "accept-backoff", "1.5s").ok());
}

TEST(NetConfigTest, ConnectionCapsHaveRealDefaults) {
  auto parsed = Parse({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  NetConfig& config = *parsed;
  EXPECT_EQ(config.max_connections, 10000u);
  EXPECT_EQ(config.max_connections_per_ip, 100u);
  EXPECT_TRUE(config.trusted_proxies.empty());  // no PROXY header believed by default
  EXPECT_EQ(config.proxy_protocol_timeout, std::chrono::seconds(5));
  EXPECT_EQ(config.proxy_protocol_max_header, 1024u);
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::hours(1));
  EXPECT_EQ(config.tls_reload_interval, std::chrono::seconds(60));
  EXPECT_TRUE(SetNetOption(config, "tls-ticket-key-rotation", "0s").ok());  // no tickets
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::milliseconds(0));
  EXPECT_TRUE(SetNetOption(config, "tls-ticket-key-rotation", "6h").ok());
  EXPECT_EQ(config.tls_ticket_key_rotation, std::chrono::hours(6));
  EXPECT_FALSE(SetNetOption(config, "tls-ticket-key-rotation", "6").ok());
  WorkerPoolOptions options = WorkerPoolOptionsOf(config);
  EXPECT_EQ(options.max_connections, 10000u);
  EXPECT_EQ(options.max_connections_per_ip, 100u);
  EXPECT_EQ(options.proxy_header_max_length, 1024u);
}

TEST(NetConfigTest, ConnectionAndProxySettings) {
  mailbox::config::Environment env = {
      {"IMAPD_MAX_CONNECTIONS_PER_IP", "3"},
      {"IMAPD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"},
      {"IMAPD_PROXY_PROTOCOL_TIMEOUT", "750ms"},
  };
  auto config = Parse({}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_connections_per_ip, 3u);
  ASSERT_EQ(config->trusted_proxies.networks().size(), 2u);
  EXPECT_EQ(config->proxy_protocol_timeout, std::chrono::milliseconds(750));
  config = Parse({"--max-connections=0", "--max-connections-per-ip", "0",
                  "--proxy-protocol-max-header=232"},
                 env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->max_connections, 0u);  // 0 turns a cap off
  EXPECT_EQ(config->max_connections_per_ip, 0u);
  EXPECT_EQ(config->proxy_protocol_max_header, 232u);
  WorkerPoolOptions options = WorkerPoolOptionsOf(*config);
  EXPECT_TRUE(options.trusted_proxies.Contains(*proxy::IpAddress::Parse("10.1.2.3")));
  EXPECT_EQ(options.proxy_header_timeout, std::chrono::milliseconds(750));
  // The bounds of each setting.
  EXPECT_FALSE(Parse({"--proxy-protocol-max-header=231"}).ok());
  EXPECT_TRUE(Parse({"--proxy-protocol-max-header=65551"}).ok());
  EXPECT_FALSE(Parse({"--proxy-protocol-max-header=65552"}).ok());
  EXPECT_FALSE(Parse({"--proxy-protocol-timeout=0s"}).ok());
  EXPECT_FALSE(Parse({"--max-connections-per-ip=-1"}).ok());
  EXPECT_THAT(ErrorOf({"--trusted-proxies=10.0.0.1/8"}),
              HasSubstr("--trusted-proxies=10.0.0.1/8: "));
  config = Parse({"--trusted-proxies="}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->trusted_proxies.empty());
}

}  // namespace
}  // namespace gateway::net
