#include "gateway/net/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace gateway::net::proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";

// PROXY §2.2 byte 13: high nibble address family, low nibble transport.
constexpr uint8_t kFamilyUnspec = 0x0, kFamilyInet = 0x1, kFamilyInet6 = 0x2,
                  kFamilyUnix = 0x3;
constexpr uint8_t kTransportStream = 0x1, kTransportDgram = 0x2;
// Byte 12: version 2 in the high nibble, the command in the low one.
constexpr uint8_t kCommandLocal = 0x0, kCommandProxy = 0x1;

ParseResult Invalid(std::string error) {
  ParseResult result;
  result.state = ParseState::kInvalid;
  result.error = std::move(error);
  return result;
}

ParseResult NeedMore() { return ParseResult{}; }

bool IsPrefixOf(std::string_view data, std::string_view whole) {
  std::size_t n = std::min(data.size(), whole.size());
  return data.substr(0, n) == whole.substr(0, n);
}

// PROXY §2.1: a port is a decimal number from 0 to 65535 without leading zeros.
std::optional<uint16_t> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text.front() == '0')) {
    return std::nullopt;
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(value);
}

std::optional<IpAddress> ParseFamily(std::string_view text, bool v6) {
  if (text.empty() || text.size() >= 64) {
    return std::nullopt;
  }
  char buffer[64];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress address;
  address.v6 = v6;
  if (::inet_pton(v6 ? AF_INET6 : AF_INET, buffer, address.bytes.data()) != 1) {
    return std::nullopt;
  }
  return address;
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t space = line.find(' ', start);
    out.push_back(line.substr(start, space == std::string_view::npos ? space : space - start));
    if (space == std::string_view::npos) {
      return out;
    }
    start = space + 1;
  }
}

// PROXY §2.1: "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") [SP src SP dst SP sport SP dport]
// CRLF, at most 107 bytes, single spaces.
ParseResult ParseV1(std::string_view data) {
  if (!IsPrefixOf(data, kV1Prefix)) {
    return Invalid("not a PROXY protocol header");
  }
  // The line ends at the first CR, which must be followed by LF; a bare LF or CR can
  // never become a valid end, whatever arrives later.
  const std::string_view window = data.substr(0, kV1MaxLength);
  std::size_t crlf = std::string_view::npos;
  for (std::size_t i = 0; i < window.size(); ++i) {
    if (window[i] == '\n') {
      return Invalid("v1 header: line does not end with CRLF");
    }
    if (window[i] == '\r') {
      if (i + 1 == window.size()) {
        break;
      }
      if (window[i + 1] != '\n') {
        return Invalid("v1 header: line does not end with CRLF");
      }
      crlf = i;
      break;
    }
  }
  if (crlf == std::string_view::npos) {
    if (data.size() >= kV1MaxLength) {
      return Invalid("v1 header: no CRLF within 107 bytes");
    }
    return NeedMore();
  }
  std::vector<std::string_view> fields = SplitSpaces(window.substr(0, crlf));
  ParseResult result;
  result.state = ParseState::kComplete;
  result.header.version = 1;
  result.header.length = crlf + 2;
  if (fields.size() >= 2 && fields[1] == "UNKNOWN") {
    // The rest of the line is to be ignored; the real endpoints are used.
    return result;
  }
  if (fields.size() != 6 || (fields[1] != "TCP4" && fields[1] != "TCP6")) {
    return Invalid("v1 header: expected PROXY TCP4|TCP6 src dst sport dport, or UNKNOWN");
  }
  const bool v6 = fields[1] == "TCP6";
  std::optional<IpAddress> source = ParseFamily(fields[2], v6);
  std::optional<IpAddress> destination = ParseFamily(fields[3], v6);
  std::optional<uint16_t> source_port = ParsePort(fields[4]);
  std::optional<uint16_t> destination_port = ParsePort(fields[5]);
  if (!source || !destination) {
    return Invalid(v6 ? "v1 header: bad IPv6 address" : "v1 header: bad IPv4 address");
  }
  if (!source_port || !destination_port) {
    return Invalid("v1 header: bad port");
  }
  result.header.source = Endpoint{*source, *source_port};
  result.header.destination = Endpoint{*destination, *destination_port};
  return result;
}

