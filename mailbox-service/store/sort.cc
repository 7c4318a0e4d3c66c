#include "mailbox-service/store/sort.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proto/mailbox/v1/errors.h"

namespace mailbox::store {
namespace {

using Criteria = google::protobuf::RepeatedPtrField<v1::SortCriterion>;

template <typename T>
int Compare(const T& a, const T& b) {
  return a < b ? -1 : b < a ? 1 : 0;
}

int CompareBy(v1::SortCriterion::Key key, const SortableMessage& a, const SortableMessage& b) {
  switch (key) {
    case v1::SortCriterion::ARRIVAL:
      return Compare(a.internal_date, b.internal_date);
    case v1::SortCriterion::CC:
      return Compare(a.keys.cc, b.keys.cc);
    case v1::SortCriterion::DATE:
      return Compare(a.sent_date(), b.sent_date());
    case v1::SortCriterion::FROM:
      return Compare(a.keys.from, b.keys.from);
    case v1::SortCriterion::SIZE:
      return Compare(a.size, b.size);
    case v1::SortCriterion::SUBJECT:
      return Compare(a.keys.subject, b.keys.subject);
    case v1::SortCriterion::TO:
      return Compare(a.keys.to, b.keys.to);
    case v1::SortCriterion::DISPLAYFROM:
      return Compare(a.keys.display_from, b.keys.display_from);
    case v1::SortCriterion::DISPLAYTO:
      return Compare(a.keys.display_to, b.keys.display_to);
    default:
      return 0;
  }
}

// RFC 5256 §2.2 order of threads and siblings: sent date, then sequence (UID).
bool SentBefore(const SortableMessage& a, const SortableMessage& b) {
  return std::make_pair(a.sent_date(), a.uid) < std::make_pair(b.sent_date(), b.uid);
}

// The REFERENCES algorithm's tree (RFC 5256 §4).
class ReferenceThreader {
 public:
  explicit ReferenceThreader(const std::vector<SortableMessage>& messages)
      : messages_(messages) {}

  std::vector<v1::ThreadNode> Run() {
    // Step 1 in sequence order, so that of several messages with one Message-ID
    // the first keeps it.
    std::vector<int> order(messages_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return messages_[a].uid < messages_[b].uid; });
    for (const int i : order) {
      Link(i);
    }
    // Step 2: the parentless nodes are the root's children.
    std::vector<int> root;
    for (size_t n = 0; n < nodes_.size(); ++n) {
      if (nodes_[n].parent < 0) root.push_back(static_cast<int>(n));
    }
    root = Prune(root);  // step 3
    SortAll(root);       // step 4 (and every set of siblings below, step 6)
    root = GroupBySubject(root);  // step 5
    SortAll(root);                // step 6
    return Flatten(root);
  }

 private:
  struct Node {
    int message = -1;  // index in messages_, -1 for a dummy
    int parent = -1;
    std::vector<int> children;
  };

  int NewNode(int message) {
    nodes_.push_back(Node{.message = message});
    return static_cast<int>(nodes_.size()) - 1;
  }

  // The node of a Message-ID, a dummy until a message with it is seen.
  int NodeOfId(const std::string& id) {
    auto [it, inserted] = id_table_.emplace(id, -1);
    if (inserted) it->second = NewNode(-1);
    return it->second;
  }

  // Whether `ancestor` is `node` or above it.
  bool IsAncestorOrSelf(int ancestor, int node) const {
    for (int n = node; n >= 0; n = nodes_[n].parent) {
      if (n == ancestor) return true;
    }
    return false;
  }

  // Makes `parent` the parent of `child` unless that would make a loop.
  void SetParent(int parent, int child) {
    if (IsAncestorOrSelf(child, parent)) return;
    nodes_[child].parent = parent;
    nodes_[parent].children.push_back(child);
  }

  void Unlink(int child) {
    const int parent = nodes_[child].parent;
    if (parent < 0) return;
    std::vector<int>& siblings = nodes_[parent].children;
    siblings.erase(std::find(siblings.begin(), siblings.end(), child));
    nodes_[child].parent = -1;
  }

