#include "gateway/imap/parser.h"

#include <gtest/gtest.h>

#include "gateway/imap/serialize.h"
#include "gateway/imap/test_corpus.h"

namespace imap {
namespace {

using namespace std::string_literals;

Command MustParse(std::string_view wire) {
  Result<Command> command = ParseCommand(wire);
  EXPECT_TRUE(command.ok()) << wire << "\n-> " << command.error().message;
  return command.ok() ? *command : Command{};
}

std::string ParseError(std::string_view wire, const Limits& limits = {}) {
  Result<Command> command = ParseCommand(wire, limits);
  EXPECT_FALSE(command.ok()) << wire;
  return command.ok() ? "" : command.error().message;
}

TEST(ParserTest, EveryCorpusCommandParsesAndRoundTrips) {
  for (const std::string& wire : testing::ValidCommands()) {
    Command first = MustParse(wire);
    for (LiteralForm form : {LiteralForm::kNonSynchronizing, LiteralForm::kSynchronizing}) {
      std::string serialized = Serialize(first, form);
      Result<Command> second = ParseCommand(serialized);
      ASSERT_TRUE(second.ok()) << serialized << "\n-> " << second.error().message;
      EXPECT_EQ(first, *second) << wire << "\n" << serialized;
      EXPECT_EQ(Serialize(*second, form), serialized);
    }
  }
}

// Found by the fuzzer: "~" is an ATOM-CHAR; only "~{" starts a literal8 (RFC 3516).
TEST(ParserTest, AnAtomMayStartWithTilde) {
  Command login = MustParse("a9 LOGIN ~ciale \"p\"\r\n");
  EXPECT_EQ(std::get<LoginCommand>(login.body).userid, "~ciale");
  std::string serialized = Serialize(login, LiteralForm::kNonSynchronizing);
  Result<Command> again = ParseCommand(serialized);
  ASSERT_TRUE(again.ok()) << serialized << "\n-> " << again.error().message;
  EXPECT_EQ(login, *again);
  EXPECT_EQ(std::get<SelectCommand>(MustParse("s SELECT ~box\r\n").body).mailbox, "~box");
}

TEST(ParserTest, CreateSpecialUse) {
  auto create = std::get<CreateCommand>(MustParse("c CREATE Mail/Sent (USE (\\Sent))\r\n").body);
  EXPECT_EQ(create.mailbox, "Mail/Sent");
  EXPECT_EQ(create.special_use, std::vector<std::string>{"\\Sent"});
  EXPECT_TRUE(std::get<CreateCommand>(MustParse("c CREATE x (USE ())\r\n").body)
                  .special_use.empty());
  EXPECT_NE(ParseError("c CREATE x (FOO (bar))\r\n").find("unknown CREATE parameter FOO"),
            std::string::npos);
  ParseError("c CREATE x (USE \\Sent)\r\n");
  ParseError("c CREATE x (USE (\\Sent)\r\n");
  ParseError("c CREATE x USE (\\Sent)\r\n");
}

TEST(ParserTest, SaveDateAndPreview) {
  using Kind = FetchAttribute::Kind;
  // RFC 8514 §3, RFC 8970 §3.1.
  auto fetch = std::get<FetchCommand>(
      MustParse("t FETCH 1 (SAVEDATE PREVIEW (lazy) PREVIEW UID)\r\n").body);
  ASSERT_EQ(fetch.attributes.size(), 4u);
  EXPECT_EQ(fetch.attributes[0].kind, Kind::kSaveDate);
  EXPECT_EQ(fetch.attributes[1].kind, Kind::kPreview);
  EXPECT_TRUE(fetch.attributes[1].lazy);
  EXPECT_FALSE(fetch.attributes[2].lazy);
  EXPECT_EQ(FetchResponseName(fetch.attributes[1]), "PREVIEW");
  // Alone: (LAZY) is the item's modifier; another list is the FETCH modifiers.
  auto alone = std::get<FetchCommand>(MustParse("t FETCH 1 PREVIEW (LAZY)\r\n").body);
  EXPECT_TRUE(alone.attributes[0].lazy);
  EXPECT_FALSE(alone.changed_since.has_value());
  auto both = std::get<FetchCommand>(
      MustParse("t UID FETCH 1 PREVIEW (LAZY) (CHANGEDSINCE 4)\r\n").body);
  EXPECT_TRUE(both.attributes[0].lazy);
  EXPECT_EQ(both.changed_since, 4u);
  auto modifiers = std::get<FetchCommand>(MustParse("t FETCH 1 PREVIEW (CHANGEDSINCE 4)\r\n").body);
  EXPECT_FALSE(modifiers.attributes[0].lazy);
  EXPECT_EQ(modifiers.changed_since, 4u);
  EXPECT_NE(ParseError("t FETCH 1 (PREVIEW (FOO))\r\n").find("LAZY is the only one"),
            std::string::npos);
  ParseError("t FETCH 1 (PREVIEW (LAZY LAZY))\r\n");
  ParseError("t FETCH 1 (PREVIEW ())\r\n");
  ParseError("t FETCH 1 (PREVIEW (LAZY)\r\n");
  ParseError("t FETCH 1 (SAVEDATE (LAZY))\r\n");

  auto search = std::get<SearchCommand>(
      MustParse("t SEARCH SAVEDBEFORE 1-Feb-2024 SAVEDON 2-Feb-2024 SAVEDSINCE 3-Feb-2024 "
                "SAVEDATESUPPORTED\r\n")
          .body);
  ASSERT_EQ(search.criteria.children.size(), 4u);
  EXPECT_EQ(search.criteria.children[0].kind, SearchKey::Kind::kSavedBefore);
  EXPECT_EQ(search.criteria.children[1].date, (Date{2024, 2, 2}));
  EXPECT_EQ(search.criteria.children[2].kind, SearchKey::Kind::kSavedSince);
  EXPECT_EQ(search.criteria.children[3].kind, SearchKey::Kind::kSaveDateSupported);
  ParseError("t SEARCH SAVEDON\r\n");
  ParseError("t SEARCH SAVEDSINCE 2024-02-03\r\n");
}

TEST(ParserTest, TypedFields) {
  Command login = MustParse("a9 LOGIN \"al ice\" {6+}\r\nse\"cr\\\r\n");
  EXPECT_EQ(login.tag, "a9");
  EXPECT_EQ(std::get<LoginCommand>(login.body),
            (LoginCommand{"al ice", "se\"cr\\"}));

  auto select = std::get<SelectCommand>(MustParse("t select inbox (condstore)\r\n").body);
  EXPECT_EQ(select.mailbox, "inbox");
  EXPECT_TRUE(select.condstore);

  auto qresync = std::get<ExamineCommand>(
      MustParse("t EXAMINE INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 "
                "(1:5,7 2,4:7,9)) CONDSTORE)\r\n")
          .body);
  EXPECT_TRUE(qresync.condstore);
  ASSERT_TRUE(qresync.qresync.has_value());
  EXPECT_EQ(qresync.qresync->uidvalidity, 67890007u);
  EXPECT_EQ(qresync.qresync->modseq, 20050715194045000u);
  EXPECT_EQ(qresync.qresync->known_uids->ToString(), "41,43:211,214:541");
  EXPECT_EQ(qresync.qresync->known_sequence_set->ToString(), "1:5,7");
  EXPECT_EQ(qresync.qresync->known_uid_set->ToString(), "2,4:7,9");
  auto short_form = std::get<SelectCommand>(MustParse("t SELECT a (QRESYNC (1 0))\r\n").body);
  EXPECT_FALSE(short_form.qresync->known_uids.has_value());
  auto match_only =
      std::get<SelectCommand>(MustParse("t SELECT a (QRESYNC (1 5 (3 9)))\r\n").body);
  EXPECT_FALSE(match_only.qresync->known_uids.has_value());
  EXPECT_EQ(match_only.qresync->known_uid_set->ToString(), "9");
  // RFC 5182 "$", alone, wherever a sequence set goes.
  auto saved = std::get<FetchCommand>(MustParse("t FETCH $ (FLAGS)\r\n").body);
  EXPECT_TRUE(saved.set.saved());
  EXPECT_EQ(saved.set.ToString(), "$");
  auto saved_key = std::get<SearchCommand>(MustParse("t UID SEARCH $ UID $\r\n").body);
  EXPECT_TRUE(saved_key.criteria.children[0].set.saved());
  EXPECT_TRUE(saved_key.criteria.children[1].set.saved());
  auto vanished = std::get<FetchCommand>(
      MustParse("t UID FETCH 1:* (FLAGS) (VANISHED CHANGEDSINCE 12)\r\n").body);
  EXPECT_TRUE(vanished.vanished);
  EXPECT_EQ(vanished.changed_since, 12u);

  auto auth = std::get<AuthenticateCommand>(
      MustParse("t AUTHENTICATE plain AGFsaWNlAHNlY3JldA==\r\n").body);
  EXPECT_EQ(auth.mechanism, "PLAIN");
  EXPECT_EQ(auth.initial_response, "AGFsaWNlAHNlY3JldA==");

  auto fetch = std::get<FetchCommand>(
      MustParse("t UID FETCH 1:* (BODY.PEEK[1.HEADER.FIELDS (From)]<0.100> UID) "
                "(CHANGEDSINCE 7)\r\n")
          .body);
  EXPECT_TRUE(fetch.uid);
  ASSERT_EQ(fetch.attributes.size(), 2u);
  EXPECT_EQ(fetch.attributes[0].kind, FetchAttribute::Kind::kBodySection);
  EXPECT_TRUE(fetch.attributes[0].peek);
  EXPECT_EQ(fetch.attributes[0].section.part, std::vector<uint32_t>{1});
  EXPECT_EQ(fetch.attributes[0].section.text, Section::Text::kHeaderFields);
  EXPECT_EQ(fetch.attributes[0].section.fields, std::vector<std::string>{"From"});
  EXPECT_EQ(fetch.attributes[0].partial, (FetchAttribute::Partial{0, 100}));
  EXPECT_EQ(FetchResponseName(fetch.attributes[0]), "BODY[1.HEADER.FIELDS (From)]<0>");
  EXPECT_EQ(fetch.changed_since, 7u);

  auto all = std::get<FetchCommand>(MustParse("t FETCH 1 FULL\r\n").body);
  EXPECT_EQ(all.attributes.size(), 5u);

  auto store = std::get<StoreCommand>(MustParse("t STORE 1 -FLAGS.SILENT \\Seen foo\r\n").body);
  EXPECT_EQ(store.mode, StoreCommand::Mode::kRemove);
  EXPECT_TRUE(store.silent);
  EXPECT_EQ(store.flags, (std::vector<std::string>{"\\Seen", "foo"}));

  auto append = std::get<AppendCommand>(MustParse(
      "t APPEND INBOX (\\Seen) \" 5-Feb-2024 13:01:02 +0100\" {3}\r\nabc ~{2}\r\nx\0\r\n"s)
                                            .body);
  ASSERT_EQ(append.messages.size(), 2u);
  EXPECT_EQ(append.messages[0].date->ToUnixSeconds(), 1707134462);
  EXPECT_EQ(append.messages[1].data, "x\0"s);
  EXPECT_TRUE(append.messages[1].binary);

  auto id = std::get<IdCommand>(MustParse("t ID (\"name\" NIL)\r\n").body);
  ASSERT_TRUE(id.params.has_value());
  EXPECT_FALSE((*id.params)[0].second.has_value());

  // RFC 4978 §5: the algorithm is an atom, compared without case.
  auto compress = std::get<CompressCommand>(MustParse("t compress deflate\r\n").body);
  EXPECT_EQ(compress.algorithm, "DEFLATE");

  auto list = std::get<ListCommand>(MustParse("t LIST \"\" %\r\n").body);
  EXPECT_EQ(list.patterns, std::vector<std::string>{"%"});

  auto uid_expunge = std::get<UidExpungeCommand>(MustParse("t UID EXPUNGE 3:1\r\n").body);
  EXPECT_EQ(uid_expunge.uids.Resolve(10), (std::vector<Interval>{{1, 3}}));
}

TEST(ParserTest, Quota) {
  // RFC 9208 §4.1: the root is an astring ("" is the usual one).
  EXPECT_EQ(std::get<GetQuotaCommand>(MustParse("t GETQUOTA \"\"\r\n").body).root, "");
  EXPECT_EQ(std::get<GetQuotaCommand>(MustParse("t getquota user.alice\r\n").body).root,
            "user.alice");
  EXPECT_EQ(std::get<GetQuotaRootCommand>(MustParse("t GETQUOTAROOT INBOX\r\n").body).mailbox,
            "INBOX");
  auto set = std::get<SetQuotaCommand>(
      MustParse("t SETQUOTA \"\" (storage 512 MESSAGE 18446744073709551615)\r\n").body);
  EXPECT_EQ(set.root, "");
  ASSERT_EQ(set.limits.size(), 2u);
  EXPECT_EQ(set.limits[0], std::make_pair(std::string("STORAGE"), uint64_t{512}));
  EXPECT_EQ(set.limits[1].second, UINT64_MAX);
  EXPECT_TRUE(std::get<SetQuotaCommand>(MustParse("t SETQUOTA x ()\r\n").body).limits.empty());
  auto status = std::get<StatusCommand>(
      MustParse("t STATUS INBOX (DELETED DELETED-STORAGE)\r\n").body);
  EXPECT_EQ(status.items,
            (std::vector<StatusItem>{StatusItem::kDeleted, StatusItem::kDeletedStorage}));

  // A missing argument is BAD with the parser's message (what it expected).
  EXPECT_FALSE(ParseError("t GETQUOTA\r\n").empty());
  EXPECT_FALSE(ParseError("t GETQUOTAROOT\r\n").empty());
  EXPECT_NE(ParseError("t SETQUOTA \"\" STORAGE 5\r\n").find("resource limits"),
            std::string::npos);
  EXPECT_FALSE(ParseError("t SETQUOTA \"\" (STORAGE)\r\n").empty());
  EXPECT_NE(ParseError("t SETQUOTA \"\" (STORAGE -1)\r\n").find("resource limit"),
            std::string::npos);
}

TEST(ParserTest, Notify) {
  using Filter = NotifyEventGroup::Filter;
  EXPECT_TRUE(std::get<NotifyCommand>(MustParse("n NOTIFY none\r\n").body).none);
  auto set = std::get<NotifyCommand>(
      MustParse("n NOTIFY SET STATUS (selected-delayed (MessageNew (UID BODY.PEEK[HEADER]) "
                "MessageExpunge)) (subtree (Lists \"A B\") (flagchange messagenew "
                "messageexpunge)) (INBOXES NONE) (mailboxes x (x-custom))\r\n")
          .body);
  EXPECT_FALSE(set.none);
  EXPECT_TRUE(set.status);
  ASSERT_EQ(set.groups.size(), 4u);
  EXPECT_EQ(set.groups[0].filter, Filter::kSelectedDelayed);
  EXPECT_EQ(set.groups[0].events, (std::vector<std::string>{"MessageNew", "MessageExpunge"}));
  EXPECT_EQ(set.groups[0].message_new_attributes.size(), 2u);
  EXPECT_EQ(set.groups[1].filter, Filter::kSubtree);
  EXPECT_EQ(set.groups[1].mailboxes, (std::vector<std::string>{"Lists", "A B"}));
  EXPECT_EQ(set.groups[1].events,
            (std::vector<std::string>{"FlagChange", "MessageNew", "MessageExpunge"}));
  EXPECT_EQ(set.groups[2].filter, Filter::kInboxes);
  EXPECT_TRUE(set.groups[2].events.empty());
  EXPECT_EQ(set.groups[3].filter, Filter::kMailboxes);
  EXPECT_EQ(set.groups[3].mailboxes, std::vector<std::string>{"x"});
  // An unknown event is grammatical (event-ext); the session answers BADEVENT.
  EXPECT_EQ(set.groups[3].events, std::vector<std::string>{"X-CUSTOM"});
  EXPECT_FALSE(
      std::get<NotifyCommand>(MustParse("n NOTIFY SET (PERSONAL (MailboxName))\r\n").body)
          .status);

  // Malformed: each error says what was expected.
  EXPECT_FALSE(ParseError("n NOTIFY\r\n").empty());
  EXPECT_NE(ParseError("n NOTIFY ON\r\n").find("NOTIFY SET or NOTIFY NONE"), std::string::npos);
  EXPECT_FALSE(ParseError("n NOTIFY SET\r\n").empty());
  EXPECT_NE(ParseError("n NOTIFY SET (ALL (MessageNew MessageExpunge))\r\n")
                .find("unknown mailbox filter ALL"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (SELECTED MessageNew)\r\n").find("or NONE"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (SELECTED (MessageNew))\r\n").find("together"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (PERSONAL (FlagChange MessageExpunge))\r\n")
                .find("together"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (PERSONAL (FlagChange))\r\n").find("FlagChange"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))\r\n")
                .find("only for SELECTED"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (SELECTED (MessageNew (NOSUCH) MessageExpunge))\r\n")
                .find("unknown fetch attribute"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (SELECTED (MessageNew MessageExpunge MessageNew))\r\n")
                .find("twice"),
            std::string::npos);
  EXPECT_NE(ParseError("n NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)\r\n")
                .find("more than once"),
            std::string::npos);
  EXPECT_FALSE(ParseError("n NOTIFY SET (SUBTREE (MessageNew MessageExpunge))\r\n").empty());
  EXPECT_FALSE(ParseError("n NOTIFY SET (MAILBOXES () NONE)\r\n").empty());
  EXPECT_FALSE(ParseError("n NOTIFY SET (PERSONAL NONE\r\n").empty());
  EXPECT_FALSE(ParseError("n NOTIFY SET (PERSONAL NONE) extra\r\n").empty());
  std::string many = "n NOTIFY SET";
  for (int i = 0; i < 65; ++i) many += " (MAILBOXES x NONE)";
  EXPECT_NE(ParseError(many + "\r\n").find("more than 64 event groups"), std::string::npos);
}

TEST(ParserTest, Metadata) {
  // RFC 5464 §5.
  auto get = std::get<GetMetadataCommand>(
      MustParse("t GETMETADATA (depth INFINITY maxsize 10) \"\" /shared/comment\r\n").body);
  EXPECT_EQ(get.depth, -1);
  EXPECT_EQ(get.max_size, uint64_t{10});
  EXPECT_EQ(get.mailbox, "");
  EXPECT_EQ(get.entries, std::vector<std::string>{"/shared/comment"});
  get = std::get<GetMetadataCommand>(
      MustParse("t GETMETADATA INBOX (/private/a \"/shared/b c\")\r\n").body);
  EXPECT_EQ(get.depth, 0);
  EXPECT_FALSE(get.max_size.has_value());
  EXPECT_EQ(get.entries, (std::vector<std::string>{"/private/a", "/shared/b c"}));
  auto set = std::get<SetMetadataCommand>(
      MustParse("t SETMETADATA INBOX (/private/comment {5}\r\nhe\r\ny /shared/x NIL "
                "/private/bin ~{3}\r\na\0b)\r\n"s)
          .body);
  EXPECT_EQ(set.mailbox, "INBOX");
  ASSERT_EQ(set.entries.size(), 3u);
  EXPECT_EQ(set.entries[0].second, std::optional<std::string>("he\r\ny"));
  EXPECT_FALSE(set.entries[1].second.has_value());
  EXPECT_EQ(set.entries[2].second, std::optional<std::string>(std::string("a\0b", 3)));

  EXPECT_NE(ParseError("t GETMETADATA (DEPTH 2) INBOX /private/a\r\n").find("infinity"),
            std::string::npos);
  EXPECT_NE(ParseError("t GETMETADATA (DEPTH 1 DEPTH 0) INBOX /a\r\n").find("repeated"),
            std::string::npos);
  EXPECT_NE(ParseError("t GETMETADATA (COLOR 1) INBOX /a\r\n").find("MAXSIZE"),
            std::string::npos);
  EXPECT_FALSE(ParseError("t GETMETADATA INBOX\r\n").empty());
  EXPECT_FALSE(ParseError("t SETMETADATA INBOX /private/a \"x\"\r\n").empty());
  EXPECT_FALSE(ParseError("t SETMETADATA INBOX (/private/a)\r\n").empty());
}

TEST(ParserTest, Search) {
  auto search = std::get<SearchCommand>(
      MustParse("t SEARCH CHARSET UTF-8 OR NOT SEEN (FROM \"a b\" 1:3) UNKEYWORD $x\r\n")
          .body);
  EXPECT_EQ(search.charset, "UTF-8");
  ASSERT_EQ(search.criteria.children.size(), 2u);
  const SearchKey& orkey = search.criteria.children[0];
  EXPECT_EQ(orkey.kind, SearchKey::Kind::kOr);
  EXPECT_EQ(orkey.children[0].kind, SearchKey::Kind::kNot);
  EXPECT_EQ(orkey.children[1].kind, SearchKey::Kind::kAnd);
  EXPECT_EQ(orkey.children[1].children[0].text, "a b");
  EXPECT_EQ(orkey.children[1].children[1].kind, SearchKey::Kind::kSequenceSet);

  auto dates = std::get<SearchCommand>(MustParse("t SEARCH SINCE \"1-Feb-2024\" ON 29-Feb-2024\r\n").body);
  EXPECT_EQ(dates.criteria.children[0].date, (Date{2024, 2, 1}));
  EXPECT_EQ(dates.criteria.children[1].date, (Date{2024, 2, 29}));

  auto modseq = std::get<SearchCommand>(
      MustParse("t SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n").body);
  EXPECT_EQ(modseq.criteria.children[0].text, "/flags/\\draft");
  EXPECT_EQ(modseq.criteria.children[0].value, "all");
  EXPECT_EQ(modseq.criteria.children[0].number, 620162338u);

  for (const char* bad : {
           "t SEARCH\r\n", "t SEARCH FOO\r\n", "t SEARCH SINCE 30-Feb-2024\r\n",
           "t SEARCH SINCE 1-Foo-2024\r\n", "t SEARCH OR SEEN\r\n",
           "t SEARCH (SEEN\r\n", "t SEARCH SEEN)\r\n", "t SEARCH ()\r\n",
           "t SEARCH 0\r\n", "t SEARCH UID 0:1\r\n", "t SEARCH HEADER X\r\n",
           "t SEARCH MODSEQ \"/flags/x\" bogus 1\r\n", "t SEARCH LARGER x\r\n",
           "t SEARCH RETURN (BOGUS) ALL\r\n", "t SEARCH CHARSET\r\n",
       }) {
    ParseError(bad);
  }
}

TEST(ParserTest, SortAndThread) {
  auto sort = std::get<SortCommand>(
      MustParse("t UID SORT (REVERSE DATE subject DISPLAYFROM) utf-8 UNSEEN FROM x\r\n").body);
  EXPECT_TRUE(sort.uid);
  ASSERT_EQ(sort.program.size(), 3u);
  EXPECT_EQ(sort.program[0], (SortCriterion{SortCriterion::Key::kDate, true}));
  EXPECT_EQ(sort.program[1], (SortCriterion{SortCriterion::Key::kSubject, false}));
  EXPECT_EQ(sort.program[2], (SortCriterion{SortCriterion::Key::kDisplayFrom, false}));
  EXPECT_EQ(sort.charset, "utf-8");
  EXPECT_EQ(sort.criteria.children.size(), 2u);

  auto thread = std::get<ThreadCommand>(MustParse("t THREAD references US-ASCII ALL\r\n").body);
  EXPECT_FALSE(thread.uid);
  EXPECT_EQ(thread.algorithm, "REFERENCES");
  EXPECT_EQ(thread.charset, "US-ASCII");

  EXPECT_NE(ParseError("t SORT () UTF-8 ALL\r\n").find("empty"), std::string::npos);
  EXPECT_NE(ParseError("t SORT (REVERSE) UTF-8 ALL\r\n").find("REVERSE"), std::string::npos);
  EXPECT_NE(ParseError("t SORT (SENDER) UTF-8 ALL\r\n").find("unknown sort key SENDER"),
            std::string::npos);
  EXPECT_NE(ParseError("t THREAD X-FAST UTF-8 ALL\r\n").find("unknown threading algorithm"),
            std::string::npos);
  for (const char* bad : {
           "t SORT\r\n", "t SORT (DATE)\r\n", "t SORT (DATE) UTF-8\r\n",
           "t SORT DATE UTF-8 ALL\r\n", "t SORT (DATE UTF-8 ALL\r\n",
           "t SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n", "t SORT (DATE  SIZE) UTF-8 ALL\r\n",
           "t SORT (DATE) UTF-8 BOGUS\r\n", "t THREAD\r\n", "t THREAD REFERENCES\r\n",
           "t THREAD REFERENCES UTF-8\r\n", "t UID THREAD (REFERENCES) UTF-8 ALL\r\n",
       }) {
    ParseError(bad);
  }
}

TEST(ParserTest, EsortAndContextReturnOptions) {
  // RFC 5267 §3: SORT takes search return options before its sort criteria.
  auto sort = std::get<SortCommand>(
      MustParse("t UID SORT RETURN (MIN max COUNT ALL) (DATE) UTF-8 ALL\r\n").body);
  ASSERT_TRUE(sort.return_options.has_value());
  EXPECT_TRUE(sort.return_options->min && sort.return_options->max &&
              sort.return_options->count && sort.return_options->all);
  EXPECT_FALSE(sort.return_options->partial.has_value());
  EXPECT_FALSE(std::get<SortCommand>(MustParse("t SORT (DATE) UTF-8 ALL\r\n").body)
                   .return_options.has_value());
  auto empty = std::get<SortCommand>(MustParse("t SORT RETURN () (DATE) UTF-8 ALL\r\n").body);
  EXPECT_EQ(empty.return_options, SearchReturnOptions());

  // RFC 5267 §4.4: PARTIAL m:n; a reversed range is the same range.
  auto partial = std::get<SearchCommand>(
      MustParse("t SEARCH RETURN (PARTIAL 1:100 COUNT UPDATE CONTEXT) ALL\r\n").body);
  ASSERT_TRUE(partial.return_options->partial.has_value());
  EXPECT_EQ(*partial.return_options->partial, (SearchReturnOptions::Range{1, 100}));
  EXPECT_TRUE(partial.return_options->count);
  EXPECT_TRUE(partial.return_options->update);
  EXPECT_TRUE(partial.return_options->context);
  auto reversed = std::get<SortCommand>(
      MustParse("t SORT RETURN (PARTIAL 30:21) (ARRIVAL) UTF-8 ALL\r\n").body);
  EXPECT_EQ(*reversed.return_options->partial, (SearchReturnOptions::Range{21, 30}));

  auto cancel = std::get<CancelUpdateCommand>(MustParse("t CANCELUPDATE \"a1\" \"b 2\"\r\n").body);
  EXPECT_EQ(cancel.tags, (std::vector<std::string>{"a1", "b 2"}));

  EXPECT_NE(ParseError("t SEARCH RETURN (ALL PARTIAL 1:10) ALL\r\n").find("ALL and PARTIAL"),
            std::string::npos);
  EXPECT_NE(ParseError("t SEARCH RETURN (SAVE UPDATE) ALL\r\n").find("UPDATE and SAVE"),
            std::string::npos);
  EXPECT_NE(ParseError("t SEARCH RETURN (PARTIAL -1:-10) ALL\r\n").find("RFC 9394"),
            std::string::npos);
  EXPECT_NE(ParseError("t SORT RETURN (BOGUS) (DATE) UTF-8 ALL\r\n")
                .find("unknown SORT return option BOGUS"),
            std::string::npos);
  for (const char* bad : {
           "t SEARCH RETURN (PARTIAL) ALL\r\n", "t SEARCH RETURN (PARTIAL 0:5) ALL\r\n",
           "t SEARCH RETURN (PARTIAL 1) ALL\r\n", "t SEARCH RETURN (PARTIAL 1:*) ALL\r\n",
           "t SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL\r\n",
           "t SEARCH RETURN (MIN  MAX) ALL\r\n", "t SEARCH RETURN (MIN ALL\r\n",
           "t SORT RETURN (MIN) UTF-8 ALL\r\n", "t SORT RETURN MIN (DATE) UTF-8 ALL\r\n",
           "t CANCELUPDATE\r\n", "t CANCELUPDATE a1\r\n", "t CANCELUPDATE \"a1\" \r\n",
       }) {
    ParseError(bad);
  }
}

TEST(ParserTest, NestingLimitIsExact) {
  Limits limits;
  limits.max_nesting_depth = 5;
  // Depth counts each "(" / NOT / OR, and the key inside the innermost one.
  auto nested = [](int depth) {
    return "t SEARCH " + std::string(depth - 1, '(') + "ALL" + std::string(depth - 1, ')') +
           "\r\n";
  };
  EXPECT_TRUE(ParseCommand(nested(5), limits).ok());
  EXPECT_FALSE(ParseCommand(nested(6), limits).ok());
  std::string nots = "t SEARCH ";
  for (int i = 0; i < 4; ++i) nots += "NOT ";
  EXPECT_TRUE(ParseCommand(nots + "ALL\r\n", limits).ok());
  EXPECT_FALSE(ParseCommand(nots + "NOT ALL\r\n", limits).ok());

  // 1,000-deep parentheses get an error, never a stack overflow.
  EXPECT_NE(ParseError(nested(1000)).find("nesting"), std::string::npos);
  std::string deep_not = "t SEARCH ";
  for (int i = 0; i < 100000; ++i) deep_not += "NOT ";
  ParseError(deep_not + "ALL\r\n");
  ParseError("t FETCH 1 " + std::string(1000, '(') + "FLAGS" + std::string(1000, ')') +
             "\r\n");
}

TEST(ParserTest, TagLimitIsExact) {
  Limits limits;
  limits.max_tag_length = 8;
  EXPECT_TRUE(ParseCommand("12345678 NOOP\r\n", limits).ok());
  EXPECT_NE(ParseError("123456789 NOOP\r\n", limits).find("tag"), std::string::npos);
  EXPECT_EQ(ExtractTag("12345678 NOOP", 8), "12345678");
  EXPECT_EQ(ExtractTag("123456789 NOOP", 8), "");
  EXPECT_EQ(ExtractTag("a+b NOOP", 8), "");
  EXPECT_EQ(ExtractTag("a] NOOP", 8), "a]");
}

TEST(ParserTest, RejectsBadInput) {
  for (const std::string& bad : {
           "a1 LOGIN \"a\0b\" c\r\n"s,        // NUL in quoted
           "a1 LOGIN {3}\r\na\0b c\r\n"s,     // NUL in literal
           "a1 LOGIN ~{1}\r\na c\r\n"s,       // literal8 outside APPEND
           "a1 LOGIN {4294967296}\r\n"s,      // literal size overflow
           "a1 LOGIN {5}\r\nabc\r\n"s,        // truncated literal
           "a1 LOGIN \"abc\r\n"s,             // unterminated quote
           "a1 LOGIN \"a\\b\" c\r\n"s,        // bad escape
           "a1 NOOP\n"s, "a1 NOOP"s, "a1 NOOP \r\n"s, "a1 NOOP x\r\n"s,
           "\r\n"s, " NOOP\r\n"s, "+ NOOP\r\n"s, "a1\r\n"s, "a1 FOO\r\n"s,
           "a1 UID FOO 1\r\n"s, "a1 FETCH 0 FLAGS\r\n"s, "a1 FETCH 1:4294967296 FLAGS\r\n"s,
           "a1 FETCH 1 ()\r\n"s, "a1 FETCH 1 (FLAGS ALL)\r\n"s, "a1 FETCH 1 BODY[MIME]\r\n"s,
           "a1 FETCH 1 BODY[1.FOO]\r\n"s, "a1 FETCH 1 BINARY[HEADER]\r\n"s,
           "a1 FETCH 1 BODY[]<1.0>\r\n"s, "a1 FETCH 1 BINARY.SIZE[1]<0.1>\r\n"s,
           "a1 FETCH 1 BODY.PEEK\r\n"s, "a1 FETCH 1 FLAGS (VANISHED)\r\n"s,
           "a1 STORE 1 FLAGS\r\n"s, "a1 STORE 1 XFLAGS (\\Seen)\r\n"s,
           "a1 STORE 1 FLAGS (\\Seen\r\n"s, "a1 SELECT INBOX ()\r\n"s,
           "a1 SELECT INBOX (QRESYNC)\r\n"s, "a1 STATUS INBOX (FOO)\r\n"s,
           "a1 STATUS INBOX ()\r\n"s, "a1 APPEND INBOX\r\n"s,
           "a1 APPEND INBOX (\\Seen) \"bad date\" {1}\r\nx\r\n"s,
           "a1 APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {1}\r\nx\r\n"s,
           "a1 ID (\"a\")\r\n"s, "a1 ENABLE\r\n"s, "a1 RENAME a\r\n"s,
           "a1 LOGIN a b c\r\n"s, "a1 AUTHENTICATE PLAIN ab!c\r\n"s,
           "a1 COPY 1\r\n"s, "a1 UID EXPUNGE\r\n"s, "a1 LIST \"\"\r\n"s,
           "a1 FETCH 1 (CHANGEDSINCE 1)\r\n"s,
           "a1 UID FETCH 1 (FLAGS) (VANISHED)\r\n"s,
           "a1 UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED VANISHED)\r\n"s,
           "a1 SELECT INBOX (QRESYNC (1 2 1:*))\r\n"s,
           "a1 SELECT INBOX (QRESYNC (0 2))\r\n"s,
           "a1 SELECT INBOX (QRESYNC (1 2 3 (1)))\r\n"s,
           "a1 SELECT INBOX (QRESYNC (1 2) QRESYNC (1 2))\r\n"s,
           "a1 SELECT INBOX (QRESYNC (1 2 $))\r\n"s, "a1 FETCH $1 (FLAGS)\r\n"s,
           "a1 FETCH 1,$ (FLAGS)\r\n"s, "a1 COMPRESS\r\n"s, "a1 COMPRESS \"DEFLATE\"\r\n"s,
           "a1 COMPRESS DEFLATE DEFLATE\r\n"s,
           "a1 STORE 1 (UNCHANGEDSINCE 9223372036854775808) FLAGS ()\r\n"s,
       }) {
    ParseError(bad);
  }
}

// RFC 4469 §5 in the streamed APPEND: steps in order, and malformed input
// refused with a message that says what was expected.
TEST(ParserTest, CatenateSegments) {
  size_t parts = 0;
  Result<AppendSegment> segment = ParseAppendSegment(
      "a APPEND Sent (\\Seen) CATENATE (URL \"/INBOX/;UID=1\" URL /x TEXT {5+}",
      AppendAt::kCommand, true, Limits(), &parts);
  ASSERT_TRUE(segment.ok()) << segment.error().message;
  ASSERT_EQ(segment->steps.size(), 4u);
  const auto& head = std::get<AppendHead>(segment->steps[0]);
  EXPECT_TRUE(head.catenate);
  EXPECT_EQ(head.mailbox, "Sent");
  EXPECT_EQ(head.flags, (std::vector<std::string>{"\\Seen"}));
  EXPECT_EQ(std::get<CatenateUrlPart>(segment->steps[1]).url, "/INBOX/;UID=1");
  EXPECT_EQ(std::get<CatenateUrlPart>(segment->steps[2]).url, "/x");
  EXPECT_EQ(std::get<CatenateTextPart>(segment->steps[3]),
            (CatenateTextPart{5, /*synchronizing=*/false, /*binary=*/false}));
  EXPECT_TRUE(segment->literal);
  EXPECT_EQ(parts, 3u);
  // After the TEXT data: the list closes, and an ordinary message follows.
  segment = ParseAppendSegment(") {3}", AppendAt::kInCatenate, true, Limits(), &parts);
  ASSERT_TRUE(segment.ok()) << segment.error().message;
  ASSERT_EQ(segment->steps.size(), 1u);
  EXPECT_FALSE(std::get<AppendHead>(segment->steps[0]).catenate);
  EXPECT_EQ(std::get<AppendHead>(segment->steps[0]).size, 3u);
  EXPECT_EQ(parts, 0u);

  struct Bad {
    std::string_view text;
    AppendAt at;
    std::string_view says;
  };
  for (const Bad& bad : {
           Bad{"a APPEND S CATENATE ()", AppendAt::kCommand, "expected TEXT or URL"},
           Bad{"a APPEND S CATENATE (URL /x", AppendAt::kCommand, "expected ')' closing"},
           Bad{"a APPEND S CATENATE URL /x)", AppendAt::kCommand, "'(' after CATENATE"},
           Bad{"a APPEND S CATENATE (URL \"/x\") junk", AppendAt::kCommand,
               "a literal or a CATENATE list"},
           Bad{"a APPEND S", AppendAt::kCommand, "a literal or a CATENATE list"},
           Bad{" URL", AppendAt::kInCatenate, "missing arguments"},
           Bad{" BODY /x)", AppendAt::kInCatenate, "expected TEXT or URL"},
           Bad{" TEXT \"abc\")", AppendAt::kInCatenate, "the TEXT literal"},
       }) {
    parts = 0;
    Result<AppendSegment> result = ParseAppendSegment(bad.text, bad.at, false, Limits(), &parts);
    ASSERT_FALSE(result.ok()) << bad.text;
    EXPECT_NE(result.error().message.find(bad.says), std::string::npos)
        << bad.text << " -> " << result.error().message;
  }
  // A URL sent as a literal is refused before its "+".
  parts = 0;
  segment = ParseAppendSegment("a APPEND S CATENATE (URL {5}", AppendAt::kCommand, true,
                               Limits(), &parts);
  ASSERT_FALSE(segment.ok());
  EXPECT_NE(segment.error().message.find("quoted string"), std::string::npos);
  // The part limit, exactly.
  Limits limits;
  limits.max_catenate_parts = 2;
  parts = 0;
  EXPECT_TRUE(ParseAppendSegment("a APPEND S CATENATE (URL /1 URL /2)", AppendAt::kCommand,
                                 false, limits, &parts)
                  .ok());
  parts = 0;
  segment = ParseAppendSegment("a APPEND S CATENATE (URL /1 URL /2 URL /3)", AppendAt::kCommand,
                               false, limits, &parts);
  ASSERT_FALSE(segment.ok());
  EXPECT_EQ(segment.error().code, "LIMIT");
}

TEST(ParserTest, SectionText) {
  Result<Section> section = ParseSectionText("2.HEADER.FIELDS (FROM)");
  ASSERT_TRUE(section.ok()) << section.error().message;
  EXPECT_EQ(section->part, (std::vector<uint32_t>{2}));
  EXPECT_EQ(section->text, Section::Text::kHeaderFields);
  EXPECT_TRUE(ParseSectionText("").ok());
  EXPECT_FALSE(ParseSectionText("1]").ok());
  EXPECT_FALSE(ParseSectionText("BODY").ok());
}

}  // namespace
}  // namespace imap
