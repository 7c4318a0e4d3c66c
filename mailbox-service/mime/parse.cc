// Message structure: MIME entities (RFC 2045, RFC 2046), ENVELOPE, BODY and
// BODYSTRUCTURE (RFC 3501 §7.4.2, §9).
//
// Each entity is parsed by one call of Parser::ParseEntity over its byte
// range; a multipart splits its body at delimiter lines and recurses on
// each part, so each nesting level scans its bytes once and the total is
// O(depth * size) with depth capped by Limits::max_depth.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace internal {
namespace {

// ---- RFC 2045 §5.1 header value syntax ----

bool IsTspecial(char c) {
  switch (c) {
    case '(':
    case ')':
    case '<':
    case '>':
    case '@':
    case ',':
    case ';':
    case ':':
    case '\\':
    case '"':
    case '/':
    case '[':
    case ']':
    case '?':
    case '=':
      return true;
    default:
      return false;
  }
}

void SkipCfws(std::string_view s, size_t* i) {
  int depth = 0;
  while (*i < s.size()) {
    const char c = s[*i];
    if (depth > 0) {
      // A quoted-pair (RFC 5322 §3.2.1) skips the next character, but a backslash
      // that ends the field has none: stop at the end, never past it (found by the
      // MIME fuzzer: ParseContentType then read a token from beyond the string).
      if (c == '\\' && *i + 1 < s.size()) {
        ++*i;
      } else if (c == '(') {
        ++depth;
      } else if (c == ')') {
        --depth;
      }
      ++*i;
      continue;
    }
    if (c == '(') {
      depth = 1;
      ++*i;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++*i;
    } else {
      return;
    }
  }
}

std::string_view ReadToken(std::string_view s, size_t* i) {
  const size_t start = *i;
  while (*i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[*i]);
    if (c <= ' ' || c == 0x7f || IsTspecial(static_cast<char>(c))) break;
    ++*i;
  }
  return s.substr(start, *i - start);
}

// Parameters after the media type or disposition type. Lenient where real
// mail is sloppy: an unquoted value runs to the next ';' or whitespace
// (boundaries like ----=_Part_1 are often sent unquoted), junk is skipped
// up to the next ';'. RFC 2231 continuations are left as sent.
std::vector<Param> ParseParams(std::string_view s, size_t i) {
  std::vector<Param> params;
  while (true) {
    SkipCfws(s, &i);
    if (i >= s.size()) break;
    if (s[i] != ';') {
      const size_t semi = s.find(';', i);
      if (semi == std::string_view::npos) break;
      i = semi;
    }
    ++i;  // ';'
    SkipCfws(s, &i);
    const std::string_view attribute = ReadToken(s, &i);
    if (attribute.empty()) continue;
    SkipCfws(s, &i);
    if (i >= s.size() || s[i] != '=') continue;
    ++i;
    SkipCfws(s, &i);
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value.push_back(s[i]);
        ++i;
      }
      if (i < s.size()) ++i;  // closing quote
    } else {
      const size_t start = i;
      while (i < s.size() && s[i] != ';' && s[i] != ' ' && s[i] != '\t') ++i;
      value = std::string(s.substr(start, i - start));
    }
    params.push_back({ToUpper(attribute), std::move(value)});
  }
  return params;
}

struct MediaType {
  std::string type, subtype;
  std::vector<Param> params;
};

std::optional<MediaType> ParseContentType(std::string_view raw) {
  const std::string s = Unfold(raw);
  size_t i = 0;
  SkipCfws(s, &i);
  const std::string_view type = ReadToken(s, &i);
  SkipCfws(s, &i);
  if (type.empty() || i >= s.size() || s[i] != '/') return std::nullopt;
  ++i;
  SkipCfws(s, &i);
  const std::string_view subtype = ReadToken(s, &i);
  if (subtype.empty()) return std::nullopt;
  return MediaType{ToUpper(type), ToUpper(subtype), ParseParams(s, i)};
}

std::optional<Disposition> ParseDisposition(std::string_view raw) {
  const std::string s = Unfold(raw);
  size_t i = 0;
  SkipCfws(s, &i);
  const std::string_view type = ReadToken(s, &i);
  if (type.empty()) return std::nullopt;
  return Disposition{ToUpper(type), ParseParams(s, i)};
}

