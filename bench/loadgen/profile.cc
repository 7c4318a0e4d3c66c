#include "bench/loadgen/profile.h"

#include <array>
#include <cctype>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bench::loadgen {
namespace {

constexpr std::array<std::string_view, kStepKindCount> kNames = {
    "login", "list",   "status", "select", "fetch", "fetch2", "store",
    "delete", "expunge", "append", "search", "sort",  "thread", "idle",  "noop",   "logout"};

std::optional<StepKind> KindFromName(std::string_view name) {
  for (int i = 0; i < kStepKindCount; ++i) {
    if (kNames[i] == name) {
      return static_cast<StepKind>(i);
    }
  }
  return std::nullopt;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::string Quote(std::string_view s) { return absl::StrCat("\"", std::string(s), "\""); }

absl::Status LineError(int line, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", std::string(message)));
}

// Splits a step line into words. Double quotes group a value; inside them only \" and
// \\ are escapes, so IMAP flags such as \Seen need no doubling. An unquoted ';'
// becomes its own word (it separates steps of one mix group). '#' starts a comment.
absl::StatusOr<std::vector<std::string>> Tokenize(std::string_view line, int line_no) {
  std::vector<std::string> words;
  std::string current;
  bool in_word = false;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
        current.push_back(line[++i]);
      } else if (c == '"') {
        quoted = false;
      } else {
        current.push_back(c);
      }
      continue;
    }
    if (c == '#') {
      break;
    }
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      if (in_word) {
        words.push_back(std::move(current));
        current.clear();
        in_word = false;
      }
      if (c == ';') {
        words.emplace_back(";");
      }
      continue;
    }
    in_word = true;
    if (c == '"') {
      quoted = true;
    } else {
      current.push_back(c);
    }
  }
  if (quoted) {
    return LineError(line_no, "unterminated quoted value");
  }
  if (in_word) {
    words.push_back(std::move(current));
  }
  return words;
}

std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < 0) {
    return std::nullopt;
  }
  return value;
}

// "4096", "4k", "1m" (binary multiples).
std::optional<int64_t> ParseSize(std::string_view text) {
  int64_t multiplier = 1;
  if (!text.empty() && (text.back() == 'k' || text.back() == 'K')) {
    multiplier = 1024;
    text.remove_suffix(1);
  } else if (!text.empty() && (text.back() == 'm' || text.back() == 'M')) {
    multiplier = 1024 * 1024;
    text.remove_suffix(1);
  }
  std::optional<int64_t> value = ParseInt(text);
  if (!value || *value > (int64_t{1} << 40) / multiplier) {
    return std::nullopt;
  }
  return *value * multiplier;
}

absl::StatusOr<MessageSet> ParseMessageSet(std::string_view text) {
  MessageSet set;
  if (text == "all") {
    set.mode = MessageSet::Mode::kAll;
    return set;
  }
  const size_t colon = text.find(':');
  std::string_view mode = text.substr(0, colon);
  if (colon == std::string_view::npos || (mode != "newest" && mode != "random")) {
    return absl::InvalidArgumentError(
        absl::StrCat("set ", Quote(text), " is not all, newest:N or random:N"));
  }
  std::optional<int64_t> count = ParseInt(text.substr(colon + 1));
  if (!count || *count < 1 || *count > 1'000'000) {
    return absl::InvalidArgumentError(
        absl::StrCat("set ", Quote(text), ": N must be a number from 1 to 1000000"));
  }
  set.mode = mode == "newest" ? MessageSet::Mode::kNewest : MessageSet::Mode::kRandom;
  set.count = static_cast<int>(*count);
  return set;
}

// Keys each step kind accepts; anything else is an error so typos are caught.
bool Accepts(StepKind kind, std::string_view key) {
  switch (kind) {
    case StepKind::kList:
      return key == "pattern";
    case StepKind::kStatus:
      return key == "mailbox" || key == "items";
    case StepKind::kSelect:
      return key == "mailbox";
    case StepKind::kFetch:
    case StepKind::kFetch2:
      return key == "items" || key == "set" || key == "uid";
    case StepKind::kStore:
      return key == "flags" || key == "set" || key == "uid";
    case StepKind::kDelete:
      return key == "set" || key == "uid";
    case StepKind::kAppend:
      return key == "mailbox" || key == "size";
    case StepKind::kSearch:
      return key == "criteria" || key == "uid";
    case StepKind::kSort:
      return key == "program" || key == "criteria" || key == "uid";
    case StepKind::kThread:
      return key == "algorithm" || key == "criteria" || key == "uid";
    case StepKind::kIdle:
      return key == "duration";
    default:
      return false;
  }
}

