#include "mailbox-service/admin/importers.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mailbox::admin {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct Collected {
  std::string content;
  MboxMessage info;
};

class CollectingSink : public MboxSink {
 public:
  absl::Status Data(std::string_view bytes) override {
    current_.append(bytes);
    ++data_calls_;
    return absl::OkStatus();
  }
  absl::Status EndMessage(const MboxMessage& message) override {
    if (message.size != current_.size()) {
      return absl::InternalError("size mismatch");
    }
    messages_.push_back({std::move(current_), message});
    current_.clear();
    return absl::OkStatus();
  }

  std::vector<Collected> messages_;
  std::string current_;
  int data_calls_ = 0;
};

// Splits `input` whole, and checks that feeding it one byte at a time gives the
// same messages.
std::vector<Collected> Split(std::string_view input, MboxFormat format = MboxFormat::kMboxrd) {
  CollectingSink whole;
  {
    MboxReader reader(&whole, format);
    EXPECT_TRUE(reader.Feed(input).ok());
    EXPECT_TRUE(reader.Finish().ok());
  }
  CollectingSink bytewise;
  {
    MboxReader reader(&bytewise, format);
    for (char c : input) {
      EXPECT_TRUE(reader.Feed(std::string_view(&c, 1)).ok());
    }
    EXPECT_TRUE(reader.Finish().ok());
  }
  EXPECT_EQ(whole.messages_.size(), bytewise.messages_.size());
  for (size_t i = 0; i < std::min(whole.messages_.size(), bytewise.messages_.size()); ++i) {
    EXPECT_EQ(whole.messages_[i].content, bytewise.messages_[i].content) << "message " << i;
    EXPECT_EQ(whole.messages_[i].info.flags, bytewise.messages_[i].info.flags);
  }
  return whole.messages_;
}

std::vector<std::string> Contents(const std::vector<Collected>& messages) {
  std::vector<std::string> out;
  for (const Collected& m : messages) {
    out.push_back(m.content);
  }
  return out;
}

// mboxrd writer, as RFC 4155 App. A describes it: quote ^>*From with one more '>',
// end each message with an empty line.
std::string WriteMboxrd(const std::vector<std::string>& messages) {
  std::string out;
  for (const std::string& message : messages) {
    out += "From writer@example.com Thu Jan  1 00:00:00 2004\n";
    size_t start = 0;
    while (start < message.size()) {
      size_t lf = message.find('\n', start);
      size_t end = lf == std::string::npos ? message.size() : lf + 1;
      std::string_view line(message.data() + start, end - start);
      size_t gt = 0;
      while (gt < line.size() && line[gt] == '>') {
        ++gt;
      }
      if (line.substr(gt, 5) == "From ") {
        out += '>';
      }
      out.append(line);
      start = end;
    }
    if (!message.empty() && message.back() != '\n') {
      out += '\n';
    }
    out += '\n';
  }
  return out;
}

TEST(CrlfTest, ConvertsBareLfAndKeepsCrlf) {
  EXPECT_EQ(LfToCrlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
  EXPECT_EQ(LfToCrlf(""), "");
  EXPECT_EQ(LfToCrlf("\n\n"), "\r\n\r\n");
  EXPECT_EQ(LfToCrlf("lone\rcr"), "lone\rcr");
  EXPECT_EQ(LfToCrlf("no newline"), "no newline");
}

TEST(CrlfTest, CrAtChunkEndPairsWithLfInNextChunk) {
  CrlfConverter converter;
  std::string out;
  converter.Convert("a\r", &out);
  converter.Convert("\nb\n", &out);
  EXPECT_EQ(out, "a\r\nb\r\n");
}

TEST(MboxTest, EmptyFileHasNoMessages) {
  EXPECT_THAT(Split(""), IsEmpty());
  EXPECT_THAT(Split("\n\n"), IsEmpty());
}

TEST(MboxTest, TextBeforeFirstSeparatorIsAnError) {
  CollectingSink sink;
  MboxReader reader(&sink);
  absl::Status status = reader.Feed("Subject: not an mbox\n\nbody\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("not an mbox file"));
  // The error sticks.
  EXPECT_FALSE(reader.Feed("From x\n").ok());
  EXPECT_FALSE(reader.Finish().ok());
}

TEST(MboxTest, SplitsTwoMessagesAndDropsSeparatorBlankLines) {
  auto messages = Split(
      "From a@example.com Mon Jan  1 00:00:00 2024\n"
      "Subject: one\n"
      "\n"
      "body one\n"
      "\n"
      "From b@example.com Tue Jan  2 00:00:00 2024\n"
      "Subject: two\n"
      "\n"
      "body two\n"
      "\n");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].content, "Subject: one\r\n\r\nbody one\r\n");
  EXPECT_EQ(messages[1].content, "Subject: two\r\n\r\nbody two\r\n");
  EXPECT_EQ(messages[0].info.index, 0u);
  EXPECT_EQ(messages[1].info.index, 1u);
  EXPECT_EQ(messages[0].info.line_number, 1u);
  EXPECT_EQ(messages[1].info.line_number, 6u);
  EXPECT_EQ(messages[1].info.from_line, "From b@example.com Tue Jan  2 00:00:00 2024");
}

