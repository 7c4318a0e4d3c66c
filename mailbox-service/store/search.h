// The IMAP SEARCH evaluator of the mailbox service: a pure function from a
// mailbox.v1 SearchKey and one candidate message to "matches" (RFC 3501
// §6.4.4, RFC 9051 §6.4.4, RFC 7162 §3.1.5 MODSEQ). It does no I/O: the store
// hands each candidate in as a SearchMessage whose heavy parts (headers,
// parsed structure, content) are loaded only when a key needs them.
//
// Usage: ValidateSearch() once per request, then Matches() per candidate.
// Matches() assumes a validated key; it never fails, a key that cannot be
// evaluated simply does not match.
//
// Matching rules (the choices the RFCs leave open are noted here so that the
// standards statement can cite them):
//  * Flags and keywords compare ASCII case-insensitively. System flags are
//    case-insensitive by RFC 3501 §9 (flag grammar is case-insensitive);
//    keywords are compared the same way because clients spell them
//    inconsistently ("$Junk" / "$junk") and the major servers fold them too.
//  * BEFORE/ON/SINCE use the civil day of the INTERNALDATE in the zone it was
//    given in; SENTBEFORE/SENTON/SENTSINCE the day of the Date: header in its
//    own zone. SAVEDBEFORE/SAVEDON/SAVEDSINCE (RFC 8514 §4) the day of the save
//    date in UTC, or for a message stored before save dates were kept that of
//    its INTERNALDATE. Time of day is disregarded (RFC 3501 §6.4.4). A message without
//    a parseable Date: matches no SENT* key.
//  * String keys (HEADER, BODY, TEXT) are substring matches after case folding:
//    ASCII letters plus Unicode simple case folding (CaseFolding.txt status C
//    and S) for Latin-1 Supplement, Latin Extended-A, Latin Extended
//    Additional, Greek and Cyrillic, and the Kelvin/Ohm/Angstrom signs. That
//    covers the "i;unicode-casemap"-style expectations of European-language
//    users without a full Unicode table; other scripts compare exactly. No
//    normalisation (NFC/NFD) is done.
//  * HEADER field value: every occurrence of the field, unfolded and RFC 2047
//    decoded; an empty value matches any message that has the field. FROM, TO,
//    CC, BCC and SUBJECT arrive as HEADER keys and follow the same rule.
//  * BODY: the content-transfer-decoded text of every text/* leaf, converted to
//    UTF-8 where the charset is known (mime::ForEachTextBody); never headers.
//  * TEXT: the top-level header section (each field unfolded and RFC 2047
//    decoded, field names included) or what BODY searches.
//  * An empty BODY/TEXT string matches every message.
//  * Within AND (and OR), cheap keys (flags, UIDs, dates, sizes, MODSEQ) are
//    evaluated before SENT* keys, then HEADER keys, then BODY/TEXT, and
//    evaluation stops as soon as the result is known. Substring search is
//    O(text + needle) for any needle (Knuth-Morris-Pratt over text folded in
//    64 KiB chunks), so a 50 MB body costs one pass and O(needle + 64 KiB)
//    memory beyond the decoded text itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/mailbox/uid_sets.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

// One candidate message. The store implements this over its rows and loads
// heavy fields lazily; every accessor may be called several times, so an
// implementation should cache what it loaded. Non-const accessors may load.
class SearchMessage {
 public:
  virtual ~SearchMessage() = default;
  virtual uint32_t uid() const = 0;
  virtual uint64_t modseq() const = 0;
  // Canonical spellings, e.g. "\\Seen"; keywords as stored.
  virtual const std::vector<std::string>& flags() const = 0;
  virtual int64_t internal_date_unix() const = 0;
  // Offset of the zone the INTERNALDATE was given in, east of UTC.
  virtual int32_t internal_date_tz_minutes() const = 0;
  virtual uint64_t size() const = 0;  // RFC822.SIZE
  // YYYYMMDD from the Date: header, in its own zone; nullopt without one.
  virtual std::optional<int32_t> sent_date() = 0;
  // Raw top-level header bytes (through the empty line ending them).
  virtual std::string_view header_block() = 0;
  virtual const mime::ParsedMessage& parsed() = 0;
  // The whole raw message, the bytes parsed() refers to.
  virtual std::string_view content() = 0;
  // The SHA-256 of content(), which names the content (and its EMAILID).
  virtual std::string_view content_sha256() = 0;
  // When the message was saved into its mailbox (RFC 8514), unix seconds;
  // nullopt for a message stored before the store kept save dates.
  virtual std::optional<int64_t> save_date_unix() const = 0;
};

