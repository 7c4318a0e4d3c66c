// Small synchronous helpers over the raw mailbox.v1 stubs, for integration tests
// that probe the API itself (bad input, crash durability).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"

namespace mailbox::testing {

// A stub plus the session token of one user.
class RawClient {
 public:
  RawClient(std::shared_ptr<grpc::Channel> channel, std::string token);

  // Logs in with a password; the token is kept for later calls.
  static absl::StatusOr<RawClient> Login(std::shared_ptr<grpc::Channel> channel,
                                         const std::string& user, const std::string& password);

  // A context carrying the session token and a 30 s deadline.
  std::unique_ptr<grpc::ClientContext> Context() const;
  v1::Mailbox::Stub& stub() { return *stub_; }
  const std::string& token() const { return token_; }

  absl::StatusOr<v1::AppendResponse> Append(const std::string& mailbox,
                                            const std::vector<std::string>& messages,
                                            const std::vector<std::string>& flags = {});
  absl::StatusOr<v1::OpenResponse> Open(const std::string& mailbox, bool read_only = false);
  // Fetches BODY[] of every UID in [first, last] and returns uid -> content.
  absl::StatusOr<std::vector<std::pair<uint32_t, std::string>>> FetchBodies(
      const v1::OpenResponse& mailbox, uint32_t first, uint32_t last);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Mailbox::Stub> stub_;
  std::string token_;
};

v1::UidSet Uids(uint32_t first, uint32_t last);

}  // namespace mailbox::testing
