// Typed parsing of complete IMAP commands (RFC 3501 §6 and §9 ABNF plus the
// extensions listed in command.h).
//
// The input is one command exactly as sent: tag, name, arguments with literals
// inline ("{n}\r\n" + n octets, also "{n+}"), and the final CRLF. The Receiver
// assembles that form; tests, the fuzzer and the round-trip check call
// ParseCommand directly.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/command.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/result.h"

namespace imap {

// Parses one complete command. Errors carry a message for a tagged BAD.
Result<Command> ParseCommand(std::string_view wire, const Limits& limits = {});

// Returns the tag at the start of `line` if it is a syntactically valid tag of
// at most `max_tag_length` octets followed by SP or CRLF; "" otherwise (the
// session then answers with an untagged BAD).
std::string ExtractTag(std::string_view line, size_t max_tag_length);

// Upper-cased command name after the tag ("UID FETCH" for UID commands),
// "" if there is none.
std::string ExtractCommandName(std::string_view line);

// The table entry of an upper-cased command name ("FETCH", "UID FETCH", ...),
// or null.
const CommandSpec* FindCommand(std::string_view upper_case_name);
// Every entry of the command table.
std::span<const CommandSpec> CommandTable();

// True for the names ParseCommand knows, so the Receiver can refuse a literal
// of a command that will fail anyway.
bool IsKnownCommandName(std::string_view upper_case_name);

// --- For the Receiver's streaming APPEND (RFC 3501 §6.3.11, RFC 3502). ---

// What precedes one APPEND message literal.
struct AppendHead {
  std::string mailbox;
  std::vector<std::string> flags;
  std::optional<DateTime> date;
  uint32_t size = 0;
  bool synchronizing = true;
  bool binary = false;  // literal8 (RFC 3516)
  // RFC 6855 §4: "UTF8 (~{n}": a message whose header may be UTF-8, sent as a
  // literal8 inside parentheses; the ")" follows the data.
  bool utf8 = false;
};

// `text` is the command so far, from the tag up to and including the "}" of a
// literal announcement at its end. Returns nullopt if that literal is the
// mailbox name (an ordinary literal), the head if it is message data.
Result<std::optional<AppendHead>> ParseAppendHead(std::string_view text,
                                                  const Limits& limits);

// `text` is what follows a message literal up to (not including) the CRLF or
// the "}" of the next literal announcement; it starts with the ")" that closes
// a UTF8 message (`after_utf8`). Empty text (or only that ")") ends the
// command (nullopt); otherwise it must be the head of another message.
Result<std::optional<AppendHead>> ParseAppendNext(std::string_view text,
                                                  const Limits& limits,
                                                  bool after_utf8 = false);

}  // namespace imap
