// FakeMailboxStore: an in-memory MailboxStore FOR UNIT TESTS ONLY.
//
// It gives gateway command handlers something to run against without a mailbox
// service: users and password login, mailboxes (create, delete, rename, subscribe,
// list with "*"/"%"), append of whole messages, FETCH of flags, size, internal
// date, MODSEQ and BODY[] (whole message, with <partial>), STORE with
// UNCHANGEDSINCE, COPY, MOVE, EXPUNGE/UID EXPUNGE, REVISE, a SEARCH subset
// (ALL, UID, flags, LARGER/SMALLER, MODSEQ, HEADER/BODY/TEXT as substrings,
// AND/OR/NOT) and a change feed that replays from a MODSEQ.
//
// Not modelled (errors say so): MIME structure (ENVELOPE, BODYSTRUCTURE, BODY
// sections other than the whole message), \Recent, dates in SEARCH, INBOX rename,
// quotas. Tests can inject failures with FailNextCalls.
//
// Threading: none. Use the fake, its streams and feeds from one thread (one
// io_context run by the test thread). Every coroutine completes without suspending
// except ChangeFeed::Next, which waits for an event.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "proto/mailbox/v1/mailbox.pb.h"
#include "storage-client/mailbox_store.h"

namespace mailbox::client {

class FakeChangeFeed;

class FakeMailboxStore final : public MailboxStore {
 public:
  FakeMailboxStore();
  ~FakeMailboxStore() override;

  // --- Test setup -------------------------------------------------------------
  // Adds a user with an INBOX; returns the user id.
  uint64_t AddUser(std::string username, std::string password);
  // A session for `username` without going through Authenticate.
  Session SessionFor(const std::string& username);
  // Hands a mailbox-list event (mailbox_id 0, user_id set) to the feeds
  // subscribed to that list, as the service announces one after a commit; the
  // fake's own mailbox calls announce none.
  void AnnounceListChange(const v1::ChangeEvent& event);
  // The next `count` calls (of any kind) fail with `status` before doing anything.
  void FailNextCalls(absl::Status status, int count = 1);
  // The user's quota limits (RFC 9208), which GetQuota reports with the usage;
  // the fake does not refuse writes past them.
  void SetQuota(const std::string& username, v1::QuotaLimits limits);
  // How many calls were made (including failed ones).
  int calls() const { return calls_; }

  // --- MailboxStore -----------------------------------------------------------
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

  // Used by the fake's stream objects.
  absl::StatusOr<v1::AppendResponse> CommitAppend(const Session& session,
                                                  const std::vector<v1::AppendRequest>& items);
  absl::StatusOr<v1::ReviseResponse> CommitRevise(const Session& session,
                                                  const std::vector<v1::ReviseRequest>& items);
  absl::Status SubscribeFeed(FakeChangeFeed* feed, uint64_t mailbox_id, uint32_t uidvalidity,
                             uint64_t from_modseq, const std::string& session_token);
  void RemoveFeed(FakeChangeFeed* feed);

 private:
  struct Message {
    std::string content;
    std::set<std::string> flags;
    uint64_t modseq = 0;
    int64_t internal_date_unix = 0;
    int32_t internal_date_tz_minutes = 0;
    int64_t save_date_unix = 0;  // RFC 8514: set when added to a mailbox
  };
  struct Mailbox {
    uint64_t id = 0;
    uint64_t owner = 0;
    std::string name;
    uint32_t uidvalidity = 0;
    uint32_t uidnext = 1;
    uint64_t highest_modseq = 1;
    uint32_t recent_floor = 1;  // UIDs from here on are \Recent for the next claim
    std::vector<std::string> special_use;
    std::map<uint32_t, Message> messages;
    std::vector<v1::ChangeEvent> log;  // every change, for feed replay
  };
  struct User {
    uint64_t id = 0;
    std::string username;
    std::string password;
    std::set<std::string> subscriptions;
    v1::QuotaLimits quota;
    // Annotations by (mailbox id, 0 for the server; entry name).
    std::map<std::pair<uint64_t, std::string>, std::string> metadata;
  };

  absl::Status Enter();  // counts the call; applies FailNextCalls
  absl::StatusOr<User*> UserOf(const Session& session);
  Mailbox* FindByName(uint64_t owner, const std::string& name);
  // The mailbox an annotation request names: 0 for the server (""), NONEXISTENT
  // for a name the user has no mailbox of.
  absl::StatusOr<uint64_t> AnnotatedMailboxId(const User& user, const std::string& mailbox);
  absl::StatusOr<Mailbox*> Selected(const User& user, uint64_t mailbox_id, uint32_t uidvalidity);
  // Enter, then the caller's selected mailbox.
  absl::StatusOr<Mailbox*> EnterSelected(const Session& session, uint64_t mailbox_id,
                                         uint32_t uidvalidity);
  Mailbox& NewMailbox(uint64_t owner, const std::string& name);
  void Publish(Mailbox& mailbox, v1::ChangeEvent event);
  uint32_t AddMessage(Mailbox& mailbox, Message message, uint64_t modseq);
  absl::StatusOr<bool> Matches(const Mailbox& mailbox, uint32_t uid, const Message& message,
                               const v1::SearchKey& key, int depth) const;

  int calls_ = 0;
  absl::Status injected_error_;
  int injected_count_ = 0;
  uint64_t next_user_id_ = 1;
  uint64_t next_mailbox_id_ = 1;
  uint32_t next_uidvalidity_ = 1;
  uint64_t next_session_ = 1;
  std::map<std::string, User> users_;              // by username
  std::map<std::string, uint64_t> sessions_;       // token -> user id
  std::map<uint64_t, std::unique_ptr<Mailbox>> mailboxes_;  // by id
  std::set<FakeChangeFeed*> feeds_;
};

}  // namespace mailbox::client
