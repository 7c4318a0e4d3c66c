#include "common/metrics/grpc_metrics.h"

#include <iostream>

#include "google/protobuf/descriptor.h"

namespace mailbox::metrics {
namespace {

// grpc::StatusCode's names, by value (0 to 16).
constexpr const char* kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};
constexpr size_t kCodes = sizeof(kCodeNames) / sizeof(kCodeNames[0]);

using grpc::experimental::InterceptionHookPoints;

// Times one call, from its creation to its status, on the client side (the status
// received) or the server side (the status sent). The method's series is resolved
// once, when the call starts.
template <bool kServer>
class CallTimer final : public grpc::experimental::Interceptor {
 public:
  CallTimer(RpcMetrics* metrics, const char* method)
      : metrics_(metrics),
        series_(metrics->SeriesOf(method != nullptr ? method : "")),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if constexpr (kServer) {
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
        Done(methods->GetSendStatus().error_code());
      }
    } else {
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
        Done(methods->GetRecvStatus()->error_code());
      }
    }
    methods->Proceed();
  }

 private:
  void Done(int code) {
    metrics_->Record(series_, code, std::chrono::steady_clock::now() - start_);
  }

  RpcMetrics* metrics_;
  size_t series_;
  std::chrono::steady_clock::time_point start_;
};

class ClientFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ClientFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new CallTimer<false>(metrics_, info->method());
  }

 private:
  RpcMetrics* metrics_;
};

class ServerFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServerFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallTimer<true>(metrics_, info->method());
  }

 private:
  RpcMetrics* metrics_;
};

}  // namespace

RpcMetrics::RpcMetrics(Registry& registry, const std::string& latency_name,
                       const std::string& count_name, const std::string& help_side,
                       const std::vector<std::string>& services) {
  std::vector<std::vector<std::string>> methods;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (service == nullptr) {
      std::cerr << "metrics: no service " << name << " in the descriptor pool" << std::endl;
      std::abort();
    }
    for (int i = 0; i < service->method_count(); ++i) {
      index_["/" + name + "/" + service->method(i)->name()] = methods.size();
      methods.push_back({name, service->method(i)->name()});
    }
  }
  other_ = methods.size();
  methods.push_back({"other", "other"});
  std::vector<std::vector<std::string>> with_codes;
  for (const auto& method : methods) {
    for (const char* code : kCodeNames) {
      with_codes.push_back({method[0], method[1], code});
    }
  }
  latency_ = &registry.AddHistogramFamily(
      latency_name,
      help_side +
          " RPC latency, from the call's start to its status (for a stream, its "
          "whole life), per method.",
      {"service", "method"}, methods, LatencyBuckets(), {.omit_zero = true});
  calls_ = &registry.AddCounterFamily(
      count_name, help_side + " RPCs finished, per method and gRPC status code.",
      {"service", "method", "code"}, std::move(with_codes), {.omit_zero = true});
}

size_t RpcMetrics::SeriesOf(std::string_view method_path) const {
  // (Debian's Abseil has its own string_view.)
  auto it = index_.find(absl::string_view(method_path.data(), method_path.size()));
  return it == index_.end() ? other_ : it->second;
}

void RpcMetrics::Record(size_t series, int code, std::chrono::steady_clock::duration elapsed) {
  latency_->At(series).ObserveDuration(elapsed);
  const size_t code_index = code >= 0 && static_cast<size_t>(code) < kCodes ? code : 2;  // UNKNOWN
  calls_->At(series * kCodes + code_index).Inc();
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> RpcMetrics::ClientFactory() {
  return std::make_unique<metrics::ClientFactory>(this);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetrics::ServerFactory() {
  return std::make_unique<metrics::ServerFactory>(this);
}

}  // namespace mailbox::metrics
