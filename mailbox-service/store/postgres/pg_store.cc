#include "mailbox-service/store/postgres/pg_store.h"
#include "mailbox-service/store/store_metrics.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "mailbox-service/store/message_content.h"
#include "mailbox-service/store/postgres/pg_schema.h"
#include "mailbox-service/store/postgres/pg_sql.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store::pg {
namespace {

constexpr char kChannel[] = "mailbox_changes";
// NOTIFY payloads must stay below 8,000 bytes.
constexpr size_t kMaxInlineOctets = 7000;

// Serialization failures and deadlocks; unique violations: a body checks before
// it inserts (the content of a SHA-256, a user name), so a violation means a
// concurrent transaction inserted the same row first, which the body, run again,
// now sees; foreign-key violations: a row the body found (content nothing referred
// to) was removed by a concurrent transaction before the body referred to it.
bool Retryable(const absl::Status& status) {
  const std::string state = SqlStateOf(status);
  return state == "40001" || state == "40P01" || state == "23505" || state == "23503";
}

// Reads one content's rows of kContentPieceOctets (the last one shorter).
class ChunkReader final : public ContentReader {
 public:
  ChunkReader(SqlConnection& conn, int64_t content_id, uint64_t size)
      : conn_(conn), content_id_(content_id), size_(size) {}

  uint64_t size() const override { return size_; }

  absl::Status Read(uint64_t offset, uint64_t length, std::string* out) override {
    if (offset > size_ || length > size_ - offset) {
      return v1::MakeError(
          absl::StatusCode::kInternal, v1::SERVER_BUG,
          absl::StrCat("store: content read [", offset, "+", length, ") beyond its size ", size_));
    }
    if (length == 0) {
      return absl::OkStatus();
    }
    const uint64_t end = offset + length;
    const int64_t first = static_cast<int64_t>(offset / kContentPieceOctets);
    const int64_t last = static_cast<int64_t>((end - 1) / kContentPieceOctets);
    ASSIGN_OR_RETURN(
        Result rows,
        conn_.raw().Query("SELECT seq, data FROM content_data WHERE content_id = $1 "
                          "AND seq BETWEEN $2 AND $3 ORDER BY seq",
                          Params().Int(content_id_).Int(first).Int(last), conn_.deadline()));
    const size_t old = out->size();
    for (int row = 0; row < rows.rows(); ++row) {
      const uint64_t start = static_cast<uint64_t>(rows.Int(row, 0)) * kContentPieceOctets;
      const std::string_view data = rows.Bytes(row, 1);
      const uint64_t from = std::max(offset, start);
      const uint64_t to = std::min<uint64_t>(end, start + data.size());
      if (from < to) {
        out->append(data.substr(from - start, to - from));
      }
    }
    if (out->size() - old != length) {
      out->resize(old);
      return v1::MakeError(absl::StatusCode::kDataLoss, v1::SERVER_BUG,
                           absl::StrCat("store: content ", content_id_, " is missing pieces"));
    }
    return absl::OkStatus();
  }

