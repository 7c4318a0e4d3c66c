#include "common/log/log.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "common/log/events.h"

namespace mailbox::log {
namespace {

namespace json = boost::json;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at `text[i]` (RFC 3629 §4: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    return 1;
  }
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) low = 0xA0;
    if (b0 == 0xED) high = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) low = 0x90;
    if (b0 == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (i + length > text.size()) {
    return 0;
  }
  if (byte(i + 1) < low || byte(i + 1) > high) {
    return 0;
  }
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) {
      return 0;
    }
  }
  return length;
}

std::string_view LevelName(Level level, Format format) {
  switch (level) {
    case Level::kInfo:
      return format == Format::kJson ? "info" : "INFO";
    case Level::kWarning:
      return format == Format::kJson ? "warning" : "WARN";
    case Level::kError:
      return format == Format::kJson ? "error" : "ERROR";
  }
  return "info";
}

json::value ToJson(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kText:
      return json::string(SafeText(value.text()));
    case Value::Kind::kInt:
      return json::value(value.int_value());
    case Value::Kind::kUint:
      return json::value(value.uint_value());
    case Value::Kind::kDouble:
      return json::value(value.double_value());
    case Value::Kind::kBool:
      return json::value(value.bool_value());
  }
  return nullptr;
}

// A text-format value: bare when it is a plain word, else a JSON string literal (so
// quotes, spaces and control characters stay visible and cannot end the line).
std::string TextValue(const Value& value) {
  if (value.kind() == Value::Kind::kText) {
    std::string safe = SafeText(value.text());
    bool bare = !safe.empty();
    for (unsigned char c : safe) {
      if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
        bare = false;
        break;
      }
    }
    return bare ? safe : json::serialize(json::string(safe));
  }
  return json::serialize(ToJson(value));
}

void WriteToStderr(std::string_view line) {
  // Best effort: a log line that cannot be written has nowhere else to go.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

std::string SafeText(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxValueOctets) + 3);
  size_t i = 0;
  while (i < text.size()) {
    if (out.size() >= kMaxValueOctets) {
      out.append("...");
      break;
    }
    const size_t length = Utf8SequenceLength(text, i);
    if (length == 0) {
      out.append(kReplacement);
      ++i;
      continue;
    }
    const unsigned char b0 = static_cast<unsigned char>(text[i]);
    // DEL and the C1 controls (U+0080..U+009F) are valid but steer terminals.
    if (b0 == 0x7f || (b0 == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0)) {
      out.append(kReplacement);
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

std::string Timestamp(std::chrono::system_clock::time_point when) {
  const auto since_epoch = when.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const time_t t = static_cast<time_t>(seconds.count());
  struct tm utc;
  gmtime_r(&t, &utc);
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                utc.tm_sec, static_cast<int>(millis));
  return buffer;
}

absl::StatusOr<Format> ParseFormat(std::string_view text, int fd) {
  if (text == "json") {
    return Format::kJson;
  }
  if (text == "text") {
    return Format::kText;
  }
  if (text == "auto" || text.empty()) {
    return ::isatty(fd) == 1 ? Format::kText : Format::kJson;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--log-format must be auto, json or text, not \"", SafeText(text), "\""));
}

Logger::Logger(LoggerOptions options) : options_(std::move(options)) {}

std::chrono::system_clock::time_point Logger::Now() const {
  return options_.clock ? options_.clock() : std::chrono::system_clock::now();
}

void Logger::Write(const std::string& line) const {
  if (options_.sink) {
    options_.sink(line);
  } else {
    WriteToStderr(line);
  }
}

std::string Logger::FormatLine(Level level, std::string_view event, const Fields& fields,
                               std::chrono::system_clock::time_point when) const {
  std::string line;
  if (options_.format == Format::kJson) {
    json::object object;
    object["ts"] = Timestamp(when);
    object["level"] = LevelName(level, Format::kJson);
    object["event"] = SafeText(event);
    for (const auto& [key, value] : options_.common_fields) {
      if (!value.empty()) {
        object[SafeText(key)] = SafeText(value);
      }
    }
    for (const Field& field : fields) {
      object[SafeText(field.key)] = ToJson(field.value);
    }
    line = json::serialize(object);
  } else {
    line = Timestamp(when);
    line.push_back(' ');
    line.append(LevelName(level, Format::kText));
    line.push_back(' ');
    line.append(SafeText(event));
    for (const auto& [key, value] : options_.common_fields) {
      if (!value.empty()) {
        line.append(" ").append(SafeText(key)).append("=").append(TextValue(value));
      }
    }
    for (const Field& field : fields) {
      line.append(" ").append(SafeText(field.key)).append("=").append(TextValue(field.value));
    }
  }
  line.push_back('\n');
  return line;
}

void Logger::TakeDueSummaries(std::chrono::system_clock::time_point now,
                              std::vector<std::string>* lines) {
  for (auto& [event, window] : windows_) {
    if (window.suppressed > 0 && now - window.start >= std::chrono::seconds(1)) {
      lines->push_back(FormatLine(
          Level::kWarning, ::mailbox::log::event::kLogSuppressed,
          {{"suppressed_event", event},
           {"suppressed", window.suppressed},
           {"limit_per_second", options_.max_lines_per_second}},
          now));
      window.suppressed = 0;
      --suppressing_;
    }
  }
}

void Logger::Log(Level level, std::string_view event, const Fields& fields) {
  const auto now = Now();
  std::vector<std::string> summaries;
  bool write = true;
  if (options_.max_lines_per_second > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (suppressing_ > 0) {
      TakeDueSummaries(now, &summaries);
    }
    auto it = windows_.find(event);
    if (it == windows_.end()) {
      it = windows_.emplace(std::string(event), Window{now, 0, 0}).first;
    }
    Window& window = it->second;
    if (now - window.start >= std::chrono::seconds(1)) {
      window.start = now;
      window.written = 0;
    }
    if (window.written >= options_.max_lines_per_second) {
      if (window.suppressed++ == 0) {
        ++suppressing_;
      }
      write = false;
    } else {
      ++window.written;
    }
  }
  for (const std::string& summary : summaries) {
    Write(summary);
  }
  if (write) {
    Write(FormatLine(level, event, fields, now));
  }
}

void Logger::FlushSuppressed() {
  std::vector<std::string> summaries;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    TakeDueSummaries(Now(), &summaries);
  }
  for (const std::string& summary : summaries) {
    Write(summary);
  }
}

void Logger::StartFlushing() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (flushing_) {
      return;
    }
    flushing_ = true;
  }
  std::thread([this] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      FlushSuppressed();
    }
  }).detach();
}

namespace {
std::atomic<Logger*> global_logger{nullptr};
}  // namespace

Logger& Global() {
  Logger* logger = global_logger.load(std::memory_order_acquire);
  if (logger == nullptr) {
    // Before Configure(): JSON to stderr. Never destroyed (threads may log until
    // the process ends).
    static Logger* fallback = new Logger(LoggerOptions{});
    return *fallback;
  }
  return *logger;
}

void Configure(LoggerOptions options) {
  // The previous logger is left in place for threads that still hold it.
  global_logger.store(new Logger(std::move(options)), std::memory_order_release);
}

}  // namespace mailbox::log
