#include "mailbox-service/admin/dovecot.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailbox::admin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// --- dovecot-uidlist ---------------------------------------------------------------

TEST(UidlistTest, Version3AsDovecotWritesIt) {
  // As Dovecot 2.3 left it after appending two entries without rewriting the
  // header (N still 5), with extension fields before the name.
  auto list = ParseUidlist(
      "3 V1796547209 N5 Gb1685c128722156b0542000083ecc375\n"
      "1 :1796547207.M476262P16901.vm,S=28,W=32\n"
      "3 S28 W32 :1796547207.M590180P16901.vm,S=28,W=32\n"
      "5 G0123 :1796547207.M673415P16901.vm,S=28,W=32:2,S\n"
      "6 :1796547208.M1P1.vm\n");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->version, 3);
  EXPECT_EQ(list->uidvalidity, 1796547209u);
  EXPECT_EQ(list->next_uid, 5u);
  EXPECT_EQ(list->guid, "b1685c128722156b0542000083ecc375");
  ASSERT_EQ(list->entries.size(), 4u);
  EXPECT_EQ(list->entries[1].uid, 3u);
  EXPECT_EQ(list->entries[1].base_name, "1796547207.M590180P16901.vm,S=28,W=32");
  // A name recorded with its info part is matched by its base.
  EXPECT_EQ(list->entries[2].base_name, "1796547207.M673415P16901.vm,S=28,W=32");
  EXPECT_EQ(list->entries[3].line, 5u);
  EXPECT_EQ(list->EffectiveNextUid(), 7u);
}

TEST(UidlistTest, NextUidAboveEveryEntryIsKept) {
  auto list = ParseUidlist("3 V7 N40\n2 :a\n");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->EffectiveNextUid(), 40u);
  auto empty = ParseUidlist("3 V7 N1\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->entries, IsEmpty());
  EXPECT_EQ(empty->EffectiveNextUid(), 1u);
}

TEST(UidlistTest, Versions1And2) {
  auto v1 = ParseUidlist("1 1000 4\n1 100.a.host\n3 300.c.host:2,S\n");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->uidvalidity, 1000u);
  ASSERT_EQ(v1->entries.size(), 2u);
  EXPECT_EQ(v1->entries[1].base_name, "300.c.host");
  auto v2 = ParseUidlist("2 1000 4\n1 0 100.a.host\n2 1 200.b.host\n");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->entries[1].base_name, "200.b.host");
}

TEST(UidlistTest, MalformedInputNamesTheLine) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"", "dovecot-uidlist is empty"},
      {"\n", "line 1: empty header"},
      {"4 V1 N2\n", "line 1: unknown version \"4\""},
      {"3 N2\n", "line 1: the header has no UIDVALIDITY"},
      {"3 V1\n", "line 1: the header has no next UID"},
      {"3 V0 N2\n", "line 1: bad UIDVALIDITY \"V0\""},
      {"3 V4294967296 N2\n", "line 1: bad UIDVALIDITY"},
      {"3 Vx N2\n", "line 1: bad UIDVALIDITY"},
      {"1 5\n", "line 1: a version 1 or 2 header"},
      {"3 V1 N9\n1 :a\n\n2 :b\n", "line 3: empty line"},
      {"3 V1 N9\n1 :a\nx :b\n", "line 3: expected \"<uid> ... <file name>\""},
      {"3 V1 N9\n0 :a\n", "line 2: expected"},
      {"3 V1 N9\n4294967295 :a\n", "line 2: expected"},
      {"3 V1 N9\n1 S3\n", "line 2: no \":<file name>\" field"},
      {"3 V1 N9\n1 :\n", "line 2: bad file name \"\""},
      {"3 V1 N9\n1 :a/b\n", "line 2: bad file name"},
      {"3 V1 N9\n2 :a\n2 :b\n", "line 3: UID 2 is not above the UID before it (2)"},
      {"3 V1 N9\n3 :a\n2 :b\n", "line 3: UID 2 is not above"},
      {"3 V1 N9\n1 :a\n2 :a:2,S\n", "line 3: file name \"a\" is listed twice"},
      {"2 1 9\n1 a\n", "line 2: expected \"<uid> <flags> <file name>\""},
  };
  for (const Case& c : cases) {
    auto list = ParseUidlist(c.text);
    ASSERT_FALSE(list.ok()) << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(list.status()));
    EXPECT_THAT(Message(list.status()), HasSubstr(c.error)) << c.text;
  }
}

