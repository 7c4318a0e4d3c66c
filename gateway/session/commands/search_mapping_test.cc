#include "gateway/session/commands/search_mapping.h"

#include <ctime>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;
using Kind = imap::SearchKey::Kind;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// UIDs 1-3 and 10-12: sequence numbers 1-6, with a hole between 3 and 4.
UidMap HoleyMap() { return UidMap({{1, 3}, {10, 12}}); }

imap::SearchKey Leaf(Kind kind) {
  imap::SearchKey key;
  key.kind = kind;
  return key;
}

imap::SearchKey WithText(Kind kind, std::string text, std::string value = "") {
  imap::SearchKey key = Leaf(kind);
  key.text = std::move(text);
  key.value = std::move(value);
  return key;
}

imap::SearchKey WithSet(Kind kind, const char* set) {
  imap::SearchKey key = Leaf(kind);
  auto parsed = imap::SequenceSet::Parse(set);
  EXPECT_TRUE(parsed.ok()) << set;
  key.set = std::move(parsed).value();
  return key;
}

imap::SearchKey Node(Kind kind, std::vector<imap::SearchKey> children) {
  imap::SearchKey key = Leaf(kind);
  key.children = std::move(children);
  return key;
}

// Maps `key` with the holey map, recent = {11, 12} and max UID 12, and
// compares with the text-format proto `expected`.
void ExpectMapsTo(const imap::SearchKey& key, const std::string& expected,
                  bool expect_modseq = false) {
  absl::StatusOr<MappedSearch> mapped = MapSearchKey(key, HoleyMap(), {11, 12}, 12);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  v1::SearchKey want;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(expected, &want)) << expected;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(mapped->key, want))
      << "got:  " << mapped->key.ShortDebugString() << "\nwant: " << want.ShortDebugString();
  EXPECT_EQ(mapped->uses_modseq, expect_modseq);
}

TEST(MapSearchKeyTest, SystemFlagsAndTheirNegations) {
  ExpectMapsTo(Leaf(Kind::kAnswered), R"pb(flag: "\\Answered")pb");
  ExpectMapsTo(Leaf(Kind::kDeleted), R"pb(flag: "\\Deleted")pb");
  ExpectMapsTo(Leaf(Kind::kDraft), R"pb(flag: "\\Draft")pb");
  ExpectMapsTo(Leaf(Kind::kFlagged), R"pb(flag: "\\Flagged")pb");
  ExpectMapsTo(Leaf(Kind::kSeen), R"pb(flag: "\\Seen")pb");
  ExpectMapsTo(Leaf(Kind::kUnanswered), R"pb(not_flag: "\\Answered")pb");
  ExpectMapsTo(Leaf(Kind::kUndeleted), R"pb(not_flag: "\\Deleted")pb");
  ExpectMapsTo(Leaf(Kind::kUndraft), R"pb(not_flag: "\\Draft")pb");
  ExpectMapsTo(Leaf(Kind::kUnflagged), R"pb(not_flag: "\\Flagged")pb");
  ExpectMapsTo(Leaf(Kind::kUnseen), R"pb(not_flag: "\\Seen")pb");
  ExpectMapsTo(Leaf(Kind::kAll), R"pb(all: true)pb");
}

TEST(MapSearchKeyTest, KeywordsKeepTheirSpelling) {
  ExpectMapsTo(WithText(Kind::kKeyword, "$Forwarded"), R"pb(flag: "$Forwarded")pb");
  ExpectMapsTo(WithText(Kind::kUnkeyword, "Junk"), R"pb(not_flag: "Junk")pb");
}

TEST(MapSearchKeyTest, OlderAndYoungerBecomeInstantsBackFromNow) {
  imap::SearchKey older = Leaf(Kind::kOlder);
  older.number = 3600;
  const int64_t before = static_cast<int64_t>(std::time(nullptr));
  absl::StatusOr<MappedSearch> mapped = MapSearchKey(older, HoleyMap(), {}, 12);
  const int64_t after = static_cast<int64_t>(std::time(nullptr));
  ASSERT_TRUE(mapped.ok());
  EXPECT_GE(mapped->key.internal_before_unix(), before - 3600);
  EXPECT_LE(mapped->key.internal_before_unix(), after - 3600);
  imap::SearchKey younger = Leaf(Kind::kYounger);
  younger.number = 60;
  mapped = MapSearchKey(younger, HoleyMap(), {}, 12);
  ASSERT_TRUE(mapped.ok());
  EXPECT_GE(mapped->key.internal_since_unix(), before - 60);
}

