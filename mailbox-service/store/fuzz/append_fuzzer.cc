// libFuzzer target for the mailbox service's Append path: bytes in, through
// the MIME parser into the real SQLite store (on a temporary directory, in
// tmpfs when there is one), and back out with Fetch.
//
// Input: one control byte, then up to four messages separated by "\0MSG"
// (one APPEND with several messages is MULTIAPPEND, RFC 3502). The control
// byte picks the flags and whether an internal date is given (built from the
// bytes, sometimes out of range). Properties checked after each APPEND:
//  * it fails exactly when a message is empty or the internal date is out of
//    range, and then nothing was appended (UIDNEXT and the count unchanged);
//  * otherwise the messages get consecutive UIDs starting at the previous
//    UIDNEXT, in order, under the mailbox's UIDVALIDITY, and UIDNEXT moves
//    past them;
//  * FETCH returns for each: RFC822.SIZE = the octets given, BODY[] = those
//    octets, BODY[HEADER] + BODY[TEXT] = those octets, the flags given, the
//    internal date given, and the ENVELOPE / BODY / BODYSTRUCTURE that
//    mime::Parse computes for the same bytes;
//  * STORE +FLAGS \Deleted and UID EXPUNGE remove exactly those UIDs (which
//    keeps the database small across millions of inputs).
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/sqlite_store.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace {

namespace store = mailbox::store;
namespace v1 = mailbox::v1;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

class CollectingSink : public store::FetchSink {
 public:
  bool Send(const v1::FetchResponse& item) override {
    if (item.has_metadata()) {
      metadata.push_back(item.metadata());
    } else {
      const v1::SectionChunk& c = item.chunk();
      sections[c.uid()].resize(4);
      sections[c.uid()][c.section_index()] += c.data();
    }
    return true;
  }
  std::vector<v1::FetchedMetadata> metadata;
  std::map<uint32_t, std::vector<std::string>> sections;
};

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<store::SqliteStore> db;
  uint64_t user = 0;

  Fixture() {
    // tmpfs makes the store's fsyncs cheap; the store is the same either way.
    std::filesystem::path base = std::filesystem::temp_directory_path();
    if (access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    std::string tmpl = (base / "append_fuzzer.XXXXXX").string();
    Check(mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
    dir = tmpl;
    store::SqliteStore::Options options;
    options.expunged_retention = std::chrono::milliseconds(0);
    auto opened = store::SqliteStore::Open((dir / "mail.db").string(), store::StoreLimits(),
                                           store::EventSink(), options);
    Check(opened.ok(), "cannot open the store");
    db = *std::move(opened);
    auto created = db->CreateUser("fuzz", "hash");
    Check(created.ok(), "cannot create the user");
    user = *created;
  }
  ~Fixture() {
    db.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  v1::OpenResponse OpenInbox() {
    v1::OpenRequest request;
    request.set_name("INBOX");
    auto response = db->Open(user, request);
    Check(response.ok(), "cannot open INBOX");
    return *response;
  }
};

Fixture& Shared() {
  static Fixture* fixture = [] {
    static Fixture f;
    return &f;
  }();
  return *fixture;
}

v1::UidSet Range(uint32_t first, uint32_t last) {
  v1::UidSet set;
  v1::UidRange* r = set.add_ranges();
  r->set_first(first);
  r->set_last(last);
  return set;
}

std::vector<std::string_view> SplitMessages(std::string_view input) {
  constexpr std::string_view kMarker("\0MSG", 4);
  std::vector<std::string_view> out;
  while (out.size() < 3) {
    size_t at = input.find(kMarker);
    if (at == std::string_view::npos) break;
    out.push_back(input.substr(0, at));
    input.remove_prefix(at + kMarker.size());
  }
  out.push_back(input);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Fixture& f = Shared();
  const uint8_t control = data[0];
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  static const char* const kFlags[] = {"\\Seen", "\\Flagged", "\\Answered", "\\Draft",
                                       "$Label1"};
  std::vector<std::string> flags;
  for (int i = 0; i < 5; ++i) {
    if (control & (1 << i)) flags.push_back(kFlags[i]);
  }
  std::sort(flags.begin(), flags.end());
  const bool dated = (control & 0x20) != 0;
  // Internal date from the first octets: mostly valid, sometimes beyond 9999.
  int64_t date = 0;
  for (size_t i = 0; i < 5 && i < input.size(); ++i) {
    date = date << 8 | static_cast<unsigned char>(input[i]);
  }
  date -= int64_t{1} << 38;
  const int32_t zone = (control & 0x40) ? -(date % 1440 + 1440) % 1440 : 120;

  std::vector<std::string_view> texts = SplitMessages(input);
  std::vector<store::NewMessage> messages;
  bool valid = true;
  for (std::string_view text : texts) {
    store::NewMessage m;
    m.content = std::string(text);
    m.flags = flags;
    m.has_internal_date = dated;
    m.internal_date_unix = date;
    m.internal_date_tz_minutes = zone;
    valid = valid && !text.empty();
    messages.push_back(std::move(m));
  }
  if (dated && (date < -62135596800 || date > 253402300799)) valid = false;

  const v1::OpenResponse before = f.OpenInbox();
  absl::StatusOr<v1::AppendResponse> appended = f.db->Append(f.user, "INBOX", messages);
  const v1::OpenResponse after = f.OpenInbox();
  Check(after.uidvalidity() == before.uidvalidity(), "UIDVALIDITY changed");
  if (!valid) {
    Check(!appended.ok(), "an invalid APPEND succeeded");
    Check(after.uidnext() == before.uidnext() && after.messages() == before.messages(),
          "a failed APPEND changed the mailbox");
    return 0;
  }
  Check(appended.ok(), "a valid APPEND failed");
  const uint32_t n = static_cast<uint32_t>(texts.size());
  Check(appended->uidvalidity() == before.uidvalidity(), "APPENDUID UIDVALIDITY differs");
  Check(appended->uids_size() == static_cast<int>(n), "one UID per message");
  for (uint32_t i = 0; i < n; ++i) {
    Check(appended->uids(i) == before.uidnext() + i, "UIDs are not the next ones in order");
  }
  Check(after.uidnext() == before.uidnext() + n, "UIDNEXT did not move past the messages");
  Check(after.messages() == before.messages() + n, "message count did not grow by n");

  const uint32_t first = before.uidnext();
  const uint32_t last = first + n - 1;
  v1::FetchRequest fetch;
  fetch.set_mailbox_id(after.mailbox_id());
  fetch.set_uidvalidity(after.uidvalidity());
  *fetch.mutable_uids() = Range(first, last);
  fetch.set_flags(true);
  fetch.set_internal_date(true);
  fetch.set_size(true);
  fetch.set_envelope(true);
  fetch.set_body(true);
  fetch.set_bodystructure(true);
  fetch.add_sections();                                     // BODY[]
  fetch.add_sections()->set_text(v1::Section::HEADER);      // BODY[HEADER]
  fetch.add_sections()->set_text(v1::Section::TEXT);        // BODY[TEXT]
  CollectingSink sink;
  Check(f.db->Fetch(f.user, fetch, sink).ok(), "FETCH failed");
  Check(sink.metadata.size() == n, "FETCH did not return every message");
  for (uint32_t i = 0; i < n; ++i) {
    const v1::FetchedMetadata& meta = sink.metadata[i];
    const std::string_view text = texts[i];
    Check(meta.uid() == first + i, "FETCH out of UID order");
    Check(meta.size() == text.size(), "RFC822.SIZE differs from the octets appended");
    std::vector<std::string> got(meta.flags().begin(), meta.flags().end());
    std::sort(got.begin(), got.end());
    Check(got == flags, "FLAGS differ from those appended");
    if (dated) {
      Check(meta.internal_date_unix() == date && meta.internal_date_tz_minutes() == zone,
            "INTERNALDATE differs from the one appended");
    }
    absl::StatusOr<mailbox::mime::ParsedMessage> parsed = mailbox::mime::Parse(text);
    Check(parsed.ok(), "mime::Parse failed");
    Check(meta.envelope() == parsed->envelope, "ENVELOPE differs from the parser's");
    Check(meta.body() == parsed->body, "BODY differs from the parser's");
    Check(meta.bodystructure() == parsed->bodystructure,
          "BODYSTRUCTURE differs from the parser's");
    std::vector<std::string>& s = sink.sections[meta.uid()];
    s.resize(4);
    Check(s[0] == text, "BODY[] differs from the octets appended");
    Check(s[1] + s[2] == text, "BODY[HEADER] + BODY[TEXT] differs from the octets appended");
  }

  v1::StoreRequest mark;
  mark.set_mailbox_id(after.mailbox_id());
  mark.set_uidvalidity(after.uidvalidity());
  *mark.mutable_uids() = Range(first, last);
  mark.set_mode(v1::StoreRequest::ADD);
  mark.add_flags("\\Deleted");
  Check(f.db->StoreFlags(f.user, mark).ok(), "STORE \\Deleted failed");
  v1::ExpungeRequest expunge;
  expunge.set_mailbox_id(after.mailbox_id());
  expunge.set_uidvalidity(after.uidvalidity());
  *expunge.mutable_uids() = Range(first, last);
  expunge.set_uids_only(true);
  absl::StatusOr<v1::ExpungeResponse> gone = f.db->Expunge(f.user, expunge);
  Check(gone.ok(), "UID EXPUNGE failed");
  Check(gone->expunged().ranges_size() == 1 && gone->expunged().ranges(0).first() == first &&
            gone->expunged().ranges(0).last() == last,
        "UID EXPUNGE did not remove exactly the appended messages");
  Check(f.OpenInbox().messages() == before.messages(), "messages left after EXPUNGE");
  return 0;
}
