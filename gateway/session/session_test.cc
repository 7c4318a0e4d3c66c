// Sessions against the in-memory store over loopback connections: how many
// calls to the mailbox service each command makes, and FETCH answered from
// the worker's cache and the session's flags, kept correct by the change feed.
#include "gateway/session/session.h"

#include <algorithm>
#include <zlib.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
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

// An IMAP client on one connection; each call returns the response lines. After
// StartCompression() it speaks COMPRESS=DEFLATE (RFC 4978) as a client would:
// raw deflate with a 32 KiB window, a sync flush after each command.
class Client {
 public:
  explicit Client(tcp::socket socket) : socket_(std::move(socket)) {}
  ~Client() {
    if (compressed_) {
      deflateEnd(&deflate_);
      inflateEnd(&inflate_);
    }
  }

  awaitable<std::string> ReadLine() {
    size_t n = buffer_.find("\r\n");
    while (n == std::string::npos) {
      char raw[4096];
      size_t got = co_await socket_.async_read_some(asio::buffer(raw), asio::use_awaitable);
      Received(std::string_view(raw, got));
      n = buffer_.find("\r\n");
    }
    std::string line = buffer_.substr(0, n + 2);
    buffer_.erase(0, n + 2);
    co_return line;
  }

  // Sends octets as they are, or compressed once compression is on.
  awaitable<void> Send(std::string_view text) {
    std::string wire = compressed_ ? Compress(text, Z_SYNC_FLUSH) : std::string(text);
    co_await asio::async_write(socket_, asio::buffer(wire), asio::use_awaitable);
  }
  // Sends octets on the socket, never compressed (corrupt input for the server).
  awaitable<void> SendRaw(std::string_view wire) {
    co_await asio::async_write(socket_, asio::buffer(wire.data(), wire.size()),
                               asio::use_awaitable);
  }

  // After the tagged OK of COMPRESS: both directions are compressed from here.
  void StartCompression() {
    ASSERT_EQ(deflateInit2(&deflate_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                           Z_DEFAULT_STRATEGY),
              Z_OK);
    ASSERT_EQ(inflateInit2(&inflate_, -15), Z_OK);
    compressed_ = true;
    std::string rest = std::move(buffer_);  // what came after the OK is compressed
    buffer_.clear();
    Received(rest);
  }

  // Compresses `text` with `flush` (as deflate() takes it).
  std::string Compress(std::string_view text, int flush) {
    std::string wire;
    deflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    deflate_.avail_in = static_cast<uInt>(text.size());
    do {
      char out[16384];
      deflate_.next_out = reinterpret_cast<Bytef*>(out);
      deflate_.avail_out = sizeof(out);
      deflate(&deflate_, flush);
      wire.append(out, sizeof(out) - deflate_.avail_out);
    } while (deflate_.avail_out == 0);
    return wire;
  }

  // Reads until the server closes the connection; true if it did within a few
  // seconds (the octets read are dropped).
  awaitable<bool> WaitClosed() {
    asio::steady_timer limit(socket_.get_executor(), std::chrono::seconds(10));
    limit.async_wait([this](boost::system::error_code ec) {
      if (!ec) {
        socket_.close();
      }
    });
    for (;;) {
      char raw[4096];
      auto [ec, n] = co_await socket_.async_read_some(
          asio::buffer(raw), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        const bool closed = ec != asio::error::operation_aborted;
        limit.cancel();
        co_return closed;
      }
    }
  }

