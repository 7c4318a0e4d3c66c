// Content-transfer-encoding decoders (RFC 2045 §6), charset conversion to
// UTF-8 and RFC 2047 encoded-word decoding.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace {

int Base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int HexValue(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  // RFC 2045 §6.7 requires upper case, but says robust decoders should
  // accept lower case too.
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

class IdentityDecoder : public Decoder {
 public:
  void Feed(std::string_view in, std::string* out) override { out->append(in); }
  void Finish(std::string*) override {}
};

// RFC 2045 §6.8: characters outside the alphabet are ignored. '=' ends the
// current quantum; decoding resumes after it, which also handles
// concatenated base64 streams.
class Base64Decoder : public Decoder {
 public:
  void Feed(std::string_view in, std::string* out) override {
    for (const char ch : in) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c == '=') {
        Flush(out);
        continue;
      }
      const int v = Base64Value(c);
      if (v < 0) continue;
      bits_ = (bits_ << 6) | static_cast<uint32_t>(v);
      if (++count_ == 4) {
        out->push_back(static_cast<char>((bits_ >> 16) & 0xff));
        out->push_back(static_cast<char>((bits_ >> 8) & 0xff));
        out->push_back(static_cast<char>(bits_ & 0xff));
        bits_ = 0;
        count_ = 0;
      }
    }
  }
  void Finish(std::string* out) override { Flush(out); }

 private:
  // Emits the whole bytes of a partial quantum (2 chars = 1 byte,
  // 3 chars = 2 bytes; a lone char carries no whole byte).
  void Flush(std::string* out) {
    if (count_ == 2) {
      out->push_back(static_cast<char>((bits_ >> 4) & 0xff));
    } else if (count_ == 3) {
      out->push_back(static_cast<char>((bits_ >> 10) & 0xff));
      out->push_back(static_cast<char>((bits_ >> 2) & 0xff));
    }
    bits_ = 0;
    count_ = 0;
  }

  uint32_t bits_ = 0;
  int count_ = 0;
};

// RFC 2045 §6.7. Trailing whitespace on a line is transport padding and is
// dropped (rule 3), "=" at the end of a line (possibly followed by such
// whitespace) is a soft line break (rule 5), and an '=' not followed by two
// hex digits is kept literally, as §6.7 recommends.
class QuotedPrintableDecoder : public Decoder {
 public:
  void Feed(std::string_view in, std::string* out) override {
    for (const char c : in) Step(c, out);
  }

  void Finish(std::string* out) override {
    // Trailing whitespace at the very end is padding as well; a final '='
    // or "=<wsp>" is a soft break with nothing after it.
    if (state_ == State::kEqHex) {
      out->push_back('=');
      out->push_back(hex1_);
    }
    pending_ws_.clear();
    state_ = State::kNormal;
  }

 private:
  enum class State { kNormal, kEq, kEqHex, kEqCr, kEqWs };

  void Step(char c, std::string* out) {
    switch (state_) {
      case State::kNormal:
        if (c == ' ' || c == '\t') {
          pending_ws_.push_back(c);
        } else if (c == '\r' || c == '\n') {
          pending_ws_.clear();
          out->push_back(c);
        } else {
          out->append(pending_ws_);
          pending_ws_.clear();
          if (c == '=') {
            state_ = State::kEq;
          } else {
            out->push_back(c);
          }
        }
        return;
      case State::kEq:
        if (HexValue(static_cast<unsigned char>(c)) >= 0) {
          hex1_ = c;
          state_ = State::kEqHex;
        } else if (c == '\r') {
          state_ = State::kEqCr;
        } else if (c == '\n') {
          state_ = State::kNormal;
        } else if (c == ' ' || c == '\t') {
          pending_ws_.push_back(c);
          state_ = State::kEqWs;
        } else {
          out->push_back('=');
          state_ = State::kNormal;
          Step(c, out);
        }
        return;
      case State::kEqHex: {
        const int lo = HexValue(static_cast<unsigned char>(c));
        state_ = State::kNormal;
        if (lo >= 0) {
          out->push_back(static_cast<char>(
              HexValue(static_cast<unsigned char>(hex1_)) * 16 + lo));
        } else {
          out->push_back('=');
          out->push_back(hex1_);
          Step(c, out);
        }
        return;
      }
      case State::kEqCr:
        state_ = State::kNormal;
        // "=\r\n" is the soft break; "=\r" followed by anything else is
        // treated as one too.
        if (c != '\n') Step(c, out);
        return;
      case State::kEqWs:
        if (c == ' ' || c == '\t') {
          pending_ws_.push_back(c);
        } else if (c == '\r') {
          pending_ws_.clear();
          state_ = State::kEqCr;
        } else if (c == '\n') {
          pending_ws_.clear();
          state_ = State::kNormal;
        } else {
          // Not a soft break after all: the '=' and the whitespace are data.
          out->push_back('=');
          state_ = State::kNormal;
          Step(c, out);
        }
        return;
    }
  }

