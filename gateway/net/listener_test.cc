// Tests of WorkerPool: SO_REUSEPORT workers, both listener kinds on IPv4 and IPv6,
// graceful stop, the connection limit and the back-off when descriptors run out.
#include "gateway/net/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio/this_coro.hpp"
#include "gateway/net/stream.h"
#include "gateway/net/testing/test_tls.h"
#include "gateway/net/tls_context.h"
#include "gtest/gtest.h"

namespace gateway::net {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BlockingClient;

// What the handlers saw, shared with the test body.
struct Observations {
  WorkerPool* pool = nullptr;
  std::shared_ptr<SSL_CTX> ctx;
  std::mutex mutex;
  std::vector<std::size_t> workers;  // worker index per connection
  int wrong_thread = 0;              // handler ran (or resumed) off its worker thread
  std::vector<error_code> endings;   // how WaitReadable ended
  std::vector<std::string> log;
  std::atomic<int> refused[3] = {0, 0, 0};  // by Refusal

  void Record(const ConnectionInfo& info, bool on_thread) {
    std::lock_guard<std::mutex> lock(mutex);
    workers.push_back(info.worker);
    wrong_thread += on_thread ? 0 : 1;
  }
  bool OnWorkerThread(const ConnectionInfo& info) const {
    return std::this_thread::get_id() == pool->worker_thread_id(info.worker);
  }
};

// Greets (after a TLS handshake on the implicit-TLS listener), then waits for the
// client to close and records how the wait ended.
asio::awaitable<void> GreetAndWait(Stream stream, ConnectionInfo info, Observations* seen,
                                   Stream::Clock::duration wait) {
  bool on_thread = seen->OnWorkerThread(info);
  std::string greeting = "* OK plain\r\n";
  if (info.kind == ListenerKind::kImplicitTls) {
    error_code ec = co_await stream.Handshake(seen->ctx, seconds(5));
    if (ec) {
      co_return;
    }
    greeting = "* OK tls\r\n";
  }
  co_await stream.Write(absl::StrCat(greeting.substr(0, greeting.size() - 2), " worker=",
                                     info.worker, "\r\n"),
                        seconds(5));
  on_thread = on_thread && seen->OnWorkerThread(info);
  error_code ended = co_await stream.WaitReadable(Stream::Clock::now() + wait);
  on_thread = on_thread && seen->OnWorkerThread(info);
  seen->Record(info, on_thread);
  std::lock_guard<std::mutex> lock(seen->mutex);
  seen->endings.push_back(ended);
}

ConnectionHandler Greeter(Observations* seen, Stream::Clock::duration wait = seconds(10)) {
  // Not a coroutine itself: it returns the coroutine, whose state is its parameters.
  return [seen, wait](Stream stream, ConnectionInfo info) {
    return GreetAndWait(std::move(stream), info, seen, wait);
  };
}

std::function<void(Refusal, ListenerKind)> Counter(Observations* seen) {
  return [seen](Refusal reason, ListenerKind) {
    seen->refused[static_cast<int>(reason)].fetch_add(1);
  };
}

LogSink Capture(Observations* seen) {
  return [seen](std::string_view line) {
    std::lock_guard<std::mutex> lock(seen->mutex);
    seen->log.emplace_back(line);
  };
}

TEST(WorkerPoolTest, TwoWorkersShareThePortAndConnectionsStayOnTheirThread) {
  Observations seen;
  WorkerPoolOptions options;
  options.workers = 2;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
  auto pool = WorkerPool::Create(std::move(options), Greeter(&seen));
  ASSERT_TRUE(pool.ok()) << pool.status();
  seen.pool = pool->get();
  (*pool)->Start();
  const uint16_t port = (*pool)->bound_endpoint(0).port();
  ASSERT_NE(port, 0);
  EXPECT_NE((*pool)->worker_thread_id(0), (*pool)->worker_thread_id(1));

  // The kernel hashes connections over the two SO_REUSEPORT sockets; with 64
  // connections both workers get some unless something is wrong (p = 2^-63).
  std::vector<std::unique_ptr<BlockingClient>> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(std::make_unique<BlockingClient>());
    ASSERT_TRUE(clients.back()->Connect(port));
    EXPECT_EQ(clients.back()->ReadLine().substr(0, 17), "* OK plain worker");
  }
  clients.clear();  // closes them; the handlers see EOF
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while ((*pool)->active_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  (*pool)->Stop(seconds(1));
  std::lock_guard<std::mutex> lock(seen.mutex);
  ASSERT_EQ(seen.workers.size(), 64u);
  EXPECT_EQ(std::set<std::size_t>(seen.workers.begin(), seen.workers.end()),
            (std::set<std::size_t>{0, 1}));
  EXPECT_EQ(seen.wrong_thread, 0);
}

TEST(WorkerPoolTest, ServesImplicitTlsAndPlainOnIpv4AndIpv6) {
  TlsFiles files = testing::WriteSelfSignedCert(testing::TestTmpDir(), "pool", "pool");
  auto provider = TlsContextProvider::Create(files);
  ASSERT_TRUE(provider.ok()) << provider.status();
  Observations seen;
  seen.ctx = (*provider)->Current();
  WorkerPoolOptions options;
  options.workers = 2;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kImplicitTls},
                       {{"127.0.0.1", 0}, ListenerKind::kStartTls},
                       {{"::1", 0}, ListenerKind::kImplicitTls}};
  auto pool = WorkerPool::Create(options, Greeter(&seen));
  bool have_v6 = pool.ok();
  if (!have_v6) {
    // No IPv6 loopback in this sandbox: test IPv4 only.
    options.listeners.pop_back();
    pool = WorkerPool::Create(options, Greeter(&seen));
  }
  ASSERT_TRUE(pool.ok()) << pool.status();
  seen.pool = pool->get();
  (*pool)->Start();

  BlockingClient tls;
  ASSERT_TRUE(tls.Connect((*pool)->bound_endpoint(0).port()));
  ASSERT_EQ(tls.StartTls(), "");
  EXPECT_EQ(tls.ReadLine().substr(0, 8), "* OK tls");
  BlockingClient plain;
  ASSERT_TRUE(plain.Connect((*pool)->bound_endpoint(1).port()));
  EXPECT_EQ(plain.ReadLine().substr(0, 10), "* OK plain");
  if (have_v6) {
    BlockingClient v6;
    ASSERT_TRUE(v6.Connect((*pool)->bound_endpoint(2).port(), "::1"));
    ASSERT_EQ(v6.StartTls(), "");
    EXPECT_EQ(v6.ReadLine().substr(0, 8), "* OK tls");
  } else {
    std::printf("IPv6 loopback unavailable; IPv6 listener not tested\n");
  }
  tls.Close();
  plain.Close();
  (*pool)->Stop(seconds(2));
  EXPECT_EQ((*pool)->active_connections(), 0u);
}

