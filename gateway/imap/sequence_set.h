// IMAP sequence sets (RFC 3501 §9 "sequence-set", RFC 9051 §9).
//
// A SequenceSet keeps the ranges as the client wrote them (so it serializes
// back compactly and round-trips), with "*" kept symbolic. Resolve() turns it
// into sorted, merged intervals once the session knows what "*" stands for
// (the number of messages, or the highest UID) without expanding numbers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/result.h"

namespace imap {

// A closed interval [first, last] of message numbers or UIDs, first <= last.
struct Interval {
  uint32_t first = 0;
  uint32_t last = 0;

  bool operator==(const Interval&) const = default;
};

// One element of a sequence set as written: "n", "*", "a:b" (either order).
// kStar marks "*"; 0 is otherwise not a valid sequence number.
struct SequenceRange {
  static constexpr uint32_t kStar = 0;
  uint32_t from = 0;
  uint32_t to = 0;  // equal to `from` for a single number

  bool operator==(const SequenceRange&) const = default;
};

class SequenceSet {
 public:
  SequenceSet() = default;

  // Parses "1:*,*:1,4294967295,5:3". Rejects 0, numbers above 2^32-1,
  // leading zeros, empty elements and anything else outside the ABNF.
  static Result<SequenceSet> Parse(std::string_view text);

  // Builds a set from intervals (e.g. for APPENDUID/COPYUID response codes).
  static SequenceSet FromIntervals(const std::vector<Interval>& intervals);
  // RFC 5182 "$": the messages the last SEARCH RETURN (SAVE) saved. It has no
  // ranges of its own; the session resolves it.
  static SequenceSet Saved();
  bool saved() const { return saved_; }

  // Appends one element; either endpoint may be SequenceRange::kStar.
  void Add(uint32_t from, uint32_t to);
  void Add(uint32_t number) { Add(number, number); }

  const std::vector<SequenceRange>& ranges() const { return ranges_; }
  bool empty() const { return ranges_.empty() && !saved_; }
  bool HasStar() const;

  // Substitutes `star_value` for "*" and returns sorted, merged, disjoint
  // intervals. Memory is proportional to the number of ranges written, never
  // to the numbers covered. If star_value is 0 (empty mailbox) a lone "*"
  // contributes nothing and "n:*" contributes [1, n].
  std::vector<Interval> Resolve(uint32_t star_value) const;

  // True if `number` is in the set once "*" is `star_value`.
  bool Contains(uint32_t number, uint32_t star_value) const;

  // The wire form, e.g. "1:*,5,7:9", or "$". Requires !empty().
  std::string ToString() const;

  bool operator==(const SequenceSet&) const = default;

 private:
  std::vector<SequenceRange> ranges_;
  bool saved_ = false;
};

// Formats sorted disjoint intervals compactly: "1:3,5,9:12".
std::string FormatIntervals(const std::vector<Interval>& intervals);

// Merges arbitrary intervals into sorted disjoint ones (adjacent ones joined).
std::vector<Interval> MergeIntervals(std::vector<Interval> intervals);

}  // namespace imap
