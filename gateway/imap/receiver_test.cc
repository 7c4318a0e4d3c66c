#include "gateway/imap/receiver.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gateway/imap/serialize.h"
#include "gateway/imap/test_corpus.h"

namespace imap {
namespace {

using namespace std::string_literals;

// Turns the events for `input`, fed in pieces of `chunk` octets, into
// comparable strings. Acts like a simple session: accepts every literal,
// enters IDLE mode after IDLE and line mode after AUTHENTICATE until "*".
std::vector<std::string> Drive(std::string_view input, size_t chunk,
                               const Limits& limits = {}, bool unauthenticated = false) {
  Receiver receiver(limits);
  receiver.SetUnauthenticated(unauthenticated);
  std::vector<std::string> out;
  auto drain = [&] {
    while (true) {
      Event event = receiver.Next();
      if (std::holds_alternative<NeedMore>(event)) return;
      if (auto* c = std::get_if<Command>(&event)) {
        out.push_back("CMD " + Serialize(*c));
        if (std::holds_alternative<IdleCommand>(c->body)) {
          receiver.SetMode(Receiver::Mode::kIdle);
        }
        if (std::holds_alternative<AuthenticateCommand>(c->body)) {
          receiver.SetMode(Receiver::Mode::kLine);
        }
      } else if (auto* n = std::get_if<NeedContinuation>(&event)) {
        out.push_back("CONT " + n->tag + " " + std::to_string(n->size));
      } else if (auto* b = std::get_if<AppendMessageBegin>(&event)) {
        std::string flags;
        for (const std::string& f : b->message.flags) flags += f + ",";
        out.push_back("BEGIN " + b->tag + " " + b->message.mailbox + " " + flags + " " +
                      (b->message.date ? b->message.date->ToQuoted() : "-") + " " +
                      (b->message.catenate ? "catenate" : std::to_string(b->message.size)) +
                      (b->message.synchronizing ? " sync" : " nonsync") +
                      (b->message.binary ? " binary" : "") + (b->first ? " first" : ""));
      } else if (auto* d = std::get_if<AppendChunk>(&event)) {
        // Chunking depends on feeding; merge consecutive chunks.
        if (out.empty() || !out.back().starts_with("DATA ") ||
            out.back().ends_with("<last>")) {
          out.push_back("DATA ");
        }
        out.back() += d->data;
        if (d->last) out.back() += "<last>";
      } else if (auto* e = std::get_if<AppendEnd>(&event)) {
        out.push_back("END " + e->tag);
      } else if (auto* u = std::get_if<CatenateUrl>(&event)) {
        out.push_back("URL " + u->url);
      } else if (auto* t = std::get_if<CatenateText>(&event)) {
        out.push_back("TEXT " + std::to_string(t->size) +
                      (t->synchronizing ? " sync" : " nonsync") + (t->binary ? " binary" : ""));
      } else if (auto* l = std::get_if<Line>(&event)) {
        out.push_back("LINE " + l->text);
        if (l->text == "*") receiver.SetMode(Receiver::Mode::kCommand);
      } else if (std::holds_alternative<IdleDone>(event)) {
        out.push_back("DONE");
      } else if (auto* p = std::get_if<ProtocolError>(&event)) {
        out.push_back("ERR " + p->tag + " [" + p->code + "]" + (p->fatal ? " FATAL" : "") +
                      (p->refused ? " NO" : ""));
      }
    }
  };
  for (size_t i = 0; i < input.size(); i += chunk) {
    receiver.Feed(input.substr(i, chunk));
    drain();
  }
  if (input.empty()) drain();
  return out;
}

std::vector<std::string> DriveAllWays(std::string_view input, const Limits& limits = {},
                                      bool unauthenticated = false) {
  std::vector<std::string> whole = Drive(input, input.size() + 1, limits, unauthenticated);
  for (size_t chunk : {1, 2, 3, 7, 64}) {
    EXPECT_EQ(Drive(input, chunk, limits, unauthenticated), whole) << "chunk size " << chunk;
  }
  return whole;
}

using Events = std::vector<std::string>;

TEST(ReceiverTest, ByteAtATimeMatchesWholeForCorpus) {
  std::string all;
  for (const std::string& wire : testing::ValidCommands()) {
    Events events = DriveAllWays(wire);
    ASSERT_FALSE(events.empty()) << wire;
    for (const std::string& e : events) {
      EXPECT_FALSE(e.starts_with("ERR")) << wire << " -> " << e;
    }
    if (wire.find(" APPEND ") == std::string::npos && wire.find(" IDLE") == std::string::npos &&
        wire.find(" AUTHENTICATE") == std::string::npos) {
      all += wire;
    }
  }
  // Pipelined: everything in one stream.
  Events events = DriveAllWays(all);
  size_t commands = 0;
  for (const std::string& e : events) commands += e.starts_with("CMD ");
  EXPECT_GT(commands, 40u);
}

TEST(ReceiverTest, SynchronizingLiteralAsksForContinuation) {
  EXPECT_EQ(DriveAllWays("a LOGIN {5}\r\nalice {6}\r\nsecret\r\nb NOOP\r\n"),
            (Events{"CONT a 5", "CONT a 6", "CMD a LOGIN alice secret\r\n",
                    "CMD b NOOP\r\n"}));
  // LITERAL+ needs no continuation.
  EXPECT_EQ(DriveAllWays("a LOGIN {5+}\r\nalice bob\r\n"),
            (Events{"CMD a LOGIN alice bob\r\n"}));
}

TEST(ReceiverTest, QuotedBraceIsNotALiteral) {
  EXPECT_EQ(DriveAllWays("a LOGIN \"x {5}\" \"{5}\"\r\n"),
            (Events{"CMD a LOGIN \"x {5}\" \"{5}\"\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN \"x {5}\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, IdleAndAuthenticateModes) {
  EXPECT_EQ(DriveAllWays("a IDLE\r\ndone\r\nb NOOP\r\n"),
            (Events{"CMD a IDLE\r\n", "DONE", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a IDLE\r\nNOPE\r\nDONE\r\n"),
            (Events{"CMD a IDLE\r\n", "ERR  []", "DONE"}));
  EXPECT_EQ(DriveAllWays("a AUTHENTICATE PLAIN\r\nAGFsaWNl {5}\r\n*\r\nb NOOP\r\n"),
            (Events{"CMD a AUTHENTICATE PLAIN\r\n", "LINE AGFsaWNl {5}", "LINE *",
                    "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, StreamsAppend) {
  EXPECT_EQ(DriveAllWays("a APPEND INBOX (\\Seen) {5}\r\nHello\r\nb NOOP\r\n"),
            (Events{"BEGIN a INBOX \\Seen, - 5 sync first", "DATA Hello<last>", "END a",
                    "CMD b NOOP\r\n"}));
  // MULTIAPPEND, mailbox as a literal, date, literal8, non-synchronizing.
  EXPECT_EQ(
      DriveAllWays("a APPEND {3}\r\nBox {2+}\r\nhi \" 5-Feb-2024 13:01:02 +0100\" ~{3}\r\n"
                   "x\0y (\\Flagged) {0}\r\n\r\n"s),
      (Events{"CONT a 3", "BEGIN a Box  - 2 nonsync first", "DATA hi<last>",
              "BEGIN a Box  \" 5-Feb-2024 13:01:02 +0100\" 3 sync binary",
              "DATA x\0y<last>"s, "BEGIN a Box \\Flagged, - 0 sync", "DATA <last>",
              "END a"}));
}

TEST(ReceiverTest, StreamsUtf8AppendData) {
  // RFC 6855 §4: "UTF8 (~{n}" ... ")", alone and in a MULTIAPPEND.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX UTF8 (~{4+}\r\nS\xc3\xbc!)\r\nb NOOP\r\n"),
            (Events{"BEGIN a INBOX  - 4 nonsync binary first", "DATA S\xc3\xbc!<last>",
                    "END a", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a APPEND INBOX (\\Seen) UTF8 (~{2}\r\nhi) UTF8 (~{1}\r\nx) {1}\r\n"
                         "y\r\n"),
            (Events{"BEGIN a INBOX \\Seen, - 2 sync binary first", "DATA hi<last>",
                    "BEGIN a INBOX  - 1 sync binary", "DATA x<last>",
                    "BEGIN a INBOX  - 1 sync", "DATA y<last>", "END a"}));
  // The ")" is required after UTF8 data, and UTF8 takes only a literal8.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX UTF8 (~{2+}\r\nhi\r\nb NOOP\r\n"),
            (Events{"BEGIN a INBOX  - 2 nonsync binary first", "DATA hi<last>", "ERR a []",
                    "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a APPEND INBOX UTF8 ({2}\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, StreamsCatenate) {
  // RFC 4469 §5: URL and TEXT parts in order; the parts after a TEXT literal
  // continue on the line after its data.
  EXPECT_EQ(DriveAllWays("a APPEND Sent (\\Seen) CATENATE (URL \"/INBOX;UIDVALIDITY=7/;UID=3\" "
                         "TEXT {4}\r\nhead URL \"/INBOX/;UID=4/;SECTION=1\" TEXT {3+}\r\nend)"
                         "\r\nb NOOP\r\n"),
            (Events{"BEGIN a Sent \\Seen, - catenate sync first",
                    "URL /INBOX;UIDVALIDITY=7/;UID=3", "TEXT 4 sync", "DATA head<last>",
                    "URL /INBOX/;UID=4/;SECTION=1", "TEXT 3 nonsync", "DATA end<last>", "END a",
                    "CMD b NOOP\r\n"}));
  // Only URLs: no literal at all; the mailbox may be a literal.
  EXPECT_EQ(DriveAllWays("a APPEND {4}\r\nSent CATENATE (URL /x URL \"/y\")\r\n"),
            (Events{"CONT a 4", "BEGIN a Sent  - catenate sync first", "URL /x", "URL /y",
                    "END a"}));
  // MULTIAPPEND (RFC 4469 §5): CATENATE, an ordinary literal, CATENATE.
  EXPECT_EQ(DriveAllWays("a APPEND Sent CATENATE (TEXT ~{2}\r\nhi) {1+}\r\nx "
                         "\" 5-Feb-2024 13:01:02 +0100\" CATENATE (URL \"/z\")\r\n"),
            (Events{"BEGIN a Sent  - catenate sync first", "TEXT 2 sync binary", "DATA hi<last>",
                    "BEGIN a Sent  - 1 nonsync", "DATA x<last>",
                    "BEGIN a Sent  \" 5-Feb-2024 13:01:02 +0100\" catenate sync",
                    "URL /z", "END a"}));
}

TEST(ReceiverTest, MalformedCatenateIsBad) {
  // Each is a tagged BAD; the next command is read.
  for (const char* bad : {
           "a APPEND Sent CATENATE ()\r\n",
           "a APPEND Sent CATENATE (URL \"/x\"\r\n",           // no ")"
           "a APPEND Sent CATENATE (FOO \"/x\")\r\n",          // not TEXT or URL
           "a APPEND Sent CATENATE URL \"/x\"\r\n",            // no "("
           "a APPEND Sent CATENATE (URL \"/x\") garbage\r\n",  // after the list
           "a APPEND Sent CATENATE (TEXT \"x\")\r\n",          // TEXT is a literal
           "a APPEND Sent\r\n",                                  // no message
       }) {
    EXPECT_EQ(DriveAllWays(std::string(bad) + "b NOOP\r\n"),
              (Events{"ERR a []", "CMD b NOOP\r\n"}))
        << bad;
  }
  // A URL sent as a literal is refused before its "+".
  EXPECT_EQ(DriveAllWays("a APPEND Sent CATENATE (URL {5}\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  // After a TEXT literal: a bad part ends the command.
  EXPECT_EQ(DriveAllWays("a APPEND Sent CATENATE (TEXT {1+}\r\nx NOPE)\r\nb NOOP\r\n"),
            (Events{"BEGIN a Sent  - catenate sync first", "TEXT 1 nonsync", "DATA x<last>",
                    "ERR a []", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, CatenatePartLimit) {
  Limits limits;
  limits.max_catenate_parts = 3;
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (URL /1 URL /2 TEXT {1+}\r\nx)\r\n", limits),
            (Events{"BEGIN a S  - catenate sync first", "URL /1", "URL /2", "TEXT 1 nonsync",
                    "DATA x<last>", "END a"}));
  // One more part: BAD [LIMIT], counted across the lines of the list.
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (URL /1 URL /2 URL /3 URL /4)\r\nb NOOP\r\n",
                         limits),
            (Events{"ERR a [LIMIT]", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (URL /1 TEXT {1+}\r\nx URL /2 URL /3)\r\n"
                         "b NOOP\r\n",
                         limits),
            (Events{"BEGIN a S  - catenate sync first", "URL /1", "TEXT 1 nonsync",
                    "DATA x<last>", "ERR a [LIMIT]", "CMD b NOOP\r\n"}));
  // The count is per message of a MULTIAPPEND.
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (URL /1 URL /2 URL /3) CATENATE (URL /4 URL /5 "
                         "URL /6)\r\n",
                         limits)
                .back(),
            "END a");
  // A TEXT literal over the APPEND limit is declined like a message literal.
  limits.max_append_literal_size = 10;
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (TEXT {10+}\r\n0123456789)\r\n", limits).back(),
            "END a");
  EXPECT_EQ(DriveAllWays("a APPEND S CATENATE (TEXT {11}\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG] NO", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, RejectDuringCatenate) {
  // The session refuses a URL (BADURL) before the TEXT literal's "+": the
  // client does not send the literal, the next line is a new command.
  Receiver receiver;
  receiver.Feed("a APPEND S CATENATE (URL /bad TEXT {5}\r\nb NOOP\r\n");
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(receiver.Next()));
  ASSERT_TRUE(std::holds_alternative<CatenateUrl>(receiver.Next()));
  receiver.RejectLiteral();
  Event next = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<Command>(next));
  EXPECT_EQ(std::get<Command>(next).tag, "b");
  // Non-synchronizing: the literal and the rest of the command are skipped.
  receiver.Feed("c APPEND S CATENATE (URL /bad TEXT {5+}\r\nhello URL /x)\r\nd NOOP\r\n");
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(receiver.Next()));
  ASSERT_TRUE(std::holds_alternative<CatenateUrl>(receiver.Next()));
  receiver.AbortCommand();
  next = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<Command>(next));
  EXPECT_EQ(std::get<Command>(next).tag, "d");
  // The whole command on one line: nothing is left to skip.
  receiver.Feed("e APPEND S CATENATE (URL /bad URL /x)\r\nf NOOP\r\n");
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(receiver.Next()));
  ASSERT_TRUE(std::holds_alternative<CatenateUrl>(receiver.Next()));
  receiver.AbortCommand();
  next = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<Command>(next));
  EXPECT_EQ(std::get<Command>(next).tag, "f");
}

TEST(ReceiverTest, AppendDataIsNotBuffered) {
  Receiver receiver;
  receiver.Feed("a APPEND INBOX {50000000+}\r\n");
  Event begin = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(begin));
  std::string block(64 * 1024, 'x');
  uint64_t received = 0;
  bool last = false;
  while (!last) {
    receiver.Feed(std::string_view(block).substr(
        0, std::min<uint64_t>(block.size(), 50000000 - received)));
    while (true) {
      Event event = receiver.Next();
      if (std::holds_alternative<NeedMore>(event)) break;
      auto& chunk = std::get<AppendChunk>(event);
      received += chunk.data.size();
      last = chunk.last;
    }
    ASSERT_LE(receiver.buffered(), block.size());
  }
  EXPECT_EQ(received, 50000000u);
  receiver.Feed("\r\n");
  EXPECT_TRUE(std::holds_alternative<AppendEnd>(receiver.Next()));
}

TEST(ReceiverTest, AppendErrorsResync) {
  // Bad syntax after a literal: tagged BAD, next line is a new command.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {1+}\r\nx garbage\r\nb NOOP\r\n"),
            (Events{"BEGIN a INBOX  - 1 nonsync first", "DATA x<last>", "ERR a []",
                    "CMD b NOOP\r\n"}));
  // Bad second head announcing a non-synchronizing literal: it is skipped.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {1+}\r\nx BAD {3+}\r\nabc\r\nb NOOP\r\n"),
            (Events{"BEGIN a INBOX  - 1 nonsync first", "DATA x<last>", "ERR a []",
                    "CMD b NOOP\r\n"}));
  // NUL in a non-binary message literal: reported when reached, so data
  // before it may already have been delivered when fed in pieces.
  std::string nul = "a APPEND INBOX {3+}\r\na\0b\r\nb NOOP\r\n"s;
  EXPECT_EQ(Drive(nul, nul.size()),
            (Events{"BEGIN a INBOX  - 3 nonsync first", "ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(Drive(nul, 1), (Events{"BEGIN a INBOX  - 3 nonsync first", "DATA a", "ERR a []",
                                   "CMD b NOOP\r\n"}));
  // Bad flags before the literal.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX (\\) {3}\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, RejectAndAbort) {
  Receiver receiver;
  receiver.Feed("a APPEND Nope {5}\r\nb NOOP\r\n");
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(receiver.Next()));
  receiver.RejectLiteral();  // the session answers "a NO [TRYCREATE]"
  Event next = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<Command>(next));
  EXPECT_EQ(std::get<Command>(next).tag, "b");

  receiver.Feed("c APPEND INBOX {5+}\r\nHel");
  ASSERT_TRUE(std::holds_alternative<AppendMessageBegin>(receiver.Next()));
  ASSERT_TRUE(std::holds_alternative<AppendChunk>(receiver.Next()));
  receiver.AbortCommand();  // e.g. the store failed mid-stream
  receiver.Feed("lo {2+}\r\nxx\r\nd NOOP\r\n");
  next = receiver.Next();
  ASSERT_TRUE(std::holds_alternative<Command>(next));
  EXPECT_EQ(std::get<Command>(next).tag, "d");

  receiver.Feed("e LOGIN {3}\r\n");
  ASSERT_TRUE(std::holds_alternative<NeedContinuation>(receiver.Next()));
  receiver.RejectLiteral();
  receiver.Feed("f NOOP\r\n");
  EXPECT_EQ(std::get<Command>(receiver.Next()).tag, "f");

  receiver.Feed("g NOOP\r\nh NOOP\r\n");
  receiver.Reset();
  receiver.Feed("i NOOP\r\n");
  EXPECT_EQ(std::get<Command>(receiver.Next()).tag, "i");
}

TEST(ReceiverTest, LineLengthLimitIsExact) {
  Limits limits;
  limits.max_line_length = 32;
  std::string ok = "a NOOP" + std::string(24, ' ') + "\r\n";  // 32 octets
  ASSERT_EQ(ok.size(), 32u);
  // Exactly at the limit: parsed (and refused for its extra spaces, by the parser).
  EXPECT_EQ(DriveAllWays(ok, limits), (Events{"ERR a []"}));
  EXPECT_EQ(DriveAllWays("a LOGIN " + std::string(20, 'x') + " y\r\n", limits),
            (Events{"CMD a LOGIN xxxxxxxxxxxxxxxxxxxx y\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN " + std::string(21, 'x') + " y\r\nb NOOP\r\n", limits),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  // Literal data does not count, the text around it does.
  EXPECT_EQ(DriveAllWays("a LOGIN {40+}\r\n" + std::string(40, 'x') + " yyyyyyyyyyyy\r\n",
                         limits),
            (Events{"CMD a LOGIN " + std::string(40, 'x') + " yyyyyyyyyyyy\r\n"}));
  // A long line ending in a non-synchronizing literal: the literal is skipped too.
  EXPECT_EQ(DriveAllWays("a LOGIN " + std::string(40, 'x') + " {3+}\r\nabc\r\nb NOOP\r\n",
                         limits),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  // Default limit: 64 KiB.
  EXPECT_EQ(Drive("a NOOP " + std::string(70000, 'x') + "\r\nb NOOP\r\n", 4096),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, LiteralSizeLimitIsExact) {
  Limits limits;
  limits.max_literal_size = 10;
  limits.max_append_literal_size = 20;
  EXPECT_EQ(DriveAllWays("a LOGIN {10+}\r\n0123456789 x\r\n", limits),
            (Events{"CMD a LOGIN 0123456789 x\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN {11}\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // Non-synchronizing over the limit cannot be skipped: fatal.
  EXPECT_EQ(DriveAllWays("a LOGIN {11+}\r\n01234567890 x\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG] FATAL"}));
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {20+}\r\n" + std::string(20, 'm') + "\r\n", limits),
            (Events{"BEGIN a INBOX  - 20 nonsync first", "DATA " + std::string(20, 'm') +
                                                             "<last>",
                    "END a"}));
  // Over the APPEND limit: declined (NO [TOOBIG]), not malformed.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {21}\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG] NO", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {21+}\r\n", limits),
            (Events{"ERR a [TOOBIG] FATAL"}));
  // {4294967296}: overflow.
  EXPECT_EQ(DriveAllWays("a LOGIN {4294967296}\r\nb NOOP\r\n"),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN {99999999999999999999999+}\r\n"),
            (Events{"ERR a [TOOBIG] FATAL"}));
}

TEST(ReceiverTest, CommandLiteralTotalIsLimited) {
  Limits limits;
  limits.max_command_literal_octets = 10;
  EXPECT_EQ(DriveAllWays("a LOGIN {5+}\r\n01234 {5+}\r\n56789\r\n", limits),
            (Events{"CMD a LOGIN 01234 56789\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN {5+}\r\n01234 {6+}\r\n567890\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, UnauthenticatedLiteralBudgetIsExact) {
  Limits limits;
  limits.max_unauthenticated_literal_octets = 10;
  const bool unauthenticated = true;
  // Exactly the budget, over two literals: accepted, "+" for each.
  EXPECT_EQ(DriveAllWays("a LOGIN {5}\r\n01234 {5}\r\n56789\r\n", limits, unauthenticated),
            (Events{"CONT a 5", "CONT a 5", "CMD a LOGIN 01234 56789\r\n"}));
  // One octet more: the second literal is refused before "+" is sent, so the
  // client never sends its data and the next line is a new command.
  EXPECT_EQ(DriveAllWays("a LOGIN {5}\r\n01234 {6}\r\nb NOOP\r\n", limits, unauthenticated),
            (Events{"CONT a 5", "ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // A single big synchronizing literal never gets "+".
  EXPECT_EQ(DriveAllWays("a LOGIN {1048576}\r\nb NOOP\r\n", limits, unauthenticated),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // Non-synchronizing over the budget but within max_literal_size: the data
  // is read and discarded (never buffered), the connection stays usable.
  EXPECT_EQ(DriveAllWays("a LOGIN {11+}\r\n01234567890 x\r\nb NOOP\r\n", limits,
                         unauthenticated),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // Non-synchronizing beyond max_literal_size cannot be skipped: BAD + BYE.
  EXPECT_EQ(DriveAllWays("a LOGIN {1048576+}\r\nxxxx", limits, unauthenticated),
            (Events{"ERR a [TOOBIG] FATAL"}));
  // After authentication the ordinary limits apply.
  EXPECT_EQ(DriveAllWays("a LOGIN {11+}\r\n01234567890 x\r\n", limits),
            (Events{"CMD a LOGIN 01234567890 x\r\n"}));
}

TEST(ReceiverTest, UnauthenticatedAppendDataHasTheSameBudget) {
  Limits limits;
  limits.max_unauthenticated_literal_octets = 10;
  const bool unauthenticated = true;
  // Within the budget the message reaches the session (which answers BAD).
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {10}\r\n", limits, unauthenticated),
            (Events{"BEGIN a INBOX  - 10 sync first"}));
  // One octet more: refused before "+", the next line is a new command.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {11}\r\nb NOOP\r\n", limits, unauthenticated),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a APPEND INBOX ~{11}\r\nb NOOP\r\n", limits, unauthenticated),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // The mailbox name as a literal counts too.
  EXPECT_EQ(DriveAllWays("a APPEND {5}\r\nINBOX {6}\r\nb NOOP\r\n", limits,
                         unauthenticated),
            (Events{"CONT a 5", "ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // Non-synchronizing within max_literal_size: skipped, the connection stays.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {11+}\r\n01234567890\r\nb NOOP\r\n", limits,
                         unauthenticated),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  // Beyond max_literal_size (not max_append_literal_size): BAD + BYE.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {1048576+}\r\nxxxx", limits, unauthenticated),
            (Events{"ERR a [TOOBIG] FATAL"}));
  // After authentication the ordinary APPEND limits apply.
  EXPECT_EQ(DriveAllWays("a APPEND INBOX {11}\r\n", limits),
            (Events{"BEGIN a INBOX  - 11 sync first"}));
}

TEST(ReceiverTest, LiteralMinus) {
  Limits limits;
  limits.literal_minus = true;
  std::string data(4096, 'x');
  EXPECT_EQ(DriveAllWays("a LOGIN {4096+}\r\n" + data + " y\r\n", limits),
            (Events{"CMD a LOGIN " + data + " y\r\n"}));
  limits.max_literal_size = 8192;
  // RFC 7888: over 4096 must be synchronizing; within the literal limit the
  // data is skipped and the connection stays usable.
  EXPECT_EQ(DriveAllWays("a LOGIN {4097+}\r\n" + data + "x y\r\nb NOOP\r\n", limits),
            (Events{"ERR a [TOOBIG]", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN {4097}\r\n", limits), (Events{"CONT a 4097"}));
}

TEST(ReceiverTest, LiteralCountLimitIsExact) {
  Limits limits;
  limits.max_literals_per_command = 3;
  EXPECT_EQ(DriveAllWays("a FETCH 1 BODY[HEADER.FIELDS ({1+}\r\na {1+}\r\nb {1+}\r\nc)]\r\n",
                         limits)
                .size(),
            1u);
  EXPECT_EQ(DriveAllWays("a FETCH 1 BODY[HEADER.FIELDS ({1+}\r\na {1+}\r\nb {1+}\r\nc "
                         "{1+}\r\nd)]\r\nb NOOP\r\n",
                         limits),
            (Events{"ERR a [LIMIT]", "CMD b NOOP\r\n"}));
  // 5,000 literals with the default limit: one BAD, bounded memory.
  std::string many = "a SEARCH";
  for (int i = 0; i < 5000; ++i) many += " TEXT {1+}\r\nx";
  many += "\r\nb NOOP\r\n";
  EXPECT_EQ(Drive(many, 1000), (Events{"ERR a [LIMIT]", "CMD b NOOP\r\n"}));
}

TEST(ReceiverTest, BadInputCases) {
  EXPECT_EQ(DriveAllWays("a LOGIN \"x\0y\" z\r\nb NOOP\r\n"s),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN {3+}\r\nx\0y z\r\nb NOOP\r\n"s),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a LOGIN ~{3+}\r\nx\0y z\r\nb NOOP\r\n"s),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a NOOP\nb NOOP\r\n"), (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("\r\n"), (Events{"ERR  []"}));
  EXPECT_EQ(DriveAllWays("a BOGUS {3}\r\nb NOOP\r\n"), (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a FETCH 1 " + std::string(1000, '(') + "\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a SEARCH " + std::string(1000, '(') + "ALL" +
                         std::string(1000, ')') + "\r\nb NOOP\r\n"),
            (Events{"ERR a []", "CMD b NOOP\r\n"}));
  EXPECT_EQ(DriveAllWays("a FETCH 1:*,*:1,4294967295,5:3 FLAGS\r\nb FETCH 0 FLAGS\r\n"),
            (Events{"CMD a FETCH 1:*,*:1,4294967295,5:3 (FLAGS)\r\n", "ERR b []"}));
  EXPECT_EQ(DriveAllWays("a LOGIN \"unterminated\r\n"), (Events{"ERR a []"}));
}

TEST(ReceiverTest, TagLimit) {
  Limits limits;
  limits.max_tag_length = 4;
  EXPECT_EQ(DriveAllWays("abcd NOOP\r\nabcde NOOP\r\n", limits),
            (Events{"CMD abcd NOOP\r\n", "ERR  []"}));
}

}  // namespace
}  // namespace imap
