// Helpers shared by the files of the MIME parser. Not part of the API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailbox-service/mime/mime.h"

namespace mailbox::mime::internal {

// One header field as it appears in the bytes.
struct HeaderField {
  std::string_view name;   // without trailing whitespace; empty if no colon
  std::string_view value;  // raw, after the colon, folding included
  uint64_t begin = 0;      // start of the field's first line
  uint64_t end = 0;        // past the line break of its last line
};

// Reads the header section of `data` starting at `begin` and not going
// beyond `end`. Calls `visit` for each field (including malformed lines
// without a colon, with an empty name) while it returns true. Returns the
// offset just past the empty line that ends the section, or `end` when there
// is none. Linear in the header size.
template <typename Visit>
uint64_t ScanHeader(std::string_view data, uint64_t begin, uint64_t end,
                    Visit&& visit);

// Removes the line breaks of folding (RFC 5322 §2.2.3) and the whitespace at
// both ends.
std::string Unfold(std::string_view value);

bool IsWsp(char c);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix);
std::string ToUpper(std::string_view s);

// Appends an IMAP string: quoted with \ and " escaped, or a literal {n}\r\n
// when `s` contains CR, LF, NUL or 8-bit bytes (RFC 3501 §4.3, §9 QUOTED-CHAR).
void AppendImapString(std::string_view s, std::string* out);
void AppendNString(const std::optional<std::string>& s, std::string* out);

// Appends an RFC 3501 address list ("(" 1*address ")" or NIL) parsed from a
// raw address header value. `budget` is decremented per address emitted;
// parsing stops when it reaches zero. Returns whether any address was
// emitted (false means NIL was appended).
bool AppendAddressList(std::string_view value, size_t* budget,
                       std::string* out);

// Appends BODY (extended = false) or BODYSTRUCTURE (extended = true) of a
// part tree (RFC 3501 §7.4.2, §9 body).
void AppendBody(const Part& part, bool extended, std::string* out);

// Converts text in `charset` to UTF-8. False if the charset is unknown.
bool ToUtf8(std::string_view charset, std::string_view in, std::string* out);

// ---- template implementation ----

template <typename Visit>
uint64_t ScanHeader(std::string_view data, uint64_t begin, uint64_t end,
                    Visit&& visit) {
  uint64_t pos = begin;
  bool visiting = true;
  HeaderField field;
  bool have_field = false;
  auto flush = [&](uint64_t field_end) {
    if (have_field && visiting) {
      field.end = field_end;
      field.value = data.substr(field.value.data() - data.data(),
                                field_end - (field.value.data() - data.data()));
      visiting = visit(field);
    }
    have_field = false;
  };
  while (pos < end) {
    const void* nl = std::memchr(data.data() + pos, '\n', end - pos);
    const uint64_t next =
        nl == nullptr ? end
                      : static_cast<uint64_t>(static_cast<const char*>(nl) -
                                              data.data()) +
                            1;
    const std::string_view line = data.substr(pos, next - pos);
    if (line == "\n" || line == "\r\n") {
      flush(pos);
      return next;
    }
    if (IsWsp(line[0])) {
      // Continuation of the current field (RFC 5322 §2.2.3); an orphan
      // continuation line belongs to no field.
      pos = next;
      continue;
    }
    flush(pos);
    const size_t colon = line.find(':');
    field = HeaderField();
    field.begin = pos;
    if (colon == std::string_view::npos) {
      field.name = std::string_view();
      field.value = data.substr(pos, 0);
    } else {
      std::string_view name = line.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      field.name = name;
      field.value = data.substr(pos + colon + 1, 0);
    }
    have_field = true;
    pos = next;
  }
  flush(end);
  return end;
}

}  // namespace mailbox::mime::internal
