// Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).
//
// Decoding is strict: a name has exactly one valid encoding, so anything a
// conforming client could not have produced is an error rather than a guess.
// Both directions work on UTF-8 on the other side.
#pragma once

#include <string>
#include <string_view>

#include "gateway/imap/result.h"

namespace imap {

// UTF-8 -> modified UTF-7. Fails on invalid UTF-8 (overlong forms, surrogate
// code points, values above U+10FFFF, truncated sequences) and on NUL.
Result<std::string> EncodeModifiedUtf7(std::string_view utf8);

// Modified UTF-7 -> UTF-8. Rejects: bytes outside printable US-ASCII,
// unterminated "&..." shifts, characters outside the modified base64 alphabet,
// empty shifts other than "&-", non-zero padding bits or a dangling octet,
// printable ASCII encoded in base64, two adjacent shifts (non-canonical),
// unpaired UTF-16 surrogates and U+0000.
Result<std::string> DecodeModifiedUtf7(std::string_view mutf7);

// True if `utf8` is well-formed UTF-8 (no overlong forms or surrogates).
bool IsValidUtf8(std::string_view utf8);

}  // namespace imap
