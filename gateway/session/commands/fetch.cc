// FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 3516 BINARY; RFC 7162
// CHANGEDSINCE and MODSEQ; RFC 8514 SAVEDATE; RFC 8970 PREVIEW).
//
// One FetchRequest goes to the store, which streams per message a
// FetchedMetadata followed by the chunks of each requested section. The
// response items are written in the order the client asked for them; section
// data is passed through chunk by chunk as the literal's octets and flushed
// every 256 KiB, so a 50 MB body never sits in the gateway's memory.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/imap/command.h"
#include "gateway/imap/date_time.h"
#include "gateway/imap/response.h"
#include "gateway/ops/metrics.h"
#include "gateway/session/commands/commands.h"
#include "gateway/session/commands/search_mapping.h"
#include "gateway/session/fetch_cache.h"
#include "gateway/session/command_context.h"
#include "proto/mailbox/v1/mailbox.pb.h"
#include "storage-client/mailbox_store.h"

namespace gateway::commands {
namespace {

namespace v1 = mailbox::v1;
using Kind = imap::FetchAttribute::Kind;

// Queued response bytes after which the handler writes them out
// (commands.h: "every ~256 KiB of FETCH data").
constexpr size_t kFlushEvery = 256 * 1024;

// One item of the FETCH response, in the order the client asked for it.
struct PlannedItem {
  Kind kind = Kind::kFlags;
  std::string name;        // as it appears in the response, e.g. "BODY[TEXT]<0>"
  int section = -1;        // index into FetchRequest.sections, for message data
  bool literal8 = false;   // BINARY[...]: may carry NUL, so sent as literal8
  bool size_only = false;  // BINARY.SIZE[...]: a number, not data
  bool sets_seen = false;  // not .PEEK: reading it sets \Seen (RFC 3501 §6.4.5)
};

bool IsSectionItem(const PlannedItem& item) { return item.section >= 0; }

// What the command asks for, as a store request and a response layout.
struct FetchPlan {
  v1::FetchRequest request;
  std::vector<PlannedItem> items;
  bool has_uid = false;
  bool has_flags = false;
  bool has_modseq = false;
};

v1::Section ToProtoSection(const imap::FetchAttribute& attribute) {
  v1::Section section;
  for (uint32_t part : attribute.section.part) {
    section.add_part(part);
  }
  section.set_text(ToProtoSectionText(attribute.section.text));
  for (const std::string& field : attribute.section.fields) {
    section.add_fields(field);
  }
  section.set_binary(attribute.kind == Kind::kBinary || attribute.kind == Kind::kBinarySize);
  section.set_size_only(attribute.kind == Kind::kBinarySize);
  if (attribute.partial.has_value()) {
    section.set_has_partial(true);
    section.set_partial_offset(attribute.partial->offset);
    section.set_partial_count(attribute.partial->length);
  }
  return section;
}

// The RFC822 forms are old names for BODY sections (RFC 3501 §6.4.5):
// RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER], RFC822.TEXT = BODY[TEXT].
// The response keeps the old name.
imap::FetchAttribute AsBodySection(const imap::FetchAttribute& attribute) {
  imap::FetchAttribute body;
  body.kind = Kind::kBodySection;
  switch (attribute.kind) {
    case Kind::kRfc822Header:
      body.section.text = imap::Section::Text::kHeader;
      body.peek = true;
      break;
    case Kind::kRfc822Text:
      body.section.text = imap::Section::Text::kText;
      break;
    default:
      break;
  }
  return body;
}

// Builds the store request and the response layout. Items the client names
// twice are answered once. `read_only` (EXAMINE) keeps \Seen as it is.
FetchPlan MakePlan(const imap::FetchCommand& command, bool read_only) {
  FetchPlan plan;
  v1::FetchRequest& request = plan.request;
  std::set<std::string> names;
  bool sets_seen = false;
  bool preview_now = false;  // some PREVIEW without LAZY
  for (const imap::FetchAttribute& attribute : command.attributes) {
    PlannedItem item;
    item.kind = attribute.kind;
    item.name = imap::FetchResponseName(attribute);
    const bool is_new = names.insert(item.name).second;
    switch (attribute.kind) {
      case Kind::kUid:
        plan.has_uid = true;
        break;
      case Kind::kFlags:
        plan.has_flags = true;
        request.set_flags(true);
        // The MODSEQ says how current the flags are (SelectedMailbox::flags);
        // it is printed only if asked for.
        request.set_modseq(true);
        break;
      case Kind::kInternalDate:
        request.set_internal_date(true);
        break;
      case Kind::kRfc822Size:
        request.set_size(true);
        break;
      case Kind::kEnvelope:
        request.set_envelope(true);
        break;
      case Kind::kBody:
        request.set_body(true);
        break;
      case Kind::kBodyStructure:
        request.set_bodystructure(true);
        break;
      case Kind::kModSeq:
        plan.has_modseq = true;
        request.set_modseq(true);
        break;
      case Kind::kEmailId:
        request.set_email_id(true);
        break;
      case Kind::kThreadId:
        break;  // always NIL: no threads are computed (RFC 8474 §5.2 allows it)
      case Kind::kSaveDate:
        request.set_save_date(true);
        break;
      case Kind::kPreview:
        // PREVIEW and PREVIEW (LAZY) are one response item; without LAZY
        // anywhere, the preview is made if it is not stored yet.
        request.set_preview(true);
        preview_now = preview_now || !attribute.lazy;
        break;
      case Kind::kRfc822:
      case Kind::kRfc822Header:
      case Kind::kRfc822Text:
      case Kind::kBodySection:
      case Kind::kBinary:
      case Kind::kBinarySize: {
        const bool legacy = attribute.kind == Kind::kRfc822 ||
                            attribute.kind == Kind::kRfc822Header ||
                            attribute.kind == Kind::kRfc822Text;
        const imap::FetchAttribute& spec = legacy ? AsBodySection(attribute) : attribute;
        // RFC 3501 §6.4.5: reading message data sets \Seen unless .PEEK;
        // RFC 3516 §4.2: BINARY.SIZE does not.
        if (!spec.peek && attribute.kind != Kind::kBinarySize) {
          sets_seen = true;
          item.sets_seen = true;
        }
        if (is_new) {
          item.section = request.sections_size();
          item.literal8 = attribute.kind == Kind::kBinary;
          item.size_only = attribute.kind == Kind::kBinarySize;
          *request.add_sections() = ToProtoSection(spec);
        }
        break;
      }
    }
    if (is_new) {
      plan.items.push_back(std::move(item));
    }
  }
  // RFC 3501 §6.4.8: UID FETCH responses always carry the UID; put it first,
  // where clients look for it.
  if (command.uid && !plan.has_uid) {
    plan.has_uid = true;
    PlannedItem uid;
    uid.kind = Kind::kUid;
    uid.name = "UID";
    plan.items.insert(plan.items.begin(), std::move(uid));
  }
  // RFC 7162 §3.1.4.1: CHANGEDSINCE implies the MODSEQ item.
  if (command.changed_since.has_value()) {
    request.set_changed_since(*command.changed_since);
    if (!plan.has_modseq) {
      plan.has_modseq = true;
      request.set_modseq(true);
      PlannedItem modseq;
      modseq.kind = Kind::kModSeq;
      modseq.name = "MODSEQ";
      plan.items.push_back(std::move(modseq));
    }
  }
  request.set_mark_seen(sets_seen && !read_only);
  request.set_preview_lazy(request.preview() && !preview_now);
  // A message expunged elsewhere stays fetchable until this session has reported
  // the EXPUNGE (RFC 3501 §7.4.1); the service keeps such messages for a while.
  request.set_include_expunged(true);
  return plan;
}

// Turns the store's stream into FETCH responses, one message at a time.
// Synchronous: the handler feeds it items and does the I/O.
class FetchResponseWriter {
 public:
  FetchResponseWriter(CommandContext& session, SelectedMailbox& mailbox, const FetchPlan& plan,
                      bool condstore)
      : session_(session), mailbox_(mailbox), plan_(plan), condstore_(condstore) {}

