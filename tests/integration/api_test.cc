// The real mailbox-service binary probed through its raw gRPC API: durability across
// restarts and SIGKILL, the change feed, and bad input.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"
#include "tests/integration/raw_api.h"
#include "tests/integration/service_process.h"

namespace mailbox::testing {
namespace {

std::string Message(int n, size_t body_octets = 200) {
  std::string body;
  while (body.size() < body_octets) {
    absl::StrAppend(&body, "line ", body.size(), " of message ", n, "\r\n");
  }
  return absl::StrCat("From: a@example.org\r\nTo: b@example.org\r\nSubject: message ", n,
                      "\r\nMessage-ID: <", n, "@example.org>\r\n\r\n", body);
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service_ = std::make_unique<ServiceProcess>(
        TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name()),
        std::vector<std::string>{"--max-message-bytes=1000000"});
    ASSERT_TRUE(service_->Start().ok());
    ASSERT_TRUE(service_->CreateUser("alice", "pw-alice").ok());
    Login();
  }

  void Login() {
    auto client = RawClient::Login(service_->Channel(), "alice", "pw-alice");
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::make_unique<RawClient>(*std::move(client));
  }

  std::unique_ptr<ServiceProcess> service_;
  std::unique_ptr<RawClient> client_;
};

TEST_F(ApiTest, DataSurvivesAGracefulRestart) {
  auto appended = client_->Append("INBOX", {Message(1), Message(2), Message(3)});
  ASSERT_TRUE(appended.ok()) << appended.status();
  ASSERT_EQ(appended->uids_size(), 3);

  int status = service_->Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(service_->Start().ok());
  Login();  // the session key is shared through the store, but log in afresh anyway

  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->messages(), 3u);
  EXPECT_EQ(open->uidvalidity(), appended->uidvalidity());
  auto bodies = client_->FetchBodies(*open, 1, 1000);
  ASSERT_TRUE(bodies.ok()) << bodies.status();
  ASSERT_EQ(bodies->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*bodies)[i].first, appended->uids(i));
    EXPECT_EQ((*bodies)[i].second, Message(i + 1));
  }
}

TEST_F(ApiTest, EveryAcknowledgedAppendSurvivesSigkill) {
  std::mutex mutex;
  std::vector<std::pair<uint32_t, std::string>> acknowledged;
  std::atomic<bool> stop{false};
  std::thread appender([&] {
    for (int n = 0; !stop.load(); ++n) {
      std::string message = Message(n, 4000 + (n % 7) * 1000);
      auto result = client_->Append("INBOX", {message});
      if (!result.ok()) {
        continue;  // the service is gone; nothing was acknowledged
      }
      std::lock_guard lock(mutex);
      acknowledged.emplace_back(result->uids(0), message);
    }
  });
  // Kill the service in the middle of the stream of appends.
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(mutex);
    if (acknowledged.size() >= 40) {
      break;
    }
  }
  int status = service_->Stop(SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(status));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  appender.join();

  ASSERT_TRUE(service_->Start().ok());
  Login();
  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok()) << open.status();
  auto bodies = client_->FetchBodies(*open, 1, 4000000000u);
  ASSERT_TRUE(bodies.ok()) << bodies.status();
  std::map<uint32_t, std::string> stored(bodies->begin(), bodies->end());
  ASSERT_GE(acknowledged.size(), 40u);
  for (const auto& [uid, content] : acknowledged) {
    auto it = stored.find(uid);
    ASSERT_NE(it, stored.end()) << "acknowledged UID " << uid << " lost";
    EXPECT_EQ(it->second, content) << "UID " << uid << " damaged";
  }
}

TEST_F(ApiTest, AnAppendedMessageGrowsPartByPart) {
  // RFC 4469 CATENATE: the gateway learns each part's size as it comes.
  auto context = client_->Context();
  v1::AppendResponse response;
  auto writer = client_->stub().Append(context.get(), &response);
  v1::AppendRequest item;
  item.set_mailbox("INBOX");
  ASSERT_TRUE(writer->Write(item));
  item.mutable_message()->set_size(0);
  ASSERT_TRUE(writer->Write(item));
  const std::string parts[] = {"Subject: parts\r\n\r\n", "", "first, ", "second\r\n"};
  std::string whole;
  for (const std::string& part : parts) {
    item.set_more(part.size());
    ASSERT_TRUE(writer->Write(item));
    if (!part.empty()) {
      item.set_chunk(part);
      ASSERT_TRUE(writer->Write(item));
    }
    whole += part;
  }
  ASSERT_TRUE(writer->WritesDone());
  ASSERT_TRUE(writer->Finish().ok());
  ASSERT_EQ(response.uids_size(), 1);
  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok()) << open.status();
  auto bodies = client_->FetchBodies(*open, response.uids(0), response.uids(0));
  ASSERT_TRUE(bodies.ok()) << bodies.status();
  ASSERT_EQ(bodies->size(), 1u);
  EXPECT_EQ(bodies->front().second, whole);
}

