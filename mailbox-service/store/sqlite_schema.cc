#include "mailbox-service/store/sqlite_schema.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mailbox::store::sqlite {
namespace {

// Migration steps; step i (0-based) takes the database to version i + 1.
const std::vector<const char*>& Steps() {
  static const auto* steps = new std::vector<const char*>{
      // Version 1: users, mailboxes, messages, content and the change log.
      R"sql(
CREATE TABLE meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
-- UIDVALIDITY is drawn from this global counter and never reused
-- (RFC 3501 §2.3.1.1). Seeding it with the clock keeps values above those of
-- an earlier database at the same path that was deleted and created again.
INSERT INTO meta (name, value)
  VALUES ('uidvalidity_counter', CAST(strftime('%s', 'now') AS INTEGER));

CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL
);

CREATE TABLE mailboxes (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name TEXT NOT NULL,  -- UTF-8, '/' delimited, INBOX spelled in capitals
  uidvalidity INTEGER NOT NULL,
  uidnext INTEGER NOT NULL DEFAULT 1,
  highest_modseq INTEGER NOT NULL DEFAULT 1,
  -- Messages with uid >= recent_floor are \Recent for the next session that
  -- selects the mailbox read-write (RFC 3501 §2.3.2).
  recent_floor INTEGER NOT NULL DEFAULT 1,
  -- Changes with modseq <= log_floor were pruned from the log.
  log_floor INTEGER NOT NULL DEFAULT 0,
  -- Deleted while it had inferiors (RFC 3501 §6.3.4).
  noselect INTEGER NOT NULL DEFAULT 0,
  special_use TEXT NOT NULL DEFAULT '',  -- space-separated RFC 6154 attributes
  UNIQUE (user_id, name)
);

-- Keywords ever used in a mailbox, for FLAGS / PERMANENTFLAGS.
CREATE TABLE mailbox_keywords (
  mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  keyword TEXT NOT NULL COLLATE NOCASE,  -- IMAP flags compare case-insensitively
  PRIMARY KEY (mailbox_id, keyword)
);

-- Message content, stored once per distinct SHA-256 and shared by copies and
-- users; parsed once at ingest.
CREATE TABLE contents (
  id INTEGER PRIMARY KEY,
  sha256 BLOB NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  refcount INTEGER NOT NULL DEFAULT 0,
  parsed BLOB NOT NULL,  -- mime::Serialize
  envelope TEXT NOT NULL,
  body TEXT NOT NULL,
  bodystructure TEXT NOT NULL,
  sent_date INTEGER,     -- YYYYMMDD of the Date: header
  header_size INTEGER NOT NULL
);
CREATE INDEX contents_unreferenced ON contents (id) WHERE refcount <= 0;

-- The raw bytes apart from their metadata, so that reading metadata never walks
-- a large blob's overflow pages, and FETCH streams them with incremental I/O.
CREATE TABLE content_data (
  content_id INTEGER PRIMARY KEY REFERENCES contents (id) ON DELETE CASCADE,
  raw BLOB NOT NULL
);

CREATE TABLE messages (
  mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  uid INTEGER NOT NULL,
  content_id INTEGER NOT NULL REFERENCES contents (id),
  modseq INTEGER NOT NULL,              -- RFC 7162 per-message MODSEQ
  system_flags INTEGER NOT NULL DEFAULT 0,  -- bit set, see sqlite_store.cc
  keywords TEXT NOT NULL DEFAULT '',    -- space-separated, case as first stored
  internal_date INTEGER NOT NULL,       -- unix seconds
  internal_tz INTEGER NOT NULL,         -- minutes east of UTC
  PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_by_content ON messages (content_id);

CREATE TRIGGER messages_ref AFTER INSERT ON messages BEGIN
  UPDATE contents SET refcount = refcount + 1 WHERE id = NEW.content_id;
END;
CREATE TRIGGER messages_unref AFTER DELETE ON messages BEGIN
  UPDATE contents SET refcount = refcount - 1 WHERE id = OLD.content_id;
END;

-- One row per committed change of a mailbox, at the MODSEQ it produced: a
-- serialized mailbox.v1.ChangeEvent.
CREATE TABLE changes (
  mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  modseq INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (mailbox_id, modseq)
) WITHOUT ROWID;

-- By name: a subscription may name a mailbox that does not exist (RFC 3501 §6.3.6).
CREATE TABLE subscriptions (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  PRIMARY KEY (user_id, name)
);
)sql",
      // Version 2: state shared by service replicas: authentication throttling and
      // named secrets.
      R"sql(
CREATE TABLE auth_failures (
  key TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX auth_failures_by_key ON auth_failures (key, at_ms);

CREATE TABLE secrets (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
)sql",
      // Version 3: user and mailbox ids are never reused. An INTEGER PRIMARY KEY
      // hands out max(id) + 1, so deleting the newest user (or mailbox) and creating
      // another reused its id: a session token naming the deleted user would act
      // for the new one, and change events (which name mailboxes by id alone) of a
      // new mailbox would be taken for those of the deleted one. Ids now come from
      // counters that only grow, like the UIDVALIDITY counter (and like a
      // PostgreSQL sequence). They start at the highest id in use: ids deleted
      // before this upgrade that were above it cannot be known any more.
      R"sql(
INSERT INTO meta (name, value)
  SELECT 'user_id_counter', coalesce(max(id), 0) FROM users;
INSERT INTO meta (name, value)
  SELECT 'mailbox_id_counter', coalesce(max(id), 0) FROM mailboxes;
)sql",
      // Version 4: expunged messages are retained for a while. A session learns of
      // an expunge only between commands (RFC 3501 §7.4.1), and until then a client
      // may FETCH the message by its sequence number and must get its data; the
      // gateway keeps no copy, so the store does. A retained row is a message row
      // plus the time of the expunge, and holds a content reference like a live
      // one, so the content outlives the message until the row is pruned.
      R"sql(
CREATE TABLE expunged_messages (
  mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  uid INTEGER NOT NULL,
  content_id INTEGER NOT NULL REFERENCES contents (id),
  modseq INTEGER NOT NULL,              -- the message's MODSEQ before the expunge
  system_flags INTEGER NOT NULL,
  keywords TEXT NOT NULL,
  internal_date INTEGER NOT NULL,
  internal_tz INTEGER NOT NULL,
  expunged_at_ms INTEGER NOT NULL,      -- unix milliseconds
  PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_messages_by_age ON expunged_messages (expunged_at_ms);

CREATE TRIGGER expunged_messages_ref AFTER INSERT ON expunged_messages BEGIN
  UPDATE contents SET refcount = refcount + 1 WHERE id = NEW.content_id;
END;
CREATE TRIGGER expunged_messages_unref AFTER DELETE ON expunged_messages BEGIN
  UPDATE contents SET refcount = refcount - 1 WHERE id = OLD.content_id;
END;
)sql",
      // Version 5: session tokens name the credential generation they were issued
      // under, so a password change ends the sessions made with the old password;
      // and throttle rows are pruned by age across all keys (a key that never
      // repeats would otherwise keep its rows forever).
      R"sql(
ALTER TABLE users ADD COLUMN credential_generation INTEGER NOT NULL DEFAULT 0;
CREATE INDEX auth_failures_by_age ON auth_failures (at_ms);
)sql",
      // Version 6: throttle rows get ids that are never reused (AUTOINCREMENT) and
      // name the client address they count against. A plain rowid table hands out
      // max(rowid) + 1, so once the newest rows were deleted a new attempt could get
      // the id an attempt still in flight had reserved, and that attempt's release
      // deleted the newcomer's row. The address lets the store cap rows per address
      // and, when the table is full, charge the address holding the most rows
      // instead of forgetting everyone's oldest rows. Rows copied from before have
      // no address; they leave with the window.
      R"sql(
CREATE TABLE auth_failures_v6 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL,
  address TEXT NOT NULL DEFAULT '',
  at_ms INTEGER NOT NULL
);
INSERT INTO auth_failures_v6 (key, at_ms) SELECT key, at_ms FROM auth_failures ORDER BY rowid;
DROP TABLE auth_failures;
ALTER TABLE auth_failures_v6 RENAME TO auth_failures;
CREATE INDEX auth_failures_by_key ON auth_failures (key, at_ms);
CREATE INDEX auth_failures_by_age ON auth_failures (at_ms);
CREATE INDEX auth_failures_by_address ON auth_failures (address, at_ms);
)sql",
      // Version 7: save dates (RFC 8514) and previews (RFC 8970). A message row
      // (live or retained) gets the time it was saved into its mailbox, unix
      // seconds; rows from before this version have none (NULL): nobody knows
      // when they were saved, so FETCH SAVEDATE is NIL for them and the SAVED*
      // search keys compare their internal date instead. The preview belongs
      // to the content, shared by its copies; NULL for content stored before,
      // computed and kept on the first FETCH PREVIEW without LAZY. Only
      // columns are added, so the upgrade does not rewrite any row.
      R"sql(
