// RFC 5322 §3.3 date-time, reduced to the civil day for SEARCH SENT*, or to
// an instant for SORT DATE.
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
#include <utility>
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

// The date and what follows it in the tokens.
struct DateTokens {
  int year = 0, month = 0, day = 0;
  std::vector<std::string_view> rest;  // the tokens after the date's own
};

std::optional<DateTokens> ParseDate(std::string_view value, std::string* storage) {
  if (value.size() > 1000) value = value.substr(0, 1000);
  const std::vector<std::string_view> t = Tokens(value, storage);
  size_t i = 0;
  // Optional day-of-week (any alphabetic token that is not a month).
  if (i < t.size() && !t[i].empty() &&
      absl::ascii_isalpha(static_cast<unsigned char>(t[i][0])) &&
      MonthIndex(t[i]) == 0) {
    ++i;
  }
  DateTokens date;
  std::optional<int> year;
  if (i + 2 < t.size() && AllDigits(t[i]) && MonthIndex(t[i + 1]) != 0) {
    if (t[i].size() > 2) return std::nullopt;
    date.day = ToInt(t[i]);
    date.month = MonthIndex(t[i + 1]);
    year = Year(t[i + 2]);
    date.rest.assign(t.begin() + i + 3, t.end());
  } else if (i + 2 < t.size() && MonthIndex(t[i]) != 0 && AllDigits(t[i + 1])) {
    // asctime order: Mon dd [hh:mm:ss] yyyy [zone]
    if (t[i + 1].size() > 2) return std::nullopt;
    date.month = MonthIndex(t[i]);
    date.day = ToInt(t[i + 1]);
    year = Year(t[i + 2]);
    if (year.has_value()) {
      date.rest.assign(t.begin() + i + 3, t.end());
    } else if (i + 3 < t.size()) {
      year = Year(t[i + 3]);
      date.rest.push_back(t[i + 2]);
      date.rest.insert(date.rest.end(), t.begin() + i + 4, t.end());
    }
  }
  if (!year.has_value() || date.month == 0 || date.day < 1 ||
      date.day > DaysInMonth(*year, date.month)) {
    return std::nullopt;
  }
  date.year = *year;
  return date;
}

// hh:mm or hh:mm:ss, in seconds of the day.
std::optional<int> TimeOfDay(std::string_view token) {
  std::vector<int> parts;
  size_t k = 0;
  while (k <= token.size()) {
    size_t colon = token.find(':', k);
    if (colon == std::string_view::npos) colon = token.size();
    const std::string_view part = token.substr(k, colon - k);
    if (!AllDigits(part) || part.size() > 2) return std::nullopt;
    parts.push_back(ToInt(part));
    k = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 || parts[0] > 23 || parts[1] > 59 ||
      (parts.size() == 3 && parts[2] > 60)) {
    return std::nullopt;
  }
  return parts[0] * 3600 + parts[1] * 60 + (parts.size() == 3 ? parts[2] : 0);
}

// RFC 5322 §3.3 zone (+hhmm / -hhmm) or §4.3 obs-zone, in minutes east of UTC.
// Military zones and unknown names are "-0000" by §4.3: UTC.
std::optional<int> ZoneMinutes(std::string_view token) {
  if ((token[0] == '+' || token[0] == '-') && token.size() == 5 &&
      AllDigits(token.substr(1))) {
    const int hours = ToInt(token.substr(1, 2));
    const int minutes = ToInt(token.substr(3, 2));
    if (minutes > 59) return std::nullopt;
    return (token[0] == '-' ? -1 : 1) * (hours * 60 + minutes);
  }
  static constexpr std::pair<std::string_view, int> kNamed[] = {
      {"ut", 0},         {"gmt", 0},        {"utc", 0},        {"est", -5 * 60},
      {"edt", -4 * 60},  {"cst", -6 * 60},  {"cdt", -5 * 60},  {"mst", -7 * 60},
      {"mdt", -6 * 60},  {"pst", -8 * 60},  {"pdt", -7 * 60}};
  for (const auto& [name, minutes] : kNamed) {
    if (internal::EqualsIgnoreCase(token, name)) return minutes;
  }
  if (absl::ascii_isalpha(static_cast<unsigned char>(token[0]))) return 0;
  return std::nullopt;
}

// Days from 1970-01-01 to the civil date (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

std::optional<int32_t> ParseDateDay(std::string_view value) {
  std::string storage;
  const std::optional<DateTokens> date = ParseDate(value, &storage);
  if (!date.has_value()) {
    return std::nullopt;
  }
  return date->year * 10000 + date->month * 100 + date->day;
}

std::optional<int64_t> ParseDateTime(std::string_view value) {
  std::string storage;
  const std::optional<DateTokens> date = ParseDate(value, &storage);
  if (!date.has_value()) {
    return std::nullopt;
  }
  int seconds = 0;
  int zone = 0;
  size_t i = 0;
  if (i < date->rest.size()) {
    const std::optional<int> time = TimeOfDay(date->rest[i]);
    if (!time.has_value()) {
      return std::nullopt;
    }
    seconds = *time;
    ++i;
  }
  // asctime puts the year after the time; a zone may follow either form.
  while (i < date->rest.size() && AllDigits(date->rest[i])) ++i;
  if (i < date->rest.size()) {
    const std::optional<int> minutes = ZoneMinutes(date->rest[i]);
    if (!minutes.has_value()) {
      return std::nullopt;
    }
    zone = *minutes;
  }
  return DaysFromCivil(date->year, date->month, date->day) * 86400 + seconds -
         int64_t{zone} * 60;
}

}  // namespace mailbox::mime
