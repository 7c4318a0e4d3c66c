// libFuzzer target for the SEARCH grammar (RFC 3501 §6.4.4, RFC 9051 §6.4.4,
// RFC 7162 §3.1.5) and sequence sets (RFC 3501 §9).
//
// The first input byte picks the mode and small limits; the rest is either
// SEARCH criteria (wrapped as "<tag> [UID ]SEARCH <bytes>\r\n") or a
// sequence-set token. Properties checked beyond "no crash":
//  * a parsed SEARCH is well formed (kNot has one child, kOr two, kAnd at
//    least one; the nesting stays within the limit; sets are non-empty) and
//    round-trips: ParseCommand(Serialize(c)) == c with either literal form;
//  * a parsed sequence set round-trips through ToString(), resolves to sorted,
//    disjoint, non-adjacent intervals inside [1, max(star, numbers written)],
//    and Contains() agrees with Resolve() at every interval edge.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/parser.h"
#include "gateway/imap/search.h"
#include "gateway/imap/sequence_set.h"
#include "gateway/imap/serialize.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

void CheckSet(const imap::SequenceSet& set, uint32_t star) {
  Check(!set.empty(), "parsed sequence set is empty");
  imap::Result<imap::SequenceSet> again = imap::SequenceSet::Parse(set.ToString());
  Check(again.ok() && *again == set, "sequence set does not round-trip");

  uint32_t highest = star;
  for (const imap::SequenceRange& r : set.ranges()) {
    if (r.from > highest) highest = r.from;
    if (r.to > highest) highest = r.to;
  }
  std::vector<imap::Interval> resolved = set.Resolve(star);
  for (size_t i = 0; i < resolved.size(); ++i) {
    const imap::Interval& v = resolved[i];
    Check(v.first >= 1 && v.first <= v.last, "empty or zero interval");
    Check(v.last <= highest, "interval beyond every number written");
    // Merged: a gap of at least one number between consecutive intervals.
    if (i > 0) Check(resolved[i - 1].last + 1 < v.first, "intervals not merged");
    Check(set.Contains(v.first, star) && set.Contains(v.last, star),
          "Contains() misses a resolved edge");
    if (v.first > 1) {
      Check(!set.Contains(v.first - 1, star), "Contains() beyond a resolved edge");
    }
    if (v.last < UINT32_MAX) {
      Check(!set.Contains(v.last + 1, star), "Contains() beyond a resolved edge");
    }
  }
  Check(!set.Contains(0, star), "Contains(0)");
  Check(imap::MergeIntervals(resolved) == resolved, "Resolve() is not merged");
  if (!resolved.empty()) {
    imap::Result<imap::SequenceSet> formatted =
        imap::SequenceSet::Parse(imap::FormatIntervals(resolved));
    Check(formatted.ok() && formatted->Resolve(star) == resolved,
          "FormatIntervals does not round-trip");
  }
}

void CheckKey(const imap::SearchKey& key, int depth, int max_depth) {
  using Kind = imap::SearchKey::Kind;
  Check(depth <= max_depth + 1, "search nesting beyond the limit");
  switch (key.kind) {
    case Kind::kNot:
      Check(key.children.size() == 1, "NOT without exactly one operand");
      break;
    case Kind::kOr:
      Check(key.children.size() == 2, "OR without exactly two operands");
      break;
    case Kind::kAnd:
      Check(!key.children.empty(), "empty key list");
      break;
    case Kind::kSequenceSet:
    case Kind::kUid:
      Check(!key.set.empty(), "empty set in a search key");
      break;
    default:
      Check(key.children.empty(), "leaf key with children");
  }
  for (const imap::SearchKey& child : key.children) CheckKey(child, depth + 1, max_depth);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t control = data[0];
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  if (control & 0x01) {
    // A sequence-set token; the other bits choose what "*" stands for.
    imap::Result<imap::SequenceSet> set = imap::SequenceSet::Parse(input);
    if (set.ok()) {
      const uint32_t stars[] = {0, 1, control, 65535, UINT32_MAX - 1, UINT32_MAX};
      CheckSet(*set, stars[(control >> 1) % 6]);
    }
    return 0;
  }

  imap::Limits limits;
  if (control & 0x02) limits.max_nesting_depth = 4;
  std::string wire = (control & 0x04) ? "a1 UID SEARCH " : "a1 SEARCH ";
  wire.append(input);
  wire.append("\r\n");
  imap::Result<imap::Command> command = imap::ParseCommand(wire, limits);
  if (!command.ok()) return 0;
  const auto* search = std::get_if<imap::SearchCommand>(&command->body);
  Check(search != nullptr, "SEARCH parsed as another command");
  Check(search->uid == ((control & 0x04) != 0), "UID prefix lost");
  Check(search->criteria.kind == imap::SearchKey::Kind::kAnd, "criteria root not AND");
  CheckKey(search->criteria, 0, limits.max_nesting_depth);
  Check(imap::SearchDepth(search->criteria) <= limits.max_nesting_depth + 1,
        "SearchDepth beyond the limit");
  for (imap::LiteralForm form :
       {imap::LiteralForm::kNonSynchronizing, imap::LiteralForm::kSynchronizing}) {
    imap::Result<imap::Command> again = imap::ParseCommand(imap::Serialize(*command, form), limits);
    Check(again.ok(), "serialized SEARCH does not parse");
    Check(*again == *command, "SEARCH parse -> serialize -> parse changed it");
  }
  return 0;
}