TEST(WorkerPoolTest, StopClosesSessionsThatOutliveTheDrainDeadline) {
  Observations seen;
  WorkerPoolOptions options;
  options.workers = 2;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
  options.log = Capture(&seen);
  auto pool = WorkerPool::Create(std::move(options), Greeter(&seen, std::chrono::hours(1)));
  ASSERT_TRUE(pool.ok()) << pool.status();
  seen.pool = pool->get();
  (*pool)->Start();
  std::vector<std::unique_ptr<BlockingClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<BlockingClient>());
    ASSERT_TRUE(clients.back()->Connect((*pool)->bound_endpoint(0).port()));
    clients.back()->ReadLine();
  }
  auto start = std::chrono::steady_clock::now();
  (*pool)->Stop(milliseconds(100));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, seconds(2));
  EXPECT_EQ((*pool)->active_connections(), 0u);
  std::lock_guard<std::mutex> lock(seen.mutex);
  ASSERT_EQ(seen.endings.size(), 4u);
  for (const error_code& ec : seen.endings) {
    EXPECT_EQ(ec, asio::error::operation_aborted) << ec.message();
  }
  // New connections are refused once stopped.
  BlockingClient late;
  EXPECT_FALSE(late.Connect((*pool)->bound_endpoint(0).port()));
}

