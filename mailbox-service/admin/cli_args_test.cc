#include "mailbox-service/admin/cli_args.h"

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailbox::admin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values](const char* name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

absl::StatusOr<Invocation> Parse(std::vector<std::string> args,
                                 std::map<std::string, std::string> env = {}) {
  return ParseCommandLine(args, FakeEnv(std::move(env)));
}

std::string ErrorOf(std::vector<std::string> args) {
  auto parsed = Parse(std::move(args));
  EXPECT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(CliArgsTest, Defaults) {
  auto parsed = Parse({"user", "list"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.server, "127.0.0.1:50051");
  EXPECT_EQ(parsed->global.token, "");
  EXPECT_EQ(parsed->global.token_file, "./.data/admin.token");
  EXPECT_EQ(parsed->global.timeout_seconds, 30);
  EXPECT_EQ(parsed->command.kind, CommandKind::kUserList);
}

TEST(CliArgsTest, EnvironmentDefaults) {
  auto parsed = Parse({"user", "list"}, {{"MAILBOX_SERVER", "db:1"},
                                         {"MAILBOX_DATA_DIR", "/var/lib/mailbox"},
                                         {"MAILBOX_ADMIN_TOKEN", ""}});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->global.server, "db:1");
  EXPECT_EQ(parsed->global.token, "");  // empty means unset
  EXPECT_EQ(parsed->global.token_file, "/var/lib/mailbox/admin.token");

  parsed = Parse({"user", "list"},
                 {{"MAILBOX_ADMIN_TOKEN_FILE", "/t"}, {"MAILBOX_DATA_DIR", "/x"},
                  {"MAILBOX_ADMIN_TOKEN", "secret"}});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->global.token_file, "/t");
  EXPECT_EQ(parsed->global.token, "secret");
}

TEST(CliArgsTest, FlagsBeatEnvironment) {
  auto parsed = Parse({"--server=a:1", "user", "list", "--token-file", "/f"},
                      {{"MAILBOX_SERVER", "b:2"}, {"MAILBOX_ADMIN_TOKEN", "env"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.server, "a:1");
  EXPECT_EQ(parsed->global.token_file, "/f");
  EXPECT_EQ(parsed->global.token, "");  // --token-file beats $MAILBOX_ADMIN_TOKEN

  parsed = Parse({"--token", "t1", "--timeout=5s", "user", "list"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->global.token, "t1");
  EXPECT_EQ(parsed->global.timeout_seconds, 5);
}

TEST(CliArgsTest, LinkOptions) {
  auto parsed = Parse({"user", "list"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->global.ca_file, "");  // plaintext by default
  EXPECT_EQ(parsed->global.cert_file, "");

  parsed = Parse({"user", "list"}, {{"MAILBOX_CA_FILE", "/etc/ca.pem"},
                                    {"MAILBOX_CERT_FILE", "/etc/admin.pem"},
                                    {"MAILBOX_KEY_FILE", "/etc/admin.key"},
                                    {"MAILBOX_TLS_SERVER_NAME", "mailbox.internal"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.ca_file, "/etc/ca.pem");
  EXPECT_EQ(parsed->global.cert_file, "/etc/admin.pem");
  EXPECT_EQ(parsed->global.key_file, "/etc/admin.key");
  EXPECT_EQ(parsed->global.tls_server_name, "mailbox.internal");

  parsed = Parse({"--ca-file=/a/ca.pem", "user", "list", "--cert-file", "/a/c.pem",
                  "--key-file=/a/k.pem", "--tls-server-name=svc"},
                 {{"MAILBOX_CA_FILE", "/etc/ca.pem"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.ca_file, "/a/ca.pem");
  EXPECT_EQ(parsed->global.cert_file, "/a/c.pem");
  EXPECT_EQ(parsed->global.key_file, "/a/k.pem");
  EXPECT_EQ(parsed->global.tls_server_name, "svc");
  EXPECT_EQ(parsed->command.kind, CommandKind::kUserList);

  EXPECT_THAT(ErrorOf({"--cert-file=/c.pem", "--ca-file=/ca.pem", "user", "list"}),
              HasSubstr("--cert-file and --key-file go together"));
  EXPECT_THAT(ErrorOf({"--cert-file=/c.pem", "--key-file=/k.pem", "user", "list"}),
              HasSubstr("need --ca-file"));
  EXPECT_THAT(ErrorOf({"--ca-file=", "user", "list"}), HasSubstr("--ca-file needs a value"));
  EXPECT_THAT(ErrorOf({"user", "list", "--ca-file"}), HasSubstr("--ca-file needs a value"));
}

TEST(CliArgsTest, UserCommands) {
  auto parsed = Parse({"user", "add", "alice", "--password", "pw"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kUserAdd);
  EXPECT_EQ(parsed->command.user, "alice");
  EXPECT_EQ(parsed->command.password_source, PasswordSource::kArgument);
  EXPECT_EQ(parsed->command.password, "pw");

  parsed = Parse({"user", "passwd", "--password-stdin", "bob"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command.kind, CommandKind::kUserPasswd);
  EXPECT_EQ(parsed->command.password_source, PasswordSource::kStdin);

  parsed = Parse({"user", "add", "carol"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command.password_source, PasswordSource::kPrompt);

  parsed = Parse({"user", "remove", "--", "--odd-name"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kUserRemove);
  EXPECT_EQ(parsed->command.user, "--odd-name");
}

TEST(CliArgsTest, ImportAndMailboxCommands) {
  auto parsed = Parse({"import", "mbox", "alice", "Archive/2020", "-", "--format=mboxo",
                       "--batch", "7", "--batch-bytes=1000"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kImportMbox);
  EXPECT_EQ(parsed->command.mailbox, "Archive/2020");
  EXPECT_EQ(parsed->command.path, "-");
  EXPECT_TRUE(parsed->command.mboxo);
  EXPECT_EQ(parsed->command.batch_messages, 7u);
  EXPECT_EQ(parsed->command.batch_bytes, 1000u);

  parsed = Parse({"import", "maildir", "alice", "INBOX", "/m"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command.kind, CommandKind::kImportMaildir);
  EXPECT_EQ(parsed->command.batch_messages, 100u);

  parsed = Parse({"import", "dovecot", "alice", "/home/alice/Maildir"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kImportDovecot);
  EXPECT_EQ(parsed->command.user, "alice");
  EXPECT_EQ(parsed->command.path, "/home/alice/Maildir");
  EXPECT_FALSE(parsed->command.create_user);
  EXPECT_EQ(parsed->command.modseq_floor, uint64_t{1} << 32);
  parsed = Parse({"import", "dovecot", "alice", "/m", "--password-stdin", "--modseq-floor=0",
                  "--batch=5"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->command.create_user);
  EXPECT_EQ(parsed->command.password_source, PasswordSource::kStdin);
  EXPECT_EQ(parsed->command.modseq_floor, 0u);
  EXPECT_EQ(parsed->command.batch_messages, 5u);
  // At the limit (2^62) and past it.
  EXPECT_TRUE(Parse({"import", "dovecot", "a", "/m", "--modseq-floor=4611686018427387904"}).ok());
  EXPECT_FALSE(Parse({"import", "dovecot", "a", "/m", "--modseq-floor=4611686018427387905"}).ok());
  EXPECT_FALSE(Parse({"import", "dovecot", "a", "/m", "--modseq-floor=x"}).ok());
  EXPECT_FALSE(Parse({"import", "dovecot", "a", "/m", "--password=p", "--password-stdin"}).ok());
  EXPECT_FALSE(Parse({"import", "dovecot", "a", "INBOX", "/m"}).ok());

  parsed = Parse({"mailbox", "create", "alice", "Sent Items"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->command.kind, CommandKind::kMailboxCreate);
  EXPECT_EQ(parsed->command.mailbox, "Sent Items");
}

TEST(CliArgsTest, Revise) {
  auto parsed = Parse({"revise", "alice", "INBOX", "42", "new.eml", "--replace-flags", "\\Seen",
                       "--server=not-a-global-here", "$Label"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kRevise);
  EXPECT_EQ(parsed->command.uid, 42u);
  EXPECT_EQ(parsed->command.path, "new.eml");
  EXPECT_TRUE(parsed->command.replace_flags);
  EXPECT_THAT(parsed->command.flags,
              ElementsAre("\\Seen", "--server=not-a-global-here", "$Label"));
  EXPECT_EQ(parsed->global.server, "127.0.0.1:50051");

  parsed = Parse({"revise", "alice", "INBOX", "42", "new.eml", "--replace-flags"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->command.replace_flags);
  EXPECT_TRUE(parsed->command.flags.empty());

  parsed = Parse({"revise", "alice", "INBOX", "42", "new.eml"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->command.replace_flags);
}

TEST(CliArgsTest, Help) {
  EXPECT_EQ(Parse({"help"})->command.kind, CommandKind::kHelp);
  EXPECT_EQ(Parse({"--help"})->command.kind, CommandKind::kHelp);
  EXPECT_EQ(Parse({"user", "add", "-h"})->command.kind, CommandKind::kHelp);
  EXPECT_THAT(UsageText(), HasSubstr("import mbox USER MAILBOX FILE"));
}

TEST(CliArgsTest, UsageErrors) {
  EXPECT_THAT(ErrorOf({}), HasSubstr("no command"));
  EXPECT_THAT(ErrorOf({"frobnicate"}), HasSubstr("unknown command \"frobnicate\""));
  EXPECT_THAT(ErrorOf({"user"}), HasSubstr("needs a subcommand: add, remove, passwd, list"));
  EXPECT_THAT(ErrorOf({"user", "delete", "x"}), HasSubstr("unknown subcommand \"user delete\""));
  EXPECT_THAT(ErrorOf({"user", "add"}), HasSubstr("\"user add\" takes 1 argument(s): NAME"));
  EXPECT_THAT(ErrorOf({"user", "list", "extra"}), HasSubstr("takes 0 argument(s): none"));
  EXPECT_THAT(ErrorOf({"user", "add", "a", "--password"}), HasSubstr("--password needs a value"));
  EXPECT_THAT(ErrorOf({"user", "add", "a", "--password="}), HasSubstr("non-empty"));
  EXPECT_THAT(ErrorOf({"user", "add", "a", "--password=x", "--password-stdin"}),
              HasSubstr("not both"));
  EXPECT_THAT(ErrorOf({"user", "list", "--password=x"}),
              HasSubstr("option --password does not apply to \"user list\""));
  EXPECT_THAT(ErrorOf({"user", "list", "--bogus"}), HasSubstr("unknown option --bogus"));
  EXPECT_THAT(ErrorOf({"revise", "a", "INBOX", "0", "f"}), HasSubstr("UID must be a number"));
  EXPECT_THAT(ErrorOf({"revise", "a", "INBOX", "4294967296", "f"}), HasSubstr("UID"));
  EXPECT_THAT(ErrorOf({"revise", "a", "INBOX", "x1", "f"}), HasSubstr("UID"));
  EXPECT_THAT(ErrorOf({"import", "mbox", "a", "b", "c", "--format=mmdf"}),
              HasSubstr("--format must be mboxrd or mboxo"));
  EXPECT_THAT(ErrorOf({"import", "mbox", "a", "b", "c", "--batch=0"}), HasSubstr("--batch"));
  EXPECT_THAT(ErrorOf({"--token=a", "--token-file=b", "user", "list"}), HasSubstr("not both"));
  EXPECT_THAT(ErrorOf({"--timeout=-1", "user", "list"}), HasSubstr("--timeout"));
  // A bare number has no unit: it is refused with what to write.
  EXPECT_THAT(ErrorOf({"--timeout=30", "user", "list"}), HasSubstr("write 30s"));
  EXPECT_THAT(ErrorOf({"--timout=30s", "user", "list"}), HasSubstr("unknown option --timout"));
  EXPECT_THAT(ErrorOf({"--server"}), HasSubstr("--server needs a value"));
  EXPECT_THAT(ErrorOf({"mailbox", "create", "alice", ""}), HasSubstr("NAME"));
}

TEST(CliArgsTest, StoreCommandsTakeTheirDatabases) {
  auto copy = Parse({"store", "copy", "/data/mailbox.db", "dbname=mail"});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->command.kind, CommandKind::kStoreCopy);
  EXPECT_EQ(copy->command.path, "/data/mailbox.db");
  EXPECT_EQ(copy->command.target, "dbname=mail");
  auto migrate = Parse({"store", "migrate", "postgresql://db1,db2/mail"});
  ASSERT_TRUE(migrate.ok()) << migrate.status();
  EXPECT_EQ(migrate->command.kind, CommandKind::kStoreMigrate);
  EXPECT_EQ(migrate->command.target, "postgresql://db1,db2/mail");
  EXPECT_THAT(ErrorOf({"store", "migrate"}), HasSubstr("POSTGRES"));
}

TEST(CliArgsTest, QuotaCommandsTakeSizesAndCounts) {
  auto set = Parse({"quota", "set", "alice", "--storage=500M", "--messages", "10000"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->command.kind, CommandKind::kQuotaSet);
  EXPECT_EQ(set->command.user, "alice");
  EXPECT_EQ(set->command.storage_kib, uint64_t{500} * 1024);
  EXPECT_EQ(set->command.messages, uint64_t{10000});
  auto kib = Parse({"quota", "set", "alice", "--storage=2048"});
  ASSERT_TRUE(kib.ok()) << kib.status();
  EXPECT_EQ(kib->command.storage_kib, uint64_t{2048});
  EXPECT_FALSE(kib->command.messages.has_value());
  auto giga = Parse({"quota", "set", "alice", "--storage=2G"});
  ASSERT_TRUE(giga.ok()) << giga.status();
  EXPECT_EQ(giga->command.storage_kib, uint64_t{2} << 20);
  auto none = Parse({"quota", "set", "alice"});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->command.storage_kib.has_value());
  EXPECT_FALSE(none->command.messages.has_value());
  auto get = Parse({"quota", "get", "alice"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->command.kind, CommandKind::kQuotaGet);
  EXPECT_THAT(ErrorOf({"quota", "set", "alice", "--storage=lots"}), HasSubstr("500M"));
  EXPECT_THAT(ErrorOf({"quota", "set", "alice", "--storage=M"}), HasSubstr("--storage"));
  EXPECT_THAT(ErrorOf({"quota", "set", "alice", "--storage=-5"}), HasSubstr("--storage"));
  EXPECT_THAT(ErrorOf({"quota", "set", "alice", "--storage=99999999T"}), HasSubstr("1 EiB"));
  EXPECT_THAT(ErrorOf({"quota", "set", "alice", "--messages=many"}), HasSubstr("--messages"));
  EXPECT_THAT(ErrorOf({"quota", "get", "alice", "--storage=1"}), HasSubstr("does not apply"));
  EXPECT_THAT(ErrorOf({"quota"}), HasSubstr("set, get"));
}

TEST(CliArgsTest, ConfigFileAndPrintConfig) {
  const std::string path = ::testing::TempDir() + "/admin.conf";
  {
    std::ofstream file(path);
    file << "# the service on the next host\nserver = \"db:7\"\ntimeout = 2m\n";
  }
  auto parsed = Parse({"user", "list"}, {{"MAILBOX_ADMIN_CONFIG", path}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.server, "db:7");
  EXPECT_EQ(parsed->global.timeout_seconds, 120);
  // Flag beats environment beats file.
  parsed = Parse({"--config", path, "--timeout=3s", "user", "list"},
                 {{"MAILBOX_SERVER", "env:1"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->global.server, "env:1");
  EXPECT_EQ(parsed->global.timeout_seconds, 3);

  parsed = Parse({"--config=" + path, "--print-config"}, {{"MAILBOX_SERVER", "env:1"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->command.kind, CommandKind::kPrintConfig);
  EXPECT_THAT(parsed->config_text, HasSubstr("server = \"env:1\"  # env MAILBOX_SERVER\n"));
  EXPECT_THAT(parsed->config_text, HasSubstr("timeout = 2m  # file\n"));

  {
    std::ofstream file(path);
    file << "server = db:7\nlisten = 0.0.0.0:1\n";
  }
  EXPECT_THAT(ErrorOf({"--config", path, "user", "list"}),
              HasSubstr(path + ":2: unknown setting \"listen\""));
}

}  // namespace
}  // namespace mailbox::admin
