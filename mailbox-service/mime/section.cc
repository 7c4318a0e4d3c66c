// FETCH BODY[section] / BINARY[section] resolution (RFC 3501 §6.4.5,
// RFC 3516 §4).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace {

// RFC 3501 §6.4.5 part numbering. The parts of a message are the children
// of its multipart body, or -- for a non-multipart message -- just "1", the
// message body itself. The parts of a MESSAGE/RFC822 part are those of the
// encapsulated message. Returns nullptr for a part that does not exist.
const Part* FindPart(const Part& root, const std::vector<uint32_t>& path) {
  const Part* cur = &root;
  bool is_part = false;  // false while `cur` stands for a whole message
  for (const uint32_t n : path) {
    if (n == 0) return nullptr;
    const Part* container = cur;
    if (is_part) {
      if (cur->IsEncapsulated()) {
        if (cur->children.size() != 1) return nullptr;
        container = &cur->children[0];
      } else if (!cur->IsMultipart()) {
        return nullptr;
      }
    }
    if (container->IsMultipart()) {
      if (n > container->children.size()) return nullptr;
      cur = &container->children[n - 1];
    } else {
      if (n != 1) return nullptr;
      cur = container;
    }
    is_part = true;
  }
  return cur;
}

// The message that HEADER / HEADER.FIELDS / TEXT of `spec` refer to.
absl::StatusOr<const Part*> TargetMessage(const ParsedMessage& message,
                                          const Part* part,
                                          const SectionSpec& spec) {
  if (spec.part.empty()) return &message.root;
  // RFC 3501 §6.4.5: with a part number, these specifiers are valid only
  // for a part of type MESSAGE/RFC822.
  if (!part->IsEncapsulated() || part->children.size() != 1) {
    return absl::InvalidArgumentError(
        "HEADER/TEXT section of a part that is not MESSAGE/RFC822");
  }
  return &part->children[0];
}

void AddRange(uint64_t begin, uint64_t end, ResolvedSection* out) {
  if (begin >= end) return;
  if (!out->pieces.empty() && !out->pieces.back().is_generated &&
      out->pieces.back().end == begin) {
    out->pieces.back().end = end;  // coalesce adjacent field lines
  } else {
    out->pieces.push_back(Piece{begin, end, {}, false});
  }
  out->size += end - begin;
}

void AddGenerated(std::string bytes, ResolvedSection* out) {
  out->size += bytes.size();
  Piece piece;
  piece.generated = std::move(bytes);
  piece.is_generated = true;
  out->pieces.push_back(std::move(piece));
}

bool IsHeaderFields(SectionSpec::Text t) {
  return t == SectionSpec::Text::kHeaderFields ||
         t == SectionSpec::Text::kHeaderFieldsNot;
}

}  // namespace

std::optional<std::pair<uint64_t, uint64_t>> RequiredHeaderRange(
    const ParsedMessage& message, const SectionSpec& spec) {
  if (!IsHeaderFields(spec.text)) return std::nullopt;
  const Part* part =
      spec.part.empty() ? &message.root : FindPart(message.root, spec.part);
  if (part == nullptr) return std::nullopt;
  absl::StatusOr<const Part*> target = TargetMessage(message, part, spec);
  if (!target.ok()) return std::nullopt;
  return std::make_pair((*target)->header_begin, (*target)->header_end);
}

absl::StatusOr<ResolvedSection> ResolveSection(const ParsedMessage& message,
                                               std::string_view bytes,
                                               const SectionSpec& spec) {
  using Text = SectionSpec::Text;
  if (spec.binary && spec.text != Text::kNone) {
    // RFC 3516 §4.1: section-binary has part numbers only.
    return absl::InvalidArgumentError("BINARY takes part numbers only");
  }
  if (spec.text == Text::kMime && spec.part.empty()) {
    return absl::InvalidArgumentError("MIME needs a part number");
  }
  ResolvedSection out;
  const Part* part =
      spec.part.empty() ? &message.root : FindPart(message.root, spec.part);
  if (part == nullptr) return out;  // nonexistent part: empty section

  switch (spec.text) {
    case Text::kNone: {
      if (spec.part.empty()) {
        AddRange(message.root.header_begin, message.root.body_end, &out);
        return out;
      }
      AddRange(part->body_begin, part->body_end, &out);
      if (spec.binary && part->children.empty()) {
        const std::string& e = part->encoding;
        if (e == "BASE64" || e == "QUOTED-PRINTABLE") {
          out.binary_encoding = e;
          out.size = part->decoded_size;
        } else if (e != "7BIT" && e != "8BIT" && e != "BINARY") {
          return absl::FailedPreconditionError("UNKNOWN-CTE");
        }
      }
      return out;
    }
    case Text::kMime:
      AddRange(part->header_begin, part->header_end, &out);
      return out;
    case Text::kHeader:
    case Text::kText:
    case Text::kHeaderFields:
    case Text::kHeaderFieldsNot:
      break;
  }
  absl::StatusOr<const Part*> target = TargetMessage(message, part, spec);
  if (!target.ok()) return target.status();
  const Part& m = **target;
  if (spec.text == Text::kHeader) {
    AddRange(m.header_begin, m.header_end, &out);
    return out;
  }
  if (spec.text == Text::kText) {
    AddRange(m.body_begin, m.body_end, &out);
    return out;
  }

  // HEADER.FIELDS (NOT): the matching field lines as raw ranges, folded
  // continuation lines included, then the empty line that ends a header.
  const uint64_t header_size = m.header_end - m.header_begin;
  std::string_view block;
  if (bytes.size() == header_size) {
    block = bytes;
  } else if (bytes.size() == message.root.body_end &&
             m.header_end <= bytes.size()) {
    block = bytes.substr(m.header_begin, header_size);
  } else {
    return absl::InvalidArgumentError(
        "HEADER.FIELDS needs the header block of RequiredHeaderRange() or "
        "the full message");
  }
  const bool negate = spec.text == Text::kHeaderFieldsNot;
  internal::ScanHeader(
      block, 0, block.size(), [&](const internal::HeaderField& field) {
        if (field.name.empty()) return true;  // not a field line
        bool listed = false;
        for (const std::string& name : spec.fields) {
          if (internal::EqualsIgnoreCase(field.name, name)) {
            listed = true;
            break;
          }
        }
        if (listed != negate) {
          AddRange(m.header_begin + field.begin, m.header_begin + field.end,
                   &out);
          if (field.end == field.begin || block[field.end - 1] != '\n') {
            AddGenerated("\r\n", &out);  // last field of an unterminated header
          }
        }
        return true;
      });
  AddGenerated("\r\n", &out);
  return out;
}

}  // namespace mailbox::mime
