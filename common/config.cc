#include "common/config.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace mailbox::config {
namespace {

absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view S(absl::string_view s) { return std::string_view(s.data(), s.size()); }

constexpr char kDurationHint[] = "a duration such as 250ms, 30s, 2m, 1h or 1m30s";
constexpr char kSizeHint[] =
    "a size: octets, or a number with B, KiB, MiB, GiB or TiB such as 64MiB";

// Edit distance, for "did you mean" on an unknown name.
size_t Distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// What a value of this kind looks like, for errors and --help.
std::string Expected(const Kind& kind) {
  switch (kind.type) {
    case Type::kString:
      return "text";
    case Type::kBool:
      return "true or false (also yes/no, on/off, 1/0)";
    case Type::kInt:
      return absl::StrCat("an integer from ", kind.min, " to ", kind.max);
    case Type::kSize:
      return absl::StrCat(kSizeHint, ", from ", FormatSize(kind.min), " to ",
                          FormatSize(kind.max));
    case Type::kDuration:
      return absl::StrCat(kDurationHint, ", from ",
                          DurationString(absl::Milliseconds(kind.min)), " to ",
                          DurationString(absl::Milliseconds(kind.max)));
    case Type::kOneOf:
      return absl::StrCat("one of ", absl::StrJoin(kind.choices, ", "));
    case Type::kRenamed:
      return "";
  }
  return "";
}

// Short form for --help.
std::string Placeholder(const Kind& kind) {
  switch (kind.type) {
    case Type::kBool:
      return "BOOL";
    case Type::kInt:
      return "N";
    case Type::kSize:
      return "SIZE";
    case Type::kDuration:
      return "DURATION";
    case Type::kOneOf:
      return absl::StrJoin(kind.choices, "|");
    default:
      return "TEXT";
  }
}

// A config-file value: quoted, with \" and \\ escaped.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace

Kind String(std::function<absl::Status(std::string_view)> check) {
  Kind kind;
  kind.check = std::move(check);
  return kind;
}
Kind Bool() {
  Kind kind;
  kind.type = Type::kBool;
  return kind;
}
Kind Int(int64_t min, int64_t max) {
  Kind kind;
  kind.type = Type::kInt;
  kind.min = min;
  kind.max = max;
  return kind;
}
Kind Size(int64_t min_octets, int64_t max_octets) {
  Kind kind = Int(min_octets, max_octets);
  kind.type = Type::kSize;
  return kind;
}
Kind Duration(absl::Duration min, absl::Duration max) {
  Kind kind = Int(absl::ToInt64Milliseconds(min), absl::ToInt64Milliseconds(max));
  kind.type = Type::kDuration;
  return kind;
}
Kind OneOf(std::vector<std::string> choices) {
  Kind kind;
  kind.type = Type::kOneOf;
  kind.choices = std::move(choices);
  return kind;
}
Kind RenamedTo(std::string new_name) {
  Kind kind;
  kind.type = Type::kRenamed;
  kind.renamed_to = std::move(new_name);
  return kind;
}

Kind Secret() {
  return Redacted([](std::string_view) { return std::string("(set, not shown)"); });
}

Kind Redacted(std::function<std::string(std::string_view)> redact) {
  Kind kind;
  kind.redact = std::move(redact);
  return kind;
}

namespace {

constexpr std::string_view kHidden = "(not shown)";

// The URI form (libpq's "Connection URIs"): the password after "user:" in the
// authority, and any password=... among the query parameters.
std::string RedactConnUri(std::string_view uri, std::size_t scheme_end) {
  std::string out(uri.substr(0, scheme_end));
  std::string_view rest = uri.substr(scheme_end);
  const std::size_t authority_end = std::min(rest.find('/'), rest.find('?'));
  std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view user_info = authority.substr(0, at);
    if (const std::size_t colon = user_info.find(':'); colon != std::string_view::npos) {
      out.append(user_info.substr(0, colon + 1));
      out.append(kHidden);
      authority.remove_prefix(at);
    }
  }
  out.append(authority);
  const std::size_t query = rest.find('?');
  out.append(rest.substr(0, query));
  if (query == std::string_view::npos) {
    return out;
  }
  out.push_back('?');
  bool first = true;
  std::string_view params = rest.substr(query + 1);
  for (;;) {
    const std::size_t end = params.find('&');
    const std::string_view param = params.substr(0, end);
    out.append(first ? "" : "&");
    if (param.starts_with("password=")) {
      out.append("password=");
      out.append(kHidden);
    } else {
      out.append(param);
    }
    first = false;
    if (end == std::string_view::npos) {
      break;
    }
    params.remove_prefix(end + 1);
  }
  return out;
}

}  // namespace