  // Sends `text` (a whole command, literals included) and reads up to the
  // tagged response of `tag`.
  awaitable<std::string> Run(std::string tag, std::string text) {
    co_await Send(absl::StrCat(tag, " ", text, "\r\n"));
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
  void Received(std::string_view raw) {
    if (!compressed_) {
      buffer_.append(raw);
      return;
    }
    inflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
    inflate_.avail_in = static_cast<uInt>(raw.size());
    do {
      char out[16384];
      inflate_.next_out = reinterpret_cast<Bytef*>(out);
      inflate_.avail_out = sizeof(out);
      int r = inflate(&inflate_, Z_SYNC_FLUSH);
      EXPECT_TRUE(r == Z_OK || r == Z_BUF_ERROR) << r;
      buffer_.append(out, sizeof(out) - inflate_.avail_out);
    } while (inflate_.avail_out == 0 || inflate_.avail_in > 0);
  }

  tcp::socket socket_;
  std::string buffer_;
  bool compressed_ = false;
  z_stream deflate_{};
  z_stream inflate_{};
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

  // A client whose session runs on this worker, before its greeting is read.
  awaitable<std::unique_ptr<Client>> Open() {
    tcp::socket client(io_);
    co_await client.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    tcp::socket server = co_await acceptor_.async_accept(asio::use_awaitable);
    net::ConnectionInfo info;
    info.kind = net::ListenerKind::kStartTls;
    info.client = server.remote_endpoint();
    info.peer = info.client;
    asio::co_spawn(io_, ServeConnection(net::Stream(std::move(server)), info, &worker_),
                   asio::detached);
    co_return std::make_unique<Client>(std::move(client));
  }

  // A logged-in client whose session runs on this worker.
  awaitable<std::unique_ptr<Client>> Connect() {
    auto result = co_await Open();
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
        {"SELECT", "SELECT INBOX"},   {"CHECK", "CHECK"},
        {"SEARCH", "SEARCH RETURN (UPDATE) ALL"}, {"CANCELUPDATE", "CANCELUPDATE \"t\""},
        {"UNSELECT", "UNSELECT"},
        {"COMPRESS", "COMPRESS DEFLATE"}, {"SETQUOTA", "SETQUOTA \"\" (STORAGE 10)"},
        {"LOGOUT", "LOGOUT"},
    };
    std::vector<std::string> exercised = {"STARTTLS"};
    for (const auto& [name, text] : runs) {
      const imap::CommandSpec* spec = imap::FindCommand(name);
      EXPECT_NE(spec, nullptr) << name;
      const uint64_t before = Calls(name);
      std::string reply = co_await client->Run("t", text);
      // SETQUOTA is refused (limits are the operator's), without asking the store.
      EXPECT_TRUE(absl::StrContains(reply, name == "SETQUOTA" ? "t NO [NOPERM]" : "t OK"))
          << text << ": " << reply;
      if (name == "COMPRESS") {
        client->StartCompression();  // the rest runs compressed
      }
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

// RFC 4469: a CATENATE message is assembled from TEXT literals and URLs of the
// user's messages, read without setting \Seen; a bad URL stores nothing.
TEST_F(SessionTest, CatenateAssemblesTextAndUrlParts) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    co_await Append(*client, "Subject: a\r\n\r\nbody\r\n");
    std::string built = co_await client->Run(
        "c", "APPEND INBOX (\\Draft) CATENATE (TEXT {6+}\r\nX: 1\r\n URL \"/INBOX/;UID=1\")");
    EXPECT_TRUE(absl::StrContains(built, "c OK [APPENDUID ")) << built;
    std::string bad = co_await client->Run(
        "d", "APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\" URL \"/INBOX/;UID=9\")");
    EXPECT_TRUE(absl::StrContains(bad, "d NO [BADURL /INBOX/;UID=9] ")) << bad;
    co_await client->Run("s", "SELECT INBOX");
    std::string fetched = co_await client->Run("f", "UID FETCH 1:* (FLAGS BODY.PEEK[])");
    EXPECT_TRUE(absl::StrContains(fetched, "X: 1\r\nSubject: a\r\n\r\nbody\r\n")) << fetched;
    EXPECT_FALSE(absl::StrContains(fetched, "\\Seen")) << fetched;
    EXPECT_TRUE(absl::StrContains(fetched, "* 2 FETCH")) << fetched;
    EXPECT_FALSE(absl::StrContains(fetched, "* 3 FETCH")) << fetched;
    client->Close();
  });
}

// RFC 5256: SORT answers in the store's order, as sequence numbers of the
// session's view or as UIDs; a store that cannot answer is a tagged NO, never a
// broken session.
TEST_F(SessionTest, SortAnswersInTheStoresOrderAndThreadFailuresAreTagged) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    co_await Append(*client, "Subject: a\r\n\r\nthe longest of the three\r\n");
    co_await Append(*client, "Subject: b\r\n\r\nshort\r\n");
    co_await Append(*client, "Subject: c\r\n\r\nmiddle one\r\n");
    co_await client->Run("s", "SELECT INBOX");
    std::string sorted = co_await client->Run("a", "UID SORT (REVERSE SIZE) UTF-8 ALL");
    EXPECT_TRUE(absl::StrContains(sorted, "* SORT 1 3 2\r\na OK")) << sorted;
    co_await client->Run("d", "UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    co_await client->Run("e", "EXPUNGE");
    sorted = co_await client->Run("b", "SORT (SIZE) UTF-8 ALL");
    EXPECT_TRUE(absl::StrContains(sorted, "* SORT 1 2\r\nb OK")) << sorted;
    sorted = co_await client->Run("c", "UID SORT (SIZE) UTF-8 NOT ALL");
    EXPECT_TRUE(absl::StrContains(sorted, "* SORT\r\nc OK")) << sorted;
    std::string refused = co_await client->Run("t", "THREAD REFERENCES UTF-8 ALL");
    EXPECT_TRUE(absl::StrContains(refused, "t NO ")) << refused;
    EXPECT_FALSE(absl::StrContains(refused, "* THREAD")) << refused;
    std::string alive = co_await client->Run("n", "NOOP");
    EXPECT_TRUE(absl::StrContains(alive, "n OK")) << alive;
    client->Close();
  });
}

