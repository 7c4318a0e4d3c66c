#include "gateway/session/feed_router.h"

#include <algorithm>
#include <utility>

#include "boost/asio/co_spawn.hpp"
#include "common/log/events.h"
#include "common/log/log.h"

namespace gateway {

namespace asio = boost::asio;
namespace v1 = mailbox::v1;

FeedRouter::FeedRouter(mailbox::client::MailboxStore& store, asio::any_io_executor executor)
    : core_(std::make_shared<Core>()) {
  core_->feed = store.OpenChangeFeed(executor);
  asio::co_spawn(executor, Loop(core_), [](std::exception_ptr error) {
    if (error) {
      mailbox::log::Error(mailbox::log::event::kInternalError,
                          {{"detail", "change feed loop ended by an exception"}});
    }
  });
}

FeedRouter::~FeedRouter() { Close(); }

void FeedRouter::Close() {
  if (!core_->closed) {
    core_->closed = true;
    core_->mailboxes.clear();
    core_->lists.clear();
    core_->Publish();
    core_->feed->Close();
  }
}

void FeedRouter::Add(uint64_t mailbox_id, uint32_t uidvalidity, uint64_t modseq,
                     const std::string& session_token, Listener* listener) {
  if (core_->closed) {
    return;
  }
  auto [it, inserted] = core_->mailboxes.try_emplace(mailbox_id);
  MailboxState& state = it->second;
  if (inserted || state.uidvalidity != uidvalidity || modseq < state.delivered) {
    // New, or this listener's snapshot is older than what the feed already
    // delivered: (re)start from its MODSEQ; others drop what they already have.
    state.uidvalidity = uidvalidity;
    state.subscribed_from = modseq;
    state.delivered = modseq;
    core_->feed->Subscribe(mailbox_id, uidvalidity, modseq, session_token);
  }
  if (state.index.try_emplace(listener, state.listeners.size()).second) {
    state.listeners.push_back(listener);
  }
  core_->Publish();
}

void FeedRouter::set_gauges(mailbox::metrics::Gauge* mailboxes, mailbox::metrics::Gauge* lists) {
  core_->mailboxes_gauge = mailboxes;
  core_->lists_gauge = lists;
  core_->Publish();
}

void FeedRouter::Core::Publish() {
  if (mailboxes_gauge != nullptr) {
    mailboxes_gauge->Set(static_cast<int64_t>(mailboxes.size()));
  }
  if (lists_gauge != nullptr) {
    lists_gauge->Set(static_cast<int64_t>(lists.size()));
  }
}

void FeedRouter::Remove(uint64_t mailbox_id, Listener* listener) {
  auto it = core_->mailboxes.find(mailbox_id);
  if (it == core_->mailboxes.end()) {
    return;
  }
  MailboxState& state = it->second;
  auto found = state.index.find(listener);
  if (found != state.index.end()) {
    const size_t slot = found->second;
    state.index.erase(found);
    if (slot + 1 != state.listeners.size()) {
      state.listeners[slot] = state.listeners.back();
      state.index[state.listeners[slot]] = slot;
    }
    state.listeners.pop_back();
  }
  if (state.listeners.empty()) {
    core_->mailboxes.erase(it);
    if (!core_->closed) {
      core_->feed->Unsubscribe(mailbox_id);
    }
  }
  core_->Publish();
}

bool FeedRouter::AddList(uint64_t user_id, const std::string& session_token,
                         Listener* listener) {
  if (core_->closed) {
    return false;
  }
  auto [it, inserted] = core_->lists.try_emplace(user_id);
  if (inserted) {
    core_->feed->SubscribeList(user_id, session_token);
  }
  std::vector<Listener*>& listeners = it->second.listeners;
  if (std::find(listeners.begin(), listeners.end(), listener) == listeners.end()) {
    listeners.push_back(listener);
  }
  core_->Publish();
  return it->second.live;
}

void FeedRouter::RemoveList(uint64_t user_id, Listener* listener) {
  auto it = core_->lists.find(user_id);
  if (it == core_->lists.end()) {
    return;
  }
  std::erase(it->second.listeners, listener);
  if (it->second.listeners.empty()) {
    core_->lists.erase(it);
    if (!core_->closed) {
      core_->feed->UnsubscribeList(user_id);
    }
  }
  core_->Publish();
}

void FeedRouter::Core::DispatchList(const v1::ChangeEvent& event) {
  auto it = lists.find(event.user_id());
  if (it == lists.end()) {
    return;
  }
  scratch = it->second.listeners;
  if (event.has_subscribed()) {
    it->second.live = true;
  }
  if (event.has_resync()) {
    lists.erase(it);
    Publish();
  }
  for (Listener* listener : scratch) {
    listener->OnChange(event);
  }
  for (Listener* listener : scratch) {
    listener->OnChangesDelivered();
  }
}

void FeedRouter::Core::Release(uint64_t mailbox_id) {
  auto it = mailboxes.find(mailbox_id);
  if (it == mailboxes.end()) {
    return;
  }
  scratch = it->second.listeners;
  for (Listener* listener : scratch) {
    listener->OnChangesDelivered();
  }
}

void FeedRouter::Core::Dispatch(const v1::ChangeEvent& event) {
  if (held.has_value() && *held != event.mailbox_id()) {
    // The rest of that commit did not follow (it cannot, but a session must
    // never wait on it): its listeners hear of what they have.
    Release(*std::exchange(held, std::nullopt));
  }
  if (event.mailbox_id() == 0 && event.user_id() != 0) {
    DispatchList(event);  // a mailbox list's: no MODSEQ, never part of a held commit
    return;
  }
  auto it = mailboxes.find(event.mailbox_id());
  if (it == mailboxes.end()) {
    held.reset();
    return;
  }
  MailboxState& state = it->second;
  if (!event.has_subscribed() && !event.has_resync()) {
    state.delivered = std::max(state.delivered, event.modseq());
  }
  // Copy: a listener may remove itself (or others) while handling the event.
  scratch = state.listeners;
  if (event.has_resync()) {
    mailboxes.erase(it);
    Publish();
  }
  for (Listener* listener : scratch) {
    listener->OnChange(event);
  }
  if (event.more() && !event.has_resync()) {
    held = event.mailbox_id();
    return;
  }
  held.reset();
  for (Listener* listener : scratch) {
    listener->OnChangesDelivered();
  }
}

asio::awaitable<void> FeedRouter::Loop(std::shared_ptr<Core> core) {
  while (!core->closed) {
    auto event = co_await core->feed->Next();
    if (!event.ok()) {
      if (core->held.has_value() && !core->closed) {
        core->Release(*std::exchange(core->held, std::nullopt));
      }
      if (!core->closed) {
        mailbox::log::Error(mailbox::log::event::kStoreUnavailable,
                            {{"command", "change feed"},
                             {"error", std::string(event.status().message())}});
      }
      co_return;
    }
    core->Dispatch(*event);
  }
}

}  // namespace gateway
