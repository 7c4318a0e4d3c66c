#include "mailbox-service/store/postgres/pg_schema.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mailbox::store::pg {
namespace {

// Any constant both replicas agree on: the key of the migration lock.
constexpr int64_t kMigrationLock = 0x6d61696c626f78;  // "mailbox"

const std::vector<const char*>& Steps() {
  static const auto* steps = new std::vector<const char*>{
      R"sql(
-- Counters for ids and UIDVALIDITY (RFC 3501 §2.3.1.1: never reused). Seeding
-- UIDVALIDITY with the clock keeps it above an earlier database's.
CREATE TABLE meta (
  name text PRIMARY KEY,
  value bigint NOT NULL
);
INSERT INTO meta (name, value) VALUES
  ('uidvalidity_counter', extract(epoch FROM now())::bigint),
  ('user_id_counter', 0),
  ('mailbox_id_counter', 0);

CREATE TABLE users (
  id bigint PRIMARY KEY,
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  credential_generation bigint NOT NULL DEFAULT 0
);

-- Every integer is bigint and every flag a 0/1 bigint, as the SQL store binds and
-- reads them; names compare as bytes (COLLATE "C"), as LIST orders them.
CREATE TABLE mailboxes (
  id bigint PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name text COLLATE "C" NOT NULL,
  uidvalidity bigint NOT NULL,
  uidnext bigint NOT NULL DEFAULT 1,
  highest_modseq bigint NOT NULL DEFAULT 1,
  recent_floor bigint NOT NULL DEFAULT 1,
  log_floor bigint NOT NULL DEFAULT 0,
  noselect bigint NOT NULL DEFAULT 0,
  special_use text NOT NULL DEFAULT '',
  UNIQUE (user_id, name)
);

-- Keywords ever used in a mailbox (FLAGS, PERMANENTFLAGS); IMAP compares them
-- case-insensitively.
CREATE TABLE mailbox_keywords (
  mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  keyword text NOT NULL
);
CREATE UNIQUE INDEX mailbox_keywords_key ON mailbox_keywords (mailbox_id, lower(keyword));

-- Content once per SHA-256, parsed once at ingest; its bytes in content_data.
CREATE TABLE contents (
  id bigserial PRIMARY KEY,
  sha256 bytea NOT NULL UNIQUE,
  size bigint NOT NULL,
  refcount bigint NOT NULL DEFAULT 0,
  parsed bytea NOT NULL,
  envelope text NOT NULL,
  body text NOT NULL,
  bodystructure text NOT NULL,
  sent_date bigint,
  header_size bigint NOT NULL
);
CREATE INDEX contents_unreferenced ON contents (id) WHERE refcount <= 0;

-- The bytes in pieces of at most 256 KiB, in order of seq, so that a message of
-- any size is written and read a piece at a time.
CREATE TABLE content_data (
  content_id bigint NOT NULL REFERENCES contents (id) ON DELETE CASCADE,
  seq bigint NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (content_id, seq)
);
ALTER TABLE content_data ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE messages (
  mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  uid bigint NOT NULL,
  content_id bigint NOT NULL REFERENCES contents (id),
  modseq bigint NOT NULL,
  system_flags bigint NOT NULL DEFAULT 0,
  keywords text NOT NULL DEFAULT '',
  internal_date bigint NOT NULL,
  internal_tz bigint NOT NULL,
  PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
CREATE INDEX messages_by_content ON messages (content_id);

-- Expunged messages kept for sessions not yet told (RFC 3501 §7.4.1).
CREATE TABLE expunged_messages (
  mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  uid bigint NOT NULL,
  content_id bigint NOT NULL REFERENCES contents (id),
  modseq bigint NOT NULL,
  system_flags bigint NOT NULL,
  keywords text NOT NULL,
  internal_date bigint NOT NULL,
  internal_tz bigint NOT NULL,
  expunged_at_ms bigint NOT NULL,
  PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_messages_by_age ON expunged_messages (expunged_at_ms);

-- Content references, counted by triggers as in the SQLite schema.
CREATE FUNCTION content_ref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE contents SET refcount = refcount + 1 WHERE id = NEW.content_id;
  RETURN NULL;
END $$;
CREATE FUNCTION content_unref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE contents SET refcount = refcount - 1 WHERE id = OLD.content_id;
  RETURN NULL;
END $$;
CREATE TRIGGER messages_ref AFTER INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION content_ref();
CREATE TRIGGER messages_unref AFTER DELETE ON messages
  FOR EACH ROW EXECUTE FUNCTION content_unref();
CREATE TRIGGER expunged_messages_ref AFTER INSERT ON expunged_messages
  FOR EACH ROW EXECUTE FUNCTION content_ref();
CREATE TRIGGER expunged_messages_unref AFTER DELETE ON expunged_messages
  FOR EACH ROW EXECUTE FUNCTION content_unref();

-- The change log every replica's feed reads: one row per committed change at the
-- MODSEQ it produced (a serialized mailbox.v1.ChangeEvent).
CREATE TABLE changes (
  mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
  modseq bigint NOT NULL,
  event bytea NOT NULL,
  PRIMARY KEY (mailbox_id, modseq)
);

CREATE TABLE subscriptions (
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name text COLLATE "C" NOT NULL,
  PRIMARY KEY (user_id, name)
);

-- Login throttling shared by every replica.
CREATE TABLE auth_failures (
  id bigserial PRIMARY KEY,
  key text NOT NULL,
  address text NOT NULL DEFAULT '',
  at_ms bigint NOT NULL
);
CREATE INDEX auth_failures_by_key ON auth_failures (key, at_ms);
CREATE INDEX auth_failures_by_age ON auth_failures (at_ms);
CREATE INDEX auth_failures_by_address ON auth_failures (address, at_ms);

-- Secrets every replica shares (the session-token key).
CREATE TABLE secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL
);
)sql",
      // Version 2: save dates (RFC 8514) and previews (RFC 8970), as in the
      // SQLite schema's version 7: NULL in rows from before (no save date known;
      // preview computed on first request). Adding a nullable column without a
      // default rewrites no row.
      R"sql(
ALTER TABLE messages ADD COLUMN save_date bigint;
ALTER TABLE expunged_messages ADD COLUMN save_date bigint;
ALTER TABLE contents ADD COLUMN preview text;
)sql",
      // Version 3: quotas (RFC 9208), as in the SQLite schema's version 8: NULL
      // limits when unset, and per-mailbox counts of live messages and their
      // octets kept by triggers and filled in once here.
      R"sql(
ALTER TABLE users ADD COLUMN quota_storage_kib bigint;
ALTER TABLE users ADD COLUMN quota_messages bigint;
ALTER TABLE mailboxes ADD COLUMN message_count bigint NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN message_octets bigint NOT NULL DEFAULT 0;
UPDATE mailboxes SET
  message_count = (SELECT count(*) FROM messages m WHERE m.mailbox_id = mailboxes.id),
  message_octets = (SELECT coalesce(sum(c.size), 0) FROM messages m
                    JOIN contents c ON c.id = m.content_id WHERE m.mailbox_id = mailboxes.id);
CREATE FUNCTION message_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE mailboxes SET message_count = message_count + 1,
    message_octets = message_octets + (SELECT size FROM contents WHERE id = NEW.content_id)
  WHERE id = NEW.mailbox_id;
  RETURN NULL;
END $$;
CREATE FUNCTION message_uncount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE mailboxes SET message_count = message_count - 1,
    message_octets = message_octets - (SELECT size FROM contents WHERE id = OLD.content_id)
  WHERE id = OLD.mailbox_id;
  RETURN NULL;
END $$;
CREATE TRIGGER messages_count AFTER INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION message_count();
CREATE TRIGGER messages_uncount AFTER DELETE ON messages
  FOR EACH ROW EXECUTE FUNCTION message_uncount();
)sql",
      // Version 4: annotations (RFC 5464 METADATA), as in the SQLite schema's
      // version 9.
      R"sql(
CREATE TABLE metadata (
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  mailbox_id bigint NOT NULL,
  name text COLLATE "C" NOT NULL,
  value bytea NOT NULL,
  PRIMARY KEY (user_id, mailbox_id, name)
);
CREATE FUNCTION mailbox_metadata_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM metadata WHERE user_id = OLD.user_id AND mailbox_id = OLD.id;
  RETURN NULL;
END $$;
CREATE TRIGGER mailboxes_metadata AFTER DELETE ON mailboxes
  FOR EACH ROW EXECUTE FUNCTION mailbox_metadata_gone();
)sql",
      // Version 5: SORT and THREAD keys, as in the SQLite schema's version 10.
      R"sql(
