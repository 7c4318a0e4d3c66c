// Message previews (RFC 8970 §2): a short plain-text rendering of the start of
// a message's text, made from the parsed tree and a bounded prefix of one part.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace {

bool IsAttachment(const Part& part) {
  return part.disposition.has_value() && part.disposition->type == "ATTACHMENT";
}

// The first TEXT/PLAIN or TEXT/HTML leaf under `part` that is not an
// attachment. Among the alternatives of a MULTIPART/ALTERNATIVE (RFC 2046
// §5.1.4) the first one yielding TEXT/PLAIN wins, else the first yielding
// HTML. An encapsulated message is another message's text, not this one's.
// The recursion is as deep as the parsed tree (at most kMaxSupportedDepth).
const Part* FindPreviewPart(const Part& part) {
  if (part.IsMultipart()) {
    const bool alternative = part.subtype == "ALTERNATIVE";
    const Part* html = nullptr;
    for (const Part& child : part.children) {
      const Part* found = FindPreviewPart(child);
      if (found == nullptr) continue;
      if (!alternative || found->subtype == "PLAIN") return found;
      if (html == nullptr) html = found;
    }
    return html;
  }
  if (part.IsEncapsulated() || !part.children.empty()) return nullptr;
  if (part.type == "TEXT" && (part.subtype == "PLAIN" || part.subtype == "HTML") &&
      !IsAttachment(part)) {
    return &part;
  }
  return nullptr;
}

