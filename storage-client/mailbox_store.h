// The mailbox-store interface the gateway's command handlers depend on.
//
// One coroutine per RPC of mailbox.v1.Mailbox, with the mailbox.v1 messages as
// requests and replies, so handlers never see gRPC types. GrpcMailboxStore
// (grpc_mailbox_store.h) implements it over the mailbox service; FakeMailboxStore
// (fake_mailbox_store.h) is an in-memory stand-in for unit tests.
//
// Conventions:
// * Every call returns absl::Status errors built by mailbox::v1::MakeError
//   semantics: the ErrorDetail (v1::DetailOf) says which RFC 5530 code to answer.
//   A call that could not reach the service fails with UNAVAILABLE or
//   DEADLINE_EXCEEDED and detail code UNAVAILABLE.
// * A coroutine resumes on the executor of the coroutine that awaited it.
// * Arguments are taken by value (copied into the coroutine frame), so callers may
//   pass temporaries. The store must outlive every call and every stream or feed
//   object it returned.
// * Stream and feed objects are used from one coroutine at a time (one executor);
//   destroying one mid-call cancels the call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::client {

// An authenticated user's credential, as returned by Authenticate; sent with every
// call as "x-mailbox-session".
//
// Deliberately not an aggregate: g++ 12 destroys an aggregate temporary twice
// when it is brace-initialised in the argument list of a coroutine call inside a
// co_await (`co_await store.Open(Agg{token}, ...)` double-frees). A class with a
// constructor is not affected. Keep that in mind for any by-value coroutine
// parameter type.
class Session {
 public:
  Session() = default;
  explicit Session(std::string session_token) : token(std::move(session_token)) {}

  std::string token;
  // The user the token is for (AuthenticateResponse.principal.user_id), for
  // the change feed's mailbox-list subscriptions.
  uint64_t user_id = 0;
};

// The reading side of a server stream (Fetch).
template <typename Item>
class ItemStream {
 public:
  virtual ~ItemStream() = default;

  // The next item; nullopt after the last one (the call completed OK); an error if
  // the call failed. Items are read from the network a little ahead of the asking
  // (a few small items; a 256 KiB chunk stops it), so a large fetch holds about
  // one chunk here at a time.
  virtual boost::asio::awaitable<absl::StatusOr<std::optional<Item>>> Next() = 0;

  // Abandons the call; a later Next returns CANCELLED. Does not block.
  virtual void Cancel() = 0;
};

// The writing side of a client stream (Append, Revise): a 50 MB literal is
// forwarded chunk by chunk as it arrives from the IMAP client.
template <typename Item, typename Reply>
class UploadStream {
 public:
  virtual ~UploadStream() = default;

  // Sends one item; waits while more than a small bound (64 KiB over GrpcMailboxStore)
  // waits for the transport (flow control). An error means the call failed (e.g.
  // TOOBIG, TRYCREATE or the service went away) and carries the service's status;
  // the stream is then finished. A failure may show only in a later Write or in
  // Finish.
  virtual boost::asio::awaitable<absl::Status> Write(Item item) = 0;

  // Ends the upload and returns the service's reply. Nothing is committed unless
  // this returns OK (the service commits at the end of the stream).
  virtual boost::asio::awaitable<absl::StatusOr<Reply>> Finish() = 0;

  // Abandons the upload (nothing is committed). Does not block.
  virtual void Cancel() = 0;
};

using FetchStream = ItemStream<v1::FetchResponse>;
using AppendStream = UploadStream<v1::AppendRequest, v1::AppendResponse>;
using ReviseStream = UploadStream<v1::ReviseRequest, v1::ReviseResponse>;

