#include "gateway/imap/lexer.h"

#include <cctype>

namespace imap::internal {

bool IsAtomChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u <= 0x1f || u >= 0x7f) return false;  // CTL and 8-bit are not CHAR
  switch (c) {
    case '(': case ')': case '{': case ' ': case '%': case '*': case '"':
    case '\\': case ']':
      return false;
    default:
      return true;
  }
}

bool IsAStringChar(char c) { return IsAtomChar(c) || c == ']'; }
bool IsListChar(char c) { return IsAStringChar(c) || c == '%' || c == '*'; }
bool IsTagChar(char c) { return IsAStringChar(c) && c != '+'; }

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace

bool Lexer::Fail(std::string message, std::string code) {
  if (!failed_) {
    failed_ = true;
    error_ = Error{std::move(message), std::move(code)};
  }
  return false;
}

std::string Lexer::Where() const {
  if (AtCrlf()) return "at end of command";
  return "near \"" + Printable(input_.substr(pos_, 20)) + "\"";
}

bool Lexer::AtCrlf() const {
  return AtEnd() || input_.substr(pos_) == "\r\n";
}

bool Lexer::Accept(char c) {
  if (PeekIs(c)) {
    ++pos_;
    return true;
  }
  return false;
}

bool Lexer::Expect(char c, std::string_view what) {
  if (Accept(c)) return true;
  return Fail("expected " + std::string(what) + " " + Where());
}

bool Lexer::Sp() {
  if (Accept(' ')) return true;
  if (AtCrlf()) return Fail("missing arguments " + Where());
  return Fail("expected a space " + Where());
}

bool Lexer::ExpectEnd() {
  if (input_.substr(pos_) == "\r\n") {
    pos_ += 2;
    return true;
  }
  if (AtEnd()) return Fail("command must end with CRLF");
  return Fail("unexpected extra arguments " + Where());
}

bool Lexer::PeekWord(std::string_view word) const {
  if (input_.size() - pos_ < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(input_[pos_ + i])) !=
        static_cast<unsigned char>(word[i])) {
      return false;
    }
  }
  size_t after = pos_ + word.size();
  return after >= input_.size() || !IsAtomChar(input_[after]) ||
         input_[after] == '[';
}

bool Lexer::AcceptWord(std::string_view word) {
  if (!PeekWord(word)) return false;
  pos_ += word.size();
  return true;
}

bool Lexer::Run(bool (*pred)(char), std::string* out, std::string_view what) {
  size_t start = pos_;
  while (!AtEnd() && pred(input_[pos_])) ++pos_;
  if (pos_ == start) return Fail("expected " + std::string(what) + " " + Where());
  out->assign(input_.substr(start, pos_ - start));
  return true;
}

bool Lexer::Atom(std::string* out, std::string_view what) {
  return Run(IsAtomChar, out, what);
}

