// GrpcMailboxStore against an in-process gRPC server (real gRPC over loopback TCP)
// whose hand-written service stands in for the mailbox service.
#include "storage-client/grpc_mailbox_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"
#include "common/status_macros.h"

namespace mailbox::client {
namespace {

using boost::asio::awaitable;
using boost::asio::use_awaitable;

constexpr size_t kChunk = 256 * 1024;
constexpr uint32_t kStallFetch = 1'000'000;  // Fetch that sends nothing

// gtest's ASSERT_* expand to `return`, which a coroutine cannot use.
#define CO_ASSERT_TRUE(cond)                       \
  if (!(cond)) {                                   \
    ADD_FAILURE() << "assertion failed: " #cond;   \
    co_return;                                     \
  }
#define CO_ASSERT_OK(expr)                                           \
  if (auto&& co_assert_tmp_ = (expr); !co_assert_tmp_.ok()) {        \
    ADD_FAILURE() << #expr << ": " << StatusOf(co_assert_tmp_);     \
    co_return;                                                       \
  }

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) { return s.status(); }

awaitable<void> Sleep(std::chrono::milliseconds duration) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, duration);
  co_await timer.async_wait(boost::asio::as_tuple(use_awaitable));
}

// The stand-in service: each RPC has one scripted behaviour a test relies on.
class TestService final : public v1::Mailbox::Service {
 public:
  // Fails the first Status call with UNAVAILABLE, answers the next ones.
  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override {
    ++status_calls;
    session_seen = SessionOf(context);
    auto token = context->client_metadata().find("x-mailbox-gateway-token");
    gateway_token_seen = token == context->client_metadata().end()
                             ? ""
                             : std::string(token->second.data(), token->second.size());
    if (status_calls == 1 && request->name() == "flaky") {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "try again");
    }
    response->set_messages(42);
    return grpc::Status::OK;
  }

  // Always UNAVAILABLE: a write the client must not retry.
  grpc::Status CreateMailbox(grpc::ServerContext*, const v1::CreateMailboxRequest*,
                             v1::CreateMailboxResponse*) override {
    ++create_calls;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "store busy");
  }

  // Answers with an error carrying an ErrorDetail.
  grpc::Status Open(grpc::ServerContext*, const v1::OpenRequest* request,
                    v1::OpenResponse* response) override {
    if (request->name() == "missing") {
      return v1::ToGrpcStatus(
          v1::MakeError(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no mailbox \"missing\""));
    }
    response->set_mailbox_id(7);
    response->set_uidvalidity(1);
    return grpc::Status::OK;
  }

  // Hangs until cancelled (or 5 s): for deadline and cancellation tests.
  grpc::Status ListMailboxes(grpc::ServerContext* context, const v1::ListMailboxesRequest*,
                             v1::ListMailboxesResponse*) override {
    for (int i = 0; i < 500 && !context->IsCancelled(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return grpc::Status(grpc::StatusCode::INTERNAL, "should have been cancelled");
  }

  // uids.first = N > 0: N chunks of 256 KiB. N = 0: chunks until cancelled.
  // kStallFetch: nothing until cancelled.
  grpc::Status Fetch(grpc::ServerContext* context, const v1::FetchRequest* request,
                     grpc::ServerWriter<v1::FetchResponse>* writer) override {
    const uint32_t count = request->uids().ranges(0).first();
    if (count == kStallFetch) {
      for (int i = 0; i < 500 && !context->IsCancelled(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return grpc::Status(grpc::StatusCode::INTERNAL, "should have been cancelled");
    }
    v1::FetchResponse item;
    item.mutable_chunk()->set_data(std::string(kChunk, 'x'));
    for (uint32_t i = 0; count == 0 || i < count; ++i) {
      item.mutable_chunk()->set_uid(i);
      item.mutable_chunk()->set_last(i + 1 == count);
      if (context->IsCancelled() || !writer->Write(item)) {
        fetch_cancelled = true;
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
      ++fetch_written;
    }
    return grpc::Status::OK;
  }

  grpc::Status Append(grpc::ServerContext*, grpc::ServerReader<v1::AppendRequest>* reader,
                      v1::AppendResponse* response) override {
    v1::AppendRequest item;
    while (reader->Read(&item)) {
      if (item.has_mailbox()) {
        append_mailbox = item.mailbox();
      } else if (item.has_message()) {
        append_declared = item.message().size();
      } else {
        append_bytes += item.chunk().size();
        ++append_chunks;
        append_max_chunk = std::max(append_max_chunk.load(), item.chunk().size());
      }
    }
    if (append_bytes != append_declared) {
      return v1::ToGrpcStatus(v1::BadRequest("size mismatch"));
    }
    response->set_mailbox_id(7);
    response->add_uids(101);
    return grpc::Status::OK;
  }

  // Mailbox 7: replays `from` (a duplicate the client must drop) and the next
  // three MODSEQs, then Subscribed. Mailbox 9: RESYNC.
  grpc::Status Changes(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::ChangeEvent, v1::ChangeFeedRequest>* stream) override {
    v1::ChangeFeedRequest request;
    while (stream->Read(&request)) {
      if (!request.has_subscribe()) {
        continue;
      }
      const v1::FeedSubscribe& sub = request.subscribe();
      {
        std::lock_guard<std::mutex> lock(mutex);
        resume_points.push_back(sub.from_modseq());
      }
      v1::ChangeEvent event;
      event.set_mailbox_id(sub.mailbox_id());
      if (sub.mailbox_id() == 9) {
        auto* reason = event.mutable_resync()->mutable_reason();
        reason->set_code(v1::RESYNC);
        reason->set_message("resume point too old");
        stream->Write(event);
        continue;
      }
      const uint64_t first = sub.from_modseq() == 0 ? 1 : sub.from_modseq();
      for (uint64_t modseq = first; modseq <= sub.from_modseq() + 3; ++modseq) {
        event.set_modseq(modseq);
        event.mutable_flags_changed()->add_messages()->set_uid(static_cast<uint32_t>(modseq));
        stream->Write(event);
      }
      event.Clear();
      event.set_mailbox_id(sub.mailbox_id());
      event.mutable_subscribed()->set_highest_modseq(sub.from_modseq() + 3);
      stream->Write(event);
    }
    return grpc::Status::OK;
  }

  std::vector<uint64_t> ResumePoints() {
    std::lock_guard<std::mutex> lock(mutex);
    return resume_points;
  }

  static std::string SessionOf(grpc::ServerContext* context) {
    auto it = context->client_metadata().find("x-mailbox-session");
    if (it == context->client_metadata().end()) {
      return "";
    }
    return std::string(it->second.data(), it->second.size());
  }

  std::atomic<int> status_calls{0};
  std::atomic<int> create_calls{0};
  std::atomic<int> fetch_written{0};
  std::atomic<bool> fetch_cancelled{false};
  std::string session_seen;  // written before the reply, read after it
  std::string gateway_token_seen;
  std::string append_mailbox;
  std::atomic<uint64_t> append_declared{0};
  std::atomic<uint64_t> append_bytes{0};
  std::atomic<int> append_chunks{0};
  std::atomic<size_t> append_max_chunk{0};
  std::mutex mutex;
  std::vector<uint64_t> resume_points;
};

class GrpcMailboxStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(0); }
  void TearDown() override {
    store_.reset();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
  }

  void StartServer(int port) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }
  void StopServer() {
    // Cancels in-flight calls at once, like a service that was killed.
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  GrpcMailboxStore& Store(GrpcMailboxStoreOptions options = {}) {
    options.target = "127.0.0.1:" + std::to_string(port_);
    options.retry.initial_backoff = std::chrono::milliseconds(10);
    options.feed_initial_backoff = std::chrono::milliseconds(50);
    options.feed_max_backoff = std::chrono::milliseconds(200);
    options.channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    options.channel_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    options.channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
    auto store = GrpcMailboxStore::Create(std::move(options));
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    return *store_;
  }

  // Runs `test` on io_ to completion (a test body is a coroutine).
  void Run(awaitable<void> test) {
    bool finished = false;
    boost::asio::co_spawn(io_, std::move(test), [&finished](std::exception_ptr error) {
      finished = true;
      if (error != nullptr) {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "test coroutine threw: " << e.what();
        }
      }
    });
    io_.run();
    EXPECT_TRUE(finished);
  }

  TestService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<GrpcMailboxStore> store_;
  boost::asio::io_context io_;
};

// --- Unary calls -------------------------------------------------------------

awaitable<void> UnaryResumesOnCallerThread(GrpcMailboxStore& store, TestService& service) {
  const auto executor = co_await boost::asio::this_coro::executor;
  const std::thread::id caller = std::this_thread::get_id();
  v1::StatusRequest request;
  request.set_name("INBOX");
  absl::StatusOr<v1::StatusResponse> reply = co_await store.Status(Session{"tok-1"}, request);
  CO_ASSERT_OK(reply);
  EXPECT_EQ(reply->messages(), 42u);
  EXPECT_EQ(std::this_thread::get_id(), caller);
  EXPECT_TRUE(executor.target<boost::asio::io_context::executor_type>()->running_in_this_thread());
  EXPECT_EQ(service.session_seen, "tok-1");
}

TEST(ServiceTargetTest, OneAddressAsItIsAListOfReplicasAsOneTarget) {
  EXPECT_EQ(*ServiceTarget("127.0.0.1:50051"), "127.0.0.1:50051");
  EXPECT_EQ(*ServiceTarget("unix:/run/mailbox.sock"), "unix:/run/mailbox.sock");
  EXPECT_EQ(*ServiceTarget("mailbox.example:50051"), "mailbox.example:50051");
  EXPECT_EQ(*ServiceTarget("127.0.0.1:5001, 127.0.0.2:5002"), "ipv4:127.0.0.1:5001,127.0.0.2:5002");
  EXPECT_EQ(*ServiceTarget("[::1]:5001,[::1]:5002"), "ipv6:[::1]:5001,[::1]:5002");
  absl::StatusOr<std::string> names = ServiceTarget("a.example:1,b.example:2");
  EXPECT_EQ(names.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(names.status().message().find("DNS name"), std::string::npos);
  EXPECT_FALSE(ServiceTarget("127.0.0.1:1,[::1]:2").ok());
  EXPECT_FALSE(ServiceTarget("").ok());
}

TEST_F(GrpcMailboxStoreTest, UnaryCallResumesOnCallersThread) {
  Run(UnaryResumesOnCallerThread(Store(), service_));
}

// The gateway token goes with every call, and a rewritten file's new token with the
// calls after it.
awaitable<void> SendsGatewayToken(GrpcMailboxStore& store, TestService& service,
                                  std::string path) {
  CO_ASSERT_OK(co_await store.Status(Session{"t"}, v1::StatusRequest()));
  EXPECT_EQ(service.gateway_token_seen, std::string(40, 'a'));
  ::unlink(path.c_str());
  std::ofstream(path) << std::string(40, 'b') << "\n";
  ::chmod(path.c_str(), 0600);
  CO_ASSERT_OK(co_await store.Status(Session{"t"}, v1::StatusRequest()));
  EXPECT_EQ(service.gateway_token_seen, std::string(40, 'b'));
}

TEST_F(GrpcMailboxStoreTest, SendsTheGatewayToken) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/gateway.token";
  std::ofstream(path) << std::string(40, 'a') << "\n";
  ::chmod(path.c_str(), 0600);
  auto token = ReadLinkToken(path, true);
  ASSERT_TRUE(token.ok()) << token.status();
  LinkTokenFileOptions file_options;
  file_options.check_interval = std::chrono::milliseconds(0);
  GrpcMailboxStoreOptions options;
  options.gateway_token = std::make_shared<LinkTokenFile>(path, *token, file_options);
  Run(SendsGatewayToken(Store(std::move(options)), service_, path));
}

awaitable<void> SendsNoGatewayToken(GrpcMailboxStore& store, TestService& service) {
  CO_ASSERT_OK(co_await store.Status(Session{"t"}, v1::StatusRequest()));
  EXPECT_EQ(service.gateway_token_seen, "");
}

TEST_F(GrpcMailboxStoreTest, NoGatewayTokenWithoutAFile) {
  Run(SendsNoGatewayToken(Store(), service_));
}

awaitable<void> DeadlineExceeded(GrpcMailboxStore& store) {
  const auto start = std::chrono::steady_clock::now();
  auto reply = co_await store.ListMailboxes(Session{"t"}, v1::ListMailboxesRequest());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  CO_ASSERT_TRUE(!reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded) << reply.status();
  EXPECT_EQ(v1::DetailOf(reply.status()).code(), v1::UNAVAILABLE);
}

TEST_F(GrpcMailboxStoreTest, DeadlineExceededIsUnavailableDetail) {
  GrpcMailboxStoreOptions options;
  options.unary_deadline = std::chrono::milliseconds(200);
  Run(DeadlineExceeded(Store(std::move(options))));
}

awaitable<void> ErrorDetailRoundTrips(GrpcMailboxStore& store) {
  v1::OpenRequest request;
  request.set_name("missing");
  auto reply = co_await store.Open(Session{"t"}, request);
  CO_ASSERT_TRUE(!reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reply.status().message(), "no mailbox \"missing\"");
  const v1::ErrorDetail detail = v1::DetailOf(reply.status());
  EXPECT_EQ(detail.code(), v1::NONEXISTENT);
  EXPECT_EQ(detail.message(), "no mailbox \"missing\"");
}

TEST_F(GrpcMailboxStoreTest, ErrorDetailRoundTrips) { Run(ErrorDetailRoundTrips(Store())); }

awaitable<void> RetriesReadsOnly(GrpcMailboxStore& store, TestService& service) {
  v1::StatusRequest status;
  status.set_name("flaky");
  auto reply = co_await store.Status(Session{"t"}, status);
  CO_ASSERT_OK(reply);
  EXPECT_EQ(service.status_calls.load(), 2);

  auto created = co_await store.CreateMailbox(Session{"t"}, v1::CreateMailboxRequest());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service.create_calls.load(), 1);
}