std::string RedactConnInfo(std::string_view conninfo) {
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (conninfo.starts_with(scheme)) {
      return RedactConnUri(conninfo, scheme.size());
    }
  }
  // keyword = value pairs; a value is a word or single-quoted with \' and \\ escapes.
  std::string out;
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < conninfo.size() && absl::ascii_isspace(static_cast<unsigned char>(conninfo[i]))) {
      out.push_back(conninfo[i++]);
    }
  };
  while (i < conninfo.size()) {
    skip_spaces();
    const std::size_t key_start = i;
    while (i < conninfo.size() && conninfo[i] != '=' &&
           !absl::ascii_isspace(static_cast<unsigned char>(conninfo[i]))) {
      ++i;
    }
    const std::string_view key = conninfo.substr(key_start, i - key_start);
    out.append(key);
    skip_spaces();
    if (i >= conninfo.size() || conninfo[i] != '=') {
      continue;  // malformed: libpq will say so; nothing more to hide
    }
    out.push_back(conninfo[i++]);
    skip_spaces();
    const std::size_t value_start = i;
    if (i < conninfo.size() && conninfo[i] == '\'') {
      for (++i; i < conninfo.size() && conninfo[i] != '\''; ++i) {
        if (conninfo[i] == '\\') {
          ++i;
        }
      }
      i = std::min(i + 1, conninfo.size());
    } else {
      while (i < conninfo.size() && !absl::ascii_isspace(static_cast<unsigned char>(conninfo[i]))) {
        ++i;
      }
    }
    if (key == "password") {
      out.append(kHidden);
    } else {
      out.append(conninfo.substr(value_start, i - value_start));
    }
  }
  return out;
}

std::string_view SourceName(Source source) {
  switch (source) {
    case Source::kDefault:
      return "default";
    case Source::kFile:
      return "file";
    case Source::kEnv:
      return "env";
    case Source::kFlag:
      return "flag";
  }
  return "";
}

Environment ProcessEnvironment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text = *entry;
    size_t eq = text.find('=');
    if (eq != std::string_view::npos) {
      env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
    }
  }
  return env;
}

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  std::string_view rest = S(absl::StripAsciiWhitespace(A(text)));
  if (rest.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", kDurationHint));
  }
  if (std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a bare number has no unit: write ", A(rest), "s for seconds or ", A(rest),
        "ms for milliseconds (", kDurationHint, ")"));
  }
  absl::Duration total;
  while (!rest.empty()) {
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    int64_t number = 0;
    if (digits == 0 || digits > 12 || !absl::SimpleAtoi(A(rest.substr(0, digits)), &number)) {
      return absl::InvalidArgumentError(absl::StrCat("expected ", kDurationHint));
    }
    rest.remove_prefix(digits);
    if (rest.substr(0, 2) == "ms") {
      total += absl::Milliseconds(number);
      rest.remove_prefix(2);
    } else if (!rest.empty() && rest[0] == 's') {
      total += absl::Seconds(number);
      rest.remove_prefix(1);
    } else if (!rest.empty() && rest[0] == 'm') {
      total += absl::Minutes(number);
      rest.remove_prefix(1);
    } else if (!rest.empty() && rest[0] == 'h') {
      total += absl::Hours(number);
      rest.remove_prefix(1);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", kDurationHint, " (units: ms, s, m, h)"));
    }
  }
  return total;
}

