#include "mailbox-service/server/service.h"

#include <openssl/crypto.h>

#include <chrono>
#include <iostream>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "mailbox-service/server/link_trust.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

std::optional<std::string> Metadata(const grpc::ServerContext& context, const char* key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(key);
  if (it == metadata.end()) {
    return std::nullopt;
  }
  return std::string(it->second.data(), it->second.size());
}

bool SameSecret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Runs `call` for the authenticated caller, within the caller's limit of calls
// in flight, and converts the outcome to gRPC.
template <typename Response, typename Call>
grpc::Status Unary(MailboxService& service, const grpc::ServerContext& context,
                   Response* response, Call call) {
  auto admitted = service.Admit(context);
  if (!admitted.ok()) {
    return v1::ToGrpcStatus(admitted.status());
  }
  absl::StatusOr<Response> result = call(admitted->first);
  if (!result.ok()) {
    return v1::ToGrpcStatus(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

// As Unary, for store calls that return only a status.
template <typename Call>
grpc::Status UnaryNoReply(MailboxService& service, const grpc::ServerContext& context,
                          Call call) {
  auto admitted = service.Admit(context);
  if (!admitted.ok()) {
    return v1::ToGrpcStatus(admitted.status());
  }
  return v1::ToGrpcStatus(call(admitted->first));
}

class WriterSink final : public store::FetchSink {
 public:
  WriterSink(grpc::ServerWriter<v1::FetchResponse>* writer, StallWatch::Call* watched)
      : writer_(writer), watched_(watched) {}
  bool Send(const v1::FetchResponse& item) override {
    watched_->BeginWrite();
    const bool written = writer_->Write(item);
    watched_->EndWrite();
    return written;
  }

 private:
  grpc::ServerWriter<v1::FetchResponse>* writer_;
  StallWatch::Call* watched_;
};

absl::Status TooBig(uint64_t limit) {
  return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::TOOBIG,
                       absl::StrCat("message data exceeds the limit of ", limit, " octets"));
}

// Reads one message body of exactly `size` octets from chunk items into the
// spool, as its next message.
template <typename Request, typename ChunkOf>
absl::Status ReadBody(grpc::ServerReader<Request>* reader, uint64_t size, MessageSpool* spool,
                      ChunkOf chunk_of) {
  if (absl::Status begun = spool->Begin(size); !begun.ok()) {
    return begun;
  }
  Request item;
  uint64_t read = 0;
  while (read < size) {
    if (!reader->Read(&item)) {
      return v1::BadRequest(absl::StrCat("stream ended after ", read, " of ", size,
                                         " declared message octets"));
    }
    const std::string* chunk = chunk_of(item);
    if (chunk == nullptr) {
      return v1::BadRequest("expected message content chunks before the next item");
    }
    if (read + chunk->size() > size) {
      return v1::BadRequest(absl::StrCat("message content longer than its declared size of ",
                                         size, " octets"));
    }
    if (absl::Status added = spool->Add(*chunk); !added.ok()) {
      return added;
    }
    read += chunk->size();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CallLimiter::Slot> CallLimiter::Acquire(uint64_t user) {
  if (max_per_user_ <= 0) {
    return Slot();
  }
  absl::MutexLock lock(&mutex_);
  int& count = in_flight_[user];
  if (count >= max_per_user_) {
    return v1::MakeError(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                         absl::StrCat("this user already has ", max_per_user_,
                                      " requests in progress; wait for some to finish (close "
                                      "idle connections or read pending responses)"));
  }
  ++count;
  return Slot(this, user);
}

void CallLimiter::Release(uint64_t user) {
  absl::MutexLock lock(&mutex_);
  auto it = in_flight_.find(user);
  if (it != in_flight_.end() && --it->second <= 0) {
    in_flight_.erase(it);  // the map holds only users with calls in flight
  }
}

int CallLimiter::InFlight(uint64_t user) const {
  absl::MutexLock lock(&mutex_);
  auto it = in_flight_.find(user);
  return it == in_flight_.end() ? 0 : it->second;
}

MailboxService::MailboxService(store::Store* store, Authenticator* auth, ChangeHub* hub,
                               std::string admin_token, store::StoreLimits limits,
                               ServiceOptions options)
    : store_(store),
      auth_(auth),
      hub_(hub),
      admin_token_(std::move(admin_token)),
      limits_(limits),
      options_(options),
      calls_(options.max_calls_per_user),
      commit_gate_(options.commit_memory_octets),
      stall_watch_(options.fetch_stall_timeout) {}

MessageSpool MailboxService::NewSpool() const {
  return MessageSpool(options_.spool_dir, options_.spool_dir.empty()
                                              ? std::numeric_limits<uint64_t>::max()
                                              : options_.append_memory_octets);
}

absl::StatusOr<std::pair<uint64_t, CallLimiter::Slot>> MailboxService::Admit(
    const grpc::ServerContext& context) {
  absl::StatusOr<uint64_t> user = Caller(context);
  if (!user.ok()) {
    return user.status();
  }
  absl::StatusOr<CallLimiter::Slot> slot = calls_.Acquire(*user);
  if (!slot.ok()) {
    return slot.status();
  }
  return std::make_pair(*user, *std::move(slot));
}

bool MailboxService::IsAdmin(const grpc::ServerContext& context) const {
  auto token = Metadata(context, kAdminMetadata);
  return token.has_value() && SameSecret(*token, admin_token_);
}

absl::StatusOr<uint64_t> MailboxService::Caller(const grpc::ServerContext& context) const {
  if (auto session = Metadata(context, kSessionMetadata); session.has_value()) {
    return auth_->CheckSessionToken(*session);
  }
  if (Metadata(context, kAdminMetadata).has_value()) {
    if (!IsAdmin(context)) {
      return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                           "the admin token is wrong");
    }
    auto act_as = Metadata(context, kActAsMetadata);
    if (!act_as.has_value()) {
      return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST,
                           "an admin call on a mailbox needs x-mailbox-act-as: <user>");
    }
    auto user = store_->FindUser(*act_as);
    if (!user.ok()) {
      return v1::MakeError(absl::StatusCode::kNotFound, v1::NONEXISTENT,
                           absl::StrCat("no such user: ", *act_as));
    }
    return user->id;
  }
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "no credential: authenticate first and send x-mailbox-session");
}

grpc::Status MailboxService::Authenticate(grpc::ServerContext* context,
                                          const v1::AuthenticateRequest* request,
                                          v1::AuthenticateResponse* response) {
  // The client IP counts for throttling only from a caller the operator vouched for
  // (link_trust.h); anyone else is throttled by its own address.
  const bool token_matches =
      options_.gateway_token != nullptr &&
      GatewayTokenMatches(Metadata(*context, client::kGatewayTokenMetadata),
                          options_.gateway_token->Current());
  v1::AuthenticateRequest checked = *request;
  checked.set_client_ip(ThrottleClientIp(context->auth_context().get(), context->peer(),
                                         request->client_ip(), token_matches));
  // A gateway set up without the token would throttle all its users as one address;
  // say so once, where the operator looks.
  if (checked.client_ip() != request->client_ip() && !request->client_ip().empty() &&
      !ignored_client_ip_logged_.exchange(true)) {
    std::cerr << "mailbox-service: ignoring the client IP reported by " << context->peer()
              << " (no valid gateway token"
              << (options_.gateway_token != nullptr
                      ? absl::StrCat(" from ", options_.gateway_token->path())
                      : std::string())
              << ", no verified client certificate): its logins are throttled by its own "
                 "address. Give the gateway --store-token-file. Logged once."
              << std::endl;
  }
  // The caller's deadline (the gateway sets one on every call): a login still queued
  // for the password hash when it passes is given up, not hashed for nobody.
  auto result = auth_->Authenticate(checked, absl::FromChrono(context->deadline()));
  if (!result.ok()) {
    return v1::ToGrpcStatus(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status MailboxService::ListMailboxes(grpc::ServerContext* context,
                                           const v1::ListMailboxesRequest* request,
                                           v1::ListMailboxesResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->ListMailboxes(user, *request); });
}

grpc::Status MailboxService::CreateMailbox(grpc::ServerContext* context,
                                           const v1::CreateMailboxRequest* request,
                                           v1::CreateMailboxResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->CreateMailbox(user, *request); });
}