// Reads change events until `predicate` returns true or the stream ends.
template <typename Stream, typename Predicate>
std::vector<v1::ChangeEvent> ReadUntil(Stream& stream, Predicate predicate) {
  std::vector<v1::ChangeEvent> events;
  v1::ChangeEvent event;
  while (stream.Read(&event)) {
    events.push_back(event);
    if (predicate(event)) {
      break;
    }
  }
  return events;
}

TEST_F(ApiTest, ReviseIssuesANewUidAndTheFeedShowsAddedThenExpunged) {
  auto appended = client_->Append("INBOX", {Message(1)}, {"\\Flagged", "$Important"});
  ASSERT_TRUE(appended.ok());
  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok());

  auto feed_context = client_->Context();
  feed_context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto feed = client_->stub().Changes(feed_context.get());
  v1::ChangeFeedRequest subscribe;
  subscribe.mutable_subscribe()->set_mailbox_id(open->mailbox_id());
  subscribe.mutable_subscribe()->set_uidvalidity(open->uidvalidity());
  subscribe.mutable_subscribe()->set_from_modseq(open->highest_modseq());
  subscribe.mutable_subscribe()->set_session_token(client_->token());
  ASSERT_TRUE(feed->Write(subscribe));
  ReadUntil(*feed, [](const v1::ChangeEvent& e) { return e.has_subscribed(); });

  // Revise as the admin tool does it: admin token acting for the user.
  grpc::ClientContext revise_context;
  service_->ActAs(&revise_context, "alice");
  v1::ReviseResponse revised;
  auto writer = client_->stub().Revise(&revise_context, &revised);
  std::string content = Message(100);
  v1::ReviseRequest item;
  item.mutable_header()->set_mailbox("INBOX");
  item.mutable_header()->set_uid(appended->uids(0));
  item.mutable_header()->set_size(content.size());
  writer->Write(item);
  item.Clear();
  item.set_chunk(content);
  writer->Write(item);
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(revised.old_uid(), appended->uids(0));
  EXPECT_GT(revised.new_uid(), revised.old_uid());

  auto events = ReadUntil(*feed, [](const v1::ChangeEvent& e) { return e.has_expunged(); });
  ASSERT_GE(events.size(), 2u);
  const v1::ChangeEvent& added = events[events.size() - 2];
  const v1::ChangeEvent& expunged = events.back();
  ASSERT_TRUE(added.has_added());
  EXPECT_EQ(added.added().messages(0).uid(), revised.new_uid());
  EXPECT_LT(added.modseq(), expunged.modseq());
  ASSERT_EQ(expunged.expunged().uids().ranges_size(), 1);
  EXPECT_EQ(expunged.expunged().uids().ranges(0).first(), revised.old_uid());
  feed_context->TryCancel();

  // The revision kept the flags; the old UID is gone.
  auto reopened = client_->Open("INBOX");
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(reopened->messages(), 1u);
  auto bodies = client_->FetchBodies(*reopened, 1, 1000);
  ASSERT_TRUE(bodies.ok());
  ASSERT_EQ(bodies->size(), 1u);
  EXPECT_EQ((*bodies)[0].first, revised.new_uid());
  EXPECT_EQ((*bodies)[0].second, content);
}

TEST_F(ApiTest, TheFeedResumesFromAModseqAfterTheServiceRestarts) {
  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok());
  const uint64_t resume_from = open->highest_modseq();
  ASSERT_TRUE(client_->Append("INBOX", {Message(1)}).ok());
  ASSERT_EQ(service_->Stop(SIGTERM), 0);
  ASSERT_TRUE(service_->Start().ok());
  Login();
  ASSERT_TRUE(client_->Append("INBOX", {Message(2)}).ok());

  auto context = client_->Context();
  auto feed = client_->stub().Changes(context.get());
  v1::ChangeFeedRequest subscribe;
  subscribe.mutable_subscribe()->set_mailbox_id(open->mailbox_id());
  subscribe.mutable_subscribe()->set_uidvalidity(open->uidvalidity());
  subscribe.mutable_subscribe()->set_from_modseq(resume_from);
  subscribe.mutable_subscribe()->set_session_token(client_->token());
  ASSERT_TRUE(feed->Write(subscribe));
  auto events = ReadUntil(*feed, [](const v1::ChangeEvent& e) { return e.has_subscribed(); });
  ASSERT_EQ(events.size(), 3u);  // two appends replayed from the log, then the marker
  EXPECT_TRUE(events[0].has_added());
  EXPECT_TRUE(events[1].has_added());
  EXPECT_LT(events[0].modseq(), events[1].modseq());
  EXPECT_GT(events[0].modseq(), resume_from);
  context->TryCancel();
}

void ExpectError(const absl::Status& status, absl::StatusCode code, v1::ErrorCode detail) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_EQ(v1::DetailOf(status).code(), detail) << status;
  EXPECT_FALSE(status.message().empty());
}

