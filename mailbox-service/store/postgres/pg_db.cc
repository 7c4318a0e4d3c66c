#include "mailbox-service/store/postgres/pg_db.h"

#include <endian.h>
#include <poll.h>
#include <postgresql/libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "mailbox-service/store/store_metrics.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::store::pg {
namespace {

// Type OIDs of the parameter kinds (pg_type.dat).
constexpr uint32_t kBoolOid = 16;
constexpr uint32_t kByteaOid = 17;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kInt2Oid = 21;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kTextOid = 25;

constexpr std::string_view kSqlStatePayload = "mailbox.store.pg/sqlstate";

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Unavailable(std::string_view message) {
  return v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
                       absl::StrCat("store: PostgreSQL: ", AV(message)));
}

// The error of a failed result, by its SQLSTATE.
absl::Status ErrorOf(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const std::string sqlstate = state != nullptr ? state : "";
  const std::string message =
      absl::StrCat("store: PostgreSQL: ", primary != nullptr ? primary : "error",
                   sqlstate.empty() ? "" : absl::StrCat(" (SQLSTATE ", sqlstate, ")"));
  absl::Status status;
  if (sqlstate == "40001" || sqlstate == "40P01") {
    status = v1::MakeError(absl::StatusCode::kAborted, v1::UNAVAILABLE, message);
  } else if (sqlstate == "23505") {
    status = v1::MakeError(absl::StatusCode::kAlreadyExists, v1::ALREADYEXISTS, message);
  } else if (sqlstate == "57014") {
    status = v1::MakeError(absl::StatusCode::kDeadlineExceeded, v1::UNAVAILABLE, message);
  } else if (sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
             sqlstate == "57P03" || sqlstate == "53300") {
    // Connection exceptions, the server shutting down or starting, too many clients.
    status = v1::MakeError(absl::StatusCode::kUnavailable, v1::UNAVAILABLE, message);
  } else {
    status = v1::MakeError(absl::StatusCode::kInternal, v1::SERVER_BUG, message);
  }
  if (!sqlstate.empty()) {
    status.SetPayload(AV(kSqlStatePayload), absl::Cord(sqlstate));
  }
  return status;
}

int MillisUntil(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return 0;
  }
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60'000));
}

}  // namespace

// --- Params ----------------------------------------------------------------------

void Params::Add(uint32_t oid, std::string value, bool is_null) {
  values_.push_back(std::move(value));
  oids_.push_back(oid);
  nulls_.push_back(is_null);
}

Params& Params::Int(int64_t value) {
  const uint64_t wire = htobe64(static_cast<uint64_t>(value));
  Add(kInt8Oid, std::string(reinterpret_cast<const char*>(&wire), sizeof wire), false);
  return *this;
}

Params& Params::Text(std::string_view value) {
  Add(kTextOid, std::string(value), false);
  return *this;
}

Params& Params::Bytes(std::string_view value) {
  Add(kByteaOid, std::string(value), false);
  return *this;
}

Params& Params::Bool(bool value) {
  Add(kBoolOid, std::string(1, value ? '\1' : '\0'), false);
  return *this;
}

Params& Params::Null() {
  Add(0, std::string(), true);
  return *this;
}

// --- Result ------------------------------------------------------------------------

Result::Result(PGresult* result) : result_(result) {}
Result::Result(Result&& other) noexcept : result_(std::exchange(other.result_, nullptr)) {}
Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    PQclear(result_);
    result_ = std::exchange(other.result_, nullptr);
  }
  return *this;
}
Result::~Result() { PQclear(result_); }

int Result::rows() const { return result_ == nullptr ? 0 : PQntuples(result_); }

bool Result::IsNull(int row, int column) const { return PQgetisnull(result_, row, column) != 0; }

