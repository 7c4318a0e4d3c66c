// MailboxStore over the mailbox service's gRPC API (mailbox.v1.Mailbox).
//
// * A small pool of channels (round robin, each with its own connections) carries
//   the calls. The target is "host:port", "unix:/path", a DNS name resolving to
//   several replicas, or a comma-separated list of numeric addresses of replicas;
//   each channel spreads its calls over every reachable replica (gRPC's
//   round_robin policy, which leaves out a replica it cannot connect to), so a
//   replica that dies costs an idempotent call one retry.
// * Every unary call has a deadline; streams have an overall deadline and an idle
//   timeout per read or write. The change feed, which lives as long as the worker,
//   has no deadline; it reconnects by itself.
// * Only idempotent reads (ListMailboxes, Status, Open, Search, and Fetch until its
//   first item arrived) are retried, on UNAVAILABLE, with capped exponential
//   backoff and jitter. Authenticate is not retried: a retry would count as a
//   second failed attempt in the service's throttling.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_interceptor.h"
#include "storage-client/link_token.h"
#include "storage-client/mailbox_store.h"

namespace mailbox::client {

struct RetryPolicy {
  int max_attempts = 3;  // including the first
  std::chrono::milliseconds initial_backoff{50};
  std::chrono::milliseconds max_backoff{1000};
  double multiplier = 2.0;
  double jitter = 0.2;  // each wait is scaled by a random factor in [1-j, 1+j]
};

// The gRPC target for `addresses`: one address as it is, a list of numeric
// "host:port" addresses ("127.0.0.1:5001,127.0.0.1:5002", or bracketed IPv6) as an
// ipv4: or ipv6: target. INVALID_ARGUMENT for a list of names (use one DNS name
// that resolves to every replica instead).
absl::StatusOr<std::string> ServiceTarget(const std::string& addresses);

struct GrpcMailboxStoreOptions {
  std::string target = "127.0.0.1:50051";  // see ServiceTarget
  // Null means insecure (plaintext; for loopback and unix sockets). For TLS with a
  // client certificate, see MakeChannelCredentials in channel_credentials.h.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  int channels = 2;

  std::chrono::milliseconds unary_deadline{10'000};
  // Authenticate waits longer: in a login storm (every client of a restarted replica
  // reconnecting) logins queue for the password hash, and many clients take a NO to
  // LOGIN, even with [UNAVAILABLE], as a wrong password and ask the user for it. The
  // service drops a login whose deadline passed before its hash started.
  std::chrono::milliseconds authenticate_deadline{60'000};
  // A stream (Fetch, Append, Revise) fails with DEADLINE_EXCEEDED when one read or
  // write waits longer than stream_idle_timeout, or the whole call lasts longer
  // than stream_deadline.
  std::chrono::milliseconds stream_idle_timeout{60'000};
  std::chrono::milliseconds stream_deadline{30 * 60'000};

  RetryPolicy retry;

  // Change feed reconnection: waits from feed_initial_backoff doubling up to
  // feed_max_backoff (with jitter) between attempts; reset once a stream delivered
  // an event.
  std::chrono::milliseconds feed_initial_backoff{100};
  std::chrono::milliseconds feed_max_backoff{10'000};

  // HTTP/2 flow-control window per stream, in bytes: how much of a fetch (or
  // append) gRPC may buffer beyond the message being read, so the memory bound of
  // a 50 MB fetch. 0 keeps gRPC's default, which grows the window with the
  // measured bandwidth-delay product (several MB per stream on a fast link).
  int stream_window_bytes = 1 << 20;

  // Sent with every call (e.g. a gateway id for the service's logs).
  std::vector<std::pair<std::string, std::string>> metadata;

  // The gateway token file (link_token.h; null: none): its current token is sent with
  // every call, so the service believes the client IPs this gateway reports.
  std::shared_ptr<LinkTokenFile> gateway_token;

  // Extra channel arguments (keepalive, reconnect backoff, message size...).
  grpc::ChannelArguments channel_args;

  // Interceptors every call passes through (e.g. metrics), made afresh for each
  // channel; unset: none.
  std::function<std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>()>
      interceptors;
};

class GrpcMailboxStore final : public MailboxStore {
 public:
  // Creates the channels (they connect lazily). Fails on invalid options.
  static absl::StatusOr<std::unique_ptr<GrpcMailboxStore>> Create(GrpcMailboxStoreOptions options);
  ~GrpcMailboxStore() override;

  boost::asio::awaitable<absl::StatusOr<v1::AuthenticateResponse>> Authenticate(
      v1::AuthenticateRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::ListMailboxesResponse>> ListMailboxes(
      Session session, v1::ListMailboxesRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::CreateMailboxResponse>> CreateMailbox(
      Session session, v1::CreateMailboxRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::DeleteMailboxResponse>> DeleteMailbox(
      Session session, v1::DeleteMailboxRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::RenameMailboxResponse>> RenameMailbox(
      Session session, v1::RenameMailboxRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::SetSubscriptionResponse>> SetSubscription(
      Session session, v1::SetSubscriptionRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::GetQuotaResponse>> GetQuota(
      Session session, v1::GetQuotaRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::GetMetadataResponse>> GetMetadata(
      Session session, v1::GetMetadataRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::SetMetadataResponse>> SetMetadata(
      Session session, v1::SetMetadataRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::StatusResponse>> Status(
      Session session, v1::StatusRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::OpenResponse>> Open(
      Session session, v1::OpenRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::ClaimRecentResponse>> ClaimRecent(
      Session session, v1::ClaimRecentRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::VanishedResponse>> Vanished(
      Session session, v1::VanishedRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::StoreResponse>> Store(
      Session session, v1::StoreRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::CopyResponse>> Copy(
      Session session, v1::CopyRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::MoveResponse>> Move(
      Session session, v1::MoveRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::ExpungeResponse>> Expunge(
      Session session, v1::ExpungeRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::SearchResponse>> Search(
      Session session, v1::SearchRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::SortResponse>> Sort(
      Session session, v1::SortRequest request) override;
  boost::asio::awaitable<absl::StatusOr<v1::ThreadResponse>> Thread(
      Session session, v1::ThreadRequest request) override;

  std::unique_ptr<FetchStream> Fetch(Session session, v1::FetchRequest request) override;
  std::unique_ptr<AppendStream> Append(Session session) override;
  std::unique_ptr<ReviseStream> Revise(Session session) override;
  std::unique_ptr<ChangeFeed> OpenChangeFeed(boost::asio::any_io_executor executor) override;

  // Whether some replica of the mailbox service can take calls now: a channel is
  // connected to a replica whose health service says SERVING (round_robin leaves
  // the others out). A channel not yet connected, or idle, is asked to connect and
  // given up to `wait` to do so. Blocks; for readiness probes, off the workers.
  bool Reachable(std::chrono::milliseconds wait);

  // Shared with stream and feed objects; defined in the .cc.
  struct Pool;

 private:
  explicit GrpcMailboxStore(std::shared_ptr<Pool> pool);

  std::shared_ptr<Pool> pool_;
};

}  // namespace mailbox::client
