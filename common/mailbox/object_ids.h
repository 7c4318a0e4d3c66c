// RFC 8474 object identifiers, as every part spells them: objectid = 1*255(ALPHA /
// DIGIT / "_" / "-"), case-sensitive, with a one-letter prefix so that no id is
// all digits, starts with a digit or "-", or reads "NIL" (§8.1), and so that the
// kinds never share a value (§5.2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailbox::rules {

// MAILBOXID: the mailbox row and its UIDVALIDITY. RENAME keeps both; a mailbox
// made again under an old name (or a row reused for a new mailbox) has a new
// UIDVALIDITY, so a new id (§4).
std::string MailboxObjectId(uint64_t mailbox_id, uint32_t uidvalidity);

// EMAILID: from the SHA-256 of the content (the first 96 bits, hex), so copies and
// moves keep it and byte-identical messages share it, which §5.1 allows.
std::string EmailObjectId(std::string_view sha256);

// True if `id` has the objectid syntax.
bool IsObjectId(std::string_view id);

}  // namespace mailbox::rules
