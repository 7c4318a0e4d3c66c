// A per-worker cache of the static data of messages, so that repeated FETCHes
// of the same messages need no call to the mailbox service.
//
// What a message's (mailbox id, UIDVALIDITY, UID) names never changes: its
// INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE and every section of
// its content (RFC 3501 §2.3.1.1: a UID is never reused within one UIDVALIDITY;
// a revised message gets a new UID). So entries need no invalidation, only a
// bound: the cache holds at most `max_bytes` (its own estimate of the memory
// an entry takes, strings included) and drops the least recently used entries
// to stay within it. Sections are kept only up to kMaxCachedSection octets.
//
// FLAGS and MODSEQ change, and are not kept here: a session answers them from
// its own view, which the change feed keeps current (SelectedMailbox::flags).
//
// Threading: one cache per worker thread, used by that worker's sessions only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gateway {

// Sections larger than this are always fetched from the service.
inline constexpr size_t kMaxCachedSection = 64 * 1024;

// What is known of one message. A field is known only when its has_ flag is
// set: a FETCH that did not ask for ENVELOPE leaves it unknown.
struct CachedMessage {
  bool has_internal_date = false;
  int64_t internal_date_unix = 0;
  int32_t internal_date_tz_minutes = 0;
  bool has_size = false;
  uint64_t size = 0;
  bool has_envelope = false;
  std::string envelope;
  bool has_body = false;
  std::string body;
  bool has_bodystructure = false;
  std::string bodystructure;
  // (section key, content) of complete sections; the key is the serialized
  // mailbox.v1.Section the content answers.
  std::vector<std::pair<std::string, std::string>> sections;

  // The content of the section with `key`, or null.
  const std::string* FindSection(const std::string& key) const;
  // Adds what `other` knows and this entry does not.
  void MergeFrom(const CachedMessage& other);
  // The bytes this entry is charged for.
  size_t Bytes() const;
};

class FetchCache {
 public:
  struct Key {
    uint64_t mailbox_id = 0;
    uint32_t uidvalidity = 0;
    uint32_t uid = 0;
    bool operator==(const Key&) const = default;
  };

  // `max_bytes` 0 keeps nothing.
  explicit FetchCache(size_t max_bytes);
  ~FetchCache();
  FetchCache(const FetchCache&) = delete;
  FetchCache& operator=(const FetchCache&) = delete;

  // The entry for `key` (now the most recently used), or null. Valid until the
  // next Add.
  const CachedMessage* Find(const Key& key);
  // Merges `learned` into the entry for `key` (creating it), then evicts the
  // least recently used entries until the cache is within max_bytes. An entry
  // that alone is over the limit is not kept.
  void Add(const Key& key, const CachedMessage& learned);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return index_.size(); }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  struct Node {
    Key key;
    CachedMessage message;
    size_t bytes = 0;
  };
  void Evict();
  void Publish(int64_t bytes_delta, int64_t entries_delta, uint64_t evictions);

  size_t max_bytes_;
  size_t bytes_ = 0;
  std::list<Node> lru_;  // most recently used first
  std::unordered_map<Key, std::list<Node>::iterator, KeyHash> index_;
};

}  // namespace gateway