std::string DurationString(absl::Duration duration) {
  int64_t ms = absl::ToInt64Milliseconds(duration);
  if (ms == 0) {
    return "0s";
  }
  std::string out;
  for (auto [unit, size] : {std::pair<const char*, int64_t>{"h", 3'600'000},
                            {"m", 60'000},
                            {"s", 1'000},
                            {"ms", 1}}) {
    if (ms >= size) {
      absl::StrAppend(&out, ms / size, unit);
      ms %= size;
    }
  }
  return out;
}

absl::StatusOr<int64_t> ParseSize(std::string_view text) {
  std::string_view rest = S(absl::StripAsciiWhitespace(A(text)));
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  int64_t number = 0;
  if (digits == 0 || digits > 18 || !absl::SimpleAtoi(A(rest.substr(0, digits)), &number)) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", kSizeHint));
  }
  std::string unit = absl::AsciiStrToLower(A(rest.substr(digits)));
  int shift = 0;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "kib") {
    shift = 10;
  } else if (unit == "mib") {
    shift = 20;
  } else if (unit == "gib") {
    shift = 30;
  } else if (unit == "tib") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", kSizeHint, " (binary units only: 1KiB is 1024 octets)"));
  }
  if (number > (std::numeric_limits<int64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", kSizeHint, "; too large"));
  }
  return number << shift;
}

std::string FormatSize(int64_t octets) {
  if (octets != 0) {
    for (auto [unit, shift] : {std::pair<const char*, int>{"TiB", 40},
                               {"GiB", 30},
                               {"MiB", 20},
                               {"KiB", 10}}) {
      if (octets % (int64_t{1} << shift) == 0) {
        return absl::StrCat(octets >> shift, unit);
      }
    }
  }
  return absl::StrCat(octets);
}

std::optional<bool> ParseBool(std::string_view text) {
  std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(A(text)));
  if (word == "true" || word == "yes" || word == "on" || word == "1") return true;
  if (word == "false" || word == "no" || word == "off" || word == "0") return false;
  return std::nullopt;
}

const Setting* Config::Find(std::string_view name) const {
  for (const Setting& setting : settings_) {
    if (setting.name == name) {
      return &setting;
    }
  }
  return nullptr;
}

// Checks `value` for `setting` and stores its canonical text. `where` names the
// source for errors: "--name", "IMAPD_NAME", "file.conf:3".
absl::Status Config::Set(const Setting& setting, std::string_view value, Source source,
                         std::string_view where) {
  const Kind& kind = setting.kind;
  std::string canonical;
  std::string problem;
  switch (kind.type) {
    case Type::kString:
      canonical = std::string(value);
      if (kind.check) {
        if (absl::Status status = kind.check(value); !status.ok()) {
          problem = std::string(status.message());
        }
      }
      break;
    case Type::kBool:
      if (std::optional<bool> parsed = ParseBool(value); parsed.has_value()) {
        canonical = *parsed ? "true" : "false";
      } else {
        problem = absl::StrCat("expected ", Expected(kind));
      }
      break;
    case Type::kInt: {
      int64_t parsed = 0;
      std::string_view trimmed = S(absl::StripAsciiWhitespace(A(value)));
      if (!absl::SimpleAtoi(A(trimmed), &parsed) || parsed < kind.min || parsed > kind.max ||
          (!trimmed.empty() && trimmed[0] == '+')) {
        problem = absl::StrCat("expected ", Expected(kind));
      } else {
        canonical = absl::StrCat(parsed);
      }
      break;
    }
    case Type::kSize: {
      absl::StatusOr<int64_t> parsed = ParseSize(value);
      if (!parsed.ok()) {
        problem = std::string(parsed.status().message());
      } else if (*parsed < kind.min || *parsed > kind.max) {
        problem = absl::StrCat("expected ", Expected(kind));
      } else {
        canonical = FormatSize(*parsed);
      }
      break;
    }
    case Type::kDuration: {
      absl::StatusOr<absl::Duration> parsed = ParseDuration(value);
      if (!parsed.ok()) {
        problem = std::string(parsed.status().message());
      } else if (*parsed < absl::Milliseconds(kind.min) ||
                 *parsed > absl::Milliseconds(kind.max)) {
        problem = absl::StrCat("expected ", Expected(kind));
      } else {
        canonical = DurationString(*parsed);
      }
      break;
    }
    case Type::kOneOf:
      if (std::find(kind.choices.begin(), kind.choices.end(), value) == kind.choices.end()) {
        problem = absl::StrCat("expected ", Expected(kind));
      } else {
        canonical = std::string(value);
      }
      break;
    case Type::kRenamed:
      return absl::InternalError("a renamed setting has no value");
  }
  if (!problem.empty()) {
    std::string what = source == Source::kFlag
                           ? absl::StrCat("--", setting.name, "=", A(value))
                       : source == Source::kEnv
                           ? absl::StrCat(A(where), "=", A(value), " (--", setting.name, ")")
                       : source == Source::kFile
                           ? absl::StrCat(A(where), ": ", setting.name, " = ", A(value))
                           : absl::StrCat("default of --", setting.name, " \"", A(value), "\"");
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", problem));
  }
  values_[setting.name] = Value{std::move(canonical), source};
  return absl::OkStatus();
}