int64_t Result::Int(int row, int column) const {
  const char* value = PQgetvalue(result_, row, column);
  switch (PQftype(result_, column)) {
    case kInt2Oid: {
      uint16_t wire;
      std::memcpy(&wire, value, sizeof wire);
      return static_cast<int16_t>(be16toh(wire));
    }
    case kInt4Oid: {
      uint32_t wire;
      std::memcpy(&wire, value, sizeof wire);
      return static_cast<int32_t>(be32toh(wire));
    }
    case kInt8Oid: {
      uint64_t wire;
      std::memcpy(&wire, value, sizeof wire);
      return static_cast<int64_t>(be64toh(wire));
    }
    case kBoolOid:
      return *value != 0;
    default:
      return 0;  // not an integer column: a programming error the tests catch
  }
}

bool Result::Bool(int row, int column) const { return Int(row, column) != 0; }

std::string_view Result::Bytes(int row, int column) const {
  return std::string_view(PQgetvalue(result_, row, column),
                          static_cast<size_t>(PQgetlength(result_, row, column)));
}

int64_t Result::affected() const {
  const char* tuples = result_ == nullptr ? "" : PQcmdTuples(result_);
  return *tuples == '\0' ? 0 : std::strtoll(tuples, nullptr, 10);
}

// --- Connection --------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& conninfo,
                                                             absl::Time deadline) {
  PGconn* raw = PQconnectStart(conninfo.c_str());
  if (raw == nullptr) {
    return Unavailable("out of memory starting a connection");
  }
  std::unique_ptr<Connection> conn(new Connection(raw));
  if (PQstatus(raw) == CONNECTION_BAD) {
    return conn->Lost("cannot connect");
  }
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  while (polling != PGRES_POLLING_OK) {
    if (polling == PGRES_POLLING_FAILED) {
      return conn->Lost("cannot connect");
    }
    if (absl::Status ready = conn->WaitSocket(polling == PGRES_POLLING_WRITING, deadline);
        !ready.ok()) {
      return ready;
    }
    polling = PQconnectPoll(raw);
  }
  // Server notices ("relation already exists, skipping") are not errors; libpq
  // would print them on stderr.
  PQsetNoticeProcessor(raw, [](void*, const char*) {}, nullptr);
  if (PQsetnonblocking(raw, 1) != 0) {
    return conn->Lost("cannot make the connection non-blocking");
  }
  return conn;
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::idle() const { return PQtransactionStatus(conn_) == PQTRANS_IDLE; }

bool Connection::StillOpen() {
  if (broken_) {
    return false;
  }
  pollfd p{PQsocket(conn_), POLLIN, 0};
  // An idle connection has nothing to read unless the server said goodbye (or sent
  // a notice); reading then tells which.
  if (p.fd < 0 || (::poll(&p, 1, 0) > 0 &&
                   (PQconsumeInput(conn_) == 0 || PQstatus(conn_) == CONNECTION_BAD))) {
    broken_ = true;
  }
  return !broken_;
}

absl::Status Connection::Lost(std::string_view what) {
  broken_ = true;
  std::string detail = PQerrorMessage(conn_);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) {
    detail.pop_back();
  }
  return Unavailable(absl::StrCat(AV(what), detail.empty() ? "" : ": ", detail));
}

absl::Status Connection::WaitSocket(bool for_write, absl::Time deadline) {
  const int fd = PQsocket(conn_);
  if (fd < 0) {
    return Lost("no connection");
  }
  while (true) {
    const int wait_ms = MillisUntil(deadline);
    if (wait_ms == 0) {
      return v1::MakeError(absl::StatusCode::kDeadlineExceeded, v1::UNAVAILABLE,
                           "store: PostgreSQL did not answer before the call's deadline");
    }
    pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const int n = ::poll(&p, 1, wait_ms);
    if (n > 0) {
      return absl::OkStatus();
    }
    if (n < 0 && errno != EINTR) {
      return Lost(absl::StrCat("poll: ", std::strerror(errno)));
    }
  }
}

void Connection::Cancel() {
  PGcancel* cancel = PQgetCancel(conn_);
  if (cancel == nullptr) {
    broken_ = true;
    return;
  }
  char error[256];
  if (PQcancel(cancel, error, sizeof error) == 0) {
    broken_ = true;
  }
  PQfreeCancel(cancel);
}

