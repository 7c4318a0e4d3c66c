#include "mailbox-service/store/sort_keys.h"

#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/search.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {
namespace {

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// ASCII case-insensitive prefix and suffix tests (`lower` in lower case).
bool HasPrefix(std::string_view s, std::string_view lower) {
  if (s.size() < lower.size()) return false;
  for (size_t i = 0; i < lower.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(s[i])) != lower[i]) return false;
  }
  return true;
}

bool HasSuffix(std::string_view s, std::string_view lower) {
  return s.size() >= lower.size() && HasPrefix(s.substr(s.size() - lower.size()), lower);
}

std::string Folded(std::string_view text) {
  std::string out;
  search_internal::AppendCaseFolded(text, &out);
  return out;
}

std::optional<std::string> FirstHeader(std::string_view header_block, std::string_view name) {
  std::vector<std::string> values = mime::HeaderValues(header_block, name);
  if (values.empty()) {
    return std::nullopt;
  }
  return std::move(values.front());
}

// RFC 5256 §5 subj-blob: "[" *BLOBCHAR "]" *WSP at `pos`; the position after it,
// or npos.
size_t MatchBlob(std::string_view s, size_t pos) {
  if (pos >= s.size() || s[pos] != '[') {
    return std::string_view::npos;
  }
  size_t i = pos + 1;
  while (i < s.size() && s[i] != '[' && s[i] != ']') ++i;
  if (i >= s.size() || s[i] != ']') {
    return std::string_view::npos;
  }
  ++i;
  while (i < s.size() && IsWsp(s[i])) ++i;
  return i;
}

// subj-refwd: ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at `pos`.
size_t MatchRefwd(std::string_view s, size_t pos) {
  std::string_view rest = s.substr(pos);
  size_t i;
  if (HasPrefix(rest, "re")) {
    i = pos + 2;
  } else if (HasPrefix(rest, "fwd")) {
    i = pos + 3;
  } else if (HasPrefix(rest, "fw")) {
    i = pos + 2;
  } else {
    return std::string_view::npos;
  }
  while (i < s.size() && IsWsp(s[i])) ++i;
  if (const size_t blob = MatchBlob(s, i); blob != std::string_view::npos) {
    i = blob;
  }
  if (i >= s.size() || s[i] != ':') {
    return std::string_view::npos;
  }
  return i + 1;
}

// subj-leader: (*subj-blob subj-refwd) / WSP, at the start; its length, or 0.
size_t MatchLeader(std::string_view s) {
  if (!s.empty() && IsWsp(s[0])) {
    return 1;
  }
  size_t pos = 0;
  while (true) {
    if (const size_t refwd = MatchRefwd(s, pos); refwd != std::string_view::npos) {
      return refwd;
    }
    const size_t blob = MatchBlob(s, pos);
    if (blob == std::string_view::npos) {
      return 0;
    }
    pos = blob;
  }
}

bool HasNonWsp(std::string_view s) {
  for (const char c : s) {
    if (!IsWsp(c)) return true;
  }
  return false;
}

// The value between the first "<" and the ">" after it, whitespace and comments
// dropped; "" if there is none or it is empty. *end is set past it.
std::string NextMessageId(std::string_view value, size_t* pos) {
  int depth = 0;
  for (size_t i = *pos; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (depth > 0) {
      depth += c == '(' ? 1 : c == ')' ? -1 : 0;
      continue;
    }
    if (c == '(') {
      depth = 1;
      continue;
    }
    if (c != '<') {
      continue;
    }
    std::string id;
    bool quoted = false;
    size_t j = i + 1;
    for (; j < value.size() && value[j] != '>' && value[j] != '<'; ++j) {
      const char d = value[j];
      if (d == '"') {
        quoted = !quoted;
      }
      if (!quoted && (d == ' ' || d == '\t' || d == '\r' || d == '\n')) {
        continue;
      }
      id.push_back(d);
    }
    if (j < value.size() && value[j] == '>') {
      *pos = j + 1;
      if (!id.empty()) {
        return id;
      }
      i = j;
      continue;
    }
    *pos = j;
    i = j - 1;
  }
  *pos = value.size();
  return "";
}

std::vector<std::string> MessageIds(std::string_view value) {
  std::vector<std::string> ids;
  size_t pos = 0;
  while (pos < value.size()) {
    std::string id = NextMessageId(value, &pos);
    if (!id.empty()) {
      ids.push_back(std::move(id));
    }
  }
  return ids;
}

struct AddressKeys {
  std::string mailbox;  // RFC 5256 §3 addr-mailbox
  std::string display;  // RFC 5957 §3.1
};

AddressKeys KeysOfAddress(const std::optional<std::string>& field) {
  AddressKeys keys;
  if (!field.has_value()) {
    return keys;
  }
  std::optional<mime::MailboxAddress> first = mime::FirstMailboxAddress(*field);
  if (!first.has_value()) {
    return keys;
  }
  keys.mailbox = Folded(first->mailbox);
  std::string name = mime::DecodeEncodedWords(first->name);
  if (HasNonWsp(name)) {
    keys.display = Folded(name);
  } else {
    keys.display = Folded(first->host.empty() ? first->mailbox
                                              : absl::StrCat(first->mailbox, "@", first->host));
  }
  return keys;
}

// The stored form: a version octet, then each field as a length-prefixed string.
constexpr char kEncodingVersion = 1;

void PutNumber(uint64_t value, std::string* out) {
  do {
    unsigned char byte = value & 0x7f;
    value >>= 7;
    if (value != 0) byte |= 0x80;
    out->push_back(static_cast<char>(byte));
  } while (value != 0);
}

