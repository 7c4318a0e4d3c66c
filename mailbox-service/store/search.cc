#include "mailbox-service/store/search.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/mailbox/object_ids.h"
#include "mailbox-service/mime/mime.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {
namespace search_internal {
namespace {

// Unicode simple case folding (CaseFolding.txt, status C and S) for the
// blocks listed in search.h. Code points outside them fold to themselves.
char32_t SimpleFold(char32_t c) {
  if (c < 0x80) {
    return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
  }
  // Latin-1 Supplement.
  if (c < 0x100) {
    if (c == 0xB5) return 0x3BC;  // MICRO SIGN -> GREEK SMALL LETTER MU
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
    return c;
  }
  // Latin Extended-A: mostly upper/lower pairs, with a few irregular runs.
  if (c < 0x180) {
    if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149) {
      return c;  // İ and ı fold only under Turkish rules; ĸ and ŉ have none
    }
    if (c == 0x178) return 0xFF;  // Ÿ -> ÿ
    if (c == 0x17F) return 's';   // LONG S
    const bool odd_run = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_run) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c == 0x345) return 0x3B9;  // COMBINING GREEK YPOGEGRAMMENI
  // Greek and Coptic.
  if (c >= 0x370 && c < 0x400) {
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;
    switch (c) {
      case 0x370: case 0x372: case 0x376: return c + 1;
      case 0x37F: return 0x3F3;
      case 0x386: return 0x3AC;
      case 0x388: case 0x389: case 0x38A: return c + 37;
      case 0x38C: return 0x3CC;
      case 0x38E: case 0x38F: return c + 63;
      case 0x3C2: return 0x3C3;  // final sigma
      case 0x3CF: return 0x3D7;
      case 0x3D0: return 0x3B2;
      case 0x3D1: return 0x3B8;
      case 0x3D5: return 0x3C6;
      case 0x3D6: return 0x3C0;
      case 0x3F0: return 0x3BA;
      case 0x3F1: return 0x3C1;
      case 0x3F4: return 0x3B8;
      case 0x3F5: return 0x3B5;
      case 0x3F7: return 0x3F8;
      case 0x3F9: return 0x3F2;
      case 0x3FA: return 0x3FB;
      case 0x3FD: case 0x3FE: case 0x3FF: return c - 130;
      default: break;
    }
    if (c >= 0x3D8 && c <= 0x3EF && c % 2 == 0) return c + 1;
    return c;
  }
  // Cyrillic and Cyrillic Supplement.
  if (c >= 0x400 && c < 0x530) {
    if (c < 0x410) return c + 0x50;
    if (c < 0x430) return c + 0x20;
    if (c == 0x4C0) return 0x4CF;
    const bool even_run = (c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) ||
                          (c >= 0x4D0 && c <= 0x52F);
    if (even_run) return (c % 2 == 0) ? c + 1 : c;
    if (c >= 0x4C1 && c <= 0x4CE) return (c % 2 == 1) ? c + 1 : c;
    return c;
  }
  // Latin Extended Additional (Vietnamese, Welsh, ...).
  if (c >= 0x1E00 && c <= 0x1EFF) {
    if (c == 0x1E9B) return 0x1E61;  // LONG S WITH DOT ABOVE
    if (c == 0x1E9E) return 0xDF;    // CAPITAL SHARP S
    if ((c <= 0x1E95 || c >= 0x1EA0) && c % 2 == 0) return c + 1;
    return c;
  }
  switch (c) {
    case 0x2126: return 0x3C9;  // OHM SIGN
    case 0x212A: return 'k';    // KELVIN SIGN
    case 0x212B: return 0xE5;   // ANGSTROM SIGN
    default: return c;
  }
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Decodes one well-formed UTF-8 sequence at the start of `s` into *c and
// returns its length, or 0 if `s` does not start with one.
size_t DecodeUtf8(std::string_view s, char32_t* c) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    *c = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(1)) return 0;
    *c = (char32_t{b0} & 0x1F) << 6 | (byte(1) & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const char32_t v = (char32_t{b0} & 0x0F) << 12 | (char32_t{byte(1)} & 0x3F) << 6 |
                       (byte(2) & 0x3F);
    if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;  // overlong, surrogate
    *c = v;
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const char32_t v = (char32_t{b0} & 0x07) << 18 | (char32_t{byte(1)} & 0x3F) << 12 |
                       (char32_t{byte(2)} & 0x3F) << 6 | (byte(3) & 0x3F);
    if (v < 0x10000 || v > 0x10FFFF) return 0;
    *c = v;
    return 4;
  }
  return 0;
}

}  // namespace

