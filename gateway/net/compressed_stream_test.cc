// Stream with COMPRESS=DEFLATE (RFC 4978) on: over TLS against a blocking client
// in a thread, and over plain TCP against an Asio client, for what the layer adds
// to each operation: a wait that ignores input without plaintext, corrupt input,
// a TryWrite() the socket takes only in part, and what may not follow compression.
#include <zlib.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detached.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/use_future.hpp"
#include "boost/asio/write.hpp"
#include "gateway/net/errors.h"
#include "gateway/net/stream.h"
#include "gateway/net/testing/test_tls.h"
#include "gateway/net/tls_context.h"
#include "gateway/net/testing/deflate_peer.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

using Peer = testing::DeflatePeer;

template <typename T>
T RunToCompletion(asio::io_context& context, asio::awaitable<T> task) {
  auto future = asio::co_spawn(context, std::move(task), asio::use_future);
  context.restart();
  context.run();
  return future.get();
}

class CompressedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor_.listen();
  }

  // A connected pair: the server's Stream (compressing) and the client's socket.
  asio::awaitable<std::pair<Stream, tcp::socket>> Pair() {
    tcp::socket client(context_);
    auto [cec] = co_await client.async_connect(acceptor_.local_endpoint(), kAwait);
    EXPECT_FALSE(cec) << cec.message();
    auto [aec, socket] = co_await acceptor_.async_accept(kAwait);
    EXPECT_FALSE(aec) << aec.message();
    Stream stream(std::move(socket));
    EXPECT_FALSE(stream.StartCompression());
    co_return std::make_pair(std::move(stream), std::move(client));
  }

  asio::io_context context_;
  tcp::acceptor acceptor_{context_};
};

TEST_F(CompressedStreamTest, EchoOverTls) {
  TlsFiles files = testing::WriteSelfSignedCert(testing::TestTmpDir(), "deflate", "z.test");
  auto provider = TlsContextProvider::Create(files);
  ASSERT_TRUE(provider.ok()) << provider.status();
  const uint16_t port = acceptor_.local_endpoint().port();
  std::thread client([port] {
    testing::BlockingClient c;
    ASSERT_TRUE(c.Connect(port));
    ASSERT_EQ(c.StartTls(), "");
    Peer peer;
    std::mt19937 random(3);
    for (int round = 0; round < 20; ++round) {
      std::string line = "a" + std::to_string(round) + " ";
      const size_t size = round == 19 ? 200000 : 10 + random() % 3000;
      while (line.size() < size) {
        line += "FETCH " + std::to_string(random() % 100) + " (FLAGS) ";
      }
      ASSERT_TRUE(c.WriteAll(peer.Compress(line)));
      std::string echoed;
      while (echoed.size() < line.size()) {
        char buffer[4096];
        int n = SSL_read(c.ssl(), buffer, sizeof(buffer));
        ASSERT_GT(n, 0);
        echoed += peer.Inflate(std::string_view(buffer, static_cast<size_t>(n)));
      }
      EXPECT_EQ(echoed, line) << "round " << round;
    }
    c.Close();
  });
  auto server = [&]() -> asio::awaitable<error_code> {
    auto [ec, socket] = co_await acceptor_.async_accept(kAwait);
    Stream stream(std::move(socket));
    if (error_code hec = co_await stream.Handshake((*provider)->Current(), seconds(10)); hec) {
      co_return hec;
    }
    EXPECT_FALSE(stream.StartCompression());
    EXPECT_TRUE(stream.is_compressed());
    for (;;) {
      error_code wec = co_await stream.WaitReadable(Stream::Clock::now() + seconds(20));
      if (wec) {
        co_return wec;
      }
      std::string buffer(16 * 1024, '\0');
      auto [rec, n] = co_await stream.ReadSome(buffer, seconds(20));
      if (rec) {
        co_return rec;
      }
      EXPECT_LE(n, buffer.size());
      if (error_code w = co_await stream.Write(std::string_view(buffer.data(), n), seconds(20));
          w) {
        co_return w;
      }
    }
  };
  error_code end = RunToCompletion(context_, server());
  client.join();
  EXPECT_TRUE(IsDisconnect(end)) << end.message();
}

