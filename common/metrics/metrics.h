// Prometheus metrics for both binaries: counters, gauges and histograms whose
// label values are fixed when they are registered, rendered in the text
// exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Every label takes values from a closed set known at registration (command
// families, RPC methods, listeners, outcomes): a scrape never grows with the
// traffic, and a hot path bumps a metric it already holds a reference to with one
// relaxed atomic add, no lock and no lookup. Histogram buckets are atomics too, so
// many threads observe into one histogram at once.
//
// Register at start-up (registration takes a lock and aborts on a bad or repeated
// name: a programming error), then bump from any thread; Render() may run at any
// time and reads each value once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mailbox::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t value) { value_.store(value, std::memory_order_relaxed); }
  void Add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void Sub(int64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Bucket upper bounds for latencies in seconds, 0.5 ms to 60 s.
const std::vector<double>& LatencyBuckets();

class Histogram {
 public:
  // `bounds`: the finite upper bounds, increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);
  void ObserveDuration(std::chrono::steady_clock::duration elapsed) {
    Observe(std::chrono::duration<double>(elapsed).count());
  }

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  // Per bucket (not cumulative), the last for values above every bound.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// The series of one metric name, one per label-value tuple given at registration,
// addressed by the tuple's index (or looked up by values, at start-up).
template <typename M>
class Family {
 public:
  M& At(size_t index) { return *series_[index]; }
  const M& At(size_t index) const { return *series_[index]; }
  // The series with these label values; aborts if registration did not name them
  // (a programming error, like an unknown enum).
  M& Get(const std::vector<std::string>& values);
  size_t size() const { return series_.size(); }

 private:
  friend class Registry;
  std::vector<std::vector<std::string>> values_;
  std::vector<std::unique_ptr<M>> series_;
};

// Every combination of the given values, in order (the first label varies slowest):
// Product({{"imaps", "starttls"}, {"ok", "failed"}}) is imaps/ok, imaps/failed,
// starttls/ok, starttls/failed.
std::vector<std::vector<std::string>> Product(const std::vector<std::vector<std::string>>& sets);

struct FamilyOptions {
  // Leave out series that are still zero (counters) or empty (histograms): for
  // large closed sets (RPC method x status code) of which a process uses few.
  bool omit_zero = false;
};

class Registry {
 public:
  enum class Type { kCounter, kGauge };

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  Histogram& AddHistogram(std::string name, std::string help, std::vector<double> bounds);

  Family<Counter>& AddCounterFamily(std::string name, std::string help,
                                    std::vector<std::string> label_names,
                                    std::vector<std::vector<std::string>> label_values,
                                    FamilyOptions options = {});
  Family<Gauge>& AddGaugeFamily(std::string name, std::string help,
                                std::vector<std::string> label_names,
                                std::vector<std::vector<std::string>> label_values,
                                FamilyOptions options = {});
  Family<Histogram>& AddHistogramFamily(std::string name, std::string help,
                                        std::vector<std::string> label_names,
                                        std::vector<std::vector<std::string>> label_values,
                                        std::vector<double> bounds, FamilyOptions options = {});

  // A value read when rendered, for what the process already keeps elsewhere (an
  // atomic of another component, a queue's length, /proc/self/statm). `read` runs
  // on the rendering thread and must be thread-safe.
  void AddCallback(std::string name, std::string help, Type type, std::function<double()> read);
  // As AddCallback with labels: `read` returns a value per tuple of `label_values`.
  void AddCallbackFamily(std::string name, std::string help, Type type,
                         std::vector<std::string> label_names,
                         std::vector<std::vector<std::string>> label_values,
                         std::function<std::vector<double>()> read);

  // The whole exposition: HELP and TYPE, then the samples, per metric in
  // registration order.
  std::string Render() const;

 private:
  struct Entry;
  Entry& NewEntry(std::string name, std::string help, std::string_view type,
                  std::vector<std::string> label_names);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// The registry of a process whose components register their metrics
// independently (the mailbox service: its store, its RPCs, its logins).
Registry& ProcessRegistry();

// Registers process_resident_memory_bytes and process_start_time_seconds, the
// names Prometheus' own client libraries use, read from /proc/self.
void AddProcessMetrics(Registry& registry);

// Formats a sample value as the exposition format wants it: integers without a
// fraction, other numbers in the shortest form that reads back the same, and
// +Inf, -Inf, NaN.
std::string FormatValue(double value);
// A label value with \, " and newline escaped.
std::string EscapeLabelValue(std::string_view value);

}  // namespace mailbox::metrics
