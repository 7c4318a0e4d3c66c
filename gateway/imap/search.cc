#include "gateway/imap/search.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "gateway/imap/lexer.h"

namespace imap {
namespace {

using Kind = SearchKey::Kind;

struct KeyName {
  Kind kind;
  std::string_view name;
};

// RFC 3501 §6.4.4 and RFC 7162 §3.1.5. Order matters only for lookups.
constexpr std::array<KeyName, 45> kKeyNames = {{
    {Kind::kAll, "ALL"}, {Kind::kAnswered, "ANSWERED"}, {Kind::kDeleted, "DELETED"},
    {Kind::kDraft, "DRAFT"}, {Kind::kFlagged, "FLAGGED"}, {Kind::kNew, "NEW"},
    {Kind::kOld, "OLD"}, {Kind::kRecent, "RECENT"}, {Kind::kSeen, "SEEN"},
    {Kind::kUnanswered, "UNANSWERED"}, {Kind::kUndeleted, "UNDELETED"},
    {Kind::kUndraft, "UNDRAFT"}, {Kind::kUnflagged, "UNFLAGGED"},
    {Kind::kUnseen, "UNSEEN"}, {Kind::kBcc, "BCC"}, {Kind::kBody, "BODY"},
    {Kind::kCc, "CC"}, {Kind::kFrom, "FROM"}, {Kind::kSubject, "SUBJECT"},
    {Kind::kText, "TEXT"}, {Kind::kTo, "TO"}, {Kind::kHeader, "HEADER"},
    {Kind::kKeyword, "KEYWORD"}, {Kind::kUnkeyword, "UNKEYWORD"},
    {Kind::kBefore, "BEFORE"}, {Kind::kOn, "ON"}, {Kind::kSince, "SINCE"},
    {Kind::kSentBefore, "SENTBEFORE"}, {Kind::kSentOn, "SENTON"},
    {Kind::kSentSince, "SENTSINCE"}, {Kind::kLarger, "LARGER"},
    {Kind::kSmaller, "SMALLER"}, {Kind::kOlder, "OLDER"}, {Kind::kYounger, "YOUNGER"},
    {Kind::kEmailId, "EMAILID"}, {Kind::kThreadId, "THREADID"},
    {Kind::kSavedBefore, "SAVEDBEFORE"}, {Kind::kSavedOn, "SAVEDON"},
    {Kind::kSavedSince, "SAVEDSINCE"}, {Kind::kSaveDateSupported, "SAVEDATESUPPORTED"},
    {Kind::kUid, "UID"}, {Kind::kModSeq, "MODSEQ"},
    {Kind::kNot, "NOT"}, {Kind::kOr, "OR"}, {Kind::kSequenceSet, ""},
}};

bool ParseKey(internal::Lexer& lex, SearchKey* key);

// search-key *(SP search-key), ending before ")" or CRLF.
bool ParseKeyList(internal::Lexer& lex, std::vector<SearchKey>* keys, bool in_parens) {
  while (true) {
    SearchKey key;
    if (!ParseKey(lex, &key)) return false;
    keys->push_back(std::move(key));
    if (in_parens ? lex.PeekIs(')') : lex.AtCrlf()) return true;
    if (!lex.Sp()) return false;
  }
}

bool ParseKey(internal::Lexer& lex, SearchKey* key) {
  // Every recursion (parentheses, NOT, OR) counts against the depth limit, so
  // "NOT NOT NOT ..." cannot exhaust the stack any more than "((((...".
  if (!lex.Enter()) return false;
  bool ok = [&] {
    if (lex.Accept('(')) {
      key->kind = Kind::kAnd;
      if (!ParseKeyList(lex, &key->children, /*in_parens=*/true)) return false;
      return lex.Expect(')', "')'");
    }
    char c = lex.Peek();
    if ((c >= '1' && c <= '9') || c == '*' || c == '0' || c == '$') {
      key->kind = Kind::kSequenceSet;
      return lex.SequenceSetToken(&key->set);
    }
    std::string word;
    if (!lex.Keyword(&word, "a search key")) return false;
    const KeyName* found = nullptr;
    for (const KeyName& k : kKeyNames) {
      if (!k.name.empty() && k.name == word) {
        found = &k;
        break;
      }
    }
    if (found == nullptr) return lex.Fail("unknown search key " + word.substr(0, 40));
    key->kind = found->kind;
    switch (key->kind) {
      case Kind::kBcc: case Kind::kBody: case Kind::kCc: case Kind::kFrom:
      case Kind::kSubject: case Kind::kText: case Kind::kTo:
        return lex.Sp() && lex.AString(&key->text, "search string");
      case Kind::kHeader:
        return lex.Sp() && lex.AString(&key->text, "header field name") &&
               lex.Sp() && lex.AString(&key->value, "header value");
      case Kind::kKeyword: case Kind::kUnkeyword:
        return lex.Sp() && lex.Atom(&key->text, "keyword");
      case Kind::kBefore: case Kind::kOn: case Kind::kSince:
      case Kind::kSentBefore: case Kind::kSentOn: case Kind::kSentSince:
      case Kind::kSavedBefore: case Kind::kSavedOn: case Kind::kSavedSince:
        return lex.Sp() && lex.SearchDate(&key->date);
      case Kind::kLarger: case Kind::kSmaller:
        return lex.Sp() && lex.Number64(&key->number, "size");
      case Kind::kEmailId: case Kind::kThreadId: {
        // RFC 8474 §6: objectid = 1*255(ALPHA / DIGIT / "_" / "-").
        if (!lex.Sp() || !lex.Atom(&key->text, "object id")) return false;
        const bool valid = key->text.size() <= 255 &&
                           std::all_of(key->text.begin(), key->text.end(), [](char ch) {
                             return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                                    ch == '-';
                           });
        return valid || lex.Fail("an object id is letters, digits, '_' and '-' (RFC 8474)");
      }
      case Kind::kOlder: case Kind::kYounger: {
        // RFC 5032 §4: interval = nz-number (seconds).
        uint32_t seconds;
        if (!lex.Sp() || !lex.NzNumber(&seconds, "interval in seconds")) return false;
        key->number = seconds;
        return true;
      }
      case Kind::kUid:
        return lex.Sp() && lex.SequenceSetToken(&key->set);
      case Kind::kModSeq:
        if (!lex.Sp()) return false;
        // RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP value.
        if (lex.PeekIs('"')) {
          std::string type;
          if (!lex.Quoted(&key->text) || !lex.Sp() || !lex.Keyword(&type, "entry type")) {
            return false;
          }
          if (type != "PRIV" && type != "SHARED" && type != "ALL") {
            return lex.Fail("MODSEQ entry type must be priv, shared or all");
          }
          for (char& ch : type) ch = static_cast<char>(ch - 'A' + 'a');
          key->value = type;
          if (!lex.Sp()) return false;
        }
        return lex.ModSeq(&key->number, /*allow_zero=*/true, "mod-sequence");
      case Kind::kNot:
        key->children.resize(1);
        return lex.Sp() && ParseKey(lex, &key->children[0]);
      case Kind::kOr:
        key->children.resize(2);
        return lex.Sp() && ParseKey(lex, &key->children[0]) && lex.Sp() &&
               ParseKey(lex, &key->children[1]);
      default:
        return true;
    }
  }();
  lex.Leave();
  return ok;
}

}  // namespace

std::string_view SearchKeyName(SearchKey::Kind kind) {
  for (const KeyName& k : kKeyNames) {
    if (k.kind == kind) return k.name;
  }
  return "";
}

int SearchDepth(const SearchKey& key) {
  int deepest = 0;
  for (const SearchKey& child : key.children) {
    int d = 1 + SearchDepth(child);
    if (d > deepest) deepest = d;
  }
  return deepest;
}

namespace internal {

bool ParseSearchCriteria(Lexer& lex, SearchKey* out) {
  out->kind = Kind::kAnd;
  out->children.clear();
  if (!lex.Sp()) return false;
  return ParseKeyList(lex, &out->children, /*in_parens=*/false);
}

}  // namespace internal
}  // namespace imap
