#include "gateway/net/listener.h"

#include <sys/socket.h>

#include <cerrno>
#include <exception>
#include <future>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
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

std::string Describe(const tcp::endpoint& endpoint) {
  std::string host = endpoint.address().to_string();
  if (endpoint.address().is_v6()) {
    host = absl::StrCat("[", host, "]");
  }
  return absl::StrCat(host, ":", endpoint.port());
}

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
            "net: accept on ", Describe(pool->bound_[listener]), " (worker ", worker->index,
            ") failed: ", ec.message(), IsResourceExhaustion(ec) ? " (descriptor or memory limit)" : "",
            "; pausing accepts for ", pool->options_.accept_backoff.count(), " ms"));
      }
      in_backoff = true;
      backoff.expires_after(pool->options_.accept_backoff);
      co_await backoff.async_wait(kAwait);
      continue;
    }
    if (in_backoff) {
      pool->log_(absl::StrCat("net: accepting again on ", Describe(pool->bound_[listener]),
                              " (worker ", worker->index, ")"));
      in_backoff = false;
    }
    StartSession(pool, worker, listener, std::move(socket));
  }
}

void WorkerPoolAccess::StartSession(WorkerPool* pool, WorkerPool::Worker* worker,
                                    std::size_t listener, tcp::socket socket) {
  const std::size_t limit = pool->options_.max_connections;
  if (limit != 0 && pool->active_.load() >= limit) {
    if (!worker->over_limit_logged) {
      pool->log_(absl::StrCat("net: connection limit ", limit,
                              " reached; closing new connections until sessions end"));
      worker->over_limit_logged = true;
    }
    error_code ignored;
    socket.close(ignored);
    return;
  }
  worker->over_limit_logged = false;

  error_code ignored;
  // IMAP responses are small and interactive; do not let Nagle delay them. Keepalive
  // finds peers that vanished during a 30-minute IDLE (RFC 3501 §5.4 autologout).
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);

  ConnectionInfo info;
  info.kind = pool->options_.listeners[listener].kind;
  info.listener = listener;
  info.worker = worker->index;
  info.id = pool->next_id_.fetch_add(1);

  Stream stream(std::move(socket));
  worker->sessions.emplace(info.id, stream.GetCloser());
  pool->active_.fetch_add(1);

  asio::awaitable<void> session;
  try {
    session = pool->handler_(std::move(stream), info);
  } catch (...) {
    pool->log_(absl::StrCat("net: connection ", info.id,
                            " handler failed to start: ", ErrorText(std::current_exception())));
    worker->sessions.erase(info.id);
    pool->SessionEnded();
    return;
  }
  asio::co_spawn(worker->context, std::move(session),
                 [pool, worker, id = info.id](std::exception_ptr error) {
                   if (error != nullptr) {
                     pool->log_(absl::StrCat("net: connection ", id,
                                             " ended with an exception: ", ErrorText(error)));
                   }
                   worker->sessions.erase(id);
                   pool->SessionEnded();
                 });
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
        return absl::UnavailableError(absl::StrCat("cannot listen on ", Describe(endpoint),
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
                         log_(absl::StrCat("net: accept loop for ", Describe(bound_[l]),
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

void WorkerPool::Stop(std::chrono::steady_clock::duration drain_timeout) {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  if (!started_) {
    return;  // nothing runs; the acceptors close with the workers
  }
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
