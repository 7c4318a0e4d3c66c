// imap-loadgen: simulates many IMAP clients from one process.
//
// One single-threaded io_context runs one coroutine per simulated client; each follows
// a profile (profile.h) against 127.0.0.1 over plain IMAP or IMAPS. Latencies go into
// one histogram per command kind; a ticker writes per-second JSON lines and a progress
// line, and the run ends with a summary JSON. Flags and outputs: bench/loadgen/PROFILES.md.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/loadgen/histogram.h"
#include "bench/loadgen/profile.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "boost/json.hpp"
#include "common/config.h"

namespace bench::loadgen {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
// The environment this bench runs in allows 20,000 open files per process.
constexpr int64_t kOpenFileCeiling = 20'000;
// Descriptors kept back for stdio, output files and the resolver.
constexpr int64_t kReservedFiles = 32;
// The idle scenario's setup (connect, LOGIN, SELECT, IDLE for every client) must finish
// within this; then the run ends anyway.
constexpr auto kIdleSetupLimit = std::chrono::hours(1);
// A response line without literals longer than this is a server fault, not load.
constexpr size_t kMaxLineLength = 1 << 20;

// Report rows: one per step kind, plus connection setup (TCP, TLS, greeting).
constexpr int kConnectKind = kStepKindCount;
constexpr int kKinds = kStepKindCount + 1;

std::string KindName(int kind) {
  return kind == kConnectKind ? "connect" : std::string(StepKindName(static_cast<StepKind>(kind)));
}

// --scenario: `profile` runs the profile's mix; `idle` parks every client in IDLE and
// records when each one is told of a change (see PROFILES.md, "The idle scenario").
enum class Scenario { kProfile, kIdle };

struct Options {
  std::string host;
  std::vector<int> ports;  // several: each new connection takes the next, in turn
  bool tls = false;
  int64_t users = 1;
  std::string user_prefix;
  std::string password;
  int64_t clients = 1;
  microseconds duration{0};
  microseconds timeout{0};
  std::string profile_path;
  double open_loop_rate = 0;  // arrivals per second over all clients; 0 = closed loop
  std::string out_dir;
  int64_t populate = 0;
  int64_t populate_size = 0;
  uint64_t seed = 1;
  Scenario scenario = Scenario::kProfile;
  int64_t setup_concurrency = 0;  // idle scenario: sessions being set up at once
};

enum class Outcome { kOk, kNo, kBad, kIo };

struct ErrorCounts {
  int64_t no = 0;        // tagged NO: the server refused, the session goes on
  int64_t protocol = 0;  // BAD or an unparseable/unexpected response
  int64_t io = 0;        // connection refused, reset or closed
  int64_t timeout = 0;   // no answer within --timeout

  int64_t Total() const { return no + protocol + io + timeout; }
};

struct Stats {
  std::array<Histogram, kKinds> latency;
  std::array<int64_t, kKinds> total{};
  std::array<int64_t, kKinds> this_second{};
  Histogram second_latency;  // every kind, reset each second for the progress line
  ErrorCounts errors;
  ErrorCounts errors_this_second;
  // What the errors said (the server's text without its tag, or the I/O error), so
  // that a run with errors tells why; at most kErrorExamples distinct texts.
  std::map<std::string, int64_t> error_examples;
  int64_t other_errors = 0;  // errors whose text did not fit in error_examples
  int64_t open_connections = 0;
  int64_t bytes_appended = 0;

  void Record(int kind, microseconds latency_us) {
    latency[kind].Record(latency_us.count());
    second_latency.Record(latency_us.count());
    ++total[kind];
    ++this_second[kind];
  }
};

// State shared by every client; everything runs on one thread, so no locks.
struct Run {
  Options options;
  Profile profile;
  asio::io_context* io = nullptr;
  asio::ssl::context* tls = nullptr;
  std::vector<tcp::endpoint> endpoints;
  size_t next_endpoint = 0;
  Clock::time_point start;
  Clock::time_point end;
  Stats stats;
  std::mt19937_64 rng;
  bool populating = false;
  bool end_known = true;  // false while the idle scenario sets up
};

std::string QuoteImap(std::string_view s) {
  // RFC 3501 §4.3 quoted string: backslash and double quote are escaped.
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string UserName(const Options& options, int64_t number) {
  return absl::StrCat(options.user_prefix, number);
}

// --password is a pattern: %u is the user name, %n the user's number.
std::string Password(const Options& options, int64_t number) {
  std::string out;
  const std::string& p = options.password;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '%' && i + 1 < p.size() && p[i + 1] == 'u') {
      out += UserName(options, number);
      ++i;
    } else if (p[i] == '%' && i + 1 < p.size() && p[i + 1] == 'n') {
      out += absl::StrCat(number);
      ++i;
    } else {
      out.push_back(p[i]);
    }
  }
  return out;
}

