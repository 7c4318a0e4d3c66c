// The real mailbox-service binary driven through storage-client, as the gateway
// will drive it: mailboxes, append and fetch (every item and section of a corpus of
// tricky MIME messages, and a 50 MB message with bounded client memory), store,
// copy, move, expunge, search with every key, revise and the change feed.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include "absl/strings/str_cat.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "mailbox-service/mime/mime.h"
#include "proto/mailbox/v1/errors.h"
#include "storage-client/grpc_mailbox_store.h"
#include "tests/integration/raw_api.h"
#include "tests/integration/service_process.h"

namespace mailbox::testing {
namespace {

namespace asio = boost::asio;
using client::Session;

// Runs one coroutine to completion on `io`.
template <typename T>
T RunTask(asio::io_context& io, asio::awaitable<T> task) {
  std::optional<T> result;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr error, T value) {
    if (error) {
      std::rethrow_exception(error);
    }
    result.emplace(std::move(value));
  });
  // Run only until this task is done: a change feed keeps other work (reads,
  // reconnect timers) pending on the same context.
  io.restart();
  while (!result.has_value() && io.run_one() > 0) {
  }
  return std::move(*result);
}

uint64_t PeakRssKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stoull(line.substr(6));
    }
  }
  return 0;
}

v1::SearchKey Key() { return v1::SearchKey(); }

class StoreClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service_ = std::make_unique<ServiceProcess>(
        TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    ASSERT_TRUE(service_->Start().ok());
    ASSERT_TRUE(service_->CreateUser("alice", "pw").ok());
    client::GrpcMailboxStoreOptions options;
    options.target = service_->target();
    auto store = client::GrpcMailboxStore::Create(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    v1::AuthenticateRequest login;
    login.set_mechanism(v1::PASSWORD);
    login.set_username("alice");
    login.set_password("pw");
    login.set_client_ip("127.0.0.1");
    auto auth = RunTask(io_, store_->Authenticate(login));
    ASSERT_TRUE(auth.ok()) << auth.status();
    session_.token = auth->session_token();
  }

  // RunTask returns as soon as its task is done, so handlers of finished gRPC
  // streams may still be queued; let them run before the store (and its channels)
  // is destroyed, or a stream would be torn down after its channel.
  void TearDown() override {
    io_.restart();
    io_.run_for(std::chrono::seconds(10));
  }

  // Appends messages (with flags / internal dates) in one call.
  absl::StatusOr<v1::AppendResponse> Append(const std::string& mailbox,
                                            std::vector<v1::AppendMessage> starts,
                                            std::vector<std::string> contents) {
    return RunTask(io_, DoAppend(mailbox, std::move(starts), std::move(contents)));
  }
  asio::awaitable<absl::StatusOr<v1::AppendResponse>> DoAppend(
      std::string mailbox, std::vector<v1::AppendMessage> starts,
      std::vector<std::string> contents) {
    auto stream = store_->Append(session_);
    v1::AppendRequest item;
    item.set_mailbox(mailbox);
    if (auto s = co_await stream->Write(item); !s.ok()) {
      co_return s;
    }
    for (size_t i = 0; i < contents.size(); ++i) {
      item.Clear();
      *item.mutable_message() = i < starts.size() ? starts[i] : v1::AppendMessage();
      item.mutable_message()->set_size(contents[i].size());
      if (auto s = co_await stream->Write(item); !s.ok()) {
        co_return s;
      }
      for (size_t offset = 0; offset < contents[i].size(); offset += 256 << 10) {
        item.Clear();
        item.set_chunk(contents[i].substr(offset, 256 << 10));
        if (auto s = co_await stream->Write(item); !s.ok()) {
          co_return s;
        }
      }
    }
    co_return co_await stream->Finish();
  }
  absl::StatusOr<v1::AppendResponse> Append(const std::string& mailbox,
                                            std::vector<std::string> contents) {
    return Append(mailbox, {}, std::move(contents));
  }

  v1::OpenResponse Open(const std::string& name, bool read_only = false) {
    v1::OpenRequest request;
    request.set_name(name);
    request.set_read_only(read_only);
    auto open = RunTask(io_, store_->Open(session_, request));
    EXPECT_TRUE(open.ok()) << open.status();
    return open.ok() ? *open : v1::OpenResponse();
  }

  // A whole fetch: metadata per UID, and the concatenated chunks of each section.
  struct Fetched {
    v1::FetchedMetadata metadata;
    std::map<uint32_t, std::string> sections;
    std::map<uint32_t, uint64_t> total_sizes;
    std::set<uint32_t> unknown_cte;
  };
  absl::StatusOr<std::vector<Fetched>> Fetch(v1::FetchRequest request) {
    return RunTask(io_, DoFetch(std::move(request)));
  }
  asio::awaitable<absl::StatusOr<std::vector<Fetched>>> DoFetch(v1::FetchRequest request) {
    auto stream = store_->Fetch(session_, std::move(request));
    std::vector<Fetched> out;
    while (true) {
      auto item = co_await stream->Next();
      if (!item.ok()) {
        co_return item.status();
      }
      if (!item->has_value()) {
        co_return out;
      }
      const v1::FetchResponse& response = **item;
      if (response.has_metadata()) {
        out.emplace_back().metadata = response.metadata();
      } else if (!out.empty()) {
        const v1::SectionChunk& chunk = response.chunk();
        out.back().sections[chunk.section_index()] += chunk.data();
        if (chunk.total_size() != 0) {
          out.back().total_sizes[chunk.section_index()] = chunk.total_size();
        }
        if (chunk.error_unknown_cte()) {
          out.back().unknown_cte.insert(chunk.section_index());
        }
      }
    }
  }

  v1::FetchRequest FetchOf(const v1::OpenResponse& open, uint32_t first, uint32_t last) {
    v1::FetchRequest request;
    request.set_mailbox_id(open.mailbox_id());
    request.set_uidvalidity(open.uidvalidity());
    *request.mutable_uids() = Uids(first, last);
    return request;
  }

  std::vector<uint32_t> Search(const v1::OpenResponse& open, const v1::SearchKey& key,
                               const std::string& charset = "UTF-8") {
    v1::SearchRequest request;
    request.set_mailbox_id(open.mailbox_id());
    request.set_uidvalidity(open.uidvalidity());
    request.set_charset(charset);
    *request.mutable_key() = key;
    auto result = RunTask(io_, store_->Search(session_, request));
    EXPECT_TRUE(result.ok()) << result.status();
    std::vector<uint32_t> uids;
    if (result.ok()) {
      for (const auto& range : result->uids().ranges()) {
        for (uint32_t uid = range.first(); uid <= range.last(); ++uid) {
          uids.push_back(uid);
        }
      }
    }
    return uids;
  }

  std::vector<std::string> MailboxNames(bool subscribed_only = false) {
    v1::ListMailboxesRequest request;
    request.set_subscribed_only(subscribed_only);
    auto list = RunTask(io_, store_->ListMailboxes(session_, request));
    EXPECT_TRUE(list.ok()) << list.status();
    std::vector<std::string> names;
    for (const auto& mailbox : list->mailboxes()) {
      names.push_back(mailbox.name());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  asio::io_context io_;
  std::unique_ptr<ServiceProcess> service_;
  std::unique_ptr<client::GrpcMailboxStore> store_;
  Session session_;
};

TEST_F(StoreClientTest, MailboxesAreCreatedListedRenamedAndDeleted) {
  v1::CreateMailboxRequest create;
  create.set_name("Work/Projects/2026");
  auto created = RunTask(io_, store_->CreateMailbox(session_, create));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(MailboxNames(),
            (std::vector<std::string>{"INBOX", "Work", "Work/Projects", "Work/Projects/2026"}));
  auto again = RunTask(io_, store_->CreateMailbox(session_, create));
  EXPECT_EQ(v1::DetailOf(again.status()).code(), v1::ALREADYEXISTS);

  v1::ListMailboxesRequest pattern;
  pattern.add_patterns("Work/%");
  auto list = RunTask(io_, store_->ListMailboxes(session_, pattern));
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->mailboxes_size(), 1);
  EXPECT_EQ(list->mailboxes(0).name(), "Work/Projects");
  EXPECT_EQ(list->delimiter(), "/");
  auto attributes = list->mailboxes(0).attributes();
  EXPECT_NE(std::find(attributes.begin(), attributes.end(), "\\HasChildren"), attributes.end());

  v1::RenameMailboxRequest rename;
  rename.set_from("Work");
  rename.set_to("Job");
  ASSERT_TRUE(RunTask(io_, store_->RenameMailbox(session_, rename)).ok());
  EXPECT_EQ(MailboxNames(),
            (std::vector<std::string>{"INBOX", "Job", "Job/Projects", "Job/Projects/2026"}));

  // RFC 3501 §6.3.4: deleting a mailbox with inferiors leaves it \Noselect.
  v1::DeleteMailboxRequest remove;
  remove.set_name("Job/Projects");
  ASSERT_TRUE(RunTask(io_, store_->DeleteMailbox(session_, remove)).ok());
  pattern.Clear();
  pattern.add_patterns("Job/Projects");
  list = RunTask(io_, store_->ListMailboxes(session_, pattern));
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->mailboxes_size(), 1);
  attributes = list->mailboxes(0).attributes();
  EXPECT_NE(std::find(attributes.begin(), attributes.end(), "\\Noselect"), attributes.end());
  remove.set_name("Job/Projects/2026");
  ASSERT_TRUE(RunTask(io_, store_->DeleteMailbox(session_, remove)).ok());
  remove.set_name("INBOX");
  EXPECT_EQ(v1::DetailOf(RunTask(io_, store_->DeleteMailbox(session_, remove)).status()).code(),
            v1::CANNOT);

  v1::SetSubscriptionRequest subscribe;
  subscribe.set_name("Job");
  subscribe.set_subscribed(true);
  ASSERT_TRUE(RunTask(io_, store_->SetSubscription(session_, subscribe)).ok());
  EXPECT_EQ(MailboxNames(/*subscribed_only=*/true), (std::vector<std::string>{"Job"}));

  // RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves it empty.
  ASSERT_TRUE(Append("INBOX", {"Subject: a\r\n\r\nx\r\n", "Subject: b\r\n\r\ny\r\n"}).ok());
  rename.set_from("INBOX");
  rename.set_to("Old");
  ASSERT_TRUE(RunTask(io_, store_->RenameMailbox(session_, rename)).ok());
  EXPECT_EQ(Open("INBOX").messages(), 0u);
  EXPECT_EQ(Open("Old").messages(), 2u);

  // Deleted and created again: a new UIDVALIDITY.
  uint32_t old_validity = Open("Old").uidvalidity();
  remove.set_name("Old");
  ASSERT_TRUE(RunTask(io_, store_->DeleteMailbox(session_, remove)).ok());
  create.set_name("Old");
  ASSERT_TRUE(RunTask(io_, store_->CreateMailbox(session_, create)).ok());
  EXPECT_NE(Open("Old").uidvalidity(), old_validity);
}