namespace {

// The message for an old name: "--drain-seconds was renamed to --drain-timeout (a
// duration such as 30s)".
std::string RenamedMessage(const std::vector<Setting>& settings, const Setting& old,
                           std::string_view form, std::string_view where) {
  const Setting* now = nullptr;
  for (const Setting& setting : settings) {
    if (setting.name == old.kind.renamed_to) now = &setting;
  }
  std::string hint;
  if (now != nullptr && now->kind.type == Type::kDuration) {
    hint = " (a duration such as 30s)";
  } else if (now != nullptr && now->kind.type == Type::kSize) {
    hint = " (a size such as 64MiB)";
  }
  std::string old_name, new_name;
  if (form == "env") {
    old_name = old.env;
    new_name = now != nullptr && !now->env.empty() ? now->env : old.kind.renamed_to;
  } else if (form == "file") {
    old_name = old.name;
    new_name = old.kind.renamed_to;
  } else {
    old_name = absl::StrCat("--", old.name);
    new_name = absl::StrCat("--", old.kind.renamed_to);
  }
  return absl::StrCat(A(where), where.empty() ? "" : ": ", old_name, " was renamed to ",
                      new_name, hint);
}

std::string DidYouMean(const std::vector<Setting>& settings, std::string_view name,
                       bool env) {
  const Setting* best = nullptr;
  size_t best_distance = 3;
  for (const Setting& setting : settings) {
    if (setting.kind.type == Type::kRenamed || (env && setting.env.empty())) continue;
    size_t d = Distance(name, env ? setting.env : setting.name);
    if (d < best_distance) {
      best_distance = d;
      best = &setting;
    }
  }
  if (best == nullptr) return "";
  return env ? absl::StrCat("; did you mean ", best->env, "?")
             : absl::StrCat("; did you mean --", best->name, "?");
}

// Splits one config-file line into key and value; false for a blank or comment line.
absl::StatusOr<bool> ParseLine(std::string_view line, std::string* key, std::string* value) {
  std::string_view text = S(absl::StripAsciiWhitespace(A(line)));
  if (text.empty() || text[0] == '#') {
    return false;
  }
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) {
    return absl::InvalidArgumentError("expected `name = value`");
  }
  *key = std::string(absl::StripAsciiWhitespace(A(text.substr(0, eq))));
  if (key->empty()) {
    return absl::InvalidArgumentError("expected `name = value`: the name is missing");
  }
  std::string_view rest = S(absl::StripLeadingAsciiWhitespace(A(text.substr(eq + 1))));
  value->clear();
  if (!rest.empty() && rest[0] == '"') {
    size_t i = 1;
    bool closed = false;
    for (; i < rest.size(); ++i) {
      if (rest[i] == '\\' && i + 1 < rest.size() && (rest[i + 1] == '"' || rest[i + 1] == '\\')) {
        *value += rest[++i];
      } else if (rest[i] == '\\') {
        return absl::InvalidArgumentError(
            "a backslash in quotes must be followed by \" or \\");
      } else if (rest[i] == '"') {
        closed = true;
        ++i;
        break;
      } else {
        *value += rest[i];
      }
    }
    if (!closed) {
      return absl::InvalidArgumentError("the closing \" is missing");
    }
    std::string_view after = S(absl::StripLeadingAsciiWhitespace(A(rest.substr(i))));
    if (!after.empty() && after[0] != '#') {
      return absl::InvalidArgumentError("unexpected text after the closing \"");
    }
    return true;
  }
  // Unquoted: up to a " #" comment.
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '#' && (i == 0 || rest[i - 1] == ' ' || rest[i - 1] == '\t')) {
      rest = rest.substr(0, i);
      break;
    }
  }
  *value = std::string(absl::StripTrailingAsciiWhitespace(A(rest)));
  return true;
}

}  // namespace