TEST(MboxTest, KeepsBlankLinesThatAreText) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "Subject: s\n"
      "\n"
      "para\n"
      "\n"
      "\n"
      "end\n"
      "\n"
      "\n");
  ASSERT_EQ(messages.size(), 1u);
  // Only the last empty line of the file is the format's.
  EXPECT_EQ(messages[0].content, "Subject: s\r\n\r\npara\r\n\r\n\r\nend\r\n\r\n");
}

TEST(MboxTest, MboxrdQuotingRoundTrips) {
  std::vector<std::string> originals = {
      "Subject: quoting\n\nFrom the start\n>From once\n>>From twice\n> From not\nFrom\n",
      "Subject: second\n\n\nFrom after blank line\n\n>From after blank\n",
      "Subject: empty body\n\n",
  };
  std::string mbox = WriteMboxrd(originals);
  auto messages = Split(mbox);
  ASSERT_EQ(messages.size(), originals.size());
  for (size_t i = 0; i < originals.size(); ++i) {
    EXPECT_EQ(messages[i].content, LfToCrlf(originals[i])) << i;
  }
}

TEST(MboxTest, MboxoUnquotesOnlyOneLevel) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "\n"
      ">From x\n"
      ">>From y\n",
      MboxFormat::kMboxo);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content, "\r\nFrom x\r\n>>From y\r\n");
}

TEST(MboxTest, UnquotedFromInBodyAfterTextLineStaysInMessage) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "Subject: s\n"
      "\n"
      "text line\n"
      "From here on it is body text\n"
      ">From quoted\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content,
            "Subject: s\r\n\r\ntext line\r\nFrom here on it is body text\r\nFrom quoted\r\n");
}

TEST(MboxTest, UnquotedFromAfterBlankLineStartsAMessage) {
  // This is why writers quote: an unquoted "From " after an empty line is a separator.
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "\n"
      "body\n"
      "\n"
      "From the body, unquoted\n"
      "more\n");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].content, "\r\nbody\r\n");
  EXPECT_EQ(messages[1].info.from_line, "From the body, unquoted");
  EXPECT_EQ(messages[1].content, "more\r\n");
  EXPECT_FALSE(messages[1].info.internal_date.has_value());
}

TEST(MboxTest, LastMessageWithoutTrailingNewline) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "Subject: s\n"
      "\n"
      "no newline at end");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content, "Subject: s\r\n\r\nno newline at end");
}

TEST(MboxTest, PartialPrefixAtEndOfFileIsText) {
  EXPECT_THAT(Contents(Split("From a\n\n>Fro")), ElementsAre("\r\n>Fro"));
  EXPECT_THAT(Contents(Split("From a\nX: y\n\nFrom")), ElementsAre("X: y\r\n\r\nFrom"));
  EXPECT_THAT(Contents(Split("From a\nX: y\r")), ElementsAre("X: y\r"));
}

