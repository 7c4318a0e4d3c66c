// Pure helpers for LIST and LSUB (RFC 3501 §6.3.8-6.3.9, RFC 5258): joining the
// reference with a pattern, matching names against "*"/"%" patterns, and finding
// the superiors of a name that a pattern matches (the LSUB "%" rule of §6.3.9 and
// RFC 5258 RECURSIVEMATCH). Names and patterns are UTF-8 with "/" as the hierarchy
// delimiter, as the mailbox service stores them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gateway::commands {

inline constexpr char kHierarchyDelimiter = '/';

// True for "INBOX" in any case (RFC 3501 §5.1: INBOX is case-insensitive).
bool IsInbox(std::string_view name);

// The canonical spelling of a name: a leading "inbox" component in any case becomes
// "INBOX", so "inbox/x" and "INBOX/x" name the same mailbox.
std::string CanonicalMailboxName(std::string_view name);

// RFC 3501 §6.3.8: the full pattern for `reference` and `pattern`. A pattern that
// starts with the delimiter is absolute and ignores the reference; otherwise the
// pattern is appended to the reference as is, so a reference meant as a level of
// the hierarchy ends with the delimiter ("Lists/" + "%").
std::string JoinListReference(std::string_view reference, std::string_view pattern);

// RFC 3501 §6.3.8: "*" matches any run of characters, "%" any run without the
// delimiter. A leading "inbox" component of the pattern matches in any case.
bool ListPatternMatches(std::string_view pattern, std::string_view name);

// A pattern that matches every name matching `pattern` and every inferior of such a
// name ("%" widened to "*", and a "*" added at the end): what to ask the service
// for when superiors of subscribed names matter.
std::string WidenListPattern(std::string_view pattern);

// The proper superiors of `name` ("a" and "a/b" for "a/b/c") that `pattern` matches,
// shortest first.
std::vector<std::string> MatchingSuperiors(std::string_view pattern, std::string_view name);

}  // namespace gateway::commands
