// Tests of WorkerPool: SO_REUSEPORT workers, both listener kinds on IPv4 and IPv6,
// graceful stop, the connection limit and the back-off when descriptors run out.
#include "gateway/net/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
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
  EXPECT_EQ(c.ReadToEnd(), "");  // closed without a greeting
  a.Close();
  b.Close();
  (*pool)->Stop(seconds(2));
  std::lock_guard<std::mutex> lock(seen.mutex);
  ASSERT_FALSE(seen.log.empty());
  EXPECT_NE(seen.log.front().find("connection limit 2"), std::string::npos);
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
  // Make the client's socket first, then forbid any new descriptor: the server's
  // accept(2) fails with EMFILE while the connection waits in the backlog.
  int lowest_free = ::dup(0);
  ::close(lowest_free);
  int client_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client_fd, 0);
  ::close(client_fd);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free + 1);  // room for the client only
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  bool connected = client.Connect((*pool)->bound_endpoint(0).port());
  std::this_thread::sleep_for(milliseconds(300));  // several back-off rounds
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
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