// Length of the valid UTF-8 sequence at s[i] (RFC 3629 §4: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0 if there is none.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length;
  uint32_t cp;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    cp = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    cp = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    cp = lead & 0x07;
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if ((length == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (length == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
    return 0;
  }
  return length;
}

bool StartsWithAt(std::string_view s, size_t i, std::string_view prefix) {
  return s.size() - i >= prefix.size() &&
         internal::EqualsIgnoreCase(s.substr(i, prefix.size()), prefix);
}

// Elements whose content is no text to show (HTML 5 §4.2, §4.12).
bool IsSkippedElement(std::string_view name) {
  return internal::EqualsIgnoreCase(name, "head") ||
         internal::EqualsIgnoreCase(name, "script") ||
         internal::EqualsIgnoreCase(name, "style") ||
         internal::EqualsIgnoreCase(name, "title") ||
         internal::EqualsIgnoreCase(name, "template");
}

// Elements that break the text where they start or end: they become a space,
// every other tag nothing ("<b>bo</b>ld" is one word).
bool BreaksText(std::string_view name) {
  static constexpr std::string_view kBreaking[] = {
      "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
      "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol",
      "p", "pre", "section", "table", "td", "th", "tr", "ul"};
  for (std::string_view breaking : kBreaking) {
    if (internal::EqualsIgnoreCase(name, breaking)) return true;
  }
  return false;
}

void AppendCodePoint(uint32_t cp, std::string* out) {
  if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// A character reference at html[i] ('&'): appends what it stands for and
// returns the octets it spans, or 0 if it is none this knows (the '&' is then
// text). Numeric references and the named ones mail commonly carries.
size_t CharacterReference(std::string_view html, size_t i, std::string* out) {
  const size_t semicolon = html.find(';', i);
  if (semicolon == std::string_view::npos || semicolon - i > 10) return 0;
  const std::string_view name = html.substr(i + 1, semicolon - i - 1);
  if (name.size() >= 2 && name[0] == '#') {
    const bool hex = name[1] == 'x' || name[1] == 'X';
    const std::string_view digits = name.substr(hex ? 2 : 1);
    if (digits.empty()) return 0;
    uint32_t cp = 0;
    for (const char c : digits) {
      int value;
      if (c >= '0' && c <= '9') {
        value = c - '0';
      } else if (hex && c >= 'a' && c <= 'f') {
        value = c - 'a' + 10;
      } else if (hex && c >= 'A' && c <= 'F') {
        value = c - 'A' + 10;
      } else {
        return 0;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(value);  // at most 8 digits
    }
    AppendCodePoint(cp, out);
    return semicolon - i + 1;
  }
  static constexpr std::pair<std::string_view, uint32_t> kNamed[] = {
      {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
      {"nbsp", 0xa0}, {"copy", 0xa9}, {"reg", 0xae}, {"hellip", 0x2026},
      {"mdash", 0x2014}, {"ndash", 0x2013}, {"lsquo", 0x2018}, {"rsquo", 0x2019},
      {"ldquo", 0x201c}, {"rdquo", 0x201d}, {"euro", 0x20ac}, {"zwnj", 0x200c}};
  for (const auto& [named, cp] : kNamed) {
    if (name == named) {
      AppendCodePoint(cp, out);
      return semicolon - i + 1;
    }
  }
  return 0;
}

// The text of an HTML document (or of a prefix of one): markup, comments and
// the content of head, script and style removed, character references
// resolved. Linear in the input.
std::string HtmlText(std::string_view html) {
  std::string out;
  out.reserve(html.size() / 2);
  size_t i = 0;
  while (i < html.size()) {
    const char c = html[i];
    if (c == '&') {
      const size_t used = CharacterReference(html, i, &out);
      if (used > 0) {
        i += used;
        continue;
      }
      out.push_back(c);
      ++i;
      continue;
    }
    if (c != '<') {
      out.push_back(c);
      ++i;
      continue;
    }
    if (StartsWithAt(html, i, "<!--")) {
      const size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    size_t j = i + 1;
    const bool closing = j < html.size() && html[j] == '/';
    if (closing) ++j;
    const size_t name_begin = j;
    while (j < html.size() && (std::isalnum(static_cast<unsigned char>(html[j])))) ++j;
    const std::string_view name = html.substr(name_begin, j - name_begin);
    if (name.empty() && !(j < html.size() && (html[j] == '!' || html[j] == '?'))) {
      out.push_back(c);  // a lone '<' is text
      ++i;
      continue;
    }
    // The tag ends at the first '>' outside a quoted attribute value.
    char quote = 0;
    while (j < html.size() && (quote != 0 || html[j] != '>')) {
      if (quote != 0) {
        if (html[j] == quote) quote = 0;
      } else if (html[j] == '"' || html[j] == '\'') {
        quote = html[j];
      }
      ++j;
    }
    i = j < html.size() ? j + 1 : html.size();
    if (!closing && IsSkippedElement(name)) {
      // Skip to the matching end tag; a document cut short has none.
      size_t end = i;
      while (true) {
        end = html.find("</", end);
        if (end == std::string_view::npos) {
          i = html.size();
          break;
        }
        if (StartsWithAt(html, end + 2, name)) {
          const size_t close = html.find('>', end);
          i = close == std::string_view::npos ? html.size() : close + 1;
          break;
        }
        end += 2;
      }
      out.push_back(' ');
      continue;
    }
    if (BreaksText(name)) out.push_back(' ');
  }
  return out;
}

}  // namespace

const Part* PreviewPart(const ParsedMessage& message) { return FindPreviewPart(message.root); }

std::string PreviewFromBody(const Part& part, std::string_view body, bool complete) {
  std::string decoded;
  if (std::unique_ptr<Decoder> decoder = Decoder::For(part.encoding); decoder != nullptr) {
    decoder->Feed(body, &decoded);
    // Cut short, the decoder may hold half an escape: leave it out.
    if (complete) decoder->Finish(&decoded);
  } else {
    decoded.assign(body);  // an encoding nobody knows: the bytes as they are
  }
  std::string charset = "us-ascii";
  for (const Param& param : part.params) {
    if (param.attribute == "CHARSET") {
      charset = param.value;
      break;
    }
  }
  std::string text;
  if (!internal::ToUtf8(charset, decoded, &text)) {
    text = std::move(decoded);  // unknown charset: what is valid UTF-8 of it stays
  }
  if (part.subtype == "HTML") {
    text = HtmlText(text);
  }

  // Whitespace runs (controls included, and U+00A0) become one space, none at
  // either end; invalid UTF-8 is dropped; at most kPreviewMaxChars characters,
  // counted as code points, so no character is ever cut.
  std::string out;
  size_t chars = 0;
  bool space = false;
  for (size_t i = 0; i < text.size() && chars < kPreviewMaxChars;) {
    const size_t length = Utf8Length(text, i);
    if (length == 0) {
      ++i;
      continue;
    }
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    const bool blank = (length == 1 && (lead <= 0x20 || lead == 0x7f)) ||
                       (length == 2 && lead == 0xc2 &&
                        static_cast<unsigned char>(text[i + 1]) == 0xa0);
    if (blank) {
      space = true;
    } else {
      if (space && !out.empty()) {
        if (chars + 2 > kPreviewMaxChars) break;  // no room for a word after it
        out.push_back(' ');
        ++chars;
      }
      space = false;
      out.append(text, i, length);
      ++chars;
    }
    i += length;
  }
  return out;
}

std::string Preview(const ParsedMessage& message, std::string_view raw) {
  const Part* part = PreviewPart(message);
  if (part == nullptr || part->body_begin > part->body_end || part->body_end > raw.size()) {
    return "";
  }
  const uint64_t length = part->body_end - part->body_begin;
  const bool complete = length <= kPreviewMaxInputOctets;
  return PreviewFromBody(
      *part, raw.substr(part->body_begin, complete ? length : kPreviewMaxInputOctets), complete);
}

}  // namespace mailbox::mime
