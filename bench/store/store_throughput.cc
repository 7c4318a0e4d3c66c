// store-throughput: append and fetch throughput of the mailbox service measured
// through storage-client, the way the gateway uses it.
//
//   store-throughput --target=127.0.0.1:50051 --user=bench --password=bench \
//       --messages=2000 --size=20000 --concurrency=16
//
// Appends --messages messages of --size octets (one message per Append call,
// --concurrency calls in flight), then fetches every one back as BODY[] with the same
// concurrency, and prints one JSON object with messages/s and MB/s of each phase.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/json.hpp"
#include "common/config.h"
#include "storage-client/grpc_mailbox_store.h"

namespace mailbox::bench {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Shared {
  client::MailboxStore* store = nullptr;
  client::Session session;
  std::string message;
  int64_t run_id = 0;
  int64_t total = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> errors{0};
  std::atomic<uint64_t> octets{0};
  uint64_t mailbox_id = 0;
  uint32_t uidvalidity = 0;
  std::vector<uint32_t> uids;
};

asio::awaitable<void> Appender(Shared& shared) {
  int64_t index = 0;
  while ((index = shared.next.fetch_add(1)) < shared.total) {
    // Every message is distinct: the store shares identical content, which would
    // make a benchmark of identical messages measure deduplication, not writes.
    std::string message = shared.message;
    std::string stamp = absl::StrCat("X-Bench-Id: ", index, "-", shared.run_id, "\r\n");
    message.replace(0, stamp.size(), stamp);
    auto stream = shared.store->Append(shared.session);
    v1::AppendRequest item;
    item.set_mailbox("INBOX");
    absl::Status status = co_await stream->Write(item);
    item.Clear();
    item.mutable_message()->set_size(message.size());
    if (status.ok()) {
      status = co_await stream->Write(item);
    }
    for (size_t offset = 0; status.ok() && offset < message.size(); offset += 256 << 10) {
      item.Clear();
      item.set_chunk(message.substr(offset, 256 << 10));
      status = co_await stream->Write(item);
    }
    // (No co_await inside ?: — g++ 12 miscompiles that.)
    absl::StatusOr<v1::AppendResponse> reply(status.ok() ? absl::UnknownError("unset") : status);
    if (status.ok()) {
      reply = co_await stream->Finish();
    }
    if (!reply.ok()) {
      shared.errors.fetch_add(1);
      std::cerr << "append: " << reply.status() << "\n";
    } else {
      shared.octets.fetch_add(message.size());
    }
  }
}

asio::awaitable<void> Fetcher(Shared& shared) {
  while (true) {
    int64_t index = shared.next.fetch_add(1);
    if (index >= static_cast<int64_t>(shared.uids.size())) {
      co_return;
    }
    v1::FetchRequest request;
    request.set_mailbox_id(shared.mailbox_id);
    request.set_uidvalidity(shared.uidvalidity);
    auto* range = request.mutable_uids()->add_ranges();
    range->set_first(shared.uids[index]);
    range->set_last(shared.uids[index]);
    request.add_sections();
    auto stream = shared.store->Fetch(shared.session, request);
    while (true) {
      auto item = co_await stream->Next();
      if (!item.ok()) {
        shared.errors.fetch_add(1);
        std::cerr << "fetch: " << item.status() << "\n";
        break;
      }
      if (!item->has_value()) {
        break;
      }
      if ((*item)->has_chunk()) {
        shared.octets.fetch_add((*item)->chunk().data().size());
      }
    }
  }
}

// Runs `concurrency` copies of `worker` and returns the elapsed seconds.
double RunPhase(asio::io_context& io, Shared& shared, int concurrency,
                asio::awaitable<void> (*worker)(Shared&)) {
  shared.next = 0;
  shared.octets = 0;
  auto start = Clock::now();
  for (int i = 0; i < concurrency; ++i) {
    asio::co_spawn(io, worker(shared), [](std::exception_ptr error) {
      if (error) {
        std::cerr << "worker failed with an exception\n";
      }
    });
  }
  io.restart();
  io.run();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Run(int argc, char** argv) {
  auto config = config::Config::Parse(
      argc, argv,
      {{"target", "MAILBOX_SERVER", "127.0.0.1:50051", "mailbox service address"},
       {"user", "", "bench", "user to log in as"},
       {"password", "", "bench", "its password"},
       {"messages", "", "2000", "messages to append and fetch"},
       {"size", "", "20000", "octets per message"},
       {"concurrency", "", "16", "calls in flight"},
       {"channels", "", "2", "gRPC channels in the client's pool"},
       {"latency-samples", "", "0",
        "then time this many sequential fetches of 20 messages' UID, FLAGS, RFC822.SIZE and "
        "Subject header (the gateway's FETCH loop in bench/gateway, minus IMAP)"}});
  if (!config.ok() || config->help_requested()) {
    std::cerr << (config.ok() ? config->Usage("store-throughput")
                              : std::string(config.status().message()))
              << "\n";
    return config.ok() ? 0 : 2;
  }
  auto messages = config->GetInt("messages");
  auto size = config->GetInt("size");
  auto concurrency = config->GetInt("concurrency");
  auto channels = config->GetInt("channels");
  if (!messages.ok() || !size.ok() || !concurrency.ok() || !channels.ok() || *size < 64) {
    std::cerr << "store-throughput: --messages, --size (>= 64), --concurrency and --channels "
                 "need integers\n";
    return 2;
  }
  client::GrpcMailboxStoreOptions options;
  options.target = config->Get("target");
  options.channels = static_cast<int>(*channels);
  auto store = client::GrpcMailboxStore::Create(options);
  if (!store.ok()) {
    std::cerr << "store-throughput: " << store.status() << "\n";
    return 1;
  }
  asio::io_context io;
  Shared shared;
  shared.store = store->get();
  shared.total = *messages;

  shared.run_id = std::chrono::system_clock::now().time_since_epoch().count();
  // The first line is overwritten per message with a unique X-Bench-Id header.
  std::string header = std::string(62, 'X') + "\r\nFrom: bench@example.org\r\n"
                       "Subject: throughput\r\n\r\n";
  shared.message = header;
  while (shared.message.size() < static_cast<size_t>(*size)) {
    shared.message += "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n";
  }
  shared.message.resize(*size - 2);
  shared.message += "\r\n";

  auto login = [&]() -> asio::awaitable<absl::Status> {
    v1::AuthenticateRequest request;
    request.set_mechanism(v1::PASSWORD);
    request.set_username(config->Get("user"));
    request.set_password(config->Get("password"));
    request.set_client_ip("127.0.0.1");
    auto auth = co_await shared.store->Authenticate(request);
    if (!auth.ok()) {
      co_return auth.status();
    }
    shared.session.token = auth->session_token();
    co_return absl::OkStatus();
  };
  absl::Status logged_in = absl::UnknownError("not run");
  asio::co_spawn(io, login(), [&](std::exception_ptr, absl::Status s) { logged_in = s; });
  io.run();
  if (!logged_in.ok()) {
    std::cerr << "store-throughput: login failed: " << logged_in << "\n";
    return 1;
  }

  double append_seconds = RunPhase(io, shared, static_cast<int>(*concurrency), &Appender);
  uint64_t appended_octets = shared.octets;

  auto open = [&]() -> asio::awaitable<absl::Status> {
    v1::OpenRequest request;
    request.set_name("INBOX");
    request.set_read_only(true);
    auto opened = co_await shared.store->Open(shared.session, request);
    if (!opened.ok()) {
      co_return opened.status();
    }
    shared.mailbox_id = opened->mailbox_id();
    shared.uidvalidity = opened->uidvalidity();
    for (const auto& range : opened->uids().ranges()) {
      for (uint32_t uid = range.first(); uid <= range.last(); ++uid) {
        shared.uids.push_back(uid);
      }
    }
    co_return absl::OkStatus();
  };
  absl::Status opened = absl::UnknownError("not run");
  asio::co_spawn(io, open(), [&](std::exception_ptr, absl::Status s) { opened = s; });
  io.restart();
  io.run();
  if (!opened.ok()) {
    std::cerr << "store-throughput: open failed: " << opened << "\n";
    return 1;
  }
  // Fetch the newest --messages (the mailbox may hold earlier runs' messages too).
  if (shared.uids.size() > static_cast<size_t>(*messages)) {
    shared.uids.erase(shared.uids.begin(), shared.uids.end() - *messages);
  }
  double fetch_seconds = RunPhase(io, shared, static_cast<int>(*concurrency), &Fetcher);
  uint64_t fetched_octets = shared.octets;

  // Sequential single-client fetch latency, the same items as the gateway loop.
  auto latency_samples = config->GetInt("latency-samples");
  std::vector<double> latencies;
  if (latency_samples.ok() && *latency_samples > 0 && shared.uids.size() >= 20) {
    auto timed = [&]() -> asio::awaitable<void> {
      for (int64_t i = 0; i < *latency_samples; ++i) {
        v1::FetchRequest request;
        request.set_mailbox_id(shared.mailbox_id);
        request.set_uidvalidity(shared.uidvalidity);
        auto* range = request.mutable_uids()->add_ranges();
        range->set_first(shared.uids[0]);
        range->set_last(shared.uids[19]);
        request.set_flags(true);
        request.set_size(true);
        auto* section = request.add_sections();
        section->set_text(v1::Section::HEADER_FIELDS);
        section->add_fields("SUBJECT");
        auto started = Clock::now();
        auto stream = shared.store->Fetch(shared.session, request);
        while (true) {
          auto item = co_await stream->Next();
          if (!item.ok() || !item->has_value()) {
            break;
          }
        }
        latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
      }
    };
    asio::co_spawn(io, timed(), [](std::exception_ptr) {});
    io.restart();
    io.run();
    std::sort(latencies.begin(), latencies.end());
  }
  auto percentile = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[static_cast<size_t>(p * (latencies.size() - 1))];
  };

  auto rate = [](double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; };
  namespace json = boost::json;
  auto rounded = [](double value, double scale) { return std::round(value * scale) / scale; };
  const json::object report = {
      {"messages", *messages},
      {"size", *size},
      {"concurrency", *concurrency},
      {"append",
       {{"seconds", rounded(append_seconds, 1e3)},
        {"messages_per_s", rounded(rate(*messages, append_seconds), 10)},
        {"mb_per_s", rounded(rate(appended_octets / 1e6, append_seconds), 100)}}},
      {"fetch",
       {{"seconds", rounded(fetch_seconds, 1e3)},
        {"messages_per_s", rounded(rate(shared.uids.size(), fetch_seconds), 10)},
        {"mb_per_s", rounded(rate(fetched_octets / 1e6, fetch_seconds), 100)}}},
      {"fetch20_latency_ms",
       {{"samples", latencies.size()},
        {"p50", rounded(percentile(0.5), 1e3)},
        {"p99", rounded(percentile(0.99), 1e3)}}},
      {"errors", shared.errors.load()},
  };
  std::cout << json::serialize(report) << "\n";
  return shared.errors.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace mailbox::bench

int main(int argc, char** argv) { return mailbox::bench::Run(argc, argv); }