TEST(WorkerPoolTest, ConnectionsBeyondTheLimitAreClosed) {
  Observations seen;
  WorkerPoolOptions options;
  options.workers = 1;
  options.max_connections = 2;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
  options.log = Capture(&seen);
  options.on_refused = Counter(&seen);
  auto pool = WorkerPool::Create(std::move(options), Greeter(&seen));
  ASSERT_TRUE(pool.ok()) << pool.status();
  seen.pool = pool->get();
  (*pool)->Start();
  const uint16_t port = (*pool)->bound_endpoint(0).port();
  BlockingClient a, b, c;
  ASSERT_TRUE(a.Connect(port));
  EXPECT_NE(a.ReadLine(), "");
  ASSERT_TRUE(b.Connect(port));
  EXPECT_NE(b.ReadLine(), "");
  ASSERT_TRUE(c.Connect(port));
  // Told why instead of a greeting, then closed.
  EXPECT_EQ(c.ReadToEnd(),
            "* BYE [UNAVAILABLE] This server has too many connections; try again later\r\n");
  a.Close();
  b.Close();
  (*pool)->Stop(seconds(2));
  std::lock_guard<std::mutex> lock(seen.mutex);
  ASSERT_FALSE(seen.log.empty());
  EXPECT_NE(seen.log.front().find("connection limit 2"), std::string::npos);
  EXPECT_EQ(seen.refused[static_cast<int>(Refusal::kMaxConnections)].load(), 1);
}

TEST(WorkerPoolTest, BacksOffWhenOutOfFileDescriptors) {
  Observations seen;
  WorkerPoolOptions options;
  options.workers = 1;
  options.accept_backoff = milliseconds(50);
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
  options.log = Capture(&seen);
  auto pool = WorkerPool::Create(std::move(options), Greeter(&seen));
  ASSERT_TRUE(pool.ok()) << pool.status();
  seen.pool = pool->get();
  (*pool)->Start();

  BlockingClient client;
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Lower the limit a little above the descriptors in use, fill every free slot under
  // it (holes included), then free exactly one for the client's socket: the server's
  // accept(2) then fails with EMFILE while the connection waits in the backlog.
  int source = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(source, 0);
  rlimit tight = saved;
  tight.rlim_cur = std::min<rlim_t>(saved.rlim_cur, static_cast<rlim_t>(source + 64));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  std::vector<int> fillers;
  for (int fd = ::dup(source); fd >= 0; fd = ::dup(source)) {
    fillers.push_back(fd);
  }
  ASSERT_FALSE(fillers.empty());
  ::close(fillers.back());
  fillers.pop_back();
  bool connected = client.Connect((*pool)->bound_endpoint(0).port());
  int spare = ::dup(source);  // -1 if the table is full, as the test needs
  std::this_thread::sleep_for(milliseconds(300));  // several back-off rounds
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  for (int fd : fillers) {
    ::close(fd);
  }
  ::close(source);
  if (spare >= 0) {
    ::close(spare);
  }
  ASSERT_EQ(spare, -1) << "a descriptor slot was free under the lowered limit";
  ASSERT_TRUE(connected);
  EXPECT_EQ(client.ReadLine().substr(0, 10), "* OK plain");
  client.Close();
  (*pool)->Stop(seconds(2));
  std::lock_guard<std::mutex> lock(seen.mutex);
  for (const std::string& line : seen.log) {
    std::printf("log: %s\n", line.c_str());
  }
  auto count = [&seen](std::string_view text) {
    int n = 0;
    for (const std::string& line : seen.log) {
      n += line.find(text) != std::string::npos ? 1 : 0;
    }
    return n;
  };
  // One line when the pause starts and one when accepting resumes, not one per
  // failed accept.
  EXPECT_EQ(count("pausing accepts"), 1);
  EXPECT_EQ(count("accepting again"), 1);
  EXPECT_EQ(seen.log.size(), 2u);
}

