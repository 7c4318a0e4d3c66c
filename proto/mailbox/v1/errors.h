// Errors of the mailbox.v1 API as absl::Status values.
//
// An error carries an ErrorDetail (RFC 5530-style code, text, retry hint) as a status
// payload. On the wire it travels in grpc::Status::error_details; ToGrpcStatus and
// FromGrpcStatus are the only conversions between the two status types.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::v1 {

// Payload type URL under which the ErrorDetail is kept in an absl::Status.
inline constexpr std::string_view kErrorDetailPayload =
    "type.googleapis.com/mailbox.v1.ErrorDetail";

// An error status with `code` and a detail; `message` should say what to do.
absl::Status MakeError(absl::StatusCode code, ErrorCode detail_code, std::string_view message,
                       int64_t retry_after_ms = 0);

// An error status carrying `detail` whole (its message is the status's).
absl::Status MakeError(absl::StatusCode code, const ErrorDetail& detail);

// The detail of `status`; code ERROR_CODE_UNSPECIFIED if it has none.
ErrorDetail DetailOf(const absl::Status& status);

// Shorthand for the common cases.
inline absl::Status Nonexistent(std::string_view message) {
  return MakeError(absl::StatusCode::kNotFound, NONEXISTENT, message);
}
inline absl::Status BadRequest(std::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, BAD_REQUEST, message);
}

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace mailbox::v1
