#include "storage-client/fake_mailbox_store.h"

#include <algorithm>
#include <ctime>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "common/mailbox/flags.h"
#include "mailbox-service/mime/mime.h"
#include "common/mailbox/list.h"
#include "common/mailbox/names.h"
#include "common/mailbox/object_ids.h"
#include "common/mailbox/quota.h"
#include "common/mailbox/uid_sets.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::client {
namespace {

// An EMAILID for the fake: stable for the same content within a process (the
// store derives it from the content's SHA-256).
std::string FakeEmailId(const std::string& content) {
  const uint64_t h = std::hash<std::string>{}(content);
  std::string digest(12, '\0');
  for (int i = 0; i < 8; ++i) {
    digest[i] = static_cast<char>(h >> (8 * i));
  }
  return rules::EmailObjectId(digest);
}

using boost::asio::awaitable;

constexpr size_t kChunkOctets = 256 << 10;  // as the service chunks sections
constexpr int kMaxSearchDepth = 64;

absl::string_view View(const std::string& s) { return absl::string_view(s.data(), s.size()); }

absl::Status FakeUnsupported(std::string_view what) {
  return absl::UnimplementedError(absl::StrCat("FakeMailboxStore does not model ",
                                               absl::string_view(what.data(), what.size())));
}

void SetFlags(google::protobuf::RepeatedPtrField<std::string>* out,
              const std::set<std::string>& flags) {
  out->Clear();
  for (const std::string& flag : flags) {
    *out->Add() = flag;
  }
}

class FakeFetchStream final : public FetchStream {
 public:
  explicit FakeFetchStream(absl::StatusOr<std::deque<v1::FetchResponse>> items)
      : items_(std::move(items)) {}

  awaitable<absl::StatusOr<std::optional<v1::FetchResponse>>> Next() override {
    if (cancelled_) {
      co_return absl::CancelledError("fetch cancelled");
    }
    if (!items_.ok()) {
      co_return items_.status();
    }
    if (items_->empty()) {
      co_return std::nullopt;
    }
    v1::FetchResponse item = std::move(items_->front());
    items_->pop_front();
    co_return item;
  }
  void Cancel() override { cancelled_ = true; }

 private:
  absl::StatusOr<std::deque<v1::FetchResponse>> items_;
  bool cancelled_ = false;
};

// Commits a finished upload; overloaded per stream type.
absl::StatusOr<v1::AppendResponse> CommitUpload(FakeMailboxStore& store, const Session& session,
                                                const std::vector<v1::AppendRequest>& items) {
  return store.CommitAppend(session, items);
}
absl::StatusOr<v1::ReviseResponse> CommitUpload(FakeMailboxStore& store, const Session& session,
                                                const std::vector<v1::ReviseRequest>& items) {
  return store.CommitRevise(session, items);
}

// Collects the items and commits them all at Finish, as the service does.
template <typename Item, typename Reply>
class FakeUploadStream final : public UploadStream<Item, Reply> {
 public:
  FakeUploadStream(FakeMailboxStore* store, Session session)
      : store_(store), session_(std::move(session)) {}

  awaitable<absl::Status> Write(Item item) override {
    if (done_) {
      co_return absl::FailedPreconditionError("write after the upload finished");
    }
    items_.push_back(std::move(item));
    co_return absl::OkStatus();
  }
  awaitable<absl::StatusOr<Reply>> Finish() override {
    if (done_) {
      co_return absl::FailedPreconditionError("upload already finished");
    }
    done_ = true;
    absl::StatusOr<Reply> reply = CommitUpload(*store_, session_, items_);
    co_return reply;
  }
  void Cancel() override { done_ = true; }

 private:
  FakeMailboxStore* store_;
  Session session_;
  std::vector<Item> items_;
  bool done_ = false;
};

}  // namespace

// The fake's change feed: events are queued by the store as it commits.
class FakeChangeFeed final : public ChangeFeed {
 public:
  FakeChangeFeed(FakeMailboxStore* store, boost::asio::any_io_executor executor)
      : store_(store), signal_(executor) {}
  ~FakeChangeFeed() override {
    Close();
    store_->RemoveFeed(this);
  }

  void Subscribe(uint64_t mailbox_id, uint32_t uidvalidity, uint64_t from_modseq,
                 std::string session_token) override {
    subscribed_.insert(mailbox_id);
    absl::Status status =
        store_->SubscribeFeed(this, mailbox_id, uidvalidity, from_modseq, session_token);
    if (!status.ok()) {
      v1::ChangeEvent event;
      event.set_mailbox_id(mailbox_id);
      *event.mutable_resync()->mutable_reason() = v1::DetailOf(status);
      Deliver(std::move(event));
    }
  }

  void Unsubscribe(uint64_t mailbox_id) override {
    subscribed_.erase(mailbox_id);
    std::erase_if(events_, [mailbox_id](const v1::ChangeEvent& event) {
      return event.mailbox_id() == mailbox_id;
    });
  }

  // The fake announces no mailbox-list changes: a subscription only gets its
  // marker (the service's behaviour is pinned by its own tests).
  void SubscribeList(uint64_t user_id, std::string session_token) override {
    lists_.insert(user_id);
    v1::ChangeEvent marker;
    marker.set_user_id(user_id);
    marker.mutable_subscribed();
    Deliver(std::move(marker));
  }

  void UnsubscribeList(uint64_t user_id) override {
    lists_.erase(user_id);
    std::erase_if(events_, [user_id](const v1::ChangeEvent& event) {
      return event.mailbox_id() == 0 && event.user_id() == user_id;
    });
  }