TEST(MapSearchKeyTest, RecentNewAndOldUseTheSessionsRecentSet) {
  ExpectMapsTo(Leaf(Kind::kRecent), R"pb(uid { ranges { first: 11 last: 12 } })pb");
  // RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT.
  ExpectMapsTo(Leaf(Kind::kNew), R"pb(and {
                                        keys { uid { ranges { first: 11 last: 12 } } }
                                        keys { not_flag: "\\Seen" }
                                      })pb");
  ExpectMapsTo(Leaf(Kind::kOld), R"pb(not { uid { ranges { first: 11 last: 12 } } })pb");
}

TEST(MapSearchKeyTest, EmptyRecentSetMatchesNothing) {
  absl::StatusOr<MappedSearch> mapped = MapSearchKey(Leaf(Kind::kRecent), HoleyMap(), {}, 12);
  ASSERT_TRUE(mapped.ok());
  EXPECT_TRUE(mapped->key.has_uid());
  EXPECT_EQ(mapped->key.uid().ranges_size(), 0);
}

TEST(MapSearchKeyTest, SequenceSetsBecomeUidsOfTheView) {
  // Sequence numbers 2-4 are UIDs 2, 3 and 10: one UID range from the first
  // to the last, across the hole (UIDs 4-9 are not in the view, so results
  // never show them).
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "2:4"), R"pb(uid { ranges { first: 2 last: 10 } })pb");
  // "*" is the last message (sequence number 6 = UID 12).
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "*"), R"pb(uid { ranges { first: 12 last: 12 } })pb");
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "1:*"), R"pb(uid { ranges { first: 1 last: 12 } })pb");
  // Separate sequence ranges stay separate; adjacent ones merge.
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "1,3,5"),
               R"pb(uid {
                      ranges { first: 1 last: 1 }
                      ranges { first: 3 last: 3 }
                      ranges { first: 11 last: 11 }
                    })pb");
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "1:2,3:4"),
               R"pb(uid { ranges { first: 1 last: 10 } })pb");
  // Partly beyond the mailbox: clamped to the last message.
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "5:9"), R"pb(uid { ranges { first: 11 last: 12 } })pb");
  // Beyond the mailbox: matches nothing, no error.
  ExpectMapsTo(WithSet(Kind::kSequenceSet, "7:9"), R"pb(uid {})pb");
}

TEST(MapSearchKeyTest, UidSetsResolveStarToTheHighestUid) {
  ExpectMapsTo(WithSet(Kind::kUid, "5:*"), R"pb(uid { ranges { first: 5 last: 12 } })pb");
  // "20:*" with highest UID 12 is 12:20 (RFC 9051 §9 seq-range).
  ExpectMapsTo(WithSet(Kind::kUid, "20:*"), R"pb(uid { ranges { first: 12 last: 20 } })pb");
  ExpectMapsTo(WithSet(Kind::kUid, "1,3,7"),
               R"pb(uid {
                      ranges { first: 1 last: 1 }
                      ranges { first: 3 last: 3 }
                      ranges { first: 7 last: 7 }
                    })pb");
}

TEST(MapSearchKeyTest, AddressAndSubjectKeysAreHeaderSearches) {
  ExpectMapsTo(WithText(Kind::kFrom, "alice"),
               R"pb(header { field: "From" value: "alice" })pb");
  ExpectMapsTo(WithText(Kind::kTo, "bob"), R"pb(header { field: "To" value: "bob" })pb");
  ExpectMapsTo(WithText(Kind::kCc, "c"), R"pb(header { field: "Cc" value: "c" })pb");
  ExpectMapsTo(WithText(Kind::kBcc, "d"), R"pb(header { field: "Bcc" value: "d" })pb");
  ExpectMapsTo(WithText(Kind::kSubject, "hi"),
               R"pb(header { field: "Subject" value: "hi" })pb");
  ExpectMapsTo(WithText(Kind::kHeader, "X-Spam", ""),
               R"pb(header { field: "X-Spam" value: "" })pb");
  ExpectMapsTo(WithText(Kind::kBody, "needle"), R"pb(body: "needle")pb");
  ExpectMapsTo(WithText(Kind::kText, "needle"), R"pb(text: "needle")pb");
}

