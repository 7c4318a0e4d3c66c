// Client profiles for the load generator: what one simulated IMAP client does.
//
// A profile is a text file (format in bench/loadgen/PROFILES.md): steps run once after
// connecting, a weighted mix of step groups drawn at random between think times, and
// steps run before disconnecting. This header is the parsed form plus its parser; it
// does no I/O besides LoadProfile reading the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bench::loadgen {

enum class StepKind {
  kLogin,
  kList,
  kStatus,
  kSelect,
  kFetch,
  kFetch2,
  kStore,
  kDelete,
  kExpunge,
  kAppend,
  kSearch,
  kSort,
  kThread,
  kIdle,
  kNoop,
  kLogout,
};
inline constexpr int kStepKindCount = static_cast<int>(StepKind::kLogout) + 1;

// Lower-case name as written in profiles and reports ("fetch2", "idle", ...).
std::string_view StepKindName(StepKind kind);

// Which messages a FETCH/STORE/DELETE step addresses, resolved against the mailbox
// size the client last saw (EXISTS).
struct MessageSet {
  enum class Mode { kAll, kNewest, kRandom };
  Mode mode = Mode::kAll;
  int count = 1;  // for kNewest and kRandom
};

struct Step {
  StepKind kind = StepKind::kNoop;
  std::string mailbox;   // select, status, append; defaults to the profile's mailbox
  std::string items;     // fetch/fetch2/status data items, with parentheses
  std::string flags;     // store: e.g. "+FLAGS (\Seen)"
  std::string criteria;  // search, sort, thread
  std::string program;   // sort: the sort criteria, with parentheses; thread: the algorithm
  std::string pattern;   // list
  MessageSet set;
  bool uid = false;                   // fetch/store/search as UID commands
  int64_t size = 4096;                // append: message size in octets
  std::chrono::microseconds duration{30'000'000};  // idle
};

// A weighted group of steps in the mix: chosen with probability weight/total, then
// its steps run back to back (e.g. "idle; fetch" models a client waking up).
struct MixEntry {
  int weight = 1;
  std::vector<Step> steps;
};

// Uniform think time in [min, max] between mix groups.
struct ThinkTime {
  std::chrono::microseconds min{0};
  std::chrono::microseconds max{0};
};

struct Profile {
  std::string name;
  std::string mailbox = "INBOX";
  ThinkTime think;
  // Mix groups per connection before the disconnect steps run and the client
  // reconnects; 0 keeps the connection for the whole run.
  int groups_per_session = 0;
  std::vector<Step> connect;
  std::vector<MixEntry> mix;
  std::vector<Step> disconnect;
  int total_weight = 0;
};

// Parses profile text. Errors name the line: "line 7: unknown step \"fecth\"".
absl::StatusOr<Profile> ParseProfile(std::string_view text);

// Reads and parses a file; errors are prefixed with its path.
absl::StatusOr<Profile> LoadProfile(const std::string& path);

// The mix entry for a uniform random number in [0, total_weight).
const MixEntry& PickMixEntry(const Profile& profile, int roll);

// "250ms", "2s", "1m", "0" → microseconds.
absl::StatusOr<std::chrono::microseconds> ParseDuration(std::string_view text);

}  // namespace bench::loadgen
