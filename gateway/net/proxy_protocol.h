// The PROXY protocol header (versions 1 and 2) that load balancers such as HAProxy,
// an AWS Network Load Balancer or a Kubernetes ingress put in front of a TCP stream to
// tell the server who the client is (HAProxy's "The PROXY protocol" specification,
// revision 2020/03/05; sections cited as "PROXY §2.1" etc.).
//
// Pure code: no Asio, no sockets, standard library and inet_pton/inet_ntop only, so
// that the libFuzzer target (fuzz/proxy_protocol_fuzzer.cc) builds it with clang alone.
//
// The parser looks at the bytes received so far and says whether they are a complete
// header (and how long it is, so that the caller consumes exactly that much and leaves
// what follows — a TLS ClientHello or an IMAP greeting's answer — in the socket), need
// more bytes, or can never become a valid header. It is meant to be called again on the
// whole prefix each time more bytes arrive; it never reads past `max_length`.
//
// Which peers may send a header at all is the caller's decision (TrustedNetworks
// below): a header from anyone else must never be honoured (PROXY §2, "the receiver
// MUST be configured to only receive the protocol ... from trusted sources").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::net::proxy {

// The v2 signature (PROXY §2.2): 12 bytes that cannot start an IMAP command or a TLS
// record.
inline constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
// Longest v1 header, CRLF included (PROXY §2.1).
inline constexpr std::size_t kV1MaxLength = 107;
// Fixed part of a v2 header before the address block.
inline constexpr std::size_t kV2FixedLength = 16;

// An IP address in network byte order: IPv4 uses the first 4 bytes.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> Parse(std::string_view text);  // "1.2.3.4", "::1"
  std::string ToString() const;
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes the IPv4 address, so that a
  // client counts once however a dual-stack socket reports it.
  IpAddress Canonical() const;
  bool operator==(const IpAddress&) const = default;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

// A v2 type-length-value extension (PROXY §2.2.7), e.g. PP2_TYPE_AUTHORITY (0x02) or
// an AWS VPC endpoint id (0xEA). Kept for logs and tests; none changes behaviour here.
struct Tlv {
  uint8_t type = 0;
  std::string value;
  bool operator==(const Tlv&) const = default;
};

struct Header {
  int version = 0;  // 1 or 2
  // Set when the header names the original connection's endpoints (v1 TCP4/TCP6, v2
  // PROXY over TCP/IPv4 or IPv6). Empty for v2 LOCAL (the proxy's own connection,
  // e.g. a health check), v1 UNKNOWN and v2 families other than IP: PROXY §2.1/§2.2
  // then tell the receiver to use the real connection's endpoints.
  std::optional<Endpoint> source;
  std::optional<Endpoint> destination;
  bool local = false;  // v2 LOCAL command
  std::vector<Tlv> tlvs;
  std::size_t length = 0;  // bytes of the header on the wire
};

enum class ParseState { kComplete, kNeedMore, kInvalid };

struct ParseResult {
  ParseState state = ParseState::kNeedMore;
  Header header;       // valid when kComplete
  std::string error;   // why, when kInvalid (for the log; never sent to the peer)
};

// Parses the header at the start of `data`. `max_length` bounds a v2 header (a v1
// header is bounded by kV1MaxLength anyway); a v2 header that announces more is
// invalid at once, without waiting for its bytes. kNeedMore is returned only while
// `data` is a proper prefix of something that could still be valid.
ParseResult Parse(std::string_view data, std::size_t max_length);

// An address range in CIDR notation, IPv4 ("10.0.0.0/8", "192.0.2.7") or IPv6
// ("fd00::/8", "::1").
struct Network {
  IpAddress base;
  int prefix = 0;

  static std::optional<Network> Parse(std::string_view text);
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;
};

// The proxies whose PROXY headers are believed (--trusted-proxies).
class TrustedNetworks {
 public:
  TrustedNetworks() = default;
  // A comma-separated list of CIDR ranges; empty means none. The error names the
  // offending item.
  static std::optional<TrustedNetworks> Parse(std::string_view list, std::string* error);

  bool empty() const { return networks_.empty(); }
  bool Contains(const IpAddress& address) const;
  const std::vector<Network>& networks() const { return networks_; }

 private:
  std::vector<Network> networks_;
};

}  // namespace gateway::net::proxy
