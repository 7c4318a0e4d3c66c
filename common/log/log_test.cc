#include "common/log/log.h"

#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "boost/json.hpp"
#include "common/log/events.h"
#include "gtest/gtest.h"

namespace mailbox::log {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using std::chrono::system_clock;

// A logger writing into `lines`, at the time in `now`.
struct Captured {
  std::vector<std::string> lines;
  system_clock::time_point now = system_clock::time_point(std::chrono::seconds(1796547000));

  Logger Make(Format format = Format::kJson, int limit = kDefaultMaxLinesPerSecond) {
    LoggerOptions options;
    options.format = format;
    options.common_fields = {{"gateway_id", "gw-1"}};
    options.max_lines_per_second = limit;
    options.sink = [this](std::string_view line) { lines.emplace_back(line); };
    options.clock = [this] { return now; };
    return Logger(std::move(options));
  }
};

json::object Parse(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  // Exactly one line: the newline is the last octet and the only one.
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  boost::system::error_code error;
  json::value value = json::parse(line, error);
  EXPECT_FALSE(error) << error.message() << ": " << line;
  EXPECT_TRUE(value.is_object()) << line;
  return value.is_object() ? value.as_object() : json::object();
}

TEST(LogTest, JsonLineHasTheCommonFieldsInOrder) {
  Captured c;
  Logger logger = c.Make();
  logger.Log(Level::kWarning, event::kLoginFailed,
             {{"session", uint64_t{17}}, {"client", "192.0.2.7:51234"}, {"user", "bob"},
              {"ok", false}, {"delay", -3}});
  ASSERT_EQ(c.lines.size(), 1u);
  EXPECT_EQ(c.lines[0],
            "{\"ts\":\"2026-12-06T08:50:00.000Z\",\"level\":\"warning\",\"event\":"
            "\"login_failed\",\"gateway_id\":\"gw-1\",\"session\":17,\"client\":"
            "\"192.0.2.7:51234\",\"user\":\"bob\",\"ok\":false,\"delay\":-3}\n");
  json::object object = Parse(c.lines[0]);
  EXPECT_EQ(object.at("session").to_number<uint64_t>(), 17u);
}

TEST(LogTest, TimestampIsRfc3339UtcWithMilliseconds) {
  EXPECT_EQ(Timestamp(system_clock::time_point(milliseconds(1796547000123))),
            "2026-12-06T08:50:00.123Z");
  EXPECT_EQ(Timestamp(system_clock::time_point(milliseconds(0))), "1970-01-01T00:00:00.000Z");
}

TEST(LogTest, HostileUserNamesStayInsideTheirField) {
  Captured c;
  Logger logger = c.Make();
  const std::vector<std::string> hostile = {
      "a\"b",                                        // a quote
      "bob\n{\"event\":\"login_succeeded\"}",         // a forged second line
      "x\r\ny",                                      // CR LF
      std::string("nul\0byte", 8),                   // NUL
      "\x01\x1b[31mred\x7f",                         // control characters, DEL
      "\xff\xfe invalid \xc3\x28 utf8 \xed\xa0\x80",  // invalid UTF-8, a surrogate
      "\xc0\xaf",                                    // an overlong '/'
      "back\\slash",
      "\xc2\x85next-line",                           // a C1 control (NEL)
      std::string(5000, 'A'),                        // too long
  };
  for (const std::string& name : hostile) {
    c.lines.clear();
    logger.Log(Level::kWarning, event::kLoginFailed, {{"user", name}, {"reason", "x"}});
    ASSERT_EQ(c.lines.size(), 1u);
    json::object object = Parse(c.lines[0]);
    ASSERT_TRUE(object.contains("user"));
    const json::string& user = object.at("user").as_string();
    EXPECT_LE(user.size(), kMaxValueOctets + 8);
    // Nothing the client sent could add or change another field.
    EXPECT_EQ(object.at("event").as_string(), "login_failed");
    EXPECT_EQ(object.at("reason").as_string(), "x");
    EXPECT_EQ(object.size(), 6u);
    // Valid UTF-8 throughout: Boost.JSON's parser checks it.
    EXPECT_EQ(SafeText(std::string(user.data(), user.size())),
              std::string(user.data(), user.size()));
  }
  // What remains readable is kept; what is not becomes U+FFFD.
  EXPECT_EQ(SafeText("a\"b"), "a\"b");
  EXPECT_EQ(SafeText("\xff" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(SafeText("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SafeText("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SafeText("caf\xc3\xa9 \xf0\x9f\x93\xa7"), "caf\xc3\xa9 \xf0\x9f\x93\xa7");
  EXPECT_EQ(SafeText("\x7f"), "\xEF\xBF\xBD");
  EXPECT_EQ(SafeText(std::string(5000, 'A')), std::string(kMaxValueOctets, 'A') + "...");
}

TEST(LogTest, TextLinesQuoteWhatIsNotAPlainWord) {
  Captured c;
  Logger logger = c.Make(Format::kText);
  logger.Log(Level::kInfo, event::kConnectionClosed,
             {{"session", 3}, {"end", "logout"}, {"user", "bob smith\nx=1"}, {"bytes_in", 10u}});
  ASSERT_EQ(c.lines.size(), 1u);
  EXPECT_EQ(c.lines[0],
            "2026-12-06T08:50:00.000Z INFO connection_closed gateway_id=gw-1 session=3 "
            "end=logout user=\"bob smith\\nx=1\" bytes_in=10\n");
  c.lines.clear();
  logger.Log(Level::kError, event::kStoreUnavailable, {{"error", ""}, {"quote", "a\"b"}});
  EXPECT_EQ(c.lines[0],
            "2026-12-06T08:50:00.000Z ERROR store_unavailable gateway_id=gw-1 error=\"\" "
            "quote=\"a\\\"b\"\n");
}

TEST(LogTest, RateLimitWritesTheBoundThenOneSuppressedLine) {
  Captured c;
  constexpr int kLimit = 5;
  Logger logger = c.Make(Format::kJson, kLimit);
  for (int i = 0; i < kLimit; ++i) {
    logger.Log(Level::kWarning, event::kConnectionRefused, {{"n", i}});
  }
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(kLimit));  // at the bound: all written
  for (int i = 0; i < 7; ++i) {
    logger.Log(Level::kWarning, event::kConnectionRefused, {{"n", kLimit + i}});
  }
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(kLimit));  // over it: counted
  // Other events have their own bound.
  logger.Log(Level::kInfo, event::kConnectionOpened, {});
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(kLimit + 1));
  // Within the second nothing is reported yet.
  c.now += milliseconds(999);
  logger.FlushSuppressed();
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(kLimit + 1));
  // Once it is over, one line says how many were left out.
  c.now += milliseconds(1);
  logger.FlushSuppressed();
  ASSERT_EQ(c.lines.size(), static_cast<size_t>(kLimit + 2));
  json::object summary = Parse(c.lines.back());
  EXPECT_EQ(summary.at("event").as_string(), "log_suppressed");
  EXPECT_EQ(summary.at("level").as_string(), "warning");
  EXPECT_EQ(summary.at("suppressed_event").as_string(), "connection_refused");
  EXPECT_EQ(summary.at("suppressed").to_number<uint64_t>(), 7u);
  EXPECT_EQ(summary.at("limit_per_second").as_int64(), kLimit);
  logger.FlushSuppressed();  // reported once
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(kLimit + 2));
  // A new second: the bound applies afresh.
  for (int i = 0; i < kLimit; ++i) {
    logger.Log(Level::kWarning, event::kConnectionRefused, {{"n", i}});
  }
  EXPECT_EQ(c.lines.size(), static_cast<size_t>(2 * kLimit + 2));
}

