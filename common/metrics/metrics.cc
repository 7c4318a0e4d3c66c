#include "common/metrics/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace mailbox::metrics {
namespace {

// Registration mistakes are programming errors found by the first run of any test.
[[noreturn]] void Die(std::string_view why) {
  std::cerr << "metrics: " << why << std::endl;
  std::abort();
}

bool ValidName(std::string_view name, bool label) {
  if (name.empty()) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) {
      return false;
    }
  }
  // Names starting with __ are reserved for Prometheus itself.
  return !(label && name.starts_with("__"));
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"` without the closing brace (a histogram adds le), or "" for none.
std::string LabelText(const std::vector<std::string>& names,
                      const std::vector<std::string>& values) {
  if (names.empty()) {
    return "";
  }
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  return out;
}

std::string Closed(const std::string& open) { return open.empty() ? open : open + "}"; }

void CheckValues(const std::string& name, const std::vector<std::string>& label_names,
                 const std::vector<std::vector<std::string>>& label_values) {
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (label_values[i].size() != label_names.size()) {
      Die(name + ": a label-value tuple does not match the label names");
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_values[j] == label_values[i]) {
        Die(name + ": a label-value tuple is given twice");
      }
    }
  }
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  char buffer[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, static_cast<int64_t>(value));
    return std::string(buffer, end);
  }
  // General, not the shortest of fixed and scientific: 0.0005, not 5e-04 (as
  // Prometheus' own clients write bucket bounds).
  auto [end, error] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::general);
  return std::string(buffer, end);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double>* buckets = new std::vector<double>{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *buckets;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
    Die("histogram bounds must increase");
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double value) {
  // le is "less than or equal": a value equal to a bound counts in that bucket.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative[i] = running;
  }
  // The count is the +Inf bucket, so the two always agree within one scrape.
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

template <typename M>
M& Family<M>::Get(const std::vector<std::string>& values) {
  for (size_t i = 0; i < values_.size(); ++i) {
    if (values_[i] == values) {
      return *series_[i];
    }
  }
  Die("no series registered with these label values");
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

std::vector<std::vector<std::string>> Product(const std::vector<std::vector<std::string>>& sets) {
  std::vector<std::vector<std::string>> out = {{}};
  for (const std::vector<std::string>& set : sets) {
    std::vector<std::vector<std::string>> next;
    for (const std::vector<std::string>& prefix : out) {
      for (const std::string& value : set) {
        next.push_back(prefix);
        next.back().push_back(value);
      }
    }
    out = std::move(next);
  }
  return out;
}

struct Registry::Entry {
  std::string name;
  std::string help;
  std::string type;
  std::vector<std::string> label_names;
  std::function<void(const Entry&, std::string*)> render;
  std::shared_ptr<void> owned;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::NewEntry(std::string name, std::string help, std::string_view type,
                                    std::vector<std::string> label_names) {
  if (!ValidName(name, /*label=*/false)) {
    Die("invalid metric name \"" + name + "\"");
  }
  for (const std::string& label : label_names) {
    if (!ValidName(label, /*label=*/true) || label == "le" || label == "quantile") {
      Die(name + ": invalid label name \"" + label + "\"");
    }
  }
  for (const auto& entry : entries_) {
    if (entry->name == name) {
      Die("metric \"" + name + "\" registered twice");
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->name = std::move(name);
  entry->help = std::move(help);
  entry->type = std::string(type);
  entry->label_names = std::move(label_names);
  entries_.push_back(std::move(entry));
  return *entries_.back();
}

Counter& Registry::AddCounter(std::string name, std::string help) {
  return AddCounterFamily(std::move(name), std::move(help), {}, {{}}).At(0);
}

Gauge& Registry::AddGauge(std::string name, std::string help) {
  return AddGaugeFamily(std::move(name), std::move(help), {}, {{}}).At(0);
}

Histogram& Registry::AddHistogram(std::string name, std::string help, std::vector<double> bounds) {
  return AddHistogramFamily(std::move(name), std::move(help), {}, {{}}, std::move(bounds)).At(0);
}

Family<Counter>& Registry::AddCounterFamily(std::string name, std::string help,
                                            std::vector<std::string> label_names,
                                            std::vector<std::vector<std::string>> label_values,
                                            FamilyOptions options) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!name.ends_with("_total")) {
    Die("counter \"" + name + "\" must end in _total");
  }
  CheckValues(name, label_names, label_values);
  auto family = std::make_shared<Family<Counter>>();
  for (auto& values : label_values) {
    family->values_.push_back(std::move(values));
    family->series_.push_back(std::make_unique<Counter>());
  }
  Entry& entry = NewEntry(std::move(name), std::move(help), "counter", std::move(label_names));
  entry.owned = family;
  entry.render = [family = family.get(), options](const Entry& e, std::string* out) {
    for (size_t i = 0; i < family->size(); ++i) {
      const uint64_t value = family->At(i).Value();
      if (options.omit_zero && value == 0) {
        continue;
      }
      *out += e.name + Closed(LabelText(e.label_names, family->values_[i])) + " " +
              std::to_string(value) + "\n";
    }
  };
  return *family;
}

Family<Gauge>& Registry::AddGaugeFamily(std::string name, std::string help,
                                        std::vector<std::string> label_names,
                                        std::vector<std::vector<std::string>> label_values,
                                        FamilyOptions options) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckValues(name, label_names, label_values);
  auto family = std::make_shared<Family<Gauge>>();
  for (auto& values : label_values) {
    family->values_.push_back(std::move(values));
    family->series_.push_back(std::make_unique<Gauge>());
  }
  Entry& entry = NewEntry(std::move(name), std::move(help), "gauge", std::move(label_names));
  entry.owned = family;
  entry.render = [family = family.get(), options](const Entry& e, std::string* out) {
    for (size_t i = 0; i < family->size(); ++i) {
      const int64_t value = family->At(i).Value();
      if (options.omit_zero && value == 0) {
        continue;
      }
      *out += e.name + Closed(LabelText(e.label_names, family->values_[i])) + " " +
              std::to_string(value) + "\n";
    }
  };
  return *family;
}

Family<Histogram>& Registry::AddHistogramFamily(std::string name, std::string help,
                                                std::vector<std::string> label_names,
                                                std::vector<std::vector<std::string>> label_values,
                                                std::vector<double> bounds, FamilyOptions options) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") ||
      name.ends_with("_sum")) {
    Die("histogram \"" + name + "\" must not end in _total, _bucket, _count or _sum");
  }
  CheckValues(name, label_names, label_values);
  auto family = std::make_shared<Family<Histogram>>();
  for (auto& values : label_values) {
    family->values_.push_back(std::move(values));
    family->series_.push_back(std::make_unique<Histogram>(bounds));
  }
  Entry& entry = NewEntry(std::move(name), std::move(help), "histogram", std::move(label_names));
  entry.owned = family;
  entry.render = [family = family.get(), options](const Entry& e, std::string* out) {
    for (size_t i = 0; i < family->size(); ++i) {
      const Histogram& histogram = family->At(i);
      const Histogram::Snapshot snapshot = histogram.Read();
      if (options.omit_zero && snapshot.count == 0) {
        continue;
      }
      const std::string labels = LabelText(e.label_names, family->values_[i]);
      const std::string open = labels.empty() ? "{" : labels + ",";
      for (size_t b = 0; b <= histogram.bounds().size(); ++b) {
        const std::string le =
            b < histogram.bounds().size() ? FormatValue(histogram.bounds()[b]) : "+Inf";
        *out += e.name + "_bucket" + open + "le=\"" + le + "\"} " +
                std::to_string(snapshot.cumulative[b]) + "\n";
      }
      *out += e.name + "_sum" + Closed(labels) + " " + FormatValue(snapshot.sum) + "\n";
      *out += e.name + "_count" + Closed(labels) + " " + std::to_string(snapshot.count) + "\n";
    }
  };
  return *family;
}

