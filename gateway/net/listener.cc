#include "gateway/net/listener.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <future>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detail/socket_option.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/ip/v6_only.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace gateway::net {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::string ErrorText(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-standard exception";
  }
}

// Accept errors that mean "this one connection failed", not "the acceptor is in
// trouble" (accept(2) man page: pending network errors are reported by accept).
bool IsTransientAcceptError(const error_code& ec) {
  return ec == asio::error::connection_aborted || ec == asio::error::connection_reset ||
         ec == asio::error::try_again || ec == asio::error::interrupted ||
         ec == error_code(EPROTO, boost::system::system_category()) ||
         ec == error_code(EPERM, boost::system::system_category());
}

// Running out of descriptors or kernel memory: retrying at once would spin.
bool IsResourceExhaustion(const error_code& ec) {
  return ec == asio::error::no_descriptors ||  // EMFILE
         ec == error_code(ENFILE, boost::system::system_category()) ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

}  // namespace

struct WorkerPool::Worker {
  explicit Worker(std::size_t i)
      : index(i), context(BOOST_ASIO_CONCURRENCY_HINT_1), guard(context.get_executor()) {}

  const std::size_t index;
  asio::io_context context;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::vector<tcp::acceptor> acceptors;  // one per listener, same order
  std::thread thread;
  std::thread::id thread_id;
  // Only touched on this worker's thread.
  std::unordered_map<uint64_t, Stream::Closer> sessions;
  bool stopping = false;
  bool over_limit_logged = false;
};

// Coroutines and completion handlers of the pool; a struct so that they may reach the
// pool's private members without capturing lambdas.
struct WorkerPoolAccess {
  static asio::awaitable<void> AcceptLoop(WorkerPool* pool, WorkerPool::Worker* worker,
                                          std::size_t listener);
  static void StartSession(WorkerPool* pool, WorkerPool::Worker* worker, std::size_t listener,
                           tcp::socket socket);
  // PROXY header (from trusted proxies), per-IP limit, then the handler.
  static asio::awaitable<void> Admit(WorkerPool* pool, Stream stream, ConnectionInfo info);
  // Counts (on_refused) and logs a refused connection of `client` on `listener`.
  static void Refuse(WorkerPool* pool, Refusal reason, const tcp::endpoint& client,
                     std::size_t listener, std::string_view detail = {});
  class PerIpSlot;
};

asio::awaitable<void> WorkerPoolAccess::AcceptLoop(WorkerPool* pool, WorkerPool::Worker* worker,
                                                   std::size_t listener) {
  tcp::acceptor& acceptor = worker->acceptors[listener];
  asio::steady_timer backoff(worker->context);
  bool in_backoff = false;
  while (!worker->stopping && acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(kAwait);
    if (worker->stopping || ec == asio::error::operation_aborted || !acceptor.is_open()) {
      break;
    }
    if (ec) {
      if (IsTransientAcceptError(ec)) {
        continue;
      }
      if (!in_backoff) {
        pool->log_(absl::StrCat(
            "net: accept on ", EndpointText(pool->bound_[listener]), " (worker ", worker->index,
            ") failed: ", ec.message(), IsResourceExhaustion(ec) ? " (descriptor or memory limit)" : "",
            "; pausing accepts for ", pool->options_.accept_backoff.count(), " ms"));
      }
      in_backoff = true;
      backoff.expires_after(pool->options_.accept_backoff);
      co_await backoff.async_wait(kAwait);
      continue;
    }
    if (in_backoff) {
      pool->log_(absl::StrCat("net: accepting again on ", EndpointText(pool->bound_[listener]),
                              " (worker ", worker->index, ")"));
      in_backoff = false;
    }
    StartSession(pool, worker, listener, std::move(socket));
  }
}

namespace {

// The client address as the per-IP map's key: IPv4-mapped IPv6 folded to IPv4, so a
// client counts once whichever socket family accepted it.
proxy::IpAddress ToIp(const asio::ip::address& address) {
  proxy::IpAddress out;
  if (address.is_v4()) {
    auto bytes = address.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
  } else {
    out.v6 = true;
    auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.bytes.begin());
  }
  return out.Canonical();
}

