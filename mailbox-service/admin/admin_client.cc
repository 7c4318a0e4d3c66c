#include "mailbox-service/admin/admin_client.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/cord.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::admin {
namespace {

namespace v1 = ::mailbox::v1;

constexpr char kAdminMetadata[] = "x-mailbox-admin";
constexpr char kActAsMetadata[] = "x-mailbox-act-as";
// A batch of 100 messages (or one large one) may take far longer than a unary call.
constexpr absl::Duration kMinStreamDeadline = absl::Minutes(10);

absl::string_view PayloadUrl() {
  return absl::string_view(v1::kErrorDetailPayload.data(), v1::kErrorDetailPayload.size());
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
}

}  // namespace

absl::Status RpcError(const grpc::Status& status) {
  absl::Status result = v1::FromGrpcStatus(status);
  if (!result.ok() && !result.GetPayload(PayloadUrl()).has_value()) {
    v1::ErrorDetail detail;
    detail.set_message(status.error_message());
    result.SetPayload(PayloadUrl(), absl::Cord(detail.SerializeAsString()));
  }
  return result;
}

bool IsRpcError(const absl::Status& status) {
  return !status.ok() && status.GetPayload(PayloadUrl()).has_value();
}

// ---------------------------------------------------------------------------

AppendStream::AppendStream(v1::Mailbox::StubInterface* stub, const std::string& token,
                           const std::string& user, const std::string& mailbox,
                           absl::Duration timeout) {
  context_.AddMetadata(kAdminMetadata, token);
  context_.AddMetadata(kActAsMetadata, user);
  SetDeadline(&context_, std::max(timeout, kMinStreamDeadline));
  writer_ = stub->Append(&context_, &response_);
  v1::AppendRequest first;
  first.set_mailbox(mailbox);
  // A failure here shows up on the first Add.
  (void)writer_->Write(first);
}

AppendStream::~AppendStream() {
  if (!finished_) {
    context_.TryCancel();
    (void)writer_->Finish();
  }
}

absl::Status AppendStream::Write(const v1::AppendRequest& request) {
  if (finished_) {
    return absl::FailedPreconditionError("the append stream is already finished");
  }
  if (writer_->Write(request)) {
    return absl::OkStatus();
  }
  // The service ended the call early (an error, e.g. TOOBIG): its status says why.
  auto finished = Finish();
  if (!finished.ok()) {
    return finished.status();
  }
  return RpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "the service closed the append stream early"));
}

absl::Status AppendStream::Add(const std::vector<std::string>& flags,
                               const std::optional<InternalDate>& internal_date,
                               MessageSpool& content, uint32_t uid) {
  v1::AppendRequest start;
  v1::AppendMessage* message = start.mutable_message();
  message->set_uid(uid);
  for (const std::string& flag : flags) {
    message->add_flags(flag);
  }
  if (internal_date.has_value()) {
    message->set_has_internal_date(true);
    message->set_internal_date_unix(internal_date->unix_seconds);
    message->set_internal_date_tz_minutes(internal_date->tz_minutes);
  }
  message->set_size(content.size());
  if (absl::Status status = Write(start); !status.ok()) {
    return status;
  }
  absl::Status status = content.ForEachChunk(kStreamChunk, [&](std::string_view chunk) {
    v1::AppendRequest request;
    request.set_chunk(std::string(chunk));
    return Write(request);
  });
  if (!status.ok()) {
    return status;
  }
  ++messages_;
  octets_ += content.size();
  return absl::OkStatus();
}

absl::StatusOr<v1::AppendResponse> AppendStream::Finish() {
  if (finished_) {
    return absl::FailedPreconditionError("the append stream is already finished");
  }
  finished_ = true;
  (void)writer_->WritesDone();
  grpc::Status status = writer_->Finish();
  if (!status.ok()) {
    return RpcError(status);
  }
  return response_;
}

// ---------------------------------------------------------------------------

AdminClient::AdminClient(std::shared_ptr<grpc::ChannelInterface> channel, std::string token,
                         absl::Duration timeout)
    : channel_(channel),
      admin_(v1::Admin::NewStub(channel)),
      mailbox_(v1::Mailbox::NewStub(channel)),
      token_(std::move(token)),
      timeout_(timeout) {}

void AdminClient::StartConnecting() { channel_->GetState(/*try_to_connect=*/true); }

void AdminClient::Prepare(grpc::ClientContext* context, const std::string* user,
                          bool streamed) const {
  context->AddMetadata(kAdminMetadata, token_);
  if (user != nullptr) {
    context->AddMetadata(kActAsMetadata, *user);
  }
  SetDeadline(context, streamed ? std::max(timeout_, kMinStreamDeadline) : timeout_);
}

absl::StatusOr<uint64_t> AdminClient::CreateUser(const std::string& username,
                                                 const std::string& password) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::CreateUserRequest request;
  request.set_username(username);
  request.set_password(password);
  v1::CreateUserResponse response;
  if (grpc::Status status = admin_->CreateUser(&context, request, &response); !status.ok()) {
    return RpcError(status);
  }
  return response.user_id();
}

