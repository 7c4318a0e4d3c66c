// libFuzzer target for the IMAP date grammar: "date" of SEARCH and
// "date-time" of APPEND (RFC 3501 §9), with the conversions the session uses.
//
// Properties:
//  * whatever SearchDate/DateTimeToken accept is a real calendar date and
//    time (day exists in that month, hh <= 23, mm <= 59, ss <= 60, zone
//    minutes < 60) and consumes exactly the token;
//  * format -> parse is the identity: Date::ToString() and
//    DateTime::ToQuoted() parse back to the same value;
//  * Unix time conversions invert each other (FromUnixSeconds of
//    ToUnixSeconds gives the same DateTime, leap second excepted), and
//    DaysSinceEpoch agrees with FromUnixSeconds;
//  * values built from arbitrary field bytes go format -> parse unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/imap/date_time.h"
#include "gateway/imap/lexer.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

void CheckDate(const imap::Date& d) {
  Check(d.month >= 1 && d.month <= 12, "month out of range");
  Check(d.day >= 1 && d.day <= imap::DaysInMonth(d.year, d.month), "day out of range");
  Check(d.year >= 0 && d.year <= 9999, "year out of range");
  imap::Limits limits;
  std::string text = d.ToString();
  imap::internal::Lexer lex(text, limits);
  imap::Date again;
  Check(lex.SearchDate(&again) && lex.AtEnd(), "Date::ToString does not parse");
  Check(again == d, "Date format -> parse changed it");
  imap::DateTime midnight = imap::DateTime::FromUnixSeconds(d.DaysSinceEpoch() * 86400);
  Check(midnight.date == d, "DaysSinceEpoch disagrees with FromUnixSeconds");
}

void CheckDateTime(const imap::DateTime& dt) {
  CheckDate(dt.date);
  Check(dt.hour >= 0 && dt.hour <= 23 && dt.minute >= 0 && dt.minute <= 59 &&
            dt.second >= 0 && dt.second <= 60,
        "time out of range");
  const int zone = dt.zone_minutes < 0 ? -dt.zone_minutes : dt.zone_minutes;
  Check(zone % 60 <= 59 && zone / 60 <= 99, "zone out of range");
  imap::Limits limits;
  std::string quoted = dt.ToQuoted();
  Check(quoted.size() == 28, "ToQuoted is not 28 octets");
  imap::internal::Lexer lex(quoted, limits);
  imap::DateTime again;
  Check(lex.DateTimeToken(&again) && lex.AtEnd(), "ToQuoted does not parse");
  Check(again == dt, "DateTime format -> parse changed it");
  if (dt.second < 60) {
    imap::DateTime back =
        imap::DateTime::FromUnixSeconds(dt.ToUnixSeconds(), dt.zone_minutes);
    Check(back == dt, "FromUnixSeconds(ToUnixSeconds()) changed it");
  }
}

int Byte(std::string_view s, size_t i) {
  return i < s.size() ? static_cast<unsigned char>(s[i]) : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  imap::Limits limits;

  {
    imap::internal::Lexer lex(input, limits);
    imap::Date date;
    if (lex.SearchDate(&date)) {
      CheckDate(date);
      Check(lex.pos() >= 10 && lex.pos() <= 13, "SearchDate consumed a wrong length");
    }
  }
  {
    imap::internal::Lexer lex(input, limits);
    imap::DateTime dt;
    if (lex.DateTimeToken(&dt)) {
      CheckDateTime(dt);
      Check(lex.pos() == 28, "DateTimeToken consumed a wrong length");
    }
  }

  // Build a value from the bytes: format -> parse -> equal.
  imap::DateTime dt;
  dt.date.year = (Byte(input, 0) << 8 | Byte(input, 1)) % 10000;
  dt.date.month = 1 + Byte(input, 2) % 12;
  dt.date.day = 1 + Byte(input, 3) % imap::DaysInMonth(dt.date.year, dt.date.month);
  dt.hour = Byte(input, 4) % 24;
  dt.minute = Byte(input, 5) % 60;
  dt.second = Byte(input, 6) % 61;
  dt.zone_minutes = ((Byte(input, 7) << 8 | Byte(input, 8)) % 6000) *
                    (Byte(input, 9) & 1 ? -1 : 1);
  if (dt.zone_minutes % 60 > 59) dt.zone_minutes = 0;
  CheckDateTime(dt);
  return 0;
}
