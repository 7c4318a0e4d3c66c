// Synchronous client of the mailbox service for mailbox-admin: every call carries the
// admin token ("x-mailbox-admin") and, for Mailbox RPCs, the user it acts for
// ("x-mailbox-act-as"), and has a deadline. Errors come back as absl::Status values
// that always carry an ErrorDetail payload (see errors.h), so callers can tell a
// service error from a local one.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "mailbox-service/admin/importers.h"
#include "mailbox-service/admin/message_spool.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"

namespace mailbox::admin {

// Messages are sent in chunks of this size (the service's fetch chunk size too).
inline constexpr size_t kStreamChunk = 256 * 1024;

// Converts a failed call's status; a status without an ErrorDetail gets one with
// ERROR_CODE_UNSPECIFIED so it is still recognisable as the service's answer.
absl::Status RpcError(const grpc::Status& status);

// True if `status` came from the service (RpcError) rather than from local work.
bool IsRpcError(const absl::Status& status);

// One client-streamed Append call (a batch): messages are written as they are added
// and committed together by Finish (AppendRequest: all or none).
class AppendStream {
 public:
  AppendStream(mailbox::v1::Mailbox::StubInterface* stub, const std::string& token,
               const std::string& user, const std::string& mailbox, absl::Duration timeout);
  // An unfinished stream is cancelled: the service stores none of its messages.
  ~AppendStream();
  AppendStream(const AppendStream&) = delete;
  AppendStream& operator=(const AppendStream&) = delete;

  // Sends one message: AppendMessage{flags, internal date, size}, then its content in
  // kStreamChunk pieces. If the service already ended the call, returns its error.
  // `uid` 0: the mailbox's next UID; otherwise that UID (an import,
  // AppendMessage.uid).
  absl::Status Add(const std::vector<std::string>& flags,
                   const std::optional<InternalDate>& internal_date, MessageSpool& content,
                   uint32_t uid = 0);
  // Ends the stream and waits for the commit.
  absl::StatusOr<mailbox::v1::AppendResponse> Finish();

  uint32_t messages() const { return messages_; }
  uint64_t octets() const { return octets_; }

 private:
  absl::Status Write(const mailbox::v1::AppendRequest& request);

  grpc::ClientContext context_;
  mailbox::v1::AppendResponse response_;
  std::unique_ptr<grpc::ClientWriterInterface<mailbox::v1::AppendRequest>> writer_;
  bool finished_ = false;
  uint32_t messages_ = 0;
  uint64_t octets_ = 0;
};

class AdminClient {
 public:
  // `timeout` is the deadline of each unary call; streamed calls get at least 10 min.
  AdminClient(std::shared_ptr<grpc::ChannelInterface> channel, std::string token,
              absl::Duration timeout);

  // Starts connecting to the service in the background (gRPC connects lazily, at
  // the first call), so a call made after a slow local step, such as reading a
  // message from stdin, does not wait for the connection as well.
  void StartConnecting();

  // Admin service.
  absl::StatusOr<uint64_t> CreateUser(const std::string& username, const std::string& password);
  absl::Status DeleteUser(const std::string& username);
  absl::Status SetPassword(const std::string& username, const std::string& password);
  absl::StatusOr<std::vector<mailbox::v1::Principal>> ListUsers();
  absl::Status SetQuota(const std::string& username, const mailbox::v1::QuotaLimits& limits);
  absl::StatusOr<mailbox::v1::GetUserQuotaResponse> GetUserQuota(const std::string& username);
  absl::StatusOr<mailbox::v1::PrepareImportResponse> PrepareImport(
      const mailbox::v1::PrepareImportRequest& request);
  absl::StatusOr<mailbox::v1::FinishImportResponse> FinishImport(
      const mailbox::v1::FinishImportRequest& request);

  // Mailbox service, acting as `user`.
  absl::StatusOr<mailbox::v1::ListMailboxesResponse> ListMailboxes(const std::string& user);
  absl::StatusOr<mailbox::v1::StatusResponse> Status(const std::string& user,
                                                     const std::string& mailbox);
  absl::StatusOr<mailbox::v1::CreateMailboxResponse> CreateMailbox(const std::string& user,
                                                                   const std::string& mailbox);
  absl::Status SetSubscription(const std::string& user, const std::string& mailbox,
                               bool subscribed);
  // Sends `header` (its size set from `content`) and the content.
  absl::StatusOr<mailbox::v1::ReviseResponse> Revise(const std::string& user,
                                                     mailbox::v1::ReviseHeader header,
                                                     MessageSpool& content);
  std::unique_ptr<AppendStream> StartAppend(const std::string& user, const std::string& mailbox);

 private:
  void Prepare(grpc::ClientContext* context, const std::string* user, bool streamed) const;

  std::shared_ptr<grpc::ChannelInterface> channel_;
  std::unique_ptr<mailbox::v1::Admin::StubInterface> admin_;
  std::unique_ptr<mailbox::v1::Mailbox::StubInterface> mailbox_;
  std::string token_;
  absl::Duration timeout_;
};

}  // namespace mailbox::admin
