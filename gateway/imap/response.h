// Strict serialization of server responses (RFC 3501 §7 and §9, RFC 9051 §9).
//
// Everything here appends to or returns std::string in wire form, CRLF
// included. String writers pick the representation the ABNF allows: an atom
// where the grammar has astring and the value is all ASTRING-CHAR, a quoted
// string when every octet may appear in one (no CR, LF, NUL, and no 8-bit
// unless the session enabled UTF8=ACCEPT), otherwise a literal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gateway/imap/command.h"
#include "gateway/imap/date_time.h"
#include "gateway/imap/sequence_set.h"

namespace imap {

// Client-side literals may be non-synchronizing (RFC 7888); server literals
// are always written "{n}".
enum class LiteralForm { kSynchronizing, kNonSynchronizing };

// True if `s` may be sent as a quoted string. With `utf8` (RFC 6855
// UTF8=ACCEPT) valid UTF-8 octets are allowed too.
bool CanQuote(std::string_view s, bool utf8 = false);
// True if `s` is a non-empty run of ASTRING-CHAR.
bool IsAtom(std::string_view s);

void AppendQuoted(std::string& out, std::string_view s);  // escapes \ and "
void AppendLiteral(std::string& out, std::string_view s,
                   LiteralForm form = LiteralForm::kSynchronizing);
// string = quoted / literal.
void AppendString(std::string& out, std::string_view s, bool utf8 = false,
                  LiteralForm form = LiteralForm::kSynchronizing);
// astring = 1*ASTRING-CHAR / string.
void AppendAString(std::string& out, std::string_view s, bool utf8 = false,
                   LiteralForm form = LiteralForm::kSynchronizing);
// nstring = string / NIL.
void AppendNString(std::string& out, const std::optional<std::string>& s,
                   bool utf8 = false);
// A mailbox name given in UTF-8: modified UTF-7 encoded (RFC 3501 §5.1.3)
// unless `utf8_accept`. Returns false (appending nothing) for invalid UTF-8.
bool AppendMailbox(std::string& out, std::string_view utf8_name,
                   bool utf8_accept = false);
// "(" flag *(SP flag) ")"; flags are written as given.
void AppendFlagList(std::string& out, const std::vector<std::string>& flags);

enum class Status { kOk, kNo, kBad, kPreauth, kBye };

// "<tag> OK [<code>] <text>\r\n"; tag "*" gives an untagged response. CR, LF
// and NUL in `text` become spaces, as do "]" and CTLs in `code`; an empty
// text becomes a single "." (text = 1*TEXT-CHAR).
std::string StatusResponse(std::string_view tag, Status status, std::string_view code,
                           std::string_view text);
// "+ <text>\r\n" (command continuation request, RFC 3501 §7.5).
std::string ContinuationResponse(std::string_view text);

// Response codes (without the brackets) for StatusResponse.
namespace code {
std::string Capability(const std::vector<std::string>& capabilities);
std::string UidValidity(uint32_t uidvalidity);
std::string UidNext(uint32_t uidnext);
std::string Unseen(uint32_t seq);
std::string PermanentFlags(const std::vector<std::string>& flags);
std::string HighestModSeq(uint64_t modseq);
// RFC 4315: UIDs of the appended message(s) / copied source and destination.
std::string AppendUid(uint32_t uidvalidity, const std::vector<Interval>& uids);
std::string CopyUid(uint32_t uidvalidity, const std::vector<Interval>& source,
                    const std::vector<Interval>& destination);
// RFC 7162 §3.1.3 [MODIFIED set].
std::string Modified(const std::vector<Interval>& set);
inline constexpr std::string_view kAlert = "ALERT";
inline constexpr std::string_view kParse = "PARSE";
inline constexpr std::string_view kReadOnly = "READ-ONLY";
inline constexpr std::string_view kReadWrite = "READ-WRITE";
inline constexpr std::string_view kTryCreate = "TRYCREATE";
inline constexpr std::string_view kNoModSeq = "NOMODSEQ";
inline constexpr std::string_view kUidNotSticky = "UIDNOTSTICKY";
inline constexpr std::string_view kClosed = "CLOSED";
inline constexpr std::string_view kTooBig = "TOOBIG";  // RFC 4469 / RFC 7888
// RFC 5530.
inline constexpr std::string_view kUnavailable = "UNAVAILABLE";
inline constexpr std::string_view kAuthenticationFailed = "AUTHENTICATIONFAILED";
inline constexpr std::string_view kAuthorizationFailed = "AUTHORIZATIONFAILED";
inline constexpr std::string_view kExpired = "EXPIRED";
inline constexpr std::string_view kPrivacyRequired = "PRIVACYREQUIRED";
inline constexpr std::string_view kContactAdmin = "CONTACTADMIN";
inline constexpr std::string_view kNoPerm = "NOPERM";
inline constexpr std::string_view kInUse = "INUSE";
inline constexpr std::string_view kExpungeIssued = "EXPUNGEISSUED";
inline constexpr std::string_view kCorruption = "CORRUPTION";
inline constexpr std::string_view kServerBug = "SERVERBUG";
inline constexpr std::string_view kClientBug = "CLIENTBUG";
inline constexpr std::string_view kCannot = "CANNOT";
inline constexpr std::string_view kLimit = "LIMIT";
inline constexpr std::string_view kOverQuota = "OVERQUOTA";
inline constexpr std::string_view kAlreadyExists = "ALREADYEXISTS";
inline constexpr std::string_view kNonExistent = "NONEXISTENT";
// RFC 6154 §3.
inline constexpr std::string_view kUseAttr = "USEATTR";
}  // namespace code

// Untagged data responses.
std::string CapabilityResponse(const std::vector<std::string>& capabilities);
std::string EnabledResponse(const std::vector<std::string>& capabilities);  // RFC 5161
std::string ExistsResponse(uint32_t count);
std::string RecentResponse(uint32_t count);
std::string ExpungeResponse(uint32_t seq);
std::string FlagsResponse(const std::vector<std::string>& flags);
// RFC 7162 §3.2.10: "* VANISHED [(EARLIER)] uids".
std::string VanishedResponse(const std::vector<Interval>& uids, bool earlier);
// LIST/LSUB (RFC 3501 §7.2.2). `delimiter` 0 means NIL. The name is UTF-8.
// Returns "" if the name is not valid UTF-8.
std::string ListResponse(bool lsub, const std::vector<std::string>& attributes,
                         char delimiter, std::string_view utf8_name,
                         bool utf8_accept = false);
// RFC 5465 §5.4: the LIST of a renamed mailbox, with the OLDNAME extended data
// item (RFC 5258 §3.3's mbox-list-extended): `* LIST () "/" "new" ("OLDNAME"
// ("old"))`. Returns "" if a name is not valid UTF-8.
std::string RenamedListResponse(const std::vector<std::string>& attributes, char delimiter,
                                std::string_view utf8_name, std::string_view utf8_old_name,
                                bool utf8_accept = false);
// STATUS (RFC 3501 §7.2.4); returns "" if the name is not valid UTF-8. Values
// are numbers, except MAILBOXID's object id (RFC 8474 §4.3), which is written
// in parentheses.
using StatusValue = std::variant<uint64_t, std::string>;
std::string StatusDataResponse(std::string_view utf8_name,
                               const std::vector<std::pair<StatusItem, StatusValue>>& items,
                               bool utf8_accept = false);
// SEARCH (RFC 3501 §7.2.5) with RFC 7162 "(MODSEQ n)".
std::string SearchResponse(const std::vector<uint32_t>& numbers,
                           std::optional<uint64_t> highest_modseq = std::nullopt);
// SORT (RFC 5256 §4 sort-data): the numbers in sort order; "(MODSEQ n)" as
// SEARCH's (RFC 7162 §3.1.5).
std::string SortResponse(const std::vector<uint32_t>& numbers,
                         std::optional<uint64_t> highest_modseq = std::nullopt);
// One message of a thread tree in depth-first order: its number (0 for a
// dummy, a parent that is not in the mailbox) and its depth (0 for a thread).
struct ThreadNode {
  uint32_t number = 0;
  uint32_t depth = 0;
};
// THREAD (RFC 5256 §4 thread-data): "(1 2 (3)(4 5))" per thread; a chain of
// only children is written without parentheses, siblings each in their own.
std::string ThreadResponse(const std::vector<ThreadNode>& nodes);
// ESEARCH (RFC 4731 §3.2).
struct EsearchData {
  std::optional<uint32_t> min;
  std::optional<uint32_t> max;
  std::optional<uint32_t> count;
  std::optional<std::vector<Interval>> all;  // omitted when empty per RFC 4731
  std::optional<uint64_t> modseq;
  // RFC 5267 §4.4: "PARTIAL (first:last set)", the set "NIL" when empty.
  struct Partial {
    uint32_t first = 0;
    uint32_t last = 0;
    std::vector<Interval> numbers;  // in result order
  };
  std::optional<Partial> partial;
};
std::string EsearchResponse(std::string_view tag, bool uid, const EsearchData& data);
// RFC 5267 §4.3: one change to a live result, at a 1-based position of it.
struct ContextChange {
  bool add = false;  // ADDTO, else REMOVEFROM
  uint32_t position = 0;
  std::vector<Interval> uids;  // in result order
};
// "* ESEARCH (TAG "t") UID ADDTO (p uids) REMOVEFROM (p uids) ...".
std::string ContextUpdateResponse(std::string_view tag, const std::vector<ContextChange>& changes);
// NAMESPACE (RFC 2342): each namespace is (prefix, delimiter); an empty
// vector is NIL.
using Namespaces = std::vector<std::pair<std::string, char>>;
std::string NamespaceResponse(const Namespaces& personal, const Namespaces& other,
                              const Namespaces& shared);
// RFC 9208 §5.1: "* QUOTA root (name usage limit ...)".
struct QuotaResourceValue {
  std::string name;  // e.g. "STORAGE", "MESSAGE"
  uint64_t usage = 0;
  uint64_t limit = 0;
};
std::string QuotaResponse(std::string_view root, const std::vector<QuotaResourceValue>& resources);
// RFC 9208 §5.2: "* QUOTAROOT mailbox root...". Returns "" if the name is not
// valid UTF-8.
std::string QuotaRootResponse(std::string_view utf8_mailbox, const std::vector<std::string>& roots,
                              bool utf8_accept = false);
// RFC 5464 §4.4.1: "* METADATA mailbox (entry value ...)"; "" names the
// server. A value holding NUL goes as a literal8. Returns "" if the name is not
// valid UTF-8.
std::string MetadataResponse(std::string_view utf8_mailbox,
                             const std::vector<std::pair<std::string, std::string>>& entries,
                             bool utf8_accept = false);
// RFC 5464 §4.4.2: the unsolicited "* METADATA mailbox entry ..." naming the
// entries that changed, without values (entry-list: no parentheses); "" names
// the server. Returns "" if the name is not valid UTF-8 or there is no entry.
std::string MetadataChangedResponse(std::string_view utf8_mailbox,
                                    const std::vector<std::string>& entries,
                                    bool utf8_accept = false);
// ID (RFC 2971); nullopt is NIL.
std::string IdResponse(const std::optional<IdCommand::Params>& params);

// Builds one "* <seq> FETCH (...)" response item by item.
class FetchResponseBuilder {
 public:
  explicit FetchResponseBuilder(uint32_t seq);