// A synthetic RFC 5322 message of exactly `size` octets (at least its headers). Its
// subject, sender and date vary with `serial` so that SORT and THREAD have work to
// do: one of a thousand topics, half of them replies ("Re:"), dated within a year.
std::string MakeMessage(int64_t size, uint64_t serial) {
  const time_t sent = 1764000000 - static_cast<time_t>(serial % (365 * 86400));
  struct tm tm;
  gmtime_r(&sent, &tm);
  char date[64];
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string message = absl::StrCat(
      "From: Load Generator ", serial % 97, " <loadgen", serial % 97, "@example.test>\r\n"
      "To: user@example.test\r\n"
      "Subject: ", (serial & 1) != 0 ? "Re: " : "", "bench topic ", serial % 1000,
      "\r\n"
      "Date: ", date, "\r\n"
      "Message-ID: <",
      serial,
      "@loadgen.example.test>\r\n"
      "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
  const std::string_view filler = "The quick brown fox jumps over the lazy dog. 0123456789\r\n";
  while (static_cast<int64_t>(message.size()) < size) {
    const size_t room = static_cast<size_t>(size) - message.size();
    if (room >= filler.size()) {
      message.append(filler);
    } else {
      message.append(room, 'x');
    }
  }
  return message;
}

// One IMAP connection: a plain or TLS stream, a read buffer, and a watchdog that
// closes the socket when the current deadline passes, so every read and write is
// bounded without a timer per operation.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, asio::ssl::context* tls) : watchdog_(io) {
    if (tls != nullptr) {
      tls_.emplace(io, *tls);
    } else {
      plain_.emplace(io);
    }
  }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  bool timed_out() const { return timed_out_; }

  // Moves the deadline; the watchdog coroutine must be running (StartWatchdog).
  void SetDeadline(Clock::time_point deadline) {
    deadline_ = deadline;
    if (deadline_ < watchdog_.expiry()) {
      watchdog_.cancel();
    }
  }

  void StartWatchdog() {
    asio::co_spawn(watchdog_.get_executor(), Watch(shared_from_this()),
                   [](std::exception_ptr e) {
                     if (e) {
                       std::cerr << "imap-loadgen: watchdog failed\n";
                     }
                   });
  }

  void Close() {
    closed_ = true;
    boost::system::error_code ignored;
    socket().close(ignored);
    watchdog_.cancel();
  }

  awaitable<absl::Status> Connect(const tcp::endpoint& endpoint) {
    auto [ec] = co_await socket().async_connect(endpoint, kAwait);
    if (ec) {
      co_return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
    }
    socket().set_option(tcp::no_delay(true), ec);
    if (tls_) {
      auto [hec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, kAwait);
      if (hec) {
        co_return absl::UnavailableError(absl::StrCat("TLS handshake: ", hec.message()));
      }
    }
    co_return absl::OkStatus();
  }

  // Takes the bytes by value: they live in the coroutine frame until written.
  awaitable<absl::Status> Write(std::string data) {
    boost::system::error_code ec;
    if (tls_) {
      std::tie(ec, std::ignore) = co_await asio::async_write(*tls_, asio::buffer(data), kAwait);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(*plain_, asio::buffer(data), kAwait);
    }
    if (ec) {
      co_return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
    }
    co_return absl::OkStatus();
  }

  // One response line without CRLF. Literals (RFC 3501 §4.3 "{N}\r\n" + N octets) are
  // consumed and left out, the line continuing after them, so callers see the
  // structure but never the (possibly huge) data.
  awaitable<absl::StatusOr<std::string>> ReadLine() {
    std::string line;
    while (true) {
      const size_t crlf = buffer_.find("\r\n", pos_);
      if (crlf == std::string::npos) {
        if (buffer_.size() - pos_ + line.size() > kMaxLineLength) {
          co_return absl::DataLossError("response line longer than 1 MiB");
        }
        absl::Status filled = co_await Fill();
        if (!filled.ok()) {
          co_return filled;
        }
        continue;
      }
      line.append(buffer_, pos_, crlf - pos_);
      pos_ = crlf + 2;
      std::optional<uint64_t> literal = TrailingLiteral(line);
      if (!literal) {
        co_return line;
      }
      uint64_t remaining = *literal;
      while (remaining > 0) {
        if (pos_ == buffer_.size()) {
          absl::Status filled = co_await Fill();
          if (!filled.ok()) {
            co_return filled;
          }
        }
        const uint64_t take = std::min<uint64_t>(remaining, buffer_.size() - pos_);
        pos_ += take;
        remaining -= take;
      }
    }
  }

 private:
  static awaitable<void> Watch(std::shared_ptr<Connection> self) {
    while (!self->closed_) {
      self->watchdog_.expires_at(self->deadline_);
      co_await self->watchdog_.async_wait(kAwait);
      if (self->closed_) {
        break;
      }
      if (Clock::now() >= self->deadline_) {
        self->timed_out_ = true;
        boost::system::error_code ignored;
        self->socket().close(ignored);
        break;
      }
    }
  }

  static std::optional<uint64_t> TrailingLiteral(std::string_view line) {
    if (line.empty() || line.back() != '}') {
      return std::nullopt;
    }
    const size_t open = line.rfind('{');
    if (open == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view digits = line.substr(open + 1, line.size() - open - 2);
    if (!digits.empty() && digits.back() == '+') {
      digits.remove_suffix(1);
    }
    uint64_t n = 0;
    if (digits.empty() || !absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &n)) {
      return std::nullopt;
    }
    return n;
  }

  awaitable<absl::Status> Fill() {
    if (pos_ > 0) {
      buffer_.erase(0, pos_);
      pos_ = 0;
    }
    const size_t old = buffer_.size();
    buffer_.resize(old + 16384);
    boost::system::error_code ec;
    size_t got = 0;
    if (tls_) {
      std::tie(ec, got) =
          co_await tls_->async_read_some(asio::buffer(buffer_.data() + old, 16384), kAwait);
    } else {
      std::tie(ec, got) =
          co_await plain_->async_read_some(asio::buffer(buffer_.data() + old, 16384), kAwait);
    }
    buffer_.resize(old + got);
    if (ec) {
      co_return absl::UnavailableError(absl::StrCat("read: ", ec.message()));
    }
    co_return absl::OkStatus();
  }

  std::optional<asio::ssl::stream<tcp::socket>> tls_;
  std::optional<tcp::socket> plain_;
  asio::steady_timer watchdog_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool closed_ = false;
  bool timed_out_ = false;
  std::string buffer_;
  size_t pos_ = 0;
};

// What one client knows about its connection's IMAP state.
struct Session {
  Run* run = nullptr;
  std::shared_ptr<Connection> conn;
  int64_t user = 1;
  uint64_t next_tag = 1;
  bool selected = false;
  int64_t exists = 0;    // RFC 3501 §7.3.1 EXISTS as last seen
  int64_t uidnext = 1;   // RFC 3501 §7.1 [UIDNEXT] as last seen
  std::vector<std::string>* untagged = nullptr;  // when set, collects untagged lines
  std::string last_error;
  bool open_counted = false;  // counted in Stats::open_connections
};

constexpr size_t kErrorExamples = 20;

// The text an error is filed under: a tagged response loses its tag, and every text is
// cut to 160 bytes.
std::string ErrorText(std::string_view message) {
  if (const size_t space = message.find(' ');
      space != std::string_view::npos && !message.starts_with("* ") &&
      (message.substr(space + 1).starts_with("NO ") ||
       message.substr(space + 1).starts_with("BAD "))) {
    message.remove_prefix(space + 1);
  }
  return std::string(message.substr(0, 160));
}

void CountError(Run& run, Outcome outcome, bool timed_out, std::string_view message) {
  std::string text = ErrorText(message.empty() ? "(no message)" : message);
  auto& examples = run.stats.error_examples;
  if (auto it = examples.find(text); it != examples.end()) {
    ++it->second;
  } else if (examples.size() < kErrorExamples) {
    examples.emplace(std::move(text), 1);
  } else {
    ++run.stats.other_errors;
  }
  ErrorCounts* both[] = {&run.stats.errors, &run.stats.errors_this_second};
  for (ErrorCounts* e : both) {
    if (outcome == Outcome::kNo) {
      ++e->no;
    } else if (outcome == Outcome::kBad) {
      ++e->protocol;
    } else if (outcome == Outcome::kIo && timed_out) {
      ++e->timeout;
    } else if (outcome == Outcome::kIo) {
      ++e->io;
    }
  }
}

// Notes what untagged data says about the mailbox (RFC 3501 §7.3.1, §7.4.1, §7.1).
void ObserveUntagged(Session& s, std::string_view line) {
  std::string_view rest = line.substr(2);
  if (rest.starts_with("OK [UIDNEXT ")) {
    int64_t n = 0;
    std::string_view digits = rest.substr(12, rest.find(']') - 12);
    if (absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &n)) {
      s.uidnext = n;
    }
    return;
  }
  const size_t space = rest.find(' ');
  if (space == std::string_view::npos) {
    return;
  }
  int64_t n = 0;
  const std::string_view number = rest.substr(0, space);
  if (!absl::SimpleAtoi(absl::string_view(number.data(), number.size()), &n)) {
    return;
  }
  const std::string_view what = rest.substr(space + 1);
  if (what == "EXISTS") {
    if (s.selected && n > s.exists) {
      s.uidnext += n - s.exists;  // new messages have UIDs at or above UIDNEXT
    }
    s.exists = n;
  } else if (what == "EXPUNGE" && s.exists > 0) {
    --s.exists;
  }
}

