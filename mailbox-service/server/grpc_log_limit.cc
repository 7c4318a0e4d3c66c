#include "mailbox-service/server/grpc_log_limit.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/log/events.h"
#include "common/log/log.h"
#include "grpc/support/log.h"

namespace mailbox::server {

LogRateLimiter::LogRateLimiter(int lines_per_second)
    : rate_(std::max(lines_per_second, 1)), tokens_(rate_) {}

int64_t LogRateLimiter::Admit(absl::Time now) {
  if (last_ != absl::InfinitePast() && now > last_) {
    tokens_ = std::min(rate_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
  }
  last_ = std::max(last_, now);
  if (tokens_ < 1) {
    ++dropped_;
    return -1;
  }
  tokens_ -= 1;
  int64_t dropped = dropped_;
  dropped_ = 0;
  return dropped;
}

namespace {

struct LimitedLog {
  absl::Mutex mutex;
  LogRateLimiter limiter ABSL_GUARDED_BY(mutex);
  int lines_per_second;
};

LimitedLog* g_log = nullptr;  // set once by InstallGrpcLogRateLimit, never freed

void WriteLimited(gpr_log_func_args* args) {
  absl::Time now = absl::Now();
  int64_t dropped;
  {
    absl::MutexLock lock(&g_log->mutex);
    dropped = g_log->limiter.Admit(now);
  }
  if (dropped < 0) {
    return;
  }
  // As "grpc" events of the process's logger (common/log/log.h), in its format.
  namespace log = mailbox::log;
  if (dropped > 0) {
    log::Warning(log::event::kLogSuppressed, {{"suppressed_event", log::event::kGrpc},
                                              {"suppressed", dropped},
                                              {"limit_per_second", g_log->lines_per_second}});
  }
  const char* file = std::strrchr(args->file, '/');
  const log::Level level = args->severity == GPR_LOG_SEVERITY_ERROR     ? log::Level::kError
                           : args->severity == GPR_LOG_SEVERITY_INFO ||
                                   args->severity == GPR_LOG_SEVERITY_DEBUG
                               ? log::Level::kInfo
                               : log::Level::kWarning;
  log::Global().Log(level, log::event::kGrpc,
                    {{"file", file != nullptr ? file + 1 : args->file},
                     {"line", args->line},
                     {"message", args->message}});
}

}  // namespace

void InstallGrpcLogRateLimit(int lines_per_second) {
  if (lines_per_second <= 0 || g_log != nullptr) {
    return;
  }
  g_log = new LimitedLog{{}, LogRateLimiter(lines_per_second), lines_per_second};
  gpr_set_log_function(WriteLimited);
}

}  // namespace mailbox::server