void AppendCaseFolded(std::string_view text, std::string* out) {
  out->reserve(out->size() + text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {  // the common case, kept tight
      out->push_back(static_cast<char>((b >= 'A' && b <= 'Z') ? b + 0x20 : b));
      ++i;
      continue;
    }
    char32_t c = 0;
    const size_t n = DecodeUtf8(text.substr(i), &c);
    if (n == 0) {
      // Not UTF-8 (an unknown charset passed through): keep the byte, so that
      // such text still matches a needle spelled with the same bytes.
      out->push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    const char32_t folded = SimpleFold(c);
    if (folded == c) {
      out->append(text.data() + i, n);
    } else {
      AppendUtf8(folded, out);
    }
    i += n;
  }
}

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t c = 0;
    const size_t n = DecodeUtf8(text.substr(i), &c);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

int32_t CivilDay(int64_t unix_seconds, int32_t tz_minutes) {
  // Clamp to years 0001..9999 so that the arithmetic cannot overflow whatever
  // the stored value; IMAP dates cannot name other years anyway.
  constexpr int64_t kMin = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  int64_t local = std::clamp(unix_seconds, kMin, kMax) +
                  std::clamp<int64_t>(tz_minutes, -24 * 60, 24 * 60) * 60;
  local = std::clamp(local, kMin, kMax);
  // Floor division: times before 1970 belong to the earlier day.
  int64_t days = local / 86400;
  if (local % 86400 < 0) --days;
  // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
  // days-to-civil algorithm, in 400-year eras).
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return static_cast<int32_t>(year * 10000 + month * 100 + day);
}

}  // namespace search_internal

namespace {

using search_internal::AppendCaseFolded;
using v1::SearchKey;

// ---------------------------------------------------------------------------
// Validation

// Echoes a client-chosen name in an error message only if it is short,
// printable ASCII; otherwise the message stays generic.
std::string Printable(std::string_view s) {
  if (s.size() > 64) return "";
  for (const char c : s) {
    if (c < 0x21 || c > 0x7E) return "";
  }
  return std::string(s);
}

class Validator {
 public:
  Validator(const SearchLimits& limits, bool ascii_only)
      : limits_(limits), ascii_only_(ascii_only) {}

