// Sessions against the in-memory store over loopback connections: how many
// calls to the mailbox service each command makes, and FETCH answered from
// the worker's cache and the session's flags, kept correct by the change feed.
#include "gateway/session/session.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detached.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "gateway/imap/parser.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/feed_router.h"
#include "gateway/session/fetch_cache.h"
#include "gtest/gtest.h"
#include "storage-client/fake_mailbox_store.h"

namespace gateway {
namespace {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;
using asio::awaitable;
using asio::ip::tcp;

uint64_t Calls(std::string_view family) {
  return ops::GlobalMetrics().family_store_calls[ops::CommandFamilyIndex(family)].load();
}

// An IMAP client on one connection; each call returns the response lines.
class Client {
 public:
  explicit Client(tcp::socket socket) : socket_(std::move(socket)) {}

  awaitable<std::string> ReadLine() {
    size_t n = co_await asio::async_read_until(socket_, asio::dynamic_buffer(buffer_), "\r\n",
                                               asio::use_awaitable);
    std::string line = buffer_.substr(0, n);
    buffer_.erase(0, n);
    co_return line;
  }

  // Sends `text` (a whole command, literals included) and reads up to the
  // tagged response of `tag`.
  awaitable<std::string> Run(std::string tag, std::string text) {
    co_await asio::async_write(socket_, asio::buffer(absl::StrCat(tag, " ", text, "\r\n")),
                               asio::use_awaitable);
    std::string all;
    while (true) {
      std::string line = co_await ReadLine();
      all += line;
      if (line.starts_with(tag + " ")) {
        break;
      }
    }
    co_return all;
  }

  void Close() { socket_.close(); }

 private:
  tcp::socket socket_;
  std::string buffer_;
};

class SessionTest : public ::testing::Test {
 protected:
  SessionTest()
      : router_(store_, io_.get_executor()), cache_(1 << 20), acceptor_(io_) {
    store_.AddUser("alice", "secret");
    options_.allow_plaintext_auth = true;
    worker_.store = &store_;
    worker_.router = &router_;
    worker_.options = &options_;
    worker_.fetch_cache = &cache_;
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
  }

  // A logged-in client whose session runs on this worker.
  awaitable<std::unique_ptr<Client>> Connect() {
    tcp::socket client(io_);
    co_await client.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    tcp::socket server = co_await acceptor_.async_accept(asio::use_awaitable);
    net::ConnectionInfo info;
    info.kind = net::ListenerKind::kStartTls;
    info.client = server.remote_endpoint();
    info.peer = info.client;
    asio::co_spawn(io_, ServeConnection(net::Stream(std::move(server)), info, &worker_),
                   asio::detached);
    auto result = std::make_unique<Client>(std::move(client));
    co_await result->ReadLine();  // greeting
    std::string login = co_await result->Run("l", "LOGIN alice secret");
    EXPECT_TRUE(absl::StrContains(login, "l OK")) << login;
    co_return result;
  }