TEST_F(GrpcMailboxStoreTest, RetriesIdempotentReadNotWrite) {
  Run(RetriesReadsOnly(Store(), service_));
}

// Cancelling the awaiting coroutine (here: losing an `||` race against a timer)
// cancels the RPC through the adapter's cancellation slot.
awaitable<void> CancelledByCoroutineCancellation(GrpcMailboxStore& store) {
  using namespace boost::asio::experimental::awaitable_operators;
  const auto start = std::chrono::steady_clock::now();
  auto result = co_await (store.ListMailboxes(Session{"t"}, v1::ListMailboxesRequest()) ||
                          Sleep(std::chrono::milliseconds(100)));
  EXPECT_EQ(result.index(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(GrpcMailboxStoreTest, CoroutineCancellationCancelsCall) {
  Run(CancelledByCoroutineCancellation(Store()));
}

// --- Streams -----------------------------------------------------------------

v1::FetchRequest FetchOf(uint32_t chunks) {
  v1::FetchRequest request;
  request.mutable_uids()->add_ranges()->set_first(chunks);
  return request;
}

awaitable<void> FetchChunkByChunk(GrpcMailboxStore& store, TestService& service,
                                  int max_ahead_allowed) {
  std::unique_ptr<FetchStream> stream = store.Fetch(Session{"t"}, FetchOf(200));
  int received = 0;
  int max_ahead = 0;
  for (;;) {
    auto item = co_await stream->Next();
    CO_ASSERT_OK(item);
    if (!item->has_value()) {
      break;
    }
    EXPECT_EQ((*item)->chunk().uid(), static_cast<uint32_t>(received));
    EXPECT_EQ((*item)->chunk().data().size(), kChunk);
    ++received;
    if (received % 50 == 0) {
      // A slow consumer: the server may only run ahead by what the transport's
      // flow-control window holds, not by the whole 50 MB.
      co_await Sleep(std::chrono::milliseconds(200));
      max_ahead = std::max(max_ahead, service.fetch_written.load() - received);
    }
  }
  EXPECT_EQ(received, 200);
  std::printf("fetch: server ran ahead of the consumer by at most %d chunks\n", max_ahead);
  EXPECT_LE(max_ahead, max_ahead_allowed);
}

// The default 1 MiB stream window: the service can run ahead of a slow reader by
// that much (4 chunks) plus what sits in socket buffers, not by the whole 50 MB.
TEST_F(GrpcMailboxStoreTest, FetchStreamsChunkByChunkWithBoundedBuffering) {
  Run(FetchChunkByChunk(Store(), service_, /*max_ahead_allowed=*/8));
}

TEST_F(GrpcMailboxStoreTest, FetchBufferingFollowsConfiguredWindow) {
  GrpcMailboxStoreOptions options;
  options.stream_window_bytes = 64 * 1024;
  Run(FetchChunkByChunk(Store(std::move(options)), service_, /*max_ahead_allowed=*/2));
}

awaitable<void> AppendFiftyMegabytes(GrpcMailboxStore& store, TestService& service) {
  constexpr uint64_t kTotal = 50ull << 20;
  std::unique_ptr<AppendStream> append = store.Append(Session{"t"});
  v1::AppendRequest item;
  item.set_mailbox("INBOX");
  CO_ASSERT_OK(co_await append->Write(item));
  item.mutable_message()->set_size(kTotal);
  CO_ASSERT_OK(co_await append->Write(item));
  const std::string chunk(kChunk, 'm');
  for (uint64_t sent = 0; sent < kTotal; sent += kChunk) {
    item.set_chunk(chunk);
    CO_ASSERT_OK(co_await append->Write(item));
  }
  auto reply = co_await append->Finish();
  CO_ASSERT_OK(reply);
  EXPECT_EQ(reply->uids_size(), 1);
  EXPECT_EQ(service.append_mailbox, "INBOX");
  EXPECT_EQ(service.append_bytes.load(), kTotal);
  EXPECT_EQ(service.append_chunks.load(), 200);
  EXPECT_EQ(service.append_max_chunk.load(), kChunk);
}

TEST_F(GrpcMailboxStoreTest, AppendStreamsFiftyMegabytesInChunks) {
  Run(AppendFiftyMegabytes(Store(), service_));
}

awaitable<void> AppendErrorSurfaces(GrpcMailboxStore& store) {
  std::unique_ptr<AppendStream> append = store.Append(Session{"t"});
  v1::AppendRequest item;
  item.set_mailbox("INBOX");
  CO_ASSERT_OK(co_await append->Write(item));
  item.mutable_message()->set_size(10);
  CO_ASSERT_OK(co_await append->Write(item));
  item.set_chunk("short");
  CO_ASSERT_OK(co_await append->Write(item));
  auto reply = co_await append->Finish();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v1::DetailOf(reply.status()).code(), v1::BAD_REQUEST);
}

TEST_F(GrpcMailboxStoreTest, AppendErrorCarriesDetail) { Run(AppendErrorSurfaces(Store())); }

awaitable<void> CancelMidStream(GrpcMailboxStore& store, TestService& service) {
  // Explicit Cancel, then Next reports CANCELLED.
  std::unique_ptr<FetchStream> stream = store.Fetch(Session{"t"}, FetchOf(0));
  for (int i = 0; i < 5; ++i) {
    CO_ASSERT_OK(co_await stream->Next());
  }
  stream->Cancel();
  auto after = co_await stream->Next();
  EXPECT_EQ(after.status().code(), absl::StatusCode::kCancelled) << after.status();

  // Dropping a stream mid-read cancels it; gRPC's late callbacks must not touch
  // freed memory (run under --config=asan).
  std::unique_ptr<FetchStream> dropped = store.Fetch(Session{"t"}, FetchOf(0));
  CO_ASSERT_OK(co_await dropped->Next());
  dropped.reset();

  for (int i = 0; i < 200 && !service.fetch_cancelled; ++i) {
    co_await Sleep(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(service.fetch_cancelled);

  // A read interrupted by coroutine cancellation.
  using namespace boost::asio::experimental::awaitable_operators;
  std::unique_ptr<FetchStream> raced = store.Fetch(Session{"t"}, FetchOf(0));
  CO_ASSERT_OK(co_await raced->Next());
  co_await Sleep(std::chrono::milliseconds(100));  // let the window fill
  for (int i = 0; i < 3; ++i) {
    auto result = co_await (raced->Next() || Sleep(std::chrono::milliseconds(0)));
    (void)result;
  }
  raced.reset();
}

TEST_F(GrpcMailboxStoreTest, CancellationMidStreamIsSafe) {
  Run(CancelMidStream(Store(), service_));
}

awaitable<void> FetchIdleTimeout(GrpcMailboxStore& store) {
  std::unique_ptr<FetchStream> stream = store.Fetch(Session{"t"}, FetchOf(kStallFetch));
  const auto start = std::chrono::steady_clock::now();
  auto first = co_await stream->Next();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(first.status().code(), absl::StatusCode::kDeadlineExceeded) << first.status();
  EXPECT_EQ(v1::DetailOf(first.status()).code(), v1::UNAVAILABLE);
}

TEST_F(GrpcMailboxStoreTest, StreamIdleTimeout) {
  GrpcMailboxStoreOptions options;
  options.stream_idle_timeout = std::chrono::milliseconds(200);
  Run(FetchIdleTimeout(Store(std::move(options))));
}

// --- Change feed -------------------------------------------------------------

awaitable<absl::StatusOr<v1::ChangeEvent>> NextWithin(ChangeFeed& feed,
                                                      std::chrono::milliseconds limit) {
  using namespace boost::asio::experimental::awaitable_operators;
  auto result = co_await (feed.Next() || Sleep(limit));
  if (result.index() == 1) {
    co_return absl::DeadlineExceededError("no change event in time");
  }
  co_return std::get<0>(std::move(result));
}

awaitable<void> ChangeFeedResumes(GrpcMailboxStore& store, TestService& service,
                                  std::function<void()> restart_server) {
  std::unique_ptr<ChangeFeed> feed =
      store.OpenChangeFeed(co_await boost::asio::this_coro::executor);
  feed->Subscribe(7, 1, 0, "tok");
  for (uint64_t modseq = 1; modseq <= 3; ++modseq) {
    auto event = co_await NextWithin(*feed, std::chrono::seconds(5));
    CO_ASSERT_OK(event);
    EXPECT_EQ(event->mailbox_id(), 7u);
    EXPECT_EQ(event->modseq(), modseq);
    EXPECT_TRUE(event->has_flags_changed());
  }
  auto marker = co_await NextWithin(*feed, std::chrono::seconds(5));
  CO_ASSERT_OK(marker);
  EXPECT_TRUE(marker->has_subscribed());

  restart_server();  // the stream breaks; the feed must reconnect by itself

  // The new server replays MODSEQ 3 (already delivered: dropped), then 4..6.
  for (uint64_t modseq = 4; modseq <= 6; ++modseq) {
    auto event = co_await NextWithin(*feed, std::chrono::seconds(10));
    CO_ASSERT_OK(event);
    EXPECT_EQ(event->modseq(), modseq);
  }
  marker = co_await NextWithin(*feed, std::chrono::seconds(5));
  CO_ASSERT_OK(marker);
  EXPECT_TRUE(marker->has_subscribed());
  const std::vector<uint64_t> resumes = service.ResumePoints();
  CO_ASSERT_TRUE(resumes.size() >= 2u);
  EXPECT_EQ(resumes[0], 0u);
  EXPECT_EQ(resumes.back(), 3u);

  feed->Subscribe(9, 1, 1, "tok");
  auto resync = co_await NextWithin(*feed, std::chrono::seconds(5));
  CO_ASSERT_OK(resync);
  EXPECT_EQ(resync->mailbox_id(), 9u);
  CO_ASSERT_TRUE(resync->has_resync());
  EXPECT_EQ(resync->resync().reason().code(), v1::RESYNC);

  feed->Close();
  auto closed = co_await feed->Next();
  EXPECT_EQ(closed.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(GrpcMailboxStoreTest, ChangeFeedDeliversInOrderAndResumesAfterRestart) {
  GrpcMailboxStore& store = Store();
  Run(ChangeFeedResumes(store, service_, [this] {
    const int port = port_;
    StopServer();
    StartServer(port);
  }));
}

TEST_F(GrpcMailboxStoreTest, CreateRejectsBadOptions) {
  GrpcMailboxStoreOptions options;
  options.channels = 0;
  EXPECT_EQ(GrpcMailboxStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.target = "";
  EXPECT_EQ(GrpcMailboxStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mailbox::client
