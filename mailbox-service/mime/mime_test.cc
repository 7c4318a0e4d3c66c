#include "mailbox-service/mime/mime.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailbox::mime {
namespace {

using ::testing::ElementsAre;
using std::string_literals::operator""s;
using Text = SectionSpec::Text;

std::string TestdataPath(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir != nullptr) {
    return std::string(srcdir) + "/imapd/mailbox-service/mime/testdata/" +
           name;
  }
  return "mailbox-service/mime/testdata/" + name;
}

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(TestdataPath(name), std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing testdata " << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<std::string>& CorpusNames() {
  static const auto* names = new std::vector<std::string>{
      "simple.eml",        "nested.eml",          "rfc822_in_rfc822.eml",
      "missing_close.eml", "boundary_absent.eml", "no_boundary_param.eml",
      "eight_bit.eml",     "encoded_words.eml",   "empty_subject.eml",
      "groups.eml",        "base64.eml",          "qp.eml",
      "header_only.eml",   "bare_lf.eml"};
  return *names;
}

ParsedMessage MustParse(std::string_view raw, const Limits& limits = {}) {
  absl::StatusOr<ParsedMessage> m = Parse(raw, limits);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : ParsedMessage();
}

// Materializes a section the way the FETCH code will: concatenate pieces and
// run the decoder when binary_encoding is set.
std::string SectionBytes(const ResolvedSection& s, std::string_view raw) {
  std::string encoded;
  std::string out;
  std::unique_ptr<Decoder> decoder;
  if (!s.binary_encoding.empty()) decoder = Decoder::For(s.binary_encoding);
  for (const Piece& p : s.pieces) {
    if (p.is_generated) {
      out.append(p.generated);
    } else if (decoder != nullptr) {
      decoder->Feed(raw.substr(p.begin, p.end - p.begin), &out);
    } else {
      out.append(raw.substr(p.begin, p.end - p.begin));
    }
  }
  if (decoder != nullptr) decoder->Finish(&out);
  return out;
}

SectionSpec Spec(std::vector<uint32_t> part, Text text = Text::kNone,
                 std::vector<std::string> fields = {}) {
  SectionSpec s;
  s.part = std::move(part);
  s.text = text;
  s.fields = std::move(fields);
  return s;
}

// Resolves with the full message and checks size == bytes returned.
std::string Fetch(const ParsedMessage& m, std::string_view raw,
                  const SectionSpec& spec) {
  absl::StatusOr<ResolvedSection> s = ResolveSection(m, raw, spec);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return "<error>";
  const std::string bytes = SectionBytes(*s, raw);
  EXPECT_EQ(s->size, bytes.size());
  return bytes;
}

// ---------------------------------------------------------------------------
// ENVELOPE / BODY / BODYSTRUCTURE of the corpus. Sizes and line counts were
// checked by hand and with an independent script splitting the files at
// their delimiter lines; e.g. simple.eml's body is "Shall we meet at
// noon?\r\nWendy\r\n" = 22 + 2 + 5 + 2 = 31 octets in 2 lines.

TEST(CorpusTest, Simple) {
  const ParsedMessage m = MustParse(ReadTestdata("simple.eml"));
  EXPECT_EQ(m.envelope,
            "(\"Wed, 14 Feb 2024 10:15:00 -0500\" \"Lunch plans\" "
            "((\"Wendy Writer\" NIL \"wendy\" \"example.org\")) "
            "((\"Wendy Writer\" NIL \"wendy\" \"example.org\")) "
            "((\"Wendy Writer\" NIL \"wendy\" \"example.org\")) "
            "((NIL NIL \"reader\" \"example.net\")) NIL NIL NIL "
            "\"<simple-0001@example.org>\")");
  EXPECT_EQ(m.body,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" "
            "31 2)");
  EXPECT_EQ(m.bodystructure,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" "
            "31 2 NIL NIL NIL NIL)");
  EXPECT_EQ(m.sent_date, 20240214);
}

constexpr std::string_view kNestedBodystructure =
    "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 20 2 NIL "
    "NIL NIL NIL)(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL "
    "\"QUOTED-PRINTABLE\" 26 1 NIL NIL NIL NIL) \"ALTERNATIVE\" "
    "(\"BOUNDARY\" \"inner\") NIL NIL NIL)"
    "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded\" \"7BIT\" 294 "
    "(\"1 Jan 24 08:00 EST\" \"Inner message\" "
    "((\"Inner Sender\" NIL \"inner\" \"example.com\")) "
    "((\"Inner Sender\" NIL \"inner\" \"example.com\")) "
    "((\"Inner Sender\" NIL \"inner\" \"example.com\")) NIL NIL NIL NIL NIL) "
    "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 9 1 NIL NIL NIL NIL)"
    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 59 "
    "(NIL \"Deepest\" ((NIL NIL \"deepest\" \"example.com\")) "
    "((NIL NIL \"deepest\" \"example.com\")) "
    "((NIL NIL \"deepest\" \"example.com\")) NIL NIL NIL NIL NIL) "
    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 12 1 NIL "
    "NIL NIL NIL) 4 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"deep\") NIL "
    "NIL NIL) 17 NIL NIL NIL NIL)"
    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 89 "
    "(NIL \"Third part\" ((\"Third\" NIL \"third\" \"example.com\")) "
    "((\"Third\" NIL \"third\" \"example.com\")) "
    "((\"Third\" NIL \"third\" \"example.com\")) "
    "((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL NIL) "
    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 10 1 NIL "
    "NIL NIL NIL) 5 NIL NIL NIL NIL)"
    "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"data.bin\") "
    "\"<part4@example.org>\" NIL \"BASE64\" 18 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" "
    "(\"ATTACHMENT\" (\"FILENAME\" \"data.bin\")) (\"en\" \"de\") "
    "\"http://example.com/data.bin\") \"MIXED\" (\"BOUNDARY\" \"outer\") NIL "
    "NIL NIL)";