tcp::endpoint ToEndpoint(const proxy::Endpoint& endpoint) {
  if (!endpoint.address.v6) {
    asio::ip::address_v4::bytes_type bytes;
    std::copy_n(endpoint.address.bytes.begin(), bytes.size(), bytes.begin());
    return tcp::endpoint(asio::ip::address_v4(bytes), endpoint.port);
  }
  asio::ip::address_v6::bytes_type bytes;
  std::copy_n(endpoint.address.bytes.begin(), bytes.size(), bytes.begin());
  return tcp::endpoint(asio::ip::address_v6(bytes), endpoint.port);
}

std::string IpKey(const tcp::endpoint& endpoint) {
  proxy::IpAddress ip = ToIp(endpoint.address());
  return std::string(reinterpret_cast<const char*>(ip.bytes.data()), ip.v6 ? 16 : 4);
}

// The line a refused plain-IMAP client gets (RFC 9051 §7.1.5: BYE when the server is
// closing the connection; RFC 9051 §7.1 allows it in place of the greeting).
std::string ByeLine(Refusal reason, std::size_t limit) {
  if (reason == Refusal::kPerIpLimit) {
    return absl::StrCat("* BYE [UNAVAILABLE] Too many connections from your address (limit ",
                        limit, "); close some and try again\r\n");
  }
  return "* BYE [UNAVAILABLE] This server has too many connections; try again later\r\n";
}

