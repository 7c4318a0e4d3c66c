#include "gateway/session/commands/list_pattern.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gateway::commands {
namespace {

constexpr std::string_view kInbox = "INBOX";

bool EqualsIgnoreAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') {
      x = static_cast<char>(x - 'a' + 'A');
    }
    if (y >= 'a' && y <= 'z') {
      y = static_cast<char>(y - 'a' + 'A');
    }
    if (x != y) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool IsInbox(std::string_view name) { return EqualsIgnoreAsciiCase(name, kInbox); }

std::string CanonicalMailboxName(std::string_view name) {
  std::string out(name);
  if (name.size() >= kInbox.size() && IsInbox(name.substr(0, kInbox.size())) &&
      (name.size() == kInbox.size() || name[kInbox.size()] == kHierarchyDelimiter)) {
    out.replace(0, kInbox.size(), kInbox);
  }
  return out;
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
  // next[j]: does pattern[i+1..] match name[j..]; row[j]: pattern[i..] vs name[j..].
  // Dynamic programming keeps patterns with many wildcards linear per character
  // instead of backtracking exponentially.
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
  for (char& c : out) {
    if (c == '%') {
      c = '*';
    }
  }
  if (out.empty() || out.back() != '*') {
    out.push_back('*');
  }
  return out;
}

std::vector<std::string> MatchingSuperiors(std::string_view pattern, std::string_view name) {
  std::vector<std::string> out;
  for (size_t i = 0; i < name.size(); ++i) {
    // A superior is a non-empty prefix ending just before a delimiter.
    if (name[i] == kHierarchyDelimiter && i > 0 &&
        ListPatternMatches(pattern, name.substr(0, i))) {
      out.emplace_back(name.substr(0, i));
    }
  }
  return out;
}

}  // namespace gateway::commands