absl::Status AdminClient::DeleteUser(const std::string& username) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::DeleteUserRequest request;
  request.set_username(username);
  v1::DeleteUserResponse response;
  return RpcError(admin_->DeleteUser(&context, request, &response));
}

absl::Status AdminClient::SetPassword(const std::string& username, const std::string& password) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::SetPasswordRequest request;
  request.set_username(username);
  request.set_password(password);
  v1::SetPasswordResponse response;
  return RpcError(admin_->SetPassword(&context, request, &response));
}

absl::StatusOr<std::vector<v1::Principal>> AdminClient::ListUsers() {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::ListUsersResponse response;
  if (grpc::Status status = admin_->ListUsers(&context, v1::ListUsersRequest(), &response);
      !status.ok()) {
    return RpcError(status);
  }
  return std::vector<v1::Principal>(response.users().begin(), response.users().end());
}

absl::Status AdminClient::SetQuota(const std::string& username, const v1::QuotaLimits& limits) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::SetQuotaRequest request;
  request.set_username(username);
  *request.mutable_limits() = limits;
  v1::SetQuotaResponse response;
  return RpcError(admin_->SetQuota(&context, request, &response));
}

absl::StatusOr<v1::GetUserQuotaResponse> AdminClient::GetUserQuota(const std::string& username) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::GetUserQuotaRequest request;
  request.set_username(username);
  v1::GetUserQuotaResponse response;
  if (grpc::Status status = admin_->GetUserQuota(&context, request, &response); !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::StatusOr<v1::ListMailboxesResponse> AdminClient::ListMailboxes(const std::string& user) {
  grpc::ClientContext context;
  Prepare(&context, &user, false);
  v1::ListMailboxesRequest request;  // no pattern: every mailbox ("*")
  v1::ListMailboxesResponse response;
  if (grpc::Status status = mailbox_->ListMailboxes(&context, request, &response);
      !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::StatusOr<v1::StatusResponse> AdminClient::Status(const std::string& user,
                                                       const std::string& mailbox) {
  grpc::ClientContext context;
  Prepare(&context, &user, false);
  v1::StatusRequest request;
  request.set_name(mailbox);
  v1::StatusResponse response;
  if (grpc::Status status = mailbox_->Status(&context, request, &response); !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::StatusOr<v1::CreateMailboxResponse> AdminClient::CreateMailbox(const std::string& user,
                                                                     const std::string& mailbox) {
  grpc::ClientContext context;
  Prepare(&context, &user, false);
  v1::CreateMailboxRequest request;
  request.set_name(mailbox);
  v1::CreateMailboxResponse response;
  if (grpc::Status status = mailbox_->CreateMailbox(&context, request, &response);
      !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::Status AdminClient::SetSubscription(const std::string& user, const std::string& mailbox,
                                          bool subscribed) {
  grpc::ClientContext context;
  Prepare(&context, &user, false);
  v1::SetSubscriptionRequest request;
  request.set_name(mailbox);
  request.set_subscribed(subscribed);
  v1::SetSubscriptionResponse response;
  if (grpc::Status status = mailbox_->SetSubscription(&context, request, &response);
      !status.ok()) {
    return RpcError(status);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::PrepareImportResponse> AdminClient::PrepareImport(
    const v1::PrepareImportRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::PrepareImportResponse response;
  if (grpc::Status status = admin_->PrepareImport(&context, request, &response); !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::StatusOr<v1::FinishImportResponse> AdminClient::FinishImport(
    const v1::FinishImportRequest& request) {
  grpc::ClientContext context;
  Prepare(&context, nullptr, false);
  v1::FinishImportResponse response;
  if (grpc::Status status = admin_->FinishImport(&context, request, &response); !status.ok()) {
    return RpcError(status);
  }
  return response;
}

absl::StatusOr<v1::ReviseResponse> AdminClient::Revise(const std::string& user,
                                                       v1::ReviseHeader header,
                                                       MessageSpool& content) {
  grpc::ClientContext context;
  Prepare(&context, &user, true);
  v1::ReviseResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::ReviseRequest>> writer =
      mailbox_->Revise(&context, &response);
  header.set_size(content.size());
  v1::ReviseRequest first;
  *first.mutable_header() = std::move(header);
  bool open = writer->Write(first);
  absl::Status local = content.ForEachChunk(kStreamChunk, [&](std::string_view chunk) {
    if (!open) {
      return absl::OkStatus();  // the service ended the call; Finish says why
    }
    v1::ReviseRequest request;
    request.set_chunk(std::string(chunk));
    open = writer->Write(request);
    return absl::OkStatus();
  });
  if (!local.ok()) {
    context.TryCancel();
    (void)writer->Finish();
    return local;
  }
  (void)writer->WritesDone();
  if (grpc::Status status = writer->Finish(); !status.ok()) {
    return RpcError(status);
  }
  return response;
}

std::unique_ptr<AppendStream> AdminClient::StartAppend(const std::string& user,
                                                       const std::string& mailbox) {
  return std::make_unique<AppendStream>(mailbox_.get(), token_, user, mailbox, timeout_);
}

}  // namespace mailbox::admin
