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
  namespace ip = boost::asio::ip;
  const ip::address address = endpoint.address();
  std::string text;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    // A dual-stack listener's IPv4 client (::ffff:192.0.2.7) as the address it is.
    text = ip::make_address_v4(ip::v4_mapped, address.to_v6()).to_string();
  } else if (address.is_v6()) {
    // RFC 3986 §3.2.2: an IPv6 literal goes in brackets before a port.
    text = "[" + address.to_string() + "]";
  } else {
    text = address.to_string();
  }
  text.push_back(':');
  text.append(std::to_string(endpoint.port()));
  return text;
}

}  // namespace gateway::net
