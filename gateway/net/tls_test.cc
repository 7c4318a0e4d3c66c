// Tests of TlsContextProvider and Stream against a blocking client in a thread.
// Also runs against BoringSSL: bazel test --config=boringssl //gateway/net:tls_test
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/use_future.hpp"
#include "gateway/net/errors.h"
#include "gateway/net/stream.h"
#include "gateway/net/testing/test_tls.h"
#include "gateway/net/tls_context.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BlockingClient;
using testing::ClientOptions;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// Runs `task` on `context` until it completes and returns its result.
template <typename T>
T RunToCompletion(asio::io_context& context, asio::awaitable<T> task) {
  auto future = asio::co_spawn(context, std::move(task), asio::use_future);
  context.restart();
  context.run();
  return future.get();
}

asio::awaitable<Stream> Accept(tcp::acceptor& acceptor) {
  auto [ec, socket] = co_await acceptor.async_accept(kAwait);
  EXPECT_FALSE(ec) << ec.message();
  co_return Stream(std::move(socket));
}

// Echoes until the peer closes; returns the error that ended it.
asio::awaitable<error_code> Echo(Stream& stream) {
  for (;;) {
    error_code wait_ec = co_await stream.WaitReadable(Stream::Clock::now() + seconds(20));
    if (wait_ec) {
      co_return wait_ec;
    }
    // The buffer exists only while there is data: the idle connection holds none.
    std::vector<char> buffer(16 * 1024);
    auto [ec, n] = co_await stream.ReadSome(buffer, seconds(20));
    if (ec) {
      co_return ec;
    }
    error_code wec = co_await stream.Write(std::string_view(buffer.data(), n), seconds(20));
    if (wec) {
      co_return wec;
    }
  }
}

struct ServerResult {
  error_code handshake;
  error_code end;
  std::string version;
  std::string cipher;
};

asio::awaitable<ServerResult> TlsEchoServer(tcp::acceptor& acceptor,
                                            std::shared_ptr<SSL_CTX> ctx) {
  Stream stream = co_await Accept(acceptor);
  ServerResult result;
  result.handshake = co_await stream.Handshake(ctx, seconds(10));
  if (!result.handshake) {
    EXPECT_TRUE(stream.is_tls());
    result.version = std::string(stream.tls_version());
    result.cipher = std::string(stream.tls_cipher());
    result.end = co_await Echo(stream);
  }
  co_await stream.Shutdown();
  co_return result;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TestTmpDir();
    files_ = testing::WriteSelfSignedCert(dir_, "server", "one.test");
    auto provider = TlsContextProvider::Create(files_);
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *provider;
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
  }

  std::string dir_;
  TlsFiles files_;
  std::shared_ptr<TlsContextProvider> provider_;
  asio::io_context context_;
  tcp::acceptor acceptor_{context_};
  uint16_t port_ = 0;
};

TEST_F(TlsTest, MissingFilesGiveClearErrors) {
  auto missing = TlsContextProvider::Create({dir_ + "/nope.crt", files_.private_key_file});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.crt"), std::string::npos)
      << missing.status();

  TlsFiles other = testing::WriteSelfSignedCert(dir_, "other", "other.test");
  auto mismatch = NewServerTlsContext({files_.cert_chain_file, other.private_key_file});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("does not match"), std::string::npos)
      << mismatch.status();

  std::ofstream(dir_ + "/garbage.crt") << "not a certificate\n";
  auto garbage = NewServerTlsContext({dir_ + "/garbage.crt", files_.private_key_file});
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("garbage.crt"), std::string::npos);
}

class VersionTest : public TlsTest, public ::testing::WithParamInterface<int> {};