TEST(CorpusTest, NestedMultipartAndMessages) {
  const std::string raw = ReadTestdata("nested.eml");
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(m.envelope,
            "(\"Tue, 2 Jan 2024 09:00:00 +0100\" \"Nested test\" "
            "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
            "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
            "((\"Alice Example\" NIL \"alice\" \"example.org\")) "
            "((\"Bob\" NIL \"bob\" \"example.net\")"
            "(\"Carol, Q.\" NIL \"carol\" \"example.com\")) NIL NIL NIL "
            "\"<nested-1@example.org>\")");
  EXPECT_EQ(m.bodystructure, kNestedBodystructure);
  // BODY is the same tree without extension data.
  EXPECT_EQ(m.body,
            "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 20 "
            "2)(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL "
            "\"QUOTED-PRINTABLE\" 26 1) \"ALTERNATIVE\")"
            "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded\" \"7BIT\" 294 "
            "(\"1 Jan 24 08:00 EST\" \"Inner message\" "
            "((\"Inner Sender\" NIL \"inner\" \"example.com\")) "
            "((\"Inner Sender\" NIL \"inner\" \"example.com\")) "
            "((\"Inner Sender\" NIL \"inner\" \"example.com\")) NIL NIL NIL "
            "NIL NIL) ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 9 1)"
            "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 59 "
            "(NIL \"Deepest\" ((NIL NIL \"deepest\" \"example.com\")) "
            "((NIL NIL \"deepest\" \"example.com\")) "
            "((NIL NIL \"deepest\" \"example.com\")) NIL NIL NIL NIL NIL) "
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" "
            "12 1) 4) \"MIXED\") 17)"
            "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 89 "
            "(NIL \"Third part\" ((\"Third\" NIL \"third\" \"example.com\")) "
            "((\"Third\" NIL \"third\" \"example.com\")) "
            "((\"Third\" NIL \"third\" \"example.com\")) "
            "((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL NIL) "
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" "
            "10 1) 5)"
            "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"data.bin\") "
            "\"<part4@example.org>\" NIL \"BASE64\" 18) \"MIXED\")");
  // Offsets checked by hand: the root header (8 lines) ends at 267, part 1
  // starts after "This is the preamble.\r\n--outer\r\n" = 267 + 32.
  EXPECT_EQ(m.root.header_end, 267u);
  EXPECT_EQ(m.root.children[0].header_begin, 299u);
  EXPECT_EQ(m.root.body_end, raw.size());
  const Part& attachment = m.root.children[3];
  EXPECT_EQ(attachment.decoded_size, 10u);  // AAECAwQF BgcICQ== = 6 + 4
  EXPECT_EQ(m.root.children[0].children[1].decoded_size,
            20u);  // 26 - 6: "=E2=9C=93" is 3 octets
  // The encapsulated message spans exactly the message/rfc822 body.
  const Part& forwarded = m.root.children[1];
  ASSERT_EQ(forwarded.children.size(), 1u);
  EXPECT_EQ(forwarded.children[0].header_begin, forwarded.body_begin);
  EXPECT_EQ(forwarded.children[0].body_end, forwarded.body_end);
  EXPECT_TRUE(forwarded.children[0].is_message);
}

TEST(CorpusTest, MessageInsideMessage) {
  const ParsedMessage m = MustParse(ReadTestdata("rfc822_in_rfc822.eml"));
  EXPECT_EQ(
      m.bodystructure,
      "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 134 "
      "(NIL \"Middle\" ((NIL NIL \"middle\" \"example.com\")) "
      "((NIL NIL \"middle\" \"example.com\")) "
      "((NIL NIL \"middle\" \"example.com\")) NIL NIL NIL NIL NIL) "
      "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 59 "
      "(NIL \"Inner\" ((NIL NIL \"inner\" \"example.com\")) "
      "((NIL NIL \"inner\" \"example.com\")) "
      "((NIL NIL \"inner\" \"example.com\")) NIL NIL NIL NIL NIL) "
      "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 16 1 "
      "NIL NIL NIL NIL) 4 NIL NIL NIL NIL) 8 NIL NIL NIL NIL)");
}

TEST(CorpusTest, MissingCloseBoundaryKeepsParts) {
  const ParsedMessage m = MustParse(ReadTestdata("missing_close.eml"));
  // Part 2 starts with the empty line: no header fields, default type.
  EXPECT_EQ(m.body,
            "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 5 1)(\"TEXT\" \"PLAIN\" "
            "(\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 20 1) \"MIXED\")");
}

TEST(CorpusTest, MultipartWithoutDelimitersIsText) {
  const ParsedMessage absent = MustParse(ReadTestdata("boundary_absent.eml"));
  EXPECT_EQ(absent.body,
            "(\"TEXT\" \"PLAIN\" (\"BOUNDARY\" \"zzz\") NIL NIL \"7BIT\" 42 "
            "2)");
  const ParsedMessage no_param =
      MustParse(ReadTestdata("no_boundary_param.eml"));
  EXPECT_EQ(no_param.body, "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 39 1)");
  EXPECT_TRUE(no_param.root.children.empty());
}

TEST(CorpusTest, EightBitHeadersBecomeLiterals) {
  const ParsedMessage m = MustParse(ReadTestdata("eight_bit.eml"));
  EXPECT_EQ(m.envelope,
            "(\"Fri, 1 Mar 2024 12:00:00 +0100\" {17}\r\nGr\xc3\xbc\xc3\x9f"
            "e aus K\xc3\xb6ln (({15}\r\nJ\xc3\xbcrgen M\xc3\xbcller NIL "
            "\"juergen\" \"example.de\")) (({15}\r\nJ\xc3\xbcrgen "
            "M\xc3\xbcller NIL \"juergen\" \"example.de\")) (({15}\r\n"
            "J\xc3\xbcrgen M\xc3\xbcller NIL \"juergen\" \"example.de\")) "
            "(({6}\r\nRen\xc3\xa9"
            "e NIL \"renee\" \"example.fr\")) NIL NIL "
            "NIL NIL)");
  EXPECT_EQ(m.body,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 10 "
            "1)");
}

TEST(CorpusTest, EncodedWordsLeftAsSent) {
  const ParsedMessage m = MustParse(ReadTestdata("encoded_words.eml"));
  EXPECT_EQ(m.envelope,
            "(\"29 Feb 2024 23:59 GMT\" \"=?UTF-8?B?SGVsbG8g?= "
            "=?UTF-8?Q?W=C3=B6rld?= =?windows-1252?Q?=93quoted=94?=\" "
            "((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"andre\" "
            "\"example.be\")) ((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL "
            "\"andre\" \"example.be\")) ((\"=?ISO-8859-1?Q?Andr=E9?= "
            "Pirard\" NIL \"andre\" \"example.be\")) "
            "((\"=?UTF-8?B?0JDQvdC90LA=?=\" NIL \"anna\" \"example.ru\")) NIL "
            "NIL NIL NIL)");
  EXPECT_EQ(m.sent_date, 20240229);
}

TEST(CorpusTest, EmptySubjectIsEmptyStringAbsentIsNil) {
  // RFC 3501 §7.4.2: present but empty -> "", absent -> NIL.
  const ParsedMessage m = MustParse(ReadTestdata("empty_subject.eml"));
  EXPECT_EQ(m.envelope,
            "(\"Sun, 31 Dec 2023 23:59:59 +1400\" \"\" "
            "((NIL NIL \"nobody\" \"example.com\")) "
            "((NIL NIL \"nobody\" \"example.com\")) "
            "((NIL NIL \"nobody\" \"example.com\")) NIL NIL NIL NIL NIL)");
  const ParsedMessage none = MustParse("To: x@y\r\n\r\nbody\r\n");
  EXPECT_EQ(none.envelope,
            "(NIL NIL NIL NIL NIL ((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL)");
}

