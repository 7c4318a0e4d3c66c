// Command-line parsing of mailbox-admin: global options, the command and its
// arguments. Pure: the environment is passed in, nothing is read or printed here.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace mailbox::admin {

// Looks up an environment variable; nullopt (or an empty value) means unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

// The process environment.
EnvLookup ProcessEnv();

struct GlobalOptions {
  std::string server;      // --server, $MAILBOX_SERVER, 127.0.0.1:50051
  std::string token;       // --token, $MAILBOX_ADMIN_TOKEN; empty: read token_file
  std::string token_file;  // --token-file, $MAILBOX_ADMIN_TOKEN_FILE,
                           // $MAILBOX_DATA_DIR/admin.token, ./.data/admin.token
  int timeout_seconds = 30;  // --timeout (a duration, whole seconds): deadline of each call
  // The link: TLS when ca_file is set (the admin token must not cross a network in
  // clear); cert_file/key_file for a service that requires client certificates.
  std::string ca_file;          // --ca-file, $MAILBOX_CA_FILE
  std::string cert_file;        // --cert-file, $MAILBOX_CERT_FILE
  std::string key_file;         // --key-file, $MAILBOX_KEY_FILE
  std::string tls_server_name;  // --tls-server-name, $MAILBOX_TLS_SERVER_NAME
};

enum class PasswordSource {
  kPrompt,    // neither option: ask on the terminal
  kStdin,     // --password-stdin: first line of standard input
  kArgument,  // --password P
};

enum class CommandKind {
  kHelp,
  kPrintConfig,  // --print-config: Invocation::config_text
  kUserAdd,
  kUserRemove,
  kUserPasswd,
  kUserList,
  kMailboxList,
  kMailboxCreate,
  kImportMbox,
  kImportMaildir,
  kImportDovecot,
  kRevise,
  kStoreCopy,
  kStoreMigrate,
  kQuotaSet,
  kQuotaGet,
};

struct Command {
  CommandKind kind = CommandKind::kHelp;
  std::string user;     // the user a command names or acts for
  std::string mailbox;  // mailbox name
  std::string path;     // FILE or DIR; "-" is standard input for files
  uint32_t uid = 0;

  PasswordSource password_source = PasswordSource::kPrompt;
  std::string password;

  // import mbox
  bool mboxo = false;  // --format=mboxo (default mboxrd)
  // import: messages and octets per Append call.
  uint32_t batch_messages = 100;
  uint64_t batch_bytes = 32ull << 20;

  // import dovecot: create the user first (with the password options), and the
  // floor of every imported mailbox's HIGHESTMODSEQ.
  bool create_user = false;
  uint64_t modseq_floor = uint64_t{1} << 32;

  // store copy: `path` is the SQLite file, `target` the PostgreSQL connection string.
  // store migrate: `target` is the PostgreSQL connection string.
  std::string target;

  // quota set: the new limits; an absent one is no limit.
  std::optional<uint64_t> storage_kib;
  std::optional<uint64_t> messages;

  // revise
  bool replace_flags = false;
  std::vector<std::string> flags;
};

struct Invocation {
  GlobalOptions global;
  Command command;
  std::string config_text;  // for kPrintConfig
};

// The global options as settings (common/config.h): flags, MAILBOX_* variables and
// the config file named by --config or $MAILBOX_ADMIN_CONFIG.
std::vector<config::Setting> GlobalSettings();

// Parses the arguments after the program name. Errors are usage errors
// (InvalidArgument) whose message says what is wrong; the caller prints it and the
// usage hint and exits with status 2.
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            const EnvLookup& env);

// The full help text.
std::string UsageText();

}  // namespace mailbox::admin