  awaitable<absl::StatusOr<v1::ChangeEvent>> Next() override {
    for (;;) {
      if (closed_) {
        co_return absl::CancelledError("change feed closed");
      }
      if (!events_.empty()) {
        v1::ChangeEvent event = std::move(events_.front());
        events_.pop_front();
        co_return event;
      }
      signal_.expires_at(boost::asio::steady_timer::time_point::max());
      co_await signal_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
  }

  void Close() override {
    closed_ = true;
    signal_.cancel();
  }

  bool IsSubscribed(uint64_t mailbox_id) const { return subscribed_.contains(mailbox_id); }

  void Deliver(v1::ChangeEvent event) {
    if (event.mailbox_id() == 0 && event.user_id() != 0) {
      if (!lists_.contains(event.user_id()) || closed_) {
        return;
      }
      events_.push_back(std::move(event));
      signal_.cancel();
      return;
    }
    if (!subscribed_.contains(event.mailbox_id()) || closed_) {
      return;
    }
    if (event.has_resync() || event.has_deleted()) {
      subscribed_.erase(event.mailbox_id());
    }
    events_.push_back(std::move(event));
    signal_.cancel();
  }

 private:
  FakeMailboxStore* store_;
  boost::asio::steady_timer signal_;
  std::deque<v1::ChangeEvent> events_;
  std::set<uint64_t> subscribed_;
  std::set<uint64_t> lists_;  // users whose mailbox list is subscribed
  bool closed_ = false;
};

FakeMailboxStore::FakeMailboxStore() = default;
FakeMailboxStore::~FakeMailboxStore() = default;

uint64_t FakeMailboxStore::AddUser(std::string username, std::string password) {
  User& user = users_[username];
  user.id = next_user_id_++;
  user.username = std::move(username);
  user.password = std::move(password);
  NewMailbox(user.id, "INBOX");
  user.subscriptions.insert("INBOX");
  return user.id;
}

Session FakeMailboxStore::SessionFor(const std::string& username) {
  std::string token = absl::StrCat("fake-session-", next_session_++);
  auto it = users_.find(username);
  sessions_[token] = it == users_.end() ? 0 : it->second.id;
  return Session(std::move(token));
}

void FakeMailboxStore::FailNextCalls(absl::Status status, int count) {
  injected_error_ = std::move(status);
  injected_count_ = count;
}

absl::Status FakeMailboxStore::Enter() {
  ++calls_;
  if (injected_count_ > 0) {
    --injected_count_;
    return injected_error_;
  }
  return absl::OkStatus();
}

absl::StatusOr<FakeMailboxStore::User*> FakeMailboxStore::UserOf(const Session& session) {
  auto it = sessions_.find(session.token);
  if (it != sessions_.end()) {
    for (auto& [name, user] : users_) {
      if (user.id == it->second) {
        return &user;
      }
    }
  }
  return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                       "unknown or expired session");
}

FakeMailboxStore::Mailbox* FakeMailboxStore::FindByName(uint64_t owner, const std::string& name) {
  const std::string canonical = rules::CanonicalMailboxName(name);
  for (auto& [id, mailbox] : mailboxes_) {
    if (mailbox->owner == owner && mailbox->name == canonical) {
      return mailbox.get();
    }
  }
  return nullptr;
}

absl::StatusOr<FakeMailboxStore::Mailbox*> FakeMailboxStore::EnterSelected(
    const Session& session, uint64_t mailbox_id, uint32_t uidvalidity) {
  if (absl::Status status = Enter(); !status.ok()) {
    return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    return user.status();
  }
  return Selected(**user, mailbox_id, uidvalidity);
}

absl::StatusOr<FakeMailboxStore::Mailbox*> FakeMailboxStore::Selected(const User& user,
                                                                      uint64_t mailbox_id,
                                                                      uint32_t uidvalidity) {
  auto it = mailboxes_.find(mailbox_id);
  if (it == mailboxes_.end() || it->second->owner != user.id ||
      it->second->uidvalidity != uidvalidity) {
    return v1::MakeError(absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED,
                         "the selected mailbox no longer exists");
  }
  return it->second.get();
}

FakeMailboxStore::Mailbox& FakeMailboxStore::NewMailbox(uint64_t owner, const std::string& name) {
  auto mailbox = std::make_unique<Mailbox>();
  mailbox->id = next_mailbox_id_++;
  mailbox->owner = owner;
  mailbox->name = rules::CanonicalMailboxName(name);
  mailbox->uidvalidity = next_uidvalidity_++;
  Mailbox& result = *mailbox;
  mailboxes_[result.id] = std::move(mailbox);
  return result;
}

void FakeMailboxStore::Publish(Mailbox& mailbox, v1::ChangeEvent event) {
  event.set_mailbox_id(mailbox.id);
  mailbox.log.push_back(event);
  for (FakeChangeFeed* feed : feeds_) {
    feed->Deliver(event);
  }
}

uint32_t FakeMailboxStore::AddMessage(Mailbox& mailbox, Message message, uint64_t modseq) {
  const uint32_t uid = mailbox.uidnext++;
  message.modseq = modseq;
  message.save_date_unix = static_cast<int64_t>(std::time(nullptr));
  mailbox.messages[uid] = std::move(message);
  return uid;
}

// --- Authentication and mailboxes ----------------------------------------------

awaitable<absl::StatusOr<v1::AuthenticateResponse>> FakeMailboxStore::Authenticate(
    v1::AuthenticateRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  if (request.mechanism() != v1::PASSWORD) {
    co_return FakeUnsupported("authentication mechanisms other than PASSWORD");
  }
  auto it = users_.find(request.username());
  if (it == users_.end() || it->second.password != request.password() ||
      (!request.authzid().empty() && request.authzid() != request.username())) {
    co_return v1::MakeError(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                            "invalid credentials");
  }
  Session session = SessionFor(request.username());
  v1::AuthenticateResponse response;
  response.mutable_principal()->set_user_id(it->second.id);
  response.mutable_principal()->set_username(it->second.username);
  response.set_session_token(session.token);
  co_return response;
}

awaitable<absl::StatusOr<v1::ListMailboxesResponse>> FakeMailboxStore::ListMailboxes(
    Session session, v1::ListMailboxesRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  std::vector<rules::ListedMailbox> mailboxes;
  for (const auto& [id, mailbox] : mailboxes_) {
    if (mailbox->owner == (*user)->id) {
      mailboxes.push_back({.name = mailbox->name, .id = mailbox->id,
                           .special_use = mailbox->special_use});
    }
  }
  co_return rules::BuildListResponse(request, std::move(mailboxes), (*user)->subscriptions);
}

