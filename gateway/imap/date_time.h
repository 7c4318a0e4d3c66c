// Dates of the IMAP grammar: "date" (SEARCH, RFC 3501 §6.4.4) and
// "date-time" (APPEND and INTERNALDATE, RFC 3501 §9).
#pragma once

#include <cstdint>
#include <string>

namespace imap {

// A calendar date d-Mon-yyyy, validated (day exists in that month).
struct Date {
  int year = 0;
  int month = 0;  // 1..12
  int day = 0;    // 1..31

  // Days since 1970-01-01 (proleptic Gregorian); negative before 1970.
  int64_t DaysSinceEpoch() const;
  // "7-Feb-1994": the form SEARCH accepts and the serializer writes.
  std::string ToString() const;

  bool operator==(const Date&) const = default;
};

// "dd-Mon-yyyy hh:mm:ss +zzzz" with its zone.
struct DateTime {
  Date date;
  int hour = 0;
  int minute = 0;
  int second = 0;
  int zone_minutes = 0;  // east of UTC, e.g. -0800 is -480

  // Seconds since the Unix epoch (UTC).
  int64_t ToUnixSeconds() const;
  // Builds a DateTime for a Unix time shown in the given zone.
  static DateTime FromUnixSeconds(int64_t seconds, int zone_minutes = 0);
  // The quoted wire form with a space-padded day, e.g. "\" 7-Feb-1994 21:52:25 -0800\"".
  std::string ToQuoted() const;

  bool operator==(const DateTime&) const = default;
};

// Parses a three-letter month name case-insensitively ("Jan" -> 1), 0 if none.
int ParseMonthName(const char* three_chars);
// "Jan".."Dec" for 1..12.
const char* MonthName(int month);
// Number of days in the month, accounting for leap years.
int DaysInMonth(int year, int month);

}  // namespace imap
