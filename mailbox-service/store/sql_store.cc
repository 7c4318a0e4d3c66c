#include "mailbox-service/store/sql_store.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/mailbox/flags.h"
#include "common/mailbox/list.h"
#include "common/mailbox/names.h"
#include "common/mailbox/object_ids.h"
#include "common/mailbox/quota.h"
#include "common/mailbox/uid_sets.h"
#include "common/status_macros.h"
#include "mailbox-service/mime/mime.h"
#include "mailbox-service/store/message_content.h"
#include "mailbox-service/store/search.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {

using rules::AllUids;
using rules::ContainsKeyword;
using rules::FlagList;
using rules::FlagSet;
using rules::IsInferiorOf;
using rules::JoinKeywords;
using rules::kDeletedBit;
using rules::kHierarchyDelimiter;
using rules::kInbox;
using rules::kSeenBit;
using rules::MakeMessageFlags;
using rules::NormalizeUidSet;
using rules::ParseFlags;
using rules::SplitKeywords;
using rules::SystemFlag;
using rules::kSystemFlags;
using rules::UidSetBuilder;
using Ranges = rules::UidRanges;
using sql::Connection;
using sql::Statement;

namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Error(absl::StatusCode code, v1::ErrorCode detail, std::string_view message) {
  return v1::MakeError(code, detail, message);
}
absl::Status BadRequest(std::string_view message) { return v1::BadRequest(message); }

// The special-use attributes a request gives (RFC 6154), each known, once, as the
// mailboxes table keeps them: space-separated in the order given.
absl::StatusOr<std::string> SpecialUseColumn(
    const google::protobuf::RepeatedPtrField<std::string>& requested) {
  std::vector<std::string> uses;
  for (const std::string& use : requested) {
    if (!rules::IsKnownSpecialUse(use)) {
      return BadRequest(absl::StrCat("unknown special-use attribute ", use,
                                     " (RFC 6154 §2 lists the known ones)"));
    }
    if (std::find(uses.begin(), uses.end(), use) == uses.end()) {
      uses.push_back(use);
    }
  }
  return absl::StrJoin(uses, " ");
}
absl::Status MailboxChanged() {
  return Error(absl::StatusCode::kNotFound, v1::MAILBOX_CHANGED,
               "the selected mailbox was deleted, renamed away or recreated; select it again");
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------
// Content rows

// Drops content no message refers to any more (refcount kept by triggers).
absl::Status CollectGarbage(Connection& conn) {
  ASSIGN_OR_RETURN(Statement gc, conn.Prepare("DELETE FROM contents WHERE refcount <= 0"));
  return gc.Run();
}

// Retained expunged messages pruned per write transaction at most, so that a
// backlog (e.g. after a mass expunge) never makes one client's write slow.
constexpr int kExpungedPruneBatch = 1000;

// Drops retained expunged messages older than `before_ms` (a bounded batch,
// oldest first) and then content nothing refers to any more; returns how many.
absl::StatusOr<int64_t> PruneExpunged(Connection& conn, int64_t before_ms) {
  ASSIGN_OR_RETURN(Statement prune,
                   conn.Prepare("DELETE FROM expunged_messages WHERE (mailbox_id, uid) IN "
                                "(SELECT mailbox_id, uid FROM expunged_messages "
                                "WHERE expunged_at_ms < ? ORDER BY expunged_at_ms LIMIT ?)"));
  prune.Bind(1, before_ms).Bind(2, kExpungedPruneBatch);
  RETURN_IF_ERROR(prune.Run());
  const int64_t pruned = conn.Changes();
  if (pruned > 0) {
    RETURN_IF_ERROR(CollectGarbage(conn));
  }
  return pruned;
}

// ---------------------------------------------------------------------------
// Mailbox rows

struct MailboxRow {
  uint64_t id = 0;
  uint64_t user_id = 0;
  std::string name;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  uint32_t recent_floor = 1;
  uint64_t log_floor = 0;
  bool noselect = false;
  std::string special_use;
};

#define MAILBOX_COLUMNS                                                                \
  "id, user_id, name, uidvalidity, uidnext, highest_modseq, recent_floor, log_floor, " \
  "noselect, special_use"

MailboxRow ReadMailbox(const Statement& s) {
  MailboxRow row;
  row.id = s.Int(0);
  row.user_id = s.Int(1);
  row.name = std::string(s.Text(2));
  row.uidvalidity = static_cast<uint32_t>(s.Int(3));
  row.uidnext = static_cast<uint32_t>(s.Int(4));
  row.highest_modseq = s.Int(5);
  row.recent_floor = static_cast<uint32_t>(s.Int(6));
  row.log_floor = s.Int(7);
  row.noselect = s.Int(8) != 0;
  row.special_use = std::string(s.Text(9));
  return row;
}

absl::StatusOr<std::optional<MailboxRow>> MailboxByName(Connection& conn, uint64_t user_id,
                                                        std::string_view name) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE user_id = ? AND name = ?"));
  s.Bind(1, user_id).BindText(2, name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return std::optional<MailboxRow>();
  }
  return std::optional<MailboxRow>(ReadMailbox(s));
}

// A selectable mailbox the caller names by name: NONEXISTENT if missing, CANNOT
// if it is \Noselect.
absl::StatusOr<MailboxRow> SelectableByName(Connection& conn, uint64_t user_id,
                                            std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn, user_id, name));
  if (!row.has_value()) {
    return v1::Nonexistent(absl::StrCat("mailbox \"", AV(name), "\" does not exist"));
  }
  if (row->noselect) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 absl::StrCat("mailbox \"", AV(name),
                              "\" is \\Noselect: it only holds other mailboxes"));
  }
  return *std::move(row);
}

// The mailbox a session selected, named by (id, uidvalidity).
absl::StatusOr<MailboxRow> SelectedMailbox(Connection& conn, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE id = ? AND user_id = ?"));
  s.Bind(1, mailbox_id).Bind(2, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return MailboxChanged();
  }
  MailboxRow mailbox = ReadMailbox(s);
  if (mailbox.uidvalidity != uidvalidity || mailbox.noselect) {
    return MailboxChanged();
  }
  return mailbox;
}

// Calls `each` with the logged changes of a mailbox after `from_modseq`, one at a
// time, in MODSEQ order.
template <typename Each>
absl::Status ForEachLogged(Connection& conn, uint64_t mailbox_id, uint64_t from_modseq,
                           Each each) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT event FROM changes WHERE mailbox_id = ? "
                                             "AND modseq > ? ORDER BY modseq"));
  s.Bind(1, mailbox_id).Bind(2, from_modseq);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return absl::OkStatus();
    }
    v1::ChangeEvent event;
    std::string_view blob = s.Blob(0);
    if (!event.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
      return Error(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                   "store: a change-log row is unreadable");
    }
    each(std::move(event));
  }
}

absl::StatusOr<std::vector<MailboxRow>> UserMailboxes(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT " MAILBOX_COLUMNS
                                             " FROM mailboxes WHERE user_id = ? ORDER BY name"));
  s.Bind(1, user_id);
  std::vector<MailboxRow> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    out.push_back(ReadMailbox(s));
  }
  return out;
}

absl::StatusOr<bool> HasInferiors(Connection& conn, uint64_t user_id, std::string_view name) {
  // Names are compared as bytes (BINARY collation), and every inferior of "a"
  // sorts in ["a/", "a0") since '0' follows '/'.
  std::string low = absl::StrCat(AV(name), "/");
  std::string high = absl::StrCat(AV(name), "0");
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("SELECT 1 FROM mailboxes WHERE user_id = ? AND name > ? "
                                "AND name < ? LIMIT 1"));
  s.Bind(1, user_id).BindText(2, low).BindText(3, high);
  return s.Step();
}

absl::StatusOr<bool> UserExists(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT 1 FROM users WHERE id = ?"));
  s.Bind(1, user_id);
  return s.Step();
}

absl::StatusOr<uint32_t> NextUidValidity(Connection& conn) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("UPDATE meta SET value = value + 1 "
                                "WHERE name = 'uidvalidity_counter' RETURNING value"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 "store: the UIDVALIDITY counter is missing");
  }
  int64_t value = s.Int(0);
  if (value <= 0 || value > std::numeric_limits<uint32_t>::max()) {
    return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                 "store: UIDVALIDITY values are exhausted");
  }
  return static_cast<uint32_t>(value);
}

// Draws the next id from a counter of schema version 3 (`sql` is one of the two
// statements below). Ids are never reused: session tokens name users by id, and
// change events name mailboxes by id. The max() keeps the counter above any row
// written without it (e.g. by hand, or before the counter existed).
absl::StatusOr<uint64_t> NextId(Connection& conn, const char* sql, std::string_view what) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare(sql));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 absl::StrCat("store: the ", AV(what), " id counter is missing"));
  }
  return static_cast<uint64_t>(s.Int(0));
}

absl::StatusOr<uint64_t> NextUserId(Connection& conn) {
  return NextId(conn,
                "UPDATE meta SET value = CASE "
                "WHEN value > (SELECT coalesce(max(id), 0) FROM users) THEN value "
                "ELSE (SELECT coalesce(max(id), 0) FROM users) END + 1 "
                "WHERE name = 'user_id_counter' RETURNING value",
                "user");
}

absl::StatusOr<uint64_t> NextMailboxId(Connection& conn) {
  return NextId(conn,
                "UPDATE meta SET value = CASE "
                "WHEN value > (SELECT coalesce(max(id), 0) FROM mailboxes) THEN value "
                "ELSE (SELECT coalesce(max(id), 0) FROM mailboxes) END + 1 "
                "WHERE name = 'mailbox_id_counter' RETURNING value",
                "mailbox");
}

// Inserts a new selectable mailbox.
absl::StatusOr<MailboxRow> InsertMailbox(Connection& conn, uint64_t user_id,
                                         std::string_view name, std::string_view special_use) {
  MailboxRow row;
  ASSIGN_OR_RETURN(row.uidvalidity, NextUidValidity(conn));
  ASSIGN_OR_RETURN(row.id, NextMailboxId(conn));
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO mailboxes (id, user_id, name, uidvalidity, "
                                "special_use) VALUES (?, ?, ?, ?, ?)"));
  s.Bind(1, row.id)
      .Bind(2, user_id)
      .BindText(3, name)
      .Bind(4, row.uidvalidity)
      .BindText(5, special_use);
  RETURN_IF_ERROR(s.Run());
  row.user_id = user_id;
  row.name = std::string(name);
  row.highest_modseq = 1;
  row.special_use = std::string(special_use);
  return row;
}

// Subscribes the user to `name` (RFC 3501 §6.3.6: the name need not exist).
absl::Status AddSubscription(Connection& conn, uint64_t user_id, std::string_view name) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("INSERT INTO subscriptions (user_id, name) "
                                             "VALUES (?, ?) ON CONFLICT DO NOTHING"));
  s.Bind(1, user_id).BindText(2, name);
  return s.Run();
}

absl::Status RememberKeywords(Connection& conn, uint64_t mailbox_id,
                              const std::vector<std::string>& keywords) {
  for (const std::string& keyword : keywords) {
    ASSIGN_OR_RETURN(Statement s,
                     conn.Prepare("INSERT INTO mailbox_keywords (mailbox_id, keyword) "
                                  "VALUES (?, ?) ON CONFLICT DO NOTHING"));
    s.Bind(1, mailbox_id).BindText(2, keyword);
    RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

absl::Status CheckUidSpace(const MailboxRow& mailbox, size_t count) {
  if (static_cast<uint64_t>(mailbox.uidnext) + count > std::numeric_limits<uint32_t>::max()) {
    return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                 absl::StrCat("mailbox \"", mailbox.name,
                              "\" has run out of UIDs; rename it and create it again"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Message rows

struct MessageRow {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  uint32_t system = 0;
  std::string keywords;
  int64_t content_id = 0;
  int64_t internal_date = 0;
  int32_t internal_tz = 0;
};

// Messages of `ranges` in ascending UID order, filtered by `keep`.
template <typename Keep>
absl::StatusOr<std::vector<MessageRow>> LoadMessages(Connection& conn, uint64_t mailbox_id,
                                                     const Ranges& ranges, Keep keep) {
  std::vector<MessageRow> out;
  for (const auto& [first, last] : ranges) {
    ASSIGN_OR_RETURN(Statement s,
                     conn.Prepare("SELECT uid, modseq, system_flags, keywords, content_id, "
                                  "internal_date, internal_tz FROM messages "
                                  "WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid"));
    s.Bind(1, mailbox_id).Bind(2, first).Bind(3, last);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      MessageRow m;
      m.uid = static_cast<uint32_t>(s.Int(0));
      m.modseq = s.Int(1);
      m.system = static_cast<uint32_t>(s.Int(2));
      m.keywords = std::string(s.Text(3));
      m.content_id = s.Int(4);
      m.internal_date = s.Int(5);
      m.internal_tz = static_cast<int32_t>(s.Int(6));
      if (keep(m)) {
        out.push_back(std::move(m));
      }
    }
  }
  return out;
}

// Binds a message row's sort columns (schema: sort_date, sort_subject, sort_from,
// sort_to, sort_cc, sort_display_from, sort_display_to) from `first` on. `keys`
// must outlive the statement's run.
void BindSortColumns(Statement& s, int first, const SortKeys& keys, int64_t internal_date) {
  // RFC 5256 §2.2: the sent date, or the internal date without a valid Date:.
  s.Bind(first, keys.sent_at.value_or(internal_date))
      .BindBlob(first + 1, keys.subject)
      .BindBlob(first + 2, keys.from)
      .BindBlob(first + 3, keys.to)
      .BindBlob(first + 4, keys.cc)
      .BindBlob(first + 5, keys.display_from)
      .BindBlob(first + 6, keys.display_to);
}

// The column a SORT key reads, as sort.cc's CompareBy compares it: integers, and
// folded strings octet by octet (BLOB in SQLite, bytea in PostgreSQL).
const char* SortColumn(v1::SortCriterion::Key key) {
  switch (key) {
    case v1::SortCriterion::ARRIVAL:
      return "m.internal_date";
    case v1::SortCriterion::CC:
      return "m.sort_cc";
    case v1::SortCriterion::DATE:
      return "m.sort_date";
    case v1::SortCriterion::FROM:
      return "m.sort_from";
    case v1::SortCriterion::SIZE:
      return "c.size";
    case v1::SortCriterion::SUBJECT:
      return "m.sort_subject";
    case v1::SortCriterion::TO:
      return "m.sort_to";
    case v1::SortCriterion::DISPLAYFROM:
      return "m.sort_display_from";
    case v1::SortCriterion::DISPLAYTO:
      return "m.sort_display_to";
    default:
      return "m.uid";  // ValidateSortCriteria refuses these first
  }
}

// `save_date`: when the message is saved into this mailbox (RFC 8514), unix
// seconds: the time of the APPEND, COPY, MOVE or revision storing it.
absl::Status InsertMessage(Connection& conn, uint64_t mailbox_id, uint32_t uid,
                           int64_t content_id, uint64_t modseq, uint32_t system,
                           std::string_view keywords, int64_t internal_date,
                           int32_t internal_tz, int64_t save_date, const SortKeys& keys) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO messages (mailbox_id, uid, content_id, modseq, "
                                "system_flags, keywords, internal_date, internal_tz, save_date, "
                                "sort_date, sort_subject, sort_from, sort_to, sort_cc, "
                                "sort_display_from, sort_display_to) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  s.Bind(1, mailbox_id)
      .Bind(2, uid)
      .Bind(3, content_id)
      .Bind(4, modseq)
      .Bind(5, system)
      .BindText(6, keywords)
      .Bind(7, internal_date)
      .Bind(8, internal_tz)
      .Bind(9, save_date);
  BindSortColumns(s, 10, keys, internal_date);
  return s.Run();
}

// Copies the live messages of [first, last] into expunged_messages, stamped
// `now_ms`; the insert trigger takes a content reference for each.
absl::Status RetainMessages(Connection& conn, uint64_t mailbox_id, uint32_t first,
                            uint32_t last, int64_t now_ms) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("INSERT INTO expunged_messages (mailbox_id, uid, content_id, "
                                "modseq, system_flags, keywords, internal_date, internal_tz, "
                                "save_date, expunged_at_ms) "
                                "SELECT mailbox_id, uid, content_id, modseq, system_flags, "
                                "keywords, internal_date, internal_tz, save_date, ? "
                                "FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?"));
  s.Bind(1, now_ms).Bind(2, mailbox_id).Bind(3, first).Bind(4, last);
  return s.Run();
}

absl::Status DeleteMessage(Connection& conn, uint64_t mailbox_id, uint32_t uid) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?"));
  s.Bind(1, mailbox_id).Bind(2, uid);
  return s.Run();
}

absl::Status SetUidNext(Connection& conn, uint64_t mailbox_id, uint32_t uidnext) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE mailboxes SET uidnext = ? WHERE id = ?"));
  s.Bind(1, uidnext).Bind(2, mailbox_id);
  return s.Run();
}

absl::StatusOr<std::vector<uint32_t>> AllUidsOf(Connection& conn, uint64_t mailbox_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT uid FROM messages WHERE mailbox_id = ? "
                                             "ORDER BY uid"));
  s.Bind(1, mailbox_id);
  std::vector<uint32_t> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    out.push_back(static_cast<uint32_t>(s.Int(0)));
  }
}

