// SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §4) over the messages a
// search matched, from the keys kept for each (sort_keys.h). Pure functions: the
// store loads the messages, these order them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "mailbox-service/store/sort_keys.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::store {

struct SortableMessage {
  uint32_t uid = 0;
  int64_t internal_date = 0;  // unix seconds
  uint64_t size = 0;          // RFC822.SIZE
  SortKeys keys;

  // RFC 5256 §2.2: the Date: header, or the internal date without a valid one.
  int64_t sent_date() const { return keys.sent_at.value_or(internal_date); }
};

// BAD_REQUEST without criteria or with one naming no key.
absl::Status ValidateSortCriteria(
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria);
// BAD_REQUEST for an algorithm that is not ORDEREDSUBJECT or REFERENCES.
absl::Status ValidateThreadAlgorithm(v1::ThreadRequest::Algorithm algorithm);

// The UIDs of `messages` in the order of `criteria` (validated); messages equal
// under every criterion in UID order (RFC 5256 §2.2: sequence order; REVERSE
// applies to its own key only).
std::vector<uint32_t> SortMessages(
    std::vector<SortableMessage> messages,
    const google::protobuf::RepeatedPtrField<v1::SortCriterion>& criteria);

// The threads of `messages` (in any order), depth first as ThreadResponse
// describes. ORDEREDSUBJECT and REFERENCES exactly as RFC 5256 §4 gives them.
std::vector<v1::ThreadNode> ThreadMessages(const std::vector<SortableMessage>& messages,
                                           v1::ThreadRequest::Algorithm algorithm);

}  // namespace mailbox::store
