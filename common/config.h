// Command-line and environment configuration shared by the service binaries.
//
// Every setting is `--name=value` on the command line or, when absent there, the
// environment variable given for it; then its documented default. Unknown flags are
// errors so a typo never silently leaves a default in place.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailbox::config {

struct Setting {
  std::string name;         // flag name without "--"
  std::string env;          // environment variable, may be empty
  std::string default_value;
  std::string help;
};

class Config {
 public:
  // Parses argv against `settings`. `--help` sets help_requested().
  static absl::StatusOr<Config> Parse(int argc, char** argv, std::vector<Setting> settings);

  const std::string& Get(std::string_view name) const;
  absl::StatusOr<int64_t> GetInt(std::string_view name) const;
  bool GetBool(std::string_view name) const;
  bool help_requested() const { return help_requested_; }
  // A usage text listing every setting, its variable and default.
  std::string Usage(std::string_view program) const;

 private:
  std::vector<Setting> settings_;
  std::map<std::string, std::string, std::less<>> values_;
  bool help_requested_ = false;
};

}  // namespace mailbox::config
