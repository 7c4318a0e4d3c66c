#include "common/mailbox/uid_sets.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {

namespace {

// Sorts `ranges` and joins overlapping and adjacent ones.
UidRanges Merge(UidRanges ranges) {
  std::sort(ranges.begin(), ranges.end());
  UidRanges merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && static_cast<uint64_t>(merged.back().second) + 1 >= r.first) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

v1::UidSet FromRanges(const UidRanges& ranges) {
  v1::UidSet set;
  for (const auto& [first, last] : ranges) {
    v1::UidRange* range = set.add_ranges();
    range->set_first(first);
    range->set_last(last);
  }
  return set;
}

}  // namespace

absl::StatusOr<UidRanges> NormalizeUidSet(const v1::UidSet& set) {
  if (set.ranges_size() == 0) {
    return v1::BadRequest("the UID set is empty");
  }
  UidRanges ranges;
  ranges.reserve(set.ranges_size());
  for (const v1::UidRange& range : set.ranges()) {
    if (range.first() == 0) {
      return v1::BadRequest("UID 0 is not a valid UID (UIDs start at 1)");
    }
    if (range.first() > range.last()) {
      return v1::BadRequest(absl::StrCat("UID range ", range.first(), ":", range.last(),
                                         " is inverted; send first <= last"));
    }
    ranges.emplace_back(range.first(), range.last());
  }
  return Merge(std::move(ranges));
}

const UidRanges& AllUids() {
  static const auto* all = new UidRanges{{1, std::numeric_limits<uint32_t>::max()}};
  return *all;
}

bool Contains(const v1::UidSet& set, uint32_t uid) {
  return std::any_of(set.ranges().begin(), set.ranges().end(), [&](const v1::UidRange& range) {
    return uid >= range.first() && uid <= range.last();
  });
}

void UidSetBuilder::Add(uint32_t uid) {
  if (set_.ranges_size() > 0 && set_.ranges(set_.ranges_size() - 1).last() + 1 == uid) {
    set_.mutable_ranges(set_.ranges_size() - 1)->set_last(uid);
    return;
  }
  v1::UidRange* range = set_.add_ranges();
  range->set_first(uid);
  range->set_last(uid);
}

void SearchMatches::Add(uint32_t uid, uint64_t modseq) {
  if (uids_.set().ranges_size() == 0) {
    response_.set_first_match_modseq(modseq);
  }
  uids_.Add(uid);
  response_.set_highest_modseq(std::max(response_.highest_modseq(), modseq));
  if (view_last_uid_ == 0 || uid <= view_last_uid_) {
    response_.set_last_match_modseq(modseq);
  }
}

v1::SearchResponse SearchMatches::Take() {
  *response_.mutable_uids() = uids_.Take();
  return std::move(response_);
}

v1::UidSet ToUidSet(const std::vector<uint32_t>& uids) {
  UidSetBuilder builder;
  for (uint32_t uid : uids) {
    builder.Add(uid);
  }
  return builder.Take();
}

void CollectExpunged(const v1::ChangeEvent& event, const UidRanges& within, UidRanges* found) {
  if (!event.has_expunged()) {
    return;
  }
  for (const v1::UidRange& range : event.expunged().uids().ranges()) {
    // `within` is sorted and merged: clip the range to each piece it meets.
    auto it = std::lower_bound(
        within.begin(), within.end(), range.first(),
        [](const std::pair<uint32_t, uint32_t>& piece, uint32_t uid) { return piece.second < uid; });
    for (; it != within.end() && it->first <= range.last(); ++it) {
      found->emplace_back(std::max(it->first, range.first()), std::min(it->second, range.last()));
    }
  }
}

v1::UidSet MergedUidSet(UidRanges ranges) { return FromRanges(Merge(std::move(ranges))); }

v1::UidSet ExpungedWithin(const std::vector<v1::ChangeEvent>& events, const UidRanges& within) {
  UidRanges found;
  for (const v1::ChangeEvent& event : events) {
    CollectExpunged(event, within, &found);
  }
  return MergedUidSet(std::move(found));
}

v1::UidSet AbsentWithin(const std::vector<uint32_t>& live, const UidRanges& within,
                        uint32_t uidnext) {
  UidRanges absent;
  auto next_live = live.begin();
  for (const auto& [first, last_in_set] : within) {
    if (uidnext <= 1 || first >= uidnext) {
      break;
    }
    const uint32_t last = std::min(last_in_set, uidnext - 1);
    next_live = std::lower_bound(next_live, live.end(), first);
    uint64_t from = first;  // the first UID not yet accounted for
    for (; next_live != live.end() && *next_live <= last; ++next_live) {
      if (*next_live > from) {
        absent.emplace_back(static_cast<uint32_t>(from), *next_live - 1);
      }
      from = static_cast<uint64_t>(*next_live) + 1;
    }
    if (from <= last) {
      absent.emplace_back(static_cast<uint32_t>(from), last);
    }
  }
  return FromRanges(Merge(std::move(absent)));
}

}  // namespace mailbox::rules
