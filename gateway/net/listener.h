// The gateway's accept side: N worker threads, each running its own io_context and
// its own SO_REUSEPORT acceptors on the same addresses. The kernel spreads incoming
// connections over the workers; a connection's handler runs on the worker that
// accepted it for the connection's whole life, so session state needs no locks.
//
//   WorkerPoolOptions options;
//   options.listeners = {{{"0.0.0.0", 993}, ListenerKind::kImplicitTls},
//                        {{"0.0.0.0", 143}, ListenerKind::kStartTls}};
//   auto pool = WorkerPool::Create(std::move(options), &ServeImap);  // binds now
//   (*pool)->Start();
//   ...                                    // on SIGTERM:
//   (*pool)->Stop(std::chrono::seconds(30));
//
// The pool does not do TLS itself: the handler sees ConnectionInfo::kind and calls
// Stream::Handshake() for kImplicitTls connections (under its own timeout).
//
// Before the handler runs, the pool admits the connection:
//  1. Over max_connections it is refused at once (no TLS work, no PROXY header read).
//  2. From a trusted proxy (trusted_proxies) it must start with a PROXY protocol v1 or
//     v2 header (proxy_protocol.h), read within proxy_header_timeout and
//     proxy_header_max_length; otherwise it is closed with nothing sent. The header's
//     source becomes ConnectionInfo::client. From anyone else no header is looked for:
//     its bytes reach the handler as they are.
//  3. Over max_connections_per_ip open connections from ConnectionInfo::client's
//     address it is refused.
// A refused connection on a plain (STARTTLS) listener gets one "* BYE" line saying
// why; on an implicit-TLS listener it is closed without a handshake, since a BYE
// could only be sent after one, which is the work a flood wants the server to do.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "gateway/net/log.h"
#include "gateway/net/proxy_protocol.h"
#include "gateway/net/stream.h"

namespace gateway::net {

enum class ListenerKind {
  kImplicitTls,  // IMAPS, RFC 8314 §3.3: TLS from the first byte (default port 993)
  kStartTls,     // IMAP, RFC 3501 §6.2.1: plaintext until STARTTLS (default port 143)
};

// An IP literal (IPv4 or IPv6, without brackets) and a port; port 0 picks a free one.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};

struct ListenerSpec {
  ListenAddress address;
  ListenerKind kind = ListenerKind::kStartTls;
};

struct ConnectionInfo {
  ListenerKind kind = ListenerKind::kStartTls;
  std::size_t listener = 0;  // index into WorkerPoolOptions::listeners
  std::size_t worker = 0;    // index of the worker thread running the handler
  uint64_t id = 0;           // unique within the pool, for logs
  // The client: the source named by an accepted PROXY header, else the TCP peer. Use
  // this (not Stream::remote_endpoint()) for throttling, limits and logs.
  boost::asio::ip::tcp::endpoint client;
  // The TCP peer; differs from `client` only when a PROXY header was accepted.
  boost::asio::ip::tcp::endpoint peer;
  bool proxied = false;  // a PROXY header named the client
};

// "imaps" or "imap": how logs name a listener of this kind.
inline std::string_view ListenerName(ListenerKind kind) {
  return kind == ListenerKind::kImplicitTls ? "imaps" : "imap";
}

// Why the pool turned a connection away (WorkerPoolOptions::on_refused).
enum class Refusal {
  kMaxConnections,  // max_connections reached
  kPerIpLimit,      // max_connections_per_ip reached for the client's address
  kProxyHeader,     // a trusted proxy's connection without a valid PROXY header in time
};

// Serves one connection. Runs on the accepting worker's executor; the returned
// coroutine owns the Stream. Must not be a capturing lambda *coroutine* whose closure
// is a temporary; a plain function, or a lambda that returns a call
// to a coroutine function, is fine. Exceptions escaping it are logged.
using ConnectionHandler = std::function<boost::asio::awaitable<void>(Stream, ConnectionInfo)>;

struct WorkerPoolOptions {
  std::vector<ListenerSpec> listeners;
  // Worker threads; 0 means std::thread::hardware_concurrency().
  std::size_t workers = 0;
  // Connections open at once across the pool; 0 means no limit. A connection accepted
  // beyond the limit is refused at once (before any TLS work or PROXY header read; see
  // the file comment) and logged once per run of refusals.
  std::size_t max_connections = 0;
  // listen(2) backlog of each acceptor.
  int backlog = 1024;
  // Pause of an acceptor after EMFILE/ENFILE/ENOBUFS/ENOMEM or an unexpected accept
  // error, so that running out of file descriptors does not spin a core.
  std::chrono::milliseconds accept_backoff{100};
  // Connections open at once from one client address (after PROXY header
  // resolution); 0 means no limit.
  std::size_t max_connections_per_ip = 0;
  // Peers whose PROXY protocol headers are required and believed; empty: none.
  proxy::TrustedNetworks trusted_proxies;
  // Time a trusted proxy has to deliver the whole header, and its largest size (a v2
  // header; v1 is at most 107 bytes by definition).
  std::chrono::milliseconds proxy_header_timeout{5000};
  std::size_t proxy_header_max_length = 1024;
  // Called on the worker's thread for each refused connection, with the kind of
  // listener that accepted it (e.g. for metrics).
  std::function<void(Refusal, ListenerKind)> on_refused;
  LogSink log;  // default: stderr
};

class WorkerPool {
 public:
  // Validates the options and binds every acceptor of every worker (so a bad address
  // or a port in use is reported here, and bound ports are known before Start()).
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(WorkerPoolOptions options,
                                                            ConnectionHandler handler);

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  // Stop(0) if still running, then joins the threads.
  ~WorkerPool();

