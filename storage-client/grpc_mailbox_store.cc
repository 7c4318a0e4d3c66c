#include "storage-client/grpc_mailbox_store.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"
#include "storage-client/grpc_asio.h"

namespace mailbox::client {
namespace {

using boost::asio::awaitable;
using boost::asio::use_awaitable;
using Clock = std::chrono::system_clock;
using Stub = v1::Mailbox::Stub;

constexpr char kSessionHeader[] = "x-mailbox-session";

void LogError(std::string_view what) {
  mailbox::log::Error(mailbox::log::event::kInternalError, {{"detail", what}});
}

// co_spawn completion for background coroutines: nothing may fail silently.
struct LogCompletion {
  const char* what;
  void operator()(std::exception_ptr error) const {
    if (error == nullptr) {
      return;
    }
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      LogError(absl::StrCat(what, " ended with exception: ", e.what()));
    } catch (...) {
      LogError(absl::StrCat(what, " ended with an unknown exception"));
    }
  }
};

awaitable<void> Sleep(std::chrono::milliseconds duration) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, duration);
  co_await timer.async_wait(boost::asio::as_tuple(use_awaitable));
}

absl::Status IdleTimeoutError(std::chrono::milliseconds idle) {
  return v1::MakeError(absl::StatusCode::kDeadlineExceeded, v1::UNAVAILABLE,
                       absl::StrCat("mailbox service stream made no progress for ",
                                    idle.count(), " ms"));
}

// Cancels a stream call unless destroyed within `timeout`: the per-read/per-write
// idle timer of streams. Runs on the awaiting coroutine's executor.
class IdleWatch {
 public:
  template <typename Call>
  IdleWatch(const boost::asio::any_io_executor& executor, std::chrono::milliseconds timeout,
            const std::shared_ptr<Call>& call)
      : timer_(executor, timeout), expired_(std::make_shared<bool>(false)) {
    timer_.async_wait([weak = std::weak_ptr<Call>(call), expired = expired_](
                          const boost::system::error_code& error) {
      if (error) {
        return;  // disarmed
      }
      *expired = true;
      if (auto call = weak.lock()) {
        call->Cancel();
      }
    });
  }
  IdleWatch(const IdleWatch&) = delete;
  IdleWatch& operator=(const IdleWatch&) = delete;
  ~IdleWatch() { timer_.cancel(); }

  bool expired() const { return *expired_; }

 private:
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> expired_;
};

}  // namespace

// ---------------------------------------------------------------------------
// The channel pool, shared by the store and the stream/feed objects it returns.

struct GrpcMailboxStore::Pool {
  GrpcMailboxStoreOptions options;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<Stub>> stubs;
  std::atomic<size_t> next{0};
  std::mutex random_mutex;
  std::mt19937_64 random{std::random_device{}()};

  Stub& NextStub() { return *stubs[next.fetch_add(1, std::memory_order_relaxed) % stubs.size()]; }

  void Prepare(grpc::ClientContext& context, const std::string& session_token,
               std::optional<Clock::time_point> deadline) const {
    if (deadline.has_value()) {
      context.set_deadline(*deadline);
    }
    for (const auto& [key, value] : options.metadata) {
      context.AddMetadata(key, value);
    }
    if (!session_token.empty()) {
      context.AddMetadata(kSessionHeader, session_token);
    }
    if (options.gateway_token != nullptr) {
      if (std::string token = options.gateway_token->Current(); !token.empty()) {
        context.AddMetadata(kGatewayTokenMetadata, token);
      }
    }
  }

  // `base` scaled by a random factor in [1 - jitter, 1 + jitter], so that many
  // gateways retrying after one outage do not retry in lockstep.
  std::chrono::milliseconds Jittered(std::chrono::milliseconds base, double jitter) {
    std::lock_guard<std::mutex> lock(random_mutex);
    std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0 + jitter);
    return std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(base.count()) * factor(random)));
  }

  // The wait before retry number `retry` (1 for the first retry).
  std::chrono::milliseconds RetryBackoff(int retry) {
    const RetryPolicy& policy = options.retry;
    double wait = static_cast<double>(policy.initial_backoff.count());
    for (int i = 1; i < retry; ++i) {
      wait *= policy.multiplier;
    }
    wait = std::min(wait, static_cast<double>(policy.max_backoff.count()));
    return Jittered(std::chrono::milliseconds(static_cast<int64_t>(wait)), policy.jitter);
  }
};