TEST(UidlistTest, LimitsOfLineAndFile) {
  DovecotLimits limits;
  limits.max_line_octets = 20;
  const std::string at_limit = "1 :" + std::string(17, 'n');  // 20 octets
  EXPECT_TRUE(ParseUidlist("3 V1 N2\n" + at_limit + "\n", limits).ok());
  auto over = ParseUidlist("3 V1 N2\n" + at_limit + "n\n", limits);
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(Message(over.status()), HasSubstr("line 2: longer than 20 octets"));

  limits.max_uidlist_octets = 16;
  EXPECT_TRUE(ParseUidlist("3 V1 N2\n1 :abcd\n", limits).ok());  // 16 octets
  auto big = ParseUidlist("3 V1 N2\n1 :abcde\n", limits);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(Message(big.status()), HasSubstr("larger than 16 octets"));
}

// --- keywords and flags ------------------------------------------------------------

TEST(KeywordsTest, ParsesIndexesUpToZ) {
  auto letters = ParseDovecotKeywords("0 $Work\n1 Custom\n25 $Last\n");
  ASSERT_TRUE(letters.ok()) << letters.status();
  EXPECT_EQ((*letters)[0], "$Work");
  EXPECT_EQ((*letters)[1], "Custom");
  EXPECT_EQ((*letters)[25], "$Last");
  EXPECT_EQ((*letters)[2], "");
}

TEST(KeywordsTest, MalformedInput) {
  struct Case {
    const char* text;
    const char* error;
  };
  const Case cases[] = {
      {"26 TooMany\n", "line 1: index 26 has no letter"},
      {"0 a\n0 b\n", "line 2: index 0 is named twice"},
      {"x a\n", "line 1: expected \"<index> <keyword>\""},
      {"3\n", "line 1: expected"},
      {"0 \\Seen\n", "line 1: \"\\Seen\" is not an IMAP keyword"},
      {"0 two words\n", "is not an IMAP keyword"},
      {"0 paren(\n", "is not an IMAP keyword"},
      {"0 \n", "is not an IMAP keyword"},
  };
  for (const Case& c : cases) {
    auto letters = ParseDovecotKeywords(c.text);
    ASSERT_FALSE(letters.ok()) << c.text;
    EXPECT_THAT(Message(letters.status()), HasSubstr(c.error)) << c.text;
  }
  DovecotLimits limits;
  limits.max_keywords_octets = 8;
  EXPECT_TRUE(ParseDovecotKeywords("0 $Work\n", limits).ok());  // 8 octets
  EXPECT_THAT(Message(ParseDovecotKeywords("0 $Works\n", limits).status()),
              HasSubstr("larger than 8 octets"));
}

