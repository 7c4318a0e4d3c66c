#include "mailbox-service/admin/cli_args.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace mailbox::admin {
namespace {

constexpr char kDefaultServer[] = "127.0.0.1:50051";
constexpr char kDefaultDataDir[] = "./.data";
// Not MAILBOX_CONFIG: that names the service's config file, in the same environment.
constexpr char kConfigEnv[] = "MAILBOX_ADMIN_CONFIG";

absl::Status Usage(std::string_view message) {
  return absl::InvalidArgumentError(absl::string_view(message.data(), message.size()));
}

std::optional<std::string> Lookup(const EnvLookup& env, const char* name) {
  std::optional<std::string> value = env(name);
  if (value.has_value() && value->empty()) {
    return std::nullopt;
  }
  return value;
}

// One argument left after the global options: `literal` ones (after "--" or after
// --replace-flags) are never options.
struct Arg {
  std::string text;
  bool literal = false;
};

bool IsOption(const Arg& arg) {
  return !arg.literal && arg.text.size() > 2 && arg.text.compare(0, 2, "--") == 0;
}

// "--name=value" or "--name" followed by a value argument.
struct OptionMatch {
  bool matched = false;
  std::optional<std::string> inline_value;
};

OptionMatch MatchOption(const std::string& arg, std::string_view name) {
  if (arg.compare(0, name.size(), name.data(), name.size()) != 0) {
    return {};
  }
  if (arg.size() == name.size()) {
    return {true, std::nullopt};
  }
  if (arg[name.size()] == '=') {
    return {true, arg.substr(name.size() + 1)};
  }
  return {};
}

template <typename Args>
absl::StatusOr<std::string> OptionValue(const OptionMatch& match, std::string_view name,
                                        const Args& args, size_t* i) {
  if (match.inline_value.has_value()) {
    return *match.inline_value;
  }
  if (*i + 1 >= args.size()) {
    return Usage(absl::StrCat(absl::string_view(name.data(), name.size()), " needs a value"));
  }
  ++*i;
  if constexpr (std::is_same_v<typename Args::value_type, Arg>) {
    return args[*i].text;
  } else {
    return args[*i];
  }
}

absl::StatusOr<uint64_t> ParsePositive(std::string_view what, const std::string& text,
                                       uint64_t max) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value == 0 || value > max || text[0] == '+') {
    return Usage(absl::StrCat(absl::string_view(what.data(), what.size()),
                              " must be a number from 1 to ", max, ", not \"", text, "\""));
  }
  return value;
}

// A STORAGE limit in KiB (the unit IMAP reports, RFC 9208 §5.1): a number of KiB,
// or a number with K, M, G or T (binary multiples; "500M" is 512000 KiB).
absl::StatusOr<uint64_t> ParseStorageKib(const std::string& text) {
  constexpr uint64_t kMax = uint64_t{1} << 50;  // 1 EiB: far past any mailbox
  uint64_t multiplier = 1;
  std::string digits = text;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K': case 'k': multiplier = 1; break;
      case 'M': case 'm': multiplier = uint64_t{1} << 10; break;
      case 'G': case 'g': multiplier = uint64_t{1} << 20; break;
      case 'T': case 't': multiplier = uint64_t{1} << 30; break;
      default: multiplier = 0; break;
    }
    if (multiplier != 0) {
      digits.pop_back();
    } else {
      multiplier = 1;
    }
  }
  uint64_t value = 0;
  if (digits.empty() || digits[0] == '+' || !absl::SimpleAtoi(digits, &value) ||
      value > kMax / multiplier) {
    return Usage(absl::StrCat("--storage must be a size in KiB, or with a K, M, G or T suffix "
                              "(e.g. 512000 or 500M), at most 1 EiB, not \"", text, "\""));
  }
  return value * multiplier;
}

std::string CommandName(const std::vector<std::string>& words, size_t count) {
  std::string name;
  for (size_t i = 0; i < count && i < words.size(); ++i) {
    absl::StrAppend(&name, i == 0 ? "" : " ", words[i]);
  }
  return name;
}

struct CommandSpec {
  const char* group;
  const char* verb;  // nullptr for one-word commands
  CommandKind kind;
  std::vector<const char*> positionals;
  std::set<std::string> options;
};

