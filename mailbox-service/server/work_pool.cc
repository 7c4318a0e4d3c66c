#include "mailbox-service/server/work_pool.h"

#include <utility>

namespace mailbox::server {

WorkPool::WorkPool(int threads, size_t max_queued) : max_queued_(max_queued), idle_(threads) {
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Run(); });
  }
}

WorkPool::~WorkPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) {
    thread.join();
  }
}

bool WorkPool::TrySubmit(absl::AnyInvocable<void() &&> work) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Idle threads take their items at once; only the rest count as waiting. (An
    // idle thread woken for an earlier item counts as idle until it takes it, but
    // that item is in the queue too, so no thread is counted twice.)
    if (queue_.size() >= max_queued_ + idle_) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(std::move(work));
  }
  // Costs no system call when no thread waits (all busy: one takes the item when
  // it is done).
  ready_.notify_one();
  return true;
}

size_t WorkPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

size_t WorkPool::busy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_.size() - idle_;
}

void WorkPool::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    ready_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) {
      return;  // stopping, and nothing left to run
    }
    absl::AnyInvocable<void() &&> work = std::move(queue_.front());
    queue_.pop_front();
    --idle_;
    lock.unlock();
    std::move(work)();
    lock.lock();
    ++idle_;
  }
}

}  // namespace mailbox::server