TEST(MboxTest, SeparatorWithoutContent) {
  auto messages = Split("From a Mon Jan  1 00:00:00 2024");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content, "");
  EXPECT_TRUE(messages[0].info.internal_date.has_value());
  EXPECT_THAT(Contents(Split("From a\n\nFrom b\n")), ElementsAre("", ""));
}

TEST(MboxTest, CrlfInputIsKept) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\r\n"
      "Subject: crlf\r\n"
      "\r\n"
      "body\r\n"
      ">From quoted\r\n"
      "\r\n"
      "From b Mon Jan  1 00:00:01 2024\r\n"
      "\r\n"
      "two\r\n"
      "\r\n");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].content, "Subject: crlf\r\n\r\nbody\r\nFrom quoted\r\n");
  EXPECT_EQ(messages[0].info.from_line, "From a Mon Jan  1 00:00:00 2024");
  EXPECT_EQ(messages[1].content, "\r\ntwo\r\n");
}

TEST(MboxTest, LineStartingWithCrIsText) {
  EXPECT_THAT(Contents(Split("From a\n\n\rFrom x\n")), ElementsAre("\r\n\rFrom x\r\n"));
}

TEST(MboxTest, FlagsFromStatusHeaders) {
  auto messages = Split(
      "From a Mon Jan  1 00:00:00 2024\n"
      "Subject: s\n"
      "Status: RO\n"
      "X-Status: FAD\n"
      "\n"
      "Status: R is body text, not a header\n"
      "\n"
      "From b Mon Jan  1 00:00:00 2024\n"
      "status: O\n"
      "\n"
      "From c Mon Jan  1 00:00:00 2024\n"
      "X-Status: T\n"
      "Status: RR\n");
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_THAT(messages[0].info.flags,
              ElementsAre("\\Seen", "\\Answered", "\\Flagged", "\\Deleted"));
  EXPECT_THAT(messages[1].info.flags, IsEmpty());
  EXPECT_THAT(messages[2].info.flags, ElementsAre("\\Seen", "\\Draft"));
  // Headers are kept in the message.
  EXPECT_EQ(messages[2].content, "X-Status: T\r\nStatus: RR\r\n");
}

TEST(MboxTest, BodyOnlyStatusDoesNotCount) {
  auto messages = Split("From a\nSubject: x\n\nStatus: RO\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_THAT(messages[0].info.flags, IsEmpty());
}

TEST(MboxTest, HugeLineUsesBoundedChunks) {
  const std::string huge(3 * 1024 * 1024 + 17, 'x');
  std::string input = "From a Mon Jan  1 00:00:00 2024\n\n" + huge + "\n";
  CollectingSink sink;
  MboxReader reader(&sink);
  for (size_t i = 0; i < input.size(); i += 65536) {
    ASSERT_TRUE(reader.Feed(std::string_view(input).substr(i, 65536)).ok());
  }
  ASSERT_TRUE(reader.Finish().ok());
  ASSERT_EQ(sink.messages_.size(), 1u);
  EXPECT_EQ(sink.messages_[0].content, "\r\n" + huge + "\r\n");
  // Output went out in ~256 KiB pieces, not as one buffer.
  EXPECT_GE(sink.data_calls_, 12);
}

TEST(MboxTest, HugeRunOfQuoteMarks) {
  const std::string gts(100000, '>');
  auto messages = Split("From a\n\n" + gts + "From x\n" + gts + "x\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].content, "\r\n" + gts.substr(1) + "From x\r\n" + gts + "x\r\n");
}

TEST(MboxTest, HugeHeaderAndFromLinesAreTruncatedNotBuffered) {
  const std::string long_text(100000, 'y');
  auto messages = Split("From a " + long_text + "\nX-Long: " + long_text + "\nStatus: R\n");
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].info.from_line.size(), 4096u);
  EXPECT_THAT(messages[0].info.flags, ElementsAre("\\Seen"));
  EXPECT_EQ(messages[0].content, "X-Long: " + long_text + "\r\nStatus: R\r\n");
}