// Greets with the client address the pool resolved, echoes one read, then waits for
// the client to close.
asio::awaitable<void> ReportClient(Stream stream, ConnectionInfo info) {
  error_code ec = co_await stream.Write(
      absl::StrCat("* OK client=", info.client.address().to_string(), ":", info.client.port(),
                   " proxied=", info.proxied ? 1 : 0, "\r\n"),
      seconds(5));
  if (ec) {
    co_return;
  }
  ec = co_await stream.WaitReadable(Stream::Clock::now() + seconds(10));
  if (ec) {
    co_return;
  }
  std::vector<char> buffer(512);
  auto [read_ec, n] = co_await stream.ReadSome(buffer, seconds(5));
  if (read_ec) {
    co_return;
  }
  co_await stream.Write("echo " + std::string(buffer.data(), n), seconds(5));
  co_await stream.WaitReadable(Stream::Clock::now() + seconds(10));
}

struct PoolFixture {
  explicit PoolFixture(WorkerPoolOptions options) {
    options.workers = 1;
    if (options.listeners.empty()) {
      options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
    }
    options.log = Capture(&seen);
    options.on_refused = Counter(&seen);
    auto created = WorkerPool::Create(std::move(options), [](Stream stream, ConnectionInfo info) {
      return ReportClient(std::move(stream), info);
    });
    EXPECT_TRUE(created.ok()) << created.status();
    pool = *std::move(created);
    seen.pool = pool.get();
    pool->Start();
  }
  ~PoolFixture() { pool->Stop(seconds(2)); }
  uint16_t port(std::size_t listener = 0) const {
    return pool->bound_endpoint(listener).port();
  }
  // Waits until the pool has `n` connections open (closed clients take a moment).
  bool WaitActive(std::size_t n) {
    auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (pool->active_connections() != n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    return pool->active_connections() == n;
  }
  int refused(Refusal reason) const { return seen.refused[static_cast<int>(reason)].load(); }

  Observations seen;
  std::unique_ptr<WorkerPool> pool;
};

TEST(WorkerPoolTest, PerIpLimitRefusesTheConnectionPastItWithBye) {
  WorkerPoolOptions options;
  options.max_connections_per_ip = 2;
  PoolFixture f(std::move(options));
  BlockingClient a, b, c, other;
  ASSERT_TRUE(a.Connect(f.port(), "127.0.0.1", "127.0.0.2"));
  EXPECT_EQ(a.ReadLine().substr(0, 22), "* OK client=127.0.0.2:");
  ASSERT_TRUE(b.Connect(f.port(), "127.0.0.1", "127.0.0.2"));
  EXPECT_NE(b.ReadLine(), "");
  // The third from the same address is over the limit of 2.
  ASSERT_TRUE(c.Connect(f.port(), "127.0.0.1", "127.0.0.2"));
  EXPECT_EQ(c.ReadToEnd(),
            "* BYE [UNAVAILABLE] Too many connections from your address (limit 2); close "
            "some and try again\r\n");
  EXPECT_EQ(f.refused(Refusal::kPerIpLimit), 1);
  // Another address has its own count.
  ASSERT_TRUE(other.Connect(f.port(), "127.0.0.1", "127.0.0.3"));
  EXPECT_EQ(other.ReadLine().substr(0, 22), "* OK client=127.0.0.3:");
  // When one closes, the address may connect again.
  a.Close();
  ASSERT_TRUE(f.WaitActive(2));
  BlockingClient again;
  ASSERT_TRUE(again.Connect(f.port(), "127.0.0.1", "127.0.0.2"));
  EXPECT_EQ(again.ReadLine().substr(0, 22), "* OK client=127.0.0.2:");
  EXPECT_EQ(f.refused(Refusal::kPerIpLimit), 1);
  // One log line for the address reaching its limit, naming it.
  std::lock_guard<std::mutex> lock(f.seen.mutex);
  ASSERT_EQ(f.seen.log.size(), 1u);
  EXPECT_NE(f.seen.log[0].find("127.0.0.2 has 2 connections"), std::string::npos)
      << f.seen.log[0];
}

TEST(WorkerPoolTest, OverALimitOnImplicitTlsClosesWithoutAHandshake) {
  WorkerPoolOptions options;
  options.max_connections_per_ip = 1;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kImplicitTls}};
  PoolFixture f(std::move(options));
  BlockingClient a, b;
  ASSERT_TRUE(a.Connect(f.port()));
  EXPECT_NE(a.ReadLine(), "");  // ReportClient does not handshake: plain greeting
  ASSERT_TRUE(b.Connect(f.port()));
  EXPECT_EQ(b.ReadToEnd(), "");
  EXPECT_EQ(f.refused(Refusal::kPerIpLimit), 1);
}