// ---------------------------------------------------------------------------
// Search candidates

class StoredSearchMessage final : public SearchMessage {
 public:
  // Loading the whole content takes room from `memory` (see
  // StoreLimits::max_search_memory_octets), waiting for it until `deadline`.
  using Opener = std::function<absl::StatusOr<std::unique_ptr<ContentReader>>(int64_t)>;
  StoredSearchMessage(Connection& conn, const Opener& open, const Statement& row,
                      OctetGate& memory, absl::Time deadline)
      : conn_(conn), open_(open), memory_(memory), deadline_(deadline) {
    uid_ = static_cast<uint32_t>(row.Int(0));
    modseq_ = row.Int(1);
    flags_ = FlagList(static_cast<uint32_t>(row.Int(2)), row.Text(3));
    content_id_ = row.Int(4);
    date_ = row.Int(5);
    tz_ = static_cast<int32_t>(row.Int(6));
    size_ = row.Int(7);
    if (!row.IsNull(8)) {
      sent_date_ = static_cast<int32_t>(row.Int(8));
    }
    header_size_ = row.Int(9);
    sha256_ = std::string(row.Blob(10));
    if (!row.IsNull(11)) {
      save_date_ = row.Int(11);
    }
  }

  uint32_t uid() const override { return uid_; }
  uint64_t modseq() const override { return modseq_; }
  const std::vector<std::string>& flags() const override { return flags_; }
  int64_t internal_date_unix() const override { return date_; }
  int32_t internal_date_tz_minutes() const override { return tz_; }
  uint64_t size() const override { return size_; }
  std::optional<int32_t> sent_date() override { return sent_date_; }
  std::string_view content_sha256() override { return sha256_; }
  std::optional<int64_t> save_date_unix() const override { return save_date_; }

  std::string_view header_block() override {
    if (!header_.has_value()) {
      header_.emplace();
      if (content_.has_value()) {
        header_->assign(content_->substr(0, header_size_));
      } else if (absl::StatusOr<std::unique_ptr<ContentReader>> blob = open_(content_id_);
                 blob.ok()) {
        status_.Update(
            (*blob)->Read(0, std::min<uint64_t>(header_size_, (*blob)->size()), &*header_));
      } else {
        status_.Update(blob.status());
      }
    }
    return *header_;
  }

  const mime::ParsedMessage& parsed() override {
    if (!parsed_.has_value()) {
      parsed_.emplace();
      absl::StatusOr<Statement> s = conn_.Prepare("SELECT parsed FROM contents WHERE id = ?");
      if (!s.ok()) {
        status_.Update(s.status());
        return *parsed_;
      }
      s->Bind(1, content_id_);
      absl::StatusOr<bool> row = s->Step();
      if (!row.ok()) {
        status_.Update(row.status());
      } else if (!*row) {
        status_.Update(Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                             "store: message content row is missing"));
      } else {
        absl::StatusOr<mime::ParsedMessage> message = mime::Deserialize(s->Blob(0));
        if (message.ok()) {
          *parsed_ = *std::move(message);
        } else {
          status_.Update(message.status());
        }
      }
    }
    return *parsed_;
  }

  std::string_view content() override {
    if (!content_.has_value()) {
      content_.emplace();
      absl::StatusOr<std::unique_ptr<ContentReader>> blob = open_(content_id_);
      if (!blob.ok()) {
        status_.Update(blob.status());
        return *content_;
      }
      absl::StatusOr<OctetGate::Hold> hold = memory_.Acquire(2 * (*blob)->size(), deadline_);
      if (!hold.ok()) {
        status_.Update(hold.status());
        return *content_;
      }
      memory_hold_ = *std::move(hold);
      status_.Update((*blob)->Read(0, (*blob)->size(), &*content_));
    }
    return *content_;
  }

  // A storage failure while loading; the search fails with it rather than
  // silently missing a message.
  const absl::Status& status() const { return status_; }

 private:
  Connection& conn_;
  const Opener& open_;
  uint32_t uid_;
  uint64_t modseq_;
  std::vector<std::string> flags_;
  int64_t content_id_;
  int64_t date_;
  int32_t tz_;
  uint64_t size_;
  std::optional<int32_t> sent_date_;
  uint64_t header_size_;
  std::string sha256_;
  std::optional<int64_t> save_date_;
  std::optional<std::string> header_;
  std::optional<mime::ParsedMessage> parsed_;
  OctetGate::Hold memory_hold_;  // declared first, so released after content_ is freed
  std::optional<std::string> content_;
  OctetGate& memory_;
  absl::Time deadline_;
  absl::Status status_;
};

// A read transaction on a reader connection: one consistent snapshot.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Connection& conn) : conn_(conn) {}
  absl::Status Begin() {
    RETURN_IF_ERROR(conn_.BeginSnapshot());
    open_ = true;
    return absl::OkStatus();
  }
  ~ReadSnapshot() {
    if (open_ && !conn_.Exec("COMMIT").ok()) {
      conn_.Exec("ROLLBACK").IgnoreError();
    }
  }

 private:
  Connection& conn_;
  bool open_ = false;
};

// ---------------------------------------------------------------------------
// Quotas (RFC 9208)

constexpr uint64_t kKib = 1024;

struct QuotaLimitsRow {
  std::optional<uint64_t> storage_kib;
  std::optional<uint64_t> messages;
  bool limited() const { return storage_kib.has_value() || messages.has_value(); }
};

// The user's limits; NotFound for an unknown user.
absl::StatusOr<QuotaLimitsRow> ReadQuotaLimits(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT quota_storage_kib, quota_messages "
                                             "FROM users WHERE id = ?"));
  s.Bind(1, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
  }
  QuotaLimitsRow limits;
  if (!s.IsNull(0)) {
    limits.storage_kib = static_cast<uint64_t>(s.Int(0));
  }
  if (!s.IsNull(1)) {
    limits.messages = static_cast<uint64_t>(s.Int(1));
  }
  return limits;
}

struct QuotaUsage {
  uint64_t octets = 0;
  uint64_t messages = 0;
};

// The user's live messages and their octets, over all of their mailboxes: a sum of
// the per-mailbox counts the message triggers keep.
absl::StatusOr<QuotaUsage> ReadQuotaUsage(Connection& conn, uint64_t user_id) {
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("SELECT CAST(coalesce(sum(message_octets), 0) AS BIGINT), "
                                "CAST(coalesce(sum(message_count), 0) AS BIGINT) "
                                "FROM mailboxes WHERE user_id = ?"));
  s.Bind(1, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  QuotaUsage usage;
  if (row) {
    usage.octets = static_cast<uint64_t>(s.Int(0));
    usage.messages = static_cast<uint64_t>(s.Int(1));
  }
  return usage;
}

// Holds one write of a user's scope to the user's quota: Begin before the write's
// first change, Check after its last. Writes of one user's scope run one at a
// time, so the usage read here is exactly what the write changes. A write may
// leave a resource above its limit only if it does not raise it (a MOVE, a
// revision that shrinks a message, after an administrator lowered the limit).
class QuotaGuard {
 public:
  static absl::StatusOr<QuotaGuard> Begin(Connection& conn, uint64_t user_id) {
    QuotaGuard guard;
    guard.user_id_ = user_id;
    ASSIGN_OR_RETURN(guard.limits_, ReadQuotaLimits(conn, user_id));
    if (guard.limits_.limited()) {
      ASSIGN_OR_RETURN(guard.before_, ReadQuotaUsage(conn, user_id));
    }
    return guard;
  }

  absl::Status Check(Connection& conn) const {
    if (!limits_.limited()) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(QuotaUsage after, ReadQuotaUsage(conn, user_id_));
    if (limits_.storage_kib.has_value() && after.octets > before_.octets &&
        after.octets > *limits_.storage_kib * kKib) {
      return Error(absl::StatusCode::kResourceExhausted, v1::OVERQUOTA,
                   absl::StrCat("over quota: this needs ",
                                rules::StorageUnits(after.octets - before_.octets),
                                " KiB, and the account uses ", rules::StorageUnits(before_.octets),
                                " KiB of its ", *limits_.storage_kib,
                                " KiB; delete and expunge messages to make room"));
    }
    if (limits_.messages.has_value() && after.messages > before_.messages &&
        after.messages > *limits_.messages) {
      return Error(absl::StatusCode::kResourceExhausted, v1::OVERQUOTA,
                   absl::StrCat("over quota: this adds ", after.messages - before_.messages,
                                " messages, and the account holds ", before_.messages,
                                " of its ", *limits_.messages,
                                "; delete and expunge messages to make room"));
    }
    return absl::OkStatus();
  }

 private:
  uint64_t user_id_ = 0;
  QuotaLimitsRow limits_;
  QuotaUsage before_;
};

// ---------------------------------------------------------------------------
// Annotations (RFC 5464)

constexpr size_t kMaxEntryNameOctets = 512;

// RFC 5464 §3.2, §5: an entry is "/private/..." or "/shared/...", slash-separated
// without empty components (no "//", no trailing "/"), without "*" or "%", and
// compares without case; printable ASCII here. Returns it in lower case.
absl::StatusOr<std::string> CanonicalEntryName(std::string_view name) {
  if (name.size() > kMaxEntryNameOctets) {
    return BadRequest(absl::StrCat("an annotation entry name is at most ", kMaxEntryNameOctets,
                                   " octets"));
  }
  std::string lower = absl::AsciiStrToLower(AV(name));
  if (!absl::StartsWith(lower, "/private/") && !absl::StartsWith(lower, "/shared/")) {
    return BadRequest(absl::StrCat("annotation entry \"", lower.substr(0, 100),
                                   "\" must start with /private/ or /shared/ (RFC 5464 §3.2)"));
  }
  for (char c : lower) {
    if (c < 0x20 || c > 0x7e || c == '*' || c == '%') {
      return BadRequest(
          "annotation entry names hold printable ASCII other than \"*\" and \"%\"");
    }
  }
  if (absl::StrContains(lower, "//") || lower.back() == '/') {
    return BadRequest(absl::StrCat("annotation entry \"", lower.substr(0, 100),
                                   "\" has an empty component"));
  }
  return lower;
}

// The mailbox an annotation request names: 0 for the server (""), else the
// user's mailbox (\Noselect ones too, §4.1), NONEXISTENT if there is none.
absl::StatusOr<uint64_t> MetadataMailbox(Connection& conn, uint64_t user_id,
                                         const std::string& mailbox,
                                         const StoreLimits& limits) {
  if (mailbox.empty()) {
    return 0;
  }
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(mailbox, limits));
  ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn, user_id, name));
  if (!row.has_value()) {
    return v1::Nonexistent(absl::StrCat("mailbox \"", AV(name), "\" does not exist"));
  }
  return row->id;
}

void AddQuotaResources(const QuotaLimitsRow& limits, const QuotaUsage& usage,
                       v1::GetQuotaResponse& response) {
  // RFC 9208 §5: STORAGE, then MESSAGE; only the resources that have a limit.
  if (limits.storage_kib.has_value()) {
    v1::QuotaResource* r = response.add_resources();
    r->set_name("STORAGE");
    r->set_usage(rules::StorageUnits(usage.octets));
    r->set_limit(*limits.storage_kib);
  }
  if (limits.messages.has_value()) {
    v1::QuotaResource* r = response.add_resources();
    r->set_name("MESSAGE");
    r->set_usage(usage.messages);
    r->set_limit(*limits.messages);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Transactions and connections

class SqlStore::WriteTx {
 public:
  // `now_ms` stamps messages this transaction expunges; with `retain_expunged`
  // false they are dropped at once instead of retained.
  WriteTx(Connection& conn, uint64_t retention, int64_t now_ms, bool retain_expunged)
      : conn_(conn), retention_(retention), now_ms_(now_ms), retain_expunged_(retain_expunged) {}

  Connection& conn() { return conn_; }
  // The transaction's clock (StoreOptions::clock), unix seconds: the save date
  // (RFC 8514) of the messages it stores.
  int64_t now_unix() const { return now_ms_ / 1000 - (now_ms_ % 1000 < 0 ? 1 : 0); }

  // Expunges one message. It stays fetchable (FetchRequest.include_expunged) for
  // the retention window, for sessions not yet told (RFC 3501 §7.4.1).
  absl::Status ExpungeMessage(uint64_t mailbox_id, uint32_t uid) {
    if (retain_expunged_) {
      RETURN_IF_ERROR(RetainMessages(conn_, mailbox_id, uid, uid, now_ms_));
    }
    return DeleteMessage(conn_, mailbox_id, uid);
  }

  // Retains every live message of the mailbox, for a caller that then moves them
  // all out of it (RENAME INBOX).
  absl::Status RetainAllMessages(uint64_t mailbox_id) {
    if (!retain_expunged_) {
      return absl::OkStatus();
    }
    return RetainMessages(conn_, mailbox_id, 1, std::numeric_limits<uint32_t>::max(), now_ms_);
  }

  // Allocates the mailbox's next MODSEQ in this transaction (RFC 7162 §3.1.1).
  absl::StatusOr<uint64_t> NextModseq(uint64_t mailbox_id) {
    ASSIGN_OR_RETURN(Statement s,
                     conn_.Prepare("UPDATE mailboxes SET highest_modseq = highest_modseq + 1 "
                                   "WHERE id = ? RETURNING highest_modseq"));
    s.Bind(1, mailbox_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                   "store: mailbox vanished inside its own transaction");
    }
    return static_cast<uint64_t>(s.Int(0));
  }

  // Logs `event` (mailbox_id and modseq set) and queues it for the sink. Prunes the
  // log to the latest `retention` MODSEQs of the mailbox; ReadChanges from before
  // them is RESYNC.
  absl::Status Log(v1::ChangeEvent event) {
    std::string blob = event.SerializeAsString();
    {
      ASSIGN_OR_RETURN(Statement s,
                       conn_.Prepare("INSERT INTO changes (mailbox_id, modseq, event) "
                                     "VALUES (?, ?, ?)"));
      s.Bind(1, event.mailbox_id()).Bind(2, event.modseq()).BindBlob(3, blob);
      RETURN_IF_ERROR(s.Run());
    }
    if (event.modseq() > retention_) {
      uint64_t floor = event.modseq() - retention_;
      ASSIGN_OR_RETURN(Statement prune,
                       conn_.Prepare("DELETE FROM changes WHERE mailbox_id = ? AND modseq <= ?"));
      prune.Bind(1, event.mailbox_id()).Bind(2, floor);
      RETURN_IF_ERROR(prune.Run());
      if (conn_.Changes() > 0) {
        ASSIGN_OR_RETURN(Statement s,
                         conn_.Prepare("UPDATE mailboxes SET log_floor = ? "
                                       "WHERE id = ? AND log_floor < ?"));
        s.Bind(1, floor).Bind(2, event.mailbox_id()).Bind(3, floor);
        RETURN_IF_ERROR(s.Run());
      }
    }
    events_.push_back(std::move(event));
    return absl::OkStatus();
  }

  // Allocates a MODSEQ and logs the event built by `fill` at it.
  template <typename Fill>
  absl::StatusOr<uint64_t> LogChange(uint64_t mailbox_id, Fill fill) {
    ASSIGN_OR_RETURN(uint64_t modseq, NextModseq(mailbox_id));
    v1::ChangeEvent event;
    event.set_mailbox_id(mailbox_id);
    event.set_modseq(modseq);
    fill(event, modseq);
    RETURN_IF_ERROR(Log(std::move(event)));
    return modseq;
  }

  absl::StatusOr<uint64_t> LogExpunged(uint64_t mailbox_id, const std::vector<uint32_t>& uids) {
    return LogChange(mailbox_id, [&](v1::ChangeEvent& event, uint64_t) {
      UidSetBuilder set;
      for (uint32_t uid : uids) {
        set.Add(uid);
      }
      *event.mutable_expunged()->mutable_uids() = set.Take();
    });
  }

  absl::StatusOr<uint64_t> LogDeleted(uint64_t mailbox_id) {
    return LogChange(mailbox_id,
                     [](v1::ChangeEvent& event, uint64_t) { event.mutable_deleted(); });
  }

  // An event for subscribers that is not a change of the mailbox: it gets no MODSEQ
  // and no row in the change log (so no replay sees it), only the live feeds.
  void Announce(v1::ChangeEvent event) { events_.push_back(std::move(event)); }

  // Announces a change of the user's mailbox list (RFC 5465 §5.4, §5.5: NOTIFY's
  // MailboxName and SubscriptionChange), live only like any announcement.
  void AnnounceList(uint64_t user_id, v1::ChangeEvent::MailboxListChanged::Kind kind,
                    std::string_view name, uint64_t mailbox_id = 0,
                    std::string_view old_name = {}) {
    AnnounceListEvent(user_id, kind, name, mailbox_id, old_name);
  }
  // RFC 3501 §6.3.3: creates the superiors of `name` that do not exist and announces
  // them. Selectable ones for CREATE and RENAME; \Noselect ones for an import, whose
  // old server (a Maildir++ tree holding ".Work.Projects" without ".Work") showed
  // them as only holding other mailboxes.
  absl::Status CreateMissingSuperiors(uint64_t user_id, std::string_view name, bool noselect) {
    for (const std::string& superior : rules::Superiors(name)) {
      ASSIGN_OR_RETURN(std::optional<MailboxRow> row, MailboxByName(conn(), user_id, superior));
      if (row.has_value()) {
        continue;
      }
      ASSIGN_OR_RETURN(MailboxRow created, InsertMailbox(conn(), user_id, superior, ""));
      if (!noselect) {
        AnnounceCreated(user_id, superior, created.id, created.uidvalidity,
                        created.highest_modseq);
        continue;
      }
      ASSIGN_OR_RETURN(Statement s, conn().Prepare("UPDATE mailboxes SET noselect = 1 WHERE id = ?"));
      s.Bind(1, created.id);
      RETURN_IF_ERROR(s.Run());
      AnnounceList(user_id, v1::ChangeEvent::MailboxListChanged::NOSELECT, superior, created.id);
    }
    return absl::OkStatus();
  }

  // A mailbox created (or made selectable again): its feed starts at `modseq`.
  void AnnounceCreated(uint64_t user_id, std::string_view name, uint64_t mailbox_id,
                       uint32_t uidvalidity, uint64_t modseq) {
    v1::ChangeEvent::MailboxListChanged* change = AnnounceListEvent(
        user_id, v1::ChangeEvent::MailboxListChanged::CREATED, name, mailbox_id, {});
    change->set_uidvalidity(uidvalidity);
    change->set_highest_modseq(modseq);
  }

  // Announces `kind` and returns the event's change to complete.
  v1::ChangeEvent::MailboxListChanged* AnnounceListEvent(
      uint64_t user_id, v1::ChangeEvent::MailboxListChanged::Kind kind, std::string_view name,
      uint64_t mailbox_id, std::string_view old_name) {
    v1::ChangeEvent event;
    event.set_user_id(user_id);
    v1::ChangeEvent::MailboxListChanged* change = event.mutable_mailbox_list();
    change->set_kind(kind);
    change->set_name(std::string(name));
    change->set_old_name(std::string(old_name));
    change->set_mailbox_id(mailbox_id);
    Announce(std::move(event));
    return events_.back().mutable_mailbox_list();
  }

  std::vector<v1::ChangeEvent>& events() { return events_; }

 private:
  Connection& conn_;
  uint64_t retention_;
  int64_t now_ms_;
  bool retain_expunged_;
  std::vector<v1::ChangeEvent> events_;
};

SqlStore::SqlStore(StoreLimits limits, EventSink events, StoreOptions options)
    : limits_(limits),
      events_(std::move(events)),
      options_(std::move(options)),
      search_memory_(limits.max_search_memory_octets,
                     "the mailbox service is busy with other searches of large messages; try "
                     "again") {}

SqlStore::~SqlStore() = default;

absl::Status SqlStore::ValidateConfig(const StoreLimits& limits, const StoreOptions& options) {
  if (limits.fetch_chunk_octets == 0) {
    return absl::InvalidArgumentError("store: fetch_chunk_octets must be positive");
  }
  if (options.change_log_retention == 0) {
    return absl::InvalidArgumentError("store: change_log_retention must be positive");
  }
  if (options.expunged_retention.count() < 0) {
    return absl::InvalidArgumentError("store: expunged_retention must not be negative");
  }
  return absl::OkStatus();
}

int64_t SqlStore::NowMs() const {
  std::chrono::system_clock::time_point now =
      options_.clock ? options_.clock() : std::chrono::system_clock::now();
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
}

absl::Status SqlStore::RunWrite(Connection& conn, WriteBody body, int64_t now_ms,
                                std::vector<v1::ChangeEvent>* events) {
  WriteTx tx(conn, options_.change_log_retention, now_ms, options_.expunged_retention.count() > 0);
  RETURN_IF_ERROR(body(tx));
  for (v1::ChangeEvent& event : tx.events()) {
    events->push_back(std::move(event));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqlStore::PruneExpired(Connection& conn, int64_t now_ms) {
  return PruneExpunged(conn, now_ms - options_.expunged_retention.count());
}

int64_t SqlStore::PruneBatch() { return kExpungedPruneBatch; }

absl::Status SqlStore::CollectUnreferencedContent(Connection& conn) {
  return CollectGarbage(conn);
}

absl::Status SqlStore::ContentReleased(Connection& conn) { return CollectGarbage(conn); }

void SqlStore::KeepMadeContentValues(uint64_t user_id, const char* update_sql, bool blob,
                                     const std::map<int64_t, std::string>& made) {
  for (auto it = made.begin(); it != made.end();) {
    auto batch_end = it;
    for (int n = 0; n < 500 && batch_end != made.end(); ++n) {
      ++batch_end;
    }
    Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
      for (auto value = it; value != batch_end; ++value) {
        ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare(update_sql));
        if (blob) {
          s.BindBlob(1, value->second);
        } else {
          s.BindText(1, value->second);
        }
        s.Bind(2, value->first);
        RETURN_IF_ERROR(s.Run());
      }
      return absl::OkStatus();
    }).IgnoreError();
    it = batch_end;
  }
}