bool Lexer::Keyword(std::string* out, std::string_view what) {
  if (!Atom(out, what)) return false;
  for (char& c : *out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return true;
}

bool Lexer::Number64(uint64_t* out, std::string_view what) {
  if (!IsDigit(Peek())) return Fail("expected " + std::string(what) + " " + Where());
  uint64_t value = 0;
  while (IsDigit(Peek())) {
    uint64_t digit = static_cast<uint64_t>(input_[pos_] - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return Fail(std::string(what) + " is too large");
    }
    value = value * 10 + digit;
    ++pos_;
  }
  *out = value;
  return true;
}

bool Lexer::Number(uint32_t* out, std::string_view what) {
  uint64_t value;
  if (!Number64(&value, what)) return false;
  if (value > UINT32_MAX) return Fail(std::string(what) + " exceeds 4294967295");
  *out = static_cast<uint32_t>(value);
  return true;
}

bool Lexer::NzNumber(uint32_t* out, std::string_view what) {
  if (!Number(out, what)) return false;
  if (*out == 0) return Fail(std::string(what) + " must not be 0");
  return true;
}

bool Lexer::ModSeq(uint64_t* out, bool allow_zero, std::string_view what) {
  if (!Number64(out, what)) return false;
  // RFC 7162 §7: mod-sequence-value = 1*DIGIT, 1 .. 9,223,372,036,854,775,807.
  if (*out > static_cast<uint64_t>(INT64_MAX)) {
    return Fail(std::string(what) + " exceeds 9223372036854775807");
  }
  if (*out == 0 && !allow_zero) return Fail(std::string(what) + " must not be 0");
  return true;
}

bool Lexer::Quoted(std::string* out) {
  if (!Expect('"', "a quoted string")) return false;
  out->clear();
  while (true) {
    if (AtEnd()) return Fail("unterminated quoted string");
    char c = input_[pos_++];
    if (c == '"') return true;
    if (c == '\r' || c == '\n') return Fail("unterminated quoted string");
    if (c == '\0') return Fail("NUL is not allowed in a quoted string");
    if (c == '\\') {
      // RFC 3501 §9: only quoted-specials may be escaped.
      if (AtEnd() || (input_[pos_] != '"' && input_[pos_] != '\\')) {
        return Fail("invalid escape in quoted string (only \\\\ and \\\" are allowed)");
      }
      c = input_[pos_++];
    }
    // 8-bit octets are accepted (RFC 9051 / RFC 6855 allow UTF-8 here; real
    // clients send it with CHARSET UTF-8).
    out->push_back(c);
  }
}

bool Lexer::Literal(std::string* out, bool allow_literal8, bool* binary) {
  bool is_literal8 = Accept('~');
  if (is_literal8 && !allow_literal8) {
    return Fail("literal8 (~{n}) is only allowed for APPEND message data");
  }
  if (binary != nullptr) *binary = is_literal8;
  if (!Expect('{', "a literal")) return false;
  uint64_t size;
  if (!Number64(&size, "literal size")) return false;
  if (size > UINT32_MAX) return Fail("literal size exceeds 4294967295");
  Accept('+');
  if (!Expect('}', "'}' closing the literal size")) return false;
  if (input_.substr(pos_, 2) != "\r\n") return Fail("literal size must be followed by CRLF");
  pos_ += 2;
  if (input_.size() - pos_ < size) return Fail("literal data is truncated");
  std::string_view data = input_.substr(pos_, size);
  if (!is_literal8 && data.find('\0') != std::string_view::npos) {
    return Fail("NUL is not allowed in a literal (RFC 3501 §4.3)");
  }
  out->assign(data);
  pos_ += size;
  return true;
}

bool Lexer::String(std::string* out, std::string_view what) {
  if (PeekIs('"')) return Quoted(out);
  if (PeekIs('{') || AtLiteral8()) return Literal(out);
  return Fail("expected " + std::string(what) + " (quoted string or literal) " + Where());
}

bool Lexer::AString(std::string* out, std::string_view what) {
  if (PeekIs('"') || PeekIs('{') || AtLiteral8()) return String(out, what);
  if (!IsAStringChar(Peek())) {
    return Fail("expected " + std::string(what) + " " + Where());
  }
  return Run(IsAStringChar, out, what);
}

bool Lexer::NString(std::optional<std::string>* out, std::string_view what) {
  if (AcceptWord("NIL")) {
    out->reset();
    return true;
  }
  std::string s;
  if (!String(&s, what)) return false;
  *out = std::move(s);
  return true;
}

bool Lexer::ListMailbox(std::string* out) {
  if (PeekIs('"') || PeekIs('{') || AtLiteral8()) return String(out, "mailbox pattern");
  return Run(IsListChar, out, "mailbox pattern");
}

bool Lexer::Flag(std::string* out) {
  if (Accept('\\')) {
    // "\*" is only valid in PERMANENTFLAGS responses, never from a client.
    std::string atom;
    if (!Atom(&atom, "flag name after '\\'")) return false;
    *out = "\\" + atom;
    return true;
  }
  return Atom(out, "flag");
}

bool Lexer::FlagList(std::vector<std::string>* out) {
  if (!Expect('(', "'(' starting a flag list")) return false;
  out->clear();
  if (Accept(')')) return true;
  while (true) {
    std::string flag;
    if (!Flag(&flag)) return false;
    out->push_back(std::move(flag));
    if (Accept(')')) return true;
    if (!Sp()) return false;
  }
}

bool Lexer::SequenceSetToken(SequenceSet* out) {
  // RFC 5182 §2.1: "$" stands alone for the saved search result.
  if (Accept('$')) {
    *out = SequenceSet::Saved();
    return true;
  }
  size_t start = pos_;
  while (!AtEnd() && (IsDigit(input_[pos_]) || input_[pos_] == '*' ||
                      input_[pos_] == ':' || input_[pos_] == ',')) {
    ++pos_;
  }
  if (pos_ == start) return Fail("expected a sequence set " + Where());
  Result<SequenceSet> set = SequenceSet::Parse(input_.substr(start, pos_ - start));
  if (!set.ok()) return Fail(set.error().message);
  *out = std::move(set).value();
  return true;
}

bool Lexer::SearchDate(Date* out) {
  bool quoted = Accept('"');
  // date-text = date-day "-" date-month "-" date-year; date-day = 1*2DIGIT.
  size_t start = pos_;
  int day = 0;
  int digits = 0;
  while (IsDigit(Peek()) && digits < 2) {
    day = day * 10 + (input_[pos_++] - '0');
    ++digits;
  }
  if (digits == 0 || !Accept('-') || input_.size() - pos_ < 8) {
    pos_ = start;
    return Fail("expected a date like 1-Feb-2024 " + Where());
  }
  int month = ParseMonthName(input_.data() + pos_);
  pos_ += 3;
  int year = 0;
  bool ok = month != 0 && Accept('-');
  for (int i = 0; ok && i < 4; ++i) {
    ok = IsDigit(Peek());
    if (ok) year = year * 10 + (input_[pos_++] - '0');
  }
  if (!ok || day < 1 || day > DaysInMonth(year, month) || IsDigit(Peek())) {
    pos_ = start;
    return Fail("invalid date (expected d-Mon-yyyy) " + Where());
  }
  if (quoted && !Expect('"', "'\"' closing the date")) return false;
  *out = Date{year, month, day};
  return true;
}

bool Lexer::DateTimeToken(DateTime* out) {
  // "dd-Mon-yyyy hh:mm:ss +zzzz" where dd is a 2-digit or space-padded day.
  constexpr size_t kLength = 28;  // including both quotes
  if (input_.size() - pos_ < kLength || input_[pos_] != '"' ||
      input_[pos_ + kLength - 1] != '"') {
    return Fail("expected a date-time like \"01-Feb-2024 13:00:00 +0000\" " + Where());
  }
  std::string_view s = input_.substr(pos_ + 1, kLength - 2);
  auto digit = [&](size_t i) { return IsDigit(s[i]) ? s[i] - '0' : -1000; };
  auto two = [&](size_t i) { return digit(i) * 10 + digit(i + 1); };
  DateTime dt;
  dt.date.day = s[0] == ' ' ? digit(1) : two(0);
  dt.date.month = ParseMonthName(s.data() + 3);
  dt.date.year = two(7) * 100 + two(9);
  dt.hour = two(12);
  dt.minute = two(15);
  dt.second = two(18);
  int zone = two(22) * 60 + two(24);
  bool ok = s[2] == '-' && s[6] == '-' && s[11] == ' ' && s[14] == ':' &&
            s[17] == ':' && s[20] == ' ' && (s[21] == '+' || s[21] == '-') &&
            dt.date.month != 0 && dt.date.day >= 1 &&
            dt.date.day <= DaysInMonth(dt.date.year, dt.date.month) &&
            dt.date.year >= 0 && dt.hour >= 0 && dt.hour <= 23 &&
            dt.minute >= 0 && dt.minute <= 59 && dt.second >= 0 &&
            dt.second <= 60 && zone >= 0 && two(24) <= 59;
  if (!ok) return Fail("invalid date-time " + Where());
  dt.zone_minutes = s[21] == '-' ? -zone : zone;
  pos_ += kLength;
  *out = dt;
  return true;
}

bool Lexer::Enter() {
  if (++depth_ > limits_.max_nesting_depth) {
    return Fail("nesting deeper than " + std::to_string(limits_.max_nesting_depth) +
                " levels");
  }
  return true;
}

}  // namespace imap::internal
