#include "gateway/ops/drain.h"

namespace gateway::ops {

Drain::Clock::time_point Drain::Begin() {
  std::lock_guard lock(mutex_);
  if (!grace_end_.has_value()) {
    grace_end_ = Clock::now() + grace_;
    metrics_.draining = true;
  }
  return *grace_end_;
}

bool Drain::started() const {
  std::lock_guard lock(mutex_);
  return grace_end_.has_value();
}

}  // namespace gateway::ops
