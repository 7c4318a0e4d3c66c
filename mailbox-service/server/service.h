// The gRPC face of the mailbox service: authenticates every call, then hands it to
// the store. Streams (Fetch, Append, Revise, Changes) are adapted here so the store
// sees whole requests and a sink.
//
// Every call uses gRPC's callback API: gRPC's own threads receive it and do only
// non-blocking work (reading stream items into the spool); whatever may block
// (SQLite, password hashes, a Fetch waiting for its reader) runs on the service's
// WorkPool, a fixed set of threads behind a bounded queue. So no thread is made or
// ended per call.
#pragma once

#include <atomic>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "mailbox-service/server/auth.h"
#include "mailbox-service/server/change_hub.h"
#include "mailbox-service/server/spool.h"
#include "mailbox-service/server/stall_watch.h"
#include "mailbox-service/server/work_pool.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"
#include "storage-client/link_token.h"

namespace mailbox::server {

// Metadata keys (see the header of mailbox.proto).
inline constexpr char kSessionMetadata[] = "x-mailbox-session";
inline constexpr char kAdminMetadata[] = "x-mailbox-admin";
inline constexpr char kActAsMetadata[] = "x-mailbox-act-as";

struct ServiceOptions {
  // Upper bound of one Append call (all messages of a MULTIAPPEND together).
  uint64_t max_append_call_octets = 256ull << 20;
  // The gateway token (not owned; null: none). A caller that sends it may report its
  // clients' IPs for the login throttle (link_trust.h).
  client::LinkTokenFile* gateway_token = nullptr;
  // Calls one user may have in flight at once (every call that acts for a user,
  // streams included, except the change feed). A stalled reader holds a server
  // thread until its deadline; this keeps one user from holding them all.
  // 0: no limit.
  int max_calls_per_user = 16;
  // Where Append/Revise bodies wait for the end of their stream (spool.h); empty
  // keeps them in memory (tests).
  std::string spool_dir;
  // Octets of one call's bodies kept in memory before the rest goes to the spool.
  uint64_t append_memory_octets = 1 << 20;
  // Octets of message content being committed at once, over all calls (0: no
  // limit). A call waits for room, up to its deadline.
  uint64_t commit_memory_octets = 256ull << 20;
  // A Fetch whose reader has not taken a response for this long is cancelled
  // (stall_watch.h); zero: never.
  absl::Duration fetch_stall_timeout = absl::Seconds(120);
  // Threads that run calls (work_pool.h), and calls that may wait for one of them;
  // a call that finds the queue full is refused with RESOURCE_EXHAUSTED (detail
  // UNAVAILABLE: the service is busy, nothing was done).
  int workers = 128;
  int work_queue = 8;
  // Change-feed streams at once (each has a thread that waits for its events);
  // beyond, a feed is refused with RESOURCE_EXHAUSTED.
  int max_feeds = 64;
};

// Counts the calls in flight per user. Thread-safe.
class CallLimiter {
 public:
  explicit CallLimiter(int max_per_user) : max_per_user_(max_per_user) {}

  // Held for the duration of one call.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : limiter_(other.limiter_), user_(other.user_) {
      other.limiter_ = nullptr;
    }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (limiter_ != nullptr) limiter_->Release(user_);
    }

   private:
    friend class CallLimiter;
    Slot(CallLimiter* limiter, uint64_t user) : limiter_(limiter), user_(user) {}
    CallLimiter* limiter_ = nullptr;
    uint64_t user_ = 0;
  };

  // A slot for one more call of `user`, or RESOURCE_EXHAUSTED (ErrorCode LIMIT)
  // when the user already has max_per_user calls in flight.
  absl::StatusOr<Slot> Acquire(uint64_t user);
  // Calls of `user` in flight now (for tests).
  int InFlight(uint64_t user) const;

 private:
  void Release(uint64_t user);

  const int max_per_user_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<uint64_t, int> in_flight_ ABSL_GUARDED_BY(mutex_);
};