  absl::Status Key(const SearchKey& key, int depth) {
    if (depth > limits_.max_depth) {
      // Checked before descending, so the walk is at most max_depth + 1 deep.
      return v1::BadRequest(absl::StrCat("search nesting deeper than ", limits_.max_depth));
    }
    // Counted before descending too, so a request of a million keys is refused
    // after max_keys of them have been looked at.
    if (++keys_ > limits_.max_keys) {
      return v1::MakeError(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                           absl::StrCat("search has more than ", limits_.max_keys,
                                        " keys; split it into several searches"));
    }
    switch (key.key_case()) {
      case SearchKey::KEY_NOT_SET:
        return v1::BadRequest("search key is empty");
      case SearchKey::kAll:
      case SearchKey::kBefore:
      case SearchKey::kOn:
      case SearchKey::kSince:
      case SearchKey::kSentBefore:
      case SearchKey::kSentOn:
      case SearchKey::kSentSince:
      case SearchKey::kLarger:
      case SearchKey::kSmaller:
      case SearchKey::kModseq:
      case SearchKey::kInternalBeforeUnix:
      case SearchKey::kInternalSinceUnix:
      case SearchKey::kSavedBefore:
      case SearchKey::kSavedOn:
      case SearchKey::kSavedSince:
        return absl::OkStatus();
      case SearchKey::kEmailId:
        return String(key.email_id());
      case SearchKey::kUid:
        // An empty set is allowed: it is what a sequence set or RECENT resolves
        // to when no message qualifies, and it matches nothing.
        uid_ranges_ += key.uid().ranges_size();
        if (uid_ranges_ > limits_.max_uid_ranges) {
          return v1::MakeError(
              absl::StatusCode::kResourceExhausted, v1::LIMIT,
              absl::StrCat("search has more than ", limits_.max_uid_ranges,
                           " UID ranges; use fewer, larger ranges (e.g. 1:500 not 1,2,3,...)"));
        }
        for (const v1::UidRange& range : key.uid().ranges()) {
          if (range.first() == 0 || range.last() == 0) {
            return v1::BadRequest("UID 0 in search UID set");
          }
          if (range.first() > range.last()) {
            return v1::BadRequest(absl::StrCat("inverted UID range ", range.first(), ":",
                                               range.last(), " in search"));
          }
        }
        return absl::OkStatus();
      case SearchKey::kFlag:
      case SearchKey::kNotFlag: {
        const std::string& flag =
            key.key_case() == SearchKey::kFlag ? key.flag() : key.not_flag();
        if (flag.empty()) return v1::BadRequest("empty flag name in search");
        return String(flag);
      }
      case SearchKey::kRecent:
        return v1::BadRequest(
            "RECENT must be resolved to a UID set by the gateway before searching");
      case SearchKey::kHeader:
        if (absl::Status s = String(key.header().field()); !s.ok()) return s;
        return String(key.header().value());
      case SearchKey::kBody:
        return String(key.body());
      case SearchKey::kText:
        return String(key.text());
      case SearchKey::kAnd:
        for (const SearchKey& child : key.and_().keys()) {
          if (absl::Status s = Key(child, depth + 1); !s.ok()) return s;
        }
        return absl::OkStatus();
      case SearchKey::kOr:
        if (!key.or_().has_a() || !key.or_().has_b()) {
          return v1::BadRequest("search OR needs two operands");
        }
        if (absl::Status s = Key(key.or_().a(), depth + 1); !s.ok()) return s;
        return Key(key.or_().b(), depth + 1);
      case SearchKey::kNot:
        return Key(key.not_(), depth + 1);
    }
    return v1::BadRequest("unknown search key");
  }

 private:
  absl::Status String(std::string_view s) {
    string_octets_ += s.size();
    if (string_octets_ > limits_.max_string_octets) {
      return v1::MakeError(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                           absl::StrCat("search strings exceed ", limits_.max_string_octets,
                                        " octets in all; search for shorter strings"));
    }
    if (ascii_only_) {
      for (const char c : s) {
        if (static_cast<unsigned char>(c) >= 0x80) {
          return v1::BadRequest(
              "8-bit characters in a US-ASCII search; use CHARSET UTF-8");
        }
      }
      return absl::OkStatus();
    }
    if (!search_internal::IsValidUtf8(s)) {
      return v1::BadRequest("search string is not valid UTF-8");
    }
    return absl::OkStatus();
  }

  const SearchLimits& limits_;
  bool ascii_only_;
  int keys_ = 0;
  int uid_ranges_ = 0;
  uint64_t string_octets_ = 0;
};

// ---------------------------------------------------------------------------
// Substring search

// A search string, case-folded once, that can be looked for in any amount of
// text in one linear pass: Knuth-Morris-Pratt over the folded text, so the
// worst case is O(text + needle) whatever the needle (Boyer-Moore variants as
// shipped degrade to O(text * needle) or build their tables in
// O(needle^2)), with memchr skipping ahead while no prefix is matched.
class FoldedNeedle {
 public:
  explicit FoldedNeedle(std::string_view needle) {
    AppendCaseFolded(needle, &folded_);
    // border_[i]: length of the longest proper prefix of folded_[0..i] that
    // is also its suffix.
    border_.assign(folded_.size(), 0);
    size_t k = 0;
    for (size_t i = 1; i < folded_.size(); ++i) {
      while (k > 0 && folded_[i] != folded_[k]) k = border_[k - 1];
      if (folded_[i] == folded_[k]) ++k;
      border_[i] = k;
    }
  }