namespace {

using Pool = GrpcMailboxStore::Pool;

// One unary RPC with deadline and (for idempotent reads) retries. `invoke` starts
// the call on a stub: invoke(stub.async(), context, request, response, done).
template <typename Response, typename Request, typename Invoke>
awaitable<absl::StatusOr<Response>> CallUnary(std::shared_ptr<Pool> pool,
                                              std::string session_token, Request request,
                                              bool idempotent, Invoke invoke,
                                              std::chrono::milliseconds budget = {}) {
  // No budget given: the options' unary deadline (Create checks both are positive).
  const Clock::time_point deadline =
      Clock::now() + (budget.count() > 0 ? budget : pool->options.unary_deadline);
  const int max_attempts = idempotent ? std::max(1, pool->options.retry.max_attempts) : 1;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    pool->Prepare(context, session_token, deadline);
    Stub& stub = pool->NextStub();
    grpc::ClientContext* context_ptr = &context;
    const Request* request_ptr = &request;
    absl::StatusOr<Response> result = co_await AwaitUnary<Response>(
        context, [&stub, context_ptr, request_ptr, invoke](
                     Response* response, std::function<void(grpc::Status)> done) {
          invoke(stub.async(), context_ptr, request_ptr, response, std::move(done));
        });
    if (result.ok() || attempt >= max_attempts ||
        result.status().code() != absl::StatusCode::kUnavailable) {
      co_return result;
    }
    const std::chrono::milliseconds wait = pool->RetryBackoff(attempt);
    if (Clock::now() + wait >= deadline) {
      co_return result;
    }
    co_await Sleep(wait);
  }
}

// Spells out one RPC for CallUnary. The std::function overload is the callback
// API's unary form.
#define MAILBOX_UNARY_INVOKER(Method, Request, Response)                                   \
  [](auto* async, grpc::ClientContext* context, const v1::Request* request,         \
     v1::Response* response, std::function<void(grpc::Status)> done) {                     \
    async->Method(context, request, response, std::move(done));                            \
  }

// --- Fetch -------------------------------------------------------------------

using FetchCall = ServerStreamCall<v1::FetchRequest, v1::FetchResponse>;

class GrpcFetchStream final : public FetchStream {
 public:
  GrpcFetchStream(std::shared_ptr<Pool> pool, std::string session_token,
                  v1::FetchRequest request)
      : pool_(std::move(pool)),
        session_token_(std::move(session_token)),
        request_(std::move(request)),
        deadline_(Clock::now() + pool_->options.stream_deadline) {
    StartCall();
  }
  ~GrpcFetchStream() override { Cancel(); }

  awaitable<absl::StatusOr<std::optional<v1::FetchResponse>>> Next() override {
    for (;;) {
      // After Cancel, items that had already arrived are not handed out either.
      if (!final_status_.has_value() && (call_ == nullptr || cancelled_)) {
        final_status_ = absl::CancelledError("fetch cancelled");
      }
      if (final_status_.has_value()) {
        if (final_status_->ok()) {
          co_return std::nullopt;
        }
        co_return *final_status_;
      }
      std::shared_ptr<FetchCall> call = call_;
      bool idle_expired = false;
      // Items that already arrived are taken without the idle timer.
      std::optional<v1::FetchResponse> item = call->TryRead();
      if (item.has_value()) {
        received_any_ = true;
        co_return std::move(item);
      }
      {
        IdleWatch watch(co_await boost::asio::this_coro::executor,
                        pool_->options.stream_idle_timeout, call);
        item = co_await call->Read();
        idle_expired = watch.expired();
      }
      if (item.has_value()) {
        received_any_ = true;
        co_return std::move(item);
      }
      absl::Status status = co_await call->Finish();
      if (idle_expired && status.code() == absl::StatusCode::kCancelled) {
        status = IdleTimeoutError(pool_->options.stream_idle_timeout);
      }
      // Retry only while nothing was handed to the caller: after the first item,
      // a retry would repeat items the gateway may already have sent.
      if (status.code() == absl::StatusCode::kUnavailable && !received_any_ && !cancelled_ &&
          attempts_ < pool_->options.retry.max_attempts) {
        const std::chrono::milliseconds wait = pool_->RetryBackoff(attempts_);
        if (Clock::now() + wait < deadline_) {
          co_await Sleep(wait);
          if (!cancelled_) {
            StartCall();
            continue;
          }
        }
      }
      final_status_ = status;
      call_.reset();
    }
  }