  awaitable<void> Sleep() {
    asio::steady_timer timer(io_, std::chrono::milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
  }

  // Runs NOOPs until a response line contains `text` (a change-feed event
  // reported); returns everything read.
  awaitable<std::string> NoopUntil(Client& client, std::string text) {
    std::string all;
    for (int i = 0; i < 200 && !absl::StrContains(all, text); ++i) {
      all += co_await client.Run("n", "NOOP");
      co_await Sleep();
    }
    co_return all;
  }

  void RunTest(std::function<awaitable<void>()> body) {
    bool done = false;
    asio::co_spawn(io_, body(), [&](std::exception_ptr error) {
      done = true;
      router_.Close();
      acceptor_.close();
      if (error) {
        std::rethrow_exception(error);
      }
    });
    io_.run();
    EXPECT_TRUE(done);
  }

  asio::io_context io_;
  mailbox::client::FakeMailboxStore store_;
  FeedRouter router_;
  FetchCache cache_;
  SessionOptions options_;
  WorkerContext worker_;
  tcp::acceptor acceptor_;
};

constexpr char kFetch[] = "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])";

awaitable<void> Append(Client& client, std::string text, std::string mailbox = "INBOX") {
  std::string reply = co_await client.Run(
      "a", absl::StrCat("APPEND ", mailbox, " {", text.size(), "+}\r\n", text));
  EXPECT_TRUE(absl::StrContains(reply, "a OK")) << reply;
}

TEST_F(SessionTest, CallsPerCommand) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    std::string message = "Subject: one\r\n\r\nbody\r\n";
    struct Expectation {
      std::string family;
      std::string command;
      uint64_t calls;
    };
    // APPEND first so there is something to fetch.
    uint64_t before = Calls("APPEND");
    co_await Append(*client, message);
    EXPECT_EQ(Calls("APPEND") - before, 1u);
    co_await Append(*client, message);
    const std::vector<Expectation> steps = {
        {"SELECT", "SELECT INBOX", 1},
        {"FETCH", kFetch, 1},             // fills the cache and the session's flags
        {"FETCH", kFetch, 0},             // all from the cache
        {"FETCH", "FETCH 1 (FLAGS)", 0},  // flags from the session's view
        {"STORE", "STORE 1 +FLAGS (\\Deleted)", 1},
        {"FETCH", "FETCH 1:2 (FLAGS RFC822.SIZE)", 0},  // STORE's reply updated the flags
        {"FETCH", "FETCH 1 (BODY[])", 1},  // sets \Seen: a write
        {"SELECT", "SELECT INBOX", 1},     // same mailbox: only Open
        {"FETCH", kFetch, 0},              // the flags survived the re-SELECT
        {"EXPUNGE", "EXPUNGE", 1},
        {"STATUS", "STATUS INBOX (MESSAGES UIDNEXT)", 1},
        {"LIST", "LIST \"\" *", 1},
        {"NOOP", "NOOP", 0},
    };
    for (const Expectation& step : steps) {
      const uint64_t calls = Calls(step.family);
      std::string reply = co_await client->Run("t", step.command);
      EXPECT_TRUE(absl::StrContains(reply, "t OK")) << step.command << ": " << reply;
      EXPECT_EQ(Calls(step.family) - calls, step.calls) << step.command << ": " << reply;
    }
    // A message this session appended: BODY[] and RFC822.SIZE are known from
    // the APPEND itself. Appended to the selected mailbox, it is announced and
    // claimed for \Recent (RFC 3501 §2.3.2): one more call.
    std::string third = "Subject: three\r\n\r\nthird body\r\n";
    const uint64_t appends = Calls("APPEND");
    co_await Append(*client, third);
    EXPECT_EQ(Calls("APPEND") - appends, 2u);
    const uint64_t calls = Calls("FETCH");
    std::string fetched = co_await client->Run("t", "UID FETCH 3 (UID RFC822.SIZE BODY.PEEK[])");
    EXPECT_EQ(Calls("FETCH"), calls) << fetched;
    EXPECT_TRUE(absl::StrContains(
        fetched, absl::StrCat("(UID 3 RFC822.SIZE ", third.size(), " BODY[] {", third.size(),
                              "}\r\n", third, ")")))
        << fetched;
    client->Close();
  });
}

// The command table's needs_store column against what each such command does:
// every command declared without the mailbox service is run here, and none of
// them calls it. A new row without the service must be added to this list.
TEST_F(SessionTest, CommandsDeclaredWithoutTheStoreDoNotCallIt) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    co_await Append(*client, "Subject: one\r\n\r\nbody\r\n");
    // STARTTLS needs a TLS listener (it is tested end to end); the rest run here,
    // in an order that keeps each valid (ENABLE before SELECT, UNSELECT in it).
    const std::vector<std::pair<std::string, std::string>> runs = {
        {"CAPABILITY", "CAPABILITY"}, {"NOOP", "NOOP"},         {"ID", "ID NIL"},
        {"ENABLE", "ENABLE CONDSTORE"}, {"NAMESPACE", "NAMESPACE"}, {"IDLE", "IDLE\r\nDONE"},
        {"SELECT", "SELECT INBOX"},   {"CHECK", "CHECK"},       {"UNSELECT", "UNSELECT"},
        {"LOGOUT", "LOGOUT"},
    };
    std::vector<std::string> exercised = {"STARTTLS"};
    for (const auto& [name, text] : runs) {
      const imap::CommandSpec* spec = imap::FindCommand(name);
      EXPECT_NE(spec, nullptr) << name;
      const uint64_t before = Calls(name);
      std::string reply = co_await client->Run("t", text);
      EXPECT_TRUE(absl::StrContains(reply, "t OK")) << text << ": " << reply;
      if (spec != nullptr && !spec->needs_store) {
        EXPECT_EQ(Calls(name) - before, 0u) << text << ": " << reply;
        exercised.push_back(name);
      }
    }
    for (const imap::CommandSpec& spec : imap::CommandTable()) {
      if (!spec.needs_store) {
        EXPECT_NE(std::find(exercised.begin(), exercised.end(), spec.name), exercised.end())
            << spec.name << " is declared without the store but not exercised here";
      }
    }
    client->Close();
  });
}

