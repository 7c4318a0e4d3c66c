#include "gateway/net/log.h"

#include <unistd.h>

#include <string>
#include <utility>

namespace gateway::net {

void LogToStderr(std::string_view line) {
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer.append(line);
  buffer.push_back('\n');
  // Best effort: a log line that cannot be written has nowhere else to go.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, buffer.data(), buffer.size());
}

LogSink OrStderr(LogSink sink) {
  if (sink) {
    return sink;
  }
  return LogSink(&LogToStderr);
}

}  // namespace gateway::net
