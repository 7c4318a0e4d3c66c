#include "mailbox-service/store/message_content.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "mailbox-service/store/sort_keys.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {
namespace {

absl::Status BadRequest(std::string_view message) { return v1::BadRequest(message); }

absl::Status ContentFileError(std::string_view what, int error) {
  return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
               absl::StrCat("store: message content file: ", std::string(what), ": ",
                            std::strerror(error)));
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

}  // namespace

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
    return v1::MakeError(absl::StatusCode::kInternal, v1::SERVER_BUG,
                         "store: cannot start SHA-256");
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
  // RFC 8970 §2: made once here, from a bounded prefix of one part.
  content.preview = mime::Preview(*parsed, raw);
  // RFC 5256 / RFC 5957 sort and thread keys, from the top-level header.
  content.sort_keys = EncodeSortKeys(
      ExtractSortKeys(raw.substr(0, std::min<uint64_t>(parsed->root.header_end, raw.size()))));
  content.parsed = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> PreviewOfStored(
    std::string_view parsed_blob,
    const std::function<absl::Status(uint64_t, uint64_t, std::string*)>& read) {
  absl::StatusOr<mime::ParsedMessage> parsed = mime::Deserialize(parsed_blob);
  if (!parsed.ok()) {
    return v1::MakeError(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                         absl::StrCat("store: stored message structure is unreadable: ",
                                      parsed.status().message()));
  }
  const mime::Part* part = mime::PreviewPart(*parsed);
  if (part == nullptr || part->body_begin > part->body_end) {
    return std::string();
  }
  const uint64_t length = part->body_end - part->body_begin;
  const bool complete = length <= mime::kPreviewMaxInputOctets;
  std::string body;
  RETURN_IF_ERROR(
      read(part->body_begin, complete ? length : mime::kPreviewMaxInputOctets, &body));
  return mime::PreviewFromBody(*part, body, complete);
}

absl::Status ValidateContentSize(uint64_t size, const StoreLimits& limits) {
  if (size == 0) {
    return BadRequest("a message must not be empty");
  }
  if (size > limits.max_message_octets) {
    return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::TOOBIG,
                 absl::StrCat("message of ", size, " octets exceeds the limit of ",
                              limits.max_message_octets, " octets"));
  }
  return absl::OkStatus();
}

absl::Status ValidateContentSize(std::string_view content, const StoreLimits& limits) {
  return ValidateContentSize(content.size(), limits);
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

absl::Status FetchCancelled() { return absl::CancelledError("fetch cancelled by the receiver"); }

}  // namespace mailbox::store