void Registry::AddCallback(std::string name, std::string help, Type type,
                           std::function<double()> read) {
  AddCallbackFamily(std::move(name), std::move(help), type, {}, {{}},
                    [read = std::move(read)] { return std::vector<double>{read()}; });
}

void Registry::AddCallbackFamily(std::string name, std::string help, Type type,
                                 std::vector<std::string> label_names,
                                 std::vector<std::vector<std::string>> label_values,
                                 std::function<std::vector<double>()> read) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (type == Type::kCounter && !name.ends_with("_total")) {
    Die("counter \"" + name + "\" must end in _total");
  }
  CheckValues(name, label_names, label_values);
  Entry& entry = NewEntry(std::move(name), std::move(help),
                          type == Type::kCounter ? "counter" : "gauge", std::move(label_names));
  entry.render = [values = std::move(label_values), read = std::move(read)](const Entry& e,
                                                                            std::string* out) {
    const std::vector<double> read_values = read();
    for (size_t i = 0; i < values.size() && i < read_values.size(); ++i) {
      *out += e.name + Closed(LabelText(e.label_names, values[i])) + " " +
              FormatValue(read_values[i]) + "\n";
    }
  };
}

void AddProcessMetrics(Registry& registry) {
  registry.AddCallback("process_resident_memory_bytes", "Resident set size.",
                       Registry::Type::kGauge, [] {
                         std::ifstream statm("/proc/self/statm");
                         int64_t size = 0, resident = 0;
                         statm >> size >> resident;
                         return static_cast<double>(resident * sysconf(_SC_PAGESIZE));
                       });
  const double started =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  registry.AddCallback("process_start_time_seconds",
                       "When the process started (its metrics were set up), in seconds since "
                       "the Unix epoch.",
                       Registry::Type::kGauge, [started] { return std::floor(started); });
}

Registry& ProcessRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

std::string Registry::Render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  out.reserve(16 << 10);
  for (const auto& entry : entries_) {
    out += "# HELP " + entry->name + " " + EscapeHelp(entry->help) + "\n";
    out += "# TYPE " + entry->name + " " + entry->type + "\n";
    entry->render(*entry, &out);
  }
  return out;
}

}  // namespace mailbox::metrics