  // Takes the next item of the stream. An error means the stream does not
  // follow the contract (a store bug); the caller stops reading.
  absl::Status Accept(const v1::FetchResponse& item) {
    if (item.has_metadata()) {
      StartMessage(item.metadata());
      return absl::OkStatus();
    }
    if (item.has_chunk()) {
      return TakeChunk(item.chunk());
    }
    return absl::OkStatus();  // an item kind newer than this gateway: ignore
  }

  // Closes the open response, if any. Must not be called inside a literal.
  void FinishMessage() {
    if (!builder_.has_value()) {
      return;
    }
    // \Seen was set by this FETCH only for sections that were then refused
    // for NUL: the client read nothing, so the flag is taken back (Fetch()).
    if (metadata_.seen_changed() && refused_seen_ && !delivered_seen_) {
      seen_reverts_.emplace_back(metadata_.uid(), metadata_.modseq());
    }
    // Items still due, e.g. after a section the store never sent (NIL keeps
    // the response well-formed).
    while (next_ < plan_.items.size()) {
      const PlannedItem& item = plan_.items[next_++];
      if (IsSectionItem(item)) {
        builder_->Section(item.name, std::nullopt);
      } else {
        AddItem(item);
      }
    }
    // RFC 3501 §6.4.5: when \Seen was set just now, the new flags are sent;
    // RFC 7162 §3.2.4 (CONDSTORE) adds UID and MODSEQ to such responses.
    if (metadata_.seen_changed()) {
      if (!plan_.has_flags) {
        builder_->Flags(Flags());
      }
      if (condstore_ && !plan_.has_modseq) {
        builder_->ModSeq(metadata_.modseq());
      }
    }
    Send(builder_->Finish());
    builder_.reset();
  }