TEST(MapSearchKeyTest, DatesAreCivilDays) {
  imap::SearchKey key = Leaf(Kind::kSince);
  key.date = {.year = 1994, .month = 2, .day = 7};
  ExpectMapsTo(key, R"pb(since: 19940207)pb");
  key.kind = Kind::kBefore;
  ExpectMapsTo(key, R"pb(before: 19940207)pb");
  key.kind = Kind::kOn;
  ExpectMapsTo(key, R"pb(on: 19940207)pb");
  key.kind = Kind::kSentBefore;
  ExpectMapsTo(key, R"pb(sent_before: 19940207)pb");
  key.kind = Kind::kSentOn;
  ExpectMapsTo(key, R"pb(sent_on: 19940207)pb");
  key.kind = Kind::kSentSince;
  ExpectMapsTo(key, R"pb(sent_since: 19940207)pb");
  EXPECT_EQ(CivilDay({.year = 2024, .month = 12, .day = 31}), 20241231);
}

TEST(MapSearchKeyTest, SizesAndModSeq) {
  imap::SearchKey larger = Leaf(Kind::kLarger);
  larger.number = 1000;
  ExpectMapsTo(larger, R"pb(larger: 1000)pb");
  imap::SearchKey smaller = Leaf(Kind::kSmaller);
  smaller.number = 5;
  ExpectMapsTo(smaller, R"pb(smaller: 5)pb");
  imap::SearchKey modseq = Leaf(Kind::kModSeq);
  modseq.number = 620162338;
  modseq.text = "/flags/\\draft";
  modseq.value = "all";
  ExpectMapsTo(modseq, R"pb(modseq: 620162338)pb", /*expect_modseq=*/true);
}

TEST(MapSearchKeyTest, CombinatorsNest) {
  imap::SearchKey modseq = Leaf(Kind::kModSeq);
  modseq.number = 3;
  imap::SearchKey key = Node(
      Kind::kAnd,
      {Node(Kind::kOr, {Leaf(Kind::kSeen), Node(Kind::kNot, {Leaf(Kind::kFlagged)})}),
       Node(Kind::kAnd, {modseq})});
  ExpectMapsTo(key, R"pb(and {
                           keys {
                             or {
                               a { flag: "\\Seen" }
                               b { not { flag: "\\Flagged" } }
                             }
                           }
                           keys { and { keys { modseq: 3 } } }
                         })pb",
               /*expect_modseq=*/true);
}

TEST(MapSearchKeyTest, MalformedTreesAreErrorsNotCrashes) {
  EXPECT_FALSE(MapSearchKey(Node(Kind::kOr, {Leaf(Kind::kSeen)}), HoleyMap(), {}, 12).ok());
  EXPECT_FALSE(MapSearchKey(Node(Kind::kNot, {}), HoleyMap(), {}, 12).ok());
  EXPECT_FALSE(MapSearchKey(Node(Kind::kAnd, {}), HoleyMap(), {}, 12).ok());
  // An error deep inside is passed up.
  EXPECT_FALSE(
      MapSearchKey(Node(Kind::kAnd, {Node(Kind::kNot, {Node(Kind::kOr, {})})}), HoleyMap(), {},
                   12)
          .ok());
}

// A mailbox of 2,000 messages with every other one expunged: 1,000 holes.
UidMap GappyMap() {
  std::vector<std::pair<uint32_t, uint32_t>> runs;
  for (uint32_t uid = 1; uid < 2000; uid += 2) {
    runs.emplace_back(uid, uid);
  }
  return UidMap(runs);
}

