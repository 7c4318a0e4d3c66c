// The one bridge between gRPC's callback API and Boost.Asio C++20 coroutines.
//
// gRPC reports completions on its own threads. AwaitCompletion, the single adapter,
// turns "an operation that calls done(T) once, on any thread" into an awaitable that
// resumes the awaiting coroutine on that coroutine's own executor (so a gateway
// session, which lives on one io_context thread, never sees another thread). Every
// unary call and every stream operation below goes through it; grpc::Status becomes
// absl::Status here (FinishStatus, AwaitUnary) and nowhere else.
//
// Requirements for callers:
// * The executor of an awaiting coroutine must stay alive (its io_context must not
//   be destroyed) until every operation it awaits has completed. The operation keeps
//   the executor's outstanding work count up while it is in flight.
// * A ClientContext must carry a deadline; that is the caller's business (the store
//   sets one on every call), the adapter does not invent one.
// * If the awaiting coroutine is cancelled through its cancellation slot (for
//   example by an `||` awaitable operator), the operation's `cancel` function runs
//   on the coroutine's executor; for gRPC it is ClientContext::TryCancel, and the
//   coroutine still resumes only once gRPC has reported the operation done.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/associated_cancellation_slot.hpp"
#include "boost/asio/associated_executor.hpp"
#include "boost/asio/async_result.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/cancellation_type.hpp"
#include "boost/asio/execution/outstanding_work.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/prefer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "grpcpp/support/status.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::client {

namespace grpc_asio_internal {

// Holds the coroutine's completion handler between initiation and the foreign
// thread's report. Shared because gRPC copies its std::function callbacks.
template <typename Handler, typename T>
struct PendingCompletion {
  using Executor = boost::asio::associated_executor_t<Handler>;
  using WorkExecutor = std::decay_t<decltype(boost::asio::prefer(
      std::declval<Executor>(), boost::asio::execution::outstanding_work.tracked))>;
  using Slot = boost::asio::associated_cancellation_slot_t<Handler>;

  PendingCompletion(Handler h, WorkExecutor w, Slot s)
      : handler(std::move(h)), work(std::move(w)), slot(std::move(s)) {}

  std::optional<Handler> handler;
  WorkExecutor work;  // keeps the executor's run() from returning while in flight
  Slot slot;
};

}  // namespace grpc_asio_internal

// THE adapter. `start(done)` must begin an operation that calls `done(T)` exactly
// once, from any thread (done is copyable and thread-safe to call). The awaiting
// coroutine resumes with that T on its own executor. `cancel()` runs on that
// executor if the coroutine's cancellation slot fires before the operation reports;
// it must make the operation report soon, and is never called after resumption.
template <typename T, typename Start, typename Cancel>
boost::asio::awaitable<T> AwaitCompletion(Start start, Cancel cancel) {
  auto initiation = [](auto handler, Start start_op, Cancel cancel_op) {
    using Handler = decltype(handler);
    using Pending = grpc_asio_internal::PendingCompletion<Handler, T>;
    auto executor = boost::asio::get_associated_executor(handler);
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    auto pending = std::make_shared<Pending>(
        std::move(handler),
        boost::asio::prefer(executor, boost::asio::execution::outstanding_work.tracked),
        slot);
    if (slot.is_connected()) {
      slot.assign([cancel_op = std::move(cancel_op)](boost::asio::cancellation_type) mutable {
        cancel_op();
      });
    }
    start_op([pending](T value) {
      // Runs on a gRPC thread: hop to the coroutine's executor before touching it.
      auto work = pending->work;
      boost::asio::post(work, [pending, value = std::move(value)]() mutable {
        if (pending->slot.is_connected()) {
          pending->slot.clear();
        }
        Handler handler = std::move(*pending->handler);
        pending->handler.reset();
        std::move(handler)(std::move(value));
      });
    });
  };
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(T)>(
      std::move(initiation), boost::asio::use_awaitable, std::move(start), std::move(cancel));
}

