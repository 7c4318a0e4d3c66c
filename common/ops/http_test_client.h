// For tests of operator endpoints: one blocking HTTP/1.1 request on loopback.
#pragma once

#include <cstdint>
#include <string>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/write.hpp"

namespace mailbox::ops::testing {

// Sends `method path` to 127.0.0.1:`port` and returns the whole response (the
// endpoint closes the connection after it).
inline std::string HttpExchange(boost::asio::io_context& io, uint16_t port,
                                const std::string& method, const std::string& path) {
  namespace asio = boost::asio;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string request =
      method + " " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  std::string response;
  boost::system::error_code ec;
  char buffer[4096];
  while (true) {
    size_t n = socket.read_some(asio::buffer(buffer), ec);
    if (ec) {
      break;
    }
    response.append(buffer, n);
  }
  return response;
}

}  // namespace mailbox::ops::testing
