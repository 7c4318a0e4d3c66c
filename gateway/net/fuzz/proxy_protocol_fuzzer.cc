// libFuzzer target for the PROXY protocol header parser.
//
// Beyond "no crash / no sanitizer report" it checks the properties the gateway's
// reading loop relies on (listener.cc reads the header in pieces, calling Parse on the
// growing prefix, and consumes exactly `length` bytes):
//  * a complete header's length is within the input and within the size bounds;
//  * parsing exactly that prefix gives the same header;
//  * no proper prefix of a complete header is complete or invalid (so reading byte by
//    byte reaches the same answer as reading at once);
//  * an invalid input stays invalid when more bytes are appended.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/net/proxy_protocol.h"

namespace {

using gateway::net::proxy::Parse;
using gateway::net::proxy::ParseResult;
using gateway::net::proxy::ParseState;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool SameHeader(const ParseResult& a, const ParseResult& b) {
  return a.header.version == b.header.version && a.header.length == b.header.length &&
         a.header.local == b.header.local && a.header.source == b.header.source &&
         a.header.destination == b.header.destination && a.header.tlvs == b.header.tlvs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) {
    return 0;
  }
  // The first two bytes choose the size bound, so that bounds at and around real
  // headers' sizes are explored too.
  const std::size_t max_length = 16 + ((static_cast<std::size_t>(data[0]) << 8) | data[1]) % 1200;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  ParseResult whole = Parse(input, max_length);
  if (whole.state == ParseState::kInvalid) {
    Check(!whole.error.empty(), "invalid without a reason");
    std::string longer(input);
    longer.append("\r\n\r\nPROXY ");
    Check(Parse(longer, max_length).state == ParseState::kInvalid,
          "appending bytes made an invalid input valid");
    return 0;
  }
  if (whole.state == ParseState::kNeedMore) {
    Check(input.size() < gateway::net::proxy::kV1MaxLength || input.front() != 'P',
          "a v1 header needs more than 107 bytes");
    Check(input.size() < max_length || input.front() != '\r',
          "a v2 header needs more than its bound");
    return 0;
  }
  const std::size_t length = whole.header.length;
  Check(length > 0 && length <= input.size(), "length outside the input");
  Check(whole.header.version == 1 ? length <= gateway::net::proxy::kV1MaxLength
                                  : length <= max_length,
        "length over the bound");
  Check(whole.header.version == 1 || whole.header.version == 2, "unknown version");
  ParseResult exact = Parse(input.substr(0, length), max_length);
  Check(exact.state == ParseState::kComplete && SameHeader(whole, exact),
        "the exact header parses differently");
  for (std::size_t n = 0; n < length; ++n) {
    ParseResult prefix = Parse(input.substr(0, n), max_length);
    Check(prefix.state == ParseState::kNeedMore, "a proper prefix is not 'need more'");
  }
  if (whole.header.source) {
    Check(whole.header.source->address.v6 == whole.header.destination->address.v6,
          "source and destination families differ");
    auto again = gateway::net::proxy::IpAddress::Parse(whole.header.source->address.ToString());
    Check(again.has_value() && *again == whole.header.source->address,
          "address text does not round-trip");
  }
  return 0;
}
