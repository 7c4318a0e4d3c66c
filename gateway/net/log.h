// Where the network layer reports what it cannot return to a caller: failed accepts,
// sessions that ended with an exception, the drain deadline. Those diagnostics are
// free text (LogSink); by default they become "network" events of the process's
// structured logger (common/log/log.h), whose format --log-format chooses. Events
// operators alert on (refused connections, certificate reloads) are logged with
// their own names and fields where they happen.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "boost/asio/ip/tcp.hpp"

namespace gateway::net {

// Receives one human-readable line (no trailing newline). Called from worker threads
// and from whichever thread runs a reload, so it must be thread-safe.
using LogSink = std::function<void(std::string_view line)>;

// Logs `line` as a "network" event (level warning) of the process's logger: one
// JSON or text line on stderr, written with a single write(2).
void LogToStderr(std::string_view line);

// Returns `sink` if it is set, else LogToStderr.
LogSink OrStderr(LogSink sink);

// "192.0.2.7:51234", "[2001:db8::7]:51234": an endpoint as logs show it.
std::string EndpointText(const boost::asio::ip::tcp::endpoint& endpoint);

}  // namespace gateway::net