TEST(MboxTest, ReadMboxFromStream) {
  std::istringstream in(WriteMboxrd({"A: 1\n\nx\n", "B: 2\n\ny\n"}));
  CollectingSink sink;
  MboxReader reader(&sink);
  ASSERT_TRUE(ReadMbox(in, reader, 7).ok());
  EXPECT_THAT(Contents(sink.messages_), ElementsAre("A: 1\r\n\r\nx\r\n", "B: 2\r\n\r\ny\r\n"));
  EXPECT_EQ(reader.messages(), 2u);
}

TEST(MboxTest, SinkErrorStopsReader) {
  class FailingSink : public MboxSink {
   public:
    absl::Status Data(std::string_view) override { return absl::OkStatus(); }
    absl::Status EndMessage(const MboxMessage&) override {
      return absl::ResourceExhaustedError("stop");
    }
  } sink;
  MboxReader reader(&sink);
  EXPECT_TRUE(reader.Feed("From a\n\nx\n\n").ok());
  EXPECT_EQ(reader.Feed("From b\n").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(reader.Finish().code(), absl::StatusCode::kResourceExhausted);
}

int64_t Unix(int y, int mo, int d, int h, int mi, int s) {
  return absl::ToUnixSeconds(absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                                             absl::UTCTimeZone()));
}

TEST(FromLineDateTest, Asctime) {
  auto date = ParseMboxFromLineDate("From alice@example.com Sat Jan  3 01:05:34 1996");
  ASSERT_TRUE(date.has_value());
  EXPECT_EQ(date->unix_seconds, Unix(1996, 1, 3, 1, 5, 34));
  EXPECT_EQ(date->tz_minutes, 0);
}

TEST(FromLineDateTest, Variants) {
  // Zone after the year.
  auto date = ParseMboxFromLineDate("From a Thu Jan 1 01:00:00 2004 +0100");
  ASSERT_TRUE(date.has_value());
  EXPECT_EQ(date->unix_seconds, Unix(2004, 1, 1, 0, 0, 0));
  EXPECT_EQ(date->tz_minutes, 60);
  // Zone before the year, and a trailing "remote from".
  date = ParseMboxFromLineDate("From a Thu Jan 1 00:00:00 PST 2004 remote from host\r");
  ASSERT_TRUE(date.has_value());
  EXPECT_EQ(date->unix_seconds, Unix(2004, 1, 1, 8, 0, 0));
  EXPECT_EQ(date->tz_minutes, -480);
  // No seconds, no weekday, sender with a space.
  date = ParseMboxFromLineDate("From \"a b\"@example.com Feb 29 12:30 2024");
  ASSERT_TRUE(date.has_value());
  EXPECT_EQ(date->unix_seconds, Unix(2024, 2, 29, 12, 30, 0));
  // Without the "From " prefix.
  EXPECT_TRUE(ParseMboxFromLineDate("MAILER-DAEMON Fri Dec 31 23:59:60 1999").has_value());
}

TEST(FromLineDateTest, Invalid) {
  EXPECT_FALSE(ParseMboxFromLineDate("From a").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From ").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From a Thu Feb 30 00:00:00 2023").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From a Thu Jan 1 24:00:00 2023").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From a Thu Jan 1 00:00:00").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From a Thu Jan 1 0:0:0:0 2023").has_value());
  EXPECT_FALSE(ParseMboxFromLineDate("From a Foo 1 00:00:00 2023").has_value());
}

TEST(MaildirTest, Flags) {
  auto info = ParseMaildirFlags("1700000000.M1P2.host:2,FRS");
  EXPECT_THAT(info.flags, ElementsAre("\\Flagged", "\\Answered", "\\Seen"));
  EXPECT_EQ(info.unknown, "");
  info = ParseMaildirFlags("1700000000.M1P2.host:2,DT");
  EXPECT_THAT(info.flags, ElementsAre("\\Draft", "\\Deleted"));
  info = ParseMaildirFlags("1700000000.M1P2.host");
  EXPECT_THAT(info.flags, IsEmpty());
  info = ParseMaildirFlags("1700000000.M1P2.host:2,");
  EXPECT_THAT(info.flags, IsEmpty());
  info = ParseMaildirFlags("1700000000.M1P2.host,S=1234:2,PSabS");
  EXPECT_THAT(info.flags, ElementsAre("\\Seen"));
  EXPECT_EQ(info.unknown, "Pab");
  info = ParseMaildirFlags("1700000000.host!2,S");
  EXPECT_THAT(info.flags, ElementsAre("\\Seen"));
  // Experimental ":1," info has no flags.
  info = ParseMaildirFlags("1700000000.host:1,S");
  EXPECT_THAT(info.flags, IsEmpty());
}

