// Message content as every backend of the store handles it, whatever it keeps the
// bytes in: validation of what a caller hands to Append and Revise, the SHA-256 that
// content is stored once under, the MIME parse whose results (envelope, body
// structure, the parsed tree) are stored beside it, reading content a caller spooled
// to a file in bounded pieces, and cutting a FETCH section into the chunks the
// mailbox.v1 Fetch stream carries.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/store.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

// A message on its way into the store: its bytes (or the file they are in), their
// hash, and once parsed what the store keeps beside them.
struct PreparedContent {
  std::string raw;                  // the content, unless `file` is set
  std::optional<ContentFile> file;  // where to read it in pieces instead
  std::string sha256;               // 32 bytes
  bool parsed = false;
  std::string parsed_blob, envelope, body, bodystructure;
  std::optional<int32_t> sent_date;
  uint64_t header_size = 0;
  std::string preview;  // RFC 8970 §2 (mime::Preview), made at ingest
  std::string sort_keys;  // EncodeSortKeys of the header's SORT/THREAD keys

  uint64_t size() const { return file.has_value() ? file->size : raw.size(); }
};

// Content read from a ContentFile is handled this many octets at a time, so a
// message of any size costs the service one such buffer, not its size.
inline constexpr size_t kContentPieceOctets = 256 << 10;

// Reads `length` octets at `offset` of the content into `out`.
absl::Status ReadContentFile(const ContentFile& file, uint64_t offset, size_t length, char* out);

// Calls `piece` with the content in order, kContentPieceOctets at a time.
template <typename Piece>
absl::Status ForEachContentPiece(const ContentFile& file, Piece piece) {
  std::string buffer(std::min<uint64_t>(kContentPieceOctets, file.size), '\0');
  for (uint64_t done = 0; done < file.size;) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(buffer.size(), file.size - done));
    if (absl::Status read = ReadContentFile(file, done, length, buffer.data()); !read.ok()) {
      return read;
    }
    if (absl::Status used = piece(done, std::string_view(buffer.data(), length)); !used.ok()) {
      return used;
    }
    done += length;
  }
  return absl::OkStatus();
}

std::string Sha256(std::string_view data);

// The content's SHA-256, read from its file a piece at a time when it has one.
absl::StatusOr<std::string> ContentSha256(const PreparedContent& content);

// Parses the content (mapped from its file when it has one) and fills the parsed
// fields, the preview included. BAD_REQUEST if it cannot be parsed.
absl::Status ParseContent(PreparedContent& content);

// BAD_REQUEST for an empty message, TOOBIG beyond limits.max_message_octets.
absl::Status ValidateContentSize(uint64_t size, const StoreLimits& limits);
absl::Status ValidateContentSize(std::string_view content, const StoreLimits& limits);

// A zone offset within a day and a date in the years 1 to 9999, or BAD_REQUEST.
absl::Status ValidateInternalDate(const NewMessage& message);

// RFC 7162 §7: mod-sequence values are 63-bit. SQL integers are signed 64-bit,
// so a larger value bound as a parameter would turn negative and compare below
// every MODSEQ.
inline constexpr uint64_t kMaxModseq = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());


// RFC 8970 PREVIEW of stored content whose preview was not made at ingest (it
// was stored before the store kept previews): made from its stored structure
// and at most mime::kPreviewMaxInputOctets of one part, read through `read`
// (offset, length, out).
absl::StatusOr<std::string> PreviewOfStored(
    std::string_view parsed_blob,
    const std::function<absl::Status(uint64_t, uint64_t, std::string*)>& read);

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

// BAD_REQUEST for a section RFC 3501 §6.4.5 or RFC 3516 §4.1 does not allow.
absl::Status ValidateSection(const v1::Section& section);

mime::SectionSpec ToSpec(const v1::Section& section);

// What a fetch returns once its receiver cancelled.
absl::Status FetchCancelled();

}  // namespace mailbox::store