// Assembles a section the way the service must, from a local parse.
std::string LocalSection(const std::string& raw, const mime::ParsedMessage& parsed,
                         const v1::Section& section, bool* unknown_cte) {
  mime::SectionSpec spec;
  spec.part.assign(section.part().begin(), section.part().end());
  spec.text = static_cast<mime::SectionSpec::Text>(section.text());
  spec.fields.assign(section.fields().begin(), section.fields().end());
  spec.binary = section.binary();
  auto resolved = mime::ResolveSection(parsed, raw, spec);
  *unknown_cte = false;
  if (!resolved.ok()) {
    *unknown_cte = true;
    return "";
  }
  std::string bytes;
  for (const auto& piece : resolved->pieces) {
    bytes += piece.is_generated ? piece.generated
                                : raw.substr(piece.begin, piece.end - piece.begin);
  }
  if (!resolved->binary_encoding.empty()) {
    auto decoder = mime::Decoder::For(resolved->binary_encoding);
    std::string decoded;
    decoder->Feed(bytes, &decoded);
    decoder->Finish(&decoded);
    bytes = decoded;
  }
  if (section.has_partial()) {
    bytes = section.partial_offset() >= bytes.size()
                ? ""
                : bytes.substr(section.partial_offset(), section.partial_count());
  }
  return bytes;
}