TEST_P(VersionTest, HandshakeAndEcho) {
  const int version = GetParam();
  std::string client_error;
  std::string client_version;
  bool echoed_all = false;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    client_error = c.StartTls({version, version, ""});
    if (!client_error.empty()) {
      return;
    }
    client_version = c.version();
    echoed_all = true;
    std::string big(5 * 1024 * 1024, '\0');
    for (size_t i = 0; i < big.size(); ++i) {
      big[i] = static_cast<char>('a' + i % 26);
    }
    for (std::string payload : {std::string("x"), std::string(16 * 1024, 'y'), big}) {
      // Write in slices and read each echo back, so neither side's socket buffer can
      // fill up while the blocking client is not reading.
      for (size_t off = 0; off < payload.size(); off += 256 * 1024) {
        std::string slice = payload.substr(off, 256 * 1024);
        if (version == TLS1_3_VERSION && off == 1024 * 1024) {
          // A TLS 1.3 post-handshake message the server must process and answer
          // (RFC 8446 §4.6.3).
          SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED);
        }
        echoed_all = echoed_all && c.WriteAll(slice) && c.ReadExactly(slice.size()) == slice;
      }
    }
    c.Close();
  });
  ServerResult server = RunToCompletion(context_, TlsEchoServer(acceptor_, provider_->Current()));
  client.join();
  ASSERT_EQ(client_error, "");
  EXPECT_FALSE(server.handshake) << server.handshake.message();
  EXPECT_TRUE(echoed_all);
  EXPECT_EQ(server.end, asio::error::eof) << server.end.message();
  EXPECT_EQ(server.version, client_version);
  EXPECT_EQ(server.version, version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
  // Only AEAD suites (RFC 9325 §4.2).
  EXPECT_TRUE(server.cipher.find("GCM") != std::string::npos ||
              server.cipher.find("CHACHA20") != std::string::npos)
      << server.cipher;
}

INSTANTIATE_TEST_SUITE_P(Versions, VersionTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const auto& info) {
                           return info.param == TLS1_3_VERSION ? std::string("Tls13")
                                                               : std::string("Tls12");
                         });

TEST_F(TlsTest, Tls11IsRefused) {
  std::string client_error;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    client_error = c.StartTls({TLS1_1_VERSION, TLS1_1_VERSION, ""});
  });
  ServerResult server = RunToCompletion(context_, TlsEchoServer(acceptor_, provider_->Current()));
  client.join();
  EXPECT_NE(client_error, "");
  EXPECT_TRUE(server.handshake);
  std::printf("TLS 1.1 refused: server: %s; client: %s\n", server.handshake.message().c_str(),
              client_error.c_str());
}

TEST_F(TlsTest, NonAeadCipherIsRefused) {
  std::string client_error;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    // CBC with HMAC: a valid TLS 1.2 suite, but not AEAD.
    client_error = c.StartTls({TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA"});
  });
  ServerResult server = RunToCompletion(context_, TlsEchoServer(acceptor_, provider_->Current()));
  client.join();
  EXPECT_NE(client_error, "");
  EXPECT_EQ(server.handshake.category(), TlsCategory()) << server.handshake.message();
  std::printf("CBC suite refused: %s\n", server.handshake.message().c_str());
}

asio::awaitable<error_code> HandshakeOnly(tcp::acceptor& acceptor, std::shared_ptr<SSL_CTX> ctx,
                                          milliseconds timeout) {
  Stream stream = co_await Accept(acceptor);
  error_code ec = co_await stream.Handshake(ctx, timeout);
  EXPECT_FALSE(stream.is_tls());
  // A failed stream refuses further work instead of touching the dead SSL state.
  std::vector<char> buffer(10);
  auto [read_ec, n] = co_await stream.ReadSome(buffer, seconds(1));
  EXPECT_EQ(read_ec, MakeErrorCode(NetErrc::kStreamBroken));
  co_return ec;
}

TEST_F(TlsTest, GarbageInsteadOfClientHelloIsACleanError) {
  for (std::string garbage : {std::string("a001 CAPABILITY\r\n"),
                              std::string("\x16\x03\x01\x00\x05hello", 10),
                              std::string(3000, '\xff')}) {
    std::thread client([&] {
      BlockingClient c;
      ASSERT_TRUE(c.Connect(port_));
      c.WriteAll(garbage);
      c.ReadToEnd();  // until the server gives up
    });
    error_code ec = RunToCompletion(context_, HandshakeOnly(acceptor_, provider_->Current(), seconds(5)));
    client.join();
    EXPECT_TRUE(ec);
    EXPECT_NE(ec, asio::error::timed_out);
    std::printf("garbage (%zu bytes): %s\n", garbage.size(), ec.message().c_str());
  }
}