const std::vector<CommandSpec>& Specs() {
  static const auto* specs = new std::vector<CommandSpec>{
      {"help", nullptr, CommandKind::kHelp, {}, {}},
      {"user", "add", CommandKind::kUserAdd, {"NAME"}, {"--password", "--password-stdin"}},
      {"user", "remove", CommandKind::kUserRemove, {"NAME"}, {}},
      {"user", "passwd", CommandKind::kUserPasswd, {"NAME"}, {"--password", "--password-stdin"}},
      {"user", "list", CommandKind::kUserList, {}, {}},
      {"mailbox", "list", CommandKind::kMailboxList, {"USER"}, {}},
      {"mailbox", "create", CommandKind::kMailboxCreate, {"USER", "NAME"}, {}},
      {"import",
       "mbox",
       CommandKind::kImportMbox,
       {"USER", "MAILBOX", "FILE"},
       {"--format", "--batch", "--batch-bytes"}},
      {"import",
       "maildir",
       CommandKind::kImportMaildir,
       {"USER", "MAILBOX", "DIR"},
       {"--batch", "--batch-bytes"}},
      {"import",
       "dovecot",
       CommandKind::kImportDovecot,
       {"USER", "MAILDIR"},
       {"--password", "--password-stdin", "--batch", "--batch-bytes", "--modseq-floor"}},
      {"revise",
       nullptr,
       CommandKind::kRevise,
       {"USER", "MAILBOX", "UID", "FILE"},
       {"--replace-flags"}},
      {"store", "copy", CommandKind::kStoreCopy, {"SQLITE_FILE", "POSTGRES"}, {}},
      {"store", "migrate", CommandKind::kStoreMigrate, {"POSTGRES"}, {}},
      {"quota", "set", CommandKind::kQuotaSet, {"USER"}, {"--storage", "--messages"}},
      {"quota", "get", CommandKind::kQuotaGet, {"USER"}, {}},
  };
  return *specs;
}

}  // namespace

std::vector<config::Setting> GlobalSettings() {
  return {
      {"server", "MAILBOX_SERVER", kDefaultServer, "service address (host:port)"},
      {"token", "MAILBOX_ADMIN_TOKEN", "", "admin token (beats --token-file)", config::Secret()},
      {"token-file", "MAILBOX_ADMIN_TOKEN_FILE", "",
       "file holding the admin token (empty: $MAILBOX_DATA_DIR/admin.token, "
       "$MAILBOX_DATA_DIR being ./.data if unset)"},
      {"timeout", "MAILBOX_ADMIN_TIMEOUT", "30s",
       "deadline of each call (streamed imports get at least 10m per batch)",
       config::Duration(absl::Seconds(1), absl::Hours(24))},
      {"ca-file", "MAILBOX_CA_FILE", "",
       "connect over TLS, trusting this CA for the service's certificate (empty: "
       "plaintext, for a service on loopback)"},
      {"cert-file", "MAILBOX_CERT_FILE", "",
       "client certificate to present (with --key-file), for a service that requires one"},
      {"key-file", "MAILBOX_KEY_FILE", "", "key of --cert-file"},
      {"tls-server-name", "MAILBOX_TLS_SERVER_NAME", "",
       "name the service's certificate must carry, if not the host in --server"},
  };
}

