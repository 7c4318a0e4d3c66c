// RPC metrics of a gRPC client or server, recorded by an interceptor: every call
// passes through it whatever code made it (unary calls and streams alike).
//
// Per method (the closed set of the services named at registration, plus "other"):
// a latency histogram (call start to the status; for a stream, its whole life) and
// a counter by status code (series appear once used).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/metrics/metrics.h"
#include "grpcpp/support/client_interceptor.h"
#include "grpcpp/support/server_interceptor.h"

namespace mailbox::metrics {

class RpcMetrics {
 public:
  // Registers the histogram `latency_name` and the counter `count_name` with
  // labels service, method (and code), for every method of `services` (full
  // protobuf names such as "mailbox.v1.Mailbox", found in the generated descriptor
  // pool). `help_side` starts their HELP text.
  RpcMetrics(Registry& registry, const std::string& latency_name, const std::string& count_name,
             const std::string& help_side, const std::vector<std::string>& services);

  // The series of `method_path` ("/package.Service/Method"; "other" if unknown).
  size_t SeriesOf(std::string_view method_path) const;
  // Records one finished call of the method of `series` (SeriesOf).
  void Record(size_t series, int code, std::chrono::steady_clock::duration elapsed);

  // A factory to give grpc::experimental::CreateCustomChannelWithInterceptors.
  std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> ClientFactory();
  // A factory to give ServerBuilder::experimental().SetInterceptorCreators.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerFactory();

 private:
  absl::flat_hash_map<std::string, size_t> index_;  // "/svc/Method" -> series
  size_t other_ = 0;
  Family<Histogram>* latency_ = nullptr;
  Family<Counter>* calls_ = nullptr;  // series index * kCodes + code
};

}  // namespace mailbox::metrics