TEST(FileFlagsTest, AsDovecotReadsThem) {
  KeywordLetters keywords;
  keywords[0] = "$Work";
  keywords[1] = "Custom";
  auto flags = ParseDovecotFileFlags("1.M1P1.host,S=28,W=32:2,DFPRSTba", keywords);
  EXPECT_THAT(flags.flags, ElementsAre("\\Answered", "\\Seen", "\\Deleted", "\\Draft",
                                       "\\Flagged", "$Work", "Custom"));
  // P (passed) is no IMAP flag in Dovecot: left out, reported.
  EXPECT_EQ(flags.ignored, "P");
  // An unnamed keyword letter, and letters after a second ',' (another info set).
  flags = ParseDovecotFileFlags("1.x:2,Sc,F", keywords);
  EXPECT_THAT(flags.flags, ElementsAre("\\Seen"));
  EXPECT_EQ(flags.ignored, "c");
  EXPECT_THAT(ParseDovecotFileFlags("1.x", keywords).flags, IsEmpty());
  EXPECT_THAT(ParseDovecotFileFlags("1.x:1,S", keywords).flags, IsEmpty());
  EXPECT_THAT(ParseDovecotFileFlags("1.x:2,", keywords).flags, IsEmpty());
  // The last ':' counts, and letters are taken once.
  EXPECT_THAT(ParseDovecotFileFlags("1:x:2,SSaa", keywords).flags, ElementsAre("\\Seen", "$Work"));
  // All 26 letters at once.
  KeywordLetters all;
  std::string letters;
  for (int i = 0; i < 26; ++i) {
    all[i] = absl::StrCat("k", i);
    letters.push_back(static_cast<char>('a' + i));
  }
  EXPECT_EQ(ParseDovecotFileFlags("1.x:2," + letters, all).flags.size(), 26u);
  EXPECT_EQ(MaildirBaseName("1.x,S=2:2,S"), "1.x,S=2");
  EXPECT_EQ(MaildirBaseName("1.x"), "1.x");
}

// --- names and subscriptions ---------------------------------------------------------

TEST(NamesTest, ModifiedUtf7) {
  EXPECT_EQ(*DecodeModifiedUtf7("Entw&APw-rfe"), "Entw\xc3\xbcrfe");
  EXPECT_EQ(*DecodeModifiedUtf7("a&-b"), "a&b");
  EXPECT_EQ(*DecodeModifiedUtf7("&2D3eAA-"), "\xf0\x9f\x98\x80");  // U+1F600
  EXPECT_FALSE(DecodeModifiedUtf7("&APw").ok());
  EXPECT_FALSE(DecodeModifiedUtf7("&A*w-").ok());
  EXPECT_FALSE(DecodeModifiedUtf7("&2D0-").ok());     // lone high surrogate
  EXPECT_FALSE(DecodeModifiedUtf7("\xc3\xbc").ok());  // raw 8-bit
  EXPECT_FALSE(DecodeModifiedUtf7("&AAA-").ok());     // U+0000
}

TEST(NamesTest, MaildirPlusPlusFolders) {
  EXPECT_EQ(*MaildirPlusPlusName(""), "INBOX");
  EXPECT_EQ(*MaildirPlusPlusName(".Sent"), "Sent");
  EXPECT_EQ(*MaildirPlusPlusName(".Work.Projects"), "Work/Projects");
  EXPECT_EQ(*MaildirPlusPlusName(".Entw&APw-rfe"), "Entw\xc3\xbcrfe");
  EXPECT_THAT(Message(MaildirPlusPlusName(".a..b").status()), HasSubstr("empty level"));
  EXPECT_THAT(Message(MaildirPlusPlusName(".inbox").status()), HasSubstr("second INBOX"));
  EXPECT_FALSE(MaildirPlusPlusName("Sent").ok());
  EXPECT_FALSE(MaildirPlusPlusName(".a&-/b").ok());
}

TEST(SubscriptionsTest, Version2AsDovecot23WritesIt) {
  auto names = ParseDovecotSubscriptions(
      "V\t2\n\nWork\tProjects\nSent\nEntw&APw-rfe\ninbox\nSent\n");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre("Work/Projects", "Sent", "Entw\xc3\xbcrfe", "INBOX"));
}

TEST(SubscriptionsTest, OlderFilesOneNamePerLine) {
  auto names = ParseDovecotSubscriptions("INBOX\nWork.Projects\n\nSent\n");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre("INBOX", "Work/Projects", "Sent"));
  names = ParseDovecotSubscriptions("Work/Projects\n", '/');
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ElementsAre("Work/Projects"));
}

