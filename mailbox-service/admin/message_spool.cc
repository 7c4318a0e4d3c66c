#include "mailbox-service/admin/message_spool.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mailbox::admin {

MessageSpool::MessageSpool(size_t memory_limit) : memory_limit_(memory_limit) {}

absl::Status MessageSpool::Append(std::string_view data) {
  if (data.empty()) {
    return absl::OkStatus();
  }
  if (!in_file_ && memory_.size() + data.size() <= memory_limit_) {
    memory_.append(data.data(), data.size());
    size_ += data.size();
    return absl::OkStatus();
  }
  if (!in_file_) {
    if (file_ == nullptr) {
      // tmpfile() creates the file unlinked: nothing is left behind, even on a crash.
      file_.reset(std::tmpfile());
      if (file_ == nullptr) {
        return absl::InternalError(
            absl::StrCat("cannot create a temporary file to hold a large message: ",
                         std::strerror(errno)));
      }
    }
    // The file may hold an earlier message: size_ says how much of it counts.
    if (std::fseek(file_.get(), 0, SEEK_SET) != 0 ||
        std::fwrite(memory_.data(), 1, memory_.size(), file_.get()) != memory_.size()) {
      return absl::InternalError(
          absl::StrCat("cannot write the temporary file: ", std::strerror(errno)));
    }
    in_file_ = true;
    memory_.clear();
    memory_.shrink_to_fit();
  }
  if (std::fwrite(data.data(), 1, data.size(), file_.get()) != data.size()) {
    return absl::InternalError(
        absl::StrCat("cannot write the temporary file: ", std::strerror(errno)));
  }
  size_ += data.size();
  return absl::OkStatus();
}

absl::Status MessageSpool::ForEachChunk(
    size_t chunk_size, const std::function<absl::Status(std::string_view)>& consume) {
  if (chunk_size == 0) {
    return absl::InvalidArgumentError("chunk size 0");
  }
  if (!in_file_) {
    std::string_view rest = memory_;
    while (!rest.empty()) {
      const size_t n = std::min(chunk_size, rest.size());
      if (absl::Status status = consume(rest.substr(0, n)); !status.ok()) {
        return status;
      }
      rest.remove_prefix(n);
    }
    return absl::OkStatus();
  }
  if (std::fflush(file_.get()) != 0 || std::fseek(file_.get(), 0, SEEK_SET) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot read back the temporary file: ", std::strerror(errno)));
  }
  std::vector<char> buffer(chunk_size);
  uint64_t left = size_;
  absl::Status status;
  while (left > 0 && status.ok()) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk_size, left));
    const size_t got = std::fread(buffer.data(), 1, want, file_.get());
    if (got != want) {
      status = absl::InternalError("the temporary file is shorter than what was written");
      break;
    }
    left -= got;
    status = consume(std::string_view(buffer.data(), got));
  }
  // Leave the position at the end of the content so a later Append continues it.
  if (std::fseek(file_.get(), static_cast<long>(size_), SEEK_SET) != 0 && status.ok()) {
    status = absl::InternalError("cannot seek in the temporary file");
  }
  return status;
}

void MessageSpool::Clear() {
  memory_.clear();
  size_ = 0;
  in_file_ = false;
}

}  // namespace mailbox::admin
