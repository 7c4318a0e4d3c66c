// libFuzzer target for the ingest-time MIME parser: header scanning, address
// lists, RFC 2047 encoded words, content-transfer encodings, RFC 5322 dates,
// body structure, section resolution and the stored (serialized) form.
//
// The input is a raw message. Parse() runs twice, with the default limits and
// with tiny ones (so depth, part, field and address caps are reached by short
// inputs), and each result must satisfy, beyond "no crash / no sanitizer
// report":
//  * every part's ranges are ordered and lie inside the message, children
//    inside their parent's body, in order and without overlap; a multipart
//    has children, a MESSAGE/RFC822 at most one; depth and part count respect
//    the limits;
//  * a leaf's decoded_size (BINARY.SIZE) is what its Decoder really yields,
//    and the decoders give the same bytes however the input is chunked;
//  * ENVELOPE, BODY and BODYSTRUCTURE are well-formed IMAP data (what a client
//    parses: NIL, numbers, quoted strings, literals, parenthesized lists) and
//    the ENVELOPE has its ten fields;
//  * Deserialize(Serialize(m)) == m;
//  * BODY[] is the whole message, BODY[HEADER] + BODY[TEXT] too, and every
//    section resolved for an existing part stays inside the message with a
//    size equal to the sum of its pieces;
//  * ParseDateDay yields a real calendar day.
// Deserialize() and DecodeEncodedWords() also get the raw bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mailbox-service/mime/mime.h"

namespace {

using mailbox::mime::Part;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

// A validator for the IMAP data the parser generates (RFC 3501 §9 "body",
// "envelope"): returns the number of top-level items, -1 if malformed.
class ImapData {
 public:
  explicit ImapData(std::string_view s) : s_(s) {}

  // One parenthesized list covering the whole string; its item count.
  int List() {
    int items = 0;
    if (!ListAt(&items) || pos_ != s_.size()) return -1;
    return items;
  }

 private:
  bool ListAt(int* items) {
    if (++depth_ > 1000) return false;  // far beyond kMaxSupportedDepth
    if (!Accept('(')) return false;
    *items = 0;
    while (!Accept(')')) {
      // Items are separated by SP, except that the nested bodies of a
      // multipart follow each other directly: "((...)(...) \"MIXED\")".
      if (*items > 0 && !Accept(' ') && Peek() != '(') return false;
      if (!Value()) return false;
      ++*items;
    }
    --depth_;
    return true;
  }

  bool Value() {
    const char c = Peek();
    if (c == '(') {
      int ignored = 0;
      return ListAt(&ignored);
    }
    if (c == '"') return Quoted();
    if (c == '{') return Literal();
    if (c >= '0' && c <= '9') {
      while (Peek() >= '0' && Peek() <= '9') ++pos_;
      return true;
    }
    if (s_.substr(pos_, 3) == "NIL") {
      pos_ += 3;
      return true;
    }
    return false;
  }

  bool Quoted() {
    ++pos_;
    while (pos_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[pos_++]);
      if (c == '"') return true;
      if (c == '\\') {
        if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\\')) return false;
        ++pos_;
      } else if (c == '\r' || c == '\n' || c == 0 || c >= 0x80) {
        return false;  // QUOTED-CHAR is 7-bit TEXT-CHAR
      }
    }
    return false;
  }