absl::Status Connection::Send(std::string_view sql, const Params* params, absl::Time deadline) {
  if (broken_) {
    return Unavailable("the connection was lost");
  }
  const std::string* name = nullptr;
  if (params != nullptr) {
    absl::StatusOr<const std::string*> prepared = Prepared(sql, *params, deadline);
    if (!prepared.ok()) {
      return prepared.status();
    }
    name = *prepared;
  }
  int sent;
  if (params == nullptr) {
    sent = PQsendQuery(conn_, std::string(sql).c_str());
  } else {
    const int n = static_cast<int>(params->size());
    std::vector<const char*> values(n);
    std::vector<int> lengths(n), formats(n, 1);
    std::vector<Oid> types(n);
    for (int i = 0; i < n; ++i) {
      values[i] = params->nulls_[i] ? nullptr : params->values_[i].data();
      lengths[i] = static_cast<int>(params->values_[i].size());
      types[i] = params->oids_[i];
    }
    sent = name != nullptr
               ? PQsendQueryPrepared(conn_, name->c_str(), n, values.data(), lengths.data(),
                                     formats.data(), /*resultFormat=*/1)
               : PQsendQueryParams(conn_, std::string(sql).c_str(), n, types.data(),
                                   values.data(), lengths.data(), formats.data(),
                                   /*resultFormat=*/1);
  }
  if (sent == 0) {
    return Lost("cannot send the query");
  }
  return FlushOutput(deadline);
}

absl::Status Connection::FlushOutput(absl::Time deadline) {
  while (true) {
    const int flushed = PQflush(conn_);
    if (flushed == 0) {
      return absl::OkStatus();
    }
    if (flushed < 0) {
      return Lost("cannot send the query");
    }
    if (absl::Status ready = WaitSocket(true, deadline); !ready.ok()) {
      // Part of the query may be on the wire: the connection's state is unknown.
      broken_ = true;
      return ready;
    }
    if (PQconsumeInput(conn_) == 0) {
      return Lost("connection lost while sending");
    }
  }
}

absl::StatusOr<const std::string*> Connection::Prepared(std::string_view sql,
                                                        const Params& params,
                                                        absl::Time deadline) {
  std::string key(sql);
  key.push_back('\0');
  for (uint32_t oid : params.oids_) {
    absl::StrAppend(&key, oid, ",");
  }
  if (auto it = prepared_.find(key); it != prepared_.end()) {
    return &it->second;
  }
  if (prepared_.size() >= kMaxPrepared) {
    return nullptr;
  }
  std::string name = absl::StrCat("s", ++statements_made_);
  const std::vector<Oid> types(params.oids_.begin(), params.oids_.end());
  if (PQsendPrepare(conn_, name.c_str(), std::string(sql).c_str(), static_cast<int>(types.size()),
                    types.data()) == 0) {
    return Lost("cannot send the query");
  }
  if (absl::Status flushed = FlushOutput(deadline); !flushed.ok()) {
    return flushed;
  }
  if (absl::StatusOr<Result> prepared = Receive(deadline); !prepared.ok()) {
    return prepared.status();
  }
  return &prepared_.emplace(std::move(key), std::move(name)).first->second;
}

absl::StatusOr<Result> Connection::Receive(absl::Time deadline) {
  Result last;
  absl::Status error;
  while (true) {
    while (PQisBusy(conn_)) {
      if (absl::Status ready = WaitSocket(false, deadline); !ready.ok()) {
        if (broken_) {
          return ready;
        }
        // Past the deadline: cancel on the server, then drain what it sends back
        // (a short grace), so the connection can serve the next call.
        Cancel();
        const absl::Time grace = absl::Now() + absl::Seconds(2);
        while (!broken_ && PQisBusy(conn_)) {
          if (!WaitSocket(false, grace).ok() || PQconsumeInput(conn_) == 0) {
            broken_ = true;
          }
        }
        while (!broken_) {
          PGresult* rest = PQgetResult(conn_);
          if (rest == nullptr) {
            break;
          }
          PQclear(rest);
        }
        return ready;
      }
      if (PQconsumeInput(conn_) == 0) {
        return Lost("connection lost while waiting for a result");
      }
    }
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr) {
      break;
    }
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
      if (error.ok()) {
        error = ErrorOf(result);
      }
      PQclear(result);
      continue;
    }
    last = Result(result);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    return Lost("connection lost");
  }
  if (!error.ok()) {
    if (absl::IsUnavailable(error)) {
      broken_ = true;
    }
    return error;
  }
  return last;
}

