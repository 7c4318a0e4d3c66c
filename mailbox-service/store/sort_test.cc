#include "mailbox-service/store/sort.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mailbox-service/store/sort_keys.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {
namespace {

using ::testing::ElementsAre;

std::string Base(std::string_view subject, bool* reply = nullptr) {
  bool ignored;
  return BaseSubject(subject, reply != nullptr ? reply : &ignored);
}

TEST(BaseSubjectTest, StripsReplyAndForwardLeaders) {
  bool reply = false;
  EXPECT_EQ(Base("Re: hello", &reply), "hello");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("RE: Fwd: re:hello", &reply), "hello");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("Fw: hello"), "hello");
  EXPECT_EQ(Base("Re [2]: hello"), "hello");  // subj-refwd with a blob
  EXPECT_EQ(Base("hello", &reply), "hello");
  EXPECT_FALSE(reply);
  EXPECT_EQ(Base("Regarding the plan"), "Regarding the plan");  // "re" needs its ":"
}

TEST(BaseSubjectTest, NestedBlobsAndLeaders) {
  bool reply = false;
  EXPECT_EQ(Base("Re: [list] Fwd: [other] hello", &reply), "hello");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("[list] Re: hello"), "hello");
  // A blob goes only when something is left after it (RFC 5256 §2.1 step 4).
  EXPECT_EQ(Base("[list]", &reply), "[list]");
  EXPECT_FALSE(reply);
  EXPECT_EQ(Base("[list] [x]"), "[x]");
}

TEST(BaseSubjectTest, FwdTrailerAndWrapper) {
  bool reply = false;
  EXPECT_EQ(Base("hello (fwd)", &reply), "hello");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("hello (fwd) (FWD)  "), "hello");
  EXPECT_EQ(Base("[Fwd: Re: hello]", &reply), "hello");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("[fwd: [fwd: hello (fwd)]]"), "hello");
}

TEST(BaseSubjectTest, WhitespaceAndEmpty) {
  EXPECT_EQ(Base("  a \t  b  "), "a b");
  EXPECT_EQ(Base(""), "");
  EXPECT_EQ(Base("Re:"), "");
  EXPECT_EQ(Base("Re: (fwd)"), "");
}

TEST(BaseSubjectTest, EncodedWordsAreDecodedFirst) {
  bool reply = false;
  // "Re: Grüße" with the prefix inside the encoded word.
  EXPECT_EQ(Base("=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", &reply), "Grüße");
  EXPECT_TRUE(reply);
  EXPECT_EQ(Base("=?iso-8859-1?q?Fwd:?= =?iso-8859-1?q?_caf=E9?="), "café");
}

TEST(SortKeysTest, ExtractsEveryKey) {
  const SortKeys keys = ExtractSortKeys(
      "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
      "Subject: Re: [ml] =?utf-8?q?=C3=84pfel?=\r\n"
      "From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.ORG>, other@example.net\r\n"
      "To: undisclosed-recipients:;, Bob <BOB@b.example>\r\n"
      "Cc: (x) carol@c.example\r\n"
      "Message-ID: <abc@Example.com> (note)\r\n"
      "References: <a@x> <b@x>\r\n"
      "\t<c@x>\r\n"
      "In-Reply-To: <c@x>\r\n"
      "\r\n");
  ASSERT_TRUE(keys.sent_at.has_value());
  EXPECT_EQ(*keys.sent_at, 1057049557);  // 2003-07-01T08:52:37Z
  EXPECT_EQ(keys.subject, "äpfel");
  EXPECT_TRUE(keys.reply_or_forward);
  EXPECT_EQ(keys.from, "joerg");
  EXPECT_EQ(keys.display_from, "jörg");
  EXPECT_EQ(keys.to, "bob");  // the group marker is not an address
  EXPECT_EQ(keys.display_to, "bob");
  EXPECT_EQ(keys.cc, "carol");
  EXPECT_EQ(keys.message_id, "abc@Example.com");  // case kept
  EXPECT_THAT(keys.references, ElementsAre("a@x", "b@x", "c@x"));
}

TEST(SortKeysTest, DisplayFallsBackToAddrSpecAndInReplyTo) {
  const SortKeys keys = ExtractSortKeys(
      "From: <Ann@A.example>\r\n"
      "In-Reply-To: junk <first@x> <second@x>\r\n"
      "Date: not a date\r\n"
      "\r\n");
  EXPECT_FALSE(keys.sent_at.has_value());
  EXPECT_EQ(keys.display_from, "ann@a.example");
  EXPECT_EQ(keys.subject, "");
  EXPECT_EQ(keys.to, "");
  EXPECT_EQ(keys.message_id, "");
  EXPECT_THAT(keys.references, ElementsAre("first@x"));
}