TEST_F(SessionTest, CachedFetchMatchesTheServiceAndFollowsOtherSessions) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> a = co_await Connect();
    std::unique_ptr<Client> b = co_await Connect();
    co_await Append(*a, "Subject: one\r\n\r\nfirst\r\n");
    co_await Append(*a, "Subject: two\r\n\r\nsecond\r\n");
    co_await a->Run("s", "SELECT INBOX");
    co_await b->Run("s", "SELECT INBOX");
    const std::string from_service = co_await a->Run("f", kFetch);
    const uint64_t calls = Calls("FETCH");
    const std::string from_cache = co_await a->Run("f", kFetch);
    EXPECT_EQ(Calls("FETCH"), calls);
    EXPECT_EQ(from_cache, from_service);
    EXPECT_TRUE(absl::StrContains(from_cache, "second")) << from_cache;

    // Another session changes a flag: the feed brings it to `a`, whose next
    // FETCH, still without a call, shows it.
    co_await b->Run("t", "STORE 2 +FLAGS (\\Flagged)");
    std::string noop = co_await NoopUntil(*a, "\\Flagged");
    EXPECT_TRUE(absl::StrContains(noop, "* 2 FETCH")) << noop;
    const uint64_t calls2 = Calls("FETCH");
    std::string flagged = co_await a->Run("f", "FETCH 2 (FLAGS)");
    EXPECT_EQ(Calls("FETCH"), calls2);
    EXPECT_TRUE(absl::StrContains(flagged, "\\Flagged")) << flagged;

    // Another session expunges message 1: once `a` was told, it is gone from
    // `a`'s FETCH too.
    co_await b->Run("t", "STORE 1 +FLAGS (\\Deleted)");
    co_await b->Run("x", "EXPUNGE");
    std::string expunge = co_await NoopUntil(*a, "EXPUNGE");
    EXPECT_TRUE(absl::StrContains(expunge, "* 1 EXPUNGE")) << expunge;
    std::string after = co_await a->Run("f", kFetch);
    EXPECT_FALSE(absl::StrContains(after, "first")) << after;
    EXPECT_TRUE(absl::StrContains(after, "* 1 FETCH (UID 2 ")) << after;
    a->Close();
    b->Close();
  });
}

TEST_F(SessionTest, RevisedMessageIsFetchedUnderItsNewUid) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> a = co_await Connect();
    co_await Append(*a, "Subject: v1\r\n\r\nold content\r\n");
    co_await a->Run("s", "SELECT INBOX");
    std::string before = co_await a->Run("f", kFetch);
    EXPECT_TRUE(absl::StrContains(before, "old content")) << before;

    // Revise (another protocol's edit): the old UID is expunged, the new
    // content gets a new UID.
    mailbox::client::Session alice = store_.SessionFor("alice");
    std::unique_ptr<mailbox::client::ReviseStream> revise = store_.Revise(alice);
    const std::string content = "Subject: v2\r\n\r\nnew content\r\n";
    v1::ReviseRequest header;
    header.mutable_header()->set_mailbox("INBOX");
    header.mutable_header()->set_uid(1);
    header.mutable_header()->set_size(content.size());
    EXPECT_TRUE((co_await revise->Write(header)).ok());
    v1::ReviseRequest chunk;
    chunk.set_chunk(content);
    EXPECT_TRUE((co_await revise->Write(chunk)).ok());
    absl::StatusOr<v1::ReviseResponse> revised = co_await revise->Finish();
    EXPECT_TRUE(revised.ok()) << revised.status();
    std::string noop = co_await NoopUntil(*a, "EXPUNGE");
    std::string after = co_await a->Run("f", kFetch);
    EXPECT_TRUE(absl::StrContains(after, "new content")) << noop << after;
    EXPECT_FALSE(absl::StrContains(after, "old content")) << after;
    a->Close();
  });
}

