// The service over a real store and a real gRPC server, at the bounds of its work
// pool and change feeds: a call that finds the pool full is refused at once (never
// left waiting), a cancelled Fetch gives its thread back, and a feed over the limit
// is refused.
#include "mailbox-service/server/service.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mailbox-service/server/change_hub.h"
#include "mailbox-service/store/sqlite_store.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

constexpr char kAdminToken[] = "test-admin-token";

class ServiceTest : public ::testing::Test {
 protected:
  void Start(ServiceOptions options) {
    const char* base = std::getenv("TEST_TMPDIR");
    dir_ = std::string(base != nullptr ? base : "/tmp") + "/service_test";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = store::SqliteStore::Open(dir_ + "/mailbox.db", store::StoreLimits(),
                                          [this](const v1::ChangeEvent& e) { hub_.Publish(e); });
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->CreateUser("alice", "unused-hash").ok());
    // Calls act as alice with the admin token, so no Authenticator is needed.
    service_ = std::make_unique<MailboxService>(store_.get(), /*auth=*/nullptr, &hub_,
                                                kAdminToken, store::StoreLimits(), options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Mailbox::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                     grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) {
      service_->BeginShutdown();
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    }
  }

  // A context that acts as alice; every call gets a deadline, so a call the service
  // left waiting would fail the test with DEADLINE_EXCEEDED instead of hanging.
  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata(kAdminMetadata, kAdminToken);
    context->AddMetadata(kActAsMetadata, "alice");
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return context;
  }

  grpc::Status StatusOf(const std::string& mailbox) {
    auto context = Context();
    v1::StatusRequest request;
    request.set_name(mailbox);
    v1::StatusResponse response;
    return stub_->Status(context.get(), request, &response);
  }

  std::string dir_;
  ChangeHub hub_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<MailboxService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Mailbox::Stub> stub_;
};

