#include "mailbox-service/store/sqlite_store.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/search.h"
#include "mailbox-service/store/sqlite_db.h"
#include "mailbox-service/store/sqlite_schema.h"
#include "proto/mailbox/v1/errors.h"

// Status plumbing local to this file (absl 20220623 has no public macros).
#define SQ_CONCAT_INNER(a, b) a##b
#define SQ_CONCAT(a, b) SQ_CONCAT_INNER(a, b)
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    if (absl::Status sq_status_ = (expr);    \
        !sq_status_.ok()) {                  \
      return sq_status_;                     \
    }                                        \
  } while (false)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) {                            \
    return tmp.status();                      \
  }                                           \
  lhs = std::move(*tmp)
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(SQ_CONCAT(sq_statusor_, __LINE__), lhs, expr)

namespace mailbox::store {

using sqlite::BlobReader;
using sqlite::Connection;
using sqlite::Statement;

namespace {

constexpr char kDelimiter = '/';
constexpr std::string_view kInbox = "INBOX";

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Error(absl::StatusCode code, v1::ErrorCode detail, std::string_view message) {
  return v1::MakeError(code, detail, message);
}
absl::Status BadRequest(std::string_view message) { return v1::BadRequest(message); }
absl::Status MailboxChanged() {
  return Error(absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED,
               "the selected mailbox was deleted, renamed away or recreated; select it again");
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------
// UTF-8 and names

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) {
      return false;
    }
    for (int k = 1; k <= extra; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

bool IsInboxComponent(std::string_view component) {
  return absl::EqualsIgnoreCase(AV(component), "INBOX");
}

// Validates a mailbox name and returns its stored form: "INBOX" (and an INBOX
// first component) in capitals, since INBOX is case-insensitive (RFC 3501 §5.1).
absl::StatusOr<std::string> NormalizeMailboxName(std::string_view name,
                                                 const StoreLimits& limits) {
  if (name.empty()) {
    return BadRequest("mailbox name is empty");
  }
  if (!IsValidUtf8(name)) {
    return BadRequest("mailbox name is not valid UTF-8");
  }
  if (HasControl(name)) {
    return BadRequest("mailbox name contains control characters");
  }
  if (name.find_first_of("*%") != std::string_view::npos) {
    return BadRequest("mailbox name contains the wildcard characters '*' or '%'");
  }
  if (name.size() > limits.max_mailbox_name_octets) {
    return Error(absl::StatusCode::kInvalidArgument, v1::LIMIT,
                 absl::StrCat("mailbox name is ", name.size(), " octets, longer than the limit of ",
                              limits.max_mailbox_name_octets));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(AV(name), kDelimiter);
  for (absl::string_view part : parts) {
    if (part.empty()) {
      return BadRequest(
          "mailbox name has an empty hierarchy level (leading, trailing or doubled '/')");
    }
  }
  if (static_cast<int>(parts.size()) > limits.max_mailbox_depth) {
    return Error(absl::StatusCode::kInvalidArgument, v1::LIMIT,
                 absl::StrCat("mailbox name has ", parts.size(),
                              " hierarchy levels, more than the limit of ",
                              limits.max_mailbox_depth));
  }
  std::string result(name);
  if (IsInboxComponent(std::string_view(parts[0].data(), parts[0].size()))) {
    result.replace(0, kInbox.size(), kInbox);
  }
  return result;
}

// The superior names of "a/b/c": "a", "a/b".
std::vector<std::string> Superiors(std::string_view name) {
  std::vector<std::string> out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == kDelimiter) {
      out.emplace_back(name.substr(0, i));
    }
  }
  return out;
}

bool IsInferiorOf(std::string_view name, std::string_view parent) {
  return name.size() > parent.size() + 1 && name.substr(0, parent.size()) == parent &&
         name[parent.size()] == kDelimiter;
}

// RFC 3501 §6.3.8: "*" matches anything, "%" anything but the delimiter.
bool PatternMatches(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0;
  // Backtracking positions of the last "*" and "%" seen; "%" cannot cross a
  // delimiter, so it is retried only until one.
  size_t star_p = std::string_view::npos, star_n = 0;
  size_t pct_p = std::string_view::npos, pct_n = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = p++;
      star_n = n;
      pct_p = std::string_view::npos;
    } else if (p < pattern.size() && pattern[p] == '%') {
      pct_p = p++;
      pct_n = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (pct_p != std::string_view::npos && name[pct_n] != kDelimiter) {
      p = pct_p + 1;
      n = ++pct_n;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      n = ++star_n;
      pct_p = std::string_view::npos;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && (pattern[p] == '*' || pattern[p] == '%')) {
    ++p;
  }
  return p == pattern.size();
}

// Makes a leading "inbox" of a pattern match the stored "INBOX".
std::string NormalizePattern(std::string_view pattern) {
  std::string out(pattern);
  if (out.size() >= kInbox.size() && IsInboxComponent(std::string_view(out).substr(0, 5)) &&
      (out.size() == kInbox.size() || out[kInbox.size()] == kDelimiter)) {
    out.replace(0, kInbox.size(), kInbox);
  }
  return out;
}

bool IsKnownSpecialUse(std::string_view use) {
  static constexpr std::string_view kKnown[] = {"\\All",     "\\Archive", "\\Drafts",
                                                "\\Flagged", "\\Junk",    "\\Sent",
                                                "\\Trash",   "\\Important"};
  for (std::string_view known : kKnown) {
    if (absl::EqualsIgnoreCase(AV(known), AV(use))) {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Flags

struct SystemFlag {
  std::string_view name;
  uint32_t bit;
};
// In the order RFC 3501 §2.3.2 lists them, which is the order they are reported in.
constexpr SystemFlag kSystemFlags[] = {{"\\Answered", 1},
                                       {"\\Flagged", 2},
                                       {"\\Deleted", 4},
                                       {"\\Seen", 8},
                                       {"\\Draft", 16}};
constexpr uint32_t kDeletedBit = 4;
constexpr uint32_t kSeenBit = 8;
constexpr size_t kMaxKeywordOctets = 250;

struct FlagSet {
  uint32_t system = 0;
  std::vector<std::string> keywords;
};

bool ContainsKeyword(const std::vector<std::string>& keywords, std::string_view keyword) {
  return std::any_of(keywords.begin(), keywords.end(), [&](const std::string& k) {
    return absl::EqualsIgnoreCase(k, AV(keyword));
  });
}

// RFC 3501 §9: flag-keyword = atom; atom-specials excluded.
bool IsAtom(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || std::strchr("(){%*\"\\]", c) != nullptr) {
      return false;
    }
  }
  return true;
}

template <typename Range>
absl::StatusOr<FlagSet> ParseFlags(const Range& flags) {
  FlagSet out;
  for (const std::string& flag : flags) {
    if (!flag.empty() && flag[0] == '\\') {
      if (absl::EqualsIgnoreCase(flag, "\\Recent")) {
        return BadRequest("\\Recent cannot be stored: the server sets it (RFC 3501 §2.3.2)");
      }
      bool known = false;
      for (const SystemFlag& system : kSystemFlags) {
        if (absl::EqualsIgnoreCase(flag, AV(system.name))) {
          out.system |= system.bit;
          known = true;
        }
      }
      if (!known) {
        return BadRequest(absl::StrCat("unknown system flag ", flag));
      }
      continue;
    }
    if (!IsAtom(flag) || flag.size() > kMaxKeywordOctets) {
      return BadRequest(absl::StrCat("invalid keyword \"", flag,
                                     "\": keywords are atoms (RFC 3501 §9) of at most ",
                                     kMaxKeywordOctets, " octets"));
    }
    if (!ContainsKeyword(out.keywords, flag)) {
      out.keywords.push_back(flag);
    }
  }
  return out;
}

std::vector<std::string> SplitKeywords(std::string_view stored) {
  std::vector<std::string> out;
  if (stored.empty()) {
    return out;
  }
  for (absl::string_view k : absl::StrSplit(AV(stored), ' ', absl::SkipEmpty())) {
    out.emplace_back(k);
  }
  return out;
}

std::string JoinKeywords(const std::vector<std::string>& keywords) {
  return absl::StrJoin(keywords, " ");
}

std::vector<std::string> FlagList(uint32_t system, std::string_view keywords) {
  std::vector<std::string> out;
  for (const SystemFlag& flag : kSystemFlags) {
    if (system & flag.bit) {
      out.emplace_back(flag.name);
    }
  }
  std::vector<std::string> words = SplitKeywords(keywords);
  out.insert(out.end(), words.begin(), words.end());
  return out;
}

v1::MessageFlags MakeMessageFlags(uint32_t uid, uint32_t system, std::string_view keywords,
                                  uint64_t modseq) {
  v1::MessageFlags out;
  out.set_uid(uid);
  for (std::string& flag : FlagList(system, keywords)) {
    out.add_flags(std::move(flag));
  }
  out.set_modseq(modseq);
  return out;
}

// ---------------------------------------------------------------------------
// UID sets

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

// Sorted, merged ranges of a non-empty, well-formed set.
absl::StatusOr<Ranges> NormalizeUidSet(const v1::UidSet& set) {
  if (set.ranges_size() == 0) {
    return BadRequest("the UID set is empty");
  }
  Ranges ranges;
  for (const v1::UidRange& range : set.ranges()) {
    if (range.first() == 0) {
      return BadRequest("UID 0 is not a valid UID (UIDs start at 1)");
    }
    if (range.first() > range.last()) {
      return BadRequest(absl::StrCat("UID range ", range.first(), ":", range.last(),
                                     " is inverted; send first <= last"));
    }
    ranges.emplace_back(range.first(), range.last());
  }
  std::sort(ranges.begin(), ranges.end());
  Ranges merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && static_cast<uint64_t>(merged.back().second) + 1 >= r.first) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

// Builds a UidSet from ascending UIDs.
class UidSetBuilder {
 public:
  void Add(uint32_t uid) {
    if (set_.ranges_size() > 0 && set_.ranges(set_.ranges_size() - 1).last() + 1 == uid) {
      set_.mutable_ranges(set_.ranges_size() - 1)->set_last(uid);
      return;
    }
    v1::UidRange* range = set_.add_ranges();
    range->set_first(uid);
    range->set_last(uid);
  }
  const v1::UidSet& set() const { return set_; }
  v1::UidSet Take() { return std::move(set_); }

 private:
  v1::UidSet set_;
};

// ---------------------------------------------------------------------------
// Content

struct PreparedContent {
  std::string raw;                  // the content, unless `file` is set
  std::optional<ContentFile> file;  // where to read it in pieces instead
  std::string sha256;               // 32 bytes
  bool parsed = false;
  std::string parsed_blob, envelope, body, bodystructure;
  std::optional<int32_t> sent_date;
  uint64_t header_size = 0;

  uint64_t size() const { return file.has_value() ? file->size : raw.size(); }
};

// Content read from a ContentFile is handled this many octets at a time, so a
// message of any size costs the service one such buffer, not its size.
constexpr size_t kContentPieceOctets = 256 << 10;

absl::Status ContentFileError(std::string_view what, int error) {
  return Error(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
               absl::StrCat("store: message content file: ", std::string(what), ": ",
                            std::strerror(error)));
}

// Reads `length` octets at `offset` of the content into `out`.
absl::Status ReadContentFile(const ContentFile& file, uint64_t offset, size_t length,
                             char* out) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(file.fd, out + done, length - done,
                        static_cast<off_t>(file.offset + offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return ContentFileError("cannot read", n < 0 ? errno : EIO);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Calls `piece` with the content in order, kContentPieceOctets at a time.
template <typename Piece>
absl::Status ForEachContentPiece(const ContentFile& file, Piece piece) {
  std::string buffer(std::min<uint64_t>(kContentPieceOctets, file.size), '\0');
  for (uint64_t done = 0; done < file.size;) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(buffer.size(), file.size - done));
    RETURN_IF_ERROR(ReadContentFile(file, done, length, buffer.data()));
    RETURN_IF_ERROR(piece(done, std::string_view(buffer.data(), length)));
    done += length;
  }
  return absl::OkStatus();
}

// A read-only shared mapping of a ContentFile for the MIME parser, which needs
// the message as one string: its pages are the file's, in the page cache, not
// copies on the heap, and they are unmapped when this object goes.
class MappedContent {
 public:
  static absl::StatusOr<MappedContent> Map(const ContentFile& file) {
    MappedContent mapped;
    if (file.size == 0) {
      return mapped;
    }
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t start = file.offset - file.offset % page;
    mapped.skip_ = static_cast<size_t>(file.offset - start);
    mapped.size_ = static_cast<size_t>(file.size);
    mapped.length_ = mapped.skip_ + mapped.size_;
    void* base = ::mmap(nullptr, mapped.length_, PROT_READ, MAP_SHARED, file.fd,
                        static_cast<off_t>(start));
    if (base == MAP_FAILED) {
      return ContentFileError("cannot map", errno);
    }
    ::madvise(base, mapped.length_, MADV_SEQUENTIAL);
    mapped.base_ = static_cast<char*>(base);
    return mapped;
  }
  MappedContent(MappedContent&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)),
        length_(other.length_),
        skip_(other.skip_),
        size_(other.size_) {}
  MappedContent& operator=(MappedContent&&) = delete;
  ~MappedContent() {
    if (base_ != nullptr) {
      ::munmap(base_, length_);
    }
  }
  std::string_view bytes() const {
    return base_ == nullptr ? std::string_view() : std::string_view(base_ + skip_, size_);
  }

 private:
  MappedContent() = default;
  char* base_ = nullptr;
  size_t length_ = 0;
  size_t skip_ = 0;
  size_t size_ = 0;
};

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), size);
}

// The content's SHA-256, read from its file a piece at a time when it has one.
absl::StatusOr<std::string> ContentSha256(const PreparedContent& content) {
  if (!content.file.has_value()) {
    return Sha256(content.raw);
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (context == nullptr || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG, "store: cannot start SHA-256");
  }
  RETURN_IF_ERROR(ForEachContentPiece(
      *content.file, [&](uint64_t, std::string_view piece) -> absl::Status {
        EVP_DigestUpdate(context.get(), piece.data(), piece.size());
        return absl::OkStatus();
      }));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(context.get(), digest, &size);
  return std::string(reinterpret_cast<const char*>(digest), size);
}

