// Command serialization: the inverse of ParseCommand, used by the round-trip
// tests, the fuzzer and the raw-protocol test client.
//
// ParseCommand(Serialize(c)) == c for every command ParseCommand produced.
#pragma once

#include <string>

#include "gateway/imap/command.h"
#include "gateway/imap/response.h"

namespace imap {

// The wire form of `command`, CRLF included. Strings that cannot be atoms or
// quoted strings become literals of the given form ("{n+}" by default, which
// a server with LITERAL+ accepts without continuation requests).
std::string Serialize(const Command& command,
                      LiteralForm literals = LiteralForm::kNonSynchronizing);

// Wire forms of parts, shared with tests.
std::string SerializeSearchKey(const SearchKey& key,
                               LiteralForm literals = LiteralForm::kNonSynchronizing);
std::string SerializeFetchAttribute(const FetchAttribute& attribute);

}  // namespace imap