// The change feed of one gateway worker: one stream multiplexing every mailbox the
// worker's sessions have selected (the worker routes events to its sessions).
//
// Guarantees to the consumer, per mailbox: events in MODSEQ order, none twice,
// across reconnects (the feed resubscribes from the last MODSEQ it delivered). A
// `resync` event means the service cannot replay from that point (or refused the
// subscription): the mailbox is then unsubscribed and the sessions must reopen it.
// `subscribed` events (replay complete) are passed on as they come, also after a
// resume.
//
// Threading: create, use and destroy on the executor given to OpenChangeFeed, which
// must be single-threaded (an io_context run by one thread, or a strand).
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;

  // Starts (or restarts) delivering changes of `mailbox_id` with MODSEQ greater
  // than `from_modseq`, checking `session_token` may read it. Returns at once; a
  // refusal arrives as a resync event.
  virtual void Subscribe(uint64_t mailbox_id, uint32_t uidvalidity, uint64_t from_modseq,
                         std::string session_token) = 0;

  // Stops delivering the mailbox's events, including any not yet taken by Next.
  virtual void Unsubscribe(uint64_t mailbox_id) = 0;

  // Starts delivering the changes of the mailbox list of `user_id` (the user of
  // `session_token`): MailboxListChanged events with mailbox_id 0 and user_id
  // set, live only (none is replayed: what was committed while the feed was not
  // subscribed, e.g. during a reconnect, is not seen). A `subscribed` event with
  // that user_id comes once the service delivers them; a refusal or an overflow
  // comes as a resync with that user_id, after which the list is unsubscribed.
  virtual void SubscribeList(uint64_t user_id, std::string session_token) = 0;
  // Stops delivering the list's events, including any not yet taken by Next.
  virtual void UnsubscribeList(uint64_t user_id) = 0;

  // The next event of any subscribed mailbox; waits as long as needed. CANCELLED
  // after Close. Only one coroutine may wait in Next at a time.
  virtual boost::asio::awaitable<absl::StatusOr<v1::ChangeEvent>> Next() = 0;

  // Ends the feed and wakes a waiting Next. Also done by the destructor.
  virtual void Close() = 0;
};

class MailboxStore {
 public:
  virtual ~MailboxStore() = default;

  // The only call without a session: returns the token for Session.
  virtual boost::asio::awaitable<absl::StatusOr<v1::AuthenticateResponse>> Authenticate(
      v1::AuthenticateRequest request) = 0;

  virtual boost::asio::awaitable<absl::StatusOr<v1::ListMailboxesResponse>> ListMailboxes(
      Session session, v1::ListMailboxesRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::CreateMailboxResponse>> CreateMailbox(
      Session session, v1::CreateMailboxRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::DeleteMailboxResponse>> DeleteMailbox(
      Session session, v1::DeleteMailboxRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::RenameMailboxResponse>> RenameMailbox(
      Session session, v1::RenameMailboxRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::SetSubscriptionResponse>> SetSubscription(
      Session session, v1::SetSubscriptionRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::StatusResponse>> Status(
      Session session, v1::StatusRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::GetQuotaResponse>> GetQuota(
      Session session, v1::GetQuotaRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::GetMetadataResponse>> GetMetadata(
      Session session, v1::GetMetadataRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::SetMetadataResponse>> SetMetadata(
      Session session, v1::SetMetadataRequest request) = 0;

  virtual boost::asio::awaitable<absl::StatusOr<v1::OpenResponse>> Open(
      Session session, v1::OpenRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::ClaimRecentResponse>> ClaimRecent(
      Session session, v1::ClaimRecentRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::VanishedResponse>> Vanished(
      Session session, v1::VanishedRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::StoreResponse>> Store(
      Session session, v1::StoreRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::CopyResponse>> Copy(
      Session session, v1::CopyRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::MoveResponse>> Move(
      Session session, v1::MoveRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::ExpungeResponse>> Expunge(
      Session session, v1::ExpungeRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::SearchResponse>> Search(
      Session session, v1::SearchRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::SortResponse>> Sort(
      Session session, v1::SortRequest request) = 0;
  virtual boost::asio::awaitable<absl::StatusOr<v1::ThreadResponse>> Thread(
      Session session, v1::ThreadRequest request) = 0;

  // Streams: the call starts at once; its errors surface from Next/Write/Finish.
  virtual std::unique_ptr<FetchStream> Fetch(Session session, v1::FetchRequest request) = 0;
  // The first item written must be the destination `mailbox`.
  virtual std::unique_ptr<AppendStream> Append(Session session) = 0;
  // The first item written must be the `header`.
  virtual std::unique_ptr<ReviseStream> Revise(Session session) = 0;

  // A new change-feed stream whose work runs on `executor` (see ChangeFeed).
  virtual std::unique_ptr<ChangeFeed> OpenChangeFeed(boost::asio::any_io_executor executor) = 0;
};

}  // namespace mailbox::client