absl::Status ParseContent(PreparedContent& content) {
  std::optional<MappedContent> mapped;
  std::string_view raw = content.raw;
  if (content.file.has_value()) {
    ASSIGN_OR_RETURN(MappedContent map, MappedContent::Map(*content.file));
    mapped.emplace(std::move(map));
    raw = mapped->bytes();
  }
  absl::StatusOr<mime::ParsedMessage> parsed = mime::Parse(raw);
  if (!parsed.ok()) {
    return BadRequest(absl::StrCat("the message cannot be parsed: ", parsed.status().message()));
  }
  content.parsed_blob = mime::Serialize(*parsed);
  content.envelope = std::move(parsed->envelope);
  content.body = std::move(parsed->body);
  content.bodystructure = std::move(parsed->bodystructure);
  content.sent_date = parsed->sent_date;
  content.header_size = parsed->root.header_end;
  content.parsed = true;
  return absl::OkStatus();
}

absl::Status ValidateContentSize(uint64_t size, const StoreLimits& limits) {
  if (size == 0) {
    return BadRequest("a message must not be empty");
  }
  if (size > limits.max_message_octets) {
    return Error(absl::StatusCode::kInvalidArgument, v1::TOOBIG,
                 absl::StrCat("message of ", size, " octets exceeds the limit of ",
                              limits.max_message_octets, " octets"));
  }
  return absl::OkStatus();
}

absl::Status ValidateContentSize(std::string_view content, const StoreLimits& limits) {
  return ValidateContentSize(content.size(), limits);
}

// Copies content from its file into the blob content_data.raw of row `rowid`
// (created as a zeroblob of the content's size) a piece at a time, through
// SQLite's incremental blob I/O: the content is never whole in memory.
absl::Status WriteContentBlob(Connection& conn, int64_t rowid, const ContentFile& file) {
  sqlite3_blob* blob = nullptr;
  int rc = sqlite3_blob_open(conn.raw(), "main", "content_data", "raw", rowid, /*flags=*/1,
                             &blob);
  if (rc != SQLITE_OK) {
    return sqlite::SqliteError(rc, conn.raw(), "blob open content_data.raw for writing");
  }
  absl::Status written = ForEachContentPiece(
      file, [&](uint64_t offset, std::string_view piece) -> absl::Status {
        int rc = sqlite3_blob_write(blob, piece.data(), static_cast<int>(piece.size()),
                                    static_cast<int>(offset));
        return rc == SQLITE_OK ? absl::OkStatus()
                               : sqlite::SqliteError(rc, conn.raw(), "blob write");
      });
  rc = sqlite3_blob_close(blob);
  if (written.ok() && rc != SQLITE_OK) {
    return sqlite::SqliteError(rc, conn.raw(), "blob close");
  }
  return written;
}

// Finds the content row with this hash, or stores it (parsing now if the caller
// did not, e.g. because the content was garbage-collected after it looked).
absl::StatusOr<int64_t> EnsureContent(Connection& conn, PreparedContent& content) {
  {
    ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT id FROM contents WHERE sha256 = ?"));
    find.BindBlob(1, content.sha256);
    ASSIGN_OR_RETURN(bool row, find.Step());
    if (row) {
      return find.Int(0);
    }
  }
  if (!content.parsed) {
    RETURN_IF_ERROR(ParseContent(content));
  }
  ASSIGN_OR_RETURN(Statement insert,
                   conn.Prepare("INSERT INTO contents (sha256, size, parsed, envelope, body, "
                                "bodystructure, sent_date, header_size) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  insert.BindBlob(1, content.sha256)
      .Bind(2, content.size())
      .BindBlob(3, content.parsed_blob)
      .BindText(4, content.envelope)
      .BindText(5, content.body)
      .BindText(6, content.bodystructure)
      .Bind(8, content.header_size);
  if (content.sent_date.has_value()) {
    insert.Bind(7, static_cast<int64_t>(*content.sent_date));
  } else {
    insert.BindNull(7);
  }
  RETURN_IF_ERROR(insert.Run());
  int64_t id = conn.LastInsertRowid();
  if (content.file.has_value()) {
    ASSIGN_OR_RETURN(Statement data, conn.Prepare("INSERT INTO content_data (content_id, raw) "
                                                  "VALUES (?, zeroblob(?))"));
    data.Bind(1, id).Bind(2, content.size());
    RETURN_IF_ERROR(data.Run());
    RETURN_IF_ERROR(WriteContentBlob(conn, id, *content.file));
    return id;
  }
  ASSIGN_OR_RETURN(Statement data,
                   conn.Prepare("INSERT INTO content_data (content_id, raw) VALUES (?, ?)"));
  data.Bind(1, id).BindBlob(2, content.raw);
  RETURN_IF_ERROR(data.Run());
  return id;
}

// Drops content no message refers to any more (refcount kept by triggers).
absl::Status CollectGarbage(Connection& conn) {
  ASSIGN_OR_RETURN(Statement gc, conn.Prepare("DELETE FROM contents WHERE refcount <= 0"));
  return gc.Run();
}

// Retained expunged messages pruned per write transaction at most, so that a
// backlog (e.g. after a mass expunge) never makes one client's write slow.
constexpr int kExpungedPruneBatch = 1000;

// Drops retained expunged messages older than `before_ms` (a bounded batch,
// oldest first) and then content nothing refers to any more.
absl::Status PruneExpunged(Connection& conn, int64_t before_ms) {
  ASSIGN_OR_RETURN(Statement prune,
                   conn.Prepare("DELETE FROM expunged_messages WHERE (mailbox_id, uid) IN "
                                "(SELECT mailbox_id, uid FROM expunged_messages "
                                "WHERE expunged_at_ms < ? ORDER BY expunged_at_ms LIMIT ?)"));
  prune.Bind(1, before_ms).Bind(2, kExpungedPruneBatch);
  RETURN_IF_ERROR(prune.Run());
  if (conn.Changes() == 0) {
    return absl::OkStatus();
  }
  return CollectGarbage(conn);
}

// ---------------------------------------------------------------------------
// Mailbox rows

struct MailboxRow {
  uint64_t id = 0;
  uint64_t user_id = 0;
  std::string name;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  uint32_t recent_floor = 1;
  uint64_t log_floor = 0;
  bool noselect = false;
  std::string special_use;
};

#define MAILBOX_COLUMNS                                                                \
  "id, user_id, name, uidvalidity, uidnext, highest_modseq, recent_floor, log_floor, " \
  "noselect, special_use"

MailboxRow ReadMailbox(const Statement& s) {
  MailboxRow row;
  row.id = s.Int(0);
  row.user_id = s.Int(1);
  row.name = std::string(s.Text(2));
  row.uidvalidity = static_cast<uint32_t>(s.Int(3));
  row.uidnext = static_cast<uint32_t>(s.Int(4));
  row.highest_modseq = s.Int(5);
  row.recent_floor = static_cast<uint32_t>(s.Int(6));
  row.log_floor = s.Int(7);
  row.noselect = s.Int(8) != 0;
  row.special_use = std::string(s.Text(9));
  return row;
}

absl::StatusOr<std::optional<MailboxRow>> MailboxByName(Connection& conn, uint64_t user_id,
                                                        std::string_view name) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE user_id = ? AND name = ?"));
  s.Bind(1, user_id).BindText(2, name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return std::optional<MailboxRow>();
  }
  return std::optional<MailboxRow>(ReadMailbox(s));
}

// A selectable mailbox the caller names by name: NONEXISTENT if missing, CANNOT
// if it is \Noselect.
absl::StatusOr<MailboxRow> SelectableByName(Connection& conn, uint64_t user_id,
                                            std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn, user_id, name));
  if (!row.has_value()) {
    return v1::Nonexistent(absl::StrCat("mailbox \"", AV(name), "\" does not exist"));
  }
  if (row->noselect) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 absl::StrCat("mailbox \"", AV(name),
                              "\" is \\Noselect: it only holds other mailboxes"));
  }
  return *std::move(row);
}

// The mailbox a session selected, named by (id, uidvalidity).
absl::StatusOr<MailboxRow> SelectedMailbox(Connection& conn, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE id = ? AND user_id = ?"));
  s.Bind(1, mailbox_id).Bind(2, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return MailboxChanged();
  }
  MailboxRow mailbox = ReadMailbox(s);
  if (mailbox.uidvalidity != uidvalidity || mailbox.noselect) {
    return MailboxChanged();
  }
  return mailbox;
}

absl::StatusOr<std::vector<MailboxRow>> UserMailboxes(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE user_id = ? ORDER BY name"));
  s.Bind(1, user_id);
  std::vector<MailboxRow> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    out.push_back(ReadMailbox(s));
  }
  return out;
}

absl::StatusOr<bool> HasInferiors(Connection& conn, uint64_t user_id, std::string_view name) {
  // Names are compared as bytes (BINARY collation), and every inferior of "a"
  // sorts in ["a/", "a0") since '0' follows '/'.
  std::string low = absl::StrCat(AV(name), "/");
  std::string high = absl::StrCat(AV(name), "0");
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("SELECT 1 FROM mailboxes WHERE user_id = ? AND name > ? "
                                "AND name < ? LIMIT 1"));
  s.Bind(1, user_id).BindText(2, low).BindText(3, high);
  return s.Step();
}

absl::StatusOr<bool> UserExists(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT 1 FROM users WHERE id = ?"));
  s.Bind(1, user_id);
  return s.Step();
}

absl::StatusOr<uint32_t> NextUidValidity(Connection& conn) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("UPDATE meta SET value = value + 1 "
                                "WHERE name = 'uidvalidity_counter' RETURNING value"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 "store: the UIDVALIDITY counter is missing");
  }
  int64_t value = s.Int(0);
  if (value <= 0 || value > std::numeric_limits<uint32_t>::max()) {
    return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                 "store: UIDVALIDITY values are exhausted");
  }
  return static_cast<uint32_t>(value);
}

// Draws the next id from a counter of schema version 3 (`sql` is one of the two
// statements below). Ids are never reused: session tokens name users by id, and
// change events name mailboxes by id. The max() keeps the counter above any row
// written without it (e.g. by hand, or before the counter existed).
absl::StatusOr<uint64_t> NextId(Connection& conn, const char* sql, std::string_view what) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare(sql));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 absl::StrCat("store: the ", AV(what), " id counter is missing"));
  }
  return static_cast<uint64_t>(s.Int(0));
}

absl::StatusOr<uint64_t> NextUserId(Connection& conn) {
  return NextId(conn,
                "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM users)) + 1 "
                "WHERE name = 'user_id_counter' RETURNING value",
                "user");
}

absl::StatusOr<uint64_t> NextMailboxId(Connection& conn) {
  return NextId(conn,
                "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM mailboxes)) "
                "+ 1 WHERE name = 'mailbox_id_counter' RETURNING value",
                "mailbox");
}

// Inserts a new selectable mailbox.
absl::StatusOr<MailboxRow> InsertMailbox(Connection& conn, uint64_t user_id,
                                         std::string_view name, std::string_view special_use) {
  MailboxRow row;
  ASSIGN_OR_RETURN(row.uidvalidity, NextUidValidity(conn));
  ASSIGN_OR_RETURN(row.id, NextMailboxId(conn));
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO mailboxes (id, user_id, name, uidvalidity, "
                                "special_use) VALUES (?, ?, ?, ?, ?)"));
  s.Bind(1, row.id)
      .Bind(2, user_id)
      .BindText(3, name)
      .Bind(4, row.uidvalidity)
      .BindText(5, special_use);
  RETURN_IF_ERROR(s.Run());
  row.user_id = user_id;
  row.name = std::string(name);
  row.highest_modseq = 1;
  row.special_use = std::string(special_use);
  return row;
}

absl::Status RememberKeywords(Connection& conn, uint64_t mailbox_id,
                              const std::vector<std::string>& keywords) {
  for (const std::string& keyword : keywords) {
    ASSIGN_OR_RETURN(Statement s,
                     conn.Prepare("INSERT INTO mailbox_keywords (mailbox_id, keyword) "
                                  "VALUES (?, ?) ON CONFLICT DO NOTHING"));
    s.Bind(1, mailbox_id).BindText(2, keyword);
    RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

absl::Status CheckUidSpace(const MailboxRow& mailbox, size_t count) {
  if (static_cast<uint64_t>(mailbox.uidnext) + count > std::numeric_limits<uint32_t>::max()) {
    return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                 absl::StrCat("mailbox \"", mailbox.name,
                              "\" has run out of UIDs; rename it and create it again"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Message rows

struct MessageRow {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  uint32_t system = 0;
  std::string keywords;
  int64_t content_id = 0;
  int64_t internal_date = 0;
  int32_t internal_tz = 0;
};

// Messages of `ranges` in ascending UID order, filtered by `keep`.
template <typename Keep>
absl::StatusOr<std::vector<MessageRow>> LoadMessages(Connection& conn, uint64_t mailbox_id,
                                                     const Ranges& ranges, Keep keep) {
  std::vector<MessageRow> out;
  for (const auto& [first, last] : ranges) {
    ASSIGN_OR_RETURN(Statement s,
                     conn.Prepare("SELECT uid, modseq, system_flags, keywords, content_id, "
                                  "internal_date, internal_tz FROM messages "
                                  "WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid"));
    s.Bind(1, mailbox_id).Bind(2, first).Bind(3, last);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      MessageRow m;
      m.uid = static_cast<uint32_t>(s.Int(0));
      m.modseq = s.Int(1);
      m.system = static_cast<uint32_t>(s.Int(2));
      m.keywords = std::string(s.Text(3));
      m.content_id = s.Int(4);
      m.internal_date = s.Int(5);
      m.internal_tz = static_cast<int32_t>(s.Int(6));
      if (keep(m)) {
        out.push_back(std::move(m));
      }
    }
  }
  return out;
}

const Ranges& AllUids() {
  static const auto* all = new Ranges{{1, std::numeric_limits<uint32_t>::max()}};
  return *all;
}

absl::Status InsertMessage(Connection& conn, uint64_t mailbox_id, uint32_t uid,
                           int64_t content_id, uint64_t modseq, uint32_t system,
                           std::string_view keywords, int64_t internal_date,
                           int32_t internal_tz) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO messages (mailbox_id, uid, content_id, modseq, "
                                "system_flags, keywords, internal_date, internal_tz) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  s.Bind(1, mailbox_id)
      .Bind(2, uid)
      .Bind(3, content_id)
      .Bind(4, modseq)
      .Bind(5, system)
      .BindText(6, keywords)
      .Bind(7, internal_date)
      .Bind(8, internal_tz);
  return s.Run();
}

// Copies the live messages of [first, last] into expunged_messages, stamped
// `now_ms`; the insert trigger takes a content reference for each.
absl::Status RetainMessages(Connection& conn, uint64_t mailbox_id, uint32_t first,
                            uint32_t last, int64_t now_ms) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO expunged_messages (mailbox_id, uid, content_id, "
                                "modseq, system_flags, keywords, internal_date, internal_tz, "
                                "expunged_at_ms) "
                                "SELECT mailbox_id, uid, content_id, modseq, system_flags, "
                                "keywords, internal_date, internal_tz, ? FROM messages "
                                "WHERE mailbox_id = ? AND uid BETWEEN ? AND ?"));
  s.Bind(1, now_ms).Bind(2, mailbox_id).Bind(3, first).Bind(4, last);
  return s.Run();
}

absl::Status DeleteMessage(Connection& conn, uint64_t mailbox_id, uint32_t uid) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?"));
  s.Bind(1, mailbox_id).Bind(2, uid);
  return s.Run();
}

absl::Status SetUidNext(Connection& conn, uint64_t mailbox_id, uint32_t uidnext) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE mailboxes SET uidnext = ? WHERE id = ?"));
  s.Bind(1, uidnext).Bind(2, mailbox_id);
  return s.Run();
}

