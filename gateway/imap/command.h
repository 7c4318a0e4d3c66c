// Typed IMAP commands (RFC 3501 §6, RFC 9051 §6 and the extensions the gateway
// offers: IDLE, NAMESPACE, UNSELECT, MOVE, ID, ENABLE, CONDSTORE, ESEARCH,
// LIST-EXTENDED/LIST-STATUS, MULTIAPPEND, BINARY, SASL-IR, UIDPLUS).
//
// Every command is its own struct in the Command::Body variant. Strings are
// the decoded wire values: quoting and literals are gone, but mailbox names
// are still as sent (modified UTF-7, or UTF-8 after ENABLE UTF8=ACCEPT); the
// session decodes them with DecodeModifiedUtf7 because that depends on
// session state. Keywords that are case-insensitive on the wire (status items,
// fetch attributes, LIST options) are normalized; flags keep their spelling.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gateway/imap/date_time.h"
#include "gateway/imap/search.h"
#include "gateway/imap/sequence_set.h"

namespace imap {

struct CapabilityCommand { bool operator==(const CapabilityCommand&) const = default; };
struct NoopCommand { bool operator==(const NoopCommand&) const = default; };
struct LogoutCommand { bool operator==(const LogoutCommand&) const = default; };
struct StartTlsCommand { bool operator==(const StartTlsCommand&) const = default; };
struct CheckCommand { bool operator==(const CheckCommand&) const = default; };
struct CloseCommand { bool operator==(const CloseCommand&) const = default; };
struct UnselectCommand { bool operator==(const UnselectCommand&) const = default; };
struct ExpungeCommand { bool operator==(const ExpungeCommand&) const = default; };
struct IdleCommand { bool operator==(const IdleCommand&) const = default; };
struct NamespaceCommand { bool operator==(const NamespaceCommand&) const = default; };

// RFC 3501 §6.2.2, RFC 4959 (SASL-IR). The continuation lines are read by
// the session with Receiver::Mode::kLine.
struct AuthenticateCommand {
  std::string mechanism;  // upper-cased
  // Base64 as sent, or "=" for an empty initial response (RFC 4959 §3).
  std::optional<std::string> initial_response;
  bool operator==(const AuthenticateCommand&) const = default;
};

struct LoginCommand {
  std::string userid;
  std::string password;
  bool operator==(const LoginCommand&) const = default;
};

// The QRESYNC select parameter (RFC 7162 §3.2.5): what the client last knew of
// the mailbox. None of the sets may hold "*" (the parser refuses it).
struct QresyncParameter {
  uint32_t uidvalidity = 0;
  uint64_t modseq = 0;
  std::optional<SequenceSet> known_uids;
  // seq-match-data (§3.2.5.2): message numbers and the UIDs they had.
  std::optional<SequenceSet> known_sequence_set;
  std::optional<SequenceSet> known_uid_set;
  bool operator==(const QresyncParameter&) const = default;
};

// SELECT and EXAMINE (RFC 3501 §6.3.1-2) with the CONDSTORE select parameter
// (RFC 7162 §3.1.8) and QRESYNC's (§3.2.5).
struct SelectCommand {
  std::string mailbox;
  bool condstore = false;
  std::optional<QresyncParameter> qresync;
  bool operator==(const SelectCommand&) const = default;
};
struct ExamineCommand {
  std::string mailbox;
  bool condstore = false;
  std::optional<QresyncParameter> qresync;
  bool operator==(const ExamineCommand&) const = default;
};

struct CreateCommand {
  std::string mailbox;
  // RFC 6154 §3 CREATE-SPECIAL-USE: the attributes of "(USE (...))", as written.
  std::vector<std::string> special_use;
  bool operator==(const CreateCommand&) const = default;
};
struct DeleteCommand { std::string mailbox; bool operator==(const DeleteCommand&) const = default; };
struct SubscribeCommand { std::string mailbox; bool operator==(const SubscribeCommand&) const = default; };
struct UnsubscribeCommand { std::string mailbox; bool operator==(const UnsubscribeCommand&) const = default; };

struct RenameCommand {
  std::string from;
  std::string to;
  bool operator==(const RenameCommand&) const = default;
};

enum class StatusItem {
  kMessages, kRecent, kUidNext, kUidValidity, kUnseen, kDeleted, kSize,
  kHighestModSeq,
  kAppendLimit,  // RFC 7889 §3.2
  kMailboxId,    // RFC 8474 §4.3
  kDeletedStorage,  // RFC 9208 §4.2: KiB an EXPUNGE would free
};
std::string_view StatusItemName(StatusItem item);

// LIST (RFC 3501 §6.3.8, extended by RFC 5258 and RFC 5819) and LSUB.
struct ListCommand {
  bool lsub = false;
  // RFC 5258 selection options, upper-cased (e.g. "SUBSCRIBED", "SPECIAL-USE").
  std::vector<std::string> selection_options;
  std::string reference;
  // One pattern in the basic form; RFC 5258 allows a parenthesised list.
  std::vector<std::string> patterns;
  // RFC 5258 return options other than STATUS, upper-cased.
  std::vector<std::string> return_options;
  // RFC 5819 RETURN (STATUS (...)); empty if not requested.
  std::vector<StatusItem> return_status;
  bool operator==(const ListCommand&) const = default;
};

struct StatusCommand {
  std::string mailbox;
  std::vector<StatusItem> items;
  bool operator==(const StatusCommand&) const = default;
};

// One message of APPEND (RFC 3501 §6.3.11, RFC 3502 MULTIAPPEND).
struct AppendMessage {
  std::vector<std::string> flags;
  std::optional<DateTime> date;
  std::string data;
  bool binary = false;  // sent as literal8 (RFC 3516)
  bool operator==(const AppendMessage&) const = default;
};

// Produced by ParseCommand() on a complete APPEND. The Receiver never produces
// it: it streams APPEND as AppendMessageBegin/AppendChunk/AppendEnd events.
struct AppendCommand {
  std::string mailbox;
  std::vector<AppendMessage> messages;
  bool operator==(const AppendCommand&) const = default;
};

// UID EXPUNGE (RFC 4315 §2.1).
struct UidExpungeCommand {
  SequenceSet uids;
  bool operator==(const UidExpungeCommand&) const = default;
};

// RFC 4731 ESEARCH return options. Present (even empty) means an ESEARCH
// response is wanted; an empty set means ALL (RFC 4731 §3.1).
struct SearchReturnOptions {
  bool min = false;
  bool max = false;
  bool all = false;
  bool count = false;
  bool save = false;  // RFC 5182; parsed so the session can refuse it clearly
  // RFC 5267 §4.3: keep the result live (CONTEXT=SEARCH / CONTEXT=SORT).
  bool update = false;
  // RFC 5267 §4.2: a hint that the client may come back with PARTIAL; accepted
  // and needs nothing.
  bool context = false;
  // RFC 5267 §4.4: PARTIAL first:last, 1-based positions in the result, first
  // <= last (the parser orders them).
  struct Range {
    uint32_t first = 0;
    uint32_t last = 0;
    bool operator==(const Range&) const = default;
  };
  std::optional<Range> partial;
  bool operator==(const SearchReturnOptions&) const = default;
};

struct SearchCommand {
  bool uid = false;
  std::optional<SearchReturnOptions> return_options;
  std::optional<std::string> charset;  // as sent
  SearchKey criteria;                  // kind kAnd, one child per top-level key
  bool operator==(const SearchCommand&) const = default;
};

// CANCELUPDATE (RFC 5267 §4.3): stops the live results of the commands tagged so.
struct CancelUpdateCommand {
  std::vector<std::string> tags;  // at least one
  bool operator==(const CancelUpdateCommand&) const = default;
};

// SORT and UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO).
struct SortCriterion {
  enum class Key { kArrival, kCc, kDate, kFrom, kSize, kSubject, kTo, kDisplayFrom, kDisplayTo };
  Key key = Key::kArrival;
  bool reverse = false;
  bool operator==(const SortCriterion&) const = default;
};

struct SortCommand {
  bool uid = false;
  // RFC 5267 §3 (ESORT): results as ESEARCH, in sort order.
  std::optional<SearchReturnOptions> return_options;
  std::vector<SortCriterion> program;  // at least one
  std::string charset;                 // as sent
  SearchKey criteria;                  // as SearchCommand's
  bool operator==(const SortCommand&) const = default;
};

// THREAD and UID THREAD (RFC 5256 §4).
struct ThreadCommand {
  bool uid = false;
  std::string algorithm;  // upper-cased, e.g. "REFERENCES"
  std::string charset;    // as sent
  SearchKey criteria;
  bool operator==(const ThreadCommand&) const = default;
};

// section-spec of BODY[...] / BINARY[...] (RFC 3501 §9, RFC 3516).
struct Section {
  enum class Text { kNone, kHeader, kHeaderFields, kHeaderFieldsNot, kText, kMime };
  std::vector<uint32_t> part;  // e.g. {1, 2} for "1.2"; empty for the message
  Text text = Text::kNone;
  std::vector<std::string> fields;  // HEADER.FIELDS[.NOT] names, as sent
  bool operator==(const Section&) const = default;
};

struct FetchAttribute {
  enum class Kind {
    kEnvelope, kFlags, kInternalDate, kRfc822, kRfc822Header, kRfc822Size,
    kRfc822Text, kBody, kBodyStructure, kUid, kModSeq,
    kEmailId, kThreadId,  // RFC 8474 §5
    kSaveDate,            // RFC 8514 §3
    kPreview,             // RFC 8970 §3.1, with `lazy`
    kBodySection,  // BODY[...] / BODY.PEEK[...]
    kBinary,       // BINARY[...] / BINARY.PEEK[...]
    kBinarySize,   // BINARY.SIZE[...]
  };
  struct Partial {
    uint32_t offset = 0;
    uint32_t length = 0;  // nz-number
    bool operator==(const Partial&) const = default;
  };