  State state_ = State::kNormal;
  char hex1_ = 0;
  std::string pending_ws_;
};

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Windows-1252 differs from ISO-8859-1 only in 0x80..0x9F. Bytes it leaves
// undefined map to the C1 control of the same value, like ISO-8859-1.
constexpr uint16_t kCp1252High[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
    0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

enum class Charset { kUnknown, kUtf8, kLatin1, kCp1252 };

Charset Classify(std::string_view name) {
  // RFC 2231 §5: "charset*language" in encoded-words.
  const size_t star = name.find('*');
  if (star != std::string_view::npos) name = name.substr(0, star);
  const std::string n = internal::ToUpper(name);
  if (n == "UTF-8" || n == "UTF8" || n == "US-ASCII" || n == "ASCII") {
    return Charset::kUtf8;
  }
  if (n == "ISO-8859-1" || n == "ISO8859-1" || n == "ISO_8859-1" ||
      n == "LATIN1" || n == "LATIN-1" || n == "L1") {
    return Charset::kLatin1;
  }
  if (n == "WINDOWS-1252" || n == "CP1252" || n == "X-CP1252") {
    return Charset::kCp1252;
  }
  return Charset::kUnknown;
}

// Decodes the text of a Q encoded-word (RFC 2047 §4.2).
void DecodeQ(std::string_view text, std::string* out) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '_') {
      out->push_back(' ');
    } else if (c == '=' && i + 2 < text.size() &&
               HexValue(static_cast<unsigned char>(text[i + 1])) >= 0 &&
               HexValue(static_cast<unsigned char>(text[i + 2])) >= 0) {
      out->push_back(static_cast<char>(
          HexValue(static_cast<unsigned char>(text[i + 1])) * 16 +
          HexValue(static_cast<unsigned char>(text[i + 2]))));
      i += 2;
    } else {
      out->push_back(c);
    }
  }
}

}  // namespace

std::unique_ptr<Decoder> Decoder::For(std::string_view encoding) {
  const std::string e = internal::ToUpper(encoding);
  if (e.empty() || e == "7BIT" || e == "8BIT" || e == "BINARY") {
    return std::make_unique<IdentityDecoder>();
  }
  if (e == "BASE64") return std::make_unique<Base64Decoder>();
  if (e == "QUOTED-PRINTABLE") {
    return std::make_unique<QuotedPrintableDecoder>();
  }
  return nullptr;
}

namespace internal {

bool ToUtf8(std::string_view charset, std::string_view in, std::string* out) {
  const Charset cs = Classify(charset);
  switch (cs) {
    case Charset::kUnknown:
      return false;
    case Charset::kUtf8:
      out->append(in);
      return true;
    case Charset::kLatin1:
    case Charset::kCp1252:
      for (const char ch : in) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (cs == Charset::kCp1252 && c >= 0x80 && c < 0xa0) {
          AppendUtf8(kCp1252High[c - 0x80], out);
        } else {
          AppendUtf8(c, out);
        }
      }
      return true;
  }
  return false;
}

}  // namespace internal

std::string DecodeEncodedWords(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  size_t pos = 0;
  bool last_was_word = false;
  // Position of the next "?=" at or after some offset; cached so that many
  // "=?" without a terminator do not make the scan quadratic.
  size_t cached_end = 0;
  bool cached_valid = false;
  while (pos < value.size()) {
    const size_t start = value.find("=?", pos);
    if (start == std::string_view::npos) break;
    // encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
    bool ok = false;
    size_t word_end = 0;
    std::string decoded;
    const size_t q1 = value.find('?', start + 2);
    if (q1 != std::string_view::npos && q1 > start + 2 &&
        q1 - start - 2 <= 64 && q1 + 2 < value.size() && value[q1 + 2] == '?') {
      const std::string_view charset = value.substr(start + 2, q1 - start - 2);
      const char enc =
          absl::ascii_toupper(static_cast<unsigned char>(value[q1 + 1]));
      const size_t text_begin = q1 + 3;
      if (!cached_valid || cached_end < text_begin) {
        cached_end = value.find("?=", text_begin);
        cached_valid = true;
      }
      const size_t text_end = cached_end;
      bool clean = charset.find_first_of(" \t\r\n") == std::string_view::npos;
      if (text_end != std::string_view::npos && clean &&
          (enc == 'B' || enc == 'Q')) {
        const std::string_view text =
            value.substr(text_begin, text_end - text_begin);
        // RFC 2047 §5: encoded-text contains no whitespace.
        if (text.find_first_of(" \t\r\n") == std::string_view::npos) {
          std::string bytes;
          if (enc == 'B') {
            std::unique_ptr<Decoder> d = Decoder::For("BASE64");
            d->Feed(text, &bytes);
            d->Finish(&bytes);
          } else {
            DecodeQ(text, &bytes);
          }
          ok = internal::ToUtf8(charset, bytes, &decoded);
          word_end = text_end + 2;
        }
      }
    }
    if (!ok) {
      out.append(value.substr(pos, start + 2 - pos));
      pos = start + 2;
      last_was_word = false;
      continue;
    }
    const std::string_view gap = value.substr(pos, start - pos);
    // RFC 2047 §6.2: whitespace between adjacent encoded-words is dropped.
    const bool only_ws =
        gap.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!(last_was_word && only_ws)) out.append(gap);
    out.append(decoded);
    last_was_word = true;
    pos = word_end;
  }
  if (pos < value.size()) out.append(value.substr(pos));
  return out;
}

}  // namespace mailbox::mime
