#include "common/mailbox/names.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {
namespace {

namespace v1 = ::mailbox::v1;

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(IsInboxTest, AnyCase) {
  EXPECT_TRUE(IsInbox("INBOX"));
  EXPECT_TRUE(IsInbox("inbox"));
  EXPECT_TRUE(IsInbox("InBoX"));
  EXPECT_FALSE(IsInbox("INBOX/"));
  EXPECT_FALSE(IsInbox("INBOXES"));
  EXPECT_FALSE(IsInbox(""));
}

TEST(CanonicalMailboxNameTest, OnlyTheLeadingInboxComponent) {
  EXPECT_EQ(CanonicalMailboxName("inbox"), "INBOX");
  EXPECT_EQ(CanonicalMailboxName("Inbox/Sub/inbox"), "INBOX/Sub/inbox");
  EXPECT_EQ(CanonicalMailboxName("inboxes"), "inboxes");
  EXPECT_EQ(CanonicalMailboxName("Archive/inbox"), "Archive/inbox");
  EXPECT_EQ(CanonicalMailboxName(""), "");
}

// RFC 3501 §6.3.8.
TEST(JoinListReferenceTest, Rfc3501Rules) {
  EXPECT_EQ(JoinListReference("", "*"), "*");
  EXPECT_EQ(JoinListReference("Lists/", "%"), "Lists/%");
  EXPECT_EQ(JoinListReference("Lists/", ""), "Lists/");
  EXPECT_EQ(JoinListReference("Lists", "%"), "Lists%");
  // A pattern starting with the delimiter ignores the reference.
  EXPECT_EQ(JoinListReference("Lists/", "/abs/%"), "/abs/%");
}

TEST(ListPatternMatchesTest, Star) {
  EXPECT_TRUE(ListPatternMatches("*", ""));
  EXPECT_TRUE(ListPatternMatches("*", "a/b/c"));
  EXPECT_TRUE(ListPatternMatches("a*", "a/b/c"));
  EXPECT_TRUE(ListPatternMatches("a*c", "a/b/c"));
  EXPECT_FALSE(ListPatternMatches("a*b", "a/b/c"));
  EXPECT_TRUE(ListPatternMatches("*/c", "a/b/c"));
}

TEST(ListPatternMatchesTest, PercentStopsAtDelimiter) {
  EXPECT_TRUE(ListPatternMatches("%", "Sent"));
  EXPECT_FALSE(ListPatternMatches("%", "a/b"));
  EXPECT_TRUE(ListPatternMatches("%/%", "a/b"));
  EXPECT_FALSE(ListPatternMatches("%/%", "a/b/c"));
  EXPECT_TRUE(ListPatternMatches("a/%", "a/"));  // % may match nothing
  EXPECT_TRUE(ListPatternMatches("%x%", "abxcd"));
  EXPECT_FALSE(ListPatternMatches("%x", "a/x"));
}

TEST(ListPatternMatchesTest, Literal) {
  EXPECT_TRUE(ListPatternMatches("", ""));
  EXPECT_FALSE(ListPatternMatches("", "a"));
  EXPECT_TRUE(ListPatternMatches("Drafts", "Drafts"));
  EXPECT_FALSE(ListPatternMatches("Drafts", "drafts"));  // only INBOX ignores case
  EXPECT_FALSE(ListPatternMatches("Draft", "Drafts"));
  EXPECT_TRUE(ListPatternMatches("Entw\xc3\xbc*", "Entw\xc3\xbcrfe"));
}

TEST(ListPatternMatchesTest, InboxIsCaseInsensitive) {
  EXPECT_TRUE(ListPatternMatches("inbox", "INBOX"));
  EXPECT_TRUE(ListPatternMatches("Inbox/%", "INBOX/Sub"));
  EXPECT_TRUE(ListPatternMatches("INBOX", "INBOX"));
  EXPECT_FALSE(ListPatternMatches("inbox", "INBOXES"));
}

TEST(ListPatternMatchesTest, ManyWildcardsStayFast) {
  // Exponential backtracking would not finish; the table does.
  std::string pattern;
  for (int i = 0; i < 200; ++i) {
    pattern += "*%";
  }
  pattern += "z";
  EXPECT_FALSE(ListPatternMatches(pattern, std::string(250, 'a')));
}

TEST(WidenListPatternTest, CoversInferiors) {
  EXPECT_EQ(WidenListPattern("%"), "*");
  EXPECT_EQ(WidenListPattern("a/%/b"), "a/*/b*");
  EXPECT_EQ(WidenListPattern("*"), "*");
  EXPECT_EQ(WidenListPattern("x"), "x*");
  EXPECT_EQ(WidenListPattern(""), "*");
  // Every inferior of a name the pattern matches matches the widened pattern.
  EXPECT_TRUE(ListPatternMatches(WidenListPattern("%"), "foo/bar"));
  EXPECT_TRUE(ListPatternMatches(WidenListPattern("a%b"), "aXb/c/d"));
}

TEST(MatchingSuperiorsTest, Rfc3501LsubExample) {
  // RFC 3501 §6.3.9: "foo/bar" subscribed, LSUB "" "%" reports "foo".
  EXPECT_THAT(MatchingSuperiors("%", "foo/bar"), ElementsAre("foo"));
  EXPECT_THAT(MatchingSuperiors("%", "foo"), IsEmpty());
  EXPECT_THAT(MatchingSuperiors("%/%", "a/b/c/d"), ElementsAre("a/b"));
  EXPECT_THAT(MatchingSuperiors("a*", "a/b/c"), ElementsAre("a", "a/b"));
  EXPECT_THAT(MatchingSuperiors("*", "a"), IsEmpty());
}

TEST(NormalizeMailboxNameTest, CanonicalFormAndErrors) {
  const NameLimits limits{.max_octets = 20, .max_depth = 3};
  EXPECT_EQ(*NormalizeMailboxName("inbox/Sub", limits), "INBOX/Sub");
  EXPECT_EQ(*NormalizeMailboxName("Archive/inbox", limits), "Archive/inbox");
  for (const char* bad : {"", "a//b", "/a", "a/", "a*b", "a%", "a\x01" "b", "\xc3\x28"}) {
    absl::StatusOr<std::string> name = NormalizeMailboxName(bad, limits);
    ASSERT_FALSE(name.ok()) << bad;
    EXPECT_EQ(v1::DetailOf(name.status()).code(), v1::BAD_REQUEST) << bad;
  }
  EXPECT_EQ(v1::DetailOf(NormalizeMailboxName(std::string(21, 'x'), limits).status()).code(),
            v1::LIMIT);
  EXPECT_EQ(v1::DetailOf(NormalizeMailboxName("a/b/c/d", limits).status()).code(), v1::LIMIT);
  EXPECT_TRUE(NormalizeMailboxName(std::string(20, 'x'), limits).ok());
  EXPECT_TRUE(NormalizeMailboxName("a/b/c", limits).ok());
}

TEST(Utf8Test, RejectsOverlongSurrogatesAndTruncation) {
  EXPECT_TRUE(IsValidUtf8("Entw\xc3\xbcrfe \xe2\x82\xac \xf0\x9f\x93\xa7"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong "/"
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));           // truncated
}

TEST(HierarchyTest, SuperiorsAndInferiors) {
  EXPECT_THAT(Superiors("a/b/c"), ElementsAre("a", "a/b"));
  EXPECT_THAT(Superiors("a"), IsEmpty());
  EXPECT_TRUE(IsInferiorOf("a/b", "a"));
  EXPECT_TRUE(IsInferiorOf("a/b/c", "a"));
  EXPECT_FALSE(IsInferiorOf("ab", "a"));
  EXPECT_FALSE(IsInferiorOf("a/", "a"));
  EXPECT_FALSE(IsInferiorOf("a", "a"));
}

TEST(ValidateUsernameTest, Bounds) {
  EXPECT_TRUE(ValidateUsername("alice@example.org").ok());
  EXPECT_TRUE(ValidateUsername(std::string(255, 'u')).ok());
  EXPECT_FALSE(ValidateUsername(std::string(256, 'u')).ok());
  EXPECT_FALSE(ValidateUsername("").ok());
  EXPECT_FALSE(ValidateUsername("a\nb").ok());
  EXPECT_FALSE(ValidateUsername("\xff").ok());
}

TEST(SpecialUseTest, KnownAnyCase) {
  EXPECT_TRUE(IsKnownSpecialUse("\\Sent"));
  EXPECT_TRUE(IsKnownSpecialUse("\\junk"));
  EXPECT_FALSE(IsKnownSpecialUse("\\Outbox"));
}

}  // namespace
}  // namespace mailbox::rules
