#include "mailbox-service/store/postgres/pg_test_server.h"

#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mailbox::store::pg {
namespace {

constexpr int kPort = 5432;  // names the socket file; the directory is private

std::string FindBinDir() {
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
                          "/usr/lib/postgresql/17/bin"}) {
    if (std::filesystem::exists(std::filesystem::path(dir) / "pg_ctl")) {
      return dir;
    }
  }
  return "";
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  std::string text = all.str();
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

}  // namespace

absl::StatusOr<TestServer> TestServer::Start() {
  TestServer server;
  server.bin_dir_ = FindBinDir();
  if (server.bin_dir_.empty()) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: install the Debian "
        "package postgresql-15 (tools/install-deps.sh does)");
  }
  // Under /tmp, not TEST_TMPDIR: the server's user must reach the directory, and a
  // Unix socket path must stay short.
  char pattern[] = "/tmp/imapd-pg-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    return absl::InternalError("cannot create a directory under /tmp");
  }
  server.dir_ = pattern;
  server.as_postgres_user_ = ::geteuid() == 0;
  if (server.as_postgres_user_) {
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          "running as root and there is no \"postgres\" user to run the server as (the "
          "Debian package postgresql-15 creates it)");
    }
    if (::chown(server.dir_.c_str(), user->pw_uid, user->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat("cannot hand ", server.dir_, " to postgres"));
    }
  }
  if (absl::Status init =
          server.Run(absl::StrCat(server.bin_dir_, "/initdb -D ", server.dir_,
                                  "/data -U postgres --auth=trust --no-sync -E UTF8 "
                                  "--locale=C.UTF-8 > ",
                                  server.dir_, "/initdb.log 2>&1"));
      !init.ok()) {
    return absl::InternalError(absl::StrCat("initdb failed: ", init.message(), "\n",
                                            Tail(server.dir_ + "/initdb.log")));
  }
  if (absl::Status started = server.Restart(); !started.ok()) {
    return started;
  }
  return server;
}

TestServer::TestServer(TestServer&& other) noexcept
    : bin_dir_(std::move(other.bin_dir_)),
      dir_(std::exchange(other.dir_, "")),
      as_postgres_user_(other.as_postgres_user_),
      running_(std::exchange(other.running_, false)) {}

TestServer::~TestServer() {
  if (dir_.empty()) {
    return;
  }
  if (running_) {
    Stop().IgnoreError();
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string TestServer::conninfo(const std::string& dbname) const {
  return absl::StrCat("host=", dir_, " port=", kPort, " dbname=", dbname, " user=postgres");
}

absl::Status TestServer::CreateDatabase(const std::string& dbname) const {
  return Run(absl::StrCat(bin_dir_, "/createdb -h ", dir_, " -p ", kPort, " -U postgres ",
                          dbname));
}

absl::Status TestServer::Run(const std::string& command) const {
  // From "/": the server's user may not enter the test's working directory.
  const std::string full = as_postgres_user_
                               ? absl::StrCat("cd / && runuser -u postgres -- sh -c '", command, "'")
                               : command;
  const int rc = std::system(full.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("`", full, "` exited with ", rc));
  }
  return absl::OkStatus();
}

absl::Status TestServer::Stop() {
  absl::Status stopped = Run(absl::StrCat(bin_dir_, "/pg_ctl -D ", dir_,
                                          "/data -m immediate -w stop > /dev/null 2>&1"));
  running_ = false;
  return stopped;
}

absl::Status TestServer::Restart() {
  if (running_) {
    if (absl::Status stopped = Stop(); !stopped.ok()) {
      return stopped;
    }
  }
  // Only the Unix socket, no TCP; fsync stays on like production (the durability
  // tests need it).
  absl::Status started = Run(absl::StrCat(
      bin_dir_, "/pg_ctl -D ", dir_, "/data -l ", dir_, "/server.log -w -t 60 -o \"-k ", dir_,
      " -p ", kPort, " -c listen_addresses= -c max_connections=200\" start > /dev/null 2>&1"));
  if (!started.ok()) {
    return absl::InternalError(absl::StrCat("PostgreSQL did not start: ", started.message(), "\n",
                                            Tail(dir_ + "/server.log")));
  }
  running_ = true;
  return absl::OkStatus();
}

}  // namespace mailbox::store::pg