TEST_F(StoreClientTest, EveryFetchItemAndSectionOfATrickyCorpus) {
  std::vector<std::string> corpus;
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(
           Runfile("mailbox-service/mime/testdata"))) {
    if (entry.path().extension() != ".eml") {
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    names.push_back(entry.path().filename().string());
  }
  ASSERT_GE(corpus.size(), 10u);
  v1::AppendMessage start;
  start.add_flags("\\Draft");
  start.add_flags("$Label1");
  start.set_has_internal_date(true);
  start.set_internal_date_unix(1767225600);  // 2026-01-01 00:00 UTC
  start.set_internal_date_tz_minutes(120);
  auto appended = Append("INBOX", std::vector<v1::AppendMessage>(corpus.size(), start), corpus);
  ASSERT_TRUE(appended.ok()) << appended.status();
  v1::OpenResponse open = Open("INBOX");

  std::vector<v1::Section> sections;
  auto add = [&](std::vector<uint32_t> part, v1::Section::Text text,
                 std::vector<std::string> fields = {}, bool binary = false) {
    v1::Section section;
    section.mutable_part()->Add(part.begin(), part.end());
    section.set_text(text);
    for (auto& field : fields) {
      section.add_fields(field);
    }
    section.set_binary(binary);
    sections.push_back(section);
  };
  add({}, v1::Section::TEXT_NONE);
  add({}, v1::Section::HEADER);
  add({}, v1::Section::TEXT);
  add({}, v1::Section::HEADER_FIELDS, {"From", "Subject", "X-Missing"});
  add({}, v1::Section::HEADER_FIELDS_NOT, {"Subject", "Received"});
  add({1}, v1::Section::TEXT_NONE);
  add({1}, v1::Section::MIME);
  add({2}, v1::Section::TEXT_NONE);
  add({1, 2}, v1::Section::TEXT_NONE);
  add({2, 1}, v1::Section::MIME);
  add({3}, v1::Section::HEADER);
  add({2}, v1::Section::HEADER);
  add({9, 9}, v1::Section::TEXT_NONE);  // nonexistent: empty
  add({1}, v1::Section::TEXT_NONE, {}, /*binary=*/true);
  add({2}, v1::Section::TEXT_NONE, {}, /*binary=*/true);
  add({}, v1::Section::TEXT_NONE);
  sections.back().set_has_partial(true);
  sections.back().set_partial_offset(10);
  sections.back().set_partial_count(25);

  for (size_t i = 0; i < corpus.size(); ++i) {
    SCOPED_TRACE(names[i]);
    auto parsed = mime::Parse(corpus[i]);
    ASSERT_TRUE(parsed.ok());
    v1::FetchRequest request = FetchOf(open, appended->uids(i), appended->uids(i));
    request.set_flags(true);
    request.set_internal_date(true);
    request.set_size(true);
    request.set_envelope(true);
    request.set_body(true);
    request.set_bodystructure(true);
    request.set_modseq(true);
    // Sections that are invalid for this message's shape (MIME of a part-less
    // message, HEADER of a non-message part) are checked separately below.
    std::vector<v1::Section> valid;
    for (const auto& section : sections) {
      bool unknown = false;
      mime::SectionSpec spec;
      spec.part.assign(section.part().begin(), section.part().end());
      spec.text = static_cast<mime::SectionSpec::Text>(section.text());
      spec.fields.assign(section.fields().begin(), section.fields().end());
      spec.binary = section.binary();
      auto resolved = mime::ResolveSection(*parsed, corpus[i], spec);
      if (resolved.ok() || absl::IsFailedPrecondition(resolved.status())) {
        valid.push_back(section);
      }
      (void)unknown;
    }
    request.mutable_sections()->Add(valid.begin(), valid.end());
    auto fetched = Fetch(request);
    ASSERT_TRUE(fetched.ok()) << fetched.status();
    ASSERT_EQ(fetched->size(), 1u);
    const Fetched& message = (*fetched)[0];
    EXPECT_EQ(message.metadata.uid(), appended->uids(i));
    EXPECT_EQ(message.metadata.envelope(), parsed->envelope);
    EXPECT_EQ(message.metadata.body(), parsed->body);
    EXPECT_EQ(message.metadata.bodystructure(), parsed->bodystructure);
    EXPECT_EQ(message.metadata.size(), corpus[i].size());
    EXPECT_EQ(message.metadata.internal_date_unix(), 1767225600);
    EXPECT_EQ(message.metadata.internal_date_tz_minutes(), 120);
    EXPECT_GT(message.metadata.modseq(), 0u);
    std::set<std::string> flags(message.metadata.flags().begin(), message.metadata.flags().end());
    EXPECT_EQ(flags, (std::set<std::string>{"\\Draft", "$Label1"}));
    for (int s = 0; s < static_cast<int>(valid.size()); ++s) {
      SCOPED_TRACE(valid[s].ShortDebugString());
      bool unknown = false;
      std::string expected = LocalSection(corpus[i], *parsed, valid[s], &unknown);
      EXPECT_EQ(message.unknown_cte.count(s) > 0, unknown);
      auto it = message.sections.find(s);
      EXPECT_EQ(it == message.sections.end() ? "" : it->second, expected);
    }
  }

  // BODY[] without PEEK sets \Seen in the same call.
  v1::FetchRequest seen = FetchOf(open, appended->uids(0), appended->uids(0));
  seen.set_mark_seen(true);
  seen.set_flags(true);
  seen.add_sections();
  auto fetched = Fetch(seen);
  ASSERT_TRUE(fetched.ok());
  auto flags = (*fetched)[0].metadata.flags();
  EXPECT_NE(std::find(flags.begin(), flags.end(), "\\Seen"), flags.end());
}