absl::StatusOr<int64_t> SqlStore::EnsureContent(Connection& conn, PreparedContent& content) {
  {
    ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT id FROM contents WHERE sha256 = ?"));
    find.BindBlob(1, content.sha256);
    ASSIGN_OR_RETURN(bool row, find.Step());
    if (row) {
      return find.Int(0);
    }
  }
  if (!content.parsed) {
    RETURN_IF_ERROR(ParseContent(content));
  }
  ASSIGN_OR_RETURN(Statement insert,
                   conn.Prepare("INSERT INTO contents (sha256, size, parsed, envelope, body, "
                                "bodystructure, sent_date, header_size, preview, sort_keys) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
  insert.BindBlob(1, content.sha256)
      .Bind(2, content.size())
      .BindBlob(3, content.parsed_blob)
      .BindText(4, content.envelope)
      .BindText(5, content.body)
      .BindText(6, content.bodystructure)
      .Bind(8, content.header_size)
      .BindText(9, content.preview)
      .BindBlob(10, content.sort_keys);
  if (content.sent_date.has_value()) {
    insert.Bind(7, static_cast<int64_t>(*content.sent_date));
  } else {
    insert.BindNull(7);
  }
  ASSIGN_OR_RETURN(bool inserted, insert.Step());
  if (!inserted) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 "store: inserting message content returned no id");
  }
  const int64_t id = insert.Int(0);
  RETURN_IF_ERROR(insert.Run());
  RETURN_IF_ERROR(StoreContentBytes(conn, id, content));
  return id;
}

// ---------------------------------------------------------------------------
// Users and credentials

absl::StatusOr<uint64_t> SqlStore::CreateUser(std::string_view username,
                                                 std::string_view password_hash) {
  RETURN_IF_ERROR(rules::ValidateUsername(username));
  uint64_t user_id = 0;
  RETURN_IF_ERROR(Write(WriteScope::Accounts(), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    {
      ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT 1 FROM users WHERE username = ?"));
      find.BindText(1, username);
      ASSIGN_OR_RETURN(bool exists, find.Step());
      if (exists) {
        return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                     absl::StrCat("user \"", AV(username), "\" already exists"));
      }
    }
    ASSIGN_OR_RETURN(user_id, NextUserId(conn));
    ASSIGN_OR_RETURN(Statement insert,
                     conn.Prepare("INSERT INTO users (id, username, password_hash) "
                                  "VALUES (?, ?, ?)"));
    insert.Bind(1, user_id).BindText(2, username).BindText(3, password_hash);
    RETURN_IF_ERROR(insert.Run());
    RETURN_IF_ERROR(InsertMailbox(conn, user_id, kInbox, "").status());
    // RFC 6154: the special-use mailboxes clients look for, made and subscribed.
    for (const auto& [name, use] : options_.default_mailboxes) {
      RETURN_IF_ERROR(InsertMailbox(conn, user_id, name, use).status());
      RETURN_IF_ERROR(AddSubscription(conn, user_id, name));
    }
    return absl::OkStatus();
  }));
  return user_id;
}

absl::Status SqlStore::DeleteUser(std::string_view username) {
  return Write(WriteScope::Accounts(), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(Statement find, conn.Prepare("SELECT id FROM users WHERE username = ?"));
    find.BindText(1, username);
    ASSIGN_OR_RETURN(bool exists, find.Step());
    if (!exists) {
      return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
    }
    uint64_t user_id = find.Int(0);
    ASSIGN_OR_RETURN(std::vector<MailboxRow> mailboxes, UserMailboxes(conn, user_id));
    for (const MailboxRow& mailbox : mailboxes) {
      // Sessions that selected one of these mailboxes must drop it.
      RETURN_IF_ERROR(tx.LogDeleted(mailbox.id).status());
    }
    ASSIGN_OR_RETURN(Statement del, conn.Prepare("DELETE FROM users WHERE id = ?"));
    del.Bind(1, user_id);
    // Cascades to mailboxes, messages (whose trigger drops content references),
    // the change log and subscriptions.
    RETURN_IF_ERROR(del.Run());
    return ContentReleased(conn);
  });
}

absl::Status SqlStore::SetPasswordHash(std::string_view username,
                                          std::string_view password_hash) {
  return Write(WriteScope::Accounts(), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s,
                     tx.conn().Prepare("UPDATE users SET password_hash = ?, scram_sha256 = NULL, "
                                       "credential_generation = credential_generation + 1 "
                                       "WHERE username = ?"));
    s.BindText(1, password_hash).BindText(2, username);
    RETURN_IF_ERROR(s.Run());
    if (tx.conn().Changes() == 0) {
      return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
    }
    // Sessions that only listen to the change feed (IDLE) send nothing the
    // service could refuse: tell every feed of the user's mailboxes that the
    // credential behind its subscription is gone, as DeleteUser does with its
    // Deleted events, so the gateway ends those sessions now.
    ASSIGN_OR_RETURN(Statement find,
                     tx.conn().Prepare("SELECT id FROM users WHERE username = ?"));
    find.BindText(1, username);
    ASSIGN_OR_RETURN(bool found, find.Step());
    if (!found) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(std::vector<MailboxRow> mailboxes,
                     UserMailboxes(tx.conn(), static_cast<uint64_t>(find.Int(0))));
    for (const MailboxRow& mailbox : mailboxes) {
      v1::ChangeEvent event;
      event.set_mailbox_id(mailbox.id);
      v1::ErrorDetail* reason = event.mutable_resync()->mutable_reason();
      reason->set_code(v1::AUTHENTICATIONFAILED);
      reason->set_message(
          "the password of this account was changed after this session logged in; log in "
          "again");
      tx.Announce(std::move(event));
    }
    // And its mailbox-list subscriptions (NOTIFY's MailboxName, SubscriptionChange).
    v1::ChangeEvent list;
    list.set_user_id(static_cast<uint64_t>(find.Int(0)));
    v1::ErrorDetail* reason = list.mutable_resync()->mutable_reason();
    reason->set_code(v1::AUTHENTICATIONFAILED);
    reason->set_message(
        "the password of this account was changed after this session logged in; log in again");
    tx.Announce(std::move(list));
    return absl::OkStatus();
  });
}

absl::Status SqlStore::SetScramKeys(std::string_view username, std::string_view password_hash,
                                    std::string_view scram_sha256) {
  return Write(WriteScope::Accounts(), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s,
                     tx.conn().Prepare("UPDATE users SET scram_sha256 = ? "
                                       "WHERE username = ? AND password_hash = ?"));
    s.BindText(1, scram_sha256).BindText(2, username).BindText(3, password_hash);
    return s.Run();
  });
}

namespace {

// A row of "SELECT id, username, password_hash, credential_generation,
// scram_sha256 FROM users".
UserRecord UserOfRow(Statement& s) {
  UserRecord user{static_cast<uint64_t>(s.Int(0)), std::string(s.Text(1)),
                  std::string(s.Text(2)), static_cast<uint64_t>(s.Int(3))};
  if (!s.IsNull(4)) {
    user.scram_sha256 = std::string(s.Text(4));
  }
  return user;
}

}  // namespace

absl::StatusOr<UserRecord> SqlStore::FindUser(std::string_view username) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation, scram_sha256 "
                                 "FROM users WHERE username = ?"));
  s.BindText(1, username);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
  }
  return UserOfRow(s);
}

absl::StatusOr<UserRecord> SqlStore::FindUserById(uint64_t user_id) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation, scram_sha256 "
                                 "FROM users WHERE id = ?"));
  s.Bind(1, user_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
  }
  return UserOfRow(s);
}

absl::StatusOr<std::vector<UserRecord>> SqlStore::ListUsers() {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT id, username, password_hash, credential_generation, scram_sha256 "
                                 "FROM users ORDER BY username"));
  std::vector<UserRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      return out;
    }
    out.push_back(UserOfRow(s));
  }
}

namespace {

// Rows deleted by age per call: bounded work per login, and enough to keep up with
// any rate of inserts, since every insert comes with one such call.
constexpr int64_t kAuthPruneBatch = 256;

// Drops throttle rows older than `oldest_ms`, of any key, a batch at a time.
absl::Status PruneAuthFailures(Connection& conn, int64_t oldest_ms) {
  ASSIGN_OR_RETURN(Statement prune,
                   conn.Prepare("DELETE FROM auth_failures WHERE id IN "
                                "(SELECT id FROM auth_failures WHERE at_ms < ? "
                                "ORDER BY at_ms LIMIT ?)"));
  prune.Bind(1, oldest_ms).Bind(2, kAuthPruneBatch);
  return prune.Run();
}

absl::StatusOr<int64_t> CountAuthRows(Connection& conn, const char* sql,
                                      std::optional<std::string_view> text = std::nullopt,
                                      int64_t since_ms = 0) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare(sql));
  if (text.has_value()) {
    s.BindText(1, *text).Bind(2, since_ms);
  }
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Int(0) : 0;
}

// How long until the oldest row of `address` in the window leaves it (at least 1 ms).
absl::StatusOr<int64_t> UntilAddressFrees(Connection& conn, std::string_view address,
                                          int64_t now_ms, int64_t window_ms) {
  ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT min(at_ms) FROM auth_failures "
                                             "WHERE address = ? AND at_ms >= ?"));
  s.BindText(1, address).Bind(2, now_ms - window_ms);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row || s.IsNull(0)) {
    return int64_t{1000};
  }
  return std::max<int64_t>(1, s.Int(0) + window_ms - now_ms);
}

}  // namespace

absl::StatusOr<int> SqlStore::RecordAuthFailure(std::string_view key, int64_t now_ms,
                                                   int64_t window_ms) {
  int count = 0;
  RETURN_IF_ERROR(Write(WriteScope::Auth(), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    RETURN_IF_ERROR(PruneAuthFailures(conn, now_ms - window_ms));
    {
      ASSIGN_OR_RETURN(Statement insert,
                       conn.Prepare("INSERT INTO auth_failures (key, at_ms) VALUES (?, ?)"));
      insert.BindText(1, key).Bind(2, now_ms);
      RETURN_IF_ERROR(insert.Run());
    }
    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT count(*) FROM auth_failures "
                                               "WHERE key = ? AND at_ms BETWEEN ? AND ?"));
    s.BindText(1, key).Bind(2, now_ms - window_ms).Bind(3, now_ms);
    ASSIGN_OR_RETURN(bool row, s.Step());
    count = row ? static_cast<int>(s.Int(0)) : 0;
    return absl::OkStatus();
  }));
  return count;
}

absl::StatusOr<std::pair<int, int64_t>> SqlStore::AuthFailures(std::string_view key,
                                                                  int64_t now_ms,
                                                                  int64_t window_ms) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare("SELECT count(*), coalesce(max(at_ms), 0) FROM auth_failures "
                                 "WHERE key = ? AND at_ms BETWEEN ? AND ?"));
  s.BindText(1, key).Bind(2, now_ms - window_ms).Bind(3, now_ms);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return std::make_pair(0, int64_t{0});
  }
  return std::make_pair(static_cast<int>(s.Int(0)), s.Int(1));
}

absl::Status SqlStore::ClearAuthFailures(std::string_view key) {
  return Write(WriteScope::Auth(), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM auth_failures WHERE key = ?"));
    s.BindText(1, key);
    return s.Run();
  });
}