  void Cancel() override {
    cancelled_ = true;
    if (call_ != nullptr) {
      call_->Cancel();
    }
  }

 private:
  void StartCall() {
    ++attempts_;
    call_ = std::make_shared<FetchCall>();
    pool_->Prepare(call_->context(), session_token_, deadline_);
    call_->request() = request_;
    Stub& stub = pool_->NextStub();
    call_->Start([&stub](FetchCall* call) {
      stub.async()->Fetch(&call->context(), &call->request(), call);
    });
  }

  std::shared_ptr<Pool> pool_;
  std::string session_token_;
  v1::FetchRequest request_;
  Clock::time_point deadline_;
  std::shared_ptr<FetchCall> call_;
  int attempts_ = 0;
  bool received_any_ = false;
  bool cancelled_ = false;
  std::optional<absl::Status> final_status_;
};

// --- Append, Revise ----------------------------------------------------------

template <typename Item, typename Reply>
class GrpcUploadStream final : public UploadStream<Item, Reply> {
 public:
  using Call = ClientStreamCall<Item, Reply>;

  // `begin(stub, call)` binds the call to its RPC.
  template <typename Begin>
  GrpcUploadStream(std::shared_ptr<Pool> pool, const std::string& session_token, Begin begin)
      : pool_(std::move(pool)), call_(std::make_shared<Call>()) {
    pool_->Prepare(call_->context(), session_token,
                   Clock::now() + pool_->options.stream_deadline);
    Stub& stub = pool_->NextStub();
    call_->Start([&stub, begin](Call* call) { begin(stub, call); });
  }
  ~GrpcUploadStream() override {
    if (!final_status_.has_value()) {
      call_->Cancel();
    }
  }

  awaitable<absl::Status> Write(Item item) override {
    if (final_status_.has_value()) {
      co_return final_status_->ok()
          ? absl::FailedPreconditionError("write after the upload finished")
          : *final_status_;
    }
    bool ok = false;
    bool idle_expired = false;
    if (call_->WriteWouldNotWait(item.ByteSizeLong())) {
      ok = co_await call_->Write(std::move(item));  // queued: no idle timer needed
    } else {
      IdleWatch watch(co_await boost::asio::this_coro::executor,
                      pool_->options.stream_idle_timeout, call_);
      ok = co_await call_->Write(std::move(item));
      idle_expired = watch.expired();
    }
    if (ok) {
      co_return absl::OkStatus();
    }
    // The stream broke: the service's status says why (TOOBIG, TRYCREATE, ...).
    // Not cancelled first, which could mask that status with CANCELLED.
    absl::Status status = co_await call_->Finish();
    if (idle_expired && status.code() == absl::StatusCode::kCancelled) {
      status = IdleTimeoutError(pool_->options.stream_idle_timeout);
    }
    if (status.ok()) {
      status = absl::InternalError("mailbox service ended the upload before it was complete");
    }
    final_status_ = status;
    co_return status;
  }

  awaitable<absl::StatusOr<Reply>> Finish() override {
    if (!final_status_.has_value()) {
      IdleWatch watch(co_await boost::asio::this_coro::executor,
                      pool_->options.stream_idle_timeout, call_);
      absl::Status status = co_await call_->Finish();
      if (watch.expired() && status.code() == absl::StatusCode::kCancelled) {
        status = IdleTimeoutError(pool_->options.stream_idle_timeout);
      }
      final_status_ = status;
    }
    if (!final_status_->ok()) {
      co_return *final_status_;
    }
    co_return call_->response();
  }

  void Cancel() override {
    if (!final_status_.has_value()) {
      call_->Cancel();
    }
  }

 private:
  std::shared_ptr<Pool> pool_;
  std::shared_ptr<Call> call_;
  std::optional<absl::Status> final_status_;
};

// --- Change feed -------------------------------------------------------------

using FeedCall = BidiStreamCall<v1::ChangeFeedRequest, v1::ChangeEvent>;

// Everything the feed's background coroutines share. Lives on the feed's
// (single-threaded) executor, so it needs no lock.
struct FeedState {
  struct Subscription {
    uint32_t uidvalidity = 0;
    uint64_t last_modseq = 0;  // the last MODSEQ handed to the consumer
    std::string session_token;
  };

  FeedState(std::shared_ptr<Pool> p, boost::asio::any_io_executor ex)
      : pool(std::move(p)),
        executor(ex),
        consumer_signal(ex),
        writer_signal(ex),
        backoff_timer(ex) {}

