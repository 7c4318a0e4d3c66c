#include "mailbox-service/server/stall_watch.h"

#include <algorithm>

namespace mailbox::server {

StallWatch::StallWatch(absl::Duration timeout) : timeout_(timeout) {
  if (timeout_ > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Run(); });
  }
}

StallWatch::~StallWatch() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

StallWatch::Call::Call(StallWatch* watch, grpc::ServerContextBase* context)
    : watch_(watch), context_(context) {
  if (watch_->timeout_ > absl::ZeroDuration()) {
    absl::MutexLock lock(&watch_->mutex_);
    watch_->calls_.insert(this);
  }
}

StallWatch::Call::~Call() {
  if (watch_->timeout_ > absl::ZeroDuration()) {
    // Under the mutex, so the watch never cancels a context whose call has ended.
    absl::MutexLock lock(&watch_->mutex_);
    watch_->calls_.erase(this);
  }
}

void StallWatch::Run() {
  // Look a few times per timeout, so a stall is ended within 1.25 timeouts.
  const absl::Duration tick = std::clamp(timeout_ / 4, absl::Milliseconds(50), absl::Seconds(5));
  absl::MutexLock lock(&mutex_);
  while (!mutex_.AwaitWithTimeout(absl::Condition(&stopping_), tick)) {
    const int64_t now = absl::GetCurrentTimeNanos();
    const int64_t limit = absl::ToInt64Nanoseconds(timeout_);
    for (Call* call : calls_) {
      const int64_t started = call->write_started_ns_.load();
      if (started != 0 && !call->cancelled_ && now - started > limit) {
        call->cancelled_ = true;
        cancelled_.fetch_add(1);
        call->context_->TryCancel();
      }
    }
  }
}

}  // namespace mailbox::server
