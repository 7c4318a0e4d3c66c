#include "common/config.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mailbox::config {

absl::StatusOr<Config> Config::Parse(int argc, char** argv, std::vector<Setting> settings) {
  Config config;
  config.settings_ = std::move(settings);
  for (const Setting& setting : config.settings_) {
    const char* env = setting.env.empty() ? nullptr : std::getenv(setting.env.c_str());
    config.values_[setting.name] = env != nullptr ? env : setting.default_value;
  }
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      config.help_requested_ = true;
      continue;
    }
    if (arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument: ", std::string(arg)));
    }
    arg.remove_prefix(2);
    size_t eq = arg.find('=');
    std::string name(arg.substr(0, eq));
    auto it = config.values_.find(name);
    if (it == config.values_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (eq != std::string_view::npos) {
      it->second = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--") {
      it->second = argv[++i];
    } else {
      it->second = "true";
    }
  }
  return config;
}

const std::string& Config::Get(std::string_view name) const {
  static const std::string kEmpty;
  auto it = values_.find(name);
  return it == values_.end() ? kEmpty : it->second;
}

absl::StatusOr<int64_t> Config::GetInt(std::string_view name) const {
  int64_t value = 0;
  if (!absl::SimpleAtoi(Get(name), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", std::string(name), " needs an integer, not \"", Get(name), "\""));
  }
  return value;
}

bool Config::GetBool(std::string_view name) const {
  const std::string& value = Get(name);
  return value == "1" || value == "true" || value == "yes" || value == "on";
}

std::string Config::Usage(std::string_view program) const {
  std::string out = absl::StrCat("usage: ", std::string(program), " [--flag=value ...]\n\n");
  for (const Setting& setting : settings_) {
    absl::StrAppend(&out, "  --", setting.name, "  ", setting.help, "\n      default \"",
                    setting.default_value, "\"");
    if (!setting.env.empty()) {
      absl::StrAppend(&out, ", environment ", setting.env);
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace mailbox::config