  v1::ChangeFeedRequest SubscribeRequest(uint64_t mailbox_id, const Subscription& sub) const {
    v1::ChangeFeedRequest request;
    v1::FeedSubscribe* subscribe = request.mutable_subscribe();
    subscribe->set_mailbox_id(mailbox_id);
    subscribe->set_uidvalidity(sub.uidvalidity);
    subscribe->set_from_modseq(sub.last_modseq);
    subscribe->set_session_token(sub.session_token);
    return request;
  }

  static v1::ChangeFeedRequest SubscribeListRequest(uint64_t user_id, const std::string& token) {
    v1::ChangeFeedRequest request;
    v1::FeedSubscribe* subscribe = request.mutable_subscribe();
    subscribe->set_mailbox_list(true);
    subscribe->set_user_id(user_id);
    subscribe->set_session_token(token);
    return request;
  }

  void Send(v1::ChangeFeedRequest request) {
    if (stream == nullptr) {
      return;  // the next connection subscribes from `subscriptions`
    }
    outbox.push_back(std::move(request));
    writer_signal.cancel();
  }

  // Applies the per-mailbox order and no-duplicate rules, then queues for Next.
  void Deliver(v1::ChangeEvent event) {
    if (event.mailbox_id() == 0 && event.user_id() != 0) {
      // A mailbox list's: no MODSEQ to order by; the service sends them in
      // commit order.
      auto list = lists.find(event.user_id());
      if (list == lists.end()) {
        return;
      }
      if (event.has_resync()) {
        lists.erase(list);
      }
      events.push_back(std::move(event));
      consumer_signal.cancel();
      return;
    }
    auto it = subscriptions.find(event.mailbox_id());
    if (it == subscriptions.end()) {
      return;  // unsubscribed while the event was in flight
    }
    switch (event.kind_case()) {
      case v1::ChangeEvent::kSubscribed:
        break;
      case v1::ChangeEvent::kResync:
      case v1::ChangeEvent::kDeleted:
        // The service forgot the subscription (or the mailbox is gone); so do
        // we, until a session reopens the mailbox and subscribes again. A
        // deletion need not carry a greater MODSEQ, so it skips the check below.
        subscriptions.erase(it);
        break;
      default:
        if (event.modseq() <= it->second.last_modseq) {
          return;  // already delivered (replayed after a resume)
        }
        it->second.last_modseq = event.modseq();
        break;
    }
    events.push_back(std::move(event));
    consumer_signal.cancel();
  }

  std::shared_ptr<Pool> pool;
  boost::asio::any_io_executor executor;
  std::map<uint64_t, Subscription> subscriptions;
  std::map<uint64_t, std::string> lists;  // mailbox lists: user id -> session token
  std::deque<v1::ChangeEvent> events;
  boost::asio::steady_timer consumer_signal;  // cancelled to wake Next
  std::deque<v1::ChangeFeedRequest> outbox;   // for the current stream only
  boost::asio::steady_timer writer_signal;    // cancelled to wake the writer
  boost::asio::steady_timer backoff_timer;
  std::shared_ptr<FeedCall> stream;           // null between connections
  uint64_t generation = 0;                    // counts connections
  bool closed = false;
};

// Sends queued subscribe/unsubscribe requests on one connection, one at a time
// (gRPC allows one outstanding write).
awaitable<void> RunFeedWriter(std::shared_ptr<FeedState> state, std::shared_ptr<FeedCall> call,
                              uint64_t generation) {
  while (!state->closed && state->generation == generation) {
    if (state->outbox.empty()) {
      state->writer_signal.expires_at(boost::asio::steady_timer::time_point::max());
      co_await state->writer_signal.async_wait(boost::asio::as_tuple(use_awaitable));
      continue;
    }
    v1::ChangeFeedRequest request = std::move(state->outbox.front());
    state->outbox.pop_front();
    if (!co_await call->Write(std::move(request))) {
      co_return;  // the reader notices the broken stream and reconnects
    }
  }
}

