// Ingest-time MIME parser of the mailbox service.
//
// A message (raw RFC 5322 bytes, CRLF or bare LF) is parsed once when it is
// stored. The result -- part offsets, ENVELOPE, BODY and BODYSTRUCTURE -- is
// serialized next to the message and later answers IMAP FETCH (RFC 3501
// §6.4.5, §7.4.2; RFC 3516 BINARY) and SEARCH (RFC 3501 §6.4.4) without
// reparsing.
//
// Conventions (the same everywhere, so stored results stay comparable):
//  * Media type, subtype, content-transfer-encoding, parameter attribute
//    names and disposition types are upper-cased ("TEXT" "PLAIN",
//    "BASE64", "CHARSET"), as in the examples of RFC 3501 §7.4.2. Parameter
//    values and every other string are reported as sent.
//  * A part without Content-Type is TEXT/PLAIN with ("CHARSET" "US-ASCII")
//    (RFC 2045 §5.2); inside multipart/digest it is MESSAGE/RFC822
//    (RFC 2046 §5.1.5). A syntactically broken Content-Type is treated as
//    absent (RFC 2045 §5.2).
//  * Header fields that occur more than once: the first occurrence wins.
//  * Subject/Date/Message-ID/In-Reply-To present but empty give "" in the
//    ENVELOPE, absent gives NIL (RFC 3501 §7.4.2 says exactly this).
//  * A multipart without a boundary parameter, or whose body contains no
//    delimiter line at all, is not a multipart: it is reported as a single
//    TEXT/PLAIN leaf (its original parameters kept), so its bytes stay
//    readable and searchable.
//  * Composite parts that are not descended into -- beyond Limits::max_depth,
//    after Limits::max_parts, or a message/rfc822 with a base64 or
//    quoted-printable encoding (RFC 2046 §5.2.1 forbids that, so the
//    encapsulated message has no byte offsets) -- become opaque
//    APPLICATION/OCTET-STREAM leaves. Any other label would make the
//    BODYSTRUCTURE unparseable for clients that follow the RFC 3501 grammar.
//  * Sizes and line counts are of the bytes as stored. The parser accepts
//    bare LF, but FETCH of such a message returns bare LF too; callers that
//    want canonical CRLF must convert before Parse().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::mime {

// Bounds on the work and memory Parse() spends on one message. Whatever the
// input, Parse() costs O(max_depth * message size) time.
struct Limits {
  // Composite entities at this depth (root = 0) are not descended into.
  // Values above kMaxSupportedDepth are clamped to it.
  int max_depth = 64;
  // Total number of entities (root included). Once reached, no further
  // children are created.
  int max_parts = 10000;
  // Header fields beyond this count (whole message) are skipped, though the
  // header blocks are still delimited correctly.
  size_t max_header_fields = 100000;
  // Addresses (and group markers) kept across all ENVELOPEs of a message.
  size_t max_address_count = 100000;
};

// Hard cap on nesting, so that recursion over a Part tree (here and in
// Deserialize) never exhausts the stack whatever Limits says.
inline constexpr int kMaxSupportedDepth = 256;

struct Param {
  std::string attribute;  // upper-cased
  std::string value;      // as sent, quotes removed
  bool operator==(const Param&) const = default;
};

struct Disposition {
  std::string type;  // upper-cased, e.g. "ATTACHMENT"
  std::vector<Param> params;
  bool operator==(const Disposition&) const = default;
};

// One MIME entity. All offsets are byte offsets into the full raw message.
struct Part {
  // Header section incl. the empty line ending it: what BODY[HEADER] and
  // BODY[n.MIME] return. Without an empty line, the header runs to the end of
  // the entity and the body is empty. header_end == body_begin always.
  uint64_t header_begin = 0;
  uint64_t header_end = 0;
  // Body of this entity. For a multipart child it excludes the line break
  // that precedes the next delimiter (RFC 2046 §5.1.1).
  uint64_t body_begin = 0;
  uint64_t body_end = 0;
  // Line count of the body (counted for TEXT/* and MESSAGE/RFC822 only, the
  // two types whose BODYSTRUCTURE carries it; 0 otherwise). A final line
  // without a line break counts.
  uint64_t body_lines = 0;
  std::string type = "TEXT";
  std::string subtype = "PLAIN";
  std::vector<Param> params;
  std::optional<std::string> id;           // Content-ID
  std::optional<std::string> description;  // Content-Description
  std::string encoding = "7BIT";           // Content-Transfer-Encoding
  std::optional<std::string> md5;          // Content-MD5
  std::optional<Disposition> disposition;  // Content-Disposition
  std::vector<std::string> language;       // Content-Language
  std::optional<std::string> location;     // Content-Location
  // Size after undoing BASE64/QUOTED-PRINTABLE (RFC 3516 BINARY.SIZE); the
  // body size for any other encoding and for composite parts.
  uint64_t decoded_size = 0;
  // True for the root and for encapsulated messages: the entities to which
  // HEADER, HEADER.FIELDS and TEXT apply.
  bool is_message = false;
  // ENVELOPE of an encapsulated message (is_message and not the root); the
  // root's is ParsedMessage::envelope.
  std::string envelope;
  // MULTIPART: one or more parts. MESSAGE/RFC822: exactly one, the
  // encapsulated message spanning this part's body. Anything else: none.
  std::vector<Part> children;

