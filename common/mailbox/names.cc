#include "common/mailbox/names.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/mailbox/v1/errors.h"

namespace mailbox::rules {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) {
      return false;
    }
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

bool IsInbox(std::string_view name) { return absl::EqualsIgnoreCase(AV(name), AV(kInbox)); }

std::string CanonicalMailboxName(std::string_view name) {
  std::string out(name);
  if (name.size() >= kInbox.size() && IsInbox(name.substr(0, kInbox.size())) &&
      (name.size() == kInbox.size() || name[kInbox.size()] == kHierarchyDelimiter)) {
    out.replace(0, kInbox.size(), kInbox);
  }
  return out;
}

absl::StatusOr<std::string> NormalizeMailboxName(std::string_view name,
                                                 const NameLimits& limits) {
  if (name.empty()) {
    return v1::BadRequest("mailbox name is empty");
  }
  if (!IsValidUtf8(name)) {
    return v1::BadRequest("mailbox name is not valid UTF-8");
  }
  if (HasControl(name)) {
    return v1::BadRequest("mailbox name contains control characters");
  }
  if (name.find_first_of("*%") != std::string_view::npos) {
    return v1::BadRequest("mailbox name contains the wildcard characters '*' or '%'");
  }
  if (name.size() > limits.max_octets) {
    return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::LIMIT,
                         absl::StrCat("mailbox name is ", name.size(),
                                      " octets, longer than the limit of ", limits.max_octets));
  }
  std::vector<absl::string_view> levels = absl::StrSplit(AV(name), kHierarchyDelimiter);
  for (absl::string_view level : levels) {
    if (level.empty()) {
      return v1::BadRequest(
          "mailbox name has an empty hierarchy level (leading, trailing or doubled '/')");
    }
  }
  if (static_cast<int>(levels.size()) > limits.max_depth) {
    return v1::MakeError(absl::StatusCode::kInvalidArgument, v1::LIMIT,
                         absl::StrCat("mailbox name has ", levels.size(),
                                      " hierarchy levels, more than the limit of ",
                                      limits.max_depth));
  }
  return CanonicalMailboxName(name);
}

std::vector<std::string> Superiors(std::string_view name) {
  std::vector<std::string> out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == kHierarchyDelimiter && i > 0) {
      out.emplace_back(name.substr(0, i));
    }
  }
  return out;
}

bool IsInferiorOf(std::string_view name, std::string_view parent) {
  return name.size() > parent.size() + 1 && name.substr(0, parent.size()) == parent &&
         name[parent.size()] == kHierarchyDelimiter;
}

std::string JoinListReference(std::string_view reference, std::string_view pattern) {
  if (!pattern.empty() && pattern.front() == kHierarchyDelimiter) {
    return std::string(pattern);
  }
  std::string out(reference);
  out.append(pattern);
  return out;
}

bool ListPatternMatches(std::string_view pattern_in, std::string_view name_in) {
  const std::string pattern = CanonicalMailboxName(pattern_in);
  const std::string name = CanonicalMailboxName(name_in);
  const size_t n = name.size();
  // next[j]: does pattern[i+1..] match name[j..]; row[j]: pattern[i..] against
  // name[j..]. Filling the table keeps a pattern of many wildcards at |pattern| x
  // |name| steps where backtracking would be exponential.
  std::vector<char> next(n + 1, 0), row(n + 1, 0);
  next[n] = 1;  // the empty pattern matches only the empty rest
  for (size_t i = pattern.size(); i-- > 0;) {
    const char p = pattern[i];
    row[n] = (p == '*' || p == '%') ? next[n] : 0;
    for (size_t j = n; j-- > 0;) {
      if (p == '*') {
        row[j] = next[j] || row[j + 1];
      } else if (p == '%') {
        row[j] = next[j] || (name[j] != kHierarchyDelimiter && row[j + 1]);
      } else {
        row[j] = p == name[j] && next[j + 1];
      }
    }
    next.swap(row);
  }
  return next[0] != 0;
}

std::string WidenListPattern(std::string_view pattern) {
  std::string out(pattern);
  std::replace(out.begin(), out.end(), '%', '*');
  if (out.empty() || out.back() != '*') {
    out.push_back('*');
  }
  return out;
}

std::vector<std::string> MatchingSuperiors(std::string_view pattern, std::string_view name) {
  std::vector<std::string> out;
  for (std::string& superior : Superiors(name)) {
    if (ListPatternMatches(pattern, superior)) {
      out.push_back(std::move(superior));
    }
  }
  return out;
}

bool IsKnownSpecialUse(std::string_view use) {
  static constexpr std::string_view kKnown[] = {"\\All",     "\\Archive", "\\Drafts",
                                                "\\Flagged", "\\Junk",    "\\Sent",
                                                "\\Trash",   "\\Important"};
  return std::any_of(std::begin(kKnown), std::end(kKnown), [&](std::string_view known) {
    return absl::EqualsIgnoreCase(AV(known), AV(use));
  });
}

absl::Status ValidateUsername(std::string_view username) {
  if (username.empty()) {
    return v1::BadRequest("username is empty");
  }
  if (username.size() > 255) {
    return v1::BadRequest("username is longer than 255 octets");
  }
  if (!IsValidUtf8(username)) {
    return v1::BadRequest("username is not valid UTF-8");
  }
  if (HasControl(username)) {
    return v1::BadRequest("username contains control characters");
  }
  return absl::OkStatus();
}

}  // namespace mailbox::rules