TEST_F(TlsTest, HandshakeTimesOutOnSilentPeer) {
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.ReadToEnd();  // says nothing; returns when the server closes
  });
  auto start = std::chrono::steady_clock::now();
  error_code ec = RunToCompletion(context_, HandshakeOnly(acceptor_, provider_->Current(), milliseconds(200)));
  auto took = std::chrono::steady_clock::now() - start;
  client.join();
  EXPECT_EQ(ec, asio::error::timed_out) << ec.message();
  EXPECT_LT(took, seconds(3));
}

// A client that connects and never sends a ClientHello must not cost a TLS state
// (3,000 such connections once held ~40 KiB each): the SSL object is
// made only when the first bytes arrive.
asio::awaitable<std::pair<error_code, bool>> SilentHandshake(tcp::acceptor& acceptor,
                                                              std::shared_ptr<SSL_CTX> ctx) {
  Stream stream = co_await Accept(acceptor);
  bool ssl_while_waiting = true;
  asio::steady_timer look(co_await asio::this_coro::executor, milliseconds(150));
  Stream* watched = &stream;
  look.async_wait([watched, &ssl_while_waiting](const error_code&) {
    ssl_while_waiting = watched->native_ssl() != nullptr;
  });
  error_code ec = co_await stream.Handshake(ctx, milliseconds(400));
  co_return std::make_pair(ec, ssl_while_waiting);
}

TEST_F(TlsTest, SilentPeerHoldsNoTlsStateWhileTheHandshakeWaits) {
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.ReadToEnd();
  });
  auto [ec, ssl_while_waiting] =
      RunToCompletion(context_, SilentHandshake(acceptor_, provider_->Current()));
  client.join();
  EXPECT_EQ(ec, asio::error::timed_out) << ec.message();
  EXPECT_FALSE(ssl_while_waiting);
}

// The server side of one handshake: returns its error and the ALPN protocol chosen.
asio::awaitable<std::pair<error_code, std::string>> HandshakeAndClose(
    tcp::acceptor& acceptor, std::shared_ptr<SSL_CTX> ctx) {
  Stream stream = co_await Accept(acceptor);
  error_code ec = co_await stream.Handshake(ctx, seconds(5));
  std::string alpn;
  if (!ec) {
    const unsigned char* data = nullptr;
    unsigned length = 0;
    SSL_get0_alpn_selected(stream.native_ssl(), &data, &length);
    alpn.assign(reinterpret_cast<const char*>(data), data == nullptr ? 0 : length);
    // The client reads one byte, so a TLS 1.3 ticket sent after the handshake has
    // arrived before it looks at its session.
    co_await stream.Write("k", seconds(5));
  }
  co_await stream.Shutdown();
  co_return std::make_pair(ec, alpn);
}

struct ClientOutcome {
  std::string error;
  std::string alpn;
  bool reused = false;
  SSL_SESSION* session = nullptr;  // owned by the test
};

// One client handshake against HandshakeAndClose on `ctx`.
std::pair<ClientOutcome, std::pair<error_code, std::string>> OneHandshake(
    asio::io_context& context, tcp::acceptor& acceptor, uint16_t port,
    std::shared_ptr<SSL_CTX> ctx, ClientOptions options) {
  ClientOutcome outcome;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port));
    outcome.error = c.StartTls(options);
    if (outcome.error.empty()) {
      c.ReadExactly(1);
      outcome.alpn = c.alpn_selected();
      outcome.reused = c.session_reused();
      outcome.session = c.TakeSession();
    }
    c.Close();
  });
  auto server = RunToCompletion(context, HandshakeAndClose(acceptor, std::move(ctx)));
  client.join();
  return {outcome, server};
}

std::string Lower(std::string text) {
  for (char& c : text) {
    c = c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return text;
}

// ALPACA: a client that offers ALPN without "imap" (a browser, say) is refused with
// no_application_protocol (RFC 7301 §3.2).
TEST_F(TlsTest, AlpnWithoutImapFailsTheHandshake) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    ClientOptions options{version, version, ""};
    options.alpn = {"http/1.1"};
    auto [client, server] =
        OneHandshake(context_, acceptor_, port_, provider_->Current(), options);
    EXPECT_NE(Lower(client.error).find("no application protocol"), std::string::npos)
        << client.error;
    EXPECT_TRUE(server.first);
    std::printf("ALPN http/1.1 (TLS %x): client %s; server %s\n", version,
                client.error.c_str(), server.first.message().c_str());
  }
}