// RFC 3282: a comma-separated list of language tags.
std::vector<std::string> ParseLanguage(std::string_view raw) {
  const std::string s = Unfold(raw);
  std::vector<std::string> tags;
  size_t i = 0;
  while (i < s.size()) {
    SkipCfws(s, &i);
    const size_t start = i;
    while (i < s.size() && s[i] != ',' && s[i] != '(' && s[i] != ' ' &&
           s[i] != '\t') {
      ++i;
    }
    if (i > start) tags.emplace_back(s.substr(start, i - start));
    SkipCfws(s, &i);
    if (i < s.size() && s[i] != ',') {
      // Junk between tags: skip to the next comma.
      const size_t comma = s.find(',', i);
      i = comma == std::string::npos ? s.size() : comma;
    }
    if (i < s.size()) ++i;
  }
  return tags;
}

std::string ParseEncoding(std::string_view raw) {
  const std::string s = Unfold(raw);
  size_t i = 0;
  SkipCfws(s, &i);
  const std::string_view token = ReadToken(s, &i);
  if (token.empty()) return "7BIT";
  return ToUpper(token);
}

const std::string* FindParam(const std::vector<Param>& params,
                             std::string_view attribute) {
  for (const Param& p : params) {
    if (p.attribute == attribute) return &p.value;
  }
  return nullptr;
}

// ---- entity parsing ----

// The header fields one entity needs, first occurrence of each.
struct Fields {
  enum Index {
    kContentType,
    kEncoding,
    kId,
    kDescription,
    kDisposition,
    kLanguage,
    kLocation,
    kMd5,
    kDate,
    kSubject,
    kFrom,
    kSender,
    kReplyTo,
    kTo,
    kCc,
    kBcc,
    kInReplyTo,
    kMessageId,
    kCount
  };
  std::optional<std::string_view> value[kCount];
};

constexpr std::string_view kFieldNames[Fields::kCount] = {
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "Content-Disposition",
    "Content-Language",
    "Content-Location",
    "Content-MD5",
    "Date",
    "Subject",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "In-Reply-To",
    "Message-ID"};

std::optional<std::string> OptionalUnfolded(
    const std::optional<std::string_view>& v) {
  if (!v.has_value()) return std::nullopt;
  return Unfold(*v);
}

class Parser {
 public:
  Parser(std::string_view raw, const Limits& limits)
      : raw_(raw),
        limits_(limits),
        max_depth_(std::clamp(limits.max_depth, 0, kMaxSupportedDepth)),
        address_budget_(limits.max_address_count) {}

  Part ParseEntity(uint64_t begin, uint64_t end, int depth, bool is_message,
                   bool in_digest);

  std::optional<int32_t> sent_date() const { return sent_date_; }

 private:
  Fields ReadHeader(Part* part, uint64_t end, bool is_message);
  std::string Envelope(const Fields& f);
  void SplitMultipart(Part* part, std::string_view boundary, int depth);
  uint64_t CountLines(uint64_t begin, uint64_t end) const;
  uint64_t DecodedSize(const Part& part) const;

  std::string_view raw_;
  const Limits& limits_;
  const int max_depth_;
  int parts_ = 0;
  size_t header_fields_ = 0;
  size_t address_budget_;
  std::optional<int32_t> sent_date_;
};

Fields Parser::ReadHeader(Part* part, uint64_t end, bool is_message) {
  Fields f;
  // Envelope fields (kDate onwards) matter only for messages; a body part's
  // Subject: is just text.
  const int last = is_message ? Fields::kCount : Fields::kDate;
  part->header_end =
      ScanHeader(raw_, part->header_begin, end, [&](const HeaderField& field) {
        if (++header_fields_ > limits_.max_header_fields) return false;
        for (int k = 0; k < last; ++k) {
          if (!f.value[k].has_value() &&
              EqualsIgnoreCase(field.name, kFieldNames[k])) {
            f.value[k] = field.value;
            break;
          }
        }
        return true;
      });
  part->body_begin = part->header_end;
  part->body_end = end;
  return f;
}