ALTER TABLE messages ADD COLUMN save_date INTEGER;
ALTER TABLE expunged_messages ADD COLUMN save_date INTEGER;
ALTER TABLE contents ADD COLUMN preview TEXT;
)sql",
      // Version 8: quotas (RFC 9208). A user's limits are NULL when unset. Each
      // mailbox counts its live messages and their octets, kept by triggers on
      // every insert and delete of a message row, so a user's usage is a sum over
      // their mailboxes rather than over their messages; the counts of existing
      // mailboxes are filled in once here. Retained expunged rows count for no
      // one: they are already gone for the user.
      R"sql(
ALTER TABLE users ADD COLUMN quota_storage_kib INTEGER;
ALTER TABLE users ADD COLUMN quota_messages INTEGER;
ALTER TABLE mailboxes ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN message_octets INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET
  message_count = (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),
  message_octets = (SELECT coalesce(sum(c.size), 0) FROM messages m
                    JOIN contents c ON c.id = m.content_id WHERE m.mailbox_id = mailboxes.id);
CREATE TRIGGER messages_count AFTER INSERT ON messages BEGIN
  UPDATE mailboxes SET message_count = message_count + 1,
    message_octets = message_octets + (SELECT size FROM contents WHERE id = NEW.content_id)
  WHERE id = NEW.mailbox_id;