TEST_F(TlsTest, AlpnImapIsSelected) {
  for (std::vector<std::string> offer : {std::vector<std::string>{"imap"},
                                         std::vector<std::string>{"http/1.1", "imap"}}) {
    ClientOptions options;
    options.alpn = offer;
    auto [client, server] =
        OneHandshake(context_, acceptor_, port_, provider_->Current(), options);
    EXPECT_EQ(client.error, "");
    EXPECT_FALSE(server.first) << server.first.message();
    EXPECT_EQ(client.alpn, "imap");
    EXPECT_EQ(server.second, "imap");
    SSL_SESSION_free(client.session);
  }
}

TEST_F(TlsTest, NoAlpnOfferedIsServed) {
  auto [client, server] = OneHandshake(context_, acceptor_, port_, provider_->Current(), {});
  EXPECT_EQ(client.error, "");
  EXPECT_FALSE(server.first) << server.first.message();
  EXPECT_EQ(client.alpn, "");
  EXPECT_EQ(server.second, "");
  SSL_SESSION_free(client.session);
}

TEST(TicketKeyRingTest, RotatesAndKeepsThePreviousKeyOneInterval) {
  auto now = std::chrono::steady_clock::time_point() + std::chrono::hours(1000);
  TicketKeyRing ring(std::chrono::hours(1), [&now] { return now; });
  TicketKeyRing::Key first = ring.ForEncryption();
  TicketKeyRing::Key found;
  EXPECT_EQ(ring.ForDecryption(first.name.data(), &found), TicketKeyRing::Match::kCurrent);
  EXPECT_EQ(found.aes, first.aes);
  now += std::chrono::minutes(59);
  EXPECT_EQ(ring.ForEncryption().name, first.name);  // not due yet
  EXPECT_EQ(ring.keys_made(), 1u);
  now += std::chrono::minutes(1);
  TicketKeyRing::Key second = ring.ForEncryption();  // due: a new key
  EXPECT_NE(second.name, first.name);
  EXPECT_NE(second.aes, first.aes);
  EXPECT_EQ(ring.keys_made(), 2u);
  // The first key still opens its tickets, as the previous one.
  EXPECT_EQ(ring.ForDecryption(first.name.data(), &found), TicketKeyRing::Match::kPrevious);
  EXPECT_EQ(found.hmac, first.hmac);
  now += std::chrono::hours(1);
  // Rotating again (here on a decryption) retires the first key.
  EXPECT_EQ(ring.ForDecryption(first.name.data(), &found), TicketKeyRing::Match::kNone);
  EXPECT_EQ(ring.ForDecryption(second.name.data(), &found), TicketKeyRing::Match::kPrevious);
  EXPECT_EQ(ring.keys_made(), 3u);
  // After two idle intervals both old keys are gone.
  now += std::chrono::hours(2);
  EXPECT_EQ(ring.ForDecryption(second.name.data(), &found), TicketKeyRing::Match::kNone);
  std::array<unsigned char, 16> unknown{};
  unknown.fill(7);
  EXPECT_EQ(ring.ForDecryption(unknown.data(), &found), TicketKeyRing::Match::kNone);
}

// Resumption through the real handshake: a ticket made under one key resumes while
// that key is current or previous, and not after the next rotation.
TEST_F(TlsTest, SessionTicketsFollowKeyRotation) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    auto now = std::chrono::steady_clock::now();
    auto ring = std::make_shared<TicketKeyRing>(std::chrono::hours(1), [&now] { return now; });
    auto ctx = NewServerTlsContext(files_, ring);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ClientOptions fresh{version, version, ""};
    auto [first, s1] = OneHandshake(context_, acceptor_, port_, *ctx, fresh);
    ASSERT_EQ(first.error, "");
    ASSERT_NE(first.session, nullptr);
    EXPECT_FALSE(first.reused);

    ClientOptions resume = fresh;
    resume.session = first.session;
    auto [second, s2] = OneHandshake(context_, acceptor_, port_, *ctx, resume);
    EXPECT_TRUE(second.reused) << "version " << version;

    now += std::chrono::hours(1);  // rotation: the first key becomes the previous one
    auto [third, s3] = OneHandshake(context_, acceptor_, port_, *ctx, resume);
    EXPECT_TRUE(third.reused) << "version " << version;

    now += std::chrono::hours(1);  // and now it is retired
    auto [fourth, s4] = OneHandshake(context_, acceptor_, port_, *ctx, resume);
    EXPECT_EQ(fourth.error, "");
    EXPECT_FALSE(fourth.reused) << "version " << version;
    EXPECT_GE(ring->keys_made(), 3u);
    for (SSL_SESSION* session : {first.session, second.session, third.session, fourth.session}) {
      SSL_SESSION_free(session);
    }
  }
}

