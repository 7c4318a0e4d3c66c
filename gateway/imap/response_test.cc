#include "gateway/imap/response.h"

#include <gtest/gtest.h>

namespace imap {
namespace {

using namespace std::string_literals;

std::string AString(std::string_view s, bool utf8 = false) {
  std::string out;
  AppendAString(out, s, utf8);
  return out;
}

std::string Mailbox(std::string_view s, bool utf8 = false) {
  std::string out;
  EXPECT_TRUE(AppendMailbox(out, s, utf8));
  return out;
}

TEST(ResponseTest, StringRepresentationChoice) {
  EXPECT_EQ(AString("INBOX"), "INBOX");
  EXPECT_EQ(AString("a]b"), "a]b");  // resp-specials are ASTRING-CHAR
  EXPECT_EQ(AString(""), "\"\"");
  EXPECT_EQ(AString("a b"), "\"a b\"");
  EXPECT_EQ(AString("back\\slash"), "\"back\\\\slash\"");
  EXPECT_EQ(AString("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(AString("a*b%c"), "\"a*b%c\"");
  EXPECT_EQ(AString("{5}"), "\"{5}\"");
  EXPECT_EQ(AString("line\r\nbreak"), "{11}\r\nline\r\nbreak");
  EXPECT_EQ(AString("caf\xc3\xa9"), "{5}\r\ncaf\xc3\xa9");
  EXPECT_EQ(AString("caf\xc3\xa9", /*utf8=*/true), "\"caf\xc3\xa9\"");
  EXPECT_EQ(AString("bad\xff", /*utf8=*/true), "{4}\r\nbad\xff");
  std::string nstring;
  AppendNString(nstring, std::nullopt);
  AppendNString(nstring, std::string("NIL"));
  EXPECT_EQ(nstring, "NIL\"NIL\"");
}

TEST(ResponseTest, MailboxNames) {
  EXPECT_EQ(Mailbox("Sent Items"), "\"Sent Items\"");
  EXPECT_EQ(Mailbox("a\\b"), "\"a\\\\b\"");
  EXPECT_EQ(Mailbox("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(Mailbox("Entw\xc3\xbc" "rfe"), "Entw&APw-rfe");
  EXPECT_EQ(Mailbox("Entw\xc3\xbc" "rfe", /*utf8=*/true), "\"Entw\xc3\xbc" "rfe\"");
  EXPECT_EQ(Mailbox("R&D"), "R&-D");
  // CR cannot be quoted: a literal, even in mUTF-7 (RFC 3501 §5.1.3 leaves
  // control characters to base64, so the name is still unambiguous).
  EXPECT_EQ(Mailbox("a\rb"), "a&AA0-b");
  std::string out;
  EXPECT_FALSE(AppendMailbox(out, "\xff"));
  EXPECT_TRUE(out.empty());
}

TEST(ResponseTest, RenamedListCarriesOldName) {
  EXPECT_EQ(RenamedListResponse({}, '/', "New", "Old"),
            "* LIST () \"/\" New (\"OLDNAME\" (Old))\r\n");
  EXPECT_EQ(RenamedListResponse({"\\Subscribed"}, '/', "a b", "Entw\xc3\xbc" "rfe"),
            "* LIST (\\Subscribed) \"/\" \"a b\" (\"OLDNAME\" (Entw&APw-rfe))\r\n");
  EXPECT_EQ(RenamedListResponse({}, '/', "x", "Entw\xc3\xbc" "rfe", /*utf8_accept=*/true),
            "* LIST () \"/\" x (\"OLDNAME\" (\"Entw\xc3\xbc" "rfe\"))\r\n");
  EXPECT_EQ(RenamedListResponse({}, '/', "x", "\xff"), "");
}

// RFC 5464 §4.4.2: entry names only, no parentheses; "" is the server.
TEST(ResponseTest, MetadataChangedNamesEntries) {
  EXPECT_EQ(MetadataChangedResponse("INBOX", {"/private/comment", "/shared/comment"}),
            "* METADATA INBOX /private/comment /shared/comment\r\n");
  EXPECT_EQ(MetadataChangedResponse("", {"/private/vendor/x"}),
            "* METADATA \"\" /private/vendor/x\r\n");
  EXPECT_EQ(MetadataChangedResponse("a b", {"/private/x"}), "* METADATA \"a b\" /private/x\r\n");
  EXPECT_EQ(MetadataChangedResponse("INBOX", {}), "");
}

TEST(ResponseTest, StatusResponses) {
  EXPECT_EQ(StatusResponse("a1", Status::kOk, "", "done"), "a1 OK done\r\n");
  EXPECT_EQ(StatusResponse("*", Status::kOk, code::UidValidity(42), "UIDs valid"),
            "* OK [UIDVALIDITY 42] UIDs valid\r\n");
  EXPECT_EQ(StatusResponse("a", Status::kNo, code::kTryCreate, "no\r\nsuch"),
            "a NO [TRYCREATE] no  such\r\n");
  EXPECT_EQ(StatusResponse("a", Status::kBad, "", ""), "a BAD .\r\n");
  EXPECT_EQ(StatusResponse("a", Status::kOk, code::AppendUid(7, {{3, 5}}), "ok"),
            "a OK [APPENDUID 7 3:5] ok\r\n");
  EXPECT_EQ(code::CopyUid(7, {{1, 2}, {4, 4}}, {{10, 12}}), "COPYUID 7 1:2,4 10:12");
  EXPECT_EQ(code::PermanentFlags({"\\Seen", "\\*"}), "PERMANENTFLAGS (\\Seen \\*)");
  EXPECT_EQ(code::Modified({{7, 7}, {9, 10}}), "MODIFIED 7,9:10");
  EXPECT_EQ(StatusResponse("*", Status::kBye, "", "bye"), "* BYE bye\r\n");
  EXPECT_EQ(ContinuationResponse("Ready"), "+ Ready\r\n");
}

TEST(ResponseTest, DataResponses) {
  EXPECT_EQ(ListResponse(false, {"\\HasNoChildren"}, '/', "a\"b"),
            "* LIST (\\HasNoChildren) \"/\" \"a\\\"b\"\r\n");
  EXPECT_EQ(ListResponse(true, {}, 0, "INBOX"), "* LSUB () NIL INBOX\r\n");
  EXPECT_EQ(StatusDataResponse("INBOX", {{StatusItem::kMessages, uint64_t{3}},
                                         {StatusItem::kUidNext, uint64_t{9}}}),
            "* STATUS INBOX (MESSAGES 3 UIDNEXT 9)\r\n");
  EXPECT_EQ(SearchResponse({1, 5}, 99), "* SEARCH 1 5 (MODSEQ 99)\r\n");
  EXPECT_EQ(SearchResponse({}), "* SEARCH\r\n");
  EXPECT_EQ(SortResponse({5, 1, 3}), "* SORT 5 1 3\r\n");
  EXPECT_EQ(SortResponse({2}, 7), "* SORT 2 (MODSEQ 7)\r\n");
  EXPECT_EQ(SortResponse({}), "* SORT\r\n");
  EsearchData data;
  data.min = 1;
  data.count = 3;
  data.all = std::vector<Interval>{{1, 2}, {5, 5}};
  EXPECT_EQ(EsearchResponse("a1", true, data),
            "* ESEARCH (TAG \"a1\") UID MIN 1 ALL 1:2,5 COUNT 3\r\n");
  EXPECT_EQ(ExistsResponse(4), "* 4 EXISTS\r\n");
  EXPECT_EQ(ExpungeResponse(2), "* 2 EXPUNGE\r\n");
  EXPECT_EQ(VanishedResponse({{1, 3}}, true), "* VANISHED (EARLIER) 1:3\r\n");
  EXPECT_EQ(FlagsResponse({"\\Seen", "$Junk"}), "* FLAGS (\\Seen $Junk)\r\n");
  EXPECT_EQ(NamespaceResponse({{"", '/'}}, {}, {}),
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
  EXPECT_EQ(IdResponse(std::nullopt), "* ID NIL\r\n");
  EXPECT_EQ(IdResponse(IdCommand::Params{{"name", "imapd"}, {"os", std::nullopt}}),
            "* ID (\"name\" \"imapd\" \"os\" NIL)\r\n");
  EXPECT_EQ(CapabilityResponse({"IMAP4rev1", "IDLE"}), "* CAPABILITY IMAP4rev1 IDLE\r\n");
}

// RFC 5256 §4: a chain of only children is written flat, siblings each in their
// own parentheses, a dummy as a list without a number.
TEST(ResponseTest, ThreadResponse) {
  EXPECT_EQ(ThreadResponse({}), "* THREAD\r\n");
  EXPECT_EQ(ThreadResponse({{2, 0}, {3, 0}}), "* THREAD (2)(3)\r\n");
  // (3 6 (4 23)(44 7 96)) of §4's example.
  EXPECT_EQ(ThreadResponse({{3, 0}, {6, 1}, {4, 2}, {23, 3}, {44, 2}, {7, 3}, {96, 4}}),
            "* THREAD (3 6 (4 23)(44 7 96))\r\n");
  EXPECT_EQ(ThreadResponse({{0, 0}, {3, 1}, {5, 1}}), "* THREAD ((3)(5))\r\n");
  EXPECT_EQ(ThreadResponse({{1, 0}, {0, 1}, {2, 2}, {3, 2}, {4, 1}}),
            "* THREAD (1 ((2)(3))(4))\r\n");
  // Deep chains are written without recursion.
  std::vector<ThreadNode> chain;
  std::string expected = "* THREAD (";
  for (uint32_t i = 0; i < 100000; ++i) {
    chain.push_back({i + 1, i});
    expected += (i == 0 ? "" : " ") + std::to_string(i + 1);
  }
  EXPECT_EQ(ThreadResponse(chain), expected + ")\r\n");
}

TEST(ResponseTest, Fetch) {
  DateTime date = DateTime::FromUnixSeconds(760996345, -480);
  EXPECT_EQ(date.ToQuoted(), "\"11-Feb-1994 11:52:25 -0800\"");
  std::string fetch = FetchResponseBuilder(3)
                          .Uid(17)
                          .Flags({"\\Seen"})
                          .InternalDate(date)
                          .Rfc822Size(44)
                          .ModSeq(5)
                          .Section("BODY[HEADER]", "a\r\n")
                          .Section("BODY[2]", std::nullopt)
                          .Section("BINARY[1]", std::string_view("x\0y", 3), true)
                          .Finish();
  EXPECT_EQ(fetch, ("* 3 FETCH (UID 17 FLAGS (\\Seen) INTERNALDATE "
                               "\"11-Feb-1994 11:52:25 -0800\" RFC822.SIZE 44 MODSEQ (5) "
                               "BODY[HEADER] {3}\r\na\r\n BODY[2] NIL BINARY[1] ~{3}\r\nx\0y)\r\n"s));
  FetchResponseBuilder streamed(1);
  streamed.Uid(2);
  EXPECT_EQ(streamed.StreamSection("BODY[]", 10), "* 1 FETCH (UID 2 BODY[] {10}\r\n");
  streamed.Rfc822Size(10);
  EXPECT_EQ(streamed.Finish(), " RFC822.SIZE 10)\r\n");
}

}  // namespace
}  // namespace imap