absl::StatusOr<std::vector<uint32_t>> AllUidsOf(Connection& conn, uint64_t mailbox_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT uid FROM messages WHERE mailbox_id = ? "
                                             "ORDER BY uid"));
  s.Bind(1, mailbox_id);
  std::vector<uint32_t> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    out.push_back(static_cast<uint32_t>(s.Int(0)));
  }
}

absl::Status ValidateUsername(std::string_view username) {
  if (username.empty()) {
    return BadRequest("username is empty");
  }
  if (username.size() > 255) {
    return BadRequest("username is longer than 255 octets");
  }
  if (!IsValidUtf8(username)) {
    return BadRequest("username is not valid UTF-8");
  }
  if (HasControl(username)) {
    return BadRequest("username contains control characters");
  }
  return absl::OkStatus();
}

absl::Status ValidateInternalDate(const NewMessage& message) {
  if (!message.has_internal_date) {
    return absl::OkStatus();
  }
  if (message.internal_date_tz_minutes <= -24 * 60 || message.internal_date_tz_minutes >= 24 * 60) {
    return BadRequest("internal date zone offset out of range");
  }
  // RFC 3501 §9 date-year is 4DIGIT: a date outside 0001..9999 could never be
  // sent back in FETCH INTERNALDATE.
  constexpr int64_t kMin = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  if (message.internal_date_unix < kMin || message.internal_date_unix > kMax) {
    return BadRequest(absl::StrCat("internal date ", message.internal_date_unix,
                                   " is outside the years 1 to 9999"));
  }
  return absl::OkStatus();
}

// RFC 7162 §7: mod-sequence values are 63-bit. SQLite integers are signed 64-bit,
// so a larger value bound as a parameter would turn negative and compare below
// every MODSEQ.
constexpr uint64_t kMaxModseq = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// ---------------------------------------------------------------------------
// Fetch streaming

// Cuts one section's bytes into SectionChunks of at most `chunk` octets, after
// skipping `skip` octets (<partial> offset) and stopping at `total`.
class SectionStreamer {
 public:
  SectionStreamer(FetchSink& sink, uint32_t uid, uint32_t index, uint64_t skip, uint64_t total,
                  size_t chunk)
      : sink_(sink), uid_(uid), index_(index), skip_(skip), total_(total), chunk_(chunk) {}

  uint64_t skip_remaining() const { return skip_; }
  void Skip(uint64_t n) { skip_ -= n; }
  bool done() const { return skip_ == 0 && emitted_ + buffer_.size() >= total_; }

  // False if the receiver cancelled.
  bool Feed(std::string_view data) {
    if (skip_ > 0) {
      uint64_t n = std::min<uint64_t>(skip_, data.size());
      data.remove_prefix(n);
      skip_ -= n;
    }
    uint64_t room = total_ - emitted_ - buffer_.size();
    if (data.size() > room) {
      data = data.substr(0, room);
    }
    buffer_.append(data);
    // Hold back the chunk that completes the section, so it goes out with last.
    while (buffer_.size() >= chunk_ && emitted_ + chunk_ < total_) {
      if (!Emit(std::string_view(buffer_).substr(0, chunk_), false)) {
        return false;
      }
      buffer_.erase(0, chunk_);
    }
    return true;
  }

  bool Finish() {
    // The first chunk announced total_size, which the gateway sends as the literal
    // length; should the stored structure ever disagree with the bytes, keep the
    // announced length rather than corrupt the IMAP stream.
    if (emitted_ + buffer_.size() < total_) {
      buffer_.append(total_ - emitted_ - buffer_.size(), '\0');
    }
    while (buffer_.size() > chunk_) {
      if (!Emit(std::string_view(buffer_).substr(0, chunk_), false)) {
        return false;
      }
      buffer_.erase(0, chunk_);
    }
    return Emit(buffer_, true);
  }

 private:
  bool Emit(std::string_view data, bool last) {
    v1::FetchResponse response;
    v1::SectionChunk* chunk = response.mutable_chunk();
    chunk->set_uid(uid_);
    chunk->set_section_index(index_);
    if (first_) {
      chunk->set_total_size(total_);
      first_ = false;
    }
    chunk->set_data(std::string(data));
    chunk->set_last(last);
    emitted_ += data.size();
    return sink_.Send(response);
  }

  FetchSink& sink_;
  uint32_t uid_, index_;
  uint64_t skip_, total_;
  size_t chunk_;
  uint64_t emitted_ = 0;
  bool first_ = true;
  std::string buffer_;
};

absl::Status ValidateSection(const v1::Section& section) {
  for (uint32_t part : section.part()) {
    if (part == 0) {
      return BadRequest("section part numbers start at 1");
    }
  }
  if (section.text() == v1::Section::MIME && section.part().empty()) {
    return BadRequest("MIME needs a part number (RFC 3501 §6.4.5)");
  }
  if ((section.binary() || section.size_only()) && section.text() != v1::Section::TEXT_NONE) {
    return BadRequest("BINARY sections take only part numbers (RFC 3516 §4.1)");
  }
  if ((section.text() == v1::Section::HEADER_FIELDS ||
       section.text() == v1::Section::HEADER_FIELDS_NOT) &&
      section.fields().empty()) {
    return BadRequest("HEADER.FIELDS needs at least one field name");
  }
  return absl::OkStatus();
}

mime::SectionSpec ToSpec(const v1::Section& section) {
  mime::SectionSpec spec;
  spec.part.assign(section.part().begin(), section.part().end());
  switch (section.text()) {
    case v1::Section::HEADER:
      spec.text = mime::SectionSpec::Text::kHeader;
      break;
    case v1::Section::HEADER_FIELDS:
      spec.text = mime::SectionSpec::Text::kHeaderFields;
      break;
    case v1::Section::HEADER_FIELDS_NOT:
      spec.text = mime::SectionSpec::Text::kHeaderFieldsNot;
      break;
    case v1::Section::TEXT:
      spec.text = mime::SectionSpec::Text::kText;
      break;
    case v1::Section::MIME:
      spec.text = mime::SectionSpec::Text::kMime;
      break;
    default:
      spec.text = mime::SectionSpec::Text::kNone;
  }
  spec.fields.assign(section.fields().begin(), section.fields().end());
  spec.binary = section.binary() || section.size_only();
  return spec;
}

absl::Status Cancelled() { return absl::CancelledError("fetch cancelled by the receiver"); }

// ---------------------------------------------------------------------------
// Search candidates

class StoredSearchMessage final : public SearchMessage {
 public:
  // Loading the whole content takes room from `memory` (see
  // StoreLimits::max_search_memory_octets), waiting for it until `deadline`.
  StoredSearchMessage(Connection& conn, const Statement& row, OctetGate& memory,
                      absl::Time deadline)
      : conn_(conn), memory_(memory), deadline_(deadline) {
    uid_ = static_cast<uint32_t>(row.Int(0));
    modseq_ = row.Int(1);
    flags_ = FlagList(static_cast<uint32_t>(row.Int(2)), row.Text(3));
    content_id_ = row.Int(4);
    date_ = row.Int(5);
    tz_ = static_cast<int32_t>(row.Int(6));
    size_ = row.Int(7);
    if (!row.IsNull(8)) {
      sent_date_ = static_cast<int32_t>(row.Int(8));
    }
    header_size_ = row.Int(9);
  }

  uint32_t uid() const override { return uid_; }
  uint64_t modseq() const override { return modseq_; }
  const std::vector<std::string>& flags() const override { return flags_; }
  int64_t internal_date_unix() const override { return date_; }
  int32_t internal_date_tz_minutes() const override { return tz_; }
  uint64_t size() const override { return size_; }
  std::optional<int32_t> sent_date() override { return sent_date_; }

  std::string_view header_block() override {
    if (!header_.has_value()) {
      header_.emplace();
      if (content_.has_value()) {
        header_->assign(content_->substr(0, header_size_));
      } else if (absl::StatusOr<BlobReader> blob =
                     conn_.OpenBlob("content_data", "raw", content_id_);
                 blob.ok()) {
        status_.Update(blob->Read(0, std::min<uint64_t>(header_size_, blob->size()), &*header_));
      } else {
        status_.Update(blob.status());
      }
    }
    return *header_;
  }

  const mime::ParsedMessage& parsed() override {
    if (!parsed_.has_value()) {
      parsed_.emplace();
      absl::StatusOr<Statement> s = conn_.Prepare("SELECT parsed FROM contents WHERE id = ?");
      if (!s.ok()) {
        status_.Update(s.status());
        return *parsed_;
      }
      s->Bind(1, content_id_);
      absl::StatusOr<bool> row = s->Step();
      if (!row.ok()) {
        status_.Update(row.status());
      } else if (!*row) {
        status_.Update(Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                             "store: message content row is missing"));
      } else {
        absl::StatusOr<mime::ParsedMessage> message = mime::Deserialize(s->Blob(0));
        if (message.ok()) {
          *parsed_ = *std::move(message);
        } else {
          status_.Update(message.status());
        }
      }
    }
    return *parsed_;
  }

  std::string_view content() override {
    if (!content_.has_value()) {
      content_.emplace();
      absl::StatusOr<BlobReader> blob = conn_.OpenBlob("content_data", "raw", content_id_);
      if (!blob.ok()) {
        status_.Update(blob.status());
        return *content_;
      }
      absl::StatusOr<OctetGate::Hold> hold = memory_.Acquire(2 * blob->size(), deadline_);
      if (!hold.ok()) {
        status_.Update(hold.status());
        return *content_;
      }
      memory_hold_ = *std::move(hold);
      status_.Update(blob->Read(0, blob->size(), &*content_));
    }
    return *content_;
  }

  // A storage failure while loading; the search fails with it rather than
  // silently missing a message.
  const absl::Status& status() const { return status_; }

 private:
  Connection& conn_;
  uint32_t uid_;
  uint64_t modseq_;
  std::vector<std::string> flags_;
  int64_t content_id_;
  int64_t date_;
  int32_t tz_;
  uint64_t size_;
  std::optional<int32_t> sent_date_;
  uint64_t header_size_;
  std::optional<std::string> header_;
  std::optional<mime::ParsedMessage> parsed_;
  OctetGate::Hold memory_hold_;  // declared first, so released after content_ is freed
  std::optional<std::string> content_;
  OctetGate& memory_;
  absl::Time deadline_;
  absl::Status status_;
};

// The UIDs a search can match at most: the key's own UID set, or that of an AND
// member (a cheap pre-filter; Matches() still decides).
Ranges CandidateRanges(const v1::SearchKey& key) {
  const v1::UidSet* set = nullptr;
  if (key.key_case() == v1::SearchKey::kUid) {
    set = &key.uid();
  } else if (key.key_case() == v1::SearchKey::kAnd) {
    for (const v1::SearchKey& member : key.and_().keys()) {
      if (member.key_case() == v1::SearchKey::kUid) {
        set = &member.uid();
        break;
      }
    }
  }
  if (set != nullptr) {
    if (set->ranges_size() == 0) {
      return Ranges();  // an empty set (a sequence set that resolved to nothing)
    }
    absl::StatusOr<Ranges> ranges = NormalizeUidSet(*set);
    if (ranges.ok()) {
      return *ranges;
    }
  }
  return AllUids();
}

// A read transaction on a reader connection: one consistent snapshot.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Connection& conn) : conn_(conn) {}
  absl::Status Begin() {
    RETURN_IF_ERROR(conn_.Exec("BEGIN"));
    open_ = true;
    return absl::OkStatus();
  }
  ~ReadSnapshot() {
    if (open_ && !conn_.Exec("COMMIT").ok()) {
      conn_.Exec("ROLLBACK").IgnoreError();
    }
  }

 private:
  Connection& conn_;
  bool open_ = false;
};

}  // namespace

// ---------------------------------------------------------------------------
// Transactions and connections

class SqliteStore::WriteTx {
 public:
  // `now_ms` stamps messages this transaction expunges; with `retain_expunged`
  // false they are dropped at once instead of retained.
  WriteTx(Connection& conn, uint64_t retention, int64_t now_ms, bool retain_expunged)
      : conn_(conn), retention_(retention), now_ms_(now_ms), retain_expunged_(retain_expunged) {}

  Connection& conn() { return conn_; }

  // Expunges one message. It stays fetchable (FetchRequest.include_expunged) for
  // the retention window, for sessions not yet told (RFC 3501 §7.4.1).
  absl::Status ExpungeMessage(uint64_t mailbox_id, uint32_t uid) {
    if (retain_expunged_) {
      RETURN_IF_ERROR(RetainMessages(conn_, mailbox_id, uid, uid, now_ms_));
    }
    return DeleteMessage(conn_, mailbox_id, uid);
  }

  // Retains every live message of the mailbox, for a caller that then moves them
  // all out of it (RENAME INBOX).
  absl::Status RetainAllMessages(uint64_t mailbox_id) {
    if (!retain_expunged_) {
      return absl::OkStatus();
    }
    return RetainMessages(conn_, mailbox_id, 1, std::numeric_limits<uint32_t>::max(), now_ms_);
  }