TEST_F(TlsTest, SessionLifetimeIsTwoRotationIntervals) {
  auto ring = std::make_shared<TicketKeyRing>(std::chrono::minutes(30));
  auto ctx = NewServerTlsContext(files_, ring);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(SSL_CTX_get_timeout(ctx->get()), 3600);
  auto defaults = NewServerTlsContext(files_);
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(SSL_CTX_get_timeout(defaults->get()), 7200);
}

TEST_F(TlsTest, TicketsCanBeTurnedOff) {
  auto ctx = NewServerTlsContext(files_, nullptr);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  ClientOptions options{TLS1_2_VERSION, TLS1_2_VERSION, ""};
  auto [first, s1] = OneHandshake(context_, acceptor_, port_, *ctx, options);
  ASSERT_EQ(first.error, "");
  options.session = first.session;
  auto [second, s2] = OneHandshake(context_, acceptor_, port_, *ctx, options);
  EXPECT_FALSE(second.reused);
  SSL_SESSION_free(first.session);
  SSL_SESSION_free(second.session);
}

TEST_F(TlsTest, PeerGoneDuringHandshakeIsTruncation) {
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.Close();
  });
  error_code ec = RunToCompletion(context_, HandshakeOnly(acceptor_, provider_->Current(), seconds(5)));
  client.join();
  EXPECT_TRUE(IsDisconnect(ec)) << ec.message();
}

struct TimeoutResults {
  error_code wait;
  error_code read;
  error_code write;
  error_code cancelled;
};

asio::awaitable<TimeoutResults> TimeoutServer(tcp::acceptor& acceptor) {
  Stream stream = co_await Accept(acceptor);
  TimeoutResults results;
  results.wait = co_await stream.WaitReadable(Stream::Clock::now() + milliseconds(100));
  std::vector<char> buffer(100);
  auto [read_ec, n] = co_await stream.ReadSome(buffer, milliseconds(100));
  results.read = read_ec;
  // CancelWait() from other code on the same thread ends a WaitReadable at once.
  asio::steady_timer poke(co_await asio::this_coro::executor, milliseconds(50));
  poke.async_wait([&stream](const error_code&) { stream.CancelWait(); });
  results.cancelled = co_await stream.WaitReadable(Stream::Clock::now() + seconds(10));
  // The peer never reads: the write blocks once the socket buffers are full.
  std::string lots(64 * 1024 * 1024, 'z');
  results.write = co_await stream.Write(lots, milliseconds(300));
  co_return results;
}

TEST_F(TlsTest, TimeoutsFireOnSilentPeer) {
  int client_fd = -1;
  std::thread client([&] {
    auto c = std::make_unique<BlockingClient>();
    ASSERT_TRUE(c->Connect(port_));
    client_fd = ::dup(c->fd());
  });
  client.join();
  TimeoutResults results = RunToCompletion(context_, TimeoutServer(acceptor_));
  EXPECT_EQ(results.wait, asio::error::timed_out) << results.wait.message();
  EXPECT_EQ(results.read, asio::error::timed_out) << results.read.message();
  EXPECT_EQ(results.cancelled, asio::error::operation_aborted) << results.cancelled.message();
  EXPECT_EQ(results.write, asio::error::timed_out) << results.write.message();
  ::close(client_fd);
}

struct TryWriteResults {
  error_code handshake;
  error_code try_error;
  size_t try_written = 0;
  bool wait_pending_during_try = false;
  error_code wait;
  std::string read;
  error_code big_try_error;
  size_t big_try_written = 0;
  error_code big_write;
};

