// The threads that do the service's blocking work. gRPC's callback API runs
// handlers on its own few threads, which must never wait for SQLite, a password
// hash or a slow reader; every call therefore hands its work to this pool: a fixed
// number of threads, started once (no thread is made or ended per call), and a
// bounded queue in front of them. Work that finds the queue full is refused at
// once, so an overloaded service answers "busy" instead of holding calls without
// bound.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace mailbox::server {

class WorkPool {
 public:
  // `threads` >= 1 run the work; at most `max_queued` items wait for a free thread.
  WorkPool(int threads, size_t max_queued);
  // Runs the work still queued, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `work` to run on one of the threads. False when every thread is busy
  // and `max_queued` items already wait: the work is then dropped without running,
  // and the caller answers for it.
  bool TrySubmit(absl::AnyInvocable<void() &&> work);

  // Items waiting for a thread now (for tests and metrics).
  size_t queued() const;
  // Threads running an item now (for metrics).
  size_t busy() const;
  // Items TrySubmit refused since the start (for metrics).
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Run();

  const size_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<absl::AnyInvocable<void() &&>> queue_;  // guarded by mutex_
  size_t idle_;  // threads not running an item; guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::atomic<uint64_t> refused_{0};
  std::vector<std::thread> threads_;
};

}  // namespace mailbox::server
