#include "gateway/session/notify_watch.h"

#include <algorithm>
#include <utility>

namespace gateway {

namespace v1 = mailbox::v1;

// One watched mailbox, registered with the router as a listener of its feed.
class NotifyWatch::Watched final : public FeedRouter::Listener {
 public:
  Watched(NotifyWatch* owner, Target target) : owner_(owner), target_(std::move(target)) {}

  Target& target() { return target_; }
  bool registered = false;  // the router has this listener
  bool has_news = false;    // in owner_->news_

  void OnChange(const v1::ChangeEvent& event) override {
    if (event.has_subscribed()) {
      return;
    }
    if (event.has_resync()) {
      // The router dropped the listener; the next round's lookup subscribes
      // again from the mailbox's state then and reports it.
      registered = false;
      Mark();
      return;
    }
    if (event.has_renamed()) {
      // The mailbox is watched by identity; STATUS names it as it is now.
      target_.name = event.renamed().new_name();
      return;
    }
    if (event.has_deleted()) {
      Mark();  // the round's lookup finds it gone and stops watching it
      return;
    }
    // The router may replay from an older MODSEQ for another listener
    // (FeedRouter::Add): what the watcher already knows is not news.
    if (event.modseq() <= target_.modseq) {
      return;
    }
    target_.modseq = event.modseq();
    const uint8_t kind = event.has_added()           ? kMessageNew
                         : event.has_expunged()      ? kMessageExpunge
                         : event.has_flags_changed() ? kFlagChange
                                                     : 0;
    if ((kind & target_.events) != 0) {
      Mark();
    }
  }

  void OnChangesDelivered() override {
    if (wake_pending_) {
      wake_pending_ = false;
      owner_->wake_();
    }
  }

 private:
  void Mark() {
    owner_->MarkNews(this);
    wake_pending_ = true;
  }

  NotifyWatch* owner_;
  Target target_;
  bool wake_pending_ = false;
};

NotifyWatch::NotifyWatch(std::chrono::milliseconds min_interval, std::function<void()> wake)
    : min_interval_(min_interval), wake_(std::move(wake)) {}

// The owner clears the watch (Clear) while the router is alive: the router
// holds pointers to the listeners destroyed here.
NotifyWatch::~NotifyWatch() = default;

void NotifyWatch::MarkNews(Watched* watched) {
  if (!watched->has_news) {
    watched->has_news = true;
    news_.push_back(watched->target().mailbox_id);
  }
}

void NotifyWatch::Replace(FeedRouter* router, const std::string& session_token,
                          const std::vector<Target>& targets) {
  std::map<uint64_t, std::unique_ptr<Watched>> next;
  for (const Target& target : targets) {
    auto old = watched_.find(target.mailbox_id);
    if (old != watched_.end() && old->second->target().uidvalidity == target.uidvalidity) {
      // Already watched: the subscription stays; only what is reported changes.
      std::unique_ptr<Watched> kept = std::move(old->second);
      watched_.erase(old);
      kept->target().events = target.events;
      kept->target().name = target.name;
      next.emplace(target.mailbox_id, std::move(kept));
      continue;
    }
    auto watched = std::make_unique<Watched>(this, target);
    if (router != nullptr) {
      router->Add(target.mailbox_id, target.uidvalidity, target.modseq, session_token,
                  watched.get());
      watched->registered = true;
    }
    next.emplace(target.mailbox_id, std::move(watched));
  }
  for (auto& [mailbox_id, watched] : watched_) {
    if (router != nullptr && watched->registered) {
      router->Remove(mailbox_id, watched.get());
    }
  }
  watched_ = std::move(next);
  // News of mailboxes no longer watched is dropped; that of the others stays.
  std::vector<uint64_t> kept_news;
  for (uint64_t mailbox_id : news_) {
    if (watched_.count(mailbox_id) > 0) {
      kept_news.push_back(mailbox_id);
    }
  }
  news_ = std::move(kept_news);
}

std::vector<NotifyWatch::News> NotifyWatch::TakeNews(uint64_t skip, Clock::time_point now) {
  std::vector<News> out;
  for (uint64_t mailbox_id : news_) {
    auto it = watched_.find(mailbox_id);
    if (it == watched_.end()) {
      continue;
    }
    it->second->has_news = false;
    if (mailbox_id != skip) {
      out.push_back(News{mailbox_id, it->second->target().name});
    }
  }
  news_.clear();
  last_round_ = now;
  return out;
}

bool NotifyWatch::Refresh(FeedRouter* router, const std::string& session_token,
                          const News& news, const v1::StatusResponse& status) {
  auto it = watched_.find(news.mailbox_id);
  if (it == watched_.end()) {
    return false;
  }
  if (status.mailbox_id() != news.mailbox_id) {
    // Renamed away and another mailbox took the name meanwhile.
    Forget(router, news.mailbox_id);
    return false;
  }
  Watched& watched = *it->second;
  Target& target = watched.target();
  // The lookup reflects every change up to its MODSEQ: feed events up to there
  // are not news any more.
  if (!watched.registered || status.uidvalidity() != target.uidvalidity) {
    if (watched.registered && router != nullptr) {
      router->Remove(target.mailbox_id, &watched);
    }
    watched.registered = false;
    target.uidvalidity = status.uidvalidity();
    target.modseq = status.highest_modseq();
    if (router != nullptr) {
      router->Add(target.mailbox_id, target.uidvalidity, target.modseq, session_token,
                  &watched);
      watched.registered = true;
    }
  } else {
    target.modseq = std::max(target.modseq, status.highest_modseq());
  }
  return true;
}

void NotifyWatch::Forget(FeedRouter* router, uint64_t mailbox_id) {
  auto it = watched_.find(mailbox_id);
  if (it == watched_.end()) {
    return;
  }
  if (router != nullptr && it->second->registered) {
    router->Remove(mailbox_id, it->second.get());
  }
  watched_.erase(it);
  news_.erase(std::remove(news_.begin(), news_.end(), mailbox_id), news_.end());
}

void NotifyWatch::Retry(uint64_t mailbox_id) {
  auto it = watched_.find(mailbox_id);
  if (it != watched_.end()) {
    MarkNews(it->second.get());
  }
}

}  // namespace gateway