// RFC 5267 §3, §4.3: ESORT answers in the store's order; a live result follows
// another session's expunge and arrival, also when a command by sequence number
// (FETCH) holds the EXPUNGE and the arrival behind it back.
TEST_F(SessionTest, LiveResultFollowsChangesHeldBehindAnExpunge) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    std::unique_ptr<Client> writer = co_await Connect();
    co_await Append(*writer, "Subject: a\r\n\r\nthe longest of them\r\n");
    co_await Append(*writer, "Subject: b\r\n\r\nshort\r\n");
    co_await client->Run("s", "SELECT INBOX");
    co_await writer->Run("s", "SELECT INBOX");
    std::string sorted =
        co_await client->Run("l", "UID SORT RETURN (UPDATE MIN COUNT) (SIZE) UTF-8 ALL");
    EXPECT_TRUE(absl::StrContains(sorted, "* ESEARCH (TAG \"l\") UID MIN 2 COUNT 2\r\nl OK"))
        << sorted;
    co_await writer->Run("d", "UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    co_await writer->Run("e", "EXPUNGE");
    co_await Append(*writer, "Subject: c\r\n\r\nmiddle size\r\n");
    for (int i = 0; i < 10; ++i) {
      co_await Sleep();  // lets the feed deliver the changes
    }
    std::string all = co_await client->Run("f", "FETCH 1 (UID)");
    EXPECT_FALSE(absl::StrContains(all, "EXPUNGE")) << all;
    all += co_await NoopUntil(*client, "ADDTO");
    EXPECT_TRUE(absl::StrContains(all, "* 1 EXPUNGE")) << all;
    EXPECT_TRUE(absl::StrContains(all, "* ESEARCH (TAG \"l\") UID REMOVEFROM (2 1)")) << all;
    EXPECT_TRUE(absl::StrContains(all, "* ESEARCH (TAG \"l\") UID ADDTO (2 3)")) << all;
    std::string cancelled = co_await client->Run("c", "CANCELUPDATE \"l\"");
    EXPECT_TRUE(absl::StrContains(cancelled, "c OK")) << cancelled;
    client->Close();
    writer->Close();
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

// RFC 4978: COMPRESS DEFLATE, then every command and response compressed:
// APPEND with both kinds of literal, SELECT, FETCH, IDLE with an update written
// while the session waits for DONE, a second COMPRESS, CAPABILITY.
TEST_F(SessionTest, CompressDeflateCarriesTheWholeProtocol) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> client = co_await Connect();
    std::unique_ptr<Client> other = co_await Connect();
    std::string caps = co_await client->Run("c", "CAPABILITY");
    EXPECT_TRUE(absl::StrContains(caps, " COMPRESS=DEFLATE")) << caps;
    const int64_t compressed_before = ops::GlobalMetrics().sessions_compressed.load();
    std::string ok = co_await client->Run("z", "COMPRESS DEFLATE");
    EXPECT_EQ(ok, "z OK DEFLATE active\r\n");
    client->StartCompression();
    EXPECT_EQ(ops::GlobalMetrics().sessions_compressed.load(), compressed_before + 1);

    std::string body(20000, 'x');
    for (size_t i = 0; i < body.size(); i += 100) {
      body.replace(i, 2, "\r\n");
    }
    const std::string message = "Subject: compressed\r\n\r\n" + body;
    std::string appended = co_await client->Run(
        "a", absl::StrCat("APPEND INBOX {", message.size(), "+}\r\n", message));
    EXPECT_TRUE(absl::StrContains(appended, "a OK")) << appended;
    std::string sync = co_await client->Run(
        "b", absl::StrCat("APPEND INBOX (\\Seen) {", message.size(), "}\r\n", message));
    EXPECT_TRUE(absl::StrContains(sync, "+ Ready for literal data")) << sync;
    EXPECT_TRUE(absl::StrContains(sync, "b OK")) << sync;
    std::string selected = co_await client->Run("s", "SELECT INBOX");
    EXPECT_TRUE(absl::StrContains(selected, "* 2 EXISTS")) << selected;
    std::string fetched = co_await client->Run("f", "FETCH 2 (FLAGS BODY.PEEK[])");
    EXPECT_TRUE(absl::StrContains(fetched, absl::StrCat("{", message.size(), "}\r\n", message)))
        << fetched.substr(0, 300);
    EXPECT_TRUE(absl::StrContains(fetched, "f OK")) << fetched.substr(0, 300);

    std::string again = co_await client->Run("z2", "COMPRESS DEFLATE");
    EXPECT_TRUE(absl::StartsWith(again, "z2 NO [COMPRESSIONACTIVE]")) << again;
    caps = co_await client->Run("c", "CAPABILITY");
    EXPECT_FALSE(absl::StrContains(caps, "COMPRESS=DEFLATE")) << caps;
    EXPECT_TRUE(absl::StrContains(caps, "c OK")) << caps;

    co_await client->Send("i IDLE\r\n");
    std::string idling = co_await client->ReadLine();
    EXPECT_EQ(idling, "+ idling\r\n");
    co_await Append(*other, "Subject: while idle\r\n\r\nhello\r\n");
    std::string update = co_await client->ReadLine();
    EXPECT_EQ(update, "* 3 EXISTS\r\n");
    co_await client->Send("DONE\r\n");
    std::string done;
    while (!absl::StrContains(done, "i OK")) {
      done += co_await client->ReadLine();
    }
    std::string noop = co_await client->Run("n", "NOOP");
    EXPECT_TRUE(absl::StrContains(noop, "n OK")) << noop;
    std::string logout = co_await client->Run("o", "LOGOUT");
    EXPECT_TRUE(absl::StrContains(logout, "* BYE")) << logout;
    EXPECT_TRUE(absl::StrContains(logout, "o OK")) << logout;
    EXPECT_TRUE(co_await client->WaitClosed());
    other->Close();
  });
}