uint16_t Be16(std::string_view data, std::size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(data[at]) << 8) |
                               static_cast<uint8_t>(data[at + 1]));
}

// PROXY §2.2: 12-byte signature, version/command, family/transport, 16-bit length,
// then the address block and TLVs.
ParseResult ParseV2(std::string_view data, std::size_t max_length) {
  if (!IsPrefixOf(data, kV2Signature)) {
    return Invalid("not a PROXY protocol header");
  }
  if (data.size() > 12) {
    const uint8_t version_command = static_cast<uint8_t>(data[12]);
    if ((version_command >> 4) != 0x2) {
      return Invalid("v2 header: unsupported version");
    }
    const uint8_t command = version_command & 0x0f;
    if (command != kCommandLocal && command != kCommandProxy) {
      return Invalid("v2 header: unknown command");
    }
  }
  if (data.size() > 13) {
    const uint8_t family = static_cast<uint8_t>(data[13]) >> 4;
    const uint8_t transport = static_cast<uint8_t>(data[13]) & 0x0f;
    if (family > kFamilyUnix || transport > kTransportDgram) {
      return Invalid("v2 header: unknown address family or transport");
    }
  }
  if (data.size() < kV2FixedLength) {
    return NeedMore();
  }
  const std::size_t total = kV2FixedLength + Be16(data, 14);
  if (total > max_length) {
    return Invalid("v2 header: " + std::to_string(total) + " bytes exceed the limit of " +
                   std::to_string(max_length));
  }
  if (data.size() < total) {
    return NeedMore();
  }
  const bool local = (static_cast<uint8_t>(data[12]) & 0x0f) == kCommandLocal;
  const uint8_t family = static_cast<uint8_t>(data[13]) >> 4;
  const uint8_t transport = static_cast<uint8_t>(data[13]) & 0x0f;
  std::size_t address_length = 0;
  switch (family) {
    case kFamilyInet: address_length = 12; break;
    case kFamilyInet6: address_length = 36; break;
    case kFamilyUnix: address_length = 216; break;
    case kFamilyUnspec: address_length = 0; break;
    default: return Invalid("v2 header: unknown address family");
  }
  const std::string_view body = data.substr(kV2FixedLength, total - kV2FixedLength);
  if (body.size() < address_length) {
    return Invalid("v2 header: address block shorter than its family needs");
  }
  ParseResult result;
  result.state = ParseState::kComplete;
  result.header.version = 2;
  result.header.local = local;
  result.header.length = total;
  if (!local && (family == kFamilyInet || family == kFamilyInet6)) {
    // The gateway serves TCP only; a datagram or unspecified transport over IP makes
    // no sense for this connection.
    if (transport != kTransportStream) {
      return Invalid("v2 header: an IP address with a transport other than TCP");
    }
    const bool v6 = family == kFamilyInet6;
    const std::size_t width = v6 ? 16 : 4;
    IpAddress source, destination;
    source.v6 = destination.v6 = v6;
    std::memcpy(source.bytes.data(), body.data(), width);
    std::memcpy(destination.bytes.data(), body.data() + width, width);
    result.header.source = Endpoint{source, Be16(body, 2 * width)};
    result.header.destination = Endpoint{destination, Be16(body, 2 * width + 2)};
  }
  // PROXY §2.2.7: type (1 byte), length (2 bytes, big-endian), value.
  std::string_view rest = body.substr(address_length);
  while (!rest.empty()) {
    if (rest.size() < 3) {
      return Invalid("v2 header: truncated TLV");
    }
    const std::size_t length = Be16(rest, 1);
    if (rest.size() < 3 + length) {
      return Invalid("v2 header: TLV longer than the header");
    }
    result.header.tlvs.push_back(
        Tlv{static_cast<uint8_t>(rest[0]), std::string(rest.substr(3, length))});
    rest.remove_prefix(3 + length);
  }
  return result;
}

}  // namespace

