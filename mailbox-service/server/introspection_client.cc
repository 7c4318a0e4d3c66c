#include "mailbox-service/server/introspection_client.h"

#include <openssl/ssl.h>

#include <memory>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mailbox::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Url {
  std::string host;
  std::string port = "443";
  std::string target = "/";
};

absl::StatusOr<Url> ParseHttpsUrl(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return absl::InvalidArgumentError("the introspection URL must be https://host[:port]/path");
  }
  url.remove_prefix(kScheme.size());
  const size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  Url out;
  if (slash != std::string_view::npos) {
    out.target = std::string(url.substr(slash));
  }
  if (!authority.empty() && authority.front() == '[') {  // an IPv6 literal
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("the introspection URL has an unclosed [");
    }
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') {
      return absl::InvalidArgumentError("the introspection URL's host is malformed");
    }
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    authority.remove_prefix(colon == std::string_view::npos ? authority.size() : colon);
  }
  if (!authority.empty()) {
    int port = 0;
    std::string text(authority.substr(1));
    if (!absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError("the introspection URL's port is not a port");
    }
    out.port = text;
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError("the introspection URL has no host");
  }
  return out;
}

struct Exchange {
  Url url;
  std::string authorization;
  std::string body;
  size_t max_response_octets = 0;
  std::chrono::milliseconds timeout{0};
  // Results.
  bool done = false;
  absl::Status status = absl::UnavailableError("the introspection endpoint did not answer");
  std::string response;
};

asio::awaitable<void> RunExchange(asio::ssl::context& tls, Exchange& exchange) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  beast::ssl_stream<beast::tcp_stream> stream(executor, tls);
  beast::get_lowest_layer(stream).expires_after(exchange.timeout);
  if (SSL_set_tlsext_host_name(stream.native_handle(), exchange.url.host.c_str()) != 1) {
    exchange.status = absl::UnavailableError("cannot set the TLS server name");
    co_return;
  }
  stream.set_verify_callback(asio::ssl::host_name_verification(exchange.url.host));
  auto endpoints =
      co_await resolver.async_resolve(exchange.url.host, exchange.url.port, asio::use_awaitable);
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
  co_await stream.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
  http::request<http::string_body> request(http::verb::post, exchange.url.target, 11);
  request.set(http::field::host, exchange.url.host);
  request.set(http::field::accept, "application/json");
  request.set(http::field::content_type, "application/x-www-form-urlencoded");
  request.set(http::field::authorization, exchange.authorization);
  request.body() = exchange.body;
  request.prepare_payload();
  co_await http::async_write(stream, request, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(exchange.max_response_octets);
  co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  const auto& response = parser.get();
  if (response.result() != http::status::ok) {
    exchange.status = absl::UnavailableError(
        absl::StrCat("the introspection endpoint answered HTTP ", response.result_int()));
  } else {
    exchange.response = response.body();
    exchange.status = absl::OkStatus();
  }
  exchange.done = true;
}

absl::StatusOr<std::string> HttpsPost(const IntrospectionOptions& options, const Url& url,
                                      const std::string& body) {
  asio::ssl::context tls(asio::ssl::context::tls_client);
  boost::system::error_code error;
  if (options.ca_file.empty()) {
    tls.set_default_verify_paths(error);
  } else {
    tls.load_verify_file(options.ca_file, error);
  }
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("introspection: cannot load the CA certificates: ", error.message()));
  }
  tls.set_verify_mode(asio::ssl::verify_peer);
  Exchange exchange;
  exchange.url = url;
  exchange.authorization =
      absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(
                                 FormEncode(options.client_id), ":",
                                 FormEncode(options.client_secret))));
  exchange.body = body;
  exchange.max_response_octets = options.max_response_octets;
  exchange.timeout = options.timeout;
  asio::io_context io;
  asio::co_spawn(io, RunExchange(tls, exchange), [&exchange](std::exception_ptr failure) {
    if (failure == nullptr) {
      return;
    }
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      exchange.status =
          absl::UnavailableError(absl::StrCat("the introspection request failed: ", e.what()));
    }
    exchange.done = true;
  });
  // The stream's own expiry bounds each step; this bounds them all together.
  io.run_for(options.timeout);
  if (!exchange.done) {
    return absl::UnavailableError("the introspection endpoint did not answer in time");
  }
  if (!exchange.status.ok()) {
    return exchange.status;
  }
  return std::move(exchange.response);
}

}  // namespace

absl::StatusOr<IntrospectionPost> MakeHttpsIntrospectionPost(const IntrospectionOptions& options) {
  auto url = ParseHttpsUrl(options.url);
  if (!url.ok()) {
    return url.status();
  }
  return IntrospectionPost([options, url = *url](const std::string& body) {
    return HttpsPost(options, url, body);
  });
}

}  // namespace mailbox::server