// Values that go into a command line verbatim must not break the line.
bool SafeForCommandLine(std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<Step> ParseStep(const std::vector<std::string>& words, size_t begin, size_t end,
                               int line_no) {
  if (begin >= end) {
    return LineError(line_no, "empty step");
  }
  std::optional<StepKind> kind = KindFromName(words[begin]);
  if (!kind) {
    return LineError(line_no, absl::StrCat("unknown step ", Quote(words[begin]),
                                           " (known: login list status select fetch fetch2 "
                                           "store delete expunge append search sort thread idle noop "
                                           "logout)"));
  }
  Step step;
  step.kind = *kind;
  // Defaults per kind; chosen to resemble what real clients send.
  switch (step.kind) {
    case StepKind::kList:
      step.pattern = "*";
      break;
    case StepKind::kStatus:
      step.items = "(MESSAGES RECENT UIDNEXT UNSEEN)";
      break;
    case StepKind::kFetch:
      step.items = "(UID FLAGS)";
      break;
    case StepKind::kFetch2:
      step.items = "(UID RFC822.SIZE BODY.PEEK[])";
      step.set.mode = MessageSet::Mode::kRandom;
      break;
    case StepKind::kStore:
      step.flags = "+FLAGS (\\Seen)";
      step.set.mode = MessageSet::Mode::kRandom;
      break;
    case StepKind::kDelete:
      step.set.mode = MessageSet::Mode::kRandom;
      break;
    case StepKind::kSearch:
      step.criteria = "UNSEEN";
      break;
    case StepKind::kSort:
      step.program = "(REVERSE ARRIVAL)";
      step.criteria = "ALL";
      break;
    case StepKind::kThread:
      step.program = "REFERENCES";
      step.criteria = "ALL";
      break;
    default:
      break;
  }
  for (size_t i = begin + 1; i < end; ++i) {
    const std::string& word = words[i];
    const size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      return LineError(line_no, absl::StrCat(std::string(kNames[static_cast<int>(step.kind)]),
                                             ": expected key=value, got ", Quote(word)));
    }
    const std::string_view key(word.data(), eq);
    const std::string_view value = std::string_view(word).substr(eq + 1);
    if (!Accepts(step.kind, key)) {
      return LineError(line_no, absl::StrCat(std::string(kNames[static_cast<int>(step.kind)]),
                                             " takes no option ", Quote(key)));
    }
    if (!SafeForCommandLine(value)) {
      return LineError(line_no, absl::StrCat(std::string(key), " contains a line break"));
    }
    if (key == "mailbox") {
      if (value.empty()) {
        return LineError(line_no, "mailbox must not be empty");
      }
      step.mailbox = std::string(value);
    } else if (key == "items") {
      step.items = std::string(value);
    } else if (key == "flags") {
      step.flags = std::string(value);
    } else if (key == "criteria") {
      step.criteria = std::string(value);
    } else if (key == "program" || key == "algorithm") {
      if (value.empty()) {
        return LineError(line_no, absl::StrCat(std::string(key), " must not be empty"));
      }
      step.program = std::string(value);
    } else if (key == "pattern") {
      step.pattern = std::string(value);
    } else if (key == "set") {
      absl::StatusOr<MessageSet> set = ParseMessageSet(value);
      if (!set.ok()) {
        return LineError(line_no, std::string(set.status().message()));
      }
      step.set = *set;
    } else if (key == "uid") {
      if (value != "yes" && value != "no") {
        return LineError(line_no, "uid must be yes or no");
      }
      step.uid = value == "yes";
    } else if (key == "size") {
      std::optional<int64_t> size = ParseSize(value);
      if (!size || *size < 1) {
        return LineError(line_no, absl::StrCat("size ", Quote(value),
                                               " is not a positive size (e.g. 4096, 64k, 1m)"));
      }
      step.size = *size;
    } else if (key == "duration") {
      absl::StatusOr<std::chrono::microseconds> duration = ParseDuration(value);
      if (!duration.ok()) {
        return LineError(line_no, std::string(duration.status().message()));
      }
      step.duration = *duration;
    }
  }
  if (step.items.empty() && (step.kind == StepKind::kFetch || step.kind == StepKind::kFetch2 ||
                             step.kind == StepKind::kStatus)) {
    return LineError(line_no, "items must not be empty");
  }
  return step;
}

