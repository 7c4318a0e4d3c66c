// Settings of the service binaries (imap-gateway, mailbox-service, mailbox-admin) and
// where operators give them: one layer, so every binary reads flags, environment
// variables and a config file the same way and checks every value before it starts.
//
// Sources, highest first: a flag (`--name=value` or `--name value`), the setting's
// environment variable (IMAPD_* / MAILBOX_*), a line of the config file
// (`--config FILE` or the program's config variable), the default in the table.
//
// Each binary declares its settings as a table, one row per setting:
//
//   {"drain-timeout", "MAILBOX_DRAIN_TIMEOUT", "20s", "help text", config::Duration()},
//   {"workers", "IMAPD_WORKERS", "0", "help text", config::Int(0, 1024)},
//   {"gateway-id", "IMAPD_GATEWAY_ID", "", "help text"},  // no type: a string
//
// Types: String (optionally with a check), Bool (true/false, yes/no, on/off, 1/0 and
// nothing else), Int with a range, Size (octets, or a number with B, KiB, MiB, GiB,
// TiB), Duration (a number with ms, s, m or h, combinable as 1m30s; a bare number is
// refused, since it was seconds in some places and milliseconds in others), OneOf a
// list of words. A row of type RenamedTo("new-name") keeps an old name only to refuse
// it with the new name.
//
// A boolean flag alone (`--oauth`) is true; so is an untyped (String) flag alone, as
// the bench tools' tables expect; any other flag alone needs its value.
//
// Every value is checked at start: an unknown flag, file key or environment variable
// with the program's prefix, or a malformed value, is an error naming the setting,
// the value, where it came from and what is expected. The binaries print it and exit
// with status 2.
//
// Config file: UTF-8 text, one `name = value` per line; `#` starts a comment (at the
// start of a line, or after a value and whitespace); values may be written in double
// quotes, with \" and \\ inside them, which keeps spaces, `#` and empty values. The
// names are the flag names without "--". --print-config prints the effective settings
// in this format, each with its source, so its output is a valid config file.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailbox::config {

enum class Type { kString, kBool, kInt, kSize, kDuration, kOneOf, kRenamed };

// The type of a setting and its bounds; made by the functions below.
struct Kind {
  Type type = Type::kString;
  int64_t min = 0;  // kInt, kSize (octets), kDuration (milliseconds)
  int64_t max = std::numeric_limits<int64_t>::max();
  std::vector<std::string> choices;  // kOneOf
  std::string renamed_to;            // kRenamed
  // kString: an extra check of the value; its message says what is expected.
  std::function<absl::Status(std::string_view value)> check;
  // kString: what --print-config shows of the value, without its secret part. A line
  // whose value this changed is printed as a comment. Empty: the value as it is.
  std::function<std::string(std::string_view value)> redact;
};

Kind String(std::function<absl::Status(std::string_view)> check = nullptr);
Kind Bool();
Kind Int(int64_t min, int64_t max);
Kind Size(int64_t min_octets = 0, int64_t max_octets = int64_t{1} << 50);
Kind Duration(absl::Duration min = absl::ZeroDuration(),
              absl::Duration max = absl::Hours(24 * 365));
Kind OneOf(std::vector<std::string> choices);
Kind RenamedTo(std::string new_name);
// A string --print-config does not show (a token): only that it is set.
Kind Secret();
// A string --print-config shows through `redact`, which hides its secret part.
Kind Redacted(std::function<std::string(std::string_view)> redact);

// A libpq connection string, keyword/value ("host=db password=x") or URI
// ("postgresql://user:x@db/mail?password=x"), with each password replaced by
// "(not shown)"; the rest as written.
std::string RedactConnInfo(std::string_view conninfo);

struct Setting {
  std::string name;  // flag name without "--"; also the config-file key
  std::string env;   // environment variable, may be empty
  std::string default_value;
  std::string help;
  Kind kind = {};
};

