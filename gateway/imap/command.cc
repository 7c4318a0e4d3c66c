#include "gateway/imap/command.h"


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
    case StatusItem::kDeletedStorage: return "DELETED-STORAGE";
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
    case Kind::kSaveDate: return "SAVEDATE";
    case Kind::kPreview: return "PREVIEW";  // the modifiers are not echoed (RFC 8970 §3.1)
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

}  // namespace imap