// A unary call. `invoke(response, done)` starts it, typically
// `stub->async()->Open(&context, &request, response, std::move(done))`. `context`
// must outlive the call (the awaiting frame owns it).
template <typename Response, typename Invoke>
boost::asio::awaitable<absl::StatusOr<Response>> AwaitUnary(grpc::ClientContext& context,
                                                            Invoke invoke) {
  Response response;
  Response* response_ptr = &response;
  grpc::ClientContext* context_ptr = &context;
  grpc::Status status = co_await AwaitCompletion<grpc::Status>(
      [invoke = std::move(invoke), response_ptr](std::function<void(grpc::Status)> done) mutable {
        invoke(response_ptr, std::move(done));
      },
      [context_ptr] { context_ptr->TryCancel(); });
  if (!status.ok()) {
    co_return v1::FromGrpcStatus(status);
  }
  co_return response;
}

// A streaming call as coroutine operations: `co_await call->Read()` one message at
// a time, `co_await call->Write(m)`, `co_await call->Finish()`.
//
// Reactor is grpc::ClientReadReactor<Response> (server streaming: `request()` is
// sent at start), grpc::ClientWriteReactor<Request> (client streaming: `response()`
// holds the reply after Finish) or grpc::ClientBidiReactor<Request, Response>.
//
// Flow control: reads run ahead of the consumer on gRPC's thread, so a burst of
// small messages (a FETCH of many messages) reaches the consumer's executor in one
// hand-off rather than one per message; a new read starts only while fewer than
// kReadAheadMessages messages and kReadAheadBytes bytes wait here, so a stream of
// 256 KiB chunks holds one at a time (gRPC's HTTP/2 window bounds what the
// transport buffers). Writes run behind the producer the same way: Write returns
// at once while at most kWriteBehindBytes wait behind the message gRPC is sending,
// and gRPC's thread starts the next one (and a requested half-close) as each
// completes, so an APPEND of a small message costs one hand-off (Finish), not one
// per message. A failed write shows in the next Write or in Finish.
//
// Lifetime: create with std::make_shared, set up context() (deadline, metadata),
// then Start(). The object keeps itself alive until gRPC's last callback (OnDone),
// so dropping every reference mid-stream is safe; call Cancel() first to abandon
// the call (the owner's destructor should).
template <typename Reactor, typename Request, typename Response>
class StreamCall final : public Reactor,
                         public std::enable_shared_from_this<StreamCall<Reactor, Request, Response>> {
 public:
  static constexpr bool kBidi =
      std::is_base_of_v<grpc::ClientBidiReactor<Request, Response>, Reactor>;
  static constexpr bool kReads =
      kBidi || std::is_base_of_v<grpc::ClientReadReactor<Response>, Reactor>;
  static constexpr bool kWrites =
      kBidi || std::is_base_of_v<grpc::ClientWriteReactor<Request>, Reactor>;

  static constexpr size_t kReadAheadMessages = 16;
  static constexpr size_t kReadAheadBytes = 64 * 1024;
  static constexpr size_t kWriteBehindBytes = 64 * 1024;

  StreamCall() = default;
  StreamCall(const StreamCall&) = delete;
  StreamCall& operator=(const StreamCall&) = delete;

  grpc::ClientContext& context() { return context_; }
  // Server streaming: the request sent at start. Client streaming: unused.
  Request& request() { return request_; }
  // Client streaming: the reply, valid after Finish returned OK.
  Response& response() { return response_; }

  // `begin(this)` binds the reactor, e.g.
  // `stub->async()->Fetch(&c->context(), &c->request(), c)`. Call once.
  template <typename Begin>
  void Start(Begin begin) {
    self_ = this->shared_from_this();
    begin(this);  // binds the reactor to the call; holds need that
    // The hold lets us start reads and writes from outside gRPC's reactions; it
    // is removed when we will start no more (Finish or Cancel).
    this->AddHold();
    this->StartCall();
  }

  // A message that already arrived, without waiting; nullopt if none is here.
  std::optional<Response> TryRead()
    requires kReads
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    return TakeReadyLocked();
  }

  // The next message, or nullopt once the stream has ended (then await Finish for
  // the status) or after Cancel.
  boost::asio::awaitable<std::optional<Response>> Read()
    requires kReads
  {
    if (std::optional<Response> ready = TryRead()) {
      co_return ready;
    }
    co_await AwaitCompletion<bool>(
        [this](std::function<void(bool)> done) {
          std::unique_lock<std::recursive_mutex> lock(mutex_);
          // Checked under the lock that Cancel takes, so a read never starts after
          // the hold is gone (gRPC forbids that once OnDone may have run).
          if (!ready_.empty() || hold_removed_ || read_ended_) {
            lock.unlock();
            done(true);
            return;
          }
          on_read_done_ = std::move(done);
          if (!read_pending_) {
            read_pending_ = true;
            this->StartRead(&read_buffer_);
          }
        },
        [this] { context_.TryCancel(); });
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    co_return TakeReadyLocked();
  }

  // True if Write of a message of `bytes` would return without waiting for gRPC.
  bool WriteWouldNotWait(size_t bytes)
    requires kWrites
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    return !write_in_flight_ || queued_bytes_ + bytes <= kWriteBehindBytes;
  }

  // Sends one message: hands it to gRPC, or queues it behind the one gRPC is
  // sending, and waits only while more than kWriteBehindBytes are queued. False
  // means the stream is broken or was cancelled: await Finish for the reason.
  boost::asio::awaitable<bool> Write(Request message)
    requires kWrites
  {
    {
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      if (hold_removed_ || writes_done_ || write_failed_) {
        co_return false;
      }
      if (!write_in_flight_) {
        write_in_flight_ = true;
        write_buffer_ = std::move(message);
        this->StartWrite(&write_buffer_);
      } else {
        queued_bytes_ += message.ByteSizeLong();
        write_queue_.push_back(std::move(message));
      }
      if (queued_bytes_ <= kWriteBehindBytes) {
        co_return true;
      }
    }
    co_return co_await AwaitCompletion<bool>(
        [this](std::function<void(bool)> done) {
          std::unique_lock<std::recursive_mutex> lock(mutex_);
          if (queued_bytes_ <= kWriteBehindBytes || write_failed_) {
            const bool ok = !write_failed_;
            lock.unlock();
            done(ok);
            return;
          }
          on_write_done_ = std::move(done);
        },
        [this] { context_.TryCancel(); });
  }

  // Half-closes the sending side without waiting for the end of the call; after
  // the queued writes, if any.
  void WritesDone()
    requires kWrites
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (hold_removed_ || writes_done_) {
      return;
    }
    writes_done_ = true;
    if (!write_in_flight_) {
      this->StartWritesDone();
    }  // else OnWriteDone starts it once the queue is empty
  }

  // Ends our side (half-close for client streams; a bidi caller half-closes with
  // WritesDone first if it wants the server to finish) and waits for the call's
  // status. A server stream must have been read to its end, or be cancelled,
  // before the status can arrive.
  boost::asio::awaitable<absl::Status> Finish() {
    if constexpr (kWrites && !kBidi) {
      WritesDone();
    }
    RemoveHoldOnce();
    grpc::Status status = co_await AwaitCompletion<grpc::Status>(
        [this](std::function<void(grpc::Status)> done) {
          std::unique_lock<std::recursive_mutex> lock(mutex_);
          if (finished_) {
            grpc::Status status = final_status_;
            lock.unlock();
            done(std::move(status));
            return;
          }
          on_done_ = std::move(done);
        },
        [this] { context_.TryCancel(); });
    co_return v1::FromGrpcStatus(status);
  }

  // Abandons the call: pending and later reads/writes fail, Finish reports
  // CANCELLED (unless the call had already completed). Safe to call repeatedly and
  // from any thread; does not block.
  void Cancel() {
    {
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      cancelled_ = true;
    }
    context_.TryCancel();
    RemoveHoldOnce();
  }

  // --- gRPC reactions (gRPC threads) -------------------------------------------
  // No `override` on the first two: each exists only in some of the reactor bases
  // (and overrides the base's virtual where it does).
  void OnReadDone(bool ok) {
    if constexpr (kReads) {
      std::function<void(bool)> callback;
      {
        std::lock_guard<std::recursive_mutex> lock(mutex_);
        read_pending_ = false;
        if (ok) {
          ready_bytes_ += read_buffer_.ByteSizeLong();
          ready_.push_back(std::move(read_buffer_));
          read_buffer_.Clear();
          // Read on while little waits here; inside this reaction a new read
          // is allowed even after the hold is gone.
          if (!cancelled_ && ready_.size() < kReadAheadMessages &&
              ready_bytes_ < kReadAheadBytes) {
            read_pending_ = true;
            this->StartRead(&read_buffer_);
          }
        } else {
          read_ended_ = true;
        }
        callback = std::move(on_read_done_);
        on_read_done_ = nullptr;
      }
      if (callback) {
        callback(ok);
      }
    }
  }
  void OnWriteDone(bool ok) {
    if constexpr (kWrites) {
      std::function<void(bool)> callback;
      bool result = true;
      {
        std::lock_guard<std::recursive_mutex> lock(mutex_);
        write_in_flight_ = false;
        if (!ok) {
          write_failed_ = true;
          write_queue_.clear();
          queued_bytes_ = 0;
        } else if (!write_queue_.empty()) {
          // Inside this reaction a new write is allowed even after the hold is gone.
          write_buffer_ = std::move(write_queue_.front());
          write_queue_.pop_front();
          queued_bytes_ -= std::min(queued_bytes_, write_buffer_.ByteSizeLong());
          write_in_flight_ = true;
          this->StartWrite(&write_buffer_);
        } else if (writes_done_ && !cancelled_) {
          this->StartWritesDone();
        }
        if (on_write_done_ && (write_failed_ || queued_bytes_ <= kWriteBehindBytes)) {
          callback = std::move(on_write_done_);
          on_write_done_ = nullptr;
          result = !write_failed_;
        }
      }
      if (callback) {
        callback(result);
      }
    }
  }
  void OnDone(const grpc::Status& status) override {
    std::function<void(grpc::Status)> done;
    std::shared_ptr<StreamCall> self;
    {
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      finished_ = true;
      final_status_ = status;
      done = std::move(on_done_);
      on_done_ = nullptr;
      // gRPC makes no call on the reactor after OnDone: the last self-reference
      // may go now (possibly destroying `this` when `self` leaves scope).
      self = std::move(self_);
    }
    if (done) {
      done(status);
    }
  }

 private:
  // The oldest message that arrived (mutex_ held), starting the next read if the
  // consumer has made room for it.
  std::optional<Response> TakeReadyLocked()
    requires kReads
  {
    if (ready_.empty()) {
      return std::nullopt;
    }
    std::optional<Response> message(std::move(ready_.front()));
    ready_.pop_front();
    ready_bytes_ -= std::min(ready_bytes_, message->ByteSizeLong());
    if (!read_pending_ && !read_ended_ && !hold_removed_ && !cancelled_ &&
        ready_.size() < kReadAheadMessages && ready_bytes_ < kReadAheadBytes) {
      read_pending_ = true;
      this->StartRead(&read_buffer_);
    }
    return message;
  }

  void RemoveHoldOnce() {
    std::unique_lock<std::recursive_mutex> lock(mutex_);
    if (hold_removed_ || self_ == nullptr) {
      return;
    }
    hold_removed_ = true;
    // Outside the lock: with no operation pending, RemoveHold may run OnDone
    // inline, and OnDone may destroy `this`; keep it alive across the call.
    std::shared_ptr<StreamCall> keep_alive = self_;
    lock.unlock();
    this->RemoveHold();
  }

  grpc::ClientContext context_;
  Request request_;
  Response response_;
  Response read_buffer_;
  Request write_buffer_;

  // Recursive: gRPC may run a reaction inline from a Start* call made under it.
  std::recursive_mutex mutex_;
  std::function<void(bool)> on_read_done_;
  std::function<void(bool)> on_write_done_;
  std::function<void(grpc::Status)> on_done_;
  bool hold_removed_ = false;
  bool cancelled_ = false;
  bool read_pending_ = false;      // a StartRead has not reported yet
  std::deque<Response> ready_;     // arrived, not yet taken by Read
  bool write_in_flight_ = false;   // a StartWrite has not reported yet
  bool write_failed_ = false;
  std::deque<Request> write_queue_;  // behind the write in flight
  size_t queued_bytes_ = 0;
  size_t ready_bytes_ = 0;
  bool read_ended_ = false;
  bool writes_done_ = false;
  bool finished_ = false;
  grpc::Status final_status_;
  std::shared_ptr<StreamCall> self_;  // set from Start until OnDone
};

template <typename Request, typename Response>
using ServerStreamCall = StreamCall<grpc::ClientReadReactor<Response>, Request, Response>;
template <typename Request, typename Response>
using ClientStreamCall = StreamCall<grpc::ClientWriteReactor<Request>, Request, Response>;
template <typename Request, typename Response>
using BidiStreamCall = StreamCall<grpc::ClientBidiReactor<Request, Response>, Request, Response>;

}  // namespace mailbox::client