absl::StatusOr<Config> Config::Parse(const Program& program, std::vector<Setting> settings,
                                     const std::vector<std::string>& args,
                                     const Environment& env) {
  std::vector<std::pair<std::string, std::string>> flags;
  std::vector<std::string> positional;
  bool help = false;
  bool print_config = false;
  auto find = [&settings](std::string_view name) -> const Setting* {
    for (const Setting& setting : settings) {
      if (setting.name == name) return &setting;
    }
    return nullptr;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      help = true;
      continue;
    }
    if (arg == "--print-config") {
      print_config = true;
      continue;
    }
    if (arg == "--") {
      for (++i; i < args.size(); ++i) positional.push_back(args[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional.push_back(args[i]);
      continue;
    }
    if (arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", A(arg), ": flags are --name=value (see --help)"));
    }
    std::string_view body = arg.substr(2);
    std::string name(body.substr(0, body.find('=')));
    std::optional<std::string> value;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      value = std::string(body.substr(eq + 1));
    }
    const Setting* setting = find(name);
    if (name == "config") {
      // Handled by Resolve like any flag.
    } else if (setting == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name,
                                                     DidYouMean(settings, name, false),
                                                     " (see --help)"));
    } else if (setting->kind.type == Type::kRenamed) {
      return absl::InvalidArgumentError(RenamedMessage(settings, *setting, "flag", ""));
    }
    if (!value.has_value()) {
      if (setting != nullptr && setting->kind.type == Type::kBool) {
        // A bare boolean flag is "true"; a following true/false word is its value.
        if (i + 1 < args.size() && ParseBool(args[i + 1]).has_value()) {
          value = args[++i];
        } else {
          value = "true";
        }
      } else if (i + 1 < args.size() && args[i + 1].substr(0, 2) != "--") {
        value = args[++i];
      } else if (setting != nullptr && setting->kind.type == Type::kString &&
                 !setting->kind.check) {
        // A row without a type (bench tools' tables) keeps the old reading of a
        // flag alone: "true".
        value = "true";
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " needs a value: --", name, "=VALUE",
            setting != nullptr ? absl::StrCat(" (", Expected(setting->kind), ")") : ""));
      }
    }
    flags.emplace_back(std::move(name), *std::move(value));
  }
  if (!positional.empty() && !program.positional_args) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", positional[0],
                     "\": settings are flags such as --name=value (see --help)"));
  }
  if (help) {
    // --help works even where a value is wrong, to find the right name.
    Config bare;
    bare.program_ = program;
    bare.settings_ = std::move(settings);
    bare.help_requested_ = true;
    return bare;
  }
  absl::StatusOr<Config> config = Resolve(program, std::move(settings), flags, env);
  if (!config.ok()) {
    return config.status();
  }
  config->positional_ = std::move(positional);
  config->help_requested_ = help;
  config->print_config_requested_ = print_config;
  return config;
}

