// The gRPC face of the mailbox service: authenticates every call, then hands it to
// the store. Streams (Fetch, Append, Revise, Changes) are adapted here so the store
// sees whole requests and a sink.
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

class MailboxService final : public v1::Mailbox::Service {
 public:
  // None of the pointers is owned; all must outlive the service.
  MailboxService(store::Store* store, Authenticator* auth, ChangeHub* hub,
                 std::string admin_token, store::StoreLimits limits, ServiceOptions options);

  grpc::Status Authenticate(grpc::ServerContext* context, const v1::AuthenticateRequest* request,
                            v1::AuthenticateResponse* response) override;
  grpc::Status ListMailboxes(grpc::ServerContext* context,
                             const v1::ListMailboxesRequest* request,
                             v1::ListMailboxesResponse* response) override;
  grpc::Status CreateMailbox(grpc::ServerContext* context,
                             const v1::CreateMailboxRequest* request,
                             v1::CreateMailboxResponse* response) override;
  grpc::Status DeleteMailbox(grpc::ServerContext* context,
                             const v1::DeleteMailboxRequest* request,
                             v1::DeleteMailboxResponse* response) override;
  grpc::Status RenameMailbox(grpc::ServerContext* context,
                             const v1::RenameMailboxRequest* request,
                             v1::RenameMailboxResponse* response) override;
  grpc::Status SetSubscription(grpc::ServerContext* context,
                               const v1::SetSubscriptionRequest* request,
                               v1::SetSubscriptionResponse* response) override;
  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override;
  grpc::Status Open(grpc::ServerContext* context, const v1::OpenRequest* request,
                    v1::OpenResponse* response) override;
  grpc::Status Fetch(grpc::ServerContext* context, const v1::FetchRequest* request,
                     grpc::ServerWriter<v1::FetchResponse>* writer) override;
  grpc::Status Store(grpc::ServerContext* context, const v1::StoreRequest* request,
                     v1::StoreResponse* response) override;
  grpc::Status Copy(grpc::ServerContext* context, const v1::CopyRequest* request,
                    v1::CopyResponse* response) override;
  grpc::Status Move(grpc::ServerContext* context, const v1::MoveRequest* request,
                    v1::MoveResponse* response) override;
  grpc::Status Expunge(grpc::ServerContext* context, const v1::ExpungeRequest* request,
                       v1::ExpungeResponse* response) override;
  grpc::Status Append(grpc::ServerContext* context,
                      grpc::ServerReader<v1::AppendRequest>* reader,
                      v1::AppendResponse* response) override;
  grpc::Status Search(grpc::ServerContext* context, const v1::SearchRequest* request,
                      v1::SearchResponse* response) override;
  grpc::Status Revise(grpc::ServerContext* context,
                      grpc::ServerReader<v1::ReviseRequest>* reader,
                      v1::ReviseResponse* response) override;
  grpc::Status Changes(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ChangeEvent, v1::ChangeFeedRequest>* stream) override;

  // The user a call acts for: a session token, or the admin token plus act-as.
  absl::StatusOr<uint64_t> Caller(const grpc::ServerContext& context) const;
  // Caller(), plus one of that user's call slots, held until the returned slot
  // is destroyed.
  absl::StatusOr<std::pair<uint64_t, CallLimiter::Slot>> Admit(
      const grpc::ServerContext& context);
  bool IsAdmin(const grpc::ServerContext& context) const;

  // Graceful shutdown: ends every change feed so the server can drain.
  void BeginShutdown();

 private:
  MessageSpool NewSpool() const;

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
};

class AdminService final : public v1::Admin::Service {
 public:
  AdminService(store::Store* store, const MailboxService* mailbox, PasswordHashOptions hash);

  grpc::Status CreateUser(grpc::ServerContext* context, const v1::CreateUserRequest* request,
                          v1::CreateUserResponse* response) override;
  grpc::Status DeleteUser(grpc::ServerContext* context, const v1::DeleteUserRequest* request,
                          v1::DeleteUserResponse* response) override;
  grpc::Status SetPassword(grpc::ServerContext* context, const v1::SetPasswordRequest* request,
                           v1::SetPasswordResponse* response) override;
  grpc::Status ListUsers(grpc::ServerContext* context, const v1::ListUsersRequest* request,
                         v1::ListUsersResponse* response) override;

 private:
  grpc::Status RequireAdmin(const grpc::ServerContext& context) const;

  store::Store* store_;
  const MailboxService* mailbox_;
  PasswordHashOptions hash_;
};

}  // namespace mailbox::server