END;
CREATE TRIGGER messages_uncount AFTER DELETE ON messages BEGIN
  UPDATE mailboxes SET message_count = message_count - 1,
    message_octets = message_octets - (SELECT size FROM contents WHERE id = OLD.content_id)
  WHERE id = OLD.mailbox_id;
END;
)sql",
      // Version 9: annotations (RFC 5464 METADATA). Entries of a mailbox carry its
      // id, server entries 0; a mailbox's entries leave with it, so one created
      // again under the same name starts with none (§4.1).
      R"sql(
CREATE TABLE metadata (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  mailbox_id INTEGER NOT NULL,  -- 0: the server's entries
  name TEXT NOT NULL,           -- lower case, "/private/..." or "/shared/..."
  value BLOB NOT NULL,
  PRIMARY KEY (user_id, mailbox_id, name)
) WITHOUT ROWID;
CREATE TRIGGER mailboxes_metadata AFTER DELETE ON mailboxes BEGIN
  DELETE FROM metadata WHERE user_id = OLD.user_id AND mailbox_id = OLD.id;
END;
)sql",
      // Version 10: what SORT and THREAD compare (RFC 5256, RFC 5957), taken from
      // the header once at ingest: sort_keys.h's encoding. NULL for content
      // stored before, made and kept the first time a sort or thread reads it.
      R"sql(