size_t TotalRanges(const v1::SearchKey& key) {
  size_t total = key.uid().ranges_size();
  for (const v1::SearchKey& child : key.and_().keys()) {
    total += TotalRanges(child);
  }
  if (key.has_not_()) total += TotalRanges(key.not_());
  if (key.has_or_()) total += TotalRanges(key.or_().a()) + TotalRanges(key.or_().b());
  return total;
}

TEST(MapSearchKeyTest, HolesDoNotMultiplyTheRanges) {
  // "SEARCH 1:* 1:* ... 1:*" used to cost one UID range per hole per key
  // (1,000 x 2,000 here); now each key is one range.
  const UidMap map = GappyMap();
  std::vector<imap::SearchKey> keys(2000, WithSet(Kind::kSequenceSet, "1:*"));
  absl::StatusOr<MappedSearch> mapped =
      MapSearchKey(Node(Kind::kAnd, std::move(keys)), map, {}, map.max_uid());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(TotalRanges(mapped->key), 2000u);
  EXPECT_EQ(mapped->key.and_().keys(0).uid().ranges(0).first(), 1u);
  EXPECT_EQ(mapped->key.and_().keys(0).uid().ranges(0).last(), 1999u);
}

TEST(MapSearchKeyTest, TotalUidRangesAreBoundedExactly) {
  const UidMap map = GappyMap();
  // 2:3,5:6 -> two ranges per key; \Recent of three separate UIDs -> three.
  auto keys = [](int sets, int recents) {
    std::vector<imap::SearchKey> out;
    for (int i = 0; i < sets; ++i) out.push_back(WithSet(Kind::kSequenceSet, "2:3,5:6"));
    for (int i = 0; i < recents; ++i) out.push_back(Leaf(Kind::kRecent));
    return Node(Kind::kAnd, std::move(out));
  };
  const std::set<uint32_t> recent = {1, 5, 9};
  // 3 x 2 + 2 x 3 = 12 ranges: exactly at a bound of 12.
  absl::StatusOr<MappedSearch> at = MapSearchKey(keys(3, 2), map, recent, map.max_uid(), 12);
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(TotalRanges(at->key), 12u);
  // One range more is refused, whichever key crosses the bound.
  absl::StatusOr<MappedSearch> over = MapSearchKey(keys(3, 2), map, recent, map.max_uid(), 11);
  EXPECT_TRUE(absl::IsResourceExhausted(over.status())) << over.status();
  EXPECT_THAT(std::string(over.status().message()), ::testing::HasSubstr("11"));
  // UID sets, under NOT and OR, count as well.
  imap::SearchKey nested =
      Node(Kind::kOr, {Node(Kind::kNot, {WithSet(Kind::kUid, "1,3,5")}),
                       WithSet(Kind::kUid, "7,9")});
  EXPECT_TRUE(MapSearchKey(nested, map, {}, map.max_uid(), 5).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(
      MapSearchKey(nested, map, {}, map.max_uid(), 4).status()));
  // NEW and OLD use the \Recent set too.
  EXPECT_TRUE(MapSearchKey(Node(Kind::kAnd, {Leaf(Kind::kNew), Leaf(Kind::kOld)}), map, recent,
                           map.max_uid(), 6)
                  .ok());
  EXPECT_TRUE(absl::IsResourceExhausted(
      MapSearchKey(Node(Kind::kAnd, {Leaf(Kind::kNew), Leaf(Kind::kOld)}), map, recent,
                   map.max_uid(), 5)
          .status()));
}

TEST(MapSearchKeyTest, EmptyMailbox) {
  UidMap empty;
  absl::StatusOr<MappedSearch> mapped =
      MapSearchKey(WithSet(Kind::kSequenceSet, "1:*"), empty, {}, 0);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(mapped->key.uid().ranges_size(), 0);
}

v1::UidSet Uids(std::vector<std::pair<uint32_t, uint32_t>> ranges) {
  v1::UidSet set;
  for (const auto& [first, last] : ranges) {
    v1::UidRange* range = set.add_ranges();
    range->set_first(first);
    range->set_last(last);
  }
  return set;
}

