// Header-section utilities and IMAP string output.
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace internal {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// Local ASCII helpers instead of absl's: depending on how Abseil was built,
// absl::string_view may not be std::string_view.
char AsciiUpper(char c) { return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiUpper(a[i]) != AsciiUpper(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiUpper(c);
  return out;
}

std::string Unfold(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\n') continue;
    // Only a CR that belongs to a line break goes; a stray CR is data.
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
    out.push_back(c);
  }
  size_t b = 0;
  while (b < out.size() && IsWsp(out[b])) ++b;
  size_t e = out.size();
  while (e > b && IsWsp(out[e - 1])) --e;
  return out.substr(b, e - b);
}

void AppendImapString(std::string_view s, std::string* out) {
  bool literal = false;
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u == 0 || u == '\r' || u == '\n' || u >= 0x80) {
      literal = true;
      break;
    }
  }
  if (literal) {
    absl::StrAppend(out, "{", s.size(), "}\r\n");
    out->append(s);
    return;
  }
  out->push_back('"');
  for (const char c : s) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

void AppendNString(const std::optional<std::string>& s, std::string* out) {
  if (s.has_value()) {
    AppendImapString(*s, out);
  } else {
    out->append("NIL");
  }
}

}  // namespace internal

std::vector<std::string> HeaderValues(std::string_view header_block,
                                      std::string_view name) {
  std::vector<std::string> values;
  internal::ScanHeader(header_block, 0, header_block.size(),
                       [&](const internal::HeaderField& field) {
                         if (!field.name.empty() &&
                             internal::EqualsIgnoreCase(field.name, name)) {
                           values.push_back(internal::Unfold(field.value));
                         }
                         return true;
                       });
  return values;
}

}  // namespace mailbox::mime