awaitable<absl::StatusOr<v1::CreateMailboxResponse>> FakeMailboxStore::CreateMailbox(
    Session session, v1::CreateMailboxRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  if (request.name().empty() || request.name().front() == '/' || request.name().back() == '/') {
    co_return v1::BadRequest("invalid mailbox name");
  }
  if (FindByName((*user)->id, request.name()) != nullptr) {
    co_return v1::MakeError(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                            "mailbox already exists");
  }
  // RFC 3501 §6.3.3: superiors that do not exist are created too.
  const std::string name = rules::CanonicalMailboxName(request.name());
  for (size_t slash = name.find('/'); slash != std::string::npos;
       slash = name.find('/', slash + 1)) {
    if (FindByName((*user)->id, name.substr(0, slash)) == nullptr) {
      NewMailbox((*user)->id, name.substr(0, slash));
    }
  }
  Mailbox& mailbox = NewMailbox((*user)->id, name);
  mailbox.special_use.assign(request.special_use().begin(), request.special_use().end());
  v1::CreateMailboxResponse response;
  response.set_mailbox_id(mailbox.id);
  response.set_uidvalidity(mailbox.uidvalidity);
  co_return response;
}

awaitable<absl::StatusOr<v1::DeleteMailboxResponse>> FakeMailboxStore::DeleteMailbox(
    Session session, v1::DeleteMailboxRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  Mailbox* mailbox = FindByName((*user)->id, request.name());
  if (mailbox == nullptr) {
    co_return v1::Nonexistent("no such mailbox");
  }
  if (mailbox->name == "INBOX") {
    co_return v1::MakeError(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                            "INBOX cannot be deleted");
  }
  v1::ChangeEvent event;
  event.set_modseq(++mailbox->highest_modseq);
  event.mutable_deleted();
  Publish(*mailbox, std::move(event));
  mailboxes_.erase(mailbox->id);
  co_return v1::DeleteMailboxResponse();
}

awaitable<absl::StatusOr<v1::RenameMailboxResponse>> FakeMailboxStore::RenameMailbox(
    Session session, v1::RenameMailboxRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  Mailbox* mailbox = FindByName((*user)->id, request.from());
  if (mailbox == nullptr) {
    co_return v1::Nonexistent("no such mailbox");
  }
  if (mailbox->name == "INBOX") {
    co_return FakeUnsupported("renaming INBOX");
  }
  if (FindByName((*user)->id, request.to()) != nullptr) {
    co_return v1::MakeError(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                            "target mailbox already exists");
  }
  mailbox->name = rules::CanonicalMailboxName(request.to());
  v1::ChangeEvent event;
  event.set_modseq(++mailbox->highest_modseq);
  event.mutable_renamed()->set_new_name(mailbox->name);
  Publish(*mailbox, std::move(event));
  co_return v1::RenameMailboxResponse();
}

awaitable<absl::StatusOr<v1::SetSubscriptionResponse>> FakeMailboxStore::SetSubscription(
    Session session, v1::SetSubscriptionRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  if (request.subscribed()) {
    (*user)->subscriptions.insert(rules::CanonicalMailboxName(request.name()));
  } else {
    (*user)->subscriptions.erase(rules::CanonicalMailboxName(request.name()));
  }
  co_return v1::SetSubscriptionResponse();
}

awaitable<absl::StatusOr<v1::StatusResponse>> FakeMailboxStore::Status(
    Session session, v1::StatusRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  const Mailbox* mailbox = FindByName((*user)->id, request.name());
  if (mailbox == nullptr) {
    co_return v1::Nonexistent("no such mailbox");
  }
  v1::StatusResponse response;
  response.set_mailbox_id(mailbox->id);
  response.set_messages(static_cast<uint32_t>(mailbox->messages.size()));
  response.set_uidnext(mailbox->uidnext);
  response.set_uidvalidity(mailbox->uidvalidity);
  response.set_highest_modseq(mailbox->highest_modseq);
  uint64_t size = 0;
  for (const auto& [uid, message] : mailbox->messages) {
    size += message.content.size();
    response.set_unseen(response.unseen() + (message.flags.contains("\\Seen") ? 0 : 1));
    response.set_deleted(response.deleted() + (message.flags.contains("\\Deleted") ? 1 : 0));
    response.set_recent(response.recent() + (uid >= mailbox->recent_floor ? 1 : 0));
  }
  response.set_size(size);
  co_return response;
}

void FakeMailboxStore::SetQuota(const std::string& username, v1::QuotaLimits limits) {
  auto it = users_.find(username);
  if (it != users_.end()) {
    it->second.quota = std::move(limits);
  }
}

awaitable<absl::StatusOr<v1::GetQuotaResponse>> FakeMailboxStore::GetQuota(
    Session session, v1::GetQuotaRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  if (request.has_root() && !request.root().empty()) {
    co_return v1::Nonexistent("no such quota root");
  }
  if (request.has_mailbox() && FindByName((*user)->id, request.mailbox()) == nullptr) {
    co_return v1::Nonexistent("no such mailbox");
  }
  const v1::QuotaLimits& limits = (*user)->quota;
  v1::GetQuotaResponse response;
  if (!limits.has_storage_kib() && !limits.has_messages()) {
    if (request.has_root()) {
      co_return v1::Nonexistent("this account has no quota");
    }
    co_return response;
  }
  uint64_t octets = 0;
  uint64_t messages = 0;
  for (const auto& [id, mailbox] : mailboxes_) {
    if (mailbox->owner == (*user)->id) {
      for (const auto& [uid, message] : mailbox->messages) {
        octets += message.content.size();
        ++messages;
      }
    }
  }
  response.add_roots("");
  if (limits.has_storage_kib()) {
    v1::QuotaResource* r = response.add_resources();
    r->set_name("STORAGE");
    r->set_usage(rules::StorageUnits(octets));
    r->set_limit(limits.storage_kib());
  }
  if (limits.has_messages()) {
    v1::QuotaResource* r = response.add_resources();
    r->set_name("MESSAGE");
    r->set_usage(messages);
    r->set_limit(limits.messages());
  }
  co_return response;
}

absl::StatusOr<uint64_t> FakeMailboxStore::AnnotatedMailboxId(const User& user,
                                                               const std::string& mailbox) {
  if (mailbox.empty()) {
    return 0;  // the server's entries
  }
  const Mailbox* found = FindByName(user.id, mailbox);
  if (found == nullptr) {
    return v1::Nonexistent("no such mailbox");
  }
  return found->id;
}

