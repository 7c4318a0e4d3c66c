#include "gateway/imap/sequence_set.h"

#include <algorithm>

namespace imap {
namespace {

// RFC 3501 §9: seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT,
// a 32-bit unsigned value.
bool ParseSeqNumber(std::string_view text, uint32_t* out, std::string* why) {
  if (text == "*") {
    *out = SequenceRange::kStar;
    return true;
  }
  if (text.empty()) {
    *why = "empty element";
    return false;
  }
  if (text[0] == '0') {
    *why = text.size() == 1 ? "0 is not a valid sequence number or UID"
                            : "numbers must not have leading zeros";
    return false;
  }
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      *why = "unexpected character '" + std::string(1, c) + "'";
      return false;
    }
    value = value * 10 + static_cast<uint64_t>(c - '0');
    if (value > UINT32_MAX) {
      *why = "number exceeds 4294967295";
      return false;
    }
  }
  *out = static_cast<uint32_t>(value);
  return true;
}

void AppendNumber(std::string& out, uint32_t n) {
  if (n == SequenceRange::kStar) {
    out += '*';
  } else {
    out += std::to_string(n);
  }
}

}  // namespace

Result<SequenceSet> SequenceSet::Parse(std::string_view text) {
  SequenceSet set;
  if (text.empty()) {
    return Error{"empty sequence set"};
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view element = text.substr(start, comma - start);
    size_t colon = element.find(':');
    std::string why;
    uint32_t from = 0;
    uint32_t to = 0;
    bool ok;
    if (colon == std::string_view::npos) {
      ok = ParseSeqNumber(element, &from, &why);
      to = from;
    } else {
      ok = ParseSeqNumber(element.substr(0, colon), &from, &why) &&
           ParseSeqNumber(element.substr(colon + 1), &to, &why);
    }
    if (!ok) {
      return Error{"invalid sequence set \"" + std::string(text.substr(0, 64)) +
                   "\": " + why};
    }
    set.ranges_.push_back({from, to});
    start = comma + 1;
    if (comma == text.size()) break;
  }
  return set;
}

SequenceSet SequenceSet::FromIntervals(const std::vector<Interval>& intervals) {
  SequenceSet set;
  for (const Interval& i : intervals) set.Add(i.first, i.last);
  return set;
}

void SequenceSet::Add(uint32_t from, uint32_t to) { ranges_.push_back({from, to}); }

SequenceSet SequenceSet::Saved() {
  SequenceSet set;
  set.saved_ = true;
  return set;
}

bool SequenceSet::HasStar() const {
  return std::any_of(ranges_.begin(), ranges_.end(), [](const SequenceRange& r) {
    return r.from == SequenceRange::kStar || r.to == SequenceRange::kStar;
  });
}

std::vector<Interval> MergeIntervals(std::vector<Interval> intervals) {
  std::sort(intervals.begin(), intervals.end(),
            [](const Interval& a, const Interval& b) { return a.first < b.first; });
  std::vector<Interval> merged;
  for (const Interval& i : intervals) {
    // Join overlapping and adjacent intervals; last == UINT32_MAX cannot be
    // followed by anything, so the +1 is guarded.
    if (!merged.empty() && (merged.back().last == UINT32_MAX ||
                            i.first <= merged.back().last + 1)) {
      merged.back().last = std::max(merged.back().last, i.last);
    } else {
      merged.push_back(i);
    }
  }
  return merged;
}

std::vector<Interval> SequenceSet::Resolve(uint32_t star_value) const {
  std::vector<Interval> intervals;
  intervals.reserve(ranges_.size());
  for (const SequenceRange& r : ranges_) {
    uint32_t a = r.from == SequenceRange::kStar ? star_value : r.from;
    uint32_t b = r.to == SequenceRange::kStar ? star_value : r.to;
    // RFC 3501 §9: "a:b" includes both ends whatever their order.
    uint32_t lo = std::min(a, b);
    uint32_t hi = std::max(a, b);
    if (hi == 0) continue;  // a lone "*" in an empty mailbox
    if (lo == 0) lo = 1;
    intervals.push_back({lo, hi});
  }
  return MergeIntervals(std::move(intervals));
}

bool SequenceSet::Contains(uint32_t number, uint32_t star_value) const {
  for (const SequenceRange& r : ranges_) {
    uint32_t a = r.from == SequenceRange::kStar ? star_value : r.from;
    uint32_t b = r.to == SequenceRange::kStar ? star_value : r.to;
    if (number != 0 && number >= std::min(a, b) && number <= std::max(a, b)) {
      return true;
    }
  }
  return false;
}

std::string SequenceSet::ToString() const {
  if (saved_) return "$";
  std::string out;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    if (i > 0) out += ',';
    AppendNumber(out, ranges_[i].from);
    if (ranges_[i].to != ranges_[i].from) {
      out += ':';
      AppendNumber(out, ranges_[i].to);
    }
  }
  return out;
}

std::string FormatIntervals(const std::vector<Interval>& intervals) {
  std::string out;
  for (size_t i = 0; i < intervals.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(intervals[i].first);
    if (intervals[i].last != intervals[i].first) {
      out += ':';
      out += std::to_string(intervals[i].last);
    }
  }
  return out;
}

}  // namespace imap
