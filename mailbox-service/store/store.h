// The mailbox service's storage interface. The gRPC layer authenticates the caller
// and hands every request here with the caller's user id; an implementation owns
// transactions, UID/UIDVALIDITY/MODSEQ allocation, message content and the change log.
//
// SQLite (sqlite_store.h) is the embedded implementation; a PostgreSQL backend is a
// second implementation of this same interface. Requests and replies reuse the
// mailbox.v1 messages so the two layers cannot drift apart.
//
// Threading: every method may be called concurrently from many threads.
// Durability: a method returns OK only after its transaction committed durably.
// Change events: after each committing write, the implementation calls the
// EventSink given at construction, once per affected mailbox, in MODSEQ order and
// before any later write to that mailbox commits (so a subscriber that receives
// events from the sink sees them in order, without gaps).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mailbox/names.h"
#include "mailbox-service/store/sort.h"
#include "mailbox-service/store/work_budget.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

struct UserRecord {
  uint64_t id = 0;
  std::string username;
  std::string password_hash;  // encoded slow hash (argon2id), never a clear password
  // Bumped whenever the user's credentials change (SetPasswordHash). A session token
  // carries the generation it was issued under, so a password change ends every
  // session made with the old password.
  uint64_t credential_generation = 0;
  // SCRAM-SHA-256 keys (RFC 5802 §3: salt, iteration count, StoredKey, ServerKey)
  // derived from the password that `password_hash` checks, encoded by
  // mailbox-service/server/scram.h; empty until they were computed (when the password
  // was set, or at the first password login after the upgrade that added them).
  std::string scram_sha256;
};

// Recent authentication attempts recorded under one throttle key.
struct AuthAttemptState {
  int failures = 0;       // rows in the window, including attempts still in flight
  int64_t latest_ms = 0;  // time of the latest of them (0 if none)
};

// Given the state of each key passed to ReserveAuthAttempt (same order, then the
// read-only keys), how long
// the attempt must wait, in milliseconds; 0 lets it go ahead.
using AuthAttemptPolicy = std::function<int64_t(const std::vector<AuthAttemptState>&)>;

struct AuthReservation {
  int64_t retry_after_ms = 0;  // > 0: refused, nothing was recorded
  std::vector<int64_t> rows;   // the rows recorded for the attempt (one per key)
};

