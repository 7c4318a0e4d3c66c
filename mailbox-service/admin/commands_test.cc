// Runs mailbox-admin's commands against an in-process fake of the mailbox service.
#include "mailbox-service/admin/commands.h"

#include <sys/stat.h>
#include <sys/time.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "mailbox-service/admin/cli_args.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"

namespace mailbox::admin {
namespace {

namespace v1 = ::mailbox::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kToken[] = "secret-token";

struct StoredMessage {
  std::vector<std::string> flags;
  bool has_date = false;
  int64_t date = 0;
  int32_t tz = 0;
  std::string content;
  uint32_t uid = 0;
};

struct FakeMailbox {
  uint64_t id = 0;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  std::vector<StoredMessage> messages;
};

// Just enough of the service for the admin tool, with the same error conventions.
class FakeService final : public v1::Mailbox::Service, public v1::Admin::Service {
 public:
  std::mutex mu;
  std::map<std::string, uint64_t> users;
  std::map<std::string, std::string> passwords;
  std::map<std::string, std::map<std::string, FakeMailbox>> mailboxes;
  uint64_t next_id = 1;
  int append_calls = 0;
  uint64_t max_message = 1 << 20;
  std::vector<std::string> act_as_seen;

  static grpc::Status Error(absl::StatusCode code, v1::ErrorCode detail, std::string message) {
    return v1::ToGrpcStatus(v1::MakeError(code, detail, message));
  }

  grpc::Status CheckAdmin(grpc::ServerContext* context) {
    auto it = context->client_metadata().find("x-mailbox-admin");
    if (it == context->client_metadata().end() ||
        std::string(it->second.data(), it->second.size()) != kToken) {
      return Error(absl::StatusCode::kUnauthenticated, v1::AUTHENTICATIONFAILED,
                   "the admin token is wrong");
    }
    return grpc::Status::OK;
  }

  // The user an admin call acts for.
  grpc::Status Caller(grpc::ServerContext* context, std::string* user) {
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    auto it = context->client_metadata().find("x-mailbox-act-as");
    if (it == context->client_metadata().end()) {
      return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "no act-as");
    }
    *user = std::string(it->second.data(), it->second.size());
    act_as_seen.push_back(*user);
    if (users.count(*user) == 0) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such user: " + *user);
    }
    return grpc::Status::OK;
  }