absl::StatusOr<AuthReservation> SqlStore::ReserveAuthAttempt(
    const std::vector<std::string>& keys, std::string_view address, int64_t now_ms,
    const AuthAttemptLimits& limits, const AuthAttemptPolicy& policy) {
  AuthReservation reservation;
  const int64_t window_ms = limits.window_ms;
  const int64_t adding = static_cast<int64_t>(keys.size());
  RETURN_IF_ERROR(Write(WriteScope::Auth(), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    reservation = AuthReservation();
    RETURN_IF_ERROR(PruneAuthFailures(conn, now_ms - window_ms));
    // The address's own cap first: past it the address waits, and no other
    // address's rows are touched.
    ASSIGN_OR_RETURN(int64_t held,
                     CountAuthRows(conn,
                                   "SELECT count(*) FROM auth_failures "
                                   "WHERE address = ? AND at_ms >= ?",
                                   address, now_ms - window_ms));
    if (held + adding > limits.max_rows_per_address) {
      ASSIGN_OR_RETURN(reservation.retry_after_ms,
                       UntilAddressFrees(conn, address, now_ms, window_ms));
      return absl::OkStatus();
    }
    std::vector<std::string> read = keys;
    read.insert(read.end(), limits.read_only_keys.begin(), limits.read_only_keys.end());
    std::vector<AuthAttemptState> states;
    states.reserve(read.size());
    for (const std::string& key : read) {
      // No upper bound: an attempt that read the clock before waiting for this
      // transaction must still count the rows of attempts that read it later.
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT count(*), coalesce(max(at_ms), 0) "
                                                 "FROM auth_failures "
                                                 "WHERE key = ? AND at_ms >= ?"));
      s.BindText(1, key).Bind(2, now_ms - window_ms);
      ASSIGN_OR_RETURN(bool row, s.Step());
      AuthAttemptState state;
      if (row) {
        state.failures = static_cast<int>(s.Int(0));
        state.latest_ms = s.Int(1);
      }
      states.push_back(state);
    }
    reservation.retry_after_ms = policy(states);
    if (reservation.retry_after_ms > 0) {
      return absl::OkStatus();
    }
    reservation.retry_after_ms = 0;
    ASSIGN_OR_RETURN(int64_t total, CountAuthRows(conn, "SELECT count(*) FROM auth_failures"));
    const int64_t excess = total + adding - limits.max_rows;
    if (excess > 0) {
      // Full (many addresses, each under its own cap). The address holding the
      // most rows pays: it is refused, or its oldest rows make room for another
      // address's attempt. Nobody else's records are forgotten.
      ASSIGN_OR_RETURN(Statement top,
                       conn.Prepare("SELECT address, count(*) AS n FROM auth_failures "
                                    "GROUP BY address ORDER BY n DESC LIMIT 1"));
      ASSIGN_OR_RETURN(bool found, top.Step());
      const std::string top_address = found ? std::string(top.Text(0)) : std::string(address);
      const int64_t top_rows = found ? top.Int(1) : 0;
      if (top_address == address || held >= top_rows) {
        ASSIGN_OR_RETURN(reservation.retry_after_ms,
                         UntilAddressFrees(conn, address, now_ms, window_ms));
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(Statement evict,
                       conn.Prepare("DELETE FROM auth_failures WHERE id IN "
                                    "(SELECT id FROM auth_failures WHERE address = ? "
                                    "ORDER BY at_ms, id LIMIT ?)"));
      evict.BindText(1, top_address).Bind(2, excess);
      RETURN_IF_ERROR(evict.Run());
    }
    for (const std::string& key : keys) {
      ASSIGN_OR_RETURN(Statement insert,
                       conn.Prepare("INSERT INTO auth_failures (key, address, at_ms) "
                                    "VALUES (?, ?, ?) RETURNING id"));
      insert.BindText(1, key).BindText(2, address).Bind(3, now_ms);
      ASSIGN_OR_RETURN(bool inserted, insert.Step());
      if (inserted) {
        reservation.rows.push_back(insert.Int(0));
      }
      RETURN_IF_ERROR(insert.Run());
    }
    return absl::OkStatus();
  }));
  return reservation;
}

absl::Status SqlStore::ReleaseAuthAttempt(const std::vector<int64_t>& rows) {
  if (rows.empty()) {
    return absl::OkStatus();
  }
  return Write(WriteScope::Auth(), [&](WriteTx& tx) -> absl::Status {
    for (int64_t row : rows) {
      // Ids come from AUTOINCREMENT (schema version 6): a row deleted meanwhile
      // (expired, evicted) leaves nothing here to delete, never a newer row.
      ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM auth_failures WHERE id = ?"));
      s.Bind(1, row);
      RETURN_IF_ERROR(s.Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::string> SqlStore::FindSecret(std::string_view name) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT value FROM secrets WHERE name = ?"));
  s.BindText(1, name);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("no secret \"", AV(name), "\" is stored"));
  }
  return std::string(s.Blob(0));
}

absl::Status SqlStore::DeleteSecret(std::string_view name) {
  return Write(WriteScope::Secrets(), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("DELETE FROM secrets WHERE name = ?"));
    s.BindText(1, name);
    return s.Run();
  });
}

absl::StatusOr<std::string> SqlStore::GetOrCreateSecret(std::string_view name,
                                                           std::string_view initial_value) {
  std::string value;
  RETURN_IF_ERROR(Write(WriteScope::Secrets(), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    {
      ASSIGN_OR_RETURN(Statement insert,
                       conn.Prepare("INSERT INTO secrets (name, value) VALUES (?, ?) "
                                    "ON CONFLICT DO NOTHING"));
      insert.BindText(1, name).BindBlob(2, initial_value);
      RETURN_IF_ERROR(insert.Run());
    }
    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT value FROM secrets WHERE name = ?"));
    s.BindText(1, name);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      value = std::string(s.Blob(0));
    }
    return absl::OkStatus();
  }));
  return value;
}

// ---------------------------------------------------------------------------
// Mailboxes

absl::StatusOr<v1::ListMailboxesResponse> SqlStore::ListMailboxes(
    uint64_t user_id, const v1::ListMailboxesRequest& request) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(std::vector<MailboxRow> rows, UserMailboxes(*conn, user_id));
  std::vector<rules::ListedMailbox> mailboxes;
  mailboxes.reserve(rows.size());
  for (MailboxRow& row : rows) {
    rules::ListedMailbox& mailbox = mailboxes.emplace_back();
    mailbox.name = std::move(row.name);
    mailbox.id = row.id;
    mailbox.noselect = row.noselect;
    for (absl::string_view use : absl::StrSplit(row.special_use, ' ', absl::SkipEmpty())) {
      mailbox.special_use.emplace_back(use);
    }
  }
  std::set<std::string> subscribed;
  ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT name FROM subscriptions WHERE user_id = ?"));
  s.Bind(1, user_id);
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    subscribed.emplace(s.Text(0));
  }
  return rules::BuildListResponse(request, std::move(mailboxes), subscribed);
}

absl::StatusOr<v1::CreateMailboxResponse> SqlStore::CreateMailbox(
    uint64_t user_id, const v1::CreateMailboxRequest& request) {
  std::string_view requested = request.name();
  // RFC 3501 §6.3.3: a trailing delimiter declares the intent to create inferiors;
  // the name created is without it.
  if (requested.size() > 1 && requested.back() == kHierarchyDelimiter) {
    requested.remove_suffix(1);
  }
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(requested, limits_));
  ASSIGN_OR_RETURN(const std::string special_use, SpecialUseColumn(request.special_use()));
  v1::CreateMailboxResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(bool user_exists, UserExists(conn, user_id));
    if (!user_exists) {
      return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
    }
    ASSIGN_OR_RETURN(std::optional<MailboxRow> existing, MailboxByName(conn, user_id, name));
    if (existing.has_value() && !existing->noselect) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   absl::StrCat("mailbox \"", name, "\" already exists"));
    }
    RETURN_IF_ERROR(tx.CreateMissingSuperiors(user_id, name, /*noselect=*/false));
    if (existing.has_value()) {
      // A \Noselect name becomes selectable again, as a new mailbox: a new
      // UIDVALIDITY, and a log that starts now.
      ASSIGN_OR_RETURN(uint32_t uidvalidity, NextUidValidity(conn));
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE mailboxes SET noselect = 0, uidvalidity = ?, "
                                    "special_use = ?, log_floor = highest_modseq "
                                    "WHERE id = ?"));
      s.Bind(1, uidvalidity).BindText(2, special_use).Bind(3, existing->id);
      RETURN_IF_ERROR(s.Run());
      ASSIGN_OR_RETURN(Statement clear, conn.Prepare("DELETE FROM changes WHERE mailbox_id = ?"));
      clear.Bind(1, existing->id);
      RETURN_IF_ERROR(clear.Run());
      response.set_mailbox_id(existing->id);
      response.set_uidvalidity(uidvalidity);
      tx.AnnounceCreated(user_id, name, existing->id, uidvalidity, existing->highest_modseq);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(MailboxRow row, InsertMailbox(conn, user_id, name, special_use));
    tx.AnnounceCreated(user_id, name, row.id, row.uidvalidity, row.highest_modseq);
    response.set_mailbox_id(row.id);
    response.set_uidvalidity(row.uidvalidity);
    return absl::OkStatus();
  }));
  return response;
}

absl::Status SqlStore::DeleteMailbox(uint64_t user_id,
                                        const v1::DeleteMailboxRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  if (name == kInbox) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 "INBOX cannot be deleted (RFC 3501 §6.3.4)");
  }
  return Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(std::optional<MailboxRow> mailbox, MailboxByName(conn, user_id, name));
    if (!mailbox.has_value()) {
      return v1::Nonexistent(absl::StrCat("mailbox \"", name, "\" does not exist"));
    }
    ASSIGN_OR_RETURN(bool has_children, HasInferiors(conn, user_id, name));
    if (has_children && mailbox->noselect) {
      return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                   absl::StrCat("mailbox \"", name,
                                "\" is \\Noselect and has inferior mailboxes; delete those "
                                "first (RFC 3501 §6.3.4)"));
    }
    if (!mailbox->noselect) {
      RETURN_IF_ERROR(tx.LogDeleted(mailbox->id).status());
    }
    {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("DELETE FROM messages WHERE mailbox_id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
    }
    {
      // Sessions of a deleted mailbox fetch nothing more, and a \Noselect name
      // made selectable again keeps its id: retained messages go now.
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("DELETE FROM expunged_messages WHERE mailbox_id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
    }
    if (has_children) {
      // RFC 3501 §6.3.4: the messages go, the name stays as \Noselect so that the
      // inferiors keep their place in the hierarchy.
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE mailboxes SET noselect = 1, special_use = '' "
                                    "WHERE id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
      ASSIGN_OR_RETURN(Statement keywords,
                       conn.Prepare("DELETE FROM mailbox_keywords WHERE mailbox_id = ?"));
      keywords.Bind(1, mailbox->id);
      RETURN_IF_ERROR(keywords.Run());
      tx.AnnounceList(user_id, v1::ChangeEvent::MailboxListChanged::NOSELECT, name, mailbox->id);
    } else {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("DELETE FROM mailboxes WHERE id = ?"));
      s.Bind(1, mailbox->id);
      RETURN_IF_ERROR(s.Run());
      tx.AnnounceList(user_id, v1::ChangeEvent::MailboxListChanged::DELETED, name, mailbox->id);
    }
    return ContentReleased(conn);
  });
}

absl::Status SqlStore::RenameMailbox(uint64_t user_id,
                                        const v1::RenameMailboxRequest& request) {
  ASSIGN_OR_RETURN(std::string from, NormalizeMailboxName(request.from(), limits_));
  ASSIGN_OR_RETURN(std::string to, NormalizeMailboxName(request.to(), limits_));
  if (to == from || to == kInbox) {
    return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                 absl::StrCat("mailbox \"", to, "\" already exists"));
  }
  // RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves INBOX (and its
  // inferiors) in place, so "RENAME INBOX INBOX/old" is fine; any other mailbox
  // cannot move under itself.
  if (from != kInbox && IsInferiorOf(to, from)) {
    return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                 absl::StrCat("cannot rename \"", from, "\" to its own inferior \"", to, "\""));
  }
  return Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(std::optional<MailboxRow> source, MailboxByName(conn, user_id, from));
    if (!source.has_value()) {
      return v1::Nonexistent(absl::StrCat("mailbox \"", from, "\" does not exist"));
    }
    ASSIGN_OR_RETURN(std::optional<MailboxRow> target, MailboxByName(conn, user_id, to));
    if (target.has_value()) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   absl::StrCat("mailbox \"", to, "\" already exists"));
    }
    RETURN_IF_ERROR(tx.CreateMissingSuperiors(user_id, to, /*noselect=*/false));

    if (from == kInbox) {
      // RFC 3501 §6.3.5: INBOX's messages move to a new mailbox; INBOX stays, empty,
      // and its inferiors are not renamed. The UIDs are kept: the new mailbox has its
      // own UIDVALIDITY, so (name, UIDVALIDITY, UID) still names one message.
      ASSIGN_OR_RETURN(MailboxRow created, InsertMailbox(conn, user_id, to, ""));
      // INBOX stays where it is: to its watchers a new mailbox appeared.
      tx.AnnounceCreated(user_id, to, created.id, created.uidvalidity, source->highest_modseq);
      {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("UPDATE mailboxes SET uidnext = ?, highest_modseq = ?, "
                                      "log_floor = ?, recent_floor = ? WHERE id = ?"));
        s.Bind(1, source->uidnext)
            .Bind(2, source->highest_modseq)
            .Bind(3, source->highest_modseq)
            .Bind(4, source->recent_floor)
            .Bind(5, created.id);
        RETURN_IF_ERROR(s.Run());
      }
      ASSIGN_OR_RETURN(std::vector<uint32_t> uids, AllUidsOf(conn, source->id));
      // INBOX sessions see these UIDs expunged and may fetch them until told.
      RETURN_IF_ERROR(tx.RetainAllMessages(source->id));
      {
        // Saved into the new mailbox now (RFC 8514 §3).
        ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE messages SET mailbox_id = ?, "
                                                   "save_date = ? WHERE mailbox_id = ?"));
        s.Bind(1, created.id).Bind(2, tx.now_unix()).Bind(3, source->id);
        RETURN_IF_ERROR(s.Run());
      }
      {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("INSERT INTO mailbox_keywords (mailbox_id, keyword) "
                                      "SELECT ?, keyword FROM mailbox_keywords "
                                      "WHERE mailbox_id = ?"));
        s.Bind(1, created.id).Bind(2, source->id);
        RETURN_IF_ERROR(s.Run());
      }
      if (!uids.empty()) {
        RETURN_IF_ERROR(tx.LogExpunged(source->id, uids).status());
      }
      return absl::OkStatus();
    }

    // The mailbox and its inferiors move together (RFC 3501 §6.3.5).
    ASSIGN_OR_RETURN(std::vector<MailboxRow> all, UserMailboxes(conn, user_id));
    for (const MailboxRow& mailbox : all) {
      if (mailbox.name != from && !IsInferiorOf(mailbox.name, from)) {
        continue;
      }
      std::string new_name = absl::StrCat(to, mailbox.name.substr(from.size()));
      absl::StatusOr<std::string> valid = NormalizeMailboxName(new_name, limits_);
      if (!valid.ok()) {
        return v1::MakeError(valid.status().code(), v1::DetailOf(valid.status()).code(),
                             absl::StrCat("renaming would give \"", mailbox.name,
                                          "\" an invalid name: ", valid.status().message()));
      }
      ASSIGN_OR_RETURN(std::optional<MailboxRow> clash, MailboxByName(conn, user_id, new_name));
      if (clash.has_value()) {
        return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                     absl::StrCat("mailbox \"", new_name, "\" already exists"));
      }
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("UPDATE mailboxes SET name = ? WHERE id = ?"));
      s.BindText(1, new_name).Bind(2, mailbox.id);
      RETURN_IF_ERROR(s.Run());
      // RFC 5465 §5.4: one event for each mailbox renamed, inferiors included.
      tx.AnnounceList(user_id, v1::ChangeEvent::MailboxListChanged::RENAMED, new_name, mailbox.id, mailbox.name);
      if (!mailbox.noselect) {
        RETURN_IF_ERROR(tx.LogChange(mailbox.id, [&](v1::ChangeEvent& event, uint64_t) {
                            event.mutable_renamed()->set_new_name(new_name);
                          }).status());
      }
    }
    return absl::OkStatus();
  });
}

