// UID sets as the mailbox.v1 API carries them (ranges of first..last), and the
// sorted, merged form backends evaluate them in.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::rules {

// Ascending, non-overlapping, non-adjacent [first, last] ranges.
using UidRanges = std::vector<std::pair<uint32_t, uint32_t>>;

// The sorted, merged ranges of a set a caller sent. BAD_REQUEST if it is empty,
// names UID 0 or has an inverted range.
absl::StatusOr<UidRanges> NormalizeUidSet(const v1::UidSet& set);

// 1 to 4294967295.
const UidRanges& AllUids();

// True if `uid` is in any range of `set` (which need not be normalized).
bool Contains(const v1::UidSet& set, uint32_t uid);

// Builds a UidSet from ascending UIDs, joining runs into ranges.
class UidSetBuilder {
 public:
  void Add(uint32_t uid);
  const v1::UidSet& set() const { return set_; }
  v1::UidSet Take() { return std::move(set_); }

 private:
  v1::UidSet set_;
};

// The set of ascending `uids`.
v1::UidSet ToUidSet(const std::vector<uint32_t>& uids);

// QRESYNC (RFC 7162 §3.2.5, §3.2.6). Adds to `found` the UIDs within `within`
// (sorted and merged) that `event` reports expunged, if it is an expunge.
void CollectExpunged(const v1::ChangeEvent& event, const UidRanges& within, UidRanges* found);
// `ranges` sorted and merged, as a UidSet.
v1::UidSet MergedUidSet(UidRanges ranges);
// The UIDs within `within` that the Expunged changes among `events` name, in
// ascending order.
v1::UidSet ExpungedWithin(const std::vector<v1::ChangeEvent>& events, const UidRanges& within);

// The UIDs within `within`, below `uidnext`, that are not among `live`
// (ascending): what may have been expunged when the log no longer tells.
v1::UidSet AbsentWithin(const std::vector<uint32_t>& live, const UidRanges& within,
                        uint32_t uidnext);

// Collects a search's matches, in ascending UID order, into its response: the UID
// set, the highest MODSEQ of all, and those of the first match and of the last one
// within the caller's view (SearchRequest.view_last_uid).
class SearchMatches {
 public:
  explicit SearchMatches(uint32_t view_last_uid) : view_last_uid_(view_last_uid) {}
  void Add(uint32_t uid, uint64_t modseq);
  v1::SearchResponse Take();

 private:
  const uint32_t view_last_uid_;
  UidSetBuilder uids_;
  v1::SearchResponse response_;
};

}  // namespace mailbox::rules