  bool Literal() {
    ++pos_;
    uint64_t n = 0;
    size_t digits = 0;
    while (Peek() >= '0' && Peek() <= '9' && digits < 19) {
      n = n * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
      ++digits;
    }
    if (digits == 0 || s_.substr(pos_, 3) != "}\r\n") return false;
    pos_ += 3;
    if (n > s_.size() - pos_) return false;
    pos_ += n;
    return true;
  }

  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool Accept(char c) {
    if (Peek() != c || pos_ >= s_.size()) return false;
    ++pos_;
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

std::string DecodeAll(std::string_view encoding, std::string_view body, size_t split) {
  std::unique_ptr<mailbox::mime::Decoder> decoder =
      mailbox::mime::Decoder::For(encoding);
  Check(decoder != nullptr, "no decoder for a known encoding");
  std::string out;
  if (split == 0) split = body.size() + 1;
  for (size_t i = 0; i < body.size(); i += split) decoder->Feed(body.substr(i, split), &out);
  decoder->Finish(&out);
  return out;
}

struct Walk {
  std::string_view raw;
  const mailbox::mime::Limits& limits;
  int parts = 0;
  std::vector<std::vector<uint32_t>> paths;  // a sample of part numbers

  void Visit(const Part& p, int depth, const std::vector<uint32_t>& path) {
    ++parts;
    Check(depth <= limits.max_depth + 1, "part deeper than the limit");
    Check(p.header_begin <= p.header_end, "header range reversed");
    Check(p.header_end == p.body_begin, "header_end != body_begin");
    Check(p.body_begin <= p.body_end, "body range reversed");
    Check(p.body_end <= raw.size(), "body beyond the message");
    Check(p.type == "MULTIPART" ? !p.children.empty() : true, "multipart without parts");
    Check(!p.IsEncapsulated() || p.children.size() <= 1, "message/rfc822 with 2+ parts");
    Check(p.IsMultipart() || p.IsEncapsulated() || p.children.empty(),
          "leaf with children");
    if (!p.IsEncapsulated() || p.children.empty()) {
      // decoded_size (BINARY.SIZE) must be what BINARY[] sends.
      std::string_view body = raw.substr(p.body_begin, p.body_end - p.body_begin);
      if (p.children.empty() &&
          (p.encoding == "BASE64" || p.encoding == "QUOTED-PRINTABLE")) {
        std::string whole = DecodeAll(p.encoding, body, 0);
        Check(whole.size() == p.decoded_size, "decoded_size differs from the decoder");
        Check(DecodeAll(p.encoding, body, 1) == whole, "decoder depends on chunking");
        Check(DecodeAll(p.encoding, body, 1 + body.size() % 7) == whole,
              "decoder depends on chunking");
      } else {
        Check(p.decoded_size == body.size(), "decoded_size of an unencoded body");
      }
    }
    if (p.is_message && depth > 0) {
      Check(ImapData(p.envelope).List() == 10, "nested ENVELOPE malformed");
    }
    uint64_t cursor = p.body_begin;
    for (size_t i = 0; i < p.children.size(); ++i) {
      const Part& c = p.children[i];
      Check(c.header_begin >= cursor, "child before its parent or sibling");
      Check(c.body_end <= p.body_end, "child beyond its parent");
      cursor = c.body_end;
      std::vector<uint32_t> child_path = path;
      // The single part of a MESSAGE/RFC822 has no number of its own: its
      // parts are numbered as the message's (RFC 3501 §6.4.5).
      if (!p.IsEncapsulated()) child_path.push_back(static_cast<uint32_t>(i + 1));
      if (paths.size() < 64) paths.push_back(child_path);
      Visit(c, depth + 1, child_path);
    }
  }
};

uint64_t PieceSize(const mailbox::mime::ResolvedSection& s, std::string_view raw) {
  uint64_t total = 0;
  for (const mailbox::mime::Piece& piece : s.pieces) {
    if (piece.is_generated) {
      total += piece.generated.size();
    } else {
      Check(piece.begin < piece.end && piece.end <= raw.size(), "piece outside the message");
      total += piece.end - piece.begin;
    }
  }
  return total;
}

std::string Bytes(const mailbox::mime::ResolvedSection& s, std::string_view raw) {
  std::string out;
  for (const mailbox::mime::Piece& piece : s.pieces) {
    if (piece.is_generated) {
      out += piece.generated;
    } else {
      out.append(raw.substr(piece.begin, piece.end - piece.begin));
    }
  }
  return out;
}

void CheckMessage(std::string_view raw, const mailbox::mime::Limits& limits) {
  using mailbox::mime::SectionSpec;
  absl::StatusOr<mailbox::mime::ParsedMessage> parsed = mailbox::mime::Parse(raw, limits);
  Check(parsed.ok(), "Parse failed");
  const mailbox::mime::ParsedMessage& m = *parsed;
  Check(m.root.header_begin == 0 && m.root.body_end == raw.size(),
        "root does not span the message");
  Check(m.root.is_message, "root is not a message");

  Walk walk{raw, limits};
  walk.Visit(m.root, 0, {});
  Check(walk.parts <= limits.max_parts, "more parts than the limit");

  Check(ImapData(m.envelope).List() == 10, "ENVELOPE malformed");
  Check(ImapData(m.body).List() > 0, "BODY malformed");
  Check(ImapData(m.bodystructure).List() > 0, "BODYSTRUCTURE malformed");
  if (m.sent_date) {
    const int32_t d = *m.sent_date;
    Check(d / 10000 >= 0 && d % 10000 / 100 >= 1 && d % 10000 / 100 <= 12 &&
              d % 100 >= 1 && d % 100 <= 31,
          "sent_date is not a calendar day");
  }

  absl::StatusOr<mailbox::mime::ParsedMessage> again =
      mailbox::mime::Deserialize(mailbox::mime::Serialize(m));
  Check(again.ok() && *again == m, "Serialize -> Deserialize changed the message");

  SectionSpec whole;
  absl::StatusOr<mailbox::mime::ResolvedSection> all =
      mailbox::mime::ResolveSection(m, raw, whole);
  Check(all.ok() && Bytes(*all, raw) == raw, "BODY[] is not the message");
  SectionSpec header;
  header.text = SectionSpec::Text::kHeader;
  SectionSpec text;
  text.text = SectionSpec::Text::kText;
  absl::StatusOr<mailbox::mime::ResolvedSection> h =
      mailbox::mime::ResolveSection(m, raw, header);
  absl::StatusOr<mailbox::mime::ResolvedSection> t =
      mailbox::mime::ResolveSection(m, raw, text);
  Check(h.ok() && t.ok() && Bytes(*h, raw) + Bytes(*t, raw) == raw,
        "BODY[HEADER] + BODY[TEXT] is not the message");

  for (const std::vector<uint32_t>& path : walk.paths) {
    for (int kind = 0; kind < 5; ++kind) {
      SectionSpec spec;
      spec.part = path;
      switch (kind) {
        case 0: break;
        case 1: spec.binary = true; break;
        case 2: spec.text = SectionSpec::Text::kMime; break;
        case 3: spec.text = SectionSpec::Text::kHeader; break;
        case 4:
          spec.text = SectionSpec::Text::kHeaderFieldsNot;
          spec.fields = {"Subject", "Content-Type"};
          break;
      }
      absl::StatusOr<mailbox::mime::ResolvedSection> s =
          mailbox::mime::ResolveSection(m, raw, spec);
      if (!s.ok()) continue;
      const uint64_t size = PieceSize(*s, raw);
      if (s->binary_encoding.empty()) {
        Check(size == s->size, "section size differs from its pieces");
      } else {
        Check(DecodeAll(s->binary_encoding, Bytes(*s, raw), 0).size() == s->size,
              "BINARY size differs from the decoded bytes");
      }
    }
  }

  mailbox::mime::ForEachTextBody(m, raw, [](std::string_view) {});
  const std::string_view header_block =
      raw.substr(m.root.header_begin, m.root.header_end - m.root.header_begin);
  for (const char* name : {"Subject", "From", "Date"}) {
    for (const std::string& value : mailbox::mime::HeaderValues(header_block, name)) {
      mailbox::mime::DecodeEncodedWords(value);
      std::optional<int32_t> day = mailbox::mime::ParseDateDay(value);
      if (day) Check(*day % 100 >= 1 && *day % 100 <= 31, "ParseDateDay: no such day");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  CheckMessage(raw, mailbox::mime::Limits());
  mailbox::mime::Limits tiny;
  tiny.max_depth = 3;
  tiny.max_parts = 6;
  tiny.max_header_fields = 12;
  tiny.max_address_count = 4;
  CheckMessage(raw, tiny);

  // Bytes that are not a serialized message, and a header value.
  (void)mailbox::mime::Deserialize(raw);
  (void)mailbox::mime::DecodeEncodedWords(raw.substr(0, 2048));
  (void)mailbox::mime::ParseDateDay(raw.substr(0, 256));
  return 0;
}