absl::Status SqlStore::SetSubscription(uint64_t user_id,
                                          const v1::SetSubscriptionRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  return Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(bool user_exists, UserExists(conn, user_id));
    if (!user_exists) {
      return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
    }
    if (request.subscribed()) {
      RETURN_IF_ERROR(AddSubscription(conn, user_id, name));
    } else {
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("DELETE FROM subscriptions WHERE user_id = ? AND name = ?"));
      s.Bind(1, user_id).BindText(2, name);
      RETURN_IF_ERROR(s.Run());
    }
    // RFC 5465 §5.5: a change of the subscriptions, not a repeated request.
    if (conn.Changes() > 0) {
      tx.AnnounceList(user_id,
                      request.subscribed() ? v1::ChangeEvent::MailboxListChanged::SUBSCRIBED : v1::ChangeEvent::MailboxListChanged::UNSUBSCRIBED,
                      name);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::StatusResponse> SqlStore::Status(uint64_t user_id,
                                                       const v1::StatusRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectableByName(*conn, user_id, name));
  ASSIGN_OR_RETURN(Statement s,
                   conn->Prepare(
                       "SELECT count(*), "
                       "CAST(coalesce(sum(CASE WHEN (m.system_flags & 8) = 0 THEN 1 ELSE 0 END), "
                       "0) AS BIGINT), "
                       "CAST(coalesce(sum(CASE WHEN (m.system_flags & 4) != 0 THEN 1 ELSE 0 END), "
                       "0) AS BIGINT), "
                       "CAST(coalesce(sum(c.size), 0) AS BIGINT), "
                       "CAST(coalesce(sum(CASE WHEN m.uid >= ? THEN 1 ELSE 0 END), 0) AS BIGINT), "
                       "CAST(coalesce(sum(CASE WHEN (m.system_flags & 4) != 0 THEN c.size "
                       "ELSE 0 END), 0) AS BIGINT) "
                                 "FROM messages m JOIN contents c ON c.id = m.content_id "
                                 "WHERE m.mailbox_id = ?"));
  s.Bind(1, mailbox.recent_floor).Bind(2, mailbox.id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  v1::StatusResponse response;
  response.set_mailbox_id(mailbox.id);
  response.set_uidnext(mailbox.uidnext);
  response.set_uidvalidity(mailbox.uidvalidity);
  response.set_highest_modseq(mailbox.highest_modseq);
  if (row) {
    response.set_messages(static_cast<uint32_t>(s.Int(0)));
    response.set_unseen(static_cast<uint32_t>(s.Int(1)));
    response.set_deleted(static_cast<uint32_t>(s.Int(2)));
    response.set_size(static_cast<uint64_t>(s.Int(3)));
    response.set_recent(static_cast<uint32_t>(s.Int(4)));
    response.set_deleted_storage(static_cast<uint64_t>(s.Int(5)));
  }
  return response;
}

absl::StatusOr<v1::GetMetadataResponse> SqlStore::GetMetadata(
    uint64_t user_id, const v1::GetMetadataRequest& request) {
  if (request.depth() < -1 || request.depth() > 1) {
    return BadRequest("DEPTH is 0, 1 or infinity (RFC 5464 §4.2.2)");
  }
  std::vector<std::string> names;
  for (const std::string& entry : request.entries()) {
    ASSIGN_OR_RETURN(std::string name, CanonicalEntryName(entry));
    names.push_back(std::move(name));
  }
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(uint64_t mailbox_id,
                   MetadataMailbox(*conn, user_id, request.mailbox(), limits_));
  std::map<std::string, std::string> found;
  for (const std::string& name : names) {
    // The entry itself, and with a depth the names below it: those starting with
    // name + "/", i.e. in [name + "/", name + "0") ('0' follows '/' in ASCII).
    const bool below = request.depth() != 0;
    ASSIGN_OR_RETURN(Statement s,
                     conn->Prepare(below ? "SELECT name, value FROM metadata WHERE user_id = ? "
                                           "AND mailbox_id = ? AND (name = ? OR (name >= ? "
                                           "AND name < ?)) ORDER BY name"
                                         : "SELECT name, value FROM metadata WHERE user_id = ? "
                                           "AND mailbox_id = ? AND name = ?"));
    // Bound text is read when the statement runs: the bounds must outlive it.
    const std::string first_below = name + "/";
    const std::string past_below = name + "0";
    s.Bind(1, user_id).Bind(2, mailbox_id).BindText(3, name);
    if (below) {
      s.BindText(4, first_below).BindText(5, past_below);
    }
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      std::string found_name(s.Text(0));
      if (request.depth() == 1 && found_name.size() > name.size() &&
          found_name.find('/', name.size() + 1) != std::string::npos) {
        continue;  // a grandchild: DEPTH 1 stops at children
      }
      found.emplace(std::move(found_name), std::string(s.Blob(1)));
    }
  }
  v1::GetMetadataResponse response;
  for (auto& [name, value] : found) {
    if (request.max_size() > 0 && value.size() > request.max_size()) {
      response.set_longest_left_out(std::max<uint64_t>(response.longest_left_out(), value.size()));
      continue;
    }
    v1::MetadataEntry* entry = response.add_entries();
    entry->set_name(name);
    entry->set_value(std::move(value));
  }
  return response;
}

absl::Status SqlStore::SetMetadata(uint64_t user_id, const v1::SetMetadataRequest& request) {
  std::vector<std::pair<std::string, const v1::MetadataEntry*>> entries;
  bool adds = false;
  for (const v1::MetadataEntry& entry : request.entries()) {
    ASSIGN_OR_RETURN(std::string name, CanonicalEntryName(entry.name()));
    if (request.mailbox().empty() && absl::StartsWith(name, "/shared/")) {
      // §3.3: servers may restrict server annotations; shared ones are the
      // operator's, a user may only keep private ones.
      return Error(absl::StatusCode::kPermissionDenied, v1::NOPERM,
                   "the server's /shared annotations are set by the administrator");
    }
    if (entry.has_value() && entry.value().size() > limits_.max_metadata_value_octets) {
      v1::ErrorDetail detail;
      detail.set_code(v1::METADATA_MAXSIZE);
      detail.set_limit(limits_.max_metadata_value_octets);
      detail.set_message(absl::StrCat("the value of ", name, " is ", entry.value().size(),
                                      " octets; at most ", limits_.max_metadata_value_octets,
                                      " are kept"));
      return v1::MakeError(absl::StatusCode::kResourceExhausted, detail);
    }
    adds = adds || entry.has_value();
    entries.emplace_back(std::move(name), &entry);
  }
  return Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(uint64_t mailbox_id,
                     MetadataMailbox(conn, user_id, request.mailbox(), limits_));
    // RFC 5465 §5.6, §5.7 (NOTIFY's MailboxMetadataChange and
    // ServerMetadataChange): the entries that changed, named up to a bound.
    std::vector<std::string> changed;
    bool too_many = false;
    for (const auto& [name, entry] : entries) {
      if (entry->has_value()) {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("INSERT INTO metadata (user_id, mailbox_id, name, value) "
                                      "VALUES (?, ?, ?, ?) ON CONFLICT (user_id, mailbox_id, "
                                      "name) DO UPDATE SET value = excluded.value"));
        s.Bind(1, user_id).Bind(2, mailbox_id).BindText(3, name).BindBlob(4, entry->value());
        RETURN_IF_ERROR(s.Run());
      } else {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("DELETE FROM metadata WHERE user_id = ? AND "
                                      "mailbox_id = ? AND name = ?"));
        s.Bind(1, user_id).Bind(2, mailbox_id).BindText(3, name);
        RETURN_IF_ERROR(s.Run());
      }
      if (conn.Changes() > 0 && !too_many) {
        if (changed.size() < kMaxMetadataEventEntries) {
          changed.push_back(name);
        } else {
          too_many = true;
          changed.clear();
        }
      }
    }
    if (!changed.empty() || too_many) {
      std::string mailbox_name;
      if (mailbox_id != 0) {
        ASSIGN_OR_RETURN(mailbox_name, NormalizeMailboxName(request.mailbox(), limits_));
      }
      v1::ChangeEvent::MailboxListChanged* change = tx.AnnounceListEvent(
          user_id, v1::ChangeEvent::MailboxListChanged::METADATA_CHANGED, mailbox_name,
          mailbox_id, {});
      for (std::string& name : changed) {
        change->add_entries(std::move(name));
      }
    }
    if (!adds) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(Statement total,
                     conn.Prepare("SELECT count(*), CAST(coalesce(sum(length(name) + "
                                  "length(value)), 0) AS BIGINT) FROM metadata WHERE user_id = ?"));
    total.Bind(1, user_id);
    ASSIGN_OR_RETURN(bool row, total.Step());
    if (row && (total.Int(0) > limits_.max_metadata_entries ||
                static_cast<uint64_t>(total.Int(1)) > limits_.max_metadata_octets)) {
      return Error(absl::StatusCode::kResourceExhausted, v1::METADATA_TOOMANY,
                   absl::StrCat("an account keeps at most ", limits_.max_metadata_entries,
                                " annotations and ", limits_.max_metadata_octets,
                                " octets of them; remove some first"));
    }
    return absl::OkStatus();
  });
}

absl::Status SqlStore::SetQuota(std::string_view username, const v1::QuotaLimits& limits) {
  // Limits are stored as signed 64-bit integers, and STORAGE is compared in octets.
  constexpr uint64_t kMaxLimit = std::numeric_limits<int64_t>::max() / kKib;
  if ((limits.has_storage_kib() && limits.storage_kib() > kMaxLimit) ||
      (limits.has_messages() && limits.messages() > kMaxLimit)) {
    return BadRequest(absl::StrCat("a quota limit must be at most ", kMaxLimit));
  }
  ASSIGN_OR_RETURN(UserRecord user, FindUser(username));
  return Write(WriteScope::User(user.id), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Statement s, tx.conn().Prepare("UPDATE users SET quota_storage_kib = ?, "
                                                    "quota_messages = ? WHERE id = ?"));
    if (limits.has_storage_kib()) {
      s.Bind(1, limits.storage_kib());
    } else {
      s.BindNull(1);
    }
    if (limits.has_messages()) {
      s.Bind(2, limits.messages());
    } else {
      s.BindNull(2);
    }
    s.Bind(3, user.id);
    RETURN_IF_ERROR(s.Run());
    if (tx.conn().Changes() == 0) {
      return absl::NotFoundError(absl::StrCat("user \"", AV(username), "\" does not exist"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::GetUserQuotaResponse> SqlStore::GetUserQuota(uint64_t user_id) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(QuotaLimitsRow limits, ReadQuotaLimits(*conn, user_id));
  ASSIGN_OR_RETURN(QuotaUsage usage, ReadQuotaUsage(*conn, user_id));
  v1::GetUserQuotaResponse response;
  if (limits.storage_kib.has_value()) {
    response.mutable_limits()->set_storage_kib(*limits.storage_kib);
  }
  if (limits.messages.has_value()) {
    response.mutable_limits()->set_messages(*limits.messages);
  }
  response.set_storage_octets(usage.octets);
  response.set_messages(usage.messages);
  return response;
}

absl::StatusOr<v1::GetQuotaResponse> SqlStore::GetQuota(uint64_t user_id,
                                                           const v1::GetQuotaRequest& request) {
  std::string name;
  switch (request.target_case()) {
    case v1::GetQuotaRequest::kRoot:
      // RFC 9208 §4.2: each user has one root, named "".
      if (!request.root().empty()) {
        return v1::Nonexistent(absl::StrCat("there is no quota root \"",
                                            AV(request.root()).substr(0, 100),
                                            "\"; this account's quota root is \"\""));
      }
      break;
    case v1::GetQuotaRequest::kMailbox: {
      ASSIGN_OR_RETURN(name, NormalizeMailboxName(request.mailbox(), limits_));
      break;
    }
    case v1::GetQuotaRequest::TARGET_NOT_SET:
      return BadRequest("GetQuota needs a quota root or a mailbox");
  }
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  if (request.target_case() == v1::GetQuotaRequest::kMailbox) {
    ASSIGN_OR_RETURN(std::optional<MailboxRow> mailbox, MailboxByName(*conn, user_id, name));
    if (!mailbox.has_value()) {
      return v1::Nonexistent(absl::StrCat("mailbox \"", AV(name), "\" does not exist"));
    }
  }
  ASSIGN_OR_RETURN(QuotaLimitsRow limits, ReadQuotaLimits(*conn, user_id));
  v1::GetQuotaResponse response;
  if (!limits.limited()) {
    if (request.target_case() == v1::GetQuotaRequest::kRoot) {
      return v1::Nonexistent("this account has no quota");
    }
    return response;  // GETQUOTAROOT: the mailbox is under no quota root
  }
  ASSIGN_OR_RETURN(QuotaUsage usage, ReadQuotaUsage(*conn, user_id));
  response.add_roots("");
  AddQuotaResources(limits, usage, response);
  return response;
}

// ---------------------------------------------------------------------------
// Selected-mailbox operations

absl::StatusOr<v1::OpenResponse> SqlStore::Open(uint64_t user_id,
                                                   const v1::OpenRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.name(), limits_));
  v1::OpenResponse response;
  bool has_recent = false;
  // Everything but the \Recent claim is a read: `fill` runs in a read snapshot,
  // and again in a write transaction (claim = true) only when there are \Recent
  // messages to claim, so that SELECT does not usually contend with writers.
  auto fill = [&](Connection& conn, bool claim) -> absl::Status {
    response.Clear();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectableByName(conn, user_id, name));
    has_recent = mailbox.recent_floor < mailbox.uidnext;
    response.set_mailbox_id(mailbox.id);
    response.set_uidvalidity(mailbox.uidvalidity);
    response.set_uidnext(mailbox.uidnext);
    response.set_highest_modseq(mailbox.highest_modseq);
    response.set_read_only(request.read_only());
    for (const SystemFlag& flag : kSystemFlags) {
      response.add_flags(std::string(flag.name));
    }
    {
      ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT keyword FROM mailbox_keywords "
                                                 "WHERE mailbox_id = ? ORDER BY lower(keyword)"));
      s.Bind(1, mailbox.id);
      while (true) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) {
          break;
        }
        response.add_flags(std::string(s.Text(0)));
      }
    }
    *response.mutable_permanent_flags() = response.flags();
    response.add_permanent_flags("\\*");

    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT uid, system_flags FROM messages "
                                               "WHERE mailbox_id = ? ORDER BY uid"));
    s.Bind(1, mailbox.id);
    UidSetBuilder uids, recent;
    uint32_t messages = 0, unseen = 0, recent_count = 0, first_unseen = 0;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      uint32_t uid = static_cast<uint32_t>(s.Int(0));
      uint32_t system = static_cast<uint32_t>(s.Int(1));
      ++messages;
      uids.Add(uid);
      if (!(system & kSeenBit)) {
        ++unseen;
        if (first_unseen == 0) {
          first_unseen = uid;
        }
      }
      if (uid >= mailbox.recent_floor) {
        ++recent_count;
        // RFC 3501 §2.3.2: EXAMINE sees \Recent without taking it from others.
        if (claim || request.read_only()) {
          recent.Add(uid);
        }
      }
    }
    response.set_messages(messages);
    response.set_unseen(unseen);
    response.set_first_unseen_uid(first_unseen);
    response.set_recent(recent_count);
    *response.mutable_uids() = uids.Take();
    *response.mutable_recent_uids() = recent.Take();
    if (claim && mailbox.recent_floor < mailbox.uidnext) {
      // RFC 3501 §2.3.2: \Recent goes to exactly one session.
      ASSIGN_OR_RETURN(Statement update,
                       conn.Prepare("UPDATE mailboxes SET recent_floor = uidnext WHERE id = ?"));
      update.Bind(1, mailbox.id);
      RETURN_IF_ERROR(update.Run());
    }
    return absl::OkStatus();
  };
  {
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    ReadSnapshot snapshot(*conn);
    RETURN_IF_ERROR(snapshot.Begin());
    RETURN_IF_ERROR(fill(*conn, false));
  }
  if (!request.read_only() && !request.keep_recent() && has_recent) {
    RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) { return fill(tx.conn(), true); }));
  }
  return response;
}

absl::StatusOr<v1::ClaimRecentResponse> SqlStore::ClaimRecent(
    uint64_t user_id, const v1::ClaimRecentRequest& request) {
  v1::ClaimRecentResponse response;
  {
    // Usually another session claimed them first: find that out with a read.
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    if (mailbox.recent_floor > request.up_to_uid()) {
      return response;
    }
  }
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response.Clear();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    if (mailbox.recent_floor > request.up_to_uid() || mailbox.uidnext <= 1) {
      return absl::OkStatus();
    }
    const uint32_t up_to = std::min(request.up_to_uid(), mailbox.uidnext - 1);
    ASSIGN_OR_RETURN(Statement s, conn.Prepare("SELECT uid FROM messages WHERE mailbox_id = ? "
                                               "AND uid >= ? AND uid <= ? ORDER BY uid"));
    s.Bind(1, mailbox.id).Bind(2, mailbox.recent_floor).Bind(3, up_to);
    UidSetBuilder claimed;
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      claimed.Add(static_cast<uint32_t>(s.Int(0)));
    }
    *response.mutable_claimed() = claimed.Take();
    // The floor only moves up (every writer of it holds the user's write scope).
    ASSIGN_OR_RETURN(Statement update,
                     conn.Prepare("UPDATE mailboxes SET recent_floor = ? "
                                  "WHERE id = ? AND recent_floor < ?"));
    update.Bind(1, static_cast<int64_t>(up_to) + 1)
        .Bind(2, mailbox.id)
        .Bind(3, static_cast<int64_t>(up_to) + 1);
    return update.Run();
  }));
  return response;
}

absl::StatusOr<v1::VanishedResponse> SqlStore::Vanished(uint64_t user_id,
                                                        const v1::VanishedRequest& request) {
  Ranges within = AllUids();
  if (request.uids().ranges_size() > 0) {
    ASSIGN_OR_RETURN(within, NormalizeUidSet(request.uids()));
  }
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                       request.uidvalidity()));
  v1::VanishedResponse response;
  if (request.since_modseq() >= mailbox.log_floor) {
    response.set_exact(true);
    if (request.since_modseq() >= mailbox.highest_modseq) {
      return response;  // nothing happened since
    }
    // The log holds every change after since_modseq (at most change_log_retention
    // of them), expunges included; read one at a time, keeping only expunges.
    Ranges found;
    RETURN_IF_ERROR(ForEachLogged(*conn, mailbox.id, request.since_modseq(),
                                  [&](const v1::ChangeEvent& event) {
                                    rules::CollectExpunged(event, within, &found);
                                  }));
    *response.mutable_uids() = rules::MergedUidSet(std::move(found));
    return response;
  }
  // Only the UIDs the request spans are read.
  const uint64_t lowest = within.front().first;
  const uint64_t highest =
      std::min<uint64_t>(within.back().second, mailbox.uidnext > 0 ? mailbox.uidnext - 1 : 0);
  ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT uid FROM messages WHERE mailbox_id = ? "
                                              "AND uid >= ? AND uid <= ? ORDER BY uid"));
  s.Bind(1, mailbox.id).Bind(2, static_cast<int64_t>(lowest)).Bind(3, static_cast<int64_t>(highest));
  std::vector<uint32_t> live;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) {
      break;
    }
    live.push_back(static_cast<uint32_t>(s.Int(0)));
  }
  *response.mutable_uids() = rules::AbsentWithin(live, within, mailbox.uidnext);
  return response;
}

