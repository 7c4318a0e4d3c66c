#include "tests/integration/service_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::testing {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir != nullptr) {
    return absl::StrCat(srcdir, "/imapd/", path);
  }
  return path;
}

std::string TempDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

ServiceProcess::ServiceProcess(std::string data_dir, std::vector<std::string> extra_flags)
    : data_dir_(std::move(data_dir)), extra_flags_(std::move(extra_flags)) {}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0) {
    Stop(SIGKILL);
  }
}

absl::Status ServiceProcess::Start() {
  std::string port_file = absl::StrCat(data_dir_, "/port");
  std::filesystem::create_directories(data_dir_);
  std::filesystem::remove(port_file);
  std::vector<std::string> args = {
      Runfile("mailbox-service/server/mailbox-service"),
      absl::StrCat("--listen=127.0.0.1:", port_),
      absl::StrCat("--data-dir=", data_dir_),
      absl::StrCat("--port-file=", port_file),
      // The operator endpoint on a free port: tests run side by side.
      "--http-listen=127.0.0.1:0",
      // Cheap password hashes: tests check behaviour, not hashing cost.
      "--argon2-memory=64KiB",
      "--argon2-time-cost=1",
      // Users start with INBOX alone, so that tests see only the mailboxes they
      // make (a later --default-mailboxes among the extra flags wins).
      "--default-mailboxes=",
  };
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("mailbox-service exited during start, status ",
                                              status));
    }
    std::ifstream in(port_file);
    int port = 0;
    if (in >> port && port > 0) {
      port_ = port;
      std::ifstream token(absl::StrCat(data_dir_, "/admin.token"));
      std::getline(token, admin_token_);
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Stop(SIGKILL);
  return absl::DeadlineExceededError("mailbox-service did not start listening in 30 s");
}

int ServiceProcess::Stop(int signal) {
  if (pid_ <= 0) {
    return -1;
  }
  kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

std::string ServiceProcess::target() const { return absl::StrCat("127.0.0.1:", port_); }

std::shared_ptr<grpc::Channel> ServiceProcess::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  return grpc::CreateCustomChannel(target(), grpc::InsecureChannelCredentials(), args);
}

absl::Status ServiceProcess::CreateUser(const std::string& name,
                                        const std::string& password) const {
  auto stub = v1::Admin::NewStub(Channel());
  grpc::ClientContext context;
  context.AddMetadata("x-mailbox-admin", admin_token_);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::CreateUserRequest request;
  request.set_username(name);
  request.set_password(password);
  v1::CreateUserResponse response;
  return v1::FromGrpcStatus(stub->CreateUser(&context, request, &response));
}

void ServiceProcess::ActAs(grpc::ClientContext* context, const std::string& user) const {
  context->AddMetadata("x-mailbox-admin", admin_token_);
  context->AddMetadata("x-mailbox-act-as", user);
}

}  // namespace mailbox::testing