TEST_F(CompressedStreamTest, WaitIgnoresInputWithoutPlaintext) {
  auto test = [&]() -> asio::awaitable<void> {
    auto [stream, client] = co_await Pair();
    Peer peer;
    // A sync flush alone: an empty stored block, no plaintext.
    std::string flush = peer.Compress("");
    co_await asio::async_write(client, asio::buffer(flush), kAwait);
    error_code wait = co_await stream.WaitReadable(Stream::Clock::now() + milliseconds(300));
    EXPECT_EQ(wait, asio::error::timed_out) << wait.message();
    // Half of a command's compressed form carries plaintext only once inflated;
    // the other half completes it.
    std::string command = peer.Compress("a1 NOOP\r\n");
    co_await asio::async_write(client, asio::buffer(command.data(), 1), kAwait);
    co_await asio::async_write(client, asio::buffer(command.data() + 1, command.size() - 1),
                               kAwait);
    wait = co_await stream.WaitReadable(Stream::Clock::now() + seconds(5));
    EXPECT_FALSE(wait) << wait.message();
    std::string got;
    while (got.size() < 9) {
      std::string buffer(3, '\0');  // smaller than the command: several reads
      auto [ec, n] = co_await stream.ReadSome(buffer, seconds(5));
      EXPECT_FALSE(ec) << ec.message();
      if (ec) {
        break;
      }
      got.append(buffer.data(), n);
    }
    EXPECT_EQ(got, "a1 NOOP\r\n");
    // Compression is on once, and TLS cannot start under it (RFC 4978 §3).
    EXPECT_EQ(stream.StartCompression(), MakeErrorCode(NetErrc::kCompressionActive));
    error_code tls = co_await stream.Handshake(nullptr, seconds(1));
    EXPECT_EQ(tls, MakeErrorCode(NetErrc::kCompressionActive));
    EXPECT_EQ(stream.DiscardReadable(), 0u);
  };
  RunToCompletion(context_, test());
}

TEST_F(CompressedStreamTest, CorruptInputBreaksTheStream) {
  auto test = [&]() -> asio::awaitable<void> {
    auto [stream, client] = co_await Pair();
    Peer peer;
    std::string wire = peer.Compress("a1 NOOP\r\n") + std::string("\x00\x05\x00\x05\x00", 5);
    co_await asio::async_write(client, asio::buffer(wire), kAwait);
    std::string buffer(1024, '\0');
    auto [ec, n] = co_await stream.ReadSome(buffer, seconds(5));
    EXPECT_FALSE(ec);
    EXPECT_EQ(std::string_view(buffer.data(), n), "a1 NOOP\r\n");
    error_code wait = co_await stream.WaitReadable(Stream::Clock::now() + seconds(5));
    EXPECT_EQ(wait, MakeErrorCode(NetErrc::kCompressedDataInvalid)) << wait.message();
    EXPECT_NE(stream.compression_error().find("invalid DEFLATE data"), std::string::npos)
        << stream.compression_error();
    auto [ec2, n2] = co_await stream.ReadSome(buffer, seconds(5));
    EXPECT_EQ(ec2, MakeErrorCode(NetErrc::kStreamBroken));
    EXPECT_EQ(n2, 0u);
    error_code write = co_await stream.Write("* BYE\r\n", seconds(1));
    EXPECT_EQ(write, MakeErrorCode(NetErrc::kStreamBroken));
  };
  RunToCompletion(context_, test());
}

TEST_F(CompressedStreamTest, PartialTryWriteIsCompletedByTheNextWrite) {
  auto test = [&]() -> asio::awaitable<void> {
    auto [stream, client] = co_await Pair();
    // Incompressible data, so that the socket fills up.
    std::mt19937 random(5);
    std::string expected;
    std::string data;
    bool partial = false;
    for (int i = 0; i < 200 && !partial; ++i) {
      data.assign(64 * 1024, '\0');
      for (char& c : data) {
        c = static_cast<char>(random());
      }
      auto [ec, taken] = stream.TryWrite(data);
      EXPECT_FALSE(ec) << ec.message();
      expected += data;
      if (taken < data.size()) {
        // Compressed mode takes all or (keeping the compressed rest) nothing.
        EXPECT_EQ(taken, 0u);
        partial = true;
      }
    }
    EXPECT_TRUE(partial) << "the socket never filled up";
    if (!partial) {
      co_return;
    }
    // The contract: the rest (here all of `data`) goes to Write(), which sends
    // the compressed rest instead of compressing it again; then more output.
    Peer peer;
    std::string received;
    bool reader_done = false;
    auto reader = [&]() -> asio::awaitable<void> {
      const size_t total = expected.size() + 12;
      while (received.size() < total) {
        char buffer[65536];
        auto [ec, n] = co_await client.async_read_some(asio::buffer(buffer), kAwait);
        if (ec) {
          break;
        }
        received += peer.Inflate(std::string_view(buffer, n));
      }
      reader_done = true;
    };
    asio::co_spawn(context_, reader(), asio::detached);
    error_code ec = co_await stream.Write(data, seconds(10));
    EXPECT_FALSE(ec) << ec.message();
    ec = co_await stream.Write("a1 OK done\r\n", seconds(10));
    EXPECT_FALSE(ec) << ec.message();
    asio::steady_timer wait(context_);
    for (int i = 0; i < 500 && !reader_done; ++i) {
      wait.expires_after(milliseconds(10));
      co_await wait.async_wait(kAwait);
    }
    EXPECT_EQ(received.size(), expected.size() + 12);
    EXPECT_TRUE(received == expected + "a1 OK done\r\n");
    client.close();
    while (!reader_done) {  // the reader uses this frame's variables
      wait.expires_after(milliseconds(10));
      co_await wait.async_wait(kAwait);
    }
  };
  RunToCompletion(context_, test());
}

}  // namespace
}  // namespace gateway::net
