// The mailbox service as one IMAP session's commands see it: every call is made
// with the session's credential (so a handler cannot name another user's), and
// counted, so that the session can report how many calls to the mailbox service
// each IMAP command made (ops::Metrics::family_store_calls). A stream (Fetch,
// Append) counts once.
//
// The forwarding functions return the inner store's awaitables as they are (no
// coroutine frame of their own). The credential is read when a call is made: it
// is empty until the session has logged in.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "storage-client/mailbox_store.h"

namespace gateway {

class BoundStore {
 public:
  BoundStore(mailbox::client::MailboxStore* inner, const mailbox::client::Session* credential)
      : inner_(inner), credential_(credential) {}

  // Calls made since the last Take(); resets the count.
  uint64_t Take() { return std::exchange(calls_, 0); }

  template <typename T>
  using Awaitable = boost::asio::awaitable<absl::StatusOr<T>>;

  // The one call that needs no credential: it is how a session gets one.
  Awaitable<mailbox::v1::AuthenticateResponse> Authenticate(
      mailbox::v1::AuthenticateRequest request) {
    ++calls_;
    return inner_->Authenticate(std::move(request));
  }
  Awaitable<mailbox::v1::ListMailboxesResponse> ListMailboxes(
      mailbox::v1::ListMailboxesRequest request) {
    ++calls_;
    return inner_->ListMailboxes(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::CreateMailboxResponse> CreateMailbox(
      mailbox::v1::CreateMailboxRequest request) {
    ++calls_;
    return inner_->CreateMailbox(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::DeleteMailboxResponse> DeleteMailbox(
      mailbox::v1::DeleteMailboxRequest request) {
    ++calls_;
    return inner_->DeleteMailbox(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::RenameMailboxResponse> RenameMailbox(
      mailbox::v1::RenameMailboxRequest request) {
    ++calls_;
    return inner_->RenameMailbox(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::SetSubscriptionResponse> SetSubscription(
      mailbox::v1::SetSubscriptionRequest request) {
    ++calls_;
    return inner_->SetSubscription(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::StatusResponse> Status(mailbox::v1::StatusRequest request) {
    ++calls_;
    return inner_->Status(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::GetQuotaResponse> GetQuota(mailbox::v1::GetQuotaRequest request) {
    ++calls_;
    return inner_->GetQuota(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::GetMetadataResponse> GetMetadata(
      mailbox::v1::GetMetadataRequest request) {
    ++calls_;
    return inner_->GetMetadata(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::SetMetadataResponse> SetMetadata(
      mailbox::v1::SetMetadataRequest request) {
    ++calls_;
    return inner_->SetMetadata(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::OpenResponse> Open(mailbox::v1::OpenRequest request) {
    ++calls_;
    return inner_->Open(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::ClaimRecentResponse> ClaimRecent(
      mailbox::v1::ClaimRecentRequest request) {
    ++calls_;
    return inner_->ClaimRecent(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::VanishedResponse> Vanished(mailbox::v1::VanishedRequest request) {
    ++calls_;
    return inner_->Vanished(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::StoreResponse> Store(mailbox::v1::StoreRequest request) {
    ++calls_;
    return inner_->Store(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::CopyResponse> Copy(mailbox::v1::CopyRequest request) {
    ++calls_;
    return inner_->Copy(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::MoveResponse> Move(mailbox::v1::MoveRequest request) {
    ++calls_;
    return inner_->Move(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::ExpungeResponse> Expunge(mailbox::v1::ExpungeRequest request) {
    ++calls_;
    return inner_->Expunge(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::SortResponse> Sort(mailbox::v1::SortRequest request) {
    ++calls_;
    return inner_->Sort(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::ThreadResponse> Thread(mailbox::v1::ThreadRequest request) {
    ++calls_;
    return inner_->Thread(*credential_, std::move(request));
  }
  Awaitable<mailbox::v1::SearchResponse> Search(mailbox::v1::SearchRequest request) {
    ++calls_;
    return inner_->Search(*credential_, std::move(request));
  }
  std::unique_ptr<mailbox::client::FetchStream> Fetch(mailbox::v1::FetchRequest request) {
    ++calls_;
    return inner_->Fetch(*credential_, std::move(request));
  }
  std::unique_ptr<mailbox::client::AppendStream> Append() {
    ++calls_;
    return inner_->Append(*credential_);
  }

 private:
  mailbox::client::MailboxStore* inner_;
  const mailbox::client::Session* credential_;
  uint64_t calls_ = 0;
};

}  // namespace gateway
