#include "gateway/imap/serialize.h"

#include <type_traits>

#include "gateway/imap/lexer.h"

namespace imap {
namespace {

class Writer {
 public:
  explicit Writer(LiteralForm form) : form_(form) {}

  std::string& out() { return out_; }
  Writer& Raw(std::string_view s) {
    out_ += s;
    return *this;
  }
  Writer& Sp() { return Raw(" "); }
  Writer& AString(std::string_view s) {
    AppendAString(out_, s, /*utf8=*/false, form_);
    return *this;
  }
  Writer& String(std::string_view s) {
    AppendString(out_, s, /*utf8=*/false, form_);
    return *this;
  }
  Writer& NString(const std::optional<std::string>& s) {
    if (s.has_value()) return String(*s);
    return Raw("NIL");
  }
  Writer& ListMailbox(std::string_view s) {
    bool plain = !s.empty();
    for (char c : s) plain = plain && internal::IsListChar(c);
    if (plain) return Raw(s);
    return String(s);
  }
  Writer& Flags(const std::vector<std::string>& flags) {
    AppendFlagList(out_, flags);
    return *this;
  }
  Writer& Number(uint64_t n) { return Raw(std::to_string(n)); }
  LiteralForm form() const { return form_; }

 private:
  LiteralForm form_;
  std::string out_;
};

void WriteStatusItems(Writer& w, const std::vector<StatusItem>& items) {
  w.Raw("(");
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) w.Sp();
    w.Raw(StatusItemName(items[i]));
  }
  w.Raw(")");
}

void WriteOptionList(Writer& w, const std::vector<std::string>& options) {
  w.Raw("(");
  for (size_t i = 0; i < options.size(); ++i) {
    if (i > 0) w.Sp();
    w.Raw(options[i]);
  }
  w.Raw(")");
}

void WriteKey(Writer& w, const SearchKey& key) {
  using Kind = SearchKey::Kind;
  switch (key.kind) {
    case Kind::kAnd:
      w.Raw("(");
      for (size_t i = 0; i < key.children.size(); ++i) {
        if (i > 0) w.Sp();
        WriteKey(w, key.children[i]);
      }
      w.Raw(")");
      return;
    case Kind::kSequenceSet:
      w.Raw(key.set.ToString());
      return;
    default:
      break;
  }
  w.Raw(SearchKeyName(key.kind));
  switch (key.kind) {
    case Kind::kBcc: case Kind::kBody: case Kind::kCc: case Kind::kFrom:
    case Kind::kSubject: case Kind::kText: case Kind::kTo:
      w.Sp().AString(key.text);
      break;
    case Kind::kHeader:
      w.Sp().AString(key.text).Sp().AString(key.value);
      break;
    case Kind::kKeyword: case Kind::kUnkeyword:
      w.Sp().Raw(key.text);
      break;
    case Kind::kBefore: case Kind::kOn: case Kind::kSince:
    case Kind::kSentBefore: case Kind::kSentOn: case Kind::kSentSince:
    case Kind::kSavedBefore: case Kind::kSavedOn: case Kind::kSavedSince:
      w.Sp().Raw(key.date.ToString());
      break;
    case Kind::kLarger: case Kind::kSmaller: case Kind::kOlder: case Kind::kYounger:
      w.Sp().Number(key.number);
      break;
    case Kind::kEmailId: case Kind::kThreadId:
      w.Sp().Raw(key.text);
      break;
    case Kind::kUid:
      w.Sp().Raw(key.set.ToString());
      break;
    case Kind::kModSeq:
      if (!key.text.empty() || !key.value.empty()) {
        w.Sp();
        AppendQuoted(w.out(), key.text);  // entry-name is always quoted
        w.Sp().Raw(key.value);
      }
      w.Sp().Number(key.number);
      break;
    case Kind::kNot:
      w.Sp();
      WriteKey(w, key.children.at(0));
      break;
    case Kind::kOr:
      w.Sp();
      WriteKey(w, key.children.at(0));
      w.Sp();
      WriteKey(w, key.children.at(1));
      break;
    default:
      break;
  }
}

std::string_view SortKeyName(SortCriterion::Key key) {
  switch (key) {
    case SortCriterion::Key::kArrival: return "ARRIVAL";
    case SortCriterion::Key::kCc: return "CC";
    case SortCriterion::Key::kDate: return "DATE";
    case SortCriterion::Key::kFrom: return "FROM";
    case SortCriterion::Key::kSize: return "SIZE";
    case SortCriterion::Key::kSubject: return "SUBJECT";
    case SortCriterion::Key::kTo: return "TO";
    case SortCriterion::Key::kDisplayFrom: return "DISPLAYFROM";
    case SortCriterion::Key::kDisplayTo: return "DISPLAYTO";
  }
  return "ARRIVAL";
}