TEST(SortKeysTest, KeepsTheLastReferencesAtTheLimit) {
  std::string references = "References:";
  for (size_t i = 0; i < kMaxSortReferences + 5; ++i) {
    absl::StrAppend(&references, " <", i, "@x>");
  }
  const SortKeys keys = ExtractSortKeys(absl::StrCat(references, "\r\n\r\n"));
  ASSERT_EQ(keys.references.size(), kMaxSortReferences);
  EXPECT_EQ(keys.references.front(), "5@x");
  EXPECT_EQ(keys.references.back(), absl::StrCat(kMaxSortReferences + 4, "@x"));
}

TEST(SortKeysTest, EncodingRoundTripsAndRejectsGarbage) {
  SortKeys keys;
  keys.sent_at = -5;
  keys.subject = "s";
  keys.reply_or_forward = true;
  keys.from = "f";
  keys.display_to = "d";
  keys.message_id = "m@x";
  keys.references = {"a@x", ""};
  absl::StatusOr<SortKeys> back = DecodeSortKeys(EncodeSortKeys(keys));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, keys);
  EXPECT_EQ(*DecodeSortKeys(EncodeSortKeys(SortKeys())), SortKeys());
  std::string truncated = EncodeSortKeys(keys);
  truncated.pop_back();
  EXPECT_FALSE(DecodeSortKeys(truncated).ok());
  EXPECT_FALSE(DecodeSortKeys("").ok());
  EXPECT_FALSE(DecodeSortKeys(EncodeSortKeys(keys) + "x").ok());
}

SortableMessage Message(uint32_t uid, std::string_view header, int64_t internal_date = 0,
                        uint64_t size = 0) {
  SortableMessage m;
  m.uid = uid;
  m.internal_date = internal_date;
  m.size = size;
  m.keys = ExtractSortKeys(std::string(header) + "\r\n");
  return m;
}

google::protobuf::RepeatedPtrField<v1::SortCriterion> Program(
    std::vector<std::pair<v1::SortCriterion::Key, bool>> keys) {
  google::protobuf::RepeatedPtrField<v1::SortCriterion> program;
  for (const auto& [key, reverse] : keys) {
    v1::SortCriterion* c = program.Add();
    c->set_key(key);
    c->set_reverse(reverse);
  }
  return program;
}

TEST(SortMessagesTest, KeysReverseAndTieBreak) {
  std::vector<SortableMessage> messages = {
      Message(1, "Subject: b\r\nDate: 2 Jan 2020 00:00 +0000\r\n", 30, 10),
      Message(2, "Subject: Re: a\r\n", 20, 30),  // no Date: its internal date
      Message(3, "Subject: a\r\nDate: 1 Jan 2020 00:00 -0100\r\n", 10, 20),
      Message(4, "Subject: B\r\nDate: 1 Jan 2020 00:30 +0000\r\n", 40, 10),
  };
  EXPECT_THAT(SortMessages(messages, Program({{v1::SortCriterion::SUBJECT, false}})),
              ElementsAre(2, 3, 1, 4));
  EXPECT_THAT(SortMessages(messages, Program({{v1::SortCriterion::SUBJECT, true}})),
              ElementsAre(1, 4, 2, 3));  // ties stay in UID order
  EXPECT_THAT(SortMessages(messages, Program({{v1::SortCriterion::DATE, true}})),
              ElementsAre(1, 3, 4, 2));
  EXPECT_THAT(SortMessages(messages, Program({{v1::SortCriterion::ARRIVAL, false}})),
              ElementsAre(3, 2, 1, 4));
  EXPECT_THAT(SortMessages(messages, Program({{v1::SortCriterion::SIZE, false},
                                              {v1::SortCriterion::ARRIVAL, true}})),
              ElementsAre(4, 1, 3, 2));
}

TEST(SortMessagesTest, Validation) {
  EXPECT_FALSE(ValidateSortCriteria(Program({})).ok());
  EXPECT_FALSE(ValidateSortCriteria(Program({{v1::SortCriterion::KEY_UNSPECIFIED, false}})).ok());
  EXPECT_TRUE(ValidateSortCriteria(Program({{v1::SortCriterion::DISPLAYTO, true}})).ok());
  EXPECT_FALSE(ValidateThreadAlgorithm(v1::ThreadRequest::ALGORITHM_UNSPECIFIED).ok());
}

