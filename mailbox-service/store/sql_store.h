// The mailbox store (store.h) on a SQL database: every query and rule of the store,
// written once for the backends. A backend (sqlite_store.h, postgres/pg_store.h)
// supplies connections, transactions and the bytes of message content:
//
// * Write runs a body in a write transaction and returns once it is durable. Its
//   WriteScope names what the body changes (one user's mailboxes, the accounts,
//   the login throttle, the secrets): writes of one scope run one at a time, so a
//   body sees every earlier write of its scope, on any backend. It may run the body
//   more than once (PostgreSQL retries a transaction that met a concurrent write of
//   shared rows, such as message content), so a body assigns its results rather
//   than adding to them. It then hands the events the body logged to the sink (RunWrite collects
//   them), each mailbox's in MODSEQ order.
// * Reader lends a connection for reads; ReadSnapshot opens one consistent snapshot
//   on it where a method reads more than once.
// * StoreContentBytes and OpenContent keep and read message bytes, which SQLite
//   holds in one blob and PostgreSQL in pieces.
//
// The schema every backend provides has the same tables and columns (see
// sqlite_schema.cc, postgres/pg_schema.cc): all integers 64-bit, names compared as
// bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <type_traits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/store/message_content.h"
#include "mailbox-service/store/sql_db.h"
#include "mailbox-service/store/store.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

// Reads one message's stored bytes.
class ContentReader {
 public:
  virtual ~ContentReader() = default;
  virtual uint64_t size() const = 0;
  // Appends bytes [offset, offset + length) to *out.
  virtual absl::Status Read(uint64_t offset, uint64_t length, std::string* out) = 0;
};

// The query SqlStore::SortedUids runs: the UIDs of one mailbox (bound first) in
// the order of `criteria`. Exposed so that tests can check how the database
// plans it.
std::string SortedUidsQuery(
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria);

class SqlStore : public Store {
 public:
  ~SqlStore() override;

  absl::StatusOr<uint64_t> CreateUser(std::string_view username,
                                      std::string_view password_hash) override;
  absl::Status DeleteUser(std::string_view username) override;
  absl::Status SetPasswordHash(std::string_view username,
                               std::string_view password_hash) override;
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
  absl::Status DeleteMailbox(uint64_t user_id,
                             const v1::DeleteMailboxRequest& request) override;
  absl::Status RenameMailbox(uint64_t user_id,
                             const v1::RenameMailboxRequest& request) override;
  absl::Status SetSubscription(uint64_t user_id,
                               const v1::SetSubscriptionRequest& request) override;
  absl::StatusOr<v1::StatusResponse> Status(uint64_t user_id,
                                            const v1::StatusRequest& request) override;
  absl::Status SetQuota(std::string_view username, const v1::QuotaLimits& limits) override;
  absl::StatusOr<v1::GetUserQuotaResponse> GetUserQuota(uint64_t user_id) override;
  absl::StatusOr<v1::GetQuotaResponse> GetQuota(uint64_t user_id,
                                                const v1::GetQuotaRequest& request) override;
  absl::StatusOr<v1::GetMetadataResponse> GetMetadata(
      uint64_t user_id, const v1::GetMetadataRequest& request) override;
  absl::Status SetMetadata(uint64_t user_id, const v1::SetMetadataRequest& request) override;

  absl::StatusOr<v1::OpenResponse> Open(uint64_t user_id,
                                        const v1::OpenRequest& request) override;
  absl::StatusOr<v1::ClaimRecentResponse> ClaimRecent(
      uint64_t user_id, const v1::ClaimRecentRequest& request) override;
  absl::StatusOr<v1::VanishedResponse> Vanished(uint64_t user_id,
                                                const v1::VanishedRequest& request) override;
  absl::Status Fetch(uint64_t user_id, const v1::FetchRequest& request,
                     FetchSink& sink) override;
  absl::StatusOr<v1::StoreResponse> StoreFlags(uint64_t user_id,
                                               const v1::StoreRequest& request) override;
  absl::StatusOr<v1::CopyResponse> Copy(uint64_t user_id,
                                        const v1::CopyRequest& request) override;
  absl::StatusOr<v1::MoveResponse> Move(uint64_t user_id,
                                        const v1::MoveRequest& request) override;
  absl::StatusOr<v1::ExpungeResponse> Expunge(uint64_t user_id,
                                              const v1::ExpungeRequest& request) override;
  absl::StatusOr<v1::PrepareImportResponse> PrepareImport(
      uint64_t user_id, const v1::PrepareImportRequest& request) override;
  absl::StatusOr<v1::FinishImportResponse> FinishImport(
      uint64_t user_id, const v1::FinishImportRequest& request) override;
  absl::StatusOr<v1::AppendResponse> Append(uint64_t user_id, std::string_view mailbox,
                                            std::vector<NewMessage> messages) override;
  using Store::Search;
  absl::StatusOr<v1::SearchResponse> Search(uint64_t user_id, const v1::SearchRequest& request,
                                            WorkBudget& budget) override;
  absl::StatusOr<std::vector<SortableMessage>> SortableMessages(
      uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity,
      const v1::UidSet& uids) override;
  absl::StatusOr<std::vector<uint32_t>> SortedUids(
      uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids,
      const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) override;
  absl::StatusOr<v1::ReviseResponse> Revise(uint64_t user_id,
                                            const v1::ReviseHeader& header,
                                            std::string content) override;

  absl::Status ReadChanges(uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity,
                           uint64_t from_modseq,
                           std::vector<v1::ChangeEvent>* out) override;

  // The transaction context of a write body; public only so that helpers in the
  // .cc file can name it.
  class WriteTx;

