#include "proto/mailbox/v1/errors.h"

#include "gtest/gtest.h"

namespace mailbox::v1 {
namespace {

TEST(FromGrpcStatusTest, QuotaRefusalWithoutDetailIsUnavailable) {
  // What gRPC's sync server answers when its thread quota is used up.
  absl::Status status = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "Server Threadpool Exhausted"));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(DetailOf(status).code(), UNAVAILABLE);
  EXPECT_EQ(DetailOf(status).message(), "Server Threadpool Exhausted");
}

TEST(FromGrpcStatusTest, TheServicesOwnLimitKeepsItsDetail) {
  absl::Status sent = MakeError(absl::StatusCode::kResourceExhausted, LIMIT, "too many keys");
  absl::Status status = FromGrpcStatus(ToGrpcStatus(sent));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(DetailOf(status).code(), LIMIT);
  EXPECT_EQ(status.message(), "too many keys");
}

}  // namespace
}  // namespace mailbox::v1