TEST(CorpusTest, GroupsRoutesCommentsAndEscapes) {
  const ParsedMessage m = MustParse(ReadTestdata("groups.eml"));
  EXPECT_EQ(
      m.envelope,
      "(\"5 May 99 13:00:00 EDT\" \"Groups \\\"and\\\" \\\\backslashes\\\\\" "
      "((\"Doe, John\" NIL \"john\" \"example.com\")) "
      "((NIL NIL \"secretary\" \"example.com\")) "
      "((NIL NIL \"replies\" \"example.com\")) "
      "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
      "((NIL NIL \"Team\" NIL)(NIL NIL \"a\" \"example.com\")"
      "(\"C D\" NIL \"c\" \"example.com\")(NIL NIL NIL NIL)"
      "(NIL NIL \"solo\" \"example.com\")) "
      "((NIL \"@relay1.example,@relay2.example\" \"routed\" \"example.com\")"
      "(\"Bob Comment\" NIL \"bob\" \"example.com\")) "
      "\"<parent@example.com>\" \"<groups@example.com>\")");
  EXPECT_EQ(m.sent_date, 19990505);
}

TEST(CorpusTest, Base64AndQuotedPrintableSizes) {
  const ParsedMessage b = MustParse(ReadTestdata("base64.eml"));
  EXPECT_EQ(b.bodystructure,
            "(\"IMAGE\" \"PNG\" (\"NAME\" \"dot.png\") NIL NIL \"BASE64\" 100 "
            "NIL (\"INLINE\" NIL) NIL NIL)");
  EXPECT_EQ(b.root.decoded_size, 70u);  // 60 + 36 base64 chars -> 45 + 25
  const ParsedMessage q = MustParse(ReadTestdata("qp.eml"));
  EXPECT_EQ(q.body,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL "
            "\"QUOTED-PRINTABLE\" 107 3)");
  // 107 encoded octets - 3 ("=\r\n") - 2 (trailing padding spaces, RFC 2045
  // §6.7 rule 3) - 4 ("=C3=A9" -> 2 octets) - 2 ("=3D" -> 1) = 96.
  EXPECT_EQ(q.root.decoded_size, 96u);
}

TEST(CorpusTest, HeaderOnlyMessage) {
  const std::string raw = ReadTestdata("header_only.eml");
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(m.root.header_end, raw.size());
  EXPECT_EQ(m.root.body_begin, raw.size());
  EXPECT_EQ(m.body,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 "
            "0)");
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kHeader)), raw);
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kText)), "");
  // The last field has no line break; the answer still ends a header.
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kHeaderFields, {"subject"})),
            "Subject: No body at all\r\n\r\n");
}

TEST(CorpusTest, BareLineFeeds) {
  const std::string raw = ReadTestdata("bare_lf.eml");
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(
      m.body,
      "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 17 2)(\"TEXT\" \"PLAIN\" "
      "(\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1) \"MIXED\")");
  EXPECT_EQ(Fetch(m, raw, Spec({1})), "line one\nline two");
  EXPECT_EQ(Fetch(m, raw, Spec({2})), "second");
  EXPECT_EQ(Fetch(m, raw, Spec({1}, Text::kMime)),
            "Content-Type: text/plain\n\n");
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kHeaderFields, {"SUBJECT"})),
            "Subject: Bare LF\n\r\n");
}

TEST(StructureTest, DigestPartsDefaultToMessage) {
  // RFC 2046 §5.1.5: in multipart/digest the default type is message/rfc822.
  const std::string raw =
      "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n"
      "Subject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: text/plain\r\n\r\n"
      "second\r\n--d--\r\n";
  const ParsedMessage m = MustParse(raw);
  // Part 1 body: "Subject: one\r\n\r\nfirst" = 12 + 2 + 2 + 5 = 21, 3 lines.
  EXPECT_EQ(m.body,
            "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 21 (NIL \"one\" NIL "
            "NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" "
            "\"US-ASCII\") NIL NIL \"7BIT\" 5 1) 3)(\"TEXT\" \"PLAIN\" NIL NIL "
            "NIL \"7BIT\" 6 1) \"DIGEST\")");
  EXPECT_EQ(Fetch(m, raw, Spec({1}, Text::kHeader)), "Subject: one\r\n\r\n");
}

TEST(StructureTest, EncodedMessageRfc822IsOpaque) {
  // RFC 2046 §5.2.1 forbids encoding message/rfc822; such a part has no
  // byte offsets for an encapsulated message, so it is reported as an
  // opaque leaf that clients can still fetch and decode.
  const std::string raw =
      "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
      "\r\nU3ViamVjdDogaGkNCg0KeA==";
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(m.body,
            "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 24)");
  EXPECT_TRUE(m.root.children.empty());
  SectionSpec spec = Spec({1});
  spec.binary = true;
  absl::StatusOr<ResolvedSection> s = ResolveSection(m, raw, spec);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(SectionBytes(*s, raw), "Subject: hi\r\n\r\nx");
}

// ---------------------------------------------------------------------------
// Sections.

class NestedSectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = ReadTestdata("nested.eml");
    m_ = MustParse(raw_);
  }
  std::string raw_;
  ParsedMessage m_;
};

TEST_F(NestedSectionTest, PartBodies) {
  EXPECT_EQ(Fetch(m_, raw_, Spec({1})),
            "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Plain body\r\nline two\r\n--inner\r\nContent-Type: text/html; "
            "charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
            "\r\n<p>HTML body =E2=9C=93</p>\r\n--inner--");
  EXPECT_EQ(Fetch(m_, raw_, Spec({1, 1})), "Plain body\r\nline two");
  EXPECT_EQ(Fetch(m_, raw_, Spec({1, 2})), "<p>HTML body =E2=9C=93</p>");
  EXPECT_EQ(Fetch(m_, raw_, Spec({2, 1})), "Deep text");
  EXPECT_EQ(Fetch(m_, raw_, Spec({2, 2, 1})), "Deepest body");
  EXPECT_EQ(Fetch(m_, raw_, Spec({3, 1})), "Third body");
  EXPECT_EQ(Fetch(m_, raw_, Spec({4})), "AAECAwQF\r\nBgcICQ==");
  EXPECT_EQ(Fetch(m_, raw_, Spec({})), raw_);
}

