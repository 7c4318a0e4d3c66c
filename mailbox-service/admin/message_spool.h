// Holds one message while it is being read, so that its exact size is known before
// the first octet is sent (AppendMessage.size and ReviseHeader.size precede the
// content). Small messages stay in memory; a large one moves to an unlinked temporary
// file, so importing a multi-gigabyte message needs no more memory than a small one.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace mailbox::admin {

class MessageSpool {
 public:
  // Content beyond `memory_limit` octets goes to a temporary file.
  explicit MessageSpool(size_t memory_limit = 8u << 20);

  absl::Status Append(std::string_view data);
  uint64_t size() const { return size_; }
  bool on_disk() const { return in_file_; }

  // Calls `consume` with the content in order, in pieces of at most `chunk_size`.
  // Stops at, and returns, the first error `consume` returns.
  absl::Status ForEachChunk(size_t chunk_size,
                            const std::function<absl::Status(std::string_view)>& consume);

  // Empties the spool for the next message (keeps the temporary file for reuse).
  void Clear();

 private:
  struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
  };

  size_t memory_limit_;
  std::string memory_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  uint64_t size_ = 0;
  bool in_file_ = false;  // the current message is in file_ (from offset 0)
};

}  // namespace mailbox::admin
