// RFC 5322 §3.3 date-time, reduced to the civil day for SEARCH SENT*.
//
// RFC 3501 §6.4.4 compares SENTBEFORE/SENTON/SENTSINCE "disregarding time
// and timezone", so only day, month and year matter; time and zone are
// tolerated in any form. Besides the RFC 5322 syntax this accepts the
// obsolete forms of §4.3 (two- and three-digit years, missing weekday,
// comments anywhere), dd-Mon-yyyy, and asctime order ("Mon Jul  3 10:00:00
// 2023") that old mailers still produce.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "mailbox-service/mime/internal.h"
#include "mailbox-service/mime/mime.h"

namespace mailbox::mime {
namespace {

constexpr std::string_view kMonths[] = {"jan", "feb", "mar", "apr",
                                        "may", "jun", "jul", "aug",
                                        "sep", "oct", "nov", "dec"};

int MonthIndex(std::string_view token) {
  if (token.size() < 3) return 0;
  for (int m = 0; m < 12; ++m) {
    if (internal::StartsWithIgnoreCase(token, kMonths[m])) return m + 1;
  }
  return 0;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int ToInt(std::string_view s) {
  int v = 0;
  for (const char c : s) v = v * 10 + (c - '0');
  return v;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// RFC 5322 §4.3: a two-digit year below 50 is 20xx, otherwise 19xx; a
// three-digit year has 1900 added.
std::optional<int> Year(std::string_view token) {
  if (!AllDigits(token) || token.size() < 2 || token.size() > 4) {
    return std::nullopt;
  }
  int y = ToInt(token);
  if (token.size() == 2) y += y < 50 ? 2000 : 1900;
  if (token.size() == 3) y += 1900;
  if (y < 1000) return std::nullopt;
  return y;
}

// Splits on whitespace, ',' and inner '-' after dropping comments.
std::vector<std::string_view> Tokens(std::string_view value,
                                     std::string* storage) {
  int depth = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\\' && depth > 0) {
      ++i;
      continue;
    }
    if (c == '(') {
      ++depth;
      continue;
    }
    if (c == ')' && depth > 0) {
      --depth;
      continue;
    }
    if (depth == 0) storage->push_back(c);
  }
  std::vector<std::string_view> tokens;
  const std::string_view s = *storage;
  auto is_separator = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',';
  };
  size_t i = 0;
  while (i < s.size()) {
    if (is_separator(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !is_separator(s[j])) ++j;
    const std::string_view word = s.substr(i, j - i);
    i = j;
    // dd-Mon-yyyy; a leading '-' or '+' is a zone sign, not a separator.
    if (word[0] == '-' || word[0] == '+') {
      tokens.push_back(word);
      continue;
    }
    size_t k = 0;
    while (k < word.size()) {
      size_t dash = word.find('-', k);
      if (dash == std::string_view::npos) dash = word.size();
      if (dash > k) tokens.push_back(word.substr(k, dash - k));
      k = dash + 1;
    }
  }
  return tokens;
}

}  // namespace

std::optional<int32_t> ParseDateDay(std::string_view value) {
  if (value.size() > 1000) value = value.substr(0, 1000);
  std::string storage;
  const std::vector<std::string_view> t = Tokens(value, &storage);
  size_t i = 0;
  // Optional day-of-week (any alphabetic token that is not a month).
  if (i < t.size() && !t[i].empty() &&
      absl::ascii_isalpha(static_cast<unsigned char>(t[i][0])) &&
      MonthIndex(t[i]) == 0) {
    ++i;
  }
  int day = 0, month = 0;
  std::optional<int> year;
  if (i + 2 < t.size() && AllDigits(t[i]) && MonthIndex(t[i + 1]) != 0) {
    if (t[i].size() > 2) return std::nullopt;
    day = ToInt(t[i]);
    month = MonthIndex(t[i + 1]);
    year = Year(t[i + 2]);
  } else if (i + 2 < t.size() && MonthIndex(t[i]) != 0 && AllDigits(t[i + 1])) {
    // asctime order: Mon dd [hh:mm:ss] yyyy
    if (t[i + 1].size() > 2) return std::nullopt;
    month = MonthIndex(t[i]);
    day = ToInt(t[i + 1]);
    year = Year(t[i + 2]);
    if (!year.has_value() && i + 3 < t.size()) year = Year(t[i + 3]);
  }
  if (!year.has_value() || month == 0 || day < 1 ||
      day > DaysInMonth(*year, month)) {
    return std::nullopt;
  }
  return *year * 10000 + month * 100 + day;
}

}  // namespace mailbox::mime