TEST_F(NestedSectionTest, MimeHeaders) {
  EXPECT_EQ(Fetch(m_, raw_, Spec({2, 1}, Text::kMime)),
            "Content-Type: text/plain\r\n\r\n");
  EXPECT_EQ(Fetch(m_, raw_, Spec({2}, Text::kMime)),
            "Content-Type: message/rfc822\r\nContent-Description: "
            "forwarded\r\n\r\n");
  EXPECT_EQ(Fetch(m_, raw_, Spec({1, 2}, Text::kMime)),
            "Content-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
}

TEST_F(NestedSectionTest, HeaderAndText) {
  EXPECT_EQ(Fetch(m_, raw_, Spec({}, Text::kHeader)), raw_.substr(0, 267));
  EXPECT_EQ(Fetch(m_, raw_, Spec({}, Text::kText)), raw_.substr(267));
  EXPECT_EQ(Fetch(m_, raw_, Spec({3}, Text::kHeader)),
            "From: Third <third@example.com>\r\nTo: alice@example.org\r\n"
            "Subject: Third part\r\n\r\n");
  EXPECT_EQ(Fetch(m_, raw_, Spec({3}, Text::kText)), "Third body");
  EXPECT_EQ(Fetch(m_, raw_, Spec({2, 2}, Text::kHeader)),
            "From: deepest@example.com\r\nSubject: Deepest\r\n\r\n");
}

TEST_F(NestedSectionTest, HeaderFields) {
  EXPECT_EQ(Fetch(m_, raw_, Spec({}, Text::kHeaderFields, {"From", "subject"})),
            "From: Alice Example <alice@example.org>\r\n"
            "Subject: Nested test\r\n\r\n");
  EXPECT_EQ(
      Fetch(m_, raw_, Spec({}, Text::kHeaderFieldsNot, {"From", "SUBJECT"})),
      "To: Bob <bob@example.net>, \"Carol, Q.\" <carol@example.com>\r\n"
      "Date: Tue, 2 Jan 2024 09:00:00 +0100\r\n"
      "Message-ID: <nested-1@example.org>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n");
  EXPECT_EQ(Fetch(m_, raw_, Spec({3}, Text::kHeaderFields, {"To"})),
            "To: alice@example.org\r\n\r\n");
  EXPECT_EQ(Fetch(m_, raw_, Spec({}, Text::kHeaderFields, {"X-None"})), "\r\n");
}

TEST_F(NestedSectionTest, HeaderFieldsFromHeaderBytesOnly) {
  // The caller may pass just the header block instead of 1.4 KB (or 50 MB).
  for (const SectionSpec& spec :
       {Spec({}, Text::kHeaderFields, {"From", "Subject"}),
        Spec({2}, Text::kHeaderFieldsNot, {"Date"}),
        Spec({2, 2}, Text::kHeaderFields, {"Subject"})}) {
    const auto range = RequiredHeaderRange(m_, spec);
    ASSERT_TRUE(range.has_value());
    const std::string block =
        raw_.substr(range->first, range->second - range->first);
    absl::StatusOr<ResolvedSection> from_block =
        ResolveSection(m_, block, spec);
    absl::StatusOr<ResolvedSection> from_full = ResolveSection(m_, raw_, spec);
    ASSERT_TRUE(from_block.ok()) << from_block.status();
    ASSERT_TRUE(from_full.ok());
    EXPECT_EQ(from_block->pieces, from_full->pieces);
    EXPECT_EQ(from_block->size, from_full->size);
  }
  // Wrong bytes are refused rather than misread.
  EXPECT_EQ(ResolveSection(m_, "short", Spec({}, Text::kHeaderFields, {"To"}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Other sections need no bytes at all.
  EXPECT_FALSE(RequiredHeaderRange(m_, Spec({1, 2})).has_value());
  EXPECT_TRUE(ResolveSection(m_, "", Spec({1, 2})).ok());
}

TEST_F(NestedSectionTest, NonexistentPartsAreEmpty) {
  for (const SectionSpec& spec :
       {Spec({5}), Spec({0}), Spec({1, 3}), Spec({4, 1}), Spec({1, 1, 1}),
        Spec({2, 3}), Spec({2, 2, 2}), Spec({9}, Text::kMime),
        Spec({7}, Text::kHeader), Spec({6}, Text::kHeaderFields, {"From"})}) {
    absl::StatusOr<ResolvedSection> s = ResolveSection(m_, raw_, spec);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->size, 0u);
    EXPECT_TRUE(s->pieces.empty());
  }
}

TEST_F(NestedSectionTest, ImpossibleSpecs) {
  EXPECT_EQ(ResolveSection(m_, raw_, Spec({}, Text::kMime)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveSection(m_, raw_, Spec({4}, Text::kHeader)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveSection(m_, raw_, Spec({1}, Text::kText)).status().code(),
            absl::StatusCode::kInvalidArgument);
  SectionSpec binary_header = Spec({2}, Text::kHeader);
  binary_header.binary = true;
  EXPECT_EQ(ResolveSection(m_, raw_, binary_header).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NestedSectionTest, Binary) {
  SectionSpec spec = Spec({4});
  spec.binary = true;
  absl::StatusOr<ResolvedSection> s = ResolveSection(m_, raw_, spec);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->binary_encoding, "BASE64");
  EXPECT_EQ(s->size, 10u);
  EXPECT_EQ(SectionBytes(*s, raw_),
            std::string("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09", 10));

  spec.part = {1, 2};
  s = ResolveSection(m_, raw_, spec);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->binary_encoding, "QUOTED-PRINTABLE");
  EXPECT_EQ(SectionBytes(*s, raw_), "<p>HTML body \xe2\x9c\x93</p>");
  EXPECT_EQ(s->size, 20u);

  spec.part = {1, 1};  // 7BIT: identity
  s = ResolveSection(m_, raw_, spec);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->binary_encoding, "");
  EXPECT_EQ(SectionBytes(*s, raw_), "Plain body\r\nline two");
}

TEST(SectionTest, BinaryOfUnknownEncoding) {
  const std::string raw =
      "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n";
  const ParsedMessage m = MustParse(raw);
  SectionSpec spec = Spec({1});
  spec.binary = true;
  absl::StatusOr<ResolvedSection> s = ResolveSection(m, raw, spec);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.status().message(), "UNKNOWN-CTE");
  EXPECT_EQ(Fetch(m, raw, Spec({1})), "begin 644 x\r\n");  // BODY still works
}

TEST(SectionTest, SinglePartNumbering) {
  // RFC 3501 §6.4.5: a non-multipart message has only part 1, its body; its
  // MIME header is the message header.
  const std::string raw = ReadTestdata("simple.eml");
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(Fetch(m, raw, Spec({1})), "Shall we meet at noon?\r\nWendy\r\n");
  EXPECT_EQ(Fetch(m, raw, Spec({1}, Text::kMime)),
            Fetch(m, raw, Spec({}, Text::kHeader)));
  EXPECT_EQ(Fetch(m, raw, Spec({2})), "");
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1})), "");
  EXPECT_EQ(ResolveSection(m, raw, Spec({1}, Text::kHeader)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SectionTest, MessageInsideMessageNumbering) {
  const std::string raw = ReadTestdata("rfc822_in_rfc822.eml");
  const ParsedMessage m = MustParse(raw);
  const std::string middle =
      "From: middle@example.com\r\nSubject: Middle\r\n"
      "Content-Type: message/rfc822\r\n\r\n";
  const std::string inner = "From: inner@example.com\r\nSubject: Inner\r\n\r\n";
  EXPECT_EQ(Fetch(m, raw, Spec({1})), middle + inner + "Innermost text\r\n");
  EXPECT_EQ(Fetch(m, raw, Spec({1}, Text::kHeader)), middle);
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1})), inner + "Innermost text\r\n");
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1}, Text::kHeader)), inner);
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1}, Text::kText)), "Innermost text\r\n");
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1, 1})), "Innermost text\r\n");
  EXPECT_EQ(Fetch(m, raw, Spec({1, 1}, Text::kHeaderFields, {"Subject"})),
            "Subject: Inner\r\n\r\n");
}