// The shape one search request may have. A request is at most a few MiB on the
// wire, but without these a few MiB of keys multiply into work per message.
struct SearchLimits {
  int max_depth = 64;  // BAD_REQUEST beyond (a parser-style limit)
  // Every node counts: a NOT TEXT "x" is two keys. RESOURCE_EXHAUSTED (LIMIT) beyond.
  int max_keys = 1000;
  // UID ranges over all UID keys (sequence sets arrive as UID sets).
  int max_uid_ranges = 100000;
  // Octets over all strings (flags, header names and values, BODY/TEXT needles):
  // each needle is folded and indexed again for every message it is tried on.
  uint64_t max_string_octets = 64 << 10;
};

// Checks the whole request before any message is read, so that a bad request
// fails with one clear error instead of matching nothing:
//  * charset empty, "US-ASCII" or "UTF-8" (case-insensitive); anything else is
//    InvalidArgument with ErrorCode BADCHARSET (RFC 3501 §6.4.4). Empty means
//    US-ASCII, as the proto says.
//  * every string valid UTF-8; with US-ASCII, 7-bit only (BAD_REQUEST).
//  * nesting depth <= max_depth, else BAD_REQUEST "search nesting deeper than
//    N". A lone key has depth 1; each AND/OR/NOT around it adds one. The walk
//    itself never recurses deeper than max_depth + 1.
//  * every key has its oneof set; OR has both operands; UID ranges are
//    non-zero with first <= last (BAD_REQUEST).
//  * RECENT is rejected (BAD_REQUEST): the gateway resolves it to a UID set,
//    since only the session knows which messages are \Recent for it.
//  * at most limits.max_keys keys, limits.max_uid_ranges UID ranges and
//    limits.max_string_octets octets of strings in all, else RESOURCE_EXHAUSTED
//    with ErrorCode LIMIT, which names the limit.
// A missing key (request.has_key() false) is BAD_REQUEST too.
absl::Status ValidateSearch(const v1::SearchRequest& request, const SearchLimits& limits);
// As above with the default limits except the nesting depth.
absl::Status ValidateSearch(const v1::SearchRequest& request, int max_depth);

// Rewrites every UID set in `key` into the form mailbox.v1 defines (ranges
// sorted, disjoint, non-adjacent); a set already in that form is left as is.
// Requires a key accepted by ValidateSearch (recursion follows its nesting).
void CanonicalizeUidSets(v1::SearchKey* key);

// True if `message` matches `key`. Requires a key accepted by ValidateSearch
// whose UID sets are sorted and disjoint (as the proto defines them; pass a
// key from a sender that may not keep that through CanonicalizeUidSets): a
// UID key is decided by bisection, so a set of many ranges stays cheap per
// message. Recursion follows the key's nesting. Reads only the parts of
// `message` the key needs.
//
// Every octet of text a key scans (header fields, decoded bodies, and each
// needle as it is prepared) is charged to `budget`; once the budget refuses,
// string keys stop scanning and do not match, so the result is meaningless and
// the caller must return budget.status() instead. Substring scans also poll the
// budget for the caller's cancellation between 64 KiB chunks.
bool Matches(const v1::SearchKey& key, SearchMessage& message, WorkBudget& budget);
// As above without a bound (for tests and trusted callers).
bool Matches(const v1::SearchKey& key, SearchMessage& message);

// The UIDs a search for `key` can match at most: the key's own UID set, or that of
// a member of a top-level AND; every UID otherwise. A cheap pre-filter for the
// backend's scan; Matches() still decides.
rules::UidRanges CandidateUids(const v1::SearchKey& key);

namespace search_internal {

// Exposed for tests.

// Appends the case fold of `text` (see the file comment for the coverage).
// Bytes that are not valid UTF-8 are copied through unchanged.
void AppendCaseFolded(std::string_view text, std::string* out);

// Strict UTF-8 check (no overlongs, surrogates or code points > U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Civil day YYYYMMDD of a Unix time seen from a zone `tz_minutes` east of UTC.
int32_t CivilDay(int64_t unix_seconds, int32_t tz_minutes);

}  // namespace search_internal
}  // namespace mailbox::store