  bool empty() const { return folded_.empty(); }

  // True if the case fold of `haystack` contains the needle. The haystack is
  // folded in bounded chunks; the matcher's state carries across them. Each
  // chunk is charged to `budget` first; when it refuses, the answer is false.
  bool FoundIn(std::string_view haystack, WorkBudget& budget) const {
    if (folded_.empty()) return true;
    constexpr size_t kChunk = 64 * 1024;
    std::string folded;
    size_t state = 0;
    size_t pos = 0;
    while (pos < haystack.size()) {
      size_t end = std::min(haystack.size(), pos + kChunk);
      // Never split a UTF-8 sequence: folding works on whole code points.
      for (int i = 0; i < 3 && end < haystack.size() &&
                      (static_cast<unsigned char>(haystack[end]) & 0xC0) == 0x80;
           ++i) {
        ++end;
      }
      if (!budget.Charge(end - pos)) return false;
      folded.clear();
      AppendCaseFolded(haystack.substr(pos, end - pos), &folded);
      if (Advance(folded, &state)) return true;
      pos = end;
    }
    return false;
  }

 private:
  // Feeds `text` to the matcher in *state (the length of the needle prefix
  // matched so far); true once the whole needle has been seen.
  bool Advance(std::string_view text, size_t* state) const {
    const size_t m = folded_.size();
    size_t q = *state;
    size_t i = 0;
    while (i < text.size()) {
      if (q == 0) {
        const void* hit = std::memchr(text.data() + i, folded_[0], text.size() - i);
        if (hit == nullptr) break;
        i = static_cast<size_t>(static_cast<const char*>(hit) - text.data()) + 1;
        q = 1;
      } else {
        const char c = text[i++];
        while (q > 0 && folded_[q] != c) q = border_[q - 1];
        if (folded_[q] == c) ++q;
      }
      if (q == m) return true;
    }
    *state = q;
    return false;
  }

