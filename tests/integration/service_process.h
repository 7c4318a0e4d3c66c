// Runs the real mailbox-service binary for integration tests: a private data
// directory, an ephemeral loopback port, and stop/kill/restart on demand.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "proto/mailbox/v1/mailbox.grpc.pb.h"

namespace mailbox::testing {

class ServiceProcess {
 public:
  // `data_dir` is created if needed and kept across restarts.
  explicit ServiceProcess(std::string data_dir, std::vector<std::string> extra_flags = {});
  ~ServiceProcess();

  // Starts the binary and waits until it listens. The port stays the same across
  // restarts once chosen.
  absl::Status Start();
  // Sends `signal` and waits for exit; returns the exit status as from waitpid.
  int Stop(int signal);
  bool running() const { return pid_ > 0; }

  std::string target() const;
  const std::string& admin_token() const { return admin_token_; }
  const std::string& data_dir() const { return data_dir_; }

  // A channel to the service, and an admin stub / user creation helper.
  std::shared_ptr<grpc::Channel> Channel() const;
  absl::Status CreateUser(const std::string& name, const std::string& password) const;
  // Metadata for admin calls acting as `user`.
  void ActAs(grpc::ClientContext* context, const std::string& user) const;

 private:
  std::string data_dir_;
  std::vector<std::string> extra_flags_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string admin_token_;
};

// Path of a runfile of this workspace (e.g. "mailbox-service/server/mailbox-service").
std::string Runfile(const std::string& path);
// A fresh directory under $TEST_TMPDIR.
std::string TempDir(const std::string& name);

}  // namespace mailbox::testing