class MailboxService final : public v1::Mailbox::CallbackService {
 public:
  // None of the pointers is owned; all must outlive the service.
  MailboxService(store::Store* store, Authenticator* auth, ChangeHub* hub,
                 std::string admin_token, store::StoreLimits limits, ServiceOptions options);

  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* context,
                                         const v1::AuthenticateRequest* request,
                                         v1::AuthenticateResponse* response) override;
  grpc::ServerUnaryReactor* ListMailboxes(grpc::CallbackServerContext* context,
                                          const v1::ListMailboxesRequest* request,
                                          v1::ListMailboxesResponse* response) override;
  grpc::ServerUnaryReactor* CreateMailbox(grpc::CallbackServerContext* context,
                                          const v1::CreateMailboxRequest* request,
                                          v1::CreateMailboxResponse* response) override;
  grpc::ServerUnaryReactor* DeleteMailbox(grpc::CallbackServerContext* context,
                                          const v1::DeleteMailboxRequest* request,
                                          v1::DeleteMailboxResponse* response) override;
  grpc::ServerUnaryReactor* RenameMailbox(grpc::CallbackServerContext* context,
                                          const v1::RenameMailboxRequest* request,
                                          v1::RenameMailboxResponse* response) override;
  grpc::ServerUnaryReactor* SetSubscription(grpc::CallbackServerContext* context,
                                            const v1::SetSubscriptionRequest* request,
                                            v1::SetSubscriptionResponse* response) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const v1::StatusRequest* request,
                                   v1::StatusResponse* response) override;
  grpc::ServerUnaryReactor* GetQuota(grpc::CallbackServerContext* context,
                                     const v1::GetQuotaRequest* request,
                                     v1::GetQuotaResponse* response) override;
  grpc::ServerUnaryReactor* GetMetadata(grpc::CallbackServerContext* context,
                                        const v1::GetMetadataRequest* request,
                                        v1::GetMetadataResponse* response) override;
  grpc::ServerUnaryReactor* SetMetadata(grpc::CallbackServerContext* context,
                                        const v1::SetMetadataRequest* request,
                                        v1::SetMetadataResponse* response) override;
  grpc::ServerUnaryReactor* Open(grpc::CallbackServerContext* context,
                                 const v1::OpenRequest* request,
                                 v1::OpenResponse* response) override;
  grpc::ServerUnaryReactor* ClaimRecent(grpc::CallbackServerContext* context,
                                        const v1::ClaimRecentRequest* request,
                                        v1::ClaimRecentResponse* response) override;
  grpc::ServerUnaryReactor* Vanished(grpc::CallbackServerContext* context,
                                     const v1::VanishedRequest* request,
                                     v1::VanishedResponse* response) override;
  grpc::ServerWriteReactor<v1::FetchResponse>* Fetch(grpc::CallbackServerContext* context,
                                                     const v1::FetchRequest* request) override;
  grpc::ServerUnaryReactor* Store(grpc::CallbackServerContext* context,
                                  const v1::StoreRequest* request,
                                  v1::StoreResponse* response) override;
  grpc::ServerUnaryReactor* Copy(grpc::CallbackServerContext* context,
                                 const v1::CopyRequest* request,
                                 v1::CopyResponse* response) override;
  grpc::ServerUnaryReactor* Move(grpc::CallbackServerContext* context,
                                 const v1::MoveRequest* request,
                                 v1::MoveResponse* response) override;
  grpc::ServerUnaryReactor* Expunge(grpc::CallbackServerContext* context,
                                    const v1::ExpungeRequest* request,
                                    v1::ExpungeResponse* response) override;
  grpc::ServerReadReactor<v1::AppendRequest>* Append(grpc::CallbackServerContext* context,
                                                     v1::AppendResponse* response) override;
  grpc::ServerUnaryReactor* Search(grpc::CallbackServerContext* context,
                                   const v1::SearchRequest* request,
                                   v1::SearchResponse* response) override;
  grpc::ServerUnaryReactor* Sort(grpc::CallbackServerContext* context,
                                 const v1::SortRequest* request,
                                 v1::SortResponse* response) override;
  grpc::ServerUnaryReactor* Thread(grpc::CallbackServerContext* context,
                                   const v1::ThreadRequest* request,
                                   v1::ThreadResponse* response) override;
  grpc::ServerReadReactor<v1::ReviseRequest>* Revise(grpc::CallbackServerContext* context,
                                                     v1::ReviseResponse* response) override;
  grpc::ServerBidiReactor<v1::ChangeFeedRequest, v1::ChangeEvent>* Changes(
      grpc::CallbackServerContext* context) override;

  // The user a call acts for: a session token, or the admin token plus act-as.
  absl::StatusOr<uint64_t> Caller(const grpc::ServerContextBase& context) const;
  // Caller(), plus one of that user's call slots, held until the returned slot
  // is destroyed.
  absl::StatusOr<std::pair<uint64_t, CallLimiter::Slot>> Admit(
      const grpc::ServerContextBase& context);
  bool IsAdmin(const grpc::ServerContextBase& context) const;

  // Graceful shutdown: ends every change feed so the server can drain.
  void BeginShutdown();

  // For metrics: calls waiting for a pool thread, threads running one, calls the
  // full pool refused, change-feed streams open.
  size_t queued_work() const { return pool_.queued(); }
  size_t busy_workers() const { return pool_.busy(); }
  uint64_t refused_work() const { return pool_.refused(); }
  int open_feeds() const { return feeds_.load(); }

 private:
  class FetchCall;
  template <typename Request, typename Response>
  class UploadCall;
  class AppendCall;
  class ReviseCall;
  class FeedCall;
  friend class AdminService;  // runs its calls on the pool

  MessageSpool NewSpool() const;
  // Runs `work` on the pool and finishes the call with its status; refuses the call
  // at once when the pool's queue is full.
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context,
                                    absl::AnyInvocable<grpc::Status() &&> work);
  // Offload of a store call for the authenticated caller: `call(user_id)` returns
  // the reply (absl::StatusOr<Response>), or an absl::Status for calls whose reply
  // is empty.
  template <typename Response, typename Call>
  grpc::ServerUnaryReactor* OffloadCall(grpc::CallbackServerContext* context,
                                        Response* response, Call call);

  std::atomic<bool> shutting_down_{false};
  // Set once a caller's reported client IP was ignored (logged once, for the operator).
  std::atomic<bool> ignored_client_ip_logged_{false};
  store::Store* store_;
  Authenticator* auth_;
  ChangeHub* hub_;
  std::string admin_token_;
  store::StoreLimits limits_;
  ServiceOptions options_;
  CallLimiter calls_;
  CommitGate commit_gate_;
  StallWatch stall_watch_;
  std::atomic<int> feeds_{0};  // change-feed streams open
  // Last: destroyed first, so the work still queued finds everything above alive.
  WorkPool pool_;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `mailbox` runs the calls on its pool and checks the admin token.
  AdminService(store::Store* store, MailboxService* mailbox, PasswordHashOptions hash);

  grpc::ServerUnaryReactor* CreateUser(grpc::CallbackServerContext* context,
                                       const v1::CreateUserRequest* request,
                                       v1::CreateUserResponse* response) override;
  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* context,
                                       const v1::DeleteUserRequest* request,
                                       v1::DeleteUserResponse* response) override;
  grpc::ServerUnaryReactor* SetPassword(grpc::CallbackServerContext* context,
                                        const v1::SetPasswordRequest* request,
                                        v1::SetPasswordResponse* response) override;
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* context,
                                      const v1::ListUsersRequest* request,
                                      v1::ListUsersResponse* response) override;
  grpc::ServerUnaryReactor* SetQuota(grpc::CallbackServerContext* context,
                                     const v1::SetQuotaRequest* request,
                                     v1::SetQuotaResponse* response) override;
  grpc::ServerUnaryReactor* GetUserQuota(grpc::CallbackServerContext* context,
                                         const v1::GetUserQuotaRequest* request,
                                         v1::GetUserQuotaResponse* response) override;
  grpc::ServerUnaryReactor* PrepareImport(grpc::CallbackServerContext* context,
                                          const v1::PrepareImportRequest* request,
                                          v1::PrepareImportResponse* response) override;
  grpc::ServerUnaryReactor* FinishImport(grpc::CallbackServerContext* context,
                                         const v1::FinishImportRequest* request,
                                         v1::FinishImportResponse* response) override;

 private:
  grpc::Status RequireAdmin(const grpc::ServerContextBase& context) const;

  store::Store* store_;
  MailboxService* mailbox_;
  PasswordHashOptions hash_;
};

}  // namespace mailbox::server