// Reads responses until the tagged one for `tag`. A "+" continuation ends the wait
// too when `continuation` is given (APPEND literal, IDLE).
awaitable<Outcome> ReadUntilTagged(Session& s, std::string_view tag, bool* continuation) {
  const std::string prefix = absl::StrCat(std::string(tag), " ");
  while (true) {
    absl::StatusOr<std::string> line = co_await s.conn->ReadLine();
    if (!line.ok()) {
      s.last_error = std::string(line.status().message());
      co_return Outcome::kIo;
    }
    if (line->starts_with("* ")) {
      ObserveUntagged(s, *line);
      if (s.untagged != nullptr) {
        s.untagged->push_back(*line);
      }
      continue;
    }
    if (line->starts_with("+")) {
      if (continuation != nullptr) {
        *continuation = true;
        co_return Outcome::kOk;
      }
      s.last_error = absl::StrCat("unexpected continuation: ", *line);
      co_return Outcome::kBad;
    }
    if (line->starts_with(prefix)) {
      std::string_view status = std::string_view(*line).substr(prefix.size());
      if (status.starts_with("OK")) {
        co_return Outcome::kOk;
      }
      s.last_error = *line;
      if (status.starts_with("NO")) {
        co_return Outcome::kNo;
      }
      co_return Outcome::kBad;
    }
    s.last_error = absl::StrCat("unexpected response: ", line->substr(0, 200));
    co_return Outcome::kBad;
  }
}

// Sends `tag command` and waits for its completion.
awaitable<Outcome> Command(Session& s, std::string command) {
  const std::string tag = absl::StrCat("a", s.next_tag++);
  s.conn->SetDeadline(Clock::now() + s.run->options.timeout);
  const std::string line = absl::StrCat(tag, " ", command, "\r\n");
  absl::Status written = co_await s.conn->Write(line);
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return Outcome::kIo;
  }
  Outcome outcome = co_await ReadUntilTagged(s, tag, nullptr);
  co_return outcome;
}

// A sequence set for `set` against what the session saw, or "" when the mailbox is
// empty. With UIDs the range is [1, UIDNEXT); UIDs that no longer exist are ignored by
// UID commands (RFC 3501 §6.4.8), so random UIDs never make a command fail.
std::string SequenceSet(Session& s, const MessageSet& set, bool uid) {
  const int64_t high = uid ? s.uidnext - 1 : s.exists;
  if (high < 1) {
    return "";
  }
  switch (set.mode) {
    case MessageSet::Mode::kAll:
      return "1:*";
    case MessageSet::Mode::kNewest:
      return absl::StrCat(std::max<int64_t>(1, high - set.count + 1), ":*");
    case MessageSet::Mode::kRandom: {
      std::uniform_int_distribution<int64_t> pick(1, high);
      const int64_t first = pick(s.run->rng);
      const int64_t last = std::min(high, first + set.count - 1);
      return first == last ? absl::StrCat(first) : absl::StrCat(first, ":", last);
    }
  }
  return "";
}

// `from` is the start of the command's latency; building the message is the load
// generator's own work before the command's first byte, so it moves `from` on by
// the time it took: what is measured runs from the first byte of the APPEND
// command, through the continuation and the whole literal, to the tagged OK.
awaitable<Outcome> Append(Session& s, const Step& step, Clock::time_point* from) {
  const std::string tag = absl::StrCat("a", s.next_tag++);
  const Clock::time_point build_start = Clock::now();
  std::string literal = MakeMessage(step.size, s.run->rng());
  const size_t message_size = literal.size();
  literal.append("\r\n");  // the end of the command line after the literal
  *from += Clock::now() - build_start;
  s.conn->SetDeadline(Clock::now() + s.run->options.timeout);
  // A synchronising literal (RFC 3501 §7.5): works whatever LITERAL+/- the server has.
  const std::string head =
      absl::StrCat(tag, " APPEND ", QuoteImap(step.mailbox), " {", message_size, "}\r\n");
  absl::Status written = co_await s.conn->Write(head);
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return Outcome::kIo;
  }
  bool go_ahead = false;
  Outcome outcome = co_await ReadUntilTagged(s, tag, &go_ahead);
  if (outcome != Outcome::kOk || !go_ahead) {
    co_return outcome == Outcome::kOk ? Outcome::kBad : outcome;
  }
  written = co_await s.conn->Write(literal);
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return Outcome::kIo;
  }
  outcome = co_await ReadUntilTagged(s, tag, nullptr);
  if (outcome == Outcome::kOk) {
    s.run->stats.bytes_appended += static_cast<int64_t>(message_size);
  }
  co_return outcome;
}

awaitable<void> SleepUntil(Run& run, Clock::time_point when) {
  asio::steady_timer timer(*run.io);
  timer.expires_at(when);
  co_await timer.async_wait(kAwait);
}

// IDLE (RFC 2177) for the step's duration, cut short when the run ends. The latency
// recorded is DONE → tagged OK: the only part of IDLE a user waits for.
awaitable<Outcome> Idle(Session& s, const Step& step, Clock::time_point* done_sent) {
  const std::string tag = absl::StrCat("a", s.next_tag++);
  s.conn->SetDeadline(Clock::now() + s.run->options.timeout);
  absl::Status written = co_await s.conn->Write(absl::StrCat(tag, " IDLE\r\n"));
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return Outcome::kIo;
  }
  bool idling = false;
  Outcome outcome = co_await ReadUntilTagged(s, tag, &idling);
  if (outcome != Outcome::kOk || !idling) {
    co_return outcome == Outcome::kOk ? Outcome::kBad : outcome;
  }
  const Clock::time_point wake = std::min(Clock::now() + step.duration, s.run->end);
  s.conn->SetDeadline(wake + s.run->options.timeout);
  co_await SleepUntil(*s.run, wake);
  *done_sent = Clock::now();
  written = co_await s.conn->Write("DONE\r\n");
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return Outcome::kIo;
  }
  outcome = co_await ReadUntilTagged(s, tag, nullptr);
  co_return outcome;
}

