#include "gateway/session/commands/search_mapping.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "common/status_macros.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;
using Kind = imap::SearchKey::Kind;

// Sorted, disjoint intervals to a UidSet. An empty input gives an empty set,
// which the store accepts and which matches nothing.
v1::UidSet ToUidSet(const std::vector<imap::Interval>& intervals) {
  v1::UidSet set;
  for (const imap::Interval& interval : intervals) {
    v1::UidRange* range = set.add_ranges();
    range->set_first(interval.first);
    range->set_last(interval.last);
  }
  return set;
}

v1::UidSet RecentSet(const std::set<uint32_t>& recent) {
  std::vector<uint32_t> uids(recent.begin(), recent.end());
  return ToUidSet(ToRuns(uids));
}

v1::SearchKey FlagKey(const char* flag, bool present) {
  v1::SearchKey key;
  if (present) {
    key.set_flag(flag);
  } else {
    key.set_not_flag(flag);
  }
  return key;
}

v1::SearchKey HeaderKey(const char* field, const std::string& value) {
  v1::SearchKey key;
  key.mutable_header()->set_field(field);
  key.mutable_header()->set_value(value);
  return key;
}

class Mapper {
 public:
  Mapper(const UidMap& map, const std::set<uint32_t>& recent, uint32_t max_uid,
         size_t max_ranges, const std::vector<imap::Interval>* saved)
      : map_(map), recent_(recent), max_uid_(max_uid), max_ranges_(max_ranges), saved_(saved) {}

  bool uses_modseq() const { return uses_modseq_; }