TEST_F(SessionTest, RecreatedMailboxIsNotAnsweredFromTheOldOnesCache) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> a = co_await Connect();
    co_await a->Run("c", "CREATE Box");
    co_await Append(*a, "Subject: old\r\n\r\n", "Box");
    co_await a->Run("s", "SELECT Box");
    std::string before = co_await a->Run("f", kFetch);
    EXPECT_TRUE(absl::StrContains(before, "Subject: old")) << before;
    co_await a->Run("u", "UNSELECT");
    co_await a->Run("d", "DELETE Box");
    co_await a->Run("c", "CREATE Box");  // a new UIDVALIDITY; UID 1 again
    co_await Append(*a, "Subject: new\r\n\r\n", "Box");
    co_await a->Run("s", "SELECT Box");
    std::string after = co_await a->Run("f", kFetch);
    EXPECT_TRUE(absl::StrContains(after, "Subject: new")) << after;
    EXPECT_FALSE(absl::StrContains(after, "Subject: old")) << after;
    a->Close();
  });
}

TEST_F(SessionTest, KnownFlagsStopAtTheirLimit) {
  options_.max_known_flags = 1;
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> a = co_await Connect();
    co_await Append(*a, "Subject: one\r\n\r\n1\r\n");
    co_await Append(*a, "Subject: two\r\n\r\n2\r\n");
    co_await a->Run("s", "SELECT INBOX");
    co_await a->Run("f", kFetch);
    // One message's flags are kept, so one of the two still needs the service.
    const uint64_t calls = Calls("FETCH");
    std::string again = co_await a->Run("f", kFetch);
    EXPECT_EQ(Calls("FETCH") - calls, 1u);
    EXPECT_TRUE(absl::StrContains(again, "UID 1 ")) << again;
    EXPECT_TRUE(absl::StrContains(again, "UID 2 ")) << again;
    a->Close();
  });
}

// RFC 3501 §2.3.2, §7.3.2: a message that arrives while two sessions have the
// mailbox selected is \Recent in exactly one, which says so with RECENT.
TEST_F(SessionTest, AnArrivalIsRecentInExactlyOneSession) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> a = co_await Connect();
    std::unique_ptr<Client> b = co_await Connect();
    std::unique_ptr<Client> writer = co_await Connect();
    co_await a->Run("s", "SELECT INBOX");
    co_await b->Run("s", "SELECT INBOX");
    co_await Append(*writer, "Subject: new\r\n\r\nnew\r\n");
    std::string seen_a = co_await NoopUntil(*a, "* 1 EXISTS");
    std::string seen_b = co_await NoopUntil(*b, "* 1 EXISTS");
    const bool a_has = absl::StrContains(seen_a, "* 1 RECENT");
    const bool b_has = absl::StrContains(seen_b, "* 1 RECENT");
    EXPECT_NE(a_has, b_has) << seen_a << seen_b;
    EXPECT_TRUE(absl::StrContains(a_has ? seen_b : seen_a, "* 0 RECENT"));
    std::string flags = co_await (a_has ? a : b)->Run("f", "FETCH 1 (FLAGS)");
    EXPECT_TRUE(absl::StrContains(flags, "\\Recent")) << flags;
    std::string status = co_await writer->Run("t", "STATUS INBOX (RECENT)");
    EXPECT_TRUE(absl::StrContains(status, "RECENT 0")) << status;
    a->Close();
    b->Close();
    writer->Close();
  });
}