// Best effort, never waits: a refused client is not worth a pending operation.
void SendByeNow(tcp::socket& socket, std::string_view line) {
  (void)::send(socket.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// Reads a PROXY protocol header off `stream`, consuming exactly its bytes. Its own
// coroutine so that the header buffer lives only while the header is read.
asio::awaitable<std::optional<proxy::Header>> ReadProxyHeader(Stream& stream,
                                                              Stream::Clock::time_point deadline,
                                                              std::size_t max_length,
                                                              std::string* why) {
  const std::size_t bound = std::max(max_length, proxy::kV1MaxLength);
  std::string have;  // bytes known to belong to the header, already consumed
  std::vector<char> window(bound);
  for (;;) {
    auto [ec, n] = co_await stream.Peek(std::span<char>(window.data(), bound - have.size()),
                                        deadline);
    if (ec) {
      *why = ec == asio::error::timed_out ? "no PROXY header in time" : ec.message();
      co_return std::nullopt;
    }
    std::string candidate = have;
    candidate.append(window.data(), n);
    proxy::ParseResult parsed = proxy::Parse(candidate, max_length);
    if (parsed.state == proxy::ParseState::kInvalid) {
      *why = parsed.error;
      co_return std::nullopt;
    }
    if (parsed.state == proxy::ParseState::kComplete) {
      if (!stream.Consume(parsed.header.length - have.size())) {
        *why = "connection failed while reading the PROXY header";
        co_return std::nullopt;
      }
      co_return std::move(parsed.header);
    }
    // Everything seen so far is header: take it off the socket so that the next Peek
    // waits for new bytes instead of seeing these again.
    if (!stream.Consume(n)) {
      *why = "connection failed while reading the PROXY header";
      co_return std::nullopt;
    }
    have.append(window.data(), n);
    if (have.size() >= bound) {
      *why = "PROXY header over the size limit";
      co_return std::nullopt;
    }
  }
}

}  // namespace

// Holds one connection's place in the per-IP count for as long as the connection
// lives (also when the worker's io_context is destroyed with the coroutine pending).
class WorkerPoolAccess::PerIpSlot {
 public:
  PerIpSlot() = default;
  PerIpSlot(const PerIpSlot&) = delete;
  PerIpSlot& operator=(const PerIpSlot&) = delete;
  ~PerIpSlot() {
    if (pool_ == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(pool_->per_ip_mutex_);
    auto it = pool_->per_ip_.find(key_);
    if (it != pool_->per_ip_.end() && --it->second.open == 0) {
      pool_->per_ip_.erase(it);
    } else if (it != pool_->per_ip_.end() &&
               it->second.open < pool_->options_.max_connections_per_ip) {
      it->second.refusal_logged = false;
    }
  }

  // Takes a place for `key`; false (and a log line the first time in a row) if the
  // address is at its limit.
  bool Take(WorkerPool* pool, std::string key, const tcp::endpoint& client) {
    const std::size_t limit = pool->options_.max_connections_per_ip;
    bool log = false;
    {
      std::lock_guard<std::mutex> lock(pool->per_ip_mutex_);
      WorkerPool::PerIp& entry = pool->per_ip_[key];
      if (limit != 0 && entry.open >= limit) {
        log = !entry.refusal_logged;
        entry.refusal_logged = true;
      } else {
        ++entry.open;
        pool_ = pool;
        key_ = std::move(key);
      }
    }
    if (log) {
      pool->log_(absl::StrCat("net: ", client.address().to_string(), " has ", limit,
                              " connections open (--max-connections-per-ip); refusing more "
                              "from it until some close"));
    }
    return pool_ != nullptr;
  }

 private:
  WorkerPool* pool_ = nullptr;
  std::string key_;
};

void WorkerPoolAccess::Refuse(WorkerPool* pool, Refusal reason, const tcp::endpoint& client,
                              std::size_t listener, std::string_view detail) {
  if (pool->options_.on_refused) {
    pool->options_.on_refused(reason, pool->options_.listeners[listener].kind);
  }
  // One line per refusal, which the logger's rate limit bounds in a flood.
  const std::size_t limit = reason == Refusal::kMaxConnections ? pool->options_.max_connections
                            : reason == Refusal::kPerIpLimit
                                ? pool->options_.max_connections_per_ip
                                : 0;
  mailbox::log::Fields fields = {
      {"client", EndpointText(client)},
      {"listener", ListenerName(pool->options_.listeners[listener].kind)},
      {"reason", reason == Refusal::kMaxConnections ? "max_connections"
                 : reason == Refusal::kPerIpLimit   ? "per_ip"
                                                    : "proxy_header"}};
  if (limit != 0) {
    fields.push_back({"limit", limit});
  }
  if (!detail.empty()) {
    fields.push_back({"detail", detail});
  }
  mailbox::log::Warning(mailbox::log::event::kConnectionRefused, fields);
}

void WorkerPoolAccess::StartSession(WorkerPool* pool, WorkerPool::Worker* worker,
                                    std::size_t listener, tcp::socket socket) {
  const ListenerKind kind = pool->options_.listeners[listener].kind;
  const std::size_t limit = pool->options_.max_connections;
  if (limit != 0 && pool->active_.load() >= limit) {
    if (!worker->over_limit_logged) {
      pool->log_(absl::StrCat("net: connection limit ", limit,
                              " reached (--max-connections); refusing new connections until "
                              "sessions end"));
      worker->over_limit_logged = true;
    }
    if (kind == ListenerKind::kStartTls) {
      SendByeNow(socket, ByeLine(Refusal::kMaxConnections, limit));
    }
    error_code ignored;
    const tcp::endpoint peer = socket.remote_endpoint(ignored);
    socket.close(ignored);
    Refuse(pool, Refusal::kMaxConnections, peer, listener);
    return;
  }
  worker->over_limit_logged = false;

  error_code ignored;
  // IMAP responses are small and interactive; do not let Nagle delay them. Keepalive
  // finds peers that vanished during a 30-minute IDLE (RFC 3501 §5.4 autologout).
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);

  ConnectionInfo info;
  info.kind = kind;
  info.listener = listener;
  info.worker = worker->index;
  info.id = pool->next_id_.fetch_add(1);

  Stream stream(std::move(socket));
  info.peer = stream.remote_endpoint();
  info.client = info.peer;
  worker->sessions.emplace(info.id, stream.GetCloser());
  pool->active_.fetch_add(1);
  asio::co_spawn(worker->context, Admit(pool, std::move(stream), info),
                 [pool, worker, id = info.id](std::exception_ptr error) {
                   if (error != nullptr) {
                     pool->log_(absl::StrCat("net: connection ", id,
                                             " ended with an exception: ", ErrorText(error)));
                   }
                   worker->sessions.erase(id);
                   pool->SessionEnded();
                 });
}

asio::awaitable<void> WorkerPoolAccess::Admit(WorkerPool* pool, Stream stream,
                                              ConnectionInfo info) {
  const WorkerPoolOptions& options = pool->options_;
  if (!options.trusted_proxies.empty() &&
      options.trusted_proxies.Contains(ToIp(info.peer.address()))) {
    std::string why;
    std::optional<proxy::Header> header = co_await ReadProxyHeader(
        stream, Stream::Clock::now() + options.proxy_header_timeout,
        options.proxy_header_max_length, &why);
    if (!header.has_value()) {
      // PROXY §2: a trusted proxy that sends no valid header is misconfigured or is
      // not the proxy; nothing is sent, so the bytes cannot be read as a response.
      pool->log_(absl::StrCat("net: connection ", info.id, " from trusted proxy ",
                              EndpointText(info.peer), " closed: ", why));
      Refuse(pool, Refusal::kProxyHeader, info.peer, info.listener, why);
      co_return;
    }
    // LOCAL (health checks) and UNKNOWN carry no client: the proxy itself is served.
    if (header->source.has_value()) {
      info.client = ToEndpoint(*header->source);
      info.proxied = true;
    }
  }
  PerIpSlot slot;
  if (!slot.Take(pool, IpKey(info.client), info.client)) {
    if (info.kind == ListenerKind::kStartTls) {
      (void)co_await stream.Write(ByeLine(Refusal::kPerIpLimit, options.max_connections_per_ip),
                                  std::chrono::seconds(1));
    }
    Refuse(pool, Refusal::kPerIpLimit, info.client, info.listener);
    co_return;
  }
  asio::awaitable<void> session;
  try {
    session = pool->handler_(std::move(stream), info);
  } catch (...) {
    pool->log_(absl::StrCat("net: connection ", info.id,
                            " handler failed to start: ", ErrorText(std::current_exception())));
    co_return;
  }
  co_await std::move(session);
}

WorkerPool::WorkerPool(WorkerPoolOptions options, ConnectionHandler handler)
    : options_(std::move(options)), handler_(std::move(handler)), log_(OrStderr(options_.log)) {}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(WorkerPoolOptions options,
                                                               ConnectionHandler handler) {
  if (!handler) {
    return absl::InvalidArgumentError("worker pool: no connection handler");
  }
  if (options.listeners.empty()) {
    return absl::InvalidArgumentError("worker pool: no listeners configured");
  }
  if (options.workers == 0) {
    options.workers = std::max(1u, std::thread::hardware_concurrency());
  }
  if (options.backlog <= 0) {
    return absl::InvalidArgumentError("worker pool: listen backlog must be positive");
  }
  if (options.accept_backoff <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("worker pool: accept backoff must be positive");
  }
  std::unique_ptr<WorkerPool> pool(new WorkerPool(std::move(options), std::move(handler)));
  if (absl::Status status = pool->Bind(); !status.ok()) {
    return status;
  }
  return pool;
}

absl::Status WorkerPool::Bind() {
  for (std::size_t i = 0; i < options_.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i));
  }
  bound_.resize(options_.listeners.size());
  for (std::size_t l = 0; l < options_.listeners.size(); ++l) {
    const ListenAddress& spec = options_.listeners[l].address;
    error_code ec;
    asio::ip::address address = asio::ip::make_address(spec.host, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("listen address '", spec.host, "' is not an IP address"));
    }
    // "::" is dual-stack unless an IPv4 listener shares the port; then each family
    // gets its own socket (otherwise the two binds would conflict).
    bool v6_only = false;
    if (address.is_v6()) {
      for (const ListenerSpec& other : options_.listeners) {
        error_code other_ec;
        auto other_address = asio::ip::make_address(other.address.host, other_ec);
        if (!other_ec && other_address.is_v4() && other.address.port == spec.port) {
          v6_only = true;
        }
      }
    }
    tcp::endpoint endpoint(address, spec.port);
    for (auto& worker : workers_) {
      tcp::acceptor acceptor(worker->context);
      acceptor.open(endpoint.protocol(), ec);
      if (!ec) {
        acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
      }
      if (!ec) {
        // Every worker binds the same address; the kernel balances connections
        // across the sockets (socket(7), SO_REUSEPORT).
        acceptor.set_option(ReusePort(true), ec);
      }
      if (!ec && address.is_v6()) {
        acceptor.set_option(asio::ip::v6_only(v6_only), ec);
      }
      if (!ec) {
        acceptor.bind(endpoint, ec);
      }
      if (!ec) {
        acceptor.listen(options_.backlog, ec);
      }
      if (ec) {
        return absl::UnavailableError(absl::StrCat("cannot listen on ", EndpointText(endpoint),
                                                   ": ", ec.message()));
      }
      if (endpoint.port() == 0) {
        // Port 0: the first worker's bind chose the port; the others join it.
        endpoint = acceptor.local_endpoint(ec);
      }
      worker->acceptors.push_back(std::move(acceptor));
    }
    bound_[l] = endpoint;
  }
  return absl::OkStatus();
}

