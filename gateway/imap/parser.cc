#include "gateway/imap/parser.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "gateway/imap/lexer.h"

namespace imap {
namespace {

using internal::Lexer;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// True if the lexer is at " WORD" followed by SP, "(" or the end.
bool NextIsSpWord(const Lexer& lex, std::string_view word) {
  std::string_view rest = lex.rest();
  if (rest.size() < word.size() + 1 || rest[0] != ' ') return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(rest[i + 1])) != word[i]) return false;
  }
  return rest.size() == word.size() + 1 || rest[word.size() + 1] == ' ' ||
         rest[word.size() + 1] == '\r';
}

bool Mailbox(Lexer& lex, std::string* out) {
  return lex.Sp() && lex.AString(out, "mailbox name");
}

// ---- Commands without arguments ----

template <typename T>
bool ParseNoArgs(Lexer& /*lex*/, Command::Body* body) {
  *body = T{};
  return true;
}

// ---- Authentication ----

bool ParseAuthenticate(Lexer& lex, Command::Body* body) {
  AuthenticateCommand cmd;
  if (!lex.Sp() || !lex.Keyword(&cmd.mechanism, "SASL mechanism name")) return false;
  if (lex.Accept(' ')) {
    // RFC 4959: initial-response = base64 / "=".
    std::string ir;
    auto is_base64 = [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' ||
             c == '=';
    };
    if (!lex.Run(+is_base64, &ir, "base64 initial response")) return false;
    cmd.initial_response = std::move(ir);
  }
  *body = std::move(cmd);
  return true;
}

