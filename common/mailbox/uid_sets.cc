#include "common/mailbox/uid_sets.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {

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

}  // namespace mailbox::rules