  // A reference to a write body (a callable taking WriteTx&), like
  // absl::FunctionRef, which cannot name the incomplete WriteTx. The body must
  // outlive the call it is passed to.
  class WriteBody {
   public:
    template <typename F,
              typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, WriteBody>>>
    WriteBody(F&& body)  // NOLINT(google-explicit-constructor): as absl::FunctionRef
        : body_(const_cast<void*>(static_cast<const void*>(std::addressof(body)))),
          call_([](void* target, WriteTx& tx) -> absl::Status {
            return (*static_cast<std::remove_reference_t<F>*>(target))(tx);
          }) {}
    absl::Status operator()(WriteTx& tx) const { return call_(body_, tx); }

   private:
    void* body_;
    absl::Status (*call_)(void*, WriteTx&);
  };

  // What a write serializes with (see Write above). Scopes are coarse on purpose:
  // one lock per write, so writes never wait on each other in a cycle.
  struct WriteScope {
    enum class Kind : uint8_t { kUser = 1, kAccounts = 2, kAuth = 3, kSecrets = 4 };
    static WriteScope User(uint64_t user_id) { return {Kind::kUser, user_id}; }
    static WriteScope Accounts() { return {Kind::kAccounts, 0}; }
    static WriteScope Auth() { return {Kind::kAuth, 0}; }
    static WriteScope Secrets() { return {Kind::kSecrets, 0}; }
    // One 64-bit number per scope (the kind in the top byte); two scopes sharing
    // one would only wait for each other.
    int64_t Key() const {
      return static_cast<int64_t>((static_cast<uint64_t>(kind) << 56) |
                                  (id & ((uint64_t{1} << 56) - 1)));
    }
    Kind kind;
    uint64_t id;
  };

  // Refuses limits and options no backend can honour.
  static absl::Status ValidateConfig(const StoreLimits& limits, const StoreOptions& options);

 protected:
  SqlStore(StoreLimits limits, EventSink events, StoreOptions options);

  // A connection lent for one call; the deleter gives it back to the backend.
  using ReaderLease = std::unique_ptr<sql::Connection, std::function<void(sql::Connection*)>>;

  // --- What a backend provides ---------------------------------------------------
  virtual absl::Status Write(WriteScope scope, WriteBody body) = 0;
  virtual absl::StatusOr<ReaderLease> Reader() = 0;
  // Stores the bytes of the content row `content_id` just inserted.
  virtual absl::Status StoreContentBytes(sql::Connection& conn, int64_t content_id,
                                         const PreparedContent& content) = 0;
  virtual absl::StatusOr<std::unique_ptr<ContentReader>> OpenContent(sql::Connection& conn,
                                                                     int64_t content_id) = 0;
  // Called inside a write that may have left content no message refers to. The
  // default drops it in that transaction; a backend with concurrent writers may
  // defer it (the scan reads every user's unreferenced content).
  virtual absl::Status ContentReleased(sql::Connection& conn);

  // --- For backends ------------------------------------------------------------------
  // Runs `body` as one write on `conn`, inside the backend's transaction; when it
  // succeeds, appends the events it logged to *events.
  absl::Status RunWrite(sql::Connection& conn, WriteBody body, int64_t now_ms,
                        std::vector<v1::ChangeEvent>* events);
  // A share of the retention cleanup: at most PruneBatch() expunged messages past
  // their retention, then the content that freed. Returns how many it pruned.
  absl::StatusOr<int64_t> PruneExpired(sql::Connection& conn, int64_t now_ms);
  static int64_t PruneBatch();
  // Drops content rows no message refers to.
  static absl::Status CollectUnreferencedContent(sql::Connection& conn);
  // Unix milliseconds now, from options().clock.
  int64_t NowMs() const;

  const StoreLimits& limits() const { return limits_; }
  const EventSink& events() const { return events_; }

 private:
  // Finds the content row with this hash, or stores it (parsing now if the caller
  // did not, e.g. because the content was garbage-collected after it looked).
  absl::StatusOr<int64_t> EnsureContent(sql::Connection& conn, PreparedContent& content);
  // Stores values of content rows made on a read (previews, sort keys of content
  // from before they were kept), `update_sql` binding the value (as a blob or as
  // text) and the content id, in bounded batches of writes; a failure only means
  // they are made again.
  void KeepMadeContentValues(uint64_t user_id, const char* update_sql, bool blob,
                             const std::map<int64_t, std::string>& made);
  // The SORT/THREAD keys of the content row `content_id`: `made_at_ingest` (the
  // encoded keys of content this write parsed) when given, else the kept ones,
  // or made from its header for content stored before they were kept.
  absl::StatusOr<SortKeys> ContentSortKeys(sql::Connection& conn, int64_t content_id,
                                           std::string_view made_at_ingest = {});
  // ContentSortKeys for code outside the class (the copy of messages).
  std::function<absl::StatusOr<SortKeys>(sql::Connection&, int64_t)> SortKeysOfContent() {
    return [this](sql::Connection& conn, int64_t content_id) {
      return ContentSortKeys(conn, content_id);
    };
  }
  // The keys of that content made from the first `header_size` octets, encoded.
  absl::StatusOr<std::string> MakeSortKeys(sql::Connection& conn, int64_t content_id,
                                           uint64_t header_size);
  // Gives the message rows of the mailbox written before rows carried their sort
  // keys (sort_date NULL) their keys, in bounded batches of writes.
  absl::Status FillSortColumns(uint64_t user_id, uint64_t mailbox_id);

  const StoreLimits limits_;
  const EventSink events_;
  const StoreOptions options_;
  OctetGate search_memory_;
};

}  // namespace mailbox::store