  // Allocates the mailbox's next MODSEQ in this transaction (RFC 7162 §3.1.1).
  absl::StatusOr<uint64_t> NextModseq(uint64_t mailbox_id) {
    ASSIGN_OR_RETURN(Statement s,
                     conn_.Prepare("UPDATE mailboxes SET highest_modseq = highest_modseq + 1 "
                                   "WHERE id = ? RETURNING highest_modseq"));
    s.Bind(1, mailbox_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                   "store: mailbox vanished inside its own transaction");
    }
    return static_cast<uint64_t>(s.Int(0));
  }

  // Logs `event` (mailbox_id and modseq set) and queues it for the sink. Prunes the
  // log to the latest `retention` MODSEQs of the mailbox; ReadChanges from before
  // them is RESYNC.
  absl::Status Log(v1::ChangeEvent event) {
    std::string blob = event.SerializeAsString();
    {
      ASSIGN_OR_RETURN(Statement s,
                       conn_.Prepare("INSERT INTO changes (mailbox_id, modseq, event) "
                                     "VALUES (?, ?, ?)"));
      s.Bind(1, event.mailbox_id()).Bind(2, event.modseq()).BindBlob(3, blob);
      RETURN_IF_ERROR(s.Run());
    }
    if (event.modseq() > retention_) {
      uint64_t floor = event.modseq() - retention_;
      ASSIGN_OR_RETURN(Statement prune,
                       conn_.Prepare("DELETE FROM changes WHERE mailbox_id = ? AND modseq <= ?"));
      prune.Bind(1, event.mailbox_id()).Bind(2, floor);
      RETURN_IF_ERROR(prune.Run());
      if (conn_.Changes() > 0) {
        ASSIGN_OR_RETURN(Statement s,
                         conn_.Prepare("UPDATE mailboxes SET log_floor = max(log_floor, ?) "
                                       "WHERE id = ?"));
        s.Bind(1, floor).Bind(2, event.mailbox_id());
        RETURN_IF_ERROR(s.Run());
      }
    }
    events_.push_back(std::move(event));
    return absl::OkStatus();
  }

  // Allocates a MODSEQ and logs the event built by `fill` at it.
  template <typename Fill>
  absl::StatusOr<uint64_t> LogChange(uint64_t mailbox_id, Fill fill) {
    ASSIGN_OR_RETURN(uint64_t modseq, NextModseq(mailbox_id));
    v1::ChangeEvent event;
    event.set_mailbox_id(mailbox_id);
    event.set_modseq(modseq);
    fill(event, modseq);
    RETURN_IF_ERROR(Log(std::move(event)));
    return modseq;
  }

  absl::StatusOr<uint64_t> LogExpunged(uint64_t mailbox_id, const std::vector<uint32_t>& uids) {
    return LogChange(mailbox_id, [&](v1::ChangeEvent& event, uint64_t) {
      UidSetBuilder set;
      for (uint32_t uid : uids) {
        set.Add(uid);
      }
      *event.mutable_expunged()->mutable_uids() = set.Take();
    });
  }

  absl::StatusOr<uint64_t> LogDeleted(uint64_t mailbox_id) {
    return LogChange(mailbox_id,
                     [](v1::ChangeEvent& event, uint64_t) { event.mutable_deleted(); });
  }

  // An event for subscribers that is not a change of the mailbox: it gets no MODSEQ
  // and no row in the change log (so no replay sees it), only the live feeds.
  void Announce(v1::ChangeEvent event) { events_.push_back(std::move(event)); }

  std::vector<v1::ChangeEvent>& events() { return events_; }

 private:
  Connection& conn_;
  uint64_t retention_;
  int64_t now_ms_;
  bool retain_expunged_;
  std::vector<v1::ChangeEvent> events_;
};

class SqliteStore::ReaderLease {
 public:
  ReaderLease(SqliteStore* store, std::unique_ptr<Connection> conn)
      : store_(store), conn_(std::move(conn)) {}
  ReaderLease(ReaderLease&& other) noexcept = default;
  ~ReaderLease() {
    if (conn_ != nullptr) {
      store_->ReturnReader(std::move(conn_));
    }
  }
  Connection& operator*() { return *conn_; }
  Connection* operator->() { return conn_.get(); }

 private:
  SqliteStore* store_;
  std::unique_ptr<Connection> conn_;
};

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               StoreLimits limits,
                                                               EventSink events) {
  return Open(path, limits, std::move(events), Options());
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               StoreLimits limits,
                                                               EventSink events,
                                                               Options options) {
  if (limits.fetch_chunk_octets == 0) {
    return absl::InvalidArgumentError("store: fetch_chunk_octets must be positive");
  }
  if (options.change_log_retention == 0) {
    return absl::InvalidArgumentError("store: change_log_retention must be positive");
  }
  if (options.expunged_retention.count() < 0) {
    return absl::InvalidArgumentError("store: expunged_retention must not be negative");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> writer, Connection::Open(path, false));
  RETURN_IF_ERROR(sqlite::Migrate(*writer));
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(path, limits, std::move(events), options, std::move(writer)));
}

SqliteStore::SqliteStore(std::string path, StoreLimits limits, EventSink events,
                         Options options, std::unique_ptr<Connection> writer)
    : path_(std::move(path)),
      limits_(limits),
      events_(std::move(events)),
      options_(options),
      writer_(std::move(writer)),
      search_memory_(limits.max_search_memory_octets,
                     "the mailbox service is busy with other searches of large messages; try "
                     "again") {}

SqliteStore::~SqliteStore() = default;

struct SqliteStore::PendingWrite {
  absl::FunctionRef<absl::Status(WriteTx&)> body;
  absl::Status status;
  bool done = false;  // guarded by commit_mutex_
};

template <typename Body>
absl::Status SqliteStore::Write(Body&& body) {
  PendingWrite write{absl::FunctionRef<absl::Status(WriteTx&)>(body)};
  std::unique_lock<std::mutex> lock(commit_mutex_);
  commit_queue_.push_back(&write);
  commit_ready_.wait(lock, [&] { return write.done || !committing_; });
  if (write.done) {
    return write.status;  // committed (or failed) in another caller's batch
  }
  // This caller commits every write queued meanwhile, its own included: those that
  // arrived during the previous commit's fsync share this one.
  committing_ = true;
  std::vector<PendingWrite*> batch;
  batch.swap(commit_queue_);
  lock.unlock();
  CommitBatch(batch);
  lock.lock();
  for (PendingWrite* pending : batch) {
    pending->done = true;
  }
  committing_ = false;
  lock.unlock();
  commit_ready_.notify_all();
  return write.status;
}

void SqliteStore::CommitBatch(const std::vector<PendingWrite*>& batch) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  Connection& conn = *writer_;
  auto fail_all = [&](const absl::Status& status) {
    for (PendingWrite* pending : batch) {
      pending->status = status;
    }
  };
  if (absl::Status begun = conn.Exec("BEGIN IMMEDIATE"); !begun.ok()) {
    fail_all(begun);
    return;
  }
  const int64_t now_ms = NowMs();
  const int64_t retention_ms = options_.expunged_retention.count();
  const bool grouped = batch.size() > 1;
  std::vector<std::vector<v1::ChangeEvent>> events(batch.size());
  bool any_ok = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    PendingWrite& write = *batch[i];
    if (grouped) {
      if (absl::Status saved = conn.Exec("SAVEPOINT one_write"); !saved.ok()) {
        conn.Exec("ROLLBACK").IgnoreError();
        fail_all(saved);
        return;
      }
    }
    WriteTx tx(conn, options_.change_log_retention, now_ms, retention_ms > 0);
    write.status = write.body(tx);
    if (!conn.InTransaction()) {
      // SQLite rolled the whole transaction back itself (an I/O error, a full
      // disk): the writes before this one are lost with it, the rest not tried.
      fail_all(write.status.ok() ? Error(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
                                         "store: the transaction was rolled back")
                                 : write.status);
      return;
    }
    if (grouped) {
      absl::Status ended = write.status.ok()
                               ? conn.Exec("RELEASE one_write")
                               : conn.Exec("ROLLBACK TO one_write; RELEASE one_write");
      if (!ended.ok()) {
        conn.Exec("ROLLBACK").IgnoreError();
        fail_all(ended);
        return;
      }
    }
    if (write.status.ok()) {
      events[i] = std::move(tx.events());
      any_ok = true;
    }
  }
  absl::Status status = absl::OkStatus();
  if (any_ok) {
    // Every transaction pays a little of the retention cleanup, so no background
    // thread is needed and the work happens where the write lock is already held.
    status = PruneExpunged(conn, now_ms - retention_ms);
    if (status.ok()) {
      status = conn.Exec("COMMIT");
    }
  } else {
    status = conn.Exec("ROLLBACK");
  }
  if (!status.ok()) {
    conn.Exec("ROLLBACK").IgnoreError();
    for (PendingWrite* pending : batch) {
      if (pending->status.ok()) {
        pending->status = status;
      }
    }
    return;
  }
  // After COMMIT (the changes are durable) and still under the write mutex, so the
  // sink receives each mailbox's events in MODSEQ order (store.h).
  if (events_) {
    for (const std::vector<v1::ChangeEvent>& logged : events) {
      for (const v1::ChangeEvent& event : logged) {
        events_(event);
      }
    }
  }
}

int64_t SqliteStore::NowMs() const {
  std::chrono::system_clock::time_point now =
      options_.clock ? options_.clock() : std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
}

absl::StatusOr<SqliteStore::ReaderLease> SqliteStore::Reader() {
  {
    std::lock_guard<std::mutex> lock(readers_mutex_);
    if (!idle_readers_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return ReaderLease(this, std::move(conn));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(path_, true));
  if (limits_.reader_cache_kib > 0) {
    RETURN_IF_ERROR(
        conn->Exec(absl::StrCat("PRAGMA cache_size = -", limits_.reader_cache_kib).c_str()));
  }
  return ReaderLease(this, std::move(conn));
}

void SqliteStore::ReturnReader(std::unique_ptr<Connection> conn) {
  if (conn->InTransaction()) {
    // A snapshot that failed to end would pin an old WAL read mark and break the
    // next BEGIN: never reuse such a connection.
    return;
  }
  std::lock_guard<std::mutex> lock(readers_mutex_);
  if (static_cast<int>(idle_readers_.size()) < options_.max_idle_readers) {
    idle_readers_.push_back(std::move(conn));
  }
}

// ---------------------------------------------------------------------------
// Users and credentials

absl::StatusOr<uint64_t> SqliteStore::CreateUser(std::string_view username,
                                                 std::string_view password_hash) {
  RETURN_IF_ERROR(ValidateUsername(username));
  uint64_t user_id = 0;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    {
      ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT 1 FROM users WHERE username = ?"));
      find.BindText(1, username);
      ASSIGN_OR_RETURN(bool exists, find.Step());
      if (exists) {
        return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                     absl::StrCat("user \"", AV(username), "\" already exists"));
      }
    }
    ASSIGN_OR_RETURN(user_id, NextUserId(conn));
    ASSIGN_OR_RETURN(Statement insert,
                     conn.Prepare("INSERT INTO users (id, username, password_hash) "
                                  "VALUES (?, ?, ?)"));
    insert.Bind(1, user_id).BindText(2, username).BindText(3, password_hash);
    RETURN_IF_ERROR(insert.Run());
    return InsertMailbox(conn, user_id, kInbox, "").status();
  }));
  return user_id;
}

absl::Status SqliteStore::DeleteUser(std::string_view username) {
  return Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT id FROM users WHERE username = ?"));
    find.BindText(1, username);
    ASSIGN_OR_RETURN(bool exists, find.Step());
    if (!exists) {
      return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
    }
    uint64_t user_id = find.Int(0);
    ASSIGN_OR_RETURN(std::vector<MailboxRow> mailboxes, UserMailboxes(conn, user_id));
    for (const MailboxRow& mailbox : mailboxes) {
      // Sessions that selected one of these mailboxes must drop it.
      RETURN_IF_ERROR(tx.LogDeleted(mailbox.id).status());
    }
    ASSIGN_OR_RETURN(Statement del, conn.Prepare("DELETE FROM users WHERE id = ?"));
    del.Bind(1, user_id);
    // Cascades to mailboxes, messages (whose trigger drops content references),
    // the change log and subscriptions.
    RETURN_IF_ERROR(del.Run());
    return CollectGarbage(conn);
  });
}

absl::Status SqliteStore::SetPasswordHash(std::string_view username,
                                          std::string_view password_hash) {
  return Write([&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s,
                     tx.conn().Prepare("UPDATE users SET password_hash = ?, "
                                       "credential_generation = credential_generation + 1 "
                                       "WHERE username = ?"));
    s.BindText(1, password_hash).BindText(2, username);
    RETURN_IF_ERROR(s.Run());
    if (tx.conn().Changes() == 0) {
      return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
    }
    // Sessions that only listen to the change feed (IDLE) send nothing the
    // service could refuse: tell every feed of the user's mailboxes that the
    // credential behind its subscription is gone, as DeleteUser does with its
    // Deleted events, so the gateway ends those sessions now.
    ASSIGN_OR_RETURN(Statement find,
                     tx.conn().Prepare("SELECT id FROM users WHERE username = ?"));
    find.BindText(1, username);
    ASSIGN_OR_RETURN(bool found, find.Step());
    if (!found) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::vector<MailboxRow> mailboxes,
                     UserMailboxes(tx.conn(), static_cast<uint64_t>(find.Int(0))));
    for (const MailboxRow& mailbox : mailboxes) {
      v1::ChangeEvent event;
      event.set_mailbox_id(mailbox.id);
      v1::ErrorDetail* reason = event.mutable_resync()->mutable_reason();
      reason->set_code(v1::AUTHENTICATIONFAILED);
      reason->set_message(
          "the password of this account was changed after this session logged in; log in "
          "again");
      tx.Announce(std::move(event));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<UserRecord> SqliteStore::FindUser(std::string_view username) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation "
                                 "FROM users WHERE username = ?"));
  s.BindText(1, username);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
  }
  return UserRecord{static_cast<uint64_t>(s.Int(0)), std::string(s.Text(1)),
                    std::string(s.Text(2)), static_cast<uint64_t>(s.Int(3))};
}

absl::StatusOr<UserRecord> SqliteStore::FindUserById(uint64_t user_id) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation "
                                 "FROM users WHERE id = ?"));
  s.Bind(1, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
  }
  return UserRecord{static_cast<uint64_t>(s.Int(0)), std::string(s.Text(1)),
                    std::string(s.Text(2)), static_cast<uint64_t>(s.Int(3))};
}

absl::StatusOr<std::vector<UserRecord>> SqliteStore::ListUsers() {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation "
                                 "FROM users ORDER BY username"));
  std::vector<UserRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    out.push_back(UserRecord{static_cast<uint64_t>(s.Int(0)), std::string(s.Text(1)),
                             std::string(s.Text(2)), static_cast<uint64_t>(s.Int(3))});
  }
}