absl::Status SqlStore::Fetch(uint64_t user_id, const v1::FetchRequest& request,
                                FetchSink& sink) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(request.uids()));
  for (const v1::Section& section : request.sections()) {
    RETURN_IF_ERROR(ValidateSection(section));
  }
  if (request.changed_since() > kMaxModseq) {
    return BadRequest(absl::StrCat("CHANGEDSINCE ", request.changed_since(),
                                   " is not a mod-sequence value (at most 2^63-1, RFC 7162 §7)"));
  }
  const uint64_t changed_since = request.changed_since();

  // mark_seen: set \Seen first, in its own transaction, so the metadata streamed
  // below already shows it.
  std::set<uint32_t> seen_changed;
  if (request.mark_seen()) {
    RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
      Connection& conn = tx.conn();
      seen_changed.clear();  // a retried write starts afresh
      ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                           request.uidvalidity()));
      ASSIGN_OR_RETURN(std::vector<MessageRow> unseen,
                       LoadMessages(conn, mailbox.id, ranges, [&](const MessageRow& m) {
                         return !(m.system & kSeenBit) && m.modseq > changed_since;
                       }));
      if (unseen.empty()) {
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(uint64_t modseq, tx.NextModseq(mailbox.id));
      v1::ChangeEvent event;
      event.set_mailbox_id(mailbox.id);
      event.set_modseq(modseq);
      for (const MessageRow& m : unseen) {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("UPDATE messages SET system_flags = ?, modseq = ? "
                                      "WHERE mailbox_id = ? AND uid = ?"));
        s.Bind(1, m.system | kSeenBit).Bind(2, modseq).Bind(3, mailbox.id).Bind(4, m.uid);
        RETURN_IF_ERROR(s.Run());
        *event.mutable_flags_changed()->add_messages() =
            MakeMessageFlags(m.uid, m.system | kSeenBit, m.keywords, modseq);
        seen_changed.insert(m.uid);
      }
      return tx.Log(std::move(event));
    }));
  }

  // Previews made during the fetch for content that had none, by content id.
  std::map<int64_t, std::string> made_previews;
  {
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    ReadSnapshot snapshot(*conn);
    RETURN_IF_ERROR(snapshot.Begin());
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    const size_t chunk_octets = limits_.fetch_chunk_octets;
    const bool include_expunged =
        request.include_expunged() && options_.expunged_retention.count() > 0;
    // Pruning is opportunistic, so rows older than the window may linger; they are
    // not returned, which keeps the window the contract.
    const int64_t retained_since_ms = NowMs() - options_.expunged_retention.count();

    // The row of a content's stored MIME structure (mime::Serialize's form, in
    // column 0), read where it lies while the statement lives.
    auto parsed_of = [&](int64_t content_id) -> absl::StatusOr<Statement> {
      ASSIGN_OR_RETURN(Statement p, conn->Prepare("SELECT parsed FROM contents WHERE id = ?"));
      p.Bind(1, content_id);
      ASSIGN_OR_RETURN(bool found, p.Step());
      if (!found) {
        return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                     "store: message content row is missing");
      }
      return p;
    };

    // The preview of content that has none stored (RFC 8970 §2).
    auto make_preview = [&](int64_t content_id) -> absl::StatusOr<std::string> {
      ASSIGN_OR_RETURN(Statement stored, parsed_of(content_id));
      ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> blob, OpenContent(*conn, content_id));
      return PreviewOfStored(
          stored.Blob(0), [&](uint64_t offset, uint64_t length, std::string* out) -> absl::Status {
            if (offset >= blob->size()) {
              return absl::OkStatus();
            }
            return blob->Read(offset, std::min<uint64_t>(length, blob->size() - offset), out);
          });
    };

    // Sends the metadata and the requested sections of the message at the current
    // row of `s`; live and retained rows have the same columns.
    auto send_message = [&](const Statement& s, bool expunged) -> absl::Status {
      const uint32_t uid = static_cast<uint32_t>(s.Int(0));
      // mark_seen never touches a retained message (it is not in `messages`).
      const bool seen_now = !expunged && seen_changed.count(uid) > 0;
      const int64_t content_id = s.Int(10);
      {
        v1::FetchResponse response;
        v1::FetchedMetadata* meta = response.mutable_metadata();
        meta->set_uid(uid);
        if (request.flags() || seen_now) {
          for (std::string& flag :
               FlagList(static_cast<uint32_t>(s.Int(2)), s.Text(3))) {
            meta->add_flags(std::move(flag));
          }
        }
        if (request.internal_date()) {
          meta->set_internal_date_unix(s.Int(4));
          meta->set_internal_date_tz_minutes(static_cast<int32_t>(s.Int(5)));
        }
        if (request.size()) {
          meta->set_size(s.Int(6));
        }
        if (request.envelope()) {
          meta->set_envelope(std::string(s.Text(7)));
        }
        if (request.body()) {
          meta->set_body(std::string(s.Text(8)));
        }
        if (request.bodystructure()) {
          meta->set_bodystructure(std::string(s.Text(9)));
        }
        if (request.modseq() || seen_now) {
          meta->set_modseq(s.Int(1));
        }
        if (request.email_id()) {
          meta->set_email_id(rules::EmailObjectId(s.Blob(11)));
        }
        // RFC 8514 §4.2: NIL only from a mailbox that keeps no save dates, and
        // every mailbox here keeps them. A message stored before they were kept
        // answers its internal date, the date SAVED* search compares for it too.
        if (request.save_date()) {
          meta->set_has_save_date(true);
          meta->set_save_date_unix(s.IsNull(12) ? s.Int(4) : s.Int(12));
        }
        if (request.preview()) {
          std::optional<std::string> preview;
          if (!s.IsNull(13)) {
            preview = std::string(s.Text(13));
          } else if (auto made = made_previews.find(content_id); made != made_previews.end()) {
            preview = made->second;
          } else if (!request.preview_lazy()) {
            // Content stored before previews were kept: made now and kept after
            // the fetch. With LAZY (RFC 8970 §3.1) the answer is NIL instead.
            ASSIGN_OR_RETURN(std::string made_now, make_preview(content_id));
            preview = made_previews.emplace(content_id, std::move(made_now)).first->second;
          }
          if (preview.has_value()) {
            meta->set_has_preview(true);
            meta->set_preview(*std::move(preview));
          }
        }
        meta->set_seen_changed(seen_now);
        meta->set_expunged(expunged);
        if (!sink.Send(response)) {
          return FetchCancelled();
        }
      }
      if (request.sections().empty()) {
        return absl::OkStatus();
      }

      mime::ParsedMessage parsed;
      {
        ASSIGN_OR_RETURN(Statement stored, parsed_of(content_id));
        absl::StatusOr<mime::ParsedMessage> message = mime::Deserialize(stored.Blob(0));
        if (!message.ok()) {
          return Error(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                       absl::StrCat("store: stored structure of UID ", uid,
                                    " is unreadable: ", message.status().message()));
        }
        parsed = *std::move(message);
      }
      ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> blob, OpenContent(*conn, content_id));

      for (int index = 0; index < request.sections_size(); ++index) {
        const v1::Section& section = request.sections(index);
        mime::SectionSpec spec = ToSpec(section);
        std::string header_bytes;
        if (std::optional<std::pair<uint64_t, uint64_t>> range =
                mime::RequiredHeaderRange(parsed, spec);
            range.has_value() && range->first <= range->second &&
            range->second <= blob->size()) {
          RETURN_IF_ERROR(blob->Read(range->first, range->second - range->first, &header_bytes));
        }
        absl::StatusOr<mime::ResolvedSection> resolved =
            mime::ResolveSection(parsed, header_bytes, spec);
        v1::FetchResponse response;
        v1::SectionChunk* chunk = response.mutable_chunk();
        chunk->set_uid(uid);
        chunk->set_section_index(index);
        chunk->set_last(true);
        if (!resolved.ok()) {
          if (resolved.status().code() == absl::StatusCode::kFailedPrecondition) {
            // RFC 3516 §4.3: BINARY of an encoding we cannot decode.
            chunk->set_error_unknown_cte(true);
          }
          // Otherwise the spec does not apply to this message's structure (e.g.
          // HEADER of a part that is no message): an empty section, as for a
          // nonexistent part.
          if (!sink.Send(response)) {
            return FetchCancelled();
          }
          continue;
        }
        if (section.size_only()) {
          chunk->set_total_size(resolved->size);
          if (!sink.Send(response)) {
            return FetchCancelled();
          }
          continue;
        }
        std::unique_ptr<mime::Decoder> decoder;
        if (!resolved->binary_encoding.empty()) {
          decoder = mime::Decoder::For(resolved->binary_encoding);
          if (decoder == nullptr) {
            chunk->set_error_unknown_cte(true);
            if (!sink.Send(response)) {
              return FetchCancelled();
            }
            continue;
          }
        }
        // RFC 3501 §6.4.5 <partial>: an origin beyond the end gives an empty string.
        uint64_t size = resolved->size;
        uint64_t skip = 0, total = size;
        if (section.has_partial()) {
          skip = std::min(section.partial_offset(), size);
          total = std::min(section.partial_count(), size - skip);
        }
        SectionStreamer streamer(sink, uid, index, skip, total, chunk_octets);
        std::string block, decoded;
        for (const mime::Piece& piece : resolved->pieces) {
          if (streamer.done()) {
            break;
          }
          if (piece.is_generated) {
            if (!streamer.Feed(piece.generated)) {
              return FetchCancelled();
            }
            continue;
          }
          uint64_t pos = piece.begin;
          uint64_t end = std::min<uint64_t>(piece.end, blob->size());
          if (decoder == nullptr && pos < end) {
            // Raw bytes before the <partial> origin are skipped without reading.
            uint64_t jump = std::min(streamer.skip_remaining(), end - pos);
            streamer.Skip(jump);
            pos += jump;
          }
          while (pos < end && !streamer.done()) {
            uint64_t n = std::min<uint64_t>(chunk_octets, end - pos);
            block.clear();
            RETURN_IF_ERROR(blob->Read(pos, n, &block));
            pos += n;
            bool ok;
            if (decoder != nullptr) {
              decoded.clear();
              decoder->Feed(block, &decoded);
              ok = streamer.Feed(decoded);
            } else {
              ok = streamer.Feed(block);
            }
            if (!ok) {
              return FetchCancelled();
            }
          }
        }
        if (decoder != nullptr && !streamer.done()) {
          decoded.clear();
          decoder->Finish(&decoded);
          if (!streamer.Feed(decoded)) {
            return FetchCancelled();
          }
        }
        if (!streamer.Finish()) {
          return FetchCancelled();
        }
      }
      return absl::OkStatus();
    };

    for (const auto& [first, last] : ranges) {
      ASSIGN_OR_RETURN(Statement live,
                       conn->Prepare("SELECT m.uid, m.modseq, m.system_flags, m.keywords, "
                                     "m.internal_date, m.internal_tz, c.size, c.envelope, c.body, "
                                     "c.bodystructure, c.id, c.sha256, m.save_date, c.preview "
                                     "FROM messages m JOIN contents c ON c.id = m.content_id "
                                     "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                                     "AND m.modseq > ? ORDER BY m.uid"));
      live.Bind(1, mailbox.id).Bind(2, first).Bind(3, last).Bind(4, changed_since);
      Statement gone;
      bool gone_row = false;
      if (include_expunged) {
        // RFC 3501 §7.4.1: a session not yet told of an expunge may still fetch the
        // message. A UID is either live or retained; the NOT EXISTS only guards
        // against reporting one twice.
        ASSIGN_OR_RETURN(gone,
                         conn->Prepare("SELECT e.uid, e.modseq, e.system_flags, e.keywords, "
                                       "e.internal_date, e.internal_tz, c.size, c.envelope, "
                                       "c.body, c.bodystructure, c.id, c.sha256, e.save_date, "
                                       "c.preview FROM expunged_messages e "
                                       "JOIN contents c ON c.id = e.content_id "
                                       "WHERE e.mailbox_id = ? AND e.uid BETWEEN ? AND ? "
                                       "AND e.modseq > ? AND e.expunged_at_ms >= ? "
                                       "AND NOT EXISTS (SELECT 1 FROM messages m "
                                       "WHERE m.mailbox_id = e.mailbox_id AND m.uid = e.uid) "
                                       "ORDER BY e.uid"));
        gone.Bind(1, mailbox.id)
            .Bind(2, first)
            .Bind(3, last)
            .Bind(4, changed_since)
            .Bind(5, retained_since_ms);
        ASSIGN_OR_RETURN(gone_row, gone.Step());
      }
      ASSIGN_OR_RETURN(bool live_row, live.Step());
      // Both cursors ascend by UID: merge them so the sink sees one UID order.
      while (live_row || gone_row) {
        const bool take_gone = gone_row && (!live_row || gone.Int(0) < live.Int(0));
        Statement& s = take_gone ? gone : live;
        RETURN_IF_ERROR(send_message(s, take_gone));
        ASSIGN_OR_RETURN(bool more, s.Step());
        (take_gone ? gone_row : live_row) = more;
      }
    }
  }
  // Kept for the next fetch. The fetch has been answered already: a failure here
  // only means they are made again.
  KeepMadeContentValues(user_id, "UPDATE contents SET preview = ? WHERE id = ? AND preview IS NULL",
                        /*blob=*/false, made_previews);
  return absl::OkStatus();
}

absl::StatusOr<v1::StoreResponse> SqlStore::StoreFlags(uint64_t user_id,
                                                          const v1::StoreRequest& request) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(request.uids()));
  if (request.mode() != v1::StoreRequest::SET && request.mode() != v1::StoreRequest::ADD &&
      request.mode() != v1::StoreRequest::REMOVE) {
    return BadRequest("STORE mode must be SET, ADD or REMOVE");
  }
  ASSIGN_OR_RETURN(FlagSet flags, ParseFlags(request.flags()));
  v1::StoreResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response = v1::StoreResponse();  // a retried write starts afresh
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    ASSIGN_OR_RETURN(std::vector<MessageRow> messages,
                     LoadMessages(conn, mailbox.id, ranges,
                                  [](const MessageRow&) { return true; }));
    UidSetBuilder modified;
    std::optional<uint64_t> modseq;  // one MODSEQ for the whole STORE, allocated on demand
    v1::ChangeEvent event;
    for (const MessageRow& m : messages) {
      // RFC 7162 §3.1.3: a message changed since UNCHANGEDSINCE is left alone and
      // reported as MODIFIED.
      if (request.has_unchanged_since() && m.modseq > request.unchanged_since()) {
        modified.Add(m.uid);
        continue;
      }
      uint32_t system = m.system;
      std::vector<std::string> keywords = SplitKeywords(m.keywords);
      switch (request.mode()) {
        case v1::StoreRequest::SET:
          system = flags.system;
          keywords = flags.keywords;
          break;
        case v1::StoreRequest::ADD:
          system |= flags.system;
          for (const std::string& k : flags.keywords) {
            if (!ContainsKeyword(keywords, k)) {
              keywords.push_back(k);
            }
          }
          break;
        default:
          system &= ~flags.system;
          keywords.erase(std::remove_if(keywords.begin(), keywords.end(),
                                        [&](const std::string& k) {
                                          return ContainsKeyword(flags.keywords, k);
                                        }),
                         keywords.end());
      }
      std::string joined = JoinKeywords(keywords);
      const std::vector<std::string> old_keywords = SplitKeywords(m.keywords);
      bool same_keywords = keywords.size() == old_keywords.size() &&
                           std::all_of(keywords.begin(), keywords.end(), [&](const auto& k) {
                             return ContainsKeyword(old_keywords, k);
                           });
      if (system == m.system && same_keywords) {
        continue;  // nothing changed: no new MODSEQ (RFC 7162 §3.1.3)
      }
      if (!modseq.has_value()) {
        ASSIGN_OR_RETURN(modseq, tx.NextModseq(mailbox.id));
        event.set_mailbox_id(mailbox.id);
        event.set_modseq(*modseq);
        event.mutable_flags_changed();
      }
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE messages SET system_flags = ?, keywords = ?, "
                                    "modseq = ? WHERE mailbox_id = ? AND uid = ?"));
      s.Bind(1, system).BindText(2, joined).Bind(3, *modseq).Bind(4, mailbox.id).Bind(5, m.uid);
      RETURN_IF_ERROR(s.Run());
      v1::MessageFlags changed = MakeMessageFlags(m.uid, system, joined, *modseq);
      *event.mutable_flags_changed()->add_messages() = changed;
      *response.add_changed() = std::move(changed);
    }
    if (modseq.has_value()) {
      // Only keywords now set on a message join FLAGS; -FLAGS of a keyword no
      // message has must not add it.
      if (request.mode() != v1::StoreRequest::REMOVE) {
        RETURN_IF_ERROR(RememberKeywords(conn, mailbox.id, flags.keywords));
      }
      RETURN_IF_ERROR(tx.Log(std::move(event)));
    }
    *response.mutable_modified() = modified.Take();
    response.set_highest_modseq(modseq.value_or(mailbox.highest_modseq));
    return absl::OkStatus();
  }));
  return response;
}

namespace {

struct CopyResult {
  uint32_t destination_uidvalidity = 0;
  std::vector<uint32_t> source_uids, destination_uids;
  uint64_t source_highest_modseq = 0;
};

}  // namespace

using ContentSortKeysFn = std::function<absl::StatusOr<SortKeys>(Connection&, int64_t)>;

