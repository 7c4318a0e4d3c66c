// The SEARCH grammar (RFC 3501 §6.4.4, RFC 9051 §6.4.4) plus MODSEQ
// (RFC 7162 §3.1.5) as a typed tree.
//
// A SearchCommand's criteria are one SearchKey of kind kAnd whose children are
// the top-level keys; parentheses produce nested kAnd nodes, so
// parse -> serialize -> parse is the identity.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/imap/date_time.h"
#include "gateway/imap/sequence_set.h"

namespace imap {

struct SearchKey {
  enum class Kind {
    // No argument.
    kAll, kAnswered, kDeleted, kDraft, kFlagged, kNew, kOld, kRecent, kSeen,
    kUnanswered, kUndeleted, kUndraft, kUnflagged, kUnseen,
    kSaveDateSupported,  // RFC 8514 §4
    // `text` is the string to look for (case-insensitive substring).
    kBcc, kBody, kCc, kFrom, kSubject, kText, kTo,
    // `text` is the header field name, `value` the string.
    kHeader,
    // `text` is the keyword (flag-keyword atom).
    kKeyword, kUnkeyword,
    // `date`.
    kBefore, kOn, kSince, kSentBefore, kSentOn, kSentSince,
    kSavedBefore, kSavedOn, kSavedSince,  // RFC 8514 §4
    // `number` (octets).
    kLarger, kSmaller,
    // `number` (seconds before now): RFC 5032 WITHIN.
    kOlder, kYounger,
    // `text` is an RFC 8474 objectid.
    kEmailId, kThreadId,
    // `set`: message sequence numbers or UIDs.
    kSequenceSet, kUid,
    // `number` is the mod-sequence; `text` the optional entry name
    // ("/flags/\\seen"), `value` its entry type ("priv", "shared", "all").
    kModSeq,
    // Combinators: kNot has one child, kOr two, kAnd one or more.
    kNot, kOr, kAnd,
  };

  Kind kind = Kind::kAll;
  std::string text;
  std::string value;
  Date date;
  uint64_t number = 0;
  SequenceSet set;
  std::vector<SearchKey> children;

  bool operator==(const SearchKey&) const = default;
};

// The keyword as it appears on the wire ("UNSEEN", "SENTBEFORE", ...). kAnd,
// kSequenceSet return "" since they have no keyword.
std::string_view SearchKeyName(SearchKey::Kind kind);

// Number of nodes deeper than the root (used by tests and by sessions that
// want a lower limit than the parser's).
int SearchDepth(const SearchKey& key);

}  // namespace imap
