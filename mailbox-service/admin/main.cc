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
#include "mailbox-service/store/store_copy.h"
#include "storage-client/channel_credentials.h"

int main(int argc, char** argv) {
  using namespace mailbox::admin;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto invocation = ParseCommandLine(args, ProcessEnv());
  if (!invocation.ok()) {
    std::cerr << "mailbox-admin: " << invocation.status().message()
              << "\nRun \"mailbox-admin help\" for usage.\n";
    return kExitUsage;
  }
  if (invocation->command.kind == CommandKind::kStoreCopy) {
    absl::Status copied = mailbox::store::CopySqliteToPostgres(
        invocation->command.path, invocation->command.target,
        [](std::string_view table, int64_t rows) {
          std::cout << "copied " << rows << " rows of " << table << std::endl;
        });
    if (!copied.ok()) {
      std::cerr << "mailbox-admin: store copy: " << copied.message() << "\n";
      return kExitError;
    }
    return 0;
  }
  if (invocation->command.kind == CommandKind::kStoreMigrate) {
    auto migrated = mailbox::store::MigratePostgres(invocation->command.target);
    if (!migrated.ok()) {
      std::cerr << "mailbox-admin: store migrate: " << migrated.status().message() << "\n";
      return kExitError;
    }
    std::cout << "schema version " << migrated->first << " -> " << migrated->second << std::endl;
    return 0;
  }
  // Plaintext unless a CA file is given: the service listens in plaintext only on
  // loopback (or where its operator said --insecure-listen).
  const GlobalOptions& global = invocation->global;
  mailbox::client::ChannelTlsOptions link;
  link.ca_file = global.ca_file;
  link.cert_file = global.cert_file;
  link.key_file = global.key_file;
  link.server_name = global.tls_server_name;
  auto credentials = mailbox::client::MakeChannelCredentials(link);
  if (!credentials.ok()) {
    std::cerr << "mailbox-admin: " << credentials.status().message() << "\n";
    return kExitError;
  }
  grpc::ChannelArguments channel_args;
  mailbox::client::ApplyChannelTlsArgs(link, &channel_args);
  auto channel = grpc::CreateCustomChannel(global.server, *credentials, channel_args);
  Io io{std::cin, std::cout, std::cerr, ::isatty(STDIN_FILENO) == 1};
  return RunCommand(*invocation, channel, io);
}