  // The parser bounds the nesting depth (--max-nesting), so the
  // recursion is bounded too.
  absl::StatusOr<v1::SearchKey> Map(const imap::SearchKey& in) {
    v1::SearchKey out;
    switch (in.kind) {
      case Kind::kAll:
        out.set_all(true);
        return out;
      // RFC 3501 §6.4.4: the system-flag keys and their UN- forms.
      case Kind::kAnswered: return FlagKey("\\Answered", true);
      case Kind::kDeleted: return FlagKey("\\Deleted", true);
      case Kind::kDraft: return FlagKey("\\Draft", true);
      case Kind::kFlagged: return FlagKey("\\Flagged", true);
      case Kind::kSeen: return FlagKey("\\Seen", true);
      case Kind::kUnanswered: return FlagKey("\\Answered", false);
      case Kind::kUndeleted: return FlagKey("\\Deleted", false);
      case Kind::kUndraft: return FlagKey("\\Draft", false);
      case Kind::kUnflagged: return FlagKey("\\Flagged", false);
      case Kind::kUnseen: return FlagKey("\\Seen", false);
      // \Recent belongs to this session (it is never stored), so RECENT is the
      // session's own UID set. NEW is "RECENT UNSEEN", OLD is "NOT RECENT".
      case Kind::kRecent:
        RETURN_IF_ERROR(Charge(recent_set().ranges_size()));
        *out.mutable_uid() = recent_set();
        return out;
      case Kind::kNew: {
        RETURN_IF_ERROR(Charge(recent_set().ranges_size()));
        v1::SearchKey::List* both = out.mutable_and_();
        *both->add_keys()->mutable_uid() = recent_set();
        *both->add_keys() = FlagKey("\\Seen", false);
        return out;
      }
      case Kind::kOld:
        RETURN_IF_ERROR(Charge(recent_set().ranges_size()));
        *out.mutable_not_()->mutable_uid() = recent_set();
        return out;
      case Kind::kKeyword:
        out.set_flag(in.text);
        return out;
      case Kind::kUnkeyword:
        out.set_not_flag(in.text);
        return out;
      // The address and subject keys are HEADER searches of that field.
      case Kind::kBcc: return HeaderKey("Bcc", in.text);
      case Kind::kCc: return HeaderKey("Cc", in.text);
      case Kind::kFrom: return HeaderKey("From", in.text);
      case Kind::kSubject: return HeaderKey("Subject", in.text);
      case Kind::kTo: return HeaderKey("To", in.text);
      case Kind::kHeader:
        out.mutable_header()->set_field(in.text);
        out.mutable_header()->set_value(in.value);
        return out;
      case Kind::kBody:
        out.set_body(in.text);
        return out;
      case Kind::kText:
        out.set_text(in.text);
        return out;
      case Kind::kBefore:
        out.set_before(CivilDay(in.date));
        return out;
      case Kind::kOn:
        out.set_on(CivilDay(in.date));
        return out;
      case Kind::kSince:
        out.set_since(CivilDay(in.date));
        return out;
      case Kind::kSentBefore:
        out.set_sent_before(CivilDay(in.date));
        return out;
      case Kind::kSentOn:
        out.set_sent_on(CivilDay(in.date));
        return out;
      case Kind::kSentSince:
        out.set_sent_since(CivilDay(in.date));
        return out;
      // RFC 8514 §4: the store keeps a save date in every mailbox, so
      // SAVEDATESUPPORTED is every message.
      case Kind::kSavedBefore:
        out.set_saved_before(CivilDay(in.date));
        return out;
      case Kind::kSavedOn:
        out.set_saved_on(CivilDay(in.date));
        return out;
      case Kind::kSavedSince:
        out.set_saved_since(CivilDay(in.date));
        return out;
      case Kind::kSaveDateSupported:
        out.set_all(true);
        return out;
      case Kind::kLarger:
        out.set_larger(in.number);
        return out;
      // RFC 8474 §6. No THREADID is ever given out (FETCH THREADID is NIL), so
      // none matches (§5.2).
      case Kind::kEmailId:
        out.set_email_id(in.text);
        return out;
      case Kind::kThreadId:
        out.mutable_not_()->set_all(true);
        return out;
      // RFC 5032: an interval back from now, on the gateway's clock.
      case Kind::kOlder:
        out.set_internal_before_unix(static_cast<int64_t>(std::time(nullptr)) -
                                     static_cast<int64_t>(in.number));
        return out;
      case Kind::kYounger:
        out.set_internal_since_unix(static_cast<int64_t>(std::time(nullptr)) -
                                    static_cast<int64_t>(in.number));
        return out;
      case Kind::kSmaller:
        out.set_smaller(in.number);
        return out;
      case Kind::kSequenceSet:
      case Kind::kUid: {
        std::vector<imap::Interval> uids;
        if (in.set.saved()) {
          // RFC 5182 §2.1: "$" is the saved UIDs, by sequence number or UID alike.
          if (saved_ != nullptr) {
            uids = *saved_;
          }
        } else if (in.kind == Kind::kUid) {
          // "*" is the highest UID in the mailbox as this session knows it.
          uids = in.set.Resolve(max_uid_);
        } else {
          uids = SequenceSetUids(in.set);
        }
        RETURN_IF_ERROR(Charge(uids.size()));
        *out.mutable_uid() = ToUidSet(uids);
        return out;
      }
      case Kind::kModSeq:
        // RFC 7162 §3.1.5: the store keeps one MODSEQ per message, not per
        // flag, so the optional entry name and type are answered with the
        // message's MODSEQ, as that section allows.
        uses_modseq_ = true;
        out.set_modseq(in.number);
        return out;
      case Kind::kNot: {
        if (in.children.size() != 1) {
          return absl::InvalidArgumentError("NOT needs exactly one search key");
        }
        absl::StatusOr<v1::SearchKey> child = Map(in.children[0]);
        if (!child.ok()) {
          return child.status();
        }
        *out.mutable_not_() = *std::move(child);
        return out;
      }
      case Kind::kOr: {
        if (in.children.size() != 2) {
          return absl::InvalidArgumentError("OR needs exactly two search keys");
        }
        absl::StatusOr<v1::SearchKey> a = Map(in.children[0]);
        if (!a.ok()) {
          return a.status();
        }
        absl::StatusOr<v1::SearchKey> b = Map(in.children[1]);
        if (!b.ok()) {
          return b.status();
        }
        *out.mutable_or_()->mutable_a() = *std::move(a);
        *out.mutable_or_()->mutable_b() = *std::move(b);
        return out;
      }
      case Kind::kAnd: {
        if (in.children.empty()) {
          return absl::InvalidArgumentError("empty list of search keys");
        }
        v1::SearchKey::List* list = out.mutable_and_();
        for (const imap::SearchKey& child : in.children) {
          absl::StatusOr<v1::SearchKey> mapped = Map(child);
          if (!mapped.ok()) {
            return mapped.status();
          }
          *list->add_keys() = *std::move(mapped);
        }
        return out;
      }
    }
    return absl::InvalidArgumentError("unknown search key");
  }

