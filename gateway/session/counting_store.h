// A MailboxStore that forwards every call to another and counts them, so that a
// session can report how many calls to the mailbox service each IMAP command made
// (ops::Metrics::family_store_calls). A stream (Fetch, Append, Revise) counts once.
//
// The forwarding functions return the inner store's awaitables as they are (no
// coroutine frame of their own).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "storage-client/mailbox_store.h"

namespace gateway {

class CountingStore final : public mailbox::client::MailboxStore {
 public:
  explicit CountingStore(mailbox::client::MailboxStore* inner) : inner_(inner) {}

  // Calls made since the last Take(); resets the count.
  uint64_t Take() { return std::exchange(calls_, 0); }

  template <typename T>
  using Awaitable = boost::asio::awaitable<absl::StatusOr<T>>;
  using Session = mailbox::client::Session;
  using ChangeFeed = mailbox::client::ChangeFeed;
  using FetchStream = mailbox::client::FetchStream;
  using AppendStream = mailbox::client::AppendStream;
  using ReviseStream = mailbox::client::ReviseStream;

  Awaitable<mailbox::v1::AuthenticateResponse> Authenticate(
      mailbox::v1::AuthenticateRequest request) override {
    ++calls_;
    return inner_->Authenticate(std::move(request));
  }
  Awaitable<mailbox::v1::ListMailboxesResponse> ListMailboxes(
      Session session, mailbox::v1::ListMailboxesRequest request) override {
    ++calls_;
    return inner_->ListMailboxes(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::CreateMailboxResponse> CreateMailbox(
      Session session, mailbox::v1::CreateMailboxRequest request) override {
    ++calls_;
    return inner_->CreateMailbox(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::DeleteMailboxResponse> DeleteMailbox(
      Session session, mailbox::v1::DeleteMailboxRequest request) override {
    ++calls_;
    return inner_->DeleteMailbox(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::RenameMailboxResponse> RenameMailbox(
      Session session, mailbox::v1::RenameMailboxRequest request) override {
    ++calls_;
    return inner_->RenameMailbox(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::SetSubscriptionResponse> SetSubscription(
      Session session, mailbox::v1::SetSubscriptionRequest request) override {
    ++calls_;
    return inner_->SetSubscription(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::StatusResponse> Status(Session session,
                                                mailbox::v1::StatusRequest request) override {
    ++calls_;
    return inner_->Status(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::OpenResponse> Open(Session session,
                                            mailbox::v1::OpenRequest request) override {
    ++calls_;
    return inner_->Open(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::ClaimRecentResponse> ClaimRecent(
      Session session, mailbox::v1::ClaimRecentRequest request) override {
    ++calls_;
    return inner_->ClaimRecent(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::VanishedResponse> Vanished(Session session,
                                                    mailbox::v1::VanishedRequest request) override {
    ++calls_;
    return inner_->Vanished(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::StoreResponse> Store(Session session,
                                              mailbox::v1::StoreRequest request) override {
    ++calls_;
    return inner_->Store(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::CopyResponse> Copy(Session session,
                                            mailbox::v1::CopyRequest request) override {
    ++calls_;
    return inner_->Copy(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::MoveResponse> Move(Session session,
                                            mailbox::v1::MoveRequest request) override {
    ++calls_;
    return inner_->Move(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::ExpungeResponse> Expunge(Session session,
                                                  mailbox::v1::ExpungeRequest request) override {
    ++calls_;
    return inner_->Expunge(std::move(session), std::move(request));
  }
  Awaitable<mailbox::v1::SearchResponse> Search(Session session,
                                                mailbox::v1::SearchRequest request) override {
    ++calls_;
    return inner_->Search(std::move(session), std::move(request));
  }
  std::unique_ptr<FetchStream> Fetch(Session session, mailbox::v1::FetchRequest request) override {
    ++calls_;
    return inner_->Fetch(std::move(session), std::move(request));
  }
  std::unique_ptr<AppendStream> Append(Session session) override {
    ++calls_;
    return inner_->Append(std::move(session));
  }
  std::unique_ptr<ReviseStream> Revise(Session session) override {
    ++calls_;
    return inner_->Revise(std::move(session));
  }
  // The worker's feed is not a command's call: not counted.
  std::unique_ptr<ChangeFeed> OpenChangeFeed(boost::asio::any_io_executor executor) override {
    return inner_->OpenChangeFeed(std::move(executor));
  }

 private:
  mailbox::client::MailboxStore* inner_;
  uint64_t calls_ = 0;
};

}  // namespace gateway
