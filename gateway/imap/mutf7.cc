#include "gateway/imap/mutf7.h"

#include <cstdint>
#include <vector>

namespace imap {
namespace {

// RFC 3501 §5.1.3: RFC 2045 base64 with "," in place of "/".
constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}

bool IsDirect(uint32_t c) { return c >= 0x20 && c <= 0x7e; }

// Decodes one UTF-8 sequence at `pos`; returns false on malformed input.
bool NextCodePoint(std::string_view s, size_t* pos, uint32_t* out) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char lead = byte(*pos);
  int extra;
  uint32_t cp;
  uint32_t min;
  if (lead < 0x80) {
    *out = lead;
    ++*pos;
    return true;
  } else if ((lead & 0xe0) == 0xc0) {
    extra = 1, cp = lead & 0x1f, min = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    extra = 2, cp = lead & 0x0f, min = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    extra = 3, cp = lead & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (*pos + extra >= s.size()) return false;  // truncated sequence
  for (int i = 1; i <= extra; ++i) {
    unsigned char b = byte(*pos + i);
    if ((b & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  *pos += extra + 1;
  *out = cp;
  return true;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

void FlushShift(std::string& out, const std::vector<uint16_t>& units) {
  out += '&';
  uint32_t bits = 0;
  int nbits = 0;
  for (uint16_t u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      nbits -= 6;
      out += kAlphabet[(bits >> nbits) & 0x3f];
    }
    bits &= (1u << nbits) - 1;
  }
  if (nbits > 0) out += kAlphabet[(bits << (6 - nbits)) & 0x3f];
  out += '-';
}

}  // namespace

bool IsValidUtf8(std::string_view utf8) {
  size_t pos = 0;
  uint32_t cp;
  while (pos < utf8.size()) {
    if (!NextCodePoint(utf8, &pos, &cp)) return false;
  }
  return true;
}

Result<std::string> EncodeModifiedUtf7(std::string_view utf8) {
  std::string out;
  std::vector<uint16_t> pending;
  size_t pos = 0;
  while (pos < utf8.size()) {
    uint32_t cp;
    if (!NextCodePoint(utf8, &pos, &cp)) {
      return Error{"mailbox name is not valid UTF-8"};
    }
    if (cp == 0) return Error{"mailbox name contains NUL"};
    if (IsDirect(cp)) {
      if (!pending.empty()) {
        FlushShift(out, pending);
        pending.clear();
      }
      out += cp == '&' ? std::string("&-") : std::string(1, static_cast<char>(cp));
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      pending.push_back(static_cast<uint16_t>(0xd800 | (cp >> 10)));
      pending.push_back(static_cast<uint16_t>(0xdc00 | (cp & 0x3ff)));
    } else {
      pending.push_back(static_cast<uint16_t>(cp));
    }
  }
  if (!pending.empty()) FlushShift(out, pending);
  return out;
}

Result<std::string> DecodeModifiedUtf7(std::string_view in) {
  std::string out;
  size_t pos = 0;
  bool previous_was_shift = false;
  while (pos < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[pos]);
    if (!IsDirect(c)) {
      return Error{"mailbox name contains a byte outside printable US-ASCII "
                   "(RFC 3501 §5.1.3 requires modified UTF-7)"};
    }
    if (c != '&') {
      out += static_cast<char>(c);
      ++pos;
      previous_was_shift = false;
      continue;
    }
    size_t end = in.find('-', pos + 1);
    if (end == std::string_view::npos) {
      return Error{"unterminated \"&\" shift in modified UTF-7 mailbox name"};
    }
    if (end == pos + 1) {  // "&-" is a literal "&"
      out += '&';
      pos = end + 1;
      previous_was_shift = false;
      continue;
    }
    if (previous_was_shift) {
      // A canonical encoder merges adjacent non-ASCII runs into one shift.
      return Error{"non-canonical modified UTF-7: adjacent encoded sequences"};
    }
    uint32_t bits = 0;
    int nbits = 0;
    uint16_t high_surrogate = 0;
    for (size_t i = pos + 1; i < end; ++i) {
      int v = Base64Value(in[i]);
      if (v < 0) {
        return Error{"invalid character in modified base64 of mailbox name"};
      }
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits < 16) continue;
      nbits -= 16;
      uint16_t unit = static_cast<uint16_t>(bits >> nbits);
      bits &= (1u << nbits) - 1;
      if (high_surrogate != 0) {
        if (unit < 0xdc00 || unit > 0xdfff) {
          return Error{"unpaired UTF-16 surrogate in modified UTF-7 mailbox name"};
        }
        AppendUtf8(out, 0x10000 + ((high_surrogate - 0xd800u) << 10) +
                            (unit - 0xdc00u));
        high_surrogate = 0;
      } else if (unit >= 0xd800 && unit <= 0xdbff) {
        high_surrogate = unit;
      } else if (unit >= 0xdc00 && unit <= 0xdfff) {
        return Error{"unpaired UTF-16 surrogate in modified UTF-7 mailbox name"};
      } else if (IsDirect(unit)) {
        return Error{"non-canonical modified UTF-7: printable ASCII encoded in base64"};
      } else if (unit == 0) {
        return Error{"mailbox name contains NUL"};
      } else {
        AppendUtf8(out, unit);
      }
    }
    if (high_surrogate != 0) {
      return Error{"unpaired UTF-16 surrogate in modified UTF-7 mailbox name"};
    }
    // Leftover bits are padding: fewer than 6 of them, all zero.
    if (nbits >= 6 || bits != 0) {
      return Error{"non-canonical modified UTF-7: bad base64 padding"};
    }
    pos = end + 1;
    previous_was_shift = true;
  }
  return out;
}

}  // namespace imap