std::string Parser::Envelope(const Fields& f) {
  std::string out = "(";
  auto nstring = [&](int k) {
    AppendNString(OptionalUnfolded(f.value[k]), &out);
    out.push_back(' ');
  };
  auto addresses = [&](int k) {
    std::string list;
    if (!f.value[k].has_value() ||
        !AppendAddressList(*f.value[k], &address_budget_, &list)) {
      list = "NIL";
    }
    return list;
  };
  nstring(Fields::kDate);
  nstring(Fields::kSubject);
  const std::string from = addresses(Fields::kFrom);
  std::string sender = addresses(Fields::kSender);
  std::string reply_to = addresses(Fields::kReplyTo);
  // RFC 3501 §7.4.2: absent or empty Sender / Reply-To default to From.
  if (sender == "NIL") sender = from;
  if (reply_to == "NIL") reply_to = from;
  absl::StrAppend(&out, from, " ", sender, " ", reply_to, " ",
                  addresses(Fields::kTo), " ", addresses(Fields::kCc), " ",
                  addresses(Fields::kBcc), " ");
  nstring(Fields::kInReplyTo);
  AppendNString(OptionalUnfolded(f.value[Fields::kMessageId]), &out);
  out.push_back(')');
  return out;
}

uint64_t Parser::CountLines(uint64_t begin, uint64_t end) const {
  if (begin >= end) return 0;
  const std::string_view body = raw_.substr(begin, end - begin);
  uint64_t lines = std::count(body.begin(), body.end(), '\n');
  if (body.back() != '\n') ++lines;
  return lines;
}

uint64_t Parser::DecodedSize(const Part& part) const {
  const uint64_t size = part.body_end - part.body_begin;
  if (!part.children.empty() ||
      (part.encoding != "BASE64" && part.encoding != "QUOTED-PRINTABLE")) {
    return size;
  }
  std::unique_ptr<Decoder> decoder = Decoder::For(part.encoding);
  std::string out;
  uint64_t total = 0;
  constexpr uint64_t kChunk = 64 * 1024;
  for (uint64_t pos = part.body_begin; pos < part.body_end; pos += kChunk) {
    decoder->Feed(raw_.substr(pos, std::min(kChunk, part.body_end - pos)),
                  &out);
    total += out.size();
    out.clear();
  }
  decoder->Finish(&out);
  return total + out.size();
}

// RFC 2046 §5.1.1: a delimiter is "--" boundary at the start of a line; the
// line break before it belongs to the delimiter, not to the preceding part.
// Anything after the boundary on the delimiter line is ignored (transport
// padding, and sloppy generators). A missing close delimiter ends the last
// part at the end of the body.
void Parser::SplitMultipart(Part* part, std::string_view boundary, int depth) {
  const uint64_t end = part->body_end;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::optional<uint64_t> part_start;  // nullopt while in the preamble
  bool closed = false;
  uint64_t pos = part->body_begin;
  while (pos < end) {
    const void* nl = std::memchr(raw_.data() + pos, '\n', end - pos);
    const uint64_t next =
        nl == nullptr ? end
                      : static_cast<uint64_t>(static_cast<const char*>(nl) -
                                              raw_.data()) +
                            1;
    const std::string_view line = raw_.substr(pos, next - pos);
    if (line.size() >= 2 + boundary.size() && line[0] == '-' &&
        line[1] == '-' && line.substr(2, boundary.size()) == boundary) {
      if (part_start.has_value()) {
        uint64_t e = pos;
        if (e > *part_start && raw_[e - 1] == '\n') {
          --e;
          if (e > *part_start && raw_[e - 1] == '\r') --e;
        }
        ranges.emplace_back(*part_start, e);
      }
      const std::string_view rest = line.substr(2 + boundary.size());
      if (rest.size() >= 2 && rest[0] == '-' && rest[1] == '-') {
        closed = true;
        break;
      }
      part_start = next;
    }
    pos = next;
  }
  if (!closed && part_start.has_value()) ranges.emplace_back(*part_start, end);

  if (ranges.empty()) {
    // Not a multipart at all (see mime.h).
    part->type = "TEXT";
    part->subtype = "PLAIN";
    return;
  }
  const bool digest = part->subtype == "DIGEST";
  for (const auto& [b, e] : ranges) {
    if (parts_ >= limits_.max_parts) break;
    part->children.push_back(ParseEntity(b, e, depth + 1, false, digest));
  }
  if (part->children.empty()) {
    part->type = "APPLICATION";
    part->subtype = "OCTET-STREAM";
  }
}