  // True between the announcement of a literal and its last octet: nothing
  // but the literal's data may be written then.
  bool in_literal() const { return literal_remaining_.has_value(); }
  bool unknown_cte() const { return unknown_cte_; }
  // A BODY[]/RFC822 section held NUL octets, which a literal cannot carry.
  bool nul_refused() const { return nul_refused_; }
  // (UID, MODSEQ of the \Seen change) of messages whose \Seen this FETCH set
  // although every section that would set it was refused for NUL.
  const std::vector<std::pair<uint32_t, uint64_t>>& seen_reverts() const {
    return seen_reverts_;
  }
  size_t unflushed() const { return unflushed_; }
  void Flushed() { unflushed_ = 0; }
  uint64_t literal_remaining() const { return literal_remaining_.value_or(0); }

 private:
  void StartMessage(const v1::FetchedMetadata& metadata) {
    FinishMessage();
    metadata_ = metadata;
    next_ = 0;
    dropping_ = false;
    refused_seen_ = false;
    delivered_seen_ = false;
    if (metadata.seen_changed() && metadata.modseq() != 0) {
      // This session set \Seen: the responses below report it, so the feed
      // event of that change must not be reported again.
      mailbox_.own_modseqs.insert(metadata.modseq());
    }
    std::optional<uint32_t> seq = mailbox_.map.SeqOf(metadata.uid());
    if (!seq.has_value()) {
      // Added after the view was built and not announced by EXISTS yet: the
      // client cannot know its sequence number, so it is not reported.
      skipping_ = true;
      return;
    }
    skipping_ = false;
    if (plan_.has_flags || metadata.seen_changed()) {
      // Before this message's FETCH response begins: FLAGS if it shows a keyword
      // the client was not told of.
      session_.AnnounceKeywords(metadata.flags());
    }
    builder_.emplace(*seq);
    // RFC 7162 §3.2.4: responses of a FETCH that set \Seen carry the UID once
    // CONDSTORE is enabled.
    if (metadata.seen_changed() && condstore_ && !plan_.has_uid) {
      builder_->Uid(metadata.uid());
    }
    AddItemsUpToSection();
  }

  absl::Status TakeChunk(const v1::SectionChunk& chunk) {
    if (dropping_) {
      // The rest of a section answered without its data (NIL or a size):
      // the store still streams all its chunks, up to the last one.
      if (chunk.uid() != metadata_.uid() || chunk.section_index() != dropped_section_) {
        return absl::InternalError("FETCH: the store interrupted a section with another one");
      }
      dropping_ = !chunk.last();
      return absl::OkStatus();
    }
    if (skipping_ || !builder_.has_value() || chunk.uid() != metadata_.uid()) {
      if (in_literal()) {
        return absl::InternalError("FETCH: the store interrupted a section with another one");
      }
      return absl::OkStatus();  // belongs to a message that is not reported
    }
    if (!in_literal()) {
      if (next_ >= plan_.items.size() ||
          static_cast<uint32_t>(plan_.items[next_].section) != chunk.section_index()) {
        return absl::InternalError(
            absl::StrCat("FETCH: the store sent section ", chunk.section_index(),
                         " out of order"));
      }
      const PlannedItem& item = plan_.items[next_];
      if (chunk.error_unknown_cte()) {
        // RFC 3516 §4.3: the data is NIL and the command ends NO [UNKNOWN-CTE].
        builder_->Section(item.name, std::nullopt);
        unknown_cte_ = true;
        return SkipSection(chunk);
      }
      if (item.size_only) {
        builder_->Raw(item.name, std::to_string(chunk.total_size()));
        return SkipSection(chunk);
      }
      if (!item.literal8 && chunk.data().find('\0') != std::string::npos) {
        // RFC 3501 §4.3: a literal may not contain NUL, and RFC 3516 §4.3
        // keeps literal8 for BINARY[] responses. Message data with NUL (it can
        // only come from a literal8 APPEND, RFC 3516 §4.1) is refused for
        // BODY[]/RFC822: the item is NIL and the command ends NO
        // [UNKNOWN-CTE], telling the client to ask with BINARY[] instead.
        builder_->Section(item.name, std::nullopt);
        nul_refused_ = true;
        refused_seen_ = refused_seen_ || item.sets_seen;
        return SkipSection(chunk);
      }
      // RFC 3516 §4.3: BINARY[] content without NUL should be an ordinary
      // literal; that is known only when the whole section is in this chunk
      // (a later chunk could still hold NUL after the size was sent).
      const bool literal8 = item.literal8 && !(chunk.last() &&
                                               chunk.data().size() == chunk.total_size() &&
                                               chunk.data().find('\0') == std::string::npos);
      Send(builder_->StreamSection(item.name, chunk.total_size(), literal8));
      delivered_seen_ = delivered_seen_ || item.sets_seen;
      literal_remaining_ = chunk.total_size();
      literal8_ = literal8;
    }
    // The literal announced total_size octets; anything beyond would corrupt
    // the stream, so it is dropped (the store pads short sections itself).
    const std::string& data = chunk.data();
    const size_t take = static_cast<size_t>(std::min<uint64_t>(data.size(), *literal_remaining_));
    std::string_view piece = std::string_view(data).substr(0, take);
    if (!literal8_ && piece.find('\0') != std::string_view::npos) {
      // A NUL after the first chunk: the literal's size is already on the
      // wire, so the octets cannot be withheld. Each NUL is sent as 0x80,
      // which keeps the response well-formed (RFC 3501 §4.3), and the command
      // ends NO [UNKNOWN-CTE] so the client knows the data is not exact.
      std::string cleaned(piece);
      std::replace(cleaned.begin(), cleaned.end(), '\0', '\x80');
      Send(cleaned);
      nul_refused_ = true;
    } else {
      Send(piece);
    }
    *literal_remaining_ -= take;
    if (!chunk.last()) {
      return absl::OkStatus();
    }
    if (*literal_remaining_ != 0) {
      return absl::InternalError("FETCH: the store ended a section short of its size");
    }
    literal_remaining_.reset();
    return NextItem();
  }

