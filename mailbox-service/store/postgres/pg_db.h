// A thin layer over libpq for the PostgreSQL backend: connections whose every query
// has a deadline, typed parameters and results in binary form (no text round trip
// of 50 MB contents), SQLSTATE mapped to the errors callers act on, a bounded
// connection pool, and LISTEN/NOTIFY waiting.
//
// Errors:
// * the server unreachable, the connection lost, or the server shutting down:
//   UNAVAILABLE (ErrorCode UNAVAILABLE); the connection is marked broken and the
//   pool drops it;
// * a query past its deadline: DEADLINE_EXCEEDED; the query is cancelled on the
//   server first;
// * serialization failure or deadlock (SQLSTATE 40001, 40P01): ABORTED, which the
//   caller may retry as a whole transaction;
// * unique violation (23505): ALREADY_EXISTS;
// * anything else: INTERNAL (SERVER_BUG) with the server's message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct pg_conn;
struct pg_result;

namespace mailbox::store::pg {

// Parameters of one query, $1 first, all sent in binary form.
class Params {
 public:
  Params& Int(int64_t value);     // int8
  Params& Text(std::string_view value);   // text (UTF-8)
  Params& Bytes(std::string_view value);  // bytea
  Params& Bool(bool value);
  Params& Null();                 // typed by the query's context

  size_t size() const { return values_.size(); }

 private:
  friend class Connection;
  void Add(uint32_t oid, std::string value, bool is_null);
  // Storage is a deque so that pointers handed to libpq stay put while adding.
  std::deque<std::string> values_;
  std::vector<uint32_t> oids_;
  std::vector<bool> nulls_;
};

// A query's rows, read in binary form. Columns are addressed by index; Int() reads
// int2, int4 and int8 columns alike.
class Result {
 public:
  Result() = default;
  explicit Result(pg_result* result);
  Result(Result&& other) noexcept;
  Result& operator=(Result&& other) noexcept;
  ~Result();

  int rows() const;
  bool IsNull(int row, int column) const;
  int64_t Int(int row, int column) const;
  bool Bool(int row, int column) const;
  // Text and bytea columns: the bytes as sent, valid while this Result lives.
  std::string_view Bytes(int row, int column) const;
  // Rows an INSERT, UPDATE or DELETE touched.
  int64_t affected() const;

 private:
  pg_result* result_ = nullptr;
};

struct Notification {
  std::string channel;
  std::string payload;
};

class Connection {
 public:
  // Connects with a libpq connection string or URI ("host=/run/pg dbname=mail",
  // "postgresql://..."); UNAVAILABLE if it cannot by `deadline`.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& conninfo,
                                                          absl::Time deadline);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement with parameters; waits for its result until `deadline`.
  absl::StatusOr<Result> Query(std::string_view sql, const Params& params, absl::Time deadline);
  absl::StatusOr<Result> Query(std::string_view sql, absl::Time deadline) {
    return Query(sql, Params(), deadline);
  }
  // Runs statements without parameters or results (DDL, BEGIN, LISTEN), several
  // separated by ";" allowed.
  absl::Status Exec(std::string_view sql, absl::Time deadline);

  // Waits until a notification arrives (after LISTEN) or `deadline`; returns those
  // that arrived, none at the deadline.
  absl::StatusOr<std::vector<Notification>> WaitForNotifications(absl::Time deadline);

  // Lost or in an unknown state: not to be used again.
  bool broken() const { return broken_; }
  // For a connection that sat idle: false (and broken) if the server closed it
  // meanwhile, e.g. when it restarted. Costs a poll, no round trip.
  bool StillOpen();
  // True outside a transaction block.
  bool idle() const;

 private:
  explicit Connection(pg_conn* conn) : conn_(conn) {}
  // Waits for the socket to be readable (or writable) until `deadline`.
  absl::Status WaitSocket(bool for_write, absl::Time deadline);
  absl::Status Send(std::string_view sql, const Params* params, absl::Time deadline);
  // Sends what libpq holds of a command, waiting for the socket until `deadline`.
  absl::Status FlushOutput(absl::Time deadline);
  // The server-side prepared statement for `sql` with the types of `params`,
  // prepared on first use (one round trip); null once kMaxPrepared are held, when
  // the query is sent unnamed (parsed and planned each time).
  absl::StatusOr<const std::string*> Prepared(std::string_view sql, const Params& params,
                                              absl::Time deadline);
  absl::StatusOr<Result> Receive(absl::Time deadline);
  absl::Status Lost(std::string_view what);
  void Cancel();

  // Bounds the statements one connection keeps prepared on the server. The store's
  // queries are a fixed set far below it; the rest are sent unnamed.
  static constexpr size_t kMaxPrepared = 256;

  pg_conn* conn_;
  bool broken_ = false;
  // SQL text and parameter types -> statement name.
  std::unordered_map<std::string, std::string> prepared_;
  uint64_t statements_made_ = 0;  // names are never reused, even after a failed prepare
};

// Connections to one database, at most `max_connections` at once. Acquire waits
// for a free one until its deadline (then UNAVAILABLE naming the limit); a broken
// connection is dropped when returned, and a new one is opened in its place on
// demand, so a database restart costs the calls in flight and nothing more.
class Pool {
 public:
  Pool(std::string conninfo, int max_connections);
  ~Pool();

  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), conn_(std::move(other.conn_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Connection* operator->() const { return conn_.get(); }
    Connection& operator*() const { return *conn_; }

   private:
    friend class Pool;
    Lease(Pool* pool, std::unique_ptr<Connection> conn);
    Pool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  absl::StatusOr<Lease> Acquire(absl::Time deadline);

  // Connections open now, leased or idle.
  int open_connections() const;

 private:
  void Return(std::unique_ptr<Connection> conn);

  const std::string conninfo_;
  const int max_connections_;
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// The SQLSTATE of a status this layer returned ("" if none).
std::string SqlStateOf(const absl::Status& status);

}  // namespace mailbox::store::pg