grpc::Status MailboxService::DeleteMailbox(grpc::ServerContext* context,
                                           const v1::DeleteMailboxRequest* request,
                                           v1::DeleteMailboxResponse*) {
  return UnaryNoReply(*this, *context,
                      [&](uint64_t user) { return store_->DeleteMailbox(user, *request); });
}

grpc::Status MailboxService::RenameMailbox(grpc::ServerContext* context,
                                           const v1::RenameMailboxRequest* request,
                                           v1::RenameMailboxResponse*) {
  return UnaryNoReply(*this, *context,
                      [&](uint64_t user) { return store_->RenameMailbox(user, *request); });
}

grpc::Status MailboxService::SetSubscription(grpc::ServerContext* context,
                                             const v1::SetSubscriptionRequest* request,
                                             v1::SetSubscriptionResponse*) {
  return UnaryNoReply(*this, *context,
                      [&](uint64_t user) { return store_->SetSubscription(user, *request); });
}

grpc::Status MailboxService::Status(grpc::ServerContext* context,
                                    const v1::StatusRequest* request,
                                    v1::StatusResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->Status(user, *request); });
}

grpc::Status MailboxService::Open(grpc::ServerContext* context, const v1::OpenRequest* request,
                                  v1::OpenResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->Open(user, *request); });
}

