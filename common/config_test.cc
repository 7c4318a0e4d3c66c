#include "common/config.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailbox::config {
namespace {

using ::testing::HasSubstr;

std::vector<Setting> Settings() {
  return {
      {"listen", "TEST_LISTEN", "127.0.0.1:50051", "address"},
      {"workers", "TEST_WORKERS", "2", "threads", Int(1, 64)},
      {"verbose", "TEST_VERBOSE", "false", "log more", Bool()},
      {"cache", "TEST_CACHE", "64MiB", "cache size", Size(0, int64_t{1} << 40)},
      {"drain-timeout", "TEST_DRAIN_TIMEOUT", "20s", "drain", Duration()},
      {"format", "TEST_FORMAT", "auto", "log format", OneOf({"auto", "json", "text"})},
      {"motto", "TEST_MOTTO", "", "free text"},
      {"token", "TEST_TOKEN", "", "a secret", Secret()},
      {"database", "TEST_DATABASE", "", "connection string", Redacted(RedactConnInfo)},
      {"drain-seconds", "TEST_DRAIN_SECONDS", "", "", RenamedTo("drain-timeout")},
  };
}

Program TestProgram() {
  Program program;
  program.name = "test-program";
  program.env_prefix = "TEST_";
  program.config_env = "TEST_CONFIG";
  program.foreign_env = {"TEST_OTHER_TOOL"};
  return program;
}

absl::StatusOr<Config> ParseArgs(std::vector<std::string> args, Environment env = {}) {
  return Config::Parse(TestProgram(), Settings(), args, env);
}

std::string ErrorOf(std::vector<std::string> args, Environment env = {}) {
  auto config = ParseArgs(std::move(args), std::move(env));
  EXPECT_FALSE(config.ok());
  return std::string(config.status().message());
}

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigTest, DefaultsAreTypedAndCanonical) {
  auto config = ParseArgs({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("listen"), "127.0.0.1:50051");
  EXPECT_EQ(*config->GetInt("workers"), 2);
  EXPECT_FALSE(config->GetBool("verbose"));
  EXPECT_EQ(config->GetSize("cache"), 64 << 20);
  EXPECT_EQ(config->GetDuration("drain-timeout"), absl::Seconds(20));
  EXPECT_EQ(config->source("workers"), Source::kDefault);
}

TEST(ConfigTest, FlagBeatsEnvironmentBeatsFileBeatsDefault) {
  const std::string file =
      WriteFile("precedence.conf", "workers = 3\nverbose = yes\nmotto = \"from the file\"\n");
  Environment env = {{"TEST_CONFIG", file}, {"TEST_WORKERS", "4"}, {"TEST_VERBOSE", "off"}};
  auto config = ParseArgs({"--workers=5"}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetInt("workers"), 5);
  EXPECT_EQ(config->source("workers"), Source::kFlag);
  EXPECT_FALSE(config->GetBool("verbose"));
  EXPECT_EQ(config->source("verbose"), Source::kEnv);
  EXPECT_EQ(config->Get("motto"), "from the file");
  EXPECT_EQ(config->source("motto"), Source::kFile);
  EXPECT_EQ(config->source("listen"), Source::kDefault);
  EXPECT_EQ(config->config_file(), file);

  // --config beats the variable.
  const std::string other = WriteFile("other.conf", "motto = other\n");
  config = ParseArgs({"--config", other}, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("motto"), "other");
  EXPECT_EQ(*config->GetInt("workers"), 4);
}

TEST(ConfigTest, FlagForms) {
  auto config = ParseArgs({"--listen", "[::1]:9", "--workers=8", "--verbose", "--format", "json"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("listen"), "[::1]:9");
  EXPECT_EQ(*config->GetInt("workers"), 8);
  EXPECT_TRUE(config->GetBool("verbose"));
  EXPECT_EQ(config->Get("format"), "json");
  // A bare boolean flag takes a following boolean word, and only that.
  config = ParseArgs({"--verbose", "false", "--motto="});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->GetBool("verbose"));
  EXPECT_EQ(config->Get("motto"), "");
  EXPECT_THAT(ErrorOf({"--verbose", "maybe"}), HasSubstr("unexpected argument \"maybe\""));
  EXPECT_THAT(ErrorOf({"--workers"}), HasSubstr("--workers needs a value"));
  // An untyped row alone reads "true", as before types (the bench tools' --tls).
  config = ParseArgs({"--motto", "--workers=3"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("motto"), "true");
  EXPECT_THAT(ErrorOf({"-w", "3"}), HasSubstr("unknown flag -w"));
}

TEST(ConfigTest, BooleansAreStrict) {
  for (const char* yes : {"true", "TRUE", "yes", "on", "1"}) {
    auto config = ParseArgs({std::string("--verbose=") + yes});
    ASSERT_TRUE(config.ok()) << yes;
    EXPECT_TRUE(config->GetBool("verbose")) << yes;
    EXPECT_EQ(config->Get("verbose"), "true");
  }
  for (const char* no : {"false", "No", "off", "0"}) {
    auto config = ParseArgs({std::string("--verbose=") + no});
    ASSERT_TRUE(config.ok()) << no;
    EXPECT_FALSE(config->GetBool("verbose")) << no;
  }
  EXPECT_EQ(ErrorOf({"--verbose=ture"}),
            "--verbose=ture: expected true or false (also yes/no, on/off, 1/0)");
  EXPECT_EQ(ErrorOf({}, {{"TEST_VERBOSE", "enabled"}}),
            "TEST_VERBOSE=enabled (--verbose): expected true or false (also yes/no, on/off, "
            "1/0)");
  EXPECT_THAT(ErrorOf({"--verbose="}), HasSubstr("expected true or false"));
}

TEST(ConfigTest, IntegersHaveRanges) {
  EXPECT_TRUE(ParseArgs({"--workers=1"}).ok());
  EXPECT_TRUE(ParseArgs({"--workers=64"}).ok());
  EXPECT_EQ(ErrorOf({"--workers=65"}), "--workers=65: expected an integer from 1 to 64");
  EXPECT_THAT(ErrorOf({"--workers=0"}), HasSubstr("from 1 to 64"));
  EXPECT_THAT(ErrorOf({"--workers=many"}), HasSubstr("--workers=many"));
  EXPECT_THAT(ErrorOf({"--workers=+3"}), HasSubstr("an integer"));
  EXPECT_THAT(ErrorOf({"--workers=99999999999999999999999"}), HasSubstr("an integer"));
}

TEST(ConfigTest, Durations) {
  EXPECT_EQ(*ParseDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDuration("30s"), absl::Seconds(30));
  EXPECT_EQ(*ParseDuration("2m"), absl::Minutes(2));
  EXPECT_EQ(*ParseDuration("1h"), absl::Hours(1));
  EXPECT_EQ(*ParseDuration("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("1h2m3s4ms"), absl::Milliseconds(3'723'004));
  EXPECT_EQ(*ParseDuration("0s"), absl::ZeroDuration());
  for (const char* bad : {"", "s", "1.5s", "10d", "-1s", "1 s", "1m30", "ms"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
  EXPECT_EQ(DurationString(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(DurationString(absl::Milliseconds(1500)), "1s500ms");
  EXPECT_EQ(DurationString(absl::Hours(48)), "48h");
  EXPECT_EQ(DurationString(absl::ZeroDuration()), "0s");

  // A bare number is refused, and the message says what to write.
  EXPECT_EQ(ErrorOf({"--drain-timeout=30"}),
            "--drain-timeout=30: a bare number has no unit: write 30s for seconds or 30ms "
            "for milliseconds (a duration such as 250ms, 30s, 2m, 1h or 1m30s)");
  EXPECT_THAT(ErrorOf({"--drain-timeout=0"}), HasSubstr("write 0s"));
  auto config = ParseArgs({"--drain-timeout=90s"});
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->Get("drain-timeout"), "1m30s");
  EXPECT_EQ(config->GetDuration("drain-timeout"), absl::Seconds(90));
  // The range: Duration() is 0s to 365 days.
  EXPECT_THAT(ErrorOf({"--drain-timeout=8761h"}), HasSubstr("from 0s to 8760h"));
}

TEST(ConfigTest, Sizes) {
  EXPECT_EQ(*ParseSize("1500"), 1500);
  EXPECT_EQ(*ParseSize("1500B"), 1500);
  EXPECT_EQ(*ParseSize("64KiB"), 64 << 10);
  EXPECT_EQ(*ParseSize("64mib"), 64 << 20);
  EXPECT_EQ(*ParseSize("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseSize("1TiB"), int64_t{1} << 40);
  for (const char* bad : {"", "MiB", "64MB", "64M", "1.5MiB", "-1", "64 Mi"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseSize("99999999999TiB").ok());  // overflow
  EXPECT_EQ(FormatSize(64 << 20), "64MiB");
  EXPECT_EQ(FormatSize(1536), "1536");
  EXPECT_EQ(FormatSize(1 << 10), "1KiB");
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_THAT(ErrorOf({"--cache=64MB"}), HasSubstr("--cache=64MB: expected a size"));
  EXPECT_THAT(ErrorOf({"--cache=2TiB"}), HasSubstr("from 0 to 1TiB"));
  auto config = ParseArgs({"--cache=1048576"});
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->Get("cache"), "1MiB");
}

TEST(ConfigTest, OneOf) {
  EXPECT_EQ(ErrorOf({"--format=xml"}), "--format=xml: expected one of auto, json, text");
}

TEST(ConfigTest, StringChecks) {
  std::vector<Setting> settings = {
      {"address", "", "a:1", "", String([](std::string_view value) {
         return value.find(':') == std::string_view::npos
                    ? absl::InvalidArgumentError("expected host:port")
                    : absl::OkStatus();
       })}};
  auto bad = Config::Parse(TestProgram(), settings, {"--address=nowhere"}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "--address=nowhere: expected host:port");
}

TEST(ConfigTest, UnknownNamesAreRefusedWithAHint) {
  EXPECT_EQ(ErrorOf({"--worker=3"}), "unknown flag --worker; did you mean --workers? (see --help)");
  EXPECT_EQ(ErrorOf({"--zzz=3"}), "unknown flag --zzz (see --help)");
  EXPECT_EQ(ErrorOf({}, {{"TEST_WORKER", "3"}}),
            "unknown environment variable TEST_WORKER: no setting of test-program has this "
            "name; did you mean TEST_WORKERS? (test-program --help lists them; unset it)");
  // Another program's variables, and variables without the prefix, are left alone.
  EXPECT_TRUE(ParseArgs({}, {{"TEST_OTHER_TOOL", "x"}, {"HOME", "/root"}}).ok());
  Program lenient = TestProgram();
  lenient.refuse_unknown_env = false;
  EXPECT_TRUE(Config::Parse(lenient, Settings(), {}, {{"TEST_WORKER", "3"}}).ok());
  EXPECT_THAT(ErrorOf({"positional"}), HasSubstr("unexpected argument \"positional\""));
  Program with_commands = TestProgram();
  with_commands.positional_args = true;
  auto config = Config::Parse(with_commands, Settings(), {"drain", "--workers=3"}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->positional(), std::vector<std::string>{"drain"});
}

TEST(ConfigTest, RenamedNamesSayTheNewOne) {
  EXPECT_EQ(ErrorOf({"--drain-seconds=20"}),
            "--drain-seconds was renamed to --drain-timeout (a duration such as 30s)");
  EXPECT_EQ(ErrorOf({}, {{"TEST_DRAIN_SECONDS", "20"}}),
            "TEST_DRAIN_SECONDS was renamed to TEST_DRAIN_TIMEOUT (a duration such as 30s)");
  const std::string file = WriteFile("renamed.conf", "\n# old\ndrain-seconds = 20\n");
  EXPECT_EQ(ErrorOf({"--config=" + file}),
            file + ":3: drain-seconds was renamed to drain-timeout (a duration such as 30s)");
}

TEST(ConfigTest, FileSyntax) {
  const std::string file = WriteFile(
      "syntax.conf",
      "# comment\n"
      "\n"
      "   listen   =   0.0.0.0:1   # trailing comment\n"
      "motto = \"a # in quotes, \\\"quoted\\\" and a \\\\ backslash\"  # comment\n"
      "format=json\n"
      "cache = 2MiB\n");
  auto config = ParseArgs({"--config", file});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("listen"), "0.0.0.0:1");
  EXPECT_EQ(config->Get("motto"), "a # in quotes, \"quoted\" and a \\ backslash");
  EXPECT_EQ(config->Get("format"), "json");
  EXPECT_EQ(config->GetSize("cache"), 2 << 20);
}

TEST(ConfigTest, FileErrorsNameTheLine) {
  struct Case {
    std::string text;
    std::string message;
  };
  std::vector<Case> cases = {
      {"workers = 2\nthis line has no equals sign\n", ":2: expected `name = value`"},
      {"= 3\n", ":1: expected `name = value`: the name is missing"},
      {"\n\nlisen = x\n", ":3: unknown setting \"lisen\"; did you mean --listen?"},
      {"workers = 2\nworkers = 3\n", ":2: workers is already set on line 1"},
      {"motto = \"open\n", ":1: the closing \" is missing"},
      {"motto = \"a\" b\n", ":1: unexpected text after the closing \""},
      {"verbose = maybe\n", ":1: verbose = maybe: expected true or false"},
      {"drain-timeout = 20\n", ":1: drain-timeout = 20: a bare number has no unit"},
  };
  for (const Case& c : cases) {
    const std::string file = WriteFile("bad.conf", c.text);
    EXPECT_THAT(ErrorOf({"--config", file}), HasSubstr(file + c.message)) << c.text;
  }
  EXPECT_THAT(ErrorOf({"--config", "/nonexistent/test.conf"}),
              HasSubstr("cannot read the config file /nonexistent/test.conf"));
  EXPECT_THAT(ErrorOf({}, {{"TEST_CONFIG", "/nonexistent/env.conf"}}),
              HasSubstr("/nonexistent/env.conf"));
}

TEST(ConfigTest, PrintConfigRoundTrips) {
  Environment env = {{"TEST_WORKERS", "7"}};
  auto config = ParseArgs({"--print-config", "--motto=say \"hi\" # \\ ok", "--cache=1536",
                           "--drain-timeout=1m30s", "--verbose"},
                          env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->print_config_requested());
  const std::string printed = config->PrintConfig();
  EXPECT_THAT(printed, HasSubstr("workers = 7  # env TEST_WORKERS\n"));
  EXPECT_THAT(printed, HasSubstr("listen = \"127.0.0.1:50051\"  # default\n"));
  EXPECT_THAT(printed, HasSubstr("drain-timeout = 1m30s  # flag\n"));
  EXPECT_THAT(printed, HasSubstr("verbose = true  # flag\n"));
  EXPECT_EQ(printed.find("drain-seconds"), std::string::npos);  // renamed rows are not settings

  // Fed back as a config file, it gives the same settings, now from the file.
  const std::string file = WriteFile("printed.conf", printed);
  auto again = ParseArgs({"--config", file});
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << printed;
  for (const Setting& setting : Settings()) {
    if (setting.kind.type == Type::kRenamed) continue;
    EXPECT_EQ(again->Get(setting.name), config->Get(setting.name)) << setting.name;
    EXPECT_EQ(again->source(setting.name), Source::kFile) << setting.name;
  }
}

TEST(ConfigTest, PrintConfigHidesSecretsInCommentedLines) {
  auto config = ParseArgs({"--print-config", "--token=s3cret", "--workers=3",
                           "--database=host=db user=mail password='p w\\'d' dbname=mail"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->Get("token"), "s3cret");  // the program itself sees the value
  const std::string printed = config->PrintConfig();
  EXPECT_EQ(printed.find("s3cret"), std::string::npos) << printed;
  EXPECT_EQ(printed.find("p w"), std::string::npos) << printed;
  EXPECT_THAT(printed, HasSubstr("# token = \"(set, not shown)\"  # flag, secret not shown\n"));
  EXPECT_THAT(printed, HasSubstr("# database = \"host=db user=mail password=(not shown) "
                                 "dbname=mail\"  # flag, secret not shown\n"));
  // Fed back, the commented lines set nothing; the rest is as it was.
  auto again = ParseArgs({"--config", WriteFile("redacted.conf", printed)});
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << printed;
  EXPECT_EQ(again->Get("token"), "");
  EXPECT_EQ(again->Get("database"), "");
  EXPECT_EQ(again->Get("workers"), "3");
}

TEST(ConfigTest, RedactConnInfoHidesEveryPasswordForm) {
  EXPECT_EQ(RedactConnInfo("host=db password=x dbname=mail"),
            "host=db password=(not shown) dbname=mail");
  EXPECT_EQ(RedactConnInfo("password = 'a b\\' c' host=db"), "password = (not shown) host=db");
  EXPECT_EQ(RedactConnInfo("host=/run/postgresql dbname=mail"), "host=/run/postgresql dbname=mail");
  EXPECT_EQ(RedactConnInfo("postgresql://mail:x@db.example.org:5432/mail?sslmode=require"),
            "postgresql://mail:(not shown)@db.example.org:5432/mail?sslmode=require");
  EXPECT_EQ(RedactConnInfo("postgres://db/mail?user=mail&password=x&sslmode=require"),
            "postgres://db/mail?user=mail&password=(not shown)&sslmode=require");
  EXPECT_EQ(RedactConnInfo("postgresql://mail@db/mail"), "postgresql://mail@db/mail");
  EXPECT_EQ(RedactConnInfo("postgresql://"), "postgresql://");
  EXPECT_EQ(RedactConnInfo("password="), "password=(not shown)");
  EXPECT_EQ(RedactConnInfo("host"), "host");
  EXPECT_EQ(RedactConnInfo("password='unterminated"), "password=(not shown)");
}

TEST(ConfigTest, HelpListsEverySettingAndWorksWithBadValues) {
  auto config = ParseArgs({"--help"}, {{"TEST_WORKERS", "many"}});
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->help_requested());
  const std::string usage = config->Usage("test-program");
  for (const Setting& setting : Settings()) {
    if (setting.kind.type == Type::kRenamed) continue;
    EXPECT_THAT(usage, HasSubstr("--" + setting.name + "=")) << setting.name;
    EXPECT_THAT(usage, HasSubstr(setting.env)) << setting.name;
  }
  EXPECT_THAT(usage, HasSubstr("TEST_CONFIG"));
  EXPECT_THAT(usage, HasSubstr("--drain-seconds is now --drain-timeout"));
  EXPECT_THAT(usage, HasSubstr("--print-config"));
}

TEST(ConfigTest, TheFormerInterfaceStillParses) {
  char arg0[] = "prog";
  char arg1[] = "--workers=9";
  char* argv[] = {arg0, arg1};
  auto config = Config::Parse(2, argv, Settings());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config->GetInt("workers"), 9);
}

}  // namespace
}  // namespace mailbox::config
