// The mailbox service's own metrics besides its RPCs (common/metrics/grpc_metrics.h)
// and its store (store/store_metrics.h): login outcomes and throttle decisions.
// Registered in metrics::ProcessRegistry() on first use.
#pragma once

#include "absl/status/status.h"
#include "common/metrics/metrics.h"
#include "proto/mailbox/v1/mailbox.pb.h"

namespace mailbox::server {

struct ServiceMetrics {
  explicit ServiceMetrics(metrics::Registry& registry);

  // Authenticate calls per mechanism (password, scram_sha_256, bearer, other) and
  // outcome: success (a session token issued; a SCRAM exchange's first step is not
  // counted), failure (wrong credentials or token), throttled (the login throttle
  // refused to check them), unavailable (the store or the identity provider could
  // not be asked), error (a malformed or refused request).
  metrics::Family<metrics::Counter>& logins;

  // Counts the outcome of one Authenticate call.
  void Login(v1::AuthMechanism mechanism, const absl::Status& status, bool finished);
};

ServiceMetrics& GlobalServiceMetrics();

}  // namespace mailbox::server
