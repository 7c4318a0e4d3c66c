// The message sequence number <-> UID map of a selected mailbox (RFC 3501 §2.3.1.2).
//
// Stored as runs of consecutive UIDs, so a mailbox of a million messages with few
// holes costs a few hundred bytes per session, not 4 MB. Lookups are binary searches
// over the runs; expunging from the middle splits a run (linear in the number of runs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace gateway {

class UidMap {
 public:
  UidMap() = default;
  // `ranges`: ascending, disjoint inclusive UID ranges (as OpenResponse.uids).
  explicit UidMap(const std::vector<std::pair<uint32_t, uint32_t>>& ranges);

  // Number of messages, which is also the highest sequence number.
  uint32_t size() const { return total_; }
  uint32_t max_uid() const;

  // The UID of sequence number `seq` (1-based), if it exists.
  std::optional<uint32_t> UidAt(uint32_t seq) const;
  // The sequence number of `uid`, if present.
  std::optional<uint32_t> SeqOf(uint32_t uid) const;
  // Sequence number of the first message whose UID is >= uid (size()+1 if none).
  uint32_t LowerBoundSeq(uint32_t uid) const;

  // Adds a new message; `uid` must exceed max_uid() (UIDs only grow).
  bool Append(uint32_t uid);
  // Removes `uid`; returns its former sequence number, if it was present. Later
  // sequence numbers shift down by one, as EXPUNGE responses require.
  std::optional<uint32_t> Expunge(uint32_t uid);

  // UID ranges covering sequence numbers [first, last] (clamped to the mailbox).
  std::vector<std::pair<uint32_t, uint32_t>> UidRangesForSeqs(uint32_t first, uint32_t last) const;
  // The present UIDs within [first, last], as ranges.
  std::vector<std::pair<uint32_t, uint32_t>> PresentUidRanges(uint32_t first, uint32_t last) const;

  size_t run_count() const { return runs_.size(); }
  // Heap bytes held (for the memory figures in the docs and the bench).
  size_t MemoryBytes() const { return runs_.capacity() * sizeof(Run); }

 private:
  struct Run {
    uint32_t first_uid;
    uint32_t count;
    uint32_t first_seq;  // sequence number of first_uid
  };
  void Renumber(size_t from);
  // Index of the run containing or following `uid`.
  size_t RunFor(uint32_t uid) const;

  std::vector<Run> runs_;
  uint32_t total_ = 0;
};

}  // namespace gateway