// Copies (and for MOVE, expunges) in the caller's transaction; the copies'
// sort keys come from `content_sort_keys`.
static absl::StatusOr<CopyResult> CopyInTx(SqlStore::WriteTx& tx, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity,
                                           const v1::UidSet& uid_set,
                                           const std::string& destination, bool move,
                                           const StoreLimits& limits,
                                           ContentSortKeysFn content_sort_keys);

absl::StatusOr<v1::CopyResponse> SqlStore::Copy(uint64_t user_id,
                                                   const v1::CopyRequest& request) {
  CopyResult result;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(result, CopyInTx(tx, user_id, request.mailbox_id(), request.uidvalidity(),
                                      request.uids(), request.destination(), false, limits_,
                                      SortKeysOfContent()));
    return absl::OkStatus();
  }));
  v1::CopyResponse response;
  response.set_destination_uidvalidity(result.destination_uidvalidity);
  response.mutable_source_uids()->Add(result.source_uids.begin(), result.source_uids.end());
  response.mutable_destination_uids()->Add(result.destination_uids.begin(),
                                           result.destination_uids.end());
  return response;
}

absl::StatusOr<v1::MoveResponse> SqlStore::Move(uint64_t user_id,
                                                   const v1::MoveRequest& request) {
  CopyResult result;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(result, CopyInTx(tx, user_id, request.mailbox_id(), request.uidvalidity(),
                                      request.uids(), request.destination(), true, limits_,
                                      SortKeysOfContent()));
    return absl::OkStatus();
  }));
  v1::MoveResponse response;
  response.set_destination_uidvalidity(result.destination_uidvalidity);
  response.mutable_source_uids()->Add(result.source_uids.begin(), result.source_uids.end());
  response.mutable_destination_uids()->Add(result.destination_uids.begin(),
                                           result.destination_uids.end());
  response.set_highest_modseq(result.source_highest_modseq);
  return response;
}

static absl::StatusOr<CopyResult> CopyInTx(SqlStore::WriteTx& tx, uint64_t user_id,
                                           uint64_t mailbox_id, uint32_t uidvalidity,
                                           const v1::UidSet& uid_set,
                                           const std::string& destination, bool move,
                                           const StoreLimits& limits,
                                           ContentSortKeysFn content_sort_keys) {
  ASSIGN_OR_RETURN(Ranges ranges, NormalizeUidSet(uid_set));
  ASSIGN_OR_RETURN(std::string dest_name, NormalizeMailboxName(destination, limits));
  Connection& conn = tx.conn();
  ASSIGN_OR_RETURN(MailboxRow source, SelectedMailbox(conn, user_id, mailbox_id, uidvalidity));
  ASSIGN_OR_RETURN(std::optional<MailboxRow> dest, MailboxByName(conn, user_id, dest_name));
  if (!dest.has_value() || dest->noselect) {
    // RFC 3501 §6.4.7: TRYCREATE, the client may create it and retry.
    return Error(absl::StatusCode::kNotFound, v1::TRYCREATE,
                 absl::StrCat("destination mailbox \"", dest_name, "\" does not exist"));
  }
  ASSIGN_OR_RETURN(std::vector<MessageRow> messages,
                   LoadMessages(conn, source.id, ranges, [](const MessageRow&) { return true; }));
  CopyResult result;
  result.destination_uidvalidity = dest->uidvalidity;
  result.source_highest_modseq = source.highest_modseq;
  if (messages.empty()) {
    return result;
  }
  RETURN_IF_ERROR(CheckUidSpace(*dest, messages.size()));
  ASSIGN_OR_RETURN(QuotaGuard quota, QuotaGuard::Begin(conn, user_id));
  ASSIGN_OR_RETURN(uint64_t dest_modseq, tx.NextModseq(dest->id));
  v1::ChangeEvent added;
  added.set_mailbox_id(dest->id);
  added.set_modseq(dest_modseq);
  uint32_t uid = dest->uidnext;
  std::vector<std::string> keywords;
  for (const MessageRow& m : messages) {
    // RFC 8514 §3: the copy is saved now; the internal date stays the original's.
    ASSIGN_OR_RETURN(SortKeys sort_keys, content_sort_keys(conn, m.content_id));
    RETURN_IF_ERROR(InsertMessage(conn, dest->id, uid, m.content_id, dest_modseq, m.system,
                                  m.keywords, m.internal_date, m.internal_tz, tx.now_unix(),
                                  sort_keys));
    *added.mutable_added()->add_messages() = MakeMessageFlags(uid, m.system, m.keywords,
                                                              dest_modseq);
    for (std::string& k : SplitKeywords(m.keywords)) {
      if (!ContainsKeyword(keywords, k)) {
        keywords.push_back(std::move(k));
      }
    }
    result.source_uids.push_back(m.uid);
    result.destination_uids.push_back(uid);
    ++uid;
  }
  RETURN_IF_ERROR(SetUidNext(conn, dest->id, uid));
  RETURN_IF_ERROR(RememberKeywords(conn, dest->id, keywords));
  added.mutable_added()->set_uidnext(uid);
  RETURN_IF_ERROR(tx.Log(std::move(added)));
  if (move) {
    // RFC 6851 §3.3: the source messages are expunged in the same transaction.
    for (const MessageRow& m : messages) {
      RETURN_IF_ERROR(tx.ExpungeMessage(source.id, m.uid));
    }
    ASSIGN_OR_RETURN(result.source_highest_modseq,
                     tx.LogExpunged(source.id, result.source_uids));
  }
  // After the move's expunges: a MOVE among the user's mailboxes adds nothing.
  RETURN_IF_ERROR(quota.Check(conn));
  return result;
}

absl::StatusOr<v1::ExpungeResponse> SqlStore::Expunge(uint64_t user_id,
                                                         const v1::ExpungeRequest& request) {
  Ranges ranges = AllUids();
  if (request.uids_only()) {
    ASSIGN_OR_RETURN(ranges, NormalizeUidSet(request.uids()));
  }
  v1::ExpungeResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response = v1::ExpungeResponse();  // a retried write starts afresh
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(conn, user_id, request.mailbox_id(),
                                                         request.uidvalidity()));
    ASSIGN_OR_RETURN(std::vector<MessageRow> deleted,
                     LoadMessages(conn, mailbox.id, ranges,
                                  [](const MessageRow& m) {
                                    return (m.system & kDeletedBit) != 0;
                                  }));
    response.set_highest_modseq(mailbox.highest_modseq);
    if (deleted.empty()) {
      return absl::OkStatus();
    }
    std::vector<uint32_t> uids;
    UidSetBuilder set;
    for (const MessageRow& m : deleted) {
      RETURN_IF_ERROR(tx.ExpungeMessage(mailbox.id, m.uid));
      uids.push_back(m.uid);
      set.Add(m.uid);
    }
    ASSIGN_OR_RETURN(uint64_t modseq, tx.LogExpunged(mailbox.id, uids));
    response.set_highest_modseq(modseq);
    *response.mutable_expunged() = set.Take();
    return ContentReleased(conn);
  }));
  return response;
}

// ---------------------------------------------------------------------------
// Import from another server

absl::StatusOr<v1::PrepareImportResponse> SqlStore::PrepareImport(
    uint64_t user_id, const v1::PrepareImportRequest& request) {
  if (request.uidvalidity() == 0) {
    return BadRequest("an imported mailbox needs a non-zero UIDVALIDITY (RFC 3501 §2.3.1.1)");
  }
  // MODSEQs are 63-bit (RFC 7162 §3.1.1); leave room for the import's own changes.
  constexpr uint64_t kMaxImportedModseq = uint64_t{1} << 62;
  if (request.highest_modseq() > kMaxImportedModseq) {
    return BadRequest(absl::StrCat("HIGHESTMODSEQ ", request.highest_modseq(),
                                   " is beyond the largest an import takes (2^62)"));
  }
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.mailbox(), limits_));
  ASSIGN_OR_RETURN(const std::string special_use, SpecialUseColumn(request.special_use()));
  const uint32_t uidvalidity = request.uidvalidity();
  v1::PrepareImportResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response = v1::PrepareImportResponse();
    ASSIGN_OR_RETURN(bool user_exists, UserExists(conn, user_id));
    if (!user_exists) {
      return absl::NotFoundError(absl::StrCat("user id ", user_id, " does not exist"));
    }
    ASSIGN_OR_RETURN(std::optional<MailboxRow> existing, MailboxByName(conn, user_id, name));
    if (existing.has_value() && existing->uidnext > 1) {
      return Error(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS,
                   absl::StrCat("mailbox \"", name, "\" already holds or held messages (UIDNEXT ",
                                existing->uidnext,
                                "); an import only fills a mailbox that never held one"));
    }
    // A superior the old server did not have as a folder is \Noselect, so that a
    // sync client finds no new folder to copy. The import of the superior itself,
    // if it comes later, takes it over.
    RETURN_IF_ERROR(tx.CreateMissingSuperiors(user_id, name, /*noselect=*/true));
    uint64_t mailbox_id = 0;
    uint64_t highest_modseq = std::max<uint64_t>(request.highest_modseq(), 1);
    if (existing.has_value()) {
      // Never lower HIGHESTMODSEQ, and start the log afresh: the old
      // UIDVALIDITY's changes mean nothing under the new one.
      highest_modseq = std::max(highest_modseq, existing->highest_modseq);
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("UPDATE mailboxes SET noselect = 0, uidvalidity = ?, "
                                    "highest_modseq = ?, log_floor = ?, special_use = ? "
                                    "WHERE id = ?"));
      // A selectable mailbox keeps its special use unless the import names one.
      s.Bind(1, uidvalidity)
          .Bind(2, highest_modseq)
          .Bind(3, highest_modseq)
          .BindText(4, special_use.empty() && !existing->noselect ? existing->special_use
                                                                   : special_use)
          .Bind(5, existing->id);
      RETURN_IF_ERROR(s.Run());
      ASSIGN_OR_RETURN(Statement clear, conn.Prepare("DELETE FROM changes WHERE mailbox_id = ?"));
      clear.Bind(1, existing->id);
      RETURN_IF_ERROR(clear.Run());
      mailbox_id = existing->id;
    } else {
      ASSIGN_OR_RETURN(mailbox_id, NextMailboxId(conn));
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("INSERT INTO mailboxes (id, user_id, name, uidvalidity, "
                                    "highest_modseq, log_floor, special_use) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?)"));
      s.Bind(1, mailbox_id)
          .Bind(2, user_id)
          .BindText(3, name)
          .Bind(4, uidvalidity)
          .Bind(5, highest_modseq)
          .Bind(6, highest_modseq)
          .BindText(7, special_use);
      RETURN_IF_ERROR(s.Run());
      response.set_created(true);
    }
    // A mailbox deleted and made again later must not reuse this UIDVALIDITY
    // (RFC 3501 §2.3.1.1): the counter that hands them out moves past it.
    ASSIGN_OR_RETURN(Statement counter,
                     conn.Prepare("UPDATE meta SET value = ? "
                                  "WHERE name = 'uidvalidity_counter' AND value < ?"));
    counter.Bind(1, uidvalidity).Bind(2, uidvalidity);
    RETURN_IF_ERROR(counter.Run());
    tx.AnnounceCreated(user_id, name, mailbox_id, uidvalidity, highest_modseq);
    response.set_mailbox_id(mailbox_id);
    response.set_uidvalidity(uidvalidity);
    response.set_highest_modseq(highest_modseq);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::FinishImportResponse> SqlStore::FinishImport(
    uint64_t user_id, const v1::FinishImportRequest& request) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(request.mailbox(), limits_));
  v1::FinishImportResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectableByName(conn, user_id, name));
    if (mailbox.uidvalidity != request.uidvalidity()) {
      return MailboxChanged();
    }
    uint32_t uidnext = mailbox.uidnext;
    if (request.uidnext() > uidnext) {
      uidnext = request.uidnext();
      RETURN_IF_ERROR(SetUidNext(conn, mailbox.id, uidnext));
    }
    response.set_uidnext(uidnext);
    return absl::OkStatus();
  }));
  return response;
}

absl::StatusOr<v1::AppendResponse> SqlStore::Append(uint64_t user_id,
                                                       std::string_view mailbox_name,
                                                       std::vector<NewMessage> messages) {
  ASSIGN_OR_RETURN(std::string name, NormalizeMailboxName(mailbox_name, limits_));
  if (messages.empty()) {
    return BadRequest("APPEND needs at least one message");
  }
  // Validate, hash and parse outside the write lock: parsing is the expensive part
  // and needs no database.
  std::vector<PreparedContent> contents(messages.size());
  std::vector<FlagSet> flags(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    NewMessage& message = messages[i];
    absl::Status valid = ValidateContentSize(
        message.file.has_value() ? message.file->size : message.content.size(), limits_);
    if (valid.ok()) {
      valid = ValidateInternalDate(message);
    }
    absl::StatusOr<FlagSet> parsed_flags = ParseFlags(message.flags);
    if (valid.ok()) {
      valid = parsed_flags.status();
    }
    if (!valid.ok()) {
      if (messages.size() == 1) {
        return valid;
      }
      return v1::MakeError(valid.code(), v1::DetailOf(valid).code(),
                           absl::StrCat("message ", i + 1, " of ", messages.size(), ": ",
                                        valid.message(), "; nothing was appended"));
    }
    flags[i] = *std::move(parsed_flags);
    contents[i].raw = std::move(message.content);
    contents[i].file = message.file;
    ASSIGN_OR_RETURN(contents[i].sha256, ContentSha256(contents[i]));
  }
  {
    // Content already stored (a copy of a message another user also received)
    // need not be parsed again.
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    for (PreparedContent& content : contents) {
      ASSIGN_OR_RETURN(Statement s, conn->Prepare("SELECT 1 FROM contents WHERE sha256 = ?"));
      s.BindBlob(1, content.sha256);
      ASSIGN_OR_RETURN(bool exists, s.Step());
      if (!exists) {
        RETURN_IF_ERROR(ParseContent(content));
      }
    }
  }
  const int64_t now = NowUnix();
  v1::AppendResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response = v1::AppendResponse();  // a retried write starts afresh
    ASSIGN_OR_RETURN(std::optional<MailboxRow> mailbox, MailboxByName(conn, user_id, name));
    if (!mailbox.has_value() || mailbox->noselect) {
      // RFC 3501 §6.3.11: TRYCREATE.
      return Error(absl::StatusCode::kNotFound, v1::TRYCREATE,
                   absl::StrCat("mailbox \"", name, "\" does not exist"));
    }
    RETURN_IF_ERROR(CheckUidSpace(*mailbox, messages.size()));
    // UIDs given by an import (NewMessage::uid) must keep UIDs strictly ascending:
    // at least UIDNEXT, each above the one before, and leaving a UIDNEXT.
    {
      uint32_t next = mailbox->uidnext;
      for (size_t i = 0; i < messages.size(); ++i) {
        const uint32_t given = messages[i].uid;
        if (given == 0) {
          if (next == std::numeric_limits<uint32_t>::max()) {
            return CheckUidSpace(*mailbox, messages.size() + (next - mailbox->uidnext));
          }
          ++next;
          continue;
        }
        if (given < next) {
          return Error(absl::StatusCode::kFailedPrecondition, v1::CANNOT,
                       absl::StrCat("message ", i + 1, " of ", messages.size(), ": UID ",
                                    given, " is below ", next, ", the lowest UID mailbox \"",
                                    name, "\" can still give; nothing was appended"));
        }
        if (given == std::numeric_limits<uint32_t>::max()) {
          return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                       absl::StrCat("UID ", given, " leaves no UIDNEXT (RFC 3501 §2.3.1.1: "
                                    "UIDs are 32-bit)"));
        }
        next = given + 1;
      }
    }
    ASSIGN_OR_RETURN(QuotaGuard quota, QuotaGuard::Begin(conn, user_id));
    ASSIGN_OR_RETURN(uint64_t modseq, tx.NextModseq(mailbox->id));
    v1::ChangeEvent event;
    event.set_mailbox_id(mailbox->id);
    event.set_modseq(modseq);
    uint32_t uid = mailbox->uidnext;
    std::vector<std::string> keywords;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].uid != 0) {
        uid = messages[i].uid;
      }
      ASSIGN_OR_RETURN(int64_t content_id, EnsureContent(conn, contents[i]));
      std::string joined = JoinKeywords(flags[i].keywords);
      int64_t date = messages[i].has_internal_date ? messages[i].internal_date_unix : now;
      int32_t tz = messages[i].has_internal_date ? messages[i].internal_date_tz_minutes : 0;
      ASSIGN_OR_RETURN(SortKeys sort_keys,
                       ContentSortKeys(conn, content_id, contents[i].sort_keys));
      RETURN_IF_ERROR(InsertMessage(conn, mailbox->id, uid, content_id, modseq,
                                    flags[i].system, joined, date, tz, tx.now_unix(),
                                    sort_keys));
      *event.mutable_added()->add_messages() =
          MakeMessageFlags(uid, flags[i].system, joined, modseq);
      keywords.insert(keywords.end(), flags[i].keywords.begin(), flags[i].keywords.end());
      response.add_uids(uid);
      ++uid;
    }
    RETURN_IF_ERROR(quota.Check(conn));
    RETURN_IF_ERROR(SetUidNext(conn, mailbox->id, uid));
    RETURN_IF_ERROR(RememberKeywords(conn, mailbox->id, keywords));
    event.mutable_added()->set_uidnext(uid);
    response.set_mailbox_id(mailbox->id);
    response.set_uidvalidity(mailbox->uidvalidity);
    return tx.Log(std::move(event));
  }));
  return response;
}