TEST_F(StoreClientTest, AFiftyMegabyteMessageStreamsBothWaysWithBoundedClientMemory) {
  constexpr size_t kSize = 50u << 20;
  constexpr size_t kChunk = 256u << 10;
  // The message is generated chunk by chunk and never held whole by this process.
  auto make_chunk = [](size_t offset, size_t size) {
    std::string chunk;
    chunk.reserve(size);
    if (offset == 0) {
      chunk = "Subject: big\r\nContent-Type: text/plain\r\n\r\n";
    }
    while (chunk.size() < size) {
      size_t line = (offset + chunk.size()) / 64;
      std::string text = absl::StrCat("line ", line, " ");
      text.resize(62, 'x');
      text += "\r\n";
      chunk += text;
    }
    chunk.resize(size);
    return chunk;
  };
  SHA256_CTX sent;
  SHA256_Init(&sent);
  const uint64_t rss_before = PeakRssKiB();
  auto upload = [&]() -> asio::awaitable<absl::StatusOr<v1::AppendResponse>> {
    auto stream = store_->Append(session_);
    v1::AppendRequest item;
    item.set_mailbox("INBOX");
    if (auto s = co_await stream->Write(item); !s.ok()) {
      co_return s;
    }
    item.Clear();
    item.mutable_message()->set_size(kSize);
    if (auto s = co_await stream->Write(item); !s.ok()) {
      co_return s;
    }
    for (size_t offset = 0; offset < kSize; offset += kChunk) {
      item.Clear();
      item.set_chunk(make_chunk(offset, std::min(kChunk, kSize - offset)));
      SHA256_Update(&sent, item.chunk().data(), item.chunk().size());
      if (auto s = co_await stream->Write(std::move(item)); !s.ok()) {
        co_return s;
      }
    }
    co_return co_await stream->Finish();
  };
  auto appended = RunTask(io_, upload());
  ASSERT_TRUE(appended.ok()) << appended.status();
  unsigned char sent_digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(sent_digest, &sent);

  v1::OpenResponse open = Open("INBOX");
  v1::FetchRequest request = FetchOf(open, appended->uids(0), appended->uids(0));
  request.set_size(true);
  request.add_sections();
  auto download = [&]() -> asio::awaitable<absl::StatusOr<std::pair<uint64_t, std::string>>> {
    auto stream = store_->Fetch(session_, request);
    SHA256_CTX received;
    SHA256_Init(&received);
    uint64_t octets = 0;
    size_t largest_chunk = 0;
    while (true) {
      auto item = co_await stream->Next();
      if (!item.ok()) {
        co_return item.status();
      }
      if (!item->has_value()) {
        break;
      }
      if ((*item)->has_chunk()) {
        const std::string& data = (*item)->chunk().data();
        largest_chunk = std::max(largest_chunk, data.size());
        SHA256_Update(&received, data.data(), data.size());
        octets += data.size();
      }
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, &received);
    EXPECT_LE(largest_chunk, kChunk);
    co_return std::make_pair(octets, std::string(reinterpret_cast<char*>(digest), sizeof(digest)));
  };
  auto fetched = RunTask(io_, download());
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->first, kSize);
  EXPECT_EQ(fetched->second,
            std::string(reinterpret_cast<char*>(sent_digest), sizeof(sent_digest)));
  // Neither direction held the message: the peak grew by far less than 50 MB.
  const uint64_t growth_kib = PeakRssKiB() - rss_before;
  EXPECT_LT(growth_kib, 24u * 1024) << "client peak RSS grew by " << growth_kib << " KiB";
}