// The drain (ops/drain.h): sessions waiting for a command or in IDLE end at once
// with BYE [UNAVAILABLE]; one in the middle of an APPEND finishes it (the message
// is stored and acknowledged) and then ends; one that starts afterwards ends right
// after its greeting.
TEST_F(SessionTest, ADrainEndsSessionsAtTheirNextSafePoint) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> waiting = co_await Connect();
    std::unique_ptr<Client> idle = co_await Connect();
    std::string selected = co_await idle->Run("s", "SELECT INBOX");
    EXPECT_TRUE(absl::StrContains(selected, "s OK")) << selected;
    co_await idle->Send("i IDLE\r\n");
    EXPECT_EQ(co_await idle->ReadLine(), "+ idling\r\n");
    std::unique_ptr<Client> appender = co_await Connect();
    const std::string message = "Subject: in flight\r\n\r\nhello\r\n";
    co_await appender->Send(absl::StrCat("a APPEND INBOX {", message.size(), "+}\r\n",
                                         message.substr(0, 10)));
    co_await Sleep();

    DrainSessions(worker_);
    std::string bye = co_await waiting->ReadLine();
    EXPECT_EQ(bye, "* BYE [UNAVAILABLE] This gateway is shutting down; please reconnect\r\n");
    EXPECT_TRUE(co_await waiting->WaitClosed());
    std::string idle_bye = co_await idle->ReadLine();
    EXPECT_TRUE(absl::StartsWith(idle_bye, "* BYE [UNAVAILABLE]")) << idle_bye;
    EXPECT_TRUE(co_await idle->WaitClosed());

    // The APPEND goes on: its literal arrives after the drain started.
    co_await appender->Send(absl::StrCat(message.substr(10), "\r\n"));
    std::string appended;
    while (!absl::StrContains(appended, "a ")) {
      appended += co_await appender->ReadLine();
    }
    EXPECT_TRUE(absl::StrContains(appended, "a OK [APPENDUID")) << appended;
    std::string after = co_await appender->ReadLine();
    EXPECT_TRUE(absl::StartsWith(after, "* BYE [UNAVAILABLE]")) << after;
    EXPECT_TRUE(co_await appender->WaitClosed());

    // A session that starts on the drained worker ends after its greeting.
    std::unique_ptr<Client> late = co_await Open();
    std::string greeting = co_await late->ReadLine();
    EXPECT_TRUE(absl::StartsWith(greeting, "* OK")) << greeting;
    std::string late_bye = co_await late->ReadLine();
    EXPECT_TRUE(absl::StartsWith(late_bye, "* BYE [UNAVAILABLE]")) << late_bye;
    EXPECT_TRUE(co_await late->WaitClosed());
    // The APPEND was stored (seen from a session that is not drained).
    worker_.draining = false;
    std::unique_ptr<Client> reader = co_await Connect();
    std::string fetched = co_await reader->Run("s", "SELECT INBOX");
    EXPECT_TRUE(absl::StrContains(fetched, "* 1 EXISTS")) << fetched;
    reader->Close();
  });
}