TEST(LogTest, SuppressedCountIsReportedByTheNextLineToo) {
  Captured c;
  Logger logger = c.Make(Format::kJson, 1);
  logger.Log(Level::kWarning, event::kTlsHandshakeFailed, {});
  logger.Log(Level::kWarning, event::kTlsHandshakeFailed, {});
  logger.Log(Level::kWarning, event::kTlsHandshakeFailed, {});
  ASSERT_EQ(c.lines.size(), 1u);
  c.now += std::chrono::seconds(2);
  logger.Log(Level::kWarning, event::kTlsHandshakeFailed, {});
  ASSERT_EQ(c.lines.size(), 3u);
  EXPECT_EQ(Parse(c.lines[1]).at("suppressed").to_number<uint64_t>(), 2u);
  EXPECT_EQ(Parse(c.lines[2]).at("event").as_string(), "tls_handshake_failed");
}

TEST(LogTest, NoLimitWhenZero) {
  Captured c;
  Logger logger = c.Make(Format::kJson, 0);
  for (int i = 0; i < 1000; ++i) {
    logger.Log(Level::kInfo, event::kConnectionOpened, {});
  }
  EXPECT_EQ(c.lines.size(), 1000u);
}

TEST(LogTest, ParseFormat) {
  EXPECT_EQ(*ParseFormat("json", 0), Format::kJson);
  EXPECT_EQ(*ParseFormat("text", 0), Format::kText);
  // A pipe is no terminal: auto means JSON.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_EQ(*ParseFormat("auto", fds[1]), Format::kJson);
  close(fds[0]);
  close(fds[1]);
  EXPECT_FALSE(ParseFormat("xml", 0).ok());
}

}  // namespace
}  // namespace mailbox::log
