#include "gateway/session/uid_map.h"

#include <algorithm>

namespace gateway {

UidMap::UidMap(const std::vector<std::pair<uint32_t, uint32_t>>& ranges) {
  runs_.reserve(ranges.size());
  for (const auto& [first, last] : ranges) {
    if (first == 0 || last < first || (!runs_.empty() && first <= max_uid())) {
      continue;  // not ascending and disjoint: ignore rather than corrupt the map
    }
    if (!runs_.empty() && first == max_uid() + 1) {
      runs_.back().count += last - first + 1;
    } else {
      runs_.push_back(Run{first, last - first + 1, total_ + 1});
    }
    total_ += last - first + 1;
  }
  runs_.shrink_to_fit();
}

uint32_t UidMap::max_uid() const {
  return runs_.empty() ? 0 : runs_.back().first_uid + runs_.back().count - 1;
}

std::optional<uint32_t> UidMap::UidAt(uint32_t seq) const {
  if (seq == 0 || seq > total_) {
    return std::nullopt;
  }
  auto it = std::upper_bound(runs_.begin(), runs_.end(), seq,
                             [](uint32_t s, const Run& run) { return s < run.first_seq; });
  const Run& run = *std::prev(it);
  return run.first_uid + (seq - run.first_seq);
}

size_t UidMap::RunFor(uint32_t uid) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), uid,
                             [](uint32_t u, const Run& run) { return u < run.first_uid; });
  if (it == runs_.begin()) {
    return 0;
  }
  size_t index = static_cast<size_t>(std::prev(it) - runs_.begin());
  const Run& run = runs_[index];
  return uid < run.first_uid + run.count ? index : index + 1;
}

std::optional<uint32_t> UidMap::SeqOf(uint32_t uid) const {
  size_t index = RunFor(uid);
  if (index >= runs_.size() || uid < runs_[index].first_uid) {
    return std::nullopt;
  }
  return runs_[index].first_seq + (uid - runs_[index].first_uid);
}

uint32_t UidMap::LowerBoundSeq(uint32_t uid) const {
  size_t index = RunFor(uid);
  if (index >= runs_.size()) {
    return total_ + 1;
  }
  const Run& run = runs_[index];
  return uid <= run.first_uid ? run.first_seq : run.first_seq + (uid - run.first_uid);
}

bool UidMap::Append(uint32_t uid) {
  if (uid == 0 || uid <= max_uid()) {
    return false;
  }
  if (!runs_.empty() && uid == max_uid() + 1) {
    ++runs_.back().count;
  } else {
    runs_.push_back(Run{uid, 1, total_ + 1});
  }
  ++total_;
  return true;
}

void UidMap::Renumber(size_t from) {
  uint32_t seq = from == 0 ? 1 : runs_[from - 1].first_seq + runs_[from - 1].count;
  for (size_t i = from; i < runs_.size(); ++i) {
    runs_[i].first_seq = seq;
    seq += runs_[i].count;
  }
}

std::optional<uint32_t> UidMap::Expunge(uint32_t uid) {
  std::optional<uint32_t> seq = SeqOf(uid);
  if (!seq.has_value()) {
    return std::nullopt;
  }
  size_t index = RunFor(uid);
  Run& run = runs_[index];
  const uint32_t offset = uid - run.first_uid;
  if (run.count == 1) {
    runs_.erase(runs_.begin() + static_cast<std::ptrdiff_t>(index));
  } else if (offset == 0) {
    ++run.first_uid;
    --run.count;
    ++index;  // this run's first_seq is unchanged
  } else if (offset == run.count - 1) {
    --run.count;
    ++index;
  } else {
    Run tail{uid + 1, run.count - offset - 1, 0};
    run.count = offset;
    runs_.insert(runs_.begin() + static_cast<std::ptrdiff_t>(index) + 1, tail);
    ++index;
  }
  --total_;
  if (index < runs_.size()) {
    Renumber(index);
  }
  return seq;
}

std::vector<std::pair<uint32_t, uint32_t>> UidMap::UidRangesForSeqs(uint32_t first,
                                                                    uint32_t last) const {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  if (first == 0) {
    first = 1;
  }
  last = std::min(last, total_);
  if (first > last) {
    return out;
  }
  auto it = std::upper_bound(runs_.begin(), runs_.end(), first,
                             [](uint32_t s, const Run& run) { return s < run.first_seq; });
  for (auto run = std::prev(it); run != runs_.end() && run->first_seq <= last; ++run) {
    uint32_t from = std::max(first, run->first_seq);
    uint32_t to = std::min(last, run->first_seq + run->count - 1);
    out.emplace_back(run->first_uid + (from - run->first_seq),
                     run->first_uid + (to - run->first_seq));
  }
  return out;
}

std::vector<std::pair<uint32_t, uint32_t>> UidMap::PresentUidRanges(uint32_t first,
                                                                    uint32_t last) const {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  if (first > last) {
    return out;
  }
  for (size_t i = RunFor(first); i < runs_.size() && runs_[i].first_uid <= last; ++i) {
    const Run& run = runs_[i];
    uint32_t from = std::max(first, run.first_uid);
    uint32_t to = std::min(last, run.first_uid + run.count - 1);
    if (from <= to) {
      out.emplace_back(from, to);
    }
  }
  return out;
}

}  // namespace gateway