ALTER TABLE contents ADD COLUMN sort_keys BLOB;
)sql",
      // Version 11: SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677) beside the argon2id
      // hash, encoded as mailbox-service/server/scram.h writes them. NULL for users
      // from before: their keys are computed at their next password login or
      // password change.
      R"sql(
ALTER TABLE users ADD COLUMN scram_sha256 TEXT;
)sql",
      // Version 12: each message row carries the keys SORT orders by (RFC 5256
      // §3, RFC 5957), copied from its content's sort_keys when the row is
      // written, so that a sort reads an index in order instead of decoding every
      // message's keys. Strings are stored folded as BLOBs and compare octet by
      // octet; sort_date is the sent date (RFC 5256 §2.2: the internal date
      // without a valid Date:). DATE and ARRIVAL, webmail's usual first keys,
      // have an index each: in real mail both grow with the UID, so the indexes
      // are cheap to keep. The string keys are ordered by the database from the
      // rows' columns: an index each would double the cost of a bulk import with
      // random subjects and senders for a few tenths of a second on a 100,000
      // message sort. NULL for rows from before, filled in the first time their
      // mailbox is sorted.
      R"sql(
ALTER TABLE messages ADD COLUMN sort_date INTEGER;
ALTER TABLE messages ADD COLUMN sort_subject BLOB;
ALTER TABLE messages ADD COLUMN sort_from BLOB;
ALTER TABLE messages ADD COLUMN sort_to BLOB;
ALTER TABLE messages ADD COLUMN sort_cc BLOB;
ALTER TABLE messages ADD COLUMN sort_display_from BLOB;
ALTER TABLE messages ADD COLUMN sort_display_to BLOB;
CREATE INDEX messages_by_sent_date ON messages (mailbox_id, sort_date);
CREATE INDEX messages_by_arrival ON messages (mailbox_id, internal_date);
)sql",
  };
  return *steps;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Steps().size()); }

absl::StatusOr<int> SchemaVersion(Connection& conn) {
  absl::StatusOr<Statement> stmt = conn.Prepare("PRAGMA user_version");
  if (!stmt.ok()) {
    return stmt.status();
  }
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) {
    return row.status();
  }
  return *row ? static_cast<int>(stmt->Int(0)) : 0;
}

absl::Status Migrate(Connection& conn, int target) {
  if (target > LatestSchemaVersion()) {
    return absl::InvalidArgumentError("store: no such schema version");
  }
  while (true) {
    if (absl::Status status = conn.Exec("BEGIN IMMEDIATE"); !status.ok()) {
      return status;
    }
    // Read the version inside the write transaction: another process opening the
    // same file may have migrated meanwhile.
    absl::StatusOr<int> version = SchemaVersion(conn);
    absl::Status status = version.status();
    bool done = false;
    if (status.ok()) {
      if (*version > LatestSchemaVersion()) {
        status = absl::FailedPreconditionError(
            absl::StrCat("store: database schema version ", *version,
                         " is newer than this binary supports (", LatestSchemaVersion(),
                         "); upgrade the mailbox service"));
      } else if (*version >= target) {
        done = true;
      } else {
        status = conn.Exec(Steps()[*version]);
        if (status.ok()) {
          std::string bump = absl::StrCat("PRAGMA user_version = ", *version + 1);
          status = conn.Exec(bump.c_str());
        }
      }
    }
    if (!status.ok()) {
      conn.Exec("ROLLBACK").IgnoreError();
      return status;
    }
    if (absl::Status commit = conn.Exec("COMMIT"); !commit.ok()) {
      conn.Exec("ROLLBACK").IgnoreError();
      return commit;
    }
    if (done) {
      return absl::OkStatus();
    }
  }
}

}  // namespace mailbox::store::sqlite