TEST(SectionTest, HeaderFieldsKeepFoldedLines) {
  const std::string raw = ReadTestdata("encoded_words.eml");
  const ParsedMessage m = MustParse(raw);
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kHeaderFields, {"Subject"})),
            "Subject: =?UTF-8?B?SGVsbG8g?= =?UTF-8?Q?W=C3=B6rld?=\r\n"
            " =?windows-1252?Q?=93quoted=94?=\r\n\r\n");
}

// ---------------------------------------------------------------------------
// Decoders and helpers.

std::string DecodeAll(std::string_view encoding, std::string_view in,
                      size_t chunk) {
  std::unique_ptr<Decoder> d = Decoder::For(encoding);
  std::string out;
  for (size_t i = 0; i < in.size(); i += chunk) {
    d->Feed(in.substr(i, chunk), &out);
  }
  d->Finish(&out);
  return out;
}

TEST(DecoderTest, Base64IgnoresGarbageAndAnyChunking) {
  const std::string in = "SGVs\r\nbG8s!!IHdv cmxk\tIQ==\r\n";
  for (size_t chunk : {1, 2, 3, 5, 100}) {
    EXPECT_EQ(DecodeAll("base64", in, chunk), "Hello, world!") << chunk;
  }
  EXPECT_EQ(DecodeAll("BASE64", "YQ", 1), "a");          // missing padding
  EXPECT_EQ(DecodeAll("BASE64", "YQ==YmM=", 1), "abc");  // concatenated
  EXPECT_EQ(DecodeAll("BASE64", "Y", 1), "");
}

TEST(DecoderTest, QuotedPrintable) {
  const std::string in =
      "soft=\r\nbreak, caf=C3=a9 =3D  \r\nkeep=ZZ and =\r\n=\r\nx  \t=  \r\n"
      "end=";
  const std::string want = "softbreak, caf\xc3\xa9 =\r\nkeep=ZZ and x  \tend";
  for (size_t chunk : {1, 2, 3, 7, 1000}) {
    EXPECT_EQ(DecodeAll("quoted-printable", in, chunk), want) << chunk;
  }
  EXPECT_EQ(DecodeAll("QUOTED-PRINTABLE", "bare=\nlf", 1), "barelf");
  EXPECT_EQ(DecodeAll("QUOTED-PRINTABLE", "x=4", 1), "x=4");
  EXPECT_EQ(DecodeAll("QUOTED-PRINTABLE", "a= b", 1), "a= b");
}

TEST(DecoderTest, IdentityAndUnknown) {
  EXPECT_EQ(DecodeAll("7bit", std::string("a\0b", 3), 1),
            std::string("a\0b", 3));
  EXPECT_NE(Decoder::For("8BIT"), nullptr);
  EXPECT_NE(Decoder::For("binary"), nullptr);
  EXPECT_NE(Decoder::For(""), nullptr);
  EXPECT_EQ(Decoder::For("x-uuencode"), nullptr);
}

TEST(HelperTest, DecodeEncodedWords) {
  EXPECT_EQ(DecodeEncodedWords("=?UTF-8?B?SGVsbG8g?= =?UTF-8?Q?W=C3=B6rld?= "
                               "=?windows-1252?Q?=93quoted=94?="),
            "Hello W\xc3\xb6rld\xe2\x80\x9cquoted\xe2\x80\x9d");
  EXPECT_EQ(DecodeEncodedWords("=?ISO-8859-1?Q?Andr=E9?= Pirard"),
            "Andr\xc3\xa9 Pirard");
  EXPECT_EQ(DecodeEncodedWords("=?us-ascii?q?a_b?=x"), "a bx");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8*en?Q?hi?="), "hi");  // RFC 2231
  // Unknown charset and malformed words stay as sent.
  EXPECT_EQ(DecodeEncodedWords("=?koi8-r?B?98/T?= ok"), "=?koi8-r?B?98/T?= ok");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
  EXPECT_EQ(DecodeEncodedWords("=?utf-8?Q?a b?="), "=?utf-8?Q?a b?=");
  EXPECT_EQ(DecodeEncodedWords("a =?utf-8?Q?b?= c"), "a b c");
  EXPECT_EQ(DecodeEncodedWords("=?=?=?"), "=?=?=?");
  // Many "=?" without any terminator: linear, left alone.
  const std::string many(200000, '=');
  EXPECT_EQ(DecodeEncodedWords(many + "?"), many + "?");
}

TEST(HelperTest, HeaderValues) {
  const std::string block =
      "Received: from a\r\n\tby b\r\nX-Foo: 1\r\nreceived:  from c \r\n\r\n"
      "Received: not a header\r\n";
  EXPECT_THAT(HeaderValues(block, "RECEIVED"),
              ElementsAre("from a\tby b", "from c"));
  EXPECT_THAT(HeaderValues(block, "x-foo"), ElementsAre("1"));
  EXPECT_TRUE(HeaderValues(block, "Subject").empty());
}

TEST(HelperTest, ForEachTextBody) {
  const std::string raw = ReadTestdata("nested.eml");
  std::vector<std::string> texts;
  ForEachTextBody(MustParse(raw), raw,
                  [&](std::string_view t) { texts.emplace_back(t); });
  EXPECT_THAT(texts, ElementsAre("Plain body\r\nline two",
                                 "<p>HTML body \xe2\x9c\x93</p>", "Deep text",
                                 "Deepest body", "Third body"));
  const std::string latin = ReadTestdata("encoded_words.eml");
  texts.clear();
  ForEachTextBody(MustParse(latin), latin,
                  [&](std::string_view t) { texts.emplace_back(t); });
  EXPECT_THAT(texts, ElementsAre("Caf\xc3\xa9 cr\xc3\xa8me\r\n"));
}

TEST(PreviewTest, PlainTextWhitespaceNormalised) {
  const std::string raw =
      "Subject: x\r\n\r\n  Hello,\r\n\r\n\tthis  is\r\nthe   body.  \r\n";
  EXPECT_EQ(Preview(MustParse(raw), raw), "Hello, this is the body.");
}