namespace {

// Rows deleted by age per call: bounded work per login, and enough to keep up with
// any rate of inserts, since every insert comes with one such call.
constexpr int64_t kAuthPruneBatch = 256;

// Drops throttle rows older than `oldest_ms`, of any key, a batch at a time.
absl::Status PruneAuthFailures(Connection& conn, int64_t oldest_ms) {
  ASSIGN_OR_RETURN(Statement prune,
                   conn.Prepare("DELETE FROM auth_failures WHERE id IN "
                                "(SELECT id FROM auth_failures WHERE at_ms < ? "
                                "ORDER BY at_ms LIMIT ?)"));
  prune.Bind(1, oldest_ms).Bind(2, kAuthPruneBatch);
  return prune.Run();
}

absl::StatusOr<int64_t> CountAuthRows(Connection& conn, const char* sql,
                                      std::optional<std::string_view> text = std::nullopt,
                                      int64_t since_ms = 0) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare(sql));
  if (text.has_value()) {
    s.BindText(1, *text).Bind(2, since_ms);
  }
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

// How long until the oldest row of `address` in the window leaves it (at least 1 ms).
absl::StatusOr<int64_t> UntilAddressFrees(Connection& conn, std::string_view address,
                                          int64_t now_ms, int64_t window_ms) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT min(at_ms) FROM auth_failures "
                                             "WHERE address = ? AND at_ms >= ?"));
  s.BindText(1, address).Bind(2, now_ms - window_ms);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row || s.IsNull(0)) {
    return int64_t{1000};
  }
  return std::max<int64_t>(1, s.Int(0) + window_ms - now_ms);
}

}  // namespace

absl::StatusOr<int> SqliteStore::RecordAuthFailure(std::string_view key, int64_t now_ms,
                                                   int64_t window_ms) {
  int count = 0;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    RETURN_IF_ERROR(PruneAuthFailures(conn, now_ms - window_ms));
    {
      ASSIGN_OR_RETURN(Statement insert,
                       conn.Prepare("INSERT INTO auth_failures (key, at_ms) VALUES (?, ?)"));
      insert.BindText(1, key).Bind(2, now_ms);
      RETURN_IF_ERROR(insert.Run());
    }
    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT count(*) FROM auth_failures "
                                               "WHERE key = ? AND at_ms BETWEEN ? AND ?"));
    s.BindText(1, key).Bind(2, now_ms - window_ms).Bind(3, now_ms);
    ASSIGN_OR_RETURN(bool row, s.Step());
    count = row ? static_cast<int>(s.Int(0)) : 0;
    return absl::OkStatus();
  }));
  return count;
}

absl::StatusOr<std::pair<int, int64_t>> SqliteStore::AuthFailures(std::string_view key,
                                                                  int64_t now_ms,
                                                                  int64_t window_ms) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT count(*), coalesce(max(at_ms), 0) FROM auth_failures "
                                 "WHERE key = ? AND at_ms BETWEEN ? AND ?"));
  s.BindText(1, key).Bind(2, now_ms - window_ms).Bind(3, now_ms);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return std::make_pair(0, int64_t{0});
  }
  return std::make_pair(static_cast<int>(s.Int(0)), s.Int(1));
}

absl::Status SqliteStore::ClearAuthFailures(std::string_view key) {
  return Write([&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM auth_failures WHERE key = ?"));
    s.BindText(1, key);
    return s.Run();
  });
}

absl::StatusOr<AuthReservation> SqliteStore::ReserveAuthAttempt(
    const std::vector<std::string>& keys, std::string_view address, int64_t now_ms,
    const AuthAttemptLimits& limits, const AuthAttemptPolicy& policy) {
  AuthReservation reservation;
  const int64_t window_ms = limits.window_ms;
  const int64_t adding = static_cast<int64_t>(keys.size());
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    reservation = AuthReservation();
    RETURN_IF_ERROR(PruneAuthFailures(conn, now_ms - window_ms));
    // The address's own cap first: past it the address waits, and no other
    // address's rows are touched.
    ASSIGN_OR_RETURN(int64_t held,
                     CountAuthRows(conn,
                                   "SELECT count(*) FROM auth_failures "
                                   "WHERE address = ? AND at_ms >= ?",
                                   address, now_ms - window_ms));
    if (held + adding > limits.max_rows_per_address) {
      ASSIGN_OR_RETURN(reservation.retry_after_ms,
                       UntilAddressFrees(conn, address, now_ms, window_ms));
      return absl::OkStatus();
    }
    std::vector<std::string> read = keys;
    read.insert(read.end(), limits.read_only_keys.begin(), limits.read_only_keys.end());
    std::vector<AuthAttemptState> states;
    states.reserve(read.size());
    for (const std::string& key : read) {
      // No upper bound: an attempt that read the clock before waiting for this
      // transaction must still count the rows of attempts that read it later.
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT count(*), coalesce(max(at_ms), 0) "
                                                 "FROM auth_failures "
                                                 "WHERE key = ? AND at_ms >= ?"));
      s.BindText(1, key).Bind(2, now_ms - window_ms);
      ASSIGN_OR_RETURN(bool row, s.Step());
      AuthAttemptState state;
      if (row) {
        state.failures = static_cast<int>(s.Int(0));
        state.latest_ms = s.Int(1);
      }
      states.push_back(state);
    }
    reservation.retry_after_ms = policy(states);
    if (reservation.retry_after_ms > 0) {
      return absl::OkStatus();
    }
    reservation.retry_after_ms = 0;
    ASSIGN_OR_RETURN(int64_t total, CountAuthRows(conn, "SELECT count(*) FROM auth_failures"));
    const int64_t excess = total + adding - limits.max_rows;
    if (excess > 0) {
      // Full (many addresses, each under its own cap). The address holding the
      // most rows pays: it is refused, or its oldest rows make room for another
      // address's attempt. Nobody else's records are forgotten.
      ASSIGN_OR_RETURN(Statement top,
                       conn.Prepare("SELECT address, count(*) AS n FROM auth_failures "
                                    "GROUP BY address ORDER BY n DESC LIMIT 1"));
      ASSIGN_OR_RETURN(bool found, top.Step());
      const std::string top_address = found ? std::string(top.Text(0)) : std::string(address);
      const int64_t top_rows = found ? top.Int(1) : 0;
      if (top_address == address || held >= top_rows) {
        ASSIGN_OR_RETURN(reservation.retry_after_ms,
                         UntilAddressFrees(conn, address, now_ms, window_ms));
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(Statement evict,
                       conn.Prepare("DELETE FROM auth_failures WHERE id IN "
                                    "(SELECT id FROM auth_failures WHERE address = ? "
                                    "ORDER BY at_ms, id LIMIT ?)"));
      evict.BindText(1, top_address).Bind(2, excess);
      RETURN_IF_ERROR(evict.Run());
    }
    for (const std::string& key : keys) {
      ASSIGN_OR_RETURN(Statement insert, conn.Prepare("INSERT INTO auth_failures "
                                                      "(key, address, at_ms) VALUES (?, ?, ?)"));
      insert.BindText(1, key).BindText(2, address).Bind(3, now_ms);
      RETURN_IF_ERROR(insert.Run());
      reservation.rows.push_back(conn.LastInsertRowid());
    }
    return absl::OkStatus();
  }));
  return reservation;
}

absl::Status SqliteStore::ReleaseAuthAttempt(const std::vector<int64_t>& rows) {
  if (rows.empty()) {
    return absl::OkStatus();
  }
  return Write([&](WriteTx& tx) -> absl::Status {
    for (int64_t row : rows) {
      // Ids come from AUTOINCREMENT (schema version 6): a row deleted meanwhile
      // (expired, evicted) leaves nothing here to delete, never a newer row.
      ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM auth_failures WHERE id = ?"));
      s.Bind(1, row);
      RETURN_IF_ERROR(s.Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> SqliteStore::FindSecret(std::string_view name) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT value FROM secrets WHERE name = ?"));
  s.BindText(1, name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("no secret \"", AV(name), "\" is stored"));
  }
  return std::string(s.Blob(0));
}

absl::Status SqliteStore::DeleteSecret(std::string_view name) {
  // A deleted row stays in its page's free space and in older WAL frames until
  // overwritten. secure_delete zeroes it in the page; the truncating checkpoint
  // then copies the zeroed page into the database and empties the WAL, so the
  // secret is not left in either file.
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    RETURN_IF_ERROR(writer_->Exec("PRAGMA secure_delete = ON"));
  }
  absl::Status deleted = Write([&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM secrets WHERE name = ?"));
    s.BindText(1, name);
    return s.Run();
  });
  std::lock_guard<std::mutex> lock(write_mutex_);
  absl::Status checkpoint =
      deleted.ok() ? writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)") : absl::OkStatus();
  absl::Status restored = writer_->Exec("PRAGMA secure_delete = OFF");
  RETURN_IF_ERROR(deleted);
  RETURN_IF_ERROR(checkpoint);
  return restored;
}

absl::StatusOr<std::string> SqliteStore::GetOrCreateSecret(std::string_view name,
                                                           std::string_view initial_value) {
  std::string value;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    {
      ASSIGN_OR_RETURN(Statement insert,
                       conn.Prepare("INSERT INTO secrets (name, value) VALUES (?, ?) "
                                    "ON CONFLICT DO NOTHING"));
      insert.BindText(1, name).BindBlob(2, initial_value);
      RETURN_IF_ERROR(insert.Run());
    }
    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT value FROM secrets WHERE name = ?"));
    s.BindText(1, name);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      value = std::string(s.Blob(0));
    }
    return absl::OkStatus();
  }));
  return value;
}

// ---------------------------------------------------------------------------
// Mailboxes

absl::StatusOr<v1::ListMailboxesResponse> SqliteStore::ListMailboxes(
    uint64_t user_id, const v1::ListMailboxesRequest& request) {
  std::vector<std::string> patterns;
  for (const std::string& pattern : request.patterns()) {
    patterns.push_back(NormalizePattern(pattern));
  }
  if (patterns.empty()) {
    patterns.push_back("*");
  }
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(std::vector<MailboxRow> mailboxes, UserMailboxes(*conn, user_id));
  std::set<std::string> subscribed;
  {
    ASSIGN_OR_RETURN(Statement s,
                     conn->Prepare("SELECT name FROM subscriptions WHERE user_id = ?"));
    s.Bind(1, user_id);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      subscribed.emplace(s.Text(0));
    }
  }
  auto matches = [&](std::string_view name) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [&](const std::string& p) { return PatternMatches(p, name); });
  };
  // Mailboxes are sorted by name as bytes; the inferiors of "a" start at "a/"
  // (not necessarily right after "a": "a b" sorts between them).
  auto has_children = [&](size_t i) {
    std::string prefix = absl::StrCat(mailboxes[i].name, "/");
    auto it = std::lower_bound(mailboxes.begin(), mailboxes.end(), prefix,
                               [](const MailboxRow& row, const std::string& key) {
                                 return row.name < key;
                               });
    return it != mailboxes.end() && IsInferiorOf(it->name, mailboxes[i].name);
  };

  v1::ListMailboxesResponse response;
  response.set_delimiter(std::string(1, kDelimiter));
  std::vector<v1::MailboxInfo> infos;
  std::set<std::string> existing;
  for (size_t i = 0; i < mailboxes.size(); ++i) {
    const MailboxRow& mailbox = mailboxes[i];
    existing.insert(mailbox.name);
    bool is_subscribed = subscribed.count(mailbox.name) > 0;
    if ((request.subscribed_only() && !is_subscribed) || !matches(mailbox.name)) {
      continue;
    }
    v1::MailboxInfo info;
    info.set_name(mailbox.name);
    info.set_mailbox_id(mailbox.id);
    if (mailbox.noselect) {
      info.add_attributes("\\Noselect");
    }
    info.add_attributes(has_children(i) ? "\\HasChildren" : "\\HasNoChildren");
    if (is_subscribed) {
      info.add_attributes("\\Subscribed");
    }
    for (absl::string_view use : absl::StrSplit(mailbox.special_use, ' ', absl::SkipEmpty())) {
      info.add_special_use(std::string(use));
    }
    infos.push_back(std::move(info));
  }
  if (request.subscribed_only()) {
    // RFC 5258 §3: subscriptions of names that do not exist are \NonExistent.
    for (const std::string& name : subscribed) {
      if (existing.count(name) == 0 && matches(name)) {
        v1::MailboxInfo info;
        info.set_name(name);
        info.add_attributes("\\NonExistent");
        info.add_attributes("\\Subscribed");
        infos.push_back(std::move(info));
      }
    }
  }
  std::stable_sort(infos.begin(), infos.end(), [](const v1::MailboxInfo& a,
                                                  const v1::MailboxInfo& b) {
    bool a_inbox = a.name() == kInbox, b_inbox = b.name() == kInbox;
    if (a_inbox != b_inbox) {
      return a_inbox;
    }
    return a.name() < b.name();
  });
  for (v1::MailboxInfo& info : infos) {
    *response.add_mailboxes() = std::move(info);
  }
  return response;
}

absl::StatusOr<v1::CreateMailboxResponse> SqliteStore::CreateMailbox(
    uint64_t user_id, const v1::CreateMailboxRequest& request) {
  std::string_view requested = request.name();
  // RFC 3501 §6.3.3: a trailing delimiter declares the intent to create inferiors;
  // the name created is without it.
  if (requested.size() > 1 && requested.back() == kDelimiter) {
    requested.remove_suffix(1);
  }
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(requested, limits_));
  std::vector<std::string> uses;
  for (const std::string& use : request.special_use()) {
    if (!IsKnownSpecialUse(use)) {
      return BadRequest(absl::StrCat("unknown special-use attribute ", use,
                                     " (RFC 6154 §2 lists the known ones)"));
    }
    if (std::find(uses.begin(), uses.end(), use) == uses.end()) {
      uses.push_back(use);
    }
  }
  std::string special_use = absl::StrJoin(uses, " ");
  v1::CreateMailboxResponse response;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(bool user_exists, UserExists(conn, user_id));
    if (!user_exists) {
      return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
    }
    ASSIGN_OR_RETURN(std::optional<MailboxRow> existing, MailboxByName(conn, user_id, name));
    if (existing.has_value() && !existing->noselect) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   absl::StrCat("mailbox \"", name, "\" already exists"));
    }
    // RFC 3501 §6.3.3: create missing superiors.
    for (const std::string& superior : Superiors(name)) {
      ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn, user_id, superior));
      if (!row.has_value()) {
        RETURN_IF_ERROR(InsertMailbox(conn, user_id, superior, "").status());
      }
    }
    if (existing.has_value()) {
      // A \Noselect name becomes selectable again, as a new mailbox: a new
      // UIDVALIDITY, and a log that starts now.
      ASSIGN_OR_RETURN(uint32_t uidvalidity, NextUidValidity(conn));
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE mailboxes SET noselect = 0, uidvalidity = ?, "
                                    "special_use = ?, log_floor = highest_modseq "
                                    "WHERE id = ?"));
      s.Bind(1, uidvalidity).BindText(2, special_use).Bind(3, existing->id);
      RETURN_IF_ERROR(s.Run());
      ASSIGN_OR_RETURN(Statement clear, conn.Prepare("DELETE FROM changes WHERE mailbox_id = ?"));
      clear.Bind(1, existing->id);
      RETURN_IF_ERROR(clear.Run());
      response.set_mailbox_id(existing->id);
      response.set_uidvalidity(uidvalidity);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(MailboxRow row, InsertMailbox(conn, user_id, name, special_use));
    response.set_mailbox_id(row.id);
    response.set_uidvalidity(row.uidvalidity);
    return absl::OkStatus();
  }));
  return response;
}