 private:
  // Counts `ranges` more UID ranges against the bound of the whole SEARCH.
  absl::Status Charge(size_t ranges) {
    used_ranges_ += ranges;
    if (used_ranges_ > max_ranges_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the search criteria name more than ", max_ranges_,
          " message ranges in total; search with fewer or simpler sets"));
    }
    return absl::OkStatus();
  }

  // Message sequence numbers to the UIDs they stand for in this session's
  // view; numbers beyond the mailbox simply match nothing. Each sequence range
  // becomes one UID range from the UID of its first message to that of its
  // last (see MapSearchKey), so the holes of the mailbox cost nothing.
  std::vector<imap::Interval> SequenceSetUids(const imap::SequenceSet& set) const {
    std::vector<imap::Interval> uids;
    for (const imap::Interval& seqs : set.Resolve(map_.size())) {
      const uint32_t last_seq = std::min(seqs.last, map_.size());
      if (seqs.first == 0 || seqs.first > last_seq) {
        continue;
      }
      std::optional<uint32_t> first_uid = map_.UidAt(seqs.first);
      std::optional<uint32_t> last_uid = map_.UidAt(last_seq);
      if (first_uid.has_value() && last_uid.has_value()) {
        uids.push_back({*first_uid, *last_uid});
      }
    }
    // Sequence ranges are sorted and disjoint, so their UID ranges are too;
    // merging joins neighbours such as 1:3,4:6.
    return imap::MergeIntervals(std::move(uids));
  }

  // \Recent as a UID set, built once per SEARCH however often it is named.
  const v1::UidSet& recent_set() {
    if (!recent_set_.has_value()) {
      recent_set_ = RecentSet(recent_);
    }
    return *recent_set_;
  }

  const UidMap& map_;
  const std::set<uint32_t>& recent_;
  uint32_t max_uid_;
  size_t max_ranges_;
  const std::vector<imap::Interval>* saved_;
  size_t used_ranges_ = 0;
  std::optional<v1::UidSet> recent_set_;
  bool uses_modseq_ = false;
};

}  // namespace

absl::StatusOr<MappedSearch> MapSearchKey(const imap::SearchKey& key, const UidMap& map,
                                          const std::set<uint32_t>& recent, uint32_t max_uid,
                                          size_t max_uid_ranges,
                                          const std::vector<imap::Interval>* saved) {
  Mapper mapper(map, recent, max_uid, max_uid_ranges, saved);
  absl::StatusOr<v1::SearchKey> mapped = mapper.Map(key);
  if (!mapped.ok()) {
    return mapped.status();
  }
  MappedSearch result;
  result.key = *std::move(mapped);
  result.uses_modseq = mapper.uses_modseq();
  return result;
}

int32_t CivilDay(const imap::Date& date) {
  return date.year * 10000 + date.month * 100 + date.day;
}

std::vector<uint32_t> ResultNumbers(const v1::UidSet& uids, const UidMap& map, bool uid) {
  std::vector<uint32_t> numbers;
  for (const v1::UidRange& range : uids.ranges()) {
    for (const auto& [first, last] : map.PresentUidRanges(range.first(), range.last())) {
      // A present run of UIDs has consecutive sequence numbers.
      const uint32_t base = uid ? first : map.SeqOf(first).value_or(0);
      if (base == 0) {
        continue;  // cannot happen: PresentUidRanges only returns UIDs in the map
      }
      for (uint32_t offset = 0; offset <= last - first; ++offset) {
        numbers.push_back(base + offset);
      }
    }
  }
  return numbers;
}

imap::EsearchData MakeEsearchData(const std::vector<uint32_t>& numbers,
                                  const imap::SearchReturnOptions& options) {
  const bool all = options.all || !(options.min || options.max || options.count ||
                                    options.partial.has_value());
  imap::EsearchData data;
  // RFC 4731 §3.1: MIN and MAX are omitted when nothing matched; COUNT is not.
  if (options.min && !numbers.empty()) {
    data.min = numbers.front();
  }
  if (options.max && !numbers.empty()) {
    data.max = numbers.back();
  }
  if (options.count) {
    data.count = static_cast<uint32_t>(numbers.size());
  }
  if (all) {
    data.all = ToRuns(numbers);
  }
  if (options.partial.has_value()) {
    // RFC 5267 §4.4: the messages at positions first..last of the result; the
    // part beyond its end is left out, and a range wholly beyond it is NIL.
    imap::EsearchData::Partial partial;
    partial.first = options.partial->first;
    partial.last = options.partial->last;
    if (partial.first <= numbers.size()) {
      const size_t end = std::min<size_t>(partial.last, numbers.size());
      std::vector<uint32_t> part(numbers.begin() + (partial.first - 1), numbers.begin() + end);
      partial.numbers = ToRuns(part);
    }
    data.partial = std::move(partial);
  }
  return data;
}

