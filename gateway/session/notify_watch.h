// The mailboxes a session watches for NOTIFY (RFC 5465) besides its selected
// one, and which of them have news to report with an unsolicited STATUS
// (§5.1-5.3: MessageNew, MessageExpunge, FlagChange of a mailbox that is not
// selected).
//
// Each watched mailbox is one FeedRouter listener: the router keeps one
// change-feed subscription per mailbox for all sessions of the worker, so a
// session watching 50 mailboxes adds 50 listeners, not 50 streams.
//
// Bounded by construction: a watched mailbox with news is one entry however
// many changes it had (a burst of appends is one STATUS), and the watched set
// is capped by SessionOptions::max_notify_mailboxes when NOTIFY sets it. STATUS
// lines go out no more often than `min_interval` while the session waits
// (IDLE), so a mailbox receiving a thousand messages costs its watcher a few.
//
// Not thread-safe: a session and its FeedRouter run on one worker thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gateway/session/feed_router.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace gateway {

// The default of SessionOptions::max_notify_mailboxes.
inline constexpr size_t kDefaultMaxNotifyMailboxes = 1000;

class NotifyWatch {
 public:
  using Clock = std::chrono::steady_clock;
  // The message events of RFC 5465 §5 a watch reports, as a mask.
  enum Event : uint8_t { kMessageNew = 1, kMessageExpunge = 2, kFlagChange = 4 };

  struct Target {
    uint64_t mailbox_id = 0;
    uint32_t uidvalidity = 0;
    uint64_t modseq = 0;  // the state the caller last reported (or looked up)
    std::string name;     // UTF-8
    uint8_t events = 0;
  };
  // A watched mailbox with news.
  struct News {
    uint64_t mailbox_id = 0;
    std::string name;
  };

  // `wake` is called when a watched mailbox has news, once the feed has handed
  // over all the events of a commit.
  NotifyWatch(std::chrono::milliseconds min_interval, std::function<void()> wake);
  ~NotifyWatch();
  NotifyWatch(const NotifyWatch&) = delete;
  NotifyWatch& operator=(const NotifyWatch&) = delete;

  // Watches `targets` instead of what was watched (new listeners are added
  // before old ones go, so a subscription both share stays open). `router`
  // null: the worker is shutting down, nothing is registered.
  void Replace(FeedRouter* router, const std::string& session_token,
               const std::vector<Target>& targets);
  // Stops watching everything (NOTIFY NONE; the session's end).
  void Clear(FeedRouter* router) { Replace(router, {}, {}); }

  bool active() const { return !watched_.empty(); }
  size_t size() const { return watched_.size(); }
  bool watches(uint64_t mailbox_id) const { return watched_.count(mailbox_id) > 0; }

  bool has_news() const { return !news_.empty(); }
  // When news may go out next (when the last round went out plus min_interval).
  Clock::time_point next_round() const { return last_round_ + min_interval_; }
  // The mailboxes with news, in the order their first change came, each once;
  // `skip` (the selected mailbox, which gets RFC 3501's responses instead)
  // loses its news. Starts a round at `now`.
  std::vector<News> TakeNews(uint64_t skip, Clock::time_point now);
  // After a STATUS lookup of `news`: false (and the mailbox is no longer
  // watched) if the name now belongs to another mailbox. A mailbox whose feed
  // subscription was reset is subscribed again from `status`.
  bool Refresh(FeedRouter* router, const std::string& session_token, const News& news,
               const mailbox::v1::StatusResponse& status);
  // Stops watching one mailbox (it no longer exists).
  void Forget(FeedRouter* router, uint64_t mailbox_id);
  // The lookup failed for another reason: tried again at the next round.
  void Retry(uint64_t mailbox_id);

 private:
  class Watched;
  void MarkNews(Watched* watched);
  void NotifyDelivered(Watched* watched);

  std::chrono::milliseconds min_interval_;
  std::function<void()> wake_;
  // Stable addresses: the router holds pointers to these listeners.
  std::map<uint64_t, std::unique_ptr<Watched>> watched_;
  std::vector<uint64_t> news_;
  Clock::time_point last_round_;
};

}  // namespace gateway