absl::StatusOr<Result> Connection::Query(std::string_view sql, const Params& params,
                                         absl::Time deadline) {
  if (absl::Status sent = Send(sql, &params, deadline); !sent.ok()) {
    return sent;
  }
  return Receive(deadline);
}

absl::Status Connection::Exec(std::string_view sql, absl::Time deadline) {
  if (absl::Status sent = Send(sql, nullptr, deadline); !sent.ok()) {
    return sent;
  }
  return Receive(deadline).status();
}

absl::StatusOr<std::vector<Notification>> Connection::WaitForNotifications(absl::Time deadline) {
  std::vector<Notification> out;
  while (true) {
    if (PQconsumeInput(conn_) == 0) {
      return Lost("connection lost while listening");
    }
    while (PGnotify* notify = PQnotifies(conn_)) {
      out.push_back({notify->relname, notify->extra});
      PQfreemem(notify);
    }
    if (!out.empty()) {
      return out;
    }
    absl::Status ready = WaitSocket(false, deadline);
    if (absl::IsDeadlineExceeded(ready)) {
      return out;
    }
    if (!ready.ok()) {
      return ready;
    }
  }
}

// --- Pool --------------------------------------------------------------------------

Pool::Pool(std::string conninfo, int max_connections)
    : conninfo_(std::move(conninfo)), max_connections_(std::max(1, max_connections)) {}

Pool::~Pool() = default;

Pool::Lease::Lease(Pool* pool, std::unique_ptr<Connection> conn)
    : pool_(pool), conn_(std::move(conn)) {
  GlobalStoreMetrics().postgres_pool_in_use.Add();
}

Pool::Lease::~Lease() {
  if (conn_ != nullptr) {
    GlobalStoreMetrics().postgres_pool_in_use.Sub();
    pool_->Return(std::move(conn_));
  }
}

int Pool::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

absl::StatusOr<Pool::Lease> Pool::Acquire(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < max_connections_;
    };
    StoreMetrics& metrics = GlobalStoreMetrics();
    const bool must_wait = !available();
    if (must_wait) {
      metrics.postgres_pool_waiting.Add();
    }
    const bool got = mu_.AwaitWithDeadline(absl::Condition(&available), deadline);
    if (must_wait) {
      metrics.postgres_pool_waiting.Sub();
    }
    if (!got) {
      return v1::MakeError(
          absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
          absl::StrCat("store: all ", max_connections_,
                       " PostgreSQL connections of this replica stayed busy until the call's "
                       "deadline"));
    }
    while (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->StillOpen()) {
        return Lease(this, std::move(conn));
      }
      --open_;  // closed by the server while idle (a restart): dropped
    }
    ++open_;  // reserved while connecting, outside the lock
    metrics.postgres_pool_open.Set(open_);
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Open(conninfo_, deadline);
  if (!conn.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    GlobalStoreMetrics().postgres_pool_open.Set(open_);
    return conn.status();
  }
  return Lease(this, *std::move(conn));
}

void Pool::Return(std::unique_ptr<Connection> conn) {
  // A connection left inside a transaction (a caller's early return) is rolled back
  // before anyone else gets it; one that cannot be is dropped.
  if (!conn->broken() && !conn->idle()) {
    if (!conn->Exec("ROLLBACK", absl::Now() + absl::Seconds(2)).ok() || !conn->idle()) {
      conn.reset();
    }
  }
  absl::MutexLock lock(&mu_);
  if (conn == nullptr || conn->broken()) {
    --open_;
    GlobalStoreMetrics().postgres_pool_open.Set(open_);
    return;
  }
  idle_.push_back(std::move(conn));
}

std::string SqlStateOf(const absl::Status& status) {
  absl::optional<absl::Cord> state = status.GetPayload(AV(kSqlStatePayload));
  return state.has_value() ? std::string(*state) : std::string();
}

}  // namespace mailbox::store::pg
