// Where the service keeps message bodies while an Append or Revise stream is still
// arriving. A client decides how long that takes (a MULTIAPPEND can be held open
// between literals for as long as the gateway allows), so the bodies go to an
// unnamed file in the spool directory (mode 0600, unlinked from the start, so
// nothing is left behind even after a crash) once a call's bodies pass a small
// in-memory allowance. A body in the file never comes back into memory whole:
// the store reads it from the file in pieces as it commits it (Lend). Bodies
// still in memory are committed under a process-wide CommitGate.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailbox-service/store/store.h"
#include "mailbox-service/store/work_budget.h"

namespace mailbox::server {

class MessageSpool {
 public:
  // `dir` is created (mode 0700) when the first body goes to disk. Bodies are kept
  // in memory while the call's total stays within `memory_octets`.
  MessageSpool(std::string dir, uint64_t memory_octets);
  ~MessageSpool();
  MessageSpool(const MessageSpool&) = delete;
  MessageSpool& operator=(const MessageSpool&) = delete;

  // Starts the next message, of exactly `size` octets (checked by the caller).
  absl::Status Begin(uint64_t size);
  // The current message, complete so far, grows by `more` octets (RFC 4469
  // CATENATE parts); it moves to the file if memory no longer holds it.
  absl::Status Extend(uint64_t more);
  // Appends content to the current message.
  absl::Status Add(std::string_view chunk);
  size_t count() const { return entries_.size(); }
  uint64_t total_octets() const { return total_; }
  // Octets that went to the file (for tests and metrics).
  uint64_t spooled_octets() const { return file_size_; }
  // Octets held in memory (not in the file).
  uint64_t memory_octets() const { return in_memory_; }
  // Moves message `index` into *out (from memory, or read back from the file).
  absl::Status Take(size_t index, std::string* out);
  // Hands message `index` to the store without reading it back: its content
  // moves into message->content when it is in memory; otherwise message->file
  // names its range of the spool file, valid while this spool lives.
  void Lend(size_t index, store::NewMessage* message);

 private:
  struct Entry {
    bool in_file = false;
    uint64_t offset = 0;  // in the file
    uint64_t size = 0;    // declared
    std::string data;     // in memory
  };
  absl::Status OpenFile();

  const std::string dir_;
  const uint64_t memory_octets_;
  std::vector<Entry> entries_;
  uint64_t total_ = 0;
  uint64_t in_memory_ = 0;
  int fd_ = -1;
  uint64_t file_size_ = 0;
};

// The gate for message content being committed (see store::OctetGate).
using CommitGate = store::OctetGate;

}  // namespace mailbox::server
