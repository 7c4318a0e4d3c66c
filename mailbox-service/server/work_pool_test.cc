// The work pool at its limits: a full queue refuses at once, queued work runs, and
// destruction runs what is still queued.
#include "mailbox-service/server/work_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mailbox::server {
namespace {

TEST(WorkPoolTest, RefusesWorkWhenEveryThreadIsBusyAndTheQueueIsFull) {
  absl::Notification release;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  {
    WorkPool pool(/*threads=*/2, /*max_queued=*/3);
    // Both threads busy.
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(pool.TrySubmit([&] {
        started.fetch_add(1);
        release.WaitForNotification();
        ran.fetch_add(1);
      }));
    }
    while (started.load() < 2) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    // Three may wait; the fourth is refused without blocking and never runs.
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(pool.TrySubmit([&] { ran.fetch_add(1); }));
    }
    EXPECT_EQ(pool.queued(), 3u);
    bool refused_ran = false;
    EXPECT_FALSE(pool.TrySubmit([&] { refused_ran = true; }));
    release.Notify();
    // Destruction runs the queued work and joins.
    EXPECT_FALSE(refused_ran);
  }
  EXPECT_EQ(ran.load(), 5);
}

TEST(WorkPoolTest, AZeroQueueStillFeedsIdleThreads) {
  absl::Notification release;
  std::atomic<int> started{0};
  WorkPool pool(/*threads=*/1, /*max_queued=*/0);
  ASSERT_TRUE(pool.TrySubmit([&] {
    started.fetch_add(1);
    release.WaitForNotification();
  }));
  while (started.load() < 1) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  // The only thread is busy and nothing may wait.
  EXPECT_FALSE(pool.TrySubmit([] {}));
  release.Notify();
  // Once the thread is idle again, work is taken.
  absl::Notification done;
  while (!pool.TrySubmit([&] { done.Notify(); })) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  done.WaitForNotification();
}

TEST(WorkPoolTest, SpreadsWorkOverItsThreads) {
  constexpr int kThreads = 4;
  WorkPool pool(kThreads, /*max_queued=*/0);
  EXPECT_EQ(pool.threads(), kThreads);
  // Every thread blocks until all have started: only possible if each item got
  // its own thread.
  std::atomic<int> started{0};
  absl::Notification all_started;
  for (int i = 0; i < kThreads; ++i) {
    // A thread that just finished may not be idle yet: retry until taken.
    while (!pool.TrySubmit([&] {
      if (started.fetch_add(1) + 1 == kThreads) {
        all_started.Notify();
      }
      all_started.WaitForNotification();
    })) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  all_started.WaitForNotification();
}

}  // namespace
}  // namespace mailbox::server
