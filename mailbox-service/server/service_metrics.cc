#include "mailbox-service/server/service_metrics.h"

#include "proto/mailbox/v1/errors.h"

namespace mailbox::server {

namespace {

constexpr size_t kOutcomes = 5;  // success, failure, throttled, unavailable, error

size_t MechanismIndex(v1::AuthMechanism mechanism) {
  switch (mechanism) {
    case v1::PASSWORD:
      return 0;
    case v1::SCRAM_SHA_256:
      return 1;
    case v1::BEARER:
      return 2;
    default:
      return 3;
  }
}

}  // namespace

ServiceMetrics::ServiceMetrics(metrics::Registry& registry)
    : logins(registry.AddCounterFamily(
          "imapd_mailbox_logins_total",
          "Authenticate calls per mechanism and outcome (throttled: the login throttle "
          "refused to check the credentials; a SCRAM exchange counts once, at its end).",
          {"mechanism", "outcome"},
          metrics::Product({{"password", "scram_sha_256", "bearer", "other"},
                            {"success", "failure", "throttled", "unavailable", "error"}}))) {}

void ServiceMetrics::Login(v1::AuthMechanism mechanism, const absl::Status& status, bool finished) {
  size_t outcome = 0;
  if (status.ok()) {
    if (!finished) {
      return;  // a SCRAM step that continues
    }
    outcome = 0;
  } else {
    switch (v1::DetailOf(status).code()) {
      case v1::AUTHENTICATIONFAILED:
      case v1::AUTHORIZATIONFAILED:
        outcome = 1;
        break;
      case v1::THROTTLED:
        outcome = 2;
        break;
      case v1::UNAVAILABLE:
        outcome = 3;
        break;
      default:
        outcome = absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ? 3 : 4;
    }
  }
  logins.At(MechanismIndex(mechanism) * kOutcomes + outcome).Inc();
}

ServiceMetrics& GlobalServiceMetrics() {
  static ServiceMetrics* metrics = new ServiceMetrics(metrics::ProcessRegistry());
  return *metrics;
}

}  // namespace mailbox::server
