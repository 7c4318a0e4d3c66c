#include "common/mailbox/flags.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mailbox::rules {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

bool ContainsKeyword(const std::vector<std::string>& keywords, std::string_view keyword) {
  return std::any_of(keywords.begin(), keywords.end(), [&](const std::string& k) {
    return absl::EqualsIgnoreCase(k, AV(keyword));
  });
}

bool IsAtom(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || std::strchr("(){%*\"\\]", c) != nullptr) {
      return false;
    }
  }
  return true;
}

uint32_t SystemFlagBit(std::string_view flag) {
  for (const SystemFlag& system : kSystemFlags) {
    if (absl::EqualsIgnoreCase(AV(flag), AV(system.name))) {
      return system.bit;
    }
  }
  return 0;
}

std::vector<std::string> SplitKeywords(std::string_view stored) {
  std::vector<std::string> out;
  for (absl::string_view k : absl::StrSplit(AV(stored), ' ', absl::SkipEmpty())) {
    out.emplace_back(k);
  }
  return out;
}

std::string JoinKeywords(const std::vector<std::string>& keywords) {
  return absl::StrJoin(keywords, " ");
}

std::vector<std::string> FlagList(uint32_t system, std::string_view keywords) {
  std::vector<std::string> out;
  for (const SystemFlag& flag : kSystemFlags) {
    if (system & flag.bit) {
      out.emplace_back(flag.name);
    }
  }
  for (absl::string_view k : absl::StrSplit(AV(keywords), ' ', absl::SkipEmpty())) {
    out.emplace_back(k);
  }
  return out;
}

v1::MessageFlags MakeMessageFlags(uint32_t uid, uint32_t system, std::string_view keywords,
                                  uint64_t modseq) {
  v1::MessageFlags out;
  out.set_uid(uid);
  for (std::string& flag : FlagList(system, keywords)) {
    out.add_flags(std::move(flag));
  }
  out.set_modseq(modseq);
  return out;
}

}  // namespace mailbox::rules
