// The mailbox service's data directory: its permissions, the lock that keeps a
// second service off it, and the secret files kept in it (the admin token and
// the session-token signing keys).
//
// The directory holds the password hashes (in the database) and the keys that
// sign session tokens: anyone who can read it can log in as anyone. So the
// service creates everything in it for its own user only (umask 077), tightens
// what an older version left readable, and refuses secret files that others can
// read.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailbox-service/server/auth.h"
#include "mailbox-service/store/store.h"

namespace mailbox::server {

// Sets the process umask to 077 (so the database and SQLite's -wal and -shm
// files, created later, are 0600), creates `dir` (0700) if missing, and removes
// group and other permissions from it and from the files directly in it. Secret
// files
// (`keep_as_is`: the admin token, the session key file) are not touched: their
// readers check them and refuse them instead. Returns one line per change made,
// for the log; `tightened`, if given, receives the paths whose mode was changed.
absl::StatusOr<std::vector<std::string>> PrepareDataDir(
    const std::filesystem::path& dir, const std::vector<std::filesystem::path>& keep_as_is,
    std::vector<std::filesystem::path>* tightened = nullptr);

// True if `tightened` (from PrepareDataDir) names the database `db` or its -wal or
// -shm file: others could have read what the database holds.
bool DatabaseWasExposed(const std::filesystem::path& db,
                        const std::vector<std::filesystem::path>& tightened);

// An exclusive flock on <dir>/service.lock, held until destruction (or exit). A
// second service on the same directory would split the change feed and race the
// first one's migrations, so it must not start.
class DataDirLock {
 public:
  // FailedPrecondition naming the holder's pid when another process holds the
  // lock.
  static absl::StatusOr<DataDirLock> Acquire(const std::filesystem::path& dir);

  DataDirLock(DataDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DataDirLock& operator=(DataDirLock&&) = delete;
  DataDirLock(const DataDirLock&) = delete;
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Reads the first line of a secret file. NotFound if it does not exist;
// FailedPrecondition if it is not a regular file of ours or if its mode gives
// any access to group or others (it may have been read: the operator must
// decide).
absl::StatusOr<std::string> ReadSecretFile(const std::filesystem::path& path);
// Like ReadSecretFile, every non-empty line that does not start with '#'.
absl::StatusOr<std::vector<std::string>> ReadSecretLines(const std::filesystem::path& path);

// Writes `content` to a new file at `path`, mode 0600 from its creation
// (O_CREAT | O_EXCL, its mode set before anything is written), durably (fsync of
// file and directory). Fails if `path` exists. See posix::WriteNewPrivateFile.
absl::Status WriteSecretFile(const std::filesystem::path& path, std::string_view content);

// One secret an orchestrator provides: `name` in the secrets directory, installed
// at `path`.
struct ProvidedSecret {
  std::string name;  // "admin.token"
  std::filesystem::path path;
};

// Copies each of `secrets` from `dir` (a directory an orchestrator mounts read-only,
// such as a Kubernetes Secret volume, whose files are symbolic links to files of
// root readable by the pod's group) to its path, as a file of the service's user with
// mode 0600, replacing what is there. The directory is the operator's choice, so its
// files' links, owner and mode are not held against them; each must be a non-empty
// regular file of at most 64 KiB. Returns one line per file replaced, for the log (a
// file that already holds the same bytes is left alone). FailedPrecondition names a
// missing or unusable file; nothing after it is copied.
absl::StatusOr<std::vector<std::string>> InstallProvidedSecrets(
    const std::filesystem::path& dir, const std::vector<ProvidedSecret>& secrets);

// The admin token in `path`, made (32 random bytes, hex) if the file does not
// exist.
absl::StatusOr<std::string> LoadOrCreateAdminToken(const std::filesystem::path& path);

// The session keys from `path` (one per line, newest first; '#' lines are
// comments; each at least 32 characters). If the file does not exist it is
// created, with the key an older version kept in the store if there is one (so
// existing sessions survive the upgrade), else a fresh random key. When
// `database_exposed` (older versions left the database readable by others), a key
// found there is not carried over: a fresh one is made and every existing session
// ends. The key is then deleted from the store (secure_delete, then a truncating
// WAL checkpoint): the database no longer holds what signs sessions. `log`, if
// given, receives a line for the operator when the old key was discarded.
absl::StatusOr<SessionKeyRing> LoadOrCreateSessionKeys(const std::filesystem::path& path,
                                                       store::Store* store,
                                                       bool database_exposed = false,
                                                       std::vector<std::string>* log = nullptr);

}  // namespace mailbox::server
