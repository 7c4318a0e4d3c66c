#include "mailbox-service/store/search.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {
namespace {

using ::testing::HasSubstr;
using v1::SearchKey;

// A SearchMessage over a raw message, parsed with the real MIME parser. It
// counts the lazy loads so tests can check that cheap keys short-circuit.
class FakeSearchMessage : public SearchMessage {
 public:
  explicit FakeSearchMessage(std::string raw) : raw_(std::move(raw)) {
    auto parsed = mime::Parse(raw_);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (parsed.ok()) parsed_ = *std::move(parsed);
  }

  FakeSearchMessage& Uid(uint32_t v) { uid_ = v; return *this; }
  FakeSearchMessage& Modseq(uint64_t v) { modseq_ = v; return *this; }
  FakeSearchMessage& Flags(std::vector<std::string> v) { flags_ = std::move(v); return *this; }
  FakeSearchMessage& Internal(int64_t unix, int32_t tz) {
    internal_unix_ = unix;
    internal_tz_ = tz;
    return *this;
  }
  FakeSearchMessage& Saved(std::optional<int64_t> unix) {
    save_date_ = unix;
    return *this;
  }

  uint32_t uid() const override { return uid_; }
  std::string_view content_sha256() override { return "fake-sha256-of-the-content"; }
  std::optional<int64_t> save_date_unix() const override { return save_date_; }
  uint64_t modseq() const override { return modseq_; }
  const std::vector<std::string>& flags() const override { return flags_; }
  int64_t internal_date_unix() const override { return internal_unix_; }
  int32_t internal_date_tz_minutes() const override { return internal_tz_; }
  uint64_t size() const override { return raw_.size(); }
  std::optional<int32_t> sent_date() override {
    ++sent_date_loads;
    return parsed_.sent_date;
  }
  std::string_view header_block() override {
    ++header_loads;
    return std::string_view(raw_).substr(parsed_.root.header_begin,
                                         parsed_.root.header_end - parsed_.root.header_begin);
  }
  const mime::ParsedMessage& parsed() override {
    ++parsed_loads;
    return parsed_;
  }
  std::string_view content() override {
    ++content_loads;
    return raw_;
  }

  int sent_date_loads = 0;
  int header_loads = 0;
  int parsed_loads = 0;
  int content_loads = 0;