  void Link(int message) {
    const SortKeys& keys = messages_[message].keys;
    // A message without a Message-ID, or with one an earlier message has, gets a
    // node of its own that no reference can name (a unique ID).
    int self;
    auto found = keys.message_id.empty() ? id_table_.end() : id_table_.find(keys.message_id);
    if (found != id_table_.end() && nodes_[found->second].message < 0) {
      self = found->second;
      nodes_[self].message = message;
    } else {
      self = NewNode(message);
      if (!keys.message_id.empty() && found == id_table_.end()) {
        id_table_.emplace(keys.message_id, self);
      }
    }
    // Step 1.A: each reference the parent of the next; links already made stay.
    int previous = -1;
    for (const std::string& reference : keys.references) {
      const int node = NodeOfId(reference);
      if (previous >= 0 && nodes_[node].parent < 0) {
        SetParent(previous, node);
      }
      previous = node;
    }
    // Step 1.B: the last reference is the parent, replacing any link made from
    // another message's (possibly truncated) References; none without
    // references, and none that would make a loop.
    Unlink(self);
    if (previous >= 0) {
      SetParent(previous, self);
    }
  }

  // Step 3, children before parents.
  std::vector<int> Prune(const std::vector<int>& root) {
    std::vector<int> preorder;
    std::vector<int> stack(root.rbegin(), root.rend());
    while (!stack.empty()) {
      const int n = stack.back();
      stack.pop_back();
      preorder.push_back(n);
      for (auto it = nodes_[n].children.rbegin(); it != nodes_[n].children.rend(); ++it) {
        stack.push_back(*it);
      }
    }
    for (auto it = preorder.rbegin(); it != preorder.rend(); ++it) {
      nodes_[*it].children = PruneLevel(nodes_[*it].children, /*top=*/false, *it);
    }
    return PruneLevel(root, /*top=*/true, -1);
  }

  std::vector<int> PruneLevel(const std::vector<int>& level, bool top, int parent) {
    std::vector<int> kept;
    for (const int n : level) {
      Node& node = nodes_[n];
      if (node.message >= 0) {
        kept.push_back(n);
      } else if (node.children.empty()) {
        // A dummy without children goes.
      } else if (top && node.children.size() > 1) {
        kept.push_back(n);  // its children would become the root's
      } else {
        for (const int child : node.children) {
          nodes_[child].parent = parent;
          kept.push_back(child);
        }
        node.children.clear();
      }
    }
    return kept;
  }

  // The message a node sorts and groups by: its own, or a dummy's first child's.
  const SortableMessage& Representative(int n) const {
    while (nodes_[n].message < 0) n = nodes_[n].children.front();
    return messages_[nodes_[n].message];
  }

  void SortLevel(std::vector<int>& level) const {
    std::stable_sort(level.begin(), level.end(), [&](int a, int b) {
      return SentBefore(Representative(a), Representative(b));
    });
  }

  // Steps 4 and 6: every set of siblings, the youngest first.
  void SortAll(std::vector<int>& root) {
    std::vector<int> preorder;
    std::vector<int> stack(root.begin(), root.end());
    while (!stack.empty()) {
      const int n = stack.back();
      stack.pop_back();
      preorder.push_back(n);
      stack.insert(stack.end(), nodes_[n].children.begin(), nodes_[n].children.end());
    }
    for (auto it = preorder.rbegin(); it != preorder.rend(); ++it) {
      SortLevel(nodes_[*it].children);
    }
    SortLevel(root);
  }

  bool IsReply(int n) const {
    return nodes_[n].message >= 0 && messages_[nodes_[n].message].keys.reply_or_forward;
  }

  // Step 5.
  std::vector<int> GroupBySubject(std::vector<int> root) {
    std::unordered_map<std::string_view, int> subjects;
    for (const int n : root) {  // 5.B
      const std::string& subject = Representative(n).keys.subject;
      if (subject.empty()) continue;
      auto [it, inserted] = subjects.emplace(subject, n);
      if (inserted) continue;
      const int held = it->second;
      if ((nodes_[n].message < 0 && nodes_[held].message >= 0) ||
          (IsReply(held) && !IsReply(n))) {
        it->second = n;
      }
    }
    std::unordered_map<int, size_t> slot;
    for (size_t i = 0; i < root.size(); ++i) slot[root[i]] = i;
    const std::vector<int> top = root;
    for (const int n : top) {  // 5.C
      const std::string& subject = Representative(n).keys.subject;
      // Skipped: no subject, or made a child by an earlier merge.
      if (subject.empty() || nodes_[n].parent >= 0) continue;
      auto it = subjects.find(subject);
      const int held = it->second;
      if (held == n) continue;
      const bool n_dummy = nodes_[n].message < 0;
      const bool held_dummy = nodes_[held].message < 0;
      if (n_dummy && held_dummy) {
        for (const int child : nodes_[n].children) {
          nodes_[child].parent = held;
          nodes_[held].children.push_back(child);
        }
        nodes_[n].children.clear();
      } else if (held_dummy || (IsReply(n) && !IsReply(held))) {
        nodes_[n].parent = held;
        nodes_[held].children.push_back(n);
      } else {
        const int dummy = NewNode(-1);
        nodes_[dummy].children = {held, n};
        nodes_[held].parent = dummy;
        nodes_[n].parent = dummy;
        root[slot[held]] = dummy;
        slot[dummy] = slot[held];
        it->second = dummy;
      }
      root[slot[n]] = -1;
    }
    root.erase(std::remove(root.begin(), root.end(), -1), root.end());
    return root;
  }