 private:
  SqlConnection& conn_;
  const int64_t content_id_;
  const uint64_t size_;
};

// The NOTIFY payloads for the events of one committed write, in order: "e:BASE64"
// carries a small event itself (a Deleted event must, since its mailbox's log rows
// go with the mailbox); "c:MAILBOX:MODSEQ" names a large one in the change log.
std::vector<std::string> Payloads(const std::vector<v1::ChangeEvent>& events) {
  std::vector<std::string> out;
  for (const v1::ChangeEvent& event : events) {
    std::string encoded = absl::Base64Escape(event.SerializeAsString());
    if (encoded.size() <= kMaxInlineOctets) {
      out.push_back(absl::StrCat("e:", encoded));
    } else if (event.modseq() != 0) {
      out.push_back(absl::StrCat("c:", event.mailbox_id(), ":", event.modseq()));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(StoreLimits limits, EventSink events,
                                                       Options options) {
  RETURN_IF_ERROR(ValidateConfig(limits, options));
  if (options.conninfo.empty()) {
    return absl::InvalidArgumentError(
        "store: no PostgreSQL connection string (--postgres, e.g. "
        "\"host=/run/postgresql dbname=mail\")");
  }
  if (options.max_connections < 2) {
    return absl::InvalidArgumentError("store: PostgreSQL needs at least 2 pooled connections");
  }
  std::unique_ptr<PgStore> store(new PgStore(limits, std::move(events), options));
  const absl::Time deadline = absl::Now() + options.call_timeout;
  {
    ASSIGN_OR_RETURN(Pool::Lease lease, store->pool_.Acquire(deadline));
    RETURN_IF_ERROR(Migrate(*lease, LatestSchemaVersion(), deadline));
  }
  if (store->events()) {
    // Listening before Open returns: no change committed after it is missed.
    ASSIGN_OR_RETURN(std::unique_ptr<Connection> listener,
                     Connection::Open(options.conninfo, deadline));
    RETURN_IF_ERROR(listener->Exec(absl::StrCat("LISTEN ", kChannel), deadline));
    PgStore* raw = store.get();
    store->listener_ =
        std::thread([raw, conn = std::move(listener)]() mutable { raw->Listen(std::move(conn)); });
  }
  return store;
}

PgStore::PgStore(StoreLimits limits, EventSink events, Options options)
    : SqlStore(limits, std::move(events), options),
      pg_options_(options),
      flush_tag_(std::random_device{}()),
      pool_(options.conninfo, options.max_connections) {}

PgStore::~PgStore() {
  stopping_ = true;
  if (listener_.joinable()) {
    listener_.join();
  }
}

absl::Status PgStore::Write(WriteScope scope, WriteBody body) {
  const absl::Time deadline = absl::Now() + pg_options_.call_timeout;
  thread_local std::minstd_rand jitter(std::random_device{}());
  absl::Status status;
  for (int attempt = 1; attempt <= pg_options_.max_write_attempts; ++attempt) {
    bool lost_before_commit = false;
    status = WriteOnce(scope, body, deadline, &lost_before_commit);
    if (!Retryable(status) && !lost_before_commit) {
      return status;
    }
    // Met a concurrent write (of this replica or another) of shared rows, or the
    // database was briefly away: run it again after a random pause that grows with
    // each attempt (1 ms, 2 ms, 4 ms ... up to 64 ms), so that writers that keep
    // colliding spread out.
    const int64_t cap_us = 1000LL << std::min(attempt - 1, 6);
    const absl::Duration pause = absl::Microseconds(
        std::uniform_int_distribution<int64_t>(cap_us / 2, cap_us)(jitter));
    if (absl::Now() + pause >= deadline) {
      break;
    }
    if (attempt < pg_options_.max_write_attempts) {
      GlobalStoreMetrics().Transaction(TxnOutcome::kRetried);
    }
    absl::SleepFor(pause);
  }
  return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
                       absl::StrCat("store: the write kept conflicting with concurrent writes (",
                                    status.message(), "); try again"));
}

absl::Status PgStore::WriteOnce(WriteScope scope, WriteBody body, absl::Time deadline,
                                bool* lost_before_commit) {
  absl::StatusOr<Pool::Lease> lease = pool_.Acquire(deadline);
  if (!lease.ok()) {
    *lost_before_commit = absl::Now() < deadline;  // the database is unreachable
    return lease.status();
  }
  SqlConnection conn(*std::move(lease), deadline);
  bool commit_sent = false;
  // One round trip: the transaction and its scope's lock, held until it ends.
  const std::string begin =
      absl::StrCat("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(",
                   scope.Key(), ")");
  absl::Status status = conn.Exec(begin.c_str());
  if (!status.ok()) {
    *lost_before_commit = conn.raw().broken();
    return status;
  }
  const int64_t now_ms = NowMs();
  std::vector<v1::ChangeEvent> events;
  conn.set_content_released(false);
  status = RunWrite(conn, body, now_ms, &events);
  if (status.ok()) {
    // Sent at COMMIT, in commit order, to every replica listening.
    for (const std::string& payload : Payloads(events)) {
      status =
          conn.raw()
              .Query("SELECT pg_notify($1, $2)", Params().Text(kChannel).Text(payload), deadline)
              .status();
      if (!status.ok()) {
        break;
      }
    }
  }
  if (status.ok()) {
    commit_sent = true;
    status = conn.Exec("COMMIT");
  }
  if (!status.ok() && !conn.raw().broken() && conn.InTransaction()) {
    conn.Exec("ROLLBACK").IgnoreError();
  }
  // A connection lost before COMMIT went out committed nothing: the write may run
  // again on another. Lost during COMMIT, the outcome is unknown: the caller is
  // told it failed.
  *lost_before_commit = !status.ok() && conn.raw().broken() && !commit_sent;
  GlobalStoreMetrics().Transaction(status.ok() ? TxnOutcome::kCommitted
                                               : TxnOutcome::kRolledBack);
  if (status.ok()) {
    Tidy(conn, now_ms);
  }
  return status;
}

absl::Status PgStore::ContentReleased(sql::Connection& conn) {
  static_cast<SqlConnection&>(conn).set_content_released(true);
  return absl::OkStatus();
}

void PgStore::Tidy(SqlConnection& conn, int64_t now_ms) {
  int64_t pruned = 0;
  if (now_ms >= next_prune_ms_.load(std::memory_order_relaxed)) {
    absl::StatusOr<int64_t> done = PruneExpired(conn, now_ms);
    pruned = done.value_or(0);
    // A full batch means more are due: the next write goes on with them.
    next_prune_ms_.store(pruned >= PruneBatch() ? now_ms : now_ms + 1000,
                         std::memory_order_relaxed);
  }
  if (conn.content_released() && pruned == 0) {
    CollectUnreferencedContent(conn).IgnoreError();
  }
}

absl::StatusOr<SqlStore::ReaderLease> PgStore::Reader() {
  const absl::Time deadline = absl::Now() + pg_options_.call_timeout;
  ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire(deadline));
  return ReaderLease(new SqlConnection(std::move(lease), deadline),
                     [](sql::Connection* conn) { delete conn; });
}

absl::Status PgStore::StoreContentBytes(sql::Connection& sql_conn, int64_t content_id,
                                        const PreparedContent& content) {
  SqlConnection& conn = static_cast<SqlConnection&>(sql_conn);
  auto put = [&](uint64_t offset, std::string_view piece) -> absl::Status {
    return conn.raw()
        .Query("INSERT INTO content_data (content_id, seq, data) VALUES ($1, $2, $3)",
               Params()
                   .Int(content_id)
                   .Int(static_cast<int64_t>(offset / kContentPieceOctets))
                   .Bytes(piece),
               conn.deadline())
        .status();
  };
  if (content.file.has_value()) {
    return ForEachContentPiece(*content.file, put);
  }
  const std::string_view raw = content.raw;
  for (uint64_t offset = 0; offset < raw.size(); offset += kContentPieceOctets) {
    RETURN_IF_ERROR(put(offset, raw.substr(offset, kContentPieceOctets)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ContentReader>> PgStore::OpenContent(sql::Connection& sql_conn,
                                                                    int64_t content_id) {
  SqlConnection& conn = static_cast<SqlConnection&>(sql_conn);
  ASSIGN_OR_RETURN(Result size, conn.raw().Query("SELECT size FROM contents WHERE id = $1",
                                                 Params().Int(content_id), conn.deadline()));
  if (size.rows() == 0) {
    return v1::MakeError(absl::StatusCode::kInternal, v1::SERVER_BUG,
                         "store: message content row is missing");
  }
  return std::unique_ptr<ContentReader>(
      new ChunkReader(conn, content_id, static_cast<uint64_t>(size.Int(0, 0))));
}

absl::Status PgStore::FlushEvents(absl::Duration timeout) {
  if (!listener_.joinable()) {
    return absl::OkStatus();
  }
  const absl::Time deadline = absl::Now() + timeout;
  uint64_t ticket;
  {
    absl::MutexLock lock(&flush_mu_);
    ticket = ++flush_sent_;
  }
  {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool_.Acquire(deadline));
    RETURN_IF_ERROR(
        lease
            ->Query("SELECT pg_notify($1, $2)",
                    Params().Text(kChannel).Text(absl::StrCat("f:", flush_tag_, ":", ticket)),
                    deadline)
            .status());
  }
  absl::MutexLock lock(&flush_mu_);
  auto flushed = [this, ticket]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(flush_mu_) { return flushed_ >= ticket; };
  if (!flush_mu_.AwaitWithDeadline(absl::Condition(&flushed), deadline)) {
    return absl::DeadlineExceededError("store: the change listener did not catch up in time");
  }
  return absl::OkStatus();
}

void PgStore::Listen(std::unique_ptr<Connection> conn) {
  // A quiet connection is probed this often, so that a database that went away
  // without closing it (a partition, a host that died) is noticed.
  constexpr absl::Duration kProbeInterval = absl::Seconds(2);
  absl::Time last_heard = absl::Now();
  while (!stopping_) {
    if (conn == nullptr) {
      absl::StatusOr<std::unique_ptr<Connection>> reopened =
          Connection::Open(pg_options_.conninfo, absl::Now() + absl::Seconds(5));
      if (!reopened.ok() ||
          !(*reopened)
               ->Exec(absl::StrCat("LISTEN ", kChannel), absl::Now() + absl::Seconds(5))
               .ok()) {
        healthy_ = false;
        absl::SleepFor(absl::Milliseconds(200));
        continue;
      }
      conn = *std::move(reopened);
      healthy_ = true;
      last_heard = absl::Now();
      // Changes committed while nobody listened were not heard: every feed ends
      // and resumes from its last MODSEQ, which the change log replays.
      v1::ChangeEvent resync;
      v1::ErrorDetail* reason = resync.mutable_resync()->mutable_reason();
      reason->set_code(v1::UNAVAILABLE);
      reason->set_message(
          "the mailbox service lost its database connection for a while; resume the feed");
      events()(resync);
    }
    absl::StatusOr<std::vector<Notification>> heard =
        conn->WaitForNotifications(absl::Now() + absl::Milliseconds(200));
    bool failed = !heard.ok();
    if (heard.ok() && !heard->empty()) {
      last_heard = absl::Now();
    } else if (heard.ok() && absl::Now() - last_heard >= kProbeInterval) {
      failed = !conn->Exec("SELECT 1", absl::Now() + kProbeInterval).ok();
      last_heard = absl::Now();
    }
    if (heard.ok()) {
      for (const Notification& notification : *heard) {
        if (!Deliver(*conn, notification)) {
          failed = true;
          break;
        }
      }
    }
    if (failed) {
      healthy_ = false;
      conn.reset();
    }
  }
}

bool PgStore::Deliver(Connection& conn, const Notification& notification) {
  if (notification.channel != kChannel) {
    return true;
  }
  const absl::string_view payload(notification.payload);
  if (absl::StartsWith(payload, "e:")) {
    std::string decoded;
    v1::ChangeEvent event;
    if (absl::Base64Unescape(payload.substr(2), &decoded) && event.ParseFromString(decoded)) {
      events()(event);
    }
    return true;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(payload, ':');
  if (parts.size() == 3 && parts[0] == "f") {
    uint64_t tag = 0, ticket = 0;
    if (absl::SimpleAtoi(parts[1], &tag) && tag == flush_tag_ &&
        absl::SimpleAtoi(parts[2], &ticket)) {
      absl::MutexLock lock(&flush_mu_);
      flushed_ = std::max(flushed_, ticket);
    }
    return true;
  }
  uint64_t mailbox_id = 0, modseq = 0;
  if (parts.size() != 3 || parts[0] != "c" || !absl::SimpleAtoi(parts[1], &mailbox_id) ||
      !absl::SimpleAtoi(parts[2], &modseq)) {
    return true;  // not ours
  }
  absl::StatusOr<Result> rows =
      conn.Query("SELECT event FROM changes WHERE mailbox_id = $1 AND modseq = $2",
                 Params().Int(static_cast<int64_t>(mailbox_id)).Int(static_cast<int64_t>(modseq)),
                 absl::Now() + pg_options_.call_timeout);
  if (!rows.ok()) {
    return false;
  }
  for (int row = 0; row < rows->rows(); ++row) {
    v1::ChangeEvent event;
    const std::string_view bytes = rows->Bytes(row, 0);
    if (event.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      events()(event);
    }
  }
  return true;
}

}  // namespace mailbox::store::pg