TEST(MaildirTest, TimestampAndOrder) {
  EXPECT_EQ(MaildirTimestamp("1700000000.M1P2.host:2,S"), 1700000000u);
  EXPECT_EQ(MaildirTimestamp("42"), 42u);
  EXPECT_FALSE(MaildirTimestamp("abc.host").has_value());
  EXPECT_FALSE(MaildirTimestamp("17x.host").has_value());
  EXPECT_FALSE(MaildirTimestamp("99999999999999999999999.x").has_value());

  std::vector<std::string> names = {"zzz", "200.a", "1000.a", "200.b:2,S", "30.c", "aaa"};
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return MaildirNameLess(a, b); });
  EXPECT_THAT(names, ElementsAre("30.c", "200.a", "200.b:2,S", "1000.a", "aaa", "zzz"));
}

// --- Maildir files ---------------------------------------------------------------

class MaildirFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = std::filesystem::path(std::getenv("TEST_TMPDIR")) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(base_);
    root_ = base_ / "Maildir";
    std::filesystem::create_directories(root_ / "cur");
    std::filesystem::create_directories(root_ / "new");
    // What the Maildir's owner must not reach through the import: a file only the
    // administrator can read, and a directory of someone else's mail.
    Write(base_ / "secret", "Subject: root's secret\n\n");
    Write(base_ / "other" / "cur" / "1.x.host", "Subject: other user's mail\n\n");
  }

  static void Write(const std::filesystem::path& path, const std::string& content) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  static std::string ReadAll(MaildirFile& file) {
    std::string out;
    char buffer[7];
    while (true) {
      auto got = file.Read(buffer, sizeof(buffer));
      EXPECT_TRUE(got.ok());
      if (!got.ok() || *got == 0) {
        return out;
      }
      out.append(buffer, *got);
    }
  }

  std::filesystem::path base_;
  std::filesystem::path root_;
};

TEST_F(MaildirFilesTest, LinksAreSkippedAndReportedNotFollowed) {
  Write(root_ / "cur" / "200.b.host:2,S", "Subject: b\n\n");
  Write(root_ / "new" / "100.a.host", "Subject: a\n\n");
  std::filesystem::create_symlink(base_ / "secret", root_ / "cur" / "150.evil.host:2,S");
  ASSERT_EQ(::mkfifo((root_ / "new" / "160.fifo.host").c_str(), 0600), 0);
  auto listing = ListMaildir(root_.string());
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_TRUE(listing->has_subdir);
  ASSERT_EQ(listing->entries.size(), 2u);
  EXPECT_EQ(listing->entries[0].name, "100.a.host");
  EXPECT_EQ(listing->entries[0].subdir, "new");
  EXPECT_EQ(listing->entries[1].name, "200.b.host:2,S");
  std::vector<std::string> skipped = listing->skipped;
  std::sort(skipped.begin(), skipped.end());
  EXPECT_THAT(skipped, ElementsAre("cur/150.evil.host:2,S: a symbolic link, not followed",
                                   "new/160.fifo.host: not a regular file"));
  auto file = OpenMaildirMessage(root_.string(), listing->entries[0]);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(ReadAll(*file), "Subject: a\n\n");
}