// Connects, (re)subscribes every mailbox from its last delivered MODSEQ, reads
// events until the stream breaks, and starts over after a backoff.
awaitable<void> RunFeed(std::shared_ptr<FeedState> state) {
  const GrpcMailboxStoreOptions& options = state->pool->options;
  std::chrono::milliseconds backoff = options.feed_initial_backoff;
  while (!state->closed) {
    auto call = std::make_shared<FeedCall>();
    // No deadline: the feed lives as long as the worker. Wait-for-ready makes a
    // call started while the service restarts wait for it instead of failing.
    state->pool->Prepare(call->context(), "", std::nullopt);
    call->context().set_wait_for_ready(true);
    Stub& stub = state->pool->NextStub();
    call->Start([&stub](FeedCall* c) { stub.async()->Changes(&c->context(), c); });
    state->stream = call;
    const uint64_t generation = ++state->generation;
    state->outbox.clear();
    for (const auto& [mailbox_id, sub] : state->subscriptions) {
      state->outbox.push_back(state->SubscribeRequest(mailbox_id, sub));
    }
    for (const auto& [user_id, token] : state->lists) {
      state->outbox.push_back(FeedState::SubscribeListRequest(user_id, token));
    }
    boost::asio::co_spawn(state->executor, RunFeedWriter(state, call, generation),
                          LogCompletion{"change feed writer"});

    while (std::optional<v1::ChangeEvent> event = co_await call->Read()) {
      backoff = options.feed_initial_backoff;
      state->Deliver(std::move(*event));
    }
    call->Cancel();  // also fails the writer's pending write
    state->stream.reset();
    state->writer_signal.cancel();
    absl::Status status = co_await call->Finish();
    if (state->closed) {
      break;
    }
    mailbox::log::Error(mailbox::log::event::kStoreUnavailable,
                        {{"command", "change feed"},
                         {"error", status.ToString()},
                         {"retry_in_ms", backoff.count()}});
    state->backoff_timer.expires_after(state->pool->Jittered(backoff, options.retry.jitter));
    co_await state->backoff_timer.async_wait(boost::asio::as_tuple(use_awaitable));
    backoff = std::min(backoff * 2, options.feed_max_backoff);
  }
}

class GrpcChangeFeed final : public ChangeFeed {
 public:
  GrpcChangeFeed(std::shared_ptr<Pool> pool, boost::asio::any_io_executor executor)
      : state_(std::make_shared<FeedState>(std::move(pool), executor)) {
    boost::asio::co_spawn(executor, RunFeed(state_), LogCompletion{"change feed"});
  }
  ~GrpcChangeFeed() override { Close(); }

  void Subscribe(uint64_t mailbox_id, uint32_t uidvalidity, uint64_t from_modseq,
                 std::string session_token) override {
    FeedState::Subscription& sub = state_->subscriptions[mailbox_id];
    sub.uidvalidity = uidvalidity;
    sub.last_modseq = from_modseq;
    sub.session_token = std::move(session_token);
    state_->Send(state_->SubscribeRequest(mailbox_id, sub));
  }

  void Unsubscribe(uint64_t mailbox_id) override {
    if (state_->subscriptions.erase(mailbox_id) == 0) {
      return;
    }
    std::erase_if(state_->events, [mailbox_id](const v1::ChangeEvent& event) {
      return event.mailbox_id() == mailbox_id;
    });
    v1::ChangeFeedRequest request;
    request.mutable_unsubscribe()->set_mailbox_id(mailbox_id);
    state_->Send(std::move(request));
  }

  void SubscribeList(uint64_t user_id, std::string session_token) override {
    state_->lists[user_id] = session_token;
    state_->Send(FeedState::SubscribeListRequest(user_id, session_token));
  }

  void UnsubscribeList(uint64_t user_id) override {
    if (state_->lists.erase(user_id) == 0) {
      return;
    }
    std::erase_if(state_->events, [user_id](const v1::ChangeEvent& event) {
      return event.mailbox_id() == 0 && event.user_id() == user_id;
    });
    v1::ChangeFeedRequest request;
    request.mutable_unsubscribe()->set_mailbox_list(true);
    request.mutable_unsubscribe()->set_user_id(user_id);
    state_->Send(std::move(request));
  }

  awaitable<absl::StatusOr<v1::ChangeEvent>> Next() override {
    std::shared_ptr<FeedState> state = state_;
    for (;;) {
      if (state->closed) {
        co_return absl::CancelledError("change feed closed");
      }
      if (!state->events.empty()) {
        v1::ChangeEvent event = std::move(state->events.front());
        state->events.pop_front();
        co_return event;
      }
      state->consumer_signal.expires_at(boost::asio::steady_timer::time_point::max());
      co_await state->consumer_signal.async_wait(boost::asio::as_tuple(use_awaitable));
    }
  }

