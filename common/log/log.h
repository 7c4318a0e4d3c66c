// Structured event logs of the gateway and the mailbox service: one line per event
// on stderr, either a JSON object (for log shippers and alerting) or a line for
// people at a terminal:
//
//   {"ts":"2026-12-06T09:14:03.512Z","level":"warning","event":"login_failed",
//    "gateway_id":"gw-1","session":17,"client":"192.0.2.7:51234","listener":"imaps",
//    "user":"bob","mechanism":"PLAIN","reason":"bad_credentials"}
//   2026-12-06T09:14:03.512Z WARN login_failed gateway_id=gw-1 session=17 ...
//
// Event names are a closed set (docs/operations.md, "Logs"); call sites name them
// with the constants of events.h. Lines are built with Boost.JSON, never by hand, and
// every string is made safe first: invalid UTF-8 becomes U+FFFD, and client-supplied
// text is cut at a bound, so a hostile user name can neither break a line nor fill it.
//
// Each event name is rate limited: at most max_lines_per_second lines a second; the
// rest are counted and reported by one "log_suppressed" line once the second is over,
// so a flood (refused connections, failed handshakes) cannot fill the disk.
//
// Secrets never go in: callers pass no password, token or message data, and the
// logger has no field for them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mailbox::log {

enum class Level { kInfo, kWarning, kError };

enum class Format {
  kJson,  // one JSON object per line
  kText,  // timestamp, level, event and key=value fields
};

// One field's value: text, a number or a flag. Integers keep their sign (a port or a
// byte count is unsigned); text is copied. (A tagged struct rather than std::variant,
// whose copies g++ 12 warns about at -O2.)
class Value {
 public:
  enum class Kind { kText, kInt, kUint, kDouble, kBool };

  Value(const char* text) : text_(text) {}
  Value(std::string_view text) : text_(text) {}
  Value(const std::string& text) : text_(text) {}
  Value(std::string&& text) : text_(std::move(text)) {}
  Value(bool flag) : kind_(Kind::kBool), bool_(flag) {}
  Value(double number) : kind_(Kind::kDouble), double_(number) {}
  template <typename T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>)
  Value(T number) {
    if constexpr (std::is_signed_v<T>) {
      kind_ = Kind::kInt;
      int_ = static_cast<int64_t>(number);
    } else {
      kind_ = Kind::kUint;
      uint_ = static_cast<uint64_t>(number);
    }
  }

  Kind kind() const { return kind_; }
  const std::string& text() const { return text_; }
  int64_t int_value() const { return int_; }
  uint64_t uint_value() const { return uint_; }
  double double_value() const { return double_; }
  bool bool_value() const { return bool_; }

 private:
  Kind kind_ = Kind::kText;
  std::string text_;
  int64_t int_ = 0;
  uint64_t uint_ = 0;
  double double_ = 0;
  bool bool_ = false;
};

struct Field {
  std::string_view key;  // a constant of the call site, never client input
  Value value;
};

using Fields = std::vector<Field>;

// Longest string value written; longer ones are cut and end with "...".
inline constexpr size_t kMaxValueOctets = 512;
// Lines a second each event name may write before the rest are counted instead.
inline constexpr int kDefaultMaxLinesPerSecond = 100;

struct LoggerOptions {
  Format format = Format::kJson;
  // Fields every line carries after ts, level and event (the gateway's gateway_id,
  // the service's replica).
  std::vector<std::pair<std::string, std::string>> common_fields;
  // Lines a second per event name; 0: no limit.
  int max_lines_per_second = kDefaultMaxLinesPerSecond;
  // Receives each finished line (with its newline). Default: one write(2) to stderr,
  // so lines of different threads do not interleave.
  std::function<void(std::string_view line)> sink;
  // Default: the system clock (tests pass their own).
  std::function<std::chrono::system_clock::time_point()> clock;
};

class Logger {
 public:
  explicit Logger(LoggerOptions options);

  // Writes one line for `event`, unless its rate limit says to count it instead.
  // Thread-safe.
  void Log(Level level, std::string_view event, const Fields& fields);

  // Writes the "log_suppressed" lines of every event whose second has passed with
  // lines counted but not written. Log() does this too; a quiet process needs a
  // caller (StartFlushing).
  void FlushSuppressed();

  // Starts a thread that calls FlushSuppressed() once a second, for the life of the
  // process (the global logger is never destroyed).
  void StartFlushing();

  // The line Log() would write (no rate limit), for tests.
  std::string FormatLine(Level level, std::string_view event, const Fields& fields,
                         std::chrono::system_clock::time_point when) const;

  Format format() const { return options_.format; }

 private:
  struct Window {
    std::chrono::system_clock::time_point start;
    int written = 0;
    uint64_t suppressed = 0;
  };
  std::chrono::system_clock::time_point Now() const;
  // Under mutex_: the summary lines due at `now`, and the windows reset.
  void TakeDueSummaries(std::chrono::system_clock::time_point now,
                        std::vector<std::string>* lines);
  void Write(const std::string& line) const;

  const LoggerOptions options_;
  std::mutex mutex_;
  std::map<std::string, Window, std::less<>> windows_;
  // Windows with suppressed > 0: while none, a line need not look for summaries.
  size_t suppressing_ = 0;
  bool flushing_ = false;
};

// The process's logger: JSON to stderr until Configure() is called. Configure at
// start, before other threads log.
Logger& Global();
void Configure(LoggerOptions options);

inline void Info(std::string_view event, const Fields& fields = {}) {
  Global().Log(Level::kInfo, event, fields);
}
inline void Warning(std::string_view event, const Fields& fields = {}) {
  Global().Log(Level::kWarning, event, fields);
}
inline void Error(std::string_view event, const Fields& fields = {}) {
  Global().Log(Level::kError, event, fields);
}

// --log-format: "json", "text", or "auto" (text when `fd` is a terminal, else JSON).
absl::StatusOr<Format> ParseFormat(std::string_view text, int fd);

// `text` as valid UTF-8 (each invalid byte becomes U+FFFD), cut after about
// kMaxValueOctets octets at a character boundary. Exposed for tests.
std::string SafeText(std::string_view text);

// RFC 3339 UTC with milliseconds: 2026-12-06T09:14:03.512Z.
std::string Timestamp(std::chrono::system_clock::time_point when);

}  // namespace mailbox::log