EnvLookup ProcessEnv() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            const EnvLookup& env) {
  Invocation result;
  GlobalOptions& global = result.global;
  // The global options, as (name, value) for the settings layer.
  std::vector<std::pair<std::string, std::string>> flags;
  const std::vector<config::Setting> settings = GlobalSettings();
  bool help = false;
  bool print_config = false;

  // Pass 1: global options may appear anywhere before "--" or --replace-flags.
  std::vector<Arg> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      for (++i; i < args.size(); ++i) {
        rest.push_back({args[i], true});
      }
      break;
    }
    if (arg == "--replace-flags") {
      rest.push_back({arg, false});
      for (++i; i < args.size(); ++i) {
        rest.push_back({args[i], true});
      }
      break;
    }
    if (arg == "-h" || arg == "--help") {
      help = true;
      continue;
    }
    if (arg == "--print-config") {
      print_config = true;
      continue;
    }
    if (arg.compare(0, 2, "--") != 0) {
      rest.push_back({arg, false});
      continue;
    }
    const std::string name = arg.substr(2, arg.find('=') == std::string::npos
                                               ? std::string::npos
                                               : arg.find('=') - 2);
    bool global_option = name == "config";
    for (const config::Setting& setting : settings) {
      global_option = global_option || setting.name == name;
    }
    if (!global_option) {
      rest.push_back({arg, false});
      continue;
    }
    const std::string flag = "--" + name;
    auto value = OptionValue(MatchOption(arg, flag), flag, args, &i);
    if (!value.ok()) {
      return value.status();
    }
    if (value->empty() && name != "token-file") {
      return Usage(name == "server" ? "--server needs an address (host:port)"
                                    : absl::StrCat(flag, " needs a value"));
    }
    if (value->empty()) {
      return Usage("--token-file needs a path");
    }
    flags.emplace_back(name, *std::move(value));
  }

  // The environment of the settings; an empty variable is an unset one.
  config::Environment environment;
  for (const config::Setting& setting : settings) {
    if (auto value = Lookup(env, setting.env.c_str()); value.has_value()) {
      environment[setting.env] = *value;
    }
  }
  if (auto value = Lookup(env, kConfigEnv); value.has_value()) {
    environment[kConfigEnv] = *value;
  }
  config::Program program;
  program.name = "mailbox-admin";
  program.env_prefix = "MAILBOX_";
  program.config_env = kConfigEnv;
  // The admin tool runs in the service's environment (its container): the service's
  // MAILBOX_* variables are not its business.
  program.refuse_unknown_env = false;
  auto settings_config = config::Config::Resolve(program, settings, flags, environment);
  if (!settings_config.ok()) {
    return Usage(std::string(settings_config.status().message()));
  }
  const config::Config& cfg = *settings_config;
  auto given = [&flags](std::string_view name) {
    return std::any_of(flags.begin(), flags.end(),
                       [name](const auto& flag) { return flag.first == name; });
  };
  global.server = cfg.Get("server");
  if (global.server.empty()) {
    return Usage("--server needs an address (host:port)");
  }
  global.ca_file = cfg.Get("ca-file");
  global.cert_file = cfg.Get("cert-file");
  global.key_file = cfg.Get("key-file");
  global.tls_server_name = cfg.Get("tls-server-name");
  global.timeout_seconds =
      static_cast<int>(absl::ToInt64Seconds(cfg.GetDuration("timeout")));
  if (global.cert_file.empty() != global.key_file.empty()) {
    return Usage("--cert-file and --key-file go together");
  }
  if (global.ca_file.empty() && (!global.cert_file.empty() || !global.tls_server_name.empty())) {
    return Usage(
        "--cert-file and --tls-server-name need --ca-file (the CA of the service's certificate)");
  }
  if (given("token") && given("token-file")) {
    return Usage("give --token or --token-file, not both");
  }
  // The command line beats the environment; an explicit token beats a token file.
  global.token = given("token-file") ? "" : cfg.Get("token");
  global.token_file = cfg.Get("token-file");
  if (global.token_file.empty()) {
    global.token_file =
        absl::StrCat(Lookup(env, "MAILBOX_DATA_DIR").value_or(kDefaultDataDir), "/admin.token");
  }
  if (print_config) {
    result.command.kind = CommandKind::kPrintConfig;
    result.config_text = cfg.PrintConfig();
    return result;
  }

  // Pass 2: the command words, its positional arguments and its options.
  std::vector<std::string> words;
  std::map<std::string, std::optional<std::string>> options;
  Command& command = result.command;
  for (size_t i = 0; i < rest.size(); ++i) {
    const Arg& arg = rest[i];
    if (!IsOption(arg)) {
      words.push_back(arg.text);
      continue;
    }
    if (arg.text == "--replace-flags") {
      options["--replace-flags"] = std::nullopt;
      for (++i; i < rest.size(); ++i) {
        command.flags.push_back(rest[i].text);
      }
      break;
    }
    if (arg.text == "--password-stdin") {
      options[arg.text] = std::nullopt;
      continue;
    }
    bool known = false;
    for (const char* name :
         {"--password", "--format", "--batch-bytes", "--batch", "--storage", "--messages",
          "--modseq-floor"}) {
      OptionMatch match = MatchOption(arg.text, name);
      if (!match.matched) {
        continue;
      }
      auto value = OptionValue(match, name, rest, &i);
      if (!value.ok()) {
        return value.status();
      }
      options[name] = *value;
      known = true;
      break;
    }
    if (!known) {
      return Usage(absl::StrCat("unknown option ", arg.text));
    }
  }

  if (help) {
    command.kind = CommandKind::kHelp;
    return result;
  }
  if (words.empty()) {
    return Usage("no command given");
  }

  const CommandSpec* spec = nullptr;
  size_t verb_words = 1;
  bool group_known = false;
  for (const CommandSpec& candidate : Specs()) {
    if (words[0] != candidate.group) {
      continue;
    }
    group_known = true;
    if (candidate.verb == nullptr) {
      spec = &candidate;
      break;
    }
    if (words.size() >= 2 && words[1] == candidate.verb) {
      spec = &candidate;
      verb_words = 2;
      break;
    }
  }
  if (spec == nullptr) {
    if (!group_known) {
      return Usage(absl::StrCat("unknown command \"", words[0], "\""));
    }
    std::string verbs;
    for (const CommandSpec& candidate : Specs()) {
      if (words[0] == candidate.group && candidate.verb != nullptr) {
        absl::StrAppend(&verbs, verbs.empty() ? "" : ", ", candidate.verb);
      }
    }
    if (words.size() < 2) {
      return Usage(absl::StrCat("\"", words[0], "\" needs a subcommand: ", verbs));
    }
    return Usage(absl::StrCat("unknown subcommand \"", words[0], " ", words[1],
                              "\" (expected one of: ", verbs, ")"));
  }
  const std::string name = CommandName(words, verb_words);
  command.kind = spec->kind;
  if (spec->kind == CommandKind::kHelp) {
    return result;  // "help anything" is still help
  }

  std::vector<std::string> positionals(words.begin() + verb_words, words.end());
  if (positionals.size() != spec->positionals.size()) {
    std::string expected;
    for (const char* p : spec->positionals) {
      absl::StrAppend(&expected, " ", p);
    }
    return Usage(absl::StrCat("\"", name, "\" takes ", spec->positionals.size(),
                              " argument(s):", expected.empty() ? " none" : expected, "; got ",
                              positionals.size()));
  }
  for (const auto& [option, value] : options) {
    if (spec->options.count(option) == 0) {
      return Usage(absl::StrCat("option ", option, " does not apply to \"", name, "\""));
    }
  }
  for (size_t k = 0; k < positionals.size(); ++k) {
    if (positionals[k].empty()) {
      return Usage(absl::StrCat(spec->positionals[k], " of \"", name, "\" is empty"));
    }
  }

  switch (spec->kind) {
    case CommandKind::kHelp:
    case CommandKind::kPrintConfig:
    case CommandKind::kUserList:
      break;
    case CommandKind::kUserAdd:
    case CommandKind::kUserPasswd:
      command.user = positionals[0];
      if (options.count("--password") && options.count("--password-stdin")) {
        return Usage("give --password or --password-stdin, not both");
      }
      if (options.count("--password")) {
        command.password_source = PasswordSource::kArgument;
        command.password = *options["--password"];
        if (command.password.empty()) {
          return Usage("--password needs a non-empty value");
        }
      } else if (options.count("--password-stdin")) {
        command.password_source = PasswordSource::kStdin;
      }
      break;
    case CommandKind::kUserRemove:
    case CommandKind::kMailboxList:
    case CommandKind::kQuotaGet:
      command.user = positionals[0];
      break;
    case CommandKind::kQuotaSet:
      command.user = positionals[0];
      if (auto it = options.find("--storage"); it != options.end()) {
        auto value = ParseStorageKib(*it->second);
        if (!value.ok()) {
          return value.status();
        }
        command.storage_kib = *value;
      }
      if (auto it = options.find("--messages"); it != options.end()) {
        uint64_t value = 0;
        if (it->second->empty() || (*it->second)[0] == '+' ||
            !absl::SimpleAtoi(*it->second, &value) || value > (uint64_t{1} << 50)) {
          return Usage(absl::StrCat("--messages must be a number of messages, not \"",
                                    *it->second, "\""));
        }
        command.messages = value;
      }
      break;
    case CommandKind::kMailboxCreate:
      command.user = positionals[0];
      command.mailbox = positionals[1];
      break;
    case CommandKind::kImportMbox:
    case CommandKind::kImportMaildir:
    case CommandKind::kImportDovecot:
      command.user = positionals[0];
      if (spec->kind == CommandKind::kImportDovecot) {
        command.path = positionals[1];
        if (options.count("--password") && options.count("--password-stdin")) {
          return Usage("give --password or --password-stdin, not both");
        }
        if (options.count("--password")) {
          command.create_user = true;
          command.password_source = PasswordSource::kArgument;
          command.password = *options["--password"];
          if (command.password.empty()) {
            return Usage("--password needs a non-empty value");
          }
        } else if (options.count("--password-stdin")) {
          command.create_user = true;
          command.password_source = PasswordSource::kStdin;
        }
        if (auto it = options.find("--modseq-floor"); it != options.end()) {
          uint64_t value = 0;
          if (it->second->empty() || (*it->second)[0] == '+' ||
              !absl::SimpleAtoi(*it->second, &value) || value > (uint64_t{1} << 62)) {
            return Usage(absl::StrCat("--modseq-floor must be a number from 0 to 2^62, not \"",
                                      *it->second, "\""));
          }
          command.modseq_floor = value;
        }
      } else {
        command.mailbox = positionals[1];
        command.path = positionals[2];
      }
      if (auto it = options.find("--format"); it != options.end()) {
        if (*it->second == "mboxo") {
          command.mboxo = true;
        } else if (*it->second != "mboxrd") {
          return Usage(absl::StrCat("--format must be mboxrd or mboxo, not \"", *it->second,
                                    "\""));
        }
      }
      if (auto it = options.find("--batch"); it != options.end()) {
        auto value = ParsePositive("--batch", *it->second, 10000);
        if (!value.ok()) {
          return value.status();
        }
        command.batch_messages = static_cast<uint32_t>(*value);
      }
      if (auto it = options.find("--batch-bytes"); it != options.end()) {
        auto value = config::ParseSize(*it->second);
        if (!value.ok() || *value < 1 || *value > (int64_t{1} << 40)) {
          return Usage(absl::StrCat("--batch-bytes must be a size from 1 to 1TiB (octets, or "
                                    "with B, KiB, MiB, GiB, TiB such as 32MiB), not \"",
                                    *it->second, "\""));
        }
        command.batch_bytes = static_cast<uint64_t>(*value);
      }
      break;
    case CommandKind::kRevise: {
      command.user = positionals[0];
      command.mailbox = positionals[1];
      auto uid = ParsePositive("UID", positionals[2], UINT32_MAX);
      if (!uid.ok()) {
        return uid.status();
      }
      command.uid = static_cast<uint32_t>(*uid);
      command.path = positionals[3];
      command.replace_flags = options.count("--replace-flags") > 0;
      break;
    }
    case CommandKind::kStoreCopy:
      command.path = positionals[0];
      command.target = positionals[1];
      break;
    case CommandKind::kStoreMigrate:
      command.target = positionals[0];
      break;
  }
  return result;
}