  // The current section item is answered without its data: its remaining
  // chunks (a section over 256 KiB comes in several) are dropped as they come.
  absl::Status SkipSection(const v1::SectionChunk& chunk) {
    dropping_ = !chunk.last();
    dropped_section_ = chunk.section_index();
    return NextItem();
  }

  // Moves past the current section item and adds what follows it.
  absl::Status NextItem() {
    ++next_;
    AddItemsUpToSection();
    return absl::OkStatus();
  }

  // Adds metadata items until the next section item (which waits for its
  // chunks) or the end of the list.
  void AddItemsUpToSection() {
    while (next_ < plan_.items.size() && !IsSectionItem(plan_.items[next_])) {
      AddItem(plan_.items[next_++]);
    }
  }

  void AddItem(const PlannedItem& item) {
    switch (item.kind) {
      case Kind::kUid:
        builder_->Uid(metadata_.uid());
        break;
      case Kind::kFlags:
        builder_->Flags(Flags());
        break;
      case Kind::kInternalDate:
        builder_->InternalDate(imap::DateTime::FromUnixSeconds(
            metadata_.internal_date_unix(), metadata_.internal_date_tz_minutes()));
        break;
      case Kind::kRfc822Size:
        builder_->Rfc822Size(metadata_.size());
        break;
      case Kind::kEnvelope:
        builder_->Raw(item.name, metadata_.envelope());
        break;
      case Kind::kBody:
        builder_->Raw(item.name, metadata_.body());
        break;
      case Kind::kBodyStructure:
        builder_->Raw(item.name, metadata_.bodystructure());
        break;
      case Kind::kModSeq:
        builder_->ModSeq(metadata_.modseq());
        break;
      case Kind::kEmailId:
        builder_->Raw(item.name, absl::StrCat("(", metadata_.email_id(), ")"));
        break;
      case Kind::kThreadId:
        builder_->Raw(item.name, "NIL");
        break;
      case Kind::kSaveDate:
        // RFC 8514 §3: NIL where the store does not know it.
        builder_->Raw(item.name, metadata_.has_save_date()
                                     ? imap::DateTime::FromUnixSeconds(
                                           metadata_.save_date_unix(), 0)
                                           .ToQuoted()
                                     : std::string("NIL"));
        break;
      case Kind::kPreview: {
        // RFC 8970 §3.1: nstring; NIL only for LAZY and a preview not made yet.
        // UTF-8 text goes as a literal unless UTF8=ACCEPT allows it quoted.
        std::string value;
        imap::AppendNString(value,
                            metadata_.has_preview()
                                ? std::optional<std::string>(metadata_.preview())
                                : std::nullopt,
                            session_.utf8_accept());
        builder_->Raw(item.name, value);
        break;
      }
      default:
        break;  // section items are handled by TakeChunk
    }
  }

  // The stored flags plus \Recent, which only this session knows (RFC 3501 §2.3.2).
  std::vector<std::string> Flags() const {
    std::vector<std::string> flags(metadata_.flags().begin(), metadata_.flags().end());
    if (mailbox_.recent.count(metadata_.uid()) > 0) {
      flags.push_back("\\Recent");
    }
    return flags;
  }

  void Send(std::string_view bytes) {
    unflushed_ += bytes.size();
    session_.Send(bytes);
  }

