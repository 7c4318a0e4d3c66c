#include "mailbox-service/store/timed_store.h"

#include <chrono>

namespace mailbox::store {
namespace {

// Observes the time from its construction to its end.
class Timer {
 public:
  explicit Timer(metrics::Histogram& histogram)
      : histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  ~Timer() { histogram_.ObserveDuration(std::chrono::steady_clock::now() - start_); }

 private:
  metrics::Histogram& histogram_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

absl::StatusOr<uint64_t> TimedStore::CreateUser(std::string_view username,
                                                std::string_view password_hash) {
  Timer timer(metrics_->operation_seconds.At(0));
  return inner_->CreateUser(username, password_hash);
}

absl::Status TimedStore::DeleteUser(std::string_view username) {
  Timer timer(metrics_->operation_seconds.At(1));
  return inner_->DeleteUser(username);
}

absl::Status TimedStore::SetPasswordHash(std::string_view username,
                                         std::string_view password_hash) {
  Timer timer(metrics_->operation_seconds.At(2));
  return inner_->SetPasswordHash(username, password_hash);
}

absl::Status TimedStore::SetScramKeys(std::string_view username, std::string_view password_hash,
                                      std::string_view scram_sha256) {
  Timer timer(metrics_->operation_seconds.At(3));
  return inner_->SetScramKeys(username, password_hash, scram_sha256);
}

absl::StatusOr<UserRecord> TimedStore::FindUser(std::string_view username) {
  Timer timer(metrics_->operation_seconds.At(4));
  return inner_->FindUser(username);
}

absl::StatusOr<UserRecord> TimedStore::FindUserById(uint64_t user_id) {
  Timer timer(metrics_->operation_seconds.At(5));
  return inner_->FindUserById(user_id);
}

absl::StatusOr<std::vector<UserRecord>> TimedStore::ListUsers() {
  Timer timer(metrics_->operation_seconds.At(6));
  return inner_->ListUsers();
}

absl::StatusOr<int> TimedStore::RecordAuthFailure(std::string_view key, int64_t now_ms,
                                                  int64_t window_ms) {
  Timer timer(metrics_->operation_seconds.At(7));
  return inner_->RecordAuthFailure(key, now_ms, window_ms);
}

absl::StatusOr<std::pair<int, int64_t>> TimedStore::AuthFailures(std::string_view key,
                                                                 int64_t now_ms,
                                                                 int64_t window_ms) {
  Timer timer(metrics_->operation_seconds.At(8));
  return inner_->AuthFailures(key, now_ms, window_ms);
}

absl::Status TimedStore::ClearAuthFailures(std::string_view key) {
  Timer timer(metrics_->operation_seconds.At(9));
  return inner_->ClearAuthFailures(key);
}

absl::StatusOr<AuthReservation> TimedStore::ReserveAuthAttempt(const std::vector<std::string>& keys,
                                                               std::string_view address,
                                                               int64_t now_ms,
                                                               const AuthAttemptLimits& limits,
                                                               const AuthAttemptPolicy& policy) {
  Timer timer(metrics_->operation_seconds.At(10));
  return inner_->ReserveAuthAttempt(keys, address, now_ms, limits, policy);
}

absl::Status TimedStore::ReleaseAuthAttempt(const std::vector<int64_t>& rows) {
  Timer timer(metrics_->operation_seconds.At(11));
  return inner_->ReleaseAuthAttempt(rows);
}

absl::StatusOr<std::string> TimedStore::GetOrCreateSecret(std::string_view name,
                                                          std::string_view initial_value) {
  Timer timer(metrics_->operation_seconds.At(12));
  return inner_->GetOrCreateSecret(name, initial_value);
}

absl::StatusOr<std::string> TimedStore::FindSecret(std::string_view name) {
  Timer timer(metrics_->operation_seconds.At(13));
  return inner_->FindSecret(name);
}

absl::Status TimedStore::DeleteSecret(std::string_view name) {
  Timer timer(metrics_->operation_seconds.At(14));
  return inner_->DeleteSecret(name);
}

absl::StatusOr<v1::ListMailboxesResponse> TimedStore::ListMailboxes(
    uint64_t user_id, const v1::ListMailboxesRequest& request) {
  Timer timer(metrics_->operation_seconds.At(15));
  return inner_->ListMailboxes(user_id, request);
}

absl::StatusOr<v1::CreateMailboxResponse> TimedStore::CreateMailbox(
    uint64_t user_id, const v1::CreateMailboxRequest& request) {
  Timer timer(metrics_->operation_seconds.At(16));
  return inner_->CreateMailbox(user_id, request);
}

absl::Status TimedStore::DeleteMailbox(uint64_t user_id, const v1::DeleteMailboxRequest& request) {
  Timer timer(metrics_->operation_seconds.At(17));
  return inner_->DeleteMailbox(user_id, request);
}

absl::Status TimedStore::RenameMailbox(uint64_t user_id, const v1::RenameMailboxRequest& request) {
  Timer timer(metrics_->operation_seconds.At(18));
  return inner_->RenameMailbox(user_id, request);
}

absl::Status TimedStore::SetSubscription(uint64_t user_id,
                                         const v1::SetSubscriptionRequest& request) {
  Timer timer(metrics_->operation_seconds.At(19));
  return inner_->SetSubscription(user_id, request);
}

absl::StatusOr<v1::StatusResponse> TimedStore::Status(uint64_t user_id,
                                                      const v1::StatusRequest& request) {
  Timer timer(metrics_->operation_seconds.At(20));
  return inner_->Status(user_id, request);
}

absl::StatusOr<v1::PrepareImportResponse> TimedStore::PrepareImport(
    uint64_t user_id, const v1::PrepareImportRequest& request) {
  Timer timer(metrics_->operation_seconds.At(40));
  return inner_->PrepareImport(user_id, request);
}

absl::StatusOr<v1::FinishImportResponse> TimedStore::FinishImport(
    uint64_t user_id, const v1::FinishImportRequest& request) {
  Timer timer(metrics_->operation_seconds.At(41));
  return inner_->FinishImport(user_id, request);
}

absl::Status TimedStore::SetQuota(std::string_view username, const v1::QuotaLimits& limits) {
  Timer timer(metrics_->operation_seconds.At(21));
  return inner_->SetQuota(username, limits);
}

absl::StatusOr<v1::GetUserQuotaResponse> TimedStore::GetUserQuota(uint64_t user_id) {
  Timer timer(metrics_->operation_seconds.At(22));
  return inner_->GetUserQuota(user_id);
}

absl::StatusOr<v1::GetQuotaResponse> TimedStore::GetQuota(uint64_t user_id,
                                                          const v1::GetQuotaRequest& request) {
  Timer timer(metrics_->operation_seconds.At(23));
  return inner_->GetQuota(user_id, request);
}

absl::StatusOr<v1::GetMetadataResponse> TimedStore::GetMetadata(
    uint64_t user_id, const v1::GetMetadataRequest& request) {
  Timer timer(metrics_->operation_seconds.At(24));
  return inner_->GetMetadata(user_id, request);
}

absl::Status TimedStore::SetMetadata(uint64_t user_id, const v1::SetMetadataRequest& request) {
  Timer timer(metrics_->operation_seconds.At(25));
  return inner_->SetMetadata(user_id, request);
}

absl::StatusOr<v1::OpenResponse> TimedStore::Open(uint64_t user_id,
                                                  const v1::OpenRequest& request) {
  Timer timer(metrics_->operation_seconds.At(26));
  return inner_->Open(user_id, request);
}

absl::StatusOr<v1::ClaimRecentResponse> TimedStore::ClaimRecent(
    uint64_t user_id, const v1::ClaimRecentRequest& request) {
  Timer timer(metrics_->operation_seconds.At(27));
  return inner_->ClaimRecent(user_id, request);
}

absl::StatusOr<v1::VanishedResponse> TimedStore::Vanished(uint64_t user_id,
                                                          const v1::VanishedRequest& request) {
  Timer timer(metrics_->operation_seconds.At(28));
  return inner_->Vanished(user_id, request);
}

absl::Status TimedStore::Fetch(uint64_t user_id, const v1::FetchRequest& request, FetchSink& sink) {
  Timer timer(metrics_->operation_seconds.At(29));
  return inner_->Fetch(user_id, request, sink);
}

absl::StatusOr<v1::StoreResponse> TimedStore::StoreFlags(uint64_t user_id,
                                                         const v1::StoreRequest& request) {
  Timer timer(metrics_->operation_seconds.At(30));
  return inner_->StoreFlags(user_id, request);
}

absl::StatusOr<v1::CopyResponse> TimedStore::Copy(uint64_t user_id,
                                                  const v1::CopyRequest& request) {
  Timer timer(metrics_->operation_seconds.At(31));
  return inner_->Copy(user_id, request);
}

absl::StatusOr<v1::MoveResponse> TimedStore::Move(uint64_t user_id,
                                                  const v1::MoveRequest& request) {
  Timer timer(metrics_->operation_seconds.At(32));
  return inner_->Move(user_id, request);
}

absl::StatusOr<v1::ExpungeResponse> TimedStore::Expunge(uint64_t user_id,
                                                        const v1::ExpungeRequest& request) {
  Timer timer(metrics_->operation_seconds.At(33));
  return inner_->Expunge(user_id, request);
}

absl::StatusOr<v1::AppendResponse> TimedStore::Append(uint64_t user_id, std::string_view mailbox,
                                                      std::vector<NewMessage> messages) {
  Timer timer(metrics_->operation_seconds.At(34));
  return inner_->Append(user_id, mailbox, std::move(messages));
}

absl::StatusOr<v1::SearchResponse> TimedStore::Search(uint64_t user_id,
                                                      const v1::SearchRequest& request,
                                                      WorkBudget& budget) {
  Timer timer(metrics_->operation_seconds.At(35));
  return inner_->Search(user_id, request, budget);
}

absl::StatusOr<std::vector<SortableMessage>> TimedStore::SortableMessages(uint64_t user_id,
                                                                          uint64_t mailbox_id,
                                                                          uint32_t uidvalidity,
                                                                          const v1::UidSet& uids) {
  Timer timer(metrics_->operation_seconds.At(36));
  return inner_->SortableMessages(user_id, mailbox_id, uidvalidity, uids);
}

absl::StatusOr<std::vector<uint32_t>> TimedStore::SortedUids(
    uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids,
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) {
  Timer timer(metrics_->operation_seconds.At(37));
  return inner_->SortedUids(user_id, mailbox_id, uidvalidity, uids, criteria);
}

absl::StatusOr<v1::ReviseResponse> TimedStore::Revise(uint64_t user_id,
                                                      const v1::ReviseHeader& header,
                                                      std::string content) {
  Timer timer(metrics_->operation_seconds.At(38));
  return inner_->Revise(user_id, header, std::move(content));
}

absl::Status TimedStore::ReadChanges(uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity,
                                     uint64_t from_modseq, std::vector<v1::ChangeEvent>* out) {
  Timer timer(metrics_->operation_seconds.At(39));
  return inner_->ReadChanges(user_id, mailbox_id, uidvalidity, from_modseq, out);
}

}  // namespace mailbox::store