TEST(ResultNumbersTest, SequenceNumbersAndUidsOfTheView) {
  const UidMap map = HoleyMap();
  // UID 13 is not announced to the client yet; UIDs 4-9 do not exist.
  const v1::UidSet result = Uids({{2, 3}, {5, 5}, {11, 13}});
  EXPECT_THAT(ResultNumbers(result, map, /*uid=*/false), ElementsAre(2, 3, 5, 6));
  EXPECT_THAT(ResultNumbers(result, map, /*uid=*/true), ElementsAre(2, 3, 11, 12));
  EXPECT_THAT(ResultNumbers(v1::UidSet(), map, false), IsEmpty());
}

TEST(ResultNumbersTest, SequenceIntervals) {
  const UidMap map = HoleyMap();
  EXPECT_THAT(UidsToSequenceIntervals(Uids({{3, 10}, {12, 20}}), map),
              ElementsAre(imap::Interval{3, 4}, imap::Interval{6, 6}));
}

TEST(MakeEsearchDataTest, NoOptionMeansAll) {
  imap::EsearchData data = MakeEsearchData({1, 2, 3, 7}, {});
  ASSERT_TRUE(data.all.has_value());
  EXPECT_THAT(*data.all, ElementsAre(imap::Interval{1, 3}, imap::Interval{7, 7}));
  EXPECT_FALSE(data.min.has_value());
  EXPECT_FALSE(data.max.has_value());
  EXPECT_FALSE(data.count.has_value());
}

TEST(MakeEsearchDataTest, MinMaxCount) {
  imap::SearchReturnOptions options;
  options.min = options.max = options.count = true;
  imap::EsearchData data = MakeEsearchData({4, 9, 10}, options);
  EXPECT_EQ(data.min, 4u);
  EXPECT_EQ(data.max, 10u);
  EXPECT_EQ(data.count, 3u);
  EXPECT_FALSE(data.all.has_value());
  EXPECT_EQ(imap::EsearchResponse("A1", true, data),
            "* ESEARCH (TAG \"A1\") UID MIN 4 MAX 10 COUNT 3\r\n");
}

TEST(MakeEsearchDataTest, NothingMatched) {
  imap::SearchReturnOptions options;
  options.min = options.max = options.count = options.all = true;
  imap::EsearchData data = MakeEsearchData({}, options);
  // RFC 4731 §3.1: only COUNT 0 is sent.
  EXPECT_EQ(imap::EsearchResponse("A1", false, data), "* ESEARCH (TAG \"A1\") COUNT 0\r\n");
}

TEST(MakeEsearchDataTest, SortOrderMinMaxAndAll) {
  // RFC 5267 §3.1: in a sorted result MIN and MAX are its first and last.
  imap::SearchReturnOptions options;
  options.min = options.max = options.all = true;
  imap::EsearchData data = MakeEsearchData({9, 2, 3, 4, 1}, options);
  EXPECT_EQ(imap::EsearchResponse("A1", false, data),
            "* ESEARCH (TAG \"A1\") MIN 9 MAX 1 ALL 9,2:4,1\r\n");
}

TEST(MakeEsearchDataTest, PartialRanges) {
  // RFC 5267 §4.4: positions in result order, clipped to its end; a range past
  // the end is NIL; PARTIAL alone does not mean ALL.
  const std::vector<uint32_t> result = {8, 3, 4, 5, 1};
  auto partial = [&result](uint32_t first, uint32_t last, bool count = false) {
    imap::SearchReturnOptions options;
    options.partial = imap::SearchReturnOptions::Range{first, last};
    options.count = count;
    return imap::EsearchResponse("t", true, MakeEsearchData(result, options));
  };
  EXPECT_EQ(partial(2, 4), "* ESEARCH (TAG \"t\") UID PARTIAL (2:4 3:5)\r\n");
  EXPECT_EQ(partial(1, 1), "* ESEARCH (TAG \"t\") UID PARTIAL (1:1 8)\r\n");
  EXPECT_EQ(partial(4, 100, true), "* ESEARCH (TAG \"t\") UID COUNT 5 PARTIAL (4:100 5,1)\r\n");
  EXPECT_EQ(partial(5, 5), "* ESEARCH (TAG \"t\") UID PARTIAL (5:5 1)\r\n");
  EXPECT_EQ(partial(6, 10), "* ESEARCH (TAG \"t\") UID PARTIAL (6:10 NIL)\r\n");
  EXPECT_EQ(partial(4294967295u, 4294967295u),
            "* ESEARCH (TAG \"t\") UID PARTIAL (4294967295:4294967295 NIL)\r\n");
  imap::SearchReturnOptions options;
  options.partial = imap::SearchReturnOptions::Range{1, 10};
  EXPECT_EQ(imap::EsearchResponse("t", false, MakeEsearchData({}, options)),
            "* ESEARCH (TAG \"t\") PARTIAL (1:10 NIL)\r\n");
}

