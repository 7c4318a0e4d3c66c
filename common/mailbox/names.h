// Mailbox and user names as the whole system spells them: UTF-8, "/" between
// hierarchy levels, INBOX case-insensitive (RFC 3501 §5.1), and the "*"/"%" patterns
// of LIST and LSUB (RFC 3501 §6.3.8-6.3.9, RFC 5258). The mailbox service's backends,
// the gateway and the test fake all apply these same rules.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::rules {

inline constexpr char kHierarchyDelimiter = '/';
inline constexpr std::string_view kInbox = "INBOX";

// Well-formed UTF-8: shortest forms only, no surrogates, nothing above U+10FFFF.
bool IsValidUtf8(std::string_view s);
// Any C0 control character or DEL.
bool HasControl(std::string_view s);

// True for "INBOX" in any case.
bool IsInbox(std::string_view name);
// A leading "inbox" level in any case becomes "INBOX", so "inbox/x" and "INBOX/x"
// name the same mailbox. Everything else is kept as it is.
std::string CanonicalMailboxName(std::string_view name);

struct NameLimits {
  size_t max_octets = 250;
  int max_depth = 31;
};

// Validates a name a client gave and returns its canonical form. BAD_REQUEST for
// empty names, invalid UTF-8, control characters, wildcards or empty levels;
// LIMIT beyond `limits`.
absl::StatusOr<std::string> NormalizeMailboxName(std::string_view name,
                                                 const NameLimits& limits);

// The proper superiors of "a/b/c": "a", "a/b".
std::vector<std::string> Superiors(std::string_view name);
// True if `name` is below `parent` in the hierarchy ("a/b" below "a", not "ab").
bool IsInferiorOf(std::string_view name, std::string_view parent);

// RFC 3501 §6.3.8: the full pattern for `reference` and `pattern`. A pattern that
// starts with the delimiter is absolute and ignores the reference; otherwise it is
// appended to the reference as it is, so a reference meant as a level of the
// hierarchy ends with the delimiter ("Lists/" + "%").
std::string JoinListReference(std::string_view reference, std::string_view pattern);

// RFC 3501 §6.3.8: "*" matches any run of characters, "%" any run without the
// delimiter. A leading INBOX level matches in any case on either side. Linear per
// character of the name times the pattern, whatever the wildcards.
bool ListPatternMatches(std::string_view pattern, std::string_view name);

// A pattern matching every name `pattern` matches and every inferior of such a name
// ("%" widened to "*", and a "*" added at the end).
std::string WidenListPattern(std::string_view pattern);

// The proper superiors of `name` that `pattern` matches, shortest first.
std::vector<std::string> MatchingSuperiors(std::string_view pattern, std::string_view name);

// The special-use attributes of RFC 6154 §2 and RFC 8457 that CREATE accepts.
bool IsKnownSpecialUse(std::string_view use);

// A username: 1 to 255 octets of UTF-8 without control characters.
absl::Status ValidateUsername(std::string_view username);

}  // namespace mailbox::rules