TEST(PreviewTest, AlternativePrefersPlainText) {
  const std::string raw =
      "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
      "--b\r\nContent-Type: text/plain\r\n\r\nPlain version\r\n"
      "--b--\r\n";
  EXPECT_EQ(Preview(MustParse(raw), raw), "Plain version");
}

TEST(PreviewTest, HtmlMarkupRemoved) {
  const std::string raw =
      "Content-Type: text/html; charset=utf-8\r\n"
      "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
      "<html><head><title>T</title><style>p {color: red}</style></head>"
      "<body><!-- note --><p>Caf=C3=A9 &amp; <b>bo</b>ld</p><p>next&nbsp;line"
      "&#x2713;</p><script>var x = '<p>';</script></body></html>\r\n";
  EXPECT_EQ(Preview(MustParse(raw), raw), "Caf\xc3\xa9 & bold next line\xe2\x9c\x93");
}

TEST(PreviewTest, NoTextGivesEmpty) {
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "iVBORw0KGgo=\r\n"
      "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\n"
      "an attached file\r\n"
      "--b--\r\n";
  EXPECT_EQ(Preview(MustParse(raw), raw), "");
  const std::string forwarded =
      "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n";
  EXPECT_EQ(Preview(MustParse(forwarded), forwarded), "");
}

TEST(PreviewTest, CutAtCharactersNeverInsideOne) {
  std::string body;
  for (int i = 0; i < 300; ++i) body += "\xc3\xa9";  // 'é', two octets each
  const std::string raw = "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n";
  const std::string preview = Preview(MustParse(raw), raw);
  EXPECT_EQ(preview.size(), 2 * kPreviewMaxChars);
  EXPECT_EQ(preview, body.substr(0, 2 * kPreviewMaxChars));

  // Words: never a trailing space where the cut falls.
  std::string words;
  for (int i = 0; i < 200; ++i) words += "ab ";
  const std::string raw2 = "Subject: x\r\n\r\n" + words;
  const std::string preview2 = Preview(MustParse(raw2), raw2);
  EXPECT_LE(preview2.size(), kPreviewMaxChars);
  EXPECT_NE(preview2.back(), ' ');
}

TEST(PreviewTest, CharsetsAndInvalidUtf8) {
  const std::string latin =
      "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nCaf\xe9\r\n";
  EXPECT_EQ(Preview(MustParse(latin), latin), "Caf\xc3\xa9");
  // Invalid UTF-8 (a lone continuation octet, a truncated sequence) is dropped.
  const std::string broken =
      "Content-Type: text/plain; charset=utf-8\r\n\r\nA\x80 B\xe2\x9c\r\n";
  EXPECT_EQ(Preview(MustParse(broken), broken), "A B");
}

TEST(PreviewTest, ReadsABoundedPrefix) {
  // The text starts after more markup than a preview reads: nothing is found,
  // and the work stays bounded whatever the size.
  std::string html = "Content-Type: text/html\r\n\r\n<div>";
  html += std::string(kPreviewMaxInputOctets, ' ');
  html += "late text</div>\r\n";
  EXPECT_EQ(Preview(MustParse(html), html), "");
  // Base64 cut mid-quantum decodes what is whole.
  const std::string b64 =
      "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "SGVsbG8gd29ybGQ=\r\n";
  const ParsedMessage parsed = MustParse(b64);
  const Part* part = PreviewPart(parsed);
  ASSERT_NE(part, nullptr);
  EXPECT_EQ(PreviewFromBody(*part, "SGVsbG8gd29y", /*complete=*/false), "Hello wor");
}

TEST(DateTest, ModernAndObsoleteForms) {
  EXPECT_EQ(ParseDateDay("Mon, 3 Jul 2023 10:00:00 +0000"), 20230703);
  EXPECT_EQ(ParseDateDay("3 Jul 2023 10:00 -0700"), 20230703);
  // The day in the header's own zone, even when UTC is another day.
  EXPECT_EQ(ParseDateDay("Sun, 31 Dec 2023 23:59:59 -1200"), 20231231);
  EXPECT_EQ(ParseDateDay("Fri, 21 Nov 97 09:55:06 GMT"), 19971121);
  EXPECT_EQ(ParseDateDay("21 Nov 49 09:55 EST"), 20491121);
  EXPECT_EQ(ParseDateDay("21 Nov 103 09:55 Z"), 20031121);
  EXPECT_EQ(ParseDateDay("Thu,\r\n 13\r\n   Feb\r\n 1969 23:32 -0330 (NT)"),
            19690213);
  EXPECT_EQ(ParseDateDay("(comment) 1 (x) jan (y) 2000 00:00 (z)"), 20000101);
  EXPECT_EQ(ParseDateDay("Monday, 03-Jul-2023 10:00:00 PDT"), 20230703);
  EXPECT_EQ(ParseDateDay("Mon Jul  3 10:00:00 2023"), 20230703);
  EXPECT_EQ(ParseDateDay("29 Feb 2024 00:00 +0000"), 20240229);
  EXPECT_EQ(ParseDateDay("29 Feb 2023 00:00 +0000"), std::nullopt);
  EXPECT_EQ(ParseDateDay("32 Jan 2023"), std::nullopt);
  EXPECT_EQ(ParseDateDay("yesterday"), std::nullopt);
  EXPECT_EQ(ParseDateDay(""), std::nullopt);
  EXPECT_EQ(ParseDateDay("1 Foo 2020"), std::nullopt);
}

// SORT DATE (RFC 5256 §2.2) compares instants in UTC.
TEST(DateTest, InstantsInUtc) {
  EXPECT_EQ(ParseDateTime("Mon, 3 Jul 2023 10:00:00 +0000"), 1688378400);
  EXPECT_EQ(ParseDateTime("3 Jul 2023 12:30 +0230"), 1688378400);
  EXPECT_EQ(ParseDateTime("Mon, 3 Jul 2023 03:00:00 PDT"), 1688378400);
  EXPECT_EQ(ParseDateTime("Mon Jul  3 10:00:00 2023"), 1688378400);  // asctime: UTC
  EXPECT_EQ(ParseDateTime("3 Jul 2023 10:00:00 Z"), 1688378400);     // military: UTC
  EXPECT_EQ(ParseDateTime("3 Jul 2023"), 1688342400);                // no time: midnight
  EXPECT_EQ(ParseDateTime("Thu,\r\n 1\r\n Jan\r\n 1970 00:00 (UT)"), 0);
  EXPECT_EQ(ParseDateTime("31 Dec 1969 23:59:59 +0000"), -1);
  EXPECT_EQ(ParseDateTime("3 Jul 2023 25:00 +0000"), std::nullopt);
  EXPECT_EQ(ParseDateTime("3 Jul 2023 10:00 +0099"), std::nullopt);
  EXPECT_EQ(ParseDateTime("3 Jul 2023 ten o'clock"), std::nullopt);
  EXPECT_EQ(ParseDateTime("yesterday"), std::nullopt);
}

