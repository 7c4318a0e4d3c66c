// Binary form of ParsedMessage for the store.
//
// Layout: magic "MIM1", the root ENVELOPE, sent_date, then the part tree in
// pre-order. Integers are LEB128 varints, strings are varint length + bytes,
// optional values a presence byte first. BODY and BODYSTRUCTURE are derived
// from the tree on load, which keeps the blob small and makes it impossible
// for them to disagree with the offsets.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace {

constexpr std::string_view kMagic = "MIM1";

class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_->push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_->push_back(static_cast<char>(v));
  }
  void Bool(bool b) { out_->push_back(b ? 1 : 0); }
  void String(std::string_view s) {
    Varint(s.size());
    out_->append(s);
  }
  void OptString(const std::optional<std::string>& s) {
    Bool(s.has_value());
    if (s.has_value()) String(*s);
  }
  void Params(const std::vector<Param>& params) {
    Varint(params.size());
    for (const Param& p : params) {
      String(p.attribute);
      String(p.value);
    }
  }
  void WritePart(const Part& p) {
    Varint(p.header_begin);
    Varint(p.header_end - p.header_begin);
    Varint(p.body_begin - p.header_end);
    Varint(p.body_end - p.body_begin);
    Varint(p.body_lines);
    Varint(p.decoded_size);
    String(p.type);
    String(p.subtype);
    Params(p.params);
    OptString(p.id);
    OptString(p.description);
    String(p.encoding);
    OptString(p.md5);
    Bool(p.disposition.has_value());
    if (p.disposition.has_value()) {
      String(p.disposition->type);
      Params(p.disposition->params);
    }
    Varint(p.language.size());
    for (const std::string& l : p.language) String(l);
    OptString(p.location);
    Bool(p.is_message);
    String(p.envelope);
    Varint(p.children.size());
    for (const Part& c : p.children) WritePart(c);
  }

 private:
  std::string* out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool done() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return false;
      const uint8_t b = static_cast<uint8_t>(in_[pos_++]);
      if (shift == 63 && b > 1) return false;
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bool(bool* b) {
    if (pos_ >= in_.size()) return false;
    const char c = in_[pos_++];
    if (c != 0 && c != 1) return false;
    *b = c == 1;
    return true;
  }
  bool String(std::string* s) {
    uint64_t n;
    if (!Varint(&n) || n > remaining()) return false;
    s->assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool OptString(std::optional<std::string>* s) {
    bool present;
    if (!Bool(&present)) return false;
    if (!present) {
      s->reset();
      return true;
    }
    s->emplace();
    return String(&**s);
  }
  // A count of elements that each take at least one byte cannot exceed
  // what is left; this bounds allocations by the input size.
  bool Count(uint64_t* n) { return Varint(n) && *n <= remaining(); }
  bool Params(std::vector<Param>* params) {
    uint64_t n;
    if (!Count(&n)) return false;
    // Grown as elements are read, so a lying count costs nothing.
    for (uint64_t i = 0; i < n; ++i) {
      Param& p = params->emplace_back();
      if (!String(&p.attribute) || !String(&p.value)) return false;
    }
    return true;
  }
  bool Add(uint64_t a, uint64_t b, uint64_t* sum) {
    if (b > UINT64_MAX - a) return false;
    *sum = a + b;
    return true;
  }

  bool ReadPart(Part* p, int depth) {
    if (depth > kMaxSupportedDepth) return false;
    uint64_t header_size, gap, body_size, n;
    bool has_disposition;
    if (!Varint(&p->header_begin) || !Varint(&header_size) || !Varint(&gap) ||
        !Varint(&body_size) || !Varint(&p->body_lines) ||
        !Varint(&p->decoded_size) ||
        !Add(p->header_begin, header_size, &p->header_end) ||
        !Add(p->header_end, gap, &p->body_begin) ||
        !Add(p->body_begin, body_size, &p->body_end) || !String(&p->type) ||
        !String(&p->subtype) || !Params(&p->params) || !OptString(&p->id) ||
        !OptString(&p->description) || !String(&p->encoding) ||
        !OptString(&p->md5) || !Bool(&has_disposition)) {
      return false;
    }
    if (has_disposition) {
      p->disposition.emplace();
      if (!String(&p->disposition->type) || !Params(&p->disposition->params)) {
        return false;
      }
    }
    if (!Count(&n)) return false;
    for (uint64_t i = 0; i < n; ++i) {
      if (!String(&p->language.emplace_back())) return false;
    }
    if (!OptString(&p->location) || !Bool(&p->is_message) ||
        !String(&p->envelope) || !Count(&n)) {
      return false;
    }
    for (uint64_t i = 0; i < n; ++i) {
      Part& c = p->children.emplace_back();
      if (!ReadPart(&c, depth + 1)) return false;
      // Children lie inside the parent's body, in order.
      if (c.header_begin < p->body_begin || c.body_end > p->body_end) {
        return false;
      }
    }
    // The invariants AppendBody and FindPart rely on (see Part::children).
    if (p->IsMultipart()) return !p->children.empty();
    if (p->IsEncapsulated()) {
      return p->children.size() == 1 && p->children[0].is_message;
    }
    return p->children.empty();
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

std::string Serialize(const ParsedMessage& message) {
  std::string out(kMagic);
  Writer w(&out);
  w.String(message.envelope);
  w.Bool(message.sent_date.has_value());
  if (message.sent_date.has_value()) {
    w.Varint(static_cast<uint32_t>(*message.sent_date));
  }
  w.WritePart(message.root);
  return out;
}

absl::StatusOr<ParsedMessage> Deserialize(std::string_view data) {
  if (data.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a serialized ParsedMessage");
  }
  Reader r(data.substr(kMagic.size()));
  ParsedMessage m;
  bool has_date;
  if (!r.String(&m.envelope) || !r.Bool(&has_date)) {
    return absl::DataLossError("truncated ParsedMessage");
  }
  if (has_date) {
    uint64_t d;
    if (!r.Varint(&d) || d > UINT32_MAX) {
      return absl::DataLossError("bad sent_date");
    }
    m.sent_date = static_cast<int32_t>(static_cast<uint32_t>(d));
  }
  if (!r.ReadPart(&m.root, 0) || !r.done() || !m.root.is_message) {
    return absl::DataLossError("corrupt ParsedMessage part tree");
  }
  internal::AppendBody(m.root, false, &m.body);
  internal::AppendBody(m.root, true, &m.bodystructure);
  return m;
}

}  // namespace mailbox::mime