TEST_F(SessionTest, CompressIsRefusedWhereItCannotRun) {
  RunTest([&]() -> awaitable<void> {
    // Before authentication (RFC 4978 §3: authenticated and selected states).
    tcp::socket socket(io_);
    co_await socket.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    tcp::socket server = co_await acceptor_.async_accept(asio::use_awaitable);
    net::ConnectionInfo info;
    info.kind = net::ListenerKind::kStartTls;
    info.client = server.remote_endpoint();
    info.peer = info.client;
    asio::co_spawn(io_, ServeConnection(net::Stream(std::move(server)), info, &worker_),
                   asio::detached);
    Client anonymous(std::move(socket));
    co_await anonymous.ReadLine();
    std::string early = co_await anonymous.Run("z", "COMPRESS DEFLATE");
    EXPECT_EQ(early, "z BAD COMPRESS is not allowed before LOGIN or AUTHENTICATE\r\n");
    anonymous.Close();

    std::unique_ptr<Client> client = co_await Connect();
    std::string unknown = co_await client->Run("z", "COMPRESS GZIP");
    EXPECT_EQ(unknown,
              "z BAD Unknown compression algorithm GZIP: this server offers COMPRESS DEFLATE\r\n");
    std::string missing = co_await client->Run("z", "COMPRESS");
    EXPECT_TRUE(absl::StartsWith(missing, "z BAD")) << missing;
    // Pipelined after COMPRESS: refused, and what followed is read as it came.
    std::string pipelined = co_await client->Run("z", "COMPRESS DEFLATE\r\nn NOOP");
    EXPECT_TRUE(absl::StrContains(pipelined, "z BAD COMPRESS must be the last")) << pipelined;
    std::string after = co_await client->ReadLine();
    EXPECT_EQ(after, "n OK NOOP completed\r\n");

    options_.max_compressed_connections = 0;
    std::string caps = co_await client->Run("c", "CAPABILITY");
    EXPECT_FALSE(absl::StrContains(caps, "COMPRESS")) << caps;
    std::string disabled = co_await client->Run("z", "COMPRESS DEFLATE");
    EXPECT_TRUE(absl::StartsWith(disabled, "z NO [CANNOT]")) << disabled;
    client->Close();
  });
}

// Bearer tokens only over TLS: even with --oauth and --allow-plaintext-auth, a
// plaintext connection is not offered them and is refused them before sending one.
TEST_F(SessionTest, BearerMechanismsNeedTls) {
  RunTest([&]() -> awaitable<void> {
    options_.oauth = true;
    tcp::socket socket(io_);
    co_await socket.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    tcp::socket server = co_await acceptor_.async_accept(asio::use_awaitable);
    net::ConnectionInfo info;
    info.kind = net::ListenerKind::kStartTls;
    info.client = server.remote_endpoint();
    info.peer = info.client;
    asio::co_spawn(io_, ServeConnection(net::Stream(std::move(server)), info, &worker_),
                   asio::detached);
    Client client(std::move(socket));
    co_await client.ReadLine();
    std::string caps = co_await client.Run("c", "CAPABILITY");
    EXPECT_TRUE(absl::StrContains(caps, "AUTH=PLAIN")) << caps;
    EXPECT_FALSE(absl::StrContains(caps, "OAUTHBEARER")) << caps;
    EXPECT_FALSE(absl::StrContains(caps, "XOAUTH2")) << caps;
    for (const char* mechanism : {"OAUTHBEARER", "XOAUTH2"}) {
      std::string refused = co_await client.Run("a", absl::StrCat("AUTHENTICATE ", mechanism));
      EXPECT_TRUE(absl::StartsWith(refused, "a NO [PRIVACYREQUIRED]")) << refused;
    }
    // Without --oauth the mechanisms are unknown.
    options_.oauth = false;
    std::string unknown = co_await client.Run("a", "AUTHENTICATE OAUTHBEARER");
    EXPECT_EQ(unknown,
              "a NO [CANNOT] Unsupported authentication mechanism OAUTHBEARER; this server "
              "offers PLAIN, SCRAM-SHA-256\r\n");
    client.Close();
  });
}

