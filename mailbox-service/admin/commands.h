// The commands of mailbox-admin, run against a gRPC channel to the mailbox service.
//
// Output on `out` is meant to be parsed by scripts and tests: one fixed-format line
// per result, or a tab-separated table with a header line (see UsageText()). Warnings
// and errors go to `err`; errors as "error: MESSAGE (CODE)" where CODE is the
// service's ErrorCode name (or the gRPC status name when the service gave none).
#pragma once

#include <iosfwd>
#include <memory>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "mailbox-service/admin/cli_args.h"

namespace mailbox::admin {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

struct Io {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  bool in_is_terminal = false;  // allows the password prompt
};

// Runs `invocation` (not kHelp) and returns the process exit status. `channel`
// reaches the service; it is not contacted before the command needs it.
int RunCommand(const Invocation& invocation, const std::shared_ptr<grpc::ChannelInterface>& channel,
               Io io);

// "error: MESSAGE (CODE)" for a service error, "error: MESSAGE" for a local one.
std::string FormatError(const absl::Status& status);

// What to check when the service cannot be reached, given the link's options.
std::string UnavailableHint(const GlobalOptions& global);

}  // namespace mailbox::admin
