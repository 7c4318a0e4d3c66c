#include "gateway/net/log.h"

#include <utility>

#include "common/log/events.h"
#include "common/log/log.h"

namespace gateway::net {

void LogToStderr(std::string_view line) {
  mailbox::log::Warning(mailbox::log::event::kNetwork, {{"message", line}});
}

LogSink OrStderr(LogSink sink) {
  if (sink) {
    return sink;
  }
  return LogSink(&LogToStderr);
}

std::string EndpointText(const boost::asio::ip::tcp::endpoint& endpoint) {
  const boost::asio::ip::address address = endpoint.address();
  // RFC 3986 §3.2.2: an IPv6 literal goes in brackets before a port.
  std::string text = address.is_v6() && !address.to_v6().is_v4_mapped()
                         ? "[" + address.to_string() + "]"
                         : address.is_v6() ? address.to_v6().to_v4().to_string()
                                           : address.to_string();
  text.push_back(':');
  text.append(std::to_string(endpoint.port()));
  return text;
}

}  // namespace gateway::net