  std::string folded_;
  std::vector<size_t> border_;
};

// Calls `visit` with each field of a header section, unfolded (RFC 5322
// §2.2.3) but with its name, until it returns true. Returns whether it did.
bool AnyUnfoldedField(std::string_view block,
                      const std::function<bool(std::string_view)>& visit) {
  std::string field;
  bool have_field = false;
  size_t pos = 0;
  while (pos < block.size()) {
    size_t nl = block.find('\n', pos);
    const size_t next = nl == std::string_view::npos ? block.size() : nl + 1;
    if (nl == std::string_view::npos) nl = block.size();
    std::string_view line = block.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = next;
    if (line.empty()) break;  // the empty line that ends the header section
    if ((line.front() == ' ' || line.front() == '\t') && have_field) {
      field.append(line);
      continue;
    }
    if (have_field && visit(field)) return true;
    field.assign(line);
    have_field = true;
  }
  return have_field && visit(field);
}

bool IsAddressField(const std::string& field) {
  for (const char* name : {"from", "to", "cc", "bcc", "sender", "reply-to"}) {
    if (absl::EqualsIgnoreCase(field, name)) return true;
  }
  return false;
}

bool HeaderMatches(const SearchKey::Header& header, SearchMessage& message,
                   WorkBudget& budget) {
  // Finding the field reads the whole header section.
  const std::string_view block = message.header_block();
  if (!budget.Charge(block.size())) return false;
  const std::vector<std::string> values = mime::HeaderValues(block, header.field());
  // RFC 3501 §6.4.4 HEADER: an empty string matches every message that has a
  // header line with the field name.
  if (header.value().empty()) return !values.empty();
  if (!budget.Charge(header.value().size())) return false;
  const FoldedNeedle needle(header.value());
  // Address fields are also matched with their comments left out, so that
  // "FROM a@b.org" finds "<a (x)@ (y) b.org>" (RFC 5322 §4.4).
  const bool addresses = IsAddressField(header.field());
  for (const std::string& value : values) {
    if (needle.FoundIn(mime::DecodeEncodedWords(value), budget)) return true;
    if (addresses && !budget.stopped() &&
        needle.FoundIn(mime::DecodeEncodedWords(mime::AddressesWithoutComments(value)), budget)) {
      return true;
    }
  }
  return false;
}

bool BodyMatches(const FoldedNeedle& needle, SearchMessage& message, WorkBudget& budget) {
  // Decoding cannot be interrupted either, so a spent budget skips it.
  if (budget.stopped()) return false;
  bool found = false;
  const mime::ParsedMessage& parsed = message.parsed();
  // ForEachTextBody cannot be stopped early; once found, the rest is skipped.
  mime::ForEachTextBody(parsed, message.content(), [&](std::string_view text) {
    if (!found && !budget.stopped()) found = needle.FoundIn(text, budget);
  });
  return found;
}

bool TextMatches(std::string_view text, SearchMessage& message, WorkBudget& budget) {
  if (!budget.Charge(text.size())) return false;
  const FoldedNeedle needle(text);
  if (needle.empty()) return true;
  // RFC 3501 §6.4.4 TEXT: "in the header or body of the message". Header
  // fields are searched decoded, like HEADER, so a UTF-8 needle finds an
  // encoded-word subject.
  const bool in_header = AnyUnfoldedField(message.header_block(), [&](std::string_view field) {
    return budget.stopped() || needle.FoundIn(mime::DecodeEncodedWords(field), budget);
  });
  if (budget.stopped()) return false;
  return in_header || BodyMatches(needle, message, budget);
}

// ---------------------------------------------------------------------------
// Evaluation

bool HasFlag(const SearchMessage& message, const std::string& flag) {
  for (const std::string& f : message.flags()) {
    if (absl::EqualsIgnoreCase(f, flag)) return true;
  }
  return false;
}

bool InUidSet(const v1::UidSet& set, uint32_t uid) {
  // Bisection, so that a set of many ranges (UID SEARCH 1,3,5,...) costs
  // O(log ranges) per message instead of O(ranges). Requires the sorted,
  // disjoint form (CanonicalizeUidSets).
  const auto& ranges = set.ranges();
  auto after = std::upper_bound(
      ranges.begin(), ranges.end(), uid,
      [](uint32_t value, const v1::UidRange& range) { return value < range.first(); });
  return after != ranges.begin() && uid <= std::prev(after)->last();
}

void CanonicalizeUidSet(v1::UidSet* set) {
  auto& ranges = *set->mutable_ranges();
  auto by_first = [](const v1::UidRange& a, const v1::UidRange& b) {
    return a.first() < b.first();
  };
  bool canonical = true;
  for (int i = 1; i < ranges.size() && canonical; ++i) {
    canonical = ranges[i - 1].last() < ranges[i].first();
  }
  if (canonical) return;
  std::sort(ranges.begin(), ranges.end(), by_first);
  int out = 0;
  for (int i = 1; i < ranges.size(); ++i) {
    v1::UidRange& last = ranges[out];
    if (static_cast<uint64_t>(last.last()) + 1 >= ranges[i].first()) {
      last.set_last(std::max(last.last(), ranges[i].last()));
    } else {
      ++out;
      if (out != i) ranges[out] = ranges[i];
    }
  }
  if (!ranges.empty()) {
    ranges.DeleteSubrange(out + 1, ranges.size() - out - 1);
  }
}

// Evaluation tiers: what a key may have to load. Lower tiers are run first.
enum Cost : int {
  kCheap = 0,   // fields of the message row
  kSentDate = 1,
  kHeader = 2,
  kContent = 3,  // body text
};

int CostOf(const SearchKey& key) {
  switch (key.key_case()) {
    case SearchKey::kSentBefore:
    case SearchKey::kSentOn:
    case SearchKey::kSentSince:
      return kSentDate;
    case SearchKey::kHeader:
      return kHeader;
    case SearchKey::kBody:
    case SearchKey::kText:
      return kContent;
    case SearchKey::kAnd: {
      int cost = kCheap;
      for (const SearchKey& child : key.and_().keys()) {
        cost = std::max(cost, CostOf(child));
        if (cost == kContent) break;
      }
      return cost;
    }
    case SearchKey::kOr:
      return std::max(CostOf(key.or_().a()), CostOf(key.or_().b()));
    case SearchKey::kNot:
      return CostOf(key.not_());
    default:
      return kCheap;
  }
}

// RFC 8514 §4 SAVED*: the civil day of the save date in UTC (save dates carry
// no zone of their own). A message stored before save dates were kept has
// none, and is compared by its internal date, in its own zone, instead.
int32_t SavedDay(const SearchMessage& message) {
  if (const std::optional<int64_t> saved = message.save_date_unix(); saved.has_value()) {
    return search_internal::CivilDay(*saved, 0);
  }
  return search_internal::CivilDay(message.internal_date_unix(),
                                   message.internal_date_tz_minutes());
}

bool SentMatches(const SearchKey& key, SearchMessage& message) {
  // RFC 3501 §6.4.4 SENT*: the Date: header, disregarding time and zone. A
  // message without one has no sent date and so satisfies no comparison.
  const std::optional<int32_t> sent = message.sent_date();
  if (!sent.has_value()) return false;
  switch (key.key_case()) {
    case SearchKey::kSentBefore:
      return *sent < key.sent_before();
    case SearchKey::kSentOn:
      return *sent == key.sent_on();
    default:
      return *sent >= key.sent_since();
  }
}

}  // namespace