ALTER TABLE contents ADD COLUMN sort_keys bytea;
)sql",
      // Version 6: SCRAM-SHA-256 keys beside the argon2id hash, as in the SQLite
      // schema's version 11: NULL until computed.
      R"sql(
ALTER TABLE users ADD COLUMN scram_sha256 text;
)sql",
      // Version 7: the sort keys of each message row and the indexes for DATE and
      // ARRIVAL, as in the SQLite schema's version 12. bytea compares
      // octet by octet, whatever the database's collation.
      R"sql(
ALTER TABLE messages ADD COLUMN sort_date bigint;
ALTER TABLE messages ADD COLUMN sort_subject bytea;
ALTER TABLE messages ADD COLUMN sort_from bytea;
ALTER TABLE messages ADD COLUMN sort_to bytea;
ALTER TABLE messages ADD COLUMN sort_cc bytea;
ALTER TABLE messages ADD COLUMN sort_display_from bytea;
ALTER TABLE messages ADD COLUMN sort_display_to bytea;
CREATE INDEX messages_by_sent_date ON messages (mailbox_id, sort_date);
CREATE INDEX messages_by_arrival ON messages (mailbox_id, internal_date);
)sql",
  };
  return *steps;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Steps().size()); }

absl::StatusOr<int> SchemaVersion(Connection& conn, absl::Time deadline) {
  absl::StatusOr<Result> exists =
      conn.Query("SELECT to_regclass('schema_version') IS NOT NULL", deadline);
  if (!exists.ok()) {
    return exists.status();
  }
  if (!exists->Bool(0, 0)) {
    return 0;
  }
  absl::StatusOr<Result> version = conn.Query("SELECT version FROM schema_version", deadline);
  if (!version.ok()) {
    return version.status();
  }
  return version->rows() == 0 ? 0 : static_cast<int>(version->Int(0, 0));
}

