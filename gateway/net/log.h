// Where the network layer reports what it cannot return to a caller: failed accepts,
// sessions that ended with an exception, certificate reloads. The gateway plugs its
// structured logger in here; the default writes one line to stderr.
#pragma once

#include <functional>
#include <string_view>

namespace gateway::net {

// Receives one human-readable line (no trailing newline). Called from worker threads
// and from whichever thread runs a reload, so it must be thread-safe.
using LogSink = std::function<void(std::string_view line)>;

// Writes `line` plus a newline to stderr with a single write(2), so lines from
// different threads do not interleave.
void LogToStderr(std::string_view line);

// Returns `sink` if it is set, else LogToStderr.
LogSink OrStderr(LogSink sink);

}  // namespace gateway::net