// The IMAP form of a thread response, for reading tests.
std::string Render(const std::vector<v1::ThreadNode>& nodes) {
  std::string out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    absl::StrAppend(&out, nodes[i].depth(), ":", nodes[i].uid(), " ");
  }
  return out;
}

TEST(ThreadTest, OrderedSubject) {
  std::vector<SortableMessage> messages = {
      Message(1, "Subject: x\r\nDate: 1 Jan 2020 00:00 +0000\r\n"),
      Message(2, "Subject: Re: y\r\nDate: 2 Jan 2020 00:00 +0000\r\n"),
      Message(3, "Subject: Re: x\r\nDate: 4 Jan 2020 00:00 +0000\r\n"),
      Message(4, "Subject: y\r\nDate: 3 Jan 2020 00:00 +0000\r\n"),
      Message(5, "Subject: RE: X\r\nDate: 3 Jan 2020 00:00 +0000\r\n"),
  };
  EXPECT_EQ(Render(ThreadMessages(messages, v1::ThreadRequest::ORDEREDSUBJECT)),
            "0:1 1:5 1:3 0:2 1:4 ");
}

TEST(ThreadTest, ReferencesLinksAndDummies) {
  std::vector<SortableMessage> messages = {
      // 1 <- 2 <- 3, and 4 replies to a message that is not here (two of them
      // share the missing parent: it stays as a dummy with two children).
      Message(1, "Message-ID: <1@x>\r\nSubject: a\r\nDate: 1 Jan 2020 00:00 +0000\r\n"),
      Message(2, "Message-ID: <2@x>\r\nReferences: <1@x>\r\nSubject: Re: a\r\n"
                 "Date: 2 Jan 2020 00:00 +0000\r\n"),
      Message(3, "Message-ID: <3@x>\r\nReferences: <1@x> <2@x>\r\nSubject: Re: a\r\n"
                 "Date: 3 Jan 2020 00:00 +0000\r\n"),
      Message(4, "Message-ID: <4@x>\r\nIn-Reply-To: <gone@x>\r\nSubject: b\r\n"
                 "Date: 5 Jan 2020 00:00 +0000\r\n"),
      Message(5, "Message-ID: <5@x>\r\nReferences: <gone@x>\r\nSubject: c\r\n"
                 "Date: 4 Jan 2020 00:00 +0000\r\n"),
      // A missing parent of one child: the child is promoted.
      Message(6, "Message-ID: <6@x>\r\nReferences: <lost@x>\r\nSubject: d\r\n"
                 "Date: 6 Jan 2020 00:00 +0000\r\n"),
  };
  EXPECT_EQ(Render(ThreadMessages(messages, v1::ThreadRequest::REFERENCES)),
            "0:1 1:2 2:3 0:0 1:5 1:4 0:6 ");
}

TEST(ThreadTest, ReferencesGroupsBySubjectAndBreaksLoops) {
  std::vector<SortableMessage> messages = {
      Message(1, "Message-ID: <1@x>\r\nSubject: topic\r\nDate: 1 Jan 2020 00:00 +0000\r\n"),
      // No references but a reply subject: a child of 1 (step 5.C).
      Message(2, "Message-ID: <2@x>\r\nSubject: Re: topic\r\nDate: 2 Jan 2020 00:00 +0000\r\n"),
      // Same subject, neither a reply: both under a new dummy.
      Message(3, "Message-ID: <3@x>\r\nSubject: other\r\nDate: 3 Jan 2020 00:00 +0000\r\n"),
      Message(4, "Message-ID: <4@x>\r\nSubject: other\r\nDate: 4 Jan 2020 00:00 +0000\r\n"),
      // A loop: 5 names 6 as its parent and 6 names 5.
      Message(5, "Message-ID: <5@x>\r\nReferences: <6@x>\r\nSubject: l5\r\n"
                 "Date: 5 Jan 2020 00:00 +0000\r\n"),
      Message(6, "Message-ID: <6@x>\r\nReferences: <5@x>\r\nSubject: l6\r\n"
                 "Date: 6 Jan 2020 00:00 +0000\r\n"),
      // A duplicate Message-ID: the second is a message of its own.
      Message(7, "Message-ID: <1@x>\r\nSubject: dup\r\nDate: 7 Jan 2020 00:00 +0000\r\n"),
      // No subject and no references: a thread of its own.
      Message(8, "Date: 8 Jan 2020 00:00 +0000\r\n"),
  };
  EXPECT_EQ(Render(ThreadMessages(messages, v1::ThreadRequest::REFERENCES)),
            "0:1 1:2 0:0 1:3 1:4 0:6 1:5 0:7 0:8 ");
}

}  // namespace
}  // namespace mailbox::store