// Runs one step. `start` is when its latency clock starts (the scheduled time in
// open-loop mode). Returns nullopt when the step had nothing to do (empty mailbox).
awaitable<std::optional<Outcome>> ExecuteStep(Session& s, const Step& step,
                                              Clock::time_point start) {
  const Options& o = s.run->options;
  std::string command;
  switch (step.kind) {
    case StepKind::kLogin:
      command = absl::StrCat("LOGIN ", QuoteImap(UserName(o, s.user)), " ",
                             QuoteImap(Password(o, s.user)));
      break;
    case StepKind::kList:
      command = absl::StrCat("LIST \"\" ", QuoteImap(step.pattern));
      break;
    case StepKind::kStatus:
      command = absl::StrCat("STATUS ", QuoteImap(step.mailbox), " ", step.items);
      break;
    case StepKind::kSelect:
      s.exists = 0;
      s.selected = false;
      command = absl::StrCat("SELECT ", QuoteImap(step.mailbox));
      break;
    case StepKind::kFetch:
    case StepKind::kFetch2:
    case StepKind::kStore:
    case StepKind::kDelete: {
      const std::string set = SequenceSet(s, step.set, step.uid);
      if (set.empty()) {
        co_return std::nullopt;
      }
      const char* verb = step.uid ? "UID " : "";
      if (step.kind == StepKind::kFetch || step.kind == StepKind::kFetch2) {
        command = absl::StrCat(verb, "FETCH ", set, " ", step.items);
      } else if (step.kind == StepKind::kStore) {
        command = absl::StrCat(verb, "STORE ", set, " ", step.flags);
      } else {
        command = absl::StrCat(verb, "STORE ", set, " +FLAGS.SILENT (\\Deleted)");
      }
      break;
    }
    case StepKind::kExpunge:
      command = "EXPUNGE";
      break;
    case StepKind::kSearch:
      command = absl::StrCat(step.uid ? "UID " : "", "SEARCH ", step.criteria);
      break;
    case StepKind::kSort:  // RFC 5256 §3: the charset is not optional
      command = absl::StrCat(step.uid ? "UID " : "", "SORT ", step.program, " UTF-8 ",
                             step.criteria);
      break;
    case StepKind::kThread:
      command = absl::StrCat(step.uid ? "UID " : "", "THREAD ", step.program, " UTF-8 ",
                             step.criteria);
      break;
    case StepKind::kNoop:
      command = "NOOP";
      break;
    case StepKind::kLogout:
      command = "LOGOUT";
      break;
    case StepKind::kAppend:
    case StepKind::kIdle:
      break;
  }
  Outcome outcome = Outcome::kOk;
  Clock::time_point from = start;
  if (step.kind == StepKind::kAppend) {
    outcome = co_await Append(s, step, &from);
  } else if (step.kind == StepKind::kIdle) {
    outcome = co_await Idle(s, step, &from);
  } else {
    outcome = co_await Command(s, command);
  }
  if (outcome == Outcome::kOk) {
    s.run->stats.Record(static_cast<int>(step.kind),
                        std::chrono::duration_cast<microseconds>(Clock::now() - from));
    if (step.kind == StepKind::kSelect) {
      s.selected = true;
    }
  } else if (!s.run->populating) {
    CountError(*s.run, outcome, s.conn->timed_out(), s.last_error);
  }
  co_return outcome;
}

bool NeedsSelected(StepKind kind) {
  switch (kind) {
    case StepKind::kFetch:
    case StepKind::kFetch2:
    case StepKind::kStore:
    case StepKind::kDelete:
    case StepKind::kExpunge:
    case StepKind::kSearch:
    case StepKind::kSort:
    case StepKind::kThread:
      return true;
    default:
      return false;
  }
}

// Runs a step, selecting the profile's mailbox first when the step needs one. Returns
// false when the connection is unusable.
awaitable<bool> RunStep(Session& s, const Step& step, Clock::time_point start) {
  if (NeedsSelected(step.kind) && !s.selected) {
    Step select;
    select.kind = StepKind::kSelect;
    select.mailbox = s.run->profile.mailbox;
    std::optional<Outcome> selected = co_await ExecuteStep(s, select, start);
    if (selected != Outcome::kOk) {
      co_return selected != Outcome::kIo;
    }
    start = Clock::now();
  }
  std::optional<Outcome> outcome = co_await ExecuteStep(s, step, start);
  if (step.kind == StepKind::kLogin && outcome != Outcome::kOk) {
    // Not logged in, every further command would fail too; the client hangs up and
    // connects again, as a real one would after a failed login.
    co_return false;
  }
  co_return outcome != Outcome::kIo;
}

// Connects and reads the greeting (RFC 3501 §7.1: an untagged OK), recording the time
// as "connect".
awaitable<bool> OpenSession(Session& s) {
  Run& run = *s.run;
  const Clock::time_point start = Clock::now();
  s.conn = std::make_shared<Connection>(*run.io, run.tls);
  s.conn->StartWatchdog();
  s.conn->SetDeadline(start + run.options.timeout);
  const tcp::endpoint& endpoint = run.endpoints[run.next_endpoint++ % run.endpoints.size()];
  absl::Status connected = co_await s.conn->Connect(endpoint);
  bool ok = connected.ok();
  if (!ok) {
    s.last_error = std::string(connected.message());
  } else {
    ++run.stats.open_connections;
    s.open_counted = true;
    absl::StatusOr<std::string> greeting = co_await s.conn->ReadLine();
    if (!greeting.ok()) {
      s.last_error = std::string(greeting.status().message());
      ok = false;
    } else if (!greeting->starts_with("* OK")) {
      s.last_error = absl::StrCat("greeting: ", *greeting);
      CountError(run, Outcome::kBad, false, s.last_error);
      co_return false;
    }
  }
  if (!ok) {
    if (!run.populating) {
      CountError(run, Outcome::kIo, s.conn->timed_out(), s.last_error);
    }
    co_return false;
  }
  run.stats.Record(kConnectKind, std::chrono::duration_cast<microseconds>(Clock::now() - start));
  s.next_tag = 1;
  s.selected = false;
  s.exists = 0;
  s.uidnext = 1;
  co_return true;
}

void CloseSession(Session& s) {
  if (s.conn) {
    s.conn->Close();
    s.conn.reset();
  }
  if (s.open_counted) {
    --s.run->stats.open_connections;
    s.open_counted = false;
  }
}

microseconds PickThinkTime(Run& run) {
  const ThinkTime& think = run.profile.think;
  if (think.max <= think.min) {
    return think.min;
  }
  std::uniform_int_distribution<int64_t> pick(think.min.count(), think.max.count());
  return microseconds(pick(run.rng));
}