// --max-compressed-connections: at the bound COMPRESS gets NO [LIMIT] and the
// session goes on uncompressed; a slot comes back when its session ends.
TEST_F(SessionTest, CompressedConnectionsAreBounded) {
  RunTest([&]() -> awaitable<void> {
    const int64_t base = ops::GlobalMetrics().sessions_compressed.load();
    options_.max_compressed_connections = static_cast<size_t>(base) + 2;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 2; ++i) {
      clients.push_back(co_await Connect());
      std::string ok = co_await clients.back()->Run("z", "COMPRESS DEFLATE");
      EXPECT_EQ(ok, "z OK DEFLATE active\r\n");
      clients.back()->StartCompression();
    }
    std::unique_ptr<Client> third = co_await Connect();
    const uint64_t refused = ops::GlobalMetrics().compress_refused_limit.load();
    std::string no = co_await third->Run("z", "COMPRESS DEFLATE");
    EXPECT_TRUE(absl::StartsWith(no, "z NO [LIMIT] Too many compressed connections")) << no;
    EXPECT_EQ(ops::GlobalMetrics().compress_refused_limit.load(), refused + 1);
    std::string plain = co_await third->Run("n", "NOOP");  // still uncompressed
    EXPECT_EQ(plain, "n OK NOOP completed\r\n");

    std::string bye = co_await clients[0]->Run("o", "LOGOUT");
    EXPECT_TRUE(absl::StrContains(bye, "o OK")) << bye;
    EXPECT_TRUE(co_await clients[0]->WaitClosed());
    for (int i = 0; i < 200 && ops::GlobalMetrics().sessions_compressed.load() > base + 1; ++i) {
      co_await Sleep();
    }
    std::string ok = co_await third->Run("z", "COMPRESS DEFLATE");
    EXPECT_EQ(ok, "z OK DEFLATE active\r\n");
    third->StartCompression();
    std::string noop = co_await third->Run("n", "NOOP");
    EXPECT_EQ(noop, "n OK NOOP completed\r\n");
    clients[1]->Close();
    third->Close();
  });
}

// Invalid DEFLATE from the client ends its connection (logged, no BYE); a flood
// that expands too far is cut off the same way; other sessions go on.
TEST_F(SessionTest, CorruptOrExplodingCompressedInputEndsTheConnection) {
  RunTest([&]() -> awaitable<void> {
    std::unique_ptr<Client> bystander = co_await Connect();
    const uint64_t errors = ops::GlobalMetrics().compress_input_errors.load();

    std::unique_ptr<Client> corrupt = co_await Connect();
    co_await corrupt->Run("z", "COMPRESS DEFLATE");
    corrupt->StartCompression();
    std::string noop = co_await corrupt->Run("n", "NOOP");
    EXPECT_EQ(noop, "n OK NOOP completed\r\n");
    co_await corrupt->SendRaw(std::string("\x07garbage\r\n", 10));  // reserved block type
    EXPECT_TRUE(co_await corrupt->WaitClosed());

    std::unique_ptr<Client> bomb = co_await Connect();
    co_await bomb->Run("z", "COMPRESS DEFLATE");
    bomb->StartCompression();
    // One endless command line: 64 MiB of it compress to about 64 KiB.
    std::string flood = bomb->Compress("x FLOOD ", Z_NO_FLUSH);
    const std::string chunk(1 << 20, 'a');
    for (int i = 0; i < 64; ++i) {
      flood += bomb->Compress(chunk, Z_NO_FLUSH);
    }
    flood += bomb->Compress("", Z_SYNC_FLUSH);
    EXPECT_LT(flood.size(), 256u << 10);
    co_await bomb->SendRaw(flood);
    EXPECT_TRUE(co_await bomb->WaitClosed());
    EXPECT_EQ(ops::GlobalMetrics().compress_input_errors.load(), errors + 2);

    std::string alive = co_await bystander->Run("n", "NOOP");
    EXPECT_EQ(alive, "n OK NOOP completed\r\n");
    bystander->Close();
  });
}

}  // namespace
}  // namespace gateway