std::vector<imap::ContextChange> DiffResults(const std::vector<uint32_t>& before,
                                             const std::vector<uint32_t>& after) {
  std::unordered_set<uint32_t> in_after(after.begin(), after.end());
  std::unordered_set<uint32_t> in_before(before.begin(), before.end());
  // The messages in both, in `after`'s order; one whose place among them moved
  // is treated as removed and added again.
  std::vector<uint32_t> kept_before;
  for (uint32_t uid : before) {
    if (in_after.count(uid) > 0) kept_before.push_back(uid);
  }
  std::vector<uint32_t> kept_after;
  for (uint32_t uid : after) {
    if (in_before.count(uid) > 0) kept_after.push_back(uid);
  }
  if (kept_before != kept_after) {
    // Keep the longest run of `kept_before` that is in order in `kept_after`
    // would be the minimal edit; moving all of them is simpler and still right.
    in_after.clear();
    in_before.clear();
  }
  std::vector<imap::ContextChange> changes;
  auto add_step = [&changes](bool add, uint32_t position, uint32_t uid) {
    if (!changes.empty()) {
      imap::ContextChange& last = changes.back();
      // Only consecutive additions extend a step (the next one lands right
      // after); consecutive removals at the same position do too.
      uint32_t count = 0;
      for (const imap::Interval& run : last.uids) count += run.last - run.first + 1;
      const bool follows = last.add == add &&
                           (add ? position == last.position + count : position == last.position);
      if (follows) {
        if (last.uids.back().last != UINT32_MAX && last.uids.back().last + 1 == uid) {
          last.uids.back().last = uid;
        } else {
          last.uids.push_back({uid, uid});
        }
        return;
      }
    }
    changes.push_back({add, position, {{uid, uid}}});
  };
  uint32_t removed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    if (in_after.count(before[i]) == 0) {
      add_step(false, static_cast<uint32_t>(i - removed + 1), before[i]);
      ++removed;
    }
  }
  for (size_t j = 0; j < after.size(); ++j) {
    if (in_before.count(after[j]) == 0) {
      add_step(true, static_cast<uint32_t>(j + 1), after[j]);
    }
  }
  return changes;
}

std::vector<imap::Interval> ToRuns(const std::vector<uint32_t>& numbers) {
  std::vector<imap::Interval> runs;
  for (uint32_t n : numbers) {
    if (!runs.empty() && runs.back().last != UINT32_MAX && runs.back().last + 1 == n) {
      runs.back().last = n;
    } else {
      runs.push_back({n, n});
    }
  }
  return runs;
}

std::optional<uint32_t> FirstSequenceNumberBeyond(const imap::SequenceSet& set,
                                                  uint32_t size) {
  for (const imap::SequenceRange& range : set.ranges()) {
    if (range.from == imap::SequenceRange::kStar || range.to == imap::SequenceRange::kStar) {
      continue;
    }
    const uint32_t high = std::max(range.from, range.to);
    if (high > size) {
      return high;
    }
  }
  return std::nullopt;
}

std::vector<imap::Interval> UidsToSequenceIntervals(const v1::UidSet& uids, const UidMap& map) {
  std::vector<imap::Interval> seqs;
  for (const v1::UidRange& range : uids.ranges()) {
    for (const auto& [first, last] : map.PresentUidRanges(range.first(), range.last())) {
      if (std::optional<uint32_t> seq = map.SeqOf(first); seq.has_value()) {
        seqs.push_back({*seq, *seq + (last - first)});
      }
    }
  }
  return imap::MergeIntervals(std::move(seqs));
}

std::optional<std::string> SequenceSetError(const imap::SequenceSet& set, bool uid,
                                            uint32_t message_count) {
  if (uid || set.saved()) {
    return std::nullopt;
  }
  std::optional<uint32_t> beyond = FirstSequenceNumberBeyond(set, message_count);
  if (!beyond.has_value()) {
    return std::nullopt;
  }
  return absl::StrCat("Invalid message sequence number ", *beyond, " (the mailbox has ",
                      message_count, " messages)");
}

}  // namespace gateway::commands