TEST_F(StoreClientTest, StoreWithUnchangedSinceCopyMoveAndExpunge) {
  auto appended = Append("INBOX", {"Subject: 1\r\n\r\n1\r\n", "Subject: 2\r\n\r\n2\r\n",
                                   "Subject: 3\r\n\r\n3\r\n", "Subject: 4\r\n\r\n4\r\n"});
  ASSERT_TRUE(appended.ok());
  v1::OpenResponse open = Open("INBOX");
  const uint32_t u1 = appended->uids(0), u4 = appended->uids(3);

  v1::StoreRequest store;
  store.set_mailbox_id(open.mailbox_id());
  store.set_uidvalidity(open.uidvalidity());
  *store.mutable_uids() = Uids(u1, u1);
  store.set_mode(v1::StoreRequest::ADD);
  store.add_flags("\\Flagged");
  store.set_has_unchanged_since(true);
  store.set_unchanged_since(open.highest_modseq());
  auto stored = RunTask(io_, store_->Store(session_, store));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->changed_size(), 1);
  EXPECT_GT(stored->changed(0).modseq(), open.highest_modseq());
  // The same condition again fails for u1: it changed since.
  stored = RunTask(io_, store_->Store(session_, store));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->changed_size(), 0);
  ASSERT_EQ(stored->modified().ranges_size(), 1);
  EXPECT_EQ(stored->modified().ranges(0).first(), u1);

  v1::CreateMailboxRequest create;
  create.set_name("Archive");
  ASSERT_TRUE(RunTask(io_, store_->CreateMailbox(session_, create)).ok());
  v1::CopyRequest copy;
  copy.set_mailbox_id(open.mailbox_id());
  copy.set_uidvalidity(open.uidvalidity());
  *copy.mutable_uids() = Uids(u1, appended->uids(1));
  copy.set_destination("Archive");
  auto copied = RunTask(io_, store_->Copy(session_, copy));
  ASSERT_TRUE(copied.ok()) << copied.status();
  ASSERT_EQ(copied->source_uids_size(), 2);
  EXPECT_EQ(copied->destination_uids_size(), 2);
  EXPECT_EQ(copied->destination_uidvalidity(), Open("Archive", true).uidvalidity());
  copy.set_destination("Nowhere");
  EXPECT_EQ(v1::DetailOf(RunTask(io_, store_->Copy(session_, copy)).status()).code(), v1::TRYCREATE);

  v1::MoveRequest move;
  move.set_mailbox_id(open.mailbox_id());
  move.set_uidvalidity(open.uidvalidity());
  *move.mutable_uids() = Uids(u4, u4);
  move.set_destination("Archive");
  auto moved = RunTask(io_, store_->Move(session_, move));
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->source_uids(0), u4);
  EXPECT_EQ(Open("Archive", true).messages(), 3u);
  EXPECT_EQ(Open("INBOX", true).messages(), 3u);

  // \Deleted on 1 and 2; UID EXPUNGE of 1 only, then EXPUNGE of the rest.
  store.Clear();
  store.set_mailbox_id(open.mailbox_id());
  store.set_uidvalidity(open.uidvalidity());
  *store.mutable_uids() = Uids(u1, appended->uids(1));
  store.set_mode(v1::StoreRequest::ADD);
  store.add_flags("\\Deleted");
  ASSERT_TRUE(RunTask(io_, store_->Store(session_, store)).ok());
  v1::ExpungeRequest expunge;
  expunge.set_mailbox_id(open.mailbox_id());
  expunge.set_uidvalidity(open.uidvalidity());
  *expunge.mutable_uids() = Uids(u1, u1);
  expunge.set_uids_only(true);
  auto expunged = RunTask(io_, store_->Expunge(session_, expunge));
  ASSERT_TRUE(expunged.ok()) << expunged.status();
  ASSERT_EQ(expunged->expunged().ranges_size(), 1);
  EXPECT_EQ(expunged->expunged().ranges(0).first(), u1);
  EXPECT_EQ(expunged->expunged().ranges(0).last(), u1);
  expunge.clear_uids();
  expunge.set_uids_only(false);
  expunged = RunTask(io_, store_->Expunge(session_, expunge));
  ASSERT_TRUE(expunged.ok());
  EXPECT_EQ(expunged->expunged().ranges(0).first(), appended->uids(1));
  EXPECT_EQ(Open("INBOX", true).messages(), 1u);
}