// One simulated client: sessions back to back until the run ends.
awaitable<void> RunClient(Run* run, int64_t index) {
  Session s;
  s.run = run;
  s.user = index % run->options.users + 1;
  const bool open_loop = run->options.open_loop_rate > 0;
  std::exponential_distribution<double> gap(
      open_loop ? run->options.open_loop_rate / static_cast<double>(run->options.clients) : 1.0);
  // Spread the first arrivals so that clients don't all connect in the same instant.
  std::uniform_int_distribution<int64_t> spread(0, 100'000);
  Clock::time_point next_arrival = Clock::now() + microseconds(spread(run->rng));
  co_await SleepUntil(*run, next_arrival);
  while (Clock::now() < run->end) {
    const bool opened = co_await OpenSession(s);
    if (!opened) {
      CloseSession(s);
      // Back off a little so a refusing server doesn't turn into a busy loop.
      co_await SleepUntil(*run, Clock::now() + std::chrono::milliseconds(100));
      continue;
    }
    bool healthy = true;
    for (const Step& step : run->profile.connect) {
      if (!healthy || Clock::now() >= run->end) {
        break;
      }
      healthy = co_await RunStep(s, step, Clock::now());
    }
    int groups = 0;
    while (healthy && !run->profile.mix.empty() && Clock::now() < run->end &&
           (run->profile.groups_per_session == 0 || groups < run->profile.groups_per_session)) {
      Clock::time_point start;
      if (open_loop) {
        // Latency counts from the scheduled arrival, not from when this client got
        // round to it, so a slow server cannot hide its queueing (coordinated omission).
        next_arrival += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(gap(run->rng)));
        start = next_arrival;
      } else {
        start = Clock::now() + PickThinkTime(*run);
      }
      if (start > Clock::now()) {
        co_await SleepUntil(*run, std::min(start, run->end));
      }
      if (Clock::now() >= run->end) {
        break;
      }
      std::uniform_int_distribution<int> roll(0, run->profile.total_weight - 1);
      const MixEntry& entry = PickMixEntry(run->profile, roll(run->rng));
      for (const Step& step : entry.steps) {
        healthy = co_await RunStep(s, step, start);
        if (!healthy) {
          break;
        }
        start = Clock::now();
      }
      ++groups;
    }
    for (const Step& step : run->profile.disconnect) {
      if (!healthy || Clock::now() >= run->end) {
        break;
      }
      healthy = co_await RunStep(s, step, Clock::now());
    }
    CloseSession(s);
    if (!healthy) {
      // A session that broke (or whose LOGIN failed) is retried after a second, as
      // mail clients do, rather than at once against a server that is struggling.
      co_await SleepUntil(*run, std::min(run->end, Clock::now() + std::chrono::seconds(1)));
    }
  }
}

// Brings one user's mailbox up to `populate` messages (STATUS, then APPEND the rest).
awaitable<absl::Status> PopulateUser(Run* run, int64_t user) {
  Session s;
  s.run = run;
  s.user = user;
  const bool opened = co_await OpenSession(s);
  if (!opened) {
    CloseSession(s);
    co_return absl::UnavailableError(absl::StrCat("populate: cannot connect: ", s.last_error));
  }
  Step login;
  login.kind = StepKind::kLogin;
  std::optional<Outcome> outcome = co_await ExecuteStep(s, login, Clock::now());
  if (outcome != Outcome::kOk) {
    CloseSession(s);
    co_return absl::PermissionDeniedError(absl::StrCat(
        "populate: LOGIN as ", UserName(run->options, user), " failed: ", s.last_error,
        " (create the users first, see PROFILES.md)"));
  }
  const std::string& mailbox = run->profile.mailbox;
  if (mailbox != "INBOX") {
    // NO here usually means it exists already; STATUS below tells.
    Outcome created = co_await Command(s, absl::StrCat("CREATE ", QuoteImap(mailbox)));
    (void)created;
  }
  std::vector<std::string> untagged;
  s.untagged = &untagged;
  Outcome status = co_await Command(s, absl::StrCat("STATUS ", QuoteImap(mailbox), " (MESSAGES)"));
  s.untagged = nullptr;
  if (status != Outcome::kOk) {
    CloseSession(s);
    co_return absl::InternalError(absl::StrCat("populate: STATUS failed: ", s.last_error));
  }
  int64_t have = 0;
  for (const std::string& line : untagged) {
    const size_t at = line.find("MESSAGES ");
    if (line.starts_with("* STATUS") && at != std::string::npos) {
      std::string digits = line.substr(at + 9);
      digits = digits.substr(0, digits.find_first_not_of("0123456789"));
      if (!absl::SimpleAtoi(digits, &have)) {
        have = 0;
      }
    }
  }
  Step append;
  append.kind = StepKind::kAppend;
  append.mailbox = mailbox;
  append.size = run->options.populate_size;
  for (int64_t i = have; i < run->options.populate; ++i) {
    outcome = co_await ExecuteStep(s, append, Clock::now());
    if (outcome != Outcome::kOk) {
      CloseSession(s);
      co_return absl::InternalError(absl::StrCat("populate: APPEND failed: ", s.last_error));
    }
  }
  co_await Command(s, "LOGOUT");
  CloseSession(s);
  co_return absl::OkStatus();
}

struct PopulateState {
  int64_t next_user = 1;
  int64_t done = 0;
  absl::Status status;
};

awaitable<void> PopulateWorker(Run* run, PopulateState* state) {
  while (state->status.ok() && state->next_user <= run->options.users) {
    const int64_t user = state->next_user++;
    absl::Status status = co_await PopulateUser(run, user);
    if (!status.ok() && state->status.ok()) {
      state->status = status;
    }
    ++state->done;
  }
}

// ---- Output -------------------------------------------------------------------------

namespace json = boost::json;

