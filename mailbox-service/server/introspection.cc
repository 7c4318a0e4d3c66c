#include "mailbox-service/server/introspection.h"

#include <openssl/sha.h>
#include <openssl/ssl.h>

#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mailbox::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

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

// application/x-www-form-urlencoded (HTML's URL-encoded form serialization), as
// RFC 6749 Appendix B uses for client credentials and RFC 7662 §2.1 for the body.
std::string FormEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '*') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
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

std::string Sha256(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

std::optional<int64_t> NumberMember(const json::object& object, std::string_view name) {
  const json::value* value = object.if_contains(name);
  if (value == nullptr) return std::nullopt;
  if (const int64_t* n = value->if_int64()) return *n;
  if (const uint64_t* n = value->if_uint64()) {
    return *n > (uint64_t{1} << 40) ? std::nullopt : std::optional<int64_t>(*n);
  }
  if (const double* n = value->if_double(); n != nullptr && std::isfinite(*n)) {
    return static_cast<int64_t>(std::floor(*n));
  }
  return std::nullopt;
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

TokenIntrospector::TokenIntrospector(IntrospectionOptions options, IntrospectionClaims claims,
                                     IntrospectionPost post)
    : options_(std::move(options)), claims_(std::move(claims)), post_(std::move(post)) {}

size_t TokenIntrospector::cached() const {
  absl::MutexLock lock(&mutex_);
  return cache_.size();
}

absl::StatusOr<std::string> TokenIntrospector::Introspect(std::string_view token,
                                                          int64_t now_unix) {
  const std::string key = Sha256(token);
  {
    absl::MutexLock lock(&mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      if (it->second.until_unix > now_unix) {
        return it->second.user;
      }
      cache_.erase(it);
    }
  }
  int64_t exp = 0;
  auto user = Ask(token, now_unix, &exp);
  if (!user.ok()) {
    return user;
  }
  const int64_t until = std::min(exp, now_unix + options_.max_cache_seconds);
  if (options_.max_cache_entries > 0 && until > now_unix) {
    absl::MutexLock lock(&mutex_);
    if (cache_.size() >= options_.max_cache_entries) {
      // Full: expired answers go first; if none has, this one is not kept.
      absl::erase_if(cache_, [now_unix](const auto& entry) {
        return entry.second.until_unix <= now_unix;
      });
    }
    if (cache_.size() < options_.max_cache_entries) {
      cache_[key] = Entry{*user, until};
    }
  }
  return user;
}

absl::StatusOr<std::string> TokenIntrospector::Ask(std::string_view token, int64_t now_unix,
                                                   int64_t* exp) {
  // RFC 7662 §2.1.
  auto body = post_(absl::StrCat("token=", FormEncode(token), "&token_type_hint=access_token"));
  if (!body.ok()) {
    return absl::UnavailableError(body.status().message());
  }
  json::parse_options parse;
  parse.max_depth = static_cast<std::size_t>(options_.max_json_depth);
  std::error_code error;
  json::value value =
      json::parse(json::string_view(body->data(), body->size()), error, json::storage_ptr(), parse);
  const json::object* answer = error ? nullptr : value.if_object();
  if (answer == nullptr) {
    return absl::UnavailableError("the introspection endpoint's answer is not a JSON object");
  }
  // RFC 7662 §2.2: "active" is required; everything else is optional.
  const json::value* active = answer->if_contains("active");
  if (active == nullptr || !active->is_bool() || !active->get_bool()) {
    return absl::InvalidArgumentError("the introspection endpoint says the token is not active");
  }
  const int64_t skew = claims_.clock_skew_s;
  std::optional<int64_t> expiry = NumberMember(*answer, "exp");
  if (answer->contains("exp") && !expiry.has_value()) {
    return absl::InvalidArgumentError("introspection: exp is not a NumericDate");
  }
  if (expiry.has_value() && now_unix - skew >= *expiry) {
    return absl::InvalidArgumentError("introspection: the token has expired");
  }
  *exp = expiry.value_or(now_unix + options_.max_cache_seconds);
  if (std::optional<int64_t> nbf = NumberMember(*answer, "nbf");
      nbf.has_value() && now_unix + skew < *nbf) {
    return absl::InvalidArgumentError("introspection: the token is not valid yet (nbf)");
  }
  if (const json::value* iss = answer->if_contains("iss"); iss != nullptr) {
    const json::string* text = iss->if_string();
    if (text == nullptr || *text != claims_.issuer) {
      return absl::InvalidArgumentError("introspection: wrong issuer");
    }
  }
  if (const json::value* aud = answer->if_contains("aud"); aud != nullptr) {
    bool found = false;
    if (const json::string* one = aud->if_string(); one != nullptr) {
      found = *one == claims_.audience;
    } else if (const json::array* many = aud->if_array(); many != nullptr) {
      for (const json::value& entry : *many) {
        const json::string* text = entry.if_string();
        found = found || (text != nullptr && *text == claims_.audience);
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(
          "introspection: the token is not meant for this service (aud)");
    }
  }
  const json::value* user = answer->if_contains(claims_.user_claim);
  const json::string* name = user == nullptr ? nullptr : user->if_string();
  if (name == nullptr || name->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("introspection: the answer has no string \"", claims_.user_claim, "\""));
  }
  return std::string(name->data(), name->size());
}

}  // namespace mailbox::server