// The fake keeps annotations without the service's name rules or limits.
awaitable<absl::StatusOr<v1::GetMetadataResponse>> FakeMailboxStore::GetMetadata(
    Session session, v1::GetMetadataRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  absl::StatusOr<uint64_t> mailbox_id = AnnotatedMailboxId(**user, request.mailbox());
  if (!mailbox_id.ok()) {
    co_return mailbox_id.status();
  }
  v1::GetMetadataResponse response;
  for (const auto& [key, value] : (*user)->metadata) {
    if (key.first != *mailbox_id) {
      continue;
    }
    for (const std::string& name : request.entries()) {
      const bool below = request.depth() != 0 && key.second.rfind(name + "/", 0) == 0;
      if (key.second == name || below) {
        v1::MetadataEntry* entry = response.add_entries();
        entry->set_name(key.second);
        entry->set_value(value);
        break;
      }
    }
  }
  co_return response;
}

awaitable<absl::StatusOr<v1::SetMetadataResponse>> FakeMailboxStore::SetMetadata(
    Session session, v1::SetMetadataRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  absl::StatusOr<uint64_t> mailbox_id = AnnotatedMailboxId(**user, request.mailbox());
  if (!mailbox_id.ok()) {
    co_return mailbox_id.status();
  }
  for (const v1::MetadataEntry& entry : request.entries()) {
    if (entry.has_value()) {
      (*user)->metadata[{*mailbox_id, entry.name()}] = entry.value();
    } else {
      (*user)->metadata.erase({*mailbox_id, entry.name()});
    }
  }
  co_return v1::SetMetadataResponse();
}

// --- Selected mailbox ------------------------------------------------------------

awaitable<absl::StatusOr<v1::OpenResponse>> FakeMailboxStore::Open(Session session,
                                                                   v1::OpenRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  Mailbox* mailbox = FindByName((*user)->id, request.name());
  if (mailbox == nullptr) {
    co_return v1::Nonexistent("no such mailbox");
  }
  v1::OpenResponse response;
  std::vector<uint32_t> recent;
  response.set_mailbox_id(mailbox->id);
  response.set_uidvalidity(mailbox->uidvalidity);
  response.set_uidnext(mailbox->uidnext);
  response.set_highest_modseq(mailbox->highest_modseq);
  std::set<std::string> flags = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"};
  std::vector<uint32_t> uids;
  for (const auto& [uid, message] : mailbox->messages) {
    uids.push_back(uid);
    if (uid >= mailbox->recent_floor) {
      recent.push_back(uid);
    }
    flags.insert(message.flags.begin(), message.flags.end());
    if (!message.flags.contains("\\Seen")) {
      response.set_unseen(response.unseen() + 1);
      if (response.first_unseen_uid() == 0) {
        response.set_first_unseen_uid(uid);
      }
    }
  }
  SetFlags(response.mutable_flags(), flags);
  SetFlags(response.mutable_permanent_flags(), flags);
  response.add_permanent_flags("\\*");
  response.set_messages(static_cast<uint32_t>(uids.size()));
  *response.mutable_uids() = rules::ToUidSet(uids);
  response.set_read_only(request.read_only());
  response.set_recent(static_cast<uint32_t>(recent.size()));
  if (!request.keep_recent()) {
    *response.mutable_recent_uids() = rules::ToUidSet(recent);
  }
  if (!request.read_only() && !request.keep_recent()) {
    mailbox->recent_floor = mailbox->uidnext;
  }
  co_return response;
}

