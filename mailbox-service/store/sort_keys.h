// What SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §4) compare, taken from a
// message's header once when its content is stored and kept beside it, so that
// sorting a mailbox reads a few short strings per message instead of parsing it.
//
// Choices the RFCs leave open:
//  * Strings are compared after the case folding SEARCH uses (search.h: ASCII
//    plus Unicode simple case folding for the European scripts), a superset of
//    i;ascii-casemap, which RFC 5256 §2.2 requires. Keys are stored folded.
//  * A subject is a reply or forward (RFC 5256 §4 REFERENCES step 5.B) when
//    base-subject extraction removed a subj-refwd, a "(fwd)" trailer or a
//    "[fwd: ...]" wrapper.
//  * A Message-ID is the first "<...>" of its field, comments and whitespace
//    dropped, not empty; it compares as sent (RFC 5256 §4: case-sensitive).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailbox::store {

// References kept per message: the last ones of its References field (the last
// is its parent; those before it only link ancestors that may be missing).
inline constexpr size_t kMaxSortReferences = 100;

struct SortKeys {
  // The Date: header as unix seconds; nullopt without a valid one (the sent
  // date is then the internal date, RFC 5256 §2.2).
  std::optional<int64_t> sent_at;
  std::string subject;  // RFC 5256 §2.1 base subject, folded
  bool reply_or_forward = false;
  // RFC 5256 §3: the addr-mailbox of the first address, folded ("" without one).
  std::string from, to, cc;
  // RFC 5957 §3.1: the display name of the first address (RFC 2047 decoded),
  // else its addr-spec, folded.
  std::string display_from, display_to;
  std::string message_id;  // without the angle brackets; "" without a valid one
  // RFC 5256 §4 step 1: the References field's Message-IDs (at most the last
  // kMaxSortReferences), or without any the first of In-Reply-To.
  std::vector<std::string> references;

  bool operator==(const SortKeys&) const = default;
};

// The keys of a message from its top-level header block.
SortKeys ExtractSortKeys(std::string_view header_block);

// RFC 5256 §2.1 base subject of a subject field's unfolded value (encoded words
// still encoded), not yet folded; sets *reply_or_forward as described above.
std::string BaseSubject(std::string_view subject, bool* reply_or_forward);

// The keys' stored form, and back (DataLoss for anything EncodeSortKeys did
// not produce).
std::string EncodeSortKeys(const SortKeys& keys);
absl::StatusOr<SortKeys> DecodeSortKeys(std::string_view data);

}  // namespace mailbox::store
