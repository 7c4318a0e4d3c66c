// Pure translations between the IMAP view of a selected mailbox and the
// mailbox.v1 messages, used by the SEARCH, FETCH, STORE and COPY handlers.
//
// Nothing here does I/O or knows about Session: every function takes the
// selected mailbox's sequence number <-> UID map (and where needed its \Recent
// set) as input, so the translations are unit-tested on their own
// (search_mapping_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/imap/response.h"
#include "gateway/imap/search.h"
#include "gateway/imap/sequence_set.h"
#include "gateway/session/uid_map.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway::commands {

// What a SEARCH key tree turned into.
struct MappedSearch {
  mailbox::v1::SearchKey key;
  // A MODSEQ criterion was used: the results carry "(MODSEQ n)" (RFC 7162 §3.1.5).
  bool uses_modseq = false;
};

// The default bound on the UID ranges one SEARCH may send to the store, summed
// over all its keys (SessionOptions::max_search_uid_ranges).
inline constexpr size_t kDefaultMaxSearchUidRanges = 100000;

// Translates the parsed SEARCH criteria into the store's key tree.
//
// Everything that depends on the session is resolved here, because the store
// knows nothing of sequence numbers or \Recent:
// * sequence sets become UID sets through `map` ("*" is the number of messages);
// * UID sets get "*" = `max_uid`, the highest UID the session knows of;
// * RECENT (and NEW, OLD) become the UID set `recent`.
// Fails with InvalidArgument on a malformed tree (an OR without two operands, a
// NOT without one), which the parser never produces, and with ResourceExhausted
// once the UID sets of all keys together would exceed `max_uid_ranges` ranges
// (the caller answers NO [LIMIT]); the work done is bounded by that too.
//
// A sequence range a:b becomes the single UID range UidAt(a):UidAt(b), however
// many holes the mailbox has between them: UIDs in between that are not in the
// view are never shown to the client (ResultNumbers), so the result is the
// same, and a set costs as many UID ranges as it has ranges itself.
// "$" (RFC 5182) becomes the UIDs in `saved` (none if null).
absl::StatusOr<MappedSearch> MapSearchKey(const imap::SearchKey& key, const UidMap& map,
                                          const std::set<uint32_t>& recent, uint32_t max_uid,
                                          size_t max_uid_ranges = kDefaultMaxSearchUidRanges,
                                          const std::vector<imap::Interval>* saved = nullptr);

// Days as the store compares them: the civil day YYYYMMDD.
int32_t CivilDay(const imap::Date& date);

// The store's UID set of a search result to what the client is shown: sequence
// numbers (SEARCH) or UIDs (UID SEARCH), ascending. UIDs the session has not
// announced yet (not in `map`) are left out: the client cannot know them.
std::vector<uint32_t> ResultNumbers(const mailbox::v1::UidSet& uids, const UidMap& map,
                                    bool uid);

// ESEARCH data (RFC 4731 §3.1) for `numbers` in result order: ascending for
// SEARCH, sort order for SORT (RFC 5267 §3.1: MIN and MAX are the first and
// last in that order), with PARTIAL (RFC 5267 §4.4) when asked. With no
// result option set (none of MIN, MAX, COUNT, ALL, PARTIAL), ALL is meant.
// MODSEQ is left to the caller.
imap::EsearchData MakeEsearchData(const std::vector<uint32_t>& numbers,
                                  const imap::SearchReturnOptions& options);

// RFC 5267 §4.3: the ADDTO and REMOVEFROM steps that turn the live result
// `before` into `after` (UIDs in result order), applied in the order given:
// removals first, each at its 1-based position in the list as it then stands,
// then additions at the position each takes in `after`. Neighbours in one
// step share it. Messages whose order among the others changed (sort keys do
// not change, so this does not happen in practice) are removed and re-added.
std::vector<imap::ContextChange> DiffResults(const std::vector<uint32_t>& before,
                                             const std::vector<uint32_t>& after);

// Compresses `numbers` into runs, keeping their order: {3,4,5,9,1} gives
// 3:5,9,1. Used for COPYUID, whose two sets must pair up element by element
// (RFC 4315 §3), and for sorted lists where it is just the compact form.
std::vector<imap::Interval> ToRuns(const std::vector<uint32_t>& numbers);

// The first message sequence number of `set` that exceeds the number of
// messages `size`, if any. Ranges containing "*" never count: "5:*" with 3
// messages means 3:5 (RFC 9051 §9, seq-range), which names message 3.
std::optional<uint32_t> FirstSequenceNumberBeyond(const imap::SequenceSet& set,
                                                  uint32_t size);

// The BAD text for a sequence set that names messages beyond the mailbox (FETCH,
// STORE, COPY, MOVE by sequence number), or nullopt if it is fine. UID sets are
// never out of range: unknown UIDs are ignored (RFC 3501 §6.4.8).
std::optional<std::string> SequenceSetError(const imap::SequenceSet& set, bool uid,
                                            uint32_t message_count);

// Intervals of sequence numbers for the UIDs in `uids` that are in `map`.
std::vector<imap::Interval> UidsToSequenceIntervals(const mailbox::v1::UidSet& uids,
                                                    const UidMap& map);

}  // namespace gateway::commands