TEST(WorkerPoolTest, ZeroMeansNoPerIpLimit) {
  WorkerPoolOptions options;
  options.max_connections_per_ip = 0;
  PoolFixture f(std::move(options));
  std::vector<std::unique_ptr<BlockingClient>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<BlockingClient>());
    ASSERT_TRUE(clients.back()->Connect(f.port()));
    EXPECT_EQ(clients.back()->ReadLine().substr(0, 4), "* OK");
  }
  EXPECT_EQ(f.refused(Refusal::kPerIpLimit), 0);
}

std::string V2Header(uint8_t command, const std::array<uint8_t, 4>& source, uint16_t port) {
  std::string out(proxy::kV2Signature);
  out.push_back(static_cast<char>(0x20 | command));
  out.push_back(command == 0 ? 0x00 : 0x11);
  std::string body;
  if (command == 1) {
    for (uint8_t b : source) body.push_back(static_cast<char>(b));
    for (uint8_t b : {127, 0, 0, 1}) body.push_back(static_cast<char>(b));
    body.push_back(static_cast<char>(port >> 8));
    body.push_back(static_cast<char>(port & 0xff));
    body += std::string("\x00\x8f", 2);
    body += std::string("\x02\x00\x04imap", 7);  // PP2_TYPE_AUTHORITY TLV
  }
  out.push_back(static_cast<char>(body.size() >> 8));
  out.push_back(static_cast<char>(body.size() & 0xff));
  return out + body;
}

WorkerPoolOptions Trusting(const char* networks) {
  WorkerPoolOptions options;
  std::string error;
  options.trusted_proxies = *proxy::TrustedNetworks::Parse(networks, &error);
  options.proxy_header_timeout = milliseconds(300);
  return options;
}

TEST(WorkerPoolTest, ProxyV1FromATrustedPeerNamesTheClient) {
  PoolFixture f(Trusting("127.0.0.1"));
  BlockingClient c;
  ASSERT_TRUE(c.Connect(f.port()));
  // The header and the first IMAP bytes in one segment: only the header is taken.
  ASSERT_TRUE(c.WriteAll("PROXY TCP4 192.0.2.10 127.0.0.1 5555 143\r\na1 NOOP\r\n"));
  EXPECT_EQ(c.ReadLine(), "* OK client=192.0.2.10:5555 proxied=1\r\n");
  EXPECT_EQ(c.ReadLine(), "echo a1 NOOP\r\n");
}

TEST(WorkerPoolTest, ProxyV2ReadByteByByte) {
  PoolFixture f(Trusting("127.0.0.0/8"));
  BlockingClient c;
  ASSERT_TRUE(c.Connect(f.port()));
  for (char byte : V2Header(1, {198, 51, 100, 7}, 40000)) {
    ASSERT_TRUE(c.WriteAll(std::string(1, byte)));
    std::this_thread::sleep_for(milliseconds(2));
  }
  EXPECT_EQ(c.ReadLine(), "* OK client=198.51.100.7:40000 proxied=1\r\n");
  ASSERT_TRUE(c.WriteAll("a1 NOOP\r\n"));
  EXPECT_EQ(c.ReadLine(), "echo a1 NOOP\r\n");
}

TEST(WorkerPoolTest, ProxyV2LocalIsServedAsTheProxyItself) {
  PoolFixture f(Trusting("127.0.0.1"));
  BlockingClient c;
  ASSERT_TRUE(c.Connect(f.port()));
  ASSERT_TRUE(c.WriteAll(V2Header(0, {}, 0)));
  std::string greeting = c.ReadLine();
  EXPECT_EQ(greeting.substr(0, 22), "* OK client=127.0.0.1:");
  EXPECT_NE(greeting.find("proxied=0"), std::string::npos) << greeting;
}

