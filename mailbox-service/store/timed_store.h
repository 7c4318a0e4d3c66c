// A Store that times every call of the store it wraps, per operation (the Store
// method), into StoreMetrics::operation_seconds. The service wraps its backend in
// it, so the histogram covers SQLite and PostgreSQL alike.
#pragma once

#include "mailbox-service/store/store.h"
#include "mailbox-service/store/store_metrics.h"

namespace mailbox::store {

class TimedStore final : public Store {
 public:
  // `inner` and `metrics` must outlive this store.
  TimedStore(Store* inner, StoreMetrics* metrics) : inner_(inner), metrics_(metrics) {}

  bool Healthy() const override { return inner_->Healthy(); }
  absl::StatusOr<uint64_t> CreateUser(std::string_view username,
                                      std::string_view password_hash) override;
  absl::Status DeleteUser(std::string_view username) override;
  absl::Status SetPasswordHash(std::string_view username, std::string_view password_hash) override;
  absl::Status SetScramKeys(std::string_view username, std::string_view password_hash,
                            std::string_view scram_sha256) override;
  absl::StatusOr<UserRecord> FindUser(std::string_view username) override;
  absl::StatusOr<UserRecord> FindUserById(uint64_t user_id) override;
  absl::StatusOr<std::vector<UserRecord>> ListUsers() override;
  absl::StatusOr<int> RecordAuthFailure(std::string_view key, int64_t now_ms,
                                        int64_t window_ms) override;
  absl::StatusOr<std::pair<int, int64_t>> AuthFailures(std::string_view key, int64_t now_ms,
                                                       int64_t window_ms) override;
  absl::Status ClearAuthFailures(std::string_view key) override;
  absl::StatusOr<AuthReservation> ReserveAuthAttempt(const std::vector<std::string>& keys,
                                                     std::string_view address, int64_t now_ms,
                                                     const AuthAttemptLimits& limits,
                                                     const AuthAttemptPolicy& policy) override;
  absl::Status ReleaseAuthAttempt(const std::vector<int64_t>& rows) override;
  absl::StatusOr<std::string> GetOrCreateSecret(std::string_view name,
                                                std::string_view initial_value) override;
  absl::StatusOr<std::string> FindSecret(std::string_view name) override;
  absl::Status DeleteSecret(std::string_view name) override;
  absl::StatusOr<v1::ListMailboxesResponse> ListMailboxes(
      uint64_t user_id, const v1::ListMailboxesRequest& request) override;
  absl::StatusOr<v1::CreateMailboxResponse> CreateMailbox(
      uint64_t user_id, const v1::CreateMailboxRequest& request) override;
  absl::Status DeleteMailbox(uint64_t user_id, const v1::DeleteMailboxRequest& request) override;
  absl::Status RenameMailbox(uint64_t user_id, const v1::RenameMailboxRequest& request) override;
  absl::Status SetSubscription(uint64_t user_id,
                               const v1::SetSubscriptionRequest& request) override;
  absl::StatusOr<v1::StatusResponse> Status(uint64_t user_id,
                                            const v1::StatusRequest& request) override;
  absl::StatusOr<v1::PrepareImportResponse> PrepareImport(
      uint64_t user_id, const v1::PrepareImportRequest& request) override;
  absl::StatusOr<v1::FinishImportResponse> FinishImport(
      uint64_t user_id, const v1::FinishImportRequest& request) override;
  absl::Status SetQuota(std::string_view username, const v1::QuotaLimits& limits) override;
  absl::StatusOr<v1::GetUserQuotaResponse> GetUserQuota(uint64_t user_id) override;
  absl::StatusOr<v1::GetQuotaResponse> GetQuota(uint64_t user_id,
                                                const v1::GetQuotaRequest& request) override;
  absl::StatusOr<v1::GetMetadataResponse> GetMetadata(
      uint64_t user_id, const v1::GetMetadataRequest& request) override;
  absl::Status SetMetadata(uint64_t user_id, const v1::SetMetadataRequest& request) override;
  absl::StatusOr<v1::OpenResponse> Open(uint64_t user_id, const v1::OpenRequest& request) override;
  absl::StatusOr<v1::ClaimRecentResponse> ClaimRecent(
      uint64_t user_id, const v1::ClaimRecentRequest& request) override;
  absl::StatusOr<v1::VanishedResponse> Vanished(uint64_t user_id,
                                                const v1::VanishedRequest& request) override;
  absl::Status Fetch(uint64_t user_id, const v1::FetchRequest& request, FetchSink& sink) override;
  absl::StatusOr<v1::StoreResponse> StoreFlags(uint64_t user_id,
                                               const v1::StoreRequest& request) override;
  absl::StatusOr<v1::CopyResponse> Copy(uint64_t user_id, const v1::CopyRequest& request) override;
  absl::StatusOr<v1::MoveResponse> Move(uint64_t user_id, const v1::MoveRequest& request) override;
  absl::StatusOr<v1::ExpungeResponse> Expunge(uint64_t user_id,
                                              const v1::ExpungeRequest& request) override;
  absl::StatusOr<v1::AppendResponse> Append(uint64_t user_id, std::string_view mailbox,
                                            std::vector<NewMessage> messages) override;
  absl::StatusOr<v1::SearchResponse> Search(uint64_t user_id, const v1::SearchRequest& request,
                                            WorkBudget& budget) override;
  absl::StatusOr<std::vector<SortableMessage>> SortableMessages(uint64_t user_id,
                                                                uint64_t mailbox_id,
                                                                uint32_t uidvalidity,
                                                                const v1::UidSet& uids) override;
  absl::StatusOr<std::vector<uint32_t>> SortedUids(
      uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids,
      const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) override;
  absl::StatusOr<v1::ReviseResponse> Revise(uint64_t user_id, const v1::ReviseHeader& header,
                                            std::string content) override;
  absl::Status ReadChanges(uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity,
                           uint64_t from_modseq, std::vector<v1::ChangeEvent>* out) override;

 private:
  Store* inner_;
  StoreMetrics* metrics_;
};

}  // namespace mailbox::store