std::string UsageText() {
  return R"USAGE(Usage: mailbox-admin [GLOBAL OPTIONS] COMMAND [ARGS]

Administers a mailbox service over its gRPC API with the service's admin token.

Commands:
  user add NAME [--password-stdin | --password P]
      Create a user. Without a password option, asks on the terminal.
      Prints: created user NAME (id N)
  user remove NAME
      Delete a user and all their mailboxes. Prints: removed user NAME
  user passwd NAME [--password-stdin | --password P]
      Set a user's password. Prints: changed password of user NAME
  user list
      Tab-separated table with a header line: ID USERNAME
  mailbox list USER
      Tab-separated table with a header line: NAME ATTRIBUTES MESSAGES UIDNEXT
      UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE ("-" where a value does not apply)
  mailbox create USER NAME
      Prints: created mailbox NAME (id N, uidvalidity V)
  import mbox USER MAILBOX FILE [--format=mboxrd|mboxo] [--batch=N] [--batch-bytes=SIZE]
      Append every message of an mbox file ("-": standard input). Flags come from
      Status:/X-Status: headers, the internal date from the "From " line. The
      mailbox is created if it does not exist.
      Prints: imported N messages into MAILBOX (uidvalidity V, uids SET)
  import maildir USER MAILBOX DIR [--batch=N] [--batch-bytes=SIZE]
      Append the messages of DIR/cur and DIR/new in delivery order. Flags come from
      the ":2," suffix, the internal date from the file's mtime.
      Prints the same line as import mbox.
  import dovecot USER MAILDIR [--password-stdin | --password P] [--modseq-floor=N]
                 [--batch=N] [--batch-bytes=N]
      Move a whole account from Dovecot's Maildir++ (MAILDIR is INBOX, ".Sent" and
      ".Work.Projects" its folders) keeping what clients cached: every folder's
      UIDVALIDITY, every message's UID (dovecot-uidlist), UIDNEXT, flags and
      keywords (dovecot-keywords), and the subscriptions. Messages missing from
      dovecot-uidlist get UIDs from its next UID on. Internal dates come from the
      files' mtimes. With a password option the user is created; otherwise it must
      exist. Refuses, before changing anything, when a folder's mailbox already
      holds or held messages (a second run). Every mailbox's HIGHESTMODSEQ starts
      above --modseq-floor (default 4294967296, above any Dovecot counter).
      Prints a line per folder:
        imported FOLDER: N messages (uidvalidity V, uidnext U)
      and a summary: imported F folders, N messages, S subscriptions for USER
  revise USER MAILBOX UID FILE [--replace-flags FLAG...]
      Replace a message's content with FILE ("-": standard input); the service gives
      it a new UID. --replace-flags (last on the line) sets these flags instead of
      keeping the old ones. Prints: revised UID OLD -> NEW (uidvalidity V)
  store copy SQLITE_FILE POSTGRES
      Copy a whole store from the SQLite file (the service's <data-dir>/mailbox.db,
      with the service stopped) into an empty PostgreSQL database (a libpq
      connection string or URI), keeping every id, UIDVALIDITY, UID and MODSEQ, so
      clients need no resync and session tokens stay valid. Works on the files
      directly: needs no service, token or --server. Prints a line per table:
      copied N rows of TABLE
  store migrate POSTGRES
      Bring the PostgreSQL database (a libpq connection string or URI) to this
      build's schema version, as a replica does when it starts; for upgrades that
      migrate before any new replica runs. Refuses a database of a newer version.
      Needs no service, token or --server. Prints: schema version OLD -> NEW
  quota set USER [--storage=SIZE] [--messages=N]
      Set the user's quota (RFC 9208): STORAGE in KiB, or with a K, M, G or T
      suffix (500M, 2G), and MESSAGE as a count. A limit not given is removed, so
      "quota set USER" alone removes the user's quota. Writes that would take the
      user past a limit fail with NO [OVERQUOTA]. Prints: set quota of user USER
  quota get USER
      Tab-separated table with a header line: RESOURCE USAGE LIMIT (STORAGE in
      KiB; "-" for no limit)
  help
      This text.

