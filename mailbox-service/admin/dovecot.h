// Reading what Dovecot keeps beside a Maildir, for `mailbox-admin import dovecot`:
// the UIDs it gave (dovecot-uidlist), the keyword letters of file names
// (dovecot-keywords), the subscriptions file, and Maildir++ folder names.
//
// The parsers take bytes they cannot trust (a mail store copied from another
// machine, perhaps damaged) and report bad input as an InvalidArgument status
// naming the line, never by crashing; every input has a size limit. Only
// ListDovecotFolders and ReadDovecotFile touch the file system.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailbox::admin {

struct DovecotLimits {
  // dovecot-uidlist is read whole: at about 60 octets a line, 256 MiB is over four
  // million messages in one folder.
  size_t max_uidlist_octets = 256u << 20;
  size_t max_keywords_octets = 64u << 10;
  size_t max_subscriptions_octets = 4u << 20;
  // A line of any of them: a file name is at most 255 octets, a mailbox name a
  // few hundred; anything far longer is not Dovecot's.
  size_t max_line_octets = 8u << 10;
};

// ---------------------------------------------------------------------------
// dovecot-uidlist

struct UidlistEntry {
  uint32_t uid = 0;
  std::string base_name;  // the file name up to its ':' info part
  uint64_t line = 0;      // 1-based, for messages about it
};

struct Uidlist {
  int version = 0;  // 1, 2 or 3
  uint32_t uidvalidity = 0;
  uint32_t next_uid = 0;  // N of the header (Dovecot appends entries without rewriting it)
  std::string guid;       // G of a version 3 header, if any
  std::vector<UidlistEntry> entries;  // strictly ascending UIDs

  // The UID Dovecot gives next: the header's N, or past the last entry when
  // entries were appended after the header was written.
  uint32_t EffectiveNextUid() const;
};

// Parses a dovecot-uidlist:
//   version 3 (Dovecot 1.1 and later): "3 V<uidvalidity> N<nextuid> [G<guid> ...]",
//     then "<uid> [<key><value> ...] :<file name>" per message;
//   version 1 (also Courier's courierimapuiddb): "1 <uidvalidity> <nextuid>", then
//     "<uid> <file name>";
//   version 2: as version 1 with a flags field before the file name.
// UIDs must ascend strictly and be non-zero, UIDVALIDITY non-zero, names unique.
absl::StatusOr<Uidlist> ParseUidlist(std::string_view text, const DovecotLimits& limits = {});

// ---------------------------------------------------------------------------
// Keywords and flags

// Dovecot names a file's keywords by the letters a..z of its ":2," info, the
// letter's index in dovecot-keywords: at most 26 per folder.
inline constexpr size_t kMaxKeywordLetters = 26;
using KeywordLetters = std::array<std::string, kMaxKeywordLetters>;  // "" = unused

// Parses dovecot-keywords: "<index> <keyword>" lines, index 0..25. A keyword must
// be an IMAP atom (RFC 3501 §9 flag-keyword) not starting with '\'.
absl::StatusOr<KeywordLetters> ParseDovecotKeywords(std::string_view text,
                                                    const DovecotLimits& limits = {});

struct DovecotFileFlags {
  // IMAP flags as Dovecot shows them: R → \Answered, S → \Seen, T → \Deleted,
  // D → \Draft, F → \Flagged (in that order), then the keywords of the letters
  // in letter order. Without duplicates.
  std::vector<std::string> flags;
  // Letters Dovecot shows as no flag: P (passed) and other capitals, and
  // keyword letters that dovecot-keywords does not name. In order, once each.
  std::string ignored;
};

// The flags of a Maildir file name as Dovecot reads them: the letters after the
// last ":2," up to the end or the next ','.
DovecotFileFlags ParseDovecotFileFlags(std::string_view filename, const KeywordLetters& keywords);

// A file name up to its first ':' (the part dovecot-uidlist records).
std::string_view MaildirBaseName(std::string_view filename);

// ---------------------------------------------------------------------------
// Mailbox names

// Modified UTF-7 (RFC 3501 §5.1.3), as Dovecot encodes folder names on disk and
// in the subscriptions file, to UTF-8. Strict: an invalid encoding is an error.
absl::StatusOr<std::string> DecodeModifiedUtf7(std::string_view text);

// The mailbox of a Maildir++ folder directory: "" (the Maildir itself) is INBOX,
// ".Sent" is "Sent", ".Work.Projects" is "Work/Projects" (each part decoded from
// modified UTF-7). InvalidArgument for an empty part or a part holding '/'.
absl::StatusOr<std::string> MaildirPlusPlusName(std::string_view directory);

// Parses the subscriptions file into mailbox names with '/' between levels.
// Dovecot 2.2 and later write "V\t2\n\n", then a name per line with a tab between
// levels, each level tab-escaped (\001 followed by 1, t, r, n or 0). Older files
// hold a name per line with `separator` between levels. Names are decoded from
// modified UTF-7; "INBOX" in any case is INBOX. Duplicates are dropped.
absl::StatusOr<std::vector<std::string>> ParseDovecotSubscriptions(
    std::string_view text, char separator = '.', const DovecotLimits& limits = {});

// ---------------------------------------------------------------------------
// Files

// Reads a small file of the Maildir whole, without following a symbolic link
// (see ListMaildir). nullopt if it does not exist; FailedPrecondition for a link,
// a non-regular file, or one over `max_octets`.
absl::StatusOr<std::optional<std::string>> ReadDovecotFile(const std::string& path,
                                                           size_t max_octets);

struct DovecotFolder {
  std::string name;       // mailbox name, '/' between levels
  std::string directory;  // path of its Maildir
};

struct DovecotFolders {
  std::vector<DovecotFolder> folders;  // INBOX first, then by name
  std::vector<std::string> skipped;    // one line each, why
};

// The folders of a Maildir++ tree: `root` (INBOX) and every directory of it whose
// name starts with '.' (links and undecodable names are skipped and reported).
absl::StatusOr<DovecotFolders> ListDovecotFolders(const std::string& root);

}  // namespace mailbox::admin
