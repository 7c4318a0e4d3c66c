// Ends server-streaming calls whose reader stopped reading. A Fetch's writes are
// made from a pool thread that waits for each one: a write to a stream whose
// flow-control window stays closed blocks that thread until the call's deadline
// (30 minutes for a gateway's FETCH). The
// watch cancels a call once one of its writes has been blocked for longer than a
// timeout; the blocked Write then returns false and the handler ends, giving its
// thread and its user's call slot back.
#pragma once

#include <atomic>
#include <cstdint>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"

namespace mailbox::server {

class StallWatch {
 public:
  // A timeout of zero (or less) watches nothing and starts no thread.
  explicit StallWatch(absl::Duration timeout);
  ~StallWatch();
  StallWatch(const StallWatch&) = delete;
  StallWatch& operator=(const StallWatch&) = delete;

  // One watched call, registered for the lifetime of this object (which must end
  // before the call's handler returns).
  class Call {
   public:
    Call(StallWatch* watch, grpc::ServerContextBase* context);
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    // Bracket every blocking write.
    void BeginWrite() { write_started_ns_.store(absl::GetCurrentTimeNanos()); }
    void EndWrite() { write_started_ns_.store(0); }

   private:
    friend class StallWatch;
    StallWatch* watch_;
    grpc::ServerContextBase* context_;
    std::atomic<int64_t> write_started_ns_{0};
    bool cancelled_ = false;  // guarded by watch_->mutex_
  };

  // Calls cancelled for stalling so far.
  int64_t cancelled() const { return cancelled_.load(); }

 private:
  void Run();

  const absl::Duration timeout_;
  absl::Mutex mutex_;
  std::set<Call*> calls_ ABSL_GUARDED_BY(mutex_);
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<int64_t> cancelled_{0};
  std::thread thread_;
};

}  // namespace mailbox::server
