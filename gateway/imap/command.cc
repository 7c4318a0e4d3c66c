#include "gateway/imap/command.h"

#include <type_traits>

#include "gateway/imap/response.h"

namespace imap {

std::string_view StatusItemName(StatusItem item) {
  switch (item) {
    case StatusItem::kMessages: return "MESSAGES";
    case StatusItem::kRecent: return "RECENT";
    case StatusItem::kUidNext: return "UIDNEXT";
    case StatusItem::kUidValidity: return "UIDVALIDITY";
    case StatusItem::kUnseen: return "UNSEEN";
    case StatusItem::kDeleted: return "DELETED";
    case StatusItem::kSize: return "SIZE";
    case StatusItem::kHighestModSeq: return "HIGHESTMODSEQ";
    case StatusItem::kAppendLimit: return "APPENDLIMIT";
    case StatusItem::kMailboxId: return "MAILBOXID";
  }
  return "";
}

namespace {

void AppendSection(std::string& out, const Section& section) {
  out += '[';
  for (size_t i = 0; i < section.part.size(); ++i) {
    if (i > 0) out += '.';
    out += std::to_string(section.part[i]);
  }
  if (section.text != Section::Text::kNone && !section.part.empty()) out += '.';
  switch (section.text) {
    case Section::Text::kNone: break;
    case Section::Text::kHeader: out += "HEADER"; break;
    case Section::Text::kText: out += "TEXT"; break;
    case Section::Text::kMime: out += "MIME"; break;
    case Section::Text::kHeaderFields:
    case Section::Text::kHeaderFieldsNot:
      out += section.text == Section::Text::kHeaderFields ? "HEADER.FIELDS ("
                                                          : "HEADER.FIELDS.NOT (";
      for (size_t i = 0; i < section.fields.size(); ++i) {
        if (i > 0) out += ' ';
        AppendAString(out, section.fields[i]);
      }
      out += ')';
      break;
  }
  out += ']';
}

}  // namespace

std::string FetchResponseName(const FetchAttribute& att) {
  using Kind = FetchAttribute::Kind;
  switch (att.kind) {
    case Kind::kEnvelope: return "ENVELOPE";
    case Kind::kFlags: return "FLAGS";
    case Kind::kInternalDate: return "INTERNALDATE";
    case Kind::kRfc822: return "RFC822";
    case Kind::kRfc822Header: return "RFC822.HEADER";
    case Kind::kRfc822Size: return "RFC822.SIZE";
    case Kind::kRfc822Text: return "RFC822.TEXT";
    case Kind::kBody: return "BODY";
    case Kind::kBodyStructure: return "BODYSTRUCTURE";
    case Kind::kUid: return "UID";
    case Kind::kModSeq: return "MODSEQ";
    case Kind::kEmailId: return "EMAILID";
    case Kind::kThreadId: return "THREADID";
    case Kind::kBodySection:
    case Kind::kBinary:
    case Kind::kBinarySize: {
      std::string out = att.kind == Kind::kBodySection ? "BODY"
                        : att.kind == Kind::kBinary    ? "BINARY"
                                                       : "BINARY.SIZE";
      AppendSection(out, att.section);
      // RFC 3501 §7.4.2: only the origin octet is echoed.
      if (att.partial.has_value()) out += "<" + std::to_string(att.partial->offset) + ">";
      return out;
    }
  }
  return "";
}

namespace {

constexpr uint8_t kAuth = kAuthenticated | kSelected;

// Indexed by Command::Body alternative; UID variants are looked up separately.
constexpr CommandInfo kInfo[] = {
    {"CAPABILITY", kAnyState, false, false},
    {"NOOP", kAnyState, false, false},
    {"LOGOUT", kAnyState, false, false},
    {"STARTTLS", kNotAuthenticated, false, false},
    {"AUTHENTICATE", kNotAuthenticated, false, false},
    {"LOGIN", kNotAuthenticated, false, false},
    {"SELECT", kAuth, false, false},
    {"EXAMINE", kAuth, false, false},
    {"CREATE", kAuth, false, false},
    {"DELETE", kAuth, false, false},
    {"RENAME", kAuth, false, false},
    {"SUBSCRIBE", kAuth, false, false},
    {"UNSUBSCRIBE", kAuth, false, false},
    {"LIST", kAuth, false, false},
    {"STATUS", kAuth, false, false},
    {"APPEND", kAuth, false, false},
    {"CHECK", kSelected, false, false},
    {"CLOSE", kSelected, false, true},
    {"UNSELECT", kSelected, false, false},
    {"EXPUNGE", kSelected, false, true},
    {"UID EXPUNGE", kSelected, false, true},
    {"SEARCH", kSelected, true, false},
    {"FETCH", kSelected, true, false},
    {"STORE", kSelected, true, false},
    {"COPY", kSelected, true, false},
    {"MOVE", kSelected, true, true},
    {"IDLE", kAuth, false, false},
    {"ENABLE", kAuth, false, false},
    {"NAMESPACE", kAuth, false, false},
    {"ID", kAnyState, false, false},
};
static_assert(std::size(kInfo) == std::variant_size_v<Command::Body>);

// RFC 3501 §7.4.1: UID commands do not use sequence numbers, so EXPUNGE
// responses may be sent during them.
constexpr CommandInfo kLsubInfo = {"LSUB", kAuth, false, false};
constexpr CommandInfo kUidInfo[] = {
    {"UID SEARCH", kSelected, false, false},
    {"UID FETCH", kSelected, false, false},
    {"UID STORE", kSelected, false, false},
    {"UID COPY", kSelected, false, false},
    {"UID MOVE", kSelected, false, true},
};

}  // namespace

const CommandInfo& InfoFor(const Command& command) {
  const Command::Body& body = command.body;
  if (const auto* list = std::get_if<ListCommand>(&body); list && list->lsub) {
    return kLsubInfo;
  }
  bool uid = std::visit(
      [](const auto& c) {
        if constexpr (requires { c.uid; }) {
          return c.uid;
        } else {
          return false;
        }
      },
      body);
  if (uid) {
    if (std::holds_alternative<SearchCommand>(body)) return kUidInfo[0];
    if (std::holds_alternative<FetchCommand>(body)) return kUidInfo[1];
    if (std::holds_alternative<StoreCommand>(body)) return kUidInfo[2];
    if (std::holds_alternative<CopyCommand>(body)) return kUidInfo[3];
    return kUidInfo[4];
  }
  return kInfo[body.index()];
}

}  // namespace imap