// An IDLE-like server: writes an update with TryWrite() while WaitReadable() is
// pending, then a write too large for the socket buffers, finished by Write().
asio::awaitable<TryWriteResults> TryWriteServer(tcp::acceptor& acceptor,
                                                std::shared_ptr<SSL_CTX> ctx,
                                                const std::string& big,
                                                std::promise<void>& big_tried) {
  Stream stream = co_await Accept(acceptor);
  TryWriteResults results;
  if (ctx != nullptr) {
    results.handshake = co_await stream.Handshake(ctx, seconds(10));
    if (results.handshake) {
      co_return results;
    }
  }
  bool waiting = false;
  asio::steady_timer poke(co_await asio::this_coro::executor, milliseconds(20));
  poke.async_wait([&](const error_code&) {
    results.wait_pending_during_try = waiting;
    std::tie(results.try_error, results.try_written) = stream.TryWrite("* 1 EXISTS\r\n");
  });
  waiting = true;
  // Completes only when the client, having read the update, sends DONE.
  results.wait = co_await stream.WaitReadable(Stream::Clock::now() + seconds(20));
  waiting = false;
  std::vector<char> buffer(100);
  auto [read_ec, n] = co_await stream.ReadSome(buffer, seconds(10));
  results.read.assign(buffer.data(), read_ec ? 0 : n);
  // The client reads nothing until told to: the socket buffers fill.
  std::tie(results.big_try_error, results.big_try_written) = stream.TryWrite(big);
  big_tried.set_value();
  if (!results.big_try_error) {
    results.big_write = co_await stream.Write(
        std::string_view(big).substr(results.big_try_written), seconds(20));
  }
  co_await stream.Shutdown();
  co_return results;
}

class TryWriteTest : public TlsTest, public ::testing::WithParamInterface<bool> {};

TEST_P(TryWriteTest, WritesWhileWaitReadableStaysPendingAndWriteFinishesTheRest) {
  const bool tls = GetParam();
  std::string big(32 * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>('a' + i % 23);
  }
  std::promise<void> big_tried;
  std::future<void> big_tried_future = big_tried.get_future();
  std::string update;
  std::string big_received;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    if (tls) {
      ASSERT_EQ(c.StartTls(), "");
    }
    update = c.ReadExactly(12);
    c.WriteAll("DONE\r\n");
    big_tried_future.wait();
    big_received = c.ReadExactly(big.size());
    c.Close();
  });
  TryWriteResults results = RunToCompletion(
      context_, TryWriteServer(acceptor_, tls ? provider_->Current() : nullptr, big, big_tried));
  client.join();
  ASSERT_FALSE(results.handshake) << results.handshake.message();
  EXPECT_TRUE(results.wait_pending_during_try);
  EXPECT_FALSE(results.try_error) << results.try_error.message();
  EXPECT_EQ(results.try_written, 12u);
  EXPECT_EQ(update, "* 1 EXISTS\r\n");
  EXPECT_FALSE(results.wait) << results.wait.message();
  EXPECT_EQ(results.read, "DONE\r\n");
  EXPECT_FALSE(results.big_try_error) << results.big_try_error.message();
  EXPECT_LT(results.big_try_written, big.size());
  EXPECT_FALSE(results.big_write) << results.big_write.message();
  EXPECT_TRUE(big_received == big) << big_received.size();
}

INSTANTIATE_TEST_SUITE_P(Modes, TryWriteTest, ::testing::Bool(), [](const auto& info) {
  return info.param ? std::string("Tls") : std::string("Plain");
});

TEST_F(TlsTest, TryWriteOnABrokenStreamFails) {
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
  });
  auto closed_then_try = [](tcp::acceptor& acceptor)
      -> asio::awaitable<std::pair<error_code, std::size_t>> {
    Stream stream = co_await Accept(acceptor);
    stream.Close();
    co_return stream.TryWrite("x");
  };
  auto [ec, n] = RunToCompletion(context_, closed_then_try(acceptor_));
  client.join();
  EXPECT_EQ(ec, MakeErrorCode(NetErrc::kStreamBroken)) << ec.message();
  EXPECT_EQ(n, 0u);
}

struct StartTlsResult {
  error_code handshake;
  std::string first_tls_line;
  size_t discarded = 0;
};