absl::StatusOr<Config> Config::Resolve(
    const Program& program, std::vector<Setting> settings,
    const std::vector<std::pair<std::string, std::string>>& flags, const Environment& env) {
  Config config;
  config.program_ = program;
  config.settings_ = std::move(settings);
  const std::vector<Setting>& table = config.settings_;

  for (const Setting& setting : table) {
    if (setting.kind.type == Type::kRenamed) continue;
    if (absl::Status status =
            config.Set(setting, setting.default_value, Source::kDefault, "default");
        !status.ok()) {
      return absl::InternalError(status.message());
    }
  }

  // The config file: the last --config flag, else the program's variable.
  std::string file;
  for (const auto& [name, value] : flags) {
    if (name == "config") file = value;
  }
  if (file.empty() && !program.config_env.empty()) {
    if (auto it = env.find(program.config_env); it != env.end()) file = it->second;
  }
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read the config file ", file, ": ", std::strerror(errno)));
    }
    config.config_file_ = file;
    std::map<std::string, int, std::less<>> seen;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      const std::string where = absl::StrCat(file, ":", number);
      std::string key, value;
      absl::StatusOr<bool> parsed = ParseLine(line, &key, &value);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", parsed.status().message()));
      }
      if (!*parsed) continue;
      const Setting* setting = config.Find(key);
      if (setting == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": unknown setting \"", key, "\"", DidYouMean(table, key, false),
            " (names are the flags without --; see ", program.name, " --help)"));
      }
      if (setting->kind.type == Type::kRenamed) {
        return absl::InvalidArgumentError(RenamedMessage(table, *setting, "file", where));
      }
      if (auto [it, inserted] = seen.emplace(key, number); !inserted) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", key,
                                                       " is already set on line ", it->second));
      }
      if (absl::Status status = config.Set(*setting, value, Source::kFile, where);
          !status.ok()) {
        return status;
      }
    }
  }

  for (const Setting& setting : table) {
    if (setting.env.empty()) continue;
    auto it = env.find(setting.env);
    if (it == env.end()) continue;
    if (setting.kind.type == Type::kRenamed) {
      return absl::InvalidArgumentError(RenamedMessage(table, setting, "env", ""));
    }
    if (absl::Status status = config.Set(setting, it->second, Source::kEnv, setting.env);
        !status.ok()) {
      return status;
    }
  }
  if (program.refuse_unknown_env && !program.env_prefix.empty()) {
    for (auto it = env.lower_bound(program.env_prefix);
         it != env.end() && it->first.compare(0, program.env_prefix.size(),
                                              program.env_prefix) == 0;
         ++it) {
      const std::string& name = it->first;
      bool known = name == program.config_env || program.foreign_env.count(name) > 0;
      for (const Setting& setting : table) {
        known = known || setting.env == name;
      }
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown environment variable ", name, ": no setting of ", program.name,
            " has this name", DidYouMean(table, name, true), " (",
            program.name, " --help lists them; unset it)"));
      }
    }
  }

  for (const auto& [name, value] : flags) {
    if (name == "config") continue;
    const Setting* setting = config.Find(name);
    if (setting == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag --", name, DidYouMean(table, name, false), " (see --help)"));
    }
    if (setting->kind.type == Type::kRenamed) {
      return absl::InvalidArgumentError(RenamedMessage(table, *setting, "flag", ""));
    }
    if (absl::Status status = config.Set(*setting, value, Source::kFlag, "");
        !status.ok()) {
      return status;
    }
  }
  return config;
}

absl::StatusOr<Config> Config::Parse(int argc, char** argv, std::vector<Setting> settings) {
  Program program;
  program.refuse_unknown_env = false;
  program.positional_args = false;
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  return Parse(program, std::move(settings), args, ProcessEnvironment());
}

const std::string& Config::Get(std::string_view name) const {
  static const std::string kEmpty;
  auto it = values_.find(name);
  return it == values_.end() ? kEmpty : it->second.text;
}