// One message handed to Append.
// A message the store reads from a file in pieces rather than holding it whole:
// `size` octets at `offset` of the open file `fd` (the service's spool).
struct ContentFile {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct NewMessage {
  std::string content;  // the whole RFC 5322 message, unless `file` is set
  std::optional<ContentFile> file;
  std::vector<std::string> flags;
  bool has_internal_date = false;  // false: now
  int64_t internal_date_unix = 0;
  int32_t internal_date_tz_minutes = 0;
  // 0: the mailbox's next UID. Otherwise the UID to give it (an import keeping
  // another server's UIDs): refused (CANNOT) unless it is at least the mailbox's
  // UIDNEXT and above the UID of the message before it in the same Append.
  uint32_t uid = 0;
};

// Receives a fetch as it is read. Returning false cancels the fetch (client gone).
class FetchSink {
 public:
  virtual ~FetchSink() = default;
  virtual bool Send(const v1::FetchResponse& item) = 0;
};

using EventSink = std::function<void(const v1::ChangeEvent&)>;

// Limits an implementation enforces; violations return errors with the ErrorDetail
// codes noted (see ErrorFor in errors.h).
// The entry names one METADATA_CHANGED announcement carries (SetMetadata):
// with more changed, it carries none, meaning "entries changed" (a NOTIFY
// watcher then hears of the mailbox with no names, RFC 5465 §5.6).
inline constexpr size_t kMaxMetadataEventEntries = 100;

struct StoreLimits {
  size_t max_mailbox_name_octets = 250;  // LIMIT
  int max_mailbox_depth = 31;            // LIMIT
  uint64_t max_message_octets = 64ull << 20;  // TOOBIG
  size_t fetch_chunk_octets = 256 << 10;
  int max_search_depth = 64;             // BAD_REQUEST beyond
  // The shape of one Search request (see SearchLimits in search.h): LIMIT beyond.
  int max_search_keys = 1000;
  int max_search_uid_ranges = 100000;
  uint64_t max_search_string_octets = 64 << 10;
  // Octets of message text one Search may scan, summed over its keys: a TEXT key
  // over a 1 GiB mailbox scans 1 GiB, ten of them 10 GiB. LIMIT beyond. The
  // caller puts it in the WorkBudget it passes (0: no limit).
  uint64_t max_search_scan_octets = 2ull << 30;
  // Message content loaded by searches at once, over all searches (0: no limit).
  // A message being scanned is held whole, and its decoded text beside it, so
  // each counts twice its size. A search waits for room up to its deadline.
  uint64_t max_search_memory_octets = 256ull << 20;
  // Annotations (RFC 5464): the largest value (§4.3 MAXSIZE; at least 1024 by
  // §4.1; below the gateway's literal limit, so that a client hears MAXSIZE
  // rather than a refused literal), and a user's entries over the server and all
  // of their mailboxes, by count and by octets of names and values together
  // (TOOMANY beyond).
  uint64_t max_metadata_value_octets = 16 << 10;
  int64_t max_metadata_entries = 1000;
  uint64_t max_metadata_octets = 1 << 20;
  // Messages one Sort or Thread orders (LIMIT beyond): their keys are held in
  // memory at once (a few hundred octets each), and the answer must fit the
  // gateway's 4 MiB gRPC message (at most 12 octets per message of a thread).
  size_t max_sort_messages = 300000;
  // Page cache of each reader connection (SQLite's default is 2000 KiB). A fetch
  // streams its message through it, so a reader that stalls holds this much.
  int reader_cache_kib = 256;
};

// What every backend keeps for how long, and its clock.
struct StoreOptions {
  // Change-log rows kept per mailbox; ReadChanges from further back is RESYNC.
  uint64_t change_log_retention = 100000;
  // How long an expunged message stays fetchable with
  // FetchRequest.include_expunged, for sessions not yet told of the expunge
  // (RFC 3501 §7.4.1). Retained messages are pruned, and their content released,
  // a bounded batch at a time by later write transactions. Zero retains nothing;
  // a negative value is refused when the store opens.
  std::chrono::milliseconds expunged_retention = std::chrono::minutes(10);
  // The time source for expunge retention; empty means the system clock. Tests
  // inject time here.
  std::function<std::chrono::system_clock::time_point()> clock;
  // Mailboxes every new user gets besides INBOX, subscribed, each with its RFC 6154
  // special use (e.g. {"Sent", "\\Sent"}). The service sets them from
  // --default-mailboxes; the library default is none.
  std::vector<std::pair<std::string, std::string>> default_mailboxes;
};

// A mailbox name a caller gave, validated against `limits` and in canonical form
// (see rules::NormalizeMailboxName).
inline absl::StatusOr<std::string> NormalizeMailboxName(std::string_view name,
                                                        const StoreLimits& limits) {
  return rules::NormalizeMailboxName(name, {.max_octets = limits.max_mailbox_name_octets,
                                            .max_depth = limits.max_mailbox_depth});
}

class Store {
 public:
  virtual ~Store() = default;

  // False while the store knows it cannot serve (its database is out of reach):
  // the service then answers health checks with NOT_SERVING, and gateways send
  // their calls to the other replicas.
  virtual bool Healthy() const { return true; }