  CommandContext& session_;
  SelectedMailbox& mailbox_;
  const FetchPlan& plan_;
  const bool condstore_;

  v1::FetchedMetadata metadata_;                // of the current message
  std::optional<imap::FetchResponseBuilder> builder_;  // open response, if reported
  bool skipping_ = false;                       // current message is not reported
  size_t next_ = 0;                             // next item of plan_.items to add
  std::optional<uint64_t> literal_remaining_;   // octets owed to the open literal
  bool literal8_ = false;                       // the open literal is a literal8
  bool dropping_ = false;                       // dropping the chunks of a section
  uint32_t dropped_section_ = 0;                //   with this index (SkipSection)
  bool refused_seen_ = false;    // current message: a \Seen-setting section was refused
  bool delivered_seen_ = false;  // current message: a \Seen-setting section was sent
  std::vector<std::pair<uint32_t, uint64_t>> seen_reverts_;
  bool unknown_cte_ = false;
  bool nul_refused_ = false;
  size_t unflushed_ = 0;
};

// Ends the connection when a section literal cannot be completed: its length
// is already on the wire, so the client would take whatever comes next (even
// a tagged response) as message data and then wait for the rest forever.
// Closing is the only way to keep corrupt data out of the client's cache.
//
awaitable<void> AbandonLiteral(CommandContext& session, uint64_t /*remaining*/, std::string reason) {
  session.Abort(reason);
  co_return;
}

// Clears \Seen again on messages where this FETCH set it only for sections it
// then refused (NUL in BODY[]/RFC822): RFC 3501 §6.4.5 ties \Seen to the data
// being read, and none was. UNCHANGEDSINCE the MODSEQ of that change (RFC 7162
// §3.1.3) leaves the flag alone if anyone changed the message since, e.g.
// another session that really read it. The new flags are reported like a STORE's.
awaitable<void> RevertSeen(CommandContext& session, SelectedMailbox& mailbox,
                           const std::vector<std::pair<uint32_t, uint64_t>>& reverts,
                           bool condstore) {
  for (const auto& [uid, modseq] : reverts) {
    v1::StoreRequest request;
    request.set_mailbox_id(mailbox.mailbox_id);
    request.set_uidvalidity(mailbox.uidvalidity);
    auto* range = request.mutable_uids()->add_ranges();
    range->set_first(uid);
    range->set_last(uid);
    request.set_mode(v1::StoreRequest::REMOVE);
    request.add_flags("\\Seen");
    request.set_has_unchanged_since(true);
    request.set_unchanged_since(modseq);
    absl::StatusOr<v1::StoreResponse> response =
        co_await session.store().Store(request);
    if (!response.ok()) {
      continue;  // the flag stays set; the FETCH itself is still answered
    }
    for (const v1::MessageFlags& message : response->changed()) {
      if (message.modseq() != 0) {
        mailbox.own_modseqs.insert(message.modseq());
      }
      mailbox.LearnFlags(message.uid(), message.flags(), message.modseq(),
                         session.options().max_known_flags);
      std::optional<uint32_t> seq = mailbox.map.SeqOf(message.uid());
      if (!seq.has_value()) {
        continue;
      }
      std::vector<std::string> flags(message.flags().begin(), message.flags().end());
      session.AnnounceKeywords(flags);
      if (mailbox.recent.count(message.uid()) > 0) {
        flags.push_back("\\Recent");
      }
      imap::FetchResponseBuilder fetch(*seq);
      fetch.Flags(flags);
      if (condstore) {
        fetch.Uid(message.uid()).ModSeq(message.modseq());
      }
      session.Send(fetch.Finish());
    }
  }
}


// The cache key of each requested section (fetch_cache.h).
std::vector<std::string> SectionKeys(const v1::FetchRequest& request) {
  std::vector<std::string> keys;
  keys.reserve(request.sections_size());
  for (const v1::Section& section : request.sections()) {
    keys.push_back(section.SerializeAsString());
  }
  return keys;
}

// True if `cached` (and the session's flags `known`) answer every item of
// `request` for one message.
bool Answers(const v1::FetchRequest& request, const std::vector<std::string>& section_keys,
             const CachedMessage* cached, const SelectedMailbox::KnownFlags* known) {
  // EMAILID, SAVEDATE and PREVIEW are not cached: always a miss.
  if (cached == nullptr || ((request.flags() || request.modseq()) && known == nullptr) ||
      request.email_id() || request.save_date() || request.preview()) {
    return false;
  }
  if ((request.internal_date() && !cached->has_internal_date) ||
      (request.size() && !cached->has_size) || (request.envelope() && !cached->has_envelope) ||
      (request.body() && !cached->has_body) ||
      (request.bodystructure() && !cached->has_bodystructure)) {
    return false;
  }
  for (const std::string& key : section_keys) {
    if (cached->FindSection(key) == nullptr) {
      return false;
    }
  }
  return true;
}

// The items the service would have streamed for one message, made from the
// cache: its metadata, then one complete chunk per section.
std::vector<v1::FetchResponse> CachedItems(uint32_t uid, const v1::FetchRequest& request,
                                           const std::vector<std::string>& section_keys,
                                           const CachedMessage& cached,
                                           const SelectedMailbox::KnownFlags* known) {
  std::vector<v1::FetchResponse> items(1 + section_keys.size());
  v1::FetchedMetadata& metadata = *items[0].mutable_metadata();
  metadata.set_uid(uid);
  if (known != nullptr) {
    for (const std::string& flag : known->flags) {
      metadata.add_flags(flag);
    }
    metadata.set_modseq(known->modseq);
  }
  if (request.internal_date()) {
    metadata.set_internal_date_unix(cached.internal_date_unix);
    metadata.set_internal_date_tz_minutes(cached.internal_date_tz_minutes);
  }
  if (request.size()) {
    metadata.set_size(cached.size);
  }
  if (request.envelope()) {
    metadata.set_envelope(cached.envelope);
  }
  if (request.body()) {
    metadata.set_body(cached.body);
  }
  if (request.bodystructure()) {
    metadata.set_bodystructure(cached.bodystructure);
  }
  for (size_t i = 0; i < section_keys.size(); ++i) {
    const std::string& content = *cached.FindSection(section_keys[i]);
    v1::SectionChunk& chunk = *items[1 + i].mutable_chunk();
    chunk.set_uid(uid);
    chunk.set_section_index(static_cast<uint32_t>(i));
    chunk.set_total_size(content.size());
    chunk.set_data(content);
    chunk.set_last(true);
  }
  return items;
}

// Watches the service's stream and keeps what it can: the static data of each
// message in the worker's cache, its flags in the session's view.
class CacheFiller {
 public:
  CacheFiller(FetchCache* cache, SelectedMailbox& mailbox, const v1::FetchRequest& request,
              const std::vector<std::string>& section_keys, size_t max_known_flags)
      : cache_(cache),
        mailbox_(mailbox),
        request_(request),
        section_keys_(section_keys),
        max_known_flags_(max_known_flags) {}