void WriteCriteria(Writer& w, const SearchKey& criteria) {
  if (criteria.kind == SearchKey::Kind::kAnd) {
    for (const SearchKey& child : criteria.children) {
      w.Sp();
      WriteKey(w, child);
    }
  } else {
    w.Sp();
    WriteKey(w, criteria);
  }
}

void WriteAppendMessage(Writer& w, const AppendMessage& m) {
  w.Sp();
  if (!m.flags.empty()) w.Flags(m.flags).Sp();
  if (m.date.has_value()) w.Raw(m.date->ToQuoted()).Sp();
  if (m.binary) w.Raw("~");
  AppendLiteral(w.out(), m.data, w.form());
}

const char* UidPrefix(bool uid) { return uid ? "UID " : ""; }

struct BodyWriter {
  Writer& w;

  void operator()(const CapabilityCommand&) { w.Raw("CAPABILITY"); }
  void operator()(const NoopCommand&) { w.Raw("NOOP"); }
  void operator()(const LogoutCommand&) { w.Raw("LOGOUT"); }
  void operator()(const StartTlsCommand&) { w.Raw("STARTTLS"); }
  void operator()(const CheckCommand&) { w.Raw("CHECK"); }
  void operator()(const CloseCommand&) { w.Raw("CLOSE"); }
  void operator()(const UnselectCommand&) { w.Raw("UNSELECT"); }
  void operator()(const ExpungeCommand&) { w.Raw("EXPUNGE"); }
  void operator()(const IdleCommand&) { w.Raw("IDLE"); }
  void operator()(const NamespaceCommand&) { w.Raw("NAMESPACE"); }
  void operator()(const AuthenticateCommand& c) {
    w.Raw("AUTHENTICATE ").Raw(c.mechanism);
    if (c.initial_response.has_value()) w.Sp().Raw(*c.initial_response);
  }
  void operator()(const LoginCommand& c) {
    w.Raw("LOGIN ").AString(c.userid).Sp().AString(c.password);
  }
  void SelectParameters(bool condstore, const std::optional<QresyncParameter>& qresync) {
    if (!condstore && !qresync.has_value()) return;
    w.Raw(" (");
    if (condstore) w.Raw(qresync.has_value() ? "CONDSTORE " : "CONDSTORE");
    if (qresync.has_value()) {
      w.Raw("QRESYNC (").Number(qresync->uidvalidity).Sp().Number(qresync->modseq);
      if (qresync->known_uids.has_value()) w.Sp().Raw(qresync->known_uids->ToString());
      if (qresync->known_sequence_set.has_value()) {
        w.Raw(" (").Raw(qresync->known_sequence_set->ToString()).Sp();
        w.Raw(qresync->known_uid_set->ToString()).Raw(")");
      }
      w.Raw(")");
    }
    w.Raw(")");
  }
  void operator()(const SelectCommand& c) {
    w.Raw("SELECT ").AString(c.mailbox);
    SelectParameters(c.condstore, c.qresync);
  }
  void operator()(const ExamineCommand& c) {
    w.Raw("EXAMINE ").AString(c.mailbox);
    SelectParameters(c.condstore, c.qresync);
  }
  void operator()(const CreateCommand& c) {
    w.Raw("CREATE ").AString(c.mailbox);
    if (!c.special_use.empty()) {
      w.Raw(" (USE ").Flags(c.special_use).Raw(")");
    }
  }
  void operator()(const DeleteCommand& c) { w.Raw("DELETE ").AString(c.mailbox); }
  void operator()(const SubscribeCommand& c) { w.Raw("SUBSCRIBE ").AString(c.mailbox); }
  void operator()(const UnsubscribeCommand& c) {
    w.Raw("UNSUBSCRIBE ").AString(c.mailbox);
  }
  void operator()(const RenameCommand& c) {
    w.Raw("RENAME ").AString(c.from).Sp().AString(c.to);
  }
  void operator()(const ListCommand& c) {
    w.Raw(c.lsub ? "LSUB " : "LIST ");
    if (!c.selection_options.empty()) {
      WriteOptionList(w, c.selection_options);
      w.Sp();
    }
    w.AString(c.reference).Sp();
    if (c.patterns.size() == 1) {
      w.ListMailbox(c.patterns[0]);
    } else {
      w.Raw("(");
      for (size_t i = 0; i < c.patterns.size(); ++i) {
        if (i > 0) w.Sp();
        w.ListMailbox(c.patterns[i]);
      }
      w.Raw(")");
    }
    if (!c.return_options.empty() || !c.return_status.empty()) {
      w.Raw(" RETURN (");
      for (size_t i = 0; i < c.return_options.size(); ++i) {
        if (i > 0) w.Sp();
        w.Raw(c.return_options[i]);
      }
      if (!c.return_status.empty()) {
        if (!c.return_options.empty()) w.Sp();
        w.Raw("STATUS ");
        WriteStatusItems(w, c.return_status);
      }
      w.Raw(")");
    }
  }
  void operator()(const StatusCommand& c) {
    w.Raw("STATUS ").AString(c.mailbox).Sp();
    WriteStatusItems(w, c.items);
  }
  void operator()(const AppendCommand& c) {
    w.Raw("APPEND ").AString(c.mailbox);
    for (const AppendMessage& m : c.messages) WriteAppendMessage(w, m);
  }
  void operator()(const UidExpungeCommand& c) {
    w.Raw("UID EXPUNGE ").Raw(c.uids.ToString());
  }
  void WriteReturnOptions(const std::optional<SearchReturnOptions>& ret) {
    if (!ret.has_value()) return;
    std::vector<std::string> options;
    if (ret->min) options.push_back("MIN");
    if (ret->max) options.push_back("MAX");
    if (ret->all) options.push_back("ALL");
    if (ret->count) options.push_back("COUNT");
    if (ret->save) options.push_back("SAVE");
    if (ret->update) options.push_back("UPDATE");
    if (ret->context) options.push_back("CONTEXT");
    if (ret->partial.has_value()) {
      options.push_back("PARTIAL " + std::to_string(ret->partial->first) + ":" +
                        std::to_string(ret->partial->last));
    }
    w.Raw(" RETURN ");
    WriteOptionList(w, options);
  }
  void operator()(const CancelUpdateCommand& c) {
    w.Raw("CANCELUPDATE");
    for (const std::string& tag : c.tags) {
      w.Sp();
      AppendQuoted(w.out(), tag);
    }
  }
  void operator()(const SearchCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("SEARCH");
    WriteReturnOptions(c.return_options);
    if (c.charset.has_value()) w.Raw(" CHARSET ").AString(*c.charset);
    WriteCriteria(w, c.criteria);
  }
  void operator()(const SortCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("SORT");
    WriteReturnOptions(c.return_options);
    w.Raw(" (");
    for (size_t i = 0; i < c.program.size(); ++i) {
      if (i > 0) w.Sp();
      if (c.program[i].reverse) w.Raw("REVERSE ");
      w.Raw(SortKeyName(c.program[i].key));
    }
    w.Raw(") ").AString(c.charset);
    WriteCriteria(w, c.criteria);
  }
  void operator()(const ThreadCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("THREAD ").Raw(c.algorithm).Sp().AString(c.charset);
    WriteCriteria(w, c.criteria);
  }
  void operator()(const FetchCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("FETCH ").Raw(c.set.ToString()).Raw(" (");
    for (size_t i = 0; i < c.attributes.size(); ++i) {
      if (i > 0) w.Sp();
      w.Raw(SerializeFetchAttribute(c.attributes[i]));
    }
    w.Raw(")");
    if (c.changed_since.has_value()) {
      w.Raw(" (CHANGEDSINCE ").Number(*c.changed_since).Raw(c.vanished ? " VANISHED)" : ")");
    }
  }
  void operator()(const StoreCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("STORE ").Raw(c.set.ToString()).Sp();
    if (c.unchanged_since.has_value()) {
      w.Raw("(UNCHANGEDSINCE ").Number(*c.unchanged_since).Raw(") ");
    }
    if (c.mode == StoreCommand::Mode::kAdd) w.Raw("+");
    if (c.mode == StoreCommand::Mode::kRemove) w.Raw("-");
    w.Raw(c.silent ? "FLAGS.SILENT " : "FLAGS ").Flags(c.flags);
  }
  void operator()(const CopyCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("COPY ").Raw(c.set.ToString()).Sp().AString(c.mailbox);
  }
  void operator()(const MoveCommand& c) {
    w.Raw(UidPrefix(c.uid)).Raw("MOVE ").Raw(c.set.ToString()).Sp().AString(c.mailbox);
  }
  void operator()(const EnableCommand& c) {
    w.Raw("ENABLE");
    for (const std::string& capability : c.capabilities) w.Sp().Raw(capability);
  }
  void operator()(const CompressCommand& c) { w.Raw("COMPRESS ").Raw(c.algorithm); }
  void operator()(const GetQuotaCommand& c) { w.Raw("GETQUOTA ").AString(c.root); }
  void operator()(const GetQuotaRootCommand& c) { w.Raw("GETQUOTAROOT ").AString(c.mailbox); }
  void operator()(const GetMetadataCommand& c) {
    w.Raw("GETMETADATA ");
    if (c.max_size.has_value() || c.depth != 0) {
      w.Raw("(");
      if (c.max_size.has_value()) {
        w.Raw("MAXSIZE ").Number(*c.max_size);
        if (c.depth != 0) w.Sp();
      }
      if (c.depth != 0) w.Raw(c.depth < 0 ? "DEPTH infinity" : "DEPTH 1");
      w.Raw(") ");
    }
    w.AString(c.mailbox).Raw(" (");
    for (size_t i = 0; i < c.entries.size(); ++i) {
      if (i > 0) w.Sp();
      w.AString(c.entries[i]);
    }
    w.Raw(")");
  }
  void operator()(const SetMetadataCommand& c) {
    w.Raw("SETMETADATA ").AString(c.mailbox).Raw(" (");
    for (size_t i = 0; i < c.entries.size(); ++i) {
      if (i > 0) w.Sp();
      w.AString(c.entries[i].first).Sp().NString(c.entries[i].second);
    }
    w.Raw(")");
  }
  void operator()(const NotifyCommand& c) {
    if (c.none) {
      w.Raw("NOTIFY NONE");
      return;
    }
    w.Raw(c.status ? "NOTIFY SET STATUS" : "NOTIFY SET");
    using Filter = NotifyEventGroup::Filter;
    for (const NotifyEventGroup& group : c.groups) {
      static constexpr std::string_view kFilters[] = {
          "SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE",
          "MAILBOXES"};
      w.Raw(" (").Raw(kFilters[static_cast<int>(group.filter)]);
      if (group.filter == Filter::kSubtree || group.filter == Filter::kMailboxes) {
        w.Raw(" (");
        for (size_t i = 0; i < group.mailboxes.size(); ++i) {
          if (i > 0) w.Sp();
          w.AString(group.mailboxes[i]);
        }
        w.Raw(")");
      }
      if (group.events.empty()) {
        w.Raw(" NONE)");
        continue;
      }
      w.Raw(" (");
      for (size_t i = 0; i < group.events.size(); ++i) {
        if (i > 0) w.Sp();
        w.Raw(group.events[i]);
        if (group.events[i] == "MessageNew" && !group.message_new_attributes.empty()) {
          w.Raw(" (");
          for (size_t j = 0; j < group.message_new_attributes.size(); ++j) {
            if (j > 0) w.Sp();
            w.Raw(SerializeFetchAttribute(group.message_new_attributes[j]));
          }
          w.Raw(")");
        }
      }
      w.Raw("))");
    }
  }
  void operator()(const SetQuotaCommand& c) {
    w.Raw("SETQUOTA ").AString(c.root).Raw(" (");
    for (size_t i = 0; i < c.limits.size(); ++i) {
      if (i > 0) w.Sp();
      w.Raw(c.limits[i].first).Sp().Number(c.limits[i].second);
    }
    w.Raw(")");
  }
  void operator()(const IdCommand& c) {
    w.Raw("ID ");
    if (!c.params.has_value()) {
      w.Raw("NIL");
      return;
    }
    w.Raw("(");
    for (size_t i = 0; i < c.params->size(); ++i) {
      if (i > 0) w.Sp();
      w.String((*c.params)[i].first).Sp().NString((*c.params)[i].second);
    }
    w.Raw(")");
  }
};

}  // namespace

std::string SerializeFetchAttribute(const FetchAttribute& att) {
  std::string name = FetchResponseName(att);
  if (att.partial.has_value()) {
    // The request carries <offset.length>; FetchResponseName has only <offset>.
    name.erase(name.rfind('<'));
    name += "<" + std::to_string(att.partial->offset) + "." +
            std::to_string(att.partial->length) + ">";
  }
  if (att.peek) name.insert(name.find('['), ".PEEK");
  if (att.lazy) name += " (LAZY)";
  return name;
}

std::string SerializeSearchKey(const SearchKey& key, LiteralForm literals) {
  Writer w(literals);
  WriteKey(w, key);
  return std::move(w.out());
}

std::string Serialize(const Command& command, LiteralForm literals) {
  Writer w(literals);
  w.Raw(command.tag).Sp();
  std::visit(BodyWriter{w}, command.body);
  w.Raw("\r\n");
  return std::move(w.out());
}

}  // namespace imap