WorkerPool::~WorkerPool() { Stop(std::chrono::steady_clock::duration::zero()); }

void WorkerPool::Start() {
  if (started_ || stopped_) {
    return;
  }
  started_ = true;
  for (auto& worker_ptr : workers_) {
    Worker* worker = worker_ptr.get();
    for (std::size_t l = 0; l < worker->acceptors.size(); ++l) {
      asio::co_spawn(worker->context, WorkerPoolAccess::AcceptLoop(this, worker, l),
                     [this, worker, l](std::exception_ptr error) {
                       if (error != nullptr) {
                         log_(absl::StrCat("net: accept loop for ", EndpointText(bound_[l]),
                                           " (worker ", worker->index,
                                           ") failed: ", ErrorText(error)));
                       }
                     });
    }
  }
  // Each thread records its own id before it runs anything, so that handlers may call
  // worker_thread_id() without racing with Start().
  std::vector<std::future<void>> ids_set;
  for (auto& worker_ptr : workers_) {
    Worker* worker = worker_ptr.get();
    std::promise<void> id_set;
    ids_set.push_back(id_set.get_future());
    worker->thread = std::thread([this, worker, id_set = std::move(id_set)]() mutable {
      worker->thread_id = std::this_thread::get_id();
      id_set.set_value();
      // A handler that throws out of run() is a bug elsewhere; log it and keep the
      // worker serving its other connections.
      for (;;) {
        try {
          worker->context.run();
          return;
        } catch (...) {
          log_(absl::StrCat("net: worker ", worker->index,
                            " caught an exception: ", ErrorText(std::current_exception())));
        }
      }
    });
  }
  for (std::future<void>& id_set : ids_set) {
    id_set.wait();
  }
}

