// Resource limits of the IMAP receiver and parser.
//
// Every limit is checked at a precise boundary: a value equal to the limit is
// accepted, one more is refused with BAD. The defaults suit a public server.
#pragma once

#include <cstddef>
#include <cstdint>

namespace imap {

struct Limits {
  // Octets of command text outside literals, summed over all lines of one
  // command, CRLFs included. Bounds the memory of one command (RFC 7162 §4
  // asks for at least 8192; Dovecot's default is 64 KiB).
  size_t max_line_length = 64 * 1024;
  // Largest literal accepted anywhere but as APPEND message data.
  uint32_t max_literal_size = 64 * 1024;
  // Largest APPEND message literal (streamed, never buffered whole).
  uint32_t max_append_literal_size = 64 * 1024 * 1024;
  // Literals in one command, APPEND message literals included.
  size_t max_literals_per_command = 1000;
  // Parts (TEXT and URL) of one RFC 4469 CATENATE message. The assembled
  // message is bounded by max_append_literal_size as a whole.
  size_t max_catenate_parts = 256;
  // Total octets of buffered (non-APPEND-message) literal data in a command.
  size_t max_command_literal_octets = 1024 * 1024;
  // The same total before authentication (Receiver::SetUnauthenticated): a
  // LOGIN needs two short strings, so an anonymous connection gets a small
  // budget and cannot make the gateway hold max_command_literal_octets.
  size_t max_unauthenticated_literal_octets = 8 * 1024;
  // Parenthesis/NOT/OR nesting (SEARCH keys, LIST options, ID lists, ...).
  int max_nesting_depth = 32;
  // RFC 3501 sets no limit; Stalwart and Dovecot cap tags similarly.
  size_t max_tag_length = 64;
  // Server advertises LITERAL- instead of LITERAL+ (RFC 7888): then a
  // non-synchronizing literal above 4096 octets is refused.
  bool literal_minus = false;
};

// RFC 7888 (LITERAL-): the largest non-synchronizing literal under LITERAL-.
inline constexpr uint32_t kLiteralMinusMax = 4096;

}  // namespace imap