TEST_F(StoreClientTest, SearchWithEveryKey) {
  auto start = [](int64_t unix, std::vector<std::string> flags) {
    v1::AppendMessage message;
    message.set_has_internal_date(true);
    message.set_internal_date_unix(unix);
    for (auto& flag : flags) {
      message.add_flags(flag);
    }
    return message;
  };
  std::string m1 =
      "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Quarterly report\r\n"
      "Date: Thu, 01 Jan 2026 09:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nnumbers attached\r\n";
  std::string m2 =
      "From: carol@example.org\r\nCc: dave@example.org\r\n"
      "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Sun, 15 Feb 2026 23:30:00 -0500\r\n\r\n" +
      std::string(8000, 'z') + "\r\nhello world\r\n";
  std::string m3 =
      "From: eve@example.org\r\nBcc: frank@example.org\r\nSubject: lunch\r\n\r\n"
      "QUARTERLY numbers\r\n";
  auto appended = Append("INBOX",
                         {start(1767607200, {"\\Seen"}),            // 2026-01-05
                          start(1771156800, {"\\Flagged", "$Work"}),  // 2026-02-15
                          start(1772366400, {})},                     // 2026-03-01
                         {m1, m2, m3});
  ASSERT_TRUE(appended.ok()) << appended.status();
  v1::OpenResponse open = Open("INBOX");
  const uint32_t a = appended->uids(0), b = appended->uids(1), c = appended->uids(2);
  using V = std::vector<uint32_t>;

  v1::SearchKey key;
  key.set_all(true);
  EXPECT_EQ(Search(open, key), (V{a, b, c}));
  *key.mutable_uid() = Uids(b, c);
  EXPECT_EQ(Search(open, key), (V{b, c}));
  key.set_flag("\\Seen");
  EXPECT_EQ(Search(open, key), (V{a}));
  key.set_not_flag("\\Seen");
  EXPECT_EQ(Search(open, key), (V{b, c}));
  key.set_flag("$work");
  EXPECT_EQ(Search(open, key), (V{b}));
  key.set_before(20260201);
  EXPECT_EQ(Search(open, key), (V{a}));
  key.set_on(20260215);
  EXPECT_EQ(Search(open, key), (V{b}));
  key.set_since(20260215);
  EXPECT_EQ(Search(open, key), (V{b, c}));
  key.set_sent_before(20260201);
  EXPECT_EQ(Search(open, key), (V{a}));
  key.set_sent_on(20260215);  // in the header's own zone, not UTC
  EXPECT_EQ(Search(open, key), (V{b}));
  key.set_sent_since(20260101);
  EXPECT_EQ(Search(open, key), (V{a, b}));
  key.set_larger(5000);
  EXPECT_EQ(Search(open, key), (V{b}));
  key.set_smaller(5000);
  EXPECT_EQ(Search(open, key), (V{a, c}));
  auto header = [&](std::string field, std::string value) {
    v1::SearchKey k;
    k.mutable_header()->set_field(field);
    k.mutable_header()->set_value(value);
    return k;
  };
  EXPECT_EQ(Search(open, header("From", "CAROL")), (V{b}));
  EXPECT_EQ(Search(open, header("To", "bob")), (V{a}));
  EXPECT_EQ(Search(open, header("Cc", "dave")), (V{b}));
  EXPECT_EQ(Search(open, header("Bcc", "frank")), (V{c}));
  EXPECT_EQ(Search(open, header("Subject", "grüße")), (V{b}));
  EXPECT_EQ(Search(open, header("Message-ID", "")), (V{a}));
  key.set_body("quarterly");
  EXPECT_EQ(Search(open, key), (V{c}));
  key.set_text("quarterly");
  EXPECT_EQ(Search(open, key), (V{a, c}));
  v1::SearchKey either;
  either.mutable_or_()->mutable_a()->set_flag("\\Seen");
  either.mutable_or_()->mutable_b()->set_flag("\\Flagged");
  EXPECT_EQ(Search(open, either), (V{a, b}));
  v1::SearchKey negated;
  negated.mutable_not_()->set_flag("\\Seen");
  EXPECT_EQ(Search(open, negated), (V{b, c}));
  v1::SearchKey both;
  both.mutable_and_()->add_keys()->set_since(20260101);
  both.mutable_and_()->add_keys()->mutable_not_()->set_larger(5000);
  EXPECT_EQ(Search(open, both), (V{a, c}));

  // MODSEQ: only what changed after the appends.
  v1::StoreRequest store;
  store.set_mailbox_id(open.mailbox_id());
  store.set_uidvalidity(open.uidvalidity());
  *store.mutable_uids() = Uids(c, c);
  store.set_mode(v1::StoreRequest::ADD);
  store.add_flags("\\Answered");
  auto stored = RunTask(io_, store_->Store(session_, store));
  ASSERT_TRUE(stored.ok());
  key.set_modseq(stored->highest_modseq());
  EXPECT_EQ(Search(open, key), (V{c}));

  // Charset and nesting limits are errors, not crashes.
  v1::SearchRequest bad;
  bad.set_mailbox_id(open.mailbox_id());
  bad.set_uidvalidity(open.uidvalidity());
  bad.set_charset("KOI8-R");
  bad.mutable_key()->set_all(true);
  EXPECT_EQ(v1::DetailOf(RunTask(io_, store_->Search(session_, bad)).status()).code(),
            v1::BADCHARSET);
  bad.set_charset("UTF-8");
  // Deeper than the service's search limit (64): BAD_REQUEST.
  v1::SearchKey* deep = bad.mutable_key();
  for (int i = 0; i < 80; ++i) {
    deep = deep->mutable_not_();
  }
  deep->set_all(true);
  auto too_deep = RunTask(io_, store_->Search(session_, bad));
  EXPECT_EQ(too_deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v1::DetailOf(too_deep.status()).code(), v1::BAD_REQUEST);
  // Far deeper than protobuf's own recursion limit (100): refused by the transport,
  // and the service keeps serving.
  for (int i = 0; i < 1000; ++i) {
    deep = deep->mutable_not_();
  }
  deep->set_all(true);
  EXPECT_FALSE(RunTask(io_, store_->Search(session_, bad)).ok());
  key.set_all(true);
  EXPECT_EQ(Search(open, key), (V{a, b, c}));
}