enum class Source { kDefault, kFile, kEnv, kFlag };
std::string_view SourceName(Source source);  // "default", "file", "env", "flag"

// What differs between the binaries.
struct Program {
  std::string name;        // for messages: "imap-gateway"
  std::string env_prefix;  // "IMAPD_"; variables with it that name no setting are refused
  std::string config_env;  // the variable naming a config file: "IMAPD_CONFIG"
  // Variables with the prefix that belong to another program (mailbox-admin's in the
  // service's environment, scripts' own), ignored rather than refused.
  std::set<std::string, std::less<>> foreign_env;
  // mailbox-admin runs in the service's environment (a container's exec): it reads its
  // own variables and leaves the others alone.
  bool refuse_unknown_env = true;
  // Keep arguments that are not flags (a command) instead of refusing them.
  bool positional_args = false;
};

// The environment, name to value; ProcessEnvironment() is the real one.
using Environment = std::map<std::string, std::string, std::less<>>;
Environment ProcessEnvironment();

// Parses a duration ("250ms", "30s", "2m", "1h", "1m30s"); the error says what to write.
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);
// The canonical text of a duration, which ParseDuration reads back ("1m30s", "0s").
std::string DurationString(absl::Duration duration);
// Parses a size: octets, or a number with B, KiB, MiB, GiB or TiB ("64MiB").
absl::StatusOr<int64_t> ParseSize(std::string_view text);
std::string FormatSize(int64_t octets);  // "64MiB", "1500"
// Parses a boolean: true/false, yes/no, on/off, 1/0 (any case); nothing else.
std::optional<bool> ParseBool(std::string_view text);

class Config {
 public:
  // Parses the command line (argv without the program name) with `settings`, the
  // environment and the config file it names. `--help` and `--print-config` set
  // help_requested() / print_config_requested(); every other error is returned.
  static absl::StatusOr<Config> Parse(const Program& program, std::vector<Setting> settings,
                                      const std::vector<std::string>& args,
                                      const Environment& env);
  // The same from flags already split into (name, value) pairs, for a program that
  // parses its own command line (mailbox-admin's commands).
  static absl::StatusOr<Config> Resolve(const Program& program, std::vector<Setting> settings,
                                        const std::vector<std::pair<std::string, std::string>>& flags,
                                        const Environment& env);
  // The former interface: argv with the program name, the process environment, no
  // prefix checks; kept for the tests of components that take a Config.
  static absl::StatusOr<Config> Parse(int argc, char** argv, std::vector<Setting> settings);

  // The effective value in canonical form (durations as "1m30s", sizes as "64MiB").
  const std::string& Get(std::string_view name) const;
  // The typed values; every value was checked by Parse, so these only fail for a name
  // that is not in the table or has another type (a programming error).
  absl::StatusOr<int64_t> GetInt(std::string_view name) const;
  bool GetBool(std::string_view name) const;
  int64_t GetSize(std::string_view name) const;
  absl::Duration GetDuration(std::string_view name) const;
  Source source(std::string_view name) const;
  bool has(std::string_view name) const;

  bool help_requested() const { return help_requested_; }
  bool print_config_requested() const { return print_config_requested_; }
  const std::vector<std::string>& positional() const { return positional_; }
  // The config file read, empty if none.
  const std::string& config_file() const { return config_file_; }

  // Every setting with its env variable, default and help, for --help.
  std::string Usage(std::string_view program) const;
  // The effective settings as a config file, each line noting its source.
  std::string PrintConfig() const;

 private:
  struct Value {
    std::string text;
    Source source = Source::kDefault;
  };
  absl::Status Set(const Setting& setting, std::string_view value, Source source,
                   std::string_view where);
  const Setting* Find(std::string_view name) const;

  Program program_;
  std::vector<Setting> settings_;
  std::map<std::string, Value, std::less<>> values_;
  std::vector<std::string> positional_;
  std::string config_file_;
  bool help_requested_ = false;
  bool print_config_requested_ = false;
};

}  // namespace mailbox::config
