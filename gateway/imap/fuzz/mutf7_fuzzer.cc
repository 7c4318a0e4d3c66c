// libFuzzer target for modified UTF-7 (RFC 3501 §5.1.3).
//
// Properties, on the raw input read both ways:
//  * decoding is strict and canonical: whatever decodes re-encodes to exactly
//    the input, and the decoded form is valid UTF-8 without NUL;
//  * encoding accepts exactly valid UTF-8 without NUL (IsValidUtf8 agrees),
//    produces printable US-ASCII only, and decodes back to the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/imap/mutf7.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool PrintableAscii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  imap::Result<std::string> decoded = imap::DecodeModifiedUtf7(input);
  if (decoded.ok()) {
    Check(PrintableAscii(input), "decoded a name with bytes outside printable ASCII");
    Check(imap::IsValidUtf8(*decoded), "decoding produced invalid UTF-8");
    Check(decoded->find('\0') == std::string::npos, "decoding produced NUL");
    imap::Result<std::string> encoded = imap::EncodeModifiedUtf7(*decoded);
    Check(encoded.ok() && *encoded == input, "modified UTF-7 is not canonical");
  }

  imap::Result<std::string> encoded = imap::EncodeModifiedUtf7(input);
  const bool encodable =
      imap::IsValidUtf8(input) && input.find('\0') == std::string_view::npos;
  Check(encoded.ok() == encodable, "encoder disagrees with IsValidUtf8");
  if (encoded.ok()) {
    Check(PrintableAscii(*encoded), "encoding produced non-printable bytes");
    // One octet can cost five ("\x01" is "&AAE-"), never more.
    Check(encoded->size() <= 5 * input.size(), "encoding grew beyond 5x");
    imap::Result<std::string> back = imap::DecodeModifiedUtf7(*encoded);
    Check(back.ok() && *back == input, "encode -> decode changed the name");
  }
  return 0;
}