// Waits for the next feed event, up to 20 s.
absl::StatusOr<v1::ChangeEvent> NextEvent(asio::io_context& io, client::ChangeFeed& feed) {
  return RunTask(io, [](client::ChangeFeed& feed, asio::io_context& io)
                     -> asio::awaitable<absl::StatusOr<v1::ChangeEvent>> {
    asio::steady_timer guard(io, std::chrono::seconds(20));
    guard.async_wait([&feed](boost::system::error_code ec) {
      if (!ec) {
        feed.Close();
      }
    });
    auto event = co_await feed.Next();
    guard.cancel();
    co_return event;
  }(feed, io));
}

TEST_F(StoreClientTest, ReviseAndTheChangeFeedAcrossAServiceRestart) {
  auto appended = Append("INBOX", {"Subject: draft 1\r\n\r\nfirst\r\n"});
  ASSERT_TRUE(appended.ok());
  v1::OpenResponse open = Open("INBOX");
  auto feed = store_->OpenChangeFeed(io_.get_executor());
  feed->Subscribe(open.mailbox_id(), open.uidvalidity(), open.highest_modseq(), session_.token);
  auto marker = NextEvent(io_, *feed);
  ASSERT_TRUE(marker.ok()) << marker.status();
  EXPECT_TRUE(marker->has_subscribed());

  // Revise through storage-client, as another protocol's front end would.
  std::string revision = "Subject: draft 2\r\n\r\nsecond\r\n";
  auto revise = [&]() -> asio::awaitable<absl::StatusOr<v1::ReviseResponse>> {
    auto stream = store_->Revise(session_);
    v1::ReviseRequest item;
    item.mutable_header()->set_mailbox_id(open.mailbox_id());
    item.mutable_header()->set_uidvalidity(open.uidvalidity());
    item.mutable_header()->set_uid(appended->uids(0));
    item.mutable_header()->set_size(revision.size());
    if (auto s = co_await stream->Write(item); !s.ok()) {
      co_return s;
    }
    item.Clear();
    item.set_chunk(revision);
    if (auto s = co_await stream->Write(item); !s.ok()) {
      co_return s;
    }
    co_return co_await stream->Finish();
  };
  auto revised = RunTask(io_, revise());
  ASSERT_TRUE(revised.ok()) << revised.status();
  auto added = NextEvent(io_, *feed);
  ASSERT_TRUE(added.ok());
  ASSERT_TRUE(added->has_added());
  EXPECT_EQ(added->added().messages(0).uid(), revised->new_uid());
  auto expunged = NextEvent(io_, *feed);
  ASSERT_TRUE(expunged.ok());
  ASSERT_TRUE(expunged->has_expunged());
  EXPECT_EQ(expunged->expunged().uids().ranges(0).first(), revised->old_uid());
  EXPECT_GT(expunged->modseq(), added->modseq());
  const uint64_t last_seen = expunged->modseq();

  // The service goes away and comes back; a change made meanwhile (before the feed
  // reconnects) is replayed from the log, once.
  ASSERT_EQ(service_->Stop(SIGTERM), 0);
  ASSERT_TRUE(service_->Start().ok());
  auto raw = RawClient::Login(service_->Channel(), "alice", "pw");
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw->Append("INBOX", {"Subject: while away\r\n\r\nx\r\n"}).ok());
  std::vector<v1::ChangeEvent> after;
  while (after.empty() || !after.back().has_added()) {
    auto event = NextEvent(io_, *feed);
    ASSERT_TRUE(event.ok()) << event.status();
    after.push_back(*event);
  }
  for (const auto& event : after) {
    EXPECT_TRUE(event.has_subscribed() || event.modseq() > last_seen) << event.ShortDebugString();
  }
  ASSERT_TRUE(raw->Append("INBOX", {"Subject: live\r\n\r\ny\r\n"}).ok());
  auto live = NextEvent(io_, *feed);
  while (live.ok() && live->has_subscribed()) {  // the resume's replay marker
    live = NextEvent(io_, *feed);
  }
  ASSERT_TRUE(live.ok());
  EXPECT_TRUE(live->has_added());
  EXPECT_GT(live->modseq(), after.back().modseq());
  feed->Close();
}

}  // namespace
}  // namespace mailbox::testing