  // --- Users and credentials -------------------------------------------------
  // Creates the user with an INBOX. ALREADYEXISTS if taken.
  virtual absl::StatusOr<uint64_t> CreateUser(std::string_view username,
                                              std::string_view password_hash) = 0;
  // Removes the user and all of their mailboxes and messages.
  virtual absl::Status DeleteUser(std::string_view username) = 0;
  // Also forgets the user's SCRAM keys: they belong to the old password.
  virtual absl::Status SetPasswordHash(std::string_view username,
                                       std::string_view password_hash) = 0;
  // Stores SCRAM keys for the user if their password hash is still `password_hash`
  // (the one the keys were derived beside): a password changed meanwhile keeps no
  // keys of the old one. OK (nothing stored) when the hash changed or the user is gone.
  virtual absl::Status SetScramKeys(std::string_view username, std::string_view password_hash,
                                    std::string_view scram_sha256) = 0;
  // Usernames are matched exactly. NotFound if absent.
  virtual absl::StatusOr<UserRecord> FindUser(std::string_view username) = 0;
  virtual absl::StatusOr<UserRecord> FindUserById(uint64_t user_id) = 0;
  virtual absl::StatusOr<std::vector<UserRecord>> ListUsers() = 0;

  // Authentication throttling shared by every service replica on this store.
  // Records a failure for `key` (e.g. "user:alice" or "ip:10.0.0.1") at now_ms and
  // returns the number of failures recorded for it in [now_ms - window_ms, now_ms].
  virtual absl::StatusOr<int> RecordAuthFailure(std::string_view key, int64_t now_ms,
                                                int64_t window_ms) = 0;
  // Failures for `key` within the window, and the time of the latest (0 if none).
  virtual absl::StatusOr<std::pair<int, int64_t>> AuthFailures(std::string_view key,
                                                               int64_t now_ms,
                                                               int64_t window_ms) = 0;
  virtual absl::Status ClearAuthFailures(std::string_view key) = 0;

  // The throttle's check and record in one write transaction, so that parallel
  // attempts cannot all pass the check before any of them is counted. Reads the
  // state of every key from now_ms - window_ms on (rows of attempts that read the
  // clock after this one count too), asks `policy`, and when
  // it allows the attempt records one row per key at now_ms, each naming `address`
  // (the client address the rows count against): the attempt counts as a failure
  // from before its password is checked. The caller then releases the rows
  // (ReleaseAuthAttempt) if the password was right or could not be checked, and keeps
  // them as the recorded failure if it was wrong. Bounds, so that the table stays
  // bounded whatever the keys and no address can push out another's rows:
  // * each call deletes a bounded batch of rows that fell out of the window;
  // * an address holding `limits.max_rows_per_address` rows in the window is refused
  //   (retry_after_ms until its oldest row leaves the window);
  // * with `limits.max_rows` rows in all, the address holding the most rows is
  //   refused, and any other address's attempt takes the place of that address's
  //   oldest rows.
  struct AuthAttemptLimits {
    int64_t window_ms = 15 * 60 * 1000;
    int64_t max_rows = 100000;
    int64_t max_rows_per_address = 100000;
    // Keys whose state is read (after those of `keys`, in this order, for the
    // policy) but that get no row.
    std::vector<std::string> read_only_keys;
  };
  virtual absl::StatusOr<AuthReservation> ReserveAuthAttempt(
      const std::vector<std::string>& keys, std::string_view address, int64_t now_ms,
      const AuthAttemptLimits& limits, const AuthAttemptPolicy& policy) = 0;
  // Deletes exactly the rows a reservation recorded (row ids are never reused, so a
  // row deleted meanwhile is not confused with a newer attempt's).
  virtual absl::Status ReleaseAuthAttempt(const std::vector<int64_t>& rows) = 0;

  // A named secret shared by replicas: returns the stored value, storing
  // `initial_value` first if there is none (first writer wins).
  virtual absl::StatusOr<std::string> GetOrCreateSecret(std::string_view name,
                                                        std::string_view initial_value) = 0;
  // The stored secret, or NotFound.
  virtual absl::StatusOr<std::string> FindSecret(std::string_view name) = 0;
  // Removes the secret (OK if there was none).
  virtual absl::Status DeleteSecret(std::string_view name) = 0;