bool ParseLogin(Lexer& lex, Command::Body* body) {
  LoginCommand cmd;
  if (!lex.Sp() || !lex.AString(&cmd.userid, "user name") || !lex.Sp() ||
      !lex.AString(&cmd.password, "password")) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

// ---- Mailbox commands ----

// A sequence set of QRESYNC's select parameter, where "*" is not allowed
// (RFC 7162 §7: known-uids and seq-match-data).
bool StarlessSet(Lexer& lex, SequenceSet* out, std::string_view what) {
  if (!lex.SequenceSetToken(out)) return false;
  if (out->saved()) {
    return lex.Fail("'$' is not allowed in the " + std::string(what) + " of QRESYNC");
  }
  if (out->HasStar()) {
    return lex.Fail("'*' is not allowed in the " + std::string(what) + " of QRESYNC");
  }
  return true;
}

// RFC 7162 §3.2.5: "(" uidvalidity SP mod-sequence-value [SP known-uids]
// [SP seq-match-data] ")", seq-match-data = "(" sequence-set SP uid-set ")".
bool Qresync(Lexer& lex, QresyncParameter* out) {
  if (!lex.Sp() || !lex.Expect('(', "'(' starting the QRESYNC parameter") ||
      !lex.NzNumber(&out->uidvalidity, "QRESYNC UIDVALIDITY") || !lex.Sp() ||
      !lex.ModSeq(&out->modseq, /*allow_zero=*/true, "QRESYNC mod-sequence")) {
    return false;
  }
  if (lex.Accept(' ')) {
    if (lex.Peek() != '(') {
      out->known_uids.emplace();
      if (!StarlessSet(lex, &*out->known_uids, "known UIDs")) return false;
      if (!lex.Accept(' ')) return lex.Expect(')', "')' closing the QRESYNC parameter");
    }
    out->known_sequence_set.emplace();
    out->known_uid_set.emplace();
    if (!lex.Expect('(', "'(' starting the QRESYNC sequence match data") ||
        !StarlessSet(lex, &*out->known_sequence_set, "known message numbers") || !lex.Sp() ||
        !StarlessSet(lex, &*out->known_uid_set, "known UIDs of the sequence match data") ||
        !lex.Expect(')', "')' closing the QRESYNC sequence match data")) {
      return false;
    }
  }
  return lex.Expect(')', "')' closing the QRESYNC parameter");
}

template <typename T>
bool ParseSelect(Lexer& lex, Command::Body* body) {
  T cmd;
  if (!Mailbox(lex, &cmd.mailbox)) return false;
  if (lex.Accept(' ')) {
    // RFC 4466 §2.1 select-params; RFC 7162 §3.1.8 defines CONDSTORE, §3.2.5 QRESYNC.
    if (!lex.Expect('(', "'(' starting SELECT parameters") || !lex.Enter()) return false;
    while (true) {
      std::string param;
      if (!lex.Keyword(&param, "SELECT parameter")) return false;
      if (param == "CONDSTORE" && !cmd.condstore) {
        cmd.condstore = true;
      } else if (param == "QRESYNC" && !cmd.qresync.has_value()) {
        cmd.qresync.emplace();
        if (!Qresync(lex, &*cmd.qresync)) return false;
      } else {
        return lex.Fail("unsupported or repeated SELECT/EXAMINE parameter " +
                        param.substr(0, 40) + " (CONDSTORE and QRESYNC are supported)");
      }
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
    lex.Leave();
  }
  *body = std::move(cmd);
  return true;
}

template <typename T>
bool ParseMailboxOnly(Lexer& lex, Command::Body* body) {
  T cmd;
  if (!Mailbox(lex, &cmd.mailbox)) return false;
  *body = std::move(cmd);
  return true;
}

// RFC 3501 §6.3.3, with RFC 4466 §2.2 create-params as RFC 6154 §5 extends them:
// CREATE name [SP "(" "USE" SP "(" [use-attr *(SP use-attr)] ")" ")"].
bool ParseCreate(Lexer& lex, Command::Body* body) {
  CreateCommand cmd;
  if (!Mailbox(lex, &cmd.mailbox)) return false;
  if (!lex.AtCrlf()) {
    if (!lex.Sp() || !lex.Expect('(', "'(' starting the CREATE parameters")) return false;
    std::string parameter;
    if (!lex.Keyword(&parameter, "a CREATE parameter")) return false;
    if (parameter != "USE") {
      return lex.Fail("unknown CREATE parameter " + parameter.substr(0, 40) +
                      " (USE is the one supported, RFC 6154)");
    }
    if (!lex.Sp() || !lex.FlagList(&cmd.special_use)) return false;
    if (!lex.Expect(')', "')' ending the CREATE parameters")) return false;
  }
  *body = std::move(cmd);
  return true;
}

bool ParseRename(Lexer& lex, Command::Body* body) {
  RenameCommand cmd;
  if (!Mailbox(lex, &cmd.from) || !Mailbox(lex, &cmd.to)) return false;
  *body = std::move(cmd);
  return true;
}

bool StatusItemFromName(std::string_view name, StatusItem* item) {
  static constexpr StatusItem kAll[] = {
      StatusItem::kMessages, StatusItem::kRecent, StatusItem::kUidNext,
      StatusItem::kUidValidity, StatusItem::kUnseen, StatusItem::kDeleted,
      StatusItem::kSize, StatusItem::kHighestModSeq, StatusItem::kAppendLimit,
      StatusItem::kMailboxId, StatusItem::kDeletedStorage};
  for (StatusItem candidate : kAll) {
    if (StatusItemName(candidate) == name) {
      *item = candidate;
      return true;
    }
  }
  return false;
}

bool StatusItems(Lexer& lex, std::vector<StatusItem>* items) {
  if (!lex.Expect('(', "'(' starting the status item list")) return false;
  while (true) {
    std::string name;
    StatusItem item;
    if (!lex.Keyword(&name, "status item")) return false;
    if (!StatusItemFromName(name, &item)) {
      return lex.Fail("unknown STATUS item " + name.substr(0, 40));
    }
    items->push_back(item);
    if (lex.Accept(')')) return true;
    if (!lex.Sp()) return false;
  }
}

bool ParseStatus(Lexer& lex, Command::Body* body) {
  StatusCommand cmd;
  if (!Mailbox(lex, &cmd.mailbox) || !lex.Sp() || !StatusItems(lex, &cmd.items)) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

// "(" [atom *(SP atom)] ")" upper-cased.
bool OptionList(Lexer& lex, std::vector<std::string>* out, std::string_view what) {
  if (!lex.Expect('(', "'('") || !lex.Enter()) return false;
  if (!lex.Accept(')')) {
    while (true) {
      std::string option;
      if (!lex.Keyword(&option, what)) return false;
      out->push_back(std::move(option));
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
  }
  lex.Leave();
  return true;
}

template <bool kLsub>
bool ParseList(Lexer& lex, Command::Body* body) {
  ListCommand cmd;
  cmd.lsub = kLsub;
  if (!lex.Sp()) return false;
  if (!kLsub && lex.PeekIs('(')) {  // RFC 5258 list-select-opts
    if (!OptionList(lex, &cmd.selection_options, "LIST selection option") ||
        !lex.Sp()) {
      return false;
    }
  }
  if (!lex.AString(&cmd.reference, "reference name") || !lex.Sp()) return false;
  if (!kLsub && lex.Accept('(')) {  // RFC 5258 patterns
    if (!lex.Enter()) return false;
    while (true) {
      std::string pattern;
      if (!lex.ListMailbox(&pattern)) return false;
      cmd.patterns.push_back(std::move(pattern));
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
    lex.Leave();
  } else {
    std::string pattern;
    if (!lex.ListMailbox(&pattern)) return false;
    cmd.patterns.push_back(std::move(pattern));
  }
  if (!kLsub && NextIsSpWord(lex, "RETURN")) {
    lex.Sp();
    lex.AcceptWord("RETURN");
    if (!lex.Sp() || !lex.Expect('(', "'(' starting LIST return options") ||
        !lex.Enter()) {
      return false;
    }
    if (!lex.Accept(')')) {
      while (true) {
        std::string option;
        if (!lex.Keyword(&option, "LIST return option")) return false;
        if (option == "STATUS") {  // RFC 5819
          if (!lex.Sp() || !StatusItems(lex, &cmd.return_status)) return false;
        } else {
          cmd.return_options.push_back(std::move(option));
        }
        if (lex.Accept(')')) break;
        if (!lex.Sp()) return false;
      }
    }
    lex.Leave();
  }
  *body = std::move(cmd);
  return true;
}

// ---- APPEND ----

// [flag-list SP] [date-time SP]: the options before one message literal.
bool AppendOptions(Lexer& lex, std::vector<std::string>* flags,
                   std::optional<DateTime>* date) {
  if (lex.PeekIs('(')) {
    if (!lex.FlagList(flags) || !lex.Sp()) return false;
  }
  if (lex.PeekIs('"')) {
    DateTime dt;
    if (!lex.DateTimeToken(&dt) || !lex.Sp()) return false;
    *date = dt;
  }
  return true;
}

bool ParseAppend(Lexer& lex, Command::Body* body) {
  AppendCommand cmd;
  if (!Mailbox(lex, &cmd.mailbox)) return false;
  // RFC 3502: append = "APPEND" SP mailbox 1*append-message.
  do {
    AppendMessage message;
    if (!lex.Sp() || !AppendOptions(lex, &message.flags, &message.date)) return false;
    // RFC 6855 §4: "UTF8" SP "(" literal8 ")".
    const bool utf8 = lex.AcceptWord("UTF8");
    if (utf8 && (!lex.Sp() || !lex.Expect('(', "'(' after UTF8"))) return false;
    if (utf8 ? !lex.AtLiteral8() : (!lex.PeekIs('{') && !lex.AtLiteral8())) {
      return lex.Fail(utf8 ? "UTF8 message data must be a literal8 (~{n}), RFC 6855 §4"
                           : "APPEND requires the message as a literal");
    }
    if (!lex.Literal(&message.data, /*allow_literal8=*/true, &message.binary)) {
      return false;
    }
    if (utf8 && !lex.Expect(')', "')' after the UTF8 message data")) return false;
    cmd.messages.push_back(std::move(message));
  } while (!lex.AtCrlf());
  *body = std::move(cmd);
  return true;
}

// Parses "{n}", "{n+}", "~{n}" that must end `text`, or RFC 6855 §4's
// "UTF8 (~{n}" (the ")" comes after the literal data).
bool TrailingLiteralMarker(Lexer& lex, AppendHead* head) {
  if (lex.AcceptWord("UTF8")) {
    head->utf8 = true;
    if (!lex.Sp() || !lex.Expect('(', "'(' after UTF8")) return false;
    if (!lex.AtLiteral8()) {
      return lex.Fail("UTF8 message data must be a literal8 (~{n}), RFC 6855 §4");
    }
  }
  head->binary = lex.Accept('~');
  uint64_t size;
  if (!lex.Expect('{', "the message literal") || !lex.Number64(&size, "literal size")) {
    return false;
  }
  if (size > UINT32_MAX) return lex.Fail("literal size exceeds 4294967295");
  head->size = static_cast<uint32_t>(size);
  head->synchronizing = !lex.Accept('+');
  if (!lex.Expect('}', "'}'")) return false;
  if (!lex.AtEnd()) return lex.Fail("unexpected data after the literal size");
  return true;
}

bool IsLiteralMarker(std::string_view s) {
  if (!s.empty() && s[0] == '~') s.remove_prefix(1);
  if (s.size() < 3 || s.front() != '{' || s.back() != '}') return false;
  s = s.substr(1, s.size() - 2);
  if (!s.empty() && s.back() == '+') s.remove_suffix(1);
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// ---- Messages: UID EXPUNGE, SEARCH, FETCH, STORE, COPY, MOVE ----

bool ParseUidExpunge(Lexer& lex, Command::Body* body) {
  UidExpungeCommand cmd;
  if (!lex.Sp() || !lex.SequenceSetToken(&cmd.uids)) return false;
  *body = std::move(cmd);
  return true;
}

// RFC 4731 §3.1 search-return-opts, with RFC 5267 §4 PARTIAL, UPDATE and
// CONTEXT: " RETURN (" [option *(SP option)] ")", if present. `command` names
// the command in messages.
bool ReturnOptions(Lexer& lex, std::optional<SearchReturnOptions>* out, std::string_view command) {
  if (!NextIsSpWord(lex, "RETURN")) return true;
  lex.Sp();
  lex.AcceptWord("RETURN");
  if (!lex.Sp() || !lex.Expect('(', "'(' starting the return options") || !lex.Enter()) {
    return false;
  }
  SearchReturnOptions ret;
  const std::string what = std::string(command) + " return option";
  while (!lex.Accept(')')) {
    if (ret.min || ret.max || ret.all || ret.count || ret.save || ret.update || ret.context ||
        ret.partial.has_value()) {
      if (!lex.Sp()) return false;
    }
    std::string option;
    if (!lex.Keyword(&option, what)) return false;
    if (option == "MIN") {
      ret.min = true;
    } else if (option == "MAX") {
      ret.max = true;
    } else if (option == "ALL") {
      ret.all = true;
    } else if (option == "COUNT") {
      ret.count = true;
    } else if (option == "SAVE") {
      ret.save = true;
    } else if (option == "UPDATE") {
      ret.update = true;
    } else if (option == "CONTEXT") {
      ret.context = true;
    } else if (option == "PARTIAL") {
      // RFC 5267 §5: partial-range = nz-number ":" nz-number. The negative
      // ranges of RFC 9394 are not offered.
      if (!lex.Sp()) return false;
      if (lex.PeekIs('-')) {
        return lex.Fail("PARTIAL takes positions from 1 (first:last); counting from the end "
                        "(RFC 9394) is not supported");
      }
      SearchReturnOptions::Range range;
      if (!lex.NzNumber(&range.first, "first position of PARTIAL") ||
          !lex.Expect(':', "':' in the PARTIAL range") ||
          !lex.NzNumber(&range.last, "last position of PARTIAL")) {
        return false;
      }
      if (range.first > range.last) std::swap(range.first, range.last);
      if (ret.partial.has_value()) return lex.Fail("PARTIAL is given twice");
      ret.partial = range;
    } else {
      return lex.Fail("unknown " + what + " " + option.substr(0, 40));
    }
  }
  lex.Leave();
  // PARTIAL asks for a part of what ALL returns; RFC 9394, which updates RFC
  // 5267, makes the two exclusive.
  if (ret.all && ret.partial.has_value()) {
    return lex.Fail("ALL and PARTIAL cannot be combined: PARTIAL returns part of what ALL does");
  }
  // A live result (RFC 5267 §4.3) cannot also be "$" (RFC 5182), which
  // changes only with a command that saves it.
  if (ret.update && ret.save) {
    return lex.Fail("UPDATE and SAVE cannot be combined");
  }
  *out = ret;
  return true;
}

bool ParseSearch(Lexer& lex, Command::Body* body, bool uid) {
  SearchCommand cmd;
  cmd.uid = uid;
  if (!ReturnOptions(lex, &cmd.return_options, "SEARCH")) return false;
  if (NextIsSpWord(lex, "CHARSET")) {
    lex.Sp();
    lex.AcceptWord("CHARSET");
    std::string charset;
    if (!lex.Sp() || !lex.AString(&charset, "charset name")) return false;
    cmd.charset = std::move(charset);
  }
  if (!internal::ParseSearchCriteria(lex, &cmd.criteria)) return false;
  *body = std::move(cmd);
  return true;
}

// RFC 5256 §5: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")",
// sort-criterion = ["REVERSE" SP] sort-key; RFC 5957 §4 adds DISPLAYFROM and
// DISPLAYTO.
bool SortProgram(Lexer& lex, std::vector<SortCriterion>* program) {
  using Key = SortCriterion::Key;
  static constexpr std::pair<std::string_view, Key> kKeys[] = {
      {"ARRIVAL", Key::kArrival}, {"CC", Key::kCc},           {"DATE", Key::kDate},
      {"FROM", Key::kFrom},       {"SIZE", Key::kSize},       {"SUBJECT", Key::kSubject},
      {"TO", Key::kTo},           {"DISPLAYFROM", Key::kDisplayFrom},
      {"DISPLAYTO", Key::kDisplayTo}};
  if (!lex.Expect('(', "'(' starting the sort criteria") || !lex.Enter()) return false;
  if (lex.PeekIs(')')) {
    return lex.Fail("the sort criteria are empty (RFC 5256 §3 needs at least one key)");
  }
  while (true) {
    SortCriterion criterion;
    std::string word;
    if (!lex.Keyword(&word, "sort key")) return false;
    if (word == "REVERSE") {
      criterion.reverse = true;
      if (!lex.Accept(' ')) {
        return lex.Fail("REVERSE must be followed by a sort key (RFC 5256 §3)");
      }
      if (!lex.Keyword(&word, "sort key after REVERSE")) return false;
    }
    bool known = false;
    for (const auto& [name, key] : kKeys) {
      if (word == name) {
        criterion.key = key;
        known = true;
      }
    }
    if (!known) {
      return lex.Fail("unknown sort key " + word.substr(0, 40) +
                      " (ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, DISPLAYFROM, DISPLAYTO, "
                      "each after an optional REVERSE)");
    }
    program->push_back(criterion);
    if (lex.Accept(')')) break;
    if (!lex.Sp()) return false;
  }
  lex.Leave();
  return true;
}

// RFC 5256 §5: sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria,
// search-criteria = charset 1*(SP search-key).
bool ParseSort(Lexer& lex, Command::Body* body, bool uid) {
  SortCommand cmd;
  cmd.uid = uid;
  // RFC 5267 §3: sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria ...
  if (!ReturnOptions(lex, &cmd.return_options, "SORT")) return false;
  if (!lex.Sp() || !SortProgram(lex, &cmd.program) || !lex.Sp() ||
      !lex.AString(&cmd.charset, "charset (SORT names one before its search keys)") ||
      !internal::ParseSearchCriteria(lex, &cmd.criteria)) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

// RFC 5267 §5: "CANCELUPDATE" 1*(SP quoted).
bool ParseCancelUpdate(Lexer& lex, Command::Body* body) {
  CancelUpdateCommand cmd;
  while (lex.PeekIs(' ')) {
    std::string tag;
    if (!lex.Sp() || !lex.Quoted(&tag)) return false;
    cmd.tags.push_back(std::move(tag));
  }
  if (cmd.tags.empty()) {
    return lex.Fail("CANCELUPDATE names the tags of the searches to stop, each quoted");
  }
  *body = std::move(cmd);
  return true;
}

// RFC 5256 §5: thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria.
bool ParseThread(Lexer& lex, Command::Body* body, bool uid) {
  ThreadCommand cmd;
  cmd.uid = uid;
  if (!lex.Sp() || !lex.Keyword(&cmd.algorithm, "threading algorithm")) return false;
  if (cmd.algorithm != "ORDEREDSUBJECT" && cmd.algorithm != "REFERENCES") {
    return lex.Fail("unknown threading algorithm " + cmd.algorithm.substr(0, 40) +
                    " (ORDEREDSUBJECT and REFERENCES are supported)");
  }
  if (!lex.Sp() ||
      !lex.AString(&cmd.charset, "charset (THREAD names one before its search keys)") ||
      !internal::ParseSearchCriteria(lex, &cmd.criteria)) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

bool Partial(Lexer& lex, std::optional<FetchAttribute::Partial>* out) {
  if (!lex.Accept('<')) return true;
  FetchAttribute::Partial partial;
  if (!lex.Number(&partial.offset, "partial offset") ||
      !lex.Expect('.', "'.' in <offset.length>") ||
      !lex.NzNumber(&partial.length, "partial length") ||
      !lex.Expect('>', "'>' closing <offset.length>")) {
    return false;
  }
  *out = partial;
  return true;
}

bool SectionSpec(Lexer& lex, Section* section, bool binary) {
  if (!lex.Expect('[', "'['")) return false;
  if (lex.Accept(']')) return true;
  bool want_text = true;
  if (IsDigit(lex.Peek())) {
    want_text = false;
    while (true) {
      uint32_t part;
      if (!lex.NzNumber(&part, "section part number")) return false;
      section->part.push_back(part);
      if (!lex.Accept('.')) break;
      if (!IsDigit(lex.Peek())) {
        want_text = true;
        break;
      }
    }
  }
  if (want_text) {
    if (binary) return lex.Fail("BINARY sections may only contain part numbers");
    std::string word;
    auto is_word = [](char c) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == '.';
    };
    if (!lex.Run(+is_word, &word, "section text")) return false;
    for (char& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (word == "HEADER") {
      section->text = Section::Text::kHeader;
    } else if (word == "HEADER.FIELDS" || word == "HEADER.FIELDS.NOT") {
      section->text = word == "HEADER.FIELDS" ? Section::Text::kHeaderFields
                                              : Section::Text::kHeaderFieldsNot;
      if (!lex.Sp() || !lex.Expect('(', "'(' starting the header field list")) {
        return false;
      }
      while (true) {
        std::string field;
        if (!lex.AString(&field, "header field name")) return false;
        section->fields.push_back(std::move(field));
        if (lex.Accept(')')) break;
        if (!lex.Sp()) return false;
      }
    } else if (word == "TEXT") {
      section->text = Section::Text::kText;
    } else if (word == "MIME" && !section->part.empty()) {
      section->text = Section::Text::kMime;  // RFC 3501 §6.4.5: parts only
    } else {
      return lex.Fail("invalid section " + word.substr(0, 40));
    }
  }
  return lex.Expect(']', "']' closing the section");
}

// RFC 8970 §3.1: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], and LAZY
// the only preview-mod. Alone after the sequence set (`in_list` false) a
// parenthesised list may instead be the FETCH modifiers (RFC 4466), so it is
// taken as preview modifiers only when it starts with LAZY.
bool PreviewModifiers(Lexer& lex, bool in_list, FetchAttribute* att) {
  const std::string_view rest = lex.rest();
  if (rest.size() < 2 || rest[0] != ' ' || rest[1] != '(') return true;
  if (!in_list) {
    const std::string_view first = rest.substr(2, 5);
    const bool lazy = first.size() == 5 &&
                      std::toupper(static_cast<unsigned char>(first[0])) == 'L' &&
                      std::toupper(static_cast<unsigned char>(first[1])) == 'A' &&
                      std::toupper(static_cast<unsigned char>(first[2])) == 'Z' &&
                      std::toupper(static_cast<unsigned char>(first[3])) == 'Y' &&
                      (first[4] == ' ' || first[4] == ')');
    if (!lazy) return true;
  }
  lex.Sp();
  lex.Accept('(');
  while (true) {
    if (lex.AcceptWord("LAZY")) {
      if (att->lazy) return lex.Fail("PREVIEW modifier LAZY given twice");
      att->lazy = true;
    } else {
      return lex.Fail("unknown PREVIEW modifier; LAZY is the only one (RFC 8970 §3.1)");
    }
    if (lex.Accept(')')) return true;
    if (!lex.Sp()) return false;
  }
}

bool FetchAtt(Lexer& lex, std::vector<FetchAttribute>* out, bool in_list) {
  using Kind = FetchAttribute::Kind;
  std::string name;
  auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.';
  };
  if (!lex.Run(+is_name, &name, "fetch attribute")) return false;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  FetchAttribute att;
  bool has_section = lex.PeekIs('[');
  if (!has_section) {
    static constexpr std::pair<std::string_view, Kind> kSimple[] = {
        {"ENVELOPE", Kind::kEnvelope}, {"FLAGS", Kind::kFlags},
        {"INTERNALDATE", Kind::kInternalDate}, {"RFC822", Kind::kRfc822},
        {"RFC822.HEADER", Kind::kRfc822Header}, {"RFC822.SIZE", Kind::kRfc822Size},
        {"RFC822.TEXT", Kind::kRfc822Text}, {"BODY", Kind::kBody},
        {"BODYSTRUCTURE", Kind::kBodyStructure}, {"UID", Kind::kUid},
        {"MODSEQ", Kind::kModSeq}, {"EMAILID", Kind::kEmailId},
        {"THREADID", Kind::kThreadId}, {"SAVEDATE", Kind::kSaveDate},
        {"PREVIEW", Kind::kPreview}};
    // ALL, FAST, FULL are macros (RFC 3501 §6.4.5); only valid alone, which the
    // caller checks.
    for (const auto& [n, kind] : kSimple) {
      if (n == name) {
        att.kind = kind;
        if (kind == Kind::kPreview && !PreviewModifiers(lex, in_list, &att)) return false;
        out->push_back(att);
        return true;
      }
    }
    return lex.Fail("unknown fetch attribute " + name.substr(0, 40));
  }
  bool binary = false;
  if (name == "BODY" || name == "BODY.PEEK") {
    att.kind = Kind::kBodySection;
  } else if (name == "BINARY" || name == "BINARY.PEEK") {
    att.kind = Kind::kBinary;
    binary = true;
  } else if (name == "BINARY.SIZE") {
    att.kind = Kind::kBinarySize;
    binary = true;
  } else {
    return lex.Fail("unknown fetch attribute " + name.substr(0, 40));
  }
  att.peek = name.ends_with(".PEEK");
  if (!SectionSpec(lex, &att.section, binary)) return false;
  if (att.kind != Kind::kBinarySize && !Partial(lex, &att.partial)) return false;
  out->push_back(std::move(att));
  return true;
}

void ExpandMacro(std::string_view name, std::vector<FetchAttribute>* out) {
  using Kind = FetchAttribute::Kind;
  auto add = [&](Kind kind) {
    FetchAttribute att;
    att.kind = kind;
    out->push_back(att);
  };
  // RFC 3501 §6.4.5.
  add(Kind::kFlags);
  add(Kind::kInternalDate);
  add(Kind::kRfc822Size);
  if (name != "FAST") add(Kind::kEnvelope);
  if (name == "FULL") add(Kind::kBody);
}

bool ParseFetch(Lexer& lex, Command::Body* body, bool uid) {
  FetchCommand cmd;
  cmd.uid = uid;
  if (!lex.Sp() || !lex.SequenceSetToken(&cmd.set) || !lex.Sp()) return false;
  if (lex.Accept('(')) {
    while (true) {
      if (!FetchAtt(lex, &cmd.attributes, /*in_list=*/true)) return false;
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
  } else if (lex.AcceptWord("ALL")) {
    ExpandMacro("ALL", &cmd.attributes);
  } else if (lex.AcceptWord("FAST")) {
    ExpandMacro("FAST", &cmd.attributes);
  } else if (lex.AcceptWord("FULL")) {
    ExpandMacro("FULL", &cmd.attributes);
  } else if (!FetchAtt(lex, &cmd.attributes, /*in_list=*/false)) {
    return false;
  }
  if (lex.Accept(' ')) {
    // RFC 4466 fetch-modifiers; RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED.
    if (!lex.Expect('(', "'(' starting FETCH modifiers")) return false;
    while (true) {
      if (!cmd.changed_since.has_value() && lex.AcceptWord("CHANGEDSINCE")) {
        uint64_t modseq;
        if (!lex.Sp() || !lex.ModSeq(&modseq, /*allow_zero=*/true, "CHANGEDSINCE value")) {
          return false;
        }
        cmd.changed_since = modseq;
      } else if (!cmd.vanished && lex.AcceptWord("VANISHED")) {
        cmd.vanished = true;
      } else {
        return lex.Fail(
            "unsupported or repeated FETCH modifier (CHANGEDSINCE and VANISHED are supported)");
      }
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
    // §3.2.6: VANISHED only goes with CHANGEDSINCE.
    if (cmd.vanished && !cmd.changed_since.has_value()) {
      return lex.Fail("the VANISHED FETCH modifier needs CHANGEDSINCE (RFC 7162 §3.2.6)");
    }
  }
  *body = std::move(cmd);
  return true;
}

bool ParseStore(Lexer& lex, Command::Body* body, bool uid) {
  StoreCommand cmd;
  cmd.uid = uid;
  if (!lex.Sp() || !lex.SequenceSetToken(&cmd.set) || !lex.Sp()) return false;
  if (lex.Accept('(')) {  // RFC 7162 §3.1.3 store-modifier
    if (!lex.AcceptWord("UNCHANGEDSINCE")) {
      return lex.Fail("unsupported STORE modifier (only UNCHANGEDSINCE is supported)");
    }
    uint64_t modseq;
    if (!lex.Sp() || !lex.ModSeq(&modseq, /*allow_zero=*/true, "UNCHANGEDSINCE value") ||
        !lex.Expect(')', "')' closing STORE modifiers") || !lex.Sp()) {
      return false;
    }
    cmd.unchanged_since = modseq;
  }
  if (lex.Accept('+')) {
    cmd.mode = StoreCommand::Mode::kAdd;
  } else if (lex.Accept('-')) {
    cmd.mode = StoreCommand::Mode::kRemove;
  }
  std::string item;
  if (!lex.Keyword(&item, "FLAGS, +FLAGS or -FLAGS")) return false;
  if (item == "FLAGS.SILENT") {
    cmd.silent = true;
  } else if (item != "FLAGS") {
    return lex.Fail("expected FLAGS, +FLAGS or -FLAGS, got " + item.substr(0, 40));
  }
  if (!lex.Sp()) return false;
  if (lex.PeekIs('(')) {
    if (!lex.FlagList(&cmd.flags)) return false;
  } else {
    // RFC 3501 §9 store-att-flags also allows flags without parentheses.
    while (true) {
      std::string flag;
      if (!lex.Flag(&flag)) return false;
      cmd.flags.push_back(std::move(flag));
      if (lex.AtCrlf()) break;
      if (!lex.Sp()) return false;
    }
  }
  *body = std::move(cmd);
  return true;
}

template <typename T>
bool ParseCopyLike(Lexer& lex, Command::Body* body, bool uid) {
  T cmd;
  cmd.uid = uid;
  if (!lex.Sp() || !lex.SequenceSetToken(&cmd.set) || !Mailbox(lex, &cmd.mailbox)) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

// ---- Other extensions ----

bool ParseEnable(Lexer& lex, Command::Body* body) {
  EnableCommand cmd;
  do {
    std::string capability;
    if (!lex.Sp() || !lex.Keyword(&capability, "capability name")) return false;
    cmd.capabilities.push_back(std::move(capability));
  } while (!lex.AtCrlf());
  *body = std::move(cmd);
  return true;
}

bool ParseId(Lexer& lex, Command::Body* body) {
  IdCommand cmd;
  if (!lex.Sp()) return false;
  if (!lex.AcceptWord("NIL")) {
    // RFC 2971 §4: "(" *(string SP nstring) ")"
    if (!lex.Expect('(', "'(' or NIL") || !lex.Enter()) return false;
    IdCommand::Params params;
    if (!lex.Accept(')')) {
      while (true) {
        std::string field;
        std::optional<std::string> value;
        if (!lex.String(&field, "ID field name") || !lex.Sp() ||
            !lex.NString(&value, "ID field value")) {
          return false;
        }
        params.emplace_back(std::move(field), std::move(value));
        if (lex.Accept(')')) break;
        if (!lex.Sp()) return false;
      }
    }
    lex.Leave();
    cmd.params = std::move(params);
  }
  *body = std::move(cmd);
  return true;
}

// RFC 4978 §5: "COMPRESS" SP algorithm, algorithm = "DEFLATE" (an atom; other
// names are the session's to refuse, with a message saying what is offered).
bool ParseCompress(Lexer& lex, Command::Body* body) {
  CompressCommand cmd;
  if (!lex.Sp() || !lex.Keyword(&cmd.algorithm, "a compression algorithm (DEFLATE)")) {
    return false;
  }
  *body = std::move(cmd);
  return true;
}

// RFC 9208 §4.1.1: "GETQUOTA" SP quota-root-name (an astring).
bool ParseGetQuota(Lexer& lex, Command::Body* body) {
  GetQuotaCommand cmd;
  if (!lex.Sp() || !lex.AString(&cmd.root, "quota root name")) return false;
  *body = std::move(cmd);
  return true;
}

// RFC 9208 §4.1.2: "GETQUOTAROOT" SP mailbox.
bool ParseGetQuotaRoot(Lexer& lex, Command::Body* body) {
  GetQuotaRootCommand cmd;
  if (!Mailbox(lex, &cmd.mailbox)) return false;
  *body = std::move(cmd);
  return true;
}

// RFC 9208 §4.1.3: "SETQUOTA" SP quota-root-name SP "(" [setquota-resource
// *(SP setquota-resource)] ")", setquota-resource = resource-name SP number64.
bool ParseSetQuota(Lexer& lex, Command::Body* body) {
  SetQuotaCommand cmd;
  if (!lex.Sp() || !lex.AString(&cmd.root, "quota root name") || !lex.Sp() ||
      !lex.Expect('(', "'(' starting the resource limits")) {
    return false;
  }
  if (!lex.Accept(')')) {
    while (true) {
      std::string resource;
      uint64_t limit = 0;
      if (!lex.Keyword(&resource, "a resource name") || !lex.Sp() ||
          !lex.Number64(&limit, "resource limit")) {
        return false;
      }
      cmd.limits.emplace_back(std::move(resource), limit);
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
  }
  *body = std::move(cmd);
  return true;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// RFC 5464 §5: entry = astring (the service checks the name itself).
bool MetadataEntry(Lexer& lex, std::string* out) {
  return lex.AString(out, "annotation entry name");
}

// RFC 5464 §5: "GETMETADATA" [SP "(" option *(SP option) ")"] SP mailbox SP
// entries; options MAXSIZE number and DEPTH ("0" / "1" / "infinity");
// entries = entry / "(" entry *(SP entry) ")".
bool ParseGetMetadata(Lexer& lex, Command::Body* body) {
  GetMetadataCommand cmd;
  if (!lex.Sp()) return false;
  if (lex.Accept('(')) {
    bool seen_maxsize = false, seen_depth = false;
    while (true) {
      std::string option;
      if (!lex.Keyword(&option, "a GETMETADATA option (MAXSIZE or DEPTH)") || !lex.Sp()) {
        return false;
      }
      if (option == "MAXSIZE" && !seen_maxsize) {
        uint64_t size = 0;
        if (!lex.Number64(&size, "MAXSIZE octets")) return false;
        cmd.max_size = size;
        seen_maxsize = true;
      } else if (option == "DEPTH" && !seen_depth) {
        std::string depth;
        if (!lex.Atom(&depth, "DEPTH 0, 1 or infinity")) return false;
        if (depth == "0") {
          cmd.depth = 0;
        } else if (depth == "1") {
          cmd.depth = 1;
        } else if (EqualsNoCase(depth, "infinity")) {
          cmd.depth = -1;
        } else {
          return lex.Fail("DEPTH is 0, 1 or infinity (RFC 5464 §4.2.2)");
        }
        seen_depth = true;
      } else {
        return lex.Fail("unknown or repeated GETMETADATA option " + option.substr(0, 40) +
                        " (MAXSIZE and DEPTH are known, once each)");
      }
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
    if (!lex.Sp()) return false;
  }
  if (!lex.AString(&cmd.mailbox, "mailbox name") || !lex.Sp()) return false;
  if (lex.Accept('(')) {
    while (true) {
      std::string entry;
      if (!MetadataEntry(lex, &entry)) return false;
      cmd.entries.push_back(std::move(entry));
      if (lex.Accept(')')) break;
      if (!lex.Sp()) return false;
    }
  } else {
    std::string entry;
    if (!MetadataEntry(lex, &entry)) return false;
    cmd.entries.push_back(std::move(entry));
  }
  *body = std::move(cmd);
  return true;
}

// RFC 5464 §5: "SETMETADATA" SP mailbox SP "(" entry SP value *(SP entry SP
// value) ")", value = nstring / literal8.
bool ParseSetMetadata(Lexer& lex, Command::Body* body) {
  SetMetadataCommand cmd;
  if (!Mailbox(lex, &cmd.mailbox) || !lex.Sp() ||
      !lex.Expect('(', "'(' starting the entries and values")) {
    return false;
  }
  while (true) {
    std::string entry;
    if (!MetadataEntry(lex, &entry) || !lex.Sp()) return false;
    std::optional<std::string> value;
    if (lex.AtLiteral8()) {
      std::string data;
      if (!lex.Literal(&data, /*allow_literal8=*/true)) return false;
      value = std::move(data);
    } else if (!lex.NString(&value, "annotation value")) {
      return false;
    }
    cmd.entries.emplace_back(std::move(entry), std::move(value));
    if (lex.Accept(')')) break;
    if (!lex.Sp()) return false;
  }
  *body = std::move(cmd);
  return true;
}

// At most this many event groups in one NOTIFY (each names a filter once).
constexpr size_t kMaxNotifyGroups = 64;

// RFC 5465 §8: one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")".
bool NotifyMailboxes(Lexer& lex, std::vector<std::string>* out) {
  if (!lex.Sp()) return false;
  if (!lex.Accept('(')) {
    std::string name;
    if (!lex.AString(&name, "mailbox name")) return false;
    out->push_back(std::move(name));
    return true;
  }
  while (true) {
    std::string name;
    if (!lex.AString(&name, "mailbox name")) return false;
    out->push_back(std::move(name));
    if (lex.Accept(')')) return true;
    if (!lex.Sp()) return false;
  }
}

// RFC 5465 §8: events = "(" event *(SP event) ")" / "NONE".
bool NotifyEvents(Lexer& lex, NotifyEventGroup* group) {
  using Filter = NotifyEventGroup::Filter;
  if (lex.AcceptWord("NONE")) return true;
  if (!lex.Expect('(', "'(' starting the events, or NONE")) return false;
  static constexpr std::string_view kKnown[] = {
      "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
      "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange"};
  while (true) {
    std::string name;
    if (!lex.Keyword(&name, "an event name (e.g. MessageNew)")) return false;
    for (std::string_view known : kKnown) {
      if (EqualsNoCase(known, name)) {
        name = std::string(known);
        break;
      }
    }
    if (std::find(group->events.begin(), group->events.end(), name) != group->events.end()) {
      return lex.Fail("event " + name.substr(0, 40) + " given twice in one event group");
    }
    if (name == "MessageNew" && lex.PeekIs(' ') && lex.rest().size() > 1 &&
        lex.rest()[1] == '(') {
      // §5.2: the attributes of new messages, sent with their EXISTS; only the
      // selected mailbox has message numbers to send them with.
      if (group->filter != Filter::kSelected && group->filter != Filter::kSelectedDelayed) {
        return lex.Fail(
            "MessageNew takes fetch attributes only for SELECTED or SELECTED-DELAYED "
            "(RFC 5465 §5.2)");
      }
      lex.Sp();
      lex.Accept('(');
      while (true) {
        if (!FetchAtt(lex, &group->message_new_attributes, /*in_list=*/true)) return false;
        if (lex.Accept(')')) break;
        if (!lex.Sp()) return false;
      }
    }
    group->events.push_back(std::move(name));
    if (lex.Accept(')')) break;
    if (!lex.Sp()) return false;
  }
  auto has = [group](std::string_view event) {
    return std::find(group->events.begin(), group->events.end(), event) != group->events.end();
  };
  // §5: MessageNew and MessageExpunge come together, and FlagChange or
  // AnnotationChange only with both (a client cannot follow flags of messages
  // it does not know about).
  if (has("MessageNew") != has("MessageExpunge")) {
    return lex.Fail("MessageNew and MessageExpunge must be given together (RFC 5465 §5)");
  }
  if ((has("FlagChange") || has("AnnotationChange")) && !has("MessageNew")) {
    return lex.Fail(
        "FlagChange and AnnotationChange need MessageNew and MessageExpunge in the same "
        "event group (RFC 5465 §5)");
  }
  return true;
}

// RFC 5465 §8: event-group = "(" filter-mailboxes SP events ")".
bool NotifyEventGroupToken(Lexer& lex, NotifyEventGroup* group) {
  using Filter = NotifyEventGroup::Filter;
  if (!lex.Expect('(', "'(' starting an event group")) return false;
  std::string filter;
  if (!lex.Keyword(&filter,
                   "a mailbox filter (SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, "
                   "SUBSCRIBED, SUBTREE or MAILBOXES)")) {
    return false;
  }
  if (filter == "SELECTED") {
    group->filter = Filter::kSelected;
  } else if (filter == "SELECTED-DELAYED") {
    group->filter = Filter::kSelectedDelayed;
  } else if (filter == "INBOXES") {
    group->filter = Filter::kInboxes;
  } else if (filter == "PERSONAL") {
    group->filter = Filter::kPersonal;
  } else if (filter == "SUBSCRIBED") {
    group->filter = Filter::kSubscribed;
  } else if (filter == "SUBTREE" || filter == "MAILBOXES") {
    group->filter = filter == "SUBTREE" ? Filter::kSubtree : Filter::kMailboxes;
    if (!NotifyMailboxes(lex, &group->mailboxes)) return false;
  } else {
    return lex.Fail("unknown mailbox filter " + filter.substr(0, 40) +
                    " (RFC 5465 §6: SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, "
                    "SUBSCRIBED, SUBTREE, MAILBOXES)");
  }
  return lex.Sp() && NotifyEvents(lex, group) &&
         lex.Expect(')', "')' ending the event group");
}

// RFC 5465 §8: "NOTIFY" SP ("NONE" / "SET" [SP "STATUS"] SP event-group
// *(SP event-group)).
bool ParseNotify(Lexer& lex, Command::Body* body) {
  using Filter = NotifyEventGroup::Filter;
  NotifyCommand cmd;
  if (!lex.Sp()) return false;
  if (lex.AcceptWord("NONE")) {
    cmd.none = true;
    *body = std::move(cmd);
    return true;
  }
  if (!lex.AcceptWord("SET")) return lex.Fail("expected NOTIFY SET or NOTIFY NONE");
  if (!lex.Sp()) return false;
  if (lex.AcceptWord("STATUS")) {
    cmd.status = true;
    if (!lex.Sp()) return false;
  }
  bool selected_seen = false;
  while (true) {
    if (cmd.groups.size() == kMaxNotifyGroups) {
      return lex.Fail("more than " + std::to_string(kMaxNotifyGroups) +
                      " event groups in one NOTIFY");
    }
    NotifyEventGroup group;
    if (!NotifyEventGroupToken(lex, &group)) return false;
    if (group.filter == Filter::kSelected || group.filter == Filter::kSelectedDelayed) {
      // §6.1: one way of following the selected mailbox.
      if (selected_seen) {
        return lex.Fail("SELECTED or SELECTED-DELAYED given more than once");
      }
      selected_seen = true;
    }
    cmd.groups.push_back(std::move(group));
    if (!lex.Accept(' ')) break;
  }
  *body = std::move(cmd);
  return true;
}

using UidParseFn = bool (*)(Lexer&, Command::Body*, bool);

// The grammar of a command that has a UID form, as the plain or the UID form.
template <UidParseFn kParse>
bool Plain(Lexer& lex, Command::Body* body) {
  return kParse(lex, body, /*uid=*/false);
}
template <UidParseFn kParse>
bool WithUid(Lexer& lex, Command::Body* body) {
  return kParse(lex, body, /*uid=*/true);
}

constexpr uint8_t kAuth = kAuthenticated | kSelected;

// Every command the gateway accepts (see CommandSpec). States are RFC 3501 §3's;
// UID forms name messages by UID, so EXPUNGE responses may be sent while they
// run (RFC 3501 §7.4.1).
//   name, grammar, allowed states, sequence numbers, may expunge, owns input,
//   needs the store
constexpr CommandSpec kCommandTable[] = {
    {"CAPABILITY", ParseNoArgs<CapabilityCommand>, kAnyState, false, false, false, false},
    {"NOOP", ParseNoArgs<NoopCommand>, kAnyState, false, false, false, false},
    {"LOGOUT", ParseNoArgs<LogoutCommand>, kAnyState, false, false, true, false},
    {"ID", ParseId, kAnyState, false, false, false, false},
    {"STARTTLS", ParseNoArgs<StartTlsCommand>, kNotAuthenticated, false, false, true, false},
    {"AUTHENTICATE", ParseAuthenticate, kNotAuthenticated, false, false, true, true},
    {"LOGIN", ParseLogin, kNotAuthenticated, false, false, false, true},
    {"SELECT", ParseSelect<SelectCommand>, kAuth, false, false, false, true},
    {"EXAMINE", ParseSelect<ExamineCommand>, kAuth, false, false, false, true},
    {"CREATE", ParseCreate, kAuth, false, false, false, true},
    {"DELETE", ParseMailboxOnly<DeleteCommand>, kAuth, false, false, false, true},
    {"RENAME", ParseRename, kAuth, false, false, false, true},
    {"SUBSCRIBE", ParseMailboxOnly<SubscribeCommand>, kAuth, false, false, false, true},
    {"UNSUBSCRIBE", ParseMailboxOnly<UnsubscribeCommand>, kAuth, false, false, false, true},
    {"LIST", ParseList<false>, kAuth, false, false, false, true},
    {"LSUB", ParseList<true>, kAuth, false, false, false, true},
    {"STATUS", ParseStatus, kAuth, false, false, false, true},
    {"APPEND", ParseAppend, kAuth, false, false, false, true},
    // An arrival while idling in the selected mailbox may be claimed as \Recent
    // (RFC 3501 §2.3.2), a call to the store.
    {"IDLE", ParseNoArgs<IdleCommand>, kAuth, false, false, true, true},
    {"ENABLE", ParseEnable, kAuth, false, false, false, false},
    {"NAMESPACE", ParseNoArgs<NamespaceCommand>, kAuth, false, false, false, false},
    // RFC 4978 §3: valid once authenticated; compression starts after the OK, so
    // nothing after the command may be read ahead in the clear.
    {"COMPRESS", ParseCompress, kAuth, false, false, true, false},
    // RFC 9208 §4.1. SETQUOTA is answered without the store: limits are the
    // operator's.
    {"GETQUOTA", ParseGetQuota, kAuth, false, false, false, true},
    {"GETQUOTAROOT", ParseGetQuotaRoot, kAuth, false, false, false, true},
    {"SETQUOTA", ParseSetQuota, kAuth, false, false, false, false},
    // RFC 5464 §4.2, §4.3.
    {"GETMETADATA", ParseGetMetadata, kAuth, false, false, false, true},
    {"SETMETADATA", ParseSetMetadata, kAuth, false, false, false, true},
    // RFC 5465 §3.1: the mailboxes to watch are looked up in the service.
    {"NOTIFY", ParseNotify, kAuth, false, false, false, true},
    {"CHECK", ParseNoArgs<CheckCommand>, kSelected, false, false, false, false},
    {"CLOSE", ParseNoArgs<CloseCommand>, kSelected, false, true, false, true},
    {"UNSELECT", ParseNoArgs<UnselectCommand>, kSelected, false, false, false, false},
    {"EXPUNGE", ParseNoArgs<ExpungeCommand>, kSelected, false, true, false, true},
    {"UID EXPUNGE", ParseUidExpunge, kSelected, false, true, false, true},
    {"SEARCH", Plain<ParseSearch>, kSelected, true, false, false, true},
    {"UID SEARCH", WithUid<ParseSearch>, kSelected, false, false, false, true},
    {"SORT", Plain<ParseSort>, kSelected, true, false, false, true},
    {"UID SORT", WithUid<ParseSort>, kSelected, false, false, false, true},
    {"THREAD", Plain<ParseThread>, kSelected, true, false, false, true},
    // RFC 5267 §4.3: answered from the session's live results alone.
    {"CANCELUPDATE", ParseCancelUpdate, kSelected, false, false, false, false},
    {"UID THREAD", WithUid<ParseThread>, kSelected, false, false, false, true},
    {"FETCH", Plain<ParseFetch>, kSelected, true, false, false, true},
    {"UID FETCH", WithUid<ParseFetch>, kSelected, false, false, false, true},
    {"STORE", Plain<ParseStore>, kSelected, true, false, false, true},
    {"UID STORE", WithUid<ParseStore>, kSelected, false, false, false, true},
    {"COPY", Plain<ParseCopyLike<CopyCommand>>, kSelected, true, false, false, true},
    {"UID COPY", WithUid<ParseCopyLike<CopyCommand>>, kSelected, false, false, false, true},
    {"MOVE", Plain<ParseCopyLike<MoveCommand>>, kSelected, true, true, false, true},
    {"UID MOVE", WithUid<ParseCopyLike<MoveCommand>>, kSelected, false, true, false, true},
};

bool Tag(Lexer& lex, std::string* tag) {
  if (!lex.Run(internal::IsTagChar, tag, "a tag")) return false;
  if (tag->size() > lex.limits().max_tag_length) {
    return lex.Fail("tag longer than " + std::to_string(lex.limits().max_tag_length) +
                    " octets");
  }
  return true;
}

bool ParseBody(Lexer& lex, Command* command) {
  std::string name;
  if (!Tag(lex, &command->tag) || !lex.Sp() || !lex.Keyword(&name, "a command name")) {
    return false;
  }
  if (name == "UID") {
    std::string rest;
    if (!lex.Sp() || !lex.Keyword(&rest, "a UID command name")) return false;
    name += " " + rest;
  }
  command->spec = FindCommand(name);
  if (command->spec == nullptr) {
    return lex.Fail("unknown command " + name.substr(0, 44));
  }
  return command->spec->parse(lex, &command->body);
}

}  // namespace

Result<Command> ParseCommand(std::string_view wire, const Limits& limits) {
  Lexer lex(wire, limits);
  Command command;
  if (!ParseBody(lex, &command) || !lex.ExpectEnd()) return lex.error();
  return command;
}

std::string ExtractTag(std::string_view line, size_t max_tag_length) {
  size_t n = 0;
  while (n < line.size() && internal::IsTagChar(line[n])) ++n;
  if (n == 0 || n > max_tag_length) return "";
  if (n < line.size() && line[n] != ' ' && line[n] != '\r') return "";
  return std::string(line.substr(0, n));
}

std::string ExtractCommandName(std::string_view line) {
  size_t space = line.find(' ');
  if (space == std::string_view::npos) return "";
  auto word_at = [&](size_t start) {
    std::string word;
    for (size_t i = start; i < line.size() && internal::IsAtomChar(line[i]); ++i) {
      word += static_cast<char>(std::toupper(static_cast<unsigned char>(line[i])));
    }
    return word;
  };
  std::string name = word_at(space + 1);
  if (name == "UID" && space + 4 < line.size() && line[space + 4] == ' ') {
    name += " " + word_at(space + 5);
  }
  return name;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& spec : kCommandTable) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool IsKnownCommandName(std::string_view name) { return FindCommand(name) != nullptr; }

std::span<const CommandSpec> CommandTable() { return kCommandTable; }

namespace {

// One cat-part (RFC 4469 §5); a TEXT part must end the text (its literal
// follows). Sets *text_literal for it.
bool CatenatePart(Lexer& lex, size_t* parts, AppendSegment* segment, bool* text_literal) {
  if (++*parts > lex.limits().max_catenate_parts) {
    return lex.Fail("more than " + std::to_string(lex.limits().max_catenate_parts) +
                        " parts in one CATENATE message",
                    "LIMIT");
  }
  if (lex.AcceptWord("TEXT")) {
    CatenateTextPart part;
    if (!lex.Sp()) return false;
    part.binary = lex.Accept('~');
    uint64_t size;
    if (!lex.Expect('{', "the TEXT literal") || !lex.Number64(&size, "literal size")) {
      return false;
    }
    if (size > UINT32_MAX) return lex.Fail("literal size exceeds 4294967295");
    part.size = static_cast<uint32_t>(size);
    part.synchronizing = !lex.Accept('+');
    if (!lex.Expect('}', "'}'")) return false;
    if (!lex.AtEnd()) return lex.Fail("unexpected data after the literal size");
    segment->steps.emplace_back(part);
    *text_literal = true;
    return true;
  }
  if (lex.AcceptWord("URL")) {
    CatenateUrlPart part;
    if (!lex.Sp()) return false;
    if (lex.PeekIs('{') || lex.AtLiteral8()) {
      return lex.Fail("send the CATENATE URL as a quoted string, not a literal");
    }
    if (!lex.AString(&part.url, "URL")) return false;
    segment->steps.emplace_back(std::move(part));
    return true;
  }
  return lex.Fail("expected TEXT or URL in the CATENATE list (RFC 4469 §5)");
}

}  // namespace

Result<AppendSegment> ParseAppendSegment(std::string_view text, AppendAt at,
                                         bool literal_at_end, const Limits& limits,
                                         size_t* catenate_parts) {
  Lexer lex(text, limits);
  AppendSegment segment;
  bool in_list = at == AppendAt::kInCatenate;  // after a part of an open list
  bool need_message = false;
  if (at == AppendAt::kCommand) {
    std::string tag;
    if (!Tag(lex, &tag) || !lex.Sp() || !lex.AcceptWord("APPEND") || !lex.Sp()) {
      if (lex.failed()) return lex.error();
      return Error{"expected APPEND"};
    }
    if (literal_at_end && IsLiteralMarker(lex.rest())) {
      segment.mailbox_literal = true;
      return segment;
    }
    std::string mailbox;
    if (!lex.AString(&mailbox, "mailbox name")) return lex.error();
    AppendHead head;
    head.mailbox = std::move(mailbox);
    segment.steps.emplace_back(std::move(head));  // replaced by the first message
    need_message = true;
  } else if (at == AppendAt::kAfterUtf8 && !lex.Accept(')')) {
    return Error{"expected ')' after the UTF8 message data (RFC 6855 §4)"};
  }
  while (true) {
    if (in_list) {
      if (lex.Accept(')')) {
        in_list = false;
        *catenate_parts = 0;
        continue;
      }
      if (lex.AtEnd()) {
        return Error{"expected ')' closing the CATENATE list (RFC 4469 §5)"};
      }
      if (!lex.Sp()) return lex.error();
      bool text_literal = false;
      if (!CatenatePart(lex, catenate_parts, &segment, &text_literal)) return lex.error();
      if (text_literal) break;
      continue;
    }
    // Between messages (RFC 3502: 1*append-message).
    if (lex.AtEnd() && !need_message) break;
    if (lex.AtEnd() || !lex.Sp()) {
      if (!lex.failed()) lex.Fail("APPEND requires the message as a literal or a CATENATE list");
      return lex.error();
    }
    AppendHead head;
    if (need_message) {
      head.mailbox = std::get<AppendHead>(segment.steps.front()).mailbox;
      segment.steps.clear();
      need_message = false;
    }
    if (!AppendOptions(lex, &head.flags, &head.date)) return lex.error();
    if (lex.AcceptWord("CATENATE")) {
      // RFC 4469 §5: append-data =/ "CATENATE" SP "(" cat-part *(SP cat-part) ")".
      head.catenate = true;
      if (!lex.Sp() || !lex.Expect('(', "'(' after CATENATE")) return lex.error();
      segment.steps.emplace_back(std::move(head));
      *catenate_parts = 0;
      bool text_literal = false;
      if (!CatenatePart(lex, catenate_parts, &segment, &text_literal)) return lex.error();
      in_list = true;
      if (text_literal) break;
      continue;
    }
    if (!lex.PeekIs('{') && !lex.AtLiteral8() && !lex.PeekWord("UTF8")) {
      lex.Fail("APPEND requires the message as a literal or a CATENATE list");
      return lex.error();
    }
    if (!TrailingLiteralMarker(lex, &head)) return lex.error();
    segment.steps.emplace_back(std::move(head));
    break;
  }
  segment.literal = !segment.steps.empty() && lex.AtEnd() && literal_at_end &&
                    (std::holds_alternative<CatenateTextPart>(segment.steps.back()) ||
                     !std::get<AppendHead>(segment.steps.back()).catenate);
  if (literal_at_end != segment.literal || !lex.AtEnd()) {
    return Error{literal_at_end ? "unexpected literal in APPEND"
                                : "unexpected data at the end of APPEND"};
  }
  return segment;
}

Result<Section> ParseSectionText(std::string_view text, const Limits& limits) {
  const std::string bracketed = "[" + std::string(text) + "]";
  Lexer lex(bracketed, limits);
  Section section;
  if (!SectionSpec(lex, &section, /*binary=*/false)) return lex.error();
  if (!lex.AtEnd()) return Error{"unexpected data after the section"};
  return section;
}

}  // namespace imap