absl::Status ValidateSearch(const v1::SearchRequest& request, int max_depth) {
  SearchLimits limits;
  limits.max_depth = max_depth;
  return ValidateSearch(request, limits);
}

absl::Status ValidateSearch(const v1::SearchRequest& request, const SearchLimits& limits) {
  const std::string& charset = request.charset();
  bool ascii_only = true;
  if (absl::EqualsIgnoreCase(charset, "UTF-8")) {
    ascii_only = false;
  } else if (!charset.empty() && !absl::EqualsIgnoreCase(charset, "US-ASCII")) {
    const std::string name = Printable(charset);
    return v1::MakeError(
        absl::StatusCode::kInvalidArgument, v1::BADCHARSET,
        absl::StrCat("search charset ", name.empty() ? "given" : name,
                     " is not supported; use UTF-8 or US-ASCII"));
  }
  if (!request.has_key()) return v1::BadRequest("search request has no key");
  return Validator(limits, ascii_only).Key(request.key(), 1);
}

void CanonicalizeUidSets(v1::SearchKey* key) {
  switch (key->key_case()) {
    case SearchKey::kUid:
      CanonicalizeUidSet(key->mutable_uid());
      return;
    case SearchKey::kAnd:
      for (SearchKey& child : *key->mutable_and_()->mutable_keys()) {
        CanonicalizeUidSets(&child);
      }
      return;
    case SearchKey::kOr:
      CanonicalizeUidSets(key->mutable_or_()->mutable_a());
      CanonicalizeUidSets(key->mutable_or_()->mutable_b());
      return;
    case SearchKey::kNot:
      CanonicalizeUidSets(key->mutable_not_());
      return;
    default:
      return;
  }
}

bool Matches(const SearchKey& key, SearchMessage& message) {
  WorkBudget unlimited;
  return Matches(key, message, unlimited);
}