absl::Status Migrate(Connection& conn, int target, absl::Time deadline) {
  if (target > LatestSchemaVersion()) {
    return absl::InvalidArgumentError("store: no such schema version");
  }
  while (true) {
    if (absl::Status begun = conn.Exec("BEGIN", deadline); !begun.ok()) {
      return begun;
    }
    absl::Status status =
        conn.Query("SELECT pg_advisory_xact_lock($1)", Params().Int(kMigrationLock), deadline)
            .status();
    bool done = false;
    if (status.ok()) {
      status = conn.Exec("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
                         deadline);
    }
    absl::StatusOr<int> version = status.ok() ? SchemaVersion(conn, deadline) : status;
    status = version.status();
    if (status.ok()) {
      if (*version > LatestSchemaVersion()) {
        status = absl::FailedPreconditionError(
            absl::StrCat("store: database schema version ", *version,
                         " is newer than this binary supports (", LatestSchemaVersion(),
                         "); upgrade the mailbox service"));
      } else if (*version >= target) {
        done = true;
      } else {
        status = conn.Exec(Steps()[*version], deadline);
        if (status.ok()) {
          status = conn.Exec("DELETE FROM schema_version", deadline);
        }
        if (status.ok()) {
          status = conn.Query("INSERT INTO schema_version (version) VALUES ($1::int8)",
                              Params().Int(*version + 1), deadline)
                       .status();
        }
      }
    }
    if (!status.ok()) {
      conn.Exec("ROLLBACK", deadline).IgnoreError();
      return status;
    }
    if (absl::Status committed = conn.Exec("COMMIT", deadline); !committed.ok()) {
      return committed;
    }
    if (done) {
      return absl::OkStatus();
    }
  }
}

}  // namespace mailbox::store::pg
