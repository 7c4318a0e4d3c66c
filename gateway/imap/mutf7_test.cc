#include "gateway/imap/mutf7.h"

#include <gtest/gtest.h>

namespace imap {
namespace {

struct Pair {
  const char* utf8;
  const char* mutf7;
};

TEST(ModifiedUtf7Test, EncodesAndDecodesKnownNames) {
  const Pair kPairs[] = {
      {"INBOX", "INBOX"},
      {"a&b", "a&-b"},
      {"&", "&-"},
      // RFC 3501 §5.1.3 example.
      {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
       "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
      {"Entw\xc3\xbc" "rfe", "Entw&APw-rfe"},
      {"\xf0\x9f\x98\x80", "&2D3eAA-"},  // U+1F600 as a surrogate pair
      {"", ""},
  };
  for (const Pair& p : kPairs) {
    Result<std::string> encoded = EncodeModifiedUtf7(p.utf8);
    ASSERT_TRUE(encoded.ok()) << p.utf8;
    EXPECT_EQ(*encoded, p.mutf7);
    Result<std::string> decoded = DecodeModifiedUtf7(p.mutf7);
    ASSERT_TRUE(decoded.ok()) << p.mutf7 << ": " << decoded.error().message;
    EXPECT_EQ(*decoded, p.utf8);
  }
}

TEST(ModifiedUtf7Test, RejectsInvalidEncodings) {
  for (const char* bad : {
           "&",             // unterminated shift
           "&U,BTFw",       // unterminated shift
           "&APw-&APw-",    // adjacent shifts: not canonical
           "&AEE-",         // "A" encoded: printable ASCII must be direct
           "&ACY-",         // "&" encoded instead of "&-"
           "&U,BTF-",       // dangling bits / octet
           "&U,BTFx-",      // non-zero padding bits
           "&2D0-",         // lone high surrogate
           "&3gA-",         // lone low surrogate
           "&2D3YPQ-",      // high surrogate followed by high surrogate
           "&AAA-",         // U+0000
           "&Jjo!-",        // "!" is not in modified base64
           "&Jjo/-",        // "/" is replaced by "," in modified base64
           "caf\xc3\xa9",   // raw 8-bit
           "tab\there",     // control character
       }) {
    EXPECT_FALSE(DecodeModifiedUtf7(bad).ok()) << bad;
  }
}

TEST(ModifiedUtf7Test, EncodeRejectsInvalidUtf8) {
  for (const char* bad : {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"}) {
    EXPECT_FALSE(EncodeModifiedUtf7(bad).ok());
  }
  EXPECT_FALSE(EncodeModifiedUtf7(std::string("a\0b", 3)).ok());
}

}  // namespace
}  // namespace imap