  // Admin
  grpc::Status CreateUser(grpc::ServerContext* context, const v1::CreateUserRequest* request,
                          v1::CreateUserResponse* response) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    if (users.count(request->username())) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   "user " + request->username() + " exists");
    }
    users[request->username()] = next_id;
    passwords[request->username()] = request->password();
    mailboxes[request->username()]["INBOX"] = FakeMailbox{next_id * 100, static_cast<uint32_t>(1000 + next_id), 1, {}};
    response->set_user_id(next_id++);
    return grpc::Status::OK;
  }
  grpc::Status DeleteUser(grpc::ServerContext* context, const v1::DeleteUserRequest* request,
                          v1::DeleteUserResponse*) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    if (users.erase(request->username()) == 0) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such user");
    }
    return grpc::Status::OK;
  }
  grpc::Status SetPassword(grpc::ServerContext* context, const v1::SetPasswordRequest* request,
                           v1::SetPasswordResponse*) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    passwords[request->username()] = request->password();
    return grpc::Status::OK;
  }
  grpc::Status ListUsers(grpc::ServerContext* context, const v1::ListUsersRequest*,
                         v1::ListUsersResponse* response) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    for (const auto& [name, id] : users) {
      v1::Principal* p = response->add_users();
      p->set_username(name);
      p->set_user_id(id);
    }
    return grpc::Status::OK;
  }

  // Mailbox
  grpc::Status ListMailboxes(grpc::ServerContext* context, const v1::ListMailboxesRequest*,
                             v1::ListMailboxesResponse* response) override {
    std::lock_guard lock(mu);
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    response->set_delimiter("/");
    for (const auto& [name, box] : mailboxes[user]) {
      v1::MailboxInfo* info = response->add_mailboxes();
      info->set_name(name);
      info->set_mailbox_id(box.id);
      info->add_attributes(box.id == 0 ? "\\Noselect" : "\\HasNoChildren");
      if (name == "Sent") {
        info->add_special_use("\\Sent");
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override {
    std::lock_guard lock(mu);
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    auto it = mailboxes[user].find(request->name());
    if (it == mailboxes[user].end()) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such mailbox");
    }
    const FakeMailbox& box = it->second;
    response->set_mailbox_id(box.id);
    response->set_messages(box.messages.size());
    response->set_uidnext(box.uidnext);
    response->set_uidvalidity(box.uidvalidity);
    uint64_t size = 0;
    uint32_t unseen = 0;
    for (const StoredMessage& m : box.messages) {
      size += m.content.size();
      unseen += std::count(m.flags.begin(), m.flags.end(), "\\Seen") == 0;
    }
    response->set_unseen(unseen);
    response->set_size(size);
    response->set_highest_modseq(box.uidnext + 5);
    return grpc::Status::OK;
  }
  grpc::Status CreateMailbox(grpc::ServerContext* context, const v1::CreateMailboxRequest* request,
                             v1::CreateMailboxResponse* response) override {
    std::lock_guard lock(mu);
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    if (mailboxes[user].count(request->name())) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS, "mailbox exists");
    }
    FakeMailbox& box = mailboxes[user][request->name()];
    box.id = next_id++;
    box.uidvalidity = 5000 + static_cast<uint32_t>(box.id);
    response->set_mailbox_id(box.id);
    response->set_uidvalidity(box.uidvalidity);
    return grpc::Status::OK;
  }

  template <typename Reader, typename Request>
  static grpc::Status ReadContent(Reader* reader, uint64_t size, std::string* content) {
    Request item;
    while (content->size() < size && reader->Read(&item)) {
      if (!item.has_chunk() || item.chunk().size() > 256 * 1024) {
        return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "bad chunk");
      }
      content->append(item.chunk());
    }
    if (content->size() != size) {
      return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "size mismatch");
    }
    return grpc::Status::OK;
  }

  grpc::Status Append(grpc::ServerContext* context, grpc::ServerReader<v1::AppendRequest>* reader,
                      v1::AppendResponse* response) override {
    std::lock_guard lock(mu);
    ++append_calls;
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    v1::AppendRequest item;
    if (!reader->Read(&item) || !item.has_mailbox()) {
      return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "no mailbox");
    }
    auto it = mailboxes[user].find(item.mailbox());
    if (it == mailboxes[user].end()) {
      return Error(absl::StatusCode::kNotFound, v1::TRYCREATE, "no such mailbox");
    }
    std::vector<StoredMessage> batch;
    while (reader->Read(&item)) {
      if (!item.has_message()) {
        return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "expected message");
      }
      if (item.message().size() > max_message) {
        return Error(absl::StatusCode::kResourceExhausted, v1::TOOBIG, "message too big");
      }
      StoredMessage m;
      m.flags.assign(item.message().flags().begin(), item.message().flags().end());
      m.has_date = item.message().has_internal_date();
      m.date = item.message().internal_date_unix();
      m.tz = item.message().internal_date_tz_minutes();
      m.uid = item.message().uid();
      if (auto status = ReadContent<grpc::ServerReader<v1::AppendRequest>, v1::AppendRequest>(
              reader, item.message().size(), &m.content);
          !status.ok()) {
        return status;
      }
      batch.push_back(std::move(m));
    }
    if (batch.empty()) {
      return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "no messages");
    }
    FakeMailbox& box = it->second;
    for (StoredMessage& m : batch) {
      if (m.uid != 0) {  // an import's UID (AppendMessage.uid)
        if (m.uid < box.uidnext) {
          return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT, "UID below UIDNEXT");
        }
        box.uidnext = m.uid;
      }
      m.uid = box.uidnext++;
      response->add_uids(m.uid);
      box.messages.push_back(std::move(m));
    }
    response->set_mailbox_id(box.id);
    response->set_uidvalidity(box.uidvalidity);
    return grpc::Status::OK;
  }

  // Import (import dovecot)
  std::map<std::string, std::set<std::string>> subscriptions;
  std::map<std::string, uint64_t> prepared_modseq;
  grpc::Status PrepareImport(grpc::ServerContext* context, const v1::PrepareImportRequest* request,
                             v1::PrepareImportResponse* response) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    if (users.count(request->username()) == 0) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such user");
    }
    auto& boxes = mailboxes[request->username()];
    auto it = boxes.find(request->mailbox());
    if (it != boxes.end() && it->second.uidnext > 1) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS, "mailbox held messages");
    }
    response->set_created(it == boxes.end());
    FakeMailbox& box = boxes[request->mailbox()];
    if (box.id == 0) {
      box.id = next_id++;
    }
    box.uidvalidity = request->uidvalidity();
    prepared_modseq[request->mailbox()] = request->highest_modseq();
    response->set_mailbox_id(box.id);
    response->set_uidvalidity(box.uidvalidity);
    return grpc::Status::OK;
  }
  grpc::Status FinishImport(grpc::ServerContext* context, const v1::FinishImportRequest* request,
                            v1::FinishImportResponse* response) override {
    std::lock_guard lock(mu);
    if (auto status = CheckAdmin(context); !status.ok()) {
      return status;
    }
    FakeMailbox& box = mailboxes[request->username()][request->mailbox()];
    if (box.uidvalidity != request->uidvalidity()) {
      return Error(absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED, "changed");
    }
    box.uidnext = std::max(box.uidnext, request->uidnext());
    response->set_uidnext(box.uidnext);
    return grpc::Status::OK;
  }
  grpc::Status SetSubscription(grpc::ServerContext* context,
                               const v1::SetSubscriptionRequest* request,
                               v1::SetSubscriptionResponse*) override {
    std::lock_guard lock(mu);
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    if (request->subscribed()) {
      subscriptions[user].insert(request->name());
    } else {
      subscriptions[user].erase(request->name());
    }
    return grpc::Status::OK;
  }

  grpc::Status Revise(grpc::ServerContext* context, grpc::ServerReader<v1::ReviseRequest>* reader,
                      v1::ReviseResponse* response) override {
    std::lock_guard lock(mu);
    std::string user;
    if (auto status = Caller(context, &user); !status.ok()) {
      return status;
    }
    v1::ReviseRequest item;
    if (!reader->Read(&item) || !item.has_header()) {
      return Error(absl::StatusCode::kInvalidArgument, v1::BAD_REQUEST, "no header");
    }
    const v1::ReviseHeader header = item.header();
    auto it = mailboxes[user].find(header.mailbox());
    if (it == mailboxes[user].end()) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such mailbox");
    }
    FakeMailbox& box = it->second;
    auto old = std::find_if(box.messages.begin(), box.messages.end(),
                            [&](const StoredMessage& m) { return m.uid == header.uid(); });
    if (old == box.messages.end()) {
      return Error(absl::StatusCode::kNotFound, v1::NONEXISTENT, "no such message");
    }
    StoredMessage m;
    if (auto status = ReadContent<grpc::ServerReader<v1::ReviseRequest>, v1::ReviseRequest>(reader, header.size(),
                                                                         &m.content);
        !status.ok()) {
      return status;
    }
    m.flags = header.replace_flags()
                  ? std::vector<std::string>(header.flags().begin(), header.flags().end())
                  : old->flags;
    m.uid = box.uidnext++;
    response->set_old_uid(old->uid);
    response->set_new_uid(m.uid);
    response->set_uidvalidity(box.uidvalidity);
    box.messages.erase(old);
    box.messages.push_back(std::move(m));
    return grpc::Status::OK;
  }
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(static_cast<v1::Mailbox::Service*>(&service_));
    builder.RegisterService(static_cast<v1::Admin::Service*>(&service_));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    dir_ = std::filesystem::path(std::getenv("TEST_TMPDIR")) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { server_->Shutdown(); }

  struct Result {
    int exit_code;
    std::string out;
    std::string err;
  };

  Result Run(std::vector<std::string> args, std::string input = "",
             std::map<std::string, std::string> env = {{"MAILBOX_ADMIN_TOKEN", kToken}}) {
    auto lookup = [env](const char* name) -> std::optional<std::string> {
      auto it = env.find(name);
      return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    auto invocation = ParseCommandLine(args, lookup);
    if (!invocation.ok()) {
      return {kExitUsage, "", std::string(invocation.status().message())};
    }
    std::istringstream in(input);
    std::ostringstream out;
    std::ostringstream err;
    int code = RunCommand(*invocation, channel_, Io{in, out, err, false});
    return {code, out.str(), err.str()};
  }

  std::string WriteFile(const std::string& name, const std::string& content) {
    std::filesystem::path path = dir_ / name;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }

  FakeService service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::filesystem::path dir_;
};