awaitable<absl::StatusOr<v1::ClaimRecentResponse>> FakeMailboxStore::ClaimRecent(
    Session session, v1::ClaimRecentRequest request) {
  absl::StatusOr<Mailbox*> mailbox =
      EnterSelected(session, request.mailbox_id(), request.uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  v1::ClaimRecentResponse response;
  Mailbox& box = **mailbox;
  if (box.recent_floor > request.up_to_uid()) {
    co_return response;
  }
  std::vector<uint32_t> claimed;
  for (auto it = box.messages.lower_bound(box.recent_floor);
       it != box.messages.end() && it->first <= request.up_to_uid(); ++it) {
    claimed.push_back(it->first);
  }
  *response.mutable_claimed() = rules::ToUidSet(claimed);
  box.recent_floor = std::min(request.up_to_uid(), box.uidnext - 1) + 1;
  co_return response;
}

awaitable<absl::StatusOr<v1::VanishedResponse>> FakeMailboxStore::Vanished(
    Session session, v1::VanishedRequest request) {
  absl::StatusOr<Mailbox*> mailbox =
      EnterSelected(session, request.mailbox_id(), request.uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  rules::UidRanges within = rules::AllUids();
  if (request.uids().ranges_size() > 0) {
    absl::StatusOr<rules::UidRanges> ranges = rules::NormalizeUidSet(request.uids());
    if (!ranges.ok()) {
      co_return ranges.status();
    }
    within = *std::move(ranges);
  }
  // The fake logs every change, so its answer is always exact.
  std::vector<v1::ChangeEvent> events;
  for (const v1::ChangeEvent& event : (*mailbox)->log) {
    if (event.modseq() > request.since_modseq()) {
      events.push_back(event);
    }
  }
  v1::VanishedResponse response;
  *response.mutable_uids() = rules::ExpungedWithin(events, within);
  response.set_exact(true);
  co_return response;
}

std::unique_ptr<FetchStream> FakeMailboxStore::Fetch(Session session, v1::FetchRequest request) {
  auto build = [&]() -> absl::StatusOr<std::deque<v1::FetchResponse>> {
    if (absl::Status status = Enter(); !status.ok()) {
      return status;
    }
    absl::StatusOr<User*> user = UserOf(session);
    if (!user.ok()) {
      return user.status();
    }
    absl::StatusOr<Mailbox*> mailbox =
        Selected(**user, request.mailbox_id(), request.uidvalidity());
    if (!mailbox.ok()) {
      return mailbox.status();
    }
    if (absl::Status status = rules::NormalizeUidSet(request.uids()).status(); !status.ok()) {
      return status;
    }
    if (request.envelope() || request.body() || request.bodystructure()) {
      return FakeUnsupported("ENVELOPE, BODY or BODYSTRUCTURE");
    }
    for (const v1::Section& section : request.sections()) {
      if (section.part_size() > 0 || section.text() != v1::Section::TEXT_NONE ||
          section.binary() || section.size_only()) {
        return FakeUnsupported("sections other than BODY[] / BODY[]<partial>");
      }
    }
    std::deque<v1::FetchResponse> items;
    std::vector<uint32_t> seen_now;
    for (auto& [uid, message] : (*mailbox)->messages) {
      if (!rules::Contains(request.uids(), uid) ||
          (request.changed_since() > 0 && message.modseq <= request.changed_since())) {
        continue;
      }
      bool seen_changed = false;
      if (request.mark_seen() && !message.flags.contains("\\Seen")) {
        message.flags.insert("\\Seen");
        seen_changed = true;
        seen_now.push_back(uid);
      }
      v1::FetchResponse meta;
      v1::FetchedMetadata* metadata = meta.mutable_metadata();
      metadata->set_uid(uid);
      if (request.flags() || seen_changed) {
        SetFlags(metadata->mutable_flags(), message.flags);
      }
      if (request.internal_date()) {
        metadata->set_internal_date_unix(message.internal_date_unix);
        metadata->set_internal_date_tz_minutes(message.internal_date_tz_minutes);
      }
      if (request.size()) {
        metadata->set_size(message.content.size());
      }
      metadata->set_seen_changed(seen_changed);
      items.push_back(std::move(meta));
      for (int index = 0; index < request.sections_size(); ++index) {
        const v1::Section& section = request.sections(index);
        std::string_view data = message.content;
        if (section.has_partial()) {
          const uint64_t offset = std::min<uint64_t>(section.partial_offset(), data.size());
          data = data.substr(offset, section.partial_count());
        }
        size_t offset = 0;
        do {
          v1::FetchResponse chunk_item;
          v1::SectionChunk* chunk = chunk_item.mutable_chunk();
          chunk->set_uid(uid);
          chunk->set_section_index(static_cast<uint32_t>(index));
          if (offset == 0) {
            chunk->set_total_size(data.size());
          }
          const std::string_view piece = data.substr(offset, kChunkOctets);
          chunk->set_data(std::string(piece));
          offset += piece.size();
          chunk->set_last(offset >= data.size());
          items.push_back(std::move(chunk_item));
        } while (offset < data.size());
      }
    }
    if (!seen_now.empty()) {
      // One transaction: one MODSEQ for every message it changed.
      const uint64_t modseq = ++(*mailbox)->highest_modseq;
      v1::ChangeEvent event;
      event.set_modseq(modseq);
      for (uint32_t uid : seen_now) {
        Message& message = (*mailbox)->messages[uid];
        message.modseq = modseq;
        v1::MessageFlags* changed = event.mutable_flags_changed()->add_messages();
        changed->set_uid(uid);
        SetFlags(changed->mutable_flags(), message.flags);
        changed->set_modseq(modseq);
      }
      for (v1::FetchResponse& item : items) {
        if (item.has_metadata() && request.modseq()) {
          item.mutable_metadata()->set_modseq((*mailbox)->messages[item.metadata().uid()].modseq);
        }
      }
      Publish(**mailbox, std::move(event));
    } else if (request.modseq()) {
      for (v1::FetchResponse& item : items) {
        if (item.has_metadata()) {
          item.mutable_metadata()->set_modseq((*mailbox)->messages[item.metadata().uid()].modseq);
        }
      }
    }
    if (request.save_date() || request.preview()) {
      for (v1::FetchResponse& item : items) {
        if (!item.has_metadata()) {
          continue;
        }
        const Message& message = (*mailbox)->messages[item.metadata().uid()];
        if (request.save_date()) {
          item.mutable_metadata()->set_has_save_date(true);
          item.mutable_metadata()->set_save_date_unix(message.save_date_unix);
        }
        if (request.preview()) {
          // The store makes it at ingest; the fake when asked, the same way.
          absl::StatusOr<mime::ParsedMessage> parsed = mime::Parse(message.content);
          item.mutable_metadata()->set_has_preview(true);
          item.mutable_metadata()->set_preview(
              parsed.ok() ? mime::Preview(*parsed, message.content) : "");
        }
      }
    }
    if (request.email_id()) {
      for (v1::FetchResponse& item : items) {
        if (item.has_metadata()) {
          item.mutable_metadata()->set_email_id(
              FakeEmailId((*mailbox)->messages[item.metadata().uid()].content));
        }
      }
    }
    return items;
  };
  return std::make_unique<FakeFetchStream>(build());
}

awaitable<absl::StatusOr<v1::StoreResponse>> FakeMailboxStore::Store(Session session,
                                                                     v1::StoreRequest request) {
  absl::StatusOr<Mailbox*> mailbox =
      EnterSelected(session, request.mailbox_id(), request.uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  if (absl::Status status = rules::NormalizeUidSet(request.uids()).status(); !status.ok()) {
    co_return status;
  }
  if (request.mode() == v1::StoreRequest::MODE_UNSPECIFIED) {
    co_return v1::BadRequest("store mode missing");
  }
  if (absl::Status valid = rules::ParseFlags(request.flags()).status(); !valid.ok()) {
    co_return valid;
  }
  const std::set<std::string> flags(request.flags().begin(), request.flags().end());
  v1::StoreResponse response;
  std::vector<uint32_t> modified;
  const uint64_t modseq = (*mailbox)->highest_modseq + 1;
  v1::ChangeEvent event;
  event.set_modseq(modseq);
  for (auto& [uid, message] : (*mailbox)->messages) {
    if (!rules::Contains(request.uids(), uid)) {
      continue;
    }
    // RFC 7162 §3.2: UNCHANGEDSINCE fails messages changed after the value.
    if (request.has_unchanged_since() && message.modseq > request.unchanged_since()) {
      modified.push_back(uid);
      continue;
    }
    std::set<std::string> updated = message.flags;
    switch (request.mode()) {
      case v1::StoreRequest::SET:
        updated = flags;
        break;
      case v1::StoreRequest::ADD:
        updated.insert(flags.begin(), flags.end());
        break;
      default:
        for (const std::string& flag : flags) {
          updated.erase(flag);
        }
        break;
    }
    if (updated == message.flags) {
      continue;
    }
    message.flags = std::move(updated);
    message.modseq = modseq;
    v1::MessageFlags* changed = response.add_changed();
    changed->set_uid(uid);
    SetFlags(changed->mutable_flags(), message.flags);
    changed->set_modseq(modseq);
    *event.mutable_flags_changed()->add_messages() = *changed;
  }
  if (response.changed_size() > 0) {
    (*mailbox)->highest_modseq = modseq;
    Publish(**mailbox, std::move(event));
  }
  *response.mutable_modified() = rules::ToUidSet(modified);
  response.set_highest_modseq((*mailbox)->highest_modseq);
  co_return response;
}

awaitable<absl::StatusOr<v1::CopyResponse>> FakeMailboxStore::Copy(Session session,
                                                                   v1::CopyRequest request) {
  if (absl::Status status = Enter(); !status.ok()) {
    co_return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    co_return user.status();
  }
  absl::StatusOr<Mailbox*> source = Selected(**user, request.mailbox_id(), request.uidvalidity());
  if (!source.ok()) {
    co_return source.status();
  }
  if (absl::Status status = rules::NormalizeUidSet(request.uids()).status(); !status.ok()) {
    co_return status;
  }
  Mailbox* destination = FindByName((*user)->id, request.destination());
  if (destination == nullptr) {
    co_return v1::MakeError(absl::StatusCode::kNotFound, v1::TRYCREATE,
                            "destination mailbox does not exist");
  }
  v1::CopyResponse response;
  response.set_destination_uidvalidity(destination->uidvalidity);
  const uint64_t modseq = destination->highest_modseq + 1;
  v1::ChangeEvent event;
  event.set_modseq(modseq);
  std::vector<std::pair<uint32_t, Message>> copies;
  for (const auto& [uid, message] : (*source)->messages) {
    if (rules::Contains(request.uids(), uid)) {
      copies.emplace_back(uid, message);
    }
  }
  for (auto& [uid, message] : copies) {
    const uint32_t new_uid = AddMessage(*destination, std::move(message), modseq);
    response.add_source_uids(uid);
    response.add_destination_uids(new_uid);
    v1::MessageFlags* added = event.mutable_added()->add_messages();
    added->set_uid(new_uid);
    SetFlags(added->mutable_flags(), destination->messages[new_uid].flags);
    added->set_modseq(modseq);
  }
  if (!copies.empty()) {
    destination->highest_modseq = modseq;
    event.mutable_added()->set_uidnext(destination->uidnext);
    Publish(*destination, std::move(event));
  }
  co_return response;
}

awaitable<absl::StatusOr<v1::MoveResponse>> FakeMailboxStore::Move(Session session,
                                                                   v1::MoveRequest request) {
  v1::CopyRequest copy;
  copy.set_mailbox_id(request.mailbox_id());
  copy.set_uidvalidity(request.uidvalidity());
  *copy.mutable_uids() = request.uids();
  copy.set_destination(request.destination());
  absl::StatusOr<v1::CopyResponse> copied = co_await Copy(session, std::move(copy));
  if (!copied.ok()) {
    co_return copied.status();
  }
  Mailbox* source = mailboxes_[request.mailbox_id()].get();
  v1::MoveResponse response;
  response.set_destination_uidvalidity(copied->destination_uidvalidity());
  *response.mutable_source_uids() = copied->source_uids();
  *response.mutable_destination_uids() = copied->destination_uids();
  std::vector<uint32_t> moved(copied->source_uids().begin(), copied->source_uids().end());
  if (!moved.empty()) {
    for (uint32_t uid : moved) {
      source->messages.erase(uid);
    }
    v1::ChangeEvent event;
    event.set_modseq(++source->highest_modseq);
    *event.mutable_expunged()->mutable_uids() = rules::ToUidSet(moved);
    Publish(*source, std::move(event));
  }
  response.set_highest_modseq(source->highest_modseq);
  co_return response;
}

awaitable<absl::StatusOr<v1::ExpungeResponse>> FakeMailboxStore::Expunge(
    Session session, v1::ExpungeRequest request) {
  absl::StatusOr<Mailbox*> mailbox =
      EnterSelected(session, request.mailbox_id(), request.uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  std::vector<uint32_t> expunged;
  for (const auto& [uid, message] : (*mailbox)->messages) {
    if (message.flags.contains("\\Deleted") &&
        (!request.uids_only() || rules::Contains(request.uids(), uid))) {
      expunged.push_back(uid);
    }
  }
  for (uint32_t uid : expunged) {
    (*mailbox)->messages.erase(uid);
  }
  if (!expunged.empty()) {
    v1::ChangeEvent event;
    event.set_modseq(++(*mailbox)->highest_modseq);
    *event.mutable_expunged()->mutable_uids() = rules::ToUidSet(expunged);
    Publish(**mailbox, std::move(event));
  }
  v1::ExpungeResponse response;
  *response.mutable_expunged() = rules::ToUidSet(expunged);
  response.set_highest_modseq((*mailbox)->highest_modseq);
  co_return response;
}

// --- Search ------------------------------------------------------------------------

absl::StatusOr<bool> FakeMailboxStore::Matches(const Mailbox& mailbox, uint32_t uid,
                                               const Message& message, const v1::SearchKey& key,
                                               int depth) const {
  if (depth > kMaxSearchDepth) {
    return v1::BadRequest("search key nested too deeply");
  }
  const auto contains = [](const std::string& haystack, const std::string& needle) {
    return absl::StrContains(absl::AsciiStrToLower(View(haystack)),
                             absl::AsciiStrToLower(View(needle)));
  };
  switch (key.key_case()) {
    case v1::SearchKey::kAll:
      return true;
    case v1::SearchKey::kUid:
      return rules::Contains(key.uid(), uid);
    case v1::SearchKey::kFlag:
      return message.flags.contains(key.flag());
    case v1::SearchKey::kNotFlag:
      return !message.flags.contains(key.not_flag());
    case v1::SearchKey::kLarger:
      return message.content.size() > key.larger();
    case v1::SearchKey::kSmaller:
      return message.content.size() < key.smaller();
    case v1::SearchKey::kModseq:
      return message.modseq >= key.modseq();
    case v1::SearchKey::kEmailId:
      return FakeEmailId(message.content) == key.email_id();
    case v1::SearchKey::kInternalBeforeUnix:
      return message.internal_date_unix < key.internal_before_unix();
    case v1::SearchKey::kInternalSinceUnix:
      return message.internal_date_unix >= key.internal_since_unix();
    case v1::SearchKey::kHeader: {
      // Substring over the header block: enough for FROM/SUBJECT-style tests.
      const size_t end = message.content.find("\r\n\r\n");
      const std::string header = message.content.substr(0, end);
      return contains(header, key.header().field() + ":") &&
             contains(header, key.header().value());
    }
    case v1::SearchKey::kBody:
    case v1::SearchKey::kText:
      return contains(message.content,
                      key.key_case() == v1::SearchKey::kBody ? key.body() : key.text());
    case v1::SearchKey::kAnd:
      for (const v1::SearchKey& sub : key.and_().keys()) {
        absl::StatusOr<bool> matched = Matches(mailbox, uid, message, sub, depth + 1);
        if (!matched.ok() || !*matched) {
          return matched;
        }
      }
      return true;
    case v1::SearchKey::kOr: {
      absl::StatusOr<bool> a = Matches(mailbox, uid, message, key.or_().a(), depth + 1);
      if (!a.ok() || *a) {
        return a;
      }
      return Matches(mailbox, uid, message, key.or_().b(), depth + 1);
    }
    case v1::SearchKey::kNot: {
      absl::StatusOr<bool> matched = Matches(mailbox, uid, message, key.not_(), depth + 1);
      if (!matched.ok()) {
        return matched;
      }
      return !*matched;
    }
    case v1::SearchKey::KEY_NOT_SET:
      return v1::BadRequest("empty search key");
    default:
      return FakeUnsupported("date (SAVED* included) and \\Recent search keys");
  }
}

awaitable<absl::StatusOr<v1::SearchResponse>> FakeMailboxStore::Search(
    Session session, v1::SearchRequest request) {
  absl::StatusOr<Mailbox*> mailbox =
      EnterSelected(session, request.mailbox_id(), request.uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  const std::string charset = absl::AsciiStrToUpper(View(request.charset()));
  if (!charset.empty() && charset != "US-ASCII" && charset != "UTF-8") {
    co_return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::BADCHARSET,
                            "supported charsets: US-ASCII UTF-8");
  }
  rules::SearchMatches matches(request.view_last_uid());
  for (const auto& [uid, message] : (*mailbox)->messages) {
    absl::StatusOr<bool> matched = Matches(**mailbox, uid, message, request.key(), 0);
    if (!matched.ok()) {
      co_return matched.status();
    }
    if (*matched) {
      matches.Add(uid, message.modseq);
    }
  }
  co_return matches.Take();
}

// SORT by the keys a test double can answer without parsing headers (ARRIVAL,
// SIZE); ties in UID order (RFC 5256 §2.2). The mailbox service sorts by every key.
awaitable<absl::StatusOr<v1::SortResponse>> FakeMailboxStore::Sort(Session session,
                                                                  v1::SortRequest request) {
  for (const v1::SortCriterion& criterion : request.criteria()) {
    if (criterion.key() != v1::SortCriterion::ARRIVAL &&
        criterion.key() != v1::SortCriterion::SIZE) {
      co_return absl::UnimplementedError("the fake store sorts by ARRIVAL and SIZE only");
    }
  }
  if (request.criteria().empty()) {
    co_return v1::BadRequest("a sort needs at least one criterion");
  }
  absl::StatusOr<v1::SearchResponse> found = co_await Search(session, request.search());
  if (!found.ok()) {
    co_return found.status();
  }
  absl::StatusOr<Mailbox*> mailbox = EnterSelected(session, request.search().mailbox_id(),
                                                   request.search().uidvalidity());
  if (!mailbox.ok()) {
    co_return mailbox.status();
  }
  std::vector<uint32_t> uids;
  for (const v1::UidRange& range : found->uids().ranges()) {
    for (uint64_t uid = range.first(); uid <= range.last(); ++uid) {
      uids.push_back(static_cast<uint32_t>(uid));
    }
  }
  auto key_of = [&](uint32_t uid, v1::SortCriterion::Key key) -> int64_t {
    const Message& message = (*mailbox)->messages.at(uid);
    return key == v1::SortCriterion::SIZE ? static_cast<int64_t>(message.content.size())
                                          : message.internal_date_unix;
  };
  std::sort(uids.begin(), uids.end(), [&](uint32_t a, uint32_t b) {
    for (const v1::SortCriterion& criterion : request.criteria()) {
      const int64_t ka = key_of(a, criterion.key());
      const int64_t kb = key_of(b, criterion.key());
      if (ka != kb) return criterion.reverse() ? ka > kb : ka < kb;
    }
    return a < b;
  });
  v1::SortResponse response;
  for (const uint32_t uid : uids) response.add_uids(uid);
  response.set_highest_modseq(found->highest_modseq());
  co_return response;
}

awaitable<absl::StatusOr<v1::ThreadResponse>> FakeMailboxStore::Thread(Session,
                                                                      v1::ThreadRequest) {
  co_return absl::UnimplementedError("the fake store does not thread");
}

// --- Append, Revise -------------------------------------------------------------

std::unique_ptr<AppendStream> FakeMailboxStore::Append(Session session) {
  return std::make_unique<FakeUploadStream<v1::AppendRequest, v1::AppendResponse>>(
      this, std::move(session));
}

std::unique_ptr<ReviseStream> FakeMailboxStore::Revise(Session session) {
  return std::make_unique<FakeUploadStream<v1::ReviseRequest, v1::ReviseResponse>>(
      this, std::move(session));
}

absl::StatusOr<v1::AppendResponse> FakeMailboxStore::CommitAppend(
    const Session& session, const std::vector<v1::AppendRequest>& items) {
  if (absl::Status status = Enter(); !status.ok()) {
    return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    return user.status();
  }
  if (items.empty() || !items[0].has_mailbox()) {
    return v1::BadRequest("an append starts with the mailbox name");
  }
  Mailbox* mailbox = FindByName((*user)->id, items[0].mailbox());
  if (mailbox == nullptr) {
    return v1::MakeError(absl::StatusCode::kNotFound, v1::TRYCREATE,
                         "append target does not exist");
  }
  // Parse the whole stream before changing anything: all messages or none.
  struct Pending {
    v1::AppendMessage header;
    std::string content;
  };
  std::vector<Pending> pending;
  for (size_t i = 1; i < items.size(); ++i) {
    if (items[i].has_message()) {
      pending.push_back({items[i].message(), ""});
    } else if (items[i].has_chunk() && !pending.empty()) {
      pending.back().content += items[i].chunk();
    } else if (items[i].item_case() == v1::AppendRequest::kMore && !pending.empty() &&
               pending.back().content.size() == pending.back().header.size()) {
      // RFC 4469 CATENATE: the message grows by another part.
      pending.back().header.set_size(pending.back().header.size() + items[i].more());
    } else {
      return v1::BadRequest("unexpected item in append stream");
    }
  }
  if (pending.empty()) {
    return v1::BadRequest("append without a message");
  }
  for (const Pending& p : pending) {
    if (p.content.size() != p.header.size()) {
      return v1::BadRequest(absl::StrCat("message declared ", p.header.size(),
                                         " octets but carried ", p.content.size()));
    }
  }
  const uint64_t modseq = ++mailbox->highest_modseq;
  v1::AppendResponse response;
  response.set_mailbox_id(mailbox->id);
  response.set_uidvalidity(mailbox->uidvalidity);
  v1::ChangeEvent event;
  event.set_modseq(modseq);
  for (Pending& p : pending) {
    Message message;
    message.content = std::move(p.content);
    message.flags.insert(p.header.flags().begin(), p.header.flags().end());
    message.internal_date_unix = p.header.internal_date_unix();
    message.internal_date_tz_minutes = p.header.internal_date_tz_minutes();
    const uint32_t uid = AddMessage(*mailbox, std::move(message), modseq);
    response.add_uids(uid);
    v1::MessageFlags* added = event.mutable_added()->add_messages();
    added->set_uid(uid);
    SetFlags(added->mutable_flags(), mailbox->messages[uid].flags);
    added->set_modseq(modseq);
  }
  event.mutable_added()->set_uidnext(mailbox->uidnext);
  Publish(*mailbox, std::move(event));
  return response;
}

absl::StatusOr<v1::ReviseResponse> FakeMailboxStore::CommitRevise(
    const Session& session, const std::vector<v1::ReviseRequest>& items) {
  if (absl::Status status = Enter(); !status.ok()) {
    return status;
  }
  absl::StatusOr<User*> user = UserOf(session);
  if (!user.ok()) {
    return user.status();
  }
  if (items.empty() || !items[0].has_header()) {
    return v1::BadRequest("a revise starts with its header");
  }
  const v1::ReviseHeader& header = items[0].header();
  Mailbox* mailbox = nullptr;
  if (header.mailbox_id() != 0) {
    auto it = mailboxes_.find(header.mailbox_id());
    mailbox = it == mailboxes_.end() || it->second->owner != (*user)->id ? nullptr
                                                                         : it->second.get();
  } else {
    mailbox = FindByName((*user)->id, header.mailbox());
  }
  if (mailbox == nullptr) {
    return v1::Nonexistent("no such mailbox");
  }
  if (header.uidvalidity() != 0 && header.uidvalidity() != mailbox->uidvalidity) {
    return v1::MakeError(absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED,
                         "UIDVALIDITY does not match");
  }
  auto old = mailbox->messages.find(header.uid());
  if (old == mailbox->messages.end()) {
    return v1::MakeError(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such message");
  }
  std::string content;
  for (size_t i = 1; i < items.size(); ++i) {
    if (!items[i].has_chunk()) {
      return v1::BadRequest("unexpected item in revise stream");
    }
    content += items[i].chunk();
  }
  if (content.size() != header.size()) {
    return v1::BadRequest("revised content does not match the declared size");
  }
  Message message = old->second;
  message.content = std::move(content);
  if (header.replace_flags()) {
    message.flags = std::set<std::string>(header.flags().begin(), header.flags().end());
  }
  // The revision is a new message under a new UID; the old UID is expunged
  // (an IMAP message is immutable, RFC 3501 §2.3.1.1). Two MODSEQs, as the
  // service logs two changes.
  const uint64_t added_modseq = ++mailbox->highest_modseq;
  const uint32_t new_uid = AddMessage(*mailbox, std::move(message), added_modseq);
  v1::ChangeEvent added;
  added.set_modseq(added_modseq);
  v1::MessageFlags* flags = added.mutable_added()->add_messages();
  flags->set_uid(new_uid);
  SetFlags(flags->mutable_flags(), mailbox->messages[new_uid].flags);
  flags->set_modseq(added_modseq);
  added.mutable_added()->set_uidnext(mailbox->uidnext);
  added.set_more(true);  // the expunge follows in the same commit
  Publish(*mailbox, std::move(added));
  mailbox->messages.erase(header.uid());
  v1::ChangeEvent expunged;
  expunged.set_modseq(++mailbox->highest_modseq);
  *expunged.mutable_expunged()->mutable_uids() = rules::ToUidSet({header.uid()});
  Publish(*mailbox, std::move(expunged));

  v1::ReviseResponse response;
  response.set_uidvalidity(mailbox->uidvalidity);
  response.set_old_uid(header.uid());
  response.set_new_uid(new_uid);
  response.set_modseq(mailbox->highest_modseq);
  return response;
}

// --- Change feed --------------------------------------------------------------------

std::unique_ptr<ChangeFeed> FakeMailboxStore::OpenChangeFeed(
    boost::asio::any_io_executor executor) {
  auto feed = std::make_unique<FakeChangeFeed>(this, std::move(executor));
  feeds_.insert(feed.get());
  return feed;
}

absl::Status FakeMailboxStore::SubscribeFeed(FakeChangeFeed* feed, uint64_t mailbox_id,
                                             uint32_t uidvalidity, uint64_t from_modseq,
                                             const std::string& session_token) {
  absl::StatusOr<User*> user = UserOf(Session(session_token));
  if (!user.ok()) {
    return user.status();
  }
  absl::StatusOr<Mailbox*> mailbox = Selected(**user, mailbox_id, uidvalidity);
  if (!mailbox.ok()) {
    return mailbox.status();
  }
  for (const v1::ChangeEvent& event : (*mailbox)->log) {
    if (event.modseq() > from_modseq) {
      feed->Deliver(event);
    }
  }
  v1::ChangeEvent marker;
  marker.set_mailbox_id(mailbox_id);
  marker.set_modseq((*mailbox)->highest_modseq);
  marker.mutable_subscribed()->set_highest_modseq((*mailbox)->highest_modseq);
  feed->Deliver(std::move(marker));
  return absl::OkStatus();
}

void FakeMailboxStore::RemoveFeed(FakeChangeFeed* feed) { feeds_.erase(feed); }

void FakeMailboxStore::AnnounceListChange(const v1::ChangeEvent& event) {
  for (FakeChangeFeed* feed : feeds_) {
    feed->Deliver(event);
  }
}

}  // namespace mailbox::client
