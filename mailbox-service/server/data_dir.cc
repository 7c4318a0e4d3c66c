#include "mailbox-service/server/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mailbox-service/server/auth.h"
#include "storage-client/posix_file.h"

namespace mailbox::server {
namespace {

namespace fs = std::filesystem;

// The name older versions stored the session key under, in the store's secrets.
constexpr std::string_view kStoredSessionKey = "session-hmac-key";
constexpr size_t kMinSessionKeyChars = 32;
// A secret file is one line of hex or a few key lines; anything much larger is
// not one of ours.
constexpr off_t kMaxSecretFileBytes = 64 * 1024;

absl::Status PosixError(const char* what, const fs::path& path, int error) {
  return posix::ErrnoError(what, path.string(), error);
}

absl::StatusOr<std::string> ReadWholeSecret(const fs::path& path) {
  absl::StatusOr<posix::OpenFile> file = posix::OpenRegularFile(
      path.string(), "a secret file must be a regular file of the service's user");
  if (!file.ok()) {
    return file.status();
  }
  const struct stat& info = file->info;
  if ((info.st_mode & 0077) != 0) {
    // Someone else may already have read it: using it as if nothing happened
    // would hide that. The operator either replaces it or vouches for it with
    // chmod.
    return absl::FailedPreconditionError(
        absl::StrFormat("%s has mode %04o: group or others may have read it. If they may have, "
                        "delete it "
                        "(a new one is made at start) and let the tools that use it pick up "
                        "the new one; "
                        "if not, run chmod 600 on it. The service will not use it as it is",
                        path.string(), info.st_mode & 07777));
  }
  if (info.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path.string(), " belongs to uid ", info.st_uid,
                     ", not to the service's user (uid ", ::geteuid(), ")"));
  }
  if (info.st_size > kMaxSecretFileBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(path.string(), " is ", info.st_size, " bytes: not a secret file"));
  }
  return posix::ReadAll(file->fd.get(), static_cast<size_t>(info.st_size), path.string());
}

}  // namespace

absl::StatusOr<std::vector<std::string>> InstallProvidedSecrets(
    const fs::path& dir, const std::vector<ProvidedSecret>& secrets) {
  std::vector<std::string> installed;
  for (const ProvidedSecret& secret : secrets) {
    const fs::path source = dir / secret.name;
    std::error_code ec;
    // A Secret volume's file is a link (name -> ..data/name -> ..<timestamp>/name).
    const fs::path target = fs::canonical(source, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("--secrets-dir: ", source.string(), ": ", ec.message()));
    }
    absl::StatusOr<posix::OpenFile> file =
        posix::OpenRegularFile(target.string(), "not a file the service can copy");
    if (!file.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--secrets-dir: ", source.string(), ": ", file.status().message()));
    }
    if (file->info.st_size == 0 || file->info.st_size > kMaxSecretFileBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--secrets-dir: ", source.string(), " is ", file->info.st_size,
          " bytes; a token or key file is one line, at most ", kMaxSecretFileBytes, " bytes"));
    }
    absl::StatusOr<std::string> content =
        posix::ReadAll(file->fd.get(), static_cast<size_t>(file->info.st_size), source.string());
    if (!content.ok()) {
      return content.status();
    }
    if (absl::StatusOr<std::string> current = ReadWholeSecret(secret.path);
        current.ok() && *current == *content) {
      continue;
    }
    // Replaced at start, before anything reads it (the data directory is locked).
    if (::unlink(secret.path.c_str()) != 0 && errno != ENOENT) {
      return PosixError("cannot remove", secret.path, errno);
    }
    if (absl::Status written = WriteSecretFile(secret.path, *content); !written.ok()) {
      return written;
    }
    installed.push_back(absl::StrCat(secret.path.string(), " from ", source.string()));
  }
  return installed;
}

bool DatabaseWasExposed(const fs::path& db, const std::vector<fs::path>& tightened) {
  for (const fs::path& path : tightened) {
    if (path.filename() == db.filename() ||
        path.filename() == db.filename().string() + "-wal" ||
        path.filename() == db.filename().string() + "-shm") {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> PrepareDataDir(const fs::path& dir,
                                                        const std::vector<fs::path>& keep_as_is,
                                                        std::vector<fs::path>* tightened) {
  // Everything this process creates from here on (database, -wal, -shm, lock
  // and secret files, the port file) is for the service's user alone.
  ::umask(077);
  std::vector<std::string> changes;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data directory ", dir.string(), ": ", ec.message()));
  }
  struct stat info {};
  if (::lstat(dir.c_str(), &info) != 0) {
    return PosixError("cannot stat data directory", dir, errno);
  }
  if (!S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", dir.string(),
                     " is not a directory (a symbolic link "
                     "or a file); give the real directory's path"));
  }
  if ((info.st_mode & 0077) != 0) {
    if (::chmod(dir.c_str(), info.st_mode & 0700) != 0) {
      return PosixError("cannot restrict the permissions of data directory", dir, errno);
    }
    changes.push_back(absl::StrFormat("data directory %s: mode %04o -> %04o", dir.string(),
                                      info.st_mode & 07777, info.st_mode & 0700));
  }
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot list data directory ", dir.string(), ": ", ec.message()));
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot list data directory ", dir.string(), ": ", ec.message()));
    }
    const fs::path& path = it->path();
    bool keep = false;
    for (const fs::path& secret : keep_as_is) {
      keep = keep || fs::equivalent(path, secret, ec);
    }
    if (keep) {
      continue;
    }
    struct stat entry {};
    if (::lstat(path.c_str(), &entry) != 0 || !S_ISREG(entry.st_mode) ||
        (entry.st_mode & 0077) == 0) {
      continue;
    }
    if (::chmod(path.c_str(), entry.st_mode & 0700) != 0) {
      return PosixError("cannot restrict the permissions of", path, errno);
    }
    changes.push_back(absl::StrFormat("%s: mode %04o -> %04o", path.string(), entry.st_mode & 07777,
                                      entry.st_mode & 0700));
    if (tightened != nullptr) {
      tightened->push_back(path);
    }
  }
  return changes;
}