absl::Status SqliteStore::DeleteMailbox(uint64_t user_id,
                                        const v1::DeleteMailboxRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  if (name == kInbox) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 "INBOX cannot be deleted (RFC 3501 §6.3.4)");
  }
  return Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(std::optional<MailboxRow> mailbox, MailboxByName(conn, user_id, name));
    if (!mailbox.has_value()) {
      return v1::Nonexistent(absl::StrCat("mailbox \"", name, "\" does not exist"));
    }
    ASSIGN_OR_RETURN(bool has_children, HasInferiors(conn, user_id, name));
    if (has_children && mailbox->noselect) {
      return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                   absl::StrCat("mailbox \"", name,
                                "\" is \\Noselect and has inferior mailboxes; delete those "
                                "first (RFC 3501 §6.3.4)"));
    }
    if (!mailbox->noselect) {
      RETURN_IF_ERROR(tx.LogDeleted(mailbox->id).status());
    }
    {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("DELETE FROM messages WHERE mailbox_id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
    }
    {
      // Sessions of a deleted mailbox fetch nothing more, and a \Noselect name
      // made selectable again keeps its id: retained messages go now.
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("DELETE FROM expunged_messages WHERE mailbox_id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
    }
    if (has_children) {
      // RFC 3501 §6.3.4: the messages go, the name stays as \Noselect so that the
      // inferiors keep their place in the hierarchy.
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE mailboxes SET noselect = 1, special_use = '' "
                                    "WHERE id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
      ASSIGN_OR_RETURN(Statement keywords,
                       conn.Prepare("DELETE FROM mailbox_keywords WHERE mailbox_id = ?"));
      keywords.Bind(1, mailbox->id);
      RETURN_IF_ERROR(keywords.Run());
    } else {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("DELETE FROM mailboxes WHERE id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
    }
    return CollectGarbage(conn);
  });
}

absl::Status SqliteStore::RenameMailbox(uint64_t user_id,
                                        const v1::RenameMailboxRequest& request) {
  ASSIGN_OR_RETURN(std::string from, NormalizeMailboxName(request.from(), limits_));
  ASSIGN_OR_RETURN(std::string to, NormalizeMailboxName(request.to(), limits_));
  if (to == from || to == kInbox) {
    return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                 absl::StrCat("mailbox \"", to, "\" already exists"));
  }
  // RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves INBOX (and its
  // inferiors) in place, so "RENAME INBOX INBOX/old" is fine; any other mailbox
  // cannot move under itself.
  if (from != kInbox && IsInferiorOf(to, from)) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 absl::StrCat("cannot rename \"", from, "\" to its own inferior \"", to, "\""));
  }
  return Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(std::optional<MailboxRow> source, MailboxByName(conn, user_id, from));
    if (!source.has_value()) {
      return v1::Nonexistent(absl::StrCat("mailbox \"", from, "\" does not exist"));
    }
    ASSIGN_OR_RETURN(std::optional<MailboxRow> target, MailboxByName(conn, user_id, to));
    if (target.has_value()) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   absl::StrCat("mailbox \"", to, "\" already exists"));
    }
    for (const std::string& superior : Superiors(to)) {
      ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn, user_id, superior));
      if (!row.has_value()) {
        RETURN_IF_ERROR(InsertMailbox(conn, user_id, superior, "").status());
      }
    }

    if (from == kInbox) {
      // RFC 3501 §6.3.5: INBOX's messages move to a new mailbox; INBOX stays, empty,
      // and its inferiors are not renamed. The UIDs are kept: the new mailbox has its
      // own UIDVALIDITY, so (name, UIDVALIDITY, UID) still names one message.
      ASSIGN_OR_RETURN(MailboxRow created, InsertMailbox(conn, user_id, to, ""));
      {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("UPDATE mailboxes SET uidnext = ?, highest_modseq = ?, "
                                      "log_floor = ?, recent_floor = ? WHERE id = ?"));
        s.Bind(1, source->uidnext)
            .Bind(2, source->highest_modseq)
            .Bind(3, source->highest_modseq)
            .Bind(4, source->recent_floor)
            .Bind(5, created.id);
        RETURN_IF_ERROR(s.Run());
      }
      ASSIGN_OR_RETURN(std::vector<uint32_t> uids, AllUidsOf(conn, source->id));
      // INBOX sessions see these UIDs expunged and may fetch them until told.
      RETURN_IF_ERROR(tx.RetainAllMessages(source->id));
      {
        ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE messages SET mailbox_id = ? "
                                                   "WHERE mailbox_id = ?"));
        s.Bind(1, created.id).Bind(2, source->id);
        RETURN_IF_ERROR(s.Run());
      }
      {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("INSERT INTO mailbox_keywords (mailbox_id, keyword) "
                                      "SELECT ?, keyword FROM mailbox_keywords "
                                      "WHERE mailbox_id = ?"));
        s.Bind(1, created.id).Bind(2, source->id);
        RETURN_IF_ERROR(s.Run());
      }
      if (!uids.empty()) {
        RETURN_IF_ERROR(tx.LogExpunged(source->id, uids).status());
      }
      return absl::OkStatus();
    }

    // The mailbox and its inferiors move together (RFC 3501 §6.3.5).
    ASSIGN_OR_RETURN(std::vector<MailboxRow> all, UserMailboxes(conn, user_id));
    for (const MailboxRow& mailbox : all) {
      if (mailbox.name != from && !IsInferiorOf(mailbox.name, from)) {
        continue;
      }
      std::string new_name = absl::StrCat(to, mailbox.name.substr(from.size()));
      absl::StatusOr<std::string> valid = NormalizeMailboxName(new_name, limits_);
      if (!valid.ok()) {
        return v1::MakeError(valid.status().code(), v1::DetailOf(valid.status()).code(),
                             absl::StrCat("renaming would give \"", mailbox.name,
                                          "\" an invalid name: ", valid.status().message()));
      }
      ASSIGN_OR_RETURN(std::optional<MailboxRow> clash, MailboxByName(conn, user_id, new_name));
      if (clash.has_value()) {
        return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                     absl::StrCat("mailbox \"", new_name, "\" already exists"));
      }
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE mailboxes SET name = ? WHERE id = ?"));
      s.BindText(1, new_name).Bind(2, mailbox.id);
      RETURN_IF_ERROR(s.Run());
      if (!mailbox.noselect) {
        RETURN_IF_ERROR(tx.LogChange(mailbox.id, [&](v1::ChangeEvent& event, uint64_t) {
                            event.mutable_renamed()->set_new_name(new_name);
                          }).status());
      }
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::SetSubscription(uint64_t user_id,
                                          const v1::SetSubscriptionRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  return Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(bool user_exists, UserExists(conn, user_id));
    if (!user_exists) {
      return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
    }
    if (request.subscribed()) {
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("INSERT INTO subscriptions (user_id, name) VALUES (?, ?) "
                                    "ON CONFLICT DO NOTHING"));
      s.Bind(1, user_id).BindText(2, name);
      return s.Run();
    }
    ASSIGN_OR_RETURN(Statement s,
                     conn.Prepare("DELETE FROM subscriptions WHERE user_id = ? AND name = ?"));
    s.Bind(1, user_id).BindText(2, name);
    return s.Run();
  });
}

absl::StatusOr<v1::StatusResponse> SqliteStore::Status(uint64_t user_id,
                                                       const v1::StatusRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectableByName(*conn, user_id, name));
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT count(*), "
                                 "coalesce(sum((m.system_flags & 8) = 0), 0), "
                                 "coalesce(sum((m.system_flags & 4) != 0), 0), "
                                 "coalesce(sum(c.size), 0), "
                                 "coalesce(sum(m.uid >= ?), 0) "
                                 "FROM messages m JOIN contents c ON c.id = m.content_id "
                                 "WHERE m.mailbox_id = ?"));
  s.Bind(1, mailbox.recent_floor).Bind(2, mailbox.id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  v1::StatusResponse response;
  response.set_mailbox_id(mailbox.id);
  response.set_uidnext(mailbox.uidnext);
  response.set_uidvalidity(mailbox.uidvalidity);
  response.set_highest_modseq(mailbox.highest_modseq);
  if (row) {
    response.set_messages(static_cast<uint32_t>(s.Int(0)));
    response.set_unseen(static_cast<uint32_t>(s.Int(1)));
    response.set_deleted(static_cast<uint32_t>(s.Int(2)));
    response.set_size(static_cast<uint64_t>(s.Int(3)));
    response.set_recent(static_cast<uint32_t>(s.Int(4)));
  }
  return response;
}

// ---------------------------------------------------------------------------
// Selected-mailbox operations

absl::StatusOr<v1::OpenResponse> SqliteStore::Open(uint64_t user_id,
                                                   const v1::OpenRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  v1::OpenResponse response;
  bool has_recent = false;
  // Everything but the \Recent claim is a read: `fill` runs in a read snapshot,
  // and again in a write transaction (claim = true) only when there are \Recent
  // messages to claim, so that SELECT does not usually contend with writers.
  auto fill = [&](Connection& conn, bool claim) -> absl::Status {
    response.Clear();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectableByName(conn, user_id, name));
    has_recent = mailbox.recent_floor < mailbox.uidnext;
    response.set_mailbox_id(mailbox.id);
    response.set_uidvalidity(mailbox.uidvalidity);
    response.set_uidnext(mailbox.uidnext);
    response.set_highest_modseq(mailbox.highest_modseq);
    response.set_read_only(request.read_only());
    for (const SystemFlag& flag : kSystemFlags) {
      response.add_flags(std::string(flag.name));
    }
    {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT keyword FROM mailbox_keywords "
                                                 "WHERE mailbox_id = ? ORDER BY keyword"));
      s.Bind(1, mailbox.id);
      while (true) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) {
          break;
        }
        response.add_flags(std::string(s.Text(0)));
      }
    }
    *response.mutable_permanent_flags() = response.flags();
    response.add_permanent_flags("\\*");

    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT uid, system_flags FROM messages "
                                               "WHERE mailbox_id = ? ORDER BY uid"));
    s.Bind(1, mailbox.id);
    UidSetBuilder uids, recent;
    uint32_t messages = 0, unseen = 0, recent_count = 0, first_unseen = 0;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      uint32_t uid = static_cast<uint32_t>(s.Int(0));
      uint32_t system = static_cast<uint32_t>(s.Int(1));
      ++messages;
      uids.Add(uid);
      if (!(system & kSeenBit)) {
        ++unseen;
        if (first_unseen == 0) {
          first_unseen = uid;
        }
      }
      if (uid >= mailbox.recent_floor) {
        ++recent_count;
        if (claim) {
          recent.Add(uid);
        }
      }
    }
    response.set_messages(messages);
    response.set_unseen(unseen);
    response.set_first_unseen_uid(first_unseen);
    response.set_recent(recent_count);
    *response.mutable_uids() = uids.Take();
    *response.mutable_recent_uids() = recent.Take();
    if (claim && mailbox.recent_floor < mailbox.uidnext) {
      // RFC 3501 §2.3.2: \Recent goes to exactly one session.
      ASSIGN_OR_RETURN(Statement update,
                       conn.Prepare("UPDATE mailboxes SET recent_floor = uidnext WHERE id = ?"));
      update.Bind(1, mailbox.id);
      RETURN_IF_ERROR(update.Run());
    }
    return absl::OkStatus();
  };
  {
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    ReadSnapshot snapshot(*conn);
    RETURN_IF_ERROR(snapshot.Begin());
    RETURN_IF_ERROR(fill(*conn, false));
  }
  if (!request.read_only() && has_recent) {
    RETURN_IF_ERROR(Write([&](WriteTx& tx) { return fill(tx.conn(), true); }));
  }
  return response;
}