// A rate or a mean kept to `digits` decimals, so reports stay short and diffable.
double Rounded(double value, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

json::object ErrorsJson(const ErrorCounts& e) {
  return {{"protocol", e.protocol}, {"no", e.no},       {"io", e.io},
          {"timeout", e.timeout},   {"total", e.Total()}};
}

json::object ErrorExamplesJson(const Stats& stats) {
  json::object out;
  for (const auto& [text, count] : stats.error_examples) {
    out[text] = count;
  }
  if (stats.other_errors > 0) {
    out["(other)"] = stats.other_errors;
  }
  return out;
}

struct Ticker {
  std::ofstream samples;
  bool terminal = false;
  int64_t second = 0;
};

void Tick(Run& run, Ticker& ticker) {
  Stats& stats = run.stats;
  ++ticker.second;
  int64_t commands = 0;
  json::object by_kind;
  for (int k = 0; k < kKinds; ++k) {
    if (stats.this_second[k] == 0) {
      continue;
    }
    commands += k == kConnectKind ? 0 : stats.this_second[k];
    by_kind[KindName(k)] = stats.this_second[k];
  }
  const json::object sample = {
      {"t", ticker.second},
      {"open_connections", stats.open_connections},
      {"commands", commands},
      {"by_kind", std::move(by_kind)},
      {"errors", ErrorsJson(stats.errors_this_second)},
      {"p50_us", stats.second_latency.ValueAtPercentile(50)},
      {"p99_us", stats.second_latency.ValueAtPercentile(99)},
      {"max_us", stats.second_latency.max()},
  };
  ticker.samples << json::serialize(sample) << "\n";
  ticker.samples.flush();
  const int64_t total_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(run.end - run.start).count();
  const std::string clock =
      run.end_known ? absl::StrFormat("%*d/%ds", static_cast<int>(absl::StrCat(total_seconds).size()),
                                      ticker.second, total_seconds)
                    : absl::StrFormat("%ds setting up", ticker.second);
  const std::string progress = absl::StrFormat(
      "[%s] connections %d  commands/s %d  errors %d  p50 %.1f ms  p99 %.1f ms", clock,
      stats.open_connections, commands, stats.errors.Total(),
      stats.second_latency.ValueAtPercentile(50) / 1000.0,
      stats.second_latency.ValueAtPercentile(99) / 1000.0);
  if (ticker.terminal) {
    std::cerr << "\r" << progress << "\033[K" << std::flush;
  } else if (ticker.second % 5 == 0 || (run.end_known && ticker.second == total_seconds)) {
    std::cerr << progress << "\n";
  }
  stats.this_second.fill(0);
  stats.errors_this_second = ErrorCounts();
  stats.second_latency = Histogram();
}

awaitable<void> RunTicker(Run* run, Ticker* ticker) {
  Clock::time_point next = run->start;
  while (true) {
    next += std::chrono::seconds(1);
    if (next > run->end + std::chrono::milliseconds(500)) {
      break;
    }
    co_await SleepUntil(*run, next);
    Tick(*run, *ticker);
  }
  if (ticker->terminal) {
    std::cerr << "\n";
  }
}

// The latency distribution as [[upper_us, cumulative_fraction], ...] at 21
// percentiles from 1 to 100, for the report's CDF plot.
json::array CdfJson(const Histogram& h) {
  // Several percentiles can share a bucket; the point keeps the highest fraction.
  std::vector<std::pair<int64_t, double>> points;
  if (h.count() > 0) {
    for (double p : {1.0,  5.0,  10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0,
                     85.0, 90.0, 92.5, 95.0, 97.5, 99.0, 99.5, 99.9, 99.99, 100.0}) {
      const int64_t value = h.ValueAtPercentile(p);
      if (!points.empty() && points.back().first == value) {
        points.back().second = p / 100.0;
      } else {
        points.emplace_back(value, p / 100.0);
      }
    }
  }
  json::array out;
  for (const auto& [value, fraction] : points) {
    out.push_back(json::array{value, Rounded(fraction, 4)});
  }
  return out;
}

std::string SummaryJson(const Run& run, double seconds) {
  const Stats& stats = run.stats;
  json::object kinds;
  int64_t commands = 0;
  Histogram all;
  for (int k = 0; k < kKinds; ++k) {
    const Histogram& h = stats.latency[k];
    if (h.count() == 0) {
      continue;
    }
    if (k != kConnectKind) {
      commands += h.count();
      all.Merge(h);
    }
    kinds[KindName(k)] = json::object{
        {"count", h.count()},
        {"per_s", Rounded(h.count() / seconds, 2)},
        {"mean_us", Rounded(h.mean(), 1)},
        {"p50_us", h.ValueAtPercentile(50)},
        {"p90_us", h.ValueAtPercentile(90)},
        {"p99_us", h.ValueAtPercentile(99)},
        {"p999_us", h.ValueAtPercentile(99.9)},
        {"max_us", h.max()},
    };
  }
  const Options& o = run.options;
  const json::object summary = {
      {"profile", run.profile.name},
      {"host", o.host},
      {"port", o.ports.front()},
      {"tls", o.tls},
      {"clients", o.clients},
      {"users", o.users},
      {"open_loop_rate", Rounded(o.open_loop_rate, 3)},
      {"duration_s", Rounded(seconds, 3)},
      {"commands", commands},
      {"commands_per_s", Rounded(commands / seconds, 2)},
      {"latency_us",
       {{"p50", all.ValueAtPercentile(50)},
        {"p90", all.ValueAtPercentile(90)},
        {"p99", all.ValueAtPercentile(99)},
        {"p999", all.ValueAtPercentile(99.9)},
        {"max", all.max()}}},
      {"bytes_appended", stats.bytes_appended},
      {"errors", ErrorsJson(stats.errors)},
      {"error_examples", ErrorExamplesJson(stats)},
      {"kinds", std::move(kinds)},
      {"latency_cdf", CdfJson(all)},
  };
  return json::serialize(summary);
}

void LogSpawnFailure(std::exception_ptr e) {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::cerr << "imap-loadgen: client failed: " << ex.what() << "\n";
  }
}

// ---- The idle scenario --------------------------------------------------------------
//
// Every client connects, logs in, selects the profile's mailbox and enters IDLE (RFC
// 2177), at most --setup-concurrency of them setting up at once. When the last one is
// idling (or has failed), `ready.json` is written and the clients hold for --duration;
// meanwhile each notes the wall-clock time of every untagged EXISTS or EXPUNGE it is
// sent (RFC 3501 §7.3.1, §7.4.1). The bench changes the mailbox from outside and works
// out each client's delay from those times; memory is measured while they hold.

struct IdleState {
  int64_t setting_up = 0;
  int64_t idling = 0;
  int64_t failed = 0;
  bool holding = false;
  Clock::time_point setup_start;
  std::vector<std::shared_ptr<Connection>> connections;
  std::vector<std::vector<int64_t>> arrivals_unix_us;  // per client
};

