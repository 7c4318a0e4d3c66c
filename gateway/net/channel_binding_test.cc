// ServerChannelBinding against a real handshake: the server's value must be the one
// the client computes on its side of the same connection (RFC 9266 §2, RFC 5929
// §3.1). Also runs against BoringSSL:
// bazel test --config=boringssl //gateway/net:channel_binding_test
#include "gateway/net/channel_binding.h"

#include <openssl/ssl.h>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/use_future.hpp"
#include "gateway/net/stream.h"
#include "gateway/net/testing/test_tls.h"
#include "gateway/net/tls_context.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::seconds;
using testing::BlockingClient;
using testing::ClientOptions;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// The server's side: handshake, the binding, one byte so the client's ticket
// (TLS 1.3 sends it after the handshake) has arrived when the client reads it.
asio::awaitable<ChannelBinding> Serve(tcp::acceptor& acceptor, std::shared_ptr<SSL_CTX> ctx) {
  auto [accept_ec, socket] = co_await acceptor.async_accept(kAwait);
  EXPECT_FALSE(accept_ec) << accept_ec.message();
  Stream stream(std::move(socket));
  ChannelBinding binding;
  auto ec = co_await stream.Handshake(ctx, seconds(10));
  EXPECT_FALSE(ec) << ec.message();
  if (!ec) {
    binding = ServerChannelBinding(stream.native_ssl());
    co_await stream.Write("k", seconds(10));
  }
  co_await stream.Shutdown();
  co_return binding;
}

struct ClientSide {
  std::string version;
  bool reused = false;
  std::string exporter;    // computed as a TLS 1.3 client does for tls-exporter
  std::string tls_unique;  // as a TLS 1.2 client does for tls-unique
  SSL_SESSION* session = nullptr;
};

ClientSide Connect(uint16_t port, ClientOptions options) {
  ClientSide side;
  BlockingClient client;
  EXPECT_TRUE(client.Connect(port));
  EXPECT_EQ(client.StartTls(options), "");
  client.ReadExactly(1);
  SSL* ssl = client.ssl();
  side.version = client.version();
  side.reused = client.session_reused();
  unsigned char out[32];
  const char label[] = "EXPORTER-Channel-Binding";
  if (SSL_export_keying_material(ssl, out, sizeof(out), label, std::strlen(label), nullptr, 0,
                                 0) == 1) {
    side.exporter.assign(reinterpret_cast<const char*>(out), sizeof(out));
  }
  // The client sends the first Finished of a full handshake; the server, of a
  // resumed one.
  unsigned char finished[64];
  size_t size = side.reused ? SSL_get_peer_finished(ssl, finished, sizeof(finished))
                            : SSL_get_finished(ssl, finished, sizeof(finished));
  side.tls_unique.assign(reinterpret_cast<const char*>(finished), size);
  side.session = client.TakeSession();
  client.Close();
  return side;
}

class ChannelBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = testing::WriteSelfSignedCert(testing::TestTmpDir(), "binding", "one.test");
    auto ctx = NewServerTlsContext(files_);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ctx_ = *ctx;
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
  }

  // One connection: the server's binding and the client's own computation.
  std::pair<ChannelBinding, ClientSide> Once(ClientOptions options) {
    ClientSide client;
    std::thread thread([&] { client = Connect(port_, options); });
    auto future = asio::co_spawn(context_, Serve(acceptor_, ctx_), asio::use_future);
    context_.restart();
    context_.run();
    thread.join();
    return {future.get(), client};
  }

  TlsFiles files_;
  std::shared_ptr<SSL_CTX> ctx_;
  asio::io_context context_;
  tcp::acceptor acceptor_{context_};
  uint16_t port_ = 0;
};

TEST_F(ChannelBindingTest, Tls13IsTheExporterValue) {
  auto [server, client] = Once(ClientOptions{TLS1_3_VERSION, TLS1_3_VERSION});
  EXPECT_EQ(client.version, "TLSv1.3");
  EXPECT_EQ(server.type, "tls-exporter");
  ASSERT_EQ(server.data.size(), 32u);
  EXPECT_EQ(server.data, client.exporter);
  // Another connection, another value.
  auto [again, unused] = Once(ClientOptions{TLS1_3_VERSION, TLS1_3_VERSION});
  EXPECT_NE(again.data, server.data);
  SSL_SESSION_free(client.session);
  SSL_SESSION_free(unused.session);
}

TEST_F(ChannelBindingTest, Tls12IsTheFirstFinishedFullAndResumed) {
  auto [full, client] = Once(ClientOptions{TLS1_2_VERSION, TLS1_2_VERSION});
  EXPECT_EQ(client.version, "TLSv1.2");
  EXPECT_FALSE(client.reused);
  EXPECT_EQ(full.type, "tls-unique");
  EXPECT_EQ(full.data.size(), 12u);  // TLS 1.2 verify_data
  EXPECT_EQ(full.data, client.tls_unique);
  ASSERT_NE(client.session, nullptr);

  ClientOptions resume{TLS1_2_VERSION, TLS1_2_VERSION};
  resume.session = client.session;
  auto [resumed, second] = Once(resume);
  ASSERT_TRUE(second.reused);
  EXPECT_EQ(resumed.type, "tls-unique");
  EXPECT_EQ(resumed.data, second.tls_unique);
  EXPECT_NE(resumed.data, full.data);
  SSL_SESSION_free(client.session);
  SSL_SESSION_free(second.session);
}

TEST(ChannelBindingNoTlsTest, NoSslIsNoBinding) {
  ChannelBinding binding = ServerChannelBinding(nullptr);
  EXPECT_EQ(binding.type, "");
  EXPECT_EQ(binding.data, "");
}

}  // namespace
}  // namespace gateway::net