  void Observe(const v1::FetchResponse& item) {
    if (item.has_metadata()) {
      Finish();
      const v1::FetchedMetadata& metadata = item.metadata();
      if (request_.flags() && !metadata.expunged()) {
        mailbox_.LearnFlags(metadata.uid(), metadata.flags(), metadata.modseq(),
                            max_known_flags_);
      }
      open_ = cache_ != nullptr;
      uid_ = metadata.uid();
      in_section_ = false;
      message_ = CachedMessage();
      if (request_.internal_date()) {
        message_.has_internal_date = true;
        message_.internal_date_unix = metadata.internal_date_unix();
        message_.internal_date_tz_minutes = metadata.internal_date_tz_minutes();
      }
      if (request_.size()) {
        message_.has_size = true;
        message_.size = metadata.size();
      }
      if (request_.envelope()) {
        message_.has_envelope = true;
        message_.envelope = metadata.envelope();
      }
      if (request_.body()) {
        message_.has_body = true;
        message_.body = metadata.body();
      }
      if (request_.bodystructure()) {
        message_.has_bodystructure = true;
        message_.bodystructure = metadata.bodystructure();
      }
      return;
    }
    if (!open_ || !item.has_chunk()) {
      return;
    }
    const v1::SectionChunk& chunk = item.chunk();
    const bool first = !in_section_;
    in_section_ = !chunk.last();
    // Only a section that came whole in its first chunk is kept.
    if (chunk.uid() == uid_ && first && chunk.last() && !chunk.error_unknown_cte() &&
        chunk.section_index() < section_keys_.size() &&
        chunk.data().size() == chunk.total_size() && chunk.total_size() <= kMaxCachedSection) {
      message_.sections.emplace_back(section_keys_[chunk.section_index()], chunk.data());
    }
  }

  // Stores the last message (after the stream ended).
  void Finish() {
    if (open_) {
      cache_->Add({mailbox_.mailbox_id, mailbox_.uidvalidity, uid_}, message_);
    }
    open_ = false;
  }