int64_t UnixMicros() {
  return std::chrono::duration_cast<microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsChangeLine(std::string_view line) {
  return line.ends_with(" EXISTS") || line.ends_with(" EXPUNGE");
}

// Connects one client and takes it into IDLE. False when any step failed.
awaitable<bool> EnterIdle(Session& s) {
  const bool opened = co_await OpenSession(s);
  if (!opened) {
    co_return false;
  }
  Step login;
  login.kind = StepKind::kLogin;
  Step select;
  select.kind = StepKind::kSelect;
  select.mailbox = s.run->profile.mailbox;
  for (const Step* step : {&login, &select}) {
    std::optional<Outcome> outcome = co_await ExecuteStep(s, *step, Clock::now());
    if (outcome != Outcome::kOk) {
      co_return false;
    }
  }
  const Clock::time_point start = Clock::now();
  const std::string tag = absl::StrCat("a", s.next_tag++);
  absl::Status written = co_await s.conn->Write(absl::StrCat(tag, " IDLE\r\n"));
  if (!written.ok()) {
    s.last_error = std::string(written.message());
    co_return false;
  }
  bool idling = false;
  Outcome outcome = co_await ReadUntilTagged(s, tag, &idling);
  if (outcome != Outcome::kOk || !idling) {
    CountError(*s.run, outcome == Outcome::kOk ? Outcome::kBad : outcome, s.conn->timed_out(),
               outcome == Outcome::kOk ? "IDLE: no continuation" : s.last_error);
    co_return false;
  }
  s.run->stats.Record(static_cast<int>(StepKind::kIdle),
                      std::chrono::duration_cast<microseconds>(Clock::now() - start));
  co_return true;
}

void WriteReady(const Run& run, const IdleState& state) {
  const double setup_s =
      std::chrono::duration<double>(Clock::now() - state.setup_start).count();
  std::ofstream ready(run.options.out_dir + "/ready.json.tmp", std::ios::trunc);
  ready << json::serialize(json::object{{"idling", state.idling},
                                        {"failed", state.failed},
                                        {"setup_s", Rounded(setup_s, 3)},
                                        {"unix_us", UnixMicros()}})
        << "\n";
  ready.close();
  // Renamed into place so a poller never reads half a file.
  std::filesystem::rename(run.options.out_dir + "/ready.json.tmp",
                          run.options.out_dir + "/ready.json");
  std::cerr << "imap-loadgen: " << state.idling << " client(s) idling, " << state.failed
            << " failed, set up in " << absl::StrFormat("%.1f", setup_s) << " s\n";
}

// Ends the hold: closes every connection, which ends each client's read loop.
awaitable<void> HoldThenStop(Run* run, IdleState* state) {
  state->holding = true;
  run->end = Clock::now() + run->options.duration;
  run->end_known = true;
  co_await SleepUntil(*run, run->end);
  state->holding = false;
  for (const std::shared_ptr<Connection>& conn : state->connections) {
    if (conn) {
      conn->Close();
    }
  }
}

awaitable<void> IdleClient(Run* run, IdleState* state, int64_t index) {
  Session s;
  s.run = run;
  s.user = index % run->options.users + 1;
  const bool idling = co_await EnterIdle(s);
  --state->setting_up;
  if (idling) {
    ++state->idling;
    state->connections[index] = s.conn;
  } else {
    ++state->failed;
    if (state->failed <= 5) {
      std::cerr << "imap-loadgen: client " << index << " could not enter IDLE: " << s.last_error
                << "\n";
    }
    CloseSession(s);
  }
  if (state->idling + state->failed == run->options.clients) {
    WriteReady(*run, *state);
    asio::co_spawn(*run->io, HoldThenStop(run, state), LogSpawnFailure);
  }
  if (!idling) {
    co_return;
  }
  s.conn->SetDeadline(Clock::time_point::max());
  std::vector<int64_t>& arrivals = state->arrivals_unix_us[index];
  while (true) {
    absl::StatusOr<std::string> line = co_await s.conn->ReadLine();
    if (!line.ok()) {
      if (state->holding) {  // the server dropped an idling client
        CountError(*run, Outcome::kIo, false,
                   absl::StrCat("connection lost while idling: ", line.status().message()));
      }
      break;
    }
    if (IsChangeLine(*line)) {
      arrivals.push_back(UnixMicros());
    }
  }
  CloseSession(s);
}

// Starts clients while fewer than --setup-concurrency are setting up.
awaitable<void> LaunchIdleClients(Run* run, IdleState* state) {
  state->setup_start = Clock::now();
  for (int64_t i = 0; i < run->options.clients; ++i) {
    while (state->setting_up >= run->options.setup_concurrency) {
      co_await SleepUntil(*run, Clock::now() + std::chrono::milliseconds(2));
    }
    ++state->setting_up;
    asio::co_spawn(*run->io, IdleClient(run, state, i), LogSpawnFailure);
  }
}

void WriteIdleArrivals(const Run& run, const IdleState& state) {
  std::ofstream out(run.options.out_dir + "/arrivals.json", std::ios::trunc);
  json::array arrivals;
  for (const std::vector<int64_t>& times : state.arrivals_unix_us) {
    arrivals.push_back(json::array(times.begin(), times.end()));
  }
  out << json::serialize(json::object{{"clients", run.options.clients},
                                      {"idling", state.idling},
                                      {"failed", state.failed},
                                      {"arrivals_unix_us", std::move(arrivals)}})
      << "\n";
}

// ---- Setup --------------------------------------------------------------------------

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  absl::StatusOr<mailbox::config::Config> config = mailbox::config::Config::Parse(
      argc, argv,
      {
          {"host", "", "127.0.0.1", "server address; loopback only"},
          {"port", "", "0",
           "server port (required); several, comma-separated, spread the connections over "
           "them in turn (one gateway each)"},
          {"tls", "", "false", "IMAPS (TLS from the first byte); certificates are not checked"},
          {"users", "", "1", "users user1..userN exist; client i logs in as user (i mod N)+1"},
          {"user-prefix", "", "user", "user names are this prefix plus the number"},
          {"password", "", "secret-pw", "password pattern: %u = user name, %n = number"},
          {"clients", "", "10", "simulated clients (one connection each)"},
          {"duration", "", "10s", "length of the measured run"},
          {"timeout", "", "30s", "per-command deadline; a miss counts as a timeout error"},
          {"profile", "", "",
           "profile file (see PROFILES.md); required unless --scenario=idle"},
          {"open-loop-rate", "", "0",
           "mix groups started per second over all clients (Poisson); 0 = closed loop"},
          {"out-dir", "", "loadgen-out", "directory for samples.jsonl and summary.json"},
          {"populate", "", "0", "before the run, top each user's mailbox up to N messages"},
          {"populate-size", "", "4096", "size in octets of populated messages"},
          {"seed", "", "1", "random seed"},
          {"scenario", "", "profile",
           "profile (run the profile's mix) or idle (park every client in IDLE)"},
          {"setup-concurrency", "", "64", "idle scenario: clients setting up at once"},
      });
  if (!config.ok()) {
    return config.status();
  }
  if (config->help_requested()) {
    std::cout << config->Usage("imap-loadgen");
    std::exit(0);
  }
  Options o;
  o.host = config->Get("host");
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1") {
    return absl::InvalidArgumentError("--host must be a loopback address (127.0.0.1 or ::1)");
  }
  if (o.host == "localhost") {
    o.host = "127.0.0.1";
  }
  auto get_int = [&config](std::string_view name, int64_t min,
                           int64_t max) -> absl::StatusOr<int64_t> {
    absl::StatusOr<int64_t> value = config->GetInt(name);
    if (!value.ok()) {
      return value.status();
    }
    if (*value < min || *value > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", std::string(name), " must be from ", min, " to ", max));
    }
    return value;
  };
  auto get_duration = [&config](std::string_view name) -> absl::StatusOr<microseconds> {
    absl::StatusOr<microseconds> value = ParseDuration(config->Get(name));
    if (!value.ok() || value->count() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", std::string(name), " must be a duration like 10s or 2m"));
    }
    return value;
  };
  for (absl::string_view text : absl::StrSplit(config->Get("port"), ',')) {
    int port = 0;
    if (!absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError(
          "--port must be a port from 1 to 65535, or several separated by commas");
    }
    o.ports.push_back(port);
  }
  absl::StatusOr<int64_t> users = get_int("users", 1, 100'000'000);
  absl::StatusOr<int64_t> clients = get_int("clients", 1, 1'000'000);
  absl::StatusOr<int64_t> populate = get_int("populate", 0, 10'000'000);
  absl::StatusOr<int64_t> populate_size = get_int("populate-size", 200, 64 << 20);
  absl::StatusOr<int64_t> seed = get_int("seed", 0, INT64_MAX);
  absl::StatusOr<int64_t> setup_concurrency = get_int("setup-concurrency", 1, 100'000);
  absl::StatusOr<microseconds> duration = get_duration("duration");
  absl::StatusOr<microseconds> timeout = get_duration("timeout");
  for (const absl::Status& status :
       {users.status(), clients.status(), populate.status(),
        populate_size.status(), seed.status(), duration.status(), timeout.status(),
        setup_concurrency.status()}) {
    if (!status.ok()) {
      return status;
    }
  }
  o.tls = config->GetBool("tls");
  o.users = *users;
  o.user_prefix = config->Get("user-prefix");
  o.password = config->Get("password");
  o.clients = *clients;
  o.duration = *duration;
  o.timeout = *timeout;
  const std::string& scenario = config->Get("scenario");
  if (scenario == "profile") {
    o.scenario = Scenario::kProfile;
  } else if (scenario == "idle") {
    o.scenario = Scenario::kIdle;
  } else {
    return absl::InvalidArgumentError("--scenario must be profile or idle");
  }
  o.setup_concurrency = *setup_concurrency;
  o.profile_path = config->Get("profile");
  if (o.profile_path.empty() && o.scenario == Scenario::kProfile) {
    return absl::InvalidArgumentError("--profile is required");
  }
  const std::string& rate = config->Get("open-loop-rate");
  if (!absl::SimpleAtod(rate, &o.open_loop_rate) || !(o.open_loop_rate >= 0) ||
      o.open_loop_rate > 1e7) {
    return absl::InvalidArgumentError("--open-loop-rate must be a number of arrivals per second");
  }
  o.out_dir = config->Get("out-dir");
  o.populate = *populate;
  o.populate_size = *populate_size;
  o.seed = static_cast<uint64_t>(*seed);
  return o;
}