absl::Status SqliteStore::Fetch(uint64_t user_id, const v1::FetchRequest& request,
                                FetchSink& sink) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(request.uids()));
  for (const v1::Section& section : request.sections()) {
    RETURN_IF_ERROR(ValidateSection(section));
  }
  if (request.changed_since() > kMaxModseq) {
    return BadRequest(absl::StrCat("CHANGEDSINCE ", request.changed_since(),
                                   " is not a mod-sequence value (at most 2^63-1, RFC 7162 §7)"));
  }
  const uint64_t changed_since = request.changed_since();

  // mark_seen: set \Seen first, in its own transaction, so the metadata streamed
  // below already shows it.
  std::set<uint32_t> seen_changed;
  if (request.mark_seen()) {
    RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
      Connection& conn = tx.conn();
      ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                           request.uidvalidity()));
      ASSIGN_OR_RETURN(std::vector<MessageRow> unseen,
                       LoadMessages(conn, mailbox.id, ranges, [&](const MessageRow& m) {
                         return !(m.system & kSeenBit) && m.modseq > changed_since;
                       }));
      if (unseen.empty()) {
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(uint64_t modseq, tx.NextModseq(mailbox.id));
      v1::ChangeEvent event;
      event.set_mailbox_id(mailbox.id);
      event.set_modseq(modseq);
      for (const MessageRow& m : unseen) {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("UPDATE messages SET system_flags = ?, modseq = ? "
                                      "WHERE mailbox_id = ? AND uid = ?"));
        s.Bind(1, m.system | kSeenBit).Bind(2, modseq).Bind(3, mailbox.id).Bind(4, m.uid);
        RETURN_IF_ERROR(s.Run());
        *event.mutable_flags_changed()->add_messages() =
            MakeMessageFlags(m.uid, m.system | kSeenBit, m.keywords, modseq);
        seen_changed.insert(m.uid);
      }
      return tx.Log(std::move(event));
    }));
  }

  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                       request.uidvalidity()));
  const size_t chunk_octets = limits_.fetch_chunk_octets;
  const bool include_expunged =
      request.include_expunged() && options_.expunged_retention.count() > 0;
  // Pruning is opportunistic, so rows older than the window may linger; they are
  // not returned, which keeps the window the contract.
  const int64_t retained_since_ms = NowMs() - options_.expunged_retention.count();

  // Sends the metadata and the requested sections of the message at the current
  // row of `s`; live and retained rows have the same columns.
  auto send_message = [&](const Statement& s, bool expunged) -> absl::Status {
    const uint32_t uid = static_cast<uint32_t>(s.Int(0));
    // mark_seen never touches a retained message (it is not in `messages`).
    const bool seen_now = !expunged && seen_changed.count(uid) > 0;
    const int64_t content_id = s.Int(10);
    {
      v1::FetchResponse response;
      v1::FetchedMetadata* meta = response.mutable_metadata();
      meta->set_uid(uid);
      if (request.flags() || seen_now) {
        for (std::string& flag :
             FlagList(static_cast<uint32_t>(s.Int(2)), s.Text(3))) {
          meta->add_flags(std::move(flag));
        }
      }
      if (request.internal_date()) {
        meta->set_internal_date_unix(s.Int(4));
        meta->set_internal_date_tz_minutes(static_cast<int32_t>(s.Int(5)));
      }
      if (request.size()) {
        meta->set_size(s.Int(6));
      }
      if (request.envelope()) {
        meta->set_envelope(std::string(s.Text(7)));
      }
      if (request.body()) {
        meta->set_body(std::string(s.Text(8)));
      }
      if (request.bodystructure()) {
        meta->set_bodystructure(std::string(s.Text(9)));
      }
      if (request.modseq() || seen_now) {
        meta->set_modseq(s.Int(1));
      }
      meta->set_seen_changed(seen_now);
      meta->set_expunged(expunged);
      if (!sink.Send(response)) {
        return Cancelled();
      }
    }
    if (request.sections().empty()) {
      return absl::OkStatus();
    }

    mime::ParsedMessage parsed;
    {
      ASSIGN_OR_RETURN(Statement p, conn->Prepare("SELECT parsed FROM contents WHERE id = ?"));
      p.Bind(1, content_id);
      ASSIGN_OR_RETURN(bool found, p.Step());
      if (!found) {
        return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                     "store: message content row is missing");
      }
      absl::StatusOr<mime::ParsedMessage> message = mime::Deserialize(p.Blob(0));
      if (!message.ok()) {
        return Error(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                     absl::StrCat("store: stored structure of UID ", uid,
                                  " is unreadable: ", message.status().message()));
      }
      parsed = *std::move(message);
    }
    ASSIGN_OR_RETURN(BlobReader blob, conn->OpenBlob("content_data", "raw", content_id));

    for (int index = 0; index < request.sections_size(); ++index) {
      const v1::Section& section = request.sections(index);
      mime::SectionSpec spec = ToSpec(section);
      std::string header_bytes;
      if (std::optional<std::pair<uint64_t, uint64_t>> range =
              mime::RequiredHeaderRange(parsed, spec);
          range.has_value() && range->first <= range->second &&
          range->second <= blob.size()) {
        RETURN_IF_ERROR(blob.Read(range->first, range->second - range->first, &header_bytes));
      }
      absl::StatusOr<mime::ResolvedSection> resolved =
          mime::ResolveSection(parsed, header_bytes, spec);
      v1::FetchResponse response;
      v1::SectionChunk* chunk = response.mutable_chunk();
      chunk->set_uid(uid);
      chunk->set_section_index(index);
      chunk->set_last(true);
      if (!resolved.ok()) {
        if (resolved.status().code() == absl::StatusCode::kFailedPrecondition) {
          // RFC 3516 §4.3: BINARY of an encoding we cannot decode.
          chunk->set_error_unknown_cte(true);
        }
        // Otherwise the spec does not apply to this message's structure (e.g.
        // HEADER of a part that is no message): an empty section, as for a
        // nonexistent part.
        if (!sink.Send(response)) {
          return Cancelled();
        }
        continue;
      }
      if (section.size_only()) {
        chunk->set_total_size(resolved->size);
        if (!sink.Send(response)) {
          return Cancelled();
        }
        continue;
      }
      std::unique_ptr<mime::Decoder> decoder;
      if (!resolved->binary_encoding.empty()) {
        decoder = mime::Decoder::For(resolved->binary_encoding);
        if (decoder == nullptr) {
          chunk->set_error_unknown_cte(true);
          if (!sink.Send(response)) {
            return Cancelled();
          }
          continue;
        }
      }
      // RFC 3501 §6.4.5 <partial>: an origin beyond the end gives an empty string.
      uint64_t size = resolved->size;
      uint64_t skip = 0, total = size;
      if (section.has_partial()) {
        skip = std::min(section.partial_offset(), size);
        total = std::min(section.partial_count(), size - skip);
      }
      SectionStreamer streamer(sink, uid, index, skip, total, chunk_octets);
      std::string block, decoded;
      for (const mime::Piece& piece : resolved->pieces) {
        if (streamer.done()) {
          break;
        }
        if (piece.is_generated) {
          if (!streamer.Feed(piece.generated)) {
            return Cancelled();
          }
          continue;
        }
        uint64_t pos = piece.begin;
        uint64_t end = std::min<uint64_t>(piece.end, blob.size());
        if (decoder == nullptr && pos < end) {
          // Raw bytes before the <partial> origin are skipped without reading.
          uint64_t jump = std::min(streamer.skip_remaining(), end - pos);
          streamer.Skip(jump);
          pos += jump;
        }
        while (pos < end && !streamer.done()) {
          uint64_t n = std::min<uint64_t>(chunk_octets, end - pos);
          block.clear();
          RETURN_IF_ERROR(blob.Read(pos, n, &block));
          pos += n;
          bool ok;
          if (decoder != nullptr) {
            decoded.clear();
            decoder->Feed(block, &decoded);
            ok = streamer.Feed(decoded);
          } else {
            ok = streamer.Feed(block);
          }
          if (!ok) {
            return Cancelled();
          }
        }
      }
      if (decoder != nullptr && !streamer.done()) {
        decoded.clear();
        decoder->Finish(&decoded);
        if (!streamer.Feed(decoded)) {
          return Cancelled();
        }
      }
      if (!streamer.Finish()) {
        return Cancelled();
      }
    }
    return absl::OkStatus();
  };

  for (const auto& [first, last] : ranges) {
    ASSIGN_OR_RETURN(Statement live,
                     conn->Prepare("SELECT m.uid, m.modseq, m.system_flags, m.keywords, "
                                   "m.internal_date, m.internal_tz, c.size, c.envelope, c.body, "
                                   "c.bodystructure, c.id FROM messages m "
                                   "JOIN contents c ON c.id = m.content_id "
                                   "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                                   "AND m.modseq > ? ORDER BY m.uid"));
    live.Bind(1, mailbox.id).Bind(2, first).Bind(3, last).Bind(4, changed_since);
    Statement gone;
    bool gone_row = false;
    if (include_expunged) {
      // RFC 3501 §7.4.1: a session not yet told of an expunge may still fetch the
      // message. A UID is either live or retained; the NOT EXISTS only guards
      // against reporting one twice.
      ASSIGN_OR_RETURN(gone,
                       conn->Prepare("SELECT e.uid, e.modseq, e.system_flags, e.keywords, "
                                     "e.internal_date, e.internal_tz, c.size, c.envelope, "
                                     "c.body, c.bodystructure, c.id FROM expunged_messages e "
                                     "JOIN contents c ON c.id = e.content_id "
                                     "WHERE e.mailbox_id = ? AND e.uid BETWEEN ? AND ? "
                                     "AND e.modseq > ? AND e.expunged_at_ms >= ? "
                                     "AND NOT EXISTS (SELECT 1 FROM messages m "
                                     "WHERE m.mailbox_id = e.mailbox_id AND m.uid = e.uid) "
                                     "ORDER BY e.uid"));
      gone.Bind(1, mailbox.id)
          .Bind(2, first)
          .Bind(3, last)
          .Bind(4, changed_since)
          .Bind(5, retained_since_ms);
      ASSIGN_OR_RETURN(gone_row, gone.Step());
    }
    ASSIGN_OR_RETURN(bool live_row, live.Step());
    // Both cursors ascend by UID: merge them so the sink sees one UID order.
    while (live_row || gone_row) {
      const bool take_gone = gone_row && (!live_row || gone.Int(0) < live.Int(0));
      Statement& s = take_gone ? gone : live;
      RETURN_IF_ERROR(send_message(s, take_gone));
      ASSIGN_OR_RETURN(bool more, s.Step());
      (take_gone ? gone_row : live_row) = more;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::StoreResponse> SqliteStore::StoreFlags(uint64_t user_id,
                                                          const v1::StoreRequest& request) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(request.uids()));
  if (request.mode() != v1::StoreRequest::SET && request.mode() != v1::StoreRequest::ADD &&
      request.mode() != v1::StoreRequest::REMOVE) {
    return BadRequest("STORE mode must be SET, ADD or REMOVE");
  }
  ASSIGN_OR_RETURN(FlagSet flags, ParseFlags(request.flags()));
  v1::StoreResponse response;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    ASSIGN_OR_RETURN(std::vector<MessageRow> messages,
                     LoadMessages(conn, mailbox.id, ranges, [](const MessageRow&) { return true; }));
    UidSetBuilder modified;
    std::optional<uint64_t> modseq;  // one MODSEQ for the whole STORE, allocated on demand
    v1::ChangeEvent event;
    for (const MessageRow& m : messages) {
      // RFC 7162 §3.1.3: a message changed since UNCHANGEDSINCE is left alone and
      // reported as MODIFIED.
      if (request.has_unchanged_since() && m.modseq > request.unchanged_since()) {
        modified.Add(m.uid);
        continue;
      }
      uint32_t system = m.system;
      std::vector<std::string> keywords = SplitKeywords(m.keywords);
      switch (request.mode()) {
        case v1::StoreRequest::SET:
          system = flags.system;
          keywords = flags.keywords;
          break;
        case v1::StoreRequest::ADD:
          system |= flags.system;
          for (const std::string& k : flags.keywords) {
            if (!ContainsKeyword(keywords, k)) {
              keywords.push_back(k);
            }
          }
          break;
        default:
          system &= ~flags.system;
          keywords.erase(std::remove_if(keywords.begin(), keywords.end(),
                                        [&](const std::string& k) {
                                          return ContainsKeyword(flags.keywords, k);
                                        }),
                         keywords.end());
      }
      std::string joined = JoinKeywords(keywords);
      const std::vector<std::string> old_keywords = SplitKeywords(m.keywords);
      bool same_keywords = keywords.size() == old_keywords.size() &&
                           std::all_of(keywords.begin(), keywords.end(), [&](const auto& k) {
                             return ContainsKeyword(old_keywords, k);
                           });
      if (system == m.system && same_keywords) {
        continue;  // nothing changed: no new MODSEQ (RFC 7162 §3.1.3)
      }
      if (!modseq.has_value()) {
        ASSIGN_OR_RETURN(modseq, tx.NextModseq(mailbox.id));
        event.set_mailbox_id(mailbox.id);
        event.set_modseq(*modseq);
        event.mutable_flags_changed();
      }
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE messages SET system_flags = ?, keywords = ?, "
                                    "modseq = ? WHERE mailbox_id = ? AND uid = ?"));
      s.Bind(1, system).BindText(2, joined).Bind(3, *modseq).Bind(4, mailbox.id).Bind(5, m.uid);
      RETURN_IF_ERROR(s.Run());
      v1::MessageFlags changed = MakeMessageFlags(m.uid, system, joined, *modseq);
      *event.mutable_flags_changed()->add_messages() = changed;
      *response.add_changed() = std::move(changed);
    }
    if (modseq.has_value()) {
      // Only keywords now set on a message join FLAGS; -FLAGS of a keyword no
      // message has must not add it.
      if (request.mode() != v1::StoreRequest::REMOVE) {
        RETURN_IF_ERROR(RememberKeywords(conn, mailbox.id, flags.keywords));
      }
      RETURN_IF_ERROR(tx.Log(std::move(event)));
    }
    *response.mutable_modified() = modified.Take();
    response.set_highest_modseq(modseq.value_or(mailbox.highest_modseq));
    return absl::OkStatus();
  }));
  return response;
}

namespace {

struct CopyResult {
  uint32_t destination_uidvalidity = 0;
  std::vector<uint32_t> source_uids, destination_uids;
  uint64_t source_highest_modseq = 0;
};

}  // namespace

// Copies (and for MOVE, expunges) in the caller's transaction.
static absl::StatusOr<CopyResult> CopyInTx(SqliteStore::WriteTx& tx, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity,
                                           const v1::UidSet& uid_set,
                                           const std::string& destination, bool move,
                                           const StoreLimits& limits);

absl::StatusOr<v1::CopyResponse> SqliteStore::Copy(uint64_t user_id,
                                                   const v1::CopyRequest& request) {
  CopyResult result;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(result, CopyInTx(tx, user_id, request.mailbox_id(), request.uidvalidity(),
                                      request.uids(), request.destination(), false, limits_));
    return absl::OkStatus();
  }));
  v1::CopyResponse response;
  response.set_destination_uidvalidity(result.destination_uidvalidity);
  response.mutable_source_uids()->Add(result.source_uids.begin(), result.source_uids.end());
  response.mutable_destination_uids()->Add(result.destination_uids.begin(),
                                           result.destination_uids.end());
  return response;
}

absl::StatusOr<v1::MoveResponse> SqliteStore::Move(uint64_t user_id,
                                                   const v1::MoveRequest& request) {
  CopyResult result;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(result, CopyInTx(tx, user_id, request.mailbox_id(), request.uidvalidity(),
                                      request.uids(), request.destination(), true, limits_));
    return absl::OkStatus();
  }));
  v1::MoveResponse response;
  response.set_destination_uidvalidity(result.destination_uidvalidity);
  response.mutable_source_uids()->Add(result.source_uids.begin(), result.source_uids.end());
  response.mutable_destination_uids()->Add(result.destination_uids.begin(),
                                           result.destination_uids.end());
  response.set_highest_modseq(result.source_highest_modseq);
  return response;
}

