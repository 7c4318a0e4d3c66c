#include "gateway/imap/imap_url.h"

#include <algorithm>
#include <cctype>

#include "gateway/imap/parser.h"

namespace imap {
namespace {

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::toupper(static_cast<unsigned char>(a)) ==
                  std::toupper(static_cast<unsigned char>(b));
         });
}

// Takes `prefix` (case-insensitive) off the front of *s.
bool Consume(std::string_view* s, std::string_view prefix) {
  if (!StartsWithIgnoreCase(*s, prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 §2.1 percent-decoding.
bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int high = HexValue(in[i + 1]);
    const int low = HexValue(in[i + 2]);
    if (high < 0 || low < 0) return false;
    out->push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return true;
}

// A number of 1 to 10 digits that fits 32 bits, taken off the front of *s.
bool TakeNumber(std::string_view* s, uint32_t* out, bool nonzero) {
  size_t n = 0;
  uint64_t value = 0;
  while (n < s->size() && n < 11 && (*s)[n] >= '0' && (*s)[n] <= '9') {
    value = value * 10 + static_cast<uint64_t>((*s)[n] - '0');
    ++n;
  }
  if (n == 0 || n > 10 || value > UINT32_MAX || (nonzero && value == 0)) return false;
  *out = static_cast<uint32_t>(value);
  s->remove_prefix(n);
  return true;
}

Error UrlError(std::string_view what) {
  return Error{"not an IMAP URL of a message (RFC 5092): " + std::string(what)};
}

}  // namespace

Result<ImapUrl> ParseImapUrl(std::string_view url, const Limits& limits) {
  ImapUrl out;
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return UrlError("spaces, controls and 8-bit octets must be percent-encoded");
    }
  }
  std::string_view rest = url;
  if (Consume(&rest, "imap://")) {
    // RFC 5092 §3: iserver = [iuserinfo "@"] host [":" port].
    out.absolute = true;
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return UrlError("no message after the server");
    std::string_view server = rest.substr(0, slash);
    rest.remove_prefix(slash);
    const size_t at = server.rfind('@');
    if (at != std::string_view::npos) {
      std::string_view userinfo = server.substr(0, at);
      server.remove_prefix(at + 1);
      // iuserinfo = enc-user [iauth] / [enc-user] iauth; iauth = ";AUTH=" ...
      const size_t semi = userinfo.find(';');
      if (semi != std::string_view::npos) {
        std::string_view auth = userinfo.substr(semi);
        if (!Consume(&auth, ";AUTH=") || auth.empty()) return UrlError("bad ;AUTH=");
        userinfo = userinfo.substr(0, semi);
      }
      if (!PercentDecode(userinfo, &out.user)) return UrlError("bad percent-encoding");
    }
    // host [":" port]; an IPv6 literal is in brackets.
    const size_t colon = server.rfind(':');
    if (colon != std::string_view::npos && server.find(']', colon) == std::string_view::npos) {
      std::string_view port = server.substr(colon + 1);
      uint32_t number;
      if (!port.empty() && (!TakeNumber(&port, &number, false) || !port.empty())) {
        return UrlError("bad port");
      }
      server = server.substr(0, colon);
    }
    if (server.empty()) return UrlError("no host");
    if (!PercentDecode(server, &out.host)) return UrlError("bad percent-encoding");
    for (char& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  // "/" imessagepart: enc-mailbox [";UIDVALIDITY=" n] "/;UID=" n ... (RFC 5092 §7).
  if (!Consume(&rest, "/")) return UrlError("expected '/' and a mailbox");
  const size_t semi = rest.find(';');
  if (semi == std::string_view::npos) return UrlError("no ;UID= (it names no message)");
  std::string_view mailbox = rest.substr(0, semi);
  rest.remove_prefix(semi);
  if (!mailbox.empty() && mailbox.back() == '/') {
    mailbox.remove_suffix(1);
  } else {
    uint32_t uidvalidity;
    if (!Consume(&rest, ";UIDVALIDITY=") || !TakeNumber(&rest, &uidvalidity, true)) {
      return UrlError("expected ;UIDVALIDITY=n or /;UID=n after the mailbox");
    }
    out.uidvalidity = uidvalidity;
    if (!Consume(&rest, "/")) return UrlError("expected /;UID=n");
  }
  if (mailbox.empty()) return UrlError("no mailbox");
  if (!PercentDecode(mailbox, &out.mailbox)) return UrlError("bad percent-encoding");
  if (!Consume(&rest, ";UID=") || !TakeNumber(&rest, &out.uid, true)) {
    return UrlError("expected ;UID=n");
  }
  if (Consume(&rest, "/;SECTION=")) {
    // enc-section = 1*bchar: up to the next parameter.
    size_t end = rest.find(';');
    if (end == std::string_view::npos) {
      end = rest.size();
    } else if (end > 0 && rest[end - 1] == '/') {
      --end;  // "/;PARTIAL=" follows
    }
    std::string_view encoded = rest.substr(0, end);
    rest.remove_prefix(end);
    std::string section;
    if (encoded.empty() || !PercentDecode(encoded, &section)) {
      return UrlError("bad ;SECTION=");
    }
    Result<Section> parsed = ParseSectionText(section, limits);
    if (!parsed.ok()) return UrlError("bad ;SECTION= (" + parsed.error().message + ")");
    out.section = *std::move(parsed);
  }
  if (Consume(&rest, "/;PARTIAL=")) {
    out.has_partial = true;
    if (!TakeNumber(&rest, &out.partial_offset, false)) return UrlError("bad ;PARTIAL=");
    if (Consume(&rest, ".")) {
      uint32_t length;
      if (!TakeNumber(&rest, &length, true)) return UrlError("bad ;PARTIAL= length");
      out.partial_length = length;
    }
  }
  // iurlauth (RFC 5092 §3, RFC 4467): ";EXPIRE=..." and/or ";URLAUTH=...".
  if (StartsWithIgnoreCase(rest, ";EXPIRE=") || StartsWithIgnoreCase(rest, ";URLAUTH=")) {
    out.urlauth = true;
    return out;
  }
  if (!rest.empty()) {
    return UrlError("unexpected \"" + std::string(rest.substr(0, 40)) + "\"");
  }
  return out;
}

std::string UrlRespText(std::string_view url) {
  std::string out;
  for (char c : url) {
    // RFC 4469 §5 (with its errata): TEXT-CHAR except "]".
    const auto octet = static_cast<unsigned char>(c);
    if (c == ']' || octet >= 0x80) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += '%';
      out += kHex[octet >> 4];
      out += kHex[octet & 15];
    } else if (c != '\0' && c != '\r' && c != '\n') {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace imap