// RFC 9051 after ENABLE IMAP4rev2: SELECT sends the mailbox's LIST and no
// RECENT or [UNSEEN], takes no \Recent (an RFC 3501 session still gets it), and
// SEARCH answers with ESEARCH.
TEST_F(SessionTest, Imap4rev2SessionFollowsRfc9051) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> rev2 = co_await Connect();
    std::unique_ptr<Client> rev1 = co_await Connect();
    co_await Append(*rev1, "Subject: 1\r\n\r\nbody\r\n");
    co_await Append(*rev1, "Subject: 2\r\n\r\nbody\r\n");
    std::string enabled = co_await rev2->Run("e", "ENABLE IMAP4rev2");
    EXPECT_TRUE(absl::StrContains(enabled, "* ENABLED IMAP4rev2\r\n")) << enabled;
    std::string selected = co_await rev2->Run("s", "SELECT INBOX");
    EXPECT_TRUE(absl::StrContains(selected, "* LIST (")) << selected;
    EXPECT_TRUE(absl::StrContains(selected, ") \"/\" INBOX\r\n")) << selected;
    EXPECT_FALSE(absl::StrContains(selected, "RECENT")) << selected;
    EXPECT_FALSE(absl::StrContains(selected, "UNSEEN")) << selected;
    std::string flags = co_await rev2->Run("f", "FETCH 1:2 (FLAGS)");
    EXPECT_FALSE(absl::StrContains(flags, "\\Recent")) << flags;
    std::string found = co_await rev2->Run("q", "SEARCH ALL");
    EXPECT_TRUE(absl::StrContains(found, "* ESEARCH (TAG \"q\") ALL 1:2\r\n")) << found;
    std::string old = co_await rev1->Run("s", "SELECT INBOX");
    EXPECT_TRUE(absl::StrContains(old, "* 2 RECENT\r\n")) << old;
    rev2->Close();
    rev1->Close();
  });
}

// RFC 7162 §3.2.5.1: a QRESYNC select reports what was expunged since the
// client's MODSEQ, then the flags changed since, with UID and MODSEQ; once
// enabled, expunges come as VANISHED.
TEST_F(SessionTest, QresyncSelectReportsVanishedThenChangedFlags) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    std::unique_ptr<Client> writer = co_await Connect();
    for (int i = 0; i < 3; ++i) {
      co_await Append(*writer, absl::StrCat("Subject: ", i, "\r\n\r\nbody\r\n"));
    }
    std::string enabled = co_await client->Run("e", "ENABLE QRESYNC");
    EXPECT_TRUE(absl::StrContains(enabled, "* ENABLED QRESYNC")) << enabled;
    std::string selected = co_await client->Run("s", "SELECT INBOX");
    const size_t at = selected.find("HIGHESTMODSEQ ");
    EXPECT_NE(at, std::string::npos) << selected;
    if (at == std::string::npos) {
      co_return;
    }
    const std::string modseq = selected.substr(at + 14, selected.find(']', at) - at - 14);
    const size_t v = selected.find("UIDVALIDITY ");
    const std::string validity = selected.substr(v + 12, selected.find(']', v) - v - 12);
    co_await client->Run("u", "UNSELECT");
    co_await writer->Run("s", "SELECT INBOX");
    co_await writer->Run("t", "STORE 1 +FLAGS.SILENT (\\Seen)");
    co_await writer->Run("t", "STORE 2 +FLAGS.SILENT (\\Deleted)");
    co_await writer->Run("x", "EXPUNGE");
    std::string resync = co_await client->Run(
        "q", absl::StrCat("SELECT INBOX (QRESYNC (", validity, " ", modseq, "))"));
    const size_t vanished = resync.find("* VANISHED (EARLIER) 2\r\n");
    const size_t fetch = resync.find("* 1 FETCH (FLAGS (\\Seen) UID 1 MODSEQ (");
    EXPECT_NE(vanished, std::string::npos) << resync;
    EXPECT_NE(fetch, std::string::npos) << resync;
    EXPECT_LT(vanished, fetch) << resync;
    EXPECT_FALSE(absl::StrContains(resync, "UID 3")) << resync;  // unchanged
    co_await writer->Run("t", "UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    co_await writer->Run("x", "EXPUNGE");
    std::string told = co_await NoopUntil(*client, "* VANISHED 3");
    EXPECT_FALSE(absl::StrContains(told, " EXPUNGE")) << told;
    client->Close();
    writer->Close();
  });
}

}  // namespace
}  // namespace gateway