void PutString(std::string_view value, std::string* out) {
  PutNumber(value.size(), out);
  out->append(value);
}

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool Number(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (data_.empty()) return false;
      const unsigned char byte = static_cast<unsigned char>(data_[0]);
      data_.remove_prefix(1);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  bool String(std::string* value) {
    uint64_t size;
    if (!Number(&size) || size > data_.size()) return false;
    value->assign(data_.substr(0, size));
    data_.remove_prefix(size);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

}  // namespace

std::string BaseSubject(std::string_view subject, bool* reply_or_forward) {
  *reply_or_forward = false;
  // (1) Encoded words to UTF-8; tabs and line breaks to spaces, runs of spaces to one.
  const std::string decoded = mime::DecodeEncodedWords(subject);
  std::string s;
  s.reserve(decoded.size());
  for (char c : decoded) {
    if (c == '\t' || c == '\r' || c == '\n') c = ' ';
    if (c == ' ' && !s.empty() && s.back() == ' ') continue;
    s.push_back(c);
  }
  std::string_view text = s;
  while (true) {
    // (2) subj-trailer: "(fwd)" / WSP, from the end, as long as one matches.
    while (true) {
      if (!text.empty() && IsWsp(text.back())) {
        text.remove_suffix(1);
      } else if (HasSuffix(text, "(fwd)")) {
        text.remove_suffix(5);
        *reply_or_forward = true;
      } else {
        break;
      }
    }
    // (3), (4) and (5): leaders, then a blob that leaves a non-empty base.
    while (true) {
      bool removed = false;
      while (const size_t leader = MatchLeader(text)) {
        if (!IsWsp(text[0])) {
          *reply_or_forward = true;
        }
        text.remove_prefix(leader);
        removed = true;
      }
      if (const size_t blob = MatchBlob(text, 0);
          blob != std::string_view::npos && HasNonWsp(text.substr(blob))) {
        text.remove_prefix(blob);
        removed = true;
      }
      if (!removed) break;
    }
    // (6) "[fwd:" subject "]": unwrap and start again from (2).
    if (HasPrefix(text, "[fwd:") && !text.empty() && text.back() == ']') {
      text = text.substr(5, text.size() - 6);
      *reply_or_forward = true;
      continue;
    }
    return std::string(text);
  }
}

SortKeys ExtractSortKeys(std::string_view header_block) {
  SortKeys keys;
  if (std::optional<std::string> date = FirstHeader(header_block, "Date")) {
    keys.sent_at = mime::ParseDateTime(*date);
  }
  if (std::optional<std::string> subject = FirstHeader(header_block, "Subject")) {
    keys.subject = Folded(BaseSubject(*subject, &keys.reply_or_forward));
  }
  AddressKeys from = KeysOfAddress(FirstHeader(header_block, "From"));
  AddressKeys to = KeysOfAddress(FirstHeader(header_block, "To"));
  keys.from = std::move(from.mailbox);
  keys.display_from = std::move(from.display);
  keys.to = std::move(to.mailbox);
  keys.display_to = std::move(to.display);
  keys.cc = KeysOfAddress(FirstHeader(header_block, "Cc")).mailbox;
  if (std::optional<std::string> id = FirstHeader(header_block, "Message-ID")) {
    size_t pos = 0;
    keys.message_id = NextMessageId(*id, &pos);
  }
  if (std::optional<std::string> references = FirstHeader(header_block, "References")) {
    keys.references = MessageIds(*references);
    if (keys.references.size() > kMaxSortReferences) {
      keys.references.erase(keys.references.begin(),
                            keys.references.end() - kMaxSortReferences);
    }
  }
  if (keys.references.empty()) {
    if (std::optional<std::string> reply_to = FirstHeader(header_block, "In-Reply-To")) {
      size_t pos = 0;
      std::string first = NextMessageId(*reply_to, &pos);
      if (!first.empty()) {
        keys.references.push_back(std::move(first));
      }
    }
  }
  return keys;
}

std::string EncodeSortKeys(const SortKeys& keys) {
  std::string out;
  out.push_back(kEncodingVersion);
  PutNumber((keys.sent_at.has_value() ? 1 : 0) | (keys.reply_or_forward ? 2 : 0), &out);
  PutNumber(static_cast<uint64_t>(keys.sent_at.value_or(0)), &out);
  for (const std::string* field : {&keys.subject, &keys.from, &keys.to, &keys.cc,
                                   &keys.display_from, &keys.display_to, &keys.message_id}) {
    PutString(*field, &out);
  }
  PutNumber(keys.references.size(), &out);
  for (const std::string& reference : keys.references) {
    PutString(reference, &out);
  }
  return out;
}

absl::StatusOr<SortKeys> DecodeSortKeys(std::string_view data) {
  auto corrupt = [] {
    return v1::MakeError(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                         "store: stored sort keys are unreadable");
  };
  if (data.empty() || data[0] != kEncodingVersion) {
    return corrupt();
  }
  Reader reader(data.substr(1));
  SortKeys keys;
  uint64_t bits, sent_at, count;
  if (!reader.Number(&bits) || !reader.Number(&sent_at)) {
    return corrupt();
  }
  if (bits & 1) {
    keys.sent_at = static_cast<int64_t>(sent_at);
  }
  keys.reply_or_forward = (bits & 2) != 0;
  for (std::string* field : {&keys.subject, &keys.from, &keys.to, &keys.cc, &keys.display_from,
                             &keys.display_to, &keys.message_id}) {
    if (!reader.String(field)) {
      return corrupt();
    }
  }
  if (!reader.Number(&count) || count > kMaxSortReferences) {
    return corrupt();
  }
  keys.references.resize(count);
  for (std::string& reference : keys.references) {
    if (!reader.String(&reference)) {
      return corrupt();
    }
  }
  if (!reader.done()) {
    return corrupt();
  }
  return keys;
}

}  // namespace mailbox::store