grpc::Status MailboxService::Fetch(grpc::ServerContext* context, const v1::FetchRequest* request,
                                   grpc::ServerWriter<v1::FetchResponse>* writer) {
  return UnaryNoReply(*this, *context, [&](uint64_t user) {
    StallWatch::Call watched(&stall_watch_, context);
    WriterSink sink(writer, &watched);
    return store_->Fetch(user, *request, sink);
  });
}

grpc::Status MailboxService::Store(grpc::ServerContext* context,
                                   const v1::StoreRequest* request,
                                   v1::StoreResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->StoreFlags(user, *request); });
}

grpc::Status MailboxService::Copy(grpc::ServerContext* context, const v1::CopyRequest* request,
                                  v1::CopyResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->Copy(user, *request); });
}

grpc::Status MailboxService::Move(grpc::ServerContext* context, const v1::MoveRequest* request,
                                  v1::MoveResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->Move(user, *request); });
}

grpc::Status MailboxService::Expunge(grpc::ServerContext* context,
                                     const v1::ExpungeRequest* request,
                                     v1::ExpungeResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) { return store_->Expunge(user, *request); });
}

grpc::Status MailboxService::Append(grpc::ServerContext* context,
                                    grpc::ServerReader<v1::AppendRequest>* reader,
                                    v1::AppendResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) -> absl::StatusOr<v1::AppendResponse> {
                 v1::AppendRequest item;
                 if (!reader->Read(&item) || !item.has_mailbox()) {
                   return v1::BadRequest("an Append stream starts with the mailbox name");
                 }
                 const std::string mailbox = item.mailbox();
                 std::vector<store::NewMessage> messages;
                 MessageSpool spool = NewSpool();
                 uint64_t total = 0;
                 while (reader->Read(&item)) {
                   if (!item.has_message()) {
                     return v1::BadRequest("expected the start of a message (AppendMessage)");
                   }
                   const v1::AppendMessage& start = item.message();
                   if (start.size() > limits_.max_message_octets) {
                     return TooBig(limits_.max_message_octets);
                   }
                   total += start.size();
                   if (total > options_.max_append_call_octets) {
                     return TooBig(options_.max_append_call_octets);
                   }
                   store::NewMessage message;
                   message.flags.assign(start.flags().begin(), start.flags().end());
                   message.has_internal_date = start.has_internal_date();
                   message.internal_date_unix = start.internal_date_unix();
                   message.internal_date_tz_minutes = start.internal_date_tz_minutes();
                   absl::Status read = ReadBody(reader, start.size(), &spool,
                                                [](const v1::AppendRequest& r) {
                                                  return r.has_chunk() ? &r.chunk() : nullptr;
                                                });
                   if (!read.ok()) {
                     return read;
                   }
                   messages.push_back(std::move(message));
                 }
                 if (context->IsCancelled()) {
                   return v1::MakeError(absl::StatusCode::kCancelled, v1::CANNOT,
                                        "append cancelled by the client; nothing was stored");
                 }
                 if (messages.empty()) {
                   return v1::BadRequest("an Append stream must carry at least one message");
                 }
                 // Bodies in the spool file stay there (the store reads them in
                 // pieces); those in memory are committed a bounded amount at a
                 // time over all calls.
                 absl::StatusOr<CommitGate::Hold> hold = commit_gate_.Acquire(
                     spool.memory_octets(), absl::FromChrono(context->deadline()));
                 if (!hold.ok()) {
                   return hold.status();
                 }
                 for (size_t i = 0; i < messages.size(); ++i) {
                   spool.Lend(i, &messages[i]);
                 }
                 return store_->Append(user, mailbox, std::move(messages));
               });
}