 private:
  std::string raw_;
  mime::ParsedMessage parsed_;
  uint32_t uid_ = 1;
  uint64_t modseq_ = 1;
  std::vector<std::string> flags_;
  int64_t internal_unix_ = 0;
  int32_t internal_tz_ = 0;
  std::optional<int64_t> save_date_;
};

// ---- key builders ----

SearchKey All() {
  SearchKey k;
  k.set_all(true);
  return k;
}
SearchKey Uids(std::vector<std::pair<uint32_t, uint32_t>> ranges) {
  SearchKey k;
  v1::UidSet* set = k.mutable_uid();
  for (auto [first, last] : ranges) {
    v1::UidRange* r = set->add_ranges();
    r->set_first(first);
    r->set_last(last);
  }
  return k;
}
SearchKey Flag(std::string f) {
  SearchKey k;
  k.set_flag(std::move(f));
  return k;
}
SearchKey NotFlag(std::string f) {
  SearchKey k;
  k.set_not_flag(std::move(f));
  return k;
}
SearchKey Header(std::string field, std::string value) {
  SearchKey k;
  k.mutable_header()->set_field(std::move(field));
  k.mutable_header()->set_value(std::move(value));
  return k;
}
SearchKey Body(std::string s) {
  SearchKey k;
  k.set_body(std::move(s));
  return k;
}
SearchKey Text(std::string s) {
  SearchKey k;
  k.set_text(std::move(s));
  return k;
}
SearchKey And(std::vector<SearchKey> keys) {
  SearchKey k;
  k.mutable_and_();  // an empty list is still an AND
  for (SearchKey& c : keys) *k.mutable_and_()->add_keys() = std::move(c);
  return k;
}
SearchKey Or(SearchKey a, SearchKey b) {
  SearchKey k;
  *k.mutable_or_()->mutable_a() = std::move(a);
  *k.mutable_or_()->mutable_b() = std::move(b);
  return k;
}
SearchKey Not(SearchKey a) {
  SearchKey k;
  *k.mutable_not_() = std::move(a);
  return k;
}
SearchKey Modseq(uint64_t v) {
  SearchKey k;
  k.set_modseq(v);
  return k;
}

v1::SearchRequest Request(SearchKey key, std::string charset = "UTF-8") {
  v1::SearchRequest r;
  r.set_charset(std::move(charset));
  *r.mutable_key() = std::move(key);
  return r;
}

constexpr char kSimple[] =
    "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <jm@example.com>\r\n"
    "To: Ann <ann@example.org>, bob@example.net\r\n"
    "Cc: carol@example.com\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"  // "Grüße aus Köln"
    "Date: Mon, 01 Apr 2024 23:59:59 -1000\r\n"
    "X-Folded: first part\r\n"
    "\tsecond part\r\n"
    "Received: from a\r\n"
    "Received: from relay.example by mx\r\n"
    "X-Empty:\r\n"
    "\r\n"
    "Hello World, this is the body.\r\n";

// ---------------------------------------------------------------------------
// Case folding and helpers

std::string Fold(std::string_view s) {
  std::string out;
  search_internal::AppendCaseFolded(s, &out);
  return out;
}

TEST(CaseFoldTest, AsciiAndUnicodeBlocks) {
  EXPECT_EQ(Fold("HeLLo 123"), "hello 123");
  EXPECT_EQ(Fold("ÄÖÜ ÀÉÎ Þ"), "äöü àéî þ");
  EXPECT_EQ(Fold("×÷ß"), "×÷ß");        // not letters / no simple fold
  EXPECT_EQ(Fold("ĀĄŁŃŽŸ"), "āąłńžÿ");  // Latin Extended-A, both parities
  EXPECT_EQ(Fold("ſ"), "s");
  EXPECT_EQ(Fold("ΣΟΦΊΑ ς"), "σοφία σ");  // Greek, final sigma
  EXPECT_EQ(Fold("ПРИВЕТ ЁЖ Ї"), "привет ёж ї");
  EXPECT_EQ(Fold("ẞ Ạ"), "ß ạ");
  EXPECT_EQ(Fold("\xE2\x84\xAA"), "k");  // KELVIN SIGN
  EXPECT_EQ(Fold("µ"), "μ");
  // Invalid UTF-8 passes through byte for byte (ASCII still folded).
  EXPECT_EQ(Fold("A\xC4Z\xFF"), "a\xC4z\xFF");
}

TEST(Utf8Test, Validity) {
  EXPECT_TRUE(search_internal::IsValidUtf8(""));
  EXPECT_TRUE(search_internal::IsValidUtf8("äöü € \xF0\x9F\x98\x80"));
  EXPECT_FALSE(search_internal::IsValidUtf8("\xC0\x80"));          // overlong
  EXPECT_FALSE(search_internal::IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(search_internal::IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(search_internal::IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(search_internal::IsValidUtf8("\x80"));
}

TEST(CivilDayTest, ZonesAndBoundaries) {
  using search_internal::CivilDay;
  EXPECT_EQ(CivilDay(0, 0), 19700101);
  EXPECT_EQ(CivilDay(-1, 0), 19691231);
  EXPECT_EQ(CivilDay(951782400, 0), 20000229);  // leap day
  // 2024-03-01T23:30:00Z
  constexpr int64_t t = 1709335800;
  EXPECT_EQ(CivilDay(t, 0), 20240301);
  EXPECT_EQ(CivilDay(t, 120), 20240302);
  EXPECT_EQ(CivilDay(t, -300), 20240301);
  // Absurd values are clamped, not overflowed.
  EXPECT_EQ(CivilDay(INT64_MAX, 1440), 99991231);
  EXPECT_EQ(CivilDay(INT64_MIN, -1440), 10101);
}

// ---------------------------------------------------------------------------
// Cheap keys

TEST(CanonicalizeUidSetsTest, SortsAndMergesEverySetInTheTree) {
  SearchKey key;
  SearchKey* a = key.mutable_and_()->add_keys();
  *a = Uids({{50, 60}, {1, 3}, {4, 4}, {55, 70}, {100, 100}});
  *key.mutable_and_()->add_keys()->mutable_not_() = Uids({{9, 9}, {7, 7}});
  CanonicalizeUidSets(&key);
  const v1::UidSet& first = key.and_().keys(0).uid();
  ASSERT_EQ(first.ranges_size(), 3);
  EXPECT_EQ(first.ranges(0).first(), 1u);
  EXPECT_EQ(first.ranges(0).last(), 4u);
  EXPECT_EQ(first.ranges(1).first(), 50u);
  EXPECT_EQ(first.ranges(1).last(), 70u);
  EXPECT_EQ(first.ranges(2).first(), 100u);
  const v1::UidSet& second = key.and_().keys(1).not_().uid();
  ASSERT_EQ(second.ranges_size(), 2);
  EXPECT_EQ(second.ranges(0).first(), 7u);
  EXPECT_EQ(second.ranges(1).first(), 9u);

  // Many single-UID ranges: bisection decides membership.
  SearchKey odd;
  for (uint32_t uid = 1; uid < 200001; uid += 2) {
    v1::UidRange* r = odd.mutable_uid()->add_ranges();
    r->set_first(uid);
    r->set_last(uid);
  }
  FakeSearchMessage m(kSimple);
  EXPECT_TRUE(Matches(odd, m.Uid(199999)));
  EXPECT_FALSE(Matches(odd, m.Uid(100000)));
  EXPECT_FALSE(Matches(odd, m.Uid(200001)));
  EXPECT_TRUE(Matches(odd, m.Uid(1)));
}

TEST(MatchesTest, AllUidAndModseq) {
  FakeSearchMessage m(kSimple);
  m.Uid(42).Modseq(100);
  EXPECT_TRUE(Matches(All(), m));
  EXPECT_TRUE(Matches(Uids({{1, 5}, {40, 42}}), m));
  EXPECT_TRUE(Matches(Uids({{42, 42}}), m));
  EXPECT_FALSE(Matches(Uids({{1, 41}, {43, 100}}), m));
  EXPECT_FALSE(Matches(Uids({}), m));
  EXPECT_TRUE(Matches(Modseq(99), m));
  EXPECT_TRUE(Matches(Modseq(100), m));
  EXPECT_FALSE(Matches(Modseq(101), m));
  EXPECT_EQ(m.content_loads + m.header_loads + m.parsed_loads, 0);
}

TEST(MatchesTest, FlagsAreCaseInsensitive) {
  FakeSearchMessage m(kSimple);
  m.Flags({"\\Seen", "$Junk", "Work"});
  EXPECT_TRUE(Matches(Flag("\\Seen"), m));
  EXPECT_TRUE(Matches(Flag("\\SEEN"), m));
  EXPECT_TRUE(Matches(Flag("$junk"), m));
  EXPECT_TRUE(Matches(Flag("WORK"), m));
  EXPECT_FALSE(Matches(Flag("\\Flagged"), m));
  EXPECT_FALSE(Matches(Flag("Wor"), m));
  EXPECT_FALSE(Matches(NotFlag("\\seen"), m));
  EXPECT_TRUE(Matches(NotFlag("\\Deleted"), m));
}

TEST(MatchesTest, InternalDateUsesItsOwnZone) {
  constexpr int64_t t = 1709335800;  // 2024-03-01T23:30:00Z
  auto date_key = [](int which, int32_t day) {
    SearchKey k;
    if (which == 0) k.set_before(day);
    if (which == 1) k.set_on(day);
    if (which == 2) k.set_since(day);
    return k;
  };
  FakeSearchMessage east(kSimple);  // 2024-03-02 01:30 +0200
  east.Internal(t, 120);
  EXPECT_TRUE(Matches(date_key(1, 20240302), east));
  EXPECT_FALSE(Matches(date_key(1, 20240301), east));
  EXPECT_FALSE(Matches(date_key(0, 20240302), east));  // BEFORE is strict
  EXPECT_TRUE(Matches(date_key(0, 20240303), east));
  EXPECT_TRUE(Matches(date_key(2, 20240302), east));   // SINCE includes the day
  EXPECT_FALSE(Matches(date_key(2, 20240303), east));

  FakeSearchMessage west(kSimple);  // 2024-03-01 18:30 -0500
  west.Internal(t, -300);
  EXPECT_TRUE(Matches(date_key(1, 20240301), west));
  EXPECT_TRUE(Matches(date_key(0, 20240302), west));
  EXPECT_FALSE(Matches(date_key(2, 20240302), west));

  // Exactly midnight local time belongs to the new day.
  FakeSearchMessage midnight(kSimple);  // 2024-03-02T00:00:00+0100
  midnight.Internal(1709334000, 60);
  EXPECT_TRUE(Matches(date_key(1, 20240302), midnight));
  midnight.Internal(1709334000 - 1, 60);
  EXPECT_TRUE(Matches(date_key(1, 20240301), midnight));
}

TEST(MatchesTest, SaveDatesInUtcOrTheInternalDate) {
  auto saved_key = [](int which, int32_t day) {
    SearchKey k;
    if (which == 0) k.set_saved_before(day);
    if (which == 1) k.set_saved_on(day);
    if (which == 2) k.set_saved_since(day);
    return k;
  };
  FakeSearchMessage m(kSimple);
  // Internal date 2020-01-01 (+0200); saved 2024-03-01T23:30:00Z, read in UTC.
  m.Internal(1577829600, 120).Saved(1709335800);
  EXPECT_TRUE(Matches(saved_key(1, 20240301), m));
  EXPECT_FALSE(Matches(saved_key(1, 20240302), m));
  EXPECT_TRUE(Matches(saved_key(0, 20240302), m));
  EXPECT_FALSE(Matches(saved_key(0, 20240301), m));  // strict
  EXPECT_TRUE(Matches(saved_key(2, 20240301), m));
  EXPECT_FALSE(Matches(saved_key(2, 20240302), m));
  // No save date (stored before they were kept): the internal date's day.
  m.Saved(std::nullopt);
  EXPECT_TRUE(Matches(saved_key(1, 20200101), m));
  EXPECT_TRUE(Matches(saved_key(0, 20240301), m));
  EXPECT_FALSE(Matches(saved_key(2, 20240301), m));
}

TEST(MatchesTest, SentDatesUseTheHeaderZone) {
  FakeSearchMessage m(kSimple);  // Date: Mon, 01 Apr 2024 23:59:59 -1000
  SearchKey on, before, since;
  on.set_sent_on(20240401);
  before.set_sent_before(20240401);
  since.set_sent_since(20240401);
  EXPECT_TRUE(Matches(on, m));
  EXPECT_FALSE(Matches(before, m));
  EXPECT_TRUE(Matches(since, m));
  before.set_sent_before(20240402);
  EXPECT_TRUE(Matches(before, m));
  since.set_sent_since(20240402);
  EXPECT_FALSE(Matches(since, m));

  FakeSearchMessage undated("Subject: x\r\n\r\nbody\r\n");
  EXPECT_FALSE(Matches(on, undated));
  EXPECT_FALSE(Matches(before, undated));
  EXPECT_FALSE(Matches(since, undated));
  EXPECT_TRUE(Matches(Not(before), undated));
}

TEST(MatchesTest, SizesAreStrict) {
  FakeSearchMessage m("Subject: x\r\n\r\n0123456789");  // 24 octets
  const uint64_t size = m.size();
  SearchKey larger, smaller;
  larger.set_larger(size);
  smaller.set_smaller(size);
  EXPECT_FALSE(Matches(larger, m));
  EXPECT_FALSE(Matches(smaller, m));
  larger.set_larger(size - 1);
  smaller.set_smaller(size + 1);
  EXPECT_TRUE(Matches(larger, m));
  EXPECT_TRUE(Matches(smaller, m));
}

// ---------------------------------------------------------------------------
// Header keys

TEST(MatchesTest, HeaderSubstringCaseInsensitive) {
  FakeSearchMessage m(kSimple);
  EXPECT_TRUE(Matches(Header("To", "ANN@EXAMPLE"), m));
  EXPECT_TRUE(Matches(Header("to", "bob@"), m));
  EXPECT_TRUE(Matches(Header("CC", "carol"), m));
  EXPECT_FALSE(Matches(Header("Bcc", "carol"), m));
  EXPECT_FALSE(Matches(Header("From", "carol"), m));
  // Unfolded: the fold's line break is gone, its whitespace stays.
  EXPECT_TRUE(Matches(Header("X-Folded", "PART\tSECOND"), m));
  // Every occurrence counts.
  EXPECT_TRUE(Matches(Header("Received", "relay.example"), m));
  // Field names are not part of the value.
  EXPECT_FALSE(Matches(Header("Subject", "subject"), m));
}

TEST(MatchesTest, EncodedWordsMatchUtf8Needles) {
  FakeSearchMessage m(kSimple);
  EXPECT_TRUE(Matches(Header("Subject", "grüße"), m));
  EXPECT_TRUE(Matches(Header("Subject", "KÖLN"), m));
  EXPECT_TRUE(Matches(Header("Subject", "GRÜẞE"), m));  // capital sharp s folds to ß
  EXPECT_FALSE(Matches(Header("Subject", "R3LDvMOfZSBhdXMgS8O2bG4"), m));
  EXPECT_TRUE(Matches(Header("From", "jörg müller"), m));
  EXPECT_TRUE(Matches(Header("From", "JÖRG MÜLLER <JM@"), m));
}

TEST(MatchesTest, EmptyHeaderValueMatchesPresence) {
  FakeSearchMessage m(kSimple);
  EXPECT_TRUE(Matches(Header("X-Empty", ""), m));
  EXPECT_TRUE(Matches(Header("subject", ""), m));
  EXPECT_FALSE(Matches(Header("X-Missing", ""), m));
  EXPECT_FALSE(Matches(Header("X-Empty", "x"), m));
}

TEST(MatchesTest, HeaderSeesOnlyTheTopLevelHeader) {
  FakeSearchMessage m(
      "Subject: outer\r\n"
      "Content-Type: message/rfc822\r\n"
      "\r\n"
      "Subject: inner\r\n"
      "\r\n"
      "inner body\r\n");
  EXPECT_TRUE(Matches(Header("Subject", "outer"), m));
  EXPECT_FALSE(Matches(Header("Subject", "inner"), m));
}

// ---------------------------------------------------------------------------
// BODY and TEXT

constexpr char kMultipart[] =
    "From: a@example.com\r\n"
    "Subject: Quarterly report\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "preamble is not searched\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    // "Hallo ÄÖ Welt\nΣοφία и Привет\n"
    "SGFsbG8gw4TDliBXZWx0Cs6jzr/Phs6vzrEg0Lgg0J/RgNC40LLQtdGCCg==\r\n"
    "--b1\r\n"
    "Content-Type: text/html; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<p>Gr=FC=DFe, soft=\r\n"
    "break joined</p>\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "c2VjcmV0IGF0dGFjaG1lbnQ=\r\n"  // "secret attachment"
    "--b1--\r\n";

TEST(MatchesTest, BodySearchesDecodedTextParts) {
  FakeSearchMessage m(kMultipart);
  EXPECT_TRUE(Matches(Body("hallo"), m));
  EXPECT_TRUE(Matches(Body("äö"), m));            // base64 UTF-8, folded
  EXPECT_TRUE(Matches(Body("ÄÖ WELT"), m));
  EXPECT_TRUE(Matches(Body("σοφία"), m));         // Greek
  EXPECT_TRUE(Matches(Body("ΣΟΦΊΑ"), m));
  EXPECT_TRUE(Matches(Body("ПРИВЕТ"), m));        // Cyrillic
  EXPECT_TRUE(Matches(Body("GRÜßE"), m));         // QP Latin-1 converted to UTF-8
  EXPECT_TRUE(Matches(Body("softbreak joined"), m));  // QP soft line break undone
  EXPECT_FALSE(Matches(Body("secret"), m));       // not a text part
  EXPECT_FALSE(Matches(Body("c2VjcmV0"), m));
  EXPECT_FALSE(Matches(Body("preamble"), m));
  EXPECT_FALSE(Matches(Body("Quarterly"), m));    // headers are not body
  EXPECT_FALSE(Matches(Body("SGFsbG8"), m));      // raw base64 is not text
  EXPECT_TRUE(Matches(Body(""), m));
}

TEST(MatchesTest, TextSearchesHeaderAndBody) {
  FakeSearchMessage m(kMultipart);
  EXPECT_TRUE(Matches(Text("quarterly REPORT"), m));
  EXPECT_TRUE(Matches(Text("subject: quarterly"), m));  // field names are header text
  EXPECT_TRUE(Matches(Text("привет"), m));
  EXPECT_FALSE(Matches(Text("secret"), m));

  FakeSearchMessage simple(kSimple);
  EXPECT_TRUE(Matches(Text("köln"), simple));   // decoded encoded-word
  EXPECT_TRUE(Matches(Text("first part\tsecond"), simple));  // unfolded
  EXPECT_TRUE(Matches(Text("the body"), simple));
  EXPECT_FALSE(Matches(Text("Subject: Grüße aus Köln\r\nDate"), simple));
}

// ---------------------------------------------------------------------------
// Boolean structure and evaluation order

TEST(MatchesTest, AndOrNotNesting) {
  FakeSearchMessage m(kSimple);
  m.Uid(7).Flags({"\\Seen"});
  EXPECT_TRUE(Matches(And({}), m));  // vacuously true
  EXPECT_TRUE(Matches(And({Flag("\\Seen"), Uids({{7, 7}}), Header("To", "ann")}), m));
  EXPECT_FALSE(Matches(And({Flag("\\Seen"), Uids({{8, 9}})}), m));
  EXPECT_TRUE(Matches(Or(Uids({{8, 9}}), Flag("\\Seen")), m));
  EXPECT_FALSE(Matches(Or(Uids({{8, 9}}), Flag("\\Deleted")), m));
  EXPECT_TRUE(Matches(Not(Flag("\\Deleted")), m));
  EXPECT_FALSE(Matches(Not(Not(Flag("\\Deleted"))), m));
  // (OR (NOT SEEN) (AND SUBJECT köln (OR BODY nothing TEXT hello)))
  const SearchKey nested =
      Or(Not(Flag("\\Seen")),
         And({Header("Subject", "köln"), Or(Body("nothing"), Text("HELLO WORLD"))}));
  EXPECT_TRUE(Matches(nested, m));
  EXPECT_FALSE(Matches(Not(nested), m));
}

TEST(MatchesTest, CheapKeysShortCircuitExpensiveOnes) {
  FakeSearchMessage m(kMultipart);
  m.Flags({});
  // The flag fails first although it is listed last: nothing heavy is read.
  EXPECT_FALSE(Matches(And({Text("hallo"), Body("hallo"), Header("Subject", "x"),
                            Flag("\\Seen")}),
                       m));
  EXPECT_EQ(m.header_loads, 0);
  EXPECT_EQ(m.content_loads, 0);
  EXPECT_EQ(m.parsed_loads, 0);
  // OR tries the cheap operand first.
  EXPECT_TRUE(Matches(Or(Body("hallo"), NotFlag("\\Seen")), m));
  EXPECT_EQ(m.content_loads, 0);
  // A failing header key stops the body search.
  EXPECT_FALSE(Matches(And({Body("hallo"), Header("Subject", "nope")}), m));
  EXPECT_EQ(m.header_loads, 1);
  EXPECT_EQ(m.content_loads, 0);
  // Once the header key passes, the body is read.
  EXPECT_TRUE(Matches(And({Body("hallo"), Header("Subject", "report")}), m));
  EXPECT_EQ(m.content_loads, 1);
}

// ---------------------------------------------------------------------------
// Large bodies

TEST(MatchesTest, MatchAcrossChunkBoundaries) {
  // The folding works in 64 KiB chunks; put needles (one with a two-byte
  // character) across the first boundary at every offset.
  for (int shift = -6; shift <= 1; ++shift) {
    std::string body(65536 + shift, 'x');
    body += "ÄBC-needle";
    body += std::string(100, 'y');
    FakeSearchMessage m("Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
                        body);
    // The text part's decoded bytes are what is chunked, so the needle
    // straddles offset 65536 of the body.
    EXPECT_TRUE(Matches(Body("äbc-NEEDLE"), m)) << shift;
    EXPECT_TRUE(Matches(Body("xä"), m)) << shift;
    EXPECT_FALSE(Matches(Body("äbc-needlez"), m)) << shift;
  }
}

TEST(MatchesTest, TwentyMegabyteBody) {
  std::string raw = "Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  const std::string line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit Äö.\r\n";
  while (raw.size() < (20u << 20)) raw += line;
  raw += "The END marker ÖÄ\r\n";
  FakeSearchMessage m(std::move(raw));
  EXPECT_TRUE(Matches(Body("end marker öä"), m));
  EXPECT_TRUE(Matches(Text("end MARKER"), m));
  EXPECT_FALSE(Matches(Body("not there at all"), m));
  // A needle that almost matches everywhere (a classic quadratic trap).
  EXPECT_FALSE(Matches(Body("lorem ipsum dolor sit amet, consectetur adipiscing elit äö.\r\nx"),
                       m));
}

TEST(MatchesTest, AdversarialNeedlesStayLinear) {
  // 20 MB of one letter: a needle that differs only at its first (or last)
  // octet costs O(text * needle) in naive and Horspool-style searches.
  std::string raw = "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  raw.append(20u << 20, 'a');
  FakeSearchMessage m(std::move(raw));
  EXPECT_FALSE(Matches(Body("b" + std::string(5000, 'a')), m));
  EXPECT_FALSE(Matches(Body(std::string(5000, 'a') + "b"), m));
  EXPECT_TRUE(Matches(Body(std::string(5000, 'A')), m));
  // A needle longer than a folding chunk.
  EXPECT_TRUE(Matches(Body(std::string(200000, 'a')), m));
  EXPECT_FALSE(Matches(Body(std::string(200000, 'a') + "b"), m));
}

// ---------------------------------------------------------------------------
// Validation

TEST(ValidateSearchTest, AcceptsWellFormedRequests) {
  EXPECT_TRUE(ValidateSearch(Request(All(), ""), 64).ok());
  EXPECT_TRUE(ValidateSearch(Request(All(), "us-ascii"), 64).ok());
  EXPECT_TRUE(ValidateSearch(Request(Body("Grüße"), "utf-8"), 64).ok());
  EXPECT_TRUE(ValidateSearch(Request(Uids({}), ""), 64).ok());
  EXPECT_TRUE(ValidateSearch(
                  Request(And({Or(Header("From", "a"), Not(Text("b"))), Uids({{1, 3}}),
                               Modseq(5), NotFlag("\\Seen")})),
                  64)
                  .ok());
}

SearchKey Nested(int depth) {
  SearchKey root;
  SearchKey* k = &root;
  for (int i = 1; i < depth; ++i) k = k->mutable_not_();
  k->set_all(true);
  return root;
}

TEST(ValidateSearchTest, NestingDepth) {
  EXPECT_TRUE(ValidateSearch(Request(Nested(64)), 64).ok());
  const absl::Status too_deep = ValidateSearch(Request(Nested(65)), 64);
  EXPECT_EQ(too_deep.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v1::DetailOf(too_deep).code(), v1::BAD_REQUEST);
  EXPECT_EQ(too_deep.message(), "search nesting deeper than 64");

  const absl::Status s = ValidateSearch(Request(Nested(1000)), 64);
  EXPECT_EQ(v1::DetailOf(s).code(), v1::BAD_REQUEST);
  EXPECT_THAT(std::string(s.message()), HasSubstr("nesting deeper than 64"));
}

TEST(ValidateSearchTest, Charset) {
  const absl::Status s = ValidateSearch(Request(All(), "KOI8-R"), 64);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v1::DetailOf(s).code(), v1::BADCHARSET);
  EXPECT_THAT(std::string(s.message()), HasSubstr("KOI8-R"));
  // The charset is checked before the key.
  EXPECT_EQ(v1::DetailOf(ValidateSearch(Request(Nested(1000), "ISO-8859-1"), 64)).code(),
            v1::BADCHARSET);
  // A non-printable name is not echoed.
  const absl::Status odd = ValidateSearch(Request(All(), "\x01\xFF"), 64);
  EXPECT_EQ(v1::DetailOf(odd).code(), v1::BADCHARSET);
  EXPECT_THAT(std::string(odd.message()), ::testing::Not(HasSubstr("\xFF")));
}

TEST(ValidateSearchTest, Strings) {
  auto code = [](const v1::SearchRequest& r) { return v1::DetailOf(ValidateSearch(r, 64)).code(); };
  EXPECT_EQ(code(Request(Body("a\xC3"))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Header("Subject", "\xED\xA0\x80"))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Header("\xFF", "x"))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(And({All(), Not(Text("\xC0\x80"))}))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Flag("\xFE"))), v1::BAD_REQUEST);
  // US-ASCII (explicit or by default) allows 7-bit only.
  EXPECT_EQ(code(Request(Body("Grüße"), "US-ASCII")), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Body("Grüße"), "")), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Body("Gruesse"), "")), v1::ERROR_CODE_UNSPECIFIED);
}