  FetchResponseBuilder& Uid(uint32_t uid);
  FetchResponseBuilder& Flags(const std::vector<std::string>& flags);
  FetchResponseBuilder& InternalDate(const DateTime& date);
  FetchResponseBuilder& Rfc822Size(uint64_t size);
  FetchResponseBuilder& ModSeq(uint64_t modseq);  // "MODSEQ (n)"
  // A value already in IMAP syntax, e.g. ENVELOPE or BODYSTRUCTURE from the
  // store: "<name> <value>".
  FetchResponseBuilder& Raw(std::string_view name, std::string_view value);
  // Message data (BODY[...], RFC822*, BINARY[...]) as a literal; NIL for
  // nullopt. With `binary`, data containing NUL is sent as literal8 (RFC 3516).
  FetchResponseBuilder& Section(std::string_view name,
                                std::optional<std::string_view> data,
                                bool binary = false);
  // For data too large to hold: appends "<name> {size}\r\n" (or "~{size}") and
  // returns everything built so far; the caller then writes exactly `size`
  // octets itself and may continue adding items.
  std::string StreamSection(std::string_view name, uint64_t size, bool literal8 = false);
  // Closes the response and returns what has not been returned yet.
  std::string Finish();

 private:
  void Separator();

  std::string out_;
  bool first_ = true;
};

}  // namespace imap