TEST(SubscriptionsTest, MalformedInput) {
  EXPECT_THAT(Message(ParseDovecotSubscriptions("V\t2\n\nok\nbad\001x\n").status()),
              HasSubstr("subscriptions line 4: an unknown escape"));
  // An escaped tab is unescaped, and then no mailbox name.
  EXPECT_THAT(Message(ParseDovecotSubscriptions("V\t2\n\nTab\001tbed\n").status()),
              HasSubstr("line 3: \"Tab?bed\" is not modified UTF-7"));
  EXPECT_THAT(Message(ParseDovecotSubscriptions("V\t2\n\na\t\tb\n").status()),
              HasSubstr("line 3: \"a??b\" has an empty level"));
  EXPECT_THAT(Message(ParseDovecotSubscriptions("a/b\n").status()),
              HasSubstr("line 1: \"a/b\" has a '/' inside a level"));
  EXPECT_THAT(Message(ParseDovecotSubscriptions("&Jjo\n").status()),
              HasSubstr("line 1: \"&Jjo\" is not modified UTF-7"));
  DovecotLimits limits;
  limits.max_line_octets = 4;
  EXPECT_TRUE(ParseDovecotSubscriptions("abcd\n", '.', limits).ok());
  EXPECT_THAT(Message(ParseDovecotSubscriptions("abcde\n", '.', limits).status()),
              HasSubstr("line 1: longer than 4 octets"));
  limits.max_subscriptions_octets = 3;
  EXPECT_THAT(Message(ParseDovecotSubscriptions("abcd", '.', limits).status()),
              HasSubstr("larger than 3 octets"));
}

// --- files ---------------------------------------------------------------------------

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(std::getenv("TEST_TMPDIR")) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void Write(const std::string& name, const std::string& content) {
    std::filesystem::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << content;
  }
  std::filesystem::path dir_;
};

TEST_F(FilesTest, ListsMaildirPlusPlusFoldersWithoutFollowingLinks) {
  std::filesystem::create_directories(dir_ / "m" / "cur");
  std::filesystem::create_directories(dir_ / "m" / ".Work.Projects" / "cur");
  std::filesystem::create_directories(dir_ / "m" / ".Sent" / "new");
  std::filesystem::create_directories(dir_ / "m" / ".Work" / "cur");
  std::filesystem::create_directories(dir_ / "m" / ".bad..name");
  std::filesystem::create_directories(dir_ / "elsewhere");
  std::filesystem::create_directory_symlink(dir_ / "elsewhere", dir_ / "m" / ".Linked");
  Write("m/.dovecot.lda-dupes", "x");
  auto folders = ListDovecotFolders((dir_ / "m").string() + "/");
  ASSERT_TRUE(folders.ok()) << folders.status();
  std::vector<std::string> names;
  for (const auto& folder : folders->folders) {
    names.push_back(folder.name);
  }
  EXPECT_THAT(names, ElementsAre("INBOX", "Sent", "Work", "Work/Projects"));
  EXPECT_EQ(folders->folders[3].directory, (dir_ / "m" / ".Work.Projects").string());
  EXPECT_THAT(folders->skipped, ::testing::UnorderedElementsAre(
                                    ".Linked: a symbolic link, not followed",
                                    HasSubstr(".bad..name: folder \".bad..name\" has an empty")));
  std::filesystem::create_directory_symlink(dir_ / "m", dir_ / "link");
  EXPECT_TRUE(absl::IsFailedPrecondition(ListDovecotFolders((dir_ / "link").string()).status()));
  EXPECT_FALSE(ListDovecotFolders((dir_ / "missing").string()).ok());
}

TEST_F(FilesTest, ReadsSmallFilesOnly) {
  Write("uidlist", "3 V1 N1\n");
  auto text = ReadDovecotFile((dir_ / "uidlist").string(), 8);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(**text, "3 V1 N1\n");
  EXPECT_THAT(Message(ReadDovecotFile((dir_ / "uidlist").string(), 7).status()),
              HasSubstr("is 8 octets, more than the 7"));
  auto missing = ReadDovecotFile((dir_ / "none").string(), 8);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  std::filesystem::create_symlink(dir_ / "uidlist", dir_ / "link");
  EXPECT_THAT(Message(ReadDovecotFile((dir_ / "link").string(), 8).status()),
              HasSubstr("symbolic link"));
  EXPECT_THAT(Message(ReadDovecotFile(dir_.string(), 8).status()),
              HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace mailbox::admin