  Kind kind = Kind::kFlags;
  Section section;                 // kBodySection, kBinary, kBinarySize
  bool peek = false;               // .PEEK: do not set \Seen
  bool lazy = false;               // PREVIEW (LAZY) (RFC 8970 §3.1)
  std::optional<Partial> partial;  // <offset.length>
  bool operator==(const FetchAttribute&) const = default;
};

// The attribute name as it appears in a FETCH response, e.g.
// "BODY[1.HEADER.FIELDS (From To)]<0>" (RFC 3501 §7.4.2: the origin octet
// only, and never .PEEK).
std::string FetchResponseName(const FetchAttribute& attribute);

struct FetchCommand {
  bool uid = false;
  SequenceSet set;
  // ALL, FAST and FULL are expanded here (RFC 3501 §6.4.5).
  std::vector<FetchAttribute> attributes;
  std::optional<uint64_t> changed_since;  // RFC 7162 CHANGEDSINCE
  bool vanished = false;                  // RFC 7162 §3.2.6 VANISHED modifier
  bool operator==(const FetchCommand&) const = default;
};

struct StoreCommand {
  enum class Mode { kReplace, kAdd, kRemove };  // FLAGS, +FLAGS, -FLAGS
  bool uid = false;
  SequenceSet set;
  std::optional<uint64_t> unchanged_since;  // RFC 7162 UNCHANGEDSINCE
  Mode mode = Mode::kReplace;
  bool silent = false;
  std::vector<std::string> flags;
  bool operator==(const StoreCommand&) const = default;
};

struct CopyCommand {
  bool uid = false;
  SequenceSet set;
  std::string mailbox;
  bool operator==(const CopyCommand&) const = default;
};

// RFC 6851.
struct MoveCommand {
  bool uid = false;
  SequenceSet set;
  std::string mailbox;
  bool operator==(const MoveCommand&) const = default;
};

// RFC 5161; capability names upper-cased.
struct EnableCommand {
  std::vector<std::string> capabilities;
  bool operator==(const EnableCommand&) const = default;
};

// RFC 4978 §3: COMPRESS SP algorithm. The name arrives upper-cased; the session
// answers an algorithm other than DEFLATE (§5).
struct CompressCommand {
  std::string algorithm;
  bool operator==(const CompressCommand&) const = default;
};

// RFC 9208 §4.1.1: GETQUOTA quota-root-name.
struct GetQuotaCommand {
  std::string root;
  bool operator==(const GetQuotaCommand&) const = default;
};

// RFC 9208 §4.1.2: GETQUOTAROOT mailbox.
struct GetQuotaRootCommand {
  std::string mailbox;
  bool operator==(const GetQuotaRootCommand&) const = default;
};

// RFC 9208 §4.1.3: SETQUOTA quota-root-name "(" [resource limit *(SP ...)] ")".
// Resource names arrive upper-cased. Limits are set by the operator, not over
// IMAP (no QUOTASET); it is parsed so that the answer can say so.
struct SetQuotaCommand {
  std::string root;
  std::vector<std::pair<std::string, uint64_t>> limits;
  bool operator==(const SetQuotaCommand&) const = default;
};

// RFC 5464 §4.2: GETMETADATA [(options)] mailbox entries. An empty mailbox
// names the server's entries.
struct GetMetadataCommand {
  std::optional<uint64_t> max_size;  // MAXSIZE
  int depth = 0;                     // DEPTH 0, 1 or infinity (-1)
  std::string mailbox;
  std::vector<std::string> entries;
  bool operator==(const GetMetadataCommand&) const = default;
};

// RFC 5464 §4.3: SETMETADATA mailbox (entry value ...); a NIL value removes.
struct SetMetadataCommand {
  std::string mailbox;
  std::vector<std::pair<std::string, std::optional<std::string>>> entries;
  bool operator==(const SetMetadataCommand&) const = default;
};

// RFC 5465 §3.1, §8: NOTIFY NONE, or NOTIFY SET [STATUS] event-group
// *(SP event-group). The grammar is checked here; which events the server
// offers is the session's to say (NO [BADEVENT], §5).
struct NotifyEventGroup {
  enum class Filter {
    kSelected, kSelectedDelayed, kInboxes, kPersonal, kSubscribed, kSubtree, kMailboxes
  };
  Filter filter = Filter::kSelected;
  std::vector<std::string> mailboxes;  // SUBTREE and MAILBOXES, as sent
  // Event names in RFC 5465's spelling for the known ones, upper-cased for
  // others (event-ext); empty for NONE.
  std::vector<std::string> events;
  std::vector<FetchAttribute> message_new_attributes;  // MessageNew (fetch-att ...)
  bool operator==(const NotifyEventGroup&) const = default;
};

struct NotifyCommand {
  bool none = false;    // NOTIFY NONE
  bool status = false;  // SET STATUS: the initial STATUS of each mailbox
  std::vector<NotifyEventGroup> groups;
  bool operator==(const NotifyCommand&) const = default;
};

// RFC 2971: NIL or a list of field/value pairs (value may be NIL).
struct IdCommand {
  using Params = std::vector<std::pair<std::string, std::optional<std::string>>>;
  std::optional<Params> params;
  bool operator==(const IdCommand&) const = default;
};


// States of RFC 3501 §3, as a mask.
enum StateMask : uint8_t {
  kNotAuthenticated = 1,
  kAuthenticated = 2,
  kSelected = 4,
  kAnyState = kNotAuthenticated | kAuthenticated | kSelected,
};

namespace internal {
class Lexer;
}  // namespace internal

using CommandBody = std::variant<
    CapabilityCommand, NoopCommand, LogoutCommand, StartTlsCommand, AuthenticateCommand,
    LoginCommand, SelectCommand, ExamineCommand, CreateCommand, DeleteCommand, RenameCommand,
    SubscribeCommand, UnsubscribeCommand, ListCommand, StatusCommand, AppendCommand,
    CheckCommand, CloseCommand, UnselectCommand, ExpungeCommand, UidExpungeCommand,
    SearchCommand, FetchCommand, StoreCommand, CopyCommand, MoveCommand, IdleCommand,
    EnableCommand, NamespaceCommand, IdCommand, CompressCommand, GetQuotaCommand,
    GetQuotaRootCommand, SetQuotaCommand, GetMetadataCommand, SetMetadataCommand, SortCommand,
    ThreadCommand, NotifyCommand, CancelUpdateCommand>;

// One command the gateway accepts, declared once, in the table of parser.cc
// (FindCommand): its name on the wire, its grammar, and what the session needs
// to know to run it. The handler is bound by the body type the grammar fills
// (Session::Dispatch visits it; a body type without a handler does not compile).
struct CommandSpec {
  std::string_view name;  // upper case, e.g. "FETCH", "UID FETCH", "LSUB"
  // Parses the arguments after the name (and its SP, if any) into the body.
  bool (*parse)(internal::Lexer& lex, CommandBody* body);
  uint8_t allowed_states;
  // Addresses messages by sequence number, so RFC 3501 §7.4.1 forbids sending
  // EXPUNGE responses while it runs.
  bool uses_sequence_numbers;
  // May remove messages from the selected mailbox; the session logs one that
  // removes messages without being declared so (Session::ReportOwnExpunge).
  bool may_expunge;
  // Takes over the input itself (STARTTLS, AUTHENTICATE, IDLE, COMPRESS) or ends
  // it (LOGOUT): pipelined commands are not read ahead while it runs.
  bool owns_input;
  // Its handler calls the mailbox service. One that does not is answered by the
  // gateway alone, also while the service is unreachable; the session checks
  // the declaration after each command (Session::EndCommand).
  bool needs_store;
};

struct Command {
  using Body = CommandBody;

  std::string tag;
  Body body;
  // The table entry the command was parsed by; null only for commands built
  // by hand (tests).
  const CommandSpec* spec = nullptr;

  bool operator==(const Command&) const = default;
};

}  // namespace imap