  void Close() override {
    if (state_->closed) {
      return;
    }
    state_->closed = true;
    if (state_->stream != nullptr) {
      state_->stream->Cancel();
    }
    state_->consumer_signal.cancel();
    state_->writer_signal.cancel();
    state_->backoff_timer.cancel();
  }

 private:
  std::shared_ptr<FeedState> state_;
};

}  // namespace

// ---------------------------------------------------------------------------

absl::StatusOr<std::string> ServiceTarget(const std::string& addresses) {
  std::vector<std::string> list = absl::StrSplit(addresses, ',', absl::SkipWhitespace());
  if (list.empty()) {
    return absl::InvalidArgumentError("mailbox service target is empty");
  }
  if (list.size() == 1) {
    return std::string(absl::StripAsciiWhitespace(list[0]));
  }
  bool v4 = true, v6 = true;
  for (std::string& address : list) {
    address = std::string(absl::StripAsciiWhitespace(address));
    const size_t colon = address.rfind(':');
    const std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
    in_addr a4;
    in6_addr a6;
    v4 = v4 && inet_pton(AF_INET, host.c_str(), &a4) == 1;
    v6 = v6 && host.size() > 2 && host.front() == '[' && host.back() == ']' &&
         inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) == 1;
  }
  if (!v4 && !v6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mailbox service addresses \"", addresses,
        "\": a list must be numeric host:port addresses of one family; for names, give one "
        "DNS name that resolves to every replica"));
  }
  return absl::StrCat(v4 ? "ipv4:" : "ipv6:", absl::StrJoin(list, ","));
}

absl::StatusOr<std::unique_ptr<GrpcMailboxStore>> GrpcMailboxStore::Create(
    GrpcMailboxStoreOptions options) {
  absl::StatusOr<std::string> target = ServiceTarget(options.target);
  if (!target.ok()) {
    return target.status();
  }
  options.target = *std::move(target);
  if (options.channels < 1 || options.channels > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel pool size must be 1..64, got ", options.channels));
  }
  if (options.unary_deadline.count() <= 0 || options.authenticate_deadline.count() <= 0 ||
      options.stream_idle_timeout.count() <= 0 || options.stream_deadline.count() <= 0) {
    return absl::InvalidArgumentError("deadlines and timeouts must be positive");
  }
  if (options.stream_window_bytes < 0) {
    return absl::InvalidArgumentError("stream_window_bytes must not be negative");
  }
  if (options.retry.max_attempts < 1 || options.retry.jitter < 0 || options.retry.jitter >= 1 ||
      options.retry.multiplier < 1) {
    return absl::InvalidArgumentError("invalid retry policy");
  }
  auto pool = std::make_shared<Pool>();
  pool->options = std::move(options);
  std::shared_ptr<grpc::ChannelCredentials> credentials = pool->options.credentials;
  if (credentials == nullptr) {
    credentials = grpc::InsecureChannelCredentials();
  }
  for (int i = 0; i < pool->options.channels; ++i) {
    grpc::ChannelArguments args = pool->options.channel_args;
    // Without a local subchannel pool, channels to the same target share one
    // connection, and the pool would spread nothing.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // Retries are this client's own (CallUnary, GrpcFetchStream): gRPC's retry
    // filter would only copy every call's messages into its replay buffer.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    // Every address the target names (several replicas) carries calls; one that
    // cannot be reached, or whose health check (grpc.health.v1) says NOT_SERVING, is
    // left out until it serves again. A service without the health service counts
    // as serving.
    args.SetServiceConfigJSON(
        R"({"loadBalancingConfig": [{"round_robin": {}}],)"
        R"( "healthCheckConfig": {"serviceName": ""}})");
    if (pool->options.stream_window_bytes > 0) {
      // A fixed window: the BDP probe would otherwise grow it past the bound.
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, pool->options.stream_window_bytes);
    }
    auto channel = pool->options.interceptors
                       ? grpc::experimental::CreateCustomChannelWithInterceptors(
                             pool->options.target, credentials, args, pool->options.interceptors())
                       : grpc::CreateCustomChannel(pool->options.target, credentials, args);
    pool->stubs.push_back(v1::Mailbox::NewStub(channel));
    pool->channels.push_back(std::move(channel));
  }
  return std::unique_ptr<GrpcMailboxStore>(new GrpcMailboxStore(std::move(pool)));
}

