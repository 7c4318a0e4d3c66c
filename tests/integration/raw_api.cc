#include "tests/integration/raw_api.h"

#include <chrono>

#include "proto/mailbox/v1/errors.h"

namespace mailbox::testing {

v1::UidSet Uids(uint32_t first, uint32_t last) {
  v1::UidSet set;
  auto* range = set.add_ranges();
  range->set_first(first);
  range->set_last(last);
  return set;
}

RawClient::RawClient(std::shared_ptr<grpc::Channel> channel, std::string token)
    : channel_(channel), stub_(v1::Mailbox::NewStub(channel)), token_(std::move(token)) {}

absl::StatusOr<RawClient> RawClient::Login(std::shared_ptr<grpc::Channel> channel,
                                           const std::string& user,
                                           const std::string& password) {
  auto stub = v1::Mailbox::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::AuthenticateRequest request;
  request.set_mechanism(v1::PASSWORD);
  request.set_username(user);
  request.set_password(password);
  request.set_client_ip("127.0.0.1");
  v1::AuthenticateResponse response;
  absl::Status status = v1::FromGrpcStatus(stub->Authenticate(&context, request, &response));
  if (!status.ok()) {
    return status;
  }
  return RawClient(channel, response.session_token());
}

std::unique_ptr<grpc::ClientContext> RawClient::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("x-mailbox-session", token_);
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return context;
}

absl::StatusOr<v1::AppendResponse> RawClient::Append(const std::string& mailbox,
                                                     const std::vector<std::string>& messages,
                                                     const std::vector<std::string>& flags) {
  auto context = Context();
  v1::AppendResponse response;
  auto writer = stub_->Append(context.get(), &response);
  v1::AppendRequest item;
  item.set_mailbox(mailbox);
  writer->Write(item);
  constexpr size_t kChunk = 256 << 10;
  for (const std::string& message : messages) {
    item.Clear();
    item.mutable_message()->set_size(message.size());
    for (const auto& flag : flags) {
      item.mutable_message()->add_flags(flag);
    }
    if (!writer->Write(item)) {
      break;
    }
    for (size_t offset = 0; offset < message.size(); offset += kChunk) {
      item.Clear();
      item.set_chunk(message.substr(offset, kChunk));
      if (!writer->Write(item)) {
        break;
      }
    }
  }
  writer->WritesDone();
  absl::Status status = v1::FromGrpcStatus(writer->Finish());
  if (!status.ok()) {
    return status;
  }
  return response;
}

absl::StatusOr<v1::OpenResponse> RawClient::Open(const std::string& mailbox, bool read_only) {
  auto context = Context();
  v1::OpenRequest request;
  request.set_name(mailbox);
  request.set_read_only(read_only);
  v1::OpenResponse response;
  absl::Status status = v1::FromGrpcStatus(stub_->Open(context.get(), request, &response));
  if (!status.ok()) {
    return status;
  }
  return response;
}

absl::StatusOr<std::vector<std::pair<uint32_t, std::string>>> RawClient::FetchBodies(
    const v1::OpenResponse& mailbox, uint32_t first, uint32_t last) {
  auto context = Context();
  v1::FetchRequest request;
  request.set_mailbox_id(mailbox.mailbox_id());
  request.set_uidvalidity(mailbox.uidvalidity());
  *request.mutable_uids() = Uids(first, last);
  request.add_sections();  // BODY[]
  auto reader = stub_->Fetch(context.get(), request);
  std::vector<std::pair<uint32_t, std::string>> bodies;
  v1::FetchResponse item;
  while (reader->Read(&item)) {
    if (item.has_metadata()) {
      bodies.emplace_back(item.metadata().uid(), "");
    } else if (item.has_chunk() && !bodies.empty()) {
      bodies.back().second += item.chunk().data();
    }
  }
  absl::Status status = v1::FromGrpcStatus(reader->Finish());
  if (!status.ok()) {
    return status;
  }
  return bodies;
}

}  // namespace mailbox::testing