absl::StatusOr<v1::ReviseResponse> SqlStore::Revise(uint64_t user_id,
                                                       const v1::ReviseHeader& header,
                                                       std::string content) {
  RETURN_IF_ERROR(ValidateContentSize(content, limits_));
  if (header.uid() == 0) {
    return BadRequest("Revise needs the UID of the message it replaces");
  }
  std::optional<FlagSet> new_flags;
  if (header.replace_flags()) {
    ASSIGN_OR_RETURN(new_flags, ParseFlags(header.flags()));
  }
  std::string name;
  if (header.mailbox_id() == 0) {
    ASSIGN_OR_RETURN(name, NormalizeMailboxName(header.mailbox(), limits_));
  }
  PreparedContent prepared;
  prepared.raw = std::move(content);
  prepared.sha256 = Sha256(prepared.raw);
  RETURN_IF_ERROR(ParseContent(prepared));
  const int64_t now = NowUnix();
  v1::ReviseResponse response;
  RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
    Connection& conn = tx.conn();
    response = v1::ReviseResponse();  // a retried write starts afresh
    MailboxRow mailbox;
    if (header.mailbox_id() != 0) {
      ASSIGN_OR_RETURN(Statement s,
                       conn.Prepare("SELECT " MAILBOX_COLUMNS
                                    " FROM mailboxes WHERE id = ? AND user_id = ?"));
      s.Bind(1, header.mailbox_id()).Bind(2, user_id);
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        return MailboxChanged();
      }
      mailbox = ReadMailbox(s);
      if (mailbox.noselect) {
        return MailboxChanged();
      }
    } else {
      ASSIGN_OR_RETURN(mailbox, SelectableByName(conn, user_id, name));
    }
    if (header.uidvalidity() != 0 && header.uidvalidity() != mailbox.uidvalidity) {
      return MailboxChanged();
    }
    ASSIGN_OR_RETURN(std::vector<MessageRow> old,
                     LoadMessages(conn, mailbox.id, Ranges{{header.uid(), header.uid()}},
                                  [](const MessageRow&) { return true; }));
    if (old.empty()) {
      return Error(absl::StatusCode::kNotFound, v1::EXPUNGEISSUED,
                   absl::StrCat("message UID ", header.uid(), " does not exist (expunged?)"));
    }
    RETURN_IF_ERROR(CheckUidSpace(mailbox, 1));
    uint32_t system = old[0].system;
    std::string keywords = old[0].keywords;
    if (new_flags.has_value()) {
      system = new_flags->system;
      keywords = JoinKeywords(new_flags->keywords);
      RETURN_IF_ERROR(RememberKeywords(conn, mailbox.id, new_flags->keywords));
    }
    ASSIGN_OR_RETURN(QuotaGuard quota, QuotaGuard::Begin(conn, user_id));
    ASSIGN_OR_RETURN(int64_t content_id, EnsureContent(conn, prepared));
    const uint32_t new_uid = mailbox.uidnext;
    // The new UID is logged first (MODSEQ M) and the old one expunged after
    // (M + 1), so a session applying events in order never sees the message
    // missing.
    ASSIGN_OR_RETURN(uint64_t added_modseq, tx.NextModseq(mailbox.id));
    ASSIGN_OR_RETURN(SortKeys sort_keys, ContentSortKeys(conn, content_id, prepared.sort_keys));
    RETURN_IF_ERROR(InsertMessage(conn, mailbox.id, new_uid, content_id, added_modseq, system,
                                  keywords, now, 0, tx.now_unix(), sort_keys));
    RETURN_IF_ERROR(SetUidNext(conn, mailbox.id, new_uid + 1));
    v1::ChangeEvent added;
    added.set_mailbox_id(mailbox.id);
    added.set_modseq(added_modseq);
    *added.mutable_added()->add_messages() =
        MakeMessageFlags(new_uid, system, keywords, added_modseq);
    added.mutable_added()->set_uidnext(new_uid + 1);
    added.set_more(true);  // the expunge below follows in this commit
    RETURN_IF_ERROR(tx.Log(std::move(added)));
    RETURN_IF_ERROR(tx.ExpungeMessage(mailbox.id, header.uid()));
    ASSIGN_OR_RETURN(uint64_t modseq, tx.LogExpunged(mailbox.id, {header.uid()}));
    // After the old message's expunge: only a revision that grows it can be refused.
    RETURN_IF_ERROR(quota.Check(conn));
    response.set_uidvalidity(mailbox.uidvalidity);
    response.set_old_uid(header.uid());
    response.set_new_uid(new_uid);
    response.set_modseq(modseq);
    return ContentReleased(conn);
  }));
  return response;
}

absl::StatusOr<v1::SearchResponse> SqlStore::Search(uint64_t user_id,
                                                       const v1::SearchRequest& request,
                                                       WorkBudget& budget) {
  SearchLimits search_limits;
  search_limits.max_depth = limits_.max_search_depth;
  search_limits.max_keys = limits_.max_search_keys;
  search_limits.max_uid_ranges = limits_.max_search_uid_ranges;
  search_limits.max_string_octets = limits_.max_search_string_octets;
  RETURN_IF_ERROR(ValidateSearch(request, search_limits));
  // Matches() bisects UID sets; the gateway need not send them sorted.
  v1::SearchKey key = request.key();
  CanonicalizeUidSets(&key);
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, request.mailbox_id(),
                                                       request.uidvalidity()));
  const StoredSearchMessage::Opener open = [&](int64_t content_id) {
    return OpenContent(*conn, content_id);
  };
  rules::SearchMatches matches(request.view_last_uid());
  for (const auto& [first, last] : CandidateUids(key)) {
    if (!budget.KeepGoing()) {
      return budget.status();
    }
    ASSIGN_OR_RETURN(Statement s,
                     conn->Prepare("SELECT m.uid, m.modseq, m.system_flags, m.keywords, "
                                   "m.content_id, m.internal_date, m.internal_tz, c.size, "
                                   "c.sent_date, c.header_size, c.sha256, m.save_date "
                                   "FROM messages m JOIN contents c ON c.id = m.content_id "
                                   "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                                   "ORDER BY m.uid"));
    s.Bind(1, mailbox.id).Bind(2, first).Bind(3, last);
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) {
        break;
      }
      // Per message as well as inside long scans: a search of cheap keys over a
      // huge mailbox also stops once its caller is gone.
      if (!budget.KeepGoing()) {
        return budget.status();
      }
      StoredSearchMessage message(*conn, open, s, search_memory_, budget.deadline());
      bool matched = Matches(key, message, budget);
      RETURN_IF_ERROR(message.status());
      if (budget.stopped()) {
        return budget.status();
      }
      if (matched) {
        matches.Add(message.uid(), message.modseq());
      }
    }
  }
  return matches.Take();
}

// ---------------------------------------------------------------------------
// Sort and thread keys

absl::StatusOr<std::vector<SortableMessage>> SqlStore::SortableMessages(
    uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids) {
  // An empty set (a search that matched nothing) is no messages, not an error.
  rules::UidRanges ranges;
  if (uids.ranges_size() > 0) {
    ASSIGN_OR_RETURN(ranges, rules::NormalizeUidSet(uids));
  }
  std::vector<SortableMessage> messages;
  // Keys made now for content stored before they were kept, by content id.
  std::map<int64_t, std::string> made;
  {
    ASSIGN_OR_RETURN(ReaderLease conn, Reader());
    ReadSnapshot snapshot(*conn);
    RETURN_IF_ERROR(snapshot.Begin());
    ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, mailbox_id, uidvalidity));
    for (const auto& [first, last] : ranges) {
      ASSIGN_OR_RETURN(Statement s,
                       conn->Prepare("SELECT m.uid, m.internal_date, c.size, c.id, "
                                     "c.header_size, c.sort_keys "
                                     "FROM messages m JOIN contents c ON c.id = m.content_id "
                                     "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                                     "ORDER BY m.uid"));
      s.Bind(1, mailbox.id).Bind(2, first).Bind(3, last);
      while (true) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) {
          break;
        }
        if (messages.size() >= limits_.max_sort_messages) {
          return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                       absl::StrCat("a sort or thread orders at most ",
                                    limits_.max_sort_messages,
                                    " messages; narrow the search criteria"));
        }
        SortableMessage& message = messages.emplace_back();
        message.uid = static_cast<uint32_t>(s.Int(0));
        message.internal_date = s.Int(1);
        message.size = static_cast<uint64_t>(s.Int(2));
        const int64_t content_id = s.Int(3);
        std::string_view encoded;
        if (!s.IsNull(5)) {
          encoded = s.Blob(5);
        } else if (auto it = made.find(content_id); it != made.end()) {
          encoded = it->second;
        } else {
          ASSIGN_OR_RETURN(std::string keys,
                           MakeSortKeys(*conn, content_id, static_cast<uint64_t>(s.Int(4))));
          encoded = made.emplace(content_id, std::move(keys)).first->second;
        }
        ASSIGN_OR_RETURN(message.keys, DecodeSortKeys(encoded));
      }
    }
  }
  // Kept for the next sort. A failure here only means they are made again.
  KeepMadeContentValues(
      user_id, "UPDATE contents SET sort_keys = ? WHERE id = ? AND sort_keys IS NULL",
      /*blob=*/true, made);
  return messages;
}

absl::StatusOr<std::string> SqlStore::MakeSortKeys(Connection& conn, int64_t content_id,
                                                    uint64_t header_size) {
  ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> blob, OpenContent(conn, content_id));
  std::string header;
  RETURN_IF_ERROR(blob->Read(0, std::min<uint64_t>(header_size, blob->size()), &header));
  return EncodeSortKeys(ExtractSortKeys(header));
}

absl::StatusOr<SortKeys> SqlStore::ContentSortKeys(Connection& conn, int64_t content_id,
                                                    std::string_view made_at_ingest) {
  if (!made_at_ingest.empty()) {
    return DecodeSortKeys(made_at_ingest);
  }
  ASSIGN_OR_RETURN(Statement s,
                   conn.Prepare("SELECT sort_keys, header_size FROM contents WHERE id = ?"));
  s.Bind(1, content_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                 absl::StrCat("content ", content_id, " of a message row is missing"));
  }
  if (!s.IsNull(0)) {
    return DecodeSortKeys(s.Blob(0));
  }
  ASSIGN_OR_RETURN(std::string made,
                   MakeSortKeys(conn, content_id, static_cast<uint64_t>(s.Int(1))));
  return DecodeSortKeys(made);
}

absl::Status SqlStore::FillSortColumns(uint64_t user_id, uint64_t mailbox_id) {
  // Batches, so that the rows of a large mailbox do not hold the user's writes in
  // one long transaction; each batch ends with fewer rows left to fill.
  constexpr int kBatch = 500;
  int filled = kBatch;
  while (filled == kBatch) {
    RETURN_IF_ERROR(Write(WriteScope::User(user_id), [&](WriteTx& tx) -> absl::Status {
      Connection& conn = tx.conn();
      struct Unfilled {
        uint32_t uid;
        int64_t content_id;
        int64_t internal_date;
      };
      std::vector<Unfilled> rows;
      {
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("SELECT uid, content_id, internal_date FROM messages "
                                      "WHERE mailbox_id = ? AND sort_date IS NULL LIMIT ?"));
        s.Bind(1, mailbox_id).Bind(2, kBatch);
        while (true) {
          ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) {
            break;
          }
          rows.push_back({static_cast<uint32_t>(s.Int(0)), s.Int(1), s.Int(2)});
        }
      }
      filled = static_cast<int>(rows.size());
      for (const Unfilled& row : rows) {
        ASSIGN_OR_RETURN(SortKeys keys, ContentSortKeys(conn, row.content_id));
        ASSIGN_OR_RETURN(Statement s,
                         conn.Prepare("UPDATE messages SET sort_date = ?, sort_subject = ?, "
                                      "sort_from = ?, sort_to = ?, sort_cc = ?, "
                                      "sort_display_from = ?, sort_display_to = ? "
                                      "WHERE mailbox_id = ? AND uid = ?"));
        BindSortColumns(s, 1, keys, row.internal_date);
        s.Bind(8, mailbox_id).Bind(9, row.uid);
        RETURN_IF_ERROR(s.Run());
      }
      return absl::OkStatus();
    }));
  }
  return absl::OkStatus();
}

std::string SortedUidsQuery(
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) {
  // ORDER BY the keys' columns, each ascending unless REVERSE, then the UID
  // (RFC 5256 §2.2: REVERSE applies to its own key only; ties in sequence order).
  // A first key with an index (schema: DATE, ARRIVAL) is read in index order and
  // the database orders only ties; other keys it orders from the rows' columns.
  std::string order_by;
  bool needs_size = false;
  for (const v1::SortCriterion& criterion : criteria) {
    needs_size |= criterion.key() == v1::SortCriterion::SIZE;
    absl::StrAppend(&order_by, SortColumn(criterion.key()),
                    criterion.reverse() ? " DESC, " : ", ");
  }
  absl::StrAppend(&order_by, "m.uid");
  return absl::StrCat("SELECT m.uid FROM messages m ",
                      needs_size ? "JOIN contents c ON c.id = m.content_id " : "",
                      "WHERE m.mailbox_id = ? ORDER BY ", order_by);
}

absl::StatusOr<std::vector<uint32_t>> SqlStore::SortedUids(
    uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids,
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) {
  RETURN_IF_ERROR(ValidateSortCriteria(criteria));
  std::vector<uint32_t> sorted;
  if (uids.ranges_size() == 0) {
    return sorted;  // a search that matched nothing
  }
  ASSIGN_OR_RETURN(rules::UidRanges ranges, rules::NormalizeUidSet(uids));
  const std::string sql = SortedUidsQuery(criteria);
  for (bool filled = false;; filled = true) {
    uint64_t unfilled_mailbox = 0;
    {
      ASSIGN_OR_RETURN(ReaderLease conn, Reader());
      ReadSnapshot snapshot(*conn);
      RETURN_IF_ERROR(snapshot.Begin());
      ASSIGN_OR_RETURN(MailboxRow mailbox,
                       SelectedMailbox(*conn, user_id, mailbox_id, uidvalidity));
      ASSIGN_OR_RETURN(Statement unfilled,
                       conn->Prepare("SELECT 1 FROM messages WHERE mailbox_id = ? "
                                     "AND sort_date IS NULL LIMIT 1"));
      unfilled.Bind(1, mailbox.id);
      ASSIGN_OR_RETURN(bool found, unfilled.Step());
      if (found) {
        // Rows from before the keys were kept in them, filled once; every row
        // written since carries its keys, so a second look finds none.
        if (filled) {
          return Error(absl::StatusCode::kInternal, v1::SERVER_BUG,
                       "message rows without sort keys remain after filling them");
        }
        unfilled_mailbox = mailbox.id;
      } else {
        ASSIGN_OR_RETURN(Statement s, conn->PrepareUncached(sql.c_str()));
        s.Bind(1, mailbox.id);
        while (true) {
          ASSIGN_OR_RETURN(bool row, s.Step());
          if (!row) {
            break;
          }
          const uint32_t uid = static_cast<uint32_t>(s.Int(0));
          // The ranges are sorted and disjoint: the first ending at or after `uid`.
          auto it = std::lower_bound(
              ranges.begin(), ranges.end(), uid,
              [](const std::pair<uint32_t, uint32_t>& range, uint32_t u) {
                return range.second < u;
              });
          if (it == ranges.end() || it->first > uid) {
            continue;
          }
          if (sorted.size() >= limits_.max_sort_messages) {
            return Error(absl::StatusCode::kResourceExhausted, v1::LIMIT,
                         absl::StrCat("a sort or thread orders at most ",
                                      limits_.max_sort_messages,
                                      " messages; narrow the search criteria"));
          }
          sorted.push_back(uid);
        }
        return sorted;
      }
    }
    RETURN_IF_ERROR(FillSortColumns(user_id, unfilled_mailbox));
  }
}

// ---------------------------------------------------------------------------
// Change log

absl::Status SqlStore::ReadChanges(uint64_t user_id, uint64_t mailbox_id,
                                      uint32_t uidvalidity, uint64_t from_modseq,
                                      std::vector<v1::ChangeEvent>* out) {
  ASSIGN_OR_RETURN(ReaderLease conn, Reader());
  ReadSnapshot snapshot(*conn);
  RETURN_IF_ERROR(snapshot.Begin());
  ASSIGN_OR_RETURN(MailboxRow mailbox, SelectedMailbox(*conn, user_id, mailbox_id, uidvalidity));
  if (from_modseq < mailbox.log_floor) {
    return Error(absl::StatusCode::kOutOfRange, v1::RESYNC,
                 absl::StrCat("changes since MODSEQ ", from_modseq,
                              " are no longer logged (the log starts after ", mailbox.log_floor,
                              "); reopen the mailbox"));
  }
  if (from_modseq >= mailbox.highest_modseq) {
    return absl::OkStatus();  // nothing newer (and no bound that would turn negative)
  }
  return ForEachLogged(*conn, mailbox.id, from_modseq,
                       [out](v1::ChangeEvent event) { out->push_back(std::move(event)); });
}

}  // namespace mailbox::store