static absl::StatusOr<CopyResult> CopyInTx(SqliteStore::WriteTx& tx, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity,
                                           const v1::UidSet& uid_set,
                                           const std::string& destination, bool move,
                                           const StoreLimits& limits) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(uid_set));
  ASSIGN_OR_RETURN(std::string dest_name, NormalizeMailboxName(destination, limits));
  Connection& conn = tx.conn();
  ASSIGN_OR_RETURN(MailboxRow source, SelectedMailbox(conn, user_id, mailbox_id, uidvalidity));
  ASSIGN_OR_RETURN(std::optional<MailboxRow> dest, MailboxByName(conn, user_id, dest_name));
  if (!dest.has_value() || dest->noselect) {
    // RFC 3501 §6.4.7: TRYCREATE, the client may create it and retry.
    return Error(absl::StatusCode::kNotFound, v1::TRYCREATE,
                 absl::StrCat("destination mailbox \"", dest_name, "\" does not exist"));
  }
  ASSIGN_OR_RETURN(std::vector<MessageRow> messages,
                   LoadMessages(conn, source.id, ranges, [](const MessageRow&) { return true; }));
  CopyResult result;
  result.destination_uidvalidity = dest->uidvalidity;
  result.source_highest_modseq = source.highest_modseq;
  if (messages.empty()) {
    return result;
  }
  RETURN_IF_ERROR(CheckUidSpace(*dest, messages.size()));
  ASSIGN_OR_RETURN(uint64_t dest_modseq, tx.NextModseq(dest->id));
  v1::ChangeEvent added;
  added.set_mailbox_id(dest->id);
  added.set_modseq(dest_modseq);
  uint32_t uid = dest->uidnext;
  std::vector<std::string> keywords;
  for (const MessageRow& m : messages) {
    RETURN_IF_ERROR(InsertMessage(conn, dest->id, uid, m.content_id, dest_modseq, m.system,
                                  m.keywords, m.internal_date, m.internal_tz));
    *added.mutable_added()->add_messages() = MakeMessageFlags(uid, m.system, m.keywords,
                                                              dest_modseq);
    for (std::string& k : SplitKeywords(m.keywords)) {
      if (!ContainsKeyword(keywords, k)) {
        keywords.push_back(std::move(k));
      }
    }
    result.source_uids.push_back(m.uid);
    result.destination_uids.push_back(uid);
    ++uid;
  }
  RETURN_IF_ERROR(SetUidNext(conn, dest->id, uid));
  RETURN_IF_ERROR(RememberKeywords(conn, dest->id, keywords));
  added.mutable_added()->set_uidnext(uid);
  RETURN_IF_ERROR(tx.Log(std::move(added)));
  if (move) {
    // RFC 6851 §3.3: the source messages are expunged in the same transaction.
    for (const MessageRow& m : messages) {
      RETURN_IF_ERROR(tx.ExpungeMessage(source.id, m.uid));
    }
    ASSIGN_OR_RETURN(result.source_highest_modseq,
                     tx.LogExpunged(source.id, result.source_uids));
  }
  return result;
}

absl::StatusOr<v1::ExpungeResponse> SqliteStore::Expunge(uint64_t user_id,
                                                         const v1::ExpungeRequest& request) {
  Ranges ranges = AllUids();
  if (request.uids_only()) {
    ASSIGN_OR_RETURN(ranges, NormalizeUidSet(request.uids()));
  }
  v1::ExpungeResponse response;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    ASSIGN_OR_RETURN(std::vector<MessageRow> deleted,
                     LoadMessages(conn, mailbox.id, ranges,
                                  [](const MessageRow& m) { return (m.system & kDeletedBit) != 0; }));
    response.set_highest_modseq(mailbox.highest_modseq);
    if (deleted.empty()) {
      return absl::OkStatus();
    }
    std::vector<uint32_t> uids;
    UidSetBuilder set;
    for (const MessageRow& m : deleted) {
      RETURN_IF_ERROR(tx.ExpungeMessage(mailbox.id, m.uid));
      uids.push_back(m.uid);
      set.Add(m.uid);
    }
    ASSIGN_OR_RETURN(uint64_t modseq, tx.LogExpunged(mailbox.id, uids));
    response.set_highest_modseq(modseq);
    *response.mutable_expunged() = set.Take();
    return CollectGarbage(conn);
  }));
  return response;
}

absl::StatusOr<v1::AppendResponse> SqliteStore::Append(uint64_t user_id,
                                                       std::string_view mailbox_name,
                                                       std::vector<NewMessage> messages) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(mailbox_name, limits_));
  if (messages.empty()) {
    return BadRequest("APPEND needs at least one message");
  }
  // Validate, hash and parse outside the write lock: parsing is the expensive part
  // and needs no database.
  std::vector<PreparedContent> contents(messages.size());
  std::vector<FlagSet> flags(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    NewMessage& message = messages[i];
    absl::Status valid = ValidateContentSize(
        message.file.has_value() ? message.file->size : message.content.size(), limits_);
    if (valid.ok()) {
      valid = ValidateInternalDate(message);
    }
    absl::StatusOr<FlagSet> parsed_flags = ParseFlags(message.flags);
    if (valid.ok()) {
      valid = parsed_flags.status();
    }
    if (!valid.ok()) {
      if (messages.size() == 1) {
        return valid;
      }
      return v1::MakeError(valid.code(), v1::DetailOf(valid).code(),
                           absl::StrCat("message ", i + 1, " of ", messages.size(), ": ",
                                        valid.message(), "; nothing was appended"));
    }
    flags[i] = *std::move(parsed_flags);
    contents[i].raw = std::move(message.content);
    contents[i].file = message.file;
    ASSIGN_OR_RETURN(contents[i].sha256, ContentSha256(contents[i]));
  }
  {
    // Content already stored (a copy of a message another user also received)
    // need not be parsed again.
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    for (PreparedContent& content : contents) {
      ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT 1 FROM contents WHERE sha256 = ?"));
      s.BindBlob(1, content.sha256);
      ASSIGN_OR_RETURN(bool exists, s.Step());
      if (!exists) {
        RETURN_IF_ERROR(ParseContent(content));
      }
    }
  }
  const int64_t now = NowUnix();
  v1::AppendResponse response;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(std::optional<MailboxRow> mailbox, MailboxByName(conn, user_id, name));
    if (!mailbox.has_value() || mailbox->noselect) {
      // RFC 3501 §6.3.11: TRYCREATE.
      return Error(absl::StatusCode::kNotFound, v1::TRYCREATE,
                   absl::StrCat("mailbox \"", name, "\" does not exist"));
    }
    RETURN_IF_ERROR(CheckUidSpace(*mailbox, messages.size()));
    ASSIGN_OR_RETURN(uint64_t modseq, tx.NextModseq(mailbox->id));
    v1::ChangeEvent event;
    event.set_mailbox_id(mailbox->id);
    event.set_modseq(modseq);
    uint32_t uid = mailbox->uidnext;
    std::vector<std::string> keywords;
    for (size_t i = 0; i < messages.size(); ++i) {
      ASSIGN_OR_RETURN(int64_t content_id, EnsureContent(conn, contents[i]));
      std::string joined = JoinKeywords(flags[i].keywords);
      int64_t date = messages[i].has_internal_date ? messages[i].internal_date_unix : now;
      int32_t tz = messages[i].has_internal_date ? messages[i].internal_date_tz_minutes : 0;
      RETURN_IF_ERROR(InsertMessage(conn, mailbox->id, uid, content_id, modseq,
                                    flags[i].system, joined, date, tz));
      *event.mutable_added()->add_messages() =
          MakeMessageFlags(uid, flags[i].system, joined, modseq);
      keywords.insert(keywords.end(), flags[i].keywords.begin(), flags[i].keywords.end());
      response.add_uids(uid);
      ++uid;
    }
    RETURN_IF_ERROR(SetUidNext(conn, mailbox->id, uid));
    RETURN_IF_ERROR(RememberKeywords(conn, mailbox->id, keywords));
    event.mutable_added()->set_uidnext(uid);
    response.set_mailbox_id(mailbox->id);
    response.set_uidvalidity(mailbox->uidvalidity);
    return tx.Log(std::move(event));
  }));
  return response;
}

absl::StatusOr<v1::ReviseResponse> SqliteStore::Revise(uint64_t user_id,
                                                       const v1::ReviseHeader& header,
                                                       std::string content) {
  RETURN_IF_ERROR(ValidateContentSize(content, limits_));
  if (header.uid() == 0) {
    return BadRequest("Revise needs the UID of the message it replaces");
  }
  std::optional<FlagSet> new_flags;
  if (header.replace_flags()) {
    ASSIGN_OR_RETURN(new_flags, ParseFlags(header.flags()));
  }
  std::string name;
  if (header.mailbox_id() == 0) {
    ASSIGN_OR_RETURN(name, NormalizeMailboxName(header.mailbox(), limits_));
  }
  PreparedContent prepared;
  prepared.raw = std::move(content);
  prepared.sha256 = Sha256(prepared.raw);
  RETURN_IF_ERROR(ParseContent(prepared));
  const int64_t now = NowUnix();
  v1::ReviseResponse response;
  RETURN_IF_ERROR(Write([&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    MailboxRow mailbox;
    if (header.mailbox_id() != 0) {
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("SELECT " MAILBOX_COLUMNS
                                    " FROM mailboxes WHERE id = ? AND user_id = ?"));
      s.Bind(1, header.mailbox_id()).Bind(2, user_id);
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return MailboxChanged();
      }
      mailbox = ReadMailbox(s);
      if (mailbox.noselect) {
        return MailboxChanged();
      }
    } else {
      ASSIGN_OR_RETURN(mailbox, SelectableByName(conn, user_id, name));
    }
    if (header.uidvalidity() != 0 && header.uidvalidity() != mailbox.uidvalidity) {
      return MailboxChanged();
    }
    ASSIGN_OR_RETURN(std::vector<MessageRow> old,
                     LoadMessages(conn, mailbox.id, Ranges{{header.uid(), header.uid()}},
                                  [](const MessageRow&) { return true; }));
    if (old.empty()) {
      return Error(absl::StatusCode::kNotFound, v1::EXPUNGEISSUED,
                   absl::StrCat("message UID ", header.uid(), " does not exist (expunged?)"));
    }
    RETURN_IF_ERROR(CheckUidSpace(mailbox, 1));
    uint32_t system = old[0].system;
    std::string keywords = old[0].keywords;
    if (new_flags.has_value()) {
      system = new_flags->system;
      keywords = JoinKeywords(new_flags->keywords);
      RETURN_IF_ERROR(RememberKeywords(conn, mailbox.id, new_flags->keywords));
    }
    ASSIGN_OR_RETURN(int64_t content_id, EnsureContent(conn, prepared));
    const uint32_t new_uid = mailbox.uidnext;
    // The new UID is logged first (MODSEQ M) and the old one expunged after
    // (M + 1), so a session applying events in order never sees the message
    // missing.
    ASSIGN_OR_RETURN(uint64_t added_modseq, tx.NextModseq(mailbox.id));
    RETURN_IF_ERROR(InsertMessage(conn, mailbox.id, new_uid, content_id, added_modseq, system,
                                  keywords, now, 0));
    RETURN_IF_ERROR(SetUidNext(conn, mailbox.id, new_uid + 1));
    v1::ChangeEvent added;
    added.set_mailbox_id(mailbox.id);
    added.set_modseq(added_modseq);
    *added.mutable_added()->add_messages() =
        MakeMessageFlags(new_uid, system, keywords, added_modseq);
    added.mutable_added()->set_uidnext(new_uid + 1);
    added.set_more(true);  // the expunge below follows in this commit
    RETURN_IF_ERROR(tx.Log(std::move(added)));
    RETURN_IF_ERROR(tx.ExpungeMessage(mailbox.id, header.uid()));
    ASSIGN_OR_RETURN(uint64_t modseq, tx.LogExpunged(mailbox.id, {header.uid()}));
    response.set_uidvalidity(mailbox.uidvalidity);
    response.set_old_uid(header.uid());
    response.set_new_uid(new_uid);
    response.set_modseq(modseq);
    return CollectGarbage(conn);
  }));
  return response;
}

absl::StatusOr<v1::SearchResponse> SqliteStore::Search(uint64_t user_id,
                                                       const v1::SearchRequest& request,
                                                       WorkBudget& budget) {
  SearchLimits search_limits;
  search_limits.max_depth = limits_.max_search_depth;
  search_limits.max_keys = limits_.max_search_keys;
  search_limits.max_uid_ranges = limits_.max_search_uid_ranges;
  search_limits.max_string_octets = limits_.max_search_string_octets;
  RETURN_IF_ERROR(ValidateSearch(request, search_limits));
  // Matches() bisects UID sets; the gateway need not send them sorted.
  v1::SearchKey key = request.key();
  CanonicalizeUidSets(&key);
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                       request.uidvalidity()));
  UidSetBuilder matches;
  uint64_t highest = 0;
  for (const auto& [first, last] : CandidateRanges(key)) {
    if (!budget.KeepGoing()) {
      return budget.status();
    }
    ASSIGN_OR_RETURN(Statement s,
                     conn->Prepare("SELECT m.uid, m.modseq, m.system_flags, m.keywords, "
                                   "m.content_id, m.internal_date, m.internal_tz, c.size, "
                                   "c.sent_date, c.header_size FROM messages m "
                                   "JOIN contents c ON c.id = m.content_id "
                                   "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                                   "ORDER BY m.uid"));
    s.Bind(1, mailbox.id).Bind(2, first).Bind(3, last);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      // Per message as well as inside long scans: a search of cheap keys over a
      // huge mailbox also stops once its caller is gone.
      if (!budget.KeepGoing()) {
        return budget.status();
      }
      StoredSearchMessage message(*conn, s, search_memory_, budget.deadline());
      bool matched = Matches(key, message, budget);
      RETURN_IF_ERROR(message.status());
      if (budget.stopped()) {
        return budget.status();
      }
      if (matched) {
        matches.Add(message.uid());
        highest = std::max(highest, message.modseq());
      }
    }
  }
  v1::SearchResponse response;
  *response.mutable_uids() = matches.Take();
  response.set_highest_modseq(highest);
  return response;
}

// ---------------------------------------------------------------------------
// Change log

absl::Status SqliteStore::ReadChanges(uint64_t user_id, uint64_t mailbox_id,
                                      uint32_t uidvalidity, uint64_t from_modseq,
                                      std::vector<v1::ChangeEvent>* out) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, mailbox_id, uidvalidity));
  if (from_modseq < mailbox.log_floor) {
    return Error(absl::StatusCode::kOutOfRange, v1::RESYNC,
                 absl::StrCat("changes since MODSEQ ", from_modseq,
                              " are no longer logged (the log starts after ", mailbox.log_floor,
                              "); reopen the mailbox"));
  }
  if (from_modseq >= mailbox.highest_modseq) {
    return absl::OkStatus();  // nothing newer (and no bound that would turn negative)
  }
  ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT event FROM changes WHERE mailbox_id = ? "
                                              "AND modseq > ? ORDER BY modseq"));
  s.Bind(1, mailbox.id).Bind(2, from_modseq);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return absl::OkStatus();
    }
    v1::ChangeEvent event;
    std::string_view blob = s.Blob(0);
    if (!event.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
      return Error(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                   "store: a change-log row is unreadable");
    }
    out->push_back(std::move(event));
  }
}

}  // namespace mailbox::store