// ---------------------------------------------------------------------------
// Serialization.

TEST(SerializeTest, RoundTripsCorpus) {
  for (const std::string& name : CorpusNames()) {
    const ParsedMessage m = MustParse(ReadTestdata(name));
    const std::string blob = Serialize(m);
    absl::StatusOr<ParsedMessage> back = Deserialize(blob);
    ASSERT_TRUE(back.ok()) << name << ": " << back.status();
    EXPECT_EQ(*back, m) << name;
    EXPECT_EQ(Serialize(*back), blob);
  }
}

TEST(SerializeTest, GarbageIsRejected) {
  EXPECT_FALSE(Deserialize("").ok());
  EXPECT_FALSE(Deserialize("MIM1").ok());
  EXPECT_FALSE(Deserialize("nonsense").ok());
  // A count claiming 2^60 children must not allocate.
  std::string huge = "MIM1";
  huge += std::string("\x00\x00", 2);
  EXPECT_FALSE(Deserialize(huge + "\xff\xff\xff\xff\xff\xff\xff\xff\x0f").ok());

  const std::string blob = Serialize(MustParse(ReadTestdata("nested.eml")));
  for (size_t n = 0; n < blob.size(); ++n) {
    EXPECT_FALSE(Deserialize(blob.substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(Deserialize(blob + "x").ok());
  std::mt19937 rng(42);
  for (int i = 0; i < 3000; ++i) {
    std::string mutated = blob;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      mutated[rng() % mutated.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    // Any answer is fine as long as it does not crash; when accepted, the
    // result must be usable.
    absl::StatusOr<ParsedMessage> m = Deserialize(mutated);
    if (m.ok()) {
      (void)ResolveSection(*m, "", Spec({1, 2}));
      (void)RequiredHeaderRange(*m, Spec({2}, Text::kHeaderFields, {"a"}));
    }
  }
}

// ---------------------------------------------------------------------------
// Limits and hostile input. No timing assertions: these must finish and
// give sane answers (a quadratic algorithm would not finish in CI time).

TEST(HostileTest, DeepNestingStopsAtMaxDepth) {
  std::string raw;
  const int kLevels = 1000;
  for (int i = 0; i < kLevels; ++i) {
    // "x" so that no boundary is a prefix of another (RFC 2046 §5.1.1).
    raw += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) +
           "x\r\n\r\n--b" + std::to_string(i) + "x\r\n";
  }
  raw += "\r\nleaf\r\n";
  for (int i = kLevels - 1; i >= 0; --i) {
    raw += "--b" + std::to_string(i) + "x--\r\n";
  }
  for (const int max_depth : {0, 1, 64, 100000}) {
    Limits limits;
    limits.max_depth = max_depth;
    const ParsedMessage m = MustParse(raw, limits);
    const int effective = std::min(max_depth, kMaxSupportedDepth);
    int depth = 0;
    const Part* p = &m.root;
    while (!p->children.empty()) {
      p = &p->children[0];
      ++depth;
    }
    EXPECT_EQ(depth, effective);
    EXPECT_EQ(p->type, "APPLICATION");  // opaque, not descended
    EXPECT_EQ(p->subtype, "OCTET-STREAM");
    absl::StatusOr<ParsedMessage> back = Deserialize(Serialize(m));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->bodystructure, m.bodystructure);
  }
}

TEST(HostileTest, DeepMessageRfc822Nesting) {
  std::string raw;
  for (int i = 0; i < 2000; ++i) raw += "Content-Type: message/rfc822\r\n\r\n";
  raw += "Subject: bottom\r\n\r\nx";
  const ParsedMessage m = MustParse(raw);
  EXPECT_FALSE(m.bodystructure.empty());
  EXPECT_TRUE(Deserialize(Serialize(m)).ok());
}

TEST(HostileTest, ManyPartsStopAtMaxParts) {
  std::string raw = "Content-Type: multipart/mixed; boundary=x\r\n\r\n";
  for (int i = 0; i < 30000; ++i) raw += "--x\r\n\r\np\r\n";
  raw += "--x--\r\n";
  ParsedMessage m = MustParse(raw);
  EXPECT_EQ(m.root.children.size(), 9999u);  // + the root = 10000 entities
  Limits limits;
  limits.max_parts = 3;
  m = MustParse(raw, limits);
  EXPECT_EQ(m.root.children.size(), 2u);
  limits.max_parts = 1;  // the root only: not descended
  m = MustParse(raw, limits);
  EXPECT_TRUE(m.root.children.empty());
  EXPECT_EQ(m.root.type, "APPLICATION");
}

TEST(HostileTest, HundredThousandAddresses) {
  std::string raw = "To: ";
  for (int i = 0; i < 100000; ++i) {
    if (i > 0) raw += ",\r\n ";
    raw += "user" + std::to_string(i) + "@example.com";
  }
  raw += "\r\n\r\nbody\r\n";
  ParsedMessage m = MustParse(raw);
  EXPECT_NE(m.envelope.find("\"user99999\" \"example.com\""),
            std::string::npos);
  Limits limits;
  limits.max_address_count = 10;
  m = MustParse(raw, limits);
  EXPECT_NE(m.envelope.find("\"user9\""), std::string::npos);
  EXPECT_EQ(m.envelope.find("\"user10\""), std::string::npos);
}

TEST(HostileTest, HugeHeaderBlock) {
  std::string raw;
  raw.reserve(10 << 20);
  while (raw.size() < (10u << 20)) {
    raw += "X-Filler: " + std::string(1000, 'a') + "\r\n";
  }
  raw += "Subject: at the end\r\n\r\nbody\r\n";
  ParsedMessage m = MustParse(raw);
  EXPECT_NE(m.envelope.find("\"at the end\""), std::string::npos);
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kHeaderFields, {"Subject"})),
            "Subject: at the end\r\n\r\n");
  // With a field limit the header is still delimited correctly.
  Limits limits;
  limits.max_header_fields = 100;
  m = MustParse(raw, limits);
  EXPECT_EQ(m.envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  EXPECT_EQ(Fetch(m, raw, Spec({}, Text::kText)), "body\r\n");
  // One 10 MB folded field.
  std::string folded = "Subject: x";
  while (folded.size() < (10u << 20)) folded += "\r\n y";
  folded += "\r\n\r\n";
  m = MustParse(folded);
  EXPECT_EQ(m.envelope.size() > (5u << 20), true);
}

