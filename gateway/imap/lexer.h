// Internal: the token reader shared by the command, SEARCH and APPEND parsers.
// Works on one complete command as sent on the wire (literals inline, as
// "{n}\r\n" followed by n octets). Methods return false after recording the
// first error; callers propagate false without adding their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/date_time.h"
#include "gateway/imap/limits.h"
#include "gateway/imap/result.h"
#include "gateway/imap/search.h"
#include "gateway/imap/sequence_set.h"

namespace imap::internal {

// RFC 3501 §9 character classes.
bool IsAtomChar(char c);
bool IsAStringChar(char c);  // ATOM-CHAR / resp-specials
bool IsListChar(char c);     // ATOM-CHAR / list-wildcards / resp-specials
bool IsTagChar(char c);      // ASTRING-CHAR except "+"

class Lexer {
 public:
  Lexer(std::string_view input, const Limits& limits)
      : input_(input), limits_(limits) {}

  bool failed() const { return failed_; }
  const Error& error() const { return error_; }
  size_t pos() const { return pos_; }
  std::string_view rest() const { return input_.substr(pos_); }

  // Records the first error and returns false.
  bool Fail(std::string message, std::string code = "");

  bool AtEnd() const { return pos_ >= input_.size(); }
  // True at the CRLF that ends the command (or at the end of the input).
  bool AtCrlf() const;
  char Peek() const { return AtEnd() ? '\0' : input_[pos_]; }
  bool PeekIs(char c) const { return !AtEnd() && input_[pos_] == c; }
  // At "~{": a literal8 (RFC 3516). A lone "~" is an ordinary ATOM-CHAR.
  bool AtLiteral8() const {
    return PeekIs('~') && pos_ + 1 < input_.size() && input_[pos_ + 1] == '{';
  }
  bool Accept(char c);
  bool Expect(char c, std::string_view what);
  bool Sp();
  // Expects the final CRLF and nothing after it.
  bool ExpectEnd();

  // Case-insensitive keyword followed by a non-atom character.
  bool AcceptWord(std::string_view word);
  bool PeekWord(std::string_view word) const;
  // 1*ATOM-CHAR (or the given class); fails with `what` in the message.
  bool Atom(std::string* out, std::string_view what);
  bool Run(bool (*pred)(char), std::string* out, std::string_view what);
  // Upper-cased atom.
  bool Keyword(std::string* out, std::string_view what);

  bool Number(uint32_t* out, std::string_view what);
  bool NzNumber(uint32_t* out, std::string_view what);
  // mod-sequence-valzer (RFC 7162 §7): 0 .. 2^63-1.
  bool ModSeq(uint64_t* out, bool allow_zero, std::string_view what);
  bool Number64(uint64_t* out, std::string_view what);

  bool Quoted(std::string* out);
  // literal, or literal8 when `allow_literal8`; sets *binary for literal8.
  bool Literal(std::string* out, bool allow_literal8 = false, bool* binary = nullptr);
  bool String(std::string* out, std::string_view what);
  bool AString(std::string* out, std::string_view what);
  bool NString(std::optional<std::string>* out, std::string_view what);
  bool ListMailbox(std::string* out);

  // flag-list "(" [flag *(SP flag)] ")"; flags as sent.
  bool FlagList(std::vector<std::string>* out);
  bool Flag(std::string* out);
  bool SequenceSetToken(SequenceSet* out);
  // date = date-text / DQUOTE date-text DQUOTE (RFC 3501 §9).
  bool SearchDate(Date* out);
  // date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
  bool DateTimeToken(DateTime* out);

  // Parenthesis depth accounting against limits.max_nesting_depth.
  bool Enter();
  void Leave() { --depth_; }

  const Limits& limits() const { return limits_; }

 private:
  std::string Where() const;

  std::string_view input_;
  const Limits& limits_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool failed_ = false;
  Error error_;
};

}  // namespace imap::internal

namespace imap::internal {

// Parses 1*(SP search-key) up to the final CRLF into a kAnd node; the lexer
// must be positioned at the SP before the first key. Defined in search.cc.
bool ParseSearchCriteria(Lexer& lex, SearchKey* out);

}  // namespace imap::internal