TEST_F(ServiceTest, AFullWorkPoolRefusesAtOnceAndACancelledFetchFreesItsThread) {
  ServiceOptions options;
  options.workers = 1;
  options.work_queue = 0;
  options.fetch_stall_timeout = absl::ZeroDuration();
  Start(options);
  // The mailbox is made on the store directly: with one thread and no queue, a
  // call that follows the previous one's answer closely may find the thread not
  // yet idle, and be refused.
  auto alice = store_->FindUser("alice");
  ASSERT_TRUE(alice.ok());
  v1::CreateMailboxRequest create;
  create.set_name("Big");
  ASSERT_TRUE(store_->CreateMailbox(alice->id, create).ok());
  store::NewMessage message;
  message.content = "Subject: big\r\n\r\n";
  message.content.resize(16 << 20, 'x');
  std::vector<store::NewMessage> messages;
  messages.push_back(std::move(message));
  auto appended = store_->Append(alice->id, "Big", std::move(messages));
  ASSERT_TRUE(appended.ok()) << appended.status();
  const uint32_t uid = appended->uids(0);
  v1::OpenRequest open;
  open.set_name("Big");
  auto opened = store_->Open(alice->id, open);
  ASSERT_TRUE(opened.ok()) << opened.status();

  // A Fetch of the whole message whose reader never reads: its writes stop once
  // gRPC's flow-control window is full, holding the only worker.
  auto stalled = Context();
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(opened->mailbox_id());
  fetch.set_uidvalidity(opened->uidvalidity());
  v1::UidRange* range = fetch.mutable_uids()->add_ranges();
  range->set_first(uid);
  range->set_last(uid);
  fetch.add_sections();
  auto reader = stub_->Fetch(stalled.get(), fetch);
  // The first response proves the Fetch holds the worker; the reader takes no more.
  v1::FetchResponse first;
  ASSERT_TRUE(reader->Read(&first));

  // Every thread busy and no queue: the next call is refused at once, with the
  // detail that tells the gateway the service is busy.
  grpc::Status refused;
  for (int i = 0; i < 200; ++i) {
    refused = StatusOf("Big");
    if (!refused.ok()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_EQ(v1::DetailOf(v1::FromGrpcStatus(refused)).code(), v1::UNAVAILABLE);

  // The client goes away: the blocked write fails, and the thread serves again.
  stalled->TryCancel();
  grpc::Status answered;
  for (int i = 0; i < 500; ++i) {
    answered = StatusOf("Big");
    if (answered.ok()) {
      break;
    }
    ASSERT_EQ(answered.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(answered.ok()) << answered.error_message();
  grpc::Status finished = reader->Finish();
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::CANCELLED) << finished.error_message();
}

TEST_F(ServiceTest, AMailboxListSubscriptionNeedsTheSessionTokenOfItsUser) {
  Start(ServiceOptions());
  auto alice = store_->FindUser("alice");
  ASSERT_TRUE(alice.ok());
  auto context = Context();
  auto feed = stub_->Changes(context.get());
  // The admin credential acts as alice, but a list is followed only with the
  // session token of its user: refused, naming the user asked for.
  v1::ChangeFeedRequest subscribe;
  subscribe.mutable_subscribe()->set_mailbox_list(true);
  subscribe.mutable_subscribe()->set_user_id(alice->id);
  ASSERT_TRUE(feed->Write(subscribe));
  v1::ChangeEvent event;
  ASSERT_TRUE(feed->Read(&event));
  ASSERT_TRUE(event.has_resync()) << event.ShortDebugString();
  EXPECT_EQ(event.mailbox_id(), 0u);
  EXPECT_EQ(event.user_id(), alice->id);
  EXPECT_EQ(event.resync().reason().code(), v1::AUTHENTICATIONFAILED);
  // Nothing of alice's list reaches this feed.
  v1::CreateMailboxRequest create;
  create.set_name("Unheard");
  ASSERT_TRUE(store_->CreateMailbox(alice->id, create).ok());
  subscribe.mutable_subscribe()->set_mailbox_list(false);
  subscribe.mutable_subscribe()->set_mailbox_id(12345);  // a Resync, after anything queued
  ASSERT_TRUE(feed->Write(subscribe));
  ASSERT_TRUE(feed->Read(&event));
  EXPECT_EQ(event.mailbox_id(), 12345u) << event.ShortDebugString();
  feed->WritesDone();
  while (feed->Read(&event)) {
  }
  EXPECT_TRUE(feed->Finish().ok());
}

TEST_F(ServiceTest, AChangeFeedOverTheLimitIsRefused) {
  ServiceOptions options;
  options.max_feeds = 1;
  Start(options);
  auto first_context = Context();
  auto first = stub_->Changes(first_context.get());
  // A round trip on the first feed, so it is known to be counted.
  v1::ChangeFeedRequest subscribe;
  subscribe.mutable_subscribe()->set_mailbox_id(12345);  // no such mailbox: a Resync
  ASSERT_TRUE(first->Write(subscribe));
  v1::ChangeEvent event;
  ASSERT_TRUE(first->Read(&event));
  EXPECT_TRUE(event.has_resync());
  EXPECT_EQ(event.mailbox_id(), 12345u);

  // The second feed is refused; the first one still works.
  auto second_context = Context();
  auto second = stub_->Changes(second_context.get());
  EXPECT_FALSE(second->Read(&event));
  grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(first->Write(subscribe));
  ASSERT_TRUE(first->Read(&event));
  EXPECT_TRUE(event.has_resync());
  first->WritesDone();
  EXPECT_FALSE(first->Read(&event));
  EXPECT_TRUE(first->Finish().ok());

  // Its slot is free again once it ended.
  grpc::Status third_status;
  for (int i = 0; i < 100; ++i) {
    auto third_context = Context();
    auto third = stub_->Changes(third_context.get());
    third->WritesDone();
    while (third->Read(&event)) {
    }
    third_status = third->Finish();
    if (third_status.ok()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(third_status.ok()) << third_status.error_message();
}

}  // namespace
}  // namespace mailbox::server