  bool IsMultipart() const { return type == "MULTIPART"; }
  bool IsEncapsulated() const {
    return type == "MESSAGE" && subtype == "RFC822";
  }
  bool operator==(const Part&) const = default;
};

struct ParsedMessage {
  Part root;
  std::string envelope;       // RFC 3501 §7.4.2 ENVELOPE
  std::string body;           // BODY (no extension data)
  std::string bodystructure;  // BODYSTRUCTURE (with extension data)
  // Date: header as YYYYMMDD in the header's own zone, for SENTBEFORE /
  // SENTON / SENTSINCE (RFC 3501 §6.4.4 ignores time and zone).
  std::optional<int32_t> sent_date;
  bool operator==(const ParsedMessage&) const = default;
};

// Parses a whole message. Never fails on malformed input (malformed parts
// get the defaults of RFC 2045); the StatusOr is for future hard limits.
absl::StatusOr<ParsedMessage> Parse(std::string_view raw,
                                    const Limits& limits = {});

// Compact binary form of a ParsedMessage (versioned). BODY and
// BODYSTRUCTURE are not stored; Deserialize regenerates them from the tree.
std::string Serialize(const ParsedMessage& message);
// Rejects anything Serialize did not produce with InvalidArgument or
// DataLoss; never crashes or allocates more than O(input) memory.
absl::StatusOr<ParsedMessage> Deserialize(std::string_view data);

// Section of FETCH BODY[section] / BINARY[section] (RFC 3501 §6.4.5,
// RFC 3516 §4).
struct SectionSpec {
  std::vector<uint32_t> part;  // {1, 2} for "1.2"; empty = whole message
  enum class Text {
    kNone,
    kHeader,
    kHeaderFields,
    kHeaderFieldsNot,
    kText,
    kMime
  } text = Text::kNone;
  std::vector<std::string> fields;  // for HEADER.FIELDS (NOT)
  bool binary = false;  // BINARY[...]: undo the content-transfer-encoding
};

// One piece of a section: a range [begin, end) of the raw message, or
// generated bytes.
struct Piece {
  uint64_t begin = 0, end = 0;
  std::string generated;
  bool is_generated = false;
  bool operator==(const Piece&) const = default;
};

struct ResolvedSection {
  std::vector<Piece> pieces;
  // "BASE64" or "QUOTED-PRINTABLE" when the raw pieces must be run through
  // Decoder::For(binary_encoding) before sending; empty otherwise.
  std::string binary_encoding;
  // Octets the client will receive (decoded size when binary_encoding is
  // set).
  uint64_t size = 0;
};

// The header block ResolveSection needs for `spec`, as an absolute range
// [first, second) of the raw message, or nullopt if it needs no bytes (all
// specs but HEADER.FIELDS and HEADER.FIELDS.NOT, and nonexistent parts).
std::optional<std::pair<uint64_t, uint64_t>> RequiredHeaderRange(
    const ParsedMessage& message, const SectionSpec& spec);

// Resolves a section to pieces. `bytes` is what RequiredHeaderRange() asks
// for: either exactly those header bytes, or the full raw message; it is
// ignored (may be empty) when RequiredHeaderRange() returns nullopt. Piece
// offsets always refer to the full raw message.
//
// A part number that does not exist yields an empty section (size 0), as
// Dovecot and Cyrus answer, not an error. Errors: InvalidArgument for specs
// that can never be satisfied (MIME without a part number; HEADER/TEXT on a
// part that is not MESSAGE/RFC822; BINARY with HEADER/TEXT/MIME; `bytes` of
// the wrong size); FailedPrecondition("UNKNOWN-CTE") for BINARY of a part
// whose encoding is not 7BIT/8BIT/BINARY/BASE64/QUOTED-PRINTABLE
// (RFC 3516 §4.3).
absl::StatusOr<ResolvedSection> ResolveSection(const ParsedMessage& message,
                                               std::string_view bytes,
                                               const SectionSpec& spec);

