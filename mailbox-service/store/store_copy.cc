#include "mailbox-service/store/store_copy.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "mailbox-service/store/message_content.h"
#include "mailbox-service/store/postgres/pg_db.h"
#include "mailbox-service/store/postgres/pg_schema.h"
#include "mailbox-service/store/sqlite_db.h"
#include "mailbox-service/store/sqlite_schema.h"

namespace mailbox::store {
namespace {

// One table copied row by row: the SQLite query, the PostgreSQL insert with the
// same columns, and each column's kind: 'i' integer, 'n' integer or NULL, 't' text,
// 'T' text or NULL, 'b' bytes.
struct Table {
  const char* name;
  const char* select;
  const char* insert;
  const char* kinds;
};

// In the order foreign keys need. Content references, and each mailbox's count of
// messages and octets, are counted again by the PostgreSQL triggers as messages
// arrive, so contents and mailboxes start at 0.
constexpr Table kTables[] = {
    {"meta", "SELECT name, value FROM meta",
     "INSERT INTO meta (name, value) VALUES ($1, $2) "
     "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
     "ti"},
    {"users",
     "SELECT id, username, password_hash, credential_generation, quota_storage_kib, "
     "quota_messages, scram_sha256 FROM users",
     "INSERT INTO users (id, username, password_hash, credential_generation, "
     "quota_storage_kib, quota_messages, scram_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)",
     "ittinnT"},
    {"mailboxes",
     "SELECT id, user_id, name, uidvalidity, uidnext, highest_modseq, recent_floor, "
     "log_floor, noselect, special_use FROM mailboxes",
     "INSERT INTO mailboxes (id, user_id, name, uidvalidity, uidnext, highest_modseq, "
     "recent_floor, log_floor, noselect, special_use) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
     "iitiiiiiit"},
    {"mailbox_keywords", "SELECT mailbox_id, keyword FROM mailbox_keywords",
     "INSERT INTO mailbox_keywords (mailbox_id, keyword) VALUES ($1, $2)", "it"},
    {"contents",
     "SELECT id, sha256, size, parsed, envelope, body, bodystructure, sent_date, "
     "header_size, preview, sort_keys FROM contents",
     "INSERT INTO contents (id, sha256, size, parsed, envelope, body, bodystructure, "
     "sent_date, header_size, preview, sort_keys) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
     "ibibtttniTB"},
    {"messages",
     "SELECT mailbox_id, uid, content_id, modseq, system_flags, keywords, internal_date, "
     "internal_tz, save_date, sort_date, sort_subject, sort_from, sort_to, sort_cc, "
     "sort_display_from, sort_display_to FROM messages",
     "INSERT INTO messages (mailbox_id, uid, content_id, modseq, system_flags, keywords, "
     "internal_date, internal_tz, save_date, sort_date, sort_subject, sort_from, sort_to, "
     "sort_cc, sort_display_from, sort_display_to) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
     "iiiiitiinnBBBBBB"},
    {"expunged_messages",
     "SELECT mailbox_id, uid, content_id, modseq, system_flags, keywords, internal_date, "
     "internal_tz, expunged_at_ms, save_date FROM expunged_messages",
     "INSERT INTO expunged_messages (mailbox_id, uid, content_id, modseq, system_flags, "
     "keywords, internal_date, internal_tz, expunged_at_ms, save_date) "
     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
     "iiiiitiiin"},
    {"changes", "SELECT mailbox_id, modseq, event FROM changes",
     "INSERT INTO changes (mailbox_id, modseq, event) VALUES ($1, $2, $3)", "iib"},
    {"subscriptions", "SELECT user_id, name FROM subscriptions",
     "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2)", "it"},
    {"secrets", "SELECT name, value FROM secrets",
     "INSERT INTO secrets (name, value) VALUES ($1, $2)", "tb"},
};

absl::Time Deadline() { return absl::Now() + absl::Minutes(10); }

absl::StatusOr<int64_t> CopyRows(sqlite::Connection& from, pg::Connection& to, const Table& table) {
  ASSIGN_OR_RETURN(sqlite::Statement rows, from.Prepare(table.select));
  const std::string kinds = table.kinds;
  int64_t copied = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool row, rows.Step());
    if (!row) {
      return copied;
    }
    pg::Params params;
    for (int column = 0; column < static_cast<int>(kinds.size()); ++column) {
      switch (kinds[column]) {
        case 'n':
          if (rows.IsNull(column)) {
            params.Null();
            break;
          }
          [[fallthrough]];
        case 'i':
          params.Int(rows.Int(column));
          break;
        case 'T':
          if (rows.IsNull(column)) {
            params.Null();
            break;
          }
          [[fallthrough]];
        case 't':
          params.Text(rows.Text(column));
          break;
        case 'B':
          if (rows.IsNull(column)) {
            params.Null();
            break;
          }
          [[fallthrough]];
        default:
          params.Bytes(rows.Blob(column));
      }
    }
    RETURN_IF_ERROR(to.Query(table.insert, params, Deadline()).status());
    ++copied;
  }
}

