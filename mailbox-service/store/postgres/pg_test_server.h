// A private PostgreSQL server for tests: initdb into a fresh directory, listening
// only on a Unix socket in that directory, started and stopped with pg_ctl, removed
// afterwards. PostgreSQL refuses to run as root, so when the test runs as root the
// server runs as the "postgres" user that Debian's package creates.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailbox::store::pg {

class TestServer {
 public:
  // Creates and starts a server; the error says what is missing (the Debian
  // packages postgresql-15 and libpq-dev) or what failed, with its log.
  static absl::StatusOr<TestServer> Start();
  TestServer(TestServer&& other) noexcept;
  TestServer& operator=(TestServer&&) = delete;
  ~TestServer();  // stops the server and removes its directory

  // For Connection::Open and Pool, to database `dbname` (made with CreateDatabase,
  // or the "postgres" database initdb makes).
  std::string conninfo(const std::string& dbname = "postgres") const;
  // A fresh, empty database.
  absl::Status CreateDatabase(const std::string& dbname) const;

  // Stops the server at once (pg_ctl -m immediate: like a crash) and starts it
  // again on the same data, for tests of outages and restarts.
  absl::Status Stop();
  absl::Status Restart();

 private:
  TestServer() = default;
  absl::Status Run(const std::string& command) const;

  std::string bin_dir_;
  std::string dir_;  // holds data/, the socket and server.log
  bool as_postgres_user_ = false;
  bool running_ = false;
};

}  // namespace mailbox::store::pg