Part Parser::ParseEntity(uint64_t begin, uint64_t end, int depth,
                         bool is_message, bool in_digest) {
  ++parts_;
  Part part;
  part.header_begin = begin;
  part.is_message = is_message;
  const Fields f = ReadHeader(&part, end, is_message);

  std::optional<MediaType> media;
  if (f.value[Fields::kContentType].has_value()) {
    media = ParseContentType(*f.value[Fields::kContentType]);
  }
  if (media.has_value()) {
    part.type = std::move(media->type);
    part.subtype = std::move(media->subtype);
    part.params = std::move(media->params);
  } else if (in_digest) {
    part.type = "MESSAGE";
    part.subtype = "RFC822";
  } else {
    part.params.push_back({"CHARSET", "US-ASCII"});
  }
  if (f.value[Fields::kEncoding].has_value()) {
    part.encoding = ParseEncoding(*f.value[Fields::kEncoding]);
  }
  part.id = OptionalUnfolded(f.value[Fields::kId]);
  part.description = OptionalUnfolded(f.value[Fields::kDescription]);
  part.md5 = OptionalUnfolded(f.value[Fields::kMd5]);
  part.location = OptionalUnfolded(f.value[Fields::kLocation]);
  if (f.value[Fields::kDisposition].has_value()) {
    part.disposition = ParseDisposition(*f.value[Fields::kDisposition]);
  }
  if (f.value[Fields::kLanguage].has_value()) {
    part.language = ParseLanguage(*f.value[Fields::kLanguage]);
  }
  if (is_message) {
    part.envelope = Envelope(f);
    if (depth == 0 && f.value[Fields::kDate].has_value()) {
      sent_date_ = ParseDateDay(Unfold(*f.value[Fields::kDate]));
    }
  }

  const bool can_descend = depth < max_depth_ && parts_ < limits_.max_parts;
  if (part.IsMultipart()) {
    const std::string* boundary = FindParam(part.params, "BOUNDARY");
    if (boundary == nullptr || boundary->empty()) {
      part.type = "TEXT";
      part.subtype = "PLAIN";
    } else if (!can_descend) {
      part.type = "APPLICATION";
      part.subtype = "OCTET-STREAM";
    } else {
      SplitMultipart(&part, *boundary, depth);
    }
  } else if (part.IsEncapsulated()) {
    // RFC 2046 §5.2.1: only 7bit, 8bit or binary; an encoded message has
    // no byte offsets to describe.
    const bool identity = part.encoding == "7BIT" || part.encoding == "8BIT" ||
                          part.encoding == "BINARY";
    if (!identity || !can_descend) {
      part.type = "APPLICATION";
      part.subtype = "OCTET-STREAM";
    } else {
      part.children.push_back(
          ParseEntity(part.body_begin, part.body_end, depth + 1, true, false));
    }
  }
  if (part.type == "TEXT" || part.IsEncapsulated()) {
    part.body_lines = CountLines(part.body_begin, part.body_end);
  }
  part.decoded_size = DecodedSize(part);
  return part;
}

// ---- BODY / BODYSTRUCTURE ----

void AppendParams(const std::vector<Param>& params, std::string* out) {
  if (params.empty()) {
    out->append("NIL");
    return;
  }
  out->push_back('(');
  bool first = true;
  for (const Param& p : params) {
    if (!first) out->push_back(' ');
    first = false;
    AppendImapString(p.attribute, out);
    out->push_back(' ');
    AppendImapString(p.value, out);
  }
  out->push_back(')');
}