TEST_F(CommandsTest, Users) {
  Result r = Run({"user", "add", "alice", "--password", "pw1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "created user alice (id 1)\n");
  r = Run({"user", "add", "bob", "--password-stdin"}, "pw2\r\nignored\n");
  EXPECT_EQ(r.out, "created user bob (id 2)\n");
  EXPECT_EQ(service_.passwords["bob"], "pw2");

  r = Run({"user", "add", "alice", "--password=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: user alice exists (ALREADYEXISTS)\n");

  r = Run({"user", "passwd", "alice", "--password=new"});
  EXPECT_EQ(r.out, "changed password of user alice\n");
  EXPECT_EQ(service_.passwords["alice"], "new");

  r = Run({"user", "list"});
  EXPECT_EQ(r.out, "ID\tUSERNAME\n1\talice\n2\tbob\n");

  r = Run({"user", "remove", "bob"});
  EXPECT_EQ(r.out, "removed user bob\n");
  r = Run({"user", "remove", "bob"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: no such user (NONEXISTENT)\n");
}

TEST_F(CommandsTest, PasswordNeeded) {
  Result r = Run({"user", "add", "alice"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("no password: give --password-stdin or --password P"));
  r = Run({"user", "add", "alice", "--password-stdin"}, "");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: --password-stdin"));
}

TEST_F(CommandsTest, Tokens) {
  Result r = Run({"user", "list"}, "", {{"MAILBOX_ADMIN_TOKEN", "wrong"}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: the admin token is wrong (AUTHENTICATIONFAILED)\n");

  std::string file = WriteFile("data/admin.token", std::string(kToken) + "\n");
  r = Run({"user", "list"}, "", {{"MAILBOX_DATA_DIR", (dir_ / "data").string()}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ID\tUSERNAME\n");
  r = Run({"--token-file", file, "user", "list"}, "", {{"MAILBOX_ADMIN_TOKEN", "wrong"}});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = Run({"user", "list"}, "", {{"MAILBOX_DATA_DIR", (dir_ / "missing").string()}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: cannot read the admin token from "));
  EXPECT_THAT(r.err, HasSubstr("missing/admin.token: No such file or directory"));
}

TEST_F(CommandsTest, Mailboxes) {
  Run({"user", "add", "alice", "--password", "pw"});
  Result r = Run({"mailbox", "create", "alice", "Sent"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "created mailbox Sent (id 2, uidvalidity 5002)\n");
  service_.mailboxes["alice"]["Archive"] = FakeMailbox{};  // id 0: \Noselect
  service_.mailboxes["alice"]["INBOX"].messages.push_back({{"\\Seen"}, false, 0, 0, "abc", 1});
  service_.mailboxes["alice"]["INBOX"].messages.push_back({{}, false, 0, 0, "de", 2});
  service_.mailboxes["alice"]["INBOX"].uidnext = 3;
  r = Run({"mailbox", "list", "alice"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME\tATTRIBUTES\tMESSAGES\tUIDNEXT\tUIDVALIDITY\tUNSEEN\tHIGHESTMODSEQ\tSIZE\n"
            "Archive\t\\Noselect\t-\t-\t-\t-\t-\t-\n"
            "INBOX\t\\HasNoChildren\t2\t3\t1001\t1\t8\t5\n"
            "Sent\t\\HasNoChildren \\Sent\t0\t1\t5002\t0\t6\t0\n");
  EXPECT_THAT(service_.act_as_seen, ::testing::Each(std::string("alice")));

  r = Run({"mailbox", "list", "nobody"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: no such user: nobody (NONEXISTENT)\n");
}

TEST_F(CommandsTest, ImportMboxInBatchesCreatesMailbox) {
  Run({"user", "add", "alice", "--password", "pw"});
  std::string mbox;
  for (int i = 1; i <= 5; ++i) {
    absl::StrAppend(&mbox, "From a@example.com Mon Jan  1 00:00:0", i, " 2024\n",
                    "Subject: ", i, "\n", i == 2 ? "Status: RO\nX-Status: F\n" : "", "\n",
                    ">From quoted\n", "\n");
  }
  std::string path = WriteFile("in.mbox", mbox);
  Result r = Run({"import", "mbox", "alice", "Old/2024", path, "--batch=2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "created mailbox Old/2024 (id 2, uidvalidity 5002)\n"
            "imported 5 messages into Old/2024 (uidvalidity 5002, uids 1:5)\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(service_.append_calls, 3);
  const FakeMailbox& box = service_.mailboxes["alice"]["Old/2024"];
  ASSERT_EQ(box.messages.size(), 5u);
  EXPECT_EQ(box.messages[0].content, "Subject: 1\r\n\r\nFrom quoted\r\n");
  EXPECT_THAT(box.messages[1].flags, ElementsAre("\\Seen", "\\Flagged"));
  EXPECT_TRUE(box.messages[4].has_date);
  EXPECT_EQ(box.messages[4].date, 1704067205);

  // Into an existing mailbox, from standard input.
  r = Run({"import", "mbox", "alice", "Old/2024", "-"}, mbox);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 5 messages into Old/2024 (uidvalidity 5002, uids 6:10)\n");
}

TEST_F(CommandsTest, ImportMboxErrors) {
  Run({"user", "add", "alice", "--password", "pw"});
  std::string path = WriteFile("bad.mbox", "Subject: not mbox\n");
  Result r = Run({"import", "mbox", "alice", "INBOX", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat("error: ", path,
                                ": line 1: not an mbox file: text before the first \"From \" "
                                "separator line\nnote: imported 0 messages into INBOX before "
                                "the error\n"));

  r = Run({"import", "mbox", "alice", "INBOX", (dir_ / "nope").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot open"));

  // The third message is too big: the first batch is committed, the second is not.
  service_.max_message = 100;
  std::string mbox = "From a\n\nsmall 1\n\nFrom b\n\nsmall 2\n\nFrom c\n\n" +
                     std::string(200, 'x') + "\n\nFrom d\n\nempty next\n\nFrom e\n\n";
  path = WriteFile("big.mbox", mbox);
  r = Run({"import", "mbox", "alice", "INBOX", path, "--batch=2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("error: message too big (TOOBIG)\n"
                               "note: imported 2 messages into INBOX (uidvalidity 1001, "
                               "uids 1:2) before the error\n"));
  EXPECT_EQ(service_.mailboxes["alice"]["INBOX"].messages.size(), 2u);
}

TEST_F(CommandsTest, ImportMaildir) {
  Run({"user", "add", "alice", "--password", "pw"});
  auto write = [&](const std::string& name, const std::string& content, time_t mtime) {
    std::string path = WriteFile("Maildir/" + name, content);
    struct timeval times[2] = {{mtime, 0}, {mtime, 0}};
    ::utimes(path.c_str(), times);
  };
  write("cur/200.b.host:2,SR", "Subject: b\n\nb\n", 2000);
  write("new/100.a.host", "Subject: a\r\n\r\na\r\n", 1000);
  write("cur/300.c.host:2,FTab", "Subject: c\n\nc\n", 3000);
  write("cur/.hidden", "x", 1);
  write("tmp/50.tmp.host", "not delivered", 1);
  Result r = Run({"import", "maildir", "alice", "INBOX", (dir_ / "Maildir").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "imported 3 messages into INBOX (uidvalidity 1001, uids 1:3)\n");
  EXPECT_EQ(r.err, "warning: Maildir flag letters \"ab\" have no IMAP system flag and were "
                   "ignored\n");
  const FakeMailbox& box = service_.mailboxes["alice"]["INBOX"];
  ASSERT_EQ(box.messages.size(), 3u);
  EXPECT_EQ(box.messages[0].content, "Subject: a\r\n\r\na\r\n");
  EXPECT_EQ(box.messages[0].date, 1000);
  EXPECT_EQ(box.messages[1].content, "Subject: b\r\n\r\nb\r\n");
  EXPECT_THAT(box.messages[1].flags, ElementsAre("\\Seen", "\\Answered"));
  EXPECT_THAT(box.messages[2].flags, ElementsAre("\\Flagged", "\\Deleted"));
  EXPECT_EQ(box.messages[2].date, 3000);

  // A link to a file the Maildir's owner cannot read is skipped and reported.
  WriteFile("secret", "Subject: secret\n\n");
  std::filesystem::create_symlink(dir_ / "secret", dir_ / "Maildir" / "cur" / "400.d.host");
  r = Run({"import", "maildir", "alice", "INBOX", (dir_ / "Maildir").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("warning: skipped cur/400.d.host: a symbolic link, not followed"));
  ASSERT_EQ(box.messages.size(), 6u);
  for (const auto& message : box.messages) {
    EXPECT_EQ(message.content.find("secret"), std::string::npos);
  }

  r = Run({"import", "maildir", "alice", "INBOX", dir_.string() + "/nothing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("is not a Maildir: it has no cur/ or new/ directory"));
}

TEST_F(CommandsTest, ImportDovecotKeepsUidsFlagsKeywordsAndSubscriptions) {
  auto write = [&](const std::string& name, const std::string& content, time_t mtime = 0) {
    std::string path = WriteFile("Maildir/" + name, content);
    if (mtime != 0) {
      struct timeval times[2] = {{mtime, 0}, {mtime, 0}};
      ::utimes(path.c_str(), times);
    }
  };
  // INBOX: UIDs 1, 3 and 4 listed (4's file is gone: expunged), N9 (8 was the last
  // UID given); one message delivered since Dovecot last looked.
  write("dovecot-uidlist", "3 V1234 N9 Gabc\n1 :100.a.host,S=12\n3 S14 :300.c.host\n"
                           "4 :400.d.host\n");
  write("dovecot-keywords", "0 $Work\n1 Custom\n");
  write("cur/100.a.host,S=12:2,Sa", "Subject: a\n\na\n", 1000);
  write("cur/300.c.host:2,FPb", "Subject: c\n\nc\n", 3000);
  write("new/500.e.host", "Subject: e\n\ne\n", 5000);
  write(".Sent/dovecot-uidlist", "3 V77 N3\n1 :1.s.host\n2 :2.s.host\n");
  write(".Sent/cur/1.s.host:2,S", "Subject: s1\n\ns\n", 100);
  write(".Sent/cur/2.s.host:2,RS", "Subject: s2\n\ns\n", 200);
  write("subscriptions", "V\t2\n\nSent\nWork\tGone\n");
  Result r = Run({"import", "dovecot", "alice", (dir_ / "Maildir").string(), "--password", "pw",
                  "--batch=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "created user alice (id 1)\n"
            "imported INBOX: 3 messages (uidvalidity 1234, uidnext 10)\n"
            "imported Sent: 2 messages (uidvalidity 77, uidnext 3)\n"
            "imported 2 folders, 5 messages, 2 subscriptions for alice\n");
  EXPECT_THAT(r.err, HasSubstr("importing 2 folders, 5 messages for alice\n"));
  EXPECT_THAT(r.err, HasSubstr("progress: INBOX 2/3\n"));
  EXPECT_THAT(r.err, HasSubstr("warning: INBOX: flag letters \"P\" are no IMAP flag"));
  EXPECT_THAT(r.err, HasSubstr("note: INBOX: 1 UID(s) of dovecot-uidlist have no file"));
  EXPECT_THAT(r.err, HasSubstr("note: INBOX: 1 message(s) not in dovecot-uidlist got new UIDs"));
  EXPECT_EQ(service_.passwords["alice"], "pw");
  const FakeMailbox& inbox = service_.mailboxes["alice"]["INBOX"];
  EXPECT_EQ(inbox.uidvalidity, 1234u);
  EXPECT_EQ(inbox.uidnext, 10u);
  ASSERT_EQ(inbox.messages.size(), 3u);
  EXPECT_EQ(inbox.messages[0].uid, 1u);
  EXPECT_EQ(inbox.messages[0].content, "Subject: a\r\n\r\na\r\n");
  EXPECT_THAT(inbox.messages[0].flags, ElementsAre("\\Seen", "$Work"));
  EXPECT_EQ(inbox.messages[0].date, 1000);
  EXPECT_EQ(inbox.messages[1].uid, 3u);
  EXPECT_THAT(inbox.messages[1].flags, ElementsAre("\\Flagged", "Custom"));
  EXPECT_EQ(inbox.messages[2].uid, 9u);
  EXPECT_EQ(inbox.messages[2].date, 5000);
  const FakeMailbox& sent = service_.mailboxes["alice"]["Sent"];
  EXPECT_EQ(sent.uidvalidity, 77u);
  ASSERT_EQ(sent.messages.size(), 2u);
  EXPECT_EQ(sent.messages[1].uid, 2u);
  EXPECT_THAT(sent.messages[1].flags, ElementsAre("\\Answered", "\\Seen"));
  EXPECT_EQ(service_.prepared_modseq["INBOX"], uint64_t{1} << 32);
  EXPECT_THAT(service_.subscriptions["alice"], ElementsAre("Sent", "Work/Gone"));

  // A second run is refused before it changes anything.
  r = Run({"import", "dovecot", "alice", (dir_ / "Maildir").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("user alice already has messages in INBOX (UIDNEXT 10), "
                               "Sent (UIDNEXT 3)"));
  EXPECT_THAT(r.err, HasSubstr("Nothing was changed"));
  EXPECT_EQ(service_.mailboxes["alice"]["INBOX"].messages.size(), 3u);
}

TEST_F(CommandsTest, ImportDovecotRefusesMalformedFilesBeforeChangingAnything) {
  WriteFile("Maildir/cur/1.a.host:2,S", "Subject: a\n\na\n");
  WriteFile("Maildir/.Work/cur/1.b.host", "Subject: b\n\nb\n");
  WriteFile("Maildir/.Work/dovecot-uidlist", "3 V5 N3\n2 :1.b.host\n1 :2.b.host\n");
  Result r = Run({"import", "dovecot", "bob", (dir_ / "Maildir").string(), "--password", "pw"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("/Maildir/.Work/dovecot-uidlist line 3: UID 1 is not above the "
                               "UID before it (2)"));
  EXPECT_EQ(service_.users.count("bob"), 0u);  // not even the user was created

  WriteFile("Maildir/.Work/dovecot-uidlist", "3 V5 N3\n1 :1.b.host\n");
  WriteFile("Maildir/dovecot-keywords", "0 $Work\n26 Z\n");
  r = Run({"import", "dovecot", "bob", (dir_ / "Maildir").string(), "--password", "pw"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("dovecot-keywords line 2: index 26 has no letter"));
  EXPECT_EQ(service_.users.count("bob"), 0u);

  // Without a password option the user must exist.
  std::filesystem::remove(dir_ / "Maildir" / "dovecot-keywords");
  r = Run({"import", "dovecot", "bob", (dir_ / "Maildir").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no such user: bob"));

  // A folder without dovecot-uidlist gets new UIDs, and says so.
  r = Run({"import", "dovecot", "bob", (dir_ / "Maildir").string(), "--password", "pw"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("/Maildir has no dovecot-uidlist: its messages get new UIDs"));
  EXPECT_EQ(service_.mailboxes["bob"]["INBOX"].messages.size(), 1u);
  EXPECT_EQ(service_.mailboxes["bob"]["Work"].uidvalidity, 5u);
  EXPECT_EQ(service_.mailboxes["bob"]["Work"].uidnext, 3u);
}

TEST_F(CommandsTest, Revise) {
  Run({"user", "add", "alice", "--password", "pw"});
  service_.mailboxes["alice"]["INBOX"].messages.push_back({{"\\Seen"}, false, 0, 0, "old", 7});
  service_.mailboxes["alice"]["INBOX"].uidnext = 8;
  std::string big(600 * 1024, 'z');
  std::string path = WriteFile("new.eml", "Subject: new\n\n" + big + "\n");
  Result r = Run({"revise", "alice", "INBOX", "7", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "revised UID 7 -> 8 (uidvalidity 1001)\n");
  const FakeMailbox& box = service_.mailboxes["alice"]["INBOX"];
  ASSERT_EQ(box.messages.size(), 1u);
  EXPECT_EQ(box.messages[0].content, "Subject: new\r\n\r\n" + big + "\r\n");
  EXPECT_THAT(box.messages[0].flags, ElementsAre("\\Seen"));

  r = Run({"revise", "alice", "INBOX", "8", "-", "--replace-flags", "\\Flagged", "$Work"},
          "Subject: newer\n\nx\n");
  EXPECT_EQ(r.out, "revised UID 8 -> 9 (uidvalidity 1001)\n");
  EXPECT_THAT(box.messages[0].flags, ElementsAre("\\Flagged", "$Work"));

  r = Run({"revise", "alice", "INBOX", "8", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "error: no such message (NONEXISTENT)\n");
}

TEST_F(CommandsTest, UnreachableServer) {
  auto invocation = ParseCommandLine({"--timeout=2s", "user", "list"}, [](const char* name) {
    return std::string(name) == "MAILBOX_ADMIN_TOKEN" ? std::optional<std::string>("t")
                                                      : std::nullopt;
  });
  ASSERT_TRUE(invocation.ok());
  std::istringstream in;
  std::ostringstream out;
  std::ostringstream err;
  auto channel = grpc::CreateChannel("127.0.0.1:1",
                                     grpc::InsecureChannelCredentials());
  EXPECT_EQ(RunCommand(*invocation, channel, Io{in, out, err, false}), 1);
  EXPECT_THAT(err.str(), ::testing::MatchesRegex("error: .* \\(UNAVAILABLE\\)\nhint: .*\n"));
  EXPECT_THAT(err.str(), ::testing::HasSubstr("give --ca-file"));
}

TEST(UnavailableHintTest, NamesWhatIsMissingFromTheLink) {
  GlobalOptions global;
  global.server = "mailbox.internal:50051";
  EXPECT_THAT(UnavailableHint(global), ::testing::HasSubstr("mailbox.internal:50051"));
  EXPECT_THAT(UnavailableHint(global), ::testing::HasSubstr("give --ca-file"));
  global.ca_file = "/etc/ca.pem";
  EXPECT_THAT(UnavailableHint(global), ::testing::HasSubstr("give --cert-file and --key-file"));
  global.cert_file = "/etc/admin.pem";
  global.key_file = "/etc/admin.key";
  EXPECT_THAT(UnavailableHint(global), ::testing::HasSubstr("client CA signed --cert-file"));
}

}  // namespace
}  // namespace mailbox::admin
