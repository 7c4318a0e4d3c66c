#include "mailbox-service/server/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {
namespace {

absl::Status SpoolError(std::string_view what, int error) {
  return v1::MakeError(
      absl::StatusCode::kUnavailable, v1::UNAVAILABLE,
      absl::StrCat("message spool: ", std::string(what), ": ", std::strerror(error)));
}

}  // namespace

MessageSpool::MessageSpool(std::string dir, uint64_t memory_octets)
    : dir_(std::move(dir)), memory_octets_(memory_octets) {}

MessageSpool::~MessageSpool() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

absl::Status MessageSpool::OpenFile() {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return SpoolError(absl::StrCat("cannot create ", dir_), errno);
  }
  // An unnamed file where the file system has them; else a named one, unlinked
  // at once. Either way no other user can open it and nothing outlives the call.
  fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    std::string path = dir_ + "/append-XXXXXX";
    fd_ = ::mkostemp(path.data(), O_CLOEXEC);  // mode 0600
    if (fd_ < 0) {
      return SpoolError(absl::StrCat("cannot create a file in ", dir_), errno);
    }
    ::unlink(path.c_str());
  }
  return absl::OkStatus();
}

absl::Status MessageSpool::Begin(uint64_t size) {
  Entry entry;
  entry.size = size;
  total_ += size;
  if (in_memory_ + size <= memory_octets_) {
    in_memory_ += size;
    entry.data.reserve(size);
  } else {
    if (fd_ < 0) {
      if (absl::Status opened = OpenFile(); !opened.ok()) {
        return opened;
      }
    }
    entry.in_file = true;
    entry.offset = file_size_;
  }
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

absl::Status MessageSpool::Extend(uint64_t more) {
  Entry& entry = entries_.back();
  total_ += more;
  if (!entry.in_file && in_memory_ + more <= memory_octets_) {
    in_memory_ += more;
    entry.size += more;
    entry.data.reserve(entry.size);
    return absl::OkStatus();
  }
  if (!entry.in_file) {
    // The last message, so its octets go at the end of the file.
    if (fd_ < 0) {
      if (absl::Status opened = OpenFile(); !opened.ok()) {
        return opened;
      }
    }
    std::string data = std::move(entry.data);
    entry.data = std::string();
    in_memory_ -= entry.size;
    entry.in_file = true;
    entry.offset = file_size_;
    if (absl::Status written = Add(data); !written.ok()) {
      return written;
    }
  }
  entry.size += more;
  return absl::OkStatus();
}

absl::Status MessageSpool::Add(std::string_view chunk) {
  Entry& entry = entries_.back();
  if (!entry.in_file) {
    entry.data.append(chunk);
    return absl::OkStatus();
  }
  while (!chunk.empty()) {
    ssize_t n = ::pwrite(fd_, chunk.data(), chunk.size(), static_cast<off_t>(file_size_));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SpoolError("cannot write", errno);
    }
    file_size_ += static_cast<uint64_t>(n);
    chunk.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status MessageSpool::Take(size_t index, std::string* out) {
  Entry& entry = entries_[index];
  if (!entry.in_file) {
    *out = std::move(entry.data);
    return absl::OkStatus();
  }
  out->resize(entry.size);
  uint64_t done = 0;
  while (done < entry.size) {
    ssize_t n = ::pread(fd_, out->data() + done, entry.size - done,
                        static_cast<off_t>(entry.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return SpoolError("cannot read back", n < 0 ? errno : EIO);
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

void MessageSpool::Lend(size_t index, store::NewMessage* message) {
  Entry& entry = entries_[index];
  if (!entry.in_file) {
    message->content = std::move(entry.data);
    message->file.reset();
    return;
  }
  message->content.clear();
  message->file = store::ContentFile{fd_, entry.offset, entry.size};
}

}  // namespace mailbox::server