// Splits words[begin, end) at ";" into steps.
absl::StatusOr<std::vector<Step>> ParseSteps(const std::vector<std::string>& words, size_t begin,
                                             int line_no) {
  std::vector<Step> steps;
  size_t start = begin;
  for (size_t i = begin; i <= words.size(); ++i) {
    if (i == words.size() || words[i] == ";") {
      absl::StatusOr<Step> step = ParseStep(words, start, i, line_no);
      if (!step.ok()) {
        return step.status();
      }
      steps.push_back(*std::move(step));
      start = i + 1;
    }
  }
  return steps;
}

absl::StatusOr<ThinkTime> ParseThink(std::string_view text) {
  ThinkTime think;
  const size_t dots = text.find("..");
  absl::StatusOr<std::chrono::microseconds> low = ParseDuration(text.substr(0, dots));
  if (!low.ok()) {
    return low.status();
  }
  think.min = think.max = *low;
  if (dots != std::string_view::npos) {
    absl::StatusOr<std::chrono::microseconds> high = ParseDuration(text.substr(dots + 2));
    if (!high.ok()) {
      return high.status();
    }
    think.max = *high;
  }
  if (think.max < think.min) {
    return absl::InvalidArgumentError(absl::StrCat("think range ", Quote(text), " is reversed"));
  }
  return think;
}

void FillMailbox(std::vector<Step>& steps, const std::string& mailbox) {
  for (Step& step : steps) {
    if (step.mailbox.empty()) {
      step.mailbox = mailbox;
    }
  }
}

}  // namespace

std::string_view StepKindName(StepKind kind) { return kNames[static_cast<int>(kind)]; }

absl::StatusOr<std::chrono::microseconds> ParseDuration(std::string_view text) {
  text = Trim(text);
  int64_t scale = 0;
  std::string_view number = text;
  if (text.size() > 2 && text.substr(text.size() - 2) == "ms") {
    scale = 1000;
    number.remove_suffix(2);
  } else if (text.size() > 2 && text.substr(text.size() - 2) == "us") {
    scale = 1;
    number.remove_suffix(2);
  } else if (text.size() > 1 && text.back() == 's') {
    scale = 1'000'000;
    number.remove_suffix(1);
  } else if (text.size() > 1 && text.back() == 'm') {
    scale = 60'000'000;
    number.remove_suffix(1);
  } else if (text == "0") {
    return std::chrono::microseconds(0);
  }
  std::optional<int64_t> value = ParseInt(number);
  // A day is far beyond any sensible think or IDLE time, and keeps arithmetic safe.
  if (scale == 0 || !value || *value > 86'400'000'000 / scale) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration ", Quote(text), " is not like 250ms, 2s or 1m"));
  }
  return std::chrono::microseconds(*value * scale);
}