GrpcMailboxStore::GrpcMailboxStore(std::shared_ptr<Pool> pool) : pool_(std::move(pool)) {}
GrpcMailboxStore::~GrpcMailboxStore() = default;

bool GrpcMailboxStore::Reachable(std::chrono::milliseconds wait) {
  // With the health check configured (healthCheckConfig below), round_robin counts
  // a replica that says NOT_SERVING as failed, so a channel is READY only while one
  // of its replicas is connected and serving.
  for (const auto& channel : pool_->channels) {
    if (channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) {
      return true;
    }
  }
  const auto deadline = std::chrono::system_clock::now() + wait;
  for (const auto& channel : pool_->channels) {
    grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    while (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_TRANSIENT_FAILURE &&
           state != GRPC_CHANNEL_SHUTDOWN &&
           channel->WaitForStateChange(state, deadline)) {
      state = channel->GetState(/*try_to_connect=*/true);
    }
    if (state == GRPC_CHANNEL_READY) {
      return true;
    }
  }
  return false;
}

awaitable<absl::StatusOr<v1::AuthenticateResponse>> GrpcMailboxStore::Authenticate(
    v1::AuthenticateRequest request) {
  co_return co_await CallUnary<v1::AuthenticateResponse>(
      pool_, "", std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(Authenticate, AuthenticateRequest, AuthenticateResponse),
      pool_->options.authenticate_deadline);
}

awaitable<absl::StatusOr<v1::ListMailboxesResponse>> GrpcMailboxStore::ListMailboxes(
    Session session, v1::ListMailboxesRequest request) {
  co_return co_await CallUnary<v1::ListMailboxesResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(ListMailboxes, ListMailboxesRequest, ListMailboxesResponse));
}

awaitable<absl::StatusOr<v1::CreateMailboxResponse>> GrpcMailboxStore::CreateMailbox(
    Session session, v1::CreateMailboxRequest request) {
  co_return co_await CallUnary<v1::CreateMailboxResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(CreateMailbox, CreateMailboxRequest, CreateMailboxResponse));
}

awaitable<absl::StatusOr<v1::DeleteMailboxResponse>> GrpcMailboxStore::DeleteMailbox(
    Session session, v1::DeleteMailboxRequest request) {
  co_return co_await CallUnary<v1::DeleteMailboxResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(DeleteMailbox, DeleteMailboxRequest, DeleteMailboxResponse));
}

awaitable<absl::StatusOr<v1::RenameMailboxResponse>> GrpcMailboxStore::RenameMailbox(
    Session session, v1::RenameMailboxRequest request) {
  co_return co_await CallUnary<v1::RenameMailboxResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(RenameMailbox, RenameMailboxRequest, RenameMailboxResponse));
}

awaitable<absl::StatusOr<v1::SetSubscriptionResponse>> GrpcMailboxStore::SetSubscription(
    Session session, v1::SetSubscriptionRequest request) {
  co_return co_await CallUnary<v1::SetSubscriptionResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(SetSubscription, SetSubscriptionRequest, SetSubscriptionResponse));
}

awaitable<absl::StatusOr<v1::StatusResponse>> GrpcMailboxStore::Status(
    Session session, v1::StatusRequest request) {
  co_return co_await CallUnary<v1::StatusResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Status, StatusRequest, StatusResponse));
}

awaitable<absl::StatusOr<v1::GetQuotaResponse>> GrpcMailboxStore::GetQuota(
    Session session, v1::GetQuotaRequest request) {
  co_return co_await CallUnary<v1::GetQuotaResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(GetQuota, GetQuotaRequest, GetQuotaResponse));
}

awaitable<absl::StatusOr<v1::GetMetadataResponse>> GrpcMailboxStore::GetMetadata(
    Session session, v1::GetMetadataRequest request) {
  co_return co_await CallUnary<v1::GetMetadataResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(GetMetadata, GetMetadataRequest, GetMetadataResponse));
}

awaitable<absl::StatusOr<v1::SetMetadataResponse>> GrpcMailboxStore::SetMetadata(
    Session session, v1::SetMetadataRequest request) {
  // Setting the same values again changes nothing: safe to retry.
  co_return co_await CallUnary<v1::SetMetadataResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(SetMetadata, SetMetadataRequest, SetMetadataResponse));
}