TEST_F(ApiTest, BadInputGetsAClearErrorAndTheServiceStaysUp) {
  // No credential, a forged one, an unknown user for an admin call.
  {
    auto stub = v1::Mailbox::NewStub(service_->Channel());
    grpc::ClientContext context;
    v1::StatusRequest request;
    request.set_name("INBOX");
    v1::StatusResponse response;
    ExpectError(v1::FromGrpcStatus(stub->Status(&context, request, &response)),
                absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED);
    grpc::ClientContext forged;
    forged.AddMetadata("x-mailbox-session", "v1.1.99999999999.deadbeef");
    ExpectError(v1::FromGrpcStatus(stub->Status(&forged, request, &response)),
                absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED);
    grpc::ClientContext unknown;
    service_->ActAs(&unknown, "nobody");
    ExpectError(v1::FromGrpcStatus(stub->Status(&unknown, request, &response)),
                absl::StatusCode::kNotFound, v1::NONEXISTENT);
  }
  // Unknown mailbox; names that are not UTF-8.
  ExpectError(client_->Open("No/Such/Box").status(), absl::StatusCode::kNotFound, v1::NONEXISTENT);
  {
    auto context = client_->Context();
    v1::CreateMailboxRequest request;
    request.set_name("bad\xff\xfe");
    v1::CreateMailboxResponse response;
    auto status = v1::FromGrpcStatus(client_->stub().CreateMailbox(context.get(), request, &response));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  }
  // Append to a missing mailbox: TRYCREATE. Oversized message: TOOBIG.
  ExpectError(client_->Append("Missing", {Message(1)}).status(), absl::StatusCode::kNotFound,
              v1::TRYCREATE);
  ExpectError(client_->Append("INBOX", {std::string(1000001, 'x')}).status(),
              absl::StatusCode::kInvalidArgument, v1::TOOBIG);

  ASSERT_TRUE(client_->Append("INBOX", {Message(1)}).ok());
  auto open = client_->Open("INBOX");
  ASSERT_TRUE(open.ok());
  // Empty and inverted UID sets; a stale UIDVALIDITY.
  for (auto uids : {v1::UidSet(), Uids(5, 2), Uids(0, 3)}) {
    auto context = client_->Context();
    v1::FetchRequest request;
    request.set_mailbox_id(open->mailbox_id());
    request.set_uidvalidity(open->uidvalidity());
    *request.mutable_uids() = uids;
    request.set_flags(true);
    auto reader = client_->stub().Fetch(context.get(), request);
    v1::FetchResponse item;
    while (reader->Read(&item)) {
    }
    ExpectError(v1::FromGrpcStatus(reader->Finish()), absl::StatusCode::kInvalidArgument,
                v1::BAD_REQUEST);
  }
  {
    auto context = client_->Context();
    v1::StoreRequest request;
    request.set_mailbox_id(open->mailbox_id());
    request.set_uidvalidity(open->uidvalidity() + 1);
    *request.mutable_uids() = Uids(1, 1);
    request.set_mode(v1::StoreRequest::ADD);
    request.add_flags("\\Seen");
    v1::StoreResponse response;
    ExpectError(v1::FromGrpcStatus(client_->stub().Store(context.get(), request, &response)),
                absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED);
  }
  // An append stream whose content is longer than it declared.
  {
    auto context = client_->Context();
    v1::AppendResponse response;
    auto writer = client_->stub().Append(context.get(), &response);
    v1::AppendRequest item;
    item.set_mailbox("INBOX");
    writer->Write(item);
    item.mutable_message()->set_size(3);
    writer->Write(item);
    item.set_chunk("four");
    writer->Write(item);
    writer->WritesDone();
    ExpectError(v1::FromGrpcStatus(writer->Finish()), absl::StatusCode::kInvalidArgument,
                v1::BAD_REQUEST);
  }
  // More octets for a message before any message was begun.
  {
    auto context = client_->Context();
    v1::AppendResponse response;
    auto writer = client_->stub().Append(context.get(), &response);
    v1::AppendRequest item;
    item.set_mailbox("INBOX");
    writer->Write(item);
    item.set_more(3);
    writer->Write(item);
    writer->WritesDone();
    ExpectError(v1::FromGrpcStatus(writer->Finish()), absl::StatusCode::kInvalidArgument,
                v1::BAD_REQUEST);
  }
  // A request over the gRPC message size limit is refused by the transport.
  {
    auto context = client_->Context();
    v1::CreateMailboxRequest request;
    request.set_name(std::string(9 << 20, 'a'));
    v1::CreateMailboxResponse response;
    EXPECT_FALSE(client_->stub().CreateMailbox(context.get(), request, &response).ok());
  }
  // Still serving.
  auto status = client_->Open("INBOX");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->messages(), 1u);
}

}  // namespace
}  // namespace mailbox::testing