// Raises the soft open-file limit as far as allowed (at most the 20,000 this bench is
// sized for) and checks the clients fit, one descriptor each.
absl::Status CheckOpenFiles(int64_t clients) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError("getrlimit(RLIMIT_NOFILE) failed");
  }
  const rlim_t wanted = std::min<rlim_t>(limit.rlim_max, static_cast<rlim_t>(kOpenFileCeiling));
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = wanted;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  const int64_t usable =
      std::min<int64_t>(static_cast<int64_t>(limit.rlim_cur), kOpenFileCeiling) - kReservedFiles;
  if (clients > usable) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--clients=", clients, " needs ", clients + kReservedFiles,
        " open files but the limit is ", static_cast<int64_t>(limit.rlim_cur),
        " (this bench is sized for at most ", kOpenFileCeiling, "); use --clients<=", usable,
        " or run several loadgen processes"));
  }
  return absl::OkStatus();
}


int Main(int argc, char** argv) {
  absl::StatusOr<Options> options = ParseOptions(argc, argv);
  if (!options.ok()) {
    std::cerr << "imap-loadgen: " << options.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<Profile> profile = Profile();
  profile->name = "idle";
  if (!options->profile_path.empty()) {
    profile = LoadProfile(options->profile_path);
  }
  if (!profile.ok()) {
    std::cerr << "imap-loadgen: " << profile.status().message() << "\n";
    return 2;
  }
  absl::Status files = CheckOpenFiles(options->clients);
  if (!files.ok()) {
    std::cerr << "imap-loadgen: " << files.message() << "\n";
    return 2;
  }
  std::error_code fs_error;
  std::filesystem::create_directories(options->out_dir, fs_error);
  if (fs_error) {
    std::cerr << "imap-loadgen: cannot create " << options->out_dir << ": "
              << fs_error.message() << "\n";
    return 2;
  }

  asio::io_context io(1);
  asio::ssl::context tls(asio::ssl::context::tls_client);
  // The bench talks to its own loopback server with a throwaway certificate.
  tls.set_verify_mode(asio::ssl::verify_none);
  Run run;
  run.options = *options;
  run.profile = *std::move(profile);
  run.io = &io;
  run.tls = options->tls ? &tls : nullptr;
  run.rng.seed(options->seed);
  boost::system::error_code ec;
  for (int port : options->ports) {
    run.endpoints.emplace_back(asio::ip::make_address(options->host, ec),
                               static_cast<unsigned short>(port));
  }

  if (options->populate > 0) {
    std::cerr << "imap-loadgen: populating " << options->users << " user(s) to "
              << options->populate << " message(s) in " << run.profile.mailbox << "\n";
    run.populating = true;
    run.start = Clock::now();
    run.end = Clock::time_point::max();
    PopulateState state;
    const int64_t workers = std::min<int64_t>({options->users, options->clients, 32});
    for (int64_t i = 0; i < workers; ++i) {
      asio::co_spawn(io, PopulateWorker(&run, &state), LogSpawnFailure);
    }
    io.run();
    io.restart();
    if (!state.status.ok()) {
      std::cerr << "imap-loadgen: " << state.status.message() << "\n";
      return 1;
    }
    run.populating = false;
    run.stats = Stats();
  }

  const std::string samples_path = options->out_dir + "/samples.jsonl";
  Ticker ticker;
  ticker.samples.open(samples_path, std::ios::trunc);
  if (!ticker.samples) {
    std::cerr << "imap-loadgen: cannot write " << samples_path << "\n";
    return 2;
  }
  ticker.terminal = isatty(STDERR_FILENO) != 0;
  std::cerr << "imap-loadgen: " << options->clients << " client(s) of profile "
            << run.profile.name << " for "
            << std::chrono::duration_cast<std::chrono::seconds>(options->duration).count()
            << " s" << (options->open_loop_rate > 0 ? " (open loop)" : "") << "\n";
  run.start = Clock::now();
  IdleState idle;
  if (options->scenario == Scenario::kIdle) {
    // The hold starts once every client is idling; until then the run is bounded by
    // kIdleSetupLimit so it always stops by itself.
    run.end = run.start + kIdleSetupLimit;
    run.end_known = false;
    idle.connections.resize(options->clients);
    idle.arrivals_unix_us.resize(options->clients);
    asio::co_spawn(io, LaunchIdleClients(&run, &idle), LogSpawnFailure);
  } else {
    run.end = run.start + options->duration;
    for (int64_t i = 0; i < options->clients; ++i) {
      asio::co_spawn(io, RunClient(&run, i), LogSpawnFailure);
    }
  }
  asio::co_spawn(io, RunTicker(&run, &ticker), LogSpawnFailure);
  io.run();
  if (options->scenario == Scenario::kIdle) {
    WriteIdleArrivals(run, idle);
  }
  const double seconds =
      std::chrono::duration<double>(std::min(Clock::now(), run.end) - run.start).count();
  const std::string summary = SummaryJson(run, std::max(seconds, 1e-3));
  const std::string summary_path = options->out_dir + "/summary.json";
  std::ofstream out(summary_path, std::ios::trunc);
  out << summary << "\n";
  out.close();
  if (!out) {
    std::cerr << "imap-loadgen: cannot write " << summary_path << "\n";
    return 2;
  }
  std::cout << summary << "\n";
  return 0;
}

}  // namespace
}  // namespace bench::loadgen

int main(int argc, char** argv) { return bench::loadgen::Main(argc, argv); }