bool Matches(const SearchKey& key, SearchMessage& message, WorkBudget& budget) {
  switch (key.key_case()) {
    case SearchKey::KEY_NOT_SET:
    case SearchKey::kRecent:  // rejected by ValidateSearch
      return false;
    case SearchKey::kAll:
      return true;
    case SearchKey::kUid:
      return InUidSet(key.uid(), message.uid());
    case SearchKey::kFlag:
      return HasFlag(message, key.flag());
    case SearchKey::kNotFlag:
      return !HasFlag(message, key.not_flag());
    // RFC 3501 §6.4.4 BEFORE/ON/SINCE: the internal date, disregarding time
    // (and so read in the zone it carries).
    case SearchKey::kBefore:
      return search_internal::CivilDay(message.internal_date_unix(),
                                       message.internal_date_tz_minutes()) < key.before();
    case SearchKey::kOn:
      return search_internal::CivilDay(message.internal_date_unix(),
                                       message.internal_date_tz_minutes()) == key.on();
    case SearchKey::kSince:
      return search_internal::CivilDay(message.internal_date_unix(),
                                       message.internal_date_tz_minutes()) >= key.since();
    case SearchKey::kSentBefore:
    case SearchKey::kSentOn:
    case SearchKey::kSentSince:
      return SentMatches(key, message);
    // RFC 5032 OLDER/YOUNGER: the instant, time and zone included.
    case SearchKey::kInternalBeforeUnix:
      return message.internal_date_unix() < key.internal_before_unix();
    case SearchKey::kInternalSinceUnix:
      return message.internal_date_unix() >= key.internal_since_unix();
    case SearchKey::kSavedBefore:
      return SavedDay(message) < key.saved_before();
    case SearchKey::kSavedOn:
      return SavedDay(message) == key.saved_on();
    case SearchKey::kSavedSince:
      return SavedDay(message) >= key.saved_since();
    case SearchKey::kLarger:
      return message.size() > key.larger();
    case SearchKey::kSmaller:
      return message.size() < key.smaller();
    case SearchKey::kHeader:
      return HeaderMatches(key.header(), message, budget);
    case SearchKey::kBody: {
      if (!budget.Charge(key.body().size())) return false;
      const FoldedNeedle needle(key.body());
      return needle.empty() || BodyMatches(needle, message, budget);
    }
    case SearchKey::kText:
      return TextMatches(key.text(), message, budget);
    case SearchKey::kAnd: {
      const auto& keys = key.and_().keys();
      absl::InlinedVector<int8_t, 16> costs;
      costs.reserve(keys.size());
      int present = 0;  // bit per tier that occurs
      for (const SearchKey& child : keys) {
        costs.push_back(static_cast<int8_t>(CostOf(child)));
        present |= 1 << costs.back();
      }
      for (int tier = kCheap; tier <= kContent; ++tier) {
        if ((present & (1 << tier)) == 0) continue;
        for (int i = 0; i < keys.size(); ++i) {
          if (costs[i] == tier && !Matches(keys[i], message, budget)) return false;
        }
      }
      return true;
    }
    case SearchKey::kOr: {
      const SearchKey& a = key.or_().a();
      const SearchKey& b = key.or_().b();
      if (CostOf(b) < CostOf(a)) {
        return Matches(b, message, budget) || Matches(a, message, budget);
      }
      return Matches(a, message, budget) || Matches(b, message, budget);
    }
    case SearchKey::kNot:
      return !Matches(key.not_(), message, budget);
    case SearchKey::kModseq:
      // RFC 7162 §3.1.5: messages whose MODSEQ is greater than or equal.
      return message.modseq() >= key.modseq();
    case SearchKey::kEmailId:
      return rules::EmailObjectId(message.content_sha256()) == key.email_id();
  }
  return false;
}

rules::UidRanges CandidateUids(const v1::SearchKey& key) {
  const v1::UidSet* set = nullptr;
  if (key.key_case() == v1::SearchKey::kUid) {
    set = &key.uid();
  } else if (key.key_case() == v1::SearchKey::kAnd) {
    for (const v1::SearchKey& member : key.and_().keys()) {
      if (member.key_case() == v1::SearchKey::kUid) {
        set = &member.uid();
        break;
      }
    }
  }
  if (set != nullptr) {
    if (set->ranges_size() == 0) {
      return rules::UidRanges();  // an empty set (a sequence set that resolved to nothing)
    }
    absl::StatusOr<rules::UidRanges> ranges = rules::NormalizeUidSet(*set);
    if (ranges.ok()) {
      return *ranges;
    }
  }
  return rules::AllUids();
}

}  // namespace mailbox::store