bool Config::has(std::string_view name) const { return values_.count(name) > 0; }

Source Config::source(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? Source::kDefault : it->second.source;
}

absl::StatusOr<int64_t> Config::GetInt(std::string_view name) const {
  const Setting* setting = Find(name);
  if (setting != nullptr && setting->kind.type == Type::kSize) {
    return GetSize(name);
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(Get(name), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", A(name), " needs an integer, not \"", Get(name), "\""));
  }
  return value;
}

bool Config::GetBool(std::string_view name) const {
  return ParseBool(Get(name)).value_or(false);
}

int64_t Config::GetSize(std::string_view name) const {
  return ParseSize(Get(name)).value_or(0);
}

absl::Duration Config::GetDuration(std::string_view name) const {
  return ParseDuration(Get(name)).value_or(absl::ZeroDuration());
}

std::string Config::Usage(std::string_view program) const {
  std::string out = absl::StrCat("usage: ", A(program), " [--flag=value ...]\n\n");
  absl::StrAppend(
      &out,
      "Each setting is a flag, an environment variable or a line `name = value` of the\n"
      "config file (--config FILE",
      program_.config_env.empty() ? "" : absl::StrCat(" or ", program_.config_env),
      "). A flag beats the environment, the\n"
      "environment beats the file, the file beats the default. Durations take a unit\n"
      "(250ms, 30s, 2m, 1h, 1m30s); sizes are octets or take B, KiB, MiB, GiB, TiB.\n"
      "  --print-config  print the effective settings as a config file and exit\n"
      "  --help          this text\n\n");
  for (const Setting& setting : settings_) {
    if (setting.kind.type == Type::kRenamed) continue;
    absl::StrAppend(&out, "  --", setting.name, "=", Placeholder(setting.kind), "  ",
                    setting.help, "\n      default \"", setting.default_value, "\"");
    if (!setting.env.empty()) {
      absl::StrAppend(&out, ", environment ", setting.env);
    }
    if (setting.kind.type == Type::kInt || setting.kind.type == Type::kSize ||
        setting.kind.type == Type::kDuration) {
      absl::StrAppend(&out, "; ", Expected(setting.kind));
    }
    absl::StrAppend(&out, "\n");
  }
  std::vector<std::string> renamed;
  for (const Setting& setting : settings_) {
    if (setting.kind.type == Type::kRenamed) {
      renamed.push_back(absl::StrCat("--", setting.name, " is now --", setting.kind.renamed_to));
    }
  }
  if (!renamed.empty()) {
    absl::StrAppend(&out, "\nRenamed: ", absl::StrJoin(renamed, ", "), ".\n");
  }
  return out;
}

std::string Config::PrintConfig() const {
  std::string out = absl::StrCat(
      "# ", program_.name, " settings in effect, each with where its value came from\n",
      "# (default, file, env or flag). Usable as a config file: --config FILE.\n");
  if (!config_file_.empty()) {
    absl::StrAppend(&out, "# config file read: ", config_file_, "\n");
  }
  for (const Setting& setting : settings_) {
    if (setting.kind.type == Type::kRenamed) continue;
    auto it = values_.find(setting.name);
    if (it == values_.end()) continue;
    const Value& value = it->second;
    const bool quote = setting.kind.type == Type::kString;
    std::string origin(SourceName(value.source));
    if (value.source == Source::kEnv) absl::StrAppend(&origin, " ", setting.env);
    std::string text = value.text;
    bool hidden = false;
    if (setting.kind.redact && !text.empty()) {
      std::string shown = setting.kind.redact(text);
      hidden = shown != text;
      text = std::move(shown);
    }
    // A line that does not hold the real value is a comment, so the output stays a
    // config file that means what it says.
    absl::StrAppend(&out, hidden ? "# " : "", setting.name, " = ", quote ? Quote(text) : text,
                    "  # ", origin, hidden ? ", secret not shown" : "", "\n");
  }
  return out;
}

}  // namespace mailbox::config
