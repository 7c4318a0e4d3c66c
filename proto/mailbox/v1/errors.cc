#include "proto/mailbox/v1/errors.h"

#include <string>

#include "absl/strings/cord.h"

namespace mailbox::v1 {

absl::Status MakeError(absl::StatusCode code, ErrorCode detail_code, std::string_view message,
                       int64_t retry_after_ms) {
  ErrorDetail detail;
  detail.set_code(detail_code);
  detail.set_message(std::string(message));
  detail.set_retry_after_ms(retry_after_ms);
  return MakeError(code, detail);
}

absl::Status MakeError(absl::StatusCode code, const ErrorDetail& detail) {
  absl::Status status(code, detail.message());
  status.SetPayload(absl::string_view(kErrorDetailPayload.data(), kErrorDetailPayload.size()), absl::Cord(detail.SerializeAsString()));
  return status;
}

ErrorDetail DetailOf(const absl::Status& status) {
  ErrorDetail detail;
  if (auto payload = status.GetPayload(absl::string_view(kErrorDetailPayload.data(), kErrorDetailPayload.size())); payload.has_value()) {
    if (!detail.ParseFromString(std::string(*payload))) {
      detail.Clear();
    }
  }
  return detail;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  ErrorDetail detail = DetailOf(status);
  if (detail.message().empty()) {
    detail.set_message(std::string(status.message()));
  }
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()), detail.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) {
    return absl::OkStatus();
  }
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  ErrorDetail detail;
  if (!status.error_details().empty() && detail.ParseFromString(status.error_details())) {
    result.SetPayload(absl::string_view(kErrorDetailPayload.data(), kErrorDetailPayload.size()), absl::Cord(status.error_details()));
  } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
             status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    // Transport failures carry no detail: they mean the store is unreachable.
    detail.set_code(UNAVAILABLE);
    detail.set_message(status.error_message());
    result.SetPayload(absl::string_view(kErrorDetailPayload.data(), kErrorDetailPayload.size()), absl::Cord(detail.SerializeAsString()));
  } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    // Without a detail this is gRPC's own resource quota refusing the call (e.g.
    // "Server Threadpool Exhausted" when every server thread is busy): the
    // service is overloaded for now, so it is UNAVAILABLE, not a server bug.
    detail.set_code(UNAVAILABLE);
    detail.set_message(status.error_message());
    result.SetPayload(absl::string_view(kErrorDetailPayload.data(), kErrorDetailPayload.size()), absl::Cord(detail.SerializeAsString()));
  }
  return result;
}

}  // namespace mailbox::v1