TEST(WorkerPoolTest, TrustedPeerWithoutAValidHeaderIsClosedWithNothingSent) {
  PoolFixture f(Trusting("127.0.0.1"));
  const std::string oversize =
      std::string(proxy::kV2Signature) + std::string("\x21\x11\x08\x00", 4);  // 2 KiB
  for (const std::string& bytes : {std::string("a1 CAPABILITY\r\n"),
                                   std::string("PROXY TCP4 192.0.2.10 nonsense 1 2\r\n"),
                                   oversize, std::string()}) {
    BlockingClient c;
    ASSERT_TRUE(c.Connect(f.port()));
    if (!bytes.empty()) {
      ASSERT_TRUE(c.WriteAll(bytes));
    }
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(c.ReadToEnd(), "") << bytes;
    // Silence ends at the header timeout (300 ms here), not later.
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  }
  EXPECT_EQ(f.refused(Refusal::kProxyHeader), 4);
  std::lock_guard<std::mutex> lock(f.seen.mutex);
  ASSERT_EQ(f.seen.log.size(), 4u);
  EXPECT_NE(f.seen.log[3].find("no PROXY header in time"), std::string::npos)
      << f.seen.log[3];
}

TEST(WorkerPoolTest, HeaderFromAnUntrustedPeerIsJustBytes) {
  PoolFixture f(Trusting("10.0.0.0/8"));
  BlockingClient c;
  ASSERT_TRUE(c.Connect(f.port()));
  EXPECT_EQ(c.ReadLine().substr(0, 22), "* OK client=127.0.0.1:");
  ASSERT_TRUE(c.WriteAll("PROXY TCP4 192.0.2.10 127.0.0.1 5555 143\r\n"));
  EXPECT_EQ(c.ReadLine(), "echo PROXY TCP4 192.0.2.10 127.0.0.1 5555 143\r\n");
  EXPECT_EQ(f.refused(Refusal::kProxyHeader), 0);
}

TEST(WorkerPoolTest, PerIpLimitCountsTheAddressFromTheProxyHeader) {
  WorkerPoolOptions options = Trusting("127.0.0.1");
  options.max_connections_per_ip = 1;
  PoolFixture f(std::move(options));
  BlockingClient a, b, c;
  ASSERT_TRUE(a.Connect(f.port()));
  ASSERT_TRUE(a.WriteAll("PROXY TCP4 192.0.2.10 127.0.0.1 1000 143\r\n"));
  EXPECT_EQ(a.ReadLine(), "* OK client=192.0.2.10:1000 proxied=1\r\n");
  // Same proxy, another client: allowed although the proxy already has one.
  ASSERT_TRUE(b.Connect(f.port()));
  ASSERT_TRUE(b.WriteAll("PROXY TCP4 192.0.2.11 127.0.0.1 1001 143\r\n"));
  EXPECT_EQ(b.ReadLine(), "* OK client=192.0.2.11:1001 proxied=1\r\n");
  // The first client again: over its limit of 1.
  ASSERT_TRUE(c.Connect(f.port()));
  ASSERT_TRUE(c.WriteAll("PROXY TCP4 192.0.2.10 127.0.0.1 1002 143\r\n"));
  EXPECT_EQ(c.ReadToEnd().substr(0, 5), "* BYE");
  EXPECT_EQ(f.refused(Refusal::kPerIpLimit), 1);
}

TEST(WorkerPoolTest, BadOptionsAreErrors) {
  auto handler = [](Stream, ConnectionInfo) -> asio::awaitable<void> { co_return; };
  WorkerPoolOptions options;
  EXPECT_FALSE(WorkerPool::Create(options, handler).ok());  // no listeners
  options.listeners = {{{"not-an-ip", 0}, ListenerKind::kStartTls}};
  auto bad = WorkerPool::Create(options, handler);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not-an-ip"), std::string::npos);
  // A port already taken (without SO_REUSEPORT on the first socket) is reported.
  Observations seen;
  options.listeners = {{{"127.0.0.1", 0}, ListenerKind::kStartTls}};
  auto first = WorkerPool::Create(options, handler);
  ASSERT_TRUE(first.ok());
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::listen(fd, 1);
  options.listeners = {{{"127.0.0.1", ntohs(addr.sin_port)}, ListenerKind::kStartTls}};
  auto taken = WorkerPool::Create(options, handler);
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.status().message().find("cannot listen"), std::string::npos);
  ::close(fd);
}

}  // namespace
}  // namespace gateway::net