  std::vector<v1::ThreadNode> Flatten(const std::vector<int>& root) const {
    std::vector<v1::ThreadNode> out;
    std::vector<std::pair<int, uint32_t>> stack;
    for (auto it = root.rbegin(); it != root.rend(); ++it) stack.emplace_back(*it, 0);
    while (!stack.empty()) {
      const auto [n, depth] = stack.back();
      stack.pop_back();
      v1::ThreadNode& node = out.emplace_back();
      node.set_uid(nodes_[n].message >= 0 ? messages_[nodes_[n].message].uid : 0);
      node.set_depth(depth);
      const std::vector<int>& children = nodes_[n].children;
      for (auto it = children.rbegin(); it != children.rend(); ++it) {
        stack.emplace_back(*it, depth + 1);
      }
    }
    return out;
  }

  const std::vector<SortableMessage>& messages_;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, int> id_table_;
};

// RFC 5256 §4 ORDEREDSUBJECT: threads of one base subject each, in order of
// their first message; the first message's children are the others.
std::vector<v1::ThreadNode> OrderedSubject(const std::vector<SortableMessage>& messages) {
  std::vector<const SortableMessage*> sorted;
  for (const SortableMessage& m : messages) sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(), [](const SortableMessage* a, const SortableMessage* b) {
    if (a->keys.subject != b->keys.subject) return a->keys.subject < b->keys.subject;
    return SentBefore(*a, *b);
  });
  std::vector<std::pair<size_t, size_t>> threads;  // [begin, end) in sorted
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j]->keys.subject == sorted[i]->keys.subject) ++j;
    threads.emplace_back(i, j);
    i = j;
  }
  std::sort(threads.begin(), threads.end(), [&](const auto& a, const auto& b) {
    return SentBefore(*sorted[a.first], *sorted[b.first]);
  });
  std::vector<v1::ThreadNode> out;
  for (const auto& [begin, end] : threads) {
    for (size_t i = begin; i < end; ++i) {
      v1::ThreadNode& node = out.emplace_back();
      node.set_uid(sorted[i]->uid);
      node.set_depth(i == begin ? 0 : 1);
    }
  }
  return out;
}

}  // namespace

absl::Status ValidateSortCriteria(const Criteria& criteria) {
  if (criteria.empty()) {
    return v1::BadRequest("a sort needs at least one criterion");
  }
  for (const v1::SortCriterion& criterion : criteria) {
    if (criterion.key() == v1::SortCriterion::KEY_UNSPECIFIED ||
        !v1::SortCriterion::Key_IsValid(criterion.key())) {
      return v1::BadRequest("a sort criterion names no known key");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateThreadAlgorithm(v1::ThreadRequest::Algorithm algorithm) {
  if (algorithm != v1::ThreadRequest::ORDEREDSUBJECT &&
      algorithm != v1::ThreadRequest::REFERENCES) {
    return v1::BadRequest("unknown threading algorithm");
  }
  return absl::OkStatus();
}

std::vector<uint32_t> SortMessages(std::vector<SortableMessage> messages,
                                   const Criteria& criteria) {
  std::sort(messages.begin(), messages.end(),
            [&](const SortableMessage& a, const SortableMessage& b) {
              for (const v1::SortCriterion& criterion : criteria) {
                const int order = CompareBy(criterion.key(), a, b);
                if (order != 0) return criterion.reverse() ? order > 0 : order < 0;
              }
              return a.uid < b.uid;
            });
  std::vector<uint32_t> uids;
  uids.reserve(messages.size());
  for (const SortableMessage& m : messages) uids.push_back(m.uid);
  return uids;
}

std::vector<v1::ThreadNode> ThreadMessages(const std::vector<SortableMessage>& messages,
                                           v1::ThreadRequest::Algorithm algorithm) {
  if (algorithm == v1::ThreadRequest::ORDEREDSUBJECT) {
    return OrderedSubject(messages);
  }
  return ReferenceThreader(messages).Run();
}

}  // namespace mailbox::store