// SQLite keeps each content in one blob; PostgreSQL in pieces of
// kContentPieceOctets, read and written a piece at a time.
absl::StatusOr<int64_t> CopyContentData(sqlite::Connection& from, pg::Connection& to) {
  ASSIGN_OR_RETURN(sqlite::Statement ids, from.Prepare("SELECT content_id FROM content_data"));
  int64_t copied = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool row, ids.Step());
    if (!row) {
      return copied;
    }
    const int64_t id = ids.Int(0);
    ASSIGN_OR_RETURN(sqlite::BlobReader blob, from.OpenBlob("content_data", "raw", id));
    for (uint64_t offset = 0, seq = 0; offset < blob.size(); offset += kContentPieceOctets, ++seq) {
      std::string piece;
      RETURN_IF_ERROR(
          blob.Read(offset, std::min<uint64_t>(kContentPieceOctets, blob.size() - offset), &piece));
      RETURN_IF_ERROR(to.Query("INSERT INTO content_data (content_id, seq, data) "
                               "VALUES ($1, $2, $3)",
                               pg::Params().Int(id).Int(static_cast<int64_t>(seq)).Bytes(piece),
                               Deadline())
                          .status());
    }
    ++copied;
  }
}

}  // namespace

absl::StatusOr<std::pair<int, int>> MigratePostgres(const std::string& conninfo) {
  ASSIGN_OR_RETURN(std::unique_ptr<pg::Connection> conn,
                   pg::Connection::Open(conninfo, Deadline()));
  ASSIGN_OR_RETURN(int before, pg::SchemaVersion(*conn, Deadline()));
  RETURN_IF_ERROR(pg::Migrate(*conn, pg::LatestSchemaVersion(), Deadline()));
  ASSIGN_OR_RETURN(int after, pg::SchemaVersion(*conn, Deadline()));
  return std::make_pair(before, after);
}

absl::Status CopySqliteToPostgres(const std::string& sqlite_path, const std::string& conninfo,
                                  const CopyProgress& progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<sqlite::Connection> from,
                   sqlite::Connection::Open(sqlite_path, true));
  ASSIGN_OR_RETURN(int version, sqlite::SchemaVersion(*from));
  if (version != sqlite::LatestSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the SQLite store is at schema version ", version, ", this build at ",
        sqlite::LatestSchemaVersion(), ": start this build's mailbox-service on it once first"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<pg::Connection> to, pg::Connection::Open(conninfo, Deadline()));
  RETURN_IF_ERROR(pg::Migrate(*to, pg::LatestSchemaVersion(), Deadline()));
  ASSIGN_OR_RETURN(pg::Result existing,
                   to->Query("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM "
                             "mailboxes)",
                             Deadline()));
  if (existing.Int(0, 0) != 0) {
    return absl::FailedPreconditionError(
        "the PostgreSQL database already holds users or mailboxes; copy into an empty one");
  }
  RETURN_IF_ERROR(from->Exec("BEGIN"));  // one snapshot of the source
  RETURN_IF_ERROR(to->Exec("BEGIN", Deadline()));
  absl::Status status;
  for (const Table& table : kTables) {
    absl::StatusOr<int64_t> rows = CopyRows(*from, *to, table);
    if (rows.ok() && std::string_view(table.name) == "contents") {
      if (progress) {
        progress(table.name, *rows);
      }
      rows = CopyContentData(*from, *to);
      if (!rows.ok()) {
        status = rows.status();
        break;
      }
      if (progress) {
        progress("content_data", *rows);
      }
      continue;
    }
    if (!rows.ok()) {
      status = rows.status();
      break;
    }
    if (progress) {
      progress(table.name, *rows);
    }
  }
  if (status.ok()) {
    // Ids drawn from sequences continue above the copied ones.
    status = to->Exec(
        "SELECT setval(pg_get_serial_sequence('contents', 'id'), "
        "coalesce((SELECT max(id) FROM contents), 0) + 1, false);"
        "SELECT setval(pg_get_serial_sequence('auth_failures', 'id'), "
        "coalesce((SELECT max(id) FROM auth_failures), 0) + 1, false)",
        Deadline());
  }
  if (status.ok()) {
    status = to->Exec("COMMIT", Deadline());
  } else {
    to->Exec("ROLLBACK", Deadline()).IgnoreError();
  }
  from->Exec("COMMIT").IgnoreError();
  return status;
}

}  // namespace mailbox::store