absl::StatusOr<DataDirLock> DataDirLock::Acquire(const fs::path& dir) {
  const fs::path path = dir / "service.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return PosixError("cannot open the lock file", path, errno);
  }
  DataDirLock lock(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error != EWOULDBLOCK) {
      return PosixError("cannot lock", path, error);
    }
    char buffer[32] = {};
    ssize_t got = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
    std::string holder = got > 0 ? std::string(absl::StripAsciiWhitespace(
                                       absl::string_view(buffer, static_cast<size_t>(got))))
                                 : "unknown";
    return absl::FailedPreconditionError(absl::StrCat(
        "data directory ", dir.string(), " is in use by another mailbox-service (pid ", holder,
        "): one service per data directory; stop the other one or "
        "give another --data-dir"));
  }
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return PosixError("cannot write the pid to", path, errno);
  }
  return lock;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) {
    ::close(fd_);  // releases the flock
  }
}

absl::StatusOr<std::string> ReadSecretFile(const fs::path& path) {
  auto content = ReadWholeSecret(path);
  if (!content.ok()) {
    return content.status();
  }
  std::string_view first = *content;
  first = first.substr(0, first.find('\n'));
  return std::string(absl::StripAsciiWhitespace(absl::string_view(first.data(), first.size())));
}

absl::StatusOr<std::vector<std::string>> ReadSecretLines(const fs::path& path) {
  auto content = ReadWholeSecret(path);
  if (!content.ok()) {
    return content.status();
  }
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') {
      lines.emplace_back(line);
    }
  }
  return lines;
}

absl::Status WriteSecretFile(const fs::path& path, std::string_view content) {
  return posix::WriteNewPrivateFile(path.string(), content);
}

absl::StatusOr<std::string> LoadOrCreateAdminToken(const fs::path& path) {
  auto token = ReadSecretFile(path);
  if (token.ok()) {
    if (token->empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path.string(), " is empty; delete it so that a new token is made"));
    }
    return token;
  }
  if (!absl::IsNotFound(token.status())) {
    return token.status();
  }
  std::string fresh = RandomHex(32);
  if (absl::Status written = WriteSecretFile(path, absl::StrCat(fresh, "\n")); !written.ok()) {
    return written;
  }
  return fresh;
}

absl::StatusOr<SessionKeyRing> LoadOrCreateSessionKeys(const fs::path& path, store::Store* store,
                                                       bool database_exposed,
                                                       std::vector<std::string>* log) {
  auto lines = ReadSecretLines(path);
  if (absl::IsNotFound(lines.status())) {
    std::string key;
    std::string origin;
    auto stored = store->FindSecret(kStoredSessionKey);
    if (stored.ok() && database_exposed) {
      // Anyone who could read the database may have the key and could sign
      // tokens for any user with it: carrying it over would keep that power
      // alive.
      key = RandomHex(32);
      origin = "new; the key in the database was readable by others";
      if (log != nullptr) {
        log->push_back(
            "the session key older versions kept in the database was readable by others: "
            "it is not carried over; a new key signs sessions and every existing session "
            "ends (users log in again)");
      }
    } else if (stored.ok() && stored->size() >= kMinSessionKeyChars) {
      key = *stored;
      origin = "moved from the database, where older versions kept it";
    } else if (stored.ok() || absl::IsNotFound(stored.status())) {
      key = RandomHex(32);
      origin = "new";
    } else {
      return stored.status();
    }
    std::string content =
        absl::StrCat("# mailbox-service session-token keys (", origin, ").\n",
                     "# The first key signs new tokens; every key listed checks them. To "
                     "rotate, put a\n",
                     "# new key (openssl rand -hex 32) on the first line, keep the old one "
                     "below it,\n",
                     "# restart the service, and remove the old line once a session "
                     "lifetime (24 h)\n",
                     "# has passed. Every replica needs the same file.\n", key, "\n");
    if (absl::Status written = WriteSecretFile(path, content); !written.ok()) {
      return written;
    }
    lines = ReadSecretLines(path);
  }
  if (!lines.ok()) {
    return lines.status();
  }
  SessionKeyRing keys;
  for (std::string& line : *lines) {
    if (line.size() < kMinSessionKeyChars) {
      return absl::FailedPreconditionError(absl::StrCat(
          path.string(), ": a key line has ", line.size(), " characters; each key needs at least ",
          kMinSessionKeyChars, " (e.g. openssl rand -hex 32)"));
    }
    keys.keys.push_back(std::move(line));
  }
  if (keys.keys.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path.string(), " holds no key; delete it so that a new one is made"));
  }
  // The file is durable now: the database must not keep a copy of a signing
  // key.
  if (absl::Status deleted = store->DeleteSecret(kStoredSessionKey); !deleted.ok()) {
    return deleted;
  }
  return keys;
}

}  // namespace mailbox::server
