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
#include <variant>
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

// --- For the Receiver's streaming APPEND (RFC 3501 §6.3.11, RFC 3502, RFC 4469). ---

// The start of one APPEND message: its options, and for an ordinary message the
// literal that carries it.
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
  // RFC 4469 §5: "CATENATE (" cat-part *(SP cat-part) ")": the message is made
  // of the parts that follow (no literal of its own; size is 0).
  bool catenate = false;
};

// RFC 4469 §5 cat-part "URL" SP astring: the URL as sent.
struct CatenateUrlPart {
  std::string url;
  bool operator==(const CatenateUrlPart&) const = default;
};

// RFC 4469 §5 cat-part "TEXT" SP literal: the literal announced at the end of
// the text; its data follows.
struct CatenateTextPart {
  uint32_t size = 0;
  bool synchronizing = true;
  bool binary = false;  // literal8 (RFC 3516)
  bool operator==(const CatenateTextPart&) const = default;
};

using AppendStep = std::variant<AppendHead, CatenateUrlPart, CatenateTextPart>;

// Where a piece of streamed APPEND text starts.
enum class AppendAt {
  kCommand,     // the command so far, from the tag
  kAfterData,   // after the literal of an ordinary message
  kAfterUtf8,   // after the literal8 of "UTF8 (": the ")" comes first
  kInCatenate,  // after a TEXT literal inside "CATENATE (...)"
};

// What one piece of streamed APPEND text announces, in order.
struct AppendSegment {
  // kCommand only: the literal at the end is the mailbox name (an ordinary
  // literal); `steps` is empty.
  bool mailbox_literal = false;
  std::vector<AppendStep> steps;
  // A literal announcement ends the text: the last step is an ordinary
  // AppendHead or a CatenateTextPart. Otherwise the text ends the command.
  bool literal = false;
};

// Parses one piece of an APPEND command. `text` runs from `at` up to and
// including the "}" of a literal announcement at its end (`literal_at_end`),
// or up to (not including) the CRLF that ends the command. `catenate_parts`
// counts the parts of the CATENATE list that is open across pieces (at most
// limits.max_catenate_parts); it is reset when a list ends.
Result<AppendSegment> ParseAppendSegment(std::string_view text, AppendAt at,
                                         bool literal_at_end, const Limits& limits,
                                         size_t* catenate_parts);

// A section-spec as inside BODY[...] (RFC 3501 §9), e.g. "1.2.MIME" or
// "HEADER.FIELDS (FROM TO)"; "" is the whole message.
Result<Section> ParseSectionText(std::string_view text, const Limits& limits = {});

}  // namespace imap