std::string Changes(const std::vector<uint32_t>& before, const std::vector<uint32_t>& after) {
  return imap::ContextUpdateResponse("t", DiffResults(before, after));
}

TEST(DiffResultsTest, AdditionsAndRemovalsAtTheirPositions) {
  EXPECT_THAT(DiffResults({1, 2, 3}, {1, 2, 3}), IsEmpty());
  EXPECT_EQ(Changes({1, 2, 3}, {1, 2, 3, 7}), "* ESEARCH (TAG \"t\") UID ADDTO (4 7)\r\n");
  EXPECT_EQ(Changes({}, {5, 6, 9}), "* ESEARCH (TAG \"t\") UID ADDTO (1 5:6,9)\r\n");
  EXPECT_EQ(Changes({1, 2, 3}, {1, 3}), "* ESEARCH (TAG \"t\") UID REMOVEFROM (2 2)\r\n");
  // Neighbours removed together share a step; the positions are those of the
  // list as each step leaves it.
  EXPECT_EQ(Changes({1, 2, 3, 4, 5}, {1, 4}),
            "* ESEARCH (TAG \"t\") UID REMOVEFROM (2 2:3) REMOVEFROM (3 5)\r\n");
  // Sort order: a new message sorting first goes to position 1.
  EXPECT_EQ(Changes({30, 10, 20}, {40, 30, 20}),
            "* ESEARCH (TAG \"t\") UID REMOVEFROM (2 10) ADDTO (1 40)\r\n");
  EXPECT_EQ(Changes({30, 20}, {30, 41, 40, 20}),
            "* ESEARCH (TAG \"t\") UID ADDTO (2 41,40)\r\n");
}

TEST(DiffResultsTest, ReorderedMessagesAreRemovedAndAddedAgain) {
  EXPECT_EQ(Changes({1, 2}, {2, 1}),
            "* ESEARCH (TAG \"t\") UID REMOVEFROM (1 1:2) ADDTO (1 2,1)\r\n");
}

TEST(ToRunsTest, KeepsOrder) {
  EXPECT_THAT(ToRuns({3, 4, 5, 9, 1}), ElementsAre(imap::Interval{3, 5}, imap::Interval{9, 9},
                                                   imap::Interval{1, 1}));
  EXPECT_THAT(ToRuns({}), IsEmpty());
  EXPECT_THAT(ToRuns({4294967295u, 1}),
              ElementsAre(imap::Interval{4294967295u, 4294967295u}, imap::Interval{1, 1}));
}

TEST(FirstSequenceNumberBeyondTest, OnlyExplicitNumbersCount) {
  auto set = [](const char* text) { return imap::SequenceSet::Parse(text).value(); };
  EXPECT_EQ(FirstSequenceNumberBeyond(set("1:6"), 6), std::nullopt);
  EXPECT_EQ(FirstSequenceNumberBeyond(set("1,7"), 6), 7u);
  EXPECT_EQ(FirstSequenceNumberBeyond(set("9:2"), 6), 9u);
  EXPECT_EQ(FirstSequenceNumberBeyond(set("9:*"), 6), std::nullopt);
  EXPECT_EQ(FirstSequenceNumberBeyond(set("*"), 0), std::nullopt);
  EXPECT_EQ(FirstSequenceNumberBeyond(set("1"), 0), 1u);
}

}  // namespace
}  // namespace gateway::commands