  // --- Mailboxes ---------------------------------------------------------------
  virtual absl::StatusOr<v1::ListMailboxesResponse> ListMailboxes(
      uint64_t user_id, const v1::ListMailboxesRequest& request) = 0;
  virtual absl::StatusOr<v1::CreateMailboxResponse> CreateMailbox(
      uint64_t user_id, const v1::CreateMailboxRequest& request) = 0;
  virtual absl::Status DeleteMailbox(uint64_t user_id,
                                     const v1::DeleteMailboxRequest& request) = 0;
  virtual absl::Status RenameMailbox(uint64_t user_id,
                                     const v1::RenameMailboxRequest& request) = 0;
  virtual absl::Status SetSubscription(uint64_t user_id,
                                       const v1::SetSubscriptionRequest& request) = 0;
  virtual absl::StatusOr<v1::StatusResponse> Status(uint64_t user_id,
                                                    const v1::StatusRequest& request) = 0;

  // --- Import from another server (mailbox-admin import dovecot) ---------------
  // Gives the named mailbox request.uidvalidity and a HIGHESTMODSEQ of at least
  // request.highest_modseq, its change log starting there: creates it (and its
  // missing superiors), or takes an existing one that never held a message
  // (UIDNEXT 1). ALREADYEXISTS for one that did; BAD_REQUEST for UIDVALIDITY 0.
  // Raises the UIDVALIDITY counter to at least the value, so that a mailbox made
  // later under a reused name gets a higher one. request.username is ignored.
  virtual absl::StatusOr<v1::PrepareImportResponse> PrepareImport(
      uint64_t user_id, const v1::PrepareImportRequest& request) = 0;
  // Raises the mailbox's UIDNEXT to request.uidnext (never lowers it); returns the
  // UIDNEXT it has. MAILBOX_CHANGED if its UIDVALIDITY is not request.uidvalidity.
  virtual absl::StatusOr<v1::FinishImportResponse> FinishImport(
      uint64_t user_id, const v1::FinishImportRequest& request) = 0;

  // --- Quotas (RFC 9208) -------------------------------------------------------
  // One quota root per user, over all of their mailboxes. A write that would leave
  // the user's usage of a limited resource above its limit, and higher than
  // before the write, fails with OVERQUOTA and stores nothing: APPEND, COPY and a
  // revision that grows a message are refused, a MOVE among the user's own
  // mailboxes never is. Limits are checked inside the write's transaction, so
  // parallel writes cannot together pass a limit each one alone respects.
  // Replaces the user's limits (NotFound for an unknown user).
  virtual absl::Status SetQuota(std::string_view username, const v1::QuotaLimits& limits) = 0;
  // The user's limits and usage.
  virtual absl::StatusOr<v1::GetUserQuotaResponse> GetUserQuota(uint64_t user_id) = 0;
  // GETQUOTA / GETQUOTAROOT: the root "" when the user has a limit, with the
  // limited resources. NONEXISTENT for another root name or an unknown mailbox.
  virtual absl::StatusOr<v1::GetQuotaResponse> GetQuota(uint64_t user_id,
                                                        const v1::GetQuotaRequest& request) = 0;

  // --- Annotations (RFC 5464) ------------------------------------------------------
  // The entries named, and those below them to request.depth, that exist.
  // NONEXISTENT for a mailbox that does not exist; BAD_REQUEST for an entry name
  // that is not "/private/..." or "/shared/..." (§3.2).
  virtual absl::StatusOr<v1::GetMetadataResponse> GetMetadata(
      uint64_t user_id, const v1::GetMetadataRequest& request) = 0;
  // Sets or removes every entry, or none: METADATA_MAXSIZE for a value over
  // limits.max_metadata_value_octets, METADATA_TOOMANY past the user's count or
  // octets, NOPERM for the server's /shared entries (only the operator's).
  virtual absl::Status SetMetadata(uint64_t user_id, const v1::SetMetadataRequest& request) = 0;