grpc::Status MailboxService::Search(grpc::ServerContext* context,
                                    const v1::SearchRequest* request,
                                    v1::SearchResponse* response) {
  return Unary(*this, *context, response, [&](uint64_t user) {
    // The search stops when the caller cancels or its deadline passes (the gateway
    // gives up after its unary deadline), and when it has scanned its budget.
    store::WorkBudget budget(limits_.max_search_scan_octets,
                             absl::FromChrono(context->deadline()),
                             [context] { return context->IsCancelled(); });
    return store_->Search(user, *request, budget);
  });
}

grpc::Status MailboxService::Revise(grpc::ServerContext* context,
                                    grpc::ServerReader<v1::ReviseRequest>* reader,
                                    v1::ReviseResponse* response) {
  return Unary(*this, *context, response,
               [&](uint64_t user) -> absl::StatusOr<v1::ReviseResponse> {
                 v1::ReviseRequest item;
                 if (!reader->Read(&item) || !item.has_header()) {
                   return v1::BadRequest("a Revise stream starts with a ReviseHeader");
                 }
                 const v1::ReviseHeader header = item.header();
                 if (header.size() > limits_.max_message_octets) {
                   return TooBig(limits_.max_message_octets);
                 }
                 MessageSpool spool = NewSpool();
                 absl::Status read = ReadBody(reader, header.size(), &spool,
                                              [](const v1::ReviseRequest& r) {
                                                return r.has_chunk() ? &r.chunk() : nullptr;
                                              });
                 if (!read.ok()) {
                   return read;
                 }
                 if (reader->Read(&item)) {
                   return v1::BadRequest("data after the revised message's declared size");
                 }
                 absl::StatusOr<CommitGate::Hold> hold = commit_gate_.Acquire(
                     spool.total_octets(), absl::FromChrono(context->deadline()));
                 if (!hold.ok()) {
                   return hold.status();
                 }
                 std::string content;
                 if (absl::Status taken = spool.Take(0, &content); !taken.ok()) {
                   return taken;
                 }
                 return store_->Revise(user, header, std::move(content));
               });
}

grpc::Status MailboxService::Changes(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ChangeEvent, v1::ChangeFeedRequest>* stream) {
  FeedQueue queue;
  hub_->Add(0, &queue);  // registers the queue for CloseAll; mailbox 0 never exists
  // One writer thread drains the queue while this thread reads requests: gRPC's
  // sync API allows one concurrent reader and one writer per stream.
  std::thread writer([&] {
    while (auto event = queue.Pop()) {
      if (!stream->Write(*event)) {
        break;
      }
    }
    if (shutting_down_.load()) {
      context->TryCancel();  // unblocks the Read below so the server can drain
    }
  });
  const bool admin = IsAdmin(*context);
  v1::ChangeFeedRequest request;
  while (stream->Read(&request)) {
    if (request.has_subscribe()) {
      const v1::FeedSubscribe& subscribe = request.subscribe();
      int64_t expires_unix = 0;
      absl::StatusOr<uint64_t> user =
          !subscribe.session_token().empty()
              ? auth_->CheckSessionToken(subscribe.session_token(), &expires_unix)
              : (admin ? Caller(*context) : absl::StatusOr<uint64_t>(v1::MakeError(
                                                absl::StatusCode::kUnauthenticated,
                                                v1::AUTHENTICATIONFAILED,
                                                "subscribe needs a session token")));
      if (!user.ok()) {
        queue.Fail(subscribe.mailbox_id(), v1::DetailOf(user.status()));
        continue;
      }
      // The subscription lasts as long as the token it was made with (a session
      // in IDLE sends nothing else the service could refuse); an admin's has none.
      const auto expires =
          subscribe.session_token().empty()
              ? std::chrono::system_clock::time_point::max()
              : std::chrono::system_clock::time_point(std::chrono::seconds(expires_unix + 1));
      queue.BeginReplay(subscribe.mailbox_id(), subscribe.from_modseq(), expires);
      hub_->Add(subscribe.mailbox_id(), &queue);
      std::vector<v1::ChangeEvent> replay;
      absl::Status read = store_->ReadChanges(*user, subscribe.mailbox_id(),
                                              subscribe.uidvalidity(), subscribe.from_modseq(),
                                              &replay);
      if (!read.ok()) {
        hub_->Remove(subscribe.mailbox_id(), &queue);
        v1::ErrorDetail detail = v1::DetailOf(read);
        if (detail.code() == v1::ERROR_CODE_UNSPECIFIED) {
          detail.set_code(v1::RESYNC);
          detail.set_message(std::string(read.message()));
        }
        queue.Fail(subscribe.mailbox_id(), detail);
        continue;
      }
      queue.FinishReplay(subscribe.mailbox_id(), replay);
    } else if (request.has_unsubscribe()) {
      hub_->Remove(request.unsubscribe().mailbox_id(), &queue);
      queue.Forget(request.unsubscribe().mailbox_id());
    }
  }
  hub_->RemoveAll(&queue);
  queue.Close();
  writer.join();
  return grpc::Status::OK;
}

