#include "gateway/net/proxy_protocol.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace gateway::net::proxy {
namespace {

constexpr std::size_t kLimit = 1024;

std::string V2(uint8_t version_command, uint8_t family_transport, std::string body) {
  std::string out(kV2Signature);
  out.push_back(static_cast<char>(version_command));
  out.push_back(static_cast<char>(family_transport));
  out.push_back(static_cast<char>(body.size() >> 8));
  out.push_back(static_cast<char>(body.size() & 0xff));
  return out + body;
}

std::string Bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::string Tlv(uint8_t type, std::string_view value) {
  std::string out;
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(value.size() >> 8));
  out.push_back(static_cast<char>(value.size() & 0xff));
  return out + std::string(value);
}

// 127.0.0.2:40000 -> 127.0.0.1:993 over TCP/IPv4.
std::string V2Tcp4(std::string tlvs = "") {
  return V2(0x21, 0x11,
            Bytes({127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x03, 0xe1}) + tlvs);
}

TEST(ProxyProtocolTest, V1Tcp4) {
  const std::string header = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 993\r\n";
  ParseResult r = Parse(header + "\x16\x03\x01", kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_EQ(r.header.version, 1);
  EXPECT_EQ(r.header.length, header.size());  // the TLS bytes after it are left alone
  ASSERT_TRUE(r.header.source.has_value());
  EXPECT_EQ(r.header.source->address.ToString(), "192.0.2.10");
  EXPECT_EQ(r.header.source->port, 56324);
  EXPECT_EQ(r.header.destination->address.ToString(), "198.51.100.1");
  EXPECT_EQ(r.header.destination->port, 993);
}

TEST(ProxyProtocolTest, V1Tcp6) {
  ParseResult r = Parse("PROXY TCP6 2001:db8::7 2001:db8::1 1 143\r\n", kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_TRUE(r.header.source->address.v6);
  EXPECT_EQ(r.header.source->address.ToString(), "2001:db8::7");
  EXPECT_EQ(r.header.source->port, 1);
}

TEST(ProxyProtocolTest, V1UnknownUsesTheRealEndpoints) {
  ParseResult r = Parse("PROXY UNKNOWN\r\n", kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_FALSE(r.header.source.has_value());
  EXPECT_EQ(r.header.length, 15u);
  // PROXY §2.1: whatever follows UNKNOWN up to CRLF is ignored.
  r = Parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_FALSE(r.header.source.has_value());
}

TEST(ProxyProtocolTest, V1Malformed) {
  for (std::string bad : {
           "PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",          // a field missing
           "PROXY TCP4 192.0.2.10  198.51.100.1 56324 993\r\n",     // double space
           "PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",           // wrong family
           "PROXY TCP6 192.0.2.10 2001:db8::1 1 2\r\n",             // wrong family
           "PROXY TCP4 192.0.2.300 198.51.100.1 1 2\r\n",           // not an address
           "PROXY TCP4 192.0.2.10 198.51.100.1 65536 993\r\n",      // port too large
           "PROXY TCP4 192.0.2.10 198.51.100.1 080 993\r\n",        // leading zero
           "PROXY TCP4 192.0.2.10 198.51.100.1 -1 993\r\n",
           "PROXY UDP4 192.0.2.10 198.51.100.1 1 2\r\n",
           "PROXY TCP4 192.0.2.10 198.51.100.1 1 2\n",              // bare LF
           "PROXY TCP4 192.0.2.10\r198.51.100.1 1 2\r\n",           // bare CR
       }) {
    ParseResult r = Parse(bad, kLimit);
    EXPECT_EQ(r.state, ParseState::kInvalid) << bad;
    EXPECT_FALSE(r.error.empty());
  }
}

TEST(ProxyProtocolTest, V1LongerThan107BytesIsInvalid) {
  std::string line = "PROXY UNKNOWN " + std::string(200, 'x');
  EXPECT_EQ(Parse(line.substr(0, 106), kLimit).state, ParseState::kNeedMore);
  ParseResult r = Parse(line.substr(0, 107), kLimit);
  EXPECT_EQ(r.state, ParseState::kInvalid);
  EXPECT_NE(r.error.find("107"), std::string::npos) << r.error;
  // Exactly 107 bytes with the CRLF is the largest valid header.
  std::string longest = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  ASSERT_EQ(longest.size(), 107u);
  EXPECT_EQ(Parse(longest, kLimit).state, ParseState::kComplete);
}

TEST(ProxyProtocolTest, WrongSignatureIsInvalidFromTheFirstByte) {
  EXPECT_EQ(Parse("a001 LOGIN x y\r\n", kLimit).state, ParseState::kInvalid);
  EXPECT_EQ(Parse("\x16\x03\x01\x02\x00", kLimit).state, ParseState::kInvalid);  // TLS
  EXPECT_EQ(Parse("PROXX", kLimit).state, ParseState::kInvalid);
  EXPECT_EQ(Parse("proxy TCP4", kLimit).state, ParseState::kInvalid);
  std::string v2 = V2Tcp4();
  v2[5] = 'X';  // inside the signature
  EXPECT_EQ(Parse(v2.substr(0, 6), kLimit).state, ParseState::kInvalid);
  EXPECT_EQ(Parse(v2, kLimit).state, ParseState::kInvalid);
  EXPECT_EQ(Parse("", kLimit).state, ParseState::kNeedMore);
}

TEST(ProxyProtocolTest, V2Tcp4WithTlvs) {
  const std::string tlvs = Tlv(0x02, "imap.example.com") + Tlv(0xEA, "\x01vpce-0123");
  const std::string header = V2Tcp4(tlvs);
  ParseResult r = Parse(header + "a001 CAPABILITY\r\n", kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_EQ(r.header.version, 2);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(r.header.length, header.size());
  EXPECT_EQ(r.header.source->address.ToString(), "127.0.0.2");
  EXPECT_EQ(r.header.source->port, 40000);
  EXPECT_EQ(r.header.destination->address.ToString(), "127.0.0.1");
  EXPECT_EQ(r.header.destination->port, 993);
  ASSERT_EQ(r.header.tlvs.size(), 2u);
  EXPECT_EQ(r.header.tlvs[0].type, 0x02);
  EXPECT_EQ(r.header.tlvs[0].value, "imap.example.com");
  EXPECT_EQ(r.header.tlvs[1].type, 0xEA);
}

TEST(ProxyProtocolTest, V2Tcp6) {
  std::string body(36, '\0');
  body[15] = 7;   // ::7
  body[31] = 1;   // ::1
  body[32] = 0x01;
  body[33] = 0x02;  // port 258
  body[35] = 143;
  ParseResult r = Parse(V2(0x21, 0x21, body), kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_EQ(r.header.source->address.ToString(), "::7");
  EXPECT_EQ(r.header.source->port, 258);
  EXPECT_EQ(r.header.destination->port, 143);
}

TEST(ProxyProtocolTest, V2LocalCarriesNoAddress) {
  ParseResult r = Parse(V2(0x20, 0x00, ""), kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_TRUE(r.header.local);
  EXPECT_FALSE(r.header.source.has_value());
  EXPECT_EQ(r.header.length, 16u);
  // A LOCAL header may still carry an address block; it is ignored (PROXY §2.2).
  r = Parse(V2(0x20, 0x11, Bytes({10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2})), kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_FALSE(r.header.source.has_value());
  // Unix sockets and an unspecified family over PROXY: use the real endpoints.
  r = Parse(V2(0x21, 0x31, std::string(216, '\0')), kLimit);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error;
  EXPECT_FALSE(r.header.source.has_value());
}

TEST(ProxyProtocolTest, V2Malformed) {
  EXPECT_EQ(Parse(V2(0x11, 0x11, std::string(12, '\0')), kLimit).state,
            ParseState::kInvalid);  // version 1 in a v2 header
  EXPECT_EQ(Parse(V2(0x22, 0x11, std::string(12, '\0')), kLimit).state,
            ParseState::kInvalid);  // unknown command
  EXPECT_EQ(Parse(V2(0x21, 0x41, std::string(12, '\0')), kLimit).state,
            ParseState::kInvalid);  // unknown family
  EXPECT_EQ(Parse(V2(0x21, 0x13, std::string(12, '\0')), kLimit).state,
            ParseState::kInvalid);  // unknown transport
  EXPECT_EQ(Parse(V2(0x21, 0x12, std::string(12, '\0')), kLimit).state,
            ParseState::kInvalid);  // UDP
  EXPECT_EQ(Parse(V2(0x21, 0x11, std::string(11, '\0')), kLimit).state,
            ParseState::kInvalid);  // address block too short
  EXPECT_EQ(Parse(V2Tcp4(Tlv(0x02, "abc").substr(0, 2)), kLimit).state,
            ParseState::kInvalid);  // truncated TLV header
  EXPECT_EQ(Parse(V2Tcp4(Tlv(0x02, "abc").substr(0, 5)), kLimit).state,
            ParseState::kInvalid);  // TLV value past the end
}

TEST(ProxyProtocolTest, V2OversizeIsRefusedBeforeItsBytesArrive) {
  // Announces 60,000 bytes; only the fixed part has arrived.
  std::string header = V2(0x21, 0x11, std::string(60000, '\0'));
  ParseResult r = Parse(header.substr(0, 16), kLimit);
  EXPECT_EQ(r.state, ParseState::kInvalid);
  EXPECT_NE(r.error.find("limit"), std::string::npos) << r.error;
  // At the limit it is fine; one byte over is not.
  std::string at_limit = V2Tcp4(Tlv(0x04, std::string(kLimit - 16 - 12 - 3, 'n')));
  ASSERT_EQ(at_limit.size(), kLimit);
  EXPECT_EQ(Parse(at_limit, kLimit).state, ParseState::kComplete);
  EXPECT_EQ(Parse(at_limit, kLimit - 1).state, ParseState::kInvalid);
}

TEST(ProxyProtocolTest, TruncatedHeadersNeedMore) {
  const std::string v1 = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 993\r\n";
  const std::string v2 = V2Tcp4(Tlv(0x02, "x"));
  for (const std::string& header : {v1, v2}) {
    for (std::size_t n = 0; n < header.size(); ++n) {
      EXPECT_EQ(Parse(header.substr(0, n), kLimit).state, ParseState::kNeedMore)
          << n << " of " << header.size();
    }
  }
}

// The gateway calls Parse on the growing prefix as bytes trickle in; every prefix of a
// valid header needs more, and the full header then parses to the same result as when
// it arrives at once.
TEST(ProxyProtocolTest, ByteByByte) {
  for (const std::string& header :
       {std::string("PROXY TCP6 2001:db8::7 2001:db8::1 1 143\r\n"), V2Tcp4(Tlv(1, "imap"))}) {
    std::string received;
    ParseResult r;
    for (char c : header) {
      ASSERT_NE(r.state, ParseState::kComplete);
      received.push_back(c);
      r = Parse(received, kLimit);
      ASSERT_NE(r.state, ParseState::kInvalid) << r.error;
    }
    ASSERT_EQ(r.state, ParseState::kComplete);
    EXPECT_EQ(r.header.length, header.size());
    ParseResult whole = Parse(header, kLimit);
    EXPECT_EQ(whole.header.source, r.header.source);
    EXPECT_EQ(whole.header.tlvs, r.header.tlvs);
  }
}

TEST(ProxyProtocolTest, NetworksMatchByPrefix) {
  std::optional<Network> net = Network::Parse("10.1.0.0/16");
  ASSERT_TRUE(net.has_value());
  EXPECT_TRUE(net->Contains(*IpAddress::Parse("10.1.255.3")));
  EXPECT_FALSE(net->Contains(*IpAddress::Parse("10.2.0.1")));
  // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
  EXPECT_TRUE(net->Contains(*IpAddress::Parse("::ffff:10.1.0.9")));
  EXPECT_FALSE(net->Contains(*IpAddress::Parse("2001:db8::1")));
  std::optional<Network> host = Network::Parse("127.0.0.1");
  ASSERT_TRUE(host.has_value());
  EXPECT_EQ(host->prefix, 32);
  EXPECT_FALSE(host->Contains(*IpAddress::Parse("127.0.0.2")));
  std::optional<Network> v6 = Network::Parse("fd00::/8");
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->Contains(*IpAddress::Parse("fdab::1")));
  EXPECT_FALSE(v6->Contains(*IpAddress::Parse("fe80::1")));
  std::optional<Network> all = Network::Parse("0.0.0.0/0");
  ASSERT_TRUE(all.has_value());
  EXPECT_TRUE(all->Contains(*IpAddress::Parse("203.0.113.9")));
  EXPECT_EQ(Network::Parse("::ffff:10.0.0.0/104")->ToString(), "10.0.0.0/8");
  for (const char* bad : {"10.0.0.1/8", "10.0.0.0/33", "fd00::/129", "10.0.0.0/", "x/8",
                          "10.0.0.0/-1", "", "10.0.0.0/8x"}) {
    EXPECT_FALSE(Network::Parse(bad).has_value()) << bad;
  }
}

TEST(ProxyProtocolTest, TrustedNetworksList) {
  std::string error;
  std::optional<TrustedNetworks> none = TrustedNetworks::Parse("", &error);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(none->Contains(*IpAddress::Parse("127.0.0.1")));
  std::optional<TrustedNetworks> list =
      TrustedNetworks::Parse("127.0.0.1, 10.0.0.0/8,fd00::/8", &error);
  ASSERT_TRUE(list.has_value()) << error;
  EXPECT_EQ(list->networks().size(), 3u);
  EXPECT_TRUE(list->Contains(*IpAddress::Parse("10.9.9.9")));
  EXPECT_TRUE(list->Contains(*IpAddress::Parse("127.0.0.1")));
  EXPECT_FALSE(list->Contains(*IpAddress::Parse("127.0.0.2")));
  EXPECT_FALSE(TrustedNetworks::Parse("10.0.0.0/8,nonsense", &error).has_value());
  EXPECT_NE(error.find("nonsense"), std::string::npos) << error;
}

}  // namespace
}  // namespace gateway::net::proxy