void WorkerPool::SessionEnded() {
  if (active_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    drained_.notify_all();
  }
}

void WorkerPool::StopAccepting() {
  for (auto& worker_ptr : workers_) {
    Worker* worker = worker_ptr.get();
    asio::post(worker->context, [worker] {
      worker->stopping = true;
      for (tcp::acceptor& acceptor : worker->acceptors) {
        error_code ignored;
        acceptor.close(ignored);
      }
    });
  }
}

void WorkerPool::Stop(std::chrono::steady_clock::duration drain_timeout) {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  if (!started_) {
    return;  // nothing runs; the acceptors close with the workers
  }
  StopAccepting();
  auto wait_drained = [this](std::chrono::steady_clock::duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return drained_.wait_for(lock, timeout, [this] { return active_.load() == 0; });
  };
  if (!wait_drained(drain_timeout)) {
    log_(absl::StrCat("net: drain deadline passed with ", active_.load(),
                      " sessions open; closing them"));
    for (auto& worker_ptr : workers_) {
      Worker* worker = worker_ptr.get();
      asio::post(worker->context, [worker] {
        for (auto& [id, closer] : worker->sessions) {
          closer.Close();
        }
      });
    }
    // Closed sockets make pending operations fail at once; sessions blocked on
    // something else (e.g. a storage call) get this long to notice.
    if (!wait_drained(std::chrono::seconds(2))) {
      log_(absl::StrCat("net: ", active_.load(), " sessions did not end; stopping anyway"));
    }
  }
  for (auto& worker : workers_) {
    worker->guard.reset();
    worker->context.stop();
  }
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
  }
}

asio::any_io_executor WorkerPool::worker_executor(std::size_t i) const {
  return workers_.at(i)->context.get_executor();
}

std::thread::id WorkerPool::worker_thread_id(std::size_t i) const {
  return workers_.at(i)->thread_id;
}

tcp::endpoint WorkerPool::bound_endpoint(std::size_t listener) const {
  return bound_.at(listener);
}

}  // namespace gateway::net
