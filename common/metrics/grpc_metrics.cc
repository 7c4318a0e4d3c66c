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

class ClientInterceptor final : public grpc::experimental::Interceptor {
 public:
  ClientInterceptor(RpcMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      metrics_->Record(method_, methods->GetRecvStatus()->error_code(),
                       std::chrono::steady_clock::now() - start_);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

class ClientFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ClientFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new ClientInterceptor(metrics_, info->method() != nullptr ? info->method() : "");
  }

 private:
  RpcMetrics* metrics_;
};

class ServerInterceptor final : public grpc::experimental::Interceptor {
 public:
  ServerInterceptor(RpcMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Record(method_, methods->GetSendStatus().error_code(),
                       std::chrono::steady_clock::now() - start_);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

class ServerFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServerFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ServerInterceptor(metrics_, info->method() != nullptr ? info->method() : "");
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

void RpcMetrics::Record(std::string_view method_path, int code,
                        std::chrono::steady_clock::duration elapsed) {
  // (Debian's Abseil has its own string_view.)
  auto it = index_.find(absl::string_view(method_path.data(), method_path.size()));
  const size_t series = it == index_.end() ? other_ : it->second;
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
