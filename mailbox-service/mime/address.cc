// RFC 5322 §3.4 address lists (with the obsolete forms of §4.4) rendered as
// RFC 3501 §7.4.2 ENVELOPE address lists.
//
// The parser never rejects input: whatever it cannot make sense of is
// skipped up to the next comma. It works on a token vector built in one
// pass, and every token is consumed exactly once, so the cost is linear in
// the value even for 100,000 addresses or unterminated quotes/comments.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailbox-service/mime/internal.h"

namespace mailbox::mime::internal {
namespace {

enum class Kind { kAtom, kQuoted, kDomainLiteral, kComment, kSpecial };

struct Token {
  Kind kind;
  std::string_view raw;  // as written, quotes/brackets included
  std::string text;      // quoted-string and comment content, unescaped
};

bool IsSpecial(char c) {
  switch (c) {
    case '(':
    case ')':
    case '<':
    case '>':
    case '@':
    case ',':
    case ';':
    case ':':
    case '\\':
    case '"':
    case '.':
    case '[':
    case ']':
      return true;
    default:
      return false;
  }
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::vector<Token> Tokenize(std::string_view s) {
  std::vector<Token> tokens;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const char c = s[i];
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    const size_t start = i;
    if (c == '"' || c == '(') {
      // Quoted string or (nested, RFC 5322 §3.2.2) comment; an unterminated
      // one runs to the end of the value.
      Token t{c == '"' ? Kind::kQuoted : Kind::kComment, {}, {}};
      int depth = 0;
      ++i;
      while (i < n) {
        const char d = s[i];
        if (d == '\\' && i + 1 < n) {
          t.text.push_back(s[i + 1]);
          i += 2;
          continue;
        }
        if (c == '"' && d == '"') {
          ++i;
          break;
        }
        if (c == '(' && d == '(') ++depth;
        if (c == '(' && d == ')') {
          if (depth == 0) {
            ++i;
            break;
          }
          --depth;
        }
        if (d != '\r' && d != '\n') t.text.push_back(d);
        ++i;
      }
      t.raw = s.substr(start, i - start);
      tokens.push_back(std::move(t));
      continue;
    }
    if (c == '[') {
      while (i < n && s[i] != ']') ++i;
      if (i < n) ++i;
      tokens.push_back({Kind::kDomainLiteral, s.substr(start, i - start), {}});
      continue;
    }
    if (IsSpecial(c)) {
      ++i;
      tokens.push_back({Kind::kSpecial, s.substr(start, 1), {}});
      continue;
    }
    while (i < n && !IsSpecial(s[i]) && !IsSpace(s[i])) ++i;
    tokens.push_back({Kind::kAtom, s.substr(start, i - start), {}});
  }
  return tokens;
}

bool IsSpecialToken(const Token& t, char c) {
  return t.kind == Kind::kSpecial && t.raw[0] == c;
}

// Display name from a phrase: words joined by one space, quotes removed,
// a '.' (obs-phrase, RFC 5322 §4.1) glued to the word before it.
std::string PhraseText(const std::vector<const Token*>& phrase) {
  std::string out;
  for (const Token* t : phrase) {
    if (IsSpecialToken(*t, '.')) {
      out.push_back('.');
      continue;
    }
    if (!out.empty()) out.push_back(' ');
    if (t->kind == Kind::kQuoted) {
      out.append(t->text);
    } else {
      out.append(t->raw);
    }
  }
  return out;
}

// Local part or domain: tokens concatenated as written (quoted local parts
// keep their quotes so that the address can be rebuilt).
std::string RawText(const std::vector<const Token*>& tokens) {
  std::string out;
  for (const Token* t : tokens) out.append(t->raw);
  return out;
}

struct Address {
  std::optional<std::string> name, adl, mailbox, host;
};

void AppendAddress(const Address& a, std::string* out) {
  out->push_back('(');
  AppendNString(a.name, out);
  out->push_back(' ');
  AppendNString(a.adl, out);
  out->push_back(' ');
  AppendNString(a.mailbox, out);
  out->push_back(' ');
  AppendNString(a.host, out);
  out->push_back(')');
}

std::optional<std::string> NonEmpty(std::string s) {
  if (s.empty()) return std::nullopt;
  return s;
}

// Receives the addresses of a list as it is parsed.
class AddressVisitor {
 public:
  virtual ~AddressVisitor() = default;
  // True once no more addresses are wanted: parsing stops.
  virtual bool full() const = 0;
  // Returns whether the address was taken.
  virtual bool Add(const Address& a) = 0;
  virtual void AddGroupEnd() = 0;
};

class ListWriter : public AddressVisitor {
 public:
  ListWriter(size_t* budget, std::string* out) : budget_(budget), out_(out) {}