// Server side of RFC 3501 §6.2.1 STARTTLS, following the recipe in stream.h.
asio::awaitable<StartTlsResult> StartTlsServer(tcp::acceptor& acceptor,
                                               std::shared_ptr<SSL_CTX> ctx) {
  Stream stream = co_await Accept(acceptor);
  StartTlsResult result;
  co_await stream.Write("* OK ready\r\n", seconds(5));
  std::string received;
  while (received.find("\r\n") == std::string::npos) {
    std::vector<char> buffer(1024);
    auto [ec, n] = co_await stream.ReadSome(buffer, seconds(5));
    if (ec) {
      co_return result;
    }
    received.append(buffer.data(), n);
  }
  EXPECT_EQ(received.substr(0, received.find("\r\n")), "a STARTTLS");
  // 1. Drop what the client pipelined behind STARTTLS in our own buffer ...
  result.discarded = received.size() - (received.find("\r\n") + 2);
  received.clear();
  // 2. ... and what already sits in the kernel, before the OK goes out.
  result.discarded += stream.DiscardReadable();
  co_await stream.Write("a OK begin TLS\r\n", seconds(5));
  result.handshake = co_await stream.Handshake(ctx, seconds(5));
  if (result.handshake) {
    co_return result;
  }
  std::vector<char> buffer(1024);
  auto [ec, n] = co_await stream.ReadSome(buffer, seconds(5));
  result.first_tls_line.assign(buffer.data(), n);
  co_await stream.Write("b OK\r\n", seconds(5));
  co_await stream.Shutdown();
  co_return result;
}

TEST_F(TlsTest, StartTlsDiscardsPipelinedPlaintext) {
  std::string reply;
  std::string client_error;
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    EXPECT_EQ(c.ReadLine(), "* OK ready\r\n");
    // An injected command riding behind STARTTLS (CVE-2011-0411 pattern).
    c.WriteAll("a STARTTLS\r\nx LOGIN evil evil\r\n");
    EXPECT_EQ(c.ReadLine(), "a OK begin TLS\r\n");
    client_error = c.StartTls();
    if (client_error.empty()) {
      c.WriteAll("b NOOP\r\n");
      reply = c.ReadLine();
    }
  });
  StartTlsResult result = RunToCompletion(context_, StartTlsServer(acceptor_, provider_->Current()));
  client.join();
  EXPECT_EQ(client_error, "");
  EXPECT_FALSE(result.handshake) << result.handshake.message();
  EXPECT_EQ(result.discarded, std::string("x LOGIN evil evil\r\n").size());
  EXPECT_EQ(result.first_tls_line, "b NOOP\r\n");
  EXPECT_EQ(reply, "b OK\r\n");
}

// Accepts two TLS connections in order and reports, per connection, the certificate
// generation the client saw; the first connection stays open across the reload.
struct ReloadSteps {
  std::shared_ptr<TlsContextProvider> provider;
  TlsFiles files;
  std::string dir;
};

asio::awaitable<void> ServeEcho(Stream stream, std::shared_ptr<SSL_CTX> ctx) {
  error_code ec = co_await stream.Handshake(ctx, seconds(5));
  if (!ec) {
    co_await Echo(stream);
  }
}

asio::awaitable<void> AcceptTwoEchoes(tcp::acceptor& acceptor,
                                      std::shared_ptr<TlsContextProvider> provider) {
  auto executor = co_await asio::this_coro::executor;
  for (int i = 0; i < 2; ++i) {
    Stream stream = co_await Accept(acceptor);
    // Each connection takes the newest context at accept time.
    asio::co_spawn(executor, ServeEcho(std::move(stream), provider->Current()),
                   [](std::exception_ptr e) { EXPECT_EQ(e, nullptr); });
  }
}

void CopyFile(const std::string& from, const std::string& to) {
  // Write-then-rename, as a secret rotation would.
  std::ifstream in(from, std::ios::binary);
  std::string tmp = to + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << in.rdbuf();
  }
  std::rename(tmp.c_str(), to.c_str());
}