// body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 3501 §9).
void AppendExtensionTail(const Part& p, std::string* out) {
  if (p.disposition.has_value()) {
    out->push_back('(');
    AppendImapString(p.disposition->type, out);
    out->push_back(' ');
    AppendParams(p.disposition->params, out);
    out->push_back(')');
  } else {
    out->append("NIL");
  }
  out->push_back(' ');
  if (p.language.empty()) {
    out->append("NIL");
  } else if (p.language.size() == 1) {
    AppendImapString(p.language[0], out);
  } else {
    out->push_back('(');
    for (size_t i = 0; i < p.language.size(); ++i) {
      if (i > 0) out->push_back(' ');
      AppendImapString(p.language[i], out);
    }
    out->push_back(')');
  }
  out->push_back(' ');
  AppendNString(p.location, out);
}

}  // namespace

void AppendBody(const Part& p, bool extended, std::string* out) {
  out->push_back('(');
  if (p.IsMultipart()) {
    // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    for (const Part& child : p.children) AppendBody(child, extended, out);
    out->push_back(' ');
    AppendImapString(p.subtype, out);
    if (extended) {
      out->push_back(' ');
      AppendParams(p.params, out);
      out->push_back(' ');
      AppendExtensionTail(p, out);
    }
    out->push_back(')');
    return;
  }
  // body-type-1part: media type, then body-fields.
  AppendImapString(p.type, out);
  out->push_back(' ');
  AppendImapString(p.subtype, out);
  out->push_back(' ');
  AppendParams(p.params, out);
  out->push_back(' ');
  AppendNString(p.id, out);
  out->push_back(' ');
  AppendNString(p.description, out);
  out->push_back(' ');
  AppendImapString(p.encoding, out);
  absl::StrAppend(out, " ", p.body_end - p.body_begin);
  if (p.IsEncapsulated() && p.children.size() == 1) {
    // body-type-msg: envelope, body and lines of the encapsulated message.
    out->push_back(' ');
    out->append(p.children[0].envelope);
    out->push_back(' ');
    AppendBody(p.children[0], extended, out);
    absl::StrAppend(out, " ", p.body_lines);
  } else if (p.type == "TEXT") {
    absl::StrAppend(out, " ", p.body_lines);
  }
  if (extended) {
    // body-ext-1part = body-fld-md5 SP body-fld-dsp SP body-fld-lang SP
    // body-fld-loc
    out->push_back(' ');
    AppendNString(p.md5, out);
    out->push_back(' ');
    AppendExtensionTail(p, out);
  }
  out->push_back(')');
}

}  // namespace internal

absl::StatusOr<ParsedMessage> Parse(std::string_view raw,
                                    const Limits& limits) {
  internal::Parser parser(raw, limits);
  ParsedMessage message;
  message.root = parser.ParseEntity(0, raw.size(), 0, true, false);
  message.envelope = std::move(message.root.envelope);
  message.root.envelope.clear();
  message.sent_date = parser.sent_date();
  internal::AppendBody(message.root, false, &message.body);
  internal::AppendBody(message.root, true, &message.bodystructure);
  return message;
}

namespace {

void VisitTextLeaves(const Part& part, std::string_view raw,
                     const std::function<void(std::string_view)>& sink) {
  if (!part.children.empty()) {
    for (const Part& child : part.children) VisitTextLeaves(child, raw, sink);
    return;
  }
  if (part.type != "TEXT" || part.body_end > raw.size() ||
      part.body_begin > part.body_end) {
    return;
  }
  const std::string_view body =
      raw.substr(part.body_begin, part.body_end - part.body_begin);
  std::string decoded;
  std::unique_ptr<Decoder> decoder = Decoder::For(part.encoding);
  if (decoder == nullptr) {
    decoded.assign(body);
  } else {
    decoder->Feed(body, &decoded);
    decoder->Finish(&decoded);
  }
  std::string charset = "us-ascii";
  for (const Param& p : part.params) {
    if (p.attribute == "CHARSET") {
      charset = p.value;
      break;
    }
  }
  std::string utf8;
  if (internal::ToUtf8(charset, decoded, &utf8)) {
    sink(utf8);
  } else {
    sink(decoded);
  }
}

}  // namespace

void ForEachTextBody(const ParsedMessage& message, std::string_view raw,
                     const std::function<void(std::string_view)>& sink) {
  VisitTextLeaves(message.root, raw, sink);
}

}  // namespace mailbox::mime