TEST(ValidateSearchTest, Structure) {
  auto code = [](const v1::SearchRequest& r) { return v1::DetailOf(ValidateSearch(r, 64)).code(); };
  EXPECT_EQ(code(Request(Uids({{5, 3}}))), v1::BAD_REQUEST);
  EXPECT_THAT(std::string(ValidateSearch(Request(Uids({{5, 3}})), 64).message()),
              HasSubstr("5:3"));
  EXPECT_EQ(code(Request(Uids({{0, 3}}))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Uids({{1, 3}, {7, 0}}))), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(SearchKey())), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(And({All(), SearchKey()}))), v1::BAD_REQUEST);
  SearchKey half_or;
  *half_or.mutable_or_()->mutable_a() = All();
  EXPECT_EQ(code(Request(half_or)), v1::BAD_REQUEST);
  EXPECT_EQ(code(Request(Flag(""))), v1::BAD_REQUEST);
  SearchKey recent;
  recent.set_recent(true);
  EXPECT_EQ(code(Request(recent)), v1::BAD_REQUEST);
  v1::SearchRequest no_key;
  EXPECT_EQ(code(no_key), v1::BAD_REQUEST);
}


// ---------------------------------------------------------------------------
// Request limits and the work budget

TEST(ValidateSearchTest, KeyCountLimit) {
  SearchLimits limits;
  limits.max_keys = 10;
  // AND + 9 children = 10 keys: at the limit.
  std::vector<SearchKey> nine(9, Flag("\\Seen"));
  EXPECT_TRUE(ValidateSearch(Request(And(nine)), limits).ok());
  std::vector<SearchKey> ten(10, Flag("\\Seen"));
  const absl::Status s = ValidateSearch(Request(And(ten)), limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(v1::DetailOf(s).code(), v1::LIMIT);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more than 10 keys"));
  // NOT counts as a key of its own: five NOT TEXT pairs plus the AND are 11.
  std::vector<SearchKey> nots(5, Not(Text("x")));
  EXPECT_EQ(v1::DetailOf(ValidateSearch(Request(And(nots)), limits)).code(), v1::LIMIT);
}

TEST(ValidateSearchTest, UidRangeLimit) {
  SearchLimits limits;
  limits.max_uid_ranges = 4;
  EXPECT_TRUE(
      ValidateSearch(Request(And({Uids({{1, 1}, {3, 3}}), Not(Uids({{5, 5}, {7, 9}}))})), limits)
          .ok());
  // The ranges of all UID keys are summed.
  const absl::Status s = ValidateSearch(
      Request(And({Uids({{1, 1}, {3, 3}, {5, 5}}), Not(Uids({{7, 7}, {9, 9}}))})), limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(v1::DetailOf(s).code(), v1::LIMIT);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more than 4 UID ranges"));
}

TEST(ValidateSearchTest, StringOctetLimit) {
  SearchLimits limits;
  limits.max_string_octets = 100;
  EXPECT_TRUE(
      ValidateSearch(Request(And({Text(std::string(50, 'a')), Body(std::string(50, 'b'))})),
                     limits)
          .ok());
  const absl::Status s = ValidateSearch(
      Request(And({Text(std::string(50, 'a')), Header("Subject", std::string(44, 'b'))})),
      limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(v1::DetailOf(s).code(), v1::LIMIT);
  EXPECT_THAT(std::string(s.message()), HasSubstr("exceed 100 octets"));
}

std::string BigMessage(size_t body_octets) {
  std::string raw = "Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  raw.append(body_octets, 'a');
  return raw;
}

TEST(WorkBudgetTest, SearchOverTheScanLimitStopsWithLimit) {
  FakeSearchMessage m(BigMessage(4u << 20));
  // Ten NOT TEXT keys over 4 MiB would scan 40 MiB; the budget allows 10 MiB.
  std::vector<SearchKey> keys;
  for (int i = 0; i < 10; ++i) keys.push_back(Not(Text("needle" + std::to_string(i))));
  const SearchKey key = And(keys);
  WorkBudget budget(10u << 20, absl::InfiniteFuture(), {});
  Matches(key, m, budget);
  ASSERT_TRUE(budget.stopped());
  EXPECT_EQ(budget.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(v1::DetailOf(budget.status()).code(), v1::LIMIT);
  EXPECT_THAT(std::string(budget.status().message()), HasSubstr("more than 10 MiB"));
  // It stopped at the limit, not after scanning everything: at most one chunk over.
  EXPECT_LE(budget.scanned_octets(), (10u << 20) + (64u << 10) + 64);

  // The same search within a large enough budget completes and matches.
  WorkBudget roomy(64u << 20, absl::InfiniteFuture(), {});
  EXPECT_TRUE(Matches(key, m, roomy));
  EXPECT_FALSE(roomy.stopped());
  EXPECT_GE(roomy.scanned_octets(), 40u << 20);
}

TEST(WorkBudgetTest, CancelledCallerStopsTheScanEarly) {
  FakeSearchMessage m(BigMessage(8u << 20));
  std::vector<SearchKey> keys;
  for (int i = 0; i < 20; ++i) keys.push_back(Not(Text("needle" + std::to_string(i))));
  const SearchKey key = And(keys);
  // The caller goes away after the budget first looks (about 1 MiB in).
  int polls = 0;
  WorkBudget budget(0, absl::InfiniteFuture(), [&polls] { return ++polls >= 2; });
  Matches(key, m, budget);
  ASSERT_TRUE(budget.stopped());
  EXPECT_EQ(budget.status().code(), absl::StatusCode::kCancelled);
  // 160 MiB of work; it stopped within a couple of poll intervals.
  EXPECT_LE(budget.scanned_octets(), 3 * WorkBudget::kPollOctets);
  EXPECT_EQ(polls, 2);
}

TEST(WorkBudgetTest, PassedDeadlineStopsTheScan) {
  FakeSearchMessage m(BigMessage(8u << 20));
  WorkBudget budget(0, absl::Now() - absl::Seconds(1), {});
  Matches(Text("nothing like it"), m, budget);
  ASSERT_TRUE(budget.stopped());
  EXPECT_EQ(budget.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LE(budget.scanned_octets(), 2 * WorkBudget::kPollOctets);
}

TEST(WorkBudgetTest, KeepGoingPollsOnlyNowAndThen) {
  int polls = 0;
  WorkBudget budget(0, absl::InfiniteFuture(), [&polls] {
    ++polls;
    return false;
  });
  for (int i = 0; i < 10 * WorkBudget::kPollEvery; ++i) ASSERT_TRUE(budget.KeepGoing());
  EXPECT_EQ(polls, 10);
  WorkBudget unlimited;
  EXPECT_TRUE(unlimited.Charge(1ull << 40));
  EXPECT_TRUE(unlimited.status().ok());
}

}  // namespace
}  // namespace mailbox::store