absl::StatusOr<Profile> ParseProfile(std::string_view text) {
  enum class Section { kNone, kClient, kConnect, kMix, kDisconnect };
  Profile profile;
  Section section = Section::kNone;
  int line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    std::string_view trimmed = Trim(line);
    if (trimmed.empty() || trimmed.front() == '#') {
      continue;
    }
    if (trimmed.front() == '[') {
      if (trimmed == "[client]") {
        section = Section::kClient;
      } else if (trimmed == "[connect]") {
        section = Section::kConnect;
      } else if (trimmed == "[mix]") {
        section = Section::kMix;
      } else if (trimmed == "[disconnect]") {
        section = Section::kDisconnect;
      } else {
        return LineError(line_no, absl::StrCat("unknown section ", Quote(trimmed),
                                               " (known: [client] [connect] [mix] "
                                               "[disconnect])"));
      }
      continue;
    }
    if (section == Section::kNone) {
      return LineError(line_no, "text before the first section");
    }
    if (section == Section::kClient) {
      const size_t eq = trimmed.find('=');
      if (eq == std::string_view::npos) {
        return LineError(line_no, "expected key = value in [client]");
      }
      const std::string_view key = Trim(trimmed.substr(0, eq));
      std::string_view value = trimmed.substr(eq + 1);
      if (const size_t hash = value.find('#'); hash != std::string_view::npos) {
        value = value.substr(0, hash);
      }
      value = Trim(value);
      if (key == "name") {
        profile.name = std::string(value);
      } else if (key == "mailbox") {
        if (value.empty() || !SafeForCommandLine(value)) {
          return LineError(line_no, "mailbox must not be empty");
        }
        profile.mailbox = std::string(value);
      } else if (key == "think") {
        absl::StatusOr<ThinkTime> think = ParseThink(value);
        if (!think.ok()) {
          return LineError(line_no, std::string(think.status().message()));
        }
        profile.think = *think;
      } else if (key == "groups_per_session") {
        std::optional<int64_t> n = ParseInt(value);
        if (!n || *n > 1'000'000'000) {
          return LineError(line_no, "groups_per_session must be a number >= 0");
        }
        profile.groups_per_session = static_cast<int>(*n);
      } else {
        return LineError(line_no, absl::StrCat("unknown key ", Quote(key),
                                               " in [client] (known: name mailbox think "
                                               "groups_per_session)"));
      }
      continue;
    }
    absl::StatusOr<std::vector<std::string>> words = Tokenize(trimmed, line_no);
    if (!words.ok()) {
      return words.status();
    }
    if (words->empty()) {
      continue;
    }
    if (section == Section::kMix) {
      std::optional<int64_t> weight = ParseInt((*words)[0]);
      if (!weight || *weight < 1 || *weight > 1'000'000) {
        return LineError(line_no, absl::StrCat("a [mix] line starts with a weight from 1 to "
                                               "1000000, got ",
                                               Quote((*words)[0])));
      }
      absl::StatusOr<std::vector<Step>> steps = ParseSteps(*words, 1, line_no);
      if (!steps.ok()) {
        return steps.status();
      }
      profile.total_weight += static_cast<int>(*weight);
      if (profile.total_weight > 1'000'000'000) {
        return LineError(line_no, "weights add up to more than 1000000000");
      }
      profile.mix.push_back(MixEntry{static_cast<int>(*weight), *std::move(steps)});
      continue;
    }
    absl::StatusOr<std::vector<Step>> steps = ParseSteps(*words, 0, line_no);
    if (!steps.ok()) {
      return steps.status();
    }
    std::vector<Step>& target = section == Section::kConnect ? profile.connect
                                                             : profile.disconnect;
    for (Step& step : *steps) {
      target.push_back(std::move(step));
    }
  }
  if (profile.name.empty()) {
    return absl::InvalidArgumentError("the profile has no name (set name = ... in [client])");
  }
  if (profile.mix.empty() && profile.connect.empty()) {
    return absl::InvalidArgumentError("the profile has no steps ([connect] and [mix] empty)");
  }
  FillMailbox(profile.connect, profile.mailbox);
  FillMailbox(profile.disconnect, profile.mailbox);
  for (MixEntry& entry : profile.mix) {
    FillMailbox(entry.steps, profile.mailbox);
  }
  return profile;
}

absl::StatusOr<Profile> LoadProfile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open profile"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<Profile> profile = ParseProfile(buffer.str());
  if (!profile.ok()) {
    return absl::Status(profile.status().code(),
                        absl::StrCat(path, ": ", std::string(profile.status().message())));
  }
  return profile;
}

const MixEntry& PickMixEntry(const Profile& profile, int roll) {
  for (const MixEntry& entry : profile.mix) {
    if (roll < entry.weight) {
      return entry;
    }
    roll -= entry.weight;
  }
  return profile.mix.back();
}

}  // namespace bench::loadgen