TEST(HostileTest, BrokenSyntaxAndNuls) {
  const std::vector<std::string> inputs = {
      "From: \"unterminated <a@b>\r\n\r\nx",
      "From: (unterminated comment a@b\r\nTo: ((((((\r\n\r\n",
      "From: <<<<>>>>@@@,,,;;;:::\r\nCc: a:b:c;d;e;\r\n\r\n",
      "To: \"\\\r\nFrom: \\\r\n\r\n",
      "Subject: nul\0byte\r\nFrom: a\0@b\r\n\r\nbody\0"s,
      "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
      "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--",
      "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a",
      "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n--a\r\n",
      "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
      "\r\nRnJvbTogYQ==",
      "Content-Type: /\r\nContent-Disposition: ;;;=\r\n"
      "Content-Language: ,,(,\r\n\r\n",
      "Content-Type: text/plain; a=\"\\\r\n\r\n",
      "\r\n",
      "",
      "\n",
      "no colon line\r\n continuation\r\n\r\n",
      " leading continuation\r\n\r\n",
      "Date: 99999999999 Jan 99999999999\r\n\r\n",
  };
  for (const std::string& raw : inputs) {
    const ParsedMessage m = MustParse(raw);
    EXPECT_FALSE(m.bodystructure.empty());
    EXPECT_EQ(m.root.body_end, raw.size());
    absl::StatusOr<ParsedMessage> back = Deserialize(Serialize(m));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, m);
  }
  // A NUL in a header value forces a literal.
  const ParsedMessage m = MustParse(inputs[4]);
  EXPECT_NE(m.envelope.find("{8}\r\nnul\0byte"s), std::string::npos);
}

TEST(HostileTest, ManyDashLinesInDeepNesting) {
  // Every line looks almost like a delimiter at every level.
  std::string raw;
  for (int i = 0; i < 60; ++i) {
    raw += "Content-Type: multipart/mixed; boundary=bbbbbbbbbbbbbbbbbbbb" +
           std::to_string(i) + "\r\n\r\n--bbbbbbbbbbbbbbbbbbbb" +
           std::to_string(i) + "\r\n";
  }
  raw += "\r\n";
  for (int i = 0; i < 100000; ++i) raw += "--bbbbbbbbbbbbbbbbbbbbx\r\n";
  const ParsedMessage m = MustParse(raw);
  EXPECT_FALSE(m.bodystructure.empty());
}

TEST(HostileTest, RandomBytes) {
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string raw(rng() % 4096, '\0');
    for (char& c : raw) {
      // Bias towards MIME-significant bytes.
      static constexpr char kAlphabet[] = "\r\n-:;=\"<>@,()\\ abx\0\xff";
      c = rng() % 3 == 0 ? static_cast<char>(rng())
                         : kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
    }
    const ParsedMessage m = MustParse(raw);
    EXPECT_EQ(m.root.body_end, raw.size());
  }
}

// Mutations of the corpus: Parse never crashes, the result round-trips and
// every section resolves within the message.
TEST(HostileTest, RandomizedCorpusMutations) {
  std::vector<std::string> corpus;
  for (const std::string& name : CorpusNames()) {
    corpus.push_back(ReadTestdata(name));
  }
  static constexpr std::string_view kSnippets[] = {
      "\r\n",
      "\n",
      "--",
      "--outer",
      "--inner--",
      "\r\n\r\n",
      ":",
      ";",
      "boundary=",
      "Content-Type: multipart/mixed; boundary=outer\r\n",
      "Content-Type: message/rfc822\r\n",
      "=?utf-8?B?",
      "?=",
      "\"",
      "(",
      "<",
      "Content-Transfer-Encoding: base64\r\n",
      std::string_view("\0", 1)};
  std::mt19937 rng(1234);
  const std::vector<SectionSpec> specs = {
      Spec({}),
      Spec({1}),
      Spec({1, 2}),
      Spec({2, 1}, Text::kMime),
      Spec({}, Text::kHeader),
      Spec({}, Text::kText),
      Spec({}, Text::kHeaderFields, {"From", "Subject"}),
      Spec({}, Text::kHeaderFieldsNot, {"To"}),
      Spec({3}, Text::kHeader),
      Spec({2}, Text::kHeaderFields, {"Subject"})};
  for (int iter = 0; iter < 4000; ++iter) {
    std::string raw = corpus[rng() % corpus.size()];
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits && !raw.empty(); ++e) {
      const size_t pos = rng() % raw.size();
      switch (rng() % 4) {
        case 0:
          raw[pos] = static_cast<char>(rng());
          break;
        case 1:
          raw.erase(pos, 1 + rng() % 16);
          break;
        case 2:
          raw.insert(pos, kSnippets[rng() % std::size(kSnippets)]);
          break;
        case 3: {
          const size_t len = std::min<size_t>(raw.size() - pos, 1 + rng() % 64);
          raw.insert(rng() % raw.size(), raw.substr(pos, len));
          break;
        }
      }
    }
    const ParsedMessage m = MustParse(raw);
    absl::StatusOr<ParsedMessage> back = Deserialize(Serialize(m));
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(*back, m);
    for (SectionSpec spec : specs) {
      for (const bool binary : {false, true}) {
        if (binary && spec.text != Text::kNone) continue;
        spec.binary = binary;
        absl::StatusOr<ResolvedSection> s = ResolveSection(m, raw, spec);
        if (!s.ok()) continue;
        uint64_t total = 0;
        for (const Piece& p : s->pieces) {
          if (p.is_generated) {
            total += p.generated.size();
            continue;
          }
          ASSERT_LE(p.begin, p.end);
          ASSERT_LE(p.end, raw.size());
          total += p.end - p.begin;
        }
        if (s->binary_encoding.empty()) {
          EXPECT_EQ(total, s->size);
        } else {
          EXPECT_EQ(SectionBytes(*s, raw).size(), s->size);
        }
      }
    }
    ForEachTextBody(m, raw, [](std::string_view) {});
  }
}

// Found by the MIME fuzzer: a comment in a parameter list whose last character is a
// backslash made the parser step past the end of the field and throw out_of_range,
// which would have ended the service. The field ends the comment instead.
TEST(RobustnessTest, BackslashEndingAnUnclosedCommentInContentType) {
  for (const char* field : {"text/plain; (x\\", "text/plain (x\\", "text/plain; a=b (\\"}) {
    const std::string message =
        absl::StrCat("Content-Type: ", field, "\r\nSubject: s\r\n\r\nbody\r\n");
    const ParsedMessage m = MustParse(message);
    EXPECT_NE(m.bodystructure.find("\"TEXT\" \"PLAIN\""), std::string::npos) << field;
  }
}

TEST(AddressTest, CommentsAreLeftOutAndAddrSpecsClosedUp) {
  EXPECT_EQ(AddressesWithoutComments("<user-from (comment)@ (comment) domain.org>"),
            "<user-from@domain.org>");
  EXPECT_EQ(AddressesWithoutComments("John (the) Doe <j . d @ x.org>, b@y.org (B)"),
            "John Doe <j.d@x.org>, b@y.org");
  EXPECT_EQ(AddressesWithoutComments("\"A, B\" <a@b>; (unterminated"), "\"A, B\" <a@b>;");
  EXPECT_EQ(AddressesWithoutComments(""), "");
}

}  // namespace
}  // namespace mailbox::mime