awaitable<absl::StatusOr<v1::OpenResponse>> GrpcMailboxStore::Open(Session session,
                                                                   v1::OpenRequest request) {
  // Retried although Open claims \Recent messages: if a reply was lost, the
  // retry at worst reports fewer \Recent messages, which RFC 3501 §2.3.2 allows
  // (\Recent is advisory); the snapshot itself is a read.
  co_return co_await CallUnary<v1::OpenResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Open, OpenRequest, OpenResponse));
}

awaitable<absl::StatusOr<v1::ClaimRecentResponse>> GrpcMailboxStore::ClaimRecent(
    Session session, v1::ClaimRecentRequest request) {
  // Retried like Open: after a lost reply the retry finds the messages claimed
  // and returns none, so they are \Recent in no session, which RFC 3501 §2.3.2
  // allows (\Recent is advisory).
  co_return co_await CallUnary<v1::ClaimRecentResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(ClaimRecent, ClaimRecentRequest, ClaimRecentResponse));
}

awaitable<absl::StatusOr<v1::VanishedResponse>> GrpcMailboxStore::Vanished(
    Session session, v1::VanishedRequest request) {
  co_return co_await CallUnary<v1::VanishedResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Vanished, VanishedRequest, VanishedResponse));
}

awaitable<absl::StatusOr<v1::StoreResponse>> GrpcMailboxStore::Store(Session session,
                                                                     v1::StoreRequest request) {
  co_return co_await CallUnary<v1::StoreResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(Store, StoreRequest, StoreResponse));
}

awaitable<absl::StatusOr<v1::CopyResponse>> GrpcMailboxStore::Copy(Session session,
                                                                   v1::CopyRequest request) {
  co_return co_await CallUnary<v1::CopyResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(Copy, CopyRequest, CopyResponse));
}

awaitable<absl::StatusOr<v1::MoveResponse>> GrpcMailboxStore::Move(Session session,
                                                                   v1::MoveRequest request) {
  co_return co_await CallUnary<v1::MoveResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(Move, MoveRequest, MoveResponse));
}

awaitable<absl::StatusOr<v1::ExpungeResponse>> GrpcMailboxStore::Expunge(
    Session session, v1::ExpungeRequest request) {
  co_return co_await CallUnary<v1::ExpungeResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/false,
      MAILBOX_UNARY_INVOKER(Expunge, ExpungeRequest, ExpungeResponse));
}

awaitable<absl::StatusOr<v1::SearchResponse>> GrpcMailboxStore::Search(
    Session session, v1::SearchRequest request) {
  co_return co_await CallUnary<v1::SearchResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Search, SearchRequest, SearchResponse));
}

awaitable<absl::StatusOr<v1::SortResponse>> GrpcMailboxStore::Sort(Session session,
                                                                   v1::SortRequest request) {
  co_return co_await CallUnary<v1::SortResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Sort, SortRequest, SortResponse));
}

awaitable<absl::StatusOr<v1::ThreadResponse>> GrpcMailboxStore::Thread(
    Session session, v1::ThreadRequest request) {
  co_return co_await CallUnary<v1::ThreadResponse>(
      pool_, std::move(session.token), std::move(request), /*idempotent=*/true,
      MAILBOX_UNARY_INVOKER(Thread, ThreadRequest, ThreadResponse));
}

std::unique_ptr<FetchStream> GrpcMailboxStore::Fetch(Session session, v1::FetchRequest request) {
  return std::make_unique<GrpcFetchStream>(pool_, std::move(session.token), std::move(request));
}

std::unique_ptr<AppendStream> GrpcMailboxStore::Append(Session session) {
  using Stream = GrpcUploadStream<v1::AppendRequest, v1::AppendResponse>;
  return std::make_unique<Stream>(pool_, session.token, [](Stub& stub, Stream::Call* call) {
    stub.async()->Append(&call->context(), &call->response(), call);
  });
}

std::unique_ptr<ReviseStream> GrpcMailboxStore::Revise(Session session) {
  using Stream = GrpcUploadStream<v1::ReviseRequest, v1::ReviseResponse>;
  return std::make_unique<Stream>(pool_, session.token, [](Stub& stub, Stream::Call* call) {
    stub.async()->Revise(&call->context(), &call->response(), call);
  });
}

std::unique_ptr<ChangeFeed> GrpcMailboxStore::OpenChangeFeed(
    boost::asio::any_io_executor executor) {
  return std::make_unique<GrpcChangeFeed>(pool_, std::move(executor));
}

}  // namespace mailbox::client
