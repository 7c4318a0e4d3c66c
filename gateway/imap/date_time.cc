#include "gateway/imap/date_time.h"

#include <cctype>
#include <cstdio>

namespace imap {
namespace {

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Howard Hinnant's days_from_civil algorithm (public domain description).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int* year, int* month, int* day) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *year = static_cast<int>(yoe + era * 400 + (*month <= 2));
}

}  // namespace

int ParseMonthName(const char* s) {
  for (int i = 0; i < 12; ++i) {
    bool match = true;
    for (int j = 0; j < 3; ++j) {
      if (std::tolower(static_cast<unsigned char>(s[j])) !=
          std::tolower(static_cast<unsigned char>(kMonths[i][j]))) {
        match = false;
        break;
      }
    }
    if (match) return i + 1;
  }
  return 0;
}

const char* MonthName(int month) {
  return month >= 1 && month <= 12 ? kMonths[month - 1] : "???";
}

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12) return 0;
  if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) {
    return 29;
  }
  return kDays[month - 1];
}

int64_t Date::DaysSinceEpoch() const { return DaysFromCivil(year, month, day); }

std::string Date::ToString() const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%d-%s-%04d", day, MonthName(month), year);
  return buf;
}

int64_t DateTime::ToUnixSeconds() const {
  return date.DaysSinceEpoch() * 86400 + hour * 3600 + minute * 60 + second -
         static_cast<int64_t>(zone_minutes) * 60;
}

DateTime DateTime::FromUnixSeconds(int64_t seconds, int zone_minutes) {
  int64_t local = seconds + static_cast<int64_t>(zone_minutes) * 60;
  int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  int64_t rest = local - days * 86400;
  DateTime dt;
  CivilFromDays(days, &dt.date.year, &dt.date.month, &dt.date.day);
  dt.hour = static_cast<int>(rest / 3600);
  dt.minute = static_cast<int>(rest / 60 % 60);
  dt.second = static_cast<int>(rest % 60);
  dt.zone_minutes = zone_minutes;
  return dt;
}

std::string DateTime::ToQuoted() const {
  int zone = zone_minutes < 0 ? -zone_minutes : zone_minutes;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "\"%2d-%s-%04d %02d:%02d:%02d %c%02d%02d\"",
                date.day, MonthName(date.month), date.year, hour, minute, second,
                zone_minutes < 0 ? '-' : '+', zone / 60, zone % 60);
  return buf;
}

}  // namespace imap