  // --- Selected-mailbox operations ---------------------------------------------
  virtual absl::StatusOr<v1::OpenResponse> Open(uint64_t user_id,
                                                const v1::OpenRequest& request) = 0;
  // Moves the mailbox's \Recent floor past request.up_to_uid and returns the
  // messages that were below it and above the old floor (RFC 3501 §2.3.2).
  virtual absl::StatusOr<v1::ClaimRecentResponse> ClaimRecent(
      uint64_t user_id, const v1::ClaimRecentRequest& request) = 0;
  // The UIDs expunged after request.since_modseq, from the change log; past the
  // log's start, every UID below UIDNEXT that is absent (exact = false).
  virtual absl::StatusOr<v1::VanishedResponse> Vanished(uint64_t user_id,
                                                        const v1::VanishedRequest& request) = 0;
  // Streams metadata and section chunks to `sink` in UID order.
  virtual absl::Status Fetch(uint64_t user_id, const v1::FetchRequest& request,
                             FetchSink& sink) = 0;
  virtual absl::StatusOr<v1::StoreResponse> StoreFlags(uint64_t user_id,
                                                       const v1::StoreRequest& request) = 0;
  virtual absl::StatusOr<v1::CopyResponse> Copy(uint64_t user_id,
                                                const v1::CopyRequest& request) = 0;
  virtual absl::StatusOr<v1::MoveResponse> Move(uint64_t user_id,
                                                const v1::MoveRequest& request) = 0;
  virtual absl::StatusOr<v1::ExpungeResponse> Expunge(uint64_t user_id,
                                                      const v1::ExpungeRequest& request) = 0;
  // All messages are committed in one transaction, or none.
  virtual absl::StatusOr<v1::AppendResponse> Append(uint64_t user_id,
                                                    std::string_view mailbox,
                                                    std::vector<NewMessage> messages) = 0;
  // Evaluation charges `budget` and stops, returning budget.status(), once it
  // refuses (scan limit reached, or the caller cancelled or past its deadline).
  virtual absl::StatusOr<v1::SearchResponse> Search(uint64_t user_id,
                                                    const v1::SearchRequest& request,
                                                    WorkBudget& budget) = 0;
  // As above with no scan limit and no caller to watch (tests, local tools).
  absl::StatusOr<v1::SearchResponse> Search(uint64_t user_id, const v1::SearchRequest& request) {
    WorkBudget unlimited;
    return Search(user_id, request, unlimited);
  }
  // The messages of the mailbox whose UIDs are in `uids` (which may be empty), in
  // UID order, with what SORT and THREAD compare (sort.h). Keys of content stored
  // before the store kept them are made from its header now and kept. More than
  // limits.max_sort_messages messages is RESOURCE_EXHAUSTED (LIMIT).
  virtual absl::StatusOr<std::vector<SortableMessage>> SortableMessages(
      uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids) = 0;
  // The UIDs of the mailbox that are in `uids` (which may be empty), in the order
  // of `criteria` (validated: sort.h), ties in UID order: SortMessages' order,
  // read from the sort keys each message row carries, through an index when the
  // first key is DATE or ARRIVAL. Rows written before the rows carried them get theirs
  // first. More than limits.max_sort_messages messages is RESOURCE_EXHAUSTED
  // (LIMIT).
  virtual absl::StatusOr<std::vector<uint32_t>> SortedUids(
      uint64_t user_id, uint64_t mailbox_id, uint32_t uidvalidity, const v1::UidSet& uids,
      const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria) = 0;
  // Stores `content` as a new UID (flags kept unless header.replace_flags) and
  // expunges header.uid, in one transaction.
  virtual absl::StatusOr<v1::ReviseResponse> Revise(uint64_t user_id,
                                                    const v1::ReviseHeader& header,
                                                    std::string content) = 0;

  // --- Change log ----------------------------------------------------------------
  // Appends to `out` every logged change of the mailbox with MODSEQ > from_modseq,
  // in order. OutOfRange (ErrorCode RESYNC) if the log no longer reaches back that far;
  // NotFound (MAILBOX_CHANGED) if (mailbox_id, uidvalidity) is gone or not the user's.
  virtual absl::Status ReadChanges(uint64_t user_id, uint64_t mailbox_id,
                                   uint32_t uidvalidity, uint64_t from_modseq,
                                   std::vector<v1::ChangeEvent>* out) = 0;
};

}  // namespace mailbox::store