TEST_F(TlsTest, CertificateReloadKeepsOldConnections) {
  TlsFiles two = testing::WriteSelfSignedCert(dir_, "two", "two.test");
  std::thread server([&] { RunToCompletion(context_, AcceptTwoEchoes(acceptor_, provider_)); });

  BlockingClient first;
  ASSERT_TRUE(first.Connect(port_));
  ASSERT_EQ(first.StartTls(), "");
  EXPECT_EQ(first.peer_common_name(), "one.test");

  std::shared_ptr<SSL_CTX> before = provider_->Current();
  EXPECT_EQ(*provider_->ReloadIfChanged(), false);  // nothing changed yet

  // A bad new certificate keeps the old one.
  std::ofstream(files_.cert_chain_file) << "-----BEGIN CERTIFICATE-----\nAAAA\n";
  EXPECT_FALSE(provider_->ReloadIfChanged().ok());
  EXPECT_EQ(provider_->Current(), before);
  // So does a valid certificate with the old (non-matching) key.
  CopyFile(two.cert_chain_file, files_.cert_chain_file);
  EXPECT_FALSE(provider_->Reload().ok());
  EXPECT_EQ(provider_->Current(), before);
  EXPECT_EQ(provider_->generation(), 1u);

  CopyFile(two.private_key_file, files_.private_key_file);
  auto reloaded = provider_->ReloadIfChanged();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_TRUE(*reloaded);
  EXPECT_EQ(provider_->generation(), 2u);
  EXPECT_NE(provider_->Current(), before);

  BlockingClient second;
  ASSERT_TRUE(second.Connect(port_));
  ASSERT_EQ(second.StartTls(), "");
  EXPECT_EQ(second.peer_common_name(), "two.test");

  // The connection made before the reload still works.
  ASSERT_TRUE(first.WriteAll("still here"));
  EXPECT_EQ(first.ReadExactly(10), "still here");
  ASSERT_TRUE(second.WriteAll("new"));
  EXPECT_EQ(second.ReadExactly(3), "new");
  first.Close();
  second.Close();
  server.join();
}

TEST_F(TlsTest, WatcherPicksUpChangedFiles) {
  TlsFiles two = testing::WriteSelfSignedCert(dir_, "watch", "watched.test");
  provider_->StartWatching(context_.get_executor(), milliseconds(20));
  CopyFile(two.cert_chain_file, files_.cert_chain_file);
  CopyFile(two.private_key_file, files_.private_key_file);
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (provider_->generation() < 2 && std::chrono::steady_clock::now() < deadline) {
    context_.restart();
    context_.run_for(milliseconds(50));
  }
  EXPECT_EQ(provider_->generation(), 2u);
  provider_->StopWatching();
  context_.restart();
  context_.run_for(milliseconds(100));  // the loop ends once cancelled
  EXPECT_TRUE(context_.stopped());
}

asio::awaitable<std::pair<error_code, size_t>> IdleAfterEcho(tcp::acceptor& acceptor,
                                                             std::shared_ptr<SSL_CTX> ctx) {
  Stream stream = co_await Accept(acceptor);
  error_code ec = co_await stream.Handshake(ctx, seconds(5));
  if (ec) {
    co_return std::make_pair(ec, size_t{0});
  }
  std::vector<char> buffer(64 * 1024);
  size_t total = 0;
  while (total < 100'000) {
    auto [rec, n] = co_await stream.ReadSome(buffer, seconds(5));
    if (rec) {
      co_return std::make_pair(rec, size_t{0});
    }
    total += n;
  }
  co_await stream.Write(std::string(100'000, 'r'), seconds(5));
  // Everything was consumed and written: no record buffer should remain.
  size_t memory = stream.ApproximateMemory();
  ec = co_await stream.WaitReadable(Stream::Clock::now() + seconds(5));
  co_return std::make_pair(ec, memory);
}

TEST_F(TlsTest, IdleStreamHoldsNoRecordBuffers) {
  std::thread client([&] {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(port_));
    ASSERT_EQ(c.StartTls(), "");
    c.WriteAll(std::string(100'000, 'q'));
    c.ReadExactly(100'000);
    c.Close();  // close_notify: the idle WaitReadable sees eof
  });
  auto [ec, memory] = RunToCompletion(context_, IdleAfterEcho(acceptor_, provider_->Current()));
  client.join();
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  std::printf("ApproximateMemory of an idle TLS stream: %zu bytes\n", memory);
  EXPECT_LT(memory, 16u * 1024);
}

}  // namespace
}  // namespace gateway::net