ParseResult Parse(std::string_view data, std::size_t max_length) {
  if (data.empty()) {
    return NeedMore();
  }
  if (data.front() == 'P') {
    return ParseV1(data);
  }
  if (data.front() == '\r') {
    return ParseV2(data, max_length);
  }
  return Invalid("not a PROXY protocol header");
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.find(':') != std::string_view::npos) {
    return ParseFamily(text, true);
  }
  return ParseFamily(text, false);
}

std::string IpAddress::ToString() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buffer, sizeof(buffer));
  return buffer;
}

IpAddress IpAddress::Canonical() const {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (!v6 || std::memcmp(bytes.data(), kMapped, sizeof(kMapped)) != 0) {
    IpAddress copy = *this;
    if (!v6) {
      std::fill(copy.bytes.begin() + 4, copy.bytes.end(), 0);
    }
    return copy;
  }
  IpAddress v4;
  std::memcpy(v4.bytes.data(), bytes.data() + 12, 4);
  return v4;
}

std::optional<Network> Network::Parse(std::string_view text) {
  std::string_view address_text = text;
  std::optional<int> prefix;
  if (std::size_t slash = text.find('/'); slash != std::string_view::npos) {
    address_text = text.substr(0, slash);
    std::string_view prefix_text = text.substr(slash + 1);
    int value = -1;
    auto [end, ec] =
        std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), value);
    if (prefix_text.empty() || ec != std::errc() ||
        end != prefix_text.data() + prefix_text.size()) {
      return std::nullopt;
    }
    prefix = value;
  }
  std::optional<IpAddress> base = IpAddress::Parse(address_text);
  if (!base) {
    return std::nullopt;
  }
  const int width = base->v6 ? 128 : 32;
  Network network{*base, prefix.value_or(width)};
  if (network.prefix < 0 || network.prefix > width) {
    return std::nullopt;
  }
  // "::ffff:10.0.0.0/104" is the IPv4 range 10.0.0.0/8.
  if (base->v6 && base->Canonical() != *base) {
    if (network.prefix < 96) {
      return std::nullopt;
    }
    network = Network{base->Canonical(), network.prefix - 96};
  }
  // Host bits set ("10.0.0.1/8") is almost always a typo for another range.
  for (int bit = network.prefix; bit < (network.base.v6 ? 128 : 32); ++bit) {
    if (network.base.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return std::nullopt;
    }
  }
  return network;
}

bool Network::Contains(const IpAddress& address) const {
  const IpAddress canonical = address.Canonical();
  if (canonical.v6 != base.v6) {
    return false;
  }
  for (int bit = 0; bit < prefix; ++bit) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((canonical.bytes[bit / 8] & mask) != (base.bytes[bit / 8] & mask)) {
      return false;
    }
  }
  return true;
}

std::string Network::ToString() const {
  return base.ToString() + "/" + std::to_string(prefix);
}

std::optional<TrustedNetworks> TrustedNetworks::Parse(std::string_view list,
                                                      std::string* error) {
  TrustedNetworks out;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    std::string_view item =
        list.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                           : comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      std::optional<Network> network = Network::Parse(item);
      if (!network) {
        if (error != nullptr) {
          *error = "'" + std::string(item) +
                   "' is not an address range such as 10.0.0.0/8, 192.0.2.7 or fd00::/8 "
                   "(with no host bits set after the prefix)";
        }
        return std::nullopt;
      }
      out.networks_.push_back(*network);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    start = comma + 1;
  }
  return out;
}

bool TrustedNetworks::Contains(const IpAddress& address) const {
  return std::any_of(networks_.begin(), networks_.end(),
                     [&](const Network& network) { return network.Contains(address); });
}

}  // namespace gateway::net::proxy
