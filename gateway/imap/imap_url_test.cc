#include "gateway/imap/imap_url.h"

#include <gtest/gtest.h>

namespace imap {
namespace {

TEST(ImapUrlTest, RelativeMessageAndSections) {
  Result<ImapUrl> url = ParseImapUrl("/INBOX;UIDVALIDITY=785799047/;UID=113330");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_FALSE(url->absolute);
  EXPECT_EQ(url->mailbox, "INBOX");
  EXPECT_EQ(url->uidvalidity, 785799047u);
  EXPECT_EQ(url->uid, 113330u);
  EXPECT_EQ(url->section, Section());
  EXPECT_FALSE(url->has_partial);
  EXPECT_FALSE(url->urlauth);

  // Keywords in any case; no UIDVALIDITY; a hierarchical, percent-encoded name.
  url = ParseImapUrl("/Lists/a%20b/;uid=7/;section=1.2.MIME");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url->mailbox, "Lists/a b");
  EXPECT_FALSE(url->uidvalidity.has_value());
  EXPECT_EQ(url->uid, 7u);
  EXPECT_EQ(url->section.part, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(url->section.text, Section::Text::kMime);

  url = ParseImapUrl("/INBOX/;UID=3/;SECTION=HEADER.FIELDS%20(FROM%20TO)/;PARTIAL=10.20");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url->section.text, Section::Text::kHeaderFields);
  EXPECT_EQ(url->section.fields, (std::vector<std::string>{"FROM", "TO"}));
  EXPECT_TRUE(url->has_partial);
  EXPECT_EQ(url->partial_offset, 10u);
  EXPECT_EQ(url->partial_length, 20u);

  for (const char* section : {"HEADER", "TEXT", "1", "2.HEADER", "3.TEXT"}) {
    EXPECT_TRUE(ParseImapUrl(std::string("/INBOX/;UID=1/;SECTION=") + section).ok()) << section;
  }
}

TEST(ImapUrlTest, AbsoluteForm) {
  Result<ImapUrl> url =
      ParseImapUrl("imap://fred%40example.com;AUTH=*@Mail.Example.COM:143/Sent;UIDVALIDITY=9/"
                   ";UID=20/;SECTION=1");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_TRUE(url->absolute);
  EXPECT_EQ(url->user, "fred@example.com");
  EXPECT_EQ(url->host, "mail.example.com");
  EXPECT_EQ(url->mailbox, "Sent");
  EXPECT_EQ(url->uid, 20u);

  url = ParseImapUrl("imap://host/INBOX/;UID=1");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url->user, "");  // anonymous
}

TEST(ImapUrlTest, UrlAuthIsRecognised) {
  Result<ImapUrl> url = ParseImapUrl(
      "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:"
      "91354a473744909de610943775f92038");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_TRUE(url->urlauth);
  url = ParseImapUrl("/INBOX/;UID=1;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_TRUE(url->urlauth);
}

TEST(ImapUrlTest, MalformedUrlsAreRefused) {
  for (const char* bad : {
           "",
           "INBOX/;UID=1",                  // not a path
           "/INBOX",                        // a mailbox, not a message
           "/INBOX;UIDVALIDITY=1",          // no UID
           "/INBOX/;UID=0",                 // nz-number
           "/INBOX/;UID=99999999999",       // over 32 bits
           "/INBOX;UIDVALIDITY=x/;UID=1",
           "/;UID=1",                       // no mailbox
           "/INBOX/;UID=1/;SECTION=",       // empty section
           "/INBOX/;UID=1/;SECTION=FOO",
           "/INBOX/;UID=1/;SECTION=MIME",   // MIME needs a part
           "/IN%2/;UID=1",                  // bad percent-encoding
           "/IN BOX/;UID=1",                // a space must be encoded
           "/INBOX/;UID=1/;PARTIAL=x",
           "/INBOX/;UID=1;FOO=1",
           "imap://",
           "imap://host",
           "imap://host:port/INBOX/;UID=1",
           "http://host/INBOX/;UID=1",
       }) {
    Result<ImapUrl> url = ParseImapUrl(bad);
    EXPECT_FALSE(url.ok()) << bad;
    if (!url.ok()) {
      EXPECT_FALSE(url.error().message.empty()) << bad;
    }
  }
}

TEST(ImapUrlTest, RespText) {
  EXPECT_EQ(UrlRespText("/INBOX/;UID=1"), "/INBOX/;UID=1");
  EXPECT_EQ(UrlRespText("/a]b\r\n\xc3"), "/a%5Db%C3");
}

}  // namespace
}  // namespace imap