  bool full() const override { return *budget_ == 0; }
  bool any() const { return any_; }

  bool Add(const Address& a) override {
    if (full()) return false;
    if (!any_) out_->push_back('(');
    any_ = true;
    --*budget_;
    AppendAddress(a, out_);
    return true;
  }

  // A group end is written even when the budget is exhausted, so that the
  // list stays balanced for clients.
  void AddGroupEnd() override {
    if (!any_) return;
    AppendAddress(Address(), out_);
  }

 private:
  size_t* budget_;
  std::string* out_;
  bool any_ = false;
};

// Keeps the first mailbox (group markers skipped).
class FirstMailbox : public AddressVisitor {
 public:
  bool full() const override { return first_.has_value(); }
  bool Add(const Address& a) override {
    if (a.host.has_value() && !first_.has_value()) {
      first_ = a;
    }
    return true;
  }
  void AddGroupEnd() override {}
  const std::optional<Address>& first() const { return first_; }

 private:
  std::optional<Address> first_;
};

// A mailbox given as addr-spec tokens: local part up to the last '@',
// domain after it. Without '@' the host is "" (not NIL, which would mean a
// group marker, RFC 3501 §7.4.2).
Address AddrSpec(const std::vector<const Token*>& tokens) {
  size_t at = tokens.size();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (IsSpecialToken(*tokens[i], '@')) at = i;
  }
  Address a;
  std::vector<const Token*> local(tokens.begin(), tokens.begin() + at);
  std::vector<const Token*> domain;
  if (at < tokens.size()) {
    domain.assign(tokens.begin() + at + 1, tokens.end());
  }
  a.mailbox = RawText(local);
  a.host = RawText(domain);
  return a;
}


void VisitAddressList(std::string_view value, AddressVisitor& writer) {
  const std::vector<Token> tokens = Tokenize(value);
  bool in_group = false;
  size_t i = 0;
  const size_t n = tokens.size();
  while (i < n && !writer.full()) {
    // A phrase (display name, group name or addr-spec local part) with the
    // first comment seen, which names the mailbox when there is no display
    // name ("a@b (Real Name)").
    std::vector<const Token*> phrase;
    std::optional<std::string> comment;
    auto take_comment = [&](const Token& t) {
      if (!comment.has_value()) comment = Unfold(t.text);
    };
    while (i < n) {
      const Token& t = tokens[i];
      if (t.kind == Kind::kComment) {
        take_comment(t);
      } else if (t.kind == Kind::kSpecial && t.raw[0] != '.') {
        break;
      } else {
        phrase.push_back(&t);
      }
      ++i;
    }
    const char stop = i < n ? tokens[i].raw[0] : ',';
    switch (stop) {
      case ':': {
        ++i;
        if (in_group) break;  // nested groups do not exist; ignore
        Address a;
        a.mailbox = PhraseText(phrase);
        in_group = writer.Add(a);
        break;
      }
      case '<': {
        ++i;
        std::vector<const Token*> inner;
        while (i < n && !IsSpecialToken(tokens[i], '>')) {
          const Token& t = tokens[i];
          if (t.kind == Kind::kComment) {
            take_comment(t);
          } else if (IsSpecialToken(t, ',') || IsSpecialToken(t, ';')) {
            // A comma or semicolon inside <...> is either an obs-route
            // separator (before ':') or a missing '>'.
            bool in_route = false;
            for (size_t j = i + 1; j < n && j < i + 64; ++j) {
              if (IsSpecialToken(tokens[j], ':')) {
                in_route = true;
                break;
              }
              if (!IsSpecialToken(tokens[j], '@') &&
                  tokens[j].kind != Kind::kAtom &&
                  !IsSpecialToken(tokens[j], '.') &&
                  tokens[j].kind != Kind::kDomainLiteral &&
                  !IsSpecialToken(tokens[j], ',')) {
                break;
              }
            }
            if (!in_route) break;
            inner.push_back(&t);
          } else {
            inner.push_back(&t);
          }
          ++i;
        }
        if (i < n && IsSpecialToken(tokens[i], '>')) ++i;
        // obs-route (RFC 5322 §4.4): "@a,@b:" before the addr-spec.
        size_t colon = inner.size();
        for (size_t j = 0; j < inner.size(); ++j) {
          if (IsSpecialToken(*inner[j], ':')) colon = j;
        }
        std::optional<std::string> adl;
        std::vector<const Token*> spec = inner;
        if (colon < inner.size()) {
          adl = NonEmpty(RawText({inner.begin(), inner.begin() + colon}));
          spec.assign(inner.begin() + colon + 1, inner.end());
        }
        Address a = AddrSpec(spec);
        a.adl = adl;
        a.name = NonEmpty(PhraseText(phrase));
        if (!a.name.has_value() && comment.has_value()) {
          a.name = NonEmpty(*comment);
        }
        writer.Add(a);
        break;
      }
      case '@': {
        // addr-spec: local part = phrase, domain = what follows up to the
        // next separator.
        std::vector<const Token*> spec = phrase;
        spec.push_back(&tokens[i]);
        ++i;
        while (i < n) {
          const Token& t = tokens[i];
          if (t.kind == Kind::kComment) {
            take_comment(t);
          } else if (t.kind == Kind::kSpecial && t.raw[0] != '.') {
            break;
          } else {
            spec.push_back(&t);
          }
          ++i;
        }
        Address a = AddrSpec(spec);
        if (comment.has_value()) a.name = NonEmpty(*comment);
        writer.Add(a);
        break;
      }
      default: {
        // ',', ';', end of value, or junk: a bare word is a mailbox without
        // a domain ("To: undisclosed").
        if (!phrase.empty()) {
          Address a = AddrSpec(phrase);
          if (comment.has_value()) a.name = NonEmpty(*comment);
          writer.Add(a);
        }
        break;
      }
    }
    // Skip to the end of this address.
    while (i < n && !IsSpecialToken(tokens[i], ',') &&
           !IsSpecialToken(tokens[i], ';') && !IsSpecialToken(tokens[i], ':')) {
      if (IsSpecialToken(tokens[i], '<')) break;
      if (tokens[i].kind != Kind::kComment &&
          tokens[i].kind != Kind::kSpecial) {
        break;
      }
      ++i;
    }
    if (i < n && IsSpecialToken(tokens[i], ',')) {
      ++i;
    } else if (i < n && IsSpecialToken(tokens[i], ';')) {
      ++i;
      if (in_group) {
        writer.AddGroupEnd();
        in_group = false;
      }
    }
  }
  if (in_group) writer.AddGroupEnd();  // "Team: a@b" without ';'
}

}  // namespace

