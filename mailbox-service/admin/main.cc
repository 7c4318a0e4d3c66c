// mailbox-admin: the administration tool of the mailbox service (users, mailboxes,
// imports from mbox and Maildir, revisions). See UsageText() in cli_args.cc.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "mailbox-service/admin/cli_args.h"
#include "mailbox-service/admin/commands.h"

int main(int argc, char** argv) {
  using namespace mailbox::admin;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto invocation = ParseCommandLine(args, ProcessEnv());
  if (!invocation.ok()) {
    std::cerr << "mailbox-admin: " << invocation.status().message()
              << "\nRun \"mailbox-admin help\" for usage.\n";
    return kExitUsage;
  }
  // The service is reached in plaintext: it is meant to listen on a private network
  // or on loopback, as the gateways reach it.
  auto channel =
      grpc::CreateChannel(invocation->global.server, grpc::InsecureChannelCredentials());
  Io io{std::cin, std::cout, std::cerr, ::isatty(STDIN_FILENO) == 1};
  return RunCommand(*invocation, channel, io);
}