TEST_F(MaildirFilesTest, LinkedSubdirectoriesAreSkippedAndALinkedRootIsRefused) {
  std::filesystem::remove(root_ / "cur");
  std::filesystem::create_symlink(base_ / "other" / "cur", root_ / "cur");
  auto listing = ListMaildir(root_.string());
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_TRUE(listing->entries.empty());
  EXPECT_THAT(listing->skipped, ElementsAre("cur/: a symbolic link, not followed"));

  std::filesystem::create_symlink(base_ / "other", base_ / "LinkedMaildir");
  for (std::string path : {(base_ / "LinkedMaildir").string(),
                           (base_ / "LinkedMaildir").string() + "/"}) {
    auto linked = ListMaildir(path);
    ASSERT_FALSE(linked.ok()) << path;
    EXPECT_EQ(linked.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(std::string(linked.status().message()).find("symbolic link"), std::string::npos);
  }
}

TEST_F(MaildirFilesTest, AFileSwappedForALinkAfterListingIsNotOpened) {
  Write(root_ / "cur" / "100.a.host", "Subject: a\n\n");
  auto listing = ListMaildir(root_.string());
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing->entries.size(), 1u);
  std::filesystem::remove(root_ / "cur" / "100.a.host");
  std::filesystem::create_symlink(base_ / "secret", root_ / "cur" / "100.a.host");
  auto file = OpenMaildirMessage(root_.string(), listing->entries[0]);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  // And the subdirectory swapped for a link.
  std::filesystem::remove_all(root_ / "cur");
  std::filesystem::create_symlink(base_ / "other" / "cur", root_ / "cur");
  MaildirEntry other{"cur", "1.x.host"};
  EXPECT_EQ(OpenMaildirMessage(root_.string(), other).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(MaildirFilesTest, FilesOfAnotherOwnerAreSkippedEvenAsHardLinks) {
  // A hard link is a regular file: only its owner tells the import that the
  // Maildir's owner could not read it. The owner's own hard links are fine.
  Write(root_ / "cur" / "100.own.host", "Subject: own\n\n");
  std::filesystem::create_hard_link(root_ / "cur" / "100.own.host",
                                    root_ / "new" / "101.own.host");
  std::filesystem::create_hard_link(base_ / "secret", root_ / "cur" / "150.evil.host:2,S");
  constexpr uid_t kOtherUid = 54321;
  // As when an administrator imports a user's Maildir: the linked file is
  // someone else's (here the secret, given to another uid). Only root can give a
  // file away (BUILD runs this test unsandboxed, as root here).
  const bool root = ::chown((base_ / "secret").c_str(), kOtherUid, kOtherUid) == 0;
  if (!root) {
    // The link stays the importer's own and is imported as such (nothing the
    // importer could not already read).
    EXPECT_TRUE(errno == EPERM || errno == EINVAL) << errno;
    EXPECT_NE(::geteuid(), 0u) << "root, but chown failed: " << std::strerror(errno);
  }
  auto listing = ListMaildir(root_.string());
  ASSERT_TRUE(listing.ok()) << listing.status();
  std::vector<std::string> names;
  for (const MaildirEntry& entry : listing->entries) {
    names.push_back(entry.subdir + "/" + entry.name);
  }
  if (root) {
    EXPECT_THAT(names, ElementsAre("cur/100.own.host", "new/101.own.host"));
    ASSERT_EQ(listing->skipped.size(), 1u);
    EXPECT_EQ(listing->skipped[0],
              absl::StrCat("cur/150.evil.host:2,S: owned by uid ", kOtherUid,
                           ", not by the Maildir's owner (uid ", ::geteuid(),
                           "); a hard link to another user's file?, not imported"));
    // Opening it by name (as after a listing made before a swap) is refused too.
    MaildirEntry evil{"cur", "150.evil.host:2,S"};
    EXPECT_EQ(OpenMaildirMessage(root_.string(), evil).status().code(),
              absl::StatusCode::kFailedPrecondition);
  } else {
    EXPECT_THAT(names, ElementsAre("cur/100.own.host", "new/101.own.host",
                                   "cur/150.evil.host:2,S"));
    EXPECT_TRUE(listing->skipped.empty());
  }
  auto own = OpenMaildirMessage(root_.string(), listing->entries[1]);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(ReadAll(*own), "Subject: own\n\n");
}

TEST_F(MaildirFilesTest, NoMaildirAtAllIsNotAnError) {
  auto listing = ListMaildir((base_ / "nothing").string());
  ASSERT_TRUE(listing.ok());
  EXPECT_FALSE(listing->has_subdir);
}

}  // namespace
}  // namespace mailbox::admin
