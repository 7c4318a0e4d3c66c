#include "gateway/session/fetch_cache.h"

#include "gateway/ops/metrics.h"

namespace gateway {
namespace {

// Charged per entry on top of its strings: list and hash nodes, the struct.
constexpr size_t kEntryOverhead = 256;
// Charged per section on top of its key and content.
constexpr size_t kSectionOverhead = 64;

}  // namespace

const std::string* CachedMessage::FindSection(const std::string& key) const {
  for (const auto& [section_key, content] : sections) {
    if (section_key == key) {
      return &content;
    }
  }
  return nullptr;
}

void CachedMessage::MergeFrom(const CachedMessage& other) {
  if (other.has_internal_date && !has_internal_date) {
    has_internal_date = true;
    internal_date_unix = other.internal_date_unix;
    internal_date_tz_minutes = other.internal_date_tz_minutes;
  }
  if (other.has_size && !has_size) {
    has_size = true;
    size = other.size;
  }
  if (other.has_envelope && !has_envelope) {
    has_envelope = true;
    envelope = other.envelope;
  }
  if (other.has_body && !has_body) {
    has_body = true;
    body = other.body;
  }
  if (other.has_bodystructure && !has_bodystructure) {
    has_bodystructure = true;
    bodystructure = other.bodystructure;
  }
  for (const auto& [key, content] : other.sections) {
    if (FindSection(key) == nullptr) {
      sections.emplace_back(key, content);
    }
  }
}

size_t CachedMessage::Bytes() const {
  size_t total = kEntryOverhead + envelope.size() + body.size() + bodystructure.size();
  for (const auto& [key, content] : sections) {
    total += kSectionOverhead + key.size() + content.size();
  }
  return total;
}

size_t FetchCache::KeyHash::operator()(const Key& key) const {
  uint64_t h = key.mailbox_id * 0x9e3779b97f4a7c15ULL;
  h ^= (static_cast<uint64_t>(key.uidvalidity) << 32 | key.uid) + 0x7f4a7c159e3779b9ULL +
       (h << 6) + (h >> 2);
  return static_cast<size_t>(h);
}

FetchCache::FetchCache(size_t max_bytes) : max_bytes_(max_bytes) {}

FetchCache::~FetchCache() {
  Publish(-static_cast<int64_t>(bytes_), -static_cast<int64_t>(index_.size()), 0);
}

const CachedMessage* FetchCache::Find(const Key& key) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->message;
}

void FetchCache::Add(const Key& key, const CachedMessage& learned) {
  if (max_bytes_ == 0) {
    return;
  }
  int64_t entries_delta = 0;
  auto it = index_.find(key);
  if (it == index_.end()) {
    lru_.push_front(Node{key, CachedMessage(), 0});
    it = index_.emplace(key, lru_.begin()).first;
    ++entries_delta;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  Node& node = *it->second;
  node.message.MergeFrom(learned);
  const size_t before = node.bytes;
  node.bytes = node.message.Bytes();
  if (node.bytes > max_bytes_) {
    // Alone over the limit: not kept, and nothing else is evicted for it.
    bytes_ -= before;
    lru_.erase(it->second);
    index_.erase(it);
    Publish(-static_cast<int64_t>(before), entries_delta - 1, 0);
    return;
  }
  bytes_ = bytes_ - before + node.bytes;
  Publish(static_cast<int64_t>(node.bytes) - static_cast<int64_t>(before), entries_delta, 0);
  Evict();
}

void FetchCache::Evict() {
  uint64_t evicted = 0;
  int64_t freed = 0;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    Node& last = lru_.back();
    bytes_ -= last.bytes;
    freed += static_cast<int64_t>(last.bytes);
    index_.erase(last.key);
    lru_.pop_back();
    ++evicted;
  }
  if (evicted != 0) {
    Publish(-freed, -static_cast<int64_t>(evicted), evicted);
  }
}

void FetchCache::Publish(int64_t bytes_delta, int64_t entries_delta, uint64_t evictions) {
  auto& metrics = ops::GlobalMetrics();
  if (bytes_delta != 0) {
    metrics.fetch_cache_bytes.fetch_add(bytes_delta, std::memory_order_relaxed);
  }
  if (entries_delta != 0) {
    metrics.fetch_cache_entries.fetch_add(entries_delta, std::memory_order_relaxed);
  }
  if (evictions != 0) {
    metrics.fetch_cache_evictions.fetch_add(evictions, std::memory_order_relaxed);
  }
}

}  // namespace gateway