  // Starts the worker threads; connections are accepted from now on. Call once.
  void Start();

  // Closes every listener (connections already accepted go on); callable from any
  // thread. Stop() does it too.
  void StopAccepting();

  // Graceful stop, callable from any thread except a worker: stops accepting, waits up
  // to `drain_timeout` for sessions to end by themselves, then closes the sockets of
  // the remaining sessions (their pending operations fail with operation_aborted),
  // gives them a short grace to unwind, stops the io_contexts and joins the threads.
  // Work that other components posted to the worker executors ends with it. Idempotent.
  void Stop(std::chrono::steady_clock::duration drain_timeout);

  std::size_t worker_count() const { return workers_.size(); }
  // The executor of worker `i`, for components that must share the worker's thread
  // (e.g. the per-worker change feed).
  boost::asio::any_io_executor worker_executor(std::size_t i) const;
  // The thread of worker `i` (valid after Start()).
  std::thread::id worker_thread_id(std::size_t i) const;
  // The bound address of listener `i` (useful with port 0).
  boost::asio::ip::tcp::endpoint bound_endpoint(std::size_t listener) const;
  // Connections whose handler has not finished yet.
  std::size_t active_connections() const { return active_.load(); }

 private:
  struct Worker;
  friend struct WorkerPoolAccess;

  WorkerPool(WorkerPoolOptions options, ConnectionHandler handler);
  absl::Status Bind();
  void SessionEnded();

  const WorkerPoolOptions options_;
  const ConnectionHandler handler_;
  const LogSink log_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<boost::asio::ip::tcp::endpoint> bound_;
  std::atomic<std::size_t> active_{0};
  std::atomic<uint64_t> next_id_{1};
  bool started_ = false;
  bool stopped_ = false;
  std::mutex mutex_;  // with drained_: Stop() waits for active_ to reach 0
  std::condition_variable drained_;
  // Open connections per client address (canonical bytes), across workers; an
  // address leaves the map when its count falls to 0.
  struct PerIp {
    std::size_t open = 0;
    bool refusal_logged = false;
  };
  std::mutex per_ip_mutex_;
  std::unordered_map<std::string, PerIp> per_ip_;
};

}  // namespace gateway::net