Global options (anywhere before "--" or --replace-flags); each is also an
environment variable or a line `name = value` of a config file (--config=FILE or
$MAILBOX_ADMIN_CONFIG); a flag beats the environment, which beats the file:
  --server=ADDR       service address; $MAILBOX_SERVER, default 127.0.0.1:50051
  --token=TOKEN       admin token; $MAILBOX_ADMIN_TOKEN
  --token-file=PATH   file holding the admin token; $MAILBOX_ADMIN_TOKEN_FILE,
                      default $MAILBOX_DATA_DIR/admin.token ($MAILBOX_DATA_DIR: ./.data)
  --timeout=DURATION  deadline of each call, such as 30s or 2m; $MAILBOX_ADMIN_TIMEOUT,
                      default 30s (streamed imports get at least 10m per batch)
  --ca-file=PATH      connect over TLS, trusting this CA for the service's
                      certificate; $MAILBOX_CA_FILE (none: plaintext, for a
                      service on loopback)
  --cert-file=PATH    client certificate to present (with --key-file), for a
  --key-file=PATH     service that requires one; $MAILBOX_CERT_FILE and
                      $MAILBOX_KEY_FILE
  --tls-server-name=NAME  name the service's certificate must carry, if not the
                      host in --server; $MAILBOX_TLS_SERVER_NAME
  --print-config      print these settings as a config file, each with its source
                      (default, file, env or flag), and exit

Import batches: at most --batch messages (default 100) and about --batch-bytes
(default 32MiB; octets, or a size such as 8MiB) per Append call; each batch is
committed on its own.

Exit status: 0 success, 1 the service or a file reported an error
("error: MESSAGE (CODE)"), 2 usage error.
)USAGE";
}

}  // namespace mailbox::admin