 private:
  FetchCache* cache_;
  SelectedMailbox& mailbox_;
  const v1::FetchRequest& request_;
  const std::vector<std::string>& section_keys_;
  const size_t max_known_flags_;
  bool open_ = false;  // a message is being collected
  uint32_t uid_ = 0;
  bool in_section_ = false;  // chunks of a section are still to come
  CachedMessage message_;
};

// Streams the service's answer for `uids` (none: no call) into `writer`, with
// the cached messages `hits` in UID order among them; cached messages found
// evicted when their turn came are added to `evicted`. Sets `client_gone` if a
// write to the client failed (the stream is then cancelled).
awaitable<absl::Status> Pump(CommandContext& session, SelectedMailbox& mailbox,
                             v1::FetchRequest request,
                             const std::vector<std::string>& section_keys, FetchCache* cache,
                             std::vector<imap::Interval> uids, std::vector<uint32_t> hits,
                             FetchResponseWriter& writer, CacheFiller& filler,
                             std::vector<uint32_t>& evicted, bool& client_gone) {
  std::unique_ptr<mailbox::client::FetchStream> stream;
  if (!uids.empty()) {
    *request.mutable_uids() = CommandContext::ToUidSet(uids);
    stream = session.store().Fetch(request);
  }
  size_t next_hit = 0;
  bool stream_done = stream == nullptr;
  while (true) {
    std::optional<v1::FetchResponse> item;
    if (!stream_done) {
      absl::StatusOr<std::optional<v1::FetchResponse>> next = co_await stream->Next();
      if (!next.ok()) {
        co_return next.status();
      }
      if (next->has_value()) {
        item = std::move(**next);
      } else {
        stream_done = true;  // the store sent everything
      }
    }
    // Cached messages go out in UID order among the service's, each before
    // the first message of the stream with a higher UID.
    if ((!item.has_value() || item->has_metadata()) && !writer.in_literal()) {
      const uint64_t bound = item.has_value() ? item->metadata().uid() : UINT64_MAX;
      while (next_hit < hits.size() && hits[next_hit] < bound) {
        const uint32_t uid = hits[next_hit++];
        const CachedMessage* cached = cache->Find({mailbox.mailbox_id, mailbox.uidvalidity, uid});
        if (cached == nullptr) {
          evicted.push_back(uid);
          continue;
        }
        auto known = mailbox.flags.find(uid);
        for (const v1::FetchResponse& cached_item :
             CachedItems(uid, request, section_keys, *cached,
                         known == mailbox.flags.end() ? nullptr : &known->second)) {
          // Cannot fail: the items are complete and in order.
          (void)writer.Accept(cached_item);
        }
        if (writer.unflushed() >= kFlushEvery) {
          writer.Flushed();
          const bool ok2 = co_await session.Flush();
          if (!ok2) {
            if (stream != nullptr) {
              stream->Cancel();
            }
            client_gone = true;
            co_return absl::OkStatus();
          }
        }
      }
    }
    if (!item.has_value()) {
      break;
    }
    filler.Observe(*item);
    if (absl::Status accepted = writer.Accept(*item); !accepted.ok()) {
      stream->Cancel();
      co_return accepted;
    }
    if (writer.unflushed() >= kFlushEvery) {
      writer.Flushed();
      const bool ok1 = co_await session.Flush();
      if (!ok1) {
        stream->Cancel();
        client_gone = true;
            co_return absl::OkStatus();
      }
    }
  }
  filler.Finish();
  co_return absl::OkStatus();
}

}  // namespace

awaitable<void> Fetch(CommandContext& session, const imap::FetchCommand& command) {
  SelectedMailbox* mailbox = session.selected();
  if (mailbox == nullptr) {
    session.Bad("FETCH needs a selected mailbox");
    co_return;
  }
  // Sequence numbers beyond the mailbox are a client error (RFC 9051 §6.4.5
  // leaves it open; Dovecot and Cyrus answer BAD, which clients expect and
  // which tells a confused client to resynchronise). Non-existent UIDs are
  // ignored without an error (RFC 3501 §6.4.8).
  if (auto error = SequenceSetError(command.set, command.uid, mailbox->map.size())) {
    session.Bad(*error);
    co_return;
  }
  FetchPlan plan = MakePlan(command, mailbox->read_only);
  // RFC 7162 §3.1: FETCH with MODSEQ or CHANGEDSINCE enables CONDSTORE.
  if (plan.has_modseq) {
    session.EnableCondstore();
  }
  const bool condstore = session.condstore_enabled() || mailbox->condstore;
  if (command.vanished) {
    // RFC 7162 §3.2.6: a UID FETCH modifier, after ENABLE QRESYNC; the expunged
    // UIDs of the set come first, as VANISHED (EARLIER).
    if (!command.uid) {
      session.Bad("VANISHED is a UID FETCH modifier (RFC 7162 §3.2.6)");
      co_return;
    }
    if (!session.qresync_enabled()) {
      session.Bad("the VANISHED modifier needs ENABLE QRESYNC first (RFC 7162 §3.2.6)");
      co_return;
    }
    // "*" reaches past the view's highest UID: the newest messages are the ones
    // most often expunged (ReportVanishedEarlier stops at the view's UIDNEXT).
    const absl::Status vanished = co_await ReportVanishedEarlier(
        session, *command.changed_since,
        command.set.Resolve(std::numeric_limits<uint32_t>::max()));
    if (!vanished.ok()) {
      session.Fail(vanished, "UID FETCH (VANISHED)");
      co_return;
    }
  }
  const std::vector<imap::Interval> uids = session.ResolveSet(command.set, command.uid);
  if (uids.empty()) {
    session.Ok("FETCH completed");
    co_return;
  }
  plan.request.set_mailbox_id(mailbox->mailbox_id);
  plan.request.set_uidvalidity(mailbox->uidvalidity);

  // Messages the cache and the session's flags answer in full are not asked of
  // the service (fetch_cache.h). Not for a FETCH that sets \Seen (a write) or
  // with CHANGEDSINCE (a condition the service evaluates).
  FetchCache* cache = session.fetch_cache();
  const std::vector<std::string> section_keys = SectionKeys(plan.request);
  std::vector<uint32_t> hits;
  std::vector<imap::Interval> misses = uids;
  if (cache != nullptr && !plan.request.mark_seen() && !command.changed_since.has_value()) {
    misses.clear();
    for (const imap::Interval& range : uids) {
      for (uint64_t uid = range.first; uid <= range.last; ++uid) {
        const uint32_t u = static_cast<uint32_t>(uid);
        auto known = mailbox->flags.find(u);
        if (Answers(plan.request, section_keys,
                    cache->Find({mailbox->mailbox_id, mailbox->uidvalidity, u}),
                    known == mailbox->flags.end() ? nullptr : &known->second)) {
          hits.push_back(u);
        } else if (!misses.empty() && misses.back().last + 1 == uid) {
          misses.back().last = u;
        } else {
          misses.push_back({u, u});
        }
      }
    }
    auto& metrics = ops::GlobalMetrics();
    metrics.fetch_cache_hits.fetch_add(hits.size(), std::memory_order_relaxed);
    uint64_t missed = 0;
    for (const imap::Interval& range : misses) {
      missed += range.last - range.first + 1;
    }
    metrics.fetch_cache_misses.fetch_add(missed, std::memory_order_relaxed);
  }

  FetchResponseWriter writer(session, *mailbox, plan, condstore);
  CacheFiller filler(cache, *mailbox, plan.request, section_keys,
                     session.options().max_known_flags);
  std::vector<uint32_t> evicted;
  bool client_gone = false;
  absl::Status failure = co_await Pump(session, *mailbox, plan.request, section_keys, cache,
                                       misses, hits, writer, filler, evicted, client_gone);
  if (failure.ok() && !client_gone && !evicted.empty()) {
    // Cached messages this FETCH's own additions pushed out of the cache
    // before they were sent (a FETCH of more than the cache holds): asked of
    // the service after the rest.
    std::vector<imap::Interval> again;
    for (uint32_t uid : evicted) {
      again.push_back({uid, uid});
    }
    failure = co_await Pump(session, *mailbox, plan.request, section_keys, cache,
                            imap::MergeIntervals(std::move(again)), {}, writer, filler,
                            evicted, client_gone);
  }
  if (client_gone) {
    co_return;  // Pump cancelled the stream; the session ends
  }
  if (writer.in_literal()) {
    const std::string reason =
        failure.ok() ? "the store ended the stream early" : std::string(failure.message());
    co_await AbandonLiteral(session, writer.literal_remaining(), reason);
    co_return;
  }
  writer.FinishMessage();
  co_await RevertSeen(session, *mailbox, writer.seen_reverts(), condstore);
  if (!failure.ok()) {
    // Responses already sent stay valid; the NO says the rest is missing.
    session.Fail(failure, "FETCH");
    co_return;
  }
  if (writer.nul_refused()) {
    session.No("FETCH completed, but message data with NUL octets cannot be sent as BODY[] or "
               "RFC822 (RFC 3501 §4.3); fetch it with BINARY[] (RFC 3516)",
               "UNKNOWN-CTE");
    co_return;
  }
  if (writer.unknown_cte()) {
    session.No("FETCH completed, but the encoding of a BINARY section is unknown",
               "UNKNOWN-CTE");
    co_return;
  }
  session.Ok("FETCH completed");
}

mailbox::v1::Section::Text ToProtoSectionText(imap::Section::Text text) {
  namespace v1 = mailbox::v1;
  switch (text) {
    case imap::Section::Text::kNone: return v1::Section::TEXT_NONE;
    case imap::Section::Text::kHeader: return v1::Section::HEADER;
    case imap::Section::Text::kHeaderFields: return v1::Section::HEADER_FIELDS;
    case imap::Section::Text::kHeaderFieldsNot: return v1::Section::HEADER_FIELDS_NOT;
    case imap::Section::Text::kText: return v1::Section::TEXT;
    case imap::Section::Text::kMime: return v1::Section::MIME;
  }
  return v1::Section::TEXT_NONE;
}

}  // namespace gateway::commands