// Incremental content-transfer-encoding decoder, for streaming BINARY of
// large bodies chunk by chunk. Chunks may split anywhere.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // BASE64, QUOTED-PRINTABLE, or identity for 7BIT/8BIT/BINARY and the empty
  // string (case-insensitive). nullptr for anything else.
  static std::unique_ptr<Decoder> For(std::string_view encoding);
  // Appends the decoded form of `in` to *out.
  virtual void Feed(std::string_view in, std::string* out) = 0;
  // Appends whatever is still buffered. The decoder must not be fed after.
  virtual void Finish(std::string* out) = 0;
};

// Unfolded values (leading and trailing whitespace removed) of all fields
// named `name` (case-insensitive) in a header block, in order.
std::vector<std::string> HeaderValues(std::string_view header_block,
                                      std::string_view name);

// An address field's value without its comments, each addr-spec closed up:
// "<a (x)@ (y) b.org>" gives "<a@b.org>" (RFC 5322 §3.2.2 allows CFWS between
// the tokens of an addr-spec, §4.4 obsolete syntax). For searching addresses as
// they are meant, not as they happen to be written.
std::string AddressesWithoutComments(std::string_view value);

// Decodes RFC 2047 encoded-words (B and Q) to UTF-8 for charsets utf-8,
// us-ascii, iso-8859-1 and windows-1252. Words in other charsets, and
// malformed words, are left as sent. Whitespace between two adjacent
// encoded-words is dropped (RFC 2047 §6.2).
std::string DecodeEncodedWords(std::string_view value);

// Calls `sink` once per TEXT/* leaf with its body, content-transfer-decoded
// and converted to UTF-8 when the charset is utf-8, us-ascii, iso-8859-1 or
// windows-1252 (passed as is otherwise). `raw` is the full message; parts
// outside it are skipped.
void ForEachTextBody(const ParsedMessage& message, std::string_view raw,
                     const std::function<void(std::string_view)>& sink);

// --- Previews (RFC 8970 §2) ---
// At most this many characters (code points), whitespace normalised.
inline constexpr size_t kPreviewMaxChars = 256;
// A preview reads at most this many octets of its part's body as stored
// (before the content-transfer-decoding): enough for 256 characters of text
// behind the markup a typical HTML message starts with, and a bound on the
// work whatever the message.
inline constexpr uint64_t kPreviewMaxInputOctets = 64 << 10;

// The part a preview is made from: the first TEXT/PLAIN or TEXT/HTML leaf
// that is no attachment, TEXT/PLAIN preferred among the alternatives of a
// MULTIPART/ALTERNATIVE, never inside an encapsulated message. nullptr when
// there is none (the preview is then "").
const Part* PreviewPart(const ParsedMessage& message);

// The preview of `part` from `body`, the first octets (at most
// kPreviewMaxInputOctets) of its body as stored; `complete` says whether that
// is the whole body. Content-transfer-decoded, converted to UTF-8 where the
// charset is known (invalid UTF-8 dropped otherwise), HTML markup removed,
// whitespace runs made single spaces and trimmed, cut to kPreviewMaxChars
// characters.
std::string PreviewFromBody(const Part& part, std::string_view body, bool complete);

// PreviewPart and PreviewFromBody for a message held whole.
std::string Preview(const ParsedMessage& message, std::string_view raw);

// Civil day YYYYMMDD of an RFC 5322 date-time (obsolete forms included:
// two- and three-digit years, no weekday, named and military zones,
// comments), or nullopt.
std::optional<int32_t> ParseDateDay(std::string_view value);

// The instant of an RFC 5322 date-time, unix seconds (the forms ParseDateDay
// accepts; a missing time is midnight, a missing zone, a military zone or an
// unknown zone name UTC, as RFC 5322 §4.3 reads them), or nullopt.
std::optional<int64_t> ParseDateTime(std::string_view value);

// The first mailbox of an address field (group markers skipped): display name
// as sent (RFC 2047 words not decoded; empty if none), local part and domain
// as written. nullopt when the field holds none.
struct MailboxAddress {
  std::string name;
  std::string mailbox;
  std::string host;
};
std::optional<MailboxAddress> FirstMailboxAddress(std::string_view value);

}  // namespace mailbox::mime