void MailboxService::BeginShutdown() {
  shutting_down_.store(true);
  hub_->CloseAll();
}

AdminService::AdminService(store::Store* store, const MailboxService* mailbox,
                           PasswordHashOptions hash)
    : store_(store), mailbox_(mailbox), hash_(hash) {}

grpc::Status AdminService::RequireAdmin(const grpc::ServerContext& context) const {
  if (!mailbox_->IsAdmin(context)) {
    return v1::ToGrpcStatus(v1::MakeError(absl::StatusCode::kPermissionDenied, v1::NOPERM,
                                          "admin calls need the service's admin token"));
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateUser(grpc::ServerContext* context,
                                      const v1::CreateUserRequest* request,
                                      v1::CreateUserResponse* response) {
  if (auto denied = RequireAdmin(*context); !denied.ok()) {
    return denied;
  }
  if (request->password().empty()) {
    return v1::ToGrpcStatus(v1::BadRequest("a user needs a non-empty password"));
  }
  auto hash = HashPassword(request->password(), hash_);
  if (!hash.ok()) {
    return v1::ToGrpcStatus(hash.status());
  }
  auto id = store_->CreateUser(request->username(), *hash);
  if (!id.ok()) {
    return v1::ToGrpcStatus(id.status());
  }
  response->set_user_id(*id);
  return grpc::Status::OK;
}

grpc::Status AdminService::DeleteUser(grpc::ServerContext* context,
                                      const v1::DeleteUserRequest* request,
                                      v1::DeleteUserResponse*) {
  if (auto denied = RequireAdmin(*context); !denied.ok()) {
    return denied;
  }
  return v1::ToGrpcStatus(store_->DeleteUser(request->username()));
}

grpc::Status AdminService::SetPassword(grpc::ServerContext* context,
                                       const v1::SetPasswordRequest* request,
                                       v1::SetPasswordResponse*) {
  if (auto denied = RequireAdmin(*context); !denied.ok()) {
    return denied;
  }
  if (request->password().empty()) {
    return v1::ToGrpcStatus(v1::BadRequest("a user needs a non-empty password"));
  }
  auto hash = HashPassword(request->password(), hash_);
  if (!hash.ok()) {
    return v1::ToGrpcStatus(hash.status());
  }
  return v1::ToGrpcStatus(store_->SetPasswordHash(request->username(), *hash));
}

grpc::Status AdminService::ListUsers(grpc::ServerContext* context, const v1::ListUsersRequest*,
                                     v1::ListUsersResponse* response) {
  if (auto denied = RequireAdmin(*context); !denied.ok()) {
    return denied;
  }
  auto users = store_->ListUsers();
  if (!users.ok()) {
    return v1::ToGrpcStatus(users.status());
  }
  for (const auto& user : *users) {
    auto* principal = response->add_users();
    principal->set_user_id(user.id);
    principal->set_username(user.username);
  }
  return grpc::Status::OK;
}

}  // namespace mailbox::server
