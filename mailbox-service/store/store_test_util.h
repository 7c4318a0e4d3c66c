// Messages, UID sets and a collecting fetch sink shared by the store's tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

inline constexpr char kSimple[] =
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.com\r\n"
    "Subject: hello\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "\r\n"
    "Hello world\r\n";

inline constexpr char kMultipart[] =
    "From: alice@example.com\r\n"
    "Subject: multi\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    "\r\n"
    "--XX\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "part one\r\n"
    "--XX\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "aGVsbG8gYmluYXJ5\r\n"
    "--XX\r\n"
    "Content-Type: application/x-thing\r\n"
    "Content-Transfer-Encoding: x-uuencode\r\n"
    "\r\n"
    "begin 644 x\r\n"
    "--XX--\r\n";

inline v1::ErrorCode CodeOf(const absl::Status& status) { return v1::DetailOf(status).code(); }

inline std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  return path;
}

inline v1::UidSet Uids(std::vector<std::pair<uint32_t, uint32_t>> ranges) {
  v1::UidSet set;
  for (auto [first, last] : ranges) {
    v1::UidRange* r = set.add_ranges();
    r->set_first(first);
    r->set_last(last);
  }
  return set;
}

inline std::vector<uint32_t> Expand(const v1::UidSet& set) {
  std::vector<uint32_t> out;
  for (const v1::UidRange& r : set.ranges()) {
    for (uint32_t uid = r.first(); uid <= r.last(); ++uid) {
      out.push_back(uid);
    }
  }
  return out;
}

inline NewMessage Message(std::string content, std::vector<std::string> flags = {}) {
  NewMessage m;
  m.content = std::move(content);
  m.flags = std::move(flags);
  return m;
}

class CollectingSink : public FetchSink {
 public:
  bool Send(const v1::FetchResponse& item) override {
    items.push_back(item);
    return true;
  }
  std::vector<v1::FetchedMetadata> Metadata() const {
    std::vector<v1::FetchedMetadata> out;
    for (const auto& item : items) {
      if (item.has_metadata()) {
        out.push_back(item.metadata());
      }
    }
    return out;
  }
  // Concatenated data of (uid, section).
  std::string Section(uint32_t uid, uint32_t index) const {
    std::string out;
    for (const auto& item : items) {
      if (item.has_chunk() && item.chunk().uid() == uid && item.chunk().section_index() == index) {
        out += item.chunk().data();
      }
    }
    return out;
  }
  std::vector<v1::SectionChunk> Chunks(uint32_t uid, uint32_t index) const {
    std::vector<v1::SectionChunk> out;
    for (const auto& item : items) {
      if (item.has_chunk() && item.chunk().uid() == uid && item.chunk().section_index() == index) {
        out.push_back(item.chunk());
      }
    }
    return out;
  }
  std::vector<v1::FetchResponse> items;
};

// Every item and several sections, for comparing a message before and after its
// expunge.
inline v1::FetchRequest FetchEverything(const v1::OpenResponse& box, bool include_expunged) {
  v1::FetchRequest request;
  request.set_mailbox_id(box.mailbox_id());
  request.set_uidvalidity(box.uidvalidity());
  *request.mutable_uids() = Uids({{1, 100}});
  request.set_flags(true);
  request.set_internal_date(true);
  request.set_size(true);
  request.set_envelope(true);
  request.set_body(true);
  request.set_bodystructure(true);
  request.set_modseq(true);
  request.add_sections();                                  // BODY[]
  request.add_sections()->set_text(v1::Section::HEADER);   // BODY[HEADER]
  request.add_sections()->add_part(1);                     // BODY[1]
  v1::Section* binary = request.add_sections();            // BINARY[2]
  binary->add_part(2);
  binary->set_binary(true);
  v1::Section* partial = request.add_sections();           // BODY[]<6.5>
  partial->set_has_partial(true);
  partial->set_partial_offset(6);
  partial->set_partial_count(5);
  request.set_include_expunged(include_expunged);
  return request;
}

}  // namespace mailbox::store
