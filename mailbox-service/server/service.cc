#include "mailbox-service/server/service.h"
#include "mailbox-service/server/service_metrics.h"

#include <malloc.h>
#include <openssl/crypto.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "common/status_macros.h"
#include "mailbox-service/server/link_trust.h"
#include "mailbox-service/store/sort.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

// A THREAD over at least this many messages returns its freed memory to the
// system when it ends (see Thread).
constexpr size_t kTrimAfterThreadedMessages = 10000;

std::optional<std::string> Metadata(const grpc::ServerContextBase& context, const char* key) {
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
grpc::Status Unary(MailboxService& service, const grpc::ServerContextBase& context,
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
grpc::Status UnaryNoReply(MailboxService& service, const grpc::ServerContextBase& context,
                          Call call) {
  auto admitted = service.Admit(context);
  if (!admitted.ok()) {
    return v1::ToGrpcStatus(admitted.status());
  }
  return v1::ToGrpcStatus(call(admitted->first));
}

absl::Status TooBig(uint64_t limit) {
  return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::TOOBIG,
                       absl::StrCat("message data exceeds the limit of ", limit, " octets"));
}

// The answer to a call the pool had no room for.
grpc::Status Busy() {
  return v1::ToGrpcStatus(v1::MakeError(
      absl::StatusCode::kResourceExhausted, v1::UNAVAILABLE,
      "the mailbox service is busy with other requests; try again"));
}

// The answer to a call whose client went away before its work started.
grpc::Status Cancelled() {
  return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
}

// The body of an admin call about one user named in the request: finds the user,
// runs `call(user_id)` on the store, and answers with what it returns.
template <typename Response, typename Call>
grpc::Status AnswerForUser(store::Store& store, const std::string& username, Response* response,
                           Call call) {
  auto user = store.FindUser(username);
  if (!user.ok()) {
    return v1::ToGrpcStatus(user.status());
  }
  auto result = call(user->id);
  if (!result.ok()) {
    return v1::ToGrpcStatus(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
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
      stall_watch_(options.fetch_stall_timeout),
      pool_(options.workers, static_cast<size_t>(options.work_queue)) {}

MessageSpool MailboxService::NewSpool() const {
  return MessageSpool(options_.spool_dir, options_.spool_dir.empty()
                                              ? std::numeric_limits<uint64_t>::max()
                                              : options_.append_memory_octets);
}

absl::StatusOr<std::pair<uint64_t, CallLimiter::Slot>> MailboxService::Admit(
    const grpc::ServerContextBase& context) {
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

bool MailboxService::IsAdmin(const grpc::ServerContextBase& context) const {
  auto token = Metadata(context, kAdminMetadata);
  return token.has_value() && SameSecret(*token, admin_token_);
}

absl::StatusOr<uint64_t> MailboxService::Caller(const grpc::ServerContextBase& context) const {
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

grpc::ServerUnaryReactor* MailboxService::Offload(grpc::CallbackServerContext* context,
                                                  absl::AnyInvocable<grpc::Status() &&> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const bool queued = pool_.TrySubmit([context, reactor, work = std::move(work)]() mutable {
    // The request, response and context stay valid until Finish.
    reactor->Finish(context->IsCancelled() ? Cancelled() : std::move(work)());
  });
  if (!queued) {
    reactor->Finish(Busy());
  }
  return reactor;
}

template <typename Response, typename Call>
grpc::ServerUnaryReactor* MailboxService::OffloadCall(grpc::CallbackServerContext* context,
                                                      Response* response, Call call) {
  return Offload(context, [this, context, response, call = std::move(call)] {
    if constexpr (std::is_same_v<std::invoke_result_t<Call, uint64_t>, absl::Status>) {
      return UnaryNoReply(*this, *context, call);
    } else {
      return Unary(*this, *context, response, call);
    }
  });
}

grpc::ServerUnaryReactor* MailboxService::Authenticate(grpc::CallbackServerContext* context,
                                                       const v1::AuthenticateRequest* request,
                                                       v1::AuthenticateResponse* response) {
  return Offload(context, [this, context, request, response]() -> grpc::Status {
    // The client IP counts for throttling only from a caller the operator vouched
    // for (link_trust.h); anyone else is throttled by its own address.
    const bool token_matches =
        options_.gateway_token != nullptr &&
        GatewayTokenMatches(Metadata(*context, client::kGatewayTokenMetadata),
                            options_.gateway_token->Current());
    v1::AuthenticateRequest checked = *request;
    checked.set_client_ip(ThrottleClientIp(context->auth_context().get(), context->peer(),
                                           request->client_ip(), token_matches));
    // A gateway set up without the token would throttle all its users as one
    // address; say so once, where the operator looks.
    if (checked.client_ip() != request->client_ip() && !request->client_ip().empty() &&
        !ignored_client_ip_logged_.exchange(true)) {
      mailbox::log::Warning(
          mailbox::log::event::kWarning,
          {{"message",
            absl::StrCat("ignoring the client IP reported by ", context->peer(),
                         " (no valid gateway token",
                         options_.gateway_token != nullptr
                             ? absl::StrCat(" from ", options_.gateway_token->path())
                             : std::string(),
                         ", no verified client certificate): its logins are throttled by its "
                         "own address. Give the gateway --store-token-file. Logged once.")}});
    }
    // The caller's deadline (the gateway sets one on every call): a login still
    // queued for the password hash when it passes is given up, not hashed for nobody.
    auto result = auth_->Authenticate(checked, absl::FromChrono(context->deadline()));
    GlobalServiceMetrics().Login(request->mechanism(), result.status(),
                                 result.ok() && !result->session_token().empty());
    if (!result.ok()) {
      return v1::ToGrpcStatus(result.status());
    }
    *response = *std::move(result);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* MailboxService::ListMailboxes(grpc::CallbackServerContext* context,
                                                        const v1::ListMailboxesRequest* request,
                                                        v1::ListMailboxesResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->ListMailboxes(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::CreateMailbox(grpc::CallbackServerContext* context,
                                                        const v1::CreateMailboxRequest* request,
                                                        v1::CreateMailboxResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->CreateMailbox(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::DeleteMailbox(grpc::CallbackServerContext* context,
                                                        const v1::DeleteMailboxRequest* request,
                                                        v1::DeleteMailboxResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->DeleteMailbox(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::RenameMailbox(grpc::CallbackServerContext* context,
                                                        const v1::RenameMailboxRequest* request,
                                                        v1::RenameMailboxResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->RenameMailbox(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::SetSubscription(
    grpc::CallbackServerContext* context, const v1::SetSubscriptionRequest* request,
    v1::SetSubscriptionResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->SetSubscription(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::Status(grpc::CallbackServerContext* context,
                                                 const v1::StatusRequest* request,
                                                 v1::StatusResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Status(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::GetQuota(grpc::CallbackServerContext* context,
                                                   const v1::GetQuotaRequest* request,
                                                   v1::GetQuotaResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->GetQuota(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::GetMetadata(grpc::CallbackServerContext* context,
                                                      const v1::GetMetadataRequest* request,
                                                      v1::GetMetadataResponse* response) {
  return OffloadCall(context, response, [this, request](uint64_t user) {
    return store_->GetMetadata(user, *request);
  });
}

grpc::ServerUnaryReactor* MailboxService::SetMetadata(grpc::CallbackServerContext* context,
                                                      const v1::SetMetadataRequest* request,
                                                      v1::SetMetadataResponse* response) {
  return OffloadCall(context, response, [this, request](uint64_t user) {
    return store_->SetMetadata(user, *request);
  });
}

grpc::ServerUnaryReactor* MailboxService::Open(grpc::CallbackServerContext* context,
                                               const v1::OpenRequest* request,
                                               v1::OpenResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Open(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::ClaimRecent(grpc::CallbackServerContext* context,
                                                      const v1::ClaimRecentRequest* request,
                                                      v1::ClaimRecentResponse* response) {
  return OffloadCall(context, response, [this, request](uint64_t user) {
    return store_->ClaimRecent(user, *request);
  });
}

grpc::ServerUnaryReactor* MailboxService::Vanished(grpc::CallbackServerContext* context,
                                                   const v1::VanishedRequest* request,
                                                   v1::VanishedResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Vanished(user, *request); });
}

// A Fetch: the store runs on a pool thread and hands each response to Send, which
// passes a copy to gRPC and returns, so the store reads the next message while
// gRPC sends this one; the callback API allows one write in flight, so Send first
// waits for the previous write. A reader that stops reading thus holds one pool
// thread, until the stall watch or the deadline cancels the call and the write
// fails.
class MailboxService::FetchCall final : public grpc::ServerWriteReactor<v1::FetchResponse>,
                                        public store::FetchSink {
 public:
  FetchCall(MailboxService* service, grpc::CallbackServerContext* context,
            const v1::FetchRequest* request)
      : service_(service), context_(context), request_(request) {
    if (!service_->pool_.TrySubmit([this] { Run(); })) {
      Finish(Busy());
    }
  }

  bool Send(const v1::FetchResponse& item) override {
    if (!AwaitWrite()) {
      return false;
    }
    in_flight_ = item;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      write_done_ = false;
    }
    watched_->BeginWrite();
    StartWrite(&in_flight_);
    return true;
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      write_done_ = true;
      write_ok_ = ok;
    }
    written_.notify_one();
  }

  void OnDone() override { delete this; }

 private:
  void Run() {
    grpc::Status status = Cancelled();
    if (!context_->IsCancelled()) {
      status = UnaryNoReply(*service_, *context_, [&](uint64_t user) {
        StallWatch::Call watched(&service_->stall_watch_, context_);
        watched_ = &watched;
        absl::Status fetched = service_->store_->Fetch(user, *request_, *this);
        if (!AwaitWrite() && fetched.ok()) {
          fetched = v1::MakeError(absl::StatusCode::kCancelled, v1::CANNOT,
                                  "the client stopped reading the fetch");
        }
        watched_ = nullptr;
        return fetched;
      });
    }
    // The last use of this object: OnDone may delete it as soon as Finish is called.
    Finish(status);
  }

  // Waits for the write in flight, if any; false if it failed (the call is over).
  bool AwaitWrite() {
    bool ok = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      written_.wait(lock, [this] { return write_done_; });
      ok = write_ok_;
    }
    watched_->EndWrite();
    return ok;
  }

  MailboxService* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::FetchRequest* const request_;
  StallWatch::Call* watched_ = nullptr;
  v1::FetchResponse in_flight_;  // the response being written
  std::mutex mutex_;
  std::condition_variable written_;
  bool write_done_ = true;  // guarded by mutex_
  bool write_ok_ = true;    // guarded by mutex_
};

grpc::ServerWriteReactor<v1::FetchResponse>* MailboxService::Fetch(
    grpc::CallbackServerContext* context, const v1::FetchRequest* request) {
  return new FetchCall(this, context, request);
}

grpc::ServerUnaryReactor* MailboxService::Store(grpc::CallbackServerContext* context,
                                                const v1::StoreRequest* request,
                                                v1::StoreResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->StoreFlags(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::Copy(grpc::CallbackServerContext* context,
                                               const v1::CopyRequest* request,
                                               v1::CopyResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Copy(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::Move(grpc::CallbackServerContext* context,
                                               const v1::MoveRequest* request,
                                               v1::MoveResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Move(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::Expunge(grpc::CallbackServerContext* context,
                                                  const v1::ExpungeRequest* request,
                                                  v1::ExpungeResponse* response) {
  return OffloadCall(context, response,
                     [this, request](uint64_t user) { return store_->Expunge(user, *request); });
}

grpc::ServerUnaryReactor* MailboxService::Search(grpc::CallbackServerContext* context,
                                                 const v1::SearchRequest* request,
                                                 v1::SearchResponse* response) {
  return OffloadCall(context, response, [this, context, request](uint64_t user) {
    // The search stops when the caller cancels or its deadline passes (the gateway
    // gives up after its unary deadline), and when it has scanned its budget.
    store::WorkBudget budget(limits_.max_search_scan_octets,
                             absl::FromChrono(context->deadline()),
                             [context] { return context->IsCancelled(); });
    return store_->Search(user, *request, budget);
  });
}

grpc::ServerUnaryReactor* MailboxService::Sort(grpc::CallbackServerContext* context,
                                               const v1::SortRequest* request,
                                               v1::SortResponse* response) {
  return OffloadCall(context, response,
                     [this, context, request](uint64_t user) -> absl::StatusOr<v1::SortResponse> {
    RETURN_IF_ERROR(store::ValidateSortCriteria(request->criteria()));
    store::WorkBudget budget(limits_.max_search_scan_octets,
                             absl::FromChrono(context->deadline()),
                             [context] { return context->IsCancelled(); });
    ASSIGN_OR_RETURN(v1::SearchResponse found, store_->Search(user, request->search(), budget));
    ASSIGN_OR_RETURN(std::vector<uint32_t> uids,
                     store_->SortedUids(user, request->search().mailbox_id(),
                                        request->search().uidvalidity(), found.uids(),
                                        request->criteria()));
    v1::SortResponse sorted;
    sorted.mutable_uids()->Add(uids.begin(), uids.end());
    sorted.set_highest_modseq(found.highest_modseq());
    return sorted;
  });
}

grpc::ServerUnaryReactor* MailboxService::Thread(grpc::CallbackServerContext* context,
                                                 const v1::ThreadRequest* request,
                                                 v1::ThreadResponse* response) {
  return OffloadCall(context, response,
                     [this, context, request](uint64_t user) -> absl::StatusOr<v1::ThreadResponse> {
    RETURN_IF_ERROR(store::ValidateThreadAlgorithm(request->algorithm()));
    store::WorkBudget budget(limits_.max_search_scan_octets,
                             absl::FromChrono(context->deadline()),
                             [context] { return context->IsCancelled(); });
    ASSIGN_OR_RETURN(v1::SearchResponse found, store_->Search(user, request->search(), budget));
    v1::ThreadResponse threads;
    size_t loaded = 0;
    {
      ASSIGN_OR_RETURN(std::vector<store::SortableMessage> messages,
                       store_->SortableMessages(user, request->search().mailbox_id(),
                                                request->search().uidvalidity(), found.uids()));
      loaded = messages.size();
      for (v1::ThreadNode& node : store::ThreadMessages(messages, request->algorithm())) {
        *threads.add_nodes() = std::move(node);
      }
    }
    // Threading a large mailbox holds every message's keys at once, tens of MiB
    // for 100,000 messages, freed into this pool thread's malloc arena, where
    // glibc would keep them: each pool thread would hold its own peak. Give them
    // back to the system now; the trim costs far less than the threading.
    if (loaded >= kTrimAfterThreadedMessages) {
      ::malloc_trim(0);
    }
    return threads;
  });
}

// A client stream of message bodies (Append, Revise). The caller is admitted on a
// pool thread (checking a session token reads the store); the items are then read
// on gRPC's threads, which only parse them and put the bodies into the spool; at
// the end of the stream the commit runs on a pool thread again.
template <typename Request, typename Response>
class MailboxService::UploadCall : public grpc::ServerReadReactor<Request> {
 public:
  UploadCall(MailboxService* service, grpc::CallbackServerContext* context, Response* response)
      : service_(service), context_(context), response_(response), spool_(service->NewSpool()) {}

  // Starts the call (not in the constructor: the subclass must be complete).
  void Start() {
    if (!service_->pool_.TrySubmit([this] { Admit(); })) {
      this->Finish(Busy());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The end of the stream, or the call was cancelled.
      if (absl::Status ended = End(); !ended.ok()) {
        this->Finish(v1::ToGrpcStatus(ended));
        return;
      }
      if (context_->IsCancelled()) {
        this->Finish(v1::ToGrpcStatus(
            v1::MakeError(absl::StatusCode::kCancelled, v1::CANNOT,
                          "the call was cancelled by the client; nothing was stored")));
        return;
      }
      if (!service_->pool_.TrySubmit([this] { Commit(); })) {
        this->Finish(Busy());
      }
      return;
    }
    if (absl::Status taken = Take(item_); !taken.ok()) {
      this->Finish(v1::ToGrpcStatus(taken));
      return;
    }
    this->StartRead(&item_);
  }

  void OnDone() override { delete this; }

 protected:
  // One stream item, on a gRPC thread.
  virtual absl::Status Take(const Request& item) = 0;
  // At the end of the stream, on a gRPC thread: whether it was complete.
  virtual absl::Status End() = 0;
  // On a pool thread, with the content of the spool's messages.
  virtual absl::StatusOr<Response> Commit(uint64_t user) = 0;

  // Reads one chunk of the message being received into the spool; true once the
  // message has its declared size.
  absl::StatusOr<bool> AddChunk(const std::string* chunk) {
    if (chunk == nullptr) {
      return v1::BadRequest("expected message content chunks before the next item");
    }
    if (body_read_ + chunk->size() > body_size_) {
      return v1::BadRequest(absl::StrCat("message content longer than its declared size of ",
                                         body_size_, " octets"));
    }
    if (absl::Status added = spool_.Add(*chunk); !added.ok()) {
      return added;
    }
    body_read_ += chunk->size();
    return body_read_ == body_size_;
  }

  // Begins the next message of `size` octets in the spool.
  absl::Status BeginBody(uint64_t size) {
    body_size_ = size;
    body_read_ = 0;
    return spool_.Begin(size);
  }

  // The message begun last, complete so far, grows by `more` octets (RFC 4469
  // CATENATE, AppendRequest.more).
  absl::Status ExtendBody(uint64_t more) {
    body_size_ += more;
    return spool_.Extend(more);
  }

  absl::Status Truncated() const {
    return v1::BadRequest(absl::StrCat("stream ended after ", body_read_, " of ", body_size_,
                                       " declared message octets"));
  }

  // Waits (up to the call's deadline) for room to hold `octets` of bodies in memory.
  absl::StatusOr<CommitGate::Hold> HoldContent(uint64_t octets) {
    return service_->commit_gate_.Acquire(octets, absl::FromChrono(context_->deadline()));
  }

  // Whether the call carries the service's admin token (not a user's session):
  // asked once per call, when a message first needs it.
  bool CallerIsAdmin() {
    if (!caller_is_admin_.has_value()) {
      caller_is_admin_ = service_->IsAdmin(*context_);
    }
    return *caller_is_admin_;
  }

  MailboxService* const service_;
  MessageSpool spool_;

 private:
  std::optional<bool> caller_is_admin_;

  void Admit() {
    absl::StatusOr<std::pair<uint64_t, CallLimiter::Slot>> admitted =
        service_->Admit(*context_);
    if (!admitted.ok()) {
      this->Finish(v1::ToGrpcStatus(admitted.status()));
      return;
    }
    user_ = admitted->first;
    slot_.emplace(std::move(admitted->second));
    this->StartRead(&item_);
  }

  void Commit() {
    absl::StatusOr<Response> result = Commit(user_);
    // The call ends here: its slot goes back before the answer does.
    slot_.reset();
    if (!result.ok()) {
      this->Finish(v1::ToGrpcStatus(result.status()));
      return;
    }
    *response_ = *std::move(result);
    this->Finish(grpc::Status::OK);
  }

  grpc::CallbackServerContext* const context_;
  Response* const response_;
  Request item_;
  uint64_t user_ = 0;
  std::optional<CallLimiter::Slot> slot_;
  uint64_t body_size_ = 0;
  uint64_t body_read_ = 0;
};

class MailboxService::AppendCall final
    : public UploadCall<v1::AppendRequest, v1::AppendResponse> {
 public:
  using UploadCall::UploadCall;

 private:
  enum class Expect { kMailbox, kMessage, kChunk };

  absl::Status Take(const v1::AppendRequest& item) override {
    switch (expect_) {
      case Expect::kMailbox:
        if (!item.has_mailbox()) {
          return StartError();
        }
        mailbox_ = item.mailbox();
        expect_ = Expect::kMessage;
        return absl::OkStatus();
      case Expect::kMessage: {
        const uint64_t max_message = service_->limits_.max_message_octets;
        if (item.item_case() == v1::AppendRequest::kMore) {
          // RFC 4469 CATENATE: the next part of the message begun last.
          if (messages_.empty()) {
            return v1::BadRequest("more octets before any message (AppendMessage)");
          }
          if (item.more() > max_message - message_size_) {
            return TooBig(max_message);
          }
          message_size_ += item.more();
          total_ += item.more();
          if (total_ > service_->options_.max_append_call_octets) {
            return TooBig(service_->options_.max_append_call_octets);
          }
          if (absl::Status extended = ExtendBody(item.more()); !extended.ok()) {
            return extended;
          }
          if (item.more() > 0) {
            expect_ = Expect::kChunk;
          }
          return absl::OkStatus();
        }
        if (!item.has_message()) {
          return v1::BadRequest("expected the start of a message (AppendMessage)");
        }
        const v1::AppendMessage& start = item.message();
        if (start.size() > max_message) {
          return TooBig(max_message);
        }
        message_size_ = start.size();
        total_ += start.size();
        if (total_ > service_->options_.max_append_call_octets) {
          return TooBig(service_->options_.max_append_call_octets);
        }
        store::NewMessage message;
        if (start.uid() != 0) {
          // Only an import keeps another server's UIDs; a user's client never
          // chooses one (RFC 3501 §2.3.1.1: the server assigns them).
          if (!CallerIsAdmin()) {
            return v1::MakeError(absl::StatusCode::kPermissionDenied, v1::NOPERM,
                                 "only an admin import may choose a message's UID");
          }
          message.uid = start.uid();
        }
        message.flags.assign(start.flags().begin(), start.flags().end());
        message.has_internal_date = start.has_internal_date();
        message.internal_date_unix = start.internal_date_unix();
        message.internal_date_tz_minutes = start.internal_date_tz_minutes();
        messages_.push_back(std::move(message));
        if (absl::Status begun = BeginBody(start.size()); !begun.ok()) {
          return begun;
        }
        if (start.size() > 0) {
          expect_ = Expect::kChunk;
        }
        return absl::OkStatus();
      }
      case Expect::kChunk: {
        absl::StatusOr<bool> complete = AddChunk(item.has_chunk() ? &item.chunk() : nullptr);
        if (!complete.ok()) {
          return complete.status();
        }
        if (*complete) {
          expect_ = Expect::kMessage;
        }
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  absl::Status End() override {
    switch (expect_) {
      case Expect::kMailbox:
        return StartError();
      case Expect::kChunk:
        return Truncated();
      case Expect::kMessage:
        break;
    }
    if (messages_.empty()) {
      return v1::BadRequest("an Append stream must carry at least one message");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::AppendResponse> Commit(uint64_t user) override {
    // Bodies in the spool file stay there (the store reads them in pieces); those
    // in memory are committed a bounded amount at a time over all calls.
    absl::StatusOr<CommitGate::Hold> hold = HoldContent(spool_.memory_octets());
    if (!hold.ok()) {
      return hold.status();
    }
    for (size_t i = 0; i < messages_.size(); ++i) {
      spool_.Lend(i, &messages_[i]);
    }
    return service_->store_->Append(user, mailbox_, std::move(messages_));
  }

  static absl::Status StartError() {
    return v1::BadRequest("an Append stream starts with the mailbox name");
  }

  Expect expect_ = Expect::kMailbox;
  std::string mailbox_;
  std::vector<store::NewMessage> messages_;
  uint64_t message_size_ = 0;  // of the message begun last
  uint64_t total_ = 0;
};

grpc::ServerReadReactor<v1::AppendRequest>* MailboxService::Append(
    grpc::CallbackServerContext* context, v1::AppendResponse* response) {
  auto* call = new AppendCall(this, context, response);
  call->Start();
  return call;
}

class MailboxService::ReviseCall final
    : public UploadCall<v1::ReviseRequest, v1::ReviseResponse> {
 public:
  using UploadCall::UploadCall;

 private:
  enum class Expect { kHeader, kChunk, kEnd };

  absl::Status Take(const v1::ReviseRequest& item) override {
    switch (expect_) {
      case Expect::kHeader: {
        if (!item.has_header()) {
          return StartError();
        }
        header_ = item.header();
        const uint64_t max_message = service_->limits_.max_message_octets;
        if (header_.size() > max_message) {
          return TooBig(max_message);
        }
        if (absl::Status begun = BeginBody(header_.size()); !begun.ok()) {
          return begun;
        }
        expect_ = header_.size() > 0 ? Expect::kChunk : Expect::kEnd;
        return absl::OkStatus();
      }
      case Expect::kChunk: {
        absl::StatusOr<bool> complete = AddChunk(item.has_chunk() ? &item.chunk() : nullptr);
        if (!complete.ok()) {
          return complete.status();
        }
        if (*complete) {
          expect_ = Expect::kEnd;
        }
        return absl::OkStatus();
      }
      case Expect::kEnd:
        return v1::BadRequest("data after the revised message's declared size");
    }
    return absl::OkStatus();
  }

  absl::Status End() override {
    switch (expect_) {
      case Expect::kHeader:
        return StartError();
      case Expect::kChunk:
        return Truncated();
      case Expect::kEnd:
        break;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ReviseResponse> Commit(uint64_t user) override {
    // A revision's body comes back into memory whole (the store takes it as one
    // string), a bounded amount at a time over all calls.
    absl::StatusOr<CommitGate::Hold> hold = HoldContent(spool_.total_octets());
    if (!hold.ok()) {
      return hold.status();
    }
    std::string content;
    if (absl::Status taken = spool_.Take(0, &content); !taken.ok()) {
      return taken;
    }
    return service_->store_->Revise(user, header_, std::move(content));
  }

  static absl::Status StartError() {
    return v1::BadRequest("a Revise stream starts with a ReviseHeader");
  }

  Expect expect_ = Expect::kHeader;
  v1::ReviseHeader header_;
};

grpc::ServerReadReactor<v1::ReviseRequest>* MailboxService::Revise(
    grpc::CallbackServerContext* context, v1::ReviseResponse* response) {
  auto* call = new ReviseCall(this, context, response);
  call->Start();
  return call;
}

// A change feed. The requests are read on gRPC's threads; a subscription, which
// checks a token and replays the change log from the store, runs on the pool, and
// the next request is read only after it. Events go out from a thread of the
// feed's own that waits on its FeedQueue (one per feed stream: a gateway opens
// one per worker thread, and --max-feeds bounds them).
class MailboxService::FeedCall final
    : public grpc::ServerBidiReactor<v1::ChangeFeedRequest, v1::ChangeEvent> {
 public:
  FeedCall(MailboxService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context), admin_(service->IsAdmin(*context)) {
    if (service_->feeds_.fetch_add(1) >= service_->options_.max_feeds) {
      service_->feeds_.fetch_sub(1);
      counted_ = false;
      Finish(v1::ToGrpcStatus(v1::MakeError(
          absl::StatusCode::kResourceExhausted, v1::UNAVAILABLE,
          absl::StrCat("the mailbox service already serves ", service_->options_.max_feeds,
                       " change feeds; try again later"))));
      return;
    }
    // Registers the queue for CloseAll; mailbox 0 never exists.
    service_->hub_->Add(0, &queue_);
    writer_ = std::thread([this] { WriteEvents(); });
    StartRead(&request_);
  }

  ~FeedCall() override {
    if (counted_) {
      service_->feeds_.fetch_sub(1);
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The gateway closed its side, or the call ended.
      reads_ended_ = true;
      service_->hub_->RemoveAll(&queue_);
      queue_.Close();
      EndHalf();
      return;
    }
    if (request_.has_subscribe()) {
      v1::FeedSubscribe subscribe = request_.subscribe();
      const uint64_t mailbox_id = subscribe.mailbox_id();
      if (!service_->pool_.TrySubmit([this, subscribe = std::move(subscribe)] {
            Subscribe(subscribe);
            StartRead(&request_);  // the last use of this object on this thread
          })) {
        v1::ErrorDetail busy;
        busy.set_code(v1::UNAVAILABLE);
        busy.set_message("the mailbox service is busy; subscribe again");
        queue_.Fail(mailbox_id, busy);
        StartRead(&request_);
      }
      return;
    }
    if (request_.has_unsubscribe() && request_.unsubscribe().mailbox_list()) {
      service_->hub_->RemoveList(request_.unsubscribe().user_id(), &queue_);
      queue_.ForgetList(request_.unsubscribe().user_id());
    } else if (request_.has_unsubscribe()) {
      service_->hub_->Remove(request_.unsubscribe().mailbox_id(), &queue_);
      queue_.Forget(request_.unsubscribe().mailbox_id());
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      write_done_ = true;
      write_ok_ = ok;
    }
    written_.notify_one();
  }

  void OnDone() override {
    if (writer_.joinable()) {
      writer_.join();  // it has ended its loop: EndHalf was its last step
    }
    delete this;
  }

 private:
  // On a pool thread.
  void Subscribe(const v1::FeedSubscribe& subscribe) {
    int64_t expires_unix = 0;
    absl::StatusOr<uint64_t> user =
        !subscribe.session_token().empty()
            ? service_->auth_->CheckSessionToken(subscribe.session_token(), &expires_unix)
            : (admin_ ? service_->Caller(*context_)
                      : absl::StatusOr<uint64_t>(v1::MakeError(
                            absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                            "subscribe needs a session token")));
    if (subscribe.mailbox_list()) {
      SubscribeList(subscribe, user, expires_unix);
      return;
    }
    if (!user.ok()) {
      if (absl::IsUnavailable(user.status())) {
        EndForResubscribe();
        return;
      }
      queue_.Fail(subscribe.mailbox_id(), v1::DetailOf(user.status()));
      return;
    }
    // The subscription lasts as long as the token it was made with (a session in
    // IDLE sends nothing else the service could refuse); an admin's has none.
    const auto expires =
        subscribe.session_token().empty()
            ? std::chrono::system_clock::time_point::max()
            : std::chrono::system_clock::time_point(std::chrono::seconds(expires_unix + 1));
    queue_.BeginReplay(subscribe.mailbox_id(), subscribe.from_modseq(), expires);
    service_->hub_->Add(subscribe.mailbox_id(), &queue_);
    std::vector<v1::ChangeEvent> replay;
    absl::Status read =
        service_->store_->ReadChanges(*user, subscribe.mailbox_id(), subscribe.uidvalidity(),
                                      subscribe.from_modseq(), &replay);
    if (!read.ok()) {
      service_->hub_->Remove(subscribe.mailbox_id(), &queue_);
      if (absl::IsUnavailable(read)) {
        EndForResubscribe();
        return;
      }
      v1::ErrorDetail detail = v1::DetailOf(read);
      if (detail.code() == v1::ERROR_CODE_UNSPECIFIED) {
        detail.set_code(v1::RESYNC);
        detail.set_message(std::string(read.message()));
      }
      queue_.Fail(subscribe.mailbox_id(), detail);
      return;
    }
    queue_.FinishReplay(subscribe.mailbox_id(), replay);
  }

  // A subscription to the mailbox list of the token's user: only a session's own
  // list (an admin without a token has no user to follow). Live from now on:
  // registered with the hub before the Subscribed marker is queued, so every
  // change committed after the marker reaches the gateway.
  void SubscribeList(const v1::FeedSubscribe& subscribe, const absl::StatusOr<uint64_t>& user,
                     int64_t expires_unix) {
    if (!user.ok() && absl::IsUnavailable(user.status())) {
      EndForResubscribe();
      return;
    }
    if (!user.ok() || subscribe.session_token().empty() || *user != subscribe.user_id()) {
      v1::ErrorDetail detail;
      if (!user.ok()) {
        detail = v1::DetailOf(user.status());
      } else {
        detail.set_code(v1::AUTHENTICATIONFAILED);
        detail.set_message(
            "a mailbox-list subscription needs the session token of the list's user");
      }
      queue_.FailList(subscribe.user_id(), detail);
      return;
    }
    queue_.BeginList(*user,
                     std::chrono::system_clock::time_point(std::chrono::seconds(expires_unix + 1)));
    service_->hub_->AddList(*user, &queue_);
    queue_.ListSubscribed(*user);
  }

  // The store could not serve a subscription for now (its database is away):
  // rather than tell the gateway the mailbox changed beyond following (which ends
  // its sessions), end the whole feed, so that the gateway subscribes again, to
  // this replica or another, from its last MODSEQ once the store is back.
  void EndForResubscribe() { context_->TryCancel(); }

  // On the feed's thread.
  void WriteEvents() {
    while (std::optional<v1::ChangeEvent> event = queue_.Pop()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        write_done_ = false;
      }
      StartWrite(&*event);
      std::unique_lock<std::mutex> lock(mutex_);
      written_.wait(lock, [this] { return write_done_; });
      if (!write_ok_) {
        break;
      }
    }
    if (!reads_ended_) {
      // The queue was closed by the hub (shutdown, or the store may have missed
      // changes) or a write failed: end the reads too, so the call finishes and the
      // gateway subscribes again (elsewhere, during a shutdown) from its last MODSEQ.
      context_->TryCancel();
    }
    EndHalf();
  }

  // Called once when the reads end and once when the writes end; the second
  // finishes the call.
  void EndHalf() {
    if (halves_ended_.fetch_add(1) == 1) {
      Finish(grpc::Status::OK);
    }
  }

  MailboxService* const service_;
  grpc::CallbackServerContext* const context_;
  const bool admin_;
  bool counted_ = true;
  v1::ChangeFeedRequest request_;
  FeedQueue queue_;
  std::thread writer_;
  std::atomic<int> halves_ended_{0};
  std::atomic<bool> reads_ended_{false};
  std::mutex mutex_;
  std::condition_variable written_;
  bool write_done_ = false;  // guarded by mutex_
  bool write_ok_ = false;    // guarded by mutex_
};

grpc::ServerBidiReactor<v1::ChangeFeedRequest, v1::ChangeEvent>* MailboxService::Changes(
    grpc::CallbackServerContext* context) {
  return new FeedCall(this, context);
}

void MailboxService::BeginShutdown() {
  shutting_down_.store(true);
  hub_->CloseAll();
}

AdminService::AdminService(store::Store* store, MailboxService* mailbox,
                           PasswordHashOptions hash)
    : store_(store), mailbox_(mailbox), hash_(hash) {}

grpc::Status AdminService::RequireAdmin(const grpc::ServerContextBase& context) const {
  if (!mailbox_->IsAdmin(context)) {
    return v1::ToGrpcStatus(v1::MakeError(absl::StatusCode::kPermissionDenied, v1::NOPERM,
                                          "admin calls need the service's admin token"));
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* AdminService::CreateUser(grpc::CallbackServerContext* context,
                                                   const v1::CreateUserRequest* request,
                                                   v1::CreateUserResponse* response) {
  return mailbox_->Offload(context, [this, context, request, response]() -> grpc::Status {
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
    auto scram_keys = ScramKeysFor(request->password(), hash_);
    if (!scram_keys.ok()) {
      return v1::ToGrpcStatus(scram_keys.status());
    }
    auto id = store_->CreateUser(request->username(), *hash);
    if (!id.ok()) {
      return v1::ToGrpcStatus(id.status());
    }
    // Beside the hash, for SCRAM-SHA-256 (scram.h); stored only while the hash is
    // still this one.
    if (auto stored = store_->SetScramKeys(request->username(), *hash, *scram_keys);
        !stored.ok()) {
      return v1::ToGrpcStatus(stored);
    }
    response->set_user_id(*id);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* AdminService::DeleteUser(grpc::CallbackServerContext* context,
                                                   const v1::DeleteUserRequest* request,
                                                   v1::DeleteUserResponse*) {
  return mailbox_->Offload(context, [this, context, request]() -> grpc::Status {
    if (auto denied = RequireAdmin(*context); !denied.ok()) {
      return denied;
    }
    return v1::ToGrpcStatus(store_->DeleteUser(request->username()));
  });
}

grpc::ServerUnaryReactor* AdminService::SetPassword(grpc::CallbackServerContext* context,
                                                    const v1::SetPasswordRequest* request,
                                                    v1::SetPasswordResponse*) {
  return mailbox_->Offload(context, [this, context, request]() -> grpc::Status {
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
    auto scram_keys = ScramKeysFor(request->password(), hash_);
    if (!scram_keys.ok()) {
      return v1::ToGrpcStatus(scram_keys.status());
    }
    // The new hash drops the old password's SCRAM keys; the new keys follow.
    if (auto set = store_->SetPasswordHash(request->username(), *hash); !set.ok()) {
      return v1::ToGrpcStatus(set);
    }
    return v1::ToGrpcStatus(store_->SetScramKeys(request->username(), *hash, *scram_keys));
  });
}

grpc::ServerUnaryReactor* AdminService::ListUsers(grpc::CallbackServerContext* context,
                                                  const v1::ListUsersRequest*,
                                                  v1::ListUsersResponse* response) {
  return mailbox_->Offload(context, [this, context, response]() -> grpc::Status {
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
  });
}

grpc::ServerUnaryReactor* AdminService::SetQuota(grpc::CallbackServerContext* context,
                                                 const v1::SetQuotaRequest* request,
                                                 v1::SetQuotaResponse*) {
  return mailbox_->Offload(context, [this, context, request]() -> grpc::Status {
    if (auto denied = RequireAdmin(*context); !denied.ok()) {
      return denied;
    }
    return v1::ToGrpcStatus(store_->SetQuota(request->username(), request->limits()));
  });
}

grpc::ServerUnaryReactor* AdminService::GetUserQuota(grpc::CallbackServerContext* context,
                                                     const v1::GetUserQuotaRequest* request,
                                                     v1::GetUserQuotaResponse* response) {
  return mailbox_->Offload(context, [this, context, request, response]() -> grpc::Status {
    if (auto denied = RequireAdmin(*context); !denied.ok()) {
      return denied;
    }
    return AnswerForUser(*store_, request->username(), response, [&](uint64_t user_id) {
      return store_->GetUserQuota(user_id);
    });
  });
}

grpc::ServerUnaryReactor* AdminService::PrepareImport(grpc::CallbackServerContext* context,
                                                      const v1::PrepareImportRequest* request,
                                                      v1::PrepareImportResponse* response) {
  return mailbox_->Offload(context, [this, context, request, response]() -> grpc::Status {
    if (auto denied = RequireAdmin(*context); !denied.ok()) {
      return denied;
    }
    return AnswerForUser(*store_, request->username(), response, [&](uint64_t user_id) {
      return store_->PrepareImport(user_id, *request);
    });
  });
}

grpc::ServerUnaryReactor* AdminService::FinishImport(grpc::CallbackServerContext* context,
                                                     const v1::FinishImportRequest* request,
                                                     v1::FinishImportResponse* response) {
  return mailbox_->Offload(context, [this, context, request, response]() -> grpc::Status {
    if (auto denied = RequireAdmin(*context); !denied.ok()) {
      return denied;
    }
    return AnswerForUser(*store_, request->username(), response, [&](uint64_t user_id) {
      return store_->FinishImport(user_id, *request);
    });
  });
}

}  // namespace mailbox::server
