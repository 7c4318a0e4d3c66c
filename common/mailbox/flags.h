// Message flags (RFC 3501 §2.3.2): the five storable system flags as bits, and
// keywords as atoms kept in the order first given, compared case-insensitively.
// Backends store a message's flags as (bits, space-separated keywords).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proto/mailbox/v1/errors.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::rules {

struct SystemFlag {
  std::string_view name;
  uint32_t bit;
};
// In the order RFC 3501 §2.3.2 lists them, which is the order they are reported in.
inline constexpr SystemFlag kSystemFlags[] = {{"\\Answered", 1},
                                              {"\\Flagged", 2},
                                              {"\\Deleted", 4},
                                              {"\\Seen", 8},
                                              {"\\Draft", 16}};
inline constexpr uint32_t kDeletedBit = 4;
inline constexpr uint32_t kSeenBit = 8;
inline constexpr size_t kMaxKeywordOctets = 250;

struct FlagSet {
  uint32_t system = 0;
  std::vector<std::string> keywords;
};

bool ContainsKeyword(const std::vector<std::string>& keywords, std::string_view keyword);

// RFC 3501 §9: flag-keyword = atom (no atom-specials).
bool IsAtom(std::string_view s);

// The system bit of a flag such as "\Seen" in any case, or 0 if it is none.
uint32_t SystemFlagBit(std::string_view flag);

// Validates flags a client gave (any range of strings): \Recent and unknown system
// flags are BAD_REQUEST, as are keywords that are not atoms of at most
// kMaxKeywordOctets. Repeated keywords are kept once.
template <typename Range>
absl::StatusOr<FlagSet> ParseFlags(const Range& flags) {
  FlagSet out;
  for (const std::string& flag : flags) {
    if (!flag.empty() && flag[0] == '\\') {
      if (absl::EqualsIgnoreCase(flag, "\\Recent")) {
        return v1::BadRequest("\\Recent cannot be stored: the server sets it (RFC 3501 §2.3.2)");
      }
      const uint32_t bit = SystemFlagBit(flag);
      if (bit == 0) {
        return v1::BadRequest(absl::StrCat("unknown system flag ", flag));
      }
      out.system |= bit;
      continue;
    }
    if (!IsAtom(flag) || flag.size() > kMaxKeywordOctets) {
      return v1::BadRequest(absl::StrCat("invalid keyword \"", flag,
                                         "\": keywords are atoms (RFC 3501 §9) of at most ",
                                         kMaxKeywordOctets, " octets"));
    }
    if (!ContainsKeyword(out.keywords, flag)) {
      out.keywords.push_back(flag);
    }
  }
  return out;
}

// Keywords as stored: separated by single spaces.
std::vector<std::string> SplitKeywords(std::string_view stored);
std::string JoinKeywords(const std::vector<std::string>& keywords);

// System flags in RFC order, then the keywords.
std::vector<std::string> FlagList(uint32_t system, std::string_view keywords);

v1::MessageFlags MakeMessageFlags(uint32_t uid, uint32_t system, std::string_view keywords,
                                  uint64_t modseq);

}  // namespace mailbox::rules