bool AppendAddressList(std::string_view value, size_t* budget,
                       std::string* out) {
  ListWriter writer(budget, out);
  VisitAddressList(value, writer);
  if (writer.any()) {
    out->push_back(')');
    return true;
  }
  out->append("NIL");
  return false;
}

}  // namespace mailbox::mime::internal

namespace mailbox::mime {

std::optional<MailboxAddress> FirstMailboxAddress(std::string_view value) {
  internal::FirstMailbox first;
  internal::VisitAddressList(value, first);
  if (!first.first().has_value()) {
    return std::nullopt;
  }
  const internal::Address& a = *first.first();
  return MailboxAddress{.name = a.name.value_or(""),
                        .mailbox = a.mailbox.value_or(""),
                        .host = a.host.value_or("")};
}

std::string AddressesWithoutComments(std::string_view value) {
  std::string out;
  const internal::Token* previous = nullptr;
  for (const internal::Token& t : internal::Tokenize(value)) {
    if (t.kind == internal::Kind::kComment) {
      continue;  // RFC 5322 §3.2.2: CFWS, even inside an addr-spec (§4.4)
    }
    // Words of a phrase keep one space between them; an addr-spec closes up
    // around "@" and "." and inside "<...>".
    const bool glue_before = previous == nullptr || internal::IsSpecialToken(*previous, '@') ||
                             internal::IsSpecialToken(*previous, '.') || internal::IsSpecialToken(*previous, '<');
    const bool glue_after = t.kind == internal::Kind::kSpecial && !internal::IsSpecialToken(t, '<');
    if (!glue_before && !glue_after) {
      out.push_back(' ');
    }
    out.append(t.raw);
    previous = &t;
  }
  return out;
}

}  // namespace mailbox::mime
