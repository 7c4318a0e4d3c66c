// IMAP URLs (RFC 5092) as the CATENATE extension (RFC 4469 §3, §5) takes them:
// a message or a section of one, in the absolute form
//   imap://[user[;AUTH=type]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n
//       [/;SECTION=section][/;PARTIAL=offset[.length]]
// or the same path alone, relative to this server and user ("/mailbox...").
// Keywords are case-insensitive; the mailbox, user and section are
// percent-decoded. URLAUTH parameters (RFC 4467: ";EXPIRE=", ";URLAUTH=") are
// recognised only so that the caller can refuse them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/imap/command.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/result.h"

namespace imap {

struct ImapUrl {
  bool absolute = false;  // "imap://" form
  std::string user;       // absolute form only; empty when none was given
  std::string host;       // absolute form only, lower-cased, without the port
  std::string mailbox;    // percent-decoded octets, as the URL names it
  std::optional<uint32_t> uidvalidity;
  uint32_t uid = 0;
  Section section;        // the whole message when no ;SECTION= was given
  // RFC 5092 ";PARTIAL=offset[.length]"; no length: to the end.
  bool has_partial = false;
  uint32_t partial_offset = 0;
  std::optional<uint32_t> partial_length;
  bool urlauth = false;   // ";EXPIRE=" or ";URLAUTH=" present (RFC 4467)
};

// Parses `url`; the error message says what is wrong.
Result<ImapUrl> ParseImapUrl(std::string_view url, const Limits& limits = {});

// `url` as RFC 4469 §5 url-resp-text (any TEXT-CHAR but "]"), for
// "NO [BADURL url]": "]" is percent-encoded and other octets outside it dropped.
std::string UrlRespText(std::string_view url);

}  // namespace imap
